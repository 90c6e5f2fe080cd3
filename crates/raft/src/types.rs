//! The openraft type configuration and the wire/disk encoding of its values.

use openraft::BasicNode;
use serde::{Deserialize, Serialize};
use statemanager_core::{Batch, OpOutcome};

/// A node's id.
pub type NodeId = u64;

/// The response to one applied log entry: one outcome per operation of its batch (empty for
/// blank and membership entries).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchResult(pub Vec<OpOutcome>);

/// A batch as openraft carries it: shared, so that an entry costs a pointer copy each time
/// openraft clones it or the log store's cache hands it out (for replication and apply),
/// instead of a deep copy or a decode. Encoded exactly as the [`Batch`] it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedBatch(pub std::sync::Arc<Batch>);

impl SharedBatch {
    /// Shares `batch`.
    pub fn new(batch: Batch) -> Self {
        SharedBatch(std::sync::Arc::new(batch))
    }
}

impl From<Batch> for SharedBatch {
    fn from(batch: Batch) -> Self {
        SharedBatch::new(batch)
    }
}

impl std::ops::Deref for SharedBatch {
    type Target = Batch;

    fn deref(&self) -> &Batch {
        &self.0
    }
}

impl Serialize for SharedBatch {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SharedBatch {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Batch::deserialize(deserializer).map(SharedBatch::new)
    }
}

impl std::fmt::Display for SharedBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "batch of {} operations", self.0.ops.len())
    }
}

openraft::declare_raft_types!(
    /// The State Manager's openraft types (openraft's defaults otherwise: `u64` terms, the
    /// "advanced" leader id of 0.9, whose stored form 0.10 keeps).
    pub TypeConfig:
        D = SharedBatch,
        R = BatchResult,
        NodeId = NodeId,
        Node = BasicNode,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A log entry.
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
/// A log id.
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
/// A vote.
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
/// The id of the leader that proposed an entry.
pub type CommittedLeaderId = openraft::type_config::alias::CommittedLeaderIdOf<TypeConfig>;
/// openraft's storage error.
pub type RaftStorageError = openraft::StorageError<TypeConfig>;
/// Stored membership.
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
/// A membership configuration.
pub type Membership = openraft::Membership<NodeId, BasicNode>;
/// A snapshot's metadata.
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;

/// Encodes a value for disk (postcard: compact, deterministic, serde-based).
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_allocvec(value)
}

/// Decodes a value written by [`encode`].
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}

/// The Raft handle of a node (openraft 0.10 names the state machine in it).
pub type Raft = openraft::Raft<TypeConfig, crate::state_machine::StateMachine>;

/// Why a membership could not be formed (a voter without an address).
pub type MembershipError = openraft::error::MembershipError<NodeId>;

/// A membership in which every node of `nodes` is a voter.
pub fn voters_of(
    nodes: std::collections::BTreeMap<NodeId, BasicNode>,
) -> Result<Membership, MembershipError> {
    let voters = nodes.keys().copied().collect();
    Membership::new(vec![voters], nodes)
}

/// Milliseconds since this leader last heard from a quorum (`None` when it has not, or does
/// not lead).
pub fn millis_since_quorum_ack(m: &openraft::RaftMetrics<TypeConfig>) -> Option<u64> {
    use openraft::Instant as _;
    let acked = m.last_quorum_acked.as_ref()?;
    let elapsed = openraft::TokioInstant::now() - **acked;
    Some(elapsed.as_millis() as u64)
}

/// The committed leader id of `node_id`'s leadership in `term`.
pub fn leader_in(term: u64, node_id: NodeId) -> CommittedLeaderId {
    CommittedLeaderId { term, node_id }
}

/// Whether `me` is the only voter of `membership` (in each of its configurations, when it is
/// a joint one). The same answer as `voter_ids()` yielding `me` alone, without building the
/// set of voters that `voter_ids` collects: a single node asks this on every fetch.
pub fn is_sole_voter(membership: &Membership, me: NodeId) -> bool {
    let mut voters = membership.get_joint_config().iter().flatten();
    voters.clone().any(|v| *v == me) && voters.all(|v| *v == me)
}

/// Whether `membership` has two voters or more (counted across a joint membership's
/// configurations), without building the set of voters (the writer asks this per batch).
pub fn has_several_voters(membership: &Membership) -> bool {
    let mut voters = membership.get_joint_config().iter().flatten();
    match voters.next() {
        Some(first) => voters.any(|v| v != first),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn membership(configs: &[&[NodeId]]) -> Membership {
        let configs: Vec<BTreeSet<NodeId>> = configs
            .iter()
            .map(|c| c.iter().copied().collect())
            .collect();
        let nodes: BTreeMap<NodeId, BasicNode> = configs
            .iter()
            .flatten()
            .chain([7].iter())
            .map(|id| (*id, BasicNode::new(format!("127.0.0.1:{id}"))))
            .collect();
        Membership::new(configs, nodes).expect("a valid membership")
    }

    /// The two checks agree with `voter_ids` on single, multi-voter and joint memberships,
    /// with a learner (7) beside the voters.
    #[test]
    fn voter_checks_agree_with_voter_ids() {
        let cases: &[&[&[NodeId]]] = &[
            &[&[1]],
            &[&[2]],
            &[&[1, 2]],
            &[&[1, 2, 3]],
            &[&[1], &[1]],
            &[&[1], &[1, 2]],
            &[&[1, 2], &[1]],
            &[&[2], &[3]],
            &[&[2], &[2]],
        ];
        for configs in cases {
            let m = membership(configs);
            let voters: Vec<NodeId> = m.voter_ids().collect();
            for me in [1, 2, 7] {
                assert_eq!(
                    is_sole_voter(&m, me),
                    voters == [me],
                    "{configs:?}, me {me}"
                );
            }
            assert_eq!(has_several_voters(&m), voters.len() >= 2, "{configs:?}");
        }
    }
}
