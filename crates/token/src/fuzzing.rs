//! Fuzz harness: the body of the `token_verify` cargo-fuzz target (`fuzz/fuzz_targets/`),
//! kept here so the target and the corpus replay test (`tests/fuzz_corpus.rs`, run by plain
//! `cargo test`) do exactly the same thing.

use crate::{looks_like_token, seal, Keyring, TimeRule};

/// The fixed test keys the harness verifies with: `"0123456789abcdef"` (mints) and a 32-byte
/// key (verifies too, as after a rotation).
pub const FUZZ_KEYS: &str = "MDEyMzQ1Njc4OWFiY2RlZg==,MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// The harness's "now", in Unix seconds; seed tokens are minted at this time.
pub const FUZZ_NOW: i64 = 1_700_000_000;

/// The time rules every input is verified under: the default ±30 s, the check disabled, and
/// a `token_max_age` of an hour.
const RULES: [TimeRule; 3] = [
    TimeRule {
        margin_secs: 30,
        max_age_secs: None,
    },
    TimeRule {
        margin_secs: 0,
        max_age_secs: None,
    },
    TimeRule {
        margin_secs: 30,
        max_age_secs: Some(3600),
    },
];

/// The keyring of [`FUZZ_KEYS`].
pub fn fuzz_keyring() -> Keyring {
    Keyring::from_comma_list(FUZZ_KEYS).expect("invariant: the fixed test keys are valid")
}

fn verify_all(ring: &Keyring, token: &str) {
    for rule in RULES {
        if let Ok(namespace) = ring.verify(token, FUZZ_NOW, rule) {
            assert!(!namespace.is_empty(), "a verified token with no namespace");
            assert!(
                namespace.is_ascii(),
                "a verified token with a non-ASCII namespace"
            );
        }
    }
}

/// The `token_verify` target, on any bytes:
/// 1. as token text: [`looks_like_token`] and [`Keyring::verify`] (base64, length, MAC with
///    each key, decrypt, parse) under each time rule;
/// 2. as a plaintext sealed with the minting key (a valid MAC, so decryption and the parse of
///    `namespace=..&timestamp=..` see arbitrary bytes), verified the same way;
/// 3. when the bytes are a usable namespace (ASCII, non-empty, no `&`): minted and verified
///    back, which must give the same namespace under every rule.
///
/// Never panics unless the token code does or breaks one of these properties.
pub fn token_verify(data: &[u8]) {
    let ring = fuzz_keyring();
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = looks_like_token(text);
        verify_all(&ring, text);
    }

    let sealed = seal(&ring.keys[0].0, &[0x5a; 16], data);
    assert!(
        looks_like_token(&sealed),
        "a sealed token does not look like one"
    );
    verify_all(&ring, &sealed);

    if let Ok(namespace) = std::str::from_utf8(data) {
        if !namespace.is_empty() && namespace.is_ascii() && !namespace.contains('&') {
            let token = ring.mint(namespace, FUZZ_NOW);
            for rule in RULES {
                assert_eq!(
                    ring.verify(&token, FUZZ_NOW, rule).as_deref(),
                    Ok(namespace),
                    "a minted token does not verify back"
                );
            }
        }
    }
}
