//! The HTTP API against the real binary: every rule and every error code of the
//! foundation issue.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{get_text, post, post_raw, Server};
use serde_json::json;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test]
async fn store_and_fetch_round_trip_with_times() {
    let s = Server::start("");
    s.wait_ready().await;
    let c = reqwest::Client::new();
    let before = now();
    let (st, body) = post(
        &c,
        &s.url("/store_data"),
        json!({"namespace":"PLUGIN#a","key":"k","data":"v","ttl":60}),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["stored"], true);
    let ts = body["timestamp"].as_f64().unwrap();
    assert!(
        ts >= before - 1.0 && ts <= now() + 1.0,
        "stamped with now: {ts}"
    );
    assert!((body["expires_at"].as_f64().unwrap() - (ts + 60.0)).abs() < 1e-3);
    let (st, got) = post(
        &c,
        &s.url("/fetch_data"),
        json!({"namespace":"PLUGIN#a","key":"k"}),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(got["data"], "v");
    assert_eq!(got["timestamp"], body["timestamp"]);
    assert_eq!(got["expires_at"], body["expires_at"]);
    // Other namespace, other key: not found.
    let (st, err) = post(
        &c,
        &s.url("/fetch_data"),
        json!({"namespace":"PLUGIN#b","key":"k"}),
    )
    .await;
    assert_eq!(st, 404);
    assert_eq!(err["error"]["code"], "not_found");
}

#[tokio::test]
async fn timestamp_rules() {
    let s = Server::start("");
    s.wait_ready().await;
    let c = reqwest::Client::new();
    let url = s.url("/store_data");
    // Future timestamp → replaced by now.
    let (st, b) = post(
        &c,
        &url,
        json!({"namespace":"n","key":"f","data":"x","ttl":60,"timestamp": now() + 3600.0}),
    )
    .await;
    assert_eq!(st, 200);
    assert!(b["timestamp"].as_f64().unwrap() < now() + 1.0);
    // 0 and null mean now.
    for t in [json!(0), json!(null)] {
        let (st, b) = post(
            &c,
            &url,
            json!({"namespace":"n","key":"z","data":"x","ttl":60,"timestamp": t}),
        )
        .await;
        assert_eq!(st, 200, "{b}");
    }
    // Past timestamp kept; older store → 409 with the stored timestamp; equal+same → 200;
    // equal+different → 409.
    let t = now() - 100.0;
    let (st, b) = post(
        &c,
        &url,
        json!({"namespace":"n","key":"k","data":"a","ttl":600,"timestamp": t}),
    )
    .await;
    assert_eq!(st, 200);
    let stored = b["timestamp"].as_f64().unwrap();
    assert!((stored - t).abs() < 1e-5);
    let (st, e) = post(
        &c,
        &url,
        json!({"namespace":"n","key":"k","data":"b","ttl":600,"timestamp": t - 1.0}),
    )
    .await;
    assert_eq!(st, 409, "{e}");
    assert_eq!(e["error"]["code"], "conflict");
    assert_eq!(e["error"]["stored_timestamp"].as_f64().unwrap(), stored);
    let (st, again) = post(
        &c,
        &url,
        json!({"namespace":"n","key":"k","data":"a","ttl":5,"timestamp": t}),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(again["expires_at"], b["expires_at"], "the first TTL stands");
    let (st, _) = post(
        &c,
        &url,
        json!({"namespace":"n","key":"k","data":"c","ttl":600,"timestamp": t}),
    )
    .await;
    assert_eq!(st, 409);
    // Already expired on arrival: 200, never visible.
    let (st, _) = post(
        &c,
        &url,
        json!({"namespace":"n","key":"old","data":"a","ttl":10,"timestamp": now() - 100.0}),
    )
    .await;
    assert_eq!(st, 200);
    let (st, _) = post(
        &c,
        &s.url("/fetch_data"),
        json!({"namespace":"n","key":"old"}),
    )
    .await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn limits_item_size_store_full_namespace_full() {
    let s = Server::start("max_persistent_data_item_size: 10\nmax_persistent_data_items: 3\nmax_items_per_namespace: 2\n");
    s.wait_ready().await;
    let c = reqwest::Client::new();
    let url = s.url("/store_data");
    let store =
        |ns: &str, key: &str, data: &str| json!({"namespace":ns,"key":key,"data":data,"ttl":60});
    let (st, e) = post(&c, &url, store("a", "big", "12345678901")).await;
    assert_eq!(st, 413);
    assert_eq!(e["error"]["code"], "item_too_large");
    // 10 UTF-8 bytes fit (5 two-byte characters).
    assert_eq!(post(&c, &url, store("a", "u", "ééééé")).await.0, 200);
    assert_eq!(post(&c, &url, store("a", "v", "x")).await.0, 200);
    let (st, e) = post(&c, &url, store("a", "w", "x")).await;
    assert_eq!(st, 507);
    assert_eq!(e["error"]["code"], "store_full");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("namespace"));
    assert_eq!(post(&c, &url, store("b", "w", "x")).await.0, 200);
    let (st, e) = post(&c, &url, store("c", "w", "x")).await;
    assert_eq!(st, 507);
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("max_persistent_data_items"));
    // Updating an existing key still works when full.
    assert_eq!(post(&c, &url, store("a", "v", "y")).await.0, 200);
}

#[tokio::test]
async fn bad_input_is_400_and_never_500() {
    let s = Server::start("");
    s.wait_ready().await;
    let c = reqwest::Client::new();
    let url = s.url("/store_data");
    let cases: Vec<(&str, String)> = vec![
        ("not json", "hello".into()),
        ("truncated", "{\"namespace\":".into()),
        ("empty body", "".into()),
        ("array", "[1,2]".into()),
        ("string", "\"x\"".into()),
        (
            "missing data",
            json!({"namespace":"n","key":"k","ttl":1}).to_string(),
        ),
        (
            "missing ttl",
            json!({"namespace":"n","key":"k","data":"d"}).to_string(),
        ),
        (
            "data number",
            json!({"namespace":"n","key":"k","data":1,"ttl":1}).to_string(),
        ),
        (
            "data null",
            json!({"namespace":"n","key":"k","data":null,"ttl":1}).to_string(),
        ),
        (
            "key number",
            json!({"namespace":"n","key":5,"data":"d","ttl":1}).to_string(),
        ),
        (
            "namespace empty",
            json!({"namespace":"","key":"k","data":"d","ttl":1}).to_string(),
        ),
        (
            "key too long",
            json!({"namespace":"n","key":"k".repeat(1025),"data":"d","ttl":1}).to_string(),
        ),
        (
            "ttl zero",
            json!({"namespace":"n","key":"k","data":"d","ttl":0}).to_string(),
        ),
        (
            "ttl negative",
            json!({"namespace":"n","key":"k","data":"d","ttl":-5}).to_string(),
        ),
        (
            "ttl fraction",
            json!({"namespace":"n","key":"k","data":"d","ttl":1.5}).to_string(),
        ),
        (
            "ttl string",
            json!({"namespace":"n","key":"k","data":"d","ttl":"60"}).to_string(),
        ),
        (
            "ttl too long",
            json!({"namespace":"n","key":"k","data":"d","ttl":315360001u64}).to_string(),
        ),
        (
            "ttl huge",
            "{\"namespace\":\"n\",\"key\":\"k\",\"data\":\"d\",\"ttl\":1e400}".into(),
        ),
        (
            "timestamp negative",
            json!({"namespace":"n","key":"k","data":"d","ttl":1,"timestamp":-1}).to_string(),
        ),
        (
            "timestamp string",
            json!({"namespace":"n","key":"k","data":"d","ttl":1,"timestamp":"now"}).to_string(),
        ),
        (
            "deep nesting",
            format!("{}{}", "[".repeat(10000), "]".repeat(10000)),
        ),
        (
            "invalid utf8",
            String::from_utf8_lossy(b"{\"namespace\":\"\xff\"}").into_owned(),
        ),
    ];
    for (name, body) in cases {
        let (st, e) = post_raw(&c, &url, body).await;
        assert_eq!(st, 400, "{name}: {e}");
        assert_eq!(e["error"]["code"], "invalid_request", "{name}");
        assert!(!e["error"]["message"].as_str().unwrap().is_empty());
    }
    // Raw invalid UTF-8 bytes.
    let (st, _) = post_raw(
        &c,
        &url,
        b"{\"namespace\":\"\xff\xfe\",\"key\":\"k\",\"data\":\"d\",\"ttl\":1}".to_vec(),
    )
    .await;
    assert_eq!(st, 400);
    // Fetch with wrong types.
    let (st, _) = post(
        &c,
        &s.url("/fetch_data"),
        json!({"namespace":["n"],"key":"k"}),
    )
    .await;
    assert_eq!(st, 400);
    // ttl 315360000 (ten years) and integral float ttl are accepted.
    let (st, _) = post_raw(
        &c,
        &url,
        "{\"namespace\":\"n\",\"key\":\"k\",\"data\":\"d\",\"ttl\":3600.0}",
    )
    .await;
    assert_eq!(st, 200);
    let (st, _) = post(
        &c,
        &url,
        json!({"namespace":"n","key":"k2","data":"d","ttl":315360000u64}),
    )
    .await;
    assert_eq!(st, 200);
    // Content-Type is not required, and a wrong one is not refused.
    let r = c
        .post(&url)
        .header("content-type", "text/plain")
        .body(json!({"namespace":"n","key":"ct","data":"d","ttl":5}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(c.get(s.url("/health")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn body_limit_unknown_paths_and_methods() {
    let s = Server::start("max_persistent_data_item_size: 1KB\n");
    s.wait_ready().await;
    let c = reqwest::Client::new();
    let limit = 6 * 1024 + 4096;
    // Declared length over the limit: refused from the headers alone, before any of the body
    // is sent (a raw socket, so the client does not race the early answer).
    let answer = raw_exchange(
        &s.base,
        &format!(
            "POST /store_data HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            limit + 1
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"body_too_large\""), "{answer}");
    // Chunked (no length): refused once the limit is crossed, without waiting for the end.
    let mut request =
        String::from("POST /store_data HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    for _ in 0..(limit / 1024 + 2) {
        request.push_str(&format!("400\r\n{}\r\n", " ".repeat(1024)));
    }
    let answer = raw_exchange(&s.base, &request).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // Escaped data up to the item limit fits in the body limit (\u00e9 is 6 bytes for 2).
    let data: String = "é".repeat(512);
    let body = format!(
        "{{\"namespace\":\"n\",\"key\":\"k\",\"data\":\"{}\",\"ttl\":5}}",
        "\\u00e9".repeat(512)
    );
    assert!(body.len() <= limit);
    let (st, _) = post_raw(&c, &s.url("/store_data"), body).await;
    assert_eq!(st, 200);
    let (_, got) = post(
        &c,
        &s.url("/fetch_data"),
        json!({"namespace":"n","key":"k"}),
    )
    .await;
    assert_eq!(got["data"], data);

    let r = c.get(s.url("/no/such/path")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let e: serde_json::Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "unknown_endpoint");
    let r = c.get(s.url("/store_data")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let e: serde_json::Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "method_not_allowed");
    let r = c.delete(s.url("/fetch_data")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let banner = get_text(&c, &s.url("/")).await;
    assert!(banner.starts_with("ITRS Group Cache Manager API"));
    let r = c.get(s.url("/ready")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap(),
        json!({"ready": true})
    );
}

/// Sends raw bytes on a fresh connection and reads the answer's head and first body bytes.
async fn raw_exchange(base: &str, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            stream.read(&mut buf[got..]),
        )
        .await;
        match read {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                got += n;
                let text = String::from_utf8_lossy(&buf[..got]);
                if text.contains("}}") {
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&buf[..got]).into_owned()
}

/// Stores without a timestamp mean "now": concurrent ones to the same key (which the writer
/// puts in one batch) must all succeed, the last applied winning — never a 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_stores_without_timestamp_never_conflict() {
    let s = Server::start("");
    s.wait_ready().await;
    let c = reqwest::Client::new();
    let mut tasks = vec![];
    for t in 0..32 {
        let c = c.clone();
        let url = s.url("/store_data");
        tasks.push(tokio::spawn(async move {
            let mut statuses = vec![];
            for i in 0..20 {
                let body = json!({"namespace":"n","key":"hot","data":format!("{t}-{i}"),"ttl":60});
                statuses.push(post(&c, &url, body).await.0);
            }
            statuses
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap().iter().all(|s| *s == 200));
    }
}

#[tokio::test]
async fn delete_data_is_durable_and_idempotent() {
    let mut s = Server::start("");
    s.wait_ready().await;
    let c = reqwest::Client::new();
    let item = json!({"namespace":"n","key":"k"});
    post(
        &c,
        &s.url("/store_data"),
        json!({"namespace":"n","key":"k","data":"v","ttl":60}),
    )
    .await;
    post(
        &c,
        &s.url("/store_data"),
        json!({"namespace":"n","key":"keep","data":"v","ttl":60}),
    )
    .await;
    let (st, body) = post(&c, &s.url("/delete_data"), item.clone()).await;
    assert_eq!((st, body), (200, json!({"deleted": true})));
    let (st, e) = post(&c, &s.url("/delete_data"), item.clone()).await;
    assert_eq!(st, 404, "a second delete finds nothing");
    assert_eq!(e["error"]["code"], "not_found");
    assert_eq!(post(&c, &s.url("/fetch_data"), item.clone()).await.0, 404);
    let (st, _) = post(&c, &s.url("/delete_data"), json!({"namespace":"n"})).await;
    assert_eq!(st, 400);
    // Durable: still deleted after kill -9, the other item still there.
    s.kill9();
    s.restart();
    s.wait_ready().await;
    assert_eq!(post(&c, &s.url("/fetch_data"), item).await.0, 404);
    assert_eq!(
        post(
            &c,
            &s.url("/fetch_data"),
            json!({"namespace":"n","key":"keep"})
        )
        .await
        .0,
        200
    );
}

/// Found by schemathesis (positive data refused): `max_wait_time` and the cache's `ttl` are
/// read as Python's `int()` reads them, which has no bound, so a string of more digits than
/// an i64 holds is a large number (a wait shortened to 3600 s; a TTL out of range), not a
/// malformed one.
#[tokio::test]
async fn cache_reads_long_digit_strings_as_large_numbers() {
    let s = Server::start("");
    s.wait_ready().await;
    let c = reqwest::Client::new();
    let digits = "99999999999999999999";
    // No data and no lock: the caller gets the lock at once.
    let (st, got) = post(
        &c,
        &s.url("/get_data"),
        json!({"namespace":"n","key":"big","max_wait_time": digits}),
    )
    .await;
    assert_eq!(
        (st, got),
        (200, json!({"data": null, "lock": true, "expiry": 0}))
    );
    // A large negative one is negative: never a lock.
    let (st, got) = post(
        &c,
        &s.url("/get_data"),
        json!({"namespace":"n","key":"neg","max_wait_time": format!("-{digits}")}),
    )
    .await;
    assert_eq!(
        (st, got),
        (200, json!({"data": null, "lock": false, "expiry": 0}))
    );
    // A TTL that large is out of range, and says so.
    let (st, e) = post(
        &c,
        &s.url("/set_data"),
        json!({"namespace":"n","key":"big","data":"v","ttl": digits}),
    )
    .await;
    assert_eq!(st, 400, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("between 1 and 315360000"),
        "{e}"
    );
}

/// Items above the size written under the state's read lock (64 KiB) are answered whole, as
/// small ones are, escapes included.
#[tokio::test]
async fn large_items_are_fetched_whole() {
    let s = Server::start("max_persistent_data_item_size: 1MB\n");
    s.wait_ready().await;
    let c = reqwest::Client::new();
    for (key, size) in [("small", 1_000), ("edge", 64 * 1024), ("large", 900_000)] {
        let data: String = (0..size)
            .map(|i| {
                if i % 1000 == 999 {
                    '"'
                } else {
                    (b'a' + (i % 26) as u8) as char
                }
            })
            .collect();
        let (st, got) = post(
            &c,
            &s.url("/store_data"),
            json!({"namespace":"n","key":key,"data":data,"ttl":60}),
        )
        .await;
        assert_eq!(st, 200, "{got}");
        let (st, got) = post(
            &c,
            &s.url("/fetch_data"),
            json!({"namespace":"n","key":key}),
        )
        .await;
        assert_eq!(st, 200, "{key}");
        assert_eq!(got["data"].as_str().unwrap(), data, "{key}");
    }
}
