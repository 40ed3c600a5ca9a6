//! Nodes in one process on 127.x addresses: a virtual server comes online on its preferred node
//! in dependency order, is reached by its name, moves, and fails over when its owner dies.

use std::path::Path;
use std::time::{Duration, Instant};

use mqcluster::coord::dir::DirCoordination;
use mqcluster::coord::Coordination;
use mqcluster::node::{LocalData, Node, NodeOptions};
use mqcluster::{ops, ClusterConfig};
use mqcore::queue::QueueProps;
use mqcore::Message;
use mqnet::{BlockingClient, Tx};

/// A 127/8 block of addresses no other test uses at once.
fn block() -> [u8; 2] {
    let n = std::process::id() as u16
        ^ (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u16);
    [100 + (n % 100) as u8, (n >> 8) as u8]
}

fn cluster_file(b: [u8; 2], extra: &str) -> String {
    format!(
        r#"
[timing]
heartbeat_ms = 50
missed_heartbeats = 6

[[node]]
name = "NODE1"
address = "127.{0}.{1}.1:0"

[[node]]
name = "NODE2"
address = "127.{0}.{1}.2:0"

[[node]]
name = "NODE3"
address = "127.{0}.{1}.3:0"

[[group]]
name = "VS1"
preferred_owners = ["NODE2", "NODE1", "NODE3"]

[[group.resource]]
name = "VS1-IP"
type = "ip_address"
address = "127.{0}.{1}.11"

[[group.resource]]
name = "VS1-Name"
type = "network_name"
dns_name = "VS1"
depends_on = ["VS1-IP"]

[[group.resource]]
name = "VS1-Disk"
type = "physical_disk"
path = "disks/vs1"

[[group.resource]]
name = "VS1-MSMQ"
type = "message_queuing"
depends_on = ["VS1-Name", "VS1-Disk"]
{extra}
"#,
        b[0], b[1]
    )
}

fn start(dir: &Path, config: &ClusterConfig, name: &str) -> Node {
    let mut o = NodeOptions::new(dir, name);
    o.config = Some(config.clone());
    o.local = Some(LocalData::InMemory);
    o.segment_size = Some(1 << 20);
    Node::start(o).unwrap()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn online_on<'a>(nodes: &'a [Node], group: &str) -> Option<&'a Node> {
    nodes.iter().find(|n| {
        n.view()
            .groups
            .iter()
            .any(|g| g.name == group && g.state == mqcluster::GroupState::Online)
    })
}

/// Connects to the virtual server by its name, as a client would.
fn by_name(coord: &DirCoordination, name: &str) -> BlockingClient {
    let addr = coord.resolve(name).unwrap().expect("name registered");
    BlockingClient::connect(&addr).unwrap()
}

#[test]
fn a_virtual_server_fails_over_and_moves_with_its_queues() {
    let dir = tempfile::tempdir().unwrap();
    let config = ClusterConfig::parse(&cluster_file(block(), "")).unwrap();
    let coord = DirCoordination::open(dir.path(), config.timing.lease()).unwrap();
    let mut nodes: Vec<Node> = ["NODE1", "NODE2", "NODE3"]
        .iter()
        .map(|n| start(dir.path(), &config, n))
        .collect();
    wait_for("VS1 online", || online_on(&nodes, "VS1").is_some());
    assert_eq!(
        online_on(&nodes, "VS1").unwrap().name(),
        "NODE2",
        "preferred owner"
    );
    let view = online_on(&nodes, "VS1").unwrap().view();
    let order: Vec<&str> = view.groups[0]
        .resources
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(order, ["VS1-IP", "VS1-Name", "VS1-Disk", "VS1-MSMQ"]);

    let client = by_name(&coord, "VS1");
    client
        .create_queue(
            r".\private$\orders",
            QueueProps {
                transactional: true,
                ..QueueProps::default()
            },
        )
        .unwrap();
    for i in 0..20 {
        client
            .send(
                r".\private$\orders",
                Message::new(format!("m{i}")),
                Tx::Single,
            )
            .unwrap();
    }
    drop(client);

    // The owner dies: the next preferred node takes the group and its queue over.
    let owner = nodes.remove(1);
    let killed = Instant::now();
    owner.kill();
    wait_for("VS1 online elsewhere", || {
        online_on(&nodes, "VS1").is_some()
    });
    eprintln!("failover took {:?}", killed.elapsed());
    assert_eq!(online_on(&nodes, "VS1").unwrap().name(), "NODE1");
    let client = by_name(&coord, "VS1");
    assert_eq!(
        client.open(r".\private$\orders").unwrap().len().unwrap(),
        20
    );
    let record = coord.record("VS1").unwrap();
    assert_eq!(record.failover_count, 1);

    // An administrator's move: offline in reverse order here, online there.
    ops::move_group(&config, &coord, "VS1", Some("NODE3")).unwrap();
    wait_for("VS1 on NODE3", || {
        online_on(&nodes, "VS1").is_some_and(|n| n.name() == "NODE3")
    });
    let client = by_name(&coord, "VS1");
    let q = client.open(r".\private$\orders").unwrap();
    assert_eq!(q.len().unwrap(), 20);
    let first = q.peek(Duration::ZERO).unwrap();
    assert_eq!(&first.body[..], b"m0");
    assert_eq!(
        coord.record("VS1").unwrap().failover_count,
        1,
        "a move is not a failover"
    );
    for n in nodes {
        n.stop();
    }
}
