//! The properties every input has, on random text: no panic, and a parsed name's canonical
//! display parses back to an equal name.

use super::*;

/// Text fragments that make random strings likely to be, or nearly be, queue names.
const FRAGMENTS: &[&str] = &[
    "FormatName:",
    "DIRECT=",
    "TCP:",
    "OS:",
    "HTTP://",
    "HTTPS://",
    "PRIVATE=",
    "PUBLIC=",
    "MACHINE=",
    "\\",
    "/",
    ";",
    ":",
    "private$",
    "PRIVATE$",
    "system$",
    "SYSTEM$;",
    "JOURNAL",
    "journal",
    "JOURNAL$",
    "DEADLETTER",
    "DEADXACT",
    "DEADLETTER$",
    "XACTDEADLETTER$",
    "msmq",
    "MSMQ/",
    ".",
    "host",
    "1.2.3.4",
    "[::1]",
    ":443",
    "q",
    "Orders",
    "poison",
    "01234567-89ab-cdef-0123-456789abcdef",
    "{01234567-89AB-CDEF-0123-456789ABCDEF}",
    "1a",
    "0000000f",
    "\u{e9}",
    " ",
    ",",
    "=",
];

/// Random text built mostly from grammar fragments.
fn grammar_like() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        4 => prop::sample::select(FRAGMENTS).prop_map(str::to_owned),
        1 => "[a-zA-Z0-9.:;$/\\\\{}=,-]{1,4}",
        1 => any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(fragment, 0..10).prop_map(|parts| parts.concat())
}

/// Random text shaped like the common forms, so that most of it parses.
fn likely_valid() -> impl Strategy<Value = String> {
    let name = "[a-zA-Z0-9_.$-]{1,12}";
    let suffix = prop_oneof![
        Just(String::new()),
        "[a-zA-Z0-9_]{1,6}".prop_map(|s| format!(";{s}")),
        Just(";JOURNAL".to_owned()),
        Just("\\JOURNAL$".to_owned()),
    ];
    let prefix = prop::sample::select(vec![
        ".\\",
        "host\\",
        ".\\private$\\",
        "HOST\\PRIVATE$\\",
        "DIRECT=OS:host\\private$\\",
        "FormatName:direct=tcp:10.1.2.3\\",
        "DIRECT=HTTP://h:80/msmq/private$/",
        "DIRECT=HTTPS://h\\MSMQ\\",
    ]);
    let named = (prefix, name, suffix).prop_map(|(p, n, s)| format!("{p}{n}{s}"));
    let by_guid = (
        prop::sample::select(vec!["PRIVATE", "Public", "machine"]),
        prop::sample::select(vec![G, G_BRACED]),
        "[0-9a-fA-F]{1,9}",
        prop::sample::select(vec!["", ";JOURNAL", ";deadletter", ";DEADXACT", ";x"]),
    )
        .prop_map(|(kind, guid, id, suffix)| {
            if kind == "PRIVATE" {
                format!("{kind}={guid}\\{id}{suffix}")
            } else {
                format!("{kind}={guid}{suffix}")
            }
        });
    prop_oneof![3 => named, 1 => by_guid]
}

/// The properties every input must have: no panic, and if it parses, a canonical
/// display that parses back to an equal name, insensitivity to case, and derived names
/// that round-trip too.
fn check_properties(text: &str) {
    let parsed = QueueName::parse(text);
    let as_path = QueueName::parse_path(text);
    let name = match parsed {
        Ok(name) => name,
        Err(e) => {
            assert!(
                matches!(
                    e.code(),
                    ErrorCode::IllegalQueuePathname | ErrorCode::IllegalFormatname
                ),
                "{e}"
            );
            assert!(!e.detail().is_empty());
            assert!(as_path.is_err());
            return;
        }
    };
    assert_eq!(as_path.is_ok(), !name.is_format_name(), "`{text}`");
    let shown = name.to_string();
    let again = QueueName::parse(&shown).unwrap_or_else(|e| panic!("`{shown}`: {e}"));
    assert_eq!(again, name, "`{text}` displays as `{shown}`");
    assert_eq!(hash_of(&again), hash_of(&name));
    assert_eq!(again.to_string(), shown, "display is a fixed point");
    for variant in [text.to_ascii_uppercase(), text.to_ascii_lowercase()] {
        let other = QueueName::parse(&variant).unwrap_or_else(|e| panic!("`{variant}`: {e}"));
        assert_eq!(other, name, "`{variant}` == `{text}`");
        assert_eq!(hash_of(&other), hash_of(&name));
    }
    let journal = name.journal();
    assert_eq!(QueueName::parse(&journal.to_string()).ok(), Some(journal));
    if let Ok(sub) = name.with_subqueue("poison") {
        assert_eq!(QueueName::parse(&sub.to_string()).ok(), Some(sub));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        check_properties(&text);
    }

    #[test]
    fn grammar_like_text_round_trips(text in grammar_like()) {
        check_properties(&text);
    }

    #[test]
    fn likely_valid_text_round_trips(text in likely_valid()) {
        check_properties(&text);
    }
}
