//! Durable storage for the State Manager, in bytes.
//!
//! This crate knows files, checksums, fsync and atomic renames; it knows nothing of items,
//! Raft or HTTP. It provides:
//! - [`LogEngine`]: the Raft log (segment files of CRC'd records, fsync'd per append, a torn
//!   tail told apart from corruption) and small metadata values written atomically;
//! - [`SnapshotWriter`] / [`SnapshotReader`]: snapshot files written as checksummed records
//!   to a temporary name, fsync'd and renamed into place, read back as a stream;
//! - [`DataDir`]: the layout of a data directory and its exclusive lock.
#![warn(missing_docs)]

mod data_dir;
mod error;
pub mod failpoints;
mod frame;
pub mod fuzzing;
mod log_engine;
mod snapshot;
mod wal;

pub use data_dir::{free_bytes, DataDir, RESTORING as RESTORING_MARKER};
pub use error::StorageError;
pub use frame::{decode_record, encode_record, RECORD_FORMAT_VERSION};
pub use log_engine::LogEngine;
pub use snapshot::{SnapshotReader, SnapshotWriter};
pub use wal::SEGMENT_BYTES;
