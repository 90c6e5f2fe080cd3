//! The cost of applying stores of existing keys, without I/O: `State::apply` over batches of
//! 26 stores of 1 KiB to random keys among N held items (the shape of `bench/`'s runs).
//!
//! `cargo run --release -p statemanager-core --example apply_cost -- [ITEMS]` (default 10000)
//! prints the nanoseconds per store of five passes of 2,000 batches and the best of them. A hot
//! loop: in the server the caches are colder, so the real cost is higher (`docs/design.md`,
//! "The state's item lookups").

use std::time::Instant;

use statemanager_core::{Batch, State};

mod common;

const BATCH: usize = 26;
const BATCHES: usize = 2_000;

fn main() {
    let items = common::items_arg("apply_cost", 10_000);
    let mut stores = common::Stores::new("PLUGIN#bench", "key-", 1024, 1_000_000_000);
    let mut state = State::new();
    let all: Vec<u64> = (0..items).collect();
    for chunk in all.chunks(1_000) {
        state.apply(&stores.batch(chunk.iter().copied()));
    }
    let mut random = common::Xorshift::new();
    let mut best = f64::MAX;
    for _ in 0..5 {
        let batches: Vec<Batch> = (0..BATCHES)
            .map(|_| stores.batch((0..BATCH).map(|_| random.next() % items)))
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
