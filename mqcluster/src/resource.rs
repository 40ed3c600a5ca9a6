//! What each resource type does when the owner brings it online, takes it offline and checks
//! it. A group's resources share a [`GroupCtx`]: what the ones online so far provide to those
//! that depend on them (the address, the name, the storage root, the queue manager).

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqcore::storage::FillableDisk;
use mqcore::triggers::Triggers;
use mqcore::tx::LocalCoordinator;
use mqcore::{Error, ErrorCode, QueueManager};
use mqnet::{
    ClientTls, Server, ServerConfig, ServerTls, Stopper, TlsFiles, TransferConfig, TransferService,
    TriggerService,
};

use crate::coord::{Coordination, Grant};
use crate::disk::SharedDisk;
use crate::error::{ClusterError, Result};
use crate::model::{GroupDef, ResourceDef, ResourceKind};

/// What a group's online resources provide to the others, and what the node gives the group.
pub struct GroupCtx {
    /// The group's definition.
    pub def: GroupDef,
    /// The node's name.
    pub node: String,
    /// The node's own queue manager's address (what `.` means with UseNetworkName off).
    pub node_address: SocketAddr,
    /// The cluster directory (disk paths are relative to it).
    pub cluster_dir: PathBuf,
    /// The grant the group is held under.
    pub grant: Grant,
    /// The coordination store (the name registry).
    pub coord: Arc<dyn Coordination>,
    /// Whether the lease still holds, by this node's clock less the margin.
    pub lease: Arc<dyn Fn() -> bool + Send + Sync>,
    /// The node's runtime, for servers.
    pub rt: tokio::runtime::Handle,
    /// The group's transaction coordinator: available while its DTC resource is online (always,
    /// in a group without one).
    pub dtc: Arc<LocalCoordinator>,
    /// The IP address resource's address.
    pub ip: Option<IpAddr>,
    /// The network name.
    pub name: Option<String>,
    /// The storage root the disk resource mounted.
    pub root: Option<PathBuf>,
    /// The disk's generation, and whether mounting it sealed a stale owner's.
    pub generation: Option<(u64, bool)>,
    /// The virtual server's queue manager.
    pub qm: Option<QueueManager>,
    /// Where it listens.
    pub listening: Option<SocketAddr>,
    /// The Triggers service its server administers: filled while the Triggers resource is
    /// online.
    pub triggers: TriggerService,
    /// Extra options for the queue manager (tests: a small log segment).
    pub segment_size: Option<u64>,
    /// The file system the queue manager's log goes on, if not the real one (tests fill it).
    pub disk: Option<FillableDisk>,
    /// The cluster's status, for the virtual server's HTTP face (`/api/cluster`).
    pub status: Arc<dyn Fn() -> Result<crate::status::ClusterStatus> + Send + Sync>,
}

impl GroupCtx {
    /// The port the group's Message Queuing resource listens on.
    pub fn msmq_port(&self) -> u16 {
        self.def
            .resources
            .iter()
            .find_map(|r| match r.kind {
                ResourceKind::MessageQueuing { port, .. } => {
                    Some(port.unwrap_or(mqnet::DEFAULT_PORT))
                }
                _ => None,
            })
            .unwrap_or(mqnet::DEFAULT_PORT)
    }
}

/// A resource brought online: what must be undone to take it offline.
pub enum Running {
    /// Nothing to undo but the context's fields.
    Plain,
    /// An address added by a hook.
    Address {
        /// The hook to run on removal.
        remove: Option<String>,
    },
    /// A queue manager's server and transfer service.
    Msmq {
        /// Stops the server.
        stopper: Stopper,
        /// The server's task.
        task: tokio::task::JoinHandle<()>,
        /// The transfer service.
        transfer: TransferService,
    },
    /// The Triggers service.
    Triggers(Arc<Triggers>),
    /// A process.
    Process(Child),
}

/// Brings a resource online for the group.
pub fn online(def: &ResourceDef, ctx: &mut GroupCtx) -> Result<Running> {
    match &def.kind {
        ResourceKind::IpAddress {
            address,
            add_command,
            remove_command,
        } => {
            let ip: IpAddr = address.parse().map_err(|e| {
                ClusterError::Config(format!("IP address resource: {address}: {e}"))
            })?;
            if let Some(cmd) = add_command {
                run_hook(cmd, address)?;
            }
            // The address must be this host's now (every 127/8 address is, on Linux).
            TcpListener::bind((ip, 0)).map_err(|e| {
                ClusterError::Engine(Error::new(
                    ErrorCode::ServiceNotAvailable,
                    format!("address {ip} is not usable on this node: {e}"),
                ))
            })?;
            ctx.ip = Some(ip);
            Ok(Running::Address {
                remove: remove_command.clone(),
            })
        }
        ResourceKind::NetworkName { dns_name } => {
            let ip = ctx.ip.ok_or_else(|| missing("an IP address", dns_name))?;
            let at = SocketAddr::new(ip, ctx.msmq_port());
            ctx.coord
                .register_name(dns_name, &at.to_string(), ctx.grant.token)?;
            ctx.name = Some(dns_name.clone());
            Ok(Running::Plain)
        }
        ResourceKind::PhysicalDisk { path } => {
            let disk = SharedDisk::new(ctx.cluster_dir.join(path));
            let mounted = disk.mount(ctx.grant.clean)?;
            if mounted.sealed {
                tracing::warn!(group = %ctx.def.name, disk = %disk.path().display(), generation = mounted.generation,
                    "took the disk over from a node that did not give it up: fenced and sealed its storage");
            }
            ctx.generation = Some((mounted.generation, mounted.sealed));
            ctx.root = Some(mounted.root);
            Ok(Running::Plain)
        }
        ResourceKind::MessageQueuing {
            transfer_port,
            http_port,
            tls_cert,
            tls_key,
            transfer_tls_ca,
            ..
        } => {
            let name = ctx
                .name
                .clone()
                .ok_or_else(|| missing("a network name", "MSMQ"))?;
            let ip = ctx.ip.ok_or_else(|| missing("an IP address", "MSMQ"))?;
            let root = ctx.root.clone().ok_or_else(|| missing("a disk", "MSMQ"))?;
            let mut b = QueueManager::builder()
                .name(&name)
                .address(ip.to_string())
                .coordinator(ctx.dtc.clone())
                .lease(ctx.lease.clone());
            if let Some(d) = &ctx.disk {
                b = b.disk(Arc::new(d.clone()));
            }
            if let Some(s) = ctx.segment_size {
                b = b.segment_size(s);
            }
            let in_dir = |p: &String| ctx.cluster_dir.join(p);
            // Both or neither: the definition was checked when it was loaded.
            let tls = match (tls_cert, tls_key) {
                (Some(cert), Some(key)) => Some(ServerTls::load(TlsFiles {
                    cert: in_dir(cert),
                    key: in_dir(key),
                    // Virtual servers have no users yet, so no certificate could name one.
                    client_ca: None,
                })?),
                _ => None,
            };
            let transfer_tls = transfer_tls_ca
                .as_ref()
                .map(|ca| ClientTls::with_ca(&in_dir(ca)))
                .transpose()?;
            let qm = b.open(&root)?;
            if !qm.in_doubt().is_empty() && !mqcore::tx::Coordinator::is_available(&*ctx.dtc) {
                return Err(ClusterError::Engine(Error::new(
                    ErrorCode::DtcConnect,
                    format!(
                        "{} in-doubt transactions wait for the transaction coordinator, which is offline",
                        qm.in_doubt().len()
                    ),
                )));
            }
            let port = ctx.msmq_port();
            let at = SocketAddr::new(ip, port);
            let transfer = TransferService::start(
                qm.clone(),
                TransferConfig {
                    port: transfer_port.unwrap_or(port),
                    tls: transfer_tls,
                    ..TransferConfig::default()
                },
            );
            let config = ServerConfig {
                transfer: Some(transfer.clone()),
                triggers: ctx.triggers.clone(),
                tls: tls.clone(),
                ..ServerConfig::default()
            };
            // The address may still be held by a previous owner that has not noticed yet
            // that it lost the group (stopped, cut off): keep trying while pending.
            let pending = Instant::now() + Duration::from_millis(def.policy.pending_timeout_ms);
            let server = loop {
                match ctx
                    .rt
                    .block_on(Server::bind(at, qm.clone(), config.clone()))
                {
                    Ok(s) => break s,
                    Err(e) if Instant::now() < pending && (ctx.lease)() => {
                        tracing::debug!(%at, error = %e, "address busy; retrying");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(e) => {
                        transfer.stop();
                        return Err(ClusterError::Engine(Error::new(
                            ErrorCode::ServiceNotAvailable,
                            format!("cannot listen on {at}: {e}"),
                        )));
                    }
                }
            };
            let stopper = server.stopper();
            if let Some(http_port) = http_port {
                let at = SocketAddr::new(ip, *http_port);
                if let Err(e) = start_http(ctx, &qm, at, &server, &transfer, tls) {
                    stopper.stop();
                    transfer.stop();
                    return Err(e);
                }
            }
            let task = ctx.rt.spawn(async move {
                if let Err(e) = server.run().await {
                    tracing::error!(error = %e, "virtual server stopped");
                }
            });
            ctx.qm = Some(qm);
            ctx.listening = Some(at);
            Ok(Running::Msmq {
                stopper,
                task,
                transfer,
            })
        }
        ResourceKind::MsmqTriggers => {
            let qm = ctx.qm.as_ref().ok_or_else(|| missing("MSMQ", "Triggers"))?;
            let triggers = Arc::new(Triggers::start(qm)?);
            ctx.triggers.set(Some(triggers.clone()));
            Ok(Running::Triggers(triggers))
        }
        ResourceKind::Dtc => {
            ctx.dtc.set_available(true);
            Ok(Running::Plain)
        }
        ResourceKind::GenericApplication {
            command,
            args,
            use_network_name,
        } => {
            // UseNetworkName: `.` (the computer name) is the virtual server, or the node.
            let (server, computer) = match (use_network_name, ctx.listening, &ctx.name) {
                (true, Some(at), Some(name)) => (at.to_string(), name.clone()),
                _ => (ctx.node_address.to_string(), ctx.node.clone()),
            };
            let child = Command::new(command)
                .args(args)
                .env("MQEMU_SERVER", server)
                .env("MQEMU_COMPUTER_NAME", computer)
                .env("MQEMU_NODE", &ctx.node)
                .env("MQEMU_GROUP", &ctx.def.name)
                .stdin(Stdio::null())
                .spawn()
                .map_err(|e| {
                    ClusterError::Engine(Error::new(
                        ErrorCode::ServiceNotAvailable,
                        format!("cannot start {command}: {e}"),
                    ))
                })?;
            Ok(Running::Process(child))
        }
    }
}

/// Takes a resource offline.
pub fn offline(kind: &ResourceKind, running: Running, ctx: &mut GroupCtx) {
    match running {
        Running::Plain => {}
        Running::Address { remove } => {
            if let (Some(cmd), ResourceKind::IpAddress { address, .. }) = (remove, kind) {
                if let Err(e) = run_hook(&cmd, address) {
                    tracing::warn!(error = %e, "removing the address failed");
                }
            }
        }
        Running::Msmq {
            stopper,
            task,
            transfer,
        } => {
            stopper.stop();
            transfer.stop();
            // Connections close within the server's own shutdown; a client still waiting
            // (a receive with a long timeout) is cut off after a moment.
            let _ = ctx
                .rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(2), task).await });
        }
        Running::Triggers(t) => {
            ctx.triggers.set(None);
            t.stop();
        }
        Running::Process(mut child) => {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    match kind {
        ResourceKind::IpAddress { .. } => ctx.ip = None,
        ResourceKind::NetworkName { dns_name } => {
            // Only our own registration: a new owner may have registered it already.
            let _ = ctx.coord.unregister_name(dns_name, ctx.grant.token);
            ctx.name = None;
        }
        ResourceKind::PhysicalDisk { .. } => ctx.root = None,
        ResourceKind::MessageQueuing { .. } => {
            ctx.qm = None;
            ctx.listening = None;
        }
        ResourceKind::Dtc => ctx.dtc.set_available(false),
        _ => {}
    }
}

/// Starts the virtual server's HTTP face on `at`, stopped with its native server.
#[cfg(feature = "http")]
fn start_http(
    ctx: &GroupCtx,
    qm: &QueueManager,
    at: SocketAddr,
    server: &Server,
    transfer: &TransferService,
    tls: Option<ServerTls>,
) -> Result<()> {
    let status = ctx.status.clone();
    let config = mqnet::http::HttpConfig {
        transfer: Some(transfer.clone()),
        triggers: ctx.triggers.clone(),
        cluster: Some(Arc::new(move || {
            let s =
                status().map_err(|e| Error::new(ErrorCode::ServiceNotAvailable, e.to_string()))?;
            serde_json::to_value(s).map_err(|e| Error::new(ErrorCode::Error, e.to_string()))
        })),
        native: Some(server.counts()),
        tls,
        ..mqnet::http::HttpConfig::default()
    };
    let http = ctx
        .rt
        .block_on(mqnet::http::HttpServer::bind(at, qm.clone(), config))
        .map_err(|e| {
            ClusterError::Engine(Error::new(
                ErrorCode::ServiceNotAvailable,
                format!("cannot listen for HTTP on {at}: {e}"),
            ))
        })?;
    let stopped = server.stopper().stopped();
    ctx.rt.spawn(async move {
        if let Err(e) = http.run(stopped).await {
            tracing::error!(error = %e, "virtual server's HTTP face stopped");
        }
    });
    Ok(())
}

/// Without the `http` feature a resource that asks for an HTTP face fails to come online.
#[cfg(not(feature = "http"))]
fn start_http(
    _ctx: &GroupCtx,
    _qm: &QueueManager,
    at: SocketAddr,
    _server: &Server,
    _transfer: &TransferService,
    _tls: Option<ServerTls>,
) -> Result<()> {
    Err(ClusterError::Engine(Error::new(
        ErrorCode::UnsupportedOperation,
        format!(
            "http_port asks for an HTTP face on {at}, but this build has no HTTP (feature http)"
        ),
    )))
}

/// A resource's health check (LooksAlive and IsAlive are the same check here).
pub fn alive(running: &mut Running, ctx: &GroupCtx) -> bool {
    match running {
        // A queue manager whose storage stopped acknowledging (a full disk, a failed write)
        // fails its check, so that the restart policy reopens it, here or elsewhere.
        Running::Msmq { task, .. } => {
            !task.is_finished()
                && (ctx.lease)()
                && ctx
                    .qm
                    .as_ref()
                    .is_none_or(|q| q.storage_failure().is_none())
        }
        Running::Process(child) => matches!(child.try_wait(), Ok(None)),
        _ => true,
    }
}

fn missing(what: &str, for_: &str) -> ClusterError {
    ClusterError::Engine(Error::new(
        ErrorCode::ServiceNotAvailable,
        format!("{for_} needs {what} online in its group"),
    ))
}

fn run_hook(cmd: &str, address: &str) -> Result<()> {
    let status = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("MQEMU_IP", address)
        .status()
        .map_err(|e| ClusterError::Config(format!("running {cmd:?}: {e}")))?;
    if !status.success() {
        return Err(ClusterError::Config(format!("{cmd:?} failed: {status}")));
    }
    Ok(())
}
