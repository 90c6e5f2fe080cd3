//! Tests of cluster time: NTP samples, the estimator, the verdict, and cluster time itself.

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

/// A sample with this offset and round trip (µs).
fn sample_of(offset: i64, delay: u64) -> Sample {
    Sample { offset, delay }
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
    e.add(sample_of(900, 9_000), start);
    e.add(sample_of(310, 200), start);
    e.add(sample_of(500, 4_000), start);
    assert_eq!(e.estimate(start).unwrap().offset, 310);
    assert_eq!(e.last().unwrap().offset, 500);
    // Stale samples are not used.
    assert_eq!(e.estimate(start + FRESH + Duration::from_secs(1)), None);
    // Only the newest SAMPLES are kept: the good sample eventually leaves.
    for _ in 0..SAMPLES {
        e.add(sample_of(700, 5_000), start);
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
fn a_leaders_table_without_this_node_leaves_the_verdict_to_its_own_estimates() {
    // Node 2 is 3 s ahead of nodes 1 and 3, and has measured both itself.
    let (c1, n1) = node(1, 1000 * S);
    let (c2, n2) = node(2, 1003 * S);
    let (c3, n3) = node(3, 1000 * S);
    call((&c2, &n2), (&c1, &n1), 1, 1_000, 0);
    // Keep the three clocks together: node 3's clock moves with the others.
    c3.set(Timestamp::from_micros(c1.now().as_micros()));
    call((&c2, &n2), (&c3, &n3), 3, 1_000, 0);
    c1.set(Timestamp::from_micros(c3.now().as_micros()));
    assert!(n2.verdict(&[1, 2, 3], Some(1)).out_of_bounds);
    // Node 1 takes over as leader: its first append carries a table with no entry for node 2
    // (it has not measured node 2 yet). That says nothing; node 2 stays out.
    call((&c1, &n1), (&c2, &n2), 2, 1_000, 0);
    let v = n2.verdict(&[1, 2, 3], Some(1));
    assert!(v.out_of_bounds, "{v:?}");
    // Once the leader has measured node 3 as well, its next append's table places node 2 (3 s
    // ahead of both): judged from it, still out.
    c3.set(Timestamp::from_micros(c1.now().as_micros()));
    call((&c1, &n1), (&c3, &n3), 3, 1_000, 0);
    call((&c1, &n1), (&c2, &n2), 2, 1_000, 0);
    let v = n2.verdict(&[1, 2, 3], Some(1));
    assert!(v.out_of_bounds, "{v:?}");
    let mut offsets = v.offsets;
    offsets.sort();
    assert_eq!(offsets, vec![(1, -3 * S as i64), (3, -3 * S as i64)]);
}

/// A clock stepped after a quick sample: the next sample, whose error interval does not meet
/// the old one's, drops it, even though the old one had the shorter round trip.
#[test]
fn a_sample_that_proves_a_step_drops_the_samples_before_it() {
    let mut e = Estimator::default();
    let at = Instant::now();
    e.add(sample_of(0, 1_000), at);
    e.add(sample_of(-3 * S as i64, 5_000), at);
    assert_eq!(e.estimate(at).map(|s| s.offset), Some(-3 * S as i64));
    // Samples that agree within their errors are all kept; the quickest is the estimate.
    e.add(sample_of(-3 * S as i64 + 2_000, 1_000), at);
    assert_eq!(
        e.estimate(at).map(|s| s.offset),
        Some(-3 * S as i64 + 2_000)
    );
    let (a, b) = (sample_of(0, 1_000), sample_of(3_000, 1_000));
    assert!(a.consistent_with(&b) && b.consistent_with(&a));
    let c = sample_of(3_001, 1_000);
    assert!(!a.consistent_with(&c));
}

/// A node's clock is stepped 3 s ahead after the leader last measured it. The leader's next
/// append still carries its old table, which places the node in bounds; the node's own
/// samples, taken after the step, find it out, and that decides.
#[test]
fn a_leaders_stale_table_does_not_clear_a_node_its_own_estimates_find_out() {
    let (c1, n1) = node(1, 1000 * S);
    let (c2, n2) = node(2, 1000 * S);
    let (c3, n3) = node(3, 1000 * S);
    let together = |c: &ManualClock| c.set(Timestamp::from_micros(c1.now().as_micros()));
    call((&c1, &n1), (&c2, &n2), 2, 1_000, 0);
    together(&c3);
    call((&c1, &n1), (&c3, &n3), 3, 1_000, 0);
    together(&c2);
    // Node 2's clock jumps 3 s ahead; it measures both peers itself.
    c2.set(Timestamp::from_micros(c1.now().as_micros() + 3 * S));
    call((&c2, &n2), (&c1, &n1), 1, 1_000, 0);
    together(&c3);
    call((&c2, &n2), (&c3, &n3), 3, 1_000, 0);
    c1.set(Timestamp::from_micros(c3.now().as_micros()));
    // The leader's append carries the table from before the step: node 2 at +0.
    let stamp = n1.call_stamp();
    assert!(stamp.offsets.contains(&(2, 0)), "{stamp:?}");
    call((&c1, &n1), (&c2, &n2), 2, 1_000, 0);
    let v = n2.verdict(&[1, 2, 3], Some(1));
    assert!(v.out_of_bounds, "{v:?}");
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
