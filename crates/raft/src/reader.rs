//! Linearizable reads with a shared read index.
//!
//! A fetch must see every write acknowledged before it started. `ensure_linearizable` gives
//! that (it confirms leadership with a quorum and waits until the read index is applied), but
//! it is a round trip through the Raft core. Fetches queue here; the reader task takes every
//! queued fetch, runs one `ensure_linearizable`, and releases them all. A fetch that arrives
//! while a round is in flight waits for the next round, because a round only covers reads that
//! started before it did.
//!
//! On a follower a round is one request to the leader, which counts as this follower's
//! acknowledgment of it (see [`crate::follower_read`]): in a cluster where the two make a
//! quorum the leader answers without a heartbeat round of its own. On a leader of such a
//! cluster a round is one question to one follower (see [`crate::leader_read`]), and
//! openraft's heartbeat round only when that follower does not vouch.
//!
//! Each round also settles the time the reads use (see [`crate::cluster_time`]): on the
//! leader, `begin_read` before its core's check and the follower's (whose call carries it
//! there), or before `ensure_linearizable` (whose heartbeats carry it to a quorum), and
//! `confirm` after; on a follower, the time the leader began for it comes with the read
//! index and is confirmed once this node has checked it still follows that leader. A fetch
//! then reads at `ClusterTime::read_time`.

use openraft::async_runtime::WatchReceiver;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{LinearizableReadError, RaftError};

use tokio::sync::{mpsc, oneshot};

use crate::cluster_time::ClusterTime;
use crate::log_store::saved_vote::SavedVote;
use crate::peer::network::PeerNetwork;
use crate::state_machine::SharedState;
use crate::{NodeError, Reason};

mod through_leader;
mod vouched;

use through_leader::FollowedLeader;
use vouched::AskedFollower;

/// A queued fetch waiting for a read index.
pub type ReadWaiter = oneshot::Sender<Result<(), NodeError>>;

/// What the reader's rounds use: the node's parts it was started with.
pub struct Reader {
    /// The Raft handle.
    pub raft: crate::types::Raft,
    /// The peer transport (a follower asks its leader, a leader one follower).
    pub network: PeerNetwork,
    /// This node's cluster time.
    pub time: Arc<ClusterTime>,
    /// The applied state the reads are served from.
    pub shared: Arc<SharedState>,
    /// The vote this node answers by (see [`crate::log_store::saved_vote`]).
    pub saved_vote: Arc<SavedVote>,
    /// How long a round may take.
    pub timeout: Duration,
    /// The follower a leader asks first.
    asked: AskedFollower,
}

impl Reader {
    /// A reader for a node's parts; a leader first asks the follower with the lowest id.
    pub fn new(
        raft: crate::types::Raft,
        network: PeerNetwork,
        time: Arc<ClusterTime>,
        shared: Arc<SharedState>,
        saved_vote: Arc<SavedVote>,
        timeout: Duration,
    ) -> Self {
        Reader {
            raft,
            network,
            time,
            shared,
            saved_vote,
            timeout,
            asked: AskedFollower::default(),
        }
    }

    /// Confirms once that this node may serve linearizable reads now.
    ///
    /// On the leader: one follower's word where the leader and one follower are a quorum
    /// (see [`crate::leader_read`]), else `ensure_linearizable`. On a follower: the leader's
    /// read index (one peer RPC for every read queued in this round, see
    /// [`crate::follower_read`]), then a wait until this node has applied up to it; the reads
    /// are then served from local state. If the leader cannot be asked, the caller gets
    /// `NotLeader` and forwards the whole request instead.
    pub async fn linearize(&self) -> Result<(), NodeError> {
        let Reader {
            raft,
            time,
            shared,
            timeout,
            ..
        } = self;
        let timeout = *timeout;
        // A follower that knows its leader asks it at once: the read index is only as good
        // as the leader's own confirmation of its leadership, so asking the Raft core first
        // (which would answer "forward to the leader") adds a hand-off and nothing else.
        let (leader, known_leader) = {
            let metrics = raft.server_metrics();
            let m = metrics.borrow_watched();
            let known_leader = match (m.state, m.current_leader) {
                (openraft::ServerState::Follower, Some(id)) if id != m.id => m
                    .membership_config
                    .membership()
                    .get_node(&id)
                    .map(|node| (FollowedLeader::of(&m, id), node.addr.clone())),
                _ => None,
            };
            (m.state == openraft::ServerState::Leader, known_leader)
        };
        // Only a leader's clock enters cluster time; if this node turns out not to lead, the
        // round fails and nothing is confirmed.
        let t = time.begin_read(shared.read().state.high_water(), leader);
        if let Some((leader, addr)) = known_leader {
            return self.read_through_leader(leader, &addr).await;
        }
        if leader {
            if let Some(done) = self.read_vouched_by_one_follower().await {
                return done.map(|()| time.confirm(t));
            }
        }
        match read_index_round(raft, timeout).await {
            Ok(Ok(_)) => {
                time.confirm(t);
                Ok(())
            }
            Ok(Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f)))) => {
                let not_leader = NodeError::NotLeader {
                    leader: f.leader_id,
                };
                let (Some(leader_id), Some(node)) = (f.leader_id, f.leader_node) else {
                    return Err(not_leader);
                };
                let leader = {
                    let metrics = raft.server_metrics();
                    let m = metrics.borrow_watched();
                    FollowedLeader::of(&m, leader_id)
                };
                self.read_through_leader(leader, &node.addr).await
            }
            Ok(Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(q)))) => {
                Err(NodeError::NoQuorum(Reason::of(q)))
            }
            Ok(Err(RaftError::Fatal(f))) => Err(stopping(f)),
            Err(_) => Err(leadership_unconfirmed(timeout)),
        }
    }

    /// Returns once this node's state has applied the entry at `index`, at once when it
    /// already has (the usual case: no watch of openraft's metrics, which clones them at
    /// every look); `Err` when the round's timeout passes first.
    async fn applied_at_least(
        &self,
        index: u64,
        why: &str,
    ) -> Result<(), openraft::metrics::WaitError> {
        if self
            .shared
            .read()
            .last_applied
            .is_some_and(|id| id.index >= index)
        {
            return Ok(());
        }
        self.raft
            .wait(Some(self.timeout))
            .applied_index_at_least(Some(index), why)
            .await
            .map(|_| ())
    }
}

/// A read refused because the Raft core has stopped.
fn stopping(f: impl std::fmt::Display) -> NodeError {
    NodeError::Unavailable(format!("the node is stopping ({f})").into())
}

/// A read whose round did not end within `timeout`.
fn leadership_unconfirmed(timeout: Duration) -> NodeError {
    NodeError::NoQuorum(
        format!(
            "leadership could not be confirmed within {} ms",
            timeout.as_millis()
        )
        .into(),
    )
}

/// The pause before a read-index round is tried again after no quorum acknowledged it.
const QUORUM_RETRY_PAUSE: Duration = Duration::from_millis(10);

/// What openraft's read-index round gives: the read index, or why not.
pub(crate) type RoundResult = Result<
    openraft::raft::linearizable_read::ReadLogId<crate::types::TypeConfig>,
    RaftError<crate::types::TypeConfig, LinearizableReadError<crate::types::TypeConfig>>,
>;

/// openraft's `ensure_linearizable` (a read-index round), begun again while it fails for
/// want of a quorum's acknowledgment and `timeout` has not run out; `Err(Elapsed)` once it
/// has.
///
/// openraft gives a round up when no quorum acknowledged its heartbeats within the leader
/// lease (the election timeout's upper end, 500 ms by default). A follower busy for that long
/// (on a loaded machine, or paused) would otherwise fail every read of the round with a 503
/// while the cluster is healthy: the cluster benchmark's failover check saw one such read,
/// with two of three nodes up, seconds after the new leader was elected. Each new round
/// sends new heartbeats, and a later acknowledgment carries at least the time the caller
/// began (a node's `seen` time only rises), so the round's guarantee is unchanged. A leader
/// that has really lost its quorum still answers `NoQuorum`, once `timeout` has passed.
pub(crate) async fn read_index_round(
    raft: &crate::types::Raft,
    timeout: Duration,
) -> Result<RoundResult, tokio::time::error::Elapsed> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let round = tokio::time::timeout_at(
            deadline,
            raft.ensure_linearizable(openraft::ReadPolicy::ReadIndex),
        )
        .await?;
        let retry = matches!(
            round,
            Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(
                _
            )))
        ) && tokio::time::Instant::now() + QUORUM_RETRY_PAUSE < deadline;
        if !retry {
            return Ok(round);
        }
        tracing::debug!("no quorum acknowledged the read round within the lease; trying again");
        tokio::time::sleep(QUORUM_RETRY_PAUSE).await;
    }
}

/// Runs the reader until every sender of `rx` is dropped.
pub async fn run(reader: Reader, rx: mpsc::Receiver<ReadWaiter>) {
    rounds(rx, || reader.linearize()).await
}

/// How many times at most the reader lets the other ready tasks run before a round takes its
/// reads (it stops as soon as one such pass queued no read).
const MAX_GATHER_YIELDS: usize = 4;

/// Serves the queued reads in rounds until every sender of `rx` is dropped: each round takes
/// every read queued by the time the reader has let the other ready tasks run (once, or
/// again while that queued more reads, up to [`MAX_GATHER_YIELDS`] times), runs
/// `round` once and hands its result to each of them. A read queued while a round runs waits
/// for the next one.
async fn rounds<F, R>(mut rx: mpsc::Receiver<ReadWaiter>, mut round: F)
where
    F: FnMut() -> R,
    R: Future<Output = Result<(), NodeError>>,
{
    let rounds_run = metrics::counter!("statemanager_read_rounds_total");
    let reads_served = metrics::counter!("statemanager_read_round_reads_total");
    let mut waiters = Vec::new();
    while let Some(first) = rx.recv().await {
        waiters.push(first);
        // Let the runtime run the tasks that are ready (requests already read) before the
        // round takes its reads, again while that brings more: bigger rounds, fewer of them
        // (see docs/design.md).
        for _ in 0..MAX_GATHER_YIELDS {
            tokio::task::yield_now().await;
            let before = waiters.len();
            while let Ok(next) = rx.try_recv() {
                waiters.push(next);
            }
            if waiters.len() == before {
                break;
            }
        }
        rounds_run.increment(1);
        reads_served.increment(waiters.len() as u64);
        let result = round().await;
        for waiter in waiters.drain(..) {
            let _ = waiter.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests;
