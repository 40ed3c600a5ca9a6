//! Failover clusters in one process (`mqemu::testing::TestCluster`): restart and failover
//! policy with their counters, failback, UseNetworkName and its stranded messages, the DTC
//! offline with an in-doubt transaction across a failover, two virtual servers on one node and
//! split, and an outgoing queue that keeps delivering exactly once and in order across a
//! failover of its sender.

use std::time::Duration;

use mqemu::cluster::ResourceState;
use mqemu::net::{BlockingClient, Server, ServerConfig, Tx};
use mqemu::testing::TestCluster;
use mqemu::{ErrorCode, Message, QueueManager, QueueProps};

fn nodes(names: &[&str], net: &str) -> String {
    // A lease of 500 ms. With 250 ms (5 beats) two tests that assert a group stayed put each
    // saw it move once in a full workspace run (never alone, nor beside busy loops and a syncing
    // disk): most likely an owner whose renewal stalled past its trusted 187 ms while the rest of
    // the suite kept both cores and the disk busy, so it stepped down as it must.
    let mut text = String::from("[timing]\nheartbeat_ms = 50\nmissed_heartbeats = 10\n");
    for (i, n) in names.iter().enumerate() {
        text += &format!(
            "\n[[node]]\nname = \"{n}\"\naddress = \"{net}.{}:0\"\n",
            i + 1
        );
    }
    text
}

/// A group `vs` on `ip` (IP, name, disk, MSMQ) preferring `owners`, with `extra` appended
/// (more resources, or group keys placed before the resources).
fn group(vs: &str, ip: &str, owners: &[&str], keys: &str, extra: &str) -> String {
    let owners: Vec<String> = owners.iter().map(|o| format!("\"{o}\"")).collect();
    format!(
        r#"
[[group]]
name = "{vs}"
preferred_owners = [{owners}]
{keys}

[[group.resource]]
name = "{vs}-IP"
type = "ip_address"
address = "{ip}"

[[group.resource]]
name = "{vs}-Name"
type = "network_name"
dns_name = "{vs}"
depends_on = ["{vs}-IP"]

[[group.resource]]
name = "{vs}-Disk"
type = "physical_disk"
path = "disks/{vs}"
{extra}
"#,
        owners = owners.join(", ")
    )
}

const MSMQ: &str = r#"
[[group.resource]]
name = "VS1-MSMQ"
type = "message_queuing"
depends_on = ["VS1-Name", "VS1-Disk"]
"#;

const Q: &str = r".\private$\orders";

fn failover_count(c: &TestCluster) -> u64 {
    c.record("VS1").unwrap().failover_count
}

#[test]
fn restart_policy_failover_threshold_and_their_counters() {
    let app = r#"
[[group.resource]]
name = "VS1-App"
type = "generic_application"
command = "sleep"
args = ["600"]
depends_on = ["VS1-MSMQ"]
restart_threshold = 2
restart_period_ms = 60000
restart_delay_ms = 20
"#;
    let text = nodes(&["NODE1", "NODE2", "NODE3"], "127.0.2")
        + &group(
            "VS1",
            "127.63.0.11",
            &["NODE1", "NODE2", "NODE3"],
            "failover_threshold = 1",
            &format!("{MSMQ}{app}"),
        );
    let c = TestCluster::start(&text).unwrap();
    c.wait_online_on("VS1", "NODE1");
    let restarts = |c: &TestCluster| {
        let s = c.status().unwrap();
        s.groups[0]
            .resources
            .iter()
            .find(|r| r.name == "VS1-App")
            .unwrap()
            .restarts
    };
    // Two failures within the threshold: restarted in place each time.
    for n in 1..=2 {
        c.fail("VS1-App").unwrap();
        c.wait("the application restarted", || {
            (restarts(&c) == n).then_some(())
        });
        c.wait_online_on("VS1", "NODE1");
    }
    assert_eq!(failover_count(&c), 0);
    // The third fails the group over (RestartNotify), to the next preferred node.
    c.fail("VS1-App").unwrap();
    c.wait_online_on("VS1", "NODE2");
    assert_eq!(failover_count(&c), 1);
    assert_eq!(c.status().unwrap().groups[0].failovers_in_period, 1);
    // On NODE2 the same again: one failover more than the threshold allows in the period, so
    // the group stays failed.
    for n in 1..=2 {
        c.fail("VS1-App").unwrap();
        c.wait("the application restarted on NODE2", || {
            (restarts(&c) == n).then_some(())
        });
        c.wait_online_on("VS1", "NODE2");
    }
    c.fail("VS1-App").unwrap();
    c.wait("VS1 failed", || {
        c.record("VS1").unwrap().failed.then_some(())
    });
    assert_eq!(failover_count(&c), 1, "the refused failover is not counted");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        c.owner("VS1"),
        None,
        "a failed group is not brought online anywhere"
    );
    // The administrator brings it back: to the first preferred node it did not fail on last.
    c.online("VS1").unwrap();
    c.wait_online_on("VS1", "NODE1");
    assert!(!c.record("VS1").unwrap().failed);
}

#[test]
fn failback_to_the_preferred_owner_when_it_returns() {
    let text = nodes(&["NODE1", "NODE2"], "127.0.3")
        + &group(
            "VS1",
            "127.64.0.11",
            &["NODE1", "NODE2"],
            "failback = \"allow\"",
            MSMQ,
        );
    let c = TestCluster::start(&text).unwrap();
    c.wait_online_on("VS1", "NODE1");
    c.kill("NODE1");
    c.wait_online_on("VS1", "NODE2");
    assert_eq!(failover_count(&c), 1);
    c.restart("NODE1").unwrap();
    c.wait_online_on("VS1", "NODE1");
    assert_eq!(
        failover_count(&c),
        1,
        "a failback is a move, not a failover"
    );

    // With failback prevented (WSFC's default) the group stays where it is.
    let text = nodes(&["NODE1", "NODE2"], "127.0.4")
        + &group("VS1", "127.64.0.12", &["NODE1", "NODE2"], "", MSMQ);
    let c = TestCluster::start(&text).unwrap();
    c.wait_online_on("VS1", "NODE1");
    c.kill("NODE1");
    c.wait_online_on("VS1", "NODE2");
    c.restart("NODE1").unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(c.owner("VS1").as_deref(), Some("NODE2"));
}

/// An application resource that sends one message to `.\private$\app` on the computer its
/// environment calls `.`, then stays up.
fn app(name: &str, use_network_name: bool) -> String {
    let script = format!(
        "until \"{bin}\" --server \"$MQEMU_SERVER\" send --recoverable '.\\private$\\app' --body \"{name} on $MQEMU_COMPUTER_NAME\" >/dev/null 2>&1; do sleep 0.05; done; exec sleep 600",
        bin = env!("CARGO_BIN_EXE_mqemu"),
    );
    format!(
        r#"
[[group.resource]]
name = "{name}"
type = "generic_application"
command = "sh"
args = ["-c", {script:?}]
use_network_name = {use_network_name}
depends_on = ["VS1-MSMQ"]
"#
    )
}

/// A body as text: UTF-16 as the command line sends it, or UTF-8 bytes.
fn text(m: &Message) -> String {
    m.body_text()
        .unwrap_or_else(|| String::from_utf8_lossy(&m.body).into_owned())
}

fn bodies(qm: &QueueManager, q: &str) -> Vec<String> {
    let q = qm.open(q).unwrap();
    let mut c = q.cursor();
    let mut out = Vec::new();
    let mut m = c.peek_current(Duration::ZERO);
    while let Ok(msg) = m {
        out.push(text(&msg));
        m = c.peek_next(Duration::ZERO);
    }
    out.sort();
    out
}

fn remote_bodies(c: &BlockingClient, q: &str) -> Vec<String> {
    let mut out = Vec::new();
    let q = c.open(q).unwrap();
    while let Ok(m) = q.receive(Duration::ZERO, Tx::None) {
        out.push(text(&m));
    }
    out.sort();
    out
}

#[test]
fn use_network_name_decides_where_an_applications_messages_go() {
    let apps = format!("{MSMQ}{}{}", app("with", true), app("without", false));
    let text = nodes(&["NODE1", "NODE2"], "127.0.5")
        + &group("VS1", "127.65.0.11", &["NODE1", "NODE2"], "", &apps);
    let c = TestCluster::start(&text).unwrap();
    for n in ["NODE1", "NODE2"] {
        c.local(n)
            .unwrap()
            .create_queue(r".\private$\app", QueueProps::default())
            .unwrap();
    }
    c.wait("VS1's MSMQ online", || {
        (c.resource_state("VS1-MSMQ") == Some(ResourceState::Online)).then_some(())
    });
    c.connect("VS1")
        .unwrap()
        .create_queue(r".\private$\app", QueueProps::default())
        .unwrap();
    let local1 = c.local("NODE1").unwrap();
    c.wait("the application without the network name sent", || {
        (bodies(&local1, r".\private$\app").len() == 1).then_some(())
    });
    let vs1 = c.connect("VS1").unwrap();
    c.wait("the application with the network name sent", || {
        (vs1.open(r".\private$\app").unwrap().len().unwrap() == 1).then_some(())
    });
    drop(vs1);
    // Fail over: the applications start again on NODE2.
    c.kill("NODE1");
    c.wait_online_on("VS1", "NODE2");
    let local2 = c.local("NODE2").unwrap();
    c.wait(
        "the application without the network name sent again",
        || (bodies(&local2, r".\private$\app").len() == 1).then_some(()),
    );
    let vs1 = c.connect("VS1").unwrap();
    c.wait(
        "both messages of the application with the network name",
        || (vs1.open(r".\private$\app").unwrap().len().unwrap() == 2).then_some(()),
    );
    // With UseNetworkName the virtual server has both of the application's messages, whichever
    // node sent them; without it, each went to the node it ran on, and the one NODE1 took stays
    // there, out of the virtual server's reach (the seeds' warning).
    assert_eq!(
        remote_bodies(&vs1, r".\private$\app"),
        ["with on VS1", "with on VS1"]
    );
    assert_eq!(bodies(&local1, r".\private$\app"), ["without on NODE1"]);
    assert_eq!(bodies(&local2, r".\private$\app"), ["without on NODE2"]);
}

#[test]
fn in_doubt_transactions_wait_for_the_dtc_across_a_failover() {
    let dtc = r#"
[[group.resource]]
name = "VS1-DTC"
type = "dtc"

[[group.resource]]
name = "VS1-MSMQ"
type = "message_queuing"
depends_on = ["VS1-Name", "VS1-Disk"]
restart_threshold = 1000
restart_delay_ms = 50
"#;
    let text = nodes(&["NODE1", "NODE2"], "127.0.6")
        + &group("VS1", "127.66.0.11", &["NODE1", "NODE2"], "", dtc);
    let c = TestCluster::start(&text).unwrap();
    c.wait_online_on("VS1", "NODE1");
    let client = c.connect("VS1").unwrap();
    client.create_queue(Q, QueueProps::transactional()).unwrap();
    client.send(Q, Message::new("m1"), Tx::Single).unwrap();
    // A two-phase receive, prepared: its outcome is the coordinator's.
    let t = client.begin_external("x1").unwrap();
    let m = client.receive(Q, Duration::ZERO, (&t).into()).unwrap();
    assert_eq!(&m.body[..], b"m1");
    t.prepare().unwrap();

    // The DTC goes offline: new external transactions fail.
    c.offline("VS1-DTC").unwrap();
    c.wait("the DTC offline", || {
        (c.resource_state("VS1-DTC") == Some(ResourceState::Offline)).then_some(())
    });
    let refused = match client.begin_external("x2") {
        Ok(_) => panic!("an external transaction began without the DTC"),
        Err(e) => e,
    };
    assert_eq!(refused.code(), ErrorCode::DtcConnect);

    // The owner dies. On the new owner the queue manager cannot come online while an in-doubt
    // transaction needs the coordinator, which is still offline.
    c.kill("NODE1");
    c.wait("MSMQ failing on NODE2 for want of the DTC", || {
        (c.resource_state("VS1-MSMQ") == Some(ResourceState::Failed)).then_some(())
    });
    assert_eq!(c.owner("VS1"), None);
    // The DTC comes back: the queue manager comes online, and the in-doubt transaction is
    // resolved after the failover.
    c.online("VS1-DTC").unwrap();
    c.wait_online_on("VS1", "NODE2");
    let client = c.connect("VS1").unwrap();
    let in_doubt = client.block_on(client.client().in_doubt()).unwrap();
    assert_eq!(in_doubt, ["x1"]);
    assert!(
        client.open(Q).unwrap().peek(Duration::ZERO).is_err(),
        "m1 stays locked"
    );
    client
        .block_on(client.client().resolve_in_doubt("x1", true))
        .unwrap();
    assert_eq!(
        client.open(Q).unwrap().len().unwrap(),
        0,
        "the receive committed"
    );
}

#[test]
fn two_virtual_servers_on_one_node_and_split_across_nodes() {
    let vs2_msmq = r#"
[[group.resource]]
name = "VS2-MSMQ"
type = "message_queuing"
depends_on = ["VS2-Name", "VS2-Disk"]
"#;
    let text = nodes(&["NODE1", "NODE2"], "127.0.7")
        + &group("VS1", "127.67.0.11", &["NODE1", "NODE2"], "", MSMQ)
        + &group("VS2", "127.67.0.12", &["NODE1", "NODE2"], "", vs2_msmq);
    let c = TestCluster::start(&text).unwrap();
    c.wait_online_on("VS1", "NODE1");
    c.wait_online_on("VS2", "NODE1");
    for (vs, body) in [("VS1", "one"), ("VS2", "two")] {
        let client = c.connect(vs).unwrap();
        client.create_queue(Q, QueueProps::transactional()).unwrap();
        client.send(Q, Message::new(body), Tx::Single).unwrap();
    }
    c.move_group("VS2", Some("NODE2")).unwrap();
    c.wait_online_on("VS2", "NODE2");
    assert_eq!(
        c.owner("VS1").as_deref(),
        Some("NODE1"),
        "VS1 is not online on NODE1 after VS2 moved\n{}",
        c.describe()
    );
    for (vs, body) in [("VS1", "one"), ("VS2", "two")] {
        let client = c.connect(vs).unwrap();
        assert_eq!(
            remote_bodies(&client, Q),
            [body],
            "{vs} has its own storage"
        );
    }
}

#[test]
fn an_outgoing_queue_delivers_exactly_once_in_order_across_a_failover() {
    // The destination: a queue manager on 127.68.0.30, on the virtual server's port.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dest = QueueManager::builder()
        .name("DEST")
        .address("127.68.0.30")
        .build();
    dest.create_queue(Q, QueueProps::transactional()).unwrap();
    let server = rt
        .block_on(Server::bind(
            "127.68.0.30:18010",
            dest.clone(),
            ServerConfig::default(),
        ))
        .unwrap();
    rt.spawn(server.run());

    let text = nodes(&["NODE1", "NODE2"], "127.0.8")
        + &group("VS1", "127.68.0.11", &["NODE1", "NODE2"], "", MSMQ);
    let c = TestCluster::start(&text).unwrap();
    c.wait_online_on("VS1", "NODE1");
    let target = r"DIRECT=TCP:127.68.0.30\private$\orders";
    let mut acked = Vec::new();
    let mut client = c.connect("VS1").unwrap();
    for i in 0..300u32 {
        if i == 150 {
            c.kill("NODE1");
        }
        loop {
            let t = match client.begin() {
                Ok(t) => t,
                Err(_) => {
                    client = c.connect("VS1").unwrap();
                    continue;
                }
            };
            let sent = client
                .send_through(target, Message::new(format!("{i}")), (&t).into())
                .and_then(|_| t.commit());
            match sent {
                Ok(()) => {
                    acked.push(i);
                    break;
                }
                // Unknown outcome: this number is not sent again.
                Err(_) => {
                    client = c.connect("VS1").unwrap();
                    break;
                }
            }
        }
    }
    c.wait_online_on("VS1", "NODE2");
    let q = dest.open(Q).unwrap();
    c.wait("every acknowledged message delivered", || {
        (q.len().unwrap() >= acked.len()).then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    let mut got = Vec::new();
    while let Ok(m) = q.receive(Duration::ZERO, mqemu::Tx::None) {
        got.push(String::from_utf8_lossy(&m.body).parse::<u32>().unwrap());
    }
    let mut sorted = got.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), got.len(), "delivered twice: {got:?}");
    assert!(got.windows(2).all(|w| w[0] < w[1]), "out of order: {got:?}");
    let missing: Vec<_> = acked.iter().filter(|a| !got.contains(a)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not delivered: {missing:?}"
    );
    assert!(
        acked.len() >= 290,
        "only {} of 300 acknowledged",
        acked.len()
    );
}

/// Trigger definitions live in the virtual server's catalog, on its disk: defined through its
/// name, they are served by whichever node owns it, fire there after a failover, and their
/// administration is refused while the Triggers resource is offline.
#[test]
fn trigger_definitions_move_with_the_virtual_server_and_its_triggers_resource_serves_them() {
    use mqemu::net::{TriggerAnswer, TriggerRequest};
    use mqemu::triggers::{Processing, TriggerDef};

    let triggers = r#"
[[group.resource]]
name = "VS1-Triggers"
type = "msmq_triggers"
depends_on = ["VS1-MSMQ"]
"#;
    let text = nodes(&["NODE1", "NODE2"], "127.0.8")
        + &group(
            "VS1",
            "127.68.0.11",
            &["NODE1", "NODE2"],
            "",
            &format!("{MSMQ}{triggers}"),
        );
    let c = TestCluster::start(&text).unwrap();
    c.wait_online_on("VS1", "NODE1");
    let marks = tempfile::tempdir().unwrap();
    let mark = |n: u32| marks.path().join(format!("fired-{n}"));
    let client = c.connect("VS1").unwrap();
    client.create_queue(Q, QueueProps::transactional()).unwrap();
    client
        .triggers(TriggerRequest::AddRule {
            name: "touch".into(),
            description: String::new(),
            condition: String::new(),
            action: "EXE\t/usr/bin/touch\t$MSG_LABEL".into(),
        })
        .unwrap();
    let def = TriggerDef::new("t", Q, Processing::TransactionalRetrieval);
    client.triggers(TriggerRequest::AddTrigger(def)).unwrap();
    client
        .triggers(TriggerRequest::Attach {
            trigger: "t".into(),
            rule: "touch".into(),
        })
        .unwrap();
    let send = |client: &BlockingClient, n: u32| {
        let label = mark(n).to_str().unwrap().to_owned();
        client
            .send(Q, Message::new("x").with_label(label), Tx::Single)
            .unwrap();
    };
    send(&client, 1);
    c.wait("the trigger fired on NODE1", || {
        mark(1).exists().then_some(())
    });

    c.kill("NODE1");
    c.wait_online_on("VS1", "NODE2");
    let client = c.connect("VS1").unwrap();
    let TriggerAnswer::Rules(rules) = client.triggers(TriggerRequest::ListRules).unwrap() else {
        panic!("not rules")
    };
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].action_string(), "EXE\t/usr/bin/touch\t$MSG_LABEL");
    send(&client, 2);
    c.wait("the trigger fired on NODE2", || {
        mark(2).exists().then_some(())
    });

    c.offline("VS1-Triggers").unwrap();
    c.wait("Triggers offline", || {
        (c.resource_state("VS1-Triggers") == Some(ResourceState::Offline)).then_some(())
    });
    let e = client.triggers(TriggerRequest::ListRules).unwrap_err();
    assert_eq!(e.code(), ErrorCode::ServiceNotAvailable);
    assert_eq!(c.resource_state("VS1-MSMQ"), Some(ResourceState::Online));
    c.online("VS1-Triggers").unwrap();
    c.wait("Triggers online", || {
        client
            .triggers(TriggerRequest::ListRules)
            .ok()
            .filter(|a| matches!(a, TriggerAnswer::Rules(r) if r.len() == 1))
    });
}

/// A full shared disk: clients see MQ_ERROR_INSUFFICIENT_RESOURCES, the Message Queuing resource
/// fails its check (past its restart threshold of one restart), the group fails over once and,
/// the disk being the same there, ends failed past its threshold; with space again and `cluster online`, everything
/// acknowledged before is served and nothing refused appears.
#[test]
fn a_full_disk_fails_the_virtual_server_and_loses_nothing_acknowledged() {
    let msmq = r#"
[[group.resource]]
name = "VS1-MSMQ"
type = "message_queuing"
depends_on = ["VS1-Name", "VS1-Disk"]
restart_threshold = 1
restart_delay_ms = 20
looks_alive_ms = 20
"#;
    let text = nodes(&["NODE1", "NODE2"], "127.0.9")
        + &group(
            "VS1",
            "127.69.0.11",
            &["NODE1", "NODE2"],
            "failover_threshold = 1",
            msmq,
        );
    let c = TestCluster::start(&text).unwrap();
    c.wait_online_on("VS1", "NODE1");
    let client = c.connect("VS1").unwrap();
    client.create_queue(Q, QueueProps::transactional()).unwrap();
    client.send(Q, Message::new("kept"), Tx::Single).unwrap();

    c.fill_disk("VS1");
    let e = client
        .send(Q, Message::new("refused"), Tx::Single)
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InsufficientResources, "{e}");
    c.wait("VS1 failed past its failover threshold", || {
        c.record("VS1").unwrap().failed.then_some(())
    });
    assert_eq!(failover_count(&c), 1, "it failed over once, then failed");
    c.wait("VS1 offline everywhere", || {
        c.owner("VS1").is_none().then_some(())
    });

    c.free_disk("VS1");
    c.online("VS1").unwrap();
    c.wait_online("VS1");
    let client = c.connect("VS1").unwrap();
    client.send(Q, Message::new("after"), Tx::Single).unwrap();
    assert_eq!(remote_bodies(&client, Q), ["after", "kept"]);
}

/// A virtual server's HTTP face listens on the group's address and moves with it: the API
/// reports the cluster (groups, owners, resources), a message sent over HTTP before a failover
/// is received over HTTP after it, from the node that took the disk over.
#[test]
fn a_virtual_servers_http_face_reports_the_cluster_and_fails_over_with_it() {
    let port = crate::support::free_port();
    let msmq = format!(
        "\n[[group.resource]]\nname = \"VS1-MSMQ\"\ntype = \"message_queuing\"\nhttp_port = {port}\ndepends_on = [\"VS1-Name\", \"VS1-Disk\"]\n"
    );
    let text = nodes(&["NODE1", "NODE2"], "127.0.11")
        + &group("VS1", "127.73.0.11", &["NODE1", "NODE2"], "", &msmq);
    let c = TestCluster::start(&text).unwrap();
    c.wait_online_on("VS1", "NODE1");
    let base = format!("http://127.73.0.11:{port}");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let call = |method: &str, path: &str, body: Option<&str>| -> (u16, serde_json::Value) {
        let url = format!("{base}{path}");
        let resp = match (method, body) {
            ("GET", _) => agent.get(&url).call(),
            (_, Some(b)) => agent
                .post(&url)
                .header("content-type", "application/json")
                .send(b),
            (_, None) => agent.post(&url).send_empty(),
        };
        match resp {
            Ok(mut r) => (
                r.status().as_u16(),
                serde_json::from_str(&r.body_mut().read_to_string().unwrap_or_default())
                    .unwrap_or_default(),
            ),
            Err(_) => (0, serde_json::Value::Null),
        }
    };
    // The page reads the states the nodes publish, a beat behind their own view.
    let (st, vs1) = c.wait("/api/cluster to show VS1 online on NODE1", || {
        let (s, st) = call("GET", "/api/cluster", None);
        assert_eq!(s, 200, "{st}");
        let vs1 = st["groups"]
            .as_array()?
            .iter()
            .find(|g| g["name"] == "VS1")?
            .clone();
        (vs1["owner"] == "NODE1" && vs1["state"] == "Online").then_some((st, vs1))
    });
    assert_eq!(st["clustered"], true);
    assert!(
        vs1["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "VS1-MSMQ" && r["state"] == "Online"),
        "{vs1}"
    );
    assert_eq!(st["nodes"].as_array().unwrap().len(), 2);

    assert_eq!(
        call(
            "POST",
            "/api/queues",
            Some(r#"{"path": "orders", "transactional": true}"#)
        )
        .0,
        201
    );
    assert_eq!(
        call(
            "POST",
            "/api/queues/orders/messages?tx=single",
            Some(r#"{"body": "before the failover"}"#)
        )
        .0,
        201
    );

    c.kill("NODE1");
    c.wait_online_on("VS1", "NODE2");
    let (s, m) = c.wait("the HTTP face on NODE2", || {
        let (s, m) = call(
            "POST",
            "/api/queues/orders/receive?tx=single&timeout_ms=1000",
            None,
        );
        (s != 0).then_some((s, m))
    });
    assert_eq!(
        (s, m["body"].as_str()),
        (200, Some("before the failover")),
        "{m}"
    );
    let (_, st) = call("GET", "/api/cluster", None);
    let vs1 = st["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "VS1")
        .unwrap();
    assert_eq!(vs1["owner"].as_str(), Some("NODE2"));
    assert_eq!(vs1["failover_count"], 1);
    // The scrape says the same, once the states published have caught up.
    let expected = [
        "mqemu_cluster_node_up{node=\"NODE1\"} 0",
        "mqemu_cluster_node_up{node=\"NODE2\"} 1",
        "mqemu_cluster_group_online{group=\"VS1\",owner=\"NODE2\"} 1",
        "mqemu_cluster_failovers_total{group=\"VS1\"} 1",
    ];
    let mut text = String::new();
    c.wait("the scrape to show VS1 online on NODE2", || {
        text = agent
            .get(&format!("{base}/metrics"))
            .call()
            .ok()?
            .body_mut()
            .read_to_string()
            .ok()?;
        expected.iter().all(|l| text.contains(l)).then_some(())
    });
}
