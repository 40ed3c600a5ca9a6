//! The MS-MQQB face: MSMQ's own binary protocol on TCP (1801 on Windows), so an unmodified
//! Windows queue manager delivers to mqemu with a `DIRECT=TCP:` or `DIRECT=OS:` format name,
//! and the UDP ping (3527) that older Windows versions send before they connect.
//!
//! [`session`] runs one session as MS-MQQB 3.1 describes the acceptor: EstablishConnection,
//! ConnectionParameters, then user messages acknowledged by SessionAck packets once stored.
//! [`inbound`] turns a user message into the engine's message and hands it to the same
//! `Transfer::accept` the native transfer and SRMP use, so a transactional message is stored
//! exactly once and in order with its sequence's durable state, and answers with the OrderAck
//! (and, for a refusal, the FinalAck) the sender waits for. The packets are `crate::mqqb`'s.

mod counts;
mod inbound;
pub(crate) mod outbound;
mod session;

pub(crate) use counts::{session_acks, Counts};
pub(crate) use session::PacketReader;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mqcore::QueueManager;
use tokio::net::{TcpListener, ToSocketAddrs, UdpSocket};
use uuid::Uuid;

use crate::mqqb::packet::{Ping, PING_LEN};

/// How the MS-MQQB listener behaves.
#[derive(Debug, Clone)]
pub struct MqqbConfig {
    /// The GUID this queue manager answers with (EstablishConnection, pings, OrderAcks); None
    /// takes the queue manager's own.
    pub guid: Option<Uuid>,
    /// The window offered in ConnectionParameters and SessionAcks: unacknowledged packets a
    /// sender may have in flight. Windows offers 64; mqemu offers more by default, so a sender
    /// keeps the disk's group commits full (a sender that honours the window, as Windows and
    /// mqemu do, sends that many before it waits for a SessionAck).
    pub window: u16,
    /// Sessions served at once; more wait to be accepted.
    pub max_sessions: usize,
    /// Time from the connection to the end of ConnectionParameters (Windows: 60 s plus twice
    /// the round trip, MS-MQQB 3.1.2).
    pub init_timeout: Duration,
    /// A session on which nothing arrives for this long is closed (the sender reconnects when
    /// it has more to send).
    pub idle_timeout: Duration,
}

impl Default for MqqbConfig {
    fn default() -> Self {
        MqqbConfig {
            guid: None,
            window: 512,
            max_sessions: 1024,
            init_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// An MS-MQQB listener bound to its address.
pub struct MqqbServer {
    listener: TcpListener,
    qm: QueueManager,
    config: Arc<MqqbConfig>,
    guid: Uuid,
}

impl MqqbServer {
    /// Binds `addr`.
    pub async fn bind(
        addr: impl ToSocketAddrs,
        qm: QueueManager,
        config: MqqbConfig,
    ) -> io::Result<MqqbServer> {
        let guid = config.guid.unwrap_or_else(|| qm.guid());
        Ok(MqqbServer {
            listener: TcpListener::bind(addr).await?,
            qm,
            config: Arc::new(config),
            guid,
        })
    }

    /// The address it listens on (the port, when bound to port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `stop` completes; open sessions then close.
    pub async fn run(self, stop: impl Future<Output = ()> + Send + 'static) -> io::Result<()> {
        crate::listen::serve_connections(
            &self.listener,
            self.config.max_sessions,
            "MS-MQQB",
            stop,
            |stream, peer, mut quit| {
                let ctx = session::Context {
                    qm: self.qm.clone(),
                    config: self.config.clone(),
                    guid: self.guid,
                    peer,
                };
                async move {
                    tokio::select! {
                        r = session::serve(stream, &ctx) => match r {
                            Ok(()) => tracing::debug!(%peer, "MS-MQQB session ended"),
                            Err(why) => tracing::info!(%peer, %why, "MS-MQQB session closed"),
                        },
                        _ = quit.wait_for(|q| *q) => {}
                    }
                }
            },
        )
        .await;
        Ok(())
    }
}

/// Answers MS-MQQB pings (MS-MQQB 2.1.2) on `socket` as queue manager `guid` that accepts
/// sessions, until `stop` completes. Datagrams that are not pings are ignored, as the spec says.
pub async fn answer_pings(
    socket: UdpSocket,
    guid: Uuid,
    stop: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    tokio::pin!(stop);
    let mut buf = [0u8; 512];
    loop {
        let (n, from) = tokio::select! {
            () = &mut stop => return Ok(()),
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "MS-MQQB ping socket");
                    continue;
                }
            },
        };
        if n != PING_LEN {
            continue;
        }
        if let Some(ping) = Ping::decode(&buf[..n]) {
            let _ = socket
                .send_to(&ping.answer(guid, false).encode(), from)
                .await;
        }
    }
}
