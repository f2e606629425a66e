//! The one error type of the storage crate.

use std::path::PathBuf;

/// Everything that can go wrong in the store, with enough context to act on.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An operating-system I/O call failed on `path`.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A file is damaged: a checksum does not match, a length points past the end,
    /// a magic number or version is wrong. Names the file and the byte offset.
    #[error("corrupt file {path} at offset {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },

    /// A segment the store holds only by name could not be fetched from where it is
    /// kept (`crate::SegmentSource`: object storage away, the object missing).
    #[error("fetching segment {path}: {reason}")]
    Fetch { path: PathBuf, reason: String },

    /// The catalog (sled) failed.
    #[error("catalog error: {0}")]
    Catalog(String),

    /// An event failed validation. `index` is its position in the batch.
    #[error("event {index}: {error}")]
    Invalid {
        index: usize,
        error: crate::ValidationError,
    },

    /// A bound from [`crate::StoreConfig`] was exceeded.
    #[error("limit exceeded: {what} is {actual}, the maximum is {max}")]
    Limit {
        what: &'static str,
        actual: u64,
        max: u64,
    },

    /// A setting is out of its range.
    #[error("invalid setting {what}: {reason}")]
    Setting { what: &'static str, reason: String },

    /// An earlier write or fsync failed. Nothing after it was acknowledged; the store
    /// refuses further writes until it is reopened (a failed fsync is never retried as if
    /// the data were safe).
    #[error("store is failed after an earlier I/O error ({0}); reopen it to recover")]
    Poisoned(String),
}

impl StorageError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StorageError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        StorageError::Corrupt {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }
}

impl From<sled::Error> for StorageError {
    fn from(e: sled::Error) -> Self {
        StorageError::Catalog(e.to_string())
    }
}

impl From<sled::transaction::TransactionError<StorageError>> for StorageError {
    fn from(e: sled::transaction::TransactionError<StorageError>) -> Self {
        match e {
            sled::transaction::TransactionError::Abort(inner) => inner,
            sled::transaction::TransactionError::Storage(s) => StorageError::Catalog(s.to_string()),
        }
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
