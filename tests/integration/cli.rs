//! The `mqemu` binary, run as a user would.

use std::process::Command;
use std::time::Duration;

use crate::support::eventually;

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

/// A `mqemu serve` child on a free port, killed if the test fails; its stderr is kept and shown
/// when the test fails.
struct Serve {
    child: std::process::Child,
    addr: String,
    stderr: Stderr,
}

/// A child's stderr, read to its end on a thread of its own (so a chatty child never blocks on
/// a full pipe) and shown when the test fails.
struct Stderr {
    text: std::sync::Arc<std::sync::Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Stderr {
    /// Starts reading `child`'s piped stderr.
    fn of(child: &mut std::process::Child) -> Stderr {
        use std::io::BufRead;
        let pipe = child.stderr.take().expect("stderr is piped");
        let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = text.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut t = sink.lock().unwrap_or_else(|e| e.into_inner());
                t.push_str(&line);
                t.push('\n');
            }
        });
        Stderr {
            text,
            reader: Some(reader),
        }
    }

    /// Everything the child wrote, once it has exited (or closed its stderr).
    fn wait(&mut self) -> String {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.text.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Serve {
    fn start(dir: &std::path::Path, extra: &[&str]) -> Serve {
        Serve::start_on(dir, "127.0.0.1:0", extra)
    }

    fn start_on(dir: &std::path::Path, listen: &str, extra: &[&str]) -> Serve {
        use std::io::BufRead;
        let mut child = mqemu()
            .current_dir(dir)
            .args(["serve", "--listen", listen])
            .args(extra)
            .env("NO_COLOR", "1") // plain log lines in a failed test's output
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = Stderr::of(&mut child);
        let mut line = String::new();
        let read = std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
        let Some(addr) = line.trim().strip_prefix("listening on ").map(str::to_owned) else {
            let _ = child.kill();
            let status = child.wait();
            panic!(
                "mqemu serve: unexpected first line {line:?} ({read:?}), exit {status:?}; stderr:\n{}",
                stderr.wait()
            );
        };
        Serve {
            child,
            addr,
            stderr,
        }
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

    /// SIGTERM; panics, with the server's stderr, unless that is a clean exit.
    fn terminate(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "SIGTERM is a clean exit, not {status}; mqemu serve's stderr:\n{}",
            self.stderr.wait()
        );
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        // Not yet shown by `terminate`'s own failure.
        if std::thread::panicking() && self.stderr.reader.is_some() {
            let _ = self.child.wait();
            eprintln!(
                "mqemu serve on {} (killed), its stderr:\n{}",
                self.addr,
                self.stderr.wait()
            );
        }
    }
}

#[test]
fn bench_measures_several_targets_in_turn_and_sums_them_up() {
    let dir = tempfile::tempdir().unwrap();
    let s = Serve::start(dir.path(), &[]);
    let target = format!("mqemu://{}", s.addr);
    let out = mqemu()
        .args(["bench", "--target", &target, "--target", &target])
        .args(["--rounds", "2", "--count", "300", "--size", "64"])
        .args(["--mode", "transactional", "--json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Two rounds of two runs, then the summary.
    assert_eq!(lines.len(), 5, "{stdout}");
    for run in &lines[..4] {
        assert_eq!(run["received"], 300, "{run}");
        assert!(run["msgs_per_sec"].as_f64().unwrap() > 0.0, "{run}");
    }
    let summary = &lines[4];
    assert_eq!(summary["rounds"], 2, "{summary}");
    let rows = summary["summary"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{summary}");
    assert_eq!(rows[0]["first_over_this"], 1.0, "{summary}");
    // The second target's ratio is the median of the rounds' first-over-second rates.
    let rate = |i: usize| lines[i]["msgs_per_sec"].as_f64().unwrap();
    let ratios = [rate(0) / rate(1), rate(2) / rate(3)];
    let expected = (ratios[0] + ratios[1]) / 2.0;
    let got = rows[1]["first_over_this"].as_f64().unwrap();
    assert!(
        (got - expected).abs() < 0.011,
        "{got} against {expected}: {summary}"
    );
}

/// `--rtt` with several targets measures each under the same placements: the first one's pinning
/// does not leave the next one a single CPU.
#[test]
fn bench_rtt_places_every_target_alike() {
    let dir = tempfile::tempdir().unwrap();
    let s = Serve::start(dir.path(), &[]);
    let target = format!("mqemu://{}", s.addr);
    let out = mqemu()
        .args(["bench", "--rtt", "--target", &target, "--target", &target])
        .args(["--count", "200", "--size", "64", "--json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let placements: Vec<Vec<String>> = stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["placements"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect()
        })
        .collect();
    assert_eq!(placements.len(), 2, "{stdout}");
    assert_eq!(placements[0], placements[1], "{stdout}");
    if std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2) {
        assert!(
            placements[1].contains(&"across_cpus".to_owned()),
            "{stdout}"
        );
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
    s.terminate();
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
    s.terminate();
    assert!(!dir.path().join("mqemu-data").exists(), "in memory");
}

#[test]
fn global_flags_go_before_or_after_the_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mqemu.toml"),
        r#"
in_memory = true

[[queue]]
path = '.\private$\declared'

[[user]]
name = "app"
token = "t0ken"
queues = { declared = ["send", "peek"] }
"#,
    )
    .unwrap();
    let s = Serve::start(dir.path(), &["--config", "mqemu.toml"]);
    let addr = s.addr.as_str();
    let list = |args: &[&str]| {
        let out = mqemu()
            .env_remove("MQEMU_TOKEN")
            .args(args)
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "mqemu {args:?}: {stderr}");
        let queues: serde_json::Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("mqemu {args:?} printed no JSON ({e}): {stdout}"));
        assert_eq!(
            queues[0]["path"], r"localhost\private$\declared",
            "mqemu {args:?}"
        );
    };
    let t = "t0ken";
    list(&["--server", addr, "--json", "--token", t, "queue", "list"]);
    list(&["queue", "list", "--server", addr, "--json", "--token", t]);
    list(&["--json", "queue", "--token", t, "list", "--server", addr]);
    // The token is what lets them in: without it the same listing is refused.
    let out = mqemu()
        .env_remove("MQEMU_TOKEN")
        .args(["queue", "list", "--server", addr, "--json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("MQ_ERROR_ACCESS_DENIED"),
        "{err}"
    );
    // And without --json the same listing is a table, wherever the other flags go.
    let out = mqemu()
        .args(["--token", t, "queue", "list", "--server", addr])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && table.starts_with("QUEUE"),
        "{table}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.terminate();
}

#[cfg(unix)]
#[test]
fn triggers_are_administered_from_the_cli_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("flag");
    let s = Serve::start(dir.path(), &[]);
    let q = r".\private$\orders";
    let (ok, _, err) = s.run(&["queue", "create", q]);
    assert!(ok, "{err}");
    let action = format!("EXE\t/usr/bin/touch\t\"{}\"", flag.display());
    let (ok, out, err) = s.run(&[
        "rule",
        "add",
        "go",
        "--condition",
        "$MSG_LABEL_CONTAINS=go\t$MSG_BODY_CONTAINS=order\t",
        "--action",
        &action,
        "--description",
        "touch the flag",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains(r"$MSG_LABEL_CONTAINS=go\t$MSG_BODY_CONTAINS=order\t"),
        "{out}"
    );
    let (ok, _, err) = s.run(&[
        "trigger",
        "add",
        "watch",
        "--queue",
        q,
        "--type",
        "retrieval",
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = s.run(&["trigger", "attach", "watch", "go"]);
    assert!(ok, "{err}");
    // A label without "go" stays; one with it (and the body condition) is retrieved.
    let (ok, _, err) = s.run(&["send", q, "--body", "an order", "--label", "stop"]);
    assert!(ok, "{err}");
    let (ok, _, err) = s.run(&["send", q, "--body", "an order", "--label", "go now"]);
    assert!(ok, "{err}");
    eventually("the EXE action touched the flag", || flag.exists());
    eventually("the matching message is retrieved", || {
        let (_, out, _) = s.run(&["queue", "show", q, "--json"]);
        out.contains("\"message_count\":1")
    });
    let show = || {
        let (ok, out, err) = s.run(&["trigger", "show", "watch", "--json"]);
        assert!(ok, "{err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    // The counter moves just after the removal.
    eventually("the trigger counts the retrieval", || {
        show()["stats"]["retrieved"] == 1
    });
    let v = show();
    assert_eq!(v["rules"], serde_json::json!(["go"]));
    assert_eq!(v["type"], "retrieval");
    // MSMQ's refusals, by name.
    let (ok, _, err) = s.run(&["trigger", "add", "second", "--queue", q, "--type", "peek"]);
    assert!(
        !ok && err.contains("MQTRIG_ERROR_MULTIPLE_RECEIVE_TRIGGER"),
        "{err}"
    );
    let long = "n".repeat(129);
    let (ok, _, err) = s.run(&["rule", "add", &long, "--action", "EXE\t/bin/true"]);
    assert!(!ok && err.contains("MQ_ERROR_INVALID_PARAMETER"), "{err}");
    let (ok, _, err) = s.run(&["trigger", "disable", "watch"]);
    assert!(ok, "{err}");
    s.terminate();

    // Restarted on the same data directory, the definitions are there.
    let s = Serve::start(dir.path(), &[]);
    let (ok, out, err) = s.run(&["rule", "list", "--json"]);
    assert!(ok, "{err}");
    let rules: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rules[0]["name"], "go");
    assert_eq!(rules[0]["action"], action);
    let (ok, out, _) = s.run(&["trigger", "list"]);
    assert!(
        ok && out.contains("watch") && out.contains("false"),
        "{out}"
    );
    let (ok, _, err) = s.run(&["trigger", "detach", "watch", "go"]);
    assert!(ok, "{err}");
    let (ok, _, err) = s.run(&["rule", "delete", "go"]);
    assert!(ok, "{err}");
    let (ok, _, err) = s.run(&["trigger", "delete", "watch"]);
    assert!(ok, "{err}");
    let (ok, out, _) = s.run(&["trigger", "list", "--json"]);
    assert!(ok && out.trim() == "[]", "{out}");
    s.terminate();
}

#[cfg(unix)]
#[test]
fn the_config_file_declares_rules_and_triggers() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("declared-flag");
    std::fs::write(
        dir.path().join("mqemu.toml"),
        format!(
            r#"
in_memory = true

[triggers]
workers = 2
action_timeout_secs = 10

[[queue]]
path = '.\private$\in'

[[rule]]
name = "readable"
conditions = [{{ priority_greater_than = 4 }}]
action = {{ exe = {{ path = "/usr/bin/touch", params = ['"{}"'] }} }}

[[rule]]
name = "msmq"
condition = "$MSG_LABEL_CONTAINS=x\t"
action = "EXE\t/bin/true"

[[trigger]]
name = "t"
queue = '.\private$\in'
type = "peek"
rules = ["msmq", "readable"]
"#,
            flag.display()
        ),
    )
    .unwrap();
    let s = Serve::start(dir.path(), &["--config", "mqemu.toml"]);
    let (ok, out, err) = s.run(&["trigger", "show", "t", "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["rules"], serde_json::json!(["msmq", "readable"]));
    let (ok, _, err) = s.run(&["send", r".\private$\in", "--body", "b", "--priority", "6"]);
    assert!(ok, "{err}");
    eventually("the declared rule ran", || flag.exists());
    let (ok, out, _) = s.run(&["peek", r".\private$\in"]);
    assert!(
        ok && out.trim() == "b",
        "a peek trigger leaves the message: {out}"
    );
    s.terminate();
}

#[cfg(unix)]
#[test]
fn a_declared_peek_trigger_runs_once_per_start_on_the_messages_it_finds() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("runs.log");
    std::fs::write(
        dir.path().join("mqemu.toml"),
        format!(
            r#"
[[queue]]
path = '.\private$\audit'
transactional = true            # so --tx sends are recoverable and survive the restart

[[rule]]
name = "log"
condition = ""
action = "EXE\t/bin/sh\t\"-c\"\t\"echo $0 >> {}\"\t$MSG_LABEL"

[[trigger]]
name = "audit"
queue = '.\private$\audit'
type = "peek"
serialized = true
rules = ["log"]
"#,
            log.display()
        ),
    )
    .unwrap();
    let lines = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let s = Serve::start(dir.path(), &["--config", "mqemu.toml"]);
    let (ok, _, err) = s.run(&[
        "send",
        r".\private$\audit",
        "--body",
        "b",
        "--label",
        "first",
        "--tx",
    ]);
    assert!(ok, "{err}");
    eventually("the first run", || lines().len() == 1);
    s.terminate();
    // Restarted with the same configuration on the same data: MSMQ processes what remains in
    // the queue again, once; re-applying the declared rule list must not start a second walk.
    let s = Serve::start(dir.path(), &["--config", "mqemu.toml"]);
    eventually("the restart's run", || lines().len() >= 2);
    let (ok, _, err) = s.run(&[
        "send",
        r".\private$\audit",
        "--body",
        "b",
        "--label",
        "second",
        "--tx",
    ]);
    assert!(ok, "{err}");
    eventually("the arrival's run", || {
        lines().contains(&"second".to_owned())
    });
    assert_eq!(lines(), ["first", "first", "second"]);
    s.terminate();
}

/// The README's two-server walkthrough, command for command (on a free port instead of 18010):
/// a transactional message sent through alpha reaches beta's queue, the outgoing queue shows in
/// management, and pause and resume work from the command line.
#[test]
fn the_readmes_two_servers_exchange_a_transactional_message() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::support::free_port();
    let alpha = Serve::start_on(
        dir.path(),
        &format!("127.0.0.2:{port}"),
        &["--data", "./alpha"],
    );
    let beta = Serve::start_on(
        dir.path(),
        &format!("127.0.0.3:{port}"),
        &["--data", "./beta"],
    );
    let dest = r"DIRECT=TCP:127.0.0.3\private$\orders";
    let ok = |(ok, out, err): (bool, String, String)| {
        assert!(ok, "stdout: {out}\nstderr: {err}");
        out
    };
    ok(beta.run(&["queue", "create", r".\private$\orders", "--transactional"]));
    ok(alpha.run(&["send", dest, "--body", "order 1", "--tx"]));
    let list = ok(alpha.run(&["queue", "list", "--outgoing"]));
    assert!(list.contains(dest), "{list}");
    let got = ok(beta.run(&["receive", r".\private$\orders", "--timeout", "5s"]));
    assert!(got.contains("order 1"), "{got}");
    // Pause holds the next message in alpha; resume delivers it.
    ok(alpha.run(&["queue", "pause", dest]));
    ok(alpha.run(&["send", dest, "--body", "order 2", "--tx"]));
    let shown = ok(alpha.run(&["queue", "show", dest]));
    assert!(shown.contains("ONHOLD"), "{shown}");
    assert!(shown.contains("messages       1"), "{shown}");
    let (found, _, _) = beta.run(&["receive", r".\private$\orders", "--timeout", "200ms"]);
    assert!(!found, "a paused outgoing queue sent its message");
    ok(alpha.run(&["queue", "resume", dest]));
    let got = ok(beta.run(&["receive", r".\private$\orders", "--timeout", "5s"]));
    assert!(got.contains("order 2"), "{got}");
    alpha.terminate();
    beta.terminate();
}

/// `mqemu serve` beyond loopback with no users stops before it opens or binds anything, saying
/// what to configure (the test binds nothing: the refusal comes first).
#[test]
fn serve_refuses_to_be_open_beyond_loopback_by_accident() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--listen", "0.0.0.0:18999"][..],
        &["--http", "0.0.0.0:18998"][..],
    ] {
        let out = mqemu()
            .args(["serve", "--data"])
            .arg(dir.path().join("data"))
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} was served");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("MQ_ERROR_INVALID_PARAMETER") && err.contains("--allow-open"),
            "{args:?}: {err}"
        );
        assert!(
            !dir.path().join("data").exists(),
            "nothing was opened before the refusal"
        );
    }
}

/// `mqemu serve --tls-cert --tls-key` speaks TLS; the client commands reach it with --tls-ca
/// (and not without); SIGHUP serves a renewed certificate; beyond loopback, TLS alone lifts the
/// open-by-accident refusal.
#[test]
fn serve_speaks_tls_and_reloads_its_certificate_on_sighup() {
    use crate::tls::{openssl_subject, Ca};
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("cli test CA");
    let ca_file = ca.write(dir.path(), "ca.crt");
    let files = ca.issue(dir.path(), "server", "first-cert", false);
    let (cert, key) = (
        files.cert.to_str().unwrap().to_owned(),
        files.key.to_str().unwrap().to_owned(),
    );
    let s = Serve::start(
        dir.path(),
        &["--in-memory", "--tls-cert", &cert, "--tls-key", &key],
    );
    let ca_arg = ca_file.to_str().unwrap().to_owned();
    let tls = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--tls-ca", &ca_arg]);
        s.run(&all)
    };
    let q = r".\private$\orders";
    let (ok, _, err) = tls(&["queue", "create", q]);
    assert!(ok, "{err}");
    let (ok, _, err) = tls(&["send", q, "--body", "over TLS"]);
    assert!(ok, "{err}");
    let (ok, out, err) = tls(&["receive", q]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "over TLS");
    // Without TLS, or with --tls and nothing to trust: refused, saying why.
    let (ok, _, err) = s.run(&["queue", "list"]);
    assert!(!ok, "a plaintext client was served");
    assert!(err.contains("MQ_ERROR"), "{err}");
    let (ok, _, err) = s.run(&["queue", "list", "--tls"]);
    assert!(!ok && err.contains("--tls-ca"), "{err}");
    let (ok, _, err) = s.run(&["queue", "list", "--insecure-skip-verify"]);
    assert!(ok, "{err}");
    // The bench: an mqemu+tls:// target, and an mqemu:// one under --tls, both over TLS.
    let target = format!("mqemu://{}", s.addr);
    let tls_target = format!("mqemu+tls://{}", s.addr);
    let small = ["--count", "100", "--size", "64"];
    let (ok, out, err) = tls(&[&["bench", "--target", &tls_target][..], &small].concat());
    assert!(ok && out.contains("received 100"), "{out}{err}");
    let (ok, out, err) = tls(&[&["bench", "--tls", "--target", &target][..], &small].concat());
    assert!(ok && out.contains("mqemu+tls://"), "{out}{err}");
    let (ok, _, err) = tls(&[&["bench", "--target", &target][..], &small].concat());
    assert!(!ok, "a plaintext bench was served: {err}");

    // A renewed certificate, then SIGHUP: OpenSSL sees the new one, and clients still work.
    let renewed = ca.issue(dir.path(), "renewed", "second-cert", false);
    std::fs::copy(&renewed.cert, &files.cert).unwrap();
    std::fs::copy(&renewed.key, &files.key).unwrap();
    let pid = s.child.id().to_string();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    let addr: std::net::SocketAddr = s.addr.parse().unwrap();
    if let Some(first) = openssl_subject(addr) {
        let start = std::time::Instant::now();
        let mut subject = first;
        while !subject.contains("second-cert") && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
            subject = openssl_subject(addr).unwrap();
        }
        assert!(subject.contains("second-cert"), "{subject}");
    }
    let (ok, _, err) = tls(&["queue", "list"]);
    assert!(ok, "{err}");
    s.terminate();

    // Beyond loopback, TLS without users is not refused as open (it would bind, so only the
    // refusal's absence is checked: a bad key file is the next thing to fail).
    let out = mqemu()
        .args(["serve", "--in-memory", "--listen", "0.0.0.0:0"])
        .args(["--tls-cert", &cert, "--tls-key", "/nonexistent.key"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("nonexistent.key") && !err.contains("--allow-open"),
        "{err}"
    );
}

/// `[transfer] tls_ca` in `mqemu serve`'s configuration: alpha reaches beta, named through the
/// host map, over TLS, checking beta's certificate against the computer name.
#[test]
fn serve_transfers_over_tls_when_configured() {
    use crate::tls::Ca;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("cli test CA");
    let ca_file = ca.write(dir.path(), "ca.crt");
    let files = ca.issue_for(dir.path(), "beta", &["beta"], "beta", false);
    let port = crate::support::free_port();
    let beta = Serve::start_on(
        dir.path(),
        &format!("127.0.0.3:{port}"),
        &[
            "--data",
            "./beta",
            "--tls-cert",
            files.cert.to_str().unwrap(),
            "--tls-key",
            files.key.to_str().unwrap(),
        ],
    );
    std::fs::write(
        dir.path().join("alpha.toml"),
        format!(
            "[hosts]\nbeta = \"127.0.0.3\"\n[transfer]\ntls_ca = {:?}\n",
            ca_file.to_str().unwrap()
        ),
    )
    .unwrap();
    let alpha = Serve::start_on(
        dir.path(),
        &format!("127.0.0.2:{port}"),
        &["--data", "./alpha", "--config", "alpha.toml"],
    );
    let ca_arg = ca_file.to_str().unwrap();
    let at_beta = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--tls-ca", ca_arg, "--tls-server-name", "beta"]);
        beta.run(&all)
    };
    let (ok, _, err) = at_beta(&["queue", "create", r".\private$\orders", "--transactional"]);
    assert!(ok, "{err}");
    let (ok, _, err) = alpha.run(&["send", r"beta\private$\orders", "--body", "sealed", "--tx"]);
    assert!(ok, "{err}");
    let (ok, out, err) = at_beta(&["receive", r".\private$\orders", "--timeout", "5s"]);
    assert!(ok, "{err}");
    assert!(out.contains("sealed"), "{out}");
    alpha.terminate();
    beta.terminate();
}

/// `mqemu capture decode` reads MS-MQQB as the spec prints it (hex) or as captured (raw bytes),
/// and says where a capture stops making sense.
#[test]
fn capture_decode_reads_msmq_binary_protocol_captures() {
    let vectors = include_str!("../../mqnet/tests/data/mqqb_4_1.txt");
    let hex = |id: &str| {
        vectors
            .lines()
            .find(|l| l.starts_with(&format!("{id} ")))
            .unwrap()
            .rsplit(' ')
            .next()
            .unwrap()
            .to_owned()
    };
    let dir = tempfile::tempdir().unwrap();
    let decode = |path: &std::path::Path| {
        let out = mqemu()
            .args(["capture", "decode"])
            .arg(path)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // The initiator's side of the spec's session, as hex with spaces and line breaks.
    let text = [hex("mqqb-4.1.3"), hex("mqqb-4.1.5"), hex("mqqb-4.1.8")].join("\n ");
    let path = dir.path().join("initiator.hex");
    std::fs::write(&path, text).unwrap();
    let (ok, out, err) = decode(&path);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("#1 @0 EstablishConnection, 572 bytes"),
        "{out}"
    );
    assert!(
        out.contains("client QM {557358d1-9150-9595-4997-b6e611ea26c6}"),
        "{out}"
    );
    assert!(
        out.contains("#2 @572 ConnectionParameters, 32 bytes"),
        "{out}"
    );
    assert!(out.contains("window 64"), "{out}");
    assert!(out.contains("#3 @604 SessionAck"), "{out}");

    // Raw bytes: a ping, then the spec's user message made whole (its dump is cut short).
    let bytes = |h: &str| -> Vec<u8> {
        (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect()
    };
    let mut raw = bytes(&hex("mqqb-4.1.1"));
    let mut message = bytes(&hex("mqqb-4.1.7"));
    let cut = message.clone();
    while message.len() < 2222 {
        message.extend_from_slice(b"a\0");
    }
    message.extend_from_slice(&[0, 0]);
    raw.extend_from_slice(&message);
    let path = dir.path().join("raw.bin");
    std::fs::write(&path, &raw).unwrap();
    let (ok, out, err) = decode(&path);
    assert!(ok, "{out}{err}");
    assert!(out.contains("#1 @0 Ping (UDP 3527): cookie 4"), "{out}");
    assert!(
        out.contains("#2 @24 UserMessage, 2224 bytes, express, priority 3"),
        "{out}"
    );
    assert!(out.contains(r"destination DIRECT=OS:a04bm02\q"), "{out}");
    assert!(out.contains("label \"mqsender label\""), "{out}");
    assert!(
        out.contains("body 2000 bytes (start): 61 00 61 00"),
        "{out}"
    );

    // Cut short, and garbage: an error naming the byte, with MSMQ's error name.
    let path = dir.path().join("cut.bin");
    std::fs::write(&path, &cut).unwrap();
    let (ok, _, err) = decode(&path);
    assert!(!ok);
    assert!(err.contains("MQ_ERROR_INVALID_PARAMETER"), "{err}");
    assert!(err.contains("2224 bytes, the capture has 1650"), "{err}");
    let path = dir.path().join("garbage.bin");
    std::fs::write(&path, b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let (ok, _, err) = decode(&path);
    assert!(!ok);
    assert!(err.contains("byte 0: not an MS-MQQB packet"), "{err}");
}
