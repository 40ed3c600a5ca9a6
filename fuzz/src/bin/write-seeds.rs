//! Writes every target's seeds (`mqemu_fuzz::seeds`) to `fuzz/corpus/<target>/`, named by
//! content, so a fresh campaign starts from the project's own inputs.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, _) in mqemu_fuzz::TARGETS {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        for seed in mqemu_fuzz::seeds::seeds(target) {
            let name = format!("seed-{:08x}", crc32fast::hash(&seed));
            std::fs::write(dir.join(name), &seed)?;
        }
        println!("{target}: {}", dir.display());
    }
    Ok(())
}
