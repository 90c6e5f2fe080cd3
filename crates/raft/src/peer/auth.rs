//! The cluster secret: the shared credential of peers and administrators.
//!
//! With `cluster_secret` configured, every peer RPC and every admin request carries
//! `Authorization: Bearer <secret>`, and the receiver compares it in constant time (SHA-256
//! digests of both, compared with `subtle`), so neither the length nor a prefix of the secret
//! leaks through timing. Without TLS on the peer port the secret travels in clear: it keeps
//! out processes that do not have it, not eavesdroppers (use `peer_tls` for that; see
//! `docs/security.md`).

use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use super::error::SecretError;

/// Shortest secret accepted (bytes): shorter ones are guessable.
pub const MIN_SECRET_BYTES: usize = 16;

/// A configured cluster secret.
#[derive(Clone)]
pub struct ClusterSecret {
    header: Arc<str>,
    digest: [u8; 32],
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

impl ClusterSecret {
    /// The secret `text` (surrounding whitespace ignored), or why it cannot be used.
    pub fn new(text: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        if text.len() < MIN_SECRET_BYTES {
            return Err(SecretError::TooShort {
                len: text.len(),
                min: MIN_SECRET_BYTES,
            });
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(SecretError::NotPrintable);
        }
        Ok(ClusterSecret {
            header: format!("Bearer {text}").into(),
            digest: Sha256::digest(text.as_bytes()).into(),
        })
    }

    /// The `Authorization` header value that carries it.
    pub fn header_value(&self) -> &str {
        &self.header
    }

    /// Whether an `Authorization` header value carries this secret (constant time).
    pub fn admits(&self, authorization: Option<&str>) -> bool {
        let Some(presented) = authorization.and_then(|v| v.strip_prefix("Bearer ")) else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
        digest.ct_eq(&self.digest).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_only_the_secret() {
        let s = ClusterSecret::new("0123456789abcdef-secret").unwrap();
        assert!(s.admits(Some("Bearer 0123456789abcdef-secret")));
        assert!(s.admits(Some(s.header_value())));
        assert!(!s.admits(Some("Bearer 0123456789abcdef-secreT")));
        assert!(!s.admits(Some("Bearer 0123456789abcdef-secret2")));
        assert!(!s.admits(Some("0123456789abcdef-secret")));
        assert!(!s.admits(Some("Bearer ")));
        assert!(!s.admits(None));
    }

    #[test]
    fn short_or_odd_secrets_are_refused() {
        assert!(ClusterSecret::new("short").is_err());
        assert!(ClusterSecret::new("has a space in the middle").is_err());
        assert!(ClusterSecret::new("  0123456789abcdef  ").is_ok());
    }
}
