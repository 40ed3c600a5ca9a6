//! Entry points for the coverage-guided fuzzers (`fuzz/`): what mqcore reads back from its own
//! disk, reachable without a disk or a running queue manager, so a fuzzer can feed it directly.
//! Not an API: hidden from the docs, and it may change with the fuzz targets.

use crate::error::Result;
use crate::manager::QueueManager;
use crate::storage::Record;

/// Replays log records in order, as recovery does after a crash: each record's payload decoded
/// and applied to the recovered state, then the state finished (in-doubt transactions, live
/// positions). A record that cannot be read is an error (`MQ_ERROR_MESSAGE_STORAGE_FAILED`),
/// never a panic.
pub fn replay(records: impl IntoIterator<Item = Record>) -> Result<()> {
    crate::persistence::replay_records(records)
}

/// Reads the Triggers service's rules and triggers from `qm`'s catalog, as the service's start
/// does; returns how many rules and triggers it kept.
pub fn trigger_definitions(qm: &QueueManager) -> Result<(usize, usize)> {
    crate::triggers::load_definitions(qm)
}
