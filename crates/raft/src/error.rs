//! Errors of the node service, as the API sees them.

use statemanager_core::DomainError;

/// Why a store or fetch did not succeed.
#[derive(Debug, Clone, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum NodeError {
    /// The domain refused it (a client result, decided identically on every replica).
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// This node is not the leader and cannot serve it here.
    #[error("this node is not the leader{}", .leader.map(|l| format!(" (leader is node {l})")).unwrap_or_default())]
    NotLeader {
        /// The leader, if known.
        leader: Option<u64>,
    },
    /// No quorum could be reached; nothing was proposed.
    #[error("no quorum: {0}")]
    NoQuorum(String),
    /// The write was proposed but not committed in time: it may still commit.
    #[error("the write was proposed but not committed within {0} ms; it may still be applied")]
    CommitTimeout(u64),
    /// The write was proposed, then the node stopped or the answer was lost before its
    /// outcome was known: it may still commit (answered like a commit timeout).
    #[error("the write was proposed but its outcome is unknown ({0}); it may still be applied")]
    OutcomeUnknown(String),
    /// The node is stopping or not ready; nothing was proposed.
    #[error("{0}")]
    Unavailable(String),
    /// The data directory's file system has less free space than the reserve; nothing was
    /// proposed.
    #[error("the disk is full: {free} bytes free, {reserve} reserved (disk_reserve); writes resume once space is freed")]
    DiskFull {
        /// Bytes free.
        free: u64,
        /// The configured reserve.
        reserve: u64,
    },
}
