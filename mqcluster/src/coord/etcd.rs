//! Coordination on etcd: for clusters that span machines, where the cluster directory cannot.
//!
//! ```text
//! PREFIX/nodes/<node>            a node's heartbeat {node, wall_ms, pid}, under the node's lease
//! PREFIX/groups/<group>/owner    the holder {node}, under the holder's lease; its mod revision
//!                                is the fencing token
//! PREFIX/groups/<group>/last     who held it last {node, released, handoff; the token once
//!                                released}, kept
//! PREFIX/groups/<group>/record   the group's record (GroupRecord)
//! PREFIX/names/<name>            a network name {address, token}
//! PREFIX/status/<node>           what a node runs, for `cluster status`
//! ```
//!
//! Every node holds one etcd lease (its session) with a TTL of the cluster's lease, rounded up
//! to whole seconds. Its heartbeat key and the owner keys of the groups it holds are attached to
//! that lease, so when the node stops renewing, etcd removes them all after the TTL, counted
//! by etcd from the last renewal it *received*; the node trusts its hold only until the renewal
//! it *sent* plus the configured lease less the margin, which is never later. Acquiring a group
//! is a transaction that creates the owner key only if it is absent (or still carries a dead
//! session of this node from before a restart), so exactly one node wins; the winner's token is
//! the revision of that write. Releasing, renewing and unregistering a name compare the token
//! first, so a stale owner can change nothing its successor wrote.

use std::future::Future;
use std::io::ErrorKind;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, LeaseKeepAliveStream, LeaseKeeper,
    PutOptions, Txn, TxnOp,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::dir::{wall_ms, Beat};
use super::{Coordination, Grant, GroupRecord, Holder};
use crate::error::{ClusterError, Result};

/// The longest one etcd request may take before the call fails; shorter for short leases (a
/// quarter of the lease), so that a renewal can be tried again, through another member, before
/// the lease runs out.
const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// The most tries of one request whose connection a member refused. The client's balancer
/// picks among the members at random and keeps a dead one among its choices, so with one member
/// of three down a try meets it about one time in three.
const MAX_TRIES: u32 = 16;

/// The pause before a read is sent again after etcd answered that it is unavailable.
const UNAVAILABLE_PAUSE: Duration = Duration::from_millis(25);

/// A node's heartbeat key.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct NodeKey {
    node: String,
    wall_ms: u64,
    pid: u32,
}

/// A group's owner key.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Owner {
    node: String,
}

/// Who held a group last.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Last {
    node: String,
    token: u64,
    released: bool,
    handoff: Option<String>,
}

/// A network name's registration.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct NameEntry {
    address: String,
    token: u64,
}

/// This process's etcd session: its lease and the stream that renews it (none after a renewal
/// on it failed; the next renewal opens a new one).
struct Session {
    id: i64,
    stream: Option<(LeaseKeeper, LeaseKeepAliveStream)>,
}

/// The etcd coordination store.
pub struct EtcdCoordination {
    rt: tokio::runtime::Runtime,
    client: Client,
    prefix: String,
    ttl: i64,
    timeout: Duration,
    session: Mutex<Option<Session>>,
    /// Whether the session's renewals for grants (acquisitions on the manager's thread, renewals
    /// on the keeper's) since the last heartbeat succeeded, as the last one's outcome; `None` if
    /// there were none. A failed one makes the heartbeat fail without a renewal of its own: the
    /// next beat tries again, well within the node's lease.
    unseen_renewal: Mutex<Option<bool>>,
}

fn etcd_error(e: etcd_client::Error) -> ClusterError {
    ClusterError::Coordination(format!("etcd: {e}"))
}

/// Whether the request behind `e` never reached a member: its connection was refused or could not
/// be made. Such a request is always safe to send again; one that failed later (a timeout, a
/// reset, an answer from etcd) may have been applied, so it is not.
fn never_sent(e: &etcd_client::Error) -> bool {
    let etcd_client::Error::GRpcStatus(status) = e else {
        return false;
    };
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::AddrNotAvailable
                    | ErrorKind::HostUnreachable
                    | ErrorKind::NetworkUnreachable
            );
        }
        source = cause.source();
    }
    false
}

/// Whether a read that failed with `e` may get its answer from another try: the member did not
/// answer in time (one that has just restarted holds reads until it has caught up with the
/// leader), was unavailable (an election), or its connection broke (`Unknown`: a transport
/// error). A read changes nothing, so sending it again is always safe.
fn read_again(e: &etcd_client::Error) -> bool {
    never_sent(e)
        || matches!(e, etcd_client::Error::GRpcStatus(status) if matches!(
            status.code(),
            tonic::Code::Unavailable
                | tonic::Code::Cancelled
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Unknown
        ))
}

/// Whether etcd itself answered that it cannot serve now ("leader changed" during an election).
fn unavailable(e: &etcd_client::Error) -> bool {
    !never_sent(e)
        && matches!(e, etcd_client::Error::GRpcStatus(status)
            if status.code() == tonic::Code::Unavailable)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| ClusterError::Coordination(format!("etcd: a value is not ours: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("plain data")
}

impl EtcdCoordination {
    /// Connects to the etcd cluster at `url` (`etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`), for
    /// a cluster whose lease is `lease`.
    pub fn connect(url: &str, lease: Duration) -> Result<EtcdCoordination> {
        let rest = url.strip_prefix("etcd://").ok_or_else(|| {
            ClusterError::Config(format!("{url:?}: a coordinator is etcd://HOST:PORT,..."))
        })?;
        let (hosts, prefix) = match rest.split_once('/') {
            Some((h, p)) if !p.is_empty() => (h, format!("/{}/", p.trim_matches('/'))),
            Some((h, _)) => (h, "/mqemu/".to_owned()),
            None => (rest, "/mqemu/".to_owned()),
        };
        let endpoints: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| format!("http://{h}"))
            .collect();
        if endpoints.is_empty() {
            return Err(ClusterError::Config(format!("{url:?}: no etcd endpoint")));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("mqcluster-etcd")
            .enable_all()
            .build()
            .map_err(|e| ClusterError::Coordination(format!("etcd runtime: {e}")))?;
        let timeout = (lease / 4).clamp(Duration::from_millis(100), MAX_REQUEST_TIMEOUT);
        let options = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(timeout)
            // HTTP/2 pings at the request timeout: a member that stops answering (paused, its
            // connections still open) loses its connection within two timeouts, so the balancer
            // stops choosing it; without them it kept being chosen and every try it got waited
            // out the whole timeout (`quorum_loss_stops_the_owner...`'s stopped follower).
            .with_keep_alive(timeout, timeout)
            .with_keep_alive_while_idle(true);
        let client = rt
            .block_on(Client::connect(endpoints, Some(options)))
            .map_err(etcd_error)?;
        Ok(EtcdCoordination {
            rt,
            client,
            prefix,
            ttl: lease.as_secs_f64().ceil().max(1.0) as i64,
            timeout,
            session: Mutex::new(None),
            unseen_renewal: Mutex::new(None),
        })
    }

    /// Runs one request on the client, sending it again while the member it went to refused the
    /// connection (the balancer then picks among the members again), for at most one request
    /// timeout and [`MAX_TRIES`] tries.
    fn request<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        self.try_until(op, never_sent, self.timeout)
    }

    /// [`EtcdCoordination::request`] for a read, which is also sent again when a member did not
    /// answer in time, was unavailable or its connection broke ([`read_again`]), within three
    /// request timeouts (the pings drop a silent member's connection within two): a read that
    /// met a member still catching up, or one that stopped answering, then gets its answer from
    /// another one instead of failing (seen when a quorum came back: a client's name lookup
    /// failed).
    fn read<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        self.try_until(op, read_again, self.timeout * 3)
    }

    /// Runs `op` until it succeeds, fails in a way `again` does not accept, or has had
    /// [`MAX_TRIES`] tries or `budget`.
    fn try_until<T, F, Fut>(
        &self,
        mut op: F,
        again: fn(&etcd_client::Error) -> bool,
        budget: Duration,
    ) -> Result<T>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let deadline = Instant::now() + budget;
        let mut tries = 1;
        loop {
            match self.rt.block_on(op(self.client.clone())) {
                Err(e) if again(&e) && tries < MAX_TRIES && Instant::now() < deadline => {
                    if unavailable(&e) {
                        // etcd answered at once that it cannot serve now (a leader election):
                        // a moment's pause, not a burst of tries that get the same answer.
                        std::thread::sleep(UNAVAILABLE_PAUSE.min(deadline - Instant::now()));
                    }
                    tries += 1;
                }
                result => return result.map_err(etcd_error),
            }
        }
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    fn group_key(&self, group: &str, what: &str) -> String {
        self.key(&format!("groups/{}/{what}", group.to_ascii_lowercase()))
    }

    /// A key's value, mod revision and lease; `None` if absent.
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, i64, i64)>> {
        let resp = self.read(|mut c| async move { c.get(key, None).await })?;
        Ok(resp
            .kvs()
            .first()
            .map(|kv| (kv.value().to_vec(), kv.mod_revision(), kv.lease())))
    }

    fn get_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let resp = self.read(|mut c| async move {
            c.get(prefix, Some(GetOptions::new().with_prefix())).await
        })?;
        Ok(resp
            .kvs()
            .iter()
            .map(|kv| {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                (key, kv.value().to_vec())
            })
            .collect())
    }

    /// Runs a transaction; whether its comparisons held, and its revision.
    fn txn(&self, when: Vec<Compare>, then: Vec<TxnOp>) -> Result<(bool, i64)> {
        let txn = Txn::new().when(when).and_then(then);
        let resp = self.request(|mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })?;
        let revision = resp.header().map_or(0, |h| h.revision());
        Ok((resp.succeeded(), revision))
    }

    /// This process's session lease, renewed now for a grant (the outcome is kept for the next
    /// heartbeat, which then need not renew it again). Returns its id.
    fn renew_session(&self) -> Result<i64> {
        let renewed = self.renew_lease();
        *self
            .unseen_renewal
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(renewed.is_ok());
        renewed
    }

    /// This process's session lease, renewed now (a new one only once etcd says the last one
    /// expired). Returns its id.
    fn renew_lease(&self) -> Result<i64> {
        let mut session = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = session.as_mut() {
            // Two tries: on the stream the last renewal used, then (if that one failed) on a new
            // stream, which the client sends to a member that answers.
            for last in [false, true] {
                match self.keep_alive(s) {
                    Ok(true) => return Ok(s.id),
                    // Expired: what was attached to it is gone; a new session starts below.
                    Ok(false) => break,
                    // The stream's member went away, or etcd is electing a leader. The lease
                    // itself is kept: only etcd's answer that it expired ends it, for a new
                    // lease would lose every key attached to this one, the owner keys of the
                    // groups this node runs among them. A stream that failed once is never read
                    // again: a late answer to the request that timed out would pass for a
                    // renewal etcd never received.
                    Err(e) => {
                        s.stream = None;
                        if last {
                            return Err(e);
                        }
                    }
                }
            }
        }
        let ttl = self.ttl;
        let id = self
            .request(|mut c| async move { c.lease_grant(ttl, None).await })?
            .id();
        // Granted with its full TTL; its stream opens at the first renewal.
        *session = Some(Session { id, stream: None });
        Ok(id)
    }

    /// One renewal of the session's lease, on its stream (a new stream if it has none): whether
    /// the lease is still alive.
    fn keep_alive(&self, s: &mut Session) -> Result<bool> {
        let (keeper, stream) = match &mut s.stream {
            Some(ks) => ks,
            None => {
                let id = s.id;
                let ks = self.request(|mut c| async move { c.lease_keep_alive(id).await })?;
                s.stream.insert(ks)
            }
        };
        let timeout = self.timeout;
        self.rt.block_on(async {
            keeper.keep_alive().await.map_err(etcd_error)?;
            match tokio::time::timeout(timeout, stream.message()).await {
                Ok(Ok(Some(r))) => Ok(r.ttl() > 0),
                Ok(Ok(None)) => Err(ClusterError::Coordination(
                    "etcd: the keep-alive stream ended".into(),
                )),
                Ok(Err(e)) => Err(etcd_error(e)),
                Err(_) => Err(ClusterError::Coordination(
                    "etcd: no keep-alive answer in time".into(),
                )),
            }
        })
    }

    fn session_id(&self) -> Option<i64> {
        self.session
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|s| s.id)
    }

    fn live(&self, node: &str) -> Result<bool> {
        Ok(self
            .get(&self.key(&format!("nodes/{}", node.to_ascii_lowercase())))?
            .is_some())
    }

    fn last(&self, group: &str) -> Result<(Option<Last>, i64)> {
        match self.get(&self.group_key(group, "last"))? {
            Some((v, rev, _)) => Ok((Some(decode(&v)?), rev)),
            None => Ok((None, 0)),
        }
    }
}

impl Coordination for EtcdCoordination {
    fn heartbeat(&self, node: &str) -> Result<()> {
        // The keeper renews its groups first, each renewal renewing the session: one renewal a
        // beat is enough, and during an election (when every renewal waits out its timeout) a
        // second one would only delay the next renewal of the groups.
        let unseen = self
            .unseen_renewal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let lease = match (unseen, self.session_id()) {
            (Some(true), Some(id)) => id,
            (Some(false), _) => {
                return Err(ClusterError::Coordination(
                    "etcd: the session's lease was not renewed this beat".into(),
                ))
            }
            _ => self.renew_lease()?,
        };
        let value = encode(&NodeKey {
            node: node.to_owned(),
            wall_ms: wall_ms(),
            pid: std::process::id(),
        });
        let key = self.key(&format!("nodes/{}", node.to_ascii_lowercase()));
        self.request(|mut c| {
            let (key, value) = (key.clone(), value.clone());
            async move {
                c.put(key, value, Some(PutOptions::new().with_lease(lease)))
                    .await
            }
        })?;
        Ok(())
    }

    fn leave(&self, node: &str) -> Result<()> {
        let key = self.key(&format!("nodes/{}", node.to_ascii_lowercase()));
        self.request(|mut c| {
            let key = key.clone();
            async move { c.delete(key, None).await }
        })?;
        if let Some(s) = self
            .session
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = self.request(|mut c| async move { c.lease_revoke(s.id).await });
        }
        Ok(())
    }

    fn live_nodes(&self) -> Result<Vec<String>> {
        self.get_prefix(&self.key("nodes/"))?
            .into_iter()
            .map(|(_, v)| Ok(decode::<NodeKey>(&v)?.node))
            .collect()
    }

    fn acquire(&self, group: &str, node: &str) -> Result<Option<Grant>> {
        let lease = self.renew_session()?;
        let owner_key = self.group_key(group, "owner");
        let last_key = self.group_key(group, "last");
        let owner = self.get(&owner_key)?;
        let (last, last_rev) = self.last(group)?;
        // The owner key as it must still be for the write to happen.
        let owner_then = match &owner {
            None => Compare::create_revision(owner_key.clone(), CompareOp::Equal, 0),
            Some((v, rev, _)) => {
                let o: Owner = decode(v)?;
                // Ours, from before a restart or from a hold this node abandoned (it lost its
                // lease, and a node asks only for groups it does not run): taken again, fenced.
                if !o.node.eq_ignore_ascii_case(node) {
                    return Ok(None);
                }
                Compare::mod_revision(owner_key.clone(), CompareOp::Equal, *rev)
            }
        };
        let (clean, previous) = match (&owner, &last) {
            (Some(_), _) => (false, Some(node.to_owned())),
            (None, None) => (true, None),
            (None, Some(l)) if l.released => {
                let to_us = l
                    .handoff
                    .as_deref()
                    .is_none_or(|h| h.eq_ignore_ascii_case(node) || !self.live(h).unwrap_or(false));
                if !to_us {
                    return Ok(None);
                }
                (true, Some(l.node.clone()))
            }
            // Its holder's session ran out without giving it up: its storage must be fenced.
            (None, Some(l)) => (false, Some(l.node.clone())),
        };
        let owner_value = encode(&Owner {
            node: node.to_owned(),
        });
        // `last` is written in the same transaction; its token is filled in on release (the
        // token is this transaction's revision, known only after it).
        let last_value = encode(&Last {
            node: node.to_owned(),
            token: 0,
            released: false,
            handoff: None,
        });
        let (won, revision) = self.txn(
            vec![
                owner_then,
                Compare::mod_revision(last_key.clone(), CompareOp::Equal, last_rev),
            ],
            vec![
                TxnOp::put(
                    owner_key,
                    owner_value,
                    Some(PutOptions::new().with_lease(lease)),
                ),
                TxnOp::put(last_key, last_value, None),
            ],
        )?;
        if !won {
            return Ok(None);
        }
        Ok(Some(Grant {
            group: group.to_owned(),
            node: node.to_owned(),
            token: revision as u64,
            clean,
            previous,
        }))
    }

    fn renew(&self, grant: &Grant) -> Result<bool> {
        let lease = self.renew_session()?;
        Ok(match self.get(&self.group_key(&grant.group, "owner"))? {
            Some((_, rev, owner_lease)) => rev as u64 == grant.token && owner_lease == lease,
            None => false,
        })
    }

    fn release(&self, grant: &Grant, handoff: Option<&str>) -> Result<()> {
        let owner_key = self.group_key(&grant.group, "owner");
        let value = encode(&Last {
            node: grant.node.clone(),
            token: grant.token,
            released: true,
            handoff: handoff.map(str::to_owned),
        });
        self.txn(
            vec![Compare::mod_revision(
                owner_key.clone(),
                CompareOp::Equal,
                grant.token as i64,
            )],
            vec![
                TxnOp::delete(owner_key, None),
                TxnOp::put(self.group_key(&grant.group, "last"), value, None),
            ],
        )?;
        Ok(())
    }

    fn holder(&self, group: &str) -> Result<Option<Holder>> {
        if let Some((v, rev, _)) = self.get(&self.group_key(group, "owner"))? {
            let o: Owner = decode(&v)?;
            return Ok(Some(Holder {
                node: o.node,
                token: rev as u64,
                released: false,
                handoff: None,
            }));
        }
        // Not released: `last` was written with the owner key, so its revision is the token.
        let (last, rev) = self.last(group)?;
        Ok(last.map(|l| Holder {
            token: if l.released { l.token } else { rev as u64 },
            node: l.node,
            released: l.released,
            handoff: l.handoff,
        }))
    }

    fn register_name(&self, name: &str, address: &str, token: u64) -> Result<()> {
        let key = self.key(&format!("names/{}", name.to_ascii_lowercase()));
        let value = encode(&NameEntry {
            address: address.to_owned(),
            token,
        });
        self.request(|mut c| {
            let (key, value) = (key.clone(), value.clone());
            async move { c.put(key, value, None).await }
        })?;
        Ok(())
    }

    fn unregister_name(&self, name: &str, token: u64) -> Result<()> {
        let key = self.key(&format!("names/{}", name.to_ascii_lowercase()));
        if let Some((v, rev, _)) = self.get(&key)? {
            let entry: NameEntry = decode(&v)?;
            if entry.token == token {
                self.txn(
                    vec![Compare::mod_revision(key.clone(), CompareOp::Equal, rev)],
                    vec![TxnOp::delete(key, None)],
                )?;
            }
        }
        Ok(())
    }

    fn resolve(&self, name: &str) -> Result<Option<String>> {
        let key = self.key(&format!("names/{}", name.to_ascii_lowercase()));
        match self.get(&key)? {
            Some((v, _, _)) => Ok(Some(decode::<NameEntry>(&v)?.address)),
            None => Ok(None),
        }
    }

    fn record(&self, group: &str) -> Result<GroupRecord> {
        match self.get(&self.group_key(group, "record"))? {
            Some((v, _, _)) => decode(&v),
            None => Ok(GroupRecord::default()),
        }
    }

    fn update_record(
        &self,
        group: &str,
        change: &mut dyn FnMut(&mut GroupRecord),
    ) -> Result<GroupRecord> {
        let key = self.group_key(group, "record");
        loop {
            let (mut record, rev) = match self.get(&key)? {
                Some((v, rev, _)) => (decode::<GroupRecord>(&v)?, rev),
                None => (GroupRecord::default(), 0),
            };
            change(&mut record);
            let (done, _) = self.txn(
                vec![Compare::mod_revision(key.clone(), CompareOp::Equal, rev)],
                vec![TxnOp::put(key.clone(), encode(&record), None)],
            )?;
            if done {
                return Ok(record);
            }
        }
    }

    fn publish_status(&self, node: &str, status: &serde_json::Value) -> Result<()> {
        let key = self.key(&format!("status/{}", node.to_ascii_lowercase()));
        let value = encode(status);
        let options = self.session_id().map(|l| PutOptions::new().with_lease(l));
        self.request(|mut c| {
            let (key, value, options) = (key.clone(), value.clone(), options.clone());
            async move { c.put(key, value, options).await }
        })?;
        Ok(())
    }

    fn beats(&self) -> Result<Vec<Beat>> {
        self.get_prefix(&self.key("nodes/"))?
            .into_iter()
            .map(|(_, v)| {
                let n: NodeKey = decode(&v)?;
                Ok(Beat {
                    node: n.node,
                    beat: 0,
                    wall_ms: n.wall_ms,
                    pid: n.pid,
                })
            })
            .collect()
    }

    fn statuses(&self) -> Result<Vec<(String, serde_json::Value)>> {
        self.get_prefix(&self.key("status/"))?
            .into_iter()
            .map(|(k, v)| {
                let node = k.rsplit('/').next().unwrap_or_default().to_owned();
                Ok((node, decode(&v)?))
            })
            .collect()
    }
}
