//! Cold reads: messages past the cache budget read back from the log by LSN, through a sparse
//! index, for the stores of one queue manager ([`crate::queue::cold::ColdSource`]).

use std::sync::{Arc, Mutex, PoisonError};

use super::record;
use super::record::{Op, Outcome, StoreRef};
use super::replay::family;
use crate::error::Result;
use crate::message::footprint;
use crate::message::Message;
use crate::queue::cold::{Cache, ColdSource};
use crate::queue::store::LookupId;
use crate::storage::wal::{Lsn, WalReader};

/// Reads cold messages back from the log for the stores of one queue manager, and holds their
/// shared cache budget.
pub(crate) struct LogSource {
    reader: WalReader,
    cache: Cache,
    /// The last large record decoded (a compaction rewrite holds thousands of messages, and
    /// refills read them a few hundred at a time).
    last: Mutex<Option<(Lsn, Arc<Vec<Op>>)>>,
}

impl std::fmt::Debug for LogSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSource")
            .field("cache", &self.cache)
            .finish()
    }
}

/// Records with more operations than this are kept decoded for the next read.
pub(super) const KEEP_DECODED: usize = 16;
/// Two wanted records at most this many LSNs apart are read in one pass.
pub(super) const READ_GAP: Lsn = 64;

impl LogSource {
    pub(crate) fn new(reader: WalReader, cache_bytes: u64) -> LogSource {
        LogSource {
            reader,
            cache: Cache::new(cache_bytes),
            last: Mutex::new(None),
        }
    }

    /// The operations of every COMMIT or PREPARE record from `from` to `to`.
    fn records(&self, from: Lsn, to: Lsn, mut f: impl FnMut(Lsn, &[Op])) -> Result<(), String> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if from == to {
            if let Some((lsn, ops)) = &*last {
                if *lsn == from {
                    f(from, ops);
                    return Ok(());
                }
            }
        }
        let mut failed = None;
        self.reader
            .read(from, to, |r| {
                let ops = match r.kind {
                    record::COMMIT => record::ops(&r.data),
                    record::PREPARE => {
                        record::decode::<Outcome>(&r.data).and_then(|(_, rest)| record::ops(rest))
                    }
                    _ => return true,
                };
                match ops {
                    Ok(ops) => {
                        f(r.lsn, &ops);
                        if ops.len() > KEEP_DECODED {
                            *last = Some((r.lsn, Arc::new(ops)));
                        }
                        true
                    }
                    Err(e) => {
                        failed = Some(format!("log record {} cannot be read: {e}", r.lsn));
                        false
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        failed.map_or(Ok(()), Err)
    }
}

impl ColdSource for LogSource {
    fn load(
        &self,
        at: &StoreRef,
        wanted: &[(Lsn, LookupId)],
        max_bytes: u64,
    ) -> Result<Vec<Box<Message>>, String> {
        let Some(&first) = wanted.first() else {
            return Ok(Vec::new());
        };
        let mut order = wanted.to_vec();
        order.sort_unstable();
        let fam = family(at);
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut found_first = false;
        let mut i = 0;
        while i < order.len() {
            let mut j = i;
            while j + 1 < order.len() && order[j + 1].0 - order[j].0 <= READ_GAP {
                j += 1;
            }
            let group = &order[i..=j];
            self.records(group[0].0, group[j - i].0, |lsn, ops| {
                for op in ops {
                    let Op::Put { at, msg } = op else { continue };
                    if family(at) != fam || group.binary_search(&(lsn, msg.lookup_id)).is_err() {
                        continue;
                    }
                    let mut msg = msg.clone();
                    msg.lsn = lsn;
                    found_first |= (lsn, msg.lookup_id) == first;
                    bytes += footprint(&msg);
                    out.push(msg);
                }
            })?;
            if found_first && bytes >= max_bytes {
                break;
            }
            i = j + 1;
        }
        // A wanted message missing from its record is the caller's to report: the others
        // found are good.
        Ok(out)
    }

    fn cache(&self) -> &Cache {
        &self.cache
    }
}
