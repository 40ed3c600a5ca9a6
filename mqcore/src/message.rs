//! The MSMQ message: every property applications read or set, with MSMQ's limits and defaults.
//!
//! Properties the sender sets are public fields with MSMQ's defaults (`Message::new`); properties
//! the queue manager sets (id, class, times, lookup id, counts) are read through methods, because a
//! sender's value for them would be ignored by MSMQ too. Limits are checked by [`Message::validate`]
//! with MSMQ's error codes. See `shared/reference/msmq-facts.md` sections 1.4 and 1.5.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use uuid::Uuid;

use crate::clock::Timestamp;
use crate::error::{Error, ErrorCode, Result};
use crate::name::QueueName;

/// Longest label, in UTF-16 code units: MQ_MAX_MSG_LABEL_LEN is 250 including the terminating NUL.
pub const MAX_LABEL_LEN: usize = 249;

/// Largest body: MSMQ's 4 MB message limit.
pub const MAX_BODY_LEN: usize = 4 * 1024 * 1024;

/// Highest priority (MQ_MAX_PRIORITY); the lowest is 0.
pub const MAX_PRIORITY: u8 = 7;

/// Default priority of a non-transactional message (DEFAULT_M_PRIORITY).
pub const DEFAULT_PRIORITY: u8 = 3;

/// `PROPID_M_BODY_TYPE` of a COM `BSTR` string body (UTF-16LE), what .NET's ActiveX formatter sends.
pub const VT_BSTR: u32 = 8;

/// `PROPID_M_BODY_TYPE` of a wide-string body (UTF-16LE), what the C API sends for `LPWSTR` text.
pub const VT_LPWSTR: u32 = 31;

/// A 20-byte MSMQ message identifier: the source queue manager's GUID and a 4-byte ordinal.
///
/// Displayed as System.Messaging does: `guid\ordinal`, the GUID lower-case without braces (in .NET's
/// little-endian byte layout) and the ordinal as a signed 32-bit number.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, serde::Serialize, serde::Deserialize,
)]
pub struct MessageId(pub [u8; 20]);

/// A correlation id has the same 20-byte shape as a message id.
pub type CorrelationId = MessageId;

impl MessageId {
    /// The id of message `ordinal` sent by the queue manager `qm`.
    pub fn new(qm: Uuid, ordinal: u32) -> MessageId {
        let mut b = [0u8; 20];
        b[..16].copy_from_slice(&qm.to_bytes_le());
        b[16..].copy_from_slice(&ordinal.to_le_bytes());
        MessageId(b)
    }

    /// The source queue manager's GUID.
    pub fn qm_guid(&self) -> Uuid {
        let mut g = [0u8; 16];
        g.copy_from_slice(&self.0[..16]);
        Uuid::from_bytes_le(g)
    }

    /// The ordinal part.
    pub fn ordinal(&self) -> u32 {
        u32::from_le_bytes([self.0[16], self.0[17], self.0[18], self.0[19]])
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\\{}", self.qm_guid(), self.ordinal() as i32)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({self})")
    }
}

impl FromStr for MessageId {
    type Err = Error;

    /// Parses `guid\ordinal` as System.Messaging's `IdToByteArray` does.
    fn from_str(s: &str) -> Result<MessageId> {
        let bad = || {
            Error::new(
                ErrorCode::InvalidParameter,
                format!("{s:?} is not a message id of the form guid\\ordinal"),
            )
        };
        let (g, n) = s.split_once('\\').ok_or_else(bad)?;
        let guid =
            Uuid::parse_str(g.trim_start_matches('{').trim_end_matches('}')).map_err(|_| bad())?;
        let ordinal = n.parse::<i32>().map_err(|_| bad())?;
        Ok(MessageId::new(guid, ordinal as u32))
    }
}

/// Express (memory only) or recoverable (stored) delivery, `PROPID_M_DELIVERY`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum Delivery {
    /// MQMSG_DELIVERY_EXPRESS (0), the default.
    #[default]
    Express,
    /// MQMSG_DELIVERY_RECOVERABLE (1); every transactional message is recoverable.
    Recoverable,
}

/// Acknowledgement request flags, `PROPID_M_ACKNOWLEDGE`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub struct Acknowledge(pub u8);

impl Acknowledge {
    /// No acknowledgements (default).
    pub const NONE: Acknowledge = Acknowledge(0);
    /// MQMSG_ACKNOWLEDGMENT_POS_ARRIVAL.
    pub const POS_ARRIVAL: Acknowledge = Acknowledge(0x01);
    /// MQMSG_ACKNOWLEDGMENT_POS_RECEIVE.
    pub const POS_RECEIVE: Acknowledge = Acknowledge(0x02);
    /// MQMSG_ACKNOWLEDGMENT_NEG_ARRIVAL (= NACK_REACH_QUEUE).
    pub const NEG_ARRIVAL: Acknowledge = Acknowledge(0x04);
    /// MQMSG_ACKNOWLEDGMENT_NEG_RECEIVE.
    pub const NEG_RECEIVE: Acknowledge = Acknowledge(0x08);
    /// MQMSG_ACKNOWLEDGMENT_NACK_REACH_QUEUE (the same bit as NEG_ARRIVAL).
    pub const NACK_REACH_QUEUE: Acknowledge = Acknowledge(0x04);
    /// MQMSG_ACKNOWLEDGMENT_FULL_REACH_QUEUE.
    pub const FULL_REACH_QUEUE: Acknowledge = Acknowledge(0x05);
    /// MQMSG_ACKNOWLEDGMENT_NACK_RECEIVE.
    pub const NACK_RECEIVE: Acknowledge = Acknowledge(0x0C);
    /// MQMSG_ACKNOWLEDGMENT_FULL_RECEIVE.
    pub const FULL_RECEIVE: Acknowledge = Acknowledge(0x0E);

    /// Whether every bit of `other` is requested.
    pub fn contains(self, other: Acknowledge) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for Acknowledge {
    type Output = Acknowledge;
    fn bitor(self, rhs: Acknowledge) -> Acknowledge {
        Acknowledge(self.0 | rhs.0)
    }
}

/// Source journaling and dead-letter flags, `PROPID_M_JOURNAL`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub struct JournalFlags(pub u8);

impl JournalFlags {
    /// MQMSG_JOURNAL_NONE.
    pub const NONE: JournalFlags = JournalFlags(0);
    /// MQMSG_DEADLETTER: a non-transactional message that fails goes to the dead-letter queue.
    pub const DEADLETTER: JournalFlags = JournalFlags(1);
    /// MQMSG_JOURNAL: a copy of the delivered message goes to the computer journal.
    pub const JOURNAL: JournalFlags = JournalFlags(2);

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: JournalFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for JournalFlags {
    type Output = JournalFlags;
    fn bitor(self, rhs: JournalFlags) -> JournalFlags {
        JournalFlags(self.0 | rhs.0)
    }
}

/// Message class, `PROPID_M_CLASS`: normal, or the kind of acknowledgement.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub struct MessageClass(pub u16);

impl MessageClass {
    /// MQMSG_CLASS_NORMAL.
    pub const NORMAL: MessageClass = MessageClass(0x0000);
    /// MQMSG_CLASS_REPORT.
    pub const REPORT: MessageClass = MessageClass(0x0001);
    /// MQMSG_CLASS_ACK_REACH_QUEUE.
    pub const ACK_REACH_QUEUE: MessageClass = MessageClass(0x0002);
    /// MQMSG_CLASS_ACK_RECEIVE.
    pub const ACK_RECEIVE: MessageClass = MessageClass(0x4000);
    /// MQMSG_CLASS_NACK_BAD_DST_Q.
    pub const NACK_BAD_DST_Q: MessageClass = MessageClass(0x8000);
    /// MQMSG_CLASS_NACK_PURGED (while in an outgoing queue).
    pub const NACK_PURGED: MessageClass = MessageClass(0x8001);
    /// MQMSG_CLASS_NACK_REACH_QUEUE_TIMEOUT.
    pub const NACK_REACH_QUEUE_TIMEOUT: MessageClass = MessageClass(0x8002);
    /// MQMSG_CLASS_NACK_Q_EXCEED_QUOTA.
    pub const NACK_Q_EXCEED_QUOTA: MessageClass = MessageClass(0x8003);
    /// MQMSG_CLASS_NACK_ACCESS_DENIED.
    pub const NACK_ACCESS_DENIED: MessageClass = MessageClass(0x8004);
    /// MQMSG_CLASS_NACK_NOT_TRANSACTIONAL_Q.
    pub const NACK_NOT_TRANSACTIONAL_Q: MessageClass = MessageClass(0x8009);
    /// MQMSG_CLASS_NACK_NOT_TRANSACTIONAL_MSG.
    pub const NACK_NOT_TRANSACTIONAL_MSG: MessageClass = MessageClass(0x800A);
    /// MQMSG_CLASS_NACK_Q_DELETED.
    pub const NACK_Q_DELETED: MessageClass = MessageClass(0xC000);
    /// MQMSG_CLASS_NACK_Q_PURGED.
    pub const NACK_Q_PURGED: MessageClass = MessageClass(0xC001);
    /// MQMSG_CLASS_NACK_RECEIVE_TIMEOUT: time-to-be-received expired in the destination queue.
    pub const NACK_RECEIVE_TIMEOUT: MessageClass = MessageClass(0xC002);
    /// MQMSG_CLASS_NACK_RECEIVE_TIMEOUT_AT_SENDER.
    pub const NACK_RECEIVE_TIMEOUT_AT_SENDER: MessageClass = MessageClass(0xC003);
    /// MQMSG_CLASS_NACK_RECEIVE_REJECTED: MQMarkMessageRejected.
    pub const NACK_RECEIVE_REJECTED: MessageClass = MessageClass(0xC004);
    /// MQMSG_CLASS_NACK_MESSAGE_TOO_LARGE: larger than the destination takes.
    pub const NACK_MESSAGE_TOO_LARGE: MessageClass = MessageClass(0x800D);

    /// Whether this is a negative acknowledgement (bit 15).
    pub fn is_nack(self) -> bool {
        self.0 & 0x8000 != 0
    }

    /// Whether this acknowledges receipt rather than arrival (bit 14).
    pub fn is_receive(self) -> bool {
        self.0 & 0x4000 != 0
    }
}

/// One message. Construct with [`Message::new`] and set the public fields.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Message {
    /// `PROPID_M_LABEL`: at most 249 UTF-16 code units.
    pub label: String,
    /// `PROPID_M_BODY`: at most 4 MB.
    pub body: Bytes,
    /// `PROPID_M_BODY_TYPE`: a VARTYPE (VT_BSTR 8 for strings, 0x300 for .NET binary objects...).
    pub body_type: u32,
    /// `PROPID_M_CORRELATIONID`.
    pub correlation_id: Option<CorrelationId>,
    /// `PROPID_M_APPSPECIFIC`.
    pub app_specific: u32,
    /// `PROPID_M_PRIORITY`: 0 to 7, default 3; forced to 0 in a transaction.
    pub priority: u8,
    /// `PROPID_M_DELIVERY`: forced to recoverable in a transaction.
    pub delivery: Delivery,
    /// `PROPID_M_TIME_TO_REACH_QUEUE`; `None` is infinite. In a transaction, the first message's wins.
    pub time_to_reach_queue: Option<Duration>,
    /// `PROPID_M_TIME_TO_BE_RECEIVED`; `None` is infinite. In a transaction, the first message's wins.
    pub time_to_be_received: Option<Duration>,
    /// `PROPID_M_ACKNOWLEDGE`.
    pub acknowledge: Acknowledge,
    /// `PROPID_M_JOURNAL`.
    pub journal: JournalFlags,
    /// `PROPID_M_RESP_QUEUE` (shared, so copies of the message do not copy the name).
    pub response_queue: Option<Arc<QueueName>>,
    /// `PROPID_M_ADMIN_QUEUE`: where acknowledgements go.
    pub admin_queue: Option<Arc<QueueName>>,
    /// `PROPID_M_EXTENSION`.
    pub extension: Bytes,
    /// `PROPID_M_MSGID`, set on send.
    pub(crate) id: MessageId,
    /// `PROPID_M_CLASS`, normal unless this is an acknowledgement or a dead letter.
    pub(crate) class: MessageClass,
    /// `PROPID_M_SENTTIME`, set on send.
    pub(crate) sent_time: Timestamp,
    /// `PROPID_M_ARRIVEDTIME`, set when the message reaches its queue.
    pub(crate) arrived_time: Timestamp,
    /// `PROPID_M_SRC_MACHINE_ID`, set on send.
    pub(crate) source_machine: Uuid,
    /// `PROPID_M_DEST_QUEUE`, set on send.
    pub(crate) destination: Option<Arc<QueueName>>,
    /// `PROPID_M_LOOKUPID`, set when the message enters a queue.
    pub(crate) lookup_id: u64,
    /// `PROPID_M_ABORT_COUNT`: aborted transactional receives since it entered its current queue.
    pub(crate) abort_count: u32,
    /// `PROPID_M_MOVE_COUNT`.
    pub(crate) move_count: u32,
    /// Whether it was sent in a transaction (`PROPID_M_XACTID` present).
    pub(crate) transactional: bool,
    /// The log record that holds this copy of the message; 0 while it is not on disk (express
    /// messages, in-memory queue managers). Bookkeeping for compaction, never sent anywhere.
    #[serde(skip)]
    pub(crate) lsn: u64,
}

impl Default for Message {
    fn default() -> Self {
        Message {
            label: String::new(),
            body: Bytes::new(),
            body_type: 0,
            correlation_id: None,
            app_specific: 0,
            priority: DEFAULT_PRIORITY,
            delivery: Delivery::Express,
            time_to_reach_queue: None,
            time_to_be_received: None,
            acknowledge: Acknowledge::NONE,
            journal: JournalFlags::NONE,
            response_queue: None,
            admin_queue: None,
            extension: Bytes::new(),
            id: MessageId::default(),
            class: MessageClass::NORMAL,
            sent_time: Timestamp::default(),
            arrived_time: Timestamp::default(),
            source_machine: Uuid::nil(),
            destination: None,
            lookup_id: 0,
            abort_count: 0,
            move_count: 0,
            transactional: false,
            lsn: 0,
        }
    }
}

impl Message {
    /// A message with this body and MSMQ's defaults for everything else.
    pub fn new(body: impl Into<Bytes>) -> Message {
        Message {
            body: body.into(),
            ..Message::default()
        }
    }

    /// Sets the label.
    pub fn with_label(mut self, label: impl Into<String>) -> Message {
        self.label = label.into();
        self
    }

    /// Sets the priority.
    pub fn with_priority(mut self, priority: u8) -> Message {
        self.priority = priority;
        self
    }

    /// Sets the correlation id.
    pub fn with_correlation_id(mut self, id: CorrelationId) -> Message {
        self.correlation_id = Some(id);
        self
    }

    /// Sets the delivery mode.
    pub fn with_delivery(mut self, delivery: Delivery) -> Message {
        self.delivery = delivery;
        self
    }

    /// Sets the time-to-be-received.
    pub fn with_time_to_be_received(mut self, ttbr: Duration) -> Message {
        self.time_to_be_received = Some(ttbr);
        self
    }

    /// Sets the time-to-reach-queue.
    pub fn with_time_to_reach_queue(mut self, ttrq: Duration) -> Message {
        self.time_to_reach_queue = Some(ttrq);
        self
    }

    /// Sets the admin queue and the acknowledgements wanted there.
    pub fn with_acknowledge(mut self, admin: QueueName, ack: Acknowledge) -> Message {
        self.admin_queue = Some(Arc::new(admin));
        self.acknowledge = ack;
        self
    }

    /// Sets the response queue.
    pub fn with_response_queue(mut self, queue: QueueName) -> Message {
        self.response_queue = Some(Arc::new(queue));
        self
    }

    /// Sets the journal and dead-letter flags.
    pub fn with_journal(mut self, flags: JournalFlags) -> Message {
        self.journal = flags;
        self
    }

    /// Sets the app-specific value.
    pub fn with_app_specific(mut self, v: u32) -> Message {
        self.app_specific = v;
        self
    }

    /// A new message with this one's sender properties (body, label, body type, correlation id,
    /// app-specific value, priority, delivery, response and admin queues, acknowledgement level,
    /// journal flags, extension) and none of what a send stamps: what a host sends to move or
    /// requeue a message it already removed.
    pub fn sender_copy(&self) -> Message {
        let mut copy = Message::new(self.body.clone());
        copy.label = self.label.clone();
        copy.body_type = self.body_type;
        copy.correlation_id = self.correlation_id;
        copy.app_specific = self.app_specific;
        copy.priority = self.priority;
        copy.delivery = self.delivery;
        copy.response_queue = self.response_queue.clone();
        copy.admin_queue = self.admin_queue.clone();
        copy.acknowledge = self.acknowledge;
        copy.journal = self.journal;
        copy.extension = self.extension.clone();
        copy
    }

    /// `PROPID_M_MSGID`.
    pub fn id(&self) -> MessageId {
        self.id
    }

    /// `PROPID_M_CLASS`.
    pub fn class(&self) -> MessageClass {
        self.class
    }

    /// `PROPID_M_SENTTIME`.
    pub fn sent_time(&self) -> Timestamp {
        self.sent_time
    }

    /// `PROPID_M_ARRIVEDTIME`.
    pub fn arrived_time(&self) -> Timestamp {
        self.arrived_time
    }

    /// `PROPID_M_SRC_MACHINE_ID`.
    pub fn source_machine(&self) -> Uuid {
        self.source_machine
    }

    /// `PROPID_M_DEST_QUEUE`: the queue it was sent to.
    pub fn destination(&self) -> Option<&QueueName> {
        self.destination.as_deref()
    }

    /// `PROPID_M_LOOKUPID`: its position id in the queue it was read from.
    pub fn lookup_id(&self) -> u64 {
        self.lookup_id
    }

    /// `PROPID_M_ABORT_COUNT`.
    pub fn abort_count(&self) -> u32 {
        self.abort_count
    }

    /// `PROPID_M_MOVE_COUNT`.
    pub fn move_count(&self) -> u32 {
        self.move_count
    }

    /// Whether it was sent in a transaction.
    pub fn is_transactional(&self) -> bool {
        self.transactional
    }

    /// The body as UTF-8 text, if it is.
    pub fn body_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }

    /// A message whose body is `text` stored as MSMQ stores a string body: UTF-16LE, with body type
    /// `VT_LPWSTR`. Trigger body conditions look only at string bodies.
    pub fn text(text: &str) -> Message {
        let body: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
        Message {
            body: body.into(),
            body_type: VT_LPWSTR,
            ..Message::default()
        }
    }

    /// The body as text if its type is a string type (`VT_BSTR` or `VT_LPWSTR`, UTF-16LE, a
    /// trailing NUL dropped); `None` for any other body type, as MSMQ Triggers sees it.
    pub fn body_text(&self) -> Option<String> {
        if self.body_type != VT_BSTR && self.body_type != VT_LPWSTR {
            return None;
        }
        let units: Vec<u16> = self
            .body
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let units = units.strip_suffix(&[0]).unwrap_or(&units);
        Some(String::from_utf16_lossy(units))
    }

    /// When its time-to-be-received runs out, if it has one.
    pub fn expires_at(&self) -> Option<Timestamp> {
        self.time_to_be_received
            .map(|d| self.sent_time.saturating_add(d))
    }

    /// Checks the sender-set properties against MSMQ's limits.
    pub fn validate(&self) -> Result<()> {
        let label_len = self.label.encode_utf16().count();
        if label_len > MAX_LABEL_LEN {
            return Err(Error::new(
                ErrorCode::LabelTooLong,
                format!("label has {label_len} characters; the limit is {MAX_LABEL_LEN}"),
            ));
        }
        if self.body.len() > MAX_BODY_LEN {
            return Err(Error::new(
                ErrorCode::InsufficientResources,
                format!(
                    "body has {} bytes; MSMQ's message limit is {MAX_BODY_LEN} bytes (4 MB)",
                    self.body.len()
                ),
            ));
        }
        if self.priority > MAX_PRIORITY {
            return Err(Error::new(
                ErrorCode::IllegalPropertyValue,
                format!(
                    "priority {} is out of range 0..={MAX_PRIORITY}",
                    self.priority
                ),
            ));
        }
        Ok(())
    }
}

/// The size a message counts for against quotas.
pub(crate) fn footprint(msg: &Message) -> u64 {
    msg.body.len() as u64 + msg.label.len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_id_displays_like_system_messaging_and_round_trips() {
        let qm = Uuid::parse_str("2a0e7c9d-5b43-4b2f-9f4e-1c2d3e4f5a6b").unwrap();
        let id = MessageId::new(qm, 12345);
        assert_eq!(
            id.to_string(),
            "2a0e7c9d-5b43-4b2f-9f4e-1c2d3e4f5a6b\\12345"
        );
        assert_eq!(id.to_string().parse::<MessageId>().unwrap(), id);
        // .NET's Guid(byte[]) layout: the first field is little-endian.
        assert_eq!(&id.0[..4], &[0x9d, 0x7c, 0x0e, 0x2a]);
        assert_eq!(&id.0[16..], &12345u32.to_le_bytes());
        // Ordinals past i32::MAX print negative, as BitConverter.ToInt32 does.
        let big = MessageId::new(qm, 0x8000_0000);
        assert!(big.to_string().ends_with("\\-2147483648"));
        assert_eq!(big.to_string().parse::<MessageId>().unwrap(), big);
        for bad in [
            "",
            "x\\1",
            "2a0e7c9d-5b43-4b2f-9f4e-1c2d3e4f5a6b",
            "2a0e7c9d-5b43-4b2f-9f4e-1c2d3e4f5a6b\\x",
        ] {
            assert_eq!(
                bad.parse::<MessageId>().unwrap_err().code(),
                ErrorCode::InvalidParameter
            );
        }
    }

    #[test]
    fn defaults_are_msmqs() {
        let m = Message::new("x");
        assert_eq!(m.priority, 3);
        assert_eq!(m.delivery, Delivery::Express);
        assert_eq!(m.acknowledge, Acknowledge::NONE);
        assert_eq!(m.time_to_be_received, None);
        assert_eq!(m.class(), MessageClass::NORMAL);
    }

    #[test]
    fn limits_give_msmq_codes() {
        let ok = Message::new("x").with_label("é".repeat(249));
        assert!(ok.validate().is_ok());
        let long = Message::new("x").with_label("a".repeat(250));
        assert_eq!(long.validate().unwrap_err().code(), ErrorCode::LabelTooLong);
        // A character outside the BMP is two UTF-16 units, as in MSMQ's WCHAR count.
        let astral = Message::new("x").with_label("😀".repeat(125));
        assert_eq!(
            astral.validate().unwrap_err().code(),
            ErrorCode::LabelTooLong
        );
        let big = Message::new(vec![0u8; MAX_BODY_LEN + 1]);
        assert_eq!(
            big.validate().unwrap_err().code(),
            ErrorCode::InsufficientResources
        );
        assert!(Message::new(vec![0u8; MAX_BODY_LEN]).validate().is_ok());
        let prio = Message::new("x").with_priority(8);
        assert_eq!(
            prio.validate().unwrap_err().code(),
            ErrorCode::IllegalPropertyValue
        );
    }

    #[test]
    fn every_property_survives_serialization() {
        let admin = QueueName::parse(r".\private$\admin").unwrap();
        let mut m = Message::new("body")
            .with_label("label")
            .with_priority(5)
            .with_acknowledge(admin.clone(), Acknowledge::FULL_RECEIVE)
            .with_response_queue(QueueName::parse(r"DIRECT=TCP:10.0.0.1\private$\r").unwrap())
            .with_time_to_be_received(Duration::from_millis(1500))
            .with_journal(JournalFlags::DEADLETTER);
        m.id = MessageId::new(Uuid::new_v4(), 7);
        m.class = MessageClass::NACK_Q_PURGED;
        m.sent_time = Timestamp(1_000);
        m.lookup_id = 42;
        m.abort_count = 2;
        m.move_count = 1;
        m.transactional = true;
        m.destination = Some(Arc::new(admin));
        let text = serde_json::to_string(&m).unwrap();
        let back: Message = serde_json::from_str(&text).unwrap();
        assert_eq!(back, m);
        // A name that does not parse is refused on the way in.
        let bad = text.replace(r"private$\\admin", r"private$\\a b");
        assert!(serde_json::from_str::<Message>(&bad).is_err());
    }

    #[test]
    fn message_stays_small() {
        // Messages move inside the queue's deques and inbox; keep them compact (names are shared).
        assert!(
            std::mem::size_of::<Message>() <= 256,
            "{}",
            std::mem::size_of::<Message>()
        );
    }

    #[test]
    fn class_bits() {
        assert!(MessageClass::NACK_RECEIVE_REJECTED.is_nack());
        assert!(MessageClass::NACK_RECEIVE_REJECTED.is_receive());
        assert!(!MessageClass::ACK_REACH_QUEUE.is_nack());
        assert!(MessageClass::ACK_RECEIVE.is_receive());
        assert!(Acknowledge::FULL_RECEIVE.contains(Acknowledge::POS_RECEIVE));
        assert!(!Acknowledge::FULL_REACH_QUEUE.contains(Acknowledge::POS_RECEIVE));
    }
}
