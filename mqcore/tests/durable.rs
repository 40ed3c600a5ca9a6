//! A durable queue manager across restarts, crashes at every sync point, fencing and compaction.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::bodies;
use mqcore::storage::{take_over, MemCatalog, SimDisk};
use mqcore::{Delivery, ErrorCode, LookupAction, Message, Queue, QueueManager, QueueProps, Tx};

const NOW: Duration = Duration::ZERO;

/// A durable queue manager on `root` with 64 KiB segments, so that history fills segments fast.
fn open_small(root: &Path) -> QueueManager {
    QueueManager::builder()
        .segment_size(64 * 1024)
        .open(root)
        .unwrap()
}

fn tx_queue(qm: &QueueManager, name: &str) -> Queue {
    qm.create_queue(name, QueueProps::transactional()).unwrap()
}

/// Sends and receives `n` 1 KiB messages through `q`, one transaction each: history only.
/// Returns the last lookup id used.
fn churn(q: &Queue, n: usize) -> u64 {
    let body = Bytes::from(vec![7u8; 1024]);
    let mut last = 0;
    for _ in 0..n {
        q.send(Message::new(body.clone()), Tx::Single).unwrap();
        last = q
            .receive_by_lookup_id(LookupAction::Last, Tx::Single)
            .unwrap()
            .lookup_id();
    }
    last
}

fn recoverable(body: &str) -> Message {
    let mut m = Message::new(body.as_bytes().to_vec());
    m.delivery = Delivery::Recoverable;
    m
}

/// Every durable store's recoverable messages as (lookup id, body, move count, message id), in
/// queue order,
/// plus the prepared transactions without an outcome: what must survive a crash.
type Snapshot = (
    BTreeMap<String, Vec<(u64, String, u32, String)>>,
    Vec<String>,
);

fn snapshot(qm: &QueueManager, prepared: Vec<String>) -> Snapshot {
    let mut stores = Vec::new();
    for info in qm.queues() {
        let path = format!("DIRECT=OS:{}", info.path);
        stores.push(path.clone());
        stores.push(format!("{path};JOURNAL"));
        for sub in info.subqueues {
            stores.push(format!("{path};{sub}"));
        }
    }
    stores.push(r"DIRECT=OS:.\SYSTEM$;DEADXACT".to_owned());
    stores.push(r"DIRECT=OS:.\SYSTEM$;DEADLETTER".to_owned());
    let mut out = BTreeMap::new();
    for name in stores {
        let msgs: Vec<(u64, String, u32, String)> = qm
            .open(&name)
            .unwrap()
            .messages()
            .unwrap()
            .into_iter()
            .filter(|m| m.delivery == Delivery::Recoverable)
            .map(|m| {
                (
                    m.lookup_id(),
                    m.body_str().unwrap_or_default().to_owned(),
                    m.move_count(),
                    m.id().to_string(),
                )
            })
            .collect();
        if !msgs.is_empty() {
            out.insert(name.to_lowercase(), msgs);
        }
    }
    (out, prepared)
}

#[test]
fn committed_messages_survive_a_restart_and_express_ones_do_not() {
    let root = tempfile::tempdir().unwrap();
    let (lookups, guid) = {
        let qm = QueueManager::builder().open(root.path()).unwrap();
        let orders = tx_queue(&qm, r".\private$\orders");
        let props = QueueProps {
            journal: true,
            label: "plain".into(),
            ..QueueProps::default()
        };
        let plain = qm.create_queue(r".\private$\plain", props).unwrap();
        let tx = qm.begin();
        for i in 0..3 {
            orders
                .send(Message::new(format!("order {i}")), Tx::In(&tx))
                .unwrap();
        }
        tx.commit().unwrap();
        plain.send(recoverable("kept"), Tx::None).unwrap();
        plain.send(Message::new("express"), Tx::None).unwrap();
        plain.send(recoverable("received"), Tx::None).unwrap();
        let got = plain
            .receive_by_lookup_id(LookupAction::Last, Tx::None)
            .unwrap();
        assert_eq!(got.body_str(), Some("received"));
        let lookups: Vec<u64> = orders
            .messages()
            .unwrap()
            .iter()
            .map(|m| m.lookup_id())
            .collect();
        // Received under a transaction that never commits: back after the restart.
        let open_tx = qm.begin();
        orders.receive(NOW, Tx::In(&open_tx)).unwrap();
        std::mem::forget(open_tx);
        (lookups, qm.guid())
    };
    let qm = QueueManager::builder().open(root.path()).unwrap();
    assert_eq!(qm.guid(), guid, "the queue manager keeps its GUID");
    assert_eq!(
        bodies(&qm, r".\private$\orders"),
        ["order 0", "order 1", "order 2"]
    );
    assert_eq!(bodies(&qm, r".\private$\plain"), ["kept"]);
    assert_eq!(
        bodies(&qm, r"DIRECT=OS:.\private$\plain;JOURNAL"),
        ["received"]
    );
    let info = qm.queue_info(r".\private$\plain").unwrap();
    assert!(info.props.journal);
    assert_eq!(info.props.label, "plain");
    let orders = qm.open(r".\private$\orders").unwrap();
    let after: Vec<u64> = orders
        .messages()
        .unwrap()
        .iter()
        .map(|m| m.lookup_id())
        .collect();
    assert_eq!(after, lookups, "lookup ids survive a restart");
    let tx = qm.begin();
    orders.send(Message::new("order 3"), Tx::In(&tx)).unwrap();
    tx.commit().unwrap();
    let last = orders.peek_by_lookup_id(LookupAction::Last).unwrap();
    assert_eq!(last.body_str(), Some("order 3"));
    assert!(last.lookup_id() > lookups[2]);
}

#[test]
fn a_queue_manager_keeps_its_computer_name_with_its_guid() {
    let root = tempfile::tempdir().unwrap();
    let first = QueueManager::builder()
        .name("ORDERS")
        .open(root.path())
        .unwrap();
    let guid = first.guid();
    drop(first);
    // Opened without a name, it is still the computer it was.
    let again = QueueManager::builder().open(root.path()).unwrap();
    assert_eq!((again.name(), again.guid()), ("ORDERS", guid));
    again
        .create_queue(r"ORDERS\private$\q", QueueProps::default())
        .unwrap();
    drop(again);
    // Renamed, as a Windows computer can be: the new name stays.
    drop(
        QueueManager::builder()
            .name("sales")
            .open(root.path())
            .unwrap(),
    );
    let renamed = QueueManager::builder().open(root.path()).unwrap();
    assert_eq!((renamed.name(), renamed.guid()), ("sales", guid));
    assert!(renamed.open(r"sales\private$\q").is_ok());
    // A new directory opened without a name is localhost, and stays so.
    let fresh = tempfile::tempdir().unwrap();
    drop(QueueManager::builder().open(fresh.path()).unwrap());
    assert_eq!(
        QueueManager::builder().open(fresh.path()).unwrap().name(),
        "localhost"
    );
}

#[test]
fn a_second_opener_is_refused_while_the_first_holds_the_directory() {
    let root = tempfile::tempdir().unwrap();
    let qm = QueueManager::builder().open(root.path()).unwrap();
    let err = QueueManager::builder().open(root.path()).unwrap_err();
    assert_eq!(err.code(), ErrorCode::ServiceNotAvailable);
    assert!(err.to_string().contains("in use"), "{err}");
    drop(qm);
    QueueManager::builder().open(root.path()).unwrap();
}

#[test]
fn a_fenced_queue_manager_refuses_every_durable_step() {
    let root = tempfile::tempdir().unwrap();
    let qm = QueueManager::builder().open(root.path()).unwrap();
    let q = tx_queue(&qm, r".\private$\q");
    q.send(Message::new("before"), Tx::Single).unwrap();
    // Another node takes the storage over without the lock (its owner is unreachable).
    take_over(
        &mqcore::storage::FileDisk,
        &mqcore::storage::storage_dir(root.path()),
    )
    .unwrap();
    let err = q.send(Message::new("after"), Tx::Single).unwrap_err();
    assert_eq!(err.code(), ErrorCode::ServiceNotAvailable);
    let err = q.receive(NOW, Tx::Single).unwrap_err();
    assert_eq!(err.code(), ErrorCode::ServiceNotAvailable);
    // Catalog changes are fenced too.
    let err = qm
        .create_queue(r".\private$\new", QueueProps::default())
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::ServiceNotAvailable);
    let err = qm
        .set_queue_props(r".\private$\q", mqcore::QueueUpdate::default())
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::ServiceNotAvailable);
    let err = qm.delete_queue(r".\private$\q").unwrap_err();
    assert_eq!(err.code(), ErrorCode::ServiceNotAvailable);
    drop(q);
    drop(qm);
    let qm = QueueManager::builder().open(root.path()).unwrap();
    assert_eq!(bodies(&qm, r".\private$\q"), ["before"]);
}

#[test]
fn a_prepared_transaction_stays_in_doubt_until_the_coordinator_decides() {
    for commit in [true, false] {
        let root = tempfile::tempdir().unwrap();
        {
            let qm = QueueManager::builder().open(root.path()).unwrap();
            let a = tx_queue(&qm, r".\private$\a");
            let b = tx_queue(&qm, r".\private$\b");
            a.send(Message::new("a1"), Tx::Single).unwrap();
            a.send(Message::new("a2"), Tx::Single).unwrap();
            let tx = qm.begin_external("xid-7").unwrap();
            a.receive(NOW, Tx::In(&tx)).unwrap();
            b.send(Message::new("b1"), Tx::In(&tx)).unwrap();
            tx.prepare().unwrap();
            std::mem::forget(tx); // the process dies between prepare and the outcome
        }
        let qm = QueueManager::builder().open(root.path()).unwrap();
        assert_eq!(qm.in_doubt(), ["xid-7"]);
        // In doubt: a1 is locked, b1 is not visible yet.
        assert_eq!(bodies(&qm, r".\private$\a"), ["a2"]);
        assert_eq!(qm.queue_info(r".\private$\a").unwrap().message_count, 2);
        assert!(bodies(&qm, r".\private$\b").is_empty());
        qm.resolve_in_doubt("xid-7", commit).unwrap();
        assert!(qm.in_doubt().is_empty());
        let (a, b) = if commit {
            (vec!["a2"], vec!["b1"])
        } else {
            (vec!["a1", "a2"], vec![])
        };
        assert_eq!(bodies(&qm, r".\private$\a"), a);
        assert_eq!(bodies(&qm, r".\private$\b"), b);
        drop(qm);
        // The outcome itself is durable.
        let qm = QueueManager::builder().open(root.path()).unwrap();
        assert!(qm.in_doubt().is_empty());
        assert_eq!(bodies(&qm, r".\private$\a"), a);
        assert_eq!(bodies(&qm, r".\private$\b"), b);
    }
}

#[test]
fn compaction_deletes_history_and_lookup_ids_are_never_reused() {
    let root = tempfile::tempdir().unwrap();
    let last = {
        let qm = open_small(root.path());
        let q = tx_queue(&qm, r".\private$\q");
        let last = churn(&q, 1000);
        let (_, segments) = qm.log_stats().unwrap();
        assert!(
            segments <= 2,
            "history is compacted away as it goes: {segments} segments left"
        );
        last
    };
    let wal = mqcore::storage::storage_dir(root.path()).join("wal");
    assert!(std::fs::read_dir(&wal).unwrap().count() <= 2);
    let qm = QueueManager::builder().open(root.path()).unwrap();
    let q = qm.open(r".\private$\q").unwrap();
    assert!(q.is_empty().unwrap());
    q.send(Message::new("next"), Tx::Single).unwrap();
    assert!(q.peek(NOW).unwrap().lookup_id() > last);
}

#[test]
fn an_old_message_does_not_keep_history_alive() {
    let root = tempfile::tempdir().unwrap();
    {
        let qm = open_small(root.path());
        let old = tx_queue(&qm, r".\private$\old");
        old.send(Message::new("still here"), Tx::Single).unwrap();
        let q = tx_queue(&qm, r".\private$\q");
        churn(&q, 1000);
        let (_, segments) = qm.log_stats().unwrap();
        // About 1.1 MB of history went through 64 KiB segments; the live data is one message.
        assert!(segments <= 3, "{segments} segments left");
    }
    let qm = QueueManager::builder().open(root.path()).unwrap();
    assert_eq!(bodies(&qm, r".\private$\old"), ["still here"]);
    assert!(bodies(&qm, r".\private$\q").is_empty());
}

#[test]
fn a_deleted_queue_stays_deleted_and_its_messages_are_dead_lettered() {
    let root = tempfile::tempdir().unwrap();
    {
        let qm = QueueManager::builder().open(root.path()).unwrap();
        let q = tx_queue(&qm, r".\private$\gone");
        q.send(Message::new("orphan"), Tx::Single).unwrap();
        qm.delete_queue(r".\private$\gone").unwrap();
        tx_queue(&qm, r".\private$\gone");
    }
    let qm = QueueManager::builder().open(root.path()).unwrap();
    assert!(bodies(&qm, r".\private$\gone").is_empty());
    assert_eq!(bodies(&qm, r"DIRECT=OS:.\SYSTEM$;DEADXACT"), ["orphan"]);
}

fn storage() -> PathBuf {
    PathBuf::from("/vs1/msmq/storage")
}

/// A queue manager on the simulated disk with 1 KiB segments and a cache of `cache` bytes.
fn open_sim(disk: &SimDisk, catalog: &MemCatalog, cache: u64) -> mqcore::Result<QueueManager> {
    QueueManager::builder()
        .segment_size(1024)
        .cache_size(cache)
        .guid(uuid::Uuid::from_u128(7))
        .open_with(
            Arc::new(disk.clone()),
            &storage(),
            Arc::new(catalog.clone()),
        )
}

/// A message whose 200-character label makes the workload span several log segments.
fn padded(body: String) -> Message {
    Message::new(body.into_bytes()).with_label("x".repeat(200))
}

fn padded_recoverable(body: String) -> Message {
    let mut m = padded(body);
    m.delivery = Delivery::Recoverable;
    m
}

/// The mixed workload: three queues, a journal, transactional sends and receives, aborts,
/// non-transactional recoverable traffic, subqueue moves, a rejection into the transactional
/// dead-letter queue, a prepared two-phase transaction resolved later, a purge and a deletion.
/// `step` is called after every step with whether it succeeded and the prepared transaction
/// waiting for its outcome; the workload stops at the first failure (the crash).
fn workload(qm: &QueueManager, mut step: impl FnMut(&QueueManager, bool, Vec<String>)) {
    let mut journaled = QueueProps::transactional();
    journaled.journal = true;
    let a = qm.create_queue(r".\private$\a", journaled).unwrap();
    let b = tx_queue(qm, r".\private$\b");
    let c = qm
        .create_queue(r".\private$\c", QueueProps::default())
        .unwrap();
    let poison = qm.open(r".\private$\a;poison").unwrap();
    let retry = qm.open(r".\private$\a;retry").unwrap();
    let mut in_doubt: Option<mqcore::Transaction> = None;
    macro_rules! run {
        ($e:expr) => {
            let ok = (|| -> mqcore::Result<()> {
                $e;
                Ok(())
            })()
            .is_ok();
            let prepared = in_doubt.iter().map(|t| t.xid().to_owned()).collect();
            step(qm, ok, prepared);
            if !ok {
                return;
            }
        };
    }
    for round in 0..3 {
        run!({
            let tx = qm.begin();
            for i in 0..4 {
                a.send(padded(format!("a{round}.{i}")), Tx::In(&tx))?;
            }
            tx.commit()?
        });
        for i in 0..2 {
            run!(b.send(padded(format!("b{round}.{i}")), Tx::Single)?);
        }
        run!(c.send(padded_recoverable(format!("c{round}")), Tx::None)?);
        run!({
            let tx = qm.begin();
            a.receive(NOW, Tx::In(&tx))?;
            a.receive(NOW, Tx::In(&tx))?;
            b.send(padded(format!("b{round}.moved")), Tx::In(&tx))?;
            tx.commit()?
        });
        run!({
            let tx = qm.begin();
            b.receive(NOW, Tx::In(&tx))?;
            tx.abort()
        });
        run!({
            let head = a.peek(NOW)?.lookup_id();
            a.move_message(head, &poison, Tx::None)?
        });
        run!({
            let tx = qm.begin();
            let head = a.peek(NOW)?.lookup_id();
            a.move_message(head, &retry, Tx::In(&tx))?;
            tx.commit()?
        });
        run!({
            let head = poison.peek(NOW)?.lookup_id();
            poison.reject(head)?
        });
        if let Some(tx) = in_doubt.take() {
            run!(tx.commit()?);
        }
        run!({
            let tx = qm.begin_external(format!("xid-{round}"))?;
            b.receive(NOW, Tx::In(&tx))?;
            a.send(padded(format!("a{round}.2pc")), Tx::In(&tx))?;
            tx.prepare()?;
            in_doubt = Some(tx)
        });
        run!(c.receive(NOW, Tx::None).map(drop)?);
        run!(retry.receive(NOW, Tx::Single).map(drop)?);
        // Churn, so that old segments fill with history and compaction rewrites what is live.
        for i in 0..8 {
            run!(c.send(padded_recoverable(format!("churn{i}")), Tx::None)?);
            run!(c
                .receive_by_lookup_id(LookupAction::Last, Tx::None)
                .map(drop)?);
        }
    }
    run!(c.send(padded_recoverable("c.last".into()), Tx::None)?);
    run!(c.purge().map(drop)?);
    run!(qm.delete_queue(r".\private$\c")?);
    if let Some(tx) = in_doubt.take() {
        run!(tx.commit()?);
    }
}

fn all_lookups(s: &Snapshot) -> BTreeMap<String, u64> {
    s.0.iter()
        .map(|(k, v)| (k.clone(), v.iter().map(|m| m.0).max().unwrap_or(0)))
        .collect()
}

#[test]
fn every_sync_point_recovers_exactly_the_acknowledged_steps() {
    sweep_sync_points(64 * 1024 * 1024);
}

/// The same with no cache: every message that may leave memory does, and is read back from the
/// log by receives, moves, compaction and recovery.
#[test]
fn every_sync_point_recovers_messages_kept_only_in_the_log() {
    sweep_sync_points(0);
}

fn sweep_sync_points(cache: u64) {
    // The reference: the queue manager's own durable state after each acknowledged step, on a
    // disk that never fails.
    let disk = SimDisk::new();
    let catalog = MemCatalog::new();
    let qm = open_sim(&disk, &catalog, cache).unwrap();
    let mut reference = vec![snapshot(&qm, Vec::new())];
    let mut most_cold = 0;
    workload(&qm, |qm, ok, prepared| {
        assert!(ok, "the workload runs clean on a disk that does not fail");
        most_cold = most_cold.max(qm.cache_stats().cold_messages);
        reference.push(snapshot(qm, prepared));
    });
    assert_eq!(
        most_cold > 0,
        cache == 0,
        "messages leave memory exactly when the cache is empty ({most_cold} did)"
    );
    let total_syncs = disk.syncs();
    let first_segment = storage().join("wal").join(format!("{:016x}.wal", 1));
    assert!(
        disk.read_file(&first_segment).is_none(),
        "compaction deleted the first segment"
    );
    drop(qm);
    assert!(reference.len() > 40, "{} steps", reference.len());
    let mut crashes = 0;
    for n in 0..total_syncs {
        let disk = SimDisk::new();
        let catalog = MemCatalog::new();
        disk.fail_after_syncs(n);
        let mut acknowledged = 0;
        if let Ok(qm) = open_sim(&disk, &catalog, cache) {
            workload(&qm, |_, ok, _| acknowledged += usize::from(ok));
        }
        if !disk.has_crashed() {
            continue;
        }
        crashes += 1;
        for torn in [false, true] {
            let image = disk.crash_image(|_, unsynced| if torn { unsynced / 2 } else { 0 });
            let context =
                format!("crash at sync {n} (torn {torn}), {acknowledged} steps acknowledged");
            let qm = open_sim(&image, &catalog, cache).unwrap_or_else(|e| panic!("{context}: {e}"));
            // Every lookup id anyone could have seen before the crash.
            let mut max_lookup: BTreeMap<String, u64> = BTreeMap::new();
            for s in &reference[..=acknowledged] {
                for (k, v) in all_lookups(s) {
                    let e = max_lookup.entry(k).or_default();
                    *e = (*e).max(v);
                }
            }
            let recovered = snapshot(&qm, qm.in_doubt());
            assert_eq!(recovered, reference[acknowledged], "{context}");
            // Ids go on from where they were: a new message gets a lookup id above every one
            // its queue ever handed out.
            if qm.open(r".\private$\a").is_ok() {
                let a = qm.open(r".\private$\a").unwrap();
                let xids = qm.in_doubt();
                for xid in xids {
                    qm.resolve_in_doubt(&xid, true).unwrap();
                }
                a.send(Message::new("after"), Tx::Single).unwrap();
                let after = a.peek_by_lookup_id(LookupAction::Last).unwrap();
                // Lookup ids of a queue are shared with its subqueues.
                let before = max_lookup
                    .iter()
                    .filter(|(k, _)| k.contains(r"private$\a") && !k.ends_with(";journal"))
                    .map(|(_, v)| *v)
                    .max();
                assert!(
                    after.lookup_id() > before.unwrap_or(0),
                    "{context}: new lookup id {} after {before:?}",
                    after.lookup_id()
                );
            }
        }
    }
    eprintln!(
        "{} steps, {total_syncs} sync points, {crashes} crash images checked twice",
        reference.len() - 1
    );
    assert!(
        crashes as u64 >= total_syncs / 2,
        "{crashes} crashes in {total_syncs} sync points"
    );
}

#[test]
fn a_received_message_sent_again_as_express_is_a_new_message() {
    let root = tempfile::tempdir().unwrap();
    {
        let qm = open_small(root.path());
        let t = tx_queue(&qm, r".\private$\t");
        let q = qm
            .create_queue(r".\private$\q", QueueProps::default())
            .unwrap();
        // "a" and "b" share one log record.
        let tx = qm.begin();
        t.send(Message::new("a"), Tx::In(&tx)).unwrap();
        t.send(Message::new("b"), Tx::In(&tx)).unwrap();
        tx.commit().unwrap();
        let mut a = t.receive(NOW, Tx::Single).unwrap();
        a.delivery = Delivery::Express; // never on disk
        q.send(a, Tx::None).unwrap();
        q.receive(NOW, Tx::None).unwrap();
        // History enough for compaction to delete every segment nothing live needs.
        churn(&t, 500);
    }
    let qm = QueueManager::builder().open(root.path()).unwrap();
    assert_eq!(bodies(&qm, r".\private$\t"), ["b"]);
    assert!(bodies(&qm, r".\private$\q").is_empty());
}

#[test]
fn message_ids_of_an_in_doubt_transaction_are_not_given_again() {
    let root = tempfile::tempdir().unwrap();
    let prepared_id = {
        let qm = QueueManager::builder().open(root.path()).unwrap();
        let q = tx_queue(&qm, r".\private$\q");
        let tx = qm.begin_external("xid-1").unwrap();
        let id = q.send(Message::new("in doubt"), Tx::In(&tx)).unwrap();
        tx.prepare().unwrap();
        std::mem::forget(tx);
        id
    };
    let qm = QueueManager::builder().open(root.path()).unwrap();
    let q = qm.open(r".\private$\q").unwrap();
    let next = q.send(Message::new("after"), Tx::Single).unwrap();
    assert_ne!(next, prepared_id);
    qm.resolve_in_doubt("xid-1", true).unwrap();
    let ids: Vec<_> = q.messages().unwrap().iter().map(|m| m.id()).collect();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
}

#[test]
fn a_dead_letter_decided_at_prepare_survives_in_doubt_recovery() {
    let root = tempfile::tempdir().unwrap();
    {
        let clock = mqcore::ManualClock::new();
        let qm = QueueManager::builder()
            .clock(Arc::new(clock.clone()))
            .open(root.path())
            .unwrap();
        let q = tx_queue(&qm, r".\private$\q");
        let tx = qm.begin_external("xid-ttrq").unwrap();
        let mut m = Message::new("too late");
        m.time_to_reach_queue = Some(Duration::from_secs(1));
        q.send(m, Tx::In(&tx)).unwrap();
        clock.advance(Duration::from_secs(2));
        tx.prepare().unwrap();
        std::mem::forget(tx);
    }
    let qm = QueueManager::builder().open(root.path()).unwrap();
    qm.resolve_in_doubt("xid-ttrq", true).unwrap();
    assert!(bodies(&qm, r".\private$\q").is_empty());
    assert_eq!(bodies(&qm, r"DIRECT=OS:.\SYSTEM$;DEADXACT"), ["too late"]);
}

#[test]
fn an_xid_names_one_unfinished_transaction() {
    let root = tempfile::tempdir().unwrap();
    {
        let qm = QueueManager::builder().open(root.path()).unwrap();
        let q = tx_queue(&qm, r".\private$\q");
        let tx = qm.begin_external("xid-9").unwrap();
        let err = qm.begin_external("xid-9").unwrap_err();
        assert_eq!(err.code(), ErrorCode::TransactionUsage);
        q.send(Message::new("one"), Tx::In(&tx)).unwrap();
        tx.prepare().unwrap();
        std::mem::forget(tx);
    }
    let qm = QueueManager::builder().open(root.path()).unwrap();
    let err = qm.begin_external("xid-9").unwrap_err();
    assert_eq!(err.code(), ErrorCode::TransactionUsage, "in doubt");
    qm.resolve_in_doubt("xid-9", true).unwrap();
    let tx = qm.begin_external("xid-9").unwrap();
    tx.abort();
    assert_eq!(bodies(&qm, r".\private$\q"), ["one"]);
}

/// A full disk: commits fail with MQ_ERROR_INSUFFICIENT_RESOURCES (what Windows answers when
/// storage runs out), the queue manager says why, nothing unacknowledged appears, and everything
/// acknowledged before is there once the queue manager is opened again with space.
#[test]
fn a_full_disk_refuses_commits_with_insufficient_resources_and_loses_nothing_acknowledged() {
    use mqcore::storage::{FileDisk, FillableDisk};

    let root = tempfile::tempdir().unwrap();
    let disk = FillableDisk::new(Arc::new(FileDisk));
    let open = || {
        QueueManager::builder()
            .disk(Arc::new(disk.clone()))
            .open(root.path())
            .unwrap()
    };
    let qm = open();
    let q = tx_queue(&qm, r".\private$\orders");
    q.send(recoverable("kept"), Tx::Single).unwrap();
    assert!(qm.storage_failure().is_none());

    disk.fill();
    let e = q.send(recoverable("lost"), Tx::Single).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InsufficientResources, "{e}");
    let e = q.send(recoverable("after"), Tx::Single).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InsufficientResources, "{e}");
    assert_eq!(
        qm.storage_failure().map(|e| e.code()),
        Some(ErrorCode::InsufficientResources)
    );
    drop(q);
    drop(qm);

    disk.free();
    let qm = open();
    assert!(qm.storage_failure().is_none());
    assert_eq!(bodies(&qm, r".\private$\orders"), ["kept"]);
    let q = qm.open(r".\private$\orders").unwrap();
    q.send(recoverable("again"), Tx::Single).unwrap();
    assert_eq!(bodies(&qm, r".\private$\orders"), ["kept", "again"]);
}

/// Found by the `catalog` fuzz target: a stored computer name that is not one opened, and every
/// queue then listed under a path that did not parse back. It is refused as a damaged catalog.
#[test]
fn a_stored_computer_name_that_is_not_one_is_a_damaged_catalog() {
    use mqcore::storage::CatalogStore;
    for bad in [&b"host\\private$\\x"[..], b"a\0b", b"\xff\xfe"] {
        let catalog = MemCatalog::new();
        catalog.put("meta/name", bad).unwrap();
        let disk = Arc::new(SimDisk::new());
        let e = QueueManager::builder()
            .open_with(disk, Path::new("/qm"), Arc::new(catalog))
            .expect_err("refused");
        assert_eq!(e.code(), ErrorCode::MessageStorageFailed, "{e}");
    }
}

/// Found by the `catalog` fuzz target: a queue definition with an empty name opened, and the
/// queue was listed but could not be opened. A stored queue name must be one.
#[test]
fn a_stored_queue_name_that_is_not_one_is_a_damaged_catalog() {
    let catalog = Arc::new(MemCatalog::new());
    let disk = Arc::new(SimDisk::new());
    {
        let qm = QueueManager::builder()
            .open_with(disk.clone(), Path::new("/qm"), catalog.clone())
            .unwrap();
        qm.create_queue(r".\private$\orders", QueueProps::default())
            .unwrap();
    }
    use mqcore::storage::CatalogStore;
    let (key, value) = catalog.scan("queue/").unwrap().remove(0);
    let renamed = {
        // The definition's name is a length-prefixed string: `orders` -> `\orde` (a separator).
        let at = value.windows(6).position(|w| w == b"orders").unwrap();
        let mut v = value.clone();
        v[at..at + 6].copy_from_slice(b"\\orde\\");
        v
    };
    catalog.put(&key, &renamed).unwrap();
    let e = QueueManager::builder()
        .open_with(disk, Path::new("/qm"), catalog)
        .expect_err("refused");
    assert_eq!(e.code(), ErrorCode::MessageStorageFailed, "{e}");
}

/// Found in review: a given computer name that is not one was saved on the first open, and every
/// open after refused the catalog as damaged. It is refused when given.
#[test]
fn a_given_computer_name_that_is_not_one_is_refused_when_given() {
    let e = QueueManager::builder()
        .name(r"host\private$\x")
        .open_with(
            Arc::new(SimDisk::new()),
            Path::new("/qm"),
            Arc::new(MemCatalog::new()),
        )
        .expect_err("refused");
    assert_eq!(e.code(), ErrorCode::InvalidParameter, "{e}");
}
