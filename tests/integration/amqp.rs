//! The AMQP face against clients nobody here wrote: pika (Python, Debian's python3-pika) runs
//! tests/amqp/pika_semantics.py (publish, get, consume, ack, reject and requeue order, tx commit
//! and rollback, confirms, refusals), and amqprs (Rust) checks what crosses between AMQP and
//! MSMQ's own API. Bad input: garbage after the protocol header, an oversized frame, a method
//! on a channel never opened, a wrong password, each ending only its own connection. And
//! `mqemu bench`'s own AMQP client, which measures this face and RabbitMQ alike.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use amqprs::channel::{
    BasicAckArguments, BasicGetArguments, BasicPublishArguments, QueueDeclareArguments,
};
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::{BasicProperties, FieldTable, FieldValue};
use mqemu::{Message, QueueManager, Tx};
use mqnet::amqp::{AmqpConfig, AmqpServer};

/// An AMQP listener on 127.0.0.1 for `qm`; dropping the sender stops it.
pub(super) async fn serve(
    qm: QueueManager,
    config: AmqpConfig,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let server = AmqpServer::bind("127.0.0.1:0", qm, config).await.unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// Debian's python3 with pika, or why not (the test then says it skipped, unless
/// MQEMU_REQUIRE_PIKA is set, as CI sets it).
fn pika() -> Option<&'static str> {
    let python = "/usr/bin/python3";
    let ok = std::process::Command::new(python)
        .args(["-c", "import pika"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(python);
    }
    assert!(
        std::env::var_os("MQEMU_REQUIRE_PIKA").is_none(),
        "MQEMU_REQUIRE_PIKA is set but /usr/bin/python3 cannot import pika (apt-get install python3-pika)"
    );
    eprintln!("skipped: /usr/bin/python3 with pika is not installed");
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pika_gets_amqp_semantics_with_msmq_underneath() {
    let Some(python) = pika() else { return };
    let dir = tempfile::tempdir().unwrap();
    // Durable, so acknowledgements are real commits through the log.
    let qm = QueueManager::builder().open(dir.path()).unwrap();
    let (addr, _stop) = serve(qm.clone(), AmqpConfig::default()).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/amqp/pika_semantics.py");
    let port = addr.port().to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .args([script, &port])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("all checks passed"), "{text}");
}

/// A single-message transactional receive from `path` through MSMQ's own API, waiting up to 5 s.
pub(super) async fn receive_within_5s(qm: &QueueManager, path: &'static str) -> Message {
    let qm = qm.clone();
    tokio::task::spawn_blocking(move || qm.receive(path, Duration::from_secs(5), Tx::Single))
        .await
        .unwrap()
        .unwrap()
}

pub(super) async fn open(
    addr: SocketAddr,
    user: &str,
    pass: &str,
) -> Result<Connection, amqprs::error::Error> {
    Connection::open(&OpenConnectionArguments::new(
        "127.0.0.1",
        addr.port(),
        user,
        pass,
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_cross_between_amqp_and_msmqs_own_api() {
    let qm = QueueManager::new();
    let (addr, _stop) = serve(qm.clone(), AmqpConfig::default()).await;
    let conn = open(addr, "guest", "guest").await.unwrap();
    let ch = conn.open_channel(None).await.unwrap();
    ch.queue_declare(QueueDeclareArguments::durable_client_named("crossing"))
        .await
        .unwrap();

    // AMQP to MSMQ: Mono's headers become MSMQ's label, app-specific value and body type.
    let mut headers = FieldTable::new();
    headers.insert(
        "Label".try_into().unwrap(),
        FieldValue::S("from AMQP".try_into().unwrap()),
    );
    headers.insert("AppSpecific".try_into().unwrap(), FieldValue::I(7));
    headers.insert("BodyType".try_into().unwrap(), FieldValue::I(8));
    let mut props = BasicProperties::default();
    props.with_headers(headers).with_persistence(true);
    ch.basic_publish(
        props,
        b"body bytes \x00\x01".to_vec(),
        BasicPublishArguments::new("", "crossing"),
    )
    .await
    .unwrap();
    let path = r".\private$\crossing";
    let got = receive_within_5s(&qm, path).await;
    assert_eq!(got.label, "from AMQP");
    assert_eq!(got.app_specific, 7);
    assert_eq!(got.body_type, 8);
    assert_eq!(&got.body[..], b"body bytes \x00\x01");
    assert!(
        qm.open(path).unwrap().is_transactional(),
        "declared queues are transactional"
    );

    // MSMQ to AMQP: the label and the rest come back as the headers Mono reads.
    let mut m = Message::new("from MSMQ");
    m.label = "label from MSMQ".into();
    m.app_specific = 99;
    qm.send(path, m, Tx::Single).unwrap();
    let (ok, props, body) = ch
        .basic_get(BasicGetArguments::new("crossing"))
        .await
        .unwrap()
        .expect("a message");
    assert_eq!(body, b"from MSMQ");
    let h = props.headers().expect("headers").as_ref();
    let text = |k: &str| match h.get(&k.try_into().unwrap()) {
        Some(FieldValue::S(s)) => AsRef::<String>::as_ref(s).clone(),
        other => panic!("{k}: {other:?}"),
    };
    assert_eq!(text("Label"), "label from MSMQ");
    assert!(matches!(
        h.get(&"AppSpecific".try_into().unwrap()),
        Some(FieldValue::I(99))
    ));
    assert!(props.message_id().is_some());

    // Unacknowledged: locked under its receive's transaction, invisible to MSMQ's receivers;
    // the connection's end gives it back, first in line with its abort count raised.
    assert!(qm
        .receive(path, Duration::ZERO, Tx::Single)
        .is_err_and(|e| e.code() == mqemu::ErrorCode::IoTimeout));
    drop(ok);
    conn.close().await.unwrap();
    let back = receive_within_5s(&qm, path).await;
    assert_eq!(&back.body[..], b"from MSMQ");
    assert_eq!(back.abort_count(), 1);

    // Acknowledged: gone.
    qm.send(path, Message::new("acked"), Tx::Single).unwrap();
    let conn = open(addr, "guest", "guest").await.unwrap();
    let ch = conn.open_channel(None).await.unwrap();
    let (ok, _, _) = ch
        .basic_get(BasicGetArguments::new("crossing"))
        .await
        .unwrap()
        .unwrap();
    ch.basic_ack(BasicAckArguments::new(ok.delivery_tag(), false))
        .await
        .unwrap();
    conn.close().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(qm.open(path).unwrap().len().unwrap(), 0);
}

/// Writes `bytes` after the protocol header and returns what the server answers until it
/// closes (bounded by 5 s).
fn exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"AMQP\x00\x00\x09\x01").unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_ends_only_its_own_connection() {
    let qm = QueueManager::new();
    let users: Vec<mqnet::User> = serde_json::from_value(serde_json::json!([
        {"name": "shop", "token": "s3cret", "queues": {"*": ["send", "receive", "peek", "admin"]}},
    ]))
    .unwrap();
    let config = AmqpConfig {
        auth: mqnet::Auth::new(users),
        frame_max: 8192,
        ..AmqpConfig::default()
    };
    let (addr, _stop) = serve(qm.clone(), config).await;
    // A connection that stays open and working throughout.
    let good = open(addr, "shop", "s3cret").await.unwrap();
    let ch = good.open_channel(None).await.unwrap();
    ch.queue_declare(QueueDeclareArguments::durable_client_named("steady"))
        .await
        .unwrap();

    // Garbage instead of start-ok: closed without an answer beyond connection.start.
    let answer = tokio::task::spawn_blocking(move || exchange(addr, &[0xde; 64]))
        .await
        .unwrap();
    assert_eq!(answer.first(), Some(&1u8), "connection.start first");
    // Another protocol: AMQP's own header answered with ours.
    let other = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"AMQP\x01\x01\x00\x0a").unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    })
    .await
    .unwrap();
    assert_eq!(other, b"AMQP\x00\x00\x09\x01");

    // A wrong password: refused with ACCESS_REFUSED.
    let e = open(addr, "shop", "wrong").await;
    assert!(e.is_err(), "a wrong password was taken");

    // An oversized frame after the handshake: FRAME_ERROR, that connection only.
    let big = tokio::task::spawn_blocking(move || {
        use amq_protocol_frames::*;
        raw_handshake_then(addr, &oversized())
    })
    .await
    .unwrap();
    assert!(
        String::from_utf8_lossy(&big).contains("over frame_max"),
        "{}",
        String::from_utf8_lossy(&big)
    );

    // A method on a channel that was never opened: CHANNEL_ERROR (504) closes that connection.
    let unopened = tokio::task::spawn_blocking(move || {
        use amq_protocol_frames::*;
        raw_handshake_then(addr, &qos_on_channel(7))
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&unopened);
    assert!(text.contains("channel 7 is not open"), "{text}");
    assert!(
        unopened.windows(6).any(|w| w == [0, 10, 0, 50, 0x01, 0xF8]),
        "connection.close with 504: {text}"
    );

    ch.basic_publish(
        BasicProperties::default(),
        b"still here".to_vec(),
        BasicPublishArguments::new("", "steady"),
    )
    .await
    .unwrap();
    let (_, _, body) = ch
        .basic_get(BasicGetArguments::new("steady"))
        .await
        .unwrap()
        .expect("the steady connection still works");
    assert_eq!(body, b"still here");
    good.close().await.unwrap();
}

/// Hand-made frames for the bad-input test (the clients refuse to make bad ones).
mod amq_protocol_frames {
    use super::*;

    fn frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![kind];
        f.extend_from_slice(&channel.to_be_bytes());
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        f.push(0xce);
        f
    }

    fn short(s: &str) -> Vec<u8> {
        let mut v = vec![s.len() as u8];
        v.extend_from_slice(s.as_bytes());
        v
    }

    fn long(b: &[u8]) -> Vec<u8> {
        let mut v = (b.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(b);
        v
    }

    /// start-ok (PLAIN shop/s3cret), tune-ok, open.
    fn handshake() -> Vec<u8> {
        let mut start_ok = vec![0, 10, 0, 11];
        start_ok.extend_from_slice(&0u32.to_be_bytes()); // empty client properties
        start_ok.extend(short("PLAIN"));
        start_ok.extend(long(b"\0shop\0s3cret"));
        start_ok.extend(short("en_US"));
        let mut tune_ok = vec![0, 10, 0, 31];
        tune_ok.extend_from_slice(&0u16.to_be_bytes());
        tune_ok.extend_from_slice(&8192u32.to_be_bytes());
        tune_ok.extend_from_slice(&0u16.to_be_bytes());
        let mut open = vec![0, 10, 0, 40];
        open.extend(short("/"));
        open.extend(short(""));
        open.push(0);
        [
            frame(1, 0, &start_ok),
            frame(1, 0, &tune_ok),
            frame(1, 0, &open),
        ]
        .concat()
    }

    /// A body frame's header declaring 1 MiB, over frame_max.
    pub(super) fn oversized() -> Vec<u8> {
        let mut f = vec![3u8, 0, 1];
        f.extend_from_slice(&(1u32 << 20).to_be_bytes());
        f
    }

    /// basic.qos (prefetch 1) on channel `id`.
    pub(super) fn qos_on_channel(id: u16) -> Vec<u8> {
        let mut qos = vec![0, 60, 0, 10];
        qos.extend_from_slice(&0u32.to_be_bytes());
        qos.extend_from_slice(&1u16.to_be_bytes());
        qos.push(0);
        frame(1, id, &qos)
    }

    pub(super) fn raw_handshake_then(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
        exchange(addr, &[handshake(), bytes.to_vec()].concat())
    }
}

/// `mqemu bench`'s own pipelined AMQP client (the one that measures RabbitMQ and this face)
/// against the AMQP face: every message published is confirmed and consumed once, bodies split
/// across several frames included (300 kB against the default frame_max of 128 KiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bench_client_delivers_every_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let qm = QueueManager::builder().open(dir.path()).unwrap();
    let (addr, _stop) = serve(qm.clone(), AmqpConfig::default()).await;
    let target = format!("amqp://guest:guest@{addr}/%2f");
    for (size, count) in [("64", 3000), ("300000", 40)] {
        let args = [
            "bench",
            "--target",
            &target,
            "--mode",
            "transactional",
            "--window",
            "50",
            "--size",
            size,
            "--count",
            &count.to_string(),
            "--json",
        ]
        .map(str::to_owned);
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_mqemu"))
                .args(args)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let run: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
        assert_eq!(run["sent"], count, "{run}");
        assert_eq!(run["received"], count, "{run}");
    }
    // Every delivery was acknowledged: nothing is left in the queue.
    let left = tokio::task::spawn_blocking(move || {
        qm.receive(r".\private$\bench-tx", Duration::ZERO, Tx::Single)
    })
    .await
    .unwrap();
    assert!(left.is_err(), "{left:?}");
}
