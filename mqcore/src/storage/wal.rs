//! The write-ahead log: crc-checked records in segment files, written by one group-commit thread.
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
//! every later append ([`WalError::Fenced`]).

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;

use super::disk::{Disk, DiskFile};

/// A log sequence number: the position of a record in the whole log, starting at 1.
pub type Lsn = u64;

/// The segment header's first bytes.
const MAGIC: &[u8; 8] = b"MQEMUWAL";
/// The on-disk format version written in every segment header. Version 2 reuses dead segments,
/// so old records may follow a segment's own; version 1 segments (never reused) read the same.
const VERSION: u32 = 2;
/// The dead segment kept for the next roll to reuse ([`spare_segment`]); not a segment of the
/// log, so recovery passes it by.
const FREE_SEGMENT: &str = "free.wal-segment";
/// Bytes of a segment header.
const HEADER_LEN: u64 = 32;
/// `len` and `crc` before each record's checked bytes.
const FRAME_LEN: usize = 8;
/// `kind`, `lsn`, `epoch`: the fixed part of the checked bytes.
const FIXED_LEN: usize = 1 + 8 + 8;
/// The largest record accepted: a 4 MB message plus generous room for the rest of a transaction.
pub const MAX_RECORD: usize = 64 * 1024 * 1024;

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
    /// A record over [`MAX_RECORD`].
    #[error("record of {0} bytes is over the {MAX_RECORD}-byte limit")]
    TooLarge(usize),
}

/// A record read back by recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its sequence number.
    pub lsn: Lsn,
    /// The epoch of the process that wrote it.
    pub epoch: u64,
    /// The caller's record kind.
    pub kind: u8,
    /// The caller's bytes.
    pub data: Vec<u8>,
}

/// How the log lays out its files.
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// Size a segment is preallocated to; a new segment starts when a batch would not fit.
    pub segment_size: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size: 64 * 1024 * 1024,
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

struct Shared {
    state: Mutex<State>,
    /// Wakes the writer when records are buffered (or at shutdown).
    work: Condvar,
    /// Every record up to this LSN is durable. Committers read it without a lock, and wait on
    /// their own mutex and condition variable, so that a wake-up of many committers does not
    /// fight the submitters (and the writer) for `state`.
    durable_to: AtomicU64,
    /// Set (after `State::failed`) when the log failed.
    failed: AtomicBool,
    waiting: Mutex<()>,
    /// Wakes committers when the durable LSN moves (or the log fails); paired with `waiting`.
    durable: Condvar,
    /// Async committers ([`Wal::durable`]): the LSN each waits for and its waker, woken by the
    /// writer after each sync (all of them when the log fails).
    wakers: Mutex<Vec<(Lsn, Waker)>>,
    /// Held while the free segment ([`FREE_SEGMENT`]) is put in place or taken, which compaction
    /// and the spare's thread both do.
    free: Mutex<()>,
}

struct State {
    /// Encoded records waiting for the writer.
    buffer: Vec<u8>,
    /// LSN of the last record in `buffer`.
    buffered_to: Lsn,
    /// LSN the next append gets.
    next_lsn: Lsn,
    /// Whether the writer waits for work (only then does a submit need to wake it).
    writer_idle: bool,
    /// Set when a write failed or the log was fenced: the reason, for every later caller.
    failed: Option<Failure>,
    shutdown: bool,
    /// Records and syncs so far, for the commits-per-sync figure.
    stats: WalStats,
    /// Every segment on disk, oldest first: sequence number and the LSN of its first record.
    segments: Vec<(u64, Lsn)>,
    /// Where records start, about every [`MARK_EVERY`] bytes of every segment (and at each
    /// segment's first record), in LSN order: [`WalReader`] reads a record from the nearest mark
    /// before it instead of from its segment's start.
    marks: Vec<Mark>,
}

/// The position of one record.
#[derive(Debug, Clone, Copy)]
struct Mark {
    lsn: Lsn,
    seq: u64,
    offset: u64,
}

/// Bytes of log between two [`Mark`]s: a read starts at most this far before its record, and the
/// marks of a 10 GB log take about 2.5 MB.
const MARK_EVERY: u64 = 64 * 1024;

#[derive(Debug, Clone)]
enum Failure {
    Fenced { ours: u64, theirs: u64 },
    Other(String),
}

impl Failure {
    fn error(&self) -> WalError {
        match self {
            Failure::Fenced { ours, theirs } => WalError::Fenced {
                ours: *ours,
                theirs: *theirs,
            },
            Failure::Other(why) => WalError::Poisoned(why.clone()),
        }
    }
}

/// Counters of the log's work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Records made durable.
    pub records: u64,
    /// Batches written (one fdatasync each).
    pub syncs: u64,
}

impl Shared {
    /// Wakes the async committers whose record is durable, or all of them when the log failed.
    fn wake_async(&self, failed: bool) {
        let to = self.durable_to.load(Ordering::Acquire);
        let woken: Vec<Waker> = {
            let mut w = self.wakers.lock().unwrap_or_else(PoisonError::into_inner);
            if w.is_empty() {
                return;
            }
            let mut woken = Vec::new();
            w.retain(|(lsn, waker)| {
                let done = failed || *lsn <= to;
                if done {
                    woken.push(waker.clone());
                }
                !done
            });
            woken
        };
        for w in woken {
            w.wake();
        }
    }

    /// Where the wait for `lsn` stands: done, failed, or not yet (checked without a lock).
    fn durable_state(&self, lsn: Lsn) -> Option<Result<(), WalError>> {
        if self.durable_to.load(Ordering::Acquire) >= lsn {
            return Some(Ok(()));
        }
        if self.failed.load(Ordering::Acquire) {
            let state = lock(&self.state);
            let f = state.failed.as_ref().expect("set before the flag");
            return Some(Err(f.error()));
        }
        None
    }

    /// Returns once every record up to `lsn` is durable (or the log failed).
    fn wait(&self, lsn: Lsn) -> Result<(), WalError> {
        if self.durable_to.load(Ordering::Acquire) >= lsn {
            return Ok(());
        }
        crate::blocking::run(|| self.wait_blocking(lsn))
    }

    fn wait_blocking(&self, lsn: Lsn) -> Result<(), WalError> {
        let done = || self.durable_to.load(Ordering::Acquire) >= lsn;
        let failed = || self.failed.load(Ordering::Acquire);
        let mut guard = None;
        loop {
            if done() {
                return Ok(());
            }
            if failed() {
                drop(guard);
                let state = lock(&self.state);
                let f = state.failed.as_ref().expect("set before the flag");
                return Err(f.error());
            }
            // Checked again under `waiting`, which the writer takes before it notifies: no
            // wake-up is lost between the check and the wait.
            let g = match guard.take() {
                Some(g) => g,
                None => self.waiting.lock().unwrap_or_else(PoisonError::into_inner),
            };
            if done() || failed() {
                guard = Some(g);
                continue;
            }
            guard = Some(self.durable.wait(g).unwrap_or_else(PoisonError::into_inner));
        }
    }
}

/// Resolves once every record up to its LSN is durable, or the log failed ([`Wal::durable`]).
#[must_use = "a future does nothing unless polled"]
pub struct Durable {
    shared: Arc<Shared>,
    lsn: Lsn,
}

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durable").field("lsn", &self.lsn).finish()
    }
}

impl Future for Durable {
    type Output = Result<(), WalError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(r) = self.shared.durable_state(self.lsn) {
            return Poll::Ready(r);
        }
        {
            let mut w = self
                .shared
                .wakers
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            w.retain(|(_, waker)| !waker.will_wake(cx.waker()));
            w.push((self.lsn, cx.waker().clone()));
        }
        // The writer may have synced (and looked at the wakers) between the first look and the
        // registration: look again, now that a later sync is sure to see this waker.
        match self.shared.durable_state(self.lsn) {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The file name of segment `seq`.
fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016x}.wal"))
}

fn segment_seq(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let hex = name.strip_suffix(".wal")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Appends the encoding of one record to `out`.
fn encode(out: &mut Vec<u8>, kind: u8, lsn: Lsn, epoch: u64, data: &[u8]) {
    let len = u32::try_from(FIXED_LEN + data.len()).expect("records are bounded by MAX_RECORD");
    let start = out.len();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // crc, filled below
    out.push(kind);
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(&epoch.to_le_bytes());
    out.extend_from_slice(data);
    let crc = checksum(&out[start..start + 4], &out[start + FRAME_LEN..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn checksum(len: &[u8], rest: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(len);
    h.update(rest);
    h.finalize()
}

/// Reads exactly `buf.len()` bytes at `offset`, or fewer at the end of the file.
fn read_full(file: &dyn DiskFile, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let n = file.read_at(&mut buf[done..], offset + done as u64)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}

/// What decoding found at one position of a segment.
enum Decoded {
    /// A valid record, and the offset just after it.
    Record(Record, u64),
    /// Zeros: the preallocated rest of the segment.
    End,
    /// Something that is not a valid record.
    Bad(String),
}

/// Decodes the record at `offset` of `bytes` (a whole segment image).
fn decode_at(bytes: &[u8], offset: u64) -> Decoded {
    let at = offset as usize;
    let Some(frame) = bytes.get(at..at + FRAME_LEN) else {
        // A segment filled to within a frame header of its end keeps zeros there.
        let rest = bytes.get(at..).unwrap_or_default();
        return if rest.iter().all(|&b| b == 0) {
            Decoded::End
        } else {
            Decoded::Bad("truncated record header".into())
        };
    };
    let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
    let crc = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
    if len == 0 && crc == 0 {
        return Decoded::End;
    }
    if !(FIXED_LEN..=MAX_RECORD).contains(&len) {
        return Decoded::Bad(format!("record length {len} out of range"));
    }
    let Some(body) = bytes.get(at + FRAME_LEN..at + FRAME_LEN + len) else {
        return Decoded::Bad(format!(
            "record of {len} bytes cut off by the end of the file"
        ));
    };
    if checksum(&frame[..4], body) != crc {
        return Decoded::Bad("crc32 mismatch".into());
    }
    let kind = body[0];
    let lsn = u64::from_le_bytes(body[1..9].try_into().expect("8 bytes"));
    let epoch = u64::from_le_bytes(body[9..17].try_into().expect("8 bytes"));
    let record = Record {
        lsn,
        epoch,
        kind,
        data: body[FIXED_LEN..].to_vec(),
    };
    Decoded::Record(record, offset + (FRAME_LEN + len) as u64)
}

/// Whether any valid record with an LSN above `after` starts somewhere in `bytes[from..]`.
fn valid_record_after(bytes: &[u8], from: u64, after: Lsn) -> Option<u64> {
    // The LSN field is looked at before the crc, which costs a pass over the record: the old
    // records of a reused segment are all at or below `after`, and a record that continues the
    // log cannot be further on than there are bytes.
    let lsn_at = FRAME_LEN + 1;
    (from..bytes.len() as u64).find(|&off| {
        let Some(field) = bytes.get(off as usize + lsn_at..off as usize + lsn_at + 8) else {
            return false;
        };
        let lsn = u64::from_le_bytes(field.try_into().expect("8 bytes"));
        lsn > after
            && lsn - after <= bytes.len() as u64
            && matches!(decode_at(bytes, off), Decoded::Record(r, _) if r.lsn > after)
    })
}

/// One segment's position for the writer.
struct Tail {
    file: Box<dyn DiskFile>,
    seq: u64,
    offset: u64,
    /// Offset of the segment's last [`Mark`], if it has one.
    marked: Option<u64>,
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
            records.push(r);
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
        mut visit: impl FnMut(Record) -> Result<(), WalError>,
    ) -> Result<Wal, WalError> {
        disk.create_dir_all(dir)?;
        let mut segments: Vec<(u64, PathBuf)> = disk
            .list(dir)?
            .into_iter()
            .filter_map(|p| segment_seq(&p).map(|s| (s, p)))
            .collect();
        segments.sort();
        let mut last_lsn: Lsn = 0;
        // Where a segment before the last stopped other than at zeros, and why.
        let mut cut_short: Option<(PathBuf, u64, String)> = None;
        let mut marks = Vec::new();
        let mut tail: Option<Tail> = None;
        let mut on_disk = Vec::new();
        for (i, (seq, path)) in segments.iter().enumerate() {
            let is_last = i + 1 == segments.len();
            let file = disk.open(path, false)?;
            let len = file.len()?;
            let mut bytes = vec![
                0u8;
                usize::try_from(len)
                    .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?
            ];
            let n = read_full(&*file, &mut bytes, 0)?;
            bytes.truncate(n);
            let corrupt = |offset: u64, why: String| WalError::Corrupt {
                file: path.clone(),
                offset,
                why,
            };
            let unwritten_header = bytes.len() < HEADER_LEN as usize
                || bytes[..HEADER_LEN as usize].iter().all(|&b| b == 0);
            if unwritten_header {
                if is_last {
                    // A segment whose header never became durable: the roll was interrupted.
                    tail = None;
                    disk.remove(path)?;
                    break;
                }
                return Err(corrupt(0, "segment header cut off".into()));
            }
            let first_lsn = u64::from_le_bytes(bytes[24..32].try_into().expect("8 bytes"));
            if &bytes[..8] != MAGIC
                || !(1..=VERSION).contains(&u32::from_le_bytes(
                    bytes[8..12].try_into().expect("4 bytes"),
                ))
                || u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes")) != *seq
                || first_lsn == 0
            {
                return Err(corrupt(0, "bad segment header".into()));
            }
            if last_lsn == 0 {
                last_lsn = first_lsn - 1;
            } else if first_lsn != last_lsn + 1 {
                // The previous segment's records stopped short of where this one starts.
                let why = match cut_short.take() {
                    Some((file, offset, why)) => format!(
                        "{why} at offset {offset} of {}, and this segment starts at record \
                         {first_lsn}",
                        file.display()
                    ),
                    None => format!("segment starts at record {first_lsn}"),
                };
                return Err(corrupt(0, format!("{why}, after record {last_lsn}")));
            }
            cut_short = None;
            on_disk.push((*seq, first_lsn));
            let mut offset = HEADER_LEN;
            let mut marked: Option<u64> = None;
            loop {
                let (why, torn) = match decode_at(&bytes, offset) {
                    Decoded::End => break,
                    Decoded::Record(r, next) if r.lsn > last_lsn => {
                        if r.lsn != last_lsn + 1 {
                            return Err(corrupt(
                                offset,
                                format!("record {} follows record {last_lsn}", r.lsn),
                            ));
                        }
                        if marked.is_none_or(|at| offset >= at + MARK_EVERY) {
                            marks.push(Mark {
                                lsn: r.lsn,
                                seq: *seq,
                                offset,
                            });
                            marked = Some(offset);
                        }
                        last_lsn = r.lsn;
                        visit(r)?;
                        offset = next;
                        continue;
                    }
                    // A reused segment's old records: every one is below the segment's first
                    // LSN, so at or below the last record read.
                    Decoded::Record(r, _) => (format!("old record {}", r.lsn), false),
                    Decoded::Bad(why) => (why, true),
                };
                // The segment's own records end here, unless a record continuing the log comes
                // after: then acknowledged records were damaged.
                if let Some(at) = valid_record_after(&bytes, offset + 1, last_lsn) {
                    return Err(corrupt(
                        offset,
                        format!("{why}, with a valid record after it at offset {at}"),
                    ));
                }
                if !is_last {
                    // Whether any of its last records are missing shows when the next
                    // segment's first LSN is read.
                    cut_short = Some((path.clone(), offset, why));
                } else if torn {
                    // The torn tail of an interrupted batch: zeroed, so nothing of it is read
                    // again.
                    let zeros = vec![0u8; bytes.len() - offset as usize];
                    file.write_at(&zeros, offset)?;
                    file.sync_data()?;
                    tracing::warn!(file = %path.display(), offset, "dropped the torn tail of the write-ahead log");
                }
                break;
            }
            if is_last {
                tail = Some(Tail {
                    file,
                    seq: *seq,
                    offset,
                    marked,
                });
            }
        }
        let tail = match tail {
            Some(t) => t,
            None => {
                let seq = on_disk.last().map_or(1, |(s, _)| s + 1);
                on_disk.push((seq, last_lsn + 1));
                new_segment(&*disk, dir, seq, last_lsn + 1, options.segment_size)?
            }
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                buffer: Vec::new(),
                buffered_to: last_lsn,
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

    /// A reader of this log's durable records, for whoever needs message bodies back.
    pub fn reader(&self) -> WalReader {
        WalReader {
            shared: self.shared.clone(),
            disk: self.disk.clone(),
            dir: self.dir.clone(),
        }
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
    pub fn durable(&self, lsn: Lsn) -> Durable {
        Durable {
            shared: self.shared.clone(),
            lsn,
        }
    }

    /// Whether [`Wal::wait`] for `lsn` would return at once: the record is durable, or the log
    /// has failed.
    pub fn settled(&self, lsn: Lsn) -> bool {
        self.shared.durable_state(lsn).is_some()
    }

    /// The LSN the next record will get.
    pub fn next_lsn(&self) -> Lsn {
        lock(&self.shared.state).next_lsn
    }

    /// How many segment files the log has.
    pub fn segment_count(&self) -> usize {
        lock(&self.shared.state).segments.len()
    }

    /// The LSN of the first record after the oldest segment (`None` with one segment).
    pub fn oldest_segment_end(&self) -> Option<Lsn> {
        lock(&self.shared.state)
            .segments
            .get(1)
            .map(|&(_, first)| first)
    }

    /// How many segments [`Wal::remove_before`] would delete for `lsn`.
    pub fn removable_before(&self, lsn: Lsn) -> usize {
        removable(&lock(&self.shared.state).segments, lsn)
    }

    /// Deletes every segment whose records all have LSNs below `lsn` (never the segment being
    /// written), keeping the newest of them as the free segment for a later roll. The caller
    /// guarantees nothing below `lsn` is needed for recovery any more.
    /// Returns how many segments went.
    pub fn remove_before(&self, lsn: Lsn) -> Result<usize, WalError> {
        let doomed: Vec<u64> = {
            let mut state = lock(&self.shared.state);
            let keep_from = removable(&state.segments, lsn);
            let doomed: Vec<u64> = state.segments.drain(..keep_from).map(|(s, _)| s).collect();
            if let Some(&last) = doomed.last() {
                let gone = state.marks.partition_point(|m| m.seq <= last);
                state.marks.drain(..gone);
            }
            doomed
        };
        // Oldest first, each removal durable before the next: a crash leaves a suffix of the
        // segments, never a gap in the middle of the log. The newest goes last, renamed to be
        // the free segment the next roll reuses (replacing any free one not yet taken).
        for (i, seq) in doomed.iter().enumerate() {
            let path = segment_path(&self.dir, *seq);
            if i + 1 == doomed.len() {
                let _free = self
                    .shared
                    .free
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                self.disk.rename(&path, &self.dir.join(FREE_SEGMENT))?;
            } else {
                self.disk.remove(&path)?;
            }
            self.disk.sync_dir(&self.dir)?;
        }
        Ok(doomed.len())
    }

    /// Records and syncs so far.
    pub fn stats(&self) -> WalStats {
        lock(&self.shared.state).stats
    }
}

/// Reads durable records back by LSN (message bodies that were let go from memory). Cheap to
/// clone; does not keep the writer alive.
#[derive(Clone)]
pub struct WalReader {
    shared: Arc<Shared>,
    disk: Arc<dyn Disk>,
    dir: PathBuf,
}

impl std::fmt::Debug for WalReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalReader").field("dir", &self.dir).finish()
    }
}

/// Bytes read from a segment at a time.
const READ_CHUNK: usize = 64 * 1024;

impl WalReader {
    /// Calls `visit` with every record from `from` to `to` (inclusive) in LSN order, until it
    /// returns `false`. Only durable records may be asked for; one that is gone (its segment
    /// deleted) is an error.
    pub fn read(
        &self,
        from: Lsn,
        to: Lsn,
        mut visit: impl FnMut(Record) -> bool,
    ) -> Result<(), WalError> {
        // A record is asked for as soon as it is submitted (compaction points cold messages at
        // their rewrite under the store's lock): wait until it is on disk.
        self.shared.wait(to)?;
        let (start, segments) = {
            let state = lock(&self.shared.state);
            let i = state.marks.partition_point(|m| m.lsn <= from);
            let Some(&start) = i.checked_sub(1).and_then(|i| state.marks.get(i)) else {
                return Err(WalError::Io(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("log record {from} is no longer in the log"),
                )));
            };
            let segments: Vec<u64> = state
                .segments
                .iter()
                .map(|&(seq, _)| seq)
                .filter(|&seq| seq >= start.seq)
                .collect();
            (start, segments)
        };
        let mut offset = start.offset;
        let mut last: Lsn = 0;
        for seq in segments {
            let file = self.disk.open(&segment_path(&self.dir, seq), false)?;
            // `buf` holds the segment's bytes from `base` on; `at` is the next record in it.
            let mut buf: Vec<u8> = Vec::new();
            let mut base = offset;
            let mut at = 0usize;
            let mut eof = false;
            loop {
                let need = match buf.get(at..at + FRAME_LEN) {
                    Some(frame) => {
                        let len = u32::from_le_bytes(frame[..4].try_into().expect("4 bytes"));
                        if len == 0 || len as usize > MAX_RECORD {
                            break; // the zeros after the last record, or a batch in progress
                        }
                        FRAME_LEN + len as usize
                    }
                    None => FRAME_LEN,
                };
                if buf.len() < at + need {
                    if eof {
                        break;
                    }
                    buf.drain(..at);
                    base += at as u64;
                    at = 0;
                    let have = buf.len();
                    buf.resize(need.max(READ_CHUNK), 0);
                    let n = read_full(&*file, &mut buf[have..], base + have as u64)?;
                    eof = have + n < buf.len();
                    buf.truncate(have + n);
                    continue;
                }
                match decode_at(&buf, at as u64) {
                    // The old records of a reused segment, after the segment's own: all below
                    // any record still asked for, so nothing more of this segment is.
                    Decoded::Record(r, _) if r.lsn <= last => break,
                    Decoded::Record(r, next) => {
                        at = next as usize;
                        last = r.lsn;
                        if r.lsn > to {
                            return Ok(());
                        }
                        if r.lsn >= from && !visit(r) {
                            return Ok(());
                        }
                    }
                    // A batch being written after the durable records asked for.
                    Decoded::End | Decoded::Bad(_) => break,
                }
            }
            offset = HEADER_LEN;
        }
        Ok(())
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

/// How many of the oldest segments hold only records below `lsn` (never the last one).
fn removable(segments: &[(u64, Lsn)], lsn: Lsn) -> usize {
    segments.windows(2).take_while(|w| w[1].1 <= lsn).count()
}

/// A segment's header.
fn segment_header(seq: u64, first_lsn: Lsn) -> Vec<u8> {
    let mut header = Vec::with_capacity(HEADER_LEN as usize);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&VERSION.to_le_bytes());
    header.extend_from_slice(&[0; 4]);
    header.extend_from_slice(&seq.to_le_bytes());
    header.extend_from_slice(&first_lsn.to_le_bytes());
    header
}

/// Writes zeros over `file` from `from` to `to`, then makes it durable with its directory entry.
fn fill_zeros(
    disk: &dyn Disk,
    dir: &Path,
    file: &dyn DiskFile,
    from: u64,
    to: u64,
) -> io::Result<()> {
    let chunk = vec![0u8; 1 << 20];
    let mut at = from;
    while at < to {
        let n = chunk.len().min((to - at) as usize);
        file.write_at(&chunk[..n], at)?;
        at += n as u64;
    }
    file.sync_data()?;
    disk.sync_dir(dir)
}

/// Makes segment `seq` with a header of zeros, durable with its directory entry: the spare the
/// writer rolls to. It is the free segment compaction left ([`Wal::remove_before`]) if there is
/// one, or else `size` new zeros.
///
/// Reusing a dead segment's blocks halves what the log writes: filling a new segment with zeros
/// (so that an `fdatasync` overwrites blocks instead of allocating them) writes it twice. The
/// old records left in it are told apart by their LSNs, all below the segment's first (see
/// [Recovery](self#recovery)).
fn spare_segment(
    disk: &dyn Disk,
    dir: &Path,
    seq: u64,
    size: u64,
    free: &Mutex<()>,
) -> io::Result<Box<dyn DiskFile>> {
    let path = segment_path(dir, seq);
    {
        let _free = free.lock().unwrap_or_else(PoisonError::into_inner);
        let free_path = dir.join(FREE_SEGMENT);
        match disk.open(&free_path, false) {
            Ok(file) if file.len()? == size => {
                // The old header goes, durably, before the rename: a crash after it leaves a
                // last segment whose header was never written, which recovery removes.
                file.write_at(&[0; HEADER_LEN as usize], 0)?;
                file.sync_data()?;
                drop(file);
                disk.rename(&free_path, &path)?;
                disk.sync_dir(dir)?;
                return disk.open(&path, false);
            }
            // Left by a log with another segment size.
            Ok(_) => disk.remove(&free_path)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    let file = disk.open(&path, true)?;
    fill_zeros(disk, dir, &*file, 0, size)?;
    Ok(file)
}

/// Creates segment `seq`, preallocated with zeros, header written and durable.
fn new_segment(
    disk: &dyn Disk,
    dir: &Path,
    seq: u64,
    first_lsn: Lsn,
    size: u64,
) -> Result<Tail, WalError> {
    let path = segment_path(dir, seq);
    let file = disk.open(&path, true)?;
    let header = segment_header(seq, first_lsn);
    // Header first: a crash during the zero fill leaves a short segment with a valid header
    // (read up to its end), and one before the header leaves an empty or all-zero file, which
    // recovery removes as an interrupted roll.
    file.write_at(&header, 0)?;
    fill_zeros(disk, dir, &*file, HEADER_LEN, size)?;
    Ok(Tail {
        file,
        seq,
        offset: HEADER_LEN,
        marked: None,
    })
}

/// The writer thread's state.
struct Writer {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    epoch: u64,
    epoch_check: EpochCheck,
    segment_size: u64,
    tail: Tail,
    shared: Arc<Shared>,
    /// The next segment's file, prepared on a thread of its own once the tail is half full
    /// ([`spare_segment`]): zero-filling 64 MiB on the writer's thread stalled every commit for
    /// tens of milliseconds at each roll.
    spare: Option<std::thread::JoinHandle<io::Result<Box<dyn DiskFile>>>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        // A spare being filled is finished before the log is gone, so a reopen never meets a
        // file still being written.
        if let Some(spare) = self.spare.take() {
            let _ = spare.join();
        }
    }
}

impl Writer {
    fn run(mut self) {
        let mut batch = Vec::new();
        loop {
            let upto = {
                let mut state = lock(&self.shared.state);
                while state.buffer.is_empty() && !state.shutdown {
                    state.writer_idle = true;
                    state = self
                        .shared
                        .work
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                    state.writer_idle = false;
                }
                if state.buffer.is_empty() {
                    return; // shut down with nothing left to write
                }
                std::mem::swap(&mut batch, &mut state.buffer);
                state.buffered_to
            };
            let result = self.write_batch(&batch);
            batch.clear();
            let mut state = lock(&self.shared.state);
            let failed = match result {
                Ok(records) => {
                    state.stats.records += records;
                    state.stats.syncs += 1;
                    self.shared.durable_to.store(upto, Ordering::Release);
                    false
                }
                Err(failure) => {
                    tracing::error!(?failure, "write-ahead log failed; no further commits");
                    state.failed = Some(failure);
                    self.shared.failed.store(true, Ordering::Release);
                    true
                }
            };
            drop(state);
            drop(
                self.shared
                    .waiting
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            );
            self.shared.durable.notify_all();
            self.shared.wake_async(failed);
            if failed {
                return;
            }
        }
    }

    /// Writes and syncs one batch; returns how many records it held.
    fn write_batch(&mut self, batch: &[u8]) -> Result<u64, Failure> {
        let theirs = (self.epoch_check)().map_err(|e| Failure::Other(e.to_string()))?;
        if theirs != self.epoch {
            return Err(Failure::Fenced {
                ours: self.epoch,
                theirs,
            });
        }
        if self.tail.offset + batch.len() as u64 > self.segment_size
            && self.tail.offset > HEADER_LEN
        {
            let first_lsn = first_lsn_of(batch);
            let seq = self.tail.seq + 1;
            let spare = self.spare.take().and_then(|t| t.join().ok()?.ok());
            let file = match spare {
                Some(file) => file,
                None => spare_segment(
                    &*self.disk,
                    &self.dir,
                    seq,
                    self.segment_size,
                    &self.shared.free,
                )
                .map_err(|e| Failure::Other(e.to_string()))?,
            };
            // The spare's header is zeros, synced, and it is in the directory already: the
            // header goes with this batch's sync. A crash before that sync leaves a segment
            // whose header was never written, which recovery removes as an interrupted roll.
            file.write_at(&segment_header(seq, first_lsn), 0)
                .map_err(|e| Failure::Other(e.to_string()))?;
            self.tail = Tail {
                file,
                seq,
                offset: HEADER_LEN,
                marked: None,
            };
            lock(&self.shared.state)
                .segments
                .push((self.tail.seq, first_lsn));
        }
        let io = |e: io::Error| Failure::Other(e.to_string());
        self.tail
            .file
            .write_at(batch, self.tail.offset)
            .map_err(io)?;
        self.tail.file.sync_data().map_err(io)?;
        let at = self.tail.offset;
        self.tail.offset += batch.len() as u64;
        if self.spare.is_none()
            && self.tail.offset > self.segment_size / 2
            && self.disk.background_io()
        {
            let (disk, dir, seq, size, shared) = (
                self.disk.clone(),
                self.dir.clone(),
                self.tail.seq + 1,
                self.segment_size,
                self.shared.clone(),
            );
            // If the thread cannot start, the roll prepares the segment itself.
            self.spare = std::thread::Builder::new()
                .name("mqcore-wal-spare".into())
                .spawn(move || spare_segment(&*disk, &dir, seq, size, &shared.free))
                .ok();
        }
        if self.tail.marked.is_none_or(|m| at >= m + MARK_EVERY) {
            self.tail.marked = Some(at);
            lock(&self.shared.state).marks.push(Mark {
                lsn: first_lsn_of(batch),
                seq: self.tail.seq,
                offset: at,
            });
        }
        Ok(count_records(batch))
    }
}

fn first_lsn_of(batch: &[u8]) -> Lsn {
    u64::from_le_bytes(
        batch[FRAME_LEN + 1..FRAME_LEN + 9]
            .try_into()
            .expect("8 bytes"),
    )
}

fn count_records(batch: &[u8]) -> u64 {
    let mut n = 0;
    let mut at = 0;
    while at + FRAME_LEN <= batch.len() {
        let len = u32::from_le_bytes(batch[at..at + 4].try_into().expect("4 bytes")) as usize;
        at += FRAME_LEN + len;
        n += 1;
    }
    n
}
