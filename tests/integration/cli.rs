//! The `mqemu` binary, run as a user would.

use std::process::Command;

fn mqemu() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mqemu"))
}

#[test]
fn bench_reports_throughput_as_json() {
    for mode in ["express", "recoverable", "transactional"] {
        let out = mqemu()
            .args([
                "bench",
                "--count",
                "2000",
                "--size",
                "64",
                "--producers",
                "2",
            ])
            .args(["--consumers", "2", "--mode", mode, "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report = String::from_utf8(out.stdout).unwrap();
        assert!(report.contains("\"count\":2000"), "{report}");
        assert!(report.contains("\"msgs_per_sec\":"), "{report}");
    }
}

#[test]
fn bad_arguments_are_refused_with_a_clear_error() {
    let out = mqemu().args(["bench", "--size", "4"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--size"), "{err}");
}

/// A `mqemu serve` child on a free port, killed if the test fails.
struct Serve {
    child: std::process::Child,
    addr: String,
}

impl Serve {
    fn start(dir: &std::path::Path, extra: &[&str]) -> Serve {
        use std::io::BufRead;
        let mut child = mqemu()
            .current_dir(dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Serve { child, addr }
    }

    /// Runs a client command against this server; (success, stdout, stderr).
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = mqemu()
            .args(args)
            .args(["--server", &self.addr])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// SIGTERM, then the exit status.
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

#[test]
fn serve_and_the_client_commands() {
    let dir = tempfile::tempdir().unwrap();
    let s = Serve::start(dir.path(), &[]);
    let q = r".\private$\orders";
    let (ok, out, err) = s.run(&["queue", "create", q, "--transactional", "--label", "L"]);
    assert!(ok, "{err}");
    assert!(out.contains("created"), "{out}");
    let (ok, _, err) = s.run(&["send", q, "--body", "hello", "--tx", "--label", "greeting"]);
    assert!(ok, "{err}");
    // A non-transactional send to a transactional queue fails with MSMQ's code.
    let (ok, _, err) = s.run(&["send", q, "--body", "x"]);
    assert!(!ok);
    assert!(err.contains("MQ_ERROR_TRANSACTION_USAGE"), "{err}");
    let (ok, out, err) = s.run(&["queue", "list", "--json"]);
    assert!(ok, "{err}");
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list[0]["message_count"], 1, "{out}");
    let (ok, out, _) = s.run(&["peek", r"DIRECT=TCP:127.0.0.1\private$\orders", "--json"]);
    assert!(ok);
    let m: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(m["body"], "hello");
    assert_eq!(m["label"], "greeting");
    let (ok, out, err) = s.run(&["receive", q, "--tx"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "hello");
    let (ok, _, err) = s.run(&["receive", q, "--timeout", "100ms"]);
    assert!(!ok);
    assert!(err.contains("MQ_ERROR_IO_TIMEOUT"), "{err}");
    let (ok, out, _) = s.run(&["stats", "--json"]);
    assert!(ok);
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(st["durable"], true);
    let (ok, out, _) = s.run(&["queue", "show", q]);
    assert!(ok && out.contains("transactional true"), "{out}");
    assert!(s.run(&["queue", "purge", q]).0);
    assert!(s.run(&["queue", "delete", q]).0);
    let (ok, _, err) = s.run(&["queue", "show", q]);
    assert!(!ok && err.contains("MQ_ERROR_QUEUE_NOT_FOUND"), "{err}");
    assert!(s.terminate().success(), "SIGTERM is a clean exit");
    assert!(
        dir.path().join("mqemu-data").is_dir(),
        "the default data directory"
    );
}

#[test]
fn serve_reads_a_config_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mqemu.toml"),
        r#"
compat = "msmq3"
in_memory = true

[[queue]]
path = '.\private$\declared'
transactional = true

[[user]]
name = "app"
token = "t0ken"
queues = { declared = ["send", "peek"] }
"#,
    )
    .unwrap();
    let s = Serve::start(dir.path(), &["--config", "mqemu.toml"]);
    let (ok, _, err) = s.run(&["stats"]);
    assert!(!ok && err.contains("MQ_ERROR_ACCESS_DENIED"), "{err}");
    let with = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend(["--token", "t0ken"]);
        s.run(&a)
    };
    let (ok, _, err) = with(&["send", r".\private$\declared", "--body", "b", "--tx"]);
    assert!(ok, "{err}");
    let (ok, out, _) = with(&["peek", r".\private$\declared"]);
    assert!(ok && out.trim() == "b", "{out}");
    let (ok, _, err) = with(&["receive", r".\private$\declared"]);
    assert!(!ok && err.contains("MQ_ERROR_ACCESS_DENIED"), "{err}");
    let (ok, out, _) = with(&["stats", "--json"]);
    assert!(ok && out.contains("\"Msmq3\""), "{out}");
    assert!(s.terminate().success());
    assert!(!dir.path().join("mqemu-data").exists(), "in memory");
}
