//! Prompt failover when the wrong survivor campaigns first.
//!
//! openraft 0.9 lets a follower campaign only after the leader lease (`election_timeout_max`)
//! plus its own election timeout (drawn once, at start) have passed since the last heartbeat.
//! When the leader dies, the survivor that times out first may be the one with the *shorter*
//! log (the last entries reached only the other survivor). Its round is refused by log, and
//! openraft does not let the refusing node campaign any earlier for that: it waits its own
//! full timeout, then collides with the first candidate's term and needs one more round. Each
//! refused round added 0.8–1.6 s to a failover (2.4 s and 3.6 s gaps were measured).
//!
//! [`Takeover`] watches the vote answers this node gives. When it refuses a candidate with a
//! higher term *because this node's log is longer*, and no leader has reached this node for
//! longer than the leader lease, this node is the one that can win: it campaigns at once,
//! with a term above the candidate's (one `elect` per term to climb; openraft numbers a new
//! round "current term + 1"). A leader that is alive keeps refreshing the lease with its
//! heartbeats, so a healthy cluster is never disturbed; elections are always safe in Raft,
//! so the worst an ill-timed takeover can cost is one extra round.
//!
//! The other way a failover takes a round too many is a split vote: both survivors time out
//! together, each votes for itself, and each refuses the other (one such trial took 2.3 s
//! instead of ~1.5 s). openraft 0.9 draws a node's election timeout once, so the pair may
//! well collide again. When this node, a candidate, refuses a candidate of the same term,
//! exactly one of the two campaigns again at once: the one with the longer log, or with equal
//! logs the one with the higher id; the other grants it the next term.
//!
//! (A third cause, openraft 0.9's own timer holding a node back after it saw a longer log,
//! is gone with that timer: [`crate::election`] decides when a node campaigns.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use openraft::raft::{AppendEntriesResponse, VoteRequest, VoteResponse};

use crate::types::{NodeId, TypeConfig};

/// Most rounds one takeover starts to climb above a candidate's term.
const MAX_TERMS_TO_CLIMB: u64 = 3;

/// Tracks leader contact and starts a takeover when it is due (see the module docs).
#[derive(Debug)]
pub struct Takeover {
    /// This node's id.
    id: NodeId,
    lease: Duration,
    last_leader_contact: Mutex<Instant>,
    /// The highest candidate term a takeover was started for (one takeover per term).
    answered_term: AtomicU64,
    /// No campaigns at all: this node's clock is out of bounds (see `cluster_time`).
    suppressed: std::sync::atomic::AtomicBool,
    /// The election timer should attempt a campaign at once (see [`Takeover::ask_attempt`]).
    attempt_now: std::sync::atomic::AtomicBool,
}

impl Takeover {
    /// For node `id`; `lease`: how long after the last leader contact the leader counts as
    /// gone (openraft's leader lease, `election_timeout_max`).
    pub fn new(id: NodeId, lease: Duration) -> Self {
        Self {
            id,
            lease,
            last_leader_contact: Mutex::new(Instant::now()),
            answered_term: AtomicU64::new(0),
            suppressed: std::sync::atomic::AtomicBool::new(false),
            attempt_now: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Stops (or allows again) every campaign this module would start.
    pub fn suppress(&self, suppressed: bool) {
        self.suppressed.store(suppressed, Ordering::SeqCst);
    }

    /// Asks the election timer ([`crate::election`]) to attempt a campaign at once: this node
    /// refused a pre-vote because its own log is longer, while no leader is heard, so it is
    /// the one that can win.
    pub fn ask_attempt(&self) {
        self.attempt_now.store(true, Ordering::SeqCst);
    }

    /// Whether an attempt was asked for since the last call (and clears the request).
    pub fn take_attempt(&self) -> bool {
        self.attempt_now.swap(false, Ordering::SeqCst)
    }

    /// Whether campaigns are suppressed.
    pub fn suppressed(&self) -> bool {
        self.suppressed.load(Ordering::SeqCst)
    }

    /// Records an append from a leader this node accepted as current.
    pub fn note_append(&self, response: &AppendEntriesResponse<TypeConfig>) {
        if !matches!(response, AppendEntriesResponse::HigherVote(_)) {
            *self
                .last_leader_contact
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Instant::now();
        }
    }

    /// Records a snapshot chunk from a leader this node accepted as current (`accepted`: the
    /// answer carries the leader's own vote). A follower that catches up by snapshot hears
    /// no appends meanwhile, and must not count the leader as gone.
    pub fn note_snapshot_chunk(&self, accepted: bool) {
        if accepted {
            *self
                .last_leader_contact
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Instant::now();
        }
    }

    /// How many elections to start after answering `request` with `response` (0: none).
    pub fn rounds_after_vote(
        &self,
        request: &VoteRequest<TypeConfig>,
        response: &VoteResponse<TypeConfig>,
    ) -> u64 {
        let theirs = request.vote.leader_id.term;
        let ours = response.vote.leader_id.term;
        if response.vote_granted || self.suppressed() {
            return 0;
        }
        let ours_longer = response.last_log_id > request.last_log_id;
        let rounds = if theirs > ours && ours_longer {
            (theirs - ours + 1).min(MAX_TERMS_TO_CLIMB)
        } else if self.split_vote_is_ours_to_break(request, response) {
            1
        } else {
            return 0;
        };
        let silent_for = self
            .last_leader_contact
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed();
        if silent_for <= self.lease {
            return 0;
        }
        if self.answered_term.fetch_max(theirs, Ordering::SeqCst) >= theirs {
            return 0;
        }
        rounds
    }

    /// Whether `request` is another candidate of the term this node is a candidate in, and
    /// this node is the one of the two that should campaign again (longer log; or equal logs
    /// and the higher id). Both sides apply the same rule, so exactly one does.
    fn split_vote_is_ours_to_break(
        &self,
        request: &VoteRequest<TypeConfig>,
        response: &VoteResponse<TypeConfig>,
    ) -> bool {
        let candidate = request.vote.leader_id.node_id;
        let we_are_candidate = !response.vote.is_committed()
            && response.vote.leader_id.node_id == self.id
            && response.vote.leader_id.term == request.vote.leader_id.term;
        we_are_candidate
            && candidate != self.id
            && (response.last_log_id > request.last_log_id
                || (response.last_log_id == request.last_log_id && self.id > candidate))
    }

    /// The leader lease: how long after the last leader contact the leader counts as gone.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Time since a leader last reached this node.
    pub fn silent_for(&self) -> Duration {
        self.last_leader_contact
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }

    /// Starts `rounds` elections in a row (each one term above the last); `split`: this
    /// breaks a split vote (the candidate's term is this node's own), for the log.
    pub fn spawn_campaign(raft: crate::types::Raft, rounds: u64, candidate: NodeId, split: bool) {
        if rounds == 0 {
            return;
        }
        tokio::spawn(async move {
            if split {
                tracing::info!(
                    candidate,
                    "split vote with a candidate of the same term: campaigning again (longer log or higher id)"
                );
            } else {
                tracing::info!(
                    candidate,
                    rounds,
                    "refused a candidate with a shorter log while the leader is silent: campaigning"
                );
            }
            for _ in 0..rounds {
                if raft.trigger().elect(false).await.is_err() {
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use openraft::{LogId, Vote};

    use super::*;

    fn log(term: u64, index: u64) -> Option<crate::types::LogId> {
        Some(LogId::new(crate::types::leader_in(term, 1), index))
    }

    fn request(term: u64, last: Option<crate::types::LogId>) -> VoteRequest<TypeConfig> {
        VoteRequest::new(Vote::new(term, 2), last)
    }

    fn refusal(term: u64, last: Option<crate::types::LogId>) -> VoteResponse<TypeConfig> {
        VoteResponse::new(Vote::new_committed(term, 1), last, false)
    }

    #[test]
    fn a_silent_leader_and_a_shorter_candidate_start_a_takeover_above_its_term() {
        let t = Takeover::new(1, Duration::ZERO);
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(
            t.rounds_after_vote(&request(4, log(3, 9)), &refusal(3, log(3, 10))),
            2
        );
        // Once per candidate term.
        assert_eq!(
            t.rounds_after_vote(&request(4, log(3, 9)), &refusal(3, log(3, 10))),
            0
        );
        // The climb is bounded.
        assert_eq!(
            t.rounds_after_vote(&request(40, log(3, 9)), &refusal(3, log(3, 10))),
            MAX_TERMS_TO_CLIMB
        );
    }

    #[test]
    fn no_takeover_while_the_leader_is_heard_or_when_the_refusal_is_not_by_log() {
        let heard = Takeover::new(1, Duration::from_secs(60));
        assert_eq!(
            heard.rounds_after_vote(&request(4, log(3, 9)), &refusal(3, log(3, 10))),
            0
        );

        let silent = Takeover::new(1, Duration::ZERO);
        std::thread::sleep(Duration::from_millis(2));
        // Their log is as long: refused for another reason (lease, or an equal vote).
        assert_eq!(
            silent.rounds_after_vote(&request(4, log(3, 10)), &refusal(3, log(3, 10))),
            0
        );
        // Granted.
        let granted = VoteResponse::new(Vote::new(4, 2), log(3, 10), true);
        assert_eq!(
            silent.rounds_after_vote(&request(4, log(3, 9)), &granted),
            0
        );
        // Not a higher term.
        assert_eq!(
            silent.rounds_after_vote(&request(3, log(3, 9)), &refusal(3, log(3, 10))),
            0
        );
    }

    /// A candidate's own vote, as its refusal of another candidate carries it.
    fn own_vote(
        id: NodeId,
        term: u64,
        last: Option<crate::types::LogId>,
    ) -> VoteResponse<TypeConfig> {
        VoteResponse::new(Vote::new(term, id), last, false)
    }

    #[test]
    fn in_a_split_vote_exactly_one_candidate_campaigns_again() {
        let req_from = |id: NodeId, last| VoteRequest::new(Vote::new(5, id), last);
        let pair = || {
            let pair = (
                Takeover::new(1, Duration::ZERO),
                Takeover::new(2, Duration::ZERO),
            );
            std::thread::sleep(Duration::from_millis(2));
            pair
        };
        // Node 1 and node 2, both candidates of term 5, refuse each other. Equal logs: the
        // higher id goes again, the other does not.
        let (one, two) = pair();
        assert_eq!(
            two.rounds_after_vote(&req_from(1, log(4, 9)), &own_vote(2, 5, log(4, 9))),
            1
        );
        assert_eq!(
            one.rounds_after_vote(&req_from(2, log(4, 9)), &own_vote(1, 5, log(4, 9))),
            0
        );
        // A longer log goes again whatever the ids.
        let (one, two) = pair();
        assert_eq!(
            one.rounds_after_vote(&req_from(2, log(4, 9)), &own_vote(1, 5, log(4, 10))),
            1
        );
        assert_eq!(
            two.rounds_after_vote(&req_from(1, log(4, 10)), &own_vote(2, 5, log(4, 9))),
            0
        );
        // Not a candidate (a follower that voted for someone else, or a committed vote): no.
        let three = Takeover::new(3, Duration::ZERO);
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(
            three.rounds_after_vote(&req_from(1, log(4, 9)), &own_vote(2, 5, log(4, 9))),
            0
        );
        assert_eq!(
            three.rounds_after_vote(
                &req_from(1, log(4, 9)),
                &VoteResponse::new(Vote::new_committed(5, 3), log(4, 9), false)
            ),
            0
        );
        // While a leader is heard, never.
        let heard = Takeover::new(2, Duration::from_secs(60));
        assert_eq!(
            heard.rounds_after_vote(&req_from(1, log(4, 9)), &own_vote(2, 5, log(4, 9))),
            0
        );
    }

    #[test]
    fn snapshot_chunks_count_as_leader_contact() {
        let t = Takeover::new(1, Duration::from_millis(50));
        std::thread::sleep(Duration::from_millis(60));
        t.note_snapshot_chunk(false);
        assert!(t.silent_for() >= Duration::from_millis(50));
        t.note_snapshot_chunk(true);
        assert!(t.silent_for() < Duration::from_millis(50));
    }

    #[test]
    fn an_accepted_append_counts_as_leader_contact() {
        let t = Takeover::new(1, Duration::from_millis(50));
        std::thread::sleep(Duration::from_millis(60));
        t.note_append(&AppendEntriesResponse::Success);
        assert_eq!(
            t.rounds_after_vote(&request(4, log(3, 9)), &refusal(3, log(3, 10))),
            0
        );
    }
}
