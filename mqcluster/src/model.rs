//! The cluster file: nodes, groups (virtual servers) and their resources, with the checks WSFC
//! makes on them and the order dependencies impose.
//!
//! ```toml
//! [timing]                 # WSFC's defaults; tests scale them down
//! heartbeat_ms = 1000
//! missed_heartbeats = 5
//!
//! [[node]]
//! name = "NODE1"
//! address = "127.0.1.1"    # the node's own queue manager listens here
//!
//! [[group]]
//! name = "VS1"
//! preferred_owners = ["NODE1", "NODE2"]
//!
//! [[group.resource]]
//! name = "VS1-IP"
//! type = "ip_address"
//! address = "127.0.0.11"
//! ```

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{ClusterError, Result, Win32};

/// A whole cluster: its timing, its nodes and its groups.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Where the nodes coordinate: the cluster directory (absent, the default), or an etcd
    /// cluster (`etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`, with the `etcd` feature).
    /// `mqemu --coordinator` overrides it.
    #[serde(default)]
    pub coordinator: Option<String>,
    /// Heartbeats and leases.
    #[serde(default)]
    pub timing: Timing,
    /// The nodes, each an `mqemu node` process.
    #[serde(default, rename = "node")]
    pub nodes: Vec<NodeDef>,
    /// The groups.
    #[serde(default, rename = "group")]
    pub groups: Vec<GroupDef>,
}

/// Node liveness and group leases (WSFC: a heartbeat a second, five missed mean the node is down).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timing {
    /// How often a node beats and renews its leases.
    pub heartbeat_ms: u64,
    /// Heartbeats missed before a node is down and its groups' leases have run out.
    pub missed_heartbeats: u32,
    /// How much sooner than a challenger an owner stops trusting its own lease: the pause an
    /// owner's clock may not notice. Default a quarter of the lease.
    pub lease_margin_ms: Option<u64>,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            heartbeat_ms: 1000,
            missed_heartbeats: 5,
            lease_margin_ms: None,
        }
    }
}

impl Timing {
    /// How often to beat.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    /// How long a lease lasts after its last renewal: the missed heartbeats.
    pub fn lease(&self) -> Duration {
        self.heartbeat() * self.missed_heartbeats
    }

    /// The owner's safety margin.
    pub fn margin(&self) -> Duration {
        self.lease_margin_ms
            .map_or(self.lease() / 4, Duration::from_millis)
    }
}

/// A node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeDef {
    /// Its name (a computer name).
    pub name: String,
    /// Where its own queue manager listens, `ip` or `ip:port` (default port 18010); every node
    /// has one, distinct from every virtual server's.
    pub address: String,
}

/// A group: the unit of failover.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupDef {
    /// Its name.
    pub name: String,
    /// Nodes in order of preference; the group comes online on the first one up.
    #[serde(default)]
    pub preferred_owners: Vec<String>,
    /// Failovers allowed within `failover_period_secs`; past it the group stays failed.
    /// Default: the number of nodes less one (WSFC's 0xFFFFFFFF).
    #[serde(default)]
    pub failover_threshold: Option<u32>,
    /// The failover window (WSFC: 6 hours).
    #[serde(default = "default_failover_period")]
    pub failover_period_secs: u64,
    /// Whether the group goes back to its preferred owner when that node comes back.
    #[serde(default)]
    pub failback: Failback,
    /// Hours (0-23, cluster time) between which failback may happen; none means at once.
    #[serde(default)]
    pub failback_window: Option<[u8; 2]>,
    #[serde(default, rename = "resource")]
    pub resources: Vec<ResourceDef>,
}

fn default_failover_period() -> u64 {
    6 * 3600
}

/// WSFC's AutoFailbackType.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Failback {
    /// ClusterGroupPreventFailback, the default.
    #[default]
    Prevent,
    /// ClusterGroupAllowFailback.
    Allow,
}

/// A resource of a group. (Its fields are flattened from its type and policy, which serde cannot
/// combine with refusing unknown fields: a misspelt policy key is ignored.)
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResourceDef {
    /// Its name, unique in the cluster.
    pub name: String,
    /// What it is.
    #[serde(flatten)]
    pub kind: ResourceKind,
    /// Resources of the same group that must be online before it.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Nodes it may run on (default all).
    #[serde(default)]
    pub possible_owners: Option<Vec<String>>,
    /// Restart and health-check policy.
    #[serde(flatten)]
    pub policy: ResourcePolicy,
}

/// The resource types.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResourceKind {
    /// An address the group's services listen on: any 127/8 address on one machine, or one a
    /// hook adds and removes.
    IpAddress {
        /// The address.
        address: String,
        /// Run (by `sh -c`, with `MQEMU_IP` set) to add the address on a real host.
        #[serde(default)]
        add_command: Option<String>,
        /// Run to remove it.
        #[serde(default)]
        remove_command: Option<String>,
    },
    /// The virtual server's name, registered so clients find its address.
    NetworkName {
        /// The name (a computer name, `VS1`).
        dns_name: String,
    },
    /// A directory holding the group's storage; relative to the cluster directory.
    PhysicalDisk {
        /// The directory.
        path: String,
    },
    /// The virtual server's queue manager, on the disk, named as the network name.
    MessageQueuing {
        /// Port on the IP address (default 18010).
        #[serde(default)]
        port: Option<u16>,
        /// Port of its transfer service; default the server's port.
        #[serde(default)]
        transfer_port: Option<u16>,
        /// Port of its HTTP face (JSON API, console, metrics, SRMP) on the group's address;
        /// none by default. Needs the `http` feature (the `mqemu` binary has it).
        #[serde(default)]
        http_port: Option<u16>,
        /// The virtual server's certificate chain (PEM, relative to the cluster directory, so
        /// every node finds it): with it, the native and HTTP listeners speak only TLS. Its name
        /// is the virtual server's, which clients check whichever node serves it.
        #[serde(default)]
        tls_cert: Option<String>,
        /// The certificate's private key.
        #[serde(default)]
        tls_key: Option<String>,
        /// CA certificates its transfer service verifies destinations against: with it,
        /// transfer speaks TLS (and reaches `DIRECT=HTTPS://` names).
        #[serde(default)]
        transfer_tls_ca: Option<String>,
    },
    /// The Triggers service of the group's queue manager.
    MsmqTriggers,
    /// The distributed transaction coordinator external transactions need.
    Dtc,
    /// A process the cluster starts, checks and stops.
    GenericApplication {
        /// The program.
        command: String,
        /// Its arguments.
        #[serde(default)]
        args: Vec<String>,
        /// Whether `.` (its computer name) means the virtual server rather than the node.
        #[serde(default)]
        use_network_name: bool,
    },
}

impl ResourceKind {
    /// The type's name as `cluster status` shows it.
    pub fn type_name(&self) -> &'static str {
        match self {
            ResourceKind::IpAddress { .. } => "IP Address",
            ResourceKind::NetworkName { .. } => "Network Name",
            ResourceKind::PhysicalDisk { .. } => "Physical Disk",
            ResourceKind::MessageQueuing { .. } => "MSMQ",
            ResourceKind::MsmqTriggers => "MSMQTriggers",
            ResourceKind::Dtc => "Distributed Transaction Coordinator",
            ResourceKind::GenericApplication { .. } => "Generic Application",
        }
    }
}

/// WSFC's RestartAction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartAction {
    /// Leave a failed resource failed.
    DontRestart,
    /// Restart it; past the threshold leave it failed, never failing the group over.
    RestartNoNotify,
    /// Restart it; past the threshold fail the group over (the default).
    #[default]
    RestartNotify,
}

/// A resource's restart policy and health checks, with WSFC's defaults.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ResourcePolicy {
    /// What a failure does.
    pub restart_action: RestartAction,
    /// Restarts allowed within the period (3).
    pub restart_threshold: u32,
    /// The restart window (15 minutes).
    pub restart_period_ms: u64,
    /// Wait before a restart (500 ms).
    pub restart_delay_ms: u64,
    /// Longest OnlinePending or OfflinePending (3 minutes); past it the resource is failed.
    pub pending_timeout_ms: u64,
    /// The cheap check's interval (5 s).
    pub looks_alive_ms: u64,
    /// The thorough check's interval (60 s).
    pub is_alive_ms: u64,
}

impl Default for ResourcePolicy {
    fn default() -> Self {
        ResourcePolicy {
            restart_action: RestartAction::RestartNotify,
            restart_threshold: 3,
            restart_period_ms: 900_000,
            restart_delay_ms: 500,
            pending_timeout_ms: 180_000,
            looks_alive_ms: 5_000,
            is_alive_ms: 60_000,
        }
    }
}

impl ClusterConfig {
    /// Reads and checks a cluster file.
    pub fn load(path: &Path) -> Result<ClusterConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ClusterError::Config(format!("{}: {e}", path.display())))?;
        ClusterConfig::parse(&text)
    }

    /// The cluster file `mqemu cluster init` writes: `nodes` nodes (NODE1... on 127.0.1.x) and
    /// one virtual server VS1 on 127.0.0.11 (IP address, network name, disk, MSMQ, Triggers)
    /// preferring them in order, at WSFC's timing.
    pub fn example_file(nodes: u8) -> String {
        let names: Vec<String> = (1..=nodes.max(1)).map(|i| format!("NODE{i}")).collect();
        let mut text = String::from(
            "# A cluster of mqemu nodes on this machine (see docs/cluster.md).\n\
             [timing]\nheartbeat_ms = 1000\nmissed_heartbeats = 5\n",
        );
        for (i, n) in names.iter().enumerate() {
            text += &format!(
                "\n[[node]]\nname = \"{n}\"\naddress = \"127.0.1.{}\"\n",
                i + 1
            );
        }
        let owners = names
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", ");
        text += &format!(
            r#"
[[group]]
name = "VS1"
preferred_owners = [{owners}]

[[group.resource]]
name = "VS1-IP"
type = "ip_address"
address = "127.0.0.11"

[[group.resource]]
name = "VS1-Name"
type = "network_name"
dns_name = "VS1"
depends_on = ["VS1-IP"]

[[group.resource]]
name = "VS1-Disk"
type = "physical_disk"
path = "disks/vs1"

[[group.resource]]
name = "VS1-MSMQ"
type = "message_queuing"
depends_on = ["VS1-Name", "VS1-Disk"]

[[group.resource]]
name = "VS1-Triggers"
type = "msmq_triggers"
depends_on = ["VS1-MSMQ"]
"#
        );
        text
    }

    /// Parses and checks a cluster file's text.
    pub fn parse(text: &str) -> Result<ClusterConfig> {
        let config: ClusterConfig =
            toml::from_str(text).map_err(|e| ClusterError::Config(e.to_string()))?;
        config.check()?;
        Ok(config)
    }

    /// The group named `name` (ignoring ASCII case, as WSFC does).
    pub fn group(&self, name: &str) -> Option<&GroupDef> {
        self.groups
            .iter()
            .find(|g| g.name.eq_ignore_ascii_case(name))
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> Option<&NodeDef> {
        self.nodes
            .iter()
            .find(|n| n.name.eq_ignore_ascii_case(name))
    }

    /// The group holding resource `name`, and the resource.
    pub fn resource(&self, name: &str) -> Option<(&GroupDef, &ResourceDef)> {
        self.groups.iter().find_map(|g| {
            g.resources
                .iter()
                .find(|r| r.name.eq_ignore_ascii_case(name))
                .map(|r| (g, r))
        })
    }

    /// Checks the whole model: names unique, owners known, dependencies inside their group and
    /// acyclic, the Message Queuing resource's required dependencies present.
    pub fn check(&self) -> Result<()> {
        let mut names = HashSet::new();
        for n in &self.nodes {
            if !names.insert(n.name.to_ascii_lowercase()) {
                return Err(ClusterError::refused(
                    Win32::ObjectAlreadyExists,
                    format!("node {} is declared twice", n.name),
                ));
            }
        }
        if self.timing.heartbeat_ms == 0 || self.timing.missed_heartbeats == 0 {
            return Err(ClusterError::refused(
                Win32::InvalidParameter,
                "heartbeat_ms and missed_heartbeats must be above zero",
            ));
        }
        let mut resources: HashMap<String, &str> = HashMap::new();
        for g in &self.groups {
            if !names.insert(g.name.to_ascii_lowercase()) {
                return Err(ClusterError::refused(
                    Win32::ObjectAlreadyExists,
                    format!("the name {} is used twice", g.name),
                ));
            }
            for owner in g.preferred_owners.iter().chain(
                g.resources
                    .iter()
                    .flat_map(|r| r.possible_owners.iter().flatten()),
            ) {
                if self.node(owner).is_none() {
                    return Err(ClusterError::refused(
                        Win32::NodeNotFound,
                        format!("group {}: {owner} is not a node of the cluster", g.name),
                    ));
                }
            }
            for r in &g.resources {
                if resources
                    .insert(r.name.to_ascii_lowercase(), &g.name)
                    .is_some()
                {
                    return Err(ClusterError::refused(
                        Win32::ObjectAlreadyExists,
                        format!("resource {} is declared twice", r.name),
                    ));
                }
            }
        }
        for g in &self.groups {
            g.check(&resources)?;
        }
        Ok(())
    }
}

impl GroupDef {
    /// The resource named `name` in this group.
    pub fn resource(&self, name: &str) -> Option<&ResourceDef> {
        self.resources
            .iter()
            .find(|r| r.name.eq_ignore_ascii_case(name))
    }

    fn check(&self, everywhere: &HashMap<String, &str>) -> Result<()> {
        for r in &self.resources {
            let mut seen = HashSet::new();
            for d in &r.depends_on {
                if d.eq_ignore_ascii_case(&r.name) {
                    return Err(ClusterError::refused(
                        Win32::CircularDependency,
                        format!("resource {} depends on itself", r.name),
                    ));
                }
                if !seen.insert(d.to_ascii_lowercase()) {
                    return Err(ClusterError::refused(
                        Win32::DependencyAlreadyExists,
                        format!("resource {} names dependency {d} twice", r.name),
                    ));
                }
                match everywhere.get(&d.to_ascii_lowercase()) {
                    None => {
                        return Err(ClusterError::refused(
                            Win32::ResourceNotFound,
                            format!("resource {} depends on {d}, which does not exist", r.name),
                        ))
                    }
                    Some(group) if !group.eq_ignore_ascii_case(&self.name) => {
                        return Err(ClusterError::refused(
                            Win32::InvalidParameter,
                            format!(
                                "resource {} of group {} cannot depend on {d} of group {group}: \
                                 dependencies stay inside a group",
                                r.name, self.name
                            ),
                        ))
                    }
                    Some(_) => {}
                }
            }
        }
        self.online_order()?;
        let of_kind =
            |f: fn(&ResourceKind) -> bool| self.resources.iter().filter(move |r| f(&r.kind));
        let msmq: Vec<_> = of_kind(|k| matches!(k, ResourceKind::MessageQueuing { .. })).collect();
        if msmq.len() > 1 {
            return Err(ClusterError::refused(
                Win32::InvalidParameter,
                format!(
                    "group {}: only one MSMQ resource can be in a group",
                    self.name
                ),
            ));
        }
        // MSMQ needs its Network Name and Physical Disk; Triggers need MSMQ (ha-facts 3.6).
        let needs = |r: &ResourceDef, what: &str, f: fn(&ResourceKind) -> bool| -> Result<()> {
            if self.depends_transitively(r, f) {
                return Ok(());
            }
            Err(ClusterError::refused(
                Win32::InvalidParameter,
                format!(
                    "resource {} must depend on a {what} resource of its group",
                    r.name
                ),
            ))
        };
        for r in msmq {
            if let ResourceKind::MessageQueuing {
                tls_cert, tls_key, ..
            } = &r.kind
            {
                if tls_cert.is_some() != tls_key.is_some() {
                    return Err(ClusterError::refused(
                        Win32::InvalidParameter,
                        format!("resource {}: tls_cert and tls_key go together", r.name),
                    ));
                }
            }
            needs(r, "Network Name", |k| {
                matches!(k, ResourceKind::NetworkName { .. })
            })?;
            needs(r, "Physical Disk", |k| {
                matches!(k, ResourceKind::PhysicalDisk { .. })
            })?;
        }
        for r in of_kind(|k| matches!(k, ResourceKind::MsmqTriggers)) {
            needs(r, "MSMQ", |k| {
                matches!(k, ResourceKind::MessageQueuing { .. })
            })?;
        }
        for r in of_kind(|k| matches!(k, ResourceKind::NetworkName { .. })) {
            needs(r, "IP Address", |k| {
                matches!(k, ResourceKind::IpAddress { .. })
            })?;
        }
        Ok(())
    }

    /// Whether `r` depends, directly or not, on a resource of a kind `f` accepts.
    pub fn depends_transitively(&self, r: &ResourceDef, f: fn(&ResourceKind) -> bool) -> bool {
        self.dependencies_of(r).iter().any(|d| f(&d.kind))
    }

    /// Every resource `r` depends on, directly or not.
    pub fn dependencies_of<'a>(&'a self, r: &ResourceDef) -> Vec<&'a ResourceDef> {
        let mut out: Vec<&ResourceDef> = Vec::new();
        let mut todo: Vec<&str> = r.depends_on.iter().map(String::as_str).collect();
        while let Some(name) = todo.pop() {
            if let Some(d) = self.resource(name) {
                if !out.iter().any(|o| o.name == d.name) {
                    out.push(d);
                    todo.extend(d.depends_on.iter().map(String::as_str));
                }
            }
        }
        out
    }

    /// The resources in an order where each comes after everything it depends on (declaration
    /// order among equals); offline goes in reverse. A cycle is ERROR_CIRCULAR_DEPENDENCY.
    pub fn online_order(&self) -> Result<Vec<&ResourceDef>> {
        let mut placed: Vec<&ResourceDef> = Vec::with_capacity(self.resources.len());
        while placed.len() < self.resources.len() {
            let next = self.resources.iter().find(|r| {
                !placed.iter().any(|p| p.name == r.name)
                    && r.depends_on
                        .iter()
                        .all(|d| placed.iter().any(|p| p.name.eq_ignore_ascii_case(d)))
            });
            match next {
                Some(r) => placed.push(r),
                None => {
                    let stuck: Vec<&str> = self
                        .resources
                        .iter()
                        .filter(|r| !placed.iter().any(|p| p.name == r.name))
                        .map(|r| r.name.as_str())
                        .collect();
                    return Err(ClusterError::refused(
                        Win32::CircularDependency,
                        format!(
                            "group {}: resources {} depend on each other in a cycle",
                            self.name,
                            stuck.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(placed)
    }

    /// The failover threshold in effect in a cluster of `nodes` nodes.
    pub fn failover_threshold(&self, nodes: usize) -> u32 {
        self.failover_threshold
            .unwrap_or(nodes.saturating_sub(1).max(1) as u32)
    }

    /// Whether `node` may own the group: every resource lists it as a possible owner.
    pub fn can_run_on(&self, node: &str) -> bool {
        self.resources.iter().all(|r| {
            r.possible_owners
                .as_ref()
                .is_none_or(|o| o.iter().any(|n| n.eq_ignore_ascii_case(node)))
        })
    }
}

#[cfg(test)]
mod tests;
