//! Hand-off to waiters: receivers ([`Taker`]) are handed a message under the lock, peekers and
//! cursors ([`Watcher`]) are woken to look again, and [`Wake`] is how either is woken.
//!
//! **Invariant:** if a receiver is registered as waiting, no message is visible. Every path that
//! makes a message visible ends in [`State::dispatch`], which hands messages to waiters until one
//! side runs out.
//!
//! **Invariant:** a cancelled receive never loses a message: [`State::cancel_take`] returns a
//! message already handed to it, which the receiver keeps or puts back at its original position
//! (and so on to the next waiter).

use std::task::{Poll, Waker};

use super::state::{Owner, State};
use super::{LookupId, TxId, WaiterId};
// Only the mutex and the condition variables race; the `Arc` handles are plain std ones.
use crate::loom::sync::Condvar;
use crate::message::Message;
use std::sync::Arc;

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
    pub(super) fn wake(self) {
        match self {
            Wake::Thread(cv) => cv.notify_one(),
            Wake::Task(w) => w.wake(),
        }
    }
}

/// A receiver waiting for a message to be handed to it.
#[derive(Debug)]
pub(super) struct Taker {
    id: WaiterId,
    /// The transaction to lock the message to; `None` for a non-transactional receive.
    tx: Option<TxId>,
    wake: Wake,
    /// Whether the waiting thread has parked (tasks count as parked: they must be woken).
    parked: bool,
}

/// A peeker or cursor waiting for anything to arrive.
#[derive(Debug)]
pub(super) struct Watcher {
    id: WaiterId,
    wake: Wake,
}

impl State {
    /// Whether any receiver or peeker is registered (producers must then take the slow path).
    pub(super) fn wants_slow(&self) -> bool {
        !self.takers.is_empty() || !self.watchers.is_empty()
    }

    /// Hands visible messages to waiting receivers, in queue order, then wakes peekers if anything
    /// is still visible. Restores the invariant "a receiver waits only while nothing is visible"
    /// (after a batch of [`State::restore`], for instance).
    pub(crate) fn dispatch(&mut self) {
        while !self.takers.is_empty() {
            let Some((key, _)) = self.visible.first() else {
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
    pub(super) fn park(&mut self, id: WaiterId) {
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
    pub(super) fn close_state(&mut self) -> Vec<Message> {
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
