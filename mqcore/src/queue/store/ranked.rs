//! The visible in-memory messages of a store in queue order: one deque per priority, in
//! lookup-id order, so an arrival is a push at the back and a receive a pop at the front.
//!
//! A store's order is (priority descending, lookup id ascending), and lookup ids are handed out in
//! arrival order, so almost every insertion lands at the back of its priority's deque and almost
//! every removal at its front. The B-tree this replaces paid a search and node shifts on both,
//! and a second B-tree by lookup id found a message's priority; here a priority is found by a
//! binary search in each of the eight deques. The rare removal from the middle (receive by id,
//! by lookup id, through a cursor) leaves an empty slot that keeps the order searchable, and a
//! message put back (abort, cancelled receive) goes into its slot or is inserted in order.
//!
//! **Invariant:** each deque is sorted by lookup id; its first and last slots hold messages (empty
//! slots are only ever inside); `len` counts the slots holding messages and `holes[r]` the empty
//! ones of rank `r`, which are squeezed out once they are more than half of their deque.

use std::collections::VecDeque;

use super::state::Key;
use super::LookupId;
use crate::message::Message;

/// Priorities: MSMQ's 0..=7.
const RANKS: usize = 8;

/// Empty slots a deque tolerates before it may be squeezed (and then only past half its length).
const MIN_HOLES: usize = 32;

#[derive(Debug)]
struct Slot {
    lookup: LookupId,
    msg: Option<Box<Message>>,
}

/// Visible messages by rank (`7 - priority`), each rank in lookup-id order.
#[derive(Debug, Default)]
pub(super) struct Ranked {
    ranks: [VecDeque<Slot>; RANKS],
    holes: [usize; RANKS],
    len: usize,
}

impl Ranked {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn rank(&self, rank: u8) -> &VecDeque<Slot> {
        &self.ranks[usize::from(rank)]
    }

    /// Where `lookup` is, or would be, in `rank`'s deque.
    fn search(&self, rank: u8, lookup: LookupId) -> Result<usize, usize> {
        let d = self.rank(rank);
        // Nearly every search is for the back (an arrival) or the front (a receive).
        match d.back() {
            None => return Err(0),
            Some(b) if b.lookup < lookup => return Err(d.len()),
            _ => {}
        }
        d.binary_search_by_key(&lookup, |s| s.lookup)
    }

    /// Adds a message at `key`.
    pub(super) fn insert(&mut self, key: Key, msg: Box<Message>) {
        let r = usize::from(key.rank());
        match self.search(key.rank(), key.lookup()) {
            Err(i) if i == self.ranks[r].len() => self.ranks[r].push_back(Slot {
                lookup: key.lookup(),
                msg: Some(msg),
            }),
            Err(i) => self.ranks[r].insert(
                i,
                Slot {
                    lookup: key.lookup(),
                    msg: Some(msg),
                },
            ),
            Ok(i) => {
                let slot = &mut self.ranks[r][i];
                debug_assert!(
                    slot.msg.is_none(),
                    "lookup id {} is visible twice",
                    key.lookup()
                );
                if slot.msg.is_some() {
                    // Replacing would lose a message; an engine bug, kept visible in tests.
                    return;
                }
                slot.msg = Some(msg);
                self.holes[r] -= 1;
            }
        }
        self.len += 1;
    }

    /// Removes the message at `key`.
    pub(super) fn remove(&mut self, key: Key) -> Option<Box<Message>> {
        let r = usize::from(key.rank());
        // The front first: a receive takes the head.
        let i = match self.ranks[r].front() {
            Some(f) if f.lookup == key.lookup() => 0,
            _ => self.search(key.rank(), key.lookup()).ok()?,
        };
        let d = &mut self.ranks[r];
        let msg = d[i].msg.take()?;
        self.len -= 1;
        if i == 0 {
            d.pop_front();
            while d.front().is_some_and(|s| s.msg.is_none()) {
                d.pop_front();
                self.holes[r] -= 1;
            }
        } else if i + 1 == d.len() {
            d.pop_back();
            while d.back().is_some_and(|s| s.msg.is_none()) {
                d.pop_back();
                self.holes[r] -= 1;
            }
        } else {
            self.holes[r] += 1;
            if self.holes[r] > MIN_HOLES && self.holes[r] * 2 > d.len() {
                d.retain(|s| s.msg.is_some());
                self.holes[r] = 0;
            }
        }
        Some(msg)
    }

    pub(super) fn get(&self, key: Key) -> Option<&Message> {
        let i = self.search(key.rank(), key.lookup()).ok()?;
        self.rank(key.rank())[i].msg.as_deref()
    }

    pub(super) fn contains(&self, key: Key) -> bool {
        self.get(key).is_some()
    }

    /// The first message in queue order.
    pub(super) fn first(&self) -> Option<(Key, &Message)> {
        self.ranks.iter().zip(0u8..).find_map(|(d, rank)| {
            let s = d.front()?;
            Some((Key::ranked(rank, s.lookup), s.msg.as_deref()?))
        })
    }

    /// The lookup id of `rank`'s first message.
    pub(super) fn front_of(&self, rank: u8) -> Option<LookupId> {
        self.rank(rank).front().map(|s| s.lookup)
    }

    /// The position of the first message after `key` in queue order.
    pub(super) fn after(&self, key: Key) -> Option<Key> {
        let d = self.rank(key.rank());
        let from = d.partition_point(|s| s.lookup <= key.lookup());
        if let Some(s) = d.range(from..).find(|s| s.msg.is_some()) {
            return Some(Key::ranked(key.rank(), s.lookup));
        }
        (key.rank() + 1..RANKS as u8)
            .find_map(|rank| self.front_of(rank).map(|l| Key::ranked(rank, l)))
    }

    /// The rank of the visible message with lookup id `lookup`.
    pub(super) fn rank_of(&self, lookup: LookupId) -> Option<u8> {
        (0..RANKS as u8).find(|&rank| {
            self.search(rank, lookup)
                .is_ok_and(|i| self.rank(rank)[i].msg.is_some())
        })
    }

    /// The (rank, lookup id) with the lowest lookup id above `above` (any with `None`).
    pub(super) fn next_by_lookup(&self, above: Option<LookupId>) -> Option<(u8, LookupId)> {
        (0..RANKS as u8)
            .filter_map(|rank| {
                let d = self.rank(rank);
                let from = above.map_or(0, |l| d.partition_point(|s| s.lookup <= l));
                d.range(from..)
                    .find(|s| s.msg.is_some())
                    .map(|s| (rank, s.lookup))
            })
            .min_by_key(|&(_, l)| l)
    }

    /// The (rank, lookup id) with the highest lookup id below `below` (any with `None`).
    pub(super) fn prev_by_lookup(&self, below: Option<LookupId>) -> Option<(u8, LookupId)> {
        (0..RANKS as u8)
            .filter_map(|rank| {
                let d = self.rank(rank);
                let to = below.map_or(d.len(), |l| d.partition_point(|s| s.lookup < l));
                d.range(..to)
                    .rev()
                    .find(|s| s.msg.is_some())
                    .map(|s| (rank, s.lookup))
            })
            .max_by_key(|&(_, l)| l)
    }

    /// Every message in queue order, with its position.
    pub(super) fn iter(&self) -> impl Iterator<Item = (Key, &Message)> {
        self.ranks.iter().zip(0u8..).flat_map(|(d, rank)| {
            d.iter()
                .filter_map(move |s| Some((Key::ranked(rank, s.lookup), s.msg.as_deref()?)))
        })
    }

    /// Every message in queue order.
    pub(super) fn values(&self) -> impl Iterator<Item = &Message> {
        self.iter().map(|(_, m)| m)
    }

    /// Every message in queue order, to change what is not part of its position.
    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut Message> {
        self.ranks
            .iter_mut()
            .flat_map(|d| d.iter_mut().filter_map(|s| s.msg.as_deref_mut()))
    }

    /// Removes every message, in queue order.
    #[allow(clippy::vec_box)] // handed on as the store kept them
    pub(super) fn take_all(&mut self) -> Vec<Box<Message>> {
        let all = std::mem::take(self);
        all.ranks
            .into_iter()
            .flat_map(|d| d.into_iter().filter_map(|s| s.msg))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn msg(lookup: LookupId) -> Box<Message> {
        let mut m = Message::new(lookup.to_string());
        m.lookup_id = lookup;
        Box::new(m)
    }

    /// A pseudo-random walk of inserts (mostly at the back, some restored in the middle) and
    /// removals (mostly at the front, some from the middle), checked against a B-tree at each
    /// step.
    #[test]
    fn agrees_with_an_ordered_map() {
        let mut ranked = Ranked::default();
        let mut model: BTreeMap<Key, LookupId> = BTreeMap::new();
        let mut removed: Vec<Key> = Vec::new();
        let mut next = 0u64;
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rand = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..20_000 {
            match rand(10) {
                0..=3 => {
                    next += 1;
                    let key = Key::ranked(rand(3) as u8 * 3, next);
                    ranked.insert(key, msg(next));
                    model.insert(key, next);
                }
                4 if !removed.is_empty() => {
                    let key = removed.swap_remove(rand(removed.len() as u64) as usize);
                    ranked.insert(key, msg(key.lookup()));
                    model.insert(key, key.lookup());
                }
                5 if !model.is_empty() => {
                    let key = *model.keys().nth(rand(model.len() as u64) as usize).unwrap();
                    assert_eq!(ranked.remove(key).unwrap().lookup_id, key.lookup());
                    model.remove(&key);
                    removed.push(key);
                }
                _ => {
                    if let Some((&key, _)) = model.first_key_value() {
                        assert_eq!(ranked.first().unwrap().0, key);
                        assert_eq!(ranked.remove(key).unwrap().lookup_id, key.lookup());
                        model.remove(&key);
                        removed.push(key);
                    }
                }
            }
            assert_eq!(ranked.len(), model.len());
            assert_eq!(ranked.first().map(|(k, _)| k), model.keys().next().copied());
            if let Some(&key) = model.keys().nth(rand(model.len().max(1) as u64) as usize) {
                let after = model.range(key..).nth(1).map(|(k, _)| *k);
                assert_eq!(ranked.after(key), after);
                assert_eq!(ranked.rank_of(key.lookup()), Some(key.rank()));
                let by_lookup: BTreeMap<LookupId, u8> =
                    model.keys().map(|k| (k.lookup(), k.rank())).collect();
                let l = key.lookup();
                let next = by_lookup.range(l + 1..).next().map(|(&l, &r)| (r, l));
                let prev = by_lookup.range(..l).next_back().map(|(&l, &r)| (r, l));
                assert_eq!(ranked.next_by_lookup(Some(l)), next);
                assert_eq!(ranked.prev_by_lookup(Some(l)), prev);
            }
        }
        let keys: Vec<Key> = ranked.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, model.keys().copied().collect::<Vec<_>>());
        let all = ranked.take_all();
        assert_eq!(all.len(), model.len());
        assert!(ranked.is_empty());
    }
}
