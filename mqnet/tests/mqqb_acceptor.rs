//! The MS-MQQB acceptor against a sender written from the specification with the codec (as a
//! Windows queue manager would behave): the session handshake and its refusal, express and
//! recoverable messages stored with every property and acknowledged by SessionAcks, transactional
//! messages taken exactly once and in order with OrderAcks (resends and gaps included) and
//! FinalAcks for refusals, a malformed packet closing only its own session, what was
//! acknowledged surviving a restart, and the UDP ping.

use std::net::SocketAddr;
use std::time::Duration;

use mqcore::message::{Acknowledge, Delivery, JournalFlags, MessageClass, MessageId};
use mqcore::{QueueManager, QueueProps, Tx};
use mqnet::binary::{answer_pings, MqqbConfig, MqqbServer};
use mqnet::mqqb::packet::{
    self, BaseHeader, ConnectionParameters, EstablishConnection, Ping, SessionHeader,
};
use mqnet::mqqb::user::{
    user_flags, MessageProperties, QueueFormat, TransactionHeader, UserHeader, UserMessage,
};
use mqnet::mqqb::{decode, encode, frame_len, Packet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;

const SENDER: Uuid = Uuid::from_u128(0x5573_58d1_9150_9595_4997_b6e6_11ea_26c6);

async fn serve(qm: QueueManager) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let server = MqqbServer::bind("127.0.0.1:0", qm, MqqbConfig::default())
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// A sender's end of a session.
struct Sender {
    stream: Option<TcpStream>,
    next_id: u32,
}

impl Sender {
    fn stream(&mut self) -> &mut TcpStream {
        self.stream.as_mut().expect("a connected sender")
    }

    async fn write(&mut self, p: Packet) {
        let mut out = Vec::new();
        encode(&p, &mut out);
        self.stream().write_all(&out).await.unwrap();
    }

    /// The next packet, or None once the acceptor closed the connection.
    async fn read(&mut self) -> Option<Packet> {
        let mut head = [0u8; 16];
        tokio::time::timeout(Duration::from_secs(10), self.stream().read_exact(&mut head))
            .await
            .expect("an answer within 10 s")
            .ok()?;
        let mut bytes = vec![0; frame_len(&head).unwrap()];
        bytes[..16].copy_from_slice(&head);
        self.stream().read_exact(&mut bytes[16..]).await.unwrap();
        Some(decode(&bytes).unwrap())
    }

    async fn connect(addr: SocketAddr, server: Uuid) -> (Sender, Option<Packet>) {
        let stream = TcpStream::connect(addr).await.unwrap();
        let mut s = Sender {
            stream: Some(stream),
            next_id: 1,
        };
        s.write(Packet::establish_connection(
            EstablishConnection {
                client: SENDER,
                server,
                timestamp: 501_140_046,
                operating_system: 0x0310,
                reserved: 0,
            },
            false,
        ))
        .await;
        let answer = s.read().await;
        (s, answer)
    }

    /// Connects and completes the handshake (window 64, the spec example's timeouts).
    async fn open(addr: SocketAddr) -> Sender {
        let (mut s, answer) = Sender::connect(addr, Uuid::nil()).await;
        assert!(matches!(answer, Some(Packet::EstablishConnection { .. })));
        s.write(Packet::connection_parameters(
            ConnectionParameters {
                recoverable_ack_timeout: 1496,
                ack_timeout: 120_000,
                reserved: 0,
                window_size: 64,
            },
            false,
        ))
        .await;
        assert!(matches!(
            s.read().await,
            Some(Packet::ConnectionParameters { .. })
        ));
        s
    }

    fn message(&mut self, queue: &str, body: &str) -> UserMessage {
        self.next_id += 1;
        UserMessage::new(
            BaseHeader {
                reserved: 0,
                flags: 3,
                packet_size: 0,
                time_to_reach_queue: INFINITE_TTRQ,
            },
            UserHeader {
                source_qm: SENDER,
                destination_qm: Uuid::nil(),
                time_to_be_received: packet::INFINITE,
                sent_time: now(),
                message_id: self.next_id,
                flags: 0,
                destination: QueueFormat::Direct(format!(r"OS:winbox\private$\{queue}")),
                admin: QueueFormat::None,
                response: QueueFormat::None,
                connector_type: None,
            },
            MessageProperties {
                label: format!("label {body}"),
                body_type: 8,
                body: body.as_bytes().to_vec(),
                allocation_body_size: body.len() as u32,
                ..MessageProperties::default()
            },
        )
    }

    fn transactional(&mut self, queue: &str, body: &str, seq: (u64, u32, u32)) -> UserMessage {
        let mut m = self.message(queue, body);
        m.base.flags = 0;
        m.user.flags |= user_flags::RECOVERABLE;
        m.transaction = Some(TransactionHeader {
            flags: 0x0C,
            sequence_id: seq.0,
            sequence_number: seq.1,
            previous_number: seq.2,
            connector_qm: None,
        });
        m
    }

    async fn send(&mut self, m: UserMessage) {
        self.write(Packet::User(Box::new(m))).await;
    }

    /// Reads until a SessionAck counts `n` packets received, returning the user messages sent
    /// before it.
    async fn until_received(&mut self, n: u16) -> Vec<UserMessage> {
        let mut users = Vec::new();
        loop {
            let (ack, mut more) = self.until_session_ack().await;
            users.append(&mut more);
            if ack.ack_sequence >= n {
                return users;
            }
        }
    }

    /// Reads until a SessionAck, returning it and the user messages before it.
    async fn until_session_ack(&mut self) -> (SessionHeader, Vec<UserMessage>) {
        let mut users = Vec::new();
        loop {
            match self.read().await.expect("the session is open") {
                Packet::SessionAck { session, .. } => return (session, users),
                Packet::User(m) => users.push(*m),
                other => panic!("{other:?}"),
            }
        }
    }
}

const INFINITE_TTRQ: u32 = packet::INFINITE;

/// Seconds since 1970, as UserHeader.SentTime has them.
fn now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32
}

fn order_ack(m: &UserMessage) -> (u64, u32, u32) {
    assert_eq!(m.properties.class, 0x00FF);
    assert_eq!(m.properties.label, "QM Ordering Ack");
    assert_eq!(m.properties.body.len(), 36);
    assert_eq!(
        m.user.destination,
        QueueFormat::Direct(r"TCP:127.0.0.1\PRIVATE$\order_queue$".into())
    );
    let b = &m.properties.body;
    (
        u64::from_le_bytes(b[0..8].try_into().unwrap()),
        u32::from_le_bytes(b[8..12].try_into().unwrap()),
        u32::from_le_bytes(b[12..16].try_into().unwrap()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handshake_answers_as_the_spec_says_and_refuses_another_queue_manager() {
    let qm = QueueManager::new();
    let (addr, _stop) = serve(qm.clone()).await;
    let (_s, answer) = Sender::connect(addr, Uuid::nil()).await;
    let Some(Packet::EstablishConnection {
        base,
        internal,
        header,
    }) = answer
    else {
        panic!("{answer:?}")
    };
    assert!(base.is_internal());
    assert_eq!(base.packet_size, 572);
    assert!(!internal.refused());
    assert_eq!(header.client, SENDER);
    assert_eq!(header.server, qm.guid());
    assert_eq!(header.timestamp, 501_140_046);
    // RE 0x10 and SE echoed.
    assert_eq!(header.operating_system, 0x0110);

    // Asked for by its own GUID: accepted too.
    let (_s, answer) = Sender::connect(addr, qm.guid()).await;
    assert!(
        matches!(answer, Some(Packet::EstablishConnection { internal, .. }) if !internal.refused())
    );

    // Another queue manager's GUID: refused (CS set), then closed.
    let (mut s, answer) = Sender::connect(addr, Uuid::from_u128(77)).await;
    let Some(Packet::EstablishConnection { internal, .. }) = answer else {
        panic!("{answer:?}")
    };
    assert!(internal.refused());
    assert!(s.read().await.is_none(), "closed after the refusal");

    // The parameters: both timeouts echoed, the acceptor's window.
    let mut s = Sender::open(addr).await;
    let m = s.message("nowhere", "x");
    s.send(m).await;
    let (ack, _) = s.until_session_ack().await;
    assert_eq!(ack.ack_sequence, 1);
    assert_eq!(ack.window_size, MqqbConfig::default().window);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn express_and_recoverable_messages_arrive_with_their_properties() {
    let dir = tempfile::tempdir().unwrap();
    let qm = QueueManager::builder().open(dir.path()).unwrap();
    qm.create_queue(r".\private$\orders", QueueProps::default())
        .unwrap();
    let (addr, _stop) = serve(qm.clone()).await;
    let mut s = Sender::open(addr).await;

    let mut express = s.message("orders", "express body");
    express.base.flags = 5; // priority 5
    express.properties.app_tag = 42;
    express.properties.correlation_id = [7; 20];
    express.properties.ack_flags = 0x05; // full reach queue
    express.user.admin = QueueFormat::Direct(r"TCP:10.1.2.3\private$\admin".into());
    express.user.response = QueueFormat::SameAsAdmin;
    express.user.flags |= user_flags::JOURNAL_NEGATIVE;
    express.user.time_to_be_received = 3600;
    let (id, sent) = (express.user.message_id, express.user.sent_time);
    s.send(express).await;
    let mut recoverable = Vec::new();
    for i in 0..40 {
        let mut m = s.message("orders", &format!("recoverable {i}"));
        m.user.flags |= user_flags::RECOVERABLE;
        recoverable.push(m);
    }
    for m in recoverable {
        s.send(m).await;
    }
    // Every packet counted; the 40 recoverable ones flagged as stored, 32 per SessionAck.
    let mut flagged = 0;
    let mut last = SessionHeader::default();
    while last.ack_sequence < 41 || flagged < 40 {
        let (ack, users) = s.until_session_ack().await;
        assert!(users.is_empty());
        if ack.recoverable_ack_flags != 0 {
            assert_eq!(ack.recoverable_ack_sequence as u32, flagged + 1, "{ack:?}");
            flagged += ack.recoverable_ack_flags.count_ones();
        }
        last = ack;
    }
    assert_eq!((last.ack_sequence, flagged), (41, 40));

    let got = qm
        .receive(r".\private$\orders", Duration::from_secs(1), Tx::None)
        .unwrap();
    assert_eq!(&got.body[..], b"express body");
    assert_eq!(got.label, "label express body");
    assert_eq!(got.priority, 5);
    assert_eq!(got.app_specific, 42);
    assert_eq!(got.body_type, 8);
    assert_eq!(got.correlation_id, Some(MessageId([7; 20])));
    assert_eq!(got.acknowledge, Acknowledge::FULL_REACH_QUEUE);
    assert_eq!(got.journal, JournalFlags::DEADLETTER);
    assert_eq!(got.delivery, Delivery::Express);
    assert_eq!(got.time_to_be_received, Some(Duration::from_secs(3600)));
    assert_eq!(got.id(), MessageId::new(SENDER, id));
    assert_eq!(got.source_machine(), SENDER);
    assert_eq!(got.class(), MessageClass::NORMAL);
    assert_eq!(got.sent_time().0 / 1000, u64::from(sent));
    let admin = got.admin_queue.as_ref().unwrap().to_string();
    assert_eq!(admin.to_lowercase(), r"direct=tcp:10.1.2.3\private$\admin");
    assert_eq!(got.response_queue, got.admin_queue);
    for i in 0..40 {
        let m = qm
            .receive(r".\private$\orders", Duration::ZERO, Tx::None)
            .unwrap();
        assert_eq!(m.body, format!("recoverable {i}").into_bytes());
        assert_eq!(m.delivery, Delivery::Recoverable);
    }
    // Resent (the sender did not see the SessionAck): recognized by its id, not stored twice.
    let mut again = s.message("orders", "recoverable 0");
    again.user.message_id = id + 1;
    again.user.flags |= user_flags::RECOVERABLE;
    s.send(again).await;
    s.until_session_ack().await;
    assert!(qm
        .receive(r".\private$\orders", Duration::ZERO, Tx::None)
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_messages_are_taken_once_in_order_with_order_acks() {
    let dir = tempfile::tempdir().unwrap();
    let qm = QueueManager::builder().open(dir.path()).unwrap();
    qm.create_queue(r".\private$\tx", QueueProps::transactional())
        .unwrap();
    qm.create_queue(r".\private$\plain", QueueProps::default())
        .unwrap();
    let (addr, _stop) = serve(qm.clone()).await;
    let mut s = Sender::open(addr).await;
    let seq = 0x0000_0001_4411_05E6;
    for n in 1..=5 {
        let m = s.transactional("tx", &format!("m{n}"), (seq, n, n - 1));
        s.send(m).await;
    }
    let mut acked = 0;
    while acked < 5 {
        let (_, users) = s.until_session_ack().await;
        for u in &users {
            let (id, n, prev) = order_ack(u);
            assert_eq!((id, prev), (seq, n - 1));
            assert!(n > acked);
            acked = n;
        }
    }
    // A resend of 3..=5 after a cut session: duplicates, acknowledged again, not stored.
    let mut s = Sender::open(addr).await;
    for n in 3..=5 {
        let m = s.transactional("tx", &format!("m{n}"), (seq, n, n - 1));
        s.send(m).await;
    }
    let users = s.until_received(3).await;
    assert_eq!(order_ack(users.last().unwrap()).1, 5);
    // A message whose predecessor never came: not stored, not acknowledged.
    let m = s.transactional("tx", "m8", (seq, 8, 7));
    s.send(m).await;
    let users = s.until_received(4).await;
    assert!(users.is_empty(), "{users:?}");
    // 6 and 7 arrive: 8 can follow.
    for n in 6..=8 {
        let m = s.transactional("tx", &format!("m{n}"), (seq, n, n - 1));
        s.send(m).await;
    }
    let users = s.until_received(7).await;
    assert_eq!(order_ack(users.last().unwrap()).1, 8);
    for n in 1..=8 {
        let m = qm
            .receive(r".\private$\tx", Duration::ZERO, Tx::Single)
            .unwrap();
        assert_eq!(m.body, format!("m{n}").into_bytes(), "in order, once");
    }
    assert!(qm
        .receive(r".\private$\tx", Duration::ZERO, Tx::Single)
        .is_err());

    // Refusals: a queue that does not exist, a non-transactional queue. Each gets a FinalAck
    // with MSMQ's NACK class, and an OrderAck for its number, which is consumed. (A sender
    // keeps a sequence per destination queue, as it keeps an outgoing queue per destination.)
    let seq2 = seq + 1;
    let missing = s.transactional("missing", "lost", (seq2, 1, 0));
    let missing_id = missing.user.message_id;
    s.send(missing).await;
    let plain = s.transactional("plain", "wrong queue", (seq2, 1, 0));
    s.send(plain).await;
    // A new sequence for a destination starts at 1 after 0.
    let ok = s.transactional("tx", "after", (seq2, 1, 0));
    s.send(ok).await;
    let mut finals = Vec::new();
    let mut order_acks = 0;
    for u in s.until_received(10).await {
        if u.properties.class == 0x00FF {
            assert_eq!(order_ack(&u), (seq2, 1, 0));
            order_acks += 1;
        } else {
            finals.push(u);
        }
    }
    assert_eq!(order_acks, 3);
    assert_eq!(finals.len(), 2);
    assert_eq!(finals[0].properties.class, MessageClass::NACK_BAD_DST_Q.0);
    assert_eq!(
        finals[1].properties.class,
        MessageClass::NACK_NOT_TRANSACTIONAL_Q.0
    );
    assert!(finals[0].user.flags & user_flags::RECOVERABLE != 0);
    let b = &finals[0].properties.body;
    assert_eq!(u64::from_le_bytes(b[0..8].try_into().unwrap()), seq2);
    assert_eq!(u32::from_le_bytes(b[8..12].try_into().unwrap()), 1);
    assert_eq!(Uuid::from_bytes_le(b[16..32].try_into().unwrap()), SENDER);
    assert_eq!(
        u32::from_le_bytes(b[32..36].try_into().unwrap()),
        missing_id
    );
    let m = qm
        .receive(r".\private$\tx", Duration::ZERO, Tx::Single)
        .unwrap();
    assert_eq!(&m.body[..], b"after");
    assert!(qm
        .receive(r".\private$\plain", Duration::ZERO, Tx::None)
        .is_err());

    // What was acknowledged is durable: reopened, the sequence still knows 8 was taken.
    drop(s);
    drop(_stop);
    drop(qm);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let qm = QueueManager::builder().open(dir.path()).unwrap();
    let (addr, _stop) = serve(qm.clone()).await;
    let mut s = Sender::open(addr).await;
    let m = s.transactional("tx", "m8 again", (seq, 8, 7));
    s.send(m).await;
    let users = s.until_received(1).await;
    assert_eq!(order_ack(&users[0]).1, 8);
    assert!(qm
        .receive(r".\private$\tx", Duration::ZERO, Tx::Single)
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_packet_closes_only_its_own_session() {
    let qm = QueueManager::new();
    qm.create_queue(r".\private$\q", QueueProps::default())
        .unwrap();
    let (addr, _stop) = serve(qm.clone()).await;
    let mut good = Sender::open(addr).await;
    // Before the handshake, after it, and in the wrong state.
    let mut bad = TcpStream::connect(addr).await.unwrap();
    bad.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(bad.read(&mut buf).await.unwrap(), 0, "closed");
    let mut s = Sender::open(addr).await;
    let mut out = Vec::new();
    let m = s.message("q", "never stored");
    encode(&Packet::User(Box::new(m)), &mut out);
    out[4] = b'X'; // the signature
    s.stream().write_all(&out).await.unwrap();
    assert!(s.read().await.is_none(), "closed");
    let mut s = Sender::open(addr).await;
    s.write(Packet::connection_parameters(
        ConnectionParameters {
            recoverable_ack_timeout: 1496,
            ack_timeout: 120_000,
            reserved: 0,
            window_size: 64,
        },
        false,
    ))
    .await;
    assert!(
        s.read().await.is_none(),
        "closed: parameters on an open session"
    );
    // The first session goes on.
    let m = good.message("q", "still fine");
    good.send(m).await;
    let (ack, _) = good.until_session_ack().await;
    assert_eq!(ack.ack_sequence, 1);
    let got = qm
        .receive(r".\private$\q", Duration::ZERO, Tx::None)
        .unwrap();
    assert_eq!(&got.body[..], b"still fine");
    assert!(qm
        .receive(r".\private$\q", Duration::ZERO, Tx::None)
        .is_err());
}

#[tokio::test]
async fn pings_are_answered_with_the_cookie() {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let at = socket.local_addr().unwrap();
    let guid = Uuid::from_u128(0xABCD);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(answer_pings(socket, guid, async {
        let _ = stopped.await;
    }));
    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let request = Ping {
        flags: packet::PING_RC,
        cookie: 0xC0FFEE,
        qm: SENDER,
    };
    client.send_to(&request.encode(), at).await.unwrap();
    // Not a ping: ignored, no answer.
    client.send_to(b"hello", at).await.unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let answer = Ping::decode(&buf[..n]).unwrap();
    assert_eq!(answer.cookie, 0xC0FFEE);
    assert_eq!(answer.qm, guid);
    assert_eq!(answer.flags, packet::PING_RC, "RC echoed, RF clear");
    drop(stop);
}

/// Resident memory of this process, in bytes.
fn resident() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Open descriptors of this process.
fn descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Malformed sessions, each with what comes before its bad bytes: nothing, or a whole
/// handshake.
fn malformed_table() -> Vec<(bool, Vec<u8>)> {
    let mut s = Sender {
        stream: None,
        next_id: 1,
    };
    let good = |m: UserMessage| {
        let mut out = Vec::new();
        encode(&Packet::User(Box::new(m)), &mut out);
        out
    };
    let user = good(s.message("q", "body"));
    let patch = |at: usize, bytes: &[u8]| {
        let mut b = user.clone();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        b
    };
    let ec = {
        let mut out = Vec::new();
        encode(
            &Packet::establish_connection(
                EstablishConnection {
                    client: SENDER,
                    server: Uuid::nil(),
                    timestamp: 1,
                    operating_system: 0x0110,
                    reserved: 0,
                },
                false,
            ),
            &mut out,
        );
        out
    };
    vec![
        (false, b"GET / HTTP/1.1\r\n\r\n".to_vec()),
        (false, user.clone()),       // a message before the handshake
        (false, ec[..300].to_vec()), // cut inside EstablishConnection
        (true, patch(0, &[0x11])),   // version
        (true, patch(4, b"XIOR")),   // signature
        (true, patch(8, &0x0040_0001u32.to_le_bytes())), // PacketSize past the limit
        (true, patch(8, &19u32.to_le_bytes())), // PacketSize below a packet
        (true, patch(8, &(user.len() as u32 - 4).to_le_bytes())), // shorter than its headers
        (true, patch(64, &u16::MAX.to_le_bytes())), // the name's Count past the packet
        (true, patch(64, &3u16.to_le_bytes())), // an odd Count
        (true, ec.clone()),          // EstablishConnection again
        (true, patch(60, &0u32.to_le_bytes())), // UserHeader.Flags: no properties
        // A header declaring the 4 MiB maximum, then the connection ends.
        (true, patch(8, &0x0040_0000u32.to_le_bytes())[..16].to_vec()),
    ]
}

/// 10,000 malformed sessions, each closed on its own; the server keeps serving, and its
/// memory and descriptors stay flat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_malformed_sessions_leave_memory_and_descriptors_flat() {
    let qm = QueueManager::new();
    qm.create_queue(r".\private$\q", QueueProps::default())
        .unwrap();
    let (addr, _stop) = serve(qm.clone()).await;
    let table = malformed_table();
    let run = |n: usize| {
        let table = table.clone();
        async move {
            for i in 0..n {
                let (handshake, bad) = &table[i % table.len()];
                let mut stream = if *handshake {
                    Sender::open(addr).await.stream.take().unwrap()
                } else {
                    TcpStream::connect(addr).await.unwrap()
                };
                let _ = stream.write_all(bad).await;
                let _ = stream.shutdown().await;
                let mut sink = Vec::new();
                // The acceptor closes: the read ends (with nothing, or an error).
                let _ =
                    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut sink))
                        .await
                        .expect("the session is closed");
            }
        }
    };
    run(1000).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (rss, fds) = (resident(), descriptors());
    run(10_000).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (rss_after, fds_after) = (resident(), descriptors());
    eprintln!(
        "10,000 malformed sessions: resident {} -> {} KiB, descriptors {fds} -> {fds_after}",
        rss / 1024,
        rss_after / 1024
    );
    assert!(
        fds_after <= fds + 4,
        "descriptors grew from {fds} to {fds_after}"
    );
    assert!(
        rss_after <= rss + 8 * 1024 * 1024,
        "resident memory grew from {rss} to {rss_after} bytes"
    );
    // Still serving, and nothing of the malformed sessions was stored.
    let mut s = Sender::open(addr).await;
    let m = s.message("q", "after all that");
    s.send(m).await;
    s.until_received(1).await;
    let got = qm
        .receive(r".\private$\q", Duration::ZERO, Tx::None)
        .unwrap();
    assert_eq!(&got.body[..], b"after all that");
    assert!(qm
        .receive(r".\private$\q", Duration::ZERO, Tx::None)
        .is_err());
}

/// A sender that names the queue by its number on this computer (DQ 3, `PRIVATE=` in MSMQ's
/// format names) reaches it; a number that is no queue here, or another computer's GUID, is
/// refused with NACK_BAD_DST_Q, transactional or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_queues_by_number_are_found_and_unknown_ones_refused() {
    let qm = QueueManager::new();
    qm.create_queue(r".\private$\numbered", QueueProps::transactional())
        .unwrap();
    let id = qm.queue_info(r".\private$\numbered").unwrap().id;
    let (addr, _stop) = serve(qm.clone()).await;
    let mut s = Sender::open(addr).await;
    let seq = 0x0000_0009_0000_0001;
    let mut by_number = s.transactional("ignored", "by number", (seq, 1, 0));
    by_number.user.destination = QueueFormat::PrivateOnDestination(id);
    by_number.user.destination_qm = qm.guid();
    // Its administration queue on the sender's computer, by number there.
    by_number.user.admin = QueueFormat::PrivateOnSource(7);
    s.send(by_number).await;
    let mut unknown = s.transactional("ignored", "no such number", (seq, 1, 0));
    unknown.user.destination = QueueFormat::PrivateOnDestination(id + 100);
    unknown.user.destination_qm = qm.guid();
    s.send(unknown).await;
    let mut elsewhere = s.transactional("ignored", "another computer", (seq, 1, 0));
    elsewhere.user.destination = QueueFormat::PrivateOnDestination(id);
    elsewhere.user.destination_qm = Uuid::from_u128(42);
    s.send(elsewhere).await;
    let users = s.until_received(3).await;
    let finals: Vec<u16> = users
        .iter()
        .map(|u| u.properties.class)
        .filter(|c| *c != 0x00FF)
        .collect();
    assert_eq!(finals, [MessageClass::NACK_BAD_DST_Q.0; 2], "{users:?}");
    let got = qm
        .receive(r".\private$\numbered", Duration::ZERO, Tx::Single)
        .unwrap();
    assert_eq!(&got.body[..], b"by number");
    let admin = got.admin_queue.as_ref().unwrap().to_string().to_lowercase();
    assert_eq!(admin, format!("private={}\\00000007", SENDER.hyphenated()));
    assert!(qm
        .receive(r".\private$\numbered", Duration::ZERO, Tx::Single)
        .is_err());
}

/// A message whose time to reach queue ran out on its way is ignored, as MS-MQMQ 2.2.19.1
/// says; a transactional one's number is consumed (so the next can follow) and the sender gets
/// a FinalAck with NACK_REACH_QUEUE_TIMEOUT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_expired_on_their_way_are_not_stored() {
    let qm = QueueManager::new();
    qm.create_queue(r".\private$\plain", QueueProps::default())
        .unwrap();
    qm.create_queue(r".\private$\tx", QueueProps::transactional())
        .unwrap();
    let (addr, _stop) = serve(qm.clone()).await;
    let mut s = Sender::open(addr).await;
    let mut late = s.message("plain", "too late");
    late.user.sent_time = now() - 100;
    late.base.time_to_reach_queue = 10;
    s.send(late).await;
    let seq = 0x0000_000A_0000_0001;
    let mut late_tx = s.transactional("tx", "too late", (seq, 1, 0));
    late_tx.user.sent_time = now() - 100;
    late_tx.base.time_to_reach_queue = 10;
    s.send(late_tx).await;
    let mut on_time = s.transactional("tx", "on time", (seq, 2, 1));
    on_time.base.time_to_reach_queue = 10;
    s.send(on_time).await;
    let users = s.until_received(3).await;
    let finals: Vec<&UserMessage> = users
        .iter()
        .filter(|u| u.properties.class != 0x00FF)
        .collect();
    assert_eq!(finals.len(), 1, "{users:?}");
    assert_eq!(
        finals[0].properties.class,
        MessageClass::NACK_REACH_QUEUE_TIMEOUT.0
    );
    assert_eq!(order_ack(users.last().unwrap()).1, 2);
    assert!(qm
        .receive(r".\private$\plain", Duration::ZERO, Tx::None)
        .is_err());
    let got = qm
        .receive(r".\private$\tx", Duration::ZERO, Tx::Single)
        .unwrap();
    assert_eq!(&got.body[..], b"on time");
}
