//! Names derived from others: subqueues, journals, and `QueueName::private`.

use super::*;

#[test]
fn with_subqueue_names_a_subqueue_of_the_same_queue() {
    let cases = [
        (r".\private$\orders", "poison", r".\private$\orders;poison"),
        (
            r".\private$\orders;poison",
            "retry",
            r".\private$\orders;retry",
        ),
        (r"HOST\q", "s", r"HOST\q;s"),
        (
            r"DIRECT=OS:host\private$\q",
            "poison",
            r"DIRECT=OS:host\private$\q;poison",
        ),
        (
            "DIRECT=HTTP://h/msmq/q",
            "poison",
            "DIRECT=HTTP://h/msmq/q;poison",
        ),
    ];
    for (input, subqueue, display) in cases {
        let name = QueueName::parse(input).unwrap();
        let sub = name.with_subqueue(subqueue).unwrap();
        assert_eq!(sub.to_string(), display);
        assert_eq!(QueueName::parse(display).unwrap(), sub);
        assert_eq!(sub.host(), name.host());
    }
    let sub = QueueName::private(".", "orders")
        .with_subqueue("poison")
        .unwrap();
    assert_eq!(sub.queue(), private("orders", Some("poison"), false));
}

#[test]
fn with_subqueue_refusals() {
    use ErrorCode::{IllegalFormatname as F, IllegalQueuePathname as P};
    let sub_33 = "s".repeat(33);
    let cases: Vec<(String, &str, ErrorCode, &str)> = vec![
        (
            r"HOST\system$;JOURNAL".into(),
            "s",
            P,
            "system queues have no subqueues",
        ),
        (
            r"HOST\private$\q\JOURNAL$".into(),
            "s",
            P,
            "a queue journal has no subqueues",
        ),
        (
            r"DIRECT=OS:h\q;JOURNAL".into(),
            "s",
            F,
            "a queue journal has no subqueues",
        ),
        (
            r"DIRECT=OS:h\system$;DEADXACT".into(),
            "s",
            F,
            "system queues have no subqueues",
        ),
        (
            format!("MACHINE={G};DEADXACT"),
            "s",
            F,
            "system queues have no subqueues",
        ),
        (
            format!(r"PRIVATE={G}\1"),
            "s",
            F,
            "only in path names and DIRECT=",
        ),
        (
            format!("PUBLIC={G}"),
            "s",
            F,
            "only in path names and DIRECT=",
        ),
        (r".\private$\q".into(), "", P, "subqueue name is empty"),
        (
            r".\private$\q".into(),
            "a;b",
            P,
            "subqueue name contains `;`",
        ),
        (
            r".\private$\q".into(),
            "a\\b",
            P,
            "subqueue name contains `\\`",
        ),
        (
            r".\private$\q".into(),
            &sub_33,
            P,
            "subqueue name has 33 characters",
        ),
        (r".\private$\q".into(), "Journal", P, "suffix keyword"),
        (r"DIRECT=OS:h\q".into(), "JOURNAL", F, "suffix keyword"),
        (r"DIRECT=OS:h\q".into(), "caf\u{e9}", F, "U+00E9"),
    ];
    for (input, subqueue, code, fragment) in cases {
        let name = QueueName::parse(&input).unwrap();
        let e = name.with_subqueue(subqueue).expect_err(&input);
        assert_eq!(e.code(), code, "{input} with `{subqueue}`: {e}");
        assert!(e.detail().contains(fragment), "{}", e.detail());
    }
}

#[test]
fn journal_names_the_queue_journal() {
    let cases = [
        (r".\private$\orders", r".\private$\orders\JOURNAL$"),
        (r".\private$\orders;poison", r".\private$\orders\JOURNAL$"),
        (r"HOST\q", r"HOST\q\JOURNAL$"),
        (r"DIRECT=OS:h\private$\q", r"DIRECT=OS:h\private$\q;JOURNAL"),
        (
            r"DIRECT=OS:h\private$\q;poison",
            r"DIRECT=OS:h\private$\q;JOURNAL",
        ),
        ("DIRECT=HTTPS://h/msmq/q", "DIRECT=HTTPS://h/msmq/q;JOURNAL"),
        (
            &format!(r"PRIVATE={G}\1f"),
            &format!(r"PRIVATE={G}\0000001f;JOURNAL"),
        ),
        (&format!("PUBLIC={G}"), &format!("PUBLIC={G};JOURNAL")),
        // Journals and system queues have no journal of their own.
        (r".\private$\q\JOURNAL$", r".\private$\q\JOURNAL$"),
        (r"HOST\DEADLETTER$", r"HOST\system$;DEADLETTER"),
        (
            r"DIRECT=TCP:1.2.3.4\system$;JOURNAL",
            r"DIRECT=TCP:1.2.3.4\system$;JOURNAL",
        ),
        (
            &format!("MACHINE={G};DEADXACT"),
            &format!("MACHINE={G};DEADXACT"),
        ),
    ];
    for (input, display) in cases {
        let journal = QueueName::parse(input).unwrap().journal();
        assert_eq!(journal.to_string(), display, "journal of `{input}`");
        assert_eq!(QueueName::parse(display).unwrap(), journal);
        assert_eq!(journal.journal(), journal, "journal() is idempotent");
    }
    let journal = QueueName::private(".", "orders").journal();
    assert_eq!(journal.queue(), private("orders", None, true));
    assert_eq!(journal.host(), Host::Local);
}

#[test]
fn private_builds_a_local_path_name() {
    let name = QueueName::private(".", "orders");
    assert_eq!(name.to_string(), r".\private$\orders");
    assert_eq!(name, QueueName::parse(r".\PRIVATE$\ORDERS").unwrap());
    assert_eq!(name.host(), Host::Local);
    assert_eq!(name.queue(), private("orders", None, false));
    assert!(!name.is_format_name());
    let remote = QueueName::private("HOST", "q");
    assert_eq!(remote.host(), Host::Computer("HOST"));
    assert_eq!(QueueName::try_private("HOST", "q").unwrap(), remote);
    for (computer, queue, fragment) in [
        ("", "q", "computer name is empty"),
        ("my host", "q", "computer name contains a space"),
        (".", "", "queue name is empty"),
        (".", "a;b", "queue name contains `;`"),
        (".", "a\\b", "queue name contains `\\`"),
    ] {
        let e = QueueName::try_private(computer, queue).expect_err(queue);
        assert_eq!(e.code(), ErrorCode::IllegalQueuePathname);
        assert!(e.detail().contains(fragment), "{}", e.detail());
    }
    let e = QueueName::try_private(".", &"a".repeat(125)).unwrap_err();
    assert!(e
        .detail()
        .contains("queue name has 125 characters; the limit is 124"));
}
