//! `POST /delete_data`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use statemanager_proto::DeleteResponse;

use crate::body::{self, RequestBody};
use crate::error::ApiError;
use crate::forward;
use crate::SharedApiState;

/// Deletes an item through the log: 200 once the deletion is durable, 404 when there was
/// nothing to delete (so a retried delete answers 404 and changes nothing).
pub async fn delete_data(
    State(state): State<SharedApiState>,
    RequestBody(bytes): RequestBody,
) -> Result<Response, ApiError> {
    let request = forward::Forwardable::write("/delete_data");
    let id = body::item_id(&bytes, &state.namespaces)?;
    let result = state.node.delete(id).await;
    forward::answer_or_forward(&state, request, bytes, result, |_| {
        Ok(Json(DeleteResponse { deleted: true }).into_response())
    })
    .await
}
