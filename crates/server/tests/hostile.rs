//! Hostile input changes nothing: slow senders, oversized heads, too many connections, floods
//! and deep JSON are refused with a 4xx (JSON body where HTTP allows one) while a normal client
//! keeps being served.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{post, Server};
use serde_json::json;

const LIMITS: &str =
    "header_timeout_ms: 500\nbody_timeout_ms: 500\nmax_connections: 40\nmax_header_bytes: 8KB\n";

fn addr(s: &Server) -> String {
    s.base.trim_start_matches("http://").to_string()
}

/// Reads what the server sends until it closes (bounded by a 10 s read timeout).
fn read_all(stream: &mut TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

async fn normal_client_works(s: &Server, key: &str) {
    let client = reqwest::Client::new();
    let (status, _) = post(
        &client,
        &s.url("/store_data"),
        json!({"namespace": "PLUGIN#ok", "key": key, "data": "v", "ttl": 60}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, v) = post(
        &client,
        &s.url("/fetch_data"),
        json!({"namespace": "PLUGIN#ok", "key": key}),
    )
    .await;
    assert_eq!((status, v["data"].as_str()), (200, Some("v")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_senders_get_408_and_others_are_served() {
    let s = Server::start(LIMITS);
    s.wait_ready().await;
    let a = addr(&s);
    // Twenty slowloris connections: half a head each, then nothing.
    let mut slow: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut c = TcpStream::connect(&a).unwrap();
            c.write_all(b"POST /store_data HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .unwrap();
            c
        })
        .collect();
    // A slow body: the head is complete, the body never finishes.
    let mut slow_body = TcpStream::connect(&a).unwrap();
    slow_body
        .write_all(
            b"POST /store_data HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"namespace\"",
        )
        .unwrap();
    // A connection that never sends a byte.
    let mut idle = TcpStream::connect(&a).unwrap();
    let idle_since = Instant::now();

    normal_client_works(&s, "during").await;

    let answers = tokio::task::spawn_blocking(move || {
        let heads: Vec<String> = slow.iter_mut().map(read_all).collect();
        let idle_answer = read_all(&mut idle);
        (
            heads,
            read_all(&mut slow_body),
            (idle_answer, idle_since.elapsed()),
        )
    })
    .await
    .unwrap();
    for head in &answers.0 {
        assert!(head.starts_with("HTTP/1.1 408"), "{head}");
        assert!(head.contains(r#""code":"request_timeout""#), "{head}");
    }
    assert!(answers.1.starts_with("HTTP/1.1 408"), "{}", answers.1);
    assert!(answers.1.contains("request_timeout"), "{}", answers.1);
    assert_eq!(
        answers.2 .0, "",
        "an idle connection is closed without an answer"
    );
    assert!(
        answers.2 .1 < Duration::from_secs(8),
        "a silent connection was not closed: {:?}",
        answers.2 .1
    );
    normal_client_works(&s, "after").await;
    // Twenty slow heads and a slow body from one address: one log line for their 408s.
    let log = s.log();
    let lines = log
        .lines()
        .filter(|l| l.contains("refused:") && l.contains("status=408"))
        .count();
    assert_eq!(lines, 1, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_get_431() {
    let s = Server::start(LIMITS);
    s.wait_ready().await;
    let client = reqwest::Client::new();
    let r = client
        .post(s.url("/fetch_data"))
        .header("x-big", "a".repeat(10 * 1024))
        .body(json!({"namespace": "PLUGIN#ok", "key": "k"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "header_too_large");
    // Far beyond the limit hyper refuses before routing (431 without a body).
    let a = addr(&s);
    let answer = tokio::task::spawn_blocking(move || {
        let mut c = TcpStream::connect(&a).unwrap();
        let head = format!(
            "GET /health HTTP/1.1\r\nHost: x\r\nX-Huge: {}\r\n\r\n",
            "b".repeat(64 * 1024)
        );
        let _ = c.write_all(head.as_bytes());
        read_all(&mut c)
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    normal_client_works(&s, "k").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_get_429_then_service_resumes() {
    let s = Server::start("max_connections: 8\n");
    s.wait_ready().await;
    let a = addr(&s);
    // Let the readiness probe's connection close, then hold eight.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(&a).unwrap()).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let a2 = a.clone();
    let refused = tokio::task::spawn_blocking(move || {
        let mut c = TcpStream::connect(&a2).unwrap();
        let _ = c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
        read_all(&mut c)
    })
    .await
    .unwrap();
    assert!(
        refused.starts_with("HTTP/1.1 429"),
        "{refused}\n{}",
        s.log()
    );
    assert!(refused.contains("too_many_connections"), "{refused}");
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = reqwest::get(s.url("/health"))
            .await
            .map(|r| r.status() == 200)
            .unwrap_or(false);
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "service did not resume");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_client_gets_429_with_retry_after() {
    let s = Server::start("client_rate_limit: 20\n");
    s.wait_ready().await;
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..60 {
        let r = client.get(s.url("/health")).send().await.unwrap();
        if r.status() == 429 {
            retry_after = r.headers().get("retry-after").cloned();
            let v: serde_json::Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], "rate_limited");
            statuses.push(429);
        } else {
            statuses.push(r.status().as_u16());
        }
    }
    // About one second's worth (20) is admitted, plus what refills while the loop runs; the
    // bounds are generous (behaviour, not speed).
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert!(
        ok >= 5 && refused >= 10 && ok + refused == 60,
        "{ok} admitted, {refused} refused"
    );
    assert_eq!(retry_after.unwrap(), "1");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        client.get(s.url("/health")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        s.log().matches("answered 429").count(),
        1,
        "logged once per client: {}",
        s.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_never_cut_a_get_data_wait() {
    let s = Server::start(LIMITS);
    s.wait_ready().await;
    let client = reqwest::Client::new();
    let first = json!({"namespace": "PLUGIN#c", "key": "k", "max_wait_time": 3});
    let (status, v) = post(&client, &s.url("/get_data"), first).await;
    assert_eq!((status, v["lock"].as_bool()), (200, Some(true)));
    // The second caller waits until the abandoned lock expires (3 s, six header/body
    // timeouts) and then gets it.
    let started = Instant::now();
    let second = json!({"namespace": "PLUGIN#c", "key": "k", "max_wait_time": 10});
    let (status, v) = post(&client, &s.url("/get_data"), second).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["lock"], true, "{v}");
    assert!(started.elapsed() >= Duration::from_millis(2500));
}

#[tokio::test]
async fn deeply_nested_json_is_a_400() {
    let s = Server::start("");
    s.wait_ready().await;
    let client = reqwest::Client::new();
    for body in [
        "[".repeat(100_000),
        format!(
            "{{\"namespace\":{}1{}}}",
            "[".repeat(5000),
            "]".repeat(5000)
        ),
    ] {
        for path in [
            "/store_data",
            "/fetch_data",
            "/get_data",
            "/set_data",
            "/delete_data",
        ] {
            let (status, v) = common::post_raw(&client, &s.url(path), body.clone()).await;
            assert_eq!(status, 400, "{path}: {v}");
            assert_eq!(v["error"]["code"], "invalid_request");
        }
    }
    normal_client_works(&s, "k").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_https_listener_has_the_same_limits() {
    let certs = tempfile::tempdir().unwrap();
    let ca = common::certs::Ca::new("hostile ca");
    let (cert, key) = ca.leaf(certs.path(), "server", &["127.0.0.1"]);
    let ca_pem = std::fs::read_to_string(ca.write(&certs.path().join("ca.pem"))).unwrap();
    let config = format!(
        "http_enabled: false\ntls_enabled: true\ntls_port: 0\ntls:\n  cert_file: {}\n  key_file: {}\nmax_connections: 4\nheader_timeout_ms: 1500\n",
        cert.display(),
        key.display()
    );
    let s = Server::start(&config);
    let client = reqwest::Client::builder()
        .tls_certs_only([ca.cert()])
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    s.wait_ready_with(&client).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a = s.base.trim_start_matches("https://").to_string();
    // Four connections that never start a handshake hold every slot ...
    let held: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(&a).unwrap()).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // ... so a fifth is closed at once.
    assert!(
        client.get(s.url("/health")).send().await.is_err(),
        "over max_connections"
    );
    // A connection that never handshakes is closed after the header timeout.
    let closed = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let texts: Vec<String> = held.into_iter().map(|mut c| read_all(&mut c)).collect();
        (started.elapsed(), texts)
    })
    .await
    .unwrap();
    assert!(closed.1.iter().all(|t| t.is_empty()));
    assert!(
        closed.0 < Duration::from_secs(9),
        "slow handshakes were not cut: {:?}",
        closed.0
    );
    // A client that completes the handshake and then says nothing is closed too.
    let connector = {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(<rustls::pki_types::CertificateDer as rustls::pki_types::pem::PemObject>::from_pem_slice(ca_pem.as_bytes()).unwrap()).unwrap();
        std::sync::Arc::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    };
    let a3 = a.clone();
    let silent = tokio::task::spawn_blocking(move || {
        let mut tcp = TcpStream::connect(&a3).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = rustls::ClientConnection::new(connector, name).unwrap();
        while tls.is_handshaking() {
            tls.complete_io(&mut tcp).unwrap();
        }
        let started = Instant::now();
        let mut stream = rustls::Stream::new(&mut tls, &mut tcp);
        let mut buf = [0u8; 16];
        let _ = stream.read(&mut buf);
        started.elapsed()
    })
    .await
    .unwrap();
    assert!(
        silent < Duration::from_secs(8),
        "a silent TLS connection was kept: {silent:?}"
    );
    // Slots free again: served.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if client
            .get(s.url("/health"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            break;
        }
        assert!(Instant::now() < deadline, "HTTPS did not resume");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_refused_while_others_are_served() {
    let s = Server::start("");
    s.wait_ready().await;
    let a = addr(&s);
    // Eight clients stream chunked bodies far beyond the limit (at most 4 MiB each).
    let floods: Vec<_> = (0..8)
        .map(|_| {
            let a = a.clone();
            std::thread::spawn(move || {
                let mut c = TcpStream::connect(&a).unwrap();
                c.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
                let _ = c.write_all(
                    b"POST /store_data HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                );
                let chunk = format!("4000\r\n{}\r\n", "x".repeat(0x4000));
                for _ in 0..256 {
                    if c.write_all(chunk.as_bytes()).is_err() {
                        break;
                    }
                }
                read_all(&mut c)
            })
        })
        .collect();
    normal_client_works(&s, "during-flood").await;
    for f in floods {
        let answer = tokio::task::block_in_place(|| f.join().unwrap());
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("body_too_large"), "{answer}");
    }
    normal_client_works(&s, "after-flood").await;
}
