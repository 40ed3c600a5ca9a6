//! A node's own threads: the keeper (heartbeats, lease renewals, each hosted group's "valid
//! until") and the manager (placement of the groups nobody runs, by `candidates`, and the
//! node's published status).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::coord::dir::wall_ms;
use crate::coord::{Grant, GroupRecord};
use crate::error::Result;
use crate::model::{ClusterConfig, GroupDef};
use crate::policy::{may_fail_over, Window};
use crate::state::GroupState;

use super::worker::Worker;
use super::{spawn, GroupView, Hosted, NodeView, Shared};

impl Shared {
    /// The keeper: renew, beat, advance each lease's validity. The groups' leases are renewed
    /// first: a store whose renewals also renew the node (etcd's session) then beats without
    /// another round trip, so a slow store (an etcd election) delays the next renewal by one
    /// request, not two.
    pub(super) fn keep(self: Arc<Self>) {
        let trusted = self.config.timing.lease() - self.config.timing.margin();
        while !self.dead.load(Ordering::SeqCst) {
            let started = self.now_ns();
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
            if let Err(e) = self.coord.heartbeat(&self.name) {
                tracing::warn!(error = %e, "heartbeat failed");
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
    pub(super) fn manage(self: Arc<Self>) {
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

    pub(super) fn view(&self) -> NodeView {
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
    pub(super) fn count_failover(&self, def: &GroupDef, from: Option<&str>) -> Result<bool> {
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
pub(super) fn candidates(
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
