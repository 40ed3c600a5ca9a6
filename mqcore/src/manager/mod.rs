//! The queue manager: one MSMQ "computer" with its catalog of private queues, its system queues,
//! and the rules that route journal copies, dead letters and acknowledgements.
//!
//! `QueueManager` (here) is the engine's entry point; `Inner` is the state it shares with
//! every queue handle and transaction. Each concept has a file of its own, each an `impl Inner`:
//! - `builder`: settings, and opening a storage directory;
//! - `catalog`: queue definitions by name and id, and other components' entries;
//! - `resolve`: what a name points at, and whether a host is this computer;
//! - `send`: stamping, quotas, and how a message reaches its queue;
//! - `transactions`: commit effects, PREPARE records, aborts, in-doubt transactions;
//! - `routing`: MSMQ's acknowledgements, dead letters, journal copies and expiry;
//! - `recovery` and `compaction`: the durable queue manager's start and its log's upkeep;
//! - `outgoing` and `inbound`: the two ends of transfer between queue managers.
//!
//! Every change they make goes through a step (`crate::step`). It never touches the network: a
//! send to another computer goes into an outgoing queue, which the network layer's transfer
//! task reads through `crate::transfer`.

mod builder;
mod catalog;
mod compaction;
mod inbound;
mod outgoing;
mod recovery;
mod resolve;
mod routing;
mod send;
mod transactions;

pub use builder::{Builder, CacheStats, Compat};
pub(crate) use catalog::CatalogEntries;
use catalog::{queue_key, Catalog, QUEUE_ID_KEY};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use uuid::Uuid;

use crate::clock::{Clock, Timestamp};
use crate::error::{Error, ErrorCode, Result};
use crate::message::{Message, MessageClass, MessageId};
use crate::name::{Host, QueueName, QueueRef, SystemQueue};
use crate::persistence::Persistence;
use crate::queue::cold::ColdSource;
use crate::queue::store::Store;
use crate::queue::{Opened, Queue, QueueInfo, QueueInner, QueueProps, QueueUpdate};
use crate::storage::catalog::MemCatalog;
use crate::timer::{Timer, TimerDeadline};
use crate::tx::{Coordinator, Transaction, Tx, TxKind};

/// The shared state behind a [`QueueManager`] and every handle and transaction it gave out.
pub(crate) struct Inner {
    /// Failures that earn a negative acknowledgement (expiry, purge, deletion, refusal,
    /// rejection) since start, whether or not their senders asked for one.
    pub(crate) nacks: std::sync::atomic::AtomicU64,
    name: String,
    /// The addresses `DIRECT=TCP:` names reach this queue manager at (normalized); empty: the
    /// loopback addresses.
    addresses: Vec<String>,
    /// Computer names to addresses (`[hosts]`), names in lower case.
    hosts: HashMap<String, String>,
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
    pub(crate) durable: Option<Persistence>,
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
    /// Outgoing queues by key (the destination's lower-case format name).
    outgoing: Mutex<HashMap<String, Arc<crate::queue::outgoing::Outgoing>>>,
    /// Incoming transfer sequences.
    inbound: Mutex<inbound::InboundMap>,
    /// Where outgoing queues say they have something to send.
    pub(crate) ready: Arc<crate::queue::outgoing::ReadyHook>,
    /// The largest body a transferred message may have here.
    max_message_bytes: usize,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.timer.shutdown();
    }
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
        Builder::new()
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

    /// The addresses `DIRECT=TCP:` names reach this queue manager at ([`Builder::address`]);
    /// empty when none were given (then the loopback addresses are its own).
    pub fn addresses(&self) -> &[String] {
        &self.inner.addresses
    }

    /// The address a computer name is reached at, from the host map ([`Builder::host`]).
    pub fn address_of(&self, computer: &str) -> Option<&str> {
        self.inner
            .hosts
            .get(&computer.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The transfer face: outgoing queues and the entry point for transferred messages.
    pub fn transfer(&self) -> crate::transfer::Transfer {
        crate::transfer::Transfer {
            qm: self.inner.clone(),
        }
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
    pub(crate) fn catalog_entries(&self) -> CatalogEntries<'_> {
        self.inner.catalog_entries()
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
        // Persistence before it is visible: the id counter first, so an id is never handed out twice.
        self.inner.catalog_put(QUEUE_ID_KEY, &id.to_le_bytes())?;
        self.inner.save_queue(&q)?;
        cat.next_id = id;
        cat.by_name.insert(key, q.clone());
        cat.by_id.insert(id, q.clone());
        drop(cat);
        Ok(Queue {
            qm: self.inner.clone(),
            target: Opened::Main(q),
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
            Opened::Main(q) => q,
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
        let lsn = self.inner.run(|eff| {
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
        let (message_count, locked_count, bytes) = {
            let s = q.store.lock();
            (s.len(), s.locked_len(), s.bytes())
        };
        let mut subqueues: Vec<String> = q.subqueues().values().map(|(n, _)| n.clone()).collect();
        subqueues.sort();
        QueueInfo {
            path: (*q.path).clone(),
            id: q.id,
            props: q.props(),
            message_count,
            locked_count,
            bytes,
            journal_count: q.journal.lock().len(),
            subqueues,
            arrived_total: q.store.arrivals(),
        }
    }

    /// Failures that earn a negative acknowledgement (NACK classes: expiry, purge, deletion,
    /// refusal, rejection) since the queue manager started, whether or not their senders asked
    /// for acknowledgements: what a monitor alerts on.
    pub fn nack_total(&self) -> u64 {
        self.inner.nacks.load(std::sync::atomic::Ordering::Relaxed)
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
            Opened::Main(q) => Ok(Self::info(&q)),
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
            Opened::Main(q) => q,
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
        q.set_props(|props| {
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
            Ok(next)
        })?;
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

    /// Takes over a transaction whose owner went away (a client's connection closed): a prepared
    /// one stays in doubt, its outcome the coordinator's, as after a restart
    /// ([`QueueManager::resolve_in_doubt`]); any other aborts.
    pub fn orphan(&self, t: Transaction) {
        if t.is_prepared() {
            let xid = t.xid().to_owned();
            self.inner.lock_in_doubt().insert(xid, t);
        }
    }

    /// Applies the coordinator's outcome to an in-doubt transaction. The outcome comes from the
    /// coordinator: while it is offline, in-doubt transactions wait (`MQ_ERROR_DTC_CONNECT`).
    pub fn resolve_in_doubt(&self, xid: &str, commit: bool) -> Result<()> {
        self.inner.require_coordinator()?;
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

    /// Why the storage stopped acknowledging commits (a write failed, the disk is full, another
    /// owner fenced it, its lease ran out), if it did: every later commit fails with this error
    /// until the queue manager is opened again. `None` while healthy, and in memory.
    pub fn storage_failure(&self) -> Option<Error> {
        let d = self.inner.durable.as_ref()?;
        d.wal.failure().map(crate::persistence::storage_error)
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
