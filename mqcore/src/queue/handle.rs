//! The [`Queue`] handle (`MQOpenQueue`): send, receive and peek on the store it opened, with
//! MSMQ's per-store rules (journals, system queues and subqueues cannot be sent to;
//! transactional receive only from transactional queues).
//!
//! **Invariant:** a cancelled receive never loses a message: a message already claimed goes
//! back to its original position ([`Queue::give_back`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::store;
use super::{Cursor, Opened, QueueInner, Scan};
use crate::error::{Error, ErrorCode, Result};
use crate::manager::Inner;
use crate::message::{Message, MessageClass, MessageId};
use crate::name::{QueueName, SystemQueue};
use crate::queue::store::{Key, LookupId, State, Store, WaitError};
use crate::tx::{HeldMessage, Tx, TxShared};

/// An open queue: send, peek, receive, browse with cursors, move and reject.
///
/// Cheap to clone. Blocking calls wait on the queue manager's clock; async calls are
/// cancellation-safe (dropping the future never loses a message).
#[derive(Clone)]
pub struct Queue {
    pub(crate) qm: Arc<Inner>,
    pub(crate) target: Opened,
    pub(crate) name: QueueName,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("name", &self.name).finish()
    }
}

impl Queue {
    /// Whether the queue this handle opened was deleted (every operation then fails with
    /// `MQ_ERROR_QUEUE_DELETED`; a queue created again under the name is another queue). A
    /// holder that caches handles by name opens the name again.
    pub fn is_deleted(&self) -> bool {
        match &self.target {
            Opened::Main(q) | Opened::Journal(q) | Opened::Sub(q, _) => {
                q.deleted.load(Ordering::SeqCst)
            }
            Opened::System(_) | Opened::Remote(_) => false,
        }
    }

    /// Whether the queue accepts only authenticated messages (`PROPID_Q_AUTHENTICATE`). The
    /// engine trusts its own process; a server refuses unauthenticated senders' messages with
    /// `MQ_ERROR_MESSAGE_NOT_AUTHENTICATED` when this is set.
    pub fn requires_authentication(&self) -> bool {
        match &self.target {
            Opened::Main(q) | Opened::Journal(q) | Opened::Sub(q, _) => q.read_props().authenticate,
            Opened::System(_) | Opened::Remote(_) => false,
        }
    }

    /// Whether the queue is on another computer: the handle only sends, through an outgoing
    /// queue.
    pub fn is_remote(&self) -> bool {
        matches!(self.target, Opened::Remote(_))
    }

    /// Messages that entered this store since the queue manager started (recovered ones
    /// included): with [`Queue::len`], how many have left it.
    pub fn arrivals(&self) -> Result<u64> {
        Ok(self.store()?.arrivals())
    }

    /// The name this handle was opened with.
    pub fn name(&self) -> &QueueName {
        &self.name
    }

    /// The store this handle reads, failing if its queue was deleted.
    pub(crate) fn store(&self) -> Result<Arc<Store>> {
        Ok(match &self.target {
            Opened::Main(q) => {
                q.check_live()?;
                q.store.clone()
            }
            Opened::Journal(q) => {
                q.check_live()?;
                q.journal.clone()
            }
            Opened::Sub(q, name) => {
                q.check_live()?;
                q.subqueue(name)
            }
            Opened::System(s) => self.qm.system_store(*s).clone(),
            Opened::Remote(_) => {
                return Err(Error::new(
                    ErrorCode::UnsupportedOperation,
                    format!(
                        "{} is on another computer: its queue manager's messages are read there (connect a client to it); this handle only sends",
                        self.name
                    ),
                ))
            }
        })
    }

    /// Whether this store takes transactional receives (`PROPID_Q_TRANSACTION`: a transactional
    /// queue and its subqueues, and the transactional dead-letter queue).
    pub fn is_transactional(&self) -> bool {
        match &self.target {
            Opened::Main(q) | Opened::Sub(q, _) => q.is_transactional(),
            Opened::Journal(_) | Opened::Remote(_) => false,
            Opened::System(s) => *s == SystemQueue::DeadXact,
        }
    }

    /// The user queue this store belongs to, for journaling (not for journals themselves).
    pub(super) fn journaled_parent(&self) -> Option<&Arc<QueueInner>> {
        match &self.target {
            Opened::Main(q) | Opened::Sub(q, _) => Some(q),
            _ => None,
        }
    }

    /// Checks the transaction argument of a receive against the queue and returns the joined
    /// transaction, if any. `Tx::Single` behaves like no transaction for a local receive.
    pub(super) fn receive_tx<'t>(&self, tx: &Tx<'t>) -> Result<Option<&'t Arc<TxShared>>> {
        if tx.is_transactional() && !self.is_transactional() {
            return Err(Error::new(
                ErrorCode::TransactionUsage,
                format!(
                    "{} is not transactional; receive without a transaction",
                    self.name
                ),
            ));
        }
        match tx {
            Tx::In(t) => {
                self.qm.check_own_tx(t)?;
                drop(t.shared.lock_active()?);
                Ok(Some(&t.shared))
            }
            _ => Ok(None),
        }
    }

    /// Sends a message (`MQSendMessage`).
    ///
    /// A transactional queue takes only transactional sends and a non-transactional queue only
    /// non-transactional ones (`MQ_ERROR_TRANSACTION_USAGE`). Journals, dead-letter queues and
    /// subqueues cannot be sent to (`MQ_ERROR_UNSUPPORTED_ACCESS_MODE`). A send that would take the
    /// queue over its quota fails with `MQ_ERROR_INSUFFICIENT_RESOURCES` and changes nothing in the
    /// queue (a NACK 0x8003 goes to the admin queue if one was asked for, as MSMQ does).
    pub fn send(&self, msg: Message, tx: Tx<'_>) -> Result<MessageId> {
        if let Opened::Remote(out) = &self.target {
            return self.qm.send_remote(out, msg, tx);
        }
        let Opened::Main(q) = &self.target else {
            return Err(Error::new(
                ErrorCode::UnsupportedAccessMode,
                format!(
                    "{} cannot be sent to: only a queue itself takes sends",
                    self.name
                ),
            ));
        };
        self.qm.send(q, msg, tx)
    }

    /// Sends messages in order, as if by one [`Queue::send`] each, and returns each one's result.
    ///
    /// On a durable queue manager the batch costs one log record and one disk sync where it can:
    /// recoverable non-transactional messages are logged together, and single-message
    /// transactions (`Tx::Single`) with the same time limits commit together. Either way each
    /// message is checked (limits, quota) on its own and a refused one leaves the others alone;
    /// a failed log write fails the messages it carried, none of which became visible.
    pub fn send_batch(&self, msgs: Vec<Message>, tx: Tx<'_>) -> Vec<Result<MessageId>> {
        if let Opened::Remote(out) = &self.target {
            return self.qm.send_remote_batch(out, msgs, tx);
        }
        let Opened::Main(q) = &self.target else {
            let e = Error::new(
                ErrorCode::UnsupportedAccessMode,
                format!(
                    "{} cannot be sent to: only a queue itself takes sends",
                    self.name
                ),
            );
            return vec![Err(e); msgs.len()];
        };
        self.qm.send_batch(q, msgs, tx)
    }

    /// Receives up to `max` messages that are in the queue now, without waiting, in one step
    /// (one log record on a durable queue manager). Under `Tx::None` or `Tx::Single` the
    /// messages are gone when this returns, as with [`Queue::receive`]; under a transaction they
    /// are locked to it. Returns fewer messages, or none, when the queue has fewer.
    pub fn receive_batch(&self, max: usize, tx: Tx<'_>) -> Result<Vec<Message>> {
        if let Tx::In(_) = tx {
            let mut got = Vec::new();
            while got.len() < max {
                match self.receive(Duration::ZERO, tx) {
                    Ok(m) => got.push(m),
                    Err(e) if e.code() == ErrorCode::IoTimeout => break,
                    Err(e) if got.is_empty() => return Err(e),
                    Err(_) => break,
                }
            }
            return Ok(got);
        }
        self.receive_tx(&tx)?;
        let store = self.store()?;
        let mut taken = Vec::new();
        {
            let mut s = store.lock_head();
            s.expire(|| self.qm.now());
            let expired = s.drain_expired();
            while taken.len() < max {
                let Some(key) = s.head() else { break };
                match s.take(key) {
                    Some(m) => taken.push(m),
                    None => break,
                }
            }
            drop(s);
            self.qm.expired(&store, expired);
        }
        if taken.is_empty() {
            return Ok(Vec::new());
        }
        // Logged before the caller sees the messages, as a single receive is.
        self.qm.run(|eff| {
            for msg in &taken {
                eff.removed(&store, msg);
                self.qm
                    .after_receive(self.journaled_parent().map(|q| &**q), msg, eff);
            }
        })?;
        let got = taken.into_iter().map(|m| store.unbox(m)).collect();
        drop(store);
        self.tidy();
        Ok(got)
    }

    /// Receives the first message, waiting up to `timeout` (`MQ_ERROR_IO_TIMEOUT`).
    pub fn receive(&self, timeout: Duration, tx: Tx<'_>) -> Result<Message> {
        let txs = self.receive_tx(&tx)?;
        let store = self.store()?;
        // Fast path: one lock, no waiter registration.
        let fast = {
            let mut s = store.lock_head();
            s.expire(|| self.qm.now());
            let expired = s.drain_expired();
            let got = s.head().and_then(|key| Claim::at(&mut s, key, txs));
            drop(s);
            self.qm.expired(&store, expired);
            got
        };
        let claim = match fast {
            Some(c) => c,
            None => {
                let deadline = self.qm.deadline(timeout);
                let lookup = store
                    .take_blocking(txs.map(|t| t.id), &deadline)
                    .map_err(|e| self.wait_error(e, timeout))?;
                self.claim(&store, txs, lookup)?
            }
        };
        self.complete_receive(store, claim)
    }

    /// Receives asynchronously; the same rules as [`Queue::receive`]. Dropping the future before it
    /// completes gives a message already handed to it back to its original position.
    pub async fn receive_async(&self, timeout: Duration, tx: Tx<'_>) -> Result<Message> {
        let txs = self.receive_tx(&tx)?;
        let store = self.store()?;
        {
            let mut s = store.lock();
            s.expire(|| self.qm.now());
            let expired = s.drain_expired();
            drop(s);
            self.qm.expired(&store, expired);
        }
        let deadline = self.qm.deadline(timeout);
        let lookup = store::TakeFuture::new(store.clone(), txs.map(|t| t.id), deadline)
            .await
            .map_err(|e| self.wait_error(e, timeout))?;
        let claim = self.claim(&store, txs, lookup)?;
        self.complete_receive(store, claim)
    }

    /// Finishes a receive: a taken message is journaled and acknowledged now; a locked one joins
    /// its transaction and is journaled at commit.
    pub(super) fn complete_receive(&self, store: Arc<Store>, claim: Claim<'_>) -> Result<Message> {
        match claim {
            Claim::Taken(msg) => {
                // Logged (when durable) before the caller sees the message: a receive that
                // returned is never undone by a crash.
                self.qm.run(|eff| {
                    eff.removed(&store, &msg);
                    self.qm
                        .after_receive(self.journaled_parent().map(|q| &**q), &msg, eff);
                })?;
                // Built where it is returned: a `Message` is a few hundred bytes.
                let out = Ok(store.unbox(msg));
                drop(store);
                self.tidy();
                out
            }
            Claim::Locked(lookup, t) => {
                let msg = store
                    .lock()
                    .locked_message(lookup)
                    .cloned()
                    .ok_or_else(|| self.deleted())?;
                let mut state = t.lock();
                if state.phase != crate::tx::Phase::Active {
                    drop(state);
                    self.give_back(&store, lookup);
                    return Err(Error::new(
                        ErrorCode::TransactionSequence,
                        "the transaction was prepared while the receive waited",
                    ));
                }
                state.held.push(HeldMessage {
                    store,
                    queue: self.journaled_parent().cloned(),
                    lookup,
                    move_to: None,
                });
                Ok(msg)
            }
        }
    }

    /// Puts a message this handle locked back where it was; if the queue was deleted meanwhile,
    /// the message fails as a deleted queue's messages do (NACK 0xC000, dead letter).
    pub(super) fn give_back(&self, store: &Store, lookup: LookupId) {
        if let Some(msg) = store.lock().unlock(lookup, false) {
            self.qm.run_quietly(|eff| {
                eff.removed(store, &msg);
                self.qm.fail_message(msg, MessageClass::NACK_Q_DELETED, eff);
            });
        }
    }

    /// What a waiting receive got handed: locked to its transaction, or taken out for a
    /// non-transactional receive. Missing only when the queue was deleted in between.
    pub(super) fn claim<'t>(
        &self,
        store: &Store,
        txs: Option<&'t Arc<TxShared>>,
        lookup: LookupId,
    ) -> Result<Claim<'t>> {
        match txs {
            Some(t) => Ok(Claim::Locked(lookup, t)),
            None => store
                .lock()
                .remove_locked(lookup)
                .map(Claim::Taken)
                .ok_or_else(|| self.deleted()),
        }
    }

    pub(super) fn deleted(&self) -> Error {
        Error::new(
            ErrorCode::QueueDeleted,
            format!("queue {} was deleted during the receive", self.name),
        )
    }

    pub(super) fn wait_error(&self, e: WaitError, timeout: Duration) -> Error {
        match e {
            WaitError::Timeout => Error::new(
                ErrorCode::IoTimeout,
                format!("no message arrived in {} within {timeout:?}", self.name),
            ),
            WaitError::Closed => Error::new(
                ErrorCode::QueueDeleted,
                format!("queue {} was deleted while waiting", self.name),
            ),
        }
    }

    /// Removes empty subqueues after a message left one, as MSMQ does.
    pub(super) fn tidy(&self) {
        if let Opened::Sub(q, _) = &self.target {
            q.tidy_subqueues();
        }
    }

    /// Peeks at the first message without removing it, waiting up to `timeout`.
    pub fn peek(&self, timeout: Duration) -> Result<Message> {
        let store = self.store()?;
        let qm = self.qm.clone();
        let deadline = self.qm.deadline(timeout);
        let r = store.watch_blocking(&deadline, |s| {
            s.expire(|| qm.now());
            s.first().map(|(_, m)| m.clone())
        });
        self.after_watch(&store);
        r.map_err(|e| self.wait_error(e, timeout))
    }

    /// Peeks asynchronously.
    pub async fn peek_async(&self, timeout: Duration) -> Result<Message> {
        let store = self.store()?;
        let qm = self.qm.clone();
        let deadline = self.qm.deadline(timeout);
        let r = store::WatchFuture::new(store.clone(), deadline, move |s: &mut State| {
            s.expire(|| qm.now());
            s.first().map(|(_, m)| m.clone())
        })
        .await;
        self.after_watch(&store);
        r.map_err(|e| self.wait_error(e, timeout))
    }

    /// Dead-letters whatever a probe found expired.
    pub(super) fn after_watch(&self, store: &Store) {
        let expired = store.lock().drain_expired();
        self.qm.expired(store, expired);
    }

    /// Starts a walk that visits every message once, in queue order, then waits for arrivals
    /// (what the Triggers service watches a queue with; see [`Scan`]).
    pub fn scan(&self) -> Scan {
        Scan::new(self.clone())
    }

    /// Opens a cursor at the head of the queue (`MQCreateCursor`).
    pub fn cursor(&self) -> Cursor {
        Cursor::new(self.clone())
    }

    /// Every visible message in queue order, without removing any (for tests and management).
    pub fn messages(&self) -> Result<Vec<Message>> {
        Ok(self.store()?.lock().visible_messages())
    }

    /// How many receives, peeks and cursors are registered as waiting on this queue right now.
    /// Tests wait on it to know a receiver is really blocked before they act, instead of
    /// sleeping and hoping.
    #[doc(hidden)]
    pub fn waiting(&self) -> Result<usize> {
        Ok(self.store()?.lock().waiting())
    }

    /// Number of messages, locked ones included.
    pub fn len(&self) -> Result<usize> {
        Ok(self.store()?.lock().len())
    }

    /// Whether the queue holds no message at all.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// A message claimed by a receive: gone from the queue (boxed as the queue kept it, so the box is
/// freed outside the lock), or locked to a transaction.
pub(super) enum Claim<'t> {
    Taken(Box<Message>),
    Locked(LookupId, &'t Arc<TxShared>),
}

impl<'t> Claim<'t> {
    /// Claims the visible message at `key`: locked to the transaction, or taken out without one.
    /// `None` if it is cold and cannot be read back.
    pub(super) fn at(s: &mut State, key: Key, txs: Option<&'t Arc<TxShared>>) -> Option<Claim<'t>> {
        Some(match txs {
            Some(t) => Claim::Locked(s.lock(key, t.id)?, t),
            None => Claim::Taken(s.take(key)?),
        })
    }
}
