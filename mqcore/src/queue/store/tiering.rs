//! Tiering to cold storage: messages of a durable store past the cache budget are kept only as
//! log positions (`queue/cold.rs`), and read back when needed.
//!
//! **Invariant:** for every priority, a store's first message is in memory (hot). So the head of
//! the queue and every hand-off come from memory; a removal that breaks this refills from the
//! log under the store's lock (a refill that cannot read its message back is retried each time
//! the store is locked).

use super::state::{Key, State};
use super::LookupId;
use crate::ids::Lsn;
use crate::message::{footprint, Message};
use crate::queue::cold::{ColdLink, Entry};

/// How many cold messages a refill reads back at most.
pub(super) const REFILL_COUNT: usize = 256;
/// How many bytes of cold messages a refill reads back at most (at least one message).
const REFILL_BYTES: u64 = 1024 * 1024;

impl State {
    /// Adds a message that has its lookup id to the visible set (no hand-off; callers dispatch).
    /// With `cool`, a logged message may be kept only as its log position (see `queue/cold.rs`).
    pub(super) fn insert_arrived(&mut self, msg: Box<Message>, cool: bool) {
        self.bytes += footprint(&msg);
        let key = Key::new(msg.priority, msg.lookup_id);
        if cool && self.goes_cold(&msg, key) {
            let e = Entry {
                lookup: key.lookup,
                lsn: msg.lsn,
            };
            self.cold.insert(key.rank, e);
            return;
        }
        self.warm(key, msg);
    }

    /// Whether an arriving message is kept only as its log position: it is logged, may not
    /// expire, is not the first of its priority, and either the cache is full or older messages
    /// of its priority are cold already (which keeps arrivals in order behind them).
    fn goes_cold(&self, msg: &Message, key: Key) -> bool {
        let Some(link) = &self.link else {
            return false;
        };
        if msg.lsn == 0 || (self.expires && msg.expires_at().is_some()) {
            return false;
        }
        if self
            .visible
            .front_of(key.rank)
            .is_none_or(|front| front >= key.lookup)
        {
            // The first hot message of its priority stays hot, unless older messages of the
            // priority could not be read back (a stalled refill): it waits behind them.
            return self
                .cold
                .rank(key.rank)
                .front()
                .is_some_and(|e| e.lookup < key.lookup);
        }
        !self.cold.rank(key.rank).is_empty() || link.source.cache().full()
    }

    /// Puts a message in memory, visible at `key` (its `bytes` are counted already).
    fn warm(&mut self, key: Key, msg: Box<Message>) {
        if let Some(by_id) = &mut self.by_id {
            by_id.insert(msg.id, msg.lookup_id);
        }
        if let Some(link) = &self.link {
            if msg.lsn != 0 {
                link.source.cache().add(footprint(&msg));
            }
        }
        self.insert_visible(key, msg);
    }

    /// Reads cold messages back (see
    /// [`ColdSource::load`](crate::queue::cold::ColdSource::load)). A read failure is logged, and
    /// the messages stay cold until a later read succeeds.
    #[allow(clippy::vec_box)] // boxed as the store keeps them
    fn load(&self, wanted: &[(Lsn, LookupId)], max_bytes: u64) -> Vec<Box<Message>> {
        let Some(link) = &self.link else {
            return Vec::new();
        };
        let Some(&(lsn, lookup)) = wanted.first() else {
            return Vec::new();
        };
        match link.source.load(&link.at, wanted, max_bytes) {
            Ok(msgs) => {
                if !msgs.iter().any(|m| m.lookup_id == lookup) {
                    tracing::error!(store = ?link.at, lookup, lsn, "a queued message is not in the log record that put it");
                }
                msgs
            }
            Err(e) => {
                tracing::error!(store = ?link.at, error = %e, "cannot read messages back from the log");
                Vec::new()
            }
        }
    }

    /// The cold message at `key`, if there is one.
    fn cold_entry(&self, key: Key) -> Option<Entry> {
        let v = self.cold.rank(key.rank);
        let i = v.binary_search_by_key(&key.lookup, |e| e.lookup).ok()?;
        Some(v[i])
    }

    /// Whether a visible message, in memory or not, is at `key`.
    pub(crate) fn contains(&self, key: Key) -> bool {
        self.visible.contains(key) || self.cold_entry(key).is_some()
    }

    /// A copy of the visible message at `key`; a cold one is read back without being kept, so
    /// peeks and cursors walking a long queue do not fill memory. `None` if there is none, or
    /// it cannot be read back.
    pub(crate) fn read(&self, key: Key) -> Option<Message> {
        if let Some(m) = self.visible.get(key) {
            return Some(m.clone());
        }
        let e = self.cold_entry(key)?;
        self.load(&[(e.lsn, e.lookup)], 0)
            .into_iter()
            .find(|m| m.lookup_id == key.lookup)
            .map(|m| *m)
    }

    /// Brings the cold messages among `keys` into memory together, in one pass over the log:
    /// a transfer task about to send a run of a long backlog reads it once, and the removals
    /// that follow its acknowledgement find it in memory instead of refilling from the log again.
    /// What it brings in stays bounded by what the task has in flight.
    pub(crate) fn promote_many(&mut self, keys: &[Key]) {
        let wanted: Vec<(Lsn, LookupId)> = keys
            .iter()
            .filter(|k| !self.visible.contains(**k))
            .filter_map(|k| self.cold_entry(*k).map(|e| (e.lsn, e.lookup)))
            .collect();
        if wanted.is_empty() {
            return;
        }
        for msg in self.load(&wanted, u64::MAX) {
            let key = Key::new(msg.priority, msg.lookup_id);
            if self.cold.remove(key.rank, key.lookup).is_some() {
                self.warm(key, msg);
            }
        }
    }

    /// Retries the refills that could not read their message back.
    pub(super) fn retry_stalled(&mut self) {
        if self.stalled != 0 {
            for rank in 0..8 {
                if self.stalled & (1 << rank) != 0 {
                    self.refill(rank);
                }
            }
        }
    }

    /// Brings one cold message into memory; whether it was cold (and could be read).
    pub(super) fn promote(&mut self, key: Key) -> bool {
        let Some(e) = self.cold_entry(key) else {
            return false;
        };
        let loaded = self.load(&[(e.lsn, e.lookup)], 0);
        let Some(msg) = loaded.into_iter().find(|m| m.lookup_id == key.lookup) else {
            return false;
        };
        self.cold.remove(key.rank, key.lookup);
        self.warm(key, msg);
        true
    }

    /// Restores "the first message of every priority is in memory" for `rank` after a removal,
    /// reading the next cold messages of that priority back from the log.
    pub(super) fn refill(&mut self, rank: u8) {
        self.stalled &= !(1 << rank);
        let Some(&front) = self.cold.rank(rank).front() else {
            return;
        };
        let hot = self.visible.front_of(rank);
        if hot.is_some_and(|h| h < front.lookup) {
            return;
        }
        let wanted: Vec<(Lsn, LookupId)> = self
            .cold
            .rank(rank)
            .iter()
            .take_while(|e| hot.is_none_or(|h| e.lookup < h))
            .take(REFILL_COUNT)
            .map(|e| (e.lsn, e.lookup))
            .collect();
        for msg in self.load(&wanted, REFILL_BYTES) {
            if self.cold.remove(rank, msg.lookup_id).is_some() {
                self.warm(Key::new(msg.priority, msg.lookup_id), msg);
            }
        }
        if self.cold.rank(rank).front() == Some(&front) {
            self.stalled |= 1 << rank;
        }
    }

    /// Links the store to its log (durable queue managers), so that messages past the cache
    /// budget are kept only as log positions.
    pub(crate) fn set_link(&mut self, link: ColdLink) {
        self.link = Some(link);
    }

    /// Recovery: adds visible messages known only by their log positions, sorted by lookup id,
    /// to priority rank `rank`, with `bytes` their quota footprint. Callers refill after.
    pub(crate) fn recover_cold(
        &mut self,
        rank: u8,
        entries: std::collections::VecDeque<Entry>,
        bytes: u64,
    ) {
        debug_assert!(self.cold.rank(rank).is_empty());
        self.bytes += bytes;
        self.cold.set_rank(rank, entries);
    }

    /// Recovery: brings the first messages of every priority into memory.
    pub(crate) fn refill_all(&mut self) {
        for rank in 0..8 {
            self.refill(rank);
        }
    }

    /// The first cold message before `before` (all of them with `None`) that `matches`. Reads
    /// the candidates back a batch at a time, keeping none.
    pub(super) fn scan_cold(
        &self,
        before: Option<Key>,
        matches: impl Fn(&Message) -> bool,
    ) -> Option<Key> {
        let candidates: Vec<(u8, Entry)> = self
            .cold
            .iter()
            .filter(|&(rank, e)| {
                before.is_none_or(|b| {
                    Key {
                        rank,
                        lookup: e.lookup,
                    } < b
                })
            })
            .collect();
        for batch in candidates.chunks(REFILL_COUNT) {
            let found: Vec<Box<Message>> = self
                .read_cold(batch)
                .into_iter()
                .filter(|m| matches(m))
                .collect();
            if let Some(key) = found
                .iter()
                .map(|m| Key::new(m.priority, m.lookup_id))
                .min()
            {
                return Some(key);
            }
        }
        None
    }

    /// The cold messages whose records are below `bound`, for compaction to read back and
    /// rewrite; [`State::relocated`] then records their new LSN.
    pub(crate) fn cold_before(&self, bound: u64) -> Vec<(u8, Entry)> {
        self.cold.logged_before(bound)
    }

    /// A cold message's record was rewritten at `lsn`.
    pub(crate) fn relocated(&mut self, rank: u8, lookup: LookupId, lsn: Lsn) {
        self.cold.set_lsn(rank, lookup, lsn);
    }

    /// Reads cold messages back without keeping them (compaction, scans, deletion).
    #[allow(clippy::vec_box)] // boxed as the store keeps them
    pub(crate) fn read_cold(&self, entries: &[(u8, Entry)]) -> Vec<Box<Message>> {
        let wanted: Vec<(Lsn, LookupId)> = entries.iter().map(|(_, e)| (e.lsn, e.lookup)).collect();
        self.load(&wanted, u64::MAX)
    }
}
