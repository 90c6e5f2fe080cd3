//! Cluster operations on real processes: membership changes at run time, a paused node,
//! catching up by snapshot, and answering quickly without a quorum.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{binary, cli, post, Cluster, Server};
use serde_json::json;

/// An HTTP client whose requests give up after `secs` seconds.
fn client(secs: u64) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(secs))
        .build()
        .unwrap()
}

async fn items(c: &reqwest::Client, url: &str) -> u64 {
    let v: serde_json::Value = c.get(url).send().await.unwrap().json().await.unwrap();
    v["items"].as_u64().unwrap()
}

async fn wait_items(c: &reqwest::Client, url: &str, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while items(c, url).await != want {
        assert!(
            Instant::now() < deadline,
            "{url} never reached {want} items"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_a_fourth_node_and_remove_one() {
    let mut cluster = Cluster::start(3, "");
    let leader = cluster.wait_leader().await;
    let c = reqwest::Client::new();
    for i in 0..20 {
        store(&c, cluster.node(i % 3), "n", &format!("k{i}")).await;
    }
    let joiner = cluster.start_joiner(4, "");
    let entry = cluster.peer_addr((leader + 1) % 3); // a follower: the CLI follows it to the leader
    let (ok, out) = cli(&["cluster", "--peer", &entry, "add", "4", &joiner]);
    assert!(ok, "{out}");
    let (ok, out) = cli(&["cluster", "--peer", &entry, "--json", "status"]);
    assert!(ok, "{out}");
    let status: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(status["members"].as_array().unwrap().len(), 4, "{status}");
    // The new node has the data locally and serves clients.
    wait_items(&c, &cluster.node(3).url("/status"), 20).await;
    let (st, _) = store(&c, cluster.node(3), "n", "via4").await;
    assert_eq!(st, 200);
    // Remove a follower that is not the entry point.
    let victim = (0..3)
        .find(|i| *i != leader && cluster.peer_addr(*i) != entry)
        .unwrap();
    let (ok, out) = cli(&[
        "cluster",
        "--peer",
        &entry,
        "remove",
        &(victim + 1).to_string(),
    ]);
    assert!(ok, "{out}");
    cluster.kill9(victim);
    let (ok, out) = cli(&["cluster", "--peer", &entry, "status"]);
    assert!(ok && out.lines().count() == 5, "{out}");
    let (st, _) = store(&c, cluster.node(3), "n", "after").await;
    assert_eq!(st, 200, "three voters left, writes go on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_nodes_do_not_stop_the_rest() {
    let cluster = Cluster::start(3, "");
    let leader = cluster.wait_leader().await;
    let c = client(10);
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    cluster.signal(follower, libc::SIGSTOP);
    for i in 0..10 {
        let (st, _) = store(&c, cluster.node(other), "p", &format!("f{i}")).await;
        assert_eq!(st, 200, "a paused follower does not stop writes");
    }
    cluster.signal(follower, libc::SIGCONT);
    wait_items(&c, &cluster.node(follower).url("/status"), 10).await;
    // Pause the leader: the others elect a new one and go on.
    cluster.signal(leader, libc::SIGSTOP);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut stored = false;
    while Instant::now() < deadline {
        let (st, _) = store(&c, cluster.node(other), "p", "after").await;
        if st == 200 {
            stored = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stored, "writes resumed without the paused leader");
    cluster.signal(leader, libc::SIGCONT);
    wait_items(&c, &cluster.node(leader).url("/status"), 11).await;
}

/// A read on a leader whose only live follower is paused for longer than the leader lease
/// (500 ms) but shorter than the read timeout (`commit_timeout_ms`, 5 s here: room for a
/// resumed debug build on a loaded machine) waits for it, and is answered: openraft
/// gives up a read round after the lease, and the reader begins another while the read
/// timeout lasts (the cluster benchmark once saw a 503 `no_quorum` for a read with two
/// healthy nodes of three).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_waits_out_a_follower_paused_longer_than_the_lease() {
    let mut cluster = Cluster::start(3, "commit_timeout_ms: 5000\n");
    let leader = cluster.wait_leader().await;
    let c = client(10);
    let follower = (leader + 1) % 3;
    cluster.kill9((leader + 2) % 3);
    let (st, e) = store(&c, cluster.node(leader), "w", "k").await;
    assert_eq!(st, 200, "two of three nodes make a quorum: {e}");
    for round in 0..2 {
        cluster.signal(follower, libc::SIGSTOP);
        let started = Instant::now();
        let url = cluster.node(leader).url("/fetch_data");
        let fetch = post(&c, &url, json!({"namespace":"w","key":"k"}));
        let resume = async {
            // Past the lease (500 ms), well within the read timeout (5 s).
            tokio::time::sleep(Duration::from_millis(700)).await;
            cluster.signal(follower, libc::SIGCONT);
        };
        let ((st, e), ()) = tokio::join!(fetch, resume);
        assert_eq!(st, 200, "round {round}: {e}");
        assert_eq!(e["data"], "v", "round {round}: {e}");
        assert!(
            started.elapsed() >= Duration::from_millis(500),
            "round {round}: answered while the follower was paused ({:?})",
            started.elapsed()
        );
        // Let the follower settle before the next round.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The survivor with the shorter log campaigns first (it was paused while the others
/// committed more, then resumed after the leader died); the up-to-date survivor refuses it
/// and, its leader being silent for longer than the lease, campaigns at once above the
/// candidate's term instead of waiting out its own timeout (see `raft::takeover`).
///
/// The order is a race the test sets up but cannot force: the paused node is resumed 0.3 s
/// after the lease (3 s) has passed on the other, whose own first attempt comes at a random
/// point of the lease plus 0–1 s. The resumed node's timer has long run out, so it asks first
/// unless the machine holds it back; once, on a loaded CI machine, it did not ask within 3 s
/// of its resumption and the other won on its own timer. Such a run did not show the rule
/// either way, so the scenario is run again on a fresh cluster, up to three times; one run
/// must show the refusal (with the rule broken, every run ends on the other's own timer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_up_to_date_survivor_takes_over_when_a_shorter_log_campaigns_first() {
    const ATTEMPTS: usize = 3;
    const REFUSED: &str = "refused a candidate with a shorter log while the leader is silent";
    let mut logs = Vec::new();
    for _ in 0..ATTEMPTS {
        let log = survivor_log_after_a_shorter_log_campaigns_first().await;
        if log.contains(REFUSED) {
            return;
        }
        logs.push(log);
    }
    panic!(
        "the up-to-date survivor never refused a candidate with a shorter log in {ATTEMPTS} \
         runs:\n{}",
        logs.join("\n----\n")
    );
}

/// One run of the scenario above on a fresh cluster: the log of the up-to-date survivor once
/// a store through it succeeds and the resumed node holds every store.
async fn survivor_log_after_a_shorter_log_campaigns_first() -> String {
    let mut cluster = Cluster::start(
        3,
        "election_timeout_min_ms: 2000\nelection_timeout_max_ms: 3000\n",
    );
    let leader = cluster.wait_leader().await;
    let c = client(10);
    let behind = (leader + 1) % 3;
    let ahead = (leader + 2) % 3;
    cluster.signal(behind, libc::SIGSTOP);
    for i in 0..5 {
        let (st, body) = store(&c, cluster.node(leader), "t", &format!("k{i}")).await;
        assert_eq!(st, 200, "{body}");
    }
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    cluster.kill9(leader);
    // Past the lease (3 s) on `ahead`; its own first attempt comes at 3–4 s.
    tokio::time::sleep(Duration::from_millis(3_300)).await;
    cluster.signal(behind, libc::SIGCONT);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (st, _) = store(&c, cluster.node(ahead), "t", "after").await;
        if st == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "no new leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_items(&c, &cluster.node(behind).url("/status"), 6).await;
    cluster.node(ahead).log()
}

/// Stores `key` in `namespace` through `node` (data "v", ten minutes to live): the status
/// and the answer.
async fn store(
    c: &reqwest::Client,
    node: &Server,
    namespace: &str,
    key: &str,
) -> (u16, serde_json::Value) {
    post(
        c,
        &node.url("/store_data"),
        json!({"namespace":namespace,"key":key,"data":"v","ttl":600}),
    )
    .await
}

/// Stores `key` in namespace `s` through `node`, expecting 200.
async fn store_ok(c: &reqwest::Client, node: &Server, key: &str) {
    let (st, body) = store(c, node, "s", key).await;
    assert_eq!(st, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_down_for_long_catches_up_by_snapshot() {
    let mut cluster = Cluster::start(3, "snapshot_logs: 10\nsnapshot_keep_logs: 2\n");
    let leader = cluster.wait_leader().await;
    let c = reqwest::Client::new();
    let down = (leader + 1) % 3;
    cluster.kill9(down);
    let up = (leader + 2) % 3;
    for i in 0..120 {
        store_ok(&c, cluster.node(up), &format!("k{i}")).await;
    }
    // Both live nodes snapshot (every 10 entries) and purge all but 2 entries before it, well
    // past the entries `down` has. The leader postpones a purge while its replication to
    // `down` has those entries in flight (openraft's `try_purge_log`), and retries on later
    // events: the test waits for the log's purge marker on both (bounded), storing one more
    // item now and then so that there are events, instead of guessing a time.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut extra = 0;
    while !(cluster.has_purged(leader) && cluster.has_purged(up)) {
        assert!(Instant::now() < deadline, "no purge within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
        store_ok(&c, cluster.node(up), &format!("extra{extra}")).await;
        extra += 1;
    }
    cluster.restart(down);
    wait_items(&c, &cluster.node(down).url("/status"), 120 + extra).await;
    assert!(
        cluster.node(down).log().contains("snapshot installed"),
        "caught up by snapshot:\n{}",
        cluster.node(down).log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_quorum_a_node_answers_503_within_two_seconds() {
    let mut cluster = Cluster::start(3, "");
    let leader = cluster.wait_leader().await;
    let c = client(20);
    let survivor = (leader + 1) % 3;
    for i in 0..3 {
        if i != survivor {
            cluster.kill9(i);
        }
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for path in ["/store_data", "/fetch_data"] {
        let started = Instant::now();
        let (st, e) = post(
            &c,
            &cluster.node(survivor).url(path),
            json!({"namespace":"q","key":"k","data":"v","ttl":60}),
        )
        .await;
        let took = started.elapsed();
        assert_eq!(st, 503, "{path}: {e}");
        let code = e["error"]["code"].as_str().unwrap();
        assert!(
            code == "no_quorum" || code == "commit_timeout",
            "{path}: {e}"
        );
        // Generous bound for a loaded test machine; the design target is 2 s.
        assert!(took < Duration::from_secs(4), "{path} took {took:?}");
    }
    let r = c
        .get(cluster.node(survivor).url("/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_the_leader_hands_over_and_exits_cleanly() {
    let mut cluster = Cluster::start(3, "");
    let leader = cluster.wait_leader().await;
    let c = client(5);
    let other = (leader + 1) % 3;
    let (st, _) = store(&c, cluster.node(other), "t", "before").await;
    assert_eq!(st, 200);
    let stopped_at = Instant::now();
    let mut node = cluster.nodes[leader].take().unwrap();
    let status = node.signal_and_wait(libc::SIGTERM);
    assert!(status.success(), "{status}");
    assert!(
        node.log().contains("to take over as leader"),
        "{}",
        node.log()
    );
    // A new leader without waiting for an election timeout to notice the old one is gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (st, _) = store(&c, cluster.node(other), "t", "after").await;
        if st == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no writes after the leader stopped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "writes resumed {:?} after SIGTERM to the leader",
        stopped_at.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_of_another_cluster_is_refused() {
    let cluster = Cluster::start(3, "");
    cluster.wait_leader().await;
    let c = reqwest::Client::new();
    let peer = cluster.peer_addr(0);
    let info: serde_json::Value = c
        .get(format!("http://{peer}/peer/info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ours = info["cluster_id"].as_str().unwrap().to_string();
    // Every node agrees on the id (derived from the members it was formed with).
    for i in 1..3 {
        let other: serde_json::Value = c
            .get(format!("http://{}/peer/info", cluster.peer_addr(i)))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(other["cluster_id"], json!(ours));
    }
    for header in [Some("0123456789abcdef"), None] {
        let mut r = c
            .post(format!("http://{peer}/raft/vote"))
            .header("x-statemanager-rpc", "1")
            .body(vec![0u8; 8]);
        if let Some(h) = header {
            r = r.header("x-statemanager-cluster", h);
        }
        let resp = r.send().await.unwrap();
        assert_eq!(resp.status(), 403, "cluster header {header:?}");
    }
    // The cluster is unaffected.
    let (st, _) = post(
        &c,
        &cluster.node(0).url("/store_data"),
        json!({"namespace":"x","key":"k","data":"v","ttl":60}),
    )
    .await;
    assert_eq!(st, 200);
}

/// A cluster that lost its quorum for good: a survivor is turned into a one-member cluster
/// offline and keeps every acknowledged item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_quorum_recovery_keeps_the_survivors_data() {
    let mut cluster = Cluster::start(3, "");
    cluster.wait_leader().await;
    let c = reqwest::Client::new();
    for i in 0..30 {
        let (st, _) = store(&c, cluster.node(i % 3), "r", &format!("k{i}")).await;
        assert_eq!(st, 200);
    }
    for i in 0..3 {
        cluster.kill9(i);
    }
    // The survivors are compared without changing them (`--dry-run`): a store acknowledged by
    // the leader and one follower may not have reached the third node yet.
    let args = |i: usize| -> Vec<String> {
        let dir = cluster.node_dir(i);
        vec![
            "recover".into(),
            "--config".into(),
            dir.join("config.yaml").display().to_string(),
            "--data-dir".into(),
            dir.join("data").display().to_string(),
        ]
    };
    let mut survivors = Vec::new();
    for i in 0..3 {
        let mut dry: Vec<String> = args(i);
        dry.push("--dry-run".into());
        let dry: Vec<&str> = dry.iter().map(String::as_str).collect();
        let (ok, out) = cli(&dry);
        assert!(ok && out.contains("nothing was changed"), "{out}");
        let (again_ok, again) = cli(&dry);
        assert!(
            again_ok && again == out,
            "a dry run changed something:\n{out}\n{again}"
        );
        // "... holds N items; last log entry: index I, term T (...)"
        let number_after = |label: &str| -> u64 {
            let rest = &out[out.find(label).unwrap_or_else(|| panic!("{out}")) + label.len()..];
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            digits.parse().unwrap_or_else(|_| panic!("{out}"))
        };
        let items = number_after("holds ");
        let (index, term) = (number_after("index "), number_after("term "));
        survivors.push(((term, index), items, i));
    }
    // The leader and at least one follower had all 30 stores.
    assert!(
        survivors.iter().filter(|s| s.1 == 30).count() >= 2,
        "{survivors:?}"
    );
    // Recover the most up-to-date survivor (highest term, then index); the others are gone.
    let &(_, _, chosen) = survivors.iter().max().unwrap();
    let owned = args(chosen);
    let (ok, out) = cli(&owned.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{out}");
    assert!(out.contains("30 items"), "{out}");
    cluster.restart(chosen);
    cluster.wait_leader().await;
    for i in 0..30 {
        let (st, _) = post(
            &c,
            &cluster.node(chosen).url("/fetch_data"),
            json!({"namespace":"r","key":format!("k{i}")}),
        )
        .await;
        assert_eq!(st, 200, "k{i}");
    }
    // A data directory that is not there is refused, and not created.
    let missing = cluster.node_dir(chosen).join("no-such-dir");
    let (ok, out) = cli(&[
        "recover",
        "--data-dir",
        missing.to_str().unwrap(),
        "--dry-run",
    ]);
    assert!(!ok && out.contains("there is no data directory"), "{out}");
    assert!(!missing.exists());
    // One that holds nothing is refused too (it would become an empty cluster).
    let empty = tempfile::tempdir().unwrap();
    let (ok, out) = cli(&["recover", "--data-dir", empty.path().to_str().unwrap()]);
    assert!(!ok && out.contains("there is nothing to recover"), "{out}");
    let (st, _) = store(&c, cluster.node(chosen), "r", "new").await;
    assert_eq!(st, 200, "writes work on the one-member cluster");
}

/// Big batches (1 KiB items, many per entry) and a follower that missed many of them: the
/// append that catches it up is large, and must not be refused by the peer port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_appends_after_a_restart_are_accepted() {
    let mut cluster = Cluster::start(3, "max_persistent_data_items: 100000\n");
    let leader = cluster.wait_leader().await;
    let c = reqwest::Client::new();
    let down = (leader + 1) % 3;
    cluster.kill9(down);
    let value = "x".repeat(8 * 1024);
    let url = cluster.node(leader).url("/store_data");
    let mut tasks = vec![];
    for w in 0..16 {
        let (c, url, value) = (c.clone(), url.clone(), value.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..40 {
                let (st, _) = post(
                    &c,
                    &url,
                    json!({"namespace":"big","key":format!("w{w}-{i}"),"data":value,"ttl":600}),
                )
                .await;
                assert_eq!(st, 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    cluster.restart(down);
    wait_items(&c, &cluster.node(down).url("/status"), 16 * 40).await;
    assert!(
        !cluster.node(down).log().contains("413 Payload Too Large"),
        "no refused appends"
    );
}

/// A first start that is refused (`node_id` not in `peers`, no `join`; here with a peer list
/// that is not the founders') leaves the data dir usable: started again with `join: true`, the
/// node is added, takes the cluster's id and catches up. (The node library's own check is
/// `a_refused_start_stores_no_cluster_id` in `crates/raft/tests/node.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_first_start_can_join_later() {
    let cluster = Cluster::start(3, "");
    let leader = cluster.wait_leader().await;
    let c = reqwest::Client::new();
    let (st, body) = store(&c, cluster.node(leader), "n", "k").await;
    assert_eq!(st, 200, "{body}");

    // Node 4 with a peer list that is not the founders' (an extra member) and without itself.
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_ports(1)[0];
    let mut peers: String = (0..3)
        .map(|i| format!("  {}: {}\n", i + 1, cluster.peer_addr(i)))
        .collect();
    peers.push_str("  5: 127.0.0.1:9\n");
    let wrong = format!("node_id: 4\npeer_listen: 127.0.0.1:{port}\npeers:\n{peers}");
    std::fs::write(dir.path().join("config.yaml"), &wrong).unwrap();
    let mut child = Command::new(binary())
        .arg("serve")
        .arg("--config")
        .arg(dir.path().join("config.yaml"))
        .args(["--port", "0", "--log-stderr", "--data-dir"])
        .arg(dir.path().join("data"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("a node not in peers kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("is not in peers"), "{stderr}");

    // Started again to join, it is added and has the data.
    let joiner = common::Server::start_in(
        dir.path(),
        &format!("node_id: 4\npeer_listen: 127.0.0.1:{port}\njoin: true\n"),
        &[],
    );
    let entry = cluster.peer_addr(leader);
    let (ok, out) = cli(&[
        "cluster",
        "--peer",
        &entry,
        "add",
        "4",
        &format!("127.0.0.1:{port}"),
    ]);
    assert!(ok, "{out}\n--- node 4 ---\n{}", joiner.log());
    wait_items(&c, &joiner.url("/status"), 1).await;
    let (st, got) = post(
        &c,
        &joiner.url("/fetch_data"),
        json!({"namespace":"n","key":"k"}),
    )
    .await;
    assert_eq!((st, got["data"].as_str()), (200, Some("v")), "{got}");
    assert!(!joiner.log().contains("refused"), "{}", joiner.log());
}

/// A follower whose leader froze (SIGSTOP: its ports still accept connections, nothing
/// answers) and whose other peer is dead answers within one budget, `commit_timeout_ms` plus
/// the 400 ms hop, however it spent it: asking the leader for a read index first and then
/// forwarding the fetch took 0.5 s + 1.9 s before. A fetch is `no_quorum` (a read did
/// nothing), never `commit_timeout`, whose message speaks of a write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_of_a_frozen_leader_answers_within_one_budget() {
    let mut cluster = Cluster::start(3, "commit_timeout_ms: 400\n");
    let leader = cluster.wait_leader().await;
    let c = client(20);
    let follower = (leader + 1) % 3;
    let (st, e) = store(&c, cluster.node(follower), "z", "k").await;
    assert_eq!(st, 200, "{e}");
    cluster.kill9((leader + 2) % 3);
    cluster.signal(leader, libc::SIGSTOP);
    for round in 0..2 {
        for path in ["/fetch_data", "/store_data"] {
            let started = Instant::now();
            let (st, e) = post(
                &c,
                &cluster.node(follower).url(path),
                json!({"namespace":"z","key":"k","data":"v","ttl":600}),
            )
            .await;
            let took = started.elapsed();
            assert_eq!(st, 503, "round {round} {path}: {e}");
            let code = e["error"]["code"].as_str().unwrap_or_default();
            if path == "/fetch_data" {
                assert_eq!(code, "no_quorum", "round {round}: {e}");
            } else {
                assert!(code == "no_quorum" || code == "commit_timeout", "{e}");
            }
            // The budget is 0.8 s; generous for a loaded machine, and well under the 2.4 s
            // the fetch took with a budget per step.
            assert!(
                took < Duration::from_millis(1600),
                "round {round} {path} took {took:?}: {e}"
            );
        }
    }
    cluster.signal(leader, libc::SIGCONT);
}
