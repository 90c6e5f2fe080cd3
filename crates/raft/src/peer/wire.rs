//! The peer transport's wire constants, in one place: the HTTP headers every peer request
//! carries, the RPC format version, the largest peer body, and how long idle connections
//! live. The peer stream's own constants (preface, versions, answer tags) are in
//! [`super::stream`].

use std::time::Duration;

/// The header naming the peer RPC format version.
pub const RPC_VERSION_HEADER: &str = "x-statemanager-rpc";
/// The peer RPC format version this build speaks.
pub const RPC_VERSION: &str = "1";
/// The header carrying the sender's cluster id.
pub const CLUSTER_HEADER: &str = "x-statemanager-cluster";

/// How long an idle pooled connection to a peer is kept (peer ports close idle connections
/// only after twice this).
pub const PEER_POOL_IDLE: Duration = Duration::from_secs(15);

/// Largest peer request accepted. An append carries at most `MAX_PAYLOAD_ENTRIES` entries of
/// at most ~4 MiB (the writer's batch bound, plus one item over it), and snapshot chunks are
/// 3 MiB; axum's default of 2 MiB refused the first append after an election (which carries a
/// backlog of entries), and the cluster could not elect a working leader.
pub const MAX_PEER_BODY: usize = 512 * 1024 * 1024;

/// Decodes a vote request, also in the layout of releases on openraft 0.9 (without
/// `leadership_transfer`, which postcard cannot default: a 0.9 request ends there), so the
/// nodes of a cluster in the middle of a rolling upgrade can still elect each other.
pub fn decode_vote_request(
    body: &[u8],
) -> Result<openraft::raft::VoteRequest<crate::types::TypeConfig>, postcard::Error> {
    postcard::from_bytes(body).or_else(|e| {
        let (vote, last_log_id): (crate::types::Vote, Option<crate::types::LogId>) =
            postcard::from_bytes(body).map_err(|_| e)?;
        Ok(openraft::raft::VoteRequest::new(vote, last_log_id))
    })
}

#[cfg(test)]
mod tests {
    use super::decode_vote_request;
    use crate::types::{leader_in, LogId, Vote};

    #[test]
    fn a_vote_request_of_a_release_on_openraft_0_9_decodes() {
        let vote = Vote::new(3, 2);
        let last = Some(LogId::new(leader_in(2, 1), 13));
        // 0.9's layout: the vote and the last log id, nothing after.
        let old = postcard::to_allocvec(&(vote, last)).unwrap();
        let request = decode_vote_request(&old).unwrap();
        assert_eq!((request.vote, request.last_log_id), (vote, last));
        assert!(!request.leadership_transfer);
        // The current layout decodes as itself.
        let mut current = openraft::raft::VoteRequest::<crate::types::TypeConfig>::new(vote, last);
        current.leadership_transfer = true;
        let bytes = postcard::to_allocvec(&current).unwrap();
        assert!(decode_vote_request(&bytes).unwrap().leadership_transfer);
        assert!(decode_vote_request(&[0xff]).is_err());
    }
}
