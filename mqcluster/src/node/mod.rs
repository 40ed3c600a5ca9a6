//! The node process: its own queue manager, its heartbeat and lease renewals, placement of the
//! groups nobody owns, and one worker per group it hosts.
//!
//! Threads, so that slow work never delays a lease renewal:
//! - the *keeper* renews the leases of hosted groups and beats every heartbeat, and advances
//!   each group's "valid until" (renewal start + lease - margin, on this node's monotonic clock);
//! - the *manager* places groups (acquires those this node is the best live candidate for) and
//!   publishes the node's status;
//! - a *group worker* per hosted group brings its resources online in dependency order, checks
//!   them, applies restart and failover policy, carries out requests (move, offline, fault
//!   injection), and takes them offline in reverse order.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mqcore::storage::FillableDisk;
use mqcore::QueueManager;
use mqnet::{Server, ServerConfig, Stopper};
use serde::Serialize;

use crate::coord::{Coordination, Grant};
use crate::error::{io_context, ClusterError, Result};
use crate::model::{ClusterConfig, GroupDef};
use crate::state::{GroupState, ResourceState};

mod manager;
mod worker;

/// Where a node keeps its own queue manager.
#[derive(Debug, Clone)]
pub enum LocalData {
    /// In memory.
    InMemory,
    /// In this directory.
    Dir(PathBuf),
}

/// How to start a node.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// The cluster directory (coordination, and the base of disk paths).
    pub cluster_dir: PathBuf,
    /// This node's name, as in the cluster file.
    pub name: String,
    /// The cluster file's contents; default `<cluster_dir>/cluster.toml`.
    pub config: Option<ClusterConfig>,
    /// The node's own queue manager; default `<cluster_dir>/local/<name>`.
    pub local: Option<LocalData>,
    /// Log segment size of the virtual servers' queue managers (tests make it small).
    pub segment_size: Option<u64>,
    /// The file system each group's queue manager keeps its log on, by lower-case group name
    /// (default: the real one). Tests give every node the same [`FillableDisk`] for a group, so
    /// that filling it is filling the group's shared disk.
    pub disks: HashMap<String, FillableDisk>,
}

impl NodeOptions {
    /// A node `name` of the cluster in `cluster_dir`.
    pub fn new(cluster_dir: impl Into<PathBuf>, name: impl Into<String>) -> NodeOptions {
        NodeOptions {
            cluster_dir: cluster_dir.into(),
            name: name.into(),
            config: None,
            local: None,
            segment_size: None,
            disks: HashMap::new(),
        }
    }
}

/// A running node.
pub struct Node {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    local_server: Option<(Stopper, tokio::task::JoinHandle<()>)>,
    rt: Option<tokio::runtime::Runtime>,
}

struct Shared {
    name: String,
    config: ClusterConfig,
    dir: PathBuf,
    coord: Arc<dyn Coordination>,
    base: Instant,
    /// A clean stop: groups go offline and are released.
    stopping: AtomicBool,
    /// Abandoned (a test's kill): every thread stops where it is; nothing is released.
    dead: AtomicBool,
    hosted: Mutex<HashMap<String, Arc<Hosted>>>,
    rt: tokio::runtime::Handle,
    local_addr: SocketAddr,
    local_qm: QueueManager,
    segment_size: Option<u64>,
    disks: HashMap<String, FillableDisk>,
}

/// A group this node holds.
struct Hosted {
    def: GroupDef,
    grant: Grant,
    /// Nanoseconds after `Shared::base` until which the lease is trusted.
    valid_until: AtomicU64,
    /// The lease was lost (someone else holds the group now).
    lost: AtomicBool,
    /// What `cluster status` shows.
    view: Mutex<GroupView>,
}

/// One group as its owner sees it.
#[derive(Debug, Clone, Serialize)]
pub struct GroupView {
    /// The group.
    pub name: String,
    /// Its state.
    pub state: GroupState,
    /// The fencing token it is held under.
    pub token: u64,
    /// Its disk's generation, if mounted.
    pub generation: Option<u64>,
    /// Its resources in online order.
    pub resources: Vec<ResourceView>,
}

/// One resource as its owner sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ResourceView {
    /// The resource.
    pub name: String,
    /// Its type's name.
    pub kind: String,
    /// Its state.
    pub state: ResourceState,
    /// Restarts within the restart period.
    pub restarts: u32,
}

/// What a node publishes for `cluster status`.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    /// The node.
    pub node: String,
    /// Its own queue manager's address.
    pub address: String,
    /// Wall time of this view.
    pub wall_ms: u64,
    /// Its groups.
    pub groups: Vec<GroupView>,
}

impl Node {
    /// Starts node `options.name`: its queue manager and server, then its threads.
    pub fn start(options: NodeOptions) -> Result<Node> {
        let config = match options.config {
            Some(c) => c,
            None => ClusterConfig::load(&options.cluster_dir.join("cluster.toml"))?,
        };
        let def = config.node(&options.name).cloned().ok_or_else(|| {
            ClusterError::refused(
                crate::error::Win32::NodeNotFound,
                format!("{} is not a node of the cluster file", options.name),
            )
        })?;
        let coord = crate::coord::open(&config, &options.cluster_dir)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("mqemu-node-{}", def.name))
            .enable_all()
            .build()
            .map_err(io_context("starting the node's runtime"))?;
        let local = options.local.unwrap_or_else(|| {
            LocalData::Dir(
                options
                    .cluster_dir
                    .join("local")
                    .join(def.name.to_ascii_lowercase()),
            )
        });
        let listen = with_port(&def.address);
        let ip = listen.ip().to_string();
        let builder = QueueManager::builder().name(&def.name).address(&ip);
        let local_qm = match local {
            LocalData::InMemory => builder.build(),
            LocalData::Dir(d) => builder.open(d)?,
        };
        let server = rt
            .block_on(Server::bind(
                listen,
                local_qm.clone(),
                ServerConfig::default(),
            ))
            .map_err(io_context(format!(
                "node {}: listening on {listen}",
                def.name
            )))?;
        let local_addr = server.local_addr().map_err(io_context("local address"))?;
        let stopper = server.stopper();
        let task = rt.spawn(async move {
            let _ = server.run().await;
        });
        let shared = Arc::new(Shared {
            name: def.name.clone(),
            config,
            dir: options.cluster_dir,
            coord,
            base: Instant::now(),
            stopping: AtomicBool::new(false),
            dead: AtomicBool::new(false),
            hosted: Mutex::new(HashMap::new()),
            rt: rt.handle().clone(),
            local_addr,
            local_qm,
            segment_size: options.segment_size,
            disks: options.disks,
        });
        shared.coord.heartbeat(&shared.name)?;
        let threads = vec![
            spawn(format!("keeper-{}", shared.name), {
                let s = shared.clone();
                move || s.keep()
            }),
            spawn(format!("manager-{}", shared.name), {
                let s = shared.clone();
                move || s.manage()
            }),
        ];
        tracing::info!(node = %shared.name, address = %local_addr, "cluster node started");
        Ok(Node {
            shared,
            threads,
            local_server: Some((stopper, task)),
            rt: Some(rt),
        })
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Where the node's own queue manager listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// The node's own queue manager.
    pub fn local_qm(&self) -> &QueueManager {
        &self.shared.local_qm
    }

    /// The groups this node holds now.
    pub fn hosted(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .shared
            .hosted()
            .values()
            .map(|h| h.def.name.clone())
            .collect();
        v.sort();
        v
    }

    /// What the node would publish now.
    pub fn view(&self) -> NodeView {
        self.shared.view()
    }

    /// Stops cleanly: hosted groups go offline in reverse dependency order and are released, so
    /// they move to other nodes at once.
    pub fn stop(mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.finish();
    }

    /// Abandons the node as a crash would: heartbeats and renewals stop, servers close, nothing
    /// is released; the group leases run out and other nodes take the groups over.
    pub fn kill(mut self) {
        self.shared.dead.store(true, Ordering::SeqCst);
        self.finish();
    }

    fn finish(&mut self) {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        // Group workers end once they see the flag.
        loop {
            if self.shared.hosted().is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if let (Some((stopper, task)), Some(rt)) = (self.local_server.take(), &self.rt) {
            stopper.stop();
            let _ = rt.block_on(async { tokio::time::timeout(Duration::from_secs(2), task).await });
        }
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.rt.is_some() {
            self.shared.stopping.store(true, Ordering::SeqCst);
            self.finish();
        }
    }
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(name)
        .spawn(f)
        .expect("spawning a node thread")
}

/// `ip` or `ip:port`, with the default port.
pub fn with_port(address: &str) -> SocketAddr {
    address.parse().unwrap_or_else(|_| {
        SocketAddr::new(
            address.parse().unwrap_or([127, 0, 0, 1].into()),
            mqnet::DEFAULT_PORT,
        )
    })
}

impl Shared {
    fn hosted(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Hosted>>> {
        self.hosted.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    fn heartbeat(&self) -> Duration {
        self.config.timing.heartbeat()
    }

    fn over(&self) -> bool {
        self.dead.load(Ordering::SeqCst) || self.stopping.load(Ordering::SeqCst)
    }
}
