//! Reading durable records back by LSN ([`WalReader`]), from a sparse index of record positions
//! kept by recovery and by the writer.
//!
//! Invariant: a read asks only for durable records (it waits for them first), and stops at the
//! end of a segment's own records, so it never returns a record of a batch being written nor an
//! old record of a reused segment.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use super::format::{
    decode_at, read_full, segment_path, Decoded, Record, FRAME_LEN, HEADER_LEN, MAX_RECORD,
};
use super::group_commit::{lock, Shared};
use super::{Lsn, Wal, WalError};
use crate::storage::disk::Disk;

/// The position of one record.
#[derive(Debug, Clone, Copy)]
pub(super) struct Mark {
    pub(super) lsn: Lsn,
    pub(super) seq: u64,
    pub(super) offset: u64,
}

/// Bytes of log between two [`Mark`]s: a read starts at most this far before its record, and the
/// marks of a 10 GB log take about 2.5 MB.
pub(super) const MARK_EVERY: u64 = 64 * 1024;

impl Wal {
    /// A reader of this log's durable records, for whoever needs message bodies back.
    pub fn reader(&self) -> WalReader {
        WalReader {
            shared: self.shared.clone(),
            disk: self.disk.clone(),
            dir: self.dir.clone(),
        }
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
                        if r.lsn >= from && !visit(r.to_record()) {
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
