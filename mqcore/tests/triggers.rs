//! The Triggers service end to end: processing types, serialized order, executables, in-process
//! handlers, every parameter token, definitions across a restart, and MSMQ's refusals.

mod common;
use common::{eventually, manual};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use mqcore::triggers::{Processing, RuleDef, TriggerDef, Triggers, Value};
use mqcore::{ErrorCode, JournalFlags, Message, QueueManager, QueueName, QueueProps, Tx};

fn labels(q: &mqcore::Queue) -> Vec<String> {
    q.messages().unwrap().into_iter().map(|m| m.label).collect()
}

fn labelled(label: &str) -> Message {
    Message::text(label).with_label(label)
}

/// A handler registry entry that records each call's label and answers by `verdict`.
type Calls = Arc<Mutex<Vec<String>>>;

fn recorder(
    verdict: impl Fn(&str) -> Result<(), String> + Send + Sync + 'static,
) -> (
    Calls,
    impl Fn(&mqcore::triggers::Invocation<'_>) -> Result<(), String> + Send + Sync,
) {
    let calls: Calls = Arc::default();
    let log = calls.clone();
    (calls, move |call| {
        log.lock().unwrap().push(call.message.label.clone());
        verdict(&call.message.label)
    })
}

/// A Triggers service whose `COM\tT.H\tGo` handler is a [`recorder`].
fn recording(
    qm: &QueueManager,
    verdict: impl Fn(&str) -> Result<(), String> + Send + Sync + 'static,
) -> (Calls, Triggers) {
    let (calls, h) = recorder(verdict);
    let triggers = Triggers::builder()
        .handler("T.H", "Go", h)
        .start(qm)
        .unwrap();
    (calls, triggers)
}

fn rule(triggers: &Triggers, name: &str, condition: &str, action: &str) {
    triggers
        .add_rule(RuleDef::parse(name, "", condition, action).unwrap())
        .unwrap();
}

/// Adds a trigger with its rules. It is added disabled and enabled once every rule is attached:
/// an enabled trigger walks its queue at once, and a message it evaluated with only the first
/// rule attached is not evaluated again (attaching swaps the rules in place).
fn trigger(triggers: &Triggers, name: &str, queue: &str, p: Processing, rules: &[&str]) {
    let mut def = TriggerDef::new(name, queue, p);
    def.enabled = false;
    triggers.add_trigger(def).unwrap();
    for r in rules {
        triggers.attach_rule(name, r).unwrap();
    }
    triggers.set_enabled(name, true).unwrap();
}

#[test]
fn peek_trigger_sees_existing_messages_then_arrivals_and_leaves_them() {
    let qm = QueueManager::new();
    let q = qm
        .create_queue(r".\private$\in", QueueProps::default())
        .unwrap();
    q.send(labelled("one"), Tx::None).unwrap();
    q.send(labelled("two"), Tx::None).unwrap();
    let (calls, triggers) = recording(&qm, |_| Ok(()));
    rule(&triggers, "all", "", "COM\tT.H\tGo");
    trigger(&triggers, "t", r".\private$\in", Processing::Peek, &["all"]);
    eventually("both are seen", || calls.lock().unwrap().len() == 2);
    q.send(labelled("three"), Tx::None).unwrap();
    eventually("the arrival is seen", || calls.lock().unwrap().len() == 3);
    let mut seen = calls.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen, ["one", "three", "two"]);
    assert_eq!(labels(&q), ["one", "two", "three"]);
    // The counters move just after the handler returns.
    eventually("the counters catch up", || {
        let s = triggers.stats("t").unwrap();
        s.running && (s.messages, s.fired, s.actions_ok, s.retrieved) == (3, 3, 3, 0)
    });
}

#[test]
fn a_higher_priority_arrival_is_processed_next() {
    let qm = QueueManager::new();
    let q = qm
        .create_queue(r".\private$\prio", QueueProps::default())
        .unwrap();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let (calls, triggers) = recording(&qm, move |label| {
        if label == "first" {
            release_rx.lock().unwrap().recv().unwrap();
        }
        Ok(())
    });
    rule(&triggers, "all", "", "COM\tT.H\tGo");
    let mut def = TriggerDef::new("t", r".\private$\prio", Processing::Peek);
    def.serialized = true;
    triggers.add_trigger(def).unwrap();
    triggers.attach_rule("t", "all").unwrap();
    q.send(labelled("first"), Tx::None).unwrap();
    eventually("the first is in its action", || {
        calls.lock().unwrap().len() == 1
    });
    q.send(labelled("low").with_priority(1), Tx::None).unwrap();
    q.send(labelled("high").with_priority(7), Tx::None).unwrap();
    release_tx.send(()).unwrap();
    eventually("all are seen", || calls.lock().unwrap().len() == 3);
    assert_eq!(*calls.lock().unwrap(), ["first", "high", "low"]);
}

#[test]
fn retrieval_removes_a_message_only_when_a_rule_fired_and_no_action_failed() {
    let qm = QueueManager::new();
    let q = qm
        .create_queue(r".\private$\r", QueueProps::default())
        .unwrap();
    for l in ["ok", "bad", "none", "ok bad"] {
        q.send(labelled(l), Tx::None).unwrap();
    }
    let (calls, h) = recorder(|_| Ok(()));
    let triggers = Triggers::builder()
        .handler("T.H", "Go", h)
        .handler("T.H", "Fail", |_| Err("refused".into()))
        .start(&qm)
        .unwrap();
    rule(
        &triggers,
        "good",
        "$MSG_LABEL_CONTAINS=ok\t",
        "COM\tT.H\tGo",
    );
    rule(
        &triggers,
        "failing",
        "$MSG_LABEL_CONTAINS=bad\t",
        "COM\tT.H\tFail",
    );
    trigger(
        &triggers,
        "t",
        r".\private$\r",
        Processing::Retrieval,
        &["good", "failing"],
    );
    eventually("all four are evaluated", || {
        let s = triggers.stats("t").unwrap();
        s.messages == 4 && s.actions_ok + s.actions_failed == 4
    });
    eventually("the good one is removed", || labels(&q).len() == 3);
    // "ok bad" ran both rules: the good action ran, the failing one kept it in the queue.
    assert_eq!(labels(&q), ["bad", "none", "ok bad"]);
    eventually("the counters catch up", || {
        let s = triggers.stats("t").unwrap();
        (s.fired, s.retrieved, s.actions_failed) == (3, 1, 2)
    });
    let mut ran = calls.lock().unwrap().clone();
    ran.sort();
    assert_eq!(ran, ["ok", "ok bad"]);
}

#[test]
fn transactional_retrieval_commits_or_aborts_and_the_message_returns() {
    let qm = QueueManager::new();
    let q = qm
        .create_queue(r".\private$\x", QueueProps::transactional())
        .unwrap();
    for l in ["good", "bad", "good too"] {
        q.send(labelled(l), Tx::Single).unwrap();
    }
    let (calls, triggers) = recording(&qm, |label| {
        if label == "bad" {
            Err("cannot".into())
        } else {
            Ok(())
        }
    });
    rule(&triggers, "all", "", "COM\tT.H\tGo");
    let t = triggers
        .add_trigger(TriggerDef::new(
            "t",
            r".\private$\x",
            Processing::TransactionalRetrieval,
        ))
        .unwrap();
    assert!(
        t.def.serialized,
        "transactional retrieval is always serialized"
    );
    triggers.attach_rule("t", "all").unwrap();
    eventually("all three are processed", || {
        calls.lock().unwrap().len() == 3
    });
    eventually("the good ones are committed", || labels(&q) == ["bad"]);
    let back = q.peek(Duration::ZERO).unwrap();
    assert_eq!(
        back.abort_count(),
        1,
        "the aborted receive raised the abort count"
    );
    eventually("the counters catch up", || {
        let s = triggers.stats("t").unwrap();
        (s.retrieved, s.aborted) == (2, 1)
    });
    // Serialized: in queue order.
    assert_eq!(*calls.lock().unwrap(), ["good", "bad", "good too"]);
}

#[test]
fn a_serialized_trigger_finishes_each_message_before_the_next() {
    let qm = QueueManager::new();
    let q = qm
        .create_queue(r".\private$\s", QueueProps::default())
        .unwrap();
    let events: Calls = Arc::default();
    let log = events.clone();
    let triggers = Triggers::builder()
        .workers(4)
        .handler("T.H", "Go", move |call| {
            let label = &call.message.label;
            log.lock().unwrap().push(format!("start {label}"));
            std::thread::sleep(Duration::from_millis(5));
            log.lock().unwrap().push(format!("end {label}"));
            Ok(())
        })
        .start(&qm)
        .unwrap();
    rule(&triggers, "a", "", "COM\tT.H\tGo");
    rule(&triggers, "b", "", "COM\tT.H\tGo");
    let mut def = TriggerDef::new("t", r".\private$\s", Processing::Peek);
    def.serialized = true;
    triggers.add_trigger(def).unwrap();
    triggers.attach_rule("t", "a").unwrap();
    triggers.attach_rule("t", "b").unwrap();
    for i in 0..5 {
        q.send(labelled(&format!("m{i}")), Tx::None).unwrap();
    }
    eventually("every action ran", || events.lock().unwrap().len() == 20);
    let expected: Vec<String> = (0..5)
        .flat_map(|i| (0..2).flat_map(move |_| [format!("start m{i}"), format!("end m{i}")]))
        .collect();
    assert_eq!(*events.lock().unwrap(), expected);
}

#[cfg(unix)]
#[test]
fn an_exe_action_gets_its_parameters_as_separate_arguments() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("record.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nout=\"$1\"\nshift\nprintf '%s\\n' \"$@\" > \"$out.tmp\"\nmv \"$out.tmp\" \"$out\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = dir.path().join("args.txt");
    let qm = QueueManager::new();
    let q = qm
        .create_queue(r".\private$\exe", QueueProps::default())
        .unwrap();
    let triggers = Triggers::start(&qm).unwrap();
    let action = format!(
        "EXE\t{}\t\"{}\"\t$MSG_LABEL\t\"two words; $HOME *\"\t42\t$MSG_PRIORITY\t$MSG_BODY_AS_STRING\t$TRIGGER_NAME",
        script.display(),
        out.display()
    );
    rule(&triggers, "go", "$MSG_LABEL_CONTAINS=go\t", &action);
    trigger(
        &triggers,
        "exe-trigger",
        r".\private$\exe",
        Processing::Retrieval,
        &["go"],
    );
    q.send(labelled("skip me"), Tx::None).unwrap();
    q.send(
        Message::text("the body")
            .with_label("go now")
            .with_priority(5),
        Tx::None,
    )
    .unwrap();
    eventually("the script wrote its arguments", || out.exists());
    let args = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        args.lines().collect::<Vec<_>>(),
        [
            "go now",
            "two words; $HOME *",
            "42",
            "5",
            "the body",
            "exe-trigger"
        ]
    );
    eventually("the message is retrieved", || labels(&q) == ["skip me"]);
}

#[cfg(unix)]
#[test]
fn a_failing_or_slow_exe_keeps_the_message() {
    let qm = QueueManager::new();
    let q = qm
        .create_queue(r".\private$\exefail", QueueProps::default())
        .unwrap();
    let triggers = Triggers::builder()
        .action_timeout(Duration::from_millis(300))
        .start(&qm)
        .unwrap();
    rule(
        &triggers,
        "false",
        "$MSG_LABEL_CONTAINS=false\t",
        "EXE\t/bin/false",
    );
    rule(
        &triggers,
        "slow",
        "$MSG_LABEL_CONTAINS=slow\t",
        "EXE\t/bin/sleep\t30",
    );
    rule(
        &triggers,
        "missing",
        "$MSG_LABEL_CONTAINS=missing\t",
        "EXE\t/no/such/program",
    );
    trigger(
        &triggers,
        "t",
        r".\private$\exefail",
        Processing::Retrieval,
        &["false", "slow", "missing"],
    );
    for l in ["false", "slow", "missing"] {
        q.send(labelled(l), Tx::None).unwrap();
    }
    eventually("every action failed", || {
        triggers.stats("t").unwrap().actions_failed == 3
    });
    assert_eq!(labels(&q), ["false", "slow", "missing"]);
}

#[test]
fn every_parameter_token_reaches_an_in_process_handler() {
    let qm = QueueManager::builder().name("box1").build();
    let q = qm
        .create_queue(r".\private$\params", QueueProps::default())
        .unwrap();
    qm.create_queue(r".\private$\reply", QueueProps::default())
        .unwrap();
    qm.create_queue(r".\private$\admin", QueueProps::default())
        .unwrap();
    let got: Arc<Mutex<Vec<Vec<Value>>>> = Arc::default();
    let sink = got.clone();
    let triggers = Triggers::builder()
        .handler("Params.Component", "Take", move |call| {
            sink.lock().unwrap().push(call.params.clone());
            Ok(())
        })
        .start(&qm)
        .unwrap();
    let tokens: Vec<&str> = mqcore::triggers::Param::tokens().collect();
    let action = format!(
        "COM\tparams.component\ttake\t{}\t\"lit\"\t7\t1.5",
        tokens.join("\t")
    );
    rule(&triggers, "all", "", &action);
    let t = triggers
        .add_trigger(TriggerDef::new(
            "params-trigger",
            r".\private$\params",
            Processing::Peek,
        ))
        .unwrap();
    triggers.attach_rule("params-trigger", "all").unwrap();
    let correlation = q.send(Message::new(&b"x"[..]), Tx::None).unwrap();
    let mut m = Message::text("body text")
        .with_label("the label")
        .with_priority(6)
        .with_app_specific(99)
        .with_correlation_id(correlation)
        .with_response_queue(QueueName::parse(r".\private$\reply").unwrap())
        .with_acknowledge(
            QueueName::parse(r"DIRECT=OS:.\private$\admin").unwrap(),
            mqcore::Acknowledge::NACK_RECEIVE,
        );
    m.journal = JournalFlags::NONE;
    q.send(m, Tx::None).unwrap();
    let sent = q.peek(Duration::ZERO).unwrap();
    assert_eq!(sent.label, "the label");
    let labelled_call = |p: &&Vec<Value>| p[1] == Value::Text("the label".into());
    eventually("the handler ran for the second message", || {
        got.lock().unwrap().iter().any(|p| labelled_call(&p))
    });
    let params = got
        .lock()
        .unwrap()
        .iter()
        .find(labelled_call)
        .cloned()
        .unwrap();
    let info = qm.queue_info(r".\private$\params").unwrap();
    let text = |s: &str| Value::Text(s.to_owned());
    let expected = vec![
        text(&sent.id().to_string()),
        text("the label"),
        Value::Bytes(sent.body.clone()),
        text("body text"),
        Value::Integer(6),
        Value::Integer(i64::from(sent.arrived_time().as_secs())),
        Value::Integer(i64::from(sent.sent_time().as_secs())),
        text(&correlation.to_string()),
        Value::Integer(99),
        text(r"box1\private$\params"),
        text(&format!("PRIVATE={}\\{:08x}", qm.guid(), info.id)),
        text(r"DIRECT=OS:.\private$\reply"),
        text(r"DIRECT=OS:box1\private$\params"),
        text(r"DIRECT=OS:.\private$\admin"),
        text(&format!("{{{}}}", qm.guid())),
        Value::Integer(sent.lookup_id() as i64),
        text("params-trigger"),
        text(&format!("{{{}}}", t.id)),
        text("lit"),
        Value::Integer(7),
        Value::Float(1.5),
    ];
    assert_eq!(params.len(), expected.len());
    for (i, (got, want)) in params.iter().zip(&expected).enumerate() {
        let name = tokens.get(i).copied().unwrap_or("literal");
        assert_eq!(got, want, "parameter {name}");
    }
}

#[test]
fn a_com_action_without_a_handler_fails_and_keeps_the_message() {
    let qm = QueueManager::new();
    let q = qm
        .create_queue(r".\private$\nohandler", QueueProps::transactional())
        .unwrap();
    let triggers = Triggers::start(&qm).unwrap();
    rule(&triggers, "r", "", "COM\tNot.Registered\tRun");
    trigger(
        &triggers,
        "t",
        r".\private$\nohandler",
        Processing::TransactionalRetrieval,
        &["r"],
    );
    q.send(labelled("stays"), Tx::Single).unwrap();
    eventually("the action failed", || {
        triggers.stats("t").unwrap().aborted == 1
    });
    assert_eq!(labels(&q), ["stays"]);
    // Registered later, it is used from the next message on.
    let called = Arc::new(AtomicUsize::new(0));
    let c = called.clone();
    triggers.register_handler("not.registered", "RUN", move |_| {
        c.fetch_add(1, Ordering::SeqCst);
        Ok(())
    });
    q.send(labelled("goes"), Tx::Single).unwrap();
    eventually("the new message is retrieved", || {
        labels(&q) == ["stays"] && called.load(Ordering::SeqCst) == 1
    });
}

#[test]
fn definitions_survive_a_restart_and_a_peek_trigger_sees_old_messages_again() {
    let dir = tempfile::tempdir().unwrap();
    let (rule_id, trigger_id);
    {
        let qm = QueueManager::builder().open(dir.path()).unwrap();
        let q = qm
            .create_queue(r".\private$\kept", QueueProps::default())
            .unwrap();
        let (calls, triggers) = recording(&qm, |_| Ok(()));
        let r = triggers
            .add_rule(
                RuleDef::parse(
                    "stage",
                    "labels with Stage",
                    "$MSG_LABEL_CONTAINS=Stage\t$MSG_PRIORITY_DOES_NOT_EQUAL=1\t",
                    "COM\tT.H\tGo\t$MSG_LABEL\t\"x\"",
                )
                .unwrap(),
            )
            .unwrap();
        rule_id = r.id;
        trigger_id = triggers
            .add_trigger(TriggerDef::new(
                "watch",
                r".\private$\kept",
                Processing::Peek,
            ))
            .unwrap()
            .id;
        triggers.attach_rule("watch", "stage").unwrap();
        q.send(
            labelled("Stage 1").with_delivery(mqcore::Delivery::Recoverable),
            Tx::None,
        )
        .unwrap();
        eventually("it is seen once", || calls.lock().unwrap().len() == 1);
        triggers.stop();
    }
    let qm = QueueManager::builder().open(dir.path()).unwrap();
    let (calls, triggers) = recording(&qm, |_| Ok(()));
    let r = triggers.rule("stage").unwrap();
    assert_eq!(r.id, rule_id);
    assert_eq!(r.def.description, "labels with Stage");
    assert_eq!(
        r.condition_string(),
        "$MSG_LABEL_CONTAINS=Stage\t$MSG_PRIORITY_NOT_EQUAL=1\t"
    );
    assert_eq!(r.action_string(), "COM\tT.H\tGo\t$MSG_LABEL\t\"x\"");
    let t = triggers.trigger(&trigger_id.to_string()).unwrap();
    assert_eq!(t.def.name, "watch");
    assert_eq!(t.rules, [rule_id]);
    eventually("the old message is seen again", || {
        *calls.lock().unwrap() == ["Stage 1"]
    });
}

#[test]
fn a_queue_with_a_retrieval_trigger_can_have_no_other() {
    let qm = QueueManager::new();
    qm.create_queue(r".\private$\a", QueueProps::default())
        .unwrap();
    qm.create_queue(r".\private$\b", QueueProps::default())
        .unwrap();
    let triggers = Triggers::start(&qm).unwrap();
    let add = |name: &str, q: &str, p| triggers.add_trigger(TriggerDef::new(name, q, p));
    add("p1", r".\private$\a", Processing::Peek).unwrap();
    add("p2", r".\PRIVATE$\A", Processing::Peek).unwrap();
    let e = add("r1", r".\private$\a", Processing::Retrieval).unwrap_err();
    assert!(
        e.detail().contains("MQTRIG_ERROR_MULTIPLE_RECEIVE_TRIGGER"),
        "{e}"
    );
    add("r2", r".\private$\b", Processing::Retrieval).unwrap();
    for p in [Processing::Peek, Processing::Retrieval] {
        let e = add("again", r".\private$\b", p).unwrap_err();
        assert!(
            e.detail().contains("MQTRIG_ERROR_MULTIPLE_RECEIVE_TRIGGER"),
            "{e}"
        );
    }
    assert_eq!(triggers.triggers().len(), 3, "refusals changed nothing");
}

#[test]
fn bad_definitions_are_refused_with_msmq_codes() {
    let qm = QueueManager::new();
    qm.create_queue(r".\private$\plain", QueueProps::default())
        .unwrap();
    let triggers = Triggers::start(&qm).unwrap();
    let long = "n".repeat(129);
    let e = RuleDef::parse(&long, "", "", "EXE\t/bin/true")
        .and_then(|d| triggers.add_rule(d))
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidParameter);
    rule(&triggers, "r", "", "EXE\t/bin/true");
    let dup = RuleDef::parse("r", "", "", "EXE\t/bin/true").unwrap();
    assert!(triggers
        .add_rule(dup)
        .unwrap_err()
        .detail()
        .contains("exists"));
    for (what, def, expected) in [
        (
            "a missing queue",
            TriggerDef::new("t", r".\private$\missing", Processing::Peek),
            ErrorCode::QueueNotFound,
        ),
        (
            "a format name",
            TriggerDef::new("t", r"DIRECT=OS:.\private$\plain", Processing::Peek),
            ErrorCode::IllegalQueuePathname,
        ),
        (
            "transactional retrieval of a non-transactional queue",
            TriggerDef::new("t", r".\private$\plain", Processing::TransactionalRetrieval),
            ErrorCode::TransactionUsage,
        ),
        (
            "a 129-character name",
            TriggerDef::new(&long, r".\private$\plain", Processing::Peek),
            ErrorCode::InvalidParameter,
        ),
    ] {
        assert_eq!(
            triggers.add_trigger(def).unwrap_err().code(),
            expected,
            "{what}"
        );
    }
    assert_eq!(
        triggers.attach_rule("nope", "r").unwrap_err().code(),
        ErrorCode::InvalidParameter
    );
    assert!(triggers.triggers().is_empty());
}

#[test]
fn disabling_stops_a_trigger_and_enabling_starts_it_from_the_head() {
    let qm = QueueManager::new();
    let q = qm
        .create_queue(r".\private$\e", QueueProps::default())
        .unwrap();
    let (calls, triggers) = recording(&qm, |_| Ok(()));
    rule(&triggers, "all", "", "COM\tT.H\tGo");
    let mut def = TriggerDef::new("t", r".\private$\e", Processing::Peek);
    def.enabled = false;
    triggers.add_trigger(def).unwrap();
    triggers.attach_rule("t", "all").unwrap();
    q.send(labelled("a"), Tx::None).unwrap();
    assert!(!triggers.stats("t").unwrap().running);
    triggers.set_enabled("t", true).unwrap();
    eventually("it runs", || calls.lock().unwrap().len() == 1);
    triggers.set_enabled("t", false).unwrap();
    assert!(!triggers.stats("t").unwrap().running);
    q.send(labelled("b"), Tx::None).unwrap();
    triggers.set_enabled("t", true).unwrap();
    eventually("both are seen again", || calls.lock().unwrap().len() == 3);
    // Not serialized: the second walk's two actions may finish in either order.
    let mut calls = calls.lock().unwrap().clone();
    calls[1..].sort();
    assert_eq!(calls, ["a", "a", "b"]);
    // Deleting the rule detaches it.
    triggers.delete_rule("all").unwrap();
    assert!(triggers.trigger("t").unwrap().rules.is_empty());
    triggers.delete_trigger("t").unwrap();
    assert!(triggers.triggers().is_empty());
}

#[test]
fn a_trigger_watches_the_dead_letter_queue() {
    let (qm, clock) = manual();
    let q = qm
        .create_queue(r".\private$\short", QueueProps::default())
        .unwrap();
    let (calls, triggers) = recording(&qm, |_| Ok(()));
    rule(&triggers, "all", "", "COM\tT.H\tGo");
    trigger(
        &triggers,
        "dlq",
        r".\DEADLETTER$",
        Processing::Retrieval,
        &["all"],
    );
    let msg = labelled("expired")
        .with_time_to_be_received(Duration::from_secs(1))
        .with_journal(JournalFlags::DEADLETTER);
    q.send(msg, Tx::None).unwrap();
    clock.advance(Duration::from_secs(2));
    eventually("the dead letter is retrieved", || {
        *calls.lock().unwrap() == ["expired"] && triggers.stats("dlq").unwrap().retrieved == 1
    });
    assert!(qm.open(r".\DEADLETTER$").unwrap().is_empty().unwrap());
}

#[test]
fn a_trigger_walks_its_queue_from_the_head_once_it_has_a_rule() {
    let qm = QueueManager::new();
    let q = qm
        .create_queue(r".\private$\late", QueueProps::default())
        .unwrap();
    q.send(labelled("waiting"), Tx::None).unwrap();
    let (calls, triggers) = recording(&qm, |_| Ok(()));
    triggers
        .add_trigger(TriggerDef::new(
            "t",
            r".\private$\late",
            Processing::Retrieval,
        ))
        .unwrap();
    // Nothing to evaluate yet: no walk that could pass the waiting message by.
    assert!(!triggers.stats("t").unwrap().running);
    rule(&triggers, "all", "", "COM\tT.H\tGo");
    triggers.attach_rule("t", "all").unwrap();
    eventually("the waiting message is retrieved", || q.is_empty().unwrap());
    assert_eq!(*calls.lock().unwrap(), ["waiting"]);
}

#[test]
fn triggers_watch_every_system_queue_by_path() {
    let qm = QueueManager::new();
    qm.create_queue(
        r".\private$\j",
        QueueProps {
            journal: true,
            ..QueueProps::default()
        },
    )
    .unwrap();
    let triggers = Triggers::start(&qm).unwrap();
    for (i, path) in [
        r".\JOURNAL$",
        r".\DEADLETTER$",
        r".\XACTDEADLETTER$",
        r".\system$;DEADXACT",
        r".\private$\j\JOURNAL$",
    ]
    .into_iter()
    .enumerate()
    {
        let t = triggers
            .add_trigger(TriggerDef::new(&format!("t{i}"), path, Processing::Peek))
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        // Kept in canonical form, naming the same queue.
        assert_eq!(
            QueueName::parse_path(&t.def.queue).unwrap(),
            QueueName::parse_path(path).unwrap(),
            "{path} stored as {}",
            t.def.queue
        );
    }
}

#[test]
fn replacing_the_rule_list_keeps_the_walk() {
    let qm = QueueManager::new();
    let q = qm
        .create_queue(r".\private$\keepwalk", QueueProps::default())
        .unwrap();
    q.send(labelled("seen"), Tx::None).unwrap();
    let (calls, triggers) = recording(&qm, |_| Ok(()));
    rule(&triggers, "a", "", "COM\tT.H\tGo");
    rule(&triggers, "b", "", "COM\tT.H\tGo");
    trigger(
        &triggers,
        "t",
        r".\private$\keepwalk",
        Processing::Peek,
        &["a"],
    );
    eventually("the message is seen", || calls.lock().unwrap().len() == 1);
    let t = triggers.set_rules("t", &["b", "a"]).unwrap();
    let ids: Vec<_> = ["b", "a"]
        .iter()
        .map(|r| triggers.rule(r).unwrap().id)
        .collect();
    assert_eq!(t.rules, ids);
    assert!(triggers.set_rules("t", &["a", "a"]).is_err());
    assert!(triggers.set_rules("t", &["a", "nope"]).is_err());
    // The next arrival runs both rules; the message already seen is not run again.
    q.send(labelled("new"), Tx::None).unwrap();
    eventually("the arrival runs both rules", || {
        calls.lock().unwrap().len() == 3
    });
    assert_eq!(*calls.lock().unwrap(), ["seen", "new", "new"]);
    assert_eq!(
        triggers.trigger("t").unwrap().rules,
        ids,
        "refusals changed nothing"
    );
}
