//! Segment files: created preallocated with zeros, the next one prepared as a spare off the
//! writer's thread, rolled to when a batch does not fit, and dead ones deleted oldest first with
//! the newest kept to be reused.
//!
//! Invariant: a segment is in the directory, synced, before anything is written to it: a spare
//! with a header of zeros, whose real header is written with its first batch and made durable by
//! that batch's `fdatasync` (a new log's first segment: header first, then the zero fill). So a
//! crash leaves either a segment recovery can read or one whose header is zeros or cut off, which
//! held no acknowledged record. Deletion goes oldest first, so a crash never leaves a gap.

use std::io;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use super::format::{segment_header, segment_path, HEADER_LEN};
use super::group_commit::{lock, Failure, Writer};
use super::{Lsn, Wal, WalError};
use crate::storage::disk::{Disk, DiskFile};

/// The dead segment kept for the next roll to reuse ([`spare_segment`]); not a segment of the
/// log, so recovery passes it by.
pub(super) const FREE_SEGMENT: &str = "free.wal-segment";

/// One segment's position for the writer.
pub(super) struct Tail {
    pub(super) file: Box<dyn DiskFile>,
    pub(super) seq: u64,
    pub(super) offset: u64,
    /// Offset of the segment's last [`Mark`](super::reader::Mark), if it has one.
    pub(super) marked: Option<u64>,
}

impl Wal {
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
}

/// How many of the oldest segments hold only records below `lsn` (never the last one).
fn removable(segments: &[(u64, Lsn)], lsn: Lsn) -> usize {
    segments.windows(2).take_while(|w| w[1].1 <= lsn).count()
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
/// [Recovery](super#recovery)).
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
pub(super) fn new_segment(
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

impl Writer {
    /// Moves the writer to segment `tail.seq + 1` for a batch that does not fit in the tail,
    /// whose first record is `first_lsn`: the spare if one was prepared, or else one prepared now.
    pub(super) fn roll(&mut self, first_lsn: Lsn) -> Result<(), Failure> {
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
            .map_err(Failure::from)?,
        };
        // The spare's header is zeros, synced, and it is in the directory already: the
        // header goes with this batch's sync. A crash before that sync leaves a segment
        // whose header was never written, which recovery removes as an interrupted roll.
        file.write_at(&segment_header(seq, first_lsn), 0)?;
        self.tail = Tail {
            file,
            seq,
            offset: HEADER_LEN,
            marked: None,
        };
        lock(&self.shared.state)
            .segments
            .push((self.tail.seq, first_lsn));
        Ok(())
    }

    /// Starts preparing the next segment on a thread of its own once the tail is half full, if
    /// the disk allows background I/O and no spare is under way.
    pub(super) fn prepare_spare(&mut self) {
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
    }
}
