//! The node service on a real data directory, with a manual clock.

use std::sync::Arc;
use std::time::Duration;

use statemanager_core::{
    DomainError, ItemId, Key, Limits, ManualClock, Namespace, StoreOp, Timestamp,
};
use statemanager_raft::{Node, NodeError, NodeOptions};

const T0: u64 = 1_700_000_000;

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(Timestamp::from_micros(T0 * 1_000_000)))
}

fn options(dir: &std::path::Path, clock: Arc<ManualClock>) -> NodeOptions {
    let mut o = NodeOptions::new(dir.to_path_buf(), clock);
    o.election_timeout = (Duration::from_millis(150), Duration::from_millis(300));
    o.heartbeat = Duration::from_millis(50);
    o.purge_interval = Duration::from_millis(50);
    o
}

async fn ready(node: &Node) {
    for _ in 0..200 {
        if node.readiness().is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("node not ready: {:?}", node.readiness());
}

fn id(ns: &str, key: &str) -> ItemId {
    ItemId {
        namespace: Namespace::new(ns).unwrap(),
        key: Key::new(key).unwrap(),
    }
}

fn op(ns: &str, key: &str, data: &str, ttl: f64, ts: Option<f64>) -> StoreOp {
    StoreOp::new(ns, key, data, ttl, ts, &Limits::default()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_fetch_conflict_restart_and_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    {
        let node = Node::start(options(dir.path(), clock.clone()))
            .await
            .unwrap();
        ready(&node).await;
        let stored = node.store(op("ns", "k", "v1", 60.0, None)).await.unwrap();
        assert_eq!(stored.timestamp.as_micros(), T0 * 1_000_000);
        let item = node.fetch(&id("ns", "k")).await.unwrap().unwrap();
        assert_eq!(item.data.as_ref(), "v1");
        let err = node
            .store(op("ns", "k", "old", 60.0, Some((T0 - 10) as f64)))
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            NodeError::Domain(DomainError::Conflict { .. })
        ));
        node.store(op("ns", "short", "x", 5.0, None)).await.unwrap();
        node.shutdown().await;
    }
    // Restart: everything acknowledged is back, from the log.
    let node = Node::start(options(dir.path(), clock.clone()))
        .await
        .unwrap();
    ready(&node).await;
    assert_eq!(
        node.fetch(&id("ns", "k"))
            .await
            .unwrap()
            .unwrap()
            .data
            .as_ref(),
        "v1"
    );
    assert!(node.fetch(&id("ns", "short")).await.unwrap().is_some());
    // Expiry: invisible at once, and purged by the leader's background proposal.
    clock.advance_secs(6);
    assert!(node.fetch(&id("ns", "short")).await.unwrap().is_none());
    for _ in 0..100 {
        if node.status().items == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        node.status().items,
        1,
        "expired item purged through the log"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_stores_share_entries_and_survive_snapshot_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let mut o = options(dir.path(), clock.clone());
    o.snapshot_logs = 20;
    o.limits.max_items = 100_000;
    {
        let node = Node::start(o.clone()).await.unwrap();
        ready(&node).await;
        let mut handles = vec![];
        for task in 0..32 {
            let node = node.clone();
            handles.push(tokio::spawn(async move {
                for i in 0..40 {
                    node.store(op("ns", &format!("k{task}-{i}"), "data", 3600.0, None))
                        .await
                        .unwrap();
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        let status = node.status();
        assert_eq!(status.items, 32 * 40);
        assert!(
            status.last_log_index < 32 * 40,
            "stores were batched: {} entries for {} stores",
            status.last_log_index,
            32 * 40
        );
        let snap = dir.path().join("snapshots/current.snap");
        for _ in 0..400 {
            if snap.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        node.shutdown().await;
    }
    assert!(
        dir.path().join("snapshots/current.snap").exists(),
        "a snapshot was taken"
    );
    let node = Node::start(o).await.unwrap();
    ready(&node).await;
    assert_eq!(node.status().items, 32 * 40);
    assert!(node.fetch(&id("ns", "k31-39")).await.unwrap().is_some());
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_node_on_same_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(options(dir.path(), clock())).await.unwrap();
    let err = Node::start(options(dir.path(), clock()))
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("in use by another statemanager"),
        "{err}"
    );
    node.shutdown().await;
}

/// A start refused for its configuration (`node_id` not in `peers`, no `join`) stores nothing:
/// the same data dir then starts to join, with no cluster id yet (it takes the leader's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_start_stores_no_cluster_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(dir.path(), clock());
    o.node_id = 4;
    o.peer_addr = Some("127.0.0.1:9".into());
    o.peers = [
        (1, "127.0.0.1:7".to_string()),
        (2, "127.0.0.1:8".to_string()),
    ]
    .into();
    let err = Node::start(o).await.err().unwrap();
    assert!(err.to_string().contains("is not in peers"), "{err}");

    let mut o = options(dir.path(), clock());
    o.node_id = 4;
    o.peer_addr = Some("127.0.0.1:9".into());
    o.join = true;
    let node = Node::start(o).await.unwrap();
    assert_eq!(node.cluster_id(), None);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_stats_count_live_items_per_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let node = Node::start(options(dir.path(), clock.clone()))
        .await
        .unwrap();
    ready(&node).await;
    assert!(node.namespace_stats().1.is_empty());
    node.store(op("b", "k1", "12345", 60.0, None))
        .await
        .unwrap();
    node.store(op("b", "k2", "123", 10.0, None)).await.unwrap();
    node.store(op("a", "k", "x", 30.0, None)).await.unwrap();
    let (now, stats) = node.namespace_stats();
    // The leader stamps each batch a microsecond after the last one at least.
    assert_eq!(now.as_micros() / 1_000_000, T0);
    let summary: Vec<(&str, u64, u64, Option<u64>)> = stats
        .iter()
        .map(|s| {
            (
                s.namespace.as_str(),
                s.items,
                s.bytes,
                s.next_expiry.map(|t| t.as_micros() / 1_000_000),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![("a", 1, 1, Some(T0 + 30)), ("b", 2, 8, Some(T0 + 10))]
    );
    // Expired items no longer count, even before they are purged.
    clock.advance_secs(11);
    let (_, stats) = node.namespace_stats();
    assert_eq!(stats[1].items, 1);
    assert_eq!(stats[1].bytes, 5);
    let (free, reserve) = node.disk_space();
    assert!(free.unwrap() > 0);
    assert_eq!(reserve, 0);
    node.shutdown().await;
}
