//! The receiver's side of transfer: messages another queue manager's outgoing queue sends here,
//! accepted into their queue exactly once and in order.
//!
//! **Invariant:** a transactional message is stored in the same log record that moves its
//! sequence's `last` number to it, and a number is accepted only when its `prev` is `last`. So
//! after any crash the receiver has both the message and the number or neither: a resend of an
//! accepted message is found at or below `last` and dropped, and a message whose predecessor is
//! missing is never accepted ahead of it. Decisions and log submissions for sequences happen
//! under one lock, so records reach the log in the order the numbers were decided, and an answer
//! that names `last` waits for the record that set it.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};

use uuid::Uuid;

use super::send::over_quota;
use super::Inner;
use crate::error::Result;
use crate::message::{footprint, Message, MessageClass, MessageId};
use crate::name::QueueName;
use crate::persistence::record::InboundSequence;
use crate::persistence::SeqState;
use crate::queue::Opened;
use crate::storage::wal::Lsn;
use crate::transfer::{Inbound, Reply, Verdict};

/// An incoming sequence in memory: its state and the record that last changed it.
#[derive(Default)]
pub(crate) struct InboundSeq {
    pub(crate) state: SeqState,
    /// The LSN of the record that last moved `last` (0: none since start, or in memory).
    pub(crate) lsn: Lsn,
    /// The latest non-transactional messages accepted, so that a resend after a cut connection
    /// is recognized (in memory only: after a restart of the receiver a resend is delivered
    /// again, which is what recoverable delivery allows).
    pub(crate) recent: RecentIds,
}

/// How many non-transactional message ids a sequence remembers.
const RECENT_IDS: usize = 65_536;

/// A bounded map of message ids to what became of them (accepted, or refused with a class),
/// oldest forgotten first.
#[derive(Default)]
pub(crate) struct RecentIds {
    map: HashMap<MessageId, Option<MessageClass>>,
    order: std::collections::VecDeque<MessageId>,
}

impl RecentIds {
    /// What was answered for `id` before, if it is remembered.
    fn get(&self, id: &MessageId) -> Option<Verdict> {
        self.map.get(id).map(|refused| match refused {
            Some(class) => Verdict::Rejected(*class),
            None => Verdict::Duplicate,
        })
    }

    /// Remembers the answer for `id`: `refused` with a class, or accepted.
    fn insert(&mut self, id: MessageId, refused: Option<MessageClass>) {
        if self.map.insert(id, refused).is_some() {
            return;
        }
        if self.order.len() == RECENT_IDS {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
        self.order.push_back(id);
    }

    /// Forgets `id` (its step was not logged after all).
    fn forget(&mut self, id: &MessageId) {
        self.map.remove(id);
    }
}

/// Every incoming sequence, by source queue manager and the sender's name for it.
pub(crate) type InboundMap = HashMap<(Uuid, String), InboundSeq>;

impl Inner {
    pub(super) fn lock_inbound(&self) -> std::sync::MutexGuard<'_, InboundMap> {
        self.inbound.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a batch of messages the queue manager `source` sent from its outgoing queue
    /// `sequence` for the queue `queue` (a path on this queue manager). `allowed` is false when
    /// the sender may not send to it (every message is then refused with NACK_ACCESS_DENIED).
    /// Returns a verdict for each message, in order, once what it decided is logged (and, on the
    /// synchronous path, durable).
    pub(crate) fn accept(
        self: &Arc<Self>,
        source: Uuid,
        sequence: &str,
        queue: &str,
        allowed: bool,
        items: Vec<Inbound>,
    ) -> Result<Reply> {
        let key = sequence.to_ascii_lowercase();
        let mut map = self.lock_inbound();
        let seq = map.entry((source, key.clone())).or_default();
        let mut last = seq.state.last;
        let mut rejected = Vec::new();
        let mut verdicts = Vec::with_capacity(items.len());
        let target = self.transfer_target(queue);
        // PROPID_M_DEST_QUEUE: the name the sender sent to, shared by the batch.
        let destination = QueueName::parse(sequence).ok().map(Arc::new);
        let mut eff = self.step();
        let mut staged_bytes = 0u64;
        let mut remembered = Vec::new();
        let now = self.now();
        for Inbound { seq: number, msg } in items {
            if let Some(s) = number {
                if s.n <= last {
                    verdicts.push(match seq.state.rejection(s.n) {
                        Some(class) => Verdict::Rejected(MessageClass(class)),
                        None => Verdict::Duplicate,
                    });
                    continue;
                }
                // `prev` below `last` comes from a sender that skipped numbers (an SRMP
                // sender's `<previous>` names the last message it sent, passing over ones it
                // let expire): everything it meant to come first is here or gone.
                if s.prev > last {
                    verdicts.push(Verdict::Gap);
                    continue;
                }
                last = s.n;
            }
            let Some(mut msg) = msg else {
                // A withdrawal: the number is consumed, nothing is stored.
                verdicts.push(Verdict::Withdrawn);
                continue;
            };
            if number.is_none() {
                if let Some(before) = seq.recent.get(&msg.id) {
                    verdicts.push(before);
                    continue;
                }
            }
            let refused = if allowed {
                self.refusal(&target, &msg, staged_bytes)
            } else {
                Some(MessageClass::NACK_ACCESS_DENIED)
            };
            if number.is_none() {
                seq.recent.insert(msg.id, refused);
                remembered.push(msg.id);
            }
            if let Some(class) = refused {
                if let Some(s) = number {
                    rejected.push((s.n, class.0));
                }
                // The sender dead-letters its copy and sends the NACK: it knows the admin queue
                // and the message as sent.
                verdicts.push(Verdict::Rejected(class));
                continue;
            }
            let Ok(q) = &target else {
                unreachable!("a missing queue refuses every message")
            };
            msg.arrived_time = now;
            if msg.destination.is_none() {
                msg.destination = destination.clone();
            }
            msg.abort_count = 0;
            msg.move_count = 0;
            staged_bytes += footprint(&msg);
            // Only the arrival acknowledgement: source journaling is the sender's.
            self.acknowledge(&msg, MessageClass::ACK_REACH_QUEUE, &mut eff);
            eff.put(&q.store, msg);
            verdicts.push(Verdict::Accepted);
        }
        if last != seq.state.last {
            eff.sequence(source, &key, last, &rejected);
        }
        let lsn = if eff.is_empty() {
            // Nothing new: an answer naming `last` waits for the record that set it.
            self.wait_durable(seq.lsn)?;
            0
        } else {
            match self.apply(eff) {
                Ok(lsn) => lsn,
                Err(e) => {
                    for id in &remembered {
                        seq.recent.forget(id);
                    }
                    return Err(e);
                }
            }
        };
        if last != seq.state.last {
            seq.state.advance(last, &rejected);
            if lsn != 0 {
                seq.lsn = lsn;
            }
        }
        Ok(Reply {
            last: seq.state.last,
            verdicts,
        })
    }

    /// The queue transferred messages for `queue` go to, or the class every one is refused with.
    fn transfer_target(
        &self,
        queue: &str,
    ) -> std::result::Result<Arc<crate::queue::QueueInner>, MessageClass> {
        let name = QueueName::parse(queue).map_err(|_| MessageClass::NACK_BAD_DST_Q)?;
        if !self.is_local(&name.host()) {
            return Err(MessageClass::NACK_BAD_DST_Q);
        }
        match self.resolve(&name) {
            Ok(Opened::Main(q)) if q.check_live().is_ok() => Ok(q),
            _ => Err(MessageClass::NACK_BAD_DST_Q),
        }
    }

    /// Why `msg` cannot go into `target`, as MSMQ's NACK class, if it cannot.
    fn refusal(
        &self,
        target: &std::result::Result<Arc<crate::queue::QueueInner>, MessageClass>,
        msg: &Message,
        staged: u64,
    ) -> Option<MessageClass> {
        let q = match target {
            Ok(q) => q,
            Err(class) => return Some(*class),
        };
        if msg.body.len() > self.max_message_bytes {
            return Some(MessageClass::NACK_MESSAGE_TOO_LARGE);
        }
        let (transactional, quota) = (q.hot.transactional(), q.hot.quota_kb());
        match (transactional, msg.transactional) {
            (false, true) => return Some(MessageClass::NACK_NOT_TRANSACTIONAL_Q),
            (true, false) => return Some(MessageClass::NACK_NOT_TRANSACTIONAL_MSG),
            _ => {}
        }
        let held = q.store.lock().bytes() + staged;
        if over_quota(quota, held, footprint(msg)) {
            return Some(MessageClass::NACK_Q_EXCEED_QUOTA);
        }
        None
    }

    /// Waits until the record at `lsn` is durable (nothing to wait for at 0 or in memory).
    pub(super) fn wait_durable(&self, lsn: Lsn) -> Result<()> {
        match &self.durable {
            Some(d) if lsn != 0 => d.wal.wait(lsn).map_err(crate::persistence::storage_error),
            _ => Ok(()),
        }
    }

    /// The incoming sequences' state, for a checkpoint. Compaction can run inside an accept's
    /// own step (which holds the lock): it then waits for a later step, like a busy compaction.
    pub(super) fn inbound_snapshot(&self) -> Option<Vec<InboundSequence>> {
        let map = match self.inbound.try_lock() {
            Ok(map) => map,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        Some(
            map.iter()
                .map(|((source, key), s)| InboundSequence {
                    source: *source,
                    key: key.clone(),
                    last: s.state.last,
                    rejected: s.state.rejected.iter().copied().collect(),
                })
                .collect(),
        )
    }
}
