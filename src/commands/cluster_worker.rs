//! `mqemu cluster-worker`: a client process that sends or receives transactionally through a
//! virtual server's name while the cluster kill test (tests/integration/cluster_kill.rs) kills
//! the nodes that own it, reporting each transaction before and after its commit.
//!
//! Output, one line per event. Senders: `TRY <body>` before the commit, `SENT <body>` once it
//! returned `Ok`. Receivers (external transactions, as MSMQ requires of a remote transactional
//! receive): `COMMIT <xid> <body>` after the prepare and before the commit is asked for,
//! `GOT <body>` once it returned `Ok`. `DONE` at the end. Bodies are `<worker>:<seq>`, and a
//! number is never sent twice, so a duplicate is always the system's fault.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mqemu::{ErrorCode, Message, Result};
use mqnet::{BlockingClient, ClientOptions};

use super::crash_worker::say;

/// How long a worker keeps going if the cluster never comes back: every load loop is bounded.
const MAX_RUN: Duration = Duration::from_secs(600);

/// What the kill test starts a worker with.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The cluster directory.
    #[arg(long = "dir")]
    dir: PathBuf,
    /// The virtual server's name.
    #[arg(long)]
    name: String,
    /// The queue.
    #[arg(long)]
    queue: String,
    /// This worker's number (the first part of its bodies).
    #[arg(long)]
    id: u32,
    /// Receive instead of send.
    #[arg(long)]
    receive: bool,
    /// Stop once this file exists (receivers: once it exists and the queue gave nothing for a
    /// while).
    #[arg(long)]
    stop_file: PathBuf,
}

/// Sends or receives until told to stop, reconnecting through failovers.
pub fn run(args: &Args) -> Result<()> {
    let start = Instant::now();
    let mut client: Option<BlockingClient> = None;
    let mut seq = 0u64;
    let mut idle_since_stop = 0;
    loop {
        if start.elapsed() > MAX_RUN {
            return Err(mqemu::Error::new(
                ErrorCode::IoTimeout,
                "gave up".to_owned(),
            ));
        }
        let stopping = args.stop_file.exists();
        if stopping && (!args.receive || idle_since_stop >= 3) {
            break;
        }
        let c = match &client {
            Some(c) => c,
            None => match mqemu::cluster::client::connect_by_name(
                &args.dir,
                &args.name,
                &ClientOptions::default(),
            ) {
                Ok(c) => client.insert(c),
                Err(e) => {
                    eprintln!("connecting to {}: {e}", args.name);
                    continue;
                }
            },
        };
        seq += 1;
        let outcome = if args.receive {
            receive_one(c, args, seq).map(|got| {
                if !got && stopping {
                    idle_since_stop += 1;
                }
            })
        } else {
            send_one(c, args, seq)
        };
        if let Err(e) = outcome {
            // Unknown outcome at worst: the number is not used again.
            eprintln!("{e}");
            client = None;
        }
    }
    say("DONE".to_owned());
    Ok(())
}

fn send_one(c: &BlockingClient, args: &Args, seq: u64) -> Result<()> {
    let body = format!("{}:{seq}", args.id);
    let t = c.begin()?;
    c.send(&args.queue, Message::new(body.clone()), (&t).into())?;
    say(format!("TRY {body}"));
    t.commit()?;
    say(format!("SENT {body}"));
    Ok(())
}

/// Whether a message was received.
fn receive_one(c: &BlockingClient, args: &Args, seq: u64) -> Result<bool> {
    let xid = format!("r{}-{seq}", args.id);
    let t = c.begin_external(&xid)?;
    let m = match c.receive(&args.queue, Duration::from_millis(200), (&t).into()) {
        Ok(m) => m,
        Err(e) if e.code() == ErrorCode::IoTimeout => {
            t.abort()?;
            return Ok(false);
        }
        Err(e) => return Err(e),
    };
    let body = String::from_utf8_lossy(&m.body).into_owned();
    t.prepare()?;
    say(format!("COMMIT {xid} {body}"));
    t.commit()?;
    say(format!("GOT {body}"));
    Ok(true)
}
