//! SRMP ingress against MC-MQSRM's own examples (tests/data/mc-mqsrm-vectors.json): each user
//! message is stored with the properties the spec gives it, stream messages exactly once and in
//! order, receipts and multicast are not stored, and malformed messages are refused with nothing
//! stored.

use std::time::Duration;

use mqemu::net::http::{HttpConfig, HttpServer};
use mqemu::{Message, QueueManager, QueueProps, Tx};
use serde_json::Value;

/// A vector as wire bytes: the request path, its Content-Type and the body with CRLF line ends
/// and the blank lines the printed examples leave out.
struct Wire {
    path: String,
    content_type: String,
    body: Vec<u8>,
}

fn vector(id: &str) -> String {
    let text = include_str!("../data/mc-mqsrm-vectors.json");
    let all: Value = serde_json::from_str(text).unwrap();
    let v = all["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == id)
        .unwrap_or_else(|| panic!("no vector {id}"));
    v["http"].as_str().unwrap().to_owned()
}

fn is_header(line: &str) -> bool {
    line.split_once(':').is_some_and(|(k, _)| {
        !k.is_empty()
            && !k.contains(' ')
            && !k.starts_with('<')
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

fn wire(http: &str) -> Wire {
    let mut lines = http.lines();
    let request = lines.next().unwrap();
    let path = request.split(' ').nth(1).unwrap().to_owned();
    let mut headers: Vec<String> = Vec::new();
    let mut rest: Vec<&str> = Vec::new();
    for line in lines.by_ref() {
        if line.starts_with("--") || line.starts_with('<') {
            rest.push(line);
            break;
        }
        if is_header(line) {
            headers.push(line.to_owned());
        } else {
            // A header continued on the next line (`type=text/xml`).
            let last = headers.last_mut().unwrap();
            last.push(' ');
            last.push_str(line.trim());
        }
    }
    rest.extend(lines);
    let content_type = headers
        .iter()
        .find_map(|h| h.strip_prefix("Content-Type:"))
        .unwrap()
        .trim()
        .to_owned();
    let boundary = content_type
        .split("boundary=\"")
        .nth(1)
        .map(|b| b.split('"').next().unwrap().to_owned());
    // Supply the blank line after each MIME part's headers.
    let mut body: Vec<String> = Vec::new();
    let mut in_part_headers = false;
    for line in rest {
        let opens_part = boundary
            .as_ref()
            .is_some_and(|b| line.ends_with(&format!("--{b}")));
        if in_part_headers && !is_header(line) {
            body.push(String::new());
            in_part_headers = false;
        }
        body.push(line.to_owned());
        if opens_part {
            in_part_headers = true;
        }
    }
    Wire {
        path,
        content_type,
        body: body.join("\r\n").into_bytes(),
    }
}

struct Srv {
    base: String,
    qm: QueueManager,
    rt: tokio::runtime::Runtime,
    agent: ureq::Agent,
}

impl Srv {
    /// A server named `machine2`, the examples' receiving computer, with their queues.
    fn start(max_body: usize) -> Srv {
        let qm = QueueManager::builder().name("machine2").build();
        qm.create_queue(r".\private$\simpleq", QueueProps::default())
            .unwrap();
        qm.create_queue(r".\private$\tsimpleq", QueueProps::transactional())
            .unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let config = HttpConfig {
            max_body,
            ..HttpConfig::default()
        };
        let server = rt
            .block_on(HttpServer::bind("127.0.0.1:0", qm.clone(), config))
            .unwrap();
        let base = format!("http://{}", server.local_addr().unwrap());
        rt.spawn(server.run(std::future::pending()));
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        Srv {
            base,
            qm,
            rt,
            agent,
        }
    }

    fn post(&self, w: &Wire) -> (u16, String) {
        let path = if w.path.starts_with('/') {
            w.path.clone()
        } else {
            "/msmq/private$/simpleq".to_owned()
        };
        let mut resp = self
            .agent
            .post(&format!("{}{}", self.base, path))
            .header("content-type", &w.content_type)
            .header("soapaction", "\"MSMQMessage\"")
            .send(&w.body[..])
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.body_mut().read_to_string().unwrap_or_default())
    }

    fn take_all(&self, queue: &str) -> Vec<Message> {
        let q = self.qm.open(queue).unwrap();
        let tx = if q.is_transactional() {
            Tx::Single
        } else {
            Tx::None
        };
        std::iter::from_fn(|| q.receive(Duration::ZERO, tx).ok()).collect()
    }

    fn counts(&self) -> (usize, usize) {
        let n = |q: &str| self.qm.open(q).unwrap().len().unwrap();
        (n(r".\private$\simpleq"), n(r".\private$\tsimpleq"))
    }
}

impl Drop for Srv {
    fn drop(&mut self) {
        let rt = std::mem::replace(
            &mut self.rt,
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap(),
        );
        rt.shutdown_timeout(Duration::from_secs(5));
    }
}

const SPEC_TIME_2007_06_08_164419: u64 = 1_181_321_059_000;

#[test]
fn the_specs_user_messages_are_stored_with_their_properties() {
    let srv = Srv::start(1 << 20);
    // 4.1: no <Msmq> element; the label from <action>, the body part by its Content-Id.
    let (s, body) = srv.post(&wire(&vector("mqsrm-4.1")));
    assert_eq!(s, 200, "{body}");
    assert!(body.is_empty());
    // 4.2: <Msmq> with class, priority, correlation, source and the id uuid:20503@<guid>.
    assert_eq!(srv.post(&wire(&vector("mqsrm-4.2"))).0, 200);
    // 4.3: receipts requested, a label without the MSMQ: prefix, a response queue. The
    // printed body has an em dash where the closing `--` was meant, and prose after it.
    let w = vector("mqsrm-4.3-request").replace(
        "requests\u{2014}MSMQ - SOAP boundary, 95692 are in same message.",
        "requests--MSMQ - SOAP boundary, 95692--",
    );
    let (s, body) = srv.post(&wire(&w));
    assert_eq!(s, 200, "{body}");

    let got = srv.take_all(r".\private$\simpleq");
    assert_eq!(got.len(), 3);
    let m41 = &got[0];
    assert_eq!(m41.label, "mqsender label");
    assert_eq!(m41.body_str(), Some("First Message"));
    assert_eq!(m41.priority, 3, "MSMQ's default");
    assert_eq!(m41.sent_time().0, SPEC_TIME_2007_06_08_164419);
    assert!(m41.destination().unwrap().to_string().ends_with("simpleq"));

    let m42 = &got[1];
    assert_eq!(m42.label, "");
    let body = m42.body_str().unwrap();
    assert!(
        body.starts_with("<?xml version=\"1.0\"?>") && body.ends_with("</Order>"),
        "{body:?}"
    );
    assert_eq!(
        m42.id().to_string(),
        mqemu::MessageId::new(
            "caf195ea-615c-4264-ae08-11a4e60194c0".parse().unwrap(),
            20503
        )
        .to_string()
    );
    assert_eq!(
        m42.source_machine().to_string(),
        "caf195ea-615c-4264-ae08-11a4e60194c0"
    );
    assert_eq!(m42.correlation_id, Some(mqemu::MessageId([0; 20])));

    let m43 = &got[2];
    assert_eq!(m43.label, "", "<action> without MSMQ: gives no label");
    assert_eq!(
        m43.body_str(),
        Some("Both delivery and commitment receipt requests")
    );
    assert_eq!(
        m43.response_queue
            .as_ref()
            .unwrap()
            .to_string()
            .to_lowercase(),
        r"direct=http://machine1/msmq/private$/q1"
    );
}

#[test]
fn the_specs_stream_is_stored_exactly_once_in_order() {
    let srv = Srv::start(1 << 20);
    let msgs: Vec<Wire> = [
        "mqsrm-4.4-message-1",
        "mqsrm-4.4-message-2",
        "mqsrm-4.4-message-3",
    ]
    .iter()
    .map(|id| wire(&vector(id)))
    .collect();
    // Out of order first: the third before the second is ignored (answered, not stored).
    assert_eq!(srv.post(&msgs[0]).0, 200);
    assert_eq!(srv.post(&msgs[2]).0, 200);
    assert_eq!(srv.counts().1, 1, "the third waits for the second");
    assert_eq!(srv.post(&msgs[1]).0, 200);
    assert_eq!(srv.post(&msgs[2]).0, 200);
    // Resends of each are ignored.
    for m in &msgs {
        assert_eq!(srv.post(m).0, 200);
    }
    let got = srv.take_all(r".\private$\tsimpleq");
    let bodies: Vec<_> = got
        .iter()
        .map(|m| m.body_str().unwrap().to_owned())
        .collect();
    assert_eq!(bodies, ["First Message", "Message 0", "Last Message"]);
    assert!(got.iter().all(|m| m.is_transactional() && m.priority == 0));
    assert_eq!(got[0].label, "mqsender label");
}

#[test]
fn receipts_and_multicast_are_not_stored() {
    let srv = Srv::start(1 << 20);
    for id in [
        "mqsrm-4.3-delivery-receipt",
        "mqsrm-4.3-commitment-receipt",
        "mqsrm-4.4-receipt-1",
        "mqsrm-4.4-receipt-2",
        "mqsrm-4.4-receipt-3",
    ] {
        let (s, body) = srv.post(&wire(&vector(id)));
        assert_eq!(s, 200, "{id}: {body}");
    }
    // PGM multicast is not HTTP delivery: refused, nothing stored.
    assert_eq!(srv.post(&wire(&vector("mqsrm-4.5"))).0, 400);
    assert_eq!(srv.counts(), (0, 0));
}

#[test]
fn malformed_messages_are_refused_and_change_nothing() {
    let srv = Srv::start(64 * 1024);
    let good = wire(&vector("mqsrm-4.2"));
    assert_eq!(srv.post(&good).0, 200, "the unspoiled message is taken");
    let before = srv.counts();
    let spoil = |f: &dyn Fn(&str) -> String| -> Wire {
        let text = String::from_utf8(good.body.clone()).unwrap();
        Wire {
            path: good.path.clone(),
            content_type: good.content_type.clone(),
            body: f(&text).into_bytes(),
        }
    };
    let cases: Vec<(&str, Wire)> = vec![
        // The 1.3.12 overview stops after the body part's headers.
        ("truncated (1.3.12)", wire(&vector("mqsrm-1.3.12"))),
        ("truncated", spoil(&|t| t[..t.len() / 2].to_owned())),
        (
            "wrong boundary",
            Wire {
                content_type: good.content_type.replace("26500", "11111"),
                ..spoil(&|t| t.to_owned())
            },
        ),
        (
            "not multipart",
            Wire {
                content_type: "application/octet-stream".into(),
                ..spoil(&|t| t.to_owned())
            },
        ),
        (
            "bad XML",
            spoil(&|t| t.replace("</se:Header>", "</se:Headr>")),
        ),
        (
            "not an envelope",
            spoil(&|t| t.replace("se:Envelope", "se:Letter")),
        ),
        (
            "no <to>",
            spoil(&|t| t.replace("<to>http://machine2/msmq/private$/simpleQ</to>", "")),
        ),
        (
            "a DTD",
            spoil(&|t| {
                t.replacen(
                    "<se:Envelope",
                    "<!DOCTYPE x [<!ENTITY a \"b\">]><se:Envelope",
                    1,
                )
            }),
        ),
        ("bad id", spoil(&|t| t.replace("uuid:20503@", "uuid:x@"))),
        (
            "bad correlation",
            spoil(&|t| t.replace("AAAAAAAAAAAAAAAAAAAAAAAAAAA=", "AAAA")),
        ),
        (
            "bad time",
            spoil(&|t| t.replace("20070719T031140", "2007-07-19")),
        ),
        (
            "priority 9",
            spoil(&|t| t.replace("<Priority>3</Priority>", "<Priority>9</Priority>")),
        ),
        (
            "unknown queue",
            spoil(&|t| t.replace("private$/simpleQ</to>", "private$/nosuch</to>")),
        ),
        (
            "another computer",
            spoil(&|t| t.replace("http://machine2/", "http://machine9/")),
        ),
        (
            "non-stream to a transactional queue",
            spoil(&|t| t.replace("private$/simpleQ</to>", "private$/tsimpleq</to>")),
        ),
    ];
    for (what, w) in &cases {
        let (s, body) = srv.post(w);
        assert_eq!(s, 400, "{what}: {body}");
        assert!(
            body.contains("\"status\":400"),
            "{what}: a problem document: {body}"
        );
    }
    // A stream message to a non-transactional queue.
    let stream = wire(&vector("mqsrm-4.4-message-1"));
    let text = String::from_utf8(stream.body.clone())
        .unwrap()
        .replace("private$/tsimpleq", "private$/simpleq");
    let (s, _) = srv.post(&Wire {
        body: text.into_bytes(),
        ..stream
    });
    assert_eq!(s, 400, "stream to a non-transactional queue");
    // Over the body limit: refused before it is read.
    let big = spoil(&|t| {
        t.replace(
            "<orderId>3</orderId>",
            &format!("<orderId>{}</orderId>", "9".repeat(100_000)),
        )
    });
    assert_eq!(srv.post(&big).0, 413);
    assert_eq!(srv.counts(), before, "nothing stored");
}

/// A binary body may contain the boundary itself: the part's Content-Length decides where it
/// ends.
#[test]
fn a_body_holding_the_boundary_is_cut_by_its_length() {
    let srv = Srv::start(1 << 20);
    let tricky = "before\r\n--B--\r\nafter";
    let envelope = r#"<se:Envelope xmlns:se="http://schemas.xmlsoap.org/soap/envelope/" xmlns="http://schemas.xmlsoap.org/srmp/"><se:Header><path xmlns="http://schemas.xmlsoap.org/rp/"><action>MSMQ:tricky</action><to>http://machine2/msmq/private$/simpleq</to><id>uuid:7@6a74a825-57b2-43e5-9d34-f1d8b2b8950a</id></path><Msmq xmlns="msmq.namespace.xml"><Class>0</Class><Priority>5</Priority><App>42</App><BodyType>17</BodyType><SourceQmGuid>6a74a825-57b2-43e5-9d34-f1d8b2b8950a</SourceQmGuid></Msmq></se:Header><se:Body/></se:Envelope>"#;
    let body = format!(
        "--B\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{envelope}\r\n--B\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nContent-Id: <body@x>\r\n\r\n{tricky}\r\n--B--\r\n",
        envelope.len(),
        tricky.len()
    );
    let w = Wire {
        path: "/msmq/private$/simpleq".into(),
        content_type: "multipart/related; boundary=B; type=text/xml".into(),
        body: body.into_bytes(),
    };
    assert_eq!(srv.post(&w).0, 200);
    let got = srv.take_all(r".\private$\simpleq");
    assert_eq!(got[0].body_str(), Some(tricky));
    assert_eq!(
        (
            got[0].label.as_str(),
            got[0].priority,
            got[0].app_specific,
            got[0].body_type
        ),
        ("tricky", 5, 42, 17)
    );
    // The same message again is a duplicate by its id: stored once.
    assert_eq!(srv.post(&w).0, 200);
    assert_eq!(srv.counts().0, 0);
}

/// A sender's receipt endpoint: takes every POST on a thread of its own, answers `200`, and
/// hands over the request bodies.
struct ReceiptSink {
    url: String,
    got: std::sync::mpsc::Receiver<String>,
}

impl ReceiptSink {
    fn start() -> ReceiptSink {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/msmq/private$/receipts?SenderStream=XRntV",
            listener.local_addr().unwrap()
        );
        let (tx, got) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut conn = conn;
                    loop {
                        let mut length = 0;
                        let mut line = String::new();
                        // The request line and headers, to the blank line.
                        loop {
                            line.clear();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" {
                                break;
                            }
                            if let Some((k, v)) = line.split_once(':') {
                                if k.eq_ignore_ascii_case("content-length") {
                                    length = v.trim().parse().unwrap();
                                }
                            }
                        }
                        let mut body = vec![0; length];
                        reader.read_exact(&mut body).unwrap();
                        let _ = tx.send(String::from_utf8(body).unwrap());
                        conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                            .unwrap();
                    }
                });
            }
        });
        ReceiptSink { url, got }
    }

    fn next(&self) -> String {
        self.got
            .recv_timeout(Duration::from_secs(10))
            .expect("a receipt within 10 s")
    }
}

/// What a Windows sender needs back: a stream receipt to its `sendReceiptsTo` naming the
/// stream's last message (coalesced, and again for a resend, so it stops resending), and a
/// delivery receipt where a message asks for one (MC-MQSRM 3.1.5.1.6, examples 4.3 and 4.4).
#[test]
fn senders_get_stream_and_delivery_receipts() {
    let srv = Srv::start(1 << 20);
    let sink = ReceiptSink::start();
    let stream_id = r"uid:2744e4e1-2b48-43e8-b441-42745f280d53\4839986701558349830";
    let with_sink = |id: &str| {
        wire(&vector(id).replace(
            "http://machine1/MSMQ/private$/receipts**SenderStream=XRntV**",
            &sink.url,
        ))
    };
    // The first two of the stream, quickly: one receipt covers both (two if the machine
    // stalls between them for the coalescing time).
    assert_eq!(srv.post(&with_sink("mqsrm-4.4-message-1")).0, 200);
    assert_eq!(srv.post(&with_sink("mqsrm-4.4-message-2")).0, 200);
    let mut receipt = sink.next();
    if receipt.contains("<lastOrdinal>1</lastOrdinal>") {
        receipt = sink.next();
    }
    assert!(
        receipt.contains("<action>MSMQ:QM Ordering Ack</action>"),
        "{receipt}"
    );
    assert!(
        receipt.contains(&format!("<streamId>{stream_id}</streamId>")),
        "{receipt}"
    );
    assert!(
        receipt.contains("<lastOrdinal>2</lastOrdinal>"),
        "{receipt}"
    );
    assert!(receipt.contains("<Class>255</Class>"), "{receipt}");
    assert!(
        receipt.contains(&format!("<to>{}</to>", sink.url.replace('&', "&amp;"))),
        "{receipt}"
    );
    // A receipt is an SRMP message the receiver side of mqemu knows not to store.
    let parsed = mqemu::net::http::srmp::parse("text/xml", &receipt.clone().into()).unwrap();
    assert!(!parsed.is_user_message());
    // The resend of the second (its receipt was lost, say) is receipted again.
    assert_eq!(srv.post(&with_sink("mqsrm-4.4-message-2")).0, 200);
    assert!(sink.next().contains("<lastOrdinal>2</lastOrdinal>"));
    assert_eq!(srv.post(&with_sink("mqsrm-4.4-message-3")).0, 200);
    assert!(sink.next().contains("<lastOrdinal>3</lastOrdinal>"));

    // A message asking for a delivery receipt gets one, naming it as its sender does.
    // The printed example's body lost its closing delimiter (see the test above).
    let request = vector("mqsrm-4.3-request")
        .replace("http://machine1/MSMQ/private$/receipts", &sink.url)
        .replace(
            "requests\u{2014}MSMQ - SOAP boundary, 95692 are in same message.",
            "requests--MSMQ - SOAP boundary, 95692--",
        );
    let (status, why) = srv.post(&wire(&request));
    assert_eq!(status, 200, "{why}");
    let receipt = sink.next();
    assert!(
        receipt.contains("<deliveryReceipt><receivedAt>"),
        "{receipt}"
    );
    assert!(
        receipt.contains("<id>uuid:1@00000000-0000-0000-0000-000000000000</id></deliveryReceipt>"),
        "{receipt}"
    );
    assert!(receipt.contains("<Class>2</Class>"), "{receipt}");
    assert!(
        receipt.contains("<Correlation>AAAAAAAAAAAAAAAAAAAAAAEAAAA=</Correlation>"),
        "{receipt}"
    );
    assert_eq!(srv.take_all(r".\private$\tsimpleq").len(), 3);
}
