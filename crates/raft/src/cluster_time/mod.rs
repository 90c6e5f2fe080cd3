//! Cluster time: the time reads and writes use, and how far each node's clock is from its
//! peers'.
//!
//! A node's own clock decides nothing on its own in a cluster. Two values, both monotone and
//! in memory, travel with every peer-stream call and answer (see [`CallStamp`],
//! [`AnswerStamp`]):
//!
//! - `seen`: the highest time this node has proposed or been told of. A leader raises it to
//!   `max(its clock, seen, applied high-water)` before each read-index round, so the
//!   heartbeats of that round (or the one follower's call that stands for them) carry it to a
//!   quorum; writes are stamped at `max(clock, seen)`
//!   (so a leader whose clock is behind never stamps the past of a time already used).
//! - `confirmed`: the times a read may use. A value enters it only once a quorum holds it in
//!   `seen` and has not voted past the leader that raised it: after the leadership round that
//!   carried it was acknowledged by a quorum, on a leader whose asked follower took it in and
//!   then vouched that it still follows it (see `leader_read`), on a follower that asked for a
//!   read index and then checked that it still follows that leader (see `follower_read`), or
//!   from a peer that had it confirmed. Reads use `max(confirmed, applied high-water)`.
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

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use statemanager_core::{Clock, Timestamp};

use crate::types::NodeId;

mod offset;

pub use offset::{judge, sample, Estimator, Sample, Verdict};
#[cfg(test)]
use offset::{FRESH, SAMPLES};

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

    /// After a quorum holds `t` (the leader, once a quorum acknowledged the round begun with
    /// `t`; a follower, once it has checked that it still follows the leader that answered
    /// `t`, see `follower_read`): reads may use it.
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

    /// Judges this node: from its own estimates, and as a follower also from its leader's
    /// latest table when it is fresh and places this node; out of bounds if either says so.
    /// (A leader that has just taken over may have no estimate of this node yet, or only
    /// samples from before this node's clock was stepped: its table then says nothing true
    /// about this node's clock, and must not clear a node its own estimates find out of
    /// bounds. Refusing on either is the safe side: a node out of bounds only stops serving.)
    pub fn verdict(&self, voters: &[NodeId], leader: Option<NodeId>) -> Verdict {
        let now = Instant::now();
        let o = self.offsets.lock().unwrap_or_else(|p| p.into_inner());
        let from_leader = match (&o.leader_table, leader) {
            (Some((from, table, at)), Some(l))
                if *from == l
                    && l != self.me
                    && now.duration_since(*at) <= TABLE_FRESH
                    && table.iter().any(|(id, _)| *id == self.me) =>
            {
                Some(table.clone())
            }
            _ => None,
        };
        let mut own_table = self.own_table(&o, now);
        own_table.push((self.me, 0));
        let own = judge(self.me, &own_table, voters, self.bound);
        match from_leader {
            Some(table) if !own.out_of_bounds => judge(self.me, &table, voters, self.bound),
            _ => own,
        }
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
mod tests;
