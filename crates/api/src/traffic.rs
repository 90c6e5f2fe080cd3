//! Request traffic over the last minutes, for the console (`GET /status/traffic`).
//!
//! The server samples its own Prometheus exposition every [`SAMPLE_EVERY`] (see
//! `server::serve`) and keeps [`KEEP`] samples: per endpoint, the request count
//! (`statemanager_http_requests_total`, summed over statuses) and the cumulative latency
//! buckets (`statemanager_http_request_duration_seconds_bucket`). Differences of consecutive
//! samples give each interval's request rate and its p50 and p99 latency, estimated inside
//! the buckets as Prometheus's `histogram_quantile` does. Reading the rendered text, rather
//! than counting in the request path, keeps the hot path as it is: a render every few seconds
//! costs far less than an atomic per request.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use statemanager_proto::{TrafficPoint, TrafficSeries};

/// How often the server samples its metrics.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// Samples kept: five minutes' worth.
pub const KEEP: usize = 150;

/// One endpoint's cumulative counts in one sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    /// Requests answered, every status.
    pub count: f64,
    /// `(upper bound, requests at or below it)`, sorted by bound; the last is `+Inf`.
    pub buckets: Vec<(f64, f64)>,
}

#[derive(Debug)]
struct Sample {
    at: f64,
    endpoints: BTreeMap<String, Counts>,
}

/// The last [`KEEP`] samples.
#[derive(Debug, Default)]
pub struct TrafficHistory {
    samples: Mutex<VecDeque<Sample>>,
}

/// The labels of a metric line's `{...}`, in order (values unescaped only for `\"`, `\\`).
fn labels(text: &str) -> Vec<(&str, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(eq) = rest.find("=\"") {
        let name = rest[..eq].trim_start_matches([',', ' ']);
        let mut value = String::new();
        let mut chars = rest[eq + 2..].char_indices();
        let mut end = rest.len() - eq - 2;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(if n == 'n' { '\n' } else { n });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.push((name, value));
        rest = &rest[eq + 2 + end..];
    }
    out
}

/// The request counts and latency buckets per endpoint in a Prometheus text exposition.
pub fn parse(text: &str) -> BTreeMap<String, Counts> {
    let mut endpoints: BTreeMap<String, Counts> = BTreeMap::new();
    for line in text.lines() {
        let (is_count, rest) =
            if let Some(rest) = line.strip_prefix("statemanager_http_requests_total{") {
                (true, rest)
            } else if let Some(rest) =
                line.strip_prefix("statemanager_http_request_duration_seconds_bucket{")
            {
                (false, rest)
            } else {
                continue;
            };
        let Some(close) = rest.rfind('}') else {
            continue;
        };
        let Ok(value) = rest[close + 1..].trim().parse::<f64>() else {
            continue;
        };
        let labels = labels(&rest[..close]);
        let label = |name: &str| labels.iter().find(|(n, _)| *n == name).map(|(_, v)| v);
        let Some(endpoint) = label("endpoint") else {
            continue;
        };
        let counts = endpoints.entry(endpoint.clone()).or_default();
        if is_count {
            counts.count += value;
        } else {
            let le = match label("le").map(String::as_str) {
                Some("+Inf") => f64::INFINITY,
                Some(le) => match le.parse::<f64>() {
                    Ok(le) => le,
                    Err(_) => continue,
                },
                None => continue,
            };
            match counts.buckets.iter_mut().find(|(b, _)| *b == le) {
                Some((_, n)) => *n += value,
                None => counts.buckets.push((le, value)),
            }
        }
    }
    for counts in endpoints.values_mut() {
        counts.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    endpoints
}

/// The `q`-quantile of the requests counted between `before` and `now` (cumulative buckets),
/// interpolated linearly inside its bucket; `None` without requests. A quantile in the
/// `+Inf` bucket is the highest finite bound.
pub fn quantile(q: f64, now: &[(f64, f64)], before: Option<&[(f64, f64)]>) -> Option<f64> {
    let delta = |le: f64, n: f64| {
        let earlier = before
            .and_then(|b| b.iter().find(|(x, _)| *x == le))
            .map_or(0.0, |(_, n)| *n);
        (n - earlier).max(0.0)
    };
    let counts: Vec<(f64, f64)> = now.iter().map(|&(le, n)| (le, delta(le, n))).collect();
    let total = counts.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(upper, n) in &counts {
        if n >= rank {
            if upper.is_infinite() {
                return Some(lower);
            }
            let share = if n > below {
                (rank - below) / (n - below)
            } else {
                1.0
            };
            return Some(lower + (upper - lower) * share);
        }
        lower = upper;
        below = n;
    }
    Some(lower)
}

impl TrafficHistory {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a sample of `exposition` (Prometheus text) taken at `at` (Unix seconds), dropping
    /// the oldest beyond [`KEEP`].
    pub fn record(&self, at: f64, exposition: &str) {
        let endpoints = parse(exposition);
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        samples.push_back(Sample { at, endpoints });
        while samples.len() > KEEP {
            samples.pop_front();
        }
    }

    /// `GET /status/traffic`'s answer: per endpoint that served a request in the window, one
    /// point per interval between samples: its end `t`, the request `rate` per second, and
    /// the `p50` and `p99` latency in seconds (`null` without requests).
    pub fn answer(&self) -> TrafficSeries {
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let mut series: BTreeMap<&str, (Vec<TrafficPoint>, f64)> = BTreeMap::new();
        for (a, b) in samples.iter().zip(samples.iter().skip(1)) {
            let seconds = b.at - a.at;
            if seconds <= 0.0 {
                continue;
            }
            for (name, now) in &b.endpoints {
                let before = a.endpoints.get(name);
                let requests = (now.count - before.map_or(0.0, |c| c.count)).max(0.0);
                let before = before.map(|c| c.buckets.as_slice());
                let (points, total) = series.entry(name).or_default();
                *total += requests;
                points.push(TrafficPoint {
                    p50: quantile(0.5, &now.buckets, before),
                    p99: quantile(0.99, &now.buckets, before),
                    rate: requests / seconds,
                    t: b.at,
                });
            }
        }
        let endpoints = series
            .into_iter()
            .filter(|(_, (_, total))| *total > 0.0)
            .map(|(name, (points, _))| (name.to_string(), points))
            .collect();
        TrafficSeries {
            endpoints,
            interval: SAMPLE_EVERY.as_secs_f64(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    impl TrafficHistory {
        /// [`TrafficHistory::answer`] as the JSON value it is sent as.
        fn series(&self) -> Value {
            serde_json::to_value(self.answer()).expect("serializes")
        }
    }

    fn exposition(status_count: u64, fast: u64, slow: u64) -> String {
        format!(
            "# TYPE statemanager_http_requests_total counter\n\
             statemanager_http_requests_total{{endpoint=\"/store_data\",status=\"200\"}} {status_count}\n\
             statemanager_http_requests_total{{endpoint=\"/store_data\",status=\"409\"}} 1\n\
             statemanager_http_requests_total{{status=\"200\",endpoint=\"/status\"}} 7\n\
             # TYPE statemanager_http_request_duration_seconds histogram\n\
             statemanager_http_request_duration_seconds_bucket{{endpoint=\"/store_data\",le=\"0.001\"}} {fast}\n\
             statemanager_http_request_duration_seconds_bucket{{endpoint=\"/store_data\",le=\"0.01\"}} {}\n\
             statemanager_http_request_duration_seconds_bucket{{endpoint=\"/store_data\",le=\"+Inf\"}} {}\n\
             statemanager_http_request_duration_seconds_sum{{endpoint=\"/store_data\"}} 0.5\n\
             statemanager_http_request_duration_seconds_count{{endpoint=\"/store_data\"}} {}\n\
             statemanager_items 3\n",
            fast + slow,
            fast + slow,
            fast + slow
        )
    }

    #[test]
    fn parses_counts_over_statuses_and_buckets_in_any_label_order() {
        let p = parse(&exposition(10, 6, 5));
        assert_eq!(p["/store_data"].count, 11.0);
        assert_eq!(
            p["/store_data"].buckets,
            vec![(0.001, 6.0), (0.01, 11.0), (f64::INFINITY, 11.0)]
        );
        assert_eq!(p["/status"].count, 7.0);
        assert!(p["/status"].buckets.is_empty());
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket_of_the_interval() {
        let now = [(0.001, 60.0), (0.01, 100.0), (f64::INFINITY, 100.0)];
        // All 100 requests: p50 is in the first bucket, halfway up to 50/60 of it.
        let p50 = quantile(0.5, &now, None).unwrap();
        assert!((p50 - 0.001 * 50.0 / 60.0).abs() < 1e-12, "{p50}");
        // Since `before`, only the 40 slow ones: both quantiles in the second bucket.
        let before = [(0.001, 60.0), (0.01, 60.0), (f64::INFINITY, 60.0)];
        let p99 = quantile(0.99, &now, Some(&before)).unwrap();
        assert!(p99 > 0.001 && p99 <= 0.01, "{p99}");
        assert_eq!(quantile(0.5, &before, Some(&before)), None);
        // Beyond the last finite bound: that bound.
        let slow = [(0.001, 0.0), (0.01, 0.0), (f64::INFINITY, 5.0)];
        assert_eq!(quantile(0.99, &slow, None), Some(0.01));
    }

    #[test]
    fn series_gives_rate_and_latency_per_interval_for_endpoints_with_traffic() {
        let h = TrafficHistory::new();
        assert_eq!(h.series()["endpoints"], json!({}));
        h.record(100.0, &exposition(10, 6, 5));
        h.record(102.0, &exposition(30, 26, 5));
        h.record(104.0, &exposition(30, 26, 5));
        let s = h.series();
        assert_eq!(s["interval"], 2.0);
        let points = s["endpoints"]["/store_data"].as_array().unwrap();
        assert_eq!(points.len(), 2);
        assert_eq!(points[0]["t"], 102.0);
        assert_eq!(points[0]["rate"], 10.0); // 20 requests in 2 s
        let p99 = points[0]["p99"].as_f64().unwrap();
        assert!(
            p99 > 0.0 && p99 <= 0.001,
            "the 20 new requests were fast: {p99}"
        );
        assert_eq!(points[1]["rate"], 0.0);
        assert_eq!(points[1]["p50"], Value::Null);
        // No request on /status in the window: not listed.
        assert!(s["endpoints"].get("/status").is_none());
        for i in 0..KEEP + 10 {
            h.record(200.0 + i as f64, &exposition(30, 26, 5));
        }
        assert_eq!(h.samples.lock().unwrap().len(), KEEP);
    }
}
