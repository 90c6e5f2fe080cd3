//! Linearizability checking for State Manager histories.
//!
//! A history is what clients saw: each operation with its invocation and response times and
//! its outcome. The checker asks whether some order of the operations, consistent with
//! real time (an operation that returned before another was invoked comes first), explains
//! every outcome under the sequential model of one key:
//!
//! - the key holds nothing, or `(timestamp, data)`;
//! - a store with timestamp `t` succeeds iff the key is empty, or `t` is newer than the held
//!   timestamp, or equal with identical data (an idempotent retry); otherwise it is a 409
//!   conflict that carries the held timestamp (the 409 rule);
//! - a fetch returns what is held, or not found.
//!
//! A store whose outcome is unknown (commit timeout, connection error) may have taken effect
//! at any point after its invocation, or never. A server-stamped store with an unknown
//! outcome has an unknown timestamp; the checker learns it from a fetch that returns its data
//! (data values are unique per store in generated histories) and otherwise stays permissive
//! about decisions that depend on it, so it never reports a false violation.
//!
//! The search is Wing & Gong's, with Lowe's memoisation of (linearized set, state), run per
//! key (linearizability is compositional), as in Porcupine.
#![warn(missing_docs)]

use std::collections::{BTreeMap, HashSet};

/// Times are nanoseconds from an arbitrary origin.
pub type Nanos = u64;

/// What a client asked.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// `/store_data` of `data` with the client's timestamp (`None`: the server stamps it).
    Store {
        /// The data (unique per store in generated histories).
        data: String,
        /// The client's timestamp in microseconds, if it sent one.
        timestamp: Option<u64>,
    },
    /// `/fetch_data`.
    Fetch,
}

/// What the client saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A store answered 200 with the timestamp it was stored with.
    Stored {
        /// Microseconds.
        timestamp: u64,
    },
    /// A store answered 409, with the stored item's timestamp.
    Conflict {
        /// Microseconds.
        stored: u64,
    },
    /// A fetch found data with its timestamp.
    Found {
        /// The data.
        data: String,
        /// Microseconds.
        timestamp: u64,
    },
    /// A fetch answered 404.
    NotFound,
    /// No answer, or an answer that does not say whether the store happened.
    Unknown,
}

/// One operation of a history.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// The key it addressed.
    pub key: String,
    /// When it was invoked.
    pub call: Nanos,
    /// When it returned (ignored for `Output::Unknown`, which may take effect any time later).
    pub ret: Nanos,
    /// What was asked.
    pub input: Input,
    /// What was seen.
    pub output: Output,
}

/// The model's state of one key: empty, or data with a timestamp (`None`: stamped by the
/// server for a store whose answer was lost, so not yet known).
type State = Option<(Option<u64>, String)>;

/// Possible states after applying `op` to `state` (empty: the op cannot be linearized here).
fn step(state: &State, op: &Operation) -> Vec<State> {
    match (&op.input, &op.output) {
        (Input::Fetch, Output::NotFound) => match state {
            None => vec![None],
            Some(_) => vec![],
        },
        (Input::Fetch, Output::Found { data, timestamp }) => match state {
            Some((ts, held)) if held == data && ts.is_none_or(|t| t == *timestamp) => {
                vec![Some((Some(*timestamp), held.clone()))]
            }
            _ => vec![],
        },
        (Input::Fetch, _) => vec![state.clone()],
        (Input::Store { data, .. }, Output::Stored { timestamp }) => {
            let accepted = match state {
                None => true,
                Some((None, _)) => true, // unknown held timestamp: cannot decide, accept
                Some((Some(held), held_data)) => {
                    *timestamp > *held || (*timestamp == *held && held_data == data)
                }
            };
            if accepted {
                vec![Some((Some(*timestamp), data.clone()))]
            } else {
                vec![]
            }
        }
        (Input::Store { data, timestamp }, Output::Conflict { stored }) => match (state, timestamp)
        {
            (Some((None, _)), _) => vec![state.clone()],
            (Some((Some(held), held_data)), Some(t)) => {
                let conflicts = *t < *held || (*t == *held && held_data != data);
                if conflicts && stored == held {
                    vec![state.clone()]
                } else {
                    vec![]
                }
            }
            _ => vec![],
        },
        (Input::Store { data, timestamp }, Output::Unknown) => {
            // Applied (if the rule allows it) with its timestamp, or the server's unknown one.
            let applies = match (state, timestamp) {
                (None, _) | (_, None) | (Some((None, _)), _) => true,
                (Some((Some(held), held_data)), Some(t)) => {
                    *t > *held || (*t == *held && held_data == data)
                }
            };
            if applies {
                vec![Some((*timestamp, data.clone()))]
            } else {
                vec![state.clone()]
            }
        }
        (Input::Store { .. }, _) => vec![],
    }
}

/// The result of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Some linearization explains every outcome.
    Linearizable,
    /// No linearization does; the key whose history is not linearizable.
    NotLinearizable {
        /// The key.
        key: String,
    },
    /// The search exceeded its budget of explored states; nothing is concluded.
    Inconclusive {
        /// The key.
        key: String,
    },
}

/// Checks a whole history, key by key, exploring at most `budget` states per key.
pub fn check(history: &[Operation], budget: usize) -> Verdict {
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in history {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    for (key, ops) in by_key {
        match check_key(&ops, budget) {
            Some(true) => {}
            Some(false) => {
                return Verdict::NotLinearizable {
                    key: key.to_string(),
                }
            }
            None => {
                return Verdict::Inconclusive {
                    key: key.to_string(),
                }
            }
        }
    }
    Verdict::Linearizable
}

struct Search<'a> {
    ops: &'a [&'a Operation],
    /// Effective return time: `u64::MAX` for unknown outcomes.
    ret: Vec<Nanos>,
    seen: HashSet<(Vec<u64>, State)>,
    budget: usize,
}

fn bit(set: &[u64], i: usize) -> bool {
    set[i / 64] >> (i % 64) & 1 == 1
}

impl Search<'_> {
    /// `Some(found)`, or `None` when the budget ran out.
    fn run(&mut self, done: &mut Vec<u64>, state: State) -> Option<bool> {
        // Finished when every op with a known outcome is linearized (unknown ones may never
        // have happened).
        let pending: Vec<usize> = (0..self.ops.len()).filter(|i| !bit(done, *i)).collect();
        if pending.iter().all(|i| self.ret[*i] == u64::MAX) {
            return Some(true);
        }
        // An op may go next only if it was invoked before every pending op returned.
        let horizon = pending
            .iter()
            .map(|i| self.ret[*i])
            .min()
            .unwrap_or(u64::MAX);
        for &i in &pending {
            if self.ops[i].call > horizon {
                continue;
            }
            for next in step(&state, self.ops[i]) {
                done[i / 64] |= 1 << (i % 64);
                let fresh = self.seen.insert((done.clone(), next.clone()));
                if fresh {
                    if self.seen.len() > self.budget {
                        return None;
                    }
                    match self.run(done, next) {
                        Some(true) => return Some(true),
                        None => return None,
                        Some(false) => {}
                    }
                }
                done[i / 64] &= !(1 << (i % 64));
            }
        }
        Some(false)
    }
}

fn check_key(ops: &[&Operation], budget: usize) -> Option<bool> {
    let ret = ops
        .iter()
        .map(|op| {
            if op.output == Output::Unknown {
                u64::MAX
            } else {
                op.ret
            }
        })
        .collect();
    let mut search = Search {
        ops,
        ret,
        seen: HashSet::new(),
        budget,
    };
    let mut done = vec![0u64; ops.len().div_ceil(64)];
    search.run(&mut done, None)
}

#[cfg(test)]
mod tests;
