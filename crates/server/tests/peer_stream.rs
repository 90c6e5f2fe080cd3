//! The peer stream on a real cluster: nodes replicate over it, and a process without the
//! cluster's credentials gets nothing from it (the HTTP routes' rules, checked in
//! `peer_auth.rs`, hold for the stream too).

mod common;

use std::time::Duration;

use common::{get_json, get_text, post, Cluster};
use serde_json::json;
use statemanager_raft::cluster_time::CallStamp;
use statemanager_raft::leader_read::LeaderReadRequest;
use statemanager_raft::peer_stream::client::split_answer;
use statemanager_raft::peer_stream::frame::{self, FrameBuf};
use statemanager_raft::peer_stream::{Hello, Kind, ANSWERED, PREFACE, REFUSED, VERSION};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const SECRET: &str = "stream-cluster-secret-0123456789";

/// Opens a stream connection and says hello; the hello's answer.
async fn hello(
    peer: &str,
    version: u32,
    authorization: Option<String>,
) -> (TcpStream, Result<(), String>) {
    let mut conn = TcpStream::connect(peer).await.unwrap();
    let mut f = FrameBuf::with_capacity(64);
    f.encode(&Hello {
        version,
        authorization,
    })
    .unwrap();
    let mut opening = PREFACE.to_vec();
    opening.extend(f.finish().unwrap());
    frame::write(&mut conn, &opening).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), frame::read(&mut conn, 4096))
        .await
        .expect("an answer to the hello")
        .expect("a frame");
    (conn, postcard::from_bytes(&answer).unwrap())
}

/// After a refused hello the server closes the connection.
async fn assert_closed(conn: &mut TcpStream) {
    let mut byte = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut byte))
        .await
        .expect("closed, not left open")
        .unwrap_or(0);
    assert_eq!(n, 0, "the connection must be closed");
}

/// One call (version 2: with a clock stamp); the answer's status byte and body (its clock
/// stamp taken off).
async fn call(conn: &mut TcpStream, kind: Kind, cluster_id: Option<&str>) -> (u8, Vec<u8>) {
    call_with(conn, kind, cluster_id, &()).await
}

/// One call with `request` as its body, as [`call`].
async fn call_with<R: serde::Serialize>(
    conn: &mut TcpStream,
    kind: Kind,
    cluster_id: Option<&str>,
    request: &R,
) -> (u8, Vec<u8>) {
    let mut f = FrameBuf::with_capacity(64);
    f.extend(&[kind as u8]);
    f.encode(&cluster_id.map(str::to_string)).unwrap();
    f.encode(&CallStamp::default()).unwrap();
    f.encode(request).unwrap();
    frame::write(conn, &f.finish().unwrap()).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), frame::read(conn, 1 << 20))
        .await
        .expect("an answer")
        .expect("a frame");
    if answer[0] == ANSWERED {
        let (stamp, body) = split_answer(&answer[1..]).expect("an answer stamp");
        assert!(stamp.sent_at >= stamp.received_at && stamp.received_at > 0);
        return (ANSWERED, body.to_vec());
    }
    (answer[0], answer[1..].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_stream_refuses_outsiders_and_serves_members() {
    let cluster = Cluster::start(3, &format!("cluster_secret: {SECRET}\n"));
    let leader = cluster.wait_leader().await;
    let peer = cluster.peer_addr(leader);
    let client = reqwest::Client::new();

    // Members replicate over the stream (peer_stream_connects_total counts their connections).
    let (status, v) = post(
        &client,
        &cluster.node((leader + 1) % 3).url("/store_data"),
        json!({"namespace": "PLUGIN#stream", "key": "k", "data": "v", "ttl": 600}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let counted = |metrics: &str, name: &str| {
        metrics
            .lines()
            .any(|l| l.starts_with(&format!("{name} ")) && !l.ends_with(" 0"))
    };
    let metrics = get_text(&client, &cluster.node(leader).url("/metrics")).await;
    assert!(
        counted(&metrics, "statemanager_peer_stream_connects_total"),
        "{metrics}"
    );
    // The leader timed the batch it committed; the follower the batch it handed over.
    assert!(
        counted(&metrics, "statemanager_batch_commit_seconds_count"),
        "{metrics}"
    );
    // A fetch on the follower takes a read-index round, counted with the reads it served.
    let (status, v) = post(
        &client,
        &cluster.node((leader + 1) % 3).url("/fetch_data"),
        json!({"namespace": "PLUGIN#stream", "key": "k"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let follower = get_text(&client, &cluster.node((leader + 1) % 3).url("/metrics")).await;
    assert!(
        counted(&follower, "statemanager_batch_forward_seconds_count")
            && counted(&follower, "statemanager_batch_ops_count")
            && counted(&follower, "statemanager_read_rounds_total")
            && counted(&follower, "statemanager_read_round_reads_total"),
        "{follower}"
    );
    // Three voters: the leader answered the follower's request without a heartbeat round
    // (the request counts as the follower's acknowledgment; see `follower_read`).
    let metrics = get_text(&client, &cluster.node(leader).url("/metrics")).await;
    assert!(
        counted(&metrics, "statemanager_follower_reads_total{round=\"no\"}")
            && !counted(&metrics, "statemanager_follower_reads_total{round=\"yes\"}"),
        "{metrics}"
    );

    // A fetch on the leader: one follower vouched for it, without a heartbeat round (see
    // `leader_read`). A follower whose answer takes over 100 ms (a loaded machine) costs
    // one round a heartbeat round, so up to five fetches are made.
    let vouched = "statemanager_leader_read_rounds_total{vouched=\"yes\"}";
    let mut metrics = String::new();
    for _ in 0..5 {
        let (status, v) = post(
            &client,
            &cluster.node(leader).url("/fetch_data"),
            json!({"namespace": "PLUGIN#stream", "key": "k"}),
        )
        .await;
        assert_eq!(status, 200, "{v}");
        metrics = get_text(&client, &cluster.node(leader).url("/metrics")).await;
        if counted(&metrics, vouched) {
            break;
        }
    }
    assert!(counted(&metrics, vouched), "{metrics}");

    // No secret, a wrong one, another version: refused, and the connection closed.
    for (version, auth) in [
        (VERSION, None),
        (VERSION, Some("Bearer wrong-secret-0123456789".to_string())),
        (VERSION + 1, Some(format!("Bearer {SECRET}"))),
    ] {
        let (mut conn, answer) = hello(&peer, version, auth.clone()).await;
        assert!(answer.is_err(), "version {version}, {auth:?}: {answer:?}");
        assert_closed(&mut conn).await;
    }

    // With the secret: calls without this cluster's id are refused, and change nothing.
    let info = client
        .get(format!("http://{peer}/peer/info"))
        .bearer_auth(SECRET)
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let cluster_id = info["cluster_id"].as_str().expect("cluster id").to_string();
    let (mut conn, answer) = hello(&peer, VERSION, Some(format!("Bearer {SECRET}"))).await;
    assert_eq!(answer, Ok(()));
    for theirs in [None, Some("another-cluster")] {
        let (status, body) = call(&mut conn, Kind::ReadIndex, theirs).await;
        assert_eq!(status, REFUSED, "cluster id {theirs:?}");
        let reason: String = postcard::from_bytes(&body).unwrap();
        assert!(reason.contains("cluster"), "{reason}");
    }
    // The same connection, with the right id: the leader answers a read index.
    let (status, body) = call(&mut conn, Kind::ReadIndex, Some(&cluster_id)).await;
    assert_eq!(status, ANSWERED);
    let index: Result<u64, String> = postcard::from_bytes(&body).unwrap();
    assert!(index.unwrap() > 0);
    // A follower vouches for the leader's reads only in the leader's own term and name.
    let leading = get_json(&client, &cluster.node(leader).url("/status")).await;
    let term = leading["term"].as_u64().expect("a term");
    let leader_id = leading["node_id"].as_u64().expect("a node id");
    let follower = (leader + 1) % 3;
    let (mut to_follower, answer) = hello(
        &cluster.peer_addr(follower),
        VERSION,
        Some(format!("Bearer {SECRET}")),
    )
    .await;
    assert_eq!(answer, Ok(()));
    let follower_id = follower as u64 + 1;
    let third_id = 6 - leader_id - follower_id;
    let right = LeaderReadRequest {
        term,
        leader: leader_id,
        follower: follower_id,
    };
    let cases = [
        (right, true),
        (
            LeaderReadRequest {
                leader: third_id,
                ..right
            },
            false,
        ),
        (
            LeaderReadRequest {
                term: term + 1,
                ..right
            },
            false,
        ),
        (
            LeaderReadRequest {
                term: term - 1,
                ..right
            },
            false,
        ),
        // Meant for another follower (reached at this one's address by mistake).
        (
            LeaderReadRequest {
                follower: third_id,
                ..right
            },
            false,
        ),
    ];
    for (ask, vouched) in cases {
        let (status, body) =
            call_with(&mut to_follower, Kind::LeaderRead, Some(&cluster_id), &ask).await;
        assert_eq!(status, ANSWERED, "{ask:?}");
        let answer: bool = postcard::from_bytes(&body).unwrap();
        assert_eq!(answer, vouched, "{ask:?}");
    }
    // A version 1 call carries no clock stamp, so the leader's time has not reached the
    // follower before its check: never vouched for.
    let (mut unstamped, answer) = hello(
        &cluster.peer_addr(follower),
        1,
        Some(format!("Bearer {SECRET}")),
    )
    .await;
    assert_eq!(answer, Ok(()));
    let mut f = FrameBuf::with_capacity(64);
    f.extend(&[Kind::LeaderRead as u8]);
    f.encode(&Some(cluster_id.clone())).unwrap();
    f.encode(&right).unwrap();
    frame::write(&mut unstamped, &f.finish().unwrap())
        .await
        .unwrap();
    let answer = frame::read(&mut unstamped, 1 << 20).await.unwrap();
    assert_eq!(answer[0], ANSWERED);
    assert!(!postcard::from_bytes::<bool>(&answer[1..]).unwrap());

    // An undecodable request is refused; an unknown call too.
    let mut f = FrameBuf::with_capacity(8);
    f.extend(&[Kind::Append as u8]);
    f.encode(&Some(cluster_id.clone())).unwrap();
    f.extend(&[0xff, 0xff, 0xff]);
    frame::write(&mut conn, &f.finish().unwrap()).await.unwrap();
    let answer = frame::read(&mut conn, 1 << 20).await.unwrap();
    assert_eq!(answer[0], REFUSED);
    let mut f = FrameBuf::with_capacity(8);
    f.extend(&[99]);
    frame::write(&mut conn, &f.finish().unwrap()).await.unwrap();
    let answer = frame::read(&mut conn, 1 << 20).await.unwrap();
    assert_eq!(answer[0], REFUSED);

    // A frame longer than any peer request: the connection is closed, the node unharmed.
    frame::write(&mut conn, &u32::MAX.to_le_bytes())
        .await
        .unwrap();
    assert_closed(&mut conn).await;
    // Garbage after the preface, and a connection that stops half-way through a hello.
    let mut conn = TcpStream::connect(&peer).await.unwrap();
    let mut garbage = PREFACE.to_vec();
    garbage.extend_from_slice(&[7; 100]);
    frame::write(&mut conn, &garbage).await.unwrap();
    assert_closed(&mut conn).await;
    let mut conn = TcpStream::connect(&peer).await.unwrap();
    frame::write(&mut conn, &PREFACE[..5]).await.unwrap();
    drop(conn);

    // The cluster kept working throughout, and the HTTP routes still answer on the same port.
    for (i, key) in ["a", "b", "c"].into_iter().enumerate() {
        let (status, v) = post(
            &client,
            &cluster.node(i).url("/store_data"),
            json!({"namespace": "PLUGIN#stream", "key": key, "data": key, "ttl": 600}),
        )
        .await;
        assert_eq!(status, 200, "node {i}: {v}");
    }
    let answers = cluster
        .fetch_on_every_node(&client, "PLUGIN#stream", "c")
        .await;
    assert_eq!(answers.len(), 3);
    for (i, status, v) in answers {
        assert_eq!((status, v["data"].as_str()), (200, Some("c")), "node {i}");
    }
    let status = get_json(&client, &cluster.node(leader).url("/status")).await;
    assert_eq!(status["role"], "leader");
}

/// A 3-node cluster whose leader has stored `k` = `v` in `namespace`: the cluster, the
/// leader's index and a client.
async fn three_nodes_holding_one_item(namespace: &str) -> (Cluster, usize, reqwest::Client) {
    let cluster = Cluster::start(3, "");
    let leader = cluster.wait_leader().await;
    let client = reqwest::Client::new();
    let (status, v) = post(
        &client,
        &cluster.node(leader).url("/store_data"),
        json!({"namespace": namespace, "key": "k", "data": "v", "ttl": 600}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    (cluster, leader, client)
}

/// Fetches the item `three_nodes_holding_one_item` stored, through `url`'s node, and checks
/// it; `fetch` names the attempt in a failure.
async fn fetch_the_item(client: &reqwest::Client, url: &str, namespace: &str, fetch: usize) {
    let (status, v) = post(client, url, json!({"namespace": namespace, "key": "k"})).await;
    assert_eq!(
        (status, v["data"].as_str()),
        (200, Some("v")),
        "fetch {fetch}: {v}"
    );
}

/// A leader asks one follower to vouch for its reads (see `leader_read`), the lowest id
/// first. With that follower down, the leader's fetch is answered after a heartbeat round of
/// the survivors, and the next round asks the other follower.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_asked_follower_is_down_reads_after_a_round_then_asks_the_other() {
    let (mut cluster, leader, client) = three_nodes_holding_one_item("PLUGIN#vouch").await;
    // Node i has id i + 1: the follower with the lowest id is asked first.
    let lowest = (0..3).find(|i| *i != leader).expect("a follower");
    cluster.kill9(lowest);
    let sample = |metrics: &str, vouched: &str| {
        common::sample(
            metrics,
            &format!("statemanager_leader_read_rounds_total{{vouched=\"{vouched}\"}}"),
        )
    };
    // The first fetch asks the dead follower, then runs a round; the next ones ask the
    // survivor (up to five: an answer over 100 ms on a loaded machine costs a round).
    let mut metrics = String::new();
    for fetch in 0..6 {
        let asked = std::time::Instant::now();
        let url = cluster.node(leader).url("/fetch_data");
        fetch_the_item(&client, &url, "PLUGIN#vouch", fetch).await;
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "fetch {fetch} took {:?}",
            asked.elapsed()
        );
        metrics = get_text(&client, &cluster.node(leader).url("/metrics")).await;
        if fetch == 0 {
            assert_eq!(
                (sample(&metrics, "yes"), sample(&metrics, "no")),
                (0.0, 1.0),
                "after the first fetch: {metrics}"
            );
        } else if sample(&metrics, "yes") >= 1.0 {
            break;
        }
    }
    assert!(sample(&metrics, "yes") >= 1.0, "{metrics}");
}

/// A follower checks the vote it answers by before it serves its reads (see
/// `log_store::saved_vote`). After a restart that vote is the one read from disk, so the
/// follower serves its fetches itself from the start instead of forwarding them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_follower_serves_its_fetches_without_forwarding() {
    let (mut cluster, leader, client) = three_nodes_holding_one_item("PLUGIN#restart").await;
    let follower = (leader + 1) % 3;
    cluster.restart(follower);
    assert_eq!(cluster.wait_leader().await, leader, "the leader stays");
    let url = cluster.node(follower).url("/fetch_data");
    for fetch in 0..5 {
        fetch_the_item(&client, &url, "PLUGIN#restart", fetch).await;
    }
    let metrics = get_text(&client, &cluster.node(follower).url("/metrics")).await;
    assert!(
        common::sample(&metrics, "statemanager_read_rounds_total") >= 1.0,
        "{metrics}"
    );
    assert!(
        !metrics.contains("statemanager_follower_rounds_forwarded_total"),
        "{metrics}"
    );
}
