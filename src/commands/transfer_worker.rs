//! `mqemu transfer-worker`: a client process that sends transactional messages through one
//! server to a queue on another, reporting each transaction before and after its commit, for the
//! transfer kill test (tests/integration/transfer_kill.rs), which kills the servers under it.
//!
//! Output protocol, one line per event: `TRY <sender> <first> <last>` before a commit is asked
//! for, `SENT <sender> <first> <last>` once it returned `Ok`, `DONE` at the end. Bodies are
//! `<sender>:<seq>`. Sequence numbers are never reused: a transaction whose outcome is unknown
//! (its server died during the commit) may or may not be delivered, but a number is never sent
//! twice, so a duplicate delivery is always the system's fault.

use std::time::{Duration, Instant};

use mqemu::{Message, Result};
use mqnet::{BlockingClient, ClientOptions};

use super::crash_worker::say;

/// How long a worker keeps trying if its servers never come back: every load loop is bounded.
const MAX_RUN: Duration = Duration::from_secs(600);

/// What the transfer kill test starts a worker with.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The server to send through (`host:port`).
    #[arg(long = "via")]
    via: String,
    /// The destination queue, on another computer.
    #[arg(long)]
    dest: String,
    /// This worker's number (the first part of its bodies).
    #[arg(long)]
    sender: u32,
    /// Messages to send.
    #[arg(long)]
    count: u64,
    /// Send recoverable messages one at a time without a transaction (at least once: the test
    /// counts duplicates) instead of transactions of 1 to 10.
    #[arg(long)]
    recoverable: bool,
}

/// Sends `count` messages in transactions of 1 to 10, reconnecting through server restarts.
pub fn run(args: &Args) -> Result<()> {
    let start = Instant::now();
    let mut seq = 0u64;
    let mut next_size = 1 + u64::from(args.sender) % 10;
    let mut client: Option<BlockingClient> = None;
    while seq < args.count {
        if start.elapsed() > MAX_RUN {
            return Err(mqemu::Error::new(
                mqemu::ErrorCode::IoTimeout,
                format!(
                    "gave up after {MAX_RUN:?} with {seq} of {} sent",
                    args.count
                ),
            ));
        }
        let c = match &client {
            Some(c) => c,
            None => match BlockingClient::connect_with(&args.via, &ClientOptions::default()) {
                Ok(c) => client.insert(c),
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            },
        };
        let first = seq;
        let size = if args.recoverable { 1 } else { next_size };
        let last = (seq + size).min(args.count) - 1;
        seq = last + 1;
        next_size = next_size % 10 + 1;
        let attempt = (|| {
            if args.recoverable {
                let body = format!("{}:{first}", args.sender);
                let msg = Message::new(body).with_delivery(mqemu::Delivery::Recoverable);
                say(format!("TRY {} {first} {first}", args.sender));
                return c.send_through(&args.dest, msg, mqnet::Tx::None).map(drop);
            }
            let t = c.begin()?;
            for n in first..=last {
                let body = format!("{}:{n}", args.sender);
                c.send_through(&args.dest, Message::new(body), (&t).into())?;
            }
            say(format!("TRY {} {first} {last}", args.sender));
            t.commit()
        })();
        match attempt {
            Ok(()) => say(format!("SENT {} {first} {last}", args.sender)),
            Err(_) => {
                // Unknown outcome at worst: the numbers are not used again.
                client = None;
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    say("DONE".to_owned());
    Ok(())
}
