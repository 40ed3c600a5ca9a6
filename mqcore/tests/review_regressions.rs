//! Regression tests for the defects found in the first review of the engine, one per finding.
//!
//! Each test failed before its fix (lost time-outs, lost or doubled messages, panics, order and
//! accounting errors around deletion, abort, expiry, quotas, journals and subqueues).

mod common;
use common::{manual, until_waiting};

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Waker};
use std::thread;
use std::time::Duration;

use mqcore::{
    Acknowledge, ErrorCode, JournalFlags, LookupAction, Message, MessageClass, QueueManager,
    QueueName, QueueProps, Tx,
};

/// Finding 1: a watcher woken by an arrival that does not satisfy it must keep its deadline.
#[test]
fn peek_next_times_out_after_an_unrelated_wakeup() {
    let (qm, clock) = manual();
    let q = qm
        .create_queue(r".\private$\w", QueueProps::default())
        .unwrap();
    q.send(Message::new("a").with_priority(3), Tx::None)
        .unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    let q2 = q.clone();
    thread::spawn(move || {
        let mut c = q2.cursor();
        c.peek_current(Duration::ZERO).unwrap();
        let r = c.peek_next(Duration::from_secs(1));
        done_tx.send(r.map(|_| ()).map_err(|e| e.code())).unwrap();
    });
    until_waiting(&q, 1);
    // Sorts before "a": wakes the watcher (the arrival removes it), but there is still nothing
    // after the cursor, so it registers again.
    q.send(Message::new("b").with_priority(7), Tx::None)
        .unwrap();
    until_waiting(&q, 1);
    clock.advance(Duration::from_secs(5));
    let r = done_rx.recv_timeout(Duration::from_secs(10));
    assert_eq!(r.ok(), Some(Err(ErrorCode::IoTimeout)));
}

/// Finding 2: a send racing `delete_queue` either fails or is dead-lettered; never lost.
#[test]
fn sends_racing_delete_are_refused_or_dead_lettered() {
    let qm = QueueManager::new();
    let dlq = qm.open(r".\system$;DEADLETTER").unwrap();
    for round in 0..100 {
        let path = format!(r".\private$\r{round}");
        let q = qm.create_queue(&path, QueueProps::default()).unwrap();
        let ok = Arc::new(AtomicUsize::new(0));
        let go = Arc::new(AtomicBool::new(true));
        let before = dlq.len().unwrap();
        let senders: Vec<_> = (0..3)
            .map(|_| {
                let (q, ok, go) = (q.clone(), ok.clone(), go.clone());
                thread::spawn(move || {
                    // Bounded: at most 10,000 sends per sender per round.
                    for _ in 0..10_000 {
                        if !go.load(Ordering::Relaxed) {
                            break;
                        }
                        let m = Message::new("x").with_journal(JournalFlags::DEADLETTER);
                        match q.send(m, Tx::None) {
                            Ok(_) => ok.fetch_add(1, Ordering::SeqCst),
                            Err(e) => {
                                assert_eq!(e.code(), ErrorCode::QueueDeleted);
                                break;
                            }
                        };
                    }
                })
            })
            .collect();
        thread::yield_now();
        qm.delete_queue(&path).unwrap();
        go.store(false, Ordering::Relaxed);
        for s in senders {
            s.join().unwrap();
        }
        let dead = dlq.len().unwrap() - before;
        assert_eq!(
            ok.load(Ordering::SeqCst),
            dead,
            "round {round}: accepted sends vanished"
        );
    }
}

/// Finding 3: a message handed to a waiting receiver, then its queue deleted: the receive fails
/// with MQ_ERROR_QUEUE_DELETED (no panic), and the message is reported once.
#[test]
fn hand_off_then_delete_fails_the_receive_cleanly() {
    let qm = QueueManager::new();
    let admin = qm
        .create_queue(r".\private$\admin", QueueProps::default())
        .unwrap();
    for transactional in [false, true] {
        let path = format!(r".\private$\h{transactional}");
        let props = QueueProps {
            transactional,
            ..QueueProps::default()
        };
        let q = qm.create_queue(&path, props).unwrap();
        let tx = qm.begin();
        let txm = if transactional { Tx::In(&tx) } else { Tx::None };
        let mut fut = Box::pin(q.receive_async(Duration::from_secs(10), txm));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        let m = Message::new("x").with_acknowledge(
            QueueName::parse(r".\private$\admin").unwrap(),
            Acknowledge::NACK_RECEIVE,
        );
        q.send(m, if transactional { Tx::Single } else { Tx::None })
            .unwrap();
        qm.delete_queue(&path).unwrap();
        match fut.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(r) => assert_eq!(r.unwrap_err().code(), ErrorCode::QueueDeleted),
            std::task::Poll::Pending => panic!("a closed queue's waiter must finish"),
        }
        let nack = admin.receive(Duration::ZERO, Tx::None).unwrap();
        assert_eq!(nack.class(), MessageClass::NACK_Q_DELETED);
        assert!(admin.is_empty().unwrap(), "reported exactly once");
    }
}

/// Finding 3, knock-on: the timer keeps firing for other queues after anything happens to one.
#[test]
fn timer_survives_a_deleted_queue_with_expiring_messages() {
    let (qm, clock) = manual();
    let h = qm
        .create_queue(r".\private$\h", QueueProps::default())
        .unwrap();
    let other = qm
        .create_queue(r".\private$\other", QueueProps::default())
        .unwrap();
    let m = Message::new("x").with_time_to_be_received(Duration::from_secs(10));
    h.send(m, Tx::None).unwrap();
    qm.delete_queue(r".\private$\h").unwrap();
    clock.advance(Duration::from_secs(11));
    let (tx, rx) = mpsc::channel();
    let receiver = other.clone();
    thread::spawn(move || {
        tx.send(
            receiver
                .receive(Duration::from_secs(1), Tx::None)
                .map(|_| ())
                .map_err(|e| e.code()),
        )
        .unwrap();
    });
    until_waiting(&other, 1);
    clock.advance(Duration::from_secs(5));
    let r = rx.recv_timeout(Duration::from_secs(10));
    assert_eq!(r.ok(), Some(Err(ErrorCode::IoTimeout)));
}

/// Finding 4: after an abort, a waiting receiver gets the head of the queue.
#[test]
fn abort_hands_the_head_message_to_a_waiter() {
    let qm = QueueManager::new();
    let q = qm
        .create_queue(r".\private$\fifo", QueueProps::transactional())
        .unwrap();
    for b in ["A", "B"] {
        q.send(Message::new(b), Tx::Single).unwrap();
    }
    let tx = qm.begin();
    q.receive(Duration::ZERO, Tx::In(&tx)).unwrap();
    q.receive(Duration::ZERO, Tx::In(&tx)).unwrap();
    let q2 = q.clone();
    let waiter = thread::spawn(move || {
        q2.receive(Duration::from_secs(10), Tx::None)
            .unwrap()
            .body_str()
            .unwrap()
            .to_owned()
    });
    until_waiting(&q, 1);
    tx.abort();
    assert_eq!(waiter.join().unwrap(), "A");
}

/// Finding 5: deleting a queue while a transaction holds one of its messages: commit consumes it
/// (not also dead-lettered); abort dead-letters it (not lost).
#[test]
fn delete_under_a_held_message_settles_by_the_transaction() {
    let qm = QueueManager::new();
    let xdlq = qm.open(r".\system$;DEADXACT").unwrap();
    for commit in [true, false] {
        let path = format!(r".\private$\d{commit}");
        let q = qm.create_queue(&path, QueueProps::transactional()).unwrap();
        q.send(Message::new("x"), Tx::Single).unwrap();
        let tx = qm.begin();
        q.receive(Duration::ZERO, Tx::In(&tx)).unwrap();
        qm.delete_queue(&path).unwrap();
        assert!(
            xdlq.is_empty().unwrap(),
            "held by a live transaction: not yet dead"
        );
        if commit {
            tx.commit().unwrap();
            assert!(
                xdlq.is_empty().unwrap(),
                "committed receive must not also be dead-lettered"
            );
        } else {
            tx.abort();
            let dead = xdlq.receive(Duration::ZERO, Tx::None).unwrap();
            assert_eq!(dead.class(), MessageClass::NACK_Q_DELETED);
        }
    }
}

/// Finding 6: a time-to-be-received that ran out while the message was held is enforced on abort.
#[test]
fn ttbr_that_passed_while_held_is_enforced_on_abort() {
    let (qm, clock) = manual();
    let q = qm
        .create_queue(r".\private$\ttbr", QueueProps::transactional())
        .unwrap();
    let m = Message::new("x").with_time_to_be_received(Duration::from_secs(10));
    q.send(m, Tx::Single).unwrap();
    let tx = qm.begin();
    let m = q.receive(Duration::ZERO, Tx::In(&tx)).unwrap();
    clock.advance(Duration::from_secs(60));
    tx.abort();
    let got = q.receive_by_lookup_id(LookupAction::Current(m.lookup_id()), Tx::None);
    assert_eq!(got.unwrap_err().code(), ErrorCode::MessageNotFound);
    let dead = qm
        .open(r".\system$;DEADXACT")
        .unwrap()
        .receive(Duration::ZERO, Tx::None)
        .unwrap();
    assert_eq!(dead.class(), MessageClass::NACK_RECEIVE_TIMEOUT);
}

/// Finding 7: two transactions cannot overfill a quota; the late one is NACKed with 0x8003.
#[test]
fn concurrent_transactions_cannot_overfill_a_quota() {
    let qm = QueueManager::new();
    let props = QueueProps {
        quota_kb: Some(1),
        ..QueueProps::transactional()
    };
    let q = qm.create_queue(r".\private$\quota", props).unwrap();
    let t1 = qm.begin();
    let t2 = qm.begin();
    q.send(Message::new(vec![0u8; 800]), Tx::In(&t1)).unwrap();
    q.send(Message::new(vec![0u8; 800]), Tx::In(&t2)).unwrap();
    t1.commit().unwrap();
    t2.commit().unwrap();
    assert_eq!(qm.queue_info(r".\private$\quota").unwrap().bytes, 800);
    let dead = qm
        .open(r".\system$;DEADXACT")
        .unwrap()
        .receive(Duration::ZERO, Tx::None)
        .unwrap();
    assert_eq!(dead.class(), MessageClass::NACK_Q_EXCEED_QUOTA);
}

/// Finding 8: receiving or purging journal copies and dead letters sends no acknowledgement.
#[test]
fn journal_copies_are_not_acknowledged_again() {
    let qm = QueueManager::new();
    let admin = qm
        .create_queue(r".\private$\admin", QueueProps::default())
        .unwrap();
    let q = qm
        .create_queue(
            r".\private$\j",
            QueueProps {
                journal: true,
                ..QueueProps::default()
            },
        )
        .unwrap();
    let admin_name = QueueName::parse(r".\private$\admin").unwrap();
    for _ in 0..2 {
        let m = Message::new("x").with_acknowledge(admin_name.clone(), Acknowledge::FULL_RECEIVE);
        q.send(m, Tx::None).unwrap();
        q.receive(Duration::ZERO, Tx::None).unwrap();
    }
    let journal = qm.open(r".\private$\j\JOURNAL$").unwrap();
    journal.receive(Duration::ZERO, Tx::None).unwrap();
    journal.purge().unwrap();
    assert_eq!(
        admin.len().unwrap(),
        2,
        "one ACK_RECEIVE per real receive, nothing else"
    );
}

/// Finding 9: lookup ids are never reused, also across subqueues that come and go.
#[test]
fn subqueue_lookup_ids_are_never_reused() {
    let qm = QueueManager::new();
    let q = qm
        .create_queue(r".\private$\p", QueueProps::default())
        .unwrap();
    let poison = qm.open(r".\private$\p;poison").unwrap();
    let mut seen = Vec::new();
    for i in 0..3 {
        q.send(Message::new(format!("m{i}")), Tx::None).unwrap();
        let m = q.peek(Duration::ZERO).unwrap();
        q.move_message(m.lookup_id(), &poison, Tx::None).unwrap();
        seen.push(
            poison
                .receive(Duration::ZERO, Tx::None)
                .unwrap()
                .lookup_id(),
        );
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
}

/// Finding 10: MQDeleteQueue refuses a DIRECT= format name.
#[test]
fn delete_by_direct_format_name_is_refused() {
    let qm = QueueManager::new();
    qm.create_queue(r".\private$\dd", QueueProps::default())
        .unwrap();
    let err = qm.delete_queue(r"DIRECT=OS:.\private$\dd").unwrap_err();
    assert_eq!(err.code(), ErrorCode::UnsupportedFormatnameOperation);
    let id = qm.queue_info(r".\private$\dd").unwrap().id;
    qm.delete_queue(&format!(r"PRIVATE={}\{id:08x}", qm.guid()))
        .unwrap();
}

/// Second review: a receive whose transaction is prepared while it waits fails with
/// MQ_ERROR_TRANSACTION_SEQUENCE and gives the handed-off message back where it was.
#[test]
fn receive_outlived_by_a_prepare_gives_the_message_back() {
    let qm = QueueManager::new();
    let q = qm
        .create_queue(r".\private$\p", QueueProps::transactional())
        .unwrap();
    let tx = qm.begin_external("xid").unwrap();
    let mut fut = Box::pin(q.receive_async(Duration::from_secs(10), Tx::In(&tx)));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    q.send(Message::new("x"), Tx::Single).unwrap(); // handed to the waiting receive
    tx.prepare().unwrap();
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(r) => {
            assert_eq!(r.unwrap_err().code(), ErrorCode::TransactionSequence)
        }
        std::task::Poll::Pending => panic!("the hand-off is there to pick up"),
    }
    drop(fut);
    let back = q.peek(Duration::ZERO).unwrap();
    assert_eq!((back.body_str(), back.abort_count()), (Some("x"), 0));
    tx.commit().unwrap();
    assert_eq!(
        q.len().unwrap(),
        1,
        "the prepared transaction never held it"
    );
}
