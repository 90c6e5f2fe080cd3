//! What every power-loss test uses: the ledger of acknowledged stores and the checks
//! against it, loads, the mount, a node started until it is ready, the busy configurations.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use statemanager_powercut::Mount;

use crate::common::Cluster;
use crate::common::Server;

/// Acknowledged and attempted values per key: each key has one writer, whose values count up.
#[derive(Default, Clone)]
pub(crate) struct Ledger {
    /// The highest value acknowledged (200) per key.
    pub(crate) acked: BTreeMap<String, u64>,
    /// The highest value sent per key (acknowledged or not).
    pub(crate) sent: BTreeMap<String, u64>,
}

/// A copy of the ledger (checks run without holding its lock).
pub(crate) fn snapshot(ledger: &Mutex<Ledger>) -> Ledger {
    ledger.lock().unwrap().clone()
}

impl Ledger {
    pub(crate) fn acked_count(&self) -> usize {
        self.acked.len()
    }
}

/// What a check after a cut found.
#[derive(Debug, Default)]
pub(crate) struct Check {
    /// Keys whose acknowledged value (or a newer sent one) was read back.
    pub(crate) ok: usize,
    /// Keys whose acknowledged value is gone or older: lost writes.
    pub(crate) lost: Vec<String>,
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

pub(crate) fn seed_from_env_or(default: u64) -> u64 {
    std::env::var("POWERCUT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Stores `value` under `key` through `base`; true only on 200.
pub(crate) async fn store(client: &reqwest::Client, base: &str, key: &str, value: u64) -> bool {
    let body =
        json!({"namespace": "powercut", "key": key, "data": value.to_string(), "ttl": 86_400});
    matches!(
        client.post(format!("{base}/store_data")).body(body.to_string()).send().await,
        Ok(r) if r.status() == 200
    )
}

/// Runs `writers` writers against `bases` (round robin) until `stop` is set or each has made
/// `max_per_writer` stores; every writer owns `keys` keys and counts its values up.
pub(crate) async fn load(
    bases: Vec<String>,
    ledger: Arc<Mutex<Ledger>>,
    writers: usize,
    keys: usize,
    max_per_writer: u64,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (bases, ledger, stop) = (bases.clone(), ledger.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let client = client();
            let base = &bases[w % bases.len()];
            for n in 0..max_per_writer {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let key = format!("w{w}-k{}", n as usize % keys);
                let value = {
                    let mut l = ledger.lock().unwrap();
                    let v = l.sent.get(&key).map_or(1, |v| v + 1);
                    l.sent.insert(key.clone(), v);
                    v
                };
                if store(&client, base, &key, value).await {
                    ledger.lock().unwrap().acked.insert(key, value);
                } else {
                    // The server is gone (killed) or refused: outcome unknown, go on.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Reads every key of the ledger through `base` and compares.
pub(crate) async fn check(base: &str, ledger: &Ledger) -> Check {
    let client = client();
    let mut out = Check::default();
    for (key, &acked) in &ledger.acked {
        let sent = ledger.sent[key];
        let r = client
            .post(format!("{base}/fetch_data"))
            .body(json!({"namespace": "powercut", "key": key}).to_string())
            .send()
            .await
            .expect("fetch after the cut");
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        let got: Option<u64> = (status == 200)
            .then(|| {
                body["data"]
                    .as_str()
                    .and_then(|d| d.split(':').next())
                    .and_then(|d| d.parse().ok())
            })
            .flatten();
        match got {
            Some(v) if v >= acked && v <= sent => out.ok += 1,
            other => out.lost.push(format!(
                "{key}: acked {acked}, sent {sent}, read {other:?} ({status})"
            )),
        }
    }
    out
}

/// Reads every acknowledged key on each of the cluster's three nodes; fails naming the node,
/// `context` and the keys lost, with `log` (what the test did) after them.
pub(crate) async fn assert_every_node_has_every_ack(
    cluster: &Cluster,
    ledger: &Mutex<Ledger>,
    context: &str,
    log: &str,
) {
    for i in 0..3 {
        let found = check(&cluster.node(i).base, &snapshot(ledger)).await;
        assert!(
            found.lost.is_empty(),
            "{context}, node {}: acknowledged stores lost:\n{}\n{log}",
            i + 1,
            found.lost.join("\n")
        );
    }
}

/// Waits until the ledger's acknowledged values add up to `target`, or `limit` has passed.
pub(crate) async fn wait_for_acks(ledger: &Mutex<Ledger>, target: u64, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline && ledger.lock().unwrap().acked.values().sum::<u64>() < target {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether one of `servers` has started and answers `/ready` with 200 (one look each).
pub(crate) async fn any_ready(client: &reqwest::Client, servers: &mut [Server]) -> bool {
    for server in servers.iter_mut() {
        if server.try_wait_started(Duration::ZERO).is_ok() {
            let answer = client.get(server.url("/ready")).send().await;
            if answer.is_ok_and(|r| r.status() == 200) {
                return true;
            }
        }
    }
    false
}

/// Looks at `server`'s `/ready` until it answers 200 (true) or `limit` has passed (false).
pub(crate) async fn ready_within(server: &mut Server, limit: Duration) -> bool {
    let client = client();
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if any_ready(&client, std::slice::from_mut(server)).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

/// Starts the server and waits until it is ready (bounded); why not, otherwise.
pub(crate) async fn start_ready(
    work: &Path,
    data: &Path,
    config: &str,
    env: &[(&str, &std::ffi::OsStr)],
) -> Result<Server, String> {
    let mut server = Server::launch(work, data, config, &[], env);
    server.try_wait_started(Duration::from_secs(30))?;
    if ready_within(&mut server, Duration::from_secs(20)).await {
        return Ok(server);
    }
    Err(format!("started but never ready:\n{}", server.log()))
}

/// A power-cut file system mounted under `tmp`.
pub(crate) fn mount_on(tmp: &Path) -> Mount {
    let dir = tmp.join("mnt");
    std::fs::create_dir_all(&dir).expect("mount point");
    Mount::new(&dir).unwrap_or_else(|e| panic!("{e}"))
}

pub(crate) fn segment_env() -> Vec<(&'static str, std::ffi::OsString)> {
    // Small log segments so that purges delete and recycle them within a short test.
    vec![("STATEMANAGER_FAILPOINT_SEGMENT_BYTES", "65536".into())]
}

/// Few-entry snapshots and purges, so that cuts land during them (the text of
/// [`BUSY_CONFIG`]).
macro_rules! busy_config {
    () => {
        "snapshot_logs: 20\nsnapshot_keep_logs: 5\nmax_persistent_data_items: 100000\n"
    };
}

/// Few-entry snapshots and purges, so that cuts land during them.
pub(crate) const BUSY_CONFIG: &str = busy_config!();

/// The same, and every batch that may be written in place is (the Raft thread writes and
/// fsyncs the entry itself), whatever the FUSE file system's fsync takes.
pub(crate) const BUSY_CONFIG_IN_PLACE: &str =
    concat!(busy_config!(), "inline_write_max_fsync_us: 1000000\n");

/// The same with every append written by the log writer thread.
pub(crate) const BUSY_CONFIG_WRITER_THREAD: &str =
    concat!(busy_config!(), "inline_write_max_fsync_us: 0\n");

/// Stores `key-N` for each N in `numbers` through `base`, `pause` apart, until one fails or
/// `done` answers true; each is recorded in `ledger` as sent, and as acknowledged on a 200.
pub(crate) async fn store_keys(
    client: &reqwest::Client,
    base: &str,
    numbers: std::ops::Range<usize>,
    pause: Duration,
    ledger: &mut Ledger,
    done: impl Fn() -> bool,
) {
    for n in numbers {
        if done() {
            return;
        }
        let key = format!("key-{n}");
        ledger.sent.insert(key.clone(), 1);
        if !store(client, base, &key, 1).await {
            return;
        }
        ledger.acked.insert(key, 1);
        tokio::time::sleep(pause).await;
    }
}

/// Starts a server on `data`; the server once ready within `limit`, or `None` (then stopped).
pub(crate) async fn start_ready_within(
    work: &Path,
    data: &Path,
    config: &str,
    limit: Duration,
) -> Option<Server> {
    let mut server = Server::launch(work, data, config, &[], &[]);
    server
        .try_wait_started(Duration::from_secs(30))
        .unwrap_or_else(|why| panic!("the node did not start: {why}"));
    if ready_within(&mut server, limit).await {
        return Some(server);
    }
    server.kill9();
    None
}
