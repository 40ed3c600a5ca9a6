//! The queue manager's log records: what one committed step changed, in a form replay can apply.
//!
//! The write-ahead log ([`crate::storage::wal`]) stores opaque records; this module gives them meaning.
//! A record is one kind byte (the WAL's) and a postcard-encoded payload. Every change to durable
//! queue contents is one of four operations on a store (a queue, its journal, a subqueue, or a
//! system queue), named by a [`StoreRef`] that never changes meaning: queue ids are never reused.

use serde::{Deserialize, Serialize};

use crate::ids::LookupId;
pub(crate) use crate::ids::StoreRef;
use crate::message::Message;

/// A step's operations, all or nothing.
pub(crate) const COMMIT: u8 = 1;
/// An external transaction's operations, written at prepare; applied by a later [`RESOLVE`].
pub(crate) const PREPARE: u8 = 2;
/// The outcome of a prepared transaction.
pub(crate) const RESOLVE: u8 = 3;
/// Lookup-id and message-id high-water marks, written before old segments are deleted so that
/// ids stay unique after the records that used them are gone.
pub(crate) const CHECKPOINT: u8 = 4;
/// The transfer sequences' state (both ends), written with a [`CHECKPOINT`] for the same reason.
pub(crate) const SEQUENCES: u8 = 5;

/// One change, as written (borrowing the message being put).
#[derive(Serialize)]
pub(crate) enum OpRef<'a> {
    /// The message enters `at` with its lookup id (or replaces its copy there: a rewrite).
    Put { at: &'a StoreRef, msg: &'a Message },
    /// The message with this lookup id leaves `at` for good.
    Remove { at: &'a StoreRef, lookup: LookupId },
    /// The message leaves `from` for `to`, keeping its lookup id; its move count goes up and its
    /// abort count starts again.
    Move {
        from: &'a StoreRef,
        to: &'a StoreRef,
        lookup: LookupId,
    },
    /// The queue was deleted: every store of it is gone, and records naming it mean nothing.
    DropQueue { id: u32 },
    /// The receiver acknowledged the outgoing queue `at`'s transactional numbers up to `n`.
    Acked { at: &'a StoreRef, n: u64 },
    /// An incoming sequence accepted (or consumed by a rejection) every number up to `last`;
    /// `rejected` are the numbers of this record it refused, with their NACK classes.
    Sequence {
        source: uuid::Uuid,
        key: &'a str,
        last: u64,
        rejected: &'a [(u64, u16)],
    },
}

/// One change, as read back. Variants in the same order as [`OpRef`]'s.
#[derive(Debug, Deserialize)]
pub(crate) enum Op {
    Put {
        at: StoreRef,
        msg: Box<Message>,
    },
    Remove {
        at: StoreRef,
        lookup: LookupId,
    },
    Move {
        from: StoreRef,
        to: StoreRef,
        lookup: LookupId,
    },
    DropQueue {
        id: u32,
    },
    Acked {
        at: StoreRef,
        n: u64,
    },
    Sequence {
        source: uuid::Uuid,
        key: String,
        last: u64,
        rejected: Vec<(u64, u16)>,
    },
}

/// Appends one operation to a record payload.
pub(crate) fn push(out: &mut Vec<u8>, op: &OpRef<'_>) {
    let buf = std::mem::take(out);
    *out = postcard::to_extend(op, buf).expect("operations always encode");
}

/// Reads every operation of a payload.
pub(crate) fn ops(mut data: &[u8]) -> Result<Vec<Op>, postcard::Error> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let (op, rest) = postcard::take_from_bytes(data)?;
        out.push(op);
        data = rest;
    }
    Ok(out)
}

/// The head of a [`PREPARE`] payload (the operations follow it) and the whole of a [`RESOLVE`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Outcome {
    /// The coordinator's transaction id.
    pub(crate) xid: String,
    /// For [`RESOLVE`]: committed (or aborted).
    pub(crate) commit: bool,
}

/// A [`CHECKPOINT`] payload.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    /// The last lookup id handed out by each store.
    pub(crate) lookups: Vec<(StoreRef, LookupId)>,
    /// The last message-id ordinal handed out.
    pub(crate) ordinal: u32,
}

/// Encodes any payload header.
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("records always encode")
}

/// Decodes a payload header, returning the rest.
pub(crate) fn decode<'a, T: Deserialize<'a>>(
    data: &'a [u8],
) -> Result<(T, &'a [u8]), postcard::Error> {
    postcard::take_from_bytes(data)
}

/// A [`SEQUENCES`] payload.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Sequences {
    /// Each outgoing queue's acknowledged number, by its key.
    pub(crate) acked: Vec<(String, u64)>,
    /// Each incoming sequence.
    pub(crate) inbound: Vec<InboundSequence>,
}

/// One incoming sequence in a [`SEQUENCES`] record.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct InboundSequence {
    /// The sending queue manager.
    pub(crate) source: uuid::Uuid,
    /// The sender's name for the sequence.
    pub(crate) key: String,
    /// The last number accepted or consumed.
    pub(crate) last: u64,
    /// The rejections remembered (number, NACK class), oldest first.
    pub(crate) rejected: Vec<(u64, u16)>,
}
