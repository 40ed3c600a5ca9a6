//! The catalog: queue definitions and settings, which change rarely and apart from messages.
//!
//! It lives in `sled` under `<root>/msmq/storage/catalog/`. Every change is flushed before the call
//! that made it returns, so a created queue exists after a crash. The queue manager sees the
//! catalog through [`CatalogStore`], so tests that simulate the log's disk can keep the catalog in
//! memory ([`MemCatalog`]): it is durable at every point by construction, which is what the
//! flush gives the real one.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A small durable key-value map.
pub trait CatalogStore: Send + Sync {
    /// The value under `key`.
    fn get(&self, key: &str) -> io::Result<Option<Vec<u8>>>;
    /// Sets `key`; durable when it returns.
    fn put(&self, key: &str, value: &[u8]) -> io::Result<()>;
    /// Removes `key`; durable when it returns.
    fn remove(&self, key: &str) -> io::Result<()>;
    /// Every entry whose key starts with `prefix`, in key order.
    fn scan(&self, prefix: &str) -> io::Result<Vec<(String, Vec<u8>)>>;
}

/// The catalog in a `sled` database.
pub struct SledCatalog {
    db: sled::Db,
}

fn io_error(e: sled::Error) -> io::Error {
    match e {
        sled::Error::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

impl SledCatalog {
    /// Opens (or creates) the catalog in `dir`. The caller owns the storage directory
    /// ([`crate::storage::Ownership`]).
    pub fn open(dir: &Path) -> io::Result<SledCatalog> {
        // sled releases its file lock from its own threads, some time after the last `Db` is
        // dropped: a queue manager reopened at once (a restart in a test, a failover back) can
        // find the lock still taken. The caller's ownership of the directory means no other
        // process holds it, so a taken lock is this process's last catalog closing: wait for it,
        // a while.
        let mut delay = Duration::from_millis(1);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            // No periodic flusher: every change is flushed before it returns anyway.
            let opened = sled::Config::new()
                .path(dir)
                .mode(sled::Mode::LowSpace)
                .flush_every_ms(None)
                .open()
                .map_err(io_error);
            match opened {
                Ok(db) => return Ok(SledCatalog { db }),
                Err(e) if lock_taken(&e) && Instant::now() < deadline => {
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_millis(50));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Whether sled failed to open because its lock file is locked: sled 0.34 reports that as
/// `ErrorKind::Other` with this text, not as `WouldBlock`.
fn lock_taken(e: &io::Error) -> bool {
    e.to_string().contains("could not acquire lock")
}

impl CatalogStore for SledCatalog {
    fn get(&self, key: &str) -> io::Result<Option<Vec<u8>>> {
        Ok(self.db.get(key).map_err(io_error)?.map(|v| v.to_vec()))
    }

    fn put(&self, key: &str, value: &[u8]) -> io::Result<()> {
        self.db.insert(key, value).map_err(io_error)?;
        self.db.flush().map_err(io_error)?;
        Ok(())
    }

    fn remove(&self, key: &str) -> io::Result<()> {
        self.db.remove(key).map_err(io_error)?;
        self.db.flush().map_err(io_error)?;
        Ok(())
    }

    fn scan(&self, prefix: &str) -> io::Result<Vec<(String, Vec<u8>)>> {
        self.db
            .scan_prefix(prefix)
            .map(|kv| {
                let (k, v) = kv.map_err(io_error)?;
                Ok((String::from_utf8_lossy(&k).into_owned(), v.to_vec()))
            })
            .collect()
    }
}

/// A catalog in memory that outlives the queue managers opened on it: for crash tests, where it
/// plays a catalog whose every change was flushed.
#[derive(Debug, Default, Clone)]
pub struct MemCatalog {
    map: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
}

impl MemCatalog {
    /// An empty catalog.
    pub fn new() -> MemCatalog {
        MemCatalog::default()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl CatalogStore for MemCatalog {
    fn get(&self, key: &str) -> io::Result<Option<Vec<u8>>> {
        Ok(self.map().get(key).cloned())
    }

    fn put(&self, key: &str, value: &[u8]) -> io::Result<()> {
        self.map().insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    fn remove(&self, key: &str) -> io::Result<()> {
        self.map().remove(key);
        Ok(())
    }

    fn scan(&self, prefix: &str) -> io::Result<Vec<(String, Vec<u8>)>> {
        Ok(self
            .map()
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reopen_waits_for_the_catalog_still_closing() {
        let dir = tempfile::tempdir().unwrap();
        let first = SledCatalog::open(dir.path()).unwrap();
        first.put("k", b"v").unwrap();
        // Held on another thread a little longer: as sled's own threads hold its lock after a
        // queue manager drops its catalog.
        let closing = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(first);
        });
        let second = SledCatalog::open(dir.path()).unwrap();
        assert_eq!(second.get("k").unwrap().as_deref(), Some(&b"v"[..]));
        closing.join().unwrap();
    }
}
