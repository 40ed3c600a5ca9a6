//! A virtual server run by a real single-node Pacemaker/Corosync cluster through the OCF agent
//! (`ocf:mqemu:vserver`): started, its server killed so that a failed monitor makes Pacemaker
//! restart it (fencing the storage), stopped and started again, with a client sending
//! transactionally through the address throughout; at the end every acknowledged message is
//! there once.
//!
//! It runs `corosync -f` and `pacemakerd -f` as root and replaces this machine's Pacemaker state
//! (`/var/lib/pacemaker/cib`), so it runs only when `MQEMU_PACEMAKER_TEST=1` (as `.ci/run`
//! sets on its throwaway machine) and no Pacemaker runs already.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mqemu::net::{BlockingClient, Tx};
use mqemu::{Message, QueueProps};

const Q: &str = r".\private$\orders";
const ADDRESS: &str = "127.72.0.11:18040";

struct Daemons {
    corosync: Child,
    pacemaker: Child,
}

impl Drop for Daemons {
    fn drop(&mut self) {
        let _ = Command::new("cibadmin")
            .args(["--delete", "--xml-text", r#"<group id="vs1-group"/>"#])
            .stderr(Stdio::null())
            .status();
        for c in [&mut self.pacemaker, &mut self.corosync] {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn sh(cmd: &str) -> (bool, String) {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn status() -> String {
    sh("crm_mon -1 2>&1").1
}

fn start_daemons(dir: &std::path::Path) -> Daemons {
    let conf = dir.join("corosync.conf");
    std::fs::write(
        &conf,
        "totem {\n version: 2\n cluster_name: mqemu\n transport: knet\n crypto_cipher: none\n \
         crypto_hash: none\n token: 1000\n}\nnodelist {\n node {\n ring0_addr: 127.0.0.1\n \
         name: node1\n nodeid: 1\n }\n}\nquorum {\n provider: corosync_votequorum\n}\n\
         logging {\n to_stderr: yes\n to_syslog: no\n}\n",
    )
    .unwrap();
    // A fresh cluster configuration: whatever an earlier run left is gone.
    let _ = sh("rm -f /var/lib/pacemaker/cib/cib*");
    let log = |name: &str| std::fs::File::create(dir.join(name)).unwrap();
    let corosync = Command::new("corosync")
        .arg("-f")
        .arg("-c")
        .arg(&conf)
        .env("COROSYNC_MAIN_CONFIG_FILE", &conf)
        .stdout(log("corosync.log"))
        .stderr(log("corosync.err"))
        .spawn()
        .unwrap();
    wait_for("corosync", 30, || {
        sh("corosync-quorumtool -s 2>&1")
            .1
            .contains("Quorate:          Yes")
    });
    let pacemaker = Command::new("pacemakerd")
        .arg("-f")
        .stdout(log("pacemaker.log"))
        .stderr(log("pacemaker.err"))
        .spawn()
        .unwrap();
    let d = Daemons {
        corosync,
        pacemaker,
    };
    // The first DC election waits dc-deadtime (20 s by default). This wait once timed out in
    // a few background runs (not in CI); if it does, say what the daemons said.
    let deadline = Instant::now() + Duration::from_secs(90);
    while !status().contains("partition with quorum") {
        if Instant::now() >= deadline {
            let tail = |name: &str| {
                let text = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(30)..].join("\n")
            };
            panic!(
                "timed out waiting for a DC\ncrm_mon: {}\ncorosync: {}\npacemaker: {}\n{}",
                status(),
                tail("corosync.log"),
                tail("pacemaker.log"),
                sh("tail -n 30 /var/log/pacemaker/pacemaker.log").1
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    d
}

/// A client that sends transactional messages through the address until told to stop,
/// keeping what was acknowledged; sends that fail (the server restarting) are retried.
fn client(stop: Arc<AtomicBool>, acked: Arc<Mutex<Vec<String>>>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut n = 0u64;
        let mut conn: Option<BlockingClient> = None;
        while !stop.load(Ordering::SeqCst) && n < 100_000 {
            let c = match conn.take() {
                Some(c) => c,
                None => match BlockingClient::connect(ADDRESS) {
                    Ok(c) => c,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                },
            };
            let body = format!("m{n}");
            n += 1;
            if c.send(Q, Message::new(body.clone()), Tx::Single).is_ok() {
                acked.lock().unwrap().push(body);
                conn = Some(c);
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    })
}

fn server_pid(state: &std::path::Path) -> Option<u32> {
    let text = std::fs::read_to_string(state.join("mqemu-vs1.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["pid"].as_u64().map(|p| p as u32)
}

fn answers() -> bool {
    BlockingClient::connect(ADDRESS).is_ok_and(|c| c.stats().is_ok())
}

#[test]
fn pacemaker_runs_restarts_and_stops_a_virtual_server_and_nothing_acknowledged_is_lost() {
    if std::env::var("MQEMU_PACEMAKER_TEST").as_deref() != Ok("1") {
        eprintln!("skipped: set MQEMU_PACEMAKER_TEST=1 (root, Debian's pacemaker and corosync)");
        return;
    }
    assert!(
        !sh("pgrep -x pacemakerd").0,
        "a Pacemaker runs already on this machine"
    );
    let tmp = tempfile::tempdir().unwrap();
    let (disk, state) = (tmp.path().join("disk"), tmp.path().join("state"));
    std::fs::create_dir_all(&state).unwrap();
    let installed = Command::new(env!("CARGO_BIN_EXE_mqemu"))
        .args(["ocf", "install"])
        .status()
        .unwrap();
    assert!(installed.success());
    let _daemons = start_daemons(tmp.path());
    assert!(sh("crm_attribute --type crm_config --name stonith-enabled --update false").0);
    let group = format!(
        r#"<group id="vs1-group"><primitive id="vs1" class="ocf" provider="mqemu" type="vserver"><instance_attributes id="vs1-ia"><nvpair id="vs1-name" name="name" value="VS1"/><nvpair id="vs1-storage" name="storage" value="{}"/><nvpair id="vs1-address" name="address" value="127.72.0.11"/><nvpair id="vs1-port" name="port" value="18040"/><nvpair id="vs1-state" name="state_dir" value="{}"/></instance_attributes><operations><op id="vs1-mon" name="monitor" interval="1s" timeout="20s"/></operations></primitive></group>"#,
        disk.display(),
        state.display()
    );
    let (ok, out) = sh(&format!(
        "cibadmin --create -o resources --xml-text '{group}'"
    ));
    assert!(ok, "{out}");
    wait_for("vs1 started", 60, answers);
    BlockingClient::connect(ADDRESS)
        .unwrap()
        .create_queue(Q, QueueProps::transactional())
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let sender = client(stop.clone(), acked.clone());
    let flow = |n: usize| {
        let before = acked.lock().unwrap().len();
        wait_for("messages flow", 60, || {
            acked.lock().unwrap().len() >= before + n
        });
    };
    flow(20);

    // The server dies (`MQEMU_PACEMAKER_KILLS` times, once by default): the failed monitor
    // makes Pacemaker restart it, fencing the storage each time.
    let kills: u64 = std::env::var("MQEMU_PACEMAKER_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut recoveries = Vec::new();
    for _ in 0..kills {
        let pid = server_pid(&state).expect("a running server");
        let before = acked.lock().unwrap().len();
        sh(&format!("kill -9 {pid}"));
        let killed = Instant::now();
        wait_for("a commit through the restarted server", 60, || {
            server_pid(&state).is_some_and(|p| p != pid) && acked.lock().unwrap().len() > before
        });
        recoveries.push(killed.elapsed());
    }
    recoveries.sort();
    eprintln!(
        "pacemaker: kill to the first commit through the address after the restart, {} kills \
         (monitor interval 1 s): p50 {:?} max {:?}",
        kills,
        recoveries[recoveries.len() / 2],
        recoveries.last().unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(disk.join("CURRENT"))
            .unwrap()
            .trim(),
        (1 + kills).to_string(),
        "each restart fenced and sealed the storage"
    );
    assert!(
        status().contains("vs1 1000ms-interval monitor on node1 returned 'error'"),
        "the failed monitor is recorded"
    );
    flow(20);

    // Stopped and started again by the administrator: a clean stop, the same generation.
    assert!(sh("crm_resource --resource vs1 --meta --set-parameter target-role --parameter-value Stopped").0);
    wait_for("vs1 stopped", 60, || {
        !answers() && server_pid(&state).is_none()
    });
    assert!(disk.join("RELEASED").exists());
    assert!(sh("crm_resource --resource vs1 --meta --set-parameter target-role --parameter-value Started").0);
    wait_for("vs1 started again", 60, answers);
    flow(20);
    stop.store(true, Ordering::SeqCst);
    sender.join().unwrap();
    assert_eq!(
        std::fs::read_to_string(disk.join("CURRENT"))
            .unwrap()
            .trim(),
        (1 + kills).to_string(),
        "a clean stop and start opened the same generation"
    );

    // Every acknowledged send is there, once.
    let c = BlockingClient::connect(ADDRESS).unwrap();
    let q = c.open(Q).unwrap();
    let mut seen = HashSet::new();
    while let Ok(m) = q.receive(Duration::ZERO, Tx::None) {
        let body = String::from_utf8_lossy(&m.body).into_owned();
        assert!(seen.insert(body.clone()), "{body} twice");
    }
    let acked = acked.lock().unwrap();
    let lost: Vec<&String> = acked.iter().filter(|b| !seen.contains(*b)).collect();
    assert!(
        lost.is_empty(),
        "lost {} of {}: {lost:?}",
        lost.len(),
        acked.len()
    );
    eprintln!(
        "pacemaker: {} sends acknowledged across a restart and a stop/start, {} in the queue, \
         lost 0, duplicated 0",
        acked.len(),
        seen.len()
    );
}
