//! The node process: its own queue manager, its heartbeat and lease renewals, placement of the
//! groups nobody owns, and one worker per group it hosts.
//!
//! Threads, so that slow work never delays a lease renewal:
//! - the *keeper* beats and renews the leases of hosted groups every heartbeat, and advances
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
use mqcore::tx::LocalCoordinator;
use mqcore::QueueManager;
use mqnet::{Server, ServerConfig, Stopper};
use serde::Serialize;

use crate::coord::dir::wall_ms;
use crate::coord::{Coordination, Grant, GroupRecord, ResourceAction};
use crate::error::{io_context, ClusterError, Result};
use crate::model::{ClusterConfig, GroupDef, ResourceDef, ResourceKind};
use crate::policy::{may_fail_over, on_resource_failure, should_fail_back, OnFailure, Window};
use crate::resource::{self, GroupCtx, Running};
use crate::state::{GroupState, ResourceState};

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

    /// The keeper: beat, renew, advance each lease's validity.
    fn keep(self: Arc<Self>) {
        let trusted = self.config.timing.lease() - self.config.timing.margin();
        while !self.dead.load(Ordering::SeqCst) {
            let started = self.now_ns();
            if let Err(e) = self.coord.heartbeat(&self.name) {
                tracing::warn!(error = %e, "heartbeat failed");
            }
            let hosted: Vec<Arc<Hosted>> = self.hosted().values().cloned().collect();
            for h in hosted {
                let t0 = self.now_ns();
                match self.coord.renew(&h.grant) {
                    Ok(true) => {
                        h.valid_until
                            .fetch_max(t0 + trusted.as_nanos() as u64, Ordering::SeqCst);
                    }
                    Ok(false) => {
                        if !h.lost.swap(true, Ordering::SeqCst) {
                            tracing::error!(group = %h.def.name, "lost the group's lease to another node");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(group = %h.def.name, error = %e, "renewing the lease failed")
                    }
                }
            }
            if self.stopping.load(Ordering::SeqCst) && self.hosted().is_empty() {
                let _ = self.coord.leave(&self.name);
                return;
            }
            let spent = Duration::from_nanos(self.now_ns() - started);
            std::thread::sleep(self.heartbeat().saturating_sub(spent));
        }
    }

    /// The manager: placement and status.
    fn manage(self: Arc<Self>) {
        // Joining: a couple of heartbeats to see which nodes are up before placing anything, so
        // the first node started does not take every group from its preferred owners.
        let settle = self.heartbeat() * 2;
        while !self.over() {
            if self.base.elapsed() < settle {
                // Looking already starts this node's count of every lease and heartbeat, so a
                // node that just joined can take a dead owner's group a lease after it first
                // looked, not a lease after it settled.
                let _ = self.coord.live_nodes();
                for def in &self.config.groups {
                    let _ = self.coord.holder(&def.name);
                }
                std::thread::sleep(self.heartbeat() / 4);
                continue;
            }
            if let Err(e) = self.place() {
                tracing::warn!(error = %e, "placement failed");
            }
            let view = self.view();
            let _ = self.coord.publish_status(
                &self.name,
                &serde_json::to_value(&view).expect("plain data"),
            );
            // Four looks per heartbeat: a lease's expiry is counted from when this node first
            // saw its last renewal, so looking often takes over sooner (never earlier).
            std::thread::sleep(self.heartbeat() / 4);
        }
    }

    fn view(&self) -> NodeView {
        let mut groups: Vec<GroupView> = self
            .hosted()
            .values()
            .map(|h| {
                h.view
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone()
            })
            .collect();
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        NodeView {
            node: self.name.clone(),
            address: self.local_addr.to_string(),
            wall_ms: wall_ms(),
            groups,
        }
    }

    /// Acquires every group this node is the best live candidate for.
    fn place(self: &Arc<Self>) -> Result<()> {
        let live = self.coord.live_nodes()?;
        for def in &self.config.groups {
            if self.hosted().contains_key(&def.name.to_ascii_lowercase()) {
                continue;
            }
            let record = self.coord.record(&def.name)?;
            if record.offline || record.failed {
                continue;
            }
            let holder = self.coord.holder(&def.name)?;
            let ours_before = holder
                .as_ref()
                .is_some_and(|h| !h.released && h.node.eq_ignore_ascii_case(&self.name));
            let held_by = holder
                .as_ref()
                .filter(|h| !h.released)
                .map(|h| h.node.clone());
            let handoff = holder
                .as_ref()
                .filter(|h| h.released)
                .and_then(|h| h.handoff.clone())
                .filter(|h| live.iter().any(|l| l.eq_ignore_ascii_case(h)));
            let best = match handoff {
                Some(to) => vec![to],
                None => candidates(def, &live, &record, held_by.as_deref(), &self.config),
            };
            if !ours_before
                && !best
                    .first()
                    .is_some_and(|b| b.eq_ignore_ascii_case(&self.name))
            {
                continue;
            }
            let Some(grant) = self.coord.acquire(&def.name, &self.name)? else {
                continue;
            };
            if !grant.clean && !self.count_failover(def, grant.previous.as_deref())? {
                tracing::error!(group = %def.name, "failover threshold reached: the group stays failed");
                self.coord.release(&grant, None)?;
                continue;
            }
            self.host(def.clone(), grant);
        }
        Ok(())
    }

    /// Records a failover of `def`; false if it is past the group's threshold (then the group is
    /// marked failed).
    fn count_failover(&self, def: &GroupDef, from: Option<&str>) -> Result<bool> {
        let threshold = def.failover_threshold(self.config.nodes.len());
        let period = Duration::from_secs(def.failover_period_secs);
        let mut allowed = false;
        self.coord.update_record(&def.name, &mut |r| {
            let mut w = Window::from_times(r.failovers.iter().copied());
            allowed = may_fail_over(&mut w, threshold, period, wall_ms());
            r.failovers = w.times().collect();
            if allowed {
                r.failover_count += 1;
            } else {
                r.failed = true;
            }
            if let Some(from) = from {
                if !r.failed_on.iter().any(|n| n.eq_ignore_ascii_case(from)) {
                    r.failed_on.push(from.to_owned());
                }
            }
        })?;
        Ok(allowed)
    }

    fn host(self: &Arc<Self>, def: GroupDef, grant: Grant) {
        let trusted = self.config.timing.lease() - self.config.timing.margin();
        let hosted = Arc::new(Hosted {
            view: Mutex::new(GroupView {
                name: def.name.clone(),
                state: GroupState::Pending,
                token: grant.token,
                generation: None,
                resources: Vec::new(),
            }),
            def,
            grant,
            // The acquisition was a renewal that began before now.
            valid_until: AtomicU64::new(self.now_ns() + trusted.as_nanos() as u64 / 2),
            lost: AtomicBool::new(false),
        });
        tracing::info!(group = %hosted.def.name, token = hosted.grant.token, clean = hosted.grant.clean,
            previous = ?hosted.grant.previous, "bringing the group online here");
        self.hosted()
            .insert(hosted.def.name.to_ascii_lowercase(), hosted.clone());
        let shared = self.clone();
        spawn(format!("group-{}", hosted.def.name), move || {
            let name = hosted.def.name.to_ascii_lowercase();
            Worker::new(shared.clone(), hosted).run();
            shared.hosted().remove(&name);
        });
    }
}

/// The live nodes that may own `def`, best first: the move target if one was asked for, else
/// the preferred owners in order, then the others by name; nodes the group failed on since it
/// was last online, and the node holding it, come last.
fn candidates(
    def: &GroupDef,
    live: &[String],
    record: &GroupRecord,
    held_by: Option<&str>,
    config: &ClusterConfig,
) -> Vec<String> {
    let is_live = |n: &str| live.iter().any(|l| l.eq_ignore_ascii_case(n));
    if let Some(to) = record.move_to.as_deref().filter(|t| !t.is_empty()) {
        if is_live(to) && def.can_run_on(to) {
            return vec![to.to_owned()];
        }
    }
    let rank = |n: &str| {
        let failed = record.failed_on.iter().any(|f| f.eq_ignore_ascii_case(n))
            || held_by.is_some_and(|h| h.eq_ignore_ascii_case(n));
        let pref = def
            .preferred_owners
            .iter()
            .position(|p| p.eq_ignore_ascii_case(n))
            .unwrap_or(usize::MAX);
        (failed, pref, n.to_ascii_lowercase())
    };
    let mut nodes: Vec<String> = config
        .nodes
        .iter()
        .map(|n| n.name.clone())
        .filter(|n| is_live(n) && def.can_run_on(n))
        .collect();
    nodes.sort_by_key(|n| rank(n));
    nodes
}

/// One resource of a hosted group.
struct Slot {
    def: ResourceDef,
    state: ResourceState,
    running: Option<Running>,
    restarts: Window,
    /// Taken offline by the administrator; stays so (across failovers too) until asked online.
    held_offline: bool,
    next_check: Instant,
    /// When a failed resource is restarted (its restart delay), if the policy restarts it.
    retry_at: Option<Instant>,
}

/// How a worker's group ends.
enum Exit {
    /// Released: to anyone (`None`) or a node.
    Release(Option<String>),
    /// Not released: lost, or the node died.
    Abandon,
}

/// The life of one hosted group.
struct Worker {
    shared: Arc<Shared>,
    hosted: Arc<Hosted>,
    ctx: GroupCtx,
    slots: Vec<Slot>,
    started: Instant,
}

impl Worker {
    fn new(shared: Arc<Shared>, hosted: Arc<Hosted>) -> Worker {
        let def = hosted.def.clone();
        let has_dtc = def.resources.iter().any(|r| r.kind == ResourceKind::Dtc);
        let dtc = LocalCoordinator::new();
        dtc.set_available(!has_dtc);
        let lease = {
            let shared = shared.clone();
            let hosted = hosted.clone();
            Arc::new(move || {
                !hosted.lost.load(Ordering::SeqCst)
                    && shared.now_ns() < hosted.valid_until.load(Ordering::SeqCst)
            }) as Arc<dyn Fn() -> bool + Send + Sync>
        };
        let slots = def
            .online_order()
            .expect("checked when loaded")
            .into_iter()
            .map(|r| Slot {
                def: r.clone(),
                state: ResourceState::Offline,
                running: None,
                restarts: Window::default(),
                held_offline: false,
                next_check: Instant::now(),
                retry_at: None,
            })
            .collect();
        let ctx = GroupCtx {
            def,
            node: shared.name.clone(),
            node_address: shared.local_addr,
            cluster_dir: shared.dir.clone(),
            grant: hosted.grant.clone(),
            coord: shared.coord.clone(),
            lease,
            rt: shared.rt.clone(),
            dtc,
            ip: None,
            name: None,
            root: None,
            generation: None,
            qm: None,
            listening: None,
            triggers: Default::default(),
            segment_size: shared.segment_size,
            disk: shared
                .disks
                .get(&hosted.def.name.to_ascii_lowercase())
                .cloned(),
        };
        Worker {
            shared,
            hosted,
            ctx,
            slots,
            started: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn publish(&self) {
        let mut view = self
            .hosted
            .view
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        view.state = GroupState::of(self.slots.iter().map(|s| s.state));
        view.generation = self.ctx.generation.map(|(g, _)| g);
        let mut restarts = Vec::new();
        for s in &self.slots {
            let mut w = s.restarts.clone();
            restarts.push(w.count(
                self.now_ms(),
                Duration::from_millis(s.def.policy.restart_period_ms),
            ));
        }
        view.resources = self
            .slots
            .iter()
            .zip(restarts)
            .map(|(s, restarts)| ResourceView {
                name: s.def.name.clone(),
                kind: s.def.kind.type_name().to_owned(),
                state: s.state,
                restarts,
            })
            .collect();
    }

    fn run(mut self) {
        let exit = self.life();
        // Offline in reverse dependency order.
        self.offline_from(0);
        self.publish();
        match exit {
            Exit::Release(to) => {
                if let Err(e) = self.shared.coord.release(&self.hosted.grant, to.as_deref()) {
                    tracing::warn!(group = %self.hosted.def.name, error = %e, "releasing the group failed");
                }
                tracing::info!(group = %self.hosted.def.name, to = ?to, "group released");
            }
            Exit::Abandon => {
                tracing::warn!(group = %self.hosted.def.name, "group abandoned without release");
            }
        }
    }

    fn life(&mut self) -> Exit {
        if let Ok(record) = self.shared.coord.record(&self.hosted.def.name) {
            for s in &mut self.slots {
                s.held_offline = record
                    .held_offline
                    .iter()
                    .any(|h| h.eq_ignore_ascii_case(&s.def.name));
            }
        }
        if let Some(exit) = self.online_from(0) {
            return exit;
        }
        let tick = self.shared.heartbeat().min(Duration::from_millis(100));
        let mut announced = false;
        loop {
            if let Some(exit) = self.must_stop() {
                return exit;
            }
            let online = self.slots.iter().all(|s| s.state == ResourceState::Online);
            if online && !announced {
                announced = true;
                let _ = self
                    .shared
                    .coord
                    .update_record(&self.hosted.def.name, &mut |r| r.failed_on.clear());
                tracing::info!(group = %self.hosted.def.name, "group online");
            }
            if let Some(exit) = self.requests() {
                return exit;
            }
            if let Some(exit) = self.check() {
                return exit;
            }
            if let Some(exit) = self.retry_due() {
                return exit;
            }
            self.publish();
            std::thread::sleep(tick);
        }
    }

    /// Whether the group must end now: the node died or stops, or the lease was lost or can no
    /// longer be trusted (a node that cannot renew in time stops serving before any other node
    /// may take over: it never restarts a resource on storage it may no longer own).
    fn must_stop(&self) -> Option<Exit> {
        if self.shared.dead.load(Ordering::SeqCst) || self.hosted.lost.load(Ordering::SeqCst) {
            return Some(Exit::Abandon);
        }
        if !(self.ctx.lease)() {
            tracing::error!(group = %self.hosted.def.name, "lease not renewed in time: stepping down");
            return Some(Exit::Abandon);
        }
        if self.shared.stopping.load(Ordering::SeqCst) {
            return Some(Exit::Release(None));
        }
        None
    }

    /// Brings slots `from..` online (those not failed or held offline, whose dependencies are
    /// online). Returns how the group ends if a failure fails it over.
    fn online_from(&mut self, from: usize) -> Option<Exit> {
        for i in from..self.slots.len() {
            if self.slots[i].state == ResourceState::Online || self.slots[i].held_offline {
                continue;
            }
            let deps_online = self.slots[i].def.depends_on.iter().all(|d| {
                self.slots
                    .iter()
                    .any(|s| s.def.name.eq_ignore_ascii_case(d) && s.state == ResourceState::Online)
            });
            if !deps_online {
                continue;
            }
            if let Some(exit) = self.online_one(i) {
                return Some(exit);
            }
        }
        self.publish();
        None
    }

    /// One attempt to bring slot `i` online; a failure goes to the restart policy.
    fn online_one(&mut self, i: usize) -> Option<Exit> {
        if let Some(exit) = self.must_stop() {
            return Some(exit);
        }
        self.slots[i].state = ResourceState::OnlinePending;
        self.publish();
        let def = self.slots[i].def.clone();
        match resource::online(&def, &mut self.ctx) {
            Ok(running) => {
                let slot = &mut self.slots[i];
                slot.running = Some(running);
                slot.state = ResourceState::Online;
                slot.next_check =
                    Instant::now() + Duration::from_millis(slot.def.policy.looks_alive_ms);
                tracing::info!(resource = %slot.def.name, "online");
                None
            }
            Err(e) => {
                tracing::warn!(resource = %def.name, error = %e, "failed to come online");
                self.apply_policy(i)
            }
        }
    }

    /// Slot `i` failed: mark it so and apply its restart policy (a restart is scheduled after
    /// the delay, so the worker keeps serving requests meanwhile).
    fn apply_policy(&mut self, i: usize) -> Option<Exit> {
        self.slots[i].state = ResourceState::Failed;
        self.publish();
        match self.after_failure(i)? {
            OnFailure::Restart(delay) => {
                self.slots[i].retry_at = Some(Instant::now() + delay);
                None
            }
            OnFailure::StayFailed => None,
            OnFailure::FailGroupOver => Some(self.fail_over()),
        }
    }

    /// Restarts the failed resources whose delay has passed.
    fn retry_due(&mut self) -> Option<Exit> {
        let now = Instant::now();
        let mut any = false;
        for s in &mut self.slots {
            if s.state == ResourceState::Failed && s.retry_at.is_some_and(|t| t <= now) {
                s.retry_at = None;
                s.state = ResourceState::Offline;
                any = true;
            }
        }
        if any {
            return self.online_from(0);
        }
        None
    }

    /// The restart policy's verdict for slot `i`, which just failed.
    fn after_failure(&mut self, i: usize) -> Option<OnFailure> {
        let now = self.now_ms();
        let slot = &mut self.slots[i];
        Some(on_resource_failure(
            &slot.def.policy,
            &mut slot.restarts,
            now,
        ))
    }

    /// Takes offline, in reverse order, every online slot from `from` on.
    fn offline_from(&mut self, from: usize) {
        for i in (from..self.slots.len()).rev() {
            self.offline_one(i);
        }
    }

    fn offline_one(&mut self, i: usize) {
        if let Some(running) = self.slots[i].running.take() {
            self.slots[i].state = ResourceState::OfflinePending;
            self.publish();
            let kind = self.slots[i].def.kind.clone();
            resource::offline(&kind, running, &mut self.ctx);
            tracing::info!(resource = %self.slots[i].def.name, "offline");
        }
        if self.slots[i].state != ResourceState::Failed {
            self.slots[i].state = ResourceState::Offline;
        }
    }

    /// Takes slot `i` and everything that depends on it offline, dependents first.
    fn offline_with_dependents(&mut self, i: usize) {
        let name = self.slots[i].def.name.clone();
        let dependents: Vec<usize> = (0..self.slots.len())
            .filter(|&j| {
                j != i
                    && self
                        .ctx
                        .def
                        .dependencies_of(&self.slots[j].def)
                        .iter()
                        .any(|d| d.name.eq_ignore_ascii_case(&name))
            })
            .collect();
        for &j in dependents.iter().rev() {
            self.offline_one(j);
        }
        self.offline_one(i);
    }

    /// A resource failed while online: restart it (and its dependents), leave it failed, or fail
    /// the group over.
    fn failed(&mut self, i: usize, why: &str) -> Option<Exit> {
        tracing::warn!(group = %self.hosted.def.name, resource = %self.slots[i].def.name, why, "resource failed");
        self.offline_with_dependents(i);
        self.apply_policy(i)
    }

    /// The group failed here past its resources' thresholds: count a failover and release it
    /// to the next node, or leave it failed past the group's threshold.
    fn fail_over(&mut self) -> Exit {
        let def = self.hosted.def.clone();
        match self.shared.count_failover(&def, Some(&self.shared.name)) {
            Ok(true) => tracing::warn!(group = %def.name, "failing the group over"),
            Ok(false) => {
                tracing::error!(group = %def.name, "failover threshold reached: the group stays failed")
            }
            Err(e) => {
                tracing::warn!(group = %def.name, error = %e, "recording the failover failed")
            }
        }
        Exit::Release(None)
    }

    /// Health checks due now.
    fn check(&mut self) -> Option<Exit> {
        let now = Instant::now();
        for i in 0..self.slots.len() {
            let slot = &mut self.slots[i];
            if slot.state != ResourceState::Online || now < slot.next_check {
                continue;
            }
            slot.next_check = now + Duration::from_millis(slot.def.policy.looks_alive_ms);
            let Some(running) = slot.running.as_mut() else {
                continue;
            };
            if !resource::alive(running, &self.ctx) {
                return self.failed(i, "its health check failed");
            }
        }
        None
    }

    /// Administrator requests: group offline, move, failback, resource requests.
    fn requests(&mut self) -> Option<Exit> {
        let group = self.hosted.def.name.clone();
        let record = match self.shared.coord.record(&group) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "reading the group record failed");
                return None;
            }
        };
        if record.offline {
            return Some(Exit::Release(None));
        }
        if let Some(to) = &record.move_to {
            let _ = self
                .shared
                .coord
                .update_record(&group, &mut |r| r.move_to = None);
            let target = if to.is_empty() {
                let live = self.shared.coord.live_nodes().unwrap_or_default();
                candidates(
                    &self.hosted.def,
                    &live,
                    &GroupRecord::default(),
                    Some(&self.shared.name),
                    &self.shared.config,
                )
                .into_iter()
                .find(|n| !n.eq_ignore_ascii_case(&self.shared.name))
            } else {
                Some(to.clone())
            };
            match target {
                Some(t) if !t.eq_ignore_ascii_case(&self.shared.name) => {
                    tracing::info!(group = %group, to = %t, "moving the group");
                    return Some(Exit::Release(Some(t)));
                }
                _ => {
                    tracing::warn!(group = %group, "move asked, but no other node can take the group")
                }
            }
        }
        if let Some(exit) = self.failback() {
            return Some(exit);
        }
        if record.requests.is_empty() {
            return None;
        }
        let mine: Vec<_> = record
            .requests
            .iter()
            .filter(|q| self.slot(&q.resource).is_some())
            .cloned()
            .collect();
        let _ = self.shared.coord.update_record(&group, &mut |r| {
            r.requests.retain(|q| !mine.contains(q));
        });
        for q in mine {
            let i = self.slot(&q.resource).expect("filtered");
            match q.action {
                ResourceAction::Fail => {
                    if self.slots[i].state == ResourceState::Online {
                        if let Some(exit) = self.failed(i, "failed by request") {
                            return Some(exit);
                        }
                    }
                }
                ResourceAction::Offline => {
                    self.offline_with_dependents(i);
                    self.slots[i].held_offline = true;
                }
                ResourceAction::Online => {
                    // The resource and what it depends on.
                    let deps: Vec<String> = self
                        .ctx
                        .def
                        .dependencies_of(&self.slots[i].def)
                        .iter()
                        .map(|d| d.name.to_ascii_lowercase())
                        .collect();
                    for s in &mut self.slots {
                        let named = s.def.name.eq_ignore_ascii_case(&q.resource)
                            || deps.contains(&s.def.name.to_ascii_lowercase());
                        if named {
                            s.held_offline = false;
                            s.retry_at = None;
                            if s.state == ResourceState::Failed {
                                s.state = ResourceState::Offline;
                            }
                        }
                    }
                    if let Some(exit) = self.online_from(0) {
                        return Some(exit);
                    }
                }
            }
        }
        self.publish();
        None
    }

    fn slot(&self, name: &str) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.def.name.eq_ignore_ascii_case(name))
    }

    /// Failback: back to the first preferred owner that is up, when the policy allows it now.
    fn failback(&mut self) -> Option<Exit> {
        let def = &self.hosted.def;
        if def.failback == crate::model::Failback::Prevent || def.preferred_owners.is_empty() {
            return None;
        }
        let live = self.shared.coord.live_nodes().ok()?;
        let preferred = def
            .preferred_owners
            .iter()
            .find(|p| live.iter().any(|l| l.eq_ignore_ascii_case(p)))?;
        let hour = ((wall_ms() / 3_600_000) % 24) as u8;
        should_fail_back(def.failback, def.failback_window, &self.shared.name, Some(preferred), hour)
            .then(|| {
                tracing::info!(group = %def.name, to = %preferred, "failing back to the preferred owner");
                Exit::Release(Some(preferred.clone()))
            })
    }
}
