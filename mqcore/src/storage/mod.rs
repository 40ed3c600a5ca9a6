//! Durable storage: the file system behind a trait, a simulated disk for crash tests, and the
//! crc-checked write-ahead log with group commit.
//!
//! The queue manager will keep `<root>/msmq/storage/` with `wal/` segment files (this module),
//! an owner epoch and lock file, and a `sled` catalog (queue definitions). `docs/storage.md`
//! describes the format and why recovery is correct.

pub mod catalog;
pub mod disk;
pub mod full;
pub mod owner;
pub mod sim;
pub mod wal;

use std::path::{Path, PathBuf};

pub use catalog::{CatalogStore, MemCatalog, SledCatalog};
pub use disk::{Disk, DiskFile, FileDisk};
pub use full::FillableDisk;
pub use owner::{take_over, Ownership, OwnershipError};
pub use sim::SimDisk;
pub use wal::{Lsn, Record, Wal, WalError, WalOptions, WalReader, WalStats};

/// Where a queue manager keeps its storage under a root directory (MSMQ's layout).
pub fn storage_dir(root: &Path) -> PathBuf {
    root.join("msmq").join("storage")
}
