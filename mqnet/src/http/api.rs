//! The JSON API's handlers: queues, messages (send, peek, receive, browse by lookup id, move),
//! transactions and outgoing queues, each checked against the caller's rights as the native
//! protocol checks them.
//!
//! A queue is named in the path by its path or format name (URL-encoded: `.%5Cprivate$%5Corders`)
//! or, for a private queue of this computer, by its bare name (`orders`, `orders;poison` for a
//! subqueue).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use base64::Engine as _;
use mqcore::blocking::{with_hook, Hook, Hooked};
use mqcore::message::{Acknowledge, Delivery, JournalFlags};
use mqcore::name::QueueRef;
use mqcore::{
    Error, ErrorCode, LookupAction, Message, MessageId, QueueInfo, QueueName, QueueProps, Tx,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::problem::{ApiError, Problem};
use super::{AppState, Caller};
use crate::auth::{key_of, Right};
use crate::proto::OutgoingAction;

type Shared = State<Arc<AppState>>;
type ApiResult<T> = Result<T, ApiError>;

pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_queues, create_queue))
        .routes(routes!(show_queue, delete_queue))
        .routes(routes!(purge_queue))
        .routes(routes!(send_message, browse_messages))
        .routes(routes!(peek_head))
        .routes(routes!(receive_head))
        .routes(routes!(peek_message, receive_message))
        .routes(routes!(move_message))
        .routes(routes!(requeue_message))
        .routes(routes!(list_triggers))
        .routes(routes!(begin_transaction))
        .routes(routes!(commit_transaction))
        .routes(routes!(abort_transaction))
        .routes(routes!(list_outgoing))
        .routes(routes!(act_on_outgoing))
}

/// The hook that moves a call that waits on the log off the runtime's thread (as the native
/// server does); none on a current-thread runtime, where the call blocks as any would.
fn hook() -> Option<Hook> {
    fn block_in_place(f: &mut dyn FnMut()) {
        tokio::task::block_in_place(f)
    }
    let flavor = tokio::runtime::Handle::current().runtime_flavor();
    (flavor == tokio::runtime::RuntimeFlavor::MultiThread).then_some(block_in_place as _)
}

/// Runs an engine call that may wait for the log.
pub(super) fn engine<R>(f: impl FnOnce() -> R) -> R {
    match hook() {
        Some(h) => with_hook(h, f),
        None => f(),
    }
}

/// The queue a path segment names: a path or format name as is, a bare name as a private queue
/// of this computer.
pub(super) fn queue_name(segment: &str) -> String {
    if segment.contains('\\') || segment.contains('=') {
        segment.to_owned()
    } else {
        format!(r".\private$\{segment}")
    }
}

// ---------------------------------------------------------------------------------------------
// Queues

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
async fn list_queues(State(state): Shared, caller: Caller) -> Json<Vec<QueueView>> {
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
async fn create_queue(
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
async fn show_queue(
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
async fn delete_queue(
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
async fn purge_queue(
    State(state): Shared,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Count>> {
    let name = queue_name(&name);
    caller.check(Right::Admin, &name)?;
    let n = engine(|| state.qm.open(&name)?.purge())?;
    Ok(Json(Count { count: n as u64 }))
}

// ---------------------------------------------------------------------------------------------
// Messages

/// A message to send, as JSON. A request whose `Content-Type` is not JSON sends its body as the
/// message body, with properties in `MQ-*` headers instead (`MQ-Label`, `MQ-Priority`,
/// `MQ-Correlation-Id`, `MQ-App-Specific`, `MQ-Recoverable`).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SendBody {
    /// The body as text (UTF-8).
    pub body: Option<String>,
    /// The body as base64, for binary bodies (instead of `body`).
    pub body_base64: Option<String>,
    /// Label (`PROPID_M_LABEL`, at most 249 characters).
    pub label: Option<String>,
    /// Priority 0-7 (default 3; transactional messages are always 0).
    pub priority: Option<u8>,
    /// Recoverable delivery (kept on disk) instead of express.
    pub recoverable: bool,
    /// Correlation id, as `guid\ordinal`.
    pub correlation_id: Option<String>,
    /// Application-specific number (`PROPID_M_APPSPECIFIC`).
    pub app_specific: Option<u32>,
    /// Body type (`PROPID_M_BODY_TYPE`, a VARTYPE).
    pub body_type: Option<u32>,
    /// Response queue (format or path name).
    pub response_queue: Option<String>,
    /// Administration queue for acknowledgements (format or path name).
    pub admin_queue: Option<String>,
    /// Acknowledgement level (`PROPID_M_ACKNOWLEDGE` bits: 1 reach queue, 2 receive, 4 and 8
    /// their negative forms).
    pub acknowledge: Option<u8>,
    /// Dead-letter the message if it cannot be delivered (`MQMSG_DEADLETTER`).
    pub dead_letter: bool,
    /// Keep a copy in the computer journal (`MQMSG_JOURNAL`).
    pub journal: bool,
    /// Time to reach the queue, in milliseconds.
    pub time_to_reach_queue_ms: Option<u64>,
    /// Time to be received, in milliseconds.
    pub time_to_be_received_ms: Option<u64>,
}

fn parse_id(s: &str, what: &str) -> Result<MessageId, ApiError> {
    s.parse()
        .map_err(|_| ApiError::invalid(format!("{what} {s:?} is not a message id (guid\\ordinal)")))
}

fn parse_queue(s: &str) -> Result<Arc<QueueName>, ApiError> {
    Ok(Arc::new(QueueName::parse(s)?))
}

impl SendBody {
    fn into_message(self) -> Result<Message, ApiError> {
        let body = match (self.body, self.body_base64) {
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid(
                    "give the body as `body` or `body_base64`, not both",
                ))
            }
            (Some(t), None) => Bytes::from(t),
            (None, Some(b)) => Bytes::from(
                base64::engine::general_purpose::STANDARD
                    .decode(b.as_bytes())
                    .map_err(|e| ApiError::invalid(format!("body_base64 is not base64: {e}")))?,
            ),
            (None, None) => Bytes::new(),
        };
        let mut m = Message::new(body);
        if let Some(l) = self.label {
            m.label = l;
        }
        if let Some(p) = self.priority {
            m.priority = p;
        }
        if self.recoverable {
            m.delivery = Delivery::Recoverable;
        }
        if let Some(c) = &self.correlation_id {
            m.correlation_id = Some(parse_id(c, "correlation_id")?);
        }
        if let Some(a) = self.app_specific {
            m.app_specific = a;
        }
        if let Some(t) = self.body_type {
            m.body_type = t;
        }
        if let Some(q) = &self.response_queue {
            m.response_queue = Some(parse_queue(q)?);
        }
        if let Some(q) = &self.admin_queue {
            m.admin_queue = Some(parse_queue(q)?);
        }
        if let Some(a) = self.acknowledge {
            m.acknowledge = Acknowledge(a);
        }
        let mut journal = 0;
        if self.dead_letter {
            journal |= JournalFlags::DEADLETTER.0;
        }
        if self.journal {
            journal |= JournalFlags::JOURNAL.0;
        }
        m.journal = JournalFlags(journal);
        m.time_to_reach_queue = self.time_to_reach_queue_ms.map(Duration::from_millis);
        m.time_to_be_received = self.time_to_be_received_ms.map(Duration::from_millis);
        Ok(m)
    }

    /// Properties from `MQ-*` headers, for a raw body.
    fn from_headers(headers: &HeaderMap) -> Result<SendBody, ApiError> {
        let get = |name: &str| -> Result<Option<String>, ApiError> {
            match headers.get(name) {
                None => Ok(None),
                Some(v) => v
                    .to_str()
                    .map(|s| Some(s.to_owned()))
                    .map_err(|_| ApiError::invalid(format!("header {name} is not text"))),
            }
        };
        let number = |name: &str| -> Result<Option<u64>, ApiError> {
            get(name)?
                .map(|v| {
                    v.trim().parse::<u64>().map_err(|_| {
                        ApiError::invalid(format!("header {name} is not a number: {v:?}"))
                    })
                })
                .transpose()
        };
        let small = |v: Option<u64>, name: &str| -> Result<Option<u8>, ApiError> {
            v.map(|v| {
                u8::try_from(v)
                    .map_err(|_| ApiError::invalid(format!("header {name} is out of range")))
            })
            .transpose()
        };
        Ok(SendBody {
            label: get("mq-label")?,
            priority: small(number("mq-priority")?, "MQ-Priority")?,
            recoverable: get("mq-recoverable")?
                .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true")),
            correlation_id: get("mq-correlation-id")?,
            app_specific: number("mq-app-specific")?
                .map(|v| {
                    u32::try_from(v)
                        .map_err(|_| ApiError::invalid("header MQ-App-Specific is out of range"))
                })
                .transpose()?,
            response_queue: get("mq-response-queue")?,
            admin_queue: get("mq-admin-queue")?,
            ..SendBody::default()
        })
    }
}

/// A message as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageView {
    /// Message id, `guid\ordinal`.
    pub id: String,
    /// Lookup id in its queue (`PROPID_M_LOOKUPID`).
    pub lookup_id: u64,
    /// Label.
    pub label: String,
    /// The body as text, when it is UTF-8.
    pub body: Option<String>,
    /// The body as base64.
    pub body_base64: String,
    /// Body type (VARTYPE).
    pub body_type: u32,
    /// Priority.
    pub priority: u8,
    /// Recoverable delivery.
    pub recoverable: bool,
    /// Class (`PROPID_M_CLASS`: 0 normal, acknowledgement classes for reports).
    pub class: u16,
    /// Correlation id.
    pub correlation_id: Option<String>,
    /// Application-specific number.
    pub app_specific: u32,
    /// Sent time, milliseconds since 1970.
    pub sent_time_ms: u64,
    /// Arrival time, milliseconds since 1970.
    pub arrived_time_ms: u64,
    /// The sending queue manager's GUID.
    pub source_machine: String,
    /// The queue it was sent to.
    pub destination: Option<String>,
    /// Response queue.
    pub response_queue: Option<String>,
    /// Administration queue.
    pub admin_queue: Option<String>,
    /// Times a transaction that received it aborted.
    pub abort_count: u32,
    /// Times it moved between the queue and its subqueues.
    pub move_count: u32,
    /// Sent in a transaction.
    pub transactional: bool,
}

impl From<&Message> for MessageView {
    fn from(m: &Message) -> Self {
        MessageView {
            id: m.id().to_string(),
            lookup_id: m.lookup_id(),
            label: m.label.clone(),
            body: m.body_str().map(str::to_owned),
            body_base64: base64::engine::general_purpose::STANDARD.encode(&m.body),
            body_type: m.body_type,
            priority: m.priority,
            recoverable: m.delivery == Delivery::Recoverable,
            class: m.class().0,
            correlation_id: m.correlation_id.map(|c| c.to_string()),
            app_specific: m.app_specific,
            sent_time_ms: m.sent_time().0,
            arrived_time_ms: m.arrived_time().0,
            source_machine: m.source_machine().to_string(),
            destination: m.destination().map(|d| d.to_string()),
            response_queue: m.response_queue.as_ref().map(|q| q.to_string()),
            admin_queue: m.admin_queue.as_ref().map(|q| q.to_string()),
            abort_count: m.abort_count(),
            move_count: m.move_count(),
            transactional: m.is_transactional(),
        }
    }
}

/// What a send answers.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Sent {
    /// The new message's id.
    pub id: String,
}

/// Which transaction an operation runs under.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TxParam {
    /// `single` for a single-message transaction (`MQ_SINGLE_MESSAGE`), or the id of a
    /// transaction begun with `POST /api/transactions`; none for no transaction.
    #[serde(default)]
    pub tx: Option<String>,
}

/// Waiting and transaction parameters of a receive or peek.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitParams {
    /// How long to wait for a message, in milliseconds (default 0: answer at once). At most 10
    /// minutes; a longer wait is a long poll to repeat.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// As for [`TxParam`].
    #[serde(default)]
    pub tx: Option<String>,
}

/// The longest one request waits.
const MAX_WAIT: Duration = Duration::from_secs(600);

/// The transaction a `tx` parameter names, held for the request.
enum HeldTx {
    None,
    Single,
    In(Arc<mqcore::Transaction>),
}

impl HeldTx {
    fn resolve(state: &AppState, caller: &Caller, tx: Option<&str>) -> Result<HeldTx, ApiError> {
        match tx {
            None | Some("") | Some("none") => Ok(HeldTx::None),
            Some(s) if s.eq_ignore_ascii_case("single") => Ok(HeldTx::Single),
            Some(s) => {
                let id = s.parse::<u64>().map_err(|_| {
                    ApiError::invalid(format!("tx {s:?} is neither `single` nor a transaction id"))
                })?;
                Ok(HeldTx::In(state.txs.get(id, &caller.0)?))
            }
        }
    }

    fn tx(&self) -> Tx<'_> {
        match self {
            HeldTx::None => Tx::None,
            HeldTx::Single => Tx::Single,
            HeldTx::In(t) => Tx::In(t),
        }
    }
}

/// Sends a message (`MQSendMessage`): JSON properties and body, or a raw body with `MQ-*`
/// headers.
#[utoipa::path(post, path = "/api/queues/{name}/messages", tag = "messages",
    params(("name" = String, Path, description = "Queue path, format name or bare private queue name"), TxParam),
    request_body(content = SendBody, description = "JSON; or any other content type as the raw body"),
    responses((status = 201, body = Sent), (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 403, body = Problem), (status = 507, description = "MQ_ERROR_INSUFFICIENT_RESOURCES (quota)", body = Problem)))]
async fn send_message(
    State(state): Shared,
    caller: Caller,
    Path(name): Path<String>,
    Query(p): Query<TxParam>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Sent>)> {
    let name = queue_name(&name);
    caller.check(Right::Send, &name)?;
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let msg = if json {
        let b: SendBody = serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid(format!("the message is not valid JSON: {e}")))?;
        b.into_message()?
    } else {
        let mut m = SendBody::from_headers(&headers)?.into_message()?;
        m.body = body;
        m
    };
    let tx = HeldTx::resolve(&state, &caller, p.tx.as_deref())?;
    let q = state.qm.open(&name)?;
    if q.requires_authentication() && !caller.0.is_authenticated() {
        return Err(ApiError(Error::new(
            ErrorCode::MessageNotAuthenticated,
            format!("{name} accepts only authenticated messages: send with a user's bearer token"),
        )));
    }
    let id = engine(|| q.send(msg, tx.tx()))?;
    Ok((StatusCode::CREATED, Json(Sent { id: id.to_string() })))
}

/// Paging through a queue by lookup id.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BrowseParams {
    /// Start after this lookup id (the `next` of the previous page); from the first message
    /// when absent.
    #[serde(default)]
    pub after: Option<u64>,
    /// Messages per page (default 50, at most 1000).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// One page of messages, in lookup-id order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Page {
    /// The messages.
    pub messages: Vec<MessageView>,
    /// The `after` for the next page; none when this page reached the end.
    pub next: Option<u64>,
}

/// Browses a queue without removing anything: a page of messages in lookup-id order
/// (`MQReceiveMessageByLookupId` with `MQ_LOOKUP_PEEK_NEXT`).
#[utoipa::path(get, path = "/api/queues/{name}/messages", tag = "messages",
    params(("name" = String, Path, description = "Queue path, format name or bare private queue name"), BrowseParams),
    responses((status = 200, body = Page), (status = 404, body = Problem), (status = 403, body = Problem)))]
async fn browse_messages(
    State(state): Shared,
    caller: Caller,
    Path(name): Path<String>,
    Query(p): Query<BrowseParams>,
) -> ApiResult<Json<Page>> {
    let name = queue_name(&name);
    caller.check(Right::Peek, &name)?;
    let q = state.qm.open(&name)?;
    let limit = p.limit.unwrap_or(50).clamp(1, 1000);
    let mut messages = Vec::new();
    let mut at = p.after;
    let mut next = None;
    while messages.len() < limit {
        let action = match at {
            None => LookupAction::First,
            Some(l) => LookupAction::Next(l),
        };
        match q.peek_by_lookup_id(action) {
            Ok(m) => {
                at = Some(m.lookup_id());
                messages.push(MessageView::from(&m));
            }
            Err(e) if e.code() == ErrorCode::MessageNotFound => break,
            Err(e) => return Err(e.into()),
        }
        if messages.len() == limit {
            next = at;
        }
    }
    Ok(Json(Page { messages, next }))
}

/// Peeks at the first message (`MQReceiveMessage` with `MQ_ACTION_PEEK_CURRENT`), waiting up to
/// `timeout_ms` for one. 404 with `MQ_ERROR_IO_TIMEOUT` when none came.
#[utoipa::path(post, path = "/api/queues/{name}/peek", tag = "messages",
    params(("name" = String, Path, description = "Queue path, format name or bare private queue name"), WaitParams),
    responses((status = 200, body = MessageView), (status = 404, body = Problem)))]
async fn peek_head(
    State(state): Shared,
    caller: Caller,
    Path(name): Path<String>,
    Query(p): Query<WaitParams>,
) -> ApiResult<Json<MessageView>> {
    let name = queue_name(&name);
    caller.check(Right::Peek, &name)?;
    let q = state.qm.open(&name)?;
    let timeout = Duration::from_millis(p.timeout_ms.unwrap_or(0)).min(MAX_WAIT);
    let m = q.peek_async(timeout).await?;
    Ok(Json(MessageView::from(&m)))
}

/// Receives the first message (`MQReceiveMessage`), waiting up to `timeout_ms` for one, under
/// the transaction `tx` names (none, `single`, or an open transaction's id). 404 with
/// `MQ_ERROR_IO_TIMEOUT` when none came.
#[utoipa::path(post, path = "/api/queues/{name}/receive", tag = "messages",
    params(("name" = String, Path, description = "Queue path, format name or bare private queue name"), WaitParams),
    responses((status = 200, body = MessageView), (status = 404, body = Problem), (status = 403, body = Problem),
        (status = 400, description = "MQ_ERROR_TRANSACTION_USAGE and other refusals", body = Problem)))]
async fn receive_head(
    State(state): Shared,
    caller: Caller,
    Path(name): Path<String>,
    Query(p): Query<WaitParams>,
) -> ApiResult<Json<MessageView>> {
    let name = queue_name(&name);
    caller.check(Right::Receive, &name)?;
    let q = state.qm.open(&name)?;
    let tx = HeldTx::resolve(&state, &caller, p.tx.as_deref())?;
    let timeout = Duration::from_millis(p.timeout_ms.unwrap_or(0)).min(MAX_WAIT);
    let receive = Box::pin(q.receive_async(timeout, tx.tx()));
    let m = match hook() {
        Some(h) => Hooked::new(h, receive).await,
        None => receive.await,
    }?;
    Ok(Json(MessageView::from(&m)))
}

/// Peeks at the message with this lookup id (`MQ_LOOKUP_PEEK_CURRENT`).
#[utoipa::path(get, path = "/api/queues/{name}/messages/{lookup_id}", tag = "messages",
    params(("name" = String, Path, description = "Queue path, format name or bare private queue name"),
        ("lookup_id" = u64, Path, description = "The message's lookup id")),
    responses((status = 200, body = MessageView), (status = 404, description = "MQ_ERROR_MESSAGE_NOT_FOUND", body = Problem)))]
async fn peek_message(
    State(state): Shared,
    caller: Caller,
    Path((name, lookup)): Path<(String, u64)>,
) -> ApiResult<Json<MessageView>> {
    let name = queue_name(&name);
    caller.check(Right::Peek, &name)?;
    let q = state.qm.open(&name)?;
    let m = q.peek_by_lookup_id(LookupAction::Current(lookup))?;
    Ok(Json(MessageView::from(&m)))
}

/// Receives the message with this lookup id (`MQ_LOOKUP_RECEIVE_CURRENT`), under the
/// transaction `tx` names.
#[utoipa::path(delete, path = "/api/queues/{name}/messages/{lookup_id}", tag = "messages",
    params(("name" = String, Path, description = "Queue path, format name or bare private queue name"),
        ("lookup_id" = u64, Path, description = "The message's lookup id"), TxParam),
    responses((status = 200, body = MessageView), (status = 404, description = "MQ_ERROR_MESSAGE_NOT_FOUND", body = Problem)))]
async fn receive_message(
    State(state): Shared,
    caller: Caller,
    Path((name, lookup)): Path<(String, u64)>,
    Query(p): Query<TxParam>,
) -> ApiResult<Json<MessageView>> {
    let name = queue_name(&name);
    caller.check(Right::Receive, &name)?;
    let q = state.qm.open(&name)?;
    let tx = HeldTx::resolve(&state, &caller, p.tx.as_deref())?;
    let m = engine(|| q.receive_by_lookup_id(LookupAction::Current(lookup), tx.tx()))?;
    Ok(Json(MessageView::from(&m)))
}

/// Where to move a message.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveTo {
    /// `;poison` for a subqueue of the message's queue, or a queue's name as in the path
    /// (`orders;poison`, or `orders` to move a message back to its main queue).
    pub to: String,
}

/// Moves a message between a queue and its subqueues (`MQMoveMessage`), under the transaction
/// `tx` names (the destination must belong to the same queue).
#[utoipa::path(post, path = "/api/queues/{name}/messages/{lookup_id}/move", tag = "messages",
    params(("name" = String, Path, description = "Queue path, format name or bare private queue name"),
        ("lookup_id" = u64, Path, description = "The message's lookup id"), TxParam),
    request_body = MoveTo,
    responses((status = 204), (status = 404, body = Problem), (status = 400, body = Problem)))]
async fn move_message(
    State(state): Shared,
    caller: Caller,
    Path((name, lookup)): Path<(String, u64)>,
    Query(p): Query<TxParam>,
    body: Result<Json<MoveTo>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<StatusCode> {
    let Json(to) = body.map_err(|e| ApiError::invalid(e.body_text()))?;
    let name = queue_name(&name);
    caller.check(Right::Receive, &name)?;
    let from = state.qm.open(&name)?;
    let target = match to.to.strip_prefix(';') {
        // A subqueue of the queue the message is in.
        Some(sub) => {
            let main = name.split(';').next().unwrap_or(&name);
            format!("{main};{sub}")
        }
        None => queue_name(&to.to),
    };
    caller.check(Right::Receive, &target)?;
    let dest = state.qm.open(&target)?;
    let tx = HeldTx::resolve(&state, &caller, p.tx.as_deref())?;
    engine(|| from.move_message(lookup, &dest, tx.tx()))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Where a requeued message went.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Requeued {
    /// The queue it is back in.
    pub queue: String,
    /// Its id there: the same message moved back from a subqueue, a new message (same body and
    /// properties) sent again from a dead-letter queue.
    pub id: String,
}

/// Puts a dead letter back where it was going: a message in a subqueue (`;poison`) moves back
/// to its main queue; a message in a dead-letter queue (`DEADLETTER`, `DEADXACT`, or any queue
/// holding messages sent elsewhere) is sent again to its destination, a local queue, and
/// removed. From `DEADXACT` to a transactional queue both happen in one transaction; otherwise
/// the copy is sent first and the dead letter removed after, so a failure in between leaves a
/// duplicate rather than a loss.
#[utoipa::path(post, path = "/api/queues/{name}/messages/{lookup_id}/requeue", tag = "messages",
    params(("name" = String, Path, description = "The dead-letter queue or subqueue holding it (`DIRECT=OS:.\\SYSTEM$;DEADLETTER`, `orders;poison`)"),
        ("lookup_id" = u64, Path, description = "The message's lookup id")),
    responses((status = 200, body = Requeued), (status = 404, body = Problem), (status = 400, body = Problem)))]
async fn requeue_message(
    State(state): Shared,
    caller: Caller,
    Path((name, lookup)): Path<(String, u64)>,
) -> ApiResult<Json<Requeued>> {
    let name = queue_name(&name);
    caller.check(Right::Receive, &name)?;
    let from = state.qm.open(&name)?;
    let subqueue = matches!(
        from.name().queue(),
        QueueRef::Private {
            subqueue: Some(_),
            ..
        } | QueueRef::Public {
            subqueue: Some(_),
            ..
        }
    );
    if let Some((main, _)) = name.rsplit_once(';').filter(|_| subqueue) {
        // A subqueue's message goes back to its main queue, keeping its id and position.
        let to = state.qm.open(main)?;
        let m = from.peek_by_lookup_id(LookupAction::Current(lookup))?;
        engine(|| from.move_message(lookup, &to, Tx::None))?;
        return Ok(Json(Requeued {
            queue: to.name().to_string(),
            id: m.id().to_string(),
        }));
    }
    let m = from.peek_by_lookup_id(LookupAction::Current(lookup))?;
    let Some(dest) = m.destination().cloned() else {
        return Err(ApiError::invalid(
            "the message names no destination to go back to",
        ));
    };
    let same = match (
        state.qm.queue_info(&name),
        state.qm.queue_info(&dest.to_string()),
    ) {
        (Ok(a), Ok(b)) => a.id == b.id,
        _ => false,
    };
    if same {
        return Err(ApiError(Error::new(
            ErrorCode::IllegalOperation,
            format!("the message is in its destination {dest} already"),
        )));
    }
    caller.check(Right::Send, &dest.to_string())?;
    let to = state.qm.open_name(&dest)?;
    let mut copy = Message::new(m.body.clone());
    copy.label = m.label.clone();
    copy.body_type = m.body_type;
    copy.correlation_id = m.correlation_id;
    copy.app_specific = m.app_specific;
    copy.priority = m.priority;
    copy.delivery = m.delivery;
    copy.response_queue = m.response_queue.clone();
    copy.admin_queue = m.admin_queue.clone();
    copy.acknowledge = m.acknowledge;
    copy.journal = m.journal;
    copy.extension = m.extension.clone();
    let id = engine(|| -> Result<MessageId, Error> {
        if m.is_transactional() && from.is_transactional() {
            let t = state.qm.begin();
            from.receive_by_lookup_id(LookupAction::Current(lookup), Tx::In(&t))?;
            let id = to.send(copy, Tx::In(&t))?;
            t.commit()?;
            Ok(id)
        } else {
            let tx = if m.is_transactional() {
                Tx::Single
            } else {
                Tx::None
            };
            let id = to.send(copy, tx)?;
            from.receive_by_lookup_id(LookupAction::Current(lookup), Tx::None)?;
            Ok(id)
        }
    })?;
    Ok(Json(Requeued {
        queue: dest.to_string(),
        id: id.to_string(),
    }))
}

/// A trigger, its rules and its counters, as `mqemu trigger list` shows them.
#[utoipa::path(get, path = "/api/triggers", tag = "triggers",
    responses((status = 200, description = "The triggers (empty when the Triggers service is not running)", body = [Object]),
        (status = 403, body = Problem)))]
async fn list_triggers(
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

// ---------------------------------------------------------------------------------------------
// Transactions

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
async fn begin_transaction(
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
async fn commit_transaction(
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
async fn abort_transaction(
    State(state): Shared,
    caller: Caller,
    Path(id): Path<u64>,
) -> ApiResult<StatusCode> {
    let tx = state.txs.take(id, &caller.0)?;
    engine(|| tx.abort());
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------------
// Outgoing queues

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
async fn list_outgoing(
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
async fn act_on_outgoing(
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
