//! The cache itself.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use statemanager_core::{Clock, Timestamp};
use tokio::sync::watch;
use tokio::time::Instant;

/// Size limits of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Most bytes held (sum of item sizes); older items are evicted beyond it.
    pub max_cache_size: u64,
    /// Largest `data` accepted, in UTF-8 bytes.
    pub max_item_size: u64,
}

/// Why a `set_data` was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheError {
    /// `data` is larger than `max_item_size`.
    TooLarge {
        /// UTF-8 bytes of the data.
        size: u64,
        /// The limit.
        limit: u64,
    },
}

impl std::fmt::Display for CacheError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheError::TooLarge { size, limit } => write!(
                f,
                "data is {size} bytes; the cache's limit (max_item_size) is {limit} bytes"
            ),
        }
    }
}

/// The answer to `get_data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetOutcome {
    /// The cached data, if any.
    pub data: Option<Arc<str>>,
    /// Whether the caller now holds the lock and should compute and `set_data`.
    pub lock: bool,
    /// Unix seconds when `data` expires; 0 when there is no data.
    pub expiry: i64,
}

impl GetOutcome {
    /// No data, no lock.
    pub fn nothing() -> Self {
        GetOutcome {
            data: None,
            lock: false,
            expiry: 0,
        }
    }
}

/// Counters and sizes for `/status` and `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Items plus held locks.
    pub items: u64,
    /// Live locks.
    pub locks: u64,
    /// Callers waiting now for another caller's lock.
    pub waiting: u64,
    /// Sum of item sizes, in bytes.
    pub size: u64,
    /// The largest item size stored since start (the Cache Manager's `max_item_size`).
    pub largest_item: u64,
    /// `get_data` answered with data.
    pub hits: u64,
    /// `get_data` answered without data.
    pub misses: u64,
    /// Locks handed out.
    pub locks_granted: u64,
    /// Callers that had to wait for another's lock.
    pub waits: u64,
    /// Waiters woken by a `set_data` or an expired lock.
    pub wakeups: u64,
    /// Waiters that reached their deadline with nothing.
    pub timeouts: u64,
    /// Items evicted to stay within `max_cache_size`.
    pub evictions: u64,
    /// Items removed because they expired.
    pub expirations: u64,
}

type CacheKey = (Arc<str>, Arc<str>);

#[derive(Debug)]
struct Entry {
    data: Arc<str>,
    /// Unix seconds; readable while `now < expiry`.
    expiry: i64,
    seq: u64,
    size: u64,
}

#[derive(Debug)]
struct Lock {
    expires: Instant,
    id: u64,
    /// Dropping it wakes every waiter (their `changed()` returns).
    _release: watch::Sender<()>,
    waiters: watch::Receiver<()>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<CacheKey, Entry>,
    /// Write order, oldest first: the eviction order.
    fifo: BTreeMap<u64, CacheKey>,
    /// `(expiry, seq)` of every entry.
    by_expiry: BTreeSet<(i64, u64)>,
    locks: HashMap<CacheKey, Lock>,
    /// `(expires, id)` of every lock.
    locks_by_expiry: BTreeMap<(Instant, u64), CacheKey>,
    size: u64,
    seq: u64,
    stats: CacheStats,
}

/// Size of an item: its data, namespace and key, in UTF-8 bytes.
fn item_size(key: &CacheKey, data: &str) -> u64 {
    (data.len() + key.0.len() + key.1.len()) as u64
}

impl Inner {
    fn remove_entry(&mut self, key: &CacheKey) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        self.fifo.remove(&entry.seq);
        self.by_expiry.remove(&(entry.expiry, entry.seq));
        self.size -= entry.size;
        Some(entry)
    }

    fn remove_lock(&mut self, key: &CacheKey) -> bool {
        match self.locks.remove(key) {
            Some(lock) => {
                self.locks_by_expiry.remove(&(lock.expires, lock.id));
                true
            }
            None => false,
        }
    }

    /// The live entry at `key`; an expired one it meets is dropped.
    fn live(&mut self, key: &CacheKey, now: i64) -> Option<(Arc<str>, i64)> {
        let entry = self.entries.get(key)?;
        if now < entry.expiry {
            return Some((entry.data.clone(), entry.expiry));
        }
        self.remove_entry(key);
        self.stats.expirations += 1;
        None
    }

    fn purge_expired(&mut self, now: i64, instant: Instant) {
        while let Some(&(expiry, seq)) = self.by_expiry.first() {
            if expiry > now {
                break;
            }
            if let Some(key) = self.fifo.get(&seq).cloned() {
                self.remove_entry(&key);
                self.stats.expirations += 1;
            } else {
                self.by_expiry.pop_first();
            }
        }
        while let Some((&(expires, _), key)) = self.locks_by_expiry.first_key_value() {
            if expires > instant {
                break;
            }
            let key = key.clone();
            self.remove_lock(&key);
        }
    }
}

/// The ephemeral cache. Share it with `Arc`.
pub struct Cache {
    inner: Mutex<Inner>,
    clock: Arc<dyn Clock>,
    limits: CacheLimits,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// An empty cache. `clock` gives wall-clock time for item expiry; lock and wait deadlines
    /// use tokio's monotonic clock.
    pub fn new(limits: CacheLimits, clock: Arc<dyn Clock>) -> Self {
        Cache {
            inner: Mutex::new(Inner::default()),
            clock,
            limits,
        }
    }

    /// The limits.
    pub fn limits(&self) -> CacheLimits {
        self.limits
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // Nothing here can panic half-way through an update; a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_secs(&self) -> i64 {
        (self.clock.now().as_micros() / 1_000_000) as i64
    }

    fn now_exact(&self) -> Timestamp {
        self.clock.now()
    }

    /// `POST /get_data` with `max_wait_time` in whole seconds (already truncated).
    pub async fn get(&self, namespace: &str, key: &str, max_wait_secs: i64) -> GetOutcome {
        let deadline = Instant::now() + Duration::from_secs(max_wait_secs.max(0) as u64);
        self.get_until(namespace, key, max_wait_secs, deadline)
            .await
    }

    /// [`Cache::get`] for a caller whose wait ends at `deadline` rather than `max_wait_secs`
    /// from now: a call forwarded from another node, which has already spent part of its
    /// caller's wait. `max_wait_secs` still decides the mode (< 0, 0, > 0) and a granted
    /// lock's lifetime.
    pub async fn get_until(
        &self,
        namespace: &str,
        key: &str,
        max_wait_secs: i64,
        deadline: Instant,
    ) -> GetOutcome {
        let key: CacheKey = (Arc::from(namespace), Arc::from(key));
        if max_wait_secs < 0 {
            return GetOutcome::nothing();
        }
        if max_wait_secs == 0 {
            let mut inner = self.inner();
            let now = self.live_now();
            return match inner.live(&key, now) {
                Some((data, expiry)) => {
                    inner.stats.hits += 1;
                    GetOutcome {
                        data: Some(data),
                        lock: false,
                        expiry,
                    }
                }
                None => {
                    inner.stats.misses += 1;
                    GetOutcome::nothing()
                }
            };
        }
        let mut waited = false;
        loop {
            let (mut waiter, lock_expires) = {
                let mut inner = self.inner();
                let now = self.live_now();
                if let Some((data, expiry)) = inner.live(&key, now) {
                    inner.stats.hits += 1;
                    return GetOutcome {
                        data: Some(data),
                        lock: false,
                        expiry,
                    };
                }
                let instant = Instant::now();
                let lock_alive = inner.locks.get(&key).is_some_and(|l| l.expires > instant);
                if !lock_alive {
                    inner.remove_lock(&key);
                    if instant >= deadline {
                        inner.stats.timeouts += 1;
                        inner.stats.misses += 1;
                        return GetOutcome::nothing();
                    }
                    // The caller becomes the locker; the lock lives as long as its wait would.
                    let expires = instant + Duration::from_secs(max_wait_secs as u64);
                    inner.seq += 1;
                    let id = inner.seq;
                    let (release, waiters) = watch::channel(());
                    inner.locks.insert(
                        key.clone(),
                        Lock {
                            expires,
                            id,
                            _release: release,
                            waiters,
                        },
                    );
                    inner.locks_by_expiry.insert((expires, id), key.clone());
                    inner.stats.locks_granted += 1;
                    inner.stats.misses += 1;
                    return GetOutcome {
                        data: None,
                        lock: true,
                        expiry: 0,
                    };
                }
                let lock = &inner.locks[&key];
                let waiter = lock.waiters.clone();
                let expires = lock.expires;
                if !waited {
                    inner.stats.waits += 1;
                    waited = true;
                }
                (waiter, expires)
            };
            let wake_at = deadline.min(lock_expires);
            tokio::select! {
                changed = waiter.changed() => {
                    if changed.is_err() {
                        self.inner().stats.wakeups += 1;
                    }
                }
                _ = tokio::time::sleep_until(wake_at) => {
                    if wake_at < deadline {
                        self.inner().stats.wakeups += 1;
                    }
                }
            }
            if Instant::now() >= deadline {
                // One last look: a value set right at the deadline is still returned.
                let mut inner = self.inner();
                let now = self.live_now();
                if let Some((data, expiry)) = inner.live(&key, now) {
                    inner.stats.hits += 1;
                    return GetOutcome {
                        data: Some(data),
                        lock: false,
                        expiry,
                    };
                }
                inner.stats.timeouts += 1;
                inner.stats.misses += 1;
                return GetOutcome::nothing();
            }
        }
    }

    /// Wall-clock seconds for the "readable while now < expiry" test.
    fn live_now(&self) -> i64 {
        self.now_secs()
    }

    /// Refuses `data` over `max_item_size` (the caller gets 400 `item_too_large`).
    pub fn check_item_size(&self, data: &str) -> Result<(), CacheError> {
        let size = data.len() as u64;
        if size > self.limits.max_item_size {
            return Err(CacheError::TooLarge {
                size,
                limit: self.limits.max_item_size,
            });
        }
        Ok(())
    }

    /// `POST /set_data`: stores `data` for `ttl_secs` (≥ 1), releases the key's lock (waking
    /// every waiter), and evicts the oldest-written items beyond `max_cache_size`.
    pub fn set(
        &self,
        namespace: &str,
        key: &str,
        data: &str,
        ttl_secs: u64,
    ) -> Result<(), CacheError> {
        self.check_item_size(data)?;
        let key: CacheKey = (Arc::from(namespace), Arc::from(key));
        let expiry = {
            // expiry = int(now + ttl), as the original.
            let now = self.now_exact().as_micros() as i64;
            (now + ttl_secs.min(i64::MAX as u64 / 2_000_000) as i64 * 1_000_000) / 1_000_000
        };
        let mut inner = self.inner();
        inner.remove_entry(&key);
        inner.seq += 1;
        let seq = inner.seq;
        let entry_size = item_size(&key, data);
        inner.size += entry_size;
        inner.stats.largest_item = inner.stats.largest_item.max(entry_size);
        inner.fifo.insert(seq, key.clone());
        inner.by_expiry.insert((expiry, seq));
        inner.entries.insert(
            key.clone(),
            Entry {
                data: Arc::from(data),
                expiry,
                seq,
                size: entry_size,
            },
        );
        // Dropping the lock's sender wakes everyone waiting for this key.
        inner.remove_lock(&key);
        while inner.size > self.limits.max_cache_size {
            let Some((_, oldest)) = inner.fifo.pop_first() else {
                break;
            };
            if let Some(entry) = inner.entries.remove(&oldest) {
                inner.by_expiry.remove(&(entry.expiry, entry.seq));
                inner.size -= entry.size;
                inner.stats.evictions += 1;
            }
        }
        Ok(())
    }

    /// Removes expired items and locks (housekeeping); cost proportional to what is removed.
    pub fn purge_expired(&self) {
        let now = self.now_secs();
        self.inner().purge_expired(now, Instant::now());
    }

    /// Drops every item whose `(namespace, key)` fails `keep` (locks stay: they expire on
    /// their own and wake their waiters). Costs one pass over the cache: for rare events
    /// only (a peer that was down is back and takes its keys again).
    pub fn retain(&self, keep: impl Fn(&str, &str) -> bool) -> u64 {
        let mut inner = self.inner();
        let gone: Vec<CacheKey> = inner
            .entries
            .keys()
            .filter(|k| !keep(&k.0, &k.1))
            .cloned()
            .collect();
        for key in &gone {
            inner.remove_entry(key);
        }
        gone.len() as u64
    }

    /// Current counters.
    pub fn stats(&self) -> CacheStats {
        let inner = self.inner();
        let mut stats = inner.stats;
        let now = Instant::now();
        stats.locks = inner.locks.values().filter(|l| l.expires > now).count() as u64;
        // Each waiter holds a clone of its lock's receiver; the lock keeps one itself.
        stats.waiting = inner
            .locks
            .values()
            .map(|l| l._release.receiver_count().saturating_sub(1) as u64)
            .sum();
        stats.items = inner.entries.len() as u64 + stats.locks;
        stats.size = inner.size;
        stats
    }
}

#[cfg(test)]
mod tests;
