//! The UserMessage packet (MS-MQMQ 2.2.20) and its headers, in the order they appear: User,
//! Transaction, Security, MessageProperties, Debug, Soap, MultiQueueFormat, then a SessionHeader
//! after PacketSize. The SecurityHeader is parsed and kept, never enforced (signatures and
//! encryption need Windows' keys).

use uuid::Uuid;

use super::cursor::{wide_len, Malformed, Reader, Writer};
use super::optional::{read_debug, read_multi_queue, read_soap, write_multi_queue, write_soap};
use super::packet::{patch_size, BaseHeader, SessionHeader};

/// A queue as a UserHeader names it; the variant is the DQ/AQ/RQ code (MS-MQMQ 2.2.19.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueFormat {
    /// 0: none.
    None,
    /// 1 (response queue only): the same as the administration queue.
    SameAsAdmin,
    /// 2: a private queue on the source host, by its number.
    PrivateOnSource(u32),
    /// 3: a private queue on the destination host, by its number.
    PrivateOnDestination(u32),
    /// 4 (response queue only): a private queue on the administration queue's host.
    PrivateOnAdminHost(u32),
    /// 5: a public queue by its GUID.
    Public(Uuid),
    /// 6: a private queue on another host: that queue manager and the queue's number.
    Private { qm: Uuid, id: u32 },
    /// 7: a direct format name as the wire carries it, without `DIRECT=` (`OS:host\q`,
    /// `TCP:10.0.0.1\private$\q`).
    Direct(String),
}

impl QueueFormat {
    fn code(&self) -> u32 {
        match self {
            QueueFormat::None => 0,
            QueueFormat::SameAsAdmin => 1,
            QueueFormat::PrivateOnSource(_) => 2,
            QueueFormat::PrivateOnDestination(_) => 3,
            QueueFormat::PrivateOnAdminHost(_) => 4,
            QueueFormat::Public(_) => 5,
            QueueFormat::Private { .. } => 6,
            QueueFormat::Direct(_) => 7,
        }
    }

    /// Reads the queue of type `code`; `allowed` lists the codes this field may take.
    fn read(
        r: &mut Reader<'_>,
        header: usize,
        code: u32,
        allowed: &[u32],
        field: &str,
    ) -> Result<QueueFormat, Malformed> {
        if !allowed.contains(&code) {
            return Err(r.bad(format!("{field} has queue type {code}")));
        }
        Ok(match code {
            0 => QueueFormat::None,
            1 => QueueFormat::SameAsAdmin,
            2 => QueueFormat::PrivateOnSource(r.u32(field)?),
            3 => QueueFormat::PrivateOnDestination(r.u32(field)?),
            4 => QueueFormat::PrivateOnAdminHost(r.u32(field)?),
            5 => QueueFormat::Public(r.guid(field)?),
            6 => QueueFormat::Private {
                qm: r.guid(field)?,
                id: r.u32(field)?,
            },
            _ => {
                let count = r.u16(field)? as usize;
                let name = r.wide(count, field)?;
                r.align(header, 4, field)?;
                QueueFormat::Direct(name)
            }
        })
    }

    fn write(&self, w: &mut Writer<'_>, header: usize) {
        match self {
            QueueFormat::None | QueueFormat::SameAsAdmin => {}
            QueueFormat::PrivateOnSource(id)
            | QueueFormat::PrivateOnDestination(id)
            | QueueFormat::PrivateOnAdminHost(id) => w.u32(*id),
            QueueFormat::Public(g) => w.guid(g),
            QueueFormat::Private { qm, id } => {
                w.guid(qm);
                w.u32(*id);
            }
            QueueFormat::Direct(name) => {
                w.u16(wide_len(name) as u16);
                w.wide(name);
                w.align(header, 4);
            }
        }
    }
}

/// UserHeader.Flags bits other than the queue types (which [`UserHeader`] holds as
/// [`QueueFormat`]s and encoding puts back).
pub mod user_flags {
    /// RC: routing servers that processed the packet (bits 0-4).
    pub const HOPS: u32 = 0x1F;
    /// DM: 1 = recoverable (bits 5-6).
    pub const RECOVERABLE: u32 = 0x20;
    /// JN: negative source journaling.
    pub const JOURNAL_NEGATIVE: u32 = 1 << 8;
    /// JP: positive source journaling.
    pub const JOURNAL_POSITIVE: u32 = 1 << 9;
    /// SH: a SecurityHeader is present.
    pub const SECURITY: u32 = 1 << 19;
    /// TH: a TransactionHeader is present.
    pub const TRANSACTION: u32 = 1 << 20;
    /// MP: a MessagePropertiesHeader is present (always).
    pub const PROPERTIES: u32 = 1 << 21;
    /// CQ: the ConnectorType GUID is present.
    pub const CONNECTOR: u32 = 1 << 22;
    /// MQ: a MultiQueueFormatHeader is present.
    pub const MULTI_QUEUE: u32 = 1 << 23;
    /// AH: the message came over HTTP.
    pub const HTTP: u32 = 1 << 25;
    /// HH: a SoapHeader is present.
    pub const SOAP: u32 = 1 << 28;
    /// DQ, AQ and RQ: the three queue types (bits 10-18).
    pub const QUEUE_TYPES: u32 = 0x7FC00;
}

/// Source, destination and routing of a message (MS-MQMQ 2.2.19.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserHeader {
    /// The queue manager that sent the message first.
    pub source_qm: Uuid,
    /// The destination queue manager (nil for a direct format name).
    pub destination_qm: Uuid,
    /// Seconds the message may wait to be received (0xFFFFFFFF: infinite).
    pub time_to_be_received: u32,
    /// Seconds since 1970 when it was sent.
    pub sent_time: u32,
    /// Unique per sending queue manager: with `source_qm`, the message's id.
    pub message_id: u32,
    /// Everything but the queue types ([`user_flags`]); which optional headers are present is
    /// taken from the [`UserMessage`] when encoding.
    pub flags: u32,
    pub destination: QueueFormat,
    pub admin: QueueFormat,
    pub response: QueueFormat,
    pub connector_type: Option<Uuid>,
}

/// TransactionHeader (MS-MQMQ 2.2.20.5): where a transactional message is in its sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransactionHeader {
    /// CG (bit 0), FA (1), FM (2), LM (3), the transaction's ID (bits 4-23).
    pub flags: u32,
    /// The sequence: Ordinal in the low 32 bits, TimeStamp in the high (compare as u64).
    pub sequence_id: u64,
    /// The message's place in the sequence, from 1.
    pub sequence_number: u32,
    /// The previous message's place (0: the first).
    pub previous_number: u32,
    /// Present iff flags bit 0 (CG).
    pub connector_qm: Option<Uuid>,
}

/// TransactionHeader.Flags.CG.
const TX_CONNECTOR: u32 = 1;

/// SecurityHeader (MS-MQMQ 2.2.20.6), kept as received: mqemu does not check signatures nor
/// decrypt bodies.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecurityHeader {
    /// ST (sender id type, bits 0-3), AU, EB (body encrypted, bit 5), DE, AI, AS.
    pub flags: u16,
    /// The sender's SID (ST = 1) or queue manager GUID (ST = 2).
    pub sender_id: Vec<u8>,
    pub encryption_key: Vec<u8>,
    pub signature: Vec<u8>,
    pub sender_cert: Vec<u8>,
    pub provider_info: Vec<u8>,
}

/// SecurityHeader.Flags.EB.
pub const SECURITY_ENCRYPTED: u16 = 0x0020;

/// MessagePropertiesHeader (MS-MQMQ 2.2.19.3): what an application sees of the message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessageProperties {
    /// Administration acknowledgements asked for: PA, PR, NA, NR (bits 0-3).
    pub ack_flags: u8,
    /// MSMQ's message class (MQMSG_CLASS_*).
    pub class: u16,
    pub correlation_id: [u8; 20],
    /// A PROPVARIANT type constant (8: VT_BSTR, 0x11: VT_UI1 array, ...).
    pub body_type: u32,
    /// The application-specific value.
    pub app_tag: u32,
    /// Bytes allocated for the body; may exceed its length (encrypted bodies).
    pub allocation_body_size: u32,
    pub privacy_level: u32,
    pub hash_algorithm: u32,
    pub encryption_algorithm: u32,
    /// At most 249 characters (500 bytes with the NUL).
    pub label: String,
    pub extension: Vec<u8>,
    pub body: Vec<u8>,
}

/// The most characters of a label, its NUL excluded.
pub const MAX_LABEL: usize = 249;

/// DebugHeader (MS-MQMQ 2.2.20.8): where trace reports go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DebugHeader {
    pub flags: u16,
    pub reserved: u16,
    /// Present iff QT (flags bits 0-1) is 1.
    pub queue: Option<Uuid>,
}

/// SoapHeader (MS-MQMQ 2.2.20.7): application strings a SOAP sender attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoapHeader {
    pub header: String,
    pub body: String,
}

/// One queue of a multiple-element format name (MS-MQMQ 2.2.18.1.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MqfElement {
    Public(Uuid),
    Private { qm: Uuid, id: u32 },
    Direct(String),
    DistributionList(Uuid),
}

/// MultiQueueFormatHeader (MS-MQMQ 2.2.20.1): every queue a message was sent to at once.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MultiQueueFormat {
    pub destinations: Vec<MqfElement>,
    pub admin: Vec<MqfElement>,
    pub response: Vec<MqfElement>,
    pub signature: Vec<u8>,
}

/// A message on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserMessage {
    pub base: BaseHeader,
    pub user: UserHeader,
    pub transaction: Option<TransactionHeader>,
    pub security: Option<SecurityHeader>,
    pub properties: MessageProperties,
    pub debug: Option<DebugHeader>,
    pub soap: Option<SoapHeader>,
    pub multi_queue: Option<MultiQueueFormat>,
    /// A session acknowledgement riding on the message (BaseHeader.Flags.SH).
    pub session: Option<SessionHeader>,
}

impl UserMessage {
    /// A message with only the headers every one has; the optional ones are absent.
    pub fn new(base: BaseHeader, user: UserHeader, properties: MessageProperties) -> UserMessage {
        UserMessage {
            base,
            user,
            transaction: None,
            security: None,
            properties,
            debug: None,
            soap: None,
            multi_queue: None,
            session: None,
        }
    }

    /// Reads the headers after `base`; `r` covers the whole packet (its SessionHeader too).
    pub(crate) fn read(base: BaseHeader, r: &mut Reader<'_>) -> Result<UserMessage, Malformed> {
        let start = r.pos();
        let source_qm = r.guid("UserHeader.SourceQueueManager")?;
        let destination_qm = r.guid("UserHeader.QueueManagerAddress")?;
        let time_to_be_received = r.u32("UserHeader.TimeToBeReceived")?;
        let sent_time = r.u32("UserHeader.SentTime")?;
        let message_id = r.u32("UserHeader.MessageID")?;
        let flags = r.u32("UserHeader.Flags")?;
        let queue = |shift: u32| (flags >> shift) & 7;
        let destination = QueueFormat::read(
            r,
            start,
            queue(10),
            &[0, 3, 5, 7],
            "UserHeader.DestinationQueue",
        )?;
        let admin = QueueFormat::read(
            r,
            start,
            queue(13),
            &[0, 2, 3, 5, 6, 7],
            "UserHeader.AdminQueue",
        )?;
        let response = QueueFormat::read(
            r,
            start,
            queue(16),
            &[0, 1, 2, 3, 4, 5, 6, 7],
            "UserHeader.ResponseQueue",
        )?;
        let connector_type = match flags & user_flags::CONNECTOR {
            0 => None,
            _ => Some(r.guid("UserHeader.ConnectorType")?),
        };
        if flags & user_flags::PROPERTIES == 0 {
            return Err(r.bad("UserHeader.Flags.MP is clear: no MessagePropertiesHeader"));
        }
        let transaction = match flags & user_flags::TRANSACTION {
            0 => None,
            _ => Some(read_transaction(r)?),
        };
        if transaction.is_some() && flags & user_flags::RECOVERABLE == 0 {
            return Err(r.bad("a transactional message that is not recoverable (TH set, DM 0)"));
        }
        let security = match flags & user_flags::SECURITY {
            0 => None,
            _ => Some(read_security(r)?),
        };
        let properties = read_properties(r)?;
        let debug = match base.has_debug() {
            false => None,
            true => Some(read_debug(r)?),
        };
        let soap = match flags & user_flags::SOAP {
            0 => None,
            _ => Some(read_soap(r)?),
        };
        let multi_queue = match flags & user_flags::MULTI_QUEUE {
            0 => None,
            _ => Some(read_multi_queue(r)?),
        };
        let end = base.packet_size as usize;
        if r.pos() > end {
            return Err(r.bad(format!("the headers end past PacketSize {end}")));
        }
        // Anything between the last header and PacketSize is padding.
        r.take(end - r.pos(), "padding")?;
        let session = match base.has_session() {
            false => None,
            true => Some(SessionHeader::read(r)?),
        };
        Ok(UserMessage {
            base,
            user: UserHeader {
                source_qm,
                destination_qm,
                time_to_be_received,
                sent_time,
                message_id,
                flags: flags & !user_flags::QUEUE_TYPES,
                destination,
                admin,
                response,
                connector_type,
            },
            transaction,
            security,
            properties,
            debug,
            soap,
            multi_queue,
            session,
        })
    }

    /// Appends the packet; PacketSize and the flags that say which headers are present are
    /// computed from the message.
    pub(crate) fn write(&self, w: &mut Writer<'_>) {
        let start = w.pos();
        let mut base = self.base;
        base.flags &= !(super::packet::base_flags::SESSION | super::packet::base_flags::DEBUG);
        if self.session.is_some() {
            base.flags |= super::packet::base_flags::SESSION;
        }
        if self.debug.is_some() {
            base.flags |= super::packet::base_flags::DEBUG;
        }
        base.write(w);
        let u = &self.user;
        let header = w.pos();
        w.guid(&u.source_qm);
        w.guid(&u.destination_qm);
        w.u32(u.time_to_be_received);
        w.u32(u.sent_time);
        w.u32(u.message_id);
        let present = |on: bool, bit: u32| if on { bit } else { 0 };
        let flags = (u.flags
            & !(user_flags::QUEUE_TYPES
                | user_flags::SECURITY
                | user_flags::TRANSACTION
                | user_flags::CONNECTOR
                | user_flags::MULTI_QUEUE
                | user_flags::SOAP))
            | user_flags::PROPERTIES
            | u.destination.code() << 10
            | u.admin.code() << 13
            | u.response.code() << 16
            | present(self.security.is_some(), user_flags::SECURITY)
            | present(self.transaction.is_some(), user_flags::TRANSACTION)
            | present(u.connector_type.is_some(), user_flags::CONNECTOR)
            | present(self.multi_queue.is_some(), user_flags::MULTI_QUEUE)
            | present(self.soap.is_some(), user_flags::SOAP);
        w.u32(flags);
        u.destination.write(w, header);
        u.admin.write(w, header);
        u.response.write(w, header);
        if let Some(g) = &u.connector_type {
            w.guid(g);
        }
        if let Some(t) = &self.transaction {
            let cg = if t.connector_qm.is_some() {
                TX_CONNECTOR
            } else {
                0
            };
            w.u32((t.flags & !TX_CONNECTOR) | cg);
            w.u64(t.sequence_id);
            w.u32(t.sequence_number);
            w.u32(t.previous_number);
            if let Some(g) = &t.connector_qm {
                w.guid(g);
            }
        }
        if let Some(s) = &self.security {
            write_security(w, s);
        }
        write_properties(w, &self.properties);
        if let Some(d) = &self.debug {
            let qt = if d.queue.is_some() { 1 } else { 0 };
            w.u16((d.flags & !3) | qt);
            w.u16(d.reserved);
            if let Some(g) = &d.queue {
                w.guid(g);
            }
        }
        if let Some(s) = &self.soap {
            write_soap(w, s);
        }
        if let Some(m) = &self.multi_queue {
            write_multi_queue(w, m);
        }
        let size = w.pos() - start;
        patch_size(w.out, start, size);
        if let Some(s) = &self.session {
            s.write(w);
        }
    }
}

fn read_transaction(r: &mut Reader<'_>) -> Result<TransactionHeader, Malformed> {
    let flags = r.u32("TransactionHeader.Flags")?;
    Ok(TransactionHeader {
        flags,
        sequence_id: r.u64("TransactionHeader.TxSequenceID")?,
        sequence_number: r.u32("TransactionHeader.TxSequenceNumber")?,
        previous_number: r.u32("TransactionHeader.PreviousTxSequenceNumber")?,
        connector_qm: match flags & TX_CONNECTOR {
            0 => None,
            _ => Some(r.guid("TransactionHeader.ConnectorQMGuid")?),
        },
    })
}

fn read_security(r: &mut Reader<'_>) -> Result<SecurityHeader, Malformed> {
    let start = r.pos();
    let flags = r.u16("SecurityHeader.Flags")?;
    let sizes = [
        r.u16("SecurityHeader.SenderIdSize")? as usize,
        r.u16("SecurityHeader.EncryptionKeySize")? as usize,
        r.u16("SecurityHeader.SignatureSize")? as usize,
        r.u32("SecurityHeader.SenderCertSize")? as usize,
        r.u32("SecurityHeader.ProviderInfoSize")? as usize,
    ];
    // Located by the sizes, whatever Flags.AI says (the spec's own example has AI clear and a
    // SID present).
    let mut parts = sizes.iter().map(|&n| {
        let part = r.take(n, "SecurityHeader.SecurityData")?.to_vec();
        r.align(start, 4, "SecurityHeader.SecurityData")?;
        Ok::<_, Malformed>(part)
    });
    let mut next = || parts.next().expect("five parts");
    Ok(SecurityHeader {
        flags,
        sender_id: next()?,
        encryption_key: next()?,
        signature: next()?,
        sender_cert: next()?,
        provider_info: next()?,
    })
}

fn write_security(w: &mut Writer<'_>, s: &SecurityHeader) {
    let start = w.pos();
    w.u16(s.flags);
    w.u16(s.sender_id.len() as u16);
    w.u16(s.encryption_key.len() as u16);
    w.u16(s.signature.len() as u16);
    w.u32(s.sender_cert.len() as u32);
    w.u32(s.provider_info.len() as u32);
    for part in [
        &s.sender_id,
        &s.encryption_key,
        &s.signature,
        &s.sender_cert,
        &s.provider_info,
    ] {
        w.bytes(part);
        w.align(start, 4);
    }
}

fn read_properties(r: &mut Reader<'_>) -> Result<MessageProperties, Malformed> {
    let start = r.pos();
    let ack_flags = r.u8("MessagePropertiesHeader.Flags")?;
    let label_len = r.u8("MessagePropertiesHeader.LabelLength")? as usize;
    if label_len > MAX_LABEL + 1 {
        return Err(r.bad(format!("LabelLength {label_len} is over 250 characters")));
    }
    let class = r.u16("MessagePropertiesHeader.MessageClass")?;
    let correlation_id = r.array("MessagePropertiesHeader.CorrelationID")?;
    let body_type = r.u32("MessagePropertiesHeader.BodyType")?;
    let app_tag = r.u32("MessagePropertiesHeader.ApplicationTag")?;
    let message_size = r.u32("MessagePropertiesHeader.MessageSize")? as usize;
    let allocation_body_size = r.u32("MessagePropertiesHeader.AllocationBodySize")?;
    let privacy_level = r.u32("MessagePropertiesHeader.PrivacyLevel")?;
    let hash_algorithm = r.u32("MessagePropertiesHeader.HashAlgorithm")?;
    let encryption_algorithm = r.u32("MessagePropertiesHeader.EncryptionAlgorithm")?;
    let extension_size = r.u32("MessagePropertiesHeader.ExtensionSize")? as usize;
    let label = match label_len {
        0 => String::new(),
        n => r.wide(n * 2, "MessagePropertiesHeader.Label")?,
    };
    let extension = r
        .take(extension_size, "MessagePropertiesHeader.ExtensionData")?
        .to_vec();
    // MessageSize sizes the body (MS-MQMQ 2.2.19.3); AllocationBodySize is kept as sent.
    let body = r
        .take(message_size, "MessagePropertiesHeader.MessageBody")?
        .to_vec();
    r.align(start, 4, "MessagePropertiesHeader padding")?;
    Ok(MessageProperties {
        ack_flags,
        class,
        correlation_id,
        body_type,
        app_tag,
        allocation_body_size,
        privacy_level,
        hash_algorithm,
        encryption_algorithm,
        label,
        extension,
        body,
    })
}

fn write_properties(w: &mut Writer<'_>, p: &MessageProperties) {
    let start = w.pos();
    w.u8(p.ack_flags);
    w.u8(match p.label.is_empty() {
        true => 0,
        false => (wide_len(&p.label) / 2) as u8,
    });
    w.u16(p.class);
    w.bytes(&p.correlation_id);
    w.u32(p.body_type);
    w.u32(p.app_tag);
    w.u32(p.body.len() as u32);
    w.u32(p.allocation_body_size.max(p.body.len() as u32));
    w.u32(p.privacy_level);
    w.u32(p.hash_algorithm);
    w.u32(p.encryption_algorithm);
    w.u32(p.extension.len() as u32);
    if !p.label.is_empty() {
        w.wide(&p.label);
    }
    w.bytes(&p.extension);
    w.bytes(&p.body);
    w.align(start, 4);
}
