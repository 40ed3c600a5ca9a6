//! The management and messaging commands (`mqemu queue ...`, `send`, `peek`, `receive`,
//! `stats`): one blocking client call each, human output by default, `--json` for scripts.

use std::io::Read;
use std::time::Duration;

use mqemu::{CorrelationId, Error, ErrorCode, Message, QueueInfo, QueueProps};
use mqnet::{BlockingClient, ClientOptions, Tx};
use serde_json::json;

/// How to reach the server.
pub struct Conn {
    pub server: String,
    pub token: Option<String>,
    pub json: bool,
}

impl Conn {
    fn client(&self) -> mqemu::Result<BlockingClient> {
        BlockingClient::connect_with(
            &self.server,
            &ClientOptions {
                token: self.token.clone(),
                ..ClientOptions::default()
            },
        )
    }
}

impl Conn {
    /// A Triggers administration request.
    pub fn triggers(&self, req: mqnet::TriggerRequest) -> mqemu::Result<mqnet::TriggerAnswer> {
        self.client()?.triggers(req)
    }
}

/// `mqemu queue create`.
pub fn create(c: &Conn, path: &str, props: QueueProps) -> mqemu::Result<()> {
    let client = c.client()?;
    let q = client.create_queue(path, props)?;
    let info = client.queue_info(q.name())?;
    if c.json {
        println!("{}", json!(info));
    } else {
        println!("created {}", info.path);
    }
    Ok(())
}

/// `mqemu queue list`.
pub fn list(c: &Conn) -> mqemu::Result<()> {
    let queues = c.client()?.queues()?;
    if c.json {
        println!("{}", json!(queues));
        return Ok(());
    }
    println!(
        "{:<40} {:>5} {:>8} {:>12} {:>8}",
        "QUEUE", "TX", "MESSAGES", "BYTES", "JOURNAL"
    );
    for q in &queues {
        println!(
            "{:<40} {:>5} {:>8} {:>12} {:>8}",
            q.path.to_string(),
            if q.props.transactional { "yes" } else { "no" },
            q.message_count,
            q.bytes,
            q.journal_count
        );
    }
    Ok(())
}

fn show_info(info: &QueueInfo) {
    println!("queue         {}", info.path);
    println!("id            {}", info.id);
    println!("transactional {}", info.props.transactional);
    println!("journal       {}", info.props.journal);
    println!(
        "quota         {}",
        info.props
            .quota_kb
            .map_or("INFINITE".to_owned(), |k| format!("{k} KB"))
    );
    println!("label         {}", info.props.label);
    println!("messages      {}", info.message_count);
    println!("bytes         {}", info.bytes);
    println!("journal msgs  {}", info.journal_count);
    if !info.subqueues.is_empty() {
        println!("subqueues     {}", info.subqueues.join(", "));
    }
}

/// `mqemu queue show`.
pub fn show(c: &Conn, name: &str) -> mqemu::Result<()> {
    let info = c.client()?.queue_info(name)?;
    if c.json {
        println!("{}", json!(info));
    } else {
        show_info(&info);
    }
    Ok(())
}

/// `mqemu queue purge`.
pub fn purge(c: &Conn, name: &str) -> mqemu::Result<()> {
    let n = c.client()?.purge(name)?;
    if c.json {
        println!("{}", json!({ "purged": n }));
    } else {
        println!("purged {n} messages from {name}");
    }
    Ok(())
}

/// `mqemu queue delete`.
pub fn delete(c: &Conn, name: &str) -> mqemu::Result<()> {
    c.client()?.delete_queue(name)?;
    if c.json {
        println!("{}", json!({ "deleted": name }));
    } else {
        println!("deleted {name}");
    }
    Ok(())
}

/// What `mqemu send` sends.
pub struct SendArgs {
    pub body: Option<String>,
    pub body_file: Option<std::path::PathBuf>,
    pub label: Option<String>,
    pub priority: Option<u8>,
    pub correlation_id: Option<String>,
    pub tx: bool,
}

/// Parses a correlation id: `guid\ordinal` as MSMQ displays ids, or 40 hex digits (20 bytes).
pub fn parse_correlation(s: &str) -> mqemu::Result<CorrelationId> {
    if s.contains('\\') {
        return s.parse();
    }
    let hex = s.trim_start_matches("0x");
    let bad = || {
        Error::new(
            ErrorCode::InvalidParameter,
            format!("correlation id {s:?} is neither guid\\ordinal nor 40 hex digits"),
        )
    };
    if hex.len() != 40 || !hex.is_ascii() {
        return Err(bad());
    }
    let mut b = [0u8; 20];
    for (i, byte) in b.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(mqemu::MessageId(b))
}

/// `mqemu send`.
pub fn send(c: &Conn, queue: &str, a: SendArgs) -> mqemu::Result<()> {
    // Text from --body goes as MSMQ sends a string (UTF-16LE, VT_LPWSTR), so trigger body
    // conditions and string-reading receivers see text; files and stdin go as bytes.
    let mut msg = match (a.body, a.body_file) {
        (Some(text), _) => Message::text(&text),
        (None, Some(f)) => Message::new(std::fs::read(&f).map_err(|e| {
            Error::new(
                ErrorCode::InvalidParameter,
                format!("cannot read {}: {e}", f.display()),
            )
        })?),
        (None, None) => {
            let mut b = Vec::new();
            std::io::stdin().read_to_end(&mut b).map_err(|e| {
                Error::new(
                    ErrorCode::InvalidParameter,
                    format!("cannot read stdin: {e}"),
                )
            })?;
            Message::new(b)
        }
    };
    if let Some(l) = a.label {
        msg.label = l;
    }
    if let Some(p) = a.priority {
        msg.priority = p;
    }
    if let Some(cid) = &a.correlation_id {
        msg.correlation_id = Some(parse_correlation(cid)?);
    }
    if a.tx {
        msg.delivery = mqemu::Delivery::Recoverable;
    }
    let tx = if a.tx { Tx::Single } else { Tx::None };
    let id = c.client()?.send(queue, msg, tx)?;
    if c.json {
        println!("{}", json!({ "id": id.to_string() }));
    } else {
        println!("sent {id}");
    }
    Ok(())
}

/// The body as text: a string body decoded, or bytes that are UTF-8.
fn body_text(m: &Message) -> Option<String> {
    m.body_text().or_else(|| m.body_str().map(str::to_owned))
}

/// A message as `--json` prints it.
pub fn message_json(m: &Message) -> serde_json::Value {
    let text = body_text(m);
    json!({
        "id": m.id().to_string(),
        "label": m.label,
        "body_hex": if text.is_none() { Some(hex(&m.body)) } else { None },
        "body": text,
        "body_type": m.body_type,
        "body_len": m.body.len(),
        "priority": m.priority,
        "correlation_id": m.correlation_id.map(|c| c.to_string()),
        "app_specific": m.app_specific,
        "class": m.class().0,
        "lookup_id": m.lookup_id(),
        "sent_time": m.sent_time().as_secs(),
        "arrived_time": m.arrived_time().as_secs(),
        "abort_count": m.abort_count(),
        "transactional": m.is_transactional(),
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `mqemu peek` and `mqemu receive`.
pub fn take(
    c: &Conn,
    queue: &str,
    timeout: Duration,
    receive: bool,
    tx: bool,
) -> mqemu::Result<()> {
    let client = c.client()?;
    let m = if receive && tx {
        // A remote transactional receive needs an external transaction (MSMQ 4.0's rule); the
        // command is its own coordinator: begin, receive, prepare, commit.
        let xid = format!(
            "mqemu-cli-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        let t = client.begin_external(&xid)?;
        let m = client.receive(queue, timeout, Tx::from(&t))?;
        t.prepare()?;
        t.commit()?;
        m
    } else if receive {
        client.receive(queue, timeout, Tx::None)?
    } else {
        client.peek(queue, timeout)?
    };
    if c.json {
        println!("{}", message_json(&m));
    } else {
        if !m.label.is_empty() {
            eprintln!("label: {}", m.label);
        }
        match body_text(&m) {
            Some(s) => println!("{s}"),
            None => println!("{}", hex(&m.body)),
        }
    }
    Ok(())
}

/// `mqemu stats`.
pub fn stats(c: &Conn) -> mqemu::Result<()> {
    let s = c.client()?.stats()?;
    if c.json {
        println!("{}", json!(s));
    } else {
        println!("server       {} ({})", s.name, s.guid);
        println!("compat       {}", s.compat);
        println!(
            "storage      {}",
            if s.durable { "durable" } else { "in memory" }
        );
        println!("queues       {}", s.queues);
        println!("messages     {}", s.messages);
        println!("bytes        {}", s.bytes);
        println!(
            "connections  {} open, {} since start",
            s.connections, s.connections_total
        );
        println!("requests     {}", s.requests_total);
        println!("uptime       {} s", s.uptime_secs);
    }
    Ok(())
}
