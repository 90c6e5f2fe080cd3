//! `POST /store_data`.

use std::borrow::Cow;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use statemanager_core::StoreOp;
use statemanager_proto::StoreDataResponse;
use statemanager_raft::NodeError;

use crate::body;
use crate::error::ApiError;
use crate::ApiState;

/// The well-formed request, parsed without building a JSON tree (the fast path). Anything it
/// refuses is parsed again field by field, so the error names the field and the rule.
#[derive(Deserialize)]
struct StoreBody<'a> {
    #[serde(borrow)]
    namespace: Cow<'a, str>,
    #[serde(borrow)]
    key: Cow<'a, str>,
    #[serde(borrow)]
    data: Cow<'a, str>,
    ttl: f64,
    #[serde(default)]
    timestamp: Option<f64>,
}

/// Stores an item; answers once it is durable.
pub async fn store_data(
    State(state): State<ApiState>,
    headers: HeaderMap,
    request: Body,
) -> Result<Response, ApiError> {
    let bytes = body::read(
        &headers,
        request,
        state.body_limit,
        state.limits.body_timeout,
    )
    .await?;
    let limits = state.node.limits();
    let mut op = match serde_json::from_slice::<StoreBody>(&bytes) {
        Ok(b) => StoreOp::new(&b.namespace, &b.key, &b.data, b.ttl, b.timestamp, &limits)?,
        Err(_) => {
            let obj = body::parse_object(&bytes)?;
            let namespace = body::string(&obj, "namespace")?;
            let key = body::string(&obj, "key")?;
            let data = body::string(&obj, "data")?;
            let ttl = body::number(&obj, "ttl")?;
            let timestamp = body::optional_number(&obj, "timestamp")?;
            StoreOp::new(namespace, key, data, ttl, timestamp, &limits)?
        }
    };
    op.id.namespace = state.namespaces.resolve(op.id.namespace.as_str())?;
    let stored = match state.node.store(op).await {
        Ok(stored) => stored,
        // Refused before proposing (nothing happened here): the leader decides.
        Err(NodeError::NotLeader { .. }) if state.forwarding => {
            return crate::forward::to_leader(&state, "/store_data", bytes).await;
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Json(StoreDataResponse {
        stored: true,
        timestamp: stored.timestamp.as_secs_f64(),
        expires_at: stored.expires_at.as_secs_f64(),
    })
    .into_response())
}
