//! Transactions held between HTTP requests: begun by one request, used by sends and receives
//! that name their id, ended by a commit or an abort, or aborted when their time limit passes.
//!
//! **Invariant:** a transaction is used only by the caller who began it, and one that outlives
//! its time limit aborts (the messages it received go back to their queues), so a client that
//! goes away never holds messages for ever.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use mqcore::{Error, ErrorCode, QueueManager, Transaction};

use super::AppState;
use crate::auth::Principal;

struct Entry {
    tx: Arc<Transaction>,
    deadline: Instant,
    owner: String,
}

#[derive(Default)]
struct Open {
    next: u64,
    by_id: HashMap<u64, Entry>,
}

/// The transactions open over HTTP.
pub(crate) struct Transactions {
    open: Mutex<Open>,
    max: usize,
}

fn unknown(id: u64) -> Error {
    Error::new(
        ErrorCode::InvalidHandle,
        format!("there is no open transaction {id} (committed, aborted, or past its time limit)"),
    )
}

impl Transactions {
    pub(crate) fn new(max: usize) -> Transactions {
        Transactions {
            open: Mutex::default(),
            max,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Begins a transaction for `caller` that aborts after `limit`; returns its id.
    pub(crate) fn begin(
        &self,
        qm: &QueueManager,
        limit: Duration,
        caller: &Principal,
    ) -> Result<(u64, Instant), Error> {
        let mut open = self.lock();
        if open.by_id.len() >= self.max {
            return Err(Error::new(
                ErrorCode::InsufficientResources,
                format!(
                    "{} transactions are open over HTTP, the most this server allows; commit or abort some",
                    self.max
                ),
            ));
        }
        open.next += 1;
        let id = open.next;
        let deadline = Instant::now() + limit;
        open.by_id.insert(
            id,
            Entry {
                tx: Arc::new(qm.begin()),
                deadline,
                owner: caller.name().to_owned(),
            },
        );
        Ok((id, deadline))
    }

    /// The transaction `id`, for a send or receive under it.
    pub(crate) fn get(&self, id: u64, caller: &Principal) -> Result<Arc<Transaction>, Error> {
        let open = self.lock();
        match open.by_id.get(&id) {
            Some(e) if e.owner == caller.name() && e.deadline > Instant::now() => Ok(e.tx.clone()),
            _ => Err(unknown(id)),
        }
    }

    /// Takes the transaction `id` out to end it. Refused while a request under it is still
    /// running (a receive waiting for a message), which keeps it open.
    pub(crate) fn take(&self, id: u64, caller: &Principal) -> Result<Transaction, Error> {
        let mut open = self.lock();
        match open.by_id.get(&id) {
            Some(e) if e.owner == caller.name() && e.deadline > Instant::now() => {}
            _ => return Err(unknown(id)),
        }
        let e = open.by_id.remove(&id).expect("looked up just now");
        match Arc::try_unwrap(e.tx) {
            Ok(tx) => Ok(tx),
            Err(tx) => {
                open.by_id.insert(id, Entry { tx, ..e });
                Err(Error::new(
                    ErrorCode::TransactionSequence,
                    format!("a request under transaction {id} is still running; end it after that request answers"),
                ))
            }
        }
    }

    /// Aborts the transactions past their time limit (one still used by a running request
    /// aborts when that request ends). Returns how many.
    pub(crate) fn expire(&self, now: Instant) -> usize {
        let expired: Vec<Entry> = {
            let mut open = self.lock();
            let ids: Vec<u64> = open
                .by_id
                .iter()
                .filter(|(_, e)| e.deadline <= now)
                .map(|(&id, _)| id)
                .collect();
            ids.iter().filter_map(|id| open.by_id.remove(id)).collect()
        };
        let n = expired.len();
        for e in expired {
            if let Ok(tx) = Arc::try_unwrap(e.tx) {
                tx.abort();
            }
        }
        n
    }

    /// Aborts every open transaction (the listener is stopping).
    pub(crate) fn abort_all(&self) {
        let all: Vec<Entry> = self.lock().by_id.drain().map(|(_, e)| e).collect();
        for e in all {
            if let Ok(tx) = Arc::try_unwrap(e.tx) {
                tx.abort();
            }
        }
    }

    /// How many are open.
    pub(crate) fn len(&self) -> usize {
        self.lock().by_id.len()
    }
}

/// Aborts expired transactions every 250 ms while the listener runs.
pub(crate) async fn reap(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let n = state.txs.expire(Instant::now());
        if n > 0 {
            tracing::info!(
                aborted = n,
                "HTTP transactions past their time limit aborted"
            );
        }
    }
}
