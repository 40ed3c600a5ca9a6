//! Real process kills: a child runs concurrent transactional sends and receives on a storage
//! directory and reports every acknowledged commit; the parent kills it with SIGKILL at a random
//! moment, reopens the directory, and checks the whole queue.
//!
//! 50 kills by default; `MQEMU_KILLS=1000 cargo test --release crash` runs a longer sweep.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use mqemu::QueueManager;

const QUEUE: &str = r".\private$\kill";
const SENDERS: u32 = 3;

/// A small deterministic generator for kill delays (no dependency for one number per kill).
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn parse(body: &str) -> (u32, u64) {
    let (s, seq) = body
        .split_once(':')
        .unwrap_or_else(|| panic!("body {body:?} is not sender:seq"));
    (s.parse().unwrap(), seq.parse().unwrap())
}

#[derive(Default)]
struct Acknowledged {
    sent: HashSet<String>,
    /// Taken by a receive whose commit was not reported, in the run just killed.
    taking: HashSet<String>,
    /// Received by a commit that was reported, or that a restart showed was durable.
    received: HashSet<String>,
}

impl Acknowledged {
    fn line(&mut self, line: &str) {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("SENT") => {
                let s: u32 = words.next().unwrap().parse().unwrap();
                let first: u64 = words.next().unwrap().parse().unwrap();
                let last: u64 = words.next().unwrap().parse().unwrap();
                for seq in first..=last {
                    self.sent.insert(format!("{s}:{seq}"));
                }
            }
            Some("TAKE") => {
                self.taking.insert(words.next().unwrap().to_owned());
            }
            Some("RECV") => {
                self.received.insert(words.next().unwrap().to_owned());
            }
            _ => {}
        }
    }
}

/// Checks what a restart finds against everything the killed processes acknowledged.
fn check(queue: &[String], acked: &Acknowledged, kill: usize) {
    let mut seen = HashSet::new();
    let mut last: BTreeMap<u32, u64> = BTreeMap::new();
    for body in queue {
        assert!(
            seen.insert(body),
            "kill {kill}: {body} is in the queue twice"
        );
        assert!(
            !acked.received.contains(body),
            "kill {kill}: {body} came back after its receive committed"
        );
        let (s, seq) = parse(body);
        assert!(s < SENDERS, "kill {kill}: {body} was never sent");
        if let Some(prev) = last.insert(s, seq) {
            assert!(
                prev < seq,
                "kill {kill}: {body} is after {s}:{prev}: order lost"
            );
        }
    }
    for body in &acked.sent {
        assert!(
            seen.contains(body) || acked.received.contains(body) || acked.taking.contains(body),
            "kill {kill}: {body} was acknowledged as sent, is not in the queue, and no receive of it was attempted"
        );
    }
}

/// Settles the receives the killed run left unreported: one whose message is back in the queue
/// was rolled back; one whose message is gone committed, so it must never come back either.
fn settle(queue: &[String], acked: &mut Acknowledged) {
    let present: HashSet<&String> = queue.iter().collect();
    for body in std::mem::take(&mut acked.taking) {
        if !present.contains(&body) {
            acked.received.insert(body);
        }
    }
}

/// Prints its text if dropped while the test panics: a killed worker's stderr, next to the
/// failed check of what it left.
struct ShowOnPanic(String);

impl Drop for ShowOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.0);
        }
    }
}

#[test]
fn killed_processes_lose_nothing_acknowledged_and_duplicate_nothing() {
    let kills: usize = std::env::var("MQEMU_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let root = tempfile::tempdir().unwrap();
    let mut acked = Acknowledged::default();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut lines_total = 0;
    for kill in 0..kills {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mqemu"))
            .args(["crash-worker", "--data"])
            .arg(root.path())
            .args(["--senders", &SENDERS.to_string(), "--receivers", "2"])
            .args(["--base", &(kill as u64 * 10_000_000).to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        // The worker's stderr, read on its own thread so the pipe never fills.
        let errors = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut text);
            text
        });
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line == "READY" {
                    let _ = tx.send(());
                }
                lines.push(line);
            }
            lines
        });
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = child.kill();
            let status = child.wait();
            panic!(
                "kill {kill}: the worker never became ready (exit {status:?}); its stderr:\n{}",
                errors.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(1 + next(&mut rng) % 120));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let lines = reader.join().unwrap();
        // Shown if a check of what this run left fails.
        let _stderr = ShowOnPanic(format!(
            "kill {kill}: the worker's stderr:\n{}",
            errors.join().unwrap()
        ));
        lines_total += lines.len();
        for line in &lines {
            acked.line(line);
        }
        let qm = QueueManager::builder()
            .open(root.path())
            .unwrap_or_else(|e| panic!("kill {kill}: reopening failed: {e}"));
        // The worker creates the queue before it reports READY.
        let queue: Vec<String> = qm
            .open(QUEUE)
            .and_then(|q| q.messages())
            .unwrap_or_else(|e| panic!("kill {kill}: {e}"))
            .iter()
            .map(|m| m.body_str().unwrap().to_owned())
            .collect();
        check(&queue, &acked, kill);
        settle(&queue, &mut acked);
    }
    eprintln!(
        "{kills} kills: {} sends and {} receives acknowledged ({lines_total} report lines), nothing lost, duplicated or reordered",
        acked.sent.len(),
        acked.received.len()
    );
    assert!(
        !acked.sent.is_empty() && !acked.received.is_empty(),
        "the workers made progress"
    );
}
