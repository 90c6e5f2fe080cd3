//! Runs the standard-library Python tests that speak exactly plugnpy's requests (State
//! Manager and Cache Manager clients) against the real server.

mod common;

use std::process::Command;

use common::Server;

#[tokio::test]
async fn plugnpy_requests_work_unchanged() {
    let s = Server::start("");
    s.wait_ready().await;
    let port = s.base.rsplit(':').next().unwrap().to_string();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/plugnpy_compat.py"
    );
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .env("OPSVIEW_STATE_MANAGER_HOST", "127.0.0.1")
            .env("OPSVIEW_STATE_MANAGER_PORT", port)
            .env("OPSVIEW_STATE_MANAGER_NAMESPACE", "PLUGIN#check_example")
            .output()
            .expect("python3 must be installed to run this test")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python plugnpy test failed:\n{stderr}"
    );
    assert!(stderr.contains("OK"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugnpy_cache_client_works_unchanged() {
    let s = Server::start("");
    s.wait_ready().await;
    let port = s.base.rsplit(':').next().unwrap().to_string();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/cache_compat.py");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .env("OPSVIEW_CACHE_MANAGER_HOST", "127.0.0.1")
            .env("OPSVIEW_CACHE_MANAGER_PORT", port)
            .env("OPSVIEW_CACHE_MANAGER_NAMESPACE", "PLUGIN#check_example")
            .output()
            .expect("python3 must be installed to run this test")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python cache client test failed:\n{stderr}"
    );
    assert!(stderr.contains("OK"), "{stderr}");
}
