//! The OCF resource agent (`mqemu ocf`, `ocf:mqemu:vserver`): its actions and exit codes as
//! Pacemaker sees them, the storage fencing when a second node starts the virtual server
//! without a clean stop (no STONITH), and `ocf-tester` (Debian's resource-agents) where it is
//! installed and we are root (CI; `MQEMU_REQUIRE_PACEMAKER` makes its absence a failure).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mqemu::net::{BlockingClient, Tx};
use mqemu::{ErrorCode, Message, QueueProps};

const Q: &str = r".\private$\orders";

/// Runs `mqemu ocf ACTION` with the agent's parameters; its exit code.
fn ocf(action: &str, storage: &Path, state: &Path, address: &str) -> i32 {
    ocf_with(action, storage, state, address, &[])
}

/// [`ocf`] with more `OCF_RESKEY_*` parameters.
fn ocf_with(
    action: &str,
    storage: &Path,
    state: &Path,
    address: &str,
    more: &[(&str, &Path)],
) -> i32 {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mqemu"));
    for (k, v) in more {
        cmd.env(format!("OCF_RESKEY_{k}"), v);
    }
    let out = cmd
        .args(["ocf", action])
        .env("OCF_RESKEY_name", "VS1")
        .env("OCF_RESKEY_storage", storage)
        .env("OCF_RESKEY_address", address)
        .env("OCF_RESKEY_port", "18032")
        .env("OCF_RESKEY_state_dir", state)
        .env("OCF_RESOURCE_INSTANCE", "vs1")
        .output()
        .unwrap();
    if !out.status.success() {
        eprintln!(
            "ocf {action}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    out.status.code().unwrap()
}

/// Stops whatever a test started, even when it fails.
struct Agents<'a>(Vec<(&'a Path, &'a Path, &'a str)>);

impl Drop for Agents<'_> {
    fn drop(&mut self) {
        for (storage, state, address) in &self.0 {
            ocf("stop", storage, state, address);
        }
    }
}

#[test]
fn the_agent_starts_monitors_stops_and_fences_a_second_start_without_a_clean_stop() {
    let tmp = tempfile::tempdir().unwrap();
    let storage = tmp.path().join("disk");
    let (node1, node2) = (tmp.path().join("node1"), tmp.path().join("node2"));
    let (a1, a2) = ("127.71.1.11", "127.71.1.12");
    let _agents = Agents(vec![(&storage, &node1, a1), (&storage, &node2, a2)]);
    // Nothing configured is a configuration error everywhere (6); a probe finds it stopped (7).
    let bare = Command::new(env!("CARGO_BIN_EXE_mqemu"))
        .args(["ocf", "validate-all"])
        .env_remove("OCF_RESKEY_name")
        .status()
        .unwrap();
    assert_eq!(bare.code(), Some(6));
    assert_eq!(ocf("monitor", &storage, &node1, a1), 7);
    assert_eq!(ocf("bogus", &storage, &node1, a1), 3);

    assert_eq!(ocf("start", &storage, &node1, a1), 0);
    assert_eq!(ocf("start", &storage, &node1, a1), 0, "start is idempotent");
    assert_eq!(ocf("monitor", &storage, &node1, a1), 0);
    let vs1 = BlockingClient::connect(&format!("{a1}:18032")).unwrap();
    vs1.create_queue(Q, QueueProps::transactional()).unwrap();
    vs1.send(Q, Message::new("one"), Tx::Single).unwrap();

    // A clean stop releases the storage: the next start opens the same generation.
    assert_eq!(ocf("stop", &storage, &node1, a1), 0);
    assert_eq!(ocf("stop", &storage, &node1, a1), 0, "stop is idempotent");
    assert_eq!(ocf("monitor", &storage, &node1, a1), 7);
    assert!(storage.join("RELEASED").exists());
    assert_eq!(ocf("start", &storage, &node1, a1), 0);
    assert_eq!(
        std::fs::read_to_string(storage.join("CURRENT"))
            .unwrap()
            .trim(),
        "1"
    );
    let vs1 = BlockingClient::connect(&format!("{a1}:18032")).unwrap();
    vs1.send(Q, Message::new("two"), Tx::Single).unwrap();

    // Another node starts it while the first still runs (a partition without STONITH): the
    // storage is fenced and sealed, the first server acknowledges nothing more, and its
    // monitor reports the failure (1) so that Pacemaker stops it.
    assert_eq!(ocf("start", &storage, &node2, a2), 0);
    assert_eq!(
        std::fs::read_to_string(storage.join("CURRENT"))
            .unwrap()
            .trim(),
        "2"
    );
    let refused = vs1.send(Q, Message::new("stale"), Tx::Single).unwrap_err();
    assert_eq!(refused.code(), ErrorCode::ServiceNotAvailable, "{refused}");
    assert_eq!(ocf("monitor", &storage, &node1, a1), 1);
    assert_eq!(ocf("stop", &storage, &node1, a1), 0);
    assert!(
        !storage.join("RELEASED").exists(),
        "a fenced server's stop releases nothing"
    );
    let vs1 = BlockingClient::connect(&format!("{a2}:18032")).unwrap();
    let q = vs1.open(Q).unwrap();
    let mut bodies = Vec::new();
    while let Ok(m) = q.receive(Duration::ZERO, Tx::None) {
        bodies.push(String::from_utf8_lossy(&m.body).into_owned());
    }
    bodies.sort();
    assert_eq!(bodies, ["one", "two"]);
    assert_eq!(ocf("monitor", &storage, &node2, a2), 0);
}

/// A server configured with users refuses a handshake without a token: it is up all the same,
/// and the agent's start and monitor say so.
#[test]
fn a_server_with_users_is_running_to_the_agent() {
    let tmp = tempfile::tempdir().unwrap();
    let (storage, state) = (tmp.path().join("disk"), tmp.path().join("state"));
    let config = tmp.path().join("serve.toml");
    std::fs::write(
        &config,
        "[[user]]\nname = \"ops\"\ntoken = \"t\"\nadmin = true\n",
    )
    .unwrap();
    let address = "127.71.3.11";
    let more: &[(&str, &Path)] = &[("config", &config)];
    assert_eq!(ocf_with("validate-all", &storage, &state, address, more), 0);
    assert_eq!(ocf_with("start", &storage, &state, address, more), 0);
    assert_eq!(ocf_with("monitor", &storage, &state, address, more), 0);
    assert_eq!(ocf_with("stop", &storage, &state, address, more), 0);
    assert_eq!(ocf_with("monitor", &storage, &state, address, more), 7);
}

#[test]
fn the_agent_passes_ocf_tester() {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let tester = Command::new("sh")
        .args(["-c", "command -v ocf-tester"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !(is_root && tester) {
        assert!(
            std::env::var_os("MQEMU_REQUIRE_PACEMAKER").is_none(),
            "MQEMU_REQUIRE_PACEMAKER is set, and ocf-tester or root is missing"
        );
        eprintln!("skipped: ocf-tester needs root and Debian's resource-agents");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // ocf-tester runs meta-data as `nobody`, who must reach the agent.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mqemu"))
        .args(["ocf", "install"])
        .env("OCF_ROOT", tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let agent = tmp.path().join("resource.d/mqemu/vserver");
    let storage = tmp.path().join("disk");
    let state = tmp.path().join("state");
    let out = Command::new("ocf-tester")
        .args(["-n", "vs1", "-o", "name=VS1", "-o", "address=127.71.2.11"])
        .args(["-o", "port=18033"])
        .arg("-o")
        .arg(format!("storage={}", storage.display()))
        .arg("-o")
        .arg(format!("state_dir={}", state.display()))
        .arg(&agent)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("passed all tests"), "{text}");
}
