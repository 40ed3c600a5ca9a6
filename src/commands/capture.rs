//! `mqemu capture decode`: MS-MQQB bytes (one direction of a TCP 1801 session, or UDP 3527
//! pings) as text a person can read, because Wireshark has no MSMQ dissector. The decoding is
//! `mqnet::mqqb`'s, the same the server runs.

use std::fmt::Write as _;
use std::io::Read;
use std::path::PathBuf;

use clap::Subcommand;
use mqemu::{Error, ErrorCode};
use mqnet::mqqb::packet::{
    Ping, SessionHeader, BASE_LEN, INFINITE, PING_LEN, PING_REFUSE, SIGNATURE, VERSION,
};
use mqnet::mqqb::user::{user_flags, MqfElement, QueueFormat, UserMessage};
use mqnet::mqqb::{decode, frame_len, Packet};

#[derive(Subcommand, Debug)]
pub enum CaptureCommand {
    /// Decode MS-MQQB packets from FILE ('-': standard input): raw bytes of one direction of a
    /// TCP 1801 session (Wireshark: Follow TCP Stream, one direction, Show as Raw, Save), or the
    /// same as hex text (whitespace ignored, as MS-MQQB 4.1 prints its examples). UDP pings
    /// (24 bytes each) are recognized too.
    Decode {
        /// The capture.
        file: PathBuf,
        /// Print at most this many bytes of each message body (as hex and text).
        #[arg(long, default_value_t = 64)]
        body: usize,
    },
}

impl CaptureCommand {
    pub fn run(self) -> mqemu::Result<()> {
        match self {
            CaptureCommand::Decode { file, body } => {
                let bytes = read_input(&file)?;
                let (text, bad) = describe_stream(&bytes, body);
                print!("{text}");
                match bad {
                    None => Ok(()),
                    Some(why) => Err(Error::new(ErrorCode::InvalidParameter, why)),
                }
            }
        }
    }
}

fn read_input(file: &PathBuf) -> mqemu::Result<Vec<u8>> {
    let mut raw = Vec::new();
    let read = if file.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut raw).map(|_| ())
    } else {
        std::fs::File::open(file).and_then(|mut f| f.read_to_end(&mut raw).map(|_| ()))
    };
    read.map_err(|e| {
        Error::new(
            ErrorCode::InvalidParameter,
            format!("cannot read {}: {e}", file.display()),
        )
    })?;
    Ok(from_hex(&raw).unwrap_or(raw))
}

/// The bytes `text` spells in hex, if it is nothing but hex digits and whitespace.
fn from_hex(text: &[u8]) -> Option<Vec<u8>> {
    let digits: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if digits.is_empty()
        || !digits.len().is_multiple_of(2)
        || !digits.iter().all(u8::is_ascii_hexdigit)
    {
        return None;
    }
    let nibble = |b: u8| (b as char).to_digit(16).expect("checked hex digit") as u8;
    Some(
        digits
            .chunks(2)
            .map(|p| nibble(p[0]) << 4 | nibble(p[1]))
            .collect(),
    )
}

/// Every packet in `bytes`, described; and why decoding stopped early, if it did.
pub fn describe_stream(bytes: &[u8], body: usize) -> (String, Option<String>) {
    let mut out = String::new();
    let mut at = 0;
    let mut n = 0;
    while at < bytes.len() {
        n += 1;
        let rest = &bytes[at..];
        let is_packet = rest.len() >= 8 && rest[0] == VERSION && rest[4..8] == SIGNATURE;
        if !is_packet {
            match (rest.len() >= PING_LEN).then(|| Ping::decode(&rest[..PING_LEN])) {
                Some(Some(ping)) => {
                    describe_ping(&mut out, n, at, &ping);
                    at += PING_LEN;
                    continue;
                }
                _ => {
                    return (
                        out,
                        Some(format!(
                            "byte {at}: not an MS-MQQB packet (no version 0x10 and LIOR signature) nor a ping"
                        )),
                    )
                }
            }
        }
        let Some(head) = rest.get(..BASE_LEN) else {
            return (
                out,
                Some(format!(
                    "byte {at}: {} bytes left, a BaseHeader is 16",
                    rest.len()
                )),
            );
        };
        let len = match frame_len(head.try_into().expect("16 bytes")) {
            Ok(len) => len,
            Err(e) => return (out, Some(format!("byte {at}: {e}"))),
        };
        let Some(packet) = rest.get(..len) else {
            return (
                out,
                Some(format!(
                    "byte {at}: the packet says {len} bytes, the capture has {} more (cut short?)",
                    rest.len()
                )),
            );
        };
        match decode(packet) {
            Ok(p) => describe_packet(&mut out, n, at, len, &p, body),
            Err(e) => {
                return (
                    out,
                    Some(format!(
                        "packet {n} at byte {at}: {}, at byte {}",
                        e.what,
                        at + e.at
                    )),
                )
            }
        }
        at += len;
    }
    (out, None)
}

fn describe_ping(out: &mut String, n: usize, at: usize, p: &Ping) {
    let _ = writeln!(
        out,
        "#{n} @{at} Ping (UDP 3527): cookie {}, queue manager {{{}}}, flags 0x{:04X}{}",
        p.cookie,
        p.qm,
        p.flags,
        if p.flags & PING_REFUSE != 0 {
            " (refuses sessions)"
        } else {
            ""
        }
    );
}

fn describe_packet(out: &mut String, n: usize, at: usize, len: usize, p: &Packet, body: usize) {
    match p {
        Packet::EstablishConnection {
            internal, header, ..
        } => {
            let _ = writeln!(
                out,
                "#{n} @{at} EstablishConnection, {len} bytes{}\n  client QM {{{}}}, server QM {{{}}}{}\n  timestamp {} ms, operating system 0x{:04X} (ping sent first: {}, server-class: {})",
                if internal.refused() { ", REFUSED" } else { "" },
                header.client,
                header.server,
                if header.server.is_nil() { " (direct format name)" } else { "" },
                header.timestamp,
                header.operating_system,
                header.operating_system & 0x100 == 0,
                header.operating_system & 0x200 != 0,
            );
        }
        Packet::ConnectionParameters {
            internal, params, ..
        } => {
            let _ = writeln!(
                out,
                "#{n} @{at} ConnectionParameters, {len} bytes{}\n  window {}, recoverable ack timeout {} ms, ack timeout {} ms",
                if internal.refused() { ", REFUSED" } else { "" },
                params.window_size,
                params.recoverable_ack_timeout,
                params.ack_timeout
            );
        }
        Packet::SessionAck { session: s, .. } => {
            let _ = writeln!(out, "#{n} @{at} SessionAck, {len} bytes");
            describe_session(out, s);
        }
        Packet::User(m) => describe_user(out, n, at, len, m, body),
    }
}

fn describe_session(out: &mut String, s: &SessionHeader) {
    let _ = writeln!(
        out,
        "  session: received {} (recoverable stored from #{}: flags 0x{:08X}), sent {} ({} recoverable), window {}",
        s.ack_sequence,
        s.recoverable_ack_sequence,
        s.recoverable_ack_flags,
        s.user_sequence,
        s.recoverable_sequence,
        s.window_size
    );
}

fn queue(q: &QueueFormat) -> String {
    match q {
        QueueFormat::None => "none".into(),
        QueueFormat::SameAsAdmin => "the administration queue".into(),
        QueueFormat::PrivateOnSource(id) => format!("private queue {id} on the source computer"),
        QueueFormat::PrivateOnDestination(id) => {
            format!("private queue {id} on the destination computer")
        }
        QueueFormat::PrivateOnAdminHost(id) => {
            format!("private queue {id} on the administration queue's computer")
        }
        QueueFormat::Public(g) => format!("PUBLIC={g}"),
        QueueFormat::Private { qm, id } => format!("PRIVATE={qm}\\{id:08x}"),
        QueueFormat::Direct(name) => format!("DIRECT={name}"),
    }
}

fn mqf(e: &MqfElement) -> String {
    match e {
        MqfElement::Public(g) => format!("PUBLIC={g}"),
        MqfElement::Private { qm, id } => format!("PRIVATE={qm}\\{id:08x}"),
        MqfElement::Direct(name) => format!("DIRECT={name}"),
        MqfElement::DistributionList(g) => format!("DL={g}"),
    }
}

fn seconds(s: u32) -> String {
    match s {
        INFINITE => "infinite".into(),
        s => format!("{s} s"),
    }
}

/// MSMQ's name for a message class.
fn class_name(c: u16) -> String {
    let name = match c {
        0x0000 => "NORMAL",
        0x0001 => "REPORT",
        0x0002 => "ACK_REACH_QUEUE",
        0x00FF => "ORDER_ACK",
        0x4000 => "ACK_RECEIVE",
        0x8000 => "NACK_BAD_DST_Q",
        0x8001 => "NACK_DELETED",
        0x8002 => "NACK_REACH_QUEUE_TIMEOUT",
        0x8003 => "NACK_Q_EXCEED_QUOTA",
        0x8004 => "NACK_ACCESS_DENIED",
        0x8005 => "NACK_HOP_COUNT_EXCEEDED",
        0x8006 => "NACK_BAD_SIGNATURE",
        0x8007 => "NACK_BAD_ENCRYPTION",
        0x8009 => "NACK_NOT_TRANSACTIONAL_Q",
        0x800A => "NACK_NOT_TRANSACTIONAL_MSG",
        0x800B => "NACK_UNSUPPORTED_CRYPTO_PROVIDER",
        0xC000 => "NACK_Q_DELETED",
        0xC001 => "NACK_Q_PURGED",
        0xC002 => "NACK_RECEIVE_TIMEOUT",
        0xC004 => "NACK_RECEIVE_REJECTED",
        _ => return format!("0x{c:04X}"),
    };
    format!("0x{c:04X} MQMSG_CLASS_{name}")
}

fn describe_user(out: &mut String, n: usize, at: usize, len: usize, m: &UserMessage, body: usize) {
    let u = &m.user;
    let delivery = match (&m.transaction, u.flags & user_flags::RECOVERABLE != 0) {
        (Some(_), _) => "transactional",
        (None, true) => "recoverable",
        (None, false) => "express",
    };
    let _ = writeln!(
        out,
        "#{n} @{at} UserMessage, {len} bytes, {delivery}, priority {}, time to reach queue {}",
        m.base.priority(),
        seconds(m.base.time_to_reach_queue)
    );
    let _ = writeln!(
        out,
        "  id {{{}}}\\{}, sent at {} (Unix seconds), time to be received {}",
        u.source_qm,
        u.message_id,
        u.sent_time,
        seconds(u.time_to_be_received)
    );
    let _ = writeln!(out, "  destination {}", queue(&u.destination));
    if !u.destination_qm.is_nil() {
        let _ = writeln!(out, "  destination QM {{{}}}", u.destination_qm);
    }
    if u.admin != QueueFormat::None {
        let _ = writeln!(out, "  administration queue {}", queue(&u.admin));
    }
    if u.response != QueueFormat::None {
        let _ = writeln!(out, "  response queue {}", queue(&u.response));
    }
    if let Some(t) = &m.transaction {
        let _ = writeln!(
            out,
            "  transaction: sequence {:#018x} number {} after {}, flags 0x{:08X}{}{}",
            t.sequence_id,
            t.sequence_number,
            t.previous_number,
            t.flags,
            if t.flags & 4 != 0 { ", first" } else { "" },
            if t.flags & 8 != 0 { ", last" } else { "" },
        );
    }
    if let Some(s) = &m.security {
        let _ = writeln!(
            out,
            "  security (not checked): flags 0x{:04X}, sender id {} bytes, key {}, signature {}, certificate {}, provider {}",
            s.flags,
            s.sender_id.len(),
            s.encryption_key.len(),
            s.signature.len(),
            s.sender_cert.len(),
            s.provider_info.len()
        );
    }
    let p = &m.properties;
    let acks: Vec<&str> = [(1, "PA"), (2, "PR"), (4, "NA"), (8, "NR")]
        .iter()
        .filter(|(bit, _)| p.ack_flags & bit != 0)
        .map(|(_, name)| *name)
        .collect();
    let _ = writeln!(
        out,
        "  class {}, label {:?}, body type {}, application tag {}, acknowledgements {}",
        class_name(p.class),
        p.label,
        p.body_type,
        p.app_tag,
        if acks.is_empty() {
            "none".into()
        } else {
            acks.join(" ")
        }
    );
    if p.correlation_id != [0; 20] {
        let _ = writeln!(out, "  correlation id {}", hex(&p.correlation_id));
    }
    if !p.extension.is_empty() {
        let _ = writeln!(out, "  extension {} bytes", p.extension.len());
    }
    let shown = &p.body[..p.body.len().min(body)];
    let _ = writeln!(
        out,
        "  body {} bytes{}: {} |{}|",
        p.body.len(),
        if shown.len() < p.body.len() {
            " (start)"
        } else {
            ""
        },
        hex(shown),
        shown
            .iter()
            .map(|&b| if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            })
            .collect::<String>()
    );
    if let Some(d) = &m.debug {
        let _ = writeln!(out, "  trace queue {:?}", d.queue);
    }
    if let Some(s) = &m.soap {
        let _ = writeln!(out, "  SOAP header {:?}, body {:?}", s.header, s.body);
    }
    if let Some(q) = &m.multi_queue {
        let list = |l: &[MqfElement]| l.iter().map(mqf).collect::<Vec<_>>().join(";");
        let _ = writeln!(
            out,
            "  sent to several queues: {} (administration: {}; response: {})",
            list(&q.destinations),
            list(&q.admin),
            list(&q.response)
        );
    }
    if let Some(s) = &m.session {
        describe_session(out, s);
    }
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}
