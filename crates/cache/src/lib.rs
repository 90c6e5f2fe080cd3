//! The Cache Manager's ephemeral cache (`/get_data`, `/set_data`).
//!
//! Items live in this process's memory only: never in the Raft log, never on disk, separate
//! from the persistent store, and gone on restart. Each node of a cluster has its own cache,
//! as the original does.
//!
//! The lock protocol lets one plugin compute an expensive value while the others wait for it:
//! on a miss the first caller with a positive `max_wait_time` gets `lock: true` and is
//! expected to `set_data`; later callers wait (up to their own `max_wait_time`) and are woken
//! the moment the value is set, or the moment an abandoned lock expires (the original leaves
//! them asleep until their deadline).
//!
//! Bounded by `max_cache_size` (sum of item sizes) and `max_item_size`. When full, the
//! oldest-written items are evicted (FIFO by last write, as the original), never refusing a
//! write. Expiry and eviction use ordered indexes, so their cost is proportional to what they
//! remove.
#![warn(missing_docs)]

mod cache;

pub use cache::{Cache, CacheError, CacheLimits, CacheStats, GetOutcome};
