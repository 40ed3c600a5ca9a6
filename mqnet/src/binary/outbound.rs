//! The engine's messages as MS-MQQB user messages, for the transfer links that deliver outgoing
//! queues over MSMQ's binary protocol (`crate::transfer`), and the acknowledgements those links
//! read back: OrderAck and FinalAck bodies.

use mqcore::message::{Delivery, JournalFlags, MessageClass};
use mqcore::name::QueueName;
use mqcore::transfer::Seq;
use mqcore::Message;
use uuid::Uuid;

use crate::mqqb::packet::{BaseHeader, INFINITE};
use crate::mqqb::user::{
    user_flags, MessageProperties, QueueFormat, TransactionHeader, UserHeader, UserMessage,
};

/// MQMSG_CLASS_ORDER_ACK.
pub(crate) const ORDER_ACK: u16 = 0x00FF;

/// The TxSequenceID of an outgoing queue's transactional messages: Ordinal 1 and, as the
/// Timestamp, a hash of the destination's name, so it is the same after a restart (the numbers
/// go on from the last acknowledged one) and tells one queue's OrderAcks from another's.
pub(crate) fn sequence_id(destination: &str) -> u64 {
    let hash = crc32fast::hash(destination.to_ascii_lowercase().as_bytes());
    (u64::from(hash.max(1)) << 32) | 1
}

/// A queue name as a UserHeader carries it, when MS-MQQB can say it.
pub(crate) fn wire_queue(name: &QueueName) -> QueueFormat {
    let text = name.to_string();
    if let Some(direct) = text.strip_prefix("DIRECT=") {
        return QueueFormat::Direct(direct.to_owned());
    }
    if let Some(public) = text.strip_prefix("PUBLIC=") {
        if let Ok(g) = Uuid::parse_str(public.split(';').next().unwrap_or(public)) {
            return QueueFormat::Public(g);
        }
    }
    if let Some(private) = text.strip_prefix("PRIVATE=") {
        let parsed = private.split_once('\\').and_then(|(qm, id)| {
            Some(QueueFormat::Private {
                qm: Uuid::parse_str(qm).ok()?,
                id: u32::from_str_radix(id.split(';').next()?, 16).ok()?,
            })
        });
        if let Some(q) = parsed {
            return q;
        }
    }
    // A path name (`host\private$\q`): the computer by its name.
    match text.split_once('\\') {
        Some((host, path)) if !text.contains('=') => {
            QueueFormat::Direct(format!(r"OS:{host}\{path}"))
        }
        _ => QueueFormat::None,
    }
}

fn seconds(d: Option<std::time::Duration>) -> u32 {
    d.map_or(INFINITE, |d| {
        u32::try_from(d.as_secs()).unwrap_or(INFINITE - 1)
    })
}

/// `msg`, read from the outgoing queue for `destination` (a direct format name without
/// `DIRECT=`), as a user message; `tx` is its sequence and place for a transactional message.
pub(crate) fn user_message(
    msg: &Message,
    destination: &str,
    tx: Option<(u64, Seq)>,
) -> UserMessage {
    let id = msg.id();
    let mut flags = 0;
    if msg.delivery == Delivery::Recoverable || tx.is_some() {
        flags |= user_flags::RECOVERABLE;
    }
    if msg.journal.contains(JournalFlags::DEADLETTER) {
        flags |= user_flags::JOURNAL_NEGATIVE;
    }
    if msg.journal.contains(JournalFlags::JOURNAL) {
        flags |= user_flags::JOURNAL_POSITIVE;
    }
    let admin = msg
        .admin_queue
        .as_deref()
        .map_or(QueueFormat::None, wire_queue);
    let response = match (&msg.response_queue, &msg.admin_queue) {
        (Some(r), Some(a)) if r == a => QueueFormat::SameAsAdmin,
        (Some(r), _) => wire_queue(r),
        (None, _) => QueueFormat::None,
    };
    // Acknowledgements need an administration queue (MS-MQMQ 2.2.19.2).
    let ack_flags = match admin {
        QueueFormat::None => 0,
        _ => msg.acknowledge.0 & 0x0F,
    };
    UserMessage {
        base: BaseHeader {
            reserved: 0,
            // A transactional message has priority 0 (MS-MQMQ 2.2.19.1).
            flags: if tx.is_some() {
                0
            } else {
                u16::from(msg.priority.min(7))
            },
            packet_size: 0,
            time_to_reach_queue: seconds(msg.time_to_reach_queue),
        },
        user: UserHeader {
            source_qm: id.qm_guid(),
            destination_qm: Uuid::nil(),
            time_to_be_received: seconds(msg.time_to_be_received),
            sent_time: (msg.sent_time().0 / 1000) as u32,
            message_id: id.ordinal(),
            flags,
            destination: QueueFormat::Direct(destination.to_owned()),
            admin,
            response,
            connector_type: None,
        },
        transaction: tx.map(|(sequence_id, seq)| TransactionHeader {
            // First and last of its own transaction: the engine sends committed messages.
            flags: 0x0C,
            sequence_id,
            sequence_number: seq.n as u32,
            previous_number: seq.prev as u32,
            connector_qm: None,
        }),
        security: None,
        properties: MessageProperties {
            ack_flags,
            class: msg.class().0,
            correlation_id: msg.correlation_id.map_or([0; 20], |c| *c.as_bytes()),
            body_type: msg.body_type,
            app_tag: msg.app_specific,
            allocation_body_size: msg.body.len() as u32,
            label: msg.label.clone(),
            extension: msg.extension.to_vec(),
            body: msg.body.to_vec(),
            ..MessageProperties::default()
        },
        debug: None,
        soap: None,
        multi_queue: None,
        session: None,
    }
}

/// An acknowledgement the receiving queue manager sent to this one's `order_queue$`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OrderingAck {
    /// Every message of the sequence up to `number` was taken (accepted or refused).
    Order { sequence_id: u64, number: u32 },
    /// The message `number` of the sequence was refused with `class`.
    Final {
        sequence_id: u64,
        number: u32,
        class: MessageClass,
    },
}

/// The OrderAck or FinalAck `m` carries, if it is one (MS-MQQB 2.2.4, 2.2.5).
pub(crate) fn ordering_ack(m: &UserMessage) -> Option<OrderingAck> {
    let b = &m.properties.body;
    if b.len() < 16 {
        return None;
    }
    let sequence_id = u64::from_le_bytes(b[0..8].try_into().ok()?);
    let number = u32::from_le_bytes(b[8..12].try_into().ok()?);
    match m.properties.class {
        ORDER_ACK => Some(OrderingAck::Order {
            sequence_id,
            number,
        }),
        c if MessageClass(c).is_nack() => Some(OrderingAck::Final {
            sequence_id,
            number,
            class: MessageClass(c),
        }),
        _ => None,
    }
}
