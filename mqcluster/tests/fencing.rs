//! The fencing invariant at the one moment a random SIGSTOP almost never hits: the old owner's
//! log writer has checked the epoch and is about to write when it stops; a challenger takes the
//! disk over; then the old owner resumes and finishes its write. Its commit must not be
//! acknowledged (its lease ran out while it was stopped), and what it wrote must never be
//! served (the challenger sealed the log before it).

use std::any::Any;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use mqcluster::disk::SharedDisk;
use mqcore::storage::{storage_dir, Disk, DiskFile, FileDisk, SledCatalog};
use mqcore::{ErrorCode, Message, QueueManager, QueueProps, Tx};

/// The file system, except that while armed a write to the log parks until released: the
/// writer stopped between its epoch check and its write.
#[derive(Clone, Default)]
struct Gate {
    state: Arc<(Mutex<GateState>, Condvar)>,
}

#[derive(Default)]
struct GateState {
    armed: bool,
    parked: bool,
}

impl Gate {
    fn arm(&self) {
        self.state.0.lock().unwrap().armed = true;
    }

    fn wait_parked(&self) {
        let (m, cv) = &*self.state;
        let (s, _) = cv
            .wait_timeout_while(m.lock().unwrap(), Duration::from_secs(10), |s| !s.parked)
            .unwrap();
        assert!(s.parked, "the writer never reached the log");
    }

    fn release(&self) {
        let (m, cv) = &*self.state;
        m.lock().unwrap().armed = false;
        cv.notify_all();
    }
}

struct GateFile {
    inner: Box<dyn DiskFile>,
    gate: Gate,
    log: bool,
}

impl DiskFile for GateFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if self.log {
            let (m, cv) = &*self.gate.state;
            let mut s = m.lock().unwrap();
            if s.armed {
                s.parked = true;
                cv.notify_all();
                let _s = cv.wait_while(s, |s| s.armed).unwrap();
            }
        }
        self.inner.write_at(buf, offset)
    }

    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data()
    }
}

impl Disk for Gate {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        FileDisk.create_dir_all(dir)
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Box<dyn DiskFile>> {
        Ok(Box::new(GateFile {
            inner: FileDisk.open(path, create)?,
            gate: self.clone(),
            log: path.extension().is_some_and(|e| e == "wal"),
        }))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        FileDisk.list(dir)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        FileDisk.remove(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        FileDisk.rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        FileDisk.sync_dir(dir)
    }

    fn lock_exclusive(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>> {
        FileDisk.lock_exclusive(path)
    }
}

const ORDERS: &str = r".\private$\orders";

fn bodies(qm: &QueueManager) -> Vec<String> {
    let q = qm.open(ORDERS).unwrap();
    std::iter::from_fn(|| q.receive(Duration::ZERO, Tx::None).ok())
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect()
}

#[test]
fn a_write_that_raced_the_takeover_is_neither_acknowledged_nor_served() {
    let dir = tempfile::tempdir().unwrap();
    let disk = SharedDisk::new(dir.path().join("vs1"));
    let first = disk.mount(true).unwrap();
    let storage = storage_dir(&first.root);
    let gate = Gate::default();
    let lease = Arc::new(AtomicBool::new(true));
    let valid = lease.clone();
    let catalog = SledCatalog::open(&storage.join("catalog")).unwrap();
    let stale = QueueManager::builder()
        .name("VS1")
        .lease(Arc::new(move || valid.load(Ordering::SeqCst)))
        .open_with(Arc::new(gate.clone()), &storage, Arc::new(catalog))
        .unwrap();
    let q = stale
        .create_queue(ORDERS, QueueProps::transactional())
        .unwrap();
    for i in 0..5 {
        q.send(Message::new(format!("m{i}")), Tx::Single).unwrap();
    }

    // The old owner's writer checks the epoch, then stops before its write.
    gate.arm();
    let late = std::thread::spawn({
        let q = q.clone();
        move || q.send(Message::new("late"), Tx::Single)
    });
    gate.wait_parked();
    // While it is stopped its lease runs out (by its own clock, too), and a challenger takes
    // the disk over: fences it and seals its log.
    lease.store(false, Ordering::SeqCst);
    let second = disk.mount(false).unwrap();
    assert!(second.sealed);
    // It resumes and finishes the write it had started.
    gate.release();
    let answer = late.join().unwrap();
    let refused = answer.expect_err("a commit written after the takeover was acknowledged");
    assert_eq!(refused.code(), ErrorCode::ServiceNotAvailable, "{refused}");

    let owner = QueueManager::builder().open(&second.root).unwrap();
    assert_eq!(
        bodies(&owner),
        ["m0", "m1", "m2", "m3", "m4"],
        "served what the stale owner wrote late"
    );
    drop(stale);
}
