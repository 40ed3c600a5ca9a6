//! `mqemu bench`: producers send and consumers receive from one queue, on the engine in this
//! process (`local`) or, with `--target URL`, over the network.
//!
//! With `--target`, it is a network load generator, so a running `mqemu serve` and an AMQP
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

mod amqp;
mod http;
mod load;
mod local;
mod measure;
mod native;
mod rtt;
mod target;
mod visibility;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use mqemu::{Error, ErrorCode};

use super::admin::Conn;
use load::{load, report_rounds};
use rtt::rtt;
use target::{parse_target, Target};

pub use rtt::{echo_worker, EchoWorkerArgs};

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
///
/// With a `--target`, transactional consumers connect as local applications and receive each
/// message in a single-message transaction (a server on another computer refuses that, as MSMQ
/// refuses internal transactional receives from other computers, and is read without one), and
/// an AMQP broker gets the closest AMQP equivalent of each mode: transient messages for express,
/// persistent ones for recoverable, and for transactional persistent messages each confirmed
/// once the broker has them safe, consumed with a manual ack per message.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// MQMSG_DELIVERY_EXPRESS, non-transactional queue.
    Express,
    /// MQMSG_DELIVERY_RECOVERABLE, non-transactional queue.
    Recoverable,
    /// Transactional queue: single-message transactions on both sides.
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

/// What `mqemu bench` was asked to do: its own flags, and the global `--token` and `--json`.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Drive a running server instead of an engine in this process: mqemu://HOST:PORT,
    /// mqemu+tls://HOST:PORT (TLS, trusting --tls-ca; the global --tls makes every mqemu://
    /// target one), http://HOST:PORT for mqemu's HTTP face (rabbitmq-http:// for RabbitMQ's
    /// management API), or amqp://USER:PASS@HOST:PORT/VHOST for an AMQP 0-9-1 broker such as
    /// RabbitMQ. Give it more than once to measure several servers in one run, in turn (see
    /// --rounds): mqemu:// beside mqemu+tls:// puts plaintext and TLS side by side.
    #[arg(long = "target", value_name = "TARGET", conflicts_with = "data")]
    pub targets: Vec<String>,
    /// With --target: runs against each target, taken in turn, so machine noise hits all alike;
    /// the report ends with each target's median rate and the first target's rate over each
    /// other's.
    #[arg(long, default_value_t = 1, requires = "targets", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
    /// Producer threads (with --target: connections).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub producers: u32,
    /// Consumer threads (with --target: connections).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub consumers: u32,
    /// Messages to send in all (the run ends when all are received; with --rtt: round trips of
    /// each kind, at most 20000).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub count: u64,
    /// Time cap in seconds of a --target run: sending stops at --count or --secs, whichever
    /// comes first [default: 60].
    #[arg(long, requires = "targets", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub secs: Option<u64>,
    /// Sends each --target producer, and receives each consumer, keeps in flight (AMQP:
    /// unconfirmed publishes, and the consumer prefetch).
    #[arg(long, default_value_t = 100, requires = "targets", value_parser = clap::value_parser!(u32).range(1..=65_535))]
    pub window: u32,
    /// Measure round trips one at a time against an mqemu:// --target (express sends and
    /// receives), next to a raw loopback TCP ping-pong of the same size.
    #[arg(long, requires = "targets")]
    pub rtt: bool,
    /// Measure, message by message, a transactional send's commit and the time from its commit
    /// until a waiting receiver has it, for each mqemu:// target in turn (with ?to=HOST: sent to
    /// one server, received from the other), --count probes each (at most 20000).
    #[arg(long, requires = "targets", conflicts_with = "rtt")]
    pub visibility: bool,
    /// Body size in bytes (at least 8: the send time rides in the body).
    #[arg(long, default_value_t = 1024, value_parser = clap::builder::RangedI64ValueParser::<usize>::new().range(8..=4 * 1024 * 1024))]
    pub size: usize,
    /// Delivery mode (with a --target, transactional consumers receive in single-message
    /// transactions as local applications; from a server on another computer, without one).
    #[arg(long, value_enum, default_value_t = Mode::Express)]
    pub mode: Mode,
    /// Keep the queue on disk in this directory (a durable queue manager) instead of in memory.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The mqemu server's token, if it asks for one (the global `--token`).
    #[arg(skip)]
    pub token: Option<String>,
    /// What `mqemu+tls://` targets trust (the global `--tls-ca` or `--insecure-skip-verify`).
    #[arg(skip)]
    pub tls: Option<mqnet::ClientTls>,
    /// Whether the target being driven is an `mqemu+tls://` one.
    #[arg(skip)]
    pub use_tls: bool,
    /// The global `--tls`: every `mqemu://` target is taken as `mqemu+tls://`, as every other
    /// command connects over TLS with it.
    #[arg(skip)]
    pub tls_everywhere: bool,
    /// Print one JSON object instead of text (the global `--json`).
    #[arg(skip)]
    pub json: bool,
}

impl Options {
    /// These options for driving `target`: over TLS when it is an `mqemu+tls://` one.
    fn for_target(&self, target: &Target) -> mqemu::Result<Options> {
        let mut o = self.clone();
        o.use_tls = matches!(target, Target::Mqemu { tls: true, .. });
        if o.use_tls && o.tls.is_none() {
            return Err(invalid(format!(
                "{target}: an mqemu+tls:// target needs --tls-ca FILE (or --insecure-skip-verify)"
            )));
        }
        Ok(o)
    }

    /// The time cap of a `--target` run.
    fn secs(&self) -> Duration {
        Duration::from_secs(self.secs.unwrap_or(60))
    }
}

/// Runs `mqemu bench`: on the engine in this process, or against the `--target`s.
pub fn run(mut opts: Options, conn: &Conn) -> mqemu::Result<()> {
    opts.token = conn.token.clone();
    opts.tls = conn.client_tls()?;
    opts.tls_everywhere = conn.tls;
    opts.json = conn.json;
    if opts.targets.is_empty() {
        return local::run(&opts);
    }
    run_targets(&opts)
}

/// Runs `mqemu bench --target` on a runtime of its own.
fn run_targets(opts: &Options) -> mqemu::Result<()> {
    if opts.size < 8 {
        return Err(invalid(
            "--size must be at least 8 bytes (the send time rides in the body)",
        ));
    }
    let targets = opts
        .targets
        .iter()
        .map(|t| {
            parse_target(t).map(|t| match t {
                Target::Mqemu { addr, to, .. } if opts.tls_everywhere => Target::Mqemu {
                    addr,
                    to,
                    tls: true,
                },
                t => t,
            })
        })
        .collect::<mqemu::Result<Vec<_>>>()?;
    if opts.rtt
        && !targets
            .iter()
            .all(|t| matches!(t, Target::Mqemu { to: None, .. }))
    {
        return Err(invalid(
            "--rtt measures mqemu:// (or mqemu+tls://) targets, without ?to=",
        ));
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
            _ if opts.visibility => visibility::visibility(opts, &targets).await,
            (_, true) => {
                // Each target in turn, each beside its own raw loopback baseline: plaintext
                // and TLS side by side in one run.
                let mut all = Vec::new();
                for target in &targets {
                    let Target::Mqemu { addr, .. } = target else {
                        unreachable!("checked above")
                    };
                    all.push(rtt(&opts.for_target(target)?, addr).await?);
                }
                if all.len() > 1 && !opts.json {
                    let names: Vec<String> = targets.iter().map(ToString::to_string).collect();
                    rtt::side_by_side(&names, &all);
                }
                Ok(())
            }
            (_, false) => {
                let mut rates = vec![Vec::new(); targets.len()];
                for round in 1..=opts.rounds {
                    if opts.rounds > 1 && !opts.json {
                        println!("round {round} of {}:", opts.rounds);
                    }
                    for (target, rates) in targets.iter().zip(&mut rates) {
                        rates.push(load(&opts.for_target(target)?, target).await?);
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

fn invalid(detail: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidParameter, detail.into())
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
