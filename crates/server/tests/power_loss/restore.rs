//! The offline `statemanager restore`, and `statemanager backup` writing onto the mount,
//! stopped at every change.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use statemanager_powercut::Mount;

use crate::common::{self, Server};
use crate::harness::{check, client, mount_on, start_ready, store_keys, Ledger};
use crate::sweep::{stop_offline_command, sweep_done, sweep_plan};

/// Runs `statemanager restore FILE` into `data` (a one-member cluster of the default
/// configuration): whether it succeeded, and what it printed.
pub(crate) fn restore_into(file: &Path, work: &Path, data: &Path) -> (bool, String) {
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
    let tmp = tempfile::tempdir().expect("tempdir");
    // The backup, from a node off the power-cut file system.
    let (source, ledger) = source_node(30).await;
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
pub(crate) fn backup_in(cwd: &Path, server: &str, name: &str) -> (bool, String) {
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
/// names no directory), and one stopped at any of its changes reports a failure (at the last,
/// the directory's sync, saying so) and leaves either no file of that name or the whole backup,
/// which restores every item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_reported_written_survives_a_cut_and_one_stopped_at_any_change_fails() {
    let (seed, stride, offset) = sweep_plan(1);
    let tmp = tempfile::tempdir().expect("tempdir");
    let (source, ledger) = source_node(20).await;

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
        let (what, out) = stop_offline_command(&mount, (seed, k, changes), "backup", || {
            backup_in(&dir, &source.base, "items.smbackup")
        });
        if k + 1 == changes {
            // The last change is the sync of the directory that holds the renamed file.
            assert!(
                out.contains("but syncing its directory") && out.contains("failed"),
                "{what}: the failed directory sync's message: {out}"
            );
        }
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

/// A node off the power-cut file system holding `keys` acknowledged stores, and their ledger.
async fn source_node(keys: usize) -> (Server, Ledger) {
    let source = Server::start("");
    source.wait_ready().await;
    let mut ledger = Ledger::default();
    store_keys(
        &client(),
        &source.base,
        0..keys,
        Duration::ZERO,
        &mut ledger,
        || false,
    )
    .await;
    assert_eq!(ledger.acked_count(), keys);
    (source, ledger)
}

/// A new directory `name` at the top of `mount`, its entry made durable.
pub(crate) fn durable_dir(mount: &Mount, name: &str) -> PathBuf {
    let dir = mount.path().join(name);
    std::fs::create_dir(&dir).expect("a directory on the mount");
    std::fs::File::open(mount.path())
        .and_then(|top| top.sync_all())
        .expect("the mount's top directory synced");
    dir
}

/// Restores `file` into a fresh data directory under `work` (off the power-cut file system) and
/// checks that the node then holds every item of `ledger`.
pub(crate) async fn restores_every_item(file: &Path, work: &Path, ledger: &Ledger, what: &str) {
    let data = work.join("data");
    let (ok, out) = restore_into(file, work, &data);
    assert!(ok, "{what}: restoring the backup: {out}");
    let server = start_ready(work, &data, "", &[])
        .await
        .unwrap_or_else(|why| panic!("{what}: the restored node: {why}"));
    let found = check(&server.base, ledger).await;
    assert!(found.lost.is_empty(), "{what}: lost {:?}", found.lost);
}
