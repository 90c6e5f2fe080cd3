//! `statemanager serve`: configuration, logging, the node, the listener, signals.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use statemanager_api::{app, AdminAccess, ApiState, Namespaces, RateLimiter, RequestLimits};
use statemanager_cache::{Cache, CacheLimits, SharedCache};
use statemanager_core::{Clock, Timestamp};
use statemanager_raft::Node;
use tokio::net::TcpListener;

use crate::config::{self, Config, LogLevel};
use crate::logging::{self, Sink};
use crate::notify::Notifier;
use crate::{listener, tls, ServeArgs};
use axum_server::tls_rustls::RustlsConfig;

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        Timestamp::from_micros(micros)
    }
}

/// How long in-flight requests get to finish after SIGTERM.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Entry point of `serve`: loads the configuration, starts logging and the runtime.
pub fn main(args: ServeArgs) -> ExitCode {
    let loaded = match config::load(args.config.as_deref(), &|var| std::env::var(var).ok()) {
        Ok(loaded) => loaded,
        Err(message) => {
            eprintln!("statemanager: {message}");
            return ExitCode::from(2);
        }
    };
    let mut config = loaded.config;
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(host) = args.host {
        config.host = host;
    }
    if let Some(port) = args.port {
        config.port = port;
    }
    if args.log_stderr {
        config.log_stderr = true;
    }
    if args.debug {
        config.log_level = config.log_level.max_verbose(LogLevel::Debug);
    }
    let sink = if args.debug || config.log_stderr {
        Sink::Stderr
    } else {
        Sink::Syslog
    };
    logging::init(config.log_level, sink);
    let notifier = Notifier::from_env();
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }

    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if config.worker_threads > 0 {
        builder.worker_threads(config.worker_threads as usize);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        "async runtime: {} worker threads",
        runtime.metrics().num_workers()
    );
    match runtime.block_on(run(config, args.addr_file.as_deref(), notifier)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            if sink == Sink::Syslog {
                // The operator starting us by hand should see why, not only syslog.
                eprintln!("statemanager: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

impl LogLevel {
    fn max_verbose(self, other: LogLevel) -> LogLevel {
        let rank = |l: LogLevel| match l {
            LogLevel::Error => 0,
            LogLevel::Warning => 1,
            LogLevel::Notice => 2,
            LogLevel::Debug => 3,
            LogLevel::Trace => 4,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

async fn run(config: Config, addr_file: Option<&Path>, notifier: Notifier) -> anyhow::Result<()> {
    // Before anything records a metric: handles taken earlier would record nowhere.
    let metrics_handle = crate::telemetry::install();
    // Listeners and certificates first: a port in use or a bad certificate is reported
    // before the data directory is touched.
    let http = match config.http_enabled {
        true => {
            let listener = TcpListener::bind((config.host.as_str(), config.port))
                .await
                .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
            let addr = listener.local_addr().context("reading the bound address")?;
            Some((listener, addr))
        }
        false => None,
    };
    let https = match config.tls_enabled {
        true => {
            let server_config = tls::server_config(&config.tls).map_err(anyhow::Error::msg)?;
            let listener = std::net::TcpListener::bind((config.host.as_str(), config.tls_port))
                .with_context(|| format!("cannot listen on {}:{}", config.host, config.tls_port))?;
            listener
                .set_nonblocking(true)
                .context("configuring the HTTPS listener")?;
            let addr = listener.local_addr().context("reading the bound address")?;
            Some((listener, addr, RustlsConfig::from_config(server_config)))
        }
        false => None,
    };
    let peer_credentials = config.peer_credentials()?;
    let peer_tls_settings = config.peer_tls.as_ref().map(|t| tls::TlsSettings {
        cert_file: Some(t.cert_file.clone()),
        key_file: Some(t.key_file.clone()),
        ca_cert: Some(t.ca_cert.clone()),
        check_client_cert: true,
    });
    let peer = match &config.peer_listen {
        Some(addr) => {
            let listener = std::net::TcpListener::bind(addr.as_str())
                .with_context(|| format!("cannot listen on peer_listen {addr}"))?;
            listener
                .set_nonblocking(true)
                .context("configuring the peer listener")?;
            let bound = listener
                .local_addr()
                .context("reading the bound peer address")?;
            let tls = match &peer_tls_settings {
                Some(settings) => Some(RustlsConfig::from_config(
                    tls::server_config(settings).map_err(|e| anyhow::anyhow!("peer_tls: {e}"))?,
                )),
                None => None,
            };
            Some((listener, bound, tls))
        }
        None => None,
    };
    let peer_addr = peer.as_ref().map(|(_, a, _)| *a);
    let http_addr = http.as_ref().map(|(_, a)| *a);
    let https_addr = https.as_ref().map(|(_, a, _)| *a);
    let local = http_addr.or(https_addr).context("no listener")?;

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
        peer_addr.map(|a| a.to_string()),
        peer_credentials.clone(),
        cache.clone(),
        Arc::new(SystemClock),
    );
    let node = Node::start(options)
        .await
        .with_context(|| format!("cannot open data directory {}", config.data_dir.display()))?;

    if let Some(path) = addr_file {
        write_addr_file(path, http_addr, https_addr, peer_addr)?;
    }
    tracing::info!(
        http = %http_addr.map(|a| a.to_string()).unwrap_or_else(|| "off".into()),
        https = %https_addr.map(|a| a.to_string()).unwrap_or_else(|| "off".into()),
        peer = %peer_addr.map(|a| a.to_string()).unwrap_or_else(|| "off".into()),
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
    // Peers marked down are rechecked every peer_refresh_time, traffic or not.
    let recheck = tokio::spawn({
        let shared = shared_cache.clone();
        let every = Duration::from_millis(config.peer_refresh_ms.max(100));
        async move {
            let mut ticker = tokio::time::interval(every);
            loop {
                ticker.tick().await;
                shared.recheck().await;
            }
        }
    });
    let housekeeping = tokio::spawn({
        let cache = cache.clone();
        let every = Duration::from_secs(config.housekeeping_interval);
        async move {
            let mut ticker = tokio::time::interval(every);
            loop {
                ticker.tick().await;
                cache.purge_expired();
            }
        }
    });
    let namespaces = match config.keyring()? {
        Some(keys) => Namespaces::protected(
            keys,
            config.token_rule(),
            config.require_namespace_token,
            Arc::new(SystemClock),
        ),
        None => Namespaces::plain(Arc::new(SystemClock)),
    };
    let mut api_state = ApiState::new(node.clone(), cache, namespaces);
    api_state.shared_cache = Some(shared_cache);
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
    if let Some(handle) = metrics_handle {
        let upkeep = handle.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs(5));
            loop {
                ticker.tick().await;
                upkeep.run_upkeep();
            }
        });
        // The console's traffic charts (`/status/traffic`): the request metrics, sampled.
        let traffic = api_state.traffic.clone();
        let sampled = handle.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(statemanager_api::traffic::SAMPLE_EVERY);
            loop {
                ticker.tick().await;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0);
                traffic.record(now, &sampled.render());
            }
        });
        api_state.render_metrics = Some(Arc::new(move || handle.render()));
    }
    let peer_routes = statemanager_raft::peer_server::protect(
        statemanager_raft::peer_server::router(node.clone())
            .merge(statemanager_api::forward_router(api_state.clone())),
        node.clone(),
    );
    let draining = api_state.draining.clone();
    let serving = format!(
        "serving: http {}, https {}, peer {}",
        http_addr
            .map(|a| a.to_string())
            .unwrap_or_else(|| "off".into()),
        https_addr
            .map(|a| a.to_string())
            .unwrap_or_else(|| "off".into()),
        peer_addr
            .map(|a| a.to_string())
            .unwrap_or_else(|| "off".into()),
    );
    let announce = tokio::spawn(announce_ready(api_state.clone(), notifier.clone(), serving));
    let api = app(api_state);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = tokio::task::JoinSet::new();
    let listener_limits = listener::ListenerLimits {
        max_connections: config.max_connections as usize,
        header_timeout: Duration::from_millis(config.header_timeout_ms),
        max_header_bytes: config.max_header_bytes as usize,
    };
    if let Some((listener, _)) = http {
        let api = api.clone();
        let stop_rx = stop_rx.clone();
        servers.spawn(async move {
            listener::serve(listener, api, listener_limits, None, None, stop_rx)
                .await
                .map_err(|e| format!("HTTP: {e}"))
        });
    }
    let mut tls_reload = Vec::new();
    if let Some((listener, _, peer_tls)) = peer {
        // The peer port gets the client listeners' limits too (slow or too many connections
        // from a host that is not a member cost nothing); its body limit is its own.
        let listener = TcpListener::from_std(listener).context("peer listener")?;
        let stop_rx = stop_rx.clone();
        if let (Some(settings), Some(config)) = (peer_tls_settings.clone(), peer_tls.clone()) {
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
        servers.spawn(async move {
            listener::serve(
                listener,
                peer_routes,
                peer_limits,
                peer_tls,
                Some(stream_node),
                stop_rx,
            )
            .await
            .map_err(|e| format!("peer port: {e}"))
        });
    }
    if let Some((listener, _, rustls_config)) = https {
        let listener = TcpListener::from_std(listener).context("HTTPS listener")?;
        let api = api.clone();
        let stop_rx = stop_rx.clone();
        let tls = rustls_config.clone();
        servers.spawn(async move {
            listener::serve(listener, api, listener_limits, Some(tls), None, stop_rx)
                .await
                .map_err(|e| format!("HTTPS: {e}"))
        });
        tls_reload.push((config.tls.clone(), rustls_config));
    }
    // Always handled: SIGHUP's default action would end the process (`systemctl reload`
    // without TLS stopped the server).
    let reload = tokio::spawn(reload_on_sighup(tls_reload, node.clone()));

    let outcome = tokio::select! {
        signal = shutdown_signal() => {
            tracing::info!("received {signal}; draining");
            Ok(())
        }
        reason = node.fatal() => Err(anyhow::anyhow!("storage failure, stopping: {reason}")),
        served = servers.join_next() => {
            Err(anyhow::anyhow!("a listener stopped: {:?}", served))
        }
    };
    // New requests now get 503; a leader hands over before it goes, so the cluster does not
    // wait an election timeout for a new one.
    announce.abort();
    notifier.stopping(match &outcome {
        Ok(()) => "draining",
        Err(_) => "stopping after an error",
    });
    draining.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(to) = node.hand_over_leadership().await {
        tracing::info!("asked node {to} to take over as leader");
    }
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT + Duration::from_secs(1), async {
        while servers.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("requests still in flight after {DRAIN_TIMEOUT:?}; stopping anyway");
        servers.abort_all();
    }
    reload.abort();
    housekeeping.abort();
    recheck.abort();
    node.shutdown().await;
    tracing::info!("State Manager stopped");
    outcome
}

/// Tells the service manager `READY=1` the first time the node is ready (the verdict of
/// `GET /ready`), and until then, in `STATUS=`, why not. Does nothing without a service
/// manager.
async fn announce_ready(state: ApiState, notifier: Notifier, serving: String) {
    if !notifier.enabled() {
        return;
    }
    let mut last_reason: Option<String> = None;
    loop {
        match statemanager_api::readiness(&state).await {
            Ok(()) => {
                notifier.ready(&serving);
                tracing::debug!("told the service manager READY=1");
                return;
            }
            Err(reason) => {
                if last_reason.as_deref() != Some(reason.as_str()) {
                    notifier.status(&format!("starting: {reason}"));
                    last_reason = Some(reason);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        _ => {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
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
                Err(e) => tracing::error!("SIGHUP: keeping the current TLS certificates: {e}"),
            }
        }
        // The certificate this node presents to its peers, as a client.
        if let Err(e) = node.reload_peer_tls() {
            tracing::error!("SIGHUP: keeping the current peer client certificate: {e}");
        }
    }
}

/// Writes `{"http": "host:port", "https": "host:port", "pid": N}` atomically (tests poll for
/// it); a listener that is off is `null`.
fn write_addr_file(
    path: &Path,
    http: Option<std::net::SocketAddr>,
    https: Option<std::net::SocketAddr>,
    peer: Option<std::net::SocketAddr>,
) -> anyhow::Result<()> {
    let body = serde_json::json!({
        "http": http.map(|a| a.to_string()),
        "https": https.map(|a| a.to_string()),
        "peer": peer.map(|a| a.to_string()),
        "pid": std::process::id(),
    })
    .to_string();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
