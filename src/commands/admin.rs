//! The management and messaging commands (`mqemu queue ...`, `send`, `peek`, `receive`,
//! `stats`): one blocking client call each, human output by default, `--json` for scripts.
//! [`Conn`] is the global arguments every command may read: `--server`, `--token`, `--json`.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;
use mqemu::{CorrelationId, Error, ErrorCode, Message, QueueInfo, QueueProps};
use mqnet::proto::{OutgoingAction, OutgoingView};
use mqnet::{BlockingClient, ClientOptions, Tx};
use serde_json::json;

/// The global arguments, accepted before or after the subcommand: which server the client
/// commands talk to, as whom, and whether they print JSON.
#[derive(clap::Args, Debug)]
pub struct Conn {
    /// The server's address, or with --cluster a virtual server's name (`VS1`).
    #[arg(long, global = true, default_value = super::serve::DEFAULT_LISTEN)]
    pub server: String,
    /// Authentication token (or MQEMU_TOKEN).
    #[arg(long, global = true, env = "MQEMU_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// A cluster directory (or MQEMU_CLUSTER; default ./mqemu-cluster): `cluster` and `node`
    /// work on it, and --server may name one of its virtual servers, found wherever it runs now.
    #[arg(long, global = true, env = "MQEMU_CLUSTER")]
    pub cluster: Option<std::path::PathBuf>,
    /// Where the cluster's nodes coordinate, overriding the cluster file's `coordinator`:
    /// `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]` (a build with the `etcd` feature).
    #[arg(long, global = true, env = "MQEMU_COORDINATOR")]
    pub coordinator: Option<String>,
    /// Speak TLS to the server (with --tls-ca, or --insecure-skip-verify).
    #[arg(long, global = true)]
    pub tls: bool,
    /// The CA certificate (PEM) that signed the server's; implies --tls.
    #[arg(long, global = true, env = "MQEMU_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// A client certificate (PEM) to log in with, on a server with a client CA.
    #[arg(long, global = true, requires = "tls_client_key")]
    pub tls_client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, global = true, requires = "tls_client_cert")]
    pub tls_client_key: Option<PathBuf>,
    /// The name the server's certificate must carry [default: the host in --server].
    #[arg(long, global = true)]
    pub tls_server_name: Option<String>,
    /// TLS without checking the server's certificate: encrypted, but anyone in the middle can
    /// read it. For tests only.
    #[arg(long, global = true)]
    pub insecure_skip_verify: bool,
}

impl Conn {
    /// TLS as the flags ask for it, or `None` for plain TCP.
    pub fn client_tls(&self) -> mqemu::Result<Option<mqnet::ClientTls>> {
        let tls = match (&self.tls_ca, self.insecure_skip_verify) {
            (Some(ca), _) => mqnet::ClientTls::with_ca_and_certificate(
                ca,
                self.tls_client_cert
                    .as_deref()
                    .zip(self.tls_client_key.as_deref()),
            )?,
            (None, true) => mqnet::ClientTls::insecure_skip_verify(),
            (None, false) if self.tls => {
                return Err(Error::new(
                    ErrorCode::InvalidParameter,
                    "--tls needs --tls-ca FILE (the CA that signed the server's certificate), \
                     or --insecure-skip-verify for tests",
                ))
            }
            (None, false) => return Ok(None),
        };
        Ok(Some(match &self.tls_server_name {
            Some(n) => tls.server_name(n.clone()),
            None => tls,
        }))
    }

    fn client(&self) -> mqemu::Result<BlockingClient> {
        let options = ClientOptions {
            token: self.token.clone(),
            tls: self.client_tls()?,
            ..ClientOptions::default()
        };
        if self.server.parse::<std::net::SocketAddr>().is_ok() {
            return BlockingClient::connect_with(&self.server, &options);
        }
        // A name: a virtual server or node of the cluster (the default directory if it has a
        // cluster file), else a host name.
        let default = std::path::Path::new(super::cluster::DEFAULT_CLUSTER);
        let dir = match &self.cluster {
            Some(d) => Some(d.as_path()),
            None => default.join("cluster.toml").exists().then_some(default),
        };
        if let Some(dir) = dir {
            let config = self.cluster_config(dir)?;
            match mqemu::cluster::client::connect_in(&config, dir, &self.server, &options) {
                // Not a name the cluster has: a host name (or `host:port`) after all.
                Err(e) if e.code() == mqemu::ErrorCode::MachineNotFound => {}
                other => return other,
            }
        }
        BlockingClient::connect_with(&self.server, &options)
    }

    /// The cluster file in `dir`, with `--coordinator` (if given) in place of its own.
    pub fn cluster_config(
        &self,
        dir: &std::path::Path,
    ) -> mqemu::Result<mqemu::cluster::ClusterConfig> {
        let mut config = mqemu::cluster::ClusterConfig::load(&dir.join("cluster.toml"))?;
        if self.coordinator.is_some() {
            config.coordinator = self.coordinator.clone();
        }
        Ok(config)
    }
}

impl Conn {
    /// A Triggers administration request.
    pub fn triggers(&self, req: mqnet::TriggerRequest) -> mqemu::Result<mqnet::TriggerAnswer> {
        self.client()?.triggers(req)
    }
}

/// `mqemu queue ...`.
#[derive(Subcommand, Debug)]
pub enum QueueCommand {
    /// Create a queue, e.g. '.\private$\orders'.
    Create {
        /// Path name.
        path: String,
        /// Transactional queue.
        #[arg(long)]
        transactional: bool,
        /// Keep a journal of received messages.
        #[arg(long)]
        journal: bool,
        /// Quota in kilobytes.
        #[arg(long)]
        quota_kb: Option<u32>,
        /// Label.
        #[arg(long)]
        label: Option<String>,
    },
    /// List queues (with --outgoing, the outgoing queues to other computers and their state).
    List {
        /// List the outgoing queues instead: destination, state, messages, resends.
        #[arg(long)]
        outgoing: bool,
    },
    /// Show one queue, or the outgoing queue for a queue on another computer.
    Show {
        /// Queue name.
        queue: String,
    },
    /// Pause an outgoing queue (MQMgmtAction PAUSE): nothing is sent, the messages stay.
    Pause {
        /// The destination's format name, as `queue list --outgoing` shows it.
        queue: String,
    },
    /// Resume a paused outgoing queue (MQMgmtAction RESUME): its messages go on, in order.
    Resume {
        /// The destination's format name.
        queue: String,
    },
    /// Send an outgoing queue's unacknowledged messages again now (MQMgmtAction EOD_RESEND).
    EodResend {
        /// The destination's format name.
        queue: String,
    },
    /// Remove every message from a queue.
    Purge {
        /// Queue name.
        queue: String,
    },
    /// Delete a queue.
    Delete {
        /// Queue name.
        queue: String,
    },
}

impl QueueCommand {
    /// Runs the queue command against the server `c` names.
    pub fn run(self, c: &Conn) -> mqemu::Result<()> {
        match self {
            QueueCommand::Create {
                path,
                transactional,
                journal,
                quota_kb,
                label,
            } => create(
                c,
                &path,
                QueueProps {
                    transactional,
                    journal,
                    quota_kb,
                    label: label.unwrap_or_default(),
                    ..QueueProps::default()
                },
            ),
            QueueCommand::List { outgoing: false } => list(c),
            QueueCommand::List { outgoing: true } => list_outgoing(c),
            QueueCommand::Show { queue } => show(c, &queue),
            QueueCommand::Pause { queue } => act(c, &queue, OutgoingAction::Pause),
            QueueCommand::Resume { queue } => act(c, &queue, OutgoingAction::Resume),
            QueueCommand::EodResend { queue } => act(c, &queue, OutgoingAction::EodResend),
            QueueCommand::Purge { queue } => purge(c, &queue),
            QueueCommand::Delete { queue } => delete(c, &queue),
        }
    }
}

/// `mqemu queue create`.
fn create(c: &Conn, path: &str, props: QueueProps) -> mqemu::Result<()> {
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
fn list(c: &Conn) -> mqemu::Result<()> {
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

/// `mqemu queue list --outgoing`.
fn list_outgoing(c: &Conn) -> mqemu::Result<()> {
    let list = c.client()?.outgoing()?;
    if c.json {
        println!("{}", json!(list));
        return Ok(());
    }
    println!(
        "{:<48} {:<10} {:>8} {:>8} {:>12} {:>7} {:>10}",
        "OUTGOING QUEUE", "STATE", "MESSAGES", "UNACKED", "BYTES", "RESENDS", "NEXT TRY"
    );
    for o in &list {
        println!(
            "{:<48} {:<10} {:>8} {:>8} {:>12} {:>7} {:>10}",
            o.info.name,
            o.state,
            o.info.messages,
            o.unacknowledged,
            o.info.bytes,
            o.resends,
            o.next_attempt_ms
                .map_or("-".to_owned(), |ms| format!("{:.1}s", ms as f64 / 1000.0))
        );
    }
    Ok(())
}

fn show_outgoing(o: &OutgoingView) {
    println!("outgoing queue {}", o.info.name);
    println!("host           {}", o.info.host);
    println!("state          {}", o.state);
    println!("messages       {}", o.info.messages);
    println!("unacknowledged {}", o.unacknowledged);
    println!("bytes          {}", o.info.bytes);
    println!("acknowledged   {}", o.info.acked);
    println!("resends        {}", o.resends);
    if let Some(ms) = o.next_attempt_ms {
        println!("next attempt   in {:.1}s", ms as f64 / 1000.0);
    }
    if let Some(e) = &o.last_error {
        println!("last error     {e}");
    }
}

/// `mqemu queue pause|resume|eod-resend`.
fn act(c: &Conn, name: &str, action: OutgoingAction) -> mqemu::Result<()> {
    c.client()?.outgoing_action(name, action)?;
    if c.json {
        println!(
            "{}",
            json!({ "queue": name, "action": format!("{action:?}") })
        );
    } else {
        println!("{action:?} {name}");
    }
    Ok(())
}

/// `mqemu queue show`.
fn show(c: &Conn, name: &str) -> mqemu::Result<()> {
    let client = c.client()?;
    let info = match client.queue_info(name) {
        Ok(info) => info,
        // Perhaps a queue on another computer: its outgoing queue here.
        Err(e) => {
            let key = name.to_ascii_lowercase();
            let found = client
                .outgoing()
                .unwrap_or_default()
                .into_iter()
                .find(|o| o.info.name.to_ascii_lowercase() == key);
            let Some(o) = found else { return Err(e) };
            if c.json {
                println!("{}", json!(o));
            } else {
                show_outgoing(&o);
            }
            return Ok(());
        }
    };
    if c.json {
        println!("{}", json!(info));
    } else {
        show_info(&info);
    }
    Ok(())
}

/// `mqemu queue purge`.
fn purge(c: &Conn, name: &str) -> mqemu::Result<()> {
    let n = c.client()?.purge(name)?;
    if c.json {
        println!("{}", json!({ "purged": n }));
    } else {
        println!("purged {n} messages from {name}");
    }
    Ok(())
}

/// `mqemu queue delete`.
fn delete(c: &Conn, name: &str) -> mqemu::Result<()> {
    c.client()?.delete_queue(name)?;
    if c.json {
        println!("{}", json!({ "deleted": name }));
    } else {
        println!("deleted {name}");
    }
    Ok(())
}

/// What `mqemu send` sends.
#[derive(clap::Args, Debug)]
pub struct SendArgs {
    /// Queue name.
    queue: String,
    /// Body text.
    #[arg(long, conflicts_with = "body_file")]
    body: Option<String>,
    /// Read the body from this file.
    #[arg(long)]
    body_file: Option<PathBuf>,
    /// Label.
    #[arg(long)]
    label: Option<String>,
    /// Priority 0-7.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=7))]
    priority: Option<u8>,
    /// Correlation id: guid\ordinal or 40 hex digits.
    #[arg(long)]
    correlation_id: Option<String>,
    /// Send in a single-message transaction (transactional queues).
    #[arg(long)]
    tx: bool,
    /// Recoverable delivery: the message is stored on disk and survives a restart (express,
    /// the default, is kept in memory). Transactional messages are always recoverable.
    #[arg(long)]
    recoverable: bool,
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
pub fn send(c: &Conn, a: SendArgs) -> mqemu::Result<()> {
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
    if a.tx || a.recoverable {
        msg.delivery = mqemu::Delivery::Recoverable;
    }
    let tx = if a.tx { Tx::Single } else { Tx::None };
    // The name goes to the server as given: a queue there, or one on another computer that the
    // server forwards to (store-and-forward through its outgoing queue, as MSMQ does).
    let id = c.client()?.send_through(&a.queue, msg, tx)?;
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

/// What `mqemu peek` looks at.
#[derive(clap::Args, Debug)]
pub struct TakeArgs {
    /// Queue name.
    queue: String,
    /// How long to wait for a message (e.g. 500ms, 1s, 2m).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// What `mqemu receive` takes.
#[derive(clap::Args, Debug)]
pub struct ReceiveArgs {
    #[command(flatten)]
    take: TakeArgs,
    /// Receive under a transaction (an external one, as MSMQ 4.0 requires remotely).
    #[arg(long)]
    tx: bool,
}

/// `mqemu peek`.
pub fn peek(c: &Conn, a: &TakeArgs) -> mqemu::Result<()> {
    take(c, &a.queue, a.timeout, false, false)
}

/// `mqemu receive`.
pub fn receive(c: &Conn, a: &ReceiveArgs) -> mqemu::Result<()> {
    take(c, &a.take.queue, a.take.timeout, true, a.tx)
}

/// `mqemu peek` and `mqemu receive`.
fn take(c: &Conn, queue: &str, timeout: Duration, receive: bool, tx: bool) -> mqemu::Result<()> {
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
