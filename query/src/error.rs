//! The query crate's one error type.

use sightline_storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A parameter is out of range or inconsistent; names the parameter.
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// The query ran past its deadline ([`crate::QueryContext::deadline`]) and stopped.
    #[error("the query ran past its deadline and was stopped")]
    DeadlineExceeded,
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Vocabulary search failed or refused the pattern.
    #[error(transparent)]
    Index(#[from] sightline_index::IndexError),
    /// A partition reached over the network failed; its message
    /// (`crate::federated::Failure`).
    #[error("{message}")]
    Remote { message: String },
    /// One partition of a federated query failed (`crate::federated`): which one, and
    /// its error.
    #[error("partition {partition}: {source}")]
    Partition {
        partition: u16,
        source: Box<QueryError>,
    },
}

impl QueryError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> QueryError {
        QueryError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, QueryError>;

/// Checks `[from_ms, to_ms)` is a non-empty range of at most `max_days`.
pub(crate) fn check_range(from_ms: i64, to_ms: i64, max_days: i64) -> Result<()> {
    if from_ms >= to_ms {
        return Err(QueryError::invalid(
            "to",
            format!("must be after from ({from_ms} >= {to_ms})"),
        ));
    }
    if to_ms.saturating_sub(from_ms) > max_days.saturating_mul(crate::DAY_MS) {
        return Err(QueryError::invalid(
            "to",
            format!("the range may span at most {max_days} days"),
        ));
    }
    Ok(())
}
