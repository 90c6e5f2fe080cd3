//! The checker on hand-made histories, good and bad.

use super::*;

fn store(key: &str, call: u64, ret: u64, data: &str, ts: Option<u64>, out: Output) -> Operation {
    Operation {
        key: key.into(),
        call,
        ret,
        input: Input::Store {
            data: data.into(),
            timestamp: ts,
        },
        output: out,
    }
}

fn fetch(key: &str, call: u64, ret: u64, out: Output) -> Operation {
    Operation {
        key: key.into(),
        call,
        ret,
        input: Input::Fetch,
        output: out,
    }
}

fn found(data: &str, ts: u64) -> Output {
    Output::Found {
        data: data.into(),
        timestamp: ts,
    }
}

const B: usize = 100_000;

#[test]
fn sequential_history_is_linearizable() {
    let h = vec![
        fetch("k", 0, 1, Output::NotFound),
        store("k", 2, 3, "a", None, Output::Stored { timestamp: 10 }),
        fetch("k", 4, 5, found("a", 10)),
        store("k", 6, 7, "b", None, Output::Stored { timestamp: 20 }),
        fetch("k", 8, 9, found("b", 20)),
    ];
    assert_eq!(check(&h, B), Verdict::Linearizable);
}

#[test]
fn stale_read_after_acknowledged_write_is_caught() {
    let h = vec![
        store("k", 0, 1, "a", None, Output::Stored { timestamp: 10 }),
        store("k", 2, 3, "b", None, Output::Stored { timestamp: 20 }),
        fetch("k", 4, 5, found("a", 10)), // must see b
    ];
    assert_eq!(check(&h, B), Verdict::NotLinearizable { key: "k".into() });
}

#[test]
fn lost_acknowledged_write_is_caught() {
    let h = vec![
        store("k", 0, 1, "a", None, Output::Stored { timestamp: 10 }),
        fetch("k", 2, 3, Output::NotFound),
    ];
    assert_eq!(check(&h, B), Verdict::NotLinearizable { key: "k".into() });
}

#[test]
fn concurrent_operations_may_go_either_way() {
    let h = vec![
        store("k", 0, 10, "a", None, Output::Stored { timestamp: 10 }),
        fetch("k", 1, 9, Output::NotFound),
        fetch("k", 2, 8, found("a", 10)),
    ];
    assert_eq!(check(&h, B), Verdict::Linearizable);
    // But not reading old after reading new, when the reads do not overlap.
    let h = vec![
        store("k", 0, 10, "a", None, Output::Stored { timestamp: 10 }),
        fetch("k", 1, 2, found("a", 10)),
        fetch("k", 3, 4, Output::NotFound),
    ];
    assert_eq!(check(&h, B), Verdict::NotLinearizable { key: "k".into() });
}

#[test]
fn the_409_rule() {
    // An older store conflicts, carrying the held timestamp.
    let ok = vec![
        store("k", 0, 1, "a", Some(100), Output::Stored { timestamp: 100 }),
        store("k", 2, 3, "b", Some(50), Output::Conflict { stored: 100 }),
        fetch("k", 4, 5, found("a", 100)),
    ];
    assert_eq!(check(&ok, B), Verdict::Linearizable);
    // Both an older and a newer store succeeding in that real-time order is a violation (the
    // Opsview caveat this store must not have).
    let bad = vec![
        store("k", 0, 1, "a", Some(100), Output::Stored { timestamp: 100 }),
        store("k", 2, 3, "b", Some(50), Output::Stored { timestamp: 50 }),
    ];
    assert_eq!(check(&bad, B), Verdict::NotLinearizable { key: "k".into() });
    // A 409 with nothing newer stored is a violation.
    let bad = vec![store(
        "k",
        0,
        1,
        "b",
        Some(50),
        Output::Conflict { stored: 100 },
    )];
    assert_eq!(check(&bad, B), Verdict::NotLinearizable { key: "k".into() });
    // Equal timestamp, same data: an idempotent retry succeeds.
    let ok = vec![
        store("k", 0, 1, "a", Some(100), Output::Stored { timestamp: 100 }),
        store("k", 2, 3, "a", Some(100), Output::Stored { timestamp: 100 }),
    ];
    assert_eq!(check(&ok, B), Verdict::Linearizable);
}

#[test]
fn unknown_outcomes_may_or_may_not_have_happened() {
    // A timed-out store later seen by a read: it happened.
    let h = vec![
        store("k", 0, 1, "a", None, Output::Unknown),
        fetch("k", 5, 6, found("a", 77)),
        fetch("k", 7, 8, found("a", 77)),
    ];
    assert_eq!(check(&h, B), Verdict::Linearizable);
    // Or never seen: it did not happen (or was overwritten).
    let h = vec![
        store("k", 0, 1, "a", None, Output::Unknown),
        fetch("k", 5, 6, Output::NotFound),
    ];
    assert_eq!(check(&h, B), Verdict::Linearizable);
    // But it cannot take effect before it was invoked.
    let h = vec![
        fetch("k", 0, 1, found("a", 77)),
        store("k", 5, 6, "a", None, Output::Unknown),
    ];
    assert_eq!(check(&h, B), Verdict::NotLinearizable { key: "k".into() });
}

#[test]
fn keys_are_checked_independently() {
    let h = vec![
        store("a", 0, 1, "x", None, Output::Stored { timestamp: 10 }),
        store("b", 0, 1, "y", None, Output::Stored { timestamp: 11 }),
        fetch("a", 2, 3, found("x", 10)),
        fetch("b", 2, 3, Output::NotFound),
    ];
    assert_eq!(check(&h, B), Verdict::NotLinearizable { key: "b".into() });
}
