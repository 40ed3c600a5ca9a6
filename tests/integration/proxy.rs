//! `mqemu::testing::FaultyProxy`, the unreliable network for queue-manager-to-queue-manager tests:
//! each fault against a small echo server that records what it received, and a cut in the middle
//! of an `mqnet` frame against a real server. Every wait is a bounded loop on a condition.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use mqemu::testing::{Direction, FaultyProxy};

use crate::support::{eventually, eventually_async};
use mqemu::{Message, QueueManager, QueueProps};
use mqnet::{Client, Server, ServerConfig, Tx};

const Q: &str = r".\private$\orders";

/// Long enough that a read which would hang fails the test instead.
const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// What an echo server connection received, and whether it has ended.
#[derive(Default)]
struct Seen {
    received: Vec<u8>,
    ended: bool,
}

/// An echo server on 127.0.0.1: one thread per connection, each recording what it received.
struct Echo {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<Arc<Mutex<Seen>>>>>,
}

impl Echo {
    fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<Arc<Mutex<Seen>>>>> = Arc::default();
        let all = conns.clone();
        // The accepting thread ends with the test process; each connection's with its peer.
        thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(mut s) = s else { continue };
                let seen = Arc::new(Mutex::new(Seen::default()));
                all.lock().unwrap().push(seen.clone());
                thread::spawn(move || {
                    let mut buf = vec![0; 64 * 1024];
                    loop {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                seen.lock().unwrap().received.extend_from_slice(&buf[..n]);
                                if s.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    seen.lock().unwrap().ended = true;
                });
            }
        });
        Echo { addr, conns }
    }

    fn connections(&self) -> usize {
        self.conns.lock().unwrap().len()
    }

    /// What connection `i` (in accept order) received so far, and whether it ended.
    fn seen(&self, i: usize) -> (Vec<u8>, bool) {
        let conn = self.conns.lock().unwrap()[i].clone();
        let seen = conn.lock().unwrap();
        (seen.received.clone(), seen.ended)
    }
}

/// Polls `done` until it holds; panics naming `what` if it has not within about 20 s.
#[track_caller]
fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    s
}

/// Writes `data` and reads its echo back.
fn round_trip(s: &mut TcpStream, data: &[u8]) {
    s.write_all(data).unwrap();
    let mut echo = vec![0; data.len()];
    s.read_exact(&mut echo).unwrap();
    assert_eq!(echo, data, "the echo differs from what was sent");
}

/// Reads until the peer closes (end of stream or reset) and returns what came first; panics if
/// the connection stays open for `READ_TIMEOUT`.
#[track_caller]
fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                ) =>
            {
                return got
            }
            Err(e) => panic!("the connection was not closed: {e}"),
        }
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn bytes_pass_through_unchanged_both_ways() {
    let echo = Echo::start();
    let proxy = FaultyProxy::start(echo.addr).unwrap();
    let mut c = connect(proxy.addr());
    round_trip(&mut c, b"hello");

    // 4 MiB each way, written by one thread while this one reads the echo.
    let data = pattern(4 << 20);
    let mut writer = c.try_clone().unwrap();
    let sent = data.clone();
    let w = thread::spawn(move || writer.write_all(&sent).unwrap());
    let mut echoed = vec![0; data.len()];
    c.read_exact(&mut echoed).unwrap();
    w.join().unwrap();
    assert!(echoed == data, "4 MiB came back changed");
    let (received, _) = echo.seen(0);
    assert!(
        received[5..] == data[..],
        "the server received changed bytes"
    );

    let total = 5 + data.len() as u64;
    // The proxy counts a write once it returns, which may be after the client has read it.
    eventually("every byte counted", || {
        let s = proxy.stats();
        (s.to_server, s.to_client, s.held_to_server, s.held_to_client) == (total, total, 0, 0)
    });
    let s = proxy.stats();
    assert_eq!((s.accepted, s.open, s.refused, s.cut), (1, 1, 0, 0));

    // A half-close goes through: the server sees the end of the stream, and so does the client.
    c.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(read_until_closed(&mut c).is_empty());
    eventually("the server saw the end", || echo.seen(0).1);
    eventually("the connection closed", || proxy.stats().open == 0);
}

#[test]
fn cut_after_to_server_delivers_exactly_that_many_bytes_then_closes() {
    let echo = Echo::start();
    let proxy = FaultyProxy::start(echo.addr).unwrap();
    let mut c = connect(proxy.addr());
    round_trip(&mut c, b"hello");

    proxy.cut_after(Direction::ToServer, 10);
    let frame = pattern(100);
    c.write_all(&frame).unwrap();
    read_until_closed(&mut c);
    eventually("the server saw the connection end", || echo.seen(0).1);
    let (received, _) = echo.seen(0);
    assert_eq!(received.len(), 5 + 10, "the server received {received:?}");
    assert_eq!(received[5..], frame[..10]);
    let s = proxy.stats();
    assert_eq!((s.cut, s.to_server), (1, 15));
    eventually("the connection closed", || proxy.stats().open == 0);

    // The cut stays armed for new connections, from their first byte, until healed.
    let mut again = connect(proxy.addr());
    again.write_all(&frame).unwrap();
    read_until_closed(&mut again);
    eventually("the second connection ended", || {
        echo.connections() == 2 && echo.seen(1).1
    });
    assert_eq!(echo.seen(1).0, frame[..10]);
    proxy.heal();
    round_trip(&mut connect(proxy.addr()), &frame);
    assert_eq!(proxy.stats().cut, 2);
}

#[test]
fn cut_after_to_client_delivers_exactly_that_many_bytes_then_closes() {
    let echo = Echo::start();
    let proxy = FaultyProxy::start(echo.addr).unwrap();
    let mut c = connect(proxy.addr());
    round_trip(&mut c, b"hello");

    proxy.cut_after(Direction::ToClient, 7);
    let frame = pattern(100);
    c.write_all(&frame).unwrap();
    assert_eq!(read_until_closed(&mut c), frame[..7]);
    let s = proxy.stats();
    assert_eq!((s.cut, s.to_client), (1, 5 + 7));
    eventually("the server saw the connection end", || echo.seen(0).1);
}

/// A request cut in the middle of its frame fails (it does not hang), and the server, which got
/// half a frame, goes on serving new connections.
#[tokio::test]
async fn a_request_cut_mid_frame_fails_and_the_server_stays_healthy() {
    let qm = QueueManager::new();
    let server = Server::bind("127.0.0.1:0", qm.clone(), ServerConfig::default())
        .await
        .unwrap();
    let server_addr = server.local_addr().unwrap();
    let stopper = server.stopper();
    let task = tokio::spawn(server.run());
    let proxy = FaultyProxy::start(server_addr).unwrap();

    let c = Client::connect(&proxy.addr().to_string()).await.unwrap();
    c.create_queue(Q, QueueProps::default()).await.unwrap();
    c.send(Q, Message::new("before"), Tx::None).await.unwrap();

    let before = proxy.stats().to_server;
    proxy.cut_after(Direction::ToServer, 20);
    let big = Message::new(vec![7u8; 10_000]);
    let sent = tokio::time::timeout(READ_TIMEOUT, c.send(Q, big, Tx::None))
        .await
        .expect("a request on a cut connection hung");
    sent.unwrap_err();
    assert_eq!(proxy.stats().to_server - before, 20);
    assert_eq!(proxy.stats().cut, 1);
    let later = tokio::time::timeout(READ_TIMEOUT, c.send(Q, Message::new("x"), Tx::None))
        .await
        .expect("a request after the cut hung");
    later.unwrap_err();
    eventually_async("the cut connection closed", async || {
        proxy.stats().open == 0
    })
    .await;

    // The server took nothing from half a frame and serves a new connection, through the proxy.
    proxy.heal();
    let c = Client::connect(&proxy.addr().to_string()).await.unwrap();
    assert_eq!(c.open(Q).await.unwrap().len().await.unwrap(), 1);
    c.send(Q, Message::new("after"), Tx::None).await.unwrap();
    let q = qm.open(Q).unwrap();
    let bodies: Vec<_> = q
        .messages()
        .unwrap()
        .iter()
        .map(|m| m.body_str().unwrap().to_owned())
        .collect();
    assert_eq!(bodies, ["before", "after"]);

    drop(c);
    proxy.stop();
    stopper.stop();
    task.await.unwrap().unwrap();
}

#[test]
fn refuse_closes_new_connections_until_lifted() {
    let echo = Echo::start();
    let proxy = FaultyProxy::start(echo.addr).unwrap();
    let mut open = connect(proxy.addr());
    round_trip(&mut open, b"before");

    proxy.refuse(true);
    let mut refused = connect(proxy.addr());
    let _ = refused.write_all(b"anyone?");
    assert!(read_until_closed(&mut refused).is_empty());
    let e = mqnet::BlockingClient::connect(&proxy.addr().to_string()).unwrap_err();
    assert!(!e.to_string().is_empty());
    let s = proxy.stats();
    assert_eq!((s.accepted, s.refused), (3, 2));
    assert_eq!(
        echo.connections(),
        1,
        "a refused connection reached the server"
    );
    round_trip(&mut open, b"an open connection goes on");

    proxy.refuse(false);
    round_trip(&mut connect(proxy.addr()), b"served again");
    assert_eq!(echo.connections(), 2);
}

#[test]
fn stall_holds_bytes_and_resume_delivers_them_in_order() {
    let echo = Echo::start();
    let proxy = FaultyProxy::start(echo.addr).unwrap();
    let mut c = connect(proxy.addr());
    round_trip(&mut c, b"hello");

    proxy.stall();
    let data = pattern(300_000);
    for part in data.chunks(70_000) {
        c.write_all(part).unwrap();
    }
    eventually("the proxy read everything sent", || {
        proxy.stats().held_to_server == data.len() as u64
    });
    assert_eq!(proxy.stats().to_server, 5, "bytes went on while stalled");
    assert_eq!(
        echo.seen(0).0,
        b"hello",
        "the server received bytes while stalled"
    );
    // A new connection is stalled too.
    let mut late = connect(proxy.addr());
    late.write_all(b"late").unwrap();
    eventually("the proxy read the late bytes", || {
        proxy.stats().held_to_server == data.len() as u64 + 4
    });

    proxy.resume();
    let mut echoed = vec![0; data.len()];
    c.read_exact(&mut echoed).unwrap();
    assert!(
        echoed == data,
        "the held bytes came back changed or out of order"
    );
    let mut late_echo = [0; 4];
    late.read_exact(&mut late_echo).unwrap();
    assert_eq!(&late_echo, b"late");
    // The proxy counts a write once it returns, which may be after the client has read it.
    eventually("nothing held", || {
        let s = proxy.stats();
        (s.held_to_server, s.held_to_client) == (0, 0)
    });
}

#[test]
fn delay_holds_each_chunk_at_least_the_delay_in_order() {
    let echo = Echo::start();
    let proxy = FaultyProxy::start(echo.addr).unwrap();
    let mut c = connect(proxy.addr());
    round_trip(&mut c, b"hello");

    let delay = Duration::from_millis(150);
    proxy.delay(delay);
    let start = Instant::now();
    round_trip(&mut c, b"slow");
    // Delayed on the way there and on the way back.
    assert!(start.elapsed() >= 2 * delay, "{:?}", start.elapsed());

    let parts: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 1000]).collect();
    for p in &parts {
        c.write_all(p).unwrap();
    }
    let mut echoed = vec![0; 5000];
    c.read_exact(&mut echoed).unwrap();
    assert_eq!(
        echoed,
        parts.concat(),
        "delayed chunks came back out of order"
    );

    proxy.delay(Duration::ZERO);
    round_trip(&mut c, b"fast again");
}

#[test]
fn cut_all_drops_open_connections() {
    let echo = Echo::start();
    let proxy = FaultyProxy::start(echo.addr).unwrap();
    let mut conns: Vec<TcpStream> = (0..3).map(|_| connect(proxy.addr())).collect();
    for c in &mut conns {
        round_trip(c, b"hello");
    }
    assert_eq!(proxy.stats().open, 3);

    proxy.cut_all();
    for c in &mut conns {
        assert!(read_until_closed(c).is_empty());
    }
    eventually("every server side ended", || (0..3).all(|i| echo.seen(i).1));
    eventually("no connection open", || proxy.stats().open == 0);
    assert_eq!(proxy.stats().cut, 3);

    round_trip(&mut connect(proxy.addr()), b"a new connection is proxied");
    assert_eq!(proxy.stats().cut, 3);
}

#[test]
fn dropping_the_proxy_closes_everything() {
    let echo = Echo::start();
    // An address of its own, so no other test's listener can take the port once it is free.
    let listen: SocketAddr = "127.0.0.57:0".parse().unwrap();
    let proxy = FaultyProxy::start_on(listen, echo.addr).unwrap();
    let addr = proxy.addr();
    assert_eq!(addr.ip(), listen.ip());
    let mut conns: Vec<TcpStream> = (0..2).map(|_| connect(addr)).collect();
    for c in &mut conns {
        round_trip(c, b"hello");
    }

    drop(proxy);
    for c in &mut conns {
        assert!(read_until_closed(c).is_empty());
    }
    eventually("every server side ended", || {
        echo.seen(0).1 && echo.seen(1).1
    });
    let e = TcpStream::connect(addr).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
}

#[test]
fn only_loopback_addresses() {
    let local: SocketAddr = "127.0.0.1:9".parse().unwrap();
    for (listen, upstream) in [
        ("0.0.0.0:0", "127.0.0.1:9"),
        ("192.0.2.1:0", "127.0.0.1:9"),
        ("[::1]:0", "127.0.0.1:9"),
        ("127.0.0.1:0", "192.0.2.1:9"),
        ("127.0.0.1:0", "0.0.0.0:9"),
    ] {
        let e =
            FaultyProxy::start_on(listen.parse().unwrap(), upstream.parse().unwrap()).unwrap_err();
        assert_eq!(
            e.kind(),
            ErrorKind::InvalidInput,
            "{listen} -> {upstream}: {e}"
        );
    }
    FaultyProxy::start(local).unwrap().stop();
}
