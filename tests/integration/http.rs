//! The HTTP face from outside, as any client sees it: every route, each error mapped to its
//! status and MSMQ name, rights refused, transactions held between requests and aborted at their
//! time limit, body limits, the OpenAPI document against the routes, and shutdown.

use std::time::Duration;

use mqemu::net::http::{HttpConfig, HttpServer};
use mqemu::net::{Auth, Right, User};
use mqemu::{Message, QueueManager, Tx};
use serde_json::{json, Value};

/// A running HTTP listener on its own runtime; stops when dropped.
struct Api {
    base: String,
    qm: QueueManager,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<std::sync::mpsc::Receiver<()>>,
    rt: Option<tokio::runtime::Runtime>,
    agent: ureq::Agent,
    token: Option<String>,
}

impl Api {
    fn start(config: HttpConfig) -> Api {
        Api::serve(QueueManager::new(), config)
    }

    fn serve(qm: QueueManager, config: HttpConfig) -> Api {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = rt
            .block_on(HttpServer::bind("127.0.0.1:0", qm.clone(), config))
            .unwrap();
        let base = format!("http://{}", server.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done) = std::sync::mpsc::channel();
        rt.spawn(async move {
            server
                .run(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            let _ = done_tx.send(());
        });
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        Api {
            base,
            qm,
            stop: Some(stop),
            done: Some(done),
            rt: Some(rt),
            agent,
            token: None,
        }
    }

    fn open() -> Api {
        Api::start(HttpConfig::default())
    }

    /// Sends a request; returns the status and the body as JSON (`Value::Null` when empty or
    /// not JSON; text bodies come back as a JSON string).
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{}", self.base, path);
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let resp = match (method, body) {
            ("GET" | "DELETE", _) => {
                let mut r = match method {
                    "GET" => self.agent.get(&url),
                    _ => self.agent.delete(&url),
                };
                if let Some(a) = &auth {
                    r = r.header("authorization", a);
                }
                r.call()
            }
            (_, body) => {
                let mut r = self.agent.post(&url);
                if let Some(a) = &auth {
                    r = r.header("authorization", a);
                }
                match body {
                    Some(b) => r
                        .header("content-type", "application/json")
                        .send(b.to_string()),
                    None => r.send_empty(),
                }
            }
        };
        let mut resp = resp.expect("the server answers");
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        let value = serde_json::from_str(&text).unwrap_or(if text.is_empty() {
            Value::Null
        } else {
            Value::String(text)
        });
        (status, value)
    }

    fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None)
    }

    fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(body))
    }

    fn post_empty(&self, path: &str) -> (u16, Value) {
        self.call("POST", path, None)
    }

    /// Stops the listener and waits for it to finish.
    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
            let done = self.done.take().unwrap();
            done.recv_timeout(Duration::from_secs(10))
                .expect("the listener stops");
        }
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        self.shutdown();
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

fn title(v: &Value) -> &str {
    v["title"].as_str().unwrap_or("")
}

#[test]
fn queues_are_created_listed_shown_purged_and_deleted() {
    let api = Api::open();
    let (s, q) = api.post("/api/queues", json!({"path": "orders", "journal": true}));
    assert_eq!(s, 201, "{q}");
    assert!(q["path"].as_str().unwrap().ends_with(r"private$\orders"));
    assert_eq!(q["journal"], true);
    let (s, q) = api.post(
        "/api/queues",
        json!({"path": r".\private$\billing", "transactional": true}),
    );
    assert_eq!((s, q["transactional"].clone()), (201, json!(true)));

    let (s, e) = api.post("/api/queues", json!({"path": "orders"}));
    assert_eq!((s, title(&e)), (409, "MQ_ERROR_QUEUE_EXISTS"));
    assert_eq!(e["hresult"], "0xC00E0005");
    assert_eq!(e["status"], 409);
    assert!(e["detail"].as_str().unwrap().contains("orders"));

    let (s, list) = api.get("/api/queues");
    assert_eq!(s, 200);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["path"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    for i in 0..3 {
        let (s, _) = api.post(
            "/api/queues/orders/messages",
            json!({"body": format!("m{i}")}),
        );
        assert_eq!(s, 201);
    }
    let (s, q) = api.get("/api/queues/orders");
    assert_eq!((s, q["messages"].clone()), (200, json!(3)));
    // A full path name, URL-encoded, names the same queue.
    let (s, q) = api.get("/api/queues/.%5Cprivate$%5Corders");
    assert_eq!((s, q["messages"].clone()), (200, json!(3)));

    let (s, n) = api.post_empty("/api/queues/orders/purge");
    assert_eq!((s, n["count"].clone()), (200, json!(3)));
    let (s, _) = api.call("DELETE", "/api/queues/orders", None);
    assert_eq!(s, 204);
    let (s, e) = api.get("/api/queues/orders");
    assert_eq!((s, title(&e)), (404, "MQ_ERROR_QUEUE_NOT_FOUND"));
}

#[test]
fn messages_are_sent_browsed_peeked_and_received_with_their_properties() {
    let api = Api::open();
    api.post("/api/queues", json!({"path": "orders"}));
    let (s, sent) = api.post(
        "/api/queues/orders/messages",
        json!({"body": "low", "label": "first", "priority": 1, "app_specific": 7}),
    );
    assert_eq!(s, 201);
    let low_id = sent["id"].as_str().unwrap().to_owned();
    let (s, _) = api.post(
        "/api/queues/orders/messages",
        json!({"body_base64": "AAEC/w==", "priority": 6, "correlation_id": low_id, "recoverable": true}),
    );
    assert_eq!(s, 201);

    // A raw body with its properties in headers.
    let mut resp = api
        .agent
        .post(&format!("{}/api/queues/orders/messages", api.base))
        .header("content-type", "text/plain")
        .header("MQ-Label", "raw one")
        .header("MQ-Priority", "3")
        .send("raw body")
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        201,
        "{}",
        resp.body_mut().read_to_string().unwrap()
    );

    // Browsing is in lookup-id order and pages.
    let (s, page) = api.get("/api/queues/orders/messages?limit=2");
    assert_eq!(s, 200);
    let msgs = page["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0]["label"], "first");
    assert_eq!(msgs[0]["app_specific"], 7);
    assert_eq!(msgs[1]["body"], Value::Null, "not UTF-8");
    assert_eq!(msgs[1]["body_base64"], "AAEC/w==");
    assert_eq!(msgs[1]["correlation_id"].as_str(), Some(low_id.as_str()));
    let next = page["next"].as_u64().unwrap();
    let (_, page) = api.get(&format!("/api/queues/orders/messages?after={next}"));
    let rest = page["messages"].as_array().unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["label"], "raw one");
    assert_eq!(rest[0]["body"], "raw body");
    assert_eq!(page["next"], Value::Null);

    // Peek and receive take priority order; by lookup id takes that one.
    let (s, m) = api.post_empty("/api/queues/orders/peek");
    assert_eq!((s, m["priority"].clone()), (200, json!(6)));
    let lookup = rest[0]["lookup_id"].as_u64().unwrap();
    let (s, m) = api.get(&format!("/api/queues/orders/messages/{lookup}"));
    assert_eq!((s, m["label"].clone()), (200, json!("raw one")));
    let (s, m) = api.call(
        "DELETE",
        &format!("/api/queues/orders/messages/{lookup}"),
        None,
    );
    assert_eq!((s, m["label"].clone()), (200, json!("raw one")));
    let (s, e) = api.get(&format!("/api/queues/orders/messages/{lookup}"));
    assert_eq!((s, title(&e)), (404, "MQ_ERROR_MESSAGE_NOT_FOUND"));
    let (_, m) = api.post_empty("/api/queues/orders/receive");
    assert_eq!(m["recoverable"], true);
    let (_, m) = api.post_empty("/api/queues/orders/receive");
    assert_eq!(m["body"], "low");
    let (s, e) = api.post_empty("/api/queues/orders/receive?timeout_ms=50");
    assert_eq!((s, title(&e)), (404, "MQ_ERROR_IO_TIMEOUT"));
}

#[test]
fn a_receive_waits_for_a_message_sent_meanwhile() {
    let api = Api::open();
    api.post("/api/queues", json!({"path": "orders"}));
    let qm = api.qm.clone();
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        qm.send(r".\private$\orders", Message::new("late"), Tx::None)
            .unwrap();
    });
    let (s, m) = api.post_empty("/api/queues/orders/receive?timeout_ms=10000");
    sender.join().unwrap();
    assert_eq!((s, m["body"].clone()), (200, json!("late")));
}

/// Each refusal the engine gives comes back with its HTTP status, MSMQ name and HRESULT, and
/// changes nothing.
#[test]
fn errors_map_to_their_statuses_and_msmq_names() {
    let api = Api::open();
    api.post("/api/queues", json!({"path": "plain"}));
    api.post(
        "/api/queues",
        json!({"path": "xact", "transactional": true}),
    );
    api.post("/api/queues", json!({"path": "small", "quota_kb": 1}));
    let big = "x".repeat(2000);
    let cases: Vec<(&str, &str, Option<Value>, u16, &str)> = vec![
        (
            "GET",
            "/api/queues/missing",
            None,
            404,
            "MQ_ERROR_QUEUE_NOT_FOUND",
        ),
        (
            "POST",
            "/api/queues",
            Some(json!({"path": "plain"})),
            409,
            "MQ_ERROR_QUEUE_EXISTS",
        ),
        (
            "POST",
            "/api/queues",
            Some(json!({"path": r"bad\\\name"})),
            400,
            "MQ_ERROR_ILLEGAL_QUEUE_PATHNAME",
        ),
        (
            "POST",
            "/api/queues",
            Some(json!({"nonsense": 1})),
            400,
            "MQ_ERROR_INVALID_PARAMETER",
        ),
        (
            "POST",
            "/api/queues/xact/messages",
            Some(json!({"body": "a"})),
            400,
            "MQ_ERROR_TRANSACTION_USAGE",
        ),
        (
            "POST",
            "/api/queues/plain/messages?tx=single",
            Some(json!({"body": "a"})),
            400,
            "MQ_ERROR_TRANSACTION_USAGE",
        ),
        (
            "POST",
            "/api/queues/plain/messages",
            Some(json!({"body": "a", "priority": 9})),
            400,
            "MQ_ERROR_ILLEGAL_PROPERTY_VALUE",
        ),
        (
            "POST",
            "/api/queues/plain/messages",
            Some(json!({"label": "l".repeat(300)})),
            400,
            "MQ_ERROR_LABEL_TOO_LONG",
        ),
        (
            "POST",
            "/api/queues/plain/messages",
            Some(json!({"body": "a", "body_base64": "YQ=="})),
            400,
            "MQ_ERROR_INVALID_PARAMETER",
        ),
        (
            "POST",
            "/api/queues/plain/messages",
            Some(json!({"body_base64": "%%%"})),
            400,
            "MQ_ERROR_INVALID_PARAMETER",
        ),
        (
            "POST",
            "/api/queues/plain/messages",
            Some(json!({"correlation_id": "nope"})),
            400,
            "MQ_ERROR_INVALID_PARAMETER",
        ),
        (
            "POST",
            "/api/queues/plain/messages?tx=77",
            Some(json!({"body": "a"})),
            400,
            "MQ_ERROR_INVALID_HANDLE",
        ),
        (
            "POST",
            "/api/queues/small/messages",
            Some(json!({"body": big})),
            507,
            "MQ_ERROR_INSUFFICIENT_RESOURCES",
        ),
        (
            "POST",
            "/api/queues/plain/receive",
            None,
            404,
            "MQ_ERROR_IO_TIMEOUT",
        ),
        (
            "POST",
            "/api/queues/plain/receive?tx=single",
            None,
            400,
            "MQ_ERROR_TRANSACTION_USAGE",
        ),
        (
            "POST",
            "/api/queues/plain/peek?timeout_ms=20",
            None,
            404,
            "MQ_ERROR_IO_TIMEOUT",
        ),
        (
            "GET",
            "/api/queues/plain/messages/99",
            None,
            404,
            "MQ_ERROR_MESSAGE_NOT_FOUND",
        ),
        (
            "POST",
            "/api/queues/plain;sub/messages",
            Some(json!({"body": "a"})),
            405,
            "MQ_ERROR_UNSUPPORTED_ACCESS_MODE",
        ),
        (
            "POST",
            "/api/transactions/5/commit",
            None,
            400,
            "MQ_ERROR_INVALID_HANDLE",
        ),
        (
            "POST",
            "/api/transactions/5/abort",
            None,
            400,
            "MQ_ERROR_INVALID_HANDLE",
        ),
        (
            "POST",
            "/api/transactions",
            Some(json!({"limit": 1})),
            400,
            "MQ_ERROR_INVALID_PARAMETER",
        ),
        (
            "POST",
            "/api/outgoing/DIRECT=TCP:10.0.0.1%5Cprivate$%5Cq/pause",
            None,
            404,
            "MQ_ERROR_QUEUE_NOT_FOUND",
        ),
        (
            "POST",
            "/api/outgoing/x/explode",
            None,
            400,
            "MQ_ERROR_INVALID_PARAMETER",
        ),
        (
            "DELETE",
            "/api/queues/missing",
            None,
            404,
            "MQ_ERROR_QUEUE_NOT_FOUND",
        ),
    ];
    for (method, path, body, status, name) in cases {
        let (s, e) = api.call(method, path, body);
        assert_eq!((s, title(&e)), (status, name), "{method} {path}: {e}");
        let hresult = e["hresult"].as_str().unwrap();
        assert!(hresult.starts_with("0xC00E"), "{hresult}");
    }
    for q in ["plain", "xact", "small"] {
        let (_, info) = api.get(&format!("/api/queues/{q}"));
        assert_eq!(
            info["messages"], 0,
            "{q}: a refused request changed nothing"
        );
    }
}

/// With users configured, a request acts for the user whose bearer token it carries, with that
/// user's rights, as on the native protocol.
#[test]
fn rights_are_those_of_the_token() {
    let users = vec![
        User {
            name: "ops".into(),
            token: Some("ops-token".into()),
            admin: true,
            queues: Default::default(),
            certificate: None,
        },
        User {
            name: "reader".into(),
            token: Some("reader-token".into()),
            admin: false,
            queues: [("orders".to_owned(), vec![Right::Peek])]
                .into_iter()
                .collect(),
            certificate: None,
        },
    ];
    let mut api = Api::start(HttpConfig {
        auth: Auth::new(users),
        ..HttpConfig::default()
    });
    let (s, e) = api.get("/api/queues");
    assert_eq!((s, title(&e)), (401, "MQ_ERROR_MESSAGE_NOT_AUTHENTICATED"));
    api.token = Some("wrong".into());
    assert_eq!(api.get("/api/queues").0, 401);

    api.token = Some("ops-token".into());
    assert_eq!(api.post("/api/queues", json!({"path": "orders"})).0, 201);
    assert_eq!(api.post("/api/queues", json!({"path": "secret"})).0, 201);
    assert_eq!(
        api.post("/api/queues/orders/messages", json!({"body": "a"}))
            .0,
        201
    );

    api.token = Some("reader-token".into());
    let (_, list) = api.get("/api/queues");
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "only the queues it has rights on: {list}"
    );
    assert_eq!(api.get("/api/queues/orders/messages").0, 200);
    assert_eq!(api.post_empty("/api/queues/orders/peek").0, 200);
    let refused: Vec<(&str, &str, Option<Value>)> = vec![
        (
            "POST",
            "/api/queues/orders/messages",
            Some(json!({"body": "b"})),
        ),
        ("POST", "/api/queues/orders/receive", None),
        ("DELETE", "/api/queues/orders/messages/1", None),
        ("POST", "/api/queues/orders/purge", None),
        ("DELETE", "/api/queues/orders", None),
        ("POST", "/api/queues", Some(json!({"path": "mine"}))),
        ("GET", "/api/queues/secret/messages", None),
        ("GET", "/api/queues/secret", None),
        ("GET", "/api/outgoing", None),
    ];
    for (method, path, body) in refused {
        let (s, e) = api.call(method, path, body);
        assert_eq!(
            (s, title(&e)),
            (403, "MQ_ERROR_ACCESS_DENIED"),
            "{method} {path}"
        );
    }
    assert_eq!(api.qm.open(r".\private$\orders").unwrap().len().unwrap(), 1);
}

#[test]
fn a_transaction_spans_requests_and_commit_or_abort_ends_it() {
    let api = Api::open();
    api.post("/api/queues", json!({"path": "in", "transactional": true}));
    api.post("/api/queues", json!({"path": "out", "transactional": true}));
    assert_eq!(
        api.post("/api/queues/in/messages?tx=single", json!({"body": "job"}))
            .0,
        201
    );

    // Receive from one queue and send to another in one transaction, then abort: as before.
    let (s, t) = api.post("/api/transactions", json!({}));
    assert_eq!(s, 201);
    let id = t["id"].as_u64().unwrap();
    let (s, m) = api.post_empty(&format!("/api/queues/in/receive?tx={id}"));
    assert_eq!((s, m["body"].clone()), (200, json!("job")));
    assert_eq!(
        api.post(
            &format!("/api/queues/out/messages?tx={id}"),
            json!({"body": "done"})
        )
        .0,
        201
    );
    assert_eq!(
        api.get("/api/queues/out").1["messages"],
        0,
        "not visible before commit"
    );
    assert_eq!(
        api.post_empty(&format!("/api/transactions/{id}/abort")).0,
        204
    );
    let (_, m) = api.get("/api/queues/in/messages");
    assert_eq!(
        m["messages"][0]["abort_count"], 1,
        "back, its abort counted"
    );
    assert_eq!(api.get("/api/queues/out").1["messages"], 0);

    // Again, committed.
    let id = api.post_empty("/api/transactions").1["id"]
        .as_u64()
        .unwrap();
    api.post_empty(&format!("/api/queues/in/receive?tx={id}"));
    api.post(
        &format!("/api/queues/out/messages?tx={id}"),
        json!({"body": "done"}),
    );
    assert_eq!(
        api.post_empty(&format!("/api/transactions/{id}/commit")).0,
        204
    );
    assert_eq!(api.get("/api/queues/in").1["messages"], 0);
    assert_eq!(api.get("/api/queues/out").1["messages"], 1);
    let (s, e) = api.post_empty(&format!("/api/transactions/{id}/commit"));
    assert_eq!((s, title(&e)), (400, "MQ_ERROR_INVALID_HANDLE"), "ended");
}

#[test]
fn a_transaction_past_its_time_limit_aborts_and_gives_its_messages_back() {
    let api = Api::open();
    api.post("/api/queues", json!({"path": "in", "transactional": true}));
    api.post("/api/queues/in/messages?tx=single", json!({"body": "job"}));
    let (_, t) = api.post("/api/transactions", json!({"time_limit_ms": 300}));
    let id = t["id"].as_u64().unwrap();
    assert_eq!(t["time_limit_ms"], 300);
    assert_eq!(
        api.post_empty(&format!("/api/queues/in/receive?tx={id}")).0,
        200
    );
    let q = api.qm.open(r".\private$\in").unwrap();
    // Locked messages count; the visible one is back once the reaper aborts.
    let back = q.receive(Duration::from_secs(10), Tx::Single).unwrap();
    assert_eq!(back.body_str(), Some("job"));
    assert_eq!(back.abort_count(), 1);
    let (s, e) = api.post_empty(&format!("/api/transactions/{id}/commit"));
    assert_eq!((s, title(&e)), (400, "MQ_ERROR_INVALID_HANDLE"));
}

#[test]
fn messages_move_to_a_subqueue_and_back() {
    let api = Api::open();
    api.post("/api/queues", json!({"path": "orders"}));
    api.post("/api/queues/orders/messages", json!({"body": "bad"}));
    let (_, page) = api.get("/api/queues/orders/messages");
    let lookup = page["messages"][0]["lookup_id"].as_u64().unwrap();
    let (s, e) = api.post(
        &format!("/api/queues/orders/messages/{lookup}/move"),
        json!({"to": ";poison"}),
    );
    assert_eq!(s, 204, "{e}");
    assert_eq!(
        api.get("/api/queues/orders/messages").1["messages"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let (_, sub) = api.get("/api/queues/orders;poison/messages");
    assert_eq!(sub["messages"][0]["body"], "bad");
    assert_eq!(sub["messages"][0]["move_count"], 1);
    let (s, _) = api.post(
        &format!("/api/queues/orders;poison/messages/{lookup}/move"),
        json!({"to": "orders"}),
    );
    assert_eq!(s, 204);
    assert_eq!(api.get("/api/queues/orders").1["messages"], 1);
}

#[test]
fn a_body_over_the_limit_is_refused_before_it_is_read() {
    let api = Api::start(HttpConfig {
        max_body: 1024,
        ..HttpConfig::default()
    });
    api.post("/api/queues", json!({"path": "orders"}));
    let mut resp = api
        .agent
        .post(&format!("{}/api/queues/orders/messages", api.base))
        .header("content-type", "application/octet-stream")
        .send(vec![0u8; 4096])
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        413,
        "{}",
        resp.body_mut().read_to_string().unwrap()
    );
    assert_eq!(api.qm.open(r".\private$\orders").unwrap().len().unwrap(), 0);
}

/// Every route in the OpenAPI document is served (none answers as an unknown route would), and
/// every route these tests call is in the document.
#[test]
fn the_openapi_document_and_the_routes_agree() {
    let api = Api::open();
    let (s, doc) = api.get("/api/openapi.json");
    assert_eq!(s, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    let documented: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_uppercase(), p.clone()))
        })
        .collect();
    assert_eq!(documented, {
        let mut d = documented.clone();
        d.dedup();
        d
    });
    for (method, path) in &documented {
        let concrete = path
            .replace("{name}", "nosuchqueue")
            .replace("{lookup_id}", "1")
            .replace("{id}", "1")
            .replace("{action}", "pause")
            .replace("{queue}", "q");
        let url = format!("{}{}", api.base, concrete);
        let mut resp = match method.as_str() {
            "GET" => api.agent.get(&url).call(),
            "DELETE" => api.agent.delete(&url).call(),
            _ => api.agent.post(&url).send_empty(),
        }
        .unwrap();
        let status = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        // axum answers an unknown route 404 and a known path's unknown method 405, both with
        // an empty body; every documented route answers with a body of its own.
        assert!(status != 405, "{method} {path}: {status}");
        assert!(
            status != 404 || ctype == "application/problem+json",
            "{method} {path} is not routed: {body}"
        );
    }
    let called = [
        ("GET", "/api/queues"),
        ("POST", "/api/queues"),
        ("GET", "/api/queues/{name}"),
        ("DELETE", "/api/queues/{name}"),
        ("POST", "/api/queues/{name}/purge"),
        ("POST", "/api/queues/{name}/messages"),
        ("GET", "/api/queues/{name}/messages"),
        ("POST", "/api/queues/{name}/peek"),
        ("POST", "/api/queues/{name}/receive"),
        ("GET", "/api/queues/{name}/messages/{lookup_id}"),
        ("DELETE", "/api/queues/{name}/messages/{lookup_id}"),
        ("POST", "/api/queues/{name}/messages/{lookup_id}/move"),
        ("POST", "/api/queues/{name}/messages/{lookup_id}/requeue"),
        ("GET", "/api/triggers"),
        ("POST", "/msmq/private$/{queue}"),
        ("POST", "/msmq/{queue}"),
        ("POST", "/api/transactions"),
        ("POST", "/api/transactions/{id}/commit"),
        ("POST", "/api/transactions/{id}/abort"),
        ("GET", "/api/outgoing"),
        ("POST", "/api/outgoing/{name}/{action}"),
        ("GET", "/api/status"),
        ("GET", "/api/cluster"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
    ];
    for (method, path) in called {
        assert!(
            documented.contains(&(method.to_owned(), path.to_owned())),
            "{method} {path} is not in the OpenAPI document"
        );
    }
    // And the document served is the one the library builds without a server.
    let built: Value =
        serde_json::from_str(&mqemu::net::http::openapi().to_json().unwrap()).unwrap();
    assert_eq!(built["paths"], doc["paths"]);
}

#[test]
fn health_readiness_status_and_metrics() {
    let api = Api::open();
    assert_eq!(api.get("/healthz"), (200, json!("ok\n")));
    assert_eq!(api.get("/readyz"), (200, json!("ready\n")));
    api.post("/api/queues", json!({"path": "orders", "journal": true}));
    api.post("/api/queues/orders/messages", json!({"body": "a"}));
    api.post("/api/queues/orders/messages", json!({"body": "b"}));
    api.post_empty("/api/queues/orders/receive");
    let (s, st) = api.get("/api/status");
    assert_eq!(s, 200);
    assert_eq!(
        (st["queues"].clone(), st["messages"].clone()),
        (json!(1), json!(1))
    );
    let (s, text) = api.get("/metrics");
    assert_eq!(s, 200);
    let text = text.as_str().unwrap();
    assert!(
        text.contains("mqemu_queue_messages{queue=\"localhost\\\\private$\\\\orders\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("mqemu_queue_journal_messages{queue=\"localhost\\\\private$\\\\orders\"} 1"),
        "{text}"
    );
    assert!(text.contains("# TYPE mqemu_http_requests_total counter"));
    for line in [
        "mqemu_queue_messages_arrived_total{queue=\"localhost\\\\private$\\\\orders\"} 2",
        "mqemu_queue_messages_removed_total{queue=\"localhost\\\\private$\\\\orders\"} 1",
        "mqemu_dead_letter_messages{queue=\"DEADLETTER\"} 0",
        "mqemu_nacks_total 0",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }

    // A message received under an open transaction is locked, not ready, until it ends.
    api.post(
        "/api/queues",
        json!({"path": "jobs", "transactional": true}),
    );
    api.post("/api/queues/jobs/messages?tx=single", json!({"body": "1"}));
    api.post("/api/queues/jobs/messages?tx=single", json!({"body": "2"}));
    let tx = api.post_empty("/api/transactions").1["id"]
        .as_u64()
        .unwrap();
    assert_eq!(
        api.post_empty(&format!("/api/queues/jobs/receive?tx={tx}"))
            .0,
        200
    );
    let jobs = api.get("/api/queues/jobs").1;
    assert_eq!(
        (jobs["messages"].clone(), jobs["locked_messages"].clone()),
        (json!(2), json!(1))
    );
    let text = api.get("/metrics").1;
    let text = text.as_str().unwrap();
    for line in [
        "mqemu_queue_messages_ready{queue=\"localhost\\\\private$\\\\jobs\"} 1",
        "mqemu_queue_messages_locked{queue=\"localhost\\\\private$\\\\jobs\"} 1",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    api.post_empty(&format!("/api/transactions/{tx}/abort"));
    assert_eq!(api.get("/api/queues/jobs").1["locked_messages"], json!(0));
}

/// Shutdown stops the listener, answers `/readyz` no more, and aborts the transactions still
/// open, so their messages are back.
#[test]
fn shutdown_aborts_open_transactions() {
    let mut api = Api::open();
    api.post("/api/queues", json!({"path": "in", "transactional": true}));
    api.post("/api/queues/in/messages?tx=single", json!({"body": "job"}));
    let id = api.post_empty("/api/transactions").1["id"]
        .as_u64()
        .unwrap();
    assert_eq!(
        api.post_empty(&format!("/api/queues/in/receive?tx={id}")).0,
        200
    );
    let qm = api.qm.clone();
    api.shutdown();
    let q = qm.open(r".\private$\in").unwrap();
    let m = q
        .receive(Duration::ZERO, Tx::Single)
        .expect("given back at shutdown");
    assert_eq!(m.abort_count(), 1);
    assert!(
        api.agent
            .get(&format!("{}/healthz", api.base))
            .call()
            .is_err(),
        "no longer listening"
    );
}

#[test]
fn a_server_serves_http_beside_the_native_protocol() {
    // `mqemu serve --http` on a durable directory: both faces see the same queues.
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mqemu"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut http = None;
    let mut native = None;
    while http.is_none() || native.is_none() {
        let mut line = String::new();
        assert!(
            std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0,
            "the server exited"
        );
        if let Some(a) = line.trim().strip_prefix("http on ") {
            http = Some(a.to_owned());
        }
        if let Some(a) = line.trim().strip_prefix("listening on ") {
            native = Some(a.to_owned());
        }
    }
    let (http, native) = (http.unwrap(), native.unwrap());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let resp = agent
        .post(&format!("http://{http}/api/queues"))
        .header("content-type", "application/json")
        .send(json!({"path": "both"}).to_string())
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let client = mqemu::net::BlockingClient::connect(&native).unwrap();
    let q = client.open(r".\private$\both").unwrap();
    q.send(
        Message::new("native").with_delivery(mqemu::Delivery::Recoverable),
        mqemu::net::Tx::None,
    )
    .unwrap();
    let mut resp = agent
        .post(&format!("http://{http}/api/queues/both/receive"))
        .send_empty()
        .unwrap();
    let m: Value = serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(m["body"], "native");
    // The scrape counts the native connection and the log's group commits.
    let text = agent
        .get(&format!("http://{http}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from\n{text}"))
    };
    assert_eq!(value("mqemu_connections"), 1.0);
    assert!(value("mqemu_connections_accepted_total") >= 1.0);
    assert!(value("mqemu_requests_total") >= 2.0, "open and send");
    assert!(
        value("mqemu_log_batch_records_count") >= 1.0,
        "the send's batch"
    );
    assert!(value("mqemu_log_sync_seconds_count") >= 1.0);
    // A commit waits at least for its batch's write and sync.
    assert_eq!(
        value("mqemu_log_commit_wait_seconds_count"),
        value("mqemu_log_sync_seconds_count")
    );
    assert!(value("mqemu_log_commit_wait_seconds_sum") >= value("mqemu_log_sync_seconds_sum"));
    assert_eq!(
        value("mqemu_log_batch_records_bucket{le=\"+Inf\"}"),
        value("mqemu_log_batch_records_count")
    );
    drop(client);
    let _ = child.kill();
    let _ = child.wait();
}

/// `promtool check metrics` (Prometheus's own linter) accepts a scrape taken while messages
/// flow. Skipped, saying so, where promtool is not installed, unless MQEMU_REQUIRE_PROMTOOL is
/// set (`.ci/run` installs Debian's prometheus package and sets it).
#[test]
fn promtool_accepts_the_metrics_under_load() {
    let promtool = std::process::Command::new("promtool")
        .arg("--version")
        .output();
    if promtool.is_err() {
        assert!(
            std::env::var_os("MQEMU_REQUIRE_PROMTOOL").is_none(),
            "MQEMU_REQUIRE_PROMTOOL is set but promtool is not installed"
        );
        eprintln!("skipped: promtool is not installed (Debian package prometheus)");
        return;
    }
    // On disk, so the log's histograms are in the scrape too.
    let dir = tempfile::tempdir().unwrap();
    let api = Api::serve(
        QueueManager::builder().open(dir.path()).unwrap(),
        HttpConfig::default(),
    );
    for q in ["orders", "billing", r#"odd"name"#] {
        api.post("/api/queues", json!({"path": q, "journal": true}));
    }
    let qm = api.qm.clone();
    let load = std::thread::spawn(move || {
        let q = qm.open(r".\private$\orders").unwrap();
        for i in 0..20_000u32 {
            let m = Message::new(i.to_string());
            let m = if i % 10 == 0 {
                m.with_delivery(mqemu::Delivery::Recoverable)
            } else {
                m
            };
            q.send(m, Tx::None).unwrap();
            if i % 2 == 0 {
                q.receive(Duration::ZERO, Tx::None).unwrap();
            }
        }
    });
    let mut scrapes = Vec::new();
    while !load.is_finished() || scrapes.is_empty() {
        let (s, text) = api.get("/metrics");
        assert_eq!(s, 200);
        scrapes.push(text.as_str().unwrap().to_owned());
    }
    load.join().unwrap();
    let scrape = scrapes.last().unwrap();
    assert!(
        scrape.contains("mqemu_log_commit_wait_seconds_bucket"),
        "the log's histograms are linted too"
    );
    let mut check = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut check.stdin.take().unwrap(), scrape.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{scrape}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A dead letter goes back where it was going: from a subqueue by a move (same id), from the
/// transactional dead-letter queue in one transaction with the send, and a message already in
/// its destination is refused.
#[test]
fn dead_letters_are_requeued_to_their_destination() {
    let api = Api::open();
    api.post("/api/queues", json!({"path": "orders"}));
    api.post(
        "/api/queues",
        json!({"path": "billing", "transactional": true}),
    );

    // From a subqueue.
    api.post("/api/queues/orders/messages", json!({"body": "poisoned"}));
    let lookup = api.get("/api/queues/orders/messages").1["messages"][0]["lookup_id"]
        .as_u64()
        .unwrap();
    api.post(
        &format!("/api/queues/orders/messages/{lookup}/move"),
        json!({"to": ";poison"}),
    );
    let (s, r) = api.post_empty(&format!(
        "/api/queues/orders;poison/messages/{lookup}/requeue"
    ));
    assert_eq!(s, 200, "{r}");
    assert!(r["queue"].as_str().unwrap().ends_with(r"private$\orders"));
    let (_, back) = api.get(&format!("/api/queues/orders/messages/{lookup}"));
    assert_eq!(back["body"], "poisoned");
    assert_eq!(back["id"], r["id"], "moved back, the same message");
    let (s, e) = api.post_empty(&format!("/api/queues/orders/messages/{lookup}/requeue"));
    assert_eq!(
        (s, title(&e)),
        (400, "MQ_ERROR_ILLEGAL_OPERATION"),
        "in its destination already"
    );

    // From DEADXACT: a transactional message that outlived its time to be received.
    let mut late = Message::new("late invoice");
    late.label = "invoice 7".into();
    late.time_to_be_received = Some(Duration::from_millis(1));
    api.qm
        .send(r".\private$\billing", late, Tx::Single)
        .unwrap();
    let deadxact = api.qm.open(r".\system$;DEADXACT").unwrap();
    crate::support::eventually("the expired message in DEADXACT", || {
        deadxact.len().unwrap() == 1
    });
    let dead = deadxact.peek(Duration::ZERO).unwrap();
    let (s, r) = api.post_empty(&format!(
        "/api/queues/.%5Csystem$;DEADXACT/messages/{}/requeue",
        dead.lookup_id()
    ));
    assert_eq!(s, 200, "{r}");
    assert_eq!(deadxact.len().unwrap(), 0);
    let billing = api.qm.open(r".\private$\billing").unwrap();
    let m = billing.receive(Duration::ZERO, Tx::Single).unwrap();
    assert_eq!(
        (m.label.as_str(), m.body_str()),
        ("invoice 7", Some("late invoice"))
    );
    assert_eq!(
        m.time_to_be_received, None,
        "requeued without the limit that expired it"
    );
}
