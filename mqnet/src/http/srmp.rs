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

fn bad(why: impl Into<String>) -> Malformed {
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

/// The parameters of a `Content-Type` value: `boundary` and `type`, unquoted.
fn content_type_param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"'))
    })
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// One MIME part: its headers (lower-cased names) and its content.
#[derive(Debug)]
struct Part<'a> {
    headers: Vec<(String, &'a str)>,
    content: &'a [u8],
}

impl Part<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
    }
}

/// Splits a `multipart/related` body on `--boundary`. A part ends where its `Content-Length`
/// says when the delimiter follows there (binary bodies may contain anything); otherwise at the
/// next delimiter (MC-MQSRM's examples put the delimiter right after the envelope, with no line
/// break, and their lengths do not match the text).
fn parts<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, Malformed> {
    if boundary.is_empty() || boundary.len() > 200 {
        return Err(bad(
            "the multipart boundary is empty or longer than 200 characters",
        ));
    }
    let delim = format!("--{boundary}");
    let delim = delim.as_bytes();
    let mut at = find(body, delim, 0).ok_or_else(|| bad("the body has no multipart delimiter"))?;
    let mut out = Vec::new();
    loop {
        at += delim.len();
        if body[at..].starts_with(b"--") {
            return Ok(out); // the closing delimiter
        }
        // The rest of the delimiter line.
        let line_end = find(body, b"\n", at).ok_or_else(|| bad("a part has no headers"))?;
        let mut headers = Vec::new();
        let mut pos = line_end + 1;
        loop {
            let end = find(body, b"\n", pos).ok_or_else(|| bad("a part's headers do not end"))?;
            let line = &body[pos..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            pos = end + 1;
            if line.is_empty() {
                break;
            }
            let line = std::str::from_utf8(line).map_err(|_| bad("a part header is not text"))?;
            let (k, v) = line
                .split_once(':')
                .ok_or_else(|| bad(format!("a part header has no `:`: {line:?}")))?;
            if headers.len() >= 32 {
                return Err(bad("a part has more than 32 headers"));
            }
            headers.push((k.trim().to_ascii_lowercase(), v.trim()));
        }
        let declared = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok());
        let by_length = declared.and_then(|n| {
            let end = pos.checked_add(n).filter(|&e| e <= body.len())?;
            let rest = &body[end..];
            let rest = rest.strip_prefix(b"\r\n").unwrap_or(rest);
            rest.starts_with(delim).then_some(end)
        });
        let (end, next) = match by_length {
            Some(end) => (end, find(body, delim, end).expect("checked just now")),
            None => {
                let next =
                    find(body, delim, pos).ok_or_else(|| bad("a part has no closing delimiter"))?;
                let mut end = next;
                if body[..end].ends_with(b"\r\n") {
                    end -= 2;
                } else if body[..end].ends_with(b"\n") {
                    end -= 1;
                }
                (end.max(pos), next)
            }
        };
        out.push(Part {
            headers,
            content: &body[pos..end],
        });
        if out.len() > 16 {
            return Err(bad("more than 16 MIME parts"));
        }
        at = next;
    }
}

/// `20070719T031140` (UTC) in milliseconds since 1970.
fn srmp_time(s: &str) -> Result<u64, Malformed> {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]");
    let t = time::PrimitiveDateTime::parse(s.trim(), &format)
        .map_err(|e| bad(format!("`{s}` is not an SRMP time (yyyymmddThhmmss): {e}")))?;
    let secs = t.assume_utc().unix_timestamp();
    u64::try_from(secs)
        .map(|s| s * 1000)
        .map_err(|_| bad(format!("`{s}` is before 1970")))
}

fn number<T: std::str::FromStr>(node: roxmltree::Node<'_, '_>, what: &str) -> Result<T, Malformed> {
    let text = node.text().unwrap_or("").trim();
    text.parse()
        .map_err(|_| bad(format!("<{what}> is not a number: {text:?}")))
}

fn child<'a, 'i>(node: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    node.children()
        .find(|c| c.is_element() && c.tag_name().name().eq_ignore_ascii_case(name))
}

fn text_of<'a>(node: roxmltree::Node<'a, '_>, name: &str) -> Option<&'a str> {
    child(node, name).map(|c| c.text().unwrap_or("").trim())
}

/// Parses an SRMP POST: its `Content-Type` and body.
pub fn parse(content_type: &str, body: &Bytes) -> Result<Srmp, Malformed> {
    let kind = content_type.split(';').next().unwrap_or("").trim();
    let (envelope, parts) = if kind.eq_ignore_ascii_case("multipart/related") {
        let boundary = content_type_param(content_type, "boundary")
            .ok_or_else(|| bad("multipart/related without a boundary"))?;
        let parts = parts(body, boundary)?;
        let first = parts.first().ok_or_else(|| bad("no MIME parts"))?;
        (first.content, parts)
    } else if kind.eq_ignore_ascii_case("text/xml") {
        (&body[..], Vec::new())
    } else {
        return Err(bad(format!(
            "an SRMP message is multipart/related or text/xml, not `{kind}`"
        )));
    };
    let text = std::str::from_utf8(envelope).map_err(|_| bad("the SOAP envelope is not UTF-8"))?;
    if text.contains("<!DOCTYPE") || text.contains("<!ENTITY") {
        return Err(bad("a SOAP envelope has no DTD"));
    }
    let doc = roxmltree::Document::parse(text)
        .map_err(|e| bad(format!("the SOAP envelope is not XML: {e}")))?;
    let env = doc.root_element();
    if !env.tag_name().name().eq_ignore_ascii_case("Envelope") {
        return Err(bad("the document is not a SOAP Envelope"));
    }
    let head = child(env, "Header").ok_or_else(|| bad("the envelope has no Header"))?;
    let path = child(head, "path").ok_or_else(|| bad("the header has no <path>"))?;
    let mut m = Srmp::default();
    let action = text_of(path, "action").ok_or_else(|| bad("<path> has no <action>"))?;
    m.label = action.strip_prefix("MSMQ:").map(str::to_owned);
    m.to = text_of(path, "to")
        .ok_or_else(|| bad("<path> has no <to>"))?
        .to_owned();
    if let Some(rev) = child(path, "rev") {
        if let Some(via) = text_of(rev, "via") {
            // URL schemes are case-insensitive (`HTTP://` is what MSMQ's names print).
            let scheme = via.get(..8).unwrap_or(via).to_ascii_lowercase();
            m.response = Some(
                if scheme.starts_with("http://") || scheme.starts_with("https://") {
                    format!("DIRECT={via}")
                } else {
                    via.strip_prefix("MSMQ:").unwrap_or(via).to_owned()
                },
            );
        }
    }
    let id = text_of(path, "id").ok_or_else(|| bad("<path> has no <id>"))?;
    if let Some(props) = child(head, "properties") {
        if let Some(sent) = text_of(props, "sentAt") {
            m.sent_at = Some(srmp_time(sent)?);
        }
    }
    if let Some(services) = child(head, "services") {
        m.durable = child(services, "durable").is_some();
        let send_to = |name: &str| {
            child(services, name)
                .and_then(|r| text_of(r, "sendTo"))
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
        };
        m.delivery_receipt_to = send_to("deliveryReceiptRequest");
        m.commitment_receipt = send_to("commitmentReceiptRequest").map(|url| {
            let r = child(services, "commitmentReceiptRequest").expect("has a sendTo");
            let positive_only = child(r, "positiveOnly").is_some();
            let negative_only = child(r, "negativeOnly").is_some();
            // Both or neither: every outcome (the 4.3 example writes both).
            let ack = match (positive_only, negative_only) {
                (true, false) => Acknowledge::POS_RECEIVE,
                (false, true) => Acknowledge::NEG_RECEIVE,
                _ => Acknowledge(Acknowledge::POS_RECEIVE.0 | Acknowledge::NEG_RECEIVE.0),
            };
            (url, ack)
        });
        m.receipt_requested = child(services, "deliveryReceiptRequest").is_some()
            || child(services, "commitmentReceiptRequest").is_some();
    }
    if let Some(stream) = child(head, "stream") {
        let sid = text_of(stream, "streamId").ok_or_else(|| bad("<stream> has no <streamId>"))?;
        let current = child(stream, "current").ok_or_else(|| bad("<stream> has no <current>"))?;
        let (sender, id) = sid.rsplit_once('\\').unwrap_or(("", sid));
        m.stream = Some(Stream {
            id: id.to_owned(),
            sender: sender.to_owned(),
            receipts_to: child(stream, "start")
                .and_then(|s| text_of(s, "sendReceiptsTo"))
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty()),
            current: number(current, "current")?,
            previous: match child(stream, "previous") {
                Some(p) => Some(number(p, "previous")?),
                None => None,
            },
        });
    }
    m.ack_receipt = ["deliveryReceipt", "commitmentReceipt"]
        .iter()
        .any(|r| child(head, r).is_some());
    m.receipt = m.ack_receipt || child(head, "streamReceipt").is_some();
    if let Some(msmq) = child(head, "Msmq") {
        let mut p = MsmqProps::default();
        if let Some(c) = child(msmq, "Class") {
            p.class = number(c, "Class")?;
        }
        p.priority = match child(msmq, "Priority") {
            Some(n) => number(n, "Priority")?,
            None => mqcore::message::DEFAULT_PRIORITY,
        };
        p.journal = child(msmq, "Journal").is_some();
        p.dead_letter = child(msmq, "DeadLetter").is_some();
        if let Some(c) = text_of(msmq, "Correlation") {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(c)
                .map_err(|_| bad("<Correlation> is not base64"))?;
            let arr: [u8; 20] = bytes
                .try_into()
                .map_err(|_| bad("<Correlation> is not 20 bytes"))?;
            p.correlation = Some(arr);
        }
        if let Some(n) = child(msmq, "App") {
            p.app = number(n, "App")?;
        }
        if let Some(n) = child(msmq, "BodyType") {
            p.body_type = number(n, "BodyType")?;
        }
        if let Some(g) = text_of(msmq, "SourceQmGuid") {
            p.source = Some(
                g.parse()
                    .map_err(|_| bad(format!("<SourceQmGuid> is not a GUID: {g:?}")))?,
            );
        }
        if let Some(t) = text_of(msmq, "TTrq") {
            p.ttrq = Some(srmp_time(t)?);
        }
        let rest = id
            .strip_prefix("uuid:")
            .ok_or_else(|| bad(format!("<id> is not uuid:<index>@<guid>: {id:?}")))?;
        let (index, guid) = rest
            .split_once('@')
            .ok_or_else(|| bad(format!("<id> is not uuid:<index>@<guid>: {id:?}")))?;
        let index: u32 = index
            .parse()
            .map_err(|_| bad(format!("<id>'s index is not a number: {id:?}")))?;
        let guid: Uuid = guid
            .parse()
            .map_err(|_| bad(format!("<id>'s GUID is not a GUID: {id:?}")))?;
        m.id = Some((index, guid));
        m.msmq = Some(p);
    }
    for part in parts.iter().skip(1) {
        let cid = part.header("content-id").unwrap_or("");
        let cid = cid.trim_matches(['<', '>']);
        if cid.starts_with("body@") {
            m.body = body.slice_ref(part.content);
        } else if cid.starts_with("extension@") {
            m.extension = body.slice_ref(part.content);
        }
    }
    Ok(m)
}

impl Srmp {
    /// The destination's format name (`DIRECT=` and `<to>`).
    pub fn destination(&self) -> String {
        format!("DIRECT={}", self.to)
    }

    /// Whether this is a user message (class normal, no receipt elements), stored in its queue
    /// (acknowledgement receipts are stored too, [`Srmp::ack_receipt`]).
    pub fn is_user_message(&self) -> bool {
        !self.receipt
            && self
                .msmq
                .as_ref()
                .is_none_or(|p| p.class == MessageClass::NORMAL.0)
    }

    /// The message as the engine keeps it, stamped as its sender did.
    pub fn message(&self, destination: Option<QueueName>) -> Result<Message, Malformed> {
        let mut msg = Message::new(self.body.clone());
        msg.label = self.label.clone().unwrap_or_default();
        msg.extension = self.extension.clone();
        if self.durable || self.stream.is_some() {
            msg.delivery = Delivery::Recoverable;
        }
        if let Some(r) = &self.response {
            msg.response_queue = QueueName::parse(r).ok().map(Arc::new);
        }
        if let Some((url, ack)) = &self.commitment_receipt {
            // The engine acknowledges the receive to the admin queue; the transfer carries
            // the acknowledgement back over SRMP as a commitment receipt.
            if let Ok(admin) = QueueName::parse(&format!("DIRECT={url}")) {
                msg.admin_queue = Some(Arc::new(admin));
                msg.acknowledge = *ack;
            }
        }
        let p = self.msmq.clone().unwrap_or_default();
        if self.msmq.is_some() {
            if p.priority > mqcore::message::MAX_PRIORITY {
                return Err(bad(format!("<Priority> {} is over 7", p.priority)));
            }
            msg.priority = p.priority;
            msg.correlation_id = p.correlation.map(MessageId);
            msg.app_specific = p.app;
            msg.body_type = p.body_type;
            let mut journal = 0;
            if p.journal {
                journal |= JournalFlags::JOURNAL.0;
            }
            if p.dead_letter {
                journal |= JournalFlags::DEADLETTER.0;
            }
            msg.journal = JournalFlags(journal);
        }
        if self.stream.is_some() {
            msg.priority = 0;
        }
        // Without <Msmq> the id is (NULL GUID, 1), which skips duplicate detection
        // (3.1.5.1.11): a fresh id keeps it from matching any other message.
        let (index, guid) = self.id.unwrap_or_else(|| (1, Uuid::new_v4()));
        let source = p.source.unwrap_or(guid);
        Ok(arriving(
            msg,
            Origin {
                id: MessageId::new(guid, index),
                class: MessageClass(p.class),
                sent: Timestamp(self.sent_at.unwrap_or(0)),
                source,
                destination,
                transactional: self.stream.is_some(),
            },
        ))
    }
}

/// Escapes text for an XML element or attribute.
pub(crate) fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Milliseconds since 1970 as an SRMP time (`20070719T031140`, UTC, whole seconds).
pub(crate) fn srmp_time_text(ms: u64) -> String {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]");
    let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| "20380119T031407".to_owned())
}

/// A receipt's `<expiresAt>` as Windows writes it: the end of 32-bit time.
const NEVER: &str = "20380119T031407";

/// Who sends a receipt, where and when.
pub(crate) struct Receipt<'a> {
    /// `uuid:<index>@<guid>`.
    pub(crate) id: &'a str,
    /// The sending queue manager.
    pub(crate) source: Uuid,
    pub(crate) to: &'a str,
    /// The original message's destination, when known.
    pub(crate) via: Option<&'a str>,
    pub(crate) action: &'a str,
    /// Milliseconds since 1970.
    pub(crate) sent: u64,
}

/// A receipt (MC-MQSRM 2.2.5.4 to 2.2.5.6, examples 4.3 and 4.4): a `text/xml` envelope with
/// `element` and the `<Msmq>` properties class, priority and correlation.
pub(crate) fn receipt_envelope(
    r: &Receipt<'_>,
    element: &str,
    (class, priority, correlation): (MessageClass, u8, &[u8]),
) -> String {
    let via = r
        .via
        .map(|v| format!("<rev><via>{}</via></rev>", xml_escape(v)))
        .unwrap_or_default();
    format!(
        concat!(
            r#"<se:Envelope xmlns:se="http://schemas.xmlsoap.org/soap/envelope/" xmlns="http://schemas.xmlsoap.org/srmp/"><se:Header>"#,
            r#"<path xmlns="http://schemas.xmlsoap.org/rp/" se:mustUnderstand="1"><action>{action}</action><to>{to}</to>{via}<id>{id}</id></path>"#,
            r#"<properties se:mustUnderstand="1"><expiresAt>{never}</expiresAt><sentAt>{sent}</sentAt></properties>"#,
            "{element}",
            r#"<Msmq xmlns="msmq.namespace.xml"><Class>{class}</Class><Priority>{priority}</Priority><Correlation>{correlation}</Correlation><App>0</App><BodyType>0</BodyType><HashAlgorithm>0</HashAlgorithm><SourceQmGuid>{guid}</SourceQmGuid><TTrq>{ttrq}</TTrq></Msmq>"#,
            "</se:Header><se:Body></se:Body></se:Envelope>"
        ),
        action = xml_escape(r.action),
        to = xml_escape(r.to),
        via = via,
        id = r.id,
        never = NEVER,
        sent = srmp_time_text(r.sent),
        element = element,
        class = class.0,
        priority = priority,
        correlation = base64::engine::general_purpose::STANDARD.encode(correlation),
        guid = r.source,
        ttrq = srmp_time_text(r.sent + 4 * 24 * 3600 * 1000),
    )
}

/// An acknowledgement on its way to an admin queue over HTTP, as the receipt SRMP has for it:
/// arrival as a `<deliveryReceipt>`, receipt by an application (or a negative outcome) as a
/// `<commitmentReceipt>`; `None` for other messages and for one that correlates with nothing.
fn as_receipt(msg: &Message, to: &str) -> Option<String> {
    let class = msg.class();
    let original = msg.correlation_id?;
    let when = srmp_time_text(msg.sent_time().0);
    let original_id = format!("uuid:{}@{}", original.ordinal(), original.qm_guid());
    let element = if class == MessageClass::ACK_REACH_QUEUE {
        format!("<deliveryReceipt><receivedAt>{when}</receivedAt><id>{original_id}</id></deliveryReceipt>")
    } else if class == MessageClass::ACK_RECEIVE || class.0 & 0x8000 != 0 {
        let decision = if class == MessageClass::ACK_RECEIVE {
            "positive"
        } else {
            "negative"
        };
        format!("<commitmentReceipt><decidedAt>{when}</decidedAt><decision>{decision}</decision><id>{original_id}</id></commitmentReceipt>")
    } else {
        return None;
    };
    let id = msg.id();
    Some(receipt_envelope(
        &Receipt {
            id: &format!("uuid:{}@{}", id.ordinal(), id.qm_guid()),
            source: msg.source_machine(),
            to,
            via: None,
            action: "MSMQ:",
            sent: msg.sent_time().0,
        },
        &element,
        (class, msg.priority, original.as_bytes()),
    ))
}

/// The URL of an admin queue SRMP can name (`DIRECT=HTTP://...`), for receipt requests.
fn http_url(name: &QueueName) -> Option<String> {
    let text = name.to_string();
    let rest = text
        .get(..12)
        .filter(|p| p.eq_ignore_ascii_case("DIRECT=HTTP:"))?;
    Some(format!("http:{}", &text[rest.len()..]))
}

/// `msg` as SRMP for the destination URL `to` (`http://host/msmq/private$/q`): the content
/// type and the body of the POST. A transactional message goes in `stream` (its
/// `receipts_to`, on the first of a stream, names where stream receipts go; its `sender`, when
/// empty, is `uid:` and the message's queue manager). The inverse of [`parse`] for every
/// property SRMP carries (times to the second). An acknowledgement for an admin queue goes as
/// the receipt it stands for.
pub fn serialize(msg: &Message, to: &str, stream: Option<&Stream>) -> (String, Vec<u8>) {
    if let Some(receipt) = as_receipt(msg, to) {
        return ("text/xml".to_owned(), receipt.into_bytes());
    }
    let id = msg.id();
    let guid = id.qm_guid();
    let boundary = format!("MSMQ - SOAP boundary, {}", id.ordinal() % 100_000);
    let mut env = String::with_capacity(1024);
    env.push_str(r#"<se:Envelope xmlns:se="http://schemas.xmlsoap.org/soap/envelope/" xmlns="http://schemas.xmlsoap.org/srmp/"><se:Header>"#);
    env.push_str(r#"<path xmlns="http://schemas.xmlsoap.org/rp/" se:mustUnderstand="1">"#);
    env.push_str(&format!(
        "<action>MSMQ:{}</action><to>{}</to><id>uuid:{}@{guid}</id>",
        xml_escape(&msg.label),
        xml_escape(to),
        id.ordinal()
    ));
    if let Some(r) = &msg.response_queue {
        let r = r.to_string();
        let via = match r.get(..7) {
            Some(p)
                if p.eq_ignore_ascii_case("DIRECT=")
                    && r[7..].to_ascii_lowercase().starts_with("http") =>
            {
                r[7..].to_owned()
            }
            _ => format!("MSMQ:{r}"),
        };
        env.push_str(&format!("<rev><via>{}</via></rev>", xml_escape(&via)));
    }
    env.push_str("</path>");
    let sent = msg.sent_time().0;
    let ttrq = msg
        .time_to_reach_queue
        .map_or(u64::from(u32::MAX >> 1) * 1000, |d| {
            sent.saturating_add(d.as_millis() as u64)
        });
    env.push_str(&format!(
        r#"<properties se:mustUnderstand="1"><expiresAt>{}</expiresAt><sentAt>{}</sentAt></properties>"#,
        srmp_time_text(ttrq),
        srmp_time_text(sent)
    ));
    let mut services = String::new();
    if msg.delivery == Delivery::Recoverable && stream.is_none() {
        services.push_str("<durable/>");
    }
    // Acknowledgements to an admin queue SRMP can name become receipt requests.
    if let Some(admin) = msg.admin_queue.as_deref().and_then(http_url) {
        let ack = msg.acknowledge;
        if ack.contains(Acknowledge::POS_ARRIVAL) {
            services.push_str(&format!(
                "<deliveryReceiptRequest><sendTo>{}</sendTo></deliveryReceiptRequest>",
                xml_escape(&admin)
            ));
        }
        let (pos, neg) = (
            ack.contains(Acknowledge::POS_RECEIVE),
            ack.contains(Acknowledge::NEG_RECEIVE),
        );
        if pos || neg {
            services.push_str(&format!(
                "<commitmentReceiptRequest><sendTo>{}</sendTo>{}</commitmentReceiptRequest>",
                xml_escape(&admin),
                match (pos, neg) {
                    (true, false) => "<positiveOnly/>",
                    (false, true) => "<negativeOnly/>",
                    _ => "",
                }
            ));
        }
    }
    if !services.is_empty() {
        env.push_str(&format!(
            r#"<services se:mustUnderstand="1">{services}</services>"#
        ));
    }
    if let Some(s) = stream {
        let sender = if s.sender.is_empty() {
            format!("uid:{guid}")
        } else {
            xml_escape(&s.sender)
        };
        env.push_str(&format!(
            r#"<stream se:mustUnderstand="1"><streamId>{sender}\{}</streamId><current>{}</current>"#,
            xml_escape(&s.id),
            s.current
        ));
        if let Some(p) = s.previous {
            env.push_str(&format!("<previous>{p}</previous>"));
        }
        if let Some(url) = &s.receipts_to {
            env.push_str(&format!(
                "<start><sendReceiptsTo>{}</sendReceiptsTo></start>",
                xml_escape(url)
            ));
        }
        env.push_str("</stream>");
    }
    env.push_str(&format!(
        r#"<Msmq xmlns="msmq.namespace.xml"><Class>{}</Class><Priority>{}</Priority>"#,
        msg.class().0,
        msg.priority
    ));
    if msg.journal.contains(JournalFlags::JOURNAL) {
        env.push_str("<Journal/>");
    }
    if msg.journal.contains(JournalFlags::DEADLETTER) {
        env.push_str("<DeadLetter/>");
    }
    if let Some(c) = &msg.correlation_id {
        env.push_str(&format!(
            "<Correlation>{}</Correlation>",
            base64::engine::general_purpose::STANDARD.encode(c.as_bytes())
        ));
    }
    env.push_str(&format!(
        "<App>{}</App><BodyType>{}</BodyType><SourceQmGuid>{}</SourceQmGuid><TTrq>{}</TTrq></Msmq>",
        msg.app_specific,
        msg.body_type,
        msg.source_machine(),
        srmp_time_text(ttrq)
    ));
    env.push_str("</se:Header><se:Body></se:Body></se:Envelope>");
    let mut body = Vec::with_capacity(env.len() + msg.body.len() + 512);
    let part = |body: &mut Vec<u8>, headers: &str, content: &[u8]| {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\n{headers}Content-Length: {}\r\n\r\n",
                content.len()
            )
            .as_bytes(),
        );
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    };
    part(
        &mut body,
        "Content-Type: text/xml; charset=UTF-8\r\n",
        env.as_bytes(),
    );
    part(
        &mut body,
        &format!("Content-Type: application/octet-stream\r\nContent-Id: body@{guid}\r\n"),
        &msg.body,
    );
    if !msg.extension.is_empty() {
        part(
            &mut body,
            &format!("Content-Type: application/octet-stream\r\nContent-Id: extension@{guid}\r\n"),
            &msg.extension,
        );
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (
        format!(r#"multipart/related; boundary="{boundary}"; type=text/xml"#),
        body,
    )
}

fn srmp_refusal(
    status: StatusCode,
    detail: String,
) -> (StatusCode, [(header::HeaderName, &'static str); 1], String) {
    let body = serde_json::json!({
        "type": "urn:mqemu:error:SRMP",
        "title": "SRMP message refused",
        "status": status.as_u16(),
        "detail": detail,
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
}

pub(super) fn routes() -> utoipa_axum::router::OpenApiRouter<Arc<AppState>> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(receive_private))
        .routes(utoipa_axum::routes!(receive_public))
}

/// Takes an SRMP message (MC-MQSRM) for a private queue: a Windows queue manager's send to
/// `DIRECT=HTTP://host/msmq/private$/<queue>`. `200` with an empty body once the message is
/// stored (or recognized as a resend); `400` if it is malformed or its destination is not a
/// queue here that takes it (the envelope's `<to>` names the queue).
#[utoipa::path(post, path = "/msmq/private$/{queue}", tag = "srmp",
    params(("queue" = String, Path, description = "The private queue's name")),
    request_body(content = String, content_type = "multipart/related", description = "MC-MQSRM: a SOAP envelope part, then the body part"),
    responses((status = 200, description = "stored, or a resend recognized"), (status = 400, body = Problem),
        (status = 500, description = "over quota (3.1.5.1.12)", body = Problem)))]
async fn receive_private(
    state: State<Arc<AppState>>,
    caller: Caller,
    Path(queue): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    receive(state, caller, queue, headers, body).await
}

/// Takes an SRMP message sent to a public-style name, `DIRECT=HTTP://host/msmq/<queue>`
/// (public queues need Active Directory, so such a message is refused unless `<to>` names a
/// private queue here).
#[utoipa::path(post, path = "/msmq/{queue}", tag = "srmp",
    params(("queue" = String, Path, description = "The queue's name")),
    request_body(content = String, content_type = "multipart/related", description = "MC-MQSRM: a SOAP envelope part, then the body part"),
    responses((status = 200, description = "stored, or a resend recognized"), (status = 400, body = Problem)))]
async fn receive_public(
    state: State<Arc<AppState>>,
    caller: Caller,
    Path(queue): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    receive(state, caller, queue, headers, body).await
}

async fn receive(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    queue: String,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let m = match parse(ctype, &body) {
        Ok(m) => m,
        Err(Malformed(why)) => {
            tracing::info!(%queue, %why, "SRMP message refused");
            return srmp_refusal(StatusCode::BAD_REQUEST, why).into_response();
        }
    };
    if !m.is_user_message() {
        // A receipt is answered 200 whatever becomes of it: refusing one would only have it
        // sent again. Stream receipts need nothing here (egress reads verdicts instead).
        if m.ack_receipt {
            if let Err(why) = store_acknowledgement(&state, &caller, &m) {
                tracing::info!(to = %m.to, %why, "an SRMP receipt was not stored");
            }
        }
        return StatusCode::OK.into_response();
    }
    let dest = m.destination();
    let parsed = match QueueName::parse(&dest) {
        Ok(n) => n,
        Err(e) => {
            return srmp_refusal(StatusCode::BAD_REQUEST, format!("<to>: {}", e.detail()))
                .into_response()
        }
    };
    if let Err(e) = caller.check(Right::Send, &dest) {
        return e.into_response();
    }
    let q = match state.qm.open_name(&parsed) {
        Ok(q) => q,
        Err(e) => {
            return srmp_refusal(
                StatusCode::BAD_REQUEST,
                format!("{dest} is not a queue here: {}", e.detail()),
            )
            .into_response()
        }
    };
    if q.is_remote() {
        return srmp_refusal(
            StatusCode::BAD_REQUEST,
            format!("{dest} is on another computer, and this server does not forward SRMP"),
        )
        .into_response();
    }
    if q.is_transactional() != m.stream.is_some() {
        let why = if m.stream.is_some() {
            "a stream (transactional) message goes only to a transactional queue"
        } else {
            "a message outside a stream goes only to a non-transactional queue"
        };
        return srmp_refusal(StatusCode::BAD_REQUEST, format!("{dest}: {why}")).into_response();
    }
    let msg = match m.message(Some(parsed)) {
        Ok(msg) => msg,
        Err(Malformed(why)) => return srmp_refusal(StatusCode::BAD_REQUEST, why).into_response(),
    };
    // A stream is known by its id alone (3.1.5.1.6.4 keys it by the destination queue and the
    // stream id, not the sender); other messages are deduplicated per sender by message id.
    let (source, sequence, seq) = match &m.stream {
        Some(s) => (
            uuid::Uuid::nil(),
            format!("srmp:{}", s.id),
            Some(Seq {
                n: s.current,
                // Without <previous>, the message follows the one numbered before it.
                prev: s.previous.unwrap_or(s.current.saturating_sub(1)),
            }),
        ),
        None => (msg.source_machine(), dest.clone(), None),
    };
    let withdraw = headers.contains_key(WITHDRAW);
    // A receipt names the message as its sender knows it: without <Msmq>, (NULL GUID, 1).
    let id = m.id.map_or(MessageId::new(Uuid::nil(), 1), |(i, g)| {
        MessageId::new(g, i)
    });
    let priority = msg.priority;
    let queue_path = q.name().to_string();
    let transfer = state.qm.transfer();
    let reply = super::api::engine(|| {
        transfer.accept(
            source,
            &sequence,
            &queue_path,
            true,
            vec![Inbound {
                seq,
                // An mqemu sender withdrawing the number of a stream message that ran out of
                // time: consume the number, store nothing (a receiver that has it says so).
                msg: (!(withdraw && seq.is_some())).then_some(msg),
            }],
        )
    });
    match reply {
        Ok(r) => {
            let verdict = r.verdicts.first().copied().unwrap_or(Verdict::Gap);
            if let Some(s) = &m.stream {
                state.receipts.stream(&sequence, s, &m.to, r.last);
            }
            if let (Some(to), Verdict::Accepted | Verdict::Duplicate) =
                (&m.delivery_receipt_to, verdict)
            {
                state.receipts.delivered(to, &m.to, id, priority);
            }
            let mut response = match verdict {
                Verdict::Rejected(class) if class == MessageClass::NACK_Q_EXCEED_QUOTA => {
                    srmp_refusal(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("{dest} is over its quota"),
                    )
                    .into_response()
                }
                Verdict::Rejected(class) => srmp_refusal(
                    StatusCode::BAD_REQUEST,
                    format!("{dest} refused the message (class 0x{:04X})", class.0),
                )
                .into_response(),
                _ => (StatusCode::OK, [(header::CONTENT_LENGTH, "0")]).into_response(),
            };
            // What an mqemu sender needs beyond the status (a Windows sender ignores it).
            let h = response.headers_mut();
            h.insert(VERDICT, verdict_text(verdict));
            h.insert(LAST, r.last.into());
            response
        }
        Err(e) => ApiError(e).into_response(),
    }
}

/// Stores a delivery or commitment receipt in the queue its `<to>` names (a sender's admin
/// queue) as the acknowledgement it stands for: its class and correlation from `<Msmq>`, kept
/// once per receipt id.
fn store_acknowledgement(state: &AppState, caller: &Caller, m: &Srmp) -> Result<(), String> {
    let dest = m.destination();
    let name = QueueName::parse(&dest).map_err(|e| e.detail().to_owned())?;
    caller
        .check(Right::Send, &dest)
        .map_err(|e| e.0.detail().to_owned())?;
    let q = state
        .qm
        .open_name(&name)
        .map_err(|e| e.detail().to_owned())?;
    if q.is_remote() || q.is_transactional() {
        return Err(format!(
            "{dest} is not a non-transactional queue here, where acknowledgements go"
        ));
    }
    let msg = m.message(Some(name)).map_err(|Malformed(why)| why)?;
    let queue_path = q.name().to_string();
    let transfer = state.qm.transfer();
    super::api::engine(|| {
        transfer.accept(
            msg.source_machine(),
            &dest,
            &queue_path,
            true,
            vec![Inbound {
                seq: None,
                msg: Some(msg),
            }],
        )
    })
    .map(drop)
    .map_err(|e| e.detail().to_owned())
}

/// The answer's header naming the engine's verdict: `accepted`, `duplicate`, `gap`, `withdrawn`
/// or `rejected 0xCLASS`. SRMP answers a stream message with a later stream receipt; an mqemu
/// sender reads this instead, so a message missing its predecessor is never taken as stored.
pub const VERDICT: header::HeaderName = header::HeaderName::from_static("x-mqemu-verdict");
/// A request's header from an mqemu sender: this stream message ran out of time at the sender
/// after it may have been sent; withdraw its number (MSMQ's native transfer does the same; SRMP
/// has no such message, and a Windows receiver drops it as expired: its `<expiresAt>` is past).
pub const WITHDRAW: header::HeaderName = header::HeaderName::from_static("x-mqemu-withdraw");
/// The answer's header giving the stream's last number the receiver holds.
pub const LAST: header::HeaderName = header::HeaderName::from_static("x-mqemu-last");

fn verdict_text(v: Verdict) -> header::HeaderValue {
    match v {
        Verdict::Accepted => header::HeaderValue::from_static("accepted"),
        Verdict::Duplicate => header::HeaderValue::from_static("duplicate"),
        Verdict::Gap => header::HeaderValue::from_static("gap"),
        Verdict::Withdrawn => header::HeaderValue::from_static("withdrawn"),
        Verdict::Rejected(c) => format!("rejected 0x{:04X}", c.0)
            .try_into()
            .expect("ASCII is a header value"),
    }
}

/// The verdict an answer's [`VERDICT`] header names.
pub fn parse_verdict(text: &str) -> Option<Verdict> {
    Some(match text.trim() {
        "accepted" => Verdict::Accepted,
        "duplicate" => Verdict::Duplicate,
        "gap" => Verdict::Gap,
        "withdrawn" => Verdict::Withdrawn,
        other => {
            let hex = other.strip_prefix("rejected 0x")?;
            Verdict::Rejected(MessageClass(u16::from_str_radix(hex, 16).ok()?))
        }
    })
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
