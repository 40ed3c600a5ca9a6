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
mod builder;
mod catalog;
mod def;
mod exec;
mod handle;
pub mod rule;
mod run;

/// The rules and triggers in `qm`'s catalog, read as the service's start reads them: how many of
/// each it keeps (the fuzzers' way in).
pub(crate) fn load_definitions(qm: &crate::QueueManager) -> crate::Result<(usize, usize)> {
    let defs = catalog::load(qm)?;
    Ok((defs.rules.len(), defs.triggers.len()))
}

pub use builder::Builder;
pub use def::{Processing, Rule, RuleDef, Trigger, TriggerDef, TriggerStats};
pub use exec::{Handler, HttpPost, Invocation, Value};
pub use handle::Triggers;
pub use rule::{
    Action, Condition, Param, MAX_ACTION_LEN, MAX_CONDITION_LEN, MAX_RULE_DESCRIPTION_LEN,
    MAX_RULE_NAME_LEN,
};

use catalog::Defs;
