//! The MS-MQQB codec against bytes no sender should send: a table of malformed packets (every
//! length field too large, too small and at its limit, wrong signature and version, sizes past
//! the packet, header types that do not exist), each refused with a [`Malformed`] naming the
//! field; every truncation and many single-byte corruptions of valid packets, none of which
//! may panic; and property tests that every message property survives encode then decode.

use mqnet::mqqb::packet::{self, BaseHeader, SessionHeader};
use mqnet::mqqb::user::{
    user_flags, DebugHeader, MessageProperties, MqfElement, MultiQueueFormat, QueueFormat,
    SecurityHeader, SoapHeader, TransactionHeader, UserHeader, UserMessage,
};
use mqnet::mqqb::{decode, encode, frame_len, Malformed, Packet};
use proptest::prelude::*;
use uuid::Uuid;

fn user(destination: QueueFormat) -> UserMessage {
    UserMessage::new(
        BaseHeader {
            reserved: 0,
            flags: 3,
            packet_size: 0,
            time_to_reach_queue: 345_600,
        },
        UserHeader {
            source_qm: Uuid::from_u128(0x1234),
            destination_qm: Uuid::nil(),
            time_to_be_received: u32::MAX,
            sent_time: 1_796_000_000,
            message_id: 7,
            flags: user_flags::RECOVERABLE,
            destination,
            admin: QueueFormat::None,
            response: QueueFormat::None,
            connector_type: None,
        },
        MessageProperties {
            label: "L".into(),
            body: b"body".to_vec(),
            ..MessageProperties::default()
        },
    )
}

fn bytes_of(m: &UserMessage) -> Vec<u8> {
    let mut out = Vec::new();
    encode(&Packet::User(Box::new(m.clone())), &mut out);
    out
}

/// A message with every optional header, for the sweeps.
fn everything() -> UserMessage {
    let mut m = user(QueueFormat::Direct(r"TCP:10.0.0.1\private$\orders".into()));
    m.user.admin = QueueFormat::Private {
        qm: Uuid::from_u128(9),
        id: 4,
    };
    m.user.response = QueueFormat::Public(Uuid::from_u128(10));
    m.user.connector_type = Some(Uuid::from_u128(11));
    m.transaction = Some(TransactionHeader {
        flags: 0x0000_0016,
        sequence_id: 0x0000_0005_0000_0002,
        sequence_number: 3,
        previous_number: 2,
        connector_qm: Some(Uuid::from_u128(12)),
    });
    m.security = Some(SecurityHeader {
        flags: 1,
        sender_id: vec![1, 5, 0, 0, 0, 0, 0, 5, 21, 0, 0, 0, 1, 2, 3],
        signature: vec![0xAB; 7],
        ..SecurityHeader::default()
    });
    m.properties.extension = vec![1, 2, 3];
    m.debug = Some(DebugHeader {
        flags: 1,
        reserved: 0,
        queue: Some(Uuid::from_u128(13)),
    });
    m.soap = Some(SoapHeader {
        header: "<h/>".into(),
        body: "<b>x</b>".into(),
    });
    m.multi_queue = Some(MultiQueueFormat {
        destinations: vec![
            MqfElement::Direct(r"OS:a\q".into()),
            MqfElement::Private {
                qm: Uuid::from_u128(14),
                id: 5,
            },
        ],
        admin: vec![MqfElement::Public(Uuid::from_u128(15))],
        response: vec![MqfElement::DistributionList(Uuid::from_u128(16))],
        signature: vec![9; 5],
    });
    m.session = Some(SessionHeader {
        ack_sequence: 4,
        window_size: 64,
        ..SessionHeader::default()
    });
    m
}

fn refused(bytes: &[u8], field: &str) {
    match decode(bytes) {
        Err(Malformed { what, .. }) => assert!(
            what.contains(field),
            "refused for {what:?}, expected something about {field:?}"
        ),
        Ok(p) => panic!("accepted a packet with a bad {field}: {p:?}"),
    }
}

fn le32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn framing_checks_version_signature_and_size_from_the_first_16_bytes() {
    let good = bytes_of(&user(QueueFormat::PrivateOnDestination(4)));
    let head = |b: &[u8]| -> [u8; 16] { b[..16].try_into().unwrap() };
    assert_eq!(frame_len(&head(&good)).unwrap(), good.len());
    let mut b = good.clone();
    b[0] = 0x20;
    assert!(frame_len(&head(&b)).unwrap_err().what.contains("version"));
    refused(&b, "version");
    let mut b = good.clone();
    b[4] = b'X';
    assert!(frame_len(&head(&b)).unwrap_err().what.contains("signature"));
    // PacketSize: beyond 0x00400000, below the smallest packet, and at the limit.
    for (size, ok) in [
        (0x0040_0001, false),
        (u32::MAX, false),
        (19, false),
        (0, false),
    ] {
        let mut b = good.clone();
        le32(&mut b, 8, size);
        assert_eq!(frame_len(&head(&b)).is_ok(), ok, "PacketSize {size}");
    }
    let mut b = good.clone();
    le32(&mut b, 8, 0x0040_0000);
    assert_eq!(frame_len(&head(&b)).unwrap(), 0x0040_0000);
    // With BaseHeader.SH on a user message, 16 bytes of SessionHeader follow PacketSize.
    b[2] |= packet::base_flags::SESSION as u8;
    assert_eq!(frame_len(&head(&b)).unwrap(), 0x0040_0010);
    // A PacketSize that disagrees with the bytes handed over.
    let mut b = good.clone();
    le32(&mut b, 8, good.len() as u32 + 4);
    refused(&b, "PacketSize");
}

#[test]
fn internal_packets_of_unknown_type_or_wrong_size_are_refused() {
    let mut ack = Vec::new();
    encode(
        &Packet::SessionAck {
            base: BaseHeader::internal(packet::base_flags::SESSION),
            internal: packet::InternalHeader::new(packet::InternalType::SessionAck, false),
            session: SessionHeader::default(),
        },
        &mut ack,
    );
    assert!(decode(&ack).is_ok());
    for pt in [0u8, 4, 15] {
        let mut b = ack.clone();
        b[18] = pt;
        refused(&b, "internal packet type");
    }
    // A SessionAck that says it is an EstablishConnection is 36 bytes, not 572.
    let mut b = ack.clone();
    b[18] = 2;
    refused(&b, "572 bytes");
    // A SessionAck without BaseHeader.SH.
    let mut b = ack.clone();
    b[2] &= !(packet::base_flags::SESSION as u8);
    refused(&b, "SH");
}

#[test]
fn user_header_fields_are_checked() {
    // Destination `OS:h\q`: Count at 64, 14 bytes of name, MessagePropertiesHeader at 80.
    let good = bytes_of(&user(QueueFormat::Direct(r"OS:h\q".into())));
    assert!(decode(&good).is_ok());
    let flags_at = 60;
    let flags = u32::from_le_bytes(good[flags_at..flags_at + 4].try_into().unwrap());
    let with_flags = |f: u32| {
        let mut b = good.clone();
        le32(&mut b, flags_at, f);
        b
    };
    // Queue types a field may not take.
    refused(
        &with_flags(flags & !(7 << 10) | 1 << 10),
        "DestinationQueue",
    );
    refused(
        &with_flags(flags & !(7 << 10) | 6 << 10),
        "DestinationQueue",
    );
    refused(&with_flags(flags | 1 << 13), "AdminQueue");
    refused(&with_flags(flags | 4 << 13), "AdminQueue");
    // MP clear; TH set on an express message (the TransactionHeader is read first).
    refused(&with_flags(flags & !user_flags::PROPERTIES), "MP");
    let mut express_tx = user(QueueFormat::PrivateOnDestination(4));
    express_tx.transaction = Some(TransactionHeader {
        flags: 0,
        sequence_id: 1,
        sequence_number: 1,
        previous_number: 0,
        connector_qm: None,
    });
    express_tx.user.flags = 0;
    refused(&bytes_of(&express_tx), "not recoverable");
    // The direct name's Count: odd, zero, past the packet, and a name without its NUL.
    let with_count = |c: u16| {
        let mut b = good.clone();
        b[64..66].copy_from_slice(&c.to_le_bytes());
        b
    };
    refused(&with_count(13), "UTF-16");
    refused(&with_count(0), "UTF-16");
    refused(&with_count(u16::MAX), "left in the packet");
    let mut b = good.clone();
    b[78] = b'x';
    refused(&b, "NUL");
}

#[test]
fn message_property_sizes_are_checked() {
    let good = bytes_of(&user(QueueFormat::Direct(r"OS:h\q".into())));
    let props = 80;
    let mut b = good.clone();
    b[props + 1] = 251;
    refused(&b, "LabelLength");
    let mut b = good.clone();
    b[props + 1] = 250; // at the limit, but past the packet
    refused(&b, "Label");
    for (field, at) in [("MessageBody", 32), ("ExtensionData", 52)] {
        for size in [u32::MAX, 0x0040_0000, good.len() as u32] {
            let mut b = good.clone();
            le32(&mut b, props + at, size);
            refused(&b, field);
        }
    }
    // A body one byte longer than what is there: the padding is not body.
    let mut b = good.clone();
    le32(&mut b, props + 32, 4 + 4);
    refused(&b, "MessageBody");
}

#[test]
fn optional_header_sizes_are_checked() {
    let good = bytes_of(&everything());
    // Whole, it decodes and encodes back to the same bytes.
    let mut again = Vec::new();
    encode(&decode(&good).unwrap(), &mut again);
    assert_eq!(again, good);
    // Security sizes past the packet.
    let mut m2 = user(QueueFormat::PrivateOnDestination(4));
    m2.security = Some(SecurityHeader {
        flags: 1,
        sender_id: vec![7; 12],
        ..SecurityHeader::default()
    });
    let b = bytes_of(&m2);
    // UserHeader 48 + private id 4: the SecurityHeader starts at 68.
    for (at, width) in [(70, 2), (72, 2), (74, 2), (76, 4), (80, 4)] {
        let mut bad = b.clone();
        bad[at..at + width].fill(0xFF);
        refused(&bad, "SecurityData");
    }
    // A DebugHeader queue type that does not exist.
    let mut m3 = user(QueueFormat::PrivateOnDestination(4));
    m3.debug = Some(DebugHeader {
        flags: 0,
        reserved: 0,
        queue: None,
    });
    let mut bad = bytes_of(&m3);
    let at = bad.len() - 4;
    bad[at] = 2;
    refused(&bad, "DebugHeader queue type");
    // A SoapHeader with a wrong section id, and one with a length past the packet.
    let mut m4 = user(QueueFormat::PrivateOnDestination(4));
    m4.soap = Some(SoapHeader {
        header: String::new(),
        body: String::new(),
    });
    let b = bytes_of(&m4);
    // Two empty sections of 12 bytes each close the packet.
    let soap = b.len() - 24;
    let mut bad = b.clone();
    bad[soap] = 0x21;
    refused(&bad, "section id");
    let mut bad = b.clone();
    le32(&mut bad, soap + 4, u32::MAX);
    refused(&bad, "SoapHeader.Header");
    // A MultiQueueFormatHeader whose ElementCount or HeaderSize cannot be right.
    let mut m5 = user(QueueFormat::PrivateOnDestination(4));
    m5.multi_queue = Some(MultiQueueFormat::default());
    let b = bytes_of(&m5);
    // Three empty address headers of 12 bytes and an empty signature header of 8.
    let mqf = b.len() - 44;
    let mut bad = b.clone();
    le32(&mut bad, mqf + 8, u32::MAX);
    refused(&bad, "cannot fit");
    let mut bad = b.clone();
    le32(&mut bad, mqf, 8);
    refused(&bad, "HeaderSize");
    let mut bad = b.clone();
    le32(&mut bad, mqf, u32::MAX);
    refused(&bad, "HeaderSize");
}

/// Every truncation, and every byte set to 0x00, 0xFF and flipped in its top bit: decoding
/// never panics, and whatever decodes encodes to bytes that decode to the same packet.
#[test]
fn corrupted_packets_never_panic_and_what_decodes_is_consistent() {
    let mut packets = vec![bytes_of(&everything())];
    let mut internal = Vec::new();
    encode(
        &Packet::EstablishConnection {
            base: BaseHeader::internal(0),
            internal: packet::InternalHeader::new(packet::InternalType::EstablishConnection, false),
            header: packet::EstablishConnection {
                client: Uuid::from_u128(1),
                server: Uuid::nil(),
                timestamp: 5,
                operating_system: 0x0110,
                reserved: 0,
            },
        },
        &mut internal,
    );
    packets.push(internal);
    for good in packets {
        for n in 0..good.len() {
            let _ = decode(&good[..n]);
        }
        for i in 0..good.len() {
            for v in [0x00, 0xFF, good[i] ^ 0x80] {
                let mut b = good.clone();
                b[i] = v;
                if let Ok(p) = decode(&b) {
                    let mut again = Vec::new();
                    encode(&p, &mut again);
                    let q = decode(&again).unwrap_or_else(|e| panic!("byte {i} = {v}: {e}"));
                    assert_eq!(strip_sizes(q), strip_sizes(p), "byte {i} = {v}");
                }
            }
        }
    }
}

/// A packet without the fields encoding recomputes (PacketSize, presence bits).
fn strip_sizes(p: Packet) -> Packet {
    match p {
        Packet::User(mut m) => {
            m.base.packet_size = 0;
            m.properties.allocation_body_size = 0;
            Packet::User(m)
        }
        other => other,
    }
}

fn guid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just('a'),
            Just('Z'),
            Just(' '),
            Just('\\'),
            Just('é'),
            Just('€'),
            Just('𝄞')
        ],
        0..max,
    )
    .prop_map(|v| v.into_iter().collect())
}

fn queue(codes: &'static [u32]) -> impl Strategy<Value = QueueFormat> {
    (
        proptest::sample::select(codes),
        any::<u32>(),
        guid(),
        text(40),
    )
        .prop_map(|(code, id, g, name)| match code {
            0 => QueueFormat::None,
            1 => QueueFormat::SameAsAdmin,
            2 => QueueFormat::PrivateOnSource(id),
            3 => QueueFormat::PrivateOnDestination(id),
            4 => QueueFormat::PrivateOnAdminHost(id),
            5 => QueueFormat::Public(g),
            6 => QueueFormat::Private { qm: g, id },
            _ => QueueFormat::Direct(format!("OS:{name}")),
        })
}

prop_compose! {
    fn properties()(
        ack_flags in 0u8..16, class in any::<u16>(), correlation_id in any::<[u8; 20]>(),
        body_type in any::<u32>(), app_tag in any::<u32>(), privacy_level in any::<u32>(),
        hash_algorithm in any::<u32>(), encryption_algorithm in any::<u32>(),
        label in text(100), extension in proptest::collection::vec(any::<u8>(), 0..40),
        body in proptest::collection::vec(any::<u8>(), 0..3000),
    ) -> MessageProperties {
        let allocation_body_size = body.len() as u32;
        MessageProperties {
            ack_flags, class, correlation_id, body_type, app_tag, allocation_body_size,
            privacy_level, hash_algorithm, encryption_algorithm, label, extension, body,
        }
    }
}

prop_compose! {
    fn message()(
        priority in 0u16..8, ttrq in any::<u32>(), source in guid(), dest_qm in guid(),
        ttbr in any::<u32>(), sent in any::<u32>(), id in any::<u32>(), hops in 0u32..0x1E,
        journal in 0u32..4, destination in queue(&[0, 3, 5, 7]),
        admin in queue(&[0, 2, 3, 5, 6, 7]), response in queue(&[0, 1, 2, 3, 4, 5, 6, 7]),
        connector in proptest::option::of(guid()),
        tx in proptest::option::of((0u32..0x0100_0000, any::<u64>(), any::<u32>(), any::<u32>(),
            proptest::option::of(guid()))),
        recoverable in any::<bool>(),
        security in proptest::option::of((any::<u16>(), proptest::collection::vec(any::<u8>(), 0..40),
            proptest::collection::vec(any::<u8>(), 0..70))),
        properties in properties(),
        debug in proptest::option::of(proptest::option::of(guid())),
        soap in proptest::option::of((text(30), text(30))),
        mqf in proptest::option::of((proptest::collection::vec(guid(), 0..3), text(20),
            proptest::collection::vec(any::<u8>(), 0..9))),
        session in proptest::option::of(any::<(u16, u16, u32, u16, u16, u16)>()),
    ) -> UserMessage {
        let tx_on = tx.is_some();
        UserMessage {
            base: BaseHeader { reserved: 0, flags: priority, packet_size: 0, time_to_reach_queue: ttrq },
            user: UserHeader {
                source_qm: source, destination_qm: dest_qm, time_to_be_received: ttbr,
                sent_time: sent, message_id: id,
                flags: hops | journal << 8
                    | if recoverable || tx_on { user_flags::RECOVERABLE } else { 0 },
                destination, admin, response, connector_type: connector,
            },
            transaction: tx.map(|(flags, sequence_id, sequence_number, previous_number, connector_qm)| {
                TransactionHeader {
                    flags: (flags << 1) | u32::from(connector_qm.is_some()),
                    sequence_id, sequence_number, previous_number, connector_qm,
                }
            }),
            security: security.map(|(flags, sender_id, signature)| SecurityHeader {
                flags, sender_id, signature, ..SecurityHeader::default()
            }),
            properties,
            debug: debug.map(|queue| DebugHeader { flags: u16::from(queue.is_some()), reserved: 0, queue }),
            soap: soap.map(|(header, body)| SoapHeader { header, body }),
            multi_queue: mqf.map(|(guids, name, signature)| MultiQueueFormat {
                destinations: guids.iter().map(|g| MqfElement::Public(*g)).collect(),
                admin: vec![MqfElement::Direct(format!("OS:{name}"))],
                response: guids.iter().map(|g| MqfElement::Private { qm: *g, id: 3 }).collect(),
                signature,
            }),
            session: session.map(|(a, b, c, d, e, f)| SessionHeader {
                ack_sequence: a, recoverable_ack_sequence: b, recoverable_ack_flags: c,
                user_sequence: d, recoverable_sequence: e, window_size: f, reserved: 0,
            }),
        }
    }
}

proptest! {
    #[test]
    fn every_message_property_survives_encode_and_decode(m in message()) {
        let bytes = bytes_of(&m);
        let head: [u8; 16] = bytes[..16].try_into().unwrap();
        prop_assert_eq!(frame_len(&head).unwrap(), bytes.len());
        let Packet::User(d) = decode(&bytes).unwrap() else { panic!("not a user message") };
        prop_assert_eq!(d.base.priority(), m.base.priority());
        prop_assert_eq!(d.base.time_to_reach_queue, m.base.time_to_reach_queue);
        prop_assert_eq!(&d.user.destination, &m.user.destination);
        prop_assert_eq!(&d.user.admin, &m.user.admin);
        prop_assert_eq!(&d.user.response, &m.user.response);
        prop_assert_eq!(d.user.flags & 0x3FF, m.user.flags);
        prop_assert_eq!(
            (d.user.source_qm, d.user.destination_qm, d.user.time_to_be_received, d.user.sent_time,
                d.user.message_id, d.user.connector_type),
            (m.user.source_qm, m.user.destination_qm, m.user.time_to_be_received, m.user.sent_time,
                m.user.message_id, m.user.connector_type));
        prop_assert_eq!(&d.transaction, &m.transaction);
        prop_assert_eq!(&d.security, &m.security);
        prop_assert_eq!(&d.properties, &m.properties);
        prop_assert_eq!(&d.debug, &m.debug);
        prop_assert_eq!(&d.soap, &m.soap);
        prop_assert_eq!(&d.multi_queue, &m.multi_queue);
        prop_assert_eq!(&d.session, &m.session);
        // Every header ends on a 4-byte boundary, so PacketSize is a multiple of 4.
        prop_assert_eq!(d.base.packet_size % 4, 0);
    }
}
