//! Namespaces and keys: validated, cheaply clonable names.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{DomainError, MAX_KEY_BYTES, MAX_NAMESPACE_BYTES};

fn validate(value: &str, field: &str, max: usize) -> Result<(), DomainError> {
    if value.is_empty() {
        return Err(DomainError::invalid(format!("'{field}' must not be empty")));
    }
    if value.len() > max {
        return Err(DomainError::invalid(format!(
            "'{field}' is {} bytes; at most {max} bytes are allowed",
            value.len()
        )));
    }
    if value.contains('\0') {
        return Err(DomainError::invalid(format!(
            "'{field}' must not contain NUL characters"
        )));
    }
    Ok(())
}

/// The namespace an item lives in (for plugins, `PLUGIN#<name>`): 1 to
/// [`MAX_NAMESPACE_BYTES`] bytes, no NUL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Namespace(#[serde(deserialize_with = "crate::arc_str::deserialize")] Arc<str>);

impl Namespace {
    /// Validates and wraps a namespace.
    pub fn new(value: &str) -> Result<Self, DomainError> {
        validate(value, "namespace", MAX_NAMESPACE_BYTES)?;
        Ok(Namespace(Arc::from(value)))
    }

    /// The namespace decoded from a verified protected-namespace token. It is kept apart from
    /// plain names by a NUL prefix, which no plain name can carry: a plain `PLUGIN#x` never
    /// reaches the items of a token for `PLUGIN#x`.
    pub fn protected(decoded: &str) -> Result<Self, DomainError> {
        validate(decoded, "namespace", MAX_NAMESPACE_BYTES - 1)?;
        Ok(Namespace(Arc::from(format!("\0{decoded}"))))
    }

    /// The namespace as text (protected ones start with NUL).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether both are clones of one namespace (the same allocation, not only the same text).
    #[cfg(test)]
    pub(crate) fn is_clone_of(&self, other: &Namespace) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// The key of an item inside its namespace: 1 to [`MAX_KEY_BYTES`] bytes, no NUL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Key(#[serde(deserialize_with = "crate::arc_str::deserialize")] Arc<str>);

impl Key {
    /// Validates and wraps a key.
    pub fn new(value: &str) -> Result<Self, DomainError> {
        validate(value, "key", MAX_KEY_BYTES)?;
        Ok(Key(Arc::from(value)))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The address of an item: its namespace and key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ItemId {
    /// The namespace.
    pub namespace: Namespace,
    /// The key inside the namespace.
    pub key: Key,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_bounded_and_non_empty() {
        assert!(Namespace::new("").is_err());
        assert!(Key::new("").is_err());
        assert!(Namespace::new("PLUGIN#check_x").is_ok());
        assert!(Key::new("ünïcode ✓").is_ok());
        assert!(Key::new(&"k".repeat(MAX_KEY_BYTES)).is_ok());
        assert!(Key::new(&"k".repeat(MAX_KEY_BYTES + 1)).is_err());
        assert!(Namespace::new(&"n".repeat(MAX_NAMESPACE_BYTES + 1)).is_err());
        assert!(Key::new("a\0b").is_err());
        let protected = Namespace::protected("PLUGIN#x").unwrap();
        assert_ne!(protected, Namespace::new("PLUGIN#x").unwrap());
        assert!(
            Namespace::new(protected.as_str()).is_err(),
            "no plain name can be protected"
        );
    }
}
