//! The Prometheus recorder behind `GET /metrics`.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets, seconds: 50 µs … 10 s, those of the request latency histogram.
const SECONDS: &[f64] = &statemanager_api::latency::BOUNDS_SECONDS;

/// Batch sizes: 1 … 1024 operations per log entry.
const OPS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// Installs the global recorder; `None` (with a warning) if one is already installed.
pub fn install() -> Option<PrometheusHandle> {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full("statemanager_batch_ops".into()), OPS)
        });
    match builder.and_then(|b| b.install_recorder()) {
        Ok(handle) => Some(handle),
        Err(e) => {
            tracing::warn!("metrics are not available: {e}");
            None
        }
    }
}
