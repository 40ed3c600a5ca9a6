//! Load runs: every producer and consumer connected before the clock starts, run together,
//! counted in one shared record, and reported; and the summary over several targets and rounds.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqnet::RemoteQueue;
use serde_json::json;
use tokio::task::JoinSet;

use super::amqp::{
    amqp_consumer, amqp_producer, open_amqp, open_amqp_producer, prepare_amqp, AmqpConn,
};
use super::http::HttpTarget;
use super::measure::{Latencies, Progress};
use super::native::{
    mqemu_consumer, mqemu_producer, open_mqemu, open_mqemu_consumer, open_mqemu_through,
    prepare_mqemu, ReceiveTx,
};
use super::target::Target;
use super::{panicked, Options, GRACE};

/// What every worker of a load run reads and counts.
pub(super) struct Shared {
    /// The common origin of the send times in message bodies.
    start: Instant,
    /// Producers start no send after this.
    deadline: Instant,
    /// Consumers give up at this, whatever is missing.
    hard_deadline: Instant,
    /// Messages asked for in all.
    count: u64,
    /// Sends the server acknowledged (mqemu) or confirmed (AMQP).
    pub(super) sent: AtomicU64,
    /// Publishes an AMQP broker refused (basic.nack).
    pub(super) nacked: AtomicU64,
    /// Messages received.
    pub(super) received: AtomicU64,
    /// Producers still running.
    producers_left: AtomicU64,
    /// Nanoseconds from `start` to the last receive.
    last_receive_ns: AtomicU64,
    /// The most messages sent and not yet received, as consumers saw it at each receive.
    max_backlog: AtomicU64,
    /// Messages sent and not yet received when the last producer ended.
    backlog_at_end: AtomicU64,
    /// Nanoseconds from `start` to the last producer's end.
    producers_done_ns: AtomicU64,
    /// A worker failed: everyone stops.
    abort: AtomicBool,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn aborted(&self) -> bool {
        self.abort.load(Ordering::SeqCst)
    }

    /// Whether a producer may start another send.
    pub(super) fn may_send(&self) -> bool {
        !self.aborted() && Instant::now() < self.deadline
    }

    /// What consumers still wait for: up to `count` while producers run, then what they sent.
    pub(super) fn outstanding(&self) -> u64 {
        let producing = self.producers_left.load(Ordering::SeqCst) > 0;
        let target = if producing {
            self.count
        } else {
            self.sent.load(Ordering::SeqCst)
        };
        target.saturating_sub(self.received.load(Ordering::SeqCst))
    }

    /// Whether consumers are done: nothing more to come, a failure, or the time is up.
    pub(super) fn consumers_done(&self) -> bool {
        self.aborted() || Instant::now() >= self.hard_deadline || self.outstanding() == 0
    }

    /// Stamps the send time into the first 8 bytes of a body of `size` bytes.
    pub(super) fn stamped_body(&self, size: usize) -> Vec<u8> {
        let mut body = vec![0u8; size];
        body[..8].copy_from_slice(&self.now_ns().to_le_bytes());
        body
    }

    /// Counts one received message and returns its end-to-end latency in nanoseconds.
    pub(super) fn received(&self, body: &[u8]) -> Option<u64> {
        let now = self.now_ns();
        let received = self.received.fetch_add(1, Ordering::SeqCst) + 1;
        self.last_receive_ns.fetch_max(now, Ordering::SeqCst);
        let backlog = self.sent.load(Ordering::SeqCst).saturating_sub(received);
        self.max_backlog.fetch_max(backlog, Ordering::Relaxed);
        let sent: [u8; 8] = body.get(..8)?.try_into().ok()?;
        Some(now.saturating_sub(u64::from_le_bytes(sent)))
    }
}

/// Counts a producer out when it ends, however it ends, so consumers stop waiting for it.
struct ProducerGone(Arc<Shared>);

impl Drop for ProducerGone {
    fn drop(&mut self) {
        let shared = &self.0;
        if shared.producers_left.fetch_sub(1, Ordering::SeqCst) == 1 {
            let backlog = shared
                .sent
                .load(Ordering::SeqCst)
                .saturating_sub(shared.received.load(Ordering::SeqCst));
            shared.backlog_at_end.store(backlog, Ordering::SeqCst);
            shared
                .producers_done_ns
                .store(shared.now_ns(), Ordering::SeqCst);
        }
    }
}

/// A producer's connection, opened before the clock starts.
enum ProducerConn {
    Mqemu(RemoteQueue),
    Amqp(AmqpConn),
    Http(HttpTarget),
}

/// A consumer's connection, opened before the clock starts.
enum ConsumerConn {
    Mqemu(RemoteQueue, ReceiveTx),
    Amqp(AmqpConn),
    Http(HttpTarget),
}

/// Where consumers read: the destination server of a transfer target (same port), or the
/// server itself.
fn consumer_addr(addr: &str, to: &Option<String>) -> String {
    match to {
        Some(host) => {
            let port = addr.rsplit_once(':').map_or("", |(_, p)| p);
            format!("{host}:{port}")
        }
        None => addr.to_owned(),
    }
}

/// The share of `total` for worker `i` of `n` (the first ones take the remainder).
pub(super) fn share_of(total: u64, n: u32, i: u32) -> u64 {
    let (n, i) = (u64::from(n), u64::from(i));
    total / n + u64::from(i < total % n)
}

/// A load run: prepares the queue, connects every worker, runs them and reports.
/// One load run against `target`; prints its report and returns its messages per second.
pub(super) async fn load(opts: &Options, target: &Target) -> mqemu::Result<f64> {
    let queue = opts.mode.queue();
    // Through a shovel, producers publish to a queue of their own.
    let source = format!("{queue}.src");
    let publish_to = match target {
        Target::Amqp(t) if t.shovel => source.as_str(),
        _ => queue,
    };
    match target {
        Target::Mqemu { addr, to, .. } => prepare_mqemu(&consumer_addr(addr, to), opts).await?,
        Target::Amqp(t) => {
            prepare_amqp(t, queue).await?;
            if t.shovel {
                prepare_amqp(t, &source).await?;
            }
        }
        Target::Http(h) => h.prepare(queue, opts.mode).await?,
    }
    let mut producer_conns = Vec::with_capacity(opts.producers as usize);
    for _ in 0..opts.producers {
        producer_conns.push(match target {
            Target::Mqemu { addr, to: None, .. } => {
                ProducerConn::Mqemu(open_mqemu(addr, opts).await?)
            }
            Target::Mqemu {
                addr, to: Some(to), ..
            } => ProducerConn::Mqemu(open_mqemu_through(addr, to, opts).await?),
            Target::Amqp(t) => ProducerConn::Amqp(open_amqp_producer(t, publish_to).await?),
            Target::Http(h) => ProducerConn::Http(h.clone()),
        });
    }
    // How the consumers take messages, for the report.
    let mut receives = match target {
        Target::Amqp(_) => "basic.consume, a manual ack per message",
        Target::Mqemu { .. } => ReceiveTx::None.describe(),
        Target::Http(h) => h.receives(),
    };
    let mut consumer_conns = Vec::with_capacity(opts.consumers as usize);
    for _ in 0..opts.consumers {
        consumer_conns.push(match target {
            Target::Mqemu { addr, to, .. } => {
                let (q, tx) = open_mqemu_consumer(&consumer_addr(addr, to), opts).await?;
                receives = tx.describe();
                ConsumerConn::Mqemu(q, tx)
            }
            Target::Amqp(t) => ConsumerConn::Amqp(open_amqp(t, queue).await?),
            Target::Http(h) => ConsumerConn::Http(h.clone()),
        });
    }

    let start = Instant::now();
    let shared = Arc::new(Shared {
        start,
        deadline: start + opts.secs(),
        hard_deadline: start + opts.secs() + GRACE,
        count: opts.count,
        sent: AtomicU64::new(0),
        nacked: AtomicU64::new(0),
        received: AtomicU64::new(0),
        producers_left: AtomicU64::new(u64::from(opts.producers)),
        last_receive_ns: AtomicU64::new(0),
        max_backlog: AtomicU64::new(0),
        backlog_at_end: AtomicU64::new(0),
        producers_done_ns: AtomicU64::new(0),
        abort: AtomicBool::new(false),
    });
    let window = opts.window as usize;
    let mode = opts.mode;
    let mut consumers = JoinSet::new();
    for conn in consumer_conns {
        let shared = shared.clone();
        consumers.spawn(async move {
            let r = match conn {
                ConsumerConn::Mqemu(q, tx) => mqemu_consumer(q, tx, window, &shared).await,
                ConsumerConn::Amqp(c) => amqp_consumer(c, window, &shared).await,
                ConsumerConn::Http(h) => {
                    h.consumer(queue.to_owned(), mode, window, shared.clone())
                        .await
                }
            };
            if r.is_err() {
                shared.abort.store(true, Ordering::SeqCst);
            }
            r
        });
    }
    let mut producers = JoinSet::new();
    for (i, conn) in producer_conns.into_iter().enumerate() {
        let shared = shared.clone();
        let share = share_of(opts.count, opts.producers, i as u32);
        let (size, mode) = (opts.size, opts.mode);
        producers.spawn(async move {
            let gone = ProducerGone(shared.clone());
            let r = match conn {
                ProducerConn::Mqemu(q) => {
                    mqemu_producer(q, share, size, mode, window, &shared).await
                }
                ProducerConn::Amqp(c) => amqp_producer(c, share, size, mode, window, &shared).await,
                ProducerConn::Http(h) => {
                    h.producer(queue.to_owned(), share, size, mode, window, shared.clone())
                        .await
                }
            };
            if r.is_err() {
                shared.abort.store(true, Ordering::SeqCst);
            }
            drop(gone);
            r
        });
    }

    // Progress once a second while the consumers run; then collect everyone's figures.
    let mut progress = Progress::new(opts.json, opts.count);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut first_error = None;
    let mut e2e = Latencies::new();
    loop {
        tokio::select! {
            done = consumers.join_next() => match done {
                None => break,
                Some(r) => match r.map_err(panicked).and_then(|r| r) {
                    Ok(l) => e2e.merge(&l),
                    Err(e) => { first_error.get_or_insert(e); }
                },
            },
            _ = tick.tick() => progress.tick(&shared),
        }
    }
    let mut send = Latencies::new();
    while let Some(r) = producers.join_next().await {
        match r.map_err(panicked).and_then(|r| r) {
            Ok(l) => send.merge(&l),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    progress.finish();
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(report_load(opts, target, receives, &shared, &send, &e2e))
}

/// The median of `v` (not empty).
fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// After runs against several targets (or several rounds): each target's median rate, and the
/// first target's rate over each other's, as a median and as the range over the rounds.
pub(super) fn report_rounds(opts: &Options, targets: &[Target], rates: &[Vec<f64>]) {
    let first = &rates[0];
    let rows: Vec<_> = targets
        .iter()
        .zip(rates)
        .map(|(target, r)| {
            let ratios: Vec<f64> = first.iter().zip(r).map(|(a, b)| a / b).collect();
            let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = ratios.iter().copied().fold(0.0, f64::max);
            (target, median(r), median(&ratios), lo, hi)
        })
        .collect();
    if opts.json {
        let summary: Vec<_> = rows
            .iter()
            .map(|(target, rate, ratio, lo, hi)| {
                json!({
                    "target": target.to_string(),
                    "median_msgs_per_sec": rate.round(),
                    "first_over_this": (ratio * 100.0).round() / 100.0,
                    "first_over_this_range": [(lo * 100.0).round() / 100.0, (hi * 100.0).round() / 100.0],
                })
            })
            .collect();
        println!("{}", json!({ "rounds": opts.rounds, "summary": summary }));
        return;
    }
    println!(
        "summary over {} round(s), each target in turn: median msgs/s, and the first target's \
         rate over this one's",
        opts.rounds
    );
    for (target, rate, ratio, lo, hi) in rows {
        println!("  {target}: {rate:.0} msgs/s, ratio {ratio:.2}x (rounds {lo:.2}x to {hi:.2}x)");
    }
}

/// Prints one load run's report; returns its messages per second.
fn report_load(
    opts: &Options,
    target: &Target,
    receives: &str,
    shared: &Shared,
    send: &Latencies,
    e2e: &Latencies,
) -> f64 {
    let sent = shared.sent.load(Ordering::SeqCst);
    let received = shared.received.load(Ordering::SeqCst);
    let nacked = shared.nacked.load(Ordering::SeqCst);
    // The run lasts until the last message came in (consumers' last idle waits do not count).
    let seconds = match shared.last_receive_ns.load(Ordering::SeqCst) {
        0 => shared.start.elapsed().as_secs_f64(),
        ns => ns as f64 / 1e9,
    };
    let rate = received as f64 / seconds;
    let max_backlog = shared.max_backlog.load(Ordering::SeqCst);
    let backlog_at_end = shared.backlog_at_end.load(Ordering::SeqCst);
    // How long the consumers went on after the last send was acknowledged.
    let drain_ms = (shared.last_receive_ns.load(Ordering::SeqCst) as f64
        - shared.producers_done_ns.load(Ordering::SeqCst) as f64)
        .max(0.0)
        / 1e6;
    if received < sent {
        eprintln!(
            "mqemu bench: {} of the {sent} messages sent were not received before the time cap",
            sent - received
        );
    }
    if opts.json {
        let mut report = json!({
            "target": target.kind(),
            "mode": opts.mode.name(),
            "size": opts.size,
            "producers": opts.producers,
            "consumers": opts.consumers,
            "window": opts.window,
            "count": opts.count,
            "secs_cap": opts.secs().as_secs_f64(),
            "sent": sent,
            "received": received,
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "msgs_per_sec": rate.round(),
            "send_latency_us": send.json(),
            "e2e_latency_us": e2e.json(),
            "consumers_receive": receives,
            "max_backlog": max_backlog,
            "backlog_at_producers_end": backlog_at_end,
            "drain_ms_after_producers_end": (drain_ms * 10.0).round() / 10.0,
        });
        if matches!(target, Target::Amqp(_)) {
            report["nacked"] = json!(nacked);
        }
        println!("{report}");
        return rate;
    }
    println!(
        "{target} {}, {} B, {} producer(s) / {} consumer(s), window {}",
        opts.mode.name(),
        opts.size,
        opts.producers,
        opts.consumers,
        opts.window
    );
    let nacks = if nacked > 0 {
        format!(" ({nacked} refused)")
    } else {
        String::new()
    };
    println!("  sent {sent}{nacks}, received {received} in {seconds:.2} s: {rate:.0} msgs/s");
    println!("  send latency (µs)        {}", send.text());
    println!("  end-to-end latency (µs)  {}", e2e.text());
    println!("  consumers: {receives}");
    println!(
        "  backlog (sent, not yet received): at most {max_backlog}, {backlog_at_end} when the \
         producers ended, drained {drain_ms:.1} ms later"
    );
    rate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up() {
        let total: u64 = (0..7).map(|i| share_of(100, 7, i)).sum();
        assert_eq!(total, 100);
    }
}
