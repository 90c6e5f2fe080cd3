//! The router and its shared state.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use statemanager_cache::{Cache, SharedCache};
use statemanager_raft::Node;

use crate::handlers::admin::{self, AdminAccess};
use crate::handlers::{cache, console, delete, fallback, fetch, openapi, probes, store};
use crate::latency::{LatencyHistogram, ShardSlot};

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiState {
    /// The node service.
    pub node: Node,
    /// This node's share of the ephemeral cache (its `/status` and `/metrics` figures).
    pub cache: Arc<Cache>,
    /// The cache shared by the cluster (routes each key to its owner); `None`: `cache` alone
    /// answers `get_data`/`set_data`.
    pub shared_cache: Option<Arc<SharedCache>>,
    /// Largest request body accepted for the persistent store, in bytes.
    pub body_limit: usize,
    /// Largest `/set_data` body accepted, in bytes.
    pub cache_body_limit: usize,
    /// A random identifier of this process run (the Cache Manager's `ref`).
    pub run_ref: String,
    /// When the server started (for `uptime`).
    pub started: Instant,
    /// Set once the node is stopping: new requests get 503 `unavailable`.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// Whether a request this node cannot serve (not the leader) is forwarded to the leader.
    /// Off on the peer port's `/forward` routes, so nothing is forwarded twice.
    pub forwarding: bool,
    /// How namespaces (plain names or tokens) are resolved.
    pub namespaces: crate::Namespaces,
    /// Renders the Prometheus text exposition (set by the server once its recorder is
    /// installed; `/metrics` answers 404 without it).
    pub render_metrics: Option<Arc<dyn Fn() -> String + Send + Sync>>,
    /// Who may call `/admin/*` on this port.
    pub admin: AdminAccess,
    /// Head size, body time and request-rate limits.
    pub limits: crate::RequestLimits,
    /// Request rates and latencies over the last minutes (`/status/traffic`), sampled by the
    /// server from its metrics.
    pub traffic: Arc<crate::traffic::TrafficHistory>,
}

impl ApiState {
    /// State for `node` and `cache`, with body limits derived from their item limits: 6 × the
    /// item size (JSON escaping can grow a string sixfold, `\u0000`) plus 4 KiB for the rest.
    pub fn new(node: Node, cache: Arc<Cache>, namespaces: crate::Namespaces) -> Self {
        let body_limit = |item: u64| (item as usize).saturating_mul(6).saturating_add(4096);
        let started = Instant::now();
        let run_ref = format!(
            "{:016x}{:08x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0),
            std::process::id()
        );
        ApiState {
            body_limit: body_limit(node.limits().max_item_bytes),
            cache_body_limit: body_limit(cache.limits().max_item_size),
            node,
            cache,
            shared_cache: None,
            run_ref,
            started,
            render_metrics: None,
            admin: AdminAccess::Open,
            limits: crate::RequestLimits::default(),
            traffic: Arc::new(crate::traffic::TrafficHistory::new()),
            forwarding: true,
            draining: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            namespaces,
        }
    }
}

/// The router's state: one shared [`ApiState`], so the per-request clones that axum and
/// every middleware layer make cost one reference count (cloning the whole state showed up at
/// 4 % of a node's CPU under load).
#[derive(Clone)]
pub struct SharedApiState(Arc<ApiState>);

impl std::ops::Deref for SharedApiState {
    type Target = ApiState;

    fn deref(&self) -> &ApiState {
        &self.0
    }
}

/// The whole HTTP API.
pub fn app(state: ApiState) -> Router {
    let state = SharedApiState(Arc::new(state));
    let admin_routes = Router::new()
        .route("/admin/list", post(admin::list))
        .route("/admin/backup", get(admin::backup))
        .route("/admin/namespaces", get(admin::namespaces))
        .route("/admin/fetch", post(admin::fetch))
        .route("/admin/delete", post(admin::delete))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            admin::require_admin,
        ));
    let router = Router::new()
        .route("/", get(probes::banner).post(probes::banner))
        .route("/health", get(probes::health))
        .route("/ready", get(probes::ready))
        .route("/status", get(probes::status))
        .route("/status/cluster", get(console::cluster))
        .route("/status/traffic", get(console::traffic))
        .route("/metrics", get(probes::metrics))
        .route("/openapi.json", get(openapi::document))
        .route("/store_data", post(store::store_data))
        .route("/fetch_data", post(fetch::fetch_data))
        .route("/delete_data", post(delete::delete_data))
        .route("/get_data", post(cache::get_data))
        .route("/set_data", post(cache::set_data))
        .route("/ui", get(console::page))
        .route("/ui/app.js", get(console::script))
        .route("/ui/app.css", get(console::style))
        .merge(admin_routes)
        .fallback(fallback::unknown_endpoint)
        .method_not_allowed_fallback(fallback::method_not_allowed);
    // One middleware for everything every request goes through (each `from_fn` layer costs a
    // boxed future and a service clone per request).
    router
        .layer(middleware::from_fn_with_state(state.clone(), gate))
        .with_state(state)
}

/// Why a request is refused before its handler runs, checked in this order: the client's
/// request rate (429, only when `client_rate_limit` is set), the head size (431), and the
/// node stopping (503 `unavailable`; in-flight requests finish).
fn refusal(state: &SharedApiState, request: &Request) -> Option<Response> {
    crate::limits::rate_refusal(state, request)
        .or_else(|| crate::limits::head_refusal(state, request))
        .or_else(|| {
            state
                .draining
                .load(std::sync::atomic::Ordering::Relaxed)
                .then(|| {
                    crate::error::ApiError::Node(statemanager_raft::NodeError::Unavailable(
                        "this node is stopping; send the request to another node".into(),
                    ))
                    .into_response()
                })
        })
}

/// The routes other nodes forward client requests to (served on the peer port).
pub fn forward_router(state: ApiState) -> Router {
    let state = SharedApiState(Arc::new(ApiState {
        forwarding: false,
        admin: AdminAccess::Open,
        ..state
    }));
    Router::new()
        .route("/forward/store_data", post(store::store_data))
        .route("/forward/fetch_data", post(fetch::fetch_data))
        .route("/forward/delete_data", post(delete::delete_data))
        // The peer port's own authentication (cluster secret, peer TLS) guards these.
        .route("/admin/list", post(admin::list))
        .route("/admin/backup", get(admin::backup))
        // The console's: a member's summary for `/status/cluster`, and the admin reads and
        // deletes a follower relays to the leader.
        .route("/forward/node", get(console::node))
        .route("/forward/admin/fetch", post(admin::fetch))
        .route("/forward/admin/delete", post(admin::delete))
        .with_state(state)
}

/// Every path the client router ([`app`]) serves, in the order it declares them. The OpenAPI
/// document lists each of them (checked by the tests), and they are the only values of the
/// `endpoint` metric label besides `unknown`.
pub const ROUTES: &[&str] = &[
    "/",
    "/health",
    "/ready",
    "/status",
    "/status/cluster",
    "/status/traffic",
    "/metrics",
    "/openapi.json",
    "/store_data",
    "/fetch_data",
    "/delete_data",
    "/get_data",
    "/set_data",
    "/ui",
    "/ui/app.js",
    "/ui/app.css",
    "/admin/list",
    "/admin/backup",
    "/admin/namespaces",
    "/admin/fetch",
    "/admin/delete",
];

/// The metric labels of the endpoints: [`ROUTES`], then `unknown`.
static ENDPOINT_LABELS: [&str; ROUTES.len() + 1] = {
    let mut labels = ["unknown"; ROUTES.len() + 1];
    let mut i = 0;
    while i < ROUTES.len() {
        labels[i] = ROUTES[i];
        i += 1;
    }
    labels
};

/// The index in [`ENDPOINT_LABELS`] of the route a request's path names: one of a fixed set,
/// so clients cannot grow the label set and the handles can be cached. No route has
/// parameters, so a route is matched exactly when its path is.
fn endpoint_index(path: &str) -> usize {
    ROUTES
        .iter()
        .position(|route| *route == path)
        .unwrap_or(ROUTES.len())
}

/// `statemanager_http_request_duration_seconds{endpoint}` (see [`crate::latency`]).
static REQUEST_LATENCY: LatencyHistogram = LatencyHistogram::new(&ENDPOINT_LABELS);

/// Appends the request latency histogram to a rendering of the metrics recorder.
pub fn render_request_latency(out: &mut String) {
    REQUEST_LATENCY.render_into(out);
}

/// Request counter handles per (endpoint, status).
type RequestCounters = std::collections::HashMap<(usize, u16), metrics::Counter>;

thread_local! {
    /// Request counter handles per (endpoint, status), cached per thread: building a
    /// labelled key and looking it up in the registry on every request cost about a third of
    /// a fetch's throughput (measured: 88k → 56k fetches/s).
    static REQUEST_COUNTERS: std::cell::RefCell<RequestCounters> =
        std::cell::RefCell::new(std::collections::HashMap::new());
    /// This thread's shard of [`REQUEST_LATENCY`].
    static LATENCY_SHARD: ShardSlot = const { ShardSlot::new() };
}

fn record_request(endpoint: usize, status: u16, elapsed: std::time::Duration) {
    REQUEST_COUNTERS.with(|cache| {
        cache
            .borrow_mut()
            .entry((endpoint, status))
            .or_insert_with(|| {
                metrics::counter!(
                    "statemanager_http_requests_total",
                    "endpoint" => ENDPOINT_LABELS[endpoint],
                    "status" => status.to_string()
                )
            })
            .increment(1);
    });
    LATENCY_SHARD.with(|slot| REQUEST_LATENCY.record(slot, endpoint, elapsed));
}

/// Every request: refused by [`refusal`] or handed to its handler; then logged at DEBUG with
/// its outcome and latency (never its body), and counted in
/// `statemanager_http_requests_total{endpoint,status}` and
/// `statemanager_http_request_duration_seconds{endpoint}`. The endpoint label is the matched
/// route (`unknown` otherwise), so clients cannot grow the label set. Refusals for size, time
/// and rate (408, 413, 429, 431) are logged once a minute per client.
async fn gate(
    axum::extract::State(state): axum::extract::State<SharedApiState>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    // In flight until answered: a batch's log entry is written in place only when every
    // request in flight waits for it.
    let _serving = state.node.serving();
    let method = request.method().clone();
    let endpoint = endpoint_index(request.uri().path());
    // A route's label is its path; only an unknown path is copied, for the log lines below
    // (cloning the URI would touch the shared request buffer's count).
    let path: std::borrow::Cow<'static, str> = match ENDPOINT_LABELS[endpoint] {
        "unknown" => request.uri().path().to_owned().into(),
        route => route.into(),
    };
    let client = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let response = match refusal(&state, &request) {
        Some(refused) => refused,
        None => next.run(request).await,
    };
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    record_request(endpoint, status, elapsed);
    if let (Some(client), 408 | 413 | 429 | 431) = (client, status) {
        crate::limits::log_refusal(
            client,
            status,
            &format!("{method} {path} answered {status}"),
        );
    }
    tracing::debug!(
        %method,
        path = &*path,
        status,
        latency_us = elapsed.as_micros() as u64,
        "request"
    );
    response
}

#[cfg(test)]
mod tests {
    use super::ROUTES;
    use crate::OPENAPI_JSON;

    /// The paths [`super::app`] declares, each with its methods, read from this file's
    /// source: the router has no API that lists its routes, and this keeps [`ROUTES`] and the
    /// OpenAPI document from drifting from it.
    fn declared_routes() -> Vec<(String, Vec<&'static str>)> {
        let source = include_str!("router.rs");
        let start = source.find("pub fn app(").expect("app() in router.rs");
        let body = &source[start..];
        let end = body.find("\n}\n").expect("end of app()");
        body[..end]
            .split(".route(\"")
            .skip(1)
            .map(|rest| {
                let path = rest[..rest.find('"').expect("closing quote")].to_string();
                let line = rest.lines().next().unwrap_or_default();
                let methods = ["get", "post", "put", "patch", "delete"]
                    .into_iter()
                    .filter(|m| {
                        line.match_indices(&format!("{m}(")).any(|(i, _)| {
                            i == 0
                                || !line.as_bytes()[i - 1].is_ascii_alphanumeric()
                                    && line.as_bytes()[i - 1] != b'_'
                        })
                    })
                    .collect();
                (path, methods)
            })
            .collect()
    }

    #[test]
    fn routes_list_every_route_of_the_router() {
        let mut declared: Vec<String> = declared_routes().into_iter().map(|(p, _)| p).collect();
        let mut listed: Vec<&str> = ROUTES.to_vec();
        declared.sort();
        listed.sort();
        assert_eq!(declared, listed);
    }

    #[test]
    fn openapi_document_lists_exactly_the_routes_and_methods() {
        let doc: serde_json::Value =
            serde_json::from_str(OPENAPI_JSON).expect("openapi.json is JSON");
        assert!(doc["openapi"].as_str().expect("openapi").starts_with("3."));
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        let paths = doc["paths"].as_object().expect("paths");
        let declared = declared_routes();
        assert_eq!(
            paths.len(),
            declared.len(),
            "documented: {:?}",
            paths.keys()
        );
        for (path, methods) in declared {
            let ops = paths[&path].as_object().expect("path item");
            let mut documented: Vec<&str> = ops.keys().map(String::as_str).collect();
            documented.sort_unstable();
            let mut methods = methods;
            methods.sort_unstable();
            assert_eq!(documented, methods, "{path}");
        }
    }
}
