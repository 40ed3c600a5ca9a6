//! The web console in a real browser: headless Chromium driven through chromedriver. The page
//! loads, a message sent through the API appears in the queue's page, and a dead letter
//! requeued from the page is back in its queue.
//!
//! Skipped, saying so, where `chromium` and `chromedriver` are not installed (Debian packages
//! `chromium` and `chromium-driver`), unless MQEMU_REQUIRE_CHROMIUM is set (`.ci/run` installs
//! them and sets it). With MQEMU_SCREENSHOTS=<dir> the test saves the screenshots docs/ shows.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use mqemu::net::http::{HttpConfig, HttpServer};
use mqemu::{Message, QueueManager, QueueProps, Tx};
use serde_json::json;

use crate::support::free_port;

/// chromedriver, killed when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|p| installed(p))
}

/// Waits until `probe` finds what it looks for, or fails after 20 s naming `what`.
async fn until<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(t) = probe().await {
            return t;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn text_of(c: &Client, css: &str) -> Option<String> {
    c.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

async fn screenshot(c: &Client, name: &str) {
    if let Some(dir) = std::env::var_os("MQEMU_SCREENSHOTS") {
        let png = c.screenshot().await.expect("a screenshot");
        std::fs::write(std::path::Path::new(&dir).join(name), png).unwrap();
    }
}

/// Headless Chromium through chromedriver, or `None` (with the reason printed) where they are
/// not installed and MQEMU_REQUIRE_CHROMIUM is not set.
async fn browser() -> Option<(Driver, Client)> {
    let (Some(browser), true) = (chromium(), installed("chromedriver")) else {
        assert!(
            std::env::var_os("MQEMU_REQUIRE_CHROMIUM").is_none(),
            "MQEMU_REQUIRE_CHROMIUM is set but chromium or chromedriver is not installed"
        );
        eprintln!("skipped: chromium and chromedriver are not installed (Debian packages chromium, chromium-driver)");
        return None;
    };
    let port = free_port();
    let driver = Driver(
        Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": which(browser),
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,860"],
        }),
    );
    let webdriver = format!("http://127.0.0.1:{port}");
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = until("chromedriver to accept a session", async || {
        ClientBuilder::new(connector.clone())
            .capabilities(caps.clone())
            .connect(&webdriver)
            .await
            .ok()
    })
    .await;
    Some((driver, client))
}

#[test]
fn the_console_shows_messages_and_requeues_a_dead_letter_in_chromium() {
    let qm = QueueManager::new();
    qm.create_queue(r".\private$\orders", QueueProps::default())
        .unwrap();
    qm.create_queue(r".\private$\billing", QueueProps::transactional())
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let server = HttpServer::bind("127.0.0.1:0", qm.clone(), HttpConfig::default())
            .await
            .unwrap();
        let base = format!("http://{}", server.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        let Some((_driver, c)) = browser().await else {
            return;
        };

        // The queues page lists both queues.
        c.goto(&format!("{base}/console")).await.unwrap();
        until("the queues table", async || {
            let t = text_of(&c, "#queues").await?;
            (t.contains(r"private$\orders") && t.contains(r"private$\billing")).then_some(())
        })
        .await;

        // A message sent through the API appears, with its body, in the queue's page.
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        for (i, label) in ["first order", "second order"].iter().enumerate() {
            let resp = agent
                .post(&format!("{base}/api/queues/orders/messages"))
                .header("content-type", "application/json")
                .send(
                    json!({"body": format!("order body {i}"), "label": label, "priority": 2 + i})
                        .to_string(),
                )
                .unwrap();
            assert_eq!(resp.status().as_u16(), 201);
        }
        until("the queue's count to show 2", async || {
            let t = text_of(&c, r#"tr[data-queue$="orders"] .messages"#).await?;
            (t == "2").then_some(())
        })
        .await;
        screenshot(&c, "console-queues.png").await;
        c.find(Locator::Css(r#"tr[data-queue$="orders"]"#))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let row = until("the message in the browser", async || {
            c.find(Locator::Css("#messages tr[data-lookup]")).await.ok()
        })
        .await;
        row.click().await.unwrap();
        until("the message's body", async || {
            let t = text_of(&c, "#body-text").await?;
            t.contains("order body").then_some(())
        })
        .await;
        let hex = text_of(&c, "#body-hex").await.unwrap();
        assert!(hex.contains("6f 72 64 65 72"), "the body as hex: {hex}");
        screenshot(&c, "console-messages.png").await;

        // A message that expires goes to the dead-letter queue; requeued from the page, it is
        // back in its queue.
        let mut late = Message::new("expired order");
        late.label = "late order".into();
        late.journal = mqemu::message::JournalFlags::DEADLETTER;
        late.time_to_be_received = Some(Duration::from_millis(1));
        qm.send(r".\private$\billing", Message::new("unrelated"), Tx::Single)
            .unwrap();
        qm.send(r".\private$\orders", late, Tx::None).unwrap();
        let dead = qm.open(r".\system$;DEADLETTER").unwrap();
        until("the dead letter", async || {
            (dead.len().unwrap() == 1).then_some(())
        })
        .await;
        c.find(Locator::Id("nav-dead"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let row = until("the dead letter in the browser", async || {
            let row = c
                .find(Locator::Css("#messages tr[data-lookup]"))
                .await
                .ok()?;
            row.text().await.ok()?.contains("late order").then_some(row)
        })
        .await;
        row.click().await.unwrap();
        let requeue = until("the requeue button", async || {
            c.find(Locator::Id("requeue")).await.ok()
        })
        .await;
        screenshot(&c, "console-dead-letters.png").await;
        requeue.click().await.unwrap();
        let orders = qm.open(r".\private$\orders").unwrap();
        until("the requeued message back in orders", async || {
            let back = orders.messages().unwrap();
            back.iter().any(|m| m.label == "late order").then_some(())
        })
        .await;
        assert_eq!(dead.len().unwrap(), 0, "no longer a dead letter");
        until("the dead-letter page to empty", async || {
            let t = text_of(&c, "#view").await?;
            t.contains("No messages.").then_some(())
        })
        .await;

        // With more queues than the page draws, it says so, and the filter narrows the list.
        for i in 0..600 {
            qm.create_queue(&format!(r".\private$\bulk-{i:03}"), QueueProps::default())
                .unwrap();
        }
        c.goto(&format!("{base}/console#/queues")).await.unwrap();
        until("the note about the rows not drawn", async || {
            let t = text_of(&c, "#queue-note").await?;
            t.contains("Showing 500 of 602 queues").then_some(())
        })
        .await;
        c.find(Locator::Id("queue-filter"))
            .await
            .unwrap()
            .send_keys("bulk-59")
            .await
            .unwrap();
        until("the filtered list", async || {
            let t = text_of(&c, "#queue-note").await?;
            (t == "10 of 602 queues.").then_some(())
        })
        .await;
        let rows = c
            .find_all(Locator::Css("#queues tbody tr"))
            .await
            .unwrap()
            .len();
        assert_eq!(rows, 10, "bulk-590 to bulk-599");
        // The box keeps what was typed across the page's refreshes.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let kept = c
            .find(Locator::Id("queue-filter"))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap();
        assert_eq!(kept.as_deref(), Some("bulk-59"));

        c.close().await.unwrap();
        let _ = stop.send(());
        served.await.unwrap().unwrap();
    });
}

/// The full path of `program`, for chromedriver's `binary` option.
fn which(program: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// On a virtual server the console has a cluster page: nodes, the group, its owner and its
/// resources, as `/api/cluster` reports them.
#[test]
fn the_console_shows_the_cluster_of_a_virtual_server_in_chromium() {
    let port = free_port();
    let text = format!(
        "[timing]\nheartbeat_ms = 50\nmissed_heartbeats = 5\n\
         \n[[node]]\nname = \"NODE1\"\naddress = \"127.0.12.1:0\"\n\
         \n[[node]]\nname = \"NODE2\"\naddress = \"127.0.12.2:0\"\n\
         \n[[group]]\nname = \"VS1\"\npreferred_owners = [\"NODE1\", \"NODE2\"]\n\
         \n[[group.resource]]\nname = \"VS1-IP\"\ntype = \"ip_address\"\naddress = \"127.74.0.11\"\n\
         \n[[group.resource]]\nname = \"VS1-Name\"\ntype = \"network_name\"\ndns_name = \"VS1\"\ndepends_on = [\"VS1-IP\"]\n\
         \n[[group.resource]]\nname = \"VS1-Disk\"\ntype = \"physical_disk\"\npath = \"disks/vs1\"\n\
         \n[[group.resource]]\nname = \"VS1-MSMQ\"\ntype = \"message_queuing\"\nhttp_port = {port}\ndepends_on = [\"VS1-Name\", \"VS1-Disk\"]\n"
    );
    let cluster = mqemu::testing::TestCluster::start(&text).unwrap();
    cluster.wait_online_on("VS1", "NODE1");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let Some((_driver, c)) = browser().await else {
            return;
        };
        c.goto(&format!("http://127.74.0.11:{port}/console#/cluster"))
            .await
            .unwrap();
        until("the cluster page", async || {
            let t = text_of(&c, "#view").await?;
            (t.contains("VS1: Online on NODE1") && t.contains("VS1-MSMQ")).then_some(())
        })
        .await;
        let link = c.find(Locator::Id("nav-cluster")).await.unwrap();
        assert!(
            link.is_displayed().await.unwrap(),
            "the Cluster link shows on a virtual server"
        );
        let nodes = text_of(&c, "#nodes").await.unwrap();
        assert!(
            nodes.contains("NODE1") && nodes.contains("NODE2") && nodes.contains("Up"),
            "{nodes}"
        );
        screenshot(&c, "console-cluster.png").await;
        c.close().await.unwrap();
    });
}
