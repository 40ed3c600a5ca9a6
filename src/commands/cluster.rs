//! `mqemu node` (run a cluster node) and `mqemu cluster ...` (status, move, online, offline,
//! fail, nodes, init): the cluster's operations on its directory.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use std::sync::Arc;

use mqemu::cluster::coord::Coordination;
use mqemu::cluster::node::{LocalData, Node, NodeOptions};
use mqemu::cluster::{ops, status, ClusterConfig};
use mqemu::{Error, ErrorCode};

use super::admin::Conn;

/// The cluster directory when none is given.
pub const DEFAULT_CLUSTER: &str = "./mqemu-cluster";

/// `mqemu node`: run one node of a cluster.
#[derive(Args, Debug)]
pub struct NodeArgs {
    /// This node's name, as in the cluster file.
    #[arg(long)]
    name: String,
    /// Keep the node's own queue manager in memory (default: `<cluster>/local/<name>`).
    #[arg(long)]
    in_memory: bool,
}

/// `mqemu cluster ...`.
#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Write a cluster file: nodes on 127.0.1.N, one virtual server VS1 on 127.0.0.11.
    Init {
        /// How many nodes.
        #[arg(long, default_value_t = 2)]
        nodes: u8,
    },
    /// Nodes, groups, resources, states, owners and failover counters.
    Status,
    /// The nodes and whether they are up.
    Nodes,
    /// Move a group to another node (the best one, or --to).
    Move {
        /// The group.
        group: String,
        /// The node to move it to.
        #[arg(long)]
        to: Option<String>,
    },
    /// Bring a group (clearing its failed state) or a resource online.
    Online {
        /// Group or resource.
        name: String,
    },
    /// Take a group, or a resource and what depends on it, offline.
    Offline {
        /// Group or resource.
        name: String,
    },
    /// Fail a resource as if its health check had failed (fault injection).
    Fail {
        /// The resource.
        resource: String,
    },
}

fn cluster_dir(conn: &Conn) -> PathBuf {
    conn.cluster
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CLUSTER))
}

fn load(conn: &Conn, dir: &Path) -> mqemu::Result<(ClusterConfig, Arc<dyn Coordination>)> {
    let config = conn.cluster_config(dir)?;
    let coord = mqemu::cluster::coord::open(&config, dir)?;
    Ok((config, coord))
}

/// Runs a node until SIGINT or SIGTERM, then stops it cleanly (its groups move).
pub fn node(conn: &Conn, args: &NodeArgs) -> mqemu::Result<()> {
    let dir = cluster_dir(conn);
    let mut options = NodeOptions::new(&dir, &args.name);
    options.config = Some(conn.cluster_config(&dir)?);
    if args.in_memory {
        options.local = Some(LocalData::InMemory);
    }
    let node = Node::start(options)?;
    // For scripts and tests.
    println!("node {} listening on {}", node.name(), node.local_addr());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::new(ErrorCode::InsufficientResources, e.to_string()))?;
    rt.block_on(super::serve::wait_for_signal());
    tracing::info!("signal received: stopping the node; its groups move to other nodes");
    node.stop();
    Ok(())
}

impl ClusterCommand {
    /// Runs the command.
    pub fn run(self, conn: &Conn) -> mqemu::Result<()> {
        let dir = cluster_dir(conn);
        if let ClusterCommand::Init { nodes } = self {
            return init(&dir, nodes);
        }
        let (config, coord) = load(conn, &dir)?;
        match self {
            ClusterCommand::Init { .. } => unreachable!("handled above"),
            ClusterCommand::Status => {
                let s = status::read(&config, &*coord)?;
                if conn.json {
                    println!("{}", serde_json::to_string_pretty(&s).expect("plain data"));
                } else {
                    print!("{s}");
                }
            }
            ClusterCommand::Nodes => {
                let s = status::read(&config, &*coord)?;
                if conn.json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&s.nodes).expect("plain data")
                    );
                } else {
                    for n in &s.nodes {
                        println!("{:<16} {}", n.name, n.state);
                    }
                }
            }
            ClusterCommand::Move { group, to } => {
                ops::move_group(&config, &*coord, &group, to.as_deref())?
            }
            ClusterCommand::Online { name } => ops::online(&config, &*coord, &name)?,
            ClusterCommand::Offline { name } => ops::offline(&config, &*coord, &name)?,
            ClusterCommand::Fail { resource } => ops::fail(&config, &*coord, &resource)?,
        }
        Ok(())
    }
}

fn init(dir: &Path, nodes: u8) -> mqemu::Result<()> {
    let path = dir.join("cluster.toml");
    if path.exists() {
        return Err(Error::new(
            ErrorCode::QueueExists,
            format!("{} exists already", path.display()),
        ));
    }
    let text = ClusterConfig::example_file(nodes);
    ClusterConfig::parse(&text)?;
    std::fs::create_dir_all(dir).map_err(|e| {
        Error::new(
            ErrorCode::ServiceNotAvailable,
            format!("{}: {e}", dir.display()),
        )
    })?;
    std::fs::write(&path, text).map_err(|e| {
        Error::new(
            ErrorCode::ServiceNotAvailable,
            format!("{}: {e}", path.display()),
        )
    })?;
    println!("wrote {}", path.display());
    Ok(())
}
