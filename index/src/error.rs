//! The index crate's one error type.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The tantivy vocabulary index failed (damaged files, I/O).
    #[error("vocabulary index {path}: {reason}")]
    Vocabulary { path: PathBuf, reason: String },
    /// Writing or reading the index's files through the store failed.
    #[error(transparent)]
    Store(#[from] sightline_storage::StorageError),
    /// A search pattern is not acceptable; says why.
    #[error("invalid pattern {pattern:?}: {reason}")]
    InvalidPattern { pattern: String, reason: String },
    /// A pattern matched more subjects than a search may return.
    #[error("pattern {pattern:?} matches {matches} subjects, more than {max}; narrow it")]
    TooBroad {
        pattern: String,
        matches: usize,
        max: usize,
    },
}

impl IndexError {
    pub(crate) fn vocabulary(path: &std::path::Path, reason: String) -> IndexError {
        IndexError::Vocabulary {
            path: path.to_path_buf(),
            reason,
        }
    }
    pub(crate) fn invalid_pattern(pattern: &str, reason: impl Into<String>) -> IndexError {
        IndexError::InvalidPattern {
            pattern: pattern.to_string(),
            reason: reason.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, IndexError>;
