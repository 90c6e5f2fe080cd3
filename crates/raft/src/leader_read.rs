//! A leader's read: one follower's word instead of a heartbeat round.
//!
//! A read on the leader needs what a read on a follower needs (see [`crate::follower_read`]):
//! a commit index taken after the reads began, vouched for by a quorum that had not moved to
//! a later leader by then. openraft's round (`ensure_linearizable`) asks every follower with a
//! heartbeat, answered through each one's Raft core, and waits for a quorum. In a cluster
//! where the leader and any one follower make a quorum (three voters), one follower's answer
//! is enough, and the other followers need not be asked at all.
//!
//! **The rule.** The reader on leader L raises its cluster time (`begin_read`, the time `t`
//! the reads will use), then checks in its Raft core what a leader checks for a follower's
//! read ([`crate::follower_read::index_without_round`]): it leads in term T with a committed
//! vote, has committed an entry of T, and {L, F} is a quorum of every configuration of its
//! effective membership, for the follower F it picks ([`choose`]). It then asks F
//! ([`LeaderReadRequest`], a peer-stream call whose stamp carries L's `seen`, at least `t`);
//! F takes the stamp in and checks that the vote it answers by (see
//! [`crate::log_store::saved_vote`]) is for L in T ([`vouches`]), and answers whether it is. If F vouches, L
//! waits until it has applied its commit index, takes `t` as confirmed and reads; if not
//! (F refused, is an older version, is slow or down), L runs openraft's round, and asks
//! another follower next time. A follower whose stream refused the call (an older version)
//! is not asked for a minute ([`not_refused_lately`], [`crate::peer::marks`]).
//!
//! **Why it is linearizable.** The proof of [`crate::follower_read`] with the two roles
//! swapped: both checks ran after the reads began; a write acknowledged before they began is
//! covered by L's commit index; a later leader needs a quorum, which meets {L, F}, neither of
//! which had voted past (T, L) at its check, so that leader committed nothing before the
//! reads began; and `t` was in both nodes' `seen` before their checks, so every later read
//! time is at least `t`.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::follower_read::{index_without_round, FollowerReadRequest, LeaderView};
use crate::types::NodeId;

/// How long a leader waits for the follower it asked to vouch for its reads before it runs
/// a heartbeat round instead (a heartbeat interval: a follower that is down or paused costs
/// one round this much, and the next round asks another follower). The follower answers at
/// once: its check reads the vote it answers by, with no wait.
pub const VOUCH_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(100);

/// What a leader asks one follower for its reads (peer stream, `Kind::LeaderRead`): does
/// the follower's vote still name this leader in this term?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderReadRequest {
    /// The term the leader leads in.
    pub term: u64,
    /// The leader.
    pub leader: NodeId,
    /// The follower the leader means to ask: a node of another id (a learner, or the leader
    /// itself, reached at an address the membership gives the follower) does not vouch.
    pub follower: NodeId,
}

/// The follower a leader asks, and its commit index: the first voter, in the order of ids
/// from `from` round to the lowest, that the rule allows (see the module documentation) and
/// `may_ask` does not rule out (a follower that refused the call lately, an older version);
/// `None`: no single follower is enough, or none may be asked (the leader runs openraft's
/// round).
pub fn choose(
    view: &LeaderView<'_>,
    from: NodeId,
    may_ask: impl Fn(NodeId) -> bool,
) -> Option<(NodeId, u64)> {
    let me = view.vote.1;
    let voters: BTreeSet<NodeId> = view
        .configs
        .iter()
        .flatten()
        .copied()
        .filter(|id| *id != me)
        .collect();
    let allowed = |follower: NodeId| {
        index_without_round(
            view,
            &FollowerReadRequest {
                term: view.vote.0,
                follower,
            },
        )
        .map(|index| (follower, index))
    };
    voters
        .range(from..)
        .chain(voters.range(..from))
        .find_map(|id| allowed(*id).filter(|_| may_ask(*id)))
}

/// Whether the voter `id` may be asked to vouch: `membership` gives it an address, and that
/// address has not refused the call lately (`refused`, where
/// [`crate::peer::network::PeerNetwork::leader_read`] marks the address it called, the one
/// given here).
pub fn not_refused_lately(
    membership: &crate::types::Membership,
    refused: &crate::peer::marks::PeerMarks,
    id: NodeId,
) -> bool {
    membership
        .get_node(&id)
        .is_some_and(|node| !refused.is_marked(&node.addr))
}

/// The answer of node `me` to `request`, given its vote (term, the node voted for): it is
/// the follower asked, not the leader, and its vote names that leader in that term.
pub fn vouches(me: NodeId, vote: (u64, NodeId), request: &LeaderReadRequest) -> bool {
    me == request.follower
        && me != request.leader
        && crate::follower_read::still_follows(vote, request.term, request.leader)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    fn anyone(_: NodeId) -> bool {
        true
    }

    fn view(configs: &[BTreeSet<NodeId>]) -> LeaderView<'_> {
        LeaderView {
            leading: true,
            vote: (7, 1, true),
            committed: Some((7, 1, 120)),
            configs,
        }
    }

    #[test]
    fn a_leader_of_three_asks_the_follower_it_is_told_to_start_from_then_the_next() {
        let configs = vec![set(&[1, 2, 3])];
        let v = view(&configs);
        assert_eq!(choose(&v, 0, anyone), Some((2, 120)));
        assert_eq!(choose(&v, 2, anyone), Some((2, 120)));
        assert_eq!(choose(&v, 3, anyone), Some((3, 120)));
        // Past the highest id it wraps round; the leader itself is never chosen.
        assert_eq!(choose(&v, 4, anyone), Some((2, 120)));
        assert_eq!(choose(&v, 1, anyone), Some((2, 120)));
    }

    #[test]
    fn a_follower_that_refused_the_call_lately_is_passed_over() {
        let configs = vec![set(&[1, 2, 3])];
        let v = view(&configs);
        // Follower 2 is an older version: 3 is asked, wherever the leader starts from.
        let not_2 = |id: NodeId| id != 2;
        assert_eq!(choose(&v, 0, not_2), Some((3, 120)));
        assert_eq!(choose(&v, 2, not_2), Some((3, 120)));
        assert_eq!(choose(&v, 3, not_2), Some((3, 120)));
        // Both older: nobody is asked, the leader runs openraft's round.
        assert_eq!(choose(&v, 0, |_| false), None);
        // A joint change where only follower 3 would do, and 3 refused: nobody.
        let joint = vec![set(&[1, 2, 3]), set(&[1, 3, 4])];
        assert_eq!(choose(&view(&joint), 0, |id| id != 3), None);
    }

    #[test]
    fn a_follower_is_passed_over_by_the_address_its_membership_gives() {
        let nodes: std::collections::BTreeMap<NodeId, openraft::BasicNode> = [1, 2, 3]
            .into_iter()
            .map(|id| (id, openraft::BasicNode::new(format!("127.0.0.1:{id}"))))
            .collect();
        let membership = crate::types::Membership::new(vec![set(&[1, 2, 3])], nodes).unwrap();
        let refused = crate::peer::marks::PeerMarks::default();
        refused.mark("127.0.0.1:2");
        let may_ask = |id| not_refused_lately(&membership, &refused, id);
        assert!(!may_ask(2), "its address refused");
        assert!(may_ask(3));
        assert!(!may_ask(9), "no address in the membership: not asked");
        let configs = vec![set(&[1, 2, 3])];
        assert_eq!(choose(&view(&configs), 2, may_ask), Some((3, 120)));
    }

    #[test]
    fn no_single_follower_is_enough_where_the_pair_is_no_quorum() {
        let five = vec![set(&[1, 2, 3, 4, 5])];
        assert_eq!(choose(&view(&five), 0, anyone), None);
        // A joint change from three to another three: only the follower in both will do.
        let joint = vec![set(&[1, 2, 3]), set(&[1, 3, 4])];
        assert_eq!(choose(&view(&joint), 0, anyone), Some((3, 120)));
        assert_eq!(choose(&view(&joint), 4, anyone), Some((3, 120)));
        // Alone: nobody to ask (a sole voter reads without a round anyway).
        let alone = vec![set(&[1])];
        assert_eq!(choose(&view(&alone), 0, anyone), None);
    }

    #[test]
    fn a_leader_the_rule_does_not_allow_asks_nobody() {
        let configs = vec![set(&[1, 2, 3])];
        let base = view(&configs);
        for (what, v) in [
            (
                "not leading",
                LeaderView {
                    leading: false,
                    ..base
                },
            ),
            (
                "vote not committed",
                LeaderView {
                    vote: (7, 1, false),
                    ..base
                },
            ),
            (
                "nothing of its term committed",
                LeaderView {
                    committed: Some((6, 2, 100)),
                    ..base
                },
            ),
            (
                "another leader's entry of the same term committed last",
                LeaderView {
                    committed: Some((7, 3, 100)),
                    ..base
                },
            ),
            (
                "nothing committed",
                LeaderView {
                    committed: None,
                    ..base
                },
            ),
        ] {
            assert_eq!(choose(&v, 0, anyone), None, "{what}");
        }
    }

    #[test]
    fn a_follower_vouches_only_for_the_leader_and_term_its_vote_names() {
        let ask = LeaderReadRequest {
            term: 7,
            leader: 1,
            follower: 2,
        };
        assert!(vouches(2, (7, 1), &ask));
        assert!(!vouches(2, (8, 1), &ask), "a later term");
        assert!(!vouches(2, (8, 3), &ask), "a later leader");
        assert!(!vouches(2, (7, 3), &ask), "another leader of the same term");
        assert!(!vouches(2, (6, 1), &ask), "an earlier term");
        assert!(!vouches(3, (7, 1), &ask), "a node not asked");
        assert!(!vouches(1, (7, 1), &ask), "the leader itself");
        let to_itself = LeaderReadRequest { follower: 1, ..ask };
        assert!(
            !vouches(1, (7, 1), &to_itself),
            "the leader asked as follower"
        );
    }
}
