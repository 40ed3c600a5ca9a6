//! What the integration tests share: waiting (bounded) for a condition instead of sleeping and
//! hoping, from a plain thread or from inside a tokio runtime, and what the transfer tests send
//! and look at.

use std::time::{Duration, Instant};

use mqemu::{Message, QueueManager, Tx};

/// How long a condition may take before the test fails naming it.
const PATIENCE: Duration = Duration::from_secs(20);
/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(10);

/// Polls `done` on this thread until it holds; panics naming `what` after [`PATIENCE`].
pub fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < PATIENCE, "timed out waiting until {what}");
        std::thread::sleep(POLL);
    }
}

/// [`eventually`] inside a tokio runtime, for conditions that are themselves async.
pub async fn eventually_async(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < PATIENCE, "timed out waiting until {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// A port free on 127.0.0.2, 127.0.0.3 and 127.0.0.4 at once: queue managers on one machine each
/// bind their own address on the same port, as MSMQ binds 1801 on every host.
pub fn free_port() -> u16 {
    'search: for _ in 0..50 {
        let probe = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        for ip in ["127.0.0.3", "127.0.0.4"] {
            if std::net::TcpListener::bind((ip, port)).is_err() {
                continue 'search;
            }
        }
        return port;
    }
    panic!("no port free on 127.0.0.2-4");
}

/// The bodies of a queue's messages, in queue order.
pub fn bodies(qm: &QueueManager, queue: &str) -> Vec<String> {
    qm.open(queue)
        .unwrap()
        .messages()
        .unwrap()
        .iter()
        .map(|m| m.body_str().unwrap().to_owned())
        .collect()
}

/// Messages waiting in all of a queue manager's outgoing queues.
pub fn outgoing_messages(qm: &QueueManager) -> usize {
    qm.transfer()
        .outgoing()
        .iter()
        .map(|o| o.info().messages)
        .sum()
}

/// Sends `n` transactional messages "from".."from+n-1" to `dest`, in transactions of 1 to 10.
pub fn send_in_transactions(qm: &QueueManager, dest: &str, from: usize, n: usize) {
    let q = qm.open(dest).unwrap();
    let mut i = from;
    let mut size = 1;
    while i < from + n {
        let t = qm.begin();
        for _ in 0..size {
            if i == from + n {
                break;
            }
            q.send(Message::new(i.to_string()), Tx::In(&t)).unwrap();
            i += 1;
        }
        t.commit().unwrap();
        size = size % 10 + 1;
    }
}

/// "0".."n-1", what [`send_in_transactions`] sends from 0.
pub fn numbers(n: usize) -> Vec<String> {
    (0..n).map(|i| i.to_string()).collect()
}
