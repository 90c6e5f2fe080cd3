//! When a sole voter writes a batch's log entry on the Raft core's own task.
//!
//! Normally the log writer thread ([`super::flusher`]) writes and fsyncs every append, so the
//! runtime thread that runs the Raft core stays free for requests meanwhile. That costs two
//! thread wake-ups per batch (the writer thread woken for the append, the runtime woken for
//! its callback), each tens of microseconds on a virtual machine whose other core sleeps:
//! about an eighth of a single node's store cycle (see `docs/design.md`, "A sole voter
//! writes its log in place").
//!
//! When nothing could use the runtime thread meanwhile, writing in place loses nothing. The
//! writer offers a batch for an inline write when this node leads alone (nothing to replicate
//! while the fsync runs), every request in flight on the node is a write of that batch
//! (nobody else waits for the thread), and no more requests began since the previous batch
//! was proposed than this batch holds (the node sees only writes, so no fetch is likely to
//! arrive during the fsync: under mixed traffic a fetch in flight is seldom caught in the act,
//! but one begun in the last cycle always is). The log store takes the offer when the last log fsync
//! took less than the configured bound (a slow disk would hold the thread that long for a
//! request arriving meanwhile) and the writer thread has nothing queued (appends stay in
//! order). Durability is the same either way: the entry is reported flushed only after its
//! `fdatasync`.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The shared state of the inline-write rule: requests in flight and begun, the writer's
/// offer, and how long the last log fsync took.
#[derive(Debug)]
pub struct InlineWrites {
    /// Requests being served and begun, counted in [`SLOTS`] slots: each serving thread
    /// counts in its own slot, so that no cache line is written by every request of every
    /// thread (see [`RequestCounts`]).
    slots: Box<[RequestCounts; SLOTS]>,
    /// Requests begun when the writer last offered (or declined to offer) a batch.
    started_at_offer: AtomicU64,
    /// Set by the writer just before it proposes a batch that may be written in place.
    offered: AtomicBool,
    /// How long the last log write and fsync took, in microseconds.
    last_fsync_us: AtomicU64,
    /// Inline writes only while the last fsync took less than this; zero: never.
    bound: Duration,
}

/// The slots the request counts are spread over; threads beyond that share slots (the counts
/// stay exact, only the cache lines are shared).
pub const SLOTS: usize = 8;

/// One slot's request counts, on cache lines of their own (128 bytes: adjacent lines are
/// fetched in pairs on x86).
#[derive(Debug, Default)]
#[repr(align(128))]
struct RequestCounts {
    /// Requests begun here and not yet ended: a request ends in the slot it began in, even
    /// when its guard is dropped on another thread.
    in_flight: AtomicUsize,
    /// Requests begun here, ever.
    begun: AtomicU64,
}

/// The calling thread's slot: threads take the slots in turn, at their first request.
fn slot_of_this_thread() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SLOTS;
    }
    SLOT.with(|slot| *slot)
}

/// The pure rule: may a batch of `batch_ops` operations be offered for an inline write, with
/// `in_flight` requests being served and `begun` requests begun since the previous batch?
pub fn may_offer(leads_alone: bool, in_flight: usize, begun: u64, batch_ops: usize) -> bool {
    leads_alone && in_flight <= batch_ops && begun <= batch_ops as u64
}

/// The pure rule: does the log store take an offer?
pub fn may_take(offered: bool, last_fsync: Duration, bound: Duration, writer_idle: bool) -> bool {
    offered && writer_idle && last_fsync < bound
}

impl InlineWrites {
    /// The rule's state; inline writes only while the last fsync took less than `bound`
    /// (zero: never).
    pub fn new(bound: Duration) -> Arc<Self> {
        Arc::new(InlineWrites {
            slots: Box::default(),
            started_at_offer: AtomicU64::new(0),
            offered: AtomicBool::new(false),
            last_fsync_us: AtomicU64::new(0),
            bound,
        })
    }

    /// Counts one request in flight until the guard is dropped.
    pub fn serving(&self) -> Serving<'_> {
        let counts = &self.slots[slot_of_this_thread()];
        counts.in_flight.fetch_add(1, Ordering::Relaxed);
        counts.begun.fetch_add(1, Ordering::Relaxed);
        Serving(counts)
    }

    /// Whether writes in place may happen at all (the bound is not zero).
    pub fn enabled(&self) -> bool {
        !self.bound.is_zero()
    }

    /// The requests in flight now (a request ends in the slot it began in, so no slot's count
    /// goes below zero).
    pub fn requests_in_flight(&self) -> usize {
        self.slots
            .iter()
            .map(|c| c.in_flight.load(Ordering::Relaxed))
            .sum()
    }

    /// The requests begun, ever.
    fn requests_begun(&self) -> u64 {
        self.slots
            .iter()
            .map(|c| c.begun.load(Ordering::Relaxed))
            .sum()
    }

    /// The writer, before proposing a batch of `batch_ops` operations.
    pub(crate) fn offer(&self, leads_alone: bool, batch_ops: usize) {
        let started = self.requests_begun();
        let begun = started.saturating_sub(self.started_at_offer.swap(started, Ordering::Relaxed));
        let offered = !self.bound.is_zero()
            && may_offer(leads_alone, self.requests_in_flight(), begun, batch_ops);
        self.offered.store(offered, Ordering::Relaxed);
    }

    /// The log store, at an append: whether to write it in place (the offer is used up).
    pub(crate) fn take(&self, writer_idle: bool) -> bool {
        let offered = self.offered.swap(false, Ordering::Relaxed);
        let last = Duration::from_micros(self.last_fsync_us.load(Ordering::Relaxed));
        may_take(offered, last, self.bound, writer_idle)
    }

    /// A log write and fsync (either path) took `elapsed`.
    pub(crate) fn fsync_took(&self, elapsed: Duration) {
        self.last_fsync_us
            .store(elapsed.as_micros() as u64, Ordering::Relaxed);
    }
}

/// One request in flight (see [`InlineWrites::serving`]).
#[derive(Debug)]
pub struct Serving<'a>(&'a RequestCounts);

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_batch_is_offered_only_by_a_lone_leader_that_every_request_waits_for() {
        assert!(may_offer(true, 62, 62, 62));
        assert!(may_offer(true, 1, 1, 1));
        // Writes queued during the previous batch began before it was proposed.
        assert!(may_offer(true, 62, 10, 62));
        // A fetch (or the next batch's store) in flight besides the batch.
        assert!(!may_offer(true, 63, 62, 62));
        // More requests began since the previous batch than this one holds: a fetch among them.
        assert!(!may_offer(true, 62, 63, 62));
        // Followers to replicate to, or not the leader.
        assert!(!may_offer(false, 1, 1, 62));
    }

    #[test]
    fn an_offer_is_taken_only_after_a_fast_fsync_with_the_writer_thread_idle() {
        assert!(may_take(true, MS / 4, MS, true));
        assert!(!may_take(false, MS / 4, MS, true));
        assert!(!may_take(true, MS, MS, true));
        assert!(!may_take(true, MS / 4, MS, false));
        assert!(!may_take(true, Duration::ZERO, Duration::ZERO, true));
    }

    #[test]
    fn requests_are_counted_across_threads_and_end_where_they_began() {
        let inline = InlineWrites::new(MS);
        // More threads than slots, each with two requests: one ended on its own thread,
        // one handed to the main thread and ended there.
        let handed: Vec<Serving<'_>> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..SLOTS + 3)
                .map(|_| {
                    scope.spawn(|| {
                        let kept = inline.serving();
                        let handed = inline.serving();
                        drop(kept);
                        handed
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        assert_eq!(inline.requests_in_flight(), SLOTS + 3);
        assert_eq!(inline.requests_begun(), 2 * (SLOTS as u64 + 3));
        drop(handed);
        assert_eq!(inline.requests_in_flight(), 0);
        assert_eq!(inline.requests_begun(), 2 * (SLOTS as u64 + 3));
    }

    #[test]
    fn the_guards_count_requests_and_an_offer_is_used_once() {
        let inline = InlineWrites::new(MS);
        let a = inline.serving();
        let b = inline.serving();
        assert_eq!(inline.requests_in_flight(), 2);
        inline.offer(true, 1);
        assert!(!inline.take(true), "two requests, one op: not offered");
        drop(b);
        inline.offer(true, 1);
        assert!(
            inline.take(true),
            "none begun since the last offer, one in flight"
        );
        assert!(!inline.take(true), "the offer was used up");
        drop(inline.serving());
        drop(inline.serving());
        inline.offer(true, 1);
        assert!(!inline.take(true), "two begun since the last offer, one op");
        inline.fsync_took(MS * 2);
        inline.offer(true, 1);
        assert!(!inline.take(true), "a slow fsync last time");
        drop(a);
        assert_eq!(inline.requests_in_flight(), 0);
        let never = InlineWrites::new(Duration::ZERO);
        never.offer(true, 1);
        assert!(!never.take(true));
    }
}
