//! The file system behind a trait, so crash tests can swap in a disk that stops at any sync.
//!
//! Storage code touches files only through [`Disk`] and [`DiskFile`]. [`FileDisk`] is the real
//! file system; [`crate::storage::sim::SimDisk`] keeps what was written apart from what was synced
//! and fails every operation after a chosen sync, which is how the crash tests freeze durability at
//! every sync point of a workload.

use std::any::Any;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// A file opened through a [`Disk`].
pub trait DiskFile: Send + Sync {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read (0 at the end).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `offset`, extending the file if needed.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// The file's length.
    fn len(&self) -> io::Result<u64>;
    /// Makes everything written so far durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// A file system.
pub trait Disk: Send + Sync + 'static {
    /// Creates a directory and its parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Opens a file for reading and writing, creating it if `create`.
    fn open(&self, path: &Path, create: bool) -> io::Result<Box<dyn DiskFile>>;
    /// The files directly inside `dir`, sorted by name.
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Renames a file, replacing any file already at `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the directory's entries (files created or removed) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on `path` (created if needed), held until the returned value is
    /// dropped. Fails with `WouldBlock` if another owner holds it.
    fn lock_exclusive(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>>;
    /// Whether the log may prepare files on a thread of its own (the next segment, zero-filled
    /// ahead of need). A simulated disk says no, so that its sync points come in one order.
    fn background_io(&self) -> bool {
        true
    }
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct FileDisk;

struct RealFile(File);

impl DiskFile for RealFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(&self.0, buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.0, buf, offset)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl Disk for FileDisk {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Box<dyn DiskFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)?;
        Ok(Box::new(RealFile(file)))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                names.push(entry.path());
            }
        }
        names.sort();
        Ok(names)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn lock_exclusive(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Box::new(file)),
            Err(std::fs::TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is locked by another process", path.display()),
            )),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_disk_reads_writes_lists_and_locks() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("disk");
        let disk = FileDisk;
        disk.create_dir_all(&dir).unwrap();
        let path = dir.join("a.bin");
        let f = disk.open(&path, true).unwrap();
        f.write_at(b"hello", 3).unwrap();
        f.sync_data().unwrap();
        assert_eq!(f.len().unwrap(), 8);
        let mut buf = [0u8; 8];
        assert_eq!(f.read_at(&mut buf, 0).unwrap(), 8);
        assert_eq!(&buf, b"\0\0\0hello");
        assert_eq!(disk.list(&dir).unwrap(), vec![path.clone()]);
        let lock = disk.lock_exclusive(&dir.join("LOCK")).unwrap();
        let second = disk.lock_exclusive(&dir.join("LOCK")).err().unwrap();
        assert_eq!(second.kind(), io::ErrorKind::WouldBlock);
        drop(lock);
        disk.lock_exclusive(&dir.join("LOCK")).unwrap();
        disk.remove(&path).unwrap();
        assert!(disk.list(&dir).unwrap().iter().all(|p| p != &path));
    }
}
