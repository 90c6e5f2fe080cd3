//! Unit tests for each rule, and a property test against a plain reference model.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;
use crate::{Key, Ttl};

const T0: u64 = 1_700_000_000_000_000; // micros

fn ts(secs_after_t0: u64) -> Timestamp {
    Timestamp::from_micros(T0 + secs_after_t0 * 1_000_000)
}

fn id(ns: &str, key: &str) -> ItemId {
    ItemId {
        namespace: Namespace::new(ns).unwrap(),
        key: Key::new(key).unwrap(),
    }
}

fn store(ns: &str, key: &str, data: &str, ttl: u64, timestamp: Option<Timestamp>) -> Op {
    Op::Store(StoreOp {
        id: id(ns, key),
        data: Data::from(data),
        ttl: Ttl::from_secs(ttl).unwrap(),
        timestamp,
    })
}

fn batch(now: Timestamp, limits: Limits, ops: Vec<Op>) -> Batch {
    Batch { now, limits, ops }
}

fn apply_one(state: &mut State, now: Timestamp, op: Op) -> OpOutcome {
    state
        .apply(&batch(now, Limits::default(), vec![op]))
        .remove(0)
}

#[test]
fn store_without_timestamp_is_stamped_with_now() {
    let mut s = State::new();
    let out = apply_one(&mut s, ts(10), store("n", "k", "v", 60, None)).unwrap();
    assert_eq!(out.timestamp, ts(10));
    assert_eq!(out.expires_at, ts(70));
    assert_eq!(s.get(&id("n", "k"), ts(10)).unwrap().data.as_ref(), "v");
}

#[test]
fn future_timestamp_is_replaced_by_now() {
    let mut s = State::new();
    let out = apply_one(&mut s, ts(10), store("n", "k", "v", 60, Some(ts(500)))).unwrap();
    assert_eq!(out.timestamp, ts(10));
}

#[test]
fn past_timestamp_is_kept_and_expiry_is_absolute() {
    let mut s = State::new();
    let out = apply_one(&mut s, ts(100), store("n", "k", "v", 60, Some(ts(50)))).unwrap();
    assert_eq!(out.timestamp, ts(50));
    assert_eq!(out.expires_at, ts(110));
    assert!(s.get(&id("n", "k"), ts(109)).is_some());
    assert!(
        s.get(&id("n", "k"), ts(110)).is_none(),
        "invisible at expiry"
    );
}

#[test]
fn clock_never_goes_backwards() {
    let mut s = State::new();
    apply_one(&mut s, ts(100), store("n", "a", "v", 60, None)).unwrap();
    // A new leader with a clock 50 s behind: the stamp moves on from 100 by 1 µs.
    let out = apply_one(&mut s, ts(50), store("n", "b", "v", 60, None)).unwrap();
    assert_eq!(out.timestamp.as_micros(), ts(100).as_micros() + 1);
    assert_eq!(s.high_water(), out.timestamp);
}

/// Regression (found by the cluster linearizability test): the leader stamps its own batches
/// and the batches followers hand over concurrently, so a batch can be applied after one
/// stamped later. Its first store used to get the previous batch's last stamp and, on the
/// same key, a 409 although it carried no timestamp of its own.
#[test]
fn a_batch_stamped_earlier_but_applied_later_never_conflicts() {
    let mut s = State::new();
    let first = apply_one(&mut s, ts(100), store("n", "k", "one", 60, None)).unwrap();
    for now in [ts(100), ts(99), ts(1)] {
        let out = apply_one(&mut s, now, store("n", "k", "two", 60, None))
            .expect("a store without a timestamp is always the newest");
        assert!(out.timestamp > first.timestamp);
    }
    // An empty batch moves time on; the next stamp is after it.
    s.apply(&batch(ts(200), Limits::default(), vec![]));
    let out = apply_one(&mut s, ts(200), store("n", "k", "three", 60, None)).unwrap();
    assert!(out.timestamp > ts(200));
}

#[test]
fn stores_in_one_batch_get_distinct_increasing_stamps() {
    let mut s = State::new();
    let out = s.apply(&batch(
        ts(10),
        Limits::default(),
        vec![
            store("n", "k", "first", 60, None),
            store("n", "k", "second", 60, None),
            store("n", "j", "x", 60, Some(ts(99))),
        ],
    ));
    let first = out[0].clone().unwrap();
    let second = out[1].clone().unwrap();
    assert_eq!(first.timestamp, ts(10));
    assert_eq!(second.timestamp.as_micros(), ts(10).as_micros() + 1);
    assert_eq!(
        out[2].clone().unwrap().timestamp.as_micros(),
        ts(10).as_micros() + 2
    );
    assert_eq!(
        s.get(&id("n", "k"), ts(10)).unwrap().data.as_ref(),
        "second"
    );
}

#[test]
fn older_store_conflicts_and_carries_stored_timestamp() {
    let mut s = State::new();
    apply_one(&mut s, ts(100), store("n", "k", "new", 600, Some(ts(90)))).unwrap();
    let err = apply_one(&mut s, ts(101), store("n", "k", "old", 600, Some(ts(80)))).unwrap_err();
    assert_eq!(err, DomainError::Conflict { stored: ts(90) });
    assert_eq!(s.get(&id("n", "k"), ts(101)).unwrap().data.as_ref(), "new");
}

#[test]
fn equal_timestamp_same_data_is_idempotent_and_first_ttl_stands() {
    let mut s = State::new();
    let first = apply_one(&mut s, ts(100), store("n", "k", "v", 60, Some(ts(90)))).unwrap();
    let again = apply_one(&mut s, ts(101), store("n", "k", "v", 9999, Some(ts(90)))).unwrap();
    assert_eq!(first, again);
    assert_eq!(s.get(&id("n", "k"), ts(101)).unwrap().expires_at, ts(150));
}

#[test]
fn equal_timestamp_different_data_conflicts() {
    let mut s = State::new();
    apply_one(&mut s, ts(100), store("n", "k", "v", 60, Some(ts(90)))).unwrap();
    let err = apply_one(&mut s, ts(101), store("n", "k", "w", 60, Some(ts(90)))).unwrap_err();
    assert_eq!(err, DomainError::Conflict { stored: ts(90) });
}

#[test]
fn newer_store_replaces() {
    let mut s = State::new();
    apply_one(&mut s, ts(100), store("n", "k", "v", 60, None)).unwrap();
    apply_one(&mut s, ts(101), store("n", "k", "w", 5, None)).unwrap();
    let item = s.get(&id("n", "k"), ts(101)).unwrap();
    assert_eq!(item.data.as_ref(), "w");
    assert_eq!(item.expires_at, ts(106));
    assert_eq!(s.stats().items, 1);
    assert_eq!(s.stats().data_bytes, 1);
}

#[test]
fn expired_item_counts_as_absent_for_conflicts() {
    let mut s = State::new();
    apply_one(&mut s, ts(100), store("n", "k", "v", 10, None)).unwrap();
    // At 200 the item (timestamp 100) is expired; an older store (timestamp 50) is accepted
    // but itself already expired, so nothing is visible.
    let out = apply_one(&mut s, ts(200), store("n", "k", "x", 10, Some(ts(50)))).unwrap();
    assert_eq!(out.timestamp, ts(50));
    assert!(s.get(&id("n", "k"), ts(200)).is_none());
    // A store with an old timestamp but a long TTL becomes visible.
    apply_one(&mut s, ts(201), store("n", "k", "y", 1000, Some(ts(60)))).unwrap();
    assert_eq!(s.get(&id("n", "k"), ts(201)).unwrap().data.as_ref(), "y");
}

#[test]
fn already_expired_on_arrival_is_acknowledged_never_visible() {
    let mut s = State::new();
    let out = apply_one(&mut s, ts(100), store("n", "k", "v", 10, Some(ts(50)))).unwrap();
    assert_eq!(out.expires_at, ts(60));
    assert!(s.get(&id("n", "k"), ts(100)).is_none());
    assert_eq!(s.stats().items, 0);
}

#[test]
fn already_expired_newer_store_removes_older_item() {
    let mut s = State::new();
    apply_one(&mut s, ts(100), store("n", "k", "v", 1000, Some(ts(10)))).unwrap();
    apply_one(&mut s, ts(100), store("n", "k", "w", 10, Some(ts(20)))).unwrap();
    assert!(s.get(&id("n", "k"), ts(100)).is_none());
    assert_eq!(s.stats().items, 0);
}

#[test]
fn delete_removes_and_reports_absence() {
    let mut s = State::new();
    apply_one(&mut s, ts(1), store("n", "k", "v", 60, None)).unwrap();
    let gone = apply_one(&mut s, ts(2), Op::Delete(id("n", "k"))).unwrap();
    assert_eq!(gone.timestamp, ts(1));
    assert!(s.get(&id("n", "k"), ts(2)).is_none());
    assert_eq!(s.stats().items, 0);
    assert_eq!(
        apply_one(&mut s, ts(3), Op::Delete(id("n", "k"))),
        Err(DomainError::NotFound),
        "idempotent: a second delete finds nothing"
    );
}

#[test]
fn oversized_item_is_refused() {
    let mut s = State::new();
    let limits = Limits {
        max_item_bytes: 4,
        ..Limits::default()
    };
    let out = s.apply(&batch(
        ts(1),
        limits,
        vec![store("n", "k", "12345", 60, None)],
    ));
    assert_eq!(out[0], Err(DomainError::ItemTooLarge { size: 5, limit: 4 }));
    let out = s.apply(&batch(
        ts(1),
        limits,
        vec![store("n", "k", "ü12", 60, None)],
    ));
    assert!(out[0].is_ok(), "limit counts UTF-8 bytes: 4 bytes fit");
}

#[test]
fn store_full_refuses_new_keys_but_allows_updates() {
    let mut s = State::new();
    let limits = Limits {
        max_items: 2,
        ..Limits::default()
    };
    let out = s.apply(&batch(
        ts(1),
        limits,
        vec![
            store("n", "a", "v", 60, None),
            store("n", "b", "v", 60, None),
            store("n", "c", "v", 60, None),
        ],
    ));
    assert!(out[0].is_ok() && out[1].is_ok());
    assert_eq!(
        out[2],
        Err(DomainError::StoreFull {
            scope: FullScope::Store,
            limit: 2
        })
    );
    let out = s.apply(&batch(ts(2), limits, vec![store("n", "a", "w", 60, None)]));
    assert!(out[0].is_ok(), "updating an existing key works when full");
}

#[test]
fn expired_items_do_not_count_against_limits() {
    let mut s = State::new();
    let limits = Limits {
        max_items: 1,
        ..Limits::default()
    };
    s.apply(&batch(ts(1), limits, vec![store("n", "a", "v", 5, None)]));
    let out = s.apply(&batch(ts(6), limits, vec![store("n", "b", "v", 5, None)]));
    assert!(out[0].is_ok());
}

#[test]
fn namespace_limit_applies_per_namespace() {
    let mut s = State::new();
    let limits = Limits {
        max_items_per_namespace: Some(1),
        ..Limits::default()
    };
    let out = s.apply(&batch(
        ts(1),
        limits,
        vec![
            store("n1", "a", "v", 60, None),
            store("n1", "b", "v", 60, None),
            store("n2", "a", "v", 60, None),
        ],
    ));
    assert!(out[0].is_ok());
    assert_eq!(
        out[1],
        Err(DomainError::StoreFull {
            scope: FullScope::Namespace,
            limit: 1
        })
    );
    assert!(out[2].is_ok());
}

#[test]
fn empty_batch_purges_expired_items() {
    let mut s = State::new();
    apply_one(&mut s, ts(1), store("n", "a", "v", 5, None)).unwrap();
    apply_one(&mut s, ts(2), store("n", "b", "v", 50, None)).unwrap();
    assert_eq!(s.next_expiry(), Some(ts(6)));
    s.apply(&batch(ts(10), Limits::default(), vec![]));
    assert_eq!(s.stats().items, 1);
    assert_eq!(s.next_expiry(), Some(ts(52)));
}

/// An expiry entry that no item matches (a broken invariant) must not hang the purge: it is
/// dropped, and an item with another expiry under the same id stays.
#[test]
fn a_stale_expiry_entry_is_dropped_not_looped_on() {
    let mut s = State::new();
    apply_one(&mut s, ts(1), store("n", "a", "v", 50, None)).unwrap();
    s.expiry.insert((ts(3), s.hasher.hash(&id("n", "gone"))));
    s.expiry.insert((ts(4), s.hasher.hash(&id("n", "a"))));
    s.apply(&batch(ts(10), Limits::default(), vec![]));
    assert_eq!(s.stats().items, 1);
    assert_eq!(s.next_expiry(), Some(ts(51)));
    s.assert_invariants();
}

/// Items whose ids hash alike and that expire together share one expiry entry: it stays
/// while one of them keeps that expiry, and the purge takes all of them.
#[test]
fn items_sharing_an_expiry_entry_are_each_purged() {
    let mut s = State::with_few_hashes(1);
    let at = Some(ts(1));
    for key in ["a", "b", "c"] {
        apply_one(&mut s, ts(2), store("n", key, "v", 10, at)).unwrap();
    }
    assert_eq!(s.expiry.len(), 1);
    s.assert_invariants();
    // "a" moves on; "b" and "c" still expire at 11 through the shared entry.
    apply_one(&mut s, ts(3), store("n", "a", "w", 100, None)).unwrap();
    assert_eq!(s.expiry.len(), 2);
    s.assert_invariants();
    // Deleting "b" leaves the entry to "c".
    apply_one(&mut s, ts(4), Op::Delete(id("n", "b"))).unwrap();
    assert_eq!(s.expiry.len(), 2);
    s.assert_invariants();
    s.apply(&batch(ts(12), Limits::default(), vec![]));
    assert_eq!(s.stats().items, 1);
    assert!(s.get(&id("n", "c"), ts(12)).is_none());
    assert!(s.get(&id("n", "a"), ts(12)).is_some());
    assert_eq!(s.next_expiry(), Some(ts(103)));
    s.assert_invariants();
}

#[test]
fn from_parts_round_trips() {
    let mut s = State::new();
    apply_one(&mut s, ts(1), store("n", "a", "v", 5, None)).unwrap();
    apply_one(&mut s, ts(2), store("m", "b", "w", 50, None)).unwrap();
    let copy = State::from_parts(
        s.high_water(),
        s.iter().map(|(k, v)| (k.clone(), v.clone())),
    );
    assert_eq!(copy, s);
    assert_eq!(copy.stats(), s.stats());
}

// ---------------------------------------------------------------------------------------
// Property tests against a reference model written as plainly as possible.

#[derive(Debug, Clone)]
struct ModelItem {
    data: String,
    timestamp: u64,
    expires_at: u64,
}

#[derive(Debug, Default)]
struct Model {
    items: HashMap<(String, String), ModelItem>,
    high_water: u64,
}

impl Model {
    fn live(&self, now: u64) -> impl Iterator<Item = (&(String, String), &ModelItem)> {
        self.items.iter().filter(move |(_, i)| i.expires_at > now)
    }

    fn apply(
        &mut self,
        now: u64,
        limits: Limits,
        ops: &[ModelOp],
    ) -> Vec<Result<(u64, u64), &'static str>> {
        let start = now.max(self.high_water);
        self.items.retain(|_, i| i.expires_at > start);
        let batch_now = now;
        let mut out = vec![];
        for op in ops {
            // Each op gets its own stamp, strictly after every stamp given before.
            let now = batch_now.max(self.high_water + 1);
            self.high_water = now;
            self.items.retain(|_, i| i.expires_at > now);
            if op.delete {
                let k = (op.ns.clone(), op.key.clone());
                out.push(match self.items.remove(&k) {
                    Some(old) => Ok((old.timestamp, old.expires_at)),
                    None => Err("not_found"),
                });
                continue;
            }
            if op.data.len() as u64 > limits.max_item_bytes {
                out.push(Err("too_large"));
                continue;
            }
            let t = match op.timestamp {
                Some(t) if t <= now => t,
                _ => now,
            };
            let exp = t + op.ttl * 1_000_000;
            let k = (op.ns.clone(), op.key.clone());
            if let Some(old) = self.items.get(&k) {
                if t < old.timestamp || (t == old.timestamp && old.data != op.data) {
                    out.push(Err("conflict"));
                    continue;
                }
                if t == old.timestamp {
                    out.push(Ok((old.timestamp, old.expires_at)));
                    continue;
                }
            } else if exp > now {
                let total = self.live(now).count() as u64;
                let in_ns = self.live(now).filter(|((n, _), _)| *n == op.ns).count() as u64;
                if total >= limits.max_items
                    || limits.max_items_per_namespace.is_some_and(|l| in_ns >= l)
                {
                    out.push(Err("full"));
                    continue;
                }
            }
            self.items.remove(&k);
            if exp > now {
                self.items.insert(
                    k,
                    ModelItem {
                        data: op.data.clone(),
                        timestamp: t,
                        expires_at: exp,
                    },
                );
            }
            out.push(Ok((t, exp)));
        }
        self.high_water = self.high_water.max(start);
        out
    }
}

#[derive(Debug, Clone)]
struct ModelOp {
    delete: bool,
    ns: String,
    key: String,
    data: String,
    ttl: u64,
    timestamp: Option<u64>,
}

fn model_op() -> impl Strategy<Value = ModelOp> {
    (
        prop::sample::select(vec!["n1", "n2"]),
        prop::sample::select(vec!["a", "b", "c", "d"]),
        prop::sample::select(vec!["x", "y", "zzzzzz"]),
        1u64..40,
        prop::option::of(0u64..120),
        prop::bool::weighted(0.15),
    )
        .prop_map(|(ns, key, data, ttl, t, delete)| ModelOp {
            delete,
            ns: ns.into(),
            key: key.into(),
            data: data.into(),
            ttl,
            timestamp: t.map(|s| T0 + s * 1_000_000),
        })
}

fn to_op(m: &ModelOp) -> Op {
    if m.delete {
        return Op::Delete(id(&m.ns, &m.key));
    }
    store(
        &m.ns,
        &m.key,
        &m.data,
        m.ttl,
        m.timestamp.map(Timestamp::from_micros),
    )
}

fn outcome_kind(o: &OpOutcome) -> Result<(u64, u64), &'static str> {
    match o {
        Ok(s) => Ok((s.timestamp.as_micros(), s.expires_at.as_micros())),
        Err(DomainError::Conflict { .. }) => Err("conflict"),
        Err(DomainError::ItemTooLarge { .. }) => Err("too_large"),
        Err(DomainError::StoreFull { .. }) => Err("full"),
        Err(DomainError::InvalidRequest(_)) => Err("invalid"),
        Err(DomainError::NotFound) => Err("not_found"),
    }
}

/// Feeds `batches` to a state (hashing ids to `few_hashes` values, if given), to a replica
/// and to the model, and checks outcomes, reads, replica equality and the invariants.
fn check_against_model(
    batches: &[(u64, Vec<ModelOp>)],
    limits: Limits,
    few_hashes: Option<u64>,
) -> Result<(), TestCaseError> {
    let mut state = few_hashes.map_or_else(State::new, State::with_few_hashes);
    let mut replica = State::new();
    let mut model = Model::default();
    for (now_s, ops) in batches {
        let now = T0 + now_s * 1_000_000;
        let b = batch(
            Timestamp::from_micros(now),
            limits,
            ops.iter().map(to_op).collect(),
        );
        let got: Vec<_> = state.apply(&b).iter().map(outcome_kind).collect();
        let again: Vec<_> = replica.apply(&b).iter().map(outcome_kind).collect();
        let want = model.apply(now, limits, ops);
        prop_assert_eq!(&got, &want);
        prop_assert_eq!(&got, &again);
        state.assert_invariants();
        // Batch times arrive in any order: a store without its own timestamp still never
        // conflicts (it is stamped after everything applied before it).
        for (op, outcome) in ops.iter().zip(&got) {
            if !op.delete && op.timestamp.is_none() {
                prop_assert_ne!(outcome, &Err("conflict"));
            }
        }
        prop_assert_eq!(&state, &replica);

        // Reads at several times agree with the model, and never show expired items.
        let applied_now = state.high_water().as_micros();
        for read_s in [0u64, 1, 10, 60] {
            let at = applied_now + read_s * 1_000_000;
            for ns in ["n1", "n2"] {
                for key in ["a", "b", "c", "d"] {
                    let got = state.get(&id(ns, key), Timestamp::from_micros(at));
                    let want = model
                        .items
                        .get(&(ns.to_string(), key.to_string()))
                        .filter(|i| i.expires_at > at);
                    prop_assert_eq!(
                        got.map(|i| i.data.to_string()),
                        want.map(|i| i.data.clone())
                    );
                    if let Some(i) = got {
                        prop_assert!(i.expires_at.as_micros() > at);
                    }
                }
            }
        }
        let stats = state.stats();
        prop_assert!(stats.items <= limits.max_items);
        prop_assert_eq!(stats.items as usize, model.items.len());
    }
    Ok(())
}

/// Model operations on few keys with few expiries: client timestamps of 0–3 s and TTLs of
/// 5 or 10 s, so that items often expire at the same moment.
fn model_op_alike() -> impl Strategy<Value = ModelOp> {
    (
        prop::sample::select(vec!["a", "b", "c", "d"]),
        prop::sample::select(vec!["x", "y"]),
        prop::sample::select(vec![5u64, 10]),
        prop::option::of(0u64..4),
        prop::bool::weighted(0.15),
    )
        .prop_map(|(key, data, ttl, t, delete)| ModelOp {
            delete,
            ns: "n1".into(),
            key: key.into(),
            data: data.into(),
            ttl,
            timestamp: t.map(|s| T0 + s * 1_000_000),
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The state machine agrees with the model on every outcome and every read, replicas fed
    /// the same batches end equal, and no expired item is ever returned. Half the cases hash
    /// every id to one of a few values (the replica hashes as in production).
    #[test]
    fn matches_reference_model(
        batches in prop::collection::vec(
            ((0u64..150), prop::collection::vec(model_op(), 0..6)),
            1..25,
        ),
        max_items in 1u64..6,
        per_ns in prop::option::of(1u64..4),
        max_bytes in 1u64..8,
        few_hashes in prop::option::of(1u64..4),
    ) {
        let limits = Limits { max_item_bytes: max_bytes, max_items, max_items_per_namespace: per_ns };
        check_against_model(&batches, limits, few_hashes)?;
    }

    /// The same, with ids hashed to a few values and a few expiries, so that items often
    /// share expiry entries and move off them.
    #[test]
    fn matches_reference_model_with_shared_expiry_entries(
        batches in prop::collection::vec(
            ((0u64..20), prop::collection::vec(model_op_alike(), 0..6)),
            1..25,
        ),
        few_hashes in 1u64..3,
    ) {
        let limits = Limits { max_item_bytes: 8, max_items: 8, max_items_per_namespace: None };
        check_against_model(&batches, limits, Some(few_hashes))?;
    }

    /// A store never replaces an item with an older timestamp.
    #[test]
    fn no_older_timestamp_is_accepted(ops in prop::collection::vec(model_op(), 1..40)) {
        let mut state = State::new();
        let now = Timestamp::from_micros(T0 + 200 * 1_000_000);
        for op in &ops {
            let before = state.get(&id(&op.ns, &op.key), now).cloned();
            let out = state.apply(&batch(now, Limits::default(), vec![to_op(op)])).remove(0);
            if let (Some(before), Ok(stored)) = (before, out) {
                prop_assert!(stored.timestamp >= before.timestamp);
            }
        }
    }
}
