//! `mqemu rule ...` and `mqemu trigger ...`: MSMQ Triggers administration against a server, in
//! the spirit of `trigadm`, taking MSMQ's own condition and action strings.

use clap::Subcommand;
use mqemu::triggers::{Processing, Rule, TriggerDef};
use mqemu::{Error, ErrorCode};
use mqnet::{TriggerAnswer, TriggerRequest, TriggerView};
use serde_json::json;

use super::admin::Conn;

/// A stored string with its TABs shown, for human output.
fn visible(s: &str) -> String {
    s.replace('\t', "\\t")
}

fn unexpected(what: &str) -> Error {
    Error::new(
        ErrorCode::Error,
        format!("the server answered {what} with something else"),
    )
}

fn rules(c: &Conn, req: TriggerRequest) -> mqemu::Result<Vec<Rule>> {
    match c.triggers(req)? {
        TriggerAnswer::Rules(r) => Ok(r),
        _ => Err(unexpected("a rule request")),
    }
}

fn triggers(c: &Conn, req: TriggerRequest) -> mqemu::Result<Vec<TriggerView>> {
    match c.triggers(req)? {
        TriggerAnswer::Triggers(t) => Ok(t),
        _ => Err(unexpected("a trigger request")),
    }
}

fn rule_json(r: &Rule) -> serde_json::Value {
    json!({
        "id": r.id.to_string(),
        "name": r.def.name,
        "description": r.def.description,
        "condition": r.condition_string(),
        "action": r.action_string(),
    })
}

fn trigger_json(t: &TriggerView) -> serde_json::Value {
    let d = &t.trigger.def;
    json!({
        "id": t.trigger.id.to_string(),
        "name": d.name,
        "queue": d.queue,
        "type": d.processing.as_str(),
        "enabled": d.enabled,
        "serialized": d.serialized,
        "rules": t.rule_names,
        "stats": t.stats,
    })
}

fn show_rule(r: &Rule) {
    println!("rule         {}", r.def.name);
    println!("id           {{{}}}", r.id);
    println!("description  {}", r.def.description);
    println!("condition    {}", visible(&r.condition_string()));
    println!("action       {}", visible(&r.action_string()));
}

fn show_trigger(t: &TriggerView) {
    let d = &t.trigger.def;
    let s = &t.stats;
    println!("trigger      {}", d.name);
    println!("id           {{{}}}", t.trigger.id);
    println!("queue        {}", d.queue);
    println!("type         {}", d.processing);
    println!("enabled      {}", d.enabled);
    println!("serialized   {}", d.serialized);
    println!("rules        {}", t.rule_names.join(", "));
    println!("running      {}", if s.running { "yes" } else { "no" });
    println!(
        "processed    {} messages, {} fired, {} actions ok, {} failed, {} retrieved, {} aborted",
        s.messages, s.fired, s.actions_ok, s.actions_failed, s.retrieved, s.aborted
    );
}

/// Prints rules as `--json` or text asks.
fn print_rules(c: &Conn, list: &[Rule], one: bool) {
    if c.json {
        let v: Vec<_> = list.iter().map(rule_json).collect();
        println!("{}", if one { v[0].clone() } else { json!(v) });
    } else if one {
        show_rule(&list[0]);
    } else {
        println!("{:<24} {:<38} {:<32} ACTION", "RULE", "ID", "CONDITION");
        for r in list {
            println!(
                "{:<24} {:<38} {:<32} {}",
                r.def.name,
                format!("{{{}}}", r.id),
                visible(&r.condition_string()),
                visible(&r.action_string())
            );
        }
    }
}

/// Prints triggers as `--json` or text asks.
fn print_triggers(c: &Conn, list: &[TriggerView], one: bool) {
    if c.json {
        let v: Vec<_> = list.iter().map(trigger_json).collect();
        println!("{}", if one { v[0].clone() } else { json!(v) });
    } else if one {
        show_trigger(&list[0]);
    } else {
        println!(
            "{:<24} {:<32} {:<13} {:<8} {:<10} RULES",
            "TRIGGER", "QUEUE", "TYPE", "ENABLED", "SERIALIZED"
        );
        for t in list {
            let d = &t.trigger.def;
            println!(
                "{:<24} {:<32} {:<13} {:<8} {:<10} {}",
                d.name,
                d.queue,
                d.processing.as_str(),
                d.enabled,
                d.serialized,
                t.rule_names.join(", ")
            );
        }
    }
}

fn done(c: &Conn, what: &str, name: &str) {
    if c.json {
        println!("{}", json!({ what: name }));
    } else {
        println!("{what} {name}");
    }
}

/// A rule or trigger named by name or id.
#[derive(clap::Args, Debug)]
pub struct Named {
    /// Name (or id).
    name: String,
}

/// `mqemu rule ...`.
#[derive(Subcommand, Debug)]
pub enum RuleCommand {
    /// Define a rule from MSMQ's strings: a condition list such as
    /// $'$MSG_LABEL_CONTAINS=go\t' (each condition ends with a TAB; trigadm's ';' separators
    /// work too) and an action such as $'EXE\t/usr/bin/touch\t"/tmp/f"'.
    Add {
        /// Rule name (at most 128 characters).
        name: String,
        /// Conditions, all of which must hold; empty means always [default: empty].
        #[arg(long, default_value = "")]
        condition: String,
        /// Action: EXE<TAB>path<TAB>params..., COM<TAB>ProgID<TAB>Method<TAB>params...,
        /// or HTTP<TAB>url<TAB>params....
        #[arg(long)]
        action: String,
        /// Description (at most 255 characters).
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List rules.
    List,
    /// Show one rule.
    Show(Named),
    /// Delete a rule (it is detached from every trigger).
    Delete(Named),
}

impl RuleCommand {
    /// Runs the rule command against the server `c` names.
    pub fn run(self, c: &Conn) -> mqemu::Result<()> {
        match self {
            RuleCommand::Add {
                name,
                condition,
                action,
                description,
            } => rule_add(c, &name, &condition, &action, &description),
            RuleCommand::List => rule_list(c),
            RuleCommand::Show(n) => rule_show(c, &n.name),
            RuleCommand::Delete(n) => rule_delete(c, &n.name),
        }
    }
}

/// `mqemu trigger ...`.
#[derive(Subcommand, Debug)]
pub enum TriggerCommand {
    /// Define a trigger on a queue given by path name.
    Add {
        /// Trigger name.
        name: String,
        /// Monitored queue: a path such as '.\private$\orders', '.\private$\orders\JOURNAL$'
        /// or '.\DEADLETTER$'.
        #[arg(long)]
        queue: String,
        /// Message processing: peek, retrieval or transactional.
        #[arg(long = "type", value_name = "peek|retrieval|transactional")]
        processing: String,
        /// Finish each message's actions before the next (always so for transactional).
        #[arg(long)]
        serialized: bool,
        /// Define it disabled.
        #[arg(long)]
        disabled: bool,
    },
    /// Attach a rule at the end of a trigger's rules.
    Attach {
        /// Trigger name (or id).
        trigger: String,
        /// Rule name (or id).
        rule: String,
    },
    /// Detach a rule from a trigger.
    Detach {
        /// Trigger name (or id).
        trigger: String,
        /// Rule name (or id).
        rule: String,
    },
    /// List triggers.
    List,
    /// Show one trigger, with what it has processed.
    Show(Named),
    /// Delete a trigger.
    Delete(Named),
    /// Enable a trigger (it starts again at the head of its queue).
    Enable(Named),
    /// Disable a trigger.
    Disable(Named),
}

impl TriggerCommand {
    /// Runs the trigger command against the server `c` names.
    pub fn run(self, c: &Conn) -> mqemu::Result<()> {
        match self {
            TriggerCommand::Add {
                name,
                queue,
                processing,
                serialized,
                disabled,
            } => trigger_add(c, &name, &queue, &processing, serialized, disabled),
            TriggerCommand::Attach { trigger, rule } => trigger_attach(c, &trigger, &rule, true),
            TriggerCommand::Detach { trigger, rule } => trigger_attach(c, &trigger, &rule, false),
            TriggerCommand::List => trigger_list(c),
            TriggerCommand::Show(n) => trigger_show(c, &n.name),
            TriggerCommand::Delete(n) => trigger_delete(c, &n.name),
            TriggerCommand::Enable(n) => trigger_enable(c, &n.name, true),
            TriggerCommand::Disable(n) => trigger_enable(c, &n.name, false),
        }
    }
}

/// `mqemu rule add`.
fn rule_add(
    c: &Conn,
    name: &str,
    condition: &str,
    action: &str,
    description: &str,
) -> mqemu::Result<()> {
    let added = rules(
        c,
        TriggerRequest::AddRule {
            name: name.to_owned(),
            description: description.to_owned(),
            condition: condition.to_owned(),
            action: action.to_owned(),
        },
    )?;
    print_rules(c, &added, true);
    Ok(())
}

/// `mqemu rule list`.
fn rule_list(c: &Conn) -> mqemu::Result<()> {
    print_rules(c, &rules(c, TriggerRequest::ListRules)?, false);
    Ok(())
}

/// `mqemu rule show`.
fn rule_show(c: &Conn, name: &str) -> mqemu::Result<()> {
    let r = rules(
        c,
        TriggerRequest::ShowRule {
            name: name.to_owned(),
        },
    )?;
    print_rules(c, &r, true);
    Ok(())
}

/// `mqemu rule delete`.
fn rule_delete(c: &Conn, name: &str) -> mqemu::Result<()> {
    c.triggers(TriggerRequest::DeleteRule {
        name: name.to_owned(),
    })?;
    done(c, "deleted", name);
    Ok(())
}

/// `mqemu trigger add`.
fn trigger_add(
    c: &Conn,
    name: &str,
    queue: &str,
    processing: &str,
    serialized: bool,
    disabled: bool,
) -> mqemu::Result<()> {
    let def = TriggerDef {
        name: name.to_owned(),
        queue: queue.to_owned(),
        processing: Processing::parse(processing)?,
        enabled: !disabled,
        serialized,
    };
    let t = triggers(c, TriggerRequest::AddTrigger(def))?;
    print_triggers(c, &t, true);
    Ok(())
}

/// `mqemu trigger attach` and `detach`.
fn trigger_attach(c: &Conn, trigger: &str, rule: &str, attach: bool) -> mqemu::Result<()> {
    let (trigger, rule) = (trigger.to_owned(), rule.to_owned());
    let req = if attach {
        TriggerRequest::Attach { trigger, rule }
    } else {
        TriggerRequest::Detach { trigger, rule }
    };
    print_triggers(c, &triggers(c, req)?, true);
    Ok(())
}

/// `mqemu trigger list`.
fn trigger_list(c: &Conn) -> mqemu::Result<()> {
    print_triggers(c, &triggers(c, TriggerRequest::ListTriggers)?, false);
    Ok(())
}

/// `mqemu trigger show`.
fn trigger_show(c: &Conn, name: &str) -> mqemu::Result<()> {
    let t = triggers(
        c,
        TriggerRequest::ShowTrigger {
            name: name.to_owned(),
        },
    )?;
    print_triggers(c, &t, true);
    Ok(())
}

/// `mqemu trigger delete`.
fn trigger_delete(c: &Conn, name: &str) -> mqemu::Result<()> {
    c.triggers(TriggerRequest::DeleteTrigger {
        name: name.to_owned(),
    })?;
    done(c, "deleted", name);
    Ok(())
}

/// `mqemu trigger enable` and `disable`.
fn trigger_enable(c: &Conn, name: &str, enabled: bool) -> mqemu::Result<()> {
    let t = triggers(
        c,
        TriggerRequest::SetEnabled {
            name: name.to_owned(),
            enabled,
        },
    )?;
    print_triggers(c, &t, true);
    Ok(())
}
