//! A connection's channels and what their methods do to the queue manager: declares, publishes
//! (sends, gathered into one log record while more are buffered), consumers (a task each,
//! receiving under a transaction per delivery), acknowledgements, transactions and confirms.
//!
//! **Invariant:** a delivery from a transactional queue that was not acknowledged holds its
//! message under its own transaction; nothing but `basic.ack` (or a reject without requeue)
//! commits it, and every way a channel ends aborts it, so the message is back at its place.

use std::collections::{BTreeMap, HashMap};

use amq_protocol::protocol::{access, basic, channel, confirm, exchange, queue, tx, AMQPClass};
use amq_protocol::types::{AMQPValue, ShortString};
use mqcore::QueueProps;
use mqcore::{ErrorCode, Queue, Transaction};

use super::conn::{code, Conn, Failure};
use super::consume::{reject, take_tags, Consumer, Held};
use super::publish::{Outbound, Publishing};
use crate::auth::{queue_key, Right};

/// One channel's state.
#[derive(Default)]
pub(crate) struct Channel {
    pub(super) publishing: Option<Publishing>,
    pub(super) outbound: Vec<Outbound>,
    /// The queue the last publish went to, by its routing key.
    pub(super) route: Option<(String, Queue)>,
    /// `tx.select`: publishes join `tx`; acknowledgements wait in `deferred` and join it at the
    /// commit, so both are decided by one transaction.
    pub(super) tx_mode: bool,
    pub(super) tx: Option<Transaction>,
    pub(super) deferred: Vec<(u64, Held)>,
    /// `confirm.select`: the next publish's sequence number.
    pub(super) confirm: Option<u64>,
    pub(super) unacked: BTreeMap<u64, Held>,
    pub(super) next_tag: u64,
    pub(super) consumers: HashMap<String, Consumer>,
    pub(super) prefetch: u16,
    /// Closed by the server, waiting for the client's close-ok.
    pub(super) closing: bool,
}

impl Conn {
    /// Ends channel `id`: its consumers stop (deliveries they already handed over are given
    /// back too), then its unacknowledged deliveries and open transaction are given back, all
    /// before the next frame is read.
    pub(crate) async fn close_channel(&mut self, id: u16) {
        let Some(mut ch) = self.channels.remove(&id) else {
            return;
        };
        // Its logged publishes still finish, but owe no confirm: a channel opened later under
        // the same number must not receive one.
        for c in self.unconfirmed.items_mut() {
            if c.is_some_and(|(ch, _)| ch == id) {
                *c = None;
            }
        }
        for (_, c) in ch.consumers.drain() {
            c.stop().await;
        }
        self.drain_deliveries();
        for (_, h) in std::mem::take(&mut ch.unacked) {
            h.return_on_close(self.dialect);
        }
        // Acknowledged in a transaction that never committed: that transaction aborts.
        for (_, h) in std::mem::take(&mut ch.deferred) {
            h.requeue();
        }
        drop(ch.tx.take());
    }

    /// Handles every delivery consumers have handed over so far.
    fn drain_deliveries(&mut self) {
        while let Ok(d) = self.delivered.try_recv() {
            self.deliver(d);
        }
    }
}

/// The private queue an AMQP queue name stands for, or a format name or path as given. Mono's
/// provider sends the path without its computer (`private$\orders` for `.\private$\orders`),
/// having connected to that computer already.
fn path_of(name: &str) -> Result<String, Failure> {
    let p = if let Some(q) = name
        .get(..9)
        .filter(|p| p.eq_ignore_ascii_case("private$\\"))
        .map(|_| &name[9..])
    {
        mqcore::name::QueueName::try_private(".", q)
    } else if name.contains('\\') || name.contains('=') {
        mqcore::name::QueueName::parse(name)
    } else {
        mqcore::name::QueueName::try_private(".", name)
    };
    p.map(|q| q.to_string()).map_err(|e| Failure::engine(&e))
}

impl Conn {
    fn check(&self, right: Right, path: &str) -> Result<(), Failure> {
        self.principal
            .check(right, &queue_key(path), path)
            .map_err(|e| Failure::engine(&e))
    }

    pub(super) fn open_queue(&self, name: &str, right: Right) -> Result<(Queue, String), Failure> {
        let path = path_of(name)?;
        self.check(right, &path)?;
        let q = self.qm.open(&path).map_err(|e| Failure::engine(&e))?;
        Ok((q, path))
    }

    pub(super) fn chan(&mut self, id: u16) -> Result<&mut Channel, Failure> {
        self.channels.get_mut(&id).ok_or_else(|| {
            Failure::connection(code::CHANNEL_ERROR, format!("channel {id} is not open"))
        })
    }

    /// Runs a method on channel `id`; `more` says whether another frame is already buffered.
    pub(crate) async fn method(
        &mut self,
        id: u16,
        m: AMQPClass,
        more: bool,
    ) -> Result<(), Failure> {
        if let AMQPClass::Channel(channel::AMQPMethod::Open(_)) = m {
            if id > self.channel_max() {
                return Err(Failure::connection(
                    code::CHANNEL_ERROR,
                    format!("channel {id} is over channel_max {}", self.channel_max()),
                ));
            }
            if self.channels.contains_key(&id) {
                return Err(Failure::connection(
                    code::CHANNEL_ERROR,
                    format!("channel {id} is already open"),
                ));
            }
            self.channels.insert(id, Channel::default());
            self.send(
                id,
                AMQPClass::Channel(channel::AMQPMethod::OpenOk(channel::OpenOk {})),
            );
            return Ok(());
        }
        let ch = self.chan(id)?;
        if ch.closing {
            // Only the close handshake counts until the client confirms.
            if let AMQPClass::Channel(channel::AMQPMethod::CloseOk(_)) = m {
                self.channels.remove(&id);
            }
            return Ok(());
        }
        if ch.publishing.is_some() {
            return Err(Failure::connection(
                code::UNEXPECTED_FRAME,
                "a method where a publish's content was expected",
            )
            .on(&m));
        }
        let publish = matches!(m, AMQPClass::Basic(basic::AMQPMethod::Publish(_)));
        let settles = matches!(
            m,
            AMQPClass::Basic(
                basic::AMQPMethod::Ack(_)
                    | basic::AMQPMethod::Nack(_)
                    | basic::AMQPMethod::Reject(_)
            )
        );
        if !publish && !settles {
            // Publishes gathered on any channel go first: a get or a commit after a publish,
            // on whichever channel, sees it.
            self.flush(id).await.map_err(|f| f.on(&m))?;
            let others: Vec<u16> = self
                .channels
                .iter()
                .filter(|(&c, ch)| c != id && !ch.outbound.is_empty())
                .map(|(&c, _)| c)
                .collect();
            for other in others {
                if let Err(f) = self.flush(other).await {
                    self.fail_channel(other, f).await;
                }
            }
            // ...and are visible: their records are durable and published.
            let done = self.unconfirmed.drain().await;
            self.confirmed(done);
        }
        match self.run(id, &m, more).await {
            Ok(()) => Ok(()),
            Err(f) if f.hard => Err(f.on(&m)),
            Err(f) => {
                self.fail_channel(id, f.on(&m)).await;
                Ok(())
            }
        }
    }

    /// Closes channel `id` for `f`: its state is given back and the client is told why.
    async fn fail_channel(&mut self, id: u16, f: Failure) {
        tracing::debug!(channel = id, code = f.code, text = %f.text, "AMQP channel closed");
        // Publishes the channel made before the failing method stand, as they would had the
        // client's next frame been any other method.
        if let Err(e) = self.flush(id).await {
            tracing::warn!(channel = id, error = %e.text, "publishes before a channel error were not sent");
        }
        self.close_channel(id).await;
        self.channels.insert(
            id,
            Channel {
                closing: true,
                ..Channel::default()
            },
        );
        self.send(
            id,
            AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
                reply_code: f.code,
                reply_text: ShortString::from(f.text),
                class_id: f.method.0,
                method_id: f.method.1,
            })),
        );
    }

    async fn run(&mut self, id: u16, m: &AMQPClass, more: bool) -> Result<(), Failure> {
        use basic::AMQPMethod as B;
        match m {
            AMQPClass::Channel(channel::AMQPMethod::Close(_)) => {
                self.close_channel(id).await;
                self.send(id, AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})));
            }
            AMQPClass::Channel(channel::AMQPMethod::Flow(f)) => {
                self.send(
                    id,
                    AMQPClass::Channel(channel::AMQPMethod::FlowOk(channel::FlowOk {
                        active: f.active,
                    })),
                );
            }
            AMQPClass::Access(access::AMQPMethod::Request(_)) => {
                self.send(id, AMQPClass::Access(access::AMQPMethod::RequestOk(access::RequestOk {})));
            }
            AMQPClass::Queue(q) => self.queue_method(id, q)?,
            AMQPClass::Exchange(exchange::AMQPMethod::Declare(d))
                if d.passive && (d.exchange.as_str().is_empty() || d.exchange.as_str() == "amq.default") =>
            {
                if !d.nowait {
                    self.send(
                        id,
                        AMQPClass::Exchange(exchange::AMQPMethod::DeclareOk(exchange::DeclareOk {})),
                    );
                }
            }
            AMQPClass::Exchange(_) => {
                return Err(Failure::channel(
                    code::ACCESS_REFUSED,
                    "ACCESS_REFUSED - mqemu has only the default exchange: publish with the queue's name as routing key",
                ))
            }
            AMQPClass::Basic(B::Qos(q)) => {
                self.chan(id)?.prefetch = q.prefetch_count;
                self.send(id, AMQPClass::Basic(B::QosOk(basic::QosOk {})));
            }
            AMQPClass::Basic(B::Publish(p)) => {
                let x = p.exchange.as_str();
                if !(x.is_empty() || x == "amq.default") {
                    return Err(Failure::channel(
                        code::NOT_FOUND,
                        format!("NOT_FOUND - no exchange '{x}' in vhost '/' (mqemu has only the default exchange)"),
                    ));
                }
                self.chan(id)?.publishing = Some(Publishing::new(p.clone()));
            }
            AMQPClass::Basic(B::Consume(c)) => self.consume(id, c)?,
            AMQPClass::Basic(B::Cancel(c)) => {
                if let Some(consumer) = self.chan(id)?.consumers.remove(c.consumer_tag.as_str()) {
                    consumer.stop().await;
                    // Deliveries it handed over before it stopped: given back now, before the
                    // cancel is confirmed.
                    self.drain_deliveries();
                }
                if !c.nowait {
                    self.send(
                        id,
                        AMQPClass::Basic(B::CancelOk(basic::CancelOk {
                            consumer_tag: c.consumer_tag.clone(),
                        })),
                    );
                }
            }
            AMQPClass::Basic(B::Get(g)) => self.get(id, g)?,
            AMQPClass::Basic(B::Ack(a)) => {
                let ch = self.channels.get_mut(&id).expect("checked by method");
                for (tag, h) in take_tags(ch, a.delivery_tag, a.multiple)? {
                    if ch.tx_mode {
                        ch.deferred.push((tag, h));
                    } else {
                        h.settle(&mut self.settling);
                    }
                }
            }
            AMQPClass::Basic(B::Reject(r)) => {
                let ch = self.channels.get_mut(&id).expect("checked by method");
                for (_, h) in take_tags(ch, r.delivery_tag, false)? {
                    reject(h, r.requeue, &mut self.settling);
                }
            }
            AMQPClass::Basic(B::Nack(n)) => {
                let ch = self.channels.get_mut(&id).expect("checked by method");
                for (_, h) in take_tags(ch, n.delivery_tag, n.multiple)? {
                    reject(h, n.requeue, &mut self.settling);
                }
            }
            AMQPClass::Basic(B::Recover(_)) | AMQPClass::Basic(B::RecoverAsync(_)) => {
                let ch = self.chan(id)?;
                for (_, h) in std::mem::take(&mut ch.unacked) {
                    h.requeue();
                }
                if matches!(m, AMQPClass::Basic(B::Recover(_))) {
                    self.send(id, AMQPClass::Basic(B::RecoverOk(basic::RecoverOk {})));
                }
            }
            AMQPClass::Tx(t) => self.tx_method(id, t).await?,
            AMQPClass::Confirm(confirm::AMQPMethod::Select(s)) => {
                let ch = self.chan(id)?;
                if ch.tx_mode {
                    return Err(Failure::channel(
                        code::PRECONDITION_FAILED,
                        "PRECONDITION_FAILED - a transactional channel cannot be put into confirm mode",
                    ));
                }
                ch.confirm.get_or_insert(1);
                if !s.nowait {
                    self.send(
                        id,
                        AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(confirm::SelectOk {})),
                    );
                }
            }
            m => {
                return Err(Failure::connection(
                    code::NOT_IMPLEMENTED,
                    format!("NOT_IMPLEMENTED - {m:?} is not served here"),
                ))
            }
        }
        let _ = more;
        Ok(())
    }

    fn queue_method(&mut self, id: u16, m: &queue::AMQPMethod) -> Result<(), Failure> {
        use queue::AMQPMethod as Q;
        match m {
            Q::Declare(d) => {
                let name = match d.queue.as_str() {
                    "" => format!("amq.gen-{}", uuid::Uuid::new_v4().simple()),
                    n => n.to_owned(),
                };
                let path = path_of(&name)?;
                let exists = self.qm.open(&path).map(|q| !q.is_deleted()).unwrap_or(false);
                if !exists {
                    if d.passive {
                        return Err(Failure::channel(
                            code::NOT_FOUND,
                            format!("NOT_FOUND - no queue '{name}' in vhost '/' (MQ_ERROR_QUEUE_NOT_FOUND)"),
                        ));
                    }
                    self.check(Right::Admin, &path)?;
                    // Transactional unless told otherwise: an unacknowledged delivery is then a
                    // receive under a transaction, as AMQP's acknowledgements need.
                    let transactional = !matches!(
                        d.arguments.inner().get(&ShortString::from("x-mqemu-transactional")),
                        Some(AMQPValue::Boolean(false))
                    );
                    let props = if transactional {
                        QueueProps::transactional()
                    } else {
                        QueueProps::default()
                    };
                    match self.qm.create_queue(&path, props) {
                        Ok(_) => {}
                        Err(e) if e.code() == ErrorCode::QueueExists => {}
                        Err(e) => return Err(Failure::engine(&e)),
                    }
                } else {
                    self.check(Right::Peek, &path)
                        .or_else(|_| self.check(Right::Send, &path))?;
                }
                let count = self
                    .qm
                    .open(&path)
                    .and_then(|q| q.len())
                    .map_err(|e| Failure::engine(&e))?;
                if !d.nowait {
                    self.send(
                        id,
                        AMQPClass::Queue(Q::DeclareOk(queue::DeclareOk {
                            queue: ShortString::from(name),
                            message_count: count as u32,
                            consumer_count: 0,
                        })),
                    );
                }
            }
            Q::Delete(d) => {
                let (q, path) = self.open_queue(d.queue.as_str(), Right::Admin)?;
                let count = q.len().unwrap_or(0);
                if d.if_empty && count > 0 {
                    return Err(Failure::channel(
                        code::PRECONDITION_FAILED,
                        format!("PRECONDITION_FAILED - queue '{}' in vhost '/' not empty", d.queue.as_str()),
                    ));
                }
                self.qm.delete_queue(&path).map_err(|e| Failure::engine(&e))?;
                if !d.nowait {
                    self.send(
                        id,
                        AMQPClass::Queue(Q::DeleteOk(queue::DeleteOk {
                            message_count: count as u32,
                        })),
                    );
                }
            }
            Q::Purge(p) => {
                let (q, _) = self.open_queue(p.queue.as_str(), Right::Receive)?;
                let n = q.purge().map_err(|e| Failure::engine(&e))?;
                if !p.nowait {
                    self.send(
                        id,
                        AMQPClass::Queue(Q::PurgeOk(queue::PurgeOk {
                            message_count: n as u32,
                        })),
                    );
                }
            }
            Q::Bind(_) | Q::Unbind(_) => {
                return Err(Failure::channel(
                    code::ACCESS_REFUSED,
                    "ACCESS_REFUSED - mqemu has only the default exchange, which every queue is bound to",
                ))
            }
            other => {
                return Err(Failure::connection(
                    code::COMMAND_INVALID,
                    format!("{other:?} is a server's method"),
                ))
            }
        }
        Ok(())
    }

    async fn tx_method(&mut self, id: u16, m: &tx::AMQPMethod) -> Result<(), Failure> {
        let qm = self.qm.clone();
        let ch = self.chan(id)?;
        match m {
            tx::AMQPMethod::Select(_) => {
                if ch.confirm.is_some() {
                    return Err(Failure::channel(
                        code::PRECONDITION_FAILED,
                        "PRECONDITION_FAILED - a channel in confirm mode cannot be transactional",
                    ));
                }
                ch.tx_mode = true;
                self.send(id, AMQPClass::Tx(tx::AMQPMethod::SelectOk(tx::SelectOk {})));
            }
            tx::AMQPMethod::Commit(_) | tx::AMQPMethod::Rollback(_) => {
                if !ch.tx_mode {
                    return Err(Failure::channel(
                        code::PRECONDITION_FAILED,
                        "PRECONDITION_FAILED - channel is not transactional",
                    ));
                }
                let commit = matches!(m, tx::AMQPMethod::Commit(_));
                let t = ch.tx.take();
                let deferred = std::mem::take(&mut ch.deferred);
                if commit {
                    // The acknowledged receives join the publishes' transaction: one commit,
                    // one log record, all or nothing.
                    let mut t = t;
                    let mut settled = Vec::with_capacity(deferred.len());
                    for (_, mut h) in deferred {
                        if let Some(r) = h.tx.take() {
                            t.get_or_insert_with(|| qm.begin())
                                .absorb(&r)
                                .map_err(|e| Failure::engine(&e))?;
                        }
                        settled.push(h);
                    }
                    if let Some(t) = t {
                        let done = tokio::task::spawn_blocking(move || t.commit())
                            .await
                            .map_err(|e| Failure::channel(code::INTERNAL_ERROR, e.to_string()))?;
                        done.map_err(|e| Failure::engine(&e))?;
                    }
                    drop(settled);
                    self.send(id, AMQPClass::Tx(tx::AMQPMethod::CommitOk(tx::CommitOk {})));
                } else {
                    drop(t);
                    // Acknowledgements rolled back: those deliveries are unacknowledged again,
                    // received in a transaction that aborted.
                    ch.unacked.extend(deferred.into_iter().map(|(tag, mut h)| {
                        h.rolled_back = true;
                        (tag, h)
                    }));
                    self.send(
                        id,
                        AMQPClass::Tx(tx::AMQPMethod::RollbackOk(tx::RollbackOk {})),
                    );
                }
            }
            other => {
                return Err(Failure::connection(
                    code::COMMAND_INVALID,
                    format!("{other:?} is a server's method"),
                ))
            }
        }
        Ok(())
    }
}
