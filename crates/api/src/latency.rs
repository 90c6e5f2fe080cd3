//! `statemanager_http_request_duration_seconds{endpoint}`: the request latency histogram,
//! kept here rather than in the metrics recorder.
//!
//! The recorder (`metrics-exporter-prometheus`) keeps every recorded sample in a lock-free
//! bucket (an epoch-guarded push) until the next scrape or upkeep sorts it into the
//! histogram's buckets: 1.8 % of a fetch's CPU in `perf` (one node, 1 KiB items). The
//! endpoints and the bounds are fixed, so this histogram is counted into its buckets at once:
//! each thread that serves requests has its own counters (one writer each, no shared cache
//! line between the serving threads), and a scrape adds the threads' counters up. The text
//! it renders is what the recorder rendered for the same histogram.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The histogram's name.
pub const NAME: &str = "statemanager_http_request_duration_seconds";

/// Bucket bounds, seconds: 50 µs … 10 s (also the recorder's buckets for every other
/// `_seconds` histogram).
pub const BOUNDS_SECONDS: [f64; 17] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// [`BOUNDS_SECONDS`] in nanoseconds.
const BOUNDS_NANOS: [u64; 17] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Buckets per endpoint: one per bound, then the one above the last bound.
const BUCKETS: usize = BOUNDS_NANOS.len() + 1;

/// One endpoint's counters on one thread.
#[derive(Default)]
struct Counters {
    /// Requests per bucket (not cumulative).
    buckets: [AtomicU64; BUCKETS],
    /// Their latencies' sum, nanoseconds.
    sum_nanos: AtomicU64,
}

/// One thread's counters, one set per endpoint.
struct Shard {
    endpoints: Vec<Counters>,
}

/// A histogram per endpoint of a fixed list.
pub struct LatencyHistogram {
    /// The endpoint labels, by index.
    endpoints: &'static [&'static str],
    /// Every thread's shard (a shard lives as long as the histogram).
    shards: Mutex<Vec<Arc<Shard>>>,
}

/// Adds `n` to a counter only this thread writes (a plain load and store: no locked
/// instruction; readers may see the old value, never a torn one).
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

impl LatencyHistogram {
    /// A histogram for `endpoints` (their labels, in the order of their indexes).
    pub const fn new(endpoints: &'static [&'static str]) -> Self {
        LatencyHistogram {
            endpoints,
            shards: Mutex::new(Vec::new()),
        }
    }

    /// A new shard for the calling thread, registered for [`LatencyHistogram::render_into`].
    fn new_shard(&self) -> Arc<Shard> {
        let shard = Arc::new(Shard {
            endpoints: self.endpoints.iter().map(|_| Counters::default()).collect(),
        });
        self.shards
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(shard.clone());
        shard
    }

    /// Appends the histogram in Prometheus' text format to `out`: the endpoints that had
    /// requests, each with its cumulative buckets, sum and count.
    pub fn render_into(&self, out: &mut String) {
        let shards = self
            .shards
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut header = false;
        for (index, endpoint) in self.endpoints.iter().enumerate() {
            let mut buckets = [0u64; BUCKETS];
            let mut sum_nanos = 0u128;
            for shard in &shards {
                let counters = &shard.endpoints[index];
                for (total, count) in buckets.iter_mut().zip(&counters.buckets) {
                    *total += count.load(Ordering::Relaxed);
                }
                sum_nanos += u128::from(counters.sum_nanos.load(Ordering::Relaxed));
            }
            let count: u64 = buckets.iter().sum();
            if count == 0 {
                continue;
            }
            if !header {
                let _ = writeln!(out, "# TYPE {NAME} histogram");
                header = true;
            }
            let mut cumulative = 0;
            for (bound, n) in BOUNDS_SECONDS.iter().zip(buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "{NAME}_bucket{{endpoint=\"{endpoint}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "{NAME}_bucket{{endpoint=\"{endpoint}\",le=\"+Inf\"}} {count}"
            );
            let sum = sum_nanos as f64 / 1e9;
            let _ = writeln!(out, "{NAME}_sum{{endpoint=\"{endpoint}\"}} {sum}");
            let _ = writeln!(out, "{NAME}_count{{endpoint=\"{endpoint}\"}} {count}");
        }
    }
}

/// A thread's slot for its shard of one histogram (a `thread_local!`), filled on the
/// thread's first request.
pub struct ShardSlot(std::cell::OnceCell<Arc<Shard>>);

impl ShardSlot {
    /// An empty slot.
    pub const fn new() -> Self {
        ShardSlot(std::cell::OnceCell::new())
    }
}

impl Default for ShardSlot {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    /// Records one request of endpoint `index` (of the histogram's list) that took
    /// `elapsed`, in the calling thread's shard, kept in `slot` (always the same histogram's).
    pub fn record(&self, slot: &ShardSlot, index: usize, elapsed: Duration) {
        let shard = slot.0.get_or_init(|| self.new_shard());
        let Some(counters) = shard.endpoints.get(index) else {
            return;
        };
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_NANOS
            .iter()
            .position(|bound| nanos <= *bound)
            .unwrap_or(BUCKETS - 1);
        bump(&counters.buckets[bucket], 1);
        bump(&counters.sum_nanos, nanos);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static ENDPOINTS: &[&str] = &["/a", "/b", "unknown"];

    #[test]
    fn bounds_agree() {
        for (s, n) in BOUNDS_SECONDS.iter().zip(BOUNDS_NANOS) {
            assert_eq!((s * 1e9).round() as u64, n);
        }
    }

    #[test]
    fn requests_land_in_their_buckets_and_threads_add_up() {
        let histogram: &'static LatencyHistogram =
            Box::leak(Box::new(LatencyHistogram::new(ENDPOINTS)));
        let slot = ShardSlot::new();
        histogram.record(&slot, 0, Duration::from_micros(30));
        histogram.record(&slot, 0, Duration::from_micros(50)); // on the bound: in it
        histogram.record(&slot, 0, Duration::from_millis(3));
        histogram.record(&slot, 0, Duration::from_secs(20)); // above the last bound
        histogram.record(&slot, 7, Duration::from_secs(1)); // no such endpoint: ignored
        std::thread::spawn(move || {
            let slot = ShardSlot::new();
            histogram.record(&slot, 0, Duration::from_micros(80));
            histogram.record(&slot, 2, Duration::from_millis(1));
        })
        .join()
        .unwrap();
        let mut text = String::new();
        histogram.render_into(&mut text);
        let line = |s: &str| {
            assert!(text.lines().any(|l| l == s), "{s} missing from\n{text}");
        };
        assert_eq!(text.matches("# TYPE").count(), 1, "{text}");
        line("statemanager_http_request_duration_seconds_bucket{endpoint=\"/a\",le=\"0.00005\"} 2");
        line("statemanager_http_request_duration_seconds_bucket{endpoint=\"/a\",le=\"0.0001\"} 3");
        line("statemanager_http_request_duration_seconds_bucket{endpoint=\"/a\",le=\"0.0025\"} 3");
        line("statemanager_http_request_duration_seconds_bucket{endpoint=\"/a\",le=\"0.005\"} 4");
        line("statemanager_http_request_duration_seconds_bucket{endpoint=\"/a\",le=\"10\"} 4");
        line("statemanager_http_request_duration_seconds_bucket{endpoint=\"/a\",le=\"+Inf\"} 5");
        line("statemanager_http_request_duration_seconds_count{endpoint=\"/a\"} 5");
        line("statemanager_http_request_duration_seconds_sum{endpoint=\"/a\"} 20.00316");
        line("statemanager_http_request_duration_seconds_bucket{endpoint=\"unknown\",le=\"0.001\"} 1");
        line("statemanager_http_request_duration_seconds_count{endpoint=\"unknown\"} 1");
        assert!(!text.contains("\"/b\""), "no requests, no lines: {text}");
        // What the console's traffic parser reads from it.
        let counts = crate::traffic::parse(&text);
        assert!(counts.contains_key("/a"), "{counts:?}");
    }

    #[test]
    fn nothing_recorded_renders_nothing() {
        let histogram = LatencyHistogram::new(ENDPOINTS);
        let mut text = String::new();
        histogram.render_into(&mut text);
        assert!(text.is_empty());
    }
}
