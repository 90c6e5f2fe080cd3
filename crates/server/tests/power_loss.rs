//! Power loss: the data directory lives on a file system that forgets everything not made
//! durable (`statemanager-powercut`: contents by fsync of the file, names by fsync of their
//! directory). Each cut kills the server with SIGKILL and then drops, zeroes, tears or keeps
//! every unsynced change (drawn from a seed printed by the test, so a failure can be
//! replayed). After each cut the node must start by itself and serve every acknowledged store
//! (or a newer one whose outcome was unknown).
//!
//! Besides cuts at moments a load happens to reach, the sweeps (`stop_at_every_change`,
//! `stop_rack_at_every_change`) replay one history again and again, the power going off after
//! its first, second, third… changing request (`Mount::power_off_after`): every stop of a
//! first start, every fifth of a single node's snapshots and purges, every twelfth of a
//! cluster's formation, every fortieth of one node grown into three by `cluster add` and of
//! three shrunk to two by `cluster remove`, every
//! hundredth of a follower's catch-up, and every one of the offline `restore` and `recover`. `POWERCUT_STRIDE=1` makes each sweep stop everywhere;
//! `POWERCUT_SEED` replays the offset a run printed.
//!
//! The harness is tested too: a server built to acknowledge before its log fsync, or to skip
//! its directory fsyncs, must be caught losing data.
//!
//! These tests mount FUSE: they need root and /dev/fuse (CI runs as root; .ci/run installs
//! fuse3). They fail, never skip, when either is missing.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Cluster, Server};
use serde_json::json;
use statemanager_powercut::Mount;

/// Acknowledged and attempted values per key: each key has one writer, whose values count up.
#[derive(Default, Clone)]
struct Ledger {
    /// The highest value acknowledged (200) per key.
    acked: BTreeMap<String, u64>,
    /// The highest value sent per key (acknowledged or not).
    sent: BTreeMap<String, u64>,
}

/// A copy of the ledger (checks run without holding its lock).
fn snapshot(ledger: &Mutex<Ledger>) -> Ledger {
    ledger.lock().unwrap().clone()
}

impl Ledger {
    fn acked_count(&self) -> usize {
        self.acked.len()
    }
}

/// What a check after a cut found.
#[derive(Debug, Default)]
struct Check {
    /// Keys whose acknowledged value (or a newer sent one) was read back.
    ok: usize,
    /// Keys whose acknowledged value is gone or older: lost writes.
    lost: Vec<String>,
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

fn seed_from_env_or(default: u64) -> u64 {
    std::env::var("POWERCUT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Stores `value` under `key` through `base`; true only on 200.
async fn store(client: &reqwest::Client, base: &str, key: &str, value: u64) -> bool {
    let body =
        json!({"namespace": "powercut", "key": key, "data": value.to_string(), "ttl": 86_400});
    matches!(
        client.post(format!("{base}/store_data")).body(body.to_string()).send().await,
        Ok(r) if r.status() == 200
    )
}

/// Runs `writers` writers against `bases` (round robin) until `stop` is set or each has made
/// `max_per_writer` stores; every writer owns `keys` keys and counts its values up.
async fn load(
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
async fn check(base: &str, ledger: &Ledger) -> Check {
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
async fn assert_every_node_has_every_ack(
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
async fn wait_for_acks(ledger: &Mutex<Ledger>, target: u64, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline && ledger.lock().unwrap().acked.values().sum::<u64>() < target {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether one of `servers` has started and answers `/ready` with 200 (one look each).
async fn any_ready(client: &reqwest::Client, servers: &mut [Server]) -> bool {
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
async fn ready_within(server: &mut Server, limit: Duration) -> bool {
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
async fn start_ready(
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
fn mount_on(tmp: &Path) -> Mount {
    let dir = tmp.join("mnt");
    std::fs::create_dir_all(&dir).expect("mount point");
    Mount::new(&dir).unwrap_or_else(|e| panic!("{e}"))
}

fn segment_env() -> Vec<(&'static str, std::ffi::OsString)> {
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
const BUSY_CONFIG: &str = busy_config!();

/// The same, and every batch that may be written in place is (the Raft thread writes and
/// fsyncs the entry itself), whatever the FUSE file system's fsync takes.
const BUSY_CONFIG_IN_PLACE: &str = concat!(busy_config!(), "inline_write_max_fsync_us: 1000000\n");

/// The same with every append written by the log writer thread.
const BUSY_CONFIG_WRITER_THREAD: &str = concat!(busy_config!(), "inline_write_max_fsync_us: 0\n");

/// One node: start, store a load, kill -9, cut, restart; `cycles` times on one data dir.
/// Returns (acknowledged stores over all cycles, lost keys found, log of the cycles).
async fn single_node_cycles(
    env: &[(&str, std::ffi::OsString)],
    config: &str,
    cycles: u64,
    seed: u64,
    strict: bool,
    cut_during_restart: bool,
) -> (usize, Vec<String>, String) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mount = mount_on(tmp.path());
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).expect("work dir");
    let data = mount.path().join("data");
    let env_refs: Vec<(&str, &std::ffi::OsStr)> =
        env.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut rng = statemanager_powercut::Rng::new(seed);
    let mut lost = Vec::new();
    let mut log = String::new();
    let mut acked_total = 0;
    for cycle in 0..cycles {
        let mut server = match start_ready(&work, &data, config, &env_refs).await {
            Ok(server) => server,
            Err(why) => {
                lost.push(format!("cycle {cycle}: the node does not come back: {why}"));
                return (acked_total, lost, log);
            }
        };
        // Everything acknowledged before the last cut is there.
        let found = check(&server.base, &snapshot(&ledger)).await;
        lost.extend(found.lost.iter().map(|l| format!("cycle {cycle}: {l}")));
        let before = ledger.lock().unwrap().acked.values().sum::<u64>();
        // A load, cut short by the power.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let run = Duration::from_millis(rng.below(1200));
        let load = tokio::spawn(load(
            vec![server.base.clone()],
            ledger.clone(),
            6,
            10,
            if cycle == 0 { 3 } else { 100_000 },
            stop.clone(),
        ));
        // The cut lands after the load has made progress (bounded: the machine may be busy).
        wait_for_acks(&ledger, before + 18, Duration::from_secs(20)).await;
        tokio::time::sleep(run).await;
        server.kill9();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = load.await;
        let after = ledger.lock().unwrap().acked.values().sum::<u64>();
        acked_total += (after - before) as usize;
        let report = if strict {
            mount.cut_strict()
        } else {
            mount.cut(rng.next_u64())
        };
        log.push_str(&format!(
            "cycle {cycle}: read back {} keys, {} lost; load {} ms, cut: {report:?}\n",
            found.ok,
            found.lost.len(),
            run.as_millis()
        ));
        if cut_during_restart && cycle % 2 == 1 {
            // The power goes again while the node recovers from the last cut.
            let mut again = Server::launch(&work, &data, config, &[], &env_refs);
            std::thread::sleep(Duration::from_millis(rng.below(150)));
            again.kill9();
            let report = mount.cut(rng.next_u64());
            log.push_str(&format!(
                "cycle {cycle}: cut during the restart: {report:?}\n"
            ));
        }
    }
    let server = match start_ready(&work, &data, config, &env_refs).await {
        Ok(server) => server,
        Err(why) => {
            lost.push(format!("final: the node does not come back: {why}"));
            return (acked_total, lost, log);
        }
    };
    let found = check(&server.base, &snapshot(&ledger)).await;
    lost.extend(found.lost.iter().map(|l| format!("final: {l}")));
    log.push_str(&format!(
        "final: read back {} of {} keys; {} stores acknowledged in all; fs: {:?}\n",
        found.ok,
        ledger.lock().unwrap().acked_count(),
        acked_total,
        mount.counters()
    ));
    drop(server);
    drop(mount);
    (acked_total, lost, log)
}

/// Fails unless the cycles acknowledged at least `min_acked` stores and lost none.
fn assert_nothing_lost(what: &str, seed: u64, min_acked: usize, run: (usize, Vec<String>, String)) {
    let (acked, lost, log) = run;
    eprintln!("{what}, seed {seed}:\n{log}");
    assert!(
        acked >= min_acked,
        "{what}: too little load to mean anything ({acked}):\n{log}"
    );
    assert!(
        lost.is_empty(),
        "{what}, seed {seed} (POWERCUT_SEED={seed} replays it): acknowledged stores lost:\n{}\n{log}",
        lost.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_soon_after_the_first_start_loses_nothing() {
    // A strict cut (nothing unsynced survives), then random outcomes.
    for (i, strict) in [true, false, false].into_iter().enumerate() {
        let seed = seed_from_env_or(1000 + i as u64);
        let run = single_node_cycles(&[], "", 1, seed, strict, false).await;
        assert_nothing_lost("first start", seed, 1, run);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuts_during_load_snapshots_purges_and_restarts_lose_nothing() {
    let seed = seed_from_env_or(7);
    let run = single_node_cycles(&segment_env(), BUSY_CONFIG_IN_PLACE, 8, seed, false, true).await;
    assert!(run.2.contains("cut during the restart"));
    assert_nothing_lost("load cycles", seed, 100, run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_cuts_during_load_lose_nothing() {
    let seed = seed_from_env_or(11);
    for (config, seed) in [
        (BUSY_CONFIG_IN_PLACE, seed),
        (BUSY_CONFIG_WRITER_THREAD, seed + 1),
    ] {
        let run = single_node_cycles(&segment_env(), config, 4, seed, true, false).await;
        assert_nothing_lost("strict load cycles", seed, 100, run);
    }
}

/// Runs a first start and one strict cut on a server broken by `failpoint`, and checks that
/// the harness sees it lose acknowledged stores (or not come back).
async fn assert_caught(failpoint: &str, what: &str) {
    let env = vec![(failpoint, std::ffi::OsString::from("1"))];
    let (acked, lost, log) = single_node_cycles(&env, "", 1, 5, true, false).await;
    eprintln!("{what}:\n{log}");
    assert!(acked > 0, "{what}: the load acknowledged nothing:\n{log}");
    assert!(!lost.is_empty(), "{what} was not caught:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_harness_catches_a_server_that_acknowledges_before_its_fsync() {
    assert_caught(
        "STATEMANAGER_FAILPOINT_SKIP_LOG_SYNC",
        "a server that never fsyncs its log",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_harness_catches_a_server_that_skips_its_directory_fsyncs() {
    assert_caught(
        "STATEMANAGER_FAILPOINT_SKIP_DIR_SYNC",
        "a server that never fsyncs a directory",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_cluster_cut_at_once_reforms_and_loses_nothing() {
    let seed = seed_from_env_or(21);
    let tmp = tempfile::tempdir().expect("tempdir");
    let mount = mount_on(tmp.path());
    let mut rng = statemanager_powercut::Rng::new(seed);
    let mut cluster = Cluster::start_on(3, BUSY_CONFIG, mount.path());
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut log = String::new();
    let mut acked_total = 0;
    for cycle in 0..3 {
        let leader = cluster.wait_leader().await;
        assert_every_node_has_every_ack(
            &cluster,
            &ledger,
            &format!("seed {seed}, cycle {cycle}"),
            &log,
        )
        .await;
        let before = ledger.lock().unwrap().acked.values().sum::<u64>();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let bases: Vec<String> = (0..3).map(|i| cluster.node(i).base.clone()).collect();
        let run = Duration::from_millis(rng.below(1000));
        let load = tokio::spawn(load(bases, ledger.clone(), 6, 10, 100_000, stop.clone()));
        wait_for_acks(&ledger, before + 18, Duration::from_secs(20)).await;
        tokio::time::sleep(run).await;
        // The rack loses power: every node at once.
        for i in 0..3 {
            cluster.kill9(i);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = load.await;
        let after = ledger.lock().unwrap().acked.values().sum::<u64>();
        acked_total += after - before;
        let report = mount.cut(rng.next_u64());
        log.push_str(&format!(
            "cycle {cycle}: leader was node {}, load {} ms, {} acknowledged, cut: {report:?}\n",
            leader + 1,
            run.as_millis(),
            after - before
        ));
        let started = Instant::now();
        for i in 0..3 {
            cluster.restart(i);
        }
        log.push_str(&format!(
            "cycle {cycle}: restarted in {:?}\n",
            started.elapsed()
        ));
    }
    cluster.wait_leader().await;
    assert_every_node_has_every_ack(&cluster, &ledger, &format!("seed {seed}, final"), &log).await;
    eprintln!("cluster, seed {seed}: {acked_total} stores acknowledged\n{log}");
    assert!(acked_total > 50, "too little load ({acked_total}):\n{log}");
    drop(cluster);
    drop(mount);
}

/// The log index of the snapshot the node's log says it installed, once it has.
fn installed_snapshot_index(log: &str) -> Option<(u64, bool)> {
    let line = log.lines().find(|l| l.contains("snapshot installed"))?;
    let index = line
        .split("index: ")
        .nth(1)?
        .split(' ')
        .next()?
        .parse()
        .ok()?;
    Some((index, line.contains("linked=true")))
}

/// A follower that caught up by a snapshot from the leader (on this file system, as on ext4,
/// the received file is linked into its snapshots, not copied) loses power with the whole
/// cluster right after, strictly: nothing it did not make durable survives. Started again
/// alone, before its peers, it holds at least the state it installed; then no acknowledged
/// store is missing on any node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_cut_right_after_installing_a_snapshot_keeps_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mount = mount_on(tmp.path());
    let mut cluster = Cluster::start_on(3, BUSY_CONFIG, mount.path());
    let leader = cluster.wait_leader().await;
    let follower = (leader + 1) % 3;
    cluster.kill9(follower);
    // Enough stores for the leader to snapshot and purge its log past the follower.
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let bases: Vec<String> = (0..3)
        .filter(|&i| i != follower)
        .map(|i| cluster.node(i).base.clone())
        .collect();
    let load = tokio::spawn(load(bases, ledger.clone(), 6, 10, 100_000, stop.clone()));
    wait_for_acks(&ledger, 300, Duration::from_secs(60)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = load.await;
    let acked = ledger.lock().unwrap().acked.values().sum::<u64>();
    assert!(acked >= 300, "too little load: {acked} stores acknowledged");
    // The leader postpones a purge while its replication to the follower has those entries
    // in flight, and retries on later events (as `cluster_ops`'s catch-up test): one more
    // store now and then until both live nodes have purged (bounded).
    let live: Vec<usize> = (0..3).filter(|&i| i != follower).collect();
    let client = client();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut extra = 0;
    while !live.iter().all(|&n| cluster.has_purged(n)) {
        assert!(Instant::now() < deadline, "no purge within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let key = format!("extra{extra}");
        ledger.lock().unwrap().sent.insert(key.clone(), 1);
        if store(&client, &cluster.node(leader).base, &key, 1).await {
            ledger.lock().unwrap().acked.insert(key, 1);
        }
        extra += 1;
    }

    cluster.restart(follower);
    let deadline = Instant::now() + Duration::from_secs(60);
    let (index, linked) = loop {
        if let Some(installed) = installed_snapshot_index(&cluster.node(follower).log()) {
            break installed;
        }
        assert!(
            Instant::now() < deadline,
            "the follower installed no snapshot:\n{}",
            cluster.node(follower).log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(linked, "the received file was linked, not copied");

    // The rack loses power at once; nothing unsynced survives.
    for i in 0..3 {
        cluster.kill9(i);
    }
    let report = mount.cut_strict();
    cluster.restart(follower);
    let status_url = cluster.node(follower).url("/status");
    let mut applied = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(r) = client.get(&status_url).send().await {
            let status: serde_json::Value = r.json().await.unwrap_or_default();
            applied = status["applied_index"].as_u64().unwrap_or(0);
            if applied >= index {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        applied >= index,
        "alone after the cut ({report:?}) the follower is at index {applied}, \
         below the snapshot it installed at {index}:\n{}",
        cluster.node(follower).log()
    );
    for i in (0..3).filter(|&i| i != follower) {
        cluster.restart(i);
    }
    cluster.wait_leader().await;
    assert_every_node_has_every_ack(&cluster, &ledger, "after the cut", "").await;
    drop(cluster);
    drop(mount);
}

/// Stores `key-N` for each N in `numbers` through `base`, `pause` apart, until one fails or
/// `done` answers true; each is recorded in `ledger` as sent, and as acknowledged on a 200.
async fn store_keys(
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

/// A history to stop at every changing request: a first start with `config` and `env`, then
/// `stores` stores one after the other, `pause` apart.
struct History<'a> {
    config: &'a str,
    env: &'a [(&'a str, &'a std::ffi::OsStr)],
    stores: usize,
    pause: Duration,
}

/// Runs `history` on `data`, with the power going off after `budget` changing requests
/// (none: it stays on), until its stores are done, one has failed, the server has stopped on
/// a failed write, or it has run a moment after the power went (bounded); then kills it. The
/// stores acknowledged go into `ledger`.
async fn run_history(
    mount: &Mount,
    work: &Path,
    data: &Path,
    history: &History<'_>,
    budget: Option<u64>,
    ledger: &mut Ledger,
) {
    let powered = arm_power(mount, budget);
    std::fs::create_dir_all(work).expect("work dir");
    let mut server = Server::launch(work, data, history.config, &[], history.env);
    let client = client();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut power_went: Option<Instant> = None;
    loop {
        assert!(
            Instant::now() < deadline,
            "neither ready nor stopped:\n{}",
            server.log()
        );
        if power_went.is_none() && !powered() {
            power_went = Some(Instant::now());
        }
        if power_went.is_some_and(|t| t.elapsed() > Duration::from_millis(300))
            || server.wait_exit(Duration::ZERO).is_some()
        {
            break;
        }
        if work.join("addr.json").exists() && server.try_wait_started(Duration::ZERO).is_ok() {
            let ready = client.get(server.url("/ready")).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                let base = server.base.clone();
                store_keys(
                    &client,
                    &base,
                    0..history.stores,
                    history.pause,
                    ledger,
                    || false,
                )
                .await;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill9();
}

/// Ends a rack history: once the power went, a moment for the nodes to meet it; then every
/// node killed.
async fn end_rack_history(servers: &mut [Server], powered: impl Fn() -> bool) {
    if !powered() {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for server in servers.iter_mut() {
        server.kill9();
    }
}

/// Arms `mount` to lose its power after `budget` changing requests (none: it stays on);
/// returns whether the power is still on.
fn arm_power(mount: &Mount, budget: Option<u64>) -> impl Fn() -> bool + '_ {
    let unpowered = mount.counters().unpowered;
    if let Some(budget) = budget {
        mount.power_off_after(budget);
    }
    move || mount.counters().unpowered == unpowered
}

/// Which stops a sweep makes: `(seed, stride, offset)`. The stride is `POWERCUT_STRIDE` or
/// `default_stride`; the offset is drawn from `POWERCUT_SEED` or, unset, the clock (so the
/// stops move from run to run, and the printed seed replays them).
fn sweep_plan(default_stride: u64) -> (u64, u64, u64) {
    let seed = seed_from_env_or(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos().into()),
    );
    let stride = std::env::var("POWERCUT_STRIDE")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&s: &u64| s > 0)
        .unwrap_or(default_stride);
    (seed, stride, seed % stride)
}

/// Says how many stops a sweep made, and in how long.
fn sweep_done(changes: u64, (seed, stride, offset): (u64, u64, u64), started: Instant) {
    eprintln!(
        "{} stops of {changes} changes in {} s (POWERCUT_SEED={seed})",
        changes.saturating_sub(offset).div_ceil(stride),
        started.elapsed().as_secs()
    );
}

/// Runs `history` once to count its changing requests, then again for every one of them (or
/// every `stride`-th, or `POWERCUT_STRIDE`-th, from an offset drawn from `POWERCUT_SEED` or the
/// clock and printed), with
/// the power going off there, each stop cut strictly or by a seed: the next start must come
/// up, hold every store acknowledged before the stop, and take a store.
async fn stop_at_every_change(history: &History<'_>, stride: u64) {
    let (seed, stride, offset) = sweep_plan(stride);
    eprintln!("every {stride} stop from {offset} (POWERCUT_SEED={seed} replays it)");
    let tmp = tempfile::tempdir().expect("tempdir");
    let mount = mount_on(tmp.path());
    let before = mount.counters().changes;
    let mut ledger = Ledger::default();
    let (work, data) = (tmp.path().join("work-all"), mount.path().join("all"));
    run_history(&mount, &work, &data, history, None, &mut ledger).await;
    let changes = mount.counters().changes - before;
    assert_eq!(
        ledger.acked_count(),
        history.stores,
        "the run without a stop"
    );
    assert!(changes > 10, "{changes} changing requests");
    mount.cut_strict();

    let started = Instant::now();
    for k in (offset..changes).step_by(stride as usize) {
        let mut ledger = Ledger::default();
        let work = tmp.path().join(format!("work-{k}"));
        let data = mount.path().join(format!("data-{k}"));
        run_history(&mount, &work, &data, history, Some(k), &mut ledger).await;
        let report = if k % 2 == 0 {
            mount.cut_strict()
        } else {
            mount.cut(k)
        };
        // Every other time the power goes again during the restart, after a few of its
        // changes (recovery: a torn tail cut, a purge finished, leftovers removed).
        let mut again_cut = None;
        if k % 2 == 1 {
            let budget = (k * 7 + seed) % 24;
            let restart = History {
                stores: 0,
                ..*history
            };
            run_history(
                &mount,
                &work,
                &data,
                &restart,
                Some(budget),
                &mut Ledger::default(),
            )
            .await;
            again_cut = Some((budget, mount.cut(seed ^ k)));
        }
        let what = format!(
            "POWERCUT_SEED={seed}: power off after {k} of {changes} changes ({} stores \
             acknowledged), cut {report:?}; then during the restart: {again_cut:?}",
            ledger.acked_count()
        );
        let server = start_ready(&work, &data, history.config, history.env)
            .await
            .unwrap_or_else(|why| panic!("{what}: the next start fails: {why}"));
        let found = check(&server.base, &ledger).await;
        assert!(found.lost.is_empty(), "{what}: lost {:?}", found.lost);
        assert!(
            store(&client(), &server.base, "after", 1).await,
            "{what}: no store after the restart:\n{}",
            server.log()
        );
        drop(server);
    }
    sweep_done(changes, (seed, stride, offset), started);
    drop(mount);
}

/// A first start and its first three stores, stopped in turn at every request that changes
/// the file system (the power goes off there: `Mount::power_off_after`): the next start
/// always comes up, with every store acknowledged before the stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_start_stopped_at_every_change_starts_again() {
    let history = History {
        config: BUSY_CONFIG,
        env: &[],
        stores: 3,
        pause: Duration::ZERO,
    };
    stop_at_every_change(&history, 1).await;
}

/// Stores through two snapshots, each followed by a purge of the whole log, on 1 KiB log
/// segments (so segments roll, are recycled and prepared ahead), stopped at every fifth
/// changing request in turn (which fifth changes from run to run): the next start always
/// comes up with every acknowledged store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_and_purges_stopped_at_every_fifth_change_start_again() {
    let env: Vec<(&str, &std::ffi::OsStr)> = vec![(
        "STATEMANAGER_FAILPOINT_SEGMENT_BYTES",
        std::ffi::OsStr::new("1024"),
    )];
    let history = History {
        config: "snapshot_logs: 10\nsnapshot_keep_logs: 0\nmax_persistent_data_items: 1000\n",
        env: &env,
        stores: 40,
        // The snapshot loop looks every 250 ms: two snapshots in the history.
        pause: Duration::from_millis(25),
    };
    stop_at_every_change(&history, 5).await;
}

/// Three nodes on the power-cut file system, configured to form one cluster.
struct Rack {
    works: Vec<std::path::PathBuf>,
    datas: Vec<std::path::PathBuf>,
    configs: Vec<String>,
    /// Each node's peer address.
    peer_addrs: Vec<String>,
}

impl Rack {
    /// Three nodes configured to form one cluster (`peers`).
    fn new(tmp: &Path, mount: &Mount, name: &str, extra: &str) -> Rack {
        Rack::with_configs(tmp, mount, name, |i, peer_addrs| {
            let peers: String = peer_addrs
                .iter()
                .enumerate()
                .map(|(i, addr)| format!("  {}: {addr}\n", i + 1))
                .collect();
            format!(
                "node_id: {}\npeer_listen: {}\npeers:\n{peers}{extra}",
                i + 1,
                peer_addrs[i]
            )
        })
    }

    /// Node 1 alone (no `peers`), nodes 2 and 3 waiting to be added (`join: true`).
    fn to_grow(tmp: &Path, mount: &Mount, name: &str, extra: &str) -> Rack {
        Rack::with_configs(tmp, mount, name, |i, peer_addrs| {
            let join = if i == 0 { "" } else { "join: true\n" };
            format!(
                "node_id: {}\npeer_listen: {}\n{join}{extra}",
                i + 1,
                peer_addrs[i]
            )
        })
    }

    fn with_configs(
        tmp: &Path,
        mount: &Mount,
        name: &str,
        config: impl Fn(usize, &[String]) -> String,
    ) -> Rack {
        let peer_addrs: Vec<String> = common::free_ports(3)
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        let configs = (0..3).map(|i| config(i, &peer_addrs)).collect();
        let works = (1..=3)
            .map(|i| tmp.join(format!("{name}-work{i}")))
            .collect();
        let datas = (1..=3)
            .map(|i| mount.path().join(format!("{name}-node{i}")))
            .collect();
        Rack {
            works,
            datas,
            configs,
            peer_addrs,
        }
    }

    /// Launches the three nodes together.
    fn launch(&self) -> Vec<Server> {
        self.launch_first(3)
    }

    /// Launches nodes 1 to `n` together.
    fn launch_first(&self, n: usize) -> Vec<Server> {
        (0..n)
            .map(|i| {
                std::fs::create_dir_all(&self.works[i]).expect("work dir");
                Server::launch(&self.works[i], &self.datas[i], &self.configs[i], &[], &[])
            })
            .collect()
    }
}

/// Stores `stores` keys through whichever node answers (a follower hands a store to its
/// leader), until one fails; the acknowledged ones go into `ledger`.
async fn store_through_any(
    servers: &mut [Server],
    numbers: std::ops::Range<usize>,
    ledger: &mut Ledger,
) {
    let client = client();
    for n in numbers {
        let key = format!("key-{n}");
        ledger.sent.insert(key.clone(), 1);
        let mut acked = false;
        for server in servers.iter_mut() {
            if server.try_wait_started(Duration::ZERO).is_ok()
                && store(&client, &server.base, &key, 1).await
            {
                acked = true;
                break;
            }
        }
        if !acked {
            return;
        }
        ledger.acked.insert(key, 1);
    }
}

/// The rack's first start, its formation and `stores` stores, with the power going off for
/// all three nodes after `budget` changing requests (none: it stays on); then every node is
/// killed.
async fn rack_history(mount: &Mount, rack: &Rack, stores: usize, budget: Option<u64>) -> Ledger {
    let powered = arm_power(mount, budget);
    let mut servers = rack.launch();
    let client = client();
    let mut ledger = Ledger::default();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut power_went: Option<Instant> = None;
    loop {
        assert!(Instant::now() < deadline, "neither formed nor stopped");
        if power_went.is_none() && !powered() {
            power_went = Some(Instant::now());
        }
        if power_went.is_some_and(|t| t.elapsed() > Duration::from_millis(300))
            || servers
                .iter_mut()
                .all(|s| s.wait_exit(Duration::ZERO).is_some())
        {
            break;
        }
        if any_ready(&client, &mut servers).await {
            store_through_any(&mut servers, 0..stores, &mut ledger).await;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for server in servers.iter_mut() {
        server.kill9();
    }
    ledger
}

/// What a rack does while the power may go off.
#[derive(Clone, Copy, Debug)]
enum RackHistory {
    /// Its first start, formation and three stores ([`rack_history`]).
    Formation,
    /// A follower catching up by a snapshot ([`rack_catch_up_history`]).
    CatchUp,
    /// One node grown into three by `cluster add` ([`rack_growth_history`]).
    Growth,
    /// Three nodes shrunk to two by `cluster remove` ([`rack_shrink_history`]).
    Shrink,
}

impl RackHistory {
    /// The rack, configured for this history.
    fn rack(self, tmp: &Path, mount: &Mount, name: &str) -> Rack {
        match self {
            RackHistory::Growth => Rack::to_grow(tmp, mount, name, self.config()),
            _ => Rack::new(tmp, mount, name, self.config()),
        }
    }

    /// The nodes' configuration beside their ids and peers.
    fn config(self) -> &'static str {
        match self {
            RackHistory::Formation | RackHistory::Growth | RackHistory::Shrink => BUSY_CONFIG,
            // Snapshots every ten entries that purge the whole log.
            RackHistory::CatchUp => {
                "snapshot_logs: 10\nsnapshot_keep_logs: 0\nmax_persistent_data_items: 100000\n"
            }
        }
    }
}

async fn run_rack(mount: &Mount, rack: &Rack, history: RackHistory, budget: Option<u64>) -> Ledger {
    match history {
        RackHistory::Formation => rack_history(mount, rack, 3, budget).await,
        RackHistory::CatchUp => rack_catch_up_history(mount, rack, budget).await,
        RackHistory::Growth => rack_growth_history(mount, rack, budget).await,
        RackHistory::Shrink => rack_shrink_history(mount, rack, budget).await,
    }
}

/// Runs `history` on a rack once to count its changing requests, then again stopped at every
/// `POWERCUT_STRIDE`-th of them (default `stride`, from an offset drawn per run), the power
/// going off for all three nodes, cut strictly or by a seed: started again together, the
/// cluster agrees on a leader, takes a store, and every node holds every acknowledged store.
async fn stop_rack_at_every_change(history: RackHistory, stride: u64) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mount = mount_on(tmp.path());
    let before = mount.counters().changes;
    let rack = history.rack(tmp.path(), &mount, "all");
    let ledger = run_rack(&mount, &rack, history, None).await;
    let changes = mount.counters().changes - before;
    assert!(
        ledger.acked_count() >= 3,
        "the run without a stop: {} stores",
        ledger.acked_count()
    );
    if matches!(history, RackHistory::CatchUp) {
        let installed = rack.works.iter().any(|work| {
            std::fs::read_to_string(work.join("server.log"))
                .unwrap_or_default()
                .contains("snapshot installed")
        });
        assert!(installed, "the follower caught up by a snapshot");
    }
    mount.cut_strict();
    let (seed, stride, offset) = sweep_plan(stride);
    eprintln!(
        "{history:?}: {changes} changes; every {stride} stop from {offset} (POWERCUT_SEED={seed})"
    );
    let started = Instant::now();
    for k in (offset..changes).step_by(stride as usize) {
        let rack = history.rack(tmp.path(), &mount, &format!("k{k}"));
        let ledger = run_rack(&mount, &rack, history, Some(k)).await;
        let report = if k % 2 == 0 {
            mount.cut_strict()
        } else {
            mount.cut(seed ^ k)
        };
        let what = format!(
            "POWERCUT_SEED={seed}: power off after {k} of {changes} changes ({} stores \
             acknowledged), cut {report:?}",
            ledger.acked_count()
        );
        // After a shrink, node 3 stays stopped (removed, or to be removed).
        let mut servers = match history {
            RackHistory::Shrink => rack.launch_first(2),
            _ => rack.launch(),
        };
        match history {
            RackHistory::Growth => grow_rack(&rack, &what).await,
            RackHistory::Shrink => shrink_rack(&rack, &what).await,
            _ => {}
        }
        let client = client();
        let deadline = Instant::now() + Duration::from_secs(30);
        let leader = loop {
            let mut leaders = std::collections::BTreeSet::new();
            let mut all_ready = true;
            for server in servers.iter_mut() {
                if server.try_wait_started(Duration::ZERO).is_err() {
                    all_ready = false;
                    continue;
                }
                let ready = client.get(server.url("/ready")).send().await;
                all_ready &= ready.is_ok_and(|r| r.status() == 200);
                if let Ok(r) = client.get(server.url("/status")).send().await {
                    let status: serde_json::Value = r.json().await.unwrap_or_default();
                    if let Some(id) = status["leader"]["id"].as_u64() {
                        leaders.insert(id);
                    }
                }
            }
            if all_ready && leaders.len() == 1 {
                break leaders.first().copied().unwrap_or(1) as usize - 1;
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = servers.iter().map(|s| s.log()).collect();
                panic!(
                    "{what}: no agreed leader after the restart ({leaders:?}):\n{}",
                    logs.join("\n----\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut extra = Ledger::default();
        store_through_any(&mut servers[leader..=leader], 0..1, &mut extra).await;
        assert_eq!(extra.acked_count(), 1, "{what}: no store after the restart");
        for server in &servers {
            let found = check(&server.base, &ledger).await;
            assert!(found.lost.is_empty(), "{what}: lost {:?}", found.lost);
        }
    }
    sweep_done(changes, (seed, stride, offset), started);
    drop(mount);
}

/// One node grown into three by `statemanager cluster add` (each new member a learner that
/// catches up, then a voter by a joint membership change), with stores before and after,
/// stopped for the whole rack at every fortieth changing request: started again, the
/// growth can be completed, and every node holds every acknowledged store
/// (`POWERCUT_STRIDE=1`: every one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_grown_by_cluster_add_stopped_at_every_fortieth_change_grows_again() {
    stop_rack_at_every_change(RackHistory::Growth, 40).await;
}

/// A 3-node cluster shrunk to two by `statemanager cluster remove` (a joint membership
/// change; the removed node then stopped), with stores before and after, stopped for the
/// whole rack at every fortieth changing request: started again without the removed node, the
/// removal can be completed, and both nodes hold every acknowledged store
/// (`POWERCUT_STRIDE=1`: every one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_shrunk_by_cluster_remove_stopped_at_every_fortieth_change_shrinks_again() {
    stop_rack_at_every_change(RackHistory::Shrink, 40).await;
}

/// A 3-node cluster's first start, its formation and three stores, stopped for the whole rack
/// at every twelfth changing request (`POWERCUT_STRIDE=1`: every one, ~3 minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_formation_stopped_at_every_twelfth_change_forms_again() {
    stop_rack_at_every_change(RackHistory::Formation, 12).await;
}

/// A follower that catches up by a snapshot (the others' logs purged whole while it was
/// down), stopped for the whole rack at every hundredth changing request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_catching_up_by_snapshot_stopped_at_every_hundredth_change_recovers() {
    stop_rack_at_every_change(RackHistory::CatchUp, 100).await;
}

/// The rack formed, a follower down while the others store through two snapshots that purge
/// their whole logs, the follower back (it catches up by a snapshot from the leader), and more
/// stores; with the power going off for all three after `budget` changing requests (none: it
/// stays on). Every node is killed at the end.
async fn rack_catch_up_history(mount: &Mount, rack: &Rack, budget: Option<u64>) -> Ledger {
    let powered = arm_power(mount, budget);
    let mut servers = rack.launch();
    let client = client();
    let mut ledger = Ledger::default();
    let deadline = Instant::now() + Duration::from_secs(30);
    // The leader, once the three agree on one; `None` once the power is off.
    let mut leader = None;
    while powered() && Instant::now() < deadline {
        for (i, server) in servers.iter_mut().enumerate() {
            if server.try_wait_started(Duration::ZERO).is_ok() {
                if let Ok(r) = client.get(server.url("/status")).send().await {
                    let status: serde_json::Value = r.json().await.unwrap_or_default();
                    if status["role"] == "leader" {
                        leader = Some(i);
                    }
                }
            }
        }
        if leader.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(leader) = leader.filter(|_| powered()) {
        let follower = (leader + 1) % 3;
        servers[follower].kill9();
        let base = servers[leader].base.clone();
        let pause = Duration::from_millis(25);
        store_keys(&client, &base, 0..40, pause, &mut ledger, || false).await;
        // The leader postpones a purge while entries to the follower are in flight (as in
        // `a_follower_cut_right_after_installing_a_snapshot_keeps_it`): a store now and then
        // until it has purged, so the follower must catch up by a snapshot (bounded).
        let purged = rack.datas[leader].join("log/meta/wal-purged-index");
        let pause = Duration::from_millis(50);
        let done = || purged.exists() || !powered();
        store_keys(&client, &base, 100..160, pause, &mut ledger, done).await;
        if powered() {
            let mut back = Server::launch(
                &rack.works[follower],
                &rack.datas[follower],
                &rack.configs[follower],
                &[],
                &[],
            );
            let caught_up = Instant::now() + Duration::from_secs(10);
            while powered()
                && Instant::now() < caught_up
                && !any_ready(&client, std::slice::from_mut(&mut back)).await
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            store_keys(&client, &base, 40..45, Duration::ZERO, &mut ledger, || {
                false
            })
            .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            back.kill9();
        }
    }
    end_rack_history(&mut servers, powered).await;
    ledger
}

/// `statemanager cluster --peer PEER ARGS…` run to its end (bounded: killed after 20 s):
/// whether it succeeded, and what it printed.
fn cluster_cli(peer: &str, args: &[&str]) -> (bool, String) {
    let mut child = std::process::Command::new(common::binary())
        .args(["cluster", "--peer", peer])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the cluster command");
    if common::wait_bounded(&mut child, Duration::from_secs(20)).is_none() {
        let _ = child.kill();
    }
    let out = child
        .wait_with_output()
        .expect("the cluster command's output");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The voters node 1 of `rack` reports, through its peer port (empty when it does not answer).
fn rack_voters(rack: &Rack) -> Vec<u64> {
    let (ok, out) = cluster_cli(&rack.peer_addrs[0], &["--json", "status"]);
    let status: serde_json::Value = if ok {
        serde_json::from_str(out.trim()).unwrap_or_default()
    } else {
        serde_json::Value::Null
    };
    status["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["state"] == "voter")
        .filter_map(|m| m["id"].as_u64())
        .collect()
}

/// Adds nodes 2 and 3 of `rack` through node 1 with `statemanager cluster add`, each once
/// it is not yet a voter; true when both were added.
fn add_rack_members(rack: &Rack, voters: &[u64]) -> bool {
    for id in [2u64, 3] {
        if voters.contains(&id) {
            continue;
        }
        let addr = &rack.peer_addrs[id as usize - 1];
        let (ok, _) = cluster_cli(&rack.peer_addrs[0], &["add", &id.to_string(), addr]);
        if !ok {
            return false;
        }
    }
    true
}

/// Node 1 started alone, 2 stores through it, nodes 2 and 3 added by `statemanager cluster
/// add`, 3 more stores through any node; with the power going off after `budget` changing
/// requests (none: it stays on); then every node killed.
async fn rack_growth_history(mount: &Mount, rack: &Rack, budget: Option<u64>) -> Ledger {
    let powered = arm_power(mount, budget);
    let mut servers = rack.launch();
    let client = client();
    let mut ledger = Ledger::default();
    let deadline = Instant::now() + Duration::from_secs(30);
    while powered() && Instant::now() < deadline && !any_ready(&client, &mut servers[..1]).await {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if powered() {
        store_through_any(&mut servers[..1], 0..2, &mut ledger).await;
        let added = tokio::task::block_in_place(|| add_rack_members(rack, &[1]));
        if added {
            store_through_any(&mut servers, 2..5, &mut ledger).await;
        }
    }
    end_rack_history(&mut servers, powered).await;
    ledger
}

/// The rack formed, 2 stores, node 3 removed by `statemanager cluster remove` and then
/// stopped, 3 more stores through nodes 1 and 2; with the power going off after `budget`
/// changing requests (none: it stays on); then every node killed.
async fn rack_shrink_history(mount: &Mount, rack: &Rack, budget: Option<u64>) -> Ledger {
    let powered = arm_power(mount, budget);
    let mut servers = rack.launch();
    let client = client();
    let mut ledger = Ledger::default();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut ready = false;
    while powered() && !ready && Instant::now() < deadline {
        ready = any_ready(&client, &mut servers).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if ready {
        store_through_any(&mut servers, 0..2, &mut ledger).await;
        let (removed, _) =
            tokio::task::block_in_place(|| cluster_cli(&rack.peer_addrs[0], &["remove", "3"]));
        if removed {
            servers[2].kill9();
            store_through_any(&mut servers[..2], 2..5, &mut ledger).await;
        }
    }
    end_rack_history(&mut servers, powered).await;
    ledger
}

/// Completes the shrink of `rack` after a cut, with nodes 1 and 2 running: node 3 is
/// removed again while it is a voter (bounded).
async fn shrink_rack(rack: &Rack, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let voters = tokio::task::block_in_place(|| rack_voters(rack));
        if voters == [1, 2] {
            return;
        }
        if voters.contains(&3) {
            tokio::task::block_in_place(|| cluster_cli(&rack.peer_addrs[0], &["remove", "3"]));
        }
        assert!(
            Instant::now() < deadline,
            "{what}: node 3 is not removed again (voters {voters:?})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Completes the growth of `rack` after a cut: node 1 is a member still and leads, alone or
/// with those already added; whichever of nodes 2 and 3 is not a voter yet is added (bounded).
async fn grow_rack(rack: &Rack, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let voters = tokio::task::block_in_place(|| rack_voters(rack));
        if voters.len() == 3 {
            return;
        }
        if voters.contains(&1) && tokio::task::block_in_place(|| add_rack_members(rack, &voters)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the rack does not grow to three again (voters {voters:?})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs an offline `command` with the power going off after `k` of its `changes` changing
/// requests, then cuts (strictly for an even `k`, by `seed` otherwise). The command must have
/// failed. Returns the stop's description for the checks after it, and what the command
/// printed.
fn stop_offline_command(
    mount: &Mount,
    (seed, k, changes): (u64, u64, u64),
    name: &str,
    command: impl FnOnce() -> (bool, String),
) -> (String, String) {
    mount.power_off_after(k);
    let (ok, out) = command();
    let report = if k % 2 == 0 {
        mount.cut_strict()
    } else {
        mount.cut(seed ^ k)
    };
    let what =
        format!("POWERCUT_SEED={seed}: power off after {k} of {changes} changes, cut {report:?}");
    assert!(!ok, "{what}: the {name} succeeded without its power: {out}");
    (what, out)
}

/// Runs `statemanager restore FILE` into `data` (a one-member cluster of the default
/// configuration): whether it succeeded, and what it printed.
fn restore_into(file: &Path, work: &Path, data: &Path) -> (bool, String) {
    std::fs::create_dir_all(work).expect("work dir");
    let config = work.join("restore.yaml");
    std::fs::write(&config, "").expect("config");
    common::cli(&[
        "restore",
        file.to_str().expect("path"),
        "--config",
        config.to_str().expect("path"),
        "--data-dir",
        data.to_str().expect("path"),
    ])
}

/// A restore, stopped at every request that changes the file system, each stop cut: the data
/// directory it leaves is either one no node serves (`serve` refuses it, naming the unfinished
/// restore) or holds nothing of the restore; running the restore again succeeds, and the node
/// then serves every item of the backup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_stopped_at_every_change_is_refused_or_absent_and_runs_again() {
    let (seed, stride, offset) = sweep_plan(1);
    eprintln!("every {stride} stop from {offset} (POWERCUT_SEED={seed} replays it)");
    let tmp = tempfile::tempdir().expect("tempdir");
    // The backup, from a node off the power-cut file system.
    let source = Server::start("");
    source.wait_ready().await;
    let client = client();
    let mut ledger = Ledger::default();
    store_keys(
        &client,
        &source.base,
        0..30,
        Duration::ZERO,
        &mut ledger,
        || false,
    )
    .await;
    assert_eq!(ledger.acked_count(), 30);
    let file = tmp.path().join("items.smbackup");
    let (ok, out) = common::cli(&[
        "backup",
        "--server",
        &source.base,
        "--out",
        file.to_str().expect("path"),
    ]);
    assert!(ok, "backup: {out}");
    drop(source);

    let mount = mount_on(tmp.path());
    let before = mount.counters().changes;
    let (ok, out) = restore_into(
        &file,
        &tmp.path().join("work-all"),
        &mount.path().join("all"),
    );
    assert!(ok, "the restore without a stop: {out}");
    let changes = mount.counters().changes - before;
    assert!(changes > 10, "{changes} changing requests");
    mount.cut_strict();

    let started = Instant::now();
    let mut refused = 0;
    for k in (offset..changes).step_by(stride as usize) {
        let work = tmp.path().join(format!("work-{k}"));
        let data = mount.path().join(format!("data-{k}"));
        let (what, out) = stop_offline_command(&mount, (seed, k, changes), "restore", || {
            restore_into(&file, &work, &data)
        });
        let left: Vec<String> = std::fs::read_dir(&data)
            .map(|entries| {
                entries
                    .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        if left.iter().any(|name| name == "RESTORING") {
            refused += 1;
            // The marker was there when the restore failed, and the message says so.
            assert!(
                out.contains("is not served until a restore into it finishes: run it again"),
                "{what}: the failed restore's message: {out}"
            );
            let mut server = Server::launch(&work, &data, "", &[], &[]);
            let exit = server.wait_exit(Duration::from_secs(20));
            assert!(
                exit.is_some_and(|status| !status.success())
                    && server.log().contains("restore that did not finish"),
                "{what}: serve on an unfinished restore ({left:?}): {exit:?}\n{}",
                server.log()
            );
        } else {
            assert!(
                left.iter()
                    .all(|name| name == "LOCK" || name == "RESTORING.tmp"),
                "{what}: the restore left {left:?} and no marker"
            );
        }
        let (ok, out) = restore_into(&file, &work, &data);
        assert!(ok, "{what}: the restore run again: {out}");
        let server = start_ready(&work, &data, "", &[])
            .await
            .unwrap_or_else(|why| panic!("{what}: the restored node: {why}"));
        let found = check(&server.base, &ledger).await;
        assert!(found.lost.is_empty(), "{what}: lost {:?}", found.lost);
        drop(server);
    }
    sweep_done(changes, (seed, stride, offset), started);
    assert!(refused > 0, "no stop left an unfinished restore");
    drop(mount);
}

/// Runs `statemanager backup --out NAME` from `server` with `cwd` as the working directory (a
/// name without a directory, as an operator in the backup directory would type it): whether it
/// succeeded, and what it printed.
fn backup_in(cwd: &Path, server: &str, name: &str) -> (bool, String) {
    let out = std::process::Command::new(common::binary())
        .args(["backup", "--server", server, "--out", name])
        .current_dir(cwd)
        .output()
        .expect("the backup command runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `statemanager backup --out NAME` into a directory on the power-cut file system: a backup the
/// command reported as written is there after a cut (its directory entry included, when NAME
/// names no directory), and one stopped at any of its changes reports a failure and leaves
/// either no file of that name or the whole backup, which restores every item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_reported_written_survives_a_cut_and_one_stopped_at_any_change_fails() {
    let (seed, stride, offset) = sweep_plan(1);
    eprintln!("every {stride} stop from {offset} (POWERCUT_SEED={seed} replays it)");
    let tmp = tempfile::tempdir().expect("tempdir");
    let source = Server::start("");
    source.wait_ready().await;
    let mut ledger = Ledger::default();
    store_keys(
        &client(),
        &source.base,
        0..20,
        Duration::ZERO,
        &mut ledger,
        || false,
    )
    .await;
    assert_eq!(ledger.acked_count(), 20);

    let mount = mount_on(tmp.path());
    let whole = durable_dir(&mount, "whole");
    let before = mount.counters().changes;
    let (ok, out) = backup_in(&whole, &source.base, "items.smbackup");
    assert!(ok, "the backup without a stop: {out}");
    let changes = mount.counters().changes - before;
    mount.cut_strict();
    let kept = whole.join("items.smbackup");
    assert!(
        kept.exists(),
        "a backup reported written is gone after a cut: {:?}",
        std::fs::read_dir(&whole).map(|d| d.count())
    );
    restores_every_item(
        &kept,
        &tmp.path().join("work-whole"),
        &ledger,
        "the whole backup",
    )
    .await;

    let started = Instant::now();
    for k in (offset..changes).step_by(stride as usize) {
        let dir = durable_dir(&mount, &format!("stop-{k}"));
        let (what, _) = stop_offline_command(&mount, (seed, k, changes), "backup", || {
            backup_in(&dir, &source.base, "items.smbackup")
        });
        let file = dir.join("items.smbackup");
        if file.exists() {
            let work = tmp.path().join(format!("work-{k}"));
            restores_every_item(&file, &work, &ledger, &what).await;
        }
    }
    sweep_done(changes, (seed, stride, offset), started);
    drop(source);
    drop(mount);
}

/// A new directory `name` at the top of `mount`, its entry made durable.
fn durable_dir(mount: &Mount, name: &str) -> PathBuf {
    let dir = mount.path().join(name);
    std::fs::create_dir(&dir).expect("a directory on the mount");
    std::fs::File::open(mount.path())
        .and_then(|top| top.sync_all())
        .expect("the mount's top directory synced");
    dir
}

/// Restores `file` into a fresh data directory under `work` (off the power-cut file system) and
/// checks that the node then holds every item of `ledger`.
async fn restores_every_item(file: &Path, work: &Path, ledger: &Ledger, what: &str) {
    let data = work.join("data");
    let (ok, out) = restore_into(file, work, &data);
    assert!(ok, "{what}: restoring the backup: {out}");
    let server = start_ready(work, &data, "", &[])
        .await
        .unwrap_or_else(|why| panic!("{what}: the restored node: {why}"));
    let found = check(&server.base, ledger).await;
    assert!(found.lost.is_empty(), "{what}: lost {:?}", found.lost);
}

/// Runs `statemanager recover` on `data` with the node configuration `config` (in `work`).
fn recover(work: &Path, data: &Path, config: &str) -> (bool, String) {
    std::fs::create_dir_all(work).expect("work dir");
    let file = work.join("recover.yaml");
    std::fs::write(&file, config).expect("config");
    common::cli(&[
        "recover",
        "--config",
        file.to_str().expect("path"),
        "--data-dir",
        data.to_str().expect("path"),
    ])
}

/// The item count `statemanager recover` printed ("… a one-member cluster: N items, …").
fn items_recovered(out: &str) -> u64 {
    out.split_once("cluster: ")
        .and_then(|(_, rest)| rest.split_once(" items"))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no item count in {out:?}"))
}

/// Starts the one-member cluster a recovery left in `data` and reads which of `ledger`'s
/// keys it holds.
async fn keys_after_recovery(
    work: &Path,
    data: &Path,
    config: &str,
    ledger: &Ledger,
) -> Vec<String> {
    let server = start_ready(work, data, config, &[])
        .await
        .unwrap_or_else(|why| panic!("the recovered node: {why}"));
    held_keys(&server, ledger).await
}

/// Which of `ledger`'s keys `server` holds; it must take a store too.
async fn held_keys(server: &Server, ledger: &Ledger) -> Vec<String> {
    let found = check(&server.base, ledger).await;
    assert!(
        store(&client(), &server.base, "after", 1).await,
        "no store on the recovered node:\n{}",
        server.log()
    );
    ledger
        .acked
        .keys()
        .filter(|key| {
            !found
                .lost
                .iter()
                .any(|lost| lost.starts_with(&format!("{key}:")))
        })
        .cloned()
        .collect()
}

/// Starts a server on `data`; the server once ready within `limit`, or `None` (then stopped).
async fn start_ready_within(
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

/// A lost quorum's offline recovery (`statemanager recover`: the survivor's log replayed onto
/// its snapshot, a new snapshot of a one-member cluster, the log purged), stopped at every
/// request that changes the file system, each stop cut: recovering again succeeds, and the
/// node then serves the same stores as one recovered without a stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_stopped_at_every_change_recovers_again() {
    let (seed, stride, offset) = sweep_plan(1);
    eprintln!("every {stride} stop from {offset} (POWERCUT_SEED={seed} replays it)");
    let tmp = tempfile::tempdir().expect("tempdir");
    let mount = mount_on(tmp.path());
    // A survivor with snapshots, log entries after them and the cluster's membership: a rack
    // formed, 25 stores; 30 more 20 ms apart (the snapshot loop looks every 250 ms); after a
    // restart without snapshots, 8 more (in the log only); every node killed.
    let config = "snapshot_logs: 10\nsnapshot_keep_logs: 2\nmax_persistent_data_items: 1000\n";
    let rack = Rack::new(tmp.path(), &mount, "rack", config);
    let mut ledger = rack_history(&mount, &rack, 25, None).await;
    assert_eq!(ledger.acked_count(), 25, "the rack's stores");
    for (keys, pause, snapshot_logs) in [(25..55, 20, 10), (55..63, 0, 100_000)] {
        let mut servers: Vec<Server> = (0..3)
            .map(|i| {
                let config = rack.configs[i].replace(
                    "snapshot_logs: 10\n",
                    &format!("snapshot_logs: {snapshot_logs}\n"),
                );
                Server::launch(&rack.works[i], &rack.datas[i], &config, &[], &[])
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        for n in keys {
            let key = format!("key-{n}");
            ledger.sent.insert(key.clone(), 1);
            'stored: loop {
                assert!(Instant::now() < deadline, "the rack's later stores");
                for server in servers.iter_mut() {
                    if server.try_wait_started(Duration::ZERO).is_ok()
                        && store(&client(), &server.base, &key, 1).await
                    {
                        break 'stored;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            ledger.acked.insert(key, 1);
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        for server in servers.iter_mut() {
            server.kill9();
        }
    }
    mount.cut_strict();
    let survivor = &rack.datas[0];
    let node_config = &rack.configs[0];

    let (work, data) = (tmp.path().join("work-all"), mount.path().join("all"));
    common::copy_tree(survivor, &data);
    let before = mount.counters().changes;
    let (ok, out) = recover(&work, &data, node_config);
    assert!(ok, "the recovery without a stop: {out}");
    eprintln!("{}", out.trim());
    let reference_items = items_recovered(&out);
    let changes = mount.counters().changes - before;
    mount.cut_strict();
    let expected = keys_after_recovery(&work, &data, node_config, &ledger).await;
    assert!(expected.len() >= 10, "the survivor holds {expected:?}");
    assert!(changes > 5, "{changes} changing requests");

    let started = Instant::now();
    let mut recovered_as_left_waits = 0;
    for k in (offset..changes).step_by(stride as usize) {
        let work = tmp.path().join(format!("work-{k}"));
        let data = mount.path().join(format!("data-{k}"));
        common::copy_tree(survivor, &data);
        let (what, _) = stop_offline_command(&mount, (seed, k, changes), "recovery", || {
            recover(&work, &data, node_config)
        });
        // Started as it was left: either the survivor, still a member of three, waiting for
        // its peers, or the one-member cluster with every store the recovery keeps.
        // (Served, it took one more store: the recovery run again keeps that one too.)
        let mut items = reference_items;
        match start_ready_within(&work, &data, node_config, Duration::from_millis(1500)).await {
            Some(server) => {
                let found = held_keys(&server, &ledger).await;
                assert_eq!(
                    found, expected,
                    "{what}: started as left, the node's stores"
                );
                items += 1;
            }
            None => recovered_as_left_waits += 1,
        }
        let (ok, out) = recover(&work, &data, node_config);
        assert!(ok, "{what}: the recovery run again: {out}");
        assert_eq!(
            items_recovered(&out),
            items,
            "{what}: the recovery run again kept other items: {out}"
        );
        let found = keys_after_recovery(&work, &data, node_config, &ledger).await;
        assert_eq!(found, expected, "{what}: the recovered node's stores");
    }
    sweep_done(changes, (seed, stride, offset), started);
    eprintln!("{recovered_as_left_waits} stops left the survivor waiting for its peers");
    drop(mount);
}
