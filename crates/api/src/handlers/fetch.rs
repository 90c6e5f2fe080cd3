//! `POST /fetch_data`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use statemanager_proto::FetchDataResponse;

use crate::body::{self, RequestBody};
use crate::error::ApiError;
use crate::forward;
use crate::SharedApiState;

/// Reads an item linearizably; 404 when missing or expired.
pub async fn fetch_data(
    State(state): State<SharedApiState>,
    RequestBody(bytes): RequestBody,
) -> Result<Response, ApiError> {
    let id = body::item_id(&bytes, &state.namespaces)?;
    let result = state.node.fetch(&id).await;
    // Linearizable reads are served by the leader.
    forward::answer_or_forward(&state, "/fetch_data", bytes, result, |item| {
        let item = item.ok_or(ApiError::NotFound)?;
        Ok(Json(FetchDataResponse {
            data: item.data.to_string(),
            timestamp: item.timestamp.as_secs_f64(),
            expires_at: item.expires_at.as_secs_f64(),
        })
        .into_response())
    })
    .await
}
