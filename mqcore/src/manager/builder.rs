//! Building a queue manager: its settings, and opening (or creating) its storage directory.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};

use uuid::Uuid;

use super::catalog::{Catalog, GUID_KEY, NAME_KEY};
use super::{Inner, QueueManager};
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, ErrorCode, Result};
use crate::name::SystemQueue;
use crate::persistence::record::StoreRef;
use crate::persistence::{storage_error, LogSource, Persistence, Replay};
use crate::queue::cold::ColdSource;
use crate::queue::store::Store;
use crate::storage::catalog::{CatalogStore, MemCatalog, SledCatalog};
use crate::storage::storage_dir;
use crate::storage::wal::{LeaseCheck, Wal, WalError, WalOptions};
use crate::storage::{Disk, FileDisk, Ownership, OwnershipError};
use crate::timer::Timer;
use crate::tx::{Coordinator, LocalCoordinator};

/// Which MSMQ version's behaviour the queue manager follows.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum Compat {
    /// MSMQ 3.0 (Windows Server 2003): no subqueues, no move or reject, no remote transactional
    /// receive.
    Msmq3,
    /// MSMQ 4.0 and later (the default): subqueues, move, reject, and remote transactional
    /// receive under an external transaction.
    #[default]
    Msmq4,
}

impl FromStr for Compat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Compat> {
        match s.to_ascii_lowercase().as_str() {
            "msmq3" => Ok(Compat::Msmq3),
            "msmq4" => Ok(Compat::Msmq4),
            _ => Err(Error::new(
                ErrorCode::InvalidParameter,
                format!("compatibility level {s:?} is not msmq3 or msmq4"),
            )),
        }
    }
}

impl std::fmt::Display for Compat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Compat::Msmq3 => "msmq3",
            Compat::Msmq4 => "msmq4",
        })
    }
}

/// How much of the queued messages' data a durable queue manager keeps in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Body and label bytes of logged messages held in memory.
    pub cached_bytes: u64,
    /// Queued messages held only as their position in the log.
    pub cold_messages: u64,
}

/// Builds a [`QueueManager`].
#[must_use]
pub struct Builder {
    /// `None` until set: then a durable queue manager keeps the name it was created with.
    name: Option<String>,
    guid: Option<Uuid>,
    clock: Arc<dyn Clock>,
    compat: Compat,
    coordinator: Arc<dyn Coordinator>,
    segment_size: u64,
    cache_size: u64,
    addresses: Vec<String>,
    hosts: HashMap<String, String>,
    max_message_bytes: usize,
    lease: Option<LeaseCheck>,
    disk: Option<Arc<dyn Disk>>,
}

/// An address as names compare it: lower case, without the brackets of an IPv6 literal.
pub(super) fn normal_address(address: &str) -> String {
    address
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

impl Builder {
    /// The defaults: `localhost`, a new GUID, the system clock, MSMQ 4.0, a local coordinator.
    pub(super) fn new() -> Builder {
        Builder {
            name: None,
            guid: None,
            clock: Arc::new(SystemClock),
            compat: Compat::default(),
            coordinator: LocalCoordinator::new(),
            segment_size: WalOptions::default().segment_size,
            cache_size: DEFAULT_CACHE,
            addresses: Vec::new(),
            hosts: HashMap::new(),
            max_message_bytes: crate::message::MAX_BODY_LEN,
            lease: None,
            disk: None,
        }
    }

    /// The largest body a message transferred from another queue manager may have here; larger
    /// ones are refused with NACK 0x800D (`MQMSG_CLASS_NACK_MESSAGE_TOO_LARGE`). Default 4 MB,
    /// MSMQ's limit.
    pub fn max_message_size(mut self, bytes: usize) -> Builder {
        self.max_message_bytes = bytes;
        self
    }

    /// An address this queue manager answers to in `DIRECT=TCP:<address>` names: an IP address
    /// (or a DNS name) it is reached at, without a port. With none given, the loopback addresses
    /// (`127.0.0.1`, `::1`) are this queue manager's, as they are for an engine in one process;
    /// once one is given, only the given ones are, so that two servers on one machine
    /// (`127.0.0.2`, `127.0.0.3`) tell each other apart. `localhost` always names this queue
    /// manager.
    pub fn address(mut self, address: impl AsRef<str>) -> Builder {
        self.addresses.push(normal_address(address.as_ref()));
        self
    }

    /// A computer name and the address it is reached at: how `DIRECT=OS:<name>\...` and
    /// `<name>\private$\...` find their queue manager (MSMQ asks DNS; here the map is given,
    /// from the configuration's `[hosts]`). A name mapped to one of this queue manager's
    /// addresses names this queue manager. Names compare without regard to ASCII case.
    pub fn host(mut self, name: impl AsRef<str>, address: impl AsRef<str>) -> Builder {
        self.hosts.insert(
            name.as_ref().to_ascii_lowercase(),
            normal_address(address.as_ref()),
        );
        self
    }

    /// The computer name (`HOST` in `HOST\private$\q`). A durable queue manager keeps its
    /// name with its GUID: opened without one, it is the name it had (`localhost` for a new
    /// one); opened with another, it is renamed, as a Windows computer can be. Default
    /// `localhost`.
    pub fn name(mut self, name: impl Into<String>) -> Builder {
        self.name = Some(name.into());
        self
    }

    /// The queue manager's GUID (the first 16 bytes of its message ids); default random.
    pub fn guid(mut self, guid: Uuid) -> Builder {
        self.guid = Some(guid);
        self
    }

    /// The clock behind every timeout and expiry; default wall time.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Builder {
        self.clock = clock;
        self
    }

    /// MSMQ 3.0 or 4.0 behaviour; default 4.0.
    pub fn compat(mut self, compat: Compat) -> Builder {
        self.compat = compat;
        self
    }

    /// The transaction coordinator for external transactions; default an always-available one.
    pub fn coordinator(mut self, coordinator: Arc<dyn Coordinator>) -> Builder {
        self.coordinator = coordinator;
        self
    }

    /// The lease under which this process owns a shared storage directory (a cluster's virtual
    /// server): a durable change is acknowledged, and a catalog write made, only while `valid`
    /// returns true, asked after the change is synced. Once it returns false the queue manager
    /// acknowledges nothing more (`MQ_ERROR_SERVICE_NOT_AVAILABLE`). Default: no lease.
    pub fn lease(mut self, valid: Arc<dyn Fn() -> bool + Send + Sync>) -> Builder {
        self.lease = Some(LeaseCheck(valid));
        self
    }

    /// Size of each log segment of a durable queue manager; default 64 MiB.
    pub fn segment_size(mut self, bytes: u64) -> Builder {
        self.segment_size = bytes;
        self
    }

    /// Bytes of logged message bodies and labels a durable queue manager keeps in memory;
    /// messages past it are kept as log positions (16 bytes each) and read back when needed.
    /// Default 64 MiB.
    pub fn cache_size(mut self, bytes: u64) -> Builder {
        self.cache_size = bytes;
        self
    }

    /// Starts an in-memory queue manager.
    pub fn build(self) -> QueueManager {
        let guid = self.guid.unwrap_or_else(Uuid::new_v4);
        let name = self.name.clone().unwrap_or_else(default_name);
        QueueManager {
            inner: self.start(name, guid, None, None),
        }
    }

    /// The file system [`Builder::open`] keeps the log and owner epoch on (default: the real
    /// one). Tests wrap it to inject faults, such as a disk that fills up; the catalog stays on
    /// the real file system.
    pub fn disk(mut self, disk: Arc<dyn Disk>) -> Builder {
        self.disk = Some(disk);
        self
    }

    /// Opens (or creates) a durable queue manager whose storage is `<root>/msmq/storage/`: an
    /// owner lock and epoch, the write-ahead log (`wal/`) and the catalog (`catalog/`, sled).
    /// Everything committed before a crash is there again. Another process holding the
    /// directory makes this fail with `MQ_ERROR_SERVICE_NOT_AVAILABLE`.
    pub fn open(self, root: impl AsRef<Path>) -> Result<QueueManager> {
        let dir = storage_dir(root.as_ref());
        let disk: Arc<dyn Disk> = self.disk.clone().unwrap_or_else(|| Arc::new(FileDisk));
        let owner = Ownership::acquire(disk.clone(), &dir).map_err(ownership_error)?;
        let catalog = SledCatalog::open(&dir.join("catalog")).map_err(|e| {
            Error::new(
                ErrorCode::MessageStorageFailed,
                format!("catalog in {}: {e}", dir.display()),
            )
        })?;
        self.open_owned(disk, &dir, Arc::new(catalog), owner)
    }

    /// [`Builder::open`] on any disk and catalog, with `dir` the storage directory itself: crash
    /// tests open a [`crate::storage::SimDisk`] and a [`crate::storage::MemCatalog`].
    pub fn open_with(
        self,
        disk: Arc<dyn Disk>,
        dir: &Path,
        catalog: Arc<dyn CatalogStore>,
    ) -> Result<QueueManager> {
        let owner = Ownership::acquire(disk.clone(), dir).map_err(ownership_error)?;
        self.open_owned(disk, dir, catalog, owner)
    }

    fn open_owned(
        self,
        disk: Arc<dyn Disk>,
        dir: &Path,
        catalog: Arc<dyn CatalogStore>,
        owner: Ownership,
    ) -> Result<QueueManager> {
        let cat_err = |e: std::io::Error| {
            Error::new(ErrorCode::MessageStorageFailed, format!("catalog: {e}"))
        };
        let guid = match catalog.get(GUID_KEY).map_err(cat_err)? {
            Some(bytes) => Uuid::from_slice(&bytes).map_err(|e| {
                Error::new(
                    ErrorCode::MessageStorageFailed,
                    format!("catalog: bad GUID: {e}"),
                )
            })?,
            None => {
                let guid = self.guid.unwrap_or_else(Uuid::new_v4);
                catalog.put(GUID_KEY, guid.as_bytes()).map_err(cat_err)?;
                guid
            }
        };
        // A given name is checked as a stored one is read back, so that what one open saves
        // the next can read.
        if let Some(name) = &self.name {
            crate::name::QueueName::try_private(name, "q").map_err(|e| {
                Error::new(
                    ErrorCode::InvalidParameter,
                    format!("computer name {name:?} is not one: {}", e.detail()),
                )
            })?;
        }
        let stored = match catalog.get(NAME_KEY).map_err(cat_err)? {
            // A name that is not a computer name would make every queue's path unreadable (the
            // `catalog` fuzz target found one listed under a name that did not parse back).
            Some(b) => Some(
                String::from_utf8(b)
                    .ok()
                    .filter(|n| crate::name::QueueName::try_private(n, "q").is_ok())
                    .ok_or_else(|| {
                        Error::new(
                            ErrorCode::MessageStorageFailed,
                            "catalog: the stored computer name is not one",
                        )
                    })?,
            ),
            None => None,
        };
        let name = match (self.name.clone(), stored) {
            (Some(name), Some(stored)) if name == stored => name,
            (None, Some(stored)) => stored,
            (given, _) => {
                let name = given.unwrap_or_else(default_name);
                catalog.put(NAME_KEY, name.as_bytes()).map_err(cat_err)?;
                name
            }
        };
        let options_size = self.segment_size;
        let options = WalOptions {
            segment_size: self.segment_size,
            lease: self.lease.clone(),
        };
        let mut replay = Replay::new(guid, options_size);
        let mut failed = None;
        let wal = Wal::open_visiting(
            disk,
            &dir.join("wal"),
            owner.epoch(),
            owner.epoch_check(),
            options,
            |r| {
                replay.record(r).map_err(|e| {
                    let why = e.to_string();
                    failed = Some(e);
                    WalError::Poisoned(why)
                })
            },
        )
        .map_err(|e| failed.take().unwrap_or_else(|| storage_error(e)))?;
        let (recovered, live) = replay.finish();
        let cold: Arc<dyn ColdSource> = Arc::new(LogSource::new(wal.reader(), self.cache_size));
        let durable = Persistence::new(wal, catalog, owner, self.lease.clone(), options_size, live);
        let inner = self.start(name, guid, Some(durable), Some(cold));
        inner.recover(recovered)?;
        // Segments that hold nothing live go now, not after the next COMPACTION_EVERY records:
        // a log whose messages were all received reopens to its last segment.
        if let Err(e) = inner.compact() {
            tracing::error!(error = %e, "log compaction after recovery failed");
        }
        Ok(QueueManager { inner })
    }

    fn start(
        self,
        name: String,
        guid: Uuid,
        durable: Option<Persistence>,
        cold: Option<Arc<dyn ColdSource>>,
    ) -> Arc<Inner> {
        let system = |q| Store::linked(StoreRef::System(q), false, cold.as_ref());
        let timer = Timer::start(self.clock.clone());
        Arc::new(Inner {
            nacks: std::sync::atomic::AtomicU64::new(0),
            name,
            addresses: self.addresses,
            hosts: self.hosts,
            guid,
            compat: self.compat,
            clock: self.clock,
            timer,
            coordinator: self.coordinator,
            catalog: RwLock::new(Catalog::default()),
            next_ordinal: AtomicU32::new(0),
            next_tx: AtomicU64::new(0),
            dead_letter: system(SystemQueue::DeadLetter),
            dead_xact: system(SystemQueue::DeadXact),
            journal: system(SystemQueue::Journal),
            durable,
            cold,
            in_doubt: Mutex::new(HashMap::new()),
            xids: Mutex::default(),
            compacting: AtomicBool::new(false),
            mem_settings: MemCatalog::new(),
            outgoing: Mutex::default(),
            inbound: Mutex::default(),
            ready: Arc::default(),
            max_message_bytes: self.max_message_bytes,
        })
    }
}

/// The computer name of a queue manager nobody named.
fn default_name() -> String {
    "localhost".to_owned()
}

/// Default bytes of logged messages kept in memory ([`Builder::cache_size`]).
pub(super) const DEFAULT_CACHE: u64 = 64 * 1024 * 1024;

pub(super) fn ownership_error(e: OwnershipError) -> Error {
    match e {
        OwnershipError::InUse(dir) => Error::new(
            ErrorCode::ServiceNotAvailable,
            format!(
                "storage directory {} is in use by another queue manager process",
                dir.display()
            ),
        ),
        other => Error::new(ErrorCode::MessageStorageFailed, other.to_string()),
    }
}
