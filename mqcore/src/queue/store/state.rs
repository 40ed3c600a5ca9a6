//! One queue's messages in order, and the indexes that find them: [`State`].
//!
//! Order is (priority descending, lookup id ascending) in [`Ranked`], a deque per priority in
//! lookup-id order, which also serves `MQReceiveMessageByLookupId`; hash indexes serve receive by
//! message id and by correlation id; an expiry index serves time-to-be-received. Messages held by a transaction or
//! an in-flight receive are locked: out of the visible set, still counted in the queue.
//!
//! **Invariant:** a visible message in memory is in `visible` and (if it has them) the
//! correlation and expiry indexes, and in none of them once it is locked or gone
//! (`insert_visible` and `remove_visible` keep them together); `by_id`, once built, holds
//! visible and locked messages, and `bytes` counts visible, locked and cold ones. A locked message keeps its
//! position and goes back to it on abort or a cancelled receive.

use std::collections::{BTreeSet, VecDeque};

use rustc_hash::FxHashMap as HashMap;

use super::handoff::{Taker, Wake, Watcher};
use super::ranked::Ranked;
use super::tiering::REFILL_COUNT;
use super::{LookupId, TxId, WaiterId};
use crate::clock::Timestamp;
use crate::message::{footprint, Message, MessageId};
use crate::queue::cold::{Cold, ColdLink, Entry};

/// Position of a message in queue order: priority descending, then lookup id (arrival) ascending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Key {
    /// `7 - priority`, so that a higher priority sorts first.
    pub(super) rank: u8,
    /// The message's lookup id.
    pub(super) lookup: LookupId,
}

impl Key {
    pub(super) fn new(priority: u8, lookup: LookupId) -> Key {
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
pub(super) struct Locked {
    /// Where it goes back to on abort.
    key: Key,
    /// Who holds it.
    pub(super) owner: Owner,
    /// The message itself.
    msg: Box<Message>,
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

/// One queue's messages and waiters. Guarded by [`Store`](super::Store)'s mutex.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Visible messages in queue order. Boxed, so that moving them moves pointers rather than
    /// whole messages.
    pub(super) visible: Ranked,
    /// Messages held by a transaction or an in-flight receive.
    pub(super) locked: HashMap<LookupId, Locked>,
    /// Message id to lookup id, for visible and locked messages; built by the first lookup by
    /// id and kept from then on. Most queues are never read by id, and keeping the index for
    /// every message was a fifth of an express send and receive (docs/performance.md).
    pub(super) by_id: Option<HashMap<MessageId, LookupId>>,
    /// Correlation id to the visible messages carrying it.
    by_correlation: HashMap<MessageId, BTreeSet<Key>>,
    /// Visible messages with a time-to-be-received, by deadline.
    expiry: BTreeSet<(Timestamp, LookupId)>,
    /// Messages found expired, for the queue manager to dead-letter.
    expired: Vec<Message>,
    /// The deadline the queue manager's timer is armed for, to expire this store's messages.
    pub(crate) expiry_armed: Option<Timestamp>,
    /// An empty vector with capacity, swapped with the inbox's so neither side reallocates.
    #[allow(clippy::vec_box)] // the boxes move into the store as they are, allocated unlocked
    pub(super) spare: Vec<Box<Message>>,
    /// Sum of body and label sizes of visible and locked messages, for the quota.
    pub(super) bytes: u64,
    /// Receivers waiting for a hand-off, first come first served.
    pub(super) takers: VecDeque<Taker>,
    /// Peekers and cursors waiting for an arrival.
    pub(super) watchers: Vec<Watcher>,
    /// Messages handed to takers that have not picked them up yet: waiter id to lookup id.
    pub(super) handed: HashMap<WaiterId, LookupId>,
    /// Source of waiter ids.
    pub(super) next_waiter: WaiterId,
    /// The queue was deleted: waiters give up with `MQ_ERROR_QUEUE_DELETED`.
    pub(super) closed: bool,
    /// Whether time-to-be-received applies here (user queues); journals and dead-letter queues
    /// keep messages until someone removes them.
    pub(super) expires: bool,
    /// Wake-ups decided under the lock, delivered by [`Guard`](super::locks::Guard) after it is
    /// released.
    pub(super) pending: Vec<Wake>,
    /// The inbox's `slow` flag as last set (only ever set under both locks).
    pub(super) inbox_slow: bool,
    /// The store's arrival count when the inbox was last looked at, under its lock.
    pub(super) seen_arrivals: u64,
    /// Visible messages held only as log positions (see `queue/cold.rs`): not in `visible`,
    /// `rank_of`, `by_id` or `by_correlation`, but counted in `bytes`.
    pub(super) cold: Cold,
    /// Where cold messages are read back from; `None` keeps everything in memory.
    pub(super) link: Option<ColdLink>,
    /// Ranks whose refill could not read their first message back (bit `rank`): retried each
    /// time the store is locked.
    pub(super) stalled: u8,
}

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

    /// Number of messages locked: to a transaction that received them, or to a receive in
    /// flight. Counted in [`State::len`], invisible to other receivers.
    pub(crate) fn locked_len(&self) -> usize {
        self.locked.len()
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

    pub(super) fn insert_visible(&mut self, key: Key, msg: Box<Message>) {
        if let Some(c) = msg.correlation_id {
            self.by_correlation.entry(c).or_default().insert(key);
        }
        if let Some(deadline) = msg.expires_at().filter(|_| self.expires) {
            self.expiry.insert((deadline, key.lookup));
        }
        self.visible.insert(key, msg);
    }

    fn remove_visible(&mut self, key: Key) -> Option<Box<Message>> {
        let msg = match self.visible.remove(key) {
            Some(m) => m,
            None if self.promote(key) => self.visible.remove(key)?,
            None => return None,
        };
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
        if let Some(by_id) = &mut self.by_id {
            by_id.remove(&msg.id);
        }
        if let Some(link) = &self.link {
            if msg.lsn != 0 {
                link.source.cache().sub(footprint(msg));
            }
        }
    }

    /// Locks the visible message at `key`; `None` if there is none, or it is cold and cannot be
    /// read back.
    pub(super) fn lock_key(&mut self, key: Key, owner: Owner) -> Option<LookupId> {
        let msg = self.remove_visible(key)?;
        self.locked.insert(key.lookup, Locked { key, owner, msg });
        Some(key.lookup)
    }

    /// The first visible message in queue order.
    pub(crate) fn first(&self) -> Option<(Key, &Message)> {
        self.visible.first()
    }

    /// The position of the first visible message after `key` in queue order.
    pub(crate) fn after(&self, key: Key) -> Option<Key> {
        let hot = self.visible.after(key);
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
        let hot = self.visible.next_by_lookup(None);
        let cold = self.cold.next_by_lookup(None);
        lowest(hot, cold)
    }

    /// The visible message with the highest lookup id.
    pub(crate) fn last_by_lookup(&self) -> Option<Key> {
        let hot = self.visible.prev_by_lookup(None);
        let cold = self.cold.prev_by_lookup(None);
        highest(hot, cold)
    }

    /// The visible message with the lowest lookup id above `lookup` (which need not exist).
    pub(crate) fn next_by_lookup(&self, lookup: LookupId) -> Option<Key> {
        let hot = self.visible.next_by_lookup(Some(lookup));
        lowest(hot, self.cold.next_by_lookup(Some(lookup)))
    }

    /// The visible message with the highest lookup id below `lookup` (which need not exist).
    pub(crate) fn prev_by_lookup(&self, lookup: LookupId) -> Option<Key> {
        let hot = self.visible.prev_by_lookup(Some(lookup));
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
        if let Some(rank) = self.visible.rank_of(lookup) {
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
    pub(crate) fn find_by_id(&mut self, id: &MessageId) -> Found {
        let by_id = self.by_id.get_or_insert_with(|| {
            let visible = self.visible.values();
            let locked = self.locked.values().map(|l| &*l.msg);
            visible.chain(locked).map(|m| (m.id, m.lookup_id)).collect()
        });
        if let Some(&lookup) = by_id.get(id) {
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
        let visible = self.visible.take_all();
        self.by_correlation.clear();
        self.expiry.clear();
        let mut msgs: Vec<Message> = visible.into_iter().map(|m| *m).collect();
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
            .filter(move |m| m.lsn != 0 && m.lsn < bound)
    }

    /// Every in-memory visible message in queue order (cold ones are not read back).
    pub(crate) fn iter_visible(&self) -> impl Iterator<Item = &Message> {
        self.visible.values()
    }

    /// Every visible message in queue order, cold ones read back (tests and management).
    pub(crate) fn visible_messages(&self) -> Vec<Message> {
        let mut out: Vec<(Key, Message)> =
            self.visible.iter().map(|(k, m)| (k, m.clone())).collect();
        let cold: Vec<(u8, Entry)> = self.cold.iter().collect();
        for batch in cold.chunks(REFILL_COUNT) {
            for m in self.read_cold(batch) {
                out.push((Key::new(m.priority, m.lookup_id), *m));
            }
        }
        out.sort_by_key(|(k, _)| *k);
        out.into_iter().map(|(_, m)| m).collect()
    }
}
