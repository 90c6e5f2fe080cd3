//! What the core examples share: the item count from the command line, limits that bound
//! nothing, stores of one value to numbered keys in batches a millisecond apart, and a
//! seeded random source (the same keys in every run).
// Each example uses a part of this.
#![allow(dead_code)]

use statemanager_core::{Batch, Limits, Op, StoreOp, Timestamp};

/// The first argument as an item count (`default` without one); exits with a usage line
/// naming `example` when it is not a count above zero.
pub fn items_arg(example: &str, default: u64) -> u64 {
    match std::env::args().nth(1) {
        Some(arg) => match arg.parse() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!("usage: {example} [ITEMS > 0]");
                std::process::exit(2);
            }
        },
        None => default,
    }
}

/// Stores of `data` to keys `{prefix}{i}` of one namespace, batched with a stamp one
/// millisecond after the previous batch's, under limits that bound neither the item count
/// nor namespaces.
pub struct Stores {
    namespace: &'static str,
    prefix: &'static str,
    data: String,
    limits: Limits,
    now_micros: u64,
}

impl Stores {
    /// Stores of `value_size` bytes; the first batch is stamped after `start_micros`.
    pub fn new(
        namespace: &'static str,
        prefix: &'static str,
        value_size: usize,
        start_micros: u64,
    ) -> Self {
        Stores {
            namespace,
            prefix,
            data: "x".repeat(value_size),
            limits: Limits {
                max_item_bytes: 16 * 1024,
                max_items: u64::MAX,
                max_items_per_namespace: None,
            },
            now_micros: start_micros,
        }
    }

    /// The store of key number `i`.
    pub fn store(&self, i: u64) -> Op {
        let key = format!("{}{i}", self.prefix);
        let op = StoreOp::new(self.namespace, &key, &self.data, 3600.0, None, &self.limits);
        Op::Store(op.expect("a valid store"))
    }

    /// A batch of the stores of `keys`, stamped a millisecond after the previous one.
    pub fn batch(&mut self, keys: impl IntoIterator<Item = u64>) -> Batch {
        self.now_micros += 1_000;
        let ops = keys.into_iter().map(|i| self.store(i)).collect();
        Batch {
            now: Timestamp::from_micros(self.now_micros),
            limits: self.limits,
            ops,
        }
    }
}

/// xorshift64 from a fixed seed: the same sequence in every run.
pub struct Xorshift(u64);

impl Xorshift {
    /// The sequence every example uses.
    pub fn new() -> Self {
        Xorshift(0x2545_f491_4f6c_dd1d)
    }

    /// The next number of the sequence.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
