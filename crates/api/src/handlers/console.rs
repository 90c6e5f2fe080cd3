//! The operator's console: `GET /ui` (one page, its script and style sheet, embedded in the
//! binary) and the JSON it reads that is not elsewhere: `GET /status/cluster` (every
//! member's state, asked over the peer port) and, on the peer port, `GET /forward/node` (this
//! node's part of it).
//!
//! The page holds no data: it reads `/status/cluster` and `/status/traffic` (open, like
//! `/status` and `/metrics`),
//! and, only with the admin credentials (`AdminAccess`, sent by the page as
//! `Authorization: Bearer`, never as a cookie), `/admin/namespaces`, `/admin/list`,
//! `/admin/fetch`, `/admin/delete` and `/admin/backup`. Every answer under `/ui` carries a
//! strict Content-Security-Policy: scripts and styles only from this origin, no inline
//! script or style, no framing, requests only to this origin.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use statemanager_proto::{ClusterStatus, LeaderRef, NodeCacheSummary, NodeSummary, TrafficSeries};

use crate::{ApiState, SharedApiState};

/// The console's page.
pub const INDEX_HTML: &str = include_str!("../console/index.html");
/// The console's script.
pub const APP_JS: &str = include_str!("../console/app.js");
/// The console's style sheet.
pub const APP_CSS: &str = include_str!("../console/app.css");

/// The policy of every `/ui` answer: nothing but this origin's script, style and requests;
/// no inline script or style (`'unsafe-inline'` absent), no `eval`, no plugins, no framing,
/// no form posts anywhere. `data:` images only for the empty favicon.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// How long `/status/cluster` waits for one member's answer: a member that does not answer
/// within it is reported down (the console polls every second, so a dead member shows as
/// down within about 2 s).
pub const MEMBER_TIMEOUT: Duration = Duration::from_millis(1000);

/// Why `/status/cluster` shows a member as down (its `error`; the text is the message).
#[derive(Debug, thiserror::Error)]
enum MemberError {
    /// It answered, but not with a summary that parses as JSON.
    #[error("unreadable answer: {0}")]
    Unreadable(#[source] reqwest::Error),
    /// It answered with an error status.
    #[error("answered {0}")]
    Status(reqwest::StatusCode),
    /// It did not answer within [`MEMBER_TIMEOUT`].
    #[error("no answer within 1 s")]
    Timeout(#[source] reqwest::Error),
    /// The connection was refused or the address is unreachable.
    #[error("connection refused or unreachable")]
    Unreachable(#[source] reqwest::Error),
    /// Any other failure of the request.
    #[error("{0}")]
    Request(#[source] reqwest::Error),
    /// The task asking it ended without an answer.
    #[error("the request task failed")]
    TaskFailed,
    /// This node's own summary could not be turned into JSON.
    #[error("this node's summary could not be encoded: {0}")]
    Encode(#[source] serde_json::Error),
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // The assets change with the binary; a restart after an upgrade must not serve a stale
    // script from the browser's cache.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /ui`: the console page.
pub async fn page() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// `GET /ui/app.js`: the console's script.
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// `GET /ui/app.css`: the console's style sheet.
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// This node's part of `/status/cluster`: its Raft progress, readiness, disk, uptime,
/// version and cache.
pub async fn node_summary(state: &ApiState) -> NodeSummary {
    let s = state.node.status();
    let (ready, reason) = match crate::check_readiness(state).await {
        Ok(()) => (true, None),
        Err(reason) => (false, Some(reason.to_string())),
    };
    let (disk_free, disk_reserve) = state.node.disk_space();
    let cache = state.cache.stats();
    let max_cache = state.cache.limits().max_cache_size;
    let percent = (cache.size as f64 * 1000.0 / max_cache.max(1) as f64).round() / 10.0;
    NodeSummary {
        api_addr: state.node.api_addr().to_string(),
        applied_index: s.applied_index,
        bytes: s.data_bytes,
        cache: NodeCacheSummary {
            hits: cache.hits,
            items: cache.items,
            locks: cache.locks,
            max_size: max_cache,
            misses: cache.misses,
            percent,
            size: cache.size,
            waiting: cache.waiting,
        },
        commit_index: state.node.commit_index().await,
        disk_free,
        disk_reserve,
        items: s.items,
        last_log_index: s.last_log_index,
        leader: s.leader,
        node_id: s.node_id,
        ready,
        reason,
        role: s.role.to_string(),
        term: s.term,
        uptime: state.started.elapsed().as_secs(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// `GET /status/traffic`: this node's request rate and p50/p99 latency per endpoint over the
/// last minutes (see [`crate::traffic`]).
pub async fn traffic(State(state): State<SharedApiState>) -> Json<TrafficSeries> {
    Json(state.traffic.answer())
}

/// `GET /forward/node` on the peer port: [`node_summary`].
pub async fn node(State(state): State<SharedApiState>) -> Json<NodeSummary> {
    Json(node_summary(&state).await)
}

/// `GET /status/cluster`: every member of the cluster as this node's membership lists it,
/// each with its own summary (asked over the peer port, all at once, each bounded by
/// [`MEMBER_TIMEOUT`]) or `"up": false` and the error when it did not answer. `lag` is how
/// far a member's applied index is behind the highest commit index any member reported.
/// `admin` says what the admin endpoints need on this port (`open`, `secret`, `closed`), so
/// the console asks for credentials only when they are needed.
pub async fn cluster(State(state): State<SharedApiState>) -> Json<ClusterStatus> {
    let s = state.node.status();
    let members = state.node.members();
    let mut asks = tokio::task::JoinSet::new();
    for (i, m) in members.iter().enumerate() {
        if m.id == s.node_id {
            continue;
        }
        let request = state
            .node
            .peer_request(reqwest::Method::GET, &m.peer_addr, "/forward/node")
            .timeout(MEMBER_TIMEOUT);
        asks.spawn(async move {
            let answer = match request.send().await {
                Ok(r) if r.status().is_success() => {
                    r.json::<Value>().await.map_err(MemberError::Unreadable)
                }
                Ok(r) => Err(MemberError::Status(r.status())),
                Err(e) if e.is_timeout() => Err(MemberError::Timeout(e)),
                Err(e) if e.is_connect() => Err(MemberError::Unreachable(e)),
                Err(e) => Err(MemberError::Request(e)),
            };
            (i, answer)
        });
    }
    // This node's own summary meanwhile (a follower's readiness asks its leader).
    let me = serde_json::to_value(node_summary(&state).await).map_err(MemberError::Encode);
    let mut answers: Vec<Option<Result<Value, MemberError>>> = std::iter::repeat_with(|| None)
        .take(members.len())
        .collect();
    while let Some(done) = asks.join_next().await {
        if let Ok((i, answer)) = done {
            answers[i] = Some(answer);
        }
    }
    if let Some(slot) = members
        .iter()
        .position(|m| m.id == s.node_id)
        .and_then(|i| answers.get_mut(i))
    {
        *slot = Some(me);
    }
    let mut rows: Vec<Value> = members
        .iter()
        .zip(answers)
        .map(|(m, answer)| {
            let answer = answer.unwrap_or(Err(MemberError::TaskFailed));
            // The member's own fields; its summary (as it sent it) is merged in below. A
            // `Value`, not a struct: the merged object's keys are sorted, as before.
            let mut row = json!({
                "id": m.id,
                "peer_addr": m.peer_addr,
                "state": m.state,
                "matched_index": m.matched_index,
                "up": answer.is_ok(),
                "error": answer.as_ref().err().map(MemberError::to_string),
            });
            if let (Ok(Value::Object(summary)), Value::Object(out)) = (answer, &mut row) {
                for (k, v) in summary {
                    out.entry(k).or_insert(v);
                }
            }
            row
        })
        .collect();
    let commit = rows.iter().filter_map(|r| r["commit_index"].as_u64()).max();
    for row in &mut rows {
        let lag = match (commit, row["applied_index"].as_u64()) {
            (Some(c), Some(a)) => Value::from(c.saturating_sub(a)),
            _ => Value::Null,
        };
        row["lag"] = lag;
    }
    let leader_api = s.leader.and_then(|id| {
        rows.iter()
            .find(|r| r["id"].as_u64() == Some(id))
            .and_then(|r| r["api_addr"].as_str().map(str::to_string))
    });
    let admin = match state.admin {
        crate::AdminAccess::Open => "open",
        crate::AdminAccess::Secret(_) => "secret",
        crate::AdminAccess::Closed(_) => "closed",
    };
    Json(ClusterStatus {
        admin: admin.to_string(),
        leader: s.leader.map(|id| LeaderRef {
            api: leader_api,
            id,
        }),
        members: rows,
        node_id: s.node_id,
        term: s.term,
    })
}

#[cfg(test)]
mod tests {
    use super::MemberError;

    #[test]
    fn member_errors_read_as_before() {
        assert_eq!(
            MemberError::Status(reqwest::StatusCode::SERVICE_UNAVAILABLE).to_string(),
            "answered 503 Service Unavailable"
        );
        assert_eq!(
            MemberError::TaskFailed.to_string(),
            "the request task failed"
        );
    }
}
