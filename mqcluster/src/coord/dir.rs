//! The embedded coordination store: a cluster directory on a file system every node sees, with
//! nothing to install (the approach of Artemis's shared store: lock files and atomic renames).
//!
//! ```text
//! DIR/cluster.lock            flock held around every read-modify-write below
//! DIR/nodes/<node>.json       a node's heartbeat: {beat, wall_ms, pid}
//! DIR/groups/<group>/lease.json   the holder, its token and its latest renewal's beat
//! DIR/groups/<group>/record.json  failovers, administrator requests (GroupRecord)
//! DIR/names/<name>            the address a network name points at
//! DIR/status/<node>.json      what a node runs, for `cluster status`
//! ```
//!
//! Every file is replaced whole by a rename, so a reader sees the old or the new one. Liveness
//! never compares clocks of two processes: a heartbeat or a lease is a counter (`beat`), and an
//! observer measures with its own monotonic clock how long that counter has not moved.
//!
//! Limits: the lock is an OS file lock, so the directory serves nodes on one machine (or a file
//! system whose locks span machines); a node stopped (SIGSTOP) while holding it for a few
//! microseconds stalls the others until it resumes.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Coordination, Grant, GroupRecord, Holder};
use crate::error::{io_context, Result};

/// A node's heartbeat file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Beat {
    /// The node's name as configured.
    pub node: String,
    /// Moves at every heartbeat.
    pub beat: u64,
    /// Wall time of the heartbeat (for people reading status, not for decisions).
    pub wall_ms: u64,
    /// The node's process.
    pub pid: u32,
}

/// A group's lease file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Lease {
    node: String,
    token: u64,
    beat: u64,
    released: bool,
    handoff: Option<String>,
}

/// A network name's registration.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct NameEntry {
    address: String,
    token: u64,
}

/// The cluster directory as a [`Coordination`].
pub struct DirCoordination {
    dir: PathBuf,
    lease: Duration,
    /// Each counter this observer watches (a node's heartbeat, a group's lease), the value it
    /// saw last and when it first saw that value.
    seen: Mutex<HashMap<String, (u64, Instant)>>,
    /// The next beat this process writes: starts at the wall time in microseconds, so a node
    /// that restarts never repeats a value an observer remembers.
    next_beat: AtomicU64,
}

/// Wall-clock milliseconds.
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl DirCoordination {
    /// The cluster directory `dir`, whose leases last `lease` (creating its folders).
    pub fn open(dir: &Path, lease: Duration) -> Result<DirCoordination> {
        for sub in ["nodes", "groups", "names", "status"] {
            fs::create_dir_all(dir.join(sub))
                .map_err(io_context(format!("creating {}", dir.join(sub).display())))?;
        }
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64);
        Ok(DirCoordination {
            dir: dir.to_owned(),
            lease,
            seen: Mutex::new(HashMap::new()),
            next_beat: AtomicU64::new(start),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn beat(&self) -> u64 {
        self.next_beat.fetch_add(1, Ordering::Relaxed)
    }

    /// How long the counter `key` has stood at `value`, by this observer's clock.
    fn unchanged_for(&self, key: &str, value: u64) -> Duration {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let entry = seen.entry(key.to_owned()).or_insert((value, now));
        if entry.0 != value {
            *entry = (value, now);
        }
        now - entry.1
    }

    fn locked(&self) -> Result<File> {
        let path = self.dir.join("cluster.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_context(format!("opening {}", path.display())))?;
        file.lock()
            .map_err(io_context(format!("locking {}", path.display())))?;
        Ok(file)
    }

    fn group_dir(&self, group: &str) -> PathBuf {
        self.dir.join("groups").join(group.to_ascii_lowercase())
    }

    fn read_lease(&self, group: &str) -> Result<Option<Lease>> {
        read_json(&self.group_dir(group).join("lease.json"))
    }

    fn write_lease(&self, group: &str, lease: &Lease) -> Result<()> {
        let dir = self.group_dir(group);
        fs::create_dir_all(&dir).map_err(io_context(format!("creating {}", dir.display())))?;
        write_json(&dir.join("lease.json"), lease, false)
    }

    fn node_live(&self, node: &str) -> Result<bool> {
        let beat: Option<Beat> = read_json(&self.node_path(node))?;
        let key = format!("node/{}", node.to_ascii_lowercase());
        Ok(beat.is_some_and(|b| self.unchanged_for(&key, b.beat) < self.lease))
    }

    fn name_path(&self, name: &str) -> PathBuf {
        self.dir.join("names").join(name.to_ascii_lowercase())
    }

    fn node_path(&self, node: &str) -> PathBuf {
        self.dir
            .join("nodes")
            .join(format!("{}.json", node.to_ascii_lowercase()))
    }

    /// Every node's heartbeat file, for status (wall times, not liveness).
    fn heartbeats(&self) -> Result<Vec<(String, Beat)>> {
        list_json(&self.dir.join("nodes"))
    }
}

impl Coordination for DirCoordination {
    fn beats(&self) -> Result<Vec<Beat>> {
        Ok(self.heartbeats()?.into_iter().map(|(_, b)| b).collect())
    }

    fn heartbeat(&self, node: &str) -> Result<()> {
        let beat = Beat {
            node: node.to_owned(),
            beat: self.beat(),
            wall_ms: wall_ms(),
            pid: std::process::id(),
        };
        write_json(&self.node_path(node), &beat, false)
    }

    fn leave(&self, node: &str) -> Result<()> {
        let path = self.node_path(node);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(io_context(format!("removing {}", path.display()))(e))
            }
            _ => Ok(()),
        }
    }

    fn live_nodes(&self) -> Result<Vec<String>> {
        let mut live = Vec::new();
        for (key, b) in list_json::<Beat>(&self.dir.join("nodes"))? {
            if self.unchanged_for(&format!("node/{key}"), b.beat) < self.lease {
                live.push(b.node);
            }
        }
        Ok(live)
    }

    fn acquire(&self, group: &str, node: &str) -> Result<Option<Grant>> {
        let _lock = self.locked()?;
        let current = self.read_lease(group)?;
        let (token, clean, previous) = match &current {
            None => (1, true, None),
            Some(l) if l.released => {
                let to_us = l.handoff.as_deref().is_none_or(|h| {
                    h.eq_ignore_ascii_case(node) || !self.node_live(h).unwrap_or(false)
                });
                if !to_us {
                    return Ok(None);
                }
                (l.token + 1, true, Some(l.node.clone()))
            }
            Some(l) => {
                // Held. Ours from before a restart, or someone's whose lease ran out: either way
                // the holder did not give it up, so its storage must be fenced.
                let expired = l.node.eq_ignore_ascii_case(node)
                    || self.unchanged_for(&format!("lease/{}", group.to_ascii_lowercase()), l.beat)
                        >= self.lease;
                if !expired {
                    return Ok(None);
                }
                (l.token + 1, false, Some(l.node.clone()))
            }
        };
        self.write_lease(
            group,
            &Lease {
                node: node.to_owned(),
                token,
                beat: self.beat(),
                released: false,
                handoff: None,
            },
        )?;
        Ok(Some(Grant {
            group: group.to_owned(),
            node: node.to_owned(),
            token,
            clean,
            previous,
        }))
    }

    fn renew(&self, grant: &Grant) -> Result<bool> {
        let _lock = self.locked()?;
        match self.read_lease(&grant.group)? {
            Some(mut l) if l.token == grant.token && !l.released => {
                l.beat = self.beat();
                self.write_lease(&grant.group, &l)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn release(&self, grant: &Grant, handoff: Option<&str>) -> Result<()> {
        let _lock = self.locked()?;
        if let Some(mut l) = self.read_lease(&grant.group)? {
            if l.token == grant.token {
                l.released = true;
                l.handoff = handoff.map(str::to_owned);
                self.write_lease(&grant.group, &l)?;
            }
        }
        Ok(())
    }

    fn holder(&self, group: &str) -> Result<Option<Holder>> {
        let lease = self.read_lease(group)?;
        if let Some(l) = &lease {
            // Looking starts this observer's clock on the renewal seen (see `unchanged_for`).
            self.unchanged_for(&format!("lease/{}", group.to_ascii_lowercase()), l.beat);
        }
        Ok(lease.map(|l| Holder {
            node: l.node,
            token: l.token,
            released: l.released,
            handoff: l.handoff,
        }))
    }

    fn register_name(&self, name: &str, address: &str, token: u64) -> Result<()> {
        let _lock = self.locked()?;
        let entry = NameEntry {
            address: address.to_owned(),
            token,
        };
        write_json(&self.name_path(name), &entry, true)
    }

    fn unregister_name(&self, name: &str, token: u64) -> Result<()> {
        let _lock = self.locked()?;
        let path = self.name_path(name);
        match read_json::<NameEntry>(&path)? {
            Some(e) if e.token == token => {
                fs::remove_file(&path).map_err(io_context(format!("removing {}", path.display())))
            }
            _ => Ok(()),
        }
    }

    fn resolve(&self, name: &str) -> Result<Option<String>> {
        Ok(read_json::<NameEntry>(&self.name_path(name))?.map(|e| e.address))
    }

    fn record(&self, group: &str) -> Result<GroupRecord> {
        Ok(read_json(&self.group_dir(group).join("record.json"))?.unwrap_or_default())
    }

    fn update_record(
        &self,
        group: &str,
        change: &mut dyn FnMut(&mut GroupRecord),
    ) -> Result<GroupRecord> {
        let _lock = self.locked()?;
        let mut record = self.record(group)?;
        change(&mut record);
        let dir = self.group_dir(group);
        fs::create_dir_all(&dir).map_err(io_context(format!("creating {}", dir.display())))?;
        write_json(&dir.join("record.json"), &record, true)?;
        Ok(record)
    }

    fn publish_status(&self, node: &str, status: &serde_json::Value) -> Result<()> {
        let path = self
            .dir
            .join("status")
            .join(format!("{}.json", node.to_ascii_lowercase()));
        write_json(&path, status, false)
    }

    fn statuses(&self) -> Result<Vec<(String, serde_json::Value)>> {
        list_json(&self.dir.join("status"))
    }
}

/// Reads a JSON file; `None` if it does not exist.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            io_context(format!("reading {}", path.display()))(io::Error::new(
                io::ErrorKind::InvalidData,
                e,
            ))
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_context(format!("reading {}", path.display()))(e)),
    }
}

/// Replaces a file whole: a temporary file, then a rename; `durable` syncs both.
pub(crate) fn write_json<T: Serialize + ?Sized>(
    path: &Path,
    value: &T,
    durable: bool,
) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).expect("plain data serializes");
    write_atomic(path, &bytes, durable).map_err(io_context(format!("writing {}", path.display())))
}

/// Replaces a file whole by a rename of a temporary file written beside it.
pub fn write_atomic(path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    let tmp = path.with_extension(format!(
        "tmp-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    if durable {
        f.sync_all()?;
    }
    drop(f);
    fs::rename(&tmp, path)?;
    if durable {
        if let Some(parent) = path.parent() {
            File::open(parent)?.sync_all()?;
        }
    }
    Ok(())
}

/// Every `<name>.json` in `dir`, by name.
fn list_json<T: DeserializeOwned>(dir: &Path) -> Result<Vec<(String, T)>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_context(format!("listing {}", dir.display()))(e)),
    };
    for entry in entries {
        let path = entry
            .map_err(io_context(format!("listing {}", dir.display())))?
            .path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let Some(name) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
            continue;
        };
        if let Some(v) = read_json(&path)? {
            out.push((name, v));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_millis(200);

    #[test]
    fn a_lease_is_taken_over_only_after_it_ran_out() {
        let dir = tempfile::tempdir().unwrap();
        let a = DirCoordination::open(dir.path(), LEASE).unwrap();
        let b = DirCoordination::open(dir.path(), LEASE).unwrap();
        let ga = a.acquire("VS1", "A").unwrap().expect("free");
        assert!(ga.clean && ga.token == 1 && ga.previous.is_none());
        assert!(b.acquire("VS1", "B").unwrap().is_none(), "held");
        // A keeps renewing: B never sees it expire.
        for _ in 0..4 {
            std::thread::sleep(LEASE / 2);
            assert!(a.renew(&ga).unwrap());
            assert!(b.acquire("VS1", "B").unwrap().is_none(), "renewed");
        }
        // A stops: after a lease B takes it, uncleanly, with a higher token.
        std::thread::sleep(LEASE + LEASE / 4);
        let gb = b.acquire("VS1", "B").unwrap().expect("expired");
        assert_eq!(
            (gb.token, gb.clean, gb.previous.as_deref()),
            (2, false, Some("A"))
        );
        assert!(!a.renew(&ga).unwrap(), "A lost it");
        assert_eq!(a.holder("vs1").unwrap().unwrap().node, "B");
    }

    #[test]
    fn a_clean_release_hands_the_group_over_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = DirCoordination::open(dir.path(), LEASE).unwrap();
        let b = DirCoordination::open(dir.path(), LEASE).unwrap();
        let c = DirCoordination::open(dir.path(), LEASE).unwrap();
        for (co, n) in [(&a, "A"), (&b, "B"), (&c, "C")] {
            co.heartbeat(n).unwrap();
        }
        let ga = a.acquire("VS1", "A").unwrap().unwrap();
        a.release(&ga, Some("C")).unwrap();
        assert!(b.acquire("VS1", "B").unwrap().is_none(), "handed to C");
        let gc = c.acquire("VS1", "C").unwrap().unwrap();
        assert!(gc.clean);
        assert_eq!(gc.token, 2);
        let mut live = b.live_nodes().unwrap();
        live.sort();
        assert_eq!(live, ["A", "B", "C"]);
    }

    #[test]
    fn names_and_records() {
        let dir = tempfile::tempdir().unwrap();
        let a = DirCoordination::open(dir.path(), LEASE).unwrap();
        a.register_name("VS1", "127.0.0.11:18010", 1).unwrap();
        a.register_name("VS1", "127.0.0.11:18010", 2).unwrap();
        a.unregister_name("VS1", 1).unwrap();
        assert_eq!(
            a.resolve("vs1").unwrap().as_deref(),
            Some("127.0.0.11:18010")
        );
        a.unregister_name("VS1", 2).unwrap();
        assert_eq!(a.resolve("VS1").unwrap(), None);
        let r = a
            .update_record("VS1", &mut |r| r.failovers.push(5))
            .unwrap();
        assert_eq!(a.record("vs1").unwrap(), r);
    }
}
