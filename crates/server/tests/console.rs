//! The console (`GET /ui`) in a real browser against a real 3-node cluster: headless Chromium
//! (Debian's `chromium`) driven by its chromedriver (`chromium-driver`) through selenium,
//! from PyPI, pinned, in the tests' own virtual environment under `target/`
//! (`common::python`). The browser side is `tests/python/console_ui.py`.
//!
//! The test fails (never skips) when Chromium or chromedriver is missing: `.ci/run` installs
//! them (`apt-get install chromium chromium-driver`). `CHROMIUM` and `CHROMEDRIVER` override
//! their paths. `CONSOLE_SCREENSHOT=path` saves a screenshot of the signed-in console (how
//! `docs/console.png` is made).

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Cluster;
use serde_json::json;

const SECRET: &str = "console-test-cluster-secret";
/// How long the browser script may take before the test fails.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

/// The first of `names` found as a file in `$PATH` (or `var` when set), or a failure that says
/// how to install it.
fn program(var: &str, names: &[&str], package: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(var) {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "{} not found in PATH (nor ${var}): install it with `apt-get install -y {package}` \
         (.ci/run does this); the console's browser test does not skip",
        names.join(" or ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_real_browser_against_a_3_node_cluster() {
    let chromium = program("CHROMIUM", &["chromium", "chromium-browser"], "chromium");
    let chromedriver = program("CHROMEDRIVER", &["chromedriver"], "chromium-driver");
    let python = common::python::venv_python();

    let cluster = Cluster::start(3, &format!("cluster_secret: {SECRET}\n"));
    let leader = cluster.wait_leader().await;
    // The browser opens the leader's console and the script kills another member, so the
    // console's node keeps its quorum and its admin reads keep answering.
    let ui = leader;
    let kill = (leader + 1) % 3;
    let nodes: Vec<String> = (0..3).map(|i| cluster.node(i).base.clone()).collect();
    let pids: Vec<String> = (0..3).map(|i| cluster.node(i).pid().to_string()).collect();

    // A follower relays an admin delete to the leader over the peer port (the browser's delete
    // goes to the leader's console); checked here with an HTTP client.
    let client = reqwest::Client::new();
    let follower = (leader + 2) % 3;
    let item = json!({"namespace": "console#relay", "key": "k"});
    let r = client
        .post(cluster.node(follower).url("/store_data"))
        .json(&json!({"namespace": "console#relay", "key": "k", "data": "v", "ttl": 600}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .post(cluster.node(follower).url("/admin/delete"))
        .bearer_auth(SECRET)
        .header("x-statemanager-console", "1")
        .json(&item)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    for i in 0..3 {
        let r = client
            .post(cluster.node(i).url("/fetch_data"))
            .json(&item)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "node {}", i + 1);
    }

    let work = tempfile::tempdir().expect("tempdir");
    let script = format!("{}/tests/python/console_ui.py", env!("CARGO_MANIFEST_DIR"));
    let mut command = Command::new(&python);
    command
        .arg(&script)
        .env("CONSOLE_NODES", nodes.join(","))
        .env("CONSOLE_PIDS", pids.join(","))
        .env("CONSOLE_UI", ui.to_string())
        .env("CONSOLE_KILL", kill.to_string())
        .env("CONSOLE_SECRET", SECRET)
        .env("CONSOLE_WORKDIR", work.path())
        .env("CHROMIUM", &chromium)
        .env("CHROMEDRIVER", &chromedriver)
        // Selenium must use the driver given, never fetch one.
        .env("SE_OFFLINE", "true")
        .env("SE_AVOID_STATS", "true")
        .stdin(Stdio::null());
    let out_path = work.path().join("console_ui.out");
    let out_file = std::fs::File::create(&out_path).expect("output file");
    command
        .stdout(out_file.try_clone().expect("output file"))
        .stderr(out_file);
    let (status, out) = tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().expect("run the browser script");
        let status = common::wait_bounded(&mut child, SCRIPT_TIMEOUT);
        (
            status,
            std::fs::read_to_string(&out_path).unwrap_or_default(),
        )
    })
    .await
    .unwrap();
    println!("{out}");
    let Some(status) = status else {
        panic!("the browser script ran longer than {SCRIPT_TIMEOUT:?}:\n{out}");
    };
    assert!(status.success(), "the browser script failed:\n{out}");
    assert!(out.contains("all checks passed"), "{out}");

    // A member that stops answering without closing its connections (SIGSTOP) is reported
    // down too: each member gets at most 1 s, so the whole answer comes well within 5 s.
    let stopped = follower;
    cluster.signal(stopped, libc::SIGSTOP);
    let started = Instant::now();
    let r = client
        .get(cluster.node(ui).url("/status/cluster"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    cluster.signal(stopped, libc::SIGCONT);
    let c: serde_json::Value = r.json().await.unwrap();
    let members = c["members"].as_array().unwrap();
    let row = |i: usize| {
        members
            .iter()
            .find(|m| m["id"] == json!(i + 1))
            .unwrap_or_else(|| panic!("member {} in {c}", i + 1))
    };
    assert_eq!(row(ui)["up"], true, "{c}");
    assert_eq!(row(kill)["up"], false, "{c}");
    assert_eq!(row(stopped)["up"], false, "{c}");
    assert_eq!(row(stopped)["error"], "no answer within 1 s", "{c}");
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
    drop(cluster);
}
