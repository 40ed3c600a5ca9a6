//! The AMQP face: AMQP 0-9-1 (and the 0-8 dialect Mono's System.Messaging provider speaks) on
//! a listener of its own, with MSMQ's semantics underneath, so RabbitMQ's clients in every
//! language reach mqemu's queues.
//!
//! An AMQP queue is a private queue (`orders` is `.\private$\orders`); a publish to the default
//! exchange is a send; an unacknowledged delivery from a transactional queue is a message
//! received under a transaction of its own, which `basic.ack` commits and `basic.reject`,
//! `basic.nack` with requeue or the channel's end abort, so the message returns to its place with
//! its abort count raised. docs/amqp.md has the method table and the property mapping.
//!
//! [`wire`] reads and writes frames (amq-protocol's codec), [`conn`] runs a connection and its
//! channels, [`map`] translates properties.

mod conn;
mod consume;
mod map;
mod methods;
mod publish;
pub mod wire;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mqcore::QueueManager;
use tokio::net::{TcpListener, ToSocketAddrs};

use crate::auth::Auth;

/// How an AMQP listener behaves.
#[derive(Debug, Clone)]
pub struct AmqpConfig {
    /// Users and their rights: PLAIN's user name and password are a `[[user]]`'s name and token.
    /// None means open access (any credentials).
    pub auth: Auth,
    /// The largest frame the server accepts and offers in `connection.tune`.
    pub frame_max: u32,
    /// The most channels a connection may open.
    pub channel_max: u16,
    /// The heartbeat the server proposes; the client's answer in `tune-ok` wins (0 turns them
    /// off).
    pub heartbeat: Duration,
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// Time allowed from the protocol header to `connection.open`.
    pub handshake_timeout: Duration,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        AmqpConfig {
            auth: Auth::default(),
            frame_max: 128 * 1024,
            channel_max: 2047,
            heartbeat: Duration::from_secs(60),
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// An AMQP listener bound to its address.
pub struct AmqpServer {
    listener: TcpListener,
    qm: QueueManager,
    config: Arc<AmqpConfig>,
}

impl AmqpServer {
    /// Binds `addr`.
    pub async fn bind(
        addr: impl ToSocketAddrs,
        qm: QueueManager,
        config: AmqpConfig,
    ) -> io::Result<AmqpServer> {
        Ok(AmqpServer {
            listener: TcpListener::bind(addr).await?,
            qm,
            config: Arc::new(config),
        })
    }

    /// The address it listens on (the port, when bound to port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `stop` completes; connections then close (their unacknowledged deliveries
    /// go back to their queues).
    pub async fn run(self, stop: impl Future<Output = ()> + Send + 'static) -> io::Result<()> {
        let (qm, config) = (&self.qm, &self.config);
        crate::listen::serve_connections(
            &self.listener,
            config.max_connections,
            "AMQP",
            stop,
            |stream, peer, quit| conn::serve(stream, peer, qm.clone(), config.clone(), quit),
        )
        .await;
        Ok(())
    }
}
