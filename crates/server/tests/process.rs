//! The process: start-up, configuration errors, the data-dir lock, logging, signals, and
//! crash recovery with `kill -9`.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{binary, get_json, post, Server};
use serde_json::json;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Runs `statemanager serve` with `args` expecting it to exit by itself (bounded).
fn run_to_exit(args: &[&str], dir: &std::path::Path) -> (i32, String) {
    let mut child = Command::new(binary())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn second_server_on_same_data_dir_fails_at_once() {
    let s = Server::start("");
    s.wait_ready().await;
    let data = s.dir.join("data");
    let started = Instant::now();
    let (code, stderr) = run_to_exit(
        &[
            "serve",
            "--port",
            "0",
            "--log-stderr",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &s.dir,
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains("in use by another statemanager process"),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("pid {}", s.pid())), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn invalid_config_value_stops_startup_naming_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.yaml");
    std::fs::write(&cfg, "port: 8184\nmax_persistent_data_items: lots\n").unwrap();
    let (code, stderr) = run_to_exit(&["serve", "--config", cfg.to_str().unwrap()], dir.path());
    assert_eq!(code, 2);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("'max_persistent_data_items'"), "{stderr}");
    assert!(lines[0].contains(cfg.to_str().unwrap()), "{stderr}");
    // Environment overrides are validated the same way.
    let out = Command::new(binary())
        .args(["serve"])
        .env("STATEMANAGER_PORT", "nope")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("STATEMANAGER_PORT"));
    // TLS settings, checked only when the listeners are bound, are configuration too.
    let data = dir.path().join("data");
    for (text, says) in [
        ("tls_enabled: true\ntls_port: 0\n", "tls_enabled needs tls.cert_file"),
        (
            "tls_enabled: true\ntls_port: 0\ntls:\n  cert_file: /nonexistent/cert.pem\n  key_file: /nonexistent/key.pem\n",
            "cannot read",
        ),
    ] {
        std::fs::write(&cfg, format!("port: 0\n{text}")).unwrap();
        let (code, stderr) = run_to_exit(
            &[
                "serve",
                "--config",
                cfg.to_str().unwrap(),
                "--data-dir",
                data.to_str().unwrap(),
            ],
            dir.path(),
        );
        assert_eq!(code, 2, "{text}: {stderr}");
        assert!(stderr.contains(says), "{text}: {stderr}");
    }
}

#[tokio::test]
async fn debug_mode_logs_opsview_format_and_unknown_keys_warn() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start_in(
        tmp.path(),
        "cachemanager:\n  max_persistent_data_items: 10\n  no_such_key: 1\n",
        &["-d"],
    );
    s.wait_ready().await;
    let c = reqwest::Client::new();
    post(
        &c,
        &s.url("/store_data"),
        json!({"namespace":"n","key":"k","data":"secret-value","ttl":5}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s.log().contains("path=\"/store_data\"") {
        assert!(Instant::now() < deadline, "{}", s.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = s.log();
    let pid = s.pid();
    let init = log
        .lines()
        .find(|l| l.contains("State Manager initialised"))
        .expect("initialised line");
    // 2025-10-16 10:25:16,458 NOTICE [statemanager <pid>] State Manager initialised
    let b = init.as_bytes();
    assert_eq!(
        (b[4], b[7], b[10], b[13], b[16], b[19]),
        (b'-', b'-', b' ', b':', b':', b','),
        "{init}"
    );
    assert!(
        init[23..].starts_with(&format!(
            " NOTICE [statemanager <{pid}>] State Manager initialised"
        )),
        "{init}"
    );
    assert!(log.contains("WARNING"), "unknown key warned: {log}");
    assert!(log.contains("no_such_key"));
    assert!(
        log.contains(" DEBUG [statemanager"),
        "debug lines in -d mode"
    );
    assert!(!log.contains("secret-value"), "values are never logged");
}

/// Starts a server on a new data directory, stores `n/k` = `d` and stops it with SIGTERM,
/// which must drain and exit cleanly; returns it stopped, with a client.
async fn start_store_and_stop() -> (Server, reqwest::Client) {
    let mut s = Server::start("");
    s.wait_ready().await;
    let c = reqwest::Client::new();
    let (status, _) = post(
        &c,
        &s.url("/store_data"),
        json!({"namespace":"n","key":"k","data":"d","ttl":60}),
    )
    .await;
    assert_eq!(status, 200);
    let status = s.signal_and_wait(libc::SIGTERM);
    assert!(status.success(), "{status}: {}", s.log());
    assert!(s.log().contains("State Manager stopped"), "{}", s.log());
    (s, c)
}

#[tokio::test]
async fn sigterm_drains_and_exits_cleanly() {
    let (mut s, c) = start_store_and_stop().await;
    s.restart();
    s.wait_ready().await;
    let (st, got) = post(
        &c,
        &s.url("/fetch_data"),
        json!({"namespace":"n","key":"k"}),
    )
    .await;
    assert_eq!((st, got["data"].as_str()), (200, Some("d")));
}

/// A new data directory's first start, a store and a SIGTERM log no warning and no error: an
/// operator's first run is not greeted by openraft's notice that it dropped a message of the
/// election it has just won. Five starts, as the notice depends on timing.
#[tokio::test]
async fn a_first_start_logs_no_warning() {
    for _ in 0..5 {
        let (s, _) = start_store_and_stop().await;
        let log = s.log();
        assert!(
            !log.contains("WARNING") && !log.contains("ERROR"),
            "a first start logged a warning or an error: {log}"
        );
    }
}

/// Concurrent writers; `kill -9` right after the last acknowledgement; every acknowledged
/// write is there after restart, and TTLs still expire at their absolute time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_loses_no_acknowledged_write_and_ttls_hold() {
    let mut s = Server::start("max_persistent_data_items: 100000\nsnapshot_logs: 50\n");
    s.wait_ready().await;
    let c = reqwest::Client::new();
    let short_expiry = {
        let (st, b) = post(
            &c,
            &s.url("/store_data"),
            json!({"namespace":"ttl","key":"short","data":"x","ttl":3}),
        )
        .await;
        assert_eq!(st, 200);
        b["expires_at"].as_f64().unwrap()
    };
    let mut tasks = vec![];
    for w in 0..16 {
        let c = c.clone();
        let url = s.url("/store_data");
        tasks.push(tokio::spawn(async move {
            let mut acked = vec![];
            for i in 0..60 {
                let key = format!("w{w}-{i}");
                let (st, _) = post(
                    &c,
                    &url,
                    json!({"namespace":"crash","key":key,"data":format!("v{i}"),"ttl":3600}),
                )
                .await;
                if st == 200 {
                    acked.push(key);
                }
            }
            acked
        }));
    }
    let mut acked = vec![];
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert_eq!(acked.len(), 16 * 60);
    let term_before = get_json(&c, &s.url("/status")).await["term"].as_u64();
    s.kill9();
    s.restart();
    s.wait_ready().await;
    // Leadership is won again in a new term, not restored in the old one (whose read index
    // would be the commit index found on disk, saved without fsync: docs/design.md).
    let term_after = get_json(&c, &s.url("/status")).await["term"].as_u64();
    assert!(
        term_after > term_before,
        "term {term_before:?} before the kill, {term_after:?} after"
    );
    for key in &acked {
        let (st, got) = post(
            &c,
            &s.url("/fetch_data"),
            json!({"namespace":"crash","key":key}),
        )
        .await;
        assert_eq!(st, 200, "acknowledged {key} lost after kill -9");
        assert!(got["data"].as_str().unwrap().starts_with('v'));
    }
    // The 3-second item expires at its original absolute time, not 3 s after the restart.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (st, got) = post(
            &c,
            &s.url("/fetch_data"),
            json!({"namespace":"ttl","key":"short"}),
        )
        .await;
        if st == 404 {
            assert!(now() >= short_expiry - 0.01, "expired early");
            break;
        }
        assert_eq!(got["expires_at"].as_f64().unwrap(), short_expiry);
        assert!(Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Expired items are purged through the log (status counts only live ones eventually).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status: serde_json::Value = c
            .get(s.url("/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if status["items"] == json!(acked.len()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "expired item not purged: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn corrupt_snapshot_stops_startup_with_clear_message() {
    let mut s = Server::start("snapshot_logs: 10\n");
    s.wait_ready().await;
    let c = reqwest::Client::new();
    for i in 0..30 {
        post(
            &c,
            &s.url("/store_data"),
            json!({"namespace":"n","key":format!("k{i}"),"data":"d","ttl":60}),
        )
        .await;
    }
    let snap = s.dir.join("data/snapshots/current.snap");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !snap.exists() {
        assert!(Instant::now() < deadline, "no snapshot was taken");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.kill9();
    let mut bytes = std::fs::read(&snap).expect("a snapshot was written");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&snap, bytes).unwrap();
    let (code, stderr) = run_to_exit(
        &[
            "serve",
            "--port",
            "0",
            "--log-stderr",
            "--data-dir",
            s.dir.join("data").to_str().unwrap(),
        ],
        &s.dir,
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("corrupt data in"), "{stderr}");
    assert!(stderr.contains("current.snap"), "{stderr}");
}

#[tokio::test]
async fn damaged_log_stops_startup_but_a_torn_tail_is_recovered() {
    let mut s = Server::start("");
    s.wait_ready().await;
    let c = reqwest::Client::new();
    for i in 0..20 {
        let (st, _) = post(
            &c,
            &s.url("/store_data"),
            json!({"namespace":"n","key":format!("k{i}"),"data":"d","ttl":600}),
        )
        .await;
        assert_eq!(st, 200);
    }
    s.kill9();
    let log_dir = s.dir.join("data/log");
    let segment = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "wal"))
        .expect("a log segment");
    let good = std::fs::read(&segment).unwrap();

    // Garbage after the last record (a torn append): recovered, nothing acknowledged lost.
    let mut torn = good.clone();
    torn.extend_from_slice(&[0x17; 300]);
    std::fs::write(&segment, &torn).unwrap();
    s.restart();
    s.wait_ready().await;
    for i in 0..20 {
        let (st, _) = post(
            &c,
            &s.url("/fetch_data"),
            json!({"namespace":"n","key":format!("k{i}")}),
        )
        .await;
        assert_eq!(st, 200, "k{i}");
    }
    s.kill9();

    // One damaged byte in the middle of the log: start-up stops and names the file.
    let good = std::fs::read(&segment).unwrap();
    let mut bad = good.clone();
    bad[good.len() / 2] ^= 0xff;
    std::fs::write(&segment, &bad).unwrap();
    let (code, stderr) = run_to_exit(
        &[
            "serve",
            "--port",
            "0",
            "--log-stderr",
            "--data-dir",
            s.dir.join("data").to_str().unwrap(),
        ],
        &s.dir,
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("corrupt data in"), "{stderr}");
    assert!(stderr.contains(".wal"), "{stderr}");
    assert_eq!(
        std::fs::read(&segment).unwrap(),
        bad,
        "the damaged log was not modified"
    );
}

/// Without `-d` or `log_stderr`, logs go to syslog; where no syslog socket answers they go to
/// stderr instead, after exactly one warning saying so.
#[tokio::test]
async fn syslog_or_stderr_with_one_warning() {
    let syslog_answers = std::os::unix::net::UnixDatagram::unbound()
        .and_then(|s| s.connect("/dev/log"))
        .is_ok();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let addr = dir.path().join("addr.json");
    let mut child = Command::new(binary())
        .args(["serve", "--port", "0", "--addr-file"])
        .arg(&addr)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !addr.exists() {
        assert!(Instant::now() < deadline, "did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let _ = child.kill();
    let _ = child.wait();
    let stderr = std::fs::read_to_string(&log).unwrap();
    if syslog_answers {
        assert!(
            !stderr.contains("State Manager initialised"),
            "went to syslog: {stderr}"
        );
    } else {
        assert_eq!(stderr.matches("no syslog socket").count(), 1, "{stderr}");
        assert!(stderr.contains("WARNING [statemanager"), "{stderr}");
        assert!(stderr.contains("NOTICE [statemanager"), "{stderr}");
        assert!(stderr.contains("State Manager initialised"), "{stderr}");
    }
}

/// `worker_threads` sizes the async runtime (0, the default, is one per CPU core but one, at
/// least one); the start-up log says how many threads it has, and on how many cores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_threads_sizes_the_runtime() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let by_default = cores.saturating_sub(1).max(1);
    for (config, want) in [
        ("worker_threads: 3\n".to_string(), 3),
        (String::new(), by_default),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let s = Server::start_in(tmp.path(), &config, &[]);
        s.wait_ready().await;
        let plural = if want == 1 { "" } else { "s" };
        // Unset, connection_threads is one beside the workers on 2 cores or more.
        let own = if cores >= 2 {
            "1 connection thread"
        } else {
            "0 connection threads"
        };
        let line =
            format!("async runtime: {want} worker thread{plural} and {own} on {cores} CPU cores");
        assert!(s.log().contains(&line), "want {line:?}:\n{}", s.log());
    }
}

/// The slices the kernel reports for the threads of process `pid` named `name`, in µs.
fn thread_slices_us(pid: u32, name: &str) -> Vec<u64> {
    let mut slices = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let tid: i32 = task.file_name().unwrap().to_str().unwrap().parse().unwrap();
        let slice = statemanager_raft::thread_slice::of_thread(tid).unwrap();
        slices.push(slice.as_micros() as u64);
    }
    slices
}

/// `thread_slice_us` (default 0): the request threads (the runtime's workers and the
/// connection threads) and the log writer run with that
/// scheduler slice on kernels that have per-thread slices (Linux 6.12 and later, which the
/// start-up log says); `0` leaves the kernel's default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thread_slice_us_sets_the_write_paths_scheduler_slice() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start_in(
        tmp.path(),
        "thread_slice_us: 250\nconnection_threads: 1\n",
        &[],
    );
    s.wait_ready().await;
    let supported = s.log().contains("threads ask for a 250 µs scheduler slice");
    assert!(
        supported || s.log().contains("no per-thread scheduler slices"),
        "{}",
        s.log()
    );
    let workers = thread_slices_us(s.pid(), "tokio-rt-worker");
    let writer = thread_slices_us(s.pid(), "log-writer");
    let connections = thread_slices_us(s.pid(), "sm-conn-1");
    assert!(
        !workers.is_empty() && writer.len() == 1 && connections.len() == 1,
        "{workers:?} {writer:?} {connections:?}"
    );
    if supported {
        assert!(
            workers
                .iter()
                .chain(&writer)
                .chain(&connections)
                .all(|&us| us == 250),
            "{workers:?} {writer:?} {connections:?}"
        );
    }
    drop(s);

    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start_in(tmp.path(), "thread_slice_us: 0\n", &[]);
    s.wait_ready().await;
    assert!(!s.log().contains("scheduler slice"), "{}", s.log());
    let workers = thread_slices_us(s.pid(), "tokio-rt-worker");
    let writer = thread_slices_us(s.pid(), "log-writer");
    assert!(
        workers.iter().chain(&writer).all(|&us| us != 250),
        "{workers:?} {writer:?}"
    );
}
