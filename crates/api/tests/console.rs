//! Handler tests of the console (`/ui`) and the JSON it reads: `app().oneshot(...)` on a real
//! one-node [`Node`] in a temporary data directory, no socket.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use statemanager_api::{app, AdminAccess, ApiState, Namespaces};
use statemanager_cache::{Cache, CacheLimits};
use statemanager_core::{Limits, ManualClock, Namespace, StoreOp, Timestamp};
use statemanager_raft::auth::ClusterSecret;
use statemanager_raft::{Node, NodeOptions};
use statemanager_token::{Keyring, TimeRule};
use tower::ServiceExt;

const SECRET: &str = "a-cluster-secret-of-some-length";
const KEYS: &str = "MDEyMzQ1Njc4OWFiY2RlZg==";

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

struct Fixture {
    _dir: tempfile::TempDir,
    node: Node,
    state: ApiState,
    keys: Keyring,
}

/// A ready one-node store with `max_items_per_namespace: 50`, namespace keys, and `admin`.
async fn fixture(admin: AdminAccess) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(
        now_secs() * 1_000_000,
    )));
    let mut options = NodeOptions::new(dir.path().to_path_buf(), clock.clone());
    options.election_timeout = (Duration::from_millis(150), Duration::from_millis(300));
    options.heartbeat = Duration::from_millis(50);
    options.limits = Limits {
        max_items_per_namespace: Some(50),
        ..Limits::default()
    };
    options.api_addr = "127.0.0.1:1".into();
    let node = Node::start(options).await.unwrap();
    for _ in 0..400 {
        if node.readiness().is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    node.readiness().expect("node ready");
    let cache = Arc::new(Cache::new(
        CacheLimits {
            max_cache_size: 1000,
            max_item_size: 100,
        },
        clock.clone(),
    ));
    let keys = Keyring::from_comma_list(KEYS).unwrap();
    let namespaces = Namespaces::protected(
        keys.clone(),
        TimeRule {
            margin_secs: 3600,
            max_age_secs: None,
        },
        false,
        clock,
    );
    let mut state = ApiState::new(node.clone(), cache, namespaces);
    state.admin = admin;
    Fixture {
        _dir: dir,
        node,
        state,
        keys,
    }
}

async fn store(node: &Node, namespace: Namespace, key: &str, data: &str, ttl: f64) {
    let mut op = StoreOp::new("x", key, data, ttl, None, &Limits::default()).unwrap();
    op.id.namespace = namespace;
    node.store(op).await.unwrap();
}

/// Sends a request; the status, the headers and the body.
async fn send(
    f: &Fixture,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut r = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let body = body.map_or(Body::empty(), |b| Body::from(b.to_string()));
    let response = app(f.state.clone())
        .oneshot(r.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, bytes.to_vec())
}

async fn json_of(
    f: &Fixture,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (StatusCode, Value) {
    let (status, _, bytes) = send(f, method, path, headers, body).await;
    let value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{path}: not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_and_assets_are_served_with_a_strict_policy_and_no_inline_code() {
    let f = fixture(AdminAccess::Open).await;
    for (path, kind) in [
        ("/ui", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
    ] {
        let (status, headers, body) = send(&f, "GET", path, &[], None).await;
        assert_eq!(status, 200, "{path}");
        assert!(
            headers["content-type"].to_str().unwrap().starts_with(kind),
            "{path}: {:?}",
            headers["content-type"]
        );
        let csp = headers["content-security-policy"].to_str().unwrap();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert!(!body.is_empty());
    }
    let (_, _, page) = send(&f, "GET", "/ui", &[], None).await;
    let page = String::from_utf8(page).unwrap();
    // Scripts only by `src` from this origin, no inline handlers or styles, nothing remote.
    assert_eq!(page.matches("<script").count(), 1);
    assert!(page.contains("<script src=\"/ui/app.js\" defer></script>"));
    assert!(!page.contains(" style="));
    assert!(!page.contains(" onclick=") && !page.contains(" onload="));
    assert!(!page.contains("http://") && !page.contains("https://"));
    let (_, _, script) = send(&f, "GET", "/ui/app.js", &[], None).await;
    let script = String::from_utf8(script).unwrap();
    assert!(!script.contains("innerHTML"), "data is written as text");
    assert!(!script.contains("eval("));
    f.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_cluster_reports_every_member_with_its_summary() {
    let f = fixture(AdminAccess::Secret(ClusterSecret::new(SECRET).unwrap())).await;
    store(&f.node, Namespace::new("ns").unwrap(), "k", "v", 60.0).await;
    // Open like /status: no credentials needed, and no item data in it.
    let (status, c) = json_of(&f, "GET", "/status/cluster", &[], None).await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["node_id"], 1);
    assert_eq!(c["leader"]["id"], 1);
    assert_eq!(c["admin"], "secret");
    assert!(c["term"].as_u64().unwrap() >= 1);
    let members = c["members"].as_array().unwrap();
    assert_eq!(members.len(), 1);
    let m = &members[0];
    assert_eq!(m["id"], 1);
    assert_eq!(m["up"], true);
    assert_eq!(m["error"], Value::Null);
    assert_eq!(m["role"], "leader");
    assert_eq!(m["state"], "voter");
    assert_eq!(m["ready"], true);
    assert_eq!(m["reason"], Value::Null);
    assert_eq!(m["api_addr"], "127.0.0.1:1");
    assert_eq!(m["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(m["items"], 1);
    assert_eq!(m["lag"], 0);
    assert_eq!(m["commit_index"], m["applied_index"]);
    assert!(m["disk_free"].as_u64().unwrap() > 0);
    assert_eq!(m["disk_reserve"], 0);
    assert_eq!(m["cache"]["max_size"], 1000);
    for field in ["items", "size", "locks", "waiting", "hits", "misses"] {
        assert_eq!(m["cache"][field], 0, "{field}");
    }
    assert!(!c.to_string().contains("\"v\""), "no item data");
    f.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_need_the_secret_and_delete_needs_the_console_header() {
    let f = fixture(AdminAccess::Secret(ClusterSecret::new(SECRET).unwrap())).await;
    store(&f.node, Namespace::new("ns").unwrap(), "k", "value-1", 60.0).await;
    let auth = format!("Bearer {SECRET}");
    let item = json!({"namespace": "ns", "key": "k"});

    // Without the secret: 401 on every admin endpoint, nothing revealed.
    for (method, path, body) in [
        ("GET", "/admin/namespaces", None),
        ("POST", "/admin/list", Some(json!({"namespace": "ns"}))),
        ("POST", "/admin/fetch", Some(item.clone())),
    ] {
        let (status, e) = json_of(&f, method, path, &[], body).await;
        assert_eq!(status, 401, "{path}: {e}");
        assert_eq!(e["error"]["code"], "unauthorized");
    }
    let console = [("x-statemanager-console", "1")];
    let (status, e) = json_of(&f, "POST", "/admin/delete", &console, Some(item.clone())).await;
    assert_eq!(
        (status, &e["error"]["code"]),
        (401.try_into().unwrap(), &json!("unauthorized"))
    );
    // With the secret but without the console header, a delete is refused (cross-site
    // requests cannot add it) and the item stays.
    let with_auth = [("authorization", auth.as_str())];
    let (status, e) = json_of(&f, "POST", "/admin/delete", &with_auth, Some(item.clone())).await;
    assert_eq!(status, 403, "{e}");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("x-statemanager-console"));
    let (status, v) = json_of(&f, "POST", "/admin/fetch", &with_auth, Some(item.clone())).await;
    assert_eq!(status, 200);
    assert_eq!(v["data"], "value-1");
    assert!(v["expires_at"].as_f64().unwrap() > v["timestamp"].as_f64().unwrap());

    // With both: deleted, then 404 for a fetch and for a second delete.
    let both = [
        ("authorization", auth.as_str()),
        ("x-statemanager-console", "1"),
    ];
    let (status, d) = json_of(&f, "POST", "/admin/delete", &both, Some(item.clone())).await;
    assert_eq!((status, d), (StatusCode::OK, json!({"deleted": true})));
    let (status, _) = json_of(&f, "POST", "/admin/fetch", &with_auth, Some(item.clone())).await;
    assert_eq!(status, 404);
    let (status, _) = json_of(&f, "POST", "/admin/delete", &both, Some(item)).await;
    assert_eq!(status, 404);
    // A wrong secret is as good as none.
    let wrong = [("authorization", "Bearer not-the-secret-at-all")];
    let (status, _) = json_of(&f, "GET", "/admin/namespaces", &wrong, None).await;
    assert_eq!(status, 401);
    f.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_list_counts_and_protected_namespaces_by_decoded_name_only() {
    let f = fixture(AdminAccess::Open).await;
    store(
        &f.node,
        Namespace::new("plain").unwrap(),
        "a",
        "12345",
        60.0,
    )
    .await;
    store(&f.node, Namespace::new("plain").unwrap(), "b", "123", 30.0).await;
    // A protected namespace, stored through a token as a plugin would.
    let token = f.keys.mint("PLUGIN#secret", now_secs() as i64);
    let (status, _) = json_of(
        &f,
        "POST",
        "/store_data",
        &[],
        Some(json!({"namespace": token, "key": "p", "data": "hidden", "ttl": 600})),
    )
    .await;
    assert_eq!(status, 200);

    let (status, n) = json_of(&f, "GET", "/admin/namespaces", &[], None).await;
    assert_eq!(status, 200, "{n}");
    assert_eq!(n["items"], 3);
    assert_eq!(n["bytes"], 14);
    assert_eq!(n["max_items"], Limits::default().max_items);
    assert_eq!(n["max_items_per_namespace"], 50);
    let list = n["namespaces"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{n}");
    let now = n["now"].as_f64().unwrap();
    let plain = list.iter().find(|x| x["namespace"] == "plain").unwrap();
    assert_eq!(plain["protected"], false);
    assert_eq!(
        (plain["items"].as_u64(), plain["bytes"].as_u64()),
        (Some(2), Some(8))
    );
    let next = plain["next_expiry"].as_f64().unwrap() - now;
    assert!((29.0..=31.0).contains(&next), "{next}");
    let protected = list.iter().find(|x| x["protected"] == true).unwrap();
    assert_eq!(protected["namespace"], "PLUGIN#secret");
    assert_eq!(protected["items"], 1);
    // Never the token, nor the stored form with its NUL prefix, nor a value.
    let text = n.to_string();
    assert!(!text.contains(&token) && !text.contains("\\u0000") && !text.contains("hidden"));

    // The console addresses it by its decoded name with `protected: true`; the plain name
    // of the same text is another namespace.
    let (status, l) = json_of(
        &f,
        "POST",
        "/admin/list",
        &[],
        Some(json!({"namespace": "PLUGIN#secret", "protected": true})),
    )
    .await;
    assert_eq!(status, 200, "{l}");
    assert_eq!(l["keys"][0]["key"], "p");
    assert_eq!(l["keys"][0]["bytes"], 6);
    let (_, l) = json_of(
        &f,
        "POST",
        "/admin/list",
        &[],
        Some(json!({"namespace": "PLUGIN#secret"})),
    )
    .await;
    assert_eq!(l["keys"], json!([]));
    let (status, v) = json_of(
        &f,
        "POST",
        "/admin/fetch",
        &[],
        Some(json!({"namespace": "PLUGIN#secret", "protected": true, "key": "p"})),
    )
    .await;
    assert_eq!((status, &v["data"]), (StatusCode::OK, &json!("hidden")));
    let (status, e) = json_of(
        &f,
        "POST",
        "/admin/fetch",
        &[],
        Some(json!({"namespace": "PLUGIN#secret", "protected": "yes", "key": "p"})),
    )
    .await;
    assert_eq!(status, 400, "{e}");
    // Open admin access (no secret configured): still no delete without the console header.
    let body = json!({"namespace": "PLUGIN#secret", "protected": true, "key": "p"});
    let (status, _) = json_of(&f, "POST", "/admin/delete", &[], Some(body.clone())).await;
    assert_eq!(status, 403);
    let console = [("x-statemanager-console", "1")];
    let (status, _) = json_of(&f, "POST", "/admin/delete", &console, Some(body)).await;
    assert_eq!(status, 200);
    let (_, n) = json_of(&f, "GET", "/admin/namespaces", &[], None).await;
    assert_eq!(n["namespaces"].as_array().unwrap().len(), 1);
    f.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_traffic_serves_the_sampled_series() {
    let f = fixture(AdminAccess::Secret(ClusterSecret::new(SECRET).unwrap())).await;
    // Open, like /metrics; empty until two samples are taken.
    let (status, t) = json_of(&f, "GET", "/status/traffic", &[], None).await;
    assert_eq!(status, 200);
    assert_eq!(t, json!({"interval": 2.0, "endpoints": {}}));
    let sample = |count: u64| {
        format!(
            "statemanager_http_requests_total{{endpoint=\"/fetch_data\",status=\"200\"}} {count}\n\
             statemanager_http_request_duration_seconds_bucket{{endpoint=\"/fetch_data\",le=\"0.0001\"}} 0\n\
             statemanager_http_request_duration_seconds_bucket{{endpoint=\"/fetch_data\",le=\"0.001\"}} {count}\n\
             statemanager_http_request_duration_seconds_bucket{{endpoint=\"/fetch_data\",le=\"+Inf\"}} {count}\n"
        )
    };
    f.state.traffic.record(1000.0, &sample(100));
    f.state.traffic.record(1002.0, &sample(300));
    let (_, t) = json_of(&f, "GET", "/status/traffic", &[], None).await;
    let points = t["endpoints"]["/fetch_data"].as_array().unwrap();
    assert_eq!(points.len(), 1, "{t}");
    assert_eq!(points[0]["t"], 1002.0);
    assert_eq!(points[0]["rate"], 100.0);
    let (p50, p99) = (
        points[0]["p50"].as_f64().unwrap(),
        points[0]["p99"].as_f64().unwrap(),
    );
    assert!(0.0001 < p50 && p50 < p99 && p99 <= 0.001, "{p50} {p99}");
    f.node.shutdown().await;
}
