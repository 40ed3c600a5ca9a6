//! How the async faces (the native server, HTTP, AMQP) run engine steps: a call that may wait
//! for the log runs under a hook that moves only a real wait off the runtime's worker, and work
//! that depends on logged steps (answers, publisher confirms) is held until their records are
//! durable, oldest first, while the connection goes on reading.
//!
//! **Invariant:** an entry of [`UntilDurable`] is released only after `finish` has published its
//! steps, and entries are released in the order they were pushed, so nothing a step did is seen,
//! and nothing that speaks for it is answered, before its record is durable.

use std::collections::VecDeque;

use mqcore::step::deferred::{self, Deferred, Durability};

/// How an engine call that waits for the disk gets off a runtime worker: on a multi-threaded
/// runtime the worker's other tasks move to another thread for the wait, and only a call that
/// really waits pays for that (`mqcore::blocking`). A current-thread runtime cannot hand off;
/// there the wait blocks the runtime, as any call would.
pub(crate) fn blocking_hook() -> Option<mqcore::blocking::Hook> {
    fn block_in_place(f: &mut dyn FnMut()) {
        tokio::task::block_in_place(f)
    }
    let flavor = tokio::runtime::Handle::current().runtime_flavor();
    (flavor == tokio::runtime::RuntimeFlavor::MultiThread).then_some(block_in_place as _)
}

/// Runs an engine call that may wait for the log, under [`blocking_hook`].
#[cfg_attr(not(feature = "amqp"), allow(dead_code))] // the AMQP face's
pub(crate) fn engine<R>(f: impl FnOnce() -> R) -> R {
    match blocking_hook() {
        Some(hook) => mqcore::blocking::with_hook(hook, f),
        None => f(),
    }
}

/// Items held until the log records of the steps they depend on are durable, oldest first, and
/// the wait for the oldest's record. The connection's own task waits here, so the log writer's
/// wake-up reaches the task that answers, with no task or channel between.
pub(crate) struct UntilDurable<T> {
    queue: VecDeque<Entry<T>>,
    front: Option<Durability>,
}

/// An item held, the steps it depends on, and whether its wait goes first
/// ([`Durability::woken_first`]).
struct Entry<T> {
    steps: Vec<Deferred>,
    item: T,
    first: bool,
}

impl<T> Default for UntilDurable<T> {
    fn default() -> Self {
        UntilDurable {
            queue: VecDeque::new(),
            front: None,
        }
    }
}

/// The step whose record speaks for a batch: records become durable in LSN order. None for an
/// item that depends on no step (released once those before it are).
fn last(steps: &[Deferred]) -> Option<&Deferred> {
    steps.iter().max_by_key(|d| d.lsn())
}

impl<T> UntilDurable<T> {
    pub(crate) fn push(&mut self, steps: Vec<Deferred>, item: T) {
        self.queue.push_back(Entry {
            steps,
            item,
            first: false,
        });
    }

    /// [`UntilDurable::push`] for an item whose wait is woken ahead of the others of its sync
    /// ([`Durability::woken_first`]): answers that hand messages out.
    pub(crate) fn push_first(&mut self, steps: Vec<Deferred>, item: T) {
        self.queue.push_back(Entry {
            steps,
            item,
            first: true,
        });
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The items still held, oldest first.
    #[cfg_attr(not(feature = "amqp"), allow(dead_code))] // the AMQP face's
    pub(crate) fn items_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.queue.iter_mut().map(|e| &mut e.item)
    }

    /// Waits until the oldest item's record is durable, then publishes its steps and those of
    /// every later item whose record is durable too, and returns those items with whether their
    /// steps held (the log's error otherwise). Pending forever while nothing is held; cancelled,
    /// it keeps its wait for the next call.
    pub(crate) async fn next(&mut self) -> Vec<(T, mqcore::Result<()>)> {
        let Some(front) = self.queue.front() else {
            return std::future::pending().await;
        };
        if let Some(l) = last(&front.steps) {
            let first = front.first;
            let front = self.front.get_or_insert_with(|| {
                let durable = l.durable();
                if first {
                    durable.woken_first()
                } else {
                    durable
                }
            });
            // A failure shows in `finish_each`.
            let _ = front.await;
        }
        self.front = None;
        let mut out = Vec::new();
        while let Some(e) = self.queue.front() {
            if !last(&e.steps).is_none_or(Deferred::is_durable) {
                break;
            }
            let e = self.queue.pop_front().expect("looked at");
            out.push((e.item, deferred::finish_each(e.steps)));
        }
        out
    }

    /// Waits for every item and releases them all, as `next` does.
    #[cfg_attr(not(feature = "amqp"), allow(dead_code))] // the AMQP face's
    pub(crate) async fn drain(&mut self) -> Vec<(T, mqcore::Result<()>)> {
        let mut out = Vec::new();
        while !self.is_empty() {
            out.extend(self.next().await);
        }
        out
    }
}
