//! Protected-namespace tokens, byte-compatible with the ones Opsview's components mint.
//!
//! - plaintext: ASCII `namespace=<ns>&timestamp=<unix seconds>`;
//! - keys: base64, each decoding to 16, 24 or 32 bytes (AES-128/192/256); the same bytes are
//!   the HMAC-SHA256 key; the first key mints, every key verifies (rotation);
//! - token: standard base64 of `IV (16 random bytes) ‖ AES-CBC(key, IV, PKCS7(plaintext)) ‖
//!   HMAC-SHA256(key, IV ‖ ciphertext)`.
//!
//! Verification checks the MAC (in constant time) before decrypting anything, and reports one
//! reason per failure without saying which part of a forged token was wrong.
#![warn(missing_docs)]

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const IV: usize = 16;
const TAG: usize = 32;
/// The shortest text that can be a token: base64 of IV + one block + tag = 64 bytes.
pub const MIN_TOKEN_CHARS: usize = 88;

/// Why a key list or a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// A configured key is not base64 of 16, 24 or 32 bytes.
    #[error("namespace key {index} is not base64 of 16, 24 or 32 bytes")]
    BadKey {
        /// Position in the list, from 1.
        index: usize,
    },
    /// No keys are configured.
    #[error("no namespace keys are configured")]
    NoKeys,
    /// The token does not verify with any configured key, or is malformed.
    #[error("the namespace token is not valid for this server")]
    Invalid,
    /// The token verified but does not name a namespace.
    #[error("the namespace token has no namespace")]
    NoNamespace,
    /// The token verified but has no (or an unreadable) timestamp.
    #[error("the namespace token has no valid timestamp")]
    NoTimestamp,
    /// The token's time is outside the accepted window.
    #[error(
        "the namespace token has expired or is not yet valid (minted {age} s from now's view)"
    )]
    Expired {
        /// Seconds between the token's timestamp and now (positive: in the past).
        age: i64,
    },
    /// The decrypted namespace is not ASCII.
    #[error("Namespace and Key must be ASCII")]
    NotAscii,
}

/// One AES/HMAC key.
#[derive(Clone)]
struct Key(Vec<u8>);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({} bytes)", self.0.len())
    }
}

/// How old a token may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRule {
    /// `timestamp_error_margin`: accept timestamps within ±this many seconds of now; 0
    /// disables the time check.
    pub margin_secs: i64,
    /// `token_max_age`: when set, accept tokens up to this many seconds old (and at most
    /// `margin_secs` in the future) instead of ±margin.
    pub max_age_secs: Option<i64>,
}

impl TimeRule {
    fn check(&self, minted: i64, now: i64) -> Result<(), TokenError> {
        // Saturating: a timestamp near i64::MIN must read as very old, not wrap to the future.
        let age = now.saturating_sub(minted);
        let future_ok = self.margin_secs == 0 || age >= -self.margin_secs;
        let past_ok = match self.max_age_secs {
            Some(max) => age <= max,
            None => self.margin_secs == 0 || age <= self.margin_secs,
        };
        if future_ok && past_ok {
            Ok(())
        } else {
            Err(TokenError::Expired { age })
        }
    }
}

/// The configured keys.
#[derive(Debug, Clone)]
pub struct Keyring {
    keys: Vec<Key>,
}

impl Keyring {
    /// Parses base64 keys (already split on commas; blanks ignored).
    pub fn new<'a>(keys: impl IntoIterator<Item = &'a str>) -> Result<Self, TokenError> {
        let mut parsed = Vec::new();
        for (i, k) in keys
            .into_iter()
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .enumerate()
        {
            let bytes = STANDARD
                .decode(k)
                .map_err(|_| TokenError::BadKey { index: i + 1 })?;
            if ![16, 24, 32].contains(&bytes.len()) {
                return Err(TokenError::BadKey { index: i + 1 });
            }
            parsed.push(Key(bytes));
        }
        if parsed.is_empty() {
            return Err(TokenError::NoKeys);
        }
        Ok(Keyring { keys: parsed })
    }

    /// Parses a comma-separated list, as `namespace_keys` is written.
    pub fn from_comma_list(list: &str) -> Result<Self, TokenError> {
        Keyring::new(list.split(','))
    }

    /// Mints a token for `namespace` stamped `now` (Unix seconds), with the first key.
    pub fn mint(&self, namespace: &str, now: i64) -> String {
        let mut iv = [0u8; IV];
        // The OS random source only fails when the platform has none; a token with a fixed IV
        // would still verify but leak equal plaintexts, so fall back to a time-derived IV.
        if getrandom::fill(&mut iv).is_err() {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            iv.copy_from_slice(&t.to_le_bytes());
        }
        self.mint_with_iv(namespace, now, iv)
    }

    fn mint_with_iv(&self, namespace: &str, now: i64, iv: [u8; IV]) -> String {
        let plaintext = format!("namespace={namespace}&timestamp={now}");
        seal(&self.keys[0].0, &iv, plaintext.as_bytes())
    }

    /// Verifies a token and returns the namespace it carries.
    pub fn verify(&self, token: &str, now: i64, rule: TimeRule) -> Result<String, TokenError> {
        let raw = STANDARD.decode(token).map_err(|_| TokenError::Invalid)?;
        if raw.len() < IV + 16 + TAG || !(raw.len() - IV - TAG).is_multiple_of(16) {
            return Err(TokenError::Invalid);
        }
        let (signed, tag) = raw.split_at(raw.len() - TAG);
        let key = self
            .keys
            .iter()
            .find(|k| {
                let mut mac = <HmacSha256 as Mac>::new_from_slice(&k.0)
                    .expect("invariant: HMAC takes any key length");
                mac.update(signed);
                mac.verify_slice(tag).is_ok() // constant-time comparison
            })
            .ok_or(TokenError::Invalid)?;
        let (iv, ciphertext) = signed.split_at(IV);
        let plaintext = decrypt(&key.0, iv, ciphertext).ok_or(TokenError::Invalid)?;
        let text = std::str::from_utf8(&plaintext).map_err(|_| TokenError::NotAscii)?;
        if !text.is_ascii() {
            return Err(TokenError::NotAscii);
        }
        let mut namespace = None;
        let mut timestamp = None;
        for pair in text.split('&') {
            if let Some((k, v)) = pair.split_once('=') {
                match k {
                    "namespace" => namespace = Some(v.to_string()),
                    "timestamp" => timestamp = Some(v.to_string()),
                    _ => {}
                }
            }
        }
        let namespace = namespace
            .filter(|n| !n.is_empty())
            .ok_or(TokenError::NoNamespace)?;
        if rule.margin_secs != 0 || rule.max_age_secs.is_some() {
            let minted: i64 = timestamp
                .as_deref()
                .and_then(|t| t.trim().parse::<f64>().ok())
                .filter(|t| t.is_finite())
                .map(|t| t as i64)
                .ok_or(TokenError::NoTimestamp)?;
            rule.check(minted, now)?;
        }
        Ok(namespace)
    }
}

/// Whether `text` has the shape of a token: standard base64 with valid padding, at least
/// [`MIN_TOKEN_CHARS`] characters. (With keys configured, such a namespace is always treated
/// as a token, never as a plain name.)
pub fn looks_like_token(text: &str) -> bool {
    text.len() >= MIN_TOKEN_CHARS && text.len().is_multiple_of(4) && STANDARD.decode(text).is_ok()
}

/// `base64(IV ‖ AES-CBC(key, IV, PKCS7(plaintext)) ‖ HMAC-SHA256(key, IV ‖ ciphertext))`.
fn seal(key: &[u8], iv: &[u8; IV], plaintext: &[u8]) -> String {
    let ciphertext = encrypt(key, iv, plaintext);
    let mut out = Vec::with_capacity(IV + ciphertext.len() + TAG);
    out.extend_from_slice(iv);
    out.extend_from_slice(&ciphertext);
    let mut mac =
        <HmacSha256 as Mac>::new_from_slice(key).expect("invariant: HMAC takes any key length");
    mac.update(&out);
    out.extend_from_slice(&mac.finalize().into_bytes());
    STANDARD.encode(out)
}

fn encrypt(key: &[u8], iv: &[u8; IV], plaintext: &[u8]) -> Vec<u8> {
    match key.len() {
        16 => cbc::Encryptor::<aes::Aes128>::new_from_slices(key, iv)
            .expect("invariant: key and IV lengths checked")
            .encrypt_padded_vec_mut::<Pkcs7>(plaintext),
        24 => cbc::Encryptor::<aes::Aes192>::new_from_slices(key, iv)
            .expect("invariant: key and IV lengths checked")
            .encrypt_padded_vec_mut::<Pkcs7>(plaintext),
        _ => cbc::Encryptor::<aes::Aes256>::new_from_slices(key, iv)
            .expect("invariant: key and IV lengths checked")
            .encrypt_padded_vec_mut::<Pkcs7>(plaintext),
    }
}

fn decrypt(key: &[u8], iv: &[u8], ciphertext: &[u8]) -> Option<Vec<u8>> {
    match key.len() {
        16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(key, iv)
            .ok()?
            .decrypt_padded_vec_mut::<Pkcs7>(ciphertext)
            .ok(),
        24 => cbc::Decryptor::<aes::Aes192>::new_from_slices(key, iv)
            .ok()?
            .decrypt_padded_vec_mut::<Pkcs7>(ciphertext)
            .ok(),
        _ => cbc::Decryptor::<aes::Aes256>::new_from_slices(key, iv)
            .ok()?
            .decrypt_padded_vec_mut::<Pkcs7>(ciphertext)
            .ok(),
    }
}

pub mod fuzzing;

#[cfg(test)]
mod tests;
