//! Building: the node (its data directory opened), this node's share of the shared cache, and
//! the API's state.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use statemanager_api::{AdminAccess, ApiState, Namespaces, RateLimiter, RequestLimits};
use statemanager_cache::{Cache, CacheLimits, SharedCache};
use statemanager_raft::network::PeerCredentials;
use statemanager_raft::Node;

use super::bind::Bound;
use super::SystemClock;
use crate::config::Config;

/// What serving is built from.
pub(super) struct Built {
    /// The node.
    pub node: Node,
    /// This node's share of the shared cache.
    pub cache: Arc<Cache>,
    /// The cluster-wide cache in front of it.
    pub shared_cache: Arc<SharedCache>,
    /// The API's state (its metrics renderer is added by `spawn`).
    pub api_state: ApiState,
}

/// Opens the node and builds the cache and the API's state; writes the address file once the
/// node is up.
pub(super) async fn build(
    config: &Config,
    bound: &Bound,
    peer_credentials: &PeerCredentials,
    addr_file: Option<&Path>,
) -> anyhow::Result<Built> {
    let local = bound
        .http_addr()
        .or(bound.https_addr())
        .context("no listener")?;
    // The ephemeral cache: this node's share; peers forward the keys it owns to it.
    let cache = Arc::new(Cache::new(
        CacheLimits {
            max_cache_size: config.max_cache_size,
            max_item_size: config.cache_item_limit(),
        },
        Arc::new(SystemClock),
    ));
    let options = config.node_options(
        local.to_string(),
        bound.peer_addr().map(|a| a.to_string()),
        peer_credentials.clone(),
        cache.clone(),
        Arc::new(SystemClock),
    );
    let node = Node::start(options)
        .await
        .with_context(|| format!("cannot open data directory {}", config.data_dir.display()))?;

    if let Some(path) = addr_file {
        write_addr_file(path, bound)?;
    }
    tracing::info!(
        http = %bound.http_addr().map(|a| a.to_string()).unwrap_or_else(|| "off".into()),
        https = %bound.https_addr().map(|a| a.to_string()).unwrap_or_else(|| "off".into()),
        peer = %bound.peer_addr().map(|a| a.to_string()).unwrap_or_else(|| "off".into()),
        data_dir = %config.data_dir.display(),
        "State Manager initialised"
    );

    let shared_cache = Arc::new(SharedCache::new(
        cache.clone(),
        config.node_id,
        Arc::new(statemanager_raft::cache_peers::NodeCachePeers::new(
            node.clone(),
        )),
        Arc::new(SystemClock),
        Duration::from_millis(config.peer_connection_timeout_ms),
        Duration::from_millis(config.peer_refresh_ms),
    ));
    node.set_shared_cache(&shared_cache);
    let api_state = api_state(config, &node, &cache, &shared_cache, peer_credentials)?;
    Ok(Built {
        node,
        cache,
        shared_cache,
        api_state,
    })
}

/// The API's state: namespaces and their keys, request limits, admin access.
fn api_state(
    config: &Config,
    node: &Node,
    cache: &Arc<Cache>,
    shared_cache: &Arc<SharedCache>,
    peer_credentials: &PeerCredentials,
) -> anyhow::Result<ApiState> {
    let namespaces = match config.keyring()? {
        Some(keys) => Namespaces::protected(
            keys,
            config.token_rule(),
            config.require_namespace_token,
            Arc::new(SystemClock),
        ),
        None => Namespaces::plain(Arc::new(SystemClock)),
    };
    let mut api_state = ApiState::new(node.clone(), cache.clone(), namespaces);
    api_state.shared_cache = Some(shared_cache.clone());
    api_state.limits = RequestLimits {
        max_header_bytes: config.max_header_bytes as usize,
        body_timeout: Duration::from_millis(config.body_timeout_ms),
        rate: (config.client_rate_limit > 0)
            .then(|| Arc::new(RateLimiter::new(config.client_rate_limit))),
    };
    api_state.admin = match (&peer_credentials.secret, &peer_credentials.tls) {
        (Some(secret), _) => AdminAccess::Secret(secret.clone()),
        (None, Some(_)) => AdminAccess::Closed(
            "admin endpoints on the client port need cluster_secret; with peer_tls alone, use \
             the peer port with a client certificate",
        ),
        (None, None) => AdminAccess::Open,
    };
    Ok(api_state)
}

/// Writes `{"http": "host:port", "https": "host:port", "peer": …, "pid": N}` atomically
/// (tests poll for it); a listener that is off is `null`.
fn write_addr_file(path: &Path, bound: &Bound) -> anyhow::Result<()> {
    let body = serde_json::json!({
        "http": bound.http_addr().map(|a| a.to_string()),
        "https": bound.https_addr().map(|a| a.to_string()),
        "peer": bound.peer_addr().map(|a| a.to_string()),
        "pid": std::process::id(),
    })
    .to_string();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
