//! Engine throughput beside `std::sync::mpsc`: one producer thread, one consumer thread.
//!
//! Both sides carry the same `Bytes` payload through an unbounded queue, so the ratio shows what
//! MSMQ semantics (ordering by priority, lookup ids, indexes, hand-off to waiting receivers) cost
//! over a bare channel. Run with `cargo bench --bench mqcore_queue`; the issue's goal is at least
//! 30% of mpsc's throughput.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mqemu::{Message, QueueManager, QueueProps, Tx, INFINITE};

/// Messages per measured batch.
const BATCH: u64 = 20_000;

fn mpsc_batch(payload: &Bytes, n: u64) -> Duration {
    let (tx, rx) = mpsc::channel::<Bytes>();
    let start = Instant::now();
    let consumer = thread::spawn(move || {
        for _ in 0..n {
            std::hint::black_box(rx.recv().expect("the producer sends n messages"));
        }
    });
    for _ in 0..n {
        tx.send(payload.clone()).expect("the consumer is alive");
    }
    consumer.join().expect("consumer finished");
    start.elapsed()
}

fn mqcore_batch(qm: &QueueManager, payload: &Bytes, n: u64) -> Duration {
    let q = qm.open(r".\private$\bench").expect("created in setup");
    let consumer_q = q.clone();
    let start = Instant::now();
    let consumer = thread::spawn(move || {
        for _ in 0..n {
            std::hint::black_box(
                consumer_q
                    .receive(INFINITE, Tx::None)
                    .expect("n messages come"),
            );
        }
    });
    for _ in 0..n {
        q.send(Message::new(payload.clone()), Tx::None)
            .expect("send succeeds");
    }
    consumer.join().expect("consumer finished");
    start.elapsed()
}

fn send_receive(c: &mut Criterion) {
    let qm = QueueManager::new();
    qm.create_queue(r".\private$\bench", QueueProps::default())
        .expect("fresh queue manager");
    let mut group = c.benchmark_group("send_receive_1p1c");
    group.throughput(Throughput::Elements(BATCH));
    group.sample_size(20);
    for size in [64usize, 1024] {
        let payload = Bytes::from(vec![0xA5u8; size]);
        group.bench_with_input(BenchmarkId::new("std_mpsc", size), &payload, |b, p| {
            b.iter_custom(|iters| (0..iters).map(|_| mpsc_batch(p, BATCH)).sum())
        });
        group.bench_with_input(BenchmarkId::new("mqcore", size), &payload, |b, p| {
            b.iter_custom(|iters| (0..iters).map(|_| mqcore_batch(&qm, p, BATCH)).sum())
        });
    }
    group.finish();
}

criterion_group!(benches, send_receive);
criterion_main!(benches);
