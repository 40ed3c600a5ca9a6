//! One connection's socket side: frames read in, answers gathered and written in one write, and
//! why a connection ended.

use std::io;

use bytes::{Bytes, BytesMut};
use mqcore::{Error, ErrorCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::frame::{self, FrameError};
use crate::proto::{self, Response};

/// Why a connection ended.
#[derive(Debug)]
#[allow(dead_code)] // fields are read by Debug, in the close log
pub(super) enum End {
    /// The peer closed it between frames.
    Closed,
    /// Shutdown.
    Shutdown,
    /// Nothing arrived for the idle timeout.
    Idle,
    /// A bad frame, a bad request or a failed handshake (already answered).
    Refused(Error),
    /// The socket failed.
    Io(io::Error),
}

/// The reading half of a connection: a TCP socket's, or a TLS session's.
pub(super) type Rd = Box<dyn AsyncRead + Send + Unpin>;
/// The writing half of a connection.
pub(super) type Wr = Box<dyn AsyncWrite + Send + Unpin>;

/// One connection's socket side.
pub(super) struct Wire {
    pub(super) rd: Rd,
    pub(super) wr: Wr,
    pub(super) buf: BytesMut,
    /// Answers not yet written.
    pub(super) out: Vec<u8>,
    pub(super) max: usize,
}

impl Wire {
    /// Reads until one whole frame is in; `None` at a clean end of stream.
    pub(super) async fn next_frame(&mut self) -> Result<Option<Bytes>, End> {
        loop {
            if let Some(f) = self.decode()? {
                return Ok(Some(f));
            }
            if self.read().await? == 0 {
                return Ok(None);
            }
        }
    }

    pub(super) fn decode(&mut self) -> Result<Option<Bytes>, End> {
        frame::decode(&mut self.buf, self.max).map_err(|e| End::Refused(frame_error(e)))
    }

    /// Reads more bytes; 0 at end of stream (an error if it cuts a frame).
    pub(super) async fn read(&mut self) -> Result<usize, End> {
        frame::make_read_room(&mut self.buf);
        let n = self.rd.read_buf(&mut self.buf).await.map_err(End::Io)?;
        if n == 0 && !self.buf.is_empty() {
            return Err(End::Refused(frame_error(FrameError::Truncated {
                got: self.buf.len(),
            })));
        }
        Ok(n)
    }

    pub(super) fn push(&mut self, id: u64, r: &Response) {
        proto::frame_into(id, r, &mut self.out);
    }

    pub(super) async fn flush(&mut self) -> Result<(), End> {
        if !self.out.is_empty() {
            self.wr.write_all(&self.out).await.map_err(End::Io)?;
            self.out.clear();
        }
        Ok(())
    }
}

fn frame_error(e: FrameError) -> Error {
    Error::new(ErrorCode::InvalidParameter, e.to_string())
}
