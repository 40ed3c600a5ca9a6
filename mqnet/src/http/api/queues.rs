//! The JSON API on queues: list with counts, create, show, delete, purge.

use super::*;

/// A queue, its properties and its counts.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QueueView {
    /// Path name, `.\private$\orders` for instance... as the engine prints it.
    pub path: String,
    /// Its `PRIVATE=` number on this computer.
    pub id: u32,
    /// Transactional queue: takes only transactional sends.
    pub transactional: bool,
    /// Copies received messages to its journal.
    pub journal: bool,
    /// Quota in KB, if any.
    pub quota_kb: Option<u32>,
    /// Journal quota in KB, if any.
    pub journal_quota_kb: Option<u32>,
    /// Label (`PROPID_Q_LABEL`).
    pub label: String,
    /// Base priority (`PROPID_Q_BASEPRIORITY`).
    pub base_priority: i16,
    /// Accepts only authenticated messages.
    pub authenticate: bool,
    /// Messages in the queue, those locked under transactions included.
    pub messages: usize,
    /// Of those, the ones locked under transactions not yet ended (the rest are ready).
    pub locked_messages: usize,
    /// Bytes counted against the quota.
    pub bytes: u64,
    /// Messages in its journal.
    pub journal_messages: usize,
    /// Its subqueues' names.
    pub subqueues: Vec<String>,
}

impl From<QueueInfo> for QueueView {
    fn from(i: QueueInfo) -> Self {
        QueueView {
            path: i.path.to_string(),
            id: i.id,
            transactional: i.props.transactional,
            journal: i.props.journal,
            quota_kb: i.props.quota_kb,
            journal_quota_kb: i.props.journal_quota_kb,
            label: i.props.label,
            base_priority: i.props.base_priority,
            authenticate: i.props.authenticate,
            messages: i.message_count,
            locked_messages: i.locked_count,
            bytes: i.bytes,
            journal_messages: i.journal_count,
            subqueues: i.subqueues,
        }
    }
}

/// A queue to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateQueue {
    /// Path name (`.\private$\orders`) or bare private queue name (`orders`).
    pub path: String,
    /// Transactional queue.
    #[serde(default)]
    pub transactional: bool,
    /// Journal received messages.
    #[serde(default)]
    pub journal: bool,
    /// Quota in KB.
    #[serde(default)]
    pub quota_kb: Option<u32>,
    /// Journal quota in KB.
    #[serde(default)]
    pub journal_quota_kb: Option<u32>,
    /// Label.
    #[serde(default)]
    pub label: String,
    /// Base priority.
    #[serde(default)]
    pub base_priority: i16,
    /// Accept only authenticated messages.
    #[serde(default)]
    pub authenticate: bool,
}

/// Lists the queues the caller has any right on, with their counts.
#[utoipa::path(get, path = "/api/queues", tag = "queues",
    responses((status = 200, body = [QueueView]), (status = 401, body = Problem)))]
pub(super) async fn list_queues(State(state): Shared, caller: Caller) -> Json<Vec<QueueView>> {
    let queues = state
        .qm
        .queues()
        .into_iter()
        .filter(|i| caller.sees(&key_of(&i.path)))
        .map(QueueView::from)
        .collect();
    Json(queues)
}

/// Creates a queue (`MQCreateQueue`).
#[utoipa::path(post, path = "/api/queues", tag = "queues", request_body = CreateQueue,
    responses((status = 201, body = QueueView), (status = 409, description = "MQ_ERROR_QUEUE_EXISTS", body = Problem),
        (status = 400, body = Problem), (status = 403, body = Problem)))]
pub(super) async fn create_queue(
    State(state): Shared,
    caller: Caller,
    body: Result<Json<CreateQueue>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<QueueView>)> {
    let Json(c) = body.map_err(|e| ApiError::invalid(e.body_text()))?;
    let path = queue_name(&c.path);
    caller.check(Right::Admin, &path)?;
    let props = QueueProps {
        transactional: c.transactional,
        journal: c.journal,
        quota_kb: c.quota_kb,
        journal_quota_kb: c.journal_quota_kb,
        label: c.label,
        base_priority: c.base_priority,
        authenticate: c.authenticate,
    };
    let info = engine(|| {
        let q = state.qm.create_queue(&path, props)?;
        state.qm.queue_info(&q.name().to_string())
    })?;
    Ok((StatusCode::CREATED, Json(info.into())))
}

/// A queue's properties and counts.
#[utoipa::path(get, path = "/api/queues/{name}", tag = "queues",
    params(("name" = String, Path, description = "Queue path, format name or bare private queue name")),
    responses((status = 200, body = QueueView), (status = 404, body = Problem)))]
pub(super) async fn show_queue(
    State(state): Shared,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<QueueView>> {
    let name = queue_name(&name);
    let parsed = QueueName::parse(&name)?;
    if !caller.sees(&key_of(&parsed)) {
        caller.check(Right::Peek, &name)?;
    }
    Ok(Json(state.qm.queue_info(&name)?.into()))
}

/// Deletes a queue (`MQDeleteQueue`): its messages are dead-lettered as MSMQ's rules say.
#[utoipa::path(delete, path = "/api/queues/{name}", tag = "queues",
    params(("name" = String, Path, description = "Queue path or bare private queue name")),
    responses((status = 204), (status = 404, body = Problem), (status = 403, body = Problem)))]
pub(super) async fn delete_queue(
    State(state): Shared,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let name = queue_name(&name);
    caller.check(Right::Admin, &name)?;
    engine(|| state.qm.delete_queue(&name))?;
    Ok(StatusCode::NO_CONTENT)
}

/// How many messages an operation affected.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Count {
    /// The number.
    pub count: u64,
}

/// Purges a queue (`MQPurgeQueue`): removes every message not locked by a transaction.
#[utoipa::path(post, path = "/api/queues/{name}/purge", tag = "queues",
    params(("name" = String, Path, description = "Queue path or bare private queue name")),
    responses((status = 200, body = Count), (status = 404, body = Problem)))]
pub(super) async fn purge_queue(
    State(state): Shared,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Count>> {
    let name = queue_name(&name);
    caller.check(Right::Admin, &name)?;
    let n = engine(|| state.qm.open(&name)?.purge())?;
    Ok(Json(Count { count: n as u64 }))
}
