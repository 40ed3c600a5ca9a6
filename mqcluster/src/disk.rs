//! A virtual server's shared disk: a directory holding its queue manager's storage, in
//! generations, and the takeover that fences a stale owner.
//!
//! ```text
//! <disk>/CURRENT     the generation in use, "N\n", replaced by a synced rename
//! <disk>/gen-N/      a queue manager root (storage in gen-N/msmq/storage/)
//! ```
//!
//! **The fencing invariant.** Every commit any owner acknowledged is in what the next owner
//! recovers, and nothing a stale owner writes after the takeover is ever served.
//! - An owner acknowledges a commit only after its `fdatasync`, and only while its lease is valid
//!   by its own clock less a margin ([`mqcore::Builder::lease`]). A challenger acquires the group
//!   only after the lease ran out by *its* clock, measured from later than the owner's. So every
//!   acknowledged commit was synced before the challenger starts reading.
//! - A clean handover (the owner gave the group up) opens the same generation.
//! - A takeover (the owner did not give it up: dead, stopped, cut off) first raises the owner
//!   epoch of the current generation, so the stale writer's next batch is refused; then *seals*
//!   it: copies it into generation N+1 and points `CURRENT` there before opening it. Recovery
//!   reads only the copy, so whatever the stale owner writes into generation N afterwards (the
//!   one batch it may have had in flight, or anything else) is never read, never served.
//!   This is BookKeeper's recovery fencing done with files: the copy is the seal, taken at the
//!   length recovery reads. It costs a copy of the live log (which compaction keeps near the
//!   live data), not of the history.
//!   It also means a takeover never needs the stale process's file locks, which a stopped
//!   process still holds.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use mqcore::storage::{storage_dir, take_over, FileDisk};

use crate::coord::dir::write_atomic;
use crate::error::{io_context, Result};

/// A shared disk.
#[derive(Debug, Clone)]
pub struct SharedDisk {
    path: PathBuf,
}

/// How [`SharedDisk::mount`] found the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mounted {
    /// The queue manager root to open.
    pub root: PathBuf,
    /// The generation.
    pub generation: u64,
    /// Whether a stale owner was fenced and its generation sealed.
    pub sealed: bool,
}

impl SharedDisk {
    /// The disk at `path`.
    pub fn new(path: impl Into<PathBuf>) -> SharedDisk {
        SharedDisk { path: path.into() }
    }

    /// Its directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The generation `CURRENT` names (0 for a disk never used).
    pub fn current(&self) -> Result<u64> {
        let path = self.path.join("CURRENT");
        match fs::read_to_string(&path) {
            Ok(text) => text.trim().parse().map_err(|e| {
                io_context(format!("reading {}", path.display()))(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{e}: {text:?}"),
                ))
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io_context(format!("reading {}", path.display()))(e)),
        }
    }

    fn generation(&self, n: u64) -> PathBuf {
        self.path.join(format!("gen-{n}"))
    }

    fn set_current(&self, n: u64) -> Result<()> {
        let path = self.path.join("CURRENT");
        write_atomic(&path, format!("{n}\n").as_bytes(), true)
            .map_err(io_context(format!("writing {}", path.display())))
    }

    /// Removes generations below `keep`.
    fn remove_before(&self, keep: u64) {
        let Ok(entries) = fs::read_dir(&self.path) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let gen = name
                .to_str()
                .and_then(|n| n.strip_prefix("gen-"))
                .and_then(|n| n.parse::<u64>().ok());
            if gen.is_some_and(|g| g < keep) {
                if let Err(e) = fs::remove_dir_all(entry.path()) {
                    tracing::warn!(dir = %entry.path().display(), error = %e, "could not remove an old generation");
                }
            }
        }
    }

    /// Makes the disk ready for a new owner and returns the root its queue manager opens.
    /// `clean`: the previous owner (if any) gave the disk up; otherwise it is fenced and its
    /// generation sealed (see the module's invariant).
    pub fn mount(&self, clean: bool) -> Result<Mounted> {
        fs::create_dir_all(&self.path)
            .map_err(io_context(format!("creating {}", self.path.display())))?;
        let current = self.current()?;
        if current == 0 {
            self.set_current(1)?;
            return Ok(Mounted {
                root: self.generation(1),
                generation: 1,
                sealed: false,
            });
        }
        let old = self.generation(current);
        if clean || !storage_dir(&old).join("EPOCH").exists() {
            return Ok(Mounted {
                root: old,
                generation: current,
                sealed: false,
            });
        }
        // Fence first: from here the stale writer's next batch is refused.
        let storage = storage_dir(&old);
        take_over(&FileDisk, &storage).map_err(io_context(format!(
            "raising the owner epoch of {}",
            storage.display()
        )))?;
        let next = current + 1;
        let new = self.generation(next);
        if new.exists() {
            // An earlier takeover stopped before it switched: its copy is incomplete.
            fs::remove_dir_all(&new).map_err(io_context(format!("removing {}", new.display())))?;
        }
        copy_tree(&old, &new).map_err(io_context(format!(
            "sealing {} into {}",
            old.display(),
            new.display()
        )))?;
        sync_tree(&new).map_err(io_context(format!("syncing {}", new.display())))?;
        self.set_current(next)?;
        // The sealed generation stays until the next takeover, so a stale owner still running
        // reads its raised epoch (and is refused as fenced) rather than a missing directory;
        // older ones go. Failing to remove one costs only space.
        self.remove_before(current);
        Ok(Mounted {
            root: new,
            generation: next,
            sealed: true,
        })
    }
}

/// Copies a directory tree; files by `std::fs::copy` (`copy_file_range` on Linux). The owner
/// lock file is not copied: the new generation's owner makes its own.
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() && entry.file_name() != "LOCK" {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Makes a copied tree durable: every file, then every directory.
fn sync_tree(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            sync_tree(&entry.path())?;
        } else {
            fs::File::open(entry.path())?.sync_all()?;
        }
    }
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqcore::queue::QueueProps;
    use mqcore::{Message, QueueManager, Tx};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn tx_props() -> QueueProps {
        QueueProps {
            transactional: true,
            ..QueueProps::default()
        }
    }

    /// A stale owner that never learns it was replaced: whatever it writes after the takeover is
    /// refused by the epoch, and would not be read anyway; every commit it acknowledged before
    /// is in the new owner's queue.
    #[test]
    fn a_takeover_fences_the_stale_owner_and_keeps_what_it_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let disk = SharedDisk::new(dir.path().join("vs1"));
        let first = disk.mount(true).unwrap();
        assert_eq!((first.generation, first.sealed), (1, false));
        let lease = Arc::new(AtomicBool::new(true));
        let valid = lease.clone();
        let stale = QueueManager::builder()
            .name("VS1")
            .lease(Arc::new(move || valid.load(Ordering::SeqCst)))
            .open(&first.root)
            .unwrap();
        let q = stale
            .create_queue(r".\private$\orders", tx_props())
            .unwrap();
        for i in 0..10 {
            let tx = stale.begin();
            q.send(Message::new(format!("m{i}")), Tx::In(&tx)).unwrap();
            tx.commit().unwrap();
        }
        // The owner is cut off; a challenger takes the disk over without its consent (the stale
        // process still holds its locks).
        let second = disk.mount(false).unwrap();
        assert_eq!((second.generation, second.sealed), (2, true));
        let tx = stale.begin();
        q.send(Message::new("after the takeover"), Tx::In(&tx))
            .unwrap();
        let refused = tx.commit().unwrap_err();
        assert_eq!(refused.code(), mqcore::ErrorCode::ServiceNotAvailable);
        // Its lease runs out too: nothing more is acknowledged, even were the epoch not raised.
        lease.store(false, Ordering::SeqCst);
        let owner = QueueManager::builder()
            .name("VS1")
            .open(&second.root)
            .unwrap();
        let q2 = owner.open(r".\private$\orders").unwrap();
        let bodies: Vec<String> = std::iter::from_fn(|| {
            q2.receive(std::time::Duration::ZERO, Tx::None)
                .ok()
                .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        })
        .collect();
        let expected: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
        assert_eq!(bodies, expected);
        assert_eq!(disk.current().unwrap(), 2);
        assert!(
            disk.generation(1).exists(),
            "the sealed generation stays until the next one"
        );
        drop(owner);
        let third = disk.mount(false).unwrap();
        assert_eq!(third.generation, 3);
        assert!(!disk.generation(1).exists() && disk.generation(2).exists());
        drop(stale);
    }
}
