//! Messages that are in a queue but not in memory: past the cache budget, a durable queue keeps
//! only where each message's record is in the log (16 bytes a message) and reads it back when it
//! is needed.
//!
//! A store's messages are its hot ones (whole, in its deques) and its cold ones (lookup id and
//! record LSN, here). The invariant that keeps the hot path unchanged: **for every priority, the
//! first message in queue order is hot**, so the head of the queue, and every hand-off, comes
//! from memory. Arrivals go cold only behind a hot message of their priority; whenever a removal
//! leaves a priority's first message cold, the store refills from the log (see
//! `State::refill`). Messages that must stay in memory never go cold: express messages (not in
//! the log), messages that can expire (the expiry index is in memory), and moved messages (their
//! record names the queue they came from).

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::ids::Lsn;
use crate::ids::StoreRef;
use crate::message::Message;

use super::store::LookupId;

/// Reads messages back from where they were logged.
pub(crate) trait ColdSource: Send + Sync + fmt::Debug {
    /// The messages with these lookup ids that the records at these LSNs put in `at` (or in a
    /// store of its family, for a message moved since), each with its `lsn` set. `wanted` is in
    /// the order the caller needs them; loading may stop once about `max_bytes` are loaded, but
    /// never before the first wanted message.
    #[allow(clippy::vec_box)] // boxed as the store keeps them
    fn load(
        &self,
        at: &StoreRef,
        wanted: &[(Lsn, LookupId)],
        max_bytes: u64,
    ) -> Result<Vec<Box<Message>>, String>;

    /// The budget every store of the queue manager shares.
    fn cache(&self) -> &Cache;
}

/// How many bytes of logged messages the stores keep in memory, against a limit.
#[derive(Debug)]
pub(crate) struct Cache {
    limit: u64,
    used: AtomicU64,
}

impl Cache {
    pub(crate) fn new(limit: u64) -> Cache {
        Cache {
            limit,
            used: AtomicU64::new(0),
        }
    }

    /// Whether new arrivals should stay out of memory.
    pub(crate) fn full(&self) -> bool {
        self.used.load(Ordering::Relaxed) >= self.limit
    }

    pub(crate) fn add(&self, bytes: u64) {
        self.used.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn sub(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Bytes of logged messages in memory now.
    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}

/// A store's link to its log: where to read, and under which name.
#[derive(Debug, Clone)]
pub(crate) struct ColdLink {
    pub(crate) source: std::sync::Arc<dyn ColdSource>,
    pub(crate) at: StoreRef,
}

/// One cold message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) lookup: LookupId,
    pub(crate) lsn: Lsn,
}

/// The cold messages of one store: per rank (`7 - priority`), sorted by lookup id.
#[derive(Debug, Default)]
pub(crate) struct Cold {
    ranks: [VecDeque<Entry>; 8],
    len: usize,
}

impl Cold {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn rank(&self, rank: u8) -> &VecDeque<Entry> {
        &self.ranks[usize::from(rank)]
    }

    /// Adds a message (usually at the end: arrivals have the largest lookup ids).
    pub(crate) fn insert(&mut self, rank: u8, e: Entry) {
        let v = &mut self.ranks[usize::from(rank)];
        if v.back().is_none_or(|b| b.lookup < e.lookup) {
            v.push_back(e);
        } else {
            let i = v.partition_point(|x| x.lookup < e.lookup);
            v.insert(i, e);
        }
        self.len += 1;
    }

    /// Builds one rank from entries sorted by lookup id (recovery).
    pub(crate) fn set_rank(&mut self, rank: u8, entries: VecDeque<Entry>) {
        let v = &mut self.ranks[usize::from(rank)];
        self.len = self.len - v.len() + entries.len();
        *v = entries;
    }

    /// Removes a message; returns its LSN.
    pub(crate) fn remove(&mut self, rank: u8, lookup: LookupId) -> Option<Lsn> {
        let v = &mut self.ranks[usize::from(rank)];
        let i = position(v, lookup)?;
        self.len -= 1;
        v.remove(i).map(|e| e.lsn)
    }

    /// The rank of a cold message.
    pub(crate) fn rank_of(&self, lookup: LookupId) -> Option<u8> {
        (0..8u8).find(|&r| position(&self.ranks[usize::from(r)], lookup).is_some())
    }

    /// Where a cold message's record is now (compaction rewrote it).
    pub(crate) fn set_lsn(&mut self, rank: u8, lookup: LookupId, lsn: Lsn) {
        let v = &mut self.ranks[usize::from(rank)];
        if let Some(i) = position(v, lookup) {
            v[i].lsn = lsn;
        }
    }

    /// The cold message with the smallest lookup id above `lookup` (`None`: from the start).
    pub(crate) fn next_by_lookup(&self, lookup: Option<LookupId>) -> Option<(u8, LookupId)> {
        (0..8u8)
            .filter_map(|r| {
                let v = &self.ranks[usize::from(r)];
                let i = lookup.map_or(0, |l| v.partition_point(|x| x.lookup <= l));
                v.get(i).map(|e| (r, e.lookup))
            })
            .min_by_key(|&(_, l)| l)
    }

    /// The cold message with the largest lookup id below `lookup` (`None`: from the end).
    pub(crate) fn prev_by_lookup(&self, lookup: Option<LookupId>) -> Option<(u8, LookupId)> {
        (0..8u8)
            .filter_map(|r| {
                let v = &self.ranks[usize::from(r)];
                let i = lookup.map_or(v.len(), |l| v.partition_point(|x| x.lookup < l));
                i.checked_sub(1).map(|i| (r, v[i].lookup))
            })
            .max_by_key(|&(_, l)| l)
    }

    /// The first cold message of `rank` after `lookup`.
    pub(crate) fn after(&self, rank: u8, lookup: LookupId) -> Option<LookupId> {
        let v = &self.ranks[usize::from(rank)];
        v.get(v.partition_point(|x| x.lookup <= lookup))
            .map(|e| e.lookup)
    }

    /// Every cold message whose record is below `bound`, with its rank.
    pub(crate) fn logged_before(&self, bound: Lsn) -> Vec<(u8, Entry)> {
        (0..8u8)
            .flat_map(|r| {
                self.ranks[usize::from(r)]
                    .iter()
                    .filter(move |e| e.lsn < bound)
                    .map(move |&e| (r, e))
            })
            .collect()
    }

    /// Takes every cold message, in queue order (rank, then lookup id).
    pub(crate) fn take_all(&mut self) -> Vec<(u8, Entry)> {
        self.len = 0;
        (0..8u8)
            .flat_map(|r| {
                std::mem::take(&mut self.ranks[usize::from(r)])
                    .into_iter()
                    .map(move |e| (r, e))
            })
            .collect()
    }

    /// Every cold message in queue order, by reference.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u8, Entry)> + '_ {
        (0..8u8).flat_map(|r| self.ranks[usize::from(r)].iter().map(move |&e| (r, e)))
    }
}

fn position(v: &VecDeque<Entry>, lookup: LookupId) -> Option<usize> {
    let i = v.partition_point(|x| x.lookup < lookup);
    (v.get(i)?.lookup == lookup).then_some(i)
}
