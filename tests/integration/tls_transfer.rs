//! TLS beyond one server's own listeners. Transfer between two servers on one machine: the
//! native protocol to a destination named by its computer name (its certificate names the
//! computer, not the address), logging in with the sending queue manager's own certificate; a
//! sender that trusts another CA keeps its messages and says why; SRMP to a `DIRECT=HTTPS://`
//! name. And a virtual server, whose listeners speak TLS with its own name's certificate on
//! whichever node serves it.

use std::time::Duration;

use mqemu::net::http::{HttpConfig, HttpServer};
use mqemu::{QueueManager, QueueProps};
use mqnet::{Auth, ClientTls, Server, ServerConfig, ServerTls, TransferConfig, TransferService};

use crate::support::{
    bodies, eventually_async, free_port, numbers, outgoing_messages, send_in_transactions,
};
use crate::tls::{https_named, Ca};

const ORDERS: &str = r".\private$\orders";

/// A sender at `ip` whose transfer service uses `tls`, knowing `beta` at 127.0.0.3.
fn sender(ip: &str, port: u16, tls: ClientTls) -> (QueueManager, TransferService) {
    let qm = QueueManager::builder()
        .name("alpha")
        .address(ip)
        .host("beta", "127.0.0.3")
        .build();
    let transfer = TransferService::start(
        qm.clone(),
        TransferConfig {
            port,
            resend: TransferConfig::scaled_schedule(1000),
            connect_timeout: Duration::from_secs(2),
            tls: Some(tls),
            ..TransferConfig::default()
        },
    );
    (qm, transfer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_speaks_tls_and_logs_in_with_the_senders_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("mqemu test CA");
    let ca_file = ca.write(dir.path(), "ca.crt");
    let machines = Ca::new("queue managers' CA");
    // beta's certificate names the computer only: a link that checked the address it dialled
    // (127.0.0.3) would refuse it.
    let mut files = ca.issue_for(dir.path(), "beta", &["beta"], "beta", false);
    files.client_ca = Some(machines.write(dir.path(), "machines.crt"));
    let port = free_port();
    let beta = QueueManager::builder()
        .name("beta")
        .address("127.0.0.3")
        .build();
    beta.create_queue(ORDERS, QueueProps::transactional())
        .unwrap();
    let users: Vec<mqnet::User> = serde_json::from_value(serde_json::json!([
        {"name": "alpha", "certificate": "alpha.example", "queues": {"orders": ["send"]}},
    ]))
    .unwrap();
    let server = Server::bind(
        ("127.0.0.3", port),
        beta.clone(),
        ServerConfig {
            tls: Some(ServerTls::load(files).unwrap()),
            auth: Auth::new(users),
            ..ServerConfig::default()
        },
    )
    .await
    .unwrap();
    let stopper = server.stopper();
    tokio::spawn(server.run());

    // alpha presents the certificate of the user `alpha`: 200 transactional messages arrive
    // once, in order.
    let id = machines.issue_for(
        dir.path(),
        "alpha",
        &["alpha.example"],
        "alpha.example",
        false,
    );
    let tls = ClientTls::with_ca_and_certificate(&ca_file, Some((&id.cert, &id.key))).unwrap();
    let (alpha, transfer) = sender("127.0.0.2", port, tls);
    let qm = alpha.clone();
    tokio::task::spawn_blocking(move || send_in_transactions(&qm, r"beta\private$\orders", 0, 200))
        .await
        .unwrap();
    eventually_async("beta has the 200 messages", async || {
        bodies(&beta, ORDERS).len() == 200
    })
    .await;
    assert_eq!(bodies(&beta, ORDERS), numbers(200));
    eventually_async("alpha's outgoing queue empties", async || {
        outgoing_messages(&alpha) == 0
    })
    .await;
    transfer.stop();

    // A sender trusting another CA: nothing crosses, the messages wait in its outgoing queue
    // and the outgoing queue says why.
    let other = Ca::new("someone else's CA");
    let other_file = other.write(dir.path(), "other.crt");
    let (gamma, transfer) = sender("127.0.0.4", port, ClientTls::with_ca(&other_file).unwrap());
    let qm = gamma.clone();
    tokio::task::spawn_blocking(move || send_in_transactions(&qm, r"beta\private$\orders", 0, 5))
        .await
        .unwrap();
    eventually_async("gamma's link fails on the certificate", async || {
        transfer.outgoing().iter().any(|o| {
            o.last_error
                .as_deref()
                .is_some_and(|e| e.contains("TLS") && e.contains("certificate"))
        })
    })
    .await;
    assert_eq!(outgoing_messages(&gamma), 5);
    assert_eq!(bodies(&beta, ORDERS).len(), 200);
    transfer.stop();
    stopper.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srmp_reaches_direct_https_names() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("mqemu test CA");
    let ca_file = ca.write(dir.path(), "ca.crt");
    let files = ca.issue_for(dir.path(), "web", &["127.0.0.5"], "web", false);
    let port = free_port();
    let beta = QueueManager::builder()
        .name("beta")
        .address("127.0.0.5")
        .build();
    beta.create_queue(ORDERS, QueueProps::transactional())
        .unwrap();
    let http = HttpServer::bind(
        format!("127.0.0.5:{port}"),
        beta.clone(),
        HttpConfig {
            tls: Some(ServerTls::load(files).unwrap()),
            ..HttpConfig::default()
        },
    )
    .await
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(http.run(async {
        let _ = stopped.await;
    }));

    let (alpha, transfer) = sender("127.0.0.2", port, ClientTls::with_ca(&ca_file).unwrap());
    let dest = format!("DIRECT=HTTPS://127.0.0.5:{port}/msmq/private$/orders");
    let (qm, d) = (alpha.clone(), dest.clone());
    tokio::task::spawn_blocking(move || send_in_transactions(&qm, &d, 0, 50))
        .await
        .unwrap();
    eventually_async("beta has the 50 messages", async || {
        bodies(&beta, ORDERS).len() == 50
    })
    .await;
    assert_eq!(bodies(&beta, ORDERS), numbers(50));
    eventually_async("alpha's outgoing queue empties", async || {
        outgoing_messages(&alpha) == 0
    })
    .await;
    let listed = transfer.outgoing();
    assert!(
        listed
            .iter()
            .any(|o| o.info.name.eq_ignore_ascii_case(&dest)),
        "{listed:?}"
    );
    transfer.stop();

    // Without `tls_ca`, HTTPS is checked against the public CAs, which did not sign this
    // certificate: nothing is sent, and the outgoing queue says why.
    let plain = QueueManager::builder().name("gamma").build();
    let transfer = TransferService::start(
        plain.clone(),
        TransferConfig {
            resend: TransferConfig::scaled_schedule(1000),
            ..TransferConfig::default()
        },
    );
    let (qm, d) = (plain.clone(), dest.clone());
    tokio::task::spawn_blocking(move || send_in_transactions(&qm, &d, 0, 1))
        .await
        .unwrap();
    eventually_async("the link names the untrusted certificate", async || {
        transfer.outgoing().iter().any(|o| {
            o.last_error
                .as_deref()
                .is_some_and(|e| e.to_ascii_lowercase().contains("certificate"))
        })
    })
    .await;
    assert_eq!(outgoing_messages(&plain), 1);
    transfer.stop();
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

/// A virtual server with a certificate of its own name: its native and HTTP listeners speak
/// only TLS on whichever node serves it, and a client that asked for `VS1` checks the
/// certificate against that name before and after a failover.
#[test]
fn a_virtual_server_speaks_tls_on_every_node_that_serves_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("mqemu test CA");
    let ca_file = ca.write(dir.path(), "ca.crt");
    ca.issue_for(dir.path(), "vs1", &["vs1"], "vs1", false);
    let (port, http_port) = (free_port(), free_port());
    let mut text = String::from("[timing]\nheartbeat_ms = 50\nmissed_heartbeats = 5\n");
    for (i, n) in ["NODE1", "NODE2"].iter().enumerate() {
        text += &format!(
            "\n[[node]]\nname = \"{n}\"\naddress = \"127.0.12.{}:0\"\n",
            i + 1
        );
    }
    text += &format!(
        r#"
[[group]]
name = "VS1"
preferred_owners = ["NODE1", "NODE2"]

[[group.resource]]
name = "VS1-IP"
type = "ip_address"
address = "127.74.0.11"

[[group.resource]]
name = "VS1-Name"
type = "network_name"
dns_name = "VS1"
depends_on = ["VS1-IP"]

[[group.resource]]
name = "VS1-Disk"
type = "physical_disk"
path = "disks/VS1"

[[group.resource]]
name = "VS1-MSMQ"
type = "message_queuing"
port = {port}
http_port = {http_port}
tls_cert = "vs1.crt"
tls_key = "vs1.key"
depends_on = ["VS1-Name", "VS1-Disk"]
"#
    );
    let c = mqemu::testing::TestCluster::start_in(dir.path(), &text).unwrap();
    c.wait_online_on("VS1", "NODE1");
    let tls = mqnet::ClientOptions {
        tls: Some(ClientTls::with_ca(&ca_file).unwrap()),
        ..mqnet::ClientOptions::default()
    };
    let client = c.connect_with("VS1", &tls).unwrap();
    client.create_queue(ORDERS, QueueProps::default()).unwrap();
    client
        .send(
            ORDERS,
            mqemu::Message::new("before the failover").with_delivery(mqemu::Delivery::Recoverable),
            mqnet::Tx::None,
        )
        .unwrap();
    // Plaintext gets nothing from it.
    let plain = mqnet::ClientOptions {
        connect_timeout: Duration::from_secs(1),
        ..mqnet::ClientOptions::default()
    };
    assert!(mqnet::BlockingClient::connect_with(&format!("127.74.0.11:{port}"), &plain).is_err());
    // Its HTTP face: HTTPS with the same certificate, checked against the same name.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let http_at: std::net::SocketAddr = format!("127.74.0.11:{http_port}").parse().unwrap();
    let health = "GET /healthz HTTP/1.1\r\nHost: vs1\r\nConnection: close\r\n\r\n";
    let answer = rt
        .block_on(https_named(http_at, &ca_file, "vs1", health))
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    drop(client);
    c.kill("NODE1");
    c.wait_online_on("VS1", "NODE2");
    let client = c.connect_with("VS1", &tls).unwrap();
    let m = client
        .receive(ORDERS, Duration::from_secs(5), mqnet::Tx::None)
        .unwrap();
    assert_eq!(m.body_str(), Some("before the failover"));
    let answer = rt
        .block_on(https_named(http_at, &ca_file, "vs1", health))
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // A client that expects another name is refused: the name is what was checked.
    let wrong = mqnet::ClientOptions {
        tls: Some(ClientTls::with_ca(&ca_file).unwrap().server_name("vs2")),
        ..mqnet::ClientOptions::default()
    };
    let e =
        mqnet::BlockingClient::connect_with(&format!("127.74.0.11:{port}"), &wrong).unwrap_err();
    assert!(e.detail().contains("certificate"), "{e}");
}
