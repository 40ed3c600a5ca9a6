//! `mqemu bench-recovery`: how long a durable queue manager takes to open, with many live messages
//! and with the same number sent and received (history only), beside the time to just read the
//! same log files.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mqemu::{Message, QueueManager, QueueProps, Tx};

const QUEUE: &str = r".\private$\recovery";
const BATCH: u64 = 1000;

/// Options of one run.
pub struct Options {
    pub messages: u64,
    pub size: usize,
    pub dir: PathBuf,
    pub json: bool,
}

/// Bytes in the files under `dir`.
fn disk_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        disk_bytes(&p)
                    } else {
                        e.metadata().map(|m| m.len()).unwrap_or(0)
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Time to read every file under `dir` with plain reads: the floor for any recovery.
fn read_all(dir: &Path) -> Duration {
    let start = Instant::now();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let _ = std::fs::read(&p);
            }
        }
    }
    start.elapsed()
}

/// Resident memory of this process, from /proc (Linux), in bytes.
pub fn rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Fills `root` with `n` messages in transactions of [`BATCH`]; with `drain`, every batch is
/// received again right after it is sent.
fn fill(root: &Path, n: u64, size: usize, drain: bool, what: &str) -> mqemu::Result<()> {
    let qm = QueueManager::builder().open(root)?;
    let q = qm.create_queue(QUEUE, QueueProps::transactional())?;
    let body = vec![0x5au8; size];
    let mut last = Instant::now();
    let mut done = 0;
    while done < n {
        let k = BATCH.min(n - done);
        let tx = qm.begin();
        for _ in 0..k {
            q.send(Message::new(body.clone()), Tx::In(&tx))?;
        }
        tx.commit()?;
        if drain {
            let tx = qm.begin();
            for _ in 0..k {
                q.receive(Duration::ZERO, Tx::In(&tx))?;
            }
            tx.commit()?;
        }
        done += k;
        if last.elapsed() > Duration::from_secs(2) {
            last = Instant::now();
            eprintln!("  {what}: {done}/{n} messages");
        }
    }
    Ok(())
}

/// In this process (a fresh one, see [`reopen`]): opens `root`, checks it holds `expect`
/// messages, and prints the open time in seconds and the resident memory in bytes.
pub fn open_only(root: &Path, expect: u64) -> mqemu::Result<()> {
    let start = Instant::now();
    let qm = QueueManager::builder().open(root)?;
    let took = start.elapsed();
    let count = qm.queue_info(QUEUE)?.message_count as u64;
    if count != expect {
        return Err(mqemu::Error::new(
            mqemu::ErrorCode::MessageStorageFailed,
            format!("recovery found {count} messages, expected {expect}"),
        ));
    }
    println!("{:.6} {}", took.as_secs_f64(), rss().unwrap_or(0));
    Ok(())
}

/// Opens `root` in a fresh process, so that neither the allocator's leftovers nor warm caches
/// of this one flatter the figures; returns the open time and the resident memory after it.
fn reopen(root: &Path, expect: u64) -> mqemu::Result<(Duration, u64)> {
    let fail = |why: String| mqemu::Error::new(mqemu::ErrorCode::MessageStorageFailed, why);
    let exe = std::env::current_exe().map_err(|e| fail(e.to_string()))?;
    let out = std::process::Command::new(exe)
        .args(["bench-recovery", "--open-only"])
        .arg(root)
        .args(["--messages", &expect.to_string()])
        .output()
        .map_err(|e| fail(e.to_string()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    match (out.status.success(), words.next(), words.next()) {
        (true, Some(secs), Some(rss)) => Ok((
            Duration::from_secs_f64(secs.parse().unwrap_or(0.0)),
            rss.parse().unwrap_or(0),
        )),
        _ => Err(fail(format!(
            "opening {} failed: {}",
            root.display(),
            String::from_utf8_lossy(&out.stderr)
        ))),
    }
}

/// Runs both scenarios and prints the figures.
pub fn run(o: &Options) -> mqemu::Result<()> {
    let live = o.dir.join("live");
    let history = o.dir.join("history");
    for d in [&live, &history] {
        let _ = std::fs::remove_dir_all(d);
    }
    eprintln!("writing {} live messages of {} B...", o.messages, o.size);
    fill(&live, o.messages, o.size, false, "live")?;
    eprintln!("writing {} messages sent and received...", o.messages);
    fill(&history, o.messages, o.size, true, "history")?;
    let live_bytes = disk_bytes(&live.join("msmq/storage/wal"));
    let history_bytes = disk_bytes(&history.join("msmq/storage/wal"));
    let live_read = read_all(&live.join("msmq/storage/wal"));
    let (live_open, live_rss) = reopen(&live, o.messages)?;
    let (history_open, _) = reopen(&history, 0)?;
    let ratio = live_open.as_secs_f64() / history_open.as_secs_f64().max(1e-9);
    if o.json {
        println!(
            "{{\"messages\":{},\"size\":{},\"live\":{{\"open_s\":{:.3},\"log_bytes\":{},\"read_s\":{:.3},\"rss_bytes\":{}}},\"history\":{{\"open_s\":{:.3},\"log_bytes\":{}}},\"live_over_history\":{:.1}}}",
            o.messages,
            o.size,
            live_open.as_secs_f64(),
            live_bytes,
            live_read.as_secs_f64(),
            live_rss,
            history_open.as_secs_f64(),
            history_bytes,
            ratio
        );
    } else {
        println!(
            "{} live messages of {} B: open {:.3}s ({} MiB of log; reading it alone takes {:.3}s); resident memory {} MiB after opening",
            o.messages,
            o.size,
            live_open.as_secs_f64(),
            live_bytes >> 20,
            live_read.as_secs_f64(),
            live_rss >> 20
        );
        println!(
            "{} messages sent and received: open {:.3}s ({} MiB of log left after compaction)",
            o.messages,
            history_open.as_secs_f64(),
            history_bytes >> 20
        );
        println!("history-only recovery is {ratio:.0}x faster than live recovery");
    }
    Ok(())
}
