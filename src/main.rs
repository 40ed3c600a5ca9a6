//! The `mqemu` command line: the server (`serve`), the management and messaging commands that
//! talk to it, and the load generators.

mod commands;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use mqemu::{Delivery, Message, QueueManager, QueueProps, Tx};

/// mqemu: an MSMQ-compatible message queue.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a queue manager and serve it on the network (127.0.0.1:18010, ./mqemu-data).
    Serve(ServeArgs),
    /// Manage queues on a server.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Send a message (body from --body, --body-file or standard input).
    Send(SendArgs),
    /// Show the first message without removing it.
    Peek(TakeArgs),
    /// Remove and show the first message.
    Receive(ReceiveArgs),
    /// Show the server's figures.
    Stats(ServerArgs),
    /// Manage MSMQ Triggers rules (conditions and an action) on a server.
    #[command(subcommand)]
    Rule(RuleCommand),
    /// Manage MSMQ Triggers triggers (a queue, a processing type, rules) on a server.
    #[command(subcommand)]
    Trigger(TriggerCommand),
    /// Measure the engine in this process, or a server over the network (--target): producers
    /// send, consumers receive, from one queue.
    Bench(BenchArgs),
    /// Measure how long a durable queue manager takes to open with many live messages, and with
    /// the same number sent and received (history only).
    BenchRecovery(RecoveryArgs),
    /// Run a durable workload that reports each acknowledged commit, until killed (crash tests).
    #[command(hide = true)]
    CrashWorker(CrashWorkerArgs),
    /// Echo blocks of --size bytes on one loopback connection (the baseline of bench --rtt).
    #[command(hide = true)]
    EchoWorker(EchoWorkerArgs),
}

#[derive(clap::Args, Debug)]
struct EchoWorkerArgs {
    /// Bytes in each block.
    #[arg(long)]
    size: usize,
    /// Run on this CPU.
    #[arg(long)]
    cpu: Option<usize>,
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:18010].
    #[arg(long)]
    listen: Option<String>,
    /// Storage directory [default: ./mqemu-data].
    #[arg(long, conflicts_with = "in_memory")]
    data: Option<PathBuf>,
    /// Keep everything in memory (lost at exit).
    #[arg(long)]
    in_memory: bool,
    /// TOML configuration: queues to create, users and rights, limits (see README).
    #[arg(long)]
    config: Option<PathBuf>,
    /// MSMQ version to behave as: msmq3 or msmq4 [default: msmq4].
    #[arg(long)]
    compat: Option<String>,
}

/// Which server the client commands talk to.
#[derive(clap::Args, Debug)]
struct ServerArgs {
    /// The server's address.
    #[arg(long, default_value = commands::serve::DEFAULT_LISTEN)]
    server: String,
    /// Authentication token (or MQEMU_TOKEN).
    #[arg(long, env = "MQEMU_TOKEN")]
    token: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

impl ServerArgs {
    fn conn(&self) -> commands::admin::Conn {
        commands::admin::Conn {
            server: self.server.clone(),
            token: self.token.clone(),
            json: self.json,
        }
    }
}

#[derive(Subcommand, Debug)]
enum QueueCommand {
    /// Create a queue, e.g. '.\private$\orders'.
    Create {
        /// Path name.
        path: String,
        /// Transactional queue.
        #[arg(long)]
        transactional: bool,
        /// Keep a journal of received messages.
        #[arg(long)]
        journal: bool,
        /// Quota in kilobytes.
        #[arg(long)]
        quota_kb: Option<u32>,
        /// Label.
        #[arg(long)]
        label: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List queues.
    List(ServerArgs),
    /// Show one queue.
    Show {
        /// Queue name.
        queue: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Remove every message from a queue.
    Purge {
        /// Queue name.
        queue: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Delete a queue.
    Delete {
        /// Queue name.
        queue: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// A rule or trigger named by name or id, on a server.
#[derive(clap::Args, Debug)]
struct Named {
    /// Name (or id).
    name: String,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Subcommand, Debug)]
enum RuleCommand {
    /// Define a rule from MSMQ's strings: a condition list such as
    /// $'$MSG_LABEL_CONTAINS=go\t' (each condition ends with a TAB; trigadm's ';' separators
    /// work too) and an action such as $'EXE\t/usr/bin/touch\t"/tmp/f"'.
    Add {
        /// Rule name (at most 128 characters).
        name: String,
        /// Conditions, all of which must hold; empty means always [default: empty].
        #[arg(long, default_value = "")]
        condition: String,
        /// Action: EXE<TAB>path<TAB>params..., COM<TAB>ProgID<TAB>Method<TAB>params...,
        /// or HTTP<TAB>url<TAB>params....
        #[arg(long)]
        action: String,
        /// Description (at most 255 characters).
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List rules.
    List(ServerArgs),
    /// Show one rule.
    Show(Named),
    /// Delete a rule (it is detached from every trigger).
    Delete(Named),
}

#[derive(Subcommand, Debug)]
enum TriggerCommand {
    /// Define a trigger on a queue given by path name.
    Add {
        /// Trigger name.
        name: String,
        /// Monitored queue: a path such as '.\private$\orders', '.\private$\orders\JOURNAL$'
        /// or '.\DEADLETTER$'.
        #[arg(long)]
        queue: String,
        /// Message processing: peek, retrieval or transactional.
        #[arg(long = "type", value_name = "peek|retrieval|transactional")]
        processing: String,
        /// Finish each message's actions before the next (always so for transactional).
        #[arg(long)]
        serialized: bool,
        /// Define it disabled.
        #[arg(long)]
        disabled: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Attach a rule at the end of a trigger's rules.
    Attach {
        /// Trigger name (or id).
        trigger: String,
        /// Rule name (or id).
        rule: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Detach a rule from a trigger.
    Detach {
        /// Trigger name (or id).
        trigger: String,
        /// Rule name (or id).
        rule: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List triggers.
    List(ServerArgs),
    /// Show one trigger, with what it has processed.
    Show(Named),
    /// Delete a trigger.
    Delete(Named),
    /// Enable a trigger (it starts again at the head of its queue).
    Enable(Named),
    /// Disable a trigger.
    Disable(Named),
}

#[derive(clap::Args, Debug)]
struct SendArgs {
    /// Queue name.
    queue: String,
    /// Body text.
    #[arg(long, conflicts_with = "body_file")]
    body: Option<String>,
    /// Read the body from this file.
    #[arg(long)]
    body_file: Option<PathBuf>,
    /// Label.
    #[arg(long)]
    label: Option<String>,
    /// Priority 0-7.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=7))]
    priority: Option<u8>,
    /// Correlation id: guid\ordinal or 40 hex digits.
    #[arg(long)]
    correlation_id: Option<String>,
    /// Send in a single-message transaction (transactional queues).
    #[arg(long)]
    tx: bool,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(clap::Args, Debug)]
struct TakeArgs {
    /// Queue name.
    queue: String,
    /// How long to wait for a message (e.g. 500ms, 1s, 2m).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(clap::Args, Debug)]
struct ReceiveArgs {
    #[command(flatten)]
    take: TakeArgs,
    /// Receive under a transaction (an external one, as MSMQ 4.0 requires remotely).
    #[arg(long)]
    tx: bool,
}

#[derive(clap::Args, Debug)]
struct RecoveryArgs {
    /// Messages in each scenario.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(0..=100_000_000))]
    messages: u64,
    /// Body size in bytes.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(0..=4 * 1024 * 1024))]
    size: u32,
    /// Where the two storage directories go (emptied first).
    #[arg(long, default_value = "./mqemu-recovery-bench")]
    dir: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Skip the history-only scenario (it writes as much log again).
    #[arg(long)]
    no_history: bool,
    /// Only open this storage root, expecting `--messages` messages, and print the open time and
    /// resident memory (the benchmark runs each open in a fresh process this way).
    #[arg(long, hide = true)]
    open_only: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct CrashWorkerArgs {
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

/// How bench messages are sent.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// MQMSG_DELIVERY_EXPRESS, non-transactional queue.
    Express,
    /// MQMSG_DELIVERY_RECOVERABLE, non-transactional queue.
    Recoverable,
    /// Transactional queue: single-message transactions on both sides.
    Transactional,
}

#[derive(clap::Args, Debug)]
struct BenchArgs {
    /// Drive a running server instead of an engine in this process: mqemu://HOST:PORT, or
    /// amqp://USER:PASS@HOST:PORT/VHOST for an AMQP 0-9-1 broker such as RabbitMQ. Give it
    /// more than once to measure several servers in one run, in turn (see --rounds).
    #[arg(long, conflicts_with = "data")]
    target: Vec<String>,
    /// With --target: runs against each target, taken in turn, so machine noise hits all alike;
    /// the report ends with each target's median rate and the first target's rate over each
    /// other's.
    #[arg(long, default_value_t = 1, requires = "target", value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: u32,
    /// Authentication token of an mqemu:// target (or MQEMU_TOKEN).
    #[arg(long, env = "MQEMU_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Producer threads (with --target: connections).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    producers: u32,
    /// Consumer threads (with --target: connections).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    consumers: u32,
    /// Messages to send in all (the run ends when all are received; with --rtt: round trips of
    /// each kind, at most 20000).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    count: u64,
    /// Time cap in seconds of a --target run: sending stops at --count or --secs, whichever
    /// comes first [default: 60].
    #[arg(long, requires = "target", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    secs: Option<u64>,
    /// Sends each --target producer, and receives each consumer, keeps in flight (AMQP:
    /// unconfirmed publishes, and the consumer prefetch).
    #[arg(long, default_value_t = 100, requires = "target", value_parser = clap::value_parser!(u32).range(1..=65_535))]
    window: u32,
    /// Measure round trips one at a time against an mqemu:// --target (express sends and
    /// receives), next to a raw loopback TCP ping-pong of the same size.
    #[arg(long, requires = "target")]
    rtt: bool,
    /// Body size in bytes (at least 8: the send time rides in the body).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(8..=4 * 1024 * 1024))]
    size: u32,
    /// Delivery mode (with a --target, transactional consumers receive without a transaction:
    /// remote transactional receives need an external one).
    #[arg(long, value_enum, default_value_t = Mode::Express)]
    mode: Mode,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Keep the queue on disk in this directory (a durable queue manager) instead of in memory.
    #[arg(long)]
    data: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Serve(a) => report(
            "serve",
            commands::serve::run(commands::serve::Options {
                listen: a.listen,
                data: a.data,
                in_memory: a.in_memory,
                config: a.config,
                compat: a.compat,
            }),
        ),
        Command::Queue(q) => match q {
            QueueCommand::Create {
                path,
                transactional,
                journal,
                quota_kb,
                label,
                server,
            } => report(
                "queue create",
                commands::admin::create(
                    &server.conn(),
                    &path,
                    QueueProps {
                        transactional,
                        journal,
                        quota_kb,
                        label: label.unwrap_or_default(),
                        ..QueueProps::default()
                    },
                ),
            ),
            QueueCommand::List(server) => {
                report("queue list", commands::admin::list(&server.conn()))
            }
            QueueCommand::Show { queue, server } => {
                report("queue show", commands::admin::show(&server.conn(), &queue))
            }
            QueueCommand::Purge { queue, server } => report(
                "queue purge",
                commands::admin::purge(&server.conn(), &queue),
            ),
            QueueCommand::Delete { queue, server } => report(
                "queue delete",
                commands::admin::delete(&server.conn(), &queue),
            ),
        },
        Command::Send(a) => report(
            "send",
            commands::admin::send(
                &a.server.conn(),
                &a.queue,
                commands::admin::SendArgs {
                    body: a.body,
                    body_file: a.body_file,
                    label: a.label,
                    priority: a.priority,
                    correlation_id: a.correlation_id,
                    tx: a.tx,
                },
            ),
        ),
        Command::Peek(a) => report(
            "peek",
            commands::admin::take(&a.server.conn(), &a.queue, a.timeout, false, false),
        ),
        Command::Receive(a) => report(
            "receive",
            commands::admin::take(
                &a.take.server.conn(),
                &a.take.queue,
                a.take.timeout,
                true,
                a.tx,
            ),
        ),
        Command::Stats(a) => report("stats", commands::admin::stats(&a.conn())),
        Command::Rule(r) => {
            use commands::triggers as t;
            match r {
                RuleCommand::Add {
                    name,
                    condition,
                    action,
                    description,
                    server,
                } => report(
                    "rule add",
                    t::rule_add(&server.conn(), &name, &condition, &action, &description),
                ),
                RuleCommand::List(s) => report("rule list", t::rule_list(&s.conn())),
                RuleCommand::Show(n) => {
                    report("rule show", t::rule_show(&n.server.conn(), &n.name))
                }
                RuleCommand::Delete(n) => {
                    report("rule delete", t::rule_delete(&n.server.conn(), &n.name))
                }
            }
        }
        Command::Trigger(c) => {
            use commands::triggers as t;
            match c {
                TriggerCommand::Add {
                    name,
                    queue,
                    processing,
                    serialized,
                    disabled,
                    server,
                } => report(
                    "trigger add",
                    t::trigger_add(
                        &server.conn(),
                        &name,
                        &queue,
                        &processing,
                        serialized,
                        disabled,
                    ),
                ),
                TriggerCommand::Attach {
                    trigger,
                    rule,
                    server,
                } => report(
                    "trigger attach",
                    t::trigger_attach(&server.conn(), &trigger, &rule, true),
                ),
                TriggerCommand::Detach {
                    trigger,
                    rule,
                    server,
                } => report(
                    "trigger detach",
                    t::trigger_attach(&server.conn(), &trigger, &rule, false),
                ),
                TriggerCommand::List(s) => report("trigger list", t::trigger_list(&s.conn())),
                TriggerCommand::Show(n) => {
                    report("trigger show", t::trigger_show(&n.server.conn(), &n.name))
                }
                TriggerCommand::Delete(n) => report(
                    "trigger delete",
                    t::trigger_delete(&n.server.conn(), &n.name),
                ),
                TriggerCommand::Enable(n) => report(
                    "trigger enable",
                    t::trigger_enable(&n.server.conn(), &n.name, true),
                ),
                TriggerCommand::Disable(n) => report(
                    "trigger disable",
                    t::trigger_enable(&n.server.conn(), &n.name, false),
                ),
            }
        }
        Command::Bench(args) => report(
            "bench",
            match &args.target[..] {
                [] => bench(&args),
                targets => commands::netbench::run(&commands::netbench::Options {
                    targets: targets.to_vec(),
                    rounds: args.rounds,
                    token: args.token.clone(),
                    producers: args.producers,
                    consumers: args.consumers,
                    count: args.count,
                    secs: Duration::from_secs(args.secs.unwrap_or(60)),
                    size: args.size as usize,
                    mode: match args.mode {
                        Mode::Express => commands::netbench::Mode::Express,
                        Mode::Recoverable => commands::netbench::Mode::Recoverable,
                        Mode::Transactional => commands::netbench::Mode::Transactional,
                    },
                    window: args.window,
                    json: args.json,
                    rtt: args.rtt,
                }),
            },
        ),
        Command::BenchRecovery(args) => report(
            "bench-recovery",
            match &args.open_only {
                Some(root) => commands::recovery::open_only(root, args.messages),
                None => commands::recovery::run(&commands::recovery::Options {
                    messages: args.messages,
                    size: args.size as usize,
                    dir: args.dir,
                    json: args.json,
                    no_history: args.no_history,
                }),
            },
        ),
        Command::CrashWorker(args) => report(
            "crash-worker",
            commands::crash_worker::run(&args.data, args.senders, args.receivers, args.base),
        ),
        Command::EchoWorker(args) => report(
            "echo-worker",
            commands::netbench::echo_worker(args.size, args.cpu),
        ),
    }
}

fn report(what: &str, result: mqemu::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The MSMQ error name first, so scripts can match on it.
            eprintln!("mqemu {what}: {}: {}", e.code().name(), e.detail());
            ExitCode::FAILURE
        }
    }
}

fn bench(args: &BenchArgs) -> mqemu::Result<()> {
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
    let payload_len = args.size as usize;

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

/// The share of `total` for worker `i` of `n` (the first ones take the remainder).
fn share_of(total: u64, n: u32, i: u32) -> u64 {
    let n = u64::from(n);
    let i = u64::from(i);
    total / n + u64::from(i < total % n)
}
