//! Forwarding to the leader.
//!
//! Any node accepts `/store_data` and `/fetch_data`. A follower sends the request body, as it
//! came, over the peer connection to the leader's `/forward/...` route and returns the
//! leader's answer unchanged (status and body), so plugnpy on every node works as on one
//! node. A forwarded request is never forwarded again: a node that is not the leader when it
//! receives one answers 503 `unavailable` with the leader it knows.
//!
//! **One time budget per request.** A client hears within `commit_timeout_ms` plus
//! [`FORWARD_HOP`] of its request, however the time was spent: what this node tried first
//! (a follower's read asks the leader for a read index, which may itself time out), the wait
//! for a leader to be known, and the forwarded request get one budget between them, not one
//! each. A forwarded read the leader did not answer in time is `no_quorum` (nothing was
//! done); a forwarded write is `commit_timeout` (the leader may still apply it).

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use statemanager_raft::{NodeError, Reason};

use crate::error::ApiError;
use crate::ApiState;

/// How long a follower waits for a leader to be known (during an election) before it says
/// `no_quorum`, at most.
const WAIT_FOR_LEADER: Duration = Duration::from_millis(1000);
/// What a request's budget allows on top of `commit_timeout_ms` for the hop to the leader
/// and back: with the default 1.5 s, a client hears within 1.9 s.
pub const FORWARD_HOP: Duration = Duration::from_millis(400);

/// Whether a request changes state, which decides what a leader's silence means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// A read: a leader that did not answer in time did nothing (`no_quorum`).
    Read,
    /// A write: a leader that did not answer in time may still apply it (`commit_timeout`).
    Write,
}

/// A request a follower may forward: the path on the leader (under `/forward`), what it
/// does, and when this node began to handle it (its time budget starts there).
#[derive(Debug, Clone, Copy)]
pub struct Forwardable {
    /// The client's path, e.g. `/fetch_data`.
    pub path: &'static str,
    /// Read or write.
    pub effect: Effect,
    /// When the handler began.
    pub began: Instant,
}

impl Forwardable {
    /// A read at `path`, begun now.
    pub fn read(path: &'static str) -> Forwardable {
        Forwardable {
            path,
            effect: Effect::Read,
            began: Instant::now(),
        }
    }

    /// A write at `path`, begun now.
    pub fn write(path: &'static str) -> Forwardable {
        Forwardable {
            path,
            effect: Effect::Write,
            began: Instant::now(),
        }
    }
}

/// The answer to a request this node handled, or the leader's: when `result` says this node
/// is not the leader (it did nothing) and forwarding is on, the same `body` goes to the
/// leader's `/forward{path}` and its answer is returned unchanged; any other error is this
/// node's answer; a value is answered by `answer`.
pub async fn answer_or_forward<T>(
    state: &ApiState,
    request: Forwardable,
    body: Bytes,
    result: Result<T, NodeError>,
    answer: impl FnOnce(T) -> Result<Response, ApiError>,
) -> Result<Response, ApiError> {
    match result {
        Ok(value) => answer(value),
        Err(NodeError::NotLeader { .. }) if state.forwarding => {
            to_leader(state, request, body).await
        }
        Err(e) => Err(e.into()),
    }
}

/// Sends `body` to the leader's `/forward{path}` and relays its answer, within what is left
/// of the request's budget (see the module documentation).
pub async fn to_leader(
    state: &ApiState,
    request: Forwardable,
    body: Bytes,
) -> Result<Response, ApiError> {
    let node = &state.node;
    let budget = node.commit_timeout() + FORWARD_HOP;
    let deadline = request.began + budget;
    let left = || deadline.saturating_duration_since(Instant::now());
    let mut target = node.remote_leader();
    if target.is_none() && node.wait_for_leader(WAIT_FOR_LEADER.min(left())).await {
        target = node.remote_leader();
    }
    let Some((leader, addr)) = target else {
        return Err(NodeError::NoQuorum(
            "no leader is known: an election is in progress or a quorum is unreachable".into(),
        )
        .into());
    };
    let timeout = left();
    if timeout.is_zero() {
        return Err(NodeError::NoQuorum(
            format!(
                "no time left of the request's {} ms to ask the leader (node {leader}); \
                 nothing was done",
                budget.as_millis()
            )
            .into(),
        )
        .into());
    }
    let answer = node
        .peer_request(
            reqwest::Method::POST,
            &addr,
            &format!("/forward{}", request.path),
        )
        .timeout(timeout)
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
                silent_leader(request.effect, leader, budget)
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

/// The error for a request sent to the leader that did not answer within the request's
/// `budget`: a read did nothing; a write may still be applied.
fn silent_leader(effect: Effect, leader: u64, budget: Duration) -> ApiError {
    let ms = budget.as_millis() as u64;
    ApiError::Node(match effect {
        Effect::Read => NodeError::NoQuorum(
            format!(
                "no answer from the leader (node {leader}) within {ms} ms \
                 (commit_timeout_ms + {} ms); the read did nothing",
                FORWARD_HOP.as_millis()
            )
            .into(),
        ),
        Effect::Write => NodeError::CommitTimeout(ms),
    })
}
