//! The node as its peer transport sees it: [`PeerHost`] for [`Node`], each method the
//! node's own.

use std::future::Future;
use std::sync::Arc;

use statemanager_core::Op;

use super::Node;
use crate::cluster_id::ClusterRefusal;
use crate::cluster_time::ClusterTime;
use crate::error::MembershipError;
use crate::peer::auth::ClusterSecret;
use crate::peer::host::{PeerHost, ProposeAnswer};
use crate::peer::network::PeerNetwork;
use crate::takeover::Takeover;
use crate::types::NodeId;
use crate::view::{Member, NodeStatus};

impl PeerHost for Node {
    fn raft(&self) -> &crate::types::Raft {
        Node::raft(self)
    }

    fn incoming_snapshot_path(&self) -> std::path::PathBuf {
        // One file per transfer: a deposed leader's transfer may overlap the new one's.
        static TRANSFERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = TRANSFERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner
            .data_dir
            .snapshot_dir()
            .join(format!("incoming-from-leader-{n}.snap"))
    }

    fn takeover(&self) -> &Takeover {
        Node::takeover(self)
    }

    fn time(&self) -> &ClusterTime {
        Node::time(self)
    }

    fn id(&self) -> NodeId {
        self.inner.node_id
    }

    fn saved_vote(&self) -> Option<(u64, NodeId)> {
        self.inner.saved_vote.get()
    }

    fn begin_leader_read(&self) -> u64 {
        Node::begin_leader_read(self)
    }

    fn admit_peer(&self, theirs: Option<&str>) -> Result<(), ClusterRefusal> {
        Node::admit_peer(self, theirs)
    }

    fn peer_secret(&self) -> Option<&ClusterSecret> {
        Node::peer_secret(self)
    }

    fn propose_forwarded(&self, ops: Vec<Op>) -> impl Future<Output = ProposeAnswer> + Send {
        Node::propose_forwarded(self, ops)
    }

    fn local_cache(&self) -> Option<&Arc<statemanager_cache::Cache>> {
        Node::local_cache(self)
    }

    fn shared_cache(&self) -> Option<Arc<statemanager_cache::SharedCache>> {
        Node::shared_cache(self)
    }

    fn network(&self) -> &PeerNetwork {
        Node::network(self)
    }

    fn member_ids(&self) -> Vec<NodeId> {
        Node::member_ids(self)
    }

    fn member_addr(&self, id: NodeId) -> Option<String> {
        Node::member_addr(self, id)
    }

    fn members(&self) -> Vec<Member> {
        Node::members(self)
    }

    fn remote_leader(&self) -> Option<(NodeId, String)> {
        Node::remote_leader(self)
    }

    fn status(&self) -> NodeStatus {
        Node::status(self)
    }

    fn api_addr(&self) -> &str {
        Node::api_addr(self)
    }

    fn cluster_id(&self) -> Option<String> {
        Node::cluster_id(self)
    }

    fn commit_index(&self) -> impl Future<Output = Option<u64>> + Send {
        Node::commit_index(self)
    }

    fn leads_with_quorum(&self) -> bool {
        Node::leads_with_quorum(self)
    }

    fn add_member(
        &self,
        id: NodeId,
        peer_addr: &str,
    ) -> impl Future<Output = Result<(), MembershipError>> + Send {
        Node::add_member(self, id, peer_addr)
    }

    fn remove_member(
        &self,
        id: NodeId,
    ) -> impl Future<Output = Result<(), MembershipError>> + Send {
        Node::remove_member(self, id)
    }
}
