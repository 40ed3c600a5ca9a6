//! What an accepted MS-MQQB session does with user messages: each becomes the engine's message
//! (the MessagePropertiesHeader's label, body, class, correlation id, application tag, body
//! type and acknowledgement levels, the UserHeader's queues, lifetimes and journal flags) and
//! goes to `Transfer::accept`, runs of messages to one queue in one call; then the answers the
//! sender waits for: a SessionAck counting every packet and flagging every recoverable one now
//! stored, an OrderAck per transactional sequence for its last number taken, and a FinalAck
//! for each transactional message refused.
//!
//! A transactional sequence is the engine's sequence named by the destination and the
//! TxSequenceID, its numbers the TxSequenceNumbers: the engine stores a message only if its
//! previous number is the last one taken (or below it), in the same record that moves the
//! number on, so a resend after a cut session is recognized and nothing is taken out of order.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mqcore::clock::Timestamp;
use mqcore::message::{Acknowledge, Delivery, JournalFlags, MessageClass, MessageId};
use mqcore::name::QueueName;
use mqcore::transfer::{arriving, Inbound, Origin, Seq, Verdict};
use mqcore::{Message, QueueManager};
use uuid::Uuid;

use super::{session_acks, Counts};
use crate::mqqb::packet::{BaseHeader, INFINITE};
use crate::mqqb::user::{user_flags, MessageProperties, QueueFormat, UserHeader, UserMessage};
use crate::mqqb::{encode, Packet};

use super::outbound::ORDER_ACK;
/// The label of OrderAck and FinalAck packets (MS-MQQB 2.2.4, 2.2.5).
const ORDERING_LABEL: &str = "QM Ordering Ack";
/// Ordinals of the messages this queue manager sends on MS-MQQB sessions (acknowledgements).
static NEXT_ORDINAL: AtomicU32 = AtomicU32::new(0);

/// Stores `users`, which arrived together, and appends the answers to `out`.
pub(super) fn take(
    qm: &QueueManager,
    guid: Uuid,
    peer: IpAddr,
    window: u16,
    counts: &mut Counts,
    users: Vec<UserMessage>,
    out: &mut Vec<u8>,
) -> mqcore::Result<()> {
    let transfer = qm.transfer();
    let mut acks: Vec<UserMessage> = Vec::new();
    let mut stored_recoverable = 0u32;
    let mut run: Vec<(UserMessage, Inbound)> = Vec::new();
    let mut run_key: Option<(Uuid, String, String)> = None;
    let flush = |run: &mut Vec<(UserMessage, Inbound)>,
                 key: &(Uuid, String, String),
                 acks: &mut Vec<UserMessage>,
                 stored: &mut u32|
     -> mqcore::Result<()> {
        if run.is_empty() {
            return Ok(());
        }
        let (sent, items): (Vec<UserMessage>, Vec<Inbound>) =
            std::mem::take(run).into_iter().unzip();
        let reply = transfer.accept(key.0, &key.1, &key.2, true, items)?;
        let mut order = None;
        for (m, verdict) in sent.iter().zip(&reply.verdicts) {
            if m.user.flags & user_flags::RECOVERABLE != 0 && *verdict != Verdict::Gap {
                *stored += 1;
            }
            let Some(tx) = &m.transaction else { continue };
            match verdict {
                Verdict::Gap => {}
                Verdict::Rejected(class) => {
                    acks.push(final_ack(guid, peer, m, class.0));
                    order = Some(tx.sequence_id);
                }
                // Expired on its way (see below): its number is consumed, the sender told.
                Verdict::Withdrawn => {
                    acks.push(final_ack(
                        guid,
                        peer,
                        m,
                        MessageClass::NACK_REACH_QUEUE_TIMEOUT.0,
                    ));
                    order = Some(tx.sequence_id);
                }
                _ => order = Some(tx.sequence_id),
            }
        }
        if let (Some(sequence_id), Ok(last)) = (order, u32::try_from(reply.last)) {
            if last > 0 {
                acks.push(order_ack(guid, peer, sequence_id, last));
            }
        }
        Ok(())
    };
    let now = qm.clock().now().0 / 1000;
    for m in users {
        counts.received = counts.received.wrapping_add(1);
        if m.properties.class == ORDER_ACK {
            // An acknowledgement for this side's transactional messages: this acceptor sends
            // none on the session, so it only counts.
            continue;
        }
        // Time to reach queue ran out on the way: ignored (MS-MQMQ 2.2.19.1), though counted
        // as handled so the sender lets it go; a transactional one's number is consumed.
        let expired = m.base.time_to_reach_queue != INFINITE
            && now.saturating_sub(u64::from(m.user.sent_time))
                > u64::from(m.base.time_to_reach_queue);
        if expired && m.transaction.is_none() {
            if m.user.flags & user_flags::RECOVERABLE != 0 {
                stored_recoverable += 1;
            }
            continue;
        }
        let (key, mut item) = inbound(guid, &m);
        if expired {
            item.msg = None;
        }
        if run_key.as_ref() != Some(&key) {
            if let Some(k) = &run_key {
                flush(&mut run, k, &mut acks, &mut stored_recoverable)?;
            }
            run_key = Some(key);
        }
        run.push((m, item));
    }
    if let Some(k) = &run_key {
        flush(&mut run, k, &mut acks, &mut stored_recoverable)?;
    }
    counts.recoverable_received += stored_recoverable;
    // The acknowledgements first, so the SessionAck that closes the batch counts them.
    for ack in acks {
        counts.sent = counts.sent.wrapping_add(1);
        if ack.user.flags & user_flags::RECOVERABLE != 0 {
            counts.recoverable_sent = counts.recoverable_sent.wrapping_add(1);
        }
        encode(&Packet::User(Box::new(ack)), out);
    }
    session_acks(counts, window, out);
    Ok(())
}

/// The engine's sequence key (source, sequence name, queue) and item for one message.
fn inbound(guid: Uuid, m: &UserMessage) -> ((Uuid, String, String), Inbound) {
    let u = &m.user;
    let destination = destination_name(u, guid);
    let queue = match &u.destination {
        // The message reached this queue manager: its host part names us.
        QueueFormat::Direct(name) => match name.split_once('\\') {
            Some((_, path)) => format!(r".\{path}"),
            None => name.clone(),
        },
        _ => destination.clone(),
    };
    let msg = engine_message(m, guid, &destination);
    let (sequence, seq) = match &m.transaction {
        Some(t) => (
            format!("{destination}#mqqb:{:016x}", t.sequence_id),
            Some(Seq {
                n: u64::from(t.sequence_number),
                prev: u64::from(t.previous_number),
            }),
        ),
        None => (destination, None),
    };
    (
        (u.source_qm, sequence, queue),
        Inbound {
            seq,
            msg: Some(msg),
        },
    )
}

/// The destination as a format name: `DIRECT=...`, `PRIVATE=...` or `PUBLIC=...`.
fn destination_name(u: &UserHeader, guid: Uuid) -> String {
    let qm = if u.destination_qm.is_nil() {
        guid
    } else {
        u.destination_qm
    };
    format_name(&u.destination, qm, u.source_qm, None).unwrap_or_default()
}

/// `q` as a format name; `here` is the destination's computer, `source` the sender's, `admin`
/// the administration queue's (for a response queue of type 4).
fn format_name(q: &QueueFormat, here: Uuid, source: Uuid, admin: Option<Uuid>) -> Option<String> {
    let private = |qm: Uuid, id: u32| format!("PRIVATE={}\\{id:08x}", qm.hyphenated());
    Some(match q {
        QueueFormat::None | QueueFormat::SameAsAdmin => return None,
        QueueFormat::PrivateOnSource(id) => private(source, *id),
        QueueFormat::PrivateOnDestination(id) => private(here, *id),
        QueueFormat::PrivateOnAdminHost(id) => private(admin?, *id),
        QueueFormat::Public(g) => format!("PUBLIC={}", g.hyphenated()),
        QueueFormat::Private { qm, id } => private(*qm, *id),
        QueueFormat::Direct(name) => format!("DIRECT={name}"),
    })
}

/// The computer a queue is on, when its format says.
fn host_of(q: &QueueFormat, here: Uuid, source: Uuid) -> Option<Uuid> {
    match q {
        QueueFormat::PrivateOnSource(_) => Some(source),
        QueueFormat::PrivateOnDestination(_) => Some(here),
        QueueFormat::Private { qm, .. } => Some(*qm),
        _ => None,
    }
}

fn seconds(s: u32) -> Option<Duration> {
    (s != INFINITE).then(|| Duration::from_secs(u64::from(s)))
}

/// The engine's message for `m`, stamped as its sender did.
fn engine_message(m: &UserMessage, guid: Uuid, destination: &str) -> Message {
    let (u, p) = (&m.user, &m.properties);
    let here = if u.destination_qm.is_nil() {
        guid
    } else {
        u.destination_qm
    };
    let mut msg = Message::new(Bytes::from(p.body.clone()));
    msg.label = p.label.clone();
    msg.extension = Bytes::from(p.extension.clone());
    msg.body_type = p.body_type;
    msg.app_specific = p.app_tag;
    msg.correlation_id = (p.correlation_id != [0; 20]).then_some(MessageId(p.correlation_id));
    msg.priority = m.base.priority();
    if u.flags & user_flags::RECOVERABLE != 0 {
        msg.delivery = Delivery::Recoverable;
    }
    msg.time_to_reach_queue = seconds(m.base.time_to_reach_queue);
    msg.time_to_be_received = seconds(u.time_to_be_received);
    msg.acknowledge = Acknowledge(p.ack_flags & 0x0F);
    let mut journal = 0;
    if u.flags & user_flags::JOURNAL_NEGATIVE != 0 {
        journal |= JournalFlags::DEADLETTER.0;
    }
    if u.flags & user_flags::JOURNAL_POSITIVE != 0 {
        journal |= JournalFlags::JOURNAL.0;
    }
    msg.journal = JournalFlags(journal);
    let name = |text: Option<String>| text.and_then(|t| QueueName::parse(&t).ok()).map(Arc::new);
    let admin_host = host_of(&u.admin, here, u.source_qm);
    msg.admin_queue = name(format_name(&u.admin, here, u.source_qm, None));
    msg.response_queue = match u.response {
        QueueFormat::SameAsAdmin => msg.admin_queue.clone(),
        ref r => name(format_name(r, here, u.source_qm, admin_host)),
    };
    arriving(
        msg,
        Origin {
            id: MessageId::new(u.source_qm, u.message_id),
            class: MessageClass(p.class),
            sent: Timestamp(u64::from(u.sent_time) * 1000),
            source: u.source_qm,
            destination: QueueName::parse(destination).ok(),
            transactional: m.transaction.is_some(),
        },
    )
}

/// A user message from this queue manager to the sender's `order_queue$` (MS-MQQB 2.2.4-2.2.5).
fn ordering_message(
    guid: Uuid,
    peer: IpAddr,
    class: u16,
    recoverable: bool,
    body: Vec<u8>,
) -> UserMessage {
    let sent = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32);
    UserMessage::new(
        BaseHeader {
            reserved: 0,
            flags: 0,
            packet_size: 0,
            time_to_reach_queue: INFINITE,
        },
        UserHeader {
            source_qm: guid,
            destination_qm: Uuid::nil(),
            time_to_be_received: INFINITE,
            sent_time: sent,
            message_id: NEXT_ORDINAL.fetch_add(1, Ordering::Relaxed).wrapping_add(1),
            flags: if recoverable {
                user_flags::RECOVERABLE
            } else {
                0
            },
            destination: QueueFormat::Direct(format!(r"TCP:{peer}\PRIVATE$\order_queue$")),
            admin: QueueFormat::None,
            response: QueueFormat::None,
            connector_type: None,
        },
        MessageProperties {
            class,
            label: ORDERING_LABEL.into(),
            allocation_body_size: body.len() as u32,
            body,
            ..MessageProperties::default()
        },
    )
}

/// An OrderAck: every message of sequence `sequence_id` up to `number` is taken (accepted or
/// refused); the sender may drop them.
fn order_ack(guid: Uuid, peer: IpAddr, sequence_id: u64, number: u32) -> UserMessage {
    let mut body = Vec::with_capacity(36);
    body.extend_from_slice(&sequence_id.to_le_bytes());
    body.extend_from_slice(&number.to_le_bytes());
    body.extend_from_slice(&(number - 1).to_le_bytes());
    body.extend_from_slice(&[0; 20]);
    ordering_message(guid, peer, ORDER_ACK, false, body)
}

/// A negative FinalAck: the transactional message `m` was refused with `class`.
fn final_ack(guid: Uuid, peer: IpAddr, m: &UserMessage, class: u16) -> UserMessage {
    let tx = m.transaction.as_ref().expect("a transactional message");
    let mut body = Vec::with_capacity(36);
    body.extend_from_slice(&tx.sequence_id.to_le_bytes());
    body.extend_from_slice(&tx.sequence_number.to_le_bytes());
    body.extend_from_slice(&tx.previous_number.to_le_bytes());
    body.extend_from_slice(&m.user.source_qm.to_bytes_le());
    body.extend_from_slice(&m.user.message_id.to_le_bytes());
    ordering_message(guid, peer, class, true, body)
}
