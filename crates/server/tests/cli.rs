//! The people-and-scripts CLI (`put`, `get`, `delete`, `list`, `status`, `backup`,
//! `restore`) against the real server: human and `--json` output, and exit codes.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{binary, Cluster, Server};
use serde_json::Value;

/// Runs `statemanager ARGS` against `server` (blocking: call from spawn_blocking in async
/// tests that also serve requests).
fn cli(server: &str, args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env("STATEMANAGER_SERVER", server)
        .env_remove("STATEMANAGER_CLUSTER_SECRET")
        .output()
        .expect("run statemanager")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json_of(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(o)))
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_commands_print_text_and_json_with_documented_exit_codes() {
    let s = Server::start("");
    s.wait_ready().await;
    let base = s.base.clone();
    tokio::task::spawn_blocking(move || {
        let ns = "PLUGIN#check_cli";
        let put = cli(&base, &["put", ns, "k1", "hello", "--ttl", "60"]);
        assert_eq!(code(&put), 0, "{put:?}");
        assert!(
            stdout(&put).starts_with("stored PLUGIN#check_cli k1: timestamp 20"),
            "{put:?}"
        );

        let put = cli(&base, &["put", ns, "k2", "world", "--json"]);
        assert_eq!(code(&put), 0);
        let v = json_of(&put);
        assert_eq!(v["stored"], true);
        assert!(v["expires_at"].as_f64().unwrap() - v["timestamp"].as_f64().unwrap() > 3599.0);

        let get = cli(&base, &["get", ns, "k1"]);
        assert_eq!((code(&get), stdout(&get).as_str()), (0, "hello\n"));
        let get = cli(&base, &["get", ns, "k1", "--json"]);
        assert_eq!(json_of(&get)["data"], "hello");

        let missing = cli(&base, &["get", ns, "nope"]);
        assert_eq!(code(&missing), 1, "not found is exit 1");
        assert!(String::from_utf8_lossy(&missing.stderr).contains("no item"));
        let missing = cli(&base, &["get", ns, "nope", "--json"]);
        assert_eq!(code(&missing), 1);
        assert_eq!(json_of(&missing)["error"]["exit_code"], 1);
        // A 404 for a path the server does not have is not "no item": exit 3.
        let elsewhere = cli(&format!("{base}/elsewhere"), &["get", ns, "k1"]);
        assert_eq!(code(&elsewhere), 3, "{elsewhere:?}");
        assert!(String::from_utf8_lossy(&elsewhere.stderr).contains("unknown_endpoint"));

        let list = cli(&base, &["list", ns]);
        assert_eq!(code(&list), 0);
        let text = stdout(&list);
        assert!(
            text.contains("k1") && text.contains("k2") && text.contains("2 key(s)"),
            "{text}"
        );
        let list = cli(&base, &["list", ns, "--json", "--limit", "1"]);
        let v = json_of(&list);
        assert_eq!(v["keys"].as_array().unwrap().len(), 1);
        assert_eq!(v["keys"][0]["key"], "k1");
        assert_eq!(v["keys"][0]["bytes"], 5);
        assert_eq!(v["truncated"], true);

        // A store older than the stored item: refused, exit 3.
        let old = cli(&base, &["put", ns, "k1", "older", "--timestamp", "5"]);
        assert_eq!(code(&old), 3, "{old:?}");
        assert!(String::from_utf8_lossy(&old.stderr).contains("conflict"));
        // Bad input the server refuses: exit 3 too.
        let bad = cli(&base, &["put", ns, "k3", "x", "--ttl", "0"]);
        assert_eq!(code(&bad), 3, "{bad:?}");

        let del = cli(&base, &["delete", ns, "k1"]);
        assert_eq!(
            (code(&del), stdout(&del).as_str()),
            (0, "deleted PLUGIN#check_cli k1\n")
        );
        let del = cli(&base, &["delete", ns, "k1", "--json"]);
        assert_eq!(code(&del), 1, "deleting what is gone is exit 1");

        let status = cli(&base, &["status"]);
        assert_eq!(code(&status), 0);
        assert!(
            stdout(&status).contains("role: leader"),
            "{}",
            stdout(&status)
        );
        let status = cli(&base, &["status", "--json"]);
        assert_eq!(json_of(&status)["items"], 1);

        // Usage errors: exit 2; an unreachable server: exit 4.
        let usage = cli(&base, &["put", ns]);
        assert_eq!(code(&usage), 2);
        let bad_url = cli("localhost:1", &["status"]);
        assert_eq!(
            code(&bad_url),
            2,
            "a server without a scheme is a usage error"
        );
        let port = common::free_ports(1)[0];
        let down = cli(&format!("http://127.0.0.1:{port}"), &["get", ns, "k2"]);
        assert_eq!(code(&down), 4, "{down:?}");
    })
    .await
    .unwrap();
}

#[test]
fn every_command_has_help_with_examples() {
    for command in [
        "put", "get", "delete", "list", "status", "backup", "restore", "token", "cluster", "serve",
        "recover",
    ] {
        let out = Command::new(binary())
            .args([command, "--help"])
            .output()
            .expect("run");
        assert_eq!(code(&out), 0, "{command}");
        let text = stdout(&out);
        assert!(
            text.contains("Example"),
            "{command} --help has no example:\n{text}"
        );
    }
}

#[test]
fn put_reads_standard_input_for_dash() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = Server::start("");
    rt.block_on(s.wait_ready());
    let mut child = Command::new(binary())
        .args(["put", "PLUGIN#x", "k", "-", "--ttl", "60"])
        .env("STATEMANAGER_SERVER", &s.base)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"line1\nline2")
        .unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    let get = cli(&s.base, &["get", "PLUGIN#x", "k", "--json"]);
    assert_eq!(json_of(&get)["data"], "line1\nline2");
}

/// Restores `backup` into the node whose working directory is `dir` (config in `config`).
fn restore_into(backup: &Path, dir: &Path, config: &Path) -> Output {
    Command::new(binary())
        .arg("restore")
        .arg(backup)
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .output()
        .expect("run restore")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_during_writes_restores_every_item_acknowledged_before_it() {
    let cluster = Cluster::start(3, "");
    let leader = cluster.wait_leader().await;
    let follower = (leader + 1) % 3;
    let client = reqwest::Client::new();

    // Writers on every node, recording each acknowledged store with the time it was acked.
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(String, String, Instant)>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..6 {
        let url = cluster.node(w % 3).url("/store_data");
        let (client, stop, acked) = (client.clone(), stop.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 100_000 {
                let key = format!("w{w}-{n}");
                let data = format!("value of {key}");
                let body = serde_json::json!({"namespace": "PLUGIN#backup", "key": key, "data": data, "ttl": 3600});
                if let Ok(r) = client.post(&url).body(body.to_string()).send().await {
                    if r.status() == 200 {
                        acked.lock().unwrap().push((key, data, Instant::now()));
                    }
                }
                n += 1;
            }
        }));
    }
    // Until stores flow (bounded): with several clusters starting at once on two cores, the
    // first stores can take a while.
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.lock().unwrap().len() < 60 {
        assert!(Instant::now() < deadline, "stores do not flow");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("cluster.smbackup");
    let started = Instant::now();
    let out = {
        let (server, file) = (cluster.node(follower).base.clone(), file.clone());
        tokio::task::spawn_blocking(move || {
            cli(
                &server,
                &["backup", "--out", file.to_str().unwrap(), "--json"],
            )
        })
        .await
        .unwrap()
    };
    assert_eq!(code(&out), 0, "{out:?}");
    let summary = json_of(&out);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let before: Vec<_> = acked.iter().filter(|(_, _, t)| *t < started).collect();
    assert!(
        before.len() > 50,
        "only {} stores before the backup",
        before.len()
    );
    assert!(
        acked.len() > before.len(),
        "writes continued during the backup"
    );
    assert!(summary["items"].as_u64().unwrap() >= before.len() as u64);
    drop(cluster);

    // Restore the file into every member of a new cluster, start it, and read everything.
    let restored = Cluster::start_prepared(3, "", &|dir, config| {
        let out = restore_into(&file, dir, config);
        assert!(out.status.success(), "{out:?}");
    });
    let leader = restored.wait_leader().await;
    for (i, (key, data, _)) in before.iter().enumerate() {
        let node = restored.node(i % 3);
        let (status, v) = common::post(
            &client,
            &node.url("/fetch_data"),
            serde_json::json!({"namespace": "PLUGIN#backup", "key": key}),
        )
        .await;
        assert_eq!(
            status, 200,
            "{key} acknowledged before the backup is missing: {v}"
        );
        assert_eq!(v["data"], data.as_str());
    }
    // The restored cluster takes writes.
    let (status, _) = common::post(
        &client,
        &restored.node(leader).url("/store_data"),
        serde_json::json!({"namespace": "PLUGIN#backup", "key": "after", "data": "x", "ttl": 60}),
    )
    .await;
    assert_eq!(status, 200);
}

#[test]
fn a_damaged_backup_or_a_used_directory_changes_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = Server::start("");
    rt.block_on(s.wait_ready());
    for i in 0..20 {
        let o = cli(
            &s.base,
            &["put", "PLUGIN#x", &format!("k{i}"), "v", "--ttl", "600"],
        );
        assert!(o.status.success());
    }
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("b.smbackup");
    let out = cli(&s.base, &["backup", "--out", file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout(&out).contains("backup of 20 item(s)"),
        "{}",
        stdout(&out)
    );
    // Never overwrites.
    let again = cli(&s.base, &["backup", "--out", file.to_str().unwrap()]);
    assert_eq!(code(&again), 2);

    let good = std::fs::read(&file).unwrap();
    let config = tmp.path().join("c.yaml");
    std::fs::write(&config, "").unwrap();
    let restore = |bytes: &[u8], target: &Path| {
        let bad = tmp.path().join("bad.smbackup");
        std::fs::write(&bad, bytes).unwrap();
        Command::new(binary())
            .arg("restore")
            .arg(&bad)
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(target)
            .output()
            .unwrap()
    };
    // Every truncation and a flipped byte in each region: refused, nothing created.
    let target = tmp.path().join("never");
    let step = (good.len() / 40).max(1);
    for cut in (0..good.len()).step_by(step) {
        let out = restore(&good[..cut], &target);
        assert_eq!(code(&out), 1, "truncated at {cut}");
        assert!(!target.exists(), "truncated at {cut} created the data dir");
    }
    for at in (0..good.len()).step_by(step) {
        let mut bytes = good.clone();
        bytes[at] ^= 0x40;
        let out = restore(&bytes, &target);
        assert_eq!(code(&out), 1, "flip at {at}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("nothing was changed"));
        assert!(!target.exists());
    }
    // A used data directory (the running server's) is refused.
    let out = restore(&good, &s.dir.join("data"));
    assert_eq!(code(&out), 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
    // The good file restores.
    let out = restore(&good, &target);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("restored 20 item(s)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_node_refuses_fresh_members_instead_of_crashing() {
    let s = Server::start("");
    s.wait_ready().await;
    let put = cli(&s.base, &["put", "PLUGIN#r", "k", "v", "--ttl", "600"]);
    assert!(put.status.success());
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("b.smbackup");
    assert!(cli(&s.base, &["backup", "--out", file.to_str().unwrap()])
        .status
        .success());
    drop(s);
    // Only node 1 is restored; nodes 2 and 3 start empty and form a cluster from `peers`.
    let cluster = Cluster::start_prepared(3, "", &|dir, config| {
        let text = std::fs::read_to_string(config).unwrap();
        if text.starts_with("node_id: 1\n") {
            assert!(restore_into(&file, dir, config).status.success());
        }
    });
    let client = reqwest::Client::new();
    // Node 1 refuses the fresh members (another cluster id) once they have formed their
    // cluster and reach it (bounded wait: a loaded machine forms clusters slowly) ...
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cluster.node(0).log().contains("belongs to cluster") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ... and is alive after it.
    let status = common::get_json(&client, &cluster.node(0).url("/status")).await;
    assert_eq!(status["node_id"], 1);
    assert!(
        cluster.node(0).log().contains("belongs to cluster"),
        "{}",
        cluster.node(0).log()
    );
    assert!(!cluster.node(0).log().contains("panicked"));
}
