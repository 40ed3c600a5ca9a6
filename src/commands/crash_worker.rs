//! `mqemu crash-worker`: a durable workload that reports every acknowledged commit, for tests that
//! kill it with SIGKILL and check what a restart finds (tests/integration/crash.rs).
//!
//! Output protocol, one line per event, written only after the event's call returned:
//! `READY`; `SENT <sender> <first> <last>` after a transaction with those sequence numbers
//! committed; `TAKE <body>` before a receiving transaction commits and `RECV <body>` after.
//! Bodies are `<sender>:<seq>`.

use std::io::Write;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use mqemu::{ErrorCode, Message, QueueManager, QueueProps, Tx};

/// The queue the worker uses.
pub const QUEUE: &str = r".\private$\kill";

/// How long a worker runs if nobody kills it: every load loop is bounded.
const MAX_RUN: Duration = Duration::from_secs(60);

/// Writes one report line (the kill tests' workers share this protocol's framing).
pub(super) fn say(line: String) {
    // One write per line under the stdout lock: lines never interleave, and a line that reached
    // the reader was written after the event it reports.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// What the crash tests start a worker with.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Root of the storage directory.
    #[arg(long)]
    data: PathBuf,
    /// Sender threads.
    #[arg(long, default_value_t = 3)]
    senders: u32,
    /// Receiver threads.
    #[arg(long, default_value_t = 2)]
    receivers: u32,
    /// First sequence number of every sender.
    #[arg(long, default_value_t = 0)]
    base: u64,
}

/// Runs `senders` and `receivers` threads against the queue in `data` until killed.
pub fn run(args: &Args) -> mqemu::Result<()> {
    let (data, senders, receivers, base) = (&args.data, args.senders, args.receivers, args.base);
    // Small segments and a small cache, so that kills land in compaction and in messages
    // read back from the log, not only in commits.
    let qm = QueueManager::builder()
        .segment_size(256 * 1024)
        .cache_size(64 * 1024)
        .open(data)?;
    let queue = match qm.open(QUEUE) {
        Ok(q) => q,
        Err(e) if e.code() == ErrorCode::QueueNotFound => {
            qm.create_queue(QUEUE, QueueProps::transactional())?
        }
        Err(e) => return Err(e),
    };
    say("READY".into());
    let start = Instant::now();
    let mut threads = Vec::new();
    for s in 0..senders {
        let (qm, queue) = (qm.clone(), queue.clone());
        threads.push(thread::spawn(move || -> mqemu::Result<()> {
            let mut seq = base;
            while start.elapsed() < MAX_RUN {
                let n = 1 + seq % 3;
                let tx = qm.begin();
                for k in 0..n {
                    queue.send(Message::new(format!("{s}:{}", seq + k)), Tx::In(&tx))?;
                }
                tx.commit()?;
                say(format!("SENT {s} {seq} {}", seq + n - 1));
                seq += n;
            }
            Ok(())
        }));
    }
    for r in 0..receivers {
        let (qm, queue) = (qm.clone(), queue.clone());
        threads.push(thread::spawn(move || -> mqemu::Result<()> {
            let mut round = 0u64;
            while start.elapsed() < MAX_RUN {
                round += 1;
                let tx = qm.begin();
                let mut taken = Vec::new();
                for _ in 0..1 + (round + u64::from(r)) % 2 {
                    match queue.receive(Duration::from_millis(20), Tx::In(&tx)) {
                        Ok(m) => taken.push(m.body_str().unwrap_or_default().to_owned()),
                        Err(e) if e.code() == ErrorCode::IoTimeout => break,
                        Err(e) => return Err(e),
                    }
                }
                if taken.is_empty() {
                    continue;
                }
                for b in &taken {
                    say(format!("TAKE {b}"));
                }
                tx.commit()?;
                for b in taken {
                    say(format!("RECV {b}"));
                }
            }
            Ok(())
        }));
    }
    for t in threads {
        t.join().expect("worker thread")?;
    }
    Ok(())
}
