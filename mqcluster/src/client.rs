//! Reaching a virtual server by its name, wherever it runs now: the name registry gives its
//! address, and a failover in progress is waited out with bounded backoff.

use std::path::Path;
use std::time::{Duration, Instant};

use mqcore::{Error, ErrorCode};
use mqnet::{BlockingClient, ClientOptions};

use crate::model::{ClusterConfig, Timing};

/// How long a client keeps trying before it reports MSMQ's error: long enough for a failover
/// (a lease, then the group coming online), bounded.
pub fn retry_budget(timing: &Timing) -> Duration {
    (timing.lease() * 4).max(Duration::from_secs(2))
}

/// Connects to the virtual server (or node) named `name` in the cluster at `dir`, retrying
/// with backoff while its name is not registered or its address does not answer (a failover).
/// Past the budget: `MQ_ERROR_REMOTE_MACHINE_NOT_AVAILABLE`, or `MQ_ERROR_MACHINE_NOT_FOUND`
/// for a name the cluster never had.
pub fn connect_by_name(
    dir: &Path,
    name: &str,
    options: &ClientOptions,
) -> Result<BlockingClient, Error> {
    let config = ClusterConfig::load(&dir.join("cluster.toml"))?;
    connect_in(&config, dir, name, options)
}

/// [`connect_by_name`] with the cluster file already read (and perhaps its coordinator
/// overridden).
pub fn connect_in(
    config: &ClusterConfig,
    dir: &Path,
    name: &str,
    options: &ClientOptions,
) -> Result<BlockingClient, Error> {
    let known = config.groups.iter().flat_map(|g| &g.resources).any(|r| {
        matches!(&r.kind, crate::model::ResourceKind::NetworkName { dns_name } if dns_name.eq_ignore_ascii_case(name))
    });
    let node = config
        .node(name)
        .map(|n| crate::node::with_port(&n.address).to_string());
    if !known && node.is_none() {
        return Err(Error::new(
            ErrorCode::MachineNotFound,
            format!(
                "the cluster in {} has no virtual server or node named {name}",
                dir.display()
            ),
        ));
    }
    // The certificate a virtual server presents names the virtual server, whichever node
    // serves it and whatever address the registry gives.
    let mut options = options.clone();
    options.tls = options.tls.map(|t| t.or_server_name(name));
    let coord = crate::coord::open(config, dir)?;
    let deadline = Instant::now() + retry_budget(&config.timing);
    let mut delay = Duration::from_millis(20);
    loop {
        let address = match &node {
            Some(a) => Some(a.clone()),
            None => coord.resolve(name)?,
        };
        let last = match address {
            Some(a) => match BlockingClient::connect_with(&a, &options) {
                Ok(c) => return Ok(c),
                Err(e) => format!("{a}: {}", e.detail()),
            },
            None => "its network name is offline".to_owned(),
        };
        if Instant::now() >= deadline {
            return Err(Error::new(
                ErrorCode::RemoteMachineNotAvailable,
                format!("{name} did not answer within the retry budget: {last}"),
            ));
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(200));
    }
}
