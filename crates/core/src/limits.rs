//! Size and count limits. They travel inside each batch (the leader's configuration decides),
//! so that replicas configured differently still apply the log identically.

use serde::{Deserialize, Serialize};

/// Longest namespace accepted, in UTF-8 bytes (room for protected-namespace tokens).
pub const MAX_NAMESPACE_BYTES: usize = 1024;
/// Longest key accepted, in UTF-8 bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// The limits a store is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest `data`, in UTF-8 bytes (`max_persistent_data_item_size`).
    pub max_item_bytes: u64,
    /// Most live items in the whole store (`max_persistent_data_items`).
    pub max_items: u64,
    /// Most live items in one namespace (`max_items_per_namespace`), if set.
    pub max_items_per_namespace: Option<u64>,
}

impl Default for Limits {
    /// The Opsview defaults: 16 KiB items, 1024 items, no per-namespace limit.
    fn default() -> Self {
        Limits {
            max_item_bytes: 16 * 1024,
            max_items: 1024,
            max_items_per_namespace: None,
        }
    }
}
