//! Frames of the native protocol: a length, a crc32 and a payload, checked before anything reads
//! the payload.
//!
//! ```text
//! +----------------+----------------+------------------------+
//! | length: u32 LE | crc32: u32 LE  | payload (length bytes) |
//! +----------------+----------------+------------------------+
//! ```
//!
//! The length is checked against the receiver's limit as soon as its four bytes are in, so a peer
//! cannot make the receiver allocate more than the limit. The crc32 (IEEE, as `crc32fast`) covers
//! the payload only: the length is covered by the limit check and, when it is wrong, by the crc
//! of the bytes it then frames. Decoding is a pure function over a buffer, so it can be fuzzed.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Bytes before the payload.
pub const HEADER_LEN: usize = 8;

/// Default limit on a payload: a 4 MB message body plus room for its properties and names.
pub const DEFAULT_MAX_FRAME: usize = 4 * 1024 * 1024 + 256 * 1024;

/// Why a byte stream is not a valid sequence of frames. Each one ends the connection: after a bad
/// frame there is no telling where the next one starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The length is over the limit (checked before any allocation).
    TooLong {
        /// The length the header claims.
        len: usize,
        /// The receiver's limit.
        max: usize,
    },
    /// The payload's crc32 does not match the header.
    BadCrc {
        /// The crc32 in the header.
        expected: u32,
        /// The crc32 of the payload received.
        actual: u32,
    },
    /// The stream ended inside a frame.
    Truncated {
        /// Bytes of the frame received.
        got: usize,
    },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLong { len, max } => {
                write!(f, "a frame of {len} bytes is over the limit of {max}")
            }
            FrameError::BadCrc { expected, actual } => write!(
                f,
                "frame crc32 mismatch: header says {expected:#010x}, payload has {actual:#010x}"
            ),
            FrameError::Truncated { got } => {
                write!(f, "the connection ended {got} bytes into a frame")
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// Takes one whole frame off the front of `buf`: `Ok(Some(payload))` when one is there,
/// `Ok(None)` when more bytes are needed (nothing is consumed), an error when the bytes cannot be
/// a frame. `buf` is reserved for the rest of a frame whose header is in, never past `max`.
pub fn decode(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > max {
        return Err(FrameError::TooLong { len, max });
    }
    let expected = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if buf.len() < HEADER_LEN + len {
        buf.reserve(HEADER_LEN + len - buf.len());
        return Ok(None);
    }
    let actual = crc32fast::hash(&buf[HEADER_LEN..HEADER_LEN + len]);
    if actual != expected {
        return Err(FrameError::BadCrc { expected, actual });
    }
    buf.advance(HEADER_LEN);
    Ok(Some(buf.split_to(len).freeze()))
}

/// Room a reader keeps free in its buffer before each read.
const READ_ROOM: usize = 64 * 1024;

/// Makes room in `buf` for a read of many frames. [`decode`] splits each frame's bytes off, with
/// their share of the allocation, and reserves only the rest of a frame it waits for: a reader
/// that read into what is left would, once the first allocation is used up, get one frame per
/// read. `reserve` takes back the front of the allocation once the frames split off are
/// dropped, so this rarely allocates.
pub fn make_read_room(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_ROOM / 4 {
        buf.reserve(READ_ROOM);
    }
}

/// Appends a frame holding `payload` to `out`.
pub fn encode(payload: &[u8], out: &mut BytesMut) {
    out.reserve(HEADER_LEN + payload.len());
    out.put_u32_le(payload.len() as u32);
    out.put_u32_le(crc32fast::hash(payload));
    out.put_slice(payload);
}

/// Writes a frame header in front of a payload already serialized after `HEADER_LEN` reserved
/// bytes of `frame` (saves a copy of large messages).
pub fn seal(frame: &mut [u8]) {
    let len = (frame.len() - HEADER_LEN) as u32;
    let crc = crc32fast::hash(&frame[HEADER_LEN..]);
    frame[..4].copy_from_slice(&len.to_le_bytes());
    frame[4..8].copy_from_slice(&crc.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payload: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        encode(payload, &mut b);
        b
    }

    #[test]
    fn round_trip_and_partial_input() {
        let whole = framed(b"hello");
        for cut in 0..whole.len() {
            let mut b = BytesMut::from(&whole[..cut]);
            assert_eq!(decode(&mut b, 64), Ok(None), "cut at {cut}");
            assert_eq!(b.len(), cut, "nothing consumed");
        }
        let mut b = whole.clone();
        b.extend_from_slice(&framed(b""));
        assert_eq!(decode(&mut b, 64).unwrap().unwrap(), &b"hello"[..]);
        assert_eq!(decode(&mut b, 64).unwrap().unwrap(), &b""[..]);
        assert!(b.is_empty());
    }

    #[test]
    fn limit_is_checked_from_the_header_alone() {
        let mut b = BytesMut::new();
        b.put_u32_le(65);
        b.put_u32_le(0);
        assert_eq!(
            decode(&mut b, 64),
            Err(FrameError::TooLong { len: 65, max: 64 })
        );
        assert!(
            b.capacity() < 65,
            "no room was reserved for the claimed length"
        );
    }

    #[test]
    fn corruption_is_detected() {
        let mut b = framed(b"hello");
        b[9] ^= 1;
        assert!(matches!(decode(&mut b, 64), Err(FrameError::BadCrc { .. })));
    }

    #[test]
    fn seal_matches_encode() {
        let mut f = vec![0u8; HEADER_LEN];
        f.extend_from_slice(b"payload");
        seal(&mut f);
        assert_eq!(&f[..], &framed(b"payload")[..]);
    }
}
