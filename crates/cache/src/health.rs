//! Which cache peers are down: the bookkeeping behind "mark it down for
//! `peer_refresh_time`, then recheck".
//!
//! A peer that did not answer a cache call within `peer_connection_timeout` is marked down
//! and skipped: its keys go to the next node in their order (see [`crate::owner`]). Once
//! `peer_refresh_time` has passed, ONE call is let through to recheck it (the others keep
//! skipping it for another `peer_refresh_time`), so a dead peer costs one timeout per
//! refresh period, not one per request. Its first answer marks it up again.
//!
//! Time comes from an injected [`Clock`], so the tests move it by hand.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use statemanager_core::{Clock, Timestamp};

/// What this node knows of one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// Answering (or never tried).
    Up,
    /// Did not answer; skipped until it is rechecked.
    Down {
        /// When it was first marked down (this time round).
        since: Timestamp,
    },
}

#[derive(Debug, Clone, Copy)]
struct Down {
    since: Timestamp,
    /// When the next call may try it.
    recheck_at: Timestamp,
}

/// The down peers, by node id.
pub struct PeerHealth {
    refresh: Duration,
    clock: Arc<dyn Clock>,
    down: Mutex<HashMap<u64, Down>>,
}

impl std::fmt::Debug for PeerHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerHealth")
            .field("refresh", &self.refresh)
            .finish_non_exhaustive()
    }
}

fn plus(t: Timestamp, d: Duration) -> Timestamp {
    Timestamp::from_micros(t.as_micros().saturating_add(d.as_micros() as u64))
}

impl PeerHealth {
    /// Every peer up; a peer marked down is rechecked after `refresh` (`peer_refresh_time`).
    pub fn new(refresh: Duration, clock: Arc<dyn Clock>) -> Self {
        PeerHealth {
            refresh,
            clock,
            down: Mutex::new(HashMap::new()),
        }
    }

    fn down(&self) -> MutexGuard<'_, HashMap<u64, Down>> {
        self.down.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a call may go to `node` now: it is up, or it is down and due for its recheck
    /// (then this caller is the one that rechecks it, and the next recheck is pushed back).
    pub fn usable(&self, node: u64) -> bool {
        let mut down = self.down();
        let Some(entry) = down.get_mut(&node) else {
            return true;
        };
        let now = self.clock.now();
        if now >= entry.recheck_at {
            entry.recheck_at = plus(now, self.refresh);
            return true;
        }
        false
    }

    /// Whether `node` is up, without claiming a recheck.
    pub fn is_up(&self, node: u64) -> bool {
        !self.down().contains_key(&node)
    }

    /// `node` did not answer: skip it for `peer_refresh_time`. True when it was up before.
    pub fn mark_down(&self, node: u64) -> bool {
        let now = self.clock.now();
        let mut down = self.down();
        match down.get_mut(&node) {
            Some(entry) => {
                entry.recheck_at = plus(now, self.refresh);
                false
            }
            None => {
                down.insert(
                    node,
                    Down {
                        since: now,
                        recheck_at: plus(now, self.refresh),
                    },
                );
                true
            }
        }
    }

    /// `node` answered. True when it was down before.
    pub fn mark_up(&self, node: u64) -> bool {
        let mut down = self.down();
        // The common case (it was up) is one lookup in an almost always empty map.
        !down.is_empty() && down.remove(&node).is_some()
    }

    /// What is known of `node`.
    pub fn state(&self, node: u64) -> PeerState {
        match self.down().get(&node) {
            Some(d) => PeerState::Down { since: d.since },
            None => PeerState::Up,
        }
    }
}

#[cfg(test)]
mod tests {
    use statemanager_core::ManualClock;

    use super::*;

    const T0: u64 = 1_700_000_000;

    fn health(refresh_secs: u64) -> (PeerHealth, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(Timestamp::from_micros(T0 * 1_000_000)));
        (
            PeerHealth::new(Duration::from_secs(refresh_secs), clock.clone()),
            clock,
        )
    }

    #[test]
    fn a_down_peer_is_skipped_until_its_refresh_time_then_rechecked_once() {
        let (h, clock) = health(10);
        assert!(h.usable(2));
        assert_eq!(h.state(2), PeerState::Up);
        assert!(h.mark_down(2), "newly down");
        let since = Timestamp::from_micros(T0 * 1_000_000);
        assert_eq!(h.state(2), PeerState::Down { since });
        assert!(!h.usable(2));
        assert!(h.usable(3), "other peers are not affected");
        clock.advance_secs(9);
        assert!(!h.usable(2), "still within peer_refresh_time");
        clock.advance_secs(1);
        assert!(h.usable(2), "due: this caller rechecks it");
        assert!(!h.usable(2), "only one caller rechecks it");
        assert!(!h.is_up(2));
        // The recheck failed: down again, for another refresh period; `since` is kept.
        assert!(!h.mark_down(2), "it was already down");
        assert_eq!(h.state(2), PeerState::Down { since });
        clock.advance_secs(5);
        assert!(!h.usable(2));
        clock.advance_secs(5);
        assert!(h.usable(2));
        // The recheck answered: up at once, for every caller.
        assert!(h.mark_up(2), "it was down");
        assert!(!h.mark_up(2), "already up");
        assert!(h.usable(2) && h.usable(2));
        assert_eq!(h.state(2), PeerState::Up);
    }

    #[test]
    fn a_recheck_that_never_reports_back_lets_another_through_a_period_later() {
        let (h, clock) = health(3);
        h.mark_down(4);
        clock.advance_secs(3);
        assert!(h.usable(4));
        // That caller vanished without marking it up or down.
        clock.advance_secs(2);
        assert!(!h.usable(4));
        clock.advance_secs(1);
        assert!(h.usable(4));
    }
}
