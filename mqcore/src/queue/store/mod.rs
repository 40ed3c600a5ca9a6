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
//! [`Guard`](locks::Guard)), so a woken thread never wakes straight into a held lock, and a
//! waiting thread spins (yielding) for a moment before it parks, so a producer and a consumer
//! running side by side rarely pay for a futex round trip.
//!
//! The invariant that makes hand-off simple: **if a receiver is waiting, no message is visible.**
//! Every path that makes a message visible ([`Guard::publish`](locks::Guard::publish),
//! [`State::unlock`]) ends in [`State::dispatch`], which hands messages to waiters until one side
//! runs out.
//!
//! Here: the module's map and re-exports. [`State`] and its indexes are in `state`, tiering to
//! cold storage in `tiering`, hand-off to waiters in `handoff`, the inbox and the two locks
//! ([`Store`], [`Guard`](locks::Guard)) in `locks`, and the waits (blocking and async) in `wait`.

mod handoff;
mod locks;
mod ranked;
mod state;
mod tiering;
mod wait;

pub(crate) use locks::Store;
pub(crate) use state::{Found, Key, Owner, State};
#[cfg(all(test, loom))]
pub(crate) use wait::Never;
pub(crate) use wait::{Deadline, TakeFuture, WaitError, WatchFuture};

pub use crate::ids::LookupId;
pub(crate) use crate::ids::TxId;

/// A waiter's identity inside one store.
pub(crate) type WaiterId = u64;

#[cfg(all(test, not(loom)))]
mod tests {
    use std::task::Waker;

    use super::handoff::Wake;
    use super::*;
    use crate::clock::Timestamp;
    use crate::ids::StoreRef;
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
