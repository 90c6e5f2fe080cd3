//! Clock offsets: NTP's on-wire computation ([`sample`]), a per-peer [`Estimator`] (NTP's
//! clock filter), and [`judge`], which says whether a node is off from a majority of the
//! voters by more than the bound ([`Verdict`]). Pure: no clock is read here.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::types::NodeId;

/// Samples kept per peer.
pub(super) const SAMPLES: usize = 16;
/// A sample older than this is not used.
pub(super) const FRESH: Duration = Duration::from_secs(10);
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

/// Slack allowed between two samples' error intervals before they are taken to disagree: the
/// clocks' drift over the samples' lifetime ([`FRESH`] at 100 ppm is 1 ms).
pub(super) const CONSISTENCY_SLACK_US: u64 = 2_000;

impl Sample {
    /// Whether the offsets `self` and `other` allow can be the same offset: the true offset
    /// lies within half the round trip of each sample's, so intervals that do not meet (with
    /// [`CONSISTENCY_SLACK_US`] for drift) prove that a clock was stepped in between.
    pub fn consistent_with(&self, other: &Sample) -> bool {
        let gap = self.offset.abs_diff(other.offset);
        gap <= self.delay / 2 + other.delay / 2 + CONSISTENCY_SLACK_US
    }
}

/// Recent samples of one peer; the estimate is the sample with the shortest round trip
/// (its error is at most half that round trip), as NTP's clock filter does.
#[derive(Debug, Default, Clone)]
pub struct Estimator {
    samples: VecDeque<(Sample, Instant)>,
}

impl Estimator {
    /// Adds a sample taken at `at`. Older samples that it proves wrong (see
    /// [`Sample::consistent_with`]: one of the two clocks was stepped since) are dropped, so a
    /// quick sample from before a step can no longer be the estimate.
    pub fn add(&mut self, s: Sample, at: Instant) {
        self.samples.retain(|(old, _)| old.consistent_with(&s));
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
