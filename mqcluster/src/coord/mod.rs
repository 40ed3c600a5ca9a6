//! Coordination: membership and heartbeats, group ownership under leases, the name registry, and
//! the records the cluster keeps about each group, all behind [`Coordination`].
//!
//! The embedded default is [`dir::DirCoordination`], a directory on a file system every node
//! sees; the real-engines work puts etcd behind the same trait.
//!
//! # Leases
//! A lease is renewed at every heartbeat and lasts [`Timing::lease`](crate::model::Timing::lease)
//! after its renewal *began*, by the holder's own monotonic clock, less a margin. A challenger
//! measures expiry with *its* clock from the moment it first saw the holder's latest renewal, so
//! it never thinks a lease expired before the holder stopped trusting it (clocks may differ in
//! value, not much in rate). Only then may it acquire the group, which raises the group's token.

pub mod dir;
#[cfg(feature = "etcd")]
pub mod etcd;

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{ClusterError, Result};
use crate::model::ClusterConfig;

/// The coordination store `config` names: its `coordinator` (etcd), or the cluster directory
/// `dir`.
pub fn open(config: &ClusterConfig, dir: &Path) -> Result<Arc<dyn Coordination>> {
    let lease = config.timing.lease();
    match config.coordinator.as_deref() {
        None | Some("") | Some("dir") => Ok(Arc::new(dir::DirCoordination::open(dir, lease)?)),
        #[cfg(feature = "etcd")]
        Some(url) if url.starts_with("etcd://") => {
            Ok(Arc::new(etcd::EtcdCoordination::connect(url, lease)?))
        }
        Some(other) => Err(ClusterError::Config(format!(
            "coordinator {other:?}: this build knows the cluster directory{}",
            if cfg!(feature = "etcd") {
                " and etcd://HOST:PORT,..."
            } else {
                " only (etcd needs the `etcd` feature)"
            }
        ))),
    }
}

/// A node's hold on a group, from [`Coordination::acquire`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The group.
    pub group: String,
    /// The node holding it.
    pub node: String,
    /// Raised at every acquisition: the fencing token.
    pub token: u64,
    /// The previous holder gave the group up cleanly (its storage needs no fencing), or there
    /// was none.
    pub clean: bool,
    /// Who held it before, if anyone.
    pub previous: Option<String>,
}

/// Who holds a group, as the coordination store says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The node.
    pub node: String,
    /// Its token.
    pub token: u64,
    /// Whether it gave the group up (cleanly); then anyone may take it, or only `handoff`.
    pub released: bool,
    /// The node a clean release hands the group to (a move).
    pub handoff: Option<String>,
}

/// What the cluster remembers of a group beyond its owner: failover history, what the
/// administrator asked for, and fault-injection requests. Kept by the store, so it outlives any
/// node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    /// The administrator took the group offline (`cluster offline GROUP`).
    pub offline: bool,
    /// The group failed over more often than its threshold allows: it stays failed until
    /// `cluster online GROUP`.
    pub failed: bool,
    /// When it failed over (wall-clock milliseconds), within the failover period.
    pub failovers: Vec<u64>,
    /// How many failovers in all, for `cluster status`.
    pub failover_count: u64,
    /// Nodes the group failed on since it was last online somewhere, which placement avoids.
    pub failed_on: Vec<String>,
    /// A move the administrator asked for: to this node, or `Some("")` to the best other one.
    pub move_to: Option<String>,
    /// Resources the administrator took offline: they stay offline wherever the group goes,
    /// until brought online.
    pub held_offline: Vec<String>,
    /// Resource requests not yet carried out by the owner.
    pub requests: Vec<ResourceRequest>,
}

/// An administrator's (or a test's) request about one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceRequest {
    /// The resource.
    pub resource: String,
    /// What to do.
    pub action: ResourceAction,
}

/// What [`ResourceRequest`] asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResourceAction {
    /// Fail it now, as if its check had failed (fault injection): the restart policy applies.
    Fail,
    /// Take it (and what depends on it) offline, and keep it so.
    Offline,
    /// Bring it back online.
    Online,
}

/// How the cluster's nodes agree on who is up, who owns what and where names point.
pub trait Coordination: Send + Sync {
    /// Records a heartbeat of `node`.
    fn heartbeat(&self, node: &str) -> Result<()>;

    /// Records that `node` left the cluster cleanly (it shows as down at once).
    fn leave(&self, node: &str) -> Result<()>;

    /// The nodes this observer has seen beat within the lease, by name.
    fn live_nodes(&self) -> Result<Vec<String>>;

    /// Takes `group` for `node` if nobody holds it, its holder released it (to anyone, or to
    /// `node`), or the holder's lease ran out as this observer measured it.
    fn acquire(&self, group: &str, node: &str) -> Result<Option<Grant>>;

    /// Renews a grant's lease; `false` if it is no longer held (someone else took it).
    fn renew(&self, grant: &Grant) -> Result<bool>;

    /// Gives a group up cleanly, to anyone or to `handoff`.
    fn release(&self, grant: &Grant, handoff: Option<&str>) -> Result<()>;

    /// Who holds `group`. An observer that counts lease expiry itself starts counting here.
    fn holder(&self, group: &str) -> Result<Option<Holder>>;

    /// Points a network name at an address, for the holder of `token` (the group's grant).
    fn register_name(&self, name: &str, address: &str, token: u64) -> Result<()>;

    /// Removes a network name, if the holder of `token` registered it: a stale owner stepping
    /// down never removes the name its successor registered.
    fn unregister_name(&self, name: &str, token: u64) -> Result<()>;

    /// The address a network name points at.
    fn resolve(&self, name: &str) -> Result<Option<String>>;

    /// A group's record.
    fn record(&self, group: &str) -> Result<GroupRecord>;

    /// Changes a group's record atomically and returns the new one.
    fn update_record(
        &self,
        group: &str,
        change: &mut dyn FnMut(&mut GroupRecord),
    ) -> Result<GroupRecord>;

    /// Publishes what `node` runs, for `cluster status`.
    fn publish_status(&self, node: &str, status: &serde_json::Value) -> Result<()>;

    /// Every node's last published status.
    fn statuses(&self) -> Result<Vec<(String, serde_json::Value)>>;

    /// Every node's last heartbeat, for `cluster status` (wall times, for people to read).
    fn beats(&self) -> Result<Vec<dir::Beat>>;
}
