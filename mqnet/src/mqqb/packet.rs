//! MS-MQQB's packets on TCP 1801 and its UDP ping: the BaseHeader that frames every packet,
//! the internal packets that open and acknowledge a session (EstablishConnection,
//! ConnectionParameters, SessionAck), and the choice between those and a UserMessage
//! ([`super::user`]). Pure functions over bytes.

use uuid::Uuid;

use super::cursor::{Malformed, Reader, Writer};
use super::user::UserMessage;

/// BaseHeader.VersionNumber.
pub const VERSION: u8 = 0x10;
/// BaseHeader.Signature as it appears on the wire (0x524F494C read little-endian).
pub const SIGNATURE: [u8; 4] = *b"LIOR";
/// The largest PacketSize a BaseHeader may declare (MS-MQMQ 2.2.19.1).
pub const MAX_PACKET: u32 = 0x0040_0000;
/// Bytes in a BaseHeader.
pub const BASE_LEN: usize = 16;
/// TimeToReachQueue of every packet that is not a UserMessage: infinite.
pub const INFINITE: u32 = 0xFFFF_FFFF;

/// BaseHeader.Flags bits.
pub mod base_flags {
    /// PR: the message priority, 0-7 (bits 0-2).
    pub const PRIORITY: u16 = 0x0007;
    /// IN: an internal packet (session set-up and acknowledgements).
    pub const INTERNAL: u16 = 0x0008;
    /// SH: a SessionHeader follows.
    pub const SESSION: u16 = 0x0010;
    /// DH: a DebugHeader is present.
    pub const DEBUG: u16 = 0x0020;
    /// TR: message tracing.
    pub const TRACE: u16 = 0x0100;
}

/// The header that starts every packet on a session (MS-MQMQ 2.2.19.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaseHeader {
    /// Any value; kept so a decoded packet encodes back to the same bytes.
    pub reserved: u8,
    /// PR, IN, SH, DH, TR ([`base_flags`]).
    pub flags: u16,
    /// The packet's size in bytes, a trailing SessionHeader of a UserMessage excluded. Encoding
    /// computes it; decoding keeps what the packet said.
    pub packet_size: u32,
    /// Seconds the message has to reach its queue (0xFFFFFFFF: infinite).
    pub time_to_reach_queue: u32,
}

impl BaseHeader {
    /// The header of an internal packet, as Windows sends them (priority 3).
    pub fn internal(extra_flags: u16) -> BaseHeader {
        BaseHeader {
            reserved: 0,
            flags: base_flags::INTERNAL | 3 | extra_flags,
            packet_size: 0,
            time_to_reach_queue: INFINITE,
        }
    }

    pub fn priority(&self) -> u8 {
        (self.flags & base_flags::PRIORITY) as u8
    }

    pub fn is_internal(&self) -> bool {
        self.flags & base_flags::INTERNAL != 0
    }

    pub fn has_session(&self) -> bool {
        self.flags & base_flags::SESSION != 0
    }

    pub fn has_debug(&self) -> bool {
        self.flags & base_flags::DEBUG != 0
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<BaseHeader, Malformed> {
        let version = r.u8("BaseHeader.VersionNumber")?;
        if version != VERSION {
            return Err(r.bad(format!("version 0x{version:02X}, not 0x10")));
        }
        let reserved = r.u8("BaseHeader.Reserved")?;
        let flags = r.u16("BaseHeader.Flags")?;
        if r.array::<4>("BaseHeader.Signature")? != SIGNATURE {
            return Err(r.bad("the signature is not LIOR (0x524F494C)"));
        }
        let packet_size = r.u32("BaseHeader.PacketSize")?;
        let time_to_reach_queue = r.u32("BaseHeader.TimeToReachQueue")?;
        Ok(BaseHeader {
            reserved,
            flags,
            packet_size,
            time_to_reach_queue,
        })
    }

    /// Writes the header with PacketSize 0; [`patch_size`] fills it in.
    pub(crate) fn write(&self, w: &mut Writer<'_>) {
        w.u8(VERSION);
        w.u8(self.reserved);
        w.u16(self.flags);
        w.bytes(&SIGNATURE);
        w.u32(0);
        w.u32(self.time_to_reach_queue);
    }
}

/// Sets the PacketSize of the packet that starts at `out[start]` to `size`.
pub(crate) fn patch_size(out: &mut [u8], start: usize, size: usize) {
    out[start + 8..start + 12].copy_from_slice(&(size as u32).to_le_bytes());
}

/// How many bytes the packet whose first 16 bytes are `head` occupies on the stream: its
/// PacketSize, plus 16 when a UserMessage carries a SessionHeader after it (MS-MQMQ 2.2.19.1
/// leaves it out of PacketSize; a stand-alone SessionAck counts it, as the spec's example
/// shows). Checked before anything more is read: version, signature, and a size between the
/// smallest packet and [`MAX_PACKET`].
pub fn frame_len(head: &[u8; BASE_LEN]) -> Result<usize, Malformed> {
    let base = BaseHeader::read(&mut Reader::new(head))?;
    let size = base.packet_size;
    if !(BASE_LEN as u32 + 4..=MAX_PACKET).contains(&size) {
        return Err(Malformed {
            what: format!("PacketSize {size} is outside 20..=0x00400000"),
            at: 8,
        });
    }
    let trailer = if base.has_session() && !base.is_internal() {
        SESSION_LEN
    } else {
        0
    };
    Ok(size as usize + trailer)
}

/// InternalHeader.Flags.PT: which internal packet (MS-MQQB 2.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum InternalType {
    SessionAck = 1,
    EstablishConnection = 2,
    ConnectionParameters = 3,
}

/// InternalHeader.Flags.CS: the connection is refused.
pub const REFUSED: u16 = 0x0010;

/// The InternalHeader of an internal packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InternalHeader {
    pub reserved: u16,
    /// PT in bits 0-3, CS ([`REFUSED`]) in bit 4.
    pub flags: u16,
}

impl InternalHeader {
    pub fn new(kind: InternalType, refused: bool) -> InternalHeader {
        InternalHeader {
            reserved: 0,
            flags: kind as u16 | if refused { REFUSED } else { 0 },
        }
    }

    pub fn kind(&self) -> Option<InternalType> {
        match self.flags & 0xF {
            1 => Some(InternalType::SessionAck),
            2 => Some(InternalType::EstablishConnection),
            3 => Some(InternalType::ConnectionParameters),
            _ => None,
        }
    }

    pub fn refused(&self) -> bool {
        self.flags & REFUSED != 0
    }
}

/// EstablishConnectionHeader (MS-MQQB 2.2.3.1): 552 bytes, the last 512 padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EstablishConnection {
    /// The initiator's queue manager.
    pub client: Uuid,
    /// The acceptor's queue manager, or nil when the initiator used a direct format name.
    pub server: Uuid,
    /// Milliseconds since the initiator's system started; echoed.
    pub timestamp: u32,
    /// RE (0x10) in the low byte, then SE (bit 8), OS (bit 9), QS (bit 10).
    pub operating_system: u16,
    pub reserved: u16,
}

/// Bytes of padding at the end of an EstablishConnectionHeader, each 0x5A in a response.
pub const EC_PADDING: usize = 512;
/// Bytes of an EstablishConnection packet.
pub const EC_LEN: usize = BASE_LEN + 4 + 40 + EC_PADDING;

/// ConnectionParametersHeader (MS-MQQB 2.2.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionParameters {
    /// Milliseconds to wait before acknowledging a recoverable message (500..=120000).
    pub recoverable_ack_timeout: u32,
    /// Milliseconds to wait for a SessionAck before closing (20000..=120000).
    pub ack_timeout: u32,
    pub reserved: u16,
    /// Unacknowledged packets allowed in flight.
    pub window_size: u16,
}

/// Bytes of a ConnectionParameters packet.
pub const CP_LEN: usize = BASE_LEN + 4 + 12;

/// SessionHeader (MS-MQMQ 2.2.20.4): a session acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionHeader {
    /// UserMessage packets received on the session.
    pub ack_sequence: u16,
    /// The lowest recoverable sequence number `recoverable_ack_flags` starts at (0: none).
    pub recoverable_ack_sequence: u16,
    /// Bit k: recoverable message `recoverable_ack_sequence + k` is stored.
    pub recoverable_ack_flags: u32,
    /// UserMessage packets sent on the session.
    pub user_sequence: u16,
    /// Recoverable UserMessage packets sent on the session.
    pub recoverable_sequence: u16,
    pub window_size: u16,
    pub reserved: u16,
}

/// Bytes of a SessionHeader.
pub const SESSION_LEN: usize = 16;
/// Bytes of a stand-alone SessionAck packet.
pub const SESSION_ACK_LEN: usize = BASE_LEN + 4 + SESSION_LEN;

impl SessionHeader {
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<SessionHeader, Malformed> {
        Ok(SessionHeader {
            ack_sequence: r.u16("SessionHeader.AckSequenceNumber")?,
            recoverable_ack_sequence: r.u16("SessionHeader.RecoverableMsgAckSeqNumber")?,
            recoverable_ack_flags: r.u32("SessionHeader.RecoverableMsgAckFlags")?,
            user_sequence: r.u16("SessionHeader.UserMsgSequenceNumber")?,
            recoverable_sequence: r.u16("SessionHeader.RecoverableMsgSeqNumber")?,
            window_size: r.u16("SessionHeader.WindowSize")?,
            reserved: r.u16("SessionHeader.Reserved")?,
        })
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) {
        w.u16(self.ack_sequence);
        w.u16(self.recoverable_ack_sequence);
        w.u32(self.recoverable_ack_flags);
        w.u16(self.user_sequence);
        w.u16(self.recoverable_sequence);
        w.u16(self.window_size);
        w.u16(self.reserved);
    }
}

/// One packet of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    EstablishConnection {
        base: BaseHeader,
        internal: InternalHeader,
        header: EstablishConnection,
    },
    ConnectionParameters {
        base: BaseHeader,
        internal: InternalHeader,
        params: ConnectionParameters,
    },
    SessionAck {
        base: BaseHeader,
        internal: InternalHeader,
        session: SessionHeader,
    },
    User(Box<UserMessage>),
}

impl Packet {
    /// An EstablishConnection packet, as Windows frames internal packets (priority 3).
    pub fn establish_connection(header: EstablishConnection, refused: bool) -> Packet {
        Packet::EstablishConnection {
            base: BaseHeader::internal(0),
            internal: InternalHeader::new(InternalType::EstablishConnection, refused),
            header,
        }
    }

    /// A ConnectionParameters packet.
    pub fn connection_parameters(params: ConnectionParameters, refused: bool) -> Packet {
        Packet::ConnectionParameters {
            base: BaseHeader::internal(0),
            internal: InternalHeader::new(InternalType::ConnectionParameters, refused),
            params,
        }
    }

    /// A stand-alone SessionAck packet.
    pub fn session_ack(session: SessionHeader) -> Packet {
        Packet::SessionAck {
            base: BaseHeader::internal(base_flags::SESSION),
            internal: InternalHeader::new(InternalType::SessionAck, false),
            session,
        }
    }
}

/// Decodes one whole packet, as [`frame_len`] delimited it. Every field is checked against the
/// bytes present; an internal packet of the wrong size, an unknown packet type, or headers
/// that do not fit are [`Malformed`].
pub fn decode(packet: &[u8]) -> Result<Packet, Malformed> {
    let mut r = Reader::new(packet);
    let base = BaseHeader::read(&mut r)?;
    let declared = base.packet_size as usize;
    let expected = if base.has_session() && !base.is_internal() {
        declared + SESSION_LEN
    } else {
        declared
    };
    if expected != packet.len() {
        return Err(Malformed {
            what: format!(
                "PacketSize {declared} (with its SessionHeader: {expected} bytes) but the packet is {} bytes",
                packet.len()
            ),
            at: 8,
        });
    }
    if !base.is_internal() {
        return UserMessage::read(base, &mut r).map(|m| Packet::User(Box::new(m)));
    }
    let internal = InternalHeader {
        reserved: r.u16("InternalHeader.Reserved")?,
        flags: r.u16("InternalHeader.Flags")?,
    };
    let Some(kind) = internal.kind() else {
        return Err(r.bad(format!(
            "internal packet type {} is not 1, 2 or 3",
            internal.flags & 0xF
        )));
    };
    let need = match kind {
        InternalType::SessionAck => SESSION_ACK_LEN,
        InternalType::EstablishConnection => EC_LEN,
        InternalType::ConnectionParameters => CP_LEN,
    };
    if packet.len() != need {
        return Err(r.bad(format!(
            "a {kind:?} packet is {need} bytes, this one {}",
            packet.len()
        )));
    }
    if kind == InternalType::SessionAck && !base.has_session() {
        return Err(r.bad("a SessionAck without BaseHeader.Flags.SH"));
    }
    Ok(match kind {
        InternalType::SessionAck => Packet::SessionAck {
            base,
            internal,
            session: SessionHeader::read(&mut r)?,
        },
        InternalType::EstablishConnection => {
            let header = EstablishConnection {
                client: r.guid("EstablishConnection.ClientGuid")?,
                server: r.guid("EstablishConnection.ServerGuid")?,
                timestamp: r.u32("EstablishConnection.TimeStamp")?,
                operating_system: r.u16("EstablishConnection.OperatingSystem")?,
                reserved: r.u16("EstablishConnection.Reserved")?,
            };
            // The padding is uninitialised in a request and 0x5A in a response: not checked.
            r.take(EC_PADDING, "EstablishConnection.Padding")?;
            Packet::EstablishConnection {
                base,
                internal,
                header,
            }
        }
        InternalType::ConnectionParameters => Packet::ConnectionParameters {
            base,
            internal,
            params: ConnectionParameters {
                recoverable_ack_timeout: r.u32("ConnectionParameters.RecoverableAckTimeout")?,
                ack_timeout: r.u32("ConnectionParameters.AckTimeout")?,
                reserved: r.u16("ConnectionParameters.Reserved")?,
                window_size: r.u16("ConnectionParameters.WindowSize")?,
            },
        },
    })
}

/// Appends `packet`'s bytes to `out`, PacketSize computed (EstablishConnection padding 0x5A).
pub fn encode(packet: &Packet, out: &mut Vec<u8>) {
    let start = out.len();
    let mut w = Writer { out };
    match packet {
        Packet::User(m) => return m.write(&mut w),
        Packet::EstablishConnection {
            base,
            internal,
            header,
        } => {
            write_internal(&mut w, base, internal);
            w.guid(&header.client);
            w.guid(&header.server);
            w.u32(header.timestamp);
            w.u16(header.operating_system);
            w.u16(header.reserved);
            w.bytes(&[0x5A; EC_PADDING]);
        }
        Packet::ConnectionParameters {
            base,
            internal,
            params,
        } => {
            write_internal(&mut w, base, internal);
            w.u32(params.recoverable_ack_timeout);
            w.u32(params.ack_timeout);
            w.u16(params.reserved);
            w.u16(params.window_size);
        }
        Packet::SessionAck {
            base,
            internal,
            session,
        } => {
            write_internal(&mut w, base, internal);
            session.write(&mut w);
        }
    }
    let size = out.len() - start;
    patch_size(out, start, size);
}

fn write_internal(w: &mut Writer<'_>, base: &BaseHeader, internal: &InternalHeader) {
    base.write(w);
    w.u16(internal.reserved);
    w.u16(internal.flags);
}

/// Ping.Signature.
pub const PING_SIGNATURE: u16 = 0x5548;
/// Bytes of a ping packet.
pub const PING_LEN: usize = 24;
/// Ping.Flags.RC: the sender is not a server-class system (echoed in the response).
pub const PING_RC: u16 = 0x0001;
/// Ping.Flags.RF: the acceptor would refuse a session now.
pub const PING_REFUSE: u16 = 0x0002;

/// The UDP ping on port 3527 (MS-MQQB 2.2.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ping {
    /// RC and RF; the other bits may be anything and are kept.
    pub flags: u16,
    /// Correlates a response with its request.
    pub cookie: u32,
    /// The queue manager that made the packet.
    pub qm: Uuid,
}

impl Ping {
    /// A datagram that is not a ping (wrong size or signature) is ignored: `None`.
    pub fn decode(datagram: &[u8]) -> Option<Ping> {
        if datagram.len() != PING_LEN {
            return None;
        }
        let mut r = Reader::new(datagram);
        let flags = r.u16("Ping.Flags").ok()?;
        if r.u16("Ping.Signature").ok()? != PING_SIGNATURE {
            return None;
        }
        Some(Ping {
            flags,
            cookie: r.u32("Ping.Cookie").ok()?,
            qm: r.guid("Ping.QMGuid").ok()?,
        })
    }

    pub fn encode(&self) -> [u8; PING_LEN] {
        let mut out = Vec::with_capacity(PING_LEN);
        let mut w = Writer { out: &mut out };
        w.u16(self.flags);
        w.u16(PING_SIGNATURE);
        w.u32(self.cookie);
        w.guid(&self.qm);
        out.try_into().expect("a ping is 24 bytes")
    }

    /// The answer of queue manager `qm` to this request: RC echoed, RF as `refuse` says.
    pub fn answer(&self, qm: Uuid, refuse: bool) -> Ping {
        Ping {
            flags: (self.flags & PING_RC) | if refuse { PING_REFUSE } else { 0 },
            cookie: self.cookie,
            qm,
        }
    }
}
