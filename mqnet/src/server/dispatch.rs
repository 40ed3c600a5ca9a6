//! One request to one engine call and its answer: what running a request gives ([`Step`]), the
//! request-by-request dispatch, cursor operations, statistics and Triggers administration.
//!
//! **Invariant:** MSMQ's remote-receive rule ([`Session::remote_receive_rule`]) is checked on
//! every receive path that takes a transaction: head, lookup id, message id, correlation id,
//! cursor.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mqcore::triggers::{RuleDef, Trigger, Triggers};
use mqcore::{Error, ErrorCode, Message, Tx};

use crate::auth::{key_of, queue_key, Right};
use crate::proto::{
    timeout_from_wire, CursorAction, Request, Response, Select, Stats, TriggerRequest, TriggerView,
    TxRef,
};

use super::session::{wait_head, OpenCursor, Session};

/// A request that waits, run on a task of its own.
pub(super) type Waiting = Pin<Box<dyn Future<Output = Response> + Send>>;

/// What running a request gives.
pub(super) enum Step {
    /// The answer, now.
    Reply(Response),
    /// An answer that has to wait (async engine call).
    Wait(Waiting),
    /// An answer that has to wait inside a blocking engine call (cursors).
    Block(Box<dyn FnOnce() -> Response + Send>),
    /// Waits that answer for themselves, on the connection's channel of finished waits: a run of
    /// pipelined receives that found the queue empty ([`super::batching`]).
    Answers(Pin<Box<dyn Future<Output = ()> + Send>>),
}

impl Session {
    pub(super) fn step(&mut self, req: Request) -> Step {
        match self.dispatch(req) {
            Ok(step) => step,
            Err(e) => Step::Reply(Response::error(&e)),
        }
    }

    fn dispatch(&mut self, req: Request) -> Result<Step, Error> {
        let qm = self.shared.qm.clone();
        let reply = match req {
            Request::Hello { .. } => {
                return Err(Error::new(
                    ErrorCode::InvalidParameter,
                    "this connection has already shaken hands",
                ))
            }
            Request::Ping => Response::Done,
            Request::Local => {
                self.declare_local()?;
                Response::Done
            }
            Request::Transfer {
                source,
                sequence,
                queue,
                items,
            } => {
                let allowed = self.check(Right::Send, &queue).is_ok();
                Response::Transferred(
                    qm.transfer()
                        .accept(source, &sequence, &queue, allowed, items)?,
                )
            }
            Request::ListOutgoing => {
                self.check_admin()?;
                Response::Outgoing(match &self.shared.config.transfer {
                    Some(t) => t.outgoing(),
                    None => crate::transfer::outgoing_without_service(&qm),
                })
            }
            Request::OutgoingAction { name, action } => {
                self.check_admin()?;
                match &self.shared.config.transfer {
                    Some(t) => t.act(&name, action)?,
                    None => crate::transfer::act(&qm, &name, action)?,
                }
                Response::Done
            }
            Request::CreateQueue { path, props } => {
                self.check(Right::Admin, &path)?;
                let q = qm.create_queue(&path, props)?;
                Response::Queue(Box::new(qm.queue_info(q.name().as_text())?))
            }
            Request::DeleteQueue { name } => {
                self.check(Right::Admin, &name)?;
                qm.delete_queue(&name)?;
                Response::Done
            }
            Request::ListQueues => Response::Queues(
                qm.queues()
                    .into_iter()
                    .filter(|i| {
                        let name = i.path.to_string();
                        self.allowed(None, &key_of(&i.path), &name).is_ok()
                    })
                    .collect(),
            ),
            Request::QueueInfo { name } => {
                self.allowed(None, &queue_key(&name), &name)?;
                Response::Queue(Box::new(qm.queue_info(&name)?))
            }
            Request::SetQueueProps { name, update } => {
                self.check(Right::Admin, &name)?;
                qm.set_queue_props(&name, update)?;
                Response::Done
            }
            Request::Purge { name } => {
                Response::Count(self.open(Some(Right::Admin), &name)?.purge()? as u64)
            }
            Request::Len { name } => Response::Count(self.open(None, &name)?.len()? as u64),
            Request::Send { queue, msg, tx } => {
                let q = self.open_to_send(&queue)?;
                Response::Sent(self.with_tx(tx, |t| q.send(*msg, t))?)
            }
            Request::Receive {
                queue,
                select,
                timeout_ms,
                tx,
            } => {
                let q = self.open(Some(Right::Receive), &queue)?;
                self.remote_receive_rule(tx)?;
                let got = self.with_tx(tx, |t| match select {
                    Select::Head => q.receive(Duration::ZERO, t),
                    Select::Lookup(a) => q.receive_by_lookup_id(a, t),
                    Select::Id(id) => q.receive_by_id(&id, t),
                    Select::Correlation(id) => q.receive_by_correlation_id(&id, t),
                });
                match got {
                    Err(e) if e.code() == ErrorCode::IoTimeout && timeout_ms > 0 => {
                        let t = match tx {
                            TxRef::In(id) => Some(self.tx(id)?),
                            _ => None,
                        };
                        return Ok(wait_head(q, timeout_ms, t, true, self.stop.clone()));
                    }
                    got => Response::Message(Box::new(got?)),
                }
            }
            Request::Peek {
                queue,
                select,
                timeout_ms,
            } => {
                let q = self.open(Some(Right::Peek), &queue)?;
                let got = match select {
                    Select::Head => q.peek(Duration::ZERO),
                    Select::Lookup(a) => q.peek_by_lookup_id(a),
                    Select::Id(id) => q.peek_by_id(&id),
                    Select::Correlation(id) => q.peek_by_correlation_id(&id),
                };
                match got {
                    Err(e) if e.code() == ErrorCode::IoTimeout && timeout_ms > 0 => {
                        return Ok(wait_head(q, timeout_ms, None, false, self.stop.clone()));
                    }
                    got => Response::Message(Box::new(got?)),
                }
            }
            Request::OpenCursor { queue } => {
                let cursor = self.open(Some(Right::Peek), &queue)?.cursor();
                let h = self.new_handle();
                self.cursors.insert(
                    h,
                    OpenCursor {
                        cursor: Arc::new(Mutex::new(cursor)),
                        key: queue_key(&queue),
                        name: queue,
                    },
                );
                Response::Cursor(h)
            }
            Request::CursorOp {
                cursor,
                action,
                timeout_ms,
                tx,
            } => return self.cursor_op(cursor, action, timeout_ms, tx),
            Request::CloseCursor { cursor } => {
                self.cursors
                    .remove(&cursor)
                    .ok_or_else(|| no_cursor(cursor))?;
                Response::Done
            }
            Request::Move {
                queue,
                lookup,
                to,
                tx,
            } => {
                let from = self.open(Some(Right::Receive), &queue)?;
                let dest = self.open(Some(Right::Send), &to)?;
                self.with_tx(tx, |t| from.move_message(lookup, &dest, t))?;
                Response::Done
            }
            Request::Reject { queue, lookup } => {
                self.open(Some(Right::Receive), &queue)?.reject(lookup)?;
                Response::Done
            }
            Request::Begin => {
                let h = self.new_handle();
                self.txs.insert(h, Arc::new(qm.begin()));
                Response::Tx(h)
            }
            Request::BeginExternal { xid } => {
                let t = qm.begin_external(xid)?;
                let h = self.new_handle();
                self.txs.insert(h, Arc::new(t));
                Response::Tx(h)
            }
            Request::Prepare { tx } => {
                self.tx(tx)?.prepare()?;
                Response::Done
            }
            Request::Commit { tx } => {
                self.take_tx(tx)?.commit()?;
                Response::Done
            }
            Request::Abort { tx } => {
                self.take_tx(tx)?.abort();
                Response::Done
            }
            Request::InDoubt => {
                self.check_admin()?;
                Response::Xids(qm.in_doubt())
            }
            Request::ResolveInDoubt { xid, commit } => {
                self.check_admin()?;
                qm.resolve_in_doubt(&xid, commit)?;
                Response::Done
            }
            Request::Stats => Response::Stats(self.stats()),
            Request::Triggers(req) => {
                self.check_admin()?;
                let triggers = self.shared.config.triggers.get().ok_or_else(|| {
                    Error::new(
                        ErrorCode::ServiceNotAvailable,
                        "this server runs no Triggers service",
                    )
                })?;
                // Definition changes flush the catalog and may wait for a monitor to stop.
                return Ok(Step::Block(Box::new(move || {
                    triggers_admin(&triggers, req).unwrap_or_else(|e| Response::error(&e))
                })));
            }
        };
        Ok(Step::Reply(reply))
    }

    fn cursor_op(
        &mut self,
        id: u64,
        action: CursorAction,
        timeout_ms: u64,
        tx: TxRef,
    ) -> Result<Step, Error> {
        let c = self.cursors.get(&id).ok_or_else(|| no_cursor(id))?;
        let (cursor, key, name) = (c.cursor.clone(), c.key.clone(), c.name.clone());
        if action == CursorAction::ReceiveCurrent {
            self.principal.check(Right::Receive, &key, &name)?;
            self.remote_receive_rule(tx)?;
        }
        let t = match tx {
            TxRef::In(h) => Some(self.tx(h)?),
            _ => None,
        };
        let run = move |timeout: Duration| -> Result<Message, Error> {
            let mut c = cursor.lock().unwrap_or_else(PoisonError::into_inner);
            match action {
                CursorAction::PeekCurrent => c.peek_current(timeout),
                CursorAction::PeekNext => c.peek_next(timeout),
                CursorAction::ReceiveCurrent => {
                    let tx = match (&t, tx) {
                        (Some(t), _) => Tx::In(t),
                        (None, TxRef::Single) => Tx::Single,
                        _ => Tx::None,
                    };
                    c.receive_current(timeout, tx)
                }
            }
        };
        let reply = |r: Result<Message, Error>| match r {
            Ok(m) => Response::Message(Box::new(m)),
            Err(e) => Response::error(&e),
        };
        match run(Duration::ZERO) {
            Err(e) if e.code() == ErrorCode::IoTimeout && timeout_ms > 0 => {
                let timeout = timeout_from_wire(timeout_ms);
                Ok(Step::Block(Box::new(move || reply(run(timeout)))))
            }
            r => Ok(Step::Reply(reply(r))),
        }
    }

    /// Takes a transferred batch. A destination this connection may not send to refuses every
    /// message with NACK_ACCESS_DENIED (the numbers are consumed: later ones go on).
    pub(super) fn accept_transfer(
        &self,
        source: uuid::Uuid,
        sequence: &str,
        queue: &str,
        items: Vec<mqcore::transfer::Inbound>,
    ) -> Result<mqcore::transfer::Reply, Error> {
        let allowed = self.check(Right::Send, queue).is_ok();
        self.shared
            .qm
            .transfer()
            .accept(source, sequence, queue, allowed, items)
    }

    fn stats(&self) -> Stats {
        let qm = &self.shared.qm;
        let queues = qm.queues();
        Stats {
            name: qm.name().to_owned(),
            guid: qm.guid().to_string(),
            compat: qm.compat(),
            durable: qm.is_durable(),
            queues: queues.len(),
            messages: queues.iter().map(|q| q.message_count as u64).sum(),
            bytes: queues.iter().map(|q| q.bytes).sum(),
            connections: self.shared.connections.load(Ordering::Relaxed),
            connections_total: self.shared.connections_total.load(Ordering::Relaxed),
            requests_total: self.shared.requests_total.load(Ordering::Relaxed),
            uptime_secs: self.shared.started.elapsed().as_secs(),
        }
    }
}

/// Runs one Triggers administration request.
fn triggers_admin(t: &Triggers, req: TriggerRequest) -> Result<Response, Error> {
    let view = |trigger: Trigger| -> Result<TriggerView, Error> {
        let rule_names = trigger
            .rules
            .iter()
            .map(|id| t.rule(&id.to_string()).map(|r| r.def.name))
            .collect::<Result<_, _>>()?;
        let stats = t.stats(&trigger.id.to_string())?;
        Ok(TriggerView {
            trigger,
            rule_names,
            stats,
        })
    };
    let one = |trigger: Trigger| Ok(Response::Triggers(vec![view(trigger)?]));
    match req {
        TriggerRequest::AddRule {
            name,
            description,
            condition,
            action,
        } => {
            let def = RuleDef::parse(&name, &description, &condition, &action)?;
            Ok(Response::Rules(vec![t.add_rule(def)?]))
        }
        TriggerRequest::ListRules => Ok(Response::Rules(t.rules())),
        TriggerRequest::ShowRule { name } => Ok(Response::Rules(vec![t.rule(&name)?])),
        TriggerRequest::DeleteRule { name } => t.delete_rule(&name).map(|()| Response::Done),
        TriggerRequest::AddTrigger(def) => one(t.add_trigger(def)?),
        TriggerRequest::Attach { trigger, rule } => one(t.attach_rule(&trigger, &rule)?),
        TriggerRequest::Detach { trigger, rule } => one(t.detach_rule(&trigger, &rule)?),
        TriggerRequest::ListTriggers => Ok(Response::Triggers(
            t.triggers()
                .into_iter()
                .map(view)
                .collect::<Result<_, _>>()?,
        )),
        TriggerRequest::ShowTrigger { name } => one(t.trigger(&name)?),
        TriggerRequest::DeleteTrigger { name } => t.delete_trigger(&name).map(|()| Response::Done),
        TriggerRequest::SetEnabled { name, enabled } => one(t.set_enabled(&name, enabled)?),
    }
}

fn no_cursor(id: u64) -> Error {
    Error::new(
        ErrorCode::InvalidHandle,
        format!("this connection has no cursor {id}"),
    )
}
