//! The log's bytes on disk: segment file names, the segment header, the record frame and its
//! crc32, and the format version.
//!
//! Invariant: a record decodes as valid only if its length is in range and its crc covers its
//! length and every byte after the crc; a zero length with a zero crc is the end of a segment's
//! records, never a record.

use std::io;
use std::path::{Path, PathBuf};

use super::Lsn;
use crate::storage::disk::DiskFile;

/// The segment header's first bytes.
pub(super) const MAGIC: &[u8; 8] = b"MQEMUWAL";
/// The on-disk format version written in every segment header. Version 3 checks its header
/// with a crc (bytes 12..16); version 2 reuses dead segments, so old records may follow a
/// segment's own; version 1 segments (never reused) read the same. Versions 1 and 2 have zeros
/// where version 3 has the crc.
pub(super) const VERSION: u32 = 3;
/// Bytes of a segment header.
pub(super) const HEADER_LEN: u64 = 32;
/// `len` and `crc` before each record's checked bytes.
pub(super) const FRAME_LEN: usize = 8;
/// `kind`, `lsn`, `epoch`: the fixed part of the checked bytes.
pub(super) const FIXED_LEN: usize = 1 + 8 + 8;
/// The largest record accepted: a 4 MB message plus generous room for the rest of a transaction.
pub const MAX_RECORD: usize = 64 * 1024 * 1024;

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

/// A record as it lies in a segment image: what recovery and the reader hand on, so that a
/// record is not copied out of the image unless its reader keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Its sequence number.
    pub lsn: Lsn,
    /// The epoch of the process that wrote it.
    pub epoch: u64,
    /// The caller's record kind.
    pub kind: u8,
    /// The caller's bytes.
    pub data: &'a [u8],
}

impl RecordRef<'_> {
    /// A copy that owns its bytes.
    pub fn to_record(&self) -> Record {
        Record {
            lsn: self.lsn,
            epoch: self.epoch,
            kind: self.kind,
            data: self.data.to_vec(),
        }
    }
}

impl Record {
    /// The record, borrowed.
    pub fn as_ref(&self) -> RecordRef<'_> {
        RecordRef {
            lsn: self.lsn,
            epoch: self.epoch,
            kind: self.kind,
            data: &self.data,
        }
    }
}

/// The file name of segment `seq`.
pub(super) fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016x}.wal"))
}

pub(super) fn segment_seq(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let hex = name.strip_suffix(".wal")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Appends the encoding of one record to `out`.
pub(super) fn encode(out: &mut Vec<u8>, kind: u8, lsn: Lsn, epoch: u64, data: &[u8]) {
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
pub(super) fn read_full(file: &dyn DiskFile, buf: &mut [u8], offset: u64) -> io::Result<usize> {
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
pub(super) enum Decoded<'a> {
    /// A valid record, and the offset just after it.
    Record(RecordRef<'a>, u64),
    /// Zeros: the preallocated rest of the segment.
    End,
    /// Something that is not a valid record.
    Bad(String),
}

/// Decodes the record at `offset` of `bytes` (a whole segment image).
pub(super) fn decode_at(bytes: &[u8], offset: u64) -> Decoded<'_> {
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
    let record = RecordRef {
        lsn,
        epoch,
        kind,
        data: &body[FIXED_LEN..],
    };
    Decoded::Record(record, offset + (FRAME_LEN + len) as u64)
}

/// A segment's header.
pub(super) fn segment_header(seq: u64, first_lsn: Lsn) -> Vec<u8> {
    let mut header = Vec::with_capacity(HEADER_LEN as usize);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&VERSION.to_le_bytes());
    header.extend_from_slice(&[0; 4]);
    header.extend_from_slice(&seq.to_le_bytes());
    header.extend_from_slice(&first_lsn.to_le_bytes());
    let crc = header_crc(&header);
    header[12..16].copy_from_slice(&crc.to_le_bytes());
    header
}

/// The crc of a segment header: of its bytes with the crc's own (12..16) as zeros.
fn header_crc(header: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&header[..12]);
    h.update(&[0; 4]);
    h.update(&header[16..HEADER_LEN as usize]);
    h.finalize()
}

/// Whether a segment header's check holds: its crc (version 3), or zeros where the crc would be
/// (versions 1 and 2). Without it one flipped bit in a header's first LSN would make recovery
/// take the segment's own records for a reused segment's old ones and skip them.
pub(super) fn header_checks(header: &[u8]) -> bool {
    let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    let stored = u32::from_le_bytes(header[12..16].try_into().expect("4 bytes"));
    match version {
        1 | 2 => stored == 0,
        _ => stored == header_crc(header),
    }
}

pub(super) fn first_lsn_of(batch: &[u8]) -> Lsn {
    u64::from_le_bytes(
        batch[FRAME_LEN + 1..FRAME_LEN + 9]
            .try_into()
            .expect("8 bytes"),
    )
}

pub(super) fn count_records(batch: &[u8]) -> u64 {
    let mut n = 0;
    let mut at = 0;
    while at + FRAME_LEN <= batch.len() {
        let len = u32::from_le_bytes(batch[at..at + 4].try_into().expect("4 bytes")) as usize;
        at += FRAME_LEN + len;
        n += 1;
    }
    n
}
