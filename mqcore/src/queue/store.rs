//! The hot path: one queue's messages, their order, their locks, and the receivers waiting on them.
//!
//! Everything that races lives here, behind one mutex per queue, written against the loom shim so
//! that `queue/loom_tests.rs` can check every interleaving. The rest of the engine (transactions,
//! journals, dead letters, acknowledgements) calls in with the lock held through [`Store::lock`].
//!
//! Order is (priority descending, lookup id ascending): lookup ids are handed out when a message
//! becomes part of the queue (on commit, for transactional sends), so within a priority the order is
//! arrival order, and for transactional queues (priority always 0) it is commit order.
//!
//! A waiting receiver is never woken to race for a message: the message is *handed off* to it under
//! the lock (locked to its transaction, or held in flight for a non-transactional receive). A waiter
//! that gives up after being handed a message (an async receive dropped, say) gives it back to its
//! original position, which hands it to the next waiter. So no wake-up is lost, no two receivers get
//! one message, and there is no thundering herd. Peekers and cursors are woken on every arrival and
//! look again.
//!
//! Wake-ups are collected while the lock is held and delivered after it is released (see
//! [`Guard`]), so a woken thread never wakes straight into a held lock, and a waiting thread spins
//! (yielding) for a moment before it parks, so a producer and a consumer running side by side
//! rarely pay for a futex round trip.
//!
//! The invariant that makes hand-off simple: **if a receiver is waiting, no message is visible.**
//! Every path that makes a message visible ([`State::publish`], [`State::unlock`]) ends in
//! [`State::dispatch`], which hands messages to waiters until one side runs out.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use rustc_hash::FxHashMap as HashMap;

use super::cold::{Cold, ColdLink, Entry};
use crate::clock::Timestamp;
// Only the mutex and the condition variables race; the `Arc` handles are plain std ones.
use crate::ids::{Lsn, StoreRef};
use crate::loom::sync::{Condvar, Mutex, MutexGuard};
use crate::loom::thread::yield_now;
use crate::message::{footprint, Message, MessageId};
use std::sync::Arc;

pub use crate::ids::LookupId;
pub(crate) use crate::ids::TxId;

/// A waiter's identity inside one store.
pub(crate) type WaiterId = u64;

/// Position of a message in queue order: priority descending, then lookup id (arrival) ascending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Key {
    /// `7 - priority`, so that a higher priority sorts first.
    rank: u8,
    /// The message's lookup id.
    lookup: LookupId,
}

impl Key {
    fn new(priority: u8, lookup: LookupId) -> Key {
        Key {
            rank: 7u8.saturating_sub(priority),
            lookup,
        }
    }

    /// The lookup id at this position.
    pub(crate) fn lookup(self) -> LookupId {
        self.lookup
    }

    /// `7 - priority`: 0 for the highest priority.
    pub(crate) fn rank(self) -> u8 {
        self.rank
    }

    /// The position of lookup id `lookup` among messages of rank `rank`.
    pub(crate) fn ranked(rank: u8, lookup: LookupId) -> Key {
        Key { rank, lookup }
    }
}

/// Who holds a locked message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// A transaction that received (or is moving) the message; commit removes it, abort restores it.
    Tx(TxId),
    /// Handed to a waiting non-transactional receiver that has not picked it up yet.
    InFlight(WaiterId),
}

/// A message that is part of the queue but invisible, because someone holds it.
#[derive(Debug)]
struct Locked {
    /// Where it goes back to on abort.
    key: Key,
    /// Who holds it.
    owner: Owner,
    /// The message itself.
    msg: Box<Message>,
}

/// How a blocked thread or task is woken.
#[derive(Debug, Clone)]
pub(crate) enum Wake {
    /// A thread waiting on its own condition variable paired with the store's mutex. Only a
    /// thread that has parked needs the (system-call) notification; one still spinning looks again
    /// by itself.
    Thread(Arc<Condvar>),
    /// An async task.
    Task(Waker),
}

impl Wake {
    fn wake(self) {
        match self {
            Wake::Thread(cv) => cv.notify_one(),
            Wake::Task(w) => w.wake(),
        }
    }
}

/// A receiver waiting for a message to be handed to it.
#[derive(Debug)]
struct Taker {
    id: WaiterId,
    /// The transaction to lock the message to; `None` for a non-transactional receive.
    tx: Option<TxId>,
    wake: Wake,
    /// Whether the waiting thread has parked (tasks count as parked: they must be woken).
    parked: bool,
}

/// A peeker or cursor waiting for anything to arrive.
#[derive(Debug)]
struct Watcher {
    id: WaiterId,
    wake: Wake,
}

/// What a lookup by id finds.
#[derive(Debug)]
pub(crate) enum Found {
    /// Visible, at this position.
    Visible(Key),
    /// Part of the queue but held by a transaction or a receiver.
    Locked(Owner),
    /// Not in this queue.
    Missing,
}

/// One queue's messages and waiters. Guarded by [`Store`]'s mutex.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Visible messages in queue order. Boxed, so that B-tree node shifts move pointers rather
    /// than whole messages.
    visible: BTreeMap<Key, Box<Message>>,
    /// Priority of every visible message by lookup id: finds a [`Key`] from a lookup id, and
    /// walks messages in lookup-id order for `MQReceiveMessageByLookupId`.
    rank_of: BTreeMap<LookupId, u8>,
    /// Messages held by a transaction or an in-flight receive.
    locked: HashMap<LookupId, Locked>,
    /// Message id to lookup id, for visible and locked messages.
    by_id: HashMap<MessageId, LookupId>,
    /// Correlation id to the visible messages carrying it.
    by_correlation: HashMap<MessageId, BTreeSet<Key>>,
    /// Visible messages with a time-to-be-received, by deadline.
    expiry: BTreeSet<(Timestamp, LookupId)>,
    /// Messages found expired, for the queue manager to dead-letter.
    expired: Vec<Message>,
    /// The deadline the queue manager's timer is armed for, to expire this store's messages.
    pub(crate) expiry_armed: Option<Timestamp>,
    /// An empty vector with capacity, swapped with the inbox's so neither side reallocates.
    #[allow(clippy::vec_box)] // the boxes move into the B-tree as they are, allocated unlocked
    spare: Vec<Box<Message>>,
    /// Sum of body and label sizes of visible and locked messages, for the quota.
    bytes: u64,
    /// Receivers waiting for a hand-off, first come first served.
    takers: VecDeque<Taker>,
    /// Peekers and cursors waiting for an arrival.
    watchers: Vec<Watcher>,
    /// Messages handed to takers that have not picked them up yet: waiter id to lookup id.
    handed: HashMap<WaiterId, LookupId>,
    /// Source of waiter ids.
    next_waiter: WaiterId,
    /// The queue was deleted: waiters give up with `MQ_ERROR_QUEUE_DELETED`.
    closed: bool,
    /// Whether time-to-be-received applies here (user queues); journals and dead-letter queues
    /// keep messages until someone removes them.
    expires: bool,
    /// Wake-ups decided under the lock, delivered by [`Guard`] after it is released.
    pending: Vec<Wake>,
    /// Visible messages held only as log positions (see `queue/cold.rs`): not in `visible`,
    /// `rank_of`, `by_id` or `by_correlation`, but counted in `bytes`.
    cold: Cold,
    /// Where cold messages are read back from; `None` keeps everything in memory.
    link: Option<ColdLink>,
    /// Ranks whose refill could not read their first message back (bit `rank`): retried each
    /// time the store is locked.
    stalled: u8,
}

/// How many cold messages a refill reads back at most.
const REFILL_COUNT: usize = 256;
/// How many bytes of cold messages a refill reads back at most (at least one message).
const REFILL_BYTES: u64 = 1024 * 1024;

/// The lower of two (rank, lookup) candidates by lookup id, as a key.
fn lowest(a: Option<(u8, LookupId)>, b: Option<(u8, LookupId)>) -> Option<Key> {
    let (rank, lookup) = match (a, b) {
        (Some(a), Some(b)) => std::cmp::min_by_key(a, b, |x| x.1),
        (a, b) => a.or(b)?,
    };
    Some(Key { rank, lookup })
}

/// The higher of two (rank, lookup) candidates by lookup id, as a key.
fn highest(a: Option<(u8, LookupId)>, b: Option<(u8, LookupId)>) -> Option<Key> {
    let (rank, lookup) = match (a, b) {
        (Some(a), Some(b)) => std::cmp::max_by_key(a, b, |x| x.1),
        (a, b) => a.or(b)?,
    };
    Some(Key { rank, lookup })
}

impl State {
    /// Number of messages in the queue, locked ones included (what MSMQ's message count shows).
    pub(crate) fn len(&self) -> usize {
        self.visible.len() + self.locked.len() + self.cold.len()
    }

    /// Number of visible messages held only as log positions.
    pub(crate) fn cold_len(&self) -> usize {
        self.cold.len()
    }

    /// Number of messages a receiver could take now.
    #[cfg(test)]
    pub(crate) fn visible_len(&self) -> usize {
        self.visible.len()
    }

    /// Bytes counted against the quota.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Adds a message that has its lookup id to the visible set (no hand-off; callers dispatch).
    /// With `cool`, a logged message may be kept only as its log position (see `queue/cold.rs`).
    fn insert_arrived(&mut self, msg: Box<Message>, cool: bool) {
        self.bytes += footprint(&msg);
        let key = Key::new(msg.priority, msg.lookup_id);
        if cool && self.goes_cold(&msg, key) {
            let e = Entry {
                lookup: key.lookup,
                lsn: msg.lsn,
            };
            self.cold.insert(key.rank, e);
            return;
        }
        self.warm(key, msg);
    }

    /// Whether an arriving message is kept only as its log position: it is logged, may not
    /// expire, is not the first of its priority, and either the cache is full or older messages
    /// of its priority are cold already (which keeps arrivals in order behind them).
    fn goes_cold(&self, msg: &Message, key: Key) -> bool {
        let Some(link) = &self.link else {
            return false;
        };
        if msg.lsn == 0 || (self.expires && msg.expires_at().is_some()) {
            return false;
        }
        let first = Key {
            rank: key.rank,
            lookup: 0,
        };
        if self.visible.range(first..key).next().is_none() {
            // The first hot message of its priority stays hot, unless older messages of the
            // priority could not be read back (a stalled refill): it waits behind them.
            return self
                .cold
                .rank(key.rank)
                .front()
                .is_some_and(|e| e.lookup < key.lookup);
        }
        !self.cold.rank(key.rank).is_empty() || link.source.cache().full()
    }

    /// Puts a message in memory, visible at `key` (its `bytes` are counted already).
    fn warm(&mut self, key: Key, msg: Box<Message>) {
        self.by_id.insert(msg.id, msg.lookup_id);
        if let Some(link) = &self.link {
            if msg.lsn != 0 {
                link.source.cache().add(footprint(&msg));
            }
        }
        self.insert_visible(key, msg);
    }

    /// Reads cold messages back (see [`ColdSource::load`](super::cold::ColdSource::load)). A
    /// read failure is logged, and the messages stay cold until a later read succeeds.
    #[allow(clippy::vec_box)] // boxed as the store's B-tree keeps them
    fn load(&self, wanted: &[(Lsn, LookupId)], max_bytes: u64) -> Vec<Box<Message>> {
        let Some(link) = &self.link else {
            return Vec::new();
        };
        let Some(&(lsn, lookup)) = wanted.first() else {
            return Vec::new();
        };
        match link.source.load(&link.at, wanted, max_bytes) {
            Ok(msgs) => {
                if !msgs.iter().any(|m| m.lookup_id == lookup) {
                    tracing::error!(store = ?link.at, lookup, lsn, "a queued message is not in the log record that put it");
                }
                msgs
            }
            Err(e) => {
                tracing::error!(store = ?link.at, error = %e, "cannot read messages back from the log");
                Vec::new()
            }
        }
    }

    /// The cold message at `key`, if there is one.
    fn cold_entry(&self, key: Key) -> Option<Entry> {
        let v = self.cold.rank(key.rank);
        let i = v.binary_search_by_key(&key.lookup, |e| e.lookup).ok()?;
        Some(v[i])
    }

    /// Whether a visible message, in memory or not, is at `key`.
    pub(crate) fn contains(&self, key: Key) -> bool {
        self.visible.contains_key(&key) || self.cold_entry(key).is_some()
    }

    /// A copy of the visible message at `key`; a cold one is read back without being kept, so
    /// peeks and cursors walking a long queue do not fill memory. `None` if there is none, or
    /// it cannot be read back.
    pub(crate) fn read(&self, key: Key) -> Option<Message> {
        if let Some(m) = self.visible.get(&key) {
            return Some((**m).clone());
        }
        let e = self.cold_entry(key)?;
        self.load(&[(e.lsn, e.lookup)], 0)
            .into_iter()
            .find(|m| m.lookup_id == key.lookup)
            .map(|m| *m)
    }

    /// Retries the refills that could not read their message back.
    fn retry_stalled(&mut self) {
        if self.stalled != 0 {
            for rank in 0..8 {
                if self.stalled & (1 << rank) != 0 {
                    self.refill(rank);
                }
            }
        }
    }

    /// Brings one cold message into memory; whether it was cold (and could be read).
    fn promote(&mut self, key: Key) -> bool {
        let Some(e) = self.cold_entry(key) else {
            return false;
        };
        let loaded = self.load(&[(e.lsn, e.lookup)], 0);
        let Some(msg) = loaded.into_iter().find(|m| m.lookup_id == key.lookup) else {
            return false;
        };
        self.cold.remove(key.rank, key.lookup);
        self.warm(key, msg);
        true
    }

    /// Restores "the first message of every priority is in memory" for `rank` after a removal,
    /// reading the next cold messages of that priority back from the log.
    fn refill(&mut self, rank: u8) {
        self.stalled &= !(1 << rank);
        let Some(&front) = self.cold.rank(rank).front() else {
            return;
        };
        let hot = self
            .visible
            .range(Key { rank, lookup: 0 }..)
            .next()
            .map(|(k, _)| *k)
            .filter(|k| k.rank == rank);
        if hot.is_some_and(|k| k.lookup < front.lookup) {
            return;
        }
        let wanted: Vec<(Lsn, LookupId)> = self
            .cold
            .rank(rank)
            .iter()
            .take_while(|e| hot.is_none_or(|h| e.lookup < h.lookup))
            .take(REFILL_COUNT)
            .map(|e| (e.lsn, e.lookup))
            .collect();
        for msg in self.load(&wanted, REFILL_BYTES) {
            if self.cold.remove(rank, msg.lookup_id).is_some() {
                self.warm(Key::new(msg.priority, msg.lookup_id), msg);
            }
        }
        if self.cold.rank(rank).front() == Some(&front) {
            self.stalled |= 1 << rank;
        }
    }

    /// Links the store to its log (durable queue managers), so that messages past the cache
    /// budget are kept only as log positions.
    pub(crate) fn set_link(&mut self, link: ColdLink) {
        self.link = Some(link);
    }

    /// Recovery: adds visible messages known only by their log positions, sorted by lookup id,
    /// to priority rank `rank`, with `bytes` their quota footprint. Callers refill after.
    pub(crate) fn recover_cold(
        &mut self,
        rank: u8,
        entries: std::collections::VecDeque<Entry>,
        bytes: u64,
    ) {
        debug_assert!(self.cold.rank(rank).is_empty());
        self.bytes += bytes;
        self.cold.set_rank(rank, entries);
    }

    /// Recovery: brings the first messages of every priority into memory.
    pub(crate) fn refill_all(&mut self) {
        for rank in 0..8 {
            self.refill(rank);
        }
    }

    /// Whether any receiver or peeker is registered (producers must then take the slow path).
    fn wants_slow(&self) -> bool {
        !self.takers.is_empty() || !self.watchers.is_empty()
    }

    fn insert_visible(&mut self, key: Key, msg: Box<Message>) {
        self.rank_of.insert(key.lookup, key.rank);
        if let Some(c) = msg.correlation_id {
            self.by_correlation.entry(c).or_default().insert(key);
        }
        if let Some(deadline) = msg.expires_at().filter(|_| self.expires) {
            self.expiry.insert((deadline, key.lookup));
        }
        self.visible.insert(key, msg);
    }

    fn remove_visible(&mut self, key: Key) -> Option<Box<Message>> {
        let msg = match self.visible.remove(&key) {
            Some(m) => m,
            None if self.promote(key) => self.visible.remove(&key)?,
            None => return None,
        };
        self.rank_of.remove(&key.lookup);
        if let Some(c) = msg.correlation_id {
            if let Some(set) = self.by_correlation.get_mut(&c) {
                set.remove(&key);
                if set.is_empty() {
                    self.by_correlation.remove(&c);
                }
            }
        }
        if let Some(deadline) = msg.expires_at().filter(|_| self.expires) {
            self.expiry.remove(&(deadline, key.lookup));
        }
        self.refill(key.rank);
        Some(msg)
    }

    /// Forgets an in-memory message that leaves the queue for good.
    fn forget(&mut self, msg: &Message) {
        self.bytes -= footprint(msg);
        self.by_id.remove(&msg.id);
        if let Some(link) = &self.link {
            if msg.lsn != 0 {
                link.source.cache().sub(footprint(msg));
            }
        }
    }

    /// Hands visible messages to waiting receivers, in queue order, then wakes peekers if anything
    /// is still visible. Restores the invariant "a receiver waits only while nothing is visible"
    /// (after a batch of [`State::restore`], for instance).
    pub(crate) fn dispatch(&mut self) {
        while !self.takers.is_empty() {
            let Some((&key, _)) = self.visible.first_key_value() else {
                break;
            };
            let Some(taker) = self.takers.pop_front() else {
                break;
            };
            let owner = match taker.tx {
                Some(tx) => Owner::Tx(tx),
                None => Owner::InFlight(taker.id),
            };
            self.lock_key(key, owner)
                .expect("the first visible message is in memory");
            self.handed.insert(taker.id, key.lookup);
            if taker.parked {
                self.pending.push(taker.wake);
            }
        }
        if !self.visible.is_empty() {
            let woken = self.watchers.drain(..).map(|w| w.wake);
            self.pending.extend(woken);
        }
    }

    /// Locks the visible message at `key`; `None` if there is none, or it is cold and cannot be
    /// read back.
    fn lock_key(&mut self, key: Key, owner: Owner) -> Option<LookupId> {
        let msg = self.remove_visible(key)?;
        self.locked.insert(key.lookup, Locked { key, owner, msg });
        Some(key.lookup)
    }

    /// The first visible message in queue order.
    pub(crate) fn first(&self) -> Option<(Key, &Message)> {
        self.visible.first_key_value().map(|(k, m)| (*k, &**m))
    }

    /// The position of the first visible message after `key` in queue order.
    pub(crate) fn after(&self, key: Key) -> Option<Key> {
        use std::ops::Bound::{Excluded, Unbounded};
        let hot = self
            .visible
            .range((Excluded(key), Unbounded))
            .next()
            .map(|(k, _)| *k);
        // Other priorities' first messages are hot: only this priority's cold ones can come
        // between `key` and the next hot message.
        let cold = self.cold.after(key.rank, key.lookup).map(|lookup| Key {
            rank: key.rank,
            lookup,
        });
        match (hot, cold) {
            (Some(h), Some(c)) => Some(h.min(c)),
            (h, c) => h.or(c),
        }
    }

    /// The visible message with the lowest lookup id.
    pub(crate) fn first_by_lookup(&self) -> Option<Key> {
        let hot = self.rank_of.first_key_value().map(|(&l, &r)| (r, l));
        let cold = self.cold.next_by_lookup(None);
        lowest(hot, cold)
    }

    /// The visible message with the highest lookup id.
    pub(crate) fn last_by_lookup(&self) -> Option<Key> {
        let hot = self.rank_of.last_key_value().map(|(&l, &r)| (r, l));
        let cold = self.cold.prev_by_lookup(None);
        highest(hot, cold)
    }

    /// The visible message with the lowest lookup id above `lookup` (which need not exist).
    pub(crate) fn next_by_lookup(&self, lookup: LookupId) -> Option<Key> {
        use std::ops::Bound::{Excluded, Unbounded};
        let hot = self
            .rank_of
            .range((Excluded(lookup), Unbounded))
            .next()
            .map(|(&l, &r)| (r, l));
        lowest(hot, self.cold.next_by_lookup(Some(lookup)))
    }

    /// The visible message with the highest lookup id below `lookup` (which need not exist).
    pub(crate) fn prev_by_lookup(&self, lookup: LookupId) -> Option<Key> {
        let hot = self
            .rank_of
            .range(..lookup)
            .next_back()
            .map(|(&l, &r)| (r, l));
        highest(hot, self.cold.prev_by_lookup(Some(lookup)))
    }

    /// The position of a visible or locked message.
    pub(crate) fn key_of(&self, lookup: LookupId) -> Option<Key> {
        match self.find(lookup) {
            Found::Visible(key) => Some(key),
            Found::Locked(_) => self.locked.get(&lookup).map(|l| l.key),
            Found::Missing => None,
        }
    }

    /// Finds a message by lookup id.
    pub(crate) fn find(&self, lookup: LookupId) -> Found {
        if let Some(&rank) = self.rank_of.get(&lookup) {
            return Found::Visible(Key { rank, lookup });
        }
        if let Some(l) = self.locked.get(&lookup) {
            return Found::Locked(l.owner);
        }
        match self.cold.rank_of(lookup) {
            Some(rank) => Found::Visible(Key { rank, lookup }),
            None => Found::Missing,
        }
    }

    /// Finds a message by message id. Cold messages are not indexed by id: they are read back
    /// and looked at, in queue order (a full scan of the log's live messages at worst).
    pub(crate) fn find_by_id(&self, id: &MessageId) -> Found {
        if let Some(&lookup) = self.by_id.get(id) {
            return self.find(lookup);
        }
        match self.scan_cold(None, |m| m.id == *id) {
            Some(key) => Found::Visible(key),
            None => Found::Missing,
        }
    }

    /// The first visible message with correlation id `c` (cold ones are scanned, as for ids).
    pub(crate) fn first_by_correlation(&self, c: &MessageId) -> Option<Key> {
        let hot = self.by_correlation.get(c).and_then(|s| s.first()).copied();
        self.scan_cold(hot, |m| m.correlation_id == Some(*c))
            .or(hot)
    }

    /// The first cold message before `before` (all of them with `None`) that `matches`. Reads
    /// the candidates back a batch at a time, keeping none.
    fn scan_cold(&self, before: Option<Key>, matches: impl Fn(&Message) -> bool) -> Option<Key> {
        let candidates: Vec<(u8, Entry)> = self
            .cold
            .iter()
            .filter(|&(rank, e)| {
                before.is_none_or(|b| {
                    Key {
                        rank,
                        lookup: e.lookup,
                    } < b
                })
            })
            .collect();
        for batch in candidates.chunks(REFILL_COUNT) {
            let found: Vec<Box<Message>> = self
                .read_cold(batch)
                .into_iter()
                .filter(|m| matches(m))
                .collect();
            if let Some(key) = found
                .iter()
                .map(|m| Key::new(m.priority, m.lookup_id))
                .min()
            {
                return Some(key);
            }
        }
        None
    }

    /// Removes a visible message for good (a non-transactional receive). Boxed, so the caller
    /// frees the box after releasing the lock.
    pub(crate) fn take(&mut self, key: Key) -> Option<Box<Message>> {
        let msg = self.remove_visible(key)?;
        self.forget(&msg);
        Some(msg)
    }

    /// Locks a visible message to a transaction (`None` as for [`State::take`]).
    pub(crate) fn lock(&mut self, key: Key, tx: TxId) -> Option<LookupId> {
        self.lock_key(key, Owner::Tx(tx))
    }

    /// Reads a locked message.
    pub(crate) fn locked_message(&self, lookup: LookupId) -> Option<&Message> {
        self.locked.get(&lookup).map(|l| &*l.msg)
    }

    /// Removes a locked message for good (its transaction committed, or its receiver picked it up).
    pub(crate) fn remove_locked(&mut self, lookup: LookupId) -> Option<Box<Message>> {
        let locked = self.locked.remove(&lookup)?;
        self.forget(&locked.msg);
        Some(locked.msg)
    }

    /// Puts a locked message back at its original position (abort, or a cancelled receive) and
    /// hands it on if someone waits. `aborted` counts a transaction abort (`PROPID_M_ABORT_COUNT`).
    /// Returns the message instead if the queue was deleted meanwhile: it has nowhere to go back.
    pub(crate) fn unlock(&mut self, lookup: LookupId, aborted: bool) -> Option<Message> {
        let gone = self.restore(lookup, aborted);
        self.dispatch();
        gone
    }

    /// [`State::unlock`] without the hand-off: an abort restores all its messages first and then
    /// dispatches once, so a waiting receiver gets the head of the queue, not the last restored.
    pub(crate) fn restore(&mut self, lookup: LookupId, aborted: bool) -> Option<Message> {
        let mut locked = self.locked.remove(&lookup)?;
        if aborted {
            locked.msg.abort_count = locked.msg.abort_count.saturating_add(1);
        }
        if self.closed {
            self.forget(&locked.msg);
            return Some(*locked.msg);
        }
        self.insert_visible(locked.key, locked.msg);
        None
    }

    /// Removes every visible message (deletion); locked messages stay with their transactions.
    /// Cold messages are read back: all of them are in memory at once.
    pub(crate) fn take_all_visible(&mut self) -> Vec<Message> {
        let visible = std::mem::take(&mut self.visible);
        self.rank_of.clear();
        self.by_correlation.clear();
        self.expiry.clear();
        let mut msgs: Vec<Message> = visible.into_values().map(|m| *m).collect();
        for m in &msgs {
            self.forget(m);
        }
        let cold = self.cold.take_all();
        for batch in cold.chunks(REFILL_COUNT) {
            for m in self.read_cold(batch) {
                self.bytes -= footprint(&m);
                msgs.push(*m);
            }
        }
        msgs
    }

    /// Removes up to `max` visible messages with lookup ids up to `last`, in queue order (a
    /// purge, a batch at a time, so that a long queue is never in memory at once).
    pub(crate) fn take_first(&mut self, max: usize, last: LookupId) -> Vec<Message> {
        let mut out = Vec::new();
        let mut at = self.first().map(|(k, _)| k);
        while let Some(key) = at {
            if out.len() >= max {
                break;
            }
            if key.lookup <= last {
                if let Some(m) = self.take(key) {
                    out.push(*m);
                }
            }
            at = self.after(key);
        }
        out
    }

    /// Moves visible messages whose time-to-be-received has passed to the expired list. Reads the
    /// clock only when some message can expire.
    pub(crate) fn expire(&mut self, now: impl FnOnce() -> Timestamp) {
        if self.expiry.is_empty() {
            return;
        }
        let now = now();
        while let Some(&(deadline, lookup)) = self.expiry.first() {
            if deadline > now {
                break;
            }
            self.expiry.pop_first();
            if let Some(key) = self.key_of(lookup) {
                if let Some(msg) = self.take(key) {
                    self.expired.push(*msg);
                }
            }
        }
    }

    /// The earliest time-to-be-received deadline among visible messages.
    pub(crate) fn next_expiry(&self) -> Option<Timestamp> {
        self.expiry.first().map(|&(t, _)| t)
    }

    /// Takes the messages found expired since the last call (no allocation when there are none).
    pub(crate) fn drain_expired(&mut self) -> Vec<Message> {
        if self.expired.is_empty() {
            return Vec::new();
        }
        std::mem::take(&mut self.expired)
    }

    /// Every visible message whose log record is below `bound`, for compaction to rewrite; the
    /// LSN is bookkeeping outside the indexes, so callers may change it. Held messages are left
    /// alone: a prepared transaction's record may already hold their removal, and a rewrite
    /// logged after it would bring them back once that record is compacted away.
    pub(crate) fn logged_before(&mut self, bound: u64) -> impl Iterator<Item = &mut Message> {
        self.visible
            .values_mut()
            .map(|m| &mut **m)
            .filter(move |m| m.lsn != 0 && m.lsn < bound)
    }

    /// The cold messages whose records are below `bound`, for compaction to read back and
    /// rewrite; [`State::relocated`] then records their new LSN.
    pub(crate) fn cold_before(&self, bound: u64) -> Vec<(u8, Entry)> {
        self.cold.logged_before(bound)
    }

    /// A cold message's record was rewritten at `lsn`.
    pub(crate) fn relocated(&mut self, rank: u8, lookup: LookupId, lsn: Lsn) {
        self.cold.set_lsn(rank, lookup, lsn);
    }

    /// Reads cold messages back without keeping them (compaction, scans, deletion).
    #[allow(clippy::vec_box)] // boxed as the store's B-tree keeps them
    pub(crate) fn read_cold(&self, entries: &[(u8, Entry)]) -> Vec<Box<Message>> {
        let wanted: Vec<(Lsn, LookupId)> = entries.iter().map(|(_, e)| (e.lsn, e.lookup)).collect();
        self.load(&wanted, u64::MAX)
    }

    /// Every in-memory visible message in queue order.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn iter_visible(&self) -> impl Iterator<Item = &Message> {
        self.visible.values().map(|m| &**m)
    }

    /// Every visible message in queue order, cold ones read back (tests and management).
    pub(crate) fn visible_messages(&self) -> Vec<Message> {
        let mut out: Vec<(Key, Message)> = self
            .visible
            .iter()
            .map(|(k, m)| (*k, (**m).clone()))
            .collect();
        let cold: Vec<(u8, Entry)> = self.cold.iter().collect();
        for batch in cold.chunks(REFILL_COUNT) {
            for m in self.read_cold(batch) {
                out.push((Key::new(m.priority, m.lookup_id), *m));
            }
        }
        out.sort_by_key(|(k, _)| *k);
        out.into_iter().map(|(_, m)| m).collect()
    }

    fn new_waiter(&mut self) -> WaiterId {
        self.next_waiter += 1;
        self.next_waiter
    }

    /// One step of a receive that may wait. With `slot` empty, takes the first visible message or
    /// registers a waiter; with `slot` holding a registration, picks up a hand-off or refreshes the
    /// wake handle. Ready carries the lookup id of a message now locked to `tx` (or in flight).
    pub(crate) fn poll_take(
        &mut self,
        slot: &mut Option<WaiterId>,
        tx: Option<TxId>,
        wake: impl FnOnce() -> Wake,
    ) -> Poll<LookupId> {
        if let Some(id) = *slot {
            if let Some(lookup) = self.handed.remove(&id) {
                *slot = None;
                return Poll::Ready(lookup);
            }
        }
        if let Some((key, _)) = self.first() {
            // Only reachable with no registration of ours queued: a queued taker implies nothing
            // is visible (see the module comment).
            debug_assert!(slot.is_none_or(|id| !self.takers.iter().any(|t| t.id == id)));
            *slot = None;
            let owner = match tx {
                Some(tx) => Owner::Tx(tx),
                None => Owner::InFlight(0),
            };
            let lookup = self
                .lock_key(key, owner)
                .expect("the first visible message is in memory");
            return Poll::Ready(lookup);
        }
        match *slot {
            Some(id) => {
                if let Some(t) = self.takers.iter_mut().find(|t| t.id == id) {
                    if let Wake::Task(_) = t.wake {
                        t.wake = wake();
                    }
                }
            }
            None => {
                let id = self.new_waiter();
                let wake = wake();
                let parked = matches!(wake, Wake::Task(_));
                self.takers.push_back(Taker {
                    id,
                    tx,
                    wake,
                    parked,
                });
                *slot = Some(id);
            }
        }
        Poll::Pending
    }

    /// Records that the thread behind receive registration `id` is about to park, so a hand-off
    /// must notify it.
    fn park(&mut self, id: WaiterId) {
        if let Some(t) = self.takers.iter_mut().find(|t| t.id == id) {
            t.parked = true;
        }
    }

    /// Withdraws a receive registration. Returns a message already handed to it, which the caller
    /// must either keep or [`unlock`](State::unlock).
    pub(crate) fn cancel_take(&mut self, slot: &mut Option<WaiterId>) -> Option<LookupId> {
        let id = slot.take()?;
        if let Some(lookup) = self.handed.remove(&id) {
            return Some(lookup);
        }
        self.takers.retain(|t| t.id != id);
        None
    }

    /// Registers (or refreshes) a watcher to be woken on the next arrival.
    pub(crate) fn watch(&mut self, slot: &mut Option<WaiterId>, wake: Wake) {
        if let Some(id) = *slot {
            match self.watchers.iter_mut().find(|w| w.id == id) {
                Some(w) => w.wake = wake,
                // Woken and removed by an arrival that did not satisfy it: register again under
                // the same id, which its deadline was armed for.
                None => self.watchers.push(Watcher { id, wake }),
            }
            return;
        }
        let id = self.new_waiter();
        self.watchers.push(Watcher { id, wake });
        *slot = Some(id);
    }

    /// Withdraws a watcher registration.
    pub(crate) fn unwatch(&mut self, slot: &mut Option<WaiterId>) {
        if let Some(id) = slot.take() {
            self.watchers.retain(|w| w.id != id);
        }
    }

    /// Wakes one waiter, whatever it waits for, so it re-checks its deadline.
    pub(crate) fn wake_waiter(&mut self, id: WaiterId) {
        if let Some(t) = self.takers.iter().find(|t| t.id == id) {
            self.pending.push(t.wake.clone());
        }
        if let Some(w) = self.watchers.iter().find(|w| w.id == id) {
            self.pending.push(w.wake.clone());
        }
    }

    /// Closes the queue: every waiter wakes and gives up. Returns every message, locked or not.
    ///
    /// Messages held by transactions stay with them: commit consumes them as usual, abort gets
    /// them back from [`State::restore`] to dead-letter. Messages handed to waiting receivers that
    /// had not picked them up are returned with the rest; those receivers fail with
    /// `MQ_ERROR_QUEUE_DELETED`.
    fn close_state(&mut self) -> Vec<Message> {
        self.closed = true;
        let takers = self.takers.drain(..).map(|t| t.wake);
        self.pending.extend(takers);
        let watchers = self.watchers.drain(..).map(|w| w.wake);
        self.pending.extend(watchers);
        let mut msgs = self.take_all_visible();
        // Hand-offs not picked up yet belong to no transaction's records, whatever their owner
        // says; the waiters will fail, so these messages are reported with the rest.
        let handed: Vec<LookupId> = self.handed.drain().map(|(_, lookup)| lookup).collect();
        let in_flight: Vec<LookupId> = self
            .locked
            .iter()
            .filter(|(_, l)| matches!(l.owner, Owner::InFlight(_)))
            .map(|(&lookup, _)| lookup)
            .chain(handed)
            .collect();
        for lookup in in_flight {
            if let Some(msg) = self.remove_locked(lookup) {
                msgs.push(*msg);
            }
        }
        msgs
    }

    /// Whether anything waits on this store (a subqueue is only dropped when nothing does).
    pub(crate) fn has_waiters(&self) -> bool {
        !self.takers.is_empty() || !self.watchers.is_empty() || !self.handed.is_empty()
    }

    /// How many receivers, peekers and cursors are registered as waiting for a message.
    pub(crate) fn waiting(&self) -> usize {
        self.takers.len() + self.watchers.len()
    }
}

/// The producers' side of a queue: messages sent but not yet absorbed into [`State`].
#[derive(Debug, Default)]
struct Inbox {
    /// The queue was deleted: sends are refused and handed back.
    closed: bool,
    /// Sent messages in arrival order, lookup ids assigned.
    #[allow(clippy::vec_box)] // the boxes move into the B-tree as they are, allocated unlocked
    msgs: Vec<Box<Message>>,
    /// The last lookup id handed out; never reused. Assigned only under this lock, so ids follow
    /// arrival order and no message with a smaller id can hide here while a larger one is handed
    /// to a receiver.
    last_lookup: LookupId,
    /// Set while someone waits on the queue: producers must then publish under the state lock,
    /// where hand-offs and wake-ups happen. Read and written only under this lock.
    slow: bool,
}

/// One queue: the ordered state behind one mutex, and the producers' inbox behind another.
///
/// A non-transactional send takes only the inbox lock (a push), so producers and consumers do not
/// fight over the big structure; whoever next locks the state absorbs the inbox first, so every
/// reader sees every message sent before it locked.
#[derive(Debug)]
pub(crate) struct Store {
    state: Mutex<State>,
    inbox: Mutex<Inbox>,
    /// How the log names this store.
    pub(crate) id: StoreRef,
}

/// Why a wait ended without a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitError {
    /// The deadline passed.
    Timeout,
    /// The queue was deleted.
    Closed,
}

/// The deadline side of a wait: whether it has passed, and how to be woken when it does.
pub(crate) trait Deadline {
    /// Whether the deadline has passed.
    fn passed(&self) -> bool;
    /// Arranges for `waiter` of `store` to be woken at the deadline. Called once per wait.
    fn arm(&self, store: &Arc<Store>, waiter: WaiterId);
}

/// Why a wait must end now without a message, if it must.
fn ended(state: &State, deadline: &dyn Deadline) -> Option<WaitError> {
    if state.closed {
        Some(WaitError::Closed)
    } else if deadline.passed() {
        Some(WaitError::Timeout)
    } else {
        None
    }
}

/// The waiter to arm a deadline for, the first time a wait has registered one.
fn arm_once(armed: &mut bool, slot: Option<WaiterId>) -> Option<WaiterId> {
    if *armed {
        return None;
    }
    let id = slot?;
    *armed = true;
    Some(id)
}

/// A deadline that never comes (for the loom models).
#[cfg(all(test, loom))]
pub(crate) struct Never;

#[cfg(all(test, loom))]
impl Deadline for Never {
    fn passed(&self) -> bool {
        false
    }
    fn arm(&self, _store: &Arc<Store>, _waiter: WaiterId) {}
}

/// The locked state of a store. Wake-ups decided while it is held are delivered when it is
/// dropped, after the mutex is released, so the woken thread does not wake into a held lock.
pub(crate) struct Guard<'a> {
    inner: Option<MutexGuard<'a, State>>,
    store: &'a Store,
}

impl Deref for Guard<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        self.inner
            .as_ref()
            .expect("a guard holds its lock until dropped")
    }
}

impl DerefMut for Guard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        self.inner
            .as_mut()
            .expect("a guard holds its lock until dropped")
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if self.inner.is_some() {
            self.sync();
        }
        if let Some(mut state) = self.inner.take() {
            let pending = std::mem::take(&mut state.pending);
            drop(state);
            for w in pending {
                w.wake();
            }
        }
    }
}

impl Guard<'_> {
    /// Appends `msg` in queue order with the next lookup id, and hands it to a waiter if one
    /// waits. Hot callers box the message before taking the lock, so no allocation happens
    /// under it.
    ///
    /// A deleted queue takes nothing: the message comes back as the error, for the caller to
    /// refuse or dead-letter.
    pub(crate) fn publish(
        &mut self,
        msg: impl Into<Box<Message>>,
    ) -> Result<LookupId, Box<Message>> {
        let mut msg = msg.into();
        if self.closed {
            return Err(msg);
        }
        let lookup = {
            let mut inbox = self.store.inbox();
            self.swap_inbox(&mut inbox);
            inbox.last_lookup += 1;
            inbox.last_lookup
        };
        self.absorb();
        msg.lookup_id = lookup;
        self.insert_arrived(msg, true);
        self.dispatch();
        Ok(lookup)
    }

    /// Inserts a message that already has its lookup id: moved in from a sibling (sub)queue (ids
    /// are handed out by the queue itself, so they stay unique and are never reused across its
    /// subqueues), reserved with [`Store::reserve_lookup`] before it was logged, or recovered.
    ///
    /// With `cool`, the message is as its record in this store's log says (a logged send), so it
    /// may be kept only as its log position; moved messages are not (their record names the
    /// queue they came from, and an older move count).
    pub(crate) fn insert(&mut self, msg: Box<Message>, cool: bool) -> Result<(), Box<Message>> {
        if self.closed {
            return Err(msg);
        }
        self.absorb();
        self.insert_arrived(msg, cool);
        self.dispatch();
        Ok(())
    }

    /// Closes the queue for good (deletion): refuses further sends and returns every message
    /// that is not held by a transaction. Every waiter wakes and gives up.
    pub(crate) fn close(&mut self) -> Vec<Message> {
        {
            let mut inbox = self.store.inbox();
            inbox.closed = true;
            self.swap_inbox(&mut inbox);
        }
        self.absorb();
        self.close_state()
    }

    /// Moves the inbox's messages into the spare vector (under both locks, held by the caller).
    fn swap_inbox(&mut self, inbox: &mut Inbox) {
        if !inbox.msgs.is_empty() {
            std::mem::swap(&mut inbox.msgs, &mut self.spare);
        }
    }

    /// Inserts what [`Guard::swap_inbox`] took, in arrival order, and hands it out if anyone waits.
    fn absorb(&mut self) -> bool {
        if self.spare.is_empty() {
            return false;
        }
        let mut msgs = std::mem::take(&mut self.spare);
        for m in msgs.drain(..) {
            self.insert_arrived(m, true);
        }
        self.spare = msgs;
        self.dispatch();
        true
    }

    /// Absorbs the inbox (so the state holds every message sent so far) and tells producers
    /// whether they must take the slow path. Returns whether anything arrived.
    fn sync(&mut self) -> bool {
        let want = self.wants_slow();
        {
            let mut inbox = self.store.inbox();
            if inbox.msgs.is_empty() && inbox.slow == want {
                return false;
            }
            self.swap_inbox(&mut inbox);
            inbox.slow = want;
        }
        self.absorb()
    }

    /// Parks on `cv` (releasing the lock) until notified. Returns at once instead if bringing the
    /// inbox in changed anything (a hand-off or wake-up may now be due to this very waiter). The
    /// waiting loops register and then release the lock once to arm their deadline, which already
    /// turns producers to the slow path, so this is a second line of defence.
    /// Wake-ups still pending are delivered first, under the lock: this is the slow path.
    fn wait(&mut self, cv: &Condvar) {
        if self.sync() {
            return;
        }
        let mut state = self
            .inner
            .take()
            .expect("a guard holds its lock until dropped");
        for w in std::mem::take(&mut state.pending) {
            w.wake();
        }
        self.inner = Some(
            cv.wait(state)
                .expect("queue state poisoned by an earlier panic"),
        );
    }
}

/// How many times a waiting thread looks again before it parks.
#[cfg(not(all(test, loom)))]
const SPINS: u32 = 12;
#[cfg(all(test, loom))]
const SPINS: u32 = 1;

/// Pauses between two looks of a waiting thread: a short busy spin first, then yielding the CPU.
fn backoff(step: u32) {
    #[cfg(not(all(test, loom)))]
    if step < 6 {
        for _ in 0..(1u32 << step) {
            std::hint::spin_loop();
        }
        return;
    }
    let _ = step;
    yield_now();
}

impl Store {
    /// An empty store whose messages never expire (journals, dead-letter queues).
    pub(crate) fn new(id: StoreRef) -> Arc<Store> {
        Arc::new(Store {
            state: Mutex::default(),
            inbox: Mutex::default(),
            id,
        })
    }

    /// An empty store for a user queue, where time-to-be-received applies.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn new_expiring(id: StoreRef) -> Arc<Store> {
        let store = Store::new(id);
        store.lock().expires = true;
        store
    }

    /// An empty store; with `cold`, messages past the cache budget are read back from its log.
    pub(crate) fn linked(
        id: StoreRef,
        expires: bool,
        cold: Option<&Arc<dyn super::cold::ColdSource>>,
    ) -> Arc<Store> {
        let store = Store::new(id.clone());
        {
            let mut s = store.lock();
            s.expires = expires;
            if let Some(source) = cold {
                s.set_link(ColdLink {
                    source: source.clone(),
                    at: id,
                });
            }
        }
        store
    }

    /// Hands out the next lookup id for a message that will be inserted later with
    /// [`Guard::insert`] (after its send is logged).
    pub(crate) fn reserve_lookup(&self) -> LookupId {
        let mut inbox = self.inbox();
        inbox.last_lookup += 1;
        inbox.last_lookup
    }

    /// The last lookup id handed out.
    pub(crate) fn last_lookup(&self) -> LookupId {
        self.inbox().last_lookup
    }

    /// Recovery: lookup ids continue after `last`.
    pub(crate) fn continue_after(&self, last: LookupId) {
        let mut inbox = self.inbox();
        inbox.last_lookup = inbox.last_lookup.max(last);
    }

    /// Locks the queue state, with every message sent so far in it.
    pub(crate) fn lock(&self) -> Guard<'_> {
        // A panic while holding the lock can only come from an engine bug; propagate it rather
        // than carry on with state that may be half-updated.
        let mut guard = Guard {
            inner: Some(
                self.state
                    .lock()
                    .expect("queue state poisoned by an earlier panic"),
            ),
            store: self,
        };
        guard.sync();
        guard.retry_stalled();
        guard
    }

    fn inbox(&self) -> MutexGuard<'_, Inbox> {
        self.inbox
            .lock()
            .expect("queue inbox poisoned by an earlier panic")
    }

    /// Sends without taking the state lock when nobody waits: a push onto the inbox. When someone
    /// waits, publishes under the state lock so the hand-off or wake-up happens. Returns the
    /// message's lookup id.
    pub(crate) fn send(&self, mut msg: Box<Message>) -> Result<LookupId, Box<Message>> {
        {
            let mut inbox = self.inbox();
            if inbox.closed {
                return Err(msg);
            }
            if !inbox.slow {
                inbox.last_lookup += 1;
                msg.lookup_id = inbox.last_lookup;
                let lookup = msg.lookup_id;
                inbox.msgs.push(msg);
                return Ok(lookup);
            }
        }
        self.lock().publish(msg)
    }

    /// Blocks until a message is locked to `tx` (or handed over, for `None`), the deadline passes,
    /// or the queue closes. On success the caller owns the lock on the returned lookup id.
    pub(crate) fn take_blocking(
        self: &Arc<Self>,
        tx: Option<TxId>,
        deadline: &dyn Deadline,
    ) -> Result<LookupId, WaitError> {
        let mut state = self.lock();
        // Look again a few times before registering: a producer running beside us keeps taking
        // its lock-light path meanwhile, and most waits end here without a park.
        for step in 0..SPINS {
            if state.first().is_some() || state.closed || deadline.passed() {
                break;
            }
            drop(state);
            backoff(step);
            state = self.lock();
        }
        let cv = Arc::new(Condvar::new());
        let mut slot = None;
        let mut armed = false;
        loop {
            if let Poll::Ready(lookup) = state.poll_take(&mut slot, tx, || Wake::Thread(cv.clone()))
            {
                return Ok(lookup);
            }
            if let Some(why) = ended(&state, deadline) {
                if let Some(lookup) = state.cancel_take(&mut slot) {
                    return Ok(lookup); // handed over just as we gave up: keep it
                }
                return Err(why);
            }
            if let Some(id) = arm_once(&mut armed, slot) {
                drop(state);
                deadline.arm(self, id);
                state = self.lock();
                continue;
            }
            if let Some(id) = slot {
                state.park(id);
            }
            state.wait(&cv);
        }
    }

    /// Blocks until `probe` finds something, the deadline passes, or the queue closes. `probe` runs
    /// under the lock, first at once and then after every arrival.
    pub(crate) fn watch_blocking<R>(
        self: &Arc<Self>,
        deadline: &dyn Deadline,
        mut probe: impl FnMut(&mut State) -> Option<R>,
    ) -> Result<R, WaitError> {
        let cv = Arc::new(Condvar::new());
        let mut slot = None;
        let mut armed = false;
        let mut state = self.lock();
        loop {
            if let Some(r) = probe(&mut state) {
                state.unwatch(&mut slot);
                return Ok(r);
            }
            if let Some(why) = ended(&state, deadline) {
                state.unwatch(&mut slot);
                return Err(why);
            }
            state.watch(&mut slot, Wake::Thread(cv.clone()));
            if let Some(id) = arm_once(&mut armed, slot) {
                drop(state);
                deadline.arm(self, id);
                state = self.lock();
                continue;
            }
            state.wait(&cv);
        }
    }

    /// Wakes one waiter so it re-checks its deadline (called by the timer).
    pub(crate) fn wake_waiter(&self, id: WaiterId) {
        self.lock().wake_waiter(id);
    }
}

/// An async receive: resolves to a lookup id locked for the caller.
///
/// Cancellation-safe: dropping it before completion withdraws the registration, and a message
/// already handed to it goes back to its original position (and to the next waiter).
pub(crate) struct TakeFuture<D: Deadline> {
    store: Arc<Store>,
    tx: Option<TxId>,
    deadline: D,
    slot: Option<WaiterId>,
    armed: bool,
    done: bool,
}

impl<D: Deadline> TakeFuture<D> {
    pub(crate) fn new(store: Arc<Store>, tx: Option<TxId>, deadline: D) -> Self {
        TakeFuture {
            store,
            tx,
            deadline,
            slot: None,
            armed: false,
            done: false,
        }
    }
}

impl<D: Deadline + Unpin> Future for TakeFuture<D> {
    type Output = Result<LookupId, WaitError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        assert!(!this.done, "TakeFuture polled after completion");
        let arm_id = {
            let mut state = this.store.lock();
            if let Poll::Ready(lookup) =
                state.poll_take(&mut this.slot, this.tx, || Wake::Task(cx.waker().clone()))
            {
                this.done = true;
                return Poll::Ready(Ok(lookup));
            }
            if let Some(why) = ended(&state, &this.deadline) {
                this.done = true;
                if let Some(lookup) = state.cancel_take(&mut this.slot) {
                    return Poll::Ready(Ok(lookup));
                }
                return Poll::Ready(Err(why));
            }
            arm_once(&mut this.armed, this.slot)
        };
        if let Some(id) = arm_id {
            this.deadline.arm(&this.store, id);
        }
        Poll::Pending
    }
}

impl<D: Deadline> Drop for TakeFuture<D> {
    fn drop(&mut self) {
        if self.done || self.slot.is_none() {
            return;
        }
        let mut state = self.store.lock();
        if let Some(lookup) = state.cancel_take(&mut self.slot) {
            // A queue deleted meanwhile already reported its messages; nothing to give back.
            let _ = state.unlock(lookup, false);
        }
    }
}

/// An async wait for `probe` to find something (peek, cursor moves).
pub(crate) struct WatchFuture<D: Deadline, F> {
    store: Arc<Store>,
    deadline: D,
    probe: F,
    slot: Option<WaiterId>,
    armed: bool,
}

impl<D: Deadline, F> WatchFuture<D, F> {
    pub(crate) fn new(store: Arc<Store>, deadline: D, probe: F) -> Self {
        WatchFuture {
            store,
            deadline,
            probe,
            slot: None,
            armed: false,
        }
    }
}

impl<D, F, R> Future for WatchFuture<D, F>
where
    D: Deadline + Unpin,
    F: FnMut(&mut State) -> Option<R> + Unpin,
{
    type Output = Result<R, WaitError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let arm_id = {
            let mut state = this.store.lock();
            if let Some(r) = (this.probe)(&mut state) {
                state.unwatch(&mut this.slot);
                return Poll::Ready(Ok(r));
            }
            if let Some(why) = ended(&state, &this.deadline) {
                state.unwatch(&mut this.slot);
                return Poll::Ready(Err(why));
            }
            state.watch(&mut this.slot, Wake::Task(cx.waker().clone()));
            arm_once(&mut this.armed, this.slot)
        };
        if let Some(id) = arm_id {
            this.deadline.arm(&this.store, id);
        }
        Poll::Pending
    }
}

impl<D: Deadline, F> Drop for WatchFuture<D, F> {
    fn drop(&mut self) {
        if self.slot.is_some() {
            self.store.lock().unwatch(&mut self.slot);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::message::Message;

    fn msg(priority: u8, body: &str) -> Message {
        let mut m = Message::new(body.as_bytes().to_vec());
        m.priority = priority;
        m
    }

    fn bodies(state: &State) -> Vec<String> {
        state
            .iter_visible()
            .map(|m| String::from_utf8(m.body.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn order_is_priority_then_arrival_and_lookup_ids_increase() {
        let store = Store::new(StoreRef::Main(1));
        let mut s = store.lock();
        let a = s.publish(msg(3, "a")).unwrap();
        let b = s.publish(msg(7, "b")).unwrap();
        let c = s.publish(msg(3, "c")).unwrap();
        let d = s.publish(msg(0, "d")).unwrap();
        assert!(a < b && b < c && c < d);
        assert_eq!(bodies(&s), ["b", "a", "c", "d"]);
    }

    #[test]
    fn abort_restores_original_position_and_counts() {
        let store = Store::new(StoreRef::Main(1));
        let mut s = store.lock();
        for b in ["a", "b", "c"] {
            s.publish(msg(0, b)).unwrap();
        }
        let (key, _) = s.first().unwrap();
        let lookup = s.lock(key, 1).unwrap();
        assert_eq!(bodies(&s), ["b", "c"]);
        assert!(matches!(s.find(lookup), Found::Locked(Owner::Tx(1))));
        assert!(s.unlock(lookup, true).is_none());
        assert_eq!(bodies(&s), ["a", "b", "c"]);
        assert_eq!(s.first().unwrap().1.abort_count, 1);
    }

    #[test]
    fn waiting_taker_gets_hand_off_and_cancel_returns_it() {
        let store = Store::new(StoreRef::Main(1));
        let mut s = store.lock();
        let mut slot = None;
        let noop = || Wake::Task(Waker::noop().clone());
        assert!(s.poll_take(&mut slot, None, noop).is_pending());
        let lookup = s.publish(msg(0, "x")).unwrap();
        assert_eq!(s.visible_len(), 0, "handed off, not visible");
        assert_eq!(s.cancel_take(&mut slot), Some(lookup));
        assert!(s.unlock(lookup, false).is_none());
        assert_eq!(bodies(&s), ["x"]);
        assert_eq!(s.first().unwrap().1.abort_count, 0);
    }

    #[test]
    fn expiry_moves_due_messages_out() {
        let store = Store::new_expiring(StoreRef::Main(1));
        let mut s = store.lock();
        let mut m = msg(0, "old");
        m.sent_time = Timestamp(1000);
        m.time_to_be_received = Some(std::time::Duration::from_secs(1));
        s.publish(m).unwrap();
        s.publish(msg(0, "new")).unwrap();
        assert_eq!(s.next_expiry(), Some(Timestamp(2000)));
        s.expire(|| Timestamp(1999));
        assert_eq!(s.len(), 2);
        s.expire(|| Timestamp(2000));
        assert_eq!(bodies(&s), ["new"]);
        assert_eq!(s.drain_expired().len(), 1);
        assert_eq!(s.bytes(), 3);
    }
}
