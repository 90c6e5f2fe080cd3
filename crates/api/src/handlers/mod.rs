//! Request handlers, one file per endpoint group.

pub mod admin;
pub mod cache;
pub mod console;
pub mod delete;
pub mod fallback;
pub mod fetch;
pub mod openapi;
pub mod probes;
pub mod store;
