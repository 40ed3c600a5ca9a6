//! `mqemu bench` without `--target`: producer and consumer threads on a queue of a queue manager
//! in this process, so the engine is measured without a network or a server in the way.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use mqemu::{Delivery, Message, QueueManager, QueueProps, Tx};

use super::load::share_of;
use super::{Mode, Options};

/// Runs the bench on an engine in this process: in memory, or durable in `--data`.
pub(super) fn run(args: &Options) -> mqemu::Result<()> {
    let qm = match &args.data {
        Some(dir) => QueueManager::builder().open(dir)?,
        None => QueueManager::new(),
    };
    let props = QueueProps {
        transactional: args.mode == Mode::Transactional,
        ..QueueProps::default()
    };
    let name = match args.mode {
        Mode::Transactional => r".\private$\bench-tx",
        _ => r".\private$\bench",
    };
    let queue = match qm.create_queue(name, props) {
        Ok(q) => q,
        Err(e) if e.code() == mqemu::ErrorCode::QueueExists => qm.open(name)?,
        Err(e) => return Err(e),
    };
    let start = Instant::now();
    let received = Arc::new(AtomicU64::new(0));
    let payload_len = args.size;

    let producers: Vec<_> = (0..args.producers)
        .map(|p| {
            let queue = queue.clone();
            let share = share_of(args.count, args.producers, p);
            let mode = args.mode;
            thread::spawn(move || -> mqemu::Result<()> {
                let mut body = vec![0u8; payload_len];
                for _ in 0..share {
                    let nanos = start.elapsed().as_nanos() as u64;
                    body[..8].copy_from_slice(&nanos.to_le_bytes());
                    let mut msg = Message::new(body.clone());
                    let tx = match mode {
                        Mode::Express => Tx::None,
                        Mode::Recoverable => {
                            msg.delivery = Delivery::Recoverable;
                            Tx::None
                        }
                        Mode::Transactional => Tx::Single,
                    };
                    queue.send(msg, tx)?;
                }
                Ok(())
            })
        })
        .collect();

    let consumers: Vec<_> = (0..args.consumers)
        .map(|c| {
            let queue = queue.clone();
            let share = share_of(args.count, args.consumers, c);
            let received = received.clone();
            let tx_mode = args.mode == Mode::Transactional;
            thread::spawn(move || -> mqemu::Result<Vec<u64>> {
                let mut latencies = Vec::with_capacity(share as usize);
                for _ in 0..share {
                    let tx = if tx_mode { Tx::Single } else { Tx::None };
                    let msg = queue.receive(Duration::from_secs(30), tx)?;
                    let mut sent = [0u8; 8];
                    sent.copy_from_slice(&msg.body[..8]);
                    let now = start.elapsed().as_nanos() as u64;
                    latencies.push(now.saturating_sub(u64::from_le_bytes(sent)));
                    received.fetch_add(1, Ordering::Relaxed);
                }
                Ok(latencies)
            })
        })
        .collect();

    // Progress once a second on stderr while the run lasts.
    let mut last = Instant::now();
    while consumers.iter().any(|c| !c.is_finished()) {
        thread::sleep(Duration::from_millis(50));
        if last.elapsed() >= Duration::from_secs(1) && !args.json {
            last = Instant::now();
            let n = received.load(Ordering::Relaxed);
            eprintln!(
                "  {n}/{} received ({:.0}%)",
                args.count,
                100.0 * n as f64 / args.count as f64
            );
        }
    }
    for p in producers {
        p.join().expect("producer thread")?;
    }
    let mut latencies = Vec::with_capacity(args.count as usize);
    for c in consumers {
        latencies.extend(c.join().expect("consumer thread")?);
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
    let rate = args.count as f64 / elapsed.as_secs_f64();
    if args.json {
        println!(
            "{{\"mode\":\"{:?}\",\"producers\":{},\"consumers\":{},\"count\":{},\"size\":{},\"seconds\":{:.3},\"msgs_per_sec\":{:.0},\"latency_us\":{{\"p50\":{:.1},\"p99\":{:.1},\"max\":{:.1}}}}}",
            args.mode,
            args.producers,
            args.consumers,
            args.count,
            args.size,
            elapsed.as_secs_f64(),
            rate,
            pct(0.5),
            pct(0.99),
            pct(1.0)
        );
    } else {
        println!(
            "{} messages of {} B ({:?}, {}P/{}C) in {:.2}s: {:.0} msgs/s; send-to-receive latency p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
            args.count,
            args.size,
            args.mode,
            args.producers,
            args.consumers,
            elapsed.as_secs_f64(),
            rate,
            pct(0.5),
            pct(0.99),
            pct(1.0)
        );
    }
    Ok(())
}
