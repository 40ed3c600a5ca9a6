//! MSMQ errors as HTTP answers: a status per error code, and an RFC 9457 `application/problem+json`
//! body carrying MSMQ's name for the error and its HRESULT, so an HTTP client sees what a
//! System.Messaging caller would (`MQ_ERROR_QUEUE_NOT_FOUND`, `0xC00E0003`) and why.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use mqcore::{Error, ErrorCode};
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every refusal (RFC 9457).
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// `urn:mqemu:error:` and MSMQ's name of the error.
    #[serde(rename = "type")]
    pub kind: String,
    /// MSMQ's name of the error, `MQ_ERROR_QUEUE_NOT_FOUND` for instance.
    pub title: &'static str,
    /// The HTTP status, repeated.
    pub status: u16,
    /// What was wrong, in a sentence.
    pub detail: String,
    /// MSMQ's HRESULT, as `0xC00E0003`.
    pub hresult: String,
}

/// An engine error on its way out as a problem answer.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl ApiError {
    /// A refusal of the request itself (bad JSON, a bad parameter).
    pub fn invalid(detail: impl Into<String>) -> ApiError {
        ApiError(Error::new(ErrorCode::InvalidParameter, detail.into()))
    }
}

/// The HTTP status for an MSMQ error code. Not found, conflicts, refusals and unavailability map
/// to their HTTP names; the rest of the caller's mistakes are 400; the server's own failures 500.
pub fn status_of(code: ErrorCode) -> StatusCode {
    use ErrorCode::*;
    match code {
        // A receive or peek that waited its timeout out found nothing: nothing to return.
        QueueNotFound | MachineNotFound | MessageNotFound | IoTimeout => StatusCode::NOT_FOUND,
        QueueExists | SharingViolation | MessageAlreadyReceived | MessageLockedUnderTransaction => {
            StatusCode::CONFLICT
        }
        QueueDeleted => StatusCode::GONE,
        AccessDenied => StatusCode::FORBIDDEN,
        MessageNotAuthenticated => StatusCode::UNAUTHORIZED,
        InsufficientResources => StatusCode::INSUFFICIENT_STORAGE,
        ServiceNotAvailable | QueueNotAvailable | DtcConnect | RemoteMachineNotAvailable => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        UnsupportedOperation | UnsupportedFormatnameOperation | UnsupportedAccessMode => {
            StatusCode::METHOD_NOT_ALLOWED
        }
        OperationCancelled => StatusCode::REQUEST_TIMEOUT,
        Property | InvalidParameter | InvalidHandle | IllegalQueuePathname
        | IllegalPropertyValue | IllegalCursorAction | IllegalFormatname | PropertyNotAllowed
        | TransactionUsage | TransactionSequence | StaleHandle | LabelTooLong
        | IllegalOperation | PropertiesConflict => StatusCode::BAD_REQUEST,
        // `Error`, `MessageStorageFailed`, and codes added to the engine later.
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.0.code();
        let status = status_of(code);
        let problem = Problem {
            kind: format!("urn:mqemu:error:{}", code.name()),
            title: code.name(),
            status: status.as_u16(),
            detail: self.0.detail().to_owned(),
            hresult: format!("0x{:08X}", code.hresult()),
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every MSMQ code has a status; the caller's mistakes are 4xx, the server's troubles 5xx,
    /// and the ones clients branch on have their HTTP names.
    #[test]
    fn every_code_maps_to_a_status_of_the_right_class() {
        for &code in ErrorCode::ALL {
            let s = status_of(code);
            let server_side = matches!(
                code,
                ErrorCode::Error
                    | ErrorCode::MessageStorageFailed
                    | ErrorCode::InsufficientResources
                    | ErrorCode::ServiceNotAvailable
                    | ErrorCode::QueueNotAvailable
                    | ErrorCode::DtcConnect
                    | ErrorCode::RemoteMachineNotAvailable
            );
            assert_eq!(s.is_server_error(), server_side, "{code:?} -> {s}");
            assert!(
                s.is_client_error() || s.is_server_error(),
                "{code:?} -> {s}"
            );
        }
        assert_eq!(status_of(ErrorCode::QueueNotFound), StatusCode::NOT_FOUND);
        assert_eq!(status_of(ErrorCode::QueueExists), StatusCode::CONFLICT);
        assert_eq!(status_of(ErrorCode::AccessDenied), StatusCode::FORBIDDEN);
        assert_eq!(status_of(ErrorCode::QueueDeleted), StatusCode::GONE);
    }

    #[test]
    fn a_problem_carries_the_msmq_name_and_hresult() {
        let r = ApiError(Error::new(ErrorCode::QueueNotFound, "no such queue")).into_response();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
    }
}
