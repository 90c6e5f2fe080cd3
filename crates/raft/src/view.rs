//! Plain views of a node: what it reports about itself and its cluster. Data only, so that
//! both the node ([`crate::node`]) and the peer transport ([`crate::peer`], which answers
//! `/peer/info` and `/admin/cluster` with them) may use them without depending on each
//! other.

use serde::Serialize;
use statemanager_core::Timestamp;

use crate::types::NodeId;

/// One member of the cluster, as the leader (or this node) sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Member {
    /// Node id.
    pub id: NodeId,
    /// Its peer address.
    pub peer_addr: String,
    /// `voter` or `learner`.
    pub state: &'static str,
    /// The last log index known to be replicated to it (leader only).
    pub matched_index: Option<u64>,
}

/// A snapshot of the node's state for `/status` and `/metrics`.
#[derive(Debug, Clone)]
pub struct NodeStatus {
    /// This node.
    pub node_id: NodeId,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: &'static str,
    /// The current leader, if known.
    pub leader: Option<NodeId>,
    /// The current term.
    pub term: u64,
    /// Index of the last log entry.
    pub last_log_index: u64,
    /// Index of the last applied entry.
    pub applied_index: u64,
    /// Items held.
    pub items: u64,
    /// Bytes of item data held.
    pub data_bytes: u64,
    /// Earliest expiry of a held item.
    pub next_expiry: Option<Timestamp>,
    /// Items purged by expiry since start.
    pub expired_total: u64,
}
