//! Lets an async host run engine steps without a thread waiting for their log records: the step
//! is logged and handed back, and the host awaits its durability and then publishes it.
//!
//! A durable commit writes its record, waits for the log writer's `fdatasync`, then makes its
//! messages visible. On a tokio server that wait costs a thread hand-off per batch, and the
//! server's connection cannot read its next requests meanwhile. Inside [`collect`], a step that
//! logs stops after handing its record to the writer and comes back as a [`Deferred`]: the host
//! awaits [`Deferred::durable`] on its own executor, then calls [`Deferred::finish`], which
//! publishes exactly what the synchronous path would have published after its wait.
//!
//! The invariant is the engine's own: nothing a step puts becomes visible before its record is
//! durable, so a host must not answer a request whose step it holds before `finish` returned
//! `Ok`. A `Deferred` that is dropped unfinished finishes on the spot (waiting if it must), so a
//! step is never left half done.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::error::Result;
use crate::manager::Inner;
use crate::persistence::storage_error;
use crate::queue::QueueInner;
use crate::step::Step;
/// The future [`Deferred::durable`] returns: ready once the step's record is durable.
pub use crate::storage::wal::Durability;
use crate::storage::wal::Lsn;

thread_local! {
    /// Steps deferred by the [`collect`] running on this thread, if one is.
    static SINK: RefCell<Option<Vec<Deferred>>> = const { RefCell::new(None) };
}

/// What a logged step still has to do once its record is durable.
pub(crate) struct Rest {
    pub(crate) eff: Step,
    pub(crate) tidy: Vec<Arc<QueueInner>>,
}

/// A step whose record was handed to the log writer and whose effects wait for it.
pub struct Deferred {
    qm: Arc<Inner>,
    lsn: Lsn,
    rest: Option<Rest>,
}

impl std::fmt::Debug for Deferred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deferred").field("lsn", &self.lsn).finish()
    }
}

impl Deferred {
    /// The LSN of the step's record. Records are durable in LSN order, so waiting for the
    /// highest of several steps waits for them all.
    pub fn lsn(&self) -> u64 {
        self.lsn
    }

    /// Resolves once the step's record is durable (or the log failed; [`Deferred::finish`] then
    /// says so).
    pub fn durable(&self) -> Durability {
        self.log().durable(self.lsn)
    }

    /// Whether [`Deferred::finish`] would not wait: the record is durable, or the log failed.
    pub fn is_durable(&self) -> bool {
        self.log().settled(self.lsn)
    }

    fn log(&self) -> &crate::storage::wal::Wal {
        &self
            .qm
            .durable
            .as_ref()
            .expect("only a durable queue manager defers steps")
            .wal
    }

    /// Publishes the step: at once if its record is durable, after a wait if not. Fails with
    /// the log's error, publishing nothing, if the record could not be written; the step's
    /// requests have then failed, as their synchronous versions would have.
    pub fn finish(mut self) -> Result<()> {
        self.finish_in_place()
    }

    fn finish_in_place(&mut self) -> Result<()> {
        let Some(Rest { eff, tidy }) = self.rest.take() else {
            return Ok(());
        };
        self.log().wait(self.lsn).map_err(storage_error)?;
        // Steps that publishing takes (an undone put of a queue being deleted) wait for
        // themselves, even inside a `collect`.
        let outer = SINK.with(|s| s.borrow_mut().take());
        self.qm.publish(eff, tidy, self.lsn);
        SINK.with(|s| *s.borrow_mut() = outer);
        Ok(())
    }
}

impl Drop for Deferred {
    fn drop(&mut self) {
        if let Err(e) = self.finish_in_place() {
            tracing::error!(error = %e, lsn = self.lsn, "a deferred step could not be logged");
        }
    }
}

/// Runs `f`, deferring every step it logs on this thread, and returns them with `f`'s result.
/// Whatever `f`'s calls return (message ids, received messages) must not reach anyone before the
/// steps are finished.
pub fn collect<R>(f: impl FnOnce() -> R) -> (R, Vec<Deferred>) {
    /// Puts the outer collection back, on unwinding too.
    struct Restore(Option<Option<Vec<Deferred>>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(outer) = self.0.take() {
                let ours = SINK.with(|s| std::mem::replace(&mut *s.borrow_mut(), outer));
                // Dropped outside the borrow: dropping finishes them, which may log.
                drop(ours);
            }
        }
    }
    let outer = SINK.with(|s| s.borrow_mut().replace(Vec::new()));
    let mut restore = Restore(Some(outer));
    let r = f();
    let outer = restore.0.take().expect("still held");
    let ours = SINK.with(|s| std::mem::replace(&mut *s.borrow_mut(), outer));
    (r, ours.unwrap_or_default())
}

/// Called by a step that logged: hands it to the running [`collect`], or gives it back to be
/// waited for and published on the spot.
pub(crate) fn defer(qm: &Arc<Inner>, lsn: Lsn, rest: Rest) -> std::result::Result<(), Box<Rest>> {
    SINK.with(|s| match s.borrow_mut().as_mut() {
        Some(steps) => {
            steps.push(Deferred {
                qm: qm.clone(),
                lsn,
                rest: Some(rest),
            });
            Ok(())
        }
        None => Err(Box::new(rest)),
    })
}

/// A future polled inside [`collect`] every time, gathering the steps it logs: an async receive
/// that finishes with a log record hands it back instead of blocking its executor's thread.
#[derive(Debug)]
#[must_use = "a future does nothing unless polled"]
pub struct Collecting<F> {
    inner: F,
    steps: Vec<Deferred>,
}

impl<F> Collecting<F> {
    /// Wraps `inner`.
    pub fn new(inner: F) -> Collecting<F> {
        Collecting {
            inner,
            steps: Vec::new(),
        }
    }
}

impl<F: Future + Unpin> Future for Collecting<F> {
    type Output = (F::Output, Vec<Deferred>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let (r, steps) = collect(|| Pin::new(&mut this.inner).poll(cx));
        this.steps.extend(steps);
        match r {
            Poll::Ready(v) => Poll::Ready((v, std::mem::take(&mut this.steps))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Waits for every step in `steps` to be durable, without blocking a thread, and finishes them
/// all; the first failure is returned once all are finished.
pub async fn finish_all(steps: Vec<Deferred>) -> Result<()> {
    if let Some(last) = steps.iter().max_by_key(|d| d.lsn()) {
        // A failure shows in `finish` below.
        let _ = last.durable().await;
    }
    finish_each(steps)
}

/// Finishes every step in `steps` in order, on the spot (waiting for any whose record is not
/// durable yet); the first failure is returned once all are finished.
pub fn finish_each(steps: Vec<Deferred>) -> Result<()> {
    let mut first = Ok(());
    for d in steps {
        if let Err(e) = d.finish() {
            if first.is_ok() {
                first = Err(e);
            }
        }
    }
    first
}
