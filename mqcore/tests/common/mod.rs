//! Helpers shared by the engine's integration tests.
// Each test binary includes this module and uses some of it.
#![allow(dead_code)]

use std::sync::Arc;

use mqcore::{ManualClock, QueueManager};

/// A queue manager on a manual clock, and the clock.
pub fn manual() -> (QueueManager, ManualClock) {
    let clock = ManualClock::new();
    let qm = QueueManager::builder()
        .clock(Arc::new(clock.clone()))
        .build();
    (qm, clock)
}

/// The bodies of the visible messages of queue `name`, in queue order.
pub fn bodies(qm: &QueueManager, name: &str) -> Vec<String> {
    qm.open(name)
        .unwrap()
        .messages()
        .unwrap()
        .iter()
        .map(|m| m.body_str().expect("test bodies are text").to_owned())
        .collect()
}
