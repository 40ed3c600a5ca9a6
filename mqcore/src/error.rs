//! The one error type of the engine, carrying the MSMQ HRESULT that real MSMQ would return.
//!
//! Code written against MSMQ branches on error codes (System.Messaging's `MessageQueueErrorCode`,
//! the C API's `MQ_ERROR_*`), so every refusal names the exact code MSMQ uses. The values come from
//! `mq.h` (see `shared/reference/msmq-facts.md` section 3) and are pinned by a unit test: they are
//! also the codes on the wire and must never change.

use std::borrow::Cow;
use std::fmt;

/// An MSMQ status code (HRESULT, facility 0x0E).
///
/// The discriminant is the HRESULT itself, so `code as u32` is what MSMQ's C API returns and
/// `code as u32 as i32` is what System.Messaging's `MessageQueueErrorCode` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Generic error code.
    Error = 0xC00E_0001,
    /// One or more of the properties passed are invalid.
    Property = 0xC00E_0002,
    /// The queue does not exist.
    QueueNotFound = 0xC00E_0003,
    /// A queue with the same path name already exists.
    QueueExists = 0xC00E_0005,
    /// An invalid parameter was passed to a function.
    InvalidParameter = 0xC00E_0006,
    /// An invalid handle was passed to a function.
    InvalidHandle = 0xC00E_0007,
    /// The operation was cancelled before it could be completed.
    OperationCancelled = 0xC00E_0008,
    /// The queue is already open for exclusive retrieval.
    SharingViolation = 0xC00E_0009,
    /// The Message Queuing service is not available.
    ServiceNotAvailable = 0xC00E_000B,
    /// The computer specified cannot be found.
    MachineNotFound = 0xC00E_000D,
    /// The queue path name specified is invalid.
    IllegalQueuePathname = 0xC00E_0014,
    /// An invalid property value was specified.
    IllegalPropertyValue = 0xC00E_0018,
    /// The time specified to wait for the message elapsed.
    IoTimeout = 0xC00E_001B,
    /// The cursor action cannot be used with the current cursor position.
    IllegalCursorAction = 0xC00E_001C,
    /// The message under the cursor was removed from the queue by another call.
    MessageAlreadyReceived = 0xC00E_001D,
    /// The format name specified is invalid.
    IllegalFormatname = 0xC00E_001E,
    /// The requested operation is not supported for the format name given.
    UnsupportedFormatnameOperation = 0xC00E_0020,
    /// Access is denied.
    AccessDenied = 0xC00E_0025,
    /// There are insufficient resources to perform this operation.
    InsufficientResources = 0xC00E_0027,
    /// A recoverable or journal message could not be stored; it was not sent.
    MessageStorageFailed = 0xC00E_002A,
    /// The property is not allowed (for example, changing a creation-only property).
    PropertyNotAllowed = 0xC00E_003E,
    /// The access mode is not supported (for example, sending to a journal or a subqueue).
    UnsupportedAccessMode = 0xC00E_0045,
    /// The queue is not available.
    QueueNotAvailable = 0xC00E_004B,
    /// The transaction coordinator cannot be reached.
    DtcConnect = 0xC00E_004C,
    /// An attempted action cannot be performed within a transaction (or needs one).
    TransactionUsage = 0xC00E_0050,
    /// The transaction's operation sequence is incorrect.
    TransactionSequence = 0xC00E_0051,
    /// The Message Queuing service was restarted; handles are stale.
    StaleHandle = 0xC00E_0056,
    /// The queue was deleted.
    QueueDeleted = 0xC00E_005A,
    /// The message label is longer than MQ_MAX_MSG_LABEL_LEN.
    LabelTooLong = 0xC00E_005D,
    /// The operation is not valid for this queue (for example, a foreign queue).
    IllegalOperation = 0xC00E_0064,
    /// The remote computer is not available.
    RemoteMachineNotAvailable = 0xC00E_0069,
    /// The operation is not supported (here: at this compatibility level).
    UnsupportedOperation = 0xC00E_006A,
    /// Two properties conflict (for example, both response queue forms given).
    PropertiesConflict = 0xC00E_0087,
    /// The message does not exist or was removed from the queue.
    MessageNotFound = 0xC00E_0088,
    /// The queue only accepts authenticated messages.
    MessageNotAuthenticated = 0xC00E_009B,
    /// The message is currently being processed under a transaction.
    MessageLockedUnderTransaction = 0xC00E_009C,
}

impl ErrorCode {
    /// Every code, for tables and round-trip tests.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::Error,
        ErrorCode::Property,
        ErrorCode::QueueNotFound,
        ErrorCode::QueueExists,
        ErrorCode::InvalidParameter,
        ErrorCode::InvalidHandle,
        ErrorCode::OperationCancelled,
        ErrorCode::SharingViolation,
        ErrorCode::ServiceNotAvailable,
        ErrorCode::MachineNotFound,
        ErrorCode::IllegalQueuePathname,
        ErrorCode::IllegalPropertyValue,
        ErrorCode::IoTimeout,
        ErrorCode::IllegalCursorAction,
        ErrorCode::MessageAlreadyReceived,
        ErrorCode::IllegalFormatname,
        ErrorCode::UnsupportedFormatnameOperation,
        ErrorCode::AccessDenied,
        ErrorCode::InsufficientResources,
        ErrorCode::MessageStorageFailed,
        ErrorCode::PropertyNotAllowed,
        ErrorCode::UnsupportedAccessMode,
        ErrorCode::QueueNotAvailable,
        ErrorCode::DtcConnect,
        ErrorCode::TransactionUsage,
        ErrorCode::TransactionSequence,
        ErrorCode::StaleHandle,
        ErrorCode::QueueDeleted,
        ErrorCode::LabelTooLong,
        ErrorCode::IllegalOperation,
        ErrorCode::RemoteMachineNotAvailable,
        ErrorCode::UnsupportedOperation,
        ErrorCode::PropertiesConflict,
        ErrorCode::MessageNotFound,
        ErrorCode::MessageNotAuthenticated,
        ErrorCode::MessageLockedUnderTransaction,
    ];

    /// The HRESULT as MSMQ's C API returns it.
    pub fn hresult(self) -> u32 {
        self as u32
    }

    /// The code as System.Messaging's `MessageQueueErrorCode` (a signed int) holds it.
    pub fn signed(self) -> i32 {
        self as u32 as i32
    }

    /// The code for an HRESULT, if it is one this engine uses.
    pub fn from_hresult(hresult: u32) -> Option<ErrorCode> {
        ErrorCode::ALL
            .iter()
            .copied()
            .find(|c| c.hresult() == hresult)
    }

    /// The `mq.h` name, e.g. `MQ_ERROR_IO_TIMEOUT`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::Error => "MQ_ERROR",
            ErrorCode::Property => "MQ_ERROR_PROPERTY",
            ErrorCode::QueueNotFound => "MQ_ERROR_QUEUE_NOT_FOUND",
            ErrorCode::QueueExists => "MQ_ERROR_QUEUE_EXISTS",
            ErrorCode::InvalidParameter => "MQ_ERROR_INVALID_PARAMETER",
            ErrorCode::InvalidHandle => "MQ_ERROR_INVALID_HANDLE",
            ErrorCode::OperationCancelled => "MQ_ERROR_OPERATION_CANCELLED",
            ErrorCode::SharingViolation => "MQ_ERROR_SHARING_VIOLATION",
            ErrorCode::ServiceNotAvailable => "MQ_ERROR_SERVICE_NOT_AVAILABLE",
            ErrorCode::MachineNotFound => "MQ_ERROR_MACHINE_NOT_FOUND",
            ErrorCode::IllegalQueuePathname => "MQ_ERROR_ILLEGAL_QUEUE_PATHNAME",
            ErrorCode::IllegalPropertyValue => "MQ_ERROR_ILLEGAL_PROPERTY_VALUE",
            ErrorCode::IoTimeout => "MQ_ERROR_IO_TIMEOUT",
            ErrorCode::IllegalCursorAction => "MQ_ERROR_ILLEGAL_CURSOR_ACTION",
            ErrorCode::MessageAlreadyReceived => "MQ_ERROR_MESSAGE_ALREADY_RECEIVED",
            ErrorCode::IllegalFormatname => "MQ_ERROR_ILLEGAL_FORMATNAME",
            ErrorCode::UnsupportedFormatnameOperation => {
                "MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION"
            }
            ErrorCode::AccessDenied => "MQ_ERROR_ACCESS_DENIED",
            ErrorCode::InsufficientResources => "MQ_ERROR_INSUFFICIENT_RESOURCES",
            ErrorCode::MessageStorageFailed => "MQ_ERROR_MESSAGE_STORAGE_FAILED",
            ErrorCode::PropertyNotAllowed => "MQ_ERROR_PROPERTY_NOTALLOWED",
            ErrorCode::UnsupportedAccessMode => "MQ_ERROR_UNSUPPORTED_ACCESS_MODE",
            ErrorCode::QueueNotAvailable => "MQ_ERROR_QUEUE_NOT_AVAILABLE",
            ErrorCode::DtcConnect => "MQ_ERROR_DTC_CONNECT",
            ErrorCode::TransactionUsage => "MQ_ERROR_TRANSACTION_USAGE",
            ErrorCode::TransactionSequence => "MQ_ERROR_TRANSACTION_SEQUENCE",
            ErrorCode::StaleHandle => "MQ_ERROR_STALE_HANDLE",
            ErrorCode::QueueDeleted => "MQ_ERROR_QUEUE_DELETED",
            ErrorCode::LabelTooLong => "MQ_ERROR_LABEL_TOO_LONG",
            ErrorCode::IllegalOperation => "MQ_ERROR_ILLEGAL_OPERATION",
            ErrorCode::RemoteMachineNotAvailable => "MQ_ERROR_REMOTE_MACHINE_NOT_AVAILABLE",
            ErrorCode::UnsupportedOperation => "MQ_ERROR_UNSUPPORTED_OPERATION",
            ErrorCode::PropertiesConflict => "MQ_ERROR_PROPERTIES_CONFLICT",
            ErrorCode::MessageNotFound => "MQ_ERROR_MESSAGE_NOT_FOUND",
            ErrorCode::MessageNotAuthenticated => "MQ_ERROR_MESSAGE_NOT_AUTHENTICATED",
            ErrorCode::MessageLockedUnderTransaction => "MQ_ERROR_MESSAGE_LOCKED_UNDER_TRANSACTION",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (0x{:08X})", self.name(), self.hresult())
    }
}

/// An engine error: the MSMQ code plus a sentence saying what was wrong with what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct Error {
    /// The MSMQ status code a caller branches on.
    code: ErrorCode,
    /// Human-readable context: which queue, which value, which limit.
    detail: Cow<'static, str>,
}

impl Error {
    /// An error with `code` and a detail sentence.
    pub fn new(code: ErrorCode, detail: impl Into<Cow<'static, str>>) -> Error {
        Error {
            code,
            detail: detail.into(),
        }
    }

    /// The MSMQ code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The detail sentence, without the code.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl From<ErrorCode> for Error {
    fn from(code: ErrorCode) -> Error {
        Error::new(code, "")
    }
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// The HRESULTs are MSMQ's and go on the wire: a change here breaks every client.
    #[test]
    fn codes_are_msmqs() {
        let pinned: &[(ErrorCode, u32, &str)] = &[
            (ErrorCode::Error, 0xC00E0001, "MQ_ERROR"),
            (ErrorCode::Property, 0xC00E0002, "MQ_ERROR_PROPERTY"),
            (
                ErrorCode::QueueNotFound,
                0xC00E0003,
                "MQ_ERROR_QUEUE_NOT_FOUND",
            ),
            (ErrorCode::QueueExists, 0xC00E0005, "MQ_ERROR_QUEUE_EXISTS"),
            (
                ErrorCode::InvalidParameter,
                0xC00E0006,
                "MQ_ERROR_INVALID_PARAMETER",
            ),
            (
                ErrorCode::InvalidHandle,
                0xC00E0007,
                "MQ_ERROR_INVALID_HANDLE",
            ),
            (
                ErrorCode::OperationCancelled,
                0xC00E0008,
                "MQ_ERROR_OPERATION_CANCELLED",
            ),
            (
                ErrorCode::SharingViolation,
                0xC00E0009,
                "MQ_ERROR_SHARING_VIOLATION",
            ),
            (
                ErrorCode::ServiceNotAvailable,
                0xC00E000B,
                "MQ_ERROR_SERVICE_NOT_AVAILABLE",
            ),
            (
                ErrorCode::MachineNotFound,
                0xC00E000D,
                "MQ_ERROR_MACHINE_NOT_FOUND",
            ),
            (
                ErrorCode::IllegalQueuePathname,
                0xC00E0014,
                "MQ_ERROR_ILLEGAL_QUEUE_PATHNAME",
            ),
            (
                ErrorCode::IllegalPropertyValue,
                0xC00E0018,
                "MQ_ERROR_ILLEGAL_PROPERTY_VALUE",
            ),
            (ErrorCode::IoTimeout, 0xC00E001B, "MQ_ERROR_IO_TIMEOUT"),
            (
                ErrorCode::IllegalCursorAction,
                0xC00E001C,
                "MQ_ERROR_ILLEGAL_CURSOR_ACTION",
            ),
            (
                ErrorCode::MessageAlreadyReceived,
                0xC00E001D,
                "MQ_ERROR_MESSAGE_ALREADY_RECEIVED",
            ),
            (
                ErrorCode::IllegalFormatname,
                0xC00E001E,
                "MQ_ERROR_ILLEGAL_FORMATNAME",
            ),
            (
                ErrorCode::UnsupportedFormatnameOperation,
                0xC00E0020,
                "MQ_ERROR_UNSUPPORTED_FORMATNAME_OPERATION",
            ),
            (
                ErrorCode::AccessDenied,
                0xC00E0025,
                "MQ_ERROR_ACCESS_DENIED",
            ),
            (
                ErrorCode::InsufficientResources,
                0xC00E0027,
                "MQ_ERROR_INSUFFICIENT_RESOURCES",
            ),
            (
                ErrorCode::MessageStorageFailed,
                0xC00E002A,
                "MQ_ERROR_MESSAGE_STORAGE_FAILED",
            ),
            (
                ErrorCode::PropertyNotAllowed,
                0xC00E003E,
                "MQ_ERROR_PROPERTY_NOTALLOWED",
            ),
            (
                ErrorCode::UnsupportedAccessMode,
                0xC00E0045,
                "MQ_ERROR_UNSUPPORTED_ACCESS_MODE",
            ),
            (
                ErrorCode::QueueNotAvailable,
                0xC00E004B,
                "MQ_ERROR_QUEUE_NOT_AVAILABLE",
            ),
            (ErrorCode::DtcConnect, 0xC00E004C, "MQ_ERROR_DTC_CONNECT"),
            (
                ErrorCode::TransactionUsage,
                0xC00E0050,
                "MQ_ERROR_TRANSACTION_USAGE",
            ),
            (
                ErrorCode::TransactionSequence,
                0xC00E0051,
                "MQ_ERROR_TRANSACTION_SEQUENCE",
            ),
            (ErrorCode::StaleHandle, 0xC00E0056, "MQ_ERROR_STALE_HANDLE"),
            (
                ErrorCode::QueueDeleted,
                0xC00E005A,
                "MQ_ERROR_QUEUE_DELETED",
            ),
            (
                ErrorCode::LabelTooLong,
                0xC00E005D,
                "MQ_ERROR_LABEL_TOO_LONG",
            ),
            (
                ErrorCode::IllegalOperation,
                0xC00E0064,
                "MQ_ERROR_ILLEGAL_OPERATION",
            ),
            (
                ErrorCode::RemoteMachineNotAvailable,
                0xC00E0069,
                "MQ_ERROR_REMOTE_MACHINE_NOT_AVAILABLE",
            ),
            (
                ErrorCode::UnsupportedOperation,
                0xC00E006A,
                "MQ_ERROR_UNSUPPORTED_OPERATION",
            ),
            (
                ErrorCode::PropertiesConflict,
                0xC00E0087,
                "MQ_ERROR_PROPERTIES_CONFLICT",
            ),
            (
                ErrorCode::MessageNotFound,
                0xC00E0088,
                "MQ_ERROR_MESSAGE_NOT_FOUND",
            ),
            (
                ErrorCode::MessageNotAuthenticated,
                0xC00E009B,
                "MQ_ERROR_MESSAGE_NOT_AUTHENTICATED",
            ),
            (
                ErrorCode::MessageLockedUnderTransaction,
                0xC00E009C,
                "MQ_ERROR_MESSAGE_LOCKED_UNDER_TRANSACTION",
            ),
        ];
        assert_eq!(pinned.len(), ErrorCode::ALL.len(), "every code is pinned");
        for &(code, hresult, name) in pinned {
            assert_eq!(code.hresult(), hresult, "{name}");
            assert_eq!(code.name(), name);
            assert_eq!(ErrorCode::from_hresult(hresult), Some(code));
        }
        // System.Messaging's signed form: -1072824320 + low byte.
        assert_eq!(ErrorCode::IoTimeout.signed(), -1072824293);
        assert_eq!(ErrorCode::TransactionUsage.signed(), -1072824240);
        assert_eq!(ErrorCode::from_hresult(0xC00E00FF), None);
    }

    #[test]
    fn display_names_code_and_detail() {
        let e = Error::new(
            ErrorCode::LabelTooLong,
            "label has 250 characters; the limit is 249",
        );
        assert_eq!(
            e.to_string(),
            "MQ_ERROR_LABEL_TOO_LONG (0xC00E005D): label has 250 characters; the limit is 249"
        );
        assert_eq!(e.code(), ErrorCode::LabelTooLong);
    }
}
