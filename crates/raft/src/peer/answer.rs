//! The answers to peer calls that both transports give (the peer stream,
//! [`super::stream::server`], and the HTTP routes, [`super::routes`]): appends, votes, read
//! indexes (a follower's, and a leader's question to one follower) and pre-votes.

use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest, VoteResponse};
use openraft::ServerState;

use crate::election::{
    grant_pre_vote, term_and_last_log, PreVoteAnswer, PreVoteRequest, VoterView,
};
use crate::follower_read::{
    index_without_round, FollowerReadAnswer, FollowerReadRequest, LeaderView,
};
use crate::leader_read::{vouches, LeaderReadRequest};
use crate::peer::error::ReadIndexRefusal;
use crate::peer::host::PeerHost;
use crate::types::TypeConfig;

/// An AppendEntries from the leader (over HTTP or the peer stream). A refusal crosses the
/// wire as text: openraft's errors are not a wire format (0.10 changed their layout).
pub(crate) async fn answer_append<H: PeerHost>(
    node: &H,
    rpc: AppendEntriesRequest<TypeConfig>,
) -> Result<AppendEntriesResponse<TypeConfig>, String> {
    let answer = node.raft().append_entries(rpc).await;
    if let Ok(response) = &answer {
        node.takeover().note_append(response);
    }
    answer.map_err(|e| e.to_string())
}

/// A RequestVote from a candidate (over HTTP or the peer stream).
pub(crate) async fn answer_vote<H: PeerHost>(
    node: &H,
    rpc: VoteRequest<TypeConfig>,
) -> Result<VoteResponse<TypeConfig>, String> {
    let candidate = rpc.vote.leader_id.node_id;
    let answer = node.raft().vote(rpc.clone()).await;
    if let Ok(response) = &answer {
        let rounds = node.takeover().rounds_after_vote(&rpc, response);
        let split = rpc.vote.leader_id.term == response.vote.leader_id.term;
        crate::takeover::Takeover::spawn_campaign(node.raft().clone(), rounds, candidate, split);
    }
    answer.map_err(|e| e.to_string())
}

/// How long the leader may take to confirm its leadership for a follower's reads.
const LEADERSHIP_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(1500);

/// A read index for a follower: the leader confirms its leadership with a quorum first, and
/// with it a cluster time (see `reader`), which the answer's stamp carries.
pub(crate) async fn answer_read_index<H: PeerHost>(node: &H) -> Result<u64, ReadIndexRefusal> {
    if let Some(reason) = node.time().refusal() {
        return Err(ReadIndexRefusal::Clock(reason));
    }
    let time = node.begin_leader_read();
    leadership_round(node, time).await
}

/// The leader's heartbeat round for a follower's reads: once a quorum acknowledged it,
/// `time` (begun before it) is confirmed and the read index is answered.
async fn leadership_round<H: PeerHost>(node: &H, time: u64) -> Result<u64, ReadIndexRefusal> {
    match tokio::time::timeout(
        LEADERSHIP_TIMEOUT,
        node.raft()
            .ensure_linearizable(openraft::ReadPolicy::ReadIndex),
    )
    .await
    {
        Ok(Ok(log_id)) => {
            node.time().confirm(time);
            Ok(log_id.index())
        }
        Ok(Err(e)) => Err(ReadIndexRefusal::Leadership(e)),
        Err(_) => Err(ReadIndexRefusal::Timeout),
    }
}

/// A read index for a follower whose request counts as its acknowledgment (see
/// [`crate::follower_read`]): the leader raises its cluster time, then asks its Raft core
/// whether the rule allows an answer without a heartbeat round; if not, it runs the round
/// as [`answer_read_index`] does.
pub(crate) async fn answer_follower_read<H: PeerHost>(
    node: &H,
    request: FollowerReadRequest,
) -> Result<FollowerReadAnswer, ReadIndexRefusal> {
    if let Some(reason) = node.time().refusal() {
        return Err(ReadIndexRefusal::Clock(reason));
    }
    // Before the core's check: the time must be in this node's `seen` before it could vote
    // for a later leader (see `follower_read`).
    let time = node.begin_leader_read();
    let without_round = tokio::time::timeout(
        LEADERSHIP_TIMEOUT,
        node.raft()
            .with_raft_state(move |state| index_without_round(&LeaderView::of(state), &request)),
    )
    .await
    .map_err(|_| ReadIndexRefusal::Timeout)?;
    if let Ok(Some(index)) = without_round {
        metrics::counter!("statemanager_follower_reads_total", "round" => "no").increment(1);
        return Ok(FollowerReadAnswer {
            index,
            time,
            round: false,
        });
    }
    let index = leadership_round(node, time).await?;
    metrics::counter!("statemanager_follower_reads_total", "round" => "yes").increment(1);
    Ok(FollowerReadAnswer {
        index,
        time,
        round: true,
    })
}

/// Whether this node vouches for a leader's reads (see [`crate::leader_read`]): it is the
/// follower asked, and the vote it answers by (see `log_store::saved_vote`) names that
/// leader in that term. The caller's stamp, carrying the leader's time, was taken in before.
pub(crate) fn answer_leader_read<H: PeerHost>(node: &H, request: &LeaderReadRequest) -> bool {
    node.saved_vote()
        .is_some_and(|vote| vouches(node.id(), vote, request))
}

/// Answers a pre-vote for this node (see [`crate::election::grant_pre_vote`]).
pub(crate) fn answer_pre_vote<H: PeerHost>(node: &H, request: &PreVoteRequest) -> PreVoteAnswer {
    let (term, last_log_id, state) = term_and_last_log(node.raft());
    let view = VoterView {
        leading: state == ServerState::Leader,
        term,
        last_log_id,
        silent_for: node.takeover().silent_for(),
        lease: node.takeover().lease(),
    };
    let granted = grant_pre_vote(&view, request);
    if !granted
        && !view.leading
        && view.silent_for > view.lease
        && request.last_log_id < view.last_log_id
    {
        // The candidate cannot win, and no leader is heard: this node can. Do not wait for
        // its own timer (which may be far off) to run out.
        tracing::info!(
            candidate = request.candidate,
            "refused a candidate with a shorter log while the leader is silent: campaigning"
        );
        node.takeover().ask_attempt();
    }
    tracing::debug!(
        candidate = request.candidate,
        next_term = request.next_term,
        granted,
        "pre-vote"
    );
    PreVoteAnswer { granted, term }
}
