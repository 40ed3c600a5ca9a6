//! The write-ahead log: crc-checked records in segment files, written by one group-commit thread.
//!
//! Invariant: records become durable in LSN order, and [`Wal::append`] (or [`Wal::wait`]) returns
//! success for a record only once it is durable and its writer still owned the storage.
//!
//! # Format
//! A segment is `<dir>/<seq as 16 hex digits>.wal`: a 32-byte header (`MQEMUWAL`, format version,
//! segment sequence number, first LSN), then records, then zeros or a dead segment's old records
//! (segments are preallocated, so an fdatasync overwrites blocks instead of growing the file; and
//! compaction's newest dead segment is kept as `free.wal-segment` and reused by the next roll,
//! so the blocks are written once, not zeroed first). A record is
//! `[len u32][crc32 u32][kind u8][lsn u64][epoch u64][data]`, little-endian, where `len` counts
//! the bytes after the crc and the crc covers `len` and everything after it. LSNs increase by one
//! per record across segments; the epoch is the owner epoch of the process that wrote it.
//!
//! # Group commit
//! [`Wal::append`] encodes its record into a shared buffer and waits. The writer thread takes
//! everything buffered, writes it with one `write_at`, makes it durable with one `fdatasync`, and
//! wakes the committers it covered. Records that arrive during a sync form the next batch, so the
//! number of commits per sync grows with concurrency, and there is no timer: a lone committer
//! waits for one write and one sync.
//!
//! # Recovery
//! [`Wal::open`] reads every segment in order and checks every record. A segment's records end at
//! zeros, or where a reused segment's old bytes begin: an old record (its LSN is below the
//! segment's first) or the cut-off rest of one. Each segment's header must start at the LSN after
//! the previous segment's last record, so records missing at the end of a segment are found
//! there. Where a segment's records end early, a valid record continuing the log after that
//! point is corruption of acknowledged data: opening fails with [`WalError::Corrupt`] naming the
//! file and offset, instead of starting silently wrong. Otherwise, in the last segment, a record
//! that fails its check is the torn tail of an interrupted batch: it and everything after it are
//! dropped (zeroed), since no committer was told it was durable.
//!
//! # Fencing
//! Before each batch the writer reads the owner epoch on disk; if another process has taken
//! ownership since (a higher epoch), the log refuses to write, fails the waiting committers and
//! every later append ([`WalError::Fenced`]). A log opened with a [`LeaseCheck`] (a cluster node's
//! lease on the storage) also asks it after each `fdatasync`, before it tells anyone the batch is
//! durable: a writer whose lease may have run out acknowledges nothing more
//! ([`WalError::LeaseLost`]), because a challenger may already be reading the log.
//!
//! # Layout
//! - `format`: the bytes of a segment header and of a record, and the segment file names.
//! - `group_commit`: the committers' side (submit, wait, the [`Durability`] future) and the writer
//!   thread that batches, checks the epoch, writes and syncs.
//! - `segments`: preallocated segments, the spare prepared off-thread, rolls and reuse of dead
//!   segments.
//! - `recovery`: the scan of every segment that [`Wal::open`] runs before it starts the writer,
//!   which tells a torn tail from corruption.
//! - `reader`: [`WalReader`] and the sparse index of record positions it reads from.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use super::disk::Disk;

mod format;
mod group_commit;
mod reader;
mod recovery;
mod segments;

pub use format::{Record, RecordRef, MAX_RECORD};
pub use group_commit::Durability;
pub use reader::WalReader;

use format::{encode, FIXED_LEN};
use group_commit::{lock, Shared, State, Writer};
use recovery::Recovered;

pub use crate::ids::Lsn;

/// What went wrong in the log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// The file system failed.
    #[error("I/O error in the write-ahead log: {0}")]
    Io(#[from] io::Error),
    /// A record before the end of the log failed its check.
    #[error("write-ahead log corrupt at {file}:{offset}: {why}")]
    Corrupt {
        /// The segment file.
        file: PathBuf,
        /// Byte offset of the bad record.
        offset: u64,
        /// What check failed.
        why: String,
    },
    /// Another process owns the storage now (its epoch is higher than ours).
    #[error("storage fenced: this process has epoch {ours}, the disk says {theirs}")]
    Fenced {
        /// Our epoch.
        ours: u64,
        /// The epoch found on disk.
        theirs: u64,
    },
    /// An earlier write failed; nothing more is acknowledged until the log is reopened.
    #[error("write-ahead log unusable after an earlier failure: {0}")]
    Poisoned(String),
    /// The owner's lease on the storage may have run out: a batch written after that is not
    /// acknowledged, and nothing after it is written.
    #[error("storage lease lost: this process may no longer acknowledge writes")]
    LeaseLost,
    /// A record over [`MAX_RECORD`].
    #[error("record of {0} bytes is over the {MAX_RECORD}-byte limit")]
    TooLarge(usize),
    /// The file system ran out of space; nothing more is acknowledged until the log is reopened.
    #[error("write-ahead log out of disk space: {0}")]
    StorageFull(String),
}

/// Whether this process may still acknowledge writes: `false` once its lease on the storage may
/// have expired anywhere else (a cluster node's own monotonic clock, minus a margin).
#[derive(Clone)]
pub struct LeaseCheck(pub Arc<dyn Fn() -> bool + Send + Sync>);

impl std::fmt::Debug for LeaseCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LeaseCheck")
    }
}

/// How the log lays out its files, and who may acknowledge.
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// Size a segment is preallocated to; a new segment starts when a batch would not fit.
    pub segment_size: u64,
    /// Asked before each batch is written and after it is synced; `None` for a storage no
    /// cluster shares.
    pub lease: Option<LeaseCheck>,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size: 64 * 1024 * 1024,
            lease: None,
        }
    }
}

/// Reads the owner epoch recorded on disk (see [`crate::storage`]); a test double for fencing
/// checks can be any closure.
pub type EpochCheck = Box<dyn Fn() -> io::Result<u64> + Send + Sync>;

/// An open write-ahead log.
pub struct Wal {
    shared: Arc<Shared>,
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    writer: Option<JoinHandle<()>>,
    /// The epoch stamped on every record this process writes.
    epoch: u64,
}

/// Counters of the log's work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Records made durable.
    pub records: u64,
    /// Batches written (one fdatasync each).
    pub syncs: u64,
    /// Batches by how many records they held (group commit): `batch_records[i]` counts those
    /// with at most [`WalStats::BATCH_BOUNDS`]`[i]` records and more than the bound before; the
    /// last, those with more than every bound.
    pub batch_records: [u64; 10],
    /// Batches by how long their write and fdatasync took, by [`WalStats::SYNC_BOUNDS_US`] as
    /// `batch_records` is by its bounds.
    pub sync_micros: [u64; 10],
    /// The sum of every batch's write and fdatasync time, in microseconds.
    pub sync_micros_sum: u64,
    /// Batches by how long their oldest record waited, from its submission to durable (the
    /// slowest commit of the batch: its wait for the batch before, then its own write and
    /// fdatasync), by [`WalStats::SYNC_BOUNDS_US`].
    pub commit_wait_micros: [u64; 10],
    /// The sum of those waits, in microseconds.
    pub commit_wait_micros_sum: u64,
}

impl WalStats {
    /// Upper bounds of `batch_records`' buckets, in records.
    pub const BATCH_BOUNDS: [u64; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];
    /// Upper bounds of `sync_micros`' buckets, in microseconds.
    pub const SYNC_BOUNDS_US: [u64; 9] = [50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 50_000];

    /// [`WalStats::BATCH_BOUNDS`], for callers that see the stats and not the storage layer.
    pub fn batch_bounds(&self) -> &'static [u64; 9] {
        &Self::BATCH_BOUNDS
    }

    /// [`WalStats::SYNC_BOUNDS_US`], for callers that see the stats and not the storage layer.
    pub fn sync_bounds_us(&self) -> &'static [u64; 9] {
        &Self::SYNC_BOUNDS_US
    }

    /// Counts one batch of `records` that took `micros` to write and sync, whose oldest record
    /// waited `waited` microseconds to be durable.
    pub(super) fn batch(&mut self, records: u64, micros: u64, waited: u64) {
        let bucket = |bounds: &[u64; 9], v: u64| bounds.iter().position(|&b| v <= b).unwrap_or(9);
        self.records += records;
        self.syncs += 1;
        self.batch_records[bucket(&Self::BATCH_BOUNDS, records)] += 1;
        self.sync_micros[bucket(&Self::SYNC_BOUNDS_US, micros)] += 1;
        self.sync_micros_sum += micros;
        self.commit_wait_micros[bucket(&Self::SYNC_BOUNDS_US, waited)] += 1;
        self.commit_wait_micros_sum += waited;
    }
}

impl Wal {
    /// Opens the log in `dir` (creating it), recovers every durable record, and starts the writer.
    ///
    /// `epoch` stamps every record written from now on; `epoch_check` reads the owner epoch on
    /// disk before each batch, so a fenced writer stops.
    pub fn open(
        disk: Arc<dyn Disk>,
        dir: &Path,
        epoch: u64,
        epoch_check: EpochCheck,
        options: WalOptions,
    ) -> Result<(Wal, Vec<Record>), WalError> {
        let mut records = Vec::new();
        let wal = Wal::open_visiting(disk, dir, epoch, epoch_check, options, |r| {
            records.push(r.to_record());
            Ok(())
        })?;
        Ok((wal, records))
    }

    /// [`Wal::open`], handing each recovered record to `visit` in LSN order instead of keeping
    /// them all: recovery then needs memory for one segment at a time, not for the whole log. An
    /// error from `visit` stops the opening.
    pub fn open_visiting(
        disk: Arc<dyn Disk>,
        dir: &Path,
        epoch: u64,
        epoch_check: EpochCheck,
        options: WalOptions,
        visit: impl FnMut(RecordRef<'_>) -> Result<(), WalError>,
    ) -> Result<Wal, WalError> {
        let Recovered {
            last_lsn,
            tail,
            segments: on_disk,
            marks,
        } = recovery::recover(&*disk, dir, options.segment_size, visit)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                buffer: Vec::new(),
                buffered_to: last_lsn,
                buffered_since: None,
                next_lsn: last_lsn + 1,
                writer_idle: false,
                failed: None,
                shutdown: false,
                stats: WalStats::default(),
                segments: on_disk,
                marks,
            }),
            work: Condvar::new(),
            wakers: Mutex::new(Vec::new()),
            free: Mutex::new(()),
            durable_to: AtomicU64::new(last_lsn),
            failed: AtomicBool::new(false),
            waiting: Mutex::new(()),
            durable: Condvar::new(),
        });
        let writer = Writer {
            disk: disk.clone(),
            dir: dir.to_owned(),
            epoch,
            epoch_check,
            lease: options.lease,
            segment_size: options.segment_size,
            tail,
            shared: shared.clone(),
            spare: None,
        };
        let handle = std::thread::Builder::new()
            .name("mqcore-wal".into())
            .spawn(move || writer.run())?;
        Ok(Wal {
            shared,
            disk,
            dir: dir.to_owned(),
            writer: Some(handle),
            epoch,
        })
    }

    /// Appends a record and returns once it is durable (or the log failed).
    pub fn append(&self, kind: u8, data: &[u8]) -> Result<Lsn, WalError> {
        let lsn = self.submit(kind, data)?;
        self.wait(lsn)?;
        Ok(lsn)
    }

    /// Hands a record to the writer and returns its LSN at once, without waiting for it to be
    /// durable: records are durable in LSN order, so a caller that must order a record after
    /// something it holds a lock on submits under that lock and waits ([`Wal::wait`]) after.
    pub fn submit(&self, kind: u8, data: &[u8]) -> Result<Lsn, WalError> {
        if data.len() + FIXED_LEN > MAX_RECORD {
            return Err(WalError::TooLarge(data.len()));
        }
        let mut state = lock(&self.shared.state);
        if let Some(f) = &state.failed {
            return Err(f.error());
        }
        let lsn = state.next_lsn;
        state.next_lsn += 1;
        if state.buffer.is_empty() {
            // The batch's oldest record: how long it waits is the batch's slowest commit.
            state.buffered_since = Some(std::time::Instant::now());
        }
        encode(&mut state.buffer, kind, lsn, self.epoch, data);
        state.buffered_to = lsn;
        if state.writer_idle {
            self.shared.work.notify_one();
        }
        Ok(lsn)
    }

    /// Returns once every record up to `lsn` is durable (or the log failed).
    pub fn wait(&self, lsn: Lsn) -> Result<(), WalError> {
        self.shared.wait(lsn)
    }

    /// [`Wal::wait`] as a future, for async hosts: no thread blocks while the writer syncs.
    pub fn durable(&self, lsn: Lsn) -> Durability {
        Durability {
            shared: self.shared.clone(),
            lsn,
            first: false,
        }
    }

    /// Whether [`Wal::wait`] for `lsn` would return at once: the record is durable, or the log
    /// has failed.
    pub fn settled(&self, lsn: Lsn) -> bool {
        self.shared.durable_state(lsn).is_some()
    }

    /// Why the log stopped acknowledging (a failed write or sync, another owner's epoch, a lost
    /// lease), if it did; it stays so until reopened.
    pub fn failure(&self) -> Option<WalError> {
        lock(&self.shared.state).failed.as_ref().map(|f| f.error())
    }

    /// The LSN the next record will get.
    pub fn next_lsn(&self) -> Lsn {
        lock(&self.shared.state).next_lsn
    }

    /// Records and syncs so far.
    pub fn stats(&self) -> WalStats {
        lock(&self.shared.state).stats
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        lock(&self.shared.state).shutdown = true;
        self.shared.work.notify_all();
        if let Some(h) = self.writer.take() {
            let _ = h.join();
        }
    }
}
