//! A follower's round: one request to its leader (see [`crate::follower_read`]).

use super::Reader;
use crate::error::with_sources;
use crate::follower_read::{still_follows, FollowerReadRequest};
use crate::NodeError;

/// The leader a follower asks, as its metrics name it.
#[derive(Debug, Clone, Copy)]
pub(super) struct FollowedLeader {
    /// The leader's id.
    id: crate::types::NodeId,
    /// The term this node's vote is in, as the same reading of its metrics shows it.
    term: u64,
    /// This node.
    me: crate::types::NodeId,
}

impl FollowedLeader {
    pub(super) fn of(
        m: &openraft::metrics::RaftServerMetrics<crate::types::TypeConfig>,
        id: crate::types::NodeId,
    ) -> Self {
        FollowedLeader {
            id,
            term: m.vote.leader_id.term,
            me: m.id,
        }
    }
}

impl Reader {
    /// A follower's round: the read index from `leader` at `addr` (one peer RPC, which
    /// counts as this node's acknowledgment of the leader, see [`crate::follower_read`]);
    /// when the leader answered without a round of its own, a check that the vote this node
    /// answers by (see [`crate::log_store::saved_vote`]) still names that leader in the term
    /// it asked in; then a wait until it has applied up to the index, and the leader's time
    /// for these reads confirmed here. Any failure is `NotLeader`: the caller forwards the
    /// request.
    pub(super) async fn read_through_leader(
        &self,
        leader: FollowedLeader,
        addr: &str,
    ) -> Result<(), NodeError> {
        let Reader {
            network,
            time,
            saved_vote,
            timeout,
            ..
        } = self;
        let not_leader = NodeError::NotLeader {
            leader: Some(leader.id),
        };
        let request = FollowerReadRequest {
            term: leader.term,
            follower: leader.me,
        };
        let answer = match network
            .follower_read(addr, leader.id, &request, *timeout)
            .await
        {
            Ok(answer) => answer,
            Err(e) => {
                tracing::debug!(
                    error = %with_sources(&e),
                    "no read index from the leader; forwarding"
                );
                forwarded("no_index");
                return Err(not_leader);
            }
        };
        // After the answer's stamps were taken in: from here on, a vote this node casts carries
        // the leader's time (see `follower_read`). An answer after a round needs no check: the
        // leader confirmed its leadership, and its time, with a quorum.
        if !answer.round {
            let follows = saved_vote
                .get()
                .is_some_and(|vote| still_follows(vote, request.term, leader.id));
            if !follows {
                forwarded("vote");
                return Err(not_leader);
            }
        }
        if self
            .applied_at_least(answer.index, "follower read")
            .await
            .is_err()
        {
            forwarded("not_applied");
            return Err(not_leader);
        }
        time.confirm(answer.time);
        Ok(())
    }
}

/// Counts a round whose reads this follower forwards to the leader instead, and why.
fn forwarded(reason: &'static str) {
    metrics::counter!("statemanager_follower_rounds_forwarded_total", "reason" => reason)
        .increment(1);
}
