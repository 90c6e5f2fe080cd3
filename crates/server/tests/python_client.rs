//! Runs the Python client's unittest suite (`clients/python/tests`) against real servers:
//! plain HTTP, HTTPS that requires a client certificate (CA and certificates generated here,
//! as in `tls.rs`), and one with `namespace_keys` (a token minted by our binary). The package
//! is imported from its source directory through PYTHONPATH: nothing is installed.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::certs::Ca;
use common::{binary, Server};

const KEYS: &str = "MDEyMzQ1Njc4OWFiY2RlZg==";
const TOKEN_NAMESPACE: &str = "PLUGIN#python_client";
/// Fewer tests than this means discovery went wrong.
const MIN_TESTS: usize = 60;

/// The port of `http://127.0.0.1:PORT` or `https://...`.
fn port_of(url: &str) -> String {
    url.rsplit(':').next().unwrap().to_string()
}

/// A token for `TOKEN_NAMESPACE`, minted by `statemanager token`.
fn mint_token() -> String {
    let out = Command::new(binary())
        .args(["token", "--namespace", TOKEN_NAMESPACE])
        .env("STATEMANAGER_NAMESPACE_KEYS", KEYS)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_suite_against_real_servers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("repository root")
        .to_path_buf();

    // Plain HTTP.
    let plain = Server::start("");
    // HTTPS only, client certificates required.
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("python client test ca");
    let (server_cert, server_key) = ca.leaf(dir.path(), "server", &["localhost", "127.0.0.1"]);
    let (client_cert, client_key) = ca.leaf(dir.path(), "client", &["plugin"]);
    let ca_file = dir.path().join("ca.pem");
    ca.write(&ca_file);
    let https = Server::start(&format!(
        "tls_enabled: true\ntls_port: 0\nhttp_enabled: false\ntls:\n  cert_file: {}\n  key_file: {}\n  ca_cert: {}\n  check_client_cert: true\n",
        server_cert.display(),
        server_key.display(),
        ca_file.display()
    ));
    // Protected namespaces; a long token age so a slow machine cannot expire the token.
    let tokens = Server::start(&format!("namespace_keys: {KEYS}\ntoken_max_age: 3600\n"));

    plain.wait_ready().await;
    tokens.wait_ready().await;
    let mut identity = std::fs::read(&client_cert).unwrap();
    identity.extend(std::fs::read(&client_key).unwrap());
    let tls_client = reqwest::Client::builder()
        .tls_certs_only([ca.cert()])
        .identity(reqwest::Identity::from_pem(&identity).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    https.wait_ready_with(&tls_client).await;
    let https_url = https.https.clone().expect("an https address");
    let token = mint_token();

    let envs: Vec<(&str, String)> = vec![
        ("OPSVIEW_STATE_MANAGER_HOST", "127.0.0.1".into()),
        ("OPSVIEW_STATE_MANAGER_PORT", port_of(&plain.base)),
        (
            "OPSVIEW_STATE_MANAGER_NAMESPACE",
            "PLUGIN#check_python_client".into(),
        ),
        ("STATEMANAGER_TEST_HTTPS_PORT", port_of(&https_url)),
        ("STATEMANAGER_TEST_CA_FILE", ca_file.display().to_string()),
        (
            "STATEMANAGER_TEST_CERT_FILE",
            client_cert.display().to_string(),
        ),
        (
            "STATEMANAGER_TEST_KEY_FILE",
            client_key.display().to_string(),
        ),
        ("STATEMANAGER_TEST_TOKEN_PORT", port_of(&tokens.base)),
        ("STATEMANAGER_TEST_TOKEN", token),
        ("STATEMANAGER_TEST_TOKEN_NAMESPACE", TOKEN_NAMESPACE.into()),
        (
            "PYTHONPATH",
            root.join("clients/python").display().to_string(),
        ),
        ("PYTHONDONTWRITEBYTECODE", "1".into()),
    ];
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "unittest", "discover", "-v", "-s"])
            .arg(root.join("clients/python/tests"))
            .current_dir(&root);
        // Settings of the caller's own State Manager must not leak into the suite.
        for (var, _) in std::env::vars_os() {
            let name = var.to_string_lossy();
            if name.starts_with("OPSVIEW_STATE_MANAGER_") || name.starts_with("STATEMANAGER_") {
                cmd.env_remove(&var);
            }
        }
        cmd.envs(envs)
            .output()
            .expect("python3 must be installed to run this test")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the Python client's suite failed:\n{stdout}\n{stderr}"
    );
    let ran: usize = stderr
        .lines()
        .find_map(|l| l.strip_prefix("Ran ")?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no 'Ran N tests' line:\n{stderr}"));
    assert!(ran >= MIN_TESTS, "only {ran} tests ran:\n{stderr}");
    assert!(
        stderr.lines().any(|l| l == "OK"),
        "every test must run and pass (no skips):\n{stderr}"
    );
    eprintln!("{stderr}");
}
