//! The queue server: accepts native-protocol connections and runs their requests on one queue
//! manager.
//!
//! Each connection is one task that reads frames, runs every request they hold in order, and
//! writes the answers in one write per batch; pipelined requests therefore cost one read and one
//! write for many. Requests that wait (a receive or peek with a timeout and nothing to take yet,
//! a cursor waiting for its next message) move to tasks of their own, so a connection keeps
//! serving while they wait; their answers come back to the connection's task to be written.
//!
//! A connection owns its transactions and cursors: when it closes, for whatever reason, its
//! waiting receives are cancelled (a message already handed to one goes back) and its unfinished
//! transactions abort, so the messages they received return to their queues. A transaction
//! already prepared stays in doubt for its coordinator, as two-phase commit requires.
//!
//! Shutdown stops accepting, lets every connection finish the batch it is running (commits
//! complete), answers waiting requests with MQ_ERROR_SERVICE_NOT_AVAILABLE, aborts open
//! transactions and closes. The caller then drops the queue manager, which flushes its log.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mqcore::triggers::{RuleDef, Trigger, Triggers};
use mqcore::{Compat, Cursor, Error, ErrorCode, Message, Queue, QueueManager, Transaction, Tx};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::auth::{key_of, queue_key, Auth, Principal, Right};
use crate::frame::{self, FrameError};
use crate::proto::{
    self, timeout_from_wire, CursorAction, Request, Response, Select, Stats, TriggerRequest,
    TriggerView, TxRef, PROTOCOL_VERSION,
};

/// Limits and access control of a server. The defaults suit a server on loopback.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest frame payload accepted; checked before any allocation.
    pub max_frame: usize,
    /// Connections served at once; one more is answered MQ_ERROR_INSUFFICIENT_RESOURCES.
    pub max_connections: usize,
    /// A connection that sends nothing for this long, with nothing waiting, is closed.
    pub idle_timeout: Duration,
    /// Time allowed for the handshake.
    pub handshake_timeout: Duration,
    /// Who may connect and what they may do.
    pub auth: Auth,
    /// The queue manager's Triggers service, administered through [`Request::Triggers`];
    /// without one those requests are refused with MQ_ERROR_SERVICE_NOT_AVAILABLE.
    pub triggers: Option<Arc<Triggers>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_frame: frame::DEFAULT_MAX_FRAME,
            max_connections: 1024,
            idle_timeout: Duration::from_secs(300),
            handshake_timeout: Duration::from_secs(10),
            auth: Auth::default(),
            triggers: None,
        }
    }
}

/// Counters shared by the server and its connections.
struct Shared {
    qm: QueueManager,
    config: ServerConfig,
    connections: AtomicUsize,
    connections_total: AtomicU64,
    requests_total: AtomicU64,
    started: Instant,
}

/// A bound server, not yet running.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
}

/// Stops a running server (clone it into a signal handler).
#[derive(Clone)]
pub struct Stopper(Arc<watch::Sender<bool>>);

impl Stopper {
    /// Begins a graceful shutdown.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

impl Server {
    /// Binds the listening socket.
    pub async fn bind(
        addr: impl ToSocketAddrs,
        qm: QueueManager,
        config: ServerConfig,
    ) -> io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        let (stop, _) = watch::channel(false);
        Ok(Server {
            listener,
            shared: Arc::new(Shared {
                qm,
                config,
                connections: AtomicUsize::new(0),
                connections_total: AtomicU64::new(0),
                requests_total: AtomicU64::new(0),
                started: Instant::now(),
            }),
            stop,
        })
    }

    /// The address it listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A handle that stops [`Server::run`].
    pub fn stopper(&self) -> Stopper {
        Stopper(Arc::new(self.stop.clone()))
    }

    /// Serves until stopped, then shuts down gracefully and returns once every connection has
    /// closed.
    pub async fn run(self) -> io::Result<()> {
        let Server {
            listener,
            shared,
            stop,
        } = self;
        let mut stopped = stop.subscribe();
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                _ = stopped_signal(&mut stopped) => break,
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of descriptors and the like: back off rather than spin.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let open = shared.connections.fetch_add(1, Ordering::SeqCst);
                    shared.connections_total.fetch_add(1, Ordering::Relaxed);
                    let shared = shared.clone();
                    let stop = stop.subscribe();
                    conns.spawn(async move {
                        if open >= shared.config.max_connections {
                            refuse(stream, &shared).await;
                        } else {
                            tracing::debug!(%peer, "connection opened");
                            let r = serve(stream, shared.clone(), stop).await;
                            tracing::debug!(%peer, result = ?r, "connection closed");
                        }
                        shared.connections.fetch_sub(1, Ordering::SeqCst);
                    });
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        tracing::info!(connections = conns.len(), "shutting down");
        drop(listener);
        while conns.join_next().await.is_some() {}
        Ok(())
    }
}

/// Answers a connection over the limit and closes it.
async fn refuse(mut stream: TcpStream, shared: &Shared) {
    tracing::warn!(
        limit = shared.config.max_connections,
        "connection refused: at the connection limit"
    );
    let e = Error::new(
        ErrorCode::InsufficientResources,
        format!(
            "the server is at its limit of {} connections",
            shared.config.max_connections
        ),
    );
    let _ = stream
        .write_all(&proto::frame(0, &Response::error(&e)))
        .await;
    let _ = stream.shutdown().await;
}

/// Why a connection ended.
#[derive(Debug)]
#[allow(dead_code)] // fields are read by Debug, in the close log
enum End {
    /// The peer closed it between frames.
    Closed,
    /// Shutdown.
    Shutdown,
    /// Nothing arrived for the idle timeout.
    Idle,
    /// A bad frame, a bad request or a failed handshake (already answered).
    Refused(Error),
    /// The socket failed.
    Io(io::Error),
}

/// One connection's socket side.
struct Wire {
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    buf: BytesMut,
    /// Answers not yet written.
    out: Vec<u8>,
    max: usize,
}

impl Wire {
    /// Reads until one whole frame is in; `None` at a clean end of stream.
    async fn next_frame(&mut self) -> Result<Option<Bytes>, End> {
        loop {
            if let Some(f) = self.decode()? {
                return Ok(Some(f));
            }
            if self.read().await? == 0 {
                return Ok(None);
            }
        }
    }

    fn decode(&mut self) -> Result<Option<Bytes>, End> {
        frame::decode(&mut self.buf, self.max).map_err(|e| End::Refused(frame_error(e)))
    }

    /// Reads more bytes; 0 at end of stream (an error if it cuts a frame).
    async fn read(&mut self) -> Result<usize, End> {
        frame::make_read_room(&mut self.buf);
        let n = self.rd.read_buf(&mut self.buf).await.map_err(End::Io)?;
        if n == 0 && !self.buf.is_empty() {
            return Err(End::Refused(frame_error(FrameError::Truncated {
                got: self.buf.len(),
            })));
        }
        Ok(n)
    }

    fn push(&mut self, id: u64, r: &Response) {
        proto::frame_into(id, r, &mut self.out);
    }

    async fn flush(&mut self) -> Result<(), End> {
        if !self.out.is_empty() {
            self.wr.write_all(&self.out).await.map_err(End::Io)?;
            self.out.clear();
        }
        Ok(())
    }
}

fn frame_error(e: FrameError) -> Error {
    Error::new(ErrorCode::InvalidParameter, e.to_string())
}

/// Serves one connection from handshake to close.
async fn serve(
    stream: TcpStream,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), End> {
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    let mut wire = Wire {
        rd,
        wr,
        buf: BytesMut::with_capacity(64 * 1024),
        out: Vec::with_capacity(64 * 1024),
        max: shared.config.max_frame,
    };
    let principal = match handshake(&mut wire, &shared).await {
        Ok(p) => p,
        Err(e) => {
            if let End::Refused(err) = &e {
                wire.push(0, &Response::error(err));
                let _ = wire.flush().await;
            }
            return Err(e);
        }
    };
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let mut session = Session {
        shared: shared.clone(),
        principal,
        opened: RefCell::new(HashMap::new()),
        txs: HashMap::new(),
        cursors: HashMap::new(),
        next_handle: 1,
        waits: JoinSet::new(),
        held: HeldAnswers::default(),
        done: done_tx,
        stop: stop.clone(),
    };
    let end = session.run(&mut wire, &mut stop, &mut done_rx).await;
    // Held answers are finished however the connection ends: their steps are done and must be
    // published.
    let mut answers = Vec::new();
    while !session.held.is_empty() {
        session.held.next(&mut answers).await;
    }
    for (id, r) in answers {
        wire.push(id, &r);
    }
    // Waiting requests: on shutdown they answer (and are written); otherwise they are cancelled.
    if matches!(end, End::Shutdown) {
        while session.waits.join_next().await.is_some() {}
        while let Ok((id, r)) = done_rx.try_recv() {
            wire.push(id, &r);
        }
    } else {
        session.waits.abort_all();
        while session.waits.join_next().await.is_some() {}
    }
    if let End::Refused(err) = &end {
        wire.push(0, &Response::error(err));
    }
    let _ = wire.flush().await;
    let _ = wire.wr.shutdown().await;
    // Dropping the session drops its cursors and aborts its unfinished transactions.
    let aborted = session.txs.len();
    drop(session);
    if aborted > 0 {
        tracing::debug!(
            aborted,
            "connection closed with open transactions; they aborted"
        );
    }
    match end {
        End::Closed | End::Shutdown => Ok(()),
        other => Err(other),
    }
}

/// Reads the Hello, checks version and token, answers Welcome.
async fn handshake(wire: &mut Wire, shared: &Shared) -> Result<Principal, End> {
    let first = tokio::time::timeout(shared.config.handshake_timeout, wire.next_frame())
        .await
        .map_err(|_| {
            End::Refused(Error::new(
                ErrorCode::OperationCancelled,
                "no handshake within the time allowed",
            ))
        })??
        .ok_or(End::Closed)?;
    let env = proto::decode::<Request>(&first).map_err(End::Refused)?;
    let Request::Hello {
        min_version,
        max_version,
        token,
        client,
    } = env.body
    else {
        return Err(End::Refused(Error::new(
            ErrorCode::InvalidParameter,
            "the first request of a connection must be Hello",
        )));
    };
    if !(min_version..=max_version).contains(&PROTOCOL_VERSION) {
        return Err(End::Refused(Error::new(
            ErrorCode::InvalidParameter,
            format!(
                "the client speaks protocol versions {min_version}..={max_version}; this server speaks {PROTOCOL_VERSION}"
            ),
        )));
    }
    let principal = shared
        .config
        .auth
        .login(token.as_deref())
        .map_err(End::Refused)?;
    tracing::debug!(client, user = principal.name(), "handshake");
    wire.push(
        env.id,
        &Response::Welcome {
            version: PROTOCOL_VERSION,
            server: shared.qm.name().to_owned(),
            compat: shared.qm.compat(),
            max_frame: shared.config.max_frame as u32,
        },
    );
    wire.flush().await?;
    Ok(principal)
}

/// Queue handles a connection keeps (see `Session::opened`).
const MAX_OPENED: usize = 1024;

/// A request that waits, run on a task of its own.
type Waiting = Pin<Box<dyn Future<Output = Response> + Send>>;

/// What running a request gives.
enum Step {
    /// The answer, now.
    Reply(Response),
    /// An answer that has to wait (async engine call).
    Wait(Waiting),
    /// An answer that has to wait inside a blocking engine call (cursors).
    Block(Box<dyn FnOnce() -> Response + Send>),
}

/// Answers held until the log records of the steps that gave them are durable.
struct Held {
    logged: Vec<mqcore::step::deferred::Deferred>,
    replies: Vec<(u64, Response)>,
}

impl Held {
    /// The step whose record the answers wait for: the batch's last.
    fn last(&self) -> &mqcore::step::deferred::Deferred {
        self.logged
            .iter()
            .max_by_key(|d| d.lsn())
            .expect("a held batch logged something")
    }

    /// Publishes the steps (their records are durable, or the log failed) and gives the answers:
    /// the replies, or the log's error for every one.
    fn finish(self) -> Vec<(u64, Response)> {
        match mqcore::step::deferred::finish_each(self.logged) {
            Ok(()) => self.replies,
            Err(e) => self
                .replies
                .into_iter()
                .map(|(id, _)| (id, Response::error(&e)))
                .collect(),
        }
    }
}

/// A connection's held answers, oldest first, and the wait for the oldest's record. The session
/// task waits here itself, so the log writer's wake-up reaches the task that writes the answers,
/// with no task or channel between.
#[derive(Default)]
struct HeldAnswers {
    queue: VecDeque<Held>,
    front: Option<mqcore::step::deferred::Durability>,
}

impl HeldAnswers {
    fn push(&mut self, h: Held) {
        self.queue.push_back(h);
    }

    fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Waits until the oldest held batch can be answered, then answers it and every later one
    /// that can be too (their records are durable as well). Pending forever while none is held.
    async fn next(&mut self, out: &mut Vec<(u64, Response)>) {
        let Some(first) = self.queue.front() else {
            return std::future::pending().await;
        };
        let front = self.front.get_or_insert_with(|| first.last().durable());
        // A failure shows in `finish`.
        let _ = front.await;
        self.front = None;
        // Records become durable in LSN order: a batch's last one speaks for the batch.
        while let Some(h) = self.queue.front() {
            if !h.last().is_durable() {
                break;
            }
            let h = self.queue.pop_front().expect("looked at");
            out.extend(h.finish());
        }
    }
}

/// A cursor of a connection, with the key of its queue for permission checks.
struct OpenCursor {
    cursor: Arc<Mutex<Cursor>>,
    key: String,
    name: String,
}

/// One connection's state: who it is, its transactions, cursors and waiting requests.
struct Session {
    shared: Arc<Shared>,
    principal: Principal,
    /// Queues this connection named, with their permission keys: a pipelined producer or
    /// consumer names one queue in every request, and parsing and resolving it each time costs
    /// more than the send.
    opened: RefCell<HashMap<String, (Queue, String)>>,
    txs: HashMap<u64, Arc<Transaction>>,
    cursors: HashMap<u64, OpenCursor>,
    next_handle: u64,
    waits: JoinSet<()>,
    held: HeldAnswers,
    done: mpsc::UnboundedSender<(u64, Response)>,
    stop: watch::Receiver<bool>,
}

impl Session {
    async fn run(
        &mut self,
        wire: &mut Wire,
        stop: &mut watch::Receiver<bool>,
        done: &mut mpsc::UnboundedReceiver<(u64, Response)>,
    ) -> End {
        let idle = self.shared.config.idle_timeout;
        // One timer for the connection, moved on only when it fires: setting a timer per request
        // would cost a timer-wheel insertion and removal each.
        let mut last_active = Instant::now();
        let idle_timer = tokio::time::sleep(idle);
        tokio::pin!(idle_timer);
        let mut answers = Vec::new();
        loop {
            // Everything already read is one batch.
            let mut batch = Vec::new();
            loop {
                match wire.decode() {
                    Ok(Some(f)) => batch.push(f),
                    Ok(None) => break,
                    Err(e) => return e,
                }
            }
            if !batch.is_empty() {
                if let Err(e) = self.run_batch(wire, batch) {
                    let _ = wire.flush().await;
                    return e;
                }
                if let Err(e) = wire.flush().await {
                    return e;
                }
                continue;
            }
            while self.waits.try_join_next().is_some() {}
            tokio::select! {
                biased;
                _ = stopped_signal(stop) => return End::Shutdown,
                () = self.held.next(&mut answers) => {
                    for (id, r) in answers.drain(..) {
                        wire.push(id, &r);
                    }
                    if let Err(e) = wire.flush().await {
                        return e;
                    }
                }
                Some((id, r)) = done.recv() => {
                    wire.push(id, &r);
                    while let Ok((id, r)) = done.try_recv() {
                        wire.push(id, &r);
                    }
                    if let Err(e) = wire.flush().await {
                        return e;
                    }
                    last_active = Instant::now();
                }
                read = wire.read() => match read {
                    Ok(0) => return End::Closed,
                    Ok(_) => last_active = Instant::now(),
                    Err(e) => return e,
                },
                () = &mut idle_timer => {
                    let due = last_active + idle;
                    if Instant::now() >= due && self.waits.is_empty() && self.held.is_empty() {
                        return End::Idle;
                    }
                    // Still busy, or active since the timer was set: look again a period on.
                    let next = due.max(Instant::now() + idle.min(Duration::from_secs(1)));
                    idle_timer.as_mut().reset(next.into());
                }
            }
        }
    }

    /// Runs a batch of request frames in order, answers into `wire.out`. A frame that does not
    /// decode ends the connection.
    fn run_batch(&mut self, wire: &mut Wire, batch: Vec<Bytes>) -> Result<(), End> {
        let mut requests = Vec::with_capacity(batch.len());
        for f in &batch {
            let env = proto::decode::<Request>(f).map_err(End::Refused)?;
            requests.push((env.id, env.body));
        }
        self.shared
            .requests_total
            .fetch_add(requests.len() as u64, Ordering::Relaxed);
        let hook = blocking_hook();
        let (steps, held) = match hook {
            Some(hook) => mqcore::blocking::with_hook(hook, || self.steps(requests)),
            None => self.steps(requests),
        };
        // Answers of logged steps leave once their records are durable and their effects
        // published; meanwhile the connection reads and runs its next requests, whose records
        // then share the log writer's next sync.
        for h in held {
            self.held.push(h);
        }
        for (id, step) in steps {
            match step {
                Step::Reply(r) => wire.push(id, &r),
                Step::Wait(fut) => {
                    let done = self.done.clone();
                    let fut = match hook {
                        Some(hook) => Box::pin(mqcore::blocking::Hooked::new(hook, fut)),
                        None => fut,
                    };
                    // The wait ends itself on shutdown (`wait_head`).
                    self.waits.spawn(async move {
                        let _ = done.send((id, fut.await));
                    });
                }
                Step::Block(f) => {
                    let done = self.done.clone();
                    self.waits.spawn(async move {
                        let r = tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
                            Response::error(&Error::new(
                                ErrorCode::Error,
                                format!("the request failed: {e}"),
                            ))
                        });
                        let _ = done.send((id, r));
                    });
                }
            }
        }
        Ok(())
    }

    /// Runs requests in order. Consecutive sends to one queue under the same single-message or
    /// no transaction, and consecutive non-waiting receives from one queue, run as one engine
    /// step each, so a pipelined producer or consumer costs one log record and one disk sync per
    /// batch instead of one per message. Those steps do not wait for their records: their
    /// answers come back held until the records are durable.
    fn steps(&mut self, requests: Vec<(u64, Request)>) -> (Vec<(u64, Step)>, Vec<Held>) {
        let mut out = Vec::with_capacity(requests.len());
        let mut held = Vec::new();
        let mut it = requests.into_iter().peekable();
        while let Some((id, req)) = it.next() {
            match req {
                Request::Send {
                    queue,
                    msg,
                    tx: tx @ (TxRef::None | TxRef::Single),
                } => {
                    let mut ids = vec![id];
                    let mut msgs = vec![*msg];
                    while let Some((
                        _,
                        Request::Send {
                            queue: q2, tx: t2, ..
                        },
                    )) = it.peek()
                    {
                        if *q2 != queue || *t2 != tx {
                            break;
                        }
                        let Some((id2, Request::Send { msg, .. })) = it.next() else {
                            unreachable!("peeked a send")
                        };
                        ids.push(id2);
                        msgs.push(*msg);
                    }
                    let (results, logged) =
                        mqcore::step::deferred::collect(|| self.send_batch(&queue, msgs, tx));
                    let replies = ids.into_iter().zip(results.into_iter().map(|r| match r {
                        Ok(mid) => Response::Sent(mid),
                        Err(e) => Response::error(&e),
                    }));
                    if logged.is_empty() {
                        out.extend(replies.map(|(id, r)| (id, Step::Reply(r))));
                    } else {
                        held.push(Held {
                            logged,
                            replies: replies.collect(),
                        });
                    }
                }
                Request::Receive {
                    queue,
                    select: Select::Head,
                    timeout_ms,
                    tx: TxRef::None,
                } => {
                    let mut reqs = vec![(id, timeout_ms)];
                    while let Some((
                        _,
                        Request::Receive {
                            queue: q2,
                            select: Select::Head,
                            tx: TxRef::None,
                            ..
                        },
                    )) = it.peek()
                    {
                        if *q2 != queue {
                            break;
                        }
                        let Some((id2, Request::Receive { timeout_ms, .. })) = it.next() else {
                            unreachable!("peeked a receive")
                        };
                        reqs.push((id2, timeout_ms));
                    }
                    let (steps, logged) =
                        mqcore::step::deferred::collect(|| self.receive_batch(&queue, reqs));
                    if logged.is_empty() {
                        out.extend(steps);
                        continue;
                    }
                    let mut replies = Vec::new();
                    for (id, step) in steps {
                        match step {
                            Step::Reply(r) => replies.push((id, r)),
                            waiting => out.push((id, waiting)),
                        }
                    }
                    held.push(Held { logged, replies });
                }
                other => out.push((id, self.step(other))),
            }
        }
        (out, held)
    }

    fn send_batch(
        &mut self,
        queue: &str,
        msgs: Vec<Message>,
        tx: TxRef,
    ) -> Vec<Result<mqcore::MessageId, Error>> {
        let n = msgs.len();
        let q = match self.open_to_send(queue) {
            Ok(q) => q,
            Err(e) => return vec![Err(e); n],
        };
        let tx = if tx == TxRef::Single {
            Tx::Single
        } else {
            Tx::None
        };
        q.send_batch(msgs, tx)
    }

    fn receive_batch(&mut self, queue: &str, reqs: Vec<(u64, u64)>) -> Vec<(u64, Step)> {
        let q = match self.open(Some(Right::Receive), queue) {
            Ok(q) => q,
            Err(e) => {
                return reqs
                    .into_iter()
                    .map(|(id, _)| (id, Step::Reply(Response::error(&e))))
                    .collect()
            }
        };
        let got = match q.receive_batch(reqs.len(), Tx::None) {
            Ok(got) => got,
            Err(e) => {
                return reqs
                    .into_iter()
                    .map(|(id, _)| (id, Step::Reply(Response::error(&e))))
                    .collect()
            }
        };
        let mut out = Vec::with_capacity(reqs.len());
        let mut got = got.into_iter();
        for (id, timeout_ms) in reqs {
            let step = match got.next() {
                Some(m) => Step::Reply(Response::Message(Box::new(m))),
                None => wait_head(q.clone(), timeout_ms, None, true, self.stop.clone()),
            };
            out.push((id, step));
        }
        out
    }

    fn step(&mut self, req: Request) -> Step {
        match self.dispatch(req) {
            Ok(step) => step,
            Err(e) => Step::Reply(Response::error(&e)),
        }
    }

    fn tx(&self, id: u64) -> Result<Arc<Transaction>, Error> {
        self.txs.get(&id).cloned().ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidHandle,
                format!("this connection has no transaction {id}"),
            )
        })
    }

    fn new_handle(&mut self) -> u64 {
        let h = self.next_handle;
        self.next_handle += 1;
        h
    }

    /// Runs `f` under the transaction `tx` names.
    fn with_tx<T>(
        &self,
        tx: TxRef,
        f: impl FnOnce(Tx<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        match tx {
            TxRef::None => f(Tx::None),
            TxRef::Single => f(Tx::Single),
            TxRef::In(id) => {
                let t = self.tx(id)?;
                f(Tx::In(&t))
            }
        }
    }

    /// MSMQ's rule for transactional receives from another computer: MSMQ 3.0 has none; MSMQ
    /// 4.0 allows them under an external (DTC) transaction only.
    fn remote_receive_rule(&self, tx: TxRef) -> Result<(), Error> {
        let internal = match tx {
            TxRef::None => return Ok(()),
            TxRef::Single => true,
            TxRef::In(id) => !self.tx(id)?.is_external(),
        };
        match (self.shared.qm.compat(), internal) {
            (Compat::Msmq3, _) => Err(Error::new(
                ErrorCode::TransactionUsage,
                "MSMQ 3.0 has no remote transactional receive: receive without a transaction, or from the queue's own computer",
            )),
            (_, true) => Err(Error::new(
                ErrorCode::TransactionUsage,
                "a remote transactional receive must run under an external (two-phase) transaction; internal and single-message transactions are refused",
            )),
            _ => Ok(()),
        }
    }

    fn check(&self, right: Right, name: &str) -> Result<(), Error> {
        self.principal.check(right, &queue_key(name), name)
    }

    /// Whether the principal has `right` (any right at all when `None`, enough to see a queue
    /// in lists and read its properties) on the queue `name` names.
    fn allowed(&self, right: Option<Right>, key: &str, name: &str) -> Result<(), Error> {
        let rights = [Right::Peek, Right::Receive, Right::Send, Right::Admin];
        match right {
            Some(r) => self.principal.check(r, key, name),
            None if rights.iter().any(|&r| self.principal.may(r, key)) => Ok(()),
            None => self.principal.check(Right::Peek, key, name),
        }
    }

    /// Opens a queue after checking the right: the name is parsed once for both, and the handle
    /// is kept for the next request that names the queue the same way, until the queue is
    /// deleted.
    fn open(&self, right: Option<Right>, name: &str) -> Result<Queue, Error> {
        if let Some((q, key)) = self.opened.borrow().get(name) {
            if !q.is_deleted() {
                self.allowed(right, key, name)?;
                return Ok(q.clone());
            }
        }
        let parsed = mqcore::QueueName::parse(name)?;
        let key = key_of(&parsed);
        self.allowed(right, &key, name)?;
        let q = self.shared.qm.open_name(&parsed)?;
        let mut opened = self.opened.borrow_mut();
        if opened.len() >= MAX_OPENED {
            opened.retain(|_, (q, _)| !q.is_deleted());
            if opened.len() >= MAX_OPENED {
                opened.clear();
            }
        }
        opened.insert(name.to_owned(), (q.clone(), key));
        Ok(q)
    }

    /// Opens a queue to send to: the send right, and an authenticated connection if the queue
    /// accepts only authenticated messages.
    fn open_to_send(&self, name: &str) -> Result<Queue, Error> {
        let q = self.open(Some(Right::Send), name)?;
        if q.requires_authentication() && !self.principal.is_authenticated() {
            return Err(Error::new(
                ErrorCode::MessageNotAuthenticated,
                format!(
                    "{name} accepts only authenticated messages: connect with a user's token \
                     (this connection is {})",
                    self.principal.name()
                ),
            ));
        }
        Ok(q)
    }

    fn check_admin(&self) -> Result<(), Error> {
        if self.principal.is_admin() {
            return Ok(());
        }
        Err(Error::new(
            ErrorCode::AccessDenied,
            format!(
                "{} does not administer this queue manager",
                self.principal.name()
            ),
        ))
    }

    fn dispatch(&mut self, req: Request) -> Result<Step, Error> {
        let qm = self.shared.qm.clone();
        let reply = match req {
            Request::Hello { .. } => {
                return Err(Error::new(
                    ErrorCode::InvalidParameter,
                    "this connection has already shaken hands",
                ))
            }
            Request::Ping => Response::Done,
            Request::CreateQueue { path, props } => {
                self.check(Right::Admin, &path)?;
                let q = qm.create_queue(&path, props)?;
                Response::Queue(qm.queue_info(&q.name().to_string())?)
            }
            Request::DeleteQueue { name } => {
                self.check(Right::Admin, &name)?;
                qm.delete_queue(&name)?;
                Response::Done
            }
            Request::ListQueues => Response::Queues(
                qm.queues()
                    .into_iter()
                    .filter(|i| {
                        let name = i.path.to_string();
                        self.allowed(None, &key_of(&i.path), &name).is_ok()
                    })
                    .collect(),
            ),
            Request::QueueInfo { name } => {
                self.allowed(None, &queue_key(&name), &name)?;
                Response::Queue(qm.queue_info(&name)?)
            }
            Request::SetQueueProps { name, update } => {
                self.check(Right::Admin, &name)?;
                qm.set_queue_props(&name, update)?;
                Response::Done
            }
            Request::Purge { name } => {
                Response::Count(self.open(Some(Right::Admin), &name)?.purge()? as u64)
            }
            Request::Len { name } => Response::Count(self.open(None, &name)?.len()? as u64),
            Request::Send { queue, msg, tx } => {
                let q = self.open_to_send(&queue)?;
                Response::Sent(self.with_tx(tx, |t| q.send(*msg, t))?)
            }
            Request::Receive {
                queue,
                select,
                timeout_ms,
                tx,
            } => {
                let q = self.open(Some(Right::Receive), &queue)?;
                self.remote_receive_rule(tx)?;
                let got = self.with_tx(tx, |t| match select {
                    Select::Head => q.receive(Duration::ZERO, t),
                    Select::Lookup(a) => q.receive_by_lookup_id(a, t),
                    Select::Id(id) => q.receive_by_id(&id, t),
                    Select::Correlation(id) => q.receive_by_correlation_id(&id, t),
                });
                match got {
                    Err(e) if e.code() == ErrorCode::IoTimeout && timeout_ms > 0 => {
                        let t = match tx {
                            TxRef::In(id) => Some(self.tx(id)?),
                            _ => None,
                        };
                        return Ok(wait_head(q, timeout_ms, t, true, self.stop.clone()));
                    }
                    got => Response::Message(Box::new(got?)),
                }
            }
            Request::Peek {
                queue,
                select,
                timeout_ms,
            } => {
                let q = self.open(Some(Right::Peek), &queue)?;
                let got = match select {
                    Select::Head => q.peek(Duration::ZERO),
                    Select::Lookup(a) => q.peek_by_lookup_id(a),
                    Select::Id(id) => q.peek_by_id(&id),
                    Select::Correlation(id) => q.peek_by_correlation_id(&id),
                };
                match got {
                    Err(e) if e.code() == ErrorCode::IoTimeout && timeout_ms > 0 => {
                        return Ok(wait_head(q, timeout_ms, None, false, self.stop.clone()));
                    }
                    got => Response::Message(Box::new(got?)),
                }
            }
            Request::OpenCursor { queue } => {
                let cursor = self.open(Some(Right::Peek), &queue)?.cursor();
                let h = self.new_handle();
                self.cursors.insert(
                    h,
                    OpenCursor {
                        cursor: Arc::new(Mutex::new(cursor)),
                        key: queue_key(&queue),
                        name: queue,
                    },
                );
                Response::Cursor(h)
            }
            Request::CursorOp {
                cursor,
                action,
                timeout_ms,
                tx,
            } => return self.cursor_op(cursor, action, timeout_ms, tx),
            Request::CloseCursor { cursor } => {
                self.cursors
                    .remove(&cursor)
                    .ok_or_else(|| no_cursor(cursor))?;
                Response::Done
            }
            Request::Move {
                queue,
                lookup,
                to,
                tx,
            } => {
                let from = self.open(Some(Right::Receive), &queue)?;
                let dest = self.open(Some(Right::Send), &to)?;
                self.with_tx(tx, |t| from.move_message(lookup, &dest, t))?;
                Response::Done
            }
            Request::Reject { queue, lookup } => {
                self.open(Some(Right::Receive), &queue)?.reject(lookup)?;
                Response::Done
            }
            Request::Begin => {
                let h = self.new_handle();
                self.txs.insert(h, Arc::new(qm.begin()));
                Response::Tx(h)
            }
            Request::BeginExternal { xid } => {
                let t = qm.begin_external(xid)?;
                let h = self.new_handle();
                self.txs.insert(h, Arc::new(t));
                Response::Tx(h)
            }
            Request::Prepare { tx } => {
                self.tx(tx)?.prepare()?;
                Response::Done
            }
            Request::Commit { tx } => {
                self.take_tx(tx)?.commit()?;
                Response::Done
            }
            Request::Abort { tx } => {
                self.take_tx(tx)?.abort();
                Response::Done
            }
            Request::InDoubt => {
                self.check_admin()?;
                Response::Xids(qm.in_doubt())
            }
            Request::ResolveInDoubt { xid, commit } => {
                self.check_admin()?;
                qm.resolve_in_doubt(&xid, commit)?;
                Response::Done
            }
            Request::Stats => Response::Stats(self.stats()),
            Request::Triggers(req) => {
                self.check_admin()?;
                let triggers = self.shared.config.triggers.clone().ok_or_else(|| {
                    Error::new(
                        ErrorCode::ServiceNotAvailable,
                        "this server runs no Triggers service",
                    )
                })?;
                // Definition changes flush the catalog and may wait for a monitor to stop.
                return Ok(Step::Block(Box::new(move || {
                    triggers_admin(&triggers, req).unwrap_or_else(|e| Response::error(&e))
                })));
            }
        };
        Ok(Step::Reply(reply))
    }

    /// Takes a transaction out of the connection to end it; refused while a receive under it is
    /// still waiting.
    fn take_tx(&mut self, id: u64) -> Result<Transaction, Error> {
        let t = self.txs.remove(&id).ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidHandle,
                format!("this connection has no transaction {id}"),
            )
        })?;
        Arc::try_unwrap(t).map_err(|t| {
            self.txs.insert(id, t);
            Error::new(
                ErrorCode::TransactionSequence,
                "a receive under this transaction is still waiting; end the transaction after it returns",
            )
        })
    }

    fn cursor_op(
        &mut self,
        id: u64,
        action: CursorAction,
        timeout_ms: u64,
        tx: TxRef,
    ) -> Result<Step, Error> {
        let c = self.cursors.get(&id).ok_or_else(|| no_cursor(id))?;
        let (cursor, key, name) = (c.cursor.clone(), c.key.clone(), c.name.clone());
        if action == CursorAction::ReceiveCurrent {
            self.principal.check(Right::Receive, &key, &name)?;
            self.remote_receive_rule(tx)?;
        }
        let t = match tx {
            TxRef::In(h) => Some(self.tx(h)?),
            _ => None,
        };
        let run = move |timeout: Duration| -> Result<Message, Error> {
            let mut c = cursor.lock().unwrap_or_else(PoisonError::into_inner);
            match action {
                CursorAction::PeekCurrent => c.peek_current(timeout),
                CursorAction::PeekNext => c.peek_next(timeout),
                CursorAction::ReceiveCurrent => {
                    let tx = match (&t, tx) {
                        (Some(t), _) => Tx::In(t),
                        (None, TxRef::Single) => Tx::Single,
                        _ => Tx::None,
                    };
                    c.receive_current(timeout, tx)
                }
            }
        };
        let reply = |r: Result<Message, Error>| match r {
            Ok(m) => Response::Message(Box::new(m)),
            Err(e) => Response::error(&e),
        };
        match run(Duration::ZERO) {
            Err(e) if e.code() == ErrorCode::IoTimeout && timeout_ms > 0 => {
                let timeout = timeout_from_wire(timeout_ms);
                Ok(Step::Block(Box::new(move || reply(run(timeout)))))
            }
            r => Ok(Step::Reply(reply(r))),
        }
    }

    fn stats(&self) -> Stats {
        let qm = &self.shared.qm;
        let queues = qm.queues();
        Stats {
            name: qm.name().to_owned(),
            guid: qm.guid().to_string(),
            compat: qm.compat(),
            durable: qm.is_durable(),
            queues: queues.len(),
            messages: queues.iter().map(|q| q.message_count as u64).sum(),
            bytes: queues.iter().map(|q| q.bytes).sum(),
            connections: self.shared.connections.load(Ordering::Relaxed),
            connections_total: self.shared.connections_total.load(Ordering::Relaxed),
            requests_total: self.shared.requests_total.load(Ordering::Relaxed),
            uptime_secs: self.shared.started.elapsed().as_secs(),
        }
    }
}

/// Runs one Triggers administration request.
fn triggers_admin(t: &Triggers, req: TriggerRequest) -> Result<Response, Error> {
    let view = |trigger: Trigger| -> Result<TriggerView, Error> {
        let rule_names = trigger
            .rules
            .iter()
            .map(|id| t.rule(&id.to_string()).map(|r| r.def.name))
            .collect::<Result<_, _>>()?;
        let stats = t.stats(&trigger.id.to_string())?;
        Ok(TriggerView {
            trigger,
            rule_names,
            stats,
        })
    };
    let one = |trigger: Trigger| Ok(Response::Triggers(vec![view(trigger)?]));
    match req {
        TriggerRequest::AddRule {
            name,
            description,
            condition,
            action,
        } => {
            let def = RuleDef::parse(&name, &description, &condition, &action)?;
            Ok(Response::Rules(vec![t.add_rule(def)?]))
        }
        TriggerRequest::ListRules => Ok(Response::Rules(t.rules())),
        TriggerRequest::ShowRule { name } => Ok(Response::Rules(vec![t.rule(&name)?])),
        TriggerRequest::DeleteRule { name } => t.delete_rule(&name).map(|()| Response::Done),
        TriggerRequest::AddTrigger(def) => one(t.add_trigger(def)?),
        TriggerRequest::Attach { trigger, rule } => one(t.attach_rule(&trigger, &rule)?),
        TriggerRequest::Detach { trigger, rule } => one(t.detach_rule(&trigger, &rule)?),
        TriggerRequest::ListTriggers => Ok(Response::Triggers(
            t.triggers()
                .into_iter()
                .map(view)
                .collect::<Result<_, _>>()?,
        )),
        TriggerRequest::ShowTrigger { name } => one(t.trigger(&name)?),
        TriggerRequest::DeleteTrigger { name } => t.delete_trigger(&name).map(|()| Response::Done),
        TriggerRequest::SetEnabled { name, enabled } => one(t.set_enabled(&name, enabled)?),
    }
}

/// How an engine call that waits for the disk gets off a runtime worker: on a multi-threaded
/// runtime the worker's other connections move to another thread for the wait, and only a call
/// that really waits pays for that (`mqcore::blocking`). A current-thread runtime cannot hand off;
/// there the wait blocks the runtime, as any call would.
fn blocking_hook() -> Option<mqcore::blocking::Hook> {
    fn block_in_place(f: &mut dyn FnMut()) {
        tokio::task::block_in_place(f)
    }
    let flavor = tokio::runtime::Handle::current().runtime_flavor();
    (flavor == tokio::runtime::RuntimeFlavor::MultiThread).then_some(block_in_place as _)
}

/// A receive or peek of the first message that waits on its own task.
///
/// Shutdown ends the wait (a message already handed to it goes back), but never a receive that
/// has taken its message: its removal is logged, so its answer must go out.
fn wait_head(
    q: Queue,
    timeout_ms: u64,
    tx: Option<Arc<Transaction>>,
    receive: bool,
    mut stop: watch::Receiver<bool>,
) -> Step {
    let timeout = timeout_from_wire(timeout_ms);
    Step::Wait(Box::pin(async move {
        let r = if receive {
            let t = match &tx {
                Some(t) => Tx::In(t),
                None => Tx::None,
            };
            // The receive's log record is awaited here, not by blocking a runtime thread.
            let receive = Box::pin(q.receive_async(timeout, t));
            let (r, logged) = tokio::select! {
                got = mqcore::step::deferred::Collecting::new(receive) => got,
                _ = stopped_signal(&mut stop) => return Response::error(&shutting_down()),
            };
            let finished = mqcore::step::deferred::finish_all(logged).await;
            finished.and(r)
        } else {
            tokio::select! {
                r = q.peek_async(timeout) => r,
                _ = stopped_signal(&mut stop) => return Response::error(&shutting_down()),
            }
        };
        match r {
            Ok(m) => Response::Message(Box::new(m)),
            Err(e) => Response::error(&e),
        }
    }))
}

/// Resolves once shutdown has begun.
async fn stopped_signal(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, before any caller awaits again.
    let _ = stop.wait_for(|s| *s).await;
}

fn no_cursor(id: u64) -> Error {
    Error::new(
        ErrorCode::InvalidHandle,
        format!("this connection has no cursor {id}"),
    )
}

fn shutting_down() -> Error {
    Error::new(
        ErrorCode::ServiceNotAvailable,
        "the server is shutting down",
    )
}
