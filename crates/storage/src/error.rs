//! Storage errors. All of them are node faults (I/O, corruption), never client results.

use std::path::PathBuf;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An I/O call failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Data on disk does not match its checksum or format.
    #[error("corrupt data in {what}: {detail}")]
    Corrupt {
        /// Which file or record.
        what: String,
        /// What is wrong.
        detail: String,
    },
    /// Another process holds the data directory.
    #[error("data directory {dir} is in use by another statemanager process{holder}; stop it first or choose another data_dir")]
    Locked {
        /// The directory.
        dir: PathBuf,
        /// `" (pid N)"` when known.
        holder: String,
    },
    /// A restore into the data directory did not finish (its `RESTORING` marker is there).
    #[error("data directory {dir} holds a restore that did not finish (the file RESTORING is there): run `statemanager restore` with the backup again, which starts it over, or empty the directory")]
    RestoreUnfinished {
        /// The directory.
        dir: PathBuf,
    },
    /// The data directory was written by an incompatible version.
    #[error("data directory {dir} has format '{found}', this build reads '{expected}'")]
    Format {
        /// The directory.
        dir: PathBuf,
        /// What the directory says.
        found: String,
        /// What we read.
        expected: String,
    },
}

impl StorageError {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        StorageError::Io {
            context: context.into(),
            source,
        }
    }
}
