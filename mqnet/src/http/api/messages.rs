//! The JSON API on messages: send (JSON or a raw body with `MQ-*` headers), browse by lookup
//! id, peek and receive at the head or by lookup id, under a held transaction or none.

use super::*;

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

pub(super) fn parse_id(s: &str, what: &str) -> Result<MessageId, ApiError> {
    s.parse()
        .map_err(|_| ApiError::invalid(format!("{what} {s:?} is not a message id (guid\\ordinal)")))
}

pub(super) fn parse_queue(s: &str) -> Result<Arc<QueueName>, ApiError> {
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
pub(super) const MAX_WAIT: Duration = Duration::from_secs(600);

/// The transaction a `tx` parameter names, held for the request.
pub(super) enum HeldTx {
    None,
    Single,
    In(Arc<mqcore::Transaction>),
}

impl HeldTx {
    pub(super) fn resolve(
        state: &AppState,
        caller: &Caller,
        tx: Option<&str>,
    ) -> Result<HeldTx, ApiError> {
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

    pub(super) fn tx(&self) -> Tx<'_> {
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
pub(super) async fn send_message(
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
pub(super) async fn browse_messages(
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
pub(super) async fn peek_head(
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
pub(super) async fn receive_head(
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
pub(super) async fn peek_message(
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
pub(super) async fn receive_message(
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
