//! Names the grammar accepts: their display, host and queue, and equality and hashing
//! without case.

use super::*;

#[test]
fn path_names() {
    use Host::{Computer, Local};
    let cases: &[(&str, &str, Host<'_>, QueueRef<'_>)] = &[
        (
            r".\private$\q",
            r".\private$\q",
            Local,
            private("q", None, false),
        ),
        (
            r".\PRIVATE$\Orders",
            r".\private$\Orders",
            Local,
            private("Orders", None, false),
        ),
        (
            r"HOST\private$\q",
            r"HOST\private$\q",
            Computer("HOST"),
            private("q", None, false),
        ),
        (
            r"HOST\q",
            r"HOST\q",
            Computer("HOST"),
            public("q", None, false),
        ),
        (
            r".\private$\orders;poison",
            r".\private$\orders;poison",
            Local,
            private("orders", Some("poison"), false),
        ),
        (
            r"HOST\q;retry",
            r"HOST\q;retry",
            Computer("HOST"),
            public("q", Some("retry"), false),
        ),
        (
            r"HOST\system$;JOURNAL",
            r"HOST\system$;JOURNAL",
            Computer("HOST"),
            QueueRef::System(SystemQueue::Journal),
        ),
        (
            r"host\SYSTEM$;deadletter",
            r"host\system$;DEADLETTER",
            Computer("host"),
            QueueRef::System(SystemQueue::DeadLetter),
        ),
        (
            r"HOST\System$;DeadXact",
            r"HOST\system$;DEADXACT",
            Computer("HOST"),
            QueueRef::System(SystemQueue::DeadXact),
        ),
        (
            r"HOST\private$\q\JOURNAL$",
            r"HOST\private$\q\JOURNAL$",
            Computer("HOST"),
            private("q", None, true),
        ),
        (
            r"HOST\Private$\q\journal$",
            r"HOST\private$\q\JOURNAL$",
            Computer("HOST"),
            private("q", None, true),
        ),
        (
            r"HOST\q\JOURNAL$",
            r"HOST\q\JOURNAL$",
            Computer("HOST"),
            public("q", None, true),
        ),
        (
            r"HOST\JOURNAL$",
            r"HOST\system$;JOURNAL",
            Computer("HOST"),
            QueueRef::System(SystemQueue::Journal),
        ),
        (
            r"HOST\deadletter$",
            r"HOST\system$;DEADLETTER",
            Computer("HOST"),
            QueueRef::System(SystemQueue::DeadLetter),
        ),
        (
            r".\XACTDEADLETTER$",
            r".\system$;DEADXACT",
            Local,
            QueueRef::System(SystemQueue::DeadXact),
        ),
        // The grammar is unambiguous here, so a private queue may be called `JOURNAL$`.
        (
            r"HOST\private$\JOURNAL$",
            r"HOST\private$\JOURNAL$",
            Computer("HOST"),
            private("JOURNAL$", None, false),
        ),
        // Only `system$` on its own or before `;` marks the system queues.
        (
            r"HOST\system$x",
            r"HOST\system$x",
            Computer("HOST"),
            public("system$x", None, false),
        ),
        (
            r"my-host.example.com\private$\a.b_c-d$",
            r"my-host.example.com\private$\a.b_c-d$",
            Computer("my-host.example.com"),
            private("a.b_c-d$", None, false),
        ),
        // Every punctuation character the queue-name grammar allows, including `/`.
        (
            r".\private$\q!#$%&'()*-./:<=>?@[]^_`{|}~",
            r".\private$\q!#$%&'()*-./:<=>?@[]^_`{|}~",
            Local,
            private("q!#$%&'()*-./:<=>?@[]^_`{|}~", None, false),
        ),
        // A computer name with `=` after a digit is still a path name.
        (
            r"a1=b\q",
            r"a1=b\q",
            Computer("a1=b"),
            public("q", None, false),
        ),
    ];
    for (input, display, host, queue) in cases {
        check(input, display, *host, *queue);
    }
}

#[test]
fn direct_format_names() {
    use Host::{Computer, Local};
    use Protocol::{Http, Https, Tcp};
    let cases: &[(&str, &str, Host<'_>, QueueRef<'_>)] = &[
        (
            r"DIRECT=TCP:1.2.3.4\private$\q",
            r"DIRECT=TCP:1.2.3.4\private$\q",
            address(Tcp, "1.2.3.4"),
            private("q", None, false),
        ),
        (
            r"FormatName:DIRECT=TCP:1.2.3.4\private$\q",
            r"DIRECT=TCP:1.2.3.4\private$\q",
            address(Tcp, "1.2.3.4"),
            private("q", None, false),
        ),
        (
            r"formatname:direct=tcp:1.2.3.4\PRIVATE$\q",
            r"DIRECT=TCP:1.2.3.4\private$\q",
            address(Tcp, "1.2.3.4"),
            private("q", None, false),
        ),
        (
            r"DIRECT=OS:host\private$\q",
            r"DIRECT=OS:host\private$\q",
            Computer("host"),
            private("q", None, false),
        ),
        (
            r"Direct=Os:.\private$\q",
            r"DIRECT=OS:.\private$\q",
            Local,
            private("q", None, false),
        ),
        (
            r"DIRECT=OS:host\q",
            r"DIRECT=OS:host\q",
            Computer("host"),
            public("q", None, false),
        ),
        // Outside HTTP names `/` is an ordinary queue-name character.
        (
            r"DIRECT=OS:host\a/b",
            r"DIRECT=OS:host\a/b",
            Computer("host"),
            public("a/b", None, false),
        ),
        (
            "DIRECT=HTTP://host/msmq/private$/q",
            "DIRECT=HTTP://host/msmq/private$/q",
            address(Http, "host"),
            private("q", None, false),
        ),
        (
            "DIRECT=HTTPS://host:443/msmq/private$/q",
            "DIRECT=HTTPS://host:443/msmq/private$/q",
            address(Https, "host:443"),
            private("q", None, false),
        ),
        (
            r"DIRECT=http://host\MSMQ\private$\q",
            "DIRECT=HTTP://host/msmq/private$/q",
            address(Http, "host"),
            private("q", None, false),
        ),
        (
            "DIRECT=HTTP://host/msmq/q",
            "DIRECT=HTTP://host/msmq/q",
            address(Http, "host"),
            public("q", None, false),
        ),
        (
            "DIRECT=HTTP://[::1]:8080/msmq/private$/q;JOURNAL",
            "DIRECT=HTTP://[::1]:8080/msmq/private$/q;JOURNAL",
            address(Http, "[::1]:8080"),
            private("q", None, true),
        ),
        (
            "DIRECT=HTTPS://10.0.0.1/msmq/private$/q;poison",
            "DIRECT=HTTPS://10.0.0.1/msmq/private$/q;poison",
            address(Https, "10.0.0.1"),
            private("q", Some("poison"), false),
        ),
        (
            r"DIRECT=TCP:1.2.3.4\SYSTEM$;DEADXACT",
            r"DIRECT=TCP:1.2.3.4\system$;DEADXACT",
            address(Tcp, "1.2.3.4"),
            QueueRef::System(SystemQueue::DeadXact),
        ),
        (
            r"DIRECT=OS:host\system$;journal",
            r"DIRECT=OS:host\system$;JOURNAL",
            Computer("host"),
            QueueRef::System(SystemQueue::Journal),
        ),
        (
            "DIRECT=HTTP://host/msmq/system$;DEADLETTER",
            "DIRECT=HTTP://host/msmq/system$;DEADLETTER",
            address(Http, "host"),
            QueueRef::System(SystemQueue::DeadLetter),
        ),
        (
            r"DIRECT=OS:host\private$\q;poison",
            r"DIRECT=OS:host\private$\q;poison",
            Computer("host"),
            private("q", Some("poison"), false),
        ),
        (
            r"DIRECT=OS:host\private$\q;JOURNAL",
            r"DIRECT=OS:host\private$\q;JOURNAL",
            Computer("host"),
            private("q", None, true),
        ),
        (
            r"DIRECT=OS:host\q;journal",
            r"DIRECT=OS:host\q;JOURNAL",
            Computer("host"),
            public("q", None, true),
        ),
        (
            r"DIRECT=TCP:::1\private$\q",
            r"DIRECT=TCP:::1\private$\q",
            address(Tcp, "::1"),
            private("q", None, false),
        ),
        (
            r"DIRECT=TCP:[fe80::1]\q",
            r"DIRECT=TCP:[fe80::1]\q",
            address(Tcp, "[fe80::1]"),
            public("q", None, false),
        ),
    ];
    for (input, display, host, queue) in cases {
        check(input, display, *host, *queue);
    }
}

#[test]
fn guid_format_names() {
    let private_id = |id, journal| QueueRef::PrivateId { id, journal };
    let public_guid = |journal| QueueRef::PublicGuid {
        guid: GUID,
        journal,
    };
    let cases: Vec<(String, String, Host<'_>, QueueRef<'_>)> = vec![
        (
            format!(r"PRIVATE={G}\1a"),
            format!(r"PRIVATE={G}\0000001a"),
            Host::Machine(GUID),
            private_id(0x1a, false),
        ),
        (
            format!(r"FormatName:private={G_BRACED}\FFFFFFFF;journal"),
            format!(r"PRIVATE={G}\ffffffff;JOURNAL"),
            Host::Machine(GUID),
            private_id(0xffff_ffff, true),
        ),
        (
            format!(r"PRIVATE={G}\00000004"),
            format!(r"PRIVATE={G}\00000004"),
            Host::Machine(GUID),
            private_id(4, false),
        ),
        (
            format!("PUBLIC={G}"),
            format!("PUBLIC={G}"),
            Host::Local,
            public_guid(false),
        ),
        (
            format!("Public={G_BRACED};JOURNAL"),
            format!("PUBLIC={G};JOURNAL"),
            Host::Local,
            public_guid(true),
        ),
        (
            format!("MACHINE={G};JOURNAL"),
            format!("MACHINE={G};JOURNAL"),
            Host::Machine(GUID),
            QueueRef::System(SystemQueue::Journal),
        ),
        (
            format!("MACHINE={G_BRACED};DeadLetter"),
            format!("MACHINE={G};DEADLETTER"),
            Host::Machine(GUID),
            QueueRef::System(SystemQueue::DeadLetter),
        ),
        (
            format!("machine={G};deadxact"),
            format!("MACHINE={G};DEADXACT"),
            Host::Machine(GUID),
            QueueRef::System(SystemQueue::DeadXact),
        ),
    ];
    for (input, display, host, queue) in &cases {
        check(input, display, *host, *queue);
    }
}

#[test]
fn names_compare_and_hash_without_case() {
    let equal = [
        (r".\PRIVATE$\Orders", r".\private$\orders"),
        (r"HOST\Q;Poison", r"host\q;POISON"),
        (r"HOST\Q\journal$", r"host\q\JOURNAL$"),
        (r"HOST\JOURNAL$", r"host\system$;journal"),
        (r"DIRECT=OS:Host\PRIVATE$\Q", r"direct=os:host\private$\q"),
        (r"FormatName:DIRECT=OS:host\q", r"DIRECT=OS:host\q"),
        ("DIRECT=HTTP://Host/MSMQ/Q", "direct=http://host/msmq/q"),
        (
            "DIRECT=HTTP://host/msmq/private$/q",
            r"DIRECT=HTTP://host\msmq\private$\q",
        ),
        (&format!("PUBLIC={G_BRACED}"), &format!("PUBLIC={G}")),
        (
            &format!(r"PRIVATE={G}\A"),
            &format!(r"PRIVATE={G}\0000000a"),
        ),
    ];
    for (a, b) in equal {
        let (x, y) = (QueueName::parse(a).unwrap(), QueueName::parse(b).unwrap());
        assert_eq!(x, y, "`{a}` == `{b}`");
        assert_eq!(hash_of(&x), hash_of(&y), "hash of `{a}` == hash of `{b}`");
    }
    let different = [
        (r".\private$\q", r"DIRECT=OS:.\private$\q"),
        (r".\private$\q", r".\q"),
        (r".\private$\q", r".\private$\q;sub"),
        (r".\private$\q;a", r".\private$\q;b"),
        (r".\private$\q", r".\private$\q\JOURNAL$"),
        (r".\private$\q", r"HOST\private$\q"),
        (r"HOST\system$;JOURNAL", r"HOST\system$;DEADLETTER"),
        (r"DIRECT=OS:1.2.3.4\q", r"DIRECT=TCP:1.2.3.4\q"),
        ("DIRECT=HTTP://host/msmq/q", "DIRECT=HTTPS://host/msmq/q"),
        ("DIRECT=HTTP://host/msmq/q", "DIRECT=HTTP://host:80/msmq/q"),
        (&format!(r"PRIVATE={G}\1"), &format!(r"PRIVATE={G}\2")),
        (&format!("PUBLIC={G}"), &format!("PUBLIC={G};JOURNAL")),
        (&format!("MACHINE={G};JOURNAL"), r"HOST\system$;JOURNAL"),
    ];
    for (a, b) in different {
        let (x, y) = (QueueName::parse(a).unwrap(), QueueName::parse(b).unwrap());
        assert_ne!(x, y, "`{a}` != `{b}`");
    }
}

#[test]
fn display_keeps_the_given_spelling() {
    let name = QueueName::parse(r"MyHost\PRIVATE$\Orders;Poison").unwrap();
    assert_eq!(name.to_string(), r"MyHost\private$\Orders;Poison");
    assert_eq!(name.host(), Host::Computer("MyHost"));
    assert_eq!(name.queue(), private("Orders", Some("Poison"), false));
}
