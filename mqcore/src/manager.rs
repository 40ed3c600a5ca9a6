//! The queue manager: one MSMQ "computer" with its catalog of private queues, its system queues,
//! and the rules that route journal copies, dead letters and acknowledgements.
//!
//! [`QueueManager`] is the engine's entry point. It resolves path and format names to queues,
//! stamps messages on send, publishes a transaction's effects on commit, and sends the
//! acknowledgement and dead-letter copies MSMQ would. It never touches the network; a name that
//! points at another computer is refused until the network layer provides outgoing queues.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use bytes::Bytes;
use uuid::Uuid;

use crate::clock::{Clock, SystemClock, Timestamp};
use crate::error::{Error, ErrorCode, Result};
use crate::message::{Acknowledge, Delivery, JournalFlags, Message, MessageClass, MessageId};
use crate::name::{Host, QueueName, QueueRef, SystemQueue};
use crate::queue::store::{footprint, LookupId, Store};
use crate::queue::{Queue, QueueInfo, QueueInner, QueueProps, QueueUpdate, Target};
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

/// Builds a [`QueueManager`].
#[must_use]
pub struct Builder {
    name: String,
    guid: Option<Uuid>,
    clock: Arc<dyn Clock>,
    compat: Compat,
    coordinator: Arc<dyn Coordinator>,
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

    /// Starts an in-memory queue manager.
    pub fn build(self) -> QueueManager {
        let timer = Timer::start(self.clock.clone());
        let inner = Arc::new(Inner {
            name: self.name,
            guid: self.guid.unwrap_or_else(Uuid::new_v4),
            compat: self.compat,
            clock: self.clock,
            timer,
            coordinator: self.coordinator,
            catalog: RwLock::new(Catalog::default()),
            next_ordinal: AtomicU32::new(0),
            next_tx: AtomicU64::new(0),
            dead_letter: Store::new(),
            dead_xact: Store::new(),
            journal: Store::new(),
        });
        QueueManager { inner }
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
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.timer.shutdown();
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
        mut msg: Message,
        tx: Tx<'_>,
    ) -> Result<MessageId> {
        q.check_live()?;
        msg.validate()?;
        let (transactional, quota) = {
            let p = q.read_props();
            (p.transactional, p.quota_kb)
        };
        if transactional != tx.is_transactional() {
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
        msg.transactional = transactional;
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

    /// Applies MSMQ's transactional coercions and stages the message in `t`.
    fn stage(&self, q: &Arc<QueueInner>, mut msg: Message, t: &Transaction) -> Result<()> {
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

    fn check_quota(&self, q: &QueueInner, current: u64, msg: &Message) -> Result<()> {
        let quota = q.read_props().quota_kb;
        if !over_quota(quota, current, footprint(msg)) {
            return Ok(());
        }
        self.acknowledge(msg, MessageClass::NACK_Q_EXCEED_QUOTA);
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

    /// A non-transactional send reaching its queue: quota check and publish under one lock, or
    /// the lock-light inbox when the queue has no quota.
    fn arrive(
        self: &Arc<Self>,
        q: &Arc<QueueInner>,
        msg: Message,
        quota: Option<u32>,
    ) -> Result<()> {
        let mut msg = Box::new(msg);
        msg.arrived_time = msg.sent_time;
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
            self.arrived(&m);
        }
        Ok(())
    }

    fn needs_arrival_follow_up(&self, msg: &Message) -> bool {
        (msg.admin_queue.is_some() && msg.acknowledge.contains(Acknowledge::POS_ARRIVAL))
            || msg.journal.contains(JournalFlags::JOURNAL)
    }

    /// What happens once a message is in its destination queue: positive arrival
    /// acknowledgement and source journaling.
    fn arrived(&self, msg: &Message) {
        self.acknowledge(msg, MessageClass::ACK_REACH_QUEUE);
        if msg.journal.contains(JournalFlags::JOURNAL) {
            // The computer journal is never deleted, so it always takes the copy.
            let _ = self.journal.lock().publish(msg.clone());
        }
    }

    /// Publishes a transaction's effects. Cannot fail: what could not be published is handled as
    /// MSMQ handles an undeliverable transactional message (negative acknowledgement and the
    /// transactional dead-letter queue), and the transaction still commits.
    pub(crate) fn commit(self: &Arc<Self>, sends: Vec<StagedSend>, held: Vec<Held>) {
        let now = self.now();
        for StagedSend { queue, mut msg } in sends {
            if let Some(ttrq) = msg.time_to_reach_queue {
                if now > msg.sent_time.saturating_add(ttrq) {
                    self.fail_message(msg, MessageClass::NACK_REACH_QUEUE_TIMEOUT);
                    continue;
                }
            }
            msg.arrived_time = now;
            let follow_up = self.needs_arrival_follow_up(&msg).then(|| msg.clone());
            let expires = msg.time_to_be_received.is_some();
            let quota = queue.read_props().quota_kb;
            let msg = Box::new(msg);
            let refused = {
                let mut s = queue.store.lock();
                if over_quota(quota, s.bytes(), footprint(&msg)) {
                    // Other transactions filled the queue since this send was checked.
                    Some((msg, MessageClass::NACK_Q_EXCEED_QUOTA))
                } else {
                    s.publish(msg)
                        .err()
                        .map(|m| (m, MessageClass::NACK_BAD_DST_Q))
                }
            };
            if let Some((msg, class)) = refused {
                self.fail_message(*msg, class);
                continue;
            }
            if expires {
                self.arm_expiry(&queue.store);
            }
            if let Some(m) = follow_up {
                self.arrived(&m);
            }
        }
        for h in held {
            let Some(msg) = h.store.lock().remove_locked(h.lookup) else {
                continue;
            };
            match h.move_to {
                Some(dest) => self.publish_moved(&dest, *msg),
                None => self.after_receive(h.queue.as_deref(), &msg),
            }
            drop(h.store);
            if let Some(q) = h.queue {
                q.tidy_subqueues();
            }
        }
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
            for m in deleted {
                self.fail_message(m, MessageClass::NACK_Q_DELETED);
            }
            self.dead_letter_expired(expired);
            self.arm_expiry(&store);
        }
    }

    /// A message left its destination queue (or subqueue) through a receive: journal it (target
    /// journaling) and acknowledge. Receiving a journal copy or a dead letter does neither: that
    /// message was delivered once already.
    pub(crate) fn after_receive(&self, parent: Option<&QueueInner>, msg: &Message) {
        let Some(q) = parent else {
            return;
        };
        let (journal, journal_quota) = {
            let p = q.read_props();
            (p.journal, p.journal_quota_kb)
        };
        if journal {
            let mut j = q.journal.lock();
            if over_quota(journal_quota, j.bytes(), footprint(msg)) {
                tracing::warn!(queue = %q.path, "journal quota reached; journal copy dropped");
            } else {
                // A journal closed by deletion simply takes no copy.
                let _ = j.publish(msg.clone());
            }
        }
        self.acknowledge(msg, MessageClass::ACK_RECEIVE);
    }

    /// Puts a moved message in its new (sub)queue, keeping its lookup id. If the queue was
    /// deleted meanwhile, the message fails as a deleted queue's messages do.
    pub(crate) fn publish_moved(self: &Arc<Self>, dest: &Arc<Store>, mut msg: Message) {
        msg.move_count = msg.move_count.saturating_add(1);
        msg.abort_count = 0;
        let expires = msg.time_to_be_received.is_some();
        let refused = dest.lock().insert_moved(Box::new(msg));
        match refused {
            Err(msg) => self.fail_message(*msg, MessageClass::NACK_Q_DELETED),
            Ok(()) if expires => self.arm_expiry(dest),
            Ok(()) => {}
        }
    }

    /// A message that will not be received: negative acknowledgement, then dead letter.
    pub(crate) fn fail_message(&self, msg: Message, class: MessageClass) {
        self.acknowledge(&msg, class);
        self.dead_letter(msg, class);
    }

    /// Dead-letters messages whose time-to-be-received ran out in their queue.
    pub(crate) fn dead_letter_expired(&self, expired: Vec<Message>) {
        for m in expired {
            self.fail_message(m, MessageClass::NACK_RECEIVE_TIMEOUT);
        }
    }

    /// Transactional messages always go to the transactional dead-letter queue; others only when
    /// their sender set `MQMSG_DEADLETTER`.
    fn dead_letter(&self, mut msg: Message, class: MessageClass) {
        let store = if msg.transactional {
            &self.dead_xact
        } else if msg.journal.contains(JournalFlags::DEADLETTER) {
            &self.dead_letter
        } else {
            return;
        };
        msg.class = class;
        // System queues are never deleted, so they always take the message.
        let _ = store.lock().publish(Box::new(msg));
    }

    /// Sends the acknowledgement of `class` for `orig` to its admin queue, if the sender asked for
    /// that kind. Acknowledgements go only to local non-transactional queues (MSMQ sends them as
    /// non-transactional messages); others are dropped with a log line.
    pub(crate) fn acknowledge(&self, orig: &Message, class: MessageClass) {
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
        if q.store.lock().publish(Box::new(ack)).is_err() {
            tracing::debug!(%admin, "acknowledgement dropped: admin queue was deleted");
        }
    }

    /// Makes sure the timer will expire `store`'s messages at its earliest time-to-be-received
    /// deadline. One timer entry per store and deadline, not one per message: a store re-arms
    /// for its next deadline each time the timer fires.
    fn arm_expiry(self: &Arc<Self>, store: &Arc<Store>) {
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
            qm.dead_letter_expired(expired);
            qm.arm_expiry(&store);
        });
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
        cat.next_id += 1;
        let id = cat.next_id;
        let q = Arc::new(QueueInner {
            id,
            path: Arc::new(QueueName::private(&self.inner.name, &qname)),
            key: key.clone(),
            props: RwLock::new(props),
            store: Store::new_expiring(),
            journal: Store::new(),
            subqueues: Default::default(),
            deleted: AtomicBool::new(false),
        });
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
        q.journal.lock().close();
        for m in msgs {
            self.inner.fail_message(m, MessageClass::NACK_Q_DELETED);
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
        Ok(())
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
    pub fn begin_external(&self, xid: impl Into<String>) -> Result<Transaction> {
        self.inner.require_coordinator()?;
        Ok(self.inner.begin(TxKind::External { xid: xid.into() }))
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
