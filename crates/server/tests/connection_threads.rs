//! `connection_threads`: client connections spread over the runtime's workers and threads of
//! their own, each with its own event loop, against the real binary.

mod common;

use std::time::Duration;

use common::{cli, get_text, post, Cluster, Server};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bounds every network wait of these tests.
const BOUND: Duration = Duration::from_secs(20);

/// The names of the threads of process `pid`.
fn thread_names(pid: u32) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .collect();
    names.sort();
    names
}

/// `statemanager_connections_total` by its `thread` label.
fn connections_by_thread(metrics: &str) -> Vec<(String, u64)> {
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix("statemanager_connections_total{thread=\""))
        .filter_map(|rest| {
            let (thread, count) = rest.split_once("\"} ")?;
            Some((thread.to_string(), count.trim().parse().ok()?))
        })
        .collect()
}

/// The status and the data of a fetch of `n`/`key`.
async fn fetched(c: &reqwest::Client, s: &Server, key: &str) -> (u16, Option<String>) {
    let (st, got) = post(c, &s.url("/fetch_data"), json!({"namespace":"n","key":key})).await;
    (st, got["data"].as_str().map(String::from))
}

/// A client that opens a new connection for every request.
fn one_connection_per_request() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(BOUND)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_connections_take_the_workers_and_each_connection_thread_in_turn() {
    let s = Server::start("connection_threads: 2\n");
    s.wait_ready().await;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        s.log()
            .contains(&format!("and 2 connection threads on {cores} CPU cores")),
        "{}",
        s.log()
    );
    let names = thread_names(s.pid());
    for name in ["sm-conn-1", "sm-conn-2"] {
        assert_eq!(
            names.iter().filter(|n| *n == name).count(),
            1,
            "{name} in {names:?}"
        );
    }
    // Nine requests on nine connections, three to each place: every one is served right.
    let c = one_connection_per_request();
    for i in 0..9 {
        let key = format!("k{}", i / 2);
        if i % 2 == 0 {
            let (st, got) = post(
                &c,
                &s.url("/store_data"),
                json!({"namespace":"n","key":key,"data":format!("d{i}"),"ttl":60}),
            )
            .await;
            assert_eq!(st, 200, "{got}");
        } else {
            assert_eq!(
                fetched(&c, &s, &key).await,
                (200, Some(format!("d{}", i - 1)))
            );
        }
    }
    let counts = connections_by_thread(&get_text(&c, &s.url("/metrics")).await);
    for thread in ["workers", "1", "2"] {
        let count = counts.iter().find(|(t, _)| t == thread).map(|(_, n)| *n);
        assert!(count >= Some(3), "thread {thread}: {counts:?}");
    }
}

/// Checks that `s` started no connection thread, and that three stores, each on a
/// connection of its own, were all served on the runtime's workers.
async fn serves_every_connection_on_the_workers(s: &Server) {
    assert!(
        s.log().contains("and 0 connection threads on"),
        "{}",
        s.log()
    );
    let names = thread_names(s.pid());
    assert!(!names.iter().any(|n| n.starts_with("sm-conn")), "{names:?}");
    let c = one_connection_per_request();
    for _ in 0..3 {
        let (st, body) = post(
            &c,
            &s.url("/store_data"),
            json!({"namespace":"n","key":"k","data":"d","ttl":60}),
        )
        .await;
        assert_eq!(st, 200, "{body}");
    }
    let counts = connections_by_thread(&get_text(&c, &s.url("/metrics")).await);
    assert!(
        counts.iter().all(|(thread, _)| thread == "workers") && !counts.is_empty(),
        "{counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_connection_threads_keep_every_connection_on_the_workers() {
    let s = Server::start("connection_threads: 0\n");
    s.wait_ready().await;
    serves_every_connection_on_the_workers(&s).await;
}

/// Unset, `connection_threads` is none on a member of a cluster: its fetches go through the
/// read rounds on the workers (docs/design.md, "No connection thread in a cluster"). A
/// single node keeps its thread (`process.rs`, `worker_threads_sizes_the_runtime`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_of_a_cluster_serves_its_clients_on_the_workers_by_default() {
    let cluster = Cluster::start(2, "");
    let leader = cluster.wait_leader().await;
    // Both members: a store on the follower reaches the leader over the peer stream.
    serves_every_connection_on_the_workers(cluster.node(1 - leader)).await;
    serves_every_connection_on_the_workers(cluster.node(leader)).await;
}

/// Makes `count` stores on `s`, each on a connection of its own, and returns the connections
/// counted per serving thread afterwards.
async fn store_on_new_connections(s: &Server, count: usize) -> Vec<(String, u64)> {
    let c = one_connection_per_request();
    for i in 0..count {
        let (st, body) = post(
            &c,
            &s.url("/store_data"),
            json!({"namespace":"n","key":format!("k{i}"),"data":"d","ttl":60}),
        )
        .await;
        assert_eq!(st, 200, "{body}");
    }
    connections_by_thread(&get_text(&c, &s.url("/metrics")).await)
}

/// The count of `thread` in `counts` (0 when absent).
fn count_of(counts: &[(String, u64)], thread: &str) -> u64 {
    counts
        .iter()
        .find(|(t, _)| t == thread)
        .map_or(0, |(_, n)| *n)
}

/// A node started alone has its default connection thread; once a member is added, it
/// serves its new client connections on the workers, as a member started with `peers` does
/// (its fetches now go through the read rounds there). Its clients are served throughout.
/// One worker, so that the thread takes every second connection whatever the machine's
/// cores (`connection_threads` stays unset); on one core there is no thread, and the test
/// only checks that every connection is served on the workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_grown_into_a_cluster_serves_new_connections_on_the_workers() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut cluster = Cluster::start(1, "worker_threads: 1\n");
    cluster.wait_leader().await;
    let threads = usize::from(cores >= 2);
    assert!(
        cluster.node(0).log().contains(&format!(
            "and {threads} connection thread{} on",
            if threads == 1 { "" } else { "s" }
        )),
        "{}",
        cluster.node(0).log()
    );
    // Alone: the connections take the worker and the thread in turn.
    let alone = store_on_new_connections(cluster.node(0), 4).await;
    assert_eq!(count_of(&alone, "1") > 0, threads == 1, "{alone:?}");
    let joiner = cluster.start_joiner(2, "");
    let (ok, out) = cli(&[
        "cluster",
        "--peer",
        &cluster.peer_addr(0),
        "add",
        "2",
        &joiner,
    ]);
    assert!(ok, "{out}");
    // With a second voter: every new connection on the workers.
    let grown = store_on_new_connections(cluster.node(0), 4).await;
    assert_eq!(count_of(&grown, "1"), count_of(&alone, "1"), "{grown:?}");
    // The four stores' connections and the /metrics one at least (the peer port's, from the
    // new member and the CLI, count under `workers` too).
    assert!(
        count_of(&grown, "workers") >= count_of(&alone, "workers") + 5,
        "{alone:?} then {grown:?}"
    );
}

/// Opens a connection and sends the head of a store of `key` with `Expect: 100-continue`,
/// and waits for the `100 Continue` the server sends once the handler reads the body: the
/// request is then in flight. Returns the connection and the body still to send.
async fn start_a_store(addr: &str, key: &str) -> (tokio::net::TcpStream, Vec<u8>) {
    let body = json!({"namespace":"n","key":key,"data":"sent across a SIGTERM","ttl":60})
        .to_string()
        .into_bytes();
    let mut stream = tokio::time::timeout(BOUND, tokio::net::TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    let head = format!(
        "POST /store_data HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut interim = Vec::new();
    while !interim.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(BOUND, stream.read(&mut byte))
            .await
            .expect("100 Continue in time")
            .expect("read 100 Continue");
        assert_eq!(n, 1, "closed before 100 Continue: {interim:?}");
        interim.push(byte[0]);
    }
    assert!(
        interim.starts_with(b"HTTP/1.1 100 Continue"),
        "{}",
        String::from_utf8_lossy(&interim)
    );
    (stream, body)
}

/// Sends a store's body and reads the whole answer.
async fn finish_a_store(mut stream: tokio::net::TcpStream, body: &[u8]) -> String {
    stream.write_all(body).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(BOUND, stream.read_to_end(&mut answer))
        .await
        .expect("an answer in time")
        .expect("read the answer");
    String::from_utf8_lossy(&answer).into_owned()
}

/// A SIGTERM lets requests in flight finish on every thread: with one worker and one
/// connection thread, two connections made one after the other land one on each, each with
/// a store whose handler is waiting for its body; both are answered 200 after the signal,
/// the process exits cleanly, and both items are there after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_on_every_thread_finish_after_sigterm() {
    let mut s = Server::start("worker_threads: 1\nconnection_threads: 1\n");
    s.wait_ready().await;
    let addr = s
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let (first, first_rest) = start_a_store(&addr, "a").await;
    let (second, second_rest) = start_a_store(&addr, "b").await;
    assert_eq!(unsafe { libc::kill(s.pid() as i32, libc::SIGTERM) }, 0);
    // The drain has begun while both wait for their bodies.
    let began = std::time::Instant::now();
    while !s.log().contains("draining") && began.elapsed() < BOUND {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(s.log().contains("draining"), "{}", s.log());
    let answers = [
        finish_a_store(first, &first_rest).await,
        finish_a_store(second, &second_rest).await,
    ];
    for answer in &answers {
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}\n{}", s.log());
    }
    let status = s.wait_exit(BOUND).expect("the server exits after draining");
    assert!(status.success(), "{status}: {}", s.log());
    s.restart();
    s.wait_ready().await;
    let c = reqwest::Client::new();
    for key in ["a", "b"] {
        assert_eq!(
            fetched(&c, &s, key).await,
            (200, Some("sent across a SIGTERM".to_string())),
            "{key}"
        );
    }
}
