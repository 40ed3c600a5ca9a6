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
