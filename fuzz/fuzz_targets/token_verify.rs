//! Fuzz target `token_verify`: the harness is `statemanager_token::fuzzing::token_verify`, shared with the
//! corpus replay test that plain `cargo test` runs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    statemanager_token::fuzzing::token_verify(data);
});
