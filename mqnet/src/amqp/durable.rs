//! Publishes whose log records are on their way to the disk: the connection goes on reading while
//! they are, and each one's messages become visible, and its publisher confirm goes out, once its
//! record is durable, oldest first.
//!
//! **Invariant:** a confirm, and the visibility of a publish, wait for the record that holds it;
//! entries finish in the order they were logged, so confirms (cumulative, `multiple`) never
//! cover a publish that is not yet durable.

use std::collections::VecDeque;

use mqcore::step::deferred::{self, Deferred, Durability};

/// Publishes logged together, and the confirm they owe: `(channel, sequence number)`, acked with
/// `multiple` once they are durable (or nacked if the log failed).
pub(crate) struct Logged {
    pub(crate) steps: Vec<Deferred>,
    pub(crate) confirm: Option<(u16, u64)>,
}

/// A connection's logged publishes, oldest first, and the wait for the oldest's record.
#[derive(Default)]
pub(crate) struct Unconfirmed {
    queue: VecDeque<Logged>,
    front: Option<Durability>,
}

impl Unconfirmed {
    pub(crate) fn push(&mut self, l: Logged) {
        self.queue.push_back(l);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Channel `id` is gone: its entries still finish, but owe no confirm (a channel opened
    /// later under the same number must not receive one).
    pub(crate) fn forget_channel(&mut self, id: u16) {
        for l in &mut self.queue {
            if l.confirm.is_some_and(|(c, _)| c == id) {
                l.confirm = None;
            }
        }
    }

    /// Waits until the oldest entry's record is durable, then finishes it and every later one
    /// whose record is durable too, and returns their confirms with whether they hold. Pending
    /// forever while nothing is logged.
    pub(crate) async fn next(&mut self) -> Vec<((u16, u64), bool)> {
        let Some(first) = self.queue.front() else {
            return std::future::pending().await;
        };
        if let Some(last) = first.steps.iter().max_by_key(|d| d.lsn()) {
            let front = self.front.get_or_insert_with(|| last.durable());
            // A failure shows in `finish_each`.
            let _ = front.await;
        }
        self.front = None;
        let mut out = Vec::new();
        while let Some(l) = self.queue.front() {
            if !l.steps.iter().all(Deferred::is_durable) {
                break;
            }
            let l = self.queue.pop_front().expect("looked at");
            let ok = deferred::finish_each(l.steps).is_ok();
            out.extend(l.confirm.map(|c| (c, ok)));
        }
        out
    }

    /// Waits for every entry and finishes them all (before a method that must see the
    /// publishes, or at the connection's end); their confirms are returned as by `next`.
    pub(crate) async fn drain(&mut self) -> Vec<((u16, u64), bool)> {
        let mut out = Vec::new();
        while !self.queue.is_empty() {
            out.extend(self.next().await);
        }
        out
    }
}
