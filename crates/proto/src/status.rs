//! Answers of the probes: `/health`, `/ready` and `/status`.

use serde::{Deserialize, Serialize};

/// `GET /health` answer: `{"status":"ok"}` while the process serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthResponse {
    /// Always `ok`.
    pub status: String,
}

/// `GET /ready` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadyResponse {
    /// Whether this node can serve linearizable reads and writes now.
    pub ready: bool,
    /// Why not, when not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `GET /status` answer: the Cache Manager's fields plus the node's and the store's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusResponse {
    /// Index of the last log entry this node applied.
    pub applied_index: u64,
    /// Bytes of item data the node holds.
    pub bytes: u64,
    /// Items in the ephemeral cache.
    pub cache_items: u64,
    /// Compute locks held in the ephemeral cache.
    pub cache_locks: u64,
    /// How full the ephemeral cache is, in percent (one decimal).
    pub cache_percent: f64,
    /// Bytes in the ephemeral cache.
    pub cache_size: u64,
    /// The node's view of the cluster's clock.
    pub clock: ClockStatus,
    /// Raft's commit index, when known.
    pub commit_index: Option<u64>,
    /// Items the node holds.
    pub items: u64,
    /// Index of the last log entry.
    pub last_log_index: u64,
    /// The current leader, when known.
    pub leader: Option<LeaderRef>,
    /// The largest item in the ephemeral cache, in bytes.
    pub max_item_size: u64,
    /// The store's item limit.
    pub max_items: u64,
    /// The largest item the store accepts, in bytes.
    pub max_persistent_data_item_size: u64,
    /// This node's id.
    pub node_id: u64,
    /// The earliest expiry of an item the node holds (Unix seconds).
    pub oldest_expiry: Option<f64>,
    /// Every member of a cluster of more than one node (empty for a single node).
    pub peers: Vec<PeerStatus>,
    /// This run's reference (identifies the process across restarts).
    #[serde(rename = "ref")]
    pub run_ref: String,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: String,
    /// The current term.
    pub term: u64,
    /// Seconds since the server started.
    pub uptime: u64,
    /// The server's version.
    pub version: String,
}

/// The `clock` of a [`StatusResponse`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClockStatus {
    /// The cluster time this node reads at (Unix seconds).
    pub cluster_time: f64,
    /// The bound on clock offsets, in milliseconds.
    pub max_offset_ms: u64,
    /// Whether this node's clock is off from the majority by more than the bound.
    pub out_of_bounds: bool,
    /// Why this node refuses reads and writes, when its clock is out of bounds.
    pub reason: Option<String>,
}

/// The leader, as `/status` and `/status/cluster` name it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaderRef {
    /// The leader's client address, when known.
    pub api: Option<String>,
    /// The leader's node id.
    pub id: u64,
}

/// One member in a [`StatusResponse`]'s `peers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// Its client address (`null`: it did not say in time).
    pub api_addr: Option<String>,
    /// The shared cache's view of it: `up` or `down`.
    pub cache: String,
    /// Since when the shared cache has it down (Unix seconds).
    pub cache_down_since: Option<u64>,
    /// Its clock minus this node's, in milliseconds, as estimated from peer RPCs
    /// (`null`: unknown).
    pub clock_offset_ms: Option<f64>,
    /// Its node id.
    pub id: u64,
    /// The last log index known to be replicated to it (leader only).
    pub matched_index: Option<u64>,
    /// Its peer address.
    pub peer_addr: String,
    /// `voter` or `learner`.
    pub state: String,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn wire<T: Serialize>(value: &T) -> String {
        serde_json::to_string(value).expect("serializes")
    }

    #[test]
    fn health_response_is_sent_as_before() {
        let answer = HealthResponse {
            status: "ok".into(),
        };
        assert_eq!(wire(&answer), r#"{"status":"ok"}"#);
        assert_eq!(wire(&json!({"status": "ok"})), r#"{"status":"ok"}"#);
    }

    #[test]
    fn ready_response_omits_a_missing_reason() {
        let ready = ReadyResponse {
            ready: true,
            reason: None,
        };
        assert_eq!(wire(&ready), r#"{"ready":true}"#);
        let not = ReadyResponse {
            ready: false,
            reason: Some("catching up".into()),
        };
        assert_eq!(wire(&not), r#"{"ready":false,"reason":"catching up"}"#);
    }

    fn sample_status(peers: Vec<PeerStatus>, leader: Option<LeaderRef>) -> StatusResponse {
        StatusResponse {
            applied_index: 40,
            bytes: 1234,
            cache_items: 3,
            cache_locks: 1,
            cache_percent: 0.1,
            cache_size: 300,
            clock: ClockStatus {
                cluster_time: 1700000000.123456,
                max_offset_ms: 500,
                out_of_bounds: false,
                reason: None,
            },
            commit_index: Some(41),
            items: 9,
            last_log_index: 42,
            leader,
            max_item_size: 120,
            max_items: 1000000,
            max_persistent_data_item_size: 1048576,
            node_id: 1,
            oldest_expiry: Some(1700000300.5),
            peers,
            run_ref: "1-abc".into(),
            role: "leader".into(),
            term: 3,
            uptime: 77,
            version: "0.1.0".into(),
        }
    }

    #[test]
    fn status_response_is_sent_as_before() {
        let peers = vec![
            PeerStatus {
                api_addr: Some("127.0.0.1:8001".into()),
                cache: "up".into(),
                cache_down_since: None,
                clock_offset_ms: None,
                id: 1,
                matched_index: Some(42),
                peer_addr: "127.0.0.1:9001".into(),
                state: "voter".into(),
            },
            PeerStatus {
                api_addr: None,
                cache: "down".into(),
                cache_down_since: Some(1700000000),
                clock_offset_ms: Some(-1.5),
                id: 2,
                matched_index: None,
                peer_addr: "127.0.0.1:9002".into(),
                state: "learner".into(),
            },
        ];
        let leader = Some(LeaderRef {
            api: Some("127.0.0.1:8001".into()),
            id: 1,
        });
        let answer = sample_status(peers, leader);
        let expected = concat!(
            r#"{"applied_index":40,"bytes":1234,"cache_items":3,"cache_locks":1,"#,
            r#""cache_percent":0.1,"cache_size":300,"clock":{"cluster_time":1700000000.123456,"#,
            r#""max_offset_ms":500,"out_of_bounds":false,"reason":null},"commit_index":41,"#,
            r#""items":9,"last_log_index":42,"leader":{"api":"127.0.0.1:8001","id":1},"#,
            r#""max_item_size":120,"max_items":1000000,"max_persistent_data_item_size":1048576,"#,
            r#""node_id":1,"oldest_expiry":1700000300.5,"peers":["#,
            r#"{"api_addr":"127.0.0.1:8001","cache":"up","cache_down_since":null,"#,
            r#""clock_offset_ms":null,"id":1,"matched_index":42,"peer_addr":"127.0.0.1:9001","#,
            r#""state":"voter"},"#,
            r#"{"api_addr":null,"cache":"down","cache_down_since":1700000000,"#,
            r#""clock_offset_ms":-1.5,"id":2,"matched_index":null,"peer_addr":"127.0.0.1:9002","#,
            r#""state":"learner"}],"#,
            r#""ref":"1-abc","role":"leader","term":3,"uptime":77,"version":"0.1.0"}"#
        );
        assert_eq!(wire(&answer), expected);

        let peer = |id: u64,
                    api: Option<&str>,
                    state: &str,
                    matched: Option<u64>,
                    cache: &str,
                    down: Option<u64>,
                    offset: Option<f64>| {
            json!({
                "id": id,
                "peer_addr": format!("127.0.0.1:900{id}"),
                "api_addr": api,
                "state": state,
                "matched_index": matched,
                "cache": cache,
                "cache_down_since": down,
                "clock_offset_ms": offset,
            })
        };
        let peers = vec![
            peer(
                1,
                Some("127.0.0.1:8001"),
                "voter",
                Some(42),
                "up",
                None,
                None,
            ),
            peer(
                2,
                None,
                "learner",
                None,
                "down",
                Some(1700000000),
                Some(-1.5),
            ),
        ];
        let leader_api: Option<String> = Some("127.0.0.1:8001".into());
        let old = json!({
            "ref": "1-abc",
            "version": "0.1.0",
            "uptime": 77u64,
            "peers": json!(peers),
            "cache_items": 3u64,
            "cache_size": 300u64,
            "cache_percent": 0.1,
            "max_item_size": 120u64,
            "cache_locks": 1u64,
            "max_persistent_data_item_size": 1048576u64,
            "node_id": 1u64,
            "role": "leader",
            "leader": Some(1u64).map(|id| json!({"id": id, "api": leader_api})),
            "commit_index": Some(41u64),
            "term": 3u64,
            "last_log_index": 42u64,
            "applied_index": 40u64,
            "items": 9u64,
            "bytes": 1234u64,
            "max_items": 1000000u64,
            "oldest_expiry": Some(1700000300.5),
            "clock": {
                "max_offset_ms": 500u64,
                "out_of_bounds": false,
                "reason": None::<String>,
                "cluster_time": 1700000000.123456,
            },
        });
        assert_eq!(wire(&old), expected);
    }

    #[test]
    fn a_single_node_status_has_no_peers_and_may_have_no_leader() {
        let answer = StatusResponse {
            commit_index: None,
            oldest_expiry: None,
            ..sample_status(vec![], None)
        };
        let text = wire(&answer);
        assert!(text.contains(r#""commit_index":null,"#), "{text}");
        assert!(text.contains(r#""leader":null,"#), "{text}");
        assert!(
            text.contains(r#""oldest_expiry":null,"peers":[],"#),
            "{text}"
        );
    }
}
