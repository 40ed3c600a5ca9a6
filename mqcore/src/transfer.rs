//! The engine's face to a transfer task (the network layer's): outgoing queues to read and
//! settle, and the entry point that accepts transferred messages, so that store-and-forward
//! between queue managers is exactly once and in order without the engine opening a socket.
//!
//! docs/transfer.md has the sequence protocol and why it cannot lose, duplicate or reorder a
//! transactional message. In short: a transactional message's number is its lookup id in its
//! outgoing queue, assigned in its commit's record; each message travels with the number of the
//! one before it ([`Seq`]); the receiver stores it only if that is the last number it took, in
//! the record that moves the number on; the sender removes its copy only on the answer.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Result;
use crate::manager::Inner;
use crate::message::{Message, MessageClass};
use crate::queue::outgoing::Outgoing;
use crate::queue::store::LookupId;

/// A transactional message's place in its sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seq {
    /// Its number (its lookup id in the sender's outgoing queue).
    pub n: u64,
    /// The number of the message before it in the sequence (0 for the first).
    pub prev: u64,
}

/// A message read from an outgoing queue, to send.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// Its lookup id in the outgoing queue.
    pub lookup: LookupId,
    /// Its sequence numbers, for a transactional message.
    pub seq: Option<Seq>,
    /// The message as sent, without its destination name (its outgoing queue's name, which the
    /// receiver takes from the batch's sequence name, [`Transfer::accept`]).
    pub msg: Message,
    /// Send a withdrawal of its number instead of the message ([`Inbound::msg`] `None`): it ran
    /// out of time here after it may have been sent.
    pub withdraw: bool,
}

/// A message as the receiver gets it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Inbound {
    /// Its sequence numbers, for a transactional message.
    pub seq: Option<Seq>,
    /// The message; `None` withdraws the number (the sender gave up on it, e.g. its time to
    /// reach queue ran out), so the messages after it are not held back.
    pub msg: Option<Message>,
}

/// What a sending queue manager set on a message that arrives by another computer's protocol
/// (SRMP, MS-MQQB), where the message is built from the wire rather than deserialized whole as
/// the native transfer's is: the queue-manager-set properties a receiver keeps.
#[derive(Debug, Clone)]
pub struct Origin {
    /// `PROPID_M_MSGID`: the sender's id (its queue manager's GUID and an ordinal).
    pub id: crate::message::MessageId,
    /// `PROPID_M_CLASS`.
    pub class: MessageClass,
    /// `PROPID_M_SENTTIME`.
    pub sent: crate::clock::Timestamp,
    /// `PROPID_M_SRC_MACHINE_ID`.
    pub source: Uuid,
    /// `PROPID_M_DEST_QUEUE`: the name the sender sent to.
    pub destination: Option<crate::name::QueueName>,
    /// Sent in a transaction (exactly once, in order).
    pub transactional: bool,
}

/// `msg` as its sender stamped it, for [`Transfer::accept`].
pub fn arriving(mut msg: Message, origin: Origin) -> Message {
    msg.id = origin.id;
    msg.class = origin.class;
    msg.sent_time = origin.sent;
    msg.source_machine = origin.source;
    msg.destination = origin.destination.map(Arc::new);
    msg.transactional = origin.transactional;
    msg
}

/// What the receiver did with one transferred message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// Stored in its queue.
    Accepted,
    /// Accepted earlier: this was a resend.
    Duplicate,
    /// Its predecessor has not arrived: nothing was stored; send again from the oldest
    /// unacknowledged message.
    Gap,
    /// Refused with this NACK class; its number is consumed.
    Rejected(MessageClass),
    /// A withdrawal took its number; nothing was stored.
    Withdrawn,
}

/// The receiver's answer to a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// The sequence's last number accepted or consumed, durable when this answer is given.
    pub last: u64,
    /// One verdict per message, in order.
    pub verdicts: Vec<Verdict>,
}

/// Where a transfer task is in an outgoing queue: after `after`, the last transactional number
/// before the next message being `prev`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendCursor {
    /// The last lookup id read.
    pub after: LookupId,
    /// The number the next transactional message follows.
    pub prev: u64,
}

/// An outgoing queue's counts, as management shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutgoingInfo {
    /// The destination's format name.
    pub name: String,
    /// The computer name or address the destination is reached at.
    pub host: String,
    /// Messages waiting (sent and unacknowledged ones included).
    pub messages: usize,
    /// Their bytes (body and label).
    pub bytes: u64,
    /// Paused (`ONHOLD`).
    pub paused: bool,
    /// The last transactional number the destination acknowledged.
    pub acked: u64,
}

/// The transfer face of a queue manager ([`crate::QueueManager::transfer`]).
#[derive(Clone)]
pub struct Transfer {
    pub(crate) qm: Arc<Inner>,
}

impl std::fmt::Debug for Transfer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transfer").finish_non_exhaustive()
    }
}

impl Transfer {
    /// Calls `f` with an outgoing queue's host whenever messages may have become sendable there
    /// (a commit published some, a pause ended, a committing step let go of a number). `f` runs
    /// on the thread that did it, with no engine lock held: it should only wake a task.
    pub fn on_ready(&self, f: impl Fn(&str) + Send + Sync + 'static) {
        self.qm.ready.set(Some(Arc::new(f)));
    }

    /// Stops calling the function [`Transfer::on_ready`] installed.
    pub fn clear_ready(&self) {
        self.qm.ready.set(None);
    }

    /// Every outgoing queue.
    pub fn outgoing(&self) -> Vec<OutgoingQueue> {
        self.qm
            .outgoing_queues()
            .into_iter()
            .map(|out| OutgoingQueue {
                qm: self.qm.clone(),
                out,
            })
            .collect()
    }

    /// The outgoing queues whose destination is on `host`.
    pub fn outgoing_to(&self, host: &str) -> Vec<OutgoingQueue> {
        let mut v = self.outgoing();
        v.retain(|o| o.out.host.eq_ignore_ascii_case(host));
        v
    }

    /// The outgoing queue for a destination, by its format name (`DIRECT=TCP:...`, as
    /// [`OutgoingInfo::name`] shows it); one with no messages may not exist.
    pub fn find(&self, name: &str) -> Option<OutgoingQueue> {
        let key = name.to_ascii_lowercase();
        self.outgoing().into_iter().find(|o| o.out.key == key)
    }

    /// Takes a batch transferred by the queue manager `source` from its outgoing queue
    /// `sequence` (the destination's format name as the sender spells it) for `queue` (a path
    /// name on this queue manager). `allowed` false refuses every message with
    /// NACK_ACCESS_DENIED. Run inside [`crate::step::deferred::collect`], the answer must wait
    /// for the collected steps' durability; otherwise it is durable on return.
    pub fn accept(
        &self,
        source: Uuid,
        sequence: &str,
        queue: &str,
        allowed: bool,
        items: Vec<Inbound>,
    ) -> Result<Reply> {
        self.qm.accept(source, sequence, queue, allowed, items)
    }
}

/// One outgoing queue, as the transfer task and management see it.
#[derive(Clone)]
pub struct OutgoingQueue {
    qm: Arc<Inner>,
    out: Arc<Outgoing>,
}

impl std::fmt::Debug for OutgoingQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingQueue")
            .field("name", &self.out.key)
            .finish()
    }
}

impl OutgoingQueue {
    /// The destination's format name.
    pub fn name(&self) -> String {
        self.out.name.to_string()
    }

    /// The name the receiver keeps this sequence under (case aside), and the destination
    /// queue's name its messages carry there: the destination's format name.
    pub fn sequence(&self) -> &str {
        self.out.name.as_text()
    }

    /// The computer name or address of the destination queue manager (lower case).
    pub fn host(&self) -> &str {
        &self.out.host
    }

    /// The destination queue's path on its own queue manager (`.\private$\orders`).
    pub fn remote_path(&self) -> &str {
        &self.out.remote_path
    }

    /// Where a new session starts: at the oldest unacknowledged message.
    pub fn start(&self) -> SendCursor {
        SendCursor {
            after: 0,
            prev: self.out.state().acked,
        }
    }

    /// The next messages to send after `cursor`, moving it: at most `max`, about `max_bytes`.
    pub fn next_batch(&self, cursor: &mut SendCursor, max: usize, max_bytes: u64) -> Vec<Outbound> {
        self.qm.outgoing_batch(&self.out, cursor, max, max_bytes)
    }

    /// Applies the receiver's `reply` to the messages `sent` (lookup ids and sequence numbers,
    /// in the order sent). Returns how many left the queue.
    pub fn settle(&self, sent: &[(LookupId, Option<Seq>)], reply: &Reply) -> Result<usize> {
        self.qm.settle(&self.out, sent, reply)
    }

    /// `PAUSE`: nothing more is sent until [`OutgoingQueue::resume`]; the messages stay.
    pub fn pause(&self) {
        self.out.state().paused = true;
    }

    /// `RESUME`: sending starts again, in order.
    pub fn resume(&self) {
        self.out.state().paused = false;
        self.out.notify();
    }

    /// Whether the queue is paused.
    pub fn is_paused(&self) -> bool {
        self.out.state().paused
    }

    /// Its counts.
    pub fn info(&self) -> OutgoingInfo {
        let (messages, bytes) = {
            let s = self.out.store.lock();
            (s.len(), s.bytes())
        };
        let st = self.out.state();
        OutgoingInfo {
            name: self.name(),
            host: self.out.host.clone(),
            messages,
            bytes,
            paused: st.paused,
            acked: st.acked,
        }
    }
}
