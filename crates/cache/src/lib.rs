//! The Cache Manager's ephemeral cache (`/get_data`, `/set_data`).
//!
//! Items live in memory only: never in the Raft log, never on disk, separate from the
//! persistent store, and gone on restart. On a cluster the cache is shared, as the
//! original's is: each key has one owner node, chosen by rendezvous hashing over the members
//! ([`owner`]), and the other nodes forward to it ([`shared`]); a peer that does not answer is
//! skipped for a while ([`health`]). Each node's [`Cache`] is its share.
//!
//! The lock protocol lets one plugin compute an expensive value while the others wait for it:
//! on a miss the first caller with a positive `max_wait_time` gets `lock: true` and is
//! expected to `set_data`; later callers wait (up to their own `max_wait_time`) and are woken
//! the moment the value is set, or the moment an abandoned lock expires (the original leaves
//! them asleep until their deadline). The owner holds a key's lock and its waiters, so the
//! protocol is cluster-wide.
//!
//! Bounded by `max_cache_size` (sum of item sizes, each node's share) and `max_item_size`. When full,
//! the oldest-written items are evicted (FIFO by last write, as the original), never refusing
//! a write. Expiry and eviction use ordered indexes, so their cost is proportional to what
//! they remove.
#![warn(missing_docs)]

mod cache;
pub mod health;
pub mod owner;
pub mod shared;

pub use cache::{Cache, CacheError, CacheLimits, CacheStats, GetOutcome};
pub use health::PeerState;
pub use shared::{CachePeer, CachePeers, ForwardedGet, ForwardedSet, NoAnswer, SharedCache};
