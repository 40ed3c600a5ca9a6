//! Runs of pipelined sends or receives on one queue, run as one engine step each, and the answers
//! they give held until the step's log record is durable.
//!
//! **Invariant:** a held answer goes out only once `finish` has published its step: nothing is
//! seen before its record is durable. Receives run in batches without a transaction, or in
//! single-message transactions only on a local connection, so the remote-receive rule has
//! nothing to refuse here.

use std::collections::VecDeque;
use std::time::Duration;

use mqcore::step::deferred::{finish_all, Collecting};
use mqcore::{Error, Message, Queue, Tx, INFINITE};

use crate::auth::Right;
use crate::proto::{timeout_from_wire, Request, Response, Select, TxRef};
use crate::steps::UntilDurable;

use super::dispatch::Step;
use super::session::{shutting_down, wait_head, Session};
use super::stopped_signal;

/// Answers held until the log records of the steps that gave them are durable.
pub(super) struct Held {
    logged: Vec<mqcore::step::deferred::Deferred>,
    replies: Vec<(u64, Response)>,
    /// The replies hand messages out: their wait goes first (`UntilDurable::push_first`).
    receives: bool,
}

/// A connection's held answers, oldest first (`crate::steps::UntilDurable`).
#[derive(Default)]
pub(super) struct HeldAnswers(UntilDurable<Vec<(u64, Response)>>);

impl HeldAnswers {
    pub(super) fn push(&mut self, h: Held) {
        if h.receives {
            self.0.push_first(h.logged, h.replies);
        } else {
            self.0.push(h.logged, h.replies);
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Waits until the oldest held batch can be answered, then answers it and every later one
    /// that can be too: the replies, or the log's error for every one. Pending forever while
    /// none is held.
    pub(super) async fn next(&mut self, out: &mut Vec<(u64, Response)>) {
        for (replies, done) in self.0.next().await {
            match done {
                Ok(()) => out.extend(replies),
                Err(e) => out.extend(replies.into_iter().map(|(id, _)| (id, Response::error(&e)))),
            }
        }
    }
}

impl Session {
    /// Runs requests in order. Consecutive sends to one queue under the same single-message or
    /// no transaction, and consecutive non-waiting receives from one queue, run as one engine
    /// step each, so a pipelined producer or consumer costs one log record and one disk sync per
    /// batch instead of one per message. Those steps do not wait for their records: their
    /// answers come back held until the records are durable.
    pub(super) fn steps(&mut self, requests: Vec<(u64, Request)>) -> (Vec<(u64, Step)>, Vec<Held>) {
        let mut out = Vec::with_capacity(requests.len());
        let mut held = Vec::new();
        let mut it = requests.into_iter().peekable();
        while let Some((id, req)) = it.next() {
            match req {
                Request::Send {
                    queue,
                    msg,
                    tx: tx @ (TxRef::None | TxRef::Single),
                } => {
                    let mut ids = vec![id];
                    let mut msgs = vec![*msg];
                    while let Some((
                        _,
                        Request::Send {
                            queue: q2, tx: t2, ..
                        },
                    )) = it.peek()
                    {
                        if *q2 != queue || *t2 != tx {
                            break;
                        }
                        let Some((id2, Request::Send { msg, .. })) = it.next() else {
                            unreachable!("peeked a send")
                        };
                        ids.push(id2);
                        msgs.push(*msg);
                    }
                    let (results, logged) =
                        mqcore::step::deferred::collect(|| self.send_batch(&queue, msgs, tx));
                    let replies = ids.into_iter().zip(results.into_iter().map(|r| match r {
                        Ok(mid) => Response::Sent(mid),
                        Err(e) => Response::error(&e),
                    }));
                    if logged.is_empty() {
                        out.extend(replies.map(|(id, r)| (id, Step::Reply(r))));
                    } else {
                        held.push(Held {
                            logged,
                            replies: replies.collect(),
                            receives: false,
                        });
                    }
                }
                Request::Receive {
                    queue,
                    select: Select::Head,
                    timeout_ms,
                    tx: tx @ (TxRef::None | TxRef::Single),
                } if tx == TxRef::None || self.local => {
                    let mut reqs = vec![(id, timeout_ms)];
                    while let Some((
                        _,
                        Request::Receive {
                            queue: q2,
                            select: Select::Head,
                            tx: t2,
                            ..
                        },
                    )) = it.peek()
                    {
                        if *q2 != queue || *t2 != tx {
                            break;
                        }
                        let Some((id2, Request::Receive { timeout_ms, .. })) = it.next() else {
                            unreachable!("peeked a receive")
                        };
                        reqs.push((id2, timeout_ms));
                    }
                    let (steps, logged) =
                        mqcore::step::deferred::collect(|| self.receive_batch(&queue, reqs, tx));
                    if logged.is_empty() {
                        out.extend(steps);
                        continue;
                    }
                    let mut replies = Vec::new();
                    for (id, step) in steps {
                        match step {
                            Step::Reply(r) => replies.push((id, r)),
                            waiting => out.push((id, waiting)),
                        }
                    }
                    held.push(Held {
                        logged,
                        replies,
                        receives: true,
                    });
                }
                Request::Transfer {
                    source,
                    sequence,
                    queue,
                    items,
                } => {
                    let (result, logged) = mqcore::step::deferred::collect(|| {
                        self.accept_transfer(source, &sequence, &queue, items)
                    });
                    let reply = match result {
                        Ok(r) => Response::Transferred(r),
                        Err(e) => Response::error(&e),
                    };
                    if logged.is_empty() {
                        out.push((id, Step::Reply(reply)));
                    } else {
                        held.push(Held {
                            logged,
                            replies: vec![(id, reply)],
                            receives: false,
                        });
                    }
                }
                other => out.push((id, self.step(other))),
            }
        }
        (out, held)
    }

    fn send_batch(
        &mut self,
        queue: &str,
        msgs: Vec<Message>,
        tx: TxRef,
    ) -> Vec<Result<mqcore::MessageId, Error>> {
        let n = msgs.len();
        let q = match self.open_to_send(queue) {
            Ok(q) => q,
            Err(e) => return vec![Err(e); n],
        };
        let tx = if tx == TxRef::Single {
            Tx::Single
        } else {
            Tx::None
        };
        q.send_batch(msgs, tx)
    }

    /// Receives for `reqs` in one step: without a transaction, or each message in a
    /// single-message transaction of its own (a local connection's); a request that finds the
    /// queue empty waits as a single receive would.
    fn receive_batch(&mut self, queue: &str, reqs: Vec<(u64, u64)>, tx: TxRef) -> Vec<(u64, Step)> {
        let q = match self.open(Some(Right::Receive), queue) {
            Ok(q) => q,
            Err(e) => {
                return reqs
                    .into_iter()
                    .map(|(id, _)| (id, Step::Reply(Response::error(&e))))
                    .collect()
            }
        };
        let single = tx == TxRef::Single;
        let got = match q.receive_batch(reqs.len(), if single { Tx::Single } else { Tx::None }) {
            Ok(got) => got,
            Err(e) => {
                return reqs
                    .into_iter()
                    .map(|(id, _)| (id, Step::Reply(Response::error(&e))))
                    .collect()
            }
        };
        let mut out = Vec::with_capacity(reqs.len());
        let mut got = got.into_iter();
        // Requests the queue had no message for, in order: each run of them with one timeout
        // waits as one waiter.
        let mut misses: Vec<(u64, u64)> = Vec::new();
        for (id, timeout_ms) in reqs {
            match got.next() {
                Some(m) => out.push((id, Step::Reply(Response::Message(Box::new(m))))),
                None => misses.push((id, timeout_ms)),
            }
        }
        for run in misses.chunk_by(|a, b| a.1 == b.1) {
            let (id, timeout_ms) = run[0];
            let step = if run.len() == 1 {
                wait_head(q.clone(), timeout_ms, None, true, self.stop.clone())
            } else {
                let ids = run.iter().map(|&(id, _)| id).collect();
                self.wait_run(q.clone(), ids, timeout_ms, single)
            };
            out.push((id, step));
        }
        out
    }

    /// Pipelined receives of this connection that found `q` empty, waiting as one: when a
    /// message comes, the run takes it and as many more as the queue holds (one per request) in
    /// one step, so one log record and one answer write serve them all; the rest wait on until
    /// their common timeout. Waiting one task per request instead made every message a record, a
    /// sync and a write of its own whenever the consumer had caught up.
    ///
    /// Shutdown ends the wait (a message already handed to it goes back), but never a step that
    /// has taken messages: their removal is logged, so their answers go out.
    fn wait_run(&self, q: Queue, ids: Vec<u64>, timeout_ms: u64, single: bool) -> Step {
        let done = self.done.clone();
        let mut stop = self.stop.clone();
        let clock = self.shared.qm.clock().clone();
        Step::Answers(Box::pin(async move {
            let timeout = timeout_from_wire(timeout_ms);
            let until = (timeout != INFINITE).then(|| {
                let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
                clock.now().0.saturating_add(ms)
            });
            let mut left: VecDeque<u64> = ids.into();
            while !left.is_empty() {
                let wait = match until {
                    None => INFINITE,
                    Some(t) => Duration::from_millis(t.saturating_sub(clock.now().0)),
                };
                let (q, more) = (&q, left.len() - 1);
                let take = Box::pin(async move {
                    let mut got = vec![q.receive_async(wait, Tx::None).await?];
                    // In the same step as the first, so in its log record. Failing here only
                    // leaves the rest waiting.
                    let tx = if single { Tx::Single } else { Tx::None };
                    if let Ok(rest) = q.receive_batch(more, tx) {
                        got.extend(rest);
                    }
                    Ok::<_, Error>(got)
                });
                let (r, logged) = tokio::select! {
                    got = Collecting::new(take) => got,
                    _ = stopped_signal(&mut stop) => {
                        for id in left {
                            let _ = done.send((id, Response::error(&shutting_down())));
                        }
                        return;
                    }
                };
                match finish_all(logged).await.and(r) {
                    Ok(got) => {
                        for m in got {
                            let id = left.pop_front().expect("at most one message per request");
                            let _ = done.send((id, Response::Message(Box::new(m))));
                        }
                    }
                    Err(e) => {
                        for id in left.drain(..) {
                            let _ = done.send((id, Response::error(&e)));
                        }
                    }
                }
            }
        }))
    }
}
