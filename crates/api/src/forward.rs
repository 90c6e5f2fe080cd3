//! Forwarding to the leader.
//!
//! Any node accepts `/store_data` and `/fetch_data`. A follower sends the request body, as it
//! came, over the peer connection to the leader's `/forward/...` route and returns the
//! leader's answer unchanged (status and body), so plugnpy on every node works as on one
//! node. A forwarded request is never forwarded again: a node that is not the leader when it
//! receives one answers 503 `unavailable` with the leader it knows.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use statemanager_raft::{NodeError, Reason};

use crate::error::ApiError;
use crate::ApiState;

/// How long a follower waits for a leader to be known (during an election) before it says
/// `no_quorum`.
const WAIT_FOR_LEADER: Duration = Duration::from_millis(1000);
/// How long the leader may take to answer a forwarded request: its commit timeout (1.5 s by
/// default) plus the hop, so a client hears within 2 s.
const FORWARD_TIMEOUT: Duration = Duration::from_millis(1900);

/// The answer to a request this node handled, or the leader's: when `result` says this node
/// is not the leader (it did nothing) and forwarding is on, the same `body` goes to the
/// leader's `/forward{path}` and its answer is returned unchanged; any other error is this
/// node's answer; a value is answered by `answer`.
pub async fn answer_or_forward<T>(
    state: &ApiState,
    path: &str,
    body: Bytes,
    result: Result<T, NodeError>,
    answer: impl FnOnce(T) -> Result<Response, ApiError>,
) -> Result<Response, ApiError> {
    match result {
        Ok(value) => answer(value),
        Err(NodeError::NotLeader { .. }) if state.forwarding => to_leader(state, path, body).await,
        Err(e) => Err(e.into()),
    }
}

/// Sends `body` to the leader's `/forward{path}` and relays its answer.
pub async fn to_leader(state: &ApiState, path: &str, body: Bytes) -> Result<Response, ApiError> {
    let node = &state.node;
    let mut target = node.remote_leader();
    if target.is_none() && node.wait_for_leader(WAIT_FOR_LEADER).await {
        target = node.remote_leader();
    }
    let Some((leader, addr)) = target else {
        return Err(NodeError::NoQuorum(
            "no leader is known: an election is in progress or a quorum is unreachable".into(),
        )
        .into());
    };
    let answer = node
        .peer_request(reqwest::Method::POST, &addr, &format!("/forward{path}"))
        .timeout(FORWARD_TIMEOUT)
        .body(body)
        .send()
        .await
        .map_err(|e| {
            if e.is_connect() {
                // Never sent: nothing happened.
                ApiError::Node(NodeError::NoQuorum(Reason::caused(
                    format!("cannot reach the leader (node {leader})"),
                    e,
                )))
            } else {
                // Sent, no answer in time: the leader may still apply it.
                ApiError::Node(NodeError::CommitTimeout(FORWARD_TIMEOUT.as_millis() as u64))
            }
        })?;
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    // The leader handled the request: a truncated answer leaves the outcome open.
    let bytes = answer.bytes().await.map_err(|e| {
        ApiError::Node(NodeError::OutcomeUnknown(Reason::caused(
            format!("the leader (node {leader}) did not finish its answer"),
            e,
        )))
    })?;
    Ok((status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response())
}
