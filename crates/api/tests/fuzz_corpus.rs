//! Replays the committed fuzz corpus (`fuzz/corpus/request_decode/`) through the same harness
//! the cargo-fuzz target runs, so every input the fuzzer kept (and every crash it found) is
//! checked by a plain `cargo test`; and checks the seeds the code makes.

#[path = "../../../fuzz/corpus_replay.rs"]
mod corpus_replay;

#[test]
fn request_decode_corpus() {
    corpus_replay::replay("request_decode", statemanager_api::fuzzing::request_decode);
}

/// Seeds: valid bodies of every endpoint, plugnpy's shapes, one with a token minted with the
/// harness's key and time.
#[test]
fn request_decode_seeds() {
    use statemanager_token::fuzzing::{fuzz_keyring, FUZZ_NOW};
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
    corpus_replay::check_seeds(
        "request_decode",
        seeds
            .into_iter()
            .map(|(n, b)| (n.to_string(), b.into_bytes()))
            .collect(),
        statemanager_api::fuzzing::request_decode,
    );
}
