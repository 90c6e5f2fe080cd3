//! Errors of the domain. Every one of them is deterministic: the same command against the same
//! state gives the same error on every replica, so these are client results, never node faults.

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// Why a request or a store was refused by the domain rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum DomainError {
    /// The request is malformed: a missing field, a wrong type, a value out of range.
    #[error("{0}")]
    InvalidRequest(String),
    /// The store is older than the stored item, or as old with different data.
    #[error("a newer item is stored (stored timestamp {}); this store is older or conflicting", stored.as_secs_f64())]
    Conflict {
        /// The timestamp of the item that is kept.
        stored: Timestamp,
    },
    /// The data is larger than `max_persistent_data_item_size`.
    #[error("data is {size} bytes; the limit (max_persistent_data_item_size) is {limit} bytes")]
    ItemTooLarge {
        /// UTF-8 bytes of the data sent.
        size: u64,
        /// The configured limit.
        limit: u64,
    },
    /// A delete of an item that is not there (never stored, expired, or already deleted).
    #[error("no item with this namespace and key (never stored, expired, or deleted)")]
    NotFound,
    /// A new key while the store (or the namespace) already holds its maximum number of items.
    #[error("the {scope} is full ({limit} items); existing keys can still be updated")]
    StoreFull {
        /// `"store"` or `"namespace"`.
        scope: FullScope,
        /// The limit that was reached.
        limit: u64,
    },
}

/// Which item limit was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FullScope {
    /// `max_persistent_data_items`, for the whole store.
    Store,
    /// `max_items_per_namespace`, for one namespace.
    Namespace,
}

impl std::fmt::Display for FullScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FullScope::Store => "store (max_persistent_data_items)",
            FullScope::Namespace => "namespace (max_items_per_namespace)",
        })
    }
}

impl DomainError {
    /// An [`DomainError::InvalidRequest`] with the given message.
    pub fn invalid(message: impl Into<String>) -> Self {
        DomainError::InvalidRequest(message.into())
    }
}
