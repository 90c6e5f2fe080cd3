//! The item table in 64 shards, so that growing it never stops a node for long.
//!
//! A hash table doubles when it fills: every entry is moved at once, on the thread applying
//! the batch that filled it. With one table of a million items, that was a pause of about half
//! a second on every node of a cluster at once (they apply the same batches), long enough for
//! the followers to stop hearing the leader and elect another (`docs/design.md`, "The item
//! table in shards"). In 64 shards each doubling moves a 64th of the items, and the shards,
//! filling at about the same rate, double over many batches rather than in one.
//!
//! A shard is chosen by bits 51–56 of the item's hash: hashbrown takes the bucket from the low
//! bits and the control byte from the top seven, so every shard still sees well-spread hashes.

/// How many shards (a power of two).
const SHARDS: usize = 64;
/// Where the shard bits start in a hash.
const SHARD_SHIFT: u32 = 51;

/// hashbrown's `HashTable` in [`SHARDS`] shards, with the subset of its interface the state
/// uses. Entries are found and inserted by a hash the caller computes.
#[derive(Debug, Clone)]
pub struct ShardedTable<T> {
    shards: Box<[hashbrown::HashTable<T>]>,
    len: usize,
}

impl<T> Default for ShardedTable<T> {
    fn default() -> Self {
        ShardedTable {
            shards: (0..SHARDS).map(|_| hashbrown::HashTable::new()).collect(),
            len: 0,
        }
    }
}

fn shard_of(hash: u64) -> usize {
    (hash >> SHARD_SHIFT) as usize & (SHARDS - 1)
}

impl<T> ShardedTable<T> {
    /// The number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The entry of hash `hash` that `eq` accepts.
    pub fn find(&self, hash: u64, eq: impl FnMut(&T) -> bool) -> Option<&T> {
        self.shards[shard_of(hash)].find(hash, eq)
    }

    /// The entry of hash `hash` that `eq` accepts, to change (not its hash).
    pub fn find_mut(&mut self, hash: u64, eq: impl FnMut(&T) -> bool) -> Option<&mut T> {
        self.shards[shard_of(hash)].find_mut(hash, eq)
    }

    /// Takes out the entry of hash `hash` that `eq` accepts.
    pub fn take(&mut self, hash: u64, eq: impl FnMut(&T) -> bool) -> Option<T> {
        let entry = self.shards[shard_of(hash)].find_entry(hash, eq).ok()?;
        self.len -= 1;
        Some(entry.remove().0)
    }

    /// Inserts `value` of hash `hash`, which no entry equals; `hasher` gives the hash of an
    /// entry (for moving the shard's entries when it grows).
    pub fn insert_unique(&mut self, hash: u64, value: T, hasher: impl Fn(&T) -> u64) {
        self.shards[shard_of(hash)].insert_unique(hash, value, hasher);
        self.len += 1;
    }

    /// Every entry, shard by shard.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.shards.iter().flat_map(|shard| shard.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    fn hash(keys: &std::hash::RandomState, n: u64) -> u64 {
        keys.hash_one(n)
    }

    #[test]
    fn entries_are_found_taken_and_counted_across_shards() {
        let keys = std::hash::RandomState::new();
        let mut table = ShardedTable::default();
        for n in 0..10_000u64 {
            table.insert_unique(hash(&keys, n), n, |v| hash(&keys, *v));
        }
        assert_eq!(table.len(), 10_000);
        assert_eq!(table.iter().count(), 10_000);
        let used = table.shards.iter().filter(|s| !s.is_empty()).count();
        assert_eq!(used, SHARDS, "real hashes reach every shard");
        for n in (0..10_000u64).step_by(7) {
            assert_eq!(table.find(hash(&keys, n), |v| *v == n), Some(&n));
        }
        if let Some(v) = table.find_mut(hash(&keys, 5), |v| *v == 5) {
            *v = 5;
        }
        for n in 0..5_000u64 {
            assert_eq!(table.take(hash(&keys, n), |v| *v == n), Some(n));
        }
        assert_eq!(table.take(hash(&keys, 1), |v| *v == 1), None);
        assert_eq!(table.len(), 5_000);
        assert_eq!(table.find(hash(&keys, 1), |v| *v == 1), None);
        let mut rest: Vec<u64> = table.iter().copied().collect();
        rest.sort_unstable();
        assert_eq!(rest, (5_000..10_000).collect::<Vec<_>>());
    }

    /// Hashes that differ only outside the shard bits share a shard; equal hashes are told
    /// apart by `eq`.
    #[test]
    fn equal_and_small_hashes_share_a_shard_and_stay_apart() {
        let mut table = ShardedTable::default();
        for n in 0..100u64 {
            table.insert_unique(n % 3, n, |v| v % 3);
        }
        assert_eq!(table.shards.iter().filter(|s| !s.is_empty()).count(), 1);
        for n in 0..100u64 {
            assert_eq!(table.find(n % 3, |v| *v == n), Some(&n));
        }
        assert_eq!(table.take(2, |v| *v == 98), Some(98));
        assert_eq!(table.len(), 99);
    }
}
