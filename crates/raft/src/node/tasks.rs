//! The node's background loops: counting leader changes, taking snapshots, purging expired
//! items (leader only), and watching this node's clock against its peers'.

use openraft::async_runtime::WatchReceiver;
use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use statemanager_core::{Batch, Clock, Limits};
use statemanager_storage::LogEngine;

use super::{Inner, Node};
use crate::state_machine::SharedState;
use crate::types::NodeId;
use crate::writer;

/// Counts changes of the known leader (`statemanager_raft_leader_changes_total`).
pub(super) async fn count_leader_changes(raft: crate::types::Raft) {
    let changes = metrics::counter!("statemanager_raft_leader_changes_total");
    changes.increment(0); // present from the start, even before any change
                          // Server metrics (vote, role, leader, membership) change only when those do, not with
                          // every log append as the full metrics do.
    let mut watch = raft.server_metrics();
    let (mut leader, mut state) = {
        let m = watch.borrow_watched();
        (m.current_leader, m.state)
    };
    while watch.changed().await.is_ok() {
        let (now, now_state, term) = {
            let m = watch.borrow_watched();
            (m.current_leader, m.state, m.vote.leader_id().term)
        };
        if now != leader {
            changes.increment(1);
            match now {
                Some(id) => tracing::info!(leader = id, term, "leader known"),
                None => tracing::info!(term, "no leader known"),
            }
            leader = now;
        }
        if now_state != state {
            if now_state == ServerState::Candidate {
                tracing::info!(term, "election: this node is a candidate");
            }
            state = now_state;
        }
    }
}

/// Triggers a snapshot once `max_entries` entries were applied since the last one, or once
/// the log since the last one holds more than `max(min_bytes, state bytes)`: snapshot cost
/// then stays proportional to the log it lets go (write amplification ≤ 2), instead of
/// rewriting a large state every few thousand small entries.
pub(super) async fn snapshot_loop(
    raft: crate::types::Raft,
    engine: LogEngine,
    shared: Arc<SharedState>,
    max_entries: u64,
    min_bytes: u64,
) {
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let m = raft.metrics().borrow_watched().clone();
        let applied = m.last_applied.map_or(0, |l| l.index);
        let snapshot = m.snapshot.map_or(0, |l| l.index);
        if applied <= snapshot {
            continue;
        }
        let state_bytes = shared.read().state.stats().data_bytes;
        let due = applied - snapshot >= max_entries
            || engine.bytes_after(snapshot) >= min_bytes.max(state_bytes);
        if !due {
            continue;
        }
        if raft.trigger().snapshot().await.is_err() {
            return; // Raft has stopped.
        }
        // Wait (bounded) for it to land, so it is not asked for twice.
        let mut metrics = raft.metrics();
        let _ = tokio::time::timeout(Duration::from_secs(120), async {
            loop {
                if metrics.borrow_watched().snapshot.map_or(0, |l| l.index) >= applied {
                    return;
                }
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
    }
}

/// While leader, proposes an empty batch whenever an item has expired: applying it purges
/// everything expired by the batch's time (cost proportional to what expired), on every
/// replica alike.
pub(super) async fn purge_loop(
    raft: crate::types::Raft,
    shared: Arc<SharedState>,
    clock: Arc<dyn Clock>,
    limits: Limits,
    interval: Duration,
    commit_timeout: Duration,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let is_leader = raft.metrics().borrow_watched().state == ServerState::Leader;
        let now = clock.now();
        let due = shared
            .read()
            .state
            .next_expiry()
            .is_some_and(|at| at <= now);
        if !(is_leader && due) {
            continue;
        }
        let batch = Batch {
            now,
            limits,
            ops: vec![],
        };
        if let Err(e) = writer::propose(&raft, batch, commit_timeout).await {
            tracing::debug!(error = %e, "purge proposal failed; will retry");
        }
    }
}

/// Watches this node's clock against its peers' (every 250 ms): exports the offsets, warns
/// above half of `max_clock_offset`, and while the node is off from the majority by more than
/// that, keeps it from leading (no elections, leadership handed over) and from serving (see
/// `Node::check_clock`), saying so in the log once until it is back within bounds.
pub(super) async fn clock_watch(node: std::sync::Weak<Inner>) {
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let out_gauge = metrics::gauge!("statemanager_clock_out_of_bounds");
    out_gauge.set(0.0);
    let mut warned = false;
    let mut out = false;
    let mut last_hand_over: Option<std::time::Instant> = None;
    loop {
        ticker.tick().await;
        let Some(inner) = node.upgrade() else { return };
        let node = Node { inner };
        let time = &node.inner.time;
        let bound = time.bound();
        metrics::gauge!("statemanager_clock_max_offset_seconds").set(bound as f64 / 1e6);
        let (voters, leader, leading) = {
            let metrics = node.inner.raft.server_metrics();
            let m = metrics.borrow_watched();
            let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
            (voters, m.current_leader, m.state == ServerState::Leader)
        };
        let verdict = time.verdict(&voters, leader);
        for (peer, offset) in &verdict.offsets {
            metrics::gauge!("statemanager_clock_offset_seconds", "peer" => peer.to_string())
                .set(*offset as f64 / 1e6);
        }
        let worst = verdict.worst();
        if worst > bound / 2 && !warned {
            warned = true;
            tracing::warn!(
                offsets_ms = ?verdict.offsets.iter().map(|(p, o)| (*p, o / 1000)).collect::<Vec<_>>(),
                max_clock_offset_ms = bound / 1000,
                "clock offset to a peer is over half of max_clock_offset; check NTP on these nodes (logged once until back under)"
            );
        } else if worst <= bound / 2 && warned {
            warned = false;
            tracing::info!(
                worst_ms = worst / 1000,
                "clock offsets to every peer are back under half of max_clock_offset"
            );
        }
        if verdict.out_of_bounds != out {
            out = verdict.out_of_bounds;
            if out {
                let reason = out_of_bounds_reason(bound, &verdict);
                tracing::error!("{reason}");
                time.set_out_of_bounds(Some(reason));
            } else {
                tracing::info!(
                    "this node's clock is back within max_clock_offset of the majority: it serves and may lead again"
                );
                time.set_out_of_bounds(None);
            }
            out_gauge.set(if out { 1.0 } else { 0.0 });
            node.inner.takeover.suppress(out);
        } else if out {
            // Keep the reason's figures current.
            time.set_out_of_bounds(Some(out_of_bounds_reason(bound, &verdict)));
        }
        if out && leading && last_hand_over.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            last_hand_over = Some(std::time::Instant::now());
            match node.hand_over_leadership().await {
                Some(to) => tracing::warn!(to, "clock out of bounds: handed leadership over"),
                None => tracing::warn!("clock out of bounds: no peer took over leadership yet"),
            }
        }
    }
}

/// What a node whose clock is out of bounds says in its log, `/ready` and refusals.
fn out_of_bounds_reason(bound: u64, verdict: &crate::cluster_time::Verdict) -> String {
    format!(
        "this node's clock is off by more than max_clock_offset ({} ms) from the majority of \
         the cluster (beyond it from nodes {:?}; peer offsets in ms: {:?}); it does not lead \
         or serve reads and writes until its clock is corrected",
        bound / 1000,
        verdict.beyond,
        verdict
            .offsets
            .iter()
            .map(|(p, o)| (*p, o / 1000))
            .collect::<Vec<_>>(),
    )
}
