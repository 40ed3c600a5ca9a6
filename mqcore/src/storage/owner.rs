//! Who owns a storage directory: an exclusive lock for processes on one machine, and an owner
//! epoch on disk that fences a stale writer on another.
//!
//! Opening takes `LOCK` exclusively (a second opener is refused at once) and raises the epoch in
//! `EPOCH`. Every write-ahead-log batch first reads `EPOCH`; a writer whose epoch is no longer the
//! one on disk writes nothing (see [`crate::storage::wal`]). A failover that cannot release the old
//! owner's lock (the node is gone, or the lock does not cross machines) uses [`take_over`], which
//! raises the epoch without the lock: from that moment the old owner can acknowledge nothing.
//!
//! `EPOCH` holds two 16-byte slots, `[epoch u64][crc32 u32][0 u32]`; a new epoch is written into
//! the slot holding the older one and synced, and readers take the highest valid slot. A torn write
//! thus leaves the previous epoch readable.

use std::any::Any;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::disk::Disk;
use super::wal::EpochCheck;

const SLOT: usize = 16;

/// Ownership of one storage directory, held until dropped.
pub struct Ownership {
    disk: Arc<dyn Disk>,
    epoch_path: PathBuf,
    epoch: u64,
    _lock: Box<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for Ownership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ownership")
            .field("epoch_path", &self.epoch_path)
            .field("epoch", &self.epoch)
            .finish()
    }
}

/// Why ownership could not be taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OwnershipError {
    /// Another process holds the directory.
    #[error("storage directory {0} is in use by another process")]
    InUse(PathBuf),
    /// The file system failed.
    #[error("storage ownership I/O error: {0}")]
    Io(#[from] io::Error),
}

fn slot(epoch: u64) -> [u8; SLOT] {
    let mut s = [0u8; SLOT];
    s[..8].copy_from_slice(&epoch.to_le_bytes());
    let crc = crc32fast::hash(&s[..8]);
    s[8..12].copy_from_slice(&crc.to_le_bytes());
    s
}

/// The epochs in the two slots (`None` for a slot that is empty or torn).
fn read_slots(disk: &dyn Disk, path: &Path) -> io::Result<[Option<u64>; 2]> {
    let file = disk.open(path, true)?;
    let mut buf = [0u8; 2 * SLOT];
    let mut got = 0;
    while got < buf.len() {
        let n = file.read_at(&mut buf[got..], got as u64)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let parse = |s: &[u8]| {
        let epoch = u64::from_le_bytes(s[..8].try_into().expect("8 bytes"));
        let crc = u32::from_le_bytes(s[8..12].try_into().expect("4 bytes"));
        (epoch != 0 && crc32fast::hash(&s[..8]) == crc).then_some(epoch)
    };
    Ok([parse(&buf[..SLOT]), parse(&buf[SLOT..])])
}

/// The owner epoch currently on disk (0 if none was ever written).
pub fn read_epoch(disk: &dyn Disk, path: &Path) -> io::Result<u64> {
    let [a, b] = read_slots(disk, path)?;
    Ok(a.unwrap_or(0).max(b.unwrap_or(0)))
}

/// Raises the epoch on disk by one and returns it.
fn bump(disk: &dyn Disk, path: &Path) -> io::Result<u64> {
    let [a, b] = read_slots(disk, path)?;
    let (a, b) = (a.unwrap_or(0), b.unwrap_or(0));
    let next = a.max(b) + 1;
    let target = if a <= b { 0 } else { SLOT as u64 };
    let file = disk.open(path, true)?;
    file.write_at(&slot(next), target)?;
    file.sync_data()?;
    Ok(next)
}

impl Ownership {
    /// Takes `dir` exclusively and raises its owner epoch.
    pub fn acquire(disk: Arc<dyn Disk>, dir: &Path) -> Result<Ownership, OwnershipError> {
        disk.create_dir_all(dir)?;
        let lock = match disk.lock_exclusive(&dir.join("LOCK")) {
            Ok(lock) => lock,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(OwnershipError::InUse(dir.to_owned()))
            }
            Err(e) => return Err(e.into()),
        };
        let epoch_path = dir.join("EPOCH");
        let epoch = bump(&*disk, &epoch_path)?;
        disk.sync_dir(dir)?;
        Ok(Ownership {
            disk,
            epoch_path,
            epoch,
            _lock: lock,
        })
    }

    /// Our epoch: every record we write carries it.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// A check for the log: reads the epoch now on disk.
    pub fn epoch_check(&self) -> EpochCheck {
        let disk = self.disk.clone();
        let path = self.epoch_path.clone();
        Box::new(move || read_epoch(&*disk, &path))
    }
}

/// Raises the epoch of `dir` without its lock: what a failover does when the previous owner
/// cannot release it. The previous owner is fenced from its next write on.
pub fn take_over(disk: &dyn Disk, dir: &Path) -> io::Result<u64> {
    bump(disk, &dir.join("EPOCH"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::sim::SimDisk;
    use crate::storage::wal::{Wal, WalError, WalOptions};

    fn sim() -> (SimDisk, Arc<dyn Disk>) {
        let disk = SimDisk::new();
        let shared: Arc<dyn Disk> = Arc::new(disk.clone());
        (disk, shared)
    }

    #[test]
    fn one_owner_at_a_time_and_the_epoch_rises_on_every_open() {
        let (_, disk) = sim();
        let dir = Path::new("/vs1/msmq/storage");
        let first = Ownership::acquire(disk.clone(), dir).unwrap();
        assert_eq!(first.epoch(), 1);
        match Ownership::acquire(disk.clone(), dir) {
            Err(OwnershipError::InUse(d)) => assert_eq!(d, dir),
            other => panic!("a second owner was let in: {other:?}"),
        }
        drop(first);
        assert_eq!(Ownership::acquire(disk.clone(), dir).unwrap().epoch(), 2);
        assert_eq!(Ownership::acquire(disk, dir).unwrap().epoch(), 3);
    }

    #[test]
    fn a_torn_epoch_write_leaves_the_previous_epoch() {
        let (sim, disk) = sim();
        let dir = Path::new("/d");
        drop(Ownership::acquire(disk.clone(), dir).unwrap()); // epoch 1 in slot 0
        drop(Ownership::acquire(disk.clone(), dir).unwrap()); // epoch 2 in slot 1
        sim.corrupt(&dir.join("EPOCH"), SLOT + 3, &[0xFF]); // slot 1 torn
        assert_eq!(read_epoch(&*disk, &dir.join("EPOCH")).unwrap(), 1);
        assert_eq!(Ownership::acquire(disk, dir).unwrap().epoch(), 2);
    }

    #[test]
    fn a_stale_owner_is_fenced_by_a_take_over_and_writes_nothing() {
        let (sim, disk) = sim();
        let dir = Path::new("/vs1/msmq/storage");
        let read = |path: &Path| sim.read_file(path).unwrap();
        fenced_by_a_take_over(disk, dir, read, |dir| sim.list(dir).unwrap()[0].clone());
    }

    /// The same on the real file system, `take_over` writing the epoch through a file of its own.
    #[test]
    fn a_stale_owner_on_real_files_is_fenced_by_a_take_over() {
        let root = tempfile::tempdir().unwrap();
        let disk: Arc<dyn Disk> = Arc::new(crate::storage::disk::FileDisk);
        let dir = root.path().join("vs1/msmq/storage");
        let read = |path: &Path| std::fs::read(path).unwrap();
        let first = |dir: &Path| disk.list(dir).unwrap()[0].clone();
        fenced_by_a_take_over(disk.clone(), &dir, read, first);
    }

    fn fenced_by_a_take_over(
        disk: Arc<dyn Disk>,
        dir: &Path,
        read: impl Fn(&Path) -> Vec<u8>,
        first_segment: impl Fn(&Path) -> PathBuf,
    ) {
        let owner = Ownership::acquire(disk.clone(), dir).unwrap();
        let wal_dir = dir.join("wal");
        let options = WalOptions {
            segment_size: 4096,
            ..WalOptions::default()
        };
        let (wal, _) = Wal::open(
            disk.clone(),
            &wal_dir,
            owner.epoch(),
            owner.epoch_check(),
            options.clone(),
        )
        .unwrap();
        wal.append(1, b"mine").unwrap();
        // The cluster moves the virtual server: the new owner raises the epoch.
        let theirs = take_over(&*disk, dir).unwrap();
        assert_eq!(theirs, 2);
        let segment = first_segment(&wal_dir);
        let before = read(&segment);
        assert!(
            before.windows(4).any(|w| w == b"mine"),
            "{} holds the first record",
            segment.display()
        );
        assert!(matches!(
            wal.append(1, b"stale"),
            Err(WalError::Fenced { ours: 1, theirs: 2 })
        ));
        assert_eq!(read(&segment), before);
        drop(wal);
        let (_, records) = Wal::open(
            disk,
            &wal_dir,
            theirs,
            Box::new(move || Ok(theirs)),
            options,
        )
        .unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].data, b"mine");
    }
}
