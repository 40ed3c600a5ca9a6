//! One MS-MQQB session, accepted: the acceptor's states of MS-MQQB 3.1.1.1.1.2 in order
//! (waiting for EstablishConnection, waiting for ConnectionParameters, open), packets read
//! whole with their size checked from the BaseHeader before anything is buffered for them, and
//! whatever arrived together stored and acknowledged together in one write.
//!
//! **Invariant:** a packet that does not parse, or comes in the wrong state, closes this session
//! and nothing else (MS-MQQB 3.1.5.1); nothing of it is stored.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use mqcore::QueueManager;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;

use super::inbound;
use super::Counts;
use super::MqqbConfig;
use crate::mqqb::packet::{ConnectionParameters, EstablishConnection, BASE_LEN, EC_LEN};
use crate::mqqb::{decode, encode, frame_len, Malformed, Packet};

/// What a session needs of its server.
pub(super) struct Context {
    pub(super) qm: QueueManager,
    pub(super) config: Arc<MqqbConfig>,
    /// The GUID this queue manager answers with.
    pub(super) guid: Uuid,
    pub(super) peer: SocketAddr,
}

/// Why reading a packet stopped.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The peer closed the connection between packets.
    Closed,
    Io(std::io::Error),
    Malformed(Malformed),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Closed => f.write_str("the peer closed the connection"),
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::Malformed(m) => write!(f, "{m}"),
        }
    }
}

/// Packets read from one connection.
#[derive(Default)]
pub(crate) struct PacketReader {
    buf: BytesMut,
}

/// How much room a read takes at once: a packet that declares 4 MiB gets it only as its bytes
/// arrive.
const READ_CHUNK: usize = 64 * 1024;

impl PacketReader {
    /// The length of the packet at the front, once its BaseHeader is here.
    fn needed(&self) -> Result<Option<usize>, Malformed> {
        let Some(head) = self.buf.get(..BASE_LEN) else {
            return Ok(None);
        };
        frame_len(head.try_into().expect("16 bytes")).map(Some)
    }

    /// Whether a whole packet is already buffered.
    pub(crate) fn has_packet(&self) -> bool {
        matches!(self.needed(), Ok(Some(n)) if self.buf.len() >= n)
    }

    /// The next whole packet.
    pub(crate) async fn next<R: AsyncRead + Unpin>(
        &mut self,
        rd: &mut R,
    ) -> Result<Bytes, ReadError> {
        loop {
            let needed = self.needed().map_err(ReadError::Malformed)?;
            if let Some(n) = needed {
                if self.buf.len() >= n {
                    return Ok(self.buf.split_to(n).freeze());
                }
            }
            // Room for what is on its way (a read takes every packet that arrived together,
            // so they are stored and acknowledged together), never more than a chunk at once.
            self.buf.reserve(READ_CHUNK);
            match rd.read_buf(&mut self.buf).await {
                Ok(0) if self.buf.is_empty() => return Err(ReadError::Closed),
                Ok(0) => {
                    return Err(ReadError::Io(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the connection ended inside a packet",
                    )))
                }
                Ok(_) => {}
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }
}

/// Runs a session until the peer leaves (`Ok`) or it must be closed (`Err` with the reason).
pub(super) async fn serve(stream: TcpStream, ctx: &Context) -> Result<(), String> {
    let (mut rd, mut wr) = stream.into_split();
    let mut reader = PacketReader::default();
    let mut out = Vec::with_capacity(4096);
    let handshake = handshake(&mut reader, &mut rd, &mut wr, ctx);
    let params = match tokio::time::timeout(ctx.config.init_timeout, handshake).await {
        Err(_) => {
            return Err(format!(
                "no ConnectionParameters within {:?} of connecting",
                ctx.config.init_timeout
            ))
        }
        Ok(r) => r?,
    };
    tracing::debug!(peer = %ctx.peer, window = params.window_size, "MS-MQQB session open");
    let mut counts = Counts::default();
    loop {
        out.clear();
        let first = match tokio::time::timeout(ctx.config.idle_timeout, reader.next(&mut rd)).await
        {
            Err(_) => return Ok(()),
            Ok(Err(ReadError::Closed)) => return Ok(()),
            Ok(Err(e)) => return Err(e.to_string()),
            Ok(Ok(p)) => p,
        };
        let mut users = Vec::new();
        let mut next = Some(first);
        while let Some(bytes) = next {
            match decode(&bytes).map_err(|e| e.to_string())? {
                Packet::User(m) => users.push(*m),
                // The sender acknowledging what this side sent (OrderAcks, FinalAcks): they
                // are not resent, so there is nothing to release.
                Packet::SessionAck { .. } => {}
                other => {
                    return Err(format!(
                        "{} on an open session",
                        match other {
                            Packet::EstablishConnection { .. } => "EstablishConnection",
                            _ => "ConnectionParameters",
                        }
                    ))
                }
            }
            next = match reader.has_packet() {
                true => Some(reader.next(&mut rd).await.map_err(|e| e.to_string())?),
                false => None,
            };
        }
        if users.is_empty() {
            continue;
        }
        let (qm, guid, window) = (ctx.qm.clone(), ctx.guid, ctx.config.window);
        let peer = ctx.peer.ip();
        crate::steps::engine(|| {
            inbound::take(&qm, guid, peer, window, &mut counts, users, &mut out)
        })
        .map_err(|e| format!("storing messages failed: {e}"))?;
        wr.write_all(&out).await.map_err(|e| e.to_string())?;
    }
}

/// EstablishConnection and ConnectionParameters, each answered as it comes; an error says why
/// the session ends (after the refusal, if it was refused).
async fn handshake<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    reader: &mut PacketReader,
    rd: &mut R,
    wr: &mut W,
    ctx: &Context,
) -> Result<ConnectionParameters, String> {
    let ec = reader.next(rd).await.map_err(|e| e.to_string())?;
    let request = match decode(&ec).map_err(|e| e.to_string())? {
        Packet::EstablishConnection { header, .. } => header,
        _ => return Err("the first packet is not EstablishConnection".into()),
    };
    // A sender that used a direct format name sends the nil GUID (MS-MQQB 2.2.3.1).
    let ours = request.server == ctx.guid || request.server.is_nil();
    let mut out = Vec::with_capacity(EC_LEN);
    encode(
        &Packet::establish_connection(
            EstablishConnection {
                client: request.client,
                server: ctx.guid,
                timestamp: request.timestamp,
                // RE, and SE echoed (MS-MQQB 3.1.5.3.1).
                operating_system: 0x0010 | (request.operating_system & 0x0100),
                reserved: 0,
            },
            !ours,
        ),
        &mut out,
    );
    wr.write_all(&out).await.map_err(|e| e.to_string())?;
    if !ours {
        return Err(format!(
            "refused: the sender asked for queue manager {{{}}}, this is {{{}}}",
            request.server, ctx.guid
        ));
    }
    let cp = reader.next(rd).await.map_err(|e| e.to_string())?;
    let params = match decode(&cp).map_err(|e| e.to_string())? {
        Packet::ConnectionParameters { params, .. } => params,
        _ => return Err("expected ConnectionParameters".into()),
    };
    out.clear();
    encode(
        &Packet::connection_parameters(
            ConnectionParameters {
                recoverable_ack_timeout: params.recoverable_ack_timeout,
                ack_timeout: params.ack_timeout,
                reserved: 0,
                window_size: ctx.config.window,
            },
            false,
        ),
        &mut out,
    );
    wr.write_all(&out).await.map_err(|e| e.to_string())?;
    Ok(params)
}
