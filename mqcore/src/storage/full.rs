//! A disk that can be made to fill up, so tests see what users see when storage runs out.
//!
//! [`FillableDisk`] passes everything to the disk it wraps until [`FillableDisk::fill`]; from then
//! on every write stores its first half and fails with `ENOSPC` (`io::ErrorKind::StorageFull`),
//! as a disk that runs out mid-write does, until [`FillableDisk::free`].
//! Reads, renames and syncs of what was written before still work, as on a real full disk.

use std::any::Any;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::disk::{Disk, DiskFile};

/// A [`Disk`] whose writes fail with `ENOSPC` while it is full. Clones share the switch.
#[derive(Clone)]
pub struct FillableDisk {
    inner: Arc<dyn Disk>,
    full: Arc<AtomicBool>,
}

impl FillableDisk {
    /// Wraps `inner`, not full.
    pub fn new(inner: Arc<dyn Disk>) -> FillableDisk {
        FillableDisk {
            inner,
            full: Arc::new(AtomicBool::new(false)),
        }
    }

    /// From now on every write fails.
    pub fn fill(&self) {
        self.full.store(true, Ordering::SeqCst);
    }

    /// Writes work again.
    pub fn free(&self) {
        self.full.store(false, Ordering::SeqCst);
    }

    /// Whether writes fail now.
    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::SeqCst)
    }

    fn check(full: &AtomicBool) -> io::Result<()> {
        if full.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        Ok(())
    }
}

impl std::fmt::Debug for FillableDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FillableDisk")
            .field("full", &self.is_full())
            .finish_non_exhaustive()
    }
}

struct FillableFile {
    inner: Box<dyn DiskFile>,
    full: Arc<AtomicBool>,
}

impl DiskFile for FillableFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }

    /// A full disk takes the first half of a write, then fails: what was written must not be
    /// read back as if the whole of it were there.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if FillableDisk::check(&self.full).is_err() {
            let _ = self.inner.write_at(&buf[..buf.len() / 2], offset);
            return FillableDisk::check(&self.full);
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

impl Disk for FillableDisk {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Box<dyn DiskFile>> {
        Ok(Box::new(FillableFile {
            inner: self.inner.open(path, create)?,
            full: self.full.clone(),
        }))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        self.inner.list(dir)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.inner.remove(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(dir)
    }

    fn lock_exclusive(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>> {
        self.inner.lock_exclusive(path)
    }

    fn background_io(&self) -> bool {
        self.inner.background_io()
    }
}
