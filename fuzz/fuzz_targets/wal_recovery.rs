//! Fuzz target `wal_recovery`: the harness is `statemanager_storage::fuzzing::wal_recovery`, shared with the
//! corpus replay test that plain `cargo test` runs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    statemanager_storage::fuzzing::wal_recovery(data);
});
