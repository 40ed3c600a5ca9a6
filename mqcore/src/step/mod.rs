//! A step: the one way an operation of the queue manager changes anything. It is staged, then
//! logged, then published.
//!
//! A send, a receive, a commit, an expiry or a deletion builds a `Step` (`changes`): messages
//! to put (lookup ids reserved up front, so the record can name them), removals, moves, held
//! messages to claim. `Inner::apply` claims the held messages, writes the durable part as one
//! log record and waits for it, then publishes. In memory the same path skips the log, so there is
//! one code path for both modes. An async host may take the wait over (`deferred`).
//!
//! **Invariant:** nothing becomes visible before the record that holds it is durable, and a
//! message's removal is logged only after it left its store; so a removal is always logged after
//! the put (or compaction rewrite) it removes.
//!
//! The verbs: `Inner::run` builds a step with a closure and applies it; `Inner::apply` applies
//! one already built; `Inner::run_quietly` is `run` where nobody can take the error; a prepared
//! transaction's outcome goes through `Inner::apply_outcome`. Publishing (the second half of
//! `apply`) is private to this module and to `deferred`.

pub(crate) mod changes;
pub mod deferred;

use std::sync::Arc;

pub(crate) use changes::{logged_size, Put, Step, LOGGED_OVERHEAD};

use crate::error::Result;
use crate::ids::Lsn;
use crate::manager::Inner;
use crate::persistence::record;
use crate::queue::QueueInner;

impl Inner {
    /// A new, empty step.
    pub(crate) fn step(&self) -> Step {
        Step::new(self.durable.is_some())
    }

    /// Builds a step with `f` and applies it; returns the LSN of its record (0 if it logged
    /// nothing).
    pub(crate) fn run(self: &Arc<Self>, f: impl FnOnce(&mut Step)) -> Result<Lsn> {
        let mut step = self.step();
        f(&mut step);
        if step.is_empty() {
            // Most express receives change nothing durable: not even moving the step on.
            return Ok(0);
        }
        self.apply(step)
    }

    /// [`Inner::run`] where nobody can take the error (timers, follow-ups of a step already
    /// done): a storage failure is logged; the records it did not write come back on restart.
    pub(crate) fn run_quietly(self: &Arc<Self>, f: impl FnOnce(&mut Step)) {
        if let Err(e) = self.run(f) {
            tracing::error!(error = %e, "a queue manager step could not be logged");
        }
    }

    /// Applies a step: claims held messages from their stores, logs what is durable in one
    /// record (and waits for it), then publishes. A storage failure is returned before anything
    /// is published; claimed messages then stay on disk and come back on restart. Returns the
    /// LSN of the step's record (0 if it logged nothing).
    pub(crate) fn apply(self: &Arc<Self>, step: Step) -> Result<Lsn> {
        self.apply_with(step, None)
    }

    /// [`Inner::apply`] for a prepared transaction's step: its operations are logged already
    /// (the PREPARE record at `prepared`), so the record written is its outcome.
    pub(crate) fn apply_outcome(
        self: &Arc<Self>,
        step: Step,
        xid: &str,
        prepared: Lsn,
    ) -> Result<Lsn> {
        self.apply_with(step, Some((xid, prepared)))
    }

    fn apply_with(self: &Arc<Self>, mut eff: Step, resolve: Option<(&str, Lsn)>) -> Result<Lsn> {
        if eff.is_empty() && resolve.is_none() {
            return Ok(0);
        }
        let mut tidy = Vec::new();
        for h in std::mem::take(&mut eff.claims) {
            let Some(msg) = h.store.lock().remove_locked(h.lookup) else {
                continue;
            };
            if let Some(dest) = &h.move_to {
                eff.insert_moved(dest, msg);
            }
            if let Some(q) = h.queue {
                tidy.push(q);
            }
        }
        let lsn = match (&self.durable, resolve) {
            (Some(d), Some((xid, prepared))) => {
                let outcome = record::Outcome {
                    xid: xid.to_owned(),
                    commit: true,
                };
                d.log(record::RESOLVE, &record::encode(&outcome), 0, 0)?;
                d.release(&[(prepared, 0)]);
                prepared
            }
            (Some(d), None) if !eff.ops.is_empty() => {
                let lsn = d.submit(record::COMMIT, &eff.ops, eff.keeps, eff.kept_bytes)?;
                // A host collecting steps (`crate::step::deferred`) waits for the record itself and
                // publishes after; everyone else waits here.
                if let Err(rest) = crate::step::deferred::defer(
                    self,
                    lsn,
                    crate::step::deferred::Rest { eff, tidy },
                ) {
                    let crate::step::deferred::Rest { eff, tidy } = *rest;
                    d.wal.wait(lsn).map_err(crate::persistence::storage_error)?;
                    self.publish(eff, tidy, lsn);
                }
                return Ok(lsn);
            }
            _ => 0,
        };
        self.publish(eff, tidy, lsn);
        Ok(lsn)
    }

    /// The second half of [`Inner::apply`], once the step's record (at `lsn`, 0 if none) is
    /// durable: releases what it ended and makes its puts visible.
    pub(super) fn publish(self: &Arc<Self>, eff: Step, tidy: Vec<Arc<QueueInner>>, lsn: Lsn) {
        if let Some(d) = &self.durable {
            d.release(&eff.released);
        }
        for put in eff.puts {
            let Put {
                store,
                mut msg,
                logged,
                refused,
            } = put;
            if logged {
                msg.lsn = lsn;
            }
            let expires = msg.time_to_be_received.is_some();
            let result = store.lock().insert(msg, logged);
            match result {
                Ok(()) if expires => self.arm_expiry(&store),
                Ok(()) => {}
                Err(msg) => {
                    // Its queue is being deleted; until that deletion is durable, its put is
                    // undone explicitly.
                    self.run_quietly(|e| {
                        e.removed(&store, &msg);
                        self.fail_message(*msg, refused, e);
                    });
                }
            }
        }
        // After the inserts: the transfer task may now send past these messages' numbers. Each
        // outgoing queue is told once for the step, and its expiry timer set once.
        let mut touched: Vec<Arc<crate::queue::outgoing::Outgoing>> = Vec::new();
        for p in eff.pending {
            let q = p.release();
            if !touched.iter().any(|t| Arc::ptr_eq(t, &q)) {
                touched.push(q);
            }
        }
        for q in touched {
            q.notify();
            if !q.state().deadlines.is_empty() {
                self.arm_outgoing(&q);
            }
        }
        for q in tidy {
            q.tidy_subqueues();
        }
        // After the publish: a committer that happens to run compaction has already made its
        // messages visible.
        if let Some(d) = &self.durable {
            if lsn != 0 && d.compaction_due(lsn) {
                if let Err(e) = self.compact() {
                    tracing::error!(error = %e, "log compaction failed");
                }
            }
        }
    }
}
