//! A walk that visits every message of a queue once, in the order receivers get them, and then
//! waits for arrivals: how the Triggers service watches a queue.
//!
//! A cursor would not do: MSMQ Triggers processes "higher-priority arrivals next", but a cursor
//! never goes back, so a message of higher priority that lands before its position would be missed
//! until a restart. A [`Scan`] remembers, per priority, the highest lookup id it has visited;
//! lookup ids only grow, so the next message to visit is the first of the highest priority whose
//! lookup id is past that mark. A message that leaves and comes back (an aborted receive, a move
//! back from a subqueue) keeps its lookup id and is not visited again, which is also what MSMQ
//! Triggers does until the service restarts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use super::store::{Deadline, Key, LookupId, State, Store, WaiterId};
use super::Queue;
use crate::error::Result;
use crate::message::Message;

/// Visits each message of a queue once; see the module documentation.
#[derive(Debug)]
pub struct Scan {
    queue: Queue,
    /// Per rank (`7 - priority`), the highest lookup id visited.
    seen: [LookupId; 8],
}

/// Ends a blocked [`Scan::next`] from another thread. Once raised it stays raised.
#[derive(Debug, Default, Clone)]
pub struct Interrupt {
    inner: Arc<InterruptInner>,
}

#[derive(Debug, Default)]
struct InterruptInner {
    raised: AtomicBool,
    /// The wait to wake when raised: the latest one armed.
    waiter: Mutex<Option<(Weak<Store>, WaiterId)>>,
}

impl Interrupt {
    /// A new, unraised interrupt.
    pub fn new() -> Interrupt {
        Interrupt::default()
    }

    /// Raises it: a scan waiting on it returns `Ok(None)` now, and every later wait at once.
    pub fn raise(&self) {
        self.inner.raised.store(true, Ordering::SeqCst);
        let waiter = self
            .inner
            .waiter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some((store, id)) = waiter {
            if let Some(store) = store.upgrade() {
                store.wake_waiter(id);
            }
        }
    }

    /// Whether it has been raised.
    pub fn is_raised(&self) -> bool {
        self.inner.raised.load(Ordering::SeqCst)
    }
}

impl Deadline for Interrupt {
    fn passed(&self) -> bool {
        self.is_raised()
    }

    fn arm(&self, store: &Arc<Store>, waiter: WaiterId) {
        // The wait re-checks `passed` after arming, so a raise that lands before this store is
        // seen there; one that lands after finds the waiter here.
        *self
            .inner
            .waiter
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((Arc::downgrade(store), waiter));
    }
}

impl Scan {
    pub(super) fn new(queue: Queue) -> Scan {
        Scan {
            queue,
            seen: [0; 8],
        }
    }

    /// The queue handle it walks.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// Peeks at the next message not visited yet, waiting as long as it takes for one to arrive.
    /// `Ok(None)` when `interrupt` is raised; `MQ_ERROR_QUEUE_DELETED` if the queue goes away.
    pub fn next(&mut self, interrupt: &Interrupt) -> Result<Option<Message>> {
        let store = self.queue.store()?;
        let qm = self.queue.qm.clone();
        let seen = self.seen;
        let r = store.watch_blocking(interrupt, |s| {
            s.expire(|| qm.now());
            let key = first_unseen(s, &seen)?;
            Some(
                s.read(key)
                    .map(|m| (key, m))
                    .ok_or_else(|| self.queue.unreadable(key)),
            )
        });
        self.queue.after_watch(&store);
        match r {
            Ok(found) => {
                let (key, msg) = found?;
                self.seen[usize::from(key.rank())] = key.lookup();
                Ok(Some(msg))
            }
            Err(_) if interrupt.is_raised() => Ok(None),
            Err(e) => Err(self.queue.wait_error(e, super::INFINITE)),
        }
    }
}

/// The first visible message, in queue order, whose lookup id is past its rank's mark.
fn first_unseen(s: &State, seen: &[LookupId; 8]) -> Option<Key> {
    let mut from = Key::ranked(0, seen[0]);
    loop {
        let next = s.after(from)?;
        let mark = seen[usize::from(next.rank())];
        if next.rank() == from.rank() || next.lookup() > mark {
            return Some(next);
        }
        // `next` opens a lower rank but was visited: skip to that rank's mark.
        from = Key::ranked(next.rank(), mark);
    }
}
