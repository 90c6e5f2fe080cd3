//! A follower's read: its own request to the leader counts as its acknowledgment.
//!
//! A linearizable read needs a read index that a quorum has vouched for after the read
//! began: the leader confirms it is still the leader (no node of a quorum has moved to a
//! later term) and hands out its commit index. `ensure_linearizable` does that with a round
//! of heartbeats to every follower. When the read comes from a follower, that follower is
//! already part of the answer: it asked, after its reads began, while it followed this
//! leader in this term. In a cluster where the leader and the asking follower make a quorum
//! (three voters: any two), the heartbeat round adds nothing but CPU on every node.
//!
//! **The rule.** The follower F asks leader L with the term T it follows L in
//! ([`FollowerReadRequest`]). L first raises its cluster time (`begin_read`, the time `t`
//! the reads will use), then checks in its Raft core ([`index_without_round`]): it leads in
//! T with a committed vote, it has committed an entry of T (so its commit index covers
//! every entry committed in an earlier term), and {L, F} is a quorum of every configuration
//! of its effective membership. Then it answers its commit index and `t` without a round;
//! otherwise it runs the round as before. F, after taking the answer's stamps in (its `seen`
//! is then at least `t`), checks that the vote it answers by is still for L in T
//! ([`still_follows`] on [`crate::log_store::saved_vote`]), waits until it has applied the
//! index, takes `t` as confirmed and reads.
//!
//! **Why it is linearizable.** Let the reads begin at time r0 on F. L's check runs at some
//! time l > r0 and F's at some time f > r0. A write acknowledged before r0 was committed
//! before r0 by L in T (then L's commit index at l covers it) or by a leader of an earlier
//! term (then it precedes L's first entry of T, which L has committed). A leader of a later
//! term T' (or of a greater leader id in T: openraft's leader ids allow several leaders per
//! term) needs the votes of a quorum, which meets {L, F}; L had not voted past (T, L) at l,
//! nor F at f (L's core said so; F's saved vote did, which is set before any answer that
//! depends on a new vote leaves F; votes are durable before they are answered, and a vote
//! only moves forward), so that leader was elected, and committed anything, after r0: such
//! writes are concurrent with the reads, which may or may not see them. L's core answers
//! its check in the order of the messages it handles, unlike openraft's metrics, which a
//! core publishes once per batch of messages, and F's saved vote is set when the save
//! begins, before the answers that wait for it.
//!
//! **Why the time is too** (see [`crate::cluster_time`]). `t` is in L's `seen` before L's
//! check, and in F's before F's check. A later leader's quorum includes L or F, whose vote,
//! cast after its check, carried a `seen` of at least `t`; a later round on L starts from
//! its `seen`. So every later read time is at least `t`, and an item a read at `t` found
//! expired is never served again.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::types::NodeId;

/// What a follower sends the leader for a read index (peer stream, `Kind::FollowerRead`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowerReadRequest {
    /// The term in which the follower follows the leader it asks.
    pub term: u64,
    /// The follower.
    pub follower: NodeId,
}

/// The leader's answer: the index the follower must have applied, and the cluster time its
/// reads use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowerReadAnswer {
    /// The leader's commit index.
    pub index: u64,
    /// The cluster time the leader began for these reads (µs since the epoch).
    pub time: u64,
    /// Whether the leader confirmed its leadership with a heartbeat round (`false`: the
    /// request counted as the follower's acknowledgment).
    pub round: bool,
}

/// What the leader's Raft core knows that [`index_without_round`] needs.
#[derive(Debug, Clone, Copy)]
pub struct LeaderView<'a> {
    /// The core is in the leader state.
    pub leading: bool,
    /// Its vote: term, the node voted for, committed.
    pub vote: (u64, NodeId, bool),
    /// Its committed log id: the leader that wrote it (term, node) and its index.
    pub committed: Option<(u64, NodeId, u64)>,
    /// Every configuration of its effective membership (two during a joint change).
    pub configs: &'a [BTreeSet<NodeId>],
}

impl<'a> LeaderView<'a> {
    /// The view of a Raft core's state.
    pub fn of(state: &'a openraft::RaftState<crate::types::TypeConfig>) -> Self {
        let vote = state.vote_ref();
        LeaderView {
            leading: state.server_state == openraft::ServerState::Leader,
            vote: (
                vote.leader_id.term,
                vote.leader_id.node_id,
                vote.is_committed(),
            ),
            committed: state
                .local_committed()
                .map(|id| (id.leader_id.term, id.leader_id.node_id, id.index)),
            configs: state
                .membership_state
                .effective()
                .membership()
                .get_joint_config(),
        }
    }
}

/// The leader's commit index for `request` without a heartbeat round, if the rule allows
/// it (see the module documentation); `None`: run the round.
pub fn index_without_round(view: &LeaderView<'_>, request: &FollowerReadRequest) -> Option<u64> {
    let (term, me, committed_vote) = view.vote;
    let (committed_term, committed_by, index) = view.committed?;
    // The entry committed last is this leader's own (its leader id, not only its term:
    // openraft's leader ids allow several leaders in one term), so the commit index covers
    // every entry an earlier leader committed.
    let allowed = view.leading
        && committed_vote
        && term == request.term
        && (committed_term, committed_by) == (term, me)
        && request.follower != me
        && pair_is_quorum(view.configs, me, request.follower);
    allowed.then_some(index)
}

/// Whether nodes `a` and `b` together are a majority of every configuration in `configs`
/// (and there is one).
pub fn pair_is_quorum(configs: &[BTreeSet<NodeId>], a: NodeId, b: NodeId) -> bool {
    !configs.is_empty()
        && configs.iter().all(|voters| {
            let present = usize::from(voters.contains(&a)) + usize::from(voters.contains(&b));
            present * 2 > voters.len()
        })
}

/// The follower's check, after the answer: its vote is still for `leader` in `term`.
pub fn still_follows(vote: (u64, NodeId), term: u64, leader: NodeId) -> bool {
    vote == (term, leader)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    fn three() -> Vec<BTreeSet<NodeId>> {
        vec![set(&[1, 2, 3])]
    }

    fn leader_view(configs: &[BTreeSet<NodeId>]) -> LeaderView<'_> {
        LeaderView {
            leading: true,
            vote: (7, 1, true),
            committed: Some((7, 1, 120)),
            configs,
        }
    }

    const ASK: FollowerReadRequest = FollowerReadRequest {
        term: 7,
        follower: 2,
    };

    #[test]
    fn a_leader_of_three_answers_a_follower_of_its_term_without_a_round() {
        let configs = three();
        assert_eq!(index_without_round(&leader_view(&configs), &ASK), Some(120));
        let other = FollowerReadRequest { follower: 3, ..ASK };
        assert_eq!(
            index_without_round(&leader_view(&configs), &other),
            Some(120)
        );
    }

    #[test]
    fn anything_less_than_the_rule_runs_the_round() {
        let configs = three();
        let base = leader_view(&configs);
        let cases: Vec<(&str, LeaderView<'_>, FollowerReadRequest)> = vec![
            (
                "not leading",
                LeaderView {
                    leading: false,
                    ..base
                },
                ASK,
            ),
            (
                "vote not committed",
                LeaderView {
                    vote: (7, 1, false),
                    ..base
                },
                ASK,
            ),
            (
                "follower in an older term",
                base,
                FollowerReadRequest { term: 6, ..ASK },
            ),
            (
                "follower in a newer term",
                base,
                FollowerReadRequest { term: 8, ..ASK },
            ),
            (
                "nothing of this term committed yet",
                LeaderView {
                    committed: Some((6, 1, 119)),
                    ..base
                },
                ASK,
            ),
            (
                "the last committed entry another leader's of this term",
                LeaderView {
                    committed: Some((7, 3, 119)),
                    ..base
                },
                ASK,
            ),
            (
                "nothing committed",
                LeaderView {
                    committed: None,
                    ..base
                },
                ASK,
            ),
            (
                "asked by itself",
                base,
                FollowerReadRequest { follower: 1, ..ASK },
            ),
            (
                "asked by a non-voter",
                base,
                FollowerReadRequest { follower: 9, ..ASK },
            ),
        ];
        for (what, view, request) in cases {
            assert_eq!(index_without_round(&view, &request), None, "{what}");
        }
    }

    #[test]
    fn two_nodes_of_five_are_no_quorum() {
        let configs = vec![set(&[1, 2, 3, 4, 5])];
        assert_eq!(index_without_round(&leader_view(&configs), &ASK), None);
    }

    #[test]
    fn a_joint_change_needs_the_pair_in_both_configurations() {
        // Adding 4 and 5 to {1, 2, 3}: {1, 2} is a majority of the old, not of the new.
        let growing = vec![set(&[1, 2, 3]), set(&[1, 2, 3, 4, 5])];
        assert!(!pair_is_quorum(&growing, 1, 2));
        // Replacing 3 by 4: {1, 2} is a majority of both.
        let replacing = vec![set(&[1, 2, 3]), set(&[1, 2, 4])];
        assert!(pair_is_quorum(&replacing, 1, 2));
        // Removing 2: of the new {1, 3} the pair holds only 1, which is not a majority.
        let shrinking = vec![set(&[1, 2, 3]), set(&[1, 3])];
        assert!(!pair_is_quorum(&shrinking, 1, 2));
    }

    #[test]
    fn quorum_of_small_and_empty_memberships() {
        assert!(pair_is_quorum(&[set(&[1, 2])], 1, 2));
        assert!(!pair_is_quorum(&[set(&[1, 2, 3, 4])], 1, 2));
        assert!(!pair_is_quorum(&[], 1, 2));
    }

    #[test]
    fn the_follower_still_follows_only_the_same_leader_in_the_same_term() {
        assert!(still_follows((7, 1), 7, 1));
        assert!(!still_follows((8, 1), 7, 1));
        assert!(!still_follows((8, 3), 7, 1));
        assert!(!still_follows((7, 3), 7, 1));
    }
}
