//! Protected namespaces: which namespace a request really addresses.
//!
//! With `namespace_keys` configured, a namespace that has the shape of a token (standard
//! base64, valid padding, ≥ 88 characters) is always verified as one, and a token that fails
//! for any reason is refused (403 `forbidden`), never read as a plain name. A verified token
//! addresses its decoded namespace in a space of its own (see `Namespace::protected`), so a
//! plain `PLUGIN#x` never reaches a token's `PLUGIN#x`. With `require_namespace_token`, plain
//! names are refused.

use std::sync::Arc;

use statemanager_core::{Clock, Namespace};
use statemanager_token::{looks_like_token, Keyring, TimeRule};

use crate::error::ApiError;

/// How namespaces are resolved.
#[derive(Clone)]
pub struct Namespaces {
    keys: Option<Keyring>,
    rule: TimeRule,
    require_token: bool,
    clock: Arc<dyn Clock>,
}

impl Namespaces {
    /// Plain names only (no keys configured).
    pub fn plain(clock: Arc<dyn Clock>) -> Self {
        Namespaces {
            keys: None,
            rule: TimeRule {
                margin_secs: 30,
                max_age_secs: None,
            },
            require_token: false,
            clock,
        }
    }

    /// Tokens verified with `keys` under `rule`; plain names refused when `require_token`.
    pub fn protected(
        keys: Keyring,
        rule: TimeRule,
        require_token: bool,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Namespaces {
            keys: Some(keys),
            rule,
            require_token,
            clock,
        }
    }

    /// The namespace `given` (already a valid plain name) addresses: itself, unless it is a
    /// token to verify ([`Namespaces::resolve`]); spares a copy of the name on every store.
    pub fn resolve_given(&self, given: Namespace) -> Result<Namespace, ApiError> {
        match &self.keys {
            Some(_) => self.resolve(given.as_str()),
            None => Ok(given),
        }
    }

    /// The namespace `text` addresses, or why it may not be used.
    pub fn resolve(&self, text: &str) -> Result<Namespace, ApiError> {
        match &self.keys {
            Some(keys) if looks_like_token(text) => {
                let now = (self.clock.now().as_micros() / 1_000_000) as i64;
                let decoded = keys
                    .verify(text, now, self.rule)
                    .map_err(|e| ApiError::Forbidden(e.to_string()))?;
                Ok(Namespace::protected(&decoded)?)
            }
            Some(_) if self.require_token => Err(ApiError::Forbidden(
                "this server requires a namespace token (require_namespace_token)".into(),
            )),
            _ => Ok(Namespace::new(text)?),
        }
    }
}
