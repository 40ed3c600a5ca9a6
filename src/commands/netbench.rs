//! `mqemu bench --target URL`: a network load generator, so a running `mqemu serve` and an AMQP
//! 0-9-1 broker (RabbitMQ) are measured by one client under one workload, and so the cost of the
//! native protocol can be set against a raw TCP round trip on the same machine (`--rtt`).
//!
//! A load run opens one connection per producer and per consumer. Every producer keeps up to
//! `--window` sends in flight and every consumer up to `--window` receives (AMQP: unconfirmed
//! publishes, and `basic.qos` prefetch with a manual ack per message). The first 8 bytes of every
//! body carry the send time, in nanoseconds since an `Instant` all workers share, so the consumer
//! measures end-to-end latency. Producers stop at `--count` or `--secs`, whichever comes first;
//! consumers stop once they have everything the producers had acknowledged, or a few seconds
//! after the time cap. Every wait on the network is bounded.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{IsTerminal, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use amqprs::callbacks::{ChannelCallback, DefaultChannelCallback, DefaultConnectionCallback};
use amqprs::channel::{
    BasicAckArguments, BasicCancelArguments, BasicConsumeArguments, BasicPublishArguments,
    BasicQosArguments, Channel, ConfirmSelectArguments, QueueDeclareArguments, QueuePurgeArguments,
};
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::{
    Ack, BasicProperties, Cancel, CloseChannel, Nack, Return, DELIVERY_MODE_PERSISTENT,
    DELIVERY_MODE_TRANSIENT,
};
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mqemu::{Delivery, Error, ErrorCode, Message, QueueProps};
use mqnet::{Client, ClientOptions, RemoteQueue, Tx};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// The queue of the express and recoverable modes.
const QUEUE: &str = r".\private$\bench";
/// The (transactional) queue of the transactional mode.
const QUEUE_TX: &str = r".\private$\bench-tx";
/// How long one receive waits on the server before it answers MQ_ERROR_IO_TIMEOUT.
const RECEIVE_WAIT: Duration = Duration::from_secs(1);
/// The longest the bench waits for any one answer (a send, a confirm, a round trip).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// Time allowed to connect and shake hands.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long consumers go on after the time cap for messages still on their way.
const GRACE: Duration = Duration::from_secs(5);
/// Most round trips of each kind one `--rtt` run measures.
const RTT_MAX: u64 = 20_000;
/// Round trips of one kind in a row before `--rtt` switches to the next kind.
const RTT_BLOCK: u64 = 1_000;
/// Unrecorded round trips of each kind before `--rtt` measures.
const RTT_WARMUP: u64 = 200;
/// The default AMQP port.
const AMQP_PORT: u16 = 5672;

/// How messages are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// mqemu: express messages, non-transactional queue. AMQP: transient messages.
    Express,
    /// mqemu: recoverable messages, non-transactional queue. AMQP: persistent messages.
    Recoverable,
    /// mqemu: a single-message transaction per send to a transactional queue (received without
    /// one: remote transactional receives need an external transaction). AMQP: persistent
    /// messages, each confirmed once the broker has them safe, the closest AMQP equivalent.
    Transactional,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Express => "express",
            Mode::Recoverable => "recoverable",
            Mode::Transactional => "transactional",
        }
    }

    fn queue(self) -> &'static str {
        match self {
            Mode::Transactional => QUEUE_TX,
            _ => QUEUE,
        }
    }
}

/// What `mqemu bench --target` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// `mqemu://HOST:PORT` or `amqp://USER:PASS@HOST:PORT/VHOST`, one or more.
    pub targets: Vec<String>,
    /// With several targets: runs of each, taken in turn, so machine noise hits all alike.
    pub rounds: u32,
    /// The mqemu server's token, if it asks for one.
    pub token: Option<String>,
    /// Producer connections.
    pub producers: u32,
    /// Consumer connections.
    pub consumers: u32,
    /// Messages to send in all (`--rtt`: round trips of each kind, at most [`RTT_MAX`]).
    pub count: u64,
    /// Time cap of the run.
    pub secs: Duration,
    /// Body size in bytes, at least 8.
    pub size: usize,
    /// How messages are sent.
    pub mode: Mode,
    /// Requests each connection keeps in flight.
    pub window: u32,
    /// Print one JSON object instead of text.
    pub json: bool,
    /// Measure single round trips against raw TCP instead of load.
    pub rtt: bool,
}

/// Runs `mqemu bench --target` on a runtime of its own.
pub fn run(opts: &Options) -> mqemu::Result<()> {
    if opts.size < 8 {
        return Err(invalid(
            "--size must be at least 8 bytes (the send time rides in the body)",
        ));
    }
    let targets = opts
        .targets
        .iter()
        .map(|t| parse_target(t))
        .collect::<mqemu::Result<Vec<_>>>()?;
    if opts.rtt && targets.len() != 1 {
        return Err(invalid("--rtt measures one mqemu:// target"));
    }
    // Round trips are one at a time on one connection: one thread runs them, so an answer does
    // not hop threads to reach its request, just as the raw ping-pong's read does not.
    let mut builder = if opts.rtt {
        let mut b = tokio::runtime::Builder::new_current_thread();
        b.enable_all().thread_name("mqemu-bench");
        b
    } else {
        super::runtime::multi_thread("mqemu-bench")
    };
    let rt = builder.build().map_err(|e| {
        Error::new(
            ErrorCode::InsufficientResources,
            format!("cannot start the bench's runtime: {e}"),
        )
    })?;
    rt.block_on(async {
        match (&targets[..], opts.rtt) {
            ([Target::Mqemu { addr }], true) => rtt(opts, addr).await,
            (_, true) => Err(invalid("--rtt needs an mqemu:// target")),
            (_, false) => {
                let mut rates = vec![Vec::new(); targets.len()];
                for round in 1..=opts.rounds {
                    if opts.rounds > 1 && !opts.json {
                        println!("round {round} of {}:", opts.rounds);
                    }
                    for (target, rates) in targets.iter().zip(&mut rates) {
                        rates.push(load(opts, target).await?);
                    }
                }
                if rates.len() > 1 || opts.rounds > 1 {
                    report_rounds(opts, &targets, &rates);
                }
                Ok(())
            }
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Targets

/// The server a run drives.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// An mqemu server at `host:port`.
    Mqemu { addr: String },
    /// An AMQP 0-9-1 broker.
    Amqp(AmqpTarget),
}

impl Target {
    fn kind(&self) -> &'static str {
        match self {
            Target::Mqemu { .. } => "mqemu",
            Target::Amqp(_) => "amqp",
        }
    }
}

/// The target as a report shows it: without the password.
impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Mqemu { addr } => write!(f, "mqemu://{addr}"),
            Target::Amqp(t) => write!(
                f,
                "amqp://{}@{}:{} (vhost {:?})",
                t.user, t.host, t.port, t.vhost
            ),
        }
    }
}

/// Where and as whom to reach an AMQP broker.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AmqpTarget {
    host: String,
    port: u16,
    user: String,
    password: String,
    vhost: String,
}

fn invalid(detail: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidParameter, detail.into())
}

/// Parses `mqemu://HOST[:PORT]` or `amqp://[USER[:PASS]@]HOST[:PORT][/VHOST]` (user and
/// password default to guest, the vhost to `/`; `%2f` in it is `/`).
fn parse_target(url: &str) -> mqemu::Result<Target> {
    let bad = |why: &str| invalid(format!("--target {url:?}: {why}"));
    if let Some(rest) = url.strip_prefix("mqemu://") {
        let addr = rest.trim_end_matches('/');
        if addr.is_empty() || addr.contains('/') || addr.contains('@') {
            return Err(bad("expected mqemu://HOST:PORT"));
        }
        let addr = match split_port(addr) {
            (_, Some(Err(()))) => return Err(bad("the port is not a number from 1 to 65535")),
            (_, Some(Ok(_))) => addr.to_owned(),
            (host, None) => format!("{host}:{}", mqnet::DEFAULT_PORT),
        };
        return Ok(Target::Mqemu { addr });
    }
    let Some(rest) = url.strip_prefix("amqp://") else {
        return Err(bad(
            "expected mqemu://HOST:PORT or amqp://USER:PASS@HOST:PORT/VHOST (amqps is not supported)",
        ));
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        Some(u) => {
            let (user, pass) = u.split_once(':').unwrap_or((u, ""));
            (percent_decode(user, url)?, percent_decode(pass, url)?)
        }
        None => ("guest".to_owned(), "guest".to_owned()),
    };
    let (host, port) = match split_port(hostport) {
        (_, Some(Err(()))) => return Err(bad("the port is not a number from 1 to 65535")),
        (host, Some(Ok(port))) => (host, port),
        (host, None) => (host, AMQP_PORT),
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let vhost = match percent_decode(path, url)? {
        v if v.is_empty() => "/".to_owned(),
        v => v,
    };
    Ok(Target::Amqp(AmqpTarget {
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port,
        user,
        password,
        vhost,
    }))
}

/// Splits `host:port` (or `[v6]:port`) into the host and the port if there is one.
fn split_port(hostport: &str) -> (&str, Option<Result<u16, ()>>) {
    match hostport.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (
            host,
            Some(port.parse::<u16>().ok().filter(|p| *p != 0).ok_or(())),
        ),
        _ => (hostport, None),
    }
}

/// Decodes `%XX` escapes (a URL's user, password or vhost).
fn percent_decode(s: &str, url: &str) -> mqemu::Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| invalid(format!("--target {url:?}: a bad %-escape")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| invalid(format!("--target {url:?}: not UTF-8 once decoded")))
}

// ---------------------------------------------------------------------------------------------
// Measuring

/// Latencies in nanoseconds, 1 ns to a minute, at three significant digits.
struct Latencies(Histogram<u64>);

impl Latencies {
    fn new() -> Latencies {
        Latencies(
            Histogram::new_with_bounds(1, 60_000_000_000, 3)
                .expect("constant histogram bounds are valid"),
        )
    }

    fn record(&mut self, d: Duration) {
        self.record_ns(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    fn record_ns(&mut self, ns: u64) {
        self.0.saturating_record(ns);
    }

    /// Adds another worker's figures (same bounds, so it cannot fail).
    fn merge(&mut self, other: &Latencies) {
        let _ = self.0.add(&other.0);
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value at quantile `q`, in microseconds.
    fn us(&self, q: f64) -> f64 {
        if self.is_empty() {
            return 0.0;
        }
        let ns = if q >= 1.0 {
            self.0.max()
        } else {
            self.0.value_at_quantile(q)
        };
        ns as f64 / 1000.0
    }

    /// p50, p90, p99, p99.9 and max in microseconds (null when nothing was measured).
    fn json(&self) -> Value {
        if self.is_empty() {
            return json!({"p50": null, "p90": null, "p99": null, "p999": null, "max": null});
        }
        let r = |q: f64| (self.us(q) * 10.0).round() / 10.0;
        json!({"p50": r(0.5), "p90": r(0.9), "p99": r(0.99), "p999": r(0.999), "max": r(1.0)})
    }

    fn text(&self) -> String {
        if self.is_empty() {
            return "none measured".to_owned();
        }
        format!(
            "p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
            self.us(0.5),
            self.us(0.9),
            self.us(0.99),
            self.us(0.999),
            self.us(1.0)
        )
    }
}

/// Bounds one network wait; `what` says in the error what did not answer.
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> mqemu::Result<T> {
    tokio::time::timeout(ANSWER_TIMEOUT, fut)
        .await
        .map_err(|_| {
            Error::new(
                ErrorCode::IoTimeout,
                format!("{what}: no answer within {} s", ANSWER_TIMEOUT.as_secs()),
            )
        })
}

fn panicked(e: tokio::task::JoinError) -> Error {
    Error::new(ErrorCode::Error, format!("a bench task failed: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Load runs

/// What every worker of a load run reads and counts.
struct Shared {
    /// The common origin of the send times in message bodies.
    start: Instant,
    /// Producers start no send after this.
    deadline: Instant,
    /// Consumers give up at this, whatever is missing.
    hard_deadline: Instant,
    /// Messages asked for in all.
    count: u64,
    /// Sends the server acknowledged (mqemu) or confirmed (AMQP).
    sent: AtomicU64,
    /// Publishes an AMQP broker refused (basic.nack).
    nacked: AtomicU64,
    /// Messages received.
    received: AtomicU64,
    /// Producers still running.
    producers_left: AtomicU64,
    /// Nanoseconds from `start` to the last receive.
    last_receive_ns: AtomicU64,
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
    fn may_send(&self) -> bool {
        !self.aborted() && Instant::now() < self.deadline
    }

    /// What consumers still wait for: up to `count` while producers run, then what they sent.
    fn outstanding(&self) -> u64 {
        let producing = self.producers_left.load(Ordering::SeqCst) > 0;
        let target = if producing {
            self.count
        } else {
            self.sent.load(Ordering::SeqCst)
        };
        target.saturating_sub(self.received.load(Ordering::SeqCst))
    }

    /// Whether consumers are done: nothing more to come, a failure, or the time is up.
    fn consumers_done(&self) -> bool {
        self.aborted() || Instant::now() >= self.hard_deadline || self.outstanding() == 0
    }

    /// Stamps the send time into the first 8 bytes of a body of `size` bytes.
    fn stamped_body(&self, size: usize) -> Vec<u8> {
        let mut body = vec![0u8; size];
        body[..8].copy_from_slice(&self.now_ns().to_le_bytes());
        body
    }

    /// Counts one received message and returns its end-to-end latency in nanoseconds.
    fn received(&self, body: &[u8]) -> Option<u64> {
        let now = self.now_ns();
        self.received.fetch_add(1, Ordering::SeqCst);
        self.last_receive_ns.fetch_max(now, Ordering::SeqCst);
        let sent: [u8; 8] = body.get(..8)?.try_into().ok()?;
        Some(now.saturating_sub(u64::from_le_bytes(sent)))
    }
}

/// Counts a producer out when it ends, however it ends, so consumers stop waiting for it.
struct ProducerGone(Arc<Shared>);

impl Drop for ProducerGone {
    fn drop(&mut self) {
        self.0.producers_left.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A producer's connection, opened before the clock starts.
enum ProducerConn {
    Mqemu(RemoteQueue),
    Amqp(AmqpConn, mpsc::UnboundedReceiver<Confirm>),
}

/// A consumer's connection, opened before the clock starts.
enum ConsumerConn {
    Mqemu(RemoteQueue),
    Amqp(AmqpConn),
}

/// The share of `total` for worker `i` of `n` (the first ones take the remainder).
fn share_of(total: u64, n: u32, i: u32) -> u64 {
    let (n, i) = (u64::from(n), u64::from(i));
    total / n + u64::from(i < total % n)
}

/// A load run: prepares the queue, connects every worker, runs them and reports.
/// One load run against `target`; prints its report and returns its messages per second.
async fn load(opts: &Options, target: &Target) -> mqemu::Result<f64> {
    let queue = opts.mode.queue();
    match target {
        Target::Mqemu { addr } => prepare_mqemu(addr, opts).await?,
        Target::Amqp(t) => prepare_amqp(t, queue).await?,
    }
    let mut producer_conns = Vec::with_capacity(opts.producers as usize);
    for _ in 0..opts.producers {
        producer_conns.push(match target {
            Target::Mqemu { addr } => ProducerConn::Mqemu(open_mqemu(addr, opts).await?),
            Target::Amqp(t) => {
                let (conn, confirms) = open_amqp_producer(t, queue).await?;
                ProducerConn::Amqp(conn, confirms)
            }
        });
    }
    let mut consumer_conns = Vec::with_capacity(opts.consumers as usize);
    for _ in 0..opts.consumers {
        consumer_conns.push(match target {
            Target::Mqemu { addr } => ConsumerConn::Mqemu(open_mqemu(addr, opts).await?),
            Target::Amqp(t) => ConsumerConn::Amqp(open_amqp(t, queue).await?),
        });
    }

    let start = Instant::now();
    let shared = Arc::new(Shared {
        start,
        deadline: start + opts.secs,
        hard_deadline: start + opts.secs + GRACE,
        count: opts.count,
        sent: AtomicU64::new(0),
        nacked: AtomicU64::new(0),
        received: AtomicU64::new(0),
        producers_left: AtomicU64::new(u64::from(opts.producers)),
        last_receive_ns: AtomicU64::new(0),
        abort: AtomicBool::new(false),
    });
    let window = opts.window as usize;
    let mut consumers = JoinSet::new();
    for conn in consumer_conns {
        let shared = shared.clone();
        consumers.spawn(async move {
            let r = match conn {
                ConsumerConn::Mqemu(q) => mqemu_consumer(q, window, &shared).await,
                ConsumerConn::Amqp(c) => amqp_consumer(c, window, &shared).await,
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
                ProducerConn::Amqp(c, confirms) => {
                    amqp_producer(c, confirms, share, size, mode, window, &shared).await
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
    Ok(report_load(opts, target, &shared, &send, &e2e))
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
fn report_rounds(opts: &Options, targets: &[Target], rates: &[Vec<f64>]) {
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

/// The once-a-second progress display on stderr: a bar on a terminal, a plain line otherwise,
/// nothing with `--json`.
struct Progress {
    bar: Option<ProgressBar>,
    plain: bool,
    count: u64,
    last: (Instant, u64),
}

impl Progress {
    fn new(json: bool, count: u64) -> Progress {
        let terminal = !json && std::io::stderr().is_terminal();
        let bar = terminal.then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(count), ProgressDrawTarget::stderr_with_hz(1));
            if let Ok(style) = ProgressStyle::with_template(
                "{elapsed_precise} [{wide_bar}] {pos}/{len} received {msg}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        Progress {
            bar,
            plain: !json && !terminal,
            count,
            last: (Instant::now(), 0),
        }
    }

    fn tick(&mut self, shared: &Shared) {
        let received = shared.received.load(Ordering::Relaxed);
        let sent = shared.sent.load(Ordering::Relaxed);
        let (then, before) = self.last;
        let rate = (received - before.min(received)) as f64 / then.elapsed().as_secs_f64();
        self.last = (Instant::now(), received);
        if let Some(bar) = &self.bar {
            bar.set_position(received);
            bar.set_message(format!("(sent {sent}, {rate:.0} msgs/s)"));
        } else if self.plain {
            eprintln!(
                "  {received}/{} received, {sent} sent, {rate:.0} msgs/s",
                self.count
            );
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Prints one load run's report; returns its messages per second.
fn report_load(
    opts: &Options,
    target: &Target,
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
            "secs_cap": opts.secs.as_secs_f64(),
            "sent": sent,
            "received": received,
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "msgs_per_sec": rate.round(),
            "send_latency_us": send.json(),
            "e2e_latency_us": e2e.json(),
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
    rate
}

// ---------------------------------------------------------------------------------------------
// mqemu

async fn connect_mqemu(addr: &str, opts: &Options) -> mqemu::Result<Client> {
    Client::connect_with(
        addr,
        &ClientOptions {
            token: opts.token.clone(),
            connect_timeout: CONNECT_TIMEOUT,
            ..ClientOptions::default()
        },
    )
    .await
}

/// Creates the mode's queue if it is missing and empties it.
async fn prepare_mqemu(addr: &str, opts: &Options) -> mqemu::Result<()> {
    prepare_mqemu_queue(&connect_mqemu(addr, opts).await?, opts.mode).await
}

async fn prepare_mqemu_queue(client: &Client, mode: Mode) -> mqemu::Result<()> {
    let props = QueueProps {
        transactional: mode == Mode::Transactional,
        ..QueueProps::default()
    };
    match within(
        "create the bench queue",
        client.create_queue(mode.queue(), props),
    )
    .await?
    {
        Ok(_) => {}
        Err(e) if e.code() == ErrorCode::QueueExists => {}
        Err(e) => return Err(e),
    }
    within("purge the bench queue", client.purge(mode.queue())).await??;
    Ok(())
}

/// A connection of its own for one worker, with the mode's queue open.
async fn open_mqemu(addr: &str, opts: &Options) -> mqemu::Result<RemoteQueue> {
    let client = connect_mqemu(addr, opts).await?;
    within("open the bench queue", client.open(opts.mode.queue())).await?
}

/// Fails a run whose server stopped answering: one timer for all of a worker's requests, pushed
/// back as answers come, instead of a timer per request (which would cost more than the request).
struct Watchdog {
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    last: Instant,
}

impl Watchdog {
    fn new() -> Watchdog {
        Watchdog {
            sleep: Box::pin(tokio::time::sleep(ANSWER_TIMEOUT)),
            last: Instant::now(),
        }
    }

    /// An answer came.
    fn fed(&mut self, now: Instant) {
        self.last = now;
    }

    /// Resolves with an error once no answer has come for [`ANSWER_TIMEOUT`].
    async fn expired(&mut self, what: &str) -> Error {
        loop {
            self.sleep.as_mut().await;
            let due = self.last + ANSWER_TIMEOUT;
            if Instant::now() >= due {
                return Error::new(
                    ErrorCode::IoTimeout,
                    format!("{what}: no answer within {} s", ANSWER_TIMEOUT.as_secs()),
                );
            }
            self.sleep.as_mut().reset(due.into());
        }
    }
}

/// Sends `share` messages (or until the time cap), `window` at a time; returns send latencies.
async fn mqemu_producer(
    queue: RemoteQueue,
    share: u64,
    size: usize,
    mode: Mode,
    window: usize,
    shared: &Shared,
) -> mqemu::Result<Latencies> {
    let mut latencies = Latencies::new();
    // Requests in flight are futures polled here, not tasks: a task each would cost the
    // generator more than the request costs the server.
    let mut inflight = FuturesUnordered::new();
    let mut watchdog = Watchdog::new();
    let mut issued = 0;
    loop {
        if issued < share && inflight.len() < window && shared.may_send() {
            let mut msg = Message::new(shared.stamped_body(size));
            msg.delivery = match mode {
                Mode::Express => Delivery::Express,
                _ => Delivery::Recoverable,
            };
            let queue = &queue;
            inflight.push(async move {
                let tx = match mode {
                    Mode::Transactional => Tx::Single,
                    _ => Tx::None,
                };
                let t0 = Instant::now();
                (t0, queue.send(msg, tx).await)
            });
            issued += 1;
            continue;
        }
        // The window is full, or nothing more is to be sent: wait for an answer.
        let (t0, r) = tokio::select! {
            done = inflight.next() => match done {
                Some(done) => done,
                None => break,
            },
            e = watchdog.expired("send") => return Err(e),
        };
        r?;
        let now = Instant::now();
        watchdog.fed(now);
        latencies.record(now - t0);
        shared.sent.fetch_add(1, Ordering::SeqCst);
    }
    Ok(latencies)
}

/// Receives, `window` at a time, until the producers' messages are in; returns end-to-end
/// latencies.
async fn mqemu_consumer(
    queue: RemoteQueue,
    window: usize,
    shared: &Shared,
) -> mqemu::Result<Latencies> {
    let mut latencies = Latencies::new();
    let mut inflight = FuturesUnordered::new();
    let mut watchdog = Watchdog::new();
    let take = |r: mqemu::Result<Message>, latencies: &mut Latencies| -> mqemu::Result<()> {
        match r {
            Ok(msg) => {
                if let Some(ns) = shared.received(&msg.body) {
                    latencies.record_ns(ns);
                }
                Ok(())
            }
            Err(e) if e.code() == ErrorCode::IoTimeout => Ok(()),
            Err(e) => Err(e),
        }
    };
    // Wakes the loop now and then to see whether the producers are done.
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let queue = &queue;
    while !shared.consumers_done() {
        if inflight.len() < window && (inflight.len() as u64) < shared.outstanding() {
            inflight.push(queue.receive(RECEIVE_WAIT, Tx::None));
            continue;
        }
        if inflight.is_empty() {
            tokio::time::sleep(Duration::from_millis(2)).await;
            watchdog.fed(Instant::now());
            continue;
        }
        tokio::select! {
            Some(r) = inflight.next() => {
                watchdog.fed(Instant::now());
                take(r, &mut latencies)?;
            }
            _ = tick.tick() => {}
            e = watchdog.expired("receive") => return Err(e),
        }
    }
    // Receives still waiting on the server end within their wait; any message they take counts.
    let give_up = tokio::time::Instant::now() + RECEIVE_WAIT + Duration::from_secs(2);
    while let Ok(Some(r)) = tokio::time::timeout_at(give_up, inflight.next()).await {
        take(r, &mut latencies)?;
    }
    Ok(latencies)
}

// ---------------------------------------------------------------------------------------------
// AMQP 0-9-1

/// A connection to an AMQP broker with one channel open on it.
struct AmqpConn {
    connection: Connection,
    channel: Channel,
    queue: String,
}

impl AmqpConn {
    /// Closes the channel and the connection (best effort: the run's figures are taken).
    async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = self.channel.close().await;
            let _ = self.connection.close().await;
        })
        .await;
    }
}

/// An AMQP failure on an open connection.
fn amqp_failed(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorCode::ServiceNotAvailable,
        format!("AMQP broker: cannot {what}: {e}"),
    )
}

/// Connects, opens a channel and declares the durable queue `queue`.
async fn open_amqp(t: &AmqpTarget, queue: &str) -> mqemu::Result<AmqpConn> {
    let args = OpenConnectionArguments::new(&t.host, t.port, &t.user, &t.password)
        .virtual_host(&t.vhost)
        .connection_name("mqemu-bench")
        .finish();
    let unreachable = |why: String| {
        Error::new(
            ErrorCode::RemoteMachineNotAvailable,
            format!(
                "cannot reach the AMQP broker at {}:{} (vhost {:?}, user {:?}): {why}",
                t.host, t.port, t.vhost, t.user
            ),
        )
    };
    let connection = tokio::time::timeout(CONNECT_TIMEOUT, Connection::open(&args))
        .await
        .map_err(|_| unreachable("timed out".to_owned()))?
        .map_err(|e| unreachable(e.to_string()))?;
    connection
        .register_callback(DefaultConnectionCallback)
        .await
        .map_err(|e| amqp_failed("watch the connection", e))?;
    let channel = within("open a channel", connection.open_channel(None))
        .await?
        .map_err(|e| amqp_failed("open a channel", e))?;
    within(
        "declare the queue",
        channel.queue_declare(QueueDeclareArguments::durable_client_named(queue)),
    )
    .await?
    .map_err(|e| amqp_failed(&format!("declare the durable queue {queue:?}"), e))?;
    Ok(AmqpConn {
        connection,
        channel,
        queue: queue.to_owned(),
    })
}

/// Declares the durable queue if missing and purges it.
async fn prepare_amqp(t: &AmqpTarget, queue: &str) -> mqemu::Result<()> {
    let conn = open_amqp(t, queue).await?;
    conn.channel
        .register_callback(DefaultChannelCallback)
        .await
        .map_err(|e| amqp_failed("watch the channel", e))?;
    within(
        "purge the queue",
        conn.channel.queue_purge(QueuePurgeArguments::new(queue)),
    )
    .await?
    .map_err(|e| amqp_failed(&format!("purge {queue:?}"), e))?;
    conn.close().await;
    Ok(())
}

/// A producer's connection in confirm mode, with the confirms as they come.
async fn open_amqp_producer(
    t: &AmqpTarget,
    queue: &str,
) -> mqemu::Result<(AmqpConn, mpsc::UnboundedReceiver<Confirm>)> {
    let conn = open_amqp(t, queue).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    conn.channel
        .register_callback(ConfirmForwarder(tx))
        .await
        .map_err(|e| amqp_failed("watch the channel", e))?;
    within(
        "select confirms",
        conn.channel
            .confirm_select(ConfirmSelectArguments::default()),
    )
    .await?
    .map_err(|e| amqp_failed("turn on publisher confirms", e))?;
    Ok((conn, rx))
}

/// What the broker said about published messages (or the channel's end).
#[derive(Debug)]
enum Confirm {
    /// basic.ack: the message `tag` (and every earlier one if `multiple`) is safe.
    Ack { tag: u64, multiple: bool },
    /// basic.nack: the broker could not take them.
    Nack { tag: u64, multiple: bool },
    /// The broker closed the channel.
    Closed(String),
}

/// Forwards a confirm-mode channel's acks and nacks to its producer.
struct ConfirmForwarder(mpsc::UnboundedSender<Confirm>);

#[async_trait::async_trait]
impl ChannelCallback for ConfirmForwarder {
    async fn close(
        &mut self,
        _channel: &Channel,
        close: CloseChannel,
    ) -> Result<(), amqprs::error::Error> {
        let _ = self.0.send(Confirm::Closed(close.to_string()));
        Ok(())
    }

    async fn cancel(
        &mut self,
        _channel: &Channel,
        _cancel: Cancel,
    ) -> Result<(), amqprs::error::Error> {
        Ok(())
    }

    async fn flow(
        &mut self,
        _channel: &Channel,
        active: bool,
    ) -> Result<bool, amqprs::error::Error> {
        Ok(active)
    }

    async fn publish_ack(&mut self, _channel: &Channel, ack: Ack) {
        let _ = self.0.send(Confirm::Ack {
            tag: ack.delivery_tag(),
            multiple: ack.mutiple(),
        });
    }

    async fn publish_nack(&mut self, _channel: &Channel, nack: Nack) {
        let _ = self.0.send(Confirm::Nack {
            tag: nack.delivery_tag(),
            multiple: nack.multiple(),
        });
    }

    async fn publish_return(
        &mut self,
        _channel: &Channel,
        _ret: Return,
        _basic_properties: BasicProperties,
        _content: Vec<u8>,
    ) {
    }
}

/// Publishes `share` messages (or until the time cap) with up to `window` unconfirmed; returns
/// the publish-to-confirm latencies.
async fn amqp_producer(
    conn: AmqpConn,
    mut confirms: mpsc::UnboundedReceiver<Confirm>,
    share: u64,
    size: usize,
    mode: Mode,
    window: usize,
    shared: &Shared,
) -> mqemu::Result<Latencies> {
    let mut latencies = Latencies::new();
    // Publish time of every unconfirmed message by delivery tag (1, 2, ... on a confirm channel).
    let mut unconfirmed: BTreeMap<u64, Instant> = BTreeMap::new();
    let mut next_tag = 1;
    let props = BasicProperties::default()
        .with_delivery_mode(match mode {
            Mode::Express => DELIVERY_MODE_TRANSIENT,
            _ => DELIVERY_MODE_PERSISTENT,
        })
        .finish();
    let args = BasicPublishArguments::new("", &conn.queue);
    let mut settle = |c: Confirm, unconfirmed: &mut BTreeMap<u64, Instant>| -> mqemu::Result<()> {
        let (tag, multiple, ok) = match c {
            Confirm::Ack { tag, multiple } => (tag, multiple, true),
            Confirm::Nack { tag, multiple } => (tag, multiple, false),
            Confirm::Closed(why) => return Err(amqp_failed("go on publishing", why)),
        };
        let done: Vec<Instant> = if multiple {
            let later = unconfirmed.split_off(&(tag + 1));
            std::mem::replace(unconfirmed, later)
                .into_values()
                .collect()
        } else {
            unconfirmed.remove(&tag).into_iter().collect()
        };
        let counter = if ok { &shared.sent } else { &shared.nacked };
        counter.fetch_add(done.len() as u64, Ordering::SeqCst);
        if ok {
            for t0 in done {
                latencies.record(t0.elapsed());
            }
        }
        Ok(())
    };
    let mut issued = 0;
    let result = async {
        loop {
            // Take the confirms already in before deciding anything.
            while let Ok(c) = confirms.try_recv() {
                settle(c, &mut unconfirmed)?;
            }
            if issued < share && unconfirmed.len() < window && shared.may_send() {
                let body = shared.stamped_body(size);
                unconfirmed.insert(next_tag, Instant::now());
                next_tag += 1;
                issued += 1;
                within(
                    "publish",
                    conn.channel
                        .basic_publish(props.clone(), body, args.clone()),
                )
                .await?
                .map_err(|e| amqp_failed("publish", e))?;
                continue;
            }
            if unconfirmed.is_empty() {
                break;
            }
            match within("confirm", confirms.recv()).await? {
                Some(c) => settle(c, &mut unconfirmed)?,
                None => return Err(amqp_failed("go on publishing", "the channel ended")),
            }
        }
        Ok(())
    }
    .await;
    conn.close().await;
    result.map(|()| latencies)
}

/// Consumes with prefetch `window` and a manual ack per message until the producers' messages
/// are in; returns end-to-end latencies.
async fn amqp_consumer(conn: AmqpConn, window: usize, shared: &Shared) -> mqemu::Result<Latencies> {
    let mut latencies = Latencies::new();
    let result = async {
        conn.channel
            .register_callback(DefaultChannelCallback)
            .await
            .map_err(|e| amqp_failed("watch the channel", e))?;
        let prefetch = u16::try_from(window).unwrap_or(u16::MAX);
        within(
            "set the prefetch",
            conn.channel
                .basic_qos(BasicQosArguments::new(0, prefetch, false)),
        )
        .await?
        .map_err(|e| amqp_failed("set the prefetch (basic.qos)", e))?;
        let consume = BasicConsumeArguments::new(&conn.queue, "")
            .manual_ack(true)
            .finish();
        let (tag, mut deliveries) = within("consume", conn.channel.basic_consume_rx(consume))
            .await?
            .map_err(|e| amqp_failed("consume (basic.consume)", e))?;
        while !shared.consumers_done() {
            // Wake up now and then to see whether the producers are done.
            let Ok(delivery) =
                tokio::time::timeout(Duration::from_millis(100), deliveries.recv()).await
            else {
                continue;
            };
            let Some(msg) = delivery else {
                return Err(amqp_failed(
                    "go on consuming",
                    "the broker ended the consumer",
                ));
            };
            let Some(deliver) = msg.deliver else {
                continue;
            };
            if let Some(ns) = shared.received(msg.content.as_deref().unwrap_or_default()) {
                latencies.record_ns(ns);
            }
            within(
                "ack",
                conn.channel
                    .basic_ack(BasicAckArguments::new(deliver.delivery_tag(), false)),
            )
            .await?
            .map_err(|e| amqp_failed("ack (basic.ack)", e))?;
        }
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            conn.channel.basic_cancel(BasicCancelArguments::new(&tag)),
        )
        .await;
        Ok(())
    }
    .await;
    conn.close().await;
    result.map(|()| latencies)
}

// ---------------------------------------------------------------------------------------------
// Round trips (--rtt)

/// A loopback TCP echo server for one connection, in a child process (`mqemu echo-worker`): what
/// a round trip of the same payload costs on this machine with no queue server in the way.
///
/// A round trip between two CPUs costs several times one within a CPU (on this 2-vCPU virtual
/// machine 13 µs against 4-6 µs for 1 KiB, because waking the other CPU is slow), and where the
/// scheduler puts an unpinned echo decides which one the baseline measures. The queue server
/// answers from another CPU than the client's (its figures do not move between runs), so the
/// bench pins itself to one CPU and the echo to another: the baseline pays what the server pays.
struct Echo {
    addr: String,
    child: std::process::Child,
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the echo, pinned to `cpu` if given.
fn start_echo(size: usize, cpu: Option<usize>) -> mqemu::Result<Echo> {
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        Error::new(
            ErrorCode::InsufficientResources,
            format!("cannot start the loopback echo server: {what}: {e}"),
        )
    };
    let exe = std::env::current_exe().map_err(|e| failed("find this program", &e))?;
    let mut command = std::process::Command::new(exe);
    command.args(["echo-worker", "--size", &size.to_string()]);
    if let Some(cpu) = cpu {
        command.args(["--cpu", &cpu.to_string()]);
    }
    let mut child = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| failed("spawn", &e))?;
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped");
    let read = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
    // From here on, dropping `echo` stops the child.
    let mut echo = Echo {
        addr: String::new(),
        child,
    };
    match (read, line.trim().strip_prefix("listening on ")) {
        (Ok(_), Some(addr)) => {
            echo.addr = addr.to_owned();
            Ok(echo)
        }
        (Err(e), _) => Err(failed("read its address", &e)),
        (Ok(_), None) => Err(failed("read its address", &format!("it said {line:?}"))),
    }
}

/// Pins the calling thread to one CPU; false where that cannot be done.
fn pin_to_cpu(cpu: usize) -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `set` is a plain bit set that lives across the call, and its size is passed
        // with it; pid 0 is the calling thread.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = cpu;
        false
    }
}

/// `mqemu echo-worker`: echoes `size`-byte blocks on one connection, then exits (at the
/// connection's end, or when nothing comes for [`ANSWER_TIMEOUT`]). With `cpu`, it runs there.
pub fn echo_worker(size: usize, cpu: Option<usize>) -> mqemu::Result<()> {
    let failed = |what: &str, e: std::io::Error| {
        Error::new(ErrorCode::Error, format!("echo worker: {what}: {e}"))
    };
    if let Some(cpu) = cpu {
        if !pin_to_cpu(cpu) {
            return Err(failed("pin to a CPU", std::io::Error::last_os_error()));
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| failed("bind", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| failed("local address", e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| failed("nonblocking", e))?;
    println!("listening on {addr}");
    std::io::stdout().flush().map_err(|e| failed("stdout", e))?;
    // Wait a bounded time for the bench to connect.
    let give_up = Instant::now() + CONNECT_TIMEOUT;
    let mut stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < give_up => {
                thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(failed("accept", e)),
        }
    };
    stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_nodelay(true))
        .and_then(|()| stream.set_read_timeout(Some(ANSWER_TIMEOUT)))
        .map_err(|e| failed("socket options", e))?;
    let mut buf = vec![0u8; size];
    while stream.read_exact(&mut buf).is_ok() {
        if stream.write_all(&buf).is_err() {
            break;
        }
    }
    Ok(())
}

/// `--rtt`: one connection, one request at a time, in alternating blocks of raw TCP
/// ping-pongs, express sends and receives, so machine noise hits all three alike.
async fn rtt(opts: &Options, addr: &str) -> mqemu::Result<()> {
    let client = connect_mqemu(addr, opts).await?;
    prepare_mqemu_queue(&client, Mode::Express).await?;
    let queue = within("open the bench queue", client.open(QUEUE)).await??;
    // The bench on CPU 0 and the echo on CPU 1 (see `Echo`); one CPU cannot be split so.
    let two_cpus = thread::available_parallelism().is_ok_and(|n| n.get() >= 2) && pin_to_cpu(0);
    let echo = start_echo(opts.size, two_cpus.then_some(1))?;
    let raw_failed = |what: &str, e: std::io::Error| {
        Error::new(
            ErrorCode::Error,
            format!("loopback echo server: cannot {what}: {e}"),
        )
    };
    let mut raw = within(
        "connect to the echo server",
        tokio::net::TcpStream::connect(&echo.addr),
    )
    .await?
    .map_err(|e| raw_failed("connect", e))?;
    raw.set_nodelay(true)
        .map_err(|e| raw_failed("set TCP_NODELAY", e))?;
    let payload = Bytes::from(vec![0x5a; opts.size]);
    let mut echoed = vec![0u8; opts.size];
    let (mut raw_h, mut send_h, mut receive_h) =
        (Latencies::new(), Latencies::new(), Latencies::new());
    let n = opts.count.min(RTT_MAX);
    let deadline = Instant::now() + opts.secs;

    // One block of `b` round trips of each kind; `record` is false for the warm-up.
    let mut block = async |b: u64, record: bool| -> mqemu::Result<()> {
        for _ in 0..b {
            let t0 = Instant::now();
            within("echo", raw.write_all(&payload))
                .await?
                .map_err(|e| raw_failed("write", e))?;
            within("echo", raw.read_exact(&mut echoed))
                .await?
                .map_err(|e| raw_failed("read", e))?;
            if record {
                raw_h.record(t0.elapsed());
            }
        }
        for _ in 0..b {
            let msg = Message::new(payload.clone());
            let t0 = Instant::now();
            within("send", queue.send(msg, Tx::None)).await??;
            if record {
                send_h.record(t0.elapsed());
            }
        }
        for _ in 0..b {
            let t0 = Instant::now();
            within("receive", queue.receive(RECEIVE_WAIT, Tx::None)).await??;
            if record {
                receive_h.record(t0.elapsed());
            }
        }
        Ok(())
    };
    block(RTT_WARMUP, false).await?;
    let mut done = 0;
    while done < n && Instant::now() < deadline {
        let b = RTT_BLOCK.min(n - done);
        block(b, true).await?;
        done += b;
    }
    drop(raw);
    drop(echo);
    report_rtt(opts, addr, done, &raw_h, &send_h, &receive_h);
    Ok(())
}

fn report_rtt(
    opts: &Options,
    addr: &str,
    n: u64,
    raw: &Latencies,
    send: &Latencies,
    receive: &Latencies,
) {
    let ratio = |l: &Latencies| {
        let r = raw.us(0.5);
        if r > 0.0 {
            ((l.us(0.5) / r) * 100.0).round() / 100.0
        } else {
            0.0
        }
    };
    if opts.json {
        println!(
            "{}",
            json!({
                "target": "mqemu",
                "rtt": true,
                "size": opts.size,
                "round_trips": n,
                "raw_tcp_us": raw.json(),
                "send_us": send.json(),
                "receive_us": receive.json(),
                "send_p50_over_raw_p50": ratio(send),
                "receive_p50_over_raw_p50": ratio(receive),
            })
        );
        return;
    }
    println!(
        "mqemu://{addr} round trips, one at a time, {} B, {n} of each kind (µs)",
        opts.size
    );
    let line = |name: &str, l: &Latencies| {
        println!(
            "  {name:<22} p50 {:>8.1}  p99 {:>8.1}",
            l.us(0.5),
            l.us(0.99)
        );
    };
    line("raw TCP ping-pong", raw);
    line("mqemu send (express)", send);
    line("mqemu receive", receive);
    println!(
        "  mqemu_send_p50/raw_p50 {:.2}, mqemu_receive_p50/raw_p50 {:.2}",
        ratio(send),
        ratio(receive)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mqemu_targets() {
        assert_eq!(
            parse_target("mqemu://127.0.0.1:18600").unwrap(),
            Target::Mqemu {
                addr: "127.0.0.1:18600".into()
            }
        );
        assert_eq!(
            parse_target("mqemu://localhost/").unwrap(),
            Target::Mqemu {
                addr: format!("localhost:{}", mqnet::DEFAULT_PORT)
            }
        );
        assert!(parse_target("mqemu://host:0").is_err());
        assert!(parse_target("mqemu://").is_err());
        assert!(parse_target("http://host").is_err());
    }

    #[test]
    fn parses_amqp_targets() {
        assert_eq!(
            parse_target("amqp://guest:guest@127.0.0.1:5672/%2f").unwrap(),
            Target::Amqp(AmqpTarget {
                host: "127.0.0.1".into(),
                port: 5672,
                user: "guest".into(),
                password: "guest".into(),
                vhost: "/".into(),
            })
        );
        let Target::Amqp(t) = parse_target("amqp://u%40x:p%3Aw@broker/prod").unwrap() else {
            panic!("an amqp target");
        };
        assert_eq!(
            (t.user.as_str(), t.password.as_str(), t.port),
            ("u@x", "p:w", 5672)
        );
        assert_eq!(t.vhost, "prod");
        assert!(parse_target("amqp://host:99999/").is_err());
        assert!(parse_target("amqp://host/%zz").is_err());
        assert!(parse_target("amqps://host/").is_err());
    }

    #[test]
    fn shares_add_up() {
        let total: u64 = (0..7).map(|i| share_of(100, 7, i)).sum();
        assert_eq!(total, 100);
    }

    #[test]
    fn latencies_report_in_microseconds() {
        let mut l = Latencies::new();
        for us in 1..=1000u64 {
            l.record(Duration::from_micros(us));
        }
        assert!((l.us(0.5) - 500.0).abs() < 1.0);
        assert!((l.us(1.0) - 1000.0).abs() < 1.0);
        assert_eq!(Latencies::new().json()["p50"], Value::Null);
    }
}
