//! Protected namespaces against the real binary, with tokens minted both by us and by an
//! independent Python implementation of the reference scheme.

mod common;

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use common::{binary, post, Server};
use serde_json::json;

const K1: &str = "MDEyMzQ1Njc4OWFiY2RlZg==";
const K2: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const FOREIGN: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

fn python(args: &[&str]) -> Result<String, String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/token_compat.py");
    let out = Command::new(common::python::venv_python())
        .arg(script)
        .args(args)
        .output()
        .expect("the tests' Python (with cryptography) runs");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn py_mint(key: &str, ns: &str, ts: Option<i64>) -> String {
    let ts = ts.map(|t| t.to_string());
    let mut args = vec!["mint", key, ns];
    if let Some(t) = &ts {
        args.push(t);
    }
    python(&args).expect("python mint")
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn ours(keys: &str, ns: &str) -> String {
    let out = Command::new(binary())
        .args(["token", "--namespace", ns])
        .env("STATEMANAGER_NAMESPACE_KEYS", keys)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn tokens_both_directions_isolation_rotation_and_refusals() {
    let s = Server::start(&format!("namespace_keys: {K2},{K1}\n"));
    s.wait_ready().await;
    let c = reqwest::Client::new();
    let store =
        |ns: &str, data: &str| json!({"namespace": ns, "key": "k", "data": data, "ttl": 60});
    let fetch = |ns: &str| json!({"namespace": ns, "key": "k"});

    // Python mints (with the older key: rotation), we verify.
    let py_token = py_mint(K1, "PLUGIN#x", None);
    let (st, e) = post(&c, &s.url("/store_data"), store(&py_token, "protected")).await;
    assert_eq!(st, 200, "{e}");
    // We mint (first key), Python verifies, and our token reaches the same items.
    let our_token = ours(&format!("{K2},{K1}"), "PLUGIN#x");
    assert_eq!(
        python(&["verify", &format!("{K2},{K1}"), &our_token]).unwrap(),
        "PLUGIN#x"
    );
    let (st, got) = post(&c, &s.url("/fetch_data"), fetch(&our_token)).await;
    assert_eq!((st, got["data"].as_str()), (200, Some("protected")));

    // A plain name never reaches a token's items, nor the reverse.
    let (st, _) = post(&c, &s.url("/fetch_data"), fetch("PLUGIN#x")).await;
    assert_eq!(st, 404);
    post(&c, &s.url("/store_data"), store("PLUGIN#x", "plain")).await;
    let (_, got) = post(&c, &s.url("/fetch_data"), fetch(&our_token)).await;
    assert_eq!(got["data"], "protected");
    // The cache honours tokens too.
    let (st, _) = post(
        &c,
        &s.url("/set_data"),
        json!({"namespace": our_token, "key": "c", "data": "x", "ttl": 60}),
    )
    .await;
    assert_eq!(st, 200);
    let (_, got) = post(
        &c,
        &s.url("/get_data"),
        json!({"namespace": "PLUGIN#x", "key": "c"}),
    )
    .await;
    assert_eq!(got["data"], json!(null));

    // Refusals: expired, from the future, foreign key, truncated, garbage of token shape.
    let expired = py_mint(K1, "PLUGIN#x", Some(now() - 120));
    let future = py_mint(K1, "PLUGIN#x", Some(now() + 120));
    let foreign = py_mint(FOREIGN, "PLUGIN#x", None);
    let truncated = our_token[..our_token.len() - 4].to_string();
    let garbage = "A".repeat(88);
    for bad in [&expired, &future, &foreign, &truncated, &garbage] {
        for (path, body) in [
            ("/store_data", store(bad, "x")),
            ("/fetch_data", fetch(bad)),
            ("/get_data", json!({"namespace": bad, "key": "k"})),
            (
                "/set_data",
                json!({"namespace": bad, "key": "k", "data": "x", "ttl": 5}),
            ),
        ] {
            let (st, e) = post(&c, &s.url(path), body).await;
            assert_eq!(st, 403, "{path} {bad}: {e}");
            assert_eq!(e["error"]["code"], "forbidden");
        }
    }
    // Python refuses a forged token of ours too.
    let mut forged = our_token.clone().into_bytes();
    forged[30] = if forged[30] == b'A' { b'B' } else { b'A' };
    assert!(python(&["verify", K2, std::str::from_utf8(&forged).unwrap()]).is_err());
}

#[tokio::test]
async fn token_max_age_and_required_tokens() {
    let s = Server::start(&format!(
        "namespace_keys: {K1}\ntoken_max_age: 3600\nrequire_namespace_token: true\n"
    ));
    s.wait_ready().await;
    let c = reqwest::Client::new();
    // Minted 10 minutes ago: past the ±30 s margin, within token_max_age.
    let old = py_mint(K1, "PLUGIN#long", Some(now() - 600));
    let (st, e) = post(
        &c,
        &s.url("/store_data"),
        json!({"namespace": old, "key": "k", "data": "d", "ttl": 60}),
    )
    .await;
    assert_eq!(st, 200, "{e}");
    let ancient = py_mint(K1, "PLUGIN#long", Some(now() - 4000));
    let (st, _) = post(
        &c,
        &s.url("/fetch_data"),
        json!({"namespace": ancient, "key": "k"}),
    )
    .await;
    assert_eq!(st, 403);
    let (st, e) = post(
        &c,
        &s.url("/store_data"),
        json!({"namespace": "PLUGIN#plain", "key": "k", "data": "d", "ttl": 60}),
    )
    .await;
    assert_eq!(st, 403);
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("requires a namespace token"));
}
