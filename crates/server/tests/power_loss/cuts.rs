//! Cuts at moments a load happens to reach: one node through many cycles, a whole cluster at
//! once, a follower right after it installed a snapshot; and the harness's own tests.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::Cluster;
use crate::common::Server;
use crate::harness::{
    assert_every_node_has_every_ack, check, client, load, mount_on, seed_from_env_or, segment_env,
    snapshot, start_ready, store, wait_for_acks, Ledger, BUSY_CONFIG, BUSY_CONFIG_IN_PLACE,
    BUSY_CONFIG_WRITER_THREAD,
};

/// One node: start, store a load, kill -9, cut, restart; `cycles` times on one data dir.
/// Returns (acknowledged stores over all cycles, lost keys found, log of the cycles).
pub(crate) async fn single_node_cycles(
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
pub(crate) fn assert_nothing_lost(
    what: &str,
    seed: u64,
    min_acked: usize,
    run: (usize, Vec<String>, String),
) {
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
pub(crate) async fn assert_caught(failpoint: &str, what: &str) {
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
pub(crate) fn installed_snapshot_index(log: &str) -> Option<(u64, bool)> {
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
