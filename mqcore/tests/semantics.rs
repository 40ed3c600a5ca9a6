//! MSMQ semantics of the engine, one test per behaviour, through the public API only.
//!
//! Each test names the MSMQ rule it pins; the error paths assert the exact MSMQ code.

mod common;
use common::{bodies, body, eventually, manual, until_waiting};

use std::thread;
use std::time::Duration;

use mqcore::{
    Acknowledge, Compat, Delivery, ErrorCode, JournalFlags, LocalCoordinator, LookupAction,
    Message, MessageClass, MessageId, QueueManager, QueueName, QueueProps, QueueUpdate, Tx,
    INFINITE,
};

const NOW: Duration = Duration::ZERO;
const LONG: Duration = Duration::from_secs(30);

fn qm() -> QueueManager {
    QueueManager::new()
}

/// Sends `body` to `q` from another thread once a receiver waits on `q`, for tests of waiting
/// receivers.
fn send_later(q: &mqcore::Queue, body: &'static str) -> thread::JoinHandle<()> {
    let q = q.clone();
    thread::spawn(move || {
        until_waiting(&q, 1);
        q.send(Message::new(body), Tx::None).unwrap();
    })
}

fn code<T: std::fmt::Debug>(r: mqcore::Result<T>) -> ErrorCode {
    r.expect_err("expected an error").code()
}

// ---- 3. Message properties -------------------------------------------------------------------

#[test]
fn send_stamps_id_times_source_and_destination() {
    let (qm, clock) = manual();
    let q = qm
        .create_queue(r".\private$\a", QueueProps::default())
        .unwrap();
    let id = q.send(Message::new("x"), Tx::None).unwrap();
    assert_eq!(id.qm_guid(), qm.guid());
    let m = q.receive(NOW, Tx::None).unwrap();
    assert_eq!(m.id(), id);
    assert_eq!(m.sent_time(), clock.now());
    assert_eq!(m.arrived_time(), clock.now());
    assert_eq!(m.source_machine(), qm.guid());
    assert_eq!(
        m.destination().unwrap().to_string().to_lowercase(),
        r"localhost\private$\a"
    );
    assert_eq!(m.class(), MessageClass::NORMAL);
    // Ids are guid\ordinal and increase.
    let id2 = q.send(Message::new("y"), Tx::None).unwrap();
    assert_eq!(id2.ordinal(), id.ordinal() + 1);
    assert_eq!(id2.to_string(), format!("{}\\{}", qm.guid(), id2.ordinal()));
}

#[test]
fn send_refuses_bad_properties_and_changes_nothing() {
    let qm = qm();
    let q = qm
        .create_queue(r".\private$\a", QueueProps::default())
        .unwrap();
    let refused = [
        (
            "a 250-character label",
            Message::new("x").with_label("l".repeat(250)),
            ErrorCode::LabelTooLong,
        ),
        (
            "a body over 4 MB",
            Message::new(vec![0u8; 4 * 1024 * 1024 + 1]),
            ErrorCode::InsufficientResources,
        ),
        (
            "priority 8",
            Message::new("x").with_priority(8),
            ErrorCode::IllegalPropertyValue,
        ),
    ];
    for (what, message, expected) in refused {
        assert_eq!(code(q.send(message, Tx::None)), expected, "{what}");
    }
    assert!(q.is_empty().unwrap());
    // The limits themselves are fine.
    q.send(
        Message::new(vec![1u8; 4 * 1024 * 1024]).with_label("l".repeat(249)),
        Tx::None,
    )
    .unwrap();
}

#[test]
fn every_sender_property_survives_the_trip() {
    let qm = qm();
    let q = qm
        .create_queue(r".\private$\a", QueueProps::default())
        .unwrap();
    qm.create_queue(r".\private$\resp", QueueProps::default())
        .unwrap();
    let corr: MessageId = format!("{}\\7", uuid_like()).parse().unwrap();
    let mut m = Message::new("payload")
        .with_label("label")
        .with_priority(6)
        .with_correlation_id(corr)
        .with_app_specific(42)
        .with_delivery(Delivery::Recoverable)
        .with_journal(JournalFlags::DEADLETTER);
    m.body_type = 8;
    m.extension = bytes::Bytes::from_static(b"ext");
    m = m.with_response_queue(QueueName::parse(r".\private$\resp").unwrap());
    q.send(m.clone(), Tx::None).unwrap();
    let got = q.receive(NOW, Tx::None).unwrap();
    assert_eq!(got.label, "label");
    assert_eq!(got.priority, 6);
    assert_eq!(got.correlation_id, Some(corr));
    assert_eq!(got.app_specific, 42);
    assert_eq!(got.delivery, Delivery::Recoverable);
    assert_eq!(got.body_type, 8);
    assert_eq!(&got.extension[..], b"ext");
    assert_eq!(got.response_queue, m.response_queue);
    assert_eq!(got.journal, JournalFlags::DEADLETTER);
}

fn uuid_like() -> &'static str {
    "2a0e7c9d-5b43-4b2f-9f4e-1c2d3e4f5a6b"
}

// ---- 4. Queue manager and catalog ------------------------------------------------------------

#[test]
fn create_list_show_update_delete() {
    let qm = qm();
    let props = QueueProps {
        transactional: true,
        journal: true,
        quota_kb: Some(10),
        journal_quota_kb: Some(5),
        label: "orders".into(),
        base_priority: 2,
        authenticate: false,
    };
    qm.create_queue(r".\private$\Orders", props.clone())
        .unwrap();
    qm.create_queue(r".\private$\audit", QueueProps::default())
        .unwrap();
    assert_eq!(
        code(qm.create_queue(r".\PRIVATE$\orders", QueueProps::default())),
        ErrorCode::QueueExists
    );
    let names: Vec<String> = qm
        .queues()
        .iter()
        .map(|i| i.path.to_string().to_lowercase())
        .collect();
    assert_eq!(
        names,
        [r"localhost\private$\audit", r"localhost\private$\orders"]
    );
    let info = qm.queue_info(r".\private$\orders").unwrap();
    assert_eq!(info.props, props);
    assert_eq!(info.message_count, 0);

    qm.set_queue_props(
        r".\private$\orders",
        QueueUpdate {
            label: Some("renamed".into()),
            journal: Some(false),
            ..Default::default()
        },
    )
    .unwrap();
    let info = qm.queue_info(r".\private$\orders").unwrap();
    assert_eq!(info.props.label, "renamed");
    assert!(!info.props.journal);
    assert!(info.props.transactional);
    let change_type = QueueUpdate {
        transactional: Some(false),
        ..Default::default()
    };
    assert_eq!(
        code(qm.set_queue_props(r".\private$\orders", change_type)),
        ErrorCode::PropertyNotAllowed
    );
    let long_label = QueueUpdate {
        label: Some("x".repeat(125)),
        ..Default::default()
    };
    assert_eq!(
        code(qm.set_queue_props(r".\private$\orders", long_label)),
        ErrorCode::IllegalPropertyValue
    );
    assert_eq!(
        qm.queue_info(r".\private$\orders").unwrap().props.label,
        "renamed",
        "refused update changes nothing"
    );

    let handle = qm.open(r".\private$\orders").unwrap();
    qm.delete_queue(r".\private$\orders").unwrap();
    assert_eq!(
        code(qm.open(r".\private$\orders")),
        ErrorCode::QueueNotFound
    );
    assert_eq!(code(handle.receive(NOW, Tx::None)), ErrorCode::QueueDeleted);
    assert_eq!(
        code(qm.delete_queue(r".\private$\orders")),
        ErrorCode::QueueNotFound
    );
    assert_eq!(qm.queues().len(), 1);
}

#[test]
fn create_refuses_what_cannot_be_created() {
    let qm = qm();
    let bad_label = QueueProps {
        label: "x".repeat(125),
        ..Default::default()
    };
    assert_eq!(
        code(qm.create_queue(r".\private$\a", bad_label)),
        ErrorCode::IllegalPropertyValue
    );
    for (name, expected) in [
        (r"DIRECT=OS:.\private$\a", ErrorCode::IllegalQueuePathname),
        (r".\private$\a;sub", ErrorCode::IllegalQueuePathname),
        (r".\public", ErrorCode::UnsupportedOperation),
        (r"elsewhere\private$\a", ErrorCode::UnsupportedOperation),
        (r".\private$\a b", ErrorCode::IllegalQueuePathname),
    ] {
        assert_eq!(
            code(qm.create_queue(name, QueueProps::default())),
            expected,
            "{name}"
        );
    }
    assert!(qm.queues().is_empty());
}

#[test]
fn names_resolve_in_every_form() {
    let qm = QueueManager::builder().name("HOST1").build();
    let q = qm
        .create_queue(r"HOST1\private$\q", QueueProps::default())
        .unwrap();
    q.send(Message::new("x"), Tx::None).unwrap();
    let id = qm.queue_info(r".\private$\q").unwrap().id;
    for name in [
        r".\private$\q".to_owned(),
        r"host1\PRIVATE$\Q".to_owned(),
        r"FormatName:DIRECT=OS:host1\private$\q".to_owned(),
        r"DIRECT=TCP:127.0.0.1\private$\q".to_owned(),
        r"DIRECT=HTTP://localhost/msmq/private$/q".to_owned(),
        format!(r"PRIVATE={}\{id:08x}", qm.guid()),
    ] {
        assert_eq!(qm.open(&name).unwrap().len().unwrap(), 1, "{name}");
    }
    // Another computer's queue opens to send (through an outgoing queue), not to read here.
    for name in [r"DIRECT=TCP:10.1.2.3\private$\q", r"other\private$\q"] {
        let q = qm.open(name).unwrap();
        assert_eq!(code(q.len()), ErrorCode::UnsupportedOperation, "{name}");
    }
    for (name, expected) in [
        (
            r"PRIVATE=00000000-0000-0000-0000-000000000001\00000001",
            ErrorCode::RemoteMachineNotAvailable,
        ),
        (r".\private$\missing", ErrorCode::QueueNotFound),
        (r".\private$\", ErrorCode::IllegalQueuePathname),
        (r"DIRECT=XYZ:host\q", ErrorCode::IllegalFormatname),
        (r".\somepublic", ErrorCode::UnsupportedOperation),
    ] {
        assert_eq!(code(qm.open(name)), expected, "{name}");
    }
}

#[test]
fn system_queues_and_journals_are_readable_not_sendable() {
    let qm = qm();
    qm.create_queue(r".\private$\q", QueueProps::default())
        .unwrap();
    for name in [
        r".\system$;DEADLETTER",
        r".\system$;DEADXACT",
        r".\system$;JOURNAL",
        r".\DEADLETTER$",
        r".\XACTDEADLETTER$",
        r".\JOURNAL$",
        r".\private$\q\JOURNAL$",
        r"DIRECT=OS:.\private$\q;JOURNAL",
    ] {
        let h = qm.open(name).unwrap();
        assert!(h.is_empty().unwrap(), "{name}");
        assert_eq!(
            code(h.send(Message::new("x"), Tx::None)),
            ErrorCode::UnsupportedAccessMode,
            "{name}"
        );
    }
}

#[test]
fn purge_removes_unlocked_messages_and_nacks() {
    let qm = qm();
    let q = qm
        .create_queue(r".\private$\q", QueueProps::transactional())
        .unwrap();
    let admin = qm
        .create_queue(r".\private$\admin", QueueProps::default())
        .unwrap();
    let admin_name = QueueName::parse(r".\private$\admin").unwrap();
    for b in ["a", "b", "c"] {
        let m = Message::new(b).with_acknowledge(admin_name.clone(), Acknowledge::NEG_RECEIVE);
        q.send(m, Tx::Single).unwrap();
    }
    let tx = qm.begin();
    let locked = q.receive(NOW, Tx::In(&tx)).unwrap();
    assert_eq!(qm.purge(r".\private$\q").unwrap(), 2);
    assert_eq!(
        q.len().unwrap(),
        1,
        "the locked message stays with its transaction"
    );
    tx.abort();
    assert_eq!(bodies(&qm, r".\private$\q"), [body(&locked)]);
    let nacks = admin.messages().unwrap();
    assert_eq!(nacks.len(), 2);
    assert!(nacks
        .iter()
        .all(|n| n.class() == MessageClass::NACK_Q_PURGED));
}

// ---- 5. Operations ---------------------------------------------------------------------------

#[test]
fn order_is_priority_then_arrival_with_increasing_lookup_ids() {
    let qm = qm();
    let q = qm
        .create_queue(r".\private$\q", QueueProps::default())
        .unwrap();
    for (b, p) in [("a", 3), ("b", 7), ("c", 3), ("d", 0), ("e", 7)] {
        q.send(Message::new(b).with_priority(p), Tx::None).unwrap();
    }
    let got: Vec<Message> = (0..5).map(|_| q.receive(NOW, Tx::None).unwrap()).collect();
    assert_eq!(
        got.iter().map(body).collect::<Vec<_>>(),
        ["b", "e", "a", "c", "d"]
    );
    let mut ids: Vec<u64> = got.iter().map(Message::lookup_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5);
    assert_eq!(got[0].lookup_id(), 2);
}

#[test]
fn transactional_queue_is_fifo_in_commit_order() {
    let qm = qm();
    let q = qm
        .create_queue(r".\private$\q", QueueProps::transactional())
        .unwrap();
    let t1 = qm.begin();
    let t2 = qm.begin();
    q.send(Message::new("t1-first-sent").with_priority(7), Tx::In(&t1))
        .unwrap();
    q.send(Message::new("t2-a"), Tx::In(&t2)).unwrap();
    q.send(Message::new("t2-b"), Tx::In(&t2)).unwrap();
    t2.commit().unwrap();
    t1.commit().unwrap();
    assert_eq!(
        bodies(&qm, r".\private$\q"),
        ["t2-a", "t2-b", "t1-first-sent"]
    );
}

#[test]
fn receive_times_out_by_the_clock() {
    let (qm, clock) = manual();
    let q = qm
        .create_queue(r".\private$\q", QueueProps::default())
        .unwrap();
    assert_eq!(code(q.receive(NOW, Tx::None)), ErrorCode::IoTimeout);
    let waiter = {
        let q = q.clone();
        thread::spawn(move || q.receive(Duration::from_secs(60), Tx::None))
    };
    until_waiting(&q, 1);
    assert!(
        !waiter.is_finished(),
        "a manual clock does not move by itself"
    );
    clock.advance(Duration::from_secs(61));
    assert_eq!(code(waiter.join().unwrap()), ErrorCode::IoTimeout);
}

#[test]
fn blocked_receiver_is_woken_by_a_send() {
    let qm = qm();
    let q = qm
        .create_queue(r".\private$\q", QueueProps::default())
        .unwrap();
    let receivers: Vec<_> = (0..3)
        .map(|_| {
            let q = q.clone();
            thread::spawn(move || q.receive(INFINITE, Tx::None).map(|m| body(&m).to_owned()))
        })
        .collect();
    until_waiting(&q, 3);
    for b in ["a", "b", "c"] {
        q.send(Message::new(b), Tx::None).unwrap();
    }
    let mut got: Vec<String> = receivers
        .into_iter()
        .map(|r| r.join().unwrap().unwrap())
        .collect();
    got.sort();
    assert_eq!(
        got,
        ["a", "b", "c"],
        "each receiver got a different message"
    );
}

#[test]
fn async_receive_waits_and_times_out_by_the_clock() {
    let (qm, clock) = manual();
    let q = qm
        .create_queue(r".\private$\q", QueueProps::default())
        .unwrap();
    let sender = send_later(&q, "late");
    let m = pollster::block_on(q.receive_async(LONG, Tx::None)).unwrap();
    assert_eq!(body(&m), "late");
    sender.join().unwrap();

    let waited = q.clone();
    let advancer = thread::spawn(move || {
        until_waiting(&waited, 1);
        clock.advance(Duration::from_secs(31));
    });
    assert_eq!(
        code(pollster::block_on(q.receive_async(LONG, Tx::None))),
        ErrorCode::IoTimeout
    );
    advancer.join().unwrap();
    assert_eq!(
        code(pollster::block_on(q.peek_async(NOW))),
        ErrorCode::IoTimeout
    );
}

#[test]
fn async_peek_waits_for_an_arrival_and_leaves_it() {
    let qm = qm();
    let q = qm
        .create_queue(r".\private$\q", QueueProps::default())
        .unwrap();
    let sender = send_later(&q, "seen");
    let m = pollster::block_on(q.peek_async(LONG)).unwrap();
    assert_eq!(body(&m), "seen");
    sender.join().unwrap();
    assert_eq!(q.len().unwrap(), 1, "a peek leaves the message");
}

#[test]
fn dropped_async_receive_loses_nothing() {
    use std::future::Future;
    use std::task::{Context, Waker};
    let qm = qm();
    let q = qm
        .create_queue(r".\private$\q", QueueProps::default())
        .unwrap();
    let mut fut = Box::pin(q.receive_async(INFINITE, Tx::None));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    q.send(Message::new("handed"), Tx::None).unwrap(); // handed to the pending future
    assert_eq!(q.messages().unwrap().len(), 0);
    drop(fut);
    assert_eq!(bodies(&qm, r".\private$\q"), ["handed"]);
}

#[test]
fn peek_leaves_the_message_and_waits() {
    let qm = qm();
    let q = qm
        .create_queue(r".\private$\q", QueueProps::default())
        .unwrap();
    assert_eq!(code(q.peek(NOW)), ErrorCode::IoTimeout);
    let peeker = {
        let q = q.clone();
        thread::spawn(move || q.peek(INFINITE).map(|m| body(&m).to_owned()))
    };
    until_waiting(&q, 1);
    q.send(Message::new("x"), Tx::None).unwrap();
    assert_eq!(peeker.join().unwrap().unwrap(), "x");
    assert_eq!(body(&q.peek(NOW).unwrap()), "x");
    assert_eq!(q.len().unwrap(), 1);
}

#[test]
fn cursor_peeks_current_next_and_receives_current() {
    let qm = qm();
    let q = qm
        .create_queue(r".\private$\q", QueueProps::default())
        .unwrap();
    for b in ["a", "b", "c", "d"] {
        q.send(Message::new(b), Tx::None).unwrap();
    }
    let mut c = q.cursor();
    assert_eq!(code(c.peek_next(NOW)), ErrorCode::IllegalCursorAction);
    assert_eq!(body(&c.peek_current(NOW).unwrap()), "a");
    assert_eq!(body(&c.peek_current(NOW).unwrap()), "a");
    assert_eq!(body(&c.peek_next(NOW).unwrap()), "b");
    assert_eq!(body(&c.receive_current(NOW, Tx::None).unwrap()), "b");
    // After receiving through the cursor, current is the message that followed.
    assert_eq!(body(&c.peek_current(NOW).unwrap()), "c");
    assert_eq!(body(&c.peek_next(NOW).unwrap()), "d");
    assert_eq!(code(c.peek_next(NOW)), ErrorCode::IoTimeout);
    // Someone else removes the message under the cursor.
    q.receive_by_lookup_id(LookupAction::Last, Tx::None)
        .unwrap();
    assert_eq!(code(c.peek_current(NOW)), ErrorCode::MessageAlreadyReceived);
    assert_eq!(bodies(&qm, r".\private$\q"), ["a", "c"]);
    // peek_next waits for an arrival past the cursor.
    let waiter = thread::spawn(move || c.peek_next(INFINITE).map(|m| body(&m).to_owned()));
    until_waiting(&q, 1);
    q.send(Message::new("e"), Tx::None).unwrap();
    assert_eq!(waiter.join().unwrap().unwrap(), "e");
}

#[test]
fn lookup_id_navigation() {
    let qm = qm();
    let q = qm
        .create_queue(r".\private$\q", QueueProps::default())
        .unwrap();
    for b in ["a", "b", "c"] {
        q.send(Message::new(b), Tx::None).unwrap();
    }
    let first = q.peek_by_lookup_id(LookupAction::First).unwrap();
    let last = q.peek_by_lookup_id(LookupAction::Last).unwrap();
    assert_eq!((body(&first), body(&last)), ("a", "c"));
    let b = q
        .peek_by_lookup_id(LookupAction::Next(first.lookup_id()))
        .unwrap();
    assert_eq!(body(&b), "b");
    assert_eq!(
        body(
            &q.peek_by_lookup_id(LookupAction::Previous(last.lookup_id()))
                .unwrap()
        ),
        "b"
    );
    assert_eq!(
        body(
            &q.receive_by_lookup_id(LookupAction::Current(b.lookup_id()), Tx::None)
                .unwrap()
        ),
        "b"
    );
    // Next/Previous work from a lookup id that has left the queue.
    assert_eq!(
        body(
            &q.peek_by_lookup_id(LookupAction::Next(b.lookup_id()))
                .unwrap()
        ),
        "c"
    );
    assert_eq!(
        body(
            &q.peek_by_lookup_id(LookupAction::Previous(b.lookup_id()))
                .unwrap()
        ),
        "a"
    );
    for action in [
        LookupAction::Current(b.lookup_id()),
        LookupAction::Next(last.lookup_id()),
        LookupAction::Previous(first.lookup_id()),
    ] {
        assert_eq!(
            code(q.peek_by_lookup_id(action)),
            ErrorCode::MessageNotFound,
            "{action:?}"
        );
    }
    assert_eq!(
        body(
            &q.receive_by_lookup_id(LookupAction::First, Tx::None)
                .unwrap()
        ),
        "a"
    );
    assert_eq!(
        body(
            &q.receive_by_lookup_id(LookupAction::Last, Tx::None)
                .unwrap()
        ),
        "c"
    );
    assert_eq!(
        code(q.receive_by_lookup_id(LookupAction::First, Tx::None)),
        ErrorCode::MessageNotFound
    );
}

#[test]
fn by_message_id_and_correlation_id() {
    let qm = qm();
    let q = qm
        .create_queue(r".\private$\q", QueueProps::default())
        .unwrap();
    let request = q.send(Message::new("request"), Tx::None).unwrap();
    q.send(Message::new("other"), Tx::None).unwrap();
    q.send(
        Message::new("reply-1").with_correlation_id(request),
        Tx::None,
    )
    .unwrap();
    q.send(
        Message::new("reply-2").with_correlation_id(request),
        Tx::None,
    )
    .unwrap();
    assert_eq!(body(&q.peek_by_id(&request).unwrap()), "request");
    assert_eq!(
        body(&q.peek_by_correlation_id(&request).unwrap()),
        "reply-1"
    );
    assert_eq!(
        body(&q.receive_by_correlation_id(&request, Tx::None).unwrap()),
        "reply-1"
    );
    assert_eq!(
        body(&q.receive_by_correlation_id(&request, Tx::None).unwrap()),
        "reply-2"
    );
    assert_eq!(
        code(q.receive_by_correlation_id(&request, Tx::None)),
        ErrorCode::MessageNotFound
    );
    assert_eq!(
        body(&q.receive_by_id(&request, Tx::None).unwrap()),
        "request"
    );
    assert_eq!(
        code(q.receive_by_id(&request, Tx::None)),
        ErrorCode::MessageNotFound
    );
    assert_eq!(bodies(&qm, r".\private$\q"), ["other"]);
}

// ---- 6. Transactions -------------------------------------------------------------------------

#[test]
fn sends_are_visible_iff_committed_across_queues() {
    let qm = qm();
    let a = qm
        .create_queue(r".\private$\a", QueueProps::transactional())
        .unwrap();
    let b = qm
        .create_queue(r".\private$\b", QueueProps::transactional())
        .unwrap();
    let tx = qm.begin();
    a.send(Message::new("a1"), Tx::In(&tx)).unwrap();
    b.send(Message::new("b1"), Tx::In(&tx)).unwrap();
    a.send(Message::new("a2"), Tx::In(&tx)).unwrap();
    assert!(
        a.is_empty().unwrap() && b.is_empty().unwrap(),
        "nothing before commit"
    );
    assert_eq!(code(a.peek(NOW)), ErrorCode::IoTimeout);
    tx.commit().unwrap();
    assert_eq!(bodies(&qm, r".\private$\a"), ["a1", "a2"]);
    assert_eq!(bodies(&qm, r".\private$\b"), ["b1"]);

    let aborted = qm.begin();
    a.send(Message::new("never"), Tx::In(&aborted)).unwrap();
    aborted.abort();
    let dropped = qm.begin();
    a.send(Message::new("never"), Tx::In(&dropped)).unwrap();
    drop(dropped);
    assert_eq!(bodies(&qm, r".\private$\a"), ["a1", "a2"]);
}

#[test]
fn received_message_is_locked_then_removed_on_commit_and_journaled() {
    let qm = qm();
    let props = QueueProps {
        journal: true,
        ..QueueProps::transactional()
    };
    let q = qm.create_queue(r".\private$\q", props).unwrap();
    q.send(Message::new("a"), Tx::Single).unwrap();
    q.send(Message::new("b"), Tx::Single).unwrap();
    let tx = qm.begin();
    let got = q.receive(NOW, Tx::In(&tx)).unwrap();
    assert_eq!(body(&got), "a");
    // Invisible to every other receiver, peeker and cursor.
    assert_eq!(body(&q.peek(NOW).unwrap()), "b");
    let other = qm.begin();
    assert_eq!(body(&q.receive(NOW, Tx::In(&other)).unwrap()), "b");
    assert_eq!(code(q.receive(NOW, Tx::None)), ErrorCode::IoTimeout);
    assert_eq!(
        code(q.receive_by_lookup_id(LookupAction::Current(got.lookup_id()), Tx::None)),
        ErrorCode::MessageLockedUnderTransaction
    );
    assert_eq!(
        code(q.peek_by_id(&got.id())),
        ErrorCode::MessageLockedUnderTransaction
    );
    assert!(qm
        .open(r"DIRECT=OS:.\private$\q;JOURNAL")
        .unwrap()
        .is_empty()
        .unwrap());
    tx.commit().unwrap();
    other.abort();
    assert_eq!(bodies(&qm, r".\private$\q"), ["b"]);
    assert_eq!(bodies(&qm, r".\private$\q\JOURNAL$"), ["a"]);
}

#[test]
fn an_absorbed_transaction_is_decided_with_the_one_that_took_it_over() {
    let qm = qm();
    let q = qm
        .create_queue(r".\private$\q", QueueProps::transactional())
        .unwrap();
    let out = qm
        .create_queue(r".\private$\out", QueueProps::transactional())
        .unwrap();
    for b in ["a", "b", "c"] {
        q.send(Message::new(b), Tx::Single).unwrap();
    }
    // Committed together: the receive it took over and its own send.
    let outer = qm.begin();
    let inner = qm.begin();
    assert_eq!(body(&q.receive(NOW, Tx::In(&inner)).unwrap()), "a");
    out.send(Message::new("sent"), Tx::In(&outer)).unwrap();
    outer.absorb(&inner).unwrap();
    assert_eq!(
        body(&q.peek(NOW).unwrap()),
        "b",
        "still held after the absorbed one ended"
    );
    outer.commit().unwrap();
    assert_eq!(bodies(&qm, r".\private$\q"), ["b", "c"]);
    assert_eq!(bodies(&qm, r".\private$\out"), ["sent"]);

    // Aborted together: the receive goes back to its place.
    let outer = qm.begin();
    let inner = qm.begin();
    assert_eq!(body(&q.receive(NOW, Tx::In(&inner)).unwrap()), "b");
    out.send(Message::new("never"), Tx::In(&outer)).unwrap();
    outer.absorb(&inner).unwrap();
    drop(outer);
    assert_eq!(bodies(&qm, r".\private$\q"), ["b", "c"]);
    assert_eq!(bodies(&qm, r".\private$\out"), ["sent"]);

    // Only another active internal transaction of the same queue manager.
    let t = qm.begin();
    assert_eq!(
        code(t.absorb(&QueueManager::new().begin())),
        ErrorCode::TransactionUsage
    );
    let ext = qm.begin_external("xid-1").unwrap();
    assert_eq!(code(t.absorb(&ext)), ErrorCode::TransactionUsage);
    assert_eq!(code(t.absorb(&t)), ErrorCode::TransactionUsage);
    // A refused one is untouched: it still holds its message, and aborting gives it back.
    let other_qm = QueueManager::new();
    let oq = other_qm
        .create_queue(r".\private$\q", QueueProps::transactional())
        .unwrap();
    oq.send(Message::new("x"), Tx::Single).unwrap();
    let foreign = other_qm.begin();
    oq.receive(NOW, Tx::In(&foreign)).unwrap();
    assert!(t.absorb(&foreign).is_err());
    drop(foreign);
    assert_eq!(bodies(&other_qm, r".\private$\q"), ["x"]);
}

#[test]
fn a_released_receive_goes_back_uncounted() {
    let qm = qm();
    let q = qm
        .create_queue(r".\private$\q", QueueProps::transactional())
        .unwrap();
    for b in ["a", "b"] {
        q.send(Message::new(b), Tx::Single).unwrap();
    }
    let t = qm.begin();
    assert_eq!(body(&q.receive(NOW, Tx::In(&t)).unwrap()), "a");
    t.release();
    let again = q.peek(NOW).unwrap();
    assert_eq!(body(&again), "a", "back at its place");
    assert_eq!(again.abort_count(), 0, "a release is not an abort");
    let t = qm.begin();
    q.receive(NOW, Tx::In(&t)).unwrap();
    t.abort();
    assert_eq!(q.peek(NOW).unwrap().abort_count(), 1);
}

#[test]
fn abort_restores_original_position_and_counts_aborts() {
    let qm = qm();
    let q = qm
        .create_queue(r".\private$\q", QueueProps::transactional())
        .unwrap();
    for b in ["a", "b", "c"] {
        q.send(Message::new(b), Tx::Single).unwrap();
    }
    let tx = qm.begin();
    let a = q.receive(NOW, Tx::In(&tx)).unwrap();
    let b = q.receive(NOW, Tx::In(&tx)).unwrap();
    tx.abort();
    assert_eq!(bodies(&qm, r".\private$\q"), ["a", "b", "c"]);
    let again = q.messages().unwrap();
    assert_eq!(again[0].abort_count(), 1);
    assert_eq!(again[1].abort_count(), 1);
    assert_eq!(again[2].abort_count(), 0);
    assert_eq!(
        (again[0].lookup_id(), again[1].lookup_id()),
        (a.lookup_id(), b.lookup_id())
    );
}

#[test]
fn a_message_sent_in_a_transaction_is_not_receivable_in_it() {
    let qm = qm();
    let q = qm
        .create_queue(r".\private$\q", QueueProps::transactional())
        .unwrap();
    let tx = qm.begin();
    q.send(Message::new("mine"), Tx::In(&tx)).unwrap();
    assert_eq!(code(q.receive(NOW, Tx::In(&tx))), ErrorCode::IoTimeout);
    tx.commit().unwrap();
    assert_eq!(body(&q.receive(NOW, Tx::Single).unwrap()), "mine");
}

#[test]
fn transactional_sends_are_coerced_as_msmq_does() {
    let qm = qm();
    let q = qm
        .create_queue(r".\private$\q", QueueProps::transactional())
        .unwrap();
    let tx = qm.begin();
    let first = Message::new("1")
        .with_priority(7)
        .with_time_to_be_received(Duration::from_secs(10))
        .with_time_to_reach_queue(Duration::from_secs(20));
    let second = Message::new("2")
        .with_priority(5)
        .with_time_to_be_received(Duration::from_secs(99))
        .with_delivery(Delivery::Express);
    q.send(first, Tx::In(&tx)).unwrap();
    q.send(second, Tx::In(&tx)).unwrap();
    tx.commit().unwrap();
    for m in q.messages().unwrap() {
        assert_eq!(m.priority, 0);
        assert_eq!(m.delivery, Delivery::Recoverable);
        assert_eq!(
            m.time_to_be_received,
            Some(Duration::from_secs(10)),
            "first message's TTBR"
        );
        assert_eq!(
            m.time_to_reach_queue,
            Some(Duration::from_secs(20)),
            "first message's TTRQ"
        );
        assert!(m.is_transactional());
    }
}

#[test]
fn transaction_usage_mismatches_are_refused() {
    let qm = qm();
    let t = qm
        .create_queue(r".\private$\t", QueueProps::transactional())
        .unwrap();
    let n = qm
        .create_queue(r".\private$\n", QueueProps::default())
        .unwrap();
    let tx = qm.begin();
    for (what, queue, tx) in [
        (
            "a send outside a transaction to a transactional queue",
            &t,
            Tx::None,
        ),
        (
            "a send in a transaction to a non-transactional queue",
            &n,
            Tx::In(&tx),
        ),
        (
            "a single-message transaction to a non-transactional queue",
            &n,
            Tx::Single,
        ),
    ] {
        assert_eq!(
            code(queue.send(Message::new("x"), tx)),
            ErrorCode::TransactionUsage,
            "{what}"
        );
    }
    n.send(Message::new("x"), Tx::None).unwrap();
    assert_eq!(
        code(n.receive(NOW, Tx::In(&tx))),
        ErrorCode::TransactionUsage
    );
    assert_eq!(n.len().unwrap(), 1, "refused receive changed nothing");
    // A non-transactional receive from a transactional queue is allowed (MSMQ does too).
    t.send(Message::new("y"), Tx::Single).unwrap();
    assert_eq!(body(&t.receive(NOW, Tx::None).unwrap()), "y");
    // A transaction of another queue manager is refused.
    let other = QueueManager::new();
    let foreign = other.begin();
    assert_eq!(
        code(t.send(Message::new("x"), Tx::In(&foreign))),
        ErrorCode::TransactionUsage
    );
}

#[test]
fn single_message_transactions() {
    let qm = qm();
    let q = qm
        .create_queue(r".\private$\q", QueueProps::transactional())
        .unwrap();
    q.send(Message::new("x"), Tx::Single).unwrap();
    assert_eq!(q.len().unwrap(), 1);
    assert_eq!(body(&q.receive(NOW, Tx::Single).unwrap()), "x");
    assert!(q.is_empty().unwrap());
}

#[test]
fn external_transactions_follow_two_phase_commit() {
    let coordinator = LocalCoordinator::new();
    let qm = QueueManager::builder()
        .coordinator(coordinator.clone())
        .build();
    let q = qm
        .create_queue(r".\private$\q", QueueProps::transactional())
        .unwrap();
    q.send(Message::new("in"), Tx::Single).unwrap();

    let tx = qm.begin_external("xid-1").unwrap();
    assert!(tx.is_external());
    q.send(Message::new("out"), Tx::In(&tx)).unwrap();
    let got = q.receive(NOW, Tx::In(&tx)).unwrap();
    tx.prepare().unwrap();
    assert_eq!(
        code(q.send(Message::new("late"), Tx::In(&tx))),
        ErrorCode::TransactionSequence
    );
    assert_eq!(
        code(q.receive(NOW, Tx::In(&tx))),
        ErrorCode::TransactionSequence
    );
    assert_eq!(code(tx.prepare()), ErrorCode::TransactionSequence);
    assert!(
        q.messages().unwrap().is_empty(),
        "prepared is not committed"
    );
    tx.commit().unwrap();
    assert_eq!(body(&got), "in");
    assert_eq!(bodies(&qm, r".\private$\q"), ["out"]);

    let unprepared = qm.begin_external("xid-2").unwrap();
    q.receive(NOW, Tx::In(&unprepared)).unwrap();
    assert_eq!(code(unprepared.commit()), ErrorCode::TransactionSequence);
    assert_eq!(
        bodies(&qm, r".\private$\q"),
        ["out"],
        "a refused commit aborts"
    );

    assert_eq!(code(qm.begin().prepare()), ErrorCode::TransactionUsage);

    // The coordinator goes offline: no new external work, internal work goes on.
    let in_flight = qm.begin_external("xid-3").unwrap();
    coordinator.set_available(false);
    assert_eq!(code(qm.begin_external("xid-4")), ErrorCode::DtcConnect);
    assert_eq!(code(in_flight.prepare()), ErrorCode::DtcConnect);
    q.send(Message::new("internal"), Tx::Single).unwrap();
    coordinator.set_available(true);
    qm.begin_external("xid-5").unwrap().abort();
}

// ---- 7. Expiry, dead letters, acknowledgements, quotas ---------------------------------------

fn admin_setup(qm: &QueueManager) -> QueueName {
    qm.create_queue(r".\private$\admin", QueueProps::default())
        .unwrap();
    QueueName::parse(r".\private$\admin").unwrap()
}

#[test]
fn ttbr_expiry_dead_letters_by_the_clock() {
    let (qm, clock) = manual();
    let admin = admin_setup(&qm);
    let n = qm
        .create_queue(r".\private$\n", QueueProps::default())
        .unwrap();
    let t = qm
        .create_queue(r".\private$\t", QueueProps::transactional())
        .unwrap();
    let ttbr = Duration::from_secs(10);
    n.send(
        Message::new("flagged")
            .with_time_to_be_received(ttbr)
            .with_journal(JournalFlags::DEADLETTER)
            .with_acknowledge(admin.clone(), Acknowledge::NACK_RECEIVE),
        Tx::None,
    )
    .unwrap();
    n.send(
        Message::new("unflagged").with_time_to_be_received(ttbr),
        Tx::None,
    )
    .unwrap();
    n.send(Message::new("forever"), Tx::None).unwrap();
    t.send(
        Message::new("xact").with_time_to_be_received(ttbr),
        Tx::Single,
    )
    .unwrap();
    clock.advance(Duration::from_secs(9));
    assert_eq!(n.len().unwrap(), 3);
    clock.advance(Duration::from_secs(1));
    // The timer moves them without anyone touching the queues.
    eventually("the expired transactional message is dead-lettered", || {
        qm.open(r".\system$;DEADXACT").unwrap().len().unwrap() == 1
    });
    eventually("the expired messages leave the queue", || {
        n.len().unwrap() == 1
    });
    assert_eq!(bodies(&qm, r".\private$\n"), ["forever"]);
    assert!(t.is_empty().unwrap());
    let dlq = qm
        .open(r".\system$;DEADLETTER")
        .unwrap()
        .messages()
        .unwrap();
    assert_eq!(dlq.iter().map(body).collect::<Vec<_>>(), ["flagged"]);
    assert_eq!(dlq[0].class(), MessageClass::NACK_RECEIVE_TIMEOUT);
    let xdlq = qm.open(r".\XACTDEADLETTER$").unwrap().messages().unwrap();
    assert_eq!(body(&xdlq[0]), "xact");
    assert_eq!(xdlq[0].class(), MessageClass::NACK_RECEIVE_TIMEOUT);
    let nacks = qm.open(r".\private$\admin").unwrap().messages().unwrap();
    assert_eq!(nacks.len(), 1);
    assert_eq!(nacks[0].class(), MessageClass::NACK_RECEIVE_TIMEOUT);
    assert_eq!(nacks[0].correlation_id, Some(dlq[0].id()));
    // Dead letters themselves do not expire.
    clock.advance(Duration::from_secs(3600));
    assert_eq!(qm.open(r".\system$;DEADLETTER").unwrap().len().unwrap(), 1);
}

#[test]
fn expired_message_is_never_received() {
    let (qm, clock) = manual();
    let q = qm
        .create_queue(r".\private$\q", QueueProps::default())
        .unwrap();
    q.send(
        Message::new("stale").with_time_to_be_received(Duration::from_secs(1)),
        Tx::None,
    )
    .unwrap();
    q.send(Message::new("fresh"), Tx::None).unwrap();
    clock.advance(Duration::from_secs(1));
    // Even before the timer thread runs, a receive skips it.
    assert_eq!(body(&q.receive(NOW, Tx::None).unwrap()), "fresh");
}

#[test]
fn ttrq_expired_before_commit_goes_to_the_transactional_dead_letter_queue() {
    let (qm, clock) = manual();
    let admin = admin_setup(&qm);
    let q = qm
        .create_queue(r".\private$\q", QueueProps::transactional())
        .unwrap();
    let tx = qm.begin();
    let m = Message::new("slow")
        .with_time_to_reach_queue(Duration::from_secs(5))
        .with_acknowledge(admin, Acknowledge::FULL_REACH_QUEUE);
    q.send(m, Tx::In(&tx)).unwrap();
    clock.advance(Duration::from_secs(6));
    tx.commit().unwrap();
    assert!(q.is_empty().unwrap());
    let x = qm.open(r".\system$;DEADXACT").unwrap().messages().unwrap();
    assert_eq!(x[0].class(), MessageClass::NACK_REACH_QUEUE_TIMEOUT);
    let acks = qm.open(r".\private$\admin").unwrap().messages().unwrap();
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].class(), MessageClass::NACK_REACH_QUEUE_TIMEOUT);
}

#[test]
fn positive_acknowledgements_for_arrival_and_receive() {
    let qm = qm();
    let admin = admin_setup(&qm);
    let q = qm
        .create_queue(r".\private$\q", QueueProps::default())
        .unwrap();
    let id = q
        .send(
            Message::new("x").with_label("hello").with_acknowledge(
                admin.clone(),
                Acknowledge::FULL_RECEIVE | Acknowledge::POS_ARRIVAL,
            ),
            Tx::None,
        )
        .unwrap();
    q.send(
        Message::new("quiet").with_acknowledge(admin, Acknowledge::NONE),
        Tx::None,
    )
    .unwrap();
    let admin_q = qm.open(r".\private$\admin").unwrap();
    let arrival = admin_q.receive(NOW, Tx::None).unwrap();
    assert_eq!(arrival.class(), MessageClass::ACK_REACH_QUEUE);
    assert_eq!(arrival.correlation_id, Some(id));
    assert_eq!(arrival.label, "hello");
    assert!(arrival.body.is_empty());
    assert!(
        admin_q.is_empty().unwrap(),
        "no ack for a message that asked for none"
    );
    q.receive(NOW, Tx::None).unwrap();
    q.receive(NOW, Tx::None).unwrap();
    let receipt = admin_q.receive(NOW, Tx::None).unwrap();
    assert_eq!(receipt.class(), MessageClass::ACK_RECEIVE);
    assert_eq!(receipt.correlation_id, Some(id));
    assert!(admin_q.is_empty().unwrap());
}

#[test]
fn acknowledgement_of_a_transactional_receive_waits_for_commit() {
    let qm = qm();
    let admin = admin_setup(&qm);
    let q = qm
        .create_queue(r".\private$\q", QueueProps::transactional())
        .unwrap();
    q.send(
        Message::new("x").with_acknowledge(admin, Acknowledge::POS_RECEIVE),
        Tx::Single,
    )
    .unwrap();
    let admin_q = qm.open(r".\private$\admin").unwrap();
    let tx = qm.begin();
    q.receive(NOW, Tx::In(&tx)).unwrap();
    assert!(admin_q.is_empty().unwrap());
    tx.abort();
    assert!(
        admin_q.is_empty().unwrap(),
        "an aborted receive is no receipt"
    );
    let tx = qm.begin();
    q.receive(NOW, Tx::In(&tx)).unwrap();
    tx.commit().unwrap();
    assert_eq!(
        admin_q.receive(NOW, Tx::None).unwrap().class(),
        MessageClass::ACK_RECEIVE
    );
}

#[test]
fn source_journaling_copies_to_the_computer_journal() {
    let qm = qm();
    let q = qm
        .create_queue(r".\private$\q", QueueProps::default())
        .unwrap();
    q.send(
        Message::new("kept").with_journal(JournalFlags::JOURNAL),
        Tx::None,
    )
    .unwrap();
    q.send(Message::new("not"), Tx::None).unwrap();
    assert_eq!(bodies(&qm, r".\system$;JOURNAL"), ["kept"]);
}

#[test]
fn quota_refuses_a_send_and_changes_nothing_else() {
    let qm = qm();
    let admin = admin_setup(&qm);
    let props = QueueProps {
        quota_kb: Some(1),
        ..QueueProps::default()
    };
    let q = qm.create_queue(r".\private$\q", props).unwrap();
    q.send(Message::new(vec![0u8; 1000]), Tx::None).unwrap();
    let over = Message::new(vec![0u8; 100]).with_acknowledge(admin, Acknowledge::NACK_REACH_QUEUE);
    let err = q.send(over, Tx::None).unwrap_err();
    assert_eq!(err.code(), ErrorCode::InsufficientResources);
    assert!(err.detail().contains("0x8003"), "{err}");
    assert_eq!(q.len().unwrap(), 1);
    assert_eq!(qm.queue_info(r".\private$\q").unwrap().bytes, 1000);
    let nack = qm
        .open(r".\private$\admin")
        .unwrap()
        .receive(NOW, Tx::None)
        .unwrap();
    assert_eq!(nack.class(), MessageClass::NACK_Q_EXCEED_QUOTA);
    q.send(Message::new(vec![0u8; 24]), Tx::None).unwrap();
    // Transactional sends count what the transaction already staged.
    let tq = qm
        .create_queue(
            r".\private$\t",
            QueueProps {
                quota_kb: Some(1),
                ..QueueProps::transactional()
            },
        )
        .unwrap();
    let tx = qm.begin();
    tq.send(Message::new(vec![0u8; 600]), Tx::In(&tx)).unwrap();
    assert_eq!(
        code(tq.send(Message::new(vec![0u8; 600]), Tx::In(&tx))),
        ErrorCode::InsufficientResources
    );
    tx.commit().unwrap();
    assert_eq!(tq.len().unwrap(), 1);
}

#[test]
fn deleting_a_queue_nacks_and_dead_letters_its_messages() {
    let qm = qm();
    let admin = admin_setup(&qm);
    let q = qm
        .create_queue(r".\private$\q", QueueProps::transactional())
        .unwrap();
    q.send(
        Message::new("x").with_acknowledge(admin, Acknowledge::NEG_RECEIVE),
        Tx::Single,
    )
    .unwrap();
    let empty = qm
        .create_queue(r".\private$\empty", QueueProps::default())
        .unwrap();
    let waiter = {
        let q2 = empty.clone();
        thread::spawn(move || q2.receive(INFINITE, Tx::None))
    };
    until_waiting(&empty, 1);
    qm.delete_queue(r".\private$\empty").unwrap();
    assert_eq!(code(waiter.join().unwrap()), ErrorCode::QueueDeleted);
    qm.delete_queue(r".\private$\q").unwrap();
    assert_eq!(
        qm.open(r".\private$\admin")
            .unwrap()
            .receive(NOW, Tx::None)
            .unwrap()
            .class(),
        MessageClass::NACK_Q_DELETED
    );
    assert_eq!(
        qm.open(r".\system$;DEADXACT")
            .unwrap()
            .receive(NOW, Tx::None)
            .unwrap()
            .class(),
        MessageClass::NACK_Q_DELETED
    );
}

#[test]
fn journal_quota_drops_journal_copies_not_receives() {
    let qm = qm();
    let props = QueueProps {
        journal: true,
        journal_quota_kb: Some(1),
        ..QueueProps::default()
    };
    let q = qm.create_queue(r".\private$\q", props).unwrap();
    for _ in 0..3 {
        q.send(Message::new(vec![0u8; 600]), Tx::None).unwrap();
    }
    for _ in 0..3 {
        q.receive(NOW, Tx::None).unwrap();
    }
    assert_eq!(
        qm.open(r"DIRECT=OS:.\private$\q;JOURNAL")
            .unwrap()
            .len()
            .unwrap(),
        1
    );
}

// ---- 8. MSMQ 4.0 behaviour -------------------------------------------------------------------

#[test]
fn subqueues_are_made_by_moves_and_vanish_when_empty() {
    let qm = qm();
    let q = qm
        .create_queue(r".\private$\q", QueueProps::transactional())
        .unwrap();
    for b in ["a", "b"] {
        q.send(Message::new(b), Tx::Single).unwrap();
    }
    let poison = qm.open(r".\private$\q;poison").unwrap();
    assert_eq!(
        code(poison.send(Message::new("x"), Tx::Single)),
        ErrorCode::UnsupportedAccessMode
    );
    // A failed receive first, so the abort count has something to reset.
    let tx = qm.begin();
    let a = q.receive(NOW, Tx::In(&tx)).unwrap();
    tx.abort();
    assert_eq!(q.peek(NOW).unwrap().abort_count(), 1);
    q.move_message(a.lookup_id(), &poison, Tx::Single).unwrap();
    assert_eq!(
        qm.queue_info(r".\private$\q").unwrap().subqueues,
        ["poison"]
    );
    let moved = poison.peek(NOW).unwrap();
    assert_eq!(
        (body(&moved), moved.move_count(), moved.abort_count()),
        ("a", 1, 0)
    );
    assert_eq!(bodies(&qm, r".\private$\q"), ["b"]);
    // A transactional move happens at commit; abort leaves it where it was.
    let tx = qm.begin();
    poison
        .move_message(moved.lookup_id(), &q, Tx::In(&tx))
        .unwrap();
    assert!(
        poison.messages().unwrap().is_empty(),
        "locked while the move is pending"
    );
    tx.abort();
    assert_eq!(poison.len().unwrap(), 1);
    let tx = qm.begin();
    poison
        .move_message(moved.lookup_id(), &q, Tx::In(&tx))
        .unwrap();
    tx.commit().unwrap();
    // A move keeps the lookup id (ids belong to the queue and its subqueues together), so the
    // message comes back to its original position.
    assert_eq!(bodies(&qm, r".\private$\q"), ["a", "b"]);
    assert_eq!(q.messages().unwrap()[0].move_count(), 2);
    assert_eq!(q.messages().unwrap()[0].lookup_id(), a.lookup_id());
    assert!(
        qm.queue_info(r".\private$\q").unwrap().subqueues.is_empty(),
        "empty subqueue removed"
    );
    // Moves stay inside one queue's family.
    let other = qm
        .create_queue(r".\private$\other", QueueProps::transactional())
        .unwrap();
    let b = q.peek(NOW).unwrap();
    assert_eq!(
        code(q.move_message(b.lookup_id(), &other, Tx::Single)),
        ErrorCode::IllegalOperation
    );
    assert_eq!(
        code(q.move_message(999, &poison, Tx::Single)),
        ErrorCode::MessageNotFound
    );
}

#[test]
fn subqueue_receive_then_empty_is_removed() {
    let qm = qm();
    let q = qm
        .create_queue(r".\private$\q", QueueProps::default())
        .unwrap();
    q.send(Message::new("a"), Tx::None).unwrap();
    let retry = qm.open(r"DIRECT=OS:.\private$\q;retry").unwrap();
    let a = q.peek(NOW).unwrap();
    q.move_message(a.lookup_id(), &retry, Tx::None).unwrap();
    assert_eq!(qm.queue_info(r".\private$\q").unwrap().subqueues, ["retry"]);
    assert_eq!(body(&retry.receive(NOW, Tx::None).unwrap()), "a");
    assert!(qm.queue_info(r".\private$\q").unwrap().subqueues.is_empty());
}

#[test]
fn reject_sends_nack_0xc004_and_dead_letters() {
    let qm = qm();
    let admin = admin_setup(&qm);
    let q = qm
        .create_queue(r".\private$\q", QueueProps::transactional())
        .unwrap();
    q.send(
        Message::new("bad").with_acknowledge(admin, Acknowledge::NACK_RECEIVE),
        Tx::Single,
    )
    .unwrap();
    let m = q.peek(NOW).unwrap();
    q.reject(m.lookup_id()).unwrap();
    assert!(q.is_empty().unwrap());
    let nack = qm
        .open(r".\private$\admin")
        .unwrap()
        .receive(NOW, Tx::None)
        .unwrap();
    assert_eq!(nack.class(), MessageClass::NACK_RECEIVE_REJECTED);
    assert_eq!(nack.class().0, 0xC004);
    assert_eq!(body(&nack), "bad", "a NACK carries the original body");
    let x = qm
        .open(r".\system$;DEADXACT")
        .unwrap()
        .receive(NOW, Tx::None)
        .unwrap();
    assert_eq!(x.class(), MessageClass::NACK_RECEIVE_REJECTED);
    assert_eq!(code(q.reject(m.lookup_id())), ErrorCode::MessageNotFound);
}

#[test]
fn msmq3_has_no_subqueues_moves_or_rejects() {
    let qm = QueueManager::builder().compat(Compat::Msmq3).build();
    let q = qm
        .create_queue(r".\private$\q", QueueProps::default())
        .unwrap();
    q.send(Message::new("a"), Tx::None).unwrap();
    let m = q.peek(NOW).unwrap();
    for (what, refusal) in [
        ("opening a subqueue", code(qm.open(r".\private$\q;poison"))),
        ("reject", code(q.reject(m.lookup_id()))),
        ("move", code(q.move_message(m.lookup_id(), &q, Tx::None))),
    ] {
        assert_eq!(refusal, ErrorCode::UnsupportedOperation, "{what}");
    }
    assert_eq!(q.len().unwrap(), 1);
    assert_eq!("msmq3".parse::<Compat>().unwrap(), Compat::Msmq3);
    assert_eq!(code("msmq5".parse::<Compat>()), ErrorCode::InvalidParameter);
    assert_eq!(QueueManager::new().compat(), Compat::Msmq4);
}

/// A receive takes the queue's head even while newer messages wait in the producers' inbox, not
/// yet in the ordered state: a higher-priority one sent after a lower-priority message was
/// already brought in comes first, a same-priority one after it; one at a time and in a batch.
#[test]
fn a_higher_priority_send_overtakes_what_a_receiver_already_holds() {
    let qm = QueueManager::new();
    let q = qm
        .create_queue(r".\private$\overtake", QueueProps::default())
        .unwrap();
    let send = |body: &str, priority: u8| {
        q.send(
            Message::new(body.to_owned()).with_priority(priority),
            Tx::None,
        )
        .unwrap();
    };
    let body = |m: Message| m.body_str().unwrap().to_owned();
    send("a3", 3);
    send("b3", 3);
    // Brings a3 and b3 into the ordered state, takes a3.
    assert_eq!(body(q.receive(Duration::ZERO, Tx::None).unwrap()), "a3");
    send("c5", 5);
    send("d3", 3);
    assert_eq!(body(q.receive(Duration::ZERO, Tx::None).unwrap()), "c5");
    assert_eq!(body(q.receive(Duration::ZERO, Tx::None).unwrap()), "b3");
    send("e6", 6);
    send("f1", 1);
    let batch: Vec<String> = q
        .receive_batch(10, Tx::None)
        .unwrap()
        .into_iter()
        .map(body)
        .collect();
    assert_eq!(batch, ["e6", "d3", "f1"]);
}
