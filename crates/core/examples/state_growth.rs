//! The longest single `State::apply` while the state grows: batches of 64 stores of new keys
//! of 1 KiB, timed one by one, up to ITEMS items.
//!
//! `cargo run --release -p statemanager-core --example state_growth -- [ITEMS]` (default
//! 2,000,000) prints the median apply, the five longest with the item count they were applied
//! at, and the total. The item table's growth shows as the longest applies
//! (`docs/design.md`, "The item table grows a step at a time").

use std::time::{Duration, Instant};

use statemanager_core::{Batch, Limits, Op, State, StoreOp, Timestamp};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: u64 = 64;
const VALUE: usize = 1024;

fn main() {
    let items: u64 = match std::env::args().nth(1) {
        Some(arg) => match arg.parse() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!("usage: state_growth [ITEMS > 0]");
                std::process::exit(2);
            }
        },
        None => 2_000_000,
    };
    let limits = Limits {
        max_item_bytes: 16 * 1024,
        max_items: u64::MAX,
        max_items_per_namespace: None,
    };
    let data = "x".repeat(VALUE);
    let mut state = State::new();
    let mut now = 1_000_000_000_000;
    let mut times: Vec<(Duration, u64)> = Vec::with_capacity((items / BATCH + 1) as usize);
    let started = Instant::now();
    let mut next = 0;
    while next < items {
        let end = (next + BATCH).min(items);
        now += 1_000;
        let ops = (next..end)
            .map(|i| {
                let op = StoreOp::new("bench", &format!("k{i}"), &data, 3600.0, None, &limits);
                Op::Store(op.expect("a valid store"))
            })
            .collect();
        let batch = Batch {
            now: Timestamp::from_micros(now),
            limits,
            ops,
        };
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
