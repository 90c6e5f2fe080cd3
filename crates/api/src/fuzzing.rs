//! Fuzz harness: the body of the `request_decode` cargo-fuzz target (`fuzz/fuzz_targets/`),
//! kept here so the target and the corpus replay test (`tests/fuzz_corpus.rs`, run by plain
//! `cargo test`) do exactly the same thing.

use std::sync::Arc;

use axum::http::StatusCode;
use statemanager_core::{Limits, ManualClock, Timestamp};
use statemanager_token::fuzzing::{fuzz_keyring, FUZZ_NOW};
use statemanager_token::TimeRule;

use crate::error::ApiError;
use crate::handlers::{cache, store};
use crate::{body, Namespaces};

/// The namespaces the harness resolves with: plain names, and tokens minted with the token
/// crate's fixed test keys at its fixed "now" (so a seed token verifies).
pub fn fuzz_namespaces() -> Namespaces {
    let now = Timestamp::from_micros(FUZZ_NOW as u64 * 1_000_000);
    Namespaces::protected(
        fuzz_keyring(),
        TimeRule {
            margin_secs: 30,
            max_age_secs: None,
        },
        false,
        Arc::new(ManualClock::new(now)),
    )
}

/// A refusal must be the client's fault (400, 403 or 413), never a server error.
fn client_error(e: ApiError) -> String {
    let (status, code, _) = e.parts();
    assert!(
        [
            StatusCode::BAD_REQUEST,
            StatusCode::FORBIDDEN,
            StatusCode::PAYLOAD_TOO_LARGE
        ]
        .contains(&status),
        "a request body was refused with {status} ({code})"
    );
    format!("{e:?}")
}

/// The `request_decode` target: `data` as the body of every endpoint that takes one, decoded
/// and validated exactly as the handlers do before they touch the node or the cache:
/// `/store_data`, `/fetch_data` and `/delete_data` (one `{namespace, key}` parser),
/// `/get_data`, `/set_data`.
///
/// Checked: nothing panics; every refusal maps to a 4xx status; and where a body has a fast
/// path (serde straight into a struct) the slow path (a JSON tree read field by field, which
/// gives the precise messages) reaches the same verdict.
pub fn request_decode(data: &[u8]) {
    let namespaces = fuzz_namespaces();
    let limits = Limits::default();

    // /store_data
    let op = store::decode(data, &limits, &namespaces).map_err(client_error);
    if let Some(fast) = store::decode_fast(data, &limits) {
        let slow = store::decode_slow(data, &limits);
        assert_eq!(
            fast.map_err(client_error),
            slow.map_err(client_error),
            "the /store_data fast and slow paths disagree"
        );
    }
    if let Ok(op) = op {
        assert!(op.check_size(&limits).is_ok());
    }

    // /fetch_data and /delete_data
    let id = body::item_id(data, &namespaces).map_err(client_error);
    if let Some(fast) = body::item_id_fast(data, &namespaces) {
        let slow = body::item_id_slow(data, &namespaces).map_err(client_error);
        assert_eq!(
            fast.map_err(client_error),
            slow,
            "the {{namespace, key}} fast and slow paths disagree"
        );
    }
    drop(id);

    // /get_data
    if let Ok(get) = cache::decode_get(data, &namespaces).map_err(client_error) {
        assert!(get.wait_secs <= crate::handlers::cache::MAX_WAIT_SECS);
    }

    // /set_data
    if let Ok(set) = cache::decode_set(data, &namespaces).map_err(client_error) {
        assert!((1..=statemanager_core::MAX_TTL_SECS).contains(&set.ttl_secs));
        assert!(!set.namespace.as_str().contains('|') && !set.key.contains('|'));
    }
}
