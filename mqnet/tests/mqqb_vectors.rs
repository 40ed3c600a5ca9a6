//! The MS-MQQB codec against the specification's own bytes: the 8 hex dumps of MS-MQQB 4.1
//! decode to the field values the spec's text gives (where the text and the hex disagree, the
//! hex wins, as ../shared/reference/specs/README.md section 3 settles it), and encoding those
//! values gives back the same bytes.

use mqnet::mqqb::packet::{self, base_flags, InternalType, Ping};
use mqnet::mqqb::user::{user_flags, QueueFormat};
use mqnet::mqqb::{decode, encode, frame_len, Packet};
use uuid::Uuid;

/// The vectors, by id.
fn vector(id: &str) -> Vec<u8> {
    let text = include_str!("data/mqqb_4_1.txt");
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{id} ")))
        .unwrap_or_else(|| panic!("no vector {id}"));
    let hex = line.rsplit(' ').next().unwrap();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn guid(s: &str) -> Uuid {
    Uuid::parse_str(s).unwrap()
}

/// The initiator's queue manager in frames 1, 3 and 7 (MS-DTYP layout, README section 3.1).
const CLIENT: &str = "557358D1-9150-9595-4997-B6E611EA26C6";
/// The acceptor's in frames 2 and 3.
const SERVER: &str = "43CD8907-394C-8F11-4445-9078909EA0FC";

fn encoded(p: &Packet) -> Vec<u8> {
    let mut out = Vec::new();
    encode(p, &mut out);
    out
}

/// Decodes a whole packet the way a reader off the stream would: its length from the first 16
/// bytes, then the packet.
fn framed(bytes: &[u8]) -> Packet {
    let head: [u8; 16] = bytes[..16].try_into().unwrap();
    assert_eq!(frame_len(&head).unwrap(), bytes.len());
    decode(bytes).unwrap()
}

#[test]
fn ping_request_and_response() {
    let request = vector("mqqb-4.1.1");
    let ping = Ping::decode(&request).unwrap();
    assert_eq!(ping.flags, 0x7D01);
    assert_eq!(ping.flags & packet::PING_RC, packet::PING_RC);
    assert_eq!(ping.cookie, 4);
    assert_eq!(ping.qm, guid(CLIENT));
    assert_eq!(ping.encode().as_slice(), request.as_slice());

    let response = vector("mqqb-4.1.2");
    let pong = Ping::decode(&response).unwrap();
    assert_eq!(
        (pong.flags, pong.cookie, pong.qm),
        (0xB295, 4, guid(SERVER))
    );
    assert_eq!(pong.encode().as_slice(), response.as_slice());
    // Our answer: RC echoed, RF clear (accepting), the cookie echoed, our GUID.
    let answer = ping.answer(guid(SERVER), false);
    assert_eq!((answer.flags, answer.cookie), (packet::PING_RC, 4));
    let refusal = ping.answer(guid(SERVER), true);
    assert_eq!(refusal.flags, packet::PING_RC | packet::PING_REFUSE);
    // Not a ping: wrong signature or size.
    let mut wrong = request.clone();
    wrong[2] = 0;
    assert_eq!(Ping::decode(&wrong), None);
    assert_eq!(Ping::decode(&request[..23]), None);
}

#[test]
fn establish_connection_request_and_response() {
    let bytes = vector("mqqb-4.1.3");
    let p = framed(&bytes);
    let Packet::EstablishConnection {
        base,
        internal,
        header,
    } = &p
    else {
        panic!("{p:?}")
    };
    assert_eq!(base.reserved, 0xC0);
    assert_eq!(base.flags, 0x000B);
    assert_eq!(base.priority(), 3);
    assert!(base.is_internal() && !base.has_session() && !base.has_debug());
    assert_eq!(base.packet_size, 572);
    assert_eq!(base.time_to_reach_queue, packet::INFINITE);
    assert_eq!(internal.kind(), Some(InternalType::EstablishConnection));
    assert!(!internal.refused());
    assert_eq!(header.client, guid(CLIENT));
    assert_eq!(header.server, guid(SERVER));
    assert_eq!(header.timestamp, 501_140_046);
    // RE 0x10 with SE and OS set (README section 3.8: the decode text misreads this field).
    assert_eq!(header.operating_system, 0x0310);
    assert_eq!(header.reserved, 0);
    assert_eq!(encoded(&p), bytes);

    // The response carries GUIDs of its own (README section 3.2): good for parsing only.
    let bytes = vector("mqqb-4.1.4");
    let p = framed(&bytes);
    let Packet::EstablishConnection { base, header, .. } = &p else {
        panic!("{p:?}")
    };
    assert_eq!(base.reserved, 0x5A);
    assert_eq!(header.client, guid("1F742305-BE5E-4177-BC77-C4DD7719E474"));
    assert_eq!(header.server, guid("3C3A6AEB-F567-4143-87D3-85CF4D68CEB4"));
    assert_eq!(header.timestamp, 501_140_046);
    assert_eq!(encoded(&p), bytes);
}

#[test]
fn connection_parameters_request_and_response() {
    // Frame 6 is byte-identical to frame 5: WindowSize 64, not the decode text's 32 (README 3.7).
    for id in ["mqqb-4.1.5", "mqqb-4.1.6"] {
        let bytes = vector(id);
        let p = framed(&bytes);
        let Packet::ConnectionParameters {
            base,
            internal,
            params,
        } = &p
        else {
            panic!("{p:?}")
        };
        assert_eq!(base.packet_size, 32);
        assert_eq!(internal.kind(), Some(InternalType::ConnectionParameters));
        assert_eq!(params.recoverable_ack_timeout, 1496);
        assert_eq!(params.ack_timeout, 120_000);
        assert_eq!(params.window_size, 64);
        assert_eq!(encoded(&p), bytes);
    }
}

#[test]
fn session_acknowledgement() {
    let bytes = vector("mqqb-4.1.8");
    let p = framed(&bytes);
    let Packet::SessionAck {
        base,
        internal,
        session,
    } = &p
    else {
        panic!("{p:?}")
    };
    // A stand-alone SessionAck counts its SessionHeader in PacketSize (README section 3.11).
    assert_eq!(
        (base.flags, base.reserved, base.packet_size),
        (0x001B, 0xCD, 36)
    );
    assert!(base.has_session());
    assert_eq!(internal.kind(), Some(InternalType::SessionAck));
    assert_eq!(session.ack_sequence, 1);
    assert_eq!(session.recoverable_ack_sequence, 0);
    assert_eq!(session.recoverable_ack_flags, 0);
    assert_eq!(session.user_sequence, 0);
    assert_eq!(session.recoverable_sequence, 0);
    assert_eq!(session.window_size, 64);
    assert_eq!(encoded(&p), bytes);
}

/// Frame 7 as Windows sent it: the spec prints 1650 of its 2224 bytes, cutting the body of 1000
/// UTF-16 `a`s short; the rest of the body and 2 bytes of padding complete it.
fn user_message_7() -> Vec<u8> {
    let mut bytes = vector("mqqb-4.1.7");
    assert_eq!(bytes.len(), 1650);
    while bytes.len() < 2222 {
        bytes.extend_from_slice(&[b'a', 0]);
    }
    bytes.extend_from_slice(&[0, 0]);
    bytes
}

#[test]
fn the_truncated_user_message_is_refused_and_the_whole_one_decodes() {
    let cut = vector("mqqb-4.1.7");
    let head: [u8; 16] = cut[..16].try_into().unwrap();
    assert_eq!(frame_len(&head).unwrap(), 2224);
    let err = decode(&cut).unwrap_err();
    assert!(err.what.contains("PacketSize 2224"), "{err}");

    let bytes = user_message_7();
    let p = framed(&bytes);
    let Packet::User(m) = &p else { panic!("{p:?}") };
    assert_eq!((m.base.flags, m.base.priority()), (0x0003, 3));
    assert!(!m.base.is_internal());
    assert_eq!(m.base.time_to_reach_queue, 345_600);
    let u = &m.user;
    assert_eq!(u.source_qm, guid(CLIENT));
    assert_eq!(u.destination_qm, Uuid::nil());
    assert_eq!(u.time_to_be_received, 0xFFFF_FFFF);
    // The hex has the signature's bytes here, not the decode text's 1141966310 (README 3.3).
    assert_eq!(u.sent_time, 0x524F_494C);
    assert_eq!(u.message_id, 2286);
    assert_eq!(u.flags & user_flags::RECOVERABLE, 0, "express");
    assert_eq!(u.destination, QueueFormat::Direct(r"OS:a04bm02\q".into()));
    assert_eq!(
        (&u.admin, &u.response),
        (&QueueFormat::None, &QueueFormat::None)
    );
    assert_eq!(u.connector_type, None);
    assert!(m.transaction.is_none() && m.debug.is_none() && m.soap.is_none());
    assert!(m.multi_queue.is_none() && m.session.is_none());

    // A SID with Flags.AI clear (README 3.10): located by SenderIdSize.
    let s = m.security.as_ref().unwrap();
    assert_eq!(s.flags, 0x0001);
    assert_eq!(
        sid_text(&s.sender_id),
        "S-1-5-21-3181267629-1039849782-3663111779-1000"
    );
    assert!(s.encryption_key.is_empty() && s.signature.is_empty());

    let props = &m.properties;
    // PA, PR, NA and NR set though no admin queue is named (README 3.4): decoded as sent.
    assert_eq!(props.ack_flags, 0x0F);
    assert_eq!(props.class, 0);
    assert_eq!(props.correlation_id, [0; 20]);
    assert_eq!(props.body_type, 8);
    assert_eq!(props.app_tag, 0);
    assert_eq!(props.allocation_body_size, 2000);
    assert_eq!(props.privacy_level, 0);
    assert_eq!(props.hash_algorithm, 0x8004);
    assert_eq!(props.encryption_algorithm, 0x6801);
    assert_eq!(props.label, "mqsender label");
    assert!(props.extension.is_empty());
    assert_eq!(props.body.len(), 2000);
    assert!(props.body.chunks(2).all(|c| c == b"a\0"));
    assert_eq!(encoded(&p), bytes);
}

/// A SID (MS-DTYP 2.4.2.2) as text.
fn sid_text(b: &[u8]) -> String {
    let authority = b[2..8].iter().fold(0u64, |a, &x| a << 8 | u64::from(x));
    let subs = b[8..]
        .chunks(4)
        .take(b[1] as usize)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()).to_string());
    std::iter::once(format!("S-{}-{authority}", b[0]))
        .chain(subs)
        .collect::<Vec<_>>()
        .join("-")
}

#[test]
fn base_header_flags_are_where_the_spec_puts_them() {
    // Frame 8's 0x001B: priority 3, IN, SH.
    assert_eq!(3 | base_flags::INTERNAL | base_flags::SESSION, 0x001B);
    // Frame 7's UserHeader flags 0x00281C00: DQ 7, SecurityHeader, MessagePropertiesHeader.
    assert_eq!(
        7 << 10 | user_flags::SECURITY | user_flags::PROPERTIES,
        0x0028_1C00
    );
}
