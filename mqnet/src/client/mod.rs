//! Rust clients of the native protocol: [`Client`] (async, on tokio) and [`BlockingClient`].
//!
//! They have the engine's method names and error codes, so code moves between an embedded
//! `mqcore::QueueManager` and a remote server by changing how it connects. Queue names may be
//! format names that say where the queue is (`DIRECT=TCP:10.0.0.5\private$\orders`,
//! `DIRECT=OS:host\private$\orders`): [`Client::connect_to_queue`] connects to that host, and
//! every method sends the server the local name of the queue.
//!
//! One connection carries any number of requests at once: each call writes its request and
//! waits for the answer with its id, so concurrent calls on clones of one `Client` pipeline.
//! Dropping a call's future after its request was written does not cancel it on the server:
//! a receive dropped that way may still take a message. Use timeouts on the request instead.
//!
//! Here: the options, [`Tx`] and the async [`Client`]'s calls. The connection under it (outbox,
//! writer and reader tasks, pending answers, handshake) is in `conn`; the queue, transaction and
//! cursor handles in `handles`; [`BlockingClient`] and its handles in `blocking`.

use std::sync::Arc;
use std::time::Duration;

use mqcore::{Compat, Error, ErrorCode, Message, MessageId, QueueInfo, QueueProps, QueueUpdate};

use crate::names::{localize, server_of};
use crate::proto::{Request, Response, Stats, TriggerRequest, TriggerView, TxRef, DEFAULT_PORT};
use mqcore::triggers::Rule;

mod blocking;
mod conn;
mod handles;

pub use blocking::{BlockingClient, BlockingQueue, BlockingTransaction};
pub use handles::{RemoteCursor, RemoteQueue, RemoteTransaction};

use conn::{unreachable_server, Conn};

/// The answer to a [`TriggerRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriggerAnswer {
    /// Done (deletions).
    Done,
    /// The rules asked for, or the one added.
    Rules(Vec<Rule>),
    /// The triggers asked for, or the one changed.
    Triggers(Vec<TriggerView>),
}

/// How a client connects.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The token the server's configuration gives this user, if it asks for one.
    pub token: Option<String>,
    /// The port of servers named by format names (which carry no port).
    pub port: u16,
    /// Time allowed to connect and shake hands.
    pub connect_timeout: Duration,
    /// Connect as an application on the server's own computer ([`Request::Local`]): MSMQ lets
    /// local applications receive under single-message and internal transactions, where a
    /// remote receive needs an external one. The server accepts it from a loopback address only;
    /// elsewhere the connection fails with `MQ_ERROR_ACCESS_DENIED`.
    pub local: bool,
    /// TLS to a server that speaks it ([`crate::tls`]): what to trust, and the name to check.
    pub tls: Option<crate::tls::ClientTls>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            token: None,
            port: DEFAULT_PORT,
            connect_timeout: Duration::from_secs(10),
            local: false,
            tls: None,
        }
    }
}

/// The transaction a remote operation runs under (the remote form of `mqcore::Tx`).
#[derive(Clone, Copy)]
pub enum Tx<'a> {
    /// `MQ_NO_TRANSACTION`.
    None,
    /// `MQ_SINGLE_MESSAGE`.
    Single,
    /// Part of a transaction begun on the same connection.
    In(&'a RemoteTransaction),
}

impl<'a> From<&'a RemoteTransaction> for Tx<'a> {
    fn from(t: &'a RemoteTransaction) -> Tx<'a> {
        Tx::In(t)
    }
}

impl Tx<'_> {
    fn wire(self) -> TxRef {
        match self {
            Tx::None => TxRef::None,
            Tx::Single => TxRef::Single,
            Tx::In(t) => TxRef::In(t.id),
        }
    }
}

/// An async connection to a server. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Client {
    conn: Arc<Conn>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.conn.server)
            .finish()
    }
}

impl Client {
    /// Connects to the server at `addr` (`host:port`) without a token.
    pub async fn connect(addr: &str) -> Result<Client, Error> {
        Client::connect_with(addr, &ClientOptions::default()).await
    }

    /// Connects to the server at `addr` with these options.
    pub async fn connect_with(addr: &str, options: &ClientOptions) -> Result<Client, Error> {
        tokio::time::timeout(options.connect_timeout, async {
            let client = Client::handshake(addr, options).await?;
            if options.local {
                client.done(Request::Local).await?;
            }
            Ok(client)
        })
        .await
        .map_err(|_| unreachable_server(addr, "timed out"))?
    }

    /// Connects to the server that holds the queue `name` names and opens the queue.
    pub async fn connect_to_queue(
        name: &str,
        options: &ClientOptions,
    ) -> Result<RemoteQueue, Error> {
        let addr = server_of(name, options.port)?;
        Client::connect_with(&addr, options).await?.open(name).await
    }

    /// The server's computer name.
    pub fn server_name(&self) -> &str {
        &self.conn.server
    }

    /// The server's compatibility level.
    pub fn compat(&self) -> Compat {
        self.conn.compat
    }

    /// Creates a queue (`MQCreateQueue`).
    pub async fn create_queue(&self, path: &str, props: QueueProps) -> Result<RemoteQueue, Error> {
        let path = localize(path)?;
        match self
            .request(Request::CreateQueue {
                path: path.clone(),
                props,
            })
            .await?
        {
            Response::Queue(info) => Ok(self.handle(info.path.to_string())),
            other => Err(unexpected(&other)),
        }
    }

    /// Deletes a queue (`MQDeleteQueue`).
    pub async fn delete_queue(&self, name: &str) -> Result<(), Error> {
        let name = localize(name)?;
        self.done(Request::DeleteQueue { name }).await
    }

    /// Opens a queue, checking that it exists (`MQOpenQueue`).
    pub async fn open(&self, name: &str) -> Result<RemoteQueue, Error> {
        let name = localize(name)?;
        self.count(Request::Len { name: name.clone() }).await?;
        Ok(self.handle(name))
    }

    /// A handle that sends through this server to the queue `name` names, wherever it is: the
    /// name goes to the server unchanged, so a queue on another computer is reached through the
    /// server's outgoing queue (store-and-forward, MSMQ's model: an application talks to its own
    /// queue manager). [`Client::open`] instead expects the queue on this server. Nothing is
    /// checked before the first send.
    pub fn sender(&self, name: &str) -> RemoteQueue {
        self.handle(name.to_owned())
    }

    /// [`Client::send`] through this server's queue manager ([`Client::sender`]).
    pub async fn send_through(
        &self,
        name: &str,
        msg: Message,
        tx: Tx<'_>,
    ) -> Result<MessageId, Error> {
        self.sender(name).send(msg, tx).await
    }

    fn handle(&self, name: String) -> RemoteQueue {
        RemoteQueue {
            client: self.clone(),
            name,
        }
    }

    /// Every queue the connection's user has a right on.
    pub async fn queues(&self) -> Result<Vec<QueueInfo>, Error> {
        match self.request(Request::ListQueues).await? {
            Response::Queues(q) => Ok(q),
            other => Err(unexpected(&other)),
        }
    }

    /// One queue's management properties.
    pub async fn queue_info(&self, name: &str) -> Result<QueueInfo, Error> {
        let name = localize(name)?;
        match self.request(Request::QueueInfo { name }).await? {
            Response::Queue(q) => Ok(*q),
            other => Err(unexpected(&other)),
        }
    }

    /// Changes a queue's properties (`MQSetQueueProperties`).
    pub async fn set_queue_props(&self, name: &str, update: QueueUpdate) -> Result<(), Error> {
        let name = localize(name)?;
        self.done(Request::SetQueueProps { name, update }).await
    }

    /// Purges a queue; returns how many messages went.
    pub async fn purge(&self, name: &str) -> Result<usize, Error> {
        let name = localize(name)?;
        self.count(Request::Purge { name })
            .await
            .map(|n| n as usize)
    }

    /// Begins an internal transaction (`MQBeginTransaction`), owned by this connection.
    pub async fn begin(&self) -> Result<RemoteTransaction, Error> {
        self.new_tx(Request::Begin, false).await
    }

    /// Enlists in the external transaction `xid` (prepare, then commit).
    pub async fn begin_external(&self, xid: &str) -> Result<RemoteTransaction, Error> {
        self.new_tx(
            Request::BeginExternal {
                xid: xid.to_owned(),
            },
            true,
        )
        .await
    }

    async fn new_tx(&self, req: Request, external: bool) -> Result<RemoteTransaction, Error> {
        match self.request(req).await? {
            Response::Tx(id) => Ok(RemoteTransaction {
                client: self.clone(),
                id,
                external,
                ended: false,
            }),
            other => Err(unexpected(&other)),
        }
    }

    /// Prepared transactions whose outcome the server does not know.
    pub async fn in_doubt(&self) -> Result<Vec<String>, Error> {
        match self.request(Request::InDoubt).await? {
            Response::Xids(x) => Ok(x),
            other => Err(unexpected(&other)),
        }
    }

    /// Commits or aborts an in-doubt transaction.
    pub async fn resolve_in_doubt(&self, xid: &str, commit: bool) -> Result<(), Error> {
        self.done(Request::ResolveInDoubt {
            xid: xid.to_owned(),
            commit,
        })
        .await
    }

    /// Sends to a queue by name.
    pub async fn send(&self, name: &str, msg: Message, tx: Tx<'_>) -> Result<MessageId, Error> {
        self.handle(localize(name)?).send(msg, tx).await
    }

    /// Receives from a queue by name.
    pub async fn receive(
        &self,
        name: &str,
        timeout: Duration,
        tx: Tx<'_>,
    ) -> Result<Message, Error> {
        self.handle(localize(name)?).receive(timeout, tx).await
    }

    /// Peeks at a queue by name.
    pub async fn peek(&self, name: &str, timeout: Duration) -> Result<Message, Error> {
        self.handle(localize(name)?).peek(timeout).await
    }

    /// Server and queue-manager figures.
    pub async fn stats(&self) -> Result<Stats, Error> {
        match self.request(Request::Stats).await? {
            Response::Stats(s) => Ok(s),
            other => Err(unexpected(&other)),
        }
    }

    /// Administers the server's MSMQ Triggers service (needs the admin right).
    pub async fn triggers(&self, req: TriggerRequest) -> Result<TriggerAnswer, Error> {
        match self.request(Request::Triggers(req)).await? {
            Response::Done => Ok(TriggerAnswer::Done),
            Response::Rules(r) => Ok(TriggerAnswer::Rules(r)),
            Response::Triggers(t) => Ok(TriggerAnswer::Triggers(t)),
            other => Err(unexpected(&other)),
        }
    }

    /// Sends a [`Request::Transfer`] (queue-manager transfer; the transfer service's call).
    pub async fn transfer(&self, req: Request) -> Result<mqcore::transfer::Reply, Error> {
        match self.request(req).await? {
            Response::Transferred(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }

    /// The outgoing queues of the server's queue manager and their transfer state.
    pub async fn outgoing(&self) -> Result<Vec<crate::proto::OutgoingView>, Error> {
        match self.request(Request::ListOutgoing).await? {
            Response::Outgoing(v) => Ok(v),
            other => Err(unexpected(&other)),
        }
    }

    /// `PAUSE`, `RESUME` or `EOD_RESEND` on an outgoing queue of the server (admin right).
    pub async fn outgoing_action(
        &self,
        name: &str,
        action: crate::proto::OutgoingAction,
    ) -> Result<(), Error> {
        self.done(Request::OutgoingAction {
            name: name.to_owned(),
            action,
        })
        .await
    }

    /// One round trip that does nothing.
    pub async fn ping(&self) -> Result<(), Error> {
        self.done(Request::Ping).await
    }

    async fn done(&self, req: Request) -> Result<(), Error> {
        match self.request(req).await? {
            Response::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    async fn count(&self, req: Request) -> Result<u64, Error> {
        match self.request(req).await? {
            Response::Count(n) => Ok(n),
            other => Err(unexpected(&other)),
        }
    }

    async fn message(&self, req: Request) -> Result<Message, Error> {
        match self.request(req).await? {
            Response::Message(m) => Ok(*m),
            other => Err(unexpected(&other)),
        }
    }
}

fn unexpected(r: &Response) -> Error {
    Error::new(
        ErrorCode::Error,
        format!("the server gave an answer of the wrong kind: {r:?}"),
    )
}
