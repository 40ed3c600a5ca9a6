//! The write-ahead log under crashes at every sync point, torn and corrupt tails, fencing, segment
//! rolls and concurrent committers.

use std::any::Any;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

use mqcore::storage::wal::LeaseCheck;
use mqcore::storage::{Disk, DiskFile, FileDisk, Record, SimDisk, Wal, WalError, WalOptions};
use tempfile::TempDir;

fn dir() -> PathBuf {
    PathBuf::from("/store/wal")
}

fn fixed_epoch(epoch: u64) -> mqcore::storage::wal::EpochCheck {
    Box::new(move || Ok(epoch))
}

fn open(disk: &SimDisk, segment_size: u64) -> Result<(Wal, Vec<Record>), WalError> {
    open_checked(disk, segment_size, fixed_epoch(1))
}

/// [`open`] as the owner of epoch 1, reading the disk's epoch through `check`.
fn open_checked(
    disk: &SimDisk,
    segment_size: u64,
    check: mqcore::storage::wal::EpochCheck,
) -> Result<(Wal, Vec<Record>), WalError> {
    let disk: Arc<dyn Disk> = Arc::new(disk.clone());
    Wal::open(
        disk,
        &dir(),
        1,
        check,
        WalOptions {
            segment_size,
            ..WalOptions::default()
        },
    )
}

/// The payload of the i-th record of the workload: sizes vary so batches straddle segments.
fn payload(i: u64) -> Vec<u8> {
    let len = 1 + (i * 37 % 300) as usize;
    (0..len).map(|j| (i as usize + j) as u8).collect()
}

/// Appends records 1..=n, stopping at the first error; returns how many were acknowledged.
fn workload(wal: &Wal, n: u64) -> u64 {
    for i in 1..=n {
        if wal.append(7, &payload(i)).is_err() {
            return i - 1;
        }
    }
    n
}

/// Checks a recovered log: a prefix of the workload, holding at least every acknowledged record,
/// nothing invented, LSNs consecutive from 1.
fn check(recovered: &[Record], acknowledged: u64, attempted: u64, context: &str) {
    assert!(
        recovered.len() as u64 >= acknowledged,
        "{context}: {acknowledged} acknowledged, {} recovered",
        recovered.len()
    );
    assert!(
        recovered.len() as u64 <= attempted,
        "{context}: invented records"
    );
    for (i, r) in recovered.iter().enumerate() {
        let i = i as u64 + 1;
        assert_eq!(r.lsn, i, "{context}");
        assert_eq!(r.kind, 7, "{context}");
        assert_eq!(r.data, payload(i), "{context}: record {i}");
    }
}

#[test]
fn every_sync_point_recovers_every_acknowledged_record() {
    const N: u64 = 60;
    const SEGMENT: u64 = 2048; // small: the workload rolls over several segments
                               // Pass 1: count the syncs of the whole workload.
    let counting = SimDisk::new();
    let (wal, _) = open(&counting, SEGMENT).unwrap();
    assert_eq!(workload(&wal, N), N);
    drop(wal);
    let total = counting.syncs();
    assert!(total > N / 2, "the workload syncs ({total})");
    // Pass 2: crash at every sync point, with clean and torn unsynced tails.
    for n in 0..=total {
        let disk = SimDisk::new();
        disk.fail_after_syncs(n);
        let acknowledged = match open(&disk, SEGMENT) {
            Ok((wal, recovered)) => {
                assert!(recovered.is_empty());
                workload(&wal, N)
            }
            Err(_) => 0,
        };
        for (label, torn) in [("clean", 0usize), ("torn", 1)] {
            let image = disk.crash_image(|_, unsynced| if torn == 0 { 0 } else { unsynced / 2 });
            let context = format!("crash after sync {n} ({label})");
            let (wal, recovered) =
                open(&image, SEGMENT).unwrap_or_else(|e| panic!("{context}: {e}"));
            check(&recovered, acknowledged, N, &context);
            // The log goes on from where it stopped.
            let next = recovered.len() as u64 + 1;
            assert_eq!(wal.append(7, &payload(next)).unwrap(), next, "{context}");
            drop(wal);
            let (_, again) = open(&image, SEGMENT).unwrap();
            check(&again, next, next, &format!("{context}, reopened"));
        }
    }
}

fn only_segment(disk: &SimDisk) -> PathBuf {
    let files = disk.list(&dir()).unwrap();
    assert_eq!(files.len(), 1);
    files[0].clone()
}

/// Byte offset where record `i` (1-based) starts in a single-segment log of the workload.
fn record_offset(i: u64) -> usize {
    32 + (1..i).map(|k| 8 + 17 + payload(k).len()).sum::<usize>()
}

#[test]
fn torn_tails_are_dropped() {
    for cut in [1usize, 7, 8, 20, 40] {
        let disk = SimDisk::new();
        let (wal, _) = open(&disk, 1 << 20).unwrap();
        workload(&wal, 10);
        drop(wal);
        let seg = only_segment(&disk);
        // Cut record 10 short: as if its write never finished.
        disk.truncate(
            &seg,
            record_offset(10) + cut.min(8 + 17 + payload(10).len() - 1),
        );
        let (wal, recovered) = open(&disk, 1 << 20).unwrap();
        check(&recovered, 9, 9, &format!("cut {cut}"));
        assert_eq!(wal.append(7, &payload(10)).unwrap(), 10);
    }
    // Garbage after the last record.
    let disk = SimDisk::new();
    let (wal, _) = open(&disk, 1 << 20).unwrap();
    workload(&wal, 5);
    drop(wal);
    let seg = only_segment(&disk);
    disk.corrupt(&seg, record_offset(6), &[0xAB; 100]);
    let (_, recovered) = open(&disk, 1 << 20).unwrap();
    check(&recovered, 5, 5, "garbage appended");
    assert_eq!(
        &disk.read_file(&seg).unwrap()[record_offset(6)..record_offset(6) + 100],
        &[0; 100],
        "zeroed"
    );
}

#[test]
fn corruption_before_the_tail_refuses_to_open_naming_file_and_offset() {
    let disk = SimDisk::new();
    let (wal, _) = open(&disk, 1 << 20).unwrap();
    workload(&wal, 10);
    drop(wal);
    let seg = only_segment(&disk);
    let at = record_offset(4) + 20; // inside record 4's data
    let byte = disk.read_file(&seg).unwrap()[at];
    disk.corrupt(&seg, at, &[byte ^ 0x10]);
    match open(&disk, 1 << 20) {
        Err(WalError::Corrupt { file, offset, why }) => {
            assert_eq!(file, seg);
            assert_eq!(offset, record_offset(4) as u64);
            assert!(why.contains("crc32"), "{why}");
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("opened a log with a corrupt record before its tail"),
    }
}

#[test]
fn a_fenced_writer_writes_nothing_and_fails_every_commit() {
    let disk = SimDisk::new();
    let on_disk = Arc::new(AtomicU64::new(1));
    let check = {
        let on_disk = on_disk.clone();
        Box::new(move || Ok(on_disk.load(Ordering::SeqCst)))
    };
    let (wal, _) = open_checked(&disk, 1 << 20, check).unwrap();
    wal.append(1, b"before").unwrap();
    on_disk.store(2, Ordering::SeqCst); // another node took over
    let before = disk.read_file(&only_segment(&disk)).unwrap();
    for _ in 0..2 {
        match wal.append(1, b"after") {
            Err(WalError::Fenced { ours: 1, theirs: 2 }) => {}
            other => panic!("expected Fenced, got {other:?}"),
        }
    }
    assert_eq!(
        disk.read_file(&only_segment(&disk)).unwrap(),
        before,
        "nothing written"
    );
    drop(wal);
    let (_, recovered) = open(&disk, 1 << 20).unwrap();
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].epoch, 1);
}

/// A takeover between a batch's epoch check and its acknowledgement (the challenger raised the
/// epoch, then copied the log, while the batch was being written and synced): the batch is not
/// acknowledged, since the copy may not hold it. With no lease (Pacemaker without STONITH) this
/// check is what keeps a stale owner from acknowledging a batch the new owner never sees.
#[test]
fn a_takeover_during_a_batch_leaves_it_unacknowledged() {
    let disk = SimDisk::new();
    // Counts the epoch checks once armed: the batch's check before its write sees our epoch,
    // the one after its sync sees the challenger's.
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let checks = Arc::new(AtomicU64::new(0));
    let check = {
        let (armed, checks) = (armed.clone(), checks.clone());
        Box::new(move || {
            let late = armed.load(Ordering::SeqCst) && checks.fetch_add(1, Ordering::SeqCst) > 0;
            Ok(if late { 2 } else { 1 })
        })
    };
    let (wal, _) = open_checked(&disk, 1 << 20, check).unwrap();
    armed.store(true, Ordering::SeqCst);
    match wal.append(1, b"during") {
        Err(WalError::Fenced { ours: 1, theirs: 2 }) => {}
        other => panic!("expected Fenced, got {other:?}"),
    }
}

/// A lease that runs out while a batch is being synced: the batch is on disk, but its committer
/// is not told it is durable, and nothing is written after it.
#[test]
fn a_writer_whose_lease_ran_out_acknowledges_nothing_more() {
    let disk = SimDisk::new();
    // Asked before and after each batch: the first batch sees it valid twice, the second
    // batch once before its write and no more after its sync.
    let asked = Arc::new(AtomicU64::new(0));
    let lease = {
        let asked = asked.clone();
        LeaseCheck(Arc::new(move || asked.fetch_add(1, Ordering::SeqCst) < 3))
    };
    let shared: Arc<dyn Disk> = Arc::new(disk.clone());
    let (wal, _) = Wal::open(
        shared,
        &dir(),
        1,
        fixed_epoch(1),
        WalOptions {
            segment_size: 1 << 20,
            lease: Some(lease),
        },
    )
    .unwrap();
    wal.append(1, b"acknowledged").unwrap();
    match wal.append(1, b"synced, never acknowledged") {
        Err(WalError::LeaseLost) => {}
        other => panic!("expected LeaseLost, got {other:?}"),
    }
    let after_lapse = disk.read_file(&only_segment(&disk)).unwrap();
    match wal.append(1, b"never written") {
        Err(WalError::LeaseLost) => {}
        other => panic!("expected LeaseLost, got {other:?}"),
    }
    assert_eq!(disk.read_file(&only_segment(&disk)).unwrap(), after_lapse);
    drop(wal);
    let (_, recovered) = open(&disk, 1 << 20).unwrap();
    let data: Vec<&[u8]> = recovered.iter().map(|r| &r.data[..]).collect();
    assert_eq!(data, [&b"acknowledged"[..], b"synced, never acknowledged"]);
}

/// What a [`Gate`] has seen of the files of its disk.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Io {
    /// `write_at` calls.
    writes: u64,
    /// `sync_data` calls that went through to the disk.
    syncs: u64,
}

#[derive(Default)]
struct GateState {
    /// While closed, every `sync_data` waits at the gate.
    closed: bool,
    /// Syncs waiting at the gate now.
    held: usize,
    io: Io,
}

/// Counts the writes and syncs of a disk's files, and can hold their syncs until it is opened:
/// a test stops the log writer inside an `fdatasync` and lets committers pile up behind it.
#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap()
    }

    fn close(&self) {
        self.lock().closed = true;
    }

    fn open(&self) {
        self.lock().closed = false;
        self.changed.notify_all();
    }

    /// Returns once a sync waits at the (closed) gate.
    fn wait_until_held(&self) {
        let mut s = self.lock();
        while s.held == 0 {
            s = self.changed.wait(s).unwrap();
        }
    }

    fn io(&self) -> Io {
        self.lock().io
    }
}

/// A disk whose files report to a [`Gate`].
struct GatedDisk {
    inner: Arc<dyn Disk>,
    gate: Arc<Gate>,
}

struct GatedFile {
    inner: Box<dyn DiskFile>,
    gate: Arc<Gate>,
}

impl DiskFile for GatedFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.gate.lock().io.writes += 1;
        self.inner.write_at(buf, offset)
    }

    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn sync_data(&self) -> io::Result<()> {
        {
            let mut s = self.gate.lock();
            if s.closed {
                s.held += 1;
                self.gate.changed.notify_all();
                while s.closed {
                    s = self.gate.changed.wait(s).unwrap();
                }
                s.held -= 1;
            }
            s.io.syncs += 1;
        }
        self.inner.sync_data()
    }
}

impl Disk for GatedDisk {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Box<dyn DiskFile>> {
        Ok(Box::new(GatedFile {
            inner: self.inner.open(path, create)?,
            gate: self.gate.clone(),
        }))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        self.inner.list(dir)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.inner.remove(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(dir)
    }

    fn lock_exclusive(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>> {
        self.inner.lock_exclusive(path)
    }

    fn background_io(&self) -> bool {
        self.inner.background_io()
    }
}

#[test]
fn concurrent_committers_share_syncs_on_a_real_disk() {
    const WAITING: u64 = 16;
    let root = TempDir::new().unwrap();
    let gate = Arc::new(Gate::default());
    let disk: Arc<dyn Disk> = Arc::new(GatedDisk {
        inner: Arc::new(FileDisk),
        gate: gate.clone(),
    });
    let (wal, _) = Wal::open(
        disk,
        root.path(),
        1,
        fixed_epoch(1),
        WalOptions {
            segment_size: 1 << 20,
            ..WalOptions::default()
        },
    )
    .unwrap();
    let wal = Arc::new(wal);
    let opened = wal.stats();
    // The writer takes a first record and stops inside its batch's fdatasync.
    gate.close();
    let first = {
        let wal = wal.clone();
        thread::spawn(move || wal.append(3, b"first").unwrap())
    };
    gate.wait_until_held();
    let held = gate.io();
    // Committers arrive while that sync is in progress; each has its LSN (its record is in the
    // writer's buffer) before the sync ends.
    let committers: Vec<_> = (0..WAITING)
        .map(|t| {
            let wal = wal.clone();
            thread::spawn(move || wal.append(3, &[t as u8]).unwrap())
        })
        .collect();
    while wal.next_lsn() <= 1 + WAITING {
        thread::yield_now();
    }
    gate.open();
    assert_eq!(first.join().unwrap(), 1);
    let mut lsns: Vec<u64> = committers.into_iter().map(|c| c.join().unwrap()).collect();
    lsns.sort_unstable();
    assert_eq!(lsns, (2..=1 + WAITING).collect::<Vec<_>>());
    // Every committer that waited behind the held sync was made durable by the next batch: one
    // write and one fdatasync for all of them (the other sync counted is the held one).
    let after = gate.io();
    assert_eq!(
        (after.writes - held.writes, after.syncs - held.syncs),
        (1, 2),
        "{WAITING} waiting committers took one write and one fdatasync"
    );
    let stats = wal.stats();
    assert_eq!(stats.records - opened.records, 1 + WAITING);
    assert_eq!(
        stats.syncs - opened.syncs,
        2,
        "two batches: the held one, then the rest"
    );
    drop(wal);
    let (_, recovered) = open_real(root.path());
    assert_eq!(recovered.len() as u64, 1 + WAITING);
}

/// Opens the log in a real directory.
fn open_real(dir: &Path) -> (Wal, Vec<Record>) {
    Wal::open(
        Arc::new(FileDisk),
        dir,
        1,
        fixed_epoch(1),
        WalOptions {
            segment_size: 1 << 20,
            ..WalOptions::default()
        },
    )
    .unwrap()
}

#[test]
fn concurrent_committers_on_a_real_disk_keep_every_record_in_their_own_order() {
    let root = TempDir::new().unwrap();
    let (wal, _) = open_real(root.path());
    let wal = Arc::new(wal);
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let wal = wal.clone();
            thread::spawn(move || {
                for i in 0..50u32 {
                    let data = [t as u8, (i & 0xFF) as u8];
                    wal.append(3, &data).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(wal.stats().records, 800);
    drop(wal);
    let (_, recovered) = open_real(root.path());
    assert_eq!(recovered.len(), 800);
    // Every committer's records are there, in its own order.
    for t in 0..16u8 {
        let mine: Vec<u8> = recovered
            .iter()
            .filter(|r| r.data[0] == t)
            .map(|r| r.data[1])
            .collect();
        assert_eq!(mine, (0..50u8).collect::<Vec<_>>());
    }
}

#[test]
fn a_roll_interrupted_before_its_header_is_removed() {
    let disk = SimDisk::new();
    {
        let (wal, _) = open(&disk, 4096).unwrap();
        assert_eq!(workload(&wal, 3), 3);
    }
    // A process killed while creating segment 2: the file exists, zero-filled, with no header.
    let next = dir().join(format!("{:016x}.wal", 2));
    {
        let file = Disk::open(&disk, &next, true).unwrap();
        file.write_at(&[0u8; 4096], 0).unwrap();
        file.sync_data().unwrap();
    }
    let (wal, records) = open(&disk, 4096).unwrap();
    assert_eq!(records.len(), 3);
    assert_eq!(workload(&wal, 2), 2);
    drop(wal);
    let (_, records) = open(&disk, 4096).unwrap();
    assert_eq!(records.len(), 5);
}

/// The segment being written.
fn last_segment(disk: &SimDisk) -> PathBuf {
    disk.list(&dir())
        .unwrap()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .max()
        .unwrap()
}

/// The free segment compaction leaves for the next roll.
fn free_segment() -> PathBuf {
    dir().join("free.wal-segment")
}

/// Appends records 1..=n, letting go of all but the last ten every five records, so segments
/// die and are reused. Returns how many were acknowledged and the lowest LSN the last
/// successful compaction promised to keep.
fn reusing_workload(wal: &Wal, n: u64) -> (u64, u64) {
    let mut kept_from = 1;
    for i in 1..=n {
        if wal.append(7, &payload(i)).is_err() {
            return (i - 1, kept_from);
        }
        if i % 5 == 0 && i > 10 {
            if wal.remove_before(i - 10).is_err() {
                return (i, kept_from);
            }
            kept_from = i - 10;
        }
    }
    (n, kept_from)
}

/// Checks a log recovered after compactions: consecutive LSNs, each with its own payload, ending
/// at or after the last acknowledged record and holding every record from `kept_from` on.
fn check_suffix(recovered: &[Record], acknowledged: u64, kept_from: u64, context: &str) {
    let first = recovered.first().map_or(acknowledged + 1, |r| r.lsn);
    assert!(
        first <= kept_from.max(1) || acknowledged < kept_from,
        "{context}: records from {kept_from} were to be kept, the log starts at {first}"
    );
    for (i, r) in recovered.iter().enumerate() {
        assert_eq!(
            r.lsn,
            first + i as u64,
            "{context}: a gap, or an old record read back"
        );
        assert_eq!(r.data, payload(r.lsn), "{context}: record {}", r.lsn);
    }
    let last = recovered.last().map_or(0, |r| r.lsn);
    assert!(
        last >= acknowledged,
        "{context}: {acknowledged} acknowledged, the log ends at {last}"
    );
}

#[test]
fn reused_segments_never_give_back_their_old_records() {
    const N: u64 = 120;
    const SEGMENT: u64 = 2048;
    // A clean run: dead segments are reused, and the log reads back exactly its own records.
    let clean = SimDisk::new();
    let (wal, _) = open(&clean, SEGMENT).unwrap();
    let mut reused = 0;
    for i in 1..=N {
        let had_free = clean.read_file(&free_segment()).is_some();
        assert_eq!(wal.append(7, &payload(i)).unwrap(), i);
        if had_free && clean.read_file(&free_segment()).is_none() {
            reused += 1;
        }
        if i % 5 == 0 && i > 10 {
            wal.remove_before(i - 10).unwrap();
        }
    }
    assert!(reused >= 3, "segments reused {reused} times");
    let mut read = Vec::new();
    let kept_from = N - 10;
    wal.reader()
        .read(kept_from, N, |r| {
            read.push(r.lsn);
            true
        })
        .unwrap();
    assert_eq!(read, (kept_from..=N).collect::<Vec<_>>());
    drop(wal);
    let (_, recovered) = open(&clean, SEGMENT).unwrap();
    check_suffix(&recovered, N, kept_from, "clean run");
    let total = clean.syncs();
    // Crash at every sync point.
    for n in 0..=total {
        let disk = SimDisk::new();
        disk.fail_after_syncs(n);
        let (acknowledged, kept_from) = match open(&disk, SEGMENT) {
            Ok((wal, _)) => reusing_workload(&wal, N),
            Err(_) => (0, 1),
        };
        for (label, torn) in [("clean", false), ("torn", true)] {
            let image = disk.crash_image(|_, unsynced| if torn { unsynced / 2 } else { 0 });
            let context = format!("crash after sync {n} ({label})");
            let (wal, recovered) =
                open(&image, SEGMENT).unwrap_or_else(|e| panic!("{context}: {e}"));
            check_suffix(&recovered, acknowledged, kept_from, &context);
            // The log goes on from where it stopped, and reads back the same way again.
            let next = recovered.last().map_or(1, |r| r.lsn + 1);
            assert_eq!(wal.append(7, &payload(next)).unwrap(), next, "{context}");
            drop(wal);
            let (_, again) = open(&image, SEGMENT).unwrap();
            check_suffix(&again, next, kept_from, &format!("{context}, reopened"));
        }
    }
}

#[test]
fn a_torn_batch_over_old_records_is_a_torn_tail_not_corruption() {
    const SEGMENT: u64 = 2048;
    let disk = SimDisk::new();
    let (wal, _) = open(&disk, SEGMENT).unwrap();
    // Fill and let go of segments until the tail is a reused one with records in it.
    let mut i = 0;
    let tail = loop {
        i += 1;
        let had_free = disk.read_file(&free_segment()).is_some();
        wal.append(7, &payload(i)).unwrap();
        if had_free && disk.read_file(&free_segment()).is_none() {
            break last_segment(&disk);
        }
        if i % 5 == 0 && i > 10 {
            wal.remove_before(i - 10).unwrap();
        }
    };
    // Two more records in the reused tail, the last one torn: old records follow it.
    wal.append(7, &payload(i + 1)).unwrap();
    wal.append(7, &payload(i + 2)).unwrap();
    drop(wal);
    let record_len = |lsn: u64| 8 + 17 + payload(lsn).len();
    let torn_at = 32 + record_len(i) + record_len(i + 1);
    let after = torn_at + record_len(i + 2);
    let bytes = disk.read_file(&tail).unwrap();
    assert!(
        bytes[after..after + 64].iter().any(|&b| b != 0),
        "old records follow the tail's own"
    );
    disk.corrupt(&tail, torn_at + 30, &[bytes[torn_at + 30] ^ 0xff]);
    let (wal, recovered) = open(&disk, SEGMENT).unwrap();
    assert_eq!(recovered.last().unwrap().lsn, i + 1);
    check_suffix(&recovered, i + 1, i + 1, "torn tail");
    assert_eq!(wal.append(7, &payload(i + 2)).unwrap(), i + 2);
    drop(wal);
    let (_, recovered) = open(&disk, SEGMENT).unwrap();
    check_suffix(&recovered, i + 2, i + 1, "torn tail, rewritten");
}

#[test]
fn old_records_right_after_a_reused_segments_own_are_not_read() {
    // Records of one size sit at the same offsets in every segment, so a reused segment's own
    // records end exactly where an old one begins, whole and with a good crc.
    const N: u64 = 60; // 16 records a segment: the tail holds 49..=60 and four old ones
    let body = |lsn: u64| vec![lsn as u8; 100];
    let disk = SimDisk::new();
    let (wal, _) = open(&disk, 2048).unwrap();
    for i in 1..=N {
        assert_eq!(wal.append(7, &body(i)).unwrap(), i);
        if i % 5 == 0 && i > 10 {
            wal.remove_before(i - 10).unwrap();
        }
    }
    let tail = last_segment(&disk);
    let bytes = disk.read_file(&tail).unwrap();
    // Every record is 8 + 17 + 100 bytes: the tail's own end where an old record starts.
    let slot = 8 + 17 + 100;
    let tail_first = u64::from_le_bytes(bytes[24..32].try_into().unwrap());
    let end = 32 + (N + 1 - tail_first) as usize * slot;
    let old_lsn = u64::from_le_bytes(bytes[end + 9..end + 17].try_into().unwrap());
    assert!(
        old_lsn > 0 && old_lsn < tail_first,
        "an old record (LSN {old_lsn}) follows the tail's own, which start at {tail_first}"
    );
    let mut read = Vec::new();
    wal.reader()
        .read(N - 10, N, |r| {
            read.push(r.lsn);
            true
        })
        .unwrap();
    assert_eq!(read, (N - 10..=N).collect::<Vec<_>>());
    drop(wal);
    let (wal, recovered) = open(&disk, 2048).unwrap();
    assert_eq!(recovered.last().unwrap().lsn, N);
    for (i, r) in recovered.iter().enumerate() {
        assert_eq!(r.lsn, recovered[0].lsn + i as u64);
        assert_eq!(r.data, body(r.lsn));
    }
    assert_eq!(wal.append(7, &body(N + 1)).unwrap(), N + 1);
}

#[test]
fn damage_in_a_segment_before_the_last_is_refused_wherever_it_is() {
    // Records of 125 bytes, 16 to a 2048-byte segment: records 1..=16 fill segment 1.
    let body = |lsn: u64| vec![lsn as u8; 100];
    let slot = 8 + 17 + 100;
    let first = dir().join(format!("{:016x}.wal", 1));
    for (damaged, expect) in [(5u64, "valid record after it"), (16, "starts at record 17")] {
        let disk = SimDisk::new();
        let (wal, _) = open(&disk, 2048).unwrap();
        for i in 1..=40 {
            wal.append(7, &body(i)).unwrap();
        }
        drop(wal);
        let at = 32 + (damaged as usize - 1) * slot + 40;
        let byte = disk.read_file(&first).unwrap()[at];
        disk.corrupt(&first, at, &[byte ^ 0x01]);
        match open(&disk, 2048) {
            Err(WalError::Corrupt { why, .. }) => {
                assert!(why.contains(expect), "record {damaged}: {why}");
                assert!(why.contains("crc32"), "record {damaged}: {why}");
            }
            Err(e) => panic!("record {damaged}: wrong error: {e}"),
            Ok(_) => panic!("record {damaged}: opened a log with a damaged record"),
        }
    }
}

/// Found by the `wal` fuzz target: one flipped bit raising a segment header's first LSN made
/// recovery take the segment's own records for a reused segment's old ones and skip them. The
/// header's crc (format version 3) refuses it; a version 2 header (zeros there) still opens.
#[test]
fn a_flipped_bit_in_a_segment_header_is_corruption_not_a_shorter_log() {
    let disk = SimDisk::new();
    let (wal, _) = open(&disk, 1 << 20).unwrap();
    workload(&wal, 5);
    drop(wal);
    let seg = only_segment(&disk);
    let header = disk.read_file(&seg).unwrap()[..32].to_vec();
    // First LSN 1 -> 5: records 1..=4 would look like a reused segment's old records.
    disk.corrupt(&seg, 24, &[header[24] ^ 4]);
    match open(&disk, 1 << 20) {
        Err(WalError::Corrupt { offset: 0, why, .. }) => assert!(why.contains("header"), "{why}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok((_, recovered)) => panic!("opened with {} records", recovered.len()),
    }
    // The same log as version 2 wrote it: no crc.
    disk.corrupt(&seg, 24, &header[24..25]);
    let mut v2 = header.clone();
    v2[8..12].copy_from_slice(&2u32.to_le_bytes());
    v2[12..16].copy_from_slice(&[0; 4]);
    disk.corrupt(&seg, 0, &v2);
    let (_, recovered) = open(&disk, 1 << 20).unwrap();
    check(&recovered, 5, 5, "a version 2 header");
}

/// Found by the `wal` fuzz target: a first segment whose first record was cut off, with a second
/// segment after it, opened from the second segment and silently skipped the first one's
/// records. A later segment must continue the log even when none of the previous one's records
/// could be read.
#[test]
fn a_first_segment_cut_before_its_first_record_is_corruption() {
    let disk = SimDisk::new();
    let (wal, _) = open(&disk, 4096).unwrap();
    workload(&wal, 40);
    drop(wal);
    let mut segments = disk.list(&dir()).unwrap();
    segments.sort();
    assert!(segments.len() >= 2, "the workload spans segments");
    disk.truncate(&segments[0], 40);
    match open(&disk, 4096) {
        Err(WalError::Corrupt { why, .. }) => assert!(why.contains("after record 0"), "{why}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok((_, recovered)) => panic!("opened from record {:?}", recovered.first().map(|r| r.lsn)),
    }
}

/// Records the order its wakers are woken in.
struct WakeOrder {
    name: &'static str,
    log: Arc<Mutex<Vec<&'static str>>>,
}

impl std::task::Wake for WakeOrder {
    fn wake(self: Arc<Self>) {
        self.log.lock().unwrap().push(self.name);
    }
}

#[test]
fn async_committers_that_ask_to_go_first_are_woken_first() {
    let gate = Arc::new(Gate::default());
    let disk: Arc<dyn Disk> = Arc::new(GatedDisk {
        inner: Arc::new(SimDisk::new()),
        gate: gate.clone(),
    });
    let (wal, _) = Wal::open(disk, &dir(), 1, fixed_epoch(1), WalOptions::default()).unwrap();
    let wal = Arc::new(wal);
    // The writer stops inside the first record's sync, so both futures wait for it.
    gate.close();
    let lsn = wal.submit(3, b"one record for both").unwrap();
    gate.wait_until_held();
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut waits = [
        ("plain", wal.durable(lsn)),
        ("first", wal.durable(lsn).woken_first()),
    ];
    // The plain one begins to wait first: without the request, it would be woken first.
    for (name, wait) in &mut waits {
        let waker = std::task::Waker::from(Arc::new(WakeOrder {
            name,
            log: log.clone(),
        }));
        let mut cx = std::task::Context::from_waker(&waker);
        let pending = std::pin::Pin::new(wait).poll(&mut cx).is_pending();
        assert!(
            pending,
            "{name}: the record is not durable while its sync is held"
        );
    }
    gate.open();
    wal.wait(lsn).unwrap();
    for _ in 0..1000 {
        if log.lock().unwrap().len() == 2 {
            break;
        }
        thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(*log.lock().unwrap(), ["first", "plain"]);
}
