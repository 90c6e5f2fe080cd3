//! Admin endpoints on the client port: `POST /admin/list` (the keys of a namespace, for
//! debugging), `GET /admin/backup` (a consistent backup file of every item), and for the
//! console (`/ui`): `GET /admin/namespaces` (every namespace with its counts),
//! `POST /admin/fetch` (one item's value) and `POST /admin/delete` (delete one item).
//!
//! They reveal data across namespaces (a backup holds every protected namespace), so they are
//! guarded by [`AdminAccess`]: with `cluster_secret` configured they need
//! `Authorization: Bearer <cluster_secret>` (401 `unauthorized` otherwise); with peer TLS but
//! no secret they are closed on the client port (403; use the peer port, where the client
//! certificate is the credential); with neither they are open, like the rest of a default
//! development setup.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;
use statemanager_core::{ItemId, Key, Namespace};
use statemanager_proto::{
    AdminFetchResponse, DeleteResponse, ListResponse, ListedKey, NamespaceSummary,
    NamespacesResponse,
};
use statemanager_raft::auth::ClusterSecret;

use crate::body::{self, RequestBody};
use crate::error::ApiError;
use crate::forward;
use crate::SharedApiState;

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

/// Middleware of the client port's admin routes: refuses requests without the configured
/// credential, and `POST /admin/delete` without [`CONSOLE_HEADER`] (403 `forbidden`, the
/// defence against cross-site requests).
pub async fn require_admin(
    State(state): State<SharedApiState>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path() == "/admin/delete" && !request.headers().contains_key(CONSOLE_HEADER) {
        return ApiError::Forbidden(format!(
            "this action needs the header '{CONSOLE_HEADER}: 1' (a defence against \
             cross-site requests)"
        ))
        .into_response();
    }
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

/// The header `POST /admin/delete` needs on the client port, whatever its value. A browser
/// sends a custom header only from a page of the server's own origin (anything else needs a
/// CORS preflight, which this server never grants), so a page elsewhere cannot make an
/// operator's browser delete items, even where the admin endpoints are open.
pub const CONSOLE_HEADER: &str = "x-statemanager-console";

/// The namespace an admin request addresses: with `"protected": true`, the protected
/// namespace of that decoded name (as `/admin/namespaces` lists it: an administrator never
/// needs, or sees, its token); otherwise the name as any endpoint resolves it (a token
/// addresses its protected namespace).
fn admin_namespace(
    state: &SharedApiState,
    obj: &serde_json::Map<String, Value>,
) -> Result<Namespace, ApiError> {
    let text = body::string(obj, "namespace")?;
    match obj.get("protected") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => state.namespaces.resolve(text),
        Some(Value::Bool(true)) => Ok(Namespace::protected(text)?),
        Some(other) => Err(ApiError::InvalidRequest(format!(
            "field 'protected' must be a boolean, not {}",
            body::kind(other)
        ))),
    }
}

/// `{"namespace", "protected"}` of a stored namespace, for the console: a protected one by
/// its decoded name and `true`, never in its stored (NUL-prefixed) or token form.
fn namespace_json(namespace: &Namespace) -> (String, bool) {
    match namespace.as_str().strip_prefix('\0') {
        Some(decoded) => (decoded.to_string(), true),
        None => (namespace.as_str().to_string(), false),
    }
}

/// `GET /admin/namespaces`: every namespace with live items on this node, sorted, with its
/// item count, bytes and next expiry, and the limits they count against. A local read (a
/// status page, not linearizable); it scans every item, so poll it every few seconds at most.
pub async fn namespaces(State(state): State<SharedApiState>) -> Json<NamespacesResponse> {
    let (now, stats) = state.node.namespace_stats();
    let limits = state.node.limits();
    let status = state.node.status();
    let list = stats
        .iter()
        .map(|n| {
            let (name, protected) = namespace_json(&n.namespace);
            NamespaceSummary {
                bytes: n.bytes,
                items: n.items,
                namespace: name,
                next_expiry: n.next_expiry.map(|t| t.as_secs_f64()),
                protected,
            }
        })
        .collect();
    Json(NamespacesResponse {
        bytes: status.data_bytes,
        items: status.items,
        max_items: limits.max_items,
        max_items_per_namespace: limits.max_items_per_namespace,
        namespaces: list,
        now: now.as_secs_f64(),
    })
}

/// The item an admin request `{"namespace", "protected"?, "key"}` addresses.
fn admin_item(
    state: &SharedApiState,
    bytes: axum::body::Bytes,
) -> Result<(ItemId, axum::body::Bytes), ApiError> {
    let obj = body::parse_object(&bytes)?;
    let id = ItemId {
        namespace: admin_namespace(state, &obj)?,
        key: Key::new(body::string(&obj, "key")?)?,
    };
    Ok((id, bytes))
}

/// `POST /admin/fetch {"namespace", "protected"?, "key"}`: one item, as `/fetch_data`
/// answers it (linearizable), for the console's "show value".
pub async fn fetch(
    State(state): State<SharedApiState>,
    RequestBody(bytes): RequestBody,
) -> Result<Response, ApiError> {
    let request = forward::Forwardable::read("/admin/fetch");
    let (id, bytes) = admin_item(&state, bytes)?;
    let result = state.node.fetch(&id).await;
    forward::answer_or_forward(&state, request, bytes, result, |item| {
        let item = item.ok_or(ApiError::NotFound)?;
        Ok(Json(AdminFetchResponse {
            data: item.data.to_string(),
            expires_at: item.expires_at.as_secs_f64(),
            timestamp: item.timestamp.as_secs_f64(),
        })
        .into_response())
    })
    .await
}

/// `POST /admin/delete {"namespace", "protected"?, "key"}`: deletes one item through the log,
/// as `/delete_data` does (200 `{"deleted": true}`, 404 when nothing was there). On the client
/// port it also needs [`CONSOLE_HEADER`].
pub async fn delete(
    State(state): State<SharedApiState>,
    RequestBody(bytes): RequestBody,
) -> Result<Response, ApiError> {
    let request = forward::Forwardable::write("/admin/delete");
    let (id, bytes) = admin_item(&state, bytes)?;
    tracing::info!(
        namespace = id.namespace.as_str().trim_start_matches('\0'),
        key = id.key.as_str(),
        "admin delete"
    );
    let result = state.node.delete(id).await;
    forward::answer_or_forward(&state, request, bytes, result, |_| {
        Ok(Json(DeleteResponse { deleted: true }).into_response())
    })
    .await
}

/// `POST /admin/list {"namespace", "protected"?, "limit"?}`: the live keys of a namespace (a
/// token, or the decoded name with `"protected": true`, addresses its protected namespace),
/// sorted, with their times and sizes.
pub async fn list(
    State(state): State<SharedApiState>,
    RequestBody(bytes): RequestBody,
) -> Result<Response, ApiError> {
    let obj = body::parse_object(&bytes)?;
    let namespace_text = body::string(&obj, "namespace")?;
    let namespace = admin_namespace(&state, &obj)?;
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
    let keys = items
        .iter()
        .map(|(key, item)| ListedKey {
            bytes: item.data.len() as u64,
            expires_at: item.expires_at.as_secs_f64(),
            key: key.as_str().to_string(),
            timestamp: item.timestamp.as_secs_f64(),
        })
        .collect();
    Ok(Json(ListResponse {
        keys,
        namespace: namespace_text.to_string(),
        truncated,
    })
    .into_response())
}

/// `GET /admin/backup`: a backup file (see `statemanager_raft::backup`), streamed. It holds
/// every item acknowledged before the request arrived.
pub async fn backup(State(state): State<SharedApiState>) -> Result<Response, ApiError> {
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
