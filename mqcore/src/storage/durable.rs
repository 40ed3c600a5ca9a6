//! The queue manager's durable side: its log, its catalog, which log records still matter, and
//! replay.
//!
//! The queue manager logs every durable change through [`Durable::log`] before it becomes
//! visible. Replay ([`replay`]) turns the records back into queue contents. Compaction deletes
//! the oldest segments once no live message was put by them ([`Durable::removable_bound`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::catalog::CatalogStore;
use super::record::{self, Checkpoint, Op, Outcome, StoreRef};
use super::wal::{Lsn, Record, Wal, WalError, WalReader};
use super::Ownership;
use crate::error::{Error, ErrorCode, Result};
use crate::message::Message;
use crate::name::SystemQueue;
use crate::queue::cold::{Cache, ColdSource};
use crate::queue::store::{footprint, LookupId};

/// Where a queue manager keeps its storage under a root directory (MSMQ's layout).
pub fn storage_dir(root: &Path) -> PathBuf {
    root.join("msmq").join("storage")
}

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
pub(crate) struct Durable {
    pub(crate) wal: Wal,
    pub(crate) catalog: Arc<dyn CatalogStore>,
    owner: Ownership,
    /// How many live things the records of each bucket of [`Durable::bucket`] LSNs keep alive:
    /// messages they put that are still in a queue, and pins (an unresolved prepare, a queue
    /// deletion not yet out of the catalog). A record below the smallest bucket is needed by
    /// nobody. Counting by bucket rather than by record keeps this small with millions of
    /// queued messages; a bucket is a small fraction of a segment, so segments go as soon.
    live: Mutex<BTreeMap<Lsn, u64>>,
    /// LSNs per bucket of `live`.
    bucket: Lsn,
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

impl Durable {
    pub(crate) fn new(
        wal: Wal,
        catalog: Arc<dyn CatalogStore>,
        owner: Ownership,
        segment_size: u64,
    ) -> Durable {
        Durable {
            wal,
            catalog,
            owner,
            live: Mutex::new(BTreeMap::new()),
            // Records are at least a few dozen bytes: a 64 MiB segment holds a thousand
            // buckets or more, and the 1 KiB segments of the crash tests one record a bucket.
            bucket: (segment_size / 65536).max(1),
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

    fn live(&self) -> MutexGuard<'_, BTreeMap<Lsn, u64>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes a record that keeps `keeps` things (`bytes` of messages) alive, and returns its
    /// LSN once it is durable.
    pub(crate) fn log(&self, kind: u8, data: &[u8], keeps: u64, bytes: u64) -> Result<Lsn> {
        let lsn = self.submit(kind, data, keeps, bytes)?;
        self.wal.wait(lsn).map_err(storage_error)?;
        Ok(lsn)
    }

    /// [`Durable::log`] without waiting. The record is registered as live before anyone can see
    /// its LSN, so compaction never deletes a record in flight.
    pub(crate) fn submit(&self, kind: u8, data: &[u8], keeps: u64, bytes: u64) -> Result<Lsn> {
        let mut live = self.live();
        let lsn = self.wal.submit(kind, data).map_err(storage_error)?;
        if keeps > 0 {
            *live.entry(lsn / self.bucket).or_default() += keeps;
            self.live_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
        Ok(lsn)
    }

    /// Counts things kept alive by records at these LSNs (replay).
    pub(crate) fn keep(&self, lsns: impl IntoIterator<Item = (Lsn, u64)>) {
        let mut live = self.live();
        for (lsn, bytes) in lsns {
            *live.entry(lsn / self.bucket).or_default() += 1;
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
            let bucket = lsn / self.bucket;
            if let Some(n) = live.get_mut(&bucket) {
                *n -= 1;
                if *n == 0 {
                    live.remove(&bucket);
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

    /// The end of the oldest segment, when the log has grown past twice its live data (plus two
    /// segments of slack) and that segment's live messages should be rewritten at the head so
    /// it can go.
    pub(crate) fn sparse_bound(&self) -> Option<Lsn> {
        let segments = self.wal.segment_count() as u64;
        let live = self.live_bytes.load(Ordering::Relaxed);
        if segments < 3 || segments * self.segment_size <= 2 * live + 2 * self.segment_size {
            return None;
        }
        self.wal.oldest_segment_end()
    }

    /// Every record below the returned LSN is needed by nobody, and how many segments that frees.
    pub(crate) fn removable_bound(&self) -> (Lsn, usize) {
        let live = self.live();
        let bound = live
            .keys()
            .next()
            .map(|b| b * self.bucket)
            .unwrap_or_else(|| self.wal.next_lsn());
        (bound, self.wal.removable_before(bound))
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

/// What replay found: the queue contents and transaction state the records describe.
#[derive(Default)]
pub(crate) struct Recovered {
    /// The live messages of each store by lookup id, as log positions: recovery reads back
    /// only those that go in memory.
    pub(crate) stores: HashMap<StoreRef, HashMap<LookupId, Slot>>,
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
                    store.insert(lookup, slot);
                    if msg.time_to_be_received.is_some() {
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
                        s.remove(&lookup);
                    }
                    self.kept.remove(&(at, lookup));
                }
                Op::Move { from, to, lookup } => {
                    let (from, to) = (norm(from), norm(to));
                    self.saw(&from, lookup);
                    let Some(mut slot) = self.stores.get_mut(&from).and_then(|s| s.remove(&lookup))
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
                    self.stores.entry(to).or_default().insert(lookup, slot);
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
    prepared: HashMap<String, (Lsn, Vec<Op>)>,
    /// This queue manager's GUID (for message-id ordinals).
    local: uuid::Uuid,
}

impl Replay {
    pub(crate) fn new(local: uuid::Uuid) -> Replay {
        Replay {
            out: Recovered::default(),
            prepared: HashMap::new(),
            local,
        }
    }

    /// Applies the next record.
    pub(crate) fn record(&mut self, r: Record) -> Result<()> {
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

    /// What the records describe, prepared transactions without an outcome in doubt.
    pub(crate) fn finish(self) -> Recovered {
        let Replay {
            mut out,
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
        out
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
        if !found_first {
            return Err(format!(
                "message {} of {at:?} is not in log record {}",
                first.1, first.0
            ));
        }
        Ok(out)
    }

    fn cache(&self) -> &Cache {
        &self.cache
    }
}
