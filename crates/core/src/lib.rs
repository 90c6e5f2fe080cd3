//! The pure domain of the State Manager.
//!
//! This crate owns every rule about an item: what a valid namespace, key, TTL and timestamp
//! are, how a store is decided against the item already stored (the timestamp/conflict rule),
//! the size and count limits, and expiry. It performs no I/O and never reads a clock: the
//! current time arrives inside each [`Batch`] (stamped once by the Raft leader) or as an
//! argument to a read. That makes [`State::apply`] deterministic, so every replica that applies
//! the same log ends in the same state and gives the same answers.
#![warn(missing_docs)]

mod arc_str;
mod clock;
mod command;
mod data;
mod error;
pub mod error_chain;
mod limits;
mod names;
mod state;
mod time;

pub use clock::{Clock, ManualClock};
pub use command::{Batch, Op, StoreOp};
pub use data::Data;
pub use error::{DomainError, FullScope};
pub use limits::{Limits, MAX_KEY_BYTES, MAX_NAMESPACE_BYTES};
pub use names::{ItemId, Key, Namespace};
pub use state::{Growth, Item, OpOutcome, State, StateStats, Stored};
pub use time::{Timestamp, Ttl, MAX_TTL_SECS};
