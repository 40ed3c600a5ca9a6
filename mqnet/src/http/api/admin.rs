//! The JSON API on the services beside the queues: triggers, transactions held between
//! requests, and outgoing queues with their links.

use super::*;

/// A trigger, its rules and its counters, as `mqemu trigger list` shows them.
#[utoipa::path(get, path = "/api/triggers", tag = "triggers",
    responses((status = 200, description = "The triggers (empty when the Triggers service is not running)", body = [Object]),
        (status = 403, body = Problem)))]
pub(super) async fn list_triggers(
    State(state): Shared,
    caller: Caller,
) -> ApiResult<Json<Vec<serde_json::Value>>> {
    caller.check_admin()?;
    let Some(t) = state.config.triggers.get() else {
        return Ok(Json(Vec::new()));
    };
    let mut out = Vec::new();
    for trigger in t.triggers() {
        let rules: Vec<String> = trigger
            .rules
            .iter()
            .filter_map(|id| t.rule(&id.to_string()).ok().map(|r| r.def.name))
            .collect();
        let stats = t.stats(&trigger.id.to_string())?;
        out.push(serde_json::json!({
            "id": trigger.id.to_string(),
            "name": trigger.def.name,
            "queue": trigger.def.queue,
            "enabled": trigger.def.enabled,
            "serialized": trigger.def.serialized,
            "processing": format!("{:?}", trigger.def.processing),
            "rules": rules,
            "stats": stats,
        }));
    }
    Ok(Json(out))
}

/// A transaction to begin.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Begin {
    /// Abort if not committed within this many milliseconds (default: the server's limit, 60 s;
    /// at most an hour).
    #[serde(default)]
    pub time_limit_ms: Option<u64>,
}

/// A transaction begun.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Begun {
    /// Its id, for `tx=` and for commit and abort.
    pub id: u64,
    /// Milliseconds until it aborts by itself.
    pub time_limit_ms: u64,
}

/// Begins an internal transaction (`MQBeginTransaction`) held on the server under an id.
#[utoipa::path(post, path = "/api/transactions", tag = "transactions", request_body(content = Option<Begin>),
    responses((status = 201, body = Begun), (status = 507, description = "too many open", body = Problem)))]
pub(super) async fn begin_transaction(
    State(state): Shared,
    caller: Caller,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Begun>)> {
    let b: Begin = if body.is_empty() {
        Begin::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid(format!("the request is not valid JSON: {e}")))?
    };
    let limit = b
        .time_limit_ms
        .map(Duration::from_millis)
        .unwrap_or(state.config.tx_time_limit)
        .min(Duration::from_secs(3600));
    let (id, _) = state.txs.begin(&state.qm, limit, &caller.0)?;
    Ok((
        StatusCode::CREATED,
        Json(Begun {
            id,
            time_limit_ms: limit.as_millis() as u64,
        }),
    ))
}

/// Commits a transaction: its sends become visible and its receives final, on disk first on
/// a durable server.
#[utoipa::path(post, path = "/api/transactions/{id}/commit", tag = "transactions",
    params(("id" = u64, Path, description = "The transaction's id")),
    responses((status = 204), (status = 400, description = "MQ_ERROR_INVALID_HANDLE: unknown, ended or expired", body = Problem)))]
pub(super) async fn commit_transaction(
    State(state): Shared,
    caller: Caller,
    Path(id): Path<u64>,
) -> ApiResult<StatusCode> {
    let tx = state.txs.take(id, &caller.0)?;
    engine(|| tx.commit())?;
    Ok(StatusCode::NO_CONTENT)
}

/// Aborts a transaction: its sends are dropped and the messages it received go back to their
/// places.
#[utoipa::path(post, path = "/api/transactions/{id}/abort", tag = "transactions",
    params(("id" = u64, Path, description = "The transaction's id")),
    responses((status = 204), (status = 400, description = "MQ_ERROR_INVALID_HANDLE: unknown, ended or expired", body = Problem)))]
pub(super) async fn abort_transaction(
    State(state): Shared,
    caller: Caller,
    Path(id): Path<u64>,
) -> ApiResult<StatusCode> {
    let tx = state.txs.take(id, &caller.0)?;
    engine(|| tx.abort());
    Ok(StatusCode::NO_CONTENT)
}

/// An outgoing queue: messages waiting for another computer, and the link's state.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OutgoingQueueView {
    /// The destination's format name.
    pub name: String,
    /// The computer it is reached at.
    pub host: String,
    /// `CONNECTED`, `WAITING`, `ONHOLD`, `INACTIVE`...
    pub state: String,
    /// Messages waiting, unacknowledged ones included.
    pub messages: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Sent and not yet acknowledged.
    pub unacknowledged: usize,
    /// Resends since the last answer.
    pub resends: u32,
    /// Milliseconds until the next attempt, while waiting.
    pub next_attempt_ms: Option<u64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// Lists the outgoing queues (`MQMgmtGetInfo` on `MACHINE=`'s outgoing queues).
#[utoipa::path(get, path = "/api/outgoing", tag = "outgoing",
    responses((status = 200, body = [OutgoingQueueView]), (status = 403, body = Problem)))]
pub(super) async fn list_outgoing(
    State(state): Shared,
    caller: Caller,
) -> ApiResult<Json<Vec<OutgoingQueueView>>> {
    caller.check_admin()?;
    let views = match &state.config.transfer {
        Some(t) => t.outgoing(),
        None => crate::transfer::outgoing_without_service(&state.qm),
    };
    Ok(Json(
        views
            .into_iter()
            .map(|v| OutgoingQueueView {
                name: v.info.name,
                host: v.info.host,
                state: v.state,
                messages: v.info.messages,
                bytes: v.info.bytes,
                unacknowledged: v.unacknowledged,
                resends: v.resends,
                next_attempt_ms: v.next_attempt_ms,
                last_error: v.last_error,
            })
            .collect(),
    ))
}

/// Pauses, resumes or resends an outgoing queue (`MQMgmtAction`: `pause`, `resume`,
/// `eod-resend`).
#[utoipa::path(post, path = "/api/outgoing/{name}/{action}", tag = "outgoing",
    params(("name" = String, Path, description = "The destination's format name, URL-encoded"),
        ("action" = String, Path, description = "pause, resume or eod-resend")),
    responses((status = 204), (status = 404, body = Problem), (status = 400, body = Problem)))]
pub(super) async fn act_on_outgoing(
    State(state): Shared,
    caller: Caller,
    Path((name, action)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.check_admin()?;
    let action: OutgoingAction = action.parse()?;
    match &state.config.transfer {
        Some(t) => t.act(&name, action)?,
        None => crate::transfer::act(&state.qm, &name, action)?,
    }
    Ok(StatusCode::NO_CONTENT)
}
