//! The messages of the native protocol: one request type, one response type, and their encoding.
//!
//! Every frame's payload is a [`Envelope`] in postcard's encoding (a stable, documented,
//! compact serde format): the request id the client chose, then the request or the response. The
//! server answers each request exactly once, with the same id, in any order, so one connection
//! can have many requests in flight (pipelining). The first request of a connection must be
//! [`Request::Hello`]; its answer is [`Response::Welcome`] or an error after which the server
//! closes the connection.
//!
//! Errors travel as MSMQ HRESULTs with their detail sentence, so a remote caller branches on the
//! same [`ErrorCode`] as an in-process one.

use std::time::Duration;

use bytes::Bytes;
use mqcore::transfer::{Inbound, OutgoingInfo, Reply};
use mqcore::triggers::{Rule, Trigger, TriggerDef, TriggerStats};
use mqcore::{
    Compat, Error, ErrorCode, LookupAction, Message, MessageId, QueueInfo, QueueProps, QueueUpdate,
};
use serde::{Deserialize, Serialize};

use crate::frame;

/// The protocol versions this build speaks; the handshake picks the highest both sides have.
pub const PROTOCOL_VERSION: u16 = 1;

/// The default TCP port of the native protocol (MSMQ's own binary protocol keeps 1801).
pub const DEFAULT_PORT: u16 = 18010;

/// A request or a response with its request id.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// Chosen by the client, echoed by the server.
    pub id: u64,
    /// What is asked or answered.
    pub body: T,
}

/// Which transaction a remote operation runs under (the wire form of `mqcore::Tx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxRef {
    /// `MQ_NO_TRANSACTION`.
    None,
    /// `MQ_SINGLE_MESSAGE`.
    Single,
    /// A transaction this connection began (its id from [`Response::Tx`]).
    In(u64),
}

/// Which message a peek or receive takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Select {
    /// The first message, waiting up to the timeout.
    Head,
    /// By lookup id (`MQReceiveMessageByLookupId`); never waits.
    Lookup(LookupAction),
    /// By message id; never waits.
    Id(MessageId),
    /// The first with this correlation id; never waits.
    Correlation(MessageId),
}

/// What a cursor does (`MQ_ACTION_*` with a cursor handle).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CursorAction {
    /// `MQ_ACTION_PEEK_CURRENT`.
    PeekCurrent,
    /// `MQ_ACTION_PEEK_NEXT`.
    PeekNext,
    /// `MQ_ACTION_RECEIVE` at the cursor.
    ReceiveCurrent,
}

/// A timeout on the wire, in milliseconds; `u64::MAX` is INFINITE.
pub fn timeout_to_wire(timeout: Duration) -> u64 {
    if timeout == mqcore::INFINITE {
        u64::MAX
    } else {
        timeout.as_millis().min(u64::MAX as u128 - 1) as u64
    }
}

/// The inverse of [`timeout_to_wire`].
pub fn timeout_from_wire(ms: u64) -> Duration {
    if ms == u64::MAX {
        mqcore::INFINITE
    } else {
        Duration::from_millis(ms)
    }
}

/// Everything a client can ask. Queue names are path or format names as the engine takes them.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// First request of every connection.
    Hello {
        /// Lowest protocol version the client speaks.
        min_version: u16,
        /// Highest protocol version the client speaks.
        max_version: u16,
        /// The authentication token, when the server asks for one.
        token: Option<String>,
        /// Free text for the server's logs (program name and version).
        client: String,
    },
    /// `MQCreateQueue`.
    CreateQueue {
        /// Path name.
        path: String,
        /// Properties.
        props: QueueProps,
    },
    /// `MQDeleteQueue`.
    DeleteQueue {
        /// The queue.
        name: String,
    },
    /// Every queue, with management properties.
    ListQueues,
    /// One queue's management properties; also how a client checks a name before using it.
    QueueInfo {
        /// The queue.
        name: String,
    },
    /// `MQSetQueueProperties`.
    SetQueueProps {
        /// The queue.
        name: String,
        /// What changes.
        update: QueueUpdate,
    },
    /// `MQPurgeQueue` (also works on journals and system queues).
    Purge {
        /// The queue.
        name: String,
    },
    /// Number of messages in a queue, locked ones included.
    Len {
        /// The queue.
        name: String,
    },
    /// `MQSendMessage`.
    Send {
        /// The destination.
        queue: String,
        /// The message.
        msg: Box<Message>,
        /// The transaction.
        tx: TxRef,
    },
    /// `MQReceiveMessage` without a cursor.
    Receive {
        /// The queue.
        queue: String,
        /// Which message.
        select: Select,
        /// Milliseconds to wait for [`Select::Head`] (see [`timeout_to_wire`]).
        timeout_ms: u64,
        /// The transaction.
        tx: TxRef,
    },
    /// `MQReceiveMessage` with `MQ_ACTION_PEEK_CURRENT` and no cursor.
    Peek {
        /// The queue.
        queue: String,
        /// Which message.
        select: Select,
        /// Milliseconds to wait for [`Select::Head`].
        timeout_ms: u64,
    },
    /// `MQCreateCursor`: answered with [`Response::Cursor`].
    OpenCursor {
        /// The queue.
        queue: String,
    },
    /// An action at a cursor.
    CursorOp {
        /// The cursor's id.
        cursor: u64,
        /// What to do.
        action: CursorAction,
        /// Milliseconds to wait.
        timeout_ms: u64,
        /// The transaction (receives only).
        tx: TxRef,
    },
    /// `MQCloseCursor`.
    CloseCursor {
        /// The cursor's id.
        cursor: u64,
    },
    /// `MQMoveMessage`.
    Move {
        /// The queue (or subqueue) the message is in.
        queue: String,
        /// Its lookup id.
        lookup: u64,
        /// Where it goes.
        to: String,
        /// The transaction.
        tx: TxRef,
    },
    /// `MQMarkMessageRejected`.
    Reject {
        /// The queue.
        queue: String,
        /// The message's lookup id.
        lookup: u64,
    },
    /// `MQBeginTransaction`: answered with [`Response::Tx`].
    Begin,
    /// Enlists in an external (two-phase) transaction.
    BeginExternal {
        /// The coordinator's id for it.
        xid: String,
    },
    /// Phase one of an external transaction.
    Prepare {
        /// The transaction's id.
        tx: u64,
    },
    /// Commit.
    Commit {
        /// The transaction's id.
        tx: u64,
    },
    /// Abort.
    Abort {
        /// The transaction's id.
        tx: u64,
    },
    /// Ids of prepared transactions whose outcome is unknown.
    InDoubt,
    /// Commits or aborts an in-doubt transaction.
    ResolveInDoubt {
        /// Its id.
        xid: String,
        /// Commit (true) or abort.
        commit: bool,
    },
    /// Server and queue-manager figures.
    Stats,
    /// Does nothing; answered with [`Response::Done`] (keep-alive, latency probe).
    Ping,
    /// Administration of MSMQ Triggers' rules and triggers (what `trigadm` does); needs the
    /// admin right.
    Triggers(TriggerRequest),
    /// Messages another queue manager's outgoing queue transfers here (queue-manager transfer):
    /// answered once what was accepted is durable.
    Transfer {
        /// The sending queue manager's GUID.
        source: uuid::Uuid,
        /// The sequence: the destination's format name as the sender spells it.
        sequence: String,
        /// The destination queue's path on this queue manager.
        queue: String,
        /// The messages, in sequence order.
        items: Vec<Inbound>,
    },
    /// The outgoing queues and their transfer state.
    ListOutgoing,
    /// A management action on an outgoing queue (`MQMgmtAction`).
    OutgoingAction {
        /// The destination's format name, as the list shows it.
        name: String,
        /// `PAUSE`, `RESUME` or `EOD_RESEND`.
        action: OutgoingAction,
    },
    /// Declares the connection an application on the server's own computer, as MSMQ's local
    /// applications are (they reach their queue manager without the network): MSMQ lets them
    /// receive under any transaction, single-message and internal ones included, where a remote
    /// receive needs an external one. Answered with [`Response::Done`]; refused with
    /// `MQ_ERROR_ACCESS_DENIED` unless the connection comes from a loopback address.
    Local,
}

/// A Triggers administration request. Rules and triggers are named by name or by id.
#[derive(Debug, Serialize, Deserialize)]
pub enum TriggerRequest {
    /// Defines a rule from MSMQ's condition and action strings; answered with [`Response::Rules`].
    AddRule {
        /// At most 128 characters.
        name: String,
        /// At most 255 characters.
        description: String,
        /// TAB-terminated conditions (`$MSG_LABEL_CONTAINS=x\t`); empty means always.
        condition: String,
        /// `EXE\t...`, `COM\t...` or `HTTP\t...`.
        action: String,
    },
    /// Every rule.
    ListRules,
    /// One rule.
    ShowRule {
        /// Its name or id.
        name: String,
    },
    /// Deletes a rule, detaching it from every trigger.
    DeleteRule {
        /// Its name or id.
        name: String,
    },
    /// Defines a trigger; answered with [`Response::Triggers`].
    AddTrigger(TriggerDef),
    /// Attaches a rule at the end of a trigger's list.
    Attach {
        /// The trigger's name or id.
        trigger: String,
        /// The rule's name or id.
        rule: String,
    },
    /// Detaches a rule from a trigger.
    Detach {
        /// The trigger's name or id.
        trigger: String,
        /// The rule's name or id.
        rule: String,
    },
    /// Every trigger.
    ListTriggers,
    /// One trigger.
    ShowTrigger {
        /// Its name or id.
        name: String,
    },
    /// Deletes a trigger.
    DeleteTrigger {
        /// Its name or id.
        name: String,
    },
    /// Enables or disables a trigger.
    SetEnabled {
        /// Its name or id.
        name: String,
        /// Enabled (true) or disabled.
        enabled: bool,
    },
}

/// A trigger as administration shows it: its definition, its rules' names in order, and what it
/// has done since the service started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerView {
    /// The definition.
    pub trigger: Trigger,
    /// Names of its rules, in the order they run.
    pub rule_names: Vec<String>,
    /// Its counters.
    pub stats: TriggerStats,
}

/// What the server says about itself and its queue manager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// The queue manager's computer name.
    pub name: String,
    /// Its GUID.
    pub guid: String,
    /// Compatibility level.
    pub compat: Compat,
    /// Whether it stores messages on disk.
    pub durable: bool,
    /// Queues.
    pub queues: usize,
    /// Messages in all queues.
    pub messages: u64,
    /// Bytes in all queues.
    pub bytes: u64,
    /// Connections open now.
    pub connections: usize,
    /// Connections accepted since start.
    pub connections_total: u64,
    /// Requests answered since start.
    pub requests_total: u64,
    /// Seconds since start.
    pub uptime_secs: u64,
}

/// Every answer.
#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    /// The handshake succeeded.
    Welcome {
        /// The version both sides speak.
        version: u16,
        /// The queue manager's computer name.
        server: String,
        /// Its compatibility level.
        compat: Compat,
        /// The largest frame payload the server accepts.
        max_frame: u32,
    },
    /// Done, nothing to return.
    Done,
    /// A refusal: the MSMQ HRESULT and what was wrong.
    Error {
        /// The HRESULT.
        code: u32,
        /// The detail sentence.
        detail: String,
    },
    /// A sent message's id.
    Sent(MessageId),
    /// A received or peeked message.
    Message(Box<Message>),
    /// A list of queues.
    Queues(Vec<QueueInfo>),
    /// One queue.
    Queue(Box<QueueInfo>),
    /// A count.
    Count(u64),
    /// A transaction's id on this connection.
    Tx(u64),
    /// A cursor's id on this connection.
    Cursor(u64),
    /// Transaction ids.
    Xids(Vec<String>),
    /// Server figures.
    Stats(Stats),
    /// Trigger rules.
    Rules(Vec<Rule>),
    /// Triggers.
    Triggers(Vec<TriggerView>),
    /// What the receiver did with a transferred batch.
    Transferred(Reply),
    /// Outgoing queues.
    Outgoing(Vec<OutgoingView>),
}

/// `MQMgmtAction` on an outgoing queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutgoingAction {
    /// `PAUSE`: stop sending; the messages stay (state `ONHOLD`).
    Pause,
    /// `RESUME`: send again, in order.
    Resume,
    /// `EOD_RESEND`: send every unacknowledged message again now.
    EodResend,
}

impl std::str::FromStr for OutgoingAction {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.to_ascii_uppercase().replace('-', "_").as_str() {
            "PAUSE" => Ok(OutgoingAction::Pause),
            "RESUME" => Ok(OutgoingAction::Resume),
            "EOD_RESEND" => Ok(OutgoingAction::EodResend),
            _ => Err(Error::new(
                ErrorCode::InvalidParameter,
                format!("unknown action {s:?}: MQMgmtAction on a queue takes PAUSE, RESUME or EOD_RESEND"),
            )),
        }
    }
}

/// An outgoing queue as management shows it (`MQMgmtGetInfo` on an outgoing queue).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutgoingView {
    /// The engine's counts.
    pub info: OutgoingInfo,
    /// `PROPID_MGMT_QUEUE_STATE`: `CONNECTED`, `WAITING`, `ONHOLD`, `INACTIVE`...
    pub state: String,
    /// Messages sent on the current connection and not yet answered (MSMQ's unacknowledged
    /// count).
    pub unacknowledged: usize,
    /// Resends since the last successful answer.
    pub resends: u32,
    /// Milliseconds until the next attempt, while waiting.
    pub next_attempt_ms: Option<u64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

impl Response {
    /// The answer for an engine error.
    pub fn error(e: &Error) -> Response {
        Response::Error {
            code: e.code().hresult(),
            detail: e.detail().to_owned(),
        }
    }
}

impl From<Response> for Result<Response, Error> {
    fn from(r: Response) -> Self {
        match r {
            Response::Error { code, detail } => Err(Error::new(
                ErrorCode::from_hresult(code).unwrap_or(ErrorCode::Error),
                detail,
            )),
            other => Ok(other),
        }
    }
}

/// Encodes an envelope into a frame of its own.
pub fn frame<T: Serialize>(id: u64, body: &T) -> Bytes {
    let mut w = Vec::new();
    frame_into(id, body, &mut w);
    Bytes::from(w)
}

/// Appends the frame of an envelope to `out`, serializing straight into it, and returns the
/// frame's payload length. Answers and pipelined requests gather in one buffer this way and leave
/// in one write.
pub fn frame_into<T: Serialize>(id: u64, body: &T, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.resize(start + frame::HEADER_LEN, 0);
    *out = postcard::to_extend(&Envelope { id, body }, std::mem::take(out))
        .expect("postcard cannot fail to serialize into a Vec");
    frame::seal(&mut out[start..]);
    out.len() - start - frame::HEADER_LEN
}

/// Decodes a frame's payload.
pub fn decode<'de, T: Deserialize<'de>>(payload: &'de [u8]) -> Result<Envelope<T>, Error> {
    postcard::from_bytes(payload).map_err(|e| {
        Error::new(
            ErrorCode::InvalidParameter,
            format!("a frame does not hold a valid protocol message: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn requests_round_trip() {
        let msg = Message::new("body").with_label("l");
        let f = frame(
            7,
            &Request::Send {
                queue: r".\private$\q".into(),
                msg: Box::new(msg.clone()),
                tx: TxRef::Single,
            },
        );
        let mut b = BytesMut::from(&f[..]);
        let payload = frame::decode(&mut b, 1 << 20).unwrap().unwrap();
        let env: Envelope<Request> = decode(&payload).unwrap();
        assert_eq!(env.id, 7);
        match env.body {
            Request::Send { queue, msg: m, tx } => {
                assert_eq!(queue, r".\private$\q");
                assert_eq!(*m, msg);
                assert_eq!(tx, TxRef::Single);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_keep_their_code() {
        let e = Error::new(ErrorCode::AccessDenied, "no");
        let r: Result<Response, Error> = Response::error(&e).into();
        assert_eq!(r.unwrap_err(), e);
    }

    #[test]
    fn timeouts() {
        assert_eq!(
            timeout_from_wire(timeout_to_wire(mqcore::INFINITE)),
            mqcore::INFINITE
        );
        let d = Duration::from_millis(1500);
        assert_eq!(timeout_from_wire(timeout_to_wire(d)), d);
    }
}
