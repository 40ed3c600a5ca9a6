//! Engine throughput beside bare channels: what MSMQ semantics (ordering by priority, lookup
//! ids, indexes, hand-off to waiting receivers) cost over a channel carrying the same `Bytes`.
//!
//! Run with `cargo bench --bench mqcore_queue`. Four groups, each with its baseline in the same
//! run (docs/performance.md has the figures and the goals):
//! - `send_receive_1p1c`: one producer and one consumer thread, unpinned, against
//!   `std::sync::mpsc`;
//! - `send_receive_1p1c_one_cpu`: the same with both threads pinned to CPU 0, where every
//!   hand-off is a context switch;
//! - `send_receive_4p4c`: four producers and four consumers on one queue, against
//!   crossbeam-channel (std's mpsc has one receiver);
//! - `queues_64`: 64 queues, each with a producer and a consumer of its own, against 64 mpsc
//!   channels: how far independent queues scale on this machine's cores.
//!
//! Express messages, no transaction, no journal: the in-process hot path.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mqemu::{Message, Queue, QueueManager, QueueProps, Tx, INFINITE};

/// Messages per measured batch.
const BATCH: u64 = 20_000;

/// Pins the calling thread to `cpu`; panics where it cannot (the figure would mean nothing).
fn pin(cpu: usize) {
    // SAFETY: `set` is a plain bit set that lives across the call, and its size is passed with
    // it; pid 0 is the calling thread.
    let ok = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    };
    assert!(ok, "cannot pin to CPU {cpu}");
}

/// Runs `producers` and `consumers` threads (pinned to `cpu` if given), each moving its share of
/// `n` messages; returns the time from the first send to the last receive.
fn run_threads(
    producers: Vec<Box<dyn FnOnce() + Send>>,
    consumers: Vec<Box<dyn FnOnce() + Send>>,
    cpu: Option<usize>,
) -> Duration {
    let start = Instant::now();
    let spawn = |f: Box<dyn FnOnce() + Send>| {
        thread::spawn(move || {
            if let Some(cpu) = cpu {
                pin(cpu);
            }
            f()
        })
    };
    let handles: Vec<_> = consumers.into_iter().chain(producers).map(spawn).collect();
    for h in handles {
        h.join().expect("a bench thread panicked");
    }
    start.elapsed()
}

fn mpsc_pairs(payload: &Bytes, pairs: usize, n: u64, cpu: Option<usize>) -> Duration {
    let mut producers: Vec<Box<dyn FnOnce() + Send>> = Vec::new();
    let mut consumers: Vec<Box<dyn FnOnce() + Send>> = Vec::new();
    for _ in 0..pairs {
        let (tx, rx) = mpsc::channel::<Bytes>();
        let p = payload.clone();
        producers.push(Box::new(move || {
            for _ in 0..n {
                tx.send(p.clone()).expect("the consumer is alive");
            }
        }));
        consumers.push(Box::new(move || {
            for _ in 0..n {
                std::hint::black_box(rx.recv().expect("the producer sends n messages"));
            }
        }));
    }
    run_threads(producers, consumers, cpu)
}

fn crossbeam_mpmc(payload: &Bytes, threads: usize, n: u64) -> Duration {
    let (tx, rx) = crossbeam_channel::unbounded::<Bytes>();
    let share = n / threads as u64;
    let producers = (0..threads)
        .map(|_| {
            let (tx, p) = (tx.clone(), payload.clone());
            Box::new(move || {
                for _ in 0..share {
                    tx.send(p.clone()).expect("consumers are alive");
                }
            }) as Box<dyn FnOnce() + Send>
        })
        .collect();
    let consumers = (0..threads)
        .map(|_| {
            let rx = rx.clone();
            Box::new(move || {
                for _ in 0..share {
                    std::hint::black_box(rx.recv().expect("producers send enough"));
                }
            }) as Box<dyn FnOnce() + Send>
        })
        .collect();
    drop((tx, rx));
    run_threads(producers, consumers, None)
}

/// `producers` and `consumers` threads per queue, each moving `n / threads` messages.
fn mqcore_queues(
    queues: &[Queue],
    payload: &Bytes,
    threads: usize,
    n: u64,
    cpu: Option<usize>,
) -> Duration {
    let share = n / threads as u64;
    let mut producers: Vec<Box<dyn FnOnce() + Send>> = Vec::new();
    let mut consumers: Vec<Box<dyn FnOnce() + Send>> = Vec::new();
    for q in queues {
        for _ in 0..threads {
            let (sender, p) = (q.clone(), payload.clone());
            producers.push(Box::new(move || {
                for _ in 0..share {
                    sender
                        .send(Message::new(p.clone()), Tx::None)
                        .expect("send succeeds");
                }
            }));
            let q = q.clone();
            consumers.push(Box::new(move || {
                for _ in 0..share {
                    std::hint::black_box(q.receive(INFINITE, Tx::None).expect("messages come"));
                }
            }));
        }
    }
    run_threads(producers, consumers, cpu)
}

/// A queue manager in memory with `n` queues.
fn setup(n: usize) -> (QueueManager, Vec<Queue>) {
    let qm = QueueManager::new();
    let queues = (0..n)
        .map(|i| {
            let name = format!(r".\private$\bench{i}");
            qm.create_queue(&name, QueueProps::default())
                .expect("fresh queue manager");
            qm.open(&name).expect("just created")
        })
        .collect();
    (qm, queues)
}

fn send_receive(c: &mut Criterion) {
    let (_qm, queues) = setup(1);
    for (name, cpu) in [
        ("send_receive_1p1c", None),
        ("send_receive_1p1c_one_cpu", Some(0)),
    ] {
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Elements(BATCH));
        group.sample_size(20);
        for size in [64usize, 1024] {
            let payload = Bytes::from(vec![0xA5u8; size]);
            group.bench_with_input(BenchmarkId::new("std_mpsc", size), &payload, |b, p| {
                b.iter_custom(|iters| (0..iters).map(|_| mpsc_pairs(p, 1, BATCH, cpu)).sum())
            });
            group.bench_with_input(BenchmarkId::new("mqcore", size), &payload, |b, p| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| mqcore_queues(&queues, p, 1, BATCH, cpu))
                        .sum()
                })
            });
        }
        group.finish();
    }
}

fn many_threads(c: &mut Criterion) {
    let payload = Bytes::from(vec![0xA5u8; 64]);
    let mut group = c.benchmark_group("send_receive_4p4c");
    group.throughput(Throughput::Elements(BATCH));
    group.sample_size(20);
    let (_qm, one) = setup(1);
    group.bench_function("crossbeam_channel/64", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| crossbeam_mpmc(&payload, 4, BATCH)).sum())
    });
    group.bench_function("mqcore/64", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| mqcore_queues(&one, &payload, 4, BATCH, None))
                .sum()
        })
    });
    group.finish();

    let mut group = c.benchmark_group("queues_64");
    group.throughput(Throughput::Elements(64 * BATCH / 8));
    group.sample_size(10);
    let (_qm, many) = setup(64);
    group.bench_function("std_mpsc/64", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| mpsc_pairs(&payload, 64, BATCH / 8, None))
                .sum()
        })
    });
    group.bench_function("mqcore/64", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| mqcore_queues(&many, &payload, 1, BATCH / 8, None))
                .sum()
        })
    });
    group.finish();
}

criterion_group!(benches, send_receive, many_threads);
criterion_main!(benches);
