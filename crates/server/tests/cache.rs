//! The Cache Manager API (`/get_data`, `/set_data`) against the real binary.

mod common;

use std::time::{Duration, Instant};

use common::{get_text, post, post_raw, sample, Server};
use serde_json::json;

fn get(ns: &str, key: &str, wait: i64) -> serde_json::Value {
    json!({"namespace": ns, "key": key, "max_wait_time": wait})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_computes_the_others_get_its_value_right_after_set() {
    let s = Server::start("");
    s.wait_ready().await;
    let c = reqwest::Client::new();
    let url = s.url("/get_data");
    // Eight "plugins" ask at once; exactly one gets the lock.
    let mut tasks = vec![];
    for _ in 0..8 {
        let (c, url) = (c.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let (st, body) = post(&c, &url, get("PLUGIN#p", "expensive", 20)).await;
            assert_eq!(st, 200);
            (body, Instant::now())
        }));
    }
    // The locker is answered at once and the seven others wait: set the value once the
    // locker's answer is in and the server counts seven waits (bounded; the checks below
    // fail if that never happens).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waits = sample(
            &get_text(&c, &s.url("/metrics")).await,
            "statemanager_cache_waits_total",
        );
        let locker_answered = tasks.iter().any(|t| t.is_finished());
        if (waits >= 7.0 && locker_answered) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let set_at = Instant::now();
    let (st, ok) = post(
        &c,
        &s.url("/set_data"),
        json!({"namespace":"PLUGIN#p","key":"expensive","data":"42","ttl":60}),
    )
    .await;
    assert_eq!((st, ok), (200, json!("ok")));
    let mut lockers = 0;
    for t in tasks {
        let (body, at) = t.await.unwrap();
        if body["lock"] == json!(true) {
            lockers += 1;
            assert_eq!(body["data"], json!(null));
            assert!(at < set_at);
        } else {
            assert_eq!(body["data"], "42", "{body}");
            assert!(body["expiry"].as_i64().unwrap() > 0);
            // Woken by the set, not by a polling interval or the 20 s deadline.
            assert!(
                at.duration_since(set_at) < Duration::from_secs(3),
                "woken late"
            );
        }
    }
    assert_eq!(lockers, 1);
    let status: serde_json::Value = c
        .get(s.url("/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["cache_items"], 1);
    assert_eq!(
        status["max_item_size"],
        json!("PLUGIN#p".len() + "expensive".len() + 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiter_timeout_and_abandoned_lock() {
    let s = Server::start("");
    s.wait_ready().await;
    let c = reqwest::Client::new();
    let url = s.url("/get_data");
    // A locker that waits up to 30 s holds the lock; a waiter with 1 s times out empty.
    assert_eq!(post(&c, &url, get("n", "slow", 30)).await.1["lock"], true);
    let t = Instant::now();
    let (st, body) = post(&c, &url, get("n", "slow", 1)).await;
    assert_eq!(
        (st, body.clone()),
        (200, json!({"data": null, "lock": false, "expiry": 0}))
    );
    assert!(t.elapsed() >= Duration::from_millis(900) && t.elapsed() < Duration::from_secs(5));
    // A locker with a 1 s wait abandons its lock; a waiter is woken when it expires (not at
    // its own 20 s deadline) and takes the lock over.
    assert_eq!(post(&c, &url, get("n", "gone", 1)).await.1["lock"], true);
    let t = Instant::now();
    let (_, body) = post(&c, &url, get("n", "gone", 20)).await;
    assert_eq!(body["lock"], true, "{body}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "woken at lock expiry: {:?}",
        t.elapsed()
    );
    // Plain lookups (0) never lock; negative waits answer nothing.
    assert_eq!(
        post(&c, &url, get("n", "other", 0)).await.1,
        json!({"data": null, "lock": false, "expiry": 0})
    );
    assert_eq!(post(&c, &url, get("n", "other", 0)).await.1["lock"], false);
}

#[tokio::test]
async fn ttl_eviction_size_and_separation_from_the_store() {
    // Items: 1 (ns) + 1 (key) + 100 (data) = 102 bytes; the cache holds 3 of them.
    let s = Server::start("max_cache_size: 1KB\nmax_item_size: 100\n");
    s.wait_ready().await;
    let c = reqwest::Client::new();
    let set =
        |key: &str, ttl: i64| json!({"namespace":"n","key":key,"data":"x".repeat(100),"ttl":ttl});
    let url = s.url("/set_data");
    for k in ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"] {
        assert_eq!(post(&c, &url, set(k, 60)).await.0, 200);
    }
    // 1024 / 102 = 10 items fit; one more evicts the oldest write ("a"); re-setting "b" makes
    // it the newest, so the next eviction takes "c".
    assert_eq!(post(&c, &url, set("k", 60)).await.0, 200);
    assert_eq!(post(&c, &url, set("b", 60)).await.0, 200);
    assert_eq!(post(&c, &url, set("l", 60)).await.0, 200);
    let present = |k: &str| get("n", k, 0);
    assert_eq!(
        post(&c, &s.url("/get_data"), present("a")).await.1["data"],
        json!(null)
    );
    assert_eq!(
        post(&c, &s.url("/get_data"), present("c")).await.1["data"],
        json!(null)
    );
    assert!(post(&c, &s.url("/get_data"), present("b")).await.1["data"].is_string());
    assert!(post(&c, &s.url("/get_data"), present("l")).await.1["data"].is_string());
    // Size limit: refused, old value kept.
    let (st, e) = post(
        &c,
        &url,
        json!({"namespace":"n","key":"b","data":"y".repeat(101),"ttl":60}),
    )
    .await;
    // 400, as the original (our JSON body, its stable code).
    assert_eq!(st, 400);
    assert_eq!(e["error"]["code"], "item_too_large");
    assert_eq!(
        post(&c, &s.url("/get_data"), present("b")).await.1["data"],
        json!("x".repeat(100))
    );
    // TTL: readable while now < expiry (int(now + ttl)).
    assert_eq!(
        post(
            &c,
            &url,
            json!({"namespace":"n","key":"short","data":"s","ttl":1})
        )
        .await
        .0,
        200
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while post(&c, &s.url("/get_data"), present("short")).await.1["data"].is_string() {
        assert!(Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The cache and the persistent store never see each other's items.
    assert_eq!(
        post(
            &c,
            &s.url("/fetch_data"),
            json!({"namespace":"n","key":"b"})
        )
        .await
        .0,
        404
    );
    post(
        &c,
        &s.url("/store_data"),
        json!({"namespace":"n","key":"p","data":"persist","ttl":60}),
    )
    .await;
    assert_eq!(
        post(&c, &s.url("/get_data"), present("p")).await.1["data"],
        json!(null)
    );
}

#[tokio::test]
async fn bad_input_is_400_and_server_stays_healthy() {
    let s = Server::start("");
    s.wait_ready().await;
    let c = reqwest::Client::new();
    let get_cases = vec![
        "not json".to_string(),
        "".into(),
        "[1]".into(),
        json!({"key":"k"}).to_string(),
        json!({"namespace":"n"}).to_string(),
        json!({"namespace":1,"key":"k"}).to_string(),
        json!({"namespace":"n","key":"k","max_wait_time":"abc"}).to_string(),
        json!({"namespace":"n","key":"k","max_wait_time":null}).to_string(),
        json!({"namespace":"n","key":"k","max_wait_time":[]}).to_string(),
        json!({"namespace":"n","key":"k","max_wait_time":"2.9"}).to_string(),
    ];
    for body in get_cases {
        let (st, e) = post_raw(&c, &s.url("/get_data"), body.clone()).await;
        assert_eq!(st, 400, "get_data {body}: {e}");
        assert_eq!(e["error"]["code"], "invalid_request");
    }
    let set_cases = vec![
        "{".to_string(),
        json!({"namespace":"n","key":"k","data":"d"}).to_string(),
        json!({"namespace":"n","key":"k","ttl":5}).to_string(),
        json!({"namespace":"n","key":"k","data":5,"ttl":5}).to_string(),
        json!({"namespace":"n","key":"k","data":null,"ttl":5}).to_string(),
        json!({"namespace":"n","key":"k","data":"d","ttl":"x"}).to_string(),
        json!({"namespace":"n","key":"k","data":"d","ttl":null}).to_string(),
        json!({"namespace":"n","key":"k","data":"d","ttl":0.9}).to_string(),
        json!({"namespace":"n","key":"k","data":"d","ttl":0}).to_string(),
        json!({"namespace":"n|x","key":"k","data":"d","ttl":5}).to_string(),
        json!({"namespace":"n","key":"k|y","data":"d","ttl":5}).to_string(),
        json!({"namespace":"","key":"k","data":"d","ttl":5}).to_string(),
    ];
    for body in set_cases {
        let (st, e) = post_raw(&c, &s.url("/set_data"), body.clone()).await;
        assert_eq!(st, 400, "set_data {body}: {e}");
    }
    // Python int() rules: 2.9 → 2, "5" → 5, "60" ttl → 60, 1.9 ttl → 1.
    assert_eq!(
        post(
            &c,
            &s.url("/get_data"),
            json!({"namespace":"n","key":"k","max_wait_time":"0"})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        post(
            &c,
            &s.url("/set_data"),
            json!({"namespace":"n","key":"k","data":"","ttl":"60"})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        post(
            &c,
            &s.url("/set_data"),
            json!({"namespace":"n","key":"k","data":"ü","ttl":1.9})
        )
        .await
        .0,
        200
    );
    let (st, got) = post(
        &c,
        &s.url("/get_data"),
        json!({"namespace":"n","key":"k","max_wait_time":2.9}),
    )
    .await;
    assert_eq!((st, got["data"].as_str()), (200, Some("ü")));
    assert_eq!(c.get(s.url("/health")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn cache_is_empty_after_restart_while_stored_data_survives() {
    let mut s = Server::start("");
    s.wait_ready().await;
    let c = reqwest::Client::new();
    post(
        &c,
        &s.url("/set_data"),
        json!({"namespace":"n","key":"k","data":"ephemeral","ttl":600}),
    )
    .await;
    post(
        &c,
        &s.url("/store_data"),
        json!({"namespace":"n","key":"k","data":"persistent","ttl":600}),
    )
    .await;
    s.restart();
    s.wait_ready().await;
    assert_eq!(
        post(&c, &s.url("/get_data"), get("n", "k", 0)).await.1["data"],
        json!(null)
    );
    assert_eq!(
        post(
            &c,
            &s.url("/fetch_data"),
            json!({"namespace":"n","key":"k"})
        )
        .await
        .1["data"],
        "persistent"
    );
}

#[tokio::test]
async fn metrics_expose_requests_store_raft_and_cache() {
    let s = Server::start("");
    s.wait_ready().await;
    let c = reqwest::Client::new();
    post(
        &c,
        &s.url("/store_data"),
        json!({"namespace":"n","key":"k","data":"v","ttl":60}),
    )
    .await;
    post(
        &c,
        &s.url("/store_data"),
        json!({"namespace":"n","key":"k","data":"w","ttl":60,"timestamp":1}),
    )
    .await;
    post(&c, &s.url("/get_data"), get("n", "k", 5)).await;
    post(
        &c,
        &s.url("/set_data"),
        json!({"namespace":"n","key":"k","data":"v","ttl":60}),
    )
    .await;
    post(&c, &s.url("/get_data"), get("n", "k", 0)).await;
    let r = c.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    for needle in [
        "statemanager_http_requests_total{endpoint=\"/store_data\",status=\"200\"} 1",
        "statemanager_http_requests_total{endpoint=\"/store_data\",status=\"409\"} 1",
        "statemanager_http_request_duration_seconds_bucket{endpoint=\"/store_data\"",
        "statemanager_wal_append_fsync_seconds_bucket",
        "statemanager_batch_ops_bucket",
        "statemanager_conflicts_total 1",
        "statemanager_items 1",
        "statemanager_raft_is_leader 1",
        "statemanager_raft_leader_changes_total",
        "statemanager_cache_hits_total 1",
        "statemanager_cache_locks_granted_total 1",
        "statemanager_cache_items 1",
    ] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
    assert!(!text.contains("\"v\""), "no item data in metrics");
}
