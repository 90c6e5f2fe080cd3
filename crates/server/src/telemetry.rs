//! The Prometheus recorder behind `GET /metrics`.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets, seconds: 50 µs … 10 s, those of the request latency histogram.
const SECONDS: &[f64] = &statemanager_api::latency::BOUNDS_SECONDS;

/// Counts per group: 1 … 1024 (operations per log entry, appends per fsync).
const OPS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// The histograms counted in [`OPS`]' buckets. A histogram without buckets of its own would
/// be rendered as a summary (quantiles, no `_bucket` lines), not as `docs/api.md` says.
const COUNTED: [&str; 2] = [
    "statemanager_batch_ops",
    "statemanager_wal_appends_per_fsync",
];

/// Installs the global recorder; `None` (with a warning) if one is already installed.
pub fn install() -> Option<PrometheusHandle> {
    let builder = COUNTED.iter().fold(
        PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS),
        |builder, name| {
            builder.and_then(|b| b.set_buckets_for_metric(Matcher::Full((*name).into()), OPS))
        },
    );
    match builder.and_then(|b| b.install_recorder()) {
        Ok(handle) => Some(handle),
        Err(e) => {
            tracing::warn!("metrics are not available: {e}");
            None
        }
    }
}
