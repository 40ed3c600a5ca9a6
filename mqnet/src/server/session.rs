//! One connection's task, from handshake to close: its socket, the session that owns its
//! transactions, cursors, opened queues and waiting requests, and the teardown that ends them.
//!
//! **Invariant:** a connection owns its transactions, cursors and waiting requests; whatever ends
//! the connection (peer gone, protocol error, idle, shutdown) cancels the waits and aborts
//! unfinished transactions before the task returns. MSMQ's remote-receive rule
//! ([`Session::remote_receive_rule`]) is defined here and checked in `dispatch` on every receive
//! path that takes a transaction.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mqcore::{Compat, Cursor, Error, ErrorCode, Queue, Transaction, Tx};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::auth::{key_of, queue_key, Principal, Right};
use crate::proto::{self, timeout_from_wire, Request, Response, TxRef, PROTOCOL_VERSION};

use super::batching::HeldAnswers;
use super::dispatch::Step;
use super::wire::{End, Rd, Wire, Wr};
use super::{stopped_signal, Shared};
use crate::steps::blocking_hook;

/// Serves one connection from handshake to close.
pub(super) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), End> {
    let _ = stream.set_nodelay(true);
    // The names of a verified client certificate, which then is the connection's identity.
    let mut certificate = None;
    let (rd, wr) = match &shared.config.tls {
        None => {
            let (rd, wr) = stream.into_split();
            (Box::new(rd) as Rd, Box::new(wr) as Wr)
        }
        Some(tls) => {
            let accepted = tokio::time::timeout(
                shared.config.handshake_timeout,
                tls.acceptor().accept(crate::tls::transport(stream)),
            )
            .await;
            match accepted {
                Ok(Ok(s)) => {
                    certificate = s
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(crate::tls::names_of);
                    let (rd, wr) = tokio::io::split(s);
                    (Box::new(rd) as Rd, Box::new(wr) as Wr)
                }
                // A plaintext client, one that does not trust us, or one too slow: this
                // connection alone ends.
                Ok(Err(e)) => {
                    tracing::info!(%peer, error = %e, "TLS handshake failed");
                    return Err(End::Io(e));
                }
                Err(_) => {
                    tracing::info!(%peer, "TLS handshake timed out");
                    return Err(End::Idle);
                }
            }
        }
    };
    let mut wire = Wire {
        rd,
        wr,
        buf: BytesMut::with_capacity(64 * 1024),
        out: Vec::with_capacity(64 * 1024),
        max: shared.config.max_frame,
    };
    let principal = match handshake(&mut wire, &shared, certificate.as_deref()).await {
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
        peer,
        local: false,
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
    // Dropping the session drops its cursors and aborts its unfinished transactions, except
    // prepared ones: their outcome is the coordinator's, so they stay in doubt.
    let aborted = session.txs.values().filter(|t| !t.is_prepared()).count();
    for (_, t) in std::mem::take(&mut session.txs) {
        if let Ok(t) = Arc::try_unwrap(t) {
            session.shared.qm.orphan(t);
        }
    }
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
async fn handshake(
    wire: &mut Wire,
    shared: &Shared,
    certificate: Option<&[String]>,
) -> Result<Principal, End> {
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
    let auth = &shared.config.auth;
    let principal = match certificate {
        Some(names) => auth.login_certificate(names),
        None => auth.login(token.as_deref()),
    }
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

/// A cursor of a connection, with the key of its queue for permission checks.
pub(super) struct OpenCursor {
    pub(super) cursor: Arc<Mutex<Cursor>>,
    pub(super) key: String,
    pub(super) name: String,
}

/// One connection's state: who it is, its transactions, cursors and waiting requests.
pub(super) struct Session {
    pub(super) shared: Arc<Shared>,
    pub(super) principal: Principal,
    /// Where the connection comes from.
    peer: SocketAddr,
    /// Whether the connection declared itself an application on this computer
    /// ([`Request::Local`]), from a loopback address.
    pub(super) local: bool,
    /// Queues this connection named, with their permission keys: a pipelined producer or
    /// consumer names one queue in every request, and parsing and resolving it each time costs
    /// more than the send.
    opened: RefCell<HashMap<String, (Queue, String)>>,
    pub(super) txs: HashMap<u64, Arc<Transaction>>,
    pub(super) cursors: HashMap<u64, OpenCursor>,
    next_handle: u64,
    waits: JoinSet<()>,
    held: HeldAnswers,
    /// Answers of finished waits, sent by the tasks in `waits`.
    pub(super) done: mpsc::UnboundedSender<(u64, Response)>,
    pub(super) stop: watch::Receiver<bool>,
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
        // would cost a timer-wheel insertion and removal each. Activity is read on the timer's own
        // clock (tokio's), so a test that pauses time drives the whole idle rule.
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
                    idle_timer.as_mut().reset(next);
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
                Step::Answers(fut) => {
                    let fut = match hook {
                        Some(hook) => Box::pin(mqcore::blocking::Hooked::new(hook, fut)),
                        None => fut,
                    };
                    self.waits.spawn(fut);
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

    pub(super) fn tx(&self, id: u64) -> Result<Arc<Transaction>, Error> {
        self.txs.get(&id).cloned().ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidHandle,
                format!("this connection has no transaction {id}"),
            )
        })
    }

    pub(super) fn new_handle(&mut self) -> u64 {
        let h = self.next_handle;
        self.next_handle += 1;
        h
    }

    /// Runs `f` under the transaction `tx` names.
    pub(super) fn with_tx<T>(
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
    /// A local connection ([`Request::Local`]) is an application on this computer: no rule.
    pub(super) fn remote_receive_rule(&self, tx: TxRef) -> Result<(), Error> {
        if self.local {
            return Ok(());
        }
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

    /// Answers [`Request::Local`]: only a loopback peer is on this computer.
    pub(super) fn declare_local(&mut self) -> Result<(), Error> {
        local_peer(self.peer)?;
        self.local = true;
        Ok(())
    }

    pub(super) fn check(&self, right: Right, name: &str) -> Result<(), Error> {
        self.principal.check(right, &queue_key(name), name)
    }

    /// Whether the principal has `right` (any right at all when `None`, enough to see a queue
    /// in lists and read its properties) on the queue `name` names.
    pub(super) fn allowed(&self, right: Option<Right>, key: &str, name: &str) -> Result<(), Error> {
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
    pub(super) fn open(&self, right: Option<Right>, name: &str) -> Result<Queue, Error> {
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
    pub(super) fn open_to_send(&self, name: &str) -> Result<Queue, Error> {
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

    pub(super) fn check_admin(&self) -> Result<(), Error> {
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

    /// Takes a transaction out of the connection to end it; refused while a receive under it is
    /// still waiting.
    pub(super) fn take_tx(&mut self, id: u64) -> Result<Transaction, Error> {
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
}

/// A receive or peek of the first message that waits on its own task.
///
/// Shutdown ends the wait (a message already handed to it goes back), but never a receive that
/// has taken its message: its removal is logged, so its answer must go out.
pub(super) fn wait_head(
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

/// Whether `peer` may connect as an application on this computer: loopback addresses only.
fn local_peer(peer: SocketAddr) -> Result<(), Error> {
    if peer.ip().is_loopback() {
        return Ok(());
    }
    Err(Error::new(
        ErrorCode::AccessDenied,
        format!(
            "{} is not a loopback address: only an application on the server's own computer can connect as local",
            peer.ip()
        ),
    ))
}

pub(super) fn shutting_down() -> Error {
    Error::new(
        ErrorCode::ServiceNotAvailable,
        "the server is shutting down",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_peers_are_local() {
        for ok in ["127.0.0.1:5", "127.3.4.5:5", "[::1]:5"] {
            assert!(local_peer(ok.parse().unwrap()).is_ok(), "{ok}");
        }
        for no in ["10.0.0.1:5", "192.168.1.2:5", "[fe80::1]:5", "0.0.0.0:5"] {
            let e = local_peer(no.parse().unwrap()).unwrap_err();
            assert_eq!(e.code(), ErrorCode::AccessDenied, "{no}");
        }
    }
}
