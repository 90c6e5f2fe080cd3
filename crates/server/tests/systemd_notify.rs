//! `Type=notify`: the real binary tells the socket in `$NOTIFY_SOCKET` `READY=1` once
//! `/ready` is 200 and `STOPPING=1` when SIGTERM starts the drain, as systemd expects.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::Server;

/// Reads datagrams until one contains the line `wanted` (bounded); returns all read so far.
fn receive_until(socket: &UnixDatagram, wanted: &str, limit: Duration) -> Vec<String> {
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match socket.recv(&mut buf) {
            Ok(len) => {
                let message = String::from_utf8_lossy(&buf[..len]).into_owned();
                let found = message.lines().any(|l| l == wanted);
                seen.push(message);
                if found {
                    return seen;
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("recv on the notify socket: {e}"),
        }
    }
    panic!("no {wanted} within {limit:?}; received {seen:?}");
}

#[tokio::test]
async fn tells_systemd_ready_then_stopping() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let socket_path = tmp.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind notify socket");
    let mut server = Server::start_with_env(
        tmp.path(),
        "",
        &[],
        &[("NOTIFY_SOCKET", socket_path.as_os_str())],
    );

    let before_ready = receive_until(&socket, "READY=1", Duration::from_secs(30));
    let ready_message = before_ready.last().expect("a message");
    assert!(
        ready_message.contains("STATUS=serving: http 127.0.0.1:"),
        "{ready_message:?}"
    );
    assert!(
        before_ready.iter().all(|m| !m.contains("STOPPING=1")),
        "{before_ready:?}"
    );
    // READY=1 means /ready says 200 now, without waiting.
    let ready = reqwest::get(server.url("/ready"))
        .await
        .expect("GET /ready");
    assert_eq!(ready.status(), 200);

    let status = server.signal_and_wait(libc::SIGTERM);
    assert_eq!(status.code(), Some(0), "{}", server.log());
    let after = receive_until(&socket, "STOPPING=1", Duration::from_secs(5));
    assert!(
        after.iter().all(|m| !m.contains("READY=1")),
        "READY=1 sent twice: {after:?}"
    );
}

#[tokio::test]
async fn a_missing_notify_socket_is_harmless() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = tmp.path().join("nobody-listens.sock");
    let mut server = Server::start_with_env(
        tmp.path(),
        "",
        &[],
        &[("NOTIFY_SOCKET", missing.as_os_str())],
    );
    server.wait_ready().await;
    let client = reqwest::Client::new();
    let (status, _) = common::post(
        &client,
        &server.url("/store_data"),
        serde_json::json!({"namespace": "n", "key": "k", "data": "v", "ttl": 60}),
    )
    .await;
    assert_eq!(status, 200);
    let status = server.signal_and_wait(libc::SIGTERM);
    assert_eq!(status.code(), Some(0), "{}", server.log());
}

/// `systemctl reload` sends SIGHUP. Without TLS there is nothing to reload, and the server
/// must go on serving (SIGHUP's default action would end it, and systemd counts that as a
/// clean exit: no restart).
#[tokio::test]
async fn sighup_without_tls_keeps_serving() {
    let mut server = Server::start("");
    server.wait_ready().await;
    // SAFETY: kill(2) on the PID of our own child process.
    unsafe { libc::kill(server.pid() as i32, libc::SIGHUP) };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let client = reqwest::Client::new();
    let (status, _) = common::post(
        &client,
        &server.url("/store_data"),
        serde_json::json!({"namespace": "n", "key": "k", "data": "v", "ttl": 60}),
    )
    .await;
    assert_eq!(status, 200, "{}", server.log());
    assert!(
        server.log().contains("SIGHUP: nothing to reload"),
        "{}",
        server.log()
    );
    let status = server.signal_and_wait(libc::SIGTERM);
    assert_eq!(status.code(), Some(0), "{}", server.log());
}
