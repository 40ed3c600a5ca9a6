//! MSMQ Triggers: triggers watch a queue and run rules (conditions and an action) on each message.
//!
//! A [`Trigger`] names a monitored queue (a private queue, a journal, or a system queue, by path),
//! a [`Processing`] type, whether it is enabled and serialized, and an ordered list of rules. A
//! [`Rule`] has conditions (all must hold; none means always) and one [`Action`]: run an
//! executable, call an in-process handler registered by ProgID and method (the embedding's
//! analogue of a COM component), or POST to a URL (an mqemu extension). Definitions live in the
//! queue manager's catalog, so they survive restarts and move with its storage directory; the
//! condition and action strings are MSMQ's own (see [`rule`]).
//!
//! Each enabled trigger with at least one rule has a monitor thread that walks its queue with a
//! [`crate::queue::Scan`]: every message there at start, then each arrival, higher priorities
//! first. Rule changes apply from the next message; enabling a trigger, or attaching the first
//! rule, starts the walk at the head again. Actions run on a
//! bounded worker pool. Peek leaves messages where they are; retrieval removes a message when at
//! least one rule fired and no action failed; transactional retrieval receives it under a
//! transaction and aborts (the message returns, its abort count raised) if an action fails.
//! Serialized triggers (transactional retrieval always is) finish a message's actions before
//! the next message.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use mqcore::triggers::{Processing, RuleDef, TriggerDef, Triggers};
//! use mqcore::{Message, QueueManager, QueueProps, Tx};
//!
//! let qm = QueueManager::new();
//! let q = qm.create_queue(r".\private$\orders", QueueProps::default())?;
//! let seen = Arc::new(Mutex::new(Vec::new()));
//! let log = seen.clone();
//! let triggers = Triggers::builder()
//!     .handler("Orders.Handler", "OnMessage", move |call| {
//!         log.lock().unwrap().push(call.message.label.clone());
//!         Ok(())
//!     })
//!     .start(&qm)?;
//! triggers.add_rule(RuleDef::parse("big", "", "$MSG_LABEL_CONTAINS=big\t",
//!     "COM\tOrders.Handler\tOnMessage\t$MSG_LABEL")?)?;
//! triggers.add_trigger(TriggerDef::new("orders", r".\private$\orders", Processing::Retrieval))?;
//! triggers.attach_rule("orders", "big")?;
//! q.send(Message::new("x").with_label("a big order"), Tx::None)?;
//! # for _ in 0..500 { if q.is_empty()? { break } std::thread::sleep(std::time::Duration::from_millis(10)); }
//! # assert!(q.is_empty()?);
//! # assert_eq!(*seen.lock().unwrap(), vec!["a big order".to_owned()]);
//! # Ok::<(), mqcore::Error>(())
//! ```

mod exec;
pub mod rule;
mod run;

use std::collections::BTreeMap;
use std::sync::{Arc, MutexGuard, PoisonError};
use std::time::Duration;

use uuid::Uuid;

use crate::error::{Error, ErrorCode, Result};
use crate::manager::QueueManager;
use crate::name::{QueueName, QueueRef};
use crate::storage::record;

pub use exec::{Handler, HttpPost, Invocation, Value};
pub use rule::{
    Action, Condition, Param, MAX_ACTION_LEN, MAX_CONDITION_LEN, MAX_RULE_DESCRIPTION_LEN,
    MAX_RULE_NAME_LEN,
};

use rule::invalid;

/// How a trigger treats the messages it processes (`MsgProcessingType`; MSMQ's values in order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Processing {
    /// `PEEK_MESSAGE`: messages stay in the queue.
    Peek = 0,
    /// `RECEIVE_MESSAGE`: a message leaves the queue when a rule fired and no action failed.
    Retrieval = 1,
    /// `RECEIVE_MESSAGE_XACT`: received under a transaction, committed when every action of
    /// the fired rules succeeded and aborted otherwise. Always serialized.
    #[serde(alias = "transactional")]
    TransactionalRetrieval = 2,
}

impl Processing {
    /// Reads `peek`, `retrieval` or `transactional` (also trigadm's `retrieve` and `xact`, and
    /// MSMQ's numbers 0, 1, 2).
    pub fn parse(text: &str) -> Result<Processing> {
        match text.trim().to_ascii_lowercase().as_str() {
            "peek" | "peeking" | "0" => Ok(Processing::Peek),
            "retrieval" | "retrieve" | "receive" | "1" => Ok(Processing::Retrieval),
            "transactional" | "transactional_retrieval" | "xact" | "2" => {
                Ok(Processing::TransactionalRetrieval)
            }
            _ => Err(invalid(format!(
                "message processing type {text:?} is not peek, retrieval or transactional"
            ))),
        }
    }

    /// `peek`, `retrieval` or `transactional`.
    pub fn as_str(self) -> &'static str {
        match self {
            Processing::Peek => "peek",
            Processing::Retrieval => "retrieval",
            Processing::TransactionalRetrieval => "transactional",
        }
    }

    /// Whether messages leave the queue (retrieval or transactional retrieval).
    pub fn receives(self) -> bool {
        self != Processing::Peek
    }
}

impl std::fmt::Display for Processing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule as defined: name, description, conditions and action.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RuleDef {
    /// At most 128 characters; unique among rules.
    pub name: String,
    /// At most 255 characters.
    #[serde(default)]
    pub description: String,
    /// All must hold; none means always.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// What to do when they hold.
    pub action: Action,
}

impl RuleDef {
    /// A rule from MSMQ's stored strings: a TAB-terminated condition list and a TAB-separated
    /// action (trigadm's `;`-separated forms are read too).
    pub fn parse(name: &str, description: &str, condition: &str, action: &str) -> Result<RuleDef> {
        Ok(RuleDef {
            name: name.to_owned(),
            description: description.to_owned(),
            conditions: rule::parse_conditions(condition)?,
            action: Action::parse(action)?,
        })
    }
}

/// A defined rule.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rule {
    /// Its id, fixed at creation.
    pub id: Uuid,
    /// Its definition.
    pub def: RuleDef,
}

impl Rule {
    /// The conditions as MSMQ stores them (each item followed by a TAB).
    pub fn condition_string(&self) -> String {
        rule::format_conditions(&self.def.conditions)
    }

    /// The action as MSMQ stores it.
    pub fn action_string(&self) -> String {
        self.def.action.to_string()
    }

    /// Whether every condition holds for `msg`.
    pub fn matches(&self, msg: &crate::Message) -> bool {
        self.def.conditions.iter().all(|c| c.holds(msg))
    }
}

/// A trigger as defined.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TriggerDef {
    /// Unique among triggers; at most 128 characters.
    pub name: String,
    /// The monitored queue's path name (`.\private$\q`, `.\private$\q\JOURNAL$`,
    /// `.\DEADLETTER$`...). Format names are refused, as MSMQ does.
    pub queue: String,
    /// Peek, retrieval or transactional retrieval.
    pub processing: Processing,
    /// Whether it runs.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Whether a message's actions finish before the next message (forced for transactional
    /// retrieval).
    #[serde(default)]
    pub serialized: bool,
}

fn yes() -> bool {
    true
}

impl TriggerDef {
    /// An enabled, non-serialized trigger.
    pub fn new(name: &str, queue: &str, processing: Processing) -> TriggerDef {
        TriggerDef {
            name: name.to_owned(),
            queue: queue.to_owned(),
            processing,
            enabled: true,
            serialized: false,
        }
    }
}

/// A defined trigger.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Trigger {
    /// Its id, fixed at creation.
    pub id: Uuid,
    /// Its definition (the queue in canonical form).
    pub def: TriggerDef,
    /// Its attached rules' ids, in the order they run.
    pub rules: Vec<Uuid>,
}

/// What a trigger has done since the service started.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TriggerStats {
    /// Whether its monitor is running.
    pub running: bool,
    /// Messages it evaluated.
    pub messages: u64,
    /// Messages for which at least one rule fired.
    pub fired: u64,
    /// Actions that succeeded.
    pub actions_ok: u64,
    /// Actions that failed.
    pub actions_failed: u64,
    /// Messages it removed from the queue (committed, for transactional retrieval).
    pub retrieved: u64,
    /// Transactions it aborted because an action failed.
    pub aborted: u64,
}

/// Catalog key prefixes.
const RULE_PREFIX: &str = "trigger-rule/";
const TRIGGER_PREFIX: &str = "trigger-def/";

/// A rule as stored: MSMQ's strings, so that the catalog holds what MSMQ's registry would.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredRule {
    id: Uuid,
    name: String,
    description: String,
    condition: String,
    action: String,
}

/// Every definition, by id.
#[derive(Default)]
pub(crate) struct Defs {
    rules: BTreeMap<Uuid, Rule>,
    triggers: BTreeMap<Uuid, Trigger>,
}

impl Defs {
    fn rule_id(&self, key: &str) -> Result<Uuid> {
        lookup(&self.rules, key, |r| &r.def.name).ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidParameter,
                format!("MQTRIG_ERROR_RULE_NOT_FOUND: no rule is named or numbered {key:?}"),
            )
        })
    }

    fn trigger_id(&self, key: &str) -> Result<Uuid> {
        lookup(&self.triggers, key, |t| &t.def.name).ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidParameter,
                format!("MQTRIG_ERROR_TRIGGER_NOT_FOUND: no trigger is named or numbered {key:?}"),
            )
        })
    }
}

/// The id of the item named `key`, or whose id `key` is (with or without braces).
fn lookup<T>(items: &BTreeMap<Uuid, T>, key: &str, name: impl Fn(&T) -> &String) -> Option<Uuid> {
    let bare = key
        .trim()
        .strip_prefix('{')
        .and_then(|k| k.strip_suffix('}'))
        .unwrap_or(key.trim());
    if let Ok(id) = Uuid::parse_str(bare) {
        if items.contains_key(&id) {
            return Some(id);
        }
    }
    items
        .iter()
        .find(|(_, item)| name(item) == key)
        .map(|(id, _)| *id)
}

/// The Triggers service of one queue manager: definitions, monitors and the worker pool.
///
/// Stops when dropped (or by [`Triggers::stop`]): monitors end, running actions finish, queued
/// ones are dropped (their messages stay in the queue).
pub struct Triggers {
    svc: Arc<run::Service>,
}

impl std::fmt::Debug for Triggers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Triggers").finish_non_exhaustive()
    }
}

/// Settings of a [`Triggers`] service.
pub struct Builder {
    workers: usize,
    action_timeout: Duration,
    runner_handlers: Vec<(String, String, Handler)>,
    http: Option<Arc<dyn HttpPost>>,
}

impl Builder {
    /// Threads that run actions (default 5, MSMQ's `InitialThreads`).
    pub fn workers(mut self, n: usize) -> Builder {
        self.workers = n.max(1);
        self
    }

    /// How long an executable or HTTP action may take before it counts as failed (default 60 s).
    pub fn action_timeout(mut self, timeout: Duration) -> Builder {
        self.action_timeout = timeout;
        self
    }

    /// Registers the in-process handler that `COM\t<prog_id>\t<method>` actions call.
    ///
    /// A handler runs on a worker thread and must not change this service's definitions: a
    /// change may wait for the handler's own trigger to stop, which waits for the handler.
    pub fn handler(
        mut self,
        prog_id: &str,
        method: &str,
        f: impl Fn(&Invocation<'_>) -> std::result::Result<(), String> + Send + Sync + 'static,
    ) -> Builder {
        self.runner_handlers
            .push((prog_id.to_owned(), method.to_owned(), Arc::new(f)));
        self
    }

    /// What performs `HTTP` actions (without one they fail).
    pub fn http(mut self, http: Arc<dyn HttpPost>) -> Builder {
        self.http = Some(http);
        self
    }

    /// Loads the definitions from `qm`'s catalog and starts a monitor for each enabled trigger.
    pub fn start(self, qm: &QueueManager) -> Result<Triggers> {
        let handlers = exec::Handlers::default();
        for (p, m, h) in self.runner_handlers {
            handlers.insert(&p, &m, h);
        }
        let runner = exec::Runner {
            handlers,
            http: self.http,
            timeout: self.action_timeout,
        };
        let defs = load(qm)?;
        let svc = run::Service::start(qm.clone(), defs, runner, self.workers);
        Ok(Triggers { svc })
    }
}

/// Reads every definition from the catalog. A rule whose strings no longer parse is skipped with
/// a log line (MSMQ's event 2208), and so is its place in triggers.
fn load(qm: &QueueManager) -> Result<Defs> {
    let settings = qm.settings();
    let mut defs = Defs::default();
    for (key, value) in settings.scan(RULE_PREFIX)? {
        let stored: StoredRule = postcard::from_bytes(&value).map_err(|e| corrupt(&key, e))?;
        match RuleDef::parse(
            &stored.name,
            &stored.description,
            &stored.condition,
            &stored.action,
        ) {
            Ok(def) => {
                defs.rules.insert(stored.id, Rule { id: stored.id, def });
            }
            Err(e) => tracing::error!(
                event = 2208,
                rule = %stored.name,
                id = %stored.id,
                "the action or a condition of the rule was not parsed; it is skipped: {e}"
            ),
        }
    }
    for (key, value) in settings.scan(TRIGGER_PREFIX)? {
        let mut t: Trigger = postcard::from_bytes(&value).map_err(|e| corrupt(&key, e))?;
        t.rules.retain(|id| defs.rules.contains_key(id));
        defs.triggers.insert(t.id, t);
    }
    Ok(defs)
}

fn corrupt(key: &str, e: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorCode::MessageStorageFailed,
        format!("catalog entry {key}: {e}"),
    )
}

impl Triggers {
    /// A service with default settings.
    pub fn builder() -> Builder {
        Builder {
            workers: 5,
            action_timeout: Duration::from_secs(60),
            runner_handlers: Vec::new(),
            http: None,
        }
    }

    /// Starts a service with default settings on `qm`.
    pub fn start(qm: &QueueManager) -> Result<Triggers> {
        Triggers::builder().start(qm)
    }

    fn defs(&self) -> MutexGuard<'_, Defs> {
        self.svc.defs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers (or replaces) the in-process handler for `COM\t<prog_id>\t<method>` actions
    /// (see [`Builder::handler`] for what a handler must not do).
    pub fn register_handler(
        &self,
        prog_id: &str,
        method: &str,
        f: impl Fn(&Invocation<'_>) -> std::result::Result<(), String> + Send + Sync + 'static,
    ) {
        self.svc
            .runner
            .handlers
            .insert(prog_id, method, Arc::new(f));
    }

    /// Every rule, by id order.
    pub fn rules(&self) -> Vec<Rule> {
        self.defs().rules.values().cloned().collect()
    }

    /// The rule named `key` (or with id `key`).
    pub fn rule(&self, key: &str) -> Result<Rule> {
        let defs = self.defs();
        Ok(defs.rules[&defs.rule_id(key)?].clone())
    }

    /// Every trigger, by id order.
    pub fn triggers(&self) -> Vec<Trigger> {
        self.defs().triggers.values().cloned().collect()
    }

    /// The trigger named `key` (or with id `key`).
    pub fn trigger(&self, key: &str) -> Result<Trigger> {
        let defs = self.defs();
        Ok(defs.triggers[&defs.trigger_id(key)?].clone())
    }

    /// What the trigger named `key` has done since the service started.
    pub fn stats(&self, key: &str) -> Result<TriggerStats> {
        let id = self.defs().trigger_id(key)?;
        Ok(self.svc.stats(id))
    }

    /// Defines a rule. Names are unique; the limits are MSMQ's (128, 255, 512, 512 characters).
    pub fn add_rule(&self, def: RuleDef) -> Result<Rule> {
        rule::check_rule(&def.name, &def.description, &def.conditions, &def.action)?;
        let mut defs = self.defs();
        if defs.rules.values().any(|r| r.def.name == def.name) {
            return Err(invalid(format!(
                "a rule named {:?} exists already",
                def.name
            )));
        }
        let rule = Rule {
            id: Uuid::new_v4(),
            def,
        };
        self.save_rule(&rule)?;
        defs.rules.insert(rule.id, rule.clone());
        Ok(rule)
    }

    /// Replaces the definition of the rule named `key`, keeping its id; triggers using it see the
    /// change from their next message.
    pub fn update_rule(&self, key: &str, def: RuleDef) -> Result<Rule> {
        rule::check_rule(&def.name, &def.description, &def.conditions, &def.action)?;
        let mut defs = self.defs();
        let id = defs.rule_id(key)?;
        if defs
            .rules
            .values()
            .any(|r| r.def.name == def.name && r.id != id)
        {
            return Err(invalid(format!(
                "a rule named {:?} exists already",
                def.name
            )));
        }
        let rule = Rule { id, def };
        self.save_rule(&rule)?;
        defs.rules.insert(id, rule.clone());
        self.svc.refresh(&defs);
        Ok(rule)
    }

    /// Deletes a rule, detaching it from every trigger.
    pub fn delete_rule(&self, key: &str) -> Result<()> {
        let mut defs = self.defs();
        let id = defs.rule_id(key)?;
        let using: Vec<Uuid> = defs
            .triggers
            .values()
            .filter(|t| t.rules.contains(&id))
            .map(|t| t.id)
            .collect();
        for t in using {
            let mut trigger = defs.triggers[&t].clone();
            trigger.rules.retain(|r| *r != id);
            self.save_trigger(&trigger)?;
            defs.triggers.insert(t, trigger);
        }
        self.svc
            .qm
            .settings()
            .remove(&format!("{RULE_PREFIX}{id}"))?;
        defs.rules.remove(&id);
        self.svc.refresh(&defs);
        Ok(())
    }

    /// Defines a trigger on an existing local queue, and starts it if enabled.
    ///
    /// A queue with a retrieval trigger can have no other trigger (MSMQ's
    /// `MQTRIG_ERROR_MULTIPLE_RECEIVE_TRIGGER`); transactional retrieval needs a transactional
    /// queue and is always serialized.
    pub fn add_trigger(&self, def: TriggerDef) -> Result<Trigger> {
        let mut defs = self.defs();
        let def = self.check_trigger(&defs, def, None)?;
        let trigger = Trigger {
            id: Uuid::new_v4(),
            def,
            rules: Vec::new(),
        };
        self.save_trigger(&trigger)?;
        defs.triggers.insert(trigger.id, trigger.clone());
        self.svc.refresh(&defs);
        Ok(trigger)
    }

    /// Replaces the definition of the trigger named `key`, keeping its id and rules. A change of
    /// queue or processing type restarts its monitor at the head of the queue.
    pub fn update_trigger(&self, key: &str, def: TriggerDef) -> Result<Trigger> {
        let mut defs = self.defs();
        let id = defs.trigger_id(key)?;
        let def = self.check_trigger(&defs, def, Some(id))?;
        let mut trigger = defs.triggers[&id].clone();
        let restart = trigger.def.queue != def.queue || trigger.def.processing != def.processing;
        trigger.def = def;
        self.save_trigger(&trigger)?;
        defs.triggers.insert(id, trigger.clone());
        if restart {
            self.svc.stop_monitor(id);
        }
        self.svc.refresh(&defs);
        Ok(trigger)
    }

    /// Checks a trigger definition and puts its queue name in canonical form.
    fn check_trigger(
        &self,
        defs: &Defs,
        mut def: TriggerDef,
        replacing: Option<Uuid>,
    ) -> Result<TriggerDef> {
        let len = def.name.chars().count();
        if def.name.trim().is_empty() || len > MAX_RULE_NAME_LEN {
            return Err(invalid(format!(
                "trigger name {:?} must have 1 to {MAX_RULE_NAME_LEN} characters (it has {len})",
                def.name
            )));
        }
        if defs
            .triggers
            .values()
            .any(|t| t.def.name == def.name && Some(t.id) != replacing)
        {
            return Err(invalid(format!(
                "a trigger named {:?} exists already",
                def.name
            )));
        }
        let name = QueueName::parse_path(&def.queue)?;
        let queue = self.svc.qm.open_name(&name)?;
        def.queue = queue.name().to_string();
        if def.processing == Processing::TransactionalRetrieval {
            def.serialized = true;
            if let QueueRef::Private { journal: false, .. } = name.queue() {
                let info = self.svc.qm.queue_info(&def.queue)?;
                if !info.props.transactional {
                    return Err(Error::new(
                        ErrorCode::TransactionUsage,
                        format!(
                            "transactional retrieval needs a transactional queue, and {} is not",
                            def.queue
                        ),
                    ));
                }
            }
        }
        let same_queue = |t: &&Trigger| {
            Some(t.id) != replacing
                && QueueName::parse_path(&t.def.queue).is_ok_and(|n| n == *queue.name())
        };
        if let Some(other) = defs.triggers.values().find(same_queue) {
            if def.processing.receives() || other.def.processing.receives() {
                return Err(Error::new(
                    ErrorCode::IllegalOperation,
                    format!(
                        "MQTRIG_ERROR_MULTIPLE_RECEIVE_TRIGGER: multiple trigger isn't allowed on \
                         receive trigger: {} already has trigger {:?} ({}), and a queue with a \
                         retrieval trigger can have no other",
                        def.queue, other.def.name, other.def.processing
                    ),
                ));
            }
        }
        Ok(def)
    }

    /// Attaches a rule at the end of a trigger's list (a rule runs once per trigger).
    pub fn attach_rule(&self, trigger: &str, rule: &str) -> Result<Trigger> {
        self.change_trigger(trigger, |defs, t| {
            let rule = defs.rule_id(rule)?;
            if t.rules.contains(&rule) {
                return Err(invalid(format!(
                    "rule {:?} is attached to trigger {:?} already",
                    defs.rules[&rule].def.name, t.def.name
                )));
            }
            t.rules.push(rule);
            Ok(())
        })
    }

    /// Detaches a rule from a trigger.
    pub fn detach_rule(&self, trigger: &str, rule: &str) -> Result<Trigger> {
        self.change_trigger(trigger, |defs, t| {
            let rule = defs.rule_id(rule)?;
            if !t.rules.contains(&rule) {
                return Err(invalid(format!(
                    "rule {:?} is not attached to trigger {:?}",
                    defs.rules[&rule].def.name, t.def.name
                )));
            }
            t.rules.retain(|r| *r != rule);
            Ok(())
        })
    }

    /// Replaces a trigger's rules with `rules` (names or ids, in the order they run) in one
    /// change, so a running trigger keeps its walk and uses the new list from the next message.
    pub fn set_rules(&self, trigger: &str, rules: &[&str]) -> Result<Trigger> {
        self.change_trigger(trigger, |defs, t| {
            let mut ids = Vec::with_capacity(rules.len());
            for r in rules {
                let id = defs.rule_id(r)?;
                if ids.contains(&id) {
                    return Err(invalid(format!("rule {r:?} is listed twice")));
                }
                ids.push(id);
            }
            t.rules = ids;
            Ok(())
        })
    }

    /// Enables or disables a trigger. Enabling starts at the head of the queue, as a restart does.
    pub fn set_enabled(&self, trigger: &str, enabled: bool) -> Result<Trigger> {
        self.change_trigger(trigger, |_, t| {
            t.def.enabled = enabled;
            Ok(())
        })
    }

    fn change_trigger(
        &self,
        key: &str,
        change: impl FnOnce(&Defs, &mut Trigger) -> Result<()>,
    ) -> Result<Trigger> {
        let mut defs = self.defs();
        let id = defs.trigger_id(key)?;
        let mut trigger = defs.triggers[&id].clone();
        change(&defs, &mut trigger)?;
        self.save_trigger(&trigger)?;
        defs.triggers.insert(id, trigger.clone());
        self.svc.refresh(&defs);
        Ok(trigger)
    }

    /// Deletes a trigger and stops its monitor.
    pub fn delete_trigger(&self, key: &str) -> Result<()> {
        let mut defs = self.defs();
        let id = defs.trigger_id(key)?;
        self.svc
            .qm
            .settings()
            .remove(&format!("{TRIGGER_PREFIX}{id}"))?;
        defs.triggers.remove(&id);
        self.svc.refresh(&defs);
        Ok(())
    }

    /// Stops every monitor and the worker pool; running actions finish first. Definition
    /// changes still work afterwards but start nothing.
    pub fn stop(&self) {
        self.svc.stop();
    }

    fn save_rule(&self, rule: &Rule) -> Result<()> {
        let stored = StoredRule {
            id: rule.id,
            name: rule.def.name.clone(),
            description: rule.def.description.clone(),
            condition: rule.condition_string(),
            action: rule.action_string(),
        };
        self.svc.qm.settings().put(
            &format!("{RULE_PREFIX}{}", rule.id),
            &record::encode(&stored),
        )
    }

    fn save_trigger(&self, trigger: &Trigger) -> Result<()> {
        self.svc.qm.settings().put(
            &format!("{TRIGGER_PREFIX}{}", trigger.id),
            &record::encode(trigger),
        )
    }
}

impl Drop for Triggers {
    fn drop(&mut self) {
        self.svc.stop();
    }
}
