//! The cost of applying stores of existing keys, without I/O: `State::apply` over batches of
//! 26 stores of 1 KiB to random keys among N held items (the shape of `bench/`'s runs).
//!
//! `cargo run --release -p statemanager-core --example apply_cost -- [ITEMS]` (default 10000)
//! prints the nanoseconds per store of five passes of 2,000 batches and the best of them. A hot
//! loop: in the server the caches are colder, so the real cost is higher (`docs/design.md`,
//! "The state's item lookups").

use std::time::Instant;

use statemanager_core::{Batch, Limits, Op, State, StoreOp, Timestamp};

const BATCH: usize = 26;
const BATCHES: usize = 2_000;

fn main() {
    let items: usize = match std::env::args().nth(1) {
        Some(arg) => match arg.parse() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!("usage: apply_cost [ITEMS > 0]");
                std::process::exit(2);
            }
        },
        None => 10_000,
    };
    let limits = Limits {
        max_item_bytes: 16 * 1024,
        max_items: u64::MAX,
        max_items_per_namespace: None,
    };
    let data = "x".repeat(1024);
    let store = |i: u64| {
        let op = StoreOp::new(
            "PLUGIN#bench",
            &format!("key-{i}"),
            &data,
            3600.0,
            None,
            &limits,
        );
        Op::Store(op.expect("a valid store"))
    };
    let mut now = 1_000_000_000;
    let mut batch = |ops: Vec<Op>| {
        now += 1_000;
        Batch {
            now: Timestamp::from_micros(now),
            limits,
            ops,
        }
    };
    let mut state = State::new();
    let all: Vec<u64> = (0..items as u64).collect();
    for chunk in all.chunks(1_000) {
        state.apply(&batch(chunk.iter().map(|&i| store(i)).collect()));
    }
    // xorshift64: the same keys in every run.
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut random_key = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % items as u64
    };
    let mut best = f64::MAX;
    for _ in 0..5 {
        let batches: Vec<Batch> = (0..BATCHES)
            .map(|_| batch((0..BATCH).map(|_| store(random_key())).collect()))
            .collect();
        let start = Instant::now();
        for b in &batches {
            std::hint::black_box(state.apply(b));
        }
        let ns = start.elapsed().as_nanos() as f64 / (BATCHES * BATCH) as f64;
        best = best.min(ns);
        println!("{items} items: {ns:.0} ns per store");
    }
    println!("best: {best:.0} ns per store");
}
