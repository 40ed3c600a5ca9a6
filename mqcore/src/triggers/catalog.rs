//! Where definitions live: every rule and trigger by id, looked up by name or id, and kept in
//! the queue manager's catalog (rules as MSMQ's strings) so they survive restarts.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::{Rule, RuleDef, Trigger, Triggers};
use crate::error::{Error, ErrorCode, Result};
use crate::manager::QueueManager;
use crate::persistence::record;

/// Catalog key prefixes.
pub(super) const RULE_PREFIX: &str = "trigger-rule/";
pub(super) const TRIGGER_PREFIX: &str = "trigger-def/";

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
    pub(super) rules: BTreeMap<Uuid, Rule>,
    pub(super) triggers: BTreeMap<Uuid, Trigger>,
}

impl Defs {
    pub(super) fn rule_id(&self, key: &str) -> Result<Uuid> {
        lookup(&self.rules, key, |r| &r.def.name).ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidParameter,
                format!("MQTRIG_ERROR_RULE_NOT_FOUND: no rule is named or numbered {key:?}"),
            )
        })
    }

    pub(super) fn trigger_id(&self, key: &str) -> Result<Uuid> {
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

/// Reads every definition from the catalog. A rule whose strings no longer parse is skipped with
/// a log line (MSMQ's event 2208), and so is its place in triggers.
pub(super) fn load(qm: &QueueManager) -> Result<Defs> {
    let settings = qm.catalog_entries();
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

pub(super) fn corrupt(key: &str, e: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorCode::MessageStorageFailed,
        format!("catalog entry {key}: {e}"),
    )
}

impl Triggers {
    pub(super) fn save_rule(&self, rule: &Rule) -> Result<()> {
        let stored = StoredRule {
            id: rule.id,
            name: rule.def.name.clone(),
            description: rule.def.description.clone(),
            condition: rule.condition_string(),
            action: rule.action_string(),
        };
        self.svc.qm.catalog_entries().put(
            &format!("{RULE_PREFIX}{}", rule.id),
            &record::encode(&stored),
        )
    }

    pub(super) fn save_trigger(&self, trigger: &Trigger) -> Result<()> {
        self.svc.qm.catalog_entries().put(
            &format!("{TRIGGER_PREFIX}{}", trigger.id),
            &record::encode(trigger),
        )
    }
}
