//! Cluster time: the time reads and writes use, and how far each node's clock is from its
//! peers'.
//!
//! A node's own clock decides nothing on its own in a cluster. Two values, both monotone and
//! in memory, travel with every peer-stream call and answer (see [`CallStamp`],
//! [`AnswerStamp`]):
//!
//! - `seen`: the highest time this node has proposed or been told of. A leader raises it to
//!   `max(its clock, seen, applied high-water)` before each read-index round, so the
//!   heartbeats of that round carry it to a quorum; writes are stamped at `max(clock, seen)`
//!   (so a leader whose clock is behind never stamps the past of a time already used).
//! - `confirmed`: the times a read may use. A value enters it only after the leadership
//!   round that carried it in `seen` was acknowledged by a quorum (or from a peer that had it
//!   confirmed). Reads use `max(confirmed, applied high-water)`.
//!
//! Why an expired item never comes back (see `docs/design.md`, "Cluster time"): every read
//! time was in the `seen` of a quorum before any read used it; the next leader is elected by
//! a quorum, and every vote answer carries the voter's `seen`, which the candidate takes
//! before openraft counts the vote; so the next leader's read times are at least every
//! earlier one. Within a term, `seen` and `confirmed` only grow.
//!
//! The offset of each peer's clock is estimated as NTP does from the calls this node makes
//! (four timestamps, the round trip halved; the sample with the shortest round trip of the
//! recent ones is kept, [`Estimator`]). A leader sends its estimates with every append, so a
//! follower knows where it stands against every member; [`judge`] decides whether a node is
//! off by more than `max_clock_offset` from a majority.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use statemanager_core::{Clock, Timestamp};

use crate::types::NodeId;

/// Samples kept per peer.
const SAMPLES: usize = 16;
/// A sample older than this is not used.
const FRESH: Duration = Duration::from_secs(10);
/// A leader's table older than this is not used by a follower.
const TABLE_FRESH: Duration = Duration::from_secs(3);

/// What every peer-stream request carries after the cluster id (protocol version 2).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallStamp {
    /// The caller.
    pub from: NodeId,
    /// The caller's `seen` (µs since the epoch).
    pub seen: u64,
    /// The caller's `confirmed`.
    pub confirmed: u64,
    /// The caller's estimates of its peers' clocks: (peer, peer's clock − caller's, µs).
    /// A follower takes them from its leader's appends.
    pub offsets: Vec<(NodeId, i64)>,
}

/// What every peer-stream answer carries before the answer itself (protocol version 2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct AnswerStamp {
    /// The answering node's clock when the request arrived.
    pub received_at: u64,
    /// Its clock when the answer left.
    pub sent_at: u64,
    /// Its `seen`.
    pub seen: u64,
    /// Its `confirmed`.
    pub confirmed: u64,
}

/// One NTP sample: the peer's clock minus ours, and the round trip without the peer's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Peer clock − our clock, µs.
    pub offset: i64,
    /// Round trip minus the peer's processing time, µs.
    pub delay: u64,
}

/// NTP's on-wire computation: `t0` we sent, `t1` the peer received, `t2` the peer answered,
/// `t3` we received (`t0`, `t3` on our clock; `t1`, `t2` on the peer's).
pub fn sample(t0: u64, t1: u64, t2: u64, t3: u64) -> Sample {
    let (t0, t1, t2, t3) = (t0 as i128, t1 as i128, t2 as i128, t3 as i128);
    let offset = ((t1 - t0) + (t2 - t3)) / 2;
    let delay = ((t3 - t0) - (t2 - t1)).max(0);
    Sample {
        offset: offset.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
        delay: delay.min(u64::MAX as i128) as u64,
    }
}

/// Recent samples of one peer; the estimate is the sample with the shortest round trip
/// (its error is at most half that round trip), as NTP's clock filter does.
#[derive(Debug, Default, Clone)]
pub struct Estimator {
    samples: VecDeque<(Sample, Instant)>,
}

impl Estimator {
    /// Adds a sample taken at `at`.
    pub fn add(&mut self, s: Sample, at: Instant) {
        if self.samples.len() == SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back((s, at));
    }

    /// The best fresh sample at `now`, if any.
    pub fn estimate(&self, now: Instant) -> Option<Sample> {
        self.samples
            .iter()
            .filter(|(_, at)| now.saturating_duration_since(*at) <= FRESH)
            .min_by_key(|(s, _)| s.delay)
            .map(|(s, _)| *s)
    }

    /// The most recent sample.
    pub fn last(&self) -> Option<Sample> {
        self.samples.back().map(|(s, _)| *s)
    }
}

/// Where a node stands against its peers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdict {
    /// Off by more than the bound from a majority of the voters.
    pub out_of_bounds: bool,
    /// Each known peer's clock minus this node's, µs.
    pub offsets: Vec<(NodeId, i64)>,
    /// The voters this node is off from by more than the bound.
    pub beyond: Vec<NodeId>,
}

impl Verdict {
    /// The largest offset to a peer, in absolute value (µs).
    pub fn worst(&self) -> u64 {
        self.offsets
            .iter()
            .map(|(_, o)| o.unsigned_abs())
            .max()
            .unwrap_or(0)
    }
}

/// Judges node `me` from `table`: each node's clock relative to one reference (µs). `me` is
/// out of bounds when the voters it is off from by more than `bound` are a majority of
/// `voters`. Peers with no estimate count for neither side, so a node with no measurements
/// (a single node, or before any call) is within bounds.
pub fn judge(me: NodeId, table: &[(NodeId, i64)], voters: &[NodeId], bound: u64) -> Verdict {
    let Some(mine) = table.iter().find(|(id, _)| *id == me).map(|(_, o)| *o) else {
        return Verdict::default();
    };
    let offsets: Vec<(NodeId, i64)> = table
        .iter()
        .filter(|(id, _)| *id != me)
        .map(|(id, o)| (*id, o.saturating_sub(mine)))
        .collect();
    let beyond: Vec<NodeId> = offsets
        .iter()
        .filter(|(id, o)| voters.contains(id) && o.unsigned_abs() > bound)
        .map(|(id, _)| *id)
        .collect();
    let majority = voters.len() / 2 + 1;
    Verdict {
        out_of_bounds: voters.len() > 1 && beyond.len() >= majority,
        offsets,
        beyond,
    }
}

/// Each node's clock relative to one reference node, µs.
type Table = Vec<(NodeId, i64)>;

#[derive(Debug, Default)]
struct Offsets {
    own: BTreeMap<NodeId, Estimator>,
    /// The last table a leader sent with an append: (leader, table relative to it, when).
    leader_table: Option<(NodeId, Table, Instant)>,
}

/// This node's cluster time and clock offsets. Shared by the network (which stamps calls and
/// reads answers), the peer stream server, the reader, the writer and the node.
pub struct ClusterTime {
    me: NodeId,
    clock: Arc<dyn Clock>,
    bound: u64,
    seen: AtomicU64,
    confirmed: AtomicU64,
    offsets: Mutex<Offsets>,
    out: AtomicBool,
    reason: Mutex<Option<String>>,
}

impl std::fmt::Debug for ClusterTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTime")
            .field("me", &self.me)
            .field("seen", &self.seen)
            .field("confirmed", &self.confirmed)
            .finish_non_exhaustive()
    }
}

impl ClusterTime {
    /// For node `me` with wall clock `clock`, refusing offsets over `max_offset`.
    pub fn new(me: NodeId, clock: Arc<dyn Clock>, max_offset: Duration) -> Self {
        ClusterTime {
            me,
            clock,
            bound: max_offset.as_micros() as u64,
            seen: AtomicU64::new(0),
            confirmed: AtomicU64::new(0),
            offsets: Mutex::new(Offsets::default()),
            out: AtomicBool::new(false),
            reason: Mutex::new(None),
        }
    }

    /// `max_clock_offset` in µs.
    pub fn bound(&self) -> u64 {
        self.bound
    }

    /// This node's own wall clock (µs).
    pub fn wall(&self) -> u64 {
        self.clock.now().as_micros()
    }

    fn raise(&self, seen: u64, confirmed: u64) {
        self.seen.fetch_max(seen.max(confirmed), Ordering::SeqCst);
        self.confirmed.fetch_max(confirmed, Ordering::SeqCst);
    }

    /// Before a read-index round: the time the round will confirm, `max(clock, seen,
    /// confirmed, applied high-water)`, made part of `seen` so the round's heartbeats carry it.
    /// Only a leader's clock counts (`leader`): a follower's own clock never enters cluster
    /// time.
    pub fn begin_read(&self, high_water: Timestamp, leader: bool) -> u64 {
        let wall = if leader { self.wall() } else { 0 };
        let t = wall
            .max(self.confirmed.load(Ordering::SeqCst))
            .max(high_water.as_micros());
        self.seen.fetch_max(t, Ordering::SeqCst).max(t)
    }

    /// Leader, after a quorum acknowledged the round begun with `t`: reads may use it.
    pub fn confirm(&self, t: u64) {
        self.raise(t, t);
    }

    /// The time a read uses once its round is done: `max(confirmed, applied high-water)`.
    pub fn read_time(&self, high_water: Timestamp) -> Timestamp {
        Timestamp::from_micros(self.confirmed.load(Ordering::SeqCst)).max(high_water)
    }

    /// (`seen`, `confirmed`), µs.
    pub fn floors(&self) -> (u64, u64) {
        (
            self.seen.load(Ordering::SeqCst),
            self.confirmed.load(Ordering::SeqCst),
        )
    }

    /// This node's usable estimates: the best fresh sample of each peer, when its round trip
    /// is at most the bound (so its error, at most half the round trip, is at most half the
    /// bound). A peer paused or overloaded for longer gives no estimate rather than a wrong
    /// one.
    fn own_table(&self, o: &Offsets, now: Instant) -> Table {
        o.own
            .iter()
            .filter_map(|(id, e)| e.estimate(now).map(|s| (*id, s)))
            .filter(|(_, s)| s.delay <= self.bound)
            .map(|(id, s)| (id, s.offset))
            .collect()
    }

    /// What an outgoing call carries.
    pub fn call_stamp(&self) -> CallStamp {
        let now = Instant::now();
        let offsets = {
            let o = self.offsets.lock().unwrap_or_else(|p| p.into_inner());
            self.own_table(&o, now)
        };
        let (seen, confirmed) = self.floors();
        CallStamp {
            from: self.me,
            seen,
            confirmed,
            offsets,
        }
    }

    /// Takes in an incoming call's stamp; `from_leader`: it is an append (only a leader sends
    /// those), so its offsets are the leader's table.
    pub fn on_call(&self, stamp: &CallStamp, from_leader: bool) {
        self.raise(stamp.seen, stamp.confirmed);
        if from_leader && stamp.from != self.me {
            let mut table = stamp.offsets.clone();
            table.retain(|(id, _)| *id != stamp.from);
            table.push((stamp.from, 0));
            self.offsets
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .leader_table = Some((stamp.from, table, Instant::now()));
        }
    }

    /// What an answer carries; `received_at`: this node's clock when the call arrived.
    pub fn answer_stamp(&self, received_at: u64) -> AnswerStamp {
        let (seen, confirmed) = self.floors();
        AnswerStamp {
            received_at,
            sent_at: self.wall(),
            seen,
            confirmed,
        }
    }

    /// Takes in an answer from `peer` to a call sent at `t0` and received at `t3` (this
    /// node's clock); returns the sample.
    pub fn on_answer(
        &self,
        peer: Option<NodeId>,
        t0: u64,
        answer: &AnswerStamp,
        t3: u64,
    ) -> Sample {
        self.raise(answer.seen, answer.confirmed);
        let s = sample(t0, answer.received_at, answer.sent_at, t3);
        if let Some(peer) = peer.filter(|p| *p != self.me) {
            self.offsets
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .own
                .entry(peer)
                .or_default()
                .add(s, Instant::now());
        }
        s
    }

    /// The latest sample of `peer` (a candidate checks the voter that just granted its vote).
    pub fn last_sample(&self, peer: NodeId) -> Option<Sample> {
        self.offsets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .own
            .get(&peer)
            .and_then(Estimator::last)
    }

    /// Whether `s` shows a clock offset certainly beyond the bound: even at the edge of its
    /// error (half its round trip) it is over. A slow answer (a paused or overloaded peer)
    /// proves nothing.
    pub fn certainly_beyond(&self, s: Sample) -> bool {
        s.offset.unsigned_abs() > self.bound.saturating_add(s.delay / 2)
    }

    /// Judges this node: as leader from its own estimates; as a follower from its leader's
    /// latest table when it is fresh, else from its own.
    pub fn verdict(&self, voters: &[NodeId], leader: Option<NodeId>) -> Verdict {
        let now = Instant::now();
        let o = self.offsets.lock().unwrap_or_else(|p| p.into_inner());
        let from_leader = match (&o.leader_table, leader) {
            (Some((from, table, at)), Some(l))
                if *from == l && l != self.me && now.duration_since(*at) <= TABLE_FRESH =>
            {
                Some(table.clone())
            }
            _ => None,
        };
        let table = from_leader.unwrap_or_else(|| {
            let mut table = self.own_table(&o, now);
            table.push((self.me, 0));
            table
        });
        judge(self.me, &table, voters, self.bound)
    }

    /// Records the verdict's outcome for the request paths (see [`ClusterTime::refusal`]).
    pub fn set_out_of_bounds(&self, reason: Option<String>) {
        self.out.store(reason.is_some(), Ordering::SeqCst);
        *self.reason.lock().unwrap_or_else(|p| p.into_inner()) = reason;
    }

    /// Whether this node's clock is off from the majority by more than the bound.
    pub fn out_of_bounds(&self) -> bool {
        self.out.load(Ordering::Relaxed)
    }

    /// Why this node refuses reads and writes, when its clock is out of bounds.
    pub fn refusal(&self) -> Option<String> {
        if !self.out_of_bounds() {
            return None;
        }
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Writes are stamped with cluster time: `max(wall clock, seen)`, never below a time already
/// used for a read (a slow leader does not stamp the past).
impl Clock for ClusterTime {
    fn now(&self) -> Timestamp {
        Timestamp::from_micros(self.wall().max(self.seen.load(Ordering::SeqCst)))
    }
}

#[cfg(test)]
mod tests {
    use statemanager_core::ManualClock;

    use super::*;

    const S: u64 = 1_000_000;

    fn node(id: NodeId, at: u64) -> (Arc<ManualClock>, ClusterTime) {
        let clock = Arc::new(ManualClock::new(Timestamp::from_micros(at)));
        let time = ClusterTime::new(id, clock.clone(), Duration::from_millis(500));
        (clock, time)
    }

    /// One call from `a` to `b` over a link of `one_way` µs each way, `b` taking `work` µs.
    fn call(
        a: (&ManualClock, &ClusterTime),
        b: (&ManualClock, &ClusterTime),
        b_id: NodeId,
        one_way: u64,
        work: u64,
    ) -> Sample {
        let stamp = a.1.call_stamp();
        let t0 = a.1.wall();
        advance(a.0, b.0, one_way);
        let t1 = b.1.wall();
        b.1.on_call(&stamp, true);
        advance(a.0, b.0, work);
        let answer = b.1.answer_stamp(t1);
        advance(a.0, b.0, one_way);
        a.1.on_answer(Some(b_id), t0, &answer, a.1.wall())
    }

    fn advance(a: &ManualClock, b: &ManualClock, micros: u64) {
        for c in [a, b] {
            c.set(Timestamp::from_micros(c.now().as_micros() + micros));
        }
    }

    #[test]
    fn ntp_sample_halves_the_round_trip_and_removes_the_peers_work() {
        // Peer 300 ms ahead, 2 ms each way, 5 ms of work at the peer.
        let s = sample(1_000_000, 1_302_000, 1_307_000, 1_009_000);
        assert_eq!(
            s,
            Sample {
                offset: 300_000,
                delay: 4_000
            }
        );
        // Asymmetric paths: the error is at most half the round trip.
        let s = sample(0, 300_000 + 3_000, 300_000 + 3_000, 4_000);
        assert!((s.offset - 300_000).unsigned_abs() <= s.delay / 2);
    }

    #[test]
    fn estimator_keeps_the_shortest_round_trip_among_fresh_samples() {
        let mut e = Estimator::default();
        let start = Instant::now();
        e.add(
            Sample {
                offset: 900,
                delay: 9_000,
            },
            start,
        );
        e.add(
            Sample {
                offset: 310,
                delay: 200,
            },
            start,
        );
        e.add(
            Sample {
                offset: 500,
                delay: 4_000,
            },
            start,
        );
        assert_eq!(e.estimate(start).unwrap().offset, 310);
        assert_eq!(e.last().unwrap().offset, 500);
        // Stale samples are not used.
        assert_eq!(e.estimate(start + FRESH + Duration::from_secs(1)), None);
        // Only the newest SAMPLES are kept: the good sample eventually leaves.
        for _ in 0..SAMPLES {
            e.add(
                Sample {
                    offset: 700,
                    delay: 5_000,
                },
                start,
            );
        }
        assert_eq!(e.estimate(start).unwrap().offset, 700);
    }

    #[test]
    fn offsets_are_estimated_from_calls_with_injected_clocks() {
        let (ca, a) = node(1, 1000 * S);
        let (cb, b) = node(2, 1000 * S + 300_000); // b is 300 ms ahead
        let s = call((&ca, &a), (&cb, &b), 2, 1_000, 3_000);
        assert_eq!(s.offset, 300_000);
        assert_eq!(s.delay, 2_000);
        let v = a.verdict(&[1, 2, 3], Some(1));
        assert_eq!(v.offsets, vec![(2, 300_000)]);
        assert!(!v.out_of_bounds);
        // b learns the leader's table through the next append (a's own estimates).
        call((&ca, &a), (&cb, &b), 2, 1_000, 0);
        let v = b.verdict(&[1, 2, 3], Some(1));
        assert_eq!(v.offsets, vec![(1, -300_000)]);
    }

    #[test]
    fn slow_answers_prove_nothing() {
        let (_, a) = node(1, 1000 * S);
        // A peer paused for 3 s while our call waited: the sample says +1.5 s, with an error
        // of up to 1.5 s.
        let paused = sample(0, 3 * S, 3 * S, 3 * S);
        assert_eq!(paused.offset, 1_500_000);
        assert!(!a.certainly_beyond(paused));
        a.on_answer(
            Some(2),
            0,
            &AnswerStamp {
                received_at: 3 * S,
                sent_at: 3 * S,
                ..AnswerStamp::default()
            },
            3 * S,
        );
        assert_eq!(a.verdict(&[1, 2, 3], Some(1)).offsets, vec![]);
        // A quick answer 2 s off is certain.
        assert!(a.certainly_beyond(sample(0, 2 * S + 1_000, 2 * S + 1_000, 2_000)));
    }

    #[test]
    fn a_node_off_from_the_majority_is_out_of_bounds_and_the_others_are_not() {
        let bound = 500_000;
        // Relative to node 1: node 2 at +0.1 s, node 3 at +0.9 s.
        let table = [(1, 0), (2, 100_000), (3, 900_000)];
        let voters = [1, 2, 3];
        let v3 = judge(3, &table, &voters, bound);
        assert!(v3.out_of_bounds);
        assert_eq!(v3.beyond, vec![1, 2]);
        assert_eq!(v3.worst(), 900_000);
        let v1 = judge(1, &table, &voters, bound);
        assert!(!v1.out_of_bounds, "{v1:?}");
        assert_eq!(v1.beyond, vec![3]);
        assert!(!judge(2, &table, &voters, bound).out_of_bounds);
        // The leader as the outlier: it judges itself from its followers.
        let table = [(1, 0), (2, -700_000), (3, -650_000)];
        assert!(judge(1, &table, &voters, bound).out_of_bounds);
        assert!(!judge(2, &table, &voters, bound).out_of_bounds);
        // Unknown peers count for neither side; a single node is always within bounds.
        assert!(!judge(3, &[(1, 0), (3, 900_000)], &voters, bound).out_of_bounds);
        assert!(!judge(1, &[(1, 0)], &[1], bound).out_of_bounds);
        assert!(!judge(1, &[], &voters, bound).out_of_bounds);
        // Exactly at the bound is within it.
        assert!(!judge(3, &[(1, 0), (2, 0), (3, 500_000)], &voters, bound).out_of_bounds);
    }

    #[test]
    fn read_time_never_goes_back_across_nodes_and_a_leader_change() {
        // Leader 1 is 400 ms ahead of nodes 2 and 3.
        let (c1, l1) = node(1, 1000 * S + 400_000);
        let (c2, n2) = node(2, 1000 * S);
        let (c3, n3) = node(3, 1000 * S);
        let hw = Timestamp::ZERO;
        // A read round on the leader: begun, carried by the heartbeats to a quorum (node 2),
        // confirmed.
        let t = l1.begin_read(hw, true);
        assert_eq!(t, 1000 * S + 400_000);
        call((&c1, &l1), (&c2, &n2), 2, 100, 0);
        l1.confirm(t);
        let r1 = l1.read_time(hw);
        assert_eq!(r1.as_micros(), t);
        // Node 3 missed the heartbeat. The leader dies; node 3 campaigns and node 2 grants:
        // the vote answer carries node 2's `seen`.
        call((&c3, &n3), (&c2, &n2), 2, 100, 0);
        let t2 = n3.begin_read(hw, true);
        assert!(t2 >= r1.as_micros(), "the new leader's read time went back");
        n3.confirm(t2);
        assert!(n3.read_time(hw) >= r1);
        // And its writes are not stamped before the read time (a slow leader).
        assert!(Clock::now(&n3) >= r1);
        // The state machine's high-water counts too.
        let later = Timestamp::from_micros(2000 * S);
        assert_eq!(n3.read_time(later), later);
        assert!(n3.begin_read(later, true) >= later.as_micros());
    }

    #[test]
    fn a_single_node_reads_at_its_own_clock_and_never_goes_back() {
        let (c, n) = node(1, 1000 * S);
        let t = n.begin_read(Timestamp::ZERO, true);
        n.confirm(t);
        assert_eq!(n.read_time(Timestamp::ZERO).as_micros(), 1000 * S);
        c.set(Timestamp::from_micros(999 * S)); // the clock steps back
        let t = n.begin_read(Timestamp::ZERO, true);
        n.confirm(t);
        assert_eq!(n.read_time(Timestamp::ZERO).as_micros(), 1000 * S);
        c.set(Timestamp::from_micros(1001 * S));
        let t = n.begin_read(Timestamp::ZERO, true);
        n.confirm(t);
        assert_eq!(n.read_time(Timestamp::ZERO).as_micros(), 1001 * S);
        assert!(!n.verdict(&[1], None).out_of_bounds);
    }
}
