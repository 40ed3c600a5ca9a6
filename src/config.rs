//! The configuration file of `mqemu serve` (TOML; every key optional, flags win over the file):
//! its types, how it is read, and the checks a server makes of it before it starts, in the
//! library so that they can be fuzzed and used by embedders.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mqcore::name::QueueName;
use mqcore::triggers::{Processing, RuleDef, TriggerDef};
use mqcore::{Compat, Error, ErrorCode, Result};
use mqnet::User;
use serde::Deserialize;

/// The configuration file (every key optional; flags win over the file).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: Option<String>,
    /// Address of the HTTP API, health probes and metrics (off when absent).
    pub http: Option<String>,
    /// Address of the AMQP 0-9-1 listener (off when absent; docs/amqp.md).
    pub amqp: Option<String>,
    /// Address of the MS-MQQB listener, MSMQ's own binary protocol (off when absent;
    /// docs/mqqb.md).
    pub mqqb: Option<String>,
    /// Address answering MS-MQQB's UDP pings (off when absent).
    pub mqqb_ping: Option<String>,
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
    /// Serve beyond loopback with no users, on purpose (otherwise refused at start).
    #[serde(default)]
    pub allow_open: bool,
    /// TLS on the native protocol.
    #[serde(default)]
    pub tls: Option<TlsDecl>,
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

/// `[tls]`: the server's certificate chain and key, PEM files (read again on SIGHUP).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsDecl {
    /// The certificate chain, the server's own first.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// CA certificates whose client certificates log in as the `[[user]]` naming them.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
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
    /// CA certificates (PEM) that destination servers' certificates are verified against:
    /// with it, transfer speaks TLS to every destination (the native protocol and
    /// `DIRECT=HTTPS://` names), checking the certificate against the computer name the format
    /// name gives [default: plaintext, and HTTPS names cannot be reached].
    pub tls_ca: Option<PathBuf>,
    /// A certificate chain (PEM) presented to destinations that ask for one: with their
    /// `client_ca`, it logs this queue manager in as the user naming it.
    pub tls_cert: Option<PathBuf>,
    /// The key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

impl TransferDecl {
    /// The service's settings, for a server listening on `port`; fails on unreadable TLS files.
    pub fn config(&self, port: u16) -> Result<mqnet::TransferConfig> {
        let tls = match (&self.tls_ca, &self.tls_cert, &self.tls_key) {
            (None, None, None) => None,
            (Some(ca), None, None) => Some(mqnet::ClientTls::with_ca(ca)?),
            (Some(ca), Some(cert), Some(key)) => Some(mqnet::ClientTls::with_ca_and_certificate(
                ca,
                Some((cert, key)),
            )?),
            _ => {
                return Err(Error::new(
                    ErrorCode::InvalidParameter,
                    "[transfer] tls_cert and tls_key go together, and need tls_ca",
                ))
            }
        };
        let defaults = mqnet::TransferConfig::default();
        let resend = match (&self.resend_ms, self.resend_scale) {
            (Some(ms), _) => ms.iter().map(|&m| Duration::from_millis(m)).collect(),
            (None, Some(scale)) => mqnet::TransferConfig::scaled_schedule(scale),
            (None, None) => defaults.resend.clone(),
        };
        Ok(mqnet::TransferConfig {
            port: self.port.unwrap_or(port),
            token: self.token.clone(),
            resend,
            batch: self.batch.unwrap_or(defaults.batch).max(1),
            window: self.window.unwrap_or(defaults.window).max(1),
            idle: self.idle_secs.map_or(defaults.idle, Duration::from_secs),
            tls,
            ..defaults
        })
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
    Table(mqcore::triggers::Action),
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
    pub conditions: Option<Vec<mqcore::triggers::Condition>>,
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

fn bad(why: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::InvalidParameter, why.to_string())
}

/// Reads a configuration file.
pub fn load(path: &Path) -> Result<Config> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad(format!("configuration {}: {e}", path.display())))?;
    parse(&text).map_err(|e| bad(format!("configuration {}: {}", path.display(), e.detail())))
}

/// Reads a configuration from its text, and checks it ([`Config::check`]).
pub fn parse(text: &str) -> Result<Config> {
    let config: Config = toml::from_str(text).map_err(bad)?;
    config.check()?;
    Ok(config)
}

impl Config {
    /// What a server would refuse at start: an unknown compatibility level, a queue that is
    /// not a path name, a rule or trigger MSMQ would not accept. With MSMQ's error codes.
    pub fn check(&self) -> Result<()> {
        if let Some(c) = &self.compat {
            c.parse::<Compat>()?;
        }
        if let Some(name) = &self.name {
            QueueName::try_private(name, "q").map_err(|e| {
                bad(format!(
                    "name {name:?} is not a computer name: {}",
                    e.detail()
                ))
            })?;
        }
        for q in &self.queues {
            QueueName::parse_path(&q.path)?;
        }
        for r in &self.rules {
            r.to_def()?;
        }
        for t in &self.trigger_decls {
            t.to_def()?;
        }
        Ok(())
    }
}

impl RuleDecl {
    /// The rule it declares.
    pub fn to_def(&self) -> Result<RuleDef> {
        // Tables go through MSMQ's stored strings, as the Triggers service keeps them: the rule
        // that runs is then the rule that is read back after a restart (the serve_config fuzz
        // target found `path = "x "` running as `x ` and coming back as `x`).
        let conditions = match (&self.condition, &self.conditions) {
            (Some(text), None) => mqcore::triggers::rule::parse_conditions(text)?,
            (None, Some(list)) => mqcore::triggers::rule::parse_conditions(
                &mqcore::triggers::rule::format_conditions(list),
            )?,
            (None, None) => Vec::new(),
            (Some(_), Some(_)) => {
                return Err(bad(format!(
                    "rule {:?}: give condition or conditions, not both",
                    self.name
                )))
            }
        };
        let action = match &self.action {
            ActionDecl::Msmq(text) => mqcore::triggers::Action::parse(text)?,
            ActionDecl::Table(a) => mqcore::triggers::Action::parse(&a.to_string())?,
        };
        Ok(RuleDef {
            name: self.name.clone(),
            description: self.description.clone(),
            conditions,
            action,
        })
    }
}

impl TriggerDecl {
    /// The trigger it declares (its rules are attached by name).
    pub fn to_def(&self) -> Result<TriggerDef> {
        Ok(TriggerDef {
            name: self.name.clone(),
            queue: self.queue.clone(),
            processing: Processing::parse(&self.processing)?,
            enabled: self.enabled,
            serialized: self.serialized,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Config;

    /// Found by the serve_config fuzz target.
    #[test]
    fn a_table_rule_is_the_rule_its_stored_strings_read_back_as() {
        let config = super::parse(
            r#"
            [[rule]]
            name = "t"
            conditions = [{ label_contains = "go" }]
            action = { exe = { path = "/usr/bin/touch ", params = ["$MSG_LABEL"] } }
            "#,
        )
        .unwrap();
        let def = config.rules[0].to_def().unwrap();
        let rule = mqcore::triggers::Rule {
            id: Default::default(),
            def: def.clone(),
        };
        let back = mqcore::triggers::RuleDef::parse(
            "t",
            "",
            &rule.condition_string(),
            &rule.action_string(),
        )
        .unwrap();
        assert_eq!(back, def);
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
        let readme = include_str!("../README.md");
        let start = readme
            .find("```toml\n")
            .expect("the README shows a configuration")
            + 8;
        let end = start + readme[start..].find("```").expect("closed");
        let config: Config = toml::from_str(&readme[start..end]).unwrap();
        assert_eq!(config.name.as_deref(), Some("orders"));
        assert!(!config.hosts.is_empty() && !config.queues.is_empty());
    }

    #[test]
    fn transfer_tls_is_all_or_nothing_and_reads_its_files() {
        let config = |text: &str| super::parse(text).unwrap().transfer.config(1801);
        assert!(config("").unwrap().tls.is_none());
        let e = config("[transfer]\ntls_cert = \"a.crt\"\n").unwrap_err();
        assert!(e.detail().contains("tls_cert and tls_key"), "{e}");
        let e = config("[transfer]\ntls_ca = \"/nonexistent/ca.crt\"\n").unwrap_err();
        assert_eq!(e.code(), mqcore::ErrorCode::InvalidParameter);
        assert!(e.detail().contains("/nonexistent/ca.crt"), "{e}");
    }

    #[test]
    fn a_user_must_be_able_to_log_in_and_tokens_are_unique() {
        let auth = |text: &str| mqnet::Auth::new(super::parse(text).unwrap().users).check();
        auth("[[user]]\nname = \"a\"\ntoken = \"t\"\n").unwrap();
        auth("[[user]]\nname = \"a\"\ncertificate = \"a.example\"\n").unwrap();
        let e = auth("[[user]]\nname = \"a\"\n").unwrap_err();
        assert!(
            e.detail().contains("neither a token nor a certificate"),
            "{e}"
        );
        let e =
            auth("[[user]]\nname = \"a\"\ntoken = \"t\"\n[[user]]\nname = \"b\"\ntoken = \"t\"\n")
                .unwrap_err();
        assert!(e.detail().contains("same token"), "{e}");
    }
}
