//! Helpers shared by the engine's integration tests.

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
