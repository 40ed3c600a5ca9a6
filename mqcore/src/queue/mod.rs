//! Queues: their properties, and the [`Queue`] handle through which messages are sent, peeked,
//! received, moved and rejected.
//!
//! A handle is what `MQOpenQueue` returns: it names one store (a queue, its journal, one of its
//! subqueues, or a system queue) and checks MSMQ's rules for that store (journals and subqueues
//! cannot be sent to, transactional queues take only transactional sends, and so on). The order,
//! locking and waiting live in `store`; the routing of journal copies, dead letters and
//! acknowledgements lives in the queue manager.

pub(crate) mod cold;
pub(crate) mod outgoing;
mod scan;
pub(crate) mod store;

#[cfg(all(test, loom))]
mod loom_tests;

mod cursor;
mod handle;
mod lookup;
pub(crate) mod private;
mod props;

pub use cursor::Cursor;
pub use handle::Queue;
pub(crate) use private::{Opened, QueueInner};
pub use props::{LookupAction, QueueInfo, QueueProps, QueueUpdate, INFINITE, MAX_QUEUE_LABEL_LEN};
pub use scan::{Interrupt, Scan};
pub use store::LookupId as MessageLookupId;
