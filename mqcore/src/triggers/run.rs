//! The running side of the Triggers service: one monitor thread per enabled trigger, which walks
//! its queue and evaluates conditions, and a bounded pool of worker threads that run actions and
//! then peek past, remove, commit or abort as the trigger's processing type says.
//!
//! Locks: `defs` (held by every definition change) comes before `monitors`. A monitor thread
//! takes neither: it reads its trigger's [`Plan`] through its own lock, which a definition change
//! swaps, so rule edits apply from the next message without restarting the walk.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread::JoinHandle;

use uuid::Uuid;

use super::exec::{self, Context, Invocation, Runner};
use super::{Defs, Processing, Rule, Trigger, TriggerStats};
use crate::manager::QueueManager;
use crate::message::Message;
use crate::name::{QueueName, QueueRef};
use crate::queue::{Interrupt, LookupAction, Queue};
use crate::tx::Tx;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A trigger and its rules as a monitor uses them.
struct Plan {
    trigger: Trigger,
    rules: Vec<Arc<Rule>>,
}

/// A running monitor.
struct Monitor {
    interrupt: Interrupt,
    plan: Arc<RwLock<Arc<Plan>>>,
    thread: Option<JoinHandle<()>>,
}

/// Counts kept per trigger id, across monitor restarts.
#[derive(Default)]
struct Counters {
    messages: AtomicU64,
    fired: AtomicU64,
    actions_ok: AtomicU64,
    actions_failed: AtomicU64,
    retrieved: AtomicU64,
    aborted: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of threads taking jobs from a bounded queue: a full queue holds up the monitors
/// that feed it, so a slow action slows intake rather than filling memory.
struct Pool {
    sender: Mutex<Option<SyncSender<Job>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Pool {
    fn start(workers: usize, stopping: Arc<AtomicBool>) -> Pool {
        let (tx, rx) = mpsc::sync_channel::<Job>(workers * 4);
        let rx: Arc<Mutex<Receiver<Job>>> = Arc::new(Mutex::new(rx));
        let threads = (0..workers)
            .map(|i| {
                let rx = rx.clone();
                let stopping = stopping.clone();
                std::thread::Builder::new()
                    .name(format!("mqemu-trigger-worker-{i}"))
                    .spawn(move || loop {
                        let job = lock(&rx).recv();
                        match job {
                            // Once stopping, queued jobs are dropped: their messages stay queued.
                            Ok(job) if !stopping.load(Ordering::SeqCst) => job(),
                            Ok(_) => {}
                            Err(_) => return,
                        }
                    })
                    .expect("spawning a trigger worker")
            })
            .collect();
        Pool {
            sender: Mutex::new(Some(tx)),
            threads: Mutex::new(threads),
        }
    }

    /// Queues a job, waiting for room; false once the pool has stopped.
    fn submit(&self, job: Job) -> bool {
        let sender = lock(&self.sender).clone();
        sender.is_some_and(|s| s.send(job).is_ok())
    }

    fn stop(&self) {
        lock(&self.sender).take();
        let threads = std::mem::take(&mut *lock(&self.threads));
        for t in threads {
            let _ = t.join();
        }
    }
}

/// The service's shared state.
pub(crate) struct Service {
    pub(crate) qm: QueueManager,
    pub(crate) defs: Mutex<Defs>,
    pub(crate) runner: Runner,
    monitors: Mutex<HashMap<Uuid, Monitor>>,
    counters: Mutex<HashMap<Uuid, Arc<Counters>>>,
    pool: Pool,
    stopping: Arc<AtomicBool>,
}

impl Service {
    pub(crate) fn start(qm: QueueManager, defs: Defs, runner: Runner, workers: usize) -> Arc<Self> {
        let stopping = Arc::new(AtomicBool::new(false));
        let svc = Arc::new(Service {
            qm,
            defs: Mutex::new(defs),
            runner,
            monitors: Mutex::default(),
            counters: Mutex::default(),
            pool: Pool::start(workers, stopping.clone()),
            stopping,
        });
        {
            let defs = lock(&svc.defs);
            svc.refresh(&defs);
        }
        tracing::info!(event = 2200, "Message Queuing Triggers started");
        svc
    }

    fn counters(&self, id: Uuid) -> Arc<Counters> {
        lock(&self.counters).entry(id).or_default().clone()
    }

    pub(crate) fn stats(&self, id: Uuid) -> TriggerStats {
        let c = self.counters(id);
        let running = lock(&self.monitors)
            .get(&id)
            .is_some_and(|m| m.thread.as_ref().is_some_and(|t| !t.is_finished()));
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TriggerStats {
            running,
            messages: get(&c.messages),
            fired: get(&c.fired),
            actions_ok: get(&c.actions_ok),
            actions_failed: get(&c.actions_failed),
            retrieved: get(&c.retrieved),
            aborted: get(&c.aborted),
        }
    }

    /// Brings the monitors in line with `defs`: starts enabled triggers that have none, stops
    /// those of deleted or disabled ones, and gives every running one its current rules.
    pub(crate) fn refresh(self: &Arc<Self>, defs: &Defs) {
        if self.stopping.load(Ordering::SeqCst) {
            return;
        }
        // A trigger without rules has nothing to evaluate, so it does not walk its queue: its
        // walk starts at the head when its first rule is attached, as when it is enabled.
        let runs =
            |t: &Trigger| t.def.enabled && t.rules.iter().any(|r| defs.rules.contains_key(r));
        let mut monitors = lock(&self.monitors);
        let gone: Vec<Uuid> = monitors
            .keys()
            .filter(|id| !defs.triggers.get(id).is_some_and(runs))
            .copied()
            .collect();
        for id in gone {
            if let Some(m) = monitors.remove(&id) {
                stop_monitor(m);
            }
        }
        for t in defs.triggers.values().filter(|t| runs(t)) {
            let plan = Arc::new(Plan {
                trigger: t.clone(),
                rules: t
                    .rules
                    .iter()
                    .filter_map(|r| defs.rules.get(r).cloned().map(Arc::new))
                    .collect(),
            });
            match monitors.get(&t.id) {
                Some(m) => *m.plan.write().unwrap_or_else(PoisonError::into_inner) = plan,
                None => {
                    let m = self.spawn_monitor(plan);
                    monitors.insert(t.id, m);
                }
            }
        }
    }

    /// Stops one trigger's monitor (the next refresh starts a new one if it is enabled).
    pub(crate) fn stop_monitor(&self, id: Uuid) {
        let m = lock(&self.monitors).remove(&id);
        if let Some(m) = m {
            stop_monitor(m);
        }
    }

    fn spawn_monitor(self: &Arc<Self>, plan: Arc<Plan>) -> Monitor {
        let interrupt = Interrupt::new();
        let plan = Arc::new(RwLock::new(plan));
        let svc = self.clone();
        let (i, p) = (interrupt.clone(), plan.clone());
        let name = format!("mqemu-trigger-{}", lock_plan(&plan).trigger.def.name);
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || svc.monitor(&p, &i))
            .expect("spawning a trigger monitor");
        Monitor {
            interrupt,
            plan,
            thread: Some(thread),
        }
    }

    pub(crate) fn stop(&self) {
        if self.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        let monitors: Vec<Monitor> = lock(&self.monitors).drain().map(|(_, m)| m).collect();
        for m in &monitors {
            m.interrupt.raise();
        }
        for m in monitors {
            stop_monitor(m);
        }
        self.pool.stop();
        tracing::info!(event = 2211, "Message Queuing Triggers stopped");
    }

    /// A monitor's life: open the queue, then evaluate each message the walk finds.
    fn monitor(self: &Arc<Self>, plan: &RwLock<Arc<Plan>>, interrupt: &Interrupt) {
        let trigger = lock_plan(plan).trigger.clone();
        let (queue, names) = match self.open(&trigger) {
            Ok(q) => q,
            Err(e) => {
                tracing::error!(
                    event = 2205,
                    trigger = %trigger.def.name,
                    queue = %trigger.def.queue,
                    "opening the queue failed; the trigger is nonfunctional: {e}"
                );
                return;
            }
        };
        let names = Arc::new(names);
        let counters = self.counters(trigger.id);
        let mut scan = queue.scan();
        loop {
            let msg = match scan.next(interrupt) {
                Ok(Some(msg)) => msg,
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(
                        event = 2212,
                        trigger = %trigger.def.name,
                        queue = %trigger.def.queue,
                        "the queue is gone; the trigger is nonfunctional until it is enabled again: {e}"
                    );
                    return;
                }
            };
            bump(&counters.messages);
            let plan = lock_plan(plan);
            let fired: Vec<Arc<Rule>> = plan
                .rules
                .iter()
                .filter(|r| r.matches(&msg))
                .cloned()
                .collect();
            if fired.is_empty() {
                continue;
            }
            bump(&counters.fired);
            let processing = plan.trigger.def.processing;
            let serialized =
                plan.trigger.def.serialized || processing == Processing::TransactionalRetrieval;
            let (done_tx, done_rx) = mpsc::channel::<()>();
            let job = {
                let svc = self.clone();
                let queue = queue.clone();
                let trigger = plan.trigger.clone();
                let names = names.clone();
                let counters = counters.clone();
                Box::new(move || {
                    svc.process(&trigger, &names, &queue, msg, &fired, &counters);
                    let _ = done_tx.send(());
                })
            };
            if !self.pool.submit(job) {
                return;
            }
            if serialized {
                // Finish this message before the next; a job dropped at stop ends the wait too.
                let _ = done_rx.recv();
            }
        }
    }

    /// Opens the monitored queue and works out the names its parameters report.
    fn open(&self, trigger: &Trigger) -> crate::Result<(Queue, Names)> {
        let name = QueueName::parse_path(&trigger.def.queue)?;
        let queue = self.qm.open_name(&name)?;
        let guid = self.qm.guid();
        let format_name = match name.queue() {
            QueueRef::System(s) => format!("MACHINE={guid};{}", s.keyword()),
            QueueRef::Private {
                name: q, journal, ..
            } => match self.qm.queue_info(&format!(".\\private$\\{q}")) {
                Ok(info) => format!(
                    "PRIVATE={guid}\\{:08x}{}",
                    info.id,
                    if journal { ";JOURNAL" } else { "" }
                ),
                Err(_) => format!("DIRECT=OS:{name}"),
            },
            _ => format!("DIRECT=OS:{name}"),
        };
        let path = match trigger.def.queue.strip_prefix(".\\") {
            Some(rest) => format!("{}\\{rest}", self.qm.name()),
            None => trigger.def.queue.clone(),
        };
        Ok((queue, Names { path, format_name }))
    }

    /// Runs the fired rules' actions on one message and settles it as the processing type says.
    fn process(
        &self,
        trigger: &Trigger,
        names: &Names,
        queue: &Queue,
        msg: Message,
        fired: &[Arc<Rule>],
        counters: &Counters,
    ) {
        let lookup = LookupAction::Current(msg.lookup_id());
        match trigger.def.processing {
            Processing::Peek => {
                self.run_actions(trigger, names, &msg, fired, counters, false);
            }
            Processing::Retrieval => {
                if self.run_actions(trigger, names, &msg, fired, counters, false) {
                    match queue.receive_by_lookup_id(lookup, Tx::None) {
                        Ok(_) => bump(&counters.retrieved),
                        Err(e) => tracing::debug!(
                            trigger = %trigger.def.name,
                            "message {} left the queue before the trigger removed it: {e}",
                            msg.id()
                        ),
                    }
                }
            }
            Processing::TransactionalRetrieval => {
                let tx = self.qm.begin();
                let msg = match queue.receive_by_lookup_id(lookup, Tx::In(&tx)) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::debug!(
                            trigger = %trigger.def.name,
                            "message {} could not be received for the trigger: {e}",
                            msg.id()
                        );
                        return;
                    }
                };
                if self.run_actions(trigger, names, &msg, fired, counters, true) {
                    match tx.commit() {
                        Ok(()) => bump(&counters.retrieved),
                        Err(e) => tracing::error!(
                            event = 2210,
                            trigger = %trigger.def.name,
                            id = %trigger.id,
                            "committing the retrieval of message {} failed: {e}",
                            msg.id()
                        ),
                    }
                } else {
                    tx.abort();
                    bump(&counters.aborted);
                }
            }
        }
    }

    /// Runs each fired rule's action in order; true if none failed. `stop_at_failure` ends the
    /// run at the first failure (transactional retrieval, whose transaction aborts anyway).
    fn run_actions(
        &self,
        trigger: &Trigger,
        names: &Names,
        msg: &Message,
        fired: &[Arc<Rule>],
        counters: &Counters,
        stop_at_failure: bool,
    ) -> bool {
        let cx = Context {
            trigger_name: &trigger.def.name,
            trigger_id: trigger.id,
            queue_path: &names.path,
            queue_format_name: &names.format_name,
        };
        let mut ok = true;
        for rule in fired {
            let action = &rule.def.action;
            let for_exe = matches!(action, super::Action::Exe { .. });
            let call = Invocation {
                trigger_name: &trigger.def.name,
                trigger_id: trigger.id,
                rule_name: &rule.def.name,
                rule_id: rule.id,
                queue: &names.path,
                message: msg,
                params: action
                    .params()
                    .iter()
                    .map(|p| exec::value(p, msg, &cx, for_exe))
                    .collect(),
            };
            match self.runner.run(action, &call) {
                Ok(()) => bump(&counters.actions_ok),
                Err(e) => {
                    bump(&counters.actions_failed);
                    ok = false;
                    tracing::warn!(
                        event = if stop_at_failure { 2210 } else { 2209 },
                        trigger = %trigger.def.name,
                        rule = %rule.def.name,
                        id = %rule.id,
                        "the action of the rule failed on message {}: {e}",
                        msg.id()
                    );
                    if stop_at_failure {
                        break;
                    }
                }
            }
        }
        ok
    }
}

/// The names `$MSG_QUEUE_PATHNAME` and `$MSG_QUEUE_FORMATNAME` give.
struct Names {
    path: String,
    format_name: String,
}

fn lock_plan(plan: &RwLock<Arc<Plan>>) -> Arc<Plan> {
    plan.read().unwrap_or_else(PoisonError::into_inner).clone()
}

fn stop_monitor(mut m: Monitor) {
    m.interrupt.raise();
    if let Some(t) = m.thread.take() {
        let _ = t.join();
    }
}
