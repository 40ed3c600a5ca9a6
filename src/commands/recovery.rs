//! `mqemu bench-recovery`: how long a durable queue manager takes to open, with many live messages
//! and with the same number sent and received (history only), beside the time to just read the
//! same log files.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mqemu::{Message, QueueManager, QueueProps, Tx};

const QUEUE: &str = r".\private$\recovery";
const BATCH: u64 = 1000;

/// Options of one run.
#[derive(clap::Args, Debug)]
pub struct Options {
    /// Messages in each scenario.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(0..=100_000_000))]
    pub messages: u64,
    /// Body size in bytes.
    #[arg(long, default_value_t = 1024, value_parser = clap::builder::RangedI64ValueParser::<usize>::new().range(0..=4 * 1024 * 1024))]
    pub size: usize,
    /// Where the two storage directories go (emptied first).
    #[arg(long, default_value = "./mqemu-recovery-bench")]
    pub dir: PathBuf,
    /// Skip the history-only scenario (it writes as much log again).
    #[arg(long)]
    pub no_history: bool,
    /// Measure a cluster takeover instead of a restart: the storage is a virtual server's
    /// shared disk, and the new owner fences and seals it (copies its log to a new generation)
    /// before opening it.
    #[arg(long)]
    pub takeover: bool,
    /// Only open this storage root, expecting `--messages` messages, and print the open time and
    /// resident memory (the benchmark runs each open in a fresh process this way).
    #[arg(long, hide = true)]
    pub open_only: Option<PathBuf>,
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

/// What a log directory holds: its segments, and the spare segment compaction keeps for reuse.
#[derive(Clone, Copy)]
struct LogFiles {
    segments: u64,
    segment_bytes: u64,
    spare_bytes: u64,
}

fn log_files(wal: &Path) -> LogFiles {
    let mut files = LogFiles {
        segments: 0,
        segment_bytes: 0,
        spare_bytes: 0,
    };
    for e in std::fs::read_dir(wal).into_iter().flatten().flatten() {
        let len = e.metadata().map(|m| m.len()).unwrap_or(0);
        if e.path().extension().is_some_and(|x| x == "wal") {
            files.segments += 1;
            files.segment_bytes += len;
        } else {
            files.spare_bytes += len;
        }
    }
    files
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
    proc_status("VmRSS:")
}

/// The most resident memory this process has had, in bytes.
fn peak_rss() -> Option<u64> {
    proc_status("VmHWM:")
}

fn proc_status(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Fills `root` with `n` messages in transactions of [`BATCH`]; with `drain`, every batch is
/// received again right after it is sent. Returns the resident memory at the end, with every
/// message still queued (without `drain`).
fn fill(root: &Path, n: u64, size: usize, drain: bool, what: &str) -> mqemu::Result<u64> {
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
            eprintln!(
                "  {what}: {done}/{n} messages, resident memory {} MiB",
                rss().unwrap_or(0) >> 20
            );
        }
    }
    Ok(rss().unwrap_or(0))
}

/// In this process (a fresh one, see [`reopen`]): opens `root`, checks it holds `expect`
/// messages, and prints the open time in seconds and the resident memory in bytes.
fn open_only(root: &Path, expect: u64, takeover: bool) -> mqemu::Result<()> {
    let start = Instant::now();
    let root = if takeover {
        mqemu::cluster::disk::SharedDisk::new(root)
            .mount(false)?
            .root
    } else {
        root.to_owned()
    };
    let qm = QueueManager::builder().open(&root)?;
    let took = start.elapsed();
    let count = qm.queue_info(QUEUE)?.message_count as u64;
    if count != expect {
        return Err(mqemu::Error::new(
            mqemu::ErrorCode::MessageStorageFailed,
            format!("recovery found {count} messages, expected {expect}"),
        ));
    }
    println!(
        "{:.6} {} {}",
        took.as_secs_f64(),
        rss().unwrap_or(0),
        peak_rss().unwrap_or(0)
    );
    Ok(())
}

/// What opening a storage root in a fresh process measured.
struct Opened {
    took: Duration,
    /// Resident memory after opening.
    rss: u64,
    /// The most resident memory during opening.
    peak: u64,
}

/// Opens `root` in a fresh process, so that neither the allocator's leftovers nor warm caches
/// of this one flatter the figures.
fn reopen(root: &Path, expect: u64, takeover: bool) -> mqemu::Result<Opened> {
    let fail = |why: String| mqemu::Error::new(mqemu::ErrorCode::MessageStorageFailed, why);
    let exe = std::env::current_exe().map_err(|e| fail(e.to_string()))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["bench-recovery", "--open-only"])
        .arg(root)
        .args(["--messages", &expect.to_string()]);
    if takeover {
        cmd.arg("--takeover");
    }
    let out = cmd.output().map_err(|e| fail(e.to_string()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    match (
        out.status.success(),
        words.next(),
        words.next(),
        words.next(),
    ) {
        (true, Some(secs), Some(rss), Some(peak)) => Ok(Opened {
            took: Duration::from_secs_f64(secs.parse().unwrap_or(0.0)),
            rss: rss.parse().unwrap_or(0),
            peak: peak.parse().unwrap_or(0),
        }),
        _ => Err(fail(format!(
            "opening {} failed: {}",
            root.display(),
            String::from_utf8_lossy(&out.stderr)
        ))),
    }
}

/// Runs both scenarios and prints the figures (JSON with `json`); with `--open-only`, only the
/// open that one scenario runs in a fresh process.
pub fn run(o: &Options, json: bool) -> mqemu::Result<()> {
    if let Some(root) = &o.open_only {
        return open_only(root, o.messages, o.takeover);
    }
    // With --takeover each scenario's directory is a shared disk; its first generation is
    // where the messages are written.
    let root_of = |d: &Path| -> mqemu::Result<PathBuf> {
        if o.takeover {
            Ok(mqemu::cluster::disk::SharedDisk::new(d).mount(true)?.root)
        } else {
            Ok(d.to_owned())
        }
    };
    let live = o.dir.join("live");
    let history = o.dir.join("history");
    for d in [&live, &history] {
        let _ = std::fs::remove_dir_all(d);
    }
    eprintln!("writing {} live messages of {} B...", o.messages, o.size);
    let live_root = root_of(&live)?;
    let fill_rss = fill(&live_root, o.messages, o.size, false, "live")?;
    let live_bytes = disk_bytes(&live_root.join("msmq/storage/wal"));
    let live_read = read_all(&live_root.join("msmq/storage/wal"));
    let opened = reopen(&live, o.messages, o.takeover)?;
    let history = if o.no_history {
        None
    } else {
        eprintln!("writing {} messages sent and received...", o.messages);
        let root = root_of(&history)?;
        fill(&root, o.messages, o.size, true, "history")?;
        let wal = root.join("msmq/storage/wal");
        let before = log_files(&wal);
        let opened = reopen(&history, 0, o.takeover)?;
        // A takeover opens a new generation elsewhere: what this one holds is what it sealed.
        let after = if o.takeover { before } else { log_files(&wal) };
        Some((opened, after))
    };
    let mib = |b: u64| b >> 20;
    if json {
        let history = match &history {
            Some((h, files)) => format!(
                "{{\"open_s\":{:.3},\"log_segments\":{},\"log_bytes\":{},\"spare_bytes\":{}}},\"live_over_history\":{:.1}",
                h.took.as_secs_f64(),
                files.segments,
                files.segment_bytes,
                files.spare_bytes,
                opened.took.as_secs_f64() / h.took.as_secs_f64().max(1e-9)
            ),
            None => "null".to_owned(),
        };
        println!(
            "{{\"messages\":{},\"size\":{},\"live\":{{\"open_s\":{:.3},\"log_bytes\":{},\"read_s\":{:.3},\"rss_after_send_bytes\":{},\"rss_after_open_bytes\":{},\"peak_rss_open_bytes\":{}}},\"history\":{history}}}",
            o.messages,
            o.size,
            opened.took.as_secs_f64(),
            live_bytes,
            live_read.as_secs_f64(),
            fill_rss,
            opened.rss,
            opened.peak,
        );
        return Ok(());
    }
    let what = if o.takeover {
        "takeover (fence, seal, open)"
    } else {
        "open"
    };
    println!(
        "{} live messages of {} B: {what} {:.3}s ({} MiB of log; reading it alone takes {:.3}s)",
        o.messages,
        o.size,
        opened.took.as_secs_f64(),
        mib(live_bytes),
        live_read.as_secs_f64(),
    );
    println!(
        "resident memory with all {} queued: {} MiB in the process that sent them, {} MiB after opening in a fresh one (peak {} MiB while opening)",
        o.messages,
        mib(fill_rss),
        mib(opened.rss),
        mib(opened.peak)
    );
    if let Some((h, files)) = history {
        println!(
            "{} messages sent and received: {what} {:.3}s; then {} segment(s), {} MiB of log, \
             and a {} MiB spare segment kept for the next roll",
            o.messages,
            h.took.as_secs_f64(),
            files.segments,
            mib(files.segment_bytes),
            mib(files.spare_bytes),
        );
        println!(
            "history-only recovery is {:.0}x faster than live recovery",
            opened.took.as_secs_f64() / h.took.as_secs_f64().max(1e-9)
        );
    }
    Ok(())
}
