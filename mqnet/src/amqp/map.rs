//! How an AMQP message's properties and headers map onto MSMQ's message properties and back,
//! the way Mono's System.Messaging provider writes them (docs/amqp.md has the table).
//!
//! MSMQ properties with an AMQP property of their own use it (correlation id, priority,
//! delivery mode, reply-to, expiration, message id, timestamp); the rest travel as headers
//! named as Mono names them (`Label`, `AppSpecific`, `BodyType`, `TimeToBeReceived`,
//! `TimeToReachQueue` in .NET ticks, `AcknowledgeType`, `AdministrationQueue`, `Extension`...).

use std::sync::Arc;
use std::time::Duration;

use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};
use bytes::Bytes;
use mqcore::message::{Acknowledge, Delivery, Message};
use mqcore::name::QueueName;

/// .NET ticks (100 ns) in a second.
const TICKS_PER_SEC: u64 = 10_000_000;
/// .NET's `Message.InfiniteTimeout` (`uint.MaxValue` seconds) in ticks: no time limit.
const INFINITE_TICKS: i64 = u32::MAX as i64 * TICKS_PER_SEC as i64;
/// `SenderVersion` as Mono's provider writes it: AMQP 0-8's major version in the high half.
const SENDER_VERSION: i64 = 8 << 32;

/// MSMQ's priorities run 0-7, AMQP's 0-9: 0-7 are kept, 8 and 9 become 7, so every priority
/// MSMQ or Mono's provider writes comes back unchanged.
pub(crate) fn msmq_priority(amqp: u8) -> u8 {
    amqp.min(7)
}

fn header<'a>(h: &'a FieldTable, name: &str) -> Option<&'a AMQPValue> {
    h.inner().get(&ShortString::from(name))
}

fn as_u64(v: &AMQPValue) -> Option<u64> {
    match v {
        AMQPValue::ShortShortUInt(n) => Some(u64::from(*n)),
        AMQPValue::ShortUInt(n) => Some(u64::from(*n)),
        AMQPValue::LongUInt(n) => Some(u64::from(*n)),
        AMQPValue::ShortShortInt(n) => u64::try_from(*n).ok(),
        AMQPValue::ShortInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongLongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::Timestamp(n) => Some(*n),
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok()?.trim().parse().ok(),
        AMQPValue::ShortString(s) => s.as_str().trim().parse().ok(),
        _ => None,
    }
}

fn as_text(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

fn as_bytes(v: &AMQPValue) -> Option<Vec<u8>> {
    match v {
        AMQPValue::LongString(s) => Some(s.as_bytes().to_vec()),
        AMQPValue::ShortString(s) => Some(s.as_str().as_bytes().to_vec()),
        AMQPValue::ByteArray(b) => Some(b.as_slice().to_vec()),
        _ => None,
    }
}

/// A queue named in a property: an MSMQ format name or path as is, or an AMQP queue name
/// (a private queue here).
fn queue_named(text: &str) -> Option<Arc<QueueName>> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    QueueName::parse(text)
        .or_else(|_| QueueName::try_private(".", text))
        .ok()
        .map(Arc::new)
}

/// The MSMQ message an AMQP publish carries.
pub(crate) fn to_message(props: &AMQPProperties, body: Vec<u8>) -> Message {
    let mut m = Message::new(Bytes::from(body));
    if let Some(p) = props.priority() {
        m.priority = msmq_priority(*p);
    }
    m.delivery = match props.delivery_mode() {
        Some(2) => Delivery::Recoverable,
        _ => Delivery::Express,
    };
    if let Some(c) = props.correlation_id() {
        m.correlation_id = c.as_str().parse().ok();
    }
    if let Some(r) = props.reply_to() {
        m.response_queue = queue_named(r.as_str());
    }
    if let Some(ms) = props
        .expiration()
        .as_ref()
        .and_then(|e| e.as_str().trim().parse::<u64>().ok())
    {
        m.time_to_be_received = Some(Duration::from_millis(ms));
    }
    let Some(h) = props.headers() else {
        return m;
    };
    if let Some(l) = header(h, "Label").and_then(as_text) {
        m.label = l;
    }
    if let Some(n) = header(h, "AppSpecific").and_then(as_u64) {
        m.app_specific = n as u32;
    }
    if let Some(n) = header(h, "BodyType").and_then(as_u64) {
        m.body_type = n as u32;
    }
    let ticks = |name: &str| {
        header(h, name)
            .and_then(as_u64)
            // Zero is what Mono's provider sends for a message whose times were never set, and
            // .NET's infinite timeout (a u32 of seconds) or TimeSpan.MaxValue mean no limit.
            .filter(|&t| t > 0 && t / TICKS_PER_SEC < u64::from(u32::MAX))
            .map(|t| Duration::from_nanos(t.saturating_mul(100)))
    };
    if let Some(d) = ticks("TimeToBeReceived") {
        m.time_to_be_received = Some(d);
    }
    if let Some(d) = ticks("TimeToReachQueue") {
        m.time_to_reach_queue = Some(d);
    }
    if let Some(a) = header(h, "AcknowledgeType").and_then(as_u64) {
        m.acknowledge = Acknowledge(a as u8);
    }
    if let Some(q) = header(h, "AdministrationQueue").and_then(as_text) {
        m.admin_queue = queue_named(&q);
    }
    if let Some(q) = header(h, "ResponseQueue").and_then(as_text) {
        m.response_queue = queue_named(&q);
    }
    if let Some(e) = header(h, "Extension").and_then(as_bytes) {
        m.extension = Bytes::from(e);
    }
    m
}

/// The AMQP properties a delivery of `m` carries: what Mono's provider reads back.
pub(crate) fn to_properties(m: &Message, every_header: bool) -> AMQPProperties {
    let mut h = FieldTable::default();
    let mut put = |k: &str, v: AMQPValue| {
        h.insert(ShortString::from(k), v);
    };
    let long = |s: String| AMQPValue::LongString(LongString::from(s.into_bytes()));
    let ticks = |d: Option<Duration>| {
        AMQPValue::LongLongInt(match d {
            Some(d) => i64::try_from(d.as_nanos() / 100).unwrap_or(i64::MAX),
            None => INFINITE_TICKS,
        })
    };
    put("LookupId", AMQPValue::LongLongInt(m.lookup_id() as i64));
    if every_header || !m.label.is_empty() {
        put("Label", long(m.label.clone()));
    }
    if every_header || m.app_specific != 0 {
        put("AppSpecific", AMQPValue::LongInt(m.app_specific as i32));
    }
    if every_header || m.body_type != 0 {
        put("BodyType", AMQPValue::LongInt(m.body_type as i32));
    }
    if every_header || m.acknowledge.0 != 0 {
        put(
            "AcknowledgeType",
            AMQPValue::LongInt(i32::from(m.acknowledge.0)),
        );
    }
    if every_header || m.abort_count() > 0 {
        put("AbortCount", AMQPValue::LongInt(m.abort_count() as i32));
    }
    if every_header || m.time_to_be_received.is_some() {
        put("TimeToBeReceived", ticks(m.time_to_be_received));
    }
    if every_header || m.time_to_reach_queue.is_some() {
        put("TimeToReachQueue", ticks(m.time_to_reach_queue));
    }
    if let Some(q) = &m.admin_queue {
        put("AdministrationQueue", long(q.to_string()));
    }
    if let Some(q) = &m.response_queue {
        put("ResponseQueue", long(q.to_string()));
    }
    if every_header || !m.extension.is_empty() {
        put(
            "Extension",
            AMQPValue::LongString(LongString::from(m.extension.to_vec())),
        );
    }
    if every_header {
        put("SourceMachine", long(m.source_machine().to_string()));
        // Mono's provider casts these without checking that they are there (a missing one is
        // a NullReferenceException in the receiving program), so its deliveries carry them,
        // with the values System.Messaging gives a message nobody set them on.
        put("SenderVersion", AMQPValue::LongLongInt(SENDER_VERSION));
        put("AuthenticationProviderType", AMQPValue::LongInt(1)); // PROV_RSA_FULL
        put("ConnectorType", long(uuid::Uuid::nil().to_string()));
        put("EncryptionAlgorithm", AMQPValue::LongInt(0x6602)); // CALG_RC2
        put("HashAlgorithm", AMQPValue::LongInt(0x8004)); // CALG_SHA1
        put("UseAuthentication", AMQPValue::Boolean(false));
        put("UseDeadLetterQueue", AMQPValue::Boolean(false));
        put("UseEncryption", AMQPValue::Boolean(false));
        put(
            "AuthenticationProviderName",
            long("Microsoft Base Cryptographic Provider, Ver. 1.0".to_owned()),
        );
        for empty in [
            "DestinationSymmetricKey",
            "DigitalSignature",
            "SenderCertificate",
        ] {
            put(empty, long(String::new()));
        }
    }
    let mut p = AMQPProperties::default()
        .with_headers(h)
        .with_priority(m.priority)
        .with_delivery_mode(if m.delivery == Delivery::Recoverable {
            2
        } else {
            1
        })
        .with_message_id(ShortString::from(m.id().to_string()))
        .with_timestamp(m.sent_time().as_secs().into());
    if let Some(c) = &m.correlation_id {
        p = p.with_correlation_id(ShortString::from(c.to_string()));
    }
    if let Some(q) = &m.response_queue {
        p = p.with_reply_to(ShortString::from(q.to_string()));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_keep_msmqs_range() {
        assert_eq!(
            (0..=9).map(msmq_priority).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4, 5, 6, 7, 7, 7]
        );
    }

    #[test]
    fn monos_headers_become_msmq_properties_and_come_back() {
        let mut h = FieldTable::default();
        h.insert(
            "Label".into(),
            AMQPValue::LongString(b"order 7".to_vec().into()),
        );
        h.insert("AppSpecific".into(), AMQPValue::LongInt(42));
        h.insert("BodyType".into(), AMQPValue::LongInt(8));
        h.insert(
            "TimeToBeReceived".into(),
            AMQPValue::LongLongInt(30 * TICKS_PER_SEC as i64),
        );
        // TimeSpan.MaxValue: no limit.
        h.insert("TimeToReachQueue".into(), AMQPValue::LongLongInt(i64::MAX));
        h.insert(
            "AdministrationQueue".into(),
            AMQPValue::LongString(b"acks".to_vec().into()),
        );
        let props = AMQPProperties::default()
            .with_headers(h)
            .with_priority(9)
            .with_delivery_mode(2)
            .with_correlation_id("6b1a1c4e-0a34-4f36-9a5f-6c3c2a1e7b10\\7".into());
        let m = to_message(&props, b"<string>hi</string>".to_vec());
        assert_eq!(m.label, "order 7");
        assert_eq!(m.app_specific, 42);
        assert_eq!(m.body_type, 8);
        assert_eq!(m.priority, 7);
        assert_eq!(m.delivery, Delivery::Recoverable);
        assert_eq!(m.time_to_be_received, Some(Duration::from_secs(30)));
        assert_eq!(m.time_to_reach_queue, None);
        assert_eq!(
            m.admin_queue.as_deref().map(ToString::to_string).as_deref(),
            Some(r".\private$\acks")
        );
        let c = m.correlation_id.expect("an MSMQ message id parses");
        let back = to_properties(&m, true);
        assert_eq!(back.priority(), &Some(7));
        assert_eq!(back.delivery_mode(), &Some(2));
        assert_eq!(back.correlation_id(), &Some(c.to_string().into()));
        let h = back.headers().as_ref().unwrap();
        assert_eq!(
            header(h, "Label").and_then(as_text).as_deref(),
            Some("order 7")
        );
        assert_eq!(header(h, "AppSpecific").and_then(as_u64), Some(42));
        assert_eq!(
            header(h, "TimeToBeReceived").and_then(as_u64),
            Some(30 * TICKS_PER_SEC)
        );
    }

    #[test]
    fn only_monos_deliveries_carry_every_header() {
        let mut m = Message::new(Bytes::from_static(b"x"));
        m.label = "only this".into();
        let names = |p: &AMQPProperties| {
            let mut v: Vec<String> = p
                .headers()
                .as_ref()
                .unwrap()
                .inner()
                .keys()
                .map(|k| k.as_str().to_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(&to_properties(&m, false)), ["Label", "LookupId"]);
        let all = names(&to_properties(&m, true));
        for needed in [
            "SenderVersion",
            "TimeToBeReceived",
            "Extension",
            "UseEncryption",
        ] {
            assert!(all.iter().any(|n| n == needed), "{needed} in {all:?}");
        }
    }
}
