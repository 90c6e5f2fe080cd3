//! Replays the committed fuzz corpus (`fuzz/corpus/token_verify/`) through the same harness
//! the cargo-fuzz target runs, so every input the fuzzer kept (and every crash it found) is
//! checked by a plain `cargo test`; and checks the seeds the code makes.

#[path = "../../../fuzz/corpus_replay.rs"]
mod corpus_replay;

#[test]
fn token_verify_corpus() {
    corpus_replay::replay("token_verify", statemanager_token::fuzzing::token_verify);
}

/// Seeds: a token minted with the harness's key and time, its plaintext, a namespace.
#[test]
fn token_verify_seeds() {
    use statemanager_token::fuzzing::{fuzz_keyring, FUZZ_NOW};
    let seeds = vec![
        (
            "token".to_string(),
            fuzz_keyring()
                .mint("PLUGIN#check_disk", FUZZ_NOW)
                .into_bytes(),
        ),
        (
            "plaintext".to_string(),
            format!("namespace=PLUGIN#check_disk&timestamp={FUZZ_NOW}").into_bytes(),
        ),
        ("namespace".to_string(), b"PLUGIN#check_disk".to_vec()),
    ];
    corpus_replay::check_seeds(
        "token_verify",
        seeds,
        statemanager_token::fuzzing::token_verify,
    );
}
