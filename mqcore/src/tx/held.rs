//! What a transaction holds, as data the lower layers can name without knowing the transaction:
//! sends staged for commit, and messages locked to it in their stores.

use std::sync::Arc;

use crate::ids::LookupId;
use crate::message::Message;
use crate::queue::outgoing::Outgoing;
use crate::queue::private::QueueInner;
use crate::queue::store::Store;

/// A send waiting for commit.
pub(crate) struct StagedSend {
    pub(crate) dest: Dest,
    pub(crate) msg: Message,
}

/// Where a staged send goes.
pub(crate) enum Dest {
    /// A queue of this queue manager.
    Queue(Arc<QueueInner>),
    /// The outgoing queue for a queue on another queue manager.
    Outgoing(Arc<Outgoing>),
}

/// A message locked by a transaction: received, or moved to `move_to`.
pub(crate) struct HeldMessage {
    pub(crate) store: Arc<Store>,
    /// The user queue it belongs to (for journaling a receive and tidying subqueues); `None` for
    /// journals and system queues.
    pub(crate) queue: Option<Arc<QueueInner>>,
    pub(crate) lookup: LookupId,
    /// For a transactional move, the store it goes to on commit.
    pub(crate) move_to: Option<Arc<Store>>,
}
