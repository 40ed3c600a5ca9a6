//! What one step changes ([`Step`]), collected so it can be logged as one record before any of it
//! becomes visible: puts with lookup ids reserved up front, removals, moves, held messages to
//! claim, and the log space each keeps alive or releases.

use std::sync::Arc;

use crate::message::footprint;
use crate::message::{Delivery, Message, MessageClass};
use crate::persistence::record::{self, OpRef};
use crate::queue::outgoing::{Outgoing, Pending};
use crate::queue::store::Store;
use crate::storage::wal::Lsn;
use crate::tx::held::HeldMessage;

/// About how many bytes a message takes in the log, for compaction's accounting.
pub(crate) fn logged_size(msg: &Message) -> u64 {
    footprint(msg) + LOGGED_OVERHEAD
}

/// What a message's record takes besides its body and label, roughly.
pub(crate) const LOGGED_OVERHEAD: u64 = 128;

/// A message to put in a store once the step is logged.
pub(crate) struct Put {
    pub(crate) store: Arc<Store>,
    /// Its lookup id is already set.
    pub(crate) msg: Box<Message>,
    /// Whether the record holds it (then its LSN becomes the record's).
    pub(crate) logged: bool,
    /// How it fails if its store was deleted before the publish.
    pub(crate) refused: MessageClass,
}

/// One step's changes.
pub(crate) struct Step {
    /// Whether changes to recoverable messages go to the log.
    durable: bool,
    /// The record's encoded operations.
    pub(crate) ops: Vec<u8>,
    /// How many logged puts the record holds: what it keeps alive.
    pub(crate) keeps: u64,
    /// Their approximate size in the log.
    pub(crate) kept_bytes: u64,
    /// Records (and message sizes) whose messages leave for good once this step is logged.
    pub(crate) released: Vec<(Lsn, u64)>,
    pub(crate) puts: Vec<Put>,
    /// Messages held by a committing transaction: removed from (or moved out of) their stores
    /// before the record is written.
    pub(crate) claims: Vec<HeldMessage>,
    /// Lookup ids of outgoing queues this step's puts reserved: released once they are
    /// published (or the step is dropped), which lets the transfer task send past them.
    pub(crate) pending: Vec<Pending>,
}

impl Step {
    pub(crate) fn new(durable: bool) -> Step {
        Step {
            durable,
            ops: Vec::new(),
            keeps: 0,
            kept_bytes: 0,
            released: Vec::new(),
            puts: Vec::new(),
            claims: Vec::new(),
            pending: Vec::new(),
        }
    }

    /// Whether the step has anything to do.
    pub(crate) fn is_empty(&self) -> bool {
        self.ops.is_empty()
            && self.released.is_empty()
            && self.puts.is_empty()
            && self.claims.is_empty()
    }

    /// Puts `msg` in `store` under the next lookup id.
    pub(crate) fn put(&mut self, store: &Arc<Store>, msg: impl Into<Box<Message>>) {
        self.put_refusing(store, msg, MessageClass::NACK_Q_DELETED);
    }

    /// [`Step::put`], failing with `refused` if the store is gone by then.
    pub(crate) fn put_refusing(
        &mut self,
        store: &Arc<Store>,
        msg: impl Into<Box<Message>>,
        refused: MessageClass,
    ) {
        let mut msg = msg.into();
        msg.lookup_id = store.reserve_lookup();
        self.put_reserved(store, msg, refused);
    }

    /// Puts `msg`, whose lookup id in `store` is reserved, once the step is logged.
    fn put_reserved(&mut self, store: &Arc<Store>, mut msg: Box<Message>, refused: MessageClass) {
        msg.lsn = 0;
        let logged = self.durable && msg.delivery == Delivery::Recoverable;
        if logged {
            record::push(
                &mut self.ops,
                &OpRef::Put {
                    at: &store.id,
                    msg: &msg,
                },
            );
            self.keeps += 1;
            self.kept_bytes += logged_size(&msg);
        }
        self.puts.push(Put {
            store: store.clone(),
            msg,
            logged,
            refused,
        });
    }

    /// Puts `msg` in the outgoing queue `out` under the next lookup id, which is also its
    /// number in the transfer sequence.
    pub(crate) fn put_outgoing(
        &mut self,
        out: &std::sync::Arc<Outgoing>,
        msg: impl Into<Box<Message>>,
    ) {
        let mut msg = msg.into();
        // Its outgoing queue names its destination: neither the log nor the transfer writes the
        // name again for every message (it is put back if the message leaves for a queue here).
        msg.destination = None;
        let expires = crate::queue::outgoing::deadline(&msg).map(|(at, _)| at);
        let (lookup, pending) = out.reserve(expires);
        msg.lookup_id = lookup;
        self.put_reserved(&out.store, msg, MessageClass::NACK_BAD_DST_Q);
        self.pending.push(pending);
    }

    /// The receiver acknowledged the outgoing queue `out`'s numbers up to `n`.
    pub(crate) fn acked(&mut self, out: &Outgoing, n: u64) {
        if self.durable {
            record::push(
                &mut self.ops,
                &OpRef::Acked {
                    at: &out.store.id,
                    n,
                },
            );
        }
    }

    /// An incoming sequence reached `last`, refusing `rejected` on the way.
    pub(crate) fn sequence(
        &mut self,
        source: uuid::Uuid,
        key: &str,
        last: u64,
        rejected: &[(u64, u16)],
    ) {
        if self.durable {
            record::push(
                &mut self.ops,
                &OpRef::Sequence {
                    source,
                    key,
                    last,
                    rejected,
                },
            );
        }
    }

    /// `msg` left `store` for good.
    pub(crate) fn removed(&mut self, store: &Store, msg: &Message) {
        if msg.lsn != 0 {
            record::push(
                &mut self.ops,
                &OpRef::Remove {
                    at: &store.id,
                    lookup: msg.lookup_id,
                },
            );
            self.released.push((msg.lsn, logged_size(msg)));
        }
    }

    /// `msg` is gone with its deleted queue (whose drop is logged): only its record is freed.
    pub(crate) fn forget(&mut self, msg: &Message) {
        if msg.lsn != 0 {
            self.released.push((msg.lsn, logged_size(msg)));
        }
    }

    /// Logs that `msg` moves from `from` to `to` (without moving it).
    pub(crate) fn log_move(&mut self, from: &Store, to: &Store, msg: &Message) {
        if msg.lsn != 0 {
            record::push(
                &mut self.ops,
                &OpRef::Move {
                    from: &from.id,
                    to: &to.id,
                    lookup: msg.lookup_id,
                },
            );
        }
    }

    /// Moves `msg`, already out of `from`, into `to`, keeping its lookup id and its record.
    pub(crate) fn moved(&mut self, from: &Store, to: &Arc<Store>, msg: Box<Message>) {
        self.log_move(from, to, &msg);
        self.insert_moved(to, msg);
    }

    /// Inserts a moved message once the step is logged: move count up, abort count reset.
    pub(crate) fn insert_moved(&mut self, to: &Arc<Store>, mut msg: Box<Message>) {
        msg.move_count = msg.move_count.saturating_add(1);
        msg.abort_count = 0;
        self.puts.push(Put {
            store: to.clone(),
            msg,
            logged: false,
            refused: MessageClass::NACK_Q_DELETED,
        });
    }

    /// Logs that the queue with catalog id `id` is deleted. The record is kept alive (one pin,
    /// released by the caller once the catalog entry is gone).
    pub(crate) fn drop_queue(&mut self, id: u32) {
        if self.durable {
            record::push(&mut self.ops, &OpRef::DropQueue { id });
            self.keeps += 1;
        }
    }
}
