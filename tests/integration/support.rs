//! What the integration tests share: waiting (bounded) for a condition instead of sleeping and
//! hoping, from a plain thread or from inside a tokio runtime.

use std::time::{Duration, Instant};

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
