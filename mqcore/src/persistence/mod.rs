//! The queue manager's durable side: its log, its catalog, which log records still matter, and
//! replay.
//!
//! The queue manager logs every durable change through [`Persistence::log`] before it becomes
//! visible. Replay ([`replay`]) turns the records back into queue contents. Compaction deletes
//! the oldest segments once no live message was put by them ([`Persistence::removable_bound`]).

mod cold;
mod live;
pub(crate) mod record;
mod replay;

pub(crate) use cold::LogSource;
pub(crate) use live::Live;
pub(crate) use replay::{Recovered, Replay, SeqState};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::error::{Error, ErrorCode, Result};
use crate::storage::catalog::CatalogStore;
use crate::storage::wal::{LeaseCheck, Lsn, Wal, WalError};
use crate::storage::Ownership;

/// Replays `records` into a fresh recovered state and finishes it (the fuzzers' way in).
pub(crate) fn replay_records(
    records: impl IntoIterator<Item = crate::storage::Record>,
) -> Result<()> {
    let mut replay = Replay::new(uuid::Uuid::nil(), 1 << 20);
    for r in records {
        replay.record(r.as_ref())?;
    }
    let _ = replay.finish();
    Ok(())
}

/// Maps a log failure to what MSMQ callers see.
pub(crate) fn storage_error(e: WalError) -> Error {
    match e {
        WalError::Fenced { .. } | WalError::LeaseLost => Error::new(
            ErrorCode::ServiceNotAvailable,
            format!("storage fenced: another node owns this queue manager now ({e})"),
        ),
        // Windows answers MQ_ERROR_INSUFFICIENT_RESOURCES when storage runs out.
        WalError::StorageFull(_) => Error::new(ErrorCode::InsufficientResources, e.to_string()),
        other => Error::new(ErrorCode::MessageStorageFailed, other.to_string()),
    }
}

/// The log, the catalog and the bookkeeping that decides what the log must keep.
pub(crate) struct Persistence {
    pub(crate) wal: Wal,
    pub(crate) catalog: Arc<dyn CatalogStore>,
    owner: Ownership,
    lease: Option<LeaseCheck>,
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
        lease: Option<LeaseCheck>,
        segment_size: u64,
        live: Live,
    ) -> Persistence {
        Persistence {
            wal,
            catalog,
            owner,
            lease,
            live: Mutex::new(live),
            live_bytes: AtomicU64::new(0),
            segment_size,
            checked_at: AtomicU64::new(0),
        }
    }

    /// Fails with `MQ_ERROR_SERVICE_NOT_AVAILABLE` if another owner raised the epoch: the
    /// catalog's writes get the same fencing as the log's.
    pub(crate) fn check_owner(&self) -> Result<()> {
        if self.lease.as_ref().is_some_and(|l| !(l.0)()) {
            return Err(storage_error(WalError::LeaseLost));
        }
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
