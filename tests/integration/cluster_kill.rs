//! The cluster kill test: three `mqemu node` processes on 127.61.0.1-3 hosting the virtual
//! server VS1 (127.61.0.11), client processes sending and receiving transactionally through the
//! name `VS1`, and the owner SIGKILLed again and again (then started again). After every kill
//! the group must come online on another node and the clients carry on; at the end a
//! total-queue check finds no acknowledged message lost and none twice.
//!
//! CI runs 10 failovers. The sweep: `MQEMU_CLUSTER_KILLS=100 cargo test --release --test
//! integration cluster_kill -- --nocapture` (it prints the counts and the failover times).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mqemu::cluster::coord::dir::DirCoordination;
use mqemu::cluster::disk::SharedDisk;
use mqemu::cluster::{status, ClusterConfig};
use mqemu::{QueueManager, QueueProps, Tx};

const ORDERS: &str = r".\private$\orders";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cluster_file(net: &str) -> String {
    format!(
        r#"
[timing]
heartbeat_ms = 100
missed_heartbeats = 5

[[node]]
name = "NODE1"
address = "{net}.1"

[[node]]
name = "NODE2"
address = "{net}.2"

[[node]]
name = "NODE3"
address = "{net}.3"

[[group]]
name = "VS1"
preferred_owners = ["NODE1", "NODE2", "NODE3"]
failover_threshold = 1000

[[group.resource]]
name = "VS1-IP"
type = "ip_address"
address = "{net}.11"

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
"#
    )
}

/// A child process whose output lines are collected as they come.
struct Proc {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

fn spawn(args: &[&str], log: &Path) -> Proc {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mqemu"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    Proc { child, lines }
}

fn start_node(dir: &Path, name: &str) -> Proc {
    let d = dir.to_str().unwrap();
    spawn(
        &["--cluster", d, "node", "--name", name, "--in-memory"],
        &dir.join(format!("{name}.log")),
    )
}

fn lines(p: &Proc) -> Vec<String> {
    p.lines.lock().unwrap().clone()
}

fn count(p: &[Proc], prefix: &str) -> usize {
    p.iter()
        .map(|w| lines(w).iter().filter(|l| l.starts_with(prefix)).count())
        .sum()
}

/// The owner of VS1 while it is online, with the owner's pid.
fn online_owner(config: &ClusterConfig, coord: &DirCoordination) -> Option<(String, u64)> {
    let s = status::read(config, coord).ok()?;
    let g = &s.groups[0];
    (g.state == "Online").then(|| (g.owner.clone().unwrap(), g.token.unwrap()))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[test]
fn acknowledged_messages_survive_every_failover_exactly_once() {
    let kills = env_or("MQEMU_CLUSTER_KILLS", 10);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = dir.to_str().unwrap();
    let net = "127.61.0";
    std::fs::write(dir.join("cluster.toml"), cluster_file(net)).unwrap();
    let config = ClusterConfig::load(&dir.join("cluster.toml")).unwrap();
    let coord = DirCoordination::open(dir, config.timing.lease()).unwrap();
    let names = ["NODE1", "NODE2", "NODE3"];
    let mut nodes: HashMap<&str, Proc> = names.iter().map(|n| (*n, start_node(dir, n))).collect();
    crate::support::eventually("VS1 is online", || online_owner(&config, &coord).is_some());
    let admin = mqemu::cluster::client::connect_by_name(dir, "VS1", &Default::default()).unwrap();
    admin
        .create_queue(ORDERS, QueueProps::transactional())
        .unwrap();
    drop(admin);

    let stop = dir.join("stop");
    let s = stop.to_str().unwrap();
    let worker = |id: u32, receive: bool| {
        let id_s = id.to_string();
        let mut args = vec![
            "cluster-worker",
            "--dir",
            d,
            "--name",
            "VS1",
            "--queue",
            ORDERS,
            "--id",
            &id_s,
            "--stop-file",
            s,
        ];
        if receive {
            args.push("--receive");
        }
        spawn(&args, &dir.join(format!("worker{id}.log")))
    };
    let mut workers = vec![worker(1, false), worker(2, false), worker(3, true)];

    let mut failovers = Vec::new();
    let mut first_commits = Vec::new();
    for k in 0..kills {
        // Let traffic flow through the current owner first.
        let before = count(&workers, "SENT ");
        crate::support::eventually("messages flow", || count(&workers, "SENT ") >= before + 20);
        let (owner, token) = online_owner(&config, &coord).expect("online");
        let victim = names
            .iter()
            .find(|n| n.eq_ignore_ascii_case(&owner))
            .unwrap();
        let mut proc = nodes.remove(victim).unwrap();
        let sent_before = count(&workers, "SENT ");
        proc.child.kill().unwrap();
        let killed = Instant::now();
        proc.child.wait().unwrap();
        crate::support::eventually("VS1 online on another node", || {
            online_owner(&config, &coord).is_some_and(|(_, t)| t > token)
        });
        failovers.push(killed.elapsed());
        crate::support::eventually("a commit through VS1 after the failover", || {
            count(&workers, "SENT ") > sent_before + 2
        });
        first_commits.push(killed.elapsed());
        eprintln!(
            "kill {k}: {owner} killed, online again after {:?}",
            failovers.last().unwrap()
        );
        nodes.insert(victim, start_node(dir, victim));
    }

    std::fs::write(&stop, b"").unwrap();
    for w in &mut workers {
        let status = w.child.wait().unwrap();
        assert!(status.success(), "a worker failed: {status}");
    }
    for (_, mut n) in nodes {
        let pid = n.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        n.child.wait().unwrap();
    }

    // The total-queue check, on the disk the last owner left.
    let disk = SharedDisk::new(dir.join("disks/vs1"));
    let root = dir
        .join("disks/vs1")
        .join(format!("gen-{}", disk.current().unwrap()));
    let qm = QueueManager::builder().open(&root).unwrap();
    let all: Vec<String> = workers.iter().flat_map(lines).collect();
    let mut decided = HashSet::new();
    for l in &all {
        if let Some(rest) = l.strip_prefix("COMMIT ") {
            decided.insert(rest.split(' ').next().unwrap().to_owned());
        }
    }
    // In-doubt receives: commit those whose client asked for the commit, abort the others.
    for xid in qm.in_doubt() {
        qm.resolve_in_doubt(&xid, decided.contains(&xid)).unwrap();
    }
    let mut left = Vec::new();
    while let Ok(m) = qm.receive(ORDERS, Duration::ZERO, Tx::None) {
        left.push(String::from_utf8_lossy(&m.body).into_owned());
    }
    let sent: Vec<&str> = all.iter().filter_map(|l| l.strip_prefix("SENT ")).collect();
    let got: Vec<&str> = all.iter().filter_map(|l| l.strip_prefix("GOT ")).collect();
    let maybe_got: HashSet<&str> = all
        .iter()
        .filter_map(|l| l.strip_prefix("COMMIT "))
        .map(|r| r.split(' ').nth(1).unwrap())
        .collect();
    let tried: HashSet<&str> = all.iter().filter_map(|l| l.strip_prefix("TRY ")).collect();
    let left_set: HashSet<&str> = left.iter().map(String::as_str).collect();
    let lost: Vec<&&str> = sent
        .iter()
        .filter(|b| !left_set.contains(**b) && !maybe_got.contains(**b))
        .collect();
    let mut seen = HashMap::new();
    for b in got.iter().copied().chain(left.iter().map(String::as_str)) {
        *seen.entry(b).or_insert(0) += 1;
    }
    let duplicated: Vec<_> = seen.iter().filter(|(_, &n)| n > 1).collect();
    let invented: Vec<_> = seen.keys().filter(|b| !tried.contains(**b)).collect();
    failovers.sort();
    first_commits.sort();
    eprintln!(
        "{kills} failovers: {} sends acknowledged, {} receives acknowledged, {} left in the queue; \
         lost {}, duplicated {}, never sent {}",
        sent.len(),
        got.len(),
        left.len(),
        lost.len(),
        duplicated.len(),
        invented.len()
    );
    if !failovers.is_empty() {
        eprintln!(
            "kill to online on the new owner: p50 {:?} p90 {:?} max {:?}; to the first commit \
             through the name: p50 {:?} p90 {:?} max {:?} (heartbeat 100 ms, lease 500 ms)",
            percentile(&failovers, 0.5),
            percentile(&failovers, 0.9),
            failovers.last().unwrap(),
            percentile(&first_commits, 0.5),
            percentile(&first_commits, 0.9),
            first_commits.last().unwrap()
        );
    }
    assert!(lost.is_empty(), "acknowledged sends lost: {lost:?}");
    assert!(duplicated.is_empty(), "delivered twice: {duplicated:?}");
    assert!(invented.is_empty(), "never sent: {invented:?}");
    assert!(sent.len() > 20 * kills as usize);
}
