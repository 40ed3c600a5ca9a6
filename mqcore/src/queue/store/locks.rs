//! The two locks of a store: the producers' [`Inbox`] and the [`State`] behind [`Store`], and the
//! [`Guard`] that absorbs the inbox on lock and delivers wake-ups after unlock.
//!
//! **Invariant:** lookup ids are assigned only under the inbox lock and never reused; whoever
//! locks the state absorbs the inbox first, so every reader sees every message sent before it
//! locked. Locks are taken in the order state, then inbox (a send that takes the inbox alone
//! releases it before it locks the state).

#[cfg(not(all(test, loom)))]
use std::mem::MaybeUninit;
use std::ops::{Deref, DerefMut};

use crossbeam_utils::CachePadded;

use super::state::State;
use super::LookupId;
use crate::queue::cold::ColdLink;
// Only the mutex and the condition variables race; the `Arc` handles are plain std ones.
use crate::ids::StoreRef;
use crate::loom::sync::atomic::{AtomicU64, Ordering};
use crate::loom::sync::{Condvar, Mutex, MutexGuard};
use crate::message::Message;
use std::sync::Arc;

/// The producers' side of a queue: messages sent but not yet absorbed into [`State`].
#[derive(Debug, Default)]
pub(super) struct Inbox {
    /// The queue was deleted: sends are refused and handed back.
    closed: bool,
    /// Sent messages in arrival order, lookup ids assigned.
    #[allow(clippy::vec_box)] // the boxes move into the store as they are, allocated unlocked
    msgs: Vec<Box<Message>>,
    /// The last lookup id handed out; never reused. Assigned only under this lock, so ids follow
    /// arrival order and no message with a smaller id can hide here while a larger one is handed
    /// to a receiver.
    last_lookup: LookupId,
    /// Set while someone waits on the queue: producers must then publish under the state lock,
    /// where hand-offs and wake-ups happen. Read and written only under this lock.
    slow: bool,
}

/// Emptied boxes a store keeps for reuse (a few hundred bytes each).
#[cfg(not(all(test, loom)))]
const SPARE_BOXES: usize = 32;

/// One queue: the ordered state behind one mutex, and the producers' inbox behind another.
///
/// A non-transactional send takes only the inbox lock (a push), so producers and consumers do not
/// fight over the big structure; whoever next locks the state absorbs the inbox first, so every
/// reader sees every message sent before it locked.
#[derive(Debug)]
pub(crate) struct Store {
    state: Mutex<State>,
    ///
    /// The inbox lock, the arrival count a waiting receiver spins on and `inbox_top` change
    /// hands between CPUs on every message, so each has cache lines of its own: sharing one, a
    /// receiver's spin took the line from under a producer's lock (the unpinned 1x1 bench fell
    /// from 3.8 to 1.1 M msgs/s with both CPUs busy).
    inbox: CachePadded<Mutex<Inbox>>,
    /// Boxes of received messages, emptied, for the next sends to fill (see [`Store::boxed`]).
    #[cfg(not(all(test, loom)))]
    boxes: crossbeam_queue::ArrayQueue<Box<MaybeUninit<Message>>>,
    /// Bumped by every send and publish: a receiver about to wait spins on it rather than on
    /// the locks, which the producer it waits for needs (a hint only: the wait's correctness
    /// rests on the hand-off under the state lock).
    arrivals: CachePadded<AtomicU64>,
    /// One more than the highest priority pushed onto the inbox since it was last emptied (0:
    /// none), written under the inbox lock: a receiver whose head outranks it need not absorb
    /// the inbox to take the head ([`Store::lock_head`]).
    inbox_top: CachePadded<AtomicU64>,
    /// How the log names this store.
    pub(crate) id: StoreRef,
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
        // Only the producers' flag needs setting on the way out: while it says nobody waits,
        // what is in the inbox can wait for the next lock; while it says someone does, nothing
        // can be in it.
        if self.inner.is_some() && self.wants_slow() != self.inbox_slow {
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
        self.store.arrived();
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
        self.store.arrived();
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
            self.store.inbox_top.store(0, Ordering::Relaxed);
        }
    }

    /// The position of the queue's head: the state's first visible message, unless the inbox
    /// may hold one that comes before it (or the state has none), when the inbox is brought in
    /// first (see [`Store::lock_head`]).
    pub(crate) fn head(&mut self) -> Option<super::state::Key> {
        let top = self.store.inbox_top.load(Ordering::Relaxed);
        match self.first() {
            Some((key, m)) if top <= u64::from(m.priority) + 1 => Some(key),
            _ => {
                self.sync();
                self.first().map(|(key, _)| key)
            }
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
    ///
    /// The inbox lock, which producers need for every send, is taken only if the flag must
    /// change or the arrival count moved since the last look: a send bumps the count under the
    /// inbox lock, so an unchanged count means nothing was pushed since (a send that finished
    /// before this lock was taken is seen: its bump happened before). Locking the inbox on every
    /// lock and unlock of the state made a receiver and a producer on two CPUs queue on it.
    fn sync(&mut self) -> bool {
        let want = self.wants_slow();
        if want == self.inbox_slow && self.store.arrivals() == self.seen_arrivals {
            return false;
        }
        {
            let mut inbox = self.store.inbox();
            self.seen_arrivals = self.store.arrivals();
            self.inbox_slow = want;
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
    pub(super) fn wait(&mut self, cv: &Condvar) {
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

impl Store {
    /// An empty store whose messages never expire (journals, dead-letter queues).
    pub(crate) fn new(id: StoreRef) -> Arc<Store> {
        Arc::new(Store {
            state: Mutex::default(),
            inbox: CachePadded::new(Mutex::default()),
            #[cfg(not(all(test, loom)))]
            boxes: crossbeam_queue::ArrayQueue::new(SPARE_BOXES),
            arrivals: CachePadded::new(AtomicU64::new(0)),
            inbox_top: CachePadded::new(AtomicU64::new(0)),
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
        cold: Option<&Arc<dyn crate::queue::cold::ColdSource>>,
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

    /// The state locked, the inbox not brought in.
    fn guard(&self) -> Guard<'_> {
        // A panic while holding the lock can only come from an engine bug; propagate it rather
        // than carry on with state that may be half-updated.
        Guard {
            inner: Some(
                self.state
                    .lock()
                    .expect("queue state poisoned by an earlier panic"),
            ),
            store: self,
        }
    }

    /// Locks the queue state to take its head with [`Guard::head`], which brings the inbox in
    /// only if the state has no visible message or a message in the inbox may outrank its head.
    /// Inbox messages of the head's priority or lower come after it (their lookup ids are
    /// higher), so the head is the queue's head either way, and a consumer that keeps up takes
    /// the producers' lock once per run of messages instead of once per message. A send that
    /// finished before this lock was taken raised `inbox_top` before it finished, so it is seen.
    /// The producers' flag needs nothing here: every guard leaves it right when dropped.
    pub(crate) fn lock_head(&self) -> Guard<'_> {
        let mut guard = self.guard();
        debug_assert_eq!(guard.wants_slow(), guard.inbox_slow);
        guard.retry_stalled();
        guard
    }

    /// Locks the queue state, with every message sent so far in it.
    pub(crate) fn lock(&self) -> Guard<'_> {
        let mut guard = self.guard();
        guard.sync();
        guard.retry_stalled();
        guard
    }

    /// `msg` in a box, one a receive gave back if there is one. A producer and a consumer on
    /// two CPUs otherwise meet in the allocator at every message: the consumer frees the box
    /// into the arena the producer allocates from, and they queued on its lock
    /// (docs/performance.md, "The in-process hot path").
    pub(crate) fn boxed(&self, msg: Message) -> Box<Message> {
        #[cfg(not(all(test, loom)))]
        if let Some(b) = self.boxes.pop() {
            return Box::write(b, msg);
        }
        Box::new(msg)
    }

    /// The message out of its box, the box kept for [`Store::boxed`] while there is room. The
    /// box is kept uninitialised: emptying it by `mem::take` wrote a default message into it,
    /// and filling it dropped that default, a few hundred bytes each way for every message.
    #[cfg(not(all(test, loom)))]
    #[inline]
    pub(crate) fn unbox(&self, b: Box<Message>) -> Message {
        let raw = Box::into_raw(b);
        // Safety: `raw` is the unique pointer of a live, initialised `Box<Message>`; the read
        // moves the message out, and nothing reads it through `raw` again.
        let msg = unsafe { std::ptr::read(raw) };
        // Safety: `MaybeUninit<Message>` has the layout of `Message`, so the allocation is freed
        // (or refilled by `boxed`) with the layout it was made with, and an uninitialised
        // `MaybeUninit` is never read: its message was moved out above and is not dropped here.
        let empty = unsafe { Box::from_raw(raw.cast::<MaybeUninit<Message>>()) };
        let _ = self.boxes.push(empty);
        msg
    }

    /// The message out of its box (the loom models keep no spare boxes).
    #[cfg(all(test, loom))]
    pub(crate) fn unbox(&self, b: Box<Message>) -> Message {
        *b
    }

    fn arrived(&self) {
        self.arrivals.fetch_add(1, Ordering::Relaxed);
    }

    /// How many sends and publishes there have been (see `arrivals`).
    pub(crate) fn arrivals(&self) -> u64 {
        self.arrivals.load(Ordering::Relaxed)
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
                // Written only under the inbox lock, so a look first is as good as `fetch_max`,
                // and a run of sends at one priority leaves the line shared with the receiver
                // that reads it instead of taking it from that receiver's CPU at every send.
                let top = u64::from(msg.priority) + 1;
                if self.inbox_top.load(Ordering::Relaxed) < top {
                    self.inbox_top.store(top, Ordering::Relaxed);
                }
                inbox.msgs.push(msg);
                self.arrived();
                return Ok(lookup);
            }
        }
        self.lock().publish(msg)
    }
}
