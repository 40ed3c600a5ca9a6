//! Queue-manager transfer between two servers on one machine (127.0.0.2 and 127.0.0.3, one port,
//! as MSMQ binds 1801 on every host): delivery in order, a destination that is down and comes
//! back, pause and resume through management, and connections cut mid-frame by the fault proxy.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mqemu::testing::{Direction, FaultyProxy};
use mqemu::{Message, QueueManager, QueueProps, Tx};
use mqnet::proto::OutgoingAction;
use mqnet::{Client, Server, ServerConfig, Stopper, TransferConfig, TransferService};

use crate::support::{
    bodies, eventually, eventually_async, free_port, numbers, outgoing_messages,
    send_in_transactions,
};

const ORDERS: &str = r".\private$\orders";

fn transfer_config(port: u16) -> TransferConfig {
    TransferConfig {
        port,
        resend: TransferConfig::scaled_schedule(1000),
        batch: 64,
        ..TransferConfig::default()
    }
}

/// A queue manager serving on `ip:port` with its transfer service.
struct Node {
    qm: QueueManager,
    stopper: Stopper,
    transfer: TransferService,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Node {
    async fn start(name: &str, ip: &str, port: u16, hosts: &[(&str, &str)]) -> Node {
        let mut b = QueueManager::builder().name(name).address(ip);
        for (n, a) in hosts {
            b = b.host(n, a);
        }
        let qm = b.build();
        Node::serve(qm, ip, port).await
    }

    async fn serve(qm: QueueManager, ip: &str, port: u16) -> Node {
        let transfer = TransferService::start(qm.clone(), transfer_config(port));
        let config = ServerConfig {
            transfer: Some(transfer.clone()),
            ..ServerConfig::default()
        };
        let server = Server::bind((ip, port), qm.clone(), config).await.unwrap();
        let stopper = server.stopper();
        Node {
            qm,
            stopper,
            transfer,
            task: tokio::spawn(server.run()),
        }
    }

    async fn stop(self) {
        self.transfer.stop();
        self.stopper.stop();
        self.task.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_exchange_transactional_messages_in_order() {
    let port = free_port();
    let a = Node::start("alpha", "127.0.0.2", port, &[("beta", "127.0.0.3")]).await;
    let b = Node::start("beta", "127.0.0.3", port, &[("alpha", "127.0.0.2")]).await;
    b.qm.create_queue(ORDERS, QueueProps::transactional())
        .unwrap();
    a.qm.create_queue(ORDERS, QueueProps::transactional())
        .unwrap();
    let qm = a.qm.clone();
    tokio::task::spawn_blocking(move || {
        send_in_transactions(&qm, r"DIRECT=TCP:127.0.0.3\private$\orders", 0, 1000);
    })
    .await
    .unwrap();
    // And back the other way, by computer name through the host map.
    let qm = b.qm.clone();
    tokio::task::spawn_blocking(move || send_in_transactions(&qm, r"alpha\private$\orders", 0, 50))
        .await
        .unwrap();
    eventually_async("beta has the 1000 messages", async || {
        bodies(&b.qm, ORDERS).len() == 1000
    })
    .await;
    eventually_async("alpha has the 50 messages", async || {
        bodies(&a.qm, ORDERS).len() == 50
    })
    .await;
    assert_eq!(bodies(&b.qm, ORDERS), numbers(1000));
    assert_eq!(bodies(&a.qm, ORDERS), numbers(50));
    eventually_async("alpha's outgoing queue is empty", async || {
        outgoing_messages(&a.qm) == 0
    })
    .await;
    // Management shows the outgoing queue and its state.
    let c = Client::connect(&format!("127.0.0.2:{port}")).await.unwrap();
    let list = c.outgoing().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        list[0].info.name.to_ascii_lowercase(),
        r"direct=tcp:127.0.0.3\private$\orders"
    );
    assert!(
        ["CONNECTED", "INACTIVE"].contains(&list[0].state.as_str()),
        "{list:?}"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_that_is_down_gets_its_messages_when_it_comes_back() {
    let port = free_port();
    let a = Node::start("alpha", "127.0.0.2", port, &[]).await;
    let qm = a.qm.clone();
    tokio::task::spawn_blocking(move || {
        send_in_transactions(&qm, r"DIRECT=TCP:127.0.0.3\private$\orders", 0, 20)
    })
    .await
    .unwrap();
    let c = Client::connect(&format!("127.0.0.2:{port}")).await.unwrap();
    eventually_async("the outgoing queue waits for its destination", async || {
        let list = c.outgoing().await.unwrap();
        list.len() == 1 && list[0].state == "WAITING" && list[0].last_error.is_some()
    })
    .await;
    assert_eq!(outgoing_messages(&a.qm), 20);
    let b = Node::start("beta", "127.0.0.3", port, &[]).await;
    b.qm.create_queue(ORDERS, QueueProps::transactional())
        .unwrap();
    eventually_async("beta has the messages", async || {
        bodies(&b.qm, ORDERS).len() == 20
    })
    .await;
    assert_eq!(bodies(&b.qm, ORDERS), numbers(20));
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_the_messages_and_resume_delivers_them_in_order() {
    let port = free_port();
    let a = Node::start("alpha", "127.0.0.2", port, &[]).await;
    let b = Node::start("beta", "127.0.0.3", port, &[]).await;
    b.qm.create_queue(ORDERS, QueueProps::transactional())
        .unwrap();
    let dest = r"DIRECT=TCP:127.0.0.3\private$\orders";
    let qm = a.qm.clone();
    tokio::task::spawn_blocking(move || send_in_transactions(&qm, dest, 0, 5))
        .await
        .unwrap();
    eventually_async("the first five arrive", async || {
        bodies(&b.qm, ORDERS).len() == 5
    })
    .await;
    let c = Client::connect(&format!("127.0.0.2:{port}")).await.unwrap();
    c.outgoing_action(dest, OutgoingAction::Pause)
        .await
        .unwrap();
    let qm = a.qm.clone();
    tokio::task::spawn_blocking(move || send_in_transactions(&qm, dest, 5, 5))
        .await
        .unwrap();
    let list = c.outgoing().await.unwrap();
    assert_eq!(list[0].state, "ONHOLD");
    // Held: nothing more arrives while paused.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(bodies(&b.qm, ORDERS).len(), 5);
    assert_eq!(outgoing_messages(&a.qm), 5);
    c.outgoing_action(dest, OutgoingAction::Resume)
        .await
        .unwrap();
    eventually_async("the held five arrive", async || {
        bodies(&b.qm, ORDERS).len() == 10
    })
    .await;
    assert_eq!(bodies(&b.qm, ORDERS), numbers(10));
    let e = c
        .outgoing_action(r"DIRECT=TCP:127.0.0.9\private$\none", OutgoingAction::Pause)
        .await
        .unwrap_err();
    assert_eq!(e.code(), mqemu::ErrorCode::QueueNotFound);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_cut_mid_frame_lose_and_duplicate_nothing() {
    let port = free_port();
    // beta listens on .3; alpha reaches "beta" at .4, where the proxy forwards to .3.
    let b = Node::start("beta", "127.0.0.3", port, &[]).await;
    b.qm.create_queue(ORDERS, QueueProps::transactional())
        .unwrap();
    let listen: SocketAddr = format!("127.0.0.4:{port}").parse().unwrap();
    let upstream: SocketAddr = format!("127.0.0.3:{port}").parse().unwrap();
    let proxy = Arc::new(FaultyProxy::start_on(listen, upstream).unwrap());
    let a = Node::start("alpha", "127.0.0.2", port, &[("beta", "127.0.0.4")]).await;
    let qm = a.qm.clone();
    let sender = tokio::task::spawn_blocking(move || {
        for round in 0..20 {
            send_in_transactions(&qm, r"beta\private$\orders", round * 100, 100);
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    // Cut connections at different points in both directions while the messages flow.
    let cutter = {
        let proxy = proxy.clone();
        tokio::spawn(async move {
            for i in 0..30u64 {
                let direction = if i % 2 == 0 {
                    Direction::ToServer
                } else {
                    Direction::ToClient
                };
                proxy.cut_after(direction, 100 + i * 997);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            proxy.heal();
        })
    };
    sender.await.unwrap();
    cutter.await.unwrap();
    eventually_async("beta has all 2000 messages", async || {
        bodies(&b.qm, ORDERS).len() >= 2000
    })
    .await;
    assert_eq!(bodies(&b.qm, ORDERS), numbers(2000));
    eventually("alpha's outgoing queue is empty", || {
        outgoing_messages(&a.qm) == 0
    });
    assert!(proxy.stats().cut > 0, "the proxy cut connections");
    a.stop().await;
    b.stop().await;
}

/// An application on beta answers to the response queue on alpha, and beta's queue manager sends
/// the arrival and receive acknowledgements back to alpha's admin queue: both travel through
/// beta's own outgoing queue, so alpha's admin queue fills as it would on Windows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_and_responses_come_back_from_the_other_server() {
    let port = free_port();
    let a = Node::start("alpha", "127.0.0.2", port, &[]).await;
    let b = Node::start("beta", "127.0.0.3", port, &[]).await;
    b.qm.create_queue(ORDERS, QueueProps::transactional())
        .unwrap();
    a.qm.create_queue(r".\private$\admin", QueueProps::default())
        .unwrap();
    a.qm.create_queue(r".\private$\replies", QueueProps::transactional())
        .unwrap();
    let admin = mqemu::QueueName::parse(r"DIRECT=TCP:127.0.0.2\private$\admin").unwrap();
    let replies = mqemu::QueueName::parse(r"DIRECT=TCP:127.0.0.2\private$\replies").unwrap();
    let acks =
        mqemu::Acknowledge(mqemu::Acknowledge::POS_ARRIVAL.0 | mqemu::Acknowledge::POS_RECEIVE.0);
    let msg = Message::new("question")
        .with_acknowledge(admin, acks)
        .with_response_queue(replies);
    let sent =
        a.qm.send(r"DIRECT=TCP:127.0.0.3\private$\orders", msg, Tx::Single)
            .unwrap();
    let qm = b.qm.clone();
    tokio::task::spawn_blocking(move || {
        // The application on beta: take the question, answer where it asks.
        let q = qm
            .receive(ORDERS, Duration::from_secs(20), Tx::Single)
            .unwrap();
        let reply_to = q.response_queue.clone().unwrap().to_string();
        let answer = Message::new("answer").with_correlation_id(q.id());
        qm.send(&reply_to, answer, Tx::Single).unwrap();
    })
    .await
    .unwrap();
    eventually_async("the answer reaches alpha", async || {
        bodies(&a.qm, r".\private$\replies") == ["answer"]
    })
    .await;
    let answer =
        a.qm.receive(r".\private$\replies", Duration::ZERO, Tx::Single)
            .unwrap();
    assert_eq!(answer.correlation_id, Some(sent));
    eventually_async("both acknowledgements reach alpha", async || {
        a.qm.open(r".\private$\admin").unwrap().len().unwrap() == 2
    })
    .await;
    let classes: Vec<mqemu::MessageClass> =
        a.qm.open(r".\private$\admin")
            .unwrap()
            .messages()
            .unwrap()
            .iter()
            .map(|m| m.class())
            .collect();
    assert_eq!(
        classes,
        [
            mqemu::MessageClass::ACK_REACH_QUEUE,
            mqemu::MessageClass::ACK_RECEIVE
        ]
    );
    a.stop().await;
    b.stop().await;
}
