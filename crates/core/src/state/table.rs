//! A hash table that grows a step at a time: when it is full, the next insert allocates a
//! table twice the size and later inserts move a few entries each from the old table into it,
//! instead of one insert moving every entry at once.
//!
//! hashbrown grows by rehashing every entry into the new allocation in one call. For the item
//! table of a million items that call took 0.17–0.43 s on the benchmark machine, and 0.34–0.94 s
//! at two million (`examples/state_growth.rs`): an apply that long stalls every replica at once,
//! since they apply the same entry (`docs/design.md`, "The item table grows a step at a time").
//! Redis grows its dictionaries the same way (`dict.c`, incremental rehashing).

use std::mem;

use hashbrown::HashTable;

/// Entries moved from the old table into the new one per insert, while a move is under way.
///
/// With `MOVES_PER_INSERT` ≥ 1 the move always ends before the new table is full (see
/// [`GrowingTable::insert_unique`]); more per insert ends it sooner (fewer lookups in two
/// tables, the old allocation freed earlier) at a higher cost per insert meanwhile.
const MOVES_PER_INSERT: usize = 4;

/// How the table grows when it is full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Growth {
    /// A step at a time, over the operations that follow (while callers wait on each apply).
    #[default]
    Gradual,
    /// Every entry moved in the insert that finds the table full, as hashbrown does: for a
    /// replay of the log at start-up, where nobody waits on one apply and the old table, freed
    /// at once, is reused by the items that follow instead of new memory.
    AtOnce,
}

/// A hash table of `T` whose growth is spread over the inserts that follow it.
///
/// Lookups and removals take the hash and an equality predicate, as hashbrown's
/// [`HashTable`] does, and look in both tables while entries are being moved. An entry is in
/// exactly one of the two tables.
#[derive(Debug, Clone)]
pub(crate) struct GrowingTable<T> {
    /// Where inserts go.
    current: HashTable<T>,
    /// The table being emptied into `current`; empty (and unallocated) when no move is under way.
    old: HashTable<T>,
    /// Every bucket of `old` before this index has been moved or emptied.
    cursor: usize,
    /// How the next growth goes.
    growth: Growth,
}

impl<T> Default for GrowingTable<T> {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl<T> GrowingTable<T> {
    /// An empty table with room for `capacity` entries before it first grows.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        GrowingTable {
            current: HashTable::with_capacity(capacity),
            old: HashTable::new(),
            cursor: 0,
            growth: Growth::default(),
        }
    }

    /// Sets how the table grows from now on; a move under way is ended at once when growth
    /// becomes [`Growth::AtOnce`].
    pub(crate) fn set_growth(&mut self, growth: Growth, hasher: impl Fn(&T) -> u64) {
        self.growth = growth;
        if growth == Growth::AtOnce && !self.old.is_empty() {
            self.move_entries(usize::MAX, &hasher);
        }
    }

    /// The number of entries.
    pub(crate) fn len(&self) -> usize {
        self.current.len() + self.old.len()
    }

    /// How the table grows when it is full.
    pub(crate) fn growth(&self) -> Growth {
        self.growth
    }

    /// Whether entries are still being moved out of an old table.
    pub(crate) fn is_moving(&self) -> bool {
        !self.old.is_empty()
    }

    /// The entry with `hash` for which `eq` holds, if any.
    pub(crate) fn find(&self, hash: u64, mut eq: impl FnMut(&T) -> bool) -> Option<&T> {
        match self.current.find(hash, &mut eq) {
            Some(found) => Some(found),
            None => self.old.find(hash, eq),
        }
    }

    /// The entry with `hash` for which `eq` holds, if any, to change in place. The change must
    /// not change the entry's hash.
    pub(crate) fn find_mut(&mut self, hash: u64, mut eq: impl FnMut(&T) -> bool) -> Option<&mut T> {
        match self.current.find_mut(hash, &mut eq) {
            Some(found) => Some(found),
            None => self.old.find_mut(hash, eq),
        }
    }

    /// Removes and returns the entry with `hash` for which `eq` holds, if any.
    pub(crate) fn remove(&mut self, hash: u64, mut eq: impl FnMut(&T) -> bool) -> Option<T> {
        if let Ok(entry) = self.current.find_entry(hash, &mut eq) {
            return Some(entry.remove().0);
        }
        let entry = self.old.find_entry(hash, eq).ok()?;
        let (removed, _) = entry.remove();
        if self.old.is_empty() {
            self.end_move();
        }
        Some(removed)
    }

    /// Adds `value`, which hashes to `hash` and is not in the table. `hasher` gives the hash
    /// of any entry (the entries moved are hashed again).
    ///
    /// When the current table is full, it becomes the old table and a new one with room for
    /// half as many entries again takes its place (hashbrown rounds that up to the next power
    /// of two of buckets: twice the old table's, unless removals had left it half empty).
    /// Each insert then moves up to [`MOVES_PER_INSERT`] entries across. The move ends before
    /// the new table is full: it starts with `n` entries to move and room for more than
    /// `n + n / 2`; every insert or moved entry takes at most one slot of that room (a removal
    /// frees a slot or leaves it used, never takes one), and the move is over after at most
    /// `n / MOVES_PER_INSERT + 1` inserts, by which time at most `n` moved and that many
    /// inserted entries have taken room. Should the new table fill anyway, the rest is moved
    /// at once, which keeps the table correct.
    pub(crate) fn insert_unique(&mut self, hash: u64, value: T, hasher: impl Fn(&T) -> u64) {
        if self.current.len() == self.current.capacity() {
            if !self.old.is_empty() {
                self.move_entries(usize::MAX, &hasher);
            }
            // Sized by the entries held, not the buckets: a table full of removed entries'
            // marks is moved into one of the same size, without them.
            let held = self.current.len();
            let bigger = HashTable::with_capacity(held + held / 2 + 1);
            self.old = mem::replace(&mut self.current, bigger);
            self.cursor = 0;
        }
        self.current.insert_unique(hash, value, &hasher);
        if !self.old.is_empty() {
            let count = match self.growth {
                Growth::Gradual => MOVES_PER_INSERT,
                Growth::AtOnce => usize::MAX,
            };
            self.move_entries(count, &hasher);
        }
    }

    /// Moves [`MOVES_PER_INSERT`] entries across if a move is under way: the state calls this
    /// for every operation, so a move also ends when stores only replace items (and the old
    /// allocation is freed) rather than lasting until enough new items arrive.
    pub(crate) fn advance(&mut self, hasher: impl Fn(&T) -> u64) {
        if !self.old.is_empty() {
            self.move_entries(MOVES_PER_INSERT, &hasher);
        }
    }

    /// Moves up to `count` entries from the old table into the current one, in bucket order.
    fn move_entries(&mut self, count: usize, hasher: &impl Fn(&T) -> u64) {
        let buckets = self.old.num_buckets();
        let mut moved = 0;
        while moved < count && self.cursor < buckets {
            if let Ok(entry) = self.old.get_bucket_entry(self.cursor) {
                let (value, _) = entry.remove();
                self.current.insert_unique(hasher(&value), value, hasher);
                moved += 1;
            }
            self.cursor += 1;
        }
        if self.old.is_empty() {
            self.end_move();
        }
    }

    /// Frees the emptied old table.
    fn end_move(&mut self) {
        self.old = HashTable::new();
        self.cursor = 0;
    }

    /// Every entry, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.current.iter().chain(self.old.iter())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    /// Keys hash to `key % fold`: a small fold makes many keys share a hash.
    fn hash_of(key: u32, fold: u64) -> u64 {
        u64::from(key).wrapping_mul(0x9e37_79b9_7f4a_7c15) % fold
    }

    #[derive(Debug, Clone)]
    enum Step {
        Insert(u32),
        Remove(u32),
        Update(u32),
        /// Switch to this growth mode (a switch to `AtOnce` ends a move under way).
        Switch(Growth),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            5 => (0u32..400).prop_map(Step::Insert),
            2 => (0u32..400).prop_map(Step::Remove),
            1 => (0u32..400).prop_map(Step::Update),
            1 => Just(Step::Switch(Growth::AtOnce)),
            1 => Just(Step::Switch(Growth::Gradual)),
        ]
    }

    /// Checks `table` against `model` entry by entry.
    fn assert_same(table: &GrowingTable<(u32, u64)>, model: &HashMap<u32, u64>, fold: u64) {
        assert_eq!(table.len(), model.len());
        assert_eq!(table.iter().count(), model.len());
        for (key, value) in model {
            let found = table.find(hash_of(*key, fold), |(k, _)| k == key);
            assert_eq!(found, Some(&(*key, *value)));
        }
        for (key, value) in table.iter() {
            assert_eq!(model.get(key), Some(value));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any sequence of inserts, removals, updates and switches between growing a step at
        /// a time and at once (as start-up does) leaves the table holding what a `HashMap`
        /// holds, at every step, through many growths and moves, with distinct and shared
        /// hashes; growing at once never leaves a move under way.
        #[test]
        fn the_table_holds_what_a_map_holds(
            steps in prop::collection::vec(step(), 0..1500),
            fold in prop_oneof![Just(u64::MAX), Just(7u64), Just(64u64)],
        ) {
            let hasher = |entry: &(u32, u64)| hash_of(entry.0, fold);
            let mut table: GrowingTable<(u32, u64)> = GrowingTable::default();
            let mut model: HashMap<u32, u64> = HashMap::new();
            for (n, step) in steps.into_iter().enumerate() {
                match step {
                    Step::Insert(key) => {
                        let present = table.find(hash_of(key, fold), |(k, _)| *k == key).is_some();
                        prop_assert_eq!(present, model.contains_key(&key));
                        if !present {
                            table.insert_unique(hash_of(key, fold), (key, n as u64), hasher);
                            model.insert(key, n as u64);
                        }
                    }
                    Step::Remove(key) => {
                        let removed = table.remove(hash_of(key, fold), |(k, _)| *k == key);
                        prop_assert_eq!(removed.map(|(_, v)| v), model.remove(&key));
                    }
                    Step::Update(key) => {
                        if let Some((_, value)) =
                            table.find_mut(hash_of(key, fold), |(k, _)| *k == key)
                        {
                            *value += 1_000_000;
                        }
                        if let Some(value) = model.get_mut(&key) {
                            *value += 1_000_000;
                        }
                    }
                    Step::Switch(growth) => table.set_growth(growth, hasher),
                }
                if table.growth() == Growth::AtOnce {
                    prop_assert!(!table.is_moving());
                }
                assert_same(&table, &model, fold);
            }
        }
    }

    #[test]
    fn a_growth_moves_entries_a_few_at_a_time_and_ends_before_the_next() {
        let hasher = |entry: &(u32, u64)| hash_of(entry.0, u64::MAX);
        let mut table: GrowingTable<(u32, u64)> = GrowingTable::with_capacity(1000);
        let full = table.current.capacity() as u32;
        for key in 0..full {
            table.insert_unique(hasher(&(key, 0)), (key, 0), hasher);
        }
        assert!(!table.is_moving(), "no move before the table is full");
        table.insert_unique(hasher(&(full, 0)), (full, 0), hasher);
        assert!(table.is_moving(), "the insert past full starts a move");
        assert_eq!(table.old.len(), full as usize - MOVES_PER_INSERT);
        let bigger = table.current.capacity();
        assert_eq!(
            table.current.num_buckets(),
            2 * table.old.num_buckets(),
            "a full table doubles"
        );
        let mut key = full + 1;
        while table.is_moving() {
            assert_eq!(
                table.current.capacity(),
                bigger,
                "the new table never grows mid-move"
            );
            table.insert_unique(hasher(&(key, 0)), (key, 0), hasher);
            key += 1;
        }
        let inserts = (key - full) as usize;
        assert_eq!(inserts, (full as usize).div_ceil(MOVES_PER_INSERT));
        assert_eq!(table.len(), key as usize);
        assert_eq!(table.old.num_buckets(), 1, "the old allocation is freed");
    }

    fn distinct_hash(entry: &(u32, u64)) -> u64 {
        hash_of(entry.0, u64::MAX)
    }

    /// A table that has just begun a move: keys `0..n` inserted, one past its capacity.
    fn just_grown() -> (GrowingTable<(u32, u64)>, u32) {
        let mut table: GrowingTable<(u32, u64)> = GrowingTable::with_capacity(100);
        let n = table.current.capacity() as u32 + 1;
        for key in 0..n {
            table.insert_unique(distinct_hash(&(key, 0)), (key, 0), distinct_hash);
        }
        assert!(table.is_moving());
        (table, n)
    }

    #[test]
    fn a_table_emptied_by_removals_ends_its_move() {
        let hasher = distinct_hash;
        let (mut table, full) = just_grown();
        for key in 0..full {
            assert!(table
                .remove(hasher(&(key, 0)), |(k, _)| *k == key)
                .is_some());
        }
        assert!(!table.is_moving());
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn a_move_ends_without_inserts() {
        let hasher = distinct_hash;
        let (mut table, full) = just_grown();
        let mut advances = 0;
        while table.is_moving() {
            table.advance(hasher);
            advances += 1;
        }
        let left = full as usize - 1 - MOVES_PER_INSERT;
        assert_eq!(advances, left.div_ceil(MOVES_PER_INSERT));
        for key in 0..full {
            assert!(table.find(hasher(&(key, 0)), |(k, _)| *k == key).is_some());
        }
    }

    #[test]
    fn growing_at_once_moves_every_entry_in_the_insert_that_grows() {
        let hasher = distinct_hash;
        let (mut table, full) = just_grown();
        let buckets = table.current.num_buckets();
        // Switching to growth at once ends the move under way.
        table.set_growth(Growth::AtOnce, hasher);
        assert!(!table.is_moving());
        assert_eq!(table.old.num_buckets(), 1, "the old allocation is freed");
        assert_eq!(table.current.num_buckets(), buckets, "no further growth");
        // The next growth is over within its insert.
        let mut key = full;
        while table.current.num_buckets() == buckets {
            table.insert_unique(hasher(&(key, 0)), (key, 0), hasher);
            assert!(!table.is_moving());
            key += 1;
        }
        assert_eq!(table.current.num_buckets(), 2 * buckets);
        assert_eq!(table.current.len(), key as usize);
        for k in 0..key {
            assert!(table
                .find(hasher(&(k, 0)), |(found, _)| *found == k)
                .is_some());
        }
        // And back: the growth after that is gradual again.
        table.set_growth(Growth::Gradual, hasher);
        while !table.is_moving() {
            table.insert_unique(hasher(&(key, 0)), (key, 0), hasher);
            key += 1;
        }
        assert_eq!(table.len(), key as usize);
    }
}
