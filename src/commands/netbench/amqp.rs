//! The AMQP 0-9-1 target (RabbitMQ): publishers in confirm mode, consumers with a prefetch and
//! a manual ack per message, the closest AMQP has to the mqemu modes.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
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
use mqemu::{Error, ErrorCode};
use tokio::sync::mpsc;

use super::load::Shared;
use super::measure::Latencies;
use super::target::AmqpTarget;
use super::{within, Mode, CONNECT_TIMEOUT};

/// A connection to an AMQP broker with one channel open on it.
pub(super) struct AmqpConn {
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
pub(super) async fn open_amqp(t: &AmqpTarget, queue: &str) -> mqemu::Result<AmqpConn> {
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
pub(super) async fn prepare_amqp(t: &AmqpTarget, queue: &str) -> mqemu::Result<()> {
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
pub(super) async fn open_amqp_producer(
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
pub(super) enum Confirm {
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
pub(super) async fn amqp_producer(
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
pub(super) async fn amqp_consumer(
    conn: AmqpConn,
    window: usize,
    shared: &Shared,
) -> mqemu::Result<Latencies> {
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
