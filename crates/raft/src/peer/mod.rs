//! The peer transport: everything nodes say to each other, on the peer port.
//!
//! - [`wire`]: the constants both sides agree on (headers, RPC version, body limit, idle time);
//! - [`credentials`] and [`auth`]: how a node proves itself to its peers (cluster secret,
//!   mutual TLS) and checks them;
//! - [`network`]: the client side, [`network::PeerNetwork`] (openraft's `RaftNetwork`): the
//!   peer stream for the hot RPCs, postcard over keep-alive HTTP(S) for the rest;
//! - [`stream`]: the peer stream (framed postcard on persistent connections): `frame`,
//!   `client` (`StreamPool`), `server` (one task per connection);
//! - [`answer`]: the answers both transports give (append, vote, read index, pre-vote);
//! - [`routes`]: the HTTP peer router (Raft RPCs, node info, membership admin) and
//!   `protect`, the cluster-secret check on every peer route;
//! - [`snapshot_transfer`]: a whole snapshot to a follower in one request, streamed from the
//!   leader's file into the follower's;
//! - [`cache_peers`]: the shared cache's calls on the peer stream, both sides;
//! - [`error`]: the transport's errors, client and server side;
//! - [`host`]: [`host::PeerHost`], what the answering side needs from the node (which
//!   implements it; this module never names the node itself);
//! - [`marks`]: peers marked for a minute (HTTP only; an older version that refuses a
//!   newer call), so they are not asked in vain on every call.

pub mod answer;
pub mod auth;
pub mod cache_peers;
pub mod credentials;
pub mod error;
pub mod host;
pub mod marks;
pub mod network;
pub mod routes;
pub mod snapshot_transfer;
pub mod stream;
#[cfg(test)]
pub(crate) mod test_peer;
pub mod wire;
