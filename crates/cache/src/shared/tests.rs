//! The shared cache over an in-memory "network" of three nodes, with a manual wall clock and
//! tokio's paused time.

use std::collections::HashMap;
use std::sync::Mutex;

use statemanager_core::{ManualClock, Timestamp};

use super::*;
use crate::owner::owner;
use crate::CacheLimits;

const T0: u64 = 1_700_000_000;
const TIMEOUT: Duration = Duration::from_millis(500);
const REFRESH: Duration = Duration::from_secs(5);

/// Each node's share; `None`: the node is dead (calls to it hang until their timeout).
/// `routers`: each node's SharedCache, which answers the calls forwarded to it.
#[derive(Default)]
struct Net {
    caches: Mutex<HashMap<u64, Option<Arc<Cache>>>>,
    routers: Mutex<HashMap<u64, std::sync::Weak<SharedCache>>>,
    members: Vec<u64>,
}

impl Net {
    fn cache(&self, node: u64) -> Option<Arc<Cache>> {
        self.caches.lock().unwrap()[&node].clone()
    }

    fn router(&self, node: u64) -> Option<Arc<SharedCache>> {
        self.cache(node)?;
        self.routers.lock().unwrap().get(&node)?.upgrade()
    }
}

struct Peers(Arc<Net>);

impl CachePeers for Peers {
    fn members(&self) -> Vec<u64> {
        self.0.members.clone()
    }

    fn get(
        &self,
        node: u64,
        r: ForwardedGet,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<GetOutcome, NoAnswer>> {
        let router = self.0.router(node);
        Box::pin(async move {
            let Some(router) = router else {
                tokio::time::sleep(timeout).await;
                return Err(NoAnswer("timed out".into()));
            };
            tokio::time::timeout(timeout, router.answer_get(r))
                .await
                .map_err(|_| NoAnswer("timed out".into()))
        })
    }

    fn set(
        &self,
        node: u64,
        r: ForwardedSet,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Result<(), CacheError>, NoAnswer>> {
        let router = self.0.router(node);
        Box::pin(async move {
            match router {
                Some(router) => Ok(router.answer_set(r)),
                None => {
                    tokio::time::sleep(timeout).await;
                    Err(NoAnswer("timed out".into()))
                }
            }
        })
    }
}

struct Cluster {
    net: Arc<Net>,
    nodes: Vec<Arc<SharedCache>>,
    clock: Arc<ManualClock>,
}

/// Node `id`'s SharedCache over its current share, registered with the network.
fn router(net: &Arc<Net>, id: u64, clock: &Arc<ManualClock>) -> Arc<SharedCache> {
    let router = Arc::new(SharedCache::new(
        net.cache(id).unwrap(),
        id,
        Arc::new(Peers(net.clone())),
        clock.clone(),
        TIMEOUT,
        REFRESH,
    ));
    net.routers
        .lock()
        .unwrap()
        .insert(id, Arc::downgrade(&router));
    router
}

fn local(clock: &Arc<ManualClock>) -> Arc<Cache> {
    Arc::new(Cache::new(
        CacheLimits {
            max_cache_size: 1 << 20,
            max_item_size: 1000,
        },
        clock.clone(),
    ))
}

fn cluster() -> Cluster {
    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(T0 * 1_000_000)));
    let net = Arc::new(Net {
        caches: Mutex::new((1..=3).map(|id| (id, Some(local(&clock)))).collect()),
        members: vec![1, 2, 3],
        ..Net::default()
    });
    let nodes = (1..=3).map(|id| router(&net, id, &clock)).collect();
    Cluster { net, nodes, clock }
}

impl Cluster {
    fn node(&self, id: u64) -> &SharedCache {
        &self.nodes[(id - 1) as usize]
    }

    /// A key owned by `owner`.
    fn key_of(&self, owner_id: u64) -> String {
        (0..)
            .map(|i| format!("key-{i}"))
            .find(|k| owner("n", k, &self.net.members) == Some(owner_id))
            .unwrap()
    }
}

#[tokio::test(start_paused = true)]
async fn a_value_set_through_one_node_is_read_through_every_node_with_its_expiry() {
    let c = cluster();
    for owner_id in 1..=3 {
        let key = c.key_of(owner_id);
        let through = owner_id % 3 + 1; // not the owner
        c.node(through).set("n", &key, "v", 60).await.unwrap();
        for id in 1..=3 {
            let got = c.node(id).get("n", &key, 0).await;
            assert_eq!(got.data.as_deref(), Some("v"), "node {id}");
            assert_eq!(got.expiry, (T0 + 60) as i64);
        }
        // Held once, by the owner.
        for id in 1..=3 {
            let held = c
                .net
                .cache(id)
                .unwrap()
                .get("n", &key, 0)
                .await
                .data
                .is_some();
            assert_eq!(held, id == owner_id, "node {id} for {key}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_lock_is_cluster_wide_and_a_set_anywhere_wakes_waiters_everywhere() {
    let c = Arc::new(cluster());
    let key = c.key_of(2);
    let first = c.node(3).get("n", &key, 30).await;
    assert!(first.lock, "the first caller computes");
    let mut waiters = Vec::new();
    for id in [1, 2, 3] {
        let (c, key) = (c.clone(), key.clone());
        waiters.push(tokio::spawn(async move {
            let got = c.node(id).get("n", &key, 20).await;
            (got, Instant::now())
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let set_at = Instant::now();
    c.node(1).set("n", &key, "42", 60).await.unwrap();
    for w in waiters {
        let (got, at) = w.await.unwrap();
        assert!(!got.lock);
        assert_eq!(got.data.as_deref(), Some("42"));
        assert_eq!(at, set_at, "woken by the set, not a deadline");
    }
}

#[tokio::test(start_paused = true)]
async fn an_abandoned_lock_expires_for_the_whole_cluster_and_wakes_its_waiters() {
    let c = Arc::new(cluster());
    let key = c.key_of(3);
    let started = Instant::now();
    // The locker (through node 1) asks with a 2 s wait: its lock lives 2 s, and it never sets.
    assert!(c.node(1).get("n", &key, 2).await.lock);
    let waiters: Vec<_> = [2, 3]
        .into_iter()
        .map(|id| {
            let (c, key) = (c.clone(), key.clone());
            tokio::spawn(async move { (c.node(id).get("n", &key, 20).await, Instant::now()) })
        })
        .collect();
    let mut lockers = 0;
    for w in waiters {
        let (got, at) = w.await.unwrap();
        // Woken when the lock expired, not at their own 20 s deadline: one of them computes,
        // the other waits on its new lock until its own deadline.
        if got.lock {
            lockers += 1;
            assert_eq!(at - started, Duration::from_secs(2));
        } else {
            assert_eq!(got, GetOutcome::nothing());
        }
    }
    assert_eq!(lockers, 1);
}

#[tokio::test(start_paused = true)]
async fn a_long_wait_through_another_node_is_waited_in_slices_and_still_woken_at_once() {
    let c = Arc::new(cluster());
    let key = c.key_of(1);
    assert!(c.node(1).get("n", &key, 60).await.lock);
    let waiter = {
        let (c, key) = (c.clone(), key.clone());
        tokio::spawn(async move {
            let got = c.node(2).get("n", &key, 30).await;
            (got, Instant::now())
        })
    };
    // Past two slices of the waiter's forwarded wait.
    tokio::time::sleep(WAIT_SLICE * 2 + Duration::from_secs(3)).await;
    let set_at = Instant::now();
    c.node(3).set("n", &key, "late", 60).await.unwrap();
    let (got, at) = waiter.await.unwrap();
    assert_eq!(got.data.as_deref(), Some("late"));
    assert_eq!(at, set_at);
    assert_eq!(c.node(2).peer_state(1), PeerState::Up);
    // A waiter whose whole wait passes gets nothing, at its own deadline.
    let key = c.key_of(3);
    assert!(c.node(3).get("n", &key, 60).await.lock);
    let started = Instant::now();
    let got = c.node(1).get("n", &key, 25).await;
    assert_eq!(got, GetOutcome::nothing());
    assert_eq!(Instant::now() - started, Duration::from_secs(25));
}

#[tokio::test(start_paused = true)]
async fn a_dead_owner_costs_one_timeout_then_its_keys_go_to_the_next_node_and_come_back() {
    let mut c = cluster();
    let key = c.key_of(1);
    c.node(2).set("n", &key, "old", 600).await.unwrap();
    let order = rank("n", &key, &c.net.members);
    let (second, third) = (order[1], order[2]);
    // Node 1 dies (it would come back empty).
    c.net.caches.lock().unwrap().insert(1, None);

    // A plain lookup through node `third`: the owner does not answer within the timeout,
    // the next node (empty) answers a miss; never more than wait + timeout.
    let started = Instant::now();
    let got = c.node(third).get("n", &key, 0).await;
    assert_eq!(got, GetOutcome::nothing());
    assert!(Instant::now() - started <= TIMEOUT);
    assert_eq!(
        c.node(third).peer_state(1),
        PeerState::Down {
            since: Timestamp::from_micros(T0 * 1_000_000)
        }
    );
    // Marked down: the next calls skip it at once.
    let started = Instant::now();
    c.node(third).set("n", &key, "during", 600).await.unwrap();
    assert_eq!(Instant::now(), started, "no second timeout");
    let got = c.node(third).get("n", &key, 0).await;
    assert_eq!(got.data.as_deref(), Some("during"));
    assert_eq!(c.net.cache(second).unwrap().stats().items, 1);
    // The fall-back node never called the owner, but holds its key: it heard it is down.
    assert!(matches!(
        c.node(second).peer_state(1),
        PeerState::Down { .. }
    ));

    // A waiting get to a dead owner: bounded by wait + timeout, then served by the next node.
    let started = Instant::now();
    let other = c.key_of(1);
    c.node(second).get("n", &other, 2).await;
    assert!(Instant::now() - started <= Duration::from_secs(2) + TIMEOUT);

    // Node 1 restarts with an empty cache. Once `peer_refresh_time` has passed, the nodes
    // recheck it and it owns its keys again: a miss (never the old value), and the copy the
    // fall-back node held is dropped.
    c.net
        .caches
        .lock()
        .unwrap()
        .insert(1, Some(local(&c.clock)));
    c.nodes[0] = router(&c.net, 1, &c.clock);
    c.clock.advance_secs(REFRESH.as_secs());
    // The fall-back node's periodic recheck finds it back and drops what it held for it.
    c.node(second).recheck().await;
    assert_eq!(c.node(second).peer_state(1), PeerState::Up);
    assert_eq!(c.net.cache(second).unwrap().stats().items, 0, "handed back");
    for id in [second, third] {
        let got = c.node(id).get("n", &key, 0).await;
        assert_eq!(got, GetOutcome::nothing(), "through node {id}");
        assert_eq!(c.node(id).peer_state(1), PeerState::Up);
    }
    c.node(third).set("n", &key, "new", 600).await.unwrap();
    for id in 1..=3 {
        let got = c.node(id).get("n", &key, 0).await;
        assert_eq!(got.data.as_deref(), Some("new"), "through node {id}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_lone_survivor_serves_its_own_cache() {
    let c = cluster();
    c.net.caches.lock().unwrap().insert(1, None);
    c.net.caches.lock().unwrap().insert(2, None);
    for i in 0..20 {
        let key = format!("k{i}");
        c.node(3).set("n", &key, "v", 60).await.unwrap();
        assert_eq!(c.node(3).get("n", &key, 0).await.data.as_deref(), Some("v"));
    }
    let states: Vec<_> = c.node(3).peers().into_iter().map(|p| p.id).collect();
    assert_eq!(states, vec![1, 2]);
    assert!(c
        .node(3)
        .peers()
        .iter()
        .all(|p| matches!(p.state, PeerState::Down { .. })));
}

#[tokio::test(start_paused = true)]
async fn too_large_is_refused_before_anything_is_sent() {
    let c = cluster();
    let key = c.key_of(1);
    c.node(2).set("n", &key, "old", 60).await.unwrap();
    let err = c.node(2).set("n", &key, &"x".repeat(1001), 60).await;
    assert_eq!(
        err,
        Err(CacheError::TooLarge {
            size: 1001,
            limit: 1000
        })
    );
    assert_eq!(
        c.node(3).get("n", &key, 0).await.data.as_deref(),
        Some("old")
    );
}

#[test]
fn no_answer_gives_the_transport_reason_with_its_causes() {
    #[derive(Debug, thiserror::Error)]
    #[error("the peer stream to node 2 broke")]
    struct Broken(#[source] std::io::Error);
    let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset");
    let why = NoAnswer(Box::new(Broken(io)));
    assert_eq!(
        why.reason(),
        "the peer stream to node 2 broke: connection reset"
    );
    assert_eq!(NoAnswer("timed out".into()).reason(), "timed out");
}
