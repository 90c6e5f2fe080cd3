//! What the node reports about itself: readiness (`/ready`), status (`/status`,
//! `/metrics`), namespace statistics for the console, disk space, and a fatal stop.

use crate::types::TypeConfig;
use openraft::async_runtime::WatchReceiver;
use openraft::ServerState;
use statemanager_core::{Namespace, Timestamp};

use super::Node;
/// Defined with the other plain views of a node (see [`crate::view`]).
pub use crate::view::NodeStatus;

/// The live items of one namespace, for the console (`GET /admin/namespaces`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceStats {
    /// The namespace (a protected one starts with NUL, see `Namespace::protected`).
    pub namespace: Namespace,
    /// Live items.
    pub items: u64,
    /// Sum of their data sizes, in bytes.
    pub bytes: u64,
    /// The earliest expiry among them.
    pub next_expiry: Option<Timestamp>,
}

/// Why this node cannot serve linearizable reads and writes now (the verdict of `/ready`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum NotReady {
    /// Raft stopped on its own (a storage failure); openraft's reason is the source.
    #[error("raft has stopped")]
    Stopped(#[source] Box<openraft::error::Fatal<TypeConfig>>),
    /// This node's clock is out of bounds; the clock check's reason.
    #[error("{0}")]
    Clock(String),
    /// This node leads but has not yet committed an entry of its term.
    #[error("the leader has not yet committed an entry of its term")]
    NoEntryOfTerm,
    /// This node leads but has not heard from a quorum within the election timeout.
    #[error("the leader has not heard from a quorum recently")]
    QuorumSilent,
    /// This node follows no known leader.
    #[error("no leader is known (election in progress or no quorum)")]
    NoLeader,
    /// This node is a candidate.
    #[error("an election is in progress")]
    Election,
    /// This node is a learner.
    #[error("this node is a learner (not yet a voting member)")]
    Learner,
    /// This node is shutting down.
    #[error("the node is stopping")]
    Stopping,
}

impl Node {
    /// Every namespace with live items, sorted, with its counts, as this node has applied
    /// them (a local read, not linearizable: a status page). It scans every item, under the
    /// state's read lock: cheap next to `/admin/list`, but not for tight loops.
    pub fn namespace_stats(&self) -> (Timestamp, Vec<NamespaceStats>) {
        let applied = self.inner.shared.read();
        let now = self.inner.clock.now().max(applied.state.high_water());
        let mut by_namespace: std::collections::HashMap<&Namespace, NamespaceStats> =
            std::collections::HashMap::new();
        for (id, item) in applied.state.iter() {
            if item.expires_at <= now {
                continue;
            }
            let stats = by_namespace
                .entry(&id.namespace)
                .or_insert_with(|| NamespaceStats {
                    namespace: id.namespace.clone(),
                    items: 0,
                    bytes: 0,
                    next_expiry: None,
                });
            stats.items += 1;
            stats.bytes += item.data.len() as u64;
            stats.next_expiry = Some(match stats.next_expiry {
                Some(t) => t.min(item.expires_at),
                None => item.expires_at,
            });
        }
        let mut list: Vec<NamespaceStats> = by_namespace.into_values().collect();
        drop(applied);
        list.sort_by(|a, b| a.namespace.cmp(&b.namespace));
        (now, list)
    }

    /// Free bytes on the data directory's file system (`None` if unreadable) and the
    /// configured `disk_reserve`.
    pub fn disk_space(&self) -> (Option<u64>, u64) {
        (self.inner.disk.free(), self.inner.disk.reserve())
    }

    /// `Ok` when this node can serve linearizable reads and writes now, else the reason.
    pub fn readiness(&self) -> Result<(), NotReady> {
        let m = self.inner.raft.metrics().borrow_watched().clone();
        if let Err(e) = &m.running_state {
            return Err(NotReady::Stopped(Box::new(e.clone())));
        }
        if let Some(reason) = self.inner.time.refusal() {
            return Err(NotReady::Clock(reason));
        }
        role_verdict(&m, self.inner.election_max)
    }

    /// The node's current state.
    pub fn status(&self) -> NodeStatus {
        let m = self.inner.raft.metrics().borrow_watched().clone();
        // The applied index comes from the state machine, under the same lock as the item
        // counts: the metrics learn of an apply only after its answer went out, so a client
        // that just got an answer could see the metrics one entry behind.
        let (applied_index, stats) = {
            let applied = self.inner.shared.read();
            (
                applied.last_applied.map_or(0, |l| l.index),
                applied.state.stats(),
            )
        };
        NodeStatus {
            node_id: self.inner.node_id,
            role: match m.state {
                ServerState::Leader => "leader",
                ServerState::Follower => "follower",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                ServerState::Shutdown => "shutdown",
            },
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            applied_index,
            items: stats.items,
            data_bytes: stats.data_bytes,
            next_expiry: stats.next_expiry,
            expired_total: stats.expired_total,
        }
    }

    /// Resolves when Raft has stopped on its own (a storage failure), with the reason.
    ///
    /// It waits for the core's server-metrics channel to close (the core task has ended)
    /// rather than watching every metrics change: the full metrics change many times per
    /// batch, and each change would wake this task.
    pub async fn fatal(&self) -> String {
        let mut server = self.inner.raft.server_metrics();
        loop {
            if let Err(e) = &self.inner.raft.metrics().borrow_watched().running_state {
                return e.to_string();
            }
            if server.changed().await.is_err() {
                break;
            }
        }
        match &self.inner.raft.metrics().borrow_watched().running_state {
            Err(e) => e.to_string(),
            Ok(()) => "raft stopped".into(),
        }
    }
}

/// The part of [`Node::readiness`] that follows from the node's role in openraft's
/// metrics: a leader needs an entry of its term applied and, with other voters, a quorum
/// heard within `election_max`; a follower needs a known leader (what the leader says is the
/// API's part); a candidate, a learner or a stopping node is not ready.
pub(crate) fn role_verdict(
    m: &openraft::RaftMetrics<TypeConfig>,
    election_max: std::time::Duration,
) -> Result<(), NotReady> {
    match m.state {
        ServerState::Leader => {
            if m.last_applied.map(|l| l.leader_id.term) != Some(m.current_term) {
                return Err(NotReady::NoEntryOfTerm);
            }
            let voters = m.membership_config.membership().voter_ids().count();
            if voters > 1 {
                let fresh = crate::types::millis_since_quorum_ack(m)
                    .is_some_and(|ms| ms <= election_max.as_millis() as u64);
                if !fresh {
                    return Err(NotReady::QuorumSilent);
                }
            }
            Ok(())
        }
        ServerState::Follower => match m.current_leader {
            Some(_) => Ok(()),
            None => Err(NotReady::NoLeader),
        },
        ServerState::Candidate => Err(NotReady::Election),
        ServerState::Learner => Err(NotReady::Learner),
        ServerState::Shutdown => Err(NotReady::Stopping),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use openraft::ServerState;

    use crate::types::TypeConfig;

    use super::role_verdict;
    use crate::node::metrics_fixture::metrics;
    use openraft::error::Fatal;

    use super::NotReady;

    #[test]
    fn a_stopped_raft_reads_as_before_with_its_reason() {
        let storage: Fatal<TypeConfig> = openraft::StorageError::<TypeConfig>::write_logs(
            <openraft::impls::BoxedErrorSource as openraft::errors::ErrorSource>::from_string(
                "disk gone",
            ),
        )
        .into();
        for fatal in [Fatal::Panicked, storage] {
            let before = format!("raft has stopped: {fatal}");
            assert_eq!(
                crate::error::with_sources(&NotReady::Stopped(Box::new(fatal))),
                before
            );
        }
        assert_eq!(
            crate::error::with_sources(&NotReady::NoLeader),
            "no leader is known (election in progress or no quorum)"
        );
    }

    fn applied_in_term(term: u64) -> Option<crate::types::LogId> {
        Some(crate::types::LogId::new(
            crate::types::leader_in(term, 1),
            7,
        ))
    }

    const ELECTION_MAX: Duration = Duration::from_millis(600);

    #[test]
    fn a_leader_is_ready_once_an_entry_of_its_term_is_applied() {
        let mut m = metrics(ServerState::Leader, &[1]);
        m.last_applied = applied_in_term(4);
        assert!(matches!(
            role_verdict(&m, ELECTION_MAX),
            Err(NotReady::NoEntryOfTerm)
        ));
        m.last_applied = applied_in_term(5);
        assert!(role_verdict(&m, ELECTION_MAX).is_ok());
    }

    #[test]
    fn a_leader_with_other_voters_needs_a_quorum_heard_within_the_election_timeout() {
        let mut m = metrics(ServerState::Leader, &[1, 2, 3]);
        m.last_applied = applied_in_term(5);
        let acked_ago = |ms: u64| {
            use openraft::Instant as _;
            Some(openraft::metrics::SerdeInstant::new(
                openraft::TokioInstant::now() - Duration::from_millis(ms),
            ))
        };
        m.last_quorum_acked = None;
        assert!(matches!(
            role_verdict(&m, ELECTION_MAX),
            Err(NotReady::QuorumSilent)
        ));
        m.last_quorum_acked = acked_ago(601);
        assert!(matches!(
            role_verdict(&m, ELECTION_MAX),
            Err(NotReady::QuorumSilent)
        ));
        m.last_quorum_acked = acked_ago(300);
        assert!(role_verdict(&m, ELECTION_MAX).is_ok());
    }

    #[test]
    fn a_follower_needs_a_leader_and_other_roles_are_not_ready() {
        let mut m = metrics(ServerState::Follower, &[1, 2, 3]);
        assert!(matches!(
            role_verdict(&m, ELECTION_MAX),
            Err(NotReady::NoLeader)
        ));
        m.current_leader = Some(2);
        assert!(role_verdict(&m, ELECTION_MAX).is_ok());
        for (state, want) in [
            (ServerState::Candidate, "an election is in progress"),
            (
                ServerState::Learner,
                "this node is a learner (not yet a voting member)",
            ),
            (ServerState::Shutdown, "the node is stopping"),
        ] {
            let m = metrics(state, &[1, 2, 3]);
            let got = role_verdict(&m, ELECTION_MAX).expect_err("not ready");
            assert_eq!(got.to_string(), want);
        }
    }
}
