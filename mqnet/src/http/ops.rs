//! What operators and orchestrators read: `/healthz` (the process answers), `/readyz` (storage
//! usable and not shutting down), `/api/status`, and `/metrics` in Prometheus's text format.
//!
//! Metric names follow Prometheus's conventions (`mqemu_` prefix, base units, `_total` for
//! counters); docs/http.md maps each to its `rabbitmq_prometheus` counterpart.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::problem::Problem;
use super::{AppState, Caller};
use crate::auth::key_of;

pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(status))
        .routes(routes!(metrics))
        .routes(routes!(cluster))
}

/// The cluster this server is a virtual server of: nodes (up or down), groups with their state,
/// owner, failover counts and resources. `{"clustered": false}` on a server of its own.
#[utoipa::path(get, path = "/api/cluster", tag = "operations",
    responses((status = 200, description = "`clustered`, and mqcluster's status: `nodes` and `groups`", body = Object),
        (status = 403, body = Problem), (status = 503, description = "the cluster's store cannot be read", body = Problem)))]
async fn cluster(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, super::ApiError> {
    caller.check_admin()?;
    let Some(view) = state.config.cluster.clone() else {
        return Ok(Json(serde_json::json!({"clustered": false})));
    };
    let mut status = tokio::task::spawn_blocking(move || view())
        .await
        .map_err(|e| {
            super::ApiError(mqcore::Error::new(mqcore::ErrorCode::Error, e.to_string()))
        })??;
    if let Some(obj) = status.as_object_mut() {
        obj.insert("clustered".into(), serde_json::Value::Bool(true));
    }
    Ok(Json(status))
}

/// Alive: the process answers HTTP.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "ok")))]
async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready for traffic: the storage takes writes and the server is not shutting down.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "ready"), (status = 503, description = "not ready, and why")))]
async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, String) {
    if state.draining.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "draining: shutting down\n".into(),
        );
    }
    if let Some(e) = state.qm.storage_failure() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("storage failed: {}\n", e.detail()),
        );
    }
    (StatusCode::OK, "ready\n".into())
}

/// The queue manager at a glance.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Status {
    /// Computer name.
    pub name: String,
    /// Queue manager GUID.
    pub guid: String,
    /// Compatibility level (`msmq3`, `msmq4`).
    pub compat: String,
    /// Whether messages are kept on disk.
    pub durable: bool,
    /// Queues.
    pub queues: usize,
    /// Messages in all queues.
    pub messages: u64,
    /// Transactions open over HTTP.
    pub http_transactions: usize,
    /// HTTP requests answered since start.
    pub http_requests_total: u64,
    /// Seconds since the listener started.
    pub uptime_secs: u64,
}

/// The queue manager's name, storage and totals.
#[utoipa::path(get, path = "/api/status", tag = "operations",
    responses((status = 200, body = Status), (status = 401, body = Problem)))]
async fn status(State(state): State<Arc<AppState>>, _caller: Caller) -> Json<Status> {
    let queues = state.qm.queues();
    Json(Status {
        name: state.qm.name().to_owned(),
        guid: state.qm.guid().to_string(),
        compat: state.qm.compat().to_string(),
        durable: state.qm.is_durable(),
        messages: queues.iter().map(|q| q.message_count as u64).sum(),
        queues: queues.len(),
        http_transactions: state.txs.len(),
        http_requests_total: state.requests.load(Ordering::Relaxed),
        uptime_secs: state.started.elapsed().as_secs(),
    })
}

/// A histogram from per-bucket counts (`counts[i]` at most `bounds[i]`, the last above them
/// all), written cumulatively as the text format wants.
fn histogram(
    out: &mut String,
    name: &str,
    help: &str,
    bounds: &[String],
    counts: &[u64],
    sum: f64,
) {
    family(out, name, "histogram", help);
    let mut cumulative = 0;
    for (bound, n) in bounds.iter().zip(counts) {
        cumulative += n;
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    let total: u64 = counts.iter().sum();
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
    let _ = writeln!(out, "{name}_sum {sum}");
    let _ = writeln!(out, "{name}_count {total}");
}

/// Nodes up, groups' owners and failovers, from the cluster's status.
fn cluster_metrics(out: &mut String, c: &serde_json::Value) {
    let empty = Vec::new();
    family(
        out,
        "mqemu_cluster_node_up",
        "gauge",
        "1 while a cluster node beats within its lease.",
    );
    for n in c["nodes"].as_array().unwrap_or(&empty) {
        let up = u8::from(n["state"] == "Up");
        let _ = writeln!(
            out,
            "mqemu_cluster_node_up{{node=\"{}\"}} {up}",
            label(n["name"].as_str().unwrap_or(""))
        );
    }
    family(
        out,
        "mqemu_cluster_group_online",
        "gauge",
        "1 while a virtual server's group is online, labelled with its owner.",
    );
    for g in c["groups"].as_array().unwrap_or(&empty) {
        let online = u8::from(g["state"] == "Online");
        let _ = writeln!(
            out,
            "mqemu_cluster_group_online{{group=\"{}\",owner=\"{}\"}} {online}",
            label(g["name"].as_str().unwrap_or("")),
            label(g["owner"].as_str().unwrap_or(""))
        );
    }
    family(
        out,
        "mqemu_cluster_failovers_total",
        "counter",
        "Failovers of a group since the cluster was created.",
    );
    for g in c["groups"].as_array().unwrap_or(&empty) {
        let _ = writeln!(
            out,
            "mqemu_cluster_failovers_total{{group=\"{}\"}} {}",
            label(g["name"].as_str().unwrap_or("")),
            g["failover_count"].as_u64().unwrap_or(0)
        );
    }
}

/// Escapes a label value for the text format (backslash, double quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// One metric family's header.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Prometheus metrics: queue depths and bytes, journals, outgoing queues, log writes, HTTP
/// requests.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain")))]
async fn metrics(State(state): State<Arc<AppState>>, caller: Caller) -> impl IntoResponse {
    let queues: Vec<_> = state
        .qm
        .queues()
        .into_iter()
        .filter(|i| caller.sees(&key_of(&i.path)))
        .collect();
    // Each queue's label once, not once per family: with ten thousand queues the names are
    // most of the work.
    let labels: Vec<String> = queues.iter().map(|q| label(&q.path.to_string())).collect();
    let mut out = String::with_capacity(4096 + queues.len() * 7 * 96);
    let per_queue = |out: &mut String,
                     name: &str,
                     kind: &str,
                     help: &str,
                     value: &dyn Fn(&mqcore::QueueInfo) -> u64| {
        family(out, name, kind, help);
        for (q, l) in queues.iter().zip(&labels) {
            let _ = writeln!(out, "{name}{{queue=\"{l}\"}} {}", value(q));
        }
    };
    per_queue(
        &mut out,
        "mqemu_queue_messages",
        "gauge",
        "Messages in the queue, those locked under transactions included.",
        &|q| q.message_count as u64,
    );
    per_queue(
        &mut out,
        "mqemu_queue_messages_ready",
        "gauge",
        "Messages a receiver could take now (not locked under a transaction).",
        &|q| q.message_count.saturating_sub(q.locked_count) as u64,
    );
    per_queue(
        &mut out,
        "mqemu_queue_messages_locked",
        "gauge",
        "Messages received under a transaction not yet committed or aborted.",
        &|q| q.locked_count as u64,
    );
    per_queue(
        &mut out,
        "mqemu_queue_bytes",
        "gauge",
        "Bytes counted against the queue's quota.",
        &|q| q.bytes,
    );
    per_queue(
        &mut out,
        "mqemu_queue_journal_messages",
        "gauge",
        "Messages in the queue's journal.",
        &|q| q.journal_count as u64,
    );
    per_queue(
        &mut out,
        "mqemu_queue_messages_arrived_total",
        "counter",
        "Messages that entered the queue since start (recovered ones included).",
        &|q| q.arrived_total,
    );
    per_queue(
        &mut out,
        "mqemu_queue_messages_removed_total",
        "counter",
        "Messages that left the queue since start: received, purged, expired or moved to a subqueue.",
        &|q| q.arrived_total.saturating_sub(q.message_count as u64),
    );
    let dead: Vec<(&str, Option<mqcore::Queue>)> = ["DEADLETTER", "DEADXACT"]
        .into_iter()
        .map(|name| (name, state.qm.open(&format!(r".\system$;{name}")).ok()))
        .collect();
    family(
        &mut out,
        "mqemu_dead_letter_messages",
        "gauge",
        "Messages in a system dead-letter queue.",
    );
    for (name, q) in &dead {
        if let Some(n) = q.as_ref().and_then(|q| q.len().ok()) {
            let _ = writeln!(out, "mqemu_dead_letter_messages{{queue=\"{name}\"}} {n}");
        }
    }
    family(
        &mut out,
        "mqemu_dead_letter_messages_arrived_total",
        "counter",
        "Messages dead-lettered since start.",
    );
    for (name, q) in &dead {
        if let Some(n) = q.as_ref().and_then(|q| q.arrivals().ok()) {
            let _ = writeln!(
                out,
                "mqemu_dead_letter_messages_arrived_total{{queue=\"{name}\"}} {n}"
            );
        }
    }
    family(&mut out, "mqemu_nacks_total", "counter", "Failures that earn a negative acknowledgement (expiry, purge, deletion, refusal, rejection), asked for or not.");
    let _ = writeln!(out, "mqemu_nacks_total {}", state.qm.nack_total());
    let outgoing = match &state.config.transfer {
        Some(t) => t.outgoing(),
        None => crate::transfer::outgoing_without_service(&state.qm),
    };
    family(
        &mut out,
        "mqemu_outgoing_messages",
        "gauge",
        "Messages waiting in an outgoing queue for another computer.",
    );
    for o in &outgoing {
        let _ = writeln!(
            out,
            "mqemu_outgoing_messages{{queue=\"{}\",state=\"{}\"}} {}",
            label(&o.info.name),
            label(&o.state),
            o.info.messages
        );
    }
    family(
        &mut out,
        "mqemu_outgoing_unacknowledged_messages",
        "gauge",
        "Messages sent on an outgoing queue's connection and not yet acknowledged.",
    );
    for o in &outgoing {
        let _ = writeln!(
            out,
            "mqemu_outgoing_unacknowledged_messages{{queue=\"{}\"}} {}",
            label(&o.info.name),
            o.unacknowledged
        );
    }
    if let Some((log, segments)) = state.qm.log_stats() {
        family(
            &mut out,
            "mqemu_log_records_total",
            "counter",
            "Records written to the write-ahead log since start.",
        );
        let _ = writeln!(out, "mqemu_log_records_total {}", log.records);
        family(
            &mut out,
            "mqemu_log_syncs_total",
            "counter",
            "fdatasync calls of the write-ahead log since start.",
        );
        let _ = writeln!(out, "mqemu_log_syncs_total {}", log.syncs);
        family(
            &mut out,
            "mqemu_log_segments",
            "gauge",
            "Segment files the write-ahead log holds.",
        );
        let _ = writeln!(out, "mqemu_log_segments {segments}");
        let bounds: Vec<String> = log.batch_bounds().iter().map(u64::to_string).collect();
        histogram(
            &mut out,
            "mqemu_log_batch_records",
            "Records per write-ahead log batch (group commit: records sharing one fdatasync).",
            &bounds,
            &log.batch_records,
            log.records as f64,
        );
        let bounds: Vec<String> = log
            .sync_bounds_us()
            .iter()
            .map(|us| format!("{}", *us as f64 / 1e6))
            .collect();
        histogram(
            &mut out,
            "mqemu_log_sync_seconds",
            "Time to write and fdatasync one log batch: what every commit in it waited at least.",
            &bounds,
            &log.sync_micros,
            log.sync_micros_sum as f64 / 1e6,
        );
        histogram(
            &mut out,
            "mqemu_log_commit_wait_seconds",
            "Per log batch, how long its oldest record waited from submission to durable: the batch's slowest commit.",
            &bounds,
            &log.commit_wait_micros,
            log.commit_wait_micros_sum as f64 / 1e6,
        );
    }
    if let Some(n) = &state.config.native {
        family(
            &mut out,
            "mqemu_connections",
            "gauge",
            "Native-protocol connections open.",
        );
        let _ = writeln!(out, "mqemu_connections {}", n.connections());
        family(
            &mut out,
            "mqemu_connections_accepted_total",
            "counter",
            "Native-protocol connections accepted since start.",
        );
        let _ = writeln!(
            out,
            "mqemu_connections_accepted_total {}",
            n.connections_total()
        );
        family(
            &mut out,
            "mqemu_requests_total",
            "counter",
            "Native-protocol requests answered since start.",
        );
        let _ = writeln!(out, "mqemu_requests_total {}", n.requests_total());
    }
    if let Some(view) = state.config.cluster.clone() {
        if let Ok(Ok(c)) = tokio::task::spawn_blocking(move || view()).await {
            cluster_metrics(&mut out, &c);
        }
    }
    family(
        &mut out,
        "mqemu_http_transactions_open",
        "gauge",
        "Transactions open over HTTP.",
    );
    let _ = writeln!(out, "mqemu_http_transactions_open {}", state.txs.len());
    family(
        &mut out,
        "mqemu_http_requests_total",
        "counter",
        "HTTP API requests received since start.",
    );
    let _ = writeln!(
        out,
        "mqemu_http_requests_total {}",
        state.requests.load(Ordering::Relaxed)
    );
    family(
        &mut out,
        "mqemu_up",
        "gauge",
        "1 while the storage takes writes.",
    );
    let _ = writeln!(
        out,
        "mqemu_up {}",
        u8::from(state.qm.storage_failure().is_none())
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}
