//! Tidy checks over the workspace's source, in rust-analyzer's manner: the rules ARCHITECTURE.md
//! states about the code's shape, checked so a later change cannot quietly break them.
//!
//! - every `.rs` file begins with a `//!` line saying why it exists;
//! - mqcore's layers depend one way: the leaf modules, `storage`, the per-queue data, then
//!   `persistence` and the step's changes, then the queue manager and its handles on top;
//! - mqnet names no type of `mqcore::storage` (the async host's plumbing is `mqcore::step`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("mqcore sits in the workspace")
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("readable directory").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_begins_with_a_line_saying_why_it_exists() {
    let root = workspace_root();
    let mut files = Vec::new();
    for dir in ["src", "mqcore", "mqnet", "tests", "benches"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 50, "found only {} files", files.len());
    let missing: Vec<String> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).expect("readable source");
            !text.starts_with("//! ")
        })
        .map(|f| f.strip_prefix(&root).unwrap_or(f).display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "these files do not begin with a `//!` line saying why they exist: {missing:#?}"
    );
}

/// The module path of a file under `mqcore/src` (`queue/store/mod.rs` is `queue::store`).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_str().expect("utf-8 path").to_owned())
        .collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_owned());
    }
    parts
}

/// Source text without comments (line comments and doc comments), good enough for finding paths.
fn code_of(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Expands `a::{b, c::{d, e}}` into `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str, prefix: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head = tree[..open].trim_end_matches("::").trim();
        let inner = &tree[open + 1..tree.rfind('}').expect("balanced use")];
        let base = join(prefix, head);
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&inner[start..i], &base, out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand(&inner[start..], &base, out);
    } else if !tree.is_empty() {
        let path = tree.split(" as ").next().unwrap_or(tree).trim();
        out.push(join(prefix, path));
    }
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_owned(),
        (_, true) => a.to_owned(),
        _ => format!("{a}::{b}"),
    }
}

/// Every crate-internal module path a file names, resolved to `crate::...` form.
fn crate_paths(module: &[String], code: &str) -> BTreeSet<String> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let before = rest[..i].chars().last();
        rest = &rest[i + 4..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let Some(end) = rest.find(';') else { break };
        expand(&rest[..end], "", &mut paths);
    }
    // Paths written inline: `crate::manager::Inner` in a signature.
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i..];
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        paths.push(rest[..end].trim_end_matches(':').to_owned());
        rest = &rest[end..];
    }
    let mut out = BTreeSet::new();
    for p in paths {
        let mut segs: Vec<&str> = p.split("::").collect();
        let mut base: Vec<String> = match segs.first() {
            Some(&"crate") => {
                segs.remove(0);
                Vec::new()
            }
            Some(&"super") | Some(&"self") => module.to_vec(),
            _ => continue,
        };
        while let Some(&s) = segs.first() {
            match s {
                "super" => {
                    base.pop();
                }
                "self" => {}
                _ => break,
            }
            segs.remove(0);
        }
        base.extend(segs.iter().map(|s| s.to_string()));
        out.insert(base.join("::"));
    }
    out
}

/// mqcore's layers, lowest first: a file may name modules of its own layer or below.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "leaf",
        &[
            "error", "ids", "clock", "name", "message", "loom", "blocking",
        ],
    ),
    ("storage", &["storage"]),
    (
        "queue data",
        &[
            "queue::store",
            "queue::cold",
            "queue::private",
            "queue::props",
            "queue::outgoing",
            "timer",
        ],
    ),
    ("persistence", &["persistence", "tx::held", "step::changes"]),
    (
        "queue manager",
        &[
            "manager", "step", "tx", "queue", "triggers", "transfer", "fuzzing",
        ],
    ),
];

/// The layer of a module path: the longest matching prefix wins.
fn layer_of(path: &str) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for (i, (_, prefixes)) in LAYERS.iter().enumerate() {
        for p in *prefixes {
            let hit = path == *p || path.starts_with(&format!("{p}::"));
            if hit && best.is_none_or(|(len, _)| p.len() > len) {
                best = Some((p.len(), i));
            }
        }
    }
    best.map(|(_, i)| i)
}

#[test]
fn mqcore_layers_depend_one_way() {
    let src = workspace_root().join("mqcore/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        let name = module.join("::");
        if name.is_empty() || name.ends_with("tests") || name.contains("loom_tests") {
            continue;
        }
        // A test module inside a file may reach anything.
        let text = std::fs::read_to_string(file).expect("readable source");
        let text = match text.find("\nmod tests {") {
            Some(i) => &text[..text[..i].rfind("#[cfg(").unwrap_or(i)],
            None => &text,
        };
        let Some(mine) = layer_of(&name) else {
            wrong.push(format!("{name}: in no layer; add it to LAYERS in tidy.rs"));
            continue;
        };
        for used in crate_paths(&module, &code_of(text)) {
            match layer_of(&used) {
                Some(theirs) if theirs > mine => wrong.push(format!(
                    "{name} ({}) names {used} ({})",
                    LAYERS[mine].0, LAYERS[theirs].0
                )),
                _ => {}
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layering (ARCHITECTURE.md): {wrong:#?}"
    );
}

#[test]
fn mqnet_names_no_storage_type() {
    let src = workspace_root().join("mqnet/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(!files.is_empty());
    let offenders: Vec<String> = files
        .iter()
        .filter(|f| {
            code_of(&std::fs::read_to_string(f).expect("readable source"))
                .contains("mqcore::storage")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "mqnet must not name mqcore::storage: {offenders:?}"
    );
}
