//! Disk trouble against the real binary on a small tmpfs (mounted in a mount namespace of its
//! own with `unshare`, so no root is needed): a disk short of `disk_reserve` answers 507
//! `disk_full` and takes writes again once space is back, without a restart; a write that
//! fails for want of space stops the node (503 until it exits), and a restart recovers every
//! acknowledged item.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{binary, free_ports, post};
use serde_json::json;

/// A server whose data directory is on a tmpfs of `size_mb`, partly filled by a `filler`
/// file that the test can delete ("space is back"); `runs` starts of the server (the shell
/// waits for `restart` between them).
struct TmpfsServer {
    shell: Child,
    ctl: tempfile::TempDir,
    port: u16,
}

const SCRIPT: &str = r#"
set -u
mount -t tmpfs -o size="$SIZE_MB"m tmpfs "$MNT" || exit 90
dd if=/dev/zero of="$MNT/filler" bs=1M count="$FILL_MB" status=none || exit 91
(
  n=0
  while [ $n -lt 1200 ]; do
    if [ -e "$CTL/release" ]; then rm -f "$MNT/filler"; echo released > "$CTL/released"; break; fi
    sleep 0.05; n=$((n+1))
  done
) &
echo $! > "$CTL/watcher.pid"
run=0
while [ $run -lt "$RUNS" ]; do
  "$BIN" serve --config "$CTL/config.yaml" --data-dir "$MNT/data" --port "$PORT" \
      --addr-file "$CTL/addr.json" --log-stderr >> "$CTL/server.log" 2>&1
  echo $? >> "$CTL/exits"
  run=$((run+1))
  n=0
  while [ $run -lt "$RUNS" ] && [ ! -e "$CTL/restart" ] && [ $n -lt 1200 ]; do sleep 0.05; n=$((n+1)); done
  rm -f "$CTL/restart"
done
"#;

/// How to get a mount namespace of our own: as an unprivileged user in a user namespace, or,
/// where user namespaces are off, as root.
fn unshare_flags() -> &'static [&'static str] {
    const USER: &[&str] = &["--user", "--map-root-user", "--mount"];
    const ROOT: &[&str] = &["--mount"];
    let works = |flags: &[&str]| {
        Command::new("unshare")
            .args(flags)
            .arg("true")
            .status()
            .is_ok_and(|s| s.success())
    };
    if works(USER) {
        USER
    } else if works(ROOT) {
        ROOT
    } else {
        panic!("cannot create a mount namespace with unshare (util-linux): this test needs user namespaces or root")
    }
}

impl TmpfsServer {
    fn start(config: &str, size_mb: u32, fill_mb: u32, runs: u32) -> TmpfsServer {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ctl = tempfile::tempdir().unwrap();
        let mnt = ctl.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        std::fs::write(ctl.path().join("config.yaml"), config).unwrap();
        let port = free_ports(1)[0];
        let shell = Command::new("unshare")
            .args(unshare_flags())
            .args(["sh", "-c", SCRIPT])
            .env("SIZE_MB", size_mb.to_string())
            .env("FILL_MB", fill_mb.to_string())
            .env("RUNS", runs.to_string())
            .env("MNT", &mnt)
            .env("CTL", ctl.path())
            .env("BIN", binary())
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare (util-linux) must be installed");
        let s = TmpfsServer { shell, ctl, port };
        s.wait_addr();
        s
    }

    fn file(&self, name: &str) -> PathBuf {
        self.ctl.path().join(name)
    }

    fn wait_addr(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.file("addr.json").exists() {
            assert!(
                Instant::now() < deadline,
                "server did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.file("server.log")).unwrap_or_default()
    }

    /// The server's PID (from its addr file).
    fn pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.file("addr.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        v["pid"].as_i64().map(|p| p as i32)
    }

    fn release_space(&self) {
        std::fs::write(self.file("release"), "").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.file("released").exists() {
            assert!(Instant::now() < deadline, "filler not removed");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn exits(&self) -> Vec<i32> {
        std::fs::read_to_string(self.file("exits"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    fn restart(&self) {
        let _ = std::fs::remove_file(self.file("addr.json"));
        std::fs::write(self.file("restart"), "").unwrap();
        self.wait_addr();
    }
}

fn kill(pid: i32) {
    // SAFETY: kill(2) on PIDs this test started (the server, the shell, its watcher).
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

impl Drop for TmpfsServer {
    fn drop(&mut self) {
        let _ = std::fs::write(self.file("release"), "");
        if let Some(pid) = self.pid() {
            kill(pid);
        }
        if let Some(pid) = std::fs::read_to_string(self.file("watcher.pid"))
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            kill(pid);
        }
        kill(self.shell.id() as i32);
        let _ = self.shell.wait();
    }
}

async fn wait_ready(s: &TmpfsServer) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(s.url("/ready")).await {
            if r.status() == 200 {
                return;
            }
        }
        assert!(Instant::now() < deadline, "never ready:\n{}", s.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn item(i: usize) -> (String, String) {
    (format!("k{i}"), format!("{i:06}").repeat(512 * 1024 / 6))
}

async fn store(client: &reqwest::Client, s: &TmpfsServer, i: usize) -> (u16, serde_json::Value) {
    let (key, data) = item(i);
    match client
        .post(s.url("/store_data"))
        .body(
            json!({"namespace": "PLUGIN#disk", "key": key, "data": data, "ttl": 3600}).to_string(),
        )
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or(serde_json::Value::Null))
        }
        Err(_) => (0, serde_json::Value::Null),
    }
}

async fn assert_all_present(client: &reqwest::Client, s: &TmpfsServer, acked: &[usize]) {
    for i in acked {
        let (key, data) = item(*i);
        let (status, v) = post(
            client,
            &s.url("/fetch_data"),
            json!({"namespace": "PLUGIN#disk", "key": key}),
        )
        .await;
        assert_eq!(status, 200, "acknowledged {key} is missing: {v}");
        assert_eq!(v["data"].as_str(), Some(data.as_str()), "{key} changed");
    }
}

const CONFIG: &str = "max_persistent_data_item_size: 1MB\nmax_persistent_data_items: 100000\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_short_of_its_reserve_answers_507_until_space_is_back() {
    let s = TmpfsServer::start(&format!("{CONFIG}disk_reserve: 8MB\n"), 48, 24, 1);
    wait_ready(&s).await;
    let client = reqwest::Client::new();
    let mut acked = Vec::new();
    let mut refused = None;
    for i in 0..100 {
        let (status, v) = store(&client, &s, i).await;
        match status {
            200 => acked.push(i),
            507 => {
                refused = Some(v);
                break;
            }
            other => panic!("store {i}: {other} {v}\n{}", s.log()),
        }
    }
    let refused = refused.expect("the disk never filled");
    assert_eq!(refused["error"]["code"], "disk_full", "{refused}");
    assert!(
        acked.len() >= 5,
        "{} stores before the reserve",
        acked.len()
    );
    // Still refused (not a one-off), reads and deletions still work.
    assert_eq!(store(&client, &s, 1000).await.0, 507);
    assert_all_present(&client, &s, &acked).await;
    let (status, _) = post(
        &client,
        &s.url("/delete_data"),
        json!({"namespace": "PLUGIN#disk", "key": "k0"}),
    )
    .await;
    assert_eq!(status, 200, "deletions free space, so they are accepted");
    acked.remove(0);
    assert!(s.log().contains("disk full"), "{}", s.log());

    // Space comes back: writes succeed again, same process.
    let pid = s.pid();
    tokio::task::block_in_place(|| s.release_space());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = store(&client, &s, 2000).await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "writes did not resume: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s.pid(), pid, "no restart");
    assert_all_present(&client, &s, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_fails_stops_the_node_and_a_restart_recovers_everything() {
    // No reserve: the log append itself runs out of space.
    let s = TmpfsServer::start(&format!("{CONFIG}disk_reserve: 0\n"), 40, 28, 2);
    wait_ready(&s).await;
    let client = reqwest::Client::new();
    let mut acked = Vec::new();
    let mut failures = Vec::new();
    for i in 0..100 {
        let (status, v) = store(&client, &s, i).await;
        if status == 200 {
            acked.push(i);
        } else {
            failures.push((status, v));
            if failures.len() >= 3 {
                break;
            }
        }
    }
    assert!(!failures.is_empty(), "the disk never filled");
    // The write whose append failed may have reached the disk in part: its outcome is
    // unknown (503 commit_timeout); later ones were never proposed (503 unavailable), or the
    // node is gone (status 0).
    for (n, (status, v)) in failures.iter().enumerate() {
        let code = v["error"]["code"].as_str();
        let allowed = if n == 0 {
            code == Some("commit_timeout")
        } else {
            code == Some("unavailable")
        };
        assert!(
            *status == 0 || (*status == 503 && allowed),
            "a failed write must answer 503 (or the node is gone): {status} {v}"
        );
    }
    // The node exits on its own, saying why.
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.exits().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the node did not exit:\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_ne!(s.exits()[0], 0, "a storage failure is not a clean exit");
    assert!(s.log().contains("storage failure"), "{}", s.log());

    // Space back, restart: every acknowledged item is there, and writes work.
    tokio::task::block_in_place(|| s.release_space());
    s.restart();
    wait_ready(&s).await;
    assert_all_present(&client, &s, &acked).await;
    assert_eq!(store(&client, &s, 5000).await.0, 200, "{}", s.log());
}

/// A failed fsync (injected: the `failpoints` feature of the storage crate, compiled into the
/// test build only) stops the node: the write it would have acknowledged gets 503
/// `commit_timeout` (it may be on disk or not), later writes get 503 `unavailable`, the node
/// logs why and exits, and a restart recovers every acknowledged item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_is_fatal_and_a_restart_recovers_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = common::Server::start_with_env(
        tmp.path(),
        "",
        &[],
        &[(
            "STATEMANAGER_FAILPOINT_FSYNC_AFTER",
            std::ffi::OsStr::new("40"),
        )],
    );
    s.wait_ready().await;
    let client = reqwest::Client::new();
    let mut acked = Vec::new();
    let mut failed = None;
    for i in 0..200 {
        let body = json!({"namespace": "PLUGIN#fsync", "key": format!("k{i}"), "data": format!("v{i}"), "ttl": 600});
        match client
            .post(s.url("/store_data"))
            .body(body.to_string())
            .send()
            .await
        {
            Ok(r) if r.status() == 200 => acked.push(i),
            Ok(r) => {
                let status = r.status().as_u16();
                failed = Some((
                    status,
                    r.json::<serde_json::Value>().await.unwrap_or_default(),
                ));
                break;
            }
            Err(e) => panic!("store {i}: {e}"),
        }
    }
    let (status, v) = failed.expect("the injected fsync failure never happened");
    // The write whose fsync failed may be on disk or not: its outcome is unknown.
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (503, Some("commit_timeout")),
        "{v}"
    );
    // Until it exits, the node refuses everything else before proposing: 503 unavailable.
    let later = json!({"namespace": "PLUGIN#fsync", "key": "later", "data": "x", "ttl": 60});
    if let Ok(r) = client
        .post(s.url("/store_data"))
        .body(later.to_string())
        .send()
        .await
    {
        let status = r.status().as_u16();
        let v = r.json::<serde_json::Value>().await.unwrap_or_default();
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (503, Some("unavailable")),
            "a write after the failure: {v}"
        );
    }
    assert!(
        acked.len() >= 10,
        "{} stores before the failure",
        acked.len()
    );
    let exit = tokio::task::block_in_place(|| s.wait_exit(Duration::from_secs(30)))
        .expect("the node did not exit after a failed fsync");
    assert!(!exit.success(), "{exit:?}");
    assert!(s.log().contains("storage failure"), "{}", s.log());
    assert!(
        s.log().contains("os error 5"),
        "the injected EIO: {}",
        s.log()
    );

    // Restarted without the failpoint: everything acknowledged is there, writes work.
    s.restart();
    s.wait_ready().await;
    for i in &acked {
        let (status, v) = post(
            &client,
            &s.url("/fetch_data"),
            json!({"namespace": "PLUGIN#fsync", "key": format!("k{i}")}),
        )
        .await;
        assert_eq!(
            (status, v["data"].as_str()),
            (200, Some(format!("v{i}").as_str())),
            "k{i}"
        );
    }
    let (status, _) = post(
        &client,
        &s.url("/store_data"),
        json!({"namespace": "PLUGIN#fsync", "key": "after", "data": "x", "ttl": 60}),
    )
    .await;
    assert_eq!(status, 200);
}
