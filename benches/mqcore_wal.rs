//! Write-ahead log commit cost beside a raw append + fdatasync on the same directory.
//!
//! `commit_1k/raw_append_fdatasync` is the floor a single committer can hope for;
//! `commit_1k/wal_single` is one committer through the log, and `commit_1k/qm_single_tx` one
//! single-message transaction of 1 KiB through a durable queue manager. `wal_64_committers` and
//! `qm_64_committers` run 64 threads committing 1 KiB records (or single-message transactions)
//! and print commits per second and commits per fdatasync (the group-commit figure). Files go
//! under `target/bench-wal`, on the project's own disk.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use mqemu::storage::{Disk, FileDisk, Wal, WalOptions, WalStats};
use mqemu::{Message, Queue, QueueManager, QueueProps, Tx};

fn bench_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/bench-wal")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench directory");
    dir
}

fn open_wal(name: &str) -> Wal {
    let disk: Arc<dyn Disk> = Arc::new(FileDisk);
    let options = WalOptions {
        segment_size: 256 * 1024 * 1024,
        ..WalOptions::default()
    };
    Wal::open(disk, &bench_dir(name), 1, Box::new(|| Ok(1)), options)
        .expect("open the log")
        .0
}

fn commit_latency(c: &mut Criterion) {
    let record = vec![0x5Au8; 1024];
    let mut group = c.benchmark_group("commit_1k");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(8));
    let raw_path = bench_dir("raw").join("append.log");
    let mut raw: File = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&raw_path)
        .expect("raw file");
    group.bench_function("raw_append_fdatasync", |b| {
        b.iter(|| {
            raw.write_all(&record).expect("append");
            raw.sync_data().expect("fdatasync");
        })
    });
    let wal = open_wal("single");
    group.bench_function("wal_single", |b| {
        b.iter(|| wal.append(1, &record).expect("commit"))
    });
    let (_qm, queue) = open_qm("qm_single");
    group.bench_function("qm_single_tx", |b| {
        b.iter(|| {
            queue
                .send(Message::new(record.clone()), Tx::Single)
                .expect("commit")
        })
    });
    group.finish();
}

fn open_qm(name: &str) -> (QueueManager, Queue) {
    let qm = QueueManager::builder()
        .open(bench_dir(name))
        .expect("open the queue manager");
    let queue = qm
        .create_queue(r".\private$\bench", QueueProps::transactional())
        .expect("queue");
    (qm, queue)
}

/// Runs `THREADS` threads calling `commit` `PER_THREAD` times each, as a criterion benchmark, and
/// prints commits per second and per fdatasync from `stats`.
fn many_committers(
    c: &mut Criterion,
    name: &str,
    commit: impl Fn() + Send + Sync + 'static,
    stats: impl Fn() -> WalStats,
) {
    const THREADS: usize = 64;
    const PER_THREAD: usize = 100;
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    let commit = Arc::new(commit);
    let mut report = (0u64, 0u64, Duration::ZERO);
    group.bench_function("6400_commits", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let before = stats();
                let start = Instant::now();
                let threads: Vec<_> = (0..THREADS)
                    .map(|_| {
                        let commit = commit.clone();
                        thread::spawn(move || {
                            for _ in 0..PER_THREAD {
                                commit();
                            }
                        })
                    })
                    .collect();
                for t in threads {
                    t.join().expect("committer");
                }
                let elapsed = start.elapsed();
                let after = stats();
                report.0 += after.records - before.records;
                report.1 += after.syncs - before.syncs;
                report.2 += elapsed;
                total += elapsed;
            }
            total
        })
    });
    group.finish();
    let (records, syncs, time) = report;
    eprintln!(
        "{name}: {records} commits in {:.2}s = {:.0} commits/s, {:.1} commits per fdatasync",
        time.as_secs_f64(),
        records as f64 / time.as_secs_f64(),
        records as f64 / syncs.max(1) as f64
    );
}

fn concurrent(c: &mut Criterion) {
    let wal = Arc::new(open_wal("concurrent"));
    let record = vec![0xA5u8; 1024];
    let w = wal.clone();
    many_committers(
        c,
        "wal_64_committers",
        move || {
            w.append(1, &record).expect("commit");
        },
        move || wal.stats(),
    );
    let (qm, queue) = open_qm("qm_concurrent");
    let body = bytes::Bytes::from(vec![0xA5u8; 1024]);
    many_committers(
        c,
        "qm_64_committers",
        move || {
            queue
                .send(Message::new(body.clone()), Tx::Single)
                .expect("commit");
        },
        move || qm.log_stats().expect("durable").0,
    );
}

criterion_group!(benches, commit_latency, concurrent);
criterion_main!(benches);
