//! mqcluster: a failover cluster of `mqemu` nodes hosting MSMQ virtual servers, after Windows
//! Server Failover Clustering.
//!
//! A *group* (a virtual server) is a set of resources (IP address, network name, shared disk,
//! Message Queuing, Triggers, transaction coordinator, generic applications) with dependencies
//! among them. One node owns a group at a time: it brings the resources online in dependency
//! order, watches them, restarts them by their restart policy, and gives the group up (offline in
//! reverse order) when it is moved or fails past its threshold. Another node takes it over when
//! the owner dies, with the group's disk, and so with its queues, outgoing queues and triggers.
//!
//! Layers, lowest first:
//! - [`model`]: the cluster file (`cluster.toml`), its checks (WSFC's errors) and the dependency
//!   order; [`policy`]: restart, failover and failback rules, pure functions of time;
//!   [`state`]: WSFC's resource and group states.
//! - [`coord`]: membership, heartbeats, leases, group ownership and the name registry behind
//!   one trait ([`coord::Coordination`]); [`coord::dir`] is the embedded default, a directory.
//! - [`disk`]: a virtual server's storage on its shared disk, and the takeover that fences a
//!   stale owner.
//! - [`node`]: the node process: heartbeats, placement, and the groups it hosts;
//!   [`resource`]: what each resource type does online, offline and when checked.
//! - [`status`] and [`ops`]: what `mqemu cluster` shows and asks.

pub mod client;
pub mod coord;
pub mod disk;
pub mod error;
pub mod model;
pub mod node;
pub mod ops;
pub mod policy;
pub mod resource;
pub mod state;
pub mod status;

pub use error::{ClusterError, Result};
pub use model::{ClusterConfig, GroupDef, ResourceDef, ResourceKind};
pub use node::{Node, NodeOptions};
pub use state::{GroupState, ResourceState};
