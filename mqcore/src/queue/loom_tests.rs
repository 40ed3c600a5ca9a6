//! Loom models of the hot path: every interleaving of 2-3 threads around one queue.
//!
//! Run with `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p mqcore --lib --release
//! loom_` (`.ci/run` does, with its own target directory).

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use loom::thread;

use super::store::{Never, Store, TakeFuture};
use crate::ids::StoreRef;
use crate::message::Message;
use std::sync::Arc;

fn msg(body: &'static str) -> Box<Message> {
    Box::new(Message::new(body))
}

/// A send racing a blocking receive never loses the wake-up: the receiver always gets it, whether
/// the send took the inbox path (nobody registered yet) or the locked path (a waiter registered).
#[test]
fn loom_send_wakes_blocked_receiver() {
    loom::model(|| {
        let store = Store::new(StoreRef::Main(1));
        let receiver = {
            let store = store.clone();
            thread::spawn(move || store.take_blocking(None, &Never).expect("never times out"))
        };
        let sent = store.send(msg("a")).unwrap();
        let got = receiver.join().unwrap();
        assert_eq!(got, sent);
        let s = store.lock();
        assert_eq!(s.visible_len(), 0);
        assert!(!s.has_waiters());
    });
}

/// Two receivers racing for two messages each get one, never the same one.
#[test]
fn loom_two_receivers_never_share_a_message() {
    loom::model(|| {
        let store = Store::new(StoreRef::Main(1));
        let spawn_receiver = |tx| {
            let store = store.clone();
            thread::spawn(move || {
                store
                    .take_blocking(Some(tx), &Never)
                    .expect("never times out")
            })
        };
        let r1 = spawn_receiver(1);
        let r2 = spawn_receiver(2);
        store.lock().publish(msg("a")).unwrap();
        store.send(msg("b")).unwrap();
        let a = r1.join().unwrap();
        let b = r2.join().unwrap();
        assert_ne!(a, b);
        let s = store.lock();
        assert_eq!(s.visible_len(), 0);
        assert_eq!(s.len(), 2, "both locked, none lost");
    });
}

/// An abort racing a receive: the receiver gets the restored message, with its abort counted.
#[test]
fn loom_abort_races_receive() {
    loom::model(|| {
        let store = Store::new(StoreRef::Main(1));
        let lookup = {
            let mut s = store.lock();
            let l = s.publish(msg("a")).unwrap();
            let (key, _) = s.first().unwrap();
            assert_eq!(s.lock(key, 1), Some(l));
            l
        };
        let aborter = {
            let store = store.clone();
            thread::spawn(move || assert!(store.lock().unlock(lookup, true).is_none()))
        };
        let got = store
            .take_blocking(Some(2), &Never)
            .expect("never times out");
        aborter.join().unwrap();
        assert_eq!(got, lookup, "restored at its position, same lookup id");
        let s = store.lock();
        assert_eq!(s.locked_message(got).unwrap().abort_count(), 1);
    });
}

/// A cancelled async receive never loses a message, whether the message was handed to it before
/// the cancel or arrives after.
#[test]
fn loom_cancelled_async_receive_keeps_message() {
    loom::model(|| {
        let store = Store::new(StoreRef::Main(1));
        let mut fut = Box::pin(TakeFuture::new(store.clone(), None, Never));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(fut.as_mut().poll(&mut cx).is_pending(), "nothing sent yet");
        let sender = {
            let store = store.clone();
            thread::spawn(move || {
                store.send(msg("a")).unwrap();
            })
        };
        drop(fut); // races with the send and its hand-off
        sender.join().unwrap();
        let s = store.lock();
        assert_eq!(s.visible_len(), 1, "the message is back in the queue");
        assert!(!s.has_waiters());
    });
}

/// A completed async receive races a second blocked receiver: exactly one message each.
#[test]
fn loom_async_and_blocking_receivers_share_fairly() {
    loom::model(|| {
        let store = Store::new(StoreRef::Main(1));
        let blocking = {
            let store = store.clone();
            thread::spawn(move || store.take_blocking(None, &Never).expect("never times out"))
        };
        let sender = {
            let store: Arc<Store> = store.clone();
            thread::spawn(move || {
                store.send(msg("a")).unwrap();
                store.send(msg("b")).unwrap();
            })
        };
        let got = loom::future::block_on(TakeFuture::new(store.clone(), None, Never));
        let other = blocking.join().unwrap();
        sender.join().unwrap();
        assert_ne!(got.unwrap(), other);
        let mut fut = pin!(TakeFuture::new(store.clone(), None, Never));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(
            matches!(fut.as_mut().poll(&mut cx), Poll::Pending),
            "nothing left"
        );
    });
}

/// Two producers on the inbox path and a receiver that waits: lookup ids follow arrival and the
/// receiver sees them in that order, with nothing stranded in the inbox.
#[test]
fn loom_inbox_keeps_arrival_order() {
    loom::model(|| {
        let store = Store::new(StoreRef::Main(1));
        let producer = {
            let store = store.clone();
            thread::spawn(move || store.send(msg("a")).unwrap())
        };
        let b = store.send(msg("b")).unwrap();
        let a = producer.join().unwrap();
        assert_ne!(a, b);
        let first = store.take_blocking(None, &Never).unwrap();
        let second = store.take_blocking(None, &Never).unwrap();
        assert_eq!(first, a.min(b));
        assert_eq!(second, a.max(b));
    });
}

/// A deletion racing a send: the send is either refused or its message is among those the
/// deletion reports (to dead-letter and acknowledge); none is stranded in the inbox.
#[test]
fn loom_close_strands_no_send() {
    loom::model(|| {
        let store = Store::new(StoreRef::Main(1));
        let producer = {
            let store = store.clone();
            thread::spawn(move || store.send(msg("a")).is_ok())
        };
        let reported = store.lock().close();
        let accepted = producer.join().unwrap();
        assert_eq!(reported.len(), usize::from(accepted));
        assert_eq!(store.lock().len(), 0);
    });
}

/// A receiver that spins on the arrival count between looks, taking two messages one after the
/// other while a producer sends them: whichever look or hand-off each send meets, both arrive, in
/// order, and nothing is left registered.
#[test]
fn loom_spinning_receiver_takes_every_send() {
    loom::model(|| {
        let store = Store::new(StoreRef::Main(1));
        let receiver = {
            let store = store.clone();
            thread::spawn(move || {
                let first = store.take_blocking(None, &Never).expect("never times out");
                assert!(store.lock().remove_locked(first).is_some());
                let second = store.take_blocking(None, &Never).expect("never times out");
                assert!(store.lock().remove_locked(second).is_some());
                (first, second)
            })
        };
        let a = store.send(msg("a")).unwrap();
        let b = store.send(msg("b")).unwrap();
        assert_eq!(receiver.join().unwrap(), (a, b));
        let s = store.lock();
        assert_eq!(s.len(), 0);
        assert!(!s.has_waiters());
    });
}

/// A receiver taking the head without bringing in the inbox (`lock_head`) while a producer
/// sends a message that outranks the state's head: whichever comes first, each message is
/// taken once and none is stranded in the inbox. (That a send which has returned is taken
/// first is `a_higher_priority_send_overtakes_what_a_receiver_already_holds` in
/// `mqcore/tests/semantics.rs`.)
#[test]
fn loom_head_sees_an_outranking_send() {
    loom::model(|| {
        let store = Store::new(StoreRef::Main(1));
        let mut low = Message::new("low");
        low.priority = 3;
        let low = store.lock().publish(low).unwrap();
        let producer = {
            let store = store.clone();
            thread::spawn(move || {
                let mut high = Message::new("high");
                high.priority = 5;
                store.send(Box::new(high)).unwrap()
            })
        };
        let take = || {
            let mut s = store.lock_head();
            let key = s.head().expect("a message is visible");
            s.take(key).expect("in memory").lookup_id
        };
        let first = take();
        let high = producer.join().unwrap();
        let second = take();
        assert_ne!(first, second);
        assert!([first, second].contains(&high) && [first, second].contains(&low));
    });
}
