//! The tokio runtime of `mqemu serve` and `mqemu bench --target`: how many workers it gets.

use std::thread;

/// A multi-threaded runtime builder with one worker fewer than the machine has cores (at least
/// one), unless `TOKIO_WORKER_THREADS` says otherwise.
///
/// Neither program is alone on its cores: the server's log writer is a thread of its own that
/// does the `fdatasync`s, and the load generator shares the machine with the server it drives.
/// A worker for every core makes the threads take turns on the cores instead, and a turn costs
/// a context switch on every wake-up: a server and a load generator on two cores move more
/// durable messages with one worker each than with two (docs/performance.md, "Tokio workers").
pub fn multi_thread(name: &str) -> tokio::runtime::Builder {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all().thread_name(name);
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = thread::available_parallelism().map_or(1, |n| n.get());
        builder.worker_threads(cores.saturating_sub(1).max(1));
    }
    builder
}
