//! The router and its shared state.

use std::time::Instant;

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use statemanager_raft::Node;

use crate::handlers::{fallback, fetch, probes, store};

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiState {
    /// The node service.
    pub node: Node,
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// When the server started (for `uptime`).
    pub started: Instant,
}

impl ApiState {
    /// State for `node`, with the body limit derived from its item limit: 6 × the item size
    /// (JSON escaping can grow a string sixfold, `\u0000`) plus 4 KiB for the rest.
    pub fn new(node: Node) -> Self {
        let item = node.limits().max_item_bytes as usize;
        ApiState {
            node,
            body_limit: item.saturating_mul(6).saturating_add(4096),
            started: Instant::now(),
        }
    }
}

/// The whole HTTP API.
pub fn app(state: ApiState) -> Router {
    Router::new()
        .route("/", get(probes::banner).post(probes::banner))
        .route("/health", get(probes::health))
        .route("/ready", get(probes::ready))
        .route("/status", get(probes::status))
        .route("/store_data", post(store::store_data))
        .route("/fetch_data", post(fetch::fetch_data))
        .fallback(fallback::unknown_endpoint)
        .method_not_allowed_fallback(fallback::method_not_allowed)
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

/// Logs every request at DEBUG with its outcome and latency (never its body).
async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    tracing::debug!(
        %method,
        path,
        status = response.status().as_u16(),
        latency_us = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}
