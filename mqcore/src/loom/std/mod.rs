//! The std side of the loom shim: the same paths as `loom::sync`, backed by std.

pub(crate) mod sync {
    pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};

    pub(crate) mod atomic {
        pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
    }
}

pub(crate) mod thread {
    pub(crate) use std::thread::yield_now;
}
