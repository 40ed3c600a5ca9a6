//! Reading SRMP: the MIME parts of a POST, the SOAP envelope's elements, and the message the
//! engine keeps from them. Every length and offset is checked against the bytes at hand.

use super::*;

/// The parameters of a `Content-Type` value: `boundary` and `type`, unquoted.
pub(super) fn content_type_param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"'))
    })
}

pub(super) fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
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
pub(super) struct Part<'a> {
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
pub(super) fn parts<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, Malformed> {
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
pub(super) fn srmp_time(s: &str) -> Result<u64, Malformed> {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]");
    let t = time::PrimitiveDateTime::parse(s.trim(), &format)
        .map_err(|e| bad(format!("`{s}` is not an SRMP time (yyyymmddThhmmss): {e}")))?;
    let secs = t.assume_utc().unix_timestamp();
    u64::try_from(secs)
        .map(|s| s * 1000)
        .map_err(|_| bad(format!("`{s}` is before 1970")))
}

pub(super) fn number<T: std::str::FromStr>(
    node: roxmltree::Node<'_, '_>,
    what: &str,
) -> Result<T, Malformed> {
    let text = node.text().unwrap_or("").trim();
    text.parse()
        .map_err(|_| bad(format!("<{what}> is not a number: {text:?}")))
}

pub(super) fn child<'a, 'i>(
    node: roxmltree::Node<'a, 'i>,
    name: &str,
) -> Option<roxmltree::Node<'a, 'i>> {
    node.children()
        .find(|c| c.is_element() && c.tag_name().name().eq_ignore_ascii_case(name))
}

pub(super) fn text_of<'a>(node: roxmltree::Node<'a, '_>, name: &str) -> Option<&'a str> {
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
