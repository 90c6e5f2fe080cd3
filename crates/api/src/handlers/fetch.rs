//! `POST /fetch_data`.

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use statemanager_proto::FetchDataResponse;
use statemanager_raft::NodeError;

use crate::body;
use crate::error::ApiError;
use crate::SharedState;

/// Reads an item linearizably; 404 when missing or expired.
pub async fn fetch_data(
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
    let item = match state.node.fetch(&id).await {
        Ok(item) => item.ok_or(ApiError::NotFound)?,
        // Linearizable reads are served by the leader.
        Err(NodeError::NotLeader { .. }) if state.forwarding => {
            return crate::forward::to_leader(&state, "/fetch_data", bytes).await;
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Json(FetchDataResponse {
        data: item.data.to_string(),
        timestamp: item.timestamp.as_secs_f64(),
        expires_at: item.expires_at.as_secs_f64(),
    })
    .into_response())
}
