//! Sending: stamping a message with what the queue manager sets, quotas, and the way a message
//! reaches its queue (through the inbox, logged first, or staged in a transaction).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::Inner;
use crate::clock::Timestamp;
use crate::error::{Error, ErrorCode, Result};
use crate::message::footprint;
use crate::message::{Acknowledge, Delivery, JournalFlags, Message, MessageClass, MessageId};
use crate::queue::QueueInner;
use crate::step::Step;
use crate::tx::{Dest, StagedSend, Transaction, Tx, TxKind};

/// Whether adding `adding` bytes to `current` exceeds a quota in kilobytes.
pub(super) fn over_quota(quota_kb: Option<u32>, current: u64, adding: u64) -> bool {
    quota_kb.is_some_and(|kb| current + adding > u64::from(kb) * 1024)
}

impl Inner {
    pub(super) fn next_id(&self) -> MessageId {
        let ordinal = self
            .next_ordinal
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1);
        MessageId::new(self.guid, ordinal)
    }

    /// Stamps and sends `msg` to `q` under `tx`.
    pub(crate) fn send(
        self: &Arc<Self>,
        q: &Arc<QueueInner>,
        msg: Message,
        tx: Tx<'_>,
    ) -> Result<MessageId> {
        let quota = self.check_send(q, &msg, tx.is_transactional())?;
        if matches!(tx, Tx::None) && !self.logs_first(&msg) {
            // Boxed first and stamped in its box: a `Message` is a few hundred bytes, and moving
            // it through every call below was a third of the in-process hot path
            // (docs/performance.md, "The in-process hot path").
            let mut msg = q.store.boxed(msg);
            self.stamp_sent(&mut msg, q.path.clone(), false);
            let id = msg.id;
            self.arrive_boxed(q, msg, quota)?;
            return Ok(id);
        }
        let msg = self.stamp_as_sent(msg, q.path.clone(), tx.is_transactional());
        let id = msg.id;
        match tx {
            Tx::None => self.arrive(q, msg, quota)?,
            tx => self.in_tx(tx, |t| self.stage(q, msg, t))?,
        }
        Ok(id)
    }

    /// Runs `stage` in `tx`'s transaction: a new internal one, committed at once, for
    /// `Tx::Single`; the caller's own for `Tx::In`.
    pub(super) fn in_tx(
        self: &Arc<Self>,
        tx: Tx<'_>,
        stage: impl FnOnce(&Transaction) -> Result<()>,
    ) -> Result<()> {
        match tx {
            Tx::In(t) => {
                self.check_own_tx(t)?;
                stage(t)
            }
            _ => {
                let t = self.begin(TxKind::Internal);
                stage(&t)?;
                t.commit()
            }
        }
    }

    /// [`Queue::send_batch`]: runs of recoverable non-transactional messages share one logged
    /// step, runs of single-message transactions with equal time limits share one internal
    /// transaction (a transaction gives all its messages its first message's limits, so only
    /// equal ones can share).
    pub(crate) fn send_batch(
        self: &Arc<Self>,
        q: &Arc<QueueInner>,
        msgs: Vec<Message>,
        tx: Tx<'_>,
    ) -> Vec<Result<MessageId>> {
        if let Tx::Single = tx {
            return self.single_runs(msgs, |m, t| self.send(q, m, Tx::In(t)));
        }
        let mut out = Vec::with_capacity(msgs.len());
        let msgs = msgs.into_iter();
        match tx {
            Tx::None if self.durable.is_some() => {
                // Recoverable messages wait in `run` until an express one (which is not
                // logged) or the end, so the order of arrival is the order of sending.
                let mut run: Vec<(usize, Message)> = Vec::new();
                let mut run_bytes = 0u64;
                for msg in msgs {
                    let stamped = self.stamp(q, msg, false);
                    let (mut msg, quota) = match stamped {
                        Ok(s) => s,
                        Err(e) => {
                            out.push(Err(e));
                            continue;
                        }
                    };
                    if msg.delivery != Delivery::Recoverable {
                        self.arrive_logged(q, &mut run, &mut out);
                        run_bytes = 0;
                        let id = msg.id;
                        out.push(self.arrive(q, msg, quota).map(|()| id));
                        continue;
                    }
                    msg.arrived_time = msg.sent_time;
                    let current = q.store.lock().bytes() + run_bytes;
                    if let Err(e) = self.check_quota(q, current, &msg) {
                        out.push(Err(e));
                        continue;
                    }
                    run_bytes += footprint(&msg);
                    out.push(Ok(msg.id));
                    run.push((out.len() - 1, msg));
                }
                self.arrive_logged(q, &mut run, &mut out);
            }
            _ => out.extend(msgs.map(|m| self.send(q, m, tx))),
        }
        out
    }

    /// Sends `msgs` as single-message transactions (`Tx::Single`), runs of equal time limits
    /// sharing one internal transaction (a transaction gives all its messages its first
    /// message's limits, so only equal ones can share): `send` stages one message in one. A
    /// failed commit fails every message of its run.
    pub(super) fn single_runs(
        self: &Arc<Self>,
        msgs: Vec<Message>,
        mut send: impl FnMut(Message, &Transaction) -> Result<MessageId>,
    ) -> Vec<Result<MessageId>> {
        let mut out = Vec::with_capacity(msgs.len());
        let mut msgs = msgs.into_iter().peekable();
        while let Some(first) = msgs.next() {
            let limits = (first.time_to_reach_queue, first.time_to_be_received);
            let t = self.begin(TxKind::Internal);
            let start = out.len();
            out.push(send(first, &t));
            while let Some(m) =
                msgs.next_if(|m| (m.time_to_reach_queue, m.time_to_be_received) == limits)
            {
                out.push(send(m, &t));
            }
            if let Err(e) = t.commit() {
                for r in &mut out[start..] {
                    if r.is_ok() {
                        *r = Err(e.clone());
                    }
                }
            }
        }
        out
    }

    /// Publishes stamped recoverable messages in one logged step; a failed log write fails them
    /// all in `out` (at the indexes they carry).
    pub(super) fn arrive_logged(
        self: &Arc<Self>,
        q: &Arc<QueueInner>,
        run: &mut Vec<(usize, Message)>,
        out: &mut [Result<MessageId>],
    ) {
        if run.is_empty() {
            return;
        }
        let at: Vec<usize> = run.iter().map(|(i, _)| *i).collect();
        let msgs = std::mem::take(run);
        let r = self.run(|eff| {
            for (_, msg) in msgs {
                if self.needs_arrival_follow_up(&msg) {
                    self.arrived(&msg, eff);
                }
                eff.put(&q.store, msg);
            }
        });
        if let Err(e) = r {
            for i in at {
                out[i] = Err(e.clone());
            }
        }
    }

    /// Checks a message about to be sent to `q` and stamps what the queue manager sets (id,
    /// times, source, destination). Returns it with the queue's quota.
    pub(super) fn stamp(
        self: &Arc<Self>,
        q: &Arc<QueueInner>,
        msg: Message,
        in_tx: bool,
    ) -> Result<(Message, Option<u32>)> {
        let quota = self.check_send(q, &msg, in_tx)?;
        Ok((self.stamp_as_sent(msg, q.path.clone(), in_tx), quota))
    }

    /// Checks a message about to be sent to `q` (`in_tx`: within a transaction); returns the
    /// queue's quota.
    pub(super) fn check_send(
        &self,
        q: &QueueInner,
        msg: &Message,
        in_tx: bool,
    ) -> Result<Option<u32>> {
        q.check_live()?;
        msg.validate()?;
        let (transactional, quota) = (q.hot.transactional(), q.hot.quota_kb());
        if transactional != in_tx {
            let detail = if transactional {
                format!("{} is transactional; send within a transaction", q.path)
            } else {
                format!(
                    "{} is not transactional; send without a transaction",
                    q.path
                )
            };
            return Err(Error::new(ErrorCode::TransactionUsage, detail));
        }
        Ok(quota)
    }

    /// [`Inner::stamp_sent`] on a message passed by value.
    pub(super) fn stamp_as_sent(
        &self,
        mut msg: Message,
        destination: Arc<crate::name::QueueName>,
        transactional: bool,
    ) -> Message {
        self.stamp_sent(&mut msg, destination, transactional);
        msg
    }

    /// What the queue manager sets on every message it sends, to a queue here or on another
    /// computer: id, class, times, source, destination, and counters from any earlier life.
    pub(super) fn stamp_sent(
        &self,
        msg: &mut Message,
        destination: Arc<crate::name::QueueName>,
        transactional: bool,
    ) {
        msg.id = self.next_id();
        msg.class = MessageClass::NORMAL;
        msg.sent_time = self.now();
        msg.arrived_time = Timestamp::default();
        msg.source_machine = self.guid;
        msg.destination = Some(destination);
        msg.lookup_id = 0;
        msg.abort_count = 0;
        msg.move_count = 0;
        // A message received from a durable queue manager and sent again is a new message: it
        // is in no log record until its send is logged.
        msg.lsn = 0;
        msg.transactional = transactional;
    }

    /// Applies MSMQ's transactional coercions and stages the message in `t`.
    pub(super) fn stage(
        self: &Arc<Self>,
        q: &Arc<QueueInner>,
        mut msg: Message,
        t: &Transaction,
    ) -> Result<()> {
        let mut st = t.shared.lock_active()?;
        msg.priority = 0;
        msg.delivery = Delivery::Recoverable;
        let (ttrq, ttbr) = *st
            .first_times
            .get_or_insert((msg.time_to_reach_queue, msg.time_to_be_received));
        msg.time_to_reach_queue = ttrq;
        msg.time_to_be_received = ttbr;
        let staged: u64 = st
            .sends
            .iter()
            .filter(|s| matches!(&s.dest, Dest::Queue(d) if Arc::ptr_eq(d, q)))
            .map(|s| footprint(&s.msg))
            .sum();
        let current = q.store.lock().bytes() + staged;
        self.check_quota(q, current, &msg)?;
        st.sends.push(StagedSend {
            dest: Dest::Queue(q.clone()),
            msg,
        });
        Ok(())
    }

    pub(super) fn check_quota(
        self: &Arc<Self>,
        q: &QueueInner,
        current: u64,
        msg: &Message,
    ) -> Result<()> {
        let quota = q.hot.quota_kb();
        if !over_quota(quota, current, footprint(msg)) {
            return Ok(());
        }
        self.run_quietly(|eff| self.acknowledge(msg, MessageClass::NACK_Q_EXCEED_QUOTA, eff));
        Err(Error::new(
            ErrorCode::InsufficientResources,
            format!(
                "{} is over its quota of {} KB ({current} bytes held, {} more offered); MSMQ reports this as NACK 0x8003",
                q.path,
                quota.unwrap_or_default(),
                footprint(msg)
            ),
        ))
    }

    /// Whether a non-transactional send of `msg` is logged before it is published: a recoverable
    /// message on a durable queue manager.
    fn logs_first(&self, msg: &Message) -> bool {
        self.durable.is_some() && msg.delivery == Delivery::Recoverable
    }

    /// A non-transactional send reaching its queue: quota check and publish under one lock, or
    /// the lock-light inbox when the queue has no quota. A recoverable message on a durable
    /// queue manager is logged first.
    pub(super) fn arrive(
        self: &Arc<Self>,
        q: &Arc<QueueInner>,
        mut msg: Message,
        quota: Option<u32>,
    ) -> Result<()> {
        if !self.logs_first(&msg) {
            return self.arrive_boxed(q, q.store.boxed(msg), quota);
        }
        msg.arrived_time = msg.sent_time;
        let current = q.store.lock().bytes();
        self.check_quota(q, current, &msg)?;
        self.run(|eff| {
            if self.needs_arrival_follow_up(&msg) {
                self.arrived(&msg, eff);
            }
            eff.put(&q.store, msg);
        })
        .map(drop)
    }

    /// [`Inner::arrive`] for a message that is not logged, already in its box.
    fn arrive_boxed(
        self: &Arc<Self>,
        q: &Arc<QueueInner>,
        mut msg: Box<Message>,
        quota: Option<u32>,
    ) -> Result<()> {
        msg.arrived_time = msg.sent_time;
        let follow_up = self.needs_arrival_follow_up(&msg).then(|| (*msg).clone());
        let expires = msg.time_to_be_received.is_some();
        let published = if quota.is_none() {
            q.store.send(msg)
        } else {
            let mut s = q.store.lock();
            if over_quota(quota, s.bytes(), footprint(&msg)) {
                let current = s.bytes();
                drop(s);
                return self.check_quota(q, current, &msg);
            }
            s.publish(msg)
        };
        if published.is_err() {
            // Deleted between the check and the publish: nothing was sent, say so.
            return Err(Error::new(
                ErrorCode::QueueDeleted,
                format!("queue {} was deleted during the send", q.path),
            ));
        }
        if expires {
            self.arm_expiry(&q.store);
        }
        if let Some(m) = follow_up {
            self.run_quietly(|eff| self.arrived(&m, eff));
        }
        Ok(())
    }

    pub(super) fn needs_arrival_follow_up(&self, msg: &Message) -> bool {
        (msg.admin_queue.is_some() && msg.acknowledge.contains(Acknowledge::POS_ARRIVAL))
            || msg.journal.contains(JournalFlags::JOURNAL)
    }

    /// What happens once a message is in its destination queue: positive arrival
    /// acknowledgement and source journaling.
    pub(super) fn arrived(&self, msg: &Message, eff: &mut Step) {
        self.acknowledge(msg, MessageClass::ACK_REACH_QUEUE, eff);
        if msg.journal.contains(JournalFlags::JOURNAL) {
            // The computer journal is never deleted, so it always takes the copy.
            eff.put(&self.journal, msg.clone());
        }
    }
}
