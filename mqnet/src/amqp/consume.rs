//! The delivering side of a channel: consumer tasks that receive (under a transaction of their
//! own per delivery on a transactional queue), `basic.get`, and the deliveries a connection
//! holds until they are acknowledged, rejected or given back.

use std::sync::Arc;
use std::time::Duration;

use amq_protocol::protocol::{basic, AMQPClass};
use amq_protocol::types::ShortString;
use mqcore::message::Message;
use mqcore::{ErrorCode, Queue, QueueManager, Transaction, Tx};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use super::conn::{code, Conn, Failure};
use super::map;
use super::methods::Channel;
use super::wire::Dialect;
use crate::auth::Right;

/// A message a consumer task received, for the connection to write.
pub(crate) struct Delivery {
    channel: u16,
    consumer: String,
    queue: Queue,
    msg: Message,
    held: Option<Transaction>,
    permit: Option<OwnedSemaphorePermit>,
    no_ack: bool,
}

impl Delivery {
    /// Whether its consumer has a prefetch limit (`basic.qos`).
    pub(crate) fn is_limited(&self) -> bool {
        self.permit.is_some()
    }

    /// Gives back a delivery nobody will see: a transactional receive is released, its message
    /// back at its place with its abort count unchanged (nobody saw it, so nothing aborted); a
    /// message already removed (non-transactional, or without acknowledgement) is sent again.
    fn give_back(self) {
        match self.held {
            Some(t) => t.release(),
            None => Held {
                queue: self.queue,
                tx: None,
                copy: Some(Box::new(self.msg)),
                _permit: self.permit,
                rolled_back: false,
            }
            .requeue(),
        }
    }
}

/// A delivery not yet acknowledged.
pub(super) struct Held {
    queue: Queue,
    /// The transaction its receive is part of (a transactional queue).
    pub(super) tx: Option<Transaction>,
    /// The message itself, from a non-transactional queue (already removed): requeue sends it
    /// again.
    copy: Option<Box<Message>>,
    _permit: Option<OwnedSemaphorePermit>,
    /// Acknowledged in a `tx.select` transaction that was then rolled back: its receive was
    /// part of an aborted transaction, whatever gives it back.
    pub(super) rolled_back: bool,
}

impl Held {
    /// Gives the message back: its receive aborted (back at its place, abort count raised), or,
    /// from a non-transactional queue, sent again.
    pub(super) fn requeue(self) {
        self.give_back(true);
    }

    /// Gives the message back when its channel ends without an acknowledgement. For Mono's
    /// provider (the 0-8 dialect) that is how System.Messaging peeks and receives by id: it
    /// consumes and closes, and MSMQ raises no other message's abort count for those, so the
    /// receive is released uncounted, unless an aborted transaction had acknowledged it.
    pub(super) fn return_on_close(self, dialect: Dialect) {
        let counted = dialect != Dialect::V08 || self.rolled_back;
        self.give_back(counted);
    }

    fn give_back(self, counted: bool) {
        match self.tx {
            Some(t) if !counted => t.release(),
            t => drop(t),
        }
        if let Some(m) = self.copy {
            let again = m.sender_copy();
            let tx = if self.queue.is_transactional() {
                Tx::Single
            } else {
                Tx::None
            };
            if let Err(e) = self.queue.send(again, tx) {
                tracing::warn!(error = %e, "could not requeue a message of a non-transactional queue");
            }
        }
    }

    /// Makes its removal final: its transaction joins the connection's `settling`, committed
    /// with the others acknowledged in the same read ([`Conn::settle`]).
    pub(super) fn settle(self, settling: &mut Vec<Transaction>) {
        settling.extend(self.tx);
    }
}

pub(super) struct Consumer {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Consumer {
    /// Stops the consumer and waits until it has: a message it was receiving is back in its
    /// queue when this returns.
    pub(super) async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

impl Conn {
    pub(super) fn consume(&mut self, id: u16, c: &basic::Consume) -> Result<(), Failure> {
        let (q, _) = self.open_queue(c.queue.as_str(), Right::Receive)?;
        let ch = self.chan(id)?;
        let tag = match c.consumer_tag.as_str() {
            "" => format!("amq.ctag-{}", uuid::Uuid::new_v4().simple()),
            t => t.to_owned(),
        };
        if ch.consumers.contains_key(&tag) {
            return Err(Failure::connection(
                code::NOT_ALLOWED,
                format!("NOT_ALLOWED - attempt to reuse consumer tag '{tag}'"),
            ));
        }
        let credit =
            (ch.prefetch > 0 && !c.no_ack).then(|| Arc::new(Semaphore::new(ch.prefetch.into())));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(consumer(
            self.qm.clone(),
            q,
            id,
            tag.clone(),
            c.no_ack,
            credit,
            stopped,
            self.deliveries.clone(),
        ));
        self.chan(id)?
            .consumers
            .insert(tag.clone(), Consumer { stop, task });
        if !c.nowait {
            self.send(
                id,
                AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(basic::ConsumeOk {
                    consumer_tag: ShortString::from(tag),
                })),
            );
        }
        Ok(())
    }

    pub(super) fn get(&mut self, id: u16, g: &basic::Get) -> Result<(), Failure> {
        let (q, _) = self.open_queue(g.queue.as_str(), Right::Receive)?;
        let transactional = q.is_transactional();
        let held = (transactional && !g.no_ack).then(|| self.qm.begin());
        let arg = match (&held, transactional) {
            (Some(t), _) => Tx::In(t),
            (None, true) => Tx::Single,
            (None, false) => Tx::None,
        };
        match q.receive(Duration::ZERO, arg) {
            Ok(msg) => {
                let left = q.len().unwrap_or(0) as u32;
                let ch = self.chan(id)?;
                ch.next_tag += 1;
                let tag = ch.next_tag;
                if !g.no_ack {
                    ch.unacked.insert(
                        tag,
                        Held {
                            queue: q.clone(),
                            copy: (!transactional).then(|| Box::new(msg.clone())),
                            tx: held,
                            _permit: None,
                            rolled_back: false,
                        },
                    );
                }
                self.send(
                    id,
                    AMQPClass::Basic(basic::AMQPMethod::GetOk(basic::GetOk {
                        delivery_tag: tag,
                        redelivered: msg.abort_count() > 0,
                        exchange: ShortString::from(""),
                        routing_key: g.queue.clone(),
                        message_count: left,
                    })),
                );
                self.send_content(
                    id,
                    map::to_properties(&msg, self.dialect == Dialect::V08),
                    &msg.body,
                );
            }
            Err(e) if e.code() == ErrorCode::IoTimeout => {
                self.send(
                    id,
                    AMQPClass::Basic(basic::AMQPMethod::GetEmpty(basic::GetEmpty {})),
                );
            }
            Err(e) => return Err(Failure::engine(&e)),
        }
        Ok(())
    }

    /// Writes a consumer's delivery, or gives it back when its channel or consumer is gone.
    pub(crate) fn deliver(&mut self, d: Delivery) {
        let live = self
            .channels
            .get(&d.channel)
            .is_some_and(|c| !c.closing && c.consumers.contains_key(&d.consumer));
        if !live {
            return d.give_back();
        }
        let transactional = d.held.is_some();
        let held = Held {
            queue: d.queue,
            copy: (!transactional && !d.no_ack).then(|| Box::new(d.msg.clone())),
            tx: d.held,
            _permit: d.permit,
            rolled_back: false,
        };
        let ch = self.channels.get_mut(&d.channel).expect("checked above");
        ch.next_tag += 1;
        let tag = ch.next_tag;
        let routing = held.queue.name().to_string();
        if !d.no_ack {
            ch.unacked.insert(tag, held);
        }
        self.send(
            d.channel,
            AMQPClass::Basic(basic::AMQPMethod::Deliver(basic::Deliver {
                consumer_tag: ShortString::from(d.consumer),
                delivery_tag: tag,
                redelivered: d.msg.abort_count() > 0,
                exchange: ShortString::from(""),
                routing_key: ShortString::from(routing),
            })),
        );
        self.send_content(
            d.channel,
            map::to_properties(&d.msg, self.dialect == Dialect::V08),
            &d.msg.body,
        );
    }
}

/// The unacknowledged deliveries a tag names: itself, or with `multiple` every one up to it
/// (all of them for tag 0). An unknown tag is AMQP's PRECONDITION_FAILED.
pub(super) fn take_tags(
    ch: &mut Channel,
    tag: u64,
    multiple: bool,
) -> Result<Vec<(u64, Held)>, Failure> {
    if multiple {
        let upto = if tag == 0 { u64::MAX } else { tag };
        let rest = ch.unacked.split_off(&upto.saturating_add(1));
        let taken = std::mem::replace(&mut ch.unacked, rest);
        if taken.is_empty() && tag != 0 {
            return Err(unknown_tag(tag));
        }
        return Ok(taken.into_iter().collect());
    }
    ch.unacked
        .remove(&tag)
        .map(|h| vec![(tag, h)])
        .ok_or_else(|| unknown_tag(tag))
}

fn unknown_tag(tag: u64) -> Failure {
    Failure::channel(
        code::PRECONDITION_FAILED,
        format!("PRECONDITION_FAILED - unknown delivery tag {tag}"),
    )
}

pub(super) fn reject(h: Held, requeue: bool, settling: &mut Vec<Transaction>) {
    if requeue {
        h.requeue();
    } else {
        h.settle(settling);
    }
}

/// A consumer: receives from `q` while it has credit, each message under a transaction of its
/// own on a transactional queue (unless `no_ack`), and hands it to the connection.
#[allow(clippy::too_many_arguments)]
async fn consumer(
    qm: QueueManager,
    q: Queue,
    channel: u16,
    tag: String,
    no_ack: bool,
    credit: Option<Arc<Semaphore>>,
    mut stop: watch::Receiver<bool>,
    out: mpsc::Sender<Delivery>,
) {
    let transactional = q.is_transactional();
    loop {
        let permit = match &credit {
            Some(s) => tokio::select! {
                biased;
                _ = stop.changed() => return,
                p = s.clone().acquire_owned() => p.ok(),
            },
            None => None,
        };
        let held = (transactional && !no_ack).then(|| qm.begin());
        let arg = match (&held, transactional) {
            (Some(t), _) => Tx::In(t),
            (None, true) => Tx::Single,
            (None, false) => Tx::None,
        };
        let got = tokio::select! {
            biased;
            _ = stop.changed() => return,
            r = q.receive_async(Duration::from_secs(3600), arg) => r,
        };
        match got {
            Ok(msg) => {
                let d = Delivery {
                    channel,
                    consumer: tag.clone(),
                    queue: q.clone(),
                    msg,
                    held,
                    permit,
                    no_ack,
                };
                // Cancellable: the connection may be waiting for this task to stop while its
                // queue of deliveries is full.
                tokio::select! {
                    biased;
                    r = out.reserve() => match r {
                        Ok(slot) => slot.send(d),
                        Err(_) => return d.give_back(),
                    },
                    _ = stop.changed() => return d.give_back(),
                }
            }
            Err(e) if e.code() == ErrorCode::IoTimeout => {}
            Err(e) => {
                tracing::debug!(error = %e, consumer = %tag, "AMQP consumer ends");
                return;
            }
        }
        if *stop.borrow() {
            return;
        }
    }
}
