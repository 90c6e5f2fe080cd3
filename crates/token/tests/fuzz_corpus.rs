//! Replays the committed fuzz corpus (`fuzz/corpus/token_verify/`) through the same harness
//! the cargo-fuzz target runs, so every input the fuzzer kept (and every crash it found) is
//! checked by a plain `cargo test`.

use std::path::PathBuf;

#[test]
fn token_verify_corpus() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/token_verify");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    for path in files {
        let bytes = std::fs::read(&path).unwrap();
        let outcome =
            std::panic::catch_unwind(|| statemanager_token::fuzzing::token_verify(&bytes));
        assert!(outcome.is_ok(), "{} fails", path.display());
    }
}

/// Writes the seed inputs (a token minted by the code with the harness's key and time, its
/// plaintext, a namespace) into the corpus directory. Run by hand: `cargo test -p
/// statemanager-token --test fuzz_corpus -- --ignored write_seeds`.
#[test]
#[ignore]
fn write_seeds() {
    use statemanager_token::fuzzing::{fuzz_keyring, FUZZ_NOW};
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/token_verify");
    std::fs::create_dir_all(&dir).unwrap();
    let ring = fuzz_keyring();
    std::fs::write(
        dir.join("seed-token"),
        ring.mint("PLUGIN#check_disk", FUZZ_NOW),
    )
    .unwrap();
    std::fs::write(
        dir.join("seed-plaintext"),
        format!("namespace=PLUGIN#check_disk&timestamp={FUZZ_NOW}"),
    )
    .unwrap();
    std::fs::write(dir.join("seed-namespace"), "PLUGIN#check_disk").unwrap();
}
