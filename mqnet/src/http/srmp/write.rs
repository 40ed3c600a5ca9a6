//! Writing SRMP: a message as the POST egress sends (the inverse of the parser), and receipts
//! as `text/xml` envelopes (an acknowledgement for an admin queue named by HTTP goes as one).

use super::*;

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
pub(super) const NEVER: &str = "20380119T031407";

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
pub(super) fn as_receipt(msg: &Message, to: &str) -> Option<String> {
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
pub(super) fn http_url(name: &QueueName) -> Option<String> {
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
