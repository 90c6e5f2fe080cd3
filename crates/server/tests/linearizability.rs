//! Concurrent clients on random nodes of a real 3-node cluster, with the leader killed in the
//! middle, and the history checked for linearizability against the per-key model of this
//! store (a timestamped register with the 409 rule).

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Cluster, Server};
use serde_json::{json, Value};
use statemanager_lincheck::{check, Input, Operation, Output, Verdict};

/// A tiny xorshift generator (tests need variety, not quality).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn micros(v: &Value) -> Option<u64> {
    v.as_f64().map(|s| (s * 1_000_000.0).round() as u64)
}

/// Six clients for 6 s from `start`, each waiting `pace` before every operation.
fn six_clients(
    urls: &Arc<Mutex<Vec<String>>>,
    start: Instant,
    pace: Duration,
    history: &Arc<Mutex<Vec<Operation>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let until = start + Duration::from_secs(6);
    (0..6)
        .map(|id| {
            tokio::spawn(client(
                id,
                urls.clone(),
                start,
                until,
                pace,
                history.clone(),
            ))
        })
        .collect()
}

/// The single node answers so fast that six unpaced clients spend their 400 operations (a
/// history the checker can judge) before its restart; paced, they span it.
const SINGLE_NODE_PACE: Duration = Duration::from_millis(12);

async fn client(
    id: u64,
    urls: Arc<Mutex<Vec<String>>>,
    start: Instant,
    until: Instant,
    pace: Duration,
    history: Arc<Mutex<Vec<Operation>>>,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (id + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut n = 0;
    while Instant::now() < until && n < 400 {
        n += 1;
        tokio::time::sleep(pace).await;
        let key = format!("k{}", rng.below(3));
        let url = {
            let urls = urls.lock().unwrap();
            urls[rng.below(urls.len() as u64) as usize].clone()
        };
        let is_store = rng.below(2) == 0;
        let call = start.elapsed().as_nanos() as u64;
        if is_store {
            let data = format!("c{id}-{n}");
            // A third of the stores carry their own timestamp, up to 2 s in the past, so the
            // 409 rule is exercised across nodes.
            let ts = (rng.below(3) == 0).then(|| {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_micros() as u64;
                now - rng.below(2_000_000)
            });
            let mut body = json!({"namespace":"lin","key":key,"data":data,"ttl":3600});
            if let Some(t) = ts {
                body["timestamp"] = json!(t as f64 / 1_000_000.0);
            }
            let result = http
                .post(format!("{url}/store_data"))
                .body(body.to_string())
                .send()
                .await;
            let ret = start.elapsed().as_nanos() as u64;
            let output = match result {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let v: Value = r.json().await.unwrap_or(Value::Null);
                    match (status, v["error"]["code"].as_str()) {
                        (200, _) => match micros(&v["timestamp"]) {
                            Some(t) => Output::Stored { timestamp: t },
                            None => Output::Unknown,
                        },
                        (409, _) => match micros(&v["error"]["stored_timestamp"]) {
                            Some(t) => Output::Conflict { stored: t },
                            None => Output::Unknown,
                        },
                        // Refused before proposing: it did not happen; leave it out.
                        (503, Some("no_quorum")) | (503, Some("unavailable")) => continue,
                        _ => Output::Unknown,
                    }
                }
                // A refused connection (the killed node) never delivered the request: it did
                // not happen. Counting it as unknown made a third of the history unknown after
                // the kill, and the search inconclusive on a loaded machine.
                Err(e) if e.is_connect() => continue,
                Err(_) => Output::Unknown,
            };
            history.lock().unwrap().push(Operation {
                key,
                call,
                ret,
                input: Input::Store {
                    data,
                    timestamp: ts,
                },
                output,
            });
        } else {
            let result = http
                .post(format!("{url}/fetch_data"))
                .body(json!({"namespace":"lin","key":key}).to_string())
                .send()
                .await;
            let ret = start.elapsed().as_nanos() as u64;
            let output = match result {
                Ok(r) if r.status() == 404 => Output::NotFound,
                Ok(r) if r.status() == 200 => {
                    let v: Value = r.json().await.unwrap_or(Value::Null);
                    match (v["data"].as_str(), micros(&v["timestamp"])) {
                        (Some(d), Some(t)) => Output::Found {
                            data: d.to_string(),
                            timestamp: t,
                        },
                        _ => continue,
                    }
                }
                // A failed read has no effect: leave it out.
                _ => continue,
            };
            history.lock().unwrap().push(Operation {
                key,
                call,
                ret,
                input: Input::Fetch,
                output,
            });
        }
        tokio::time::sleep(Duration::from_millis(rng.below(8))).await;
    }
}

/// One run: a fresh cluster, six clients for 6 s, the leader killed after 2 s; the history's
/// verdict (an inconclusive search is repeated with ten times the budget).
async fn leader_kill_scenario() -> (usize, Verdict) {
    let mut cluster = Cluster::start(3, "");
    let leader = cluster.wait_leader().await;
    let urls = Arc::new(Mutex::new(
        (0..3)
            .map(|i| cluster.node(i).base.clone())
            .collect::<Vec<_>>(),
    ));
    let history = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let clients = six_clients(&urls, start, Duration::ZERO, &history);
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.kill9(leader);
    // Clients that pick the dead node see connection errors (unknown for stores, dropped
    // reads); the others go on through the new leader.
    for c in clients {
        c.await.unwrap();
    }
    judge(&history)
}

/// One node, six clients for 6 s; after 2 s the node is killed with kill -9 and started again
/// at once on the same data dir (the clients follow it to its new port): across the restart
/// (reads right after it wait for the new term's first entry), the history must stay
/// linearizable.
async fn single_node_restart_scenario() -> (usize, Verdict) {
    let mut server = Server::start("");
    server.wait_ready().await;
    let urls = Arc::new(Mutex::new(vec![server.base.clone()]));
    let history = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let clients = six_clients(&urls, start, SINGLE_NODE_PACE, &history);
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.restart();
    *urls.lock().unwrap() = vec![server.base.clone()];
    let restarted = start.elapsed().as_nanos() as u64;
    for c in clients {
        c.await.unwrap();
    }
    let reads_after = history
        .lock()
        .unwrap()
        .iter()
        .filter(|o| o.call > restarted && matches!(o.output, Output::Found { .. }))
        .count();
    assert!(
        reads_after >= 20,
        "the restarted node served reads: {reads_after}"
    );
    judge(&history)
}

/// The verdict on a history (an inconclusive search is repeated with ten times the budget),
/// after checking that it means something.
fn judge(history: &Mutex<Vec<Operation>>) -> (usize, Verdict) {
    let history = history.lock().unwrap().clone();
    let stores = history
        .iter()
        .filter(|o| matches!(o.input, Input::Store { .. }))
        .count();
    let conflicts = history
        .iter()
        .filter(|o| matches!(o.output, Output::Conflict { .. }))
        .count();
    let unknown = history
        .iter()
        .filter(|o| o.output == Output::Unknown)
        .count();
    eprintln!(
        "history: {} operations ({stores} stores, {conflicts} conflicts, {unknown} unknown outcomes) on 3 keys",
        history.len()
    );
    assert!(
        history.len() > 100,
        "a meaningful history: {}",
        history.len()
    );
    assert!(conflicts > 0, "the 409 rule was exercised");
    // A search that runs out of budget concludes nothing (many unknown outcomes around the
    // kill widen it): look again with ten times the budget. Only a definite answer counts.
    let verdict = match check(&history, 2_000_000) {
        Verdict::Inconclusive { .. } => check(&history, 20_000_000),
        verdict => verdict,
    };
    if verdict != Verdict::Linearizable {
        let path = std::env::temp_dir().join(format!("lincheck-{}.txt", std::process::id()));
        let mut ops = history.clone();
        ops.sort_by_key(|o| o.call);
        let text: String = ops.iter().map(|o| format!("{o:?}\n")).collect();
        let _ = std::fs::write(&path, text);
        eprintln!(
            "WARNING: {verdict:?}; history written to {}",
            path.display()
        );
    }
    (history.len(), verdict)
}

/// The history of one run must be linearizable. (Twice in a dozen full-suite runs it was not,
/// until the cause was found: a store without a timestamp could be stamped equal to the item
/// it replaced and get a 409 — see `concurrent_server_stamped_stores_never_conflict` in
/// `cluster.rs`.) A failing history is written to a temporary file for analysis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histories_with_a_leader_kill_are_linearizable() {
    let (len, verdict) = leader_kill_scenario().await;
    assert_eq!(
        verdict,
        Verdict::Linearizable,
        "history of {len} operations"
    );
}

/// The same check on one node killed and restarted under load (see
/// `single_node_restart_scenario`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_killed_and_restarted_stays_linearizable() {
    let (len, verdict) = single_node_restart_scenario().await;
    assert_eq!(
        verdict,
        Verdict::Linearizable,
        "history of {len} operations"
    );
}
