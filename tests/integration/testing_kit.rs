//! The `mqemu::testing` kit as a test suite for MSMQ client code would use it.

use std::time::Duration;

use mqemu::testing::{queue_manager, TestQueueManager};
use mqemu::{ErrorCode, Message, QueueProps, Tx};

#[test]
fn one_line_queue_manager_sends_and_receives() {
    let qm = queue_manager();
    let q = qm
        .create_queue(r".\private$\orders", QueueProps::default())
        .unwrap();
    q.send(Message::new("hello"), Tx::None).unwrap();
    assert_eq!(
        q.receive(Duration::ZERO, Tx::None).unwrap().body_str(),
        Some("hello")
    );
}

#[test]
fn manual_time_drives_expiry_without_sleeping() {
    let t = TestQueueManager::new();
    t.create(r".\private$\q", QueueProps::transactional());
    let ttbr = Message::new("short-lived").with_time_to_be_received(Duration::from_secs(3600));
    t.qm.send(r".\private$\q", ttbr, Tx::Single).unwrap();
    t.assert_bodies(r".\private$\q", &["short-lived"]);
    t.clock.advance(Duration::from_secs(3600));
    t.eventually_bodies(r".\system$;DEADXACT", &["short-lived"]);
    t.assert_empty(r".\private$\q");
}

#[test]
fn coordinator_offline_refuses_external_transactions_only() {
    let t = TestQueueManager::named("VS1");
    t.create(r"VS1\private$\q", QueueProps::transactional());
    t.coordinator.set_available(false);
    assert_eq!(
        t.qm.begin_external("xid").unwrap_err().code(),
        ErrorCode::DtcConnect
    );
    t.qm.send(
        r"DIRECT=OS:vs1\private$\q",
        Message::new("internal"),
        Tx::Single,
    )
    .unwrap();
    t.coordinator.set_available(true);
    let tx = t.qm.begin_external("xid").unwrap();
    t.qm.receive(r".\private$\q", Duration::ZERO, Tx::In(&tx))
        .unwrap();
    tx.prepare().unwrap();
    tx.commit().unwrap();
    t.assert_empty(r".\private$\q");
}

#[test]
#[should_panic(expected = "bodies of")]
fn assertion_failure_names_the_queue() {
    let t = TestQueueManager::new();
    t.create(r".\private$\q", QueueProps::default());
    t.assert_bodies(r".\private$\q", &["not there"]);
}
