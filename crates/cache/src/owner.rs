//! Which node owns a cache key: rendezvous (highest-random-weight) hashing.
//!
//! Every node ranks the members for `(namespace, key)` by a weight computed from the node id
//! and the key alone, and the highest weight owns the key. The ranking needs no shared state
//! and no coordination: every node that sees the same members computes the same order. When a
//! member leaves (or is marked down) only its keys move, each to the next member in its own
//! order; when one joins it takes only the keys it now ranks first for. The rest of the order
//! is the fall-back list: the node to use when the owner does not answer.
//!
//! The hash is fixed here (FNV-1a over the key, mixed with the node id by SplitMix64's
//! finaliser) and must never change between versions: nodes running different versions must
//! rank keys the same way, or each would send a key to a different owner.

/// FNV-1a over the namespace, a separator byte no UTF-8 text contains, and the key.
fn key_hash(namespace: &str, key: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= *byte as u64;
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(namespace.as_bytes());
    eat(&[0xff]);
    eat(key.as_bytes());
    hash
}

/// SplitMix64's finaliser: spreads every input bit over the whole word.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The weight of `node` for a key of hash `key_hash`.
fn weight(node: u64, key_hash: u64) -> u64 {
    mix(key_hash ^ mix(node.wrapping_add(0x9e37_79b9_7f4a_7c15)))
}

/// `members` in the order they should hold `(namespace, key)`: the owner first, then the
/// nodes to fall back to. Ties (never seen in practice) go to the lower id.
pub fn rank(namespace: &str, key: &str, members: &[u64]) -> Vec<u64> {
    let h = key_hash(namespace, key);
    let mut ranked: Vec<(u64, u64)> = members.iter().map(|&m| (weight(m, h), m)).collect();
    ranked.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    ranked.dedup_by_key(|(_, m)| *m);
    ranked.into_iter().map(|(_, m)| m).collect()
}

/// The owner of `(namespace, key)` among `members` (`None` when there are none).
pub fn owner(namespace: &str, key: &str, members: &[u64]) -> Option<u64> {
    let h = key_hash(namespace, key);
    members
        .iter()
        .map(|&m| (weight(m, h), m))
        .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
        .map(|(_, m)| m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("key-{i}")).collect()
    }

    #[test]
    fn the_owner_is_stable_and_the_same_whatever_the_member_order() {
        // Fixed values: a change of hash would split a mixed-version cluster.
        assert_eq!(key_hash("", ""), 0xaf64_724c_8602_eb6e);
        let members = [1, 2, 3];
        for key in keys(200) {
            let a = rank("PLUGIN#p", &key, &members);
            let b = rank("PLUGIN#p", &key, &[3, 1, 2, 2]);
            assert_eq!(a, b, "{key}");
            assert_eq!(a.len(), 3);
            assert_eq!(owner("PLUGIN#p", &key, &members), Some(a[0]));
        }
        assert_eq!(owner("n", "k", &[]), None);
        assert_eq!(rank("n", "k", &[7]), vec![7]);
        // The namespace is part of the key: (a, bc) and (ab, c) are different keys.
        let differ = keys(100)
            .iter()
            .filter(|k| rank("a", &format!("b{k}"), &members) != rank("ab", k, &members))
            .count();
        assert!(differ > 30, "{differ}");
    }

    #[test]
    fn keys_spread_evenly() {
        let members = [1, 2, 3];
        let mut counts = [0usize; 3];
        let n = 30_000;
        for key in keys(n) {
            let o = owner("PLUGIN#check", &key, &members).unwrap();
            counts[(o - 1) as usize] += 1;
        }
        for c in counts {
            // 10,000 expected each; ±5 % is far beyond chance for a good hash.
            assert!((9_500..=10_500).contains(&c), "{counts:?}");
        }
        // Node ids need not be small or consecutive.
        let members = [17, 1_000_003, 42, 9];
        let mut counts = std::collections::HashMap::new();
        for key in keys(40_000) {
            *counts
                .entry(owner("n", &key, &members).unwrap())
                .or_insert(0) += 1;
        }
        for m in members {
            assert!((9_400..=10_600).contains(&counts[&m]), "{counts:?}");
        }
    }

    #[test]
    fn only_the_keys_of_a_node_that_leaves_or_joins_move() {
        let before = [1, 2, 3];
        let after_leave = [1, 3];
        let after_join = [1, 2, 3, 4];
        let (mut moved_leave, mut moved_join) = (0, 0);
        let n = 9_000;
        for key in keys(n) {
            let was = owner("n", &key, &before).unwrap();
            let now = owner("n", &key, &after_leave).unwrap();
            if was != 2 {
                assert_eq!(now, was, "{key} moved though its owner stayed");
            } else {
                // It goes to the next node in its own order: the fall-back every node uses.
                assert_eq!(now, rank("n", &key, &before)[1]);
                moved_leave += 1;
            }
            let joined = owner("n", &key, &after_join).unwrap();
            if joined != was {
                assert_eq!(joined, 4, "{key} moved to a node that was already there");
                moved_join += 1;
            }
        }
        // About a third leave with node 2, about a quarter go to node 4.
        assert!((2_700..=3_300).contains(&moved_leave), "{moved_leave}");
        assert!((2_000..=2_500).contains(&moved_join), "{moved_join}");
    }
}
