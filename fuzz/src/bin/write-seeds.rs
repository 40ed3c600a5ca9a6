//! Writes every target's seeds (`mqemu_fuzz::seeds`) to `fuzz/corpus/<target>/`, named by
//! content and replacing the previous `seed-*` files, so a fresh campaign starts from the
//! project's own inputs.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, _) in mqemu_fuzz::TARGETS {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        // Seeds hold times and random ids, so each run's differ: replace, not add to, the last.
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))
            {
                std::fs::remove_file(path)?;
            }
        }
        for seed in mqemu_fuzz::seeds::seeds(target) {
            let name = format!("seed-{:08x}", crc32fast::hash(&seed));
            std::fs::write(dir.join(name), &seed)?;
        }
        println!("{target}: {}", dir.display());
    }
    Ok(())
}
