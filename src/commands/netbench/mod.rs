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

mod amqp;
mod load;
mod measure;
mod native;
mod rtt;
mod target;

use std::future::Future;
use std::time::Duration;

use mqemu::{Error, ErrorCode};

use load::{load, report_rounds};
use rtt::rtt;
use target::{parse_target, Target};

pub use rtt::echo_worker;

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
