//! What `mqemu cluster status` shows: nodes, groups, owners, states and failover counters,
//! gathered from the coordination store and the nodes' published views.

use serde::{Deserialize, Serialize};

use crate::coord::dir::wall_ms;
use crate::coord::Coordination;
use crate::error::Result;
use crate::model::ClusterConfig;

/// The whole cluster as `cluster status --json` prints it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// Every node of the cluster file.
    pub nodes: Vec<NodeStatus>,
    /// Every group.
    pub groups: Vec<GroupStatus>,
}

/// A node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Its name.
    pub name: String,
    /// `Up` if it beat within the lease, else `Down`.
    pub state: String,
    /// Milliseconds since its last heartbeat, if it ever beat.
    pub last_seen_ms: Option<u64>,
    /// Its process.
    pub pid: Option<u32>,
}

/// A group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupStatus {
    /// Its name.
    pub name: String,
    /// Its owner, if a node holds it.
    pub owner: Option<String>,
    /// WSFC's group state (`Online`, `Offline`, `Failed`, `PartialOnline`, `Pending`).
    pub state: String,
    /// The fencing token it is held under.
    pub token: Option<u64>,
    /// Its disk's generation.
    pub generation: Option<u64>,
    /// Failovers within the failover period, and in all.
    pub failovers_in_period: usize,
    /// Every failover since the cluster was created.
    pub failover_count: u64,
    /// The group's threshold.
    pub failover_threshold: u32,
    /// Its resources (as the owner reports them).
    pub resources: Vec<ResourceStatus>,
}

/// A resource.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResourceStatus {
    /// Its name.
    pub name: String,
    /// Its type.
    pub kind: String,
    /// Its state.
    pub state: String,
    /// Restarts within its restart period.
    pub restarts: u32,
}

/// Reads the cluster's status from its directory.
pub fn read(config: &ClusterConfig, coord: &dyn Coordination) -> Result<ClusterStatus> {
    let lease = config.timing.lease().as_millis() as u64;
    let beats = coord.beats()?;
    let now = wall_ms();
    let nodes = config
        .nodes
        .iter()
        .map(|n| {
            let beat = beats.iter().find(|b| b.node.eq_ignore_ascii_case(&n.name));
            let last = beat.map(|b| now.saturating_sub(b.wall_ms));
            NodeStatus {
                name: n.name.clone(),
                state: if last.is_some_and(|l| l < lease) {
                    "Up"
                } else {
                    "Down"
                }
                .to_owned(),
                last_seen_ms: last,
                pid: beat.map(|b| b.pid),
            }
        })
        .collect::<Vec<_>>();
    let views = coord.statuses()?;
    let mut groups = Vec::new();
    for g in &config.groups {
        let record = coord.record(&g.name)?;
        let holder = coord.holder(&g.name)?.filter(|h| !h.released);
        let owner_up = holder.as_ref().is_some_and(|h| {
            nodes
                .iter()
                .any(|n| n.name.eq_ignore_ascii_case(&h.node) && n.state == "Up")
        });
        let view = holder.as_ref().filter(|_| owner_up).and_then(|h| {
            views
                .iter()
                .find(|(_, v)| {
                    v["node"]
                        .as_str()
                        .is_some_and(|n| n.eq_ignore_ascii_case(&h.node))
                })
                .and_then(|(_, v)| {
                    v["groups"].as_array()?.iter().find(|gv| {
                        gv["name"]
                            .as_str()
                            .is_some_and(|n| n.eq_ignore_ascii_case(&g.name))
                    })
                })
                .cloned()
        });
        let state = match (&view, record.failed) {
            (_, true) => "Failed".to_owned(),
            (Some(v), _) => v["state"].as_str().unwrap_or("Pending").to_owned(),
            (None, _) if holder.is_some() && !owner_up => "Pending".to_owned(),
            (None, _) => "Offline".to_owned(),
        };
        let resources = view
            .as_ref()
            .and_then(|v| v["resources"].as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .map(|r| ResourceStatus {
                name: r["name"].as_str().unwrap_or_default().to_owned(),
                kind: r["kind"].as_str().unwrap_or_default().to_owned(),
                state: r["state"].as_str().unwrap_or_default().to_owned(),
                restarts: r["restarts"].as_u64().unwrap_or(0) as u32,
            })
            .collect::<Vec<_>>();
        let resources = if resources.is_empty() {
            g.online_order()?
                .into_iter()
                .map(|r| ResourceStatus {
                    name: r.name.clone(),
                    kind: r.kind.type_name().to_owned(),
                    state: "Offline".to_owned(),
                    restarts: 0,
                })
                .collect()
        } else {
            resources
        };
        let period = g.failover_period_secs * 1000;
        groups.push(GroupStatus {
            name: g.name.clone(),
            owner: holder.as_ref().map(|h| h.node.clone()),
            state,
            token: holder.as_ref().map(|h| h.token),
            generation: view.as_ref().and_then(|v| v["generation"].as_u64()),
            failovers_in_period: record
                .failovers
                .iter()
                .filter(|&&t| now.saturating_sub(t) < period)
                .count(),
            failover_count: record.failover_count,
            failover_threshold: g.failover_threshold(config.nodes.len()),
            resources,
        });
    }
    Ok(ClusterStatus { nodes, groups })
}

impl std::fmt::Display for ClusterStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{:<16} {:<6} {:>10}", "NODE", "STATE", "SEEN")?;
        for n in &self.nodes {
            let seen = n
                .last_seen_ms
                .map_or("never".to_owned(), |ms| format!("{ms} ms"));
            writeln!(f, "{:<16} {:<6} {:>10}", n.name, n.state, seen)?;
        }
        for g in &self.groups {
            writeln!(f)?;
            writeln!(
                f,
                "GROUP {}  {}  owner {}  token {}  failovers {}/{} in period ({} in all)",
                g.name,
                g.state,
                g.owner.as_deref().unwrap_or("-"),
                g.token.map_or("-".to_owned(), |t| t.to_string()),
                g.failovers_in_period,
                g.failover_threshold,
                g.failover_count
            )?;
            for r in &g.resources {
                writeln!(
                    f,
                    "  {:<20} {:<36} {:<15} restarts {}",
                    r.name, r.kind, r.state, r.restarts
                )?;
            }
        }
        Ok(())
    }
}
