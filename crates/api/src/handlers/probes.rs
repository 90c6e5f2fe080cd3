//! `GET /`, `/health`, `/ready` and `/status`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use statemanager_proto::{
    ClockStatus, HealthResponse, LeaderRef, PeerStatus, ReadyResponse, StatusResponse,
};

use crate::{ApiState, SharedApiState};

/// The banner text (the Cache Manager's, so existing probes keep matching).
pub const BANNER: &str = "ITRS Group Cache Manager API";

/// `GET /`: a short banner.
pub async fn banner() -> impl IntoResponse {
    format!("{BANNER} (statemanager {})\n", env!("CARGO_PKG_VERSION"))
}

/// `GET /health`: 200 while the process serves.
pub async fn health() -> impl IntoResponse {
    Json(HealthResponse {
        status: "ok".to_string(),
    })
}

/// Why this node is not ready to serve (the `reason` of `GET /ready`; its text is the
/// message): the node's own verdict, or what a follower learnt from its leader.
#[derive(Debug, thiserror::Error)]
pub enum Unready {
    /// The node's own verdict (Raft stopped, clock out of bounds, a leader without an entry
    /// of its term or without a quorum heard recently, …), said with its causes.
    #[error("{}", statemanager_raft::error::with_sources(.0))]
    Node(#[from] statemanager_raft::node::NotReady),
    /// The leader did not answer `/peer/info`.
    #[error("the leader (node {leader}) does not answer: {source}")]
    LeaderSilent {
        /// The leader's node id.
        leader: u64,
        /// The request's failure.
        source: reqwest::Error,
    },
    /// The leader's `/peer/info` answer could not be read.
    #[error("the leader (node {leader}) answered oddly: {source}")]
    LeaderOdd {
        /// The leader's node id.
        leader: u64,
        /// The decoding failure.
        source: reqwest::Error,
    },
    /// The leader has not heard from a quorum recently.
    #[error("the leader (node {leader}) has not heard from a quorum recently")]
    LeaderWithoutQuorum {
        /// The leader's node id.
        leader: u64,
    },
    /// This follower has not yet applied everything the leader had committed.
    #[error("catching up: applied {applied} of the leader's committed {commit}")]
    CatchingUp {
        /// This node's applied index.
        applied: u64,
        /// The leader's commit index.
        commit: u64,
    },
}

/// A follower is ready while its leader heard from a quorum within an election timeout and
/// the follower has applied everything that leader had committed.
async fn follower_readiness(state: &ApiState) -> Result<(), Unready> {
    let Some((leader, addr)) = state.node.remote_leader() else {
        return Ok(()); // we lead: readiness() decided
    };
    let info: serde_json::Value = state
        .node
        .peer_request(reqwest::Method::GET, &addr, "/peer/info")
        .timeout(std::time::Duration::from_millis(500))
        .send()
        .await
        .map_err(|source| Unready::LeaderSilent { leader, source })?
        .json()
        .await
        .map_err(|source| Unready::LeaderOdd { leader, source })?;
    if info["quorum_fresh"].as_bool() != Some(true) {
        return Err(Unready::LeaderWithoutQuorum { leader });
    }
    let commit = info["commit_index"].as_u64().unwrap_or(0);
    let applied = state.node.status().applied_index;
    if applied < commit {
        return Err(Unready::CatchingUp { applied, commit });
    }
    Ok(())
}

/// `Ok` when this node can serve linearizable reads and writes now, else the reason: the
/// verdict of `GET /ready` and of the console's `ready`.
pub async fn check_readiness(state: &ApiState) -> Result<(), Unready> {
    state.node.readiness()?;
    follower_readiness(state).await
}

/// `GET /ready`: 200 when this node can serve linearizable reads and writes now, else 503.
pub async fn ready(State(state): State<SharedApiState>) -> impl IntoResponse {
    match check_readiness(&state).await {
        Ok(()) => (
            StatusCode::OK,
            Json(ReadyResponse {
                ready: true,
                reason: None,
            }),
        ),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(ReadyResponse {
                ready: false,
                reason: Some(reason.to_string()),
            }),
        ),
    }
}

/// `GET /status`: the Cache Manager's fields plus the node's and the store's.
pub async fn status(State(state): State<SharedApiState>) -> impl IntoResponse {
    let s = state.node.status();
    let limits = state.node.limits();
    let cache = state.cache.stats();
    let members = state.node.members();
    let clock = state.node.clock_verdict();
    let time = state.node.time();
    let offset_ms = |id: u64| {
        clock
            .offsets
            .iter()
            .find(|(p, _)| *p == id)
            .map(|(_, o)| *o as f64 / 1000.0)
    };
    // Each member's client address, asked over the peer port (bounded; absent if it is down).
    let mut peers = Vec::new();
    for m in &members {
        let api = if m.id == s.node_id {
            Some(state.node.api_addr().to_string())
        } else {
            match state
                .node
                .peer_request(reqwest::Method::GET, &m.peer_addr, "/peer/info")
                .timeout(std::time::Duration::from_millis(300))
                .send()
                .await
            {
                Ok(r) => r
                    .json::<serde_json::Value>()
                    .await
                    .ok()
                    .and_then(|v| v["api"].as_str().map(str::to_string)),
                Err(_) => None,
            }
        };
        // The shared cache's view of it: up, or down since when (Unix seconds).
        let (cache_state, down_since) =
            match state.shared_cache.as_ref().map(|c| c.peer_state(m.id)) {
                Some(statemanager_cache::PeerState::Down { since }) => {
                    ("down", Some(since.as_micros() / 1_000_000))
                }
                _ => ("up", None),
            };
        peers.push(PeerStatus {
            api_addr: api,
            cache: cache_state.to_string(),
            cache_down_since: down_since,
            // The peer's clock minus this node's, as estimated from peer RPCs (null: unknown).
            clock_offset_ms: offset_ms(m.id),
            id: m.id,
            matched_index: m.matched_index,
            peer_addr: m.peer_addr.clone(),
            state: m.state.to_string(),
        });
    }
    let leader_api = s.leader.and_then(|id| {
        peers
            .iter()
            .find(|p| p.id == id)
            .and_then(|p| p.api_addr.clone())
    });
    let max_cache = state.cache.limits().max_cache_size.max(1);
    let percent = (cache.size as f64 * 1000.0 / max_cache as f64).round() / 10.0;
    if members.len() <= 1 {
        peers.clear();
    }
    Json(StatusResponse {
        applied_index: s.applied_index,
        bytes: s.data_bytes,
        cache_items: cache.items,
        cache_locks: cache.locks,
        cache_percent: percent,
        cache_size: cache.size,
        clock: ClockStatus {
            cluster_time: time.floors().1 as f64 / 1_000_000.0,
            max_offset_ms: time.bound() / 1000,
            out_of_bounds: time.out_of_bounds(),
            reason: time.refusal(),
        },
        commit_index: state.node.commit_index().await,
        items: s.items,
        last_log_index: s.last_log_index,
        leader: s.leader.map(|id| LeaderRef {
            api: leader_api,
            id,
        }),
        max_item_size: cache.largest_item,
        max_items: limits.max_items,
        max_persistent_data_item_size: limits.max_item_bytes,
        node_id: s.node_id,
        oldest_expiry: s.next_expiry.map(|t| t.as_secs_f64()),
        peers,
        run_ref: state.run_ref.clone(),
        role: s.role.to_string(),
        term: s.term,
        uptime: state.started.elapsed().as_secs(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    })
}

/// `GET /metrics`: Prometheus text format. Gauges and cache counters are read from the node
/// and the cache at scrape time; request, fsync, batch and conflict metrics are recorded as
/// they happen.
pub async fn metrics(State(state): State<SharedApiState>) -> axum::response::Response {
    let Some(render) = state.render_metrics.clone() else {
        return crate::error::ApiError::UnknownEndpoint("/metrics".into()).into_response();
    };
    let s = state.node.status();
    metrics::gauge!("statemanager_items").set(s.items as f64);
    metrics::gauge!("statemanager_item_bytes").set(s.data_bytes as f64);
    metrics::counter!("statemanager_expired_items_total").absolute(s.expired_total);
    metrics::gauge!("statemanager_raft_term").set(s.term as f64);
    metrics::gauge!("statemanager_raft_last_log_index").set(s.last_log_index as f64);
    metrics::gauge!("statemanager_raft_applied_index").set(s.applied_index as f64);
    if let Some(commit) = state.node.commit_index().await {
        metrics::gauge!("statemanager_raft_commit_index").set(commit as f64);
    }
    metrics::gauge!("statemanager_raft_is_leader").set(if s.role == "leader" { 1.0 } else { 0.0 });
    metrics::gauge!("statemanager_ready").set(if state.node.readiness().is_ok() {
        1.0
    } else {
        0.0
    });
    let c = state.cache.stats();
    metrics::gauge!("statemanager_cache_items").set(c.items as f64);
    metrics::gauge!("statemanager_cache_bytes").set(c.size as f64);
    metrics::gauge!("statemanager_cache_locks").set(c.locks as f64);
    metrics::counter!("statemanager_cache_hits_total").absolute(c.hits);
    metrics::counter!("statemanager_cache_misses_total").absolute(c.misses);
    metrics::counter!("statemanager_cache_locks_granted_total").absolute(c.locks_granted);
    metrics::counter!("statemanager_cache_waits_total").absolute(c.waits);
    metrics::counter!("statemanager_cache_wakeups_total").absolute(c.wakeups);
    metrics::counter!("statemanager_cache_wait_timeouts_total").absolute(c.timeouts);
    metrics::counter!("statemanager_cache_evictions_total").absolute(c.evictions);
    metrics::counter!("statemanager_cache_expirations_total").absolute(c.expirations);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::Unready;
    use statemanager_raft::node::NotReady;

    #[test]
    fn not_ready_reasons_read_as_before() {
        assert_eq!(
            Unready::Node(NotReady::Clock("the clock is 3 s ahead".into())).to_string(),
            "the clock is 3 s ahead"
        );
        assert_eq!(
            Unready::LeaderWithoutQuorum { leader: 2 }.to_string(),
            "the leader (node 2) has not heard from a quorum recently"
        );
        assert_eq!(
            Unready::CatchingUp {
                applied: 5,
                commit: 9
            }
            .to_string(),
            "catching up: applied 5 of the leader's committed 9"
        );
    }
}
