//! The heap bytes the state holds per item, without the allocator's or the kernel's rounding:
//! every allocation's requested size is counted by a wrapping global allocator.
//!
//! `cargo run --release -p statemanager-core --example state_memory -- [ITEMS]` (default
//! 100000) stores ITEMS keys of 1 KiB in `bench/`'s shape (namespace `bench`, keys `k0`…,
//! TTL 3600 s, one batch of 64 stores per millisecond), then stores every key once more
//! in a random order (the indexes' steady state under a benchmark's overwrites), and prints
//! the bytes per item held by the state beyond the data itself. `bench/`'s RSS figure adds the
//! allocator's size classes, the log tail and the rest of the server.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use statemanager_core::State;

mod common;

/// The system allocator, counting the bytes currently allocated.
struct Counting;

static HELD: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const BATCH: usize = 64;
const VALUE: usize = 1024;

fn main() {
    let items = common::items_arg("state_memory", 100_000);
    let mut stores = common::Stores::new("bench", "k", VALUE, 1_000_000_000_000);
    let mut apply = |state: &mut State, keys: &[u64]| {
        std::hint::black_box(state.apply(&stores.batch(keys.iter().copied())));
    };
    let before = HELD.load(Ordering::Relaxed);
    let mut state = State::new();
    let first: Vec<u64> = (0..items).collect();
    for chunk in first.chunks(BATCH) {
        apply(&mut state, chunk);
    }
    report("after the first store of every key", before, items);
    // Every key once more, in an order of xorshift64 (the same in every run).
    let mut again = first;
    let mut random = common::Xorshift::new();
    for i in (1..again.len()).rev() {
        again.swap(i, (random.next() % (i as u64 + 1)) as usize);
    }
    for chunk in again.chunks(BATCH) {
        apply(&mut state, chunk);
    }
    report("after storing every key again", before, items);
    assert_eq!(state.stats().items, items);
}

fn report(when: &str, before: isize, items: u64) {
    let held = (HELD.load(Ordering::Relaxed) - before) as f64;
    let per_item = held / items as f64;
    println!(
        "{items} items, {when}: {per_item:.1} bytes per item, {:.1} beyond the data",
        per_item - VALUE as f64
    );
}
