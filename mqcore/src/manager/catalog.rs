//! The catalog: the queue manager's queue definitions by name and id, and the key-value entries
//! other components keep with it.

use std::collections::HashMap;
use std::sync::Arc;

use super::Inner;
use crate::error::{Error, ErrorCode, Result};
use crate::name::{QueueName, QueueRef};
use crate::persistence::record::{self, StoreRef};
use crate::queue::store::Store;
use crate::queue::{QueueInner, QueueProps};
use crate::storage::catalog::CatalogStore;

/// Catalog key of the queue manager's GUID.
pub(super) const GUID_KEY: &str = "meta/guid";
/// Catalog key of the queue manager's computer name, kept with its GUID.
pub(super) const NAME_KEY: &str = "meta/name";
/// Catalog key of the last queue id handed out.
pub(super) const QUEUE_ID_KEY: &str = "meta/last_queue_id";
/// Catalog key prefix of queue definitions.
pub(super) const QUEUE_PREFIX: &str = "queue/";

pub(super) fn queue_key(id: u32) -> String {
    format!("{QUEUE_PREFIX}{id:08x}")
}

/// A queue's definition in the catalog.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct QueueDef {
    pub(super) id: u32,
    pub(super) name: String,
    pub(super) props: QueueProps,
}

#[derive(Default)]
pub(super) struct Catalog {
    pub(super) by_name: HashMap<String, Arc<QueueInner>>,
    pub(super) by_id: HashMap<u32, Arc<QueueInner>>,
    pub(super) next_id: u32,
}

/// Definitions other components keep with the queue manager, so that they travel with its storage
/// directory (the Triggers service's rules and triggers). Keys must not start with `q/` or the
/// other prefixes the queue manager uses for itself.
pub(crate) struct CatalogEntries<'a> {
    inner: &'a Inner,
}

impl CatalogEntries<'_> {
    fn store(&self) -> &dyn CatalogStore {
        match &self.inner.durable {
            Some(d) => &*d.catalog,
            None => &self.inner.mem_settings,
        }
    }

    fn io(e: std::io::Error) -> Error {
        Error::new(ErrorCode::MessageStorageFailed, format!("catalog: {e}"))
    }

    /// Every entry under `prefix`, in key order.
    pub(crate) fn scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        self.store().scan(prefix).map_err(CatalogEntries::io)
    }

    /// Sets `key`; durable when it returns. Refused once another node owns the storage.
    pub(crate) fn put(&self, key: &str, value: &[u8]) -> Result<()> {
        if let Some(d) = &self.inner.durable {
            d.check_owner()?;
        }
        self.store().put(key, value).map_err(CatalogEntries::io)
    }

    /// Removes `key`; durable when it returns. Refused once another node owns the storage.
    pub(crate) fn remove(&self, key: &str) -> Result<()> {
        if let Some(d) = &self.inner.durable {
            d.check_owner()?;
        }
        self.store().remove(key).map_err(CatalogEntries::io)
    }
}

impl Inner {
    /// Builds a private queue's in-memory side.
    pub(super) fn new_queue(&self, id: u32, name: &str, props: QueueProps) -> Arc<QueueInner> {
        Arc::new(QueueInner::new(
            id,
            Arc::new(QueueName::private(&self.name, name)),
            name.to_ascii_lowercase(),
            props,
            Store::linked(StoreRef::Main(id), true, self.cold.as_ref()),
            Store::linked(StoreRef::Journal(id), false, self.cold.as_ref()),
            self.cold.clone(),
        ))
    }

    /// Writes a catalog entry (durable when it returns); nothing in memory. Refused once fenced.
    pub(super) fn catalog_put(&self, key: &str, value: &[u8]) -> Result<()> {
        let Some(d) = &self.durable else {
            return Ok(());
        };
        d.check_owner()?;
        d.catalog
            .put(key, value)
            .map_err(|e| Error::new(ErrorCode::MessageStorageFailed, format!("catalog: {e}")))
    }

    /// The catalog that other components keep their definitions in: the durable one (checked for
    /// ownership on every write), or one in memory.
    pub(crate) fn catalog_entries(&self) -> CatalogEntries<'_> {
        CatalogEntries { inner: self }
    }

    pub(super) fn save_queue(&self, q: &QueueInner) -> Result<()> {
        if self.durable.is_none() {
            return Ok(());
        }
        let name = match q.path.queue() {
            QueueRef::Private { name, .. } => name.to_owned(),
            _ => q.key.clone(),
        };
        let def = QueueDef {
            id: q.id,
            name,
            props: q.props(),
        };
        self.catalog_put(&queue_key(q.id), &record::encode(&def))
    }
}
