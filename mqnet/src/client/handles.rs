//! The handles a connection gives out: a queue on the server, a transaction the connection owns,
//! a cursor; the last two end on the server when dropped.

use std::time::Duration;

use mqcore::{Error, LookupAction, Message, MessageId};

use crate::proto::{timeout_to_wire, CursorAction, Request, Response, Select};

use super::{unexpected, Client, Tx};

/// A queue on a server (the remote `MQOpenQueue` handle). Cheap to clone.
#[derive(Clone, Debug)]
pub struct RemoteQueue {
    pub(super) client: Client,
    pub(super) name: String,
}

impl RemoteQueue {
    /// The name the server knows the queue by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The connection this handle uses.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Sends a message (`MQSendMessage`).
    pub async fn send(&self, msg: Message, tx: Tx<'_>) -> Result<MessageId, Error> {
        msg.validate()?;
        let req = Request::Send {
            queue: self.name.clone(),
            msg: Box::new(msg),
            tx: tx.wire(),
        };
        match self.client.request(req).await? {
            Response::Sent(id) => Ok(id),
            other => Err(unexpected(&other)),
        }
    }

    /// Receives the first message, waiting up to `timeout` on the server.
    pub async fn receive(&self, timeout: Duration, tx: Tx<'_>) -> Result<Message, Error> {
        self.receive_select(Select::Head, timeout, tx).await
    }

    /// Peeks at the first message, waiting up to `timeout` on the server.
    pub async fn peek(&self, timeout: Duration) -> Result<Message, Error> {
        self.peek_select(Select::Head, timeout).await
    }

    async fn receive_select(
        &self,
        select: Select,
        timeout: Duration,
        tx: Tx<'_>,
    ) -> Result<Message, Error> {
        self.client
            .message(Request::Receive {
                queue: self.name.clone(),
                select,
                timeout_ms: timeout_to_wire(timeout),
                tx: tx.wire(),
            })
            .await
    }

    async fn peek_select(&self, select: Select, timeout: Duration) -> Result<Message, Error> {
        self.client
            .message(Request::Peek {
                queue: self.name.clone(),
                select,
                timeout_ms: timeout_to_wire(timeout),
            })
            .await
    }

    /// `MQReceiveMessageByLookupId` with `MQ_LOOKUP_PEEK_*`.
    pub async fn peek_by_lookup_id(&self, action: LookupAction) -> Result<Message, Error> {
        self.peek_select(Select::Lookup(action), Duration::ZERO)
            .await
    }

    /// `MQReceiveMessageByLookupId` with `MQ_LOOKUP_RECEIVE_*`.
    pub async fn receive_by_lookup_id(
        &self,
        action: LookupAction,
        tx: Tx<'_>,
    ) -> Result<Message, Error> {
        self.receive_select(Select::Lookup(action), Duration::ZERO, tx)
            .await
    }

    /// Peeks at the message with this id.
    pub async fn peek_by_id(&self, id: &MessageId) -> Result<Message, Error> {
        self.peek_select(Select::Id(*id), Duration::ZERO).await
    }

    /// Receives the message with this id.
    pub async fn receive_by_id(&self, id: &MessageId, tx: Tx<'_>) -> Result<Message, Error> {
        self.receive_select(Select::Id(*id), Duration::ZERO, tx)
            .await
    }

    /// Peeks at the first message with this correlation id.
    pub async fn peek_by_correlation_id(&self, id: &MessageId) -> Result<Message, Error> {
        self.peek_select(Select::Correlation(*id), Duration::ZERO)
            .await
    }

    /// Receives the first message with this correlation id.
    pub async fn receive_by_correlation_id(
        &self,
        id: &MessageId,
        tx: Tx<'_>,
    ) -> Result<Message, Error> {
        self.receive_select(Select::Correlation(*id), Duration::ZERO, tx)
            .await
    }

    /// Opens a cursor (`MQCreateCursor`), closed when dropped.
    pub async fn cursor(&self) -> Result<RemoteCursor, Error> {
        match self
            .client
            .request(Request::OpenCursor {
                queue: self.name.clone(),
            })
            .await?
        {
            Response::Cursor(id) => Ok(RemoteCursor {
                client: self.client.clone(),
                id,
            }),
            other => Err(unexpected(&other)),
        }
    }

    /// Messages in the queue, locked ones included.
    pub async fn len(&self) -> Result<usize, Error> {
        self.client
            .count(Request::Len {
                name: self.name.clone(),
            })
            .await
            .map(|n| n as usize)
    }

    /// Whether the queue holds no message.
    pub async fn is_empty(&self) -> Result<bool, Error> {
        Ok(self.len().await? == 0)
    }

    /// `MQMoveMessage`.
    pub async fn move_message(
        &self,
        lookup: u64,
        to: &RemoteQueue,
        tx: Tx<'_>,
    ) -> Result<(), Error> {
        self.client
            .done(Request::Move {
                queue: self.name.clone(),
                lookup,
                to: to.name.clone(),
                tx: tx.wire(),
            })
            .await
    }

    /// `MQMarkMessageRejected`.
    pub async fn reject(&self, lookup: u64) -> Result<(), Error> {
        self.client
            .done(Request::Reject {
                queue: self.name.clone(),
                lookup,
            })
            .await
    }

    /// Purges the queue.
    pub async fn purge(&self) -> Result<usize, Error> {
        self.client.purge(&self.name).await
    }
}

/// A transaction on a server, owned by its connection. Dropping it unfinished aborts it.
#[derive(Debug)]
pub struct RemoteTransaction {
    pub(super) client: Client,
    pub(super) id: u64,
    pub(super) external: bool,
    pub(super) ended: bool,
}

impl RemoteTransaction {
    /// Whether this is an external (two-phase) transaction.
    pub fn is_external(&self) -> bool {
        self.external
    }

    /// Phase one of an external transaction.
    pub async fn prepare(&self) -> Result<(), Error> {
        self.client.done(Request::Prepare { tx: self.id }).await
    }

    /// Commits.
    pub async fn commit(mut self) -> Result<(), Error> {
        self.ended = true;
        self.client.done(Request::Commit { tx: self.id }).await
    }

    /// Aborts: sends are discarded, received messages return.
    pub async fn abort(mut self) -> Result<(), Error> {
        self.ended = true;
        self.client.done(Request::Abort { tx: self.id }).await
    }
}

impl Drop for RemoteTransaction {
    fn drop(&mut self) {
        if !self.ended {
            self.client.fire(Request::Abort { tx: self.id });
        }
    }
}

/// A cursor on a server, closed when dropped.
#[derive(Debug)]
pub struct RemoteCursor {
    client: Client,
    id: u64,
}

impl RemoteCursor {
    async fn op(
        &self,
        action: CursorAction,
        timeout: Duration,
        tx: Tx<'_>,
    ) -> Result<Message, Error> {
        self.client
            .message(Request::CursorOp {
                cursor: self.id,
                action,
                timeout_ms: timeout_to_wire(timeout),
                tx: tx.wire(),
            })
            .await
    }

    /// Peeks at the message under the cursor (placing it on the first if new).
    pub async fn peek_current(&self, timeout: Duration) -> Result<Message, Error> {
        self.op(CursorAction::PeekCurrent, timeout, Tx::None).await
    }

    /// Moves to the next message and peeks at it.
    pub async fn peek_next(&self, timeout: Duration) -> Result<Message, Error> {
        self.op(CursorAction::PeekNext, timeout, Tx::None).await
    }

    /// Receives the message under the cursor.
    pub async fn receive_current(&self, timeout: Duration, tx: Tx<'_>) -> Result<Message, Error> {
        self.op(CursorAction::ReceiveCurrent, timeout, tx).await
    }
}

impl Drop for RemoteCursor {
    fn drop(&mut self) {
        self.client.fire(Request::CloseCursor { cursor: self.id });
    }
}
