//! The loom side of the shim, used only by `cfg(all(test, loom))` builds.

pub(crate) mod sync {
    pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};

    pub(crate) mod atomic {
        pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
    }
}

pub(crate) mod thread {
    pub(crate) use loom::thread::yield_now;
}
