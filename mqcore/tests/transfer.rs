//! Transfer between two queue managers in one process, with the engine's transfer face pumped by
//! hand: exactly once and in order through resends, lost answers, restarts and compaction;
//! rejections with their NACK classes; pause and resume; acknowledgements that travel back.

mod common;

use std::path::Path;

use common::{bodies, body};
use mqcore::transfer::{Inbound, Outbound, OutgoingQueue, Reply, Seq, Verdict};
use mqcore::{
    Acknowledge, Delivery, Message, MessageClass, QueueManager, QueueName, QueueProps, Tx,
};

const A: &str = "127.0.0.2";
const B: &str = "127.0.0.3";

fn qm_at(addr: &str) -> QueueManager {
    QueueManager::builder()
        .name(format!("qm{addr}"))
        .address(addr)
        .build()
}

fn durable_at(addr: &str, dir: &Path) -> QueueManager {
    QueueManager::builder()
        .name(format!("qm{addr}"))
        .address(addr)
        .segment_size(64 * 1024)
        .open(dir)
        .unwrap()
}

fn tx_queue() -> QueueProps {
    QueueProps {
        transactional: true,
        ..QueueProps::default()
    }
}

fn remote(addr: &str, q: &str) -> String {
    format!("DIRECT=TCP:{addr}\\private$\\{q}")
}

/// One batch of every outgoing queue of `from` to `to`, as a transfer task would send it.
/// With `lose_answer`, the receiver's answers are dropped (the connection died after it
/// committed). Returns the verdicts.
fn pump_once(from: &QueueManager, to: &QueueManager, lose_answer: bool) -> Vec<Verdict> {
    let mut all = Vec::new();
    for out in from.transfer().outgoing() {
        let mut cursor = out.start();
        let batch = out.next_batch(&mut cursor, 1000, u64::MAX);
        if batch.is_empty() {
            continue;
        }
        let sent: Vec<(u64, Option<Seq>)> = batch.iter().map(|b| (b.lookup, b.seq)).collect();
        let items = batch
            .into_iter()
            .map(|b| Inbound {
                seq: b.seq,
                msg: (!b.withdraw).then_some(b.msg),
            })
            .collect();
        let reply = to
            .transfer()
            .accept(from.guid(), out.sequence(), out.remote_path(), true, items)
            .unwrap();
        all.extend(reply.verdicts.iter().copied());
        if !lose_answer {
            out.settle(&sent, &reply).unwrap();
        }
    }
    all
}

/// Pumps until nothing is left to send.
fn pump(from: &QueueManager, to: &QueueManager) {
    for _ in 0..100 {
        if pump_once(from, to, false).is_empty() {
            return;
        }
    }
    panic!("transfer did not settle");
}

fn outgoing_len(qm: &QueueManager) -> usize {
    qm.transfer()
        .outgoing()
        .iter()
        .map(|o| o.info().messages)
        .sum()
}

#[test]
fn transactional_messages_arrive_once_in_order_through_lost_answers() {
    let a = qm_at(A);
    let b = qm_at(B);
    b.create_queue(".\\private$\\orders", tx_queue()).unwrap();
    let dest = a.open(&remote(B, "orders")).unwrap();
    for i in 0..5 {
        let t = a.begin();
        dest.send(Message::new(format!("m{i}")), Tx::In(&t))
            .unwrap();
        t.commit().unwrap();
    }
    assert_eq!(outgoing_len(&a), 5);
    // The receiver commits, the answer is lost: the resend finds every message a duplicate.
    assert_eq!(pump_once(&a, &b, true), vec![Verdict::Accepted; 5]);
    assert_eq!(pump_once(&a, &b, false), vec![Verdict::Duplicate; 5]);
    assert_eq!(outgoing_len(&a), 0);
    let t = a.begin();
    dest.send(Message::new("m5"), Tx::In(&t)).unwrap();
    t.commit().unwrap();
    pump(&a, &b);
    assert_eq!(
        bodies(&b, ".\\private$\\orders"),
        ["m0", "m1", "m2", "m3", "m4", "m5"]
    );
}

/// Two queue managers, A having sent "m0".."m2" in transactions to B's transactional queue, and
/// A's first batch of them, read and not yet sent.
fn three_sent_in_transactions() -> (QueueManager, QueueManager, OutgoingQueue, Vec<Outbound>) {
    let a = qm_at(A);
    let b = qm_at(B);
    b.create_queue(".\\private$\\orders", tx_queue()).unwrap();
    let dest = a.open(&remote(B, "orders")).unwrap();
    for i in 0..3 {
        dest.send(Message::new(format!("m{i}")), Tx::Single)
            .unwrap();
    }
    let out = a.transfer().outgoing()[0].clone();
    let mut cursor = out.start();
    let batch = out.next_batch(&mut cursor, 10, u64::MAX);
    (a, b, out, batch)
}

#[test]
fn a_message_whose_predecessor_is_missing_waits() {
    let (a, b, out, batch) = three_sent_in_transactions();
    let out = &out;
    // Only the second and third reach the receiver: both wait for the first.
    let items: Vec<Inbound> = batch[1..]
        .iter()
        .map(|b| Inbound {
            seq: b.seq,
            msg: Some(b.msg.clone()),
        })
        .collect();
    let reply = b
        .transfer()
        .accept(a.guid(), out.sequence(), out.remote_path(), true, items)
        .unwrap();
    assert_eq!(reply.verdicts, vec![Verdict::Gap; 2]);
    assert!(bodies(&b, ".\\private$\\orders").is_empty());
    pump(&a, &b);
    assert_eq!(bodies(&b, ".\\private$\\orders"), ["m0", "m1", "m2"]);
}

/// An SRMP sender's `<previous>` names the last message it sent, passing over one it let expire
/// unsent: the receiver takes the next message when it holds that one (or later), and still
/// waits when it does not.
#[test]
fn a_message_may_follow_a_predecessor_before_its_withdrawn_one() {
    let (a, b, out, batch) = three_sent_in_transactions();
    let out = &out;
    let send = |i: usize, prev: u64| {
        let seq = batch[i].seq.map(|s| Seq { n: s.n, prev });
        let items = vec![Inbound {
            seq,
            msg: Some(batch[i].msg.clone()),
        }];
        b.transfer()
            .accept(a.guid(), out.sequence(), out.remote_path(), true, items)
            .unwrap()
            .verdicts
    };
    let n = |i: usize| batch[i].seq.unwrap().n;
    // Before the first arrives, a message that follows it waits.
    assert_eq!(send(2, n(0)), vec![Verdict::Gap]);
    assert_eq!(send(0, 0), vec![Verdict::Accepted]);
    // m1 withdrawn unsent: m2 names m0 as its predecessor and is taken.
    assert_eq!(send(2, n(0)), vec![Verdict::Accepted]);
    // m1 can no longer come in between.
    assert_eq!(send(1, n(0)), vec![Verdict::Duplicate]);
    assert_eq!(bodies(&b, ".\\private$\\orders"), ["m0", "m2"]);
}

#[test]
fn a_transaction_mixes_local_and_remote_sends_and_an_abort_sends_nothing() {
    let a = qm_at(A);
    let b = qm_at(B);
    a.create_queue(".\\private$\\local", tx_queue()).unwrap();
    b.create_queue(".\\private$\\orders", tx_queue()).unwrap();
    let t = a.begin();
    a.send(".\\private$\\local", Message::new("here"), Tx::In(&t))
        .unwrap();
    a.send(&remote(B, "orders"), Message::new("there"), Tx::In(&t))
        .unwrap();
    t.abort();
    assert_eq!(outgoing_len(&a), 0);
    let t = a.begin();
    a.send(".\\private$\\local", Message::new("here"), Tx::In(&t))
        .unwrap();
    a.send(&remote(B, "orders"), Message::new("there"), Tx::In(&t))
        .unwrap();
    // Nothing is sendable before the commit.
    assert!(pump_once(&a, &b, false).is_empty());
    t.commit().unwrap();
    pump(&a, &b);
    assert_eq!(bodies(&a, ".\\private$\\local"), ["here"]);
    assert_eq!(bodies(&b, ".\\private$\\orders"), ["there"]);
}

#[test]
fn names_of_other_computers_reach_them_through_the_host_map() {
    let a = QueueManager::builder()
        .name("alpha")
        .address(A)
        .host("beta", B)
        .build();
    let b = qm_at(B);
    b.create_queue(".\\private$\\orders", QueueProps::default())
        .unwrap();
    a.send(
        "beta\\private$\\orders",
        Message::new("by path").with_delivery(Delivery::Recoverable),
        Tx::None,
    )
    .unwrap();
    a.send(
        "DIRECT=OS:beta\\private$\\orders",
        Message::new("by direct name"),
        Tx::None,
    )
    .unwrap();
    let hosts: Vec<String> = a
        .transfer()
        .outgoing()
        .iter()
        .map(|o| o.host().to_owned())
        .collect();
    assert_eq!(hosts, ["beta"]);
    assert_eq!(a.address_of("beta"), Some(B));
    pump(&a, &b);
    assert_eq!(
        bodies(&b, ".\\private$\\orders"),
        ["by path", "by direct name"]
    );
    // Receives go to the queue's own queue manager.
    let err = a
        .open("beta\\private$\\orders")
        .unwrap()
        .receive(std::time::Duration::ZERO, Tx::None);
    assert_eq!(
        err.unwrap_err().code(),
        mqcore::ErrorCode::UnsupportedOperation
    );
}

/// Every rejection the destination can give: its class, where the sender's copy goes, and the
/// NACK in the sender's admin queue.
#[test]
fn rejections_come_back_with_their_class_and_dead_letter_at_the_sender() {
    struct Case {
        what: &'static str,
        queue: &'static str,
        transactional: bool,
        body: usize,
        allowed: bool,
        class: MessageClass,
    }
    let cases = [
        Case {
            what: "queue not found",
            queue: "missing",
            transactional: true,
            body: 1,
            allowed: true,
            class: MessageClass::NACK_BAD_DST_Q,
        },
        Case {
            what: "transactional message to a non-transactional queue",
            queue: "plain",
            transactional: true,
            body: 1,
            allowed: true,
            class: MessageClass::NACK_NOT_TRANSACTIONAL_Q,
        },
        Case {
            what: "non-transactional message to a transactional queue",
            queue: "orders",
            transactional: false,
            body: 1,
            allowed: true,
            class: MessageClass::NACK_NOT_TRANSACTIONAL_MSG,
        },
        Case {
            what: "over quota",
            queue: "small",
            transactional: false,
            body: 2048,
            allowed: true,
            class: MessageClass::NACK_Q_EXCEED_QUOTA,
        },
        Case {
            what: "too large for the destination",
            queue: "plain",
            transactional: false,
            body: 9000,
            allowed: true,
            class: MessageClass::NACK_MESSAGE_TOO_LARGE,
        },
        Case {
            what: "access denied",
            queue: "orders",
            transactional: true,
            body: 1,
            allowed: false,
            class: MessageClass::NACK_ACCESS_DENIED,
        },
    ];
    for c in cases {
        let a = qm_at(A);
        let b = QueueManager::builder()
            .name("qmb")
            .address(B)
            .max_message_size(8192)
            .build();
        a.create_queue(".\\private$\\admin", QueueProps::default())
            .unwrap();
        b.create_queue(".\\private$\\orders", tx_queue()).unwrap();
        b.create_queue(".\\private$\\plain", QueueProps::default())
            .unwrap();
        b.create_queue(
            ".\\private$\\small",
            QueueProps {
                quota_kb: Some(1),
                ..QueueProps::default()
            },
        )
        .unwrap();
        let admin = QueueName::parse(".\\private$\\admin").unwrap();
        let msg = Message::new(vec![b'x'; c.body])
            .with_delivery(Delivery::Recoverable)
            .with_journal(mqcore::JournalFlags::DEADLETTER)
            .with_acknowledge(admin, Acknowledge::NACK_REACH_QUEUE);
        let tx = if c.transactional {
            Tx::Single
        } else {
            Tx::None
        };
        a.send(&remote(B, c.queue), msg, tx).unwrap();
        // A transactional message behind the rejected one in another sequence is not held up.
        a.send(&remote(B, "orders"), Message::new("behind"), Tx::Single)
            .unwrap();
        for out in a.transfer().outgoing() {
            let mut cursor = out.start();
            let batch = out.next_batch(&mut cursor, 10, u64::MAX);
            let sent: Vec<_> = batch.iter().map(|b| (b.lookup, b.seq)).collect();
            let allowed = c.allowed || out.remote_path() != ".\\private$\\orders";
            let first_is_case = out.remote_path().ends_with(c.queue);
            let items = batch
                .into_iter()
                .map(|b| Inbound {
                    seq: b.seq,
                    msg: Some(b.msg),
                })
                .collect();
            let reply: Reply = b
                .transfer()
                .accept(a.guid(), out.sequence(), out.remote_path(), allowed, items)
                .unwrap();
            if first_is_case {
                assert_eq!(reply.verdicts[0], Verdict::Rejected(c.class), "{}", c.what);
            }
            out.settle(&sent, &reply).unwrap();
        }
        assert_eq!(outgoing_len(&a), 0, "{}", c.what);
        let dlq = if c.transactional {
            "DIRECT=OS:.\\SYSTEM$;DEADXACT"
        } else {
            "DIRECT=OS:.\\SYSTEM$;DEADLETTER"
        };
        let dead = a.open(dlq).unwrap().messages().unwrap();
        // Denied access refuses the message behind it too: it goes to the same queue.
        let refused = if c.allowed { 1 } else { 2 };
        assert_eq!(dead.len(), refused, "{}", c.what);
        assert_eq!(dead[0].class(), c.class, "{}", c.what);
        let nack = a
            .receive(".\\private$\\admin", std::time::Duration::ZERO, Tx::None)
            .unwrap();
        assert_eq!(nack.class(), c.class, "{}", c.what);
        let behind_ok = c.allowed || c.queue != "orders";
        if behind_ok {
            let got = b.open(".\\private$\\orders").unwrap().messages().unwrap();
            assert_eq!(got.last().map(body), Some("behind"), "{}", c.what);
        }
    }
}

#[test]
fn pause_keeps_the_messages_and_resume_sends_them_in_order() {
    let a = qm_at(A);
    let b = qm_at(B);
    b.create_queue(".\\private$\\orders", tx_queue()).unwrap();
    a.send(&remote(B, "orders"), Message::new("m0"), Tx::Single)
        .unwrap();
    let out = a.transfer().find(&remote(B, "orders")).unwrap();
    out.pause();
    a.send(&remote(B, "orders"), Message::new("m1"), Tx::Single)
        .unwrap();
    assert!(pump_once(&a, &b, false).is_empty());
    assert!(out.info().paused);
    assert_eq!(out.info().messages, 2);
    out.resume();
    pump(&a, &b);
    assert_eq!(bodies(&b, ".\\private$\\orders"), ["m0", "m1"]);
}

#[test]
fn acknowledgements_travel_back_to_the_senders_admin_queue() {
    let a = qm_at(A);
    let b = qm_at(B);
    a.create_queue(".\\private$\\admin", QueueProps::default())
        .unwrap();
    b.create_queue(".\\private$\\orders", tx_queue()).unwrap();
    let admin = QueueName::parse(&remote(A, "admin")).unwrap();
    let id = a
        .send(
            &remote(B, "orders"),
            Message::new("ack me").with_acknowledge(
                admin,
                Acknowledge(Acknowledge::POS_ARRIVAL.0 | Acknowledge::POS_RECEIVE.0),
            ),
            Tx::Single,
        )
        .unwrap();
    pump(&a, &b);
    // The arrival acknowledgement waits in b's outgoing queue for a.
    pump(&b, &a);
    let ack = a
        .receive(".\\private$\\admin", std::time::Duration::ZERO, Tx::None)
        .unwrap();
    assert_eq!(ack.class(), MessageClass::ACK_REACH_QUEUE);
    assert_eq!(ack.correlation_id, Some(id));
    b.receive(".\\private$\\orders", std::time::Duration::ZERO, Tx::Single)
        .unwrap();
    pump(&b, &a);
    let ack = a
        .receive(".\\private$\\admin", std::time::Duration::ZERO, Tx::None)
        .unwrap();
    assert_eq!(ack.class(), MessageClass::ACK_RECEIVE);
}

#[test]
fn a_sequence_survives_compaction_and_a_restart_of_both_sides() {
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let body = vec![b'x'; 4000];
    let mut expected = Vec::new();
    {
        let a = durable_at(A, dir_a.path());
        let b = durable_at(B, dir_b.path());
        b.create_queue(".\\private$\\orders", tx_queue()).unwrap();
        // Enough traffic that both logs delete old segments.
        for i in 0..200 {
            let mut m = Message::new(body.clone());
            m.label = format!("m{i}");
            a.send(&remote(B, "orders"), m, Tx::Single).unwrap();
            expected.push(format!("m{i}"));
            if i % 10 == 9 {
                pump(&a, &b);
                // The receiver's copies leave too, so its log compacts.
                let q = b.open(".\\private$\\orders").unwrap();
                while q.receive(std::time::Duration::ZERO, Tx::Single).is_ok() {}
            }
        }
        a.compact().unwrap();
        b.compact().unwrap();
        assert!(a.log_stats().unwrap().1 < 10, "the sender's log compacted");
        assert!(
            b.log_stats().unwrap().1 < 10,
            "the receiver's log compacted"
        );
        // Two more committed, sent, accepted; the answer lost in the crash of both.
        for i in 200..202 {
            let mut m = Message::new("late");
            m.label = format!("m{i}");
            a.send(&remote(B, "orders"), m, Tx::Single).unwrap();
        }
        pump_once(&a, &b, true);
    }
    let a = durable_at(A, dir_a.path());
    let b = durable_at(B, dir_b.path());
    assert_eq!(
        outgoing_len(&a),
        2,
        "the unanswered messages are still the sender's"
    );
    // The resend is recognized, and a new message after it is accepted.
    a.send(&remote(B, "orders"), Message::new("after"), Tx::Single)
        .unwrap();
    let verdicts = pump_once(&a, &b, false);
    assert_eq!(
        verdicts,
        vec![Verdict::Duplicate, Verdict::Duplicate, Verdict::Accepted]
    );
    let got: Vec<String> = b
        .open(".\\private$\\orders")
        .unwrap()
        .messages()
        .unwrap()
        .iter()
        .map(|m| m.label.clone())
        .collect();
    assert_eq!(got, ["m200", "m201", ""]);
}

#[test]
fn express_messages_in_an_outgoing_queue_are_lost_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let a = durable_at(A, dir.path());
        a.send(&remote(B, "q"), Message::new("express"), Tx::None)
            .unwrap();
        a.send(
            &remote(B, "q"),
            Message::new("recoverable").with_delivery(Delivery::Recoverable),
            Tx::None,
        )
        .unwrap();
        assert_eq!(outgoing_len(&a), 2);
    }
    let a = durable_at(A, dir.path());
    let out = &a.transfer().outgoing()[0];
    let mut cursor = out.start();
    let left = out.next_batch(&mut cursor, 10, u64::MAX);
    assert_eq!(left.len(), 1);
    assert_eq!(body(&left[0].msg), "recoverable");
}

fn manual_at(addr: &str) -> (QueueManager, mqcore::ManualClock) {
    let clock = mqcore::ManualClock::new();
    let qm = QueueManager::builder()
        .name(format!("qm{addr}"))
        .address(addr)
        .clock(std::sync::Arc::new(clock.clone()))
        .build();
    (qm, clock)
}

fn admin_of(qm: &QueueManager) -> QueueName {
    qm.create_queue(".\\private$\\admin", QueueProps::default())
        .unwrap();
    QueueName::parse(".\\private$\\admin").unwrap()
}

fn classes(qm: &QueueManager, queue: &str) -> Vec<(String, MessageClass)> {
    qm.open(queue)
        .unwrap()
        .messages()
        .unwrap()
        .iter()
        .map(|m| (m.body_str().unwrap_or("").to_owned(), m.class()))
        .collect()
}

const DEADXACT: &str = "DIRECT=OS:.\\SYSTEM$;DEADXACT";

#[test]
fn a_destination_down_past_the_time_to_reach_queue_dead_letters_in_order_with_nacks() {
    let (a, clock) = manual_at(A);
    let admin = admin_of(&a);
    for i in 0..3 {
        let m = Message::new(format!("m{i}"))
            .with_time_to_reach_queue(std::time::Duration::from_secs(10))
            .with_acknowledge(admin.clone(), Acknowledge::NACK_REACH_QUEUE);
        a.send(&remote(B, "orders"), m, Tx::Single).unwrap();
    }
    clock.advance(std::time::Duration::from_secs(11));
    common::eventually("the outgoing queue is empty", || outgoing_len(&a) == 0);
    let dead = classes(&a, DEADXACT);
    let want: Vec<(String, MessageClass)> = (0..3)
        .map(|i| (format!("m{i}"), MessageClass::NACK_REACH_QUEUE_TIMEOUT))
        .collect();
    assert_eq!(dead, want);
    let nacks: Vec<MessageClass> = classes(&a, ".\\private$\\admin")
        .into_iter()
        .map(|(_, c)| c)
        .collect();
    assert_eq!(nacks, vec![MessageClass::NACK_REACH_QUEUE_TIMEOUT; 3]);
}

#[test]
fn time_to_be_received_running_out_in_the_outgoing_queue_is_a_receive_timeout_at_the_sender() {
    let (a, clock) = manual_at(A);
    let admin = admin_of(&a);
    let m = Message::new("late")
        .with_delivery(Delivery::Recoverable)
        .with_journal(mqcore::JournalFlags::DEADLETTER)
        .with_time_to_be_received(std::time::Duration::from_secs(5))
        .with_acknowledge(admin, Acknowledge::NACK_RECEIVE);
    a.send(&remote(B, "plain"), m, Tx::None).unwrap();
    clock.advance(std::time::Duration::from_secs(6));
    common::eventually("the outgoing queue is empty", || outgoing_len(&a) == 0);
    assert_eq!(
        classes(&a, "DIRECT=OS:.\\SYSTEM$;DEADLETTER"),
        [(
            "late".to_owned(),
            MessageClass::NACK_RECEIVE_TIMEOUT_AT_SENDER
        )]
    );
    assert_eq!(
        classes(&a, ".\\private$\\admin")[0].1,
        MessageClass::NACK_RECEIVE_TIMEOUT_AT_SENDER
    );
}

/// A transactional message that may have been sent is never dead-lettered on a guess: its
/// number is withdrawn, and the receiver's answer says whether it had it.
#[test]
fn a_sent_message_out_of_time_is_withdrawn_and_dead_lettered_only_if_the_receiver_lacks_it() {
    let (a, clock) = manual_at(A);
    let b = qm_at(B);
    b.create_queue(".\\private$\\orders", tx_queue()).unwrap();
    let ttrq = std::time::Duration::from_secs(10);
    for body in ["delivered", "lost"] {
        a.send(
            &remote(B, "orders"),
            Message::new(body).with_time_to_reach_queue(ttrq),
            Tx::Single,
        )
        .unwrap();
    }
    let out = &a.transfer().outgoing()[0];
    let mut cursor = out.start();
    let batch = out.next_batch(&mut cursor, 10, u64::MAX);
    // Only the first reaches the receiver, and its answer is lost; the second is lost on the way.
    let reply = b
        .transfer()
        .accept(
            a.guid(),
            out.sequence(),
            out.remote_path(),
            true,
            vec![Inbound {
                seq: batch[0].seq,
                msg: Some(batch[0].msg.clone()),
            }],
        )
        .unwrap();
    assert_eq!(reply.verdicts, [Verdict::Accepted]);
    clock.advance(std::time::Duration::from_secs(11));
    common::eventually("both wait for their withdrawal", || {
        let mut c = out.start();
        out.next_batch(&mut c, 10, u64::MAX)
            .iter()
            .all(|b| b.withdraw)
    });
    // Both numbers are withdrawn: the first was delivered after all, the second was not.
    assert_eq!(outgoing_len(&a), 2);
    a.send(&remote(B, "orders"), Message::new("after"), Tx::Single)
        .unwrap();
    let mut verdicts = Vec::new();
    for _ in 0..3 {
        let mut c = out.start();
        let batch = out.next_batch(&mut c, 10, u64::MAX);
        if batch.is_empty() {
            break;
        }
        let sent: Vec<_> = batch.iter().map(|b| (b.lookup, b.seq)).collect();
        let items = batch
            .into_iter()
            .map(|b| Inbound {
                seq: b.seq,
                msg: (!b.withdraw).then_some(b.msg),
            })
            .collect();
        let reply = b
            .transfer()
            .accept(a.guid(), out.sequence(), out.remote_path(), true, items)
            .unwrap();
        verdicts.extend(reply.verdicts.iter().copied());
        out.settle(&sent, &reply).unwrap();
    }
    assert_eq!(
        verdicts,
        [Verdict::Duplicate, Verdict::Withdrawn, Verdict::Accepted]
    );
    assert_eq!(bodies(&b, ".\\private$\\orders"), ["delivered", "after"]);
    assert_eq!(
        classes(&a, DEADXACT),
        [("lost".to_owned(), MessageClass::NACK_REACH_QUEUE_TIMEOUT)]
    );
}

#[test]
fn after_a_restart_an_expired_transactional_message_is_withdrawn_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let clock = mqcore::ManualClock::new();
    let open = || {
        QueueManager::builder()
            .name("qma")
            .address(A)
            .clock(std::sync::Arc::new(clock.clone()))
            .open(dir.path())
            .unwrap()
    };
    {
        let a = open();
        a.send(
            &remote(B, "orders"),
            Message::new("x").with_time_to_reach_queue(std::time::Duration::from_secs(10)),
            Tx::Single,
        )
        .unwrap();
    }
    clock.advance(std::time::Duration::from_secs(11));
    let a = open();
    let b = qm_at(B);
    b.create_queue(".\\private$\\orders", tx_queue()).unwrap();
    let out = &a.transfer().outgoing()[0];
    common::eventually("the message waits for its withdrawal", || {
        let mut c = out.start();
        out.next_batch(&mut c, 10, u64::MAX)
            .first()
            .is_some_and(|b| b.withdraw)
    });
    assert_eq!(pump_once(&a, &b, false), [Verdict::Withdrawn]);
    assert_eq!(
        classes(&a, DEADXACT),
        [("x".to_owned(), MessageClass::NACK_REACH_QUEUE_TIMEOUT)]
    );
    assert!(bodies(&b, ".\\private$\\orders").is_empty());
}

#[test]
fn a_recoverable_message_sent_again_after_a_lost_answer_is_delivered_once() {
    let a = qm_at(A);
    let b = qm_at(B);
    b.create_queue(".\\private$\\plain", QueueProps::default())
        .unwrap();
    for i in 0..3 {
        a.send(
            &remote(B, "plain"),
            Message::new(format!("r{i}")).with_delivery(Delivery::Recoverable),
            Tx::None,
        )
        .unwrap();
    }
    assert_eq!(pump_once(&a, &b, true), vec![Verdict::Accepted; 3]);
    assert_eq!(pump_once(&a, &b, false), vec![Verdict::Duplicate; 3]);
    assert_eq!(bodies(&b, ".\\private$\\plain"), ["r0", "r1", "r2"]);
    assert_eq!(outgoing_len(&a), 0);
}
