//! The longest single `State::apply` while the state grows: batches of 64 stores of new keys
//! of 1 KiB, timed one by one, up to ITEMS items.
//!
//! `cargo run --release -p statemanager-core --example state_growth -- [ITEMS]` (default
//! 2,000,000) prints the median apply, the five longest with the item count they were applied
//! at, and the total. The item table's growth shows as the longest applies
//! (`docs/design.md`, "The item table grows a step at a time").

use std::time::{Duration, Instant};

use statemanager_core::State;

mod common;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: u64 = 64;
const VALUE: usize = 1024;

fn main() {
    let items = common::items_arg("state_growth", 2_000_000);
    let mut stores = common::Stores::new("bench", "k", VALUE, 1_000_000_000_000);
    let mut state = State::new();
    let mut times: Vec<(Duration, u64)> = Vec::with_capacity((items / BATCH + 1) as usize);
    let started = Instant::now();
    let mut next = 0;
    while next < items {
        let end = (next + BATCH).min(items);
        let batch = stores.batch(next..end);
        let began = Instant::now();
        std::hint::black_box(state.apply(&batch));
        times.push((began.elapsed(), next));
        next = end;
    }
    let total = started.elapsed();
    let mut sorted: Vec<Duration> = times.iter().map(|(t, _)| *t).collect();
    sorted.sort();
    println!(
        "{items} items in {} batches, {:.2} s in all; apply median {} µs, p99.9 {} µs",
        times.len(),
        total.as_secs_f64(),
        sorted[sorted.len() / 2].as_micros(),
        sorted[sorted.len() * 999 / 1000].as_micros()
    );
    times.sort_by_key(|(time, _)| std::cmp::Reverse(*time));
    for (time, at) in times.iter().take(5) {
        println!("  {:>9.3} ms at {at} items", time.as_secs_f64() * 1e3);
    }
}
