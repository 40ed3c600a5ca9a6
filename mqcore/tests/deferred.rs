//! Steps an async host defers (`mqcore::step::deferred`): logged, invisible until finished, finished
//! exactly once, durable across a restart.

mod common;
use common::{recoverable, until_waiting};

use std::path::Path;
use std::time::Duration;

use mqcore::step::deferred::{collect, finish_all, Collecting};
use mqcore::{ErrorCode, Queue, QueueManager, QueueProps, Tx};

const Q: &str = r".\private$\deferred";
const TXQ: &str = r".\private$\deferred-tx";

fn open(root: &Path) -> (QueueManager, Queue, Queue) {
    let qm = QueueManager::builder().open(root).unwrap();
    let q = match qm.open(Q) {
        Ok(q) => q,
        Err(_) => qm.create_queue(Q, QueueProps::default()).unwrap(),
    };
    let txq = match qm.open(TXQ) {
        Ok(q) => q,
        Err(_) => qm.create_queue(TXQ, QueueProps::transactional()).unwrap(),
    };
    (qm, q, txq)
}

fn nothing_in(q: &Queue) {
    let e = q.peek(Duration::ZERO).unwrap_err();
    assert_eq!(e.code(), ErrorCode::IoTimeout, "{e}");
}

#[test]
fn a_deferred_send_is_invisible_until_finished() {
    let dir = tempfile::tempdir().unwrap();
    let (_qm, q, txq) = open(dir.path());
    let (ids, logged) = collect(|| {
        let plain = q.send_batch(vec![recoverable("a"), recoverable("b")], Tx::None);
        let single = txq.send_batch(vec![recoverable("c")], Tx::Single);
        (plain, single)
    });
    assert!(ids.0.iter().chain(&ids.1).all(|r| r.is_ok()), "{ids:?}");
    assert_eq!(logged.len(), 2, "one record per batch");
    nothing_in(&q);
    nothing_in(&txq);
    pollster::block_on(finish_all(logged)).unwrap();
    assert_eq!(q.len().unwrap(), 2);
    assert_eq!(txq.len().unwrap(), 1);
    assert_eq!(
        q.receive(Duration::ZERO, Tx::None).unwrap().body_str(),
        Some("a")
    );
}

#[test]
fn a_dropped_deferred_step_still_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let (_qm, q, _) = open(dir.path());
    let (r, logged) = collect(|| q.send(recoverable("kept"), Tx::None));
    r.unwrap();
    assert_eq!(logged.len(), 1);
    nothing_in(&q);
    drop(logged);
    assert_eq!(q.len().unwrap(), 1);
}

#[test]
fn a_deferred_receive_is_gone_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_qm, q, _) = open(dir.path());
        q.send_batch(vec![recoverable("1"), recoverable("2")], Tx::None);
        let (got, logged) = collect(|| q.receive_batch(1, Tx::None));
        assert_eq!(got.unwrap()[0].body_str(), Some("1"));
        assert_eq!(logged.len(), 1);
        pollster::block_on(finish_all(logged)).unwrap();
    }
    let (_qm, q, _) = open(dir.path());
    assert_eq!(q.len().unwrap(), 1);
    assert_eq!(q.peek(Duration::ZERO).unwrap().body_str(), Some("2"));
}

#[test]
fn a_waiting_async_receive_hands_back_its_removal() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_qm, q, _) = open(dir.path());
        let sender = q.clone();
        let late = std::thread::spawn(move || {
            until_waiting(&sender, 1);
            sender.send(recoverable("late"), Tx::None).unwrap();
        });
        let receive = Box::pin(q.receive_async(Duration::from_secs(10), Tx::None));
        let (got, logged) = pollster::block_on(Collecting::new(receive));
        late.join().unwrap();
        assert_eq!(got.unwrap().body_str(), Some("late"));
        assert_eq!(logged.len(), 1, "the removal was deferred, not waited for");
        pollster::block_on(finish_all(logged)).unwrap();
    }
    let (_qm, q, _) = open(dir.path());
    nothing_in(&q);
}

#[test]
fn in_memory_nothing_is_deferred() {
    let qm = QueueManager::new();
    let q = qm.create_queue(Q, QueueProps::default()).unwrap();
    let (r, logged) = collect(|| q.send(recoverable("m"), Tx::None));
    r.unwrap();
    assert!(logged.is_empty());
    assert_eq!(q.len().unwrap(), 1);
}
