//! The life of one hosted group: its resources online in dependency order, their checks,
//! restart and failover policy, the administrator's requests, failback, and offline in reverse.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use mqcore::tx::LocalCoordinator;

use crate::coord::dir::wall_ms;
use crate::coord::{GroupRecord, ResourceAction};
use crate::model::{ResourceDef, ResourceKind};
use crate::policy::{on_resource_failure, should_fail_back, OnFailure, Window};
use crate::resource::{self, GroupCtx, Running};
use crate::state::{GroupState, ResourceState};

use super::manager::candidates;
use super::{Hosted, ResourceView, Shared};

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
pub(super) struct Worker {
    shared: Arc<Shared>,
    hosted: Arc<Hosted>,
    ctx: GroupCtx,
    slots: Vec<Slot>,
    started: Instant,
}

impl Worker {
    pub(super) fn new(shared: Arc<Shared>, hosted: Arc<Hosted>) -> Worker {
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
            status: {
                let (config, coord) = (shared.config.clone(), shared.coord.clone());
                Arc::new(move || crate::status::read(&config, &*coord))
            },
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

    pub(super) fn run(mut self) {
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
