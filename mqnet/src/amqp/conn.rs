//! One AMQP connection: the handshake (protocol header, `start`/`start-ok` with PLAIN mapped to
//! mqemu's users, `tune`, `open`), then one task that reads frames, runs their methods in order
//! ([`super::methods`]), writes deliveries its consumers hand it, and keeps the heartbeat.
//!
//! **Invariant:** every method of a connection runs on this task in the order it arrived, and a
//! delivery's frames are written whole before anything else on the socket.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{basic, connection, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};
use mqcore::QueueManager;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use super::consume::Delivery;
use super::methods::Channel;
use super::wire::{self, Dialect, FrameReader, ReadError};
use super::AmqpConfig;
use crate::auth::Principal;
use crate::steps::{engine, UntilDurable};

/// AMQP's reply codes (the specification's constants).
pub(crate) mod code {
    pub const NO_ROUTE: u16 = 312;
    pub const CONNECTION_FORCED: u16 = 320;
    pub const ACCESS_REFUSED: u16 = 403;
    pub const NOT_FOUND: u16 = 404;
    pub const PRECONDITION_FAILED: u16 = 406;
    pub const FRAME_ERROR: u16 = 501;
    pub const COMMAND_INVALID: u16 = 503;
    pub const CHANNEL_ERROR: u16 = 504;
    pub const UNEXPECTED_FRAME: u16 = 505;
    pub const RESOURCE_ERROR: u16 = 506;
    pub const NOT_ALLOWED: u16 = 530;
    pub const NOT_IMPLEMENTED: u16 = 540;
    pub const INTERNAL_ERROR: u16 = 541;
}

/// An error that closes a channel (soft) or the whole connection (hard).
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: u16,
    pub(crate) text: String,
    /// The method that failed: class and method ids (0, 0 when none).
    pub(crate) method: (u16, u16),
    /// Whether it closes the connection rather than the channel.
    pub(crate) hard: bool,
}

impl Failure {
    pub(crate) fn channel(code: u16, text: impl Into<String>) -> Failure {
        Failure {
            code,
            text: text.into(),
            method: (0, 0),
            hard: false,
        }
    }

    pub(crate) fn connection(code: u16, text: impl Into<String>) -> Failure {
        Failure {
            hard: true,
            ..Failure::channel(code, text)
        }
    }

    /// An MSMQ error as AMQP's nearest reply code, MSMQ's name in the text.
    pub(crate) fn engine(e: &mqcore::Error) -> Failure {
        use mqcore::ErrorCode as C;
        let code = match e.code() {
            C::QueueNotFound | C::IllegalFormatname | C::IllegalQueuePathname => code::NOT_FOUND,
            C::AccessDenied => code::ACCESS_REFUSED,
            C::QueueExists | C::TransactionUsage | C::InvalidParameter => code::PRECONDITION_FAILED,
            C::InsufficientResources => code::RESOURCE_ERROR,
            _ => code::INTERNAL_ERROR,
        };
        let text = format!("{}: {}", e.code().name(), e.detail());
        Failure::channel(code, text.chars().take(250).collect::<String>())
    }

    pub(crate) fn on(mut self, class: &AMQPClass) -> Failure {
        self.method = (class.get_amqp_class_id(), class.get_amqp_method_id());
        self
    }
}

/// A publisher confirm owed: channel, and the sequence number it covers up to.
pub(crate) type Confirm = (u16, u64);

/// What a connection knows once it is open.
pub(crate) struct Conn {
    pub(crate) qm: QueueManager,
    pub(crate) principal: Principal,
    pub(crate) dialect: Dialect,
    pub(crate) frame_max: u32,
    channel_max: u16,
    /// Frames not yet written.
    pub(crate) out: Vec<u8>,
    pub(crate) channels: HashMap<u16, Channel>,
    /// Where consumer tasks hand their deliveries.
    pub(crate) deliveries: mpsc::Sender<Delivery>,
    /// Where this task takes them from.
    pub(crate) delivered: mpsc::Receiver<Delivery>,
    /// Acknowledged receives not yet committed: committed together, as one transaction, once
    /// the frames that arrived together have run ([`Conn::settle`]).
    pub(crate) settling: Vec<mqcore::Transaction>,
    /// Steps logged but not yet durable (publishes, acknowledged receives), with the publisher
    /// confirm each owes, if any.
    pub(crate) unconfirmed: UntilDurable<Option<Confirm>>,
}

impl Conn {
    pub(crate) fn send(&mut self, channel: u16, method: AMQPClass) {
        wire::encode(
            &AMQPFrame::Method(channel, method),
            self.dialect,
            &mut self.out,
        );
    }

    /// A message's header and body frames, the body cut to the frame size.
    pub(crate) fn send_content(
        &mut self,
        channel: u16,
        properties: basic::AMQPProperties,
        body: &[u8],
    ) {
        wire::encode_content(
            channel,
            properties,
            body,
            self.frame_max,
            self.dialect,
            &mut self.out,
        );
    }
}

fn server_properties() -> FieldTable {
    let mut p = FieldTable::default();
    let text = |s: &str| AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()));
    p.insert("product".into(), text("mqemu"));
    p.insert("version".into(), text(env!("CARGO_PKG_VERSION")));
    p.insert(
        "information".into(),
        text("MSMQ semantics over AMQP: docs/amqp.md"),
    );
    let mut caps = FieldTable::default();
    for c in [
        "publisher_confirms",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "per_consumer_qos",
    ] {
        caps.insert(c.into(), AMQPValue::Boolean(c != "connection.blocked"));
    }
    p.insert("capabilities".into(), AMQPValue::FieldTable(caps));
    p
}

/// PLAIN's response: `\0user\0password`.
fn plain(response: &[u8]) -> Option<(String, String)> {
    let mut parts = response.split(|&b| b == 0);
    let _authzid = parts.next()?;
    let user = String::from_utf8(parts.next()?.to_vec()).ok()?;
    let pass = String::from_utf8(parts.next()?.to_vec()).ok()?;
    Some((user, pass))
}

/// Serves one connection to its end.
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    qm: QueueManager,
    config: Arc<AmqpConfig>,
    mut quit: watch::Receiver<bool>,
) {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    let opened = tokio::time::timeout(
        config.handshake_timeout,
        handshake(&mut rd, &mut wr, &qm, &config),
    )
    .await;
    let (mut conn, mut reader, heartbeat) = match opened {
        Ok(Ok(c)) => c,
        Ok(Err(why)) => {
            tracing::info!(%peer, %why, "AMQP handshake refused");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "AMQP handshake timed out");
            return;
        }
    };
    tracing::debug!(%peer, user = conn.principal.name(), dialect = ?conn.dialect, "AMQP connection open");
    let mut heard = Instant::now();
    let mut beat = tokio::time::interval(heartbeat.unwrap_or(Duration::from_secs(3600)));
    beat.tick().await;
    let end: Result<(), Failure> = loop {
        // One write for everything the frames already read and the deliveries already handed
        // over produce (a pipelining peer costs one system call per batch, not per frame).
        if !conn.out.is_empty() && (!reader.has_frame() || conn.out.len() >= 64 * 1024) {
            let out = std::mem::take(&mut conn.out);
            if wr.write_all(&out).await.is_err() {
                break Ok(());
            }
            conn.out = out;
            conn.out.clear();
        }
        tokio::select! {
            f = reader.next(&mut rd) => {
                heard = Instant::now();
                match f {
                    Ok(frame) => {
                        let more = reader.has_frame();
                        let done = on_frame(&mut conn, frame, more).await;
                        if !more {
                            conn.settle();
                        }
                        match done {
                            Ok(true) => break Ok(()),
                            Ok(false) => {}
                            Err(f) => break Err(f),
                        }
                    }
                    Err(ReadError::Closed) => break Ok(()),
                    Err(ReadError::Io(e)) => {
                        tracing::debug!(%peer, error = %e, "AMQP connection failed");
                        break Ok(());
                    }
                    Err(ReadError::TooLarge(n)) => break Err(Failure::connection(
                        code::FRAME_ERROR,
                        format!("a frame of {n} bytes is over frame_max {}", reader.frame_max),
                    )),
                    Err(ReadError::Malformed(why)) => break Err(Failure::connection(
                        code::FRAME_ERROR,
                        format!("malformed frame: {why}"),
                    )),
                }
            }
            Some(d) = conn.delivered.recv() => {
                // Deliveries under a prefetch limit that are already waiting go out with it, in
                // one write. A consumer without one (Mono's provider keeps the first delivery
                // and cancels) gets one per turn, so the client's cancel is read before a burst
                // it would only hand back.
                let mut limited = d.is_limited();
                conn.deliver(d);
                for _ in 0..255 {
                    if !limited {
                        break;
                    }
                    let Ok(d) = conn.delivered.try_recv() else { break };
                    limited = d.is_limited();
                    conn.deliver(d);
                }
            }
            done = conn.unconfirmed.next(), if !conn.unconfirmed.is_empty() => conn.confirmed(done),
            _ = beat.tick(), if heartbeat.is_some() => {
                let hb = heartbeat.unwrap_or_default();
                if heard.elapsed() > hb * 2 {
                    tracing::info!(%peer, "AMQP peer missed two heartbeats; closing");
                    break Ok(());
                }
                wire::encode(&AMQPFrame::Heartbeat, conn.dialect, &mut conn.out);
            }
            _ = quit.changed() => break Err(Failure::connection(
                code::CONNECTION_FORCED,
                "the server is shutting down",
            )),
        }
    };
    if end.is_ok() && !conn.out.is_empty() {
        // A close-ok, say.
        let _ = wr.write_all(&conn.out).await;
    }
    if let Err(f) = end {
        tracing::info!(%peer, code = f.code, text = %f.text, "AMQP connection closed by the server");
        conn.out.clear();
        conn.send(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
                reply_code: f.code,
                reply_text: ShortString::from(f.text.clone()),
                class_id: f.method.0,
                method_id: f.method.1,
            })),
        );
        let _ = wr.write_all(&conn.out).await;
        // Wait a little for close-ok, reading (and dropping) anything before it.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Ok(f) = reader.next(&mut rd).await {
                if matches!(
                    f,
                    AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)))
                ) {
                    break;
                }
            }
        })
        .await;
    }
    // Acknowledged receives commit; consumers stop; unacknowledged deliveries go back to their
    // queues.
    conn.settle();
    let _ = conn.unconfirmed.drain().await;
    let ids: Vec<u16> = conn.channels.keys().copied().collect();
    for id in ids {
        conn.close_channel(id).await;
    }
    let _ = wr.shutdown().await;
}

type Opened = (Conn, FrameReader, Option<Duration>);

async fn handshake(
    rd: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    qm: &QueueManager,
    config: &AmqpConfig,
) -> Result<Opened, String> {
    let dialect = match wire::read_header(rd).await {
        Ok(d) => d,
        Err(amqp) => {
            // Another version: say which one is spoken here, as the specification asks.
            if amqp {
                let _ = wr.write_all(&wire::HEADER_0_9_1).await;
            }
            return Err("not an AMQP 0-9-1 or 0-8 protocol header".into());
        }
    };
    let (major, minor) = match dialect {
        Dialect::V091 => (0, 9),
        Dialect::V08 => (8, 0),
    };
    let mut out = Vec::new();
    let start = connection::Start {
        version_major: major,
        version_minor: minor,
        server_properties: server_properties(),
        mechanisms: LongString::from(b"PLAIN AMQPLAIN".to_vec()),
        locales: LongString::from(b"en_US".to_vec()),
    };
    wire::encode(
        &AMQPFrame::Method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Start(start)),
        ),
        dialect,
        &mut out,
    );
    wr.write_all(&out).await.map_err(|e| e.to_string())?;
    // Handshake frames are small; the negotiated size applies after tune-ok.
    let mut reader = FrameReader::new(64 * 1024, dialect);
    let expect = |f: Result<AMQPFrame, ReadError>| match f {
        Ok(AMQPFrame::Method(0, AMQPClass::Connection(m))) => Ok(m),
        Ok(other) => Err(format!("unexpected frame in the handshake: {other}")),
        Err(e) => Err(format!("{e:?}")),
    };
    let start_ok = match expect(reader.next(rd).await)? {
        connection::AMQPMethod::StartOk(s) => s,
        m => return Err(format!("expected start-ok, got {m:?}")),
    };
    let credentials = match start_ok.mechanism.as_str() {
        "PLAIN" => plain(start_ok.response.as_bytes()),
        _ => None,
    };
    let principal = match &credentials {
        _ if config.auth.is_open() => Principal::Everyone,
        Some((user, pass)) => match config.auth.login(Some(pass)) {
            Ok(p) if p.name() == user => p,
            _ => {
                let why = format!(
                    "ACCESS_REFUSED - MQ_ERROR_ACCESS_DENIED: login for user {user:?} refused"
                );
                let _ = close_with(wr, dialect, code::ACCESS_REFUSED, &why).await;
                return Err(why);
            }
        },
        None => {
            let why = "ACCESS_REFUSED - only PLAIN authentication is offered here".to_owned();
            let _ = close_with(wr, dialect, code::ACCESS_REFUSED, &why).await;
            return Err(why);
        }
    };
    let heartbeat = u16::try_from(config.heartbeat.as_secs()).unwrap_or(u16::MAX);
    out.clear();
    wire::encode(
        &AMQPFrame::Method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Tune(connection::Tune {
                channel_max: config.channel_max,
                frame_max: config.frame_max,
                heartbeat,
            })),
        ),
        dialect,
        &mut out,
    );
    wr.write_all(&out).await.map_err(|e| e.to_string())?;
    let tune_ok = match expect(reader.next(rd).await)? {
        connection::AMQPMethod::TuneOk(t) => t,
        m => return Err(format!("expected tune-ok, got {m:?}")),
    };
    // The client may ask for less, never more; 0 means "no limit" and takes ours.
    let frame_max = match tune_ok.frame_max {
        0 => config.frame_max,
        n => n
            .min(config.frame_max)
            .max(amq_protocol::protocol::constants::FRAME_MIN_SIZE),
    };
    let channel_max = match tune_ok.channel_max {
        0 => config.channel_max,
        n => n.min(config.channel_max),
    };
    let heartbeat = (tune_ok.heartbeat > 0).then(|| Duration::from_secs(tune_ok.heartbeat.into()));
    match expect(reader.next(rd).await)? {
        connection::AMQPMethod::Open(_) => {}
        m => return Err(format!("expected open, got {m:?}")),
    }
    out.clear();
    wire::encode(
        &AMQPFrame::Method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::OpenOk(connection::OpenOk {})),
        ),
        dialect,
        &mut out,
    );
    wr.write_all(&out).await.map_err(|e| e.to_string())?;
    reader.frame_max = frame_max;
    let (deliveries, delivered) = mpsc::channel(256);
    let conn = Conn {
        qm: qm.clone(),
        principal,
        dialect,
        frame_max,
        channel_max,
        out: Vec::new(),
        channels: HashMap::new(),
        deliveries,
        delivered,
        settling: Vec::new(),
        unconfirmed: UntilDurable::default(),
    };
    Ok((conn, reader, heartbeat))
}

async fn close_with(
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    dialect: Dialect,
    reply_code: u16,
    text: &str,
) -> std::io::Result<()> {
    let mut out = Vec::new();
    wire::encode(
        &AMQPFrame::Method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
                reply_code,
                reply_text: ShortString::from(text.to_owned()),
                class_id: 10,
                method_id: 11,
            })),
        ),
        dialect,
        &mut out,
    );
    wr.write_all(&out).await
}

/// Runs one frame; `Ok(true)` when the connection closed cleanly.
async fn on_frame(conn: &mut Conn, frame: AMQPFrame, more: bool) -> Result<bool, Failure> {
    match frame {
        AMQPFrame::Heartbeat => Ok(false),
        AMQPFrame::Method(0, AMQPClass::Connection(m)) => match m {
            connection::AMQPMethod::Close(_) => {
                conn.send(
                    0,
                    AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {})),
                );
                Ok(true)
            }
            connection::AMQPMethod::CloseOk(_) => Ok(true),
            m => Err(Failure::connection(
                code::COMMAND_INVALID,
                format!("{m:?} after the connection opened"),
            )),
        },
        AMQPFrame::Method(0, m) => {
            Err(Failure::connection(code::COMMAND_INVALID, "a channel method on channel 0").on(&m))
        }
        AMQPFrame::Method(id, m) => {
            conn.method(id, m, more).await?;
            Ok(false)
        }
        AMQPFrame::Header(id, h) => {
            conn.content_header(id, h, more).await?;
            Ok(false)
        }
        AMQPFrame::Body(id, b) => {
            conn.content_body(id, b, more).await?;
            Ok(false)
        }
        AMQPFrame::ProtocolHeader(_) | AMQPFrame::InvalidHeartbeat(_) => Err(Failure::connection(
            code::UNEXPECTED_FRAME,
            "unexpected frame",
        )),
    }
}

impl Conn {
    /// Commits the acknowledged receives gathered so far as one transaction (one log record),
    /// without waiting for the disk: the step finishes in `unconfirmed` with the publishes.
    pub(crate) fn settle(&mut self) {
        let mut txs = std::mem::take(&mut self.settling);
        let Some(first) = txs.pop() else {
            return;
        };
        let commit = move || {
            for t in txs {
                if let Err(e) = first.absorb(&t) {
                    // Not expected (all are this queue manager's internal transactions): it
                    // commits on its own.
                    tracing::warn!(error = %e, "an acknowledged receive could not join the batch");
                    if let Err(e) = t.commit() {
                        tracing::warn!(error = %e, "an acknowledged receive did not commit");
                    }
                }
            }
            if let Err(e) = first.commit() {
                tracing::warn!(error = %e, "acknowledged receives did not commit");
            }
        };
        let ((), steps) = engine(|| mqcore::step::deferred::collect(commit));
        self.owe(steps, None);
    }

    /// Sends the confirms of publishes now durable (a nack where the log failed), each covering
    /// every earlier publish of its channel.
    pub(crate) fn confirmed(&mut self, done: Vec<(Option<Confirm>, mqcore::Result<()>)>) {
        // Confirms are cumulative: of a run of acks on one channel only the last goes out (a
        // pipelining publisher then reads one frame per batch, not one per publish).
        let mut acks: Vec<(u16, u64)> = Vec::new();
        for (confirm, result) in done {
            let Some((id, seq)) = confirm else { continue };
            let pending = acks.iter().position(|&(c, _)| c == id);
            if result.is_ok() {
                match pending {
                    Some(i) => acks[i].1 = seq,
                    None => acks.push((id, seq)),
                }
                continue;
            }
            if let Some(i) = pending {
                let (c, s) = acks.remove(i);
                self.confirm_one(c, s, true);
            }
            self.confirm_one(id, seq, false);
        }
        for (c, s) in acks {
            self.confirm_one(c, s, true);
        }
    }

    /// Acks (or nacks) every publish of channel `id` up to `seq`, if the channel is still open.
    fn confirm_one(&mut self, id: u16, seq: u64, ok: bool) {
        if self.channels.get(&id).is_none_or(|c| c.closing) {
            return;
        }
        let m = if ok {
            basic::AMQPMethod::Ack(basic::Ack {
                delivery_tag: seq,
                multiple: true,
            })
        } else {
            basic::AMQPMethod::Nack(basic::Nack {
                delivery_tag: seq,
                multiple: true,
                requeue: false,
            })
        };
        self.send(id, AMQPClass::Basic(m));
    }

    pub(crate) fn channel_max(&self) -> u16 {
        self.channel_max
    }
}
