//! The queue manager's side of transactions: the effects of a commit, PREPARE records, aborts,
//! in-doubt transactions and the xids in use.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use super::send::over_quota;
use super::Inner;
use crate::error::Result;
use crate::message::footprint;
use crate::message::{Acknowledge, Message, MessageClass};
use crate::persistence::record::{self};
use crate::queue::store::{LookupId, Store};
use crate::queue::QueueInner;
use crate::step::Step;
use crate::storage::wal::Lsn;
use crate::tx::{Dest, HeldMessage, StagedSend, Transaction, TxKind};

impl Inner {
    /// What committing a transaction changes: staged messages reach their queues (or fail as
    /// MSMQ fails an undeliverable transactional message: negative acknowledgement and the
    /// transactional dead-letter queue, while the transaction still commits), and held messages
    /// leave theirs (journaled and acknowledged) or move.
    pub(crate) fn commit_effects(&self, sends: Vec<StagedSend>, held: Vec<HeldMessage>) -> Step {
        let mut eff = self.step();
        let now = self.now();
        let mut staged: Vec<(Arc<Store>, u64)> = Vec::new();
        for StagedSend { dest, mut msg } in sends {
            if let Some(ttrq) = msg.time_to_reach_queue {
                if now > msg.sent_time.saturating_add(ttrq) {
                    self.fail_message(msg, MessageClass::NACK_REACH_QUEUE_TIMEOUT, &mut eff);
                    continue;
                }
            }
            let queue = match dest {
                Dest::Queue(q) => q,
                Dest::Outgoing(out) => {
                    // Its number is its lookup id, reserved here, in this commit's record.
                    eff.put_outgoing(&out, msg);
                    continue;
                }
            };
            msg.arrived_time = now;
            let quota = queue.hot.quota_kb();
            let earlier = staged
                .iter()
                .find(|(s, _)| Arc::ptr_eq(s, &queue.store))
                .map_or(0, |(_, b)| *b);
            let held_now = queue.store.lock().bytes() + earlier;
            if over_quota(quota, held_now, footprint(&msg)) {
                // Other transactions filled the queue since this send was checked.
                self.fail_message(msg, MessageClass::NACK_Q_EXCEED_QUOTA, &mut eff);
                continue;
            }
            match staged
                .iter_mut()
                .find(|(s, _)| Arc::ptr_eq(s, &queue.store))
            {
                Some((_, b)) => *b += footprint(&msg),
                None => staged.push((queue.store.clone(), footprint(&msg))),
            }
            if self.needs_arrival_follow_up(&msg) {
                self.arrived(&msg, &mut eff);
            }
            eff.put_refusing(&queue.store, msg, MessageClass::NACK_BAD_DST_Q);
        }
        for h in held {
            // Log the removal or move from the held message in place; copy it only when a
            // journal copy or a receive acknowledgement needs it.
            let copy = {
                let s = h.store.lock();
                match (s.locked_message(h.lookup), &h.move_to) {
                    (Some(msg), Some(dest)) => {
                        eff.log_move(&h.store, dest, msg);
                        None
                    }
                    (Some(msg), None) => {
                        eff.removed(&h.store, msg);
                        self.follows_receive(h.queue.as_deref(), msg)
                            .then(|| msg.clone())
                    }
                    (None, _) => None,
                }
            };
            if let Some(msg) = copy {
                self.after_receive(h.queue.as_deref(), &msg, &mut eff);
            }
            eff.claims.push(h);
        }
        eff
    }

    /// Whether receiving `msg` from `parent` leads to a journal copy or an acknowledgement.
    pub(super) fn follows_receive(&self, parent: Option<&QueueInner>, msg: &Message) -> bool {
        parent.is_some_and(|q| {
            q.hot.journal()
                || (msg.admin_queue.is_some() && msg.acknowledge.contains(Acknowledge::POS_RECEIVE))
        })
    }

    /// Logs a prepared transaction's step (a PREPARE record that keeps its puts and itself
    /// alive until the outcome) and returns the record's LSN (0 in memory).
    pub(crate) fn log_prepare(&self, xid: &str, eff: &Step) -> Result<Lsn> {
        let Some(d) = &self.durable else {
            return Ok(0);
        };
        let head = record::Outcome {
            xid: xid.to_owned(),
            commit: false,
        };
        let mut data = record::encode(&head);
        data.extend_from_slice(&eff.ops);
        d.log(record::PREPARE, &data, eff.keeps + 1, eff.kept_bytes)
    }

    /// Logs that a prepared transaction aborted: its record keeps nothing alive any more.
    pub(crate) fn log_abort_prepared(&self, xid: &str, prepared: Lsn, eff: &Step) -> Result<()> {
        let Some(d) = &self.durable else {
            return Ok(());
        };
        let outcome = record::Outcome {
            xid: xid.to_owned(),
            commit: false,
        };
        d.log(record::RESOLVE, &record::encode(&outcome), 0, 0)?;
        let mut gone = vec![(prepared, eff.kept_bytes)];
        gone.extend(std::iter::repeat_n(
            (prepared, 0),
            usize::try_from(eff.keeps).unwrap_or(usize::MAX),
        ));
        d.release(&gone);
        Ok(())
    }

    /// Aborts a transaction's held messages: each store gets all of its messages back at their
    /// positions first and hands them out once, so a waiting receiver gets the head of the
    /// queue. Messages whose queue was deleted meanwhile, or whose time-to-be-received ran out
    /// while they were held, go where such messages go. `counted` raises their abort counts.
    pub(crate) fn abort(self: &Arc<Self>, held: Vec<HeldMessage>, counted: bool) {
        let mut groups: Vec<(Arc<Store>, Vec<LookupId>)> = Vec::new();
        for h in held {
            match groups.iter_mut().find(|(s, _)| Arc::ptr_eq(s, &h.store)) {
                Some((_, lookups)) => lookups.push(h.lookup),
                None => groups.push((h.store, vec![h.lookup])),
            }
        }
        let now = self.now();
        for (store, lookups) in groups {
            let (deleted, expired) = {
                let mut s = store.lock();
                let deleted: Vec<Message> = lookups
                    .into_iter()
                    .filter_map(|l| s.restore(l, counted))
                    .collect();
                s.expire(|| now);
                s.dispatch();
                (deleted, s.drain_expired())
            };
            self.run_quietly(|eff| {
                for m in deleted {
                    eff.removed(&store, &m);
                    self.fail_message(m, MessageClass::NACK_Q_DELETED, eff);
                }
                self.dead_letter_expired(&store, expired, eff);
            });
            self.arm_expiry(&store);
        }
    }

    /// An external transaction finished: its xid may be used again.
    pub(crate) fn finished(&self, kind: &TxKind) {
        if let TxKind::External { xid } = kind {
            self.xids
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(xid);
        }
    }

    pub(super) fn lock_in_doubt(&self) -> std::sync::MutexGuard<'_, HashMap<String, Transaction>> {
        self.in_doubt.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn begin(self: &Arc<Self>, kind: TxKind) -> Transaction {
        let id = self.next_tx.fetch_add(1, Ordering::Relaxed) + 1;
        Transaction::new(id, kind, Arc::downgrade(self))
    }
}
