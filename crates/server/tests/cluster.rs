//! Three real processes as one cluster: any node serves, a killed leader is replaced, nothing
//! acknowledged is lost.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{get_json, get_text, post, sample, Cluster};
use serde_json::json;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_node_serves_and_conflicts_are_decided_cluster_wide() {
    let cluster = Cluster::start(3, "");
    cluster.wait_leader().await;
    // Formation sends nothing without the cluster id: every node settles it before it
    // initialises, so no peer refuses its first votes.
    for i in 0..3 {
        let log = cluster.node(i).log();
        assert!(!log.contains("no cluster id"), "node {i}: {log}");
    }
    let c = reqwest::Client::new();
    // Store on each node, read on every node.
    for i in 0..3 {
        let (st, body) = post(
            &c,
            &cluster.node(i).url("/store_data"),
            json!({"namespace":"n","key":format!("k{i}"),"data":format!("from {i}"),"ttl":60}),
        )
        .await;
        assert_eq!(st, 200, "{body}");
    }
    for i in 0..3 {
        for k in 0..3 {
            let (st, got) = post(
                &c,
                &cluster.node(i).url("/fetch_data"),
                json!({"namespace":"n","key":format!("k{k}")}),
            )
            .await;
            assert_eq!(
                (st, got["data"].as_str()),
                (200, Some(format!("from {k}").as_str())),
                "node {i} key {k}"
            );
        }
    }
    // A store on node 1 older than one acknowledged on node 2: 409, the newer one stays.
    let t = now() - 5.0;
    let (st, _) = post(
        &c,
        &cluster.node(1).url("/store_data"),
        json!({"namespace":"n","key":"race","data":"newer","ttl":60,"timestamp":t}),
    )
    .await;
    assert_eq!(st, 200);
    let (st, e) = post(
        &c,
        &cluster.node(0).url("/store_data"),
        json!({"namespace":"n","key":"race","data":"older","ttl":60,"timestamp":t - 10.0}),
    )
    .await;
    assert_eq!(st, 409, "{e}");
    assert_eq!(e["error"]["code"], "conflict");
    let (_, got) = post(
        &c,
        &cluster.node(2).url("/fetch_data"),
        json!({"namespace":"n","key":"race"}),
    )
    .await;
    assert_eq!(got["data"], "newer");
}

/// Writers stream stores to every node while the leader is killed with SIGKILL; every
/// acknowledged store is on every survivor, and on the dead node once it is back; writes
/// resume (generous bound here; the benchmark reports the real gap).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start(3, "");
    let leader = cluster.wait_leader().await;
    let urls: Vec<String> = (0..3).map(|i| cluster.node(i).url("/store_data")).collect();
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut writers = vec![];
    for w in 0..6 {
        let (c, urls) = (c.clone(), urls.clone());
        writers.push(tokio::spawn(async move {
            let mut acked = vec![];
            let deadline = Instant::now() + Duration::from_secs(6);
            let mut i = 0;
            while Instant::now() < deadline && i < 400 {
                let key = format!("w{w}-{i}");
                let url = &urls[(w + i) % urls.len()];
                if let Ok(r) = c
                    .post(url)
                    .body(json!({"namespace":"crash","key":key,"data":"v","ttl":600}).to_string())
                    .send()
                    .await
                {
                    if r.status() == 200 {
                        acked.push(key);
                    }
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let killed_at = Instant::now();
    cluster.kill9(leader);
    let new_leader = cluster.wait_leader().await;
    assert_ne!(new_leader, leader);
    assert!(
        killed_at.elapsed() < Duration::from_secs(10),
        "failover took {:?}",
        killed_at.elapsed()
    );
    let mut acked = vec![];
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    assert!(acked.len() > 100, "writes went on: {}", acked.len());
    let check = |cluster: &Cluster, i: usize| {
        let url = cluster.node(i).url("/fetch_data");
        let keys = acked.clone();
        let c = c.clone();
        async move {
            for key in keys {
                let (st, _) = post(&c, &url, json!({"namespace":"crash","key":key})).await;
                assert_eq!(st, 200, "acknowledged {key} missing via node {i}");
            }
        }
    };
    for i in cluster.running() {
        check(&cluster, i).await;
    }
    cluster.restart(leader);
    cluster.wait_leader().await;
    check(&cluster, leader).await;
}

/// All three killed at once and restarted: nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_cluster_killed_and_restarted_loses_nothing() {
    let mut cluster = Cluster::start(3, "");
    cluster.wait_leader().await;
    let c = reqwest::Client::new();
    let mut acked = vec![];
    for i in 0..60 {
        let url = cluster.node(i % 3).url("/store_data");
        let (st, _) = post(
            &c,
            &url,
            json!({"namespace":"all","key":format!("k{i}"),"data":"v","ttl":600}),
        )
        .await;
        if st == 200 {
            acked.push(format!("k{i}"));
        }
    }
    assert_eq!(acked.len(), 60);
    let leader = cluster.wait_leader().await;
    let term_before = get_json(&c, &cluster.node(leader).url("/status")).await["term"].as_u64();
    for i in 0..3 {
        cluster.kill9(i);
    }
    for i in 0..3 {
        cluster.restart(i);
    }
    let leader = cluster.wait_leader().await;
    // The old leader does not take up its leadership again in the old term: a leader is
    // elected in a new one, whose first entry every read waits for (docs/design.md, "A
    // restarted leader is elected again").
    let term_after = get_json(&c, &cluster.node(leader).url("/status")).await["term"].as_u64();
    assert!(
        term_after > term_before,
        "term {term_before:?} before the restart, {term_after:?} after"
    );
    for key in &acked {
        let (st, _) = post(
            &c,
            &cluster.node(0).url("/fetch_data"),
            json!({"namespace":"all","key":key}),
        )
        .await;
        assert_eq!(st, 200, "{key} lost");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_on_one_node_is_seen_on_all() {
    let cluster = Cluster::start(3, "");
    let leader = cluster.wait_leader().await;
    let c = reqwest::Client::new();
    let follower = (leader + 1) % 3;
    post(
        &c,
        &cluster.node(leader).url("/store_data"),
        json!({"namespace":"d","key":"k","data":"v","ttl":60}),
    )
    .await;
    let (st, _) = post(
        &c,
        &cluster.node(follower).url("/delete_data"),
        json!({"namespace":"d","key":"k"}),
    )
    .await;
    assert_eq!(st, 200);
    let answers = cluster.fetch_on_every_node(&c, "d", "k").await;
    assert_eq!(answers.len(), 3);
    for (i, st, _) in answers {
        assert_eq!(st, 404, "node {i}");
    }
}

/// Stores without a timestamp of their own, on one key, from every node at once: each is
/// stamped by the leader after everything before it, so none may ever get a 409. (The leader
/// stamps its own batches and the batches followers hand over concurrently; a batch applied
/// after one stamped later once gave its first store the same stamp as the item it replaced.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_server_stamped_stores_never_conflict() {
    server_stamped_stores_on_one_key("").await;
}

/// The same with four batches in flight on every node (`write_pipeline`): batches formed,
/// stamped and proposed while earlier ones are still being made durable and replicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_batches_keep_server_stamped_stores_in_order() {
    server_stamped_stores_on_one_key("write_pipeline: 4\n").await;
}

async fn server_stamped_stores_on_one_key(config: &str) {
    let cluster = Cluster::start(3, config);
    cluster.wait_leader().await;
    let urls: Vec<String> = (0..3).map(|i| cluster.node(i).url("/store_data")).collect();
    let until = Instant::now() + Duration::from_secs(4);
    let writers: Vec<_> = (0..24)
        .map(|w| {
            let url = urls[w % 3].clone();
            tokio::spawn(async move {
                let c = reqwest::Client::new();
                let (mut ok, mut conflicts) = (0u32, Vec::new());
                for n in 0..2_000 {
                    if Instant::now() > until {
                        break;
                    }
                    let (st, body) = post(
                        &c,
                        &url,
                        json!({"namespace":"n","key":"hot","data":format!("w{w}-{n}"),"ttl":60}),
                    )
                    .await;
                    match st {
                        200 => ok += 1,
                        409 => conflicts.push(body),
                        other => panic!("writer {w}: {other} {body}"),
                    }
                }
                (ok, conflicts)
            })
        })
        .collect();
    let mut total = 0;
    for w in writers {
        let (ok, conflicts) = w.await.unwrap();
        assert!(conflicts.is_empty(), "409s: {conflicts:?}");
        total += ok;
    }
    eprintln!("{total} stores on one key, no conflict");
    assert!(total > 500, "a meaningful load: {total}");
    // No node of three leads alone: every append went through the log writer thread, so the
    // leader replicated while it wrote.
    let client = reqwest::Client::new();
    for i in 0..3 {
        let metrics = get_text(&client, &cluster.node(i).url("/metrics")).await;
        assert_eq!(
            sample(&metrics, "statemanager_wal_inline_appends_total"),
            0.0,
            "node {i}"
        );
    }
}

/// A dead follower and a stream of writes do not flood the leader's log: openraft 0.10 warns
/// on every failed heartbeat (ten a second per unreachable peer) and, unless its commit
/// notice has a listener, once per write; both are kept out, while the replication errors
/// (logged with a back-off) still say the peer is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_follower_and_writes_do_not_flood_the_log() {
    let mut cluster = Cluster::start(3, "");
    let leader = cluster.wait_leader().await;
    let c = reqwest::Client::new();
    let url = cluster.node(leader).url("/store_data");
    let follower = (leader + 1) % 3;
    cluster.kill9(follower);
    for i in 0..100 {
        let body = json!({"namespace":"n","key":format!("k{i}"),"data":"d","ttl":60});
        assert_eq!(post(&c, &url, body).await.0, 200);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = cluster.node(leader).log();
    let heartbeats = log.matches("failed to send a heartbeat").count();
    let commit_notices = log.matches("ProgressResponder").count();
    assert_eq!((heartbeats, commit_notices), (0, 0), "{log}");
    assert!(
        log.lines().count() < 60,
        "{} log lines in 2 s with one follower down:\n{log}",
        log.lines().count()
    );
}

/// Founders started together take turns to initialise (the lowest id at once), so they elect
/// it in term 1. When every founder initialised at once, each campaigned in term 1, a later
/// candidate (a higher leader id in the same term) deposed the first winner, and formation
/// took up to three more terms and 1.4 s (about half of all starts).
///
/// The turns are an election timeout apart. With the default 250 ms, a loaded machine once
/// opened the first founder's data more than that after the second's, and the second took its
/// turn, as designed (seen beside busy loops); the turns here are 1.5 s apart, so that only
/// the turn-taking, not the machine's speed, decides who leads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn founders_started_together_elect_the_lowest_id_in_term_one() {
    const TURNS_APART: &str = "election_timeout_min_ms: 1500\nelection_timeout_max_ms: 3000\n";
    for start in 0..3 {
        let cluster = Cluster::start_together(3, TURNS_APART);
        let leader = cluster.wait_leader().await;
        let c = reqwest::Client::new();
        let status = get_json(&c, &cluster.node(leader).url("/status")).await;
        assert_eq!(
            (leader, status["term"].as_u64()),
            (0, Some(1)),
            "start {start}: {status}"
        );
    }
}

/// With the first founder down, the next takes its turn after one election timeout and the
/// cluster forms without it; the first joins when it starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn founders_form_the_cluster_without_the_first_one() {
    let mut cluster = Cluster::start_together_without(3, "", &[0]);
    let leader = cluster.wait_leader().await;
    assert_ne!(leader, 0);
    let c = reqwest::Client::new();
    let status = post(
        &c,
        &cluster.node(leader).url("/store_data"),
        json!({"namespace": "ns", "key": "k", "data": "v", "ttl": 600}),
    )
    .await;
    assert_eq!(status.0, 200, "{status:?}");
    cluster.restart(0);
    let leader = cluster.wait_leader().await;
    assert_ne!(leader, 0, "the late founder joined; it did not take over");
    let (code, body) = post(
        &c,
        &cluster.node(0).url("/fetch_data"),
        json!({"namespace": "ns", "key": "k"}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
}
