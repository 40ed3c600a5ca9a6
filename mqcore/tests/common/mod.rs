//! Helpers shared by the engine's integration tests.
// Each test binary includes this module and uses some of it.
#![allow(dead_code)]

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use mqcore::{Delivery, ManualClock, Message, Queue, QueueManager};

/// How long [`eventually`] waits before it fails the test: far longer than anything it waits
/// for takes, so only a real failure runs into it.
const PATIENCE: Duration = Duration::from_secs(20);

/// How often [`eventually`] checks again.
const POLL: Duration = Duration::from_millis(2);

/// A queue manager on a manual clock, and the clock.
pub fn manual() -> (QueueManager, ManualClock) {
    let clock = ManualClock::new();
    let qm = QueueManager::builder()
        .clock(Arc::new(clock.clone()))
        .build();
    (qm, clock)
}

/// Polls `cond` until it holds, for work done on other threads (the timer, monitors, waiters)
/// to show. Bounded: fails the test if it does not hold in time, saying what it waited for
/// (`what`, a clause: "the message is retrieved").
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < PATIENCE, "timed out waiting until {what}");
        thread::sleep(POLL);
    }
}

/// Waits (bounded) until exactly `n` receives, peeks or cursors are registered waiting on `q`,
/// so a test acts only once its waiters really wait.
pub fn until_waiting(q: &Queue, n: usize) {
    eventually(&format!("{n} waiter(s) wait on {}", q.name()), || {
        q.waiting().unwrap() == n
    });
}

/// The body of a message the tests sent, as text.
pub fn body(m: &Message) -> &str {
    m.body_str().expect("test bodies are text")
}

/// The bodies of `msgs`, in order.
pub fn bodies_of(msgs: &[Message]) -> Vec<&str> {
    msgs.iter().map(body).collect()
}

/// The bodies of the visible messages of queue `name`, in queue order.
pub fn bodies(qm: &QueueManager, name: &str) -> Vec<String> {
    qm.open(name)
        .unwrap()
        .messages()
        .unwrap()
        .iter()
        .map(|m| body(m).to_owned())
        .collect()
}

/// A recoverable (logged, surviving a restart) message with text `body`.
pub fn recoverable(body: &str) -> Message {
    Message::new(body.to_owned()).with_delivery(Delivery::Recoverable)
}
