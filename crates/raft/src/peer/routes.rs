//! The HTTP peer router: Raft RPCs from other nodes, node information and membership admin
//! on the peer port (the answers themselves are [`super::answer`]).
//!
//! Routes (all on `peer_listen`, never on the client port):
//! - `POST /raft/append`, `/raft/vote`, `/raft/snapshot`: postcard bodies (see `network`);
//! - `GET /peer/info`: this node's id, client address and role, as JSON;
//! - `GET /admin/cluster`, `POST /admin/add`, `POST /admin/remove`: membership (on the
//!   leader; other nodes answer 421 with the leader's peer address).
//!
//! The server crate adds the forwarding routes (`/forward/...`) to this router. Nodes send
//! appends, votes, hand-overs and read-index requests over the peer stream
//! ([`crate::peer::stream`]), which answers them with the same functions; these routes serve
//! peers that do not speak it.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::MembershipError;
use crate::peer::answer::{answer_append, answer_read_index, answer_vote};
use crate::peer::error::wire_reason;
use crate::peer::host::PeerHost;
use crate::peer::snapshot_transfer;
use crate::peer::wire::{CLUSTER_HEADER, MAX_PEER_BODY, RPC_VERSION, RPC_VERSION_HEADER};
use crate::types::{decode, encode, NodeId, TypeConfig};

fn refuse(status: StatusCode, message: String) -> Response {
    (status, message).into_response()
}

/// Checks the RPC version and the sender's cluster id, and decodes the body; `Err` is the
/// status and message to refuse with.
fn parse<T: DeserializeOwned, H: PeerHost>(
    node: &H,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, (StatusCode, String)> {
    admit(node, headers)?;
    decode(body).map_err(|e| (StatusCode::BAD_REQUEST, format!("undecodable RPC: {e}")))
}

/// Checks the RPC version and the sender's cluster id.
fn admit<H: PeerHost>(node: &H, headers: &HeaderMap) -> Result<(), (StatusCode, String)> {
    match headers
        .get(RPC_VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        Some(RPC_VERSION) => {}
        other => {
            return Err((
                StatusCode::BAD_REQUEST,
                format!("peer RPC version {other:?} is not {RPC_VERSION}"),
            ))
        }
    }
    let theirs = headers.get(CLUSTER_HEADER).and_then(|v| v.to_str().ok());
    if let Err(reason) = node.admit_peer(theirs) {
        tracing::warn!("refused a peer RPC: {reason}");
        return Err((StatusCode::FORBIDDEN, reason.to_string()));
    }
    Ok(())
}

fn reply<T: Serialize>(value: &T) -> Response {
    match encode(value) {
        Ok(bytes) => bytes.into_response(),
        Err(e) => refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode: {e}"),
        ),
    }
}

async fn append<H: PeerHost>(State(node): State<H>, headers: HeaderMap, body: Bytes) -> Response {
    let rpc: AppendEntriesRequest<TypeConfig> = match parse(&node, &headers, &body) {
        Ok(rpc) => rpc,
        Err((code, m)) => return refuse(code, m),
    };
    reply(&answer_append(&node, rpc).await)
}

async fn vote<H: PeerHost>(State(node): State<H>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err((code, m)) = admit(&node, &headers) {
        return refuse(code, m);
    }
    let rpc: VoteRequest<TypeConfig> = match crate::peer::wire::decode_vote_request(&body) {
        Ok(rpc) => rpc,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("undecodable RPC: {e}")),
    };
    reply(&answer_vote(&node, rpc).await)
}

/// A whole snapshot from the leader: `[u32 LE length][postcard (vote, meta)][file]` (see
/// [`snapshot_transfer`]). The file is written next to the snapshots as it arrives, installed
/// (the state machine verifies it completely before it replaces anything) and removed. The
/// body is not held in memory, so no body limit applies to it.
async fn snapshot<H: PeerHost>(
    State(node): State<H>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    if let Err((code, m)) = admit(&node, &headers) {
        return refuse(code, m);
    }
    let path = node.incoming_snapshot_path();
    let received = snapshot_transfer::receive(body, &path).await;
    let opened = match received {
        Ok((vote, meta)) => tokio::fs::File::open(&path)
            .await
            .map(|file| (vote, meta, file))
            .map_err(snapshot_transfer::ReceiveError::Store),
        Err(e) => Err(e),
    };
    let (vote, meta, snapshot) = match opened {
        Ok(opened) => opened,
        Err(e) => {
            let _ = tokio::fs::remove_file(&path).await;
            return match e {
                snapshot_transfer::ReceiveError::Refused(m) => refuse(StatusCode::BAD_REQUEST, m),
                store => reply(&Err::<(), String>(store.to_string())),
            };
        }
    };
    let answer = node
        .raft()
        .install_full_snapshot(vote, crate::state_machine::Snapshot { meta, snapshot })
        .await;
    let _ = tokio::fs::remove_file(&path).await;
    if let Ok(response) = &answer {
        node.takeover().note_snapshot_chunk(response.vote == vote);
    }
    reply(&answer.map_err(|e| e.to_string()))
}

async fn info<H: PeerHost>(State(node): State<H>) -> Json<serde_json::Value> {
    let s = node.status();
    Json(serde_json::json!({
        "node_id": s.node_id,
        "api": node.api_addr(),
        "role": s.role,
        "leader": s.leader,
        "cluster_id": node.cluster_id(),
        "term": s.term,
        "applied_index": s.applied_index,
        "commit_index": node.commit_index().await,
        "quorum_fresh": node.leads_with_quorum(),
    }))
}

/// `POST /raft/read_index`: a follower asks for a read index (see `reader`).
async fn read_index<H: PeerHost>(State(node): State<H>, headers: HeaderMap) -> Response {
    if let Err((code, m)) = parse::<(), H>(&node, &headers, &encode(&()).unwrap_or_default()) {
        return refuse(code, m);
    }
    reply(&wire_reason(answer_read_index(&node).await))
}

/// `POST /raft/propose`: a follower hands over a batch of client operations (already
/// validated there). Proposed here as one entry; never forwarded again.
async fn propose<H: PeerHost>(State(node): State<H>, headers: HeaderMap, body: Bytes) -> Response {
    let ops: Vec<statemanager_core::Op> = match parse(&node, &headers, &body) {
        Ok(ops) => ops,
        Err((code, m)) => return refuse(code, m),
    };
    reply(&node.propose_forwarded(ops).await)
}

/// `POST /raft/elect`: a stopping leader asks this node to start an election now.
async fn elect<H: PeerHost>(State(node): State<H>, headers: HeaderMap) -> Response {
    if let Err((code, m)) = parse::<(), H>(&node, &headers, &encode(&()).unwrap_or_default()) {
        return refuse(code, m);
    }
    if let Some(reason) = node.time().refusal() {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, reason);
    }
    match node.raft().trigger().elect(false).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// `GET /admin/cluster`: this node's view of the cluster.
async fn cluster<H: PeerHost>(State(node): State<H>) -> Json<serde_json::Value> {
    let s = node.status();
    Json(serde_json::json!({
        "node_id": s.node_id,
        "role": s.role,
        "leader": s.leader,
        "leader_peer": node.remote_leader().map(|(_, a)| a),
        "term": s.term,
        "last_log_index": s.last_log_index,
        "applied_index": s.applied_index,
        "members": node.members(),
    }))
}

#[derive(serde::Deserialize)]
struct AddRequest {
    id: NodeId,
    peer_addr: String,
}

#[derive(serde::Deserialize)]
struct RemoveRequest {
    id: NodeId,
}

/// Answers 421 (misdirected) with the leader's peer address when this node does not lead.
fn not_leader<H: PeerHost>(node: &H) -> Option<Response> {
    if node.status().role == "leader" {
        return None;
    }
    let body = serde_json::json!({
        "error": {"code": "not_leader", "message": "membership changes go to the leader"},
        "leader_peer": node.remote_leader().map(|(_, a)| a),
    });
    Some((StatusCode::MISDIRECTED_REQUEST, Json(body)).into_response())
}

fn admin_result(result: Result<(), MembershipError>) -> Response {
    match result {
        Ok(()) => Json(serde_json::json!({"ok": true})).into_response(),
        Err(e) => (
            StatusCode::CONFLICT,
            Json(serde_json::json!({"error": {"code": "membership", "message": e.to_string()}})),
        )
            .into_response(),
    }
}

/// `POST /admin/add {"id", "peer_addr"}`: add a node (learner, then voter once caught up).
async fn add<H: PeerHost>(State(node): State<H>, Json(req): Json<AddRequest>) -> Response {
    if let Some(r) = not_leader(&node) {
        return r;
    }
    admin_result(node.add_member(req.id, &req.peer_addr).await)
}

/// `POST /admin/remove {"id"}`: remove a node.
async fn remove<H: PeerHost>(State(node): State<H>, Json(req): Json<RemoveRequest>) -> Response {
    if let Some(r) = not_leader(&node) {
        return r;
    }
    admin_result(node.remove_member(req.id).await)
}

/// Wraps the whole peer router (Raft RPCs, admin, forwarding): with a cluster secret
/// configured, every request must carry it (401 `unauthorized` otherwise, logged at most once
/// a minute). Peer TLS, when configured, is enforced by the listener itself (client
/// certificates signed by the cluster's CA), before any request is read.
pub fn protect<H: PeerHost>(router: Router, node: H) -> Router {
    router.layer(axum::middleware::from_fn_with_state(
        node,
        check_secret::<H>,
    ))
}

async fn check_secret<H: PeerHost>(
    State(node): State<H>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    static LAST_WARNING: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
    let Some(secret) = node.peer_secret() else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if secret.admits(presented) {
        return next.run(request).await;
    }
    let mut last = LAST_WARNING.lock().unwrap_or_else(|p| p.into_inner());
    if last.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(60)) {
        *last = Some(std::time::Instant::now());
        tracing::warn!(
            path = %request.uri().path(),
            "refused a peer-port request without the cluster secret (logged once a minute)"
        );
    }
    let body = serde_json::json!({"error": {
        "code": "unauthorized",
        "message": "the peer port needs 'Authorization: Bearer <cluster_secret>'",
    }});
    (StatusCode::UNAUTHORIZED, Json(body)).into_response()
}

/// The peer router (Raft RPCs, node info, membership admin), with `node` as state.
pub fn router<H: PeerHost>(node: H) -> Router {
    Router::new()
        .route("/raft/append", post(append::<H>))
        .route("/raft/vote", post(vote::<H>))
        .route("/raft/snapshot", post(snapshot::<H>))
        .route("/raft/elect", post(elect::<H>))
        .route("/raft/read_index", post(read_index::<H>))
        .route("/raft/propose", post(propose::<H>))
        .route("/peer/info", get(info::<H>))
        .route("/admin/cluster", get(cluster::<H>))
        .route("/admin/add", post(add::<H>))
        .route("/admin/remove", post(remove::<H>))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_PEER_BODY))
        .with_state(node)
}
