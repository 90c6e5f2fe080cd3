//! The gather: after answering a batch, the writer may wait briefly for the callers it just
//! answered to send their next writes, so that they join the next batch.
//!
//! Why: with one batch in flight, callers that each wait for their answer before sending
//! again split into two groups that take turns, each batch about half of them. Every batch
//! costs a fixed amount of CPU on every node (the Raft round, the log writer's `fdatasync`,
//! replication), so half-size batches cost up to twice as much per store. Waiting for the
//! answered callers joins the groups: in a 3-node cluster on two cores, 64 clients went from
//! ~30 stores per batch to ~62 and from 25,400 to 33,100 stores/s (`docs/design.md`, "The
//! gather").
//!
//! It waits only when the callers it answered are at least as many as the writes already
//! queued (so the next batch can at least double) and together at least
//! [`SMALLEST_TARGET`] (a few callers keep their latency), and is bounded twice: by a deadline
//! (`write_gather_ms`), and by a back-off. A wait
//! that ends at its deadline with fewer than half of the answered callers back ("a miss", as
//! with open-loop traffic) turns the gather off for the next batches,
//! twice as many after each further miss, so traffic that never comes back pays the deadline
//! on a small share of its batches. A wait that ends with at least half of the callers back
//! (every one, or all but stragglers) restores the shortest pause. This module decides; the writer does the waiting.

use std::time::Duration;

/// The smallest batch worth a wait: below it the machine has CPU to spare, and a caller's
/// latency matters more than the batch's cost.
pub const SMALLEST_TARGET: usize = 8;
/// Batches proposed without a gather after a first miss.
pub const FIRST_PAUSE: u32 = 8;
/// The longest pause after repeated misses, in batches.
pub const LONGEST_PAUSE: u32 = 1024;

/// What to wait for before proposing the next batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Propose once this many writes are queued (gathered ones included).
    pub target: usize,
    /// Or once this long has passed, whatever is queued.
    pub wait: Duration,
}

/// How a gather ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The target, or a batch's byte bound, was reached.
    Complete,
    /// The deadline passed after at least half of the answered callers came back: a
    /// straggler, the batch still grew.
    Partial,
    /// The deadline passed with writes waiting and fewer than half of the answered callers
    /// back: the wait was mostly for nothing.
    Missed,
    /// The deadline passed with no write waiting: nobody was delayed.
    Idle,
}

impl End {
    /// How a gather that planned `plan`, with `queued` writes waiting when it began, ended
    /// at its deadline with `waiting` writes gathered or queued.
    pub fn at_deadline(plan: Plan, queued: usize, waiting: usize) -> End {
        let answered = plan.target - queued;
        let back = waiting.saturating_sub(queued);
        match waiting {
            0 => End::Idle,
            _ if waiting >= plan.target => End::Complete,
            _ if 2 * back >= answered => End::Partial,
            _ => End::Missed,
        }
    }

    /// The label of `statemanager_write_gather_total`.
    pub fn label(self) -> &'static str {
        match self {
            End::Complete => "complete",
            End::Partial => "partial",
            End::Missed => "missed",
            End::Idle => "idle",
        }
    }
}

/// The gather's state: its deadline and the current back-off.
#[derive(Debug, Clone)]
pub struct Gather {
    max_wait: Duration,
    /// Batches still to propose at once, after a miss.
    paused_for: u32,
    /// The pause the next miss starts.
    next_pause: u32,
}

impl Gather {
    /// A gather that waits at most `max_wait` (zero: never waits).
    pub fn new(max_wait: Duration) -> Self {
        Gather {
            max_wait,
            paused_for: 0,
            next_pause: FIRST_PAUSE,
        }
    }

    /// Called when the only batch in flight has been answered: `answered` callers got their
    /// answers, `queued` writes are waiting, a batch holds at most `max_ops`. `None`:
    /// propose at once (the gather is off or paused, fewer callers were answered than
    /// writes wait, a full batch is queued, or the batch would stay below
    /// [`SMALLEST_TARGET`]).
    pub fn plan(&mut self, answered: usize, queued: usize, max_ops: usize) -> Option<Plan> {
        if self.max_wait.is_zero() {
            return None;
        }
        if self.paused_for > 0 {
            self.paused_for -= 1;
            return None;
        }
        // Worth a wait only when it can at least double the next batch: a few callers
        // coming back would add little to a long queue, and delay all of it.
        if answered < queued {
            return None;
        }
        let target = queued.saturating_add(answered).min(max_ops);
        (target > queued && target >= SMALLEST_TARGET).then_some(Plan {
            target,
            wait: self.max_wait,
        })
    }

    /// Records how the planned gather ended.
    pub fn ended(&mut self, end: End) {
        match end {
            End::Complete | End::Partial => self.next_pause = FIRST_PAUSE,
            End::Missed => {
                self.paused_for = self.next_pause;
                self.next_pause = self.next_pause.saturating_mul(2).min(LONGEST_PAUSE);
            }
            End::Idle => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(3);

    #[test]
    fn waits_for_the_answered_callers_on_top_of_the_queued_writes() {
        let mut gather = Gather::new(MS);
        assert_eq!(
            gather.plan(32, 30, 1024),
            Some(Plan {
                target: 62,
                wait: MS
            })
        );
        assert_eq!(gather.plan(8, 0, 1024).map(|p| p.target), Some(8));
    }

    #[test]
    fn few_callers_never_wait() {
        let mut gather = Gather::new(MS);
        assert_eq!(gather.plan(1, 0, 1024), None);
        assert_eq!(gather.plan(4, 3, 1024), None);
        // Nor when a batch holds fewer than the smallest target.
        assert_eq!(gather.plan(4, 2, 4), None);
    }

    #[test]
    fn never_waits_for_more_than_a_batch_holds() {
        let mut gather = Gather::new(MS);
        assert_eq!(gather.plan(40, 30, 64).map(|p| p.target), Some(64));
        // A full batch is already queued: nothing to wait for.
        assert_eq!(gather.plan(80, 64, 64), None);
        assert_eq!(gather.plan(usize::MAX, 3, 64).map(|p| p.target), Some(64));
    }

    #[test]
    fn waits_only_when_the_next_batch_can_at_least_double() {
        let mut gather = Gather::new(MS);
        assert_eq!(gather.plan(32, 32, 1024).map(|p| p.target), Some(64));
        // One caller answered, seven writes waiting: they go at once.
        assert_eq!(gather.plan(1, 7, 1024), None);
        assert_eq!(gather.plan(7, 9, 1024), None);
        assert_eq!(gather.plan(31, 32, 1024), None);
    }

    #[test]
    fn off_when_the_deadline_is_zero_or_nothing_was_answered() {
        let mut off = Gather::new(Duration::ZERO);
        assert_eq!(off.plan(32, 0, 1024), None);
        let mut gather = Gather::new(MS);
        assert_eq!(gather.plan(0, 5, 1024), None);
    }

    #[test]
    fn a_deadline_tells_stragglers_from_callers_that_did_not_come_back() {
        let plan = Plan {
            target: 64,
            wait: MS,
        };
        // 32 were queued, 32 answered.
        assert_eq!(End::at_deadline(plan, 32, 0), End::Idle);
        assert_eq!(End::at_deadline(plan, 32, 32), End::Missed);
        assert_eq!(End::at_deadline(plan, 32, 47), End::Missed);
        assert_eq!(End::at_deadline(plan, 32, 48), End::Partial);
        assert_eq!(End::at_deadline(plan, 32, 63), End::Partial);
        assert_eq!(End::at_deadline(plan, 32, 64), End::Complete);
        // Nothing was queued: one write back of two answered is half.
        let lone = Plan {
            target: 2,
            wait: MS,
        };
        assert_eq!(End::at_deadline(lone, 0, 1), End::Partial);
        let many = Plan {
            target: 8,
            wait: MS,
        };
        assert_eq!(End::at_deadline(many, 0, 3), End::Missed);
    }

    #[test]
    fn a_partial_gather_keeps_the_gather_on() {
        let mut gather = Gather::new(MS);
        gather.ended(End::Partial);
        assert_eq!(waits_in(&mut gather, 3), 3);
    }

    /// Plans `n` gathers of ordinary batches and counts those that would wait.
    fn waits_in(gather: &mut Gather, n: u32) -> u32 {
        (0..n).filter(|_| gather.plan(8, 1, 1024).is_some()).count() as u32
    }

    #[test]
    fn a_miss_pauses_the_gather_and_each_further_miss_doubles_the_pause() {
        let mut gather = Gather::new(MS);
        gather.ended(End::Missed);
        assert_eq!(waits_in(&mut gather, FIRST_PAUSE), 0);
        assert!(gather.plan(8, 1, 1024).is_some());
        gather.ended(End::Missed);
        assert_eq!(waits_in(&mut gather, 2 * FIRST_PAUSE), 0);
        assert!(gather.plan(8, 1, 1024).is_some());
    }

    #[test]
    fn the_pause_stops_growing_at_its_longest() {
        let mut gather = Gather::new(MS);
        for _ in 0..40 {
            gather.ended(End::Missed);
        }
        assert_eq!(waits_in(&mut gather, LONGEST_PAUSE), 0);
        assert!(gather.plan(8, 1, 1024).is_some());
    }

    #[test]
    fn a_complete_gather_restores_the_first_pause_and_an_idle_one_changes_nothing() {
        let mut gather = Gather::new(MS);
        gather.ended(End::Missed);
        assert_eq!(waits_in(&mut gather, FIRST_PAUSE), 0);
        gather.ended(End::Missed);
        assert_eq!(waits_in(&mut gather, 2 * FIRST_PAUSE), 0);
        gather.ended(End::Complete);
        gather.ended(End::Idle);
        assert_eq!(waits_in(&mut gather, 3), 3);
        gather.ended(End::Missed);
        assert_eq!(waits_in(&mut gather, FIRST_PAUSE), 0);
        assert!(gather.plan(8, 1, 1024).is_some());
    }

    #[test]
    fn misses_delay_a_small_share_of_batches_under_traffic_that_never_comes_back() {
        // Every gather misses: the share of batches that wait falls to 1 in 1025.
        let mut gather = Gather::new(MS);
        let mut waited = 0u32;
        let batches = 200_000u32;
        for _ in 0..batches {
            if gather.plan(8, 1, 1024).is_some() {
                waited += 1;
                gather.ended(End::Missed);
            }
        }
        assert!(
            waited < batches / 500,
            "{waited} of {batches} batches waited"
        );
    }
}
