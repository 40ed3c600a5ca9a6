//! Runs the loom models of `mqcore`'s hot path as part of `cargo test --workspace`.
//!
//! Loom needs the whole crate built with `--cfg loom`, so this test runs a nested cargo in its own
//! target directory (`target/loom`), with preemptions bounded at 2. `MQEMU_SKIP_LOOM=1` skips it
//! for quick local iterations; CI never sets it.

use std::path::Path;
use std::process::Command;

#[test]
fn loom_models_of_the_hot_path_pass() {
    if std::env::var_os("MQEMU_SKIP_LOOM").is_some() {
        eprintln!("MQEMU_SKIP_LOOM is set: loom models skipped");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .current_dir(root)
        .args(["test", "-p", "mqcore", "--lib", "--release", "loom_"])
        .env("RUSTFLAGS", "--cfg loom")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("LOOM_MAX_PREEMPTIONS", "2")
        .env("CARGO_TARGET_DIR", root.join("target").join("loom"))
        .output()
        .expect("cargo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "loom models failed:\n{stdout}\n{stderr}"
    );
    // Guard against a filter that matches nothing: the models must actually have run.
    let passed: usize = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("test result: ok. "))
        .filter_map(|l| l.split(' ').next()?.parse::<usize>().ok())
        .sum();
    assert!(
        passed >= 6,
        "expected at least 6 loom models to run:\n{stdout}"
    );
}
