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

openraft::declare_raft_types!(
    /// The State Manager's openraft types.
    pub TypeConfig:
        D = SharedBatch,
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
