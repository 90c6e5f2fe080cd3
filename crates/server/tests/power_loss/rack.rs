//! Three nodes on one mount (a rack that loses power at once): their formation and a
//! follower's catch-up by snapshot, stopped at every change.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use statemanager_powercut::Mount;

use crate::common::{self, Server};
use crate::harness::{any_ready, check, client, mount_on, store, store_keys, Ledger, BUSY_CONFIG};
use crate::membership::{grow_rack, rack_growth_history, rack_shrink_history, shrink_rack};
use crate::sweep::{arm_power, sweep_done, sweep_plan};

/// Three nodes on the power-cut file system, configured to form one cluster.
pub(crate) struct Rack {
    /// Each node's working directory (configuration, log, address file), off the mount.
    pub(crate) works: Vec<PathBuf>,
    /// Each node's data directory, on the mount.
    pub(crate) datas: Vec<PathBuf>,
    /// Each node's configuration text.
    pub(crate) configs: Vec<String>,
    /// Each node's peer address.
    pub(crate) peer_addrs: Vec<String>,
}

impl Rack {
    /// Three nodes configured to form one cluster (`peers`).
    pub(crate) fn new(tmp: &Path, mount: &Mount, name: &str, extra: &str) -> Rack {
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
    pub(crate) fn to_grow(tmp: &Path, mount: &Mount, name: &str, extra: &str) -> Rack {
        Rack::with_configs(tmp, mount, name, |i, peer_addrs| {
            let join = if i == 0 { "" } else { "join: true\n" };
            format!(
                "node_id: {}\npeer_listen: {}\n{join}{extra}",
                i + 1,
                peer_addrs[i]
            )
        })
    }

    pub(crate) fn with_configs(
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
    pub(crate) fn launch(&self) -> Vec<Server> {
        self.launch_first(3)
    }

    /// Launches nodes 1 to `n` together.
    pub(crate) fn launch_first(&self, n: usize) -> Vec<Server> {
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
pub(crate) async fn store_through_any(
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
pub(crate) async fn rack_history(
    mount: &Mount,
    rack: &Rack,
    stores: usize,
    budget: Option<u64>,
) -> Ledger {
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
pub(crate) enum RackHistory {
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
    pub(crate) fn rack(self, tmp: &Path, mount: &Mount, name: &str) -> Rack {
        match self {
            RackHistory::Growth => Rack::to_grow(tmp, mount, name, self.config()),
            _ => Rack::new(tmp, mount, name, self.config()),
        }
    }

    /// The nodes' configuration beside their ids and peers.
    pub(crate) fn config(self) -> &'static str {
        match self {
            RackHistory::Formation | RackHistory::Growth | RackHistory::Shrink => BUSY_CONFIG,
            // Snapshots every ten entries that purge the whole log.
            RackHistory::CatchUp => {
                "snapshot_logs: 10\nsnapshot_keep_logs: 0\nmax_persistent_data_items: 100000\n"
            }
        }
    }
}

pub(crate) async fn run_rack(
    mount: &Mount,
    rack: &Rack,
    history: RackHistory,
    budget: Option<u64>,
) -> Ledger {
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
pub(crate) async fn stop_rack_at_every_change(history: RackHistory, stride: u64) {
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
    eprintln!("{history:?}: {changes} changes");
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

/// Ends a rack history: once the power went, a moment for the nodes to meet it; then every
/// node killed.
pub(crate) async fn end_rack_history(servers: &mut [Server], powered: impl Fn() -> bool) {
    if !powered() {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for server in servers.iter_mut() {
        server.kill9();
    }
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
pub(crate) async fn rack_catch_up_history(
    mount: &Mount,
    rack: &Rack,
    budget: Option<u64>,
) -> Ledger {
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
