//! When this node campaigns: our own election timer, with a pre-vote before every campaign.
//!
//! openraft's own timer is switched off (`enable_elect: false`); our timer decides (0.9 had no
//! pre-vote; 0.10's would need its own timer, which draws the timeout as ours does). This
//! module holds the pure rules (the pre-vote messages, [`grant_pre_vote`], [`is_majority`],
//! [`may_campaign`], [`Timing`]); the timer task is `node::election_timer`, the answer to a
//! peer's pre-vote is in the peer answers (`peer_server::answer_pre_vote`).
//! Two things are wrong with that timer for a collector cluster:
//!
//! - **A node cut off from the cluster deposes a healthy leader when it comes back.** Alone,
//!   it campaigns again and again and each campaign raises its term. When the partition
//!   heals, the leader's next append meets that higher term and the leader steps down: the
//!   cluster loses its leader (and stores wait) for nothing. Raft's answer (§9.6 of Diego
//!   Ongaro's thesis) is the *pre-vote*: before it raises its term, a node asks the voters
//!   whether they *would* vote for it. A voter says yes only if it has heard no leader for
//!   longer than the leader lease itself and the candidate's log is at least as long as its
//!   own. A node cut off gets no majority, never raises its term, and simply follows the
//!   leader again when it is reachable. openraft has pre-vote only from 0.10.
//! - **Failover waited up to two election timeouts.** openraft 0.9 campaigns after the leader
//!   lease (`election_timeout_max`) *plus* an election timeout drawn once per start, so a
//!   failover took 1.2–1.6 s, and two nodes that happened to draw close timeouts collided
//!   in every failover. Here a node campaigns once the lease has passed plus a random delay
//!   drawn anew for every silence and every attempt (up to
//!   `election_timeout_max - election_timeout_min`; [`FirstAttemptDelay`]), and
//!   again after a fresh random election timeout when an attempt did not make it leader.
//!
//! The lease a voter checks is openraft's own (`election_timeout_max` since the last accepted
//! append, which [`crate::takeover::Takeover`] tracks), so a pre-vote that succeeds is followed by a vote that
//! openraft grants. [`crate::takeover::Takeover`]'s hooks (a voter with the longer log that refuses a candidate
//! campaigns at once; split votes broken by log and id) stay: they act only when an election
//! is already under way, i.e. when no voter hears a leader.
//!
//! A one-voter cluster elects itself at once, without a pre-vote. A node whose clock is out of
//! bounds (`cluster_time`) does not campaign ([`crate::takeover::Takeover::suppressed`]).

use openraft::async_runtime::WatchReceiver;
use std::time::Duration;

use openraft::ServerState;
use serde::{Deserialize, Serialize};

use crate::types::NodeId;

/// A pre-vote request: "would you vote for me in `next_term`?"
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreVoteRequest {
    /// The node that would campaign.
    pub candidate: NodeId,
    /// The term it would campaign in: its current term + 1.
    pub next_term: u64,
    /// Its last log id.
    pub last_log_id: Option<crate::types::LogId>,
}

/// The answer to a [`PreVoteRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreVoteAnswer {
    /// Whether the voter would vote for the candidate.
    pub granted: bool,
    /// The voter's current term.
    pub term: u64,
}

/// What a voter knows when it answers a pre-vote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoterView {
    /// Whether it leads (a leader is alive, by definition).
    pub leading: bool,
    /// Its current term.
    pub term: u64,
    /// Its last log id.
    pub last_log_id: Option<crate::types::LogId>,
    /// How long since a leader last reached it.
    pub silent_for: Duration,
    /// The leader lease: how long after the last leader contact the leader counts as gone.
    pub lease: Duration,
}

/// Whether a voter in `view` grants `request`: no leader heard for longer than the lease (and
/// not leading itself), a term above its own, and a log at least as long as its own.
pub fn grant_pre_vote(view: &VoterView, request: &PreVoteRequest) -> bool {
    !view.leading
        && view.silent_for > view.lease
        && request.next_term > view.term
        && request.last_log_id >= view.last_log_id
}

/// Whether `granted` answers (this node's own included) are a majority of `voters` voters.
pub fn is_majority(granted: usize, voters: usize) -> bool {
    granted * 2 > voters
}

/// Whether this node (`id`) may campaign in `state` with `voters`: a voter that does not lead
/// (nor is stopping).
pub fn may_campaign(state: ServerState, voters: &[NodeId], id: NodeId) -> bool {
    !matches!(state, ServerState::Leader | ServerState::Shutdown) && voters.contains(&id)
}

/// The election timing, from the configured election timeout range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// `election_timeout_min`.
    pub min: Duration,
    /// `election_timeout_max`: also the leader lease.
    pub max: Duration,
}

impl Timing {
    /// How long without a leader before the first attempt: the lease plus a random part of
    /// the range's width, drawn anew each time (`unit` in `[0, 1)`).
    pub fn first_attempt(&self, unit: f64) -> Duration {
        self.max + (self.max - self.min).mul_f64(unit)
    }

    /// How long after an attempt that did not make this node leader before the next one: a
    /// fresh election timeout in `[min, max)` (`unit` in `[0, 1)`).
    pub fn retry(&self, unit: f64) -> Duration {
        self.min + (self.max - self.min).mul_f64(unit)
    }
}

/// The delay before the first attempt of a silence ([`Timing::first_attempt`]), drawn anew
/// for every silence: every time a leader was heard since the last look, and after every
/// attempt. (A draw kept across silences would make a node that drew high lose every
/// failover to a peer that drew afresh, forever.)
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FirstAttemptDelay {
    /// The current draw.
    due: Duration,
    /// The silence seen at the last look.
    last_silent: Duration,
}

impl FirstAttemptDelay {
    /// A first draw (`unit` in `[0, 1)`).
    pub fn new(timing: &Timing, unit: f64) -> Self {
        FirstAttemptDelay {
            due: timing.first_attempt(unit),
            last_silent: Duration::ZERO,
        }
    }

    /// Looks at the current silence: shorter than at the last look means a leader was heard
    /// since, so a new silence begins with a new draw (`unit` is called only then).
    pub fn observe(&mut self, silent: Duration, timing: &Timing, unit: impl FnOnce() -> f64) {
        if silent < self.last_silent {
            self.due = timing.first_attempt(unit());
        }
        self.last_silent = silent;
    }

    /// Draws anew (after an attempt, or while this node may not campaign).
    pub fn redraw(&mut self, timing: &Timing, unit: f64) {
        self.due = timing.first_attempt(unit);
    }

    /// How much silence the first attempt waits for.
    pub fn due(&self) -> Duration {
        self.due
    }
}

/// A number in `[0, 1)` from the thread-local generator.
pub(crate) fn unit() -> f64 {
    use rand::Rng;
    rand::thread_rng().gen::<f64>()
}

/// This node's current term and last log id, as its metrics last published them.
pub(crate) fn term_and_last_log(
    raft: &crate::types::Raft,
) -> (u64, Option<crate::types::LogId>, ServerState) {
    let last_log = raft.data_metrics().borrow_watched().last_log;
    let server = raft.server_metrics();
    let m = server.borrow_watched();
    (m.vote.leader_id().term, last_log, m.state)
}

#[cfg(test)]
mod tests {

    use super::*;

    fn log(term: u64, index: u64) -> Option<crate::types::LogId> {
        Some(crate::types::LogId::new(
            crate::types::leader_in(term, 1),
            index,
        ))
    }

    fn view(silent_ms: u64) -> VoterView {
        VoterView {
            leading: false,
            term: 5,
            last_log_id: log(5, 100),
            silent_for: Duration::from_millis(silent_ms),
            lease: Duration::from_millis(500),
        }
    }

    fn request(next_term: u64, last: Option<crate::types::LogId>) -> PreVoteRequest {
        PreVoteRequest {
            candidate: 3,
            next_term,
            last_log_id: last,
        }
    }

    #[test]
    fn a_voter_that_hears_its_leader_refuses_whatever_the_candidate_offers() {
        // The node cut off from the cluster: a higher term, even a longer log (it cannot
        // have one, but the rule must not depend on it).
        assert!(!grant_pre_vote(&view(100), &request(50, log(5, 100))));
        assert!(!grant_pre_vote(&view(500), &request(50, log(9, 900))));
        // A leader refuses at any silence: it is the leader.
        let leader = VoterView {
            leading: true,
            ..view(10_000)
        };
        assert!(!grant_pre_vote(&leader, &request(50, log(9, 900))));
    }

    #[test]
    fn a_voter_without_a_leader_grants_a_candidate_whose_log_is_as_long() {
        assert!(grant_pre_vote(&view(501), &request(6, log(5, 100))));
        assert!(grant_pre_vote(&view(501), &request(6, log(6, 1))));
        // Shorter log: by index, or by the last entry's term.
        assert!(!grant_pre_vote(&view(501), &request(6, log(5, 99))));
        assert!(!grant_pre_vote(&view(501), &request(6, log(4, 200))));
        assert!(!grant_pre_vote(&view(501), &request(6, None)));
        // Not a term above the voter's own (it is itself campaigning in that term or later).
        assert!(!grant_pre_vote(&view(501), &request(5, log(5, 100))));
    }

    #[test]
    fn majorities() {
        assert!(!is_majority(1, 3));
        assert!(is_majority(2, 3));
        assert!(is_majority(1, 1));
        assert!(!is_majority(1, 2));
        assert!(is_majority(2, 2));
        assert!(!is_majority(2, 4));
        assert!(is_majority(3, 5));
    }

    #[test]
    fn only_a_voter_that_does_not_lead_campaigns() {
        use openraft::ServerState::*;
        assert!(may_campaign(Follower, &[1, 2, 3], 2));
        assert!(may_campaign(Candidate, &[1, 2, 3], 2));
        assert!(!may_campaign(Leader, &[1, 2, 3], 2));
        assert!(!may_campaign(Shutdown, &[1, 2, 3], 2));
        assert!(!may_campaign(Learner, &[1, 2, 3], 4), "not a voter");
        assert!(
            may_campaign(Follower, &[2], 2),
            "a one-member cluster elects itself"
        );
    }

    #[test]
    fn the_first_attempt_waits_out_the_lease_and_a_fresh_draw_spreads_the_nodes() {
        let t = Timing {
            min: Duration::from_millis(300),
            max: Duration::from_millis(500),
        };
        assert_eq!(t.first_attempt(0.0), Duration::from_millis(500));
        assert_eq!(t.first_attempt(0.5), Duration::from_millis(600));
        assert!(t.first_attempt(0.999) < Duration::from_millis(700));
        assert_eq!(t.retry(0.0), Duration::from_millis(300));
        assert!(t.retry(0.999) < Duration::from_millis(500));
        // Draws differ from call to call.
        let draws: std::collections::BTreeSet<u128> = (0..50)
            .map(|_| t.first_attempt(unit()).as_micros())
            .collect();
        assert!(draws.len() > 10);
    }

    #[test]
    fn every_silence_draws_its_own_first_attempt_delay() {
        let t = Timing {
            min: Duration::from_millis(300),
            max: Duration::from_millis(500),
        };
        let ms = Duration::from_millis;
        let mut delay = FirstAttemptDelay::new(&t, 0.9);
        assert_eq!(delay.due(), ms(680));
        // The silence grows: the same draw (and no new one is asked for).
        for silent in [10, 200, 400, 650] {
            delay.observe(ms(silent), &t, || panic!("no draw while the silence grows"));
        }
        assert_eq!(delay.due(), ms(680));
        // A leader was heard (the silence is shorter than at the last look): a new silence,
        // a new draw.
        delay.observe(ms(5), &t, || 0.1);
        assert_eq!(delay.due(), ms(520));
        delay.observe(ms(30), &t, || panic!("no draw while the silence grows"));
        delay.redraw(&t, 0.5);
        assert_eq!(delay.due(), ms(600));
    }
}
