//! What the peer transport needs from the node it serves: [`PeerHost`].
//!
//! The node ([`crate::node`]) uses the transport (its network, its routes); the transport
//! must not use the node back. Its answering side (the HTTP routes, the peer stream's
//! server, the shared cache's calls) therefore takes any [`PeerHost`], which
//! [`crate::node::Node`] implements, and names only neutral types (Raft's, the cluster time,
//! the [`crate::view`]s, the [`crate::error`]s).

use std::future::Future;
use std::sync::Arc;

use statemanager_core::{Op, Stored};

use super::auth::ClusterSecret;
use super::network::PeerNetwork;
use crate::cluster_id::ClusterRefusal;
use crate::cluster_time::ClusterTime;
use crate::error::{MembershipError, NodeError};
use crate::takeover::Takeover;
use crate::types::NodeId;
use crate::view::{Member, NodeStatus};

/// The answer to a batch handed over by a follower: one outcome per operation, or why none.
pub type ProposeAnswer = Result<Vec<Result<Stored, NodeError>>, NodeError>;

/// The node as the peer transport sees it (cheap to clone, like [`crate::node::Node`]).
pub trait PeerHost: Clone + Send + Sync + 'static {
    /// The Raft handle.
    fn raft(&self) -> &crate::types::Raft;
    /// Leader-contact tracking (see [`crate::takeover`]).
    fn takeover(&self) -> &Takeover;
    /// This node's cluster time.
    fn time(&self) -> &ClusterTime;
    /// This node's id.
    fn id(&self) -> NodeId;
    /// The vote this node is saving or saved last: term and the node it names (see
    /// `log_store::saved_vote`).
    fn saved_vote(&self) -> Option<(u64, NodeId)>;
    /// On the leader, before a read-index round for a follower: the cluster time the round
    /// confirms.
    fn begin_leader_read(&self) -> u64;
    /// Checks a peer's cluster id (a node waiting to join adopts the first one).
    fn admit_peer(&self, theirs: Option<&str>) -> Result<(), ClusterRefusal>;
    /// The cluster secret peers must present, if one is configured.
    fn peer_secret(&self) -> Option<&ClusterSecret>;
    /// Proposes a batch handed over by a follower, as one entry.
    fn propose_forwarded(&self, ops: Vec<Op>) -> impl Future<Output = ProposeAnswer> + Send;
    /// This node's share of the shared cache, if it has one.
    fn local_cache(&self) -> Option<&Arc<statemanager_cache::Cache>>;
    /// The shared cache registered on this node, while it lives.
    fn shared_cache(&self) -> Option<Arc<statemanager_cache::SharedCache>>;
    /// The peer network.
    fn network(&self) -> &PeerNetwork;
    /// The ids of the cluster's members.
    fn member_ids(&self) -> Vec<NodeId>;
    /// The peer address of member `id`.
    fn member_addr(&self, id: NodeId) -> Option<String>;
    /// The members, as this node sees them.
    fn members(&self) -> Vec<Member>;
    /// The current leader's id and peer address, if a leader is known and it is not us.
    fn remote_leader(&self) -> Option<(NodeId, String)>;
    /// This node's state.
    fn status(&self) -> NodeStatus;
    /// This node's client address.
    fn api_addr(&self) -> &str;
    /// A fresh file for a snapshot received from the leader, written before it is installed
    /// (removed at start-up if a transfer was interrupted).
    fn incoming_snapshot_path(&self) -> std::path::PathBuf;
    /// This node's cluster id (`None` while waiting to join).
    fn cluster_id(&self) -> Option<String>;
    /// The index of the last committed log entry, as this node knows it.
    fn commit_index(&self) -> impl Future<Output = Option<u64>> + Send;
    /// Whether this node leads and heard from a quorum recently.
    fn leads_with_quorum(&self) -> bool;
    /// Adds node `id` at `peer_addr` (as a learner, then a voter once caught up).
    fn add_member(
        &self,
        id: NodeId,
        peer_addr: &str,
    ) -> impl Future<Output = Result<(), MembershipError>> + Send;
    /// Removes node `id`.
    fn remove_member(&self, id: NodeId)
        -> impl Future<Output = Result<(), MembershipError>> + Send;
}
