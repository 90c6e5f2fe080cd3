//! Answers the console (`/ui`) reads that are not elsewhere: `/status/cluster`,
//! `/status/traffic`, and on the peer port `/forward/node`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::LeaderRef;

/// `GET /forward/node` answer (peer port): one node's part of `/status/cluster`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeSummary {
    /// Its client address.
    pub api_addr: String,
    /// Index of the last log entry it applied.
    pub applied_index: u64,
    /// Bytes of item data it holds.
    pub bytes: u64,
    /// Its ephemeral cache.
    pub cache: NodeCacheSummary,
    /// Raft's commit index, when known.
    pub commit_index: Option<u64>,
    /// Free bytes in its data directory (`null`: unknown).
    pub disk_free: Option<u64>,
    /// The free space it keeps in reserve, in bytes.
    pub disk_reserve: u64,
    /// Items it holds.
    pub items: u64,
    /// Index of its last log entry.
    pub last_log_index: u64,
    /// The leader's node id, when known.
    pub leader: Option<u64>,
    /// Its node id.
    pub node_id: u64,
    /// Whether it can serve linearizable reads and writes now (`GET /ready`).
    pub ready: bool,
    /// Why not, when not (`null` when ready).
    pub reason: Option<String>,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: String,
    /// The current term.
    pub term: u64,
    /// Seconds since it started.
    pub uptime: u64,
    /// Its version.
    pub version: String,
}

/// The `cache` of a [`NodeSummary`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeCacheSummary {
    /// Lookups that found data.
    pub hits: u64,
    /// Items cached.
    pub items: u64,
    /// Compute locks held.
    pub locks: u64,
    /// The cache's size limit, in bytes.
    pub max_size: u64,
    /// Lookups that found nothing.
    pub misses: u64,
    /// How full it is, in percent (one decimal).
    pub percent: f64,
    /// Bytes cached.
    pub size: u64,
    /// Callers waiting for another caller's lock.
    pub waiting: u64,
}

/// `GET /status/cluster` answer: every member as this node's membership lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// What the admin endpoints need on this port: `open`, `secret` or `closed`.
    pub admin: String,
    /// The current leader, when known.
    pub leader: Option<LeaderRef>,
    /// One object per member: `id`, `peer_addr`, `state`, `matched_index`, `up`, `error`
    /// and `lag`, merged with the [`NodeSummary`] the member answered (as it answered it:
    /// a member of another version may send other fields), keys in alphabetical order.
    pub members: Vec<Value>,
    /// The node that answered.
    pub node_id: u64,
    /// The current term.
    pub term: u64,
}

/// `GET /status/traffic` answer: request rate and latency per endpoint over the last
/// minutes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrafficSeries {
    /// Per endpoint that served a request in the window (sorted by name), one point per
    /// interval between samples.
    pub endpoints: BTreeMap<String, Vec<TrafficPoint>>,
    /// Seconds between samples.
    pub interval: f64,
}

/// One interval of a [`TrafficSeries`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrafficPoint {
    /// Median latency in seconds (`null` without requests).
    pub p50: Option<f64>,
    /// 99th percentile latency in seconds (`null` without requests).
    pub p99: Option<f64>,
    /// Requests per second.
    pub rate: f64,
    /// The interval's end (Unix seconds).
    pub t: f64,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn wire<T: Serialize>(value: &T) -> String {
        serde_json::to_string(value).expect("serializes")
    }

    #[test]
    fn node_summary_is_sent_as_before() {
        let answer = NodeSummary {
            api_addr: "127.0.0.1:8001".into(),
            applied_index: 40,
            bytes: 1234,
            cache: NodeCacheSummary {
                hits: 10,
                items: 3,
                locks: 1,
                max_size: 1000,
                misses: 4,
                percent: 30.0,
                size: 300,
                waiting: 2,
            },
            commit_index: Some(41),
            disk_free: None,
            disk_reserve: 1048576,
            items: 9,
            last_log_index: 42,
            leader: Some(1),
            node_id: 2,
            ready: false,
            reason: Some("catching up".into()),
            role: "follower".into(),
            term: 3,
            uptime: 77,
            version: "0.1.0".into(),
        };
        let expected = concat!(
            r#"{"api_addr":"127.0.0.1:8001","applied_index":40,"bytes":1234,"#,
            r#""cache":{"hits":10,"items":3,"locks":1,"max_size":1000,"misses":4,"#,
            r#""percent":30.0,"size":300,"waiting":2},"commit_index":41,"disk_free":null,"#,
            r#""disk_reserve":1048576,"items":9,"last_log_index":42,"leader":1,"node_id":2,"#,
            r#""ready":false,"reason":"catching up","role":"follower","term":3,"uptime":77,"#,
            r#""version":"0.1.0"}"#
        );
        assert_eq!(wire(&answer), expected);
        let old = json!({
            "node_id": 2u64,
            "api_addr": "127.0.0.1:8001",
            "role": "follower",
            "leader": Some(1u64),
            "term": 3u64,
            "commit_index": Some(41u64),
            "applied_index": 40u64,
            "last_log_index": 42u64,
            "items": 9u64,
            "bytes": 1234u64,
            "ready": false,
            "reason": Some("catching up"),
            "uptime": 77u64,
            "version": "0.1.0",
            "disk_free": None::<u64>,
            "disk_reserve": 1048576u64,
            "cache": {
                "items": 3u64,
                "size": 300u64,
                "max_size": 1000u64,
                "percent": 30.0,
                "locks": 1u64,
                "waiting": 2u64,
                "hits": 10u64,
                "misses": 4u64,
            },
        });
        assert_eq!(wire(&old), expected);
    }

    #[test]
    fn cluster_status_is_sent_as_before() {
        let member = json!({"error": "no answer within 1 s", "id": 2, "lag": null, "up": false});
        let answer = ClusterStatus {
            admin: "open".into(),
            leader: Some(LeaderRef { api: None, id: 1 }),
            members: vec![member.clone()],
            node_id: 1,
            term: 3,
        };
        let expected = concat!(
            r#"{"admin":"open","leader":{"api":null,"id":1},"#,
            r#""members":[{"error":"no answer within 1 s","id":2,"lag":null,"up":false}],"#,
            r#""node_id":1,"term":3}"#
        );
        assert_eq!(wire(&answer), expected);
        let leader_api: Option<String> = None;
        let old = json!({
            "node_id": 1u64,
            "leader": Some(1u64).map(|id| json!({"id": id, "api": leader_api})),
            "term": 3u64,
            "admin": "open",
            "members": vec![member],
        });
        assert_eq!(wire(&old), expected);
        let leaderless = ClusterStatus {
            leader: None,
            members: vec![],
            ..answer
        };
        assert_eq!(
            wire(&leaderless),
            r#"{"admin":"open","leader":null,"members":[],"node_id":1,"term":3}"#
        );
    }

    #[test]
    fn traffic_series_is_sent_as_before() {
        let point = |t: f64, rate: f64, p50: Option<f64>, p99: Option<f64>| TrafficPoint {
            p50,
            p99,
            rate,
            t,
        };
        let answer = TrafficSeries {
            endpoints: BTreeMap::from([
                (
                    "/store_data".to_string(),
                    vec![
                        point(102.0, 10.0, Some(0.0005), Some(0.00099)),
                        point(104.0, 0.0, None, None),
                    ],
                ),
                (
                    "/fetch_data".to_string(),
                    vec![point(102.0, 0.5, Some(0.01), Some(0.01))],
                ),
            ]),
            interval: 2.0,
        };
        let expected = concat!(
            r#"{"endpoints":{"/fetch_data":[{"p50":0.01,"p99":0.01,"rate":0.5,"t":102.0}],"#,
            r#""/store_data":[{"p50":0.0005,"p99":0.00099,"rate":10.0,"t":102.0},"#,
            r#"{"p50":null,"p99":null,"rate":0.0,"t":104.0}]},"interval":2.0}"#
        );
        assert_eq!(wire(&answer), expected);
        let old_point = |t: f64, rate: f64, p50: Option<f64>, p99: Option<f64>| json!({"t": t, "rate": rate, "p50": p50, "p99": p99});
        let mut endpoints = serde_json::Map::new();
        endpoints.insert(
            "/store_data".into(),
            Value::Array(vec![
                old_point(102.0, 10.0, Some(0.0005), Some(0.00099)),
                old_point(104.0, 0.0, None, None),
            ]),
        );
        endpoints.insert(
            "/fetch_data".into(),
            Value::Array(vec![old_point(102.0, 0.5, Some(0.01), Some(0.01))]),
        );
        let old = json!({"interval": 2.0, "endpoints": endpoints});
        assert_eq!(wire(&old), expected);
        let empty = TrafficSeries {
            endpoints: BTreeMap::new(),
            interval: 2.0,
        };
        assert_eq!(wire(&empty), r#"{"endpoints":{},"interval":2.0}"#);
    }
}
