//! An outgoing queue's data: the store that holds messages for one queue on another queue
//! manager until that queue manager acknowledges them, and the order bookkeeping that lets the
//! transfer task send them in an order that never changes.
//!
//! **Invariant:** a message's lookup id in its outgoing store is its number in the transfer
//! sequence, and the transfer task sends only messages below every lookup id reserved by a
//! step not yet published ([`Outgoing::watermark`]). Lookup ids are reserved and registered
//! under one lock ([`Outgoing::reserve`]), so a message that appears later always has a higher
//! number than every message already sent: the receiver never accepts a number that skips one
//! still to come.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use crate::clock::Timestamp;
use crate::ids::{LookupId, StoreRef};
use crate::message::{Message, MessageClass};
use crate::name::QueueName;
use crate::queue::store::Store;

/// Told the host of an outgoing queue whenever messages may have become sendable there.
pub(crate) type ReadyFn = Arc<dyn Fn(&str) + Send + Sync>;

/// Where an outgoing queue reports that it has something to send: the transfer service installs
/// one function for the whole queue manager, possibly after the queues were recovered.
#[derive(Default)]
pub(crate) struct ReadyHook(RwLock<Option<ReadyFn>>);

impl ReadyHook {
    pub(crate) fn set(&self, f: Option<ReadyFn>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = f;
    }

    pub(crate) fn call(&self, host: &str) {
        let f = self
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(f) = f {
            f(host);
        }
    }
}

/// What an outgoing queue keeps besides its messages.
#[derive(Debug, Default)]
pub(crate) struct OutgoingState {
    /// The highest transactional number the receiver acknowledged: the previous number of the
    /// first transactional message still here. Logged with the removals it causes.
    pub(crate) acked: u64,
    /// Lookup ids reserved by steps not yet published (or abandoned).
    pub(crate) pending: BTreeSet<LookupId>,
    /// `PAUSE` (MSMQ's `ONHOLD`): nothing is sent until `RESUME`.
    pub(crate) paused: bool,
    /// When messages run out of time here (time to reach queue or to be received).
    pub(crate) deadlines: BTreeSet<(Timestamp, LookupId)>,
    /// The timer entry set for the earliest deadline, if any.
    pub(crate) armed: Option<Timestamp>,
    /// The highest lookup id that may have reached the receiver: handed to the transfer task in
    /// this process, or recovered from the log (sent before the restart, perhaps). A
    /// transactional message above it can leave without the receiver's word; one at or below
    /// needs its number withdrawn.
    pub(crate) maybe_sent: LookupId,
    /// Transactional messages out of time whose numbers are being withdrawn, with the class
    /// they are dead-lettered with once the receiver confirms.
    pub(crate) withdrawing: HashMap<LookupId, MessageClass>,
}

/// When `msg` runs out of time in an outgoing queue, and the NACK class it then gets.
pub(crate) fn deadline(msg: &Message) -> Option<(Timestamp, MessageClass)> {
    let reach = msg.time_to_reach_queue.map(|d| {
        (
            msg.sent_time.saturating_add(d),
            MessageClass::NACK_REACH_QUEUE_TIMEOUT,
        )
    });
    let receive = msg.time_to_be_received.map(|d| {
        (
            msg.sent_time.saturating_add(d),
            MessageClass::NACK_RECEIVE_TIMEOUT_AT_SENDER,
        )
    });
    match (reach, receive) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// One outgoing queue: messages for one destination queue on another queue manager.
pub(crate) struct Outgoing {
    /// The destination as a format name, e.g. `DIRECT=TCP:127.0.0.3\private$\orders`.
    pub(crate) name: Arc<QueueName>,
    /// The lower-case format name: the store's name in the log, and the sequence's name at the
    /// receiver.
    pub(crate) key: String,
    /// The computer name or address the destination queue manager is reached at (lower case).
    pub(crate) host: String,
    /// The destination queue's name on its own queue manager (`.\private$\orders`).
    pub(crate) remote_path: String,
    pub(crate) store: Arc<Store>,
    state: Mutex<OutgoingState>,
    ready: Arc<ReadyHook>,
}

impl Outgoing {
    pub(crate) fn new(
        name: QueueName,
        host: String,
        remote_path: String,
        store: Arc<Store>,
        ready: Arc<ReadyHook>,
    ) -> Outgoing {
        Outgoing {
            key: name.as_text().to_ascii_lowercase(),
            name: Arc::new(name),
            host,
            remote_path,
            store,
            state: Mutex::default(),
            ready,
        }
    }

    /// The name its store has in the log.
    pub(crate) fn store_ref(key: &str) -> StoreRef {
        StoreRef::Outgoing(key.to_owned())
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, OutgoingState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserves the next lookup id (the message's number) and registers it as pending until the
    /// returned guard drops, which the step that reserved it does once it published the message
    /// (or gave up).
    pub(crate) fn reserve(self: &Arc<Self>, expires: Option<Timestamp>) -> (LookupId, Pending) {
        let mut st = self.state();
        let lookup = self.store.reserve_lookup();
        st.pending.insert(lookup);
        if let Some(at) = expires {
            st.deadlines.insert((at, lookup));
        }
        (
            lookup,
            Pending {
                queue: Some(self.clone()),
                lookup,
            },
        )
    }

    /// Registers an already reserved lookup id as pending (recovery of a prepared transaction).
    pub(crate) fn hold(self: &Arc<Self>, lookup: LookupId) -> Pending {
        self.state().pending.insert(lookup);
        Pending {
            queue: Some(self.clone()),
            lookup,
        }
    }

    /// The lowest lookup id that may still appear: every message below it is in the store (or
    /// never will be). With `st` locked.
    pub(crate) fn watermark(&self, st: &OutgoingState) -> LookupId {
        st.pending
            .first()
            .copied()
            .unwrap_or_else(|| self.store.last_lookup() + 1)
    }

    /// Tells the transfer service this queue may have something to send.
    pub(crate) fn notify(&self) {
        self.ready.call(&self.host);
    }
}

/// A reserved lookup id of an outgoing store whose message is not in the store yet.
pub(crate) struct Pending {
    /// `None` once released.
    queue: Option<Arc<Outgoing>>,
    lookup: LookupId,
}

impl Pending {
    /// Lets go of the number once its message is in the store, and gives back its queue: the
    /// publisher tells each queue once per step, not once per message.
    pub(crate) fn release(mut self) -> Arc<Outgoing> {
        let queue = self.queue.take().expect("released once");
        queue.state().pending.remove(&self.lookup);
        queue
    }
}

/// A step dropped unpublished lets go of its numbers too, and says so: messages behind them may
/// be sendable now.
impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(queue) = self.queue.take() {
            queue.state().pending.remove(&self.lookup);
            queue.notify();
        }
    }
}
