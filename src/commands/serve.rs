//! `mqemu serve`: a queue manager and the native-protocol server, configured by flags and an
//! optional TOML file, stopped gracefully by SIGTERM or Ctrl-C.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use std::sync::Arc;

use mqemu::config::Config;
use mqemu::triggers::Triggers;
use mqemu::{Compat, Error, ErrorCode, QueueManager, QueueProps};
use mqnet::{Auth, HttpAction, Server, ServerConfig, TriggerService};

/// Where the server listens unless told otherwise: loopback only, the protocol's port.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:18010";

/// Where it keeps its data unless told otherwise.
pub const DEFAULT_DATA: &str = "./mqemu-data";

/// What the command line says.
#[derive(clap::Args, Debug)]
pub struct Options {
    /// Address to listen on [default: 127.0.0.1:18010].
    #[arg(long)]
    pub listen: Option<String>,
    /// Also serve the HTTP API, health probes and Prometheus metrics on this address
    /// (127.0.0.1:18080, say) [default: off, or the configuration's `http`].
    #[arg(long)]
    pub http: Option<String>,
    /// Also speak AMQP 0-9-1 (and Mono's 0-8) on this address, for RabbitMQ's clients and
    /// .NET System.Messaging through Mono (127.0.0.1:5672, say) [default: off, or the
    /// configuration's `amqp`; docs/amqp.md].
    #[arg(long)]
    pub amqp: Option<String>,
    /// Also accept MSMQ's own binary protocol (MS-MQQB), as Windows queue managers send it to
    /// TCP 1801, on this address (127.0.0.1:1801, say) [default: off, or the configuration's
    /// `mqqb`; docs/mqqb.md].
    #[arg(long)]
    pub mqqb: Option<String>,
    /// Also answer MS-MQQB's UDP pings, which Windows versions before Vista send before they
    /// connect, on this address (127.0.0.1:3527, say) [default: off, or `mqqb_ping`].
    #[arg(long)]
    pub mqqb_ping: Option<String>,
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
    /// The queue manager's computer name (a virtual server's name) [default: the host's, or
    /// the configuration's `name`].
    #[arg(long)]
    pub name: Option<String>,
    /// Serve beyond loopback with no users configured, on purpose: anyone who can connect may
    /// then do anything [default: refused, or the configuration's `allow_open`].
    #[arg(long)]
    pub allow_open: bool,
    /// Speak TLS on the native protocol with this certificate chain (PEM; read again on
    /// SIGHUP) [default: the configuration's `[tls] cert`].
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM) [default: the configuration's `[tls] key`].
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) whose client certificates log in as the `[[user]]` whose
    /// `certificate` names them [default: the configuration's `[tls] client_ca`].
    #[arg(long, requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
}

/// The host part of a listen address, unless it is every interface (`0.0.0.0`, `[::]`).
fn listen_ip(listen: &str) -> Option<String> {
    if let Ok(addr) = listen.parse::<std::net::SocketAddr>() {
        return (!addr.ip().is_unspecified()).then(|| addr.ip().to_string());
    }
    listen.rsplit_once(':').map(|(host, _)| host.to_owned())
}

/// Whether every address `listen` names is a loopback one (a name is looked up).
fn loopback_only(listen: &str) -> bool {
    use std::net::ToSocketAddrs;
    match listen.to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        // Not an address at all: binding it fails with its own error.
        Err(_) => true,
    }
}

/// Refuses to listen on `listen` for `what` beyond loopback when the server is `open` (no
/// users), unless that was asked for: a server reachable from other computers that lets anyone
/// do anything should never be the accident of a missing configuration file.
fn refuse_open(what: &str, listen: &str, open: bool, allow_open: bool) -> mqemu::Result<()> {
    if !open || allow_open || loopback_only(listen) {
        return Ok(());
    }
    Err(Error::new(
        ErrorCode::InvalidParameter,
        format!(
            "refusing to serve {what} on {listen} with no users: beyond loopback anyone who can \
             connect could send, receive and delete anything. Give users with tokens \
             ([[user]] in --config), listen on 127.0.0.1, or pass --allow-open \
             (allow_open = true) to serve an open server on purpose"
        ),
    ))
}

/// Runs the server until SIGTERM or Ctrl-C.
pub fn run(opts: Options) -> mqemu::Result<()> {
    let config = match &opts.config {
        Some(p) => mqemu::config::load(p)?,
        None => Config::default(),
    };
    let listen = opts
        .listen
        .or(config.listen.clone())
        .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let opts_http = opts.http.or(config.http.clone());
    let opts_amqp = opts.amqp.or(config.amqp.clone());
    let opts_mqqb = opts.mqqb.or(config.mqqb.clone());
    let opts_mqqb_ping = opts.mqqb_ping.or(config.mqqb_ping.clone());
    let client_ca = opts
        .tls_client_ca
        .or_else(|| config.tls.as_ref().and_then(|t| t.client_ca.clone()));
    let tls = match (opts.tls_cert, opts.tls_key, &config.tls) {
        (Some(cert), Some(key), _) => Some(mqnet::TlsFiles {
            cert,
            key,
            client_ca,
        }),
        (_, _, Some(t)) => Some(mqnet::TlsFiles {
            cert: t.cert.clone(),
            key: t.key.clone(),
            client_ca,
        }),
        _ => None,
    };
    let tls = tls.map(mqnet::ServerTls::load).transpose()?;
    let auth = Auth::new(config.users.clone());
    auth.check()?;
    let transfer_config = config.transfer.config(port_of(&listen))?;
    let open = config.users.is_empty();
    let allow_open = opts.allow_open || config.allow_open;
    // Before anything is opened or bound. TLS alone keeps strangers from reading the traffic,
    // not from connecting, but the rule is users or TLS.
    refuse_open(
        "the native protocol",
        &listen,
        open && tls.is_none(),
        allow_open,
    )?;
    if let Some(h) = &opts_http {
        refuse_open("HTTP", h, open && tls.is_none(), allow_open)?;
    }
    if let Some(a) = &opts_amqp {
        // AMQP here has no TLS: only users keep it from being open.
        refuse_open("AMQP", a, open, allow_open)?;
    }
    // MS-MQQB carries no credentials (Windows checks senders' SIDs against Active Directory,
    // which mqemu does not): beyond loopback it is open whatever users are configured.
    for at in opts_mqqb.iter().chain(&opts_mqqb_ping) {
        refuse_open("MS-MQQB, which has no credentials,", at, true, allow_open)?;
    }
    let compat: Compat = match opts.compat.or(config.compat.clone()) {
        Some(c) => c.parse()?,
        None => Compat::default(),
    };
    let mut builder = QueueManager::builder().compat(compat);
    if let Some(name) = opts.name.as_ref().or(config.name.as_ref()) {
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
        auth: auth.clone(),
        triggers: triggers
            .clone()
            .map(TriggerService::running)
            .unwrap_or_default(),
        tls: tls.clone(),
        ..defaults
    };
    let users: BTreeMap<_, _> = config
        .users
        .iter()
        .map(|u| (u.name.clone(), u.admin))
        .collect();
    let rt = super::runtime::multi_thread("mqemu-serve")
        .build()
        .map_err(|e| Error::new(ErrorCode::InsufficientResources, e.to_string()))?;
    rt.block_on(async move {
        let mut server_config = server_config;
        let transfer = mqnet::TransferService::start(qm.clone(), transfer_config);
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
            tracing::warn!(%addr, "listening beyond loopback with no users (--allow-open): anyone who can connect may do anything");
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
        let http = match opts_http {
            Some(http_addr) => {
                let http_config = mqnet::http::HttpConfig {
                    auth: auth.clone(),
                    native: Some(server.counts()),
                    // HTTPS on the native protocol's certificate (reloaded with it on SIGHUP).
                    tls: tls.clone(),
                    transfer: Some(transfer.clone()),
                    triggers: triggers
                        .clone()
                        .map(TriggerService::running)
                        .unwrap_or_default(),
                    ..mqnet::http::HttpConfig::default()
                };
                let http = mqnet::http::HttpServer::bind(&http_addr, qm.clone(), http_config)
                    .await
                    .map_err(|e| {
                        Error::new(
                            ErrorCode::ServiceNotAvailable,
                            format!("cannot listen for HTTP on {http_addr}: {e}"),
                        )
                    })?;
                let http_at = http
                    .local_addr()
                    .map_err(|e| Error::new(ErrorCode::ServiceNotAvailable, e.to_string()))?;
                if open && !http_at.ip().is_loopback() {
                    tracing::warn!(%http_at, "HTTP beyond loopback with no users (--allow-open): anyone who can connect may do anything");
                }
                println!("http on {http_at}");
                Some(tokio::spawn(http.run(stopper.stopped())))
            }
            None => None,
        };
        let amqp = match opts_amqp {
            Some(at) => Some(start_amqp(&at, &qm, &auth, stopper.clone()).await?),
            None => None,
        };
        let mqqb = match opts_mqqb {
            Some(at) => Some(start_mqqb(&at, &qm, stopper.clone()).await?),
            None => None,
        };
        if let Some(at) = opts_mqqb_ping {
            let socket = tokio::net::UdpSocket::bind(&at).await.map_err(|e| {
                Error::new(
                    ErrorCode::ServiceNotAvailable,
                    format!("cannot answer MS-MQQB pings on {at}: {e}"),
                )
            })?;
            if let Ok(bound) = socket.local_addr() {
                println!("mqqb ping on {bound}");
            }
            let stopped = stopper.stopped();
            tokio::spawn(mqnet::binary::answer_pings(socket, qm.guid(), stopped));
        }
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("signal received: stopping");
            stopper.stop();
        });
        if let Some(tls) = tls {
            tokio::spawn(reload_on_hangup(tls));
        }
        server
            .run()
            .await
            .map_err(|e| Error::new(ErrorCode::Error, e.to_string()))?;
        if let Some(http) = http {
            match http.await {
                Ok(Err(e)) => tracing::warn!(error = %e, "the HTTP listener failed"),
                Err(e) => tracing::warn!(error = %e, "the HTTP listener panicked"),
                Ok(Ok(())) => {}
            }
        }
        if let Some(amqp) = amqp {
            let _ = amqp.await;
        }
        if let Some(mqqb) = mqqb {
            let _ = mqqb.await;
        }
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
        let def = r.to_def()?;
        match t.rule(&r.name) {
            Ok(_) => t.update_rule(&r.name, def)?,
            Err(_) => t.add_rule(def)?,
        };
    }
    for d in &config.trigger_decls {
        let def = d.to_def()?;
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

/// Starts the AMQP listener on `at`, stopped with the native server.
async fn start_amqp(
    at: &str,
    qm: &QueueManager,
    auth: &Auth,
    stopper: mqnet::Stopper,
) -> mqemu::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let config = mqnet::amqp::AmqpConfig {
        auth: auth.clone(),
        ..mqnet::amqp::AmqpConfig::default()
    };
    let amqp = mqnet::amqp::AmqpServer::bind(at, qm.clone(), config)
        .await
        .map_err(|e| {
            Error::new(
                ErrorCode::ServiceNotAvailable,
                format!("cannot listen for AMQP on {at}: {e}"),
            )
        })?;
    let bound = amqp
        .local_addr()
        .map_err(|e| Error::new(ErrorCode::ServiceNotAvailable, e.to_string()))?;
    println!("amqp on {bound}");
    Ok(tokio::spawn(amqp.run(stopper.stopped())))
}

/// Starts the MS-MQQB listener on `at`, stopped with the native server.
async fn start_mqqb(
    at: &str,
    qm: &QueueManager,
    stopper: mqnet::Stopper,
) -> mqemu::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let config = mqnet::binary::MqqbConfig::default();
    let mqqb = mqnet::binary::MqqbServer::bind(at, qm.clone(), config)
        .await
        .map_err(|e| {
            Error::new(
                ErrorCode::ServiceNotAvailable,
                format!("cannot listen for MS-MQQB on {at}: {e}"),
            )
        })?;
    let bound = mqqb
        .local_addr()
        .map_err(|e| Error::new(ErrorCode::ServiceNotAvailable, e.to_string()))?;
    println!("mqqb on {bound}");
    Ok(tokio::spawn(mqqb.run(stopper.stopped())))
}

/// The port of `host:port` [default: the native protocol's].
fn port_of(listen: &str) -> u16 {
    listen
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(mqnet::DEFAULT_PORT)
}

/// Reads the TLS certificate and key again at each SIGHUP: new connections get the renewed
/// certificate, open ones keep theirs; a file that does not load leaves the old one in place.
async fn reload_on_hangup(tls: mqnet::ServerTls) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            match tls.reload() {
                Ok(()) => tracing::info!("SIGHUP: TLS certificate reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: TLS certificate not reloaded; the old one stays")
                }
            }
        }
    }
    #[cfg(not(unix))]
    drop(tls);
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
    use super::{listen_ip, refuse_open};

    #[test]
    fn an_open_server_beyond_loopback_is_refused_unless_asked_for() {
        // No users, beyond loopback: refused, saying what to do.
        for listen in ["0.0.0.0:18010", "[::]:18010", "192.0.2.7:1801"] {
            let e = refuse_open("the native protocol", listen, true, false).unwrap_err();
            assert_eq!(e.code(), mqemu::ErrorCode::InvalidParameter);
            assert!(e.detail().contains("--allow-open"), "{e}");
            assert!(e.detail().contains("[[user]]"), "{e}");
            // Asked for, or with users: served.
            refuse_open("the native protocol", listen, true, true).unwrap();
            refuse_open("the native protocol", listen, false, false).unwrap();
        }
        // Loopback, by address or by name: served open, as the README's command does.
        for listen in [
            "127.0.0.1:18010",
            "127.0.0.3:18010",
            "[::1]:18010",
            "localhost:18010",
        ] {
            refuse_open("HTTP", listen, true, false).unwrap();
        }
    }

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
}
