//! Tests of the queue-name grammar: the tables of accepted and refused names, equality and
//! hashing without case, derived names, and the round-trip property `parse(display(x)) == x`.

use super::*;
use proptest::prelude::*;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use crate::error::ErrorCode;

/// The GUID the tables use, in the canonical spelling display gives it.
const G: &str = "01234567-89ab-cdef-0123-456789abcdef";

/// The same GUID in upper case with braces, as a user might type it.
const G_BRACED: &str = "{01234567-89AB-CDEF-0123-456789ABCDEF}";

/// The GUID as a value.
const GUID: Uuid = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);

/// Hashes a name with the standard hasher, to compare hashes of equal names.
fn hash_of(name: &QueueName) -> u64 {
    let mut hasher = DefaultHasher::new();
    name.hash(&mut hasher);
    hasher.finish()
}

/// Parses `input` and checks its display, host and queue, then that the display parses
/// back to an equal name and that `parse_path` agrees on whether it is a path name.
fn check(input: &str, display: &str, host: Host<'_>, queue: QueueRef<'_>) {
    let name = QueueName::parse(input).unwrap_or_else(|e| panic!("`{input}` must parse: {e}"));
    assert_eq!(name.to_string(), display, "display of `{input}`");
    assert_eq!(name.host(), host, "host of `{input}`");
    assert_eq!(name.queue(), queue, "queue of `{input}`");
    let again =
        QueueName::parse(display).unwrap_or_else(|e| panic!("display `{display}` must parse: {e}"));
    assert_eq!(again, name, "`{display}` parses back to `{input}`");
    assert_eq!(hash_of(&again), hash_of(&name));
    assert_eq!(again.to_string(), display, "display is a fixed point");
    assert_eq!(input.parse::<QueueName>().ok(), Some(name.clone()));
    match QueueName::parse_path(input) {
        Ok(path) => {
            assert!(!name.is_format_name(), "`{input}` is a path name");
            assert_eq!(path, name);
        }
        Err(e) => {
            assert!(name.is_format_name(), "`{input}` is a format name: {e}");
            assert_eq!(e.code(), ErrorCode::IllegalQueuePathname);
        }
    }
}

/// A private queue reference.
fn private<'a>(name: &'a str, subqueue: Option<&'a str>, journal: bool) -> QueueRef<'a> {
    QueueRef::Private {
        name,
        subqueue,
        journal,
    }
}

/// A public queue reference.
fn public<'a>(name: &'a str, subqueue: Option<&'a str>, journal: bool) -> QueueRef<'a> {
    QueueRef::Public {
        name,
        subqueue,
        journal,
    }
}

/// An address host.
fn address(protocol: Protocol, address: &str) -> Host<'_> {
    Host::Address { protocol, address }
}

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
