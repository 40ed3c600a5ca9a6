//! `mqemu serve`: a queue manager and the native-protocol server, configured by flags and an
//! optional TOML file, stopped gracefully by SIGTERM or Ctrl-C.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;

use mqemu::triggers::{Processing, RuleDef, TriggerDef, Triggers};
use mqemu::{Compat, Error, ErrorCode, QueueManager, QueueProps};
use mqnet::{Auth, HttpAction, Server, ServerConfig, TriggerService, User};
use serde::Deserialize;

/// Where the server listens unless told otherwise: loopback only, the protocol's port.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:18010";

/// Where it keeps its data unless told otherwise.
pub const DEFAULT_DATA: &str = "./mqemu-data";

/// The configuration file (every key optional; flags win over the file).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: Option<String>,
    /// Storage directory.
    pub data: Option<PathBuf>,
    /// Keep everything in memory.
    #[serde(default)]
    pub in_memory: bool,
    /// `msmq3` or `msmq4`.
    pub compat: Option<String>,
    /// The queue manager's computer name.
    pub name: Option<String>,
    /// Computer names and the addresses they are reached at (`orders = "127.0.0.2"`): how
    /// `DIRECT=OS:<name>` and `<name>\private$\q` names find their queue manager.
    #[serde(default)]
    pub hosts: BTreeMap<String, String>,
    /// Limits.
    #[serde(default)]
    pub limits: Limits,
    /// Queues created at start-up when missing.
    #[serde(default, rename = "queue")]
    pub queues: Vec<QueueDecl>,
    /// Users and their rights; none means open access.
    #[serde(default, rename = "user")]
    pub users: Vec<User>,
    /// The Triggers service.
    #[serde(default)]
    pub triggers: TriggersConfig,
    /// Trigger rules defined (or redefined) at start-up.
    #[serde(default, rename = "rule")]
    pub rules: Vec<RuleDecl>,
    /// Triggers defined (or redefined) at start-up.
    #[serde(default, rename = "trigger")]
    pub trigger_decls: Vec<TriggerDecl>,
    /// Queue-manager transfer: how messages for other computers' queues are delivered.
    #[serde(default)]
    pub transfer: TransferDecl,
}

/// `[transfer]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferDecl {
    /// The port other queue managers listen on [default: this server's own port].
    pub port: Option<u16>,
    /// The token presented to other servers that ask for one.
    pub token: Option<String>,
    /// Waits before attempts after failures, in milliseconds [default: MSMQ's schedule,
    /// 30 s x3, 300 s x3, 1800 s x3, then 6 h].
    pub resend_ms: Option<Vec<u64>>,
    /// Divides MSMQ's resend schedule (1000 turns 30 s into 30 ms).
    pub resend_scale: Option<u32>,
    /// Messages per batch [default 256].
    pub batch: Option<usize>,
    /// Batches in flight per connection [default 8].
    pub window: Option<usize>,
    /// Seconds a connection with nothing to send stays open [default 60].
    pub idle_secs: Option<u64>,
}

impl TransferDecl {
    /// The service's settings, for a server listening on `port`.
    pub fn config(&self, port: u16) -> mqnet::TransferConfig {
        let defaults = mqnet::TransferConfig::default();
        let resend = match (&self.resend_ms, self.resend_scale) {
            (Some(ms), _) => ms.iter().map(|&m| Duration::from_millis(m)).collect(),
            (None, Some(scale)) => mqnet::TransferConfig::scaled_schedule(scale),
            (None, None) => defaults.resend.clone(),
        };
        mqnet::TransferConfig {
            port: self.port.unwrap_or(port),
            token: self.token.clone(),
            resend,
            batch: self.batch.unwrap_or(defaults.batch).max(1),
            window: self.window.unwrap_or(defaults.window).max(1),
            idle: self.idle_secs.map_or(defaults.idle, Duration::from_secs),
            ..defaults
        }
    }
}

/// `[triggers]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggersConfig {
    /// Run the Triggers service [default: true].
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Threads that run actions [default: 5].
    pub workers: Option<usize>,
    /// Seconds an EXE or HTTP action may take [default: 60].
    pub action_timeout_secs: Option<u64>,
}

impl Default for TriggersConfig {
    fn default() -> Self {
        TriggersConfig {
            enabled: true,
            workers: None,
            action_timeout_secs: None,
        }
    }
}

fn yes() -> bool {
    true
}

/// An action in the configuration: MSMQ's string, or the readable table form.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ActionDecl {
    /// `"EXE\t/usr/bin/touch\t\"/tmp/f\""`.
    Msmq(String),
    /// `{ exe = { path = "/usr/bin/touch", params = ['"/tmp/f"', "$MSG_LABEL"] } }`.
    Table(mqemu::triggers::Action),
}

/// `[[rule]]`: conditions as MSMQ's string (`condition`) or a list of tables (`conditions`,
/// e.g. `[{ label_contains = "go" }, { priority_greater_than = 3 }]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDecl {
    /// Rule name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// MSMQ's condition string.
    pub condition: Option<String>,
    /// Conditions as tables.
    pub conditions: Option<Vec<mqemu::triggers::Condition>>,
    /// The action.
    pub action: ActionDecl,
}

/// `[[trigger]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerDecl {
    /// Trigger name.
    pub name: String,
    /// Monitored queue's path name.
    pub queue: String,
    /// `peek`, `retrieval` or `transactional`.
    #[serde(rename = "type")]
    pub processing: String,
    /// Finish each message before the next.
    #[serde(default)]
    pub serialized: bool,
    /// Whether it runs.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Rule names, in the order they run.
    #[serde(default)]
    pub rules: Vec<String>,
}

/// `[limits]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: Option<usize>,
    /// Seconds a silent connection stays open.
    pub idle_timeout_secs: Option<u64>,
    /// Largest frame payload, bytes.
    pub max_frame_bytes: Option<usize>,
}

/// `[[queue]]`: a queue to create at start-up.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueDecl {
    /// Path name, e.g. `.\private$\orders`.
    pub path: String,
    /// Transactional queue.
    #[serde(default)]
    pub transactional: bool,
    /// Keep a journal.
    #[serde(default)]
    pub journal: bool,
    /// Quota in KB.
    pub quota_kb: Option<u32>,
    /// Label.
    #[serde(default)]
    pub label: String,
}

/// What the command line says.
#[derive(clap::Args, Debug)]
pub struct Options {
    /// Address to listen on [default: 127.0.0.1:18010].
    #[arg(long)]
    pub listen: Option<String>,
    /// Storage directory [default: ./mqemu-data].
    #[arg(long, conflicts_with = "in_memory")]
    pub data: Option<PathBuf>,
    /// Keep everything in memory (lost at exit).
    #[arg(long)]
    pub in_memory: bool,
    /// TOML configuration: queues to create, users and rights, limits (see README).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// MSMQ version to behave as: msmq3 or msmq4 [default: msmq4].
    #[arg(long)]
    pub compat: Option<String>,
}

fn bad_config(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorCode::InvalidParameter,
        format!("configuration {}: {why}", path.display()),
    )
}

/// Reads a configuration file.
pub fn load(path: &Path) -> mqemu::Result<Config> {
    let text = std::fs::read_to_string(path).map_err(|e| bad_config(path, e))?;
    toml::from_str(&text).map_err(|e| bad_config(path, e))
}

/// The host part of a listen address, unless it is every interface (`0.0.0.0`, `[::]`).
fn listen_ip(listen: &str) -> Option<String> {
    if let Ok(addr) = listen.parse::<std::net::SocketAddr>() {
        return (!addr.ip().is_unspecified()).then(|| addr.ip().to_string());
    }
    listen.rsplit_once(':').map(|(host, _)| host.to_owned())
}

/// Runs the server until SIGTERM or Ctrl-C.
pub fn run(opts: Options) -> mqemu::Result<()> {
    let config = match &opts.config {
        Some(p) => load(p)?,
        None => Config::default(),
    };
    let listen = opts
        .listen
        .or(config.listen.clone())
        .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let compat: Compat = match opts.compat.or(config.compat.clone()) {
        Some(c) => c.parse()?,
        None => Compat::default(),
    };
    let mut builder = QueueManager::builder().compat(compat);
    if let Some(name) = &config.name {
        builder = builder.name(name.clone());
    }
    // The address it listens on is the one `DIRECT=TCP:` names reach it at (all of them, and
    // so the loopback default, when it listens on every interface).
    if let Some(ip) = listen_ip(&listen) {
        builder = builder.address(ip);
    }
    for (name, address) in &config.hosts {
        builder = builder.host(name, address);
    }
    let in_memory = opts.in_memory || config.in_memory;
    let data = opts
        .data
        .or(config.data.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA));
    let qm = if in_memory {
        builder.build()
    } else {
        builder.open(&data)?
    };
    for q in &config.queues {
        let props = QueueProps {
            transactional: q.transactional,
            journal: q.journal,
            quota_kb: q.quota_kb,
            label: q.label.clone(),
            ..QueueProps::default()
        };
        match qm.create_queue(&q.path, props) {
            Ok(_) => tracing::info!(queue = %q.path, "created"),
            Err(e) if e.code() == ErrorCode::QueueExists => {}
            Err(e) => return Err(e),
        }
    }
    let triggers = if config.triggers.enabled {
        let t = start_triggers(&qm, &config)?;
        Some(Arc::new(t))
    } else {
        None
    };
    let defaults = ServerConfig::default();
    let server_config = ServerConfig {
        max_connections: config
            .limits
            .max_connections
            .unwrap_or(defaults.max_connections),
        idle_timeout: config
            .limits
            .idle_timeout_secs
            .map_or(defaults.idle_timeout, Duration::from_secs),
        max_frame: config.limits.max_frame_bytes.unwrap_or(defaults.max_frame),
        auth: Auth::new(config.users.clone()),
        triggers: triggers
            .clone()
            .map(TriggerService::running)
            .unwrap_or_default(),
        ..defaults
    };
    let open = server_config.auth.is_open();
    let users: BTreeMap<_, _> = config.users.iter().map(|u| (&u.name, u.admin)).collect();
    let rt = super::runtime::multi_thread("mqemu-serve")
        .build()
        .map_err(|e| Error::new(ErrorCode::InsufficientResources, e.to_string()))?;
    rt.block_on(async move {
        let mut server_config = server_config;
        let port = listen
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(mqnet::DEFAULT_PORT);
        let transfer = mqnet::TransferService::start(qm.clone(), config.transfer.config(port));
        server_config.transfer = Some(transfer.clone());
        let server = Server::bind(&listen, qm.clone(), server_config)
            .await
            .map_err(|e| {
                Error::new(
                    ErrorCode::ServiceNotAvailable,
                    format!("cannot listen on {listen}: {e}"),
                )
            })?;
        let addr: SocketAddr = server
            .local_addr()
            .map_err(|e| Error::new(ErrorCode::ServiceNotAvailable, e.to_string()))?;
        if open && !addr.ip().is_loopback() {
            tracing::warn!(%addr, "listening beyond loopback with no users configured: anyone who can connect may do anything");
        }
        tracing::info!(
            %addr,
            storage = %if in_memory { "in memory".to_owned() } else { data.display().to_string() },
            %compat,
            users = users.len(),
            "mqemu serving"
        );
        // For scripts and tests that bind port 0.
        println!("listening on {addr}");
        let stopper = server.stopper();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("signal received: stopping");
            stopper.stop();
        });
        server
            .run()
            .await
            .map_err(|e| Error::new(ErrorCode::Error, e.to_string()))?;
        transfer.stop();
        if let Some(t) = &triggers {
            t.stop();
        }
        if let Some((log, segments)) = qm.log_stats() {
            tracing::info!(
                records = log.records,
                syncs = log.syncs,
                segments,
                "log written since start"
            );
        }
        drop(qm);
        tracing::info!("stopped");
        Ok(())
    })
}

/// Starts the Triggers service and applies the configuration's rules and triggers (a name
/// already defined is redefined; its id and, for triggers, its walk of the queue are kept).
fn start_triggers(qm: &QueueManager, config: &Config) -> mqemu::Result<Triggers> {
    let mut b = Triggers::builder().http(Arc::new(HttpAction));
    if let Some(n) = config.triggers.workers {
        b = b.workers(n);
    }
    if let Some(s) = config.triggers.action_timeout_secs {
        b = b.action_timeout(Duration::from_secs(s));
    }
    let t = b.start(qm)?;
    for r in &config.rules {
        let conditions = match (&r.condition, &r.conditions) {
            (Some(text), None) => mqemu::triggers::rule::parse_conditions(text)?,
            (None, Some(list)) => list.clone(),
            (None, None) => Vec::new(),
            (Some(_), Some(_)) => {
                return Err(Error::new(
                    ErrorCode::InvalidParameter,
                    format!("rule {:?}: give condition or conditions, not both", r.name),
                ))
            }
        };
        let action = match &r.action {
            ActionDecl::Msmq(text) => mqemu::triggers::Action::parse(text)?,
            ActionDecl::Table(a) => a.clone(),
        };
        let def = RuleDef {
            name: r.name.clone(),
            description: r.description.clone(),
            conditions,
            action,
        };
        match t.rule(&r.name) {
            Ok(_) => t.update_rule(&r.name, def)?,
            Err(_) => t.add_rule(def)?,
        };
    }
    for d in &config.trigger_decls {
        let def = TriggerDef {
            name: d.name.clone(),
            queue: d.queue.clone(),
            processing: Processing::parse(&d.processing)?,
            enabled: d.enabled,
            serialized: d.serialized,
        };
        match t.trigger(&d.name) {
            Ok(_) => t.update_trigger(&d.name, def)?,
            Err(_) => t.add_trigger(def)?,
        };
        // One change: a trigger already running from the catalog keeps its walk, so a peek
        // trigger does not run its actions a second time on the messages it has seen.
        let rules: Vec<&str> = d.rules.iter().map(String::as_str).collect();
        t.set_rules(&d.name, &rules)?;
    }
    Ok(t)
}

pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::{listen_ip, Config};

    #[test]
    fn the_listen_address_is_the_queue_managers_unless_it_is_every_interface() {
        for (listen, ip) in [
            ("127.0.0.2:18010", Some("127.0.0.2")),
            ("[::1]:18010", Some("::1")),
            ("0.0.0.0:18010", None),
            ("[::]:18010", None),
            ("orders.example:18010", Some("orders.example")),
        ] {
            assert_eq!(listen_ip(listen).as_deref(), ip, "{listen}");
        }
    }

    #[test]
    fn the_configuration_maps_computer_names_to_addresses() {
        let config: Config = toml::from_str(
            r#"
            name = "orders"
            listen = "127.0.0.2:18010"
            [hosts]
            billing = "127.0.0.3"
            "#,
        )
        .unwrap();
        assert_eq!(config.hosts["billing"], "127.0.0.3");
        assert!(toml::from_str::<Config>("[hosts]\nbilling = 3\n").is_err());
    }

    #[test]
    fn the_readmes_configuration_example_is_a_valid_configuration() {
        let readme = include_str!("../../README.md");
        let start = readme
            .find("```toml\n")
            .expect("the README shows a configuration")
            + 8;
        let end = start + readme[start..].find("```").expect("closed");
        let config: Config = toml::from_str(&readme[start..end]).unwrap();
        assert_eq!(config.name.as_deref(), Some("orders"));
        assert!(!config.hosts.is_empty() && !config.queues.is_empty());
    }
}
