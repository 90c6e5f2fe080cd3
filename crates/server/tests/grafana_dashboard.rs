//! `deploy/grafana-dashboard.json` refers only to metrics the server really exports: the
//! dashboard is parsed, and every `statemanager_*` name in its queries must appear in a live
//! `/metrics` scrape of the real binary after a few requests of every kind. `rate()` and
//! `increase()` must be applied to counters (or histogram series) only. The same scrape
//! holds `docs/api.md` to its metrics table: every family it names and the server exports has
//! the type the table says.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{post, Server};
use serde_json::{json, Value};

fn dashboard() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/grafana-dashboard.json");
    let text = std::fs::read_to_string(&path).expect("read the dashboard");
    serde_json::from_str(&text).expect("the dashboard is valid JSON")
}

/// Every PromQL string in the dashboard: panel targets' `expr`, variables' queries.
fn queries(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr" | "definition", Value::String(s)) => out.push(s.clone()),
                    ("query", Value::String(s)) if s.contains("statemanager_") => {
                        out.push(s.clone())
                    }
                    _ => queries(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| queries(v, out)),
        _ => {}
    }
}

/// The `statemanager_*` names in a query, each with the text just before it.
fn metric_names(query: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut rest = query;
    let mut offset = 0;
    while let Some(at) = rest.find("statemanager_") {
        let start = offset + at;
        let end = query[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(query.len(), |n| start + n);
        found.push((query[start..end].to_string(), query[..start].to_string()));
        offset = end;
        rest = &query[end..];
    }
    found
}

/// Sample names and `# TYPE` of a Prometheus text exposition.
fn exposition(text: &str) -> (BTreeSet<String>, BTreeMap<String, String>) {
    let mut names = BTreeSet::new();
    let mut types = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                types.insert(name.to_string(), kind.to_string());
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_string());
        }
    }
    (names, types)
}

#[test]
fn panels_are_well_formed() {
    let d = dashboard();
    assert_eq!(d["uid"], "statemanager");
    let variables: Vec<&str> = d["templating"]["list"]
        .as_array()
        .expect("variables")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert!(variables.contains(&"datasource"), "{variables:?}");
    assert!(variables.contains(&"instance"), "{variables:?}");
    let mut ids = BTreeSet::new();
    for panel in d["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().expect("a title");
        assert!(ids.insert(panel["id"].as_u64().expect("an id")), "{title}");
        for key in ["h", "w", "x", "y"] {
            assert!(panel["gridPos"][key].is_u64(), "{title}: gridPos.{key}");
        }
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
            let expr = t["expr"].as_str().expect("expr");
            assert!(expr.contains("instance=~\"$instance\""), "{title}: {expr}");
        }
    }
}

/// A `/metrics` scrape of a fresh single node after a request of every kind.
async fn scrape_after_every_kind_of_request() -> String {
    let server = Server::start("");
    server.wait_ready().await;
    let client = reqwest::Client::new();
    let url = |p: &str| server.url(p);
    // A store, a refused older store (409), a fetch, a delete, a cache miss, set and hit, and
    // an unknown path: every metric family gets a sample.
    let item = json!({"namespace": "n", "key": "k", "data": "v", "ttl": 3600});
    assert_eq!(post(&client, &url("/store_data"), item).await.0, 200);
    let an_hour_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        - 3600;
    let older =
        json!({"namespace": "n", "key": "k", "data": "w", "ttl": 7200, "timestamp": an_hour_ago});
    assert_eq!(post(&client, &url("/store_data"), older).await.0, 409);
    let key = json!({"namespace": "n", "key": "k"});
    assert_eq!(post(&client, &url("/fetch_data"), key.clone()).await.0, 200);
    assert_eq!(post(&client, &url("/delete_data"), key).await.0, 200);
    let cache_key = json!({"namespace": "c", "key": "k", "max_wait_time": 1});
    assert_eq!(
        post(&client, &url("/get_data"), cache_key.clone()).await.0,
        200
    );
    let set = json!({"namespace": "c", "key": "k", "data": "v", "ttl": 60});
    assert_eq!(post(&client, &url("/set_data"), set).await.0, 200);
    assert_eq!(post(&client, &url("/get_data"), cache_key).await.0, 200);
    let _ = client.get(url("/nowhere")).send().await.expect("GET");

    client
        .get(url("/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics body")
}

/// The metric families `docs/api.md`'s metrics table names, each with the type it gives.
fn documented_types() -> BTreeMap<String, String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/api.md");
    let text = std::fs::read_to_string(&path).expect("read docs/api.md");
    let mut documented = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("| `statemanager_")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (names, kind) = (cells[1], cells[2]);
        for name in names.split('`').skip(1).step_by(2) {
            let family = name.split('{').next().unwrap_or(name);
            if family.starts_with("statemanager_") {
                documented.insert(family.to_string(), kind.to_string());
            }
        }
    }
    documented
}

#[tokio::test]
async fn every_metric_has_the_type_the_docs_give_it() {
    let scrape = scrape_after_every_kind_of_request().await;
    let (_, types) = exposition(&scrape);
    let documented = documented_types();
    assert!(documented.len() > 30, "too few rows read: {documented:?}");
    let mut checked = 0;
    for (family, kind) in &types {
        if let Some(said) = documented.get(family) {
            assert_eq!(
                kind, said,
                "{family}: /metrics says {kind}, docs/api.md {said}"
            );
            checked += 1;
        }
    }
    // The write path's families are among them (a store was made).
    for family in [
        "statemanager_wal_append_fsync_seconds",
        "statemanager_wal_appends_per_fsync",
        "statemanager_batch_ops",
        "statemanager_apply_seconds",
    ] {
        assert!(
            types.contains_key(family),
            "{family} not exported\n{scrape}"
        );
    }
    assert!(checked > 15, "only {checked} families checked\n{scrape}");
}

#[tokio::test]
async fn every_metric_the_dashboard_uses_is_exported() {
    let scrape = scrape_after_every_kind_of_request().await;
    let (exported, types) = exposition(&scrape);

    let mut all = Vec::new();
    queries(&dashboard(), &mut all);
    assert!(all.len() > 20, "too few queries found: {all:?}");
    let mut used = BTreeSet::new();
    for query in &all {
        let names = metric_names(query);
        assert!(
            !names.is_empty(),
            "a query without a statemanager metric: {query}"
        );
        for (name, before) in names {
            assert!(
                exported.contains(&name),
                "the dashboard uses {name}, which /metrics does not export (in {query})\n{scrape}"
            );
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| types.contains_key(*f)))
                .unwrap_or(&name);
            let kind = types.get(family).map(String::as_str).unwrap_or("untyped");
            let before = before.trim_end();
            if before.ends_with("rate(") || before.ends_with("increase(") {
                assert!(
                    kind == "counter" || (kind == "histogram" && family != name),
                    "rate/increase over {name}, a {kind} (in {query})"
                );
            } else if kind == "counter" {
                panic!("counter {name} used without rate/increase (in {query})");
            }
            used.insert(family.to_string());
        }
    }
    // The list: each of these families is on the dashboard.
    for wanted in [
        "statemanager_http_requests_total",
        "statemanager_http_request_duration_seconds",
        "statemanager_wal_append_fsync_seconds",
        "statemanager_batch_ops",
        "statemanager_items",
        "statemanager_item_bytes",
        "statemanager_expired_items_total",
        "statemanager_conflicts_total",
        "statemanager_raft_term",
        "statemanager_raft_commit_index",
        "statemanager_raft_applied_index",
        "statemanager_raft_leader_changes_total",
        "statemanager_raft_is_leader",
        "statemanager_ready",
        "statemanager_cache_hits_total",
        "statemanager_cache_misses_total",
        "statemanager_cache_evictions_total",
    ] {
        assert!(used.contains(wanted), "the dashboard lacks {wanted}");
    }
}
