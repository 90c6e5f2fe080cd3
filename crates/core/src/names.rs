//! Namespaces and keys: validated, cheaply clonable names.

use std::cmp::Ordering;
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

/// Orders two shared names by their text, without reading it when both are the same
/// allocation. The state's expiry index holds clones of the item map's own keys, so the
/// comparison that finds an item's entry there ends on the pointers, not on the text of a
/// key nobody has touched lately (a cache miss for every store of an existing key).
fn cmp_shared(a: &Arc<str>, b: &Arc<str>) -> Ordering {
    if Arc::ptr_eq(a, b) {
        Ordering::Equal
    } else {
        a.cmp(b)
    }
}

/// `Ord` and `PartialOrd` by [`cmp_shared`] for a newtype over `Arc<str>`.
macro_rules! ord_by_shared_text {
    ($name:ident) => {
        impl Ord for $name {
            fn cmp(&self, other: &Self) -> Ordering {
                cmp_shared(&self.0, &other.0)
            }
        }

        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
                Some(self.cmp(other))
            }
        }
    };
}

/// The namespace an item lives in (for plugins, `PLUGIN#<name>`): 1 to
/// [`MAX_NAMESPACE_BYTES`] bytes, no NUL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

ord_by_shared_text!(Namespace);

/// The key of an item inside its namespace: 1 to [`MAX_KEY_BYTES`] bytes, no NUL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

ord_by_shared_text!(Key);

/// The address of an item: its namespace and key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ItemId {
    /// The namespace.
    pub namespace: Namespace,
    /// The key inside the namespace.
    pub key: Key,
}

impl ItemId {
    /// Whether both ids are clones of one id (the same allocations, not only the same text).
    #[cfg(test)]
    pub(crate) fn is_clone_of(&self, other: &ItemId) -> bool {
        Arc::ptr_eq(&self.namespace.0, &other.namespace.0) && Arc::ptr_eq(&self.key.0, &other.key.0)
    }
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

    #[test]
    fn names_order_by_their_text_whether_shared_or_not() {
        let words = ["", "a", "a\u{1}", "ab", "b", "é", "PLUGIN#x"];
        for x in words {
            for y in words {
                let (a, b) = (Key(Arc::from(x)), Key(Arc::from(y)));
                assert_eq!(a.cmp(&b), x.cmp(y), "{x:?} {y:?}");
                assert_eq!(a.partial_cmp(&b), Some(x.cmp(y)));
                let (c, d) = (Namespace(Arc::from(x)), Namespace(Arc::from(y)));
                assert_eq!(c.cmp(&d), x.cmp(y), "{x:?} {y:?}");
            }
            let shared = Key(Arc::from(x));
            assert_eq!(shared.cmp(&shared.clone()), Ordering::Equal);
        }
    }
}
