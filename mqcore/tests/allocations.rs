//! How many heap allocations an express send and receive make, counted by a global allocator
//! of this test binary: the in-process hot path allocates the message's box and nothing else
//! per message (docs/performance.md, "The in-process hot path").

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use bytes::Bytes;
use mqcore::{Message, QueueManager, QueueProps, Tx};

/// Counts the allocations of the thread that asks (`COUNTING` on), passing everything to the
/// system allocator.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call goes to `System` unchanged; the counters are thread-local cells, which
// neither allocate nor call back into the allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn count() {
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }
    });
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations `f` makes on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    COUNT.with(|c| c.set(0));
    COUNTING.with(|on| on.set(true));
    f();
    COUNTING.with(|on| on.set(false));
    COUNT.with(|c| c.get())
}

/// At most this many allocations per express send and receive: the message's box, and the
/// queue's vectors growing now and then (docs/performance.md).
const PER_MESSAGE: f64 = 1.01;

#[test]
fn an_express_send_and_receive_allocates_only_the_message() {
    let qm = QueueManager::new();
    let q = qm
        .create_queue(r".\private$\alloc", QueueProps::default())
        .unwrap();
    let payload = Bytes::from(vec![0x5a; 64]);
    // Warm up: the queue's vectors reach their working size.
    for _ in 0..1000 {
        q.send(Message::new(payload.clone()), Tx::None).unwrap();
    }
    for _ in 0..1000 {
        q.receive(Duration::ZERO, Tx::None).unwrap();
    }
    const N: u64 = 10_000;
    // Sends and receives interleaved, and in runs (a backlog, then drained).
    let n = allocations(|| {
        for _ in 0..N / 2 {
            q.send(Message::new(payload.clone()), Tx::None).unwrap();
            drop(q.receive(Duration::ZERO, Tx::None).unwrap());
        }
        for _ in 0..N / 2 {
            q.send(Message::new(payload.clone()), Tx::None).unwrap();
        }
        for _ in 0..N / 2 {
            drop(q.receive(Duration::ZERO, Tx::None).unwrap());
        }
    });
    let per_message = n as f64 / N as f64;
    assert!(
        per_message <= PER_MESSAGE,
        "{per_message:.2} allocations per express send and receive ({n} for {N}), more than {PER_MESSAGE}"
    );
}
