//! One thread per queue manager that fires deadlines by the manager's clock.
//!
//! Receive timeouts (blocking and async alike) and time-to-be-received expiry are scheduled here.
//! With a wall clock the thread sleeps until the earliest deadline; with a manual clock it sleeps
//! until the test advances time. Actions hold only weak references, so the thread never keeps a
//! queue manager alive; it exits when the manager is dropped.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use crate::clock::{Clock, ClockListener, Timestamp};
use crate::queue::store::{Deadline, Store, WaiterId};

/// Something to do at a deadline.
type Action = Box<dyn FnOnce() + Send>;

/// Handle to the timer thread. The owner calls [`Timer::shutdown`] when it goes away.
#[derive(Clone)]
pub(crate) struct Timer {
    shared: Arc<Shared>,
}

struct Shared {
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    cv: Condvar,
}

#[derive(Default)]
struct State {
    /// Deadlines, earliest first; the second field keys `actions`.
    heap: BinaryHeap<Reverse<(Timestamp, u64)>>,
    actions: HashMap<u64, Action>,
    next: u64,
    shutdown: bool,
}

impl ClockListener for Shared {
    fn time_moved(&self) {
        // Taking the lock orders this notification after any wait that began before the move.
        let _guard = lock(&self.state);
        self.cv.notify_all();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The longest a wall-clock timer sleeps before looking again (guards against clock jumps).
const MAX_SLEEP: Duration = Duration::from_secs(1);

impl Timer {
    /// Starts the timer thread for `clock`.
    pub(crate) fn start(clock: Arc<dyn Clock>) -> Timer {
        let shared = Arc::new(Shared {
            clock: clock.clone(),
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
        });
        let weak: Weak<dyn ClockListener> =
            Arc::downgrade(&(shared.clone() as Arc<dyn ClockListener>));
        clock.subscribe(weak);
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("mqcore-timer".into())
            .spawn(move || run(&thread_shared))
            .expect("the timer thread starts");
        Timer { shared }
    }

    /// Runs `action` on the timer thread once the clock reaches `at`. Returns a key for
    /// [`Timer::cancel`].
    pub(crate) fn schedule(&self, at: Timestamp, action: impl FnOnce() + Send + 'static) -> u64 {
        let mut state = lock(&self.shared.state);
        state.next += 1;
        let key = state.next;
        let earliest = state.heap.peek().is_none_or(|Reverse((t, _))| at < *t);
        state.heap.push(Reverse((at, key)));
        state.actions.insert(key, Box::new(action));
        if earliest {
            self.shared.cv.notify_all();
        }
        key
    }

    /// Drops a scheduled action that is no longer wanted (its wait ended first). The heap keeps
    /// the entry until it comes due or until cancelled entries outnumber live ones, when it is
    /// rebuilt, so a loop of long receives that end early does not grow it without bound.
    pub(crate) fn cancel(&self, key: u64) {
        let mut state = lock(&self.shared.state);
        state.actions.remove(&key);
        if state.heap.len() > 64 && state.heap.len() > 2 * state.actions.len() {
            let State { heap, actions, .. } = &mut *state;
            heap.retain(|Reverse((_, k))| actions.contains_key(k));
        }
    }

    /// A receive deadline `timeout` from now (`None` waits forever).
    pub(crate) fn deadline(&self, timeout: Option<Duration>) -> TimerDeadline {
        let at = match timeout {
            Some(t) => self.shared.clock.now().saturating_add(t),
            None => Timestamp::NEVER,
        };
        TimerDeadline {
            at,
            timer: self.clone(),
            key: AtomicU64::new(0),
        }
    }
}

impl Timer {
    /// Stops the thread; pending actions are dropped unrun.
    pub(crate) fn shutdown(&self) {
        let mut state = lock(&self.shared.state);
        state.shutdown = true;
        state.actions.clear();
        self.shared.cv.notify_all();
    }
}

fn run(shared: &Shared) {
    let mut state = lock(&shared.state);
    loop {
        if state.shutdown {
            return;
        }
        let now = shared.clock.now();
        let mut due = Vec::new();
        while let Some(&Reverse((at, key))) = state.heap.peek() {
            if at > now {
                break;
            }
            state.heap.pop();
            if let Some(action) = state.actions.remove(&key) {
                due.push(action);
            }
        }
        if !due.is_empty() {
            drop(state);
            for action in due {
                // A panic in one action (an engine bug) must not stop every later timeout.
                if catch_unwind(AssertUnwindSafe(action)).is_err() {
                    tracing::error!("a timer action panicked; the timer carries on");
                }
            }
            state = lock(&shared.state);
            continue;
        }
        let next = state.heap.peek().map(|Reverse((t, _))| *t);
        state = match next.and_then(|t| shared.clock.sleep_for(t)) {
            Some(d) => {
                shared
                    .cv
                    .wait_timeout(state, d.min(MAX_SLEEP))
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
            None => shared
                .cv
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner),
        };
    }
}

/// A receive deadline on the queue manager's clock, armed through its timer.
pub(crate) struct TimerDeadline {
    at: Timestamp,
    timer: Timer,
    /// The armed timer entry (0: none), cancelled when the wait ends.
    key: AtomicU64,
}

impl Drop for TimerDeadline {
    fn drop(&mut self) {
        let key = *self.key.get_mut();
        if key != 0 {
            self.timer.cancel(key);
        }
    }
}

impl Deadline for TimerDeadline {
    fn passed(&self) -> bool {
        self.timer.shared.clock.now() >= self.at
    }

    fn arm(&self, store: &Arc<Store>, waiter: WaiterId) {
        if self.at == Timestamp::NEVER {
            return;
        }
        let store = Arc::downgrade(store);
        let key = self.timer.schedule(self.at, move || {
            if let Some(store) = store.upgrade() {
                store.wake_waiter(waiter);
            }
        });
        // Only the waiting thread or task arms and drops its own deadline.
        self.key.store(key, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::mpsc;

    #[test]
    fn fires_in_deadline_order_when_the_manual_clock_moves() {
        let clock = ManualClock::new();
        let timer = Timer::start(Arc::new(clock.clone()));
        let (tx, rx) = mpsc::channel();
        let t0 = clock.now();
        for (secs, tag) in [(3, "c"), (1, "a"), (2, "b")] {
            let tx = tx.clone();
            timer.schedule(t0.saturating_add(Duration::from_secs(secs)), move || {
                tx.send(tag).unwrap();
            });
        }
        assert!(
            rx.recv_timeout(Duration::from_millis(50)).is_err(),
            "nothing is due yet"
        );
        clock.advance(Duration::from_secs(2));
        assert_eq!(rx.recv().unwrap(), "a");
        assert_eq!(rx.recv().unwrap(), "b");
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
        clock.advance(Duration::from_secs(1));
        assert_eq!(rx.recv().unwrap(), "c");
        timer.shutdown();
    }

    #[test]
    fn cancelled_entries_do_not_accumulate_or_fire() {
        let clock = ManualClock::new();
        let timer = Timer::start(Arc::new(clock.clone()));
        let (tx, rx) = mpsc::channel();
        let far = clock.now().saturating_add(Duration::from_secs(3600));
        for _ in 0..10_000 {
            let tx = tx.clone();
            let key = timer.schedule(far, move || tx.send("cancelled").unwrap());
            timer.cancel(key);
        }
        {
            let state = lock(&timer.shared.state);
            assert!(state.actions.is_empty());
            assert!(
                state.heap.len() <= 130,
                "heap kept {} dead entries",
                state.heap.len()
            );
        }
        timer.schedule(far, move || tx.send("live").unwrap());
        clock.advance(Duration::from_secs(3600));
        assert_eq!(rx.recv().unwrap(), "live");
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
        timer.shutdown();
    }

    #[test]
    fn a_panicking_action_does_not_stop_the_timer() {
        let clock = ManualClock::new();
        let timer = Timer::start(Arc::new(clock.clone()));
        let (tx, rx) = mpsc::channel();
        let t0 = clock.now();
        timer.schedule(t0.saturating_add(Duration::from_secs(1)), || {
            panic!("engine bug")
        });
        timer.schedule(t0.saturating_add(Duration::from_secs(2)), move || {
            tx.send(()).unwrap()
        });
        clock.advance(Duration::from_secs(2));
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the later action still runs");
        timer.shutdown();
    }
}
