//! The queue server over real loopback sockets: every operation remotely, pipelining,
//! connection-owned transactions, MSMQ's remote-receive rules, security, limits, malformed input
//! and graceful shutdown. The idle timeout, a tokio timer of the server's, is tested on paused time
//! in `mqnet/tests/idle_timeout.rs`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use mqemu::{Compat, ErrorCode, LookupAction, Message, QueueManager, QueueProps, QueueUpdate};
use mqnet::proto::{self, Request, Response};
use mqnet::{Auth, Client, ClientOptions, Right, Server, ServerConfig, Stopper, Tx, User};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::support::eventually_async;

const Q: &str = r".\private$\orders";
const TXQ: &str = r".\private$\tx-orders";
const SECOND: Duration = Duration::from_secs(1);

struct Running {
    addr: SocketAddr,
    stopper: Stopper,
    task: JoinHandle<std::io::Result<()>>,
    /// The queue manager the server serves, to look at from the test's side.
    qm: QueueManager,
}

impl Running {
    async fn stop(self) {
        self.stopper.stop();
        self.task.await.unwrap().unwrap();
    }

    fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Returns once `n` receivers or peekers wait on the queue `name` on the server.
    async fn waiting_on(&self, name: &str, n: usize) {
        let q = self.qm.open(name).unwrap();
        eventually_async(&format!("{n} waiting on {name}"), async || {
            q.waiting().unwrap() >= n
        })
        .await;
    }
}

async fn start(qm: QueueManager, config: ServerConfig) -> Running {
    let server = Server::bind("127.0.0.1:0", qm.clone(), config)
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let stopper = server.stopper();
    let task = tokio::spawn(server.run());
    Running {
        addr,
        stopper,
        task,
        qm,
    }
}

async fn open_server() -> (Running, Client) {
    let s = start(QueueManager::new(), ServerConfig::default()).await;
    let c = Client::connect(&s.addr()).await.unwrap();
    c.create_queue(Q, QueueProps::default()).await.unwrap();
    c.create_queue(TXQ, QueueProps::transactional())
        .await
        .unwrap();
    (s, c)
}

fn body(m: &Message) -> &str {
    m.body_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_works_remotely() {
    let (s, c) = open_server().await;
    // Administration.
    let names: Vec<String> = c
        .queues()
        .await
        .unwrap()
        .iter()
        .map(|q| q.path.to_string().to_lowercase())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    c.set_queue_props(
        Q,
        QueueUpdate {
            label: Some("orders".into()),
            ..QueueUpdate::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(c.queue_info(Q).await.unwrap().props.label, "orders");
    let e = c.create_queue(Q, QueueProps::default()).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::QueueExists);
    assert_eq!(
        c.open(r".\private$\missing").await.unwrap_err().code(),
        ErrorCode::QueueNotFound
    );

    // A format name naming the server reaches the same queue.
    let q = c
        .open(r"DIRECT=TCP:127.0.0.1\private$\orders")
        .await
        .unwrap();
    let id1 = q
        .send(Message::new("one").with_label("first"), Tx::None)
        .await
        .unwrap();
    let corr = Message::new("two").with_correlation_id(id1);
    let id2 = q.send(corr, Tx::None).await.unwrap();
    q.send(Message::new("three"), Tx::None).await.unwrap();
    assert_eq!(q.len().await.unwrap(), 3);
    assert_eq!(body(&q.peek(SECOND).await.unwrap()), "one");
    assert_eq!(body(&q.peek_by_id(&id2).await.unwrap()), "two");
    assert_eq!(body(&q.peek_by_correlation_id(&id1).await.unwrap()), "two");
    let last = q.peek_by_lookup_id(LookupAction::Last).await.unwrap();
    assert_eq!(body(&last), "three");

    // Cursors.
    let cur = q.cursor().await.unwrap();
    assert_eq!(body(&cur.peek_current(SECOND).await.unwrap()), "one");
    assert_eq!(body(&cur.peek_next(SECOND).await.unwrap()), "two");
    assert_eq!(
        body(&cur.receive_current(SECOND, Tx::None).await.unwrap()),
        "two"
    );
    // The cursor now points past the received message.
    assert_eq!(body(&cur.peek_next(SECOND).await.unwrap()), "three");
    assert_eq!(
        cur.peek_next(Duration::ZERO).await.unwrap_err().code(),
        ErrorCode::IoTimeout
    );
    drop(cur);

    // Lookup ids, move to a subqueue and back, reject.
    let first = q
        .receive_by_lookup_id(LookupAction::Current(last.lookup_id()), Tx::None)
        .await
        .unwrap();
    assert_eq!(body(&first), "three");
    let head = q.peek(SECOND).await.unwrap();
    // Receive by id.
    assert_eq!(body(&q.receive_by_id(&id1, Tx::None).await.unwrap()), "one");
    assert_eq!(head.id(), id1);
    assert!(q.is_empty().await.unwrap());

    // Transactions: invisible until commit, gone on abort.
    let txq = c.open(TXQ).await.unwrap();
    let t = c.begin().await.unwrap();
    txq.send(Message::new("a"), Tx::In(&t)).await.unwrap();
    txq.send(Message::new("b"), Tx::In(&t)).await.unwrap();
    assert!(txq.is_empty().await.unwrap());
    t.commit().await.unwrap();
    assert_eq!(txq.len().await.unwrap(), 2);
    let t = c.begin().await.unwrap();
    txq.send(Message::new("never"), Tx::In(&t)).await.unwrap();
    t.abort().await.unwrap();
    txq.send(Message::new("c"), Tx::Single).await.unwrap();
    assert_eq!(txq.len().await.unwrap(), 3);

    // External transaction: receive, prepare, commit.
    let t = c.begin_external("xid-1").await.unwrap();
    assert_eq!(body(&txq.receive(SECOND, Tx::In(&t)).await.unwrap()), "a");
    t.prepare().await.unwrap();
    t.commit().await.unwrap();
    assert_eq!(c.in_doubt().await.unwrap(), Vec::<String>::new());

    // Purge, stats, delete.
    assert_eq!(c.purge(TXQ).await.unwrap(), 2);
    let stats = c.stats().await.unwrap();
    assert_eq!(stats.queues, 2);
    assert!(stats.requests_total > 20);
    c.ping().await.unwrap();
    c.delete_queue(TXQ).await.unwrap();
    assert_eq!(
        c.queue_info(TXQ).await.unwrap_err().code(),
        ErrorCode::QueueNotFound
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_move_to_subqueues_remotely() {
    let (s, c) = open_server().await;
    let q = c.open(Q).await.unwrap();
    q.send(Message::new("m"), Tx::None).await.unwrap();
    let m = q.peek(SECOND).await.unwrap();
    let sub = c
        .open(r"DIRECT=OS:anyhost\private$\orders;poison")
        .await
        .unwrap();
    q.move_message(m.lookup_id(), &sub, Tx::None).await.unwrap();
    assert!(q.is_empty().await.unwrap());
    let moved = sub.receive(SECOND, Tx::None).await.unwrap();
    assert_eq!(body(&moved), "m");
    assert_eq!(moved.move_count(), 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_on_one_connection() {
    let (s, c) = open_server().await;
    let q = c.open(Q).await.unwrap();
    const N: usize = 2000;
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..N {
        let q = q.clone();
        sends.spawn(async move { q.send(Message::new(format!("{i}")), Tx::None).await });
    }
    let mut ids = HashSet::new();
    while let Some(r) = sends.join_next().await {
        assert!(ids.insert(r.unwrap().unwrap()));
    }
    assert_eq!(q.len().await.unwrap(), N);
    let mut recvs = tokio::task::JoinSet::new();
    for _ in 0..N {
        let q = q.clone();
        recvs.spawn(async move { q.receive(SECOND * 5, Tx::None).await });
    }
    let mut seen = HashSet::new();
    while let Some(r) = recvs.join_next().await {
        let m = r.unwrap().unwrap();
        assert!(seen.insert(body(&m).to_owned()), "received twice");
    }
    assert_eq!(seen.len(), N);

    // A receive that waits does not hold up the connection.
    let waiting = {
        let q = q.clone();
        tokio::spawn(async move { q.receive(Duration::from_secs(10), Tx::None).await })
    };
    s.waiting_on(Q, 1).await;
    for _ in 0..10 {
        c.ping().await.unwrap();
    }
    assert!(!waiting.is_finished());
    q.send(Message::new("late"), Tx::None).await.unwrap();
    assert_eq!(body(&waiting.await.unwrap().unwrap()), "late");
    s.stop().await;
}

/// Reads answers off one raw connection, keeping what a read brought beyond the first frame.
struct Answers {
    st: TcpStream,
    buf: BytesMut,
}

impl Answers {
    async fn next(&mut self) -> (u64, Response) {
        loop {
            if let Some(f) = mqnet::frame::decode(&mut self.buf, 1 << 24).unwrap() {
                let env: proto::Envelope<Response> = proto::decode(&f).unwrap();
                return (env.id, env.body);
            }
            let n = tokio::time::timeout(Duration::from_secs(5), self.st.read_buf(&mut self.buf))
                .await
                .expect("the server answers")
                .unwrap();
            assert_ne!(n, 0, "the server closed the connection");
        }
    }
}

/// Pipelined receives that find the queue empty wait as one waiter: each message that comes goes
/// to the oldest of them, in order, and the rest time out together. Once for receives without a
/// transaction, once for single-message transactional ones of a local application.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_receives_on_an_empty_queue_wait_as_one() {
    let (s, c) = open_server().await;
    for (queue, tx, local) in [
        (Q, proto::TxRef::None, false),
        (TXQ, proto::TxRef::Single, true),
    ] {
        let mut st = raw(&s.addr()).await;
        if local {
            st.write_all(&proto::frame(2, &Request::Local))
                .await
                .unwrap();
            let (id, r) = read_answer(&mut st).await.unwrap();
            assert_eq!((id, matches!(r, Response::Done)), (2, true), "{r:?}");
        }
        // Ten receives in one write, so the server reads them as one run.
        let ids: Vec<u64> = (10..20).collect();
        let mut out = Vec::new();
        for &id in &ids {
            let req = Request::Receive {
                queue: queue.into(),
                select: proto::Select::Head,
                timeout_ms: 1500,
                tx,
            };
            out.extend_from_slice(&proto::frame(id, &req));
        }
        st.write_all(&out).await.unwrap();
        s.waiting_on(queue, 1).await;
        let q = s.qm.open(queue).unwrap();
        assert_eq!(q.waiting().unwrap(), 1, "ten receives, one waiter");

        let sender = c.open(queue).await.unwrap();
        let send_tx = if local { Tx::Single } else { Tx::None };
        for i in 0..3 {
            sender
                .send(Message::new(format!("m{i}")), send_tx)
                .await
                .unwrap();
        }
        let mut answers = Answers {
            st,
            buf: BytesMut::new(),
        };
        // The oldest requests get the messages, in the order they were sent.
        for (i, &want) in ids[..3].iter().enumerate() {
            let (id, r) = answers.next().await;
            assert_eq!(id, want);
            let Response::Message(m) = r else {
                panic!("{r:?}")
            };
            assert_eq!(body(&m), format!("m{i}"));
        }
        // The other seven time out.
        for &want in &ids[3..] {
            let (id, r) = answers.next().await;
            assert_eq!(id, want);
            let Response::Error { code, .. } = r else {
                panic!("{r:?}")
            };
            assert_eq!(ErrorCode::from_hresult(code), Some(ErrorCode::IoTimeout));
        }
        assert!(q.is_empty().unwrap());
        assert_eq!(q.waiting().unwrap(), 0);
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_aborts_its_transactions() {
    let (s, c) = open_server().await;
    let txq = c.open(TXQ).await.unwrap();
    txq.send(Message::new("held"), Tx::Single).await.unwrap();

    // A raw connection, so that it really goes away (as a killed client's would) with its
    // transactions open: one receive under an external transaction, one staged send.
    let mut other = raw(&s.addr()).await;
    let mut ask = async |id: u64, req: Request| {
        other.write_all(&proto::frame(id, &req)).await.unwrap();
        let (got, r) = read_answer(&mut other).await.unwrap();
        assert_eq!(got, id);
        r
    };
    let Response::Tx(ext) = ask(
        2,
        Request::BeginExternal {
            xid: "xid-drop".into(),
        },
    )
    .await
    else {
        panic!()
    };
    let r = ask(
        3,
        Request::Receive {
            queue: TXQ.into(),
            select: proto::Select::Head,
            timeout_ms: 1000,
            tx: proto::TxRef::In(ext),
        },
    )
    .await;
    assert!(
        matches!(&r, Response::Message(m) if body(m) == "held"),
        "{r:?}"
    );
    let Response::Tx(internal) = ask(4, Request::Begin).await else {
        panic!()
    };
    let r = ask(
        5,
        Request::Send {
            queue: TXQ.into(),
            msg: Box::new(Message::new("staged")),
            tx: proto::TxRef::In(internal),
        },
    )
    .await;
    assert!(matches!(r, Response::Sent(_)), "{r:?}");
    assert_eq!(
        txq.receive(Duration::ZERO, Tx::None)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::IoTimeout,
        "locked by the other connection's transaction"
    );
    drop(other);
    let back = txq.receive(SECOND * 5, Tx::None).await.unwrap();
    assert_eq!(body(&back), "held");
    assert_eq!(back.abort_count(), 1);
    assert_eq!(
        txq.receive(Duration::from_millis(100), Tx::None)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::IoTimeout,
        "the staged send never became visible"
    );
    s.stop().await;
}

async fn remote_receive_codes(compat: Compat) -> [Option<ErrorCode>; 5] {
    let qm = QueueManager::builder().compat(compat).build();
    let s = start(qm, ServerConfig::default()).await;
    let c = Client::connect(&s.addr()).await.unwrap();
    let q = c
        .create_queue(TXQ, QueueProps::transactional())
        .await
        .unwrap();
    for i in 0..5 {
        q.send(Message::new(format!("{i}")), Tx::Single)
            .await
            .unwrap();
    }
    let code = |r: Result<Message, mqemu::Error>| r.err().map(|e| e.code());
    let single = code(q.receive(SECOND, Tx::Single).await);
    let t = c.begin().await.unwrap();
    let internal = code(q.receive(SECOND, Tx::In(&t)).await);
    t.abort().await.unwrap();
    let ext = match c.begin_external("x").await {
        Ok(t) => {
            let r = code(q.receive(SECOND, Tx::In(&t)).await);
            drop(t);
            r
        }
        Err(e) => Some(e.code()),
    };
    let none = code(q.receive(SECOND, Tx::None).await);
    let peek = code(q.peek(SECOND).await);
    s.stop().await;
    [single, internal, ext, none, peek]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_transactional_receive_follows_msmq() {
    let usage = Some(ErrorCode::TransactionUsage);
    assert_eq!(
        remote_receive_codes(Compat::Msmq3).await,
        [usage, usage, usage, None, None],
        "MSMQ 3.0: no remote transactional receive at all"
    );
    assert_eq!(
        remote_receive_codes(Compat::Msmq4).await,
        [usage, usage, None, None, None],
        "MSMQ 4.0: only under an external transaction"
    );
}

/// A connection that declares itself local (an application on the server's computer, from a
/// loopback address) receives as MSMQ's local applications do, under any transaction, on either
/// compatibility level; pipelined single-message receives (run as one batch) each take one
/// message, in order, and a receive under a transaction that aborts puts its message back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_application_receives_under_any_transaction() {
    for compat in [Compat::Msmq3, Compat::Msmq4] {
        let qm = QueueManager::builder().compat(compat).build();
        let s = start(qm, ServerConfig::default()).await;
        let local = ClientOptions {
            local: true,
            ..ClientOptions::default()
        };
        let c = Client::connect_with(&s.addr(), &local).await.unwrap();
        let q = c
            .create_queue(TXQ, QueueProps::transactional())
            .await
            .unwrap();
        for i in 0..50 {
            q.send(Message::new(format!("{i}")), Tx::Single)
                .await
                .unwrap();
        }
        let first = q.receive(SECOND, Tx::Single).await.unwrap();
        assert_eq!(&first.body[..], b"0", "{compat:?}");
        let t = c.begin().await.unwrap();
        let second = q.receive(SECOND, Tx::In(&t)).await.unwrap();
        assert_eq!(&second.body[..], b"1", "{compat:?}");
        t.abort().await.unwrap();
        let pipelined =
            futures_util::future::join_all((0..49).map(|_| q.receive(SECOND, Tx::Single))).await;
        let bodies: Vec<String> = pipelined
            .into_iter()
            .map(|r| String::from_utf8(r.unwrap().body.to_vec()).unwrap())
            .collect();
        let expected: Vec<String> = (1..50).map(|i| i.to_string()).collect();
        assert_eq!(
            bodies, expected,
            "{compat:?}: the aborted one first, then in order"
        );
        assert_eq!(s.qm.open(TXQ).unwrap().len().unwrap(), 0, "{compat:?}");
        // A single-message receive from a queue that is not transactional is still refused.
        c.create_queue(Q, QueueProps::default()).await.unwrap();
        c.send(Q, Message::new("x"), Tx::None).await.unwrap();
        let e = c.receive(Q, SECOND, Tx::Single).await.unwrap_err();
        assert_eq!(e.code(), ErrorCode::TransactionUsage, "{compat:?}");
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_rights_are_enforced() {
    fn denied<T>(r: Result<T, mqemu::Error>) -> ErrorCode {
        r.map(drop).unwrap_err().code()
    }
    let sender = User {
        name: "sender".into(),
        token: Some("s3cret".into()),
        admin: false,
        queues: [("orders".to_owned(), vec![Right::Send])].into(),
        certificate: None,
    };
    let admin = User {
        name: "ops".into(),
        token: Some("adm1n".into()),
        admin: true,
        queues: Default::default(),
        certificate: None,
    };
    let config = ServerConfig {
        auth: Auth::new(vec![sender, admin]),
        ..ServerConfig::default()
    };
    let s = start(QueueManager::new(), config).await;
    let with = |t: Option<&str>| ClientOptions {
        token: t.map(str::to_owned),
        ..ClientOptions::default()
    };
    let e = Client::connect_with(&s.addr(), &with(None))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::AccessDenied);
    assert!(e.detail().contains("token"), "{e}");
    let e = Client::connect_with(&s.addr(), &with(Some("wrong")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::AccessDenied);
    assert!(e.detail().contains("not valid"), "{e}");

    let ops = Client::connect_with(&s.addr(), &with(Some("adm1n")))
        .await
        .unwrap();
    ops.create_queue(Q, QueueProps::default()).await.unwrap();
    ops.create_queue(r".\private$\other", QueueProps::default())
        .await
        .unwrap();

    let c = Client::connect_with(&s.addr(), &with(Some("s3cret")))
        .await
        .unwrap();
    c.send(Q, Message::new("ok"), Tx::None).await.unwrap();
    assert_eq!(
        denied(c.receive(Q, SECOND, Tx::None).await),
        ErrorCode::AccessDenied
    );
    assert_eq!(denied(c.peek(Q, SECOND).await), ErrorCode::AccessDenied);
    assert_eq!(
        denied(
            c.send(r".\private$\other", Message::new("x"), Tx::None)
                .await
        ),
        ErrorCode::AccessDenied
    );
    assert_eq!(
        denied(
            c.create_queue(r".\private$\new", QueueProps::default())
                .await
        ),
        ErrorCode::AccessDenied
    );
    assert_eq!(denied(c.purge(Q).await), ErrorCode::AccessDenied);
    assert_eq!(denied(c.in_doubt().await), ErrorCode::AccessDenied);
    // Lists show only what the user has a right on.
    assert_eq!(c.queues().await.unwrap().len(), 1);
    // Nothing refused changed anything.
    assert_eq!(ops.queue_info(Q).await.unwrap().message_count, 1);
    assert_eq!(ops.queues().await.unwrap().len(), 2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_that_authenticates_takes_messages_only_from_a_logged_in_sender() {
    const AUTH: &str = r".\private$\signed";
    const AUTH_TX: &str = r".\private$\signed-tx";
    let props = |transactional| QueueProps {
        authenticate: true,
        transactional,
        ..QueueProps::default()
    };
    // An open server: nobody logs in, so no message is authenticated.
    let qm = QueueManager::new();
    let s = start(qm.clone(), ServerConfig::default()).await;
    let c = Client::connect(&s.addr()).await.unwrap();
    c.create_queue(AUTH, props(false)).await.unwrap();
    c.create_queue(AUTH_TX, props(true)).await.unwrap();
    c.create_queue(Q, QueueProps::default()).await.unwrap();
    let code = |r: Result<_, mqemu::Error>| r.unwrap_err().code();
    let refused = ErrorCode::MessageNotAuthenticated;
    assert_eq!(
        code(c.send(AUTH, Message::new("x"), Tx::None).await),
        refused
    );
    assert_eq!(
        code(c.send(AUTH_TX, Message::new("x"), Tx::Single).await),
        refused
    );
    let t = c.begin().await.unwrap();
    assert_eq!(
        code(c.send(AUTH_TX, Message::new("x"), Tx::In(&t)).await),
        refused
    );
    t.commit().await.unwrap();
    // Pipelined sends, which the server runs as one batch.
    let q = c.open(AUTH).await.unwrap();
    let sends: Vec<_> = (0..20)
        .map(|_| q.send(Message::new("x"), Tx::None))
        .collect();
    for r in futures_util::future::join_all(sends).await {
        assert_eq!(code(r), refused);
    }
    assert!(q.is_empty().await.unwrap());
    assert!(c.open(AUTH_TX).await.unwrap().is_empty().await.unwrap());
    // Other queues take the same sender's messages; the engine's own process is trusted.
    c.send(Q, Message::new("ok"), Tx::None).await.unwrap();
    qm.send(AUTH, Message::new("local"), mqemu::Tx::None)
        .unwrap();
    assert_eq!(q.len().await.unwrap(), 1);
    s.stop().await;

    // With users, a sender that logged in is authenticated.
    let user = User {
        name: "signer".into(),
        token: Some("t0ken".into()),
        admin: true,
        queues: Default::default(),
        certificate: None,
    };
    let config = ServerConfig {
        auth: Auth::new(vec![user]),
        ..ServerConfig::default()
    };
    let s = start(QueueManager::new(), config).await;
    let options = ClientOptions {
        token: Some("t0ken".into()),
        ..ClientOptions::default()
    };
    let c = Client::connect_with(&s.addr(), &options).await.unwrap();
    c.create_queue(AUTH_TX, props(true)).await.unwrap();
    c.send(AUTH_TX, Message::new("signed"), Tx::Single)
        .await
        .unwrap();
    let t = c.begin().await.unwrap();
    c.send(AUTH_TX, Message::new("signed too"), Tx::In(&t))
        .await
        .unwrap();
    t.commit().await.unwrap();
    assert_eq!(c.open(AUTH_TX).await.unwrap().len().await.unwrap(), 2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_receive_keeps_a_connection_open_past_the_idle_timeout() {
    let config = ServerConfig {
        idle_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let s = start(QueueManager::new(), config).await;
    let c = Client::connect(&s.addr()).await.unwrap();
    c.create_queue(Q, QueueProps::default()).await.unwrap();
    // A receive that waits past the idle timeout gets its own answer (the engine's timer, on the
    // system clock, so this one waits for real).
    let e = c
        .receive(Q, Duration::from_millis(700), Tx::None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::IoTimeout, "{e}");
    // And the connection is still open.
    c.ping().await.unwrap();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_created_again_under_its_name_is_the_new_queue_on_the_same_connection() {
    let (s, c) = open_server().await;
    c.send(Q, Message::new("to the first"), Tx::None)
        .await
        .unwrap();
    c.delete_queue(Q).await.unwrap();
    let e = c
        .send(Q, Message::new("to nothing"), Tx::None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::QueueNotFound, "{e}");
    c.create_queue(Q, QueueProps::default()).await.unwrap();
    c.send(Q, Message::new("to the second"), Tx::None)
        .await
        .unwrap();
    let got = c.receive(Q, SECOND, Tx::None).await.unwrap();
    assert_eq!(body(&got), "to the second");
    let e = c.receive(Q, Duration::ZERO, Tx::None).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::IoTimeout, "{e}");
    s.stop().await;
}

/// Opens a raw connection and shakes hands.
async fn raw(addr: &str) -> TcpStream {
    let mut st = TcpStream::connect(addr).await.unwrap();
    let hello = Request::Hello {
        min_version: 1,
        max_version: 1,
        token: None,
        client: "raw".into(),
    };
    st.write_all(&proto::frame(1, &hello)).await.unwrap();
    let (id, r) = read_answer(&mut st).await.unwrap();
    assert_eq!(id, 1);
    assert!(matches!(r, Response::Welcome { .. }), "{r:?}");
    st
}

/// Reads one answer; `None` when the server closed the connection first.
async fn read_answer(st: &mut TcpStream) -> Option<(u64, Response)> {
    let mut buf = BytesMut::new();
    loop {
        if let Some(f) = mqnet::frame::decode(&mut buf, 1 << 24).unwrap() {
            let env: proto::Envelope<Response> = proto::decode(&f).unwrap();
            return Some((env.id, env.body));
        }
        let n = tokio::time::timeout(Duration::from_secs(5), st.read_buf(&mut buf))
            .await
            .expect("the server answers or closes")
            .unwrap_or(0);
        if n == 0 {
            return None;
        }
    }
}

/// The server answers a protocol error with an error frame (id 0) and closes.
async fn refused(mut st: TcpStream, bytes: &[u8]) -> ErrorCode {
    st.write_all(bytes).await.unwrap();
    let (id, r) = read_answer(&mut st).await.expect("an error answer");
    assert_eq!(id, 0);
    let Response::Error { code, .. } = r else {
        panic!("{r:?}")
    };
    assert!(read_answer(&mut st).await.is_none(), "then it closes");
    ErrorCode::from_hresult(code).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_closes_only_that_connection() {
    let (s, c) = open_server().await;
    let addr = s.addr();
    c.send(Q, Message::new("before"), Tx::None).await.unwrap();

    // Garbage instead of a handshake.
    let st = TcpStream::connect(&addr).await.unwrap();
    let code = refused(st, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(code, ErrorCode::InvalidParameter);

    // A length over the limit, after a good handshake: refused from the header alone.
    let st = raw(&addr).await;
    let mut huge = Vec::new();
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    huge.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(refused(st, &huge).await, ErrorCode::InvalidParameter);

    // A bad crc.
    let st = raw(&addr).await;
    let mut f = proto::frame(2, &Request::Ping).to_vec();
    let last = f.len() - 1;
    f[last] ^= 0x40;
    assert_eq!(refused(st, &f).await, ErrorCode::InvalidParameter);

    // A well-framed request of an unknown kind (variant 200).
    let st = raw(&addr).await;
    let mut payload = vec![3u8]; // id 3 (varint)
    payload.extend_from_slice(&[0xC8, 0x01]); // variant 200 (varint)
    let mut f = BytesMut::new();
    mqnet::frame::encode(&payload, &mut f);
    assert_eq!(refused(st, &f).await, ErrorCode::InvalidParameter);

    // A frame cut in the middle, then the client goes away.
    let mut st = raw(&addr).await;
    let f = proto::frame(4, &Request::Ping);
    st.write_all(&f[..f.len() / 2]).await.unwrap();
    drop(st);

    // The server and the first client are untouched.
    assert_eq!(
        body(&c.receive(Q, SECOND, Tx::None).await.unwrap()),
        "before"
    );
    Client::connect(&addr).await.unwrap().ping().await.unwrap();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_keeps_what_was_committed() {
    let dir = tempfile::tempdir().unwrap();
    let qm = QueueManager::builder().open(dir.path()).unwrap();
    qm.create_queue(TXQ, QueueProps::transactional()).unwrap();
    let s = start(qm, ServerConfig::default()).await;
    let c = Client::connect(&s.addr()).await.unwrap();
    let q = c.open(TXQ).await.unwrap();
    const N: usize = 500;
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..N {
        let q = q.clone();
        sends.spawn(async move { q.send(Message::new(format!("{i}")), Tx::Single).await });
    }
    while let Some(r) = sends.join_next().await {
        r.unwrap().unwrap();
    }
    // Open work at shutdown: a staged send and a waiting receive on an empty queue.
    let other = Client::connect(&s.addr()).await.unwrap();
    let t = other.begin().await.unwrap();
    other
        .send(TXQ, Message::new("uncommitted"), Tx::In(&t))
        .await
        .unwrap();
    other
        .create_queue(r".\private$\empty", QueueProps::default())
        .await
        .unwrap();
    let waiting = {
        let o = other.clone();
        tokio::spawn(async move {
            o.receive(r".\private$\empty", Duration::from_secs(30), Tx::None)
                .await
        })
    };
    s.waiting_on(r".\private$\empty", 1).await;
    s.stop().await;
    let e = waiting.await.unwrap().unwrap_err();
    assert_eq!(e.code(), ErrorCode::ServiceNotAvailable, "{e}");
    std::mem::forget(t);
    drop((q, c, other));

    // Every acknowledged send is there after a restart; the uncommitted one is not.
    let qm = QueueManager::builder().open(dir.path()).unwrap();
    let q = qm.open(TXQ).unwrap();
    let bodies: Vec<String> = q
        .messages()
        .unwrap()
        .iter()
        .map(|m| body(m).to_owned())
        .collect();
    assert_eq!(bodies.len(), N, "{bodies:?}");
    let expected: HashSet<String> = (0..N).map(|i| i.to_string()).collect();
    assert_eq!(bodies.into_iter().collect::<HashSet<_>>(), expected);
}

/// A one-request HTTP endpoint on loopback: answers `status` and hands back what was posted.
fn http_endpoint(status: u16) -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok((stream, _)) = listener.accept() else {
            return;
        };
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut head = String::new();
        let mut length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            head.push_str(&line);
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let mut stream = stream;
        write!(
            stream,
            "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        )
        .unwrap();
        let _ = tx.send(format!("{head}\n{}", String::from_utf8_lossy(&body)));
    });
    (url, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_are_administered_remotely_and_http_actions_post_the_message() {
    use mqemu::triggers::{Processing, TriggerDef, Triggers};
    use mqnet::{TriggerAnswer, TriggerRequest};
    let qm = QueueManager::new();
    let triggers = std::sync::Arc::new(
        Triggers::builder()
            .http(std::sync::Arc::new(mqnet::HttpAction))
            .start(&qm)
            .unwrap(),
    );
    let reader = User {
        name: "reader".into(),
        token: Some("r".into()),
        admin: false,
        queues: [("orders".to_owned(), vec![Right::Peek])].into(),
        certificate: None,
    };
    let admin = User {
        name: "ops".into(),
        token: Some("a".into()),
        admin: true,
        queues: Default::default(),
        certificate: None,
    };
    let config = ServerConfig {
        auth: Auth::new(vec![reader, admin]),
        triggers: mqnet::TriggerService::running(triggers.clone()),
        ..ServerConfig::default()
    };
    let s = start(qm, config).await;
    let login = |t: &str| ClientOptions {
        token: Some(t.to_owned()),
        ..ClientOptions::default()
    };
    let ops = Client::connect_with(&s.addr(), &login("a")).await.unwrap();
    let plain = Client::connect_with(&s.addr(), &login("r")).await.unwrap();
    ops.create_queue(Q, QueueProps::transactional())
        .await
        .unwrap();

    let (ok_url, posted) = http_endpoint(200);
    let add = TriggerRequest::AddRule {
        name: "hook".into(),
        description: String::new(),
        condition: "$MSG_LABEL_CONTAINS=hook\t".into(),
        action: format!("HTTP\t{ok_url}\t$MSG_LABEL\t\"lit\"\t$MSG_PRIORITY"),
    };
    // Administration needs the admin right, and changes nothing when refused.
    let e = plain.triggers(TriggerRequest::ListRules).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::AccessDenied);
    let TriggerAnswer::Rules(r) = ops.triggers(add).await.unwrap() else {
        panic!("not rules")
    };
    assert_eq!(
        r[0].action_string(),
        format!("HTTP\t{ok_url}\t$MSG_LABEL\t\"lit\"\t$MSG_PRIORITY")
    );
    let def = TriggerDef::new("t", Q, Processing::TransactionalRetrieval);
    ops.triggers(TriggerRequest::AddTrigger(def)).await.unwrap();
    let TriggerAnswer::Triggers(t) = ops
        .triggers(TriggerRequest::Attach {
            trigger: "t".into(),
            rule: "hook".into(),
        })
        .await
        .unwrap()
    else {
        panic!("not triggers")
    };
    assert_eq!(t[0].rule_names, ["hook"]);
    assert!(t[0].trigger.def.serialized);

    ops.send(Q, Message::text("payload").with_label("hook 1"), Tx::Single)
        .await
        .unwrap();
    let request = tokio::task::spawn_blocking(move || posted.recv_timeout(Duration::from_secs(20)))
        .await
        .unwrap()
        .expect("the HTTP action posted");
    assert!(request.starts_with("POST /hook HTTP/1.1"), "{request}");
    let json: serde_json::Value =
        serde_json::from_str(request.split_once("\n\n").unwrap().1.trim()).unwrap();
    assert_eq!(json["message"]["label"], "hook 1");
    assert_eq!(json["message"]["body_text"], "payload");
    assert_eq!(json["params"], serde_json::json!(["hook 1", "lit", 0]));
    assert_eq!(json["trigger"]["name"], "t");
    assert_eq!(json["queue"], r"localhost\private$\orders");
    eventually_async("the message is committed away", async || {
        ops.queue_info(Q).await.unwrap().message_count == 0
    })
    .await;

    // An endpoint that answers 500 fails the action: the message returns.
    let (bad_url, posted) = http_endpoint(500);
    let update = TriggerRequest::AddRule {
        name: "hook500".into(),
        description: String::new(),
        condition: "$MSG_LABEL_CONTAINS=five\t".into(),
        action: format!("HTTP\t{bad_url}"),
    };
    ops.triggers(update).await.unwrap();
    ops.triggers(TriggerRequest::Attach {
        trigger: "t".into(),
        rule: "hook500".into(),
    })
    .await
    .unwrap();
    ops.send(Q, Message::text("x").with_label("five"), Tx::Single)
        .await
        .unwrap();
    tokio::task::spawn_blocking(move || posted.recv_timeout(Duration::from_secs(20)))
        .await
        .unwrap()
        .expect("the failing endpoint was called");
    eventually_async("the failed action aborts", async || {
        triggers.stats("t").unwrap().aborted > 0
    })
    .await;
    let back = ops.peek(Q, SECOND).await.unwrap();
    assert_eq!((back.label.as_str(), back.abort_count()), ("five", 1));
    s.stop().await;
    triggers.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_requests_without_a_triggers_service_are_refused() {
    let (s, c) = open_server().await;
    let e = c
        .triggers(mqnet::TriggerRequest::ListTriggers)
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::ServiceNotAvailable);
    s.stop().await;
}
