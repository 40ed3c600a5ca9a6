//! Identities shared across the engine's layers: lookup ids, log sequence numbers, transaction
//! ids and the names the log gives stores. A leaf: it imports nothing but the name grammar, so
//! the storage layer and the queue layer can both use these without depending on each other.

use serde::{Deserialize, Serialize};

use crate::name::SystemQueue;

/// A message's per-queue 64-bit lookup identifier (`PROPID_M_LOOKUPID`).
pub type LookupId = u64;

/// A log sequence number: the position of a record in the whole log, starting at 1.
pub type Lsn = u64;

/// A transaction's identity inside one queue manager.
pub(crate) type TxId = u64;

/// Names one store for the log.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) enum StoreRef {
    /// A system queue.
    System(SystemQueue),
    /// A private queue, by its catalog id.
    Main(u32),
    /// A private queue's journal.
    Journal(u32),
    /// A private queue's subqueue, by lowercase name.
    Sub(u32, String),
    /// An outgoing queue, by its destination's lower-case format name.
    Outgoing(String),
}

impl StoreRef {
    /// The private queue this store belongs to, if any.
    pub(crate) fn queue_id(&self) -> Option<u32> {
        match self {
            StoreRef::System(_) | StoreRef::Outgoing(_) => None,
            StoreRef::Main(id) | StoreRef::Journal(id) | StoreRef::Sub(id, _) => Some(*id),
        }
    }
}
