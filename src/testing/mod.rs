//! The test-double kit: an in-memory queue manager in one line, time under the test's control,
//! fault injection (a coordinator that goes offline, a network that stalls and cuts:
//! [`FaultyProxy`]; a failover cluster whose nodes die: [`TestCluster`]), and assertions on queue contents with readable failure messages.
//!
//! ```
//! use std::time::Duration;
//! use mqemu::testing::TestQueueManager;
//! use mqemu::{Message, QueueProps, Tx};
//!
//! let t = TestQueueManager::new();
//! t.create(r".\private$\orders", QueueProps::transactional());
//! t.qm.send(r".\private$\orders", Message::new("a").with_time_to_be_received(Duration::from_secs(5)), Tx::Single)?;
//! t.assert_bodies(r".\private$\orders", &["a"]);
//! t.clock.advance(Duration::from_secs(5)); // the message expires now, not in five real seconds
//! t.eventually_bodies(r".\system$;DEADXACT", &["a"]);
//! # Ok::<(), mqemu::Error>(())
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use mqcore::{LocalCoordinator, ManualClock, Message, Queue, QueueManager, QueueProps};

mod cluster;
mod proxy;

pub use cluster::TestCluster;
pub use proxy::{Direction, FaultyProxy, ProxyStats};

/// Starts an in-memory queue manager on the wall clock, with MSMQ 4.0 behaviour.
pub fn queue_manager() -> QueueManager {
    QueueManager::new()
}

/// An in-memory queue manager whose clock and transaction coordinator belong to the test.
#[derive(Debug, Clone)]
pub struct TestQueueManager {
    /// The queue manager under test.
    pub qm: QueueManager,
    /// Its clock: time moves only through [`ManualClock::advance`].
    pub clock: ManualClock,
    /// Its transaction coordinator: [`LocalCoordinator::set_available`] takes it offline, as a
    /// failed MSDTC resource would be.
    pub coordinator: Arc<LocalCoordinator>,
}

impl Default for TestQueueManager {
    fn default() -> Self {
        TestQueueManager::new()
    }
}

impl TestQueueManager {
    /// A fresh queue manager named `localhost` with a manual clock and an available coordinator.
    pub fn new() -> TestQueueManager {
        TestQueueManager::named("localhost")
    }

    /// The same, with a computer name (what `HOST\private$\q` and `DIRECT=OS:HOST` resolve).
    pub fn named(name: &str) -> TestQueueManager {
        let clock = ManualClock::new();
        let coordinator = LocalCoordinator::new();
        let qm = QueueManager::builder()
            .name(name)
            .clock(Arc::new(clock.clone()))
            .coordinator(coordinator.clone())
            .build();
        TestQueueManager {
            qm,
            clock,
            coordinator,
        }
    }

    /// Creates a queue, panicking with the MSMQ error if that fails (test set-up).
    #[track_caller]
    pub fn create(&self, path: &str, props: QueueProps) -> Queue {
        self.qm
            .create_queue(path, props)
            .unwrap_or_else(|e| panic!("creating {path}: {e}"))
    }

    /// The visible messages of a queue, in receive order.
    #[track_caller]
    pub fn messages(&self, queue: &str) -> Vec<Message> {
        self.qm
            .open(queue)
            .and_then(|q| q.messages())
            .unwrap_or_else(|e| panic!("reading {queue}: {e}"))
    }

    /// Asserts the queue's visible messages have these bodies (as UTF-8), in receive order.
    #[track_caller]
    pub fn assert_bodies(&self, queue: &str, expected: &[&str]) {
        let actual = bodies(&self.messages(queue));
        assert_eq!(actual, expected, "bodies of {queue} (in receive order)");
    }

    /// Asserts the queue holds no message at all, locked ones included.
    #[track_caller]
    pub fn assert_empty(&self, queue: &str) {
        let len = self
            .qm
            .open(queue)
            .and_then(|q| q.len())
            .unwrap_or_else(|e| panic!("reading {queue}: {e}"));
        assert_eq!(len, 0, "{queue} should be empty; it holds {len} message(s)");
    }

    /// Waits (at most ten seconds of real time) until the queue's bodies are `expected`: for
    /// effects of the queue manager's timer, such as expiry after [`ManualClock::advance`].
    #[track_caller]
    pub fn eventually_bodies(&self, queue: &str, expected: &[&str]) {
        let start = Instant::now();
        loop {
            let actual = bodies(&self.messages(queue));
            if actual == expected {
                return;
            }
            if start.elapsed() > Duration::from_secs(10) {
                panic!("bodies of {queue} stayed {actual:?}; expected {expected:?}");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn bodies(msgs: &[Message]) -> Vec<String> {
    msgs.iter()
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect()
}
