//! Group commit: committers hand their records to one writer thread, which writes everything
//! buffered with one `write_at`, makes it durable with one `fdatasync`, and wakes the committers
//! it covered, blocking ([`Shared::wait`]) or async ([`Durability`]).
//!
//! Invariant: a commit is acknowledged only after the `fdatasync` of a batch that holds it, and
//! that batch was written only after the writer read its own epoch on disk; after any failure
//! (a failed write or sync, or another owner's epoch) nothing more is acknowledged.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use super::format::{count_records, first_lsn_of, HEADER_LEN};
use super::reader::{Mark, MARK_EVERY};
use super::segments::Tail;
use super::{EpochCheck, LeaseCheck, Lsn, WalError, WalStats};
use crate::storage::disk::{Disk, DiskFile};

pub(super) struct Shared {
    pub(super) state: Mutex<State>,
    /// Wakes the writer when records are buffered (or at shutdown).
    pub(super) work: Condvar,
    /// Every record up to this LSN is durable. Committers read it without a lock, and wait on
    /// their own mutex and condition variable, so that a wake-up of many committers does not
    /// fight the submitters (and the writer) for `state`.
    pub(super) durable_to: AtomicU64,
    /// Set (after `State::failed`) when the log failed.
    pub(super) failed: AtomicBool,
    pub(super) waiting: Mutex<()>,
    /// Wakes committers when the durable LSN moves (or the log fails); paired with `waiting`.
    pub(super) durable: Condvar,
    /// Async committers ([`Wal::durable`]), woken by the writer after each sync (all of them
    /// when the log fails).
    ///
    /// [`Wal::durable`]: super::Wal::durable
    pub(super) wakers: Mutex<Vec<AsyncWaiter>>,
    /// Held while the free segment ([`FREE_SEGMENT`](super::segments::FREE_SEGMENT)) is put in place or taken, which compaction
    /// and the spare's thread both do.
    pub(super) free: Mutex<()>,
}

pub(super) struct State {
    /// Encoded records waiting for the writer.
    pub(super) buffer: Vec<u8>,
    /// LSN of the last record in `buffer`.
    pub(super) buffered_to: Lsn,
    /// When the first record in `buffer` was submitted.
    pub(super) buffered_since: Option<std::time::Instant>,
    /// LSN the next append gets.
    pub(super) next_lsn: Lsn,
    /// Whether the writer waits for work (only then does a submit need to wake it).
    pub(super) writer_idle: bool,
    /// Set when a write failed or the log was fenced: the reason, for every later caller.
    pub(super) failed: Option<Failure>,
    pub(super) shutdown: bool,
    /// Records and syncs so far, for the commits-per-sync figure.
    pub(super) stats: WalStats,
    /// Every segment on disk, oldest first: sequence number and the LSN of its first record.
    pub(super) segments: Vec<(u64, Lsn)>,
    /// Where records start, about every [`MARK_EVERY`] bytes of every segment (and at each
    /// segment's first record), in LSN order: [`WalReader`](super::WalReader) reads a record from the nearest mark
    /// before it instead of from its segment's start.
    pub(super) marks: Vec<Mark>,
}

#[derive(Debug, Clone)]
pub(super) enum Failure {
    Fenced { ours: u64, theirs: u64 },
    LeaseLost,
    Full(String),
    Other(String),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        if e.kind() == io::ErrorKind::StorageFull {
            Failure::Full(e.to_string())
        } else {
            Failure::Other(e.to_string())
        }
    }
}

impl Failure {
    pub(super) fn error(&self) -> WalError {
        match self {
            Failure::Fenced { ours, theirs } => WalError::Fenced {
                ours: *ours,
                theirs: *theirs,
            },
            Failure::LeaseLost => WalError::LeaseLost,
            Failure::Full(why) => WalError::StorageFull(why.clone()),
            Failure::Other(why) => WalError::Poisoned(why.clone()),
        }
    }
}

/// An async committer: the LSN it waits for, whether it goes first ([`Durability::woken_first`]),
/// and its waker.
pub(super) struct AsyncWaiter {
    lsn: Lsn,
    first: bool,
    waker: Waker,
}

impl Shared {
    /// Wakes the async committers whose record is durable, or all of them when the log failed:
    /// those that asked to go first, then the others, each in the order they began to wait.
    fn wake_async(&self, failed: bool) {
        let to = self.durable_to.load(Ordering::Acquire);
        let woken: Vec<Waker> = {
            let mut w = self.wakers.lock().unwrap_or_else(PoisonError::into_inner);
            if w.is_empty() {
                return;
            }
            let mut woken = Vec::new();
            let mut after = Vec::new();
            w.retain(|a| {
                let done = failed || a.lsn <= to;
                if done {
                    let list = if a.first { &mut woken } else { &mut after };
                    list.push(a.waker.clone());
                }
                !done
            });
            woken.append(&mut after);
            woken
        };
        for w in woken {
            w.wake();
        }
    }

    /// Where the wait for `lsn` stands: done, failed, or not yet (checked without a lock).
    pub(super) fn durable_state(&self, lsn: Lsn) -> Option<Result<(), WalError>> {
        if self.durable_to.load(Ordering::Acquire) >= lsn {
            return Some(Ok(()));
        }
        if self.failed.load(Ordering::Acquire) {
            let state = lock(&self.state);
            let f = state.failed.as_ref().expect("set before the flag");
            return Some(Err(f.error()));
        }
        None
    }

    /// Returns once every record up to `lsn` is durable (or the log failed).
    pub(super) fn wait(&self, lsn: Lsn) -> Result<(), WalError> {
        if self.durable_to.load(Ordering::Acquire) >= lsn {
            return Ok(());
        }
        crate::blocking::run(|| self.wait_blocking(lsn))
    }

    fn wait_blocking(&self, lsn: Lsn) -> Result<(), WalError> {
        let done = || self.durable_to.load(Ordering::Acquire) >= lsn;
        let failed = || self.failed.load(Ordering::Acquire);
        let mut guard = None;
        loop {
            if done() {
                return Ok(());
            }
            if failed() {
                drop(guard);
                let state = lock(&self.state);
                let f = state.failed.as_ref().expect("set before the flag");
                return Err(f.error());
            }
            // Checked again under `waiting`, which the writer takes before it notifies: no
            // wake-up is lost between the check and the wait.
            let g = match guard.take() {
                Some(g) => g,
                None => self.waiting.lock().unwrap_or_else(PoisonError::into_inner),
            };
            if done() || failed() {
                guard = Some(g);
                continue;
            }
            guard = Some(self.durable.wait(g).unwrap_or_else(PoisonError::into_inner));
        }
    }
}

/// Resolves once every record up to its LSN is durable, or the log failed ([`Wal::durable`]).
///
/// [`Wal::durable`]: super::Wal::durable
#[must_use = "a future does nothing unless polled"]
pub struct Durability {
    pub(super) shared: Arc<Shared>,
    pub(super) lsn: Lsn,
    pub(super) first: bool,
}

impl Durability {
    /// Resolves ahead of the waiters of the same sync that did not ask for it. The server asks
    /// it for receives: a consumer answered first after a sync sends its next requests first,
    /// so the consumer of a pipelined flow is less often a sync behind its producer (a backlog
    /// that forms does not drain by itself; docs/performance.md).
    pub fn woken_first(mut self) -> Durability {
        self.first = true;
        self
    }
}

impl std::fmt::Debug for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durability")
            .field("lsn", &self.lsn)
            .finish()
    }
}

impl Future for Durability {
    type Output = Result<(), WalError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(r) = self.shared.durable_state(self.lsn) {
            return Poll::Ready(r);
        }
        {
            let mut w = self
                .shared
                .wakers
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            w.retain(|a| !a.waker.will_wake(cx.waker()));
            w.push(AsyncWaiter {
                lsn: self.lsn,
                first: self.first,
                waker: cx.waker().clone(),
            });
        }
        // The writer may have synced (and looked at the wakers) between the first look and the
        // registration: look again, now that a later sync is sure to see this waker.
        match self.shared.durable_state(self.lsn) {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }
}

pub(super) fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The writer thread's state.
pub(super) struct Writer {
    pub(super) disk: Arc<dyn Disk>,
    pub(super) dir: PathBuf,
    pub(super) epoch: u64,
    pub(super) epoch_check: EpochCheck,
    pub(super) lease: Option<LeaseCheck>,
    pub(super) segment_size: u64,
    pub(super) tail: Tail,
    pub(super) shared: Arc<Shared>,
    /// The next segment's file, prepared on a thread of its own once the tail is half full
    /// ([`Writer::prepare_spare`]): zero-filling 64 MiB on the writer's thread stalled every
    /// commit for tens of milliseconds at each roll.
    pub(super) spare: Option<std::thread::JoinHandle<io::Result<Box<dyn DiskFile>>>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        // A spare being filled is finished before the log is gone, so a reopen never meets a
        // file still being written.
        if let Some(spare) = self.spare.take() {
            let _ = spare.join();
        }
    }
}

impl Writer {
    pub(super) fn run(mut self) {
        let mut batch = Vec::new();
        loop {
            let (upto, since) = {
                let mut state = lock(&self.shared.state);
                while state.buffer.is_empty() && !state.shutdown {
                    state.writer_idle = true;
                    state = self
                        .shared
                        .work
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                    state.writer_idle = false;
                }
                if state.buffer.is_empty() {
                    return; // shut down with nothing left to write
                }
                std::mem::swap(&mut batch, &mut state.buffer);
                (state.buffered_to, state.buffered_since.take())
            };
            let began = std::time::Instant::now();
            let result = self.write_batch(&batch);
            let micros = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
            batch.clear();
            let mut state = lock(&self.shared.state);
            let failed = match result {
                Ok(records) => {
                    let waited = since.map_or(micros, |t| {
                        u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX)
                    });
                    state.stats.batch(records, micros, waited);
                    self.shared.durable_to.store(upto, Ordering::Release);
                    false
                }
                Err(failure) => {
                    tracing::error!(?failure, "write-ahead log failed; no further commits");
                    state.failed = Some(failure);
                    self.shared.failed.store(true, Ordering::Release);
                    true
                }
            };
            drop(state);
            drop(
                self.shared
                    .waiting
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            );
            self.shared.durable.notify_all();
            self.shared.wake_async(failed);
            if failed {
                return;
            }
        }
    }

    /// Writes and syncs one batch; returns how many records it held.
    fn write_batch(&mut self, batch: &[u8]) -> Result<u64, Failure> {
        self.check_lease()?;
        let theirs = (self.epoch_check)().map_err(|e| Failure::Other(e.to_string()))?;
        if theirs != self.epoch {
            return Err(Failure::Fenced {
                ours: self.epoch,
                theirs,
            });
        }
        if self.tail.offset + batch.len() as u64 > self.segment_size
            && self.tail.offset > HEADER_LEN
        {
            self.roll(first_lsn_of(batch))?;
        }
        self.tail.file.write_at(batch, self.tail.offset)?;
        self.tail.file.sync_data()?;
        // Durable, but acknowledged only if the lease still holds now: a challenger waits the
        // lease out before it reads the log, so what we acknowledge was synced before it read.
        self.check_lease()?;
        // And only if nobody raised the epoch meanwhile: a challenger raises it before it copies
        // (seals) the log, so an epoch still ours after the sync means the copy comes after the
        // batch and holds it. Without a lease (Pacemaker without STONITH) this alone closes the
        // window of a batch checked before the raise and written after the copy.
        let theirs = (self.epoch_check)().map_err(|e| Failure::Other(e.to_string()))?;
        if theirs != self.epoch {
            return Err(Failure::Fenced {
                ours: self.epoch,
                theirs,
            });
        }
        let at = self.tail.offset;
        self.tail.offset += batch.len() as u64;
        self.prepare_spare();
        if self.tail.marked.is_none_or(|m| at >= m + MARK_EVERY) {
            self.tail.marked = Some(at);
            lock(&self.shared.state).marks.push(Mark {
                lsn: first_lsn_of(batch),
                seq: self.tail.seq,
                offset: at,
            });
        }
        Ok(count_records(batch))
    }

    fn check_lease(&self) -> Result<(), Failure> {
        match &self.lease {
            Some(lease) if !(lease.0)() => Err(Failure::LeaseLost),
            _ => Ok(()),
        }
    }
}
