//! Fuzz target `peer_decode`: the harness is `statemanager_raft::fuzzing::peer_decode`, shared
//! with the corpus replay test that plain `cargo test` runs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    statemanager_raft::fuzzing::peer_decode(data);
});
