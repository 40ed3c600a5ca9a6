//! The HTTP action of MSMQ Triggers (an mqemu extension): `HTTP\t<url>[\t<param>...]` POSTs the
//! message, the trigger and rule, and the parameters' values to the URL as one JSON document. The
//! engine has no network, so the server plugs this in ([`mqcore::triggers::Builder::http`]).
//!
//! The document (`Content-Type: application/json`):
//! `{"trigger": {"name", "id"}, "rule": {"name", "id"}, "queue", "message": {"id", "label",
//! "body_base64", "body_text", "body_type", "priority", "app_specific", "correlation_id",
//! "lookup_id", "sent_time", "arrived_time", "source_machine"}, "params": [...]}`. `body_text`
//! is present for string bodies; times are seconds since 1970; byte parameters are base64.
//! Any status but 2xx, or no answer within the action timeout, is an action failure.

use std::time::Duration;

use base64::Engine as _;
use mqcore::triggers::{HttpPost, Invocation, Value};
use serde_json::{json, Value as Json};

/// Performs HTTP actions with a blocking client on the trigger worker's thread. Plain `http://`
/// only: this build has no TLS, so put a proxy in front of an `https://` endpoint.
#[derive(Debug, Default, Clone, Copy)]
pub struct HttpAction;

fn param(v: &Value) -> Json {
    match v {
        Value::Text(t) => json!(t),
        Value::Integer(n) => json!(n),
        Value::Float(x) => json!(x),
        Value::Bytes(b) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
    }
}

/// The JSON document an HTTP action posts.
pub fn document(call: &Invocation<'_>) -> Json {
    let m = call.message;
    let mut message = json!({
        "id": m.id().to_string(),
        "label": m.label,
        "body_base64": base64::engine::general_purpose::STANDARD.encode(&m.body),
        "body_type": m.body_type,
        "priority": m.priority,
        "app_specific": m.app_specific,
        "correlation_id": m.correlation_id.map(|c| c.to_string()),
        "lookup_id": m.lookup_id(),
        "sent_time": m.sent_time().as_secs(),
        "arrived_time": m.arrived_time().as_secs(),
        "source_machine": format!("{{{}}}", m.source_machine()),
    });
    if let Some(text) = m.body_text() {
        message["body_text"] = json!(text);
    }
    json!({
        "trigger": {"name": call.trigger_name, "id": format!("{{{}}}", call.trigger_id)},
        "rule": {"name": call.rule_name, "id": format!("{{{}}}", call.rule_id)},
        "queue": call.queue,
        "message": message,
        "params": call.params.iter().map(param).collect::<Vec<_>>(),
    })
}

impl HttpPost for HttpAction {
    fn post(&self, url: &str, call: &Invocation<'_>, timeout: Duration) -> Result<(), String> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(true)
            .build()
            .into();
        let body = document(call).to_string();
        agent
            .post(url)
            .header("Content-Type", "application/json")
            .send(body.as_str())
            .map(|_| ())
            .map_err(|e| format!("POST {url}: {e}"))
    }
}
