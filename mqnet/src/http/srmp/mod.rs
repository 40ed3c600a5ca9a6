//! SRMP (MC-MQSRM), MSMQ over HTTP: what a Windows queue manager sends to
//! `DIRECT=HTTP://host/msmq/...`, a SOAP envelope and the message body in a MIME
//! `multipart/related` POST; its parser, its serializer (for egress, `crate::transfer`) and the
//! ingress routes that take it into local queues.
//!
//! The parser faces the network: it reads lengths and offsets only after checking them against
//! the bytes it has, allocates nothing from a size it was told, and refuses an envelope with a
//! DTD before parsing it. A malformed message is answered `400 Bad Request` and changes nothing
//! (3.1.5.1.2). A user message is stored through the same entry point as the native transfer
//! ([`mqcore::transfer::Transfer::accept`]): duplicates by message id for ordinary messages, and
//! for stream (transactional) messages exactly once and in order on the stream's durable
//! sequence state, so a resend or an out-of-order message is ignored (3.1.5.1.6.3).
//!
//! Receipts (3.1.5.1.6): stream and delivery receipts go back from here (`super::receipts`); a
//! commitment receipt request becomes the message's admin queue and receive acknowledgements,
//! which the engine sends when an application receives it and egress serializes as a
//! `<commitmentReceipt>`. Delivery and commitment receipts arriving here are stored in their
//! queue as MSMQ stores acknowledgements; stream receipts are not stored.

mod ingress;
mod parse;
mod write;

pub(super) use ingress::routes;
pub use ingress::{parse_verdict, LAST, VERDICT, WITHDRAW};
pub use parse::parse;
pub use write::serialize;
pub(crate) use write::{receipt_envelope, srmp_time_text, xml_escape, Receipt};

#[allow(unused_imports)] // what the parts share, each taking what it needs
use {ingress::*, parse::*, write::*};

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use base64::Engine as _;
use mqcore::clock::Timestamp;
use mqcore::message::{Acknowledge, Delivery, JournalFlags, MessageClass};
use mqcore::transfer::{arriving, Inbound, Origin, Seq, Verdict};
use mqcore::{Message, MessageId, QueueName};
use uuid::Uuid;

use super::problem::{ApiError, Problem};
use super::{AppState, Caller};
use crate::auth::Right;

/// Why a message is not SRMP we can take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

pub(super) fn bad(why: impl Into<String>) -> Malformed {
    Malformed(why.into())
}

/// An SRMP message as received: the envelope's properties and the MIME parts they refer to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Srmp {
    /// `<action>` after `MSMQ:` (the label), if the action has that prefix.
    pub label: Option<String>,
    /// `<to>`: the destination URL (`http://host/msmq/private$/q`).
    pub to: String,
    /// `<id>`'s index and GUID when `<Msmq>` is present (`uuid:<index>@<guid>`).
    pub id: Option<(u32, Uuid)>,
    /// `<rev><via>`: the response queue, as a format name.
    pub response: Option<String>,
    /// `<sentAt>`, milliseconds since 1970.
    pub sent_at: Option<u64>,
    /// `<services><durable/>`: recoverable delivery.
    pub durable: bool,
    /// `<deliveryReceiptRequest>` or `<commitmentReceiptRequest>` present.
    pub receipt_requested: bool,
    /// `<deliveryReceiptRequest><sendTo>`: where the receipt for the message's arrival goes.
    pub delivery_receipt_to: Option<String>,
    /// `<commitmentReceiptRequest>`: where the receipt for its receipt by an application goes
    /// and which outcomes it wants (the message's admin queue and receive acknowledgements).
    pub commitment_receipt: Option<(String, Acknowledge)>,
    /// `<deliveryReceipt>` or `<commitmentReceipt>`: an acknowledgement for its `<to>` queue
    /// (its class and correlation in `<Msmq>`), stored there as MSMQ stores acknowledgements.
    pub ack_receipt: bool,
    /// `<stream>`: the stream id and the message's number and its predecessor's.
    pub stream: Option<Stream>,
    /// `<deliveryReceipt>`, `<streamReceipt>` or `<commitmentReceipt>` present: not a user message.
    pub receipt: bool,
    /// `<Msmq>` properties.
    pub msmq: Option<MsmqProps>,
    /// The body part's bytes.
    pub body: Bytes,
    /// The extension part's bytes.
    pub extension: Bytes,
}

/// `<stream>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stream {
    /// `<streamId>` after its `\`.
    pub id: String,
    /// `<streamId>` before its `\` (`uid:<sender's QM GUID>`), empty if it has none.
    pub sender: String,
    /// `<start><sendReceiptsTo>`: where stream receipts go (the stream's first message names it).
    pub receipts_to: Option<String>,
    /// `<current>`.
    pub current: u64,
    /// `<previous>`, if given.
    pub previous: Option<u64>,
}

/// The `<Msmq>` element's properties.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MsmqProps {
    /// `<Class>`.
    pub class: u16,
    /// `<Priority>`.
    pub priority: u8,
    /// `<Journal/>`.
    pub journal: bool,
    /// `<DeadLetter/>`.
    pub dead_letter: bool,
    /// `<Correlation>`, 20 bytes.
    pub correlation: Option<[u8; 20]>,
    /// `<App>`.
    pub app: u32,
    /// `<BodyType>`.
    pub body_type: u32,
    /// `<SourceQmGuid>`.
    pub source: Option<Uuid>,
    /// `<TTrq>`, milliseconds since 1970.
    pub ttrq: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqcore::message::Acknowledge;

    fn sample(label: &str, body: &[u8]) -> Message {
        let mut m = Message::new(Bytes::copy_from_slice(body));
        m.label = label.to_owned();
        m.priority = 6;
        m.app_specific = 0xDEAD_BEEF;
        m.body_type = 17;
        m.correlation_id = Some(MessageId([9; 20]));
        m.journal = JournalFlags(JournalFlags::JOURNAL.0 | JournalFlags::DEADLETTER.0);
        m.delivery = Delivery::Recoverable;
        m.acknowledge = Acknowledge::NONE;
        m.response_queue = Some(Arc::new(
            QueueName::parse("DIRECT=HTTP://machine1/msmq/private$/replies").unwrap(),
        ));
        arriving(
            m,
            Origin {
                id: MessageId::new(
                    "6a74a825-57b2-43e5-9d34-f1d8b2b8950a".parse().unwrap(),
                    4242,
                ),
                class: MessageClass::NORMAL,
                sent: Timestamp(1_181_321_059_123),
                source: "6a74a825-57b2-43e5-9d34-f1d8b2b8950a".parse().unwrap(),
                destination: None,
                transactional: false,
            },
        )
    }

    /// What survives SRMP: every property it carries, times to the second.
    fn carried(m: &Message) -> impl PartialEq + std::fmt::Debug {
        (
            (m.id(), m.label.clone(), m.body.clone(), m.extension.clone()),
            (m.priority, m.app_specific, m.body_type, m.correlation_id),
            (
                m.journal,
                m.delivery,
                m.source_machine(),
                m.sent_time().0 / 1000,
            ),
            m.response_queue
                .as_ref()
                .map(|q| q.to_string().to_lowercase()),
        )
    }

    #[test]
    fn our_own_srmp_parses_back_to_the_same_message() {
        let to = "http://machine2/msmq/private$/orders";
        for (label, body) in [
            ("plain", &b"hello"[..]),
            ("<tags> & \"quotes\" 'too'", &b"\x00\x01binary\xff"[..]),
            ("", &b""[..]),
            (
                "boundary inside",
                &b"--MSMQ - SOAP boundary, 4242\r\n--MSMQ - SOAP boundary, 4242--"[..],
            ),
        ] {
            let mut m = sample(label, body);
            m.extension = Bytes::from_static(b"ext");
            let (ctype, wire) = serialize(&m, to, None);
            let back = parse(&ctype, &Bytes::from(wire)).expect("our own output parses");
            assert_eq!(back.to, to);
            let dest = QueueName::parse(&back.destination()).unwrap();
            let again = back.message(Some(dest)).unwrap();
            assert_eq!(carried(&again), carried(&m), "{label:?}");
        }
    }

    #[test]
    fn acknowledgement_requests_and_acknowledgements_travel_as_receipts() {
        // A request for arrival and receive acknowledgements at an admin queue named by HTTP.
        let mut m = sample("asks", b"x");
        m.admin_queue = Some(Arc::new(
            QueueName::parse("DIRECT=HTTP://machine1/msmq/private$/admin").unwrap(),
        ));
        m.acknowledge = Acknowledge(Acknowledge::POS_ARRIVAL.0 | Acknowledge::POS_RECEIVE.0);
        let (ctype, wire) = serialize(&m, "http://machine2/msmq/private$/q", None);
        let back = parse(&ctype, &Bytes::from(wire)).unwrap();
        let admin = "http://machine1/msmq/private$/admin";
        assert_eq!(back.delivery_receipt_to.as_deref(), Some(admin));
        assert_eq!(
            back.commitment_receipt,
            Some((admin.to_owned(), Acknowledge::POS_RECEIVE))
        );
        let arrived = back.message(None).unwrap();
        assert_eq!(arrived.acknowledge, Acknowledge::POS_RECEIVE);
        assert_eq!(
            arrived
                .admin_queue
                .as_deref()
                .map(ToString::to_string)
                .as_deref(),
            Some("DIRECT=HTTP://machine1/msmq/private$/admin")
        );

        // The receive acknowledgement goes back as a commitment receipt, stored as itself.
        let original = m.id();
        let mut ack = Message::new(Bytes::new());
        ack.correlation_id = Some(original);
        let ack = arriving(
            ack,
            Origin {
                id: MessageId::new(Uuid::from_u128(7), 3),
                class: MessageClass::ACK_RECEIVE,
                sent: Timestamp(1_181_321_059_000),
                source: Uuid::from_u128(7),
                destination: None,
                transactional: false,
            },
        );
        let (ctype, wire) = serialize(&ack, admin, None);
        assert_eq!(ctype, "text/xml");
        let text = String::from_utf8(wire.clone()).unwrap();
        assert!(text.contains("<decision>positive</decision>"), "{text}");
        let back = parse(&ctype, &Bytes::from(wire)).unwrap();
        assert!(back.ack_receipt && !back.is_user_message());
        let stored = back.message(None).unwrap();
        assert_eq!(stored.class(), MessageClass::ACK_RECEIVE);
        assert_eq!(stored.correlation_id, Some(original));
        assert_eq!(stored.id(), ack.id());
    }

    #[test]
    fn a_stream_message_round_trips_with_its_numbers() {
        let m = sample("in a stream", b"tx");
        let stream = Stream {
            id: "4839986701558349830".into(),
            sender: "uid:2744e4e1-2b48-43e8-b441-42745f280d53".into(),
            receipts_to: Some("http://machine1/msmq/private$/order_queue$".into()),
            current: 7,
            previous: Some(6),
        };
        let (ctype, wire) = serialize(&m, "http://machine2/msmq/private$/t", Some(&stream));
        let back = parse(&ctype, &Bytes::from(wire)).unwrap();
        assert_eq!(back.stream, Some(stream));
        assert!(back.message(None).unwrap().is_transactional());
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        let cases = [
            ("multipart/related", &b"x"[..], "without a boundary"),
            (
                "multipart/related; boundary=B",
                b"no delimiter",
                "no multipart delimiter",
            ),
            ("text/plain", b"", "not `text/plain`"),
            ("text/xml", b"<a/>", "not a SOAP Envelope"),
            ("text/xml", b"<!DOCTYPE x><Envelope/>", "no DTD"),
        ];
        for (ctype, body, says) in cases {
            let e = parse(ctype, &Bytes::copy_from_slice(body)).unwrap_err();
            assert!(e.0.contains(says), "{ctype}: {:?}", e.0);
        }
    }
}
