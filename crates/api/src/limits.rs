//! Per-request limits against hostile clients: the size of the request head, and the request
//! rate of one client address. (The listener bounds connections and slow heads; `body`
//! bounds body size and time.)
//!
//! Refusals (408, 413, 429, 431) are logged at most once per client address and status per
//! minute ([`log_refusal`]), so a flood cannot flood the log too.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::SharedApiState;

/// How often a refusal of one client is logged.
const LOG_INTERVAL: Duration = Duration::from_secs(60);
/// Client entries idle this long are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(120);

/// Logs a refusal of `client` with `status` at WARN, at most once per client and status per
/// [`LOG_INTERVAL`], so a hostile client cannot flood the log.
pub fn log_refusal(client: IpAddr, status: u16, what: &str) {
    static LAST: Mutex<Option<HashMap<(IpAddr, u16), Instant>>> = Mutex::new(None);
    let now = Instant::now();
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    let seen = last.get_or_insert_with(HashMap::new);
    if seen.len() > 10_000 {
        seen.retain(|_, t| now.duration_since(*t) < LOG_INTERVAL);
    }
    match seen.get(&(client, status)) {
        Some(t) if now.duration_since(*t) < LOG_INTERVAL => {}
        _ => {
            seen.insert((client, status), now);
            tracing::warn!(%client, status, "refused: {what} (logged once a minute per client)");
        }
    }
}

/// The request limits of a listener's router.
#[derive(Debug, Clone)]
pub struct RequestLimits {
    /// Largest request head (request line and headers), in bytes.
    pub max_header_bytes: usize,
    /// Time allowed for a request body to arrive.
    pub body_timeout: Duration,
    /// Requests per second per client address; `None`: no limit.
    pub rate: Option<std::sync::Arc<RateLimiter>>,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_header_bytes: 16 * 1024,
            body_timeout: Duration::from_secs(30),
            rate: None,
        }
    }
}

/// 431 `header_too_large` when the request's head is over the limit (`None`: within it).
pub fn head_refusal(state: &SharedApiState, request: &Request) -> Option<Response> {
    let uri = request.uri();
    let uri_len = uri.scheme_str().map_or(0, |s| s.len() + 3)
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(0, |p| p.as_str().len());
    let head = uri_len
        + request
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum::<usize>();
    if head <= state.limits.max_header_bytes {
        return None;
    }
    Some(
        ApiError::HeaderTooLarge(format!(
            "the request line and headers are {head} bytes; the limit is {} (max_header_bytes)",
            state.limits.max_header_bytes
        ))
        .into_response(),
    )
}

/// 429 `rate_limited` (with `Retry-After`) when the client is over `client_rate_limit`
/// (`None`: admitted, or no limit configured).
pub fn rate_refusal(state: &SharedApiState, request: &Request) -> Option<Response> {
    let limiter = state.limits.rate.as_ref()?;
    let ConnectInfo(addr) = request.extensions().get::<ConnectInfo<SocketAddr>>()?;
    if limiter.admit(addr.ip(), Instant::now()) {
        return None;
    }
    let mut response = ApiError::RateLimited(format!(
        "more than {} requests per second from {} (client_rate_limit)",
        limiter.per_second,
        addr.ip()
    ))
    .into_response();
    response
        .headers_mut()
        .insert(axum::http::header::RETRY_AFTER, 1.into());
    Some(response)
}

/// A token bucket per client address: `per_second` tokens a second, bursts of one second's
/// worth.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: u64,
    clients: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    /// A limiter admitting `per_second` requests a second per address (at least 1).
    pub fn new(per_second: u64) -> Self {
        RateLimiter {
            per_second: per_second.max(1),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a request from `ip` at `now` is admitted (and takes a token if so).
    pub fn admit(&self, ip: IpAddr, now: Instant) -> bool {
        let rate = self.per_second as f64;
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if clients.len() > 10_000 {
            clients.retain(|_, b| now.duration_since(b.updated) < FORGET_AFTER);
        }
        let bucket = clients.entry(ip).or_insert(Bucket {
            tokens: rate,
            updated: now,
        });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(rate);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_admits_the_rate_and_refills() {
        let limiter = RateLimiter::new(10);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        assert_eq!((0..20).filter(|_| limiter.admit(a, t0)).count(), 10);
        assert!(limiter.admit(b, t0), "other clients are not affected");
        assert!(!limiter.admit(a, t0 + Duration::from_millis(50)));
        assert!(limiter.admit(a, t0 + Duration::from_millis(150)));
        let later = t0 + Duration::from_secs(5);
        assert_eq!(
            (0..20).filter(|_| limiter.admit(a, later)).count(),
            10,
            "burst capped"
        );
    }
}
