//! The mqemu target: a running `mqemu serve` driven over the native protocol, each worker on a
//! connection of its own with many requests in flight.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use mqemu::{Delivery, ErrorCode, Message, QueueProps};
use mqnet::{Client, ClientOptions, RemoteQueue, Tx};

use super::load::Shared;
use super::measure::{Latencies, Watchdog};
use super::{within, Mode, Options, CONNECT_TIMEOUT, RECEIVE_WAIT};

pub(super) async fn connect_mqemu(addr: &str, opts: &Options) -> mqemu::Result<Client> {
    connect(addr, opts, false).await
}

async fn connect(addr: &str, opts: &Options, local: bool) -> mqemu::Result<Client> {
    Client::connect_with(
        addr,
        &ClientOptions {
            token: opts.token.clone(),
            connect_timeout: CONNECT_TIMEOUT,
            local,
            tls: if opts.use_tls { opts.tls.clone() } else { None },
            ..ClientOptions::default()
        },
    )
    .await
}

/// Creates the mode's queue if it is missing and empties it.
pub(super) async fn prepare_mqemu(addr: &str, opts: &Options) -> mqemu::Result<()> {
    prepare_mqemu_queue(&connect_mqemu(addr, opts).await?, opts.mode).await
}

pub(super) async fn prepare_mqemu_queue(client: &Client, mode: Mode) -> mqemu::Result<()> {
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
pub(super) async fn open_mqemu(addr: &str, opts: &Options) -> mqemu::Result<RemoteQueue> {
    let client = connect_mqemu(addr, opts).await?;
    within("open the bench queue", client.open(opts.mode.queue())).await?
}

/// A consumer's connection and the transaction its receives run under. In the transactional
/// mode a consumer receives as MSMQ applications do from a transactional queue on their own
/// computer, each message in a single-message transaction, so the removal is as durable as an
/// AMQP consumer's manual ack: it connects as a local application (MSMQ refuses internal
/// transactional receives from other computers). A server that refuses that (not on this
/// computer) is read without a transaction, and the report says so.
pub(super) async fn open_mqemu_consumer(
    addr: &str,
    opts: &Options,
) -> mqemu::Result<(RemoteQueue, ReceiveTx)> {
    if opts.mode == Mode::Transactional {
        match connect(addr, opts, true).await {
            Ok(client) => {
                let q = within("open the bench queue", client.open(opts.mode.queue())).await??;
                return Ok((q, ReceiveTx::Single));
            }
            Err(e) if e.code() == ErrorCode::AccessDenied => {}
            Err(e) => return Err(e),
        }
    }
    Ok((open_mqemu(addr, opts).await?, ReceiveTx::None))
}

/// How a bench consumer receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ReceiveTx {
    /// Without a transaction.
    None,
    /// Each message in a single-message transaction, as a local application.
    Single,
}

impl ReceiveTx {
    pub(super) fn describe(self) -> &'static str {
        match self {
            ReceiveTx::None => "receive without a transaction",
            ReceiveTx::Single => "single-message transactional receive (local application)",
        }
    }
}

/// A connection of its own to `via` for one producer, sending through it to the mode's queue on
/// the server at `to` (queue-manager transfer).
pub(super) async fn open_mqemu_through(
    via: &str,
    to: &str,
    opts: &Options,
) -> mqemu::Result<RemoteQueue> {
    let client = connect_mqemu(via, opts).await?;
    let queue = opts.mode.queue().trim_start_matches(".\\");
    Ok(client.sender(&format!("DIRECT=TCP:{to}\\{queue}")))
}

/// Sends `share` messages (or until the time cap), `window` at a time; returns send latencies.
pub(super) async fn mqemu_producer(
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
pub(super) async fn mqemu_consumer(
    queue: RemoteQueue,
    tx: ReceiveTx,
    window: usize,
    shared: &Shared,
) -> mqemu::Result<Latencies> {
    let tx = match tx {
        ReceiveTx::None => Tx::None,
        ReceiveTx::Single => Tx::Single,
    };
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
            inflight.push(queue.receive(RECEIVE_WAIT, tx));
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
