//! The cluster crate's one error type.

/// Why a cluster operation failed, with what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("PostgreSQL ({context}): {source}")]
    Postgres {
        context: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("object storage ({context}, {key}): {source}")]
    Objects {
        context: &'static str,
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error("JetStream ({context}): {message}")]
    Log {
        context: &'static str,
        message: String,
    },
    #[error("storage: {0}")]
    Storage(#[from] sightline_storage::StorageError),
    /// The lease's epoch moved on: another indexer owns the partition now.
    #[error("partition {partition}: lease lost (our epoch {ours}, now {current})")]
    Fenced {
        partition: u32,
        ours: i64,
        current: i64,
    },
    #[error("catalog of partition {partition}: {reason}")]
    Catalog { partition: u32, reason: String },
    /// A PostgreSQL, JetStream or object storage call did not answer in time.
    #[error("{0} timed out")]
    Timeout(&'static str),
    /// A read replica's store numbers events unlike its owner's (the consistency
    /// check against the catalog after a commit): it is restored again.
    #[error("replica of partition {partition} diverged from its owner: {reason}")]
    Diverged { partition: u32, reason: String },
    /// A directory object that cannot be used (`crate::directory`).
    #[error(transparent)]
    Directory(#[from] crate::directory::DirectoryError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = ClusterError> = std::result::Result<T, E>;

impl ClusterError {
    pub(crate) fn pg(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> ClusterError {
        move |source| ClusterError::Postgres { context, source }
    }

    pub(crate) fn log(context: &'static str) -> impl FnOnce(String) -> ClusterError {
        move |message| ClusterError::Log { context, message }
    }
}
