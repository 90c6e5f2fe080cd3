//! Linearizable reads without a round, for a node that is the cluster's only voter.
//!
//! The shared read-index round (`reader`) goes through the Raft core for every batch of
//! fetches. A single node, or any cluster of one voter, does not need it once it has applied
//! an entry of its own term: the rule is [`SoleVoterView::may_read_locally`], and the caller
//! settles its read time itself ([`sole_voter_read`]).

use openraft::Raft;

use crate::cluster_time::ClusterTime;
use crate::state_machine::SharedState;
use crate::types::TypeConfig;

/// What [`sole_voter_read`] looks at in the node's metrics, so the rule is a pure function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoleVoterView {
    /// This node leads.
    pub leading: bool,
    /// The voters of the effective membership (both halves of a joint one) are exactly this node.
    pub sole_voter: bool,
    /// The term of the last applied entry equals this node's current term.
    pub applied_own_term: bool,
}

impl SoleVoterView {
    /// Reads the view from the node's metrics, in place.
    pub fn of(raft: &Raft<TypeConfig>) -> SoleVoterView {
        let metrics = raft.metrics();
        let m = metrics.borrow();
        let mut voters = m.membership_config.membership().voter_ids();
        let sole_voter = voters.next() == Some(m.id) && voters.next().is_none();
        SoleVoterView {
            leading: m.state == openraft::ServerState::Leader,
            sole_voter,
            applied_own_term: m.last_applied.map(|l| l.leader_id.term) == Some(m.current_term),
        }
    }

    /// Whether a linearizable read may be served from this node's state at once, without a
    /// read-index round through the Raft core.
    ///
    /// True when this node is the only voter and leads, and has applied an entry of its own
    /// term (the blank entry a new leader commits first). Then no other node can lead (any
    /// other leader would need this node's vote, in every half of a joint membership), every
    /// entry committed before this term is applied, and every store this leader acknowledged
    /// was applied before its answer was sent: the applied state already holds every store
    /// acknowledged before the read started. Anything else takes the shared round.
    pub fn may_read_locally(self) -> bool {
        self.leading && self.sole_voter && self.applied_own_term
    }
}

/// A linearizable read's round for a sole voter (see [`SoleVoterView::may_read_locally`]),
/// taken by the caller itself: settles the read time as a round would (this node's clock is
/// the cluster's, and its own acknowledgement is the quorum's).
pub fn sole_voter_read(time: &ClusterTime, shared: &SharedState) {
    let t = time.begin_read(shared.read().state.high_water(), true);
    time.confirm(t);
}

#[cfg(test)]
mod tests {
    use super::SoleVoterView;

    #[test]
    fn only_a_leading_sole_voter_that_applied_its_own_term_reads_locally() {
        for leading in [false, true] {
            for sole_voter in [false, true] {
                for applied_own_term in [false, true] {
                    let view = SoleVoterView {
                        leading,
                        sole_voter,
                        applied_own_term,
                    };
                    assert_eq!(
                        view.may_read_locally(),
                        leading && sole_voter && applied_own_term,
                        "{view:?}"
                    );
                }
            }
        }
    }
}
