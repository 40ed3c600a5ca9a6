//! SRMP egress between two servers on one machine: sends to `DIRECT=HTTP://host:port/msmq/...`
//! leave through an outgoing queue and arrive at the other server's HTTP face exactly once and
//! in order, through connections cut mid-request and mid-answer, after the destination was down,
//! and a destination that refuses a message has it dead-lettered at the sender.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mqemu::net::http::{HttpConfig, HttpServer};
use mqemu::testing::{Direction, FaultyProxy};
use mqemu::{Message, MessageClass, QueueManager, QueueProps, Tx};
use mqnet::{TransferConfig, TransferService};

use crate::support::{
    bodies, eventually, eventually_async, free_port, numbers, outgoing_messages,
    send_in_transactions,
};

const ORDERS: &str = r".\private$\orders";

/// A queue manager at `ips` (the first is where its HTTP face listens, on `port`), with its
/// transfer service.
struct Node {
    qm: QueueManager,
    transfer: TransferService,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Node {
    async fn start(name: &str, ips: &[&str], http_port: Option<u16>) -> Node {
        let mut b = QueueManager::builder().name(name);
        for ip in ips {
            b = b.address(ip);
        }
        let qm = b.build();
        let transfer = TransferService::start(
            qm.clone(),
            TransferConfig {
                resend: TransferConfig::scaled_schedule(1000),
                batch: 32,
                connect_timeout: Duration::from_secs(2),
                ..TransferConfig::default()
            },
        );
        let mut node = Node {
            qm,
            transfer,
            stop: None,
            task: None,
        };
        if let Some(port) = http_port {
            node.serve(ips[0], port).await;
        }
        node
    }

    async fn serve(&mut self, ip: &str, port: u16) {
        let config = HttpConfig {
            transfer: Some(self.transfer.clone()),
            ..HttpConfig::default()
        };
        let server = HttpServer::bind(format!("{ip}:{port}"), self.qm.clone(), config)
            .await
            .unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.stop = Some(tx);
        self.task = Some(tokio::spawn(server.run(async {
            let _ = rx.await;
        })));
    }

    async fn stop(mut self) {
        self.transfer.stop();
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_messages_cross_over_http_exactly_once_in_order_through_cut_connections() {
    let port = free_port();
    // beta's HTTP face is on .3; alpha sends to .4, where the proxy forwards to .3, and beta
    // knows .4 as its own address (the name alpha used reaches it).
    let b = Node::start("beta", &["127.0.0.3", "127.0.0.4"], Some(port)).await;
    b.qm.create_queue(ORDERS, QueueProps::transactional())
        .unwrap();
    let listen: SocketAddr = format!("127.0.0.4:{port}").parse().unwrap();
    let upstream: SocketAddr = format!("127.0.0.3:{port}").parse().unwrap();
    let proxy = Arc::new(FaultyProxy::start_on(listen, upstream).unwrap());
    let a = Node::start("alpha", &["127.0.0.2"], None).await;
    let dest = format!("DIRECT=HTTP://127.0.0.4:{port}/msmq/private$/orders");
    // Every answer cut in its headers: beta stores the first message, alpha never hears so
    // and sends it again and again; once the answers get through, the resends are recognized.
    proxy.cut_after(Direction::ToClient, 40);
    {
        let (qm, dest) = (a.qm.clone(), dest.clone());
        tokio::task::spawn_blocking(move || send_in_transactions(&qm, &dest, 0, 10))
            .await
            .unwrap();
    }
    eventually_async("beta stores the first message", async || {
        !bodies(&b.qm, ORDERS).is_empty()
    })
    .await;
    eventually_async("alpha sends it again", async || {
        a.transfer.outgoing().iter().any(|o| o.resends >= 3)
    })
    .await;
    proxy.heal();
    let qm = a.qm.clone();
    let sender = tokio::task::spawn_blocking(move || {
        for round in 0..29 {
            send_in_transactions(&qm, &dest, 10 + round * 10, 10);
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    // Cut connections in both directions while messages flow: a cut request is sent again, a
    // cut answer leaves a stored message to be sent again and recognized.
    let cutter = {
        let proxy = proxy.clone();
        tokio::spawn(async move {
            for i in 0..12u64 {
                let (direction, bytes) = if i % 2 == 0 {
                    (Direction::ToServer, 100 + i * 531)
                } else {
                    (Direction::ToClient, 30 + i * 97)
                };
                let before = proxy.stats().cut;
                proxy.cut_after(direction, bytes);
                // Until that cut happened (or the messages stopped flowing).
                for _ in 0..20 {
                    if proxy.stats().cut > before {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            proxy.heal();
        })
    };
    sender.await.unwrap();
    cutter.await.unwrap();
    eventually_async("beta has all 300 messages", async || {
        bodies(&b.qm, ORDERS).len() >= 300
    })
    .await;
    eventually("alpha's outgoing queue is empty", || {
        outgoing_messages(&a.qm) == 0
    });
    assert_eq!(bodies(&b.qm, ORDERS), numbers(300));
    assert!(proxy.stats().cut > 0, "the proxy cut connections");
    // The messages name where they were sent, and where from.
    let first = b.qm.open(ORDERS).unwrap().messages().unwrap()[0].clone();
    assert_eq!(first.source_machine(), a.qm.guid());
    assert!(first.is_transactional());
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_that_is_down_gets_its_messages_when_its_http_face_comes_back() {
    let port = free_port();
    let a = Node::start("alpha", &["127.0.0.2"], None).await;
    let dest = format!("DIRECT=HTTP://127.0.0.3:{port}/msmq/private$/orders");
    {
        let (qm, dest) = (a.qm.clone(), dest.clone());
        tokio::task::spawn_blocking(move || send_in_transactions(&qm, &dest, 0, 20))
            .await
            .unwrap();
    }
    // Nothing listens yet: the link waits on its resend schedule and says why.
    eventually_async("the outgoing queue waits", async || {
        a.transfer
            .outgoing()
            .iter()
            .any(|o| o.state == "WAITING" && o.last_error.is_some())
    })
    .await;
    assert_eq!(outgoing_messages(&a.qm), 20);
    let b = Node::start("beta", &["127.0.0.3"], Some(port)).await;
    b.qm.create_queue(ORDERS, QueueProps::transactional())
        .unwrap();
    eventually_async("beta has the 20 messages", async || {
        bodies(&b.qm, ORDERS).len() >= 20
    })
    .await;
    assert_eq!(bodies(&b.qm, ORDERS), numbers(20));
    eventually("alpha's outgoing queue is empty", || {
        outgoing_messages(&a.qm) == 0
    });
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_destination_refuses_is_dead_lettered_at_the_sender() {
    let port = free_port();
    let b = Node::start("beta", &["127.0.0.3"], Some(port)).await;
    b.qm.create_queue(ORDERS, QueueProps::default()).unwrap();
    let a = Node::start("alpha", &["127.0.0.2"], None).await;
    let base = format!("DIRECT=HTTP://127.0.0.3:{port}/msmq/private$");
    let dead_letter = |body: &str| {
        let mut m = Message::new(body.to_owned());
        m.journal = mqemu::message::JournalFlags::DEADLETTER;
        m
    };
    // No such queue on beta; then one that arrives.
    a.qm.send(&format!("{base}/nowhere"), dead_letter("lost"), Tx::None)
        .unwrap();
    a.qm.send(&format!("{base}/orders"), dead_letter("kept"), Tx::None)
        .unwrap();
    eventually_async("the message reaches beta's queue", async || {
        bodies(&b.qm, ORDERS) == ["kept"]
    })
    .await;
    eventually("the refused one is in alpha's dead-letter queue", || {
        a.qm.open(r".\system$;DEADLETTER")
            .unwrap()
            .messages()
            .unwrap()
            .len()
            == 1
    });
    let dead =
        a.qm.open(r".\system$;DEADLETTER")
            .unwrap()
            .messages()
            .unwrap();
    assert_eq!(dead[0].body_str().unwrap(), "lost");
    assert_eq!(dead[0].class(), MessageClass::NACK_BAD_DST_Q);
    // "kept" is in beta's queue before beta's answer reaches alpha: its outgoing queue empties
    // when the answer arrives, so this is waited for, not asserted at once.
    eventually("alpha's outgoing queues are empty", || {
        outgoing_messages(&a.qm) == 0
    });
    a.stop().await;
    b.stop().await;
}

/// A transactional message that runs out of time after it may have been sent is withdrawn over
/// HTTP as over the native protocol: one the receiver never stored is dead-lettered at the
/// sender, one it stored (its answer lost) is not, and the stream goes on behind both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_stream_messages_are_withdrawn_and_dead_lettered_only_if_undelivered() {
    const DEADXACT: &str = r".\system$;DEADXACT";
    let port = free_port();
    let b = Node::start("beta", &["127.0.0.3", "127.0.0.4"], Some(port)).await;
    b.qm.create_queue(ORDERS, QueueProps::transactional())
        .unwrap();
    let listen: SocketAddr = format!("127.0.0.4:{port}").parse().unwrap();
    let upstream: SocketAddr = format!("127.0.0.3:{port}").parse().unwrap();
    let proxy = FaultyProxy::start_on(listen, upstream).unwrap();
    let a = Node::start("alpha", &["127.0.0.2"], None).await;
    let dest = format!("DIRECT=HTTP://127.0.0.4:{port}/msmq/private$/orders");
    let send = |body: &str| {
        let m = Message::new(body.to_owned()).with_time_to_reach_queue(Duration::from_millis(400));
        a.qm.send(&dest, m, Tx::Single).unwrap();
    };
    let dead = || a.qm.open(DEADXACT).unwrap().messages().unwrap();

    // Requests cut in their headers: "lost" is read and sent, never stored.
    proxy.cut_after(Direction::ToServer, 60);
    send("lost");
    eventually_async("alpha tries to send it", async || {
        a.transfer.outgoing().iter().any(|o| o.resends >= 2)
    })
    .await;
    eventually("its time runs out and it is withdrawn, unconfirmed", || {
        a.transfer.outgoing().iter().any(|o| o.resends >= 4)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.heal();
    eventually("the withdrawal dead-letters it at alpha", || {
        dead().len() == 1
    });
    assert_eq!(dead()[0].body_str().unwrap(), "lost");
    assert_eq!(dead()[0].class(), MessageClass::NACK_REACH_QUEUE_TIMEOUT);
    assert!(bodies(&b.qm, ORDERS).is_empty());

    // Answers cut in their headers: "kept" is stored at beta, alpha never hears so.
    proxy.cut_after(Direction::ToClient, 40);
    send("kept");
    eventually("beta stores it", || bodies(&b.qm, ORDERS) == ["kept"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.heal();
    // Behind both, the stream goes on.
    send("next");
    eventually("beta has the next one", || bodies(&b.qm, ORDERS).len() == 2);
    assert_eq!(bodies(&b.qm, ORDERS), ["kept", "next"]);
    eventually("alpha's outgoing queue is empty", || {
        outgoing_messages(&a.qm) == 0
    });
    assert_eq!(dead().len(), 1, "a delivered message is not dead-lettered");
    a.stop().await;
    b.stop().await;
}

/// Acknowledgements travel as SRMP receipts: alpha asks for arrival and receive
/// acknowledgements at an admin queue named by HTTP; beta answers the arrival with a delivery
/// receipt, and its application's receive with a commitment receipt through its own outgoing
/// queue; alpha stores both in the admin queue as MSMQ acknowledgements.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_come_back_as_receipts_over_http() {
    let port = free_port();
    let a = Node::start("alpha", &["127.0.0.2"], Some(port)).await;
    let b = Node::start("beta", &["127.0.0.3"], Some(port)).await;
    a.qm.create_queue(r".\private$\admin", QueueProps::default())
        .unwrap();
    b.qm.create_queue(ORDERS, QueueProps::default()).unwrap();
    let admin = mqemu::QueueName::parse(&format!(
        "DIRECT=HTTP://127.0.0.2:{port}/msmq/private$/admin"
    ))
    .unwrap();
    let acks =
        mqemu::Acknowledge(mqemu::Acknowledge::POS_ARRIVAL.0 | mqemu::Acknowledge::POS_RECEIVE.0);
    let sent =
        a.qm.send(
            &format!("DIRECT=HTTP://127.0.0.3:{port}/msmq/private$/orders"),
            Message::new("question").with_acknowledge(admin, acks),
            Tx::None,
        )
        .unwrap();
    let acknowledgements = || {
        a.qm.open(r".\private$\admin")
            .unwrap()
            .messages()
            .unwrap()
            .iter()
            .map(|m| (m.class(), m.correlation_id))
            .collect::<Vec<_>>()
    };
    eventually("the delivery receipt reaches alpha", || {
        acknowledgements() == [(MessageClass::ACK_REACH_QUEUE, Some(sent))]
    });
    let qm = b.qm.clone();
    let got = tokio::task::spawn_blocking(move || {
        qm.receive(ORDERS, Duration::from_secs(10), Tx::None)
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(got.body_str(), Some("question"));
    eventually("the commitment receipt reaches alpha", || {
        acknowledgements().len() == 2
    });
    assert_eq!(
        acknowledgements(),
        [
            (MessageClass::ACK_REACH_QUEUE, Some(sent)),
            (MessageClass::ACK_RECEIVE, Some(sent))
        ]
    );
    a.stop().await;
    b.stop().await;
}
