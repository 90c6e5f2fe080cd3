//! Peers authenticate each other: with `cluster_secret` or `peer_tls`, a process without the
//! cluster's credentials can neither join, read, append entries, nor call admin endpoints.

mod common;

use std::process::Command;
use std::time::Duration;

use common::certs::Ca;
use common::{binary, get_json, post, Cluster};
use serde_json::json;

const SECRET: &str = "test-cluster-secret-0123456789";

async fn store_and_read_everywhere(cluster: &Cluster, key: &str) {
    let client = reqwest::Client::new();
    let leader = cluster.wait_leader().await;
    let follower = (leader + 1) % 3;
    let (status, v) = post(
        &client,
        &cluster.node(follower).url("/store_data"),
        json!({"namespace": "PLUGIN#auth", "key": key, "data": "v", "ttl": 600}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let answers = cluster
        .fetch_on_every_node(&client, "PLUGIN#auth", key)
        .await;
    assert_eq!(answers.len(), 3);
    for (i, status, v) in answers {
        assert_eq!((status, v["data"].as_str()), (200, Some("v")), "node {i}");
    }
    // The shared cache's forwarded calls use the same credentials: a value set through one
    // node, for a key of each owner, is read through every node.
    for owner_id in 1..=3u64 {
        let cache_key = (0..)
            .map(|n| format!("{key}-cache-{n}"))
            .find(|k| {
                statemanager_cache::owner::owner("PLUGIN#auth", k, &[1, 2, 3]) == Some(owner_id)
            })
            .unwrap();
        let (status, v) = post(
            &client,
            &cluster.node(follower).url("/set_data"),
            json!({"namespace": "PLUGIN#auth", "key": cache_key, "data": "c", "ttl": 600}),
        )
        .await;
        assert_eq!(status, 200, "{v}");
        for i in 0..3 {
            // A node that found the owner slow on a busy machine answers a miss until it
            // rechecks it (peer_refresh_time): poll, never an error.
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                let (status, v) = post(
                    &client,
                    &cluster.node(i).url("/get_data"),
                    json!({"namespace": "PLUGIN#auth", "key": cache_key}),
                )
                .await;
                assert_eq!(status, 200, "node {i}: {v}");
                if v["data"] == "c" {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "node {i} never read the value: {v}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_cluster_secret_outsiders_are_refused_everywhere() {
    let mut cluster = Cluster::start(3, &format!("cluster_secret: {SECRET}\n"));
    store_and_read_everywhere(&cluster, "k1").await;
    let leader = cluster.wait_leader().await;
    let peer = cluster.peer_addr(leader);
    let rogue = reqwest::Client::new();

    // Every peer route, without the secret and with a wrong one: 401, and nothing happens.
    let routes = [
        ("POST", "/raft/append"),
        ("POST", "/raft/vote"),
        ("POST", "/raft/snapshot"),
        ("POST", "/raft/propose"),
        ("POST", "/raft/read_index"),
        ("POST", "/raft/elect"),
        ("GET", "/peer/info"),
        ("GET", "/admin/cluster"),
        ("POST", "/admin/add"),
        ("POST", "/admin/remove"),
        ("POST", "/admin/list"),
        ("GET", "/admin/backup"),
        ("POST", "/forward/fetch_data"),
        ("POST", "/forward/store_data"),
    ];
    for auth in [None, Some("Bearer wrong-secret-0123456789")] {
        for (method, path) in routes {
            let url = format!("http://{peer}{path}");
            let mut request = match method {
                "GET" => rogue.get(&url),
                _ => rogue.post(&url).body(
                    r#"{"namespace":"PLUGIN#auth","key":"k1","id":9,"peer_addr":"127.0.0.1:1"}"#,
                ),
            }
            .header("x-statemanager-rpc", "1");
            if let Some(a) = auth {
                request = request.header("authorization", a);
            }
            let r = request.send().await.unwrap();
            assert_eq!(r.status(), 401, "{method} {path} with {auth:?}");
            let v: serde_json::Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], "unauthorized");
        }
    }

    // The client port's admin endpoints need the secret too; the item API does not.
    let status_url = cluster.node(leader).url("/status");
    let node = cluster.node(leader);
    let (status, v) = post(
        &rogue,
        &node.url("/admin/list"),
        json!({"namespace": "PLUGIN#auth"}),
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let r = rogue.get(node.url("/admin/backup")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = rogue
        .post(node.url("/admin/list"))
        .bearer_auth(SECRET)
        .body(json!({"namespace": "PLUGIN#auth"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The CLI: without the secret refused, with it served.
    let cli = |args: &[&str], secret: Option<&str>| {
        let mut c = Command::new(binary());
        c.args(args).env_remove("STATEMANAGER_CLUSTER_SECRET");
        if let Some(s) = secret {
            c.env("STATEMANAGER_CLUSTER_SECRET", s);
        }
        c.output().unwrap()
    };
    let base = node.base.clone();
    let peer_for_cli = peer.clone();
    let outputs = tokio::task::spawn_blocking(move || {
        (
            cli(&["list", "PLUGIN#auth", "--server", &base], None),
            cli(
                &["list", "PLUGIN#auth", "--server", &base, "--json"],
                Some(SECRET),
            ),
            cli(&["cluster", "--peer", &peer_for_cli, "status"], None),
            cli(
                &["cluster", "--peer", &peer_for_cli, "status", "--json"],
                Some(SECRET),
            ),
            cli(
                &[
                    "cluster",
                    "--peer",
                    &peer_for_cli,
                    "add",
                    "9",
                    "127.0.0.1:1",
                ],
                None,
            ),
        )
    })
    .await
    .unwrap();
    assert_eq!(outputs.0.status.code(), Some(3), "{:?}", outputs.0);
    assert!(outputs.1.status.success(), "{:?}", outputs.1);
    assert!(String::from_utf8_lossy(&outputs.1.stdout).contains("\"k1\""));
    assert!(!outputs.2.status.success());
    assert!(String::from_utf8_lossy(&outputs.2.stderr).contains("401"));
    assert!(outputs.3.status.success(), "{:?}", outputs.3);
    let members: serde_json::Value = serde_json::from_slice(&outputs.3.stdout).unwrap();
    assert_eq!(members["members"].as_array().unwrap().len(), 3);
    assert!(
        !outputs.4.status.success(),
        "an add without the secret must fail"
    );

    // A node started with the wrong secret cannot take part: its RPCs are refused, and the
    // cluster keeps its leader and membership.
    let term_before = get_json(&rogue, &status_url).await["term"]
        .as_u64()
        .unwrap();
    let rogue_peer = cluster.start_joiner(4, "cluster_secret: not-the-cluster-secret-00\n");
    let rogue_add = tokio::task::spawn_blocking({
        let peer = peer.clone();
        move || {
            cli(
                &["cluster", "--peer", &peer, "add", "4", &rogue_peer],
                Some(SECRET),
            )
        }
    })
    .await
    .unwrap();
    assert!(
        !rogue_add.status.success(),
        "a node with another secret was added: {rogue_add:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let v = get_json(&rogue, &status_url).await;
    assert_eq!(
        v["term"].as_u64().unwrap(),
        term_before,
        "the cluster was disturbed"
    );
    let voters = v["peers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["state"] == "voter")
        .count();
    assert_eq!(voters, 3, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_peer_tls_only_certified_peers_connect() {
    let certs = tempfile::tempdir().unwrap();
    let ca = Ca::new("cluster ca");
    let ca_file = ca.write(&certs.path().join("ca.pem"));
    let (cert, key) = ca.leaf(certs.path(), "node", &["127.0.0.1", "localhost"]);
    let extra = format!(
        "peer_tls:\n  cert_file: {}\n  key_file: {}\n  ca_cert: {}\n",
        cert.display(),
        key.display(),
        ca_file.display()
    );
    let cluster = Cluster::start(3, &extra);
    store_and_read_everywhere(&cluster, "k-tls").await;
    let leader = cluster.wait_leader().await;
    let peer = cluster.peer_addr(leader);

    // Plain HTTP to the peer port fails; HTTPS without a client certificate fails; a
    // certificate from another CA fails.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let plain = reqwest::Client::new();
    let plain_answer = plain.get(format!("http://{peer}/peer/info")).send().await;
    assert!(
        !plain_answer.is_ok_and(|r| r.status().is_success()),
        "plain HTTP must not reach a TLS peer port"
    );
    let no_cert = reqwest::Client::builder()
        .tls_certs_only([ca.cert()])
        .build()
        .unwrap();
    assert!(no_cert
        .get(format!("https://{peer}/peer/info"))
        .send()
        .await
        .is_err());
    let other = Ca::new("other ca");
    let (ocert, okey) = other.leaf(certs.path(), "intruder", &["127.0.0.1"]);
    let mut pem = std::fs::read(&ocert).unwrap();
    pem.extend(std::fs::read(&okey).unwrap());
    let intruder = reqwest::Client::builder()
        .tls_certs_only([ca.cert()])
        .identity(reqwest::Identity::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    assert!(intruder
        .post(format!("https://{peer}/raft/vote"))
        .send()
        .await
        .is_err());

    // The CLI with the cluster's CA and a certificate it signed works, over the peer port.
    let (admin_cert, admin_key) = ca.leaf(certs.path(), "admin", &["admin"]);
    let args: Vec<String> = vec![
        "cluster".into(),
        "--peer".into(),
        peer.clone(),
        "--cacert".into(),
        ca_file.display().to_string(),
        "--cert".into(),
        admin_cert.display().to_string(),
        "--key".into(),
        admin_key.display().to_string(),
        "status".into(),
        "--json".into(),
    ];
    let out =
        tokio::task::spawn_blocking(move || Command::new(binary()).args(&args).output().unwrap())
            .await
            .unwrap();
    assert!(out.status.success(), "{out:?}");
    // Backups over the peer port with the certificate.
    let backup_file = certs.path().join("b.smbackup");
    let args: Vec<String> = vec![
        "backup".into(),
        "--out".into(),
        backup_file.display().to_string(),
        "--server".into(),
        format!("https://{peer}"),
        "--cacert".into(),
        ca_file.display().to_string(),
        "--cert".into(),
        admin_cert.display().to_string(),
        "--key".into(),
        admin_key.display().to_string(),
    ];
    let out =
        tokio::task::spawn_blocking(move || Command::new(binary()).args(&args).output().unwrap())
            .await
            .unwrap();
    assert!(out.status.success(), "{out:?}");
    // New node certificates (same CA) and SIGHUP: the peer listeners and the peer clients
    // take them, and the cluster keeps replicating.
    ca.leaf(certs.path(), "node", &["127.0.0.1", "localhost"]);
    for i in 0..3 {
        cluster.signal(i, libc::SIGHUP);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    store_and_read_everywhere(&cluster, "k-tls-after-reload").await;
    for i in 0..3 {
        assert!(cluster.node(i).log().contains("TLS certificates reloaded"));
        assert!(!cluster.node(i).log().contains("keeping the current"));
    }
    // On the client port, admin endpoints are closed without a cluster secret.
    let (status, _) = post(
        &plain,
        &cluster.node(leader).url("/admin/list"),
        json!({"namespace": "PLUGIN#auth"}),
    )
    .await;
    assert_eq!(status, 403);
}
