//! The election timer task (see [`crate::election`] for why and for its pure rules): once no
//! leader was heard for the lease plus a random delay, a pre-vote round; a campaign only when
//! a majority would vote for this node.

use openraft::async_runtime::WatchReceiver;
use std::time::{Duration, Instant};

use super::{Node, WeakNode};
use crate::election::{
    is_majority, may_campaign, term_and_last_log, unit, FirstAttemptDelay, PreVoteAnswer,
    PreVoteRequest, Timing,
};
use crate::peer::stream::Kind;
use crate::types::{decode, NodeId};

/// How often the timer looks.
const TICK: Duration = Duration::from_millis(10);

/// The longest a pre-vote round waits for answers.
const PRE_VOTE_TIMEOUT: Duration = Duration::from_millis(200);

/// Asks every other voter whether it would vote for this node in the next term; true when a
/// majority (this node included) would.
pub(super) async fn pre_vote(node: &Node, voters: &[NodeId]) -> bool {
    let (term, last_log_id, _) = term_and_last_log(node.raft());
    let request = PreVoteRequest {
        candidate: node.id(),
        next_term: term + 1,
        last_log_id,
    };
    let mut calls = tokio::task::JoinSet::new();
    for &peer in voters.iter().filter(|&&v| v != node.id()) {
        let Some(addr) = node.member_addr(peer) else {
            continue;
        };
        let network = node.network().clone();
        let request = request.clone();
        calls.spawn(async move {
            let answer = network
                .stream_call(&addr, Some(peer), Kind::PreVote, &request, PRE_VOTE_TIMEOUT)
                .await;
            match answer.map(|bytes| decode::<PreVoteAnswer>(&bytes)) {
                Ok(Ok(a)) => a.granted,
                _ => false,
            }
        });
    }
    let mut granted = 1; // this node's own
    while let Some(answer) = calls.join_next().await {
        if answer.unwrap_or(false) {
            granted += 1;
            if is_majority(granted, voters.len()) {
                calls.abort_all();
                return true;
            }
        }
    }
    is_majority(granted, voters.len())
}

/// The election timer (see the module docs); runs until the node is gone.
pub(crate) async fn run(node: WeakNode, timing: Timing) {
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // No attempt before this much silence from a leader; drawn anew for every silence.
    let mut first_attempt = FirstAttemptDelay::new(&timing, unit());
    // No attempt before this instant (set after an attempt).
    let mut not_before: Option<Instant> = None;
    // Whether a refused pre-vote was logged since a leader was last heard.
    let mut refused_logged = false;
    loop {
        ticker.tick().await;
        let Some(node) = node.upgrade() else { return };
        let takeover = node.takeover();
        let (state, voters) = {
            let metrics = node.raft().server_metrics();
            let m = metrics.borrow_watched();
            let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
            (m.state, voters)
        };
        let silent = takeover.silent_for();
        if silent < timing.max {
            refused_logged = false;
        }
        first_attempt.observe(silent, &timing, unit);
        if takeover.suppressed() || !may_campaign(state, &voters, node.id()) {
            not_before = None;
            first_attempt.redraw(&timing, unit());
            continue;
        }
        let asked = takeover.take_attempt();
        if !asked && not_before.is_some_and(|t| Instant::now() < t) {
            continue;
        }
        let alone = voters.len() == 1;
        if !asked && !alone && takeover.silent_for() < first_attempt.due() {
            continue;
        }
        // An attempt: whatever comes of it, the next one waits a fresh election timeout.
        not_before = Some(Instant::now() + timing.retry(unit()));
        first_attempt.redraw(&timing, unit());
        if !alone {
            if !pre_vote(&node, &voters).await {
                if !refused_logged {
                    refused_logged = true;
                    tracing::info!(
                        silent_ms = takeover.silent_for().as_millis() as u64,
                        "no leader heard, but no majority of the voters would vote for this node (cut off from them, or its log is behind): not campaigning (logged once until a leader is heard)"
                    );
                }
                continue;
            }
            tracing::info!(
                silent_ms = takeover.silent_for().as_millis() as u64,
                "no leader heard for longer than the leader lease and a majority agrees: campaigning"
            );
        }
        if node.raft().trigger().elect(false).await.is_err() {
            return;
        }
    }
}
