//! How concurrent stores are grouped into batches (one log entry, one fsync each), against
//! the real binary: the writer's gather (`write_gather_ms`) joins callers that store in turn
//! into one batch, and never makes a caller wait for writes that do not come; a node that
//! leads alone writes a batch's entry in place when only that batch is being served
//! (`inline_write_max_fsync_us`).

mod common;

use std::time::{Duration, Instant};

use common::{get_text, post, sample, Server};
use serde_json::json;

/// `callers` clients store `rounds` times each, every one waiting for its answer before it
/// stores again; returns the server's mean stores per batch.
async fn mean_batch_of_callers_storing_in_turn(s: &Server, callers: usize, rounds: usize) -> f64 {
    let before = get_text(&reqwest::Client::new(), &s.url("/metrics")).await;
    let tasks: Vec<_> = (0..callers)
        .map(|caller| {
            let url = s.url("/store_data");
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                for round in 0..rounds {
                    // 40 keys per caller, stored again past round 40: the default item
                    // limit (1,024) holds every caller's keys.
                    let key = format!("c{caller}-{}", round % 40);
                    let body = json!({"namespace":"turns","key":key,"data":"x","ttl":600});
                    let (st, got) = post(&client, &url, body).await;
                    assert_eq!(st, 200, "{got}");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("caller task");
    }
    let after = get_text(&reqwest::Client::new(), &s.url("/metrics")).await;
    let count = sample(&after, "statemanager_batch_ops_count")
        - sample(&before, "statemanager_batch_ops_count");
    let ops = sample(&after, "statemanager_batch_ops_sum")
        - sample(&before, "statemanager_batch_ops_sum");
    assert_eq!(ops as usize, callers * rounds, "{after}");
    ops / count
}

/// The ends of the writer's gathers so far, from `/metrics`: complete, partial, missed, idle.
async fn gather_ends(s: &Server) -> [f64; 4] {
    let metrics = get_text(&reqwest::Client::new(), &s.url("/metrics")).await;
    gather_ends_in(&metrics)
}

/// The ends of the writer's gathers in one scrape of `/metrics`.
fn gather_ends_in(metrics: &str) -> [f64; 4] {
    ["complete", "partial", "missed", "idle"].map(|end| {
        sample(
            metrics,
            &format!("statemanager_write_gather_total{{end=\"{end}\"}}"),
        )
    })
}

/// Callers that store in turn split, without the gather, into groups that take turns (about
/// half of them per batch, at most); with it they share one batch.
///
/// A run's mean also counts the batches where the callers are out of step: the first ones to
/// arrive make a batch of their own, and at the end the callers that are done do not come
/// back, so the last gathers end at their deadline (a miss in most runs of this test on an
/// idle machine; means of 12–15.6 stores per batch with 40 rounds). On a loaded machine a
/// caller late by more than the deadline (100 ms) splits the callers too (one CI run: 11.0
/// with no miss). So a run of 80 rounds (means of 14.2–15.8 here, idle or beside two busy
/// loops) must reach 10 stores per batch, above what groups taking turns can (8), and is
/// measured again, up to three times, when it does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callers_storing_in_turn_share_one_batch() {
    const CALLERS: usize = 16;
    const ROUNDS: usize = 80;
    const SHARED: f64 = 10.0;
    const ATTEMPTS: usize = 3;
    let gathered = Server::start("write_gather_ms: 100\n");
    gathered.wait_ready().await;
    let mut runs = Vec::new();
    for _ in 0..ATTEMPTS {
        let before = gather_ends(&gathered).await;
        let mean = mean_batch_of_callers_storing_in_turn(&gathered, CALLERS, ROUNDS).await;
        let after = gather_ends(&gathered).await;
        let ends: [f64; 4] = std::array::from_fn(|i| after[i] - before[i]);
        runs.push((mean, ends));
        if mean >= SHARED {
            break;
        }
    }
    let alone = Server::start("write_gather_ms: 0\n");
    alone.wait_ready().await;
    let without_gather = mean_batch_of_callers_storing_in_turn(&alone, CALLERS, ROUNDS).await;
    let with_gather = runs.last().map_or(0.0, |run| run.0);
    assert!(
        with_gather >= SHARED && with_gather > without_gather,
        "mean stores per batch with the gather, and its gathers' ends (complete, partial, \
         missed, idle), per run: {runs:?}; {without_gather:.1} without"
    );

    let metrics = get_text(&reqwest::Client::new(), &gathered.url("/metrics")).await;
    assert!(
        sample(
            &metrics,
            "statemanager_write_gather_total{end=\"complete\"}"
        ) > 0.0,
        "{metrics}"
    );
    // Every gather's wait is timed. Once the last one has passed its deadline (100 ms), one
    // scrape holds as many timed waits as ended ones, and their mean is below the deadline
    // plus a loaded machine's delay (a generous bound).
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let metrics = get_text(&reqwest::Client::new(), &gathered.url("/metrics")).await;
    let ends: f64 = gather_ends_in(&metrics).iter().sum();
    let timed = sample(&metrics, "statemanager_write_gather_seconds_count");
    assert_eq!(timed, ends, "{metrics}");
    let waited = sample(&metrics, "statemanager_write_gather_seconds_sum");
    assert!(waited > 0.0 && waited / timed < 0.2, "{metrics}");
    let metrics = get_text(&reqwest::Client::new(), &alone.url("/metrics")).await;
    assert!(
        !metrics.contains("statemanager_write_gather_total"),
        "the gather is off: {metrics}"
    );
}

/// A caller alone is never held back (a batch below eight writes is proposed at once). One
/// that stored beside callers that then stop waits for them at most once: the miss pauses
/// the gather.
#[tokio::test]
async fn a_caller_never_waits_for_callers_that_do_not_come_back() {
    const DEADLINE_MS: u64 = 100;
    let s = Server::start(&format!("write_gather_ms: {DEADLINE_MS}\n"));
    s.wait_ready().await;
    let client = reqwest::Client::new();
    let url = s.url("/store_data");
    let store = |key: String| {
        let body = json!({"namespace":"alone","key":key,"data":"x","ttl":600});
        let (client, url) = (client.clone(), url.clone());
        async move { post(&client, &url, body).await }
    };
    let missed = |metrics: &str| sample(metrics, "statemanager_write_gather_total{end=\"missed\"}");

    let started = Instant::now();
    for round in 0..10 {
        let (st, got) = store(format!("solo-{round}")).await;
        assert_eq!(st, 200, "{got}");
    }
    let metrics = get_text(&client, &s.url("/metrics")).await;
    assert!(
        !metrics.contains("statemanager_write_gather_total"),
        "no gather planned: {metrics}"
    );
    // Ten waits for the deadline would take a second.
    assert!(
        started.elapsed() < Duration::from_millis(9 * DEADLINE_MS),
        "{:?} for ten stores one after another",
        started.elapsed()
    );

    // Sixteen callers store together once; then one goes on alone.
    let together: Vec<_> = (0..16)
        .map(|i| {
            let (client, url) = (client.clone(), s.url("/store_data"));
            tokio::spawn(async move {
                let body = json!({"namespace":"alone","key":format!("together-{i}"),
                                  "data":"x","ttl":600});
                post(&client, &url, body).await
            })
        })
        .collect();
    for task in together {
        let (st, got) = task.await.expect("store task");
        assert_eq!(st, 200, "{got}");
    }
    // How the sixteen were batched depends on when each arrived (on a loaded machine some
    // come late, and a wait that sees them ends `partial`); what is checked is what the one
    // caller left meets: at most the one wait the last of those batches began, ending without
    // the others (then the gather pauses).
    let gathers = |metrics: &str| {
        ["complete", "partial", "missed", "idle"]
            .iter()
            .map(|end| {
                sample(
                    metrics,
                    &format!("statemanager_write_gather_total{{end=\"{end}\"}}"),
                )
            })
            .sum::<f64>()
    };
    let before = gathers(&get_text(&client, &s.url("/metrics")).await);
    let started = Instant::now();
    let mut after_first = 0.0;
    for round in 0..10 {
        let (st, got) = store(format!("after-{round}")).await;
        assert_eq!(st, 200, "{got}");
        if round == 0 {
            // A wait the burst's last batch began has ended by now (its end is counted
            // before the batch holding this store is proposed).
            after_first = gathers(&get_text(&client, &s.url("/metrics")).await);
        }
    }
    let metrics = get_text(&client, &s.url("/metrics")).await;
    assert!(missed(&metrics) <= 1.0, "{metrics}");
    assert!(
        after_first - before <= 1.0,
        "the caller left waited more than once: {metrics}"
    );
    assert_eq!(
        gathers(&metrics),
        after_first,
        "a caller storing alone never starts a wait: {metrics}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(9 * DEADLINE_MS),
        "{:?} for ten stores after the others stopped",
        started.elapsed()
    );
}

/// Callers storing in turn on a node that leads alone: their batches are written in place
/// (the Raft thread writes and fsyncs the entry itself, no hand-off to the log writer
/// thread), every store is acknowledged and reads back, and with the bound at 0 the log writer
/// thread writes everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lone_leader_writes_its_batches_in_place_and_the_bound_0_turns_it_off() {
    const CALLERS: usize = 8;
    const ROUNDS: usize = 20;
    // A bound far above any disk's fsync here, so a slow CI disk still qualifies.
    let inline = Server::start("inline_write_max_fsync_us: 1000000\n");
    inline.wait_ready().await;
    mean_batch_of_callers_storing_in_turn(&inline, CALLERS, ROUNDS).await;
    let client = reqwest::Client::new();
    let metrics = get_text(&client, &inline.url("/metrics")).await;
    let in_place = sample(&metrics, "statemanager_wal_inline_appends_total");
    assert!(in_place > 0.0, "no batch written in place: {metrics}");
    for caller in 0..CALLERS {
        let key = format!("c{caller}-{}", ROUNDS - 1);
        let (st, got) = post(
            &client,
            &inline.url("/fetch_data"),
            json!({"namespace":"turns","key":key}),
        )
        .await;
        assert_eq!(st, 200, "{key}: {got}");
    }

    let off = Server::start("inline_write_max_fsync_us: 0\n");
    off.wait_ready().await;
    mean_batch_of_callers_storing_in_turn(&off, CALLERS, ROUNDS).await;
    let metrics = get_text(&client, &off.url("/metrics")).await;
    assert_eq!(
        sample(&metrics, "statemanager_wal_inline_appends_total"),
        0.0,
        "{metrics}"
    );
}
