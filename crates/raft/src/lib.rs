//! Raft for the State Manager: one write path for one node and for a cluster.
//!
//! This crate adapts the pure domain ([`statemanager_core`]) and durable bytes
//! ([`statemanager_storage`]) to openraft 0.9, and adds what openraft leaves to the
//! application:
//! - [`log_store`]: the Raft log on the log engine; an append is acknowledged to openraft
//!   only after its fsync; [`entry_cache`] keeps the newest entries in memory for the reads
//!   that follow each append;
//! - [`state_machine`]: the in-memory [`statemanager_core::State`], persisted by streamed
//!   snapshot files;
//! - [`writer`]: group commit. openraft 0.9 appends and flushes each `client_write` on its
//!   own, so concurrent stores are drained into one [`statemanager_core::Batch`] per log
//!   entry, stamped once with the leader's clock;
//! - [`reader`]: linearizable reads; concurrent fetches share one read-index round;
//! - [`node`]: the service handle the API talks to;
//! - [`election`]: when this node campaigns (our own timer, a pre-vote before each campaign);
//! - [`cache_peers`]: carries the shared cache's forwarded calls over the peer stream.
//!
//! No domain rule lives here: `apply` hands each batch to `State::apply`.
#![warn(missing_docs)]

pub mod auth;
pub mod backup;
pub mod cache_peers;
pub mod cluster_id;
pub mod cluster_time;
pub mod disk;
pub mod election;
pub mod entry_cache;
pub mod error;
pub mod fuzzing;
pub mod log_store;
pub mod network;
pub mod node;
pub mod peer_server;
pub mod peer_stream;
pub mod reader;
pub mod recovery;
pub mod state_machine;
pub mod takeover;
pub mod types;
pub mod writer;

pub use error::NodeError;
pub use node::{NamespaceStats, Node, NodeOptions, NodeStatus};
pub use types::TypeConfig;
