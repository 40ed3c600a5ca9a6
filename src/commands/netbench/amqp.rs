//! The AMQP 0-9-1 target (RabbitMQ, or mqemu's own AMQP face): publishers in confirm mode,
//! consumers with a prefetch and a manual ack per message, the closest AMQP has to the mqemu
//! modes.
//!
//! The client is the generator's own, over amq-protocol's codec and the frame reader mqemu's
//! AMQP face uses: each worker gathers every frame it has ready (the publishes a window allows,
//! the acks for the deliveries one read brought) into one write, as the native client does.
//! The AMQP client crates write each frame alone (amqprs: one syscall per frame, most of the
//! generator's time in the kernel on a 2-core machine), which measured the client instead of
//! the broker; the same client now drives every AMQP broker alike.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::basic::{self, AMQPProperties};
use amq_protocol::protocol::{channel, confirm, connection, queue, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, LongString};
use mqemu::{Error, ErrorCode};
use mqnet::amqp::wire::{self, Dialect, FrameReader, ReadError};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::load::Shared;
use super::measure::Latencies;
use super::target::AmqpTarget;
use super::{within, Mode, CONNECT_TIMEOUT};

/// The channel every worker uses (one per connection).
const CHANNEL: u16 = 1;
/// The largest frame the client asks for (RabbitMQ's default).
const FRAME_MAX: u32 = 131_072;

/// A connection to an AMQP broker with channel 1 open on it and its queue declared.
pub(super) struct AmqpConn {
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    frames: FrameReader,
    /// Frames not yet written.
    out: Vec<u8>,
    queue: String,
}

/// An AMQP failure on an open connection.
fn amqp_failed(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorCode::ServiceNotAvailable,
        format!("AMQP broker: cannot {what}: {e}"),
    )
}

impl AmqpConn {
    fn send(&mut self, channel: u16, method: AMQPClass) {
        wire::encode(
            &AMQPFrame::Method(channel, method),
            Dialect::V091,
            &mut self.out,
        );
    }

    /// Writes the gathered frames.
    async fn flush(&mut self, what: &str) -> mqemu::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        within(what, self.wr.write_all(&self.out))
            .await?
            .map_err(|e| amqp_failed(what, e))?;
        self.out.clear();
        Ok(())
    }

    /// The next frame; a channel or connection close from the broker is an error with its
    /// reply code and text.
    async fn next(&mut self, what: &str) -> mqemu::Result<AMQPFrame> {
        let frame = self.frames.next(&mut self.rd).await.map_err(|e| {
            let why = match e {
                ReadError::Closed => "the broker closed the connection".to_owned(),
                ReadError::Io(e) => e.to_string(),
                ReadError::TooLarge(n) => format!("a frame of {n} bytes"),
                ReadError::Malformed(m) => m,
            };
            amqp_failed(what, why)
        })?;
        match &frame {
            AMQPFrame::Method(_, AMQPClass::Channel(channel::AMQPMethod::Close(c))) => {
                Err(amqp_failed(
                    what,
                    format!("channel closed: {} {}", c.reply_code, c.reply_text),
                ))
            }
            AMQPFrame::Method(_, AMQPClass::Connection(connection::AMQPMethod::Close(c))) => {
                Err(amqp_failed(
                    what,
                    format!("connection closed: {} {}", c.reply_code, c.reply_text),
                ))
            }
            _ => Ok(frame),
        }
    }

    /// Sends `method` on channel 1 and waits for the broker's answer (nothing else is in
    /// flight while a worker sets up).
    async fn call(&mut self, what: &str, method: AMQPClass) -> mqemu::Result<AMQPClass> {
        self.send(CHANNEL, method);
        self.flush(what).await?;
        loop {
            if let AMQPFrame::Method(_, m) = within(what, self.next(what)).await?? {
                return Ok(m);
            }
        }
    }

    /// Closes the connection (best effort: the run's figures are taken).
    async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            self.send(
                0,
                AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
                    reply_code: 200,
                    reply_text: "bench done".into(),
                    class_id: 0,
                    method_id: 0,
                })),
            );
            self.flush("close").await?;
            loop {
                if let AMQPFrame::Method(
                    0,
                    AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)),
                ) = self.next("close").await?
                {
                    return Ok::<(), Error>(());
                }
            }
        })
        .await;
    }
}

/// The answer `call` expected, or an error naming what came instead.
macro_rules! expect {
    ($answer:expr, $what:expr, $pat:pat => $out:expr) => {
        match $answer {
            $pat => Ok($out),
            other => Err(amqp_failed($what, format!("unexpected answer {other:?}"))),
        }
    };
}

/// Connects, negotiates (PLAIN, no heartbeats), opens channel 1 and declares the durable queue
/// `queue`.
pub(super) async fn open_amqp(t: &AmqpTarget, queue: &str) -> mqemu::Result<AmqpConn> {
    let unreachable = |why: String| {
        Error::new(
            ErrorCode::RemoteMachineNotAvailable,
            format!(
                "cannot reach the AMQP broker at {}:{} (vhost {:?}, user {:?}): {why}",
                t.host, t.port, t.vhost, t.user
            ),
        )
    };
    let stream = tokio::time::timeout(
        CONNECT_TIMEOUT,
        TcpStream::connect((t.host.as_str(), t.port)),
    )
    .await
    .map_err(|_| unreachable("timed out".to_owned()))?
    .map_err(|e| unreachable(e.to_string()))?;
    stream
        .set_nodelay(true)
        .map_err(|e| unreachable(e.to_string()))?;
    let (rd, mut wr) = stream.into_split();
    wr.write_all(&wire::HEADER_0_9_1)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let mut conn = AmqpConn {
        rd,
        wr,
        frames: FrameReader::new(FRAME_MAX, Dialect::V091),
        out: Vec::with_capacity(256 * 1024),
        queue: queue.to_owned(),
    };
    let start = match within("connect", conn.next("connect")).await?? {
        AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Start(s))) => s,
        other => return Err(unreachable(format!("not an AMQP 0-9-1 broker: {other:?}"))),
    };
    if !String::from_utf8_lossy(start.mechanisms.as_bytes())
        .split(' ')
        .any(|m| m == "PLAIN")
    {
        return Err(unreachable("the broker does not offer PLAIN".to_owned()));
    }
    let mut props = FieldTable::default();
    props.insert(
        "product".into(),
        AMQPValue::LongString(LongString::from(b"mqemu-bench".to_vec())),
    );
    let response = format!("\0{}\0{}", t.user, t.password).into_bytes();
    conn.send(
        0,
        AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
            client_properties: props,
            mechanism: "PLAIN".into(),
            response: LongString::from(response),
            locale: "en_US".into(),
        })),
    );
    conn.flush("log in").await?;
    let tune = match within("log in", conn.next("log in")).await?? {
        AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Tune(t))) => t,
        other => return Err(unreachable(format!("login refused: {other:?}"))),
    };
    let frame_max = match tune.frame_max {
        0 => FRAME_MAX,
        n => n.min(FRAME_MAX),
    };
    conn.frames.frame_max = frame_max;
    conn.send(
        0,
        AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
            channel_max: tune.channel_max,
            frame_max,
            heartbeat: 0,
        })),
    );
    conn.send(
        0,
        AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open {
            virtual_host: t.vhost.as_str().into(),
        })),
    );
    conn.flush("open the virtual host").await?;
    match within("open the virtual host", conn.next("open the virtual host")).await?? {
        AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::OpenOk(_))) => {}
        other => return Err(unreachable(format!("vhost refused: {other:?}"))),
    }
    let what = "open a channel";
    let answer = conn
        .call(
            what,
            AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
        )
        .await?;
    expect!(answer, what, AMQPClass::Channel(channel::AMQPMethod::OpenOk(_)) => ())?;
    let what = &format!("declare the durable queue {queue:?}");
    let answer = conn
        .call(
            what,
            AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
                queue: queue.into(),
                passive: false,
                durable: true,
                exclusive: false,
                auto_delete: false,
                nowait: false,
                arguments: FieldTable::default(),
            })),
        )
        .await?;
    expect!(answer, what, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(_)) => ())?;
    Ok(conn)
}

/// Declares the durable queue if missing and purges it.
pub(super) async fn prepare_amqp(t: &AmqpTarget, queue: &str) -> mqemu::Result<()> {
    let mut conn = open_amqp(t, queue).await?;
    let what = &format!("purge {queue:?}");
    let answer = conn
        .call(
            what,
            AMQPClass::Queue(queue::AMQPMethod::Purge(queue::Purge {
                queue: queue.into(),
                nowait: false,
            })),
        )
        .await?;
    expect!(answer, what, AMQPClass::Queue(queue::AMQPMethod::PurgeOk(_)) => ())?;
    conn.close().await;
    Ok(())
}

/// A producer's connection, its channel in confirm mode.
pub(super) async fn open_amqp_producer(t: &AmqpTarget, queue: &str) -> mqemu::Result<AmqpConn> {
    let mut conn = open_amqp(t, queue).await?;
    let what = "turn on publisher confirms";
    let answer = conn
        .call(
            what,
            AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select {
                nowait: false,
            })),
        )
        .await?;
    expect!(answer, what, AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(_)) => ())?;
    Ok(conn)
}

/// Publishes `share` messages (or until the time cap) with up to `window` unconfirmed; returns
/// the publish-to-confirm latencies. The publishes the window allows go out in one write, then
/// the confirms one read brings are settled.
pub(super) async fn amqp_producer(
    mut conn: AmqpConn,
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
    let props = AMQPProperties::default().with_delivery_mode(match mode {
        Mode::Express => 1,
        _ => 2,
    });
    let publish = AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
        exchange: "".into(),
        routing_key: conn.queue.as_str().into(),
        mandatory: false,
        immediate: false,
    }));
    let frame_max = conn.frames.frame_max;
    let mut settle = |frame: AMQPFrame, unconfirmed: &mut BTreeMap<u64, Instant>| {
        let (tag, multiple, ok) = match frame {
            AMQPFrame::Method(_, AMQPClass::Basic(basic::AMQPMethod::Ack(a))) => {
                (a.delivery_tag, a.multiple, true)
            }
            AMQPFrame::Method(_, AMQPClass::Basic(basic::AMQPMethod::Nack(n))) => {
                (n.delivery_tag, n.multiple, false)
            }
            _ => return,
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
    };
    let mut issued = 0;
    let result = async {
        loop {
            while issued < share && unconfirmed.len() < window && shared.may_send() {
                let body = shared.stamped_body(size);
                unconfirmed.insert(next_tag, Instant::now());
                next_tag += 1;
                issued += 1;
                conn.send(CHANNEL, publish.clone());
                wire::encode_content(
                    CHANNEL,
                    props.clone(),
                    &body,
                    frame_max,
                    Dialect::V091,
                    &mut conn.out,
                );
            }
            conn.flush("publish").await?;
            if unconfirmed.is_empty() {
                return Ok(());
            }
            // One frame at least, then every frame that read brought.
            let frame = within("confirm", conn.next("go on publishing")).await??;
            settle(frame, &mut unconfirmed);
            while conn.frames.has_frame() {
                settle(conn.next("go on publishing").await?, &mut unconfirmed);
            }
        }
    }
    .await;
    conn.close().await;
    result.map(|()| latencies)
}

/// A delivery whose content is still arriving.
struct Incoming {
    tag: u64,
    /// The body size its header declared (None until the header frame).
    size: Option<u64>,
    body: Vec<u8>,
}

/// Consumes with prefetch `window` and a manual ack per message until the producers' messages
/// are in; returns end-to-end latencies. The acks for the deliveries one read brought go out
/// in one write.
pub(super) async fn amqp_consumer(
    mut conn: AmqpConn,
    window: usize,
    shared: &Shared,
) -> mqemu::Result<Latencies> {
    let mut latencies = Latencies::new();
    let result = async {
        let what = "set the prefetch (basic.qos)";
        let answer = conn
            .call(
                what,
                AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
                    prefetch_count: u16::try_from(window).unwrap_or(u16::MAX),
                    global: false,
                })),
            )
            .await?;
        expect!(answer, what, AMQPClass::Basic(basic::AMQPMethod::QosOk(_)) => ())?;
        let what = "consume (basic.consume)";
        let answer = conn
            .call(
                what,
                AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
                    queue: conn.queue.as_str().into(),
                    consumer_tag: "".into(),
                    no_local: false,
                    no_ack: false,
                    exclusive: false,
                    nowait: false,
                    arguments: FieldTable::default(),
                })),
            )
            .await?;
        expect!(answer, what, AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(_)) => ())?;
        let mut incoming: Option<Incoming> = None;
        while !shared.consumers_done() {
            // Wake up now and then to see whether the producers are done (the frame reader
            // keeps what a cancelled read brought).
            let Ok(frame) =
                tokio::time::timeout(Duration::from_millis(100), conn.next("go on consuming"))
                    .await
            else {
                continue;
            };
            let mut frame = frame?;
            loop {
                take(frame, &mut incoming, &mut conn, shared, &mut latencies);
                if !conn.frames.has_frame() {
                    break;
                }
                frame = conn.next("go on consuming").await?;
            }
            conn.flush("ack (basic.ack)").await?;
        }
        Ok(())
    }
    .await;
    conn.close().await;
    result.map(|()| latencies)
}

/// Takes one frame of a delivery; a delivery whose body is whole is counted and its ack
/// gathered.
fn take(
    frame: AMQPFrame,
    incoming: &mut Option<Incoming>,
    conn: &mut AmqpConn,
    shared: &Shared,
    latencies: &mut Latencies,
) {
    match frame {
        AMQPFrame::Method(_, AMQPClass::Basic(basic::AMQPMethod::Deliver(d))) => {
            *incoming = Some(Incoming {
                tag: d.delivery_tag,
                size: None,
                body: Vec::new(),
            });
        }
        AMQPFrame::Header(_, h) => {
            if let Some(i) = incoming.as_mut() {
                i.size = Some(h.body_size);
                i.body
                    .reserve(h.body_size.min(u64::from(FRAME_MAX)) as usize);
            }
        }
        AMQPFrame::Body(_, b) => {
            if let Some(i) = incoming.as_mut() {
                i.body.extend_from_slice(&b);
            }
        }
        _ => return,
    }
    let whole =
        matches!(incoming, Some(Incoming { size: Some(n), body, .. }) if body.len() as u64 >= *n);
    if let Some(i) = incoming.take_if(|_| whole) {
        if let Some(ns) = shared.received(&i.body) {
            latencies.record_ns(ns);
        }
        conn.send(
            CHANNEL,
            AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
                delivery_tag: i.tag,
                multiple: false,
            })),
        );
    }
}
