//! An in-process failover cluster for tests: several nodes in one process that start in
//! milliseconds, with the faults clustered MSMQ users meet (a node dies, a group fails over or
//! moves, a resource fails, the DTC goes offline, a disk fills up) and the client's view of them.
//!
//! ```no_run
//! use mqemu::testing::TestCluster;
//! use mqemu::{Message, QueueProps};
//! use mqemu::net::Tx;
//!
//! let cluster = TestCluster::start(&TestCluster::example(&["NODE1", "NODE2"], "127.0.0.11"))?;
//! let owner = cluster.wait_online("VS1");
//! let vs1 = cluster.connect("VS1")?;
//! vs1.create_queue(r".\private$\orders", QueueProps::transactional())?;
//! vs1.send(r".\private$\orders", Message::new("a"), Tx::Single)?;
//! cluster.kill(&owner); // no clean shutdown: the lease runs out, another node takes over
//! cluster.wait_online("VS1");
//! assert_eq!(cluster.connect("VS1")?.open(r".\private$\orders")?.len()?, 1);
//! # Ok::<(), mqemu::Error>(())
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use mqcluster::coord::{Coordination, GroupRecord};
use mqcluster::node::{LocalData, Node, NodeOptions};
use mqcluster::status::ClusterStatus;
use mqcluster::{ops, ClusterConfig, GroupState};
use mqcore::storage::{FileDisk, FillableDisk};
use mqcore::{Error, ErrorCode, QueueManager, Result};
use mqnet::{BlockingClient, ClientOptions};

/// How long [`TestCluster::wait_online`] and friends wait before they panic.
const PATIENCE: Duration = Duration::from_secs(30);

/// Nodes of one cluster in this process, on a cluster directory of their own.
pub struct TestCluster {
    dir: PathBuf,
    /// Removed on drop when the cluster made it.
    owned: bool,
    config: ClusterConfig,
    coord: Arc<dyn Coordination>,
    nodes: Mutex<HashMap<String, Node>>,
    /// Each group's disk as every node sees it (lower-case group name), to fill it.
    disks: HashMap<String, FillableDisk>,
}

impl TestCluster {
    /// A cluster file for `nodes` on 127.0.1.x (ports chosen by the system) with one virtual
    /// server VS1 (IP address, network name, disk, MSMQ) on `address`, preferring the nodes in
    /// order; heartbeats every 50 ms, a node down after 5 missed.
    pub fn example(nodes: &[&str], address: &str) -> String {
        let mut text = String::from("[timing]\nheartbeat_ms = 50\nmissed_heartbeats = 5\n");
        for (i, n) in nodes.iter().enumerate() {
            text += &format!(
                "\n[[node]]\nname = \"{n}\"\naddress = \"127.0.1.{}:0\"\n",
                i + 1
            );
        }
        let owners: Vec<String> = nodes.iter().map(|n| format!("\"{n}\"")).collect();
        text += &format!(
            "\n[[group]]\nname = \"VS1\"\npreferred_owners = [{}]\n\
             \n[[group.resource]]\nname = \"VS1-IP\"\ntype = \"ip_address\"\naddress = \"{address}\"\n\
             \n[[group.resource]]\nname = \"VS1-Name\"\ntype = \"network_name\"\ndns_name = \"VS1\"\ndepends_on = [\"VS1-IP\"]\n\
             \n[[group.resource]]\nname = \"VS1-Disk\"\ntype = \"physical_disk\"\npath = \"disks/vs1\"\n\
             \n[[group.resource]]\nname = \"VS1-MSMQ\"\ntype = \"message_queuing\"\ndepends_on = [\"VS1-Name\", \"VS1-Disk\"]\n",
            owners.join(", ")
        );
        text
    }

    /// Starts every node of `cluster_file` on a new temporary cluster directory (removed when
    /// the cluster is dropped). Nodes keep their own queue managers in memory.
    pub fn start(cluster_file: &str) -> Result<TestCluster> {
        let dir = std::env::temp_dir().join(format!(
            "mqemu-cluster-{}-{}",
            std::process::id(),
            uuid_like()
        ));
        let mut c = TestCluster::start_in(&dir, cluster_file)?;
        c.owned = true;
        Ok(c)
    }

    /// Starts every node of `cluster_file` on the cluster directory `dir`.
    pub fn start_in(dir: &Path, cluster_file: &str) -> Result<TestCluster> {
        let config = ClusterConfig::parse(cluster_file)?;
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::new(
                ErrorCode::ServiceNotAvailable,
                format!("{}: {e}", dir.display()),
            )
        })?;
        std::fs::write(dir.join("cluster.toml"), cluster_file)
            .map_err(|e| Error::new(ErrorCode::ServiceNotAvailable, e.to_string()))?;
        let coord = mqcluster::coord::open(&config, dir)?;
        let disks = config
            .groups
            .iter()
            .map(|g| {
                let disk = FillableDisk::new(Arc::new(FileDisk));
                (g.name.to_ascii_lowercase(), disk)
            })
            .collect();
        let c = TestCluster {
            dir: dir.to_owned(),
            owned: false,
            config,
            coord,
            nodes: Mutex::new(HashMap::new()),
            disks,
        };
        let names: Vec<String> = c.config.nodes.iter().map(|n| n.name.clone()).collect();
        for n in names {
            c.restart(&n)?;
        }
        Ok(c)
    }

    /// The cluster directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cluster file.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The coordination store, as the nodes see it.
    pub fn coordination(&self) -> &dyn Coordination {
        &*self.coord
    }

    fn nodes(&self) -> MutexGuard<'_, HashMap<String, Node>> {
        self.nodes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts node `name` (again).
    pub fn restart(&self, name: &str) -> Result<()> {
        let mut options = NodeOptions::new(&self.dir, name);
        options.config = Some(self.config.clone());
        options.local = Some(LocalData::InMemory);
        options.segment_size = Some(1 << 20);
        options.disks = self.disks.clone();
        let node = Node::start(options)?;
        self.nodes().insert(name.to_ascii_uppercase(), node);
        Ok(())
    }

    /// Kills node `name`: no clean shutdown, nothing released; its groups fail over once their
    /// leases run out.
    pub fn kill(&self, name: &str) {
        if let Some(n) = self.nodes().remove(&name.to_ascii_uppercase()) {
            n.kill();
        }
    }

    /// Stops node `name` cleanly: its groups go offline and move at once.
    pub fn stop(&self, name: &str) {
        if let Some(n) = self.nodes().remove(&name.to_ascii_uppercase()) {
            n.stop();
        }
    }

    /// The node that has `group` online now.
    pub fn owner(&self, group: &str) -> Option<String> {
        self.nodes().values().find_map(|n| {
            n.view()
                .groups
                .iter()
                .any(|g| g.name.eq_ignore_ascii_case(group) && g.state == GroupState::Online)
                .then(|| n.name().to_owned())
        })
    }

    /// Waits until `group` is online somewhere and returns its owner.
    pub fn wait_online(&self, group: &str) -> String {
        self.wait(&format!("{group} online"), || self.owner(group))
    }

    /// Waits until `group` is online on `node`.
    pub fn wait_online_on(&self, group: &str, node: &str) {
        self.wait(&format!("{group} online on {node}"), || {
            self.owner(group).filter(|o| o.eq_ignore_ascii_case(node))
        });
    }

    /// Waits until `f` gives something; panics naming `what` after a while, with what each
    /// node runs and each group's record, so that a failure says where the cluster stood.
    pub fn wait<T>(&self, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(v) = f() {
                return v;
            }
            if Instant::now() >= deadline {
                panic!("timed out waiting for {what}\n{}", self.describe());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// What each node runs and each group's record, for a failure to say where the cluster
    /// stood.
    pub fn describe(&self) -> String {
        let views: Vec<_> = self.nodes().values().map(|n| n.view()).collect();
        let records: Vec<_> = self
            .config
            .groups
            .iter()
            .map(|g| (g.name.clone(), self.coord.record(&g.name).ok()))
            .collect();
        format!("nodes: {views:#?}\nrecords: {records:#?}")
    }

    /// A client of the virtual server or node `name`, found through the cluster's registry.
    pub fn connect(&self, name: &str) -> Result<BlockingClient> {
        mqcluster::client::connect_by_name(&self.dir, name, &Default::default())
    }

    /// [`TestCluster::connect`] with options (a token, TLS: the certificate is checked against
    /// `name`).
    pub fn connect_with(&self, name: &str, options: &ClientOptions) -> Result<BlockingClient> {
        mqcluster::client::connect_by_name(&self.dir, name, options)
    }

    /// Node `name`'s own queue manager.
    pub fn local(&self, name: &str) -> Option<QueueManager> {
        self.nodes()
            .get(&name.to_ascii_uppercase())
            .map(|n| n.local_qm().clone())
    }

    /// `cluster status`.
    pub fn status(&self) -> Result<ClusterStatus> {
        Ok(mqcluster::status::read(&self.config, &*self.coord)?)
    }

    /// A group's record: failovers, administrator requests.
    pub fn record(&self, group: &str) -> Result<GroupRecord> {
        Ok(self.coord.record(group)?)
    }

    /// `cluster move GROUP [--to NODE]`.
    pub fn move_group(&self, group: &str, to: Option<&str>) -> Result<()> {
        Ok(ops::move_group(&self.config, &*self.coord, group, to)?)
    }

    /// `cluster online NAME` (a group or a resource).
    pub fn online(&self, name: &str) -> Result<()> {
        Ok(ops::online(&self.config, &*self.coord, name)?)
    }

    /// `cluster offline NAME` (a group or a resource; the DTC's, to take it offline).
    pub fn offline(&self, name: &str) -> Result<()> {
        Ok(ops::offline(&self.config, &*self.coord, name)?)
    }

    /// Fills `group`'s shared disk: from now on every write of its queue manager's log fails
    /// with `ENOSPC`, whichever node owns it. Clients see `MQ_ERROR_INSUFFICIENT_RESOURCES`; the
    /// Message Queuing resource fails its check and goes to its restart policy (and from there,
    /// as on a real full shared disk, the group may end up failed).
    pub fn fill_disk(&self, group: &str) {
        if let Some(d) = self.disks.get(&group.to_ascii_lowercase()) {
            d.fill();
        }
    }

    /// Frees `group`'s disk again (a failed group still needs `online`).
    pub fn free_disk(&self, group: &str) {
        if let Some(d) = self.disks.get(&group.to_ascii_lowercase()) {
            d.free();
        }
    }

    /// `cluster fail RESOURCE`.
    pub fn fail(&self, resource: &str) -> Result<()> {
        Ok(ops::fail(&self.config, &*self.coord, resource)?)
    }

    /// The state of `resource` as its group's owner reports it.
    pub fn resource_state(&self, resource: &str) -> Option<mqcluster::ResourceState> {
        self.nodes().values().find_map(|n| {
            n.view().groups.iter().find_map(|g| {
                g.resources
                    .iter()
                    .find(|r| r.name.eq_ignore_ascii_case(resource))
                    .map(|r| r.state)
            })
        })
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let nodes: Vec<Node> = self.nodes().drain().map(|(_, n)| n).collect();
        for n in nodes {
            n.stop();
        }
        if self.owned {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A name no other test cluster in this process or another uses.
fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}
