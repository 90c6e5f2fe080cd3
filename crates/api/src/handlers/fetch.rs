//! `POST /fetch_data`.

use std::borrow::Cow;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use statemanager_core::{ItemId, Key};
use statemanager_proto::FetchDataResponse;
use statemanager_raft::NodeError;

use crate::body;
use crate::error::ApiError;
use crate::ApiState;

/// The well-formed request (fast path; see `store.rs`).
#[derive(Deserialize)]
struct FetchBody<'a> {
    #[serde(borrow)]
    namespace: Cow<'a, str>,
    #[serde(borrow)]
    key: Cow<'a, str>,
}

/// Reads an item linearizably; 404 when missing or expired.
pub async fn fetch_data(
    State(state): State<ApiState>,
    headers: HeaderMap,
    request: Body,
) -> Result<Response, ApiError> {
    let bytes = body::read(&headers, request, state.body_limit).await?;
    let id = match serde_json::from_slice::<FetchBody>(&bytes) {
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
