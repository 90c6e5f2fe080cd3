//! Runs the standard-library Python tests that speak exactly plugnpy's requests (State
//! Manager and Cache Manager clients) against the real server.

mod common;

use std::process::Command;

use common::Server;

/// Runs `tests/python/<script>` with `env` (plus the server's host and port under
/// `OPSVIEW_<PREFIX>_HOST/_PORT`) and asserts that its unittest suite passed.
async fn run_python(s: &Server, script: &str, prefix: &str, namespace: &str) {
    let port = s.base.rsplit(':').next().unwrap().to_string();
    let path = format!("{}/tests/python/{script}", env!("CARGO_MANIFEST_DIR"));
    let (prefix, namespace) = (prefix.to_string(), namespace.to_string());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(path)
            .env(format!("OPSVIEW_{prefix}_HOST"), "127.0.0.1")
            .env(format!("OPSVIEW_{prefix}_PORT"), port)
            .env(format!("OPSVIEW_{prefix}_NAMESPACE"), namespace)
            .output()
            .expect("python3 must be installed to run this test")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} failed:\n{stderr}");
    assert!(stderr.contains("OK"), "{stderr}");
}

#[tokio::test]
async fn plugnpy_requests_work_unchanged() {
    let s = Server::start("");
    s.wait_ready().await;
    run_python(
        &s,
        "plugnpy_compat.py",
        "STATE_MANAGER",
        "PLUGIN#check_example",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugnpy_cache_client_works_unchanged() {
    let s = Server::start("");
    s.wait_ready().await;
    run_python(
        &s,
        "cache_compat.py",
        "CACHE_MANAGER",
        "PLUGIN#check_example",
    )
    .await;
}
