//! The definitions users give and the service keeps: rules, triggers, the message processing
//! type, and what a trigger has done.

use uuid::Uuid;

use super::rule::{self, invalid, Action, Condition};
use crate::error::Result;

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
