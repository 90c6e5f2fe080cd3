//! Spawning: the background tasks (cache peers' recheck, cache housekeeping, metrics upkeep,
//! the console's traffic samples), the listeners, the readiness announcement and the SIGHUP
//! reload.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum_server::tls_rustls::RustlsConfig;
use metrics_exporter_prometheus::PrometheusHandle;
use statemanager_api::{app, ApiState};
use statemanager_raft::Node;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use super::bind::Bound;
use super::build::Built;
use crate::config::Config;
use crate::listener::routers::Routers;
use crate::listener::threads::Spread;
use crate::notify::Notifier;
use crate::{listener, tls};
use statemanager_core::error_chain::Chain;

/// Starts the tasks that run until the drain; with metrics on, also gives the API its
/// metrics renderer.
pub(super) fn background(
    config: &Config,
    built: &mut Built,
    metrics_handle: Option<PrometheusHandle>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    // Peers marked down are rechecked every peer_refresh_time, traffic or not.
    tasks.push(tokio::spawn({
        let shared = built.shared_cache.clone();
        let every = Duration::from_millis(config.peer_refresh_ms.max(100));
        async move {
            let mut ticker = tokio::time::interval(every);
            loop {
                ticker.tick().await;
                shared.recheck().await;
            }
        }
    }));
    tasks.push(tokio::spawn({
        let cache = built.cache.clone();
        let every = Duration::from_secs(config.housekeeping_interval);
        async move {
            let mut ticker = tokio::time::interval(every);
            loop {
                ticker.tick().await;
                cache.purge_expired();
            }
        }
    }));
    if let Some(handle) = metrics_handle {
        let upkeep = handle.clone();
        tasks.push(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs(5));
            loop {
                ticker.tick().await;
                upkeep.run_upkeep();
            }
        }));
        // The console's traffic charts (`/status/traffic`): the request metrics, sampled.
        let traffic = built.api_state.traffic.clone();
        let sampled = handle.clone();
        tasks.push(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(statemanager_api::traffic::SAMPLE_EVERY);
            loop {
                ticker.tick().await;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0);
                traffic.record(now, &render_all(&sampled));
            }
        }));
        built.api_state.render_metrics = Some(Arc::new(move || render_all(&handle)));
    }

    tasks
}

/// The running listeners.
pub(super) struct Listeners {
    /// One task per listener; one ending early stops the server.
    pub servers: JoinSet<()>,
    /// Tells the listeners to stop accepting and drain.
    pub stop_tx: tokio::sync::watch::Sender<bool>,
    /// The SIGHUP handler.
    pub reload: JoinHandle<()>,
}

/// Starts serving on every bound listener: the API on HTTP and HTTPS, the peer routes and the
/// peer stream on the peer port; and the SIGHUP handler for their certificates. Client
/// connections (HTTP and HTTPS) are spread over the runtime's workers and the connection
/// threads of `spread`; the peer port's stay on the workers, beside the Raft core they feed.
pub(super) fn listeners(
    config: &Config,
    bound: Bound,
    node: &Node,
    api_state: ApiState,
    spread: Spread,
) -> anyhow::Result<Listeners> {
    let peer_routes = statemanager_raft::peer_server::protect(
        statemanager_raft::peer_server::router(node.clone())
            .merge(statemanager_api::forward_router(api_state.clone())),
        node.clone(),
    );
    // A router per serving thread: see `listener::routers`.
    let api = Routers::per_thread(spread.threads(), || app(api_state.clone()));
    // A node that started alone (and so with its default connection thread) and has since
    // had members added serves its new client connections on the workers, as a member
    // started with `peers` does: its fetches go through the read rounds there.
    let spread = if config.connection_threads_unset() && spread.threads() > 0 {
        let node = node.clone();
        spread.workers_only_while(Arc::new(move || !node.is_sole_voter()))
    } else {
        spread
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = tokio::task::JoinSet::new();
    let listener_limits = listener::ListenerLimits {
        max_connections: config.max_connections as usize,
        header_timeout: Duration::from_millis(config.header_timeout_ms),
        max_header_bytes: config.max_header_bytes as usize,
    };
    if let Some((listener, _)) = bound.http {
        let api = api.clone();
        let stop_rx = stop_rx.clone();
        servers.spawn(listener::serve(
            listener,
            api,
            listener_limits,
            None,
            None,
            spread.clone(),
            stop_rx,
        ));
    }
    let mut tls_reload = Vec::new();
    if let Some((listener, _, peer_tls)) = bound.peer {
        // The peer port gets the client listeners' limits too (slow or too many connections
        // from a host that is not a member cost nothing); its body limit is its own.
        let listener = TcpListener::from_std(listener).context("peer listener")?;
        let stop_rx = stop_rx.clone();
        if let (Some(settings), Some(config)) = (bound.peer_tls_settings.clone(), peer_tls.clone())
        {
            tls_reload.push((settings, config));
        }
        // Peers keep pooled connections idle for up to `PEER_POOL_IDLE`; the peer port closes
        // idle ones only after longer, so a pooled connection is never closed under a request.
        let peer_limits = listener::ListenerLimits {
            max_header_bytes: listener_limits.max_header_bytes.max(16 * 1024),
            header_timeout: listener_limits
                .header_timeout
                .max(statemanager_raft::network::PEER_POOL_IDLE * 2),
            ..listener_limits
        };
        let stream_node = node.clone();
        servers.spawn(listener::serve(
            listener,
            Routers::shared(peer_routes),
            peer_limits,
            peer_tls,
            Some(stream_node),
            Spread::default(),
            stop_rx,
        ));
    }
    if let Some((listener, _, rustls_config)) = bound.https {
        let listener = TcpListener::from_std(listener).context("HTTPS listener")?;
        let api = api.clone();
        let stop_rx = stop_rx.clone();
        let tls = rustls_config.clone();
        servers.spawn(listener::serve(
            listener,
            api,
            listener_limits,
            Some(tls),
            None,
            spread,
            stop_rx,
        ));
        tls_reload.push((config.tls.clone(), rustls_config));
    }

    // Always handled: SIGHUP's default action would end the process (`systemctl reload`
    // without TLS stopped the server).
    let reload = tokio::spawn(reload_on_sighup(tls_reload, node.clone()));
    Ok(Listeners {
        servers,
        stop_tx,
        reload,
    })
}

/// Tells the service manager `READY=1` the first time the node is ready (the verdict of
/// `GET /ready`), and until then, in `STATUS=`, why not. Does nothing without a service
/// manager.
pub(super) async fn announce_ready(state: ApiState, notifier: Notifier, serving: String) {
    if !notifier.enabled() {
        return;
    }
    let mut last_reason: Option<String> = None;
    loop {
        match statemanager_api::check_readiness(&state).await {
            Ok(()) => {
                notifier.ready(&serving);
                tracing::debug!("told the service manager READY=1");
                return;
            }
            Err(unready) => {
                let reason = unready.to_string();
                if last_reason.as_deref() != Some(reason.as_str()) {
                    notifier.status(&format!("starting: {reason}"));
                    last_reason = Some(reason);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Re-reads the certificates on every SIGHUP. New connections use the new ones; open
/// connections keep theirs. A bad file keeps the current certificates (and says why).
/// Without TLS there is nothing to reload: SIGHUP is logged and otherwise ignored.
async fn reload_on_sighup(tls: Vec<(tls::TlsSettings, RustlsConfig)>, node: Node) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; certificates will not be reloaded");
        return;
    };
    while hup.recv().await.is_some() {
        if tls.is_empty() {
            tracing::info!("SIGHUP: nothing to reload (TLS is off)");
            continue;
        }
        for (settings, config) in &tls {
            match tls::server_config(settings) {
                Ok(new) => {
                    config.reload_from_config(new);
                    tracing::info!("SIGHUP: TLS certificates reloaded");
                }
                Err(e) => tracing::error!(
                    "SIGHUP: keeping the current TLS certificates: {}",
                    Chain(&e)
                ),
            }
        }
        // The certificate this node presents to its peers, as a client.
        if let Err(e) = node.reload_peer_tls() {
            tracing::error!("SIGHUP: keeping the current peer client certificate: {e}");
        }
    }
}

/// Everything `/metrics` shows: the recorder's metrics, then the request latency histogram
/// the API keeps itself (see `statemanager_api::latency`).
fn render_all(handle: &metrics_exporter_prometheus::PrometheusHandle) -> String {
    let mut text = handle.render();
    statemanager_api::render_request_latency(&mut text);
    text
}
