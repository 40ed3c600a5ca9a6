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
    /// Opens (or creates) the catalog in `dir`.
    pub fn open(dir: &Path) -> io::Result<SledCatalog> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::LowSpace)
            .open()
            .map_err(io_error)?;
        Ok(SledCatalog { db })
    }
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
