//! Waiting for a message or an arrival: blocking waits on [`Store`], the async [`TakeFuture`] and
//! [`WatchFuture`], their [`Deadline`], and the spins and backoff before a thread parks.
//!
//! **Invariant:** a wait ends with a message, a timeout or a deleted queue, and a cancelled
//! receive never loses a message: a message handed over just as the wait gives up is kept, and a
//! dropped [`TakeFuture`] puts back what was handed to it. A deadline is armed once per wait.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::handoff::Wake;
use super::locks::Store;
use super::state::State;
use super::{LookupId, TxId, WaiterId};
// Only the mutex and the condition variables race; the `Arc` handles are plain std ones.
use crate::loom::sync::Condvar;
use crate::loom::thread::yield_now;
use std::sync::Arc;

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
pub(super) fn ended(state: &State, deadline: &dyn Deadline) -> Option<WaitError> {
    if state.closed {
        Some(WaitError::Closed)
    } else if deadline.passed() {
        Some(WaitError::Timeout)
    } else {
        None
    }
}

/// The waiter to arm a deadline for, the first time a wait has registered one.
pub(super) fn arm_once(armed: &mut bool, slot: Option<WaiterId>) -> Option<WaiterId> {
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

/// How many times a waiting thread looks again before it parks.
#[cfg(not(all(test, loom)))]
pub(super) const SPINS: u32 = 12;
#[cfg(all(test, loom))]
pub(super) const SPINS: u32 = 1;

/// Pauses between two looks of a waiting thread: a short busy spin first, then yielding the CPU.
pub(super) fn backoff(step: u32) {
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
    /// Blocks until a message is locked to `tx` (or handed over, for `None`), the deadline passes,
    /// or the queue closes. On success the caller owns the lock on the returned lookup id.
    pub(crate) fn take_blocking(
        self: &Arc<Self>,
        tx: Option<TxId>,
        deadline: &dyn Deadline,
    ) -> Result<LookupId, WaitError> {
        let mut seen = self.arrivals();
        let mut state = self.lock();
        // Look again a few times before registering: a producer running beside us keeps taking
        // its lock-light path meanwhile, and most waits end here without a park. Between looks
        // only the arrival count is read, so the spin leaves the producer's locks alone.
        let mut step = 0;
        while step < SPINS && state.first().is_none() && !state.closed && !deadline.passed() {
            drop(state);
            while step < SPINS {
                backoff(step);
                step += 1;
                let now = self.arrivals();
                if now != seen {
                    seen = now;
                    break;
                }
            }
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
