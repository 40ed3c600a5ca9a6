//! The ingress routes, `POST /msmq/private$/<queue>` and `/msmq/<queue>`: a parsed message
//! handed to the transfer's `accept`, arriving receipts stored as acknowledgements, and the
//! verdict headers an mqemu sender reads.

use super::*;

pub(super) fn srmp_refusal(
    status: StatusCode,
    detail: String,
) -> (StatusCode, [(header::HeaderName, &'static str); 1], String) {
    let body = serde_json::json!({
        "type": "urn:mqemu:error:SRMP",
        "title": "SRMP message refused",
        "status": status.as_u16(),
        "detail": detail,
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
}

pub(crate) fn routes() -> utoipa_axum::router::OpenApiRouter<Arc<AppState>> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(receive_private))
        .routes(utoipa_axum::routes!(receive_public))
}

/// Takes an SRMP message (MC-MQSRM) for a private queue: a Windows queue manager's send to
/// `DIRECT=HTTP://host/msmq/private$/<queue>`. `200` with an empty body once the message is
/// stored (or recognized as a resend); `400` if it is malformed or its destination is not a
/// queue here that takes it (the envelope's `<to>` names the queue).
#[utoipa::path(post, path = "/msmq/private$/{queue}", tag = "srmp",
    params(("queue" = String, Path, description = "The private queue's name")),
    request_body(content = String, content_type = "multipart/related", description = "MC-MQSRM: a SOAP envelope part, then the body part"),
    responses((status = 200, description = "stored, or a resend recognized"), (status = 400, body = Problem),
        (status = 500, description = "over quota (3.1.5.1.12)", body = Problem)))]
pub(super) async fn receive_private(
    state: State<Arc<AppState>>,
    caller: Caller,
    Path(queue): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    receive(state, caller, queue, headers, body).await
}

/// Takes an SRMP message sent to a public-style name, `DIRECT=HTTP://host/msmq/<queue>`
/// (public queues need Active Directory, so such a message is refused unless `<to>` names a
/// private queue here).
#[utoipa::path(post, path = "/msmq/{queue}", tag = "srmp",
    params(("queue" = String, Path, description = "The queue's name")),
    request_body(content = String, content_type = "multipart/related", description = "MC-MQSRM: a SOAP envelope part, then the body part"),
    responses((status = 200, description = "stored, or a resend recognized"), (status = 400, body = Problem)))]
pub(super) async fn receive_public(
    state: State<Arc<AppState>>,
    caller: Caller,
    Path(queue): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    receive(state, caller, queue, headers, body).await
}

pub(super) async fn receive(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    queue: String,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let m = match parse(ctype, &body) {
        Ok(m) => m,
        Err(Malformed(why)) => {
            tracing::info!(%queue, %why, "SRMP message refused");
            return srmp_refusal(StatusCode::BAD_REQUEST, why).into_response();
        }
    };
    if !m.is_user_message() {
        // A receipt is answered 200 whatever becomes of it: refusing one would only have it
        // sent again. Stream receipts need nothing here (egress reads verdicts instead).
        if m.ack_receipt {
            if let Err(why) = store_acknowledgement(&state, &caller, &m) {
                tracing::info!(to = %m.to, %why, "an SRMP receipt was not stored");
            }
        }
        return StatusCode::OK.into_response();
    }
    let dest = m.destination();
    let parsed = match QueueName::parse(&dest) {
        Ok(n) => n,
        Err(e) => {
            return srmp_refusal(StatusCode::BAD_REQUEST, format!("<to>: {}", e.detail()))
                .into_response()
        }
    };
    if let Err(e) = caller.check(Right::Send, &dest) {
        return e.into_response();
    }
    let q = match state.qm.open_name(&parsed) {
        Ok(q) => q,
        Err(e) => {
            return srmp_refusal(
                StatusCode::BAD_REQUEST,
                format!("{dest} is not a queue here: {}", e.detail()),
            )
            .into_response()
        }
    };
    if q.is_remote() {
        return srmp_refusal(
            StatusCode::BAD_REQUEST,
            format!("{dest} is on another computer, and this server does not forward SRMP"),
        )
        .into_response();
    }
    if q.is_transactional() != m.stream.is_some() {
        let why = if m.stream.is_some() {
            "a stream (transactional) message goes only to a transactional queue"
        } else {
            "a message outside a stream goes only to a non-transactional queue"
        };
        return srmp_refusal(StatusCode::BAD_REQUEST, format!("{dest}: {why}")).into_response();
    }
    let msg = match m.message(Some(parsed)) {
        Ok(msg) => msg,
        Err(Malformed(why)) => return srmp_refusal(StatusCode::BAD_REQUEST, why).into_response(),
    };
    // A stream is known by its id alone (3.1.5.1.6.4 keys it by the destination queue and the
    // stream id, not the sender); other messages are deduplicated per sender by message id.
    let (source, sequence, seq) = match &m.stream {
        Some(s) => (
            uuid::Uuid::nil(),
            format!("srmp:{}", s.id),
            Some(Seq {
                n: s.current,
                // Without <previous>, the message follows the one numbered before it.
                prev: s.previous.unwrap_or(s.current.saturating_sub(1)),
            }),
        ),
        None => (msg.source_machine(), dest.clone(), None),
    };
    let withdraw = headers.contains_key(WITHDRAW);
    // A receipt names the message as its sender knows it: without <Msmq>, (NULL GUID, 1).
    let id = m.id.map_or(MessageId::new(Uuid::nil(), 1), |(i, g)| {
        MessageId::new(g, i)
    });
    let priority = msg.priority;
    let queue_path = q.name().to_string();
    let transfer = state.qm.transfer();
    let reply = crate::http::api::engine(|| {
        transfer.accept(
            source,
            &sequence,
            &queue_path,
            true,
            vec![Inbound {
                seq,
                // An mqemu sender withdrawing the number of a stream message that ran out of
                // time: consume the number, store nothing (a receiver that has it says so).
                msg: (!(withdraw && seq.is_some())).then_some(msg),
            }],
        )
    });
    match reply {
        Ok(r) => {
            let verdict = r.verdicts.first().copied().unwrap_or(Verdict::Gap);
            if let Some(s) = &m.stream {
                state.receipts.stream(&sequence, s, &m.to, r.last);
            }
            if let (Some(to), Verdict::Accepted | Verdict::Duplicate) =
                (&m.delivery_receipt_to, verdict)
            {
                state.receipts.delivered(to, &m.to, id, priority);
            }
            let mut response = match verdict {
                Verdict::Rejected(class) if class == MessageClass::NACK_Q_EXCEED_QUOTA => {
                    srmp_refusal(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("{dest} is over its quota"),
                    )
                    .into_response()
                }
                Verdict::Rejected(class) => srmp_refusal(
                    StatusCode::BAD_REQUEST,
                    format!("{dest} refused the message (class 0x{:04X})", class.0),
                )
                .into_response(),
                _ => (StatusCode::OK, [(header::CONTENT_LENGTH, "0")]).into_response(),
            };
            // What an mqemu sender needs beyond the status (a Windows sender ignores it).
            let h = response.headers_mut();
            h.insert(VERDICT, verdict_text(verdict));
            h.insert(LAST, r.last.into());
            response
        }
        Err(e) => ApiError(e).into_response(),
    }
}

/// Stores a delivery or commitment receipt in the queue its `<to>` names (a sender's admin
/// queue) as the acknowledgement it stands for: its class and correlation from `<Msmq>`, kept
/// once per receipt id.
pub(super) fn store_acknowledgement(
    state: &AppState,
    caller: &Caller,
    m: &Srmp,
) -> Result<(), String> {
    let dest = m.destination();
    let name = QueueName::parse(&dest).map_err(|e| e.detail().to_owned())?;
    caller
        .check(Right::Send, &dest)
        .map_err(|e| e.0.detail().to_owned())?;
    let q = state
        .qm
        .open_name(&name)
        .map_err(|e| e.detail().to_owned())?;
    if q.is_remote() || q.is_transactional() {
        return Err(format!(
            "{dest} is not a non-transactional queue here, where acknowledgements go"
        ));
    }
    let msg = m.message(Some(name)).map_err(|Malformed(why)| why)?;
    let queue_path = q.name().to_string();
    let transfer = state.qm.transfer();
    crate::http::api::engine(|| {
        transfer.accept(
            msg.source_machine(),
            &dest,
            &queue_path,
            true,
            vec![Inbound {
                seq: None,
                msg: Some(msg),
            }],
        )
    })
    .map(drop)
    .map_err(|e| e.detail().to_owned())
}

/// The answer's header naming the engine's verdict: `accepted`, `duplicate`, `gap`, `withdrawn`
/// or `rejected 0xCLASS`. SRMP answers a stream message with a later stream receipt; an mqemu
/// sender reads this instead, so a message missing its predecessor is never taken as stored.
pub const VERDICT: header::HeaderName = header::HeaderName::from_static("x-mqemu-verdict");
/// A request's header from an mqemu sender: this stream message ran out of time at the sender
/// after it may have been sent; withdraw its number (MSMQ's native transfer does the same; SRMP
/// has no such message, and a Windows receiver drops it as expired: its `<expiresAt>` is past).
pub const WITHDRAW: header::HeaderName = header::HeaderName::from_static("x-mqemu-withdraw");
/// The answer's header giving the stream's last number the receiver holds.
pub const LAST: header::HeaderName = header::HeaderName::from_static("x-mqemu-last");

pub(super) fn verdict_text(v: Verdict) -> header::HeaderValue {
    match v {
        Verdict::Accepted => header::HeaderValue::from_static("accepted"),
        Verdict::Duplicate => header::HeaderValue::from_static("duplicate"),
        Verdict::Gap => header::HeaderValue::from_static("gap"),
        Verdict::Withdrawn => header::HeaderValue::from_static("withdrawn"),
        Verdict::Rejected(c) => format!("rejected 0x{:04X}", c.0)
            .try_into()
            .expect("ASCII is a header value"),
    }
}

/// The verdict an answer's [`VERDICT`] header names.
pub fn parse_verdict(text: &str) -> Option<Verdict> {
    Some(match text.trim() {
        "accepted" => Verdict::Accepted,
        "duplicate" => Verdict::Duplicate,
        "gap" => Verdict::Gap,
        "withdrawn" => Verdict::Withdrawn,
        other => {
            let hex = other.strip_prefix("rejected 0x")?;
            Verdict::Rejected(MessageClass(u16::from_str_radix(hex, 16).ok()?))
        }
    })
}
