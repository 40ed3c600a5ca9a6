//! Queues: their properties, and the [`Queue`] handle through which messages are sent, peeked,
//! received, moved and rejected.
//!
//! A handle is what `MQOpenQueue` returns: it names one store (a queue, its journal, one of its
//! subqueues, or a system queue) and checks MSMQ's rules for that store (journals and subqueues
//! cannot be sent to, transactional queues take only transactional sends, and so on). The order,
//! locking and waiting live in [`store`]; the routing of journal copies, dead letters and
//! acknowledgements lives in the queue manager.

pub(crate) mod cold;
mod scan;
pub(crate) mod store;

#[cfg(all(test, loom))]
mod loom_tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use crate::error::{Error, ErrorCode, Result};
use crate::ids::StoreRef;
use crate::manager::Inner;
use crate::message::{Message, MessageClass, MessageId};
use crate::name::{QueueName, SystemQueue};
use crate::queue::store::{Found, Key, LookupId, Owner, State, Store, WaitError};
use crate::tx::{HeldMessage, Tx, TxShared};

pub use scan::{Interrupt, Scan};
pub use store::LookupId as MessageLookupId;

/// Longest queue label (MQ_MAX_Q_LABEL_LEN).
pub const MAX_QUEUE_LABEL_LEN: usize = 124;

/// A receive or peek timeout that never ends (MSMQ's `INFINITE`).
pub const INFINITE: Duration = Duration::MAX;

/// The properties of a queue (`PROPID_Q_*`). The defaults are MSMQ's: not transactional, no
/// journal, no quotas, no label, base priority 0.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct QueueProps {
    /// `PROPID_Q_TRANSACTION`: fixed at creation.
    pub transactional: bool,
    /// `PROPID_Q_JOURNAL`: keep a copy of every message received from the queue.
    pub journal: bool,
    /// `PROPID_Q_QUOTA` in kilobytes; `None` is INFINITE.
    pub quota_kb: Option<u32>,
    /// `PROPID_Q_JOURNAL_QUOTA` in kilobytes; `None` is INFINITE.
    pub journal_quota_kb: Option<u32>,
    /// `PROPID_Q_LABEL`: at most 124 characters.
    pub label: String,
    /// `PROPID_Q_BASEPRIORITY`.
    pub base_priority: i16,
    /// `PROPID_Q_AUTHENTICATE`: only authenticated senders (enforced by the network server; an
    /// in-process sender is trusted).
    pub authenticate: bool,
}

impl QueueProps {
    /// Default properties of a transactional queue.
    pub fn transactional() -> QueueProps {
        QueueProps {
            transactional: true,
            ..QueueProps::default()
        }
    }

    /// Checks MSMQ's limits.
    pub(crate) fn validate(&self) -> Result<()> {
        let len = self.label.encode_utf16().count();
        if len > MAX_QUEUE_LABEL_LEN {
            return Err(Error::new(
                ErrorCode::IllegalPropertyValue,
                format!("queue label has {len} characters; the limit is {MAX_QUEUE_LABEL_LEN}"),
            ));
        }
        Ok(())
    }
}

/// A change to a queue's properties (`MQSetQueueProperties`); `None` leaves a property alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueUpdate {
    /// Refused: the transactional type is fixed at creation (MQ_ERROR_PROPERTY_NOTALLOWED).
    pub transactional: Option<bool>,
    /// New journal setting.
    pub journal: Option<bool>,
    /// New quota (`Some(None)` is INFINITE).
    pub quota_kb: Option<Option<u32>>,
    /// New journal quota.
    pub journal_quota_kb: Option<Option<u32>>,
    /// New label.
    pub label: Option<String>,
    /// New base priority.
    pub base_priority: Option<i16>,
    /// New authenticate setting.
    pub authenticate: Option<bool>,
}

/// What management shows about a queue.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueInfo {
    /// The queue's path name.
    pub path: QueueName,
    /// Its `PRIVATE=` id.
    pub id: u32,
    /// Its properties.
    pub props: QueueProps,
    /// Messages in the queue, locked ones included (`PROPID_MGMT_QUEUE_MESSAGE_COUNT`).
    pub message_count: usize,
    /// Bytes counted against the quota (`PROPID_MGMT_QUEUE_BYTES_IN_QUEUE`).
    pub bytes: u64,
    /// Messages in its journal.
    pub journal_count: usize,
    /// Names of its subqueues (`PROPID_MGMT_QUEUE_SUBQUEUE_NAMES`).
    pub subqueues: Vec<String>,
}

/// A private queue of the queue manager.
pub(crate) struct QueueInner {
    /// `PRIVATE=` id.
    pub(crate) id: u32,
    /// Path name as created, e.g. `HOST\private$\orders` (shared with every message's
    /// destination property).
    pub(crate) path: Arc<QueueName>,
    /// Catalog key: the queue name in lower case.
    pub(crate) key: String,
    pub(crate) props: RwLock<QueueProps>,
    /// The queue's messages.
    pub(crate) store: Arc<Store>,
    /// Its journal (`queue;journal`).
    pub(crate) journal: Arc<Store>,
    /// Subqueues by lower-case name; created on first use, removed when empty.
    pub(crate) subqueues: Mutex<HashMap<String, (String, Arc<Store>)>>,
    /// Set when the queue is deleted; handles then fail with MQ_ERROR_QUEUE_DELETED.
    pub(crate) deleted: AtomicBool,
    /// Where its stores read cold messages back from (durable queue managers).
    pub(crate) cold: Option<Arc<dyn cold::ColdSource>>,
}

impl QueueInner {
    pub(crate) fn props(&self) -> QueueProps {
        self.props
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reads the properties in place (no clone: this is on the send and receive paths).
    pub(crate) fn read_props(&self) -> std::sync::RwLockReadGuard<'_, QueueProps> {
        self.props.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn is_transactional(&self) -> bool {
        self.read_props().transactional
    }

    pub(crate) fn subqueues(&self) -> MutexGuard<'_, HashMap<String, (String, Arc<Store>)>> {
        self.subqueues
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The subqueue store called `name`, created if needed.
    pub(crate) fn subqueue(&self, name: &str) -> Arc<Store> {
        self.subqueues()
            .entry(name.to_ascii_lowercase())
            .or_insert_with(|| {
                let id = StoreRef::Sub(self.id, name.to_ascii_lowercase());
                (name.to_owned(), Store::linked(id, true, self.cold.as_ref()))
            })
            .1
            .clone()
    }

    /// Drops every subqueue that is empty, has no waiter, and that no operation holds (an
    /// operation about to move a message in holds a reference, which keeps it alive).
    pub(crate) fn tidy_subqueues(&self) {
        self.subqueues().retain(|_, (_, store)| {
            if Arc::strong_count(store) > 1 {
                return true;
            }
            let s = store.lock();
            s.len() > 0 || s.has_waiters()
        });
    }

    pub(crate) fn check_live(&self) -> Result<()> {
        if self.deleted.load(Ordering::SeqCst) {
            return Err(Error::new(
                ErrorCode::QueueDeleted,
                format!("queue {} was deleted", self.path),
            ));
        }
        Ok(())
    }
}

/// Which store a handle reads.
#[derive(Clone)]
pub(crate) enum Opened {
    /// The queue itself.
    Main(Arc<QueueInner>),
    /// The queue's journal.
    Journal(Arc<QueueInner>),
    /// A subqueue, by name.
    Sub(Arc<QueueInner>, String),
    /// A system queue of the queue manager.
    System(SystemQueue),
}

/// How to find a message for `MQReceiveMessageByLookupId`. Lookup ids grow in arrival order, so
/// `Next` and `Previous` walk in that order and work even when the given id has left the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LookupAction {
    /// The message with the lowest lookup id (`MQ_LOOKUP_*_FIRST`).
    First,
    /// The message with the highest lookup id (`MQ_LOOKUP_*_LAST`).
    Last,
    /// Exactly this message (`MQ_LOOKUP_*_CURRENT`).
    Current(LookupId),
    /// The first message after this lookup id (`MQ_LOOKUP_*_NEXT`).
    Next(LookupId),
    /// The last message before this lookup id (`MQ_LOOKUP_*_PREV`).
    Previous(LookupId),
}

/// An open queue: send, peek, receive, browse with cursors, move and reject.
///
/// Cheap to clone. Blocking calls wait on the queue manager's clock; async calls are
/// cancellation-safe (dropping the future never loses a message).
#[derive(Clone)]
pub struct Queue {
    pub(crate) qm: Arc<Inner>,
    pub(crate) target: Opened,
    pub(crate) name: QueueName,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("name", &self.name).finish()
    }
}

impl Queue {
    /// Whether the queue this handle opened was deleted (every operation then fails with
    /// `MQ_ERROR_QUEUE_DELETED`; a queue created again under the name is another queue). A
    /// holder that caches handles by name opens the name again.
    pub fn is_deleted(&self) -> bool {
        match &self.target {
            Opened::Main(q) | Opened::Journal(q) | Opened::Sub(q, _) => {
                q.deleted.load(Ordering::SeqCst)
            }
            Opened::System(_) => false,
        }
    }

    /// Whether the queue accepts only authenticated messages (`PROPID_Q_AUTHENTICATE`). The
    /// engine trusts its own process; a server refuses unauthenticated senders' messages with
    /// `MQ_ERROR_MESSAGE_NOT_AUTHENTICATED` when this is set.
    pub fn requires_authentication(&self) -> bool {
        match &self.target {
            Opened::Main(q) | Opened::Journal(q) | Opened::Sub(q, _) => q.read_props().authenticate,
            Opened::System(_) => false,
        }
    }

    /// The name this handle was opened with.
    pub fn name(&self) -> &QueueName {
        &self.name
    }

    /// The store this handle reads, failing if its queue was deleted.
    pub(crate) fn store(&self) -> Result<Arc<Store>> {
        Ok(match &self.target {
            Opened::Main(q) => {
                q.check_live()?;
                q.store.clone()
            }
            Opened::Journal(q) => {
                q.check_live()?;
                q.journal.clone()
            }
            Opened::Sub(q, name) => {
                q.check_live()?;
                q.subqueue(name)
            }
            Opened::System(s) => self.qm.system_store(*s).clone(),
        })
    }

    /// Whether this store takes transactional receives.
    fn is_transactional(&self) -> bool {
        match &self.target {
            Opened::Main(q) | Opened::Sub(q, _) => q.is_transactional(),
            Opened::Journal(_) => false,
            Opened::System(s) => *s == SystemQueue::DeadXact,
        }
    }

    /// The user queue this store belongs to, for journaling (not for journals themselves).
    fn journaled_parent(&self) -> Option<&Arc<QueueInner>> {
        match &self.target {
            Opened::Main(q) | Opened::Sub(q, _) => Some(q),
            _ => None,
        }
    }

    /// Checks the transaction argument of a receive against the queue and returns the joined
    /// transaction, if any. `Tx::Single` behaves like no transaction for a local receive.
    fn receive_tx<'t>(&self, tx: &Tx<'t>) -> Result<Option<&'t Arc<TxShared>>> {
        if tx.is_transactional() && !self.is_transactional() {
            return Err(Error::new(
                ErrorCode::TransactionUsage,
                format!(
                    "{} is not transactional; receive without a transaction",
                    self.name
                ),
            ));
        }
        match tx {
            Tx::In(t) => {
                self.qm.check_own_tx(t)?;
                drop(t.shared.lock_active()?);
                Ok(Some(&t.shared))
            }
            _ => Ok(None),
        }
    }

    /// Sends a message (`MQSendMessage`).
    ///
    /// A transactional queue takes only transactional sends and a non-transactional queue only
    /// non-transactional ones (`MQ_ERROR_TRANSACTION_USAGE`). Journals, dead-letter queues and
    /// subqueues cannot be sent to (`MQ_ERROR_UNSUPPORTED_ACCESS_MODE`). A send that would take the
    /// queue over its quota fails with `MQ_ERROR_INSUFFICIENT_RESOURCES` and changes nothing in the
    /// queue (a NACK 0x8003 goes to the admin queue if one was asked for, as MSMQ does).
    pub fn send(&self, msg: Message, tx: Tx<'_>) -> Result<MessageId> {
        let Opened::Main(q) = &self.target else {
            return Err(Error::new(
                ErrorCode::UnsupportedAccessMode,
                format!(
                    "{} cannot be sent to: only a queue itself takes sends",
                    self.name
                ),
            ));
        };
        self.qm.send(q, msg, tx)
    }

    /// Sends messages in order, as if by one [`Queue::send`] each, and returns each one's result.
    ///
    /// On a durable queue manager the batch costs one log record and one disk sync where it can:
    /// recoverable non-transactional messages are logged together, and single-message
    /// transactions (`Tx::Single`) with the same time limits commit together. Either way each
    /// message is checked (limits, quota) on its own and a refused one leaves the others alone;
    /// a failed log write fails the messages it carried, none of which became visible.
    pub fn send_batch(&self, msgs: Vec<Message>, tx: Tx<'_>) -> Vec<Result<MessageId>> {
        let Opened::Main(q) = &self.target else {
            let e = Error::new(
                ErrorCode::UnsupportedAccessMode,
                format!(
                    "{} cannot be sent to: only a queue itself takes sends",
                    self.name
                ),
            );
            return vec![Err(e); msgs.len()];
        };
        self.qm.send_batch(q, msgs, tx)
    }

    /// Receives up to `max` messages that are in the queue now, without waiting, in one step
    /// (one log record on a durable queue manager). Under `Tx::None` or `Tx::Single` the
    /// messages are gone when this returns, as with [`Queue::receive`]; under a transaction they
    /// are locked to it. Returns fewer messages, or none, when the queue has fewer.
    pub fn receive_batch(&self, max: usize, tx: Tx<'_>) -> Result<Vec<Message>> {
        if let Tx::In(_) = tx {
            let mut got = Vec::new();
            while got.len() < max {
                match self.receive(Duration::ZERO, tx) {
                    Ok(m) => got.push(m),
                    Err(e) if e.code() == ErrorCode::IoTimeout => break,
                    Err(e) if got.is_empty() => return Err(e),
                    Err(_) => break,
                }
            }
            return Ok(got);
        }
        self.receive_tx(&tx)?;
        let store = self.store()?;
        let mut taken = Vec::new();
        {
            let mut s = store.lock();
            s.expire(|| self.qm.now());
            let expired = s.drain_expired();
            while taken.len() < max {
                let Some((key, _)) = s.first() else { break };
                match s.take(key) {
                    Some(m) => taken.push(m),
                    None => break,
                }
            }
            drop(s);
            self.qm.expired(&store, expired);
        }
        if taken.is_empty() {
            return Ok(Vec::new());
        }
        // Logged before the caller sees the messages, as a single receive is.
        self.qm.run(|eff| {
            for msg in &taken {
                eff.removed(&store, msg);
                self.qm
                    .after_receive(self.journaled_parent().map(|q| &**q), msg, eff);
            }
        })?;
        drop(store);
        self.tidy();
        Ok(taken.into_iter().map(|m| *m).collect())
    }

    /// Receives the first message, waiting up to `timeout` (`MQ_ERROR_IO_TIMEOUT`).
    pub fn receive(&self, timeout: Duration, tx: Tx<'_>) -> Result<Message> {
        let txs = self.receive_tx(&tx)?;
        let store = self.store()?;
        // Fast path: one lock, no waiter registration.
        let fast = {
            let mut s = store.lock();
            s.expire(|| self.qm.now());
            let expired = s.drain_expired();
            let got = s
                .first()
                .map(|(key, _)| key)
                .and_then(|key| Claim::at(&mut s, key, txs));
            drop(s);
            self.qm.expired(&store, expired);
            got
        };
        let claim = match fast {
            Some(c) => c,
            None => {
                let deadline = self.qm.deadline(timeout);
                let lookup = store
                    .take_blocking(txs.map(|t| t.id), &deadline)
                    .map_err(|e| self.wait_error(e, timeout))?;
                self.claim(&store, txs, lookup)?
            }
        };
        self.complete_receive(store, claim)
    }

    /// Receives asynchronously; the same rules as [`Queue::receive`]. Dropping the future before it
    /// completes gives a message already handed to it back to its original position.
    pub async fn receive_async(&self, timeout: Duration, tx: Tx<'_>) -> Result<Message> {
        let txs = self.receive_tx(&tx)?;
        let store = self.store()?;
        {
            let mut s = store.lock();
            s.expire(|| self.qm.now());
            let expired = s.drain_expired();
            drop(s);
            self.qm.expired(&store, expired);
        }
        let deadline = self.qm.deadline(timeout);
        let lookup = store::TakeFuture::new(store.clone(), txs.map(|t| t.id), deadline)
            .await
            .map_err(|e| self.wait_error(e, timeout))?;
        let claim = self.claim(&store, txs, lookup)?;
        self.complete_receive(store, claim)
    }

    /// Finishes a receive: a taken message is journaled and acknowledged now; a locked one joins
    /// its transaction and is journaled at commit.
    fn complete_receive(&self, store: Arc<Store>, claim: Claim<'_>) -> Result<Message> {
        match claim {
            Claim::Taken(msg) => {
                // Logged (when durable) before the caller sees the message: a receive that
                // returned is never undone by a crash.
                self.qm.run(|eff| {
                    eff.removed(&store, &msg);
                    self.qm
                        .after_receive(self.journaled_parent().map(|q| &**q), &msg, eff);
                })?;
                drop(store);
                self.tidy();
                Ok(*msg)
            }
            Claim::Locked(lookup, t) => {
                let msg = store
                    .lock()
                    .locked_message(lookup)
                    .cloned()
                    .ok_or_else(|| self.deleted())?;
                let mut state = t.lock();
                if state.phase != crate::tx::Phase::Active {
                    drop(state);
                    self.give_back(&store, lookup);
                    return Err(Error::new(
                        ErrorCode::TransactionSequence,
                        "the transaction was prepared while the receive waited",
                    ));
                }
                state.held.push(HeldMessage {
                    store,
                    queue: self.journaled_parent().cloned(),
                    lookup,
                    move_to: None,
                });
                Ok(msg)
            }
        }
    }

    /// Puts a message this handle locked back where it was; if the queue was deleted meanwhile,
    /// the message fails as a deleted queue's messages do (NACK 0xC000, dead letter).
    fn give_back(&self, store: &Store, lookup: LookupId) {
        if let Some(msg) = store.lock().unlock(lookup, false) {
            self.qm.run_quietly(|eff| {
                eff.removed(store, &msg);
                self.qm.fail_message(msg, MessageClass::NACK_Q_DELETED, eff);
            });
        }
    }

    /// What a waiting receive got handed: locked to its transaction, or taken out for a
    /// non-transactional receive. Missing only when the queue was deleted in between.
    fn claim<'t>(
        &self,
        store: &Store,
        txs: Option<&'t Arc<TxShared>>,
        lookup: LookupId,
    ) -> Result<Claim<'t>> {
        match txs {
            Some(t) => Ok(Claim::Locked(lookup, t)),
            None => store
                .lock()
                .remove_locked(lookup)
                .map(Claim::Taken)
                .ok_or_else(|| self.deleted()),
        }
    }

    fn deleted(&self) -> Error {
        Error::new(
            ErrorCode::QueueDeleted,
            format!("queue {} was deleted during the receive", self.name),
        )
    }

    fn wait_error(&self, e: WaitError, timeout: Duration) -> Error {
        match e {
            WaitError::Timeout => Error::new(
                ErrorCode::IoTimeout,
                format!("no message arrived in {} within {timeout:?}", self.name),
            ),
            WaitError::Closed => Error::new(
                ErrorCode::QueueDeleted,
                format!("queue {} was deleted while waiting", self.name),
            ),
        }
    }

    /// Removes empty subqueues after a message left one, as MSMQ does.
    fn tidy(&self) {
        if let Opened::Sub(q, _) = &self.target {
            q.tidy_subqueues();
        }
    }

    /// Peeks at the first message without removing it, waiting up to `timeout`.
    pub fn peek(&self, timeout: Duration) -> Result<Message> {
        let store = self.store()?;
        let qm = self.qm.clone();
        let deadline = self.qm.deadline(timeout);
        let r = store.watch_blocking(&deadline, |s| {
            s.expire(|| qm.now());
            s.first().map(|(_, m)| m.clone())
        });
        self.after_watch(&store);
        r.map_err(|e| self.wait_error(e, timeout))
    }

    /// Peeks asynchronously.
    pub async fn peek_async(&self, timeout: Duration) -> Result<Message> {
        let store = self.store()?;
        let qm = self.qm.clone();
        let deadline = self.qm.deadline(timeout);
        let r = store::WatchFuture::new(store.clone(), deadline, move |s: &mut State| {
            s.expire(|| qm.now());
            s.first().map(|(_, m)| m.clone())
        })
        .await;
        self.after_watch(&store);
        r.map_err(|e| self.wait_error(e, timeout))
    }

    /// Dead-letters whatever a probe found expired.
    fn after_watch(&self, store: &Store) {
        let expired = store.lock().drain_expired();
        self.qm.expired(store, expired);
    }

    /// Starts a walk that visits every message once, in queue order, then waits for arrivals
    /// (what the Triggers service watches a queue with; see [`Scan`]).
    pub fn scan(&self) -> Scan {
        Scan::new(self.clone())
    }

    /// Opens a cursor at the head of the queue (`MQCreateCursor`).
    pub fn cursor(&self) -> Cursor {
        Cursor {
            queue: self.clone(),
            at: None,
            consumed: false,
        }
    }

    /// Every visible message in queue order, without removing any (for tests and management).
    pub fn messages(&self) -> Result<Vec<Message>> {
        Ok(self.store()?.lock().visible_messages())
    }

    /// How many receives, peeks and cursors are registered as waiting on this queue right now.
    /// Tests wait on it to know a receiver is really blocked before they act, instead of
    /// sleeping and hoping.
    #[doc(hidden)]
    pub fn waiting(&self) -> Result<usize> {
        Ok(self.store()?.lock().waiting())
    }

    /// Number of messages, locked ones included.
    pub fn len(&self) -> Result<usize> {
        Ok(self.store()?.lock().len())
    }

    /// Whether the queue holds no message at all.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    fn locate(&self, s: &mut State, action: LookupAction) -> Result<Key> {
        let found = match action {
            LookupAction::First => s.first_by_lookup(),
            LookupAction::Last => s.last_by_lookup(),
            LookupAction::Next(id) => s.next_by_lookup(id),
            LookupAction::Previous(id) => s.prev_by_lookup(id),
            LookupAction::Current(id) => match s.find(id) {
                Found::Visible(key) => Some(key),
                Found::Locked(owner) => return Err(locked_error(owner, id)),
                Found::Missing => None,
            },
        };
        found.ok_or_else(|| {
            Error::new(
                ErrorCode::MessageNotFound,
                format!("no message for {action:?} in {}", self.name),
            )
        })
    }

    /// Peeks by lookup id (`MQReceiveMessageByLookupId` with a `PEEK` action). Does not wait.
    pub fn peek_by_lookup_id(&self, action: LookupAction) -> Result<Message> {
        self.peek_located(|q, s| q.locate(s, action))
    }

    /// Receives by lookup id. A message locked by a transaction gives
    /// `MQ_ERROR_MESSAGE_LOCKED_UNDER_TRANSACTION`; a missing one `MQ_ERROR_MESSAGE_NOT_FOUND`.
    pub fn receive_by_lookup_id(&self, action: LookupAction, tx: Tx<'_>) -> Result<Message> {
        self.receive_located(tx, |q, s| q.locate(s, action))
    }

    /// Peeks at the message with this id. Does not wait.
    pub fn peek_by_id(&self, id: &MessageId) -> Result<Message> {
        self.peek_located(|q, s| q.locate_id(s, id))
    }

    /// Receives the message with this id (System.Messaging's `ReceiveById`).
    pub fn receive_by_id(&self, id: &MessageId, tx: Tx<'_>) -> Result<Message> {
        self.receive_located(tx, |q, s| q.locate_id(s, id))
    }

    /// Peeks at the first message with this correlation id.
    pub fn peek_by_correlation_id(&self, id: &MessageId) -> Result<Message> {
        self.peek_located(|q, s| q.locate_correlation(s, id))
    }

    /// Receives the first message with this correlation id (`ReceiveByCorrelationId`).
    pub fn receive_by_correlation_id(&self, id: &MessageId, tx: Tx<'_>) -> Result<Message> {
        self.receive_located(tx, |q, s| q.locate_correlation(s, id))
    }

    fn locate_id(&self, s: &mut State, id: &MessageId) -> Result<Key> {
        match s.find_by_id(id) {
            Found::Visible(key) => Ok(key),
            Found::Locked(owner) => Err(locked_error(owner, 0)),
            Found::Missing => Err(Error::new(
                ErrorCode::MessageNotFound,
                format!("no message with id {id} in {}", self.name),
            )),
        }
    }

    fn locate_correlation(&self, s: &mut State, id: &MessageId) -> Result<Key> {
        s.first_by_correlation(id).ok_or_else(|| {
            Error::new(
                ErrorCode::MessageNotFound,
                format!("no message with correlation id {id} in {}", self.name),
            )
        })
    }

    /// Peeks at the message `locate` picks, under the lock, without waiting.
    fn peek_located(
        &self,
        locate: impl FnOnce(&Queue, &mut State) -> Result<Key>,
    ) -> Result<Message> {
        let store = self.store()?;
        let mut s = store.lock();
        let key = locate(self, &mut s)?;
        s.read(key).ok_or_else(|| self.unreadable(key))
    }

    /// A located message that could not be read back from the log (the log failed; the error
    /// is logged where it happened).
    fn unreadable(&self, key: Key) -> Error {
        Error::new(
            ErrorCode::MessageStorageFailed,
            format!(
                "message {} of {} cannot be read back from the log",
                key.lookup(),
                self.name
            ),
        )
    }

    /// Receives the message `locate` picks, under the lock, without waiting.
    fn receive_located(
        &self,
        tx: Tx<'_>,
        locate: impl FnOnce(&Queue, &mut State) -> Result<Key>,
    ) -> Result<Message> {
        let txs = self.receive_tx(&tx)?;
        let store = self.store()?;
        let claim = {
            let mut s = store.lock();
            let key = locate(self, &mut s)?;
            Claim::at(&mut s, key, txs).ok_or_else(|| self.unreadable(key))?
        };
        self.complete_receive(store, claim)
    }

    /// Moves a message to a subqueue of the same queue, from a subqueue back to its queue, or
    /// between sibling subqueues (`MQMoveMessage`, MSMQ 4.0). The move count goes up and the abort
    /// count starts again from zero. Under a transaction the move happens at commit.
    pub fn move_message(&self, lookup: LookupId, to: &Queue, tx: Tx<'_>) -> Result<()> {
        self.qm
            .require_msmq4("moving messages between a queue and its subqueues")?;
        let same_family = match (&self.target, &to.target) {
            (Opened::Main(a), Opened::Sub(b, _))
            | (Opened::Sub(a, _), Opened::Main(b))
            | (Opened::Sub(a, _), Opened::Sub(b, _)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        if !same_family {
            return Err(Error::new(
                ErrorCode::IllegalOperation,
                format!(
                    "cannot move from {} to {}: moves go between a queue and its own subqueues",
                    self.name, to.name
                ),
            ));
        }
        let txs = self.receive_tx(&tx)?;
        let from = self.store()?;
        let dest = to.store()?;
        if Arc::ptr_eq(&from, &dest) {
            return Err(Error::new(
                ErrorCode::IllegalOperation,
                "source and destination are the same queue",
            ));
        }
        let claim = {
            let mut s = from.lock();
            let key = self.locate(&mut s, LookupAction::Current(lookup))?;
            Claim::at(&mut s, key, txs).ok_or_else(|| self.unreadable(key))?
        };
        match claim {
            Claim::Taken(msg) => {
                self.qm.run(|eff| eff.moved(&from, &dest, msg))?;
                drop(from);
                self.tidy();
            }
            Claim::Locked(lookup, t) => t.lock().held.push(HeldMessage {
                store: from,
                queue: self.journaled_parent().cloned(),
                lookup,
                move_to: Some(dest),
            }),
        }
        Ok(())
    }

    /// Rejects a message (`MQMarkMessageRejected`, MSMQ 4.0): it leaves the queue, a NACK
    /// 0xC004 (`NACK_RECEIVE_REJECTED`) goes to its admin queue if asked for, and it is
    /// dead-lettered (always, for a transactional message).
    pub fn reject(&self, lookup: LookupId) -> Result<()> {
        self.qm.require_msmq4("rejecting messages")?;
        let store = self.store()?;
        let msg = {
            let mut s = store.lock();
            let key = self.locate(&mut s, LookupAction::Current(lookup))?;
            s.take(key).ok_or_else(|| self.unreadable(key))?
        };
        self.qm.run(|eff| {
            eff.removed(&store, &msg);
            self.qm
                .fail_message(*msg, MessageClass::NACK_RECEIVE_REJECTED, eff);
        })?;
        drop(store);
        self.tidy();
        Ok(())
    }

    /// Removes every message that is not locked by a transaction (`MQPurgeQueue`). Senders that
    /// asked for negative receive acknowledgements get NACK 0xC001 (`NACK_Q_PURGED`).
    ///
    /// A long queue goes a batch at a time, each batch one logged step, so that its messages are
    /// never all in memory (or in one log record) at once; messages that arrive meanwhile (lookup
    /// ids past the last one when the purge began) stay.
    pub fn purge(&self) -> Result<usize> {
        let store = self.store()?;
        let last = store.last_lookup();
        // Only messages purged from their destination were never received; journal copies and
        // dead letters were acknowledged (or not) already.
        let acknowledge = self.journaled_parent().is_some();
        let mut n = 0;
        loop {
            let msgs = store.lock().take_first(PURGE_BATCH, last);
            if msgs.is_empty() {
                break;
            }
            n += msgs.len();
            self.qm.run(|eff| {
                for m in &msgs {
                    eff.removed(&store, m);
                    if acknowledge {
                        self.qm.acknowledge(m, MessageClass::NACK_Q_PURGED, eff);
                    }
                }
            })?;
        }
        drop(store);
        self.tidy();
        Ok(n)
    }
}

/// A message claimed by a receive: gone from the queue (boxed as the queue kept it, so the box is
/// freed outside the lock), or locked to a transaction.
enum Claim<'t> {
    Taken(Box<Message>),
    Locked(LookupId, &'t Arc<TxShared>),
}

impl<'t> Claim<'t> {
    /// Claims the visible message at `key`: locked to the transaction, or taken out without one.
    /// `None` if it is cold and cannot be read back.
    fn at(s: &mut State, key: Key, txs: Option<&'t Arc<TxShared>>) -> Option<Claim<'t>> {
        Some(match txs {
            Some(t) => Claim::Locked(s.lock(key, t.id)?, t),
            None => Claim::Taken(s.take(key)?),
        })
    }
}

/// Messages per logged step of a purge.
const PURGE_BATCH: usize = 4096;

fn locked_error(owner: Owner, lookup: LookupId) -> Error {
    let what = match owner {
        Owner::Tx(_) => "locked by a transaction",
        Owner::InFlight(_) => "being handed to a receiver",
    };
    Error::new(
        ErrorCode::MessageLockedUnderTransaction,
        format!("message {lookup} is {what}"),
    )
}

/// A cursor over a queue (`MQCreateCursor`): peek current, peek next, receive current.
///
/// A fresh cursor is before the first message: `peek_current` moves it onto the first message,
/// while `peek_next` is `MQ_ERROR_ILLEGAL_CURSOR_ACTION` until it has been placed. When the
/// message under the cursor is received through the cursor, the cursor moves on to the message
/// after it; when someone else removes it, `peek_current` gives
/// `MQ_ERROR_MESSAGE_ALREADY_RECEIVED`.
pub struct Cursor {
    queue: Queue,
    /// The position of the current message; `None` before the first peek.
    at: Option<Key>,
    /// Whether this cursor itself received the message at `at`.
    consumed: bool,
}

impl std::fmt::Debug for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursor")
            .field("queue", &self.queue.name)
            .field("at", &self.at.map(Key::lookup))
            .finish()
    }
}

/// Where a cursor operation looks.
#[derive(Clone, Copy)]
enum Aim {
    /// The current message (or the first, or the one after a consumed one).
    Current,
    /// The message after the current one.
    Next,
}

impl Cursor {
    /// The queue handle the cursor browses.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    fn probe(at: Option<Key>, consumed: bool, aim: Aim, s: &mut State) -> Option<Result<Key>> {
        let present = at.is_some_and(|k| s.contains(k));
        let after = |k: Key| s.after(k).map(Ok);
        match (aim, at) {
            (Aim::Current, None) => s.first().map(|(k, _)| Ok(k)),
            (Aim::Current, Some(k)) if present => Some(Ok(k)),
            (Aim::Current, Some(k)) if consumed => after(k),
            (Aim::Current, Some(k)) => Some(Err(Error::new(
                ErrorCode::MessageAlreadyReceived,
                format!("message {} under the cursor was removed", k.lookup()),
            ))),
            (Aim::Next, None) => Some(Err(Error::new(
                ErrorCode::IllegalCursorAction,
                "peek next needs a cursor placed by peek current first",
            ))),
            (Aim::Next, Some(k)) => after(k),
        }
    }

    fn wait(&self, aim: Aim, timeout: Duration) -> Result<(Key, Message)> {
        let store = self.queue.store()?;
        let (at, consumed) = (self.at, self.consumed);
        let qm = self.queue.qm.clone();
        let deadline = qm.deadline(timeout);
        let r = store.watch_blocking(&deadline, |s| {
            s.expire(|| qm.now());
            Cursor::probe(at, consumed, aim, s).map(|r| {
                let k = r?;
                let msg = s.read(k).ok_or_else(|| self.queue.unreadable(k))?;
                Ok((k, msg))
            })
        });
        self.queue.after_watch(&store);
        r.map_err(|e| self.queue.wait_error(e, timeout))?
    }

    /// Peeks at the message under the cursor (placing it on the first message if new).
    pub fn peek_current(&mut self, timeout: Duration) -> Result<Message> {
        let (key, msg) = self.wait(Aim::Current, timeout)?;
        self.at = Some(key);
        self.consumed = false;
        Ok(msg)
    }

    /// Moves to the next message and peeks at it, waiting for one to arrive.
    pub fn peek_next(&mut self, timeout: Duration) -> Result<Message> {
        let (key, msg) = self.wait(Aim::Next, timeout)?;
        self.at = Some(key);
        self.consumed = false;
        Ok(msg)
    }

    /// Receives the message under the cursor; the cursor then points past it.
    pub fn receive_current(&mut self, timeout: Duration, tx: Tx<'_>) -> Result<Message> {
        let deadline_start = self.queue.qm.now();
        loop {
            let (key, _) = self.wait(Aim::Current, timeout)?;
            // Another receiver may take it between the peek and the receive: then look again.
            let txs = self.queue.receive_tx(&tx)?;
            let store = self.queue.store()?;
            let claim = {
                let mut s = store.lock();
                if !s.contains(key) {
                    None
                } else {
                    Claim::at(&mut s, key, txs)
                }
            };
            self.at = Some(key);
            match claim {
                Some(claim) => {
                    self.consumed = true;
                    return self.queue.complete_receive(store, claim);
                }
                None => {
                    self.consumed = true; // it is gone: move on to what follows
                    if self.queue.qm.now().since(deadline_start) >= timeout {
                        return Err(self.queue.wait_error(WaitError::Timeout, timeout));
                    }
                }
            }
        }
    }
}
