//! The rack grown from one node by `statemanager cluster add` and shrunk by `cluster
//! remove`, stopped at every change.

use std::time::{Duration, Instant};

use statemanager_powercut::Mount;

use crate::common;
use crate::harness::{any_ready, client, Ledger};
use crate::rack::{
    end_rack_history, stop_rack_at_every_change, store_through_any, Rack, RackHistory,
};
use crate::sweep::arm_power;

/// `statemanager cluster --peer PEER ARGS…` run to its end (bounded: killed after 20 s):
/// whether it succeeded, and what it printed.
pub(crate) fn cluster_cli(peer: &str, args: &[&str]) -> (bool, String) {
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
pub(crate) fn rack_voters(rack: &Rack) -> Vec<u64> {
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
pub(crate) fn add_rack_members(rack: &Rack, voters: &[u64]) -> bool {
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
pub(crate) async fn rack_growth_history(mount: &Mount, rack: &Rack, budget: Option<u64>) -> Ledger {
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
pub(crate) async fn rack_shrink_history(mount: &Mount, rack: &Rack, budget: Option<u64>) -> Ledger {
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
pub(crate) async fn shrink_rack(rack: &Rack, what: &str) {
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
pub(crate) async fn grow_rack(rack: &Rack, what: &str) {
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
