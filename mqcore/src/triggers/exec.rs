//! Carrying out a rule's action: the values its parameters stand for, running an executable,
//! calling an in-process handler (the embedding's analogue of a COM component), and handing an
//! HTTP action to whoever provides HTTP (the engine has no network).

use std::collections::HashMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use uuid::Uuid;
use wait_timeout::ChildExt;

use super::rule::{Action, Param};
use crate::message::Message;
use crate::name::QueueName;

/// One parameter's value, as an action receives it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Text: labels, ids, format names, string literals.
    Text(String),
    /// A whole number: priority, app-specific value, times, lookup id, integer literals.
    Integer(i64),
    /// A numeric literal with a fraction.
    Float(f64),
    /// The body's bytes (`$MSG_BODY` to an in-process handler).
    Bytes(Bytes),
}

impl Value {
    /// The value as one command-line argument: bytes are read as UTF-8 (invalid sequences
    /// replaced), numbers in decimal.
    pub fn to_arg(&self) -> String {
        match self {
            Value::Text(t) => t.clone(),
            Value::Integer(n) => n.to_string(),
            Value::Float(x) => x.to_string(),
            Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        }
    }
}

/// What an action is invoked with: the trigger, the rule, the message and the parameters'
/// values in order.
#[derive(Debug)]
pub struct Invocation<'a> {
    /// The trigger's name.
    pub trigger_name: &'a str,
    /// The trigger's id.
    pub trigger_id: Uuid,
    /// The rule's name.
    pub rule_name: &'a str,
    /// The rule's id.
    pub rule_id: Uuid,
    /// The monitored queue's path name.
    pub queue: &'a str,
    /// The message that met the rule's conditions.
    pub message: &'a Message,
    /// The values of the action's parameters.
    pub params: Vec<Value>,
}

/// An in-process handler for `COM` actions, registered by ProgID and method. An `Err` is an
/// action failure: under transactional retrieval the message goes back to the queue.
pub type Handler = Arc<dyn Fn(&Invocation<'_>) -> Result<(), String> + Send + Sync>;

/// Performs `HTTP` actions. The engine has no network; the server (`mqnet`) provides one.
pub trait HttpPost: Send + Sync {
    /// POSTs the invocation to `url`; an `Err` is an action failure.
    fn post(&self, url: &str, call: &Invocation<'_>, timeout: Duration) -> Result<(), String>;
}

/// What an action needs beyond the message: names of the trigger and its queue.
pub(crate) struct Context<'a> {
    pub(crate) trigger_name: &'a str,
    pub(crate) trigger_id: Uuid,
    /// The monitored queue's path name, with the computer's name in place of `.`.
    pub(crate) queue_path: &'a str,
    pub(crate) queue_format_name: &'a str,
}

/// A queue name as a format name: format names are kept, path names become `DIRECT=OS:`.
fn format_name(name: Option<&QueueName>) -> String {
    match name {
        None => String::new(),
        Some(n) if n.is_format_name() => n.to_string(),
        Some(n) => format!("DIRECT=OS:{n}"),
    }
}

fn secs(t: crate::clock::Timestamp) -> Value {
    Value::Integer(i64::from(t.as_secs()))
}

/// The value `param` stands for. `for_exe` reads `$MSG_BODY` as text, since a command line
/// carries no bytes.
pub(crate) fn value(param: &Param, msg: &Message, cx: &Context<'_>, for_exe: bool) -> Value {
    let body_string = || {
        Value::Text(
            msg.body_text()
                .unwrap_or_else(|| String::from_utf8_lossy(&msg.body).into_owned()),
        )
    };
    match param {
        Param::MsgId => Value::Text(msg.id().to_string()),
        Param::MsgLabel => Value::Text(msg.label.clone()),
        Param::MsgBody if for_exe => body_string(),
        Param::MsgBody => Value::Bytes(msg.body.clone()),
        Param::MsgBodyAsString => body_string(),
        Param::MsgPriority => Value::Integer(i64::from(msg.priority)),
        Param::MsgArrivedTime => secs(msg.arrived_time()),
        Param::MsgSentTime => secs(msg.sent_time()),
        Param::MsgCorrelationId => Value::Text(msg.correlation_id.unwrap_or_default().to_string()),
        Param::MsgAppSpecific => Value::Integer(i64::from(msg.app_specific)),
        Param::MsgQueuePathname => Value::Text(cx.queue_path.to_owned()),
        Param::MsgQueueFormatname => Value::Text(cx.queue_format_name.to_owned()),
        Param::MsgResponseQueueFormatname => {
            Value::Text(format_name(msg.response_queue.as_deref()))
        }
        Param::MsgDestQueueFormatname => Value::Text(format_name(msg.destination())),
        Param::MsgAdminQueueFormatname => Value::Text(format_name(msg.admin_queue.as_deref())),
        Param::MsgSrcMachineId => Value::Text(format!("{{{}}}", msg.source_machine())),
        Param::MsgLookupId => Value::Integer(msg.lookup_id().try_into().unwrap_or(i64::MAX)),
        Param::TriggerName => Value::Text(cx.trigger_name.to_owned()),
        Param::TriggerId => Value::Text(format!("{{{}}}", cx.trigger_id)),
        Param::Text(t) => Value::Text(t.clone()),
        Param::Number(n) => n
            .parse::<i64>()
            .map(Value::Integer)
            .unwrap_or_else(|_| Value::Float(n.parse().unwrap_or_default())),
    }
}

/// In-process handlers by (ProgID, method), both matched without regard to case as COM does.
#[derive(Default)]
pub(crate) struct Handlers {
    map: RwLock<HashMap<(String, String), Handler>>,
}

impl Handlers {
    pub(crate) fn insert(&self, prog_id: &str, method: &str, handler: Handler) {
        self.map
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key(prog_id, method), handler);
    }

    fn get(&self, prog_id: &str, method: &str) -> Option<Handler> {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key(prog_id, method))
            .cloned()
    }
}

fn key(prog_id: &str, method: &str) -> (String, String) {
    (prog_id.to_ascii_lowercase(), method.to_ascii_lowercase())
}

/// Everything actions run with.
pub(crate) struct Runner {
    pub(crate) handlers: Handlers,
    pub(crate) http: Option<Arc<dyn HttpPost>>,
    pub(crate) timeout: Duration,
}

impl Runner {
    /// Carries out `action`; `Err` says why it failed.
    pub(crate) fn run(&self, action: &Action, call: &Invocation<'_>) -> Result<(), String> {
        match action {
            Action::Exe { path, .. } => {
                let args: Vec<String> = call.params.iter().map(Value::to_arg).collect();
                run_exe(path, &args, self.timeout)
            }
            Action::Com {
                prog_id, method, ..
            } => {
                let handler = self.handlers.get(prog_id, method).ok_or_else(|| {
                    format!("no handler is registered for {prog_id}.{method} (the COM analogue: register one with Triggers::register_handler)")
                })?;
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(call)))
                    .unwrap_or_else(|_| Err(format!("handler {prog_id}.{method} panicked")))
            }
            Action::Http { url, .. } => match &self.http {
                Some(http) => http.post(url, call, self.timeout),
                None => Err("this queue manager has no HTTP client for HTTP actions".to_owned()),
            },
        }
    }
}

/// Most output kept from one run of an executable, per stream.
const OUTPUT_CAP: usize = 64 * 1024;

/// Runs `path` with `args` (no shell), waits up to `timeout`, and logs what it printed. Fails if
/// it cannot start, runs out of time (it is killed) or exits unsuccessfully.
fn run_exe(path: &str, args: &[String], timeout: Duration) -> Result<(), String> {
    let mut child = Command::new(path)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {path}: {e}"))?;
    // Read both pipes while waiting, so a chatty program cannot fill one and stall.
    let (out_tx, out_rx) = mpsc::channel();
    for (stream, pipe) in [
        (
            "stdout",
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
        (
            "stderr",
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
    ] {
        let Some(pipe) = pipe else { continue };
        let out_tx = out_tx.clone();
        std::thread::spawn(move || {
            let mut pipe = pipe;
            let mut buf = Vec::new();
            let _ = (&mut pipe).take(OUTPUT_CAP as u64).read_to_end(&mut buf);
            let _ = out_tx.send((stream, buf));
            // Past the cap, keep draining so the program never blocks on a full pipe.
            let _ = std::io::copy(&mut pipe, &mut std::io::sink());
        });
    }
    drop(out_tx);
    let status = match child.wait_timeout(timeout) {
        Ok(Some(status)) => Ok(status),
        Ok(None) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!("{path} ran longer than {timeout:?} and was killed"))
        }
        Err(e) => Err(format!("waiting for {path}: {e}")),
    };
    // A program that left a child holding its pipes must not hold us: wait a little, then go.
    let grace = std::time::Instant::now() + Duration::from_secs(1);
    while let Ok((stream, buf)) =
        out_rx.recv_timeout(grace.saturating_duration_since(std::time::Instant::now()))
    {
        if !buf.is_empty() {
            tracing::info!(
                target: "mqemu::triggers::exe",
                exe = path,
                stream,
                "{}",
                String::from_utf8_lossy(&buf).trim_end()
            );
        }
    }
    let status = status?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{path} exited with {status}"))
    }
}
