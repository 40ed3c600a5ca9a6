//! Messages kept only in the log behave exactly like messages in memory: the same operations on
//! an in-memory queue manager and on a durable one with no cache must give the same answers.

use std::time::Duration;

use mqcore::{
    Delivery, LookupAction, Message, MessageId, Queue, QueueManager, QueueProps, Result, Tx,
};
use uuid::Uuid;

const NOW: Duration = Duration::ZERO;

/// A small deterministic generator (xorshift64), so that a failure replays exactly.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// What an operation answered, comparable across queue managers: the message's body and
/// lookup id, or the error code.
type Answer = std::result::Result<(String, u64), String>;

fn answer(r: Result<Message>) -> Answer {
    r.map(|m| (m.body_str().unwrap_or_default().to_owned(), m.lookup_id()))
        .map_err(|e| format!("{:?}", e.code()))
}

fn correlation(n: u64) -> MessageId {
    MessageId::new(Uuid::from_u128(42), n as u32)
}

/// The queues of one queue manager under test.
struct Side {
    qm: QueueManager,
    plain: Queue,
    txq: Queue,
    sub: Queue,
}

impl Side {
    fn new(qm: QueueManager) -> Side {
        let plain = match qm.open(r".\private$\plain") {
            Ok(q) => q,
            Err(_) => qm
                .create_queue(r".\private$\plain", QueueProps::default())
                .unwrap(),
        };
        let txq = match qm.open(r".\private$\tx") {
            Ok(q) => q,
            Err(_) => qm
                .create_queue(r".\private$\tx", QueueProps::transactional())
                .unwrap(),
        };
        let sub = qm.open(r".\private$\plain;held").unwrap();
        Side {
            qm,
            plain,
            txq,
            sub,
        }
    }

    /// Runs operation `op` (drawn by the caller) and says what it answered. Operations by
    /// lookup id aim at most 64 below `recent`, so that they land among the live messages.
    fn run(&self, op: u64, arg: u64, n: u64, recent: u64) -> Vec<Answer> {
        let body = format!("m{n}-{}", "x".repeat((arg % 300) as usize));
        let near = recent.saturating_sub(arg % 64);
        match op {
            0..=5 => {
                let m = Message::new(body)
                    .with_priority((arg % 8) as u8)
                    .with_delivery(Delivery::Recoverable)
                    .with_correlation_id(correlation(arg % 5));
                vec![answer(
                    self.plain.send(m, Tx::None).map(|_| Message::new("sent")),
                )]
            }
            6..=7 => {
                let m = Message::new(body).with_correlation_id(correlation(arg % 5));
                vec![answer(
                    self.txq.send(m, Tx::Single).map(|_| Message::new("sent")),
                )]
            }
            8 => vec![answer(self.plain.receive(NOW, Tx::None))],
            9 => vec![answer(self.txq.receive(NOW, Tx::Single))],
            10 => vec![answer(self.plain.peek(NOW))],
            11 => {
                // A transactional receive that aborts: the message goes back to its place.
                let tx = self.qm.begin();
                let got = answer(self.txq.receive(NOW, Tx::In(&tx)));
                tx.abort();
                vec![got, answer(self.txq.peek(NOW))]
            }
            12 => {
                let mut c = self.plain.cursor();
                let mut out = vec![answer(c.peek_current(NOW))];
                for _ in 0..(arg % 6) {
                    out.push(answer(c.peek_next(NOW)));
                }
                if arg.is_multiple_of(2) {
                    out.push(answer(c.receive_current(NOW, Tx::None)));
                }
                out
            }
            13 => {
                let action = match arg % 5 {
                    0 => LookupAction::First,
                    1 => LookupAction::Last,
                    2 => LookupAction::Next(near),
                    3 => LookupAction::Previous(near),
                    _ => LookupAction::Current(near),
                };
                if arg.is_multiple_of(3) {
                    vec![answer(self.plain.receive_by_lookup_id(action, Tx::None))]
                } else {
                    vec![answer(self.plain.peek_by_lookup_id(action))]
                }
            }
            14 => vec![answer(
                self.plain
                    .receive_by_correlation_id(&correlation(arg % 5), Tx::None),
            )],
            15 => vec![answer(
                self.txq.peek_by_correlation_id(&correlation(arg % 5)),
            )],
            16 => {
                // A move into the subqueue and back out.
                let target = self.plain.peek_by_lookup_id(LookupAction::Next(near));
                let moved = target.and_then(|m| {
                    self.plain
                        .move_message(m.lookup_id(), &self.sub, Tx::None)?;
                    Ok(m)
                });
                vec![answer(moved), answer(self.sub.peek(NOW))]
            }
            17 => vec![answer(self.sub.receive(NOW, Tx::None))],
            _ => {
                let n = if arg.is_multiple_of(10) {
                    self.plain.purge().unwrap()
                } else {
                    0
                };
                vec![Ok((format!("purged {n}"), 0))]
            }
        }
    }

    /// Everything visible, in queue order.
    fn contents(&self) -> Vec<Vec<(String, u64)>> {
        [&self.plain, &self.txq, &self.sub]
            .iter()
            .map(|q| {
                q.messages()
                    .unwrap()
                    .iter()
                    .map(|m| (m.body_str().unwrap().to_owned(), m.lookup_id()))
                    .collect()
            })
            .collect()
    }
}

fn durable(root: &std::path::Path) -> QueueManager {
    QueueManager::builder()
        .segment_size(64 * 1024)
        .cache_size(0)
        .open(root)
        .unwrap()
}

#[test]
fn messages_read_back_from_the_log_answer_like_messages_in_memory() {
    let root = tempfile::tempdir().unwrap();
    let memory = Side::new(QueueManager::new());
    let mut disk = Side::new(durable(root.path()));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut most_cold = 0;
    let mut recent = 0;
    for n in 0..3000 {
        let op = rng.below(19);
        let arg = rng.below(1 << 20);
        let expected = memory.run(op, arg, n, recent);
        let got = disk.run(op, arg, n, recent);
        assert_eq!(got, expected, "step {n}, operation {op}({arg})");
        if let Some(Ok((_, lookup))) = expected.first() {
            recent = recent.max(*lookup);
        }
        most_cold = most_cold.max(disk.qm.cache_stats().cold_messages);
        if n % 500 == 499 {
            // Restart: what is cold comes back cold, and still answers the same.
            drop(disk);
            disk = Side::new(durable(root.path()));
            assert_eq!(
                disk.contents(),
                memory.contents(),
                "after restart at step {n}"
            );
        }
    }
    assert_eq!(disk.contents(), memory.contents());
    assert!(
        most_cold > 100,
        "only {most_cold} messages ever left memory"
    );
}

#[test]
fn a_long_queue_drains_in_order_through_a_small_cache() {
    let root = tempfile::tempdir().unwrap();
    let qm = QueueManager::builder()
        .cache_size(64 * 1024)
        .open(root.path())
        .unwrap();
    let q = qm
        .create_queue(r".\private$\long", QueueProps::transactional())
        .unwrap();
    let body = vec![b'x'; 1024];
    for _ in 0..2000 {
        q.send(Message::new(body.clone()), Tx::Single).unwrap();
    }
    let stats = qm.cache_stats();
    assert!(stats.cold_messages > 1800, "{stats:?}");
    assert!(stats.cached_bytes <= 80 * 1024, "{stats:?}");
    drop(q);
    drop(qm);
    let qm = QueueManager::builder()
        .cache_size(64 * 1024)
        .open(root.path())
        .unwrap();
    let q = qm.open(r".\private$\long").unwrap();
    assert!(
        qm.cache_stats().cold_messages > 1700,
        "{:?}",
        qm.cache_stats()
    );
    // Peeking through the whole queue with a cursor reads cold messages back without keeping
    // them.
    let before = qm.cache_stats().cached_bytes;
    let mut cursor = q.cursor();
    cursor.peek_current(NOW).unwrap();
    for _ in 1..2000 {
        cursor.peek_next(NOW).unwrap();
    }
    assert_eq!(
        qm.cache_stats().cached_bytes,
        before,
        "a cursor walk fills no cache"
    );
    let mut last = 0;
    for i in 0..2000 {
        let m = q.receive(NOW, Tx::Single).unwrap();
        assert!(m.lookup_id() > last, "message {i} out of order");
        last = m.lookup_id();
        assert!(
            qm.cache_stats().cached_bytes <= 2 * 1024 * 1024,
            "refills stay bounded"
        );
    }
    assert_eq!(q.len().unwrap(), 0);
    assert_eq!(qm.cache_stats().cached_bytes, 0);
}

#[test]
fn compaction_rewrites_messages_kept_only_in_the_log() {
    let root = tempfile::tempdir().unwrap();
    let open = || {
        QueueManager::builder()
            .segment_size(4096)
            .cache_size(0)
            .open(root.path())
            .unwrap()
    };
    let qm = open();
    let kept = qm
        .create_queue(r".\private$\kept", QueueProps::transactional())
        .unwrap();
    let busy = qm
        .create_queue(r".\private$\busy", QueueProps::transactional())
        .unwrap();
    let bodies: Vec<String> = (0..20).map(|i| format!("kept {i:02}")).collect();
    for b in &bodies {
        kept.send(Message::new(b.clone()), Tx::Single).unwrap();
    }
    assert!(qm.cache_stats().cold_messages >= 19);
    // History on another queue, so that the segments holding `kept` go sparse and compaction
    // rewrites its messages at the head of the log.
    for i in 0..400 {
        busy.send(Message::new(format!("busy {i}")), Tx::Single)
            .unwrap();
        busy.receive(NOW, Tx::Single).unwrap();
    }
    let wal = mqcore::storage::storage_dir(root.path()).join("wal");
    let first = wal.join(format!("{:016x}.wal", 1));
    assert!(!first.exists(), "compaction deleted the first segment");
    let read = |q: &Queue| -> Vec<String> {
        q.messages()
            .unwrap()
            .iter()
            .map(|m| m.body_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(read(&kept), bodies);
    drop((kept, busy, qm));
    let qm = open();
    let kept = qm.open(r".\private$\kept").unwrap();
    assert_eq!(read(&kept), bodies);
    for b in &bodies {
        assert_eq!(
            kept.receive(NOW, Tx::Single).unwrap().body_str(),
            Some(&**b)
        );
    }
}
