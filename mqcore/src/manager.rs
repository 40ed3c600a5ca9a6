//! The queue manager: one MSMQ "computer" with its catalog of private queues, its system queues,
//! and the rules that route journal copies, dead letters and acknowledgements.
//!
//! [`QueueManager`] is the engine's entry point. It resolves path and format names to queues,
//! stamps messages on send, publishes a transaction's effects on commit, and sends the
//! acknowledgement and dead-letter copies MSMQ would. It never touches the network; a name that
//! points at another computer is refused until the network layer provides outgoing queues.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use bytes::Bytes;
use uuid::Uuid;

use crate::clock::{Clock, SystemClock, Timestamp};
use crate::effects::{logged_size, Effects, Put, LOGGED_OVERHEAD};
use crate::error::{Error, ErrorCode, Result};
use crate::message::{Acknowledge, Delivery, JournalFlags, Message, MessageClass, MessageId};
use crate::name::{Host, QueueName, QueueRef, SystemQueue};
use crate::queue::cold::{ColdSource, Entry};
use crate::queue::store::{footprint, LookupId, Store};
use crate::queue::{Queue, QueueInfo, QueueInner, QueueProps, QueueUpdate, Target};
use crate::storage::catalog::{CatalogStore, MemCatalog, SledCatalog};
use crate::storage::durable::{storage_dir, storage_error, Durable, LogSource, Recovered, Replay};
use crate::storage::record::{self, Op, OpRef, StoreRef};
use crate::storage::wal::{Lsn, Wal, WalError, WalOptions};
use crate::storage::{Disk, FileDisk, Ownership, OwnershipError};
use crate::timer::{Timer, TimerDeadline};
use crate::tx::{Coordinator, Held, LocalCoordinator, StagedSend, Transaction, Tx, TxKind};

/// Which MSMQ version's behaviour the queue manager follows.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum Compat {
    /// MSMQ 3.0 (Windows Server 2003): no subqueues, no move or reject, no remote transactional
    /// receive.
    Msmq3,
    /// MSMQ 4.0 and later (the default): subqueues, move, reject, and remote transactional
    /// receive under an external transaction.
    #[default]
    Msmq4,
}

impl FromStr for Compat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Compat> {
        match s.to_ascii_lowercase().as_str() {
            "msmq3" => Ok(Compat::Msmq3),
            "msmq4" => Ok(Compat::Msmq4),
            _ => Err(Error::new(
                ErrorCode::InvalidParameter,
                format!("compatibility level {s:?} is not msmq3 or msmq4"),
            )),
        }
    }
}

impl std::fmt::Display for Compat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Compat::Msmq3 => "msmq3",
            Compat::Msmq4 => "msmq4",
        })
    }
}

/// How much of the queued messages' data a durable queue manager keeps in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Body and label bytes of logged messages held in memory.
    pub cached_bytes: u64,
    /// Queued messages held only as their position in the log.
    pub cold_messages: u64,
}

/// Builds a [`QueueManager`].
#[must_use]
pub struct Builder {
    name: String,
    guid: Option<Uuid>,
    clock: Arc<dyn Clock>,
    compat: Compat,
    coordinator: Arc<dyn Coordinator>,
    segment_size: u64,
    cache_size: u64,
}

impl Builder {
    /// The computer name (`HOST` in `HOST\private$\q`); default `localhost`.
    pub fn name(mut self, name: impl Into<String>) -> Builder {
        self.name = name.into();
        self
    }

    /// The queue manager's GUID (the first 16 bytes of its message ids); default random.
    pub fn guid(mut self, guid: Uuid) -> Builder {
        self.guid = Some(guid);
        self
    }

    /// The clock behind every timeout and expiry; default wall time.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Builder {
        self.clock = clock;
        self
    }

    /// MSMQ 3.0 or 4.0 behaviour; default 4.0.
    pub fn compat(mut self, compat: Compat) -> Builder {
        self.compat = compat;
        self
    }

    /// The transaction coordinator for external transactions; default an always-available one.
    pub fn coordinator(mut self, coordinator: Arc<dyn Coordinator>) -> Builder {
        self.coordinator = coordinator;
        self
    }

    /// Size of each log segment of a durable queue manager; default 64 MiB.
    pub fn segment_size(mut self, bytes: u64) -> Builder {
        self.segment_size = bytes;
        self
    }

    /// Bytes of logged message bodies and labels a durable queue manager keeps in memory;
    /// messages past it are kept as log positions (16 bytes each) and read back when needed.
    /// Default 64 MiB.
    pub fn cache_size(mut self, bytes: u64) -> Builder {
        self.cache_size = bytes;
        self
    }

    /// Starts an in-memory queue manager.
    pub fn build(self) -> QueueManager {
        let guid = self.guid.unwrap_or_else(Uuid::new_v4);
        QueueManager {
            inner: self.start(guid, None, None),
        }
    }

    /// Opens (or creates) a durable queue manager whose storage is `<root>/msmq/storage/`: an
    /// owner lock and epoch, the write-ahead log (`wal/`) and the catalog (`catalog/`, sled).
    /// Everything committed before a crash is there again. Another process holding the
    /// directory makes this fail with `MQ_ERROR_SERVICE_NOT_AVAILABLE`.
    pub fn open(self, root: impl AsRef<Path>) -> Result<QueueManager> {
        let dir = storage_dir(root.as_ref());
        let disk: Arc<dyn Disk> = Arc::new(FileDisk);
        let owner = Ownership::acquire(disk.clone(), &dir).map_err(ownership_error)?;
        let catalog = SledCatalog::open(&dir.join("catalog")).map_err(|e| {
            Error::new(
                ErrorCode::MessageStorageFailed,
                format!("catalog in {}: {e}", dir.display()),
            )
        })?;
        self.open_owned(disk, &dir, Arc::new(catalog), owner)
    }

    /// [`Builder::open`] on any disk and catalog, with `dir` the storage directory itself: crash
    /// tests open a [`crate::storage::SimDisk`] and a [`crate::storage::MemCatalog`].
    pub fn open_with(
        self,
        disk: Arc<dyn Disk>,
        dir: &Path,
        catalog: Arc<dyn CatalogStore>,
    ) -> Result<QueueManager> {
        let owner = Ownership::acquire(disk.clone(), dir).map_err(ownership_error)?;
        self.open_owned(disk, dir, catalog, owner)
    }

    fn open_owned(
        self,
        disk: Arc<dyn Disk>,
        dir: &Path,
        catalog: Arc<dyn CatalogStore>,
        owner: Ownership,
    ) -> Result<QueueManager> {
        let cat_err = |e: std::io::Error| {
            Error::new(ErrorCode::MessageStorageFailed, format!("catalog: {e}"))
        };
        let guid = match catalog.get(GUID_KEY).map_err(cat_err)? {
            Some(bytes) => Uuid::from_slice(&bytes).map_err(|e| {
                Error::new(
                    ErrorCode::MessageStorageFailed,
                    format!("catalog: bad GUID: {e}"),
                )
            })?,
            None => {
                let guid = self.guid.unwrap_or_else(Uuid::new_v4);
                catalog.put(GUID_KEY, guid.as_bytes()).map_err(cat_err)?;
                guid
            }
        };
        let options_size = self.segment_size;
        let options = WalOptions {
            segment_size: self.segment_size,
        };
        let mut replay = Replay::new(guid, options_size);
        let mut failed = None;
        let wal = Wal::open_visiting(
            disk,
            &dir.join("wal"),
            owner.epoch(),
            owner.epoch_check(),
            options,
            |r| {
                replay.record(r).map_err(|e| {
                    let why = e.to_string();
                    failed = Some(e);
                    WalError::Poisoned(why)
                })
            },
        )
        .map_err(|e| failed.take().unwrap_or_else(|| storage_error(e)))?;
        let (recovered, live) = replay.finish();
        let cold: Arc<dyn ColdSource> = Arc::new(LogSource::new(wal.reader(), self.cache_size));
        let durable = Durable::new(wal, catalog, owner, options_size, live);
        let inner = self.start(guid, Some(durable), Some(cold));
        inner.recover(recovered)?;
        Ok(QueueManager { inner })
    }

    fn start(
        self,
        guid: Uuid,
        durable: Option<Durable>,
        cold: Option<Arc<dyn ColdSource>>,
    ) -> Arc<Inner> {
        let system = |q| Store::linked(StoreRef::System(q), false, cold.as_ref());
        let timer = Timer::start(self.clock.clone());
        Arc::new(Inner {
            name: self.name,
            guid,
            compat: self.compat,
            clock: self.clock,
            timer,
            coordinator: self.coordinator,
            catalog: RwLock::new(Catalog::default()),
            next_ordinal: AtomicU32::new(0),
            next_tx: AtomicU64::new(0),
            dead_letter: system(SystemQueue::DeadLetter),
            dead_xact: system(SystemQueue::DeadXact),
            journal: system(SystemQueue::Journal),
            durable,
            cold,
            in_doubt: Mutex::new(HashMap::new()),
            xids: Mutex::default(),
            compacting: AtomicBool::new(false),
            mem_settings: MemCatalog::new(),
        })
    }
}

/// One compaction record being built: messages rewritten at the head of the log.
#[derive(Default)]
struct Rewrite {
    data: Vec<u8>,
    keeps: u64,
    bytes: u64,
    /// The cold messages in it: rank, lookup id, LSN of their record until now, logged size.
    cold: Vec<(u8, LookupId, Lsn, u64)>,
}

impl Rewrite {
    fn push(&mut self, at: &StoreRef, msg: &Message) {
        record::push(&mut self.data, &OpRef::Put { at, msg });
        self.keeps += 1;
        self.bytes += logged_size(msg);
    }

    /// Submits the record (its messages live from it on); returns its LSN.
    fn submit(self, d: &Durable) -> Result<Lsn> {
        d.submit(record::COMMIT, &self.data, self.keeps, self.bytes)
    }

    /// Submits a record of cold messages of `s` and points them at it; their old records go to
    /// `gone`, to be released once it is durable.
    fn submit_cold(
        self,
        d: &Durable,
        s: &mut crate::queue::store::State,
        gone: &mut Vec<(Lsn, u64)>,
    ) -> Result<Lsn> {
        let lsn = d.submit(record::COMMIT, &self.data, self.keeps, self.bytes)?;
        for (rank, lookup, old, size) in self.cold {
            s.relocated(rank, lookup, lsn);
            gone.push((old, size));
        }
        Ok(lsn)
    }
}

/// Default bytes of logged messages kept in memory ([`Builder::cache_size`]).
const DEFAULT_CACHE: u64 = 64 * 1024 * 1024;

/// Bytes of rewritten messages per compaction record.
const REWRITE_CHUNK: usize = 8 * 1024 * 1024;

/// Catalog key of the queue manager's GUID.
const GUID_KEY: &str = "meta/guid";
/// Catalog key of the last queue id handed out.
const QUEUE_ID_KEY: &str = "meta/last_queue_id";
/// Catalog key prefix of queue definitions.
const QUEUE_PREFIX: &str = "queue/";

fn queue_key(id: u32) -> String {
    format!("{QUEUE_PREFIX}{id:08x}")
}

/// A queue's definition in the catalog.
#[derive(serde::Serialize, serde::Deserialize)]
struct QueueDef {
    id: u32,
    name: String,
    props: QueueProps,
}

fn ownership_error(e: OwnershipError) -> Error {
    match e {
        OwnershipError::InUse(dir) => Error::new(
            ErrorCode::ServiceNotAvailable,
            format!(
                "storage directory {} is in use by another queue manager process",
                dir.display()
            ),
        ),
        other => Error::new(ErrorCode::MessageStorageFailed, other.to_string()),
    }
}

#[derive(Default)]
struct Catalog {
    by_name: HashMap<String, Arc<QueueInner>>,
    by_id: HashMap<u32, Arc<QueueInner>>,
    next_id: u32,
}

/// The shared state behind a [`QueueManager`] and every handle and transaction it gave out.
pub(crate) struct Inner {
    name: String,
    guid: Uuid,
    compat: Compat,
    clock: Arc<dyn Clock>,
    timer: Timer,
    coordinator: Arc<dyn Coordinator>,
    catalog: RwLock<Catalog>,
    /// Ordinal of the last message id handed out.
    next_ordinal: AtomicU32,
    /// Id of the last transaction begun.
    next_tx: AtomicU64,
    /// `SYSTEM$;DEADLETTER`.
    dead_letter: Arc<Store>,
    /// `SYSTEM$;DEADXACT`.
    dead_xact: Arc<Store>,
    /// `SYSTEM$;JOURNAL`, the computer journal.
    journal: Arc<Store>,
    /// The log and catalog; `None` for an in-memory queue manager.
    pub(crate) durable: Option<Durable>,
    /// Where stores read messages past the cache budget back from (durable queue managers).
    cold: Option<Arc<dyn ColdSource>>,
    /// Prepared transactions found by recovery, waiting for their outcome, by xid.
    in_doubt: Mutex<HashMap<String, Transaction>>,
    /// Coordinator ids of the external transactions begun and not finished: an xid names one
    /// transaction in the log, so a second live one is refused.
    xids: Mutex<std::collections::HashSet<String>>,
    /// Set while a step compacts the log, so that only one does.
    compacting: AtomicBool,
    /// Where other components' definitions (triggers and rules) live when there is no durable
    /// catalog, so that they outlive the component within the process.
    mem_settings: MemCatalog,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.timer.shutdown();
    }
}

/// Definitions other components keep with the queue manager, so that they travel with its storage
/// directory (the Triggers service's rules and triggers). Keys must not start with `q/` or the
/// other prefixes the queue manager uses for itself.
pub(crate) struct Settings<'a> {
    inner: &'a Inner,
}

impl Settings<'_> {
    fn store(&self) -> &dyn CatalogStore {
        match &self.inner.durable {
            Some(d) => &*d.catalog,
            None => &self.inner.mem_settings,
        }
    }

    fn io(e: std::io::Error) -> Error {
        Error::new(ErrorCode::MessageStorageFailed, format!("catalog: {e}"))
    }

    /// Every entry under `prefix`, in key order.
    pub(crate) fn scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        self.store().scan(prefix).map_err(Settings::io)
    }

    /// Sets `key`; durable when it returns. Refused once another node owns the storage.
    pub(crate) fn put(&self, key: &str, value: &[u8]) -> Result<()> {
        if let Some(d) = &self.inner.durable {
            d.check_owner()?;
        }
        self.store().put(key, value).map_err(Settings::io)
    }

    /// Removes `key`; durable when it returns. Refused once another node owns the storage.
    pub(crate) fn remove(&self, key: &str) -> Result<()> {
        if let Some(d) = &self.inner.durable {
            d.check_owner()?;
        }
        self.store().remove(key).map_err(Settings::io)
    }
}

/// Whether adding `adding` bytes to `current` exceeds a quota in kilobytes.
fn over_quota(quota_kb: Option<u32>, current: u64, adding: u64) -> bool {
    quota_kb.is_some_and(|kb| current + adding > u64::from(kb) * 1024)
}

impl Inner {
    fn catalog(&self) -> RwLockReadGuard<'_, Catalog> {
        self.catalog.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn catalog_mut(&self) -> RwLockWriteGuard<'_, Catalog> {
        self.catalog.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub(crate) fn deadline(&self, timeout: Duration) -> TimerDeadline {
        self.timer
            .deadline((timeout != crate::queue::INFINITE).then_some(timeout))
    }

    pub(crate) fn system_store(&self, s: SystemQueue) -> &Arc<Store> {
        match s {
            SystemQueue::DeadLetter => &self.dead_letter,
            SystemQueue::DeadXact => &self.dead_xact,
            SystemQueue::Journal => &self.journal,
        }
    }

    fn next_id(&self) -> MessageId {
        let ordinal = self
            .next_ordinal
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1);
        MessageId::new(self.guid, ordinal)
    }

    pub(crate) fn require_msmq4(&self, what: &str) -> Result<()> {
        if self.compat == Compat::Msmq4 {
            return Ok(());
        }
        Err(Error::new(
            ErrorCode::UnsupportedOperation,
            format!("{what} needs MSMQ 4.0 behaviour; this queue manager runs as msmq3"),
        ))
    }

    pub(crate) fn require_coordinator(&self) -> Result<()> {
        if self.coordinator.is_available() {
            return Ok(());
        }
        Err(Error::new(
            ErrorCode::DtcConnect,
            "the transaction coordinator is not available",
        ))
    }

    pub(crate) fn check_own_tx(self: &Arc<Self>, t: &Transaction) -> Result<()> {
        if std::ptr::eq(t.shared.qm.as_ptr(), Arc::as_ptr(self)) {
            return Ok(());
        }
        Err(Error::new(
            ErrorCode::TransactionUsage,
            "the transaction belongs to another queue manager",
        ))
    }

    /// Whether `host` names this queue manager.
    fn is_local(&self, host: &Host<'_>) -> bool {
        let me = |n: &str| {
            n.eq_ignore_ascii_case(&self.name)
                || n.eq_ignore_ascii_case("localhost")
                || n == "127.0.0.1"
                || n == "::1"
                || n == "[::1]"
        };
        match host {
            Host::Local => true,
            Host::Computer(n) => me(n),
            Host::Address { address, .. } => {
                // An address may carry a port (HTTP forms): compare the host part.
                let host = address.rsplit_once(':').map_or(*address, |(h, p)| {
                    if p.chars().all(|c| c.is_ascii_digit()) {
                        h
                    } else {
                        address
                    }
                });
                me(host) || me(address)
            }
            Host::Machine(g) => *g == self.guid,
        }
    }

    /// Finds what a name points at on this queue manager.
    pub(crate) fn resolve(&self, name: &QueueName) -> Result<Target> {
        if !self.is_local(&name.host()) {
            return Err(Error::new(
                ErrorCode::RemoteMachineNotAvailable,
                format!(
                    "{name} is on another computer; this queue manager ({}) reaches only its own queues",
                    self.name
                ),
            ));
        }
        let not_found = || {
            Error::new(
                ErrorCode::QueueNotFound,
                format!("queue {name} does not exist"),
            )
        };
        match name.queue() {
            QueueRef::Private {
                name: qname,
                subqueue,
                journal,
            } => {
                let q = self
                    .catalog()
                    .by_name
                    .get(&qname.to_ascii_lowercase())
                    .cloned()
                    .ok_or_else(not_found)?;
                match (subqueue, journal) {
                    (Some(sub), _) => {
                        self.require_msmq4("subqueues")?;
                        Ok(Target::Sub(q, sub.to_owned()))
                    }
                    (None, true) => Ok(Target::Journal(q)),
                    (None, false) => Ok(Target::Main(q)),
                }
            }
            QueueRef::PrivateId { id, journal } => {
                let q = self.catalog().by_id.get(&id).cloned().ok_or_else(not_found)?;
                Ok(if journal {
                    Target::Journal(q)
                } else {
                    Target::Main(q)
                })
            }
            QueueRef::Public { .. } | QueueRef::PublicGuid { .. } => Err(Error::new(
                ErrorCode::UnsupportedOperation,
                format!(
                    "{name} is a public queue; public queues need Active Directory and mqemu runs in workgroup mode"
                ),
            )),
            QueueRef::System(s) => Ok(Target::System(s)),
        }
    }

    pub(crate) fn open(self: &Arc<Self>, name: &QueueName) -> Result<Queue> {
        let target = self.resolve(name)?;
        Ok(Queue {
            qm: self.clone(),
            target,
            name: name.clone(),
        })
    }

    /// Stamps and sends `msg` to `q` under `tx`.
    pub(crate) fn send(
        self: &Arc<Self>,
        q: &Arc<QueueInner>,
        msg: Message,
        tx: Tx<'_>,
    ) -> Result<MessageId> {
        let (msg, quota) = self.stamp(q, msg, tx.is_transactional())?;
        let id = msg.id;
        match tx {
            Tx::None => self.arrive(q, msg, quota)?,
            Tx::Single => {
                let t = self.begin(TxKind::Internal);
                self.stage(q, msg, &t)?;
                t.commit()?;
            }
            Tx::In(t) => {
                self.check_own_tx(t)?;
                self.stage(q, msg, t)?;
            }
        }
        Ok(id)
    }

    /// [`Queue::send_batch`]: runs of recoverable non-transactional messages share one logged
    /// step, runs of single-message transactions with equal time limits share one internal
    /// transaction (a transaction gives all its messages its first message's limits, so only
    /// equal ones can share).
    pub(crate) fn send_batch(
        self: &Arc<Self>,
        q: &Arc<QueueInner>,
        msgs: Vec<Message>,
        tx: Tx<'_>,
    ) -> Vec<Result<MessageId>> {
        let mut out = Vec::with_capacity(msgs.len());
        let mut msgs = msgs.into_iter().peekable();
        match tx {
            Tx::Single => {
                while let Some(first) = msgs.next() {
                    let limits = (first.time_to_reach_queue, first.time_to_be_received);
                    let t = self.begin(TxKind::Internal);
                    let start = out.len();
                    out.push(self.send(q, first, Tx::In(&t)));
                    while let Some(m) =
                        msgs.next_if(|m| (m.time_to_reach_queue, m.time_to_be_received) == limits)
                    {
                        out.push(self.send(q, m, Tx::In(&t)));
                    }
                    if let Err(e) = t.commit() {
                        for r in &mut out[start..] {
                            if r.is_ok() {
                                *r = Err(e.clone());
                            }
                        }
                    }
                }
            }
            Tx::None if self.durable.is_some() => {
                // Recoverable messages wait in `run` until an express one (which is not
                // logged) or the end, so the order of arrival is the order of sending.
                let mut run: Vec<(usize, Message)> = Vec::new();
                let mut run_bytes = 0u64;
                for msg in msgs {
                    let stamped = self.stamp(q, msg, false);
                    let (mut msg, quota) = match stamped {
                        Ok(s) => s,
                        Err(e) => {
                            out.push(Err(e));
                            continue;
                        }
                    };
                    if msg.delivery != Delivery::Recoverable {
                        self.arrive_logged(q, &mut run, &mut out);
                        run_bytes = 0;
                        let id = msg.id;
                        out.push(self.arrive(q, msg, quota).map(|()| id));
                        continue;
                    }
                    msg.arrived_time = msg.sent_time;
                    let current = q.store.lock().bytes() + run_bytes;
                    if let Err(e) = self.check_quota(q, current, &msg) {
                        out.push(Err(e));
                        continue;
                    }
                    run_bytes += footprint(&msg);
                    out.push(Ok(msg.id));
                    run.push((out.len() - 1, msg));
                }
                self.arrive_logged(q, &mut run, &mut out);
            }
            _ => out.extend(msgs.map(|m| self.send(q, m, tx))),
        }
        out
    }

    /// Publishes stamped recoverable messages in one logged step; a failed log write fails them
    /// all in `out` (at the indexes they carry).
    fn arrive_logged(
        self: &Arc<Self>,
        q: &Arc<QueueInner>,
        run: &mut Vec<(usize, Message)>,
        out: &mut [Result<MessageId>],
    ) {
        if run.is_empty() {
            return;
        }
        let at: Vec<usize> = run.iter().map(|(i, _)| *i).collect();
        let msgs = std::mem::take(run);
        let r = self.run(|eff| {
            for (_, msg) in msgs {
                if self.needs_arrival_follow_up(&msg) {
                    self.arrived(&msg, eff);
                }
                eff.put(&q.store, msg);
            }
        });
        if let Err(e) = r {
            for i in at {
                out[i] = Err(e.clone());
            }
        }
    }

    /// Checks a message about to be sent to `q` and stamps what the queue manager sets (id,
    /// times, source, destination). Returns it with the queue's quota.
    fn stamp(
        self: &Arc<Self>,
        q: &Arc<QueueInner>,
        mut msg: Message,
        in_tx: bool,
    ) -> Result<(Message, Option<u32>)> {
        q.check_live()?;
        msg.validate()?;
        let (transactional, quota) = {
            let p = q.read_props();
            (p.transactional, p.quota_kb)
        };
        if transactional != in_tx {
            let detail = if transactional {
                format!("{} is transactional; send within a transaction", q.path)
            } else {
                format!(
                    "{} is not transactional; send without a transaction",
                    q.path
                )
            };
            return Err(Error::new(ErrorCode::TransactionUsage, detail));
        }
        let now = self.now();
        msg.id = self.next_id();
        msg.class = MessageClass::NORMAL;
        msg.sent_time = now;
        msg.arrived_time = Timestamp::default();
        msg.source_machine = self.guid;
        msg.destination = Some(q.path.clone());
        msg.lookup_id = 0;
        msg.abort_count = 0;
        msg.move_count = 0;
        // A message received from a durable queue manager and sent again is a new message: it
        // is in no log record until its send is logged.
        msg.lsn = 0;
        msg.transactional = transactional;
        Ok((msg, quota))
    }

    /// Applies MSMQ's transactional coercions and stages the message in `t`.
    fn stage(
        self: &Arc<Self>,
        q: &Arc<QueueInner>,
        mut msg: Message,
        t: &Transaction,
    ) -> Result<()> {
        let mut st = t.shared.lock_active()?;
        msg.priority = 0;
        msg.delivery = Delivery::Recoverable;
        let (ttrq, ttbr) = *st
            .first_times
            .get_or_insert((msg.time_to_reach_queue, msg.time_to_be_received));
        msg.time_to_reach_queue = ttrq;
        msg.time_to_be_received = ttbr;
        let staged: u64 = st
            .sends
            .iter()
            .filter(|s| Arc::ptr_eq(&s.queue, q))
            .map(|s| footprint(&s.msg))
            .sum();
        let current = q.store.lock().bytes() + staged;
        self.check_quota(q, current, &msg)?;
        st.sends.push(StagedSend {
            queue: q.clone(),
            msg,
        });
        Ok(())
    }

    fn check_quota(self: &Arc<Self>, q: &QueueInner, current: u64, msg: &Message) -> Result<()> {
        let quota = q.read_props().quota_kb;
        if !over_quota(quota, current, footprint(msg)) {
            return Ok(());
        }
        self.run_quietly(|eff| self.acknowledge(msg, MessageClass::NACK_Q_EXCEED_QUOTA, eff));
        Err(Error::new(
            ErrorCode::InsufficientResources,
            format!(
                "{} is over its quota of {} KB ({current} bytes held, {} more offered); MSMQ reports this as NACK 0x8003",
                q.path,
                quota.unwrap_or_default(),
                footprint(msg)
            ),
        ))
    }

    /// A new, empty step.
    pub(crate) fn effects(&self) -> Effects {
        Effects::new(self.durable.is_some())
    }

    /// Builds a step with `f` and applies it.
    pub(crate) fn run(self: &Arc<Self>, f: impl FnOnce(&mut Effects)) -> Result<()> {
        self.run_logged(f).map(drop)
    }

    /// [`Inner::run`], returning the LSN of the step's record (0 if it logged nothing).
    pub(crate) fn run_logged(self: &Arc<Self>, f: impl FnOnce(&mut Effects)) -> Result<Lsn> {
        let mut eff = self.effects();
        f(&mut eff);
        self.apply_as(eff, None)
    }

    /// [`Inner::run`] where nobody can take the error (timers, follow-ups of a step already
    /// done): a storage failure is logged; the records it did not write come back on restart.
    pub(crate) fn run_quietly(self: &Arc<Self>, f: impl FnOnce(&mut Effects)) {
        if let Err(e) = self.run(f) {
            tracing::error!(error = %e, "a queue manager step could not be logged");
        }
    }

    /// Applies a step: claims held messages from their stores, logs what is durable in one
    /// record (and waits for it), then publishes. A storage failure is returned before anything
    /// is published; claimed messages then stay on disk and come back on restart.
    pub(crate) fn apply(self: &Arc<Self>, eff: Effects) -> Result<()> {
        self.apply_as(eff, None).map(drop)
    }

    /// [`Inner::apply`]; with `resolve`, the step is a prepared transaction's and the record is
    /// its outcome (xid and the PREPARE record's LSN), the operations being logged already.
    pub(crate) fn apply_as(
        self: &Arc<Self>,
        mut eff: Effects,
        resolve: Option<(&str, Lsn)>,
    ) -> Result<Lsn> {
        if eff.is_empty() && resolve.is_none() {
            return Ok(0);
        }
        let mut tidy = Vec::new();
        for h in std::mem::take(&mut eff.claims) {
            let Some(msg) = h.store.lock().remove_locked(h.lookup) else {
                continue;
            };
            if let Some(dest) = &h.move_to {
                eff.insert_moved(dest, msg);
            }
            if let Some(q) = h.queue {
                tidy.push(q);
            }
        }
        let lsn = match (&self.durable, resolve) {
            (Some(d), Some((xid, prepared))) => {
                let outcome = record::Outcome {
                    xid: xid.to_owned(),
                    commit: true,
                };
                d.log(record::RESOLVE, &record::encode(&outcome), 0, 0)?;
                d.release(&[(prepared, 0)]);
                prepared
            }
            (Some(d), None) if !eff.ops.is_empty() => {
                let lsn = d.submit(record::COMMIT, &eff.ops, eff.keeps, eff.kept_bytes)?;
                // A host collecting steps (`crate::deferred`) waits for the record itself and
                // publishes after; everyone else waits here.
                if let Err(rest) =
                    crate::deferred::defer(self, lsn, crate::deferred::Rest { eff, tidy })
                {
                    let crate::deferred::Rest { eff, tidy } = *rest;
                    d.wal
                        .wait(lsn)
                        .map_err(crate::storage::durable::storage_error)?;
                    self.publish(eff, tidy, lsn);
                }
                return Ok(lsn);
            }
            _ => 0,
        };
        self.publish(eff, tidy, lsn);
        Ok(lsn)
    }

    /// The second half of [`Inner::apply_as`], once the step's record (at `lsn`, 0 if none) is
    /// durable: releases what it ended and makes its puts visible.
    pub(crate) fn publish(self: &Arc<Self>, eff: Effects, tidy: Vec<Arc<QueueInner>>, lsn: Lsn) {
        if let Some(d) = &self.durable {
            d.release(&eff.released);
        }
        for put in eff.puts {
            let Put {
                store,
                mut msg,
                logged,
                refused,
            } = put;
            if logged {
                msg.lsn = lsn;
            }
            let expires = msg.time_to_be_received.is_some();
            let result = store.lock().insert(msg, logged);
            match result {
                Ok(()) if expires => self.arm_expiry(&store),
                Ok(()) => {}
                Err(msg) => {
                    // Its queue is being deleted; until that deletion is durable, its put is
                    // undone explicitly.
                    self.run_quietly(|e| {
                        e.removed(&store, &msg);
                        self.fail_message(*msg, refused, e);
                    });
                }
            }
        }
        for q in tidy {
            q.tidy_subqueues();
        }
        // After the publish: a committer that happens to run compaction has already made its
        // messages visible.
        if let Some(d) = &self.durable {
            if lsn != 0 && d.compaction_due(lsn) {
                if let Err(e) = self.compact() {
                    tracing::error!(error = %e, "log compaction failed");
                }
            }
        }
    }

    /// A non-transactional send reaching its queue: quota check and publish under one lock, or
    /// the lock-light inbox when the queue has no quota. A recoverable message on a durable
    /// queue manager is logged first.
    fn arrive(
        self: &Arc<Self>,
        q: &Arc<QueueInner>,
        mut msg: Message,
        quota: Option<u32>,
    ) -> Result<()> {
        msg.arrived_time = msg.sent_time;
        if self.durable.is_some() && msg.delivery == Delivery::Recoverable {
            let current = q.store.lock().bytes();
            self.check_quota(q, current, &msg)?;
            return self.run(|eff| {
                if self.needs_arrival_follow_up(&msg) {
                    self.arrived(&msg, eff);
                }
                eff.put(&q.store, msg);
            });
        }
        let msg = Box::new(msg);
        let follow_up = self.needs_arrival_follow_up(&msg).then(|| (*msg).clone());
        let expires = msg.time_to_be_received.is_some();
        let published = if quota.is_none() {
            q.store.send(msg)
        } else {
            let mut s = q.store.lock();
            if over_quota(quota, s.bytes(), footprint(&msg)) {
                let current = s.bytes();
                drop(s);
                return self.check_quota(q, current, &msg);
            }
            s.publish(msg)
        };
        if published.is_err() {
            // Deleted between the check and the publish: nothing was sent, say so.
            return Err(Error::new(
                ErrorCode::QueueDeleted,
                format!("queue {} was deleted during the send", q.path),
            ));
        }
        if expires {
            self.arm_expiry(&q.store);
        }
        if let Some(m) = follow_up {
            self.run_quietly(|eff| self.arrived(&m, eff));
        }
        Ok(())
    }

    fn needs_arrival_follow_up(&self, msg: &Message) -> bool {
        (msg.admin_queue.is_some() && msg.acknowledge.contains(Acknowledge::POS_ARRIVAL))
            || msg.journal.contains(JournalFlags::JOURNAL)
    }

    /// What happens once a message is in its destination queue: positive arrival
    /// acknowledgement and source journaling.
    fn arrived(&self, msg: &Message, eff: &mut Effects) {
        self.acknowledge(msg, MessageClass::ACK_REACH_QUEUE, eff);
        if msg.journal.contains(JournalFlags::JOURNAL) {
            // The computer journal is never deleted, so it always takes the copy.
            eff.put(&self.journal, msg.clone());
        }
    }

    /// What committing a transaction changes: staged messages reach their queues (or fail as
    /// MSMQ fails an undeliverable transactional message: negative acknowledgement and the
    /// transactional dead-letter queue, while the transaction still commits), and held messages
    /// leave theirs (journaled and acknowledged) or move.
    pub(crate) fn commit_effects(&self, sends: Vec<StagedSend>, held: Vec<Held>) -> Effects {
        let mut eff = self.effects();
        let now = self.now();
        let mut staged: Vec<(Arc<Store>, u64)> = Vec::new();
        for StagedSend { queue, mut msg } in sends {
            if let Some(ttrq) = msg.time_to_reach_queue {
                if now > msg.sent_time.saturating_add(ttrq) {
                    self.fail_message(msg, MessageClass::NACK_REACH_QUEUE_TIMEOUT, &mut eff);
                    continue;
                }
            }
            msg.arrived_time = now;
            let quota = queue.read_props().quota_kb;
            let earlier = staged
                .iter()
                .find(|(s, _)| Arc::ptr_eq(s, &queue.store))
                .map_or(0, |(_, b)| *b);
            let held_now = queue.store.lock().bytes() + earlier;
            if over_quota(quota, held_now, footprint(&msg)) {
                // Other transactions filled the queue since this send was checked.
                self.fail_message(msg, MessageClass::NACK_Q_EXCEED_QUOTA, &mut eff);
                continue;
            }
            match staged
                .iter_mut()
                .find(|(s, _)| Arc::ptr_eq(s, &queue.store))
            {
                Some((_, b)) => *b += footprint(&msg),
                None => staged.push((queue.store.clone(), footprint(&msg))),
            }
            if self.needs_arrival_follow_up(&msg) {
                self.arrived(&msg, &mut eff);
            }
            eff.put_refusing(&queue.store, msg, MessageClass::NACK_BAD_DST_Q);
        }
        for h in held {
            // Log the removal or move from the held message in place; copy it only when a
            // journal copy or a receive acknowledgement needs it.
            let copy = {
                let s = h.store.lock();
                match (s.locked_message(h.lookup), &h.move_to) {
                    (Some(msg), Some(dest)) => {
                        eff.log_move(&h.store, dest, msg);
                        None
                    }
                    (Some(msg), None) => {
                        eff.removed(&h.store, msg);
                        self.follows_receive(h.queue.as_deref(), msg)
                            .then(|| msg.clone())
                    }
                    (None, _) => None,
                }
            };
            if let Some(msg) = copy {
                self.after_receive(h.queue.as_deref(), &msg, &mut eff);
            }
            eff.claims.push(h);
        }
        eff
    }

    /// Whether receiving `msg` from `parent` leads to a journal copy or an acknowledgement.
    fn follows_receive(&self, parent: Option<&QueueInner>, msg: &Message) -> bool {
        parent.is_some_and(|q| {
            q.read_props().journal
                || (msg.admin_queue.is_some() && msg.acknowledge.contains(Acknowledge::POS_RECEIVE))
        })
    }

    /// Logs a prepared transaction's step (a PREPARE record that keeps its puts and itself
    /// alive until the outcome) and returns the record's LSN (0 in memory).
    pub(crate) fn log_prepare(&self, xid: &str, eff: &Effects) -> Result<Lsn> {
        let Some(d) = &self.durable else {
            return Ok(0);
        };
        let head = record::Outcome {
            xid: xid.to_owned(),
            commit: false,
        };
        let mut data = record::encode(&head);
        data.extend_from_slice(&eff.ops);
        d.log(record::PREPARE, &data, eff.keeps + 1, eff.kept_bytes)
    }

    /// Logs that a prepared transaction aborted: its record keeps nothing alive any more.
    pub(crate) fn log_abort_prepared(&self, xid: &str, prepared: Lsn, eff: &Effects) -> Result<()> {
        let Some(d) = &self.durable else {
            return Ok(());
        };
        let outcome = record::Outcome {
            xid: xid.to_owned(),
            commit: false,
        };
        d.log(record::RESOLVE, &record::encode(&outcome), 0, 0)?;
        let mut gone = vec![(prepared, eff.kept_bytes)];
        gone.extend(std::iter::repeat_n(
            (prepared, 0),
            usize::try_from(eff.keeps).unwrap_or(usize::MAX),
        ));
        d.release(&gone);
        Ok(())
    }

    /// Aborts a transaction's held messages: each store gets all of its messages back at their
    /// positions first and hands them out once, so a waiting receiver gets the head of the
    /// queue. Messages whose queue was deleted meanwhile, or whose time-to-be-received ran out
    /// while they were held, go where such messages go.
    pub(crate) fn abort(self: &Arc<Self>, held: Vec<Held>) {
        let mut groups: Vec<(Arc<Store>, Vec<LookupId>)> = Vec::new();
        for h in held {
            match groups.iter_mut().find(|(s, _)| Arc::ptr_eq(s, &h.store)) {
                Some((_, lookups)) => lookups.push(h.lookup),
                None => groups.push((h.store, vec![h.lookup])),
            }
        }
        let now = self.now();
        for (store, lookups) in groups {
            let (deleted, expired) = {
                let mut s = store.lock();
                let deleted: Vec<Message> = lookups
                    .into_iter()
                    .filter_map(|l| s.restore(l, true))
                    .collect();
                s.expire(|| now);
                s.dispatch();
                (deleted, s.drain_expired())
            };
            self.run_quietly(|eff| {
                for m in deleted {
                    eff.removed(&store, &m);
                    self.fail_message(m, MessageClass::NACK_Q_DELETED, eff);
                }
                self.dead_letter_expired(&store, expired, eff);
            });
            self.arm_expiry(&store);
        }
    }

    /// A message left its destination queue (or subqueue) through a receive: journal it (target
    /// journaling) and acknowledge. Receiving a journal copy or a dead letter does neither: that
    /// message was delivered once already.
    pub(crate) fn after_receive(
        &self,
        parent: Option<&QueueInner>,
        msg: &Message,
        eff: &mut Effects,
    ) {
        let Some(q) = parent else {
            return;
        };
        let (journal, journal_quota) = {
            let p = q.read_props();
            (p.journal, p.journal_quota_kb)
        };
        if journal {
            let bytes = q.journal.lock().bytes();
            if over_quota(journal_quota, bytes, footprint(msg)) {
                tracing::warn!(queue = %q.path, "journal quota reached; journal copy dropped");
            } else {
                // A journal closed by deletion simply takes no copy.
                eff.put(&q.journal, msg.clone());
            }
        }
        self.acknowledge(msg, MessageClass::ACK_RECEIVE, eff);
    }

    /// A message that will not be received: negative acknowledgement, then dead letter. The
    /// caller has recorded that it left its queue.
    pub(crate) fn fail_message(&self, msg: Message, class: MessageClass, eff: &mut Effects) {
        self.acknowledge(&msg, class, eff);
        self.dead_letter(msg, class, eff);
    }

    /// Dead-letters messages found expired in `store`, as a step of its own.
    pub(crate) fn expired(self: &Arc<Self>, store: &Store, expired: Vec<Message>) {
        if !expired.is_empty() {
            self.run_quietly(|eff| self.dead_letter_expired(store, expired, eff));
        }
    }

    /// Dead-letters messages whose time-to-be-received ran out in `store`.
    pub(crate) fn dead_letter_expired(
        &self,
        store: &Store,
        expired: Vec<Message>,
        eff: &mut Effects,
    ) {
        for m in expired {
            eff.removed(store, &m);
            self.fail_message(m, MessageClass::NACK_RECEIVE_TIMEOUT, eff);
        }
    }

    /// Transactional messages always go to the transactional dead-letter queue; others only when
    /// their sender set `MQMSG_DEADLETTER`.
    fn dead_letter(&self, mut msg: Message, class: MessageClass, eff: &mut Effects) {
        let store = if msg.transactional {
            &self.dead_xact
        } else if msg.journal.contains(JournalFlags::DEADLETTER) {
            &self.dead_letter
        } else {
            return;
        };
        msg.class = class;
        // System queues are never deleted, so they always take the message.
        eff.put(store, msg);
    }

    /// Sends the acknowledgement of `class` for `orig` to its admin queue, if the sender asked for
    /// that kind. Acknowledgements go only to local non-transactional queues (MSMQ sends them as
    /// non-transactional messages); others are dropped with a log line.
    pub(crate) fn acknowledge(&self, orig: &Message, class: MessageClass, eff: &mut Effects) {
        let Some(admin) = &orig.admin_queue else {
            return;
        };
        let wanted = match class {
            MessageClass::ACK_REACH_QUEUE => Acknowledge::POS_ARRIVAL,
            MessageClass::ACK_RECEIVE => Acknowledge::POS_RECEIVE,
            c if c.is_nack() && c.is_receive() => Acknowledge::NEG_RECEIVE,
            c if c.is_nack() => Acknowledge::NEG_ARRIVAL,
            _ => return,
        };
        if !orig.acknowledge.contains(wanted) {
            return;
        }
        let q = match self.resolve(admin) {
            Ok(Target::Main(q)) if !q.is_transactional() => q,
            _ => {
                tracing::debug!(%admin, "acknowledgement dropped: admin queue is not a local non-transactional queue");
                return;
            }
        };
        let now = self.now();
        let ack = Message {
            label: orig.label.clone(),
            body: if class.is_nack() {
                orig.body.clone()
            } else {
                Bytes::new()
            },
            body_type: orig.body_type,
            correlation_id: Some(orig.id),
            app_specific: orig.app_specific,
            priority: orig.priority,
            id: self.next_id(),
            class,
            sent_time: now,
            arrived_time: now,
            source_machine: self.guid,
            destination: Some(q.path.clone()),
            ..Message::default()
        };
        eff.put(&q.store, ack);
    }

    /// Makes sure the timer will expire `store`'s messages at its earliest time-to-be-received
    /// deadline. One timer entry per store and deadline, not one per message: a store re-arms
    /// for its next deadline each time the timer fires.
    pub(crate) fn arm_expiry(self: &Arc<Self>, store: &Arc<Store>) {
        let at = {
            let mut s = store.lock();
            let Some(next) = s.next_expiry() else {
                return;
            };
            if s.expiry_armed.is_some_and(|armed| armed <= next) {
                return;
            }
            s.expiry_armed = Some(next);
            next
        };
        let qm = Arc::downgrade(self);
        let weak = Arc::downgrade(store);
        self.timer.schedule(at, move || {
            let (Some(qm), Some(store)) = (qm.upgrade(), weak.upgrade()) else {
                return;
            };
            let expired = {
                let mut s = store.lock();
                if s.expiry_armed == Some(at) {
                    s.expiry_armed = None;
                }
                s.expire(|| qm.now());
                s.drain_expired()
            };
            qm.run_quietly(|eff| qm.dead_letter_expired(&store, expired, eff));
            qm.arm_expiry(&store);
        });
    }

    /// Builds a private queue's in-memory side.
    fn new_queue(&self, id: u32, name: &str, props: QueueProps) -> Arc<QueueInner> {
        Arc::new(QueueInner {
            id,
            path: Arc::new(QueueName::private(&self.name, name)),
            key: name.to_ascii_lowercase(),
            props: RwLock::new(props),
            store: Store::linked(StoreRef::Main(id), true, self.cold.as_ref()),
            journal: Store::linked(StoreRef::Journal(id), false, self.cold.as_ref()),
            subqueues: Default::default(),
            deleted: AtomicBool::new(false),
            cold: self.cold.clone(),
        })
    }

    /// Writes a catalog entry (durable when it returns); nothing in memory. Refused once fenced.
    fn catalog_put(&self, key: &str, value: &[u8]) -> Result<()> {
        let Some(d) = &self.durable else {
            return Ok(());
        };
        d.check_owner()?;
        d.catalog
            .put(key, value)
            .map_err(|e| Error::new(ErrorCode::MessageStorageFailed, format!("catalog: {e}")))
    }

    /// The catalog that other components keep their definitions in: the durable one (checked for
    /// ownership on every write), or one in memory.
    pub(crate) fn settings(&self) -> Settings<'_> {
        Settings { inner: self }
    }

    fn save_queue(&self, q: &QueueInner) -> Result<()> {
        if self.durable.is_none() {
            return Ok(());
        }
        let name = match q.path.queue() {
            QueueRef::Private { name, .. } => name.to_owned(),
            _ => q.key.clone(),
        };
        let def = QueueDef {
            id: q.id,
            name,
            props: q.props(),
        };
        self.catalog_put(&queue_key(q.id), &record::encode(&def))
    }

    /// The store a log record names, if it still exists.
    fn store_of(&self, at: &StoreRef) -> Option<(Arc<Store>, Option<Arc<QueueInner>>)> {
        let queue = |id: &u32| self.catalog().by_id.get(id).cloned();
        match at {
            StoreRef::System(s) => Some((self.system_store(*s).clone(), None)),
            StoreRef::Main(id) => queue(id).map(|q| (q.store.clone(), Some(q))),
            StoreRef::Journal(id) => queue(id).map(|q| (q.journal.clone(), None)),
            StoreRef::Sub(id, name) => queue(id).map(|q| (q.subqueue(name), Some(q))),
        }
    }

    /// Rebuilds queues, messages, id counters and in-doubt transactions from the catalog and
    /// what replay found.
    fn recover(self: &Arc<Self>, mut rec: Recovered) -> Result<()> {
        let d = self
            .durable
            .as_ref()
            .expect("recovery is for durable queue managers");
        let cat_err = |e: std::io::Error| {
            Error::new(ErrorCode::MessageStorageFailed, format!("catalog: {e}"))
        };
        let last_id = match d.catalog.get(QUEUE_ID_KEY).map_err(cat_err)? {
            Some(b) => u32::from_le_bytes(b.as_slice().try_into().map_err(|_| {
                Error::new(
                    ErrorCode::MessageStorageFailed,
                    "catalog: bad queue id counter",
                )
            })?),
            None => 0,
        };
        let mut queues = Vec::new();
        for (key, value) in d.catalog.scan(QUEUE_PREFIX).map_err(cat_err)? {
            let (def, _): (QueueDef, _) = record::decode(&value).map_err(|e| {
                Error::new(
                    ErrorCode::MessageStorageFailed,
                    format!("catalog entry {key}: {e}"),
                )
            })?;
            if rec.dropped.contains(&def.id) {
                // The deletion was logged; the crash came before the catalog heard of it.
                d.catalog.remove(&key).map_err(cat_err)?;
                continue;
            }
            queues.push(self.new_queue(def.id, &def.name, def.props));
        }
        {
            let mut cat = self.catalog_mut();
            cat.next_id = last_id;
            for q in queues {
                cat.by_name.insert(q.key.clone(), q.clone());
                cat.by_id.insert(q.id, q);
            }
        }
        self.next_ordinal.store(rec.ordinal, Ordering::Relaxed);
        for (at, last) in &rec.last_lookup {
            if let Some((store, _)) = self.store_of(at) {
                store.continue_after(*last);
            }
        }
        let mut expiring = Vec::new();
        for (at, slots) in std::mem::take(&mut rec.stores) {
            let Some((store, _)) = self.store_of(&at) else {
                continue;
            };
            d.keep(
                slots
                    .iter()
                    .map(|(_, s)| (s.lsn, u64::from(s.footprint) + LOGGED_OVERHEAD)),
            );
            // Kept whole, moved (their record is another store's), or cold: one vector per
            // priority, filled in lookup-id order.
            let mut whole = Vec::new();
            let mut moved = Vec::new();
            let mut cold: [(VecDeque<Entry>, u64); 8] = Default::default();
            for (lookup, slot) in slots.iter() {
                if let Some(msg) = rec.kept.remove(&(at.clone(), lookup)) {
                    whole.push(msg);
                } else if slot.moves > 0 {
                    moved.push((lookup, slot));
                } else {
                    let (entries, bytes) = &mut cold[usize::from(slot.rank.min(7))];
                    entries.push_back(Entry {
                        lookup,
                        lsn: slot.lsn,
                    });
                    *bytes += u64::from(slot.footprint);
                }
            }
            drop(slots);
            let mut s = store.lock();
            for (rank, (entries, bytes)) in (0u8..).zip(cold) {
                if !entries.is_empty() {
                    s.recover_cold(rank, entries, bytes);
                }
            }
            for chunk in moved.chunks(256) {
                let wanted: Vec<(Lsn, LookupId)> = chunk
                    .iter()
                    .map(|(lookup, slot)| (slot.lsn, *lookup))
                    .collect();
                let source = self
                    .cold
                    .as_ref()
                    .expect("durable queue managers have a log source");
                let msgs = source.load(&at, &wanted, u64::MAX).map_err(|e| {
                    Error::new(ErrorCode::MessageStorageFailed, format!("recovery: {e}"))
                })?;
                for mut msg in msgs {
                    let slot = chunk
                        .iter()
                        .find(|(lookup, _)| *lookup == msg.lookup_id)
                        .map(|(_, slot)| *slot)
                        .expect("loaded messages were asked for");
                    msg.move_count = msg.move_count.saturating_add(u32::from(slot.moves));
                    msg.abort_count = 0;
                    whole.push(msg);
                }
            }
            for msg in whole {
                let _ = s.insert(msg, false);
            }
            s.refill_all();
            if s.next_expiry().is_some() {
                expiring.push(store.clone());
            }
        }
        for store in expiring {
            self.arm_expiry(&store);
        }
        for (xid, lsn, ops) in rec.in_doubt {
            self.recover_in_doubt(d, xid, lsn, ops);
        }
        for q in self.catalog().by_id.values() {
            q.tidy_subqueues();
        }
        Ok(())
    }

    /// Puts a prepared transaction back as it was when prepared: its received messages locked,
    /// its sends waiting, until the coordinator says commit or abort.
    fn recover_in_doubt(self: &Arc<Self>, d: &Durable, xid: String, lsn: Lsn, ops: Vec<Op>) {
        let t = self.begin(TxKind::External { xid: xid.clone() });
        let mut eff = self.effects();
        let lock = |at: &StoreRef, lookup: LookupId, move_to: Option<Arc<Store>>| {
            let (store, queue) = self.store_of(at)?;
            let msg_lsn = {
                let mut s = store.lock();
                let key = s.key_of(lookup)?;
                s.lock(key, t.shared.id)?;
                let m = s.locked_message(lookup)?;
                (m.lsn, logged_size(m))
            };
            Some((
                Held {
                    store,
                    queue: queue.filter(|_| matches!(at, StoreRef::Main(_) | StoreRef::Sub(..))),
                    lookup,
                    move_to,
                },
                msg_lsn,
            ))
        };
        let mut claims = Vec::new();
        let mut released = Vec::new();
        let mut keeps = 0;
        let mut kept_bytes = 0;
        let mut puts = Vec::new();
        for op in ops {
            match op {
                Op::Put { at, msg } => {
                    if let Some((store, _)) = self.store_of(&at) {
                        keeps += 1;
                        kept_bytes += logged_size(&msg);
                        puts.push(Put {
                            store,
                            msg,
                            logged: true,
                            refused: MessageClass::NACK_BAD_DST_Q,
                        });
                    }
                }
                Op::Remove { at, lookup } => {
                    if let Some((held, msg_lsn)) = lock(&at, lookup, None) {
                        claims.push(held);
                        released.push(msg_lsn);
                    }
                }
                Op::Move { from, to, lookup } => {
                    let dest = self.store_of(&to).map(|(s, _)| s);
                    if let Some((held, _)) = dest.and_then(|dest| lock(&from, lookup, Some(dest))) {
                        claims.push(held);
                    }
                }
                Op::DropQueue { .. } => {}
            }
        }
        eff.puts = puts;
        eff.claims = claims;
        eff.released = released;
        eff.keeps = keeps;
        eff.kept_bytes = kept_bytes;
        d.keep(
            std::iter::once((lsn, kept_bytes)).chain(std::iter::repeat_n(
                (lsn, 0),
                usize::try_from(keeps).unwrap_or(usize::MAX),
            )),
        );
        t.set_prepared(eff, lsn);
        tracing::warn!(%xid, "transaction in doubt after recovery: waiting for the coordinator's outcome");
        self.lock_in_doubt().insert(xid, t);
    }

    /// Every store: the system queues, and each queue's own, journal and subqueues.
    fn all_stores(&self) -> Vec<Arc<Store>> {
        let mut stores: Vec<Arc<Store>> = vec![
            self.dead_letter.clone(),
            self.dead_xact.clone(),
            self.journal.clone(),
        ];
        for q in self.catalog().by_id.values() {
            stores.push(q.store.clone());
            stores.push(q.journal.clone());
            stores.extend(q.subqueues().values().map(|(_, s)| s.clone()));
        }
        stores
    }

    /// Rewrites every message held in a record below `bound` at the head of the log, one record
    /// per store, so that the old segments hold nothing live. Each record is submitted under its
    /// store's lock: a receive that takes one of these messages later logs its removal after the
    /// rewrite, and one that took it earlier finds it gone from the store.
    fn relocate(&self, d: &Durable, bound: Lsn) -> Result<()> {
        let stores = self.all_stores();
        let mut moved = 0;
        for store in stores {
            let (lsn, gone) = {
                let mut s = store.lock();
                let mut gone = Vec::new();
                let mut last = 0;
                // One record per chunk of about REWRITE_CHUNK bytes, so that no rewrite comes
                // near the record size limit; each message takes its chunk's LSN.
                let mut hot: Vec<&mut Message> = s.logged_before(bound).collect();
                let mut start = 0;
                while start < hot.len() {
                    let mut chunk = Rewrite::default();
                    let mut end = start;
                    while end < hot.len() && chunk.data.len() < REWRITE_CHUNK {
                        chunk.push(&store.id, hot[end]);
                        end += 1;
                    }
                    last = chunk.submit(d)?;
                    for m in &mut hot[start..end] {
                        gone.push((m.lsn, logged_size(m)));
                        m.lsn = last;
                    }
                    start = end;
                }
                // Cold messages are read back a batch at a time and rewritten the same way.
                // Read a few at a time (messages may be 4 MB), each record closed as soon as
                // it reaches REWRITE_CHUNK.
                let cold = s.cold_before(bound);
                let mut chunk = Rewrite::default();
                for batch in cold.chunks(16) {
                    for m in s.read_cold(batch) {
                        chunk.push(&store.id, &m);
                        let rank = 7u8.saturating_sub(m.priority);
                        chunk.cold.push((rank, m.lookup_id, m.lsn, logged_size(&m)));
                        if chunk.data.len() >= REWRITE_CHUNK {
                            last = std::mem::take(&mut chunk).submit_cold(d, &mut s, &mut gone)?;
                        }
                    }
                }
                if !chunk.cold.is_empty() {
                    last = chunk.submit_cold(d, &mut s, &mut gone)?;
                }
                if gone.is_empty() {
                    continue;
                }
                (last, gone)
            };
            d.wal.wait(lsn).map_err(storage_error)?;
            d.release(&gone);
            moved += gone.len();
        }
        tracing::debug!(
            moved,
            bound,
            "rewrote live messages out of the oldest log segment"
        );
        Ok(())
    }

    /// An external transaction finished: its xid may be used again.
    pub(crate) fn finished(&self, kind: &TxKind) {
        if let TxKind::External { xid } = kind {
            self.xids
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(xid);
        }
    }

    fn lock_in_doubt(&self) -> std::sync::MutexGuard<'_, HashMap<String, Transaction>> {
        self.in_doubt.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Deletes the oldest log segments once nothing in them is needed, after a checkpoint that
    /// keeps lookup ids and message ids from being reused. Runs after steps that log; cheap when
    /// there is nothing to do. Returns how many segments went.
    pub(crate) fn compact(&self) -> Result<usize> {
        let Some(d) = &self.durable else {
            return Ok(0);
        };
        let (_, n) = d.removable_bound();
        if (n == 0 && d.sparse_bound().is_none()) || self.compacting.swap(true, Ordering::AcqRel) {
            return Ok(0);
        }
        let result = (|| {
            if let Some(sparse) = d.sparse_bound().filter(|_| n == 0) {
                self.relocate(d, sparse)?;
            }
            let (bound, n) = d.removable_bound();
            if n == 0 {
                return Ok(0);
            }
            let mut lookups = Vec::new();
            let mut mark = |s: &Store| {
                let l = s.last_lookup();
                if l > 0 {
                    lookups.push((s.id.clone(), l));
                }
            };
            for s in [&self.dead_letter, &self.dead_xact, &self.journal] {
                mark(s);
            }
            let queues: Vec<Arc<QueueInner>> = self.catalog().by_id.values().cloned().collect();
            for q in &queues {
                mark(&q.store);
                mark(&q.journal);
            }
            let checkpoint = record::Checkpoint {
                lookups,
                ordinal: self.next_ordinal.load(Ordering::Relaxed),
            };
            d.log(record::CHECKPOINT, &record::encode(&checkpoint), 0, 0)?;
            d.wal.remove_before(bound).map_err(storage_error)
        })();
        self.compacting.store(false, Ordering::Release);
        result
    }

    fn begin(self: &Arc<Self>, kind: TxKind) -> Transaction {
        let id = self.next_tx.fetch_add(1, Ordering::Relaxed) + 1;
        Transaction::new(id, kind, Arc::downgrade(self))
    }
}

/// One in-memory MSMQ queue manager. Cheap to clone; clones share the same queues.
#[derive(Clone)]
pub struct QueueManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for QueueManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueManager")
            .field("name", &self.inner.name)
            .field("guid", &self.inner.guid)
            .field("compat", &self.inner.compat)
            .finish()
    }
}

impl Default for QueueManager {
    fn default() -> Self {
        QueueManager::new()
    }
}

fn parse(name: &str) -> Result<QueueName> {
    QueueName::parse(name)
}

impl QueueManager {
    /// An in-memory queue manager with default settings.
    pub fn new() -> QueueManager {
        QueueManager::builder().build()
    }

    /// A builder for a queue manager with a name, clock, compatibility level or coordinator.
    pub fn builder() -> Builder {
        Builder {
            name: "localhost".to_owned(),
            guid: None,
            clock: Arc::new(SystemClock),
            compat: Compat::default(),
            coordinator: LocalCoordinator::new(),
            segment_size: WalOptions::default().segment_size,
            cache_size: DEFAULT_CACHE,
        }
    }

    /// How much of the queued messages' data is in memory (see [`Builder::cache_size`]).
    pub fn cache_stats(&self) -> CacheStats {
        let stores = self.inner.all_stores();
        CacheStats {
            cached_bytes: self.inner.cold.as_ref().map_or(0, |c| c.cache().used()),
            cold_messages: stores.iter().map(|s| s.lock().cold_len() as u64).sum(),
        }
    }

    /// The computer name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The queue manager's GUID.
    pub fn guid(&self) -> Uuid {
        self.inner.guid
    }

    /// The compatibility level.
    pub fn compat(&self) -> Compat {
        self.inner.compat
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// Definitions of other components kept in this queue manager's catalog.
    pub(crate) fn settings(&self) -> Settings<'_> {
        self.inner.settings()
    }

    /// Creates a private queue (`MQCreateQueue`) from a path name such as `.\private$\orders`.
    pub fn create_queue(&self, path: &str, props: QueueProps) -> Result<Queue> {
        let name = QueueName::parse_path(path)?;
        props.validate()?;
        if !self.inner.is_local(&name.host()) {
            return Err(Error::new(
                ErrorCode::UnsupportedOperation,
                format!("{name}: queues can only be created on this computer"),
            ));
        }
        let qname = match name.queue() {
            QueueRef::Private {
                name: q,
                subqueue: None,
                journal: false,
            } => q.to_owned(),
            QueueRef::Public { .. } => {
                return Err(Error::new(
                    ErrorCode::UnsupportedOperation,
                    format!("{name} is a public queue; mqemu runs in workgroup mode, where only private queues exist"),
                ))
            }
            _ => {
                return Err(Error::new(
                    ErrorCode::IllegalQueuePathname,
                    format!("{name} is not a queue that can be created (subqueues, journals and system queues exist on their own)"),
                ))
            }
        };
        let key = qname.to_ascii_lowercase();
        let mut cat = self.inner.catalog_mut();
        if cat.by_name.contains_key(&key) {
            return Err(Error::new(
                ErrorCode::QueueExists,
                format!("queue {name} already exists"),
            ));
        }
        let id = cat.next_id + 1;
        let q = self.inner.new_queue(id, &qname, props);
        // Durable before it is visible: the id counter first, so an id is never handed out twice.
        self.inner.catalog_put(QUEUE_ID_KEY, &id.to_le_bytes())?;
        self.inner.save_queue(&q)?;
        cat.next_id = id;
        cat.by_name.insert(key, q.clone());
        cat.by_id.insert(id, q.clone());
        drop(cat);
        Ok(Queue {
            qm: self.inner.clone(),
            target: Target::Main(q),
            name,
        })
    }

    /// Deletes a queue (`MQDeleteQueue`). Its messages are gone: senders that asked get NACK
    /// 0xC000 (`NACK_Q_DELETED`), and transactional or dead-letter-flagged messages are
    /// dead-lettered. Waiting receivers fail with `MQ_ERROR_QUEUE_DELETED`.
    pub fn delete_queue(&self, name: &str) -> Result<()> {
        let name = parse(name)?;
        if name.is_format_name() && !matches!(name.host(), Host::Machine(_)) {
            return Err(Error::new(
                ErrorCode::UnsupportedFormatnameOperation,
                format!("{name}: a queue cannot be deleted through a direct format name"),
            ));
        }
        let q = match self.inner.resolve(&name)? {
            Target::Main(q) => q,
            _ => {
                return Err(Error::new(
                    ErrorCode::UnsupportedFormatnameOperation,
                    format!("{name} is not a queue that can be deleted"),
                ))
            }
        };
        if let Some(d) = &self.inner.durable {
            d.check_owner()?;
        }
        {
            let mut cat = self.inner.catalog_mut();
            cat.by_name.remove(&q.key);
            cat.by_id.remove(&q.id);
        }
        q.deleted.store(true, Ordering::SeqCst);
        let mut msgs = q.store.lock().close();
        let subs: Vec<_> = q.subqueues().drain().map(|(_, (_, s))| s).collect();
        for s in subs {
            msgs.extend(s.lock().close());
        }
        let journal = q.journal.lock().close();
        // One record drops the queue and dead-letters its messages; the catalog entry goes after
        // it (recovery finishes a deletion the crash interrupted). The record stays alive until
        // the catalog no longer has the queue.
        let lsn = self.inner.run_logged(|eff| {
            eff.drop_queue(q.id);
            for m in &journal {
                eff.forget(m);
            }
            for m in msgs {
                eff.forget(&m);
                self.inner
                    .fail_message(m, MessageClass::NACK_Q_DELETED, eff);
            }
        })?;
        if let Some(d) = &self.inner.durable {
            d.catalog.remove(&queue_key(q.id)).map_err(|e| {
                Error::new(ErrorCode::MessageStorageFailed, format!("catalog: {e}"))
            })?;
            d.release(&[(lsn, 0)]);
        }
        Ok(())
    }

    /// Opens a queue by path or format name (`MQOpenQueue`).
    pub fn open(&self, name: &str) -> Result<Queue> {
        self.inner.open(&parse(name)?)
    }

    /// Opens a queue by a parsed name.
    pub fn open_name(&self, name: &QueueName) -> Result<Queue> {
        self.inner.open(name)
    }

    fn info(q: &QueueInner) -> QueueInfo {
        let (message_count, bytes) = {
            let s = q.store.lock();
            (s.len(), s.bytes())
        };
        let mut subqueues: Vec<String> = q.subqueues().values().map(|(n, _)| n.clone()).collect();
        subqueues.sort();
        QueueInfo {
            path: (*q.path).clone(),
            id: q.id,
            props: q.props(),
            message_count,
            bytes,
            journal_count: q.journal.lock().len(),
            subqueues,
        }
    }

    /// Every private queue, by name.
    pub fn queues(&self) -> Vec<QueueInfo> {
        let queues: Vec<Arc<QueueInner>> = self.inner.catalog().by_name.values().cloned().collect();
        let mut infos: Vec<QueueInfo> = queues.iter().map(|q| Self::info(q)).collect();
        infos.sort_by_cached_key(|i| i.path.to_string().to_lowercase());
        infos
    }

    /// A queue's properties and counts.
    pub fn queue_info(&self, name: &str) -> Result<QueueInfo> {
        match self.inner.resolve(&parse(name)?)? {
            Target::Main(q) => Ok(Self::info(&q)),
            _ => Err(Error::new(
                ErrorCode::UnsupportedFormatnameOperation,
                format!("{name} has no properties of its own"),
            )),
        }
    }

    /// Changes a queue's properties (`MQSetQueueProperties`). The transactional type cannot
    /// change (`MQ_ERROR_PROPERTY_NOTALLOWED`); a new quota applies to arriving messages only.
    pub fn set_queue_props(&self, name: &str, update: QueueUpdate) -> Result<()> {
        let q = match self.inner.resolve(&parse(name)?)? {
            Target::Main(q) => q,
            _ => {
                return Err(Error::new(
                    ErrorCode::UnsupportedFormatnameOperation,
                    format!("{name} has no properties of its own"),
                ))
            }
        };
        if update.transactional.is_some() {
            return Err(Error::new(
                ErrorCode::PropertyNotAllowed,
                "the transactional type of a queue is fixed when it is created",
            ));
        }
        let mut props = q.props.write().unwrap_or_else(PoisonError::into_inner);
        let mut next = props.clone();
        if let Some(v) = update.journal {
            next.journal = v;
        }
        if let Some(v) = update.quota_kb {
            next.quota_kb = v;
        }
        if let Some(v) = update.journal_quota_kb {
            next.journal_quota_kb = v;
        }
        if let Some(v) = update.label {
            next.label = v;
        }
        if let Some(v) = update.base_priority {
            next.base_priority = v;
        }
        if let Some(v) = update.authenticate {
            next.authenticate = v;
        }
        next.validate()?;
        *props = next;
        drop(props);
        self.inner.save_queue(&q)
    }

    /// Purges a queue, its journal, a subqueue or a system queue (`MQPurgeQueue`).
    pub fn purge(&self, name: &str) -> Result<usize> {
        self.open(name)?.purge()
    }

    /// Begins an internal transaction (`MQBeginTransaction`).
    pub fn begin(&self) -> Transaction {
        self.inner.begin(TxKind::Internal)
    }

    /// Begins an external transaction with the coordinator's id `xid`; it must be prepared before
    /// it commits. Fails with `MQ_ERROR_DTC_CONNECT` while the coordinator is unavailable.
    /// An xid already in use by an unfinished or in-doubt transaction is refused
    /// (`MQ_ERROR_TRANSACTION_USAGE`).
    pub fn begin_external(&self, xid: impl Into<String>) -> Result<Transaction> {
        self.inner.require_coordinator()?;
        let xid = xid.into();
        let mut xids = self
            .inner
            .xids
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if xids.contains(&xid) || self.inner.lock_in_doubt().contains_key(&xid) {
            return Err(Error::new(
                ErrorCode::TransactionUsage,
                format!("transaction {xid:?} is already active or in doubt on this queue manager"),
            ));
        }
        xids.insert(xid.clone());
        drop(xids);
        Ok(self.inner.begin(TxKind::External { xid }))
    }

    /// Whether this queue manager keeps its queues on disk.
    pub fn is_durable(&self) -> bool {
        self.inner.durable.is_some()
    }

    /// The coordinator ids of prepared transactions that recovery found without an outcome.
    /// Their received messages stay locked and their sends invisible until
    /// [`QueueManager::resolve_in_doubt`].
    pub fn in_doubt(&self) -> Vec<String> {
        let mut xids: Vec<String> = self.inner.lock_in_doubt().keys().cloned().collect();
        xids.sort();
        xids
    }

    /// Applies the coordinator's outcome to an in-doubt transaction.
    pub fn resolve_in_doubt(&self, xid: &str, commit: bool) -> Result<()> {
        let t = self.inner.lock_in_doubt().remove(xid).ok_or_else(|| {
            Error::new(
                ErrorCode::TransactionSequence,
                format!("no transaction {xid:?} is in doubt"),
            )
        })?;
        if commit {
            t.commit()
        } else {
            t.abort();
            Ok(())
        }
    }

    /// Deletes log segments that hold nothing live (this also happens on its own after steps
    /// that log). Returns how many went.
    pub fn compact(&self) -> Result<usize> {
        self.inner.compact()
    }

    /// The log's counters (records, fdatasyncs) and its segment count; `None` in memory.
    pub fn log_stats(&self) -> Option<(crate::storage::WalStats, usize)> {
        let d = self.inner.durable.as_ref()?;
        Some((d.wal.stats(), d.wal.segment_count()))
    }

    /// Sends to a queue by name.
    pub fn send(&self, name: &str, msg: Message, tx: Tx<'_>) -> Result<MessageId> {
        self.open(name)?.send(msg, tx)
    }

    /// Receives from a queue by name.
    pub fn receive(&self, name: &str, timeout: Duration, tx: Tx<'_>) -> Result<Message> {
        self.open(name)?.receive(timeout, tx)
    }

    /// Peeks at a queue by name.
    pub fn peek(&self, name: &str, timeout: Duration) -> Result<Message> {
        self.open(name)?.peek(timeout)
    }
}
