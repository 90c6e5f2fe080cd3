//! Replays the committed fuzz corpus (`fuzz/corpus/request_decode/`) through the same harness
//! the cargo-fuzz target runs, so every input the fuzzer kept (and every crash it found) is
//! checked by a plain `cargo test`.

use std::path::PathBuf;

#[test]
fn request_decode_corpus() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/request_decode");
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
            std::panic::catch_unwind(|| statemanager_api::fuzzing::request_decode(&bytes));
        assert!(outcome.is_ok(), "{} fails", path.display());
    }
}

/// Writes the seed inputs (valid bodies of every endpoint, plugnpy's shapes, one with a token
/// minted with the harness's key and time) into the corpus directory. Run by hand: `cargo
/// test -p statemanager-api --test fuzz_corpus -- --ignored write_seeds`.
#[test]
#[ignore]
fn write_seeds() {
    use statemanager_token::fuzzing::{fuzz_keyring, FUZZ_NOW};
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/request_decode");
    std::fs::create_dir_all(&dir).unwrap();
    let token = fuzz_keyring().mint("PLUGIN#check_disk", FUZZ_NOW);
    let seeds = [
        ("store", r#"{"namespace":"PLUGIN#check_disk","key":"last","data":"{\"used\":42}","ttl":3600}"#.to_string()),
        ("store-timestamp", r#"{"namespace":"PLUGIN#x","key":"k","data":"v","ttl":60.0,"timestamp":1764070000.123456}"#.to_string()),
        ("store-escaped", "{\"namespace\": \"PLUGIN#\\u00e9\", \"key\": \"k\\n\", \"data\": \"\\\"q\\\"\", \"ttl\": 1, \"timestamp\": null}".to_string()),
        ("store-token", format!(r#"{{"namespace":"{token}","key":"k","data":"v","ttl":60}}"#)),
        ("fetch", r#"{"namespace":"PLUGIN#check_disk","key":"last"}"#.to_string()),
        ("get", r#"{"namespace":"PLUGIN#x","key":"k","max_wait_time":30}"#.to_string()),
        ("get-string-wait", r#"{"namespace":"PLUGIN#x","key":"k","max_wait_time":" 5 "}"#.to_string()),
        ("set", r#"{"namespace":"PLUGIN#x","key":"k","data":"v","ttl":60}"#.to_string()),
        ("set-float-ttl", r#"{"namespace":"PLUGIN#x","key":"k","data":"v","ttl":2.9}"#.to_string()),
    ];
    for (name, body) in seeds {
        std::fs::write(dir.join(format!("seed-{name}")), body).unwrap();
    }
}
