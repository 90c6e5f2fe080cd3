//! Fuzz target `snapshot_reader`: the harness is `statemanager_storage::fuzzing::snapshot_reader`, shared with the
//! corpus replay test that plain `cargo test` runs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    statemanager_storage::fuzzing::snapshot_reader(data);
});
