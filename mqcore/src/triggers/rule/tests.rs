//! Tests of MSMQ Triggers' stored strings: conditions, actions and parameters parsed and written
//! exactly, and every limit and refusal.

use super::*;

fn msg(label: &str, body: Option<&str>, priority: u8, app: u32) -> Message {
    let mut m = match body {
        Some(text) => Message::text(text),
        None => Message::new(&b"raw bytes body"[..]),
    };
    m.label = label.to_owned();
    m.priority = priority;
    m.app_specific = app;
    m
}

/// Each operator: its stored form, the form read back, and a message it holds for and one it
/// does not.
#[test]
fn every_operator_parses_formats_and_evaluates() {
    let other = Uuid::from_u128(7);
    let cases: Vec<(&str, Message, Message)> = vec![
        (
            "$MSG_LABEL_CONTAINS=Stage",
            msg("a Stage b", None, 3, 0),
            msg("a stage b", None, 3, 0),
        ),
        (
            "$MSG_LABEL_DOES_NOT_CONTAIN=Stage",
            msg("stage", None, 3, 0),
            msg("Stage", None, 3, 0),
        ),
        (
            "$MSG_BODY_CONTAINS=needle",
            msg("", Some("hay needle hay"), 3, 0),
            msg("", Some("hay"), 3, 0),
        ),
        (
            "$MSG_BODY_DOES_NOT_CONTAIN=needle",
            msg("", Some("hay"), 3, 0),
            msg("", Some("needle"), 3, 0),
        ),
        (
            "$MSG_PRIORITY_EQUALS=5",
            msg("", None, 5, 0),
            msg("", None, 4, 0),
        ),
        (
            "$MSG_PRIORITY_NOT_EQUAL=5",
            msg("", None, 4, 0),
            msg("", None, 5, 0),
        ),
        (
            "$MSG_PRIORITY_GREATER_THAN=5",
            msg("", None, 6, 0),
            msg("", None, 5, 0),
        ),
        (
            "$MSG_PRIORITY_LESS_THAN=5",
            msg("", None, 4, 0),
            msg("", None, 5, 0),
        ),
        (
            "$MSG_APPSPECIFIC_EQUALS=42",
            msg("", None, 3, 42),
            msg("", None, 3, 41),
        ),
        (
            "$MSG_APPSPECIFIC_NOT_EQUAL=42",
            msg("", None, 3, 41),
            msg("", None, 3, 42),
        ),
        (
            "$MSG_APPSPECIFIC_GREATER_THAN=42",
            msg("", None, 3, 43),
            msg("", None, 3, 42),
        ),
        (
            "$MSG_APPSPECIFIC_LESS_THAN=42",
            msg("", None, 3, 41),
            msg("", None, 3, 42),
        ),
        (
            "$MSG_SRCMACHINEID_EQUALS={00000000-0000-0000-0000-000000000000}",
            msg("", None, 3, 0),
            {
                let mut m = msg("", None, 3, 0);
                m.source_machine = other;
                m
            },
        ),
        (
            "$MSG_SRCMACHINEID_NOT_EQUAL={00000000-0000-0000-0000-000000000007}",
            msg("", None, 3, 0),
            {
                let mut m = msg("", None, 3, 0);
                m.source_machine = other;
                m
            },
        ),
    ];
    assert_eq!(cases.len(), 14);
    let mut tokens = Vec::new();
    for (text, yes, no) in &cases {
        let c = Condition::parse(text).unwrap();
        assert_eq!(c.to_string(), *text, "stored form of {text}");
        assert!(c.holds(yes), "{text} should hold for {yes:?}");
        assert!(!c.holds(no), "{text} should not hold for {no:?}");
        tokens.push(c.token());
    }
    assert_eq!(tokens, Condition::operators());
}

#[test]
fn does_not_equal_is_read_and_not_equal_written() {
    let c = parse_conditions("$MSG_PRIORITY_DOES_NOT_EQUAL=2\t$MSG_APPSPECIFIC_DOES_NOT_EQUAL=3\t")
        .unwrap();
    assert_eq!(
        c,
        vec![
            Condition::PriorityNotEqual(2),
            Condition::AppSpecificNotEqual(3)
        ]
    );
    assert_eq!(
        format_conditions(&c),
        "$MSG_PRIORITY_NOT_EQUAL=2\t$MSG_APPSPECIFIC_NOT_EQUAL=3\t"
    );
}

#[test]
fn condition_strings_round_trip_and_read_trigadm_form() {
    let text = "$MSG_LABEL_CONTAINS=Stage\t$MSG_PRIORITY_GREATER_THAN=3\t";
    let c = parse_conditions(text).unwrap();
    assert_eq!(format_conditions(&c), text);
    // Without the final TAB, and trigadm's `;` separators.
    assert_eq!(
        parse_conditions("$MSG_LABEL_CONTAINS=Stage").unwrap(),
        c[..1]
    );
    assert_eq!(
        parse_conditions("$MSG_LABEL_CONTAINS=Stage;$MSG_PRIORITY_GREATER_THAN=3").unwrap(),
        c
    );
    // Tokens in any case; values keep '=' after the first.
    assert_eq!(
        parse_conditions("$msg_label_contains=a=b\t").unwrap(),
        vec![Condition::LabelContains("a=b".into())]
    );
    assert!(parse_conditions("").unwrap().is_empty());
}

#[test]
fn label_conditions_are_case_sensitive_and_body_ones_need_a_string_body() {
    let c = Condition::LabelContains("go".into());
    assert!(c.holds(&msg("go now", None, 3, 0)));
    assert!(!c.holds(&msg("GO NOW", None, 3, 0)));
    // A byte body is neither containing nor lacking anything.
    let bytes = msg("", None, 3, 0);
    assert!(!Condition::BodyContains("raw".into()).holds(&bytes));
    assert!(!Condition::BodyDoesNotContain("zzz".into()).holds(&bytes));
    let mut bstr = Message::text("raw");
    bstr.body_type = crate::message::VT_BSTR;
    assert!(Condition::BodyContains("raw".into()).holds(&bstr));
}

#[test]
fn bad_conditions_are_refused_with_a_reason() {
    for (text, says) in [
        ("$MSG_LABEL_STARTS=x\t", "unknown condition"),
        ("$MSG_PRIORITY_EQUALS=high\t", "whole number"),
        ("$MSG_SRCMACHINEID_EQUALS=nope\t", "GUID"),
        ("MSG_LABEL_CONTAINS\t", "no '='"),
    ] {
        let e = parse_conditions(text).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidParameter, "{text}");
        assert!(e.to_string().contains(says), "{text}: {e}");
    }
    let long = format!("$MSG_LABEL_CONTAINS={}\t", "x".repeat(500));
    assert!(parse_conditions(&long)
        .unwrap_err()
        .to_string()
        .contains("512"));
}

#[test]
fn actions_parse_and_format_exactly() {
    let exe = "EXE\t/usr/bin/touch\t\"/tmp/f\"\t$MSG_LABEL\t42\t-7\t2.5";
    let a = Action::parse(exe).unwrap();
    assert_eq!(
        a,
        Action::Exe {
            path: "/usr/bin/touch".into(),
            params: vec![
                Param::Text("/tmp/f".into()),
                Param::MsgLabel,
                Param::Number("42".into()),
                Param::Number("-7".into()),
                Param::Number("2.5".into()),
            ],
        }
    );
    assert_eq!(a.to_string(), exe);
    // A trailing TAB (as a PowerShell deployment script writes) is read and not written.
    assert_eq!(Action::parse(&format!("{exe}\t")).unwrap(), a);
    let com = "COM\tMy.Component\tOnMessage\t$MSG_BODY\t\"x y\"";
    assert_eq!(Action::parse(com).unwrap().to_string(), com);
    assert_eq!(
        Action::parse("COM;My.Component;OnMessage;\"arg\"")
            .unwrap()
            .to_string(),
        "COM\tMy.Component\tOnMessage\t\"arg\""
    );
    let http = "HTTP\thttp://127.0.0.1:9/hook\t$MSG_ID";
    assert_eq!(Action::parse(http).unwrap().to_string(), http);
}

#[test]
fn every_parameter_token_reads_and_writes() {
    let tokens: Vec<&str> = Param::tokens().collect();
    assert_eq!(tokens.len(), 18);
    for t in &tokens {
        let p = Param::parse(t).unwrap();
        assert_eq!(p.to_string(), *t);
        assert_eq!(Param::parse(&t.to_ascii_lowercase()).unwrap(), p);
    }
}

#[test]
fn literals_keep_what_is_between_the_quotes() {
    assert_eq!(Param::parse("\"a b\"").unwrap(), Param::Text("a b".into()));
    assert_eq!(Param::parse("\"\"").unwrap(), Param::Text(String::new()));
    assert_eq!(
        Param::parse("\"say \"hi\"\"").unwrap(),
        Param::Text("say \"hi\"".into())
    );
    assert_eq!(Param::Text("a b".into()).to_string(), "\"a b\"");
    assert!(Param::parse("\"open")
        .unwrap_err()
        .to_string()
        .contains("closing quote"));
    assert!(Param::parse("bare")
        .unwrap_err()
        .to_string()
        .contains("double quotes"));
    assert!(Param::parse("$MSG_NOPE")
        .unwrap_err()
        .to_string()
        .contains("unknown parameter"));
}

#[test]
fn bad_actions_are_refused_with_a_reason() {
    for (text, says) in [
        ("", "empty"),
        ("RUN\t/bin/true", "not EXE, COM or HTTP"),
        ("EXE", "path"),
        ("COM\tOnly.ProgId", "ProgID and a method"),
        ("HTTP\tftp://x", "not http"),
    ] {
        let e = Action::parse(text).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidParameter, "{text}");
        assert!(e.to_string().contains(says), "{text}: {e}");
    }
    let long = format!("EXE\t/{}", "x".repeat(520));
    assert!(Action::parse(&long)
        .unwrap_err()
        .to_string()
        .contains("512"));
}

fn any_condition() -> impl proptest::strategy::Strategy<Value = Condition> {
    use proptest::prelude::*;
    let text = "[^\t\r\n]{0,20}";
    prop_oneof![
        text.prop_map(Condition::LabelContains),
        text.prop_map(Condition::LabelDoesNotContain),
        text.prop_map(Condition::BodyContains),
        text.prop_map(Condition::BodyDoesNotContain),
        any::<i64>().prop_map(Condition::PriorityEquals),
        any::<i64>().prop_map(Condition::PriorityNotEqual),
        any::<i64>().prop_map(Condition::PriorityGreaterThan),
        any::<i64>().prop_map(Condition::PriorityLessThan),
        any::<i64>().prop_map(Condition::AppSpecificEquals),
        any::<i64>().prop_map(Condition::AppSpecificNotEqual),
        any::<i64>().prop_map(Condition::AppSpecificGreaterThan),
        any::<i64>().prop_map(Condition::AppSpecificLessThan),
        any::<u128>().prop_map(|g| Condition::SrcMachineIdEquals(Uuid::from_u128(g))),
        any::<u128>().prop_map(|g| Condition::SrcMachineIdNotEqual(Uuid::from_u128(g))),
    ]
}

proptest::proptest! {
    /// Whatever is written reads back the same (the stored form is the contract).
    #[test]
    fn written_conditions_read_back(list in proptest::collection::vec(any_condition(), 0..6)) {
        // An empty label value next to the `;` fallback is still TAB-separated here.
        let text = format_conditions(&list);
        proptest::prop_assume!(text.chars().count() <= MAX_CONDITION_LEN);
        proptest::prop_assert_eq!(parse_conditions(&text).unwrap(), list);
    }

    /// Hostile strings are refused or read, never a panic.
    #[test]
    fn arbitrary_strings_never_panic(text in "\\PC{0,80}|[$A-Z_=\t;\"0-9]{0,80}") {
        let _ = parse_conditions(&text);
        let _ = Action::parse(&text);
        let _ = Param::parse(&text);
        if let Ok(a) = Action::parse(&text) {
            proptest::prop_assert_eq!(Action::parse(&a.to_string()).unwrap(), a);
        }
    }
}

#[test]
fn rule_limits_are_msmqs() {
    let action = Action::parse("EXE\t/bin/true").unwrap();
    assert!(check_rule(&"n".repeat(128), &"d".repeat(255), &[], &action).is_ok());
    let e = check_rule(&"n".repeat(129), "", &[], &action).unwrap_err();
    assert!(e.to_string().contains("128"), "{e}");
    let e = check_rule("n", &"d".repeat(256), &[], &action).unwrap_err();
    assert!(e.to_string().contains("255"), "{e}");
    assert!(check_rule("", "", &[], &action).is_err());
    let tab = [Condition::LabelContains("a\tb".into())];
    assert!(check_rule("n", "", &tab, &action).is_err());
}

/// Found by the `rule` fuzz target: 512 characters whose last item has no TAB were accepted,
/// then stored as 513 (every stored item ends with a TAB), which the next read refused.
#[test]
fn the_condition_limit_counts_the_stored_form() {
    let item = "$MSG_LABEL_CONTAINS=";
    let fill = "x".repeat(MAX_CONDITION_LEN - item.len());
    let without_tab = format!("{item}{fill}");
    assert_eq!(without_tab.chars().count(), MAX_CONDITION_LEN);
    let e = parse_conditions(&without_tab).unwrap_err();
    assert_eq!(e.code(), crate::ErrorCode::InvalidParameter);
    assert!(e.to_string().contains("513"), "{e}");
    let fits = format!("{item}{}\t", &fill[1..]);
    let parsed = parse_conditions(&fits).unwrap();
    assert_eq!(format_conditions(&parsed), fits);
}
