//! Names the grammar refuses: the code and detail of each refusal, the length limits, and
//! hostile inputs that must be refused without a panic.

use super::*;

/// Inputs `parse` must refuse, with the code and a fragment of the detail sentence.
fn refused() -> Vec<(String, ErrorCode, &'static str)> {
    use ErrorCode::{IllegalFormatname as F, IllegalQueuePathname as P};
    let long = |n| "a".repeat(n);
    vec![
        // Path names.
        (String::new(), P, "the path name is empty"),
        (
            "q".into(),
            P,
            "no `\\` between the computer name and the queue name",
        ),
        (r"\private$\q".into(), P, "computer name is empty"),
        (r".\".into(), P, "queue name is missing"),
        (r".\private$\".into(), P, "ends with a separator"),
        (r".\private$\q\".into(), P, "ends with a separator"),
        (r".\\q".into(), P, "two separators in a row"),
        (r".\private$".into(), P, "`private$` must be followed"),
        (r".\private$\q;".into(), P, "subqueue name is empty"),
        (r".\private$\;sub".into(), P, "queue name is empty"),
        (r".\private$\a;b;c".into(), P, "more than one `;`"),
        (
            r".\private$\q;JOURNAL".into(),
            P,
            "suffix keyword and cannot name a subqueue",
        ),
        (
            r".\private$\q;deadletter".into(),
            P,
            "suffix keyword and cannot name a subqueue",
        ),
        (
            r".\private$\q;sub\JOURNAL$".into(),
            P,
            "a subqueue has no journal",
        ),
        (
            r"HOST\q;sub\JOURNAL$".into(),
            P,
            "a subqueue has no journal",
        ),
        (
            r"HOST\system$;JOURNAL;sub".into(),
            P,
            "system queues have no subqueues",
        ),
        (
            r"HOST\system$".into(),
            P,
            "`system$` must be followed by `;JOURNAL`",
        ),
        (r"HOST\system$;".into(), P, "`` is not a system queue"),
        (r"HOST\system$;FOO".into(), P, "`FOO` is not a system queue"),
        (
            r"HOST\system$;JOURNAL\JOURNAL$".into(),
            P,
            "system queues have no journal",
        ),
        (
            r"HOST\system$\JOURNAL$".into(),
            P,
            "system queues have no journal",
        ),
        (
            r"HOST\JOURNAL$\JOURNAL$".into(),
            P,
            "reserved in path names",
        ),
        (r"HOST\DEADLETTER$;x".into(), P, "reserved in path names"),
        (r"HOST\private$\q\x".into(), P, "`x` follows the queue name"),
        (r"HOST\q\x".into(), P, "`x` follows the queue name"),
        (
            r"HOST\a\b\c".into(),
            P,
            "`a` stands where only `private$` may",
        ),
        (r"HOST\private$\q\JOURNAL$\x".into(), P, "too many"),
        (
            format!(r".\private$\{}", long(125)),
            P,
            "queue name has 125 characters; the limit is 124",
        ),
        (
            format!(r".\{}\JOURNAL$", long(125)),
            P,
            "queue name has 125 characters; the limit is 124",
        ),
        (
            format!(r".\private$\q;{}", long(33)),
            P,
            "subqueue name has 33 characters; the limit is 32",
        ),
        (
            format!(r"{}\q", long(257)),
            P,
            "computer name has 257 characters; the limit is 256",
        ),
        (
            r".\private$\my queue".into(),
            P,
            "queue name contains a space",
        ),
        (r".\private$\a+b".into(), P, "queue name contains `+`"),
        (r".\private$\a,b".into(), P, "queue name contains `,`"),
        (".\\private$\\a\"b".into(), P, "queue name contains `\"`"),
        (".\\private$\\a\tb".into(), P, "queue name contains U+0009"),
        (
            ".\\private$\\caf\u{e9}".into(),
            P,
            "queue name contains U+00E9",
        ),
        (
            ".\\private$\\q;\u{1F600}".into(),
            P,
            "subqueue name contains U+1F600",
        ),
        ("h\u{e9}\\q".into(), P, "computer name contains U+00E9"),
        (r"my host\q".into(), P, "computer name contains a space"),
        // Format names.
        ("FormatName:".into(), F, "the format name is empty"),
        (r"FormatName:.\private$\q".into(), F, "there is no `=`"),
        ("DIRECT=".into(), F, "must be followed by a protocol"),
        (
            r"DIRECT=FOO:host\q".into(),
            F,
            "`FOO` is not a DIRECT protocol",
        ),
        (
            r"DIRECT=SPX:host\q".into(),
            F,
            "`SPX` is not a DIRECT protocol",
        ),
        (r"DIRECT=IPX:00000001:000000000001\q".into(), F, "IPX"),
        (
            "DIRECT=OS:host".into(),
            F,
            "no `\\` between the address and the queue name",
        ),
        (r"DIRECT=OS:\q".into(), F, "computer name is empty"),
        (r"DIRECT=OS:host\".into(), F, "queue name is missing"),
        (
            r"DIRECT=OS:host\private$\".into(),
            F,
            "ends with a separator",
        ),
        (
            r"DIRECT=OS:host\private$".into(),
            F,
            "`private$` must be followed",
        ),
        (
            r"DIRECT=OS:host\private$\q;poison;JOURNAL".into(),
            F,
            "a subqueue has no journal",
        ),
        (
            r"DIRECT=OS:host\private$\q;JOURNAL;poison".into(),
            F,
            "journal has no subqueues",
        ),
        (
            r"DIRECT=OS:host\private$\q;a;b;c".into(),
            F,
            "more than one `;` suffix",
        ),
        (
            r"DIRECT=OS:host\private$\q;DEADLETTER".into(),
            F,
            "does not apply to a queue",
        ),
        (
            r"DIRECT=OS:host\private$\q;".into(),
            F,
            "subqueue name is empty",
        ),
        (
            r"DIRECT=OS:host\private$\q;XactOnly".into(),
            F,
            "does not apply to a queue",
        ),
        (
            r"DIRECT=OS:host\system$;JOURNAL;sub".into(),
            F,
            "system queues have no subqueues",
        ),
        (
            r"DIRECT=OS:host\system$;BOGUS".into(),
            F,
            "`BOGUS` is not a system queue",
        ),
        (
            r"DIRECT=OS:host\x\q".into(),
            F,
            "`x` stands where only `private$` may",
        ),
        (r"DIRECT=OS:host\private$\q\JOURNAL$".into(), F, "too many"),
        (
            r"DIRECT=OS:host\system$".into(),
            F,
            "`system$` must be followed",
        ),
        (
            r"DIRECT=TCP:host\q".into(),
            F,
            "`host` is not an IP address",
        ),
        (r"DIRECT=TCP:1.2.3\q".into(), F, "not an IP address"),
        (r"DIRECT=TCP:1.2.3.4:1801\q".into(), F, "not an IP address"),
        (
            r"DIRECT=TCP:\q".into(),
            F,
            "the address after DIRECT=TCP: is empty",
        ),
        (
            "DIRECT=HTTP:host/msmq/q".into(),
            F,
            "must be followed by `//`",
        ),
        (
            "DIRECT=HTTP://host".into(),
            F,
            "`/msmq/` and a queue name must follow the host",
        ),
        (
            "DIRECT=HTTP://host/q".into(),
            F,
            "`/msmq/` must follow the host",
        ),
        (
            "DIRECT=HTTP://host/msmq".into(),
            F,
            "a queue name must follow `/msmq/`",
        ),
        (
            "DIRECT=HTTP://host/msmq/".into(),
            F,
            "ends with a separator",
        ),
        (
            "DIRECT=HTTP://host//msmq/q".into(),
            F,
            "two separators in a row",
        ),
        (
            "DIRECT=HTTP://host:99999/msmq/q".into(),
            F,
            "`99999` is not a port number",
        ),
        (
            "DIRECT=HTTP://host:/msmq/q".into(),
            F,
            "`` is not a port number",
        ),
        (
            "DIRECT=HTTP://host:8x/msmq/q".into(),
            F,
            "`8x` is not a port number",
        ),
        ("DIRECT=HTTP:///msmq/q".into(), F, "host name is empty"),
        ("DIRECT=HTTP://[zz]/msmq/q".into(), F, "not an IPv6 address"),
        ("DIRECT=HTTP://[::1/msmq/q".into(), F, "unmatched `[`"),
        (
            "DIRECT=HTTP://[::1]x/msmq/q".into(),
            F,
            "only `:port` may follow",
        ),
        (
            "DIRECT=HTTP://host/msmq/private$/q/JOURNAL$".into(),
            F,
            "too many",
        ),
        (
            "DIRECT=HTTP://host/msmq/x/q".into(),
            F,
            "`x` stands where only `private$` may",
        ),
        (
            format!("PRIVATE={G}"),
            F,
            "must be followed by the computer GUID, `\\`",
        ),
        (
            format!(r"PRIVATE={G}\"),
            F,
            "the private queue number after `\\` is empty",
        ),
        (
            format!(r"PRIVATE={G}\xyz"),
            F,
            "`xyz` is not a hexadecimal private queue number",
        ),
        (format!(r"PRIVATE={G}\+1"), F, "`+1` is not a hexadecimal"),
        (
            format!(r"PRIVATE={G}\123456789"),
            F,
            "has 9 digits; the limit is 8",
        ),
        (
            format!(r"PRIVATE={G}\1;poison"),
            F,
            "accept only the `;JOURNAL` suffix",
        ),
        (
            r"PRIVATE=not-a-guid\1".into(),
            F,
            "`not-a-guid` is not a GUID",
        ),
        (
            r"PRIVATE={01234567-89ab-cdef-0123-456789abcdef\1".into(),
            F,
            "is not a GUID",
        ),
        ("PUBLIC=".into(), F, "`` is not a GUID"),
        (
            format!("PUBLIC={G};sub"),
            F,
            "accept only the `;JOURNAL` suffix, not `;sub`",
        ),
        (format!("PUBLIC={G}}}"), F, "is not a GUID"),
        (
            "PUBLIC=0123456789abcdef0123456789abcdef".into(),
            F,
            "is not a GUID",
        ),
        (
            "PUBLIC=0123456g-89ab-cdef-0123-456789abcdef".into(),
            F,
            "is not a GUID",
        ),
        (
            format!("MACHINE={G}"),
            F,
            "MACHINE= names a queue only with a",
        ),
        (
            format!("MACHINE={G};FOO"),
            F,
            "`;FOO` is not a system queue",
        ),
        (format!("MACHINE={G};JOURNAL;x"), F, "is not a system queue"),
        (
            format!("DL={G}"),
            F,
            "DL= format names do not name one queue",
        ),
        (
            format!("connector={G}"),
            F,
            "CONNECTOR= format names do not name one queue",
        ),
        (
            "MULTICAST=234.1.1.1:8001".into(),
            F,
            "MULTICAST= format names",
        ),
        ("FOO=bar".into(), F, "`FOO=` is not a format name type"),
        (r"DIRECT=OS:a\q,DIRECT=OS:b\q".into(), F, "multiple-element"),
        (
            format!(r"DIRECT=OS:host\private$\{}", long(125)),
            F,
            "queue name has 125 characters; the limit is 124",
        ),
        (
            format!(r"DIRECT=OS:host\private$\q;{}", long(33)),
            F,
            "subqueue name has 33 characters; the limit is 32",
        ),
        (
            format!(r"DIRECT=OS:{}\q", long(257)),
            F,
            "computer name has 257 characters; the limit is 256",
        ),
        (
            format!("DIRECT=HTTP://{}/msmq/q", long(257)),
            F,
            "host name has 257 characters; the limit is 256",
        ),
        (
            r"DIRECT=OS:host\private$\my q".into(),
            F,
            "queue name contains a space",
        ),
        ("DIRECT=OS:host\\private$\\q\u{e9}".into(), F, "U+00E9"),
        (
            r"DIRECT=OS:host\private$".into(),
            F,
            "`private$` must be followed",
        ),
        (
            r"DIRECT=OS:host\system$x;JOURNAL;y".into(),
            F,
            "journal has no subqueues",
        ),
        (
            r"DIRECT=OS:host\JOURNAL$".into(),
            F,
            "reserved in path names",
        ),
    ]
}

#[test]
fn refusals_carry_the_right_code_and_say_what_is_wrong() {
    for (input, code, fragment) in refused() {
        match QueueName::parse(&input) {
            Ok(name) => panic!("`{input}` must be refused, but parsed as `{name}`"),
            Err(e) => {
                assert_eq!(e.code(), code, "code for `{input}`: {e}");
                assert!(
                    e.detail().contains(fragment),
                    "detail for `{input}` should contain `{fragment}`: {}",
                    e.detail()
                );
                assert!(!e.detail().is_empty());
            }
        }
        // `parse_path` refuses the same text, always as a path name.
        let e = QueueName::parse_path(&input).expect_err(&input);
        assert_eq!(e.code(), ErrorCode::IllegalQueuePathname, "{input}");
    }
}

#[test]
fn parse_path_refuses_format_names() {
    for input in [
        r"DIRECT=OS:host\q",
        r"FormatName:DIRECT=OS:host\q",
        r"formatname:.\private$\q",
        &format!("PUBLIC={G}"),
        &format!(r"PRIVATE={G}\1"),
        &format!("MACHINE={G};JOURNAL"),
    ] {
        let e = QueueName::parse_path(input).expect_err(input);
        assert_eq!(e.code(), ErrorCode::IllegalQueuePathname, "{input}");
        assert!(e.detail().contains("format name"), "{}", e.detail());
    }
    let name = QueueName::parse_path(r".\private$\q").unwrap();
    assert!(!name.is_format_name());
}

#[test]
fn length_limits_hold_at_the_boundary() {
    let name_124 = "n".repeat(124);
    let sub_32 = "s".repeat(32);
    let computer_256 = "c".repeat(256);
    for ok in [
        format!(r".\private$\{name_124}"),
        format!(r".\{name_124}"),
        format!(r".\private$\{name_124}\JOURNAL$"),
        format!(r".\private$\{name_124};{sub_32}"),
        format!(r"{computer_256}\q"),
        format!(r"DIRECT=OS:host\private$\{name_124};{sub_32}"),
        format!(r"DIRECT=OS:{computer_256}\q"),
        format!("DIRECT=HTTP://{computer_256}:65535/msmq/{name_124}"),
        format!(r"PRIVATE={G}\12345678"),
    ] {
        let name = QueueName::parse(&ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        assert_eq!(QueueName::parse(&name.to_string()).unwrap(), name);
    }
    let name = QueueName::parse(&format!(r".\private$\{name_124};{sub_32}")).unwrap();
    assert_eq!(name.queue(), private(&name_124, Some(&sub_32), false));
    for (bad, fragment) in [
        (
            format!(r".\private$\{name_124}x"),
            "queue name has 125 characters; the limit is 124",
        ),
        (
            format!(r".\private$\q;{sub_32}x"),
            "subqueue name has 33 characters; the limit is 32",
        ),
        (
            format!(r"{computer_256}x\q"),
            "computer name has 257 characters; the limit is 256",
        ),
        (
            format!(r"DIRECT=OS:h\{name_124}x;JOURNAL"),
            "queue name has 125 characters; the limit is 124",
        ),
        (
            format!(r"PRIVATE={G}\123456789"),
            "has 9 digits; the limit is 8",
        ),
    ] {
        let e = QueueName::parse(&bad).expect_err(&bad);
        assert!(e.detail().contains(fragment), "{}", e.detail());
    }
}

#[test]
fn error_text_names_code_and_input() {
    let input = format!(r".\private$\{}", "a".repeat(125));
    let e = QueueName::parse(&input).unwrap_err();
    let text = e.to_string();
    assert!(text.starts_with("MQ_ERROR_ILLEGAL_QUEUE_PATHNAME (0xC00E0014): path name `"));
    assert!(text.ends_with("`: queue name has 125 characters; the limit is 124"));
    // A huge input is quoted only in part, and control characters are escaped.
    let huge = format!("{}\u{7}\\q", "x".repeat(10_000));
    let e = QueueName::parse(&huge).unwrap_err();
    assert!(e.detail().len() < 400, "{}", e.detail());
    assert!(e.detail().contains("..."));
    let e = QueueName::parse("a\u{7}b\\q").unwrap_err();
    assert!(e.detail().contains(r"a\u{7}b"), "{}", e.detail());
}

#[test]
fn hostile_inputs_do_not_panic() {
    for input in [
        "\u{0}",
        "\\",
        "\\\\",
        ";",
        "=",
        "{",
        "}",
        "[",
        "\u{e9}\\\u{e9}",
        "\u{e9}=x",
        "FORMATNAM\u{e9}:",
        "FormatName\u{e9}DIRECT=OS:h\\q",
        "FormatName:\u{e9}",
        "DIRECT=\u{e9}",
        "DIRECT=OS:\u{e9}\\q",
        "DIRECT=TCP:\u{e9}\\q",
        "DIRECT=HTTP://\u{e9}/msmq/q",
        "DIRECT=HTTP://[\u{e9}]/msmq/q",
        "DIRECT=HTTP://[\u{e9}/msmq/q",
        "DIRECT=HTTP://h:\u{e9}/msmq/q",
        "DIRECT=HTTP://h/msm\u{e9}/q",
        "DIRECT=HTTP://",
        "DIRECT=HTTP:/",
        "DIRECT=:",
        "PRIVATE=\u{e9}\\\u{e9}",
        "PRIVATE={\u{e9}}\\1",
        "PRIVATE=\\",
        "PUBLIC={",
        "PUBLIC={}",
        "PUBLIC=}",
        "MACHINE=;",
        "h\\privat\u{e9}$\\q",
        "h\\system\u{e9};JOURNAL",
        "h\\system$;JOURNAL\u{e9}",
        "h\\q;\u{0}",
    ] {
        assert!(
            QueueName::parse(input).is_err(),
            "`{input}` must be refused"
        );
        assert!(
            QueueName::parse_path(input).is_err(),
            "`{input}` must be refused"
        );
    }
}

/// Found by the `catalog` fuzz target: `try_private` built names from parts that do not read back
/// as themselves (a computer name with a separator, or one that reads as a format name type).
#[test]
fn try_private_refuses_parts_that_do_not_read_back() {
    for computer in [r"host\private$\x", "loca=host", "DIRECT=OS:x"] {
        let e = QueueName::try_private(computer, "q").unwrap_err();
        assert_eq!(e.code(), ErrorCode::IllegalQueuePathname, "{computer}: {e}");
    }
    for name in ["", r"a\b"] {
        assert!(QueueName::try_private("host", name).is_err(), "{name:?}");
    }
    let q = QueueName::try_private("host", "orders").unwrap();
    assert_eq!(QueueName::parse(&q.to_string()).unwrap(), q);
}
