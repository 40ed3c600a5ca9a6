//! The Triggers service handle: reads and changes definitions, keeping the catalog and the
//! running monitors in step with them.

use std::sync::{Arc, MutexGuard, PoisonError};

use uuid::Uuid;

use super::catalog::{RULE_PREFIX, TRIGGER_PREFIX};
use super::rule::{self, invalid};
use super::{
    run, Defs, Invocation, Processing, Rule, RuleDef, Trigger, TriggerDef, TriggerStats,
    MAX_RULE_NAME_LEN,
};
use crate::error::{Error, ErrorCode, Result};
use crate::manager::QueueManager;
use crate::name::{QueueName, QueueRef};

/// The Triggers service of one queue manager: definitions, monitors and the worker pool.
///
/// Stops when dropped (or by [`Triggers::stop`]): monitors end, running actions finish, queued
/// ones are dropped (their messages stay in the queue).
pub struct Triggers {
    pub(super) svc: Arc<run::Service>,
}

impl std::fmt::Debug for Triggers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Triggers").finish_non_exhaustive()
    }
}
impl Triggers {
    /// Starts a service with default settings on `qm`.
    pub fn start(qm: &QueueManager) -> Result<Triggers> {
        Triggers::builder().start(qm)
    }

    fn defs(&self) -> MutexGuard<'_, Defs> {
        self.svc.defs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers (or replaces) the in-process handler for `COM\t<prog_id>\t<method>` actions
    /// (see [`Builder::handler`](super::Builder::handler) for what a handler must not do).
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
            .catalog_entries()
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
            .catalog_entries()
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
}

impl Drop for Triggers {
    fn drop(&mut self) {
        self.svc.stop();
    }
}
