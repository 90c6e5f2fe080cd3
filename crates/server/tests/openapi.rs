//! The OpenAPI document (`crates/api/openapi.json`): served by the real binary byte for byte,
//! it lists every route, and the server conforms to it under schemathesis (a property-based
//! API tester from PyPI, run as a subprocess from the tests' own virtual environment under
//! `target/`, created on first use: `common::python`).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::Server;
use serde_json::Value;

/// The document as kept in the repository.
fn repo_document() -> Vec<u8> {
    let path = format!("{}/../api/openapi.json", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

#[tokio::test]
async fn served_document_is_the_repo_file_and_lists_every_route() {
    let s = Server::start("");
    s.wait_ready().await;
    let c = reqwest::Client::new();
    let r = c.get(s.url("/openapi.json")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let served = r.bytes().await.unwrap();
    assert!(
        served == repo_document(),
        "served document differs from the file"
    );
    assert_eq!(&served[..], statemanager_api::OPENAPI_JSON.as_bytes());

    let doc: Value = serde_json::from_slice(&served).expect("the document is JSON");
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().expect("paths");
    for route in statemanager_api::ROUTES {
        assert!(paths.contains_key(*route), "{route} is not documented");
    }
    assert_eq!(paths.len(), statemanager_api::ROUTES.len());

    // Every documented operation is served by the binary, and answers a minimal request with a
    // status the document lists for it (a POST with `{}` is a 400).
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let request = match method.as_str() {
                "get" => c.get(s.url(path)),
                "post" => c.post(s.url(path)).body("{}"),
                other => panic!("{path}: unexpected method {other}"),
            };
            let r = request.send().await.unwrap();
            let status = r.status().as_u16().to_string();
            assert!(
                op["responses"].get(&status).is_some(),
                "{method} {path} answered {status}, which is not documented"
            );
            assert!(
                status != "404" && status != "405",
                "{method} {path}: {status}"
            );
        }
    }

    // A path the API does not have points at the document.
    let r = c.get(s.url("/no_such_endpoint")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "unknown_endpoint");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("/openapi.json"));
}

/// How long one schemathesis run may take before the test fails (it takes about 15 s).
const SCHEMATHESIS_TIMEOUT: Duration = Duration::from_secs(300);

/// The checks run on every response: no 5xx, only documented statuses and content types,
/// and bodies that match the documented schemas.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance";

/// The tests' own Python, with schemathesis (installed into `target/` on first use).
fn require_schemathesis() -> std::path::PathBuf {
    let python = common::python::venv_python();
    let found = Command::new(&python)
        .args(["-c", "import schemathesis"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "schemathesis is not importable by {}",
        python.display()
    );
    python
}

/// Runs schemathesis against `s` with the served document, `max_examples` test cases per
/// operation and a fixed seed; prints its report, or fails with it.
async fn run_schemathesis(s: &Server, max_examples: u32) {
    let python = require_schemathesis();
    // The served document, from a file: given its URL, schemathesis leaves out the operation
    // that serves it.
    let served = reqwest::get(s.url("/openapi.json"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let doc: Value = serde_json::from_slice(&served).expect("the document is JSON");
    let operations: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    let spec = s.dir.join("openapi.json");
    std::fs::write(&spec, &served).expect("write the document");
    let base = s.base.clone();
    let dir = s.dir.clone();
    let hooks = format!(
        "{}/tests/python/schemathesis_hooks.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let max_examples = max_examples.to_string();
    let (status, out) = tokio::task::spawn_blocking(move || {
        let out_path = dir.join("schemathesis.out");
        let out_file = std::fs::File::create(&out_path).expect("output file");
        let mut child = Command::new(&python)
            .args(["-m", "schemathesis.cli", "run"])
            .arg(&spec)
            .args(["--url", &base])
            .args(["--checks", CHECKS])
            .args(["--phases", "examples,coverage,fuzzing,stateful"])
            .args(["--max-examples", &max_examples])
            .args(["--seed", "20261125"])
            .args(["--generation-database", "none"])
            .args(["--workers", "1"])
            .args(["--request-timeout", "10"])
            .arg("--no-color")
            .env("SCHEMATHESIS_HOOKS", hooks)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(out_file.try_clone().expect("output file"))
            .stderr(out_file)
            .spawn()
            .expect("run python3");
        let status = common::wait_bounded(&mut child, SCHEMATHESIS_TIMEOUT);
        (
            status,
            std::fs::read_to_string(&out_path).unwrap_or_default(),
        )
    })
    .await
    .unwrap();
    let Some(status) = status else {
        panic!("schemathesis ran longer than {SCHEMATHESIS_TIMEOUT:?}:\n{out}");
    };
    assert!(status.success(), "schemathesis found problems:\n{out}");
    // It really tested every operation.
    assert!(
        out.contains(&format!("Tested: {operations}")),
        "not every operation was tested:\n{out}"
    );
    println!("{out}");
}

/// Whether `/metrics` counted at least one `status` answer on `endpoint`.
async fn answered(s: &Server, endpoint: &str, status: u16) -> bool {
    let metrics = reqwest::get(s.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series =
        format!("statemanager_http_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} ");
    metrics.lines().any(|l| l.starts_with(&series))
}

/// The whole API under schemathesis: documented examples, boundary values (coverage), random
/// valid and invalid requests (fuzzing), and store → fetch/delete chains (the document's
/// links). The item limit is raised so that stores succeed rather than fill the store.
#[tokio::test]
async fn schemathesis_finds_the_server_conforming() {
    let s = Server::start("max_persistent_data_items: 1000000\n");
    s.wait_ready().await;
    run_schemathesis(&s, 100).await;
    // Valid requests got through, invalid ones were refused, and fetches found stored items.
    for (endpoint, status) in [
        ("/store_data", 200),
        ("/store_data", 400),
        ("/fetch_data", 200),
        ("/fetch_data", 404),
        ("/delete_data", 200),
        ("/get_data", 200),
        ("/set_data", 200),
        ("/set_data", 400),
    ] {
        assert!(
            answered(&s, endpoint, status).await,
            "no {status} on {endpoint}"
        );
    }
}

/// The same with protected namespaces required: every request that names a namespace is
/// answered 403 `forbidden`, in the documented shape.
#[tokio::test]
async fn schemathesis_with_namespace_tokens_required() {
    let s =
        Server::start("namespace_keys: MDEyMzQ1Njc4OWFiY2RlZg==\nrequire_namespace_token: true\n");
    s.wait_ready().await;
    run_schemathesis(&s, 20).await;
    for endpoint in [
        "/store_data",
        "/fetch_data",
        "/delete_data",
        "/get_data",
        "/set_data",
    ] {
        assert!(answered(&s, endpoint, 403).await, "no 403 on {endpoint}");
    }
}
