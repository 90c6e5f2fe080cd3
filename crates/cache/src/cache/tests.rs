//! Cache behaviour with a manual wall clock and tokio's paused time.

use statemanager_core::ManualClock;

use super::*;

const T0: u64 = 1_700_000_000;

fn cache(max_cache_size: u64) -> (Arc<Cache>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(T0 * 1_000_000)));
    let cache = Cache::new(
        CacheLimits {
            max_cache_size,
            max_item_size: 100,
        },
        clock.clone(),
    );
    (Arc::new(cache), clock)
}

#[tokio::test(start_paused = true)]
async fn plain_lookup_never_locks() {
    let (c, _) = cache(1 << 20);
    assert_eq!(c.get("n", "k", 0).await, GetOutcome::nothing());
    assert_eq!(c.stats().locks, 0);
    c.set("n", "k", "v", 60).unwrap();
    let got = c.get("n", "k", 0).await;
    assert_eq!(got.data.as_deref(), Some("v"));
    assert_eq!(got.expiry, (T0 + 60) as i64);
    assert!(!got.lock);
}

#[tokio::test(start_paused = true)]
async fn negative_wait_always_answers_nothing() {
    let (c, _) = cache(1 << 20);
    c.set("n", "k", "v", 60).unwrap();
    assert_eq!(c.get("n", "k", -1).await, GetOutcome::nothing());
}

#[tokio::test(start_paused = true)]
async fn first_caller_locks_others_wait_and_wake_on_set() {
    let (c, _) = cache(1 << 20);
    let first = c.get("n", "k", 30).await;
    assert!(first.lock && first.data.is_none());
    let started = Instant::now();
    let waiters: Vec<_> = (0..5)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { (c.get("n", "k", 30).await, Instant::now()) })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(c.stats().waiting, 5, "five callers wait for the lock");
    c.set("n", "k", "computed", 60).unwrap();
    for w in waiters {
        let (got, at) = w.await.unwrap();
        assert_eq!(got.data.as_deref(), Some("computed"));
        assert!(!got.lock, "exactly one caller computes");
        assert_eq!(
            at - started,
            Duration::from_secs(3),
            "woken at the set, not later"
        );
    }
    let s = c.stats();
    assert_eq!((s.locks_granted, s.waits, s.wakeups), (1, 5, 5));
    assert_eq!(s.waiting, 0);
}

#[tokio::test(start_paused = true)]
async fn waiter_times_out_at_its_own_deadline() {
    let (c, _) = cache(1 << 20);
    assert!(c.get("n", "k", 30).await.lock);
    let started = Instant::now();
    let got = c.get("n", "k", 2).await;
    assert_eq!(got, GetOutcome::nothing());
    assert_eq!(Instant::now() - started, Duration::from_secs(2));
    assert_eq!(c.stats().timeouts, 1);
}

#[tokio::test(start_paused = true)]
async fn abandoned_lock_expires_and_wakes_waiters_one_takes_over() {
    let (c, _) = cache(1 << 20);
    assert!(
        c.get("n", "k", 1).await.lock,
        "locker with a 1 s wait abandons"
    );
    let started = Instant::now();
    let a = tokio::spawn({
        let c = c.clone();
        async move { (c.get("n", "k", 10).await, Instant::now()) }
    });
    let b = tokio::spawn({
        let c = c.clone();
        async move { (c.get("n", "k", 10).await, Instant::now()) }
    });
    let (ga, ta) = a.await.unwrap();
    let (gb, tb) = b.await.unwrap();
    // Both woke when the lock expired (1 s); exactly one of them got the new lock, and the
    // other waits for it (up to its deadline at 10 s).
    let lockers = [ga.lock, gb.lock].iter().filter(|l| **l).count();
    assert_eq!(lockers, 1, "{ga:?} {gb:?}");
    let locker_time = if ga.lock { ta } else { tb };
    assert_eq!(locker_time - started, Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn items_expire_on_the_wall_clock() {
    let (c, clock) = cache(1 << 20);
    c.set("n", "k", "v", 5).unwrap();
    clock.advance_secs(4);
    assert!(c.get("n", "k", 0).await.data.is_some());
    clock.advance_secs(1);
    assert!(
        c.get("n", "k", 0).await.data.is_none(),
        "readable while now < expiry"
    );
    c.set("n", "a", "v", 1).unwrap();
    c.set("n", "b", "v", 100).unwrap();
    clock.advance_secs(2);
    c.purge_expired();
    let s = c.stats();
    assert_eq!((s.items, s.expirations), (1, 2));
}

#[tokio::test(start_paused = true)]
async fn full_cache_evicts_oldest_written_first() {
    // Each item: 1 (ns) + 1 (key) + 8 (data) = 10 bytes; room for 3.
    let (c, _) = cache(30);
    for k in ["a", "b", "c"] {
        c.set("n", k, "12345678", 60).unwrap();
    }
    c.set("n", "a", "12345678", 60).unwrap(); // re-set: now the newest
    c.set("n", "d", "12345678", 60).unwrap(); // evicts b (oldest write)
    let present = |k: &'static str| {
        let c = c.clone();
        async move { c.get("n", k, 0).await.data.is_some() }
    };
    assert!(!present("b").await);
    assert!(present("a").await && present("c").await && present("d").await);
    let s = c.stats();
    assert_eq!((s.items, s.size, s.evictions), (3, 30, 1));
}

#[tokio::test(start_paused = true)]
async fn oversized_item_is_refused_and_old_value_kept() {
    let (c, _) = cache(1 << 20);
    c.set("n", "k", "small", 60).unwrap();
    let err = c.set("n", "k", &"x".repeat(101), 60).unwrap_err();
    assert_eq!(
        err,
        CacheError::TooLarge {
            size: 101,
            limit: 100
        }
    );
    assert_eq!(c.get("n", "k", 0).await.data.as_deref(), Some("small"));
}
