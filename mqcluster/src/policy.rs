//! WSFC's restart, failover and failback rules as pure functions of time, so tests drive them
//! with any clock and the node applies them with its own.

use std::collections::VecDeque;
use std::time::Duration;

use crate::model::{Failback, ResourcePolicy, RestartAction};

/// What to do about a resource that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Restart it after the delay.
    Restart(Duration),
    /// Leave it failed; the group stays where it is.
    StayFailed,
    /// Fail the whole group over to another node.
    FailGroupOver,
}

/// Failures of one thing within a sliding window: a resource's restarts, a group's failovers.
/// Times are milliseconds on whatever clock the caller keeps (the node's monotonic clock for
/// restarts; wall time in the cluster directory for failovers, which outlive a node).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Window {
    times: VecDeque<u64>,
}

impl Window {
    /// A window holding these past events.
    pub fn from_times(times: impl IntoIterator<Item = u64>) -> Window {
        Window {
            times: times.into_iter().collect(),
        }
    }

    /// Forgets events older than `period` before `now`, and counts the rest.
    pub fn count(&mut self, now: u64, period: Duration) -> u32 {
        let period = u64::try_from(period.as_millis()).unwrap_or(u64::MAX);
        while self
            .times
            .front()
            .is_some_and(|&t| now.saturating_sub(t) >= period)
        {
            self.times.pop_front();
        }
        self.times.len() as u32
    }

    /// Records an event at `now`.
    pub fn record(&mut self, now: u64) {
        self.times.push_back(now);
    }

    /// The events kept.
    pub fn times(&self) -> impl Iterator<Item = u64> + '_ {
        self.times.iter().copied()
    }
}

/// WSFC's restart policy: a failure within the threshold restarts the resource after the delay;
/// the next one inside the period applies RestartAction.
pub fn on_resource_failure(policy: &ResourcePolicy, restarts: &mut Window, now: u64) -> OnFailure {
    if policy.restart_action == RestartAction::DontRestart {
        return OnFailure::StayFailed;
    }
    let period = Duration::from_millis(policy.restart_period_ms);
    if restarts.count(now, period) < policy.restart_threshold {
        restarts.record(now);
        return OnFailure::Restart(Duration::from_millis(policy.restart_delay_ms));
    }
    match policy.restart_action {
        RestartAction::RestartNotify => OnFailure::FailGroupOver,
        _ => OnFailure::StayFailed,
    }
}

/// Whether a group may fail over once more: past `threshold` failovers within `period` it
/// stays failed (WSFC: "stops trying to fail over the group"). Records the failover if allowed.
pub fn may_fail_over(failovers: &mut Window, threshold: u32, period: Duration, now: u64) -> bool {
    if failovers.count(now, period) >= threshold {
        return false;
    }
    failovers.record(now);
    true
}

/// Whether a group on `owner` should go back to `preferred` (its first preferred owner that is
/// up) at `hour` (0-23, cluster time).
pub fn should_fail_back(
    failback: Failback,
    window: Option<[u8; 2]>,
    owner: &str,
    preferred: Option<&str>,
    hour: u8,
) -> bool {
    let Some(preferred) = preferred else {
        return false;
    };
    if failback != Failback::Allow || preferred.eq_ignore_ascii_case(owner) {
        return false;
    }
    match window {
        None => true,
        // A window may wrap past midnight (22 to 6).
        Some([start, end]) if start <= end => (start..end).contains(&hour),
        Some([start, end]) => hour >= start || hour < end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(action: RestartAction) -> ResourcePolicy {
        ResourcePolicy {
            restart_action: action,
            restart_threshold: 2,
            restart_period_ms: 1000,
            restart_delay_ms: 50,
            ..ResourcePolicy::default()
        }
    }

    #[test]
    fn restarts_up_to_the_threshold_then_fails_the_group_over() {
        let p = policy(RestartAction::RestartNotify);
        let mut w = Window::default();
        let restart = OnFailure::Restart(Duration::from_millis(50));
        assert_eq!(on_resource_failure(&p, &mut w, 0), restart);
        assert_eq!(on_resource_failure(&p, &mut w, 100), restart);
        assert_eq!(
            on_resource_failure(&p, &mut w, 200),
            OnFailure::FailGroupOver
        );
        // Once the period has passed since the first restart, one more restart is allowed.
        assert_eq!(on_resource_failure(&p, &mut w, 1000), restart);
        assert_eq!(
            on_resource_failure(&p, &mut w, 1050),
            OnFailure::FailGroupOver
        );
    }

    #[test]
    fn other_restart_actions() {
        let mut w = Window::default();
        let p = policy(RestartAction::DontRestart);
        assert_eq!(on_resource_failure(&p, &mut w, 0), OnFailure::StayFailed);
        let p = policy(RestartAction::RestartNoNotify);
        on_resource_failure(&p, &mut w, 0);
        on_resource_failure(&p, &mut w, 0);
        assert_eq!(on_resource_failure(&p, &mut w, 0), OnFailure::StayFailed);
    }

    #[test]
    fn failovers_past_the_threshold_leave_the_group_failed() {
        let mut w = Window::default();
        let period = Duration::from_secs(10);
        assert!(may_fail_over(&mut w, 2, period, 0));
        assert!(may_fail_over(&mut w, 2, period, 1_000));
        assert!(!may_fail_over(&mut w, 2, period, 2_000));
        assert!(may_fail_over(&mut w, 2, period, 10_000));
        assert_eq!(w.times().collect::<Vec<_>>(), [1_000, 10_000]);
    }

    #[test]
    fn failback_only_when_allowed_and_inside_the_window() {
        use Failback::*;
        assert!(!should_fail_back(Prevent, None, "B", Some("A"), 3));
        assert!(should_fail_back(Allow, None, "B", Some("A"), 3));
        assert!(!should_fail_back(Allow, None, "A", Some("A"), 3));
        assert!(!should_fail_back(Allow, None, "B", None, 3));
        assert!(should_fail_back(Allow, Some([1, 5]), "B", Some("A"), 3));
        assert!(!should_fail_back(Allow, Some([1, 5]), "B", Some("A"), 5));
        assert!(should_fail_back(Allow, Some([22, 6]), "B", Some("A"), 23));
        assert!(should_fail_back(Allow, Some([22, 6]), "B", Some("A"), 2));
        assert!(!should_fail_back(Allow, Some([22, 6]), "B", Some("A"), 12));
    }
}
