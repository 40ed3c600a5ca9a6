//! Log compaction: rewriting live messages out of the oldest segments and deleting segments
//! once nothing in them is needed.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::Inner;
use crate::error::Result;
use crate::message::Message;
use crate::persistence::record::{self, OpRef, StoreRef};
use crate::persistence::{storage_error, Persistence};
use crate::queue::store::{LookupId, Store};
use crate::queue::QueueInner;
use crate::step::logged_size;
use crate::storage::wal::Lsn;

/// One compaction record being built: messages rewritten at the head of the log.
#[derive(Default)]
pub(super) struct Rewrite {
    data: Vec<u8>,
    keeps: u64,
    bytes: u64,
    /// The cold messages in it: rank, lookup id, LSN of their record until now, logged size.
    cold: Vec<(u8, LookupId, Lsn, u64)>,
}

impl Rewrite {
    fn push(&mut self, at: &StoreRef, msg: &Message) {
        record::push(&mut self.data, &OpRef::Put { at, msg });
        self.keeps += 1;
        self.bytes += logged_size(msg);
    }

    /// Submits the record (its messages live from it on); returns its LSN.
    fn submit(self, d: &Persistence) -> Result<Lsn> {
        d.submit(record::COMMIT, &self.data, self.keeps, self.bytes)
    }

    /// Submits a record of cold messages of `s` and points them at it; their old records go to
    /// `gone`, to be released once it is durable.
    fn submit_cold(
        self,
        d: &Persistence,
        s: &mut crate::queue::store::State,
        gone: &mut Vec<(Lsn, u64)>,
    ) -> Result<Lsn> {
        let lsn = d.submit(record::COMMIT, &self.data, self.keeps, self.bytes)?;
        for (rank, lookup, old, size) in self.cold {
            s.relocated(rank, lookup, lsn);
            gone.push((old, size));
        }
        Ok(lsn)
    }
}

/// Bytes of rewritten messages per compaction record.
pub(super) const REWRITE_CHUNK: usize = 8 * 1024 * 1024;

impl Inner {
    /// Every store: the system queues, and each queue's own, journal and subqueues.
    pub(super) fn all_stores(&self) -> Vec<Arc<Store>> {
        let mut stores: Vec<Arc<Store>> = vec![
            self.dead_letter.clone(),
            self.dead_xact.clone(),
            self.journal.clone(),
        ];
        for q in self.catalog().by_id.values() {
            stores.push(q.store.clone());
            stores.push(q.journal.clone());
            stores.extend(q.subqueues().values().map(|(_, s)| s.clone()));
        }
        stores.extend(self.outgoing_queues().iter().map(|o| o.store.clone()));
        stores
    }

    /// Rewrites every message held in a record below `bound` at the head of the log, one record
    /// per store, so that the old segments hold nothing live. Each record is submitted under its
    /// store's lock: a receive that takes one of these messages later logs its removal after the
    /// rewrite, and one that took it earlier finds it gone from the store.
    pub(super) fn relocate(&self, d: &Persistence, bound: Lsn) -> Result<()> {
        let stores = self.all_stores();
        let mut moved = 0;
        for store in stores {
            let (lsn, gone) = {
                let mut s = store.lock();
                let mut gone = Vec::new();
                let mut last = 0;
                // One record per chunk of about REWRITE_CHUNK bytes, so that no rewrite comes
                // near the record size limit; each message takes its chunk's LSN.
                let mut hot: Vec<&mut Message> = s.logged_before(bound).collect();
                let mut start = 0;
                while start < hot.len() {
                    let mut chunk = Rewrite::default();
                    let mut end = start;
                    while end < hot.len() && chunk.data.len() < REWRITE_CHUNK {
                        chunk.push(&store.id, hot[end]);
                        end += 1;
                    }
                    last = chunk.submit(d)?;
                    for m in &mut hot[start..end] {
                        gone.push((m.lsn, logged_size(m)));
                        m.lsn = last;
                    }
                    start = end;
                }
                // Cold messages are read back a batch at a time and rewritten the same way.
                // Read a few at a time (messages may be 4 MB), each record closed as soon as
                // it reaches REWRITE_CHUNK.
                let cold = s.cold_before(bound);
                let mut chunk = Rewrite::default();
                for batch in cold.chunks(16) {
                    for m in s.read_cold(batch) {
                        chunk.push(&store.id, &m);
                        let rank = 7u8.saturating_sub(m.priority);
                        chunk.cold.push((rank, m.lookup_id, m.lsn, logged_size(&m)));
                        if chunk.data.len() >= REWRITE_CHUNK {
                            last = std::mem::take(&mut chunk).submit_cold(d, &mut s, &mut gone)?;
                        }
                    }
                }
                if !chunk.cold.is_empty() {
                    last = chunk.submit_cold(d, &mut s, &mut gone)?;
                }
                if gone.is_empty() {
                    continue;
                }
                (last, gone)
            };
            d.wal.wait(lsn).map_err(storage_error)?;
            d.release(&gone);
            moved += gone.len();
        }
        tracing::debug!(
            moved,
            bound,
            "rewrote live messages out of the oldest log segment"
        );
        Ok(())
    }

    /// Deletes the oldest log segments once nothing in them is needed, after a checkpoint that
    /// keeps lookup ids and message ids from being reused. Runs after steps that log; cheap when
    /// there is nothing to do. Returns how many segments went.
    pub(crate) fn compact(&self) -> Result<usize> {
        let Some(d) = &self.durable else {
            return Ok(0);
        };
        let (_, n) = d.removable_bound();
        if (n == 0 && d.sparse_bound().is_none()) || self.compacting.swap(true, Ordering::AcqRel) {
            return Ok(0);
        }
        let result = (|| {
            if let Some(sparse) = d.sparse_bound().filter(|_| n == 0) {
                self.relocate(d, sparse)?;
            }
            let (bound, n) = d.removable_bound();
            if n == 0 {
                return Ok(0);
            }
            let mut lookups = Vec::new();
            let mut mark = |s: &Store| {
                let l = s.last_lookup();
                if l > 0 {
                    lookups.push((s.id.clone(), l));
                }
            };
            for s in [&self.dead_letter, &self.dead_xact, &self.journal] {
                mark(s);
            }
            let queues: Vec<Arc<QueueInner>> = self.catalog().by_id.values().cloned().collect();
            for q in &queues {
                mark(&q.store);
                mark(&q.journal);
            }
            // An outgoing queue's lookup ids are its sequence numbers: never reused.
            let outgoing = self.outgoing_queues();
            for o in &outgoing {
                mark(&o.store);
            }
            let checkpoint = record::Checkpoint {
                lookups,
                ordinal: self.next_ordinal.load(Ordering::Relaxed),
            };
            // Read after the records that set them were submitted, logged after them.
            let sequences = record::Sequences {
                acked: outgoing
                    .iter()
                    .map(|o| (o.key.clone(), o.state().acked))
                    .filter(|(_, n)| *n > 0)
                    .collect(),
                inbound: match self.inbound_snapshot() {
                    Some(v) => v,
                    None => return Ok(0),
                },
            };
            d.log(record::SEQUENCES, &record::encode(&sequences), 0, 0)?;
            d.log(record::CHECKPOINT, &record::encode(&checkpoint), 0, 0)?;
            d.wal.remove_before(bound).map_err(storage_error)
        })();
        self.compacting.store(false, Ordering::Release);
        result
    }
}
