//! The one error shape of the API: `{"error":{"code","message","field","line"}}`.

use hyper::StatusCode;
use sightline_query::QueryError;
use sightline_storage::StorageError;

/// An error answered to a client, with its HTTP status.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable, machine-readable: `invalid_parameter`, `not_found`, `body_too_large` …
    pub code: &'static str,
    pub message: String,
    /// The parameter or field at fault, when there is one.
    pub field: Option<String>,
    /// 1-based line (NDJSON) or 0-based index (JSON array) of the record at fault.
    pub line: Option<usize>,
    /// Seconds to send as `Retry-After` (429, 503).
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            line: None,
            retry_after: None,
        }
    }

    /// 429: too many requests of this sort at once; try again shortly.
    pub fn busy(what: &str) -> ApiError {
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "busy",
                format!("{what} is saturated; retry after 1 s"),
            )
        }
    }

    /// 400 for a bad parameter, naming it.
    pub fn param(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        let field = field.into();
        ApiError {
            message: format!("invalid {field}: {}", message.into()),
            field: Some(field),
            ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_parameter", "")
        }
    }

    pub fn missing(field: &str) -> ApiError {
        ApiError::param(field, "is required")
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    pub fn json(&self) -> serde_json::Value {
        let mut e = serde_json::json!({ "code": self.code, "message": self.message });
        if let Some(f) = &self.field {
            e["field"] = f.clone().into();
        }
        if let Some(l) = self.line {
            e["line"] = l.into();
        }
        serde_json::json!({ "error": e })
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> ApiError {
        match e {
            QueryError::Invalid { field, reason } => ApiError::param(field, reason),
            QueryError::Index(e) => {
                let field = match e {
                    sightline_index::IndexError::InvalidPattern { .. }
                    | sightline_index::IndexError::TooBroad { .. } => Some("q".to_string()),
                    _ => None,
                };
                match field {
                    Some(f) => ApiError {
                        field: Some(f),
                        ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_parameter", e.to_string())
                    },
                    None => ApiError::internal(e.to_string()),
                }
            }
            QueryError::DeadlineExceeded => ApiError {
                retry_after: Some(1),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "query_timeout",
                    "the query ran past the server's time limit (query_timeout) and was stopped; narrow the range or the places",
                )
            },
            QueryError::Storage(e) => storage(e),
        }
    }
}

/// Storage failures: the store is damaged or the disk failed; never the client's fault.
impl ApiError {
    /// A query that ran past the time limit.
    pub fn timeout(limit: std::time::Duration) -> ApiError {
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "query_timeout",
                format!(
                    "the query ran past the limit of {} ms; narrow the range or the places",
                    limit.as_millis()
                ),
            )
        }
    }
}

pub fn storage(e: StorageError) -> ApiError {
    tracing::error!(error = %e, "storage failure");
    match e {
        // Not retried: what an fsync failed on may be lost whatever the page cache shows.
        StorageError::Poisoned(why) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_failed",
            format!(
                "writes are refused since an earlier disk failure ({why}); queries still answer; restart the server once the disk is fixed"
            ),
        ),
        e => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            e.to_string(),
        ),
    }
}
