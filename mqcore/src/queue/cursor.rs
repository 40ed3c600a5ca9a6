//! Cursors (`MQCreateCursor`): peek current, peek next, receive current, in receive order.

use std::time::Duration;

use super::handle::Claim;
use super::Queue;
use crate::error::{Error, ErrorCode, Result};
use crate::message::Message;
use crate::queue::store::{Key, State, WaitError};
use crate::tx::Tx;

/// A cursor over a queue (`MQCreateCursor`): peek current, peek next, receive current.
///
/// A fresh cursor is before the first message: `peek_current` moves it onto the first message,
/// while `peek_next` is `MQ_ERROR_ILLEGAL_CURSOR_ACTION` until it has been placed. When the
/// message under the cursor is received through the cursor, the cursor moves on to the message
/// after it; when someone else removes it, `peek_current` gives
/// `MQ_ERROR_MESSAGE_ALREADY_RECEIVED`.
pub struct Cursor {
    queue: Queue,
    /// The position of the current message; `None` before the first peek.
    at: Option<Key>,
    /// Whether this cursor itself received the message at `at`.
    consumed: bool,
}

impl std::fmt::Debug for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursor")
            .field("queue", &self.queue.name)
            .field("at", &self.at.map(Key::lookup))
            .finish()
    }
}

/// Where a cursor operation looks.
#[derive(Clone, Copy)]
pub(super) enum Aim {
    /// The current message (or the first, or the one after a consumed one).
    Current,
    /// The message after the current one.
    Next,
}

impl Cursor {
    /// A cursor before the first message of `queue`.
    pub(super) fn new(queue: Queue) -> Cursor {
        Cursor {
            queue,
            at: None,
            consumed: false,
        }
    }

    /// The queue handle the cursor browses.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    pub(super) fn probe(
        at: Option<Key>,
        consumed: bool,
        aim: Aim,
        s: &mut State,
    ) -> Option<Result<Key>> {
        let present = at.is_some_and(|k| s.contains(k));
        let after = |k: Key| s.after(k).map(Ok);
        match (aim, at) {
            (Aim::Current, None) => s.first().map(|(k, _)| Ok(k)),
            (Aim::Current, Some(k)) if present => Some(Ok(k)),
            (Aim::Current, Some(k)) if consumed => after(k),
            (Aim::Current, Some(k)) => Some(Err(Error::new(
                ErrorCode::MessageAlreadyReceived,
                format!("message {} under the cursor was removed", k.lookup()),
            ))),
            (Aim::Next, None) => Some(Err(Error::new(
                ErrorCode::IllegalCursorAction,
                "peek next needs a cursor placed by peek current first",
            ))),
            (Aim::Next, Some(k)) => after(k),
        }
    }

    pub(super) fn wait(&self, aim: Aim, timeout: Duration) -> Result<(Key, Message)> {
        let store = self.queue.store()?;
        let (at, consumed) = (self.at, self.consumed);
        let qm = self.queue.qm.clone();
        let deadline = qm.deadline(timeout);
        let r = store.watch_blocking(&deadline, |s| {
            s.expire(|| qm.now());
            Cursor::probe(at, consumed, aim, s).map(|r| {
                let k = r?;
                let msg = s.read(k).ok_or_else(|| self.queue.unreadable(k))?;
                Ok((k, msg))
            })
        });
        self.queue.after_watch(&store);
        r.map_err(|e| self.queue.wait_error(e, timeout))?
    }

    /// Peeks at the message under the cursor (placing it on the first message if new).
    pub fn peek_current(&mut self, timeout: Duration) -> Result<Message> {
        let (key, msg) = self.wait(Aim::Current, timeout)?;
        self.at = Some(key);
        self.consumed = false;
        Ok(msg)
    }

    /// Moves to the next message and peeks at it, waiting for one to arrive.
    pub fn peek_next(&mut self, timeout: Duration) -> Result<Message> {
        let (key, msg) = self.wait(Aim::Next, timeout)?;
        self.at = Some(key);
        self.consumed = false;
        Ok(msg)
    }

    /// Receives the message under the cursor; the cursor then points past it.
    pub fn receive_current(&mut self, timeout: Duration, tx: Tx<'_>) -> Result<Message> {
        let deadline_start = self.queue.qm.now();
        loop {
            let (key, _) = self.wait(Aim::Current, timeout)?;
            // Another receiver may take it between the peek and the receive: then look again.
            let txs = self.queue.receive_tx(&tx)?;
            let store = self.queue.store()?;
            let claim = {
                let mut s = store.lock();
                if !s.contains(key) {
                    None
                } else {
                    Claim::at(&mut s, key, txs)
                }
            };
            self.at = Some(key);
            match claim {
                Some(claim) => {
                    self.consumed = true;
                    return self.queue.complete_receive(store, claim);
                }
                None => {
                    self.consumed = true; // it is gone: move on to what follows
                    if self.queue.qm.now().since(deadline_start) >= timeout {
                        return Err(self.queue.wait_error(WaitError::Timeout, timeout));
                    }
                }
            }
        }
    }
}
