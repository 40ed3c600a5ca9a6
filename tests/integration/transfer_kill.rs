//! The transfer kill test, Jepsen's total-queue shape: two `mqemu serve` processes on 127.0.0.2
//! (alpha, the sender's) and 127.0.0.3 (beta, the destination's), a fault proxy on 127.0.0.4 in
//! between that cuts connections mid-frame, client processes sending transactional messages in
//! transactions of 1 to 10 through alpha to beta (and one sending recoverable ones), while both
//! servers are SIGKILLed and restarted at random moments. At the end every message whose commit
//! was acknowledged is in beta's queue exactly once and in each sender's order, and nothing is
//! there that was never tried.
//!
//! CI runs a sample (3,000 transactional messages, 6 kills of beta, 3 of alpha). The full run:
//! `MQEMU_TRANSFER_MESSAGES=100000 MQEMU_TRANSFER_KILLS=20 cargo test --release --test
//! integration transfer_kill -- --nocapture` (alpha is killed half as often as beta).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mqemu::testing::{Direction, FaultyProxy};
use mqemu::QueueManager;
use mqnet::BlockingClient;

use crate::support::free_port;

const ORDERS: &str = r".\private$\orders";
const PLAIN: &str = r".\private$\plain";
/// Transactional senders.
const SENDERS: u32 = 3;
/// The recoverable sender's number.
const RECOVERABLE: u32 = 9;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A deterministic generator for delays and choices.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// One `mqemu serve` process and how to start it again.
struct ServerProc {
    name: &'static str,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl ServerProc {
    fn new(dir: &Path, name: &'static str, config: String) -> ServerProc {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, config).unwrap();
        ServerProc {
            name,
            config: path,
            log: dir.join(format!("{name}.log")),
            child: None,
            starts: 0,
        }
    }

    /// Starts the server and waits until it listens.
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_mqemu"))
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("listening on") {
                    let _ = tx.send(());
                }
            }
        });
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = child.kill();
            panic!(
                "{} did not start; its log:\n{}",
                self.name,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
        self.starts += 1;
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap(); // SIGKILL
            c.wait().unwrap();
        }
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What the client processes reported.
#[derive(Default)]
struct Reports {
    tried: HashSet<(u32, u64)>,
    sent: HashSet<(u32, u64)>,
    done: u32,
}

impl Reports {
    fn line(&mut self, line: &str) {
        let mut w = line.split_whitespace();
        let kind = w.next();
        if kind == Some("DONE") {
            self.done += 1;
            return;
        }
        let (Some(s), Some(first), Some(last)) = (w.next(), w.next(), w.next()) else {
            return;
        };
        let (s, first, last): (u32, u64, u64) = (
            s.parse().unwrap(),
            first.parse().unwrap(),
            last.parse().unwrap(),
        );
        let set = match kind {
            Some("TRY") => &mut self.tried,
            Some("SENT") => &mut self.sent,
            _ => return,
        };
        for n in first..=last {
            set.insert((s, n));
        }
    }
}

fn worker(via: &str, dest: &str, sender: u32, count: u64, recoverable: bool) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mqemu"));
    cmd.arg("transfer-worker")
        .args(["--via", via, "--dest", dest])
        .args([
            "--sender",
            &sender.to_string(),
            "--count",
            &count.to_string(),
        ])
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if recoverable {
        cmd.arg("--recoverable");
    }
    cmd.spawn().unwrap()
}

fn parse(body: &str) -> (u32, u64) {
    let (s, n) = body.split_once(':').unwrap();
    (s.parse().unwrap(), n.parse().unwrap())
}

fn bodies(qm: &QueueManager, queue: &str) -> Vec<(u32, u64)> {
    qm.open(queue)
        .unwrap()
        .messages()
        .unwrap()
        .iter()
        .map(|m| parse(m.body_str().unwrap()))
        .collect()
}

fn outgoing_left(via: &str) -> Option<usize> {
    let c = BlockingClient::connect(via).ok()?;
    let list = c.outgoing().ok()?;
    Some(list.iter().map(|o| o.info.messages).sum())
}

#[test]
fn transfer_kill() {
    kill_run(Transport::Native, 3000, 6);
}

/// The same over MSMQ's binary protocol: alpha's outgoing queue for beta delivers through
/// MS-MQQB (`[hosts] beta = "mqqb://..."`) to beta's `mqqb` listener, the proxy in between.
/// CI runs a smaller sample; the same variables scale it.
#[test]
fn transfer_kill_over_mqqb() {
    kill_run(Transport::Mqqb, 1500, 4);
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Transport {
    Native,
    Mqqb,
}

fn kill_run(transport: Transport, messages: u64, kills: u64) {
    let messages = env_or("MQEMU_TRANSFER_MESSAGES", messages);
    let kills_b = env_or("MQEMU_TRANSFER_KILLS", kills);
    let kills_a = kills_b.div_ceil(2);
    let recoverable = messages / 10;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mqqb_port = free_port();
    let transfer = "[transfer]\nresend_ms = [20, 50, 100, 200]\nbatch = 64\nwindow = 4\n";
    let (beta_address, beta_mqqb) = match transport {
        Transport::Native => ("127.0.0.4".to_owned(), String::new()),
        Transport::Mqqb => (
            format!("mqqb://127.0.0.4:{mqqb_port}"),
            format!("mqqb = \"127.0.0.3:{mqqb_port}\"\n"),
        ),
    };
    let mut alpha = ServerProc::new(
        dir.path(),
        "alpha",
        format!(
            "name = \"alpha\"\nlisten = \"127.0.0.2:{port}\"\ndata = {:?}\n[hosts]\nbeta = {beta_address:?}\n{transfer}",
            dir.path().join("alpha-data")
        ),
    );
    let beta_data = dir.path().join("beta-data");
    let mut beta = ServerProc::new(
        dir.path(),
        "beta",
        format!(
            "name = \"beta\"\nlisten = \"127.0.0.3:{port}\"\ndata = {beta_data:?}\n{beta_mqqb}{transfer}\n\
             [[queue]]\npath = '{ORDERS}'\ntransactional = true\n\n[[queue]]\npath = '{PLAIN}'\n"
        ),
    );
    let proxied = match transport {
        Transport::Native => port,
        Transport::Mqqb => mqqb_port,
    };
    let listen: SocketAddr = format!("127.0.0.4:{proxied}").parse().unwrap();
    let upstream: SocketAddr = format!("127.0.0.3:{proxied}").parse().unwrap();
    let proxy = FaultyProxy::start_on(listen, upstream).unwrap();
    beta.start();
    alpha.start();
    let via = format!("127.0.0.2:{port}");

    let reports = Arc::new(Mutex::new(Reports::default()));
    let mut workers = Vec::new();
    let mut readers = Vec::new();
    let per = messages / u64::from(SENDERS);
    for s in 0..=SENDERS {
        let mut child = if s == SENDERS {
            worker(&via, r"beta\private$\plain", RECOVERABLE, recoverable, true)
        } else {
            worker(&via, r"beta\private$\orders", s, per, false)
        };
        let out = child.stdout.take().unwrap();
        let reports = reports.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                reports.lock().unwrap().line(&line);
            }
        }));
        workers.push(child);
    }

    // Chaos until every worker is done and every kill has happened.
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let (mut killed_a, mut killed_b, mut cuts) = (0, 0, 0u64);
    let started = Instant::now();
    let workers_done = |r: &Arc<Mutex<Reports>>| r.lock().unwrap().done > SENDERS;
    while !(workers_done(&reports) && killed_a >= kills_a && killed_b >= kills_b) {
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "the kill test did not finish"
        );
        std::thread::sleep(Duration::from_millis(50 + next(&mut rng) % 250));
        match next(&mut rng) % 5 {
            0 | 1 if killed_b < kills_b => {
                beta.kill();
                killed_b += 1;
                std::thread::sleep(Duration::from_millis(next(&mut rng) % 200));
                beta.start();
            }
            2 if killed_a < kills_a => {
                alpha.kill();
                killed_a += 1;
                std::thread::sleep(Duration::from_millis(next(&mut rng) % 200));
                alpha.start();
            }
            _ => {
                // Cut the next connection mid-frame: answers are small, requests large.
                let (direction, bytes) = if next(&mut rng).is_multiple_of(2) {
                    (Direction::ToServer, next(&mut rng) % 20_000)
                } else {
                    (Direction::ToClient, next(&mut rng) % 1_000)
                };
                proxy.cut_after(direction, bytes);
                cuts += 1;
            }
        }
    }
    proxy.heal();
    for mut w in workers {
        assert!(w.wait().unwrap().success(), "a worker failed");
    }
    for r in readers {
        r.join().unwrap();
    }
    // Everything committed drains to beta.
    let drained = Instant::now();
    while outgoing_left(&via) != Some(0) {
        assert!(
            drained.elapsed() < Duration::from_secs(300),
            "alpha's outgoing queues did not drain: {:?} left",
            outgoing_left(&via)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    alpha.kill();
    beta.kill();
    let qm = QueueManager::builder().open(&beta_data).unwrap();
    let delivered = bodies(&qm, ORDERS);
    let plain = bodies(&qm, PLAIN);
    let reports = reports.lock().unwrap();

    // The total-queue check.
    let mut seen = HashSet::new();
    let (mut duplicated, mut reordered, mut never_tried) = (0, 0, 0);
    let mut last: BTreeMap<u32, u64> = BTreeMap::new();
    for &(s, n) in &delivered {
        if !seen.insert((s, n)) {
            duplicated += 1;
        }
        if !reports.tried.contains(&(s, n)) {
            never_tried += 1;
        }
        if let Some(prev) = last.insert(s, n) {
            if prev >= n {
                reordered += 1;
            }
        }
    }
    let committed: Vec<&(u32, u64)> = reports.sent.iter().filter(|(s, _)| *s < SENDERS).collect();
    let lost = committed.iter().filter(|m| !seen.contains(m)).count();
    let unknown_delivered = delivered.len() - duplicated - committed.len() + lost;
    // Recoverable: at least once.
    let mut copies: HashMap<(u32, u64), usize> = HashMap::new();
    for m in &plain {
        *copies.entry(*m).or_default() += 1;
    }
    let rec_sent: Vec<&(u32, u64)> = reports
        .sent
        .iter()
        .filter(|(s, _)| *s == RECOVERABLE)
        .collect();
    let rec_lost = rec_sent.iter().filter(|m| !copies.contains_key(m)).count();
    let rec_dups: usize = copies.values().map(|c| c - 1).sum();
    eprintln!(
        "transfer kill test ({transport:?}): {} transactional messages committed and acknowledged, {} delivered \
         ({unknown_delivered} from commits whose answer was lost); beta killed {killed_b} times, \
         alpha {killed_a} times (started {} and {} times), {cuts} proxy cuts planned, {} done; \
         lost {lost}, duplicated {duplicated}, reordered {reordered}, never tried {never_tried}. \
         Recoverable: {} acknowledged, {} copies delivered, lost {rec_lost}, duplicates {rec_dups}.",
        committed.len(),
        delivered.len(),
        beta.starts,
        alpha.starts,
        proxy.stats().cut,
        rec_sent.len(),
        plain.len(),
    );
    assert_eq!(
        (lost, duplicated, reordered, never_tried),
        (0, 0, 0, 0),
        "lost, duplicated, reordered, never tried"
    );
    assert_eq!(rec_lost, 0, "recoverable messages lost");
    assert!(
        committed.len() as u64 >= messages / 2,
        "the senders made progress"
    );
    let dead = qm.open(r".\SYSTEM$;DEADXACT").unwrap().len().unwrap();
    assert_eq!(dead, 0, "beta dead-lettered transactional messages");
}
