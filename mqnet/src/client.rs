//! Rust clients of the native protocol: [`Client`] (async, on tokio) and [`BlockingClient`].
//!
//! They have the engine's method names and error codes, so code moves between an embedded
//! `mqcore::QueueManager` and a remote server by changing how it connects. Queue names may be
//! format names that say where the queue is (`DIRECT=TCP:10.0.0.5\private$\orders`,
//! `DIRECT=OS:host\private$\orders`): [`Client::connect_to_queue`] connects to that host, and
//! every method sends the server the local name of the queue.
//!
//! One connection carries any number of requests at once: each call writes its request and
//! waits for the answer with its id, so concurrent calls on clones of one `Client` pipeline.
//! Dropping a call's future after its request was written does not cancel it on the server:
//! a receive dropped that way may still take a message. Use timeouts on the request instead.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::BytesMut;
use mqcore::{
    Compat, Error, ErrorCode, LookupAction, Message, MessageId, QueueInfo, QueueProps, QueueUpdate,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify};

use crate::frame;
use crate::names::{localize, server_of};
use crate::proto::{
    self, timeout_to_wire, CursorAction, Envelope, Request, Response, Select, Stats,
    TriggerRequest, TriggerView, TxRef, DEFAULT_PORT, PROTOCOL_VERSION,
};
use mqcore::triggers::Rule;

/// The answer to a [`TriggerRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriggerAnswer {
    /// Done (deletions).
    Done,
    /// The rules asked for, or the one added.
    Rules(Vec<Rule>),
    /// The triggers asked for, or the one changed.
    Triggers(Vec<TriggerView>),
}

/// Largest answer a client accepts (a list of many queues can exceed a message frame).
const MAX_ANSWER: usize = 64 * 1024 * 1024;

/// How a client connects.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The token the server's configuration gives this user, if it asks for one.
    pub token: Option<String>,
    /// The port of servers named by format names (which carry no port).
    pub port: u16,
    /// Time allowed to connect and shake hands.
    pub connect_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            token: None,
            port: DEFAULT_PORT,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// The transaction a remote operation runs under (the remote form of `mqcore::Tx`).
#[derive(Clone, Copy)]
pub enum Tx<'a> {
    /// `MQ_NO_TRANSACTION`.
    None,
    /// `MQ_SINGLE_MESSAGE`.
    Single,
    /// Part of a transaction begun on the same connection.
    In(&'a RemoteTransaction),
}

impl<'a> From<&'a RemoteTransaction> for Tx<'a> {
    fn from(t: &'a RemoteTransaction) -> Tx<'a> {
        Tx::In(t)
    }
}

impl Tx<'_> {
    fn wire(self) -> TxRef {
        match self {
            Tx::None => TxRef::None,
            Tx::Single => TxRef::Single,
            Tx::In(t) => TxRef::In(t.id),
        }
    }
}

/// Frames of requests not yet written. A lone request (none other in flight) made while the
/// socket is free writes its frame at once; any other leaves its frame here, and the writer task
/// takes all that gathered in one write.
struct Outbox {
    frames: Vec<u8>,
    /// The writer task owns the socket until it finds `frames` empty. Only while this is false
    /// may a request write, and `frames` is then empty.
    writing: bool,
}

/// Requests waiting for answers, or why the connection ended.
#[derive(Default)]
struct Pending {
    waiting: HashMap<u64, oneshot::Sender<Response>>,
    closed: Option<String>,
}

struct Conn {
    /// Requests not yet written.
    outbox: Mutex<Outbox>,
    /// Both the requests (a write that does not wait) and the writer task write here.
    wr: Arc<OwnedWriteHalf>,
    /// Wakes the writer task when it has frames to write.
    wake_writer: Arc<Notify>,
    pending: Mutex<Pending>,
    next_id: AtomicU64,
    server: String,
    compat: Compat,
    max_frame: usize,
    runtime: tokio::runtime::Handle,
    reader: tokio::task::JoinHandle<()>,
    writer: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

impl Conn {
    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_outbox(&self) -> std::sync::MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The connection is over: every waiting request fails with `why`, and so does every later one.
    fn close(&self, why: String) {
        let mut p = self.lock_pending();
        if p.closed.is_none() {
            p.closed = Some(why);
        }
        p.waiting.clear();
    }
}

/// An async connection to a server. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Client {
    conn: Arc<Conn>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.conn.server)
            .finish()
    }
}

fn unreachable_server(addr: &str, why: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorCode::RemoteMachineNotAvailable,
        format!("cannot reach the queue server at {addr}: {why}"),
    )
}

fn lost(why: &str) -> Error {
    Error::new(
        ErrorCode::ServiceNotAvailable,
        format!("the connection to the queue server ended: {why}"),
    )
}

impl Client {
    /// Connects to the server at `addr` (`host:port`) without a token.
    pub async fn connect(addr: &str) -> Result<Client, Error> {
        Client::connect_with(addr, &ClientOptions::default()).await
    }

    /// Connects to the server at `addr` with these options.
    pub async fn connect_with(addr: &str, options: &ClientOptions) -> Result<Client, Error> {
        tokio::time::timeout(options.connect_timeout, Client::handshake(addr, options))
            .await
            .map_err(|_| unreachable_server(addr, "timed out"))?
    }

    /// Connects to the server that holds the queue `name` names and opens the queue.
    pub async fn connect_to_queue(
        name: &str,
        options: &ClientOptions,
    ) -> Result<RemoteQueue, Error> {
        let addr = server_of(name, options.port)?;
        Client::connect_with(&addr, options).await?.open(name).await
    }

    async fn handshake(addr: &str, options: &ClientOptions) -> Result<Client, Error> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| unreachable_server(addr, e))?;
        let _ = stream.set_nodelay(true);
        let (mut rd, mut wr) = stream.into_split();
        let hello = Request::Hello {
            min_version: PROTOCOL_VERSION,
            max_version: PROTOCOL_VERSION,
            token: options.token.clone(),
            client: format!("mqnet {}", env!("CARGO_PKG_VERSION")),
        };
        wr.write_all(&proto::frame(0, &hello))
            .await
            .map_err(|e| unreachable_server(addr, e))?;
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let welcome = loop {
            match frame::decode(&mut buf, frame::DEFAULT_MAX_FRAME) {
                Ok(Some(f)) => break f,
                Ok(None) => {}
                Err(e) => return Err(unreachable_server(addr, e)),
            }
            let n = rd
                .read_buf(&mut buf)
                .await
                .map_err(|e| unreachable_server(addr, e))?;
            if n == 0 {
                return Err(unreachable_server(addr, "closed during the handshake"));
            }
        };
        let env: Envelope<Response> = proto::decode(&welcome)?;
        let Response::Welcome {
            server,
            compat,
            max_frame,
            ..
        } = Result::<Response, Error>::from(env.body)?
        else {
            return Err(unreachable_server(
                addr,
                "the server did not answer the handshake",
            ));
        };
        // The reader and the writer start once the connection they serve exists.
        let (start, started) = oneshot::channel::<std::sync::Weak<Conn>>();
        let reader = tokio::spawn(async move {
            let Ok(weak) = started.await else { return };
            let why = read_answers(rd, buf, &weak).await;
            if let Some(conn) = weak.upgrade() {
                conn.close(why);
            }
        });
        let (start_writer, writer_started) = oneshot::channel::<std::sync::Weak<Conn>>();
        let wake_writer = Arc::new(Notify::new());
        let woken = wake_writer.clone();
        let wr = Arc::new(wr);
        let socket = wr.clone();
        let writer = tokio::spawn(async move {
            let Ok(weak) = writer_started.await else {
                return;
            };
            let why = write_requests(&socket, &weak, &woken).await;
            if let Some(conn) = weak.upgrade() {
                conn.close(why);
            }
        });
        let conn = Arc::new(Conn {
            outbox: Mutex::new(Outbox {
                frames: Vec::with_capacity(64 * 1024),
                writing: false,
            }),
            wr,
            wake_writer,
            pending: Mutex::new(Pending::default()),
            next_id: AtomicU64::new(1),
            server,
            compat,
            max_frame: max_frame as usize,
            runtime: tokio::runtime::Handle::current(),
            reader,
            writer,
        });
        let _ = start.send(Arc::downgrade(&conn));
        let _ = start_writer.send(Arc::downgrade(&conn));
        Ok(Client { conn })
    }

    /// The server's computer name.
    pub fn server_name(&self) -> &str {
        &self.conn.server
    }

    /// The server's compatibility level.
    pub fn compat(&self) -> Compat {
        self.conn.compat
    }

    /// Sends one request and waits for its answer.
    pub async fn request(&self, req: Request) -> Result<Response, Error> {
        let id = self.conn.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        // A request with none before it in flight goes straight to the socket (a round trip
        // pays for no task switch); one made behind others joins them in the writer task's next
        // write (a pipeline pays one write for many requests, not one each).
        let alone = {
            let mut p = self.conn.lock_pending();
            if let Some(why) = &p.closed {
                return Err(lost(why));
            }
            p.waiting.insert(id, tx);
            p.waiting.len() == 1
        };
        {
            let mut out = self.conn.lock_outbox();
            let start = out.frames.len();
            let len = proto::frame_into(id, &req, &mut out.frames);
            if len > self.conn.max_frame {
                out.frames.truncate(start);
                drop(out);
                self.conn.lock_pending().waiting.remove(&id);
                return Err(Error::new(
                    ErrorCode::InsufficientResources,
                    format!(
                        "the request takes {len} bytes; the server accepts at most {}",
                        self.conn.max_frame
                    ),
                ));
            }
            if !out.writing && !alone {
                out.writing = true;
                self.conn.wake_writer.notify_one();
            } else if !out.writing {
                // The socket is free: write now, without waiting (and without a trip through
                // the writer task), and leave the writer whatever does not fit.
                let written = match self.conn.wr.try_write(&out.frames) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
                    Err(e) => {
                        drop(out);
                        self.conn.close(e.to_string());
                        return Err(lost(&e.to_string()));
                    }
                };
                out.frames.drain(..written);
                if !out.frames.is_empty() {
                    out.writing = true;
                    self.conn.wake_writer.notify_one();
                }
            }
        }
        drop(req);
        match rx.await {
            Ok(r) => r.into(),
            Err(_) => {
                let why = self.conn.lock_pending().closed.clone();
                Err(lost(why.as_deref().unwrap_or("closed")))
            }
        }
    }

    /// Sends a request whose answer nobody waits for (cleanup from `Drop`).
    fn fire(&self, req: Request) {
        let c = self.clone();
        self.conn.runtime.spawn(async move {
            let _ = c.request(req).await;
        });
    }

    /// Creates a queue (`MQCreateQueue`).
    pub async fn create_queue(&self, path: &str, props: QueueProps) -> Result<RemoteQueue, Error> {
        let path = localize(path)?;
        match self
            .request(Request::CreateQueue {
                path: path.clone(),
                props,
            })
            .await?
        {
            Response::Queue(info) => Ok(self.handle(info.path.to_string())),
            other => Err(unexpected(&other)),
        }
    }

    /// Deletes a queue (`MQDeleteQueue`).
    pub async fn delete_queue(&self, name: &str) -> Result<(), Error> {
        let name = localize(name)?;
        self.done(Request::DeleteQueue { name }).await
    }

    /// Opens a queue, checking that it exists (`MQOpenQueue`).
    pub async fn open(&self, name: &str) -> Result<RemoteQueue, Error> {
        let name = localize(name)?;
        self.count(Request::Len { name: name.clone() }).await?;
        Ok(self.handle(name))
    }

    fn handle(&self, name: String) -> RemoteQueue {
        RemoteQueue {
            client: self.clone(),
            name,
        }
    }

    /// Every queue the connection's user has a right on.
    pub async fn queues(&self) -> Result<Vec<QueueInfo>, Error> {
        match self.request(Request::ListQueues).await? {
            Response::Queues(q) => Ok(q),
            other => Err(unexpected(&other)),
        }
    }

    /// One queue's management properties.
    pub async fn queue_info(&self, name: &str) -> Result<QueueInfo, Error> {
        let name = localize(name)?;
        match self.request(Request::QueueInfo { name }).await? {
            Response::Queue(q) => Ok(q),
            other => Err(unexpected(&other)),
        }
    }

    /// Changes a queue's properties (`MQSetQueueProperties`).
    pub async fn set_queue_props(&self, name: &str, update: QueueUpdate) -> Result<(), Error> {
        let name = localize(name)?;
        self.done(Request::SetQueueProps { name, update }).await
    }

    /// Purges a queue; returns how many messages went.
    pub async fn purge(&self, name: &str) -> Result<usize, Error> {
        let name = localize(name)?;
        self.count(Request::Purge { name })
            .await
            .map(|n| n as usize)
    }

    /// Begins an internal transaction (`MQBeginTransaction`), owned by this connection.
    pub async fn begin(&self) -> Result<RemoteTransaction, Error> {
        self.new_tx(Request::Begin, false).await
    }

    /// Enlists in the external transaction `xid` (prepare, then commit).
    pub async fn begin_external(&self, xid: &str) -> Result<RemoteTransaction, Error> {
        self.new_tx(
            Request::BeginExternal {
                xid: xid.to_owned(),
            },
            true,
        )
        .await
    }

    async fn new_tx(&self, req: Request, external: bool) -> Result<RemoteTransaction, Error> {
        match self.request(req).await? {
            Response::Tx(id) => Ok(RemoteTransaction {
                client: self.clone(),
                id,
                external,
                ended: false,
            }),
            other => Err(unexpected(&other)),
        }
    }

    /// Prepared transactions whose outcome the server does not know.
    pub async fn in_doubt(&self) -> Result<Vec<String>, Error> {
        match self.request(Request::InDoubt).await? {
            Response::Xids(x) => Ok(x),
            other => Err(unexpected(&other)),
        }
    }

    /// Commits or aborts an in-doubt transaction.
    pub async fn resolve_in_doubt(&self, xid: &str, commit: bool) -> Result<(), Error> {
        self.done(Request::ResolveInDoubt {
            xid: xid.to_owned(),
            commit,
        })
        .await
    }

    /// Sends to a queue by name.
    pub async fn send(&self, name: &str, msg: Message, tx: Tx<'_>) -> Result<MessageId, Error> {
        self.handle(localize(name)?).send(msg, tx).await
    }

    /// Receives from a queue by name.
    pub async fn receive(
        &self,
        name: &str,
        timeout: Duration,
        tx: Tx<'_>,
    ) -> Result<Message, Error> {
        self.handle(localize(name)?).receive(timeout, tx).await
    }

    /// Peeks at a queue by name.
    pub async fn peek(&self, name: &str, timeout: Duration) -> Result<Message, Error> {
        self.handle(localize(name)?).peek(timeout).await
    }

    /// Server and queue-manager figures.
    pub async fn stats(&self) -> Result<Stats, Error> {
        match self.request(Request::Stats).await? {
            Response::Stats(s) => Ok(s),
            other => Err(unexpected(&other)),
        }
    }

    /// Administers the server's MSMQ Triggers service (needs the admin right).
    pub async fn triggers(&self, req: TriggerRequest) -> Result<TriggerAnswer, Error> {
        match self.request(Request::Triggers(req)).await? {
            Response::Done => Ok(TriggerAnswer::Done),
            Response::Rules(r) => Ok(TriggerAnswer::Rules(r)),
            Response::Triggers(t) => Ok(TriggerAnswer::Triggers(t)),
            other => Err(unexpected(&other)),
        }
    }

    /// One round trip that does nothing.
    pub async fn ping(&self) -> Result<(), Error> {
        self.done(Request::Ping).await
    }

    async fn done(&self, req: Request) -> Result<(), Error> {
        match self.request(req).await? {
            Response::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    async fn count(&self, req: Request) -> Result<u64, Error> {
        match self.request(req).await? {
            Response::Count(n) => Ok(n),
            other => Err(unexpected(&other)),
        }
    }

    async fn message(&self, req: Request) -> Result<Message, Error> {
        match self.request(req).await? {
            Response::Message(m) => Ok(*m),
            other => Err(unexpected(&other)),
        }
    }
}

/// Writes requests as they gather in the outbox, all that are there in one write; returns why the
/// connection ended. A task of its own, so a request whose future is dropped mid-write cannot
/// leave half a frame on the wire.
async fn write_requests(
    wr: &OwnedWriteHalf,
    conn: &std::sync::Weak<Conn>,
    woken: &Notify,
) -> String {
    let mut batch = Vec::with_capacity(64 * 1024);
    loop {
        let Some(c) = conn.upgrade() else {
            return "the client was dropped".into();
        };
        {
            let mut out = c.lock_outbox();
            std::mem::swap(&mut batch, &mut out.frames);
            if batch.is_empty() {
                // The socket goes back to the requests.
                out.writing = false;
            }
        }
        drop(c);
        if batch.is_empty() {
            // A request that hands over frames after this look leaves a permit: no wake-up is
            // lost.
            woken.notified().await;
            continue;
        }
        let mut at = 0;
        while at < batch.len() {
            if let Err(e) = wr.writable().await {
                return e.to_string();
            }
            match wr.try_write(&batch[at..]) {
                Ok(n) => at += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return e.to_string(),
            }
        }
        batch.clear();
    }
}

/// Reads answers and hands each to its waiting request; returns why the connection ended.
async fn read_answers(
    mut rd: tokio::net::tcp::OwnedReadHalf,
    mut buf: BytesMut,
    conn: &std::sync::Weak<Conn>,
) -> String {
    loop {
        loop {
            let f = match frame::decode(&mut buf, MAX_ANSWER) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => return e.to_string(),
            };
            let env: Envelope<Response> = match proto::decode(&f) {
                Ok(env) => env,
                Err(e) => return e.to_string(),
            };
            let Some(conn) = conn.upgrade() else {
                return "the client was dropped".into();
            };
            if env.id == 0 {
                // The server's last word before it closes the connection.
                if let Response::Error { code, detail } = &env.body {
                    return format!("{detail} ({code:#010x})");
                }
            }
            let waiter = conn
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .waiting
                .remove(&env.id);
            if let Some(w) = waiter {
                let _ = w.send(env.body);
            }
        }
        frame::make_read_room(&mut buf);
        match rd.read_buf(&mut buf).await {
            Ok(0) => return "the server closed the connection".into(),
            Ok(_) => {}
            Err(e) => return e.to_string(),
        }
    }
}

fn unexpected(r: &Response) -> Error {
    Error::new(
        ErrorCode::Error,
        format!("the server gave an answer of the wrong kind: {r:?}"),
    )
}

/// A queue on a server (the remote `MQOpenQueue` handle). Cheap to clone.
#[derive(Clone, Debug)]
pub struct RemoteQueue {
    client: Client,
    name: String,
}

impl RemoteQueue {
    /// The name the server knows the queue by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The connection this handle uses.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Sends a message (`MQSendMessage`).
    pub async fn send(&self, msg: Message, tx: Tx<'_>) -> Result<MessageId, Error> {
        msg.validate()?;
        let req = Request::Send {
            queue: self.name.clone(),
            msg: Box::new(msg),
            tx: tx.wire(),
        };
        match self.client.request(req).await? {
            Response::Sent(id) => Ok(id),
            other => Err(unexpected(&other)),
        }
    }

    /// Receives the first message, waiting up to `timeout` on the server.
    pub async fn receive(&self, timeout: Duration, tx: Tx<'_>) -> Result<Message, Error> {
        self.receive_select(Select::Head, timeout, tx).await
    }

    /// Peeks at the first message, waiting up to `timeout` on the server.
    pub async fn peek(&self, timeout: Duration) -> Result<Message, Error> {
        self.peek_select(Select::Head, timeout).await
    }

    async fn receive_select(
        &self,
        select: Select,
        timeout: Duration,
        tx: Tx<'_>,
    ) -> Result<Message, Error> {
        self.client
            .message(Request::Receive {
                queue: self.name.clone(),
                select,
                timeout_ms: timeout_to_wire(timeout),
                tx: tx.wire(),
            })
            .await
    }

    async fn peek_select(&self, select: Select, timeout: Duration) -> Result<Message, Error> {
        self.client
            .message(Request::Peek {
                queue: self.name.clone(),
                select,
                timeout_ms: timeout_to_wire(timeout),
            })
            .await
    }

    /// `MQReceiveMessageByLookupId` with `MQ_LOOKUP_PEEK_*`.
    pub async fn peek_by_lookup_id(&self, action: LookupAction) -> Result<Message, Error> {
        self.peek_select(Select::Lookup(action), Duration::ZERO)
            .await
    }

    /// `MQReceiveMessageByLookupId` with `MQ_LOOKUP_RECEIVE_*`.
    pub async fn receive_by_lookup_id(
        &self,
        action: LookupAction,
        tx: Tx<'_>,
    ) -> Result<Message, Error> {
        self.receive_select(Select::Lookup(action), Duration::ZERO, tx)
            .await
    }

    /// Peeks at the message with this id.
    pub async fn peek_by_id(&self, id: &MessageId) -> Result<Message, Error> {
        self.peek_select(Select::Id(*id), Duration::ZERO).await
    }

    /// Receives the message with this id.
    pub async fn receive_by_id(&self, id: &MessageId, tx: Tx<'_>) -> Result<Message, Error> {
        self.receive_select(Select::Id(*id), Duration::ZERO, tx)
            .await
    }

    /// Peeks at the first message with this correlation id.
    pub async fn peek_by_correlation_id(&self, id: &MessageId) -> Result<Message, Error> {
        self.peek_select(Select::Correlation(*id), Duration::ZERO)
            .await
    }

    /// Receives the first message with this correlation id.
    pub async fn receive_by_correlation_id(
        &self,
        id: &MessageId,
        tx: Tx<'_>,
    ) -> Result<Message, Error> {
        self.receive_select(Select::Correlation(*id), Duration::ZERO, tx)
            .await
    }

    /// Opens a cursor (`MQCreateCursor`), closed when dropped.
    pub async fn cursor(&self) -> Result<RemoteCursor, Error> {
        match self
            .client
            .request(Request::OpenCursor {
                queue: self.name.clone(),
            })
            .await?
        {
            Response::Cursor(id) => Ok(RemoteCursor {
                client: self.client.clone(),
                id,
            }),
            other => Err(unexpected(&other)),
        }
    }

    /// Messages in the queue, locked ones included.
    pub async fn len(&self) -> Result<usize, Error> {
        self.client
            .count(Request::Len {
                name: self.name.clone(),
            })
            .await
            .map(|n| n as usize)
    }

    /// Whether the queue holds no message.
    pub async fn is_empty(&self) -> Result<bool, Error> {
        Ok(self.len().await? == 0)
    }

    /// `MQMoveMessage`.
    pub async fn move_message(
        &self,
        lookup: u64,
        to: &RemoteQueue,
        tx: Tx<'_>,
    ) -> Result<(), Error> {
        self.client
            .done(Request::Move {
                queue: self.name.clone(),
                lookup,
                to: to.name.clone(),
                tx: tx.wire(),
            })
            .await
    }

    /// `MQMarkMessageRejected`.
    pub async fn reject(&self, lookup: u64) -> Result<(), Error> {
        self.client
            .done(Request::Reject {
                queue: self.name.clone(),
                lookup,
            })
            .await
    }

    /// Purges the queue.
    pub async fn purge(&self) -> Result<usize, Error> {
        self.client.purge(&self.name).await
    }
}

/// A transaction on a server, owned by its connection. Dropping it unfinished aborts it.
#[derive(Debug)]
pub struct RemoteTransaction {
    client: Client,
    id: u64,
    external: bool,
    ended: bool,
}

impl RemoteTransaction {
    /// Whether this is an external (two-phase) transaction.
    pub fn is_external(&self) -> bool {
        self.external
    }

    /// Phase one of an external transaction.
    pub async fn prepare(&self) -> Result<(), Error> {
        self.client.done(Request::Prepare { tx: self.id }).await
    }

    /// Commits.
    pub async fn commit(mut self) -> Result<(), Error> {
        self.ended = true;
        self.client.done(Request::Commit { tx: self.id }).await
    }

    /// Aborts: sends are discarded, received messages return.
    pub async fn abort(mut self) -> Result<(), Error> {
        self.ended = true;
        self.client.done(Request::Abort { tx: self.id }).await
    }
}

impl Drop for RemoteTransaction {
    fn drop(&mut self) {
        if !self.ended {
            self.client.fire(Request::Abort { tx: self.id });
        }
    }
}

/// A cursor on a server, closed when dropped.
#[derive(Debug)]
pub struct RemoteCursor {
    client: Client,
    id: u64,
}

impl RemoteCursor {
    async fn op(
        &self,
        action: CursorAction,
        timeout: Duration,
        tx: Tx<'_>,
    ) -> Result<Message, Error> {
        self.client
            .message(Request::CursorOp {
                cursor: self.id,
                action,
                timeout_ms: timeout_to_wire(timeout),
                tx: tx.wire(),
            })
            .await
    }

    /// Peeks at the message under the cursor (placing it on the first if new).
    pub async fn peek_current(&self, timeout: Duration) -> Result<Message, Error> {
        self.op(CursorAction::PeekCurrent, timeout, Tx::None).await
    }

    /// Moves to the next message and peeks at it.
    pub async fn peek_next(&self, timeout: Duration) -> Result<Message, Error> {
        self.op(CursorAction::PeekNext, timeout, Tx::None).await
    }

    /// Receives the message under the cursor.
    pub async fn receive_current(&self, timeout: Duration, tx: Tx<'_>) -> Result<Message, Error> {
        self.op(CursorAction::ReceiveCurrent, timeout, tx).await
    }
}

impl Drop for RemoteCursor {
    fn drop(&mut self) {
        self.client.fire(Request::CloseCursor { cursor: self.id });
    }
}

/// A blocking client: the async one driven by a runtime of its own. Do not use it from inside
/// an async runtime (use [`Client`] there).
#[derive(Clone)]
pub struct BlockingClient {
    rt: Arc<tokio::runtime::Runtime>,
    client: Client,
}

impl std::fmt::Debug for BlockingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.client.fmt(f)
    }
}

impl BlockingClient {
    /// Connects to the server at `addr` without a token.
    pub fn connect(addr: &str) -> Result<BlockingClient, Error> {
        BlockingClient::connect_with(addr, &ClientOptions::default())
    }

    /// Connects with options.
    pub fn connect_with(addr: &str, options: &ClientOptions) -> Result<BlockingClient, Error> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("mqnet-client")
            .enable_all()
            .build()
            .map_err(|e| Error::new(ErrorCode::InsufficientResources, e.to_string()))?;
        let client = rt.block_on(Client::connect_with(addr, options))?;
        Ok(BlockingClient {
            rt: Arc::new(rt),
            client,
        })
    }

    /// Connects to the server that holds the queue `name` names and opens it.
    pub fn connect_to_queue(name: &str, options: &ClientOptions) -> Result<BlockingQueue, Error> {
        let addr = server_of(name, options.port)?;
        BlockingClient::connect_with(&addr, options)?.open(name)
    }

    /// Runs any async client call to completion.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// The async client underneath.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn queue(&self, q: RemoteQueue) -> BlockingQueue {
        BlockingQueue {
            rt: self.rt.clone(),
            q,
        }
    }

    /// [`Client::create_queue`].
    pub fn create_queue(&self, path: &str, props: QueueProps) -> Result<BlockingQueue, Error> {
        let q = self.block_on(self.client.create_queue(path, props))?;
        Ok(self.queue(q))
    }

    /// [`Client::delete_queue`].
    pub fn delete_queue(&self, name: &str) -> Result<(), Error> {
        self.block_on(self.client.delete_queue(name))
    }

    /// [`Client::open`].
    pub fn open(&self, name: &str) -> Result<BlockingQueue, Error> {
        let q = self.block_on(self.client.open(name))?;
        Ok(self.queue(q))
    }

    /// [`Client::queues`].
    pub fn queues(&self) -> Result<Vec<QueueInfo>, Error> {
        self.block_on(self.client.queues())
    }

    /// [`Client::queue_info`].
    pub fn queue_info(&self, name: &str) -> Result<QueueInfo, Error> {
        self.block_on(self.client.queue_info(name))
    }

    /// [`Client::set_queue_props`].
    pub fn set_queue_props(&self, name: &str, update: QueueUpdate) -> Result<(), Error> {
        self.block_on(self.client.set_queue_props(name, update))
    }

    /// [`Client::purge`].
    pub fn purge(&self, name: &str) -> Result<usize, Error> {
        self.block_on(self.client.purge(name))
    }

    /// [`Client::begin`].
    pub fn begin(&self) -> Result<BlockingTransaction, Error> {
        let t = self.block_on(self.client.begin())?;
        Ok(BlockingTransaction {
            rt: self.rt.clone(),
            t: Some(t),
        })
    }

    /// [`Client::begin_external`].
    pub fn begin_external(&self, xid: &str) -> Result<BlockingTransaction, Error> {
        let t = self.block_on(self.client.begin_external(xid))?;
        Ok(BlockingTransaction {
            rt: self.rt.clone(),
            t: Some(t),
        })
    }

    /// [`Client::send`].
    pub fn send(&self, name: &str, msg: Message, tx: Tx<'_>) -> Result<MessageId, Error> {
        self.block_on(self.client.send(name, msg, tx))
    }

    /// [`Client::receive`].
    pub fn receive(&self, name: &str, timeout: Duration, tx: Tx<'_>) -> Result<Message, Error> {
        self.block_on(self.client.receive(name, timeout, tx))
    }

    /// [`Client::peek`].
    pub fn peek(&self, name: &str, timeout: Duration) -> Result<Message, Error> {
        self.block_on(self.client.peek(name, timeout))
    }

    /// [`Client::stats`].
    pub fn stats(&self) -> Result<Stats, Error> {
        self.block_on(self.client.stats())
    }

    /// [`Client::triggers`].
    pub fn triggers(&self, req: TriggerRequest) -> Result<TriggerAnswer, Error> {
        self.block_on(self.client.triggers(req))
    }
}

/// A [`RemoteQueue`] with blocking calls.
#[derive(Clone)]
pub struct BlockingQueue {
    rt: Arc<tokio::runtime::Runtime>,
    q: RemoteQueue,
}

impl BlockingQueue {
    /// The name the server knows the queue by.
    pub fn name(&self) -> &str {
        self.q.name()
    }

    /// The async handle underneath.
    pub fn remote(&self) -> &RemoteQueue {
        &self.q
    }

    /// [`RemoteQueue::send`].
    pub fn send(&self, msg: Message, tx: Tx<'_>) -> Result<MessageId, Error> {
        self.rt.block_on(self.q.send(msg, tx))
    }

    /// [`RemoteQueue::receive`].
    pub fn receive(&self, timeout: Duration, tx: Tx<'_>) -> Result<Message, Error> {
        self.rt.block_on(self.q.receive(timeout, tx))
    }

    /// [`RemoteQueue::peek`].
    pub fn peek(&self, timeout: Duration) -> Result<Message, Error> {
        self.rt.block_on(self.q.peek(timeout))
    }

    /// [`RemoteQueue::len`].
    pub fn len(&self) -> Result<usize, Error> {
        self.rt.block_on(self.q.len())
    }

    /// [`RemoteQueue::is_empty`].
    pub fn is_empty(&self) -> Result<bool, Error> {
        self.rt.block_on(self.q.is_empty())
    }

    /// [`RemoteQueue::receive_by_lookup_id`].
    pub fn receive_by_lookup_id(&self, action: LookupAction, tx: Tx<'_>) -> Result<Message, Error> {
        self.rt.block_on(self.q.receive_by_lookup_id(action, tx))
    }

    /// [`RemoteQueue::peek_by_lookup_id`].
    pub fn peek_by_lookup_id(&self, action: LookupAction) -> Result<Message, Error> {
        self.rt.block_on(self.q.peek_by_lookup_id(action))
    }

    /// [`RemoteQueue::purge`].
    pub fn purge(&self) -> Result<usize, Error> {
        self.rt.block_on(self.q.purge())
    }
}

/// A [`RemoteTransaction`] with blocking calls; dropping it unfinished aborts it.
pub struct BlockingTransaction {
    rt: Arc<tokio::runtime::Runtime>,
    t: Option<RemoteTransaction>,
}

impl<'a> From<&'a BlockingTransaction> for Tx<'a> {
    fn from(t: &'a BlockingTransaction) -> Tx<'a> {
        Tx::In(
            t.t.as_ref()
                .expect("a transaction is present until it ends"),
        )
    }
}

impl BlockingTransaction {
    /// [`RemoteTransaction::prepare`].
    pub fn prepare(&self) -> Result<(), Error> {
        let t = self.t.as_ref().expect("present until it ends");
        self.rt.block_on(t.prepare())
    }

    /// [`RemoteTransaction::commit`].
    pub fn commit(mut self) -> Result<(), Error> {
        let t = self.t.take().expect("present until it ends");
        self.rt.block_on(t.commit())
    }

    /// [`RemoteTransaction::abort`].
    pub fn abort(mut self) -> Result<(), Error> {
        let t = self.t.take().expect("present until it ends");
        self.rt.block_on(t.abort())
    }
}
