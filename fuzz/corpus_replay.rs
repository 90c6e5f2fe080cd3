//! Shared by the corpus replay tests of the fuzzed crates (`crates/*/tests/fuzz_corpus.rs`
//! include it with `#[path]`): replays a target's committed corpus through its harness, and
//! checks the seed inputs that the code itself makes.

use std::path::PathBuf;

/// `fuzz/corpus/<target>` (from the including crate's directory).
pub fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

/// Runs every file of `target`'s corpus through `harness`; none may panic.
pub fn replay(target: &str, harness: fn(&[u8])) {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    for path in files {
        let bytes = std::fs::read(&path).expect("corpus file");
        let outcome = std::panic::catch_unwind(|| harness(&bytes));
        assert!(outcome.is_ok(), "{target}: {} fails", path.display());
    }
}

/// Every seed (name, bytes) made by the code passes `harness` and is in the corpus as
/// `seed-<name>`. With `FUZZ_WRITE_SEEDS=1` in the environment the seeds are (re)written
/// first, e.g. after a format change: `FUZZ_WRITE_SEEDS=1 cargo test --test fuzz_corpus`.
pub fn check_seeds(target: &str, seeds: Vec<(String, Vec<u8>)>, harness: fn(&[u8])) {
    let dir = corpus_dir(target);
    let write = std::env::var_os("FUZZ_WRITE_SEEDS").is_some();
    assert!(!seeds.is_empty());
    for (name, bytes) in seeds {
        let outcome = std::panic::catch_unwind(|| harness(&bytes));
        assert!(outcome.is_ok(), "{target}: seed {name} fails the harness");
        let path = dir.join(format!("seed-{name}"));
        if write {
            std::fs::create_dir_all(&dir).expect("corpus directory");
            std::fs::write(&path, &bytes).expect("writing a seed");
        }
        assert!(
            path.is_file(),
            "{} is missing: run the test with FUZZ_WRITE_SEEDS=1",
            path.display()
        );
    }
}
