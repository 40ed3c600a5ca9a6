//! A simulated disk for crash tests: it remembers what was synced apart from what was written,
//! and it can "crash" at any sync point.
//!
//! Every `sync_data` is numbered. With [`SimDisk::fail_after_syncs`]`(n)` the first `n` syncs work
//! and every operation after them fails, as if the machine stopped there: the code under test
//! sees errors and must not acknowledge anything it did not make durable. [`SimDisk::crash_image`]
//! then returns a new disk holding only what was durable (optionally with a torn prefix of the
//! unsynced writes), to reopen and check. This is redb's crash-consistency technique.

use std::any::Any;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::disk::{Disk, DiskFile};

/// One simulated file.
#[derive(Debug, Clone, Default)]
struct SimFile {
    /// What reads see.
    live: Vec<u8>,
    /// What survives a crash: the contents at this file's last sync.
    durable: Vec<u8>,
}

#[derive(Debug, Default)]
struct State {
    files: BTreeMap<PathBuf, SimFile>,
    /// Syncs performed so far.
    syncs: u64,
    /// Syncs allowed before the simulated crash; `None` never crashes.
    budget: Option<u64>,
    /// Set once the budget is spent: everything fails from then on.
    crashed: bool,
    /// Lock files held.
    locks: Vec<PathBuf>,
}

/// An in-memory disk with a durable image and a crash switch. Cheap to clone; clones share state.
#[derive(Debug, Clone, Default)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn crashed() -> io::Error {
    io::Error::other("simulated crash: the disk stopped at a sync point")
}

impl SimDisk {
    /// An empty disk that never crashes.
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    /// Lets `n` more syncs succeed, then fails every operation (the crash).
    pub fn fail_after_syncs(&self, n: u64) {
        let mut s = lock(&self.state);
        s.budget = Some(s.syncs + n);
    }

    /// Syncs performed so far.
    pub fn syncs(&self) -> u64 {
        lock(&self.state).syncs
    }

    /// Whether the simulated crash has happened.
    pub fn has_crashed(&self) -> bool {
        lock(&self.state).crashed
    }

    /// A new disk holding what was durable at the crash. With `torn`, each file also keeps a
    /// prefix of its unsynced tail, `torn(path, unsynced_len)` bytes long, as a real disk may.
    pub fn crash_image(&self, torn: impl Fn(&Path, usize) -> usize) -> SimDisk {
        let s = lock(&self.state);
        let files = s
            .files
            .iter()
            .map(|(path, f)| {
                let mut image = f.durable.clone();
                if f.live.len() > image.len() && f.live.starts_with(&image) {
                    let extra = torn(path, f.live.len() - image.len());
                    image.extend_from_slice(&f.live[f.durable.len()..f.durable.len() + extra]);
                }
                let file = SimFile {
                    live: image.clone(),
                    durable: image,
                };
                (path.clone(), file)
            })
            .collect();
        SimDisk {
            state: Arc::new(Mutex::new(State {
                files,
                ..State::default()
            })),
        }
    }

    /// Overwrites bytes of a file, live and durable alike (for corruption tests).
    pub fn corrupt(&self, path: &Path, offset: usize, bytes: &[u8]) {
        let mut s = lock(&self.state);
        let f = s.files.get_mut(path).expect("corrupting an existing file");
        for image in [&mut f.live, &mut f.durable] {
            if image.len() < offset + bytes.len() {
                image.resize(offset + bytes.len(), 0);
            }
            image[offset..offset + bytes.len()].copy_from_slice(bytes);
        }
    }

    /// Cuts a file to `len` bytes, live and durable alike.
    pub fn truncate(&self, path: &Path, len: usize) {
        let mut s = lock(&self.state);
        let f = s.files.get_mut(path).expect("truncating an existing file");
        f.live.truncate(len);
        f.durable.truncate(len);
    }

    /// A file's live contents, if it exists.
    pub fn read_file(&self, path: &Path) -> Option<Vec<u8>> {
        lock(&self.state).files.get(path).map(|f| f.live.clone())
    }
}

struct SimHandle {
    disk: SimDisk,
    path: PathBuf,
}

impl SimHandle {
    fn with<R>(&self, f: impl FnOnce(&mut State) -> io::Result<R>) -> io::Result<R> {
        let mut s = lock(&self.disk.state);
        if s.crashed {
            return Err(crashed());
        }
        f(&mut s)
    }
}

impl DiskFile for SimHandle {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.with(|s| {
            let f = s.files.get(&self.path).ok_or(io::ErrorKind::NotFound)?;
            let start = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(f.live.len());
            let n = buf.len().min(f.live.len() - start);
            buf[..n].copy_from_slice(&f.live[start..start + n]);
            Ok(n)
        })
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.with(|s| {
            let f = s.files.get_mut(&self.path).ok_or(io::ErrorKind::NotFound)?;
            let start = usize::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
            if f.live.len() < start + buf.len() {
                f.live.resize(start + buf.len(), 0);
            }
            f.live[start..start + buf.len()].copy_from_slice(buf);
            Ok(())
        })
    }

    fn len(&self) -> io::Result<u64> {
        self.with(|s| {
            let f = s.files.get(&self.path).ok_or(io::ErrorKind::NotFound)?;
            Ok(f.live.len() as u64)
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        self.with(|s| {
            if s.budget.is_some_and(|b| s.syncs >= b) {
                s.crashed = true;
                return Err(crashed());
            }
            s.syncs += 1;
            let f = s.files.get_mut(&self.path).ok_or(io::ErrorKind::NotFound)?;
            f.durable = f.live.clone();
            Ok(())
        })
    }
}

impl Disk for SimDisk {
    fn background_io(&self) -> bool {
        false
    }

    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Box<dyn DiskFile>> {
        let mut s = lock(&self.state);
        if s.crashed {
            return Err(crashed());
        }
        if !s.files.contains_key(path) {
            if !create {
                return Err(io::ErrorKind::NotFound.into());
            }
            s.files.insert(path.to_owned(), SimFile::default());
        }
        Ok(Box::new(SimHandle {
            disk: self.clone(),
            path: path.to_owned(),
        }))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let s = lock(&self.state);
        if s.crashed {
            return Err(crashed());
        }
        Ok(s.files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .cloned()
            .collect())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut s = lock(&self.state);
        if s.crashed {
            return Err(crashed());
        }
        s.files
            .remove(path)
            .map(|_| ())
            .ok_or(io::ErrorKind::NotFound.into())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = lock(&self.state);
        if s.crashed {
            return Err(crashed());
        }
        let file = s.files.remove(from).ok_or(io::ErrorKind::NotFound)?;
        s.files.insert(to.to_owned(), file);
        Ok(())
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        // Directory entries are durable at once here: the tests target file contents.
        if lock(&self.state).crashed {
            return Err(crashed());
        }
        Ok(())
    }

    fn lock_exclusive(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>> {
        let mut s = lock(&self.state);
        if s.locks.iter().any(|p| p == path) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is locked", path.display()),
            ));
        }
        s.locks.push(path.to_owned());
        Ok(Box::new(SimLock {
            disk: self.clone(),
            path: path.to_owned(),
        }))
    }
}

/// A held simulated lock; released on drop.
struct SimLock {
    disk: SimDisk,
    path: PathBuf,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        lock(&self.disk.state).locks.retain(|p| p != &self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_synced_bytes_survive_a_crash_and_everything_fails_after_it() {
        let disk = SimDisk::new();
        let path = Path::new("/d/f");
        let f = disk.open(path, true).unwrap();
        f.write_at(b"abc", 0).unwrap();
        f.sync_data().unwrap();
        disk.fail_after_syncs(0);
        f.write_at(b"def", 3).unwrap();
        assert!(f.sync_data().is_err());
        assert!(disk.has_crashed());
        assert!(f.write_at(b"x", 0).is_err());
        let image = disk.crash_image(|_, _| 0);
        assert_eq!(image.read_file(path).unwrap(), b"abc");
        let torn = disk.crash_image(|_, unsynced| unsynced - 1);
        assert_eq!(torn.read_file(path).unwrap(), b"abcde");
        assert_eq!(disk.syncs(), 1);
    }

    #[test]
    fn locks_are_exclusive_until_dropped() {
        let disk = SimDisk::new();
        let l = disk.lock_exclusive(Path::new("/d/LOCK")).unwrap();
        assert!(disk.lock_exclusive(Path::new("/d/LOCK")).is_err());
        drop(l);
        assert!(disk.lock_exclusive(Path::new("/d/LOCK")).is_ok());
    }
}
