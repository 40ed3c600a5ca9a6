//! AMQP's framing on a byte stream: the protocol header that opens a connection, frames read
//! with their size checked before anything is buffered for them, and frames written. The frame
//! and method codecs are amq-protocol's, generated from the specification. Public because
//! `mqemu bench`'s AMQP client frames its traffic with the same reader and writer.
//!
//! **Invariant:** a frame's declared size is checked against the negotiated `frame_max` from its
//! 7-byte header, before its payload is awaited, so a peer cannot make the server hold more than
//! one frame of its choosing.

use amq_protocol::frame::{gen_frame, parse_frame, AMQPContentHeader, AMQPFrame, WriteContext};
use amq_protocol::protocol::basic::AMQPProperties;
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The protocol header of AMQP 0-9-1.
pub const HEADER_0_9_1: [u8; 8] = *b"AMQP\x00\x00\x09\x01";
/// The protocol header of AMQP 0-8, which Mono's bundled RabbitMQ client sends.
pub const HEADER_0_8: [u8; 8] = *b"AMQP\x01\x01\x08\x00";

/// Which protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// AMQP 0-9-1.
    V091,
    /// AMQP 0-8: the same frames, `access.request`, and version fields 8.0.
    V08,
}

/// Why reading a frame stopped.
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed the connection between frames.
    Closed,
    /// The socket failed.
    Io(std::io::Error),
    /// A frame larger than `frame_max` (AMQP's FRAME_ERROR, 501).
    TooLarge(u32),
    /// Bytes that are not a frame (FRAME_ERROR, 501) or a method the codec does not know
    /// (SYNTAX_ERROR, 502 is AMQP's code for both kinds; 501 is used for framing).
    Malformed(String),
}

/// Reads the 8-byte protocol header: `Ok(dialect)`, or `Err(true)` for another AMQP version
/// (answered with ours, then closed, as the specification says) and `Err(false)` for bytes that
/// are not AMQP at all.
pub async fn read_header<R: AsyncRead + Unpin>(rd: &mut R) -> Result<Dialect, bool> {
    let mut h = [0u8; 8];
    if rd.read_exact(&mut h).await.is_err() {
        return Err(false);
    }
    match h {
        HEADER_0_9_1 => Ok(Dialect::V091),
        HEADER_0_8 => Ok(Dialect::V08),
        _ if &h[..4] == b"AMQP" => Err(true),
        _ => Err(false),
    }
}

/// Frames read from one connection.
pub struct FrameReader {
    buf: BytesMut,
    /// The largest frame accepted, header and end octet included.
    pub frame_max: u32,
    /// The protocol the peer speaks; 0-8's methods are read as their 0-9-1 equivalents.
    dialect: Dialect,
}

impl FrameReader {
    pub fn new(frame_max: u32, dialect: Dialect) -> FrameReader {
        FrameReader {
            buf: BytesMut::with_capacity(64 * 1024),
            frame_max,
            dialect,
        }
    }

    /// Whether a whole frame is already buffered (more work can be gathered before answering).
    pub fn has_frame(&self) -> bool {
        self.buf.len() >= 7 && self.buf.len() >= 8 + declared(&self.buf) as usize
    }

    /// The next frame.
    pub async fn next<R: AsyncRead + Unpin>(&mut self, rd: &mut R) -> Result<AMQPFrame, ReadError> {
        loop {
            if let Some(f) = self.decode()? {
                return Ok(f);
            }
            self.buf.reserve(64 * 1024);
            match rd.read_buf(&mut self.buf).await {
                Ok(0) if self.buf.is_empty() => return Err(ReadError::Closed),
                Ok(0) => {
                    return Err(ReadError::Io(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the connection ended inside a frame",
                    )))
                }
                Ok(_) => {}
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }

    /// A whole frame from the buffer, if one is there; its size is checked as soon as its
    /// header is.
    fn decode(&mut self) -> Result<Option<AMQPFrame>, ReadError> {
        if self.buf.len() < 7 {
            return Ok(None);
        }
        let size = declared(&self.buf);
        if u64::from(size) + 8 > u64::from(self.frame_max) {
            return Err(ReadError::TooLarge(size));
        }
        let total = 8 + size as usize;
        if self.buf.len() < total {
            return Ok(None);
        }
        let widened;
        let bytes = match self.dialect {
            Dialect::V091 => &self.buf[..total],
            Dialect::V08 => match from_0_8(&mut self.buf[..total]) {
                Some(w) => {
                    widened = w;
                    &widened[..]
                }
                None => &self.buf[..total],
            },
        };
        let frame = match parse_frame(bytes) {
            Ok(([], f)) => f,
            Ok(_) => return Err(ReadError::Malformed("a frame longer than its size".into())),
            Err(e) => return Err(ReadError::Malformed(format!("{e}"))),
        };
        self.buf.advance(total);
        Ok(Some(frame))
    }
}

/// The payload size a frame header (type, channel, size) declares.
fn declared(buf: &[u8]) -> u32 {
    u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]])
}

/// Appends `frame`'s bytes to `out`, written in the peer's dialect.
pub fn encode(frame: &AMQPFrame, dialect: Dialect, out: &mut Vec<u8>) {
    let start = out.len();
    let w = std::mem::take(out);
    match gen_frame(frame)(WriteContext::from(w)) {
        Ok(ctx) => *out = ctx.write,
        Err(e) => unreachable!("a frame serializes into a growable buffer: {e:?}"),
    }
    if dialect == Dialect::V08 {
        to_0_8(out, start);
    }
}

/// Appends a message's content: its header frame, then its body in frames that fit
/// `frame_max`.
pub fn encode_content(
    channel: u16,
    properties: AMQPProperties,
    body: &[u8],
    frame_max: u32,
    dialect: Dialect,
    out: &mut Vec<u8>,
) {
    let header = AMQPContentHeader {
        class_id: 60,
        body_size: body.len() as u64,
        properties,
    };
    encode(&AMQPFrame::Header(channel, header), dialect, out);
    let chunk = (frame_max as usize).saturating_sub(8).max(1);
    for part in body.chunks(chunk) {
        encode(&AMQPFrame::Body(channel, part.to_vec()), dialect, out);
    }
}

// Where 0-8 and 0-9-1 differ in the methods a server exchanges (the specifications' XML, as
// RabbitMQ publishes both): connection.close and close-ok are methods 60 and 61 in 0-8 (50 and
// 51 there are connection.redirect and the unused 51; 0-9-1 moved close down), 0-8's
// channel.open-ok has no fields, and 0-8's basic.consume ends before 0-9-1's arguments table.
// Everything else a client of this server sends or receives is laid out alike.

/// A method frame's class and method ids, if `frame` is a whole method frame.
fn method_ids(frame: &[u8]) -> Option<(u16, u16)> {
    (frame.len() >= 12 && frame[0] == 1).then(|| {
        (
            u16::from_be_bytes([frame[7], frame[8]]),
            u16::from_be_bytes([frame[9], frame[10]]),
        )
    })
}

/// Rewrites a 0-8 frame from a client as its 0-9-1 form: in place where only ids differ, or as
/// a new frame when 0-9-1 has a field 0-8 lacks.
fn from_0_8(frame: &mut [u8]) -> Option<Vec<u8>> {
    match method_ids(frame)? {
        (10, m @ (60 | 61)) => {
            frame[9..11].copy_from_slice(&(m - 10).to_be_bytes());
            None
        }
        (60, 20) => {
            // basic.consume: an empty arguments table before the frame-end octet.
            let end = frame.len() - 1;
            let mut w = Vec::with_capacity(frame.len() + 4);
            w.extend_from_slice(&frame[..end]);
            w.extend_from_slice(&[0, 0, 0, 0]);
            w.push(frame[end]);
            let size = declared(&w) + 4;
            w[3..7].copy_from_slice(&size.to_be_bytes());
            Some(w)
        }
        _ => None,
    }
}

/// Rewrites the 0-9-1 frame at `out[start..]` in 0-8's form.
fn to_0_8(out: &mut Vec<u8>, start: usize) {
    match method_ids(&out[start..]) {
        Some((10, m @ (50 | 51))) => {
            out[start + 9..start + 11].copy_from_slice(&(m + 10).to_be_bytes());
        }
        Some((20, 11)) => {
            // channel.open-ok: drop 0-9-1's reserved long string.
            out.drain(start + 11..start + 15);
            out[start + 3..start + 7].copy_from_slice(&4u32.to_be_bytes());
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::protocol::{basic, AMQPClass};

    fn publish_frame() -> Vec<u8> {
        let mut out = Vec::new();
        encode(
            &AMQPFrame::Method(
                1,
                AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                    exchange: "".into(),
                    routing_key: "orders".into(),
                    mandatory: false,
                    immediate: false,
                })),
            ),
            Dialect::V091,
            &mut out,
        );
        out
    }

    #[tokio::test]
    async fn frames_round_trip_and_arrive_whole_from_pieces() {
        let bytes = publish_frame();
        let mut two = bytes.clone();
        two.extend_from_slice(&bytes);
        // Byte by byte: the reader waits for each frame to be whole.
        let (mut client, mut server) = tokio::io::duplex(1);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            client.write_all(&two).await.unwrap();
        });
        let mut r = FrameReader::new(131_072, Dialect::V091);
        for _ in 0..2 {
            let f = r.next(&mut server).await.unwrap();
            assert!(
                matches!(f, AMQPFrame::Method(1, AMQPClass::Basic(_))),
                "{f:?}"
            );
        }
        writer.await.unwrap();
        assert!(matches!(r.next(&mut server).await, Err(ReadError::Closed)));
    }

    #[tokio::test]
    async fn a_frame_over_frame_max_is_refused_from_its_header() {
        // A header declaring 1 GiB and nothing else: refused without waiting for the payload.
        let mut r = FrameReader::new(4096, Dialect::V091);
        let header = [1u8, 0, 1, 0x40, 0, 0, 0];
        let mut rd: &[u8] = &header;
        assert!(matches!(
            r.next(&mut rd).await,
            Err(ReadError::TooLarge(0x4000_0000))
        ));
    }

    #[tokio::test]
    async fn garbage_is_malformed() {
        let mut bad = publish_frame();
        let n = bad.len();
        bad[n - 1] = 0; // not the frame-end octet
        let mut r = FrameReader::new(4096, Dialect::V091);
        let mut rd: &[u8] = &bad;
        assert!(matches!(
            r.next(&mut rd).await,
            Err(ReadError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn headers_name_the_dialect() {
        let mut rd: &[u8] = &HEADER_0_8;
        assert_eq!(read_header(&mut rd).await, Ok(Dialect::V08));
        let mut rd: &[u8] = &HEADER_0_9_1;
        assert_eq!(read_header(&mut rd).await, Ok(Dialect::V091));
        let mut rd: &[u8] = b"AMQP\x01\x01\x00\x0a";
        assert_eq!(read_header(&mut rd).await, Err(true));
        let mut rd: &[u8] = b"GET / HTTP/1.1\r\n";
        assert_eq!(read_header(&mut rd).await, Err(false));
    }

    fn frame(f: AMQPFrame, dialect: Dialect) -> Vec<u8> {
        let mut out = Vec::new();
        encode(&f, dialect, &mut out);
        out
    }

    #[tokio::test]
    async fn the_0_8_dialect_is_translated_both_ways() {
        use amq_protocol::protocol::{channel, connection};
        let close = || {
            AMQPFrame::Method(
                0,
                AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
                    reply_code: 200,
                    reply_text: "bye".into(),
                    class_id: 0,
                    method_id: 0,
                })),
            )
        };
        // Written to a 0-8 peer, connection.close is method 60 (0-9-1 says 50)...
        let v091 = frame(close(), Dialect::V091);
        let v08 = frame(close(), Dialect::V08);
        assert_eq!(&v091[9..11], &[0, 50]);
        assert_eq!(&v08[9..11], &[0, 60]);
        assert_eq!(v08.len(), v091.len());
        // ...and read back from one as connection.close.
        let mut r = FrameReader::new(4096, Dialect::V08);
        let mut rd: &[u8] = &v08;
        let got = r.next(&mut rd).await.unwrap();
        assert!(
            matches!(
                got,
                AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Close(_)))
            ),
            "{got:?}"
        );

        // channel.open-ok has no reserved long string in 0-8.
        let open_ok = frame(
            AMQPFrame::Method(
                3,
                AMQPClass::Channel(channel::AMQPMethod::OpenOk(channel::OpenOk {})),
            ),
            Dialect::V08,
        );
        assert_eq!(open_ok, [1, 0, 3, 0, 0, 0, 4, 0, 20, 0, 11, 0xCE]);

        // basic.consume has no arguments table in 0-8: one without it reads as a consume.
        let consume = frame(
            AMQPFrame::Method(
                1,
                AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
                    queue: "orders".into(),
                    consumer_tag: "c1".into(),
                    no_local: false,
                    no_ack: true,
                    exclusive: false,
                    nowait: false,
                    arguments: Default::default(),
                })),
            ),
            Dialect::V091,
        );
        let n = consume.len();
        let mut old = consume[..n - 5].to_vec();
        old.push(0xCE);
        let size = (old.len() - 8) as u32;
        old[3..7].copy_from_slice(&size.to_be_bytes());
        let mut r = FrameReader::new(4096, Dialect::V08);
        let mut rd: &[u8] = &old;
        match r.next(&mut rd).await.unwrap() {
            AMQPFrame::Method(1, AMQPClass::Basic(basic::AMQPMethod::Consume(c))) => {
                assert_eq!(c.queue.as_str(), "orders");
                assert_eq!(c.consumer_tag.as_str(), "c1");
                assert!(c.no_ack);
            }
            other => panic!("{other:?}"),
        }
    }
}
