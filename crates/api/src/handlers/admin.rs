//! Admin endpoints on the client port: `POST /admin/list` (the keys of a namespace, for
//! debugging) and `GET /admin/backup` (a consistent backup file of every item).
//!
//! Both reveal data across namespaces (a backup holds every protected namespace), so they are
//! guarded by [`AdminAccess`]: with `cluster_secret` configured they need
//! `Authorization: Bearer <cluster_secret>` (401 `unauthorized` otherwise); with peer TLS but
//! no secret they are closed on the client port (403; use the peer port, where the client
//! certificate is the credential); with neither they are open, like the rest of a default
//! development setup.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use statemanager_raft::auth::ClusterSecret;

use crate::body;
use crate::error::ApiError;
use crate::SharedState;

/// Most keys `/admin/list` returns at once.
pub const MAX_LIST_LIMIT: usize = 100_000;
/// Keys `/admin/list` returns without a `limit`.
pub const DEFAULT_LIST_LIMIT: usize = 1_000;

/// Who may call the admin endpoints.
#[derive(Clone, Debug)]
pub enum AdminAccess {
    /// Anyone who reaches the port (no credentials configured).
    Open,
    /// Callers presenting the cluster secret.
    Secret(ClusterSecret),
    /// Nobody on this port; the message says where to go instead.
    Closed(&'static str),
}

/// Middleware: refuses admin requests without the configured credential.
pub async fn require_admin(
    State(state): State<SharedState>,
    request: Request,
    next: Next,
) -> Response {
    match &state.admin {
        AdminAccess::Open => next.run(request).await,
        AdminAccess::Secret(secret) => {
            let presented = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            if secret.admits(presented) {
                next.run(request).await
            } else {
                ApiError::Unauthorized(
                    "admin endpoints need 'Authorization: Bearer <cluster_secret>'".into(),
                )
                .into_response()
            }
        }
        AdminAccess::Closed(why) => ApiError::Forbidden((*why).into()).into_response(),
    }
}

/// `POST /admin/list {"namespace", "limit"?}`: the live keys of a namespace (a token
/// addresses its protected namespace), sorted, with their times and sizes.
pub async fn list(
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
    let obj = body::parse_object(&bytes)?;
    let namespace_text = body::string(&obj, "namespace")?;
    let namespace = state.namespaces.resolve(namespace_text)?;
    let limit = match body::optional_number(&obj, "limit")? {
        None => DEFAULT_LIST_LIMIT,
        Some(n) if n.fract() == 0.0 && n >= 1.0 && n <= MAX_LIST_LIMIT as f64 => n as usize,
        Some(_) => {
            return Err(ApiError::InvalidRequest(format!(
                "field 'limit' must be a whole number from 1 to {MAX_LIST_LIMIT}"
            )))
        }
    };
    let (items, truncated) = state.node.list(&namespace, limit).await?;
    let keys: Vec<Value> = items
        .iter()
        .map(|(key, item)| {
            json!({
                "key": key.as_str(),
                "timestamp": item.timestamp.as_secs_f64(),
                "expires_at": item.expires_at.as_secs_f64(),
                "bytes": item.data.len(),
            })
        })
        .collect();
    Ok(Json(json!({
        "namespace": namespace_text,
        "keys": keys,
        "truncated": truncated,
    }))
    .into_response())
}

/// `GET /admin/backup`: a backup file (see `statemanager_raft::backup`), streamed. It holds
/// every item acknowledged before the request arrived.
pub async fn backup(State(state): State<SharedState>) -> Result<Response, ApiError> {
    let (file, header) = state.node.backup_file().await?;
    tracing::info!(
        items = header.items,
        applied_index = header.applied_index,
        "backup taken"
    );
    let length = file.metadata().map(|m| m.len()).ok();
    let stream =
        tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::from_std(file), 256 * 1024);
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(length) = length {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"statemanager.smbackup\""),
    );
    headers.insert("x-statemanager-items", HeaderValue::from(header.items));
    Ok(response)
}
