//! Request handlers, one file per endpoint group.

pub mod fallback;
pub mod fetch;
pub mod probes;
pub mod store;
