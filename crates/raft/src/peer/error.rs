//! The peer transport's errors, in one place: what failed on a call to a peer (client side)
//! and why a peer's call was refused (server side).
//!
//! Each error's `Display` names its own layer only; the cause is its `source` (postcard,
//! reqwest, the peer stream's [`CallError`], …). Where one of them becomes text — a log
//! line, a reason sent back on the wire, the message of a [`crate::NodeError`] — it is
//! formatted with [`crate::error::with_sources`], which appends the causes. Reasons that
//! cross the wire between nodes stay text (`String`) in the wire form: a node's answer is
//! `Result<_, String>`, decoded here into [`ReadIndexError::Refused`] or
//! [`CacheCallError::Refused`].

use super::stream::Kind;
use crate::types::NodeId;
use crate::types::TypeConfig;
use crate::Reason;

/// Why a call on the peer stream has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The peer speaks HTTP only (it answered the preface with HTTP): use the HTTP route.
    #[error("the peer does not speak the peer stream")]
    HttpOnly,
    /// The request never reached the peer whole (no connection, refused hello, failed
    /// write): the peer did nothing.
    #[error("not sent: {0}")]
    NotSent(#[source] Reason),
    /// The request was sent but no answer came (timeout, connection lost): the peer may have
    /// acted on it.
    #[error("sent, no answer: {0}")]
    Lost(#[source] Reason),
    /// The peer refused the call (cluster id, version, undecodable): it did nothing.
    #[error("refused by the peer: {0}")]
    Refused(String),
}

/// Why the answer to this node's hello does not admit it (client side).
#[derive(Debug, thiserror::Error)]
pub enum HelloAnswerError {
    /// The peer refused this node; its reason, as the peer sent it.
    #[error("{0}")]
    Refused(String),
    /// The answer could not be decoded.
    #[error("undecodable hello answer")]
    Undecodable(#[source] postcard::Error),
}

/// Why a peer's hello was refused (server side; the text goes back to the peer).
#[derive(Debug, thiserror::Error)]
pub enum HelloError {
    /// The hello frame could not be decoded.
    #[error("undecodable hello")]
    Undecodable(#[source] postcard::Error),
    /// The peer speaks a protocol version this node does not.
    #[error("peer stream version {version} is not {min} to {max}")]
    Version {
        /// The peer's version.
        version: u32,
        /// The oldest version accepted.
        min: u32,
        /// The newest version accepted.
        max: u32,
    },
    /// A cluster secret is configured and the hello did not carry it.
    #[error("the peer stream needs the cluster secret")]
    NoSecret,
}

/// Why a request frame of the peer stream was refused (server side; the text goes back to
/// the peer).
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The frame had no bytes.
    #[error("empty request")]
    Empty,
    /// The first byte names no call.
    #[error("unknown call {0}")]
    UnknownCall(u8),
    /// The cluster id after the kind could not be decoded.
    #[error("undecodable request")]
    Undecodable(#[source] postcard::Error),
    /// The clock stamp (protocol version 2) could not be decoded.
    #[error("undecodable stamp")]
    UndecodableStamp(#[source] postcard::Error),
    /// The request of a known kind could not be decoded.
    #[error("undecodable {kind:?} request")]
    UndecodableCall {
        /// The call.
        kind: Kind,
        /// The decoder's error.
        #[source]
        source: postcard::Error,
    },
}

/// Why a follower got no read index from the leader (it then forwards the read).
#[derive(Debug, thiserror::Error)]
pub enum ReadIndexError {
    /// The peer stream gave no answer.
    #[error("read index over the peer stream")]
    Stream(#[from] CallError),
    /// The leader answered, and its answer could not be decoded.
    #[error("undecodable read-index answer")]
    Undecodable(#[source] postcard::Error),
    /// The leader could not confirm a read index; its reason, as it sent it.
    #[error("{0}")]
    Refused(String),
    /// The HTTP request failed (connection, timeout, body).
    #[error("read index over HTTP")]
    Http(#[source] reqwest::Error),
    /// The leader answered the HTTP request with an error status.
    #[error("leader answered {0}")]
    Status(reqwest::StatusCode),
}

/// Why this node, as leader, has no read index for a follower (the text goes back to it).
#[derive(Debug, thiserror::Error)]
pub enum ReadIndexRefusal {
    /// This node's clock is out of bounds; the clock check's reason.
    #[error("{0}")]
    Clock(String),
    /// openraft could not confirm leadership (not the leader, no quorum, stopping).
    #[error(transparent)]
    Leadership(
        #[from]
        openraft::error::RaftError<TypeConfig, openraft::error::LinearizableReadError<TypeConfig>>,
    ),
    /// Leadership was not confirmed within the time allowed.
    #[error("leadership could not be confirmed in time")]
    Timeout,
}

/// Why this node, as a key's owner, did not answer a forwarded cache call (the text goes
/// back to the caller).
#[derive(Debug, thiserror::Error)]
pub enum CacheAnswerError {
    /// This node was started without a cache.
    #[error("this node has no cache")]
    NoCache,
}

/// Why a cache call forwarded to a key's owner has no answer (the cache then tries the next
/// node).
#[derive(Debug, thiserror::Error)]
pub enum CacheCallError {
    /// The node is not (or no longer) a member.
    #[error("node {id} is not a member")]
    NotAMember {
        /// The node.
        id: NodeId,
    },
    /// The peer stream gave no answer.
    #[error(transparent)]
    Stream(#[from] CallError),
    /// The owner answered, and its answer could not be decoded.
    #[error("undecodable answer")]
    Undecodable(#[source] postcard::Error),
    /// The owner did not answer the call; its reason, as it sent it.
    #[error("{0}")]
    Refused(String),
}

/// Why a cluster secret cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Shorter than [`super::auth::MIN_SECRET_BYTES`] (after trimming).
    #[error("cluster_secret must be at least {min} bytes (it is {len})")]
    TooShort {
        /// Its length, bytes.
        len: usize,
        /// The minimum.
        min: usize,
    },
    /// It has a space or a character that is not printable ASCII.
    #[error("cluster_secret must be printable ASCII without spaces")]
    NotPrintable,
}

/// An answer as it travels to the peer that asked: a refusal's reason is text on the wire
/// (`Result<T, String>`), the error with its sources.
pub(crate) fn wire_reason<T, E: std::error::Error>(answer: Result<T, E>) -> Result<T, String> {
    answer.map_err(|e| crate::error::with_sources(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::with_sources;

    #[test]
    fn a_refusal_reads_as_before_with_its_cause() {
        let cause = postcard::from_bytes::<u64>(&[]).expect_err("empty input");
        let e = RequestError::Undecodable(cause.clone());
        assert_eq!(with_sources(&e), format!("undecodable request: {cause}"));
        let e = RequestError::UndecodableCall {
            kind: Kind::Vote,
            source: cause.clone(),
        };
        assert_eq!(
            with_sources(&e),
            format!("undecodable Vote request: {cause}")
        );
        assert_eq!(
            with_sources(&RequestError::UnknownCall(9)),
            "unknown call 9"
        );
    }

    #[test]
    fn a_stream_failure_keeps_its_call_error_as_source() {
        let e = ReadIndexError::from(CallError::Lost("no answer from x in time".into()));
        assert_eq!(
            with_sources(&e),
            "read index over the peer stream: sent, no answer: no answer from x in time"
        );
        let e = CacheCallError::from(CallError::NotSent("cannot connect".into()));
        assert_eq!(with_sources(&e), "not sent: cannot connect");
    }

    #[test]
    fn a_refused_secret_says_why_as_before() {
        let short = crate::peer::auth::ClusterSecret::new("short").expect_err("too short");
        assert_eq!(
            short.to_string(),
            "cluster_secret must be at least 16 bytes (it is 5)"
        );
        let spaced = crate::peer::auth::ClusterSecret::new("has a space in the middle")
            .expect_err("a space");
        assert_eq!(spaced, SecretError::NotPrintable);
    }
}
