//! HTTPS against the real binary, with a CA and certificates generated in the test.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::certs::Ca;
use common::{post, Server};
use serde_json::json;

fn client(ca: &Ca, identity: Option<(&Path, &Path)>) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = reqwest::Client::builder()
        .tls_certs_only([ca.cert()])
        .timeout(Duration::from_secs(10));
    if let Some((cert, key)) = identity {
        let mut pem = std::fs::read(cert).unwrap();
        pem.extend(std::fs::read(key).unwrap());
        b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

fn config(server: &(PathBuf, PathBuf), extra: &str) -> String {
    format!(
        "tls_enabled: true\ntls_port: 0\ntls:\n  cert_file: {}\n  key_file: {}\n{extra}",
        server.0.display(),
        server.1.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_and_http_serve_the_same_api_and_sighup_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test ca");
    let server_files = ca.leaf(dir.path(), "server", &["localhost", "127.0.0.1"]);
    let mut s = Server::start(&config(&server_files, ""));
    s.wait_ready().await;
    let https = s.https.clone().expect("https address");
    let tls = client(&ca, None);
    let plain = reqwest::Client::new();
    let (st, _) = post(
        &tls,
        &format!("{https}/store_data"),
        json!({"namespace":"n","key":"k","data":"over tls","ttl":60}),
    )
    .await;
    assert_eq!(st, 200);
    let (st, got) = post(
        &plain,
        &s.url("/fetch_data"),
        json!({"namespace":"n","key":"k"}),
    )
    .await;
    assert_eq!(
        (st, got["data"].as_str()),
        (200, Some("over tls")),
        "same store on both listeners"
    );
    // The console is served on HTTPS too, with its security policy.
    let r = tls.get(format!("{https}/ui")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));
    assert!(r.text().await.unwrap().contains("/ui/app.js"));
    let r = tls
        .get(format!("{https}/status/cluster"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // New certificates from another CA; SIGHUP; the open connection keeps working, new
    // connections get the new certificate.
    let ca2 = Ca::new("second ca");
    let fresh = ca2.leaf(dir.path(), "fresh", &["localhost", "127.0.0.1"]);
    std::fs::copy(&fresh.0, &server_files.0).unwrap();
    std::fs::copy(&fresh.1, &server_files.1).unwrap();
    // SAFETY: kill(2) on our own child's PID.
    unsafe { libc::kill(s.pid() as i32, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if s.log().contains("TLS certificates reloaded") {
            break;
        }
        assert!(Instant::now() < deadline, "{}", s.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (st, _) = post(
        &tls,
        &format!("{https}/fetch_data"),
        json!({"namespace":"n","key":"k"}),
    )
    .await;
    assert_eq!(
        st, 200,
        "the open (kept-alive) connection survives the reload"
    );
    let new_client = client(&ca2, None);
    let (st, _) = post(
        &new_client,
        &format!("{https}/fetch_data"),
        json!({"namespace":"n","key":"k"}),
    )
    .await;
    assert_eq!(st, 200, "new connections see the new certificate");
    assert!(
        client(&ca, None)
            .post(format!("{https}/fetch_data"))
            .body("{}")
            .send()
            .await
            .is_err(),
        "the old CA no longer verifies new connections"
    );
    // Still a clean stop.
    assert!(s.signal_and_wait(libc::SIGTERM).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_required_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("cluster ca");
    let rogue = Ca::new("rogue ca");
    let server_files = ca.leaf(dir.path(), "server", &["localhost", "127.0.0.1"]);
    let good = ca.leaf(dir.path(), "client", &["plugin"]);
    let bad = rogue.leaf(dir.path(), "rogue", &["plugin"]);
    let ca_file = ca.write(&dir.path().join("ca.pem"));
    let s = Server::start(&config(
        &server_files,
        &format!(
            "  ca_cert: {}\n  check_client_cert: true\nhttp_enabled: false\n",
            ca_file.display()
        ),
    ));
    let https = s.https.clone().unwrap();
    assert!(s.base.starts_with("https://"), "plain HTTP is off");
    let with_cert = client(&ca, Some((&good.0, &good.1)));
    s.wait_ready_with(&with_cert).await;
    let (st, _) = post(
        &with_cert,
        &format!("{https}/store_data"),
        json!({"namespace":"n","key":"k","data":"d","ttl":60}),
    )
    .await;
    assert_eq!(st, 200);
    let without = client(&ca, None);
    assert!(
        without.get(format!("{https}/health")).send().await.is_err(),
        "no client certificate"
    );
    let rogue_client = client(&ca, Some((&bad.0, &bad.1)));
    assert!(
        rogue_client
            .get(format!("{https}/health"))
            .send()
            .await
            .is_err(),
        "foreign CA"
    );
}

#[test]
fn bad_certificate_files_stop_startup_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, "not a certificate").unwrap();
    std::fs::write(&key, "not a key").unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(&cfg, config(&(cert.clone(), key), "")).unwrap();
    let out = std::process::Command::new(common::binary())
        .args(["serve", "--log-stderr", "--port", "0", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tls.cert_file"), "{stderr}");
    assert!(stderr.contains(cert.to_str().unwrap()), "{stderr}");
    assert!(
        !dir.path().join("data").exists(),
        "refused before touching the data directory"
    );
}

/// HTTP/2 negotiated over TLS (ALPN `h2`), with curl as the client: two requests go on one
/// connection, and the one held longer than `header_timeout_ms` (a `get_data` waiting for
/// another client's lock) is answered although the other stream's answer leaves the
/// connection quiet meanwhile: a request being served is never idle, and HTTP/2 has no head
/// deadline. (Before `listener::activity::Serving`, the connection was closed as idle 500 ms
/// after the fetch's answer.) h2c is checked by `hostile.rs` with hyper's client: curl 7.88
/// (Debian 12) cannot reuse a connection opened with `--http2-prior-knowledge` ("Error in the
/// HTTP2 framing layer", the same against a bare `axum::serve`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_are_served_past_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test ca");
    let ca_file = ca.write(&dir.path().join("ca.pem"));
    let server_files = ca.leaf(dir.path(), "server", &["localhost", "127.0.0.1"]);
    // One worker and one connection thread: the two curl runs below, one connection each,
    // one after the other, are served one on each.
    let s = Server::start(&config(
        &server_files,
        "header_timeout_ms: 500\nworker_threads: 1\nconnection_threads: 1\n",
    ));
    s.wait_ready().await;
    let https = s.https.clone().expect("https address");
    common::store_and_hold_a_lock(&client(&ca, None), &https, "over h2").await;
    let tls_h2 = vec![
        "--http2".to_string(),
        "--cacert".to_string(),
        ca_file.display().to_string(),
    ];
    check_two_http2_streams(&https, tls_h2.clone()).await;
    check_two_http2_streams(&https, tls_h2).await;
}

/// Sends a 2 s `get_data` wait and a fetch at once with curl on one HTTP/2 connection to
/// `base` (`protocol`: curl's options for it) and checks both answers.
async fn check_two_http2_streams(base: &str, protocol: Vec<String>) {
    let one = |path: &str, body: serde_json::Value| -> Vec<String> {
        let mut args = protocol.clone();
        args.extend([
            "-sS".into(),
            "-H".into(),
            "Content-Type: application/json".into(),
            "-o".into(),
            "/dev/null".into(),
            "-w".into(),
            "%{http_version} %{response_code} %{num_connects} %{time_total}\\n".into(),
            "-d".into(),
            body.to_string(),
            format!("{base}{path}"),
        ]);
        args
    };
    let mut args: Vec<String> = vec!["--parallel".into(), "--max-time".into(), "20".into()];
    args.extend(one(
        "/get_data",
        json!({"namespace":"n","key":"slow","max_wait_time":2}),
    ));
    args.push("--next".into());
    args.extend(one("/fetch_data", json!({"namespace":"n","key":"k"})));
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(&args)
            .output()
            .expect("curl runs (.ci/run installs it)")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{base}: curl: {stderr} {text}");
    let answers: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(answers.len(), 2, "{base}: {text}");
    for answer in &answers {
        assert_eq!(
            &answer[..2],
            &["2", "200"],
            "{base}: HTTP/2 and 200: {text}"
        );
    }
    let connects: u32 = answers.iter().map(|a| a[2].parse::<u32>().unwrap()).sum();
    assert_eq!(
        connects, 1,
        "{base}: both requests on one connection: {text}"
    );
    let longest = answers
        .iter()
        .map(|a| a[3].parse::<f64>().unwrap())
        .fold(0.0, f64::max);
    assert!(
        longest >= 1.5,
        "{base}: the get_data waited past the 500 ms timeout: {text}"
    );
}

/// `statemanager_connections_total` of `thread`.
fn connections_of(metrics: &str, thread: &str) -> u64 {
    let prefix = format!("statemanager_connections_total{{thread=\"{thread}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or(0)
}

/// HTTPS connections are spread over the connection threads as plain ones are: six on new
/// connections, two to each of the workers and the two threads, all served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_connections_are_served_on_the_connection_threads_too() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test ca");
    let server_files = ca.leaf(dir.path(), "server", &["localhost", "127.0.0.1"]);
    let s = Server::start(&config(&server_files, "connection_threads: 2\n"));
    s.wait_ready().await;
    let https = s.https.clone().expect("https address");
    let metrics = || async { common::get_text(&reqwest::Client::new(), &s.url("/metrics")).await };
    let before = metrics().await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = reqwest::Client::builder()
        .tls_certs_only([ca.cert()])
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for i in 0..6 {
        let (st, got) = post(
            &tls,
            &format!("{https}/store_data"),
            json!({"namespace":"n","key":format!("k{i}"),"data":"over tls","ttl":60}),
        )
        .await;
        assert_eq!(st, 200, "{got}");
    }
    let after = metrics().await;
    for thread in ["1", "2"] {
        let added = connections_of(&after, thread) - connections_of(&before, thread);
        assert!(added >= 2, "thread {thread}: {added} more\n{after}");
    }
}
