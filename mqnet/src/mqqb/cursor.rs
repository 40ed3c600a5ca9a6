//! Checked reading and aligned writing of MS-MQQB's little-endian fields: every read is bounded
//! by the bytes actually present, so a length field from the network can only make a read fail,
//! never make the decoder allocate or index beyond the packet.

use uuid::Uuid;

/// Why bytes are not a well-formed MS-MQQB packet. The session that sent them is closed
/// (MS-MQQB 3.1.5.1); the text says which field and where, for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed MS-MQQB packet: {what} (at byte {at})")]
pub struct Malformed {
    /// What is wrong.
    pub what: String,
    /// The offset, from the packet's first byte, where it was found.
    pub at: usize,
}

/// A read position over one packet.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// An error at the current position.
    pub(crate) fn bad(&self, what: impl Into<String>) -> Malformed {
        Malformed {
            what: what.into(),
            at: self.pos,
        }
    }

    /// The next `n` bytes; `field` names them in the error when fewer are left.
    pub(crate) fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], Malformed> {
        if n > self.remaining() {
            return Err(self.bad(format!(
                "{field} needs {n} bytes, {} are left in the packet",
                self.remaining()
            )));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Up to `n` of the next bytes, without moving.
    pub(crate) fn peek(&self, n: usize) -> &'a [u8] {
        &self.bytes[self.pos..self.pos + n.min(self.remaining())]
    }

    pub(crate) fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], Malformed> {
        let s = self.take(N, field)?;
        Ok(s.try_into().expect("take returned N bytes"))
    }

    pub(crate) fn u8(&mut self, field: &str) -> Result<u8, Malformed> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &str) -> Result<u16, Malformed> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn u32(&mut self, field: &str) -> Result<u32, Malformed> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn u64(&mut self, field: &str) -> Result<u64, Malformed> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn guid(&mut self, field: &str) -> Result<Uuid, Malformed> {
        Ok(Uuid::from_bytes_le(self.array(field)?))
    }

    /// Skips to the next multiple of `n` counted from `base` (the start of the enclosing header).
    pub(crate) fn align(&mut self, base: usize, n: usize, field: &str) -> Result<(), Malformed> {
        let pad = (n - (self.pos - base) % n) % n;
        self.take(pad, field).map(|_| ())
    }

    /// `len` bytes of NUL-terminated UTF-16LE (the NUL included in `len`), without the NUL.
    pub(crate) fn wide(&mut self, len: usize, field: &str) -> Result<String, Malformed> {
        let at = self.pos;
        let bytes = self.take(len, field)?;
        let bad = |what: String| Malformed { what, at };
        if len < 2 || !len.is_multiple_of(2) {
            return Err(bad(format!(
                "{field} is {len} bytes, not a NUL-terminated UTF-16 string"
            )));
        }
        let units = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]));
        if bytes[len - 2..] != [0, 0] {
            return Err(bad(format!("{field} does not end with a NUL character")));
        }
        let body = &bytes[..len - 2];
        if body.chunks_exact(2).all(|c| c[1] == 0 && c[0].is_ascii()) {
            // Most names and labels are ASCII: one byte of each unit, no UTF-16 decoding.
            let ascii: Vec<u8> = body.iter().step_by(2).copied().collect();
            return String::from_utf8(ascii).map_err(|_| bad(format!("{field} is not ASCII")));
        }
        // Decoded straight into the string: one allocation.
        let mut text = String::with_capacity(len / 2);
        for c in char::decode_utf16(units.take(len / 2 - 1)) {
            text.push(c.map_err(|_| bad(format!("{field} is not valid UTF-16")))?);
        }
        Ok(text)
    }
}

/// Appends fields to a packet being built.
pub(crate) struct Writer<'a> {
    pub(crate) out: &'a mut Vec<u8>,
}

impl Writer<'_> {
    pub(crate) fn pos(&self) -> usize {
        self.out.len()
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.out.push(v);
    }

    pub(crate) fn u16(&mut self, v: u16) {
        self.bytes(&v.to_le_bytes());
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }

    pub(crate) fn guid(&mut self, g: &Uuid) {
        self.bytes(&g.to_bytes_le());
    }

    /// Zero bytes up to the next multiple of `n` counted from `base`.
    pub(crate) fn align(&mut self, base: usize, n: usize) {
        let pad = (n - (self.pos() - base) % n) % n;
        self.out.resize(self.out.len() + pad, 0);
    }

    /// `text` as NUL-terminated UTF-16LE; returns its length in bytes, NUL included.
    pub(crate) fn wide(&mut self, text: &str) -> usize {
        let start = self.pos();
        for u in text.encode_utf16().chain(std::iter::once(0)) {
            self.u16(u);
        }
        self.pos() - start
    }
}

/// The length in bytes of `text` as NUL-terminated UTF-16.
pub(crate) fn wide_len(text: &str) -> usize {
    (text.encode_utf16().count() + 1) * 2
}
