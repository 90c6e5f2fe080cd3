//! The Cache Manager's cache shared by a real 3-node cluster of the binary, driven by one
//! Python process per plugin speaking exactly plugnpy's requests to its LOCAL node
//! (`tests/python/cache_plugin.py`).

mod common;

use std::time::{Duration, Instant};

use common::{post, Cluster};
use serde_json::{json, Value};
use statemanager_cache::owner::owner;

const NS: &str = "PLUGIN#check_shared";
/// Short fault timers, so the fault test runs in seconds.
const FAST_FAULTS: &str = "peer_connection_timeout: 0.5\npeer_refresh_time: 1\n";
/// For the tests without faults: a peer is never marked down because the shared test
/// machine was slow for a second (that would turn an expected hit into a miss).
const NO_FAULTS: &str = "peer_connection_timeout: 10\n";

/// A plugin run on node `i`: `cache_plugin.py args…` with plugnpy's environment for that node.
fn plugin(cluster: &Cluster, i: usize, args: &[&str]) -> tokio::process::Child {
    let port = cluster.node(i).base.rsplit(':').next().unwrap().to_string();
    tokio::process::Command::new("python3")
        .arg(format!(
            "{}/tests/python/cache_plugin.py",
            env!("CARGO_MANIFEST_DIR")
        ))
        .args(args)
        .env("OPSVIEW_CACHE_MANAGER_HOST", "127.0.0.1")
        .env("OPSVIEW_CACHE_MANAGER_PORT", port)
        .env("OPSVIEW_CACHE_MANAGER_NAMESPACE", NS)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 must be installed to run this test")
}

/// Waits for a plugin and parses its JSON line.
async fn outcome(child: tokio::process::Child) -> Value {
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the plugin hung")
        .expect("plugin output");
    let line = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(line.trim()).unwrap_or_else(|_| panic!("plugin said: {line}"))
}

/// Runs a plugin on node `i` to the end; its `result` (panics on a plugnpy error).
async fn run(cluster: &Cluster, i: usize, args: &[&str]) -> Value {
    let out = outcome(plugin(cluster, i, args)).await;
    assert_eq!(out["ok"], true, "plugin on node {} {args:?}: {out}", i + 1);
    out["result"].clone()
}

/// A key whose owner (over all three members) is node id `id`.
fn key_owned_by(id: u64, prefix: &str) -> String {
    (0..)
        .map(|n| format!("{prefix}-{n}"))
        .find(|k| owner(NS, k, &[1, 2, 3]) == Some(id))
        .unwrap()
}

async fn start(extra: &str) -> Cluster {
    let cluster = Cluster::start(3, extra);
    cluster.wait_leader().await;
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_set_on_one_node_is_read_on_every_node_then_expires_everywhere() {
    let cluster = start(NO_FAULTS).await;
    for owner_id in 1..=3 {
        let key = key_owned_by(owner_id, "round-trip");
        assert_eq!(
            run(&cluster, 0, &["set", &key, "computed on node 1", "60"]).await,
            json!("ok")
        );
        let mut expiries = Vec::new();
        for i in 0..3 {
            let got = run(&cluster, i, &["get", &key, "0"]).await;
            assert_eq!(got["data"], "computed on node 1", "node {}: {got}", i + 1);
            assert_eq!(got["lock"], false);
            expiries.push(got["expiry"].as_i64().unwrap());
        }
        assert!(expiries.iter().all(|e| *e == expiries[0]), "{expiries:?}");
    }

    // Cache items and store_data items are apart, on every node.
    let key = key_owned_by(2, "apart");
    run(&cluster, 2, &["set", &key, "cached", "60"]).await;
    let client = reqwest::Client::new();
    let (status, _) = post(
        &client,
        &cluster.node(0).url("/store_data"),
        json!({"namespace": NS, "key": key, "data": "stored", "ttl": 60}),
    )
    .await;
    assert_eq!(status, 200);
    for i in 0..3 {
        assert_eq!(
            run(&cluster, i, &["get", &key, "0"]).await["data"],
            "cached"
        );
    }
    let fetched = cluster.fetch_on_every_node(&client, NS, &key).await;
    for (i, status, body) in fetched {
        assert_eq!((status, &body["data"]), (200, &json!("stored")), "node {i}");
    }

    // A TTL runs out for every node at once (the owner's clock and expiry). The TTL leaves
    // room for a slow plugin start on a busy machine before the first read.
    let key = key_owned_by(3, "ttl");
    run(&cluster, 0, &["set", &key, "short-lived", "6"]).await;
    let seen = run(&cluster, 1, &["get", &key, "0"]).await;
    assert_eq!(seen["data"], "short-lived", "{seen}");
    let deadline = Instant::now() + Duration::from_secs(30);
    'expired: loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut gone = 0;
        for i in 0..3 {
            if run(&cluster, i, &["get", &key, "0"]).await["data"].is_null() {
                gone += 1;
            }
        }
        if gone == 3 {
            break 'expired;
        }
        assert!(Instant::now() < deadline, "never expired everywhere");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_plugins_on_three_nodes_compute_once() {
    let cluster = start(NO_FAULTS).await;
    let markers = tempfile::tempdir().unwrap();
    let dir = markers.path().to_str().unwrap().to_string();
    let key = format!("expensive-{}", std::process::id());
    let plugins: Vec<_> = (0..6)
        .map(|n| plugin(&cluster, n % 3, &["compute", &key, &dir]))
        .collect();
    let mut answers = Vec::new();
    for p in plugins {
        let out = outcome(p).await;
        assert_eq!(out["ok"], true, "{out}");
        answers.push(out["result"].clone());
    }
    assert!(
        answers.iter().all(|a| *a == json!({"value": 42})),
        "{answers:?}"
    );
    let computed = std::fs::read_dir(markers.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("computed-")
        })
        .count();
    assert_eq!(computed, 1, "exactly one plugin computed the value");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_on_node_3_is_woken_by_a_set_on_node_1() {
    let cluster = start(NO_FAULTS).await;
    // Owned by node 2: the lock, the wait and the set all cross the peer network.
    let key = key_owned_by(2, "wake");
    let locker = run(&cluster, 1, &["get", &key, "30"]).await;
    assert_eq!(locker["lock"], true, "{locker}");
    let waiter = plugin(&cluster, 2, &["get", &key, "20"]);
    // The waiter is blocked on the owner's lock meanwhile.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let set_at = Instant::now();
    run(&cluster, 0, &["set", &key, "the value", "60"]).await;
    let woken = outcome(waiter).await;
    let after_set = set_at.elapsed();
    assert_eq!(woken["ok"], true, "{woken}");
    assert_eq!(woken["result"]["data"], "the value", "{woken}");
    assert_eq!(woken["result"]["lock"], false);
    // Well under its 20 s max_wait_time (a generous bound: the machine is shared; the
    // figure is in docs/benchmarks.md).
    assert!(
        woken["secs"].as_f64().unwrap() < 10.0 && after_set < Duration::from_secs(8),
        "woken late: {woken}, {after_set:?} after the set"
    );
}

/// Plugins looping on nodes `nodes` over keys of every owner for `secs` seconds.
fn loops(cluster: &Cluster, nodes: &[usize], secs: &str, tag: &str) -> Vec<tokio::process::Child> {
    let keys: Vec<String> = (1..=3).map(|id| key_owned_by(id, tag)).collect();
    nodes
        .iter()
        .map(|&i| {
            let mut args = vec!["loop", secs];
            args.extend(keys.iter().map(String::as_str));
            plugin(cluster, i, &args)
        })
        .collect()
}

/// Every loop answered every call (misses allowed), never an error, never slowly.
async fn assert_loops_answered(children: Vec<tokio::process::Child>, what: &str) {
    for child in children {
        let out = outcome(child).await;
        assert_eq!(out["ok"], true, "{what}: {out}");
        let r = &out["result"];
        assert!(r["calls"].as_u64().unwrap() > 0, "{what}: {out}");
        assert_eq!(r["errors"], json!([]), "{what}: {out}");
        // Each answer within max_wait_time (0) + peer_connection_timeout (0.5 s); the bound
        // is generous for a shared, noisy machine.
        assert!(r["slowest"].as_f64().unwrap() < 5.0, "{what}: {out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_degrade_to_misses_a_lone_survivor_caches_and_restarted_nodes_rejoin() {
    let mut cluster = start(FAST_FAULTS).await;
    let client = reqwest::Client::new();

    // kill -9 node 1 while plugins on nodes 2 and 3 keep asking.
    let running = loops(&cluster, &[1, 2], "4", "kill");
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.kill9(0);
    assert_loops_answered(running, "one node killed").await;
    // /status shows the dead peer as down, since when.
    let status = common::get_json(&client, &cluster.node(1).url("/status")).await;
    let peer1 = status["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == 1)
        .cloned()
        .unwrap();
    assert_eq!(peer1["cache"], "down", "{status}");
    assert!(peer1["cache_down_since"].as_u64().unwrap() > 1_700_000_000);

    // Node 2 dies too: node 3 alone still caches (no quorum needed).
    cluster.kill9(1);
    let running = loops(&cluster, &[2], "2", "alone");
    assert_loops_answered(running, "two nodes killed").await;
    for owner_id in 1..=3 {
        let key = key_owned_by(owner_id, "survivor");
        run(&cluster, 2, &["set", &key, "kept by the survivor", "60"]).await;
        let got = run(&cluster, 2, &["get", &key, "0"]).await;
        assert_eq!(got["data"], "kept by the survivor", "{got}");
    }

    // Both come back: once every node has rechecked its peers (peer_refresh_time), a value
    // set through any node is seen through all three.
    cluster.restart(0);
    cluster.restart(1);
    cluster.wait_leader().await;
    // The survivor rechecks its peers every peer_refresh_time, traffic or not.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = common::get_json(&client, &cluster.node(2).url("/status")).await;
        let peers = status["peers"].as_array().unwrap().clone();
        if peers.iter().all(|p| p["cache"] == "up") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "peers never seen up again: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for owner_id in 1..=3 {
        let key = key_owned_by(owner_id, "rejoined");
        loop {
            let value = format!("set at {:?}", Instant::now());
            run(
                &cluster,
                (owner_id as usize) % 3,
                &["set", &key, &value, "60"],
            )
            .await;
            let mut seen = 0;
            for i in 0..3 {
                if run(&cluster, i, &["get", &key, "0"]).await["data"] == json!(value) {
                    seen += 1;
                }
            }
            if seen == 3 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "a new set is not visible on every node"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let status = common::get_json(&client, &cluster.node(2).url("/status")).await;
    for p in status["peers"].as_array().unwrap() {
        assert_eq!(p["cache"], "up", "{status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_owner_costs_a_connection_timeout_never_a_hang() {
    let cluster = start(FAST_FAULTS).await;
    let key = key_owned_by(1, "hung");
    run(&cluster, 1, &["set", &key, "before", "60"]).await;
    // Node 1 stops answering (SIGSTOP): its port still accepts connections, nothing answers.
    cluster.signal(0, libc::SIGSTOP);
    let running = loops(&cluster, &[1, 2], "3", "hung");
    // A plugin waiting on a key of the hung owner: answered within its max_wait_time (2 s)
    // plus peer_connection_timeout (0.5 s); the bound below is generous for a busy machine.
    let waiting = outcome(plugin(&cluster, 2, &["get", &key, "2"])).await;
    assert_eq!(waiting["ok"], true, "{waiting}");
    assert!(waiting["secs"].as_f64().unwrap() < 6.0, "{waiting}");
    assert_loops_answered(running, "owner hung").await;
    cluster.signal(0, libc::SIGCONT);
}
