//! mqnet: mqemu over the network. The native protocol, the queue server and its Rust clients.
//!
//! - [`Server`] serves one `mqcore::QueueManager` on TCP ([`server`]).
//! - [`Client`] and [`BlockingClient`] reach it with the engine's method names and MSMQ's error
//!   codes ([`client`]); a format name such as `DIRECT=TCP:127.0.0.1\private$\q` picks the server.
//! - [`TransferService`] carries messages from the queue manager's outgoing queues to the
//!   servers that hold their destination queues, exactly once and in order ([`transfer`]).
//! - With feature `http`, [`http::HttpServer`] serves the same queue manager as a JSON API with
//!   its OpenAPI document, health probes and Prometheus metrics.
//! - [`mqqb`] decodes and encodes MS-MQQB, MSMQ's own binary protocol on TCP 1801;
//!   [`binary::MqqbServer`] accepts Windows queue managers' sessions with it, and outgoing
//!   queues to `mqqb://` hosts deliver over it.
//! - [`frame`] and [`proto`] define the wire: length + crc32 frames holding postcard-encoded
//!   requests and responses with request ids, so one connection pipelines many requests.
//!
//! ```no_run
//! # async fn demo() -> Result<(), mqcore::Error> {
//! use std::time::Duration;
//! use mqcore::Message;
//! use mqnet::{Client, ClientOptions, Tx};
//!
//! let q = Client::connect_to_queue(r"DIRECT=TCP:127.0.0.1\private$\orders", &ClientOptions::default()).await?;
//! q.send(Message::new("order 1"), Tx::None).await?;
//! let m = q.receive(Duration::from_secs(1), Tx::None).await?;
//! # Ok(()) }
//! ```

#[cfg(feature = "amqp")]
pub mod amqp;
pub mod auth;
pub mod binary;
pub mod client;
pub mod frame;
#[cfg(feature = "http")]
pub mod http;
pub mod http_action;
mod listen;
pub mod mqqb;
pub mod names;
pub mod proto;
pub mod server;
mod steps;
pub mod tls;
pub mod transfer;

pub use auth::{Auth, Right, User};
pub use client::{
    BlockingClient, BlockingQueue, BlockingTransaction, Client, ClientOptions, RemoteCursor,
    RemoteQueue, RemoteTransaction, TriggerAnswer, Tx,
};
pub use http_action::HttpAction;
pub use proto::{Stats, TriggerRequest, TriggerView, DEFAULT_PORT};
pub use server::{Server, ServerConfig, ServerCounts, Stopper, TriggerService};
pub use tls::{ClientTls, ServerTls, TlsFiles};
pub use transfer::{TransferConfig, TransferService};
