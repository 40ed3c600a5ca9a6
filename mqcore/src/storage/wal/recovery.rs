//! Recovery: opening the log ([`Wal::open`](super::Wal::open)) reads every segment in order,
//! checks every record, drops the torn tail of an interrupted batch, refuses corruption, and leaves
//! the writer its place after the last good record.
//!
//! Invariant: recovery drops only what no committer was told was durable (a bad record in the
//! last segment with no record continuing the log after it); any damage to acknowledged records
//! fails the opening with [`WalError::Corrupt`].

use std::io;
use std::path::{Path, PathBuf};

use super::format::{
    decode_at, header_checks, read_full, segment_seq, Decoded, RecordRef, FRAME_LEN, HEADER_LEN,
    MAGIC, VERSION,
};
use super::reader::{Mark, MARK_EVERY};
use super::segments::{new_segment, Tail};
use super::{Lsn, WalError};
use crate::storage::disk::Disk;

/// What recovery leaves for the writer: the log's last record and the segment to go on in.
pub(super) struct Recovered {
    /// LSN of the last record recovered (one below the first segment's first LSN if none).
    pub(super) last_lsn: Lsn,
    /// The last segment, positioned after its last record (a new segment for a new log).
    pub(super) tail: Tail,
    /// Every segment, oldest first: sequence number and the LSN of its first record.
    pub(super) segments: Vec<(u64, Lsn)>,
    /// The sparse index of record positions ([`Mark`]).
    pub(super) marks: Vec<Mark>,
}

/// Reads every segment of the log in `dir` (creating the directory), hands each record to
/// `visit` in LSN order, drops a torn tail and refuses corruption; creates the first segment of
/// a new log.
pub(super) fn recover(
    disk: &dyn Disk,
    dir: &Path,
    segment_size: u64,
    mut visit: impl FnMut(RecordRef<'_>) -> Result<(), WalError>,
) -> Result<Recovered, WalError> {
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
    // One buffer for every segment's image: a fresh one each time cost as much in page faults
    // as the reading itself (docs/performance.md, "Reopening").
    let mut image = Vec::new();
    for (i, (seq, path)) in segments.iter().enumerate() {
        let is_last = i + 1 == segments.len();
        let file = disk.open(path, false)?;
        let len = usize::try_from(file.len()?)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        if image.len() < len {
            image.resize(len, 0);
        }
        let n = read_full(&*file, &mut image[..len], 0)?;
        let bytes = &image[..n];
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
            || !header_checks(&bytes[..HEADER_LEN as usize])
        {
            return Err(corrupt(0, "bad segment header".into()));
        }
        // The first segment sets where the log starts (compaction removes older ones); every
        // later one must continue it, even when no record of the one before could be read
        // (`last_lsn` is still 0 then: the `wal` fuzz target found such a log opening from the
        // second segment, skipping the first one's records).
        if on_disk.is_empty() {
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
            let (why, torn) = match decode_at(bytes, offset) {
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
            if let Some(at) = valid_record_after(bytes, offset + 1, last_lsn) {
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
            new_segment(disk, dir, seq, last_lsn + 1, segment_size)?
        }
    };
    Ok(Recovered {
        last_lsn,
        tail,
        segments: on_disk,
        marks,
    })
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
