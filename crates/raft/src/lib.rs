//! Raft for the State Manager: one write path for one node and for a cluster.
//!
//! This crate adapts the pure domain ([`statemanager_core`]) and durable bytes
//! ([`statemanager_storage`]) to openraft 0.10, and adds what openraft leaves to the
//! application:
//! - [`log_store`]: the Raft log on the log engine; an append returns at once and is
//!   reported flushed to openraft only after the log writer thread's fsync; [`log_tail`]
//!   keeps the newest entries (and every one not yet written) in memory for the reads that
//!   follow each append;
//! - [`state_machine`]: the in-memory [`statemanager_core::State`], persisted by streamed
//!   snapshot files;
//! - [`writer`]: group commit. Concurrent stores are drained into one
//!   [`statemanager_core::Batch`] per log entry, stamped once with the leader's clock (each
//!   entry costs the Raft core work, whatever the fsyncs);
//! - [`reader`]: linearizable reads; concurrent fetches share one read-index round;
//!   [`follower_read`]: a follower's round, in which its request counts as its
//!   acknowledgment of the leader;
//! - [`node`]: the service handle the API talks to;
//! - [`election`]: when this node campaigns (our own timer, a pre-vote before each campaign);
//! - [`peer`]: the peer transport (network, peer stream, HTTP routes, credentials, the
//!   shared cache's calls); it reaches the node only through [`peer::host::PeerHost`],
//!   which [`node::Node`] implements;
//! - [`thread_slice`]: the short scheduler slice the write path's threads ask for;
//! - [`view`]: plain data a node reports ([`NodeStatus`], [`view::Member`]), shared by both.
//!
//! No domain rule lives here: `apply` hands each batch to `State::apply`.
#![warn(missing_docs)]

pub mod backup;
pub mod cluster_id;
pub mod cluster_time;
pub mod disk;
pub mod election;
pub mod error;
pub mod follower_read;
pub mod fuzzing;
pub mod leader_read;
pub mod log_store;
pub mod log_tail;
pub mod node;
pub mod peer;
pub mod reader;
pub mod recovery;
pub mod state_machine;
pub mod takeover;
pub mod thread_slice;
pub mod types;
pub mod view;
pub mod writer;

pub use error::{Invariant, NodeError, Reason};
pub use node::{NamespaceStats, Node, NodeOptions, NodeStatus};
pub use types::TypeConfig;

// The peer transport's old paths, for the crates that name them (the server's listener,
// serve and config, the api's admin handlers); the modules live in [`peer`].
pub use peer::auth;
pub use peer::cache_peers;
pub use peer::stream as peer_stream;
/// The peer network and its credentials (old path; see [`peer::network`] and
/// [`peer::credentials`]).
pub mod network {
    pub use crate::peer::credentials::{PeerCredentials, PeerTls};
    pub use crate::peer::network::*;
    pub use crate::peer::wire::PEER_POOL_IDLE;
}
/// The HTTP peer router (old path; see [`peer::routes`]).
pub mod peer_server {
    pub use crate::peer::routes::{protect, router};
}
