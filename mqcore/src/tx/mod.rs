//! Transactions: internal (`MessageQueueTransaction`), single-message, and external two-phase.
//!
//! A [`Transaction`] collects staged sends and holds locks on received messages. Nothing it does
//! is visible to anyone else until [`Transaction::commit`]; [`Transaction::abort`] (or dropping it)
//! throws the sends away and puts every received message back at its original position with its
//! abort count raised. External transactions follow the two-phase protocol of a transaction
//! coordinator (MSDTC in Windows): they must be prepared before they commit, and they can only
//! begin while the coordinator is reachable.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

pub(crate) mod held;

pub(crate) use held::{Dest, HeldMessage, StagedSend};

use crate::error::{Error, ErrorCode, Result};
use crate::manager::Inner;
use crate::queue::store::TxId;
use crate::step::Step;
use crate::storage::wal::Lsn;

/// The transaction a send or receive runs under (MSMQ's `pTransaction` argument).
#[derive(Clone, Copy)]
pub enum Tx<'a> {
    /// `MQ_NO_TRANSACTION`.
    None,
    /// `MQ_SINGLE_MESSAGE`: this one operation is its own transaction.
    Single,
    /// Part of `tx`.
    In(&'a Transaction),
}

impl<'a> From<&'a Transaction> for Tx<'a> {
    fn from(tx: &'a Transaction) -> Tx<'a> {
        Tx::In(tx)
    }
}

impl Tx<'_> {
    /// Whether this is any kind of transaction.
    pub fn is_transactional(&self) -> bool {
        !matches!(self, Tx::None)
    }
}

/// Which protocol a transaction follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxKind {
    /// MSMQ-coordinated (`MQBeginTransaction`): commit in one step.
    Internal,
    /// Coordinated by an external transaction manager: prepare, then commit or abort.
    External {
        /// The coordinator's identifier for the transaction.
        xid: String,
    },
}

/// The transaction coordinator (MSDTC's role). External transactions need it reachable.
pub trait Coordinator: Send + Sync {
    /// Whether the coordinator can be reached now.
    fn is_available(&self) -> bool;
}

/// An in-process coordinator that tests can take offline (the cluster's DTC resource failing).
#[derive(Debug)]
pub struct LocalCoordinator {
    available: AtomicBool,
}

impl LocalCoordinator {
    /// An available coordinator.
    pub fn new() -> Arc<LocalCoordinator> {
        Arc::new(LocalCoordinator {
            available: AtomicBool::new(true),
        })
    }

    /// Takes the coordinator offline or brings it back.
    pub fn set_available(&self, available: bool) {
        self.available.store(available, Ordering::SeqCst);
    }
}

impl Coordinator for LocalCoordinator {
    fn is_available(&self) -> bool {
        self.available.load(Ordering::SeqCst)
    }
}

/// Where a transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Active,
    Prepared,
    Done,
}

/// Everything a transaction has done so far.
pub(crate) struct TxState {
    pub(crate) phase: Phase,
    pub(crate) sends: Vec<StagedSend>,
    pub(crate) held: Vec<HeldMessage>,
    /// Time-to-reach-queue and time-to-be-received of the first message sent, applied to all.
    pub(crate) first_times: Option<(Option<Duration>, Option<Duration>)>,
    /// Once prepared: what commit will apply (sends and held messages are in it), and the LSN of
    /// its PREPARE record (0 in memory).
    pub(crate) prepared: Option<(Step, Lsn)>,
}

pub(crate) struct TxShared {
    pub(crate) id: TxId,
    pub(crate) kind: TxKind,
    pub(crate) qm: Weak<Inner>,
    pub(crate) state: Mutex<TxState>,
}

impl TxShared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, TxState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Locks the state for a new operation: refuses once prepared or finished.
    pub(crate) fn lock_active(&self) -> Result<MutexGuard<'_, TxState>> {
        let state = self.lock();
        match state.phase {
            Phase::Active => Ok(state),
            Phase::Prepared => Err(Error::new(
                ErrorCode::TransactionSequence,
                "the transaction is prepared; no more operations may join it",
            )),
            Phase::Done => Err(Error::new(
                ErrorCode::TransactionSequence,
                "the transaction has already committed or aborted",
            )),
        }
    }
}

/// A transaction. Commit or abort it; dropping it unfinished aborts it.
pub struct Transaction {
    pub(crate) shared: Arc<TxShared>,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("id", &self.shared.id)
            .field("kind", &self.shared.kind)
            .field("phase", &self.shared.lock().phase)
            .finish()
    }
}

impl Transaction {
    pub(crate) fn new(id: TxId, kind: TxKind, qm: Weak<Inner>) -> Transaction {
        Transaction {
            shared: Arc::new(TxShared {
                id,
                kind,
                qm,
                state: Mutex::new(TxState {
                    phase: Phase::Active,
                    sends: Vec::new(),
                    held: Vec::new(),
                    first_times: None,
                    prepared: None,
                }),
            }),
        }
    }

    /// The protocol this transaction follows.
    pub fn kind(&self) -> &TxKind {
        &self.shared.kind
    }

    /// Whether this is an external (two-phase) transaction.
    pub fn is_external(&self) -> bool {
        matches!(self.shared.kind, TxKind::External { .. })
    }

    fn qm(&self) -> Result<Arc<Inner>> {
        self.shared.qm.upgrade().ok_or_else(|| {
            Error::new(
                ErrorCode::ServiceNotAvailable,
                "the queue manager of this transaction has shut down",
            )
        })
    }

    /// Whether it is prepared: its outcome is now the coordinator's.
    pub fn is_prepared(&self) -> bool {
        self.shared.lock().phase == Phase::Prepared
    }

    /// Phase one of two-phase commit: after this, the transaction can only commit or abort.
    ///
    /// Only external transactions prepare (`MQ_ERROR_TRANSACTION_USAGE` otherwise), and only while
    /// the coordinator is reachable (`MQ_ERROR_DTC_CONNECT`).
    pub fn prepare(&self) -> Result<()> {
        if !self.is_external() {
            return Err(Error::new(
                ErrorCode::TransactionUsage,
                "only external transactions have a prepare phase",
            ));
        }
        let qm = self.qm()?;
        qm.require_coordinator()?;
        let mut state = self.shared.lock_active()?;
        let sends = std::mem::take(&mut state.sends);
        let held = std::mem::take(&mut state.held);
        let eff = qm.commit_effects(sends, held);
        match qm.log_prepare(self.xid(), &eff) {
            Ok(lsn) => {
                state.phase = Phase::Prepared;
                state.prepared = Some((eff, lsn));
                Ok(())
            }
            Err(e) => {
                // Not prepared: the transaction can only abort now, which gives back what it
                // holds.
                state.held = eff.claims;
                Err(e)
            }
        }
    }

    /// A transaction recovered in its prepared state.
    pub(crate) fn set_prepared(&self, eff: Step, lsn: Lsn) {
        let mut state = self.shared.lock();
        state.phase = Phase::Prepared;
        state.prepared = Some((eff, lsn));
    }

    /// The coordinator's id of an external transaction; empty for others.
    pub fn xid(&self) -> &str {
        match &self.shared.kind {
            TxKind::External { xid } => xid,
            TxKind::Internal => "",
        }
    }

    /// Commits: staged messages become visible in order, received messages are removed for good
    /// (and journaled), and acknowledgements are sent. External transactions must be prepared
    /// first (`MQ_ERROR_TRANSACTION_SEQUENCE`).
    pub fn commit(self) -> Result<()> {
        let qm = self.qm()?;
        let mut state = self.shared.lock();
        match (state.phase, self.is_external()) {
            (Phase::Done, _) => {
                return Err(Error::new(
                    ErrorCode::TransactionSequence,
                    "the transaction has already finished",
                ))
            }
            (Phase::Active, true) => {
                return Err(Error::new(
                    ErrorCode::TransactionSequence,
                    "an external transaction must be prepared before it commits",
                ))
            }
            _ => {}
        }
        state.phase = Phase::Done;
        let prepared = state.prepared.take();
        let sends = std::mem::take(&mut state.sends);
        let held = std::mem::take(&mut state.held);
        drop(state);
        let result = match prepared {
            Some((eff, lsn)) => qm.apply_outcome(eff, self.xid(), lsn).map(drop),
            None => qm.apply(qm.commit_effects(sends, held)).map(drop),
        };
        qm.finished(&self.shared.kind);
        result
    }

    /// Takes over everything `other` has done (its staged sends and the messages it holds), so
    /// that this transaction's commit or abort decides them with its own, in one log record.
    /// `other` is left finished and empty (dropping it gives nothing back). Both must be active
    /// internal transactions of the same queue manager (`MQ_ERROR_TRANSACTION_USAGE`,
    /// `MQ_ERROR_TRANSACTION_SEQUENCE`); when they are not, neither changes.
    pub fn absorb(&self, other: &Transaction) -> Result<()> {
        if self.is_external()
            || other.is_external()
            || !Weak::ptr_eq(&self.shared.qm, &other.shared.qm)
            || Arc::ptr_eq(&self.shared, &other.shared)
        {
            return Err(Error::new(
                ErrorCode::TransactionUsage,
                "only another internal transaction of the same queue manager can be absorbed",
            ));
        }
        let mut mine = self.shared.lock_active()?;
        let mut theirs = other.shared.lock_active()?;
        theirs.phase = Phase::Done;
        mine.sends.append(&mut theirs.sends);
        mine.held.append(&mut theirs.held);
        if mine.first_times.is_none() {
            mine.first_times = theirs.first_times.take();
        }
        Ok(())
    }

    /// Aborts: staged messages are dropped and received messages go back where they were, their
    /// abort count raised (`PROPID_M_ABORT_COUNT`).
    pub fn abort(self) {
        self.abort_in_place(true);
    }

    /// Aborts as if its receives had never happened: for a host that took messages under this
    /// transaction and handed them to nobody (a prefetch given back unseen), so they return to
    /// their places without their abort count raised. Otherwise as [`Transaction::abort`].
    pub fn release(self) {
        self.abort_in_place(false);
    }

    fn abort_in_place(&self, counted: bool) {
        let mut state = self.shared.lock();
        if state.phase == Phase::Done {
            return;
        }
        state.phase = Phase::Done;
        state.sends.clear();
        let mut held = std::mem::take(&mut state.held);
        let prepared = state.prepared.take();
        drop(state);
        match self.shared.qm.upgrade() {
            Some(qm) => {
                if let Some((eff, lsn)) = prepared {
                    if let Err(e) = qm.log_abort_prepared(self.xid(), lsn, &eff) {
                        tracing::error!(error = %e, xid = self.xid(), "abort of a prepared transaction not logged; it stays in doubt after a restart");
                    }
                    held = eff.claims;
                }
                qm.finished(&self.shared.kind);
                qm.abort(held, counted)
            }
            // The queue manager is gone, and its queues with it; nothing is left to restore.
            None => drop(held),
        }
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        self.abort_in_place(true);
    }
}
