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
use super::wal::{Lsn, Record, Wal, WalError};
use super::Ownership;
use crate::error::{Error, ErrorCode, Result};
use crate::message::Message;
use crate::queue::store::LookupId;

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
    /// How many live things each record keeps alive: messages it put that are still in a queue,
    /// and pins (an unresolved prepare, a queue deletion not yet out of the catalog). A record
    /// below the smallest key is needed by nobody.
    live: Mutex<BTreeMap<Lsn, u64>>,
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
            *live.entry(lsn).or_default() += keeps;
            self.live_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
        Ok(lsn)
    }

    /// Counts things kept alive by records at these LSNs (replay).
    pub(crate) fn keep(&self, lsns: impl IntoIterator<Item = (Lsn, u64)>) {
        let mut live = self.live();
        for (lsn, bytes) in lsns {
            *live.entry(lsn).or_default() += 1;
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
            if let Some(n) = live.get_mut(&lsn) {
                *n -= 1;
                if *n == 0 {
                    live.remove(&lsn);
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
            .copied()
            .unwrap_or_else(|| self.wal.next_lsn());
        (bound, self.wal.removable_before(bound))
    }
}

/// What replay found: the queue contents and transaction state the records describe.
#[derive(Default)]
pub(crate) struct Recovered {
    /// Messages of each store by lookup id, each with the LSN of the record that put it.
    pub(crate) stores: HashMap<StoreRef, BTreeMap<LookupId, Box<Message>>>,
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
                    self.saw(&at, msg.lookup_id);
                    msg.lsn = lsn;
                    self.stores
                        .entry(at)
                        .or_default()
                        .insert(msg.lookup_id, msg);
                }
                Op::Remove { at, lookup } => {
                    let at = norm(at);
                    self.saw(&at, lookup);
                    if let Some(s) = self.stores.get_mut(&at) {
                        s.remove(&lookup);
                    }
                }
                Op::Move { from, to, lookup } => {
                    let (from, to) = (norm(from), norm(to));
                    self.saw(&from, lookup);
                    let Some(mut msg) = self.stores.get_mut(&from).and_then(|s| s.remove(&lookup))
                    else {
                        continue;
                    };
                    msg.move_count = msg.move_count.saturating_add(1);
                    msg.abort_count = 0;
                    self.stores.entry(to).or_default().insert(lookup, msg);
                }
                Op::DropQueue { id } => {
                    self.dropped.insert(id);
                    self.stores.retain(|at, _| at.queue_id() != Some(id));
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

/// Replays records in LSN order. `local` is this queue manager's GUID (for message-id ordinals).
pub(crate) fn replay(records: Vec<Record>, local: uuid::Uuid) -> Result<Recovered> {
    let mut out = Recovered::default();
    let mut prepared: HashMap<String, (Lsn, Vec<Op>)> = HashMap::new();
    for r in records {
        match r.kind {
            record::COMMIT => {
                let ops = record::ops(&r.data).map_err(|e| bad(&r, e))?;
                out.apply(ops, r.lsn, local);
            }
            record::PREPARE => {
                let (head, rest): (Outcome, _) = record::decode(&r.data).map_err(|e| bad(&r, e))?;
                let ops = record::ops(rest).map_err(|e| bad(&r, e))?;
                prepared.insert(head.xid, (r.lsn, ops));
            }
            record::RESOLVE => {
                let (head, _): (Outcome, _) = record::decode(&r.data).map_err(|e| bad(&r, e))?;
                if let Some((lsn, ops)) = prepared.remove(&head.xid) {
                    if head.commit {
                        out.apply(ops, lsn, local);
                    }
                }
            }
            record::CHECKPOINT => {
                let (c, _): (Checkpoint, _) = record::decode(&r.data).map_err(|e| bad(&r, e))?;
                for (at, lookup) in c.lookups {
                    out.saw(&norm(at), lookup);
                }
                out.ordinal = out.ordinal.max(c.ordinal);
            }
            other => return Err(bad(&r, format!("unknown record kind {other}"))),
        }
    }
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
    Ok(out)
}
