//! The replicated state: every live item, an expiry index, and the applied-time high-water
//! mark. [`State::apply`] is the only way to change it and is a pure function of the state and
//! the batch.

use std::collections::BTreeSet;
use std::hash::{BuildHasher, RandomState};

use serde::{Deserialize, Serialize};

use crate::error::FullScope;
use crate::{Batch, Data, DomainError, ItemId, Limits, Namespace, Op, StoreOp, Timestamp};

mod table;

use table::GrowingTable;
pub use table::Growth;

/// A stored item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// The data as the client sent it.
    pub data: Data,
    /// The item's timestamp (the client's, or the leader's stamp).
    pub timestamp: Timestamp,
    /// When the item stops being visible: `timestamp + ttl`.
    pub expires_at: Timestamp,
}

/// The answer to a successful store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// The timestamp the item is stored with.
    pub timestamp: Timestamp,
    /// When it expires.
    pub expires_at: Timestamp,
}

/// The result of one operation of a batch.
pub type OpOutcome = Result<Stored, DomainError>;

/// Counters describing the state, for status pages and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StateStats {
    /// Items held (live, or expired and not yet purged).
    pub items: u64,
    /// Sum of the data sizes of those items, in bytes.
    pub data_bytes: u64,
    /// The earliest expiry among them.
    pub next_expiry: Option<Timestamp>,
    /// Items purged by expiry since start (or since the state was loaded).
    pub expired_total: u64,
}

/// Hashes item ids for the item table and the expiry index: std's SipHash with a random key
/// (keys come from clients), so one state's hashes mean nothing to another.
#[derive(Debug, Clone, Default)]
struct IdHasher {
    keys: RandomState,
    /// Tests fold every hash into this many values, to make ids share hashes.
    #[cfg(test)]
    fold: Option<u64>,
}

impl IdHasher {
    fn hash(&self, id: &ItemId) -> u64 {
        let hash = self.keys.hash_one(id);
        #[cfg(test)]
        if let Some(fold) = self.fold {
            return hash % fold;
        }
        hash
    }
}

/// Every item of the store, with the indexes that keep expiry and limits cheap.
///
/// Invariant: `expiry` is the set of `(expires_at, hash of id)` over the entries of `items`
/// (two items of equal expiry and hash share one index entry), and `per_namespace` counts the
/// entries of `items` per namespace (no zero counts).
///
/// The expiry index holds an item's hash, not its id: 16 bytes an entry instead of 40, which
/// in B-tree nodes left half full by entries that always arrive last is about 50 bytes an
/// item (`examples/state_memory.rs`; `docs/design.md`, "The expiry index by hash").
#[derive(Debug, Clone, Default)]
pub struct State {
    hasher: IdHasher,
    /// hashbrown's (std's) table, hashed by `hasher`, grown a step at a time.
    items: GrowingTable<(ItemId, Item)>,
    expiry: BTreeSet<(Timestamp, u64)>,
    /// The same table; its keys are the names the items share (see `insert`).
    per_namespace: hashbrown::HashMap<Namespace, u64, RandomState>,
    data_bytes: u64,
    high_water: Timestamp,
    /// Items removed by expiry since this state was created or loaded (for metrics).
    expired_total: u64,
}

impl PartialEq for State {
    fn eq(&self, other: &Self) -> bool {
        self.items.len() == other.items.len()
            && self.high_water == other.high_water
            && self
                .iter()
                .all(|(id, item)| other.items_get(id) == Some(item))
    }
}

impl State {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one batch and returns one outcome per operation, in order.
    ///
    /// Each operation gets its own stamp, `max(batch.now, previous stamp + 1 µs)`: time in the
    /// state machine never goes backwards (even when a new leader's clock is behind, or when
    /// batches stamped concurrently on the leader are applied out of stamping order), and no
    /// two operations ever share a stamp, so "now" always means "after everything before" and
    /// a store without a timestamp of its own is always newer than the item it replaces.
    /// Everything that expired by the batch's time is purged first, so expired items count as
    /// absent for conflicts and limits.
    pub fn apply(&mut self, batch: &Batch) -> Vec<OpOutcome> {
        let start = batch.now.max(self.high_water);
        self.purge_expired(start);
        let outcomes = batch
            .ops
            .iter()
            .map(|op| {
                let now = batch.now.max(self.high_water.next());
                self.high_water = now;
                // Items expiring within the batch's own microseconds are absent too.
                self.purge_expired(now);
                // A growth of the item table under way moves a few entries per operation.
                let hasher = &self.hasher;
                self.items.advance(|(id, _)| hasher.hash(id));
                match op {
                    Op::Store(store) => self.store(store, now, &batch.limits),
                    Op::Delete(id) => match self.remove(id) {
                        Some(item) => Ok(Stored {
                            timestamp: item.timestamp,
                            expires_at: item.expires_at,
                        }),
                        None => Err(DomainError::NotFound),
                    },
                }
            })
            .collect();
        // An empty batch still moves time on (its purge happened at `start`).
        self.high_water = self.high_water.max(start);
        outcomes
    }

    fn store(&mut self, op: &StoreOp, now: Timestamp, limits: &Limits) -> OpOutcome {
        op.check_size(limits)?;
        // A timestamp in the future (or none) becomes the leader's stamp.
        let timestamp = match op.timestamp {
            Some(t) if t <= now => t,
            _ => now,
        };
        let expires_at = timestamp.plus(op.ttl);
        let stored = Stored {
            timestamp,
            expires_at,
        };
        let item = Item {
            data: op.data.clone(),
            timestamp,
            expires_at,
        };
        // One hash lookup for the common case, a key stored again; a new key is hashed once and
        // inserted with that hash.
        let hash = self.hasher.hash(&op.id);
        match self.items.find_mut(hash, |(id, _)| *id == op.id) {
            Some((_, old)) if timestamp < old.timestamp => {
                return Err(DomainError::Conflict {
                    stored: old.timestamp,
                })
            }
            Some((_, old)) if timestamp == old.timestamp => {
                return if old.data == op.data {
                    // An idempotent retry: the first TTL stands.
                    Ok(Stored {
                        timestamp: old.timestamp,
                        expires_at: old.expires_at,
                    })
                } else {
                    Err(DomainError::Conflict {
                        stored: old.timestamp,
                    })
                };
            }
            // Replaced in place (the namespace count unchanged), its expiry entry moved.
            Some((_, old)) if expires_at > now => {
                self.data_bytes = self.data_bytes - old.data.len() as u64 + item.data.len() as u64;
                let old_expiry = old.expires_at;
                *old = item;
                if old_expiry != expires_at {
                    self.unindex(old_expiry, hash);
                    self.expiry.insert((expires_at, hash));
                }
            }
            // Stored already expired: the old item goes.
            Some(_) => {
                self.remove_hashed(&op.id, hash);
            }
            None => {
                if expires_at > now {
                    self.check_room(&op.id.namespace, limits)?;
                    self.insert_hashed(op.id.clone(), item, hash);
                }
            }
        }
        // An item already expired on arrival is acknowledged but never visible; it still
        // supersedes an older stored item (which is removed above).
        Ok(stored)
    }

    fn check_room(&self, namespace: &Namespace, limits: &Limits) -> Result<(), DomainError> {
        if self.items.len() as u64 >= limits.max_items {
            return Err(DomainError::StoreFull {
                scope: FullScope::Store,
                limit: limits.max_items,
            });
        }
        if let Some(limit) = limits.max_items_per_namespace {
            if self.per_namespace.get(namespace).copied().unwrap_or(0) >= limit {
                return Err(DomainError::StoreFull {
                    scope: FullScope::Namespace,
                    limit,
                });
            }
        }
        Ok(())
    }

    /// Adds an item that is not held, whose id hashes to `hash`. Every item of a namespace
    /// shares one copy of the namespace's name (the one its count is kept under) rather than
    /// the copy its own request brought.
    fn insert_hashed(&mut self, id: ItemId, item: Item, hash: u64) {
        self.data_bytes += item.data.len() as u64;
        let id = match self.per_namespace.get_key_value_mut(&id.namespace) {
            Some((namespace, count)) => {
                *count += 1;
                ItemId {
                    namespace: namespace.clone(),
                    key: id.key,
                }
            }
            None => {
                self.per_namespace.insert(id.namespace.clone(), 1);
                id
            }
        };
        self.expiry.insert((item.expires_at, hash));
        let hasher = &self.hasher;
        self.items
            .insert_unique(hash, (id, item), |(id, _)| hasher.hash(id));
    }

    /// Removes the item at `id`, whose id hashes to `hash`, with its index entries.
    fn remove_hashed(&mut self, id: &ItemId, hash: u64) -> Option<Item> {
        let (id, item) = self.items.remove(hash, |(held, _)| held == id)?;
        self.forget(&id, &item);
        self.unindex(item.expires_at, hash);
        Some(item)
    }

    /// Counts an item taken out of `items` out of the byte and namespace counts.
    fn forget(&mut self, id: &ItemId, item: &Item) {
        self.data_bytes -= item.data.len() as u64;
        if let Some(count) = self.per_namespace.get_mut(&id.namespace) {
            *count -= 1;
            if *count == 0 {
                self.per_namespace.remove(&id.namespace);
            }
        }
    }

    /// Drops the expiry entry `(expires_at, hash)` of an item that no longer has that expiry,
    /// unless another item still has both (an entry stands for every item with its pair).
    /// Items of one hash lie in one probe sequence of the table, so this check reads the
    /// control bytes the lookup before it has just read.
    fn unindex(&mut self, expires_at: Timestamp, hash: u64) {
        let hasher = &self.hasher;
        let still_used = self
            .items
            .find(hash, |(id, item)| {
                item.expires_at == expires_at && hasher.hash(id) == hash
            })
            .is_some();
        if !still_used {
            self.expiry.remove(&(expires_at, hash));
        }
    }

    fn remove(&mut self, id: &ItemId) -> Option<Item> {
        let hash = self.hasher.hash(id);
        self.remove_hashed(id, hash)
    }

    /// Removes every item that expired at or before `now`; returns how many. The cost is
    /// proportional to the number removed (the expiry index is ordered by time).
    ///
    /// Each step takes its entry off the index first and then removes every item with that
    /// entry's expiry and hash, so the loop ends even if the index held an entry that no item
    /// matches (which the invariant of [`State`] rules out): such an entry is dropped.
    fn purge_expired(&mut self, now: Timestamp) -> usize {
        let mut purged = 0;
        while self.expiry.first().is_some_and(|(at, _)| *at <= now) {
            let Some((expires_at, hash)) = self.expiry.pop_first() else {
                break;
            };
            // Each pass removes one item, so this ends after the items sharing the entry.
            loop {
                let hasher = &self.hasher;
                let Some((id, item)) = self.items.remove(hash, |(id, item)| {
                    item.expires_at == expires_at && hasher.hash(id) == hash
                }) else {
                    break;
                };
                self.forget(&id, &item);
                purged += 1;
            }
        }
        self.expired_total += purged as u64;
        purged
    }

    /// Panics unless the indexes agree with the items (the invariant of [`State`]), and the
    /// byte count with their data.
    #[cfg(test)]
    pub(crate) fn assert_invariants(&self) {
        let expiry: BTreeSet<(Timestamp, u64)> = self
            .iter()
            .map(|(id, item)| (item.expires_at, self.hasher.hash(id)))
            .collect();
        assert_eq!(self.expiry, expiry, "expiry index");
        let mut per_namespace: hashbrown::HashMap<Namespace, u64, RandomState> =
            hashbrown::HashMap::default();
        for (id, _) in self.iter() {
            *per_namespace.entry(id.namespace.clone()).or_insert(0) += 1;
            let (shared, _) = self
                .per_namespace
                .get_key_value(&id.namespace)
                .expect("counted namespace");
            assert!(
                id.namespace.is_clone_of(shared),
                "the item shares its namespace's name: {id:?}"
            );
        }
        assert_eq!(self.per_namespace, per_namespace, "namespace counts");
        let bytes: u64 = self.iter().map(|(_, i)| i.data.len() as u64).sum();
        assert_eq!(self.data_bytes, bytes, "data bytes");
    }

    /// A state whose ids hash to only `values` different hashes, so that many items share
    /// expiry entries (the case real hashes make vanishingly rare).
    #[cfg(test)]
    pub(crate) fn with_few_hashes(values: u64) -> Self {
        State {
            hasher: IdHasher {
                keys: RandomState::new(),
                fold: Some(values),
            },
            ..State::default()
        }
    }

    fn items_get(&self, id: &ItemId) -> Option<&Item> {
        self.items
            .find(self.hasher.hash(id), |(held, _)| held == id)
            .map(|(_, item)| item)
    }

    /// The live item at `id` at time `now`, if any. Expired items are invisible even before
    /// they are purged.
    pub fn get(&self, id: &ItemId, now: Timestamp) -> Option<&Item> {
        self.items_get(id).filter(|item| item.expires_at > now)
    }

    /// The earliest expiry of any held item: the leader proposes a purge once it has passed.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.expiry.first().map(|(at, _)| *at)
    }

    /// The latest time any applied batch was stamped with.
    pub fn high_water(&self) -> Timestamp {
        self.high_water
    }

    /// Counters for status pages.
    pub fn stats(&self) -> StateStats {
        StateStats {
            items: self.items.len() as u64,
            data_bytes: self.data_bytes,
            next_expiry: self.next_expiry(),
            expired_total: self.expired_total,
        }
    }

    /// Every held item, in no particular order (for snapshots).
    pub fn iter(&self) -> impl Iterator<Item = (&ItemId, &Item)> {
        self.items.iter().map(|(id, item)| (id, item))
    }

    /// Sets how the item table grows when it is full (gradually by default); growth at once
    /// ends a move under way. Outcomes are the same either way.
    pub fn set_growth(&mut self, growth: Growth) {
        let hasher = &self.hasher;
        self.items.set_growth(growth, |(id, _)| hasher.hash(id));
    }

    /// Whether the item table is still moving entries out of an old table (a growth under way).
    pub fn is_growing(&self) -> bool {
        self.items.is_moving()
    }

    /// How the item table grows when it is full.
    pub fn growth(&self) -> Growth {
        self.items.growth()
    }

    /// Rebuilds a state from snapshot parts: the high-water mark and the items.
    pub fn from_parts(
        high_water: Timestamp,
        items: impl IntoIterator<Item = (ItemId, Item)>,
    ) -> Self {
        let items = items.into_iter();
        let mut state = State {
            high_water,
            items: GrowingTable::with_capacity(items.size_hint().0),
            ..State::default()
        };
        for (id, item) in items {
            let hash = state.hasher.hash(&id);
            state.remove_hashed(&id, hash);
            state.insert_hashed(id, item, hash);
        }
        state
    }
}

#[cfg(test)]
mod tests;
