//! Membership administration: the members and the leader as this node sees them, the
//! cluster id check of peers, adding a member (as a learner that must catch up first) and
//! removing one, and handing leadership over before this node stops.

use crate::types::TypeConfig;
use openraft::async_runtime::WatchReceiver;
use std::time::Duration;

use super::Node;
use crate::cluster_id::{admission, Admission, ClusterRefusal, META_CLUSTER_ID};
use crate::types::NodeId;
/// Defined with the other plain views of a node (see [`crate::view`]).
pub use crate::view::Member;
use crate::writer;
use openraft::{BasicNode, ServerState};

/// How long a node being added may take to catch up before the add is abandoned.
const LEARNER_CATCH_UP: Duration = Duration::from_secs(10);

// The errors live in `crate::error`, which the peer routes may use without depending on
// `node`; re-exported here so their old paths still work.
pub use crate::error::{ChangeFailure, MembershipError};

impl Node {
    /// Checks a peer's cluster id. A node waiting to join adopts the first one it is sent
    /// (and stores it); otherwise a different or missing id is refused.
    pub fn admit_peer(&self, theirs: Option<&str>) -> Result<(), ClusterRefusal> {
        let mut cell = self
            .inner
            .cluster_id
            .write()
            .unwrap_or_else(|p| p.into_inner());
        match admission(cell.as_deref(), theirs) {
            Admission::Admit => Ok(()),
            Admission::Refuse(refusal) => Err(refusal),
            Admission::Adopt(theirs) => {
                self.inner
                    .engine
                    .put_meta(META_CLUSTER_ID, theirs.as_bytes())
                    .map_err(ClusterRefusal::Store)?;
                tracing::info!(cluster_id = %theirs, "joined cluster");
                *cell = Some(theirs.to_string());
                Ok(())
            }
        }
    }

    /// The ids of the members (voters and learners), this node included; just this node
    /// before it belongs to a cluster.
    pub fn member_ids(&self) -> Vec<NodeId> {
        let m = self.inner.raft.metrics();
        let m = m.borrow_watched();
        let ids: Vec<NodeId> = m
            .membership_config
            .membership()
            .nodes()
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            vec![self.inner.node_id]
        } else {
            ids
        }
    }

    /// The peer address of member `id`.
    pub fn member_addr(&self, id: NodeId) -> Option<String> {
        let m = self.inner.raft.metrics();
        let m = m.borrow_watched();
        m.membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())
    }

    /// The current leader's id and peer address, if a leader is known and it is not us.
    pub fn remote_leader(&self) -> Option<(NodeId, String)> {
        let m = self.inner.raft.metrics().borrow_watched().clone();
        let leader = m.current_leader?;
        if leader == self.inner.node_id {
            return None;
        }
        let addr = m
            .membership_config
            .membership()
            .get_node(&leader)?
            .addr
            .clone();
        Some((leader, addr))
    }

    /// The index of the last committed log entry, as this node knows it.
    pub async fn commit_index(&self) -> Option<u64> {
        self.inner
            .raft
            .with_raft_state(|st| st.local_committed().map(|l| l.index))
            .await
            .ok()
            .flatten()
    }

    /// Whether this node is the only voter of the membership it knows (the latest appended,
    /// in each configuration of a joint one): the same rule by which a fetch reads without a
    /// read round (`sole_leader_term`), read from the same kept server metrics (no receiver
    /// cloned per call).
    pub fn is_sole_voter(&self) -> bool {
        let m = self.inner.server_metrics.borrow_watched();
        crate::types::is_sole_voter(m.membership_config.membership(), self.inner.node_id)
    }

    /// Whether this node leads and heard from a quorum within an election timeout.
    pub fn leads_with_quorum(&self) -> bool {
        self.status().role == "leader"
            && writer::quorum_lost(&self.inner.raft, self.inner.election_max).is_none()
    }

    /// The members of the cluster, with replication progress when this node leads.
    pub fn members(&self) -> Vec<Member> {
        members_of(
            &self.inner.raft.metrics().borrow_watched(),
            self.inner.node_id,
        )
    }

    /// Adds node `id` at `peer_addr`: first as a learner (waiting until it has caught up),
    /// then as a voter. Only the leader can do this.
    pub async fn add_member(&self, id: NodeId, peer_addr: &str) -> Result<(), MembershipError> {
        let raft = &self.inner.raft;
        raft.add_learner(id, BasicNode::new(peer_addr), true)
            .await
            .map_err(|e| MembershipError::AddLearner {
                id,
                source: Box::new(e),
            })?;
        // openraft's blocking add returns even when the learner never answered (unreachable,
        // or refusing our credentials). Promoting such a node would only cost availability:
        // check that it holds the log, else take it out again.
        let target = raft.metrics().borrow_watched().last_log_index;
        let caught_up = raft
            .wait(Some(LEARNER_CATCH_UP))
            .metrics(
                |m| {
                    m.replication
                        .as_ref()
                        .and_then(|r| r.get(&id).copied().flatten())
                        .map(|l| l.index)
                        >= target
                },
                "learner caught up",
            )
            .await
            .is_ok();
        if !caught_up {
            let _ = raft
                .change_membership(
                    openraft::ChangeMembers::RemoveNodes(std::collections::BTreeSet::from([id])),
                    false,
                )
                .await;
            return Err(MembershipError::NotCaughtUp {
                id,
                peer_addr: peer_addr.to_string(),
                secs: LEARNER_CATCH_UP.as_secs(),
            });
        }
        let mut voters = self.voter_ids();
        voters.insert(id);
        raft.change_membership(voters, false)
            .await
            .map_err(|e| MembershipError::Promote {
                id,
                source: Box::new(e),
            })?;
        Ok(())
    }

    /// The voters of the membership as this node knows it.
    fn voter_ids(&self) -> std::collections::BTreeSet<NodeId> {
        let m = self.inner.raft.metrics();
        let m = m.borrow_watched();
        m.membership_config.membership().voter_ids().collect()
    }

    /// Removes node `id` from the cluster. Only the leader can do this.
    pub async fn remove_member(&self, id: NodeId) -> Result<(), MembershipError> {
        let raft = &self.inner.raft;
        let mut voters = self.voter_ids();
        if !voters.remove(&id) && !self.members().iter().any(|m| m.id == id) {
            return Err(MembershipError::NotAMember { id });
        }
        if voters.is_empty() {
            return Err(MembershipError::LastVoter);
        }
        raft.change_membership(voters, false)
            .await
            .map_err(|e| MembershipError::Remove {
                id,
                source: Box::new(e),
            })?;
        Ok(())
    }

    /// When this node leads a multi-voter cluster, asks the most up-to-date other voter to
    /// start an election now, so that stopping this node does not leave the cluster
    /// leaderless for an election timeout. Returns the node asked, if any.
    pub async fn hand_over_leadership(&self) -> Option<NodeId> {
        let m = self.inner.raft.metrics().borrow_watched().clone();
        if m.state != ServerState::Leader {
            return None;
        }
        let membership = m.membership_config.membership().clone();
        let replication = m.replication.clone().unwrap_or_default();
        let (target, _) = membership
            .voter_ids()
            .filter(|id| *id != self.inner.node_id)
            .map(|id| (id, replication.get(&id).copied().flatten().map(|l| l.index)))
            .max_by_key(|(_, matched)| *matched)?;
        let addr = membership.get_node(&target)?.addr.clone();
        let asked = self
            .peer_request(reqwest::Method::POST, &addr, "/raft/elect")
            .timeout(Duration::from_millis(500))
            .send()
            .await;
        match asked {
            Ok(r) if r.status().is_success() => Some(target),
            _ => None,
        }
    }

    /// Waits (at most `limit`) until some leader is known; `true` if one is.
    pub async fn wait_for_leader(&self, limit: Duration) -> bool {
        let mut watch = self.inner.raft.metrics();
        tokio::time::timeout(limit, async {
            loop {
                if watch.borrow_watched().current_leader.is_some() {
                    return;
                }
                if watch.changed().await.is_err() {
                    return;
                }
            }
        })
        .await
        .is_ok()
            && self
                .inner
                .raft
                .metrics()
                .borrow_watched()
                .current_leader
                .is_some()
    }
}

/// The members in `m`'s membership, voters and learners, with the index each has matched
/// when `m` is a leader's (this node's own: its last log index).
fn members_of(m: &openraft::RaftMetrics<TypeConfig>, me: NodeId) -> Vec<Member> {
    let membership = m.membership_config.membership();
    let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
    membership
        .nodes()
        .map(|(id, node)| Member {
            id: *id,
            peer_addr: node.addr.clone(),
            state: if voters.contains(id) {
                "voter"
            } else {
                "learner"
            },
            matched_index: m
                .replication
                .as_ref()
                .and_then(|r| r.get(id).copied().flatten())
                .map(|l| l.index)
                .or_else(|| (*id == me).then(|| m.last_log_index.unwrap_or(0))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;

    use openraft::{BasicNode, LogId, ServerState};

    use super::members_of;
    use crate::node::metrics_fixture::metrics;
    use crate::types::StoredMembership;

    #[test]
    fn a_leader_lists_voters_and_learners_with_what_each_matched() {
        let mut m = metrics(ServerState::Leader, &[1, 2]);
        let nodes: BTreeMap<u64, BasicNode> = [1, 2, 3]
            .into_iter()
            .map(|id| (id, BasicNode::new(format!("127.0.0.1:{id}"))))
            .collect();
        let voters: BTreeSet<u64> = [1, 2].into_iter().collect();
        m.membership_config = Arc::new(StoredMembership::new(
            None,
            crate::types::Membership::new(vec![voters], nodes).expect("voters have addresses"),
        ));
        m.last_log_index = Some(9);
        let at = |index| Some(LogId::new(crate::types::leader_in(5, 1), index));
        m.replication = Some([(2, at(8)), (3, None)].into_iter().collect());
        let listed: Vec<_> = members_of(&m, 1)
            .into_iter()
            .map(|x| (x.id, x.peer_addr, x.state, x.matched_index))
            .collect();
        assert_eq!(
            listed,
            vec![
                (1, "127.0.0.1:1".to_string(), "voter", Some(9)),
                (2, "127.0.0.1:2".to_string(), "voter", Some(8)),
                (3, "127.0.0.1:3".to_string(), "learner", None),
            ]
        );
    }

    #[test]
    fn a_follower_knows_only_its_own_progress() {
        let mut m = metrics(ServerState::Follower, &[1, 2, 3]);
        m.last_log_index = None;
        let matched: Vec<_> = members_of(&m, 2)
            .into_iter()
            .map(|x| x.matched_index)
            .collect();
        assert_eq!(matched, vec![None, Some(0), None]);
    }
}
