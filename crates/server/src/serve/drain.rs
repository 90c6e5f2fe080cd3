//! Draining: waits for SIGTERM or SIGINT (or a storage failure, or a listener that stops),
//! then stops taking requests, hands leadership over, lets in-flight requests finish within
//! [`DRAIN_TIMEOUT`], and stops the node.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use statemanager_raft::Node;
use tokio::task::JoinHandle;

use super::spawn::Listeners;
use crate::notify::Notifier;

/// How long in-flight requests get to finish after SIGTERM.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves until told to stop, then drains (see the module docs). `Ok` after a signal.
pub(super) async fn until_stopped(
    node: Node,
    mut listeners: Listeners,
    announce: JoinHandle<()>,
    draining: Arc<AtomicBool>,
    notifier: Notifier,
    tasks: Vec<JoinHandle<()>>,
) -> anyhow::Result<()> {
    let outcome = tokio::select! {
        signal = shutdown_signal() => {
            tracing::info!("received {signal}; draining");
            Ok(())
        }
        reason = node.fatal() => Err(anyhow::anyhow!("storage failure, stopping: {reason}")),
        served = listeners.servers.join_next() => {
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
    let _ = listeners.stop_tx.send(true);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT + Duration::from_secs(1), async {
        while listeners.servers.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("requests still in flight after {DRAIN_TIMEOUT:?}; stopping anyway");
        listeners.servers.abort_all();
    }
    listeners.reload.abort();
    for task in tasks {
        task.abort();
    }
    node.shutdown().await;
    tracing::info!("State Manager stopped");
    outcome
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
