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

openraft::declare_raft_types!(
    /// The State Manager's openraft types.
    pub TypeConfig:
        D = Batch,
        R = BatchResult,
        NodeId = NodeId,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id.
pub type LogId = openraft::LogId<NodeId>;
/// openraft's storage error for our node ids.
pub type RaftStorageError = openraft::StorageError<NodeId>;
/// Stored membership.
pub type StoredMembership = openraft::StoredMembership<NodeId, BasicNode>;

/// Encodes a value for disk (postcard: compact, deterministic, serde-based).
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_allocvec(value)
}

/// Decodes a value written by [`encode`].
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}
