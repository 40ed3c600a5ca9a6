//! Time, behind a trait, so that tests decide when a timeout or an expiry happens.
//!
//! Every timeout (receive, peek) and every expiry (time-to-be-received, time-to-reach-queue) reads
//! the queue manager's [`Clock`]. [`SystemClock`] is wall time; [`ManualClock`] only moves when a
//! test calls [`ManualClock::advance`], which wakes the queue manager's timer so that waiters whose
//! deadline has passed return `MQ_ERROR_IO_TIMEOUT` and expired messages move to dead letters at
//! once, with no real sleeping.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time: milliseconds since 1970-01-01 UTC (MSMQ keeps seconds; we keep more).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The latest representable time, used for "never".
    pub const NEVER: Timestamp = Timestamp(u64::MAX);

    /// Seconds since the epoch, as MSMQ's `PROPID_M_SENTTIME`/`ARRIVEDTIME` (UI4) carry them.
    pub fn as_secs(self) -> u32 {
        (self.0 / 1000).min(u64::from(u32::MAX)) as u32
    }

    /// This time plus `d`, saturating at [`Timestamp::NEVER`].
    pub fn saturating_add(self, d: Duration) -> Timestamp {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(ms))
    }

    /// How long from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

/// A source of time for one queue manager.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;

    /// How long a real thread should sleep before `deadline` may have come, or `None` when only a
    /// [`ClockListener`] notification can bring it (a manual clock).
    fn sleep_for(&self, deadline: Timestamp) -> Option<Duration>;

    /// Registers a listener told whenever time jumps (manual clocks); wall clocks ignore it.
    fn subscribe(&self, listener: Weak<dyn ClockListener>);
}

/// Something that must re-check its deadlines when a manual clock moves.
pub trait ClockListener: Send + Sync {
    /// Called after the clock has moved forward.
    fn time_moved(&self);
}

/// Wall-clock time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Timestamp(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }

    fn sleep_for(&self, deadline: Timestamp) -> Option<Duration> {
        Some(deadline.since(self.now()))
    }

    fn subscribe(&self, _listener: Weak<dyn ClockListener>) {}
}

/// A clock that stands still until a test moves it.
///
/// Cheap to clone; clones share the same time.
#[derive(Clone)]
pub struct ManualClock {
    /// Shared time and listeners.
    inner: Arc<ManualInner>,
}

struct ManualInner {
    /// Current time in milliseconds since the epoch.
    now: Mutex<Timestamp>,
    /// Queue managers to wake when time moves.
    listeners: Mutex<Vec<Weak<dyn ClockListener>>>,
}

impl ManualClock {
    /// A manual clock starting at 2020-01-01T00:00:00Z, a fixed and readable epoch for tests.
    pub fn new() -> ManualClock {
        ManualClock::starting_at(Timestamp(1_577_836_800_000))
    }

    /// A manual clock starting at `start`.
    pub fn starting_at(start: Timestamp) -> ManualClock {
        ManualClock {
            inner: Arc::new(ManualInner {
                now: Mutex::new(start),
                listeners: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The current time (the same as [`Clock::now`], without importing the trait).
    pub fn now(&self) -> Timestamp {
        *lock(&self.inner.now)
    }

    /// Moves time forward by `d` and wakes every subscribed queue manager.
    pub fn advance(&self, d: Duration) {
        {
            let mut now = lock(&self.inner.now);
            *now = now.saturating_add(d);
        }
        let listeners: Vec<_> = {
            let mut list = lock(&self.inner.listeners);
            list.retain(|l| l.strong_count() > 0);
            list.iter().filter_map(Weak::upgrade).collect()
        };
        for l in listeners {
            l.time_moved();
        }
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl std::fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManualClock")
            .field("now", &*lock(&self.inner.now))
            .finish()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        ManualClock::now(self)
    }

    fn sleep_for(&self, _deadline: Timestamp) -> Option<Duration> {
        None
    }

    fn subscribe(&self, listener: Weak<dyn ClockListener>) {
        lock(&self.inner.listeners).push(listener);
    }
}

/// Locks a std mutex, ignoring poisoning: the data guarded here stays consistent across panics.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counter(AtomicUsize);
    impl ClockListener for Counter {
        fn time_moved(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn manual_clock_moves_only_when_advanced_and_tells_listeners() {
        let clock = ManualClock::new();
        let t0 = clock.now();
        assert_eq!(clock.now(), t0);
        let counter = Arc::new(Counter(AtomicUsize::new(0)));
        let weak: Weak<dyn ClockListener> =
            Arc::downgrade(&(counter.clone() as Arc<dyn ClockListener>));
        clock.subscribe(weak);
        clock.advance(Duration::from_secs(5));
        assert_eq!(clock.now(), Timestamp(t0.0 + 5000));
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert_eq!(clock.sleep_for(Timestamp::NEVER), None);
        drop(counter);
        clock.advance(Duration::from_secs(1)); // a dropped listener is forgotten, not called
    }

    #[test]
    fn system_clock_is_wall_time() {
        let now = SystemClock.now();
        assert!(now.0 > 1_577_836_800_000);
        assert!(
            SystemClock
                .sleep_for(now.saturating_add(Duration::from_secs(1)))
                .unwrap()
                <= Duration::from_secs(1)
        );
        assert_eq!(Timestamp(1_500).as_secs(), 1);
    }
}
