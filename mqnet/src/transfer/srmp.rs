//! SRMP egress: the session of a link whose destination is `DIRECT=HTTP://host[:port]/msmq/...`,
//! which POSTs each message of its outgoing queues as MC-MQSRM, one at a time and in order.
//!
//! **Invariant:** as over the native protocol, a message leaves its outgoing queue only on the
//! receiver's answer for it. An mqemu receiver names its verdict and its stream's last number in
//! headers ([`crate::http::srmp::VERDICT`]); any other receiver's `2xx` counts as stored. A
//! transactional message goes in a stream whose id is fixed by this queue manager's GUID and the
//! destination, so a resend after a crash or a cut connection is recognized as one. A
//! transactional message withdrawn here (out of time after it may have been sent) is posted
//! with [`WITHDRAW`]: an mqemu receiver consumes its number as the native transfer's does.

use std::time::Instant;

use mqcore::message::MessageClass;
use mqcore::transfer::{Outbound, OutgoingQueue, Reply, Seq, Verdict};
use mqcore::{Error, ErrorCode};

use super::link::{settle, End, Task};
use crate::http::srmp::{parse_verdict, serialize, Stream, LAST, VERDICT, WITHDRAW};

/// The stream id of the sequence `sequence` sent by the queue manager `source`: FNV-1a over
/// both, stable across restarts (the receiver keeps the stream's state under it) and a 64-bit
/// number as Windows' stream ids are.
fn stream_id(source: uuid::Uuid, sequence: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in source
        .as_bytes()
        .iter()
        .copied()
        .chain(sequence.to_ascii_lowercase().bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The URL a sequence's messages are posted to: its `DIRECT=HTTP://` or `DIRECT=HTTPS://` name
/// without `DIRECT=`.
fn url_of(sequence: &str) -> Option<String> {
    ["http", "https"].into_iter().find_map(|scheme| {
        let prefix = format!("DIRECT={scheme}:");
        sequence
            .get(..prefix.len())
            .filter(|p| p.eq_ignore_ascii_case(&prefix))
            .map(|_| format!("{scheme}:{}", &sequence[prefix.len()..]))
    })
}

/// What one POST came to.
enum Answer {
    /// The receiver's verdict, and the stream's last number it holds, if it said.
    Verdict(Verdict, Option<u64>),
    /// Nothing to go on (connection failed, server error): try again later.
    Failed(Error),
}

/// The verdict an answer without mqemu's header stands for: a success is stored, a refusal of
/// the request is a destination that does not take the message, an authorization failure is
/// access denied; anything else (5xx) says nothing and is tried again.
fn verdict_of_status(status: u16) -> Option<Verdict> {
    match status {
        200..=299 => Some(Verdict::Accepted),
        401 | 403 => Some(Verdict::Rejected(MessageClass::NACK_ACCESS_DENIED)),
        400..=499 => Some(Verdict::Rejected(MessageClass::NACK_BAD_DST_Q)),
        _ => None,
    }
}

/// POSTs one message. Blocking (ureq), so it runs on the blocking pool.
async fn post(
    agent: ureq::Agent,
    url: String,
    token: Option<String>,
    (content_type, body): (String, Vec<u8>),
    withdraw: bool,
) -> Answer {
    let what = url.clone();
    let done = tokio::task::spawn_blocking(move || {
        let mut req = agent
            .post(&url)
            .header("Content-Type", &content_type)
            .header("SOAPAction", "\"MSMQMessage\"");
        if withdraw {
            req = req.header(WITHDRAW.as_str(), "1");
        }
        if let Some(t) = &token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let mut resp = req.send(&body[..])?;
        // Read the (small) body so the connection is kept for the next message.
        let _ = resp.body_mut().read_to_vec();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Ok::<_, ureq::Error>((
            resp.status().as_u16(),
            header(VERDICT.as_str()),
            header(LAST.as_str()),
        ))
    })
    .await;
    let (status, verdict, last) = match done {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            return Answer::Failed(Error::new(
                ErrorCode::RemoteMachineNotAvailable,
                format!("POST {what}: {e}"),
            ))
        }
        Err(e) => return Answer::Failed(Error::new(ErrorCode::Error, e.to_string())),
    };
    let last = last.and_then(|l| l.trim().parse().ok());
    let said = verdict.as_deref().and_then(parse_verdict);
    let by_status = verdict_of_status(status).map(|v| match v {
        // A receiver that knows no withdrawal took an expired message: it drops it, so here
        // it is dead-lettered as withdrawn.
        Verdict::Accepted if withdraw => Verdict::Withdrawn,
        v => v,
    });
    match said.or(by_status) {
        Some(v) => Answer::Verdict(v, last),
        None => Answer::Failed(Error::new(
            ErrorCode::RemoteMachineNotAvailable,
            format!("POST {what}: HTTP {status}"),
        )),
    }
}

impl Task {
    /// Sends every outgoing queue of an `http://` or `https://` host until a POST fails, the
    /// service stops, or nothing was sent for the idle time.
    pub(super) async fn srmp_session(&mut self) -> End {
        let patience = self.config.delay(1).max(self.config.connect_timeout);
        let mut agent = ureq::Agent::config_builder();
        // HTTPS is verified against `[transfer] tls_ca` when given, else the public CAs.
        if let Some(tls) = &self.config.tls {
            agent = agent.tls_config(tls.https());
        }
        let agent: ureq::Agent = agent
            .timeout_connect(Some(self.config.connect_timeout))
            .timeout_global(Some(patience))
            .http_status_as_error(false)
            .build()
            .into();
        let mut last_busy = Instant::now();
        loop {
            if *self.stop.borrow() {
                return End::Stopped;
            }
            let mut busy = false;
            for q in self.queues() {
                let mut cursor = q.start();
                let batch = q.next_batch(&mut cursor, self.config.batch, self.config.batch_bytes);
                if batch.is_empty() {
                    continue;
                }
                busy = true;
                if let Err(end) = self.post_batch(&agent, &q, batch).await {
                    return end;
                }
                if *self.stop.borrow() {
                    return End::Stopped;
                }
            }
            if busy {
                last_busy = Instant::now();
                continue;
            }
            if let Some(end) = self.nothing_to_send(last_busy).await {
                return end;
            }
        }
    }

    /// POSTs `batch` in order and settles what was answered, stopping at the first message not
    /// answered or answered as a gap.
    async fn post_batch(
        &self,
        agent: &ureq::Agent,
        q: &OutgoingQueue,
        batch: Vec<Outbound>,
    ) -> Result<(), End> {
        let Some(url) = url_of(q.sequence()) else {
            return Err(End::Failed(Error::new(
                ErrorCode::IllegalFormatname,
                format!("{} is not an HTTP destination", q.sequence()),
            )));
        };
        let sid = stream_id(self.qm.guid(), q.sequence()).to_string();
        let mut sent: Vec<(u64, Option<Seq>)> = Vec::with_capacity(batch.len());
        let mut verdicts = Vec::with_capacity(batch.len());
        let mut last = 0;
        self.link.set_unacked(q.sequence(), batch.len());
        let mut failure = None;
        for b in batch {
            let stream = b.seq.map(|s| Stream {
                id: sid.clone(),
                current: s.n,
                previous: Some(s.prev),
                ..Stream::default()
            });
            let (ctype, body) = serialize(&b.msg, &url, stream.as_ref());
            let answer = post(
                agent.clone(),
                url.clone(),
                self.config.token.clone(),
                (ctype, body),
                b.withdraw,
            )
            .await;
            match answer {
                Answer::Failed(e) => {
                    failure = Some(e);
                    break;
                }
                Answer::Verdict(v, said) => {
                    sent.push((b.lookup, b.seq));
                    verdicts.push(v);
                    match (said, b.seq) {
                        (Some(l), _) => last = last.max(l),
                        (None, Some(s)) if v != Verdict::Gap => last = last.max(s.n),
                        _ => {}
                    }
                    if v == Verdict::Gap {
                        failure = Some(Error::new(
                            ErrorCode::Error,
                            "the receiver misses an earlier message of the stream",
                        ));
                        break;
                    }
                }
            }
        }
        self.link.set_unacked(q.sequence(), 0);
        if !sent.is_empty() {
            let reply = Reply { last, verdicts };
            if let Err(e) = settle(q, &sent, &reply) {
                return Err(End::Failed(e));
            }
        }
        match failure {
            Some(e) => Err(End::Failed(e)),
            None => {
                self.link.answered();
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_id_is_fixed_by_sender_and_destination() {
        let a = uuid::Uuid::from_u128(1);
        let b = uuid::Uuid::from_u128(2);
        let d = "DIRECT=HTTP://h/msmq/private$/q";
        assert_eq!(stream_id(a, d), stream_id(a, &d.to_ascii_uppercase()));
        assert_ne!(stream_id(a, d), stream_id(b, d));
        assert_ne!(
            stream_id(a, d),
            stream_id(a, "DIRECT=HTTP://h/msmq/private$/r")
        );
    }

    #[test]
    fn the_url_is_the_name_without_direct() {
        assert_eq!(
            url_of("DIRECT=HTTP://127.0.0.3:8080/msmq/private$/q").as_deref(),
            Some("http://127.0.0.3:8080/msmq/private$/q")
        );
        assert_eq!(
            url_of("DIRECT=HTTPS://vs1.example:443/msmq/private$/q").as_deref(),
            Some("https://vs1.example:443/msmq/private$/q")
        );
        assert_eq!(url_of(r"DIRECT=TCP:1.2.3.4\private$\q"), None);
    }

    #[test]
    fn statuses_without_mqemus_header_stand_for_verdicts() {
        assert_eq!(verdict_of_status(200), Some(Verdict::Accepted));
        assert_eq!(
            verdict_of_status(403),
            Some(Verdict::Rejected(MessageClass::NACK_ACCESS_DENIED))
        );
        assert_eq!(
            verdict_of_status(404),
            Some(Verdict::Rejected(MessageClass::NACK_BAD_DST_Q))
        );
        assert_eq!(verdict_of_status(503), None);
        assert_eq!(
            parse_verdict("rejected 0xC004"),
            Some(Verdict::Rejected(MessageClass(0xC004)))
        );
        assert_eq!(parse_verdict("duplicate"), Some(Verdict::Duplicate));
        assert_eq!(parse_verdict("maybe"), None);
    }
}
