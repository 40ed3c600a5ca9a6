//! The queue manager's durable side: its log, its catalog, which log records still matter, and
//! replay.
//!
//! The queue manager logs every durable change through [`Persistence::log`] before it becomes
//! visible. Replay ([`replay`]) turns the records back into queue contents. Compaction deletes
//! the oldest segments once no live message was put by them ([`Persistence::removable_bound`]).

pub(crate) mod record;

use std::collections::{BTreeMap, HashMap, HashSet};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use self::record::{Checkpoint, Op, Outcome, StoreRef};
use crate::error::{Error, ErrorCode, Result};
use crate::message::footprint;
use crate::message::Message;
use crate::name::SystemQueue;
use crate::queue::cold::{Cache, ColdSource};
use crate::queue::store::LookupId;
use crate::storage::catalog::CatalogStore;
use crate::storage::wal::{Lsn, Record, Wal, WalError, WalReader};
use crate::storage::Ownership;

/// Maps a log failure to what MSMQ callers see.
pub(crate) fn storage_error(e: WalError) -> Error {
    match e {
        WalError::Fenced { .. } => Error::new(
            ErrorCode::ServiceNotAvailable,
            format!("storage fenced: another node owns this queue manager now ({e})"),
        ),
        other => Error::new(ErrorCode::MessageStorageFailed, other.to_string()),
    }
}

/// The log, the catalog and the bookkeeping that decides what the log must keep.
pub(crate) struct Persistence {
    pub(crate) wal: Wal,
    pub(crate) catalog: Arc<dyn CatalogStore>,
    owner: Ownership,
    /// What the records keep alive, by bucket of records.
    live: Mutex<Live>,
    /// Approximate log bytes of every live message: compaction keeps the log within a small
    /// multiple of this.
    live_bytes: AtomicU64,
    /// The log's segment size.
    segment_size: u64,
    /// The LSN at which a step last looked for compaction work.
    checked_at: AtomicU64,
}

/// How many records go by between two looks for compaction work.
const COMPACTION_EVERY: Lsn = 64;

impl Persistence {
    /// `live` holds the buckets replay saw ([`Replay::buckets`]).
    pub(crate) fn new(
        wal: Wal,
        catalog: Arc<dyn CatalogStore>,
        owner: Ownership,
        segment_size: u64,
        live: Live,
    ) -> Persistence {
        Persistence {
            wal,
            catalog,
            owner,
            live: Mutex::new(live),
            live_bytes: AtomicU64::new(0),
            segment_size,
            checked_at: AtomicU64::new(0),
        }
    }

    /// Fails with `MQ_ERROR_SERVICE_NOT_AVAILABLE` if another owner raised the epoch: the
    /// catalog's writes get the same fencing as the log's.
    pub(crate) fn check_owner(&self) -> Result<()> {
        let ours = self.owner.epoch();
        let theirs = (self.owner.epoch_check())().map_err(|e| {
            Error::new(
                ErrorCode::MessageStorageFailed,
                format!("reading the owner epoch: {e}"),
            )
        })?;
        if theirs == ours {
            return Ok(());
        }
        Err(storage_error(WalError::Fenced { ours, theirs }))
    }

    fn live(&self) -> MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes a record that keeps `keeps` things (`bytes` of messages) alive, and returns its
    /// LSN once it is durable.
    pub(crate) fn log(&self, kind: u8, data: &[u8], keeps: u64, bytes: u64) -> Result<Lsn> {
        let lsn = self.submit(kind, data, keeps, bytes)?;
        self.wal.wait(lsn).map_err(storage_error)?;
        Ok(lsn)
    }

    /// [`Persistence::log`] without waiting. The record is registered as live before anyone can see
    /// its LSN, so compaction never deletes a record in flight.
    pub(crate) fn submit(&self, kind: u8, data: &[u8], keeps: u64, bytes: u64) -> Result<Lsn> {
        let mut live = self.live();
        let lsn = self.wal.submit(kind, data).map_err(storage_error)?;
        live.wrote(lsn, data.len() as u64);
        if keeps > 0 {
            let bucket = live.bucket_of(lsn);
            *live.counts.entry(bucket).or_default() += keeps;
            self.live_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
        Ok(lsn)
    }

    /// Counts things kept alive by records at these LSNs (replay).
    pub(crate) fn keep(&self, lsns: impl IntoIterator<Item = (Lsn, u64)>) {
        let mut live = self.live();
        for (lsn, bytes) in lsns {
            let bucket = live.bucket_of(lsn);
            *live.counts.entry(bucket).or_default() += 1;
            self.live_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Things kept alive by records at these LSNs are gone (their removal is durable).
    pub(crate) fn release(&self, gone: &[(Lsn, u64)]) {
        if gone.is_empty() {
            return;
        }
        let mut live = self.live();
        for &(lsn, bytes) in gone {
            let bucket = live.bucket_of(lsn);
            if let Some(n) = live.counts.get_mut(&bucket) {
                *n -= 1;
                if *n == 0 {
                    live.counts.remove(&bucket);
                }
                self.live_bytes.fetch_sub(bytes, Ordering::Relaxed);
            }
        }
    }

    /// Whether a step that logged `lsn` should look for compaction work: once every
    /// [`COMPACTION_EVERY`] records, so that committers do not all take the log's locks again
    /// after each commit.
    pub(crate) fn compaction_due(&self, lsn: Lsn) -> bool {
        let last = self.checked_at.load(Ordering::Relaxed);
        lsn >= last + COMPACTION_EVERY
            && self
                .checked_at
                .compare_exchange(last, lsn, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Where the oldest segment ends, rounded up to the end of the bucket its last record is
    /// in, when the log has grown past twice its live data (plus two segments of slack): live
    /// messages below it should be rewritten at the head so that the segment can go. (A bucket
    /// may run into the next segment, and a message there keeps the whole bucket counted.)
    pub(crate) fn sparse_bound(&self) -> Option<Lsn> {
        let segments = self.wal.segment_count() as u64;
        let live = self.live_bytes.load(Ordering::Relaxed);
        if segments < 3 || segments * self.segment_size <= 2 * live + 2 * self.segment_size {
            return None;
        }
        let end = self.wal.oldest_segment_end()?;
        let live = self.live();
        Some(live.bucket_end(end).unwrap_or_else(|| self.wal.next_lsn()))
    }

    /// Every record below the returned LSN is needed by nobody, and how many segments that frees.
    pub(crate) fn removable_bound(&self) -> (Lsn, usize) {
        let mut live = self.live();
        let bound = live
            .counts
            .keys()
            .next()
            .copied()
            .unwrap_or_else(|| self.wal.next_lsn());
        live.forget_before(bound);
        (bound, self.wal.removable_before(bound))
    }
}

/// How many live things each bucket of records keeps alive: messages they put that are still in
/// a queue, and pins (an unresolved prepare, a queue deletion not yet out of the catalog). A
/// record below the first bucket with a count is needed by nobody.
///
/// A bucket is a run of consecutive records of about [`Live::bucket_bytes`] (a sixty-fourth of
/// a segment), named by its first LSN. Counting by bucket rather than by record keeps this small
/// with millions of one-message records, and a bucket is a small part of a segment, so
/// segments can go as soon as with exact counts.
pub(crate) struct Live {
    /// Live things per bucket, by the bucket's first LSN.
    counts: BTreeMap<Lsn, u64>,
    /// The first LSN of every bucket that may still count something, ascending.
    starts: std::collections::VecDeque<Lsn>,
    /// Record bytes in the last bucket so far.
    filling: u64,
    bucket_bytes: u64,
}

impl Live {
    pub(crate) fn new(segment_size: u64) -> Live {
        Live {
            counts: BTreeMap::new(),
            starts: std::collections::VecDeque::new(),
            filling: 0,
            bucket_bytes: (segment_size / 64).max(1),
        }
    }

    /// Record `lsn` of `bytes` was written (LSNs in increasing order).
    pub(crate) fn wrote(&mut self, lsn: Lsn, bytes: u64) {
        if self.starts.is_empty() || self.filling >= self.bucket_bytes {
            self.starts.push_back(lsn);
            self.filling = 0;
        }
        self.filling += bytes;
    }

    /// The first LSN of the bucket holding `lsn`.
    fn bucket_of(&self, lsn: Lsn) -> Lsn {
        let i = self.starts.partition_point(|&s| s <= lsn);
        i.checked_sub(1).map_or(0, |i| self.starts[i])
    }

    /// The first LSN of the first bucket that starts at or after `lsn` (`None`: the last bucket
    /// holds `lsn`).
    fn bucket_end(&self, lsn: Lsn) -> Option<Lsn> {
        let i = self.starts.partition_point(|&s| s < lsn);
        self.starts.get(i).copied()
    }

    /// Nothing below `bound` will be counted again: drops the buckets wholly before it.
    fn forget_before(&mut self, bound: Lsn) {
        let i = self.starts.partition_point(|&s| s <= bound);
        if i > 1 {
            self.starts.drain(..i - 1);
        }
    }
}

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
/// increasing lookup order and removals mostly take the oldest, so a vector with tombstones
/// (24 bytes a message) beats a map by half, which is what recovery's peak memory is made of.
#[derive(Default)]
pub(crate) struct Slots {
    v: Vec<(LookupId, Slot)>,
    /// Tombstones in `v` (slots with LSN 0: no record has LSN 0).
    dead: usize,
}

impl Slots {
    fn put(&mut self, lookup: LookupId, slot: Slot) {
        if self.v.last().is_none_or(|&(l, _)| l < lookup) {
            self.v.push((lookup, slot));
            return;
        }
        match self.v.binary_search_by_key(&lookup, |&(l, _)| l) {
            Ok(i) => {
                if self.v[i].1.lsn == 0 {
                    self.dead -= 1;
                }
                self.v[i].1 = slot;
            }
            Err(i) => self.v.insert(i, (lookup, slot)),
        }
    }

    fn remove(&mut self, lookup: LookupId) -> Option<Slot> {
        let i = self.v.binary_search_by_key(&lookup, |&(l, _)| l).ok()?;
        let slot = self.v[i].1;
        if slot.lsn == 0 {
            return None;
        }
        self.v[i].1.lsn = 0;
        self.dead += 1;
        if self.dead > 1024 && self.dead * 2 > self.v.len() {
            self.v.retain(|(_, s)| s.lsn != 0);
            self.dead = 0;
        }
        Some(slot)
    }

    /// The live messages, in lookup-id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (LookupId, Slot)> + '_ {
        self.v.iter().copied().filter(|(_, s)| s.lsn != 0)
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
}

/// Normalizes a store name for replay's maps: subqueue names are case-insensitive.
fn norm(at: StoreRef) -> StoreRef {
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
                    let expires = matches!(at, StoreRef::Main(_) | StoreRef::Sub(..));
                    if expires && msg.time_to_be_received.is_some() {
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
            }
        }
    }
}

fn bad(r: &Record, e: impl std::fmt::Display) -> Error {
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
    pub(crate) fn record(&mut self, r: Record) -> Result<()> {
        self.live.wrote(r.lsn, r.data.len() as u64);
        match r.kind {
            record::COMMIT => {
                let ops = record::ops(&r.data).map_err(|e| bad(&r, e))?;
                self.out.apply(ops, r.lsn, self.local);
            }
            record::PREPARE => {
                let (head, rest): (Outcome, _) = record::decode(&r.data).map_err(|e| bad(&r, e))?;
                let ops = record::ops(rest).map_err(|e| bad(&r, e))?;
                self.prepared.insert(head.xid, (r.lsn, ops));
            }
            record::RESOLVE => {
                let (head, _): (Outcome, _) = record::decode(&r.data).map_err(|e| bad(&r, e))?;
                if let Some((lsn, ops)) = self.prepared.remove(&head.xid) {
                    if head.commit {
                        self.out.apply(ops, lsn, self.local);
                    }
                }
            }
            record::CHECKPOINT => {
                let (c, _): (Checkpoint, _) = record::decode(&r.data).map_err(|e| bad(&r, e))?;
                for (at, lookup) in c.lookups {
                    self.out.saw(&norm(at), lookup);
                }
                self.out.ordinal = self.out.ordinal.max(c.ordinal);
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
fn family(at: &StoreRef) -> (u8, u32, Option<SystemQueue>) {
    match at {
        StoreRef::Main(id) | StoreRef::Sub(id, _) => (0, *id, None),
        StoreRef::Journal(id) => (1, *id, None),
        StoreRef::System(q) => (2, 0, Some(*q)),
    }
}

/// Reads cold messages back from the log for the stores of one queue manager, and holds their
/// shared cache budget.
pub(crate) struct LogSource {
    reader: WalReader,
    cache: Cache,
    /// The last large record decoded (a compaction rewrite holds thousands of messages, and
    /// refills read them a few hundred at a time).
    last: Mutex<Option<(Lsn, Arc<Vec<Op>>)>>,
}

impl std::fmt::Debug for LogSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSource")
            .field("cache", &self.cache)
            .finish()
    }
}

/// Records with more operations than this are kept decoded for the next read.
const KEEP_DECODED: usize = 16;
/// Two wanted records at most this many LSNs apart are read in one pass.
const READ_GAP: Lsn = 64;

impl LogSource {
    pub(crate) fn new(reader: WalReader, cache_bytes: u64) -> LogSource {
        LogSource {
            reader,
            cache: Cache::new(cache_bytes),
            last: Mutex::new(None),
        }
    }

    /// The operations of every COMMIT or PREPARE record from `from` to `to`.
    fn records(&self, from: Lsn, to: Lsn, mut f: impl FnMut(Lsn, &[Op])) -> Result<(), String> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if from == to {
            if let Some((lsn, ops)) = &*last {
                if *lsn == from {
                    f(from, ops);
                    return Ok(());
                }
            }
        }
        let mut failed = None;
        self.reader
            .read(from, to, |r| {
                let ops = match r.kind {
                    record::COMMIT => record::ops(&r.data),
                    record::PREPARE => {
                        record::decode::<Outcome>(&r.data).and_then(|(_, rest)| record::ops(rest))
                    }
                    _ => return true,
                };
                match ops {
                    Ok(ops) => {
                        f(r.lsn, &ops);
                        if ops.len() > KEEP_DECODED {
                            *last = Some((r.lsn, Arc::new(ops)));
                        }
                        true
                    }
                    Err(e) => {
                        failed = Some(format!("log record {} cannot be read: {e}", r.lsn));
                        false
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        failed.map_or(Ok(()), Err)
    }
}

impl ColdSource for LogSource {
    fn load(
        &self,
        at: &StoreRef,
        wanted: &[(Lsn, LookupId)],
        max_bytes: u64,
    ) -> Result<Vec<Box<Message>>, String> {
        let Some(&first) = wanted.first() else {
            return Ok(Vec::new());
        };
        let mut order = wanted.to_vec();
        order.sort_unstable();
        let fam = family(at);
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut found_first = false;
        let mut i = 0;
        while i < order.len() {
            let mut j = i;
            while j + 1 < order.len() && order[j + 1].0 - order[j].0 <= READ_GAP {
                j += 1;
            }
            let group = &order[i..=j];
            self.records(group[0].0, group[j - i].0, |lsn, ops| {
                for op in ops {
                    let Op::Put { at, msg } = op else { continue };
                    if family(at) != fam || group.binary_search(&(lsn, msg.lookup_id)).is_err() {
                        continue;
                    }
                    let mut msg = msg.clone();
                    msg.lsn = lsn;
                    found_first |= (lsn, msg.lookup_id) == first;
                    bytes += footprint(&msg);
                    out.push(msg);
                }
            })?;
            if found_first && bytes >= max_bytes {
                break;
            }
            i = j + 1;
        }
        // A wanted message missing from its record is the caller's to report: the others
        // found are good.
        Ok(out)
    }

    fn cache(&self) -> &Cache {
        &self.cache
    }
}

#[cfg(test)]
mod tests {
    use super::Live;

    #[test]
    fn buckets_follow_record_bytes_not_record_counts() {
        // 64 MiB segments: buckets of 1 MiB.
        let mut live = Live::new(64 << 20);
        for lsn in 1..=100 {
            live.wrote(lsn, 1 << 20);
        }
        // Big records (large transactions) get a bucket each, so one live message in record 57
        // keeps nothing before it alive.
        assert_eq!(live.bucket_of(57), 57);
        for lsn in 101..=10_100 {
            live.wrote(lsn, 100);
        }
        // Small records share one: ten thousand 100-byte records fit in 1 MiB.
        assert_eq!(live.bucket_of(101), 101);
        assert_eq!(live.bucket_of(10_100), 101);
        live.forget_before(5_000);
        assert_eq!(live.bucket_of(5_000), 101);
        assert_eq!(
            live.starts.len(),
            1,
            "buckets wholly below the bound are gone"
        );
    }

    #[test]
    fn a_segment_end_rounds_up_to_the_end_of_its_bucket() {
        // 64 KiB segments: buckets of 1 KiB; records of 600 bytes, two a bucket.
        let mut live = Live::new(64 << 10);
        for lsn in 1..=10 {
            live.wrote(lsn, 600);
        }
        // Buckets start at 1, 3, 5, 7, 9. A segment ending before record 4 ends, for
        // compaction, where the bucket holding record 3 ends.
        assert_eq!(live.bucket_end(4), Some(5));
        assert_eq!(live.bucket_end(5), Some(5));
        assert_eq!(live.bucket_end(10), None);
    }
}
