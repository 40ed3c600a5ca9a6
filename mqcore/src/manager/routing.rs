//! MSMQ's routing around a queue: acknowledgements (ACK/NACK classes), dead letters, journal
//! copies and time-to-be-received expiry.

use std::sync::Arc;

use bytes::Bytes;

use super::send::over_quota;
use super::Inner;
use crate::message::footprint;
use crate::message::{Acknowledge, JournalFlags, Message, MessageClass};
use crate::queue::store::Store;
use crate::queue::{Opened, QueueInner};
use crate::step::Step;

impl Inner {
    /// A message left its destination queue (or subqueue) through a receive: journal it (target
    /// journaling) and acknowledge. Receiving a journal copy or a dead letter does neither: that
    /// message was delivered once already.
    pub(crate) fn after_receive(&self, parent: Option<&QueueInner>, msg: &Message, eff: &mut Step) {
        let Some(q) = parent else {
            return;
        };
        let (journal, journal_quota) = (q.hot.journal(), q.hot.journal_quota_kb());
        if journal {
            let bytes = q.journal.lock().bytes();
            if over_quota(journal_quota, bytes, footprint(msg)) {
                tracing::warn!(queue = %q.path, "journal quota reached; journal copy dropped");
            } else {
                // A journal closed by deletion simply takes no copy.
                eff.put(&q.journal, msg.clone());
            }
        }
        self.acknowledge(msg, MessageClass::ACK_RECEIVE, eff);
    }

    /// A message that will not be received: negative acknowledgement, then dead letter. The
    /// caller has recorded that it left its queue.
    pub(crate) fn fail_message(&self, msg: Message, class: MessageClass, eff: &mut Step) {
        self.acknowledge(&msg, class, eff);
        self.dead_letter(msg, class, eff);
    }

    /// Dead-letters messages found expired in `store`, as a step of its own.
    pub(crate) fn expired(self: &Arc<Self>, store: &Store, expired: Vec<Message>) {
        if !expired.is_empty() {
            self.run_quietly(|eff| self.dead_letter_expired(store, expired, eff));
        }
    }

    /// Dead-letters messages whose time-to-be-received ran out in `store`.
    pub(crate) fn dead_letter_expired(&self, store: &Store, expired: Vec<Message>, eff: &mut Step) {
        for m in expired {
            eff.removed(store, &m);
            self.fail_message(m, MessageClass::NACK_RECEIVE_TIMEOUT, eff);
        }
    }

    /// Transactional messages always go to the transactional dead-letter queue; others only when
    /// their sender set `MQMSG_DEADLETTER`.
    pub(super) fn dead_letter(&self, mut msg: Message, class: MessageClass, eff: &mut Step) {
        let store = if msg.transactional {
            &self.dead_xact
        } else if msg.journal.contains(JournalFlags::DEADLETTER) {
            &self.dead_letter
        } else {
            return;
        };
        msg.class = class;
        // System queues are never deleted, so they always take the message.
        eff.put(store, msg);
    }

    /// Sends the acknowledgement of `class` for `orig` to its admin queue, if the sender asked for
    /// that kind. Acknowledgements go only to local non-transactional queues (MSMQ sends them as
    /// non-transactional messages); others are dropped with a log line.
    pub(crate) fn acknowledge(&self, orig: &Message, class: MessageClass, eff: &mut Step) {
        if class.is_nack() {
            self.nacks
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let Some(admin) = &orig.admin_queue else {
            return;
        };
        let wanted = match class {
            MessageClass::ACK_REACH_QUEUE => Acknowledge::POS_ARRIVAL,
            MessageClass::ACK_RECEIVE => Acknowledge::POS_RECEIVE,
            c if c.is_nack() && c.is_receive() => Acknowledge::NEG_RECEIVE,
            c if c.is_nack() => Acknowledge::NEG_ARRIVAL,
            _ => return,
        };
        if !orig.acknowledge.contains(wanted) {
            return;
        }
        let target = match self.resolve(admin) {
            Ok(Opened::Main(q)) if !q.is_transactional() => Ok(q),
            Ok(Opened::Remote(out)) => Err(out),
            _ => {
                tracing::debug!(%admin, "acknowledgement dropped: admin queue is not a non-transactional queue");
                return;
            }
        };
        let now = self.now();
        let ack = Message {
            label: orig.label.clone(),
            body: if class.is_nack() {
                orig.body.clone()
            } else {
                Bytes::new()
            },
            body_type: orig.body_type,
            correlation_id: Some(orig.id),
            app_specific: orig.app_specific,
            priority: orig.priority,
            id: self.next_id(),
            class,
            sent_time: now,
            arrived_time: now,
            source_machine: self.guid,
            ..Message::default()
        };
        match target {
            Ok(q) => {
                let ack = Message {
                    destination: Some(q.path.clone()),
                    ..ack
                };
                eff.put(&q.store, ack);
            }
            Err(out) => {
                // Back to the sender's queue manager through this one's outgoing queue: logged,
                // so it survives a restart on the way.
                let ack = Message {
                    destination: Some(out.name.clone()),
                    delivery: crate::message::Delivery::Recoverable,
                    arrived_time: Default::default(),
                    ..ack
                };
                eff.put_outgoing(&out, ack);
            }
        }
    }

    /// Makes sure the timer will expire `store`'s messages at its earliest time-to-be-received
    /// deadline. One timer entry per store and deadline, not one per message: a store re-arms
    /// for its next deadline each time the timer fires.
    pub(crate) fn arm_expiry(self: &Arc<Self>, store: &Arc<Store>) {
        let at = {
            let mut s = store.lock();
            let Some(next) = s.next_expiry() else {
                return;
            };
            if s.expiry_armed.is_some_and(|armed| armed <= next) {
                return;
            }
            s.expiry_armed = Some(next);
            next
        };
        let qm = Arc::downgrade(self);
        let weak = Arc::downgrade(store);
        self.timer.schedule(at, move || {
            let (Some(qm), Some(store)) = (qm.upgrade(), weak.upgrade()) else {
                return;
            };
            let expired = {
                let mut s = store.lock();
                if s.expiry_armed == Some(at) {
                    s.expiry_armed = None;
                }
                s.expire(|| qm.now());
                s.drain_expired()
            };
            qm.run_quietly(|eff| qm.dead_letter_expired(&store, expired, eff));
            qm.arm_expiry(&store);
        });
    }
}
