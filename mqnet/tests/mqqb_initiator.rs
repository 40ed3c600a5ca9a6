//! The MS-MQQB initiator (an outgoing queue whose host the host map sends to `mqqb://...`)
//! against an acceptor scripted from the specification with the codec, so each answer comes
//! exactly when the test says: a message leaves its outgoing queue only on the answer MS-MQQB
//! gives it (a recoverable one when a SessionAck flags its place among the recoverable
//! messages, transactional ones counted in that numbering too; a transactional one on the
//! OrderAck reaching its number), a FinalAck dead-letters the refused message with its class,
//! and the initiator acknowledges the acceptor's own packets.

use std::time::Duration;

use mqcore::message::{Delivery, MessageClass};
use mqcore::{Message, QueueManager, Tx};
use mqnet::mqqb::packet::{
    BaseHeader, ConnectionParameters, EstablishConnection, SessionHeader, INFINITE,
};
use mqnet::mqqb::user::{user_flags, MessageProperties, QueueFormat, UserHeader, UserMessage};
use mqnet::mqqb::{decode, encode, frame_len, Packet};
use mqnet::{TransferConfig, TransferService};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

const ACCEPTOR: Uuid = Uuid::from_u128(0xACCE_0000_0000_0000_0000_0000_0000_0001);

async fn read(s: &mut TcpStream) -> Packet {
    let mut head = [0u8; 16];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut head))
        .await
        .expect("a packet within 10 s")
        .unwrap();
    let mut bytes = vec![0; frame_len(&head).unwrap()];
    bytes[..16].copy_from_slice(&head);
    s.read_exact(&mut bytes[16..]).await.unwrap();
    decode(&bytes).unwrap()
}

async fn write(s: &mut TcpStream, p: Packet) {
    let mut out = Vec::new();
    encode(&p, &mut out);
    s.write_all(&out).await.unwrap();
}

/// Accepts the initiator's session and answers its handshake.
async fn accept(listener: &TcpListener) -> TcpStream {
    let (mut s, _) = listener.accept().await.unwrap();
    let Packet::EstablishConnection { header, .. } = read(&mut s).await else {
        panic!("EstablishConnection first")
    };
    assert!(
        header.server.is_nil(),
        "a direct format name: no server GUID"
    );
    assert_eq!(header.operating_system & 0xFF, 0x10);
    write(
        &mut s,
        Packet::establish_connection(
            EstablishConnection {
                server: ACCEPTOR,
                ..header
            },
            false,
        ),
    )
    .await;
    let Packet::ConnectionParameters { params, .. } = read(&mut s).await else {
        panic!("ConnectionParameters second")
    };
    write(
        &mut s,
        Packet::connection_parameters(
            ConnectionParameters {
                window_size: 64,
                ..params
            },
            false,
        ),
    )
    .await;
    s
}

async fn session_ack(s: &mut TcpStream, received: u16, first: u16, flags: u32, sent: u16) {
    write(
        s,
        Packet::session_ack(SessionHeader {
            ack_sequence: received,
            recoverable_ack_sequence: first,
            recoverable_ack_flags: flags,
            user_sequence: sent,
            recoverable_sequence: 0,
            window_size: 64,
            reserved: 0,
        }),
    )
    .await;
}

/// A user message from the acceptor to the initiator's order queue (MS-MQQB 2.2.4-2.2.5).
fn ordering(class: u16, sequence_id: u64, number: u32, recoverable: bool) -> Packet {
    let mut body = sequence_id.to_le_bytes().to_vec();
    body.extend_from_slice(&number.to_le_bytes());
    body.extend_from_slice(&(number - 1).to_le_bytes());
    body.extend_from_slice(&[0; 20]);
    Packet::User(Box::new(UserMessage::new(
        BaseHeader {
            reserved: 0,
            flags: 0,
            packet_size: 0,
            time_to_reach_queue: INFINITE,
        },
        UserHeader {
            source_qm: ACCEPTOR,
            destination_qm: Uuid::nil(),
            time_to_be_received: INFINITE,
            sent_time: 0,
            message_id: number,
            flags: if recoverable {
                user_flags::RECOVERABLE
            } else {
                0
            },
            destination: QueueFormat::Direct(r"TCP:127.0.0.1\PRIVATE$\order_queue$".into()),
            admin: QueueFormat::None,
            response: QueueFormat::None,
            connector_type: None,
        },
        MessageProperties {
            class,
            label: "QM Ordering Ack".into(),
            body,
            ..MessageProperties::default()
        },
    )))
}

fn outgoing(qm: &QueueManager) -> usize {
    qm.transfer()
        .outgoing()
        .iter()
        .map(|o| o.info().messages)
        .sum()
}

/// Waits until `f` holds (5 s at most).
async fn eventually(what: &str, f: impl Fn() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}");
}

/// It stays false for a while: the initiator has had time to act and did not.
async fn still(what: &str, f: impl Fn() -> bool) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(f(), "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_leave_the_outgoing_queue_only_on_their_own_answer() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let qm = QueueManager::builder()
        .host("winbox", format!("mqqb://127.0.0.1:{port}"))
        .build();
    let transfer = TransferService::start(
        qm.clone(),
        TransferConfig {
            // Answers are awaited for 30 s before the session is given up.
            resend: vec![Duration::from_secs(30)],
            ..TransferConfig::default()
        },
    );
    // One transactional message, then one recoverable one (the sender does not know which
    // kind of queue it is: both go into the same outgoing queue).
    let q = qm.open(r"DIRECT=OS:winbox\private$\orders").unwrap();
    q.send(Message::new("tx"), Tx::Single).unwrap();
    let mut m = Message::new("recoverable");
    m.delivery = Delivery::Recoverable;
    m.label = "second".into();
    q.send(m, Tx::None).unwrap();
    assert_eq!(outgoing(&qm), 2);

    let mut s = accept(&listener).await;
    let Packet::User(tx) = read(&mut s).await else {
        panic!()
    };
    let Packet::User(rec) = read(&mut s).await else {
        panic!()
    };
    let t = tx.transaction.expect("a TransactionHeader");
    assert_eq!((t.sequence_number, t.previous_number), (1, 0));
    assert_eq!(tx.base.priority(), 0);
    assert_eq!(
        tx.user.destination,
        QueueFormat::Direct(r"OS:winbox\private$\orders".into())
    );
    assert_eq!(tx.user.source_qm, qm.guid());
    assert!(rec.transaction.is_none());
    assert!(rec.user.flags & user_flags::RECOVERABLE != 0);
    assert_eq!(rec.properties.label, "second");
    assert_eq!(rec.properties.body, b"recoverable");

    // Both counted, only the first recoverable place (the transactional message) stored: the
    // recoverable message is the second place and stays.
    session_ack(&mut s, 2, 1, 0b01, 0).await;
    still("nothing left: not yet answered", || outgoing(&qm) == 2).await;
    // Its place flagged: it leaves; the transactional one waits for its OrderAck.
    session_ack(&mut s, 2, 2, 0b1, 0).await;
    eventually("the recoverable message left", || outgoing(&qm) == 1).await;
    still("the transactional one waits for its OrderAck", || {
        outgoing(&qm) == 1
    })
    .await;
    write(&mut s, ordering(0x00FF, t.sequence_id, 1, false)).await;
    eventually("the transactional message left", || outgoing(&qm) == 0).await;
    // The initiator acknowledges the acceptor's OrderAck.
    let Packet::SessionAck { session, .. } = read(&mut s).await else {
        panic!("a SessionAck for the OrderAck")
    };
    assert_eq!(session.ack_sequence, 1);
    assert_eq!(session.user_sequence, 2);

    // A refusal: the FinalAck's class dead-letters the message at the sender.
    q.send(Message::new("refused"), Tx::Single).unwrap();
    let Packet::User(m) = read(&mut s).await else {
        panic!()
    };
    let t2 = m.transaction.unwrap();
    assert_eq!((t2.sequence_id, t2.sequence_number), (t.sequence_id, 3));
    assert_eq!(
        t2.previous_number, 1,
        "the number before it in the sequence"
    );
    write(
        &mut s,
        ordering(MessageClass::NACK_BAD_DST_Q.0, t.sequence_id, 3, true),
    )
    .await;
    write(&mut s, ordering(0x00FF, t.sequence_id, 3, false)).await;
    eventually("the refused message left", || outgoing(&qm) == 0).await;
    let dead = qm
        .receive(r".\SYSTEM$;DEADXACT", Duration::from_secs(5), Tx::Single)
        .unwrap();
    assert_eq!(&dead.body[..], b"refused");
    assert_eq!(dead.class(), MessageClass::NACK_BAD_DST_Q);
    // The FinalAck was recoverable: a SessionAck flags it as stored, the last counts both.
    let mut flagged = false;
    loop {
        let Packet::SessionAck { session, .. } = read(&mut s).await else {
            panic!("only SessionAcks from the initiator")
        };
        flagged |= (
            session.recoverable_ack_sequence,
            session.recoverable_ack_flags,
        ) == (1, 1);
        if session.ack_sequence == 3 {
            break;
        }
    }
    assert!(flagged, "the recoverable FinalAck was flagged as stored");
    transfer.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_session_starts_again_from_the_oldest_unanswered_message() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let qm = QueueManager::builder()
        .host("winbox", format!("mqqb://127.0.0.1:{port}"))
        .build();
    let transfer = TransferService::start(
        qm.clone(),
        TransferConfig {
            resend: vec![Duration::from_millis(300)],
            ..TransferConfig::default()
        },
    );
    let q = qm.open(r"DIRECT=OS:winbox\private$\orders").unwrap();
    for i in 0..3 {
        q.send(Message::new(format!("m{i}")), Tx::Single).unwrap();
    }
    let mut s = accept(&listener).await;
    for n in 1..=3 {
        let Packet::User(m) = read(&mut s).await else {
            panic!()
        };
        assert_eq!(m.transaction.unwrap().sequence_number, n);
    }
    // The acceptor answers nothing and the connection is cut.
    drop(s);
    // The next session starts again at the oldest unacknowledged message.
    let mut s = accept(&listener).await;
    let Packet::User(m) = read(&mut s).await else {
        panic!()
    };
    let t = m.transaction.unwrap();
    assert_eq!((t.sequence_number, t.previous_number), (1, 0));
    for _ in 2..=3 {
        read(&mut s).await;
    }
    write(&mut s, ordering(0x00FF, t.sequence_id, 3, false)).await;
    eventually("all three left", || outgoing(&qm) == 0).await;
    transfer.stop();
}
