//! The queue server: accepts native-protocol connections and runs their requests on one queue
//! manager.
//!
//! Each connection is one task that reads frames, runs every request they hold in order, and
//! writes the answers in one write per batch; pipelined requests therefore cost one read and one
//! write for many. Requests that wait (a receive or peek with a timeout and nothing to take yet,
//! a cursor waiting for its next message) move to tasks of their own, so a connection keeps
//! serving while they wait; their answers come back to the connection's task to be written.
//!
//! A connection owns its transactions and cursors: when it closes, for whatever reason, its
//! waiting receives are cancelled (a message already handed to one goes back) and its unfinished
//! transactions abort, so the messages they received return to their queues. A transaction
//! already prepared stays in doubt for its coordinator, as two-phase commit requires.
//!
//! Shutdown stops accepting, lets every connection finish the batch it is running (commits
//! complete), answers waiting requests with MQ_ERROR_SERVICE_NOT_AVAILABLE, aborts open
//! transactions and closes. The caller then drops the queue manager, which flushes its log.
//!
//! Here: the configuration, the listener and its accept loop. A connection's task is in
//! `session` (its socket side in `wire`), one request's engine call in `dispatch`, and runs of
//! pipelined sends and receives with their held answers in `batching`.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqcore::triggers::Triggers;
use mqcore::{Error, ErrorCode, QueueManager};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::auth::Auth;
use crate::frame;
use crate::proto::{self, Response};

mod batching;
mod dispatch;
mod session;
mod wire;

use session::serve;

/// Limits and access control of a server. The defaults suit a server on loopback.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest frame payload accepted; checked before any allocation.
    pub max_frame: usize,
    /// Connections served at once; one more is answered MQ_ERROR_INSUFFICIENT_RESOURCES.
    pub max_connections: usize,
    /// A connection that sends nothing for this long, with nothing waiting, is closed.
    pub idle_timeout: Duration,
    /// Time allowed for the handshake.
    pub handshake_timeout: Duration,
    /// Who may connect and what they may do.
    pub auth: Auth,
    /// The queue manager's Triggers service, administered through
    /// [`Request::Triggers`](proto::Request::Triggers); while it runs none, those requests are
    /// refused with MQ_ERROR_SERVICE_NOT_AVAILABLE.
    pub triggers: TriggerService,
    /// The queue manager's transfer service, whose links management lists
    /// ([`Request::ListOutgoing`](proto::Request::ListOutgoing)); without one the outgoing
    /// queues are listed from the engine alone.
    pub transfer: Option<crate::transfer::TransferService>,
    /// TLS: with a certificate, the port speaks only TLS ([`crate::tls`]).
    pub tls: Option<crate::tls::ServerTls>,
}

/// Where a server finds its queue manager's Triggers service, which may start and stop while the
/// server runs (a cluster's Triggers resource depends on the Message Queuing resource that runs
/// the server, so it comes online after the server and goes offline before it). Clones share it.
#[derive(Clone, Default)]
pub struct TriggerService(Arc<std::sync::RwLock<Option<Arc<Triggers>>>>);

impl TriggerService {
    /// A slot holding a running service.
    pub fn running(triggers: Arc<Triggers>) -> TriggerService {
        let slot = TriggerService::default();
        slot.set(Some(triggers));
        slot
    }

    /// Puts a service in the slot (`None`: the service stopped).
    pub fn set(&self, triggers: Option<Arc<Triggers>>) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = triggers;
    }

    /// The service, if one runs.
    pub fn get(&self) -> Option<Arc<Triggers>> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl std::fmt::Debug for TriggerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TriggerService")
            .field("running", &self.get().is_some())
            .finish()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_frame: frame::DEFAULT_MAX_FRAME,
            max_connections: 1024,
            idle_timeout: Duration::from_secs(300),
            handshake_timeout: Duration::from_secs(10),
            auth: Auth::default(),
            triggers: TriggerService::default(),
            transfer: None,
            tls: None,
        }
    }
}

/// Counters shared by the server and its connections.
struct Shared {
    qm: QueueManager,
    config: ServerConfig,
    connections: AtomicUsize,
    connections_total: AtomicU64,
    requests_total: AtomicU64,
    started: Instant,
}

/// A running server's counters (clone it into a monitor).
#[derive(Clone)]
pub struct ServerCounts(Arc<Shared>);

impl ServerCounts {
    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.0.connections.load(Ordering::Relaxed)
    }

    /// Connections accepted since start.
    pub fn connections_total(&self) -> u64 {
        self.0.connections_total.load(Ordering::Relaxed)
    }

    /// Requests answered since start.
    pub fn requests_total(&self) -> u64 {
        self.0.requests_total.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for ServerCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCounts")
            .field("connections", &self.connections())
            .finish_non_exhaustive()
    }
}

/// A bound server, not yet running.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
}

/// Stops a running server (clone it into a signal handler).
#[derive(Clone)]
pub struct Stopper(Arc<watch::Sender<bool>>);

impl Stopper {
    /// Begins a graceful shutdown.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }

    /// Completes once a shutdown has begun: what listeners beside the server (HTTP) stop on.
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.0.subscribe();
        async move {
            let _ = rx.wait_for(|stopped| *stopped).await;
        }
    }
}

impl Server {
    /// Binds the listening socket.
    pub async fn bind(
        addr: impl ToSocketAddrs,
        qm: QueueManager,
        config: ServerConfig,
    ) -> io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        let (stop, _) = watch::channel(false);
        Ok(Server {
            listener,
            shared: Arc::new(Shared {
                qm,
                config,
                connections: AtomicUsize::new(0),
                connections_total: AtomicU64::new(0),
                requests_total: AtomicU64::new(0),
                started: Instant::now(),
            }),
            stop,
        })
    }

    /// The address it listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A handle on the server's counters, for a monitor beside it (the HTTP face's metrics).
    pub fn counts(&self) -> ServerCounts {
        ServerCounts(self.shared.clone())
    }

    /// A handle that stops [`Server::run`].
    pub fn stopper(&self) -> Stopper {
        Stopper(Arc::new(self.stop.clone()))
    }

    /// Serves until stopped, then shuts down gracefully and returns once every connection has
    /// closed.
    pub async fn run(self) -> io::Result<()> {
        let Server {
            listener,
            shared,
            stop,
        } = self;
        let mut stopped = stop.subscribe();
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                _ = stopped_signal(&mut stopped) => break,
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of descriptors and the like: back off rather than spin.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let open = shared.connections.fetch_add(1, Ordering::SeqCst);
                    shared.connections_total.fetch_add(1, Ordering::Relaxed);
                    let shared = shared.clone();
                    let stop = stop.subscribe();
                    conns.spawn(async move {
                        if open >= shared.config.max_connections {
                            refuse(stream, &shared).await;
                        } else {
                            tracing::debug!(%peer, "connection opened");
                            let r = serve(stream, peer, shared.clone(), stop).await;
                            tracing::debug!(%peer, result = ?r, "connection closed");
                        }
                        shared.connections.fetch_sub(1, Ordering::SeqCst);
                    });
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        tracing::info!(connections = conns.len(), "shutting down");
        drop(listener);
        while conns.join_next().await.is_some() {}
        Ok(())
    }
}

/// Answers a connection over the limit and closes it.
async fn refuse(mut stream: TcpStream, shared: &Shared) {
    tracing::warn!(
        limit = shared.config.max_connections,
        "connection refused: at the connection limit"
    );
    let e = Error::new(
        ErrorCode::InsufficientResources,
        format!(
            "the server is at its limit of {} connections",
            shared.config.max_connections
        ),
    );
    let _ = stream
        .write_all(&proto::frame(0, &Response::error(&e)))
        .await;
    let _ = stream.shutdown().await;
}

/// Resolves once shutdown has begun.
async fn stopped_signal(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, before any caller awaits again.
    let _ = stop.wait_for(|s| *s).await;
}
