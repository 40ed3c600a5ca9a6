//! Tells an async host when an engine call is about to block on the disk, so the host pays for
//! moving off its executor thread only when a call really waits, not on every call that might.
//!
//! The engine is synchronous: a durable commit waits for the log writer's `fdatasync`. A tokio
//! server that runs engine calls on its worker threads must not hold a worker through such a
//! wait, but wrapping every call in `tokio::task::block_in_place` costs a thread hand-off even
//! for the many calls (express sends, peeks, administration) that never touch the disk. Instead
//! the host installs a hook around its engine calls ([`with_hook`], or [`Hooked`] around a
//! future), and the engine runs each real wait through it (`run`).

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Runs a blocking wait on the host's behalf, for instance through
/// `tokio::task::block_in_place`. It must call the closure exactly once, on the current thread.
pub type Hook = fn(&mut dyn FnMut());

thread_local! {
    static HOOK: Cell<Option<Hook>> = const { Cell::new(None) };
}

/// Puts the previous hook back when a scope ends, unwinding included.
struct Restore(Option<Hook>);

impl Drop for Restore {
    fn drop(&mut self) {
        HOOK.with(|h| h.set(self.0));
    }
}

/// Runs `f` with `hook` installed on this thread: every wait for the disk inside `f` goes through
/// `hook`.
pub fn with_hook<R>(hook: Hook, f: impl FnOnce() -> R) -> R {
    let _restore = Restore(HOOK.with(|h| h.replace(Some(hook))));
    f()
}

/// Runs a wait that blocks the thread: through the installed hook if there is one (which is
/// removed for the wait's duration, so a wait inside it does not hand off twice).
pub(crate) fn run<R>(f: impl FnOnce() -> R) -> R {
    let Some(hook) = HOOK.with(|h| h.replace(None)) else {
        return f();
    };
    let _restore = Restore(Some(hook));
    let mut f = Some(f);
    let mut out = None;
    hook(&mut || {
        if let Some(f) = f.take() {
            out = Some(f());
        }
    });
    match out {
        Some(r) => r,
        // A hook that did not call its closure: wait here rather than skip the wait.
        None => (f.take().expect("the closure ran or is still here"))(),
    }
}

/// A future whose every poll runs with a hook installed (see [`with_hook`]): the engine's async
/// receives finish with a log write, which then moves off the executor thread only if it waits.
#[derive(Debug)]
pub struct Hooked<F> {
    hook: Hook,
    inner: F,
}

impl<F> Hooked<F> {
    /// Wraps `inner`.
    pub fn new(hook: Hook, inner: F) -> Hooked<F> {
        Hooked { hook, inner }
    }
}

impl<F: Future + Unpin> Future for Hooked<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let hook = self.hook;
        with_hook(hook, || Pin::new(&mut self.inner).poll(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static CALLS: AtomicUsize = AtomicUsize::new(0);

    fn counting(f: &mut dyn FnMut()) {
        CALLS.fetch_add(1, Ordering::SeqCst);
        f();
    }

    fn skipping(_: &mut dyn FnMut()) {}

    #[test]
    fn a_wait_goes_through_the_hook_only_inside_its_scope() {
        let before = CALLS.load(Ordering::SeqCst);
        assert_eq!(run(|| 1), 1);
        assert_eq!(CALLS.load(Ordering::SeqCst), before);
        let r = with_hook(counting, || {
            // A wait inside a wait does not hand off again.
            run(|| run(|| 2))
        });
        assert_eq!(r, 2);
        assert_eq!(CALLS.load(Ordering::SeqCst), before + 1);
        // The scope ended: no hook.
        assert_eq!(run(|| 3), 3);
        assert_eq!(CALLS.load(Ordering::SeqCst), before + 1);
    }

    #[test]
    fn a_hook_that_does_not_call_still_gets_the_wait_done() {
        assert_eq!(with_hook(skipping, || run(|| 7)), 7);
    }

    #[test]
    fn the_previous_hook_returns_after_a_panic() {
        let r = std::panic::catch_unwind(|| with_hook(skipping, || panic!("boom")));
        assert!(r.is_err());
        assert!(HOOK.with(|h| h.get()).is_none());
    }
}
