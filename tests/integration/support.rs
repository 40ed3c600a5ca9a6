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
