//! Durable storage: the file system behind a trait, a simulated disk for crash tests, and the
//! crc-checked write-ahead log with group commit.
//!
//! The queue manager will keep `<root>/msmq/storage/` with `wal/` segment files (this module),
//! an owner epoch and lock file, and a `sled` catalog (queue definitions). `docs/storage.md`
//! describes the format and why recovery is correct.

pub mod catalog;
pub mod disk;
pub(crate) mod durable;
pub mod owner;
pub(crate) mod record;
pub mod sim;
pub mod wal;

pub use catalog::{CatalogStore, MemCatalog, SledCatalog};
pub use disk::{Disk, DiskFile, FileDisk};
pub use durable::storage_dir;
pub use owner::{take_over, Ownership, OwnershipError};
pub use sim::SimDisk;
pub use wal::{Lsn, Record, Wal, WalError, WalOptions, WalReader, WalStats};
