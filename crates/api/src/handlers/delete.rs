//! `POST /delete_data`.

use std::borrow::Cow;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use statemanager_core::{ItemId, Key};
use statemanager_raft::NodeError;

use crate::body;
use crate::error::ApiError;
use crate::ApiState;

/// The well-formed request (fast path; see `store.rs`).
#[derive(Deserialize)]
struct DeleteBody<'a> {
    #[serde(borrow)]
    namespace: Cow<'a, str>,
    #[serde(borrow)]
    key: Cow<'a, str>,
}

/// Deletes an item through the log: 200 once the deletion is durable, 404 when there was
/// nothing to delete (so a retried delete answers 404 and changes nothing).
pub async fn delete_data(
    State(state): State<ApiState>,
    headers: HeaderMap,
    request: Body,
) -> Result<Response, ApiError> {
    let bytes = body::read(&headers, request, state.body_limit).await?;
    let id = match serde_json::from_slice::<DeleteBody>(&bytes) {
        Ok(b) => ItemId {
            namespace: state.namespaces.resolve(&b.namespace)?,
            key: Key::new(&b.key)?,
        },
        Err(_) => {
            let obj = body::parse_object(&bytes)?;
            ItemId {
                namespace: state.namespaces.resolve(body::string(&obj, "namespace")?)?,
                key: Key::new(body::string(&obj, "key")?)?,
            }
        }
    };
    match state.node.delete(id).await {
        Ok(_) => Ok(Json(json!({"deleted": true})).into_response()),
        Err(NodeError::NotLeader { .. }) if state.forwarding => {
            crate::forward::to_leader(&state, "/delete_data", bytes).await
        }
        Err(e) => Err(e.into()),
    }
}
