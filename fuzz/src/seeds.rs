//! The seed inputs of every target, made from what the project's own tests and documents feed
//! each parser (valid frames of every kind, the name grammar's accepted forms, the trigger
//! strings of docs/triggers.md, the cluster file `mqemu cluster init` writes, and a real queue
//! manager's log records and catalog). `cargo run -p mqemu-fuzz --bin write-seeds` writes them
//! to `fuzz/corpus/<target>/`, where they are committed.

use std::path::Path;
use std::sync::Arc;

use mqcore::storage::{CatalogStore, Disk, MemCatalog, SimDisk, Wal, WalOptions};
use mqcore::triggers::{Processing, RuleDef, TriggerDef, Triggers};
use mqcore::{Message, QueueManager, QueueProps, Tx};
use mqnet::proto::{self, Request, Response, Select, TxRef};

/// The seeds of `target`, each one input.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "frame" => frames(),
        "request" => payloads(),
        "name" => NAMES.iter().map(|n| n.as_bytes().to_vec()).collect(),
        "rule" => RULES
            .iter()
            .map(|(c, a)| format!("{c}\0{a}").into_bytes())
            .collect(),
        "cluster_config" => vec![cluster().into_bytes(), bad_cluster().into_bytes()],
        "serve_config" => vec![readme_config().into_bytes(), SERVE.as_bytes().to_vec()],
        // Shape (count in the low 5 bits, 2 + the high 3 bits' worth of size bytes, a size
        // byte's high bit ending a batch), then 4-byte damage steps (segment << 2 | kind,
        // offset LE, argument).
        "wal" => vec![
            vec![0x3f, 10, 0x90],
            vec![0x3f, 10, 0x90, 0xfe, 0x90, 0x01, 0],
            vec![0x7f, 200, 0x81, 50, 7, 0xfc, 0x40, 0x00, 0x04],
            vec![
                0x5f, 100, 100, 0xe4, 0x03, 0x28, 0x00, 0x3f, 0x01, 0x30, 0x00, 0x80,
            ],
        ],
        "replay" => log_records(),
        "catalog" => catalog_entries(),
        "mqqb" => mqqb_packets(),
        other => panic!("no target {other}"),
    }
}

fn requests() -> Vec<Request> {
    vec![
        Request::Ping,
        Request::Hello {
            min_version: 1,
            max_version: 1,
            token: Some("t".into()),
            client: "fuzz".into(),
        },
        Request::Send {
            queue: r".\private$\q".into(),
            msg: Box::new(Message::new("body").with_label("label").with_priority(5)),
            tx: TxRef::Single,
        },
        Request::Receive {
            queue: r".\private$\q;poison".into(),
            select: Select::Head,
            timeout_ms: 1000,
            tx: TxRef::In(7),
        },
        Request::Stats,
    ]
}

fn responses() -> Vec<Response> {
    vec![
        Response::Done,
        Response::error(&mqcore::Error::new(
            mqcore::ErrorCode::QueueNotFound,
            "no such queue",
        )),
    ]
}

/// Request and response frames, back to back, with a read size in front.
fn frames() -> Vec<Vec<u8>> {
    let mut all = Vec::new();
    for (i, r) in requests().iter().enumerate() {
        all.extend_from_slice(&proto::frame(i as u64, r));
    }
    for (i, r) in responses().iter().enumerate() {
        all.extend_from_slice(&proto::frame(i as u64, r));
    }
    let mut out = vec![
        [vec![7u8], all.clone()].concat(),
        [vec![255u8], all].concat(),
    ];
    // A length over the limit, and a bad checksum.
    out.push(vec![16, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 1]);
    out.push(vec![16, 1, 0, 0, 0, 0, 0, 0, 0, 9]);
    out
}

/// Request and response payloads (frames without their header).
fn payloads() -> Vec<Vec<u8>> {
    let requests = requests().into_iter().map(|r| proto::frame(1, &r));
    let responses = responses().into_iter().map(|r| proto::frame(2, &r));
    requests
        .chain(responses)
        .map(|f| f[mqnet::frame::HEADER_LEN..].to_vec())
        .collect()
}

/// The forms the name grammar's tests accept.
const NAMES: &[&str] = &[
    r".\private$\q",
    r".\PRIVATE$\Orders",
    r"HOST\q",
    r"HOST\private$\q\JOURNAL$",
    r".\private$\orders;poison",
    r".\system$;DEADXACT",
    r".\XACTDEADLETTER$",
    r"HOST\deadletter$",
    r"DIRECT=OS:host\private$\q;JOURNAL",
    r"DIRECT=TCP:1.2.3.4\private$\q",
    r"DIRECT=TCP:[fe80::1]\q",
    r"DIRECT=HTTP://host\msmq\private$\q",
    r"DIRECT=HTTPS://host/msmq/private$/q",
    r"FormatName:DIRECT=OS:host\q",
    r"FormatName:PRIVATE={2f3e1a7c-64cc-4a53-9bde-6d8ad2b6f1d1}\0000000a;journal",
    r"PUBLIC={2f3e1a7c-64cc-4a53-9bde-6d8ad2b6f1d1}",
    r"MACHINE={2f3e1a7c-64cc-4a53-9bde-6d8ad2b6f1d1};DEADXACT",
];

/// Conditions and actions in MSMQ's stored form (docs/triggers.md).
const RULES: &[(&str, &str)] = &[
    (
        "$MSG_LABEL_CONTAINS=go\t",
        "EXE\t/usr/bin/touch\t\"/tmp/f\"",
    ),
    (
        "$MSG_PRIORITY_GREATER_THAN=3\t$MSG_BODY_CONTAINS=x\t",
        "EXE\tprog\t$MSG_LABEL\t$MSG_ID\t\"lit\"",
    ),
    (
        "$MSG_APPSPECIFIC_EQUALS=7\t",
        "COM\tMSMQTriggerObjects.MSMQRuleHandler\tRun\t$MSG_BODY_AS_STRING",
    ),
    (
        "",
        "HTTP\thttp://127.0.0.1:1/hook\t$MSG_LABEL\t$MSG_PRIORITY",
    ),
    ("$MSG_SRCMACHINEID_NOT_EQUAL=x\t", "EXE;prog;$MSG_LABEL"),
];

/// The cluster file `mqemu cluster init` writes, with the other resource types added.
fn cluster() -> String {
    mqcluster::ClusterConfig::example_file(2)
        .replace(
            "preferred_owners",
            "failback = \"allow\"\nfailback_window = [22, 6]\npreferred_owners",
        )
        .replace("127.0.1.2\"", "127.0.1.2:18011\"")
        + r#"
[[group.resource]]
name = "VS1-DTC"
type = "dtc"

[[group.resource]]
name = "App"
type = "generic_application"
command = "sleep"
args = ["600"]
use_network_name = true
depends_on = ["VS1-MSMQ"]
restart_threshold = 2
"#
}

/// The README's configuration example.
fn readme_config() -> String {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("```toml\n")
        .expect("the README shows a configuration")
        + 8;
    let end = start + readme[start..].find("```").expect("closed");
    readme[start..end].to_owned()
}

/// A configuration with every section (docs/triggers.md, docs/transfer.md).
const SERVE: &str = r#"listen = "127.0.0.1:18010"
in_memory = true
compat = "msmq3"
name = "orders"

[hosts]
billing = "127.0.0.3"

[limits]
max_connections = 10
idle_timeout_secs = 60
max_frame_bytes = 65536

[[queue]]
path = '.\private$\orders'
transactional = true
journal = true
quota_kb = 1024
label = "orders"

[[user]]
name = "app"
token = "t"
admin = false
queues = { orders = ["send", "receive", "peek"] }

[triggers]
enabled = true
workers = 2
action_timeout_secs = 5

[[rule]]
name = "go"
condition = "$MSG_LABEL_CONTAINS=go\t"
action = "EXE\t/usr/bin/touch\t\"/tmp/f\""

[[rule]]
name = "table"
conditions = [{ label_contains = "go" }, { priority_greater_than = 3 }]
action = { exe = { path = "/usr/bin/touch", params = ['"/tmp/f"', "$MSG_LABEL"] } }

[[trigger]]
name = "t"
queue = '.\private$\orders'
type = "transactional"
serialized = true
rules = ["go", "table"]

[transfer]
port = 18010
resend_ms = [10, 20]
batch = 16
window = 2
idle_secs = 5
"#;

/// The same with a dependency cycle.
fn bad_cluster() -> String {
    cluster().replace(
        "depends_on = [\"VS1-IP\"]",
        "depends_on = [\"VS1-IP\", \"VS1-MSMQ\"]",
    )
}

/// A real queue manager's work on a simulated disk: queues, sends and receives in and out of
/// transactions, a prepared transaction, and the Triggers service's definitions.
fn workload() -> (SimDisk, Arc<MemCatalog>) {
    let disk = SimDisk::new();
    let catalog = Arc::new(MemCatalog::new());
    let d: Arc<dyn Disk> = Arc::new(disk.clone());
    let qm = QueueManager::builder()
        .open_with(d, Path::new("/seed/qm"), catalog.clone())
        .expect("a simulated disk opens");
    qm.create_queue(r".\private$\orders", QueueProps::transactional())
        .unwrap();
    qm.create_queue(r".\private$\plain", QueueProps::default())
        .unwrap();
    qm.send(r".\private$\orders", Message::new("a"), Tx::Single)
        .unwrap();
    qm.send(
        r".\private$\plain",
        Message::new("b").with_label("l"),
        Tx::None,
    )
    .unwrap();
    let t = qm.begin();
    qm.send(r".\private$\orders", Message::new("c"), Tx::In(&t))
        .unwrap();
    t.commit().unwrap();
    qm.receive(r".\private$\orders", std::time::Duration::ZERO, Tx::Single)
        .unwrap();
    let triggers = Triggers::start(&qm).unwrap();
    let (c, a) = RULES[0];
    triggers
        .add_rule(RuleDef::parse("go", "d", c, a).unwrap())
        .unwrap();
    triggers
        .add_trigger(TriggerDef::new("t", r".\private$\plain", Processing::Peek))
        .unwrap();
    triggers.attach_rule("t", "go").unwrap();
    triggers.stop();
    drop(qm);
    (disk, catalog)
}

/// The workload's log records, as `kind, len (2 bytes, little-endian), payload`.
fn log_records() -> Vec<Vec<u8>> {
    let (disk, _) = workload();
    let d: Arc<dyn Disk> = Arc::new(disk);
    let (_, records) = Wal::open(
        d,
        Path::new("/seed/qm/wal"),
        u64::MAX / 2,
        Box::new(|| Ok(u64::MAX / 2)),
        WalOptions::default(),
    )
    .expect("the workload's log");
    let mut all = Vec::new();
    let mut each = Vec::new();
    for r in records {
        let mut one = vec![r.kind];
        one.extend_from_slice(&(r.data.len() as u16).to_le_bytes());
        one.extend_from_slice(&r.data);
        all.extend_from_slice(&one);
        each.push(one);
    }
    each.push(all);
    each
}

/// The workload's catalog, as `key index, len (2 bytes, little-endian), value` over the keys
/// the target knows.
fn catalog_entries() -> Vec<Vec<u8>> {
    let (_, catalog) = workload();
    let mut all = Vec::new();
    for prefix in ["meta/", "queue/", "trigger-rule/", "trigger-def/"] {
        for (i, (key, value)) in catalog.scan(prefix).unwrap().into_iter().enumerate() {
            let known = |k: &str| crate::CATALOG_KEYS.iter().position(|c| *c == k);
            // Exact keys as they are; rules and triggers (keyed by id) on the target's own keys.
            let Some(at) = known(&key).or_else(|| {
                crate::CATALOG_KEYS
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.starts_with(prefix))
                    .nth(i)
                    .map(|(at, _)| at)
            }) else {
                continue;
            };
            all.push(at as u8);
            all.extend_from_slice(&(value.len() as u16).to_le_bytes());
            all.extend_from_slice(&value);
        }
    }
    vec![all]
}

/// The 8 packets of MS-MQQB 4.1 (the user message completed: the spec prints it cut short),
/// and a user message with every optional header.
fn mqqb_packets() -> Vec<Vec<u8>> {
    use mqnet::mqqb::packet::{BaseHeader, SessionHeader};
    use mqnet::mqqb::user::{
        user_flags, DebugHeader, MessageProperties, MqfElement, MultiQueueFormat, QueueFormat,
        SecurityHeader, SoapHeader, TransactionHeader, UserHeader, UserMessage,
    };
    use mqnet::mqqb::{encode, Packet};
    let mut out: Vec<Vec<u8>> = include_str!("../../mqnet/tests/data/mqqb_4_1.txt")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next())
        .map(|h| {
            (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&h[i..i + 2], 16).expect("hex"))
                .collect()
        })
        .collect();
    if let Some(m) = out.iter_mut().find(|p| p.len() == 1650) {
        while m.len() < 2222 {
            m.extend_from_slice(b"a\0");
        }
        m.extend_from_slice(&[0, 0]);
    }
    let g = uuid::Uuid::from_u128;
    let m = UserMessage {
        base: BaseHeader {
            reserved: 0,
            flags: 0,
            packet_size: 0,
            time_to_reach_queue: 60,
        },
        user: UserHeader {
            source_qm: g(1),
            destination_qm: g(2),
            time_to_be_received: 120,
            sent_time: 1_796_000_000,
            message_id: 9,
            flags: user_flags::RECOVERABLE | user_flags::JOURNAL_NEGATIVE,
            destination: QueueFormat::PrivateOnDestination(4),
            admin: QueueFormat::Direct(r"TCP:10.0.0.1\private$\admin".into()),
            response: QueueFormat::Private { qm: g(3), id: 7 },
            connector_type: Some(g(4)),
        },
        transaction: Some(TransactionHeader {
            flags: 0x0D,
            sequence_id: 0x0000_0005_0000_0001,
            sequence_number: 2,
            previous_number: 1,
            connector_qm: Some(g(5)),
        }),
        security: Some(SecurityHeader {
            flags: 1,
            sender_id: vec![1, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0],
            ..SecurityHeader::default()
        }),
        properties: MessageProperties {
            ack_flags: 0x0F,
            label: "every header".into(),
            extension: vec![1, 2, 3],
            body: b"body".to_vec(),
            ..MessageProperties::default()
        },
        debug: Some(DebugHeader {
            flags: 1,
            reserved: 0,
            queue: Some(g(6)),
        }),
        soap: Some(SoapHeader {
            header: "<h/>".into(),
            body: "<b/>".into(),
        }),
        multi_queue: Some(MultiQueueFormat {
            destinations: vec![
                MqfElement::Direct(r"OS:a\q".into()),
                MqfElement::Public(g(7)),
            ],
            admin: vec![MqfElement::Private { qm: g(8), id: 1 }],
            response: vec![MqfElement::DistributionList(g(9))],
            signature: vec![5; 3],
        }),
        session: Some(SessionHeader {
            ack_sequence: 1,
            window_size: 64,
            ..SessionHeader::default()
        }),
    };
    let mut bytes = Vec::new();
    encode(&Packet::User(Box::new(m)), &mut bytes);
    out.push(bytes);
    out
}
