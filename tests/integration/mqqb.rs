//! `mqemu serve --mqqb`: the MS-MQQB listener and ping responder come up from the command
//! line, a message sent over MSMQ's binary protocol lands in a queue the CLI then reads, and
//! the listener refuses to be open beyond loopback by accident (MS-MQQB has no credentials).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

use mqnet::mqqb::packet::{BaseHeader, ConnectionParameters, EstablishConnection, Ping, INFINITE};
use mqnet::mqqb::user::{user_flags, MessageProperties, QueueFormat, UserHeader, UserMessage};
use mqnet::mqqb::{decode, encode, frame_len, Packet};
use uuid::Uuid;

fn mqemu() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mqemu"))
}

fn write(s: &mut TcpStream, p: Packet) {
    let mut out = Vec::new();
    encode(&p, &mut out);
    s.write_all(&out).unwrap();
}

fn read(s: &mut TcpStream) -> Packet {
    let mut head = [0u8; 16];
    s.read_exact(&mut head).unwrap();
    let mut bytes = vec![0; frame_len(&head).unwrap()];
    bytes[..16].copy_from_slice(&head);
    s.read_exact(&mut bytes[16..]).unwrap();
    decode(&bytes).unwrap()
}

#[test]
fn serve_accepts_msmq_binary_protocol_and_answers_pings() {
    let mut child = mqemu()
        .args(["serve", "--in-memory", "--listen", "127.0.0.1:0"])
        .args(["--mqqb", "127.0.0.1:0", "--mqqb-ping", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut server, mut mqqb, mut ping) = (None, None, None);
    while server.is_none() || mqqb.is_none() || ping.is_none() {
        let line = lines.next().expect("serve prints its addresses").unwrap();
        if let Some(a) = line.strip_prefix("listening on ") {
            server = Some(a.to_owned());
        } else if let Some(a) = line.strip_prefix("mqqb on ") {
            mqqb = Some(a.to_owned());
        } else if let Some(a) = line.strip_prefix("mqqb ping on ") {
            ping = Some(a.to_owned());
        }
    }
    let (server, mqqb, ping) = (server.unwrap(), mqqb.unwrap(), ping.unwrap());
    let out = mqemu()
        .args([
            "queue",
            "create",
            r".\private$\from-windows",
            "--server",
            &server,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    // The ping answers with the queue manager's GUID and the cookie.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let request = Ping {
        flags: 1,
        cookie: 99,
        qm: Uuid::from_u128(1),
    };
    udp.send_to(&request.encode(), &ping).unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = udp.recv_from(&mut buf).unwrap();
    let answer = Ping::decode(&buf[..n]).unwrap();
    assert_eq!(answer.cookie, 99);
    assert!(!answer.qm.is_nil());

    // A session, as a Windows sender opens it with a direct format name, and one message.
    let mut s = TcpStream::connect(&mqqb).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write(
        &mut s,
        Packet::establish_connection(
            EstablishConnection {
                client: Uuid::from_u128(1),
                server: Uuid::nil(),
                timestamp: 1,
                operating_system: 0x0110,
                reserved: 0,
            },
            false,
        ),
    );
    let Packet::EstablishConnection { header, .. } = read(&mut s) else {
        panic!("no EstablishConnection answer")
    };
    assert_eq!(header.server, answer.qm, "the same queue manager GUID");
    write(
        &mut s,
        Packet::connection_parameters(
            ConnectionParameters {
                recoverable_ack_timeout: 1496,
                ack_timeout: 120_000,
                reserved: 0,
                window_size: 64,
            },
            false,
        ),
    );
    assert!(matches!(read(&mut s), Packet::ConnectionParameters { .. }));
    let sent = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    write(
        &mut s,
        Packet::User(Box::new(UserMessage::new(
            BaseHeader {
                reserved: 0,
                flags: 3,
                packet_size: 0,
                time_to_reach_queue: INFINITE,
            },
            UserHeader {
                source_qm: Uuid::from_u128(1),
                destination_qm: Uuid::nil(),
                time_to_be_received: INFINITE,
                sent_time: sent,
                message_id: 1,
                flags: user_flags::RECOVERABLE,
                destination: QueueFormat::Direct(r"OS:linuxbox\private$\from-windows".into()),
                admin: QueueFormat::None,
                response: QueueFormat::None,
                connector_type: None,
            },
            MessageProperties {
                label: "hello from MS-MQQB".into(),
                body: b"binary body".to_vec(),
                ..MessageProperties::default()
            },
        ))),
    );
    let Packet::SessionAck { session, .. } = read(&mut s) else {
        panic!("no SessionAck")
    };
    assert_eq!(
        (session.ack_sequence, session.recoverable_ack_flags),
        (1, 1)
    );
    let out = mqemu()
        .args(["receive", r".\private$\from-windows", "--server", &server])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("binary body"), "{text}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn mqqb_beyond_loopback_needs_allow_open_even_with_users() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "[[user]]\nname = \"app\"\ntoken = \"t0ken\"\nqueues = { \"*\" = [\"send\"] }\n",
    )
    .unwrap();
    let out = mqemu()
        .args(["serve", "--in-memory", "--listen", "127.0.0.1:0"])
        .args(["--mqqb", "0.0.0.0:0", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("MQ_ERROR_INVALID_PARAMETER"), "{err}");
    assert!(err.contains("MS-MQQB"), "{err}");
}
