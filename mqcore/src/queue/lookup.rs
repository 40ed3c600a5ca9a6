//! Finding one message of a queue by lookup id, message id or correlation id
//! (`MQReceiveMessageByLookupId` and friends), and the operations on one message: move,
//! reject, purge.

use std::sync::Arc;

use super::handle::Claim;
use super::{LookupAction, Opened, Queue};
use crate::error::{Error, ErrorCode, Result};
use crate::message::{Message, MessageClass, MessageId};
use crate::queue::store::{Found, Key, LookupId, Owner, State};
use crate::tx::{HeldMessage, Tx};

impl Queue {
    pub(super) fn locate(&self, s: &mut State, action: LookupAction) -> Result<Key> {
        let found = match action {
            LookupAction::First => s.first_by_lookup(),
            LookupAction::Last => s.last_by_lookup(),
            LookupAction::Next(id) => s.next_by_lookup(id),
            LookupAction::Previous(id) => s.prev_by_lookup(id),
            LookupAction::Current(id) => match s.find(id) {
                Found::Visible(key) => Some(key),
                Found::Locked(owner) => return Err(locked_error(owner, id)),
                Found::Missing => None,
            },
        };
        found.ok_or_else(|| {
            Error::new(
                ErrorCode::MessageNotFound,
                format!("no message for {action:?} in {}", self.name),
            )
        })
    }

    /// Peeks by lookup id (`MQReceiveMessageByLookupId` with a `PEEK` action). Does not wait.
    pub fn peek_by_lookup_id(&self, action: LookupAction) -> Result<Message> {
        self.peek_located(|q, s| q.locate(s, action))
    }

    /// Receives by lookup id. A message locked by a transaction gives
    /// `MQ_ERROR_MESSAGE_LOCKED_UNDER_TRANSACTION`; a missing one `MQ_ERROR_MESSAGE_NOT_FOUND`.
    pub fn receive_by_lookup_id(&self, action: LookupAction, tx: Tx<'_>) -> Result<Message> {
        self.receive_located(tx, |q, s| q.locate(s, action))
    }

    /// Peeks at the message with this id. Does not wait.
    pub fn peek_by_id(&self, id: &MessageId) -> Result<Message> {
        self.peek_located(|q, s| q.locate_id(s, id))
    }

    /// Receives the message with this id (System.Messaging's `ReceiveById`).
    pub fn receive_by_id(&self, id: &MessageId, tx: Tx<'_>) -> Result<Message> {
        self.receive_located(tx, |q, s| q.locate_id(s, id))
    }

    /// Peeks at the first message with this correlation id.
    pub fn peek_by_correlation_id(&self, id: &MessageId) -> Result<Message> {
        self.peek_located(|q, s| q.locate_correlation(s, id))
    }

    /// Receives the first message with this correlation id (`ReceiveByCorrelationId`).
    pub fn receive_by_correlation_id(&self, id: &MessageId, tx: Tx<'_>) -> Result<Message> {
        self.receive_located(tx, |q, s| q.locate_correlation(s, id))
    }

    pub(super) fn locate_id(&self, s: &mut State, id: &MessageId) -> Result<Key> {
        match s.find_by_id(id) {
            Found::Visible(key) => Ok(key),
            Found::Locked(owner) => Err(locked_error(owner, 0)),
            Found::Missing => Err(Error::new(
                ErrorCode::MessageNotFound,
                format!("no message with id {id} in {}", self.name),
            )),
        }
    }

    pub(super) fn locate_correlation(&self, s: &mut State, id: &MessageId) -> Result<Key> {
        s.first_by_correlation(id).ok_or_else(|| {
            Error::new(
                ErrorCode::MessageNotFound,
                format!("no message with correlation id {id} in {}", self.name),
            )
        })
    }

    /// Peeks at the message `locate` picks, under the lock, without waiting.
    pub(super) fn peek_located(
        &self,
        locate: impl FnOnce(&Queue, &mut State) -> Result<Key>,
    ) -> Result<Message> {
        let store = self.store()?;
        let mut s = store.lock();
        let key = locate(self, &mut s)?;
        s.read(key).ok_or_else(|| self.unreadable(key))
    }

    /// A located message that could not be read back from the log (the log failed; the error
    /// is logged where it happened).
    pub(super) fn unreadable(&self, key: Key) -> Error {
        Error::new(
            ErrorCode::MessageStorageFailed,
            format!(
                "message {} of {} cannot be read back from the log",
                key.lookup(),
                self.name
            ),
        )
    }

    /// Receives the message `locate` picks, under the lock, without waiting.
    pub(super) fn receive_located(
        &self,
        tx: Tx<'_>,
        locate: impl FnOnce(&Queue, &mut State) -> Result<Key>,
    ) -> Result<Message> {
        let txs = self.receive_tx(&tx)?;
        let store = self.store()?;
        let claim = {
            let mut s = store.lock();
            let key = locate(self, &mut s)?;
            Claim::at(&mut s, key, txs).ok_or_else(|| self.unreadable(key))?
        };
        self.complete_receive(store, claim)
    }

    /// Moves a message to a subqueue of the same queue, from a subqueue back to its queue, or
    /// between sibling subqueues (`MQMoveMessage`, MSMQ 4.0). The move count goes up and the abort
    /// count starts again from zero. Under a transaction the move happens at commit.
    pub fn move_message(&self, lookup: LookupId, to: &Queue, tx: Tx<'_>) -> Result<()> {
        self.qm
            .require_msmq4("moving messages between a queue and its subqueues")?;
        let same_family = match (&self.target, &to.target) {
            (Opened::Main(a), Opened::Sub(b, _))
            | (Opened::Sub(a, _), Opened::Main(b))
            | (Opened::Sub(a, _), Opened::Sub(b, _)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        if !same_family {
            return Err(Error::new(
                ErrorCode::IllegalOperation,
                format!(
                    "cannot move from {} to {}: moves go between a queue and its own subqueues",
                    self.name, to.name
                ),
            ));
        }
        let txs = self.receive_tx(&tx)?;
        let from = self.store()?;
        let dest = to.store()?;
        if Arc::ptr_eq(&from, &dest) {
            return Err(Error::new(
                ErrorCode::IllegalOperation,
                "source and destination are the same queue",
            ));
        }
        let claim = {
            let mut s = from.lock();
            let key = self.locate(&mut s, LookupAction::Current(lookup))?;
            Claim::at(&mut s, key, txs).ok_or_else(|| self.unreadable(key))?
        };
        match claim {
            Claim::Taken(msg) => {
                self.qm.run(|eff| eff.moved(&from, &dest, msg))?;
                drop(from);
                self.tidy();
            }
            Claim::Locked(lookup, t) => t.lock().held.push(HeldMessage {
                store: from,
                queue: self.journaled_parent().cloned(),
                lookup,
                move_to: Some(dest),
            }),
        }
        Ok(())
    }

    /// Rejects a message (`MQMarkMessageRejected`, MSMQ 4.0): it leaves the queue, a NACK
    /// 0xC004 (`NACK_RECEIVE_REJECTED`) goes to its admin queue if asked for, and it is
    /// dead-lettered (always, for a transactional message).
    pub fn reject(&self, lookup: LookupId) -> Result<()> {
        self.qm.require_msmq4("rejecting messages")?;
        let store = self.store()?;
        let msg = {
            let mut s = store.lock();
            let key = self.locate(&mut s, LookupAction::Current(lookup))?;
            s.take(key).ok_or_else(|| self.unreadable(key))?
        };
        self.qm.run(|eff| {
            eff.removed(&store, &msg);
            self.qm
                .fail_message(*msg, MessageClass::NACK_RECEIVE_REJECTED, eff);
        })?;
        drop(store);
        self.tidy();
        Ok(())
    }

    /// Removes every message that is not locked by a transaction (`MQPurgeQueue`). Senders that
    /// asked for negative receive acknowledgements get NACK 0xC001 (`NACK_Q_PURGED`).
    ///
    /// A long queue goes a batch at a time, each batch one logged step, so that its messages are
    /// never all in memory (or in one log record) at once; messages that arrive meanwhile (lookup
    /// ids past the last one when the purge began) stay.
    pub fn purge(&self) -> Result<usize> {
        let store = self.store()?;
        let last = store.last_lookup();
        // Only messages purged from their destination were never received; journal copies and
        // dead letters were acknowledged (or not) already.
        let acknowledge = self.journaled_parent().is_some();
        let mut n = 0;
        loop {
            let msgs = store.lock().take_first(PURGE_BATCH, last);
            if msgs.is_empty() {
                break;
            }
            n += msgs.len();
            self.qm.run(|eff| {
                for m in &msgs {
                    eff.removed(&store, m);
                    if acknowledge {
                        self.qm.acknowledge(m, MessageClass::NACK_Q_PURGED, eff);
                    }
                }
            })?;
        }
        drop(store);
        self.tidy();
        Ok(n)
    }
}

/// Messages per logged step of a purge.
pub(super) const PURGE_BATCH: usize = 4096;

pub(super) fn locked_error(owner: Owner, lookup: LookupId) -> Error {
    let what = match owner {
        Owner::Tx(_) => "locked by a transaction",
        Owner::InFlight(_) => "being handed to a receiver",
    };
    Error::new(
        ErrorCode::MessageLockedUnderTransaction,
        format!("message {lookup} is {what}"),
    )
}
