use super::*;

const K16: &str = "MDEyMzQ1Njc4OWFiY2RlZg=="; // "0123456789abcdef"
const K32: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const NOW: i64 = 1_700_000_000;
const RULE: TimeRule = TimeRule {
    margin_secs: 30,
    max_age_secs: None,
};

#[test]
fn mint_and_verify_round_trip_for_every_key_size() {
    for key in [K16, "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3", K32] {
        let ring = Keyring::from_comma_list(key).unwrap();
        let token = ring.mint("PLUGIN#check_x", NOW);
        assert!(looks_like_token(&token), "{token}");
        assert_eq!(ring.verify(&token, NOW, RULE).unwrap(), "PLUGIN#check_x");
    }
}

#[test]
fn known_vector_is_stable() {
    // Fixed IV, so the bytes can be compared with the Python implementation's.
    let ring = Keyring::from_comma_list(K16).unwrap();
    let token = ring.mint_with_iv("PLUGIN#x", NOW, [7u8; 16]);
    assert_eq!(ring.verify(&token, NOW, RULE).unwrap(), "PLUGIN#x");
    let raw = STANDARD.decode(&token).unwrap();
    assert_eq!(&raw[..16], &[7u8; 16]);
    assert_eq!(raw.len(), 16 + 48 + 32, "38-byte plaintext pads to 48");
}

#[test]
fn rotation_first_key_mints_all_verify() {
    let old = Keyring::from_comma_list(K16).unwrap();
    let rotated = Keyring::from_comma_list(&format!("{K32},{K16}")).unwrap();
    let old_token = old.mint("ns", NOW);
    assert_eq!(rotated.verify(&old_token, NOW, RULE).unwrap(), "ns");
    let new_token = rotated.mint("ns", NOW);
    assert_eq!(
        old.verify(&new_token, NOW, RULE),
        Err(TokenError::Invalid),
        "minted with the first key"
    );
}

#[test]
fn time_window() {
    let ring = Keyring::from_comma_list(K16).unwrap();
    let token = ring.mint("ns", NOW);
    assert!(ring.verify(&token, NOW + 30, RULE).is_ok());
    assert_eq!(
        ring.verify(&token, NOW + 31, RULE),
        Err(TokenError::Expired { age: 31 })
    );
    assert_eq!(
        ring.verify(&token, NOW - 31, RULE),
        Err(TokenError::Expired { age: -31 })
    );
    let off = TimeRule {
        margin_secs: 0,
        max_age_secs: None,
    };
    assert!(
        ring.verify(&token, NOW + 1_000_000, off).is_ok(),
        "0 disables the check"
    );
    let long = TimeRule {
        margin_secs: 30,
        max_age_secs: Some(3600),
    };
    assert!(
        ring.verify(&token, NOW + 3600, long).is_ok(),
        "a long-running plugin still works"
    );
    assert!(ring.verify(&token, NOW + 3601, long).is_err());
    assert!(
        ring.verify(&token, NOW - 31, long).is_err(),
        "not from the future"
    );
}

#[test]
fn forged_truncated_and_foreign_tokens_are_refused() {
    let ring = Keyring::from_comma_list(K16).unwrap();
    let other = Keyring::from_comma_list(K32).unwrap();
    let token = ring.mint("ns", NOW);
    assert_eq!(other.verify(&token, NOW, RULE), Err(TokenError::Invalid));
    let mut raw = STANDARD.decode(&token).unwrap();
    for i in 0..raw.len() {
        raw[i] ^= 1;
        assert_eq!(
            ring.verify(&STANDARD.encode(&raw), NOW, RULE),
            Err(TokenError::Invalid),
            "flip {i}"
        );
        raw[i] ^= 1;
    }
    assert_eq!(
        ring.verify(&token[..token.len() - 4], NOW, RULE),
        Err(TokenError::Invalid)
    );
    assert_eq!(
        ring.verify("not base64!", NOW, RULE),
        Err(TokenError::Invalid)
    );
    assert!(!looks_like_token("PLUGIN#check_x"));
    assert!(!looks_like_token(&"A".repeat(87)));
}

#[test]
fn bad_keys_are_refused() {
    assert_eq!(
        Keyring::from_comma_list("").unwrap_err(),
        TokenError::NoKeys
    );
    assert_eq!(
        Keyring::from_comma_list("abc").unwrap_err(),
        TokenError::BadKey { index: 1 }
    );
    assert_eq!(
        Keyring::from_comma_list(&format!("{K16},{}", STANDARD.encode([0u8; 20]))).unwrap_err(),
        TokenError::BadKey { index: 2 }
    );
}

#[test]
fn absurd_timestamps_are_expired_not_wrapped() {
    // Found by the token_verify fuzz target: `now - minted` overflowed for a timestamp near
    // i64::MIN (in release it wrapped, and with margin 0 + token_max_age the token passed).
    let ring = Keyring::from_comma_list(K16).unwrap();
    let key = ring.keys[0].0.clone();
    let token = seal(&key, &[1; 16], b"namespace=ns&timestamp=-1e19");
    let max_age_only = TimeRule {
        margin_secs: 0,
        max_age_secs: Some(3600),
    };
    assert_eq!(
        ring.verify(&token, NOW, max_age_only),
        Err(TokenError::Expired { age: i64::MAX })
    );
    assert_eq!(
        ring.verify(&token, NOW, RULE),
        Err(TokenError::Expired { age: i64::MAX })
    );
    let future = seal(&key, &[1; 16], b"namespace=ns&timestamp=1e19");
    assert!(matches!(
        ring.verify(&future, NOW, RULE),
        Err(TokenError::Expired { .. })
    ));
}
