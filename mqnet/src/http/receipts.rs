//! The receipts an SRMP receiver sends back (MC-MQSRM 3.1.5.1.6): stream receipts to the URL a
//! stream's first message names, so a Windows sender stops resending what arrived, and delivery
//! receipts where a message asks for one.
//!
//! A stream receipt says "everything up to `lastOrdinal` is here"; receipts for one stream are
//! coalesced: the first answer after a quiet spell starts a 500 ms timer, and the receipt sent
//! when it fires carries the stream's last number then (3.1.2.3: at most 10 s after the first
//! unacknowledged arrival). A receipt lost on the way costs only resends, which the receiver
//! recognizes and answers with another receipt. Each is POSTed as `text/xml` on the blocking
//! pool (ureq), never holding up the answer to the sender.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mqcore::message::{MessageClass, MessageId};
use mqcore::{Clock as _, SystemClock};
use uuid::Uuid;

use super::srmp::{receipt_envelope, srmp_time_text, xml_escape, Receipt, Stream};

/// How long receipts for one stream are gathered before one is sent.
const COALESCE: Duration = Duration::from_millis(500);

/// One stream's receipt state.
#[derive(Default)]
struct StreamState {
    /// `sendReceiptsTo`, once a message of the stream named it.
    to: Option<String>,
    /// The destination's URL (`<rev><via>` of the receipt).
    via: String,
    /// `<streamId>` as the sender wrote it.
    text: String,
    last: u64,
    /// A receipt is scheduled.
    pending: bool,
}

/// The receipts of one HTTP face.
#[derive(Clone)]
pub(crate) struct Receipts {
    inner: Arc<Inner>,
}

struct Inner {
    /// This queue manager, the receipts' source.
    guid: Uuid,
    agent: ureq::Agent,
    streams: Mutex<HashMap<String, StreamState>>,
    /// The GUID of this face's receipt ids: the queue manager's own would collide with the ids
    /// of its messages (a receiver deduplicates by id), so each process draws one.
    ids: Uuid,
    /// The index of the next receipt's `uuid:<index>@<ids>`.
    next: AtomicU32,
}

impl Receipts {
    pub(crate) fn new(guid: Uuid) -> Receipts {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .build()
            .into();
        Receipts {
            inner: Arc::new(Inner {
                guid,
                agent,
                streams: Mutex::default(),
                ids: Uuid::new_v4(),
                next: AtomicU32::new(1),
            }),
        }
    }

    /// A message of stream `s` (kept under `key`) for the destination `via` was answered and the
    /// stream's last number is now `last`: a receipt follows within [`COALESCE`] if the stream
    /// has named where receipts go.
    pub(crate) fn stream(&self, key: &str, s: &Stream, via: &str, last: u64) {
        let mut map = self
            .inner
            .streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let st = map.entry(key.to_owned()).or_default();
        if let Some(to) = &s.receipts_to {
            st.to = Some(to.clone());
        }
        st.last = st.last.max(last);
        if st.text.is_empty() {
            st.text = format!("{}\\{}", s.sender, s.id);
            st.via = via.to_owned();
        }
        if st.to.is_none() || st.pending {
            return;
        }
        st.pending = true;
        let inner = self.inner.clone();
        let key = key.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(COALESCE).await;
            let (to, body) = {
                let mut map = inner.streams.lock().unwrap_or_else(PoisonError::into_inner);
                let Some(st) = map.get_mut(&key) else { return };
                st.pending = false;
                let to = st.to.clone().unwrap_or_default();
                let body = inner.stream_receipt(&to, &st.via, &st.text, st.last);
                (to, body)
            };
            inner.post(to, body).await;
        });
    }

    /// The message `id` that asked for a delivery receipt at `to` reached `via`.
    pub(crate) fn delivered(&self, to: &str, via: &str, id: MessageId, priority: u8) {
        let inner = self.inner.clone();
        let body = inner.delivery_receipt(to, via, id, priority);
        let to = to.to_owned();
        tokio::spawn(async move { inner.post(to, body).await });
    }
}

impl Inner {
    fn id(&self) -> String {
        format!(
            "uuid:{}@{}",
            self.next.fetch_add(1, Ordering::Relaxed),
            self.ids
        )
    }

    /// The envelope of a receipt from this queue manager.
    fn envelope(
        &self,
        to: &str,
        via: &str,
        action: &str,
        element: &str,
        props: (MessageClass, u8, &[u8]),
    ) -> String {
        receipt_envelope(
            &Receipt {
                id: &self.id(),
                source: self.guid,
                to,
                via: Some(via),
                action,
                sent: SystemClock.now().0,
            },
            element,
            props,
        )
    }

    /// MC-MQSRM 2.2.5.4 and example 4.4: `MSMQ:QM Ordering Ack`, class 255.
    fn stream_receipt(&self, to: &str, via: &str, stream_id: &str, last: u64) -> String {
        let element = format!(
            "<streamReceipt><streamId>{}</streamId><lastOrdinal>{last}</lastOrdinal></streamReceipt>",
            xml_escape(stream_id)
        );
        self.envelope(
            to,
            via,
            "MSMQ:QM Ordering Ack",
            &element,
            (MessageClass(0x00FF), 0, &[0; 20]),
        )
    }

    /// MC-MQSRM 2.2.5.5 and example 4.3: the original message's id, class
    /// `MQMSG_CLASS_ACK_REACH_QUEUE`, correlated with the original.
    fn delivery_receipt(&self, to: &str, via: &str, id: MessageId, priority: u8) -> String {
        let now = SystemClock.now().0;
        let element = format!(
            "<deliveryReceipt><receivedAt>{}</receivedAt><id>uuid:{}@{}</id></deliveryReceipt>",
            srmp_time_text(now),
            id.ordinal(),
            id.qm_guid()
        );
        self.envelope(
            to,
            via,
            "MSMQ:",
            &element,
            (MessageClass::ACK_REACH_QUEUE, priority, id.as_bytes()),
        )
    }

    async fn post(&self, to: String, body: String) {
        let agent = self.agent.clone();
        let what = to.clone();
        let sent = tokio::task::spawn_blocking(move || {
            agent
                .post(&to)
                .header("Content-Type", "text/xml")
                .header("SOAPAction", "\"MSMQMessage\"")
                .send(body.as_str())
                .map(|r| r.status().as_u16())
        })
        .await;
        match sent {
            Ok(Ok(status)) if (200..300).contains(&status) => {}
            Ok(Ok(status)) => tracing::info!(to = %what, status, "an SRMP receipt was refused"),
            Ok(Err(e)) => tracing::info!(to = %what, error = %e, "an SRMP receipt was not sent"),
            Err(e) => tracing::warn!(error = %e, "the SRMP receipt task failed"),
        }
    }
}
