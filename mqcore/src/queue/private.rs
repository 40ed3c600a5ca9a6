//! A private queue's state inside the queue manager: its store, journal and subqueues, and what
//! a handle opened. Subqueues are created on first use and dropped when empty, unwaited and
//! unreferenced.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use super::cold;
use super::props::QueueProps;
use crate::error::{Error, ErrorCode, Result};
use crate::ids::StoreRef;
use crate::name::{QueueName, SystemQueue};
use crate::queue::store::Store;

/// A private queue of the queue manager.
pub(crate) struct QueueInner {
    /// `PRIVATE=` id.
    pub(crate) id: u32,
    /// Path name as created, e.g. `HOST\private$\orders` (shared with every message's
    /// destination property).
    pub(crate) path: Arc<QueueName>,
    /// Catalog key: the queue name in lower case.
    pub(crate) key: String,
    /// Changed only through [`QueueInner::set_props`], which keeps `hot` in step.
    props: RwLock<QueueProps>,
    /// What the send and receive paths read of `props` for every message.
    pub(crate) hot: HotProps,
    /// The queue's messages.
    pub(crate) store: Arc<Store>,
    /// Its journal (`queue;journal`).
    pub(crate) journal: Arc<Store>,
    /// Subqueues by lower-case name; created on first use, removed when empty.
    pub(crate) subqueues: Mutex<HashMap<String, (String, Arc<Store>)>>,
    /// Set when the queue is deleted; handles then fail with MQ_ERROR_QUEUE_DELETED.
    pub(crate) deleted: AtomicBool,
    /// Where its stores read cold messages back from (durable queue managers).
    pub(crate) cold: Option<Arc<dyn cold::ColdSource>>,
}

/// The properties the send and receive paths read for every message, copied out of the
/// properties' lock into atomics: readers then share a cache line without writing to it, where
/// the lock's reader count moved between a producer's CPU and a consumer's on every message.
/// A reader may see one property from before a change and another from after it, as it could
/// between two reads of the lock.
#[derive(Debug)]
pub(crate) struct HotProps {
    transactional: AtomicBool,
    journal: AtomicBool,
    /// `NO_QUOTA`, or kilobytes.
    quota_kb: AtomicU64,
    journal_quota_kb: AtomicU64,
}

const NO_QUOTA: u64 = u64::MAX;

fn quota_word(q: Option<u32>) -> u64 {
    q.map_or(NO_QUOTA, u64::from)
}

fn quota_of(w: u64) -> Option<u32> {
    u32::try_from(w).ok()
}

impl HotProps {
    pub(crate) fn new(p: &QueueProps) -> HotProps {
        HotProps {
            transactional: AtomicBool::new(p.transactional),
            journal: AtomicBool::new(p.journal),
            quota_kb: AtomicU64::new(quota_word(p.quota_kb)),
            journal_quota_kb: AtomicU64::new(quota_word(p.journal_quota_kb)),
        }
    }

    fn set(&self, p: &QueueProps) {
        self.transactional.store(p.transactional, Ordering::Relaxed);
        self.journal.store(p.journal, Ordering::Relaxed);
        self.quota_kb
            .store(quota_word(p.quota_kb), Ordering::Relaxed);
        self.journal_quota_kb
            .store(quota_word(p.journal_quota_kb), Ordering::Relaxed);
    }

    pub(crate) fn transactional(&self) -> bool {
        self.transactional.load(Ordering::Relaxed)
    }

    pub(crate) fn journal(&self) -> bool {
        self.journal.load(Ordering::Relaxed)
    }

    pub(crate) fn quota_kb(&self) -> Option<u32> {
        quota_of(self.quota_kb.load(Ordering::Relaxed))
    }

    pub(crate) fn journal_quota_kb(&self) -> Option<u32> {
        quota_of(self.journal_quota_kb.load(Ordering::Relaxed))
    }
}

impl QueueInner {
    /// A queue's in-memory side.
    pub(crate) fn new(
        id: u32,
        path: Arc<QueueName>,
        key: String,
        props: QueueProps,
        store: Arc<Store>,
        journal: Arc<Store>,
        cold: Option<Arc<dyn cold::ColdSource>>,
    ) -> QueueInner {
        QueueInner {
            id,
            key,
            path,
            hot: HotProps::new(&props),
            props: RwLock::new(props),
            store,
            journal,
            subqueues: Default::default(),
            deleted: AtomicBool::new(false),
            cold,
        }
    }

    /// Changes the properties with `f` (which may refuse the change).
    pub(crate) fn set_props(
        &self,
        f: impl FnOnce(&QueueProps) -> Result<QueueProps>,
    ) -> Result<()> {
        let mut props = self.props.write().unwrap_or_else(PoisonError::into_inner);
        let next = f(&props)?;
        self.hot.set(&next);
        *props = next;
        Ok(())
    }

    pub(crate) fn props(&self) -> QueueProps {
        self.props
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reads the properties in place (no clone: this is on the send and receive paths).
    pub(crate) fn read_props(&self) -> std::sync::RwLockReadGuard<'_, QueueProps> {
        self.props.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn is_transactional(&self) -> bool {
        self.hot.transactional()
    }

    pub(crate) fn subqueues(&self) -> MutexGuard<'_, HashMap<String, (String, Arc<Store>)>> {
        self.subqueues
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The subqueue store called `name`, created if needed.
    pub(crate) fn subqueue(&self, name: &str) -> Arc<Store> {
        self.subqueues()
            .entry(name.to_ascii_lowercase())
            .or_insert_with(|| {
                let id = StoreRef::Sub(self.id, name.to_ascii_lowercase());
                (name.to_owned(), Store::linked(id, true, self.cold.as_ref()))
            })
            .1
            .clone()
    }

    /// Drops every subqueue that is empty, has no waiter, and that no operation holds (an
    /// operation about to move a message in holds a reference, which keeps it alive).
    pub(crate) fn tidy_subqueues(&self) {
        self.subqueues().retain(|_, (_, store)| {
            if Arc::strong_count(store) > 1 {
                return true;
            }
            let s = store.lock();
            s.len() > 0 || s.has_waiters()
        });
    }

    pub(crate) fn check_live(&self) -> Result<()> {
        if self.deleted.load(Ordering::SeqCst) {
            return Err(Error::new(
                ErrorCode::QueueDeleted,
                format!("queue {} was deleted", self.path),
            ));
        }
        Ok(())
    }
}

/// Which store a handle reads.
#[derive(Clone)]
pub(crate) enum Opened {
    /// The queue itself.
    Main(Arc<QueueInner>),
    /// The queue's journal.
    Journal(Arc<QueueInner>),
    /// A subqueue, by name.
    Sub(Arc<QueueInner>, String),
    /// A system queue of the queue manager.
    System(SystemQueue),
    /// A queue on another queue manager, through its outgoing queue.
    Remote(Arc<super::outgoing::Outgoing>),
}
