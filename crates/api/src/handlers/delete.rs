//! `POST /delete_data`.

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use statemanager_raft::NodeError;

use crate::body;
use crate::error::ApiError;
use crate::SharedState;

/// Deletes an item through the log: 200 once the deletion is durable, 404 when there was
/// nothing to delete (so a retried delete answers 404 and changes nothing).
pub async fn delete_data(
    State(state): State<SharedState>,
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
    let id = body::item_id(&bytes, &state.namespaces)?;
    match state.node.delete(id).await {
        Ok(_) => Ok(Json(json!({"deleted": true})).into_response()),
        Err(NodeError::NotLeader { .. }) if state.forwarding => {
            crate::forward::to_leader(&state, "/delete_data", bytes).await
        }
        Err(e) => Err(e.into()),
    }
}
