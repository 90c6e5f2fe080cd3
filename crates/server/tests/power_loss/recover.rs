//! The offline `statemanager recover` of a lost quorum's survivor, stopped at every change.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::{self, Server};
use crate::harness::{check, client, mount_on, start_ready, start_ready_within, store, Ledger};
use crate::rack::{rack_history, Rack};
use crate::sweep::{stop_offline_command, sweep_done, sweep_plan};

/// Runs `statemanager recover` on `data` with the node configuration `config` (in `work`).
pub(crate) fn recover(work: &Path, data: &Path, config: &str) -> (bool, String) {
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
pub(crate) fn items_recovered(out: &str) -> u64 {
    out.split_once("cluster: ")
        .and_then(|(_, rest)| rest.split_once(" items"))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no item count in {out:?}"))
}

/// Starts the one-member cluster a recovery left in `data` and reads which of `ledger`'s
/// keys it holds.
pub(crate) async fn keys_after_recovery(
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
pub(crate) async fn held_keys(server: &Server, ledger: &Ledger) -> Vec<String> {
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

/// A lost quorum's offline recovery (`statemanager recover`: the survivor's log replayed onto
/// its snapshot, a new snapshot of a one-member cluster, the log purged), stopped at every
/// request that changes the file system, each stop cut: recovering again succeeds, and the
/// node then serves the same stores as one recovered without a stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_stopped_at_every_change_recovers_again() {
    let (seed, stride, offset) = sweep_plan(1);
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
