//! The sender's side of transfer: outgoing queues for queues on other queue managers, sends into
//! them (alone or inside a transaction with local sends), the batches the transfer task takes out
//! of them and what the receiver's answers do to them.
//!
//! **Invariant:** a message leaves its outgoing queue only on the receiver's answer for it
//! (accepted, already accepted, or rejected and dead-lettered here), or by a withdrawal the
//! receiver confirmed; so a crash anywhere leaves every unanswered message where it was.

use std::sync::{Arc, PoisonError};

use super::Inner;
use crate::error::{Error, ErrorCode, Result};
use crate::message::{Delivery, JournalFlags, Message, MessageClass, MessageId};
use crate::name::{Host, Protocol, QueueName, QueueRef};
use crate::queue::outgoing::Outgoing;
use crate::queue::store::{LookupId, Store};
use crate::queue::Opened;
use crate::transfer::{Outbound, Reply, SendCursor, Seq, Verdict};
use crate::tx::{Dest, StagedSend, Tx};

impl Inner {
    /// What a name on another computer opens: its outgoing queue, created on first use. Only a
    /// private queue named through a computer name, a TCP address or an HTTP URL can be reached.
    pub(super) fn remote(&self, name: &QueueName) -> Result<Opened> {
        let host = name.host();
        let refuse = |why: &str| {
            Err(Error::new(
                ErrorCode::RemoteMachineNotAvailable,
                format!(
                    "{name} is on another computer{}: {why}",
                    self.reached_at(&host)
                ),
            ))
        };
        let (protocol, computer) = match host {
            Host::Computer(c) => (Protocol::Os, c),
            Host::Address {
                protocol: p @ (Protocol::Tcp | Protocol::Http | Protocol::Https),
                address,
            } => (p, address),
            _ => return refuse("a computer named by GUID gives no address to send to"),
        };
        let queue = match name.queue() {
            QueueRef::Private {
                name: q,
                subqueue: None,
                journal: false,
            } => q,
            QueueRef::Private { .. } | QueueRef::System(_) => {
                return Err(Error::new(
                    ErrorCode::UnsupportedAccessMode,
                    format!("{name} cannot be sent to: only a queue itself takes sends"),
                ))
            }
            _ => return refuse("only private queues are reached on other computers"),
        };
        let direct = match protocol {
            Protocol::Http => format!("DIRECT=HTTP://{computer}/msmq/private$/{queue}"),
            Protocol::Https => format!("DIRECT=HTTPS://{computer}/msmq/private$/{queue}"),
            Protocol::Tcp => format!("DIRECT=TCP:{computer}\\private$\\{queue}"),
            _ => format!("DIRECT=OS:{computer}\\private$\\{queue}"),
        };
        let direct = QueueName::parse(&direct)?;
        Ok(Opened::Remote(self.outgoing_named(direct)?))
    }

    /// The outgoing queue for the destination `direct` (a `DIRECT=` name), created on first use.
    pub(crate) fn outgoing_named(&self, direct: QueueName) -> Result<Arc<Outgoing>> {
        let key = direct.to_string().to_ascii_lowercase();
        let mut map = self.lock_outgoing();
        if let Some(o) = map.get(&key) {
            return Ok(o.clone());
        }
        let (host, queue) = match (direct.host(), direct.queue()) {
            // One link per host and transport: an HTTP(S) destination is its own host,
            // `http://host[:port]` or `https://host[:port]`, whose link speaks SRMP.
            (
                Host::Address {
                    protocol: p @ (Protocol::Http | Protocol::Https),
                    address: h,
                },
                QueueRef::Private { name: q, .. },
            ) => {
                let scheme = if p == Protocol::Https {
                    "https"
                } else {
                    "http"
                };
                (
                    format!("{scheme}://{}", h.to_ascii_lowercase()),
                    q.to_owned(),
                )
            }
            (
                Host::Computer(h) | Host::Address { address: h, .. },
                QueueRef::Private { name: q, .. },
            ) => (h.to_ascii_lowercase(), q.to_owned()),
            _ => {
                return Err(Error::new(
                    ErrorCode::IllegalFormatname,
                    format!("{direct} is not a queue on another computer"),
                ))
            }
        };
        let remote_path = QueueName::try_private(".", &queue)?.to_string();
        let store = Store::linked(Outgoing::store_ref(&key), false, self.cold.as_ref());
        let o = Arc::new(Outgoing::new(
            direct,
            host,
            remote_path,
            store,
            self.ready.clone(),
        ));
        map.insert(key, o.clone());
        Ok(o)
    }

    /// The outgoing queue a log record names by `key`, recreated from its name (recovery).
    pub(super) fn outgoing_by_key(&self, key: &str) -> Option<Arc<Outgoing>> {
        if let Some(o) = self.lock_outgoing().get(key) {
            return Some(o.clone());
        }
        let name = QueueName::parse(key).ok()?;
        self.outgoing_named(name).ok()
    }

    pub(super) fn lock_outgoing(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Arc<Outgoing>>> {
        self.outgoing.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every outgoing queue, by name.
    pub(crate) fn outgoing_queues(&self) -> Vec<Arc<Outgoing>> {
        let mut all: Vec<Arc<Outgoing>> = self.lock_outgoing().values().cloned().collect();
        all.sort_by(|a, b| a.key.cmp(&b.key));
        all
    }

    /// Sends `msg` to a queue on another computer through its outgoing queue, under `tx`. The
    /// message is the sender's until the receiver answers: express ones in memory only (lost on
    /// a restart, as MSMQ's are), recoverable and transactional ones logged.
    pub(crate) fn send_remote(
        self: &Arc<Self>,
        out: &Arc<Outgoing>,
        msg: Message,
        tx: Tx<'_>,
    ) -> Result<MessageId> {
        msg.validate()?;
        let msg = self.stamp_as_sent(msg, out.name.clone(), tx.is_transactional());
        let id = msg.id;
        match tx {
            Tx::None => {
                self.run(|eff| eff.put_outgoing(out, msg))?;
            }
            tx => self.in_tx(tx, |t| self.stage_remote(out, msg, t))?,
        }
        Ok(id)
    }

    /// [`crate::Queue::send_batch`] to another computer: single-message transactions with equal
    /// time limits share one internal transaction, and non-transactional messages one step, so
    /// a pipelined producer costs one log record per batch, as it does locally.
    pub(crate) fn send_remote_batch(
        self: &Arc<Self>,
        out: &Arc<Outgoing>,
        msgs: Vec<Message>,
        tx: Tx<'_>,
    ) -> Vec<Result<MessageId>> {
        if let Tx::Single = tx {
            return self.single_runs(msgs, |m, t| self.send_remote(out, m, Tx::In(t)));
        }
        let mut results = Vec::with_capacity(msgs.len());
        let msgs = msgs.into_iter();
        match tx {
            Tx::None => {
                let mut stamped = Vec::new();
                for msg in msgs {
                    match msg.validate() {
                        Ok(()) => {
                            let msg = self.stamp_as_sent(msg, out.name.clone(), false);
                            results.push(Ok(msg.id));
                            stamped.push((results.len() - 1, msg));
                        }
                        Err(e) => results.push(Err(e)),
                    }
                }
                let at: Vec<usize> = stamped.iter().map(|(i, _)| *i).collect();
                let r = self.run(|eff| {
                    for (_, msg) in stamped {
                        eff.put_outgoing(out, msg);
                    }
                });
                if let Err(e) = r {
                    for i in at {
                        results[i] = Err(e.clone());
                    }
                }
            }
            Tx::In(_) | Tx::Single => results.extend(msgs.map(|m| self.send_remote(out, m, tx))),
        }
        results
    }

    fn stage_remote(
        &self,
        out: &Arc<Outgoing>,
        mut msg: Message,
        t: &crate::tx::Transaction,
    ) -> Result<()> {
        let mut st = t.shared.lock_active()?;
        msg.priority = 0;
        msg.delivery = Delivery::Recoverable;
        let (ttrq, ttbr) = *st
            .first_times
            .get_or_insert((msg.time_to_reach_queue, msg.time_to_be_received));
        msg.time_to_reach_queue = ttrq;
        msg.time_to_be_received = ttbr;
        st.sends.push(StagedSend {
            dest: Dest::Outgoing(out.clone()),
            msg,
        });
        Ok(())
    }

    /// The next messages to send after `cursor`, in number order, at most `max` of them and
    /// about `max_bytes`: none while the queue is paused, and none at or above a number a
    /// committing step still holds.
    pub(crate) fn outgoing_batch(
        &self,
        out: &Outgoing,
        cursor: &mut SendCursor,
        max: usize,
        max_bytes: u64,
    ) -> Vec<Outbound> {
        // The state stays locked while the batch is read: an expiry deciding whether a message
        // may have been sent sees either all of this batch handed out or none of it.
        let mut st = out.state();
        if st.paused {
            return Vec::new();
        }
        let limit = out.watermark(&st);
        cursor.prev = cursor.prev.max(st.acked);
        let mut s = out.store.lock();
        let mut keys = Vec::new();
        let mut after = cursor.after;
        while keys.len() < max {
            let Some(key) = s.next_by_lookup(after) else {
                break;
            };
            if key.lookup() >= limit {
                break;
            }
            after = key.lookup();
            keys.push(key);
        }
        let mut batch = Vec::with_capacity(keys.len());
        let mut bytes = 0;
        s.promote_many(&keys);
        for key in keys {
            if bytes >= max_bytes {
                break;
            }
            let Some(msg) = s.read(key) else { break };
            let lookup: LookupId = msg.lookup_id;
            cursor.after = lookup;
            let seq = msg.transactional.then(|| {
                let seq = Seq {
                    n: lookup,
                    prev: cursor.prev,
                };
                cursor.prev = lookup;
                seq
            });
            st.maybe_sent = st.maybe_sent.max(lookup);
            bytes += crate::message::footprint(&msg);
            let withdraw = st.withdrawing.contains_key(&lookup);
            batch.push(Outbound {
                lookup,
                seq,
                msg,
                withdraw,
            });
        }
        batch
    }

    /// Makes sure the timer expires `out`'s messages at its earliest deadline.
    pub(crate) fn arm_outgoing(self: &Arc<Self>, out: &Arc<Outgoing>) {
        let at = {
            let mut st = out.state();
            let Some(&(next, _)) = st.deadlines.first() else {
                return;
            };
            if st.armed.is_some_and(|armed| armed <= next) {
                return;
            }
            st.armed = Some(next);
            next
        };
        let qm = Arc::downgrade(self);
        let weak = Arc::downgrade(out);
        self.timer.schedule(at, move || {
            let (Some(qm), Some(out)) = (qm.upgrade(), weak.upgrade()) else {
                return;
            };
            {
                let mut st = out.state();
                if st.armed == Some(at) {
                    st.armed = None;
                }
            }
            qm.expire_outgoing(&out);
            qm.arm_outgoing(&out);
        });
    }

    /// Messages out of time in `out`: those that cannot have reached the receiver go to the
    /// dead-letter queue now (with a NACK if one was asked for); transactional ones that may
    /// have are withdrawn first, so the receiver's sequence moves past them.
    pub(crate) fn expire_outgoing(self: &Arc<Self>, out: &Arc<Outgoing>) {
        let now = self.now();
        let mut dead = Vec::new();
        let mut withdraw = false;
        {
            let mut st = out.state();
            let mut s = out.store.lock();
            while let Some(&(at, lookup)) = st.deadlines.first() {
                if at > now {
                    break;
                }
                st.deadlines.pop_first();
                let Some(key) = s.key_of(lookup) else {
                    continue;
                };
                let Some(class) = s.read(key).and_then(|m| {
                    let (_, class) = crate::queue::outgoing::deadline(&m)?;
                    Some((class, m.transactional))
                }) else {
                    continue;
                };
                let (class, transactional) = class;
                if transactional && lookup <= st.maybe_sent {
                    st.withdrawing.insert(lookup, class);
                    withdraw = true;
                } else if let Some(msg) = s.take(key) {
                    dead.push((msg, class));
                }
            }
        }
        if !dead.is_empty() {
            self.run_quietly(|eff| {
                for (mut msg, class) in dead {
                    eff.removed(&out.store, &msg);
                    msg.destination = Some(out.name.clone());
                    self.fail_message(*msg, class, eff);
                }
            });
        }
        if withdraw {
            out.notify();
        }
    }

    /// Applies the receiver's answer to a batch: answered messages leave the outgoing queue
    /// (rejected ones dead-lettered here with their class, and negatively acknowledged), the
    /// acknowledged number moves on, messages the receiver saw as a gap stay to be sent again.
    /// Returns how many messages left.
    pub(crate) fn settle(
        self: &Arc<Self>,
        out: &Arc<Outgoing>,
        sent: &[(LookupId, Option<Seq>)],
        reply: &Reply,
    ) -> Result<usize> {
        if reply.verdicts.len() != sent.len() {
            return Err(Error::new(
                ErrorCode::InvalidParameter,
                format!(
                    "the receiver answered {} of {} transferred messages",
                    reply.verdicts.len(),
                    sent.len()
                ),
            ));
        }
        let mut left = 0;
        self.run(|eff| {
            let mut s = out.store.lock();
            let mut done = Vec::new();
            for ((lookup, _), verdict) in sent.iter().zip(&reply.verdicts) {
                if *verdict == Verdict::Gap {
                    continue;
                }
                let Some(key) = s.key_of(*lookup) else {
                    continue;
                };
                let Some(msg) = s.take(key) else { continue };
                done.push((msg, *verdict));
            }
            drop(s);
            let mut st = out.state();
            if reply.last > st.acked {
                st.acked = reply.last;
                eff.acked(out, reply.last);
            }
            let mut withdrawn = Vec::with_capacity(done.len());
            for (msg, _) in &done {
                withdrawn.push(st.withdrawing.remove(&msg.lookup_id));
            }
            drop(st);
            for ((mut msg, verdict), withdrawn) in done.into_iter().zip(withdrawn) {
                eff.removed(&out.store, &msg);
                left += 1;
                // Leaving the outgoing queue for a queue here: it names its destination again.
                msg.destination = Some(out.name.clone());
                match verdict {
                    Verdict::Rejected(class) => self.fail_message(*msg, class, eff),
                    Verdict::Withdrawn => {
                        let class = withdrawn.unwrap_or(MessageClass::NACK_REACH_QUEUE_TIMEOUT);
                        self.fail_message(*msg, class, eff);
                    }
                    _ if msg.journal.contains(JournalFlags::JOURNAL) => {
                        // Source journaling: the copy is taken once the message arrived.
                        eff.put(&self.journal, msg);
                    }
                    _ => {}
                }
            }
        })?;
        Ok(left)
    }
}
