//! One destination host: the task that connects to its queue manager and streams every outgoing
//! queue for it, and the state management shows (`CONNECTED`, `WAITING`, `INACTIVE`...).
//!
//! **Invariant:** every session starts each outgoing queue at its oldest unacknowledged message
//! ([`mqcore::transfer::OutgoingQueue::start`]) and messages leave only on the receiver's answer,
//! so a connection cut at any byte costs resends, never a message.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mqcore::transfer::{Inbound, OutgoingInfo, OutgoingQueue, Reply, SendCursor, Seq, Verdict};
use mqcore::{Error, ErrorCode, QueueManager};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use super::TransferConfig;
use crate::client::{Client, ClientOptions};
use crate::proto::{OutgoingView, Request};

/// What management sees of a link.
#[derive(Debug, Default)]
struct Status {
    connected: bool,
    /// Failed attempts in a row.
    failures: u32,
    /// When the next attempt is due, while waiting.
    next_attempt: Option<Instant>,
    last_error: Option<String>,
    /// Messages sent and not yet answered, by outgoing queue (its sequence name, lower case).
    unacked: HashMap<String, usize>,
}

/// A destination host and its task's state.
pub(super) struct Link {
    pub(super) host: String,
    pub(super) wake: Notify,
    status: Mutex<Status>,
    /// `EOD_RESEND` asked: start every queue again from its oldest unacknowledged message.
    resend: AtomicBool,
}

impl Link {
    pub(super) fn new(host: String) -> Link {
        Link {
            host,
            wake: Notify::new(),
            status: Mutex::default(),
            resend: AtomicBool::new(false),
        }
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `n` messages of the sequence `sequence` are on their way (management's count).
    #[cfg(feature = "http")]
    pub(super) fn set_unacked(&self, sequence: &str, n: usize) {
        self.status()
            .unacked
            .insert(sequence.to_ascii_lowercase(), n);
    }

    /// Failed attempts in a row.
    pub(super) fn failures(&self) -> u32 {
        self.status().failures
    }

    /// The destination answered: the failures in a row are over.
    pub(super) fn answered(&self) {
        let mut st = self.status();
        st.failures = 0;
        st.last_error = None;
    }

    pub(super) fn resend_now(&self) {
        self.resend.store(true, Ordering::SeqCst);
        self.status().next_attempt = None;
        self.wake.notify_one();
    }

    pub(super) fn view(&self, info: OutgoingInfo) -> OutgoingView {
        let st = self.status();
        let state = if info.paused {
            "ONHOLD"
        } else if st.connected {
            "CONNECTED"
        } else if st.next_attempt.is_some() || st.failures > 0 {
            "WAITING"
        } else {
            "INACTIVE"
        };
        let unacknowledged = st
            .unacked
            .get(&info.name.to_ascii_lowercase())
            .copied()
            .unwrap_or(0);
        OutgoingView {
            info,
            state: state.to_owned(),
            unacknowledged,
            resends: st.failures,
            next_attempt_ms: st
                .next_attempt
                .map(|t| t.saturating_duration_since(Instant::now()).as_millis() as u64),
            last_error: st.last_error.clone(),
        }
    }
}

/// An outgoing queue's view when no link serves it.
pub(super) fn idle_view(info: OutgoingInfo) -> OutgoingView {
    let state = if info.paused { "ONHOLD" } else { "INACTIVE" };
    OutgoingView {
        info,
        state: state.to_owned(),
        unacknowledged: 0,
        resends: 0,
        next_attempt_ms: None,
        last_error: None,
    }
}

/// The task of one link.
pub(super) struct Task {
    pub(super) qm: QueueManager,
    pub(super) config: TransferConfig,
    pub(super) link: Arc<Link>,
    pub(super) stop: watch::Receiver<bool>,
}

/// A batch in flight: its queue, what it carried, and the answer to come.
struct InFlight {
    queue: OutgoingQueue,
    sent: Vec<(u64, Option<Seq>)>,
    answer: JoinHandle<Result<Reply, Error>>,
    since: Instant,
}

/// Why a session ended.
pub(super) enum End {
    Stopped,
    /// Nothing to send for a while.
    Idle,
    Failed(Error),
}

impl Task {
    pub(super) async fn run(mut self) {
        loop {
            if *self.stop.borrow() {
                return;
            }
            if !self.has_work() {
                // Nothing to send: wait to be woken.
                tokio::select! {
                    () = self.link.wake.notified() => {}
                    _ = self.stop.changed() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
            let end = if self.link.host.starts_with("http://")
                || self.link.host.starts_with("https://")
            {
                self.http_session().await
            } else if let Some(address) = self.mqqb_address() {
                self.mqqb_session(address).await
            } else {
                self.native_session().await
            };
            match end {
                End::Stopped => return,
                End::Idle => {}
                End::Failed(e) => {
                    let delay = {
                        let mut st = self.link.status();
                        st.failures += 1;
                        st.last_error = Some(e.to_string());
                        let delay = self.config.delay(st.failures);
                        st.next_attempt = Some(Instant::now() + delay);
                        delay
                    };
                    tracing::debug!(host = %self.link.host, error = %e, ?delay, "transfer attempt failed");
                    let until = tokio::time::sleep(delay);
                    tokio::pin!(until);
                    loop {
                        tokio::select! {
                            () = &mut until => break,
                            _ = self.stop.changed() => return,
                            () = self.link.wake.notified() => {
                                if self.link.resend.load(Ordering::SeqCst) {
                                    break;
                                }
                            }
                        }
                    }
                    self.link.status().next_attempt = None;
                }
            }
        }
    }

    /// A native-protocol session: connect, then stream.
    async fn native_session(&mut self) -> End {
        match self.connect().await {
            Ok(client) => {
                self.set_connected(true);
                let end = self.session(&client).await;
                self.set_connected(false);
                end
            }
            Err(e) => End::Failed(e),
        }
    }

    /// An SRMP session (`http://` and `https://` hosts): each POST connects as it needs to.
    async fn http_session(&mut self) -> End {
        #[cfg(feature = "http")]
        {
            self.set_connected(true);
            let end = self.srmp_session().await;
            self.set_connected(false);
            end
        }
        #[cfg(not(feature = "http"))]
        End::Failed(Error::new(
            ErrorCode::RemoteMachineNotAvailable,
            format!(
                "{} is reached over HTTP, which this build leaves out (mqnet feature `http`)",
                self.link.host
            ),
        ))
    }

    pub(super) fn set_connected(&self, connected: bool) {
        let mut st = self.link.status();
        st.connected = connected;
        if connected {
            st.next_attempt = None;
        } else {
            // What was in flight is sent again by the next session.
            st.unacked.clear();
        }
    }

    /// With nothing to send since `last_busy`: the session's end once that lasted the idle
    /// time, or after waiting a moment to be woken, its end if the service stopped meanwhile.
    pub(super) async fn nothing_to_send(&mut self, last_busy: Instant) -> Option<End> {
        if last_busy.elapsed() >= self.config.idle {
            return Some(End::Idle);
        }
        tokio::select! {
            () = self.link.wake.notified() => None,
            _ = self.stop.changed() => Some(End::Stopped),
            () = tokio::time::sleep(Duration::from_millis(200)) => None,
        }
    }

    pub(super) fn queues(&self) -> Vec<OutgoingQueue> {
        self.qm.transfer().outgoing_to(&self.link.host)
    }

    fn has_work(&self) -> bool {
        self.queues()
            .iter()
            .any(|o| !o.is_paused() && o.info().messages > 0)
    }

    /// The address of the destination: the host map's, or the host itself.
    fn address(&self) -> String {
        let host = self
            .qm
            .address_of(&self.link.host)
            .unwrap_or(&self.link.host)
            .to_owned();
        if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{}", self.config.port)
        } else {
            format!("{host}:{}", self.config.port)
        }
    }

    async fn connect(&self) -> Result<Client, Error> {
        let options = ClientOptions {
            token: self.config.token.clone(),
            port: self.config.port,
            connect_timeout: self.config.connect_timeout,
            local: false,
            tls: self
                .config
                .tls
                .as_ref()
                .map(|t| t.or_server_name(&self.link.host)),
        };
        Client::connect_with(&self.address(), &options).await
    }

    /// Streams every outgoing queue of the host until the connection fails, the service stops,
    /// or nothing was sent for the idle time.
    async fn session(&mut self, client: &Client) -> End {
        let source = self.qm.guid();
        let mut cursors: HashMap<String, SendCursor> = HashMap::new();
        let mut flight: VecDeque<InFlight> = VecDeque::new();
        let mut last_busy = Instant::now();
        let mut turn = 0usize;
        self.link.resend.store(false, Ordering::SeqCst);
        loop {
            if self.link.resend.swap(false, Ordering::SeqCst) {
                cursors.clear();
            }
            // Fill the window, taking the queues in turn.
            let queues = self.queues();
            let mut idle_round = 0;
            while flight.len() < self.config.window && !queues.is_empty() {
                if idle_round == queues.len() {
                    break;
                }
                let q = &queues[turn % queues.len()];
                turn = turn.wrapping_add(1);
                let cursor = cursors
                    .entry(q.sequence().to_owned())
                    .or_insert_with(|| q.start());
                let batch = q.next_batch(cursor, self.config.batch, self.config.batch_bytes);
                if batch.is_empty() {
                    idle_round += 1;
                    continue;
                }
                idle_round = 0;
                let sent: Vec<(u64, Option<Seq>)> =
                    batch.iter().map(|b| (b.lookup, b.seq)).collect();
                let items = batch
                    .into_iter()
                    .map(|b| Inbound {
                        seq: b.seq,
                        msg: (!b.withdraw).then_some(b.msg),
                    })
                    .collect();
                let req = Request::Transfer {
                    source,
                    sequence: q.sequence().to_owned(),
                    queue: q.remote_path().to_owned(),
                    items,
                };
                let c = client.clone();
                *self
                    .link
                    .status()
                    .unacked
                    .entry(q.sequence().to_ascii_lowercase())
                    .or_default() += sent.len();
                flight.push_back(InFlight {
                    queue: q.clone(),
                    sent,
                    answer: tokio::spawn(async move { c.transfer(req).await }),
                    since: Instant::now(),
                });
            }
            let Some(front) = flight.front_mut() else {
                if let Some(end) = self.nothing_to_send(last_busy).await {
                    return end;
                }
                continue;
            };
            // An answer that takes longer than the resend time is given up on: the connection
            // goes, and the next one starts again from the oldest unacknowledged message.
            let patience = self
                .config
                .delay(self.link.status().failures + 1)
                .saturating_sub(front.since.elapsed());
            tokio::select! {
                answer = &mut front.answer => {
                    let f = flight.pop_front().expect("looked at");
                    if let Some(n) = self
                        .link
                        .status()
                        .unacked
                        .get_mut(&f.queue.sequence().to_ascii_lowercase())
                    {
                        *n = n.saturating_sub(f.sent.len());
                    }
                    let reply = match answer {
                        Ok(Ok(r)) => r,
                        Ok(Err(e)) => return abort(flight, End::Failed(e)),
                        Err(e) => return abort(flight, End::Failed(Error::new(ErrorCode::Error, e.to_string()))),
                    };
                    last_busy = Instant::now();
                    if let Err(e) = settle(&f.queue, &f.sent, &reply) {
                        return abort(flight, End::Failed(e));
                    }
                    {
                        let mut st = self.link.status();
                        st.failures = 0;
                        st.last_error = None;
                    }
                    if reply.verdicts.contains(&Verdict::Gap) {
                        // The receiver misses an earlier message: start this queue again from
                        // its oldest unacknowledged one.
                        cursors.remove(f.queue.sequence());
                    }
                }
                () = self.link.wake.notified() => {}
                _ = self.stop.changed() => return abort(flight, End::Stopped),
                () = tokio::time::sleep(patience) => {
                    return abort(flight, End::Failed(Error::new(
                        ErrorCode::IoTimeout,
                        "the destination did not answer within the resend time",
                    )));
                }
            }
        }
    }
}

/// Gives up on the batches in flight (their messages stay and are sent again).
fn abort(flight: VecDeque<InFlight>, end: End) -> End {
    for f in flight {
        f.answer.abort();
    }
    end
}

/// Applies an answer in the engine without blocking the runtime: the messages leave the
/// outgoing queue now, and the step's record is awaited and published on a task of its own, so
/// the link goes on sending meanwhile (a removal not yet durable at a crash only costs a resend,
/// which the receiver recognizes).
pub(super) fn settle(
    queue: &OutgoingQueue,
    sent: &[(u64, Option<Seq>)],
    reply: &Reply,
) -> Result<(), Error> {
    let (result, logged) = mqcore::step::deferred::collect(|| queue.settle(sent, reply));
    if !logged.is_empty() {
        tokio::spawn(async move {
            if let Err(e) = mqcore::step::deferred::finish_all(logged).await {
                tracing::error!(error = %e, "an outgoing queue's settled messages could not be logged");
            }
        });
    }
    result.map(drop)
}
