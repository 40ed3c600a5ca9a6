//! Queue-manager transfer: the tasks that carry messages from this queue manager's outgoing
//! queues to the queue managers that hold their destination queues.
//!
//! The engine keeps what must be durable (the outgoing queues and both ends of each sequence,
//! `mqcore::transfer`); this module keeps connections. One [`link`] task per destination host
//! connects over the native protocol, streams batches of messages with several in flight, hands
//! each answer back to the engine ([`mqcore::transfer::OutgoingQueue::settle`]) and, when the
//! connection fails, tries again on MSMQ's resend schedule, starting from the oldest
//! unacknowledged message. docs/transfer.md explains why that cannot lose, duplicate or reorder
//! a transactional message.

mod link;
mod mqqb;
#[cfg(feature = "http")]
mod srmp;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mqcore::{Error, ErrorCode, QueueManager};
use tokio::sync::watch;

use crate::proto::{OutgoingAction, OutgoingView, DEFAULT_PORT};

/// How a transfer service connects and paces itself.
#[derive(Debug, Clone)]
pub struct TransferConfig {
    /// The port destination queue managers listen on (every server uses the same one, as MSMQ
    /// uses 1801 everywhere).
    pub port: u16,
    /// The token presented to destination servers that ask for one.
    pub token: Option<String>,
    /// Waits before each attempt after a failure: the n-th failure in a row waits
    /// `resend[min(n, len) - 1]`. MSMQ's: 30 s three times, 300 s three times, 1800 s three
    /// times, then 6 h ([`TransferConfig::msmq_schedule`]).
    pub resend: Vec<Duration>,
    /// Messages per batch.
    pub batch: usize,
    /// About how many bytes per batch.
    pub batch_bytes: u64,
    /// Batches in flight on a connection.
    pub window: usize,
    /// Time allowed to connect and shake hands.
    pub connect_timeout: Duration,
    /// A connection with nothing to send for this long is closed (state `INACTIVE`).
    pub idle: Duration,
    /// TLS to destination servers that speak it.
    pub tls: Option<crate::tls::ClientTls>,
}

impl TransferConfig {
    /// MSMQ's resend schedule (`SeqResend13Time`, `SeqResend46Time`, `SeqResend79Time`,
    /// `SeqResend10Time`).
    pub fn msmq_schedule() -> Vec<Duration> {
        let mut v = vec![Duration::from_secs(30); 3];
        v.extend([Duration::from_secs(300); 3]);
        v.extend([Duration::from_secs(1800); 3]);
        v.push(Duration::from_secs(6 * 3600));
        v
    }

    /// MSMQ's schedule divided by `factor` (tests and impatient users: 1000 turns 30 s into
    /// 30 ms).
    pub fn scaled_schedule(factor: u32) -> Vec<Duration> {
        Self::msmq_schedule()
            .into_iter()
            .map(|d| d / factor.max(1))
            .collect()
    }

    /// The wait before attempt number `failures + 1` after `failures` failures in a row.
    pub(crate) fn delay(&self, failures: u32) -> Duration {
        if failures == 0 || self.resend.is_empty() {
            return Duration::ZERO;
        }
        let i = (failures as usize - 1).min(self.resend.len() - 1);
        self.resend[i]
    }
}

impl Default for TransferConfig {
    fn default() -> Self {
        TransferConfig {
            port: DEFAULT_PORT,
            token: None,
            resend: TransferConfig::msmq_schedule(),
            batch: 256,
            batch_bytes: 1024 * 1024,
            window: 8,
            connect_timeout: Duration::from_secs(5),
            idle: Duration::from_secs(60),
            tls: None,
        }
    }
}

/// The transfer service of one queue manager: a link task per destination host, started when a
/// host first has something to send.
#[derive(Clone)]
pub struct TransferService {
    inner: Arc<Service>,
}

impl std::fmt::Debug for TransferService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransferService").finish_non_exhaustive()
    }
}

struct Service {
    qm: QueueManager,
    config: TransferConfig,
    links: Mutex<HashMap<String, Arc<link::Link>>>,
    stop: watch::Sender<bool>,
    runtime: tokio::runtime::Handle,
}

impl TransferService {
    /// Starts the service: a link for every host that has messages waiting, and one for each
    /// host that gets some later. The links run on a thread of their own (a current-thread
    /// runtime), so a server busy taking sends does not starve the delivery of what it took:
    /// the operating system shares the CPU between the two.
    pub fn start(qm: QueueManager, config: TransferConfig) -> TransferService {
        let (stop, _) = watch::channel(false);
        let runtime = links_runtime(stop.subscribe());
        let service = TransferService {
            inner: Arc::new(Service {
                qm: qm.clone(),
                config,
                links: Mutex::default(),
                stop,
                runtime,
            }),
        };
        let weak = Arc::downgrade(&service.inner);
        qm.transfer().on_ready(move |host| {
            if let Some(s) = weak.upgrade() {
                s.link(host).wake.notify_one();
            }
        });
        for out in qm.transfer().outgoing() {
            service.inner.link(out.host()).wake.notify_one();
        }
        service
    }

    /// Stops every link (messages not yet answered stay in their outgoing queues).
    pub fn stop(&self) {
        self.inner.qm.transfer().clear_ready();
        self.inner.stop.send_replace(true);
    }

    /// Every outgoing queue with its transfer state.
    pub fn outgoing(&self) -> Vec<OutgoingView> {
        let links = self.inner.lock_links();
        self.inner
            .qm
            .transfer()
            .outgoing()
            .into_iter()
            .map(|o| {
                let info = o.info();
                match links.get(o.host()) {
                    Some(l) => l.view(info),
                    None => link::idle_view(info),
                }
            })
            .collect()
    }

    /// `PAUSE`, `RESUME` or `EOD_RESEND` on the outgoing queue for `name`.
    pub fn act(&self, name: &str, action: OutgoingAction) -> Result<(), Error> {
        act(&self.inner.qm, name, action)?;
        if action == OutgoingAction::EodResend {
            if let Some(o) = self.inner.qm.transfer().find(name) {
                let l = self.inner.link(o.host());
                l.resend_now();
            }
        }
        Ok(())
    }
}

/// An action on an outgoing queue through the engine alone (no service running: `EOD_RESEND`
/// then has nothing to resend).
pub fn act(qm: &QueueManager, name: &str, action: OutgoingAction) -> Result<(), Error> {
    let o = qm.transfer().find(name).ok_or_else(|| {
        Error::new(
            ErrorCode::QueueNotFound,
            format!("there is no outgoing queue for {name}"),
        )
    })?;
    match action {
        OutgoingAction::Pause => o.pause(),
        OutgoingAction::Resume => o.resume(),
        OutgoingAction::EodResend => {}
    }
    Ok(())
}

/// The outgoing queues as management shows them when no transfer service runs.
pub fn outgoing_without_service(qm: &QueueManager) -> Vec<OutgoingView> {
    qm.transfer()
        .outgoing()
        .into_iter()
        .map(|o| link::idle_view(o.info()))
        .collect()
}

/// Starts the links' thread and its runtime; both end when `stop` turns true.
fn links_runtime(mut stop: watch::Receiver<bool>) -> tokio::runtime::Handle {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime starts");
    let handle = rt.handle().clone();
    std::thread::Builder::new()
        .name("mqemu-transfer".to_owned())
        .spawn(move || {
            rt.block_on(async move {
                let _ = stop.wait_for(|s| *s).await;
            });
            // Links still running end with the runtime.
            rt.shutdown_timeout(Duration::from_secs(1));
        })
        .expect("the transfer thread starts");
    handle
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

impl Service {
    fn lock_links(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<link::Link>>> {
        self.links.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The link to `host`, started if there is none.
    fn link(self: &Arc<Self>, host: &str) -> Arc<link::Link> {
        let mut links = self.lock_links();
        if let Some(l) = links.get(host) {
            return l.clone();
        }
        let l = Arc::new(link::Link::new(host.to_owned()));
        links.insert(host.to_owned(), l.clone());
        let task = link::Task {
            qm: self.qm.clone(),
            config: self.config.clone(),
            link: l.clone(),
            stop: self.stop.subscribe(),
        };
        self.runtime.spawn(task.run());
        l
    }
}
