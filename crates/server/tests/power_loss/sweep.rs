//! One node's history replayed with the power going off after each of its changing requests
//! in turn: the sweep's plan and report, and an offline command stopped at a change.

use std::path::Path;
use std::time::{Duration, Instant};

use statemanager_powercut::Mount;

use crate::common::Server;
use crate::harness::{
    check, client, mount_on, seed_from_env_or, start_ready, store, store_keys, Ledger, BUSY_CONFIG,
};

/// A history to stop at every changing request: a first start with `config` and `env`, then
/// `stores` stores one after the other, `pause` apart.
pub(crate) struct History<'a> {
    pub(crate) config: &'a str,
    pub(crate) env: &'a [(&'a str, &'a std::ffi::OsStr)],
    pub(crate) stores: usize,
    pub(crate) pause: Duration,
}

/// Runs `history` on `data`, with the power going off after `budget` changing requests
/// (none: it stays on), until its stores are done, one has failed, the server has stopped on
/// a failed write, or it has run a moment after the power went (bounded); then kills it. The
/// stores acknowledged go into `ledger`.
pub(crate) async fn run_history(
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

/// Arms `mount` to lose its power after `budget` changing requests (none: it stays on);
/// returns whether the power is still on.
pub(crate) fn arm_power(mount: &Mount, budget: Option<u64>) -> impl Fn() -> bool + '_ {
    let unpowered = mount.counters().unpowered;
    if let Some(budget) = budget {
        mount.power_off_after(budget);
    }
    move || mount.counters().unpowered == unpowered
}

/// Which stops a sweep makes: `(seed, stride, offset)`. The stride is `POWERCUT_STRIDE` or
/// `default_stride`; the offset is drawn from `POWERCUT_SEED` or, unset, the clock (so the
/// stops move from run to run, and the printed seed replays them). Prints the plan.
pub(crate) fn sweep_plan(default_stride: u64) -> (u64, u64, u64) {
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
    let offset = seed % stride;
    eprintln!("every {stride} stop from {offset} (POWERCUT_SEED={seed} replays it)");
    (seed, stride, offset)
}

/// Says how many stops a sweep made, and in how long.
pub(crate) fn sweep_done(changes: u64, (seed, stride, offset): (u64, u64, u64), started: Instant) {
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
pub(crate) async fn stop_at_every_change(history: &History<'_>, stride: u64) {
    let (seed, stride, offset) = sweep_plan(stride);
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

/// Runs an offline `command` with the power going off after `k` of its `changes` changing
/// requests, then cuts (strictly for an even `k`, by `seed` otherwise). The command must have
/// failed. Returns the stop's description for the checks after it, and what the command
/// printed.
pub(crate) fn stop_offline_command(
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
