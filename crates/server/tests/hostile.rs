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

/// Reads one whole answer (head, then a body of its `content-length`) from a keep-alive
/// connection.
fn read_one_answer(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        got.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&got).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    got.extend_from_slice(&body);
    String::from_utf8_lossy(&got).into_owned()
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

/// The head deadline runs from a request's first bytes, on every request of a keep-alive
/// connection: a head that trickles in a byte at a time is still cut at `header_timeout_ms`
/// (500 ms here) and answered 408 near that deadline; a head completed in time is served;
/// an HTTP/2 connection (prior knowledge) never gets an HTTP/1 408.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_head_is_cut_at_its_deadline_on_any_request() {
    let s = Server::start(LIMITS);
    s.wait_ready().await;
    let a = addr(&s);
    let (trickle, in_time, h2) = tokio::task::spawn_blocking(move || {
        // One whole request first, then a head that trickles: a byte every 100 ms.
        let mut c = TcpStream::connect(&a).unwrap();
        c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let first = read_one_answer(&mut c);
        assert!(first.starts_with("HTTP/1.1 200"), "{first}");
        std::thread::sleep(Duration::from_millis(300));
        let started = Instant::now();
        c.set_nonblocking(true).unwrap();
        let mut answered = Vec::new();
        for byte in b"POST /store_data HTTP/1.1\r\nHost: x\r\nX-Slow: abcdefghijklmnopqrstuvwxyz" {
            // Bounded: 60 bytes at 100 ms, and it stops at the first answer.
            if c.write_all(&[*byte]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            let mut buf = [0u8; 4096];
            if let Ok(n) = c.read(&mut buf) {
                answered.extend_from_slice(&buf[..n]);
                if n > 0 {
                    break;
                }
            }
        }
        let elapsed = started.elapsed();
        c.set_nonblocking(false).unwrap();
        let rest = read_all(&mut c);
        let trickle = (
            String::from_utf8_lossy(&answered).into_owned() + &rest,
            elapsed,
        );
        // A head sent in two halves 200 ms apart: in time.
        let mut c = TcpStream::connect(&a).unwrap();
        c.write_all(b"GET /health HTTP/1.1\r\nHo").unwrap();
        std::thread::sleep(Duration::from_millis(200));
        c.write_all(b"st: x\r\nConnection: close\r\n\r\n").unwrap();
        let in_time = read_all(&mut c);
        // HTTP/2 with prior knowledge: the preface and an empty SETTINGS frame; once the
        // server has sent its own, a SETTINGS acknowledgement (bytes read after the server's
        // last write, as a request's first bytes would be), then silence.
        let mut c = TcpStream::connect(&a).unwrap();
        c.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        c.write_all(b"\x00\x00\x00\x04\x01\x00\x00\x00\x00")
            .unwrap();
        c.set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        let mut h2 = Vec::new();
        let _ = c.read_to_end(&mut h2);
        (trickle, in_time, h2)
    })
    .await
    .unwrap();
    assert!(trickle.0.starts_with("HTTP/1.1 408"), "{}", trickle.0);
    assert!(
        trickle.1 >= Duration::from_millis(450) && trickle.1 < Duration::from_secs(3),
        "a trickling head was cut after {:?}",
        trickle.1
    );
    assert!(in_time.starts_with("HTTP/1.1 200"), "{in_time}");
    assert!(
        !h2.windows(8).any(|w| w == b"HTTP/1.1"),
        "an HTTP/2 connection got an HTTP/1 answer: {:?}",
        String::from_utf8_lossy(&h2)
    );
    normal_client_works(&s, "after-trickle").await;
}

/// On plain-text HTTP/2 (h2c, prior knowledge) a stream still in its handler keeps the
/// connection from being idle: over one connection, a `get_data` that waits 2 s for a lock
/// and a fetch sent beside it are both answered, past the 500 ms `header_timeout_ms`, and
/// the connection stays open. (`tls.rs` checks the same over TLS with curl; curl 7.88 cannot
/// hold one h2c connection for two requests, so this test drives hyper's own client.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_streams_are_served_past_the_header_timeout() {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;

    let s = Server::start(LIMITS);
    s.wait_ready().await;
    common::store_and_hold_a_lock(&reqwest::Client::new(), &s.base, "over h2c").await;

    let tcp = tokio::net::TcpStream::connect(addr(&s)).await.unwrap();
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("h2c handshake");
    let connection = tokio::spawn(connection);
    let request = |path: &str, body: serde_json::Value| {
        hyper::Request::post(s.url(path))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap()
    };
    let answer = |mut sender: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
                  req: hyper::Request<Full<Bytes>>| async move {
        let started = Instant::now();
        let response = sender.send_request(req).await.expect("an answer");
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.expect("a body");
        let body: serde_json::Value = serde_json::from_slice(&body.to_bytes()).unwrap();
        (status, body, started.elapsed())
    };
    let wait = answer(
        sender.clone(),
        request(
            "/get_data",
            json!({"namespace":"n","key":"slow","max_wait_time":2}),
        ),
    );
    let fetch = answer(
        sender.clone(),
        request("/fetch_data", json!({"namespace":"n","key":"k"})),
    );
    let ((wait_status, wait_body, waited), (fetch_status, fetch_body, _)) =
        tokio::time::timeout(Duration::from_secs(20), async { tokio::join!(wait, fetch) })
            .await
            .expect("both answered within 20 s");
    assert_eq!(fetch_status, 200, "{fetch_body}");
    assert_eq!(fetch_body["data"], json!("over h2c"), "{fetch_body}");
    assert_eq!(wait_status, 200, "{wait_body}");
    assert!(
        waited >= Duration::from_millis(1500),
        "the get_data waited past the 500 ms timeout: {waited:?} {wait_body}"
    );
    assert!(!connection.is_finished(), "the connection is still open");
    // And it still serves.
    let (st, body, _) = answer(
        sender,
        request("/fetch_data", json!({"namespace":"n","key":"k"})),
    )
    .await;
    assert_eq!((st, &body["data"]), (200, &json!("over h2c")), "{body}");
    connection.abort();
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
    assert!(
        s.log().contains("GET /health answered 429"),
        "the line names the request: {}",
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
