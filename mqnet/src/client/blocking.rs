//! The blocking client: the async one driven by a one-worker runtime of its own, with its queue
//! and transaction handles.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use mqcore::{
    Error, ErrorCode, LookupAction, Message, MessageId, QueueInfo, QueueProps, QueueUpdate,
};

use crate::names::server_of;
use crate::proto::{Stats, TriggerRequest};

use super::{Client, ClientOptions, RemoteQueue, RemoteTransaction, TriggerAnswer, Tx};

/// A blocking client: the async one driven by a runtime of its own. Do not use it from inside
/// an async runtime (use [`Client`] there).
#[derive(Clone)]
pub struct BlockingClient {
    rt: Arc<tokio::runtime::Runtime>,
    client: Client,
}

impl std::fmt::Debug for BlockingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.client.fmt(f)
    }
}

impl BlockingClient {
    /// Connects to the server at `addr` without a token.
    pub fn connect(addr: &str) -> Result<BlockingClient, Error> {
        BlockingClient::connect_with(addr, &ClientOptions::default())
    }

    /// Connects with options.
    pub fn connect_with(addr: &str, options: &ClientOptions) -> Result<BlockingClient, Error> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("mqnet-client")
            .enable_all()
            .build()
            .map_err(|e| Error::new(ErrorCode::InsufficientResources, e.to_string()))?;
        let client = rt.block_on(Client::connect_with(addr, options))?;
        Ok(BlockingClient {
            rt: Arc::new(rt),
            client,
        })
    }

    /// Connects to the server that holds the queue `name` names and opens it.
    pub fn connect_to_queue(name: &str, options: &ClientOptions) -> Result<BlockingQueue, Error> {
        let addr = server_of(name, options.port)?;
        BlockingClient::connect_with(&addr, options)?.open(name)
    }

    /// Runs any async client call to completion.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// The async client underneath.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn queue(&self, q: RemoteQueue) -> BlockingQueue {
        BlockingQueue {
            rt: self.rt.clone(),
            q,
        }
    }

    /// [`Client::create_queue`].
    pub fn create_queue(&self, path: &str, props: QueueProps) -> Result<BlockingQueue, Error> {
        let q = self.block_on(self.client.create_queue(path, props))?;
        Ok(self.queue(q))
    }

    /// [`Client::delete_queue`].
    pub fn delete_queue(&self, name: &str) -> Result<(), Error> {
        self.block_on(self.client.delete_queue(name))
    }

    /// [`Client::open`].
    pub fn open(&self, name: &str) -> Result<BlockingQueue, Error> {
        let q = self.block_on(self.client.open(name))?;
        Ok(self.queue(q))
    }

    /// [`Client::queues`].
    pub fn queues(&self) -> Result<Vec<QueueInfo>, Error> {
        self.block_on(self.client.queues())
    }

    /// [`Client::queue_info`].
    pub fn queue_info(&self, name: &str) -> Result<QueueInfo, Error> {
        self.block_on(self.client.queue_info(name))
    }

    /// [`Client::set_queue_props`].
    pub fn set_queue_props(&self, name: &str, update: QueueUpdate) -> Result<(), Error> {
        self.block_on(self.client.set_queue_props(name, update))
    }

    /// [`Client::purge`].
    pub fn purge(&self, name: &str) -> Result<usize, Error> {
        self.block_on(self.client.purge(name))
    }

    /// [`Client::begin`].
    pub fn begin(&self) -> Result<BlockingTransaction, Error> {
        let t = self.block_on(self.client.begin())?;
        Ok(BlockingTransaction {
            rt: self.rt.clone(),
            t: Some(t),
        })
    }

    /// [`Client::begin_external`].
    pub fn begin_external(&self, xid: &str) -> Result<BlockingTransaction, Error> {
        let t = self.block_on(self.client.begin_external(xid))?;
        Ok(BlockingTransaction {
            rt: self.rt.clone(),
            t: Some(t),
        })
    }

    /// [`Client::send`].
    pub fn send(&self, name: &str, msg: Message, tx: Tx<'_>) -> Result<MessageId, Error> {
        self.block_on(self.client.send(name, msg, tx))
    }

    /// [`Client::send_through`]: to `name` wherever it is, through this server's queue manager.
    pub fn send_through(&self, name: &str, msg: Message, tx: Tx<'_>) -> Result<MessageId, Error> {
        self.block_on(self.client.send_through(name, msg, tx))
    }

    /// [`Client::receive`].
    pub fn receive(&self, name: &str, timeout: Duration, tx: Tx<'_>) -> Result<Message, Error> {
        self.block_on(self.client.receive(name, timeout, tx))
    }

    /// [`Client::peek`].
    pub fn peek(&self, name: &str, timeout: Duration) -> Result<Message, Error> {
        self.block_on(self.client.peek(name, timeout))
    }

    /// [`Client::stats`].
    pub fn stats(&self) -> Result<Stats, Error> {
        self.block_on(self.client.stats())
    }

    /// [`Client::triggers`].
    pub fn triggers(&self, req: TriggerRequest) -> Result<TriggerAnswer, Error> {
        self.block_on(self.client.triggers(req))
    }

    /// [`Client::outgoing`].
    pub fn outgoing(&self) -> Result<Vec<crate::proto::OutgoingView>, Error> {
        self.block_on(self.client.outgoing())
    }

    /// [`Client::outgoing_action`].
    pub fn outgoing_action(
        &self,
        name: &str,
        action: crate::proto::OutgoingAction,
    ) -> Result<(), Error> {
        self.block_on(self.client.outgoing_action(name, action))
    }
}

/// A [`RemoteQueue`] with blocking calls.
#[derive(Clone)]
pub struct BlockingQueue {
    rt: Arc<tokio::runtime::Runtime>,
    q: RemoteQueue,
}

impl BlockingQueue {
    /// The name the server knows the queue by.
    pub fn name(&self) -> &str {
        self.q.name()
    }

    /// The async handle underneath.
    pub fn remote(&self) -> &RemoteQueue {
        &self.q
    }

    /// [`RemoteQueue::send`].
    pub fn send(&self, msg: Message, tx: Tx<'_>) -> Result<MessageId, Error> {
        self.rt.block_on(self.q.send(msg, tx))
    }

    /// [`RemoteQueue::receive`].
    pub fn receive(&self, timeout: Duration, tx: Tx<'_>) -> Result<Message, Error> {
        self.rt.block_on(self.q.receive(timeout, tx))
    }

    /// [`RemoteQueue::peek`].
    pub fn peek(&self, timeout: Duration) -> Result<Message, Error> {
        self.rt.block_on(self.q.peek(timeout))
    }

    /// [`RemoteQueue::len`].
    pub fn len(&self) -> Result<usize, Error> {
        self.rt.block_on(self.q.len())
    }

    /// [`RemoteQueue::is_empty`].
    pub fn is_empty(&self) -> Result<bool, Error> {
        self.rt.block_on(self.q.is_empty())
    }

    /// [`RemoteQueue::receive_by_lookup_id`].
    pub fn receive_by_lookup_id(&self, action: LookupAction, tx: Tx<'_>) -> Result<Message, Error> {
        self.rt.block_on(self.q.receive_by_lookup_id(action, tx))
    }

    /// [`RemoteQueue::peek_by_lookup_id`].
    pub fn peek_by_lookup_id(&self, action: LookupAction) -> Result<Message, Error> {
        self.rt.block_on(self.q.peek_by_lookup_id(action))
    }

    /// [`RemoteQueue::purge`].
    pub fn purge(&self) -> Result<usize, Error> {
        self.rt.block_on(self.q.purge())
    }
}

/// A [`RemoteTransaction`] with blocking calls; dropping it unfinished aborts it.
pub struct BlockingTransaction {
    rt: Arc<tokio::runtime::Runtime>,
    t: Option<RemoteTransaction>,
}

impl<'a> From<&'a BlockingTransaction> for Tx<'a> {
    fn from(t: &'a BlockingTransaction) -> Tx<'a> {
        Tx::In(
            t.t.as_ref()
                .expect("a transaction is present until it ends"),
        )
    }
}

impl BlockingTransaction {
    /// [`RemoteTransaction::prepare`].
    pub fn prepare(&self) -> Result<(), Error> {
        let t = self.t.as_ref().expect("present until it ends");
        self.rt.block_on(t.prepare())
    }

    /// [`RemoteTransaction::commit`].
    pub fn commit(mut self) -> Result<(), Error> {
        let t = self.t.take().expect("present until it ends");
        self.rt.block_on(t.commit())
    }

    /// [`RemoteTransaction::abort`].
    pub fn abort(mut self) -> Result<(), Error> {
        let t = self.t.take().expect("present until it ends");
        self.rt.block_on(t.abort())
    }
}
