//! The `mqemu` command line: parses the arguments and hands them to the command that runs them.
//! Each command's module under `commands/` owns its arguments; the global ones (`--server`,
//! `--token`, `--json`) are `commands::admin::Conn`, accepted before or after the subcommand.

mod commands;

use std::process::ExitCode;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

use commands::admin::{self, Conn};
use commands::{
    capture, cluster, cluster_worker, crash_worker, netbench, ocf, recovery, serve,
    transfer_worker, triggers,
};

/// mqemu: an MSMQ-compatible message queue.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a queue manager and serve it on the network (127.0.0.1:18010, ./mqemu-data).
    Serve(serve::Options),
    /// Run a node of a failover cluster (see `mqemu cluster init`).
    Node(cluster::NodeArgs),
    /// Manage a failover cluster: status, move, online, offline, fail.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// The OCF resource agent of a virtual server run by Pacemaker (ocf:mqemu:vserver):
    /// start, stop, monitor, meta-data, validate-all, with parameters in OCF_RESKEY_*.
    Ocf(ocf::Args),
    /// Manage queues on a server.
    #[command(subcommand)]
    Queue(admin::QueueCommand),
    /// Send a message (body from --body, --body-file or standard input).
    Send(admin::SendArgs),
    /// Show the first message without removing it.
    Peek(admin::TakeArgs),
    /// Remove and show the first message.
    Receive(admin::ReceiveArgs),
    /// Show the server's figures.
    Stats,
    /// Manage MSMQ Triggers rules (conditions and an action) on a server.
    #[command(subcommand)]
    Rule(triggers::RuleCommand),
    /// Manage MSMQ Triggers triggers (a queue, a processing type, rules) on a server.
    #[command(subcommand)]
    Trigger(triggers::TriggerCommand),
    /// Read MSMQ's own binary protocol (MS-MQQB) captures.
    #[command(subcommand)]
    Capture(capture::CaptureCommand),
    /// Measure the engine in this process, or a server over the network (--target): producers
    /// send, consumers receive, from one queue.
    Bench(netbench::Options),
    /// Measure how long a durable queue manager takes to open with many live messages, and with
    /// the same number sent and received (history only).
    BenchRecovery(recovery::Options),
    /// Run a durable workload that reports each acknowledged commit, until killed (crash tests).
    #[command(hide = true)]
    CrashWorker(crash_worker::Args),
    /// Send transactional messages through one server to another, reporting each commit, until
    /// done (transfer kill test).
    #[command(hide = true)]
    TransferWorker(transfer_worker::Args),
    #[command(hide = true)]
    ClusterWorker(cluster_worker::Args),
    /// Echo blocks of --size bytes on one loopback connection (the baseline of bench --rtt).
    #[command(hide = true)]
    EchoWorker(netbench::EchoWorkerArgs),
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli =
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut Cli::command()).exit());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let conn = &cli.conn;
    if let Command::Ocf(a) = &cli.command {
        // OCF's exit codes, not ours.
        return ExitCode::from(ocf::run(a));
    }
    let result = match cli.command {
        Command::Serve(o) => serve::run(o),
        Command::Node(a) => cluster::node(conn, &a),
        Command::Cluster(c) => c.run(conn),
        Command::Ocf(_) => unreachable!("handled above"),
        Command::Queue(q) => q.run(conn),
        Command::Send(a) => admin::send(conn, a),
        Command::Peek(a) => admin::peek(conn, &a),
        Command::Receive(a) => admin::receive(conn, &a),
        Command::Stats => admin::stats(conn),
        Command::Rule(r) => r.run(conn),
        Command::Trigger(t) => t.run(conn),
        Command::Capture(c) => c.run(),
        Command::Bench(o) => netbench::run(o, conn),
        Command::BenchRecovery(o) => recovery::run(&o, conn.json),
        Command::CrashWorker(a) => crash_worker::run(&a),
        Command::TransferWorker(a) => transfer_worker::run(&a),
        Command::ClusterWorker(a) => cluster_worker::run(&a),
        Command::EchoWorker(a) => netbench::echo_worker(&a),
    };
    report(&command_path(&matches), result)
}

/// The subcommand as typed, such as `queue create`: what an error message says failed.
fn command_path(mut matches: &ArgMatches) -> String {
    let mut names = Vec::new();
    while let Some((name, sub)) = matches.subcommand() {
        names.push(name);
        matches = sub;
    }
    names.join(" ")
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
