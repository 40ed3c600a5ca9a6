//! mqcore: the mqemu queue engine, with MSMQ's semantics and error codes, and no network.
//!
//! A [`QueueManager`] is one MSMQ "computer": private queues with journals and subqueues, the
//! system dead-letter and journal queues, internal, single-message and external transactions,
//! acknowledgements, expiry and quotas. It runs in memory, starts in microseconds, and takes its
//! time from a [`Clock`] so tests can move time by hand.
//!
//! ```
//! use std::time::Duration;
//! use mqcore::{Message, QueueManager, QueueProps, Tx};
//!
//! let qm = QueueManager::new();
//! let orders = qm.create_queue(r".\private$\orders", QueueProps::transactional())?;
//! let tx = qm.begin();
//! orders.send(Message::new("order 1").with_label("new"), Tx::In(&tx))?;
//! tx.commit()?;
//! let msg = orders.receive(Duration::from_secs(1), Tx::Single)?;
//! assert_eq!(msg.body_str(), Some("order 1"));
//! # Ok::<(), mqcore::Error>(())
//! ```
//!
//! The crate has no async runtime: `receive_async` and `peek_async` are plain futures that any
//! executor can drive, and timeouts fire from the queue manager's own timer thread.
//!
//! # API boundary
//! The public API is the re-exports below and the modules `clock`, `error`, `manager`, `message`,
//! `name`, `queue`, `triggers` and `tx`. Three modules are `#[doc(hidden)]` plumbing, public only
//! because other crates of the workspace need them, and not for applications:
//! - `step` (its `deferred` part) and `blocking`: how an async host (`mqnet`'s server) runs
//!   engine steps without a thread waiting for the disk;
//! - `storage`: the log, disks and simulated disks, for the crash tests and benches.

#[doc(hidden)]
pub mod blocking;
pub mod clock;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
mod ids;
mod loom;
pub mod manager;
pub mod message;
pub mod name;
mod persistence;
pub mod queue;
#[doc(hidden)]
pub mod step;
#[doc(hidden)]
pub mod storage;
mod timer;
pub mod transfer;
pub mod triggers;
pub mod tx;

pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use error::{Error, ErrorCode, Result};
pub use manager::{Builder, CacheStats, Compat, QueueManager};
pub use message::{
    Acknowledge, CorrelationId, Delivery, JournalFlags, Message, MessageClass, MessageId,
};
pub use name::{QueueName, SystemQueue};
pub use queue::{Cursor, LookupAction, Queue, QueueInfo, QueueProps, QueueUpdate, INFINITE};
pub use tx::{Coordinator, LocalCoordinator, Transaction, Tx, TxKind};
