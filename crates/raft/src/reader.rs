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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{LinearizableReadError, RaftError};

use tokio::sync::{mpsc, oneshot};

use crate::cluster_time::ClusterTime;
use crate::error::with_sources;
use crate::follower_read::{still_follows, FollowerReadRequest, LeaderView};
use crate::leader_read::{LeaderReadRequest, VOUCH_TIMEOUT};
use crate::peer::network::PeerNetwork;
use crate::state_machine::SharedState;
use crate::{NodeError, Reason};

/// A queued fetch waiting for a read index.
pub type ReadWaiter = oneshot::Sender<Result<(), NodeError>>;

/// Confirms once that this node may serve linearizable reads now.
///
/// On the leader: one follower's word where the leader and one follower are a quorum (see
/// [`crate::leader_read`]), else `ensure_linearizable`. On a follower: the leader's read index (one peer RPC
/// for every read queued in this round, see [`crate::follower_read`]), then a wait until this
/// node has applied up to it;
/// the reads are then served from local state. If the leader cannot be asked, the caller gets
/// `NotLeader` and forwards the whole request instead.
pub async fn linearize(
    raft: &crate::types::Raft,
    network: &PeerNetwork,
    time: &ClusterTime,
    shared: &SharedState,
    asked: &AskedFollower,
    timeout: Duration,
) -> Result<(), NodeError> {
    // A follower that knows its leader asks it at once: the read index is only as good as
    // the leader's own confirmation of its leadership, so asking the Raft core first (which
    // would answer "forward to the leader") adds a hand-off and nothing else.
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
        return read_through_leader(raft, network, time, shared, leader, &addr, timeout).await;
    }
    if leader {
        if let Some(done) =
            read_vouched_by_one_follower(raft, network, shared, asked, timeout).await
        {
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
            read_through_leader(raft, network, time, shared, leader, &node.addr, timeout).await
        }
        Ok(Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(q)))) => {
            Err(NodeError::NoQuorum(Reason::of(q)))
        }
        Ok(Err(RaftError::Fatal(f))) => Err(NodeError::Unavailable(
            format!("the node is stopping ({f})").into(),
        )),
        Err(_) => Err(leadership_unconfirmed(timeout)),
    }
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

/// The follower a leader asks first for its reads (see [`crate::leader_read`]): the one
/// that vouched last, or the next after one that did not.
#[derive(Debug, Default)]
pub struct AskedFollower(AtomicU64);

/// A leader's round with one follower's word (see [`crate::leader_read`]): the follower the
/// rule allows is asked, and once it vouches the leader waits until it has applied its
/// commit index. `None`: no follower may be asked or the one asked did not vouch; the caller
/// runs openraft's round. A Raft core that does not answer within `timeout` ends the round
/// with an error (a round of openraft's would wait for the same core).
async fn read_vouched_by_one_follower(
    raft: &crate::types::Raft,
    network: &PeerNetwork,
    shared: &SharedState,
    asked: &AskedFollower,
    timeout: Duration,
) -> Option<Result<(), NodeError>> {
    let from = asked.0.load(Ordering::Relaxed);
    let chosen = tokio::time::timeout(
        timeout,
        raft.with_raft_state(move |state| {
            let view = LeaderView::of(state);
            let (follower, index) = crate::leader_read::choose(&view, from)?;
            let node = state
                .membership_state
                .effective()
                .membership()
                .get_node(&follower)?;
            let request = LeaderReadRequest {
                term: view.vote.0,
                leader: view.vote.1,
                follower,
            };
            Some((follower, index, request, node.addr.clone()))
        }),
    )
    .await;
    let (follower, index, request, addr) = match chosen {
        Ok(Ok(Some(chosen))) => chosen,
        Ok(Ok(None)) => return None,
        Ok(Err(f)) => {
            return Some(Err(NodeError::Unavailable(
                format!("the node is stopping ({f})").into(),
            )))
        }
        Err(_) => return Some(Err(leadership_unconfirmed(timeout))),
    };
    let vouched = network
        .leader_read(&addr, follower, &request, VOUCH_TIMEOUT.min(timeout))
        .await;
    if !matches!(vouched, Ok(true)) {
        tracing::debug!(
            follower,
            answer = ?vouched.map_err(|e| with_sources(&e)),
            "the follower asked did not vouch for the leader's reads; running a round"
        );
        asked.0.store(follower.wrapping_add(1), Ordering::Relaxed);
        metrics::counter!("statemanager_leader_read_rounds_total", "vouched" => "no").increment(1);
        return None;
    }
    asked.0.store(follower, Ordering::Relaxed);
    metrics::counter!("statemanager_leader_read_rounds_total", "vouched" => "yes").increment(1);
    let applied = applied_at_least(raft, shared, index, timeout, "leader read").await;
    Some(applied.map_err(|_| {
        NodeError::Unavailable(
            format!(
                "this node did not apply its commit index within {} ms",
                timeout.as_millis()
            )
            .into(),
        )
    }))
}

/// Returns once this node's state has applied the entry at `index`, at once when it already
/// has (the usual case: no watch of openraft's metrics, which clones them at every look);
/// `Err` when `timeout` passes first.
async fn applied_at_least(
    raft: &crate::types::Raft,
    shared: &SharedState,
    index: u64,
    timeout: Duration,
    why: &str,
) -> Result<(), openraft::metrics::WaitError> {
    if shared
        .read()
        .last_applied
        .is_some_and(|id| id.index >= index)
    {
        return Ok(());
    }
    raft.wait(Some(timeout))
        .applied_index_at_least(Some(index), why)
        .await
        .map(|_| ())
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

/// The leader a follower asks, as its metrics name it.
#[derive(Debug, Clone, Copy)]
struct FollowedLeader {
    /// The leader's id.
    id: crate::types::NodeId,
    /// The term this node's vote is in, as the same reading of its metrics shows it.
    term: u64,
    /// This node.
    me: crate::types::NodeId,
}

impl FollowedLeader {
    fn of(
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

/// A follower's round: the read index from `leader` at `addr` (one peer RPC, which counts
/// as this node's acknowledgment of the leader, see [`crate::follower_read`]); when the
/// leader answered without a round of its own, a check in this node's Raft core that it
/// still follows that leader in the term it asked in; then a wait until it has applied up to
/// the index, and the leader's time for these reads confirmed here. Any failure is
/// `NotLeader`: the caller forwards the request.
async fn read_through_leader(
    raft: &crate::types::Raft,
    network: &PeerNetwork,
    time: &ClusterTime,
    shared: &SharedState,
    leader: FollowedLeader,
    addr: &str,
    timeout: Duration,
) -> Result<(), NodeError> {
    let not_leader = NodeError::NotLeader {
        leader: Some(leader.id),
    };
    let request = FollowerReadRequest {
        term: leader.term,
        follower: leader.me,
    };
    let answer = match network
        .follower_read(addr, leader.id, &request, timeout)
        .await
    {
        Ok(answer) => answer,
        Err(e) => {
            tracing::debug!(
                error = %with_sources(&e),
                "no read index from the leader; forwarding"
            );
            return Err(not_leader);
        }
    };
    // After the answer's stamps were taken in: from here on, a vote this node casts carries
    // the leader's time (see `follower_read`). An answer after a round needs no check: the
    // leader confirmed its leadership, and its time, with a quorum.
    if !answer.round {
        let leader_id = leader.id;
        let follows = tokio::time::timeout(
            timeout,
            raft.with_raft_state(move |state| {
                let vote = state.vote_ref();
                still_follows(
                    (vote.leader_id.term, vote.leader_id.node_id),
                    request.term,
                    leader_id,
                )
            }),
        )
        .await;
        if !matches!(follows, Ok(Ok(true))) {
            return Err(not_leader);
        }
    }
    applied_at_least(raft, shared, answer.index, timeout, "follower read")
        .await
        .map_err(|_| not_leader)?;
    time.confirm(answer.time);
    Ok(())
}

/// Runs the reader until every sender of `rx` is dropped.
pub async fn run(
    raft: crate::types::Raft,
    network: PeerNetwork,
    time: Arc<ClusterTime>,
    shared: Arc<SharedState>,
    timeout: Duration,
    rx: mpsc::Receiver<ReadWaiter>,
) {
    let asked = AskedFollower::default();
    rounds(rx, || {
        linearize(&raft, &network, &time, &shared, &asked, timeout)
    })
    .await
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
