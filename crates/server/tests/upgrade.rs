//! A data directory written by the release on openraft 0.9 opens after the upgrade to 0.10.
//!
//! `fixtures/data-openraft-0.9/` was written by `statemanager serve` built from `e139e8b`
//! (openraft 0.9.25) with `snapshot_logs: 10`: 25 stores one by one (`PLUGIN#check_fixture`,
//! keys `k00`…`k24`, TTL ten years), then `k03` deleted, then SIGTERM. It holds a snapshot
//! (items, membership, the 0.9 snapshot id), log entries after it (batches, the vote, the
//! committed hint and the purge marker), so every kind of record 0.9 wrote is read back.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{post, Server};
use serde_json::json;

const NAMESPACE: &str = "PLUGIN#check_fixture";

async fn fetch(c: &reqwest::Client, s: &Server, key: &str) -> (u16, serde_json::Value) {
    post(
        c,
        &s.url("/fetch_data"),
        json!({"namespace": NAMESPACE, "key": key}),
    )
    .await
}

/// Every item the 0.9 release stored is there, and the deleted one is not.
async fn the_fixture_reads_back(c: &reqwest::Client, s: &Server) {
    for i in 0..25 {
        let key = format!("k{i:02}");
        let (status, body) = fetch(c, s, &key).await;
        if i == 3 {
            assert_eq!(status, 404, "{key} was deleted by 0.9: {body}");
        } else {
            assert_eq!(status, 200, "{key}: {body}");
            assert_eq!(
                body["data"],
                format!("value {i:02} written by 0.9 — ünïcødé"),
                "{key}"
            );
        }
    }
}

#[tokio::test]
async fn a_data_dir_written_on_openraft_0_9_opens_and_goes_on() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data-openraft-0.9");
    // (A test never writes into the repository.)
    common::copy_tree(&fixture, &tmp.path().join("data"));
    let mut s = Server::start_in(tmp.path(), "snapshot_logs: 10\n", &[]);
    s.wait_ready().await;
    let c = reqwest::Client::new();
    the_fixture_reads_back(&c, &s).await;

    // The upgraded node writes on: enough entries for a snapshot of its own, then a restart
    // reads its own snapshot and log after the 0.9 ones.
    let snapshot = tmp.path().join("data/snapshots/current.snap");
    let old_snapshot = std::fs::read(&snapshot).expect("the fixture's snapshot");
    for i in 0..30 {
        let (status, body) = post(
            &c,
            &s.url("/store_data"),
            json!({"namespace": NAMESPACE, "key": format!("new{i}"), "data": "after", "ttl": 3600}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read(&snapshot).ok().as_ref() == Some(&old_snapshot) {
        assert!(
            Instant::now() < deadline,
            "the upgraded node took no snapshot"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.restart();
    s.wait_ready().await;
    the_fixture_reads_back(&c, &s).await;
    for i in 0..30 {
        let (status, body) = fetch(&c, &s, &format!("new{i}")).await;
        assert_eq!(status, 200, "new{i}: {body}");
    }
}
