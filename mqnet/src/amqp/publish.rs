//! The publishing side of a channel: a publish's method, header and body frames become one
//! message; runs of them to one queue are sent as one step, logged without waiting for the
//! disk, and confirmed (with `confirm.select`) once durable, oldest first.

use amq_protocol::frame::AMQPContentHeader;
use amq_protocol::protocol::{basic, AMQPClass};
use amq_protocol::types::ShortString;
use mqcore::message::Message;
use mqcore::{Queue, Tx};

use super::conn::{code, Confirm, Conn, Failure};
use super::map;
use crate::auth::Right;
use crate::steps::engine;

/// MSMQ's largest message body (4 MB).
const MAX_BODY: u64 = 4 * 1024 * 1024;

/// A publish waiting for its content.
pub(super) struct Publishing {
    method: basic::Publish,
    header: Option<AMQPContentHeader>,
    body: Vec<u8>,
}

impl Publishing {
    pub(super) fn new(method: basic::Publish) -> Publishing {
        Publishing {
            method,
            header: None,
            body: Vec::new(),
        }
    }
}

/// A complete publish, waiting to be sent with the ones after it.
pub(super) struct Outbound {
    queue: Queue,
    msg: Message,
    seq: Option<u64>,
}

impl Conn {
    /// A publish's content header.
    pub(crate) async fn content_header(
        &mut self,
        id: u16,
        h: AMQPContentHeader,
        more: bool,
    ) -> Result<(), Failure> {
        let ch = self.chan(id)?;
        if ch.closing {
            // The content of a publish the channel was closed for.
            return Ok(());
        }
        let Some(p) = ch.publishing.as_mut().filter(|p| p.header.is_none()) else {
            return Err(Failure::connection(
                code::UNEXPECTED_FRAME,
                "a content header without a publish before it",
            ));
        };
        if h.body_size > MAX_BODY {
            ch.publishing = None;
            return Err(Failure::connection(
                code::FRAME_ERROR,
                format!(
                    "a body of {} bytes is over MSMQ's 4 MB (MQ_ERROR_MESSAGE_TOO_LARGE)",
                    h.body_size
                ),
            ));
        }
        let empty = h.body_size == 0;
        p.header = Some(h);
        if empty {
            self.published(id, more).await?;
        }
        Ok(())
    }

    /// A piece of a publish's body.
    pub(crate) async fn content_body(
        &mut self,
        id: u16,
        body: Vec<u8>,
        more: bool,
    ) -> Result<(), Failure> {
        let ch = self.chan(id)?;
        if ch.closing {
            return Ok(());
        }
        let Some(p) = ch.publishing.as_mut() else {
            return Err(Failure::connection(
                code::UNEXPECTED_FRAME,
                "a content body without a publish before it",
            ));
        };
        let Some(size) = p.header.as_ref().map(|h| h.body_size) else {
            return Err(Failure::connection(
                code::UNEXPECTED_FRAME,
                "a content body before its header",
            ));
        };
        if (p.body.len() + body.len()) as u64 > size {
            return Err(Failure::connection(
                code::FRAME_ERROR,
                "a content body longer than its header said",
            ));
        }
        if p.body.is_empty() {
            p.body = body;
        } else {
            p.body.extend_from_slice(&body);
        }
        if p.body.len() as u64 == size {
            self.published(id, more).await?;
        }
        Ok(())
    }

    /// A publish is complete: queue it to be sent, and send what has gathered unless more
    /// frames are already waiting.
    async fn published(&mut self, id: u16, more: bool) -> Result<(), Failure> {
        let ch = self.chan(id)?;
        let Some(p) = ch.publishing.take() else {
            return Ok(());
        };
        let seq = ch.confirm;
        if let Some(n) = seq {
            ch.confirm = Some(n + 1);
        }
        let header = p.header.unwrap_or_else(|| AMQPContentHeader {
            class_id: 60,
            body_size: 0,
            properties: Default::default(),
        });
        let msg = map::to_message(&header.properties, p.body);
        let routing = p.method.routing_key.as_str();
        // A publisher sends to the same queue again and again: its handle is kept (until the
        // queue is deleted) rather than the name parsed, checked and looked up each time.
        let ch = self.chan(id)?;
        let cached = ch
            .route
            .as_ref()
            .filter(|(name, q)| name == routing && !q.is_deleted())
            .map(|(_, q)| q.clone());
        let opened = match cached {
            Some(q) => Ok(q),
            None => self.open_queue(routing, Right::Send).map(|(q, _)| {
                if let Some(ch) = self.channels.get_mut(&id) {
                    ch.route = Some((routing.to_owned(), q.clone()));
                }
                q
            }),
        };
        match opened {
            Ok(queue) => self.chan(id)?.outbound.push(Outbound { queue, msg, seq }),
            // No such queue: the default exchange routes nowhere; a mandatory publish comes
            // back, as RabbitMQ does.
            Err(f) if f.code == code::NOT_FOUND => {
                if p.method.mandatory {
                    self.send(
                        id,
                        AMQPClass::Basic(basic::AMQPMethod::Return(basic::Return {
                            reply_code: code::NO_ROUTE,
                            reply_text: ShortString::from("NO_ROUTE"),
                            exchange: p.method.exchange.clone(),
                            routing_key: p.method.routing_key.clone(),
                        })),
                    );
                    self.send_content(id, header.properties, &msg.body);
                }
                if let Some(seq) = seq {
                    self.flush(id).await?;
                    self.confirm(id, seq);
                }
            }
            Err(f) => return Err(f),
        }
        if !more || self.chan(id)?.outbound.len() >= 256 {
            self.flush(id).await?;
        }
        Ok(())
    }

    /// Confirms publishes up to `seq` once every publish logged before them is durable.
    fn confirm(&mut self, id: u16, seq: u64) {
        self.owe(Vec::new(), Some((id, seq)));
    }

    /// Hands logged steps, and the confirm they owe, to `unconfirmed`; with nothing waiting
    /// there, a confirm that needs no record goes out at once.
    pub(crate) fn owe(
        &mut self,
        steps: Vec<mqcore::step::deferred::Deferred>,
        confirm: Option<Confirm>,
    ) {
        if steps.is_empty() && self.unconfirmed.is_empty() {
            self.confirmed(vec![(confirm, Ok(()))]);
        } else if !steps.is_empty() || confirm.is_some() {
            self.unconfirmed.push(steps, confirm);
        }
    }

    /// Sends the gathered publishes of channel `id`, in order: runs of one queue as one batch
    /// (one log record and disk sync), or into the channel's transaction.
    pub(crate) async fn flush(&mut self, id: u16) -> Result<(), Failure> {
        let Some(ch) = self.channels.get_mut(&id) else {
            return Ok(());
        };
        if ch.outbound.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut ch.outbound);
        let last_seq = pending.iter().rev().find_map(|o| o.seq);
        let mut runs: Vec<(Queue, Vec<Message>)> = Vec::new();
        for o in pending {
            match runs.last_mut() {
                Some((q, msgs)) if q.name() == o.queue.name() => msgs.push(o.msg),
                _ => runs.push((o.queue, vec![o.msg])),
            }
        }
        // Outside a transaction, each run's step is logged without waiting for the disk: the
        // connection reads on, and the confirm waits in `unconfirmed` for the record.
        let mut steps = Vec::new();
        let mut failed = None;
        for (q, msgs) in runs {
            let transactional = q.is_transactional();
            let results: Vec<mqcore::Result<_>> = if ch.tx_mode && transactional {
                let t = ch.tx.get_or_insert_with(|| self.qm.begin());
                msgs.into_iter().map(|m| q.send(m, Tx::In(t))).collect()
            } else {
                let arg = if transactional { Tx::Single } else { Tx::None };
                let (results, logged) =
                    engine(|| mqcore::step::deferred::collect(|| q.send_batch(msgs, arg)));
                steps.extend(logged);
                results
            };
            if let Some(e) = results.into_iter().find_map(Result::err) {
                failed = Some(Failure::engine(&e));
                break;
            }
        }
        let confirm = if failed.is_none() {
            last_seq.map(|seq| (id, seq))
        } else {
            None
        };
        self.owe(steps, confirm);
        failed.map_or(Ok(()), Err)
    }
}
