//! The HTTP targets: mqemu's JSON API (`http://HOST:PORT`) and RabbitMQ's management API
//! (`rabbitmq-http://USER:PASS@HOST:PORT/VHOST`), each worker one keep-alive HTTP/1.1
//! connection making one request at a time (HTTP/1.1 does not pipeline), `--window` workers per
//! producer or consumer, all on the bench's tokio runtime as the native and AMQP workers are.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::{json, Value};

use super::load::Shared;
use super::measure::Latencies;
use super::{invalid, Mode};

/// An HTTP API to drive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpTarget {
    /// `http://host:port`.
    pub(crate) base: String,
    /// RabbitMQ's management API, with its user, password and vhost; `None` for mqemu's API.
    pub(crate) rabbit: Option<(String, String, String)>,
}

/// One keep-alive connection.
struct Conn {
    sender: SendRequest<Full<Bytes>>,
    host: String,
    auth: Option<String>,
}

/// Opens a keep-alive connection to `host`.
async fn open(host: &str) -> mqemu::Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect(host),
    )
    .await
    .map_err(|_| invalid(format!("connecting to {host} timed out")))?
    .map_err(|e| invalid(format!("cannot connect to {host}: {e}")))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| invalid(format!("HTTP handshake with {host}: {e}")))?;
    tokio::spawn(conn);
    Ok(sender)
}

impl Conn {
    async fn call(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> mqemu::Result<(u16, Value)> {
        // A server may close a keep-alive connection after so many requests (RabbitMQ's does):
        // open another before sending, never after, so no request is sent twice.
        if self.sender.is_closed() || self.sender.ready().await.is_err() {
            self.sender = open(&self.host).await?;
        }
        let fail = |e: &dyn std::fmt::Display| invalid(format!("{method} {path}: {e}"));
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host);
        if let Some(a) = &self.auth {
            req = req.header("authorization", a);
        }
        let payload = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                Bytes::from(b.to_string())
            }
            None => Bytes::new(),
        };
        let req = req.body(Full::new(payload)).map_err(|e| fail(&e))?;
        let resp = self.sender.send_request(req).await.map_err(|e| fail(&e))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| fail(&e))?
            .to_bytes();
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }
}

impl HttpTarget {
    pub(super) fn kind(&self) -> &'static str {
        if self.rabbit.is_some() {
            "rabbitmq-http"
        } else {
            "http"
        }
    }

    fn enc(s: &str) -> String {
        utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
    }

    fn auth(&self) -> Option<String> {
        let (user, pass, _) = self.rabbit.as_ref()?;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        Some(format!("Basic {token}"))
    }

    /// A new keep-alive connection.
    async fn connect(&self) -> mqemu::Result<Conn> {
        let host = self.base.trim_start_matches("http://").to_owned();
        Ok(Conn {
            sender: open(&host).await?,
            host,
            auth: self.auth(),
        })
    }

    /// Creates the mode's queue if missing, and empties it.
    pub(super) async fn prepare(&self, queue: &str, mode: Mode) -> mqemu::Result<()> {
        let mut c = self.connect().await?;
        match &self.rabbit {
            None => {
                let (s, v) = c
                    .call(
                        "POST",
                        "/api/queues",
                        Some(&json!({"path": queue, "transactional": mode == Mode::Transactional})),
                    )
                    .await?;
                if s != 201 && s != 409 {
                    return Err(invalid(format!("create the bench queue: {s} {v}")));
                }
                let (s, v) = c
                    .call(
                        "POST",
                        &format!("/api/queues/{}/purge", Self::enc(queue)),
                        None,
                    )
                    .await?;
                if s != 200 {
                    return Err(invalid(format!("purge the bench queue: {s} {v}")));
                }
            }
            Some((_, _, vhost)) => {
                let path = format!("/api/queues/{}/{}", Self::enc(vhost), Self::enc(queue));
                let (s, v) = c
                    .call(
                        "PUT",
                        &path,
                        Some(&json!({"durable": mode != Mode::Express})),
                    )
                    .await?;
                if !(200..300).contains(&s) {
                    return Err(invalid(format!("declare the bench queue: {s} {v}")));
                }
                let (s, v) = c.call("DELETE", &format!("{path}/contents"), None).await?;
                if !(200..300).contains(&s) {
                    return Err(invalid(format!("purge the bench queue: {s} {v}")));
                }
            }
        }
        Ok(())
    }

    /// How consumers take messages, for the report.
    pub(super) fn receives(&self) -> &'static str {
        match self.rabbit {
            None => "POST /api/queues/{q}/receive, one message a request",
            Some(_) => {
                "POST /api/queues/{vhost}/{q}/get, ackmode ack_requeue_false, one message a request"
            }
        }
    }

    /// Sends `share` messages over `window` connections; returns the send latencies.
    pub(super) async fn producer(
        self,
        queue: String,
        share: u64,
        size: usize,
        mode: Mode,
        window: usize,
        shared: Arc<Shared>,
    ) -> mqemu::Result<Latencies> {
        let issued = Arc::new(AtomicU64::new(0));
        let mut conns = Vec::new();
        for _ in 0..window.max(1) {
            conns.push(self.connect().await?);
        }
        let this = Arc::new(self);
        let mut workers = tokio::task::JoinSet::new();
        for c in conns {
            let (this, queue, issued, shared) =
                (this.clone(), queue.clone(), issued.clone(), shared.clone());
            workers.spawn(async move {
                this.produce(c, &queue, share, size, mode, &issued, &shared)
                    .await
            });
        }
        let mut all = Latencies::new();
        while let Some(w) = workers.join_next().await {
            all.merge(&w.map_err(super::panicked)??);
        }
        Ok(all)
    }

    #[allow(clippy::too_many_arguments)]
    async fn produce(
        &self,
        mut c: Conn,
        queue: &str,
        share: u64,
        size: usize,
        mode: Mode,
        issued: &AtomicU64,
        shared: &Shared,
    ) -> mqemu::Result<Latencies> {
        let mut latencies = Latencies::new();
        let b64 = base64::engine::general_purpose::STANDARD;
        while shared.may_send() && issued.fetch_add(1, Ordering::SeqCst) < share {
            let payload = b64.encode(shared.stamped_body(size));
            let t0 = Instant::now();
            match &self.rabbit {
                None => {
                    let tx = if mode == Mode::Transactional {
                        "?tx=single"
                    } else {
                        ""
                    };
                    let path = format!("/api/queues/{}/messages{tx}", Self::enc(queue));
                    let body =
                        json!({"body_base64": payload, "recoverable": mode != Mode::Express});
                    let (s, v) = c.call("POST", &path, Some(&body)).await?;
                    if s != 201 {
                        return Err(invalid(format!("send: {s} {v}")));
                    }
                }
                Some((_, _, vhost)) => {
                    let path = format!("/api/exchanges/{}/amq.default/publish", Self::enc(vhost));
                    let body = json!({
                        "properties": {"delivery_mode": if mode == Mode::Express { 1 } else { 2 }},
                        "routing_key": queue,
                        "payload": payload,
                        "payload_encoding": "base64",
                    });
                    let (s, v) = c.call("POST", &path, Some(&body)).await?;
                    if s != 200 || v["routed"] != true {
                        return Err(invalid(format!("publish: {s} {v}")));
                    }
                }
            }
            latencies.record(t0.elapsed());
            shared.sent.fetch_add(1, Ordering::SeqCst);
        }
        Ok(latencies)
    }

    /// Receives over `window` connections until the producers' messages are in; returns the
    /// end-to-end latencies.
    pub(super) async fn consumer(
        self,
        queue: String,
        mode: Mode,
        window: usize,
        shared: Arc<Shared>,
    ) -> mqemu::Result<Latencies> {
        let mut conns = Vec::new();
        for _ in 0..window.max(1) {
            conns.push(self.connect().await?);
        }
        let this = Arc::new(self);
        let mut workers = tokio::task::JoinSet::new();
        for c in conns {
            let (this, queue, shared) = (this.clone(), queue.clone(), shared.clone());
            workers.spawn(async move { this.consume(c, &queue, mode, &shared).await });
        }
        let mut all = Latencies::new();
        while let Some(w) = workers.join_next().await {
            all.merge(&w.map_err(super::panicked)??);
        }
        Ok(all)
    }

    async fn consume(
        &self,
        mut c: Conn,
        queue: &str,
        mode: Mode,
        shared: &Shared,
    ) -> mqemu::Result<Latencies> {
        let mut latencies = Latencies::new();
        let b64 = base64::engine::general_purpose::STANDARD;
        while !shared.consumers_done() {
            let payload = match &self.rabbit {
                None => {
                    let tx = if mode == Mode::Transactional {
                        "&tx=single"
                    } else {
                        ""
                    };
                    let path = format!(
                        "/api/queues/{}/receive?timeout_ms=100{tx}",
                        Self::enc(queue)
                    );
                    match c.call("POST", &path, None).await? {
                        (200, v) => v["body_base64"].as_str().map(str::to_owned),
                        (404, _) => None,
                        (s, v) => return Err(invalid(format!("receive: {s} {v}"))),
                    }
                }
                Some((_, _, vhost)) => {
                    let path = format!("/api/queues/{}/{}/get", Self::enc(vhost), Self::enc(queue));
                    let body =
                        json!({"count": 1, "ackmode": "ack_requeue_false", "encoding": "base64"});
                    match c.call("POST", &path, Some(&body)).await? {
                        (200, Value::Array(mut got)) if !got.is_empty() => {
                            got.swap_remove(0)["payload"].as_str().map(str::to_owned)
                        }
                        (200, _) => {
                            // Nothing there: the management API has no wait; poll.
                            tokio::time::sleep(Duration::from_millis(2)).await;
                            None
                        }
                        (s, v) => return Err(invalid(format!("get: {s} {v}"))),
                    }
                }
            };
            if let Some(p) = payload {
                let body = b64
                    .decode(p)
                    .map_err(|e| invalid(format!("a body that is not base64: {e}")))?;
                if let Some(ns) = shared.received(&body) {
                    latencies.record_ns(ns);
                }
            }
        }
        Ok(latencies)
    }
}

/// Parses `http://HOST:PORT` or `rabbitmq-http://USER:PASS@HOST:PORT/VHOST` (user and password
/// default to guest, the port to 15672, the vhost to `/`; `%2f` in it is `/`).
pub(super) fn parse(url: &str) -> Option<mqemu::Result<HttpTarget>> {
    let bad = |why: &str| invalid(format!("--target {url:?}: {why}"));
    if let Some(rest) = url.strip_prefix("http://") {
        let hostport = rest.trim_end_matches('/');
        if hostport.is_empty() || hostport.contains('/') || hostport.contains('@') {
            return Some(Err(bad("expected http://HOST:PORT (mqemu serve --http)")));
        }
        return Some(Ok(HttpTarget {
            base: format!("http://{hostport}"),
            rabbit: None,
        }));
    }
    let rest = url.strip_prefix("rabbitmq-http://")?;
    let (authority, vhost) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hostport) = authority
        .rsplit_once('@')
        .unwrap_or(("guest:guest", authority));
    let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    if hostport.is_empty() {
        return Some(Err(bad("no host")));
    }
    let hostport = if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:15672")
    };
    let vhost = percent_encoding::percent_decode_str(vhost)
        .decode_utf8_lossy()
        .into_owned();
    Some(Ok(HttpTarget {
        base: format!("http://{hostport}"),
        rabbit: Some((
            user.to_owned(),
            pass.to_owned(),
            if vhost.is_empty() {
                "/".to_owned()
            } else {
                vhost
            },
        )),
    }))
}
