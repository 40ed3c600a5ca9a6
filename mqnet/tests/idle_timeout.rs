//! The server's own timers on tokio's paused clock: the connection limit and the idle timeout,
//! over real loopback sockets, without sleeping for real.
//!
//! Time is paused (`start_paused`, as mini-redis's tests do): it stands still while any task has
//! work, and jumps to the next timer when all wait. Only the server's tokio timers are waited for
//! here; the engine's waits run on its own clock and are tested in `tests/integration/net.rs`.

use std::time::Duration;

use mqcore::{ErrorCode, QueueManager};
use mqnet::{Client, Server, ServerConfig, Stopper};
use tokio::task::JoinHandle;

/// A running server on loopback: its address, its stopper and its task.
async fn start(config: ServerConfig) -> (String, Stopper, JoinHandle<std::io::Result<()>>) {
    let server = Server::bind("127.0.0.1:0", QueueManager::new(), config)
        .await
        .unwrap();
    let addr = server.local_addr().unwrap().to_string();
    let stopper = server.stopper();
    (addr, stopper, tokio::spawn(server.run()))
}

#[tokio::test(start_paused = true)]
async fn connection_limit_and_idle_timeout() {
    let config = ServerConfig {
        max_connections: 1,
        idle_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let (addr, stopper, task) = start(config).await;
    let first = Client::connect(&addr).await.unwrap();
    let e = Client::connect(&addr).await.unwrap_err();
    assert!(e.detail().contains("limit"), "{e}");
    first.ping().await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let e = first.ping().await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::ServiceNotAvailable, "{e}");
    // The idle connection is gone, so a new one fits.
    Client::connect(&addr).await.unwrap().ping().await.unwrap();
    stopper.stop();
    task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn steady_traffic_keeps_a_connection_open_and_silence_closes_it() {
    let config = ServerConfig {
        idle_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let (addr, stopper, task) = start(config).await;
    let c = Client::connect(&addr).await.unwrap();
    // Requests more often than the idle timeout, for longer than it.
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        c.ping().await.unwrap();
    }
    // Then silence closes it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let e = c.ping().await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::ServiceNotAvailable, "{e}");
    stopper.stop();
    task.await.unwrap().unwrap();
}
