//! Errors of the node service, as the API sees them, and of membership changes (answered
//! on the peer port).

use crate::types::TypeConfig;
use statemanager_core::DomainError;

use crate::types::NodeId;

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
    NoQuorum(#[source] Reason),
    /// The write was proposed but not committed in time: it may still commit.
    #[error("the write was proposed but not committed within {0} ms; it may still be applied")]
    CommitTimeout(u64),
    /// The write was proposed, then the node stopped or the answer was lost before its
    /// outcome was known: it may still commit (answered like a commit timeout).
    #[error("the write was proposed but its outcome is unknown ({0}); it may still be applied")]
    OutcomeUnknown(#[source] Reason),
    /// The node is stopping or not ready; nothing was proposed.
    #[error("{0}")]
    Unavailable(#[source] Reason),
    /// The data directory's file system has less free space than the reserve; nothing was
    /// proposed.
    #[error("the disk is full: {free} bytes free, {reserve} reserved (disk_reserve); writes resume once space is freed")]
    DiskFull {
        /// Bytes free.
        free: u64,
        /// The configured reserve.
        reserve: u64,
    },
    /// A broken invariant: a bug, neither the client's nor the cluster's doing. Answered as
    /// 500 `internal` with a generic message; the details go to the log.
    #[error("internal error: {0}")]
    Internal(#[from] Invariant),
}

/// The reason of a [`NodeError`] that is neither the client's nor the domain's doing: its
/// text and, on the node where it arose, the typed error behind it as the `source`.
///
/// Only the text crosses the wire (a leader's answer to a follower's `Propose`), encoded as
/// a plain string, as these reasons always were; a reason decoded from a peer has no source.
#[derive(Debug, Clone)]
pub struct Reason {
    text: String,
    cause: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
}

impl Reason {
    /// A reason told in words, with no error behind it.
    pub fn text(text: impl Into<String>) -> Self {
        Reason {
            text: text.into(),
            cause: None,
        }
    }

    /// The error itself as the reason: its text, and the error as the source.
    pub fn of(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Reason {
            text: error.to_string(),
            cause: Some(std::sync::Arc::new(error)),
        }
    }

    /// `context: error`, the error kept as the source.
    pub fn caused(
        context: impl std::fmt::Display,
        error: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Reason {
            text: format!("{context}: {error}"),
            cause: Some(std::sync::Arc::new(error)),
        }
    }

    /// The text, as it is said to clients and peers.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for Reason {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<String> for Reason {
    fn from(text: String) -> Self {
        Reason::text(text)
    }
}

impl From<&str> for Reason {
    fn from(text: &str) -> Self {
        Reason::text(text)
    }
}

/// Reasons are equal when they say the same (their causes are not compared).
impl PartialEq for Reason {
    fn eq(&self, other: &Reason) -> bool {
        self.text == other.text
    }
}

impl Eq for Reason {}

impl PartialEq<&str> for Reason {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
}

impl serde::Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for Reason {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Reason::text)
    }
}

/// An invariant of this crate that did not hold (see [`NodeError::Internal`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum Invariant {
    /// A batch was answered with another number of outcomes than it had operations (`apply`
    /// returns one outcome per operation; answers are refused rather than misattributed).
    #[error("batch result size mismatch: {expected} operations, {got} outcomes")]
    BatchResultSize {
        /// Operations in the batch.
        expected: usize,
        /// Outcomes received.
        got: usize,
    },
}

/// openraft's error when a membership change fails.
pub type ChangeFailure =
    openraft::error::RaftError<TypeConfig, openraft::error::ClientWriteError<TypeConfig>>;

/// Why a membership change did not happen (answered 409 `membership` on the peer port).
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// openraft did not add the node as a learner.
    #[error("adding node {id} as a learner: {source}")]
    AddLearner {
        /// The node.
        id: NodeId,
        /// Why.
        source: Box<ChangeFailure>,
    },
    /// The learner did not catch up in time; it was taken out again.
    #[error("node {id} at {peer_addr} did not catch up within {secs} s (unreachable, or it refuses this cluster's credentials); it was not added")]
    NotCaughtUp {
        /// The node.
        id: NodeId,
        /// Its peer address.
        peer_addr: String,
        /// The time it had, in seconds.
        secs: u64,
    },
    /// openraft did not promote the learner.
    #[error("promoting node {id} to voter: {source}")]
    Promote {
        /// The node.
        id: NodeId,
        /// Why.
        source: Box<ChangeFailure>,
    },
    /// The node to remove is not a member.
    #[error("node {id} is not a member")]
    NotAMember {
        /// The node.
        id: NodeId,
    },
    /// Removing it would leave no voter.
    #[error("cannot remove the last voter")]
    LastVoter,
    /// openraft did not remove the node.
    #[error("removing node {id}: {source}")]
    Remove {
        /// The node.
        id: NodeId,
        /// Why.
        source: Box<ChangeFailure>,
    },
}

/// `e` followed by its sources, joined with `": "`: how a typed error becomes text at a
/// boundary (a log line, a reason sent to a peer, the message of a [`NodeError`]).
///
/// The errors of this crate name only their own layer in `Display` and keep the cause as
/// their `source`. Some foreign errors (openraft's storage errors) also end their own text
/// with their source's: a cause the text already ends with is not said twice.
pub fn with_sources(e: &dyn std::error::Error) -> String {
    statemanager_core::error_chain::Chain(e).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{decode, encode};

    #[test]
    fn the_wire_form_of_the_older_variants_is_unchanged() {
        // Followers and leaders of one cluster exchange these in `Propose` answers.
        assert_eq!(
            encode(&NodeError::NotLeader { leader: Some(3) }).expect("encodes"),
            [1, 1, 3]
        );
        assert_eq!(
            encode(&NodeError::NoQuorum("x".into())).expect("encodes"),
            [2, 1, b'x']
        );
        assert_eq!(
            encode(&NodeError::CommitTimeout(5)).expect("encodes"),
            [3, 5]
        );
        assert_eq!(
            encode(&NodeError::Unavailable(String::new().into())).expect("encodes"),
            [5, 0]
        );
        assert_eq!(
            encode(&NodeError::DiskFull {
                free: 1,
                reserve: 2
            })
            .expect("encodes"),
            [6, 1, 2]
        );
    }

    #[test]
    fn a_broken_invariant_round_trips_and_names_its_figures() {
        let e = NodeError::from(Invariant::BatchResultSize {
            expected: 3,
            got: 2,
        });
        let back: NodeError = decode(&encode(&e).expect("encodes")).expect("decodes");
        assert!(matches!(
            back,
            NodeError::Internal(Invariant::BatchResultSize {
                expected: 3,
                got: 2
            })
        ));
        assert!(e.to_string().contains("3 operations, 2 outcomes"));
    }

    #[test]
    fn with_sources_appends_each_cause_in_order() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(with_sources(&e), "outer: inner");
        assert_eq!(with_sources(&std::io::Error::other("alone")), "alone");
    }

    #[test]
    fn with_sources_does_not_repeat_a_cause_the_text_already_ends_with() {
        #[derive(Debug, thiserror::Error)]
        #[error("writing the log: {0}")]
        struct SaysItsSource(#[source] std::io::Error);
        let e = SaysItsSource(std::io::Error::other("disk gone"));
        assert_eq!(with_sources(&e), "writing the log: disk gone");
    }

    #[test]
    fn a_reason_keeps_its_error_here_and_crosses_the_wire_as_its_text() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = NodeError::NoQuorum(Reason::caused("cannot reach the leader", io));
        assert_eq!(e.to_string(), "no quorum: cannot reach the leader: refused");
        // Here: the reason, then the I/O error behind it.
        let reason = std::error::Error::source(&e).expect("the reason");
        let io = reason.source().expect("the I/O error");
        assert_eq!(io.to_string(), "refused");
        assert_eq!(
            with_sources(&e),
            "no quorum: cannot reach the leader: refused"
        );
        // On the wire: the text as a plain string, exactly as a `String` reason was.
        let bytes = encode(&e).expect("encodes");
        assert_eq!(
            bytes,
            encode(&NodeError::NoQuorum(
                "cannot reach the leader: refused".into()
            ))
            .expect("encodes")
        );
        let back: NodeError = decode(&bytes).expect("decodes");
        assert_eq!(back.to_string(), e.to_string());
        let reason = std::error::Error::source(&back).expect("the reason");
        assert!(reason.source().is_none());
    }
}
