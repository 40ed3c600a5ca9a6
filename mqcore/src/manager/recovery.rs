//! Recovery: rebuilding queues, messages, id counters and in-doubt transactions from the catalog
//! and the log's replay.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::catalog::{QueueDef, QUEUE_ID_KEY, QUEUE_PREFIX};
use super::Inner;
use crate::error::{Error, ErrorCode, Result};
use crate::message::MessageClass;
use crate::persistence::record::{self, Op, StoreRef};
use crate::persistence::{Persistence, Recovered};
use crate::queue::cold::Entry;
use crate::queue::store::{LookupId, Store};
use crate::queue::QueueInner;
use crate::step::{logged_size, Put, LOGGED_OVERHEAD};
use crate::storage::wal::Lsn;
use crate::tx::{HeldMessage, TxKind};

impl Inner {
    /// The store a log record names, if it still exists.
    pub(super) fn store_of(&self, at: &StoreRef) -> Option<(Arc<Store>, Option<Arc<QueueInner>>)> {
        let queue = |id: &u32| self.catalog().by_id.get(id).cloned();
        match at {
            StoreRef::System(s) => Some((self.system_store(*s).clone(), None)),
            StoreRef::Main(id) => queue(id).map(|q| (q.store.clone(), Some(q))),
            StoreRef::Journal(id) => queue(id).map(|q| (q.journal.clone(), None)),
            StoreRef::Sub(id, name) => queue(id).map(|q| (q.subqueue(name), Some(q))),
            StoreRef::Outgoing(key) => self.outgoing_by_key(key).map(|o| (o.store.clone(), None)),
        }
    }

    /// Rebuilds queues, messages, id counters and in-doubt transactions from the catalog and
    /// what replay found.
    pub(super) fn recover(self: &Arc<Self>, mut rec: Recovered) -> Result<()> {
        let d = self
            .durable
            .as_ref()
            .expect("recovery is for durable queue managers");
        let cat_err = |e: std::io::Error| {
            Error::new(ErrorCode::MessageStorageFailed, format!("catalog: {e}"))
        };
        let last_id = match d.catalog.get(QUEUE_ID_KEY).map_err(cat_err)? {
            Some(b) => u32::from_le_bytes(b.as_slice().try_into().map_err(|_| {
                Error::new(
                    ErrorCode::MessageStorageFailed,
                    "catalog: bad queue id counter",
                )
            })?),
            None => 0,
        };
        let mut queues = Vec::new();
        for (key, value) in d.catalog.scan(QUEUE_PREFIX).map_err(cat_err)? {
            let (def, _): (QueueDef, _) = record::decode(&value).map_err(|e| {
                Error::new(
                    ErrorCode::MessageStorageFailed,
                    format!("catalog entry {key}: {e}"),
                )
            })?;
            // A name that is no queue name would list a queue nobody can open (the `catalog`
            // fuzz target found an empty one).
            crate::name::QueueName::try_private("localhost", &def.name).map_err(|e| {
                Error::new(
                    ErrorCode::MessageStorageFailed,
                    format!("catalog entry {key}: the queue name is not one: {e}"),
                )
            })?;
            if rec.dropped.contains(&def.id) {
                // The deletion was logged; the crash came before the catalog heard of it.
                d.catalog.remove(&key).map_err(cat_err)?;
                continue;
            }
            queues.push(self.new_queue(def.id, &def.name, def.props));
        }
        {
            let mut cat = self.catalog_mut();
            cat.next_id = last_id;
            for q in queues {
                cat.by_name.insert(q.key.clone(), q.clone());
                cat.by_id.insert(q.id, q);
            }
        }
        self.next_ordinal.store(rec.ordinal, Ordering::Relaxed);
        for (key, acked) in std::mem::take(&mut rec.acked) {
            if let Some(o) = self.outgoing_by_key(&key) {
                o.state().acked = acked;
            }
        }
        {
            let mut inbound = self.lock_inbound();
            for (k, state) in std::mem::take(&mut rec.inbound) {
                inbound.insert(
                    k,
                    super::inbound::InboundSeq {
                        state,
                        ..Default::default()
                    },
                );
            }
        }
        for (at, last) in &rec.last_lookup {
            if let Some((store, _)) = self.store_of(at) {
                store.continue_after(*last);
            }
        }
        let mut expiring = Vec::new();
        for (at, slots) in std::mem::take(&mut rec.stores) {
            let Some((store, _)) = self.store_of(&at) else {
                continue;
            };
            d.keep(
                slots
                    .iter()
                    .map(|(_, s)| (s.lsn, u64::from(s.footprint) + LOGGED_OVERHEAD)),
            );
            // Kept whole, moved (their record is another store's), or cold: one vector per
            // priority, filled in lookup-id order.
            // Built from the highest lookup id down while the slots give their memory back, then
            // turned around.
            let mut whole = Vec::new();
            let mut moved = Vec::new();
            let mut cold: [(Vec<Entry>, u64); 8] = Default::default();
            let kept = &mut rec.kept;
            slots.drain_rev(|lookup, slot| {
                if let Some(msg) = (!kept.is_empty())
                    .then(|| kept.remove(&(at.clone(), lookup)))
                    .flatten()
                {
                    whole.push(msg);
                } else if slot.moves > 0 {
                    moved.push((lookup, slot));
                } else {
                    let (entries, bytes) = &mut cold[usize::from(slot.rank.min(7))];
                    entries.push(Entry {
                        lookup,
                        lsn: slot.lsn,
                    });
                    *bytes += u64::from(slot.footprint);
                }
            });
            let mut s = store.lock();
            for (rank, (mut entries, bytes)) in (0u8..).zip(cold) {
                if !entries.is_empty() {
                    entries.reverse();
                    s.recover_cold(rank, VecDeque::from(entries), bytes);
                }
            }
            for chunk in moved.chunks(256) {
                let wanted: Vec<(Lsn, LookupId)> = chunk
                    .iter()
                    .map(|(lookup, slot)| (slot.lsn, *lookup))
                    .collect();
                let source = self
                    .cold
                    .as_ref()
                    .expect("durable queue managers have a log source");
                let msgs = source.load(&at, &wanted, u64::MAX).map_err(|e| {
                    Error::new(ErrorCode::MessageStorageFailed, format!("recovery: {e}"))
                })?;
                for mut msg in msgs {
                    let slot = chunk
                        .iter()
                        .find(|(lookup, _)| *lookup == msg.lookup_id)
                        .map(|(_, slot)| *slot)
                        .expect("loaded messages were asked for");
                    msg.move_count = msg.move_count.saturating_add(u32::from(slot.moves));
                    msg.abort_count = 0;
                    whole.push(msg);
                }
            }
            for msg in whole {
                let _ = s.insert(msg, false);
            }
            s.refill_all();
            if s.next_expiry().is_some() {
                expiring.push(store.clone());
            }
        }
        for store in expiring {
            self.arm_expiry(&store);
        }
        for out in self.outgoing_queues() {
            {
                let mut st = out.state();
                // Any of them may have been sent before the restart.
                st.maybe_sent = out.store.last_lookup();
                let s = out.store.lock();
                for m in s.iter_visible() {
                    if let Some((at, _)) = crate::queue::outgoing::deadline(m) {
                        st.deadlines.insert((at, m.lookup_id));
                    }
                }
            }
            self.arm_outgoing(&out);
        }
        for (xid, lsn, ops) in rec.in_doubt {
            self.recover_in_doubt(d, xid, lsn, ops);
        }
        for q in self.catalog().by_id.values() {
            q.tidy_subqueues();
        }
        Ok(())
    }

    /// Puts a prepared transaction back as it was when prepared: its received messages locked,
    /// its sends waiting, until the coordinator says commit or abort.
    pub(super) fn recover_in_doubt(
        self: &Arc<Self>,
        d: &Persistence,
        xid: String,
        lsn: Lsn,
        ops: Vec<Op>,
    ) {
        let t = self.begin(TxKind::External { xid: xid.clone() });
        let mut eff = self.step();
        let lock = |at: &StoreRef, lookup: LookupId, move_to: Option<Arc<Store>>| {
            let (store, queue) = self.store_of(at)?;
            let msg_lsn = {
                let mut s = store.lock();
                let key = s.key_of(lookup)?;
                s.lock(key, t.shared.id)?;
                let m = s.locked_message(lookup)?;
                (m.lsn, logged_size(m))
            };
            Some((
                HeldMessage {
                    store,
                    queue: queue.filter(|_| matches!(at, StoreRef::Main(_) | StoreRef::Sub(..))),
                    lookup,
                    move_to,
                },
                msg_lsn,
            ))
        };
        let mut claims = Vec::new();
        let mut released = Vec::new();
        let mut keeps = 0;
        let mut kept_bytes = 0;
        let mut puts = Vec::new();
        let mut pending = Vec::new();
        for op in ops {
            match op {
                Op::Put { at, msg } => {
                    if let StoreRef::Outgoing(key) = &at {
                        // Its number is taken: later commits must not be sent past it.
                        if let Some(o) = self.outgoing_by_key(key) {
                            pending.push(o.hold(msg.lookup_id));
                        }
                    }
                    if let Some((store, _)) = self.store_of(&at) {
                        keeps += 1;
                        kept_bytes += logged_size(&msg);
                        puts.push(Put {
                            store,
                            msg,
                            logged: true,
                            refused: MessageClass::NACK_BAD_DST_Q,
                        });
                    }
                }
                Op::Remove { at, lookup } => {
                    if let Some((held, msg_lsn)) = lock(&at, lookup, None) {
                        claims.push(held);
                        released.push(msg_lsn);
                    }
                }
                Op::Move { from, to, lookup } => {
                    let dest = self.store_of(&to).map(|(s, _)| s);
                    if let Some((held, _)) = dest.and_then(|dest| lock(&from, lookup, Some(dest))) {
                        claims.push(held);
                    }
                }
                Op::DropQueue { .. } | Op::Acked { .. } | Op::Sequence { .. } => {}
            }
        }
        eff.puts = puts;
        eff.pending = pending;
        eff.claims = claims;
        eff.released = released;
        eff.keeps = keeps;
        eff.kept_bytes = kept_bytes;
        d.keep(
            std::iter::once((lsn, kept_bytes)).chain(std::iter::repeat_n(
                (lsn, 0),
                usize::try_from(keeps).unwrap_or(usize::MAX),
            )),
        );
        t.set_prepared(eff, lsn);
        tracing::warn!(%xid, "transaction in doubt after recovery: waiting for the coordinator's outcome");
        self.lock_in_doubt().insert(xid, t);
    }
}
