//! The fuzz targets' checks: one function per parser mqemu has, each taking arbitrary bytes and
//! panicking only when a property fails (not merely when input is refused).
//!
//! The libFuzzer binaries in `fuzz_targets/` call these; `tests/replay.rs` calls them on the
//! committed corpora and regression inputs, so the normal `cargo test` replays every input a
//! campaign found interesting without a fuzzer. `docs/fuzzing.md` says how to run a campaign and
//! add a target.

use std::path::Path;
use std::sync::Arc;

use bytes::BytesMut;
use mqcore::storage::{CatalogStore, Disk, MemCatalog, Record, SimDisk, Wal, WalError, WalOptions};
use mqcore::triggers::RuleDef;
use mqcore::{ErrorCode, QueueManager};
use mqnet::frame::{self, FrameError};
use mqnet::proto::{self, Envelope, Request, Response};

pub mod seeds;

/// A target's check: arbitrary bytes in, a panic only when a property fails.
pub type Check = fn(&[u8]);

/// Every target, by name: what `fuzz/run` and the replay test iterate.
pub const TARGETS: &[(&str, Check)] = &[
    ("frame", frame),
    ("request", request),
    ("name", name),
    ("rule", rule),
    ("cluster_config", cluster_config),
    ("serve_config", serve_config),
    ("wal", wal),
    ("replay", replay),
    ("catalog", catalog),
    ("mqqb", mqqb),
];

/// Reads input as a socket would deliver it: the first byte chooses the read size. The frame
/// decoder, over any bytes, with a small frame limit:
/// - never consumes from a frame it does not return, never reserves past the limit plus what it
///   was given, and refuses a length over the limit before waiting for its bytes;
/// - returns exactly the payload the frame's header announced, whose crc it checked, and takes
///   exactly that frame's bytes off the buffer.
pub fn frame(data: &[u8]) {
    const MAX: usize = 1024;
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut consumed = 0;
    while fed < stream.len() {
        let end = (fed + chunk).min(stream.len());
        buf.extend_from_slice(&stream[fed..end]);
        fed = end;
        loop {
            let before = buf.len();
            let front = buf.clone();
            match frame::decode(&mut buf, MAX) {
                Ok(Some(payload)) => {
                    let len = u32::from_le_bytes(front[0..4].try_into().unwrap()) as usize;
                    let crc = u32::from_le_bytes(front[4..8].try_into().unwrap());
                    assert!(len <= MAX);
                    assert_eq!(payload.len(), len);
                    assert_eq!(
                        &payload[..],
                        &front[frame::HEADER_LEN..frame::HEADER_LEN + len]
                    );
                    assert_eq!(crc32fast::hash(&payload), crc);
                    assert_eq!(buf.len(), before - frame::HEADER_LEN - len);
                    consumed += frame::HEADER_LEN + len;
                }
                Ok(None) => {
                    assert_eq!(
                        buf.len(),
                        before,
                        "nothing is consumed from a partial frame"
                    );
                    assert!(
                        buf.capacity() <= MAX + frame::HEADER_LEN + stream.len() + 64,
                        "reserved {} for {} bytes",
                        buf.capacity(),
                        stream.len()
                    );
                    break;
                }
                Err(FrameError::TooLong { len, max }) => {
                    assert!(len > max);
                    return;
                }
                Err(_) => return,
            }
        }
    }
    assert_eq!(consumed + buf.len(), stream.len());
}

/// A frame's payload as a request, then as a response: whatever decodes re-encodes to a payload
/// that decodes to the same value, and a refusal is MSMQ's `MQ_ERROR_INVALID_PARAMETER`
/// class of error, never a panic.
pub fn request(data: &[u8]) {
    if let Ok(env) = proto::decode::<Request>(data) {
        let again = proto::frame(env.id, &env.body);
        let back: Envelope<Request> = proto::decode(&again[frame::HEADER_LEN..]).unwrap();
        assert_eq!(back.id, env.id);
        assert_eq!(format!("{:?}", back.body), format!("{:?}", env.body));
    }
    if let Ok(env) = proto::decode::<Response>(data) {
        let again = proto::frame(env.id, &env.body);
        let back: Envelope<Response> = proto::decode(&again[frame::HEADER_LEN..]).unwrap();
        assert_eq!(back.id, env.id);
        assert_eq!(format!("{:?}", back.body), format!("{:?}", env.body));
    }
}

/// Path and format names: a name that parses displays as text that parses back to an equal
/// name and displays the same again; a refusal carries the name grammar's MSMQ error code.
pub fn name(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for (parsed, path_only) in [
        (mqcore::name::QueueName::parse(text), false),
        (mqcore::name::QueueName::parse_path(text), true),
    ] {
        match parsed {
            Ok(q) => {
                let shown = q.to_string();
                let back = mqcore::name::QueueName::parse(&shown)
                    .unwrap_or_else(|e| panic!("{text:?} displays as {shown:?}, refused: {e}"));
                assert_eq!(back, q, "{text:?} -> {shown:?}");
                assert_eq!(back.to_string(), shown);
                assert!(!path_only || !q.is_format_name());
            }
            Err(e) => assert!(
                matches!(
                    e.code(),
                    ErrorCode::IllegalQueuePathname | ErrorCode::IllegalFormatname
                ),
                "{text:?}: {e}"
            ),
        }
    }
}

/// Trigger rules from MSMQ's condition and action strings (split at the first NUL): a rule that
/// parses formats to strings that parse to the same rule, and format the same again.
pub fn rule(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (condition, action) = text.split_once('\0').unwrap_or((text, "EXE\tx"));
    let Ok(def) = RuleDef::parse("r", "", condition, action) else {
        return;
    };
    let rule = mqcore::triggers::Rule {
        id: Default::default(),
        def: def.clone(),
    };
    let (c, a) = (rule.condition_string(), rule.action_string());
    let back = RuleDef::parse("r", "", &c, &a)
        .unwrap_or_else(|e| panic!("{condition:?} {action:?} format as {c:?} {a:?}, refused: {e}"));
    assert_eq!(back, def, "{condition:?} {action:?} -> {c:?} {a:?}");
    let again = mqcore::triggers::Rule {
        id: Default::default(),
        def: back,
    };
    assert_eq!((again.condition_string(), again.action_string()), (c, a));
}

/// A cluster file: refused with a message, or accepted and then consistent: every group's
/// online order holds each of its resources once, after everything it depends on, and every
/// dependency names a resource of the same group.
pub fn cluster_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = mqcluster::ClusterConfig::parse(text) else {
        return;
    };
    for g in &config.groups {
        let order = g
            .online_order()
            .unwrap_or_else(|e| panic!("an accepted group has no online order: {e}"));
        assert_eq!(order.len(), g.resources.len());
        for (i, r) in order.iter().enumerate() {
            for d in &r.depends_on {
                let at = order
                    .iter()
                    .position(|o| o.name.eq_ignore_ascii_case(d))
                    .unwrap_or_else(|| panic!("{} depends on {d}, not in its group", r.name));
                assert!(at < i, "{} comes online before its dependency {d}", r.name);
            }
        }
    }
}

thread_local! {
    /// The `wal` target's written logs, by shape.
    static WRITTEN: std::cell::RefCell<std::collections::HashMap<Vec<u8>, SimDisk>> =
        Default::default();
}

/// `mqemu serve`'s configuration file: refused with `MQ_ERROR_INVALID_PARAMETER` (or the
/// code of the name or rule it holds), or accepted, and then every rule and trigger it declares
/// is one the Triggers service takes, and every queue's path parses.
pub fn serve_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match mqemu::config::parse(text) {
        Ok(config) => {
            for q in &config.queues {
                mqcore::name::QueueName::parse_path(&q.path).expect("checked");
            }
            for r in &config.rules {
                let def = r.to_def().expect("checked");
                let rule = mqcore::triggers::Rule {
                    id: Default::default(),
                    def: def.clone(),
                };
                let back = RuleDef::parse(
                    &def.name,
                    &def.description,
                    &rule.condition_string(),
                    &rule.action_string(),
                )
                .unwrap_or_else(|e| panic!("rule {:?} does not store: {e}", def.name));
                assert_eq!(back, def);
            }
            for t in &config.trigger_decls {
                t.to_def().expect("checked");
            }
        }
        Err(e) => assert!(
            matches!(
                e.code(),
                ErrorCode::InvalidParameter
                    | ErrorCode::IllegalQueuePathname
                    | ErrorCode::IllegalFormatname
            ),
            "{e}"
        ),
    }
}

/// The damage a `wal` input does to a log, in 4-byte steps after its header.
enum Damage {
    /// Bits flipped in one byte.
    Flip { offset: usize, mask: u8 },
    /// The file cut short.
    Truncate { len: usize },
    /// A run of one byte value (a bad sector reads as zeros, ones or a fill pattern). Not the
    /// input's own bytes: a fuzzer that learns the crc from the comparison could plant a whole
    /// valid record, which no checksum can tell from a written one.
    Fill { offset: usize, len: usize, byte: u8 },
}

/// A log written whole, then damaged as a crash or a bad disk would, then recovered. The input's
/// first bytes choose how many records of which sizes are written in which batches (over
/// several small segments); the rest are damage steps (flip bits, truncate, fill a run) on chosen segments.
/// Recovery either refuses, or serves records that are exactly what was written under their
/// LSNs, consecutive: never a record that was not written whole. Unless damage reached a segment
/// header (single flips there are refused by its crc; `mqcore/tests/wal.rs`), what it serves
/// starts at the first record: nothing acknowledged is silently skipped. A log recovered once
/// recovers the same again.
pub fn wal(data: &[u8]) {
    const SEGMENT: u64 = 4096;
    const HEADER: usize = 32;
    if data.len() < 2 {
        return;
    }
    // The log's shape (count, then record sizes and batch ends) and the damage steps after it.
    let shape = &data[..(2 + usize::from(data[0] / 32)).min(data.len())];
    let steps = &data[shape.len()..];
    let count = 1 + usize::from(data[0] % 32);
    let sizes = &shape[1..];
    let payload = |i: usize| -> Vec<u8> {
        let len = usize::from(sizes[i % sizes.len()]) * 7 % 1500;
        (0..len).map(|j| (i * 31 + j) as u8).collect()
    };
    let dir = Path::new("/fuzz/wal");
    let open = |disk: &SimDisk| -> Result<(Wal, Vec<Record>), WalError> {
        let disk: Arc<dyn Disk> = Arc::new(disk.clone());
        Wal::open(
            disk,
            dir,
            1,
            Box::new(|| Ok(1)),
            WalOptions {
                segment_size: SEGMENT,
                ..WalOptions::default()
            },
        )
    };
    // Writing the log is most of a run's time (the writer is a thread); a fuzzer mostly mutates
    // the damage, so each shape's log is written once and copied.
    let written = WRITTEN.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.len() > 4096 {
            cache.clear();
        }
        cache
            .entry(shape.to_vec())
            .or_insert_with(|| {
                let disk = SimDisk::new();
                let (log, _) = open(&disk).expect("an empty log opens");
                // Batches as the size bytes say (a high bit ends one): group commit as the queue
                // manager uses it.
                let mut last = 0;
                for i in 0..count {
                    last = log
                        .submit(7, &payload(i))
                        .expect("a simulated disk does not fail");
                    if sizes[i % sizes.len()] & 0x80 != 0 {
                        log.wait(last).expect("a simulated disk does not fail");
                    }
                }
                log.wait(last).expect("a simulated disk does not fail");
                drop(log);
                disk
            })
            .crash_image(|_, _| 0)
    });
    let disk = written;
    let segments = disk.list(dir).expect("the log's directory");
    let mut header_hit = false;
    for step in steps.chunks_exact(4) {
        let seg = &segments[usize::from(step[0] >> 2) % segments.len()];
        let offset = usize::from(u16::from_le_bytes([step[1], step[2]]));
        let damage = match step[0] & 3 {
            0 | 1 => Damage::Flip {
                offset,
                mask: step[3].max(1),
            },
            2 => Damage::Truncate { len: offset },
            _ => Damage::Fill {
                offset,
                len: usize::from(step[3] & 0x3f) + 1,
                byte: [0, 0xff, 0xa5, step[3]][usize::from(step[3] >> 6)],
            },
        };
        let Some(now) = disk.read_file(seg) else {
            continue;
        };
        match damage {
            Damage::Flip { offset, mask } if offset < now.len() => {
                header_hit |= offset < HEADER;
                disk.corrupt(seg, offset, &[now[offset] ^ mask]);
            }
            Damage::Truncate { len } if len < now.len() => {
                header_hit |= len < HEADER;
                disk.truncate(seg, len);
            }
            Damage::Fill { offset, len, byte } if offset < now.len() => {
                header_hit |= offset < HEADER;
                let end = (offset + len).min(now.len());
                disk.corrupt(seg, offset, &vec![byte; end - offset]);
            }
            _ => {}
        }
    }
    let Ok((log, recovered)) = open(&disk) else {
        return;
    };
    drop(log);
    assert!(recovered.len() <= count, "recovery invented records");
    let first = recovered.first().map_or(1, |r| r.lsn);
    assert!(
        header_hit || first == 1,
        "records 1..{first} skipped without header damage"
    );
    for (i, r) in recovered.iter().enumerate() {
        assert_eq!(r.lsn, first + i as u64, "records out of order");
        let written = usize::try_from(r.lsn - 1).unwrap();
        assert!(written < count, "record {} was never written", r.lsn);
        assert_eq!(r.kind, 7, "record {} damaged", r.lsn);
        assert_eq!(r.data, payload(written), "record {} damaged", r.lsn);
    }
    let (_, again) = open(&disk).expect("a recovered log opens again");
    assert_eq!(again, recovered, "a second recovery differs");
}

/// Log records as recovery replays them after a crash (records whose checksum held but whose
/// contents a bug, or a foreign writer, made up): input is `kind, len (2 bytes), payload`
/// repeated. Replay reads them or refuses with `MQ_ERROR_MESSAGE_STORAGE_FAILED`; it never
/// panics.
pub fn replay(data: &[u8]) {
    let mut records = Vec::new();
    let mut rest = data;
    let mut lsn = 0;
    while rest.len() >= 3 {
        let kind = rest[0] % 8;
        let len = usize::from(u16::from_le_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        lsn += 1;
        records.push(Record {
            lsn,
            epoch: 1,
            kind,
            data: rest[3..3 + len].to_vec(),
        });
        rest = &rest[3 + len..];
    }
    if let Err(e) = mqcore::fuzzing::replay(records) {
        assert_eq!(e.code(), ErrorCode::MessageStorageFailed, "{e}");
    }
}

/// Catalog keys the queue manager and its Triggers service read on open.
pub const CATALOG_KEYS: &[&str] = &[
    "meta/guid",
    "meta/name",
    "meta/last_queue_id",
    "queue/00000001",
    "queue/00000002",
    "trigger-rule/a",
    "trigger-rule/b",
    "trigger-def/a",
    "trigger-def/b",
];

/// A catalog whose entries the input chose (`key index, len (2 bytes), value` repeated), opened
/// as a
/// durable queue manager's catalog, then read by the Triggers service: either refused with
/// `MQ_ERROR_MESSAGE_STORAGE_FAILED`, or opened with every queue it lists reachable by its name.
pub fn catalog(data: &[u8]) {
    let catalog = MemCatalog::new();
    let mut rest = data;
    while rest.len() >= 3 {
        let key = CATALOG_KEYS[usize::from(rest[0]) % CATALOG_KEYS.len()];
        let len = usize::from(u16::from_le_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        catalog.put(key, &rest[3..3 + len]).expect("in memory");
        rest = &rest[3 + len..];
    }
    let disk: Arc<dyn Disk> = Arc::new(SimDisk::new());
    // Small segments: a simulated disk fills each one in memory.
    let opened = QueueManager::builder().segment_size(1 << 16).open_with(
        disk,
        Path::new("/fuzz/qm"),
        Arc::new(catalog),
    );
    let qm = match opened {
        Ok(qm) => qm,
        Err(e) => {
            assert_eq!(e.code(), ErrorCode::MessageStorageFailed, "{e}");
            return;
        }
    };
    for info in qm.queues() {
        qm.open(&info.path.to_string())
            .unwrap_or_else(|e| panic!("listed queue {:?} does not open: {e}", info.path));
    }
    if let Err(e) = mqcore::fuzzing::trigger_definitions(&qm) {
        assert_eq!(e.code(), ErrorCode::MessageStorageFailed, "{e}");
    }
}

/// An MS-MQQB packet from the network (the parser behind CVE-2023-21554 on Windows), decoded as
/// the acceptor does: the framing read from the first 16 bytes never announces less than a
/// BaseHeader and an InternalHeader nor more than the 4 MiB limit (a trailing SessionHeader
/// aside); whatever decodes encodes to bytes that decode to the same packet (PacketSize and
/// AllocationBodySize aside, which encoding recomputes); and a ping parses or is ignored.
pub fn mqqb(data: &[u8]) {
    use mqnet::mqqb::packet::{Ping, MAX_PACKET};
    use mqnet::mqqb::{decode, encode, frame_len, Packet};
    let _ = Ping::decode(data);
    if let Some(head) = data.get(..16) {
        if let Ok(n) = frame_len(head.try_into().expect("16 bytes")) {
            assert!(
                (20..=MAX_PACKET as usize + 16).contains(&n),
                "frame length {n}"
            );
        }
    }
    let Ok(packet) = decode(data) else { return };
    let normal = |p: Packet| match p {
        Packet::User(mut m) => {
            m.base.packet_size = 0;
            m.properties.allocation_body_size = 0;
            Packet::User(m)
        }
        other => other,
    };
    let mut again = Vec::new();
    encode(&packet, &mut again);
    let decoded = decode(&again).unwrap_or_else(|e| panic!("re-encoded packet refused: {e}"));
    assert_eq!(normal(decoded), normal(packet));
}
