//! Replay: the queue contents and transaction state the log's records describe, kept as log
//! positions of live messages (not their bodies), and the buckets of the records read.

use std::collections::{HashMap, HashSet, VecDeque};

use super::live::Live;
use super::record;
use super::record::{Checkpoint, Op, Outcome, StoreRef};
use crate::error::{Error, ErrorCode, Result};
use crate::message::footprint;
use crate::message::Message;
use crate::name::SystemQueue;
use crate::queue::store::LookupId;
use crate::storage::wal::{Lsn, RecordRef};

/// One live message as replay knows it: where its record is, without its body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    /// The record that put it.
    pub(crate) lsn: Lsn,
    /// Its quota footprint (body and label bytes).
    pub(crate) footprint: u32,
    /// Its priority rank (`7 - priority`).
    pub(crate) rank: u8,
    /// Moves since its record was written (its record names the store it came from).
    pub(crate) moves: u8,
}

/// The live messages of one store during replay, sorted by lookup id: puts mostly come in
/// increasing lookup order and removals mostly take the oldest, so a vector with tombstones beats
/// a map by half, which is what recovery's peak memory is made of. Each is packed into 20 bytes
/// (see [`Packed`]): 10 million live messages replay within 200 MiB.
#[derive(Default)]
pub(crate) struct Slots {
    v: Vec<Packed>,
    /// Tombstones in `v` (slots with LSN 0: no record has LSN 0).
    dead: usize,
}

/// A lookup id and its [`Slot`] in 20 bytes, aligned to 4: the LSN shares a word with the rank
/// (3 bits) and the move count (8 bits), which leaves it 52 bits: a log writing a million
/// records a second reaches that in 140 years.
#[derive(Clone, Copy)]
struct Packed {
    lookup: [u32; 2],
    lsn_rank_moves: [u32; 2],
    footprint: u32,
}

/// LSNs a [`Packed`] slot can hold.
const LSN_BITS: u32 = 52;

fn split(x: u64) -> [u32; 2] {
    [x as u32, (x >> 32) as u32]
}

fn join(w: [u32; 2]) -> u64 {
    u64::from(w[0]) | (u64::from(w[1]) << 32)
}

impl Packed {
    fn new(lookup: LookupId, slot: Slot) -> Packed {
        debug_assert!(slot.lsn < 1 << LSN_BITS, "checked by Replay::record");
        let word = (slot.lsn & ((1 << LSN_BITS) - 1))
            | (u64::from(slot.rank & 7) << LSN_BITS)
            | (u64::from(slot.moves) << (LSN_BITS + 3));
        Packed {
            lookup: split(lookup),
            lsn_rank_moves: split(word),
            footprint: slot.footprint,
        }
    }

    fn lookup(&self) -> LookupId {
        join(self.lookup)
    }

    fn lsn(&self) -> Lsn {
        join(self.lsn_rank_moves) & ((1 << LSN_BITS) - 1)
    }

    fn slot(&self) -> Slot {
        let word = join(self.lsn_rank_moves);
        Slot {
            lsn: word & ((1 << LSN_BITS) - 1),
            footprint: self.footprint,
            rank: ((word >> LSN_BITS) & 7) as u8,
            moves: (word >> (LSN_BITS + 3)) as u8,
        }
    }

    fn kill(&mut self) {
        let word = join(self.lsn_rank_moves) & !((1 << LSN_BITS) - 1);
        self.lsn_rank_moves = split(word);
    }
}

impl Slots {
    fn put(&mut self, lookup: LookupId, slot: Slot) {
        if self.v.last().is_none_or(|p| p.lookup() < lookup) {
            self.v.push(Packed::new(lookup, slot));
            return;
        }
        match self.v.binary_search_by_key(&lookup, Packed::lookup) {
            Ok(i) => {
                if self.v[i].lsn() == 0 {
                    self.dead -= 1;
                }
                self.v[i] = Packed::new(lookup, slot);
            }
            Err(i) => self.v.insert(i, Packed::new(lookup, slot)),
        }
    }

    fn remove(&mut self, lookup: LookupId) -> Option<Slot> {
        let i = self.v.binary_search_by_key(&lookup, Packed::lookup).ok()?;
        if self.v[i].lsn() == 0 {
            return None;
        }
        let slot = self.v[i].slot();
        self.v[i].kill();
        self.dead += 1;
        if self.dead > 1024 && self.dead * 2 > self.v.len() {
            self.v.retain(|p| p.lsn() != 0);
            self.dead = 0;
        }
        Some(slot)
    }

    /// The live messages, in lookup-id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (LookupId, Slot)> + '_ {
        self.v
            .iter()
            .filter(|p| p.lsn() != 0)
            .map(|p| (p.lookup(), p.slot()))
    }

    /// Hands every live message to `take`, from the highest lookup id down, giving the memory
    /// back as it goes: what recovery builds from the slots then replaces them instead of
    /// coming on top of them at the peak.
    pub(crate) fn drain_rev(mut self, mut take: impl FnMut(LookupId, Slot)) {
        const CHUNK: usize = 1 << 16;
        while !self.v.is_empty() {
            let from = self.v.len().saturating_sub(CHUNK);
            for p in self.v[from..].iter().rev() {
                if p.lsn() != 0 {
                    take(p.lookup(), p.slot());
                }
            }
            self.v.truncate(from);
            if self.v.capacity() > 2 * self.v.len() + CHUNK {
                self.v.shrink_to_fit();
            }
        }
    }
}

/// What replay found: the queue contents and transaction state the records describe.
#[derive(Default)]
pub(crate) struct Recovered {
    /// The live messages of each store by lookup id, as log positions: recovery reads back
    /// only those that go in memory.
    pub(crate) stores: HashMap<StoreRef, Slots>,
    /// Live messages kept whole because they must stay in memory (they can expire), by store
    /// and lookup id; each also has its slot.
    pub(crate) kept: HashMap<(StoreRef, LookupId), Box<Message>>,
    /// The last lookup id each store handed out.
    pub(crate) last_lookup: HashMap<StoreRef, LookupId>,
    /// Prepared transactions with no outcome: xid, the PREPARE record's LSN, its operations.
    pub(crate) in_doubt: Vec<(String, Lsn, Vec<Op>)>,
    /// Queues whose deletion was logged.
    pub(crate) dropped: HashSet<u32>,
    /// The last message-id ordinal used.
    pub(crate) ordinal: u32,
    /// Each outgoing queue's acknowledged number, by key.
    pub(crate) acked: HashMap<String, u64>,
    /// Each incoming transfer sequence's state, by source queue manager and key.
    pub(crate) inbound: HashMap<(uuid::Uuid, String), SeqState>,
}

/// How many rejections an incoming sequence remembers, so that a sender that lost the answer
/// to a rejected message and sends it again still learns its class.
pub(crate) const REMEMBERED_REJECTIONS: usize = 1024;

/// One incoming transfer sequence at the receiver.
#[derive(Debug, Clone, Default)]
pub(crate) struct SeqState {
    /// The last number accepted or consumed by a rejection.
    pub(crate) last: u64,
    /// The latest rejections (number, NACK class), oldest first.
    pub(crate) rejected: VecDeque<(u64, u16)>,
}

impl SeqState {
    /// Records `last` and this step's rejections.
    pub(crate) fn advance(&mut self, last: u64, rejected: &[(u64, u16)]) {
        self.last = self.last.max(last);
        for r in rejected {
            if self.rejected.len() == REMEMBERED_REJECTIONS {
                self.rejected.pop_front();
            }
            self.rejected.push_back(*r);
        }
    }

    /// The class `n` was rejected with, if it was and is still remembered.
    pub(crate) fn rejection(&self, n: u64) -> Option<u16> {
        self.rejected
            .iter()
            .rev()
            .find(|(m, _)| *m == n)
            .map(|(_, c)| *c)
    }
}

/// Normalizes a store name for replay's maps: subqueue names are case-insensitive.
pub(super) fn norm(at: StoreRef) -> StoreRef {
    match at {
        StoreRef::Sub(id, name) => StoreRef::Sub(id, name.to_ascii_lowercase()),
        other => other,
    }
}

impl Recovered {
    fn saw(&mut self, at: &StoreRef, lookup: LookupId) {
        let last = self.last_lookup.entry(at.clone()).or_default();
        *last = (*last).max(lookup);
    }

    fn apply(&mut self, ops: Vec<Op>, lsn: Lsn, local: uuid::Uuid) {
        for op in ops {
            match op {
                Op::Put { at, mut msg } => {
                    let at = norm(at);
                    if at.queue_id().is_some_and(|id| self.dropped.contains(&id)) {
                        continue;
                    }
                    if msg.source_machine == local {
                        self.ordinal = self.ordinal.max(msg.id.ordinal());
                    }
                    let lookup = msg.lookup_id;
                    self.saw(&at, lookup);
                    let slot = Slot {
                        lsn,
                        footprint: u32::try_from(footprint(&msg)).unwrap_or(u32::MAX),
                        rank: 7u8.saturating_sub(msg.priority),
                        moves: 0,
                    };
                    let store = self.stores.entry(at.clone()).or_default();
                    store.put(lookup, slot);
                    // Only a queue and its subqueues expire messages; elsewhere (journals, dead
                    // letters) a time to be received means nothing and the message may go cold.
                    let expires = matches!(at, StoreRef::Main(_) | StoreRef::Sub(..))
                        && msg.time_to_be_received.is_some();
                    // An outgoing queue's message runs out of time on either limit.
                    let runs_out = matches!(at, StoreRef::Outgoing(_))
                        && (msg.time_to_be_received.is_some() || msg.time_to_reach_queue.is_some());
                    if expires || runs_out {
                        msg.lsn = lsn;
                        self.kept.insert((at, lookup), msg);
                    } else {
                        // A rewrite of a message kept whole before.
                        self.kept.remove(&(at, lookup));
                    }
                }
                Op::Remove { at, lookup } => {
                    let at = norm(at);
                    self.saw(&at, lookup);
                    if let Some(s) = self.stores.get_mut(&at) {
                        s.remove(lookup);
                    }
                    self.kept.remove(&(at, lookup));
                }
                Op::Move { from, to, lookup } => {
                    let (from, to) = (norm(from), norm(to));
                    self.saw(&from, lookup);
                    let Some(mut slot) = self.stores.get_mut(&from).and_then(|s| s.remove(lookup))
                    else {
                        continue;
                    };
                    match self.kept.remove(&(from, lookup)) {
                        Some(mut msg) => {
                            msg.move_count = msg.move_count.saturating_add(1);
                            msg.abort_count = 0;
                            self.kept.insert((to.clone(), lookup), msg);
                        }
                        None => slot.moves = slot.moves.saturating_add(1),
                    }
                    self.stores.entry(to).or_default().put(lookup, slot);
                }
                Op::DropQueue { id } => {
                    self.dropped.insert(id);
                    self.stores.retain(|at, _| at.queue_id() != Some(id));
                    self.kept.retain(|(at, _), _| at.queue_id() != Some(id));
                }
                Op::Acked { at, n } => {
                    if let StoreRef::Outgoing(key) = at {
                        let acked = self.acked.entry(key).or_default();
                        *acked = (*acked).max(n);
                    }
                }
                Op::Sequence {
                    source,
                    key,
                    last,
                    rejected,
                } => {
                    self.inbound
                        .entry((source, key))
                        .or_default()
                        .advance(last, &rejected);
                }
            }
        }
    }
}

pub(super) fn bad(r: &RecordRef<'_>, e: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorCode::MessageStorageFailed,
        format!("log record {} (kind {}) cannot be read: {e}", r.lsn, r.kind),
    )
}

/// Replays records in LSN order, one at a time ([`Replay::record`]), keeping only the live
/// messages' positions.
pub(crate) struct Replay {
    out: Recovered,
    /// The buckets of the records read, for [`Persistence::new`].
    live: Live,
    prepared: HashMap<String, (Lsn, Vec<Op>)>,
    /// This queue manager's GUID (for message-id ordinals).
    local: uuid::Uuid,
}

impl Replay {
    pub(crate) fn new(local: uuid::Uuid, segment_size: u64) -> Replay {
        Replay {
            out: Recovered::default(),
            live: Live::new(segment_size),
            prepared: HashMap::new(),
            local,
        }
    }

    /// Applies the next record.
    pub(crate) fn record(&mut self, r: RecordRef<'_>) -> Result<()> {
        if r.lsn >= 1 << LSN_BITS {
            return Err(bad(&r, "log sequence number beyond what recovery can hold"));
        }
        self.live.wrote(r.lsn, r.data.len() as u64);
        match r.kind {
            record::COMMIT => {
                let ops = record::ops(r.data).map_err(|e| bad(&r, e))?;
                self.out.apply(ops, r.lsn, self.local);
            }
            record::PREPARE => {
                let (head, rest): (Outcome, _) = record::decode(r.data).map_err(|e| bad(&r, e))?;
                let ops = record::ops(rest).map_err(|e| bad(&r, e))?;
                self.prepared.insert(head.xid, (r.lsn, ops));
            }
            record::RESOLVE => {
                let (head, _): (Outcome, _) = record::decode(r.data).map_err(|e| bad(&r, e))?;
                if let Some((lsn, ops)) = self.prepared.remove(&head.xid) {
                    if head.commit {
                        self.out.apply(ops, lsn, self.local);
                    }
                }
            }
            record::CHECKPOINT => {
                let (c, _): (Checkpoint, _) = record::decode(r.data).map_err(|e| bad(&r, e))?;
                for (at, lookup) in c.lookups {
                    self.out.saw(&norm(at), lookup);
                }
                self.out.ordinal = self.out.ordinal.max(c.ordinal);
            }
            record::SEQUENCES => {
                let (c, _): (record::Sequences, _) =
                    record::decode(r.data).map_err(|e| bad(&r, e))?;
                for (key, n) in c.acked {
                    let acked = self.out.acked.entry(key).or_default();
                    *acked = (*acked).max(n);
                }
                for i in c.inbound {
                    let seq = self.out.inbound.entry((i.source, i.key)).or_default();
                    if i.last >= seq.last {
                        seq.last = i.last;
                        seq.rejected = i.rejected.into_iter().collect();
                    }
                }
            }
            other => return Err(bad(&r, format!("unknown record kind {other}"))),
        }
        Ok(())
    }

    /// What the records describe, prepared transactions without an outcome in doubt, and the
    /// buckets the live things are counted in.
    pub(crate) fn finish(self) -> (Recovered, Live) {
        let Replay {
            mut out,
            live,
            prepared,
            local,
        } = self;
        let mut in_doubt: Vec<(String, Lsn, Vec<Op>)> = prepared
            .into_iter()
            .map(|(xid, (lsn, ops))| (xid, lsn, ops))
            .collect();
        in_doubt.sort_by_key(|(_, lsn, _)| *lsn);
        for (_, _, ops) in &in_doubt {
            for op in ops {
                if let Op::Put { at, msg } = op {
                    let at = norm(at.clone());
                    out.saw(&at, msg.lookup_id);
                    if msg.source_machine == local {
                        out.ordinal = out.ordinal.max(msg.id.ordinal());
                    }
                }
            }
        }
        out.in_doubt = in_doubt;
        (out, live)
    }
}

/// Which stores share lookup ids (a queue and its subqueues), so that a message moved between
/// them is found by the record that put it in another.
pub(super) fn family(at: &StoreRef) -> (u8, u32, Option<SystemQueue>, Option<&str>) {
    match at {
        StoreRef::Main(id) | StoreRef::Sub(id, _) => (0, *id, None, None),
        StoreRef::Journal(id) => (1, *id, None, None),
        StoreRef::System(q) => (2, 0, Some(*q), None),
        // Messages never move into or out of an outgoing queue.
        StoreRef::Outgoing(key) => (3, 0, None, Some(key.as_str())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packed_slot_gives_back_what_it_was_given() {
        assert_eq!(std::mem::size_of::<Packed>(), 20);
        for (lookup, lsn, rank, moves, footprint) in [
            (1, 1, 0, 0, 0),
            (u64::MAX, (1 << LSN_BITS) - 1, 7, 255, u32::MAX),
            (0x1234_5678_9abc, 0x9_8765_4321, 3, 17, 1024),
        ] {
            let slot = Slot {
                lsn,
                footprint,
                rank,
                moves,
            };
            let p = Packed::new(lookup, slot);
            let back = p.slot();
            assert_eq!(p.lookup(), lookup);
            assert_eq!(p.lsn(), lsn);
            assert_eq!(
                (back.lsn, back.footprint, back.rank, back.moves),
                (lsn, footprint, rank, moves)
            );
            let mut dead = p;
            dead.kill();
            assert_eq!(dead.lsn(), 0);
            assert_eq!(dead.lookup(), lookup);
        }
    }
}
