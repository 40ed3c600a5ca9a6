//! AMQP 0-9-1 semantics through amqprs, a Rust client nobody here wrote: publish and get in
//! order, consumers with prefetch, ack, reject and nack with requeue (back at their places),
//! transactions whose publishes and acks commit or roll back together, publisher confirms, and
//! the refusals (unknown exchange, missing queue, unknown delivery tag) with their reply codes.

use std::net::SocketAddr;

type Result<T> = std::result::Result<T, amqprs::error::Error>;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amqprs::callbacks::ChannelCallback;
use amqprs::channel::{
    BasicAckArguments, BasicConsumeArguments, BasicGetArguments, BasicNackArguments,
    BasicPublishArguments, BasicQosArguments, BasicRejectArguments, Channel,
    ConfirmSelectArguments, QueueDeclareArguments,
};
use amqprs::connection::Connection;
use amqprs::{Ack, BasicProperties, Cancel, CloseChannel, Nack, Return};
use mqemu::QueueManager;
use mqnet::amqp::AmqpConfig;

async fn serve(qm: QueueManager) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    super::amqp::serve(qm, AmqpConfig::default()).await
}

/// What the server told a channel on its own: confirms and the reply code it closed with.
#[derive(Default, Clone)]
struct Seen {
    acked: Arc<Mutex<Vec<(u64, bool)>>>,
    closed: Arc<Mutex<Option<(u16, String)>>>,
}

#[async_trait::async_trait]
impl ChannelCallback for Seen {
    async fn close(&mut self, _: &Channel, close: CloseChannel) -> Result<()> {
        *self.closed.lock().unwrap() = Some((close.reply_code(), close.reply_text().clone()));
        Ok(())
    }
    async fn cancel(&mut self, _: &Channel, _: Cancel) -> Result<()> {
        Ok(())
    }
    async fn flow(&mut self, _: &Channel, active: bool) -> Result<bool> {
        Ok(active)
    }
    async fn publish_ack(&mut self, _: &Channel, ack: Ack) {
        self.acked
            .lock()
            .unwrap()
            .push((ack.delivery_tag(), ack.mutiple()));
    }
    async fn publish_nack(&mut self, _: &Channel, nack: Nack) {
        panic!("nack {}", nack.delivery_tag());
    }
    async fn publish_return(&mut self, _: &Channel, _: Return, _: BasicProperties, _: Vec<u8>) {}
}

async fn channel(conn: &Connection) -> (Channel, Seen) {
    let ch = conn.open_channel(None).await.unwrap();
    let seen = Seen::default();
    ch.register_callback(seen.clone()).await.unwrap();
    (ch, seen)
}

async fn publish(ch: &Channel, queue: &str, body: &str) {
    let mut props = BasicProperties::default();
    props.with_persistence(true);
    ch.basic_publish(
        props,
        body.as_bytes().to_vec(),
        BasicPublishArguments::new("", queue),
    )
    .await
    .unwrap();
}

/// `basic.get`: the body and delivery tag, or `None` when the queue is empty.
async fn get(ch: &Channel, queue: &str) -> Option<(String, u64, bool)> {
    let (ok, _, body) = ch.basic_get(BasicGetArguments::new(queue)).await.unwrap()?;
    Some((
        String::from_utf8(body).unwrap(),
        ok.delivery_tag(),
        ok.redelivered(),
    ))
}

async fn bodies(ch: &Channel, queue: &str) -> Vec<String> {
    let mut out = Vec::new();
    while let Some((b, tag, _)) = get(ch, queue).await {
        ch.basic_ack(BasicAckArguments::new(tag, false))
            .await
            .unwrap();
        out.push(b);
    }
    out
}

/// Waits until `f` holds, for what the server says on its own (bounded at 5 s).
/// The next delivery's body and tag (bounded at 5 s).
async fn next(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<amqprs::channel::ConsumerMessage>,
) -> (String, u64) {
    let m = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a delivery")
        .unwrap();
    (
        String::from_utf8(m.content.unwrap()).unwrap(),
        m.deliver.unwrap().delivery_tag(),
    )
}

async fn eventually(mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the condition did not hold within 5 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqprs_gets_amqp_semantics_with_msmq_underneath() {
    let dir = tempfile::tempdir().unwrap();
    let qm = QueueManager::builder().open(dir.path()).unwrap();
    let (addr, _stop) = serve(qm.clone()).await;
    let conn = super::amqp::open(addr, "guest", "guest").await.unwrap();
    let (ch, _) = channel(&conn).await;
    ch.queue_declare(QueueDeclareArguments::durable_client_named("work"))
        .await
        .unwrap();

    // Publish and get, in order; an empty queue answers get-empty.
    for b in ["a", "b", "c"] {
        publish(&ch, "work", b).await;
    }
    let (a, ta, _) = get(&ch, "work").await.unwrap();
    let (b, tb, _) = get(&ch, "work").await.unwrap();
    assert_eq!((a.as_str(), b.as_str()), ("a", "b"));
    // Rejected with requeue, in either order: both back at their places, ahead of "c", marked
    // redelivered (their abort counts were raised).
    ch.basic_reject(BasicRejectArguments::new(tb, true))
        .await
        .unwrap();
    ch.basic_nack(BasicNackArguments::new(ta, false, true))
        .await
        .unwrap();
    let (a, ta, ra) = get(&ch, "work").await.unwrap();
    let (b, _, rb) = get(&ch, "work").await.unwrap();
    let (c, tc, rc) = get(&ch, "work").await.unwrap();
    assert_eq!([a.as_str(), b.as_str(), c.as_str()], ["a", "b", "c"]);
    assert_eq!((ra, rb, rc), (true, true, false));
    assert!(get(&ch, "work").await.is_none());
    // A reject without requeue removes "a"; a nack with `multiple` and requeue gives back
    // every delivery up to its tag ("b" and "c").
    ch.basic_reject(BasicRejectArguments::new(ta, false))
        .await
        .unwrap();
    ch.basic_nack(BasicNackArguments::new(tc, true, true))
        .await
        .unwrap();
    assert_eq!(bodies(&ch, "work").await, ["b", "c"]);

    // A consumer with prefetch 2: two deliveries until one is acknowledged.
    for b in ["1", "2", "3"] {
        publish(&ch, "work", b).await;
    }
    ch.basic_qos(BasicQosArguments::new(0, 2, false))
        .await
        .unwrap();
    let mut args = BasicConsumeArguments::new("work", "c1");
    args.manual_ack(true);
    let (_, mut rx) = ch.basic_consume_rx(args).await.unwrap();
    let (one, t1) = next(&mut rx).await;
    let (two, _) = next(&mut rx).await;
    assert_eq!((one.as_str(), two.as_str()), ("1", "2"));
    ch.basic_ack(BasicAckArguments::new(t1, false))
        .await
        .unwrap();
    let (three, _) = next(&mut rx).await;
    assert_eq!(three, "3");
    // The channel's end gives back what it holds: "2" and "3", at their places.
    ch.close().await.unwrap();
    let (ch, _) = channel(&conn).await;
    assert_eq!(bodies(&ch, "work").await, ["2", "3"]);

    // Transactions: rolled back, publishes vanish and acks are undone; committed, the publish
    // appears and the acknowledged message is gone, together.
    publish(&ch, "work", "held").await;
    ch.tx_select().await.unwrap();
    publish(&ch, "work", "never").await;
    let (held, th, _) = get(&ch, "work").await.unwrap();
    assert_eq!(held, "held");
    ch.basic_ack(BasicAckArguments::new(th, false))
        .await
        .unwrap();
    ch.tx_rollback().await.unwrap();
    publish(&ch, "work", "kept").await;
    ch.basic_ack(BasicAckArguments::new(th, false))
        .await
        .unwrap();
    ch.tx_commit().await.unwrap();
    ch.close().await.unwrap();
    let (ch, _) = channel(&conn).await;
    assert_eq!(bodies(&ch, "work").await, ["kept"]);

    // Publisher confirms: every publish confirmed, in order, once it is durable.
    let (ch, seen) = channel(&conn).await;
    ch.confirm_select(ConfirmSelectArguments::default())
        .await
        .unwrap();
    for i in 0..20 {
        publish(&ch, "work", &format!("m{i}")).await;
    }
    let acked = seen.acked.clone();
    eventually(|| acked.lock().unwrap().last().is_some_and(|&(t, _)| t == 20)).await;
    let acks = seen.acked.lock().unwrap().clone();
    assert!(
        acks.windows(2).all(|w| w[0].0 < w[1].0),
        "confirms in order: {acks:?}"
    );
    assert_eq!(qm.open(r".\private$\work").unwrap().len().unwrap(), 20);

    // Refusals, each closing only its channel with AMQP's reply code.
    let (ch, seen) = channel(&conn).await;
    publish(&ch, "work", "to nowhere").await;
    ch.basic_publish(
        BasicProperties::default(),
        b"x".to_vec(),
        BasicPublishArguments::new("no-such-exchange", "work"),
    )
    .await
    .unwrap();
    let closed = seen.closed.clone();
    eventually(|| closed.lock().unwrap().is_some()).await;
    let (code, text) = seen.closed.lock().unwrap().clone().unwrap();
    assert_eq!(code, 404, "{text}");
    assert!(text.contains("no-such-exchange"), "{text}");

    let (ch, _) = channel(&conn).await;
    let missing = ch
        .queue_declare(QueueDeclareArguments::new("missing").passive(true).finish())
        .await;
    assert!(missing.is_err(), "a passive declare of a missing queue");

    let (ch, seen) = channel(&conn).await;
    ch.basic_ack(BasicAckArguments::new(99, false))
        .await
        .unwrap();
    let closed = seen.closed.clone();
    eventually(|| closed.lock().unwrap().is_some()).await;
    assert_eq!(seen.closed.lock().unwrap().as_ref().unwrap().0, 406);

    // The connection still serves: nothing was lost on the way.
    let (ch, _) = channel(&conn).await;
    let left = bodies(&ch, "work").await;
    assert_eq!(left.len(), 21, "{left:?}");
    assert_eq!(left[0], "m0");
    assert_eq!(left[20], "to nowhere");
    conn.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_without_prefetch_stops_while_its_deliveries_back_up() {
    // More messages than the connection buffers between its consumers and its socket: the
    // consumer is blocked handing one over when it is cancelled, and must still stop.
    let qm = QueueManager::new();
    let (addr, _stop) = serve(qm.clone()).await;
    let q = qm
        .create_queue(r".\private$\many", mqemu::QueueProps::transactional())
        .unwrap();
    let batch = (0..2000)
        .map(|i| mqemu::Message::new(format!("m{i}")))
        .collect();
    q.send_batch(batch, mqemu::Tx::Single);
    let conn = super::amqp::open(addr, "guest", "guest").await.unwrap();
    let (ch, _) = channel(&conn).await;
    let mut args = BasicConsumeArguments::new("many", "c1");
    args.manual_ack(true);
    let (tag, mut rx) = ch.basic_consume_rx(args).await.unwrap();
    let (first, t) = next(&mut rx).await;
    assert_eq!(first, "m0");
    ch.basic_ack(BasicAckArguments::new(t, false))
        .await
        .unwrap();
    tokio::time::timeout(
        Duration::from_secs(20),
        ch.basic_cancel(amqprs::channel::BasicCancelArguments::new(&tag)),
    )
    .await
    .expect("the cancel is answered")
    .unwrap();
    tokio::time::timeout(Duration::from_secs(20), ch.close())
        .await
        .expect("the close is answered")
        .unwrap();
    // Everything but the acknowledged one is back, in order.
    let (ch, _) = channel(&conn).await;
    let left = bodies(&ch, "many").await;
    assert_eq!(left.len(), 1999);
    assert!(left.iter().zip(1..).all(|(b, i)| *b == format!("m{i}")));
    conn.close().await.unwrap();
}
