//! Replays every committed input of every fuzz target through its check, without a fuzzer: the
//! seeds (`corpus/<target>/`), what campaigns kept, and each finding's reproducer
//! (`regressions/<target>/`), so a fixed bug stays fixed in the normal `cargo test`.

use std::path::PathBuf;

fn inputs(kind: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, Vec<u8>)> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_committed_input_passes_its_targets_check() {
    for (target, check) in mqemu_fuzz::TARGETS {
        let corpus = inputs("corpus", target);
        assert!(!corpus.is_empty(), "{target} has no committed corpus");
        for (path, bytes) in corpus.iter().chain(&inputs("regressions", target)) {
            eprintln!("{}", path.display());
            check(bytes);
        }
    }
}

#[test]
fn the_seeds_as_generated_pass_too() {
    for (target, check) in mqemu_fuzz::TARGETS {
        let seeds = mqemu_fuzz::seeds::seeds(target);
        assert!(!seeds.is_empty(), "{target}");
        for s in seeds {
            check(&s);
        }
    }
}

#[test]
fn the_configuration_seeds_are_accepted_so_the_fuzzer_starts_inside_the_grammar() {
    for seed in mqemu_fuzz::seeds::seeds("serve_config") {
        let text = String::from_utf8(seed).unwrap();
        if let Err(e) = mqemu::config::parse(&text) {
            panic!("{e}\n{text}");
        }
    }
    let cluster = &mqemu_fuzz::seeds::seeds("cluster_config")[0];
    mqcluster::ClusterConfig::parse(std::str::from_utf8(cluster).unwrap()).unwrap();
}
