//! The one error shape of the API: `{"error":{"code","message","field","line"}}`.
//!
//! [`ApiError`] is every way a request can fail: each variant carries its context and
//! knows its HTTP status and its stable, machine-readable `code`. Handlers return it;
//! the dispatcher (`routes.rs`) writes it, counts it in `/metrics` and adds
//! `Retry-After` where the variant says.

use hyper::StatusCode;
use serde_json::{json, Value};
use sightline_index::IndexError;
use sightline_query::QueryError;
use sightline_storage::StorageError;

/// Why one ingested record was refused: its position, the field, the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordError {
    /// 1-based line for NDJSON, 0-based index for a JSON array or a binary batch, the
    /// object's index for a GA/T 1400 upload.
    pub line: usize,
    pub field: Option<String>,
    pub message: String,
}

impl RecordError {
    pub fn new(line: usize, field: impl Into<String>, message: impl Into<String>) -> RecordError {
        RecordError {
            line,
            field: Some(field.into()),
            message: message.into(),
        }
    }

    pub fn json(&self) -> Value {
        let mut v = json!({ "line": self.line, "message": self.message });
        if let Some(f) = &self.field {
            v["field"] = f.clone().into();
        }
        v
    }
}

/// An error answered to a client.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// 400: a query parameter or body field is wrong; `field` names it.
    #[error("{message}")]
    InvalidParameter { field: String, message: String },
    /// 400: the body could not be read as what the endpoint takes.
    #[error("{0}")]
    MalformedBody(String),
    /// 400: the body is not the JSON the endpoint takes.
    #[error("{0}")]
    MalformedJson(String),
    /// 400: not an HTTP/1.1 request (its request line or a header); answered before
    /// any handler, and the connection closed.
    #[error("the request is not valid HTTP/1.1: its request line or a header is malformed")]
    MalformedRequest,
    /// 414: a request target too long to read.
    #[error("the request target is too long")]
    UriTooLong,
    /// 431: a request head larger than the server reads.
    #[error("the request's headers are too large")]
    HeadersTooLarge,
    /// 400: an ingest body with no records in it.
    #[error("the body holds no events")]
    NoEvents,
    /// 401: no key, or one the server does not know (or revoked).
    #[error("{0}")]
    Unauthorized(String),
    /// 403: a known key whose role or scope does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// 403: a query parameter or body field names a community outside the key's;
    /// `field` names it.
    #[error("{message}")]
    OutOfScope { field: String, message: String },
    /// 404: no route has this path.
    #[error("no such endpoint: {0}")]
    NoSuchEndpoint(String),
    #[error("no event with id {0}")]
    NoSuchEvent(u64),
    #[error("no subscription {0}")]
    NoSuchSubscription(String),
    #[error("no upstream {0}")]
    NoSuchUpstream(String),
    /// 409: the request would make a second of what must be one (its field named).
    #[error("{message}")]
    Conflict { field: String, message: String },
    #[error("no watchlist {0}")]
    NoSuchWatchlist(String),
    #[error("no image {0}")]
    NoSuchImage(String),
    #[error("no object {0}")]
    NoSuchObject(String),
    #[error("no API key {0}")]
    NoSuchKey(String),
    #[error("no community {0}")]
    NoSuchCommunity(String),
    #[error("no device {0}")]
    NoSuchDevice(String),
    /// 501: an endpoint of `serve`'s API a cluster's query node does not answer yet
    /// (the message names it and says why).
    #[error("{0}")]
    NotInCluster(String),
    /// 400: an HTTP/1.1 request without exactly one `Host` (RFC 9112 §3.2).
    #[error("{0}")]
    BadHost(&'static str),
    /// 501: a method no endpoint takes (RFC 9110 §15.6.2).
    #[error("the method {0} is not implemented by this server")]
    NotImplemented(String),
    /// 501: a transfer coding other than `chunked` (RFC 9112 §6.1: one the server does
    /// not understand), before the body is read.
    #[error("Transfer-Encoding {0:?} is not supported: send the body chunked or with a Content-Length (a Content-Encoding of gzip is taken)")]
    TransferCoding(String),
    /// 405: the path exists, the method does not.
    #[error("{path} takes {allowed}, not {method}")]
    MethodNotAllowed {
        path: String,
        allowed: String,
        method: String,
    },
    /// 408: the body did not arrive within `body_timeout`.
    #[error("the body did not arrive within {0} s")]
    BodyTimeout(u64),
    /// 408: the body arrived slower than `min_body_rate` bytes a second (averaged,
    /// after a grace of 5 s).
    #[error("the body arrived slower than {0} bytes a second (min_body_rate)")]
    BodyTooSlow(u64),
    /// 412: a precondition of the request (`If-Match`, `If-None-Match`; RFC 9110
    /// §13.1) is false for the resource as it is: nothing was changed.
    #[error("{0}")]
    PreconditionFailed(String),
    /// 413: over `max_body_bytes`.
    #[error("the body is over the limit of {0} bytes; send smaller batches")]
    BodyTooLarge(usize),
    /// 415: a `Content-Encoding` other than gzip (RFC 9110 §15.5.16; the answer says
    /// `Accept-Encoding: gzip`).
    #[error("Content-Encoding {0:?} is not supported: send gzip or none")]
    UnsupportedEncoding(String),
    /// 415: a `/v1` body of a media type or charset not read (RFC 9110 §15.5.16; the
    /// answer says `Accept-Post`).
    #[error(
        "Content-Type {0:?} is not taken: send application/json or application/x-ndjson (UTF-8)"
    )]
    UnsupportedMediaType(String),
    /// 413: over `max_batch_records`.
    #[error("{records} records in one request; at most {max}")]
    TooManyRecords { records: usize, max: usize },
    /// 422: every record of an ingest was refused; `errors` lists each.
    #[error("all {} records were refused; the first: {}", .errors.len(), .errors.first().map_or("?", |e| e.message.as_str()))]
    InvalidEvents { errors: Vec<RecordError> },
    /// 429: the bodies being read at once already hold this many bytes
    /// (`max_viid_inflight_bytes`); retry after a second.
    #[error("request bodies being read hold the limit of {0} bytes (max_viid_inflight_bytes); retry after 1 s")]
    BodyBudget(usize),
    /// 429: a subscription past `query.max_subscriptions` or
    /// `query.max_subscriptions_per_owner` (the message names which).
    #[error("{0}")]
    TooManySubscriptions(String),
    /// 429: too many requests of this sort at once; retry after a second.
    #[error("{0} is saturated; retry after 1 s")]
    Busy(&'static str),
    /// 503: a query ran past its time limit (the limit, when this server set it).
    #[error("{}", timeout_message(*.0))]
    QueryTimeout(Option<std::time::Duration>),
    /// 503: an earlier write or fsync failed; writes are refused until restarted.
    #[error("writes are refused since an earlier disk failure ({0}); queries still answer; restart the server once the disk is fixed")]
    StoreFailed(String),
    /// 503: the store could not read or write (damage, disk).
    #[error("{0}")]
    StorageUnavailable(String),
    /// 503 `storage_unavailable` too, with `Retry-After: 1`: a cluster's log (NATS) out
    /// of reach or not acknowledging, which passes (a disk failure does not).
    #[error("{0}")]
    LogUnavailable(String),
    /// 503: the audit log could not be written (a full disk …), so what needs an audit
    /// entry (a query's answer, a change) is refused; the log itself stays whole.
    #[error("the audit log cannot be written ({0}); the request was refused rather than served unaudited; retry once the disk has space")]
    AuditUnavailable(String),
    /// 500: a bug, a failed task, or a damaged record of the server's own.
    #[error("{0}")]
    Internal(String),
}

fn timeout_message(limit: Option<std::time::Duration>) -> String {
    match limit {
        Some(limit) => format!(
            "the query ran past the limit of {} ms; narrow the range or the places",
            limit.as_millis()
        ),
        None => "the query ran past the server's time limit (query_timeout) and was stopped; narrow the range or the places".into(),
    }
}

impl ApiError {
    /// 400 for a bad parameter, naming it.
    pub fn param(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        let field = field.into();
        ApiError::InvalidParameter {
            message: format!("invalid {field}: {}", message.into()),
            field,
        }
    }

    pub fn missing(field: &str) -> ApiError {
        ApiError::param(field, "is required")
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::Internal(message.into())
    }

    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            InvalidParameter { .. } | MalformedBody(_) | MalformedJson(_) | NoEvents => {
                StatusCode::BAD_REQUEST
            }
            MalformedRequest | BadHost(_) => StatusCode::BAD_REQUEST,
            UriTooLong => StatusCode::URI_TOO_LONG,
            HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Forbidden(_) | OutOfScope { .. } => StatusCode::FORBIDDEN,
            Conflict { .. } => StatusCode::CONFLICT,
            NoSuchEndpoint(_)
            | NoSuchEvent(_)
            | NoSuchSubscription(_)
            | NoSuchUpstream(_)
            | NoSuchWatchlist(_)
            | NoSuchImage(_)
            | NoSuchObject(_)
            | NoSuchKey(_)
            | NoSuchCommunity(_)
            | NoSuchDevice(_) => StatusCode::NOT_FOUND,
            NotInCluster(_) | NotImplemented(_) | TransferCoding(_) => StatusCode::NOT_IMPLEMENTED,
            MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            BodyTimeout(_) | BodyTooSlow(_) => StatusCode::REQUEST_TIMEOUT,
            BodyTooLarge(_) | TooManyRecords { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            UnsupportedEncoding(_) | UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            InvalidEvents { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Busy(_) | BodyBudget(_) | TooManySubscriptions(_) => StatusCode::TOO_MANY_REQUESTS,
            QueryTimeout(_)
            | StoreFailed(_)
            | StorageUnavailable(_)
            | LogUnavailable(_)
            | AuditUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable and machine-readable: clients branch on it.
    pub fn code(&self) -> &'static str {
        use ApiError::*;
        match self {
            InvalidParameter { .. } => "invalid_parameter",
            MalformedBody(_) => "malformed_body",
            MalformedJson(_) => "malformed_json",
            NoEvents => "no_events",
            MalformedRequest => "malformed_request",
            UriTooLong => "uri_too_long",
            HeadersTooLarge => "headers_too_large",
            Unauthorized(_) => "unauthorized",
            Forbidden(_) | OutOfScope { .. } => "forbidden",
            Conflict { .. } => "conflict",
            NoSuchEndpoint(_) => "not_found",
            NoSuchEvent(_) => "no_such_event",
            NoSuchSubscription(_) => "no_such_subscription",
            NoSuchUpstream(_) => "no_such_upstream",
            NoSuchWatchlist(_) => "no_such_watchlist",
            NoSuchImage(_) => "no_such_image",
            NoSuchObject(_) => "no_such_object",
            NoSuchKey(_) => "no_such_key",
            NoSuchCommunity(_) => "no_such_community",
            NoSuchDevice(_) => "no_such_device",
            NotInCluster(_) => "not_in_cluster",
            NotImplemented(_) => "not_implemented",
            TransferCoding(_) => "unsupported_transfer_coding",
            BadHost(_) => "bad_host",
            MethodNotAllowed { .. } => "method_not_allowed",
            BodyTimeout(_) => "body_timeout",
            BodyTooSlow(_) => "body_too_slow",
            BodyTooLarge(_) => "body_too_large",
            PreconditionFailed(_) => "precondition_failed",
            UnsupportedEncoding(_) => "unsupported_encoding",
            UnsupportedMediaType(_) => "unsupported_media_type",
            TooManyRecords { .. } => "too_many_records",
            InvalidEvents { .. } => "invalid_events",
            Busy(_) => "busy",
            TooManySubscriptions(_) => "too_many_subscriptions",
            BodyBudget(_) => "busy",
            QueryTimeout(_) => "query_timeout",
            StoreFailed(_) => "store_failed",
            StorageUnavailable(_) | LogUnavailable(_) => "storage_unavailable",
            AuditUnavailable(_) => "audit_unavailable",
            Internal(_) => "internal",
        }
    }

    /// The parameter or field at fault, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            ApiError::InvalidParameter { field, .. }
            | ApiError::OutOfScope { field, .. }
            | ApiError::Conflict { field, .. } => Some(field),
            ApiError::InvalidEvents { errors } => errors.first()?.field.as_deref(),
            _ => None,
        }
    }

    /// The record at fault (1-based NDJSON line or 0-based array index).
    pub fn line(&self) -> Option<usize> {
        match self {
            ApiError::InvalidEvents { errors } => errors.first().map(|e| e.line),
            _ => None,
        }
    }

    /// Seconds to send as `Retry-After`.
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            ApiError::Busy(_)
            | ApiError::BodyBudget(_)
            | ApiError::QueryTimeout(_)
            | ApiError::LogUnavailable(_) => Some(1),
            _ => None,
        }
    }

    pub fn json(&self) -> Value {
        let mut e = json!({ "code": self.code(), "message": self.to_string() });
        if let Some(f) = self.field() {
            e["field"] = f.into();
        }
        if let Some(l) = self.line() {
            e["line"] = l.into();
        }
        let mut v = json!({ "error": e });
        if let ApiError::InvalidEvents { errors } = self {
            v["errors"] = errors.iter().map(RecordError::json).collect();
        }
        v
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> ApiError {
        match e {
            QueryError::Invalid { field, reason } => ApiError::param(field, reason),
            QueryError::Index(
                e @ (IndexError::InvalidPattern { .. } | IndexError::TooBroad { .. }),
            ) => ApiError::InvalidParameter {
                field: "q".into(),
                message: e.to_string(),
            },
            QueryError::Index(e) => ApiError::internal(e.to_string()),
            QueryError::DeadlineExceeded => ApiError::QueryTimeout(None),
            QueryError::Storage(e) => e.into(),
            // A cluster's partition that failed or that no indexer answered in time
            // (`sightline cluster query`; one store never says this).
            e @ (QueryError::Partition { .. } | QueryError::Remote { .. }) => {
                ApiError::StorageUnavailable(e.to_string())
            }
        }
    }
}

/// Storage failures: the store is damaged or the disk failed; never the client's fault.
impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> ApiError {
        tracing::error!(error = %e, "storage failure");
        match e {
            // Not retried: what an fsync failed on may be lost whatever the page cache shows.
            StorageError::Poisoned(why) => ApiError::StoreFailed(why),
            e => ApiError::StorageUnavailable(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_the_one_shape_with_its_field_and_line() {
        let e = ApiError::param("limit", "0 rows");
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            e.json(),
            json!({"error": {"code": "invalid_parameter", "message": "invalid limit: 0 rows",
                             "field": "limit"}})
        );
        let refused = ApiError::InvalidEvents {
            errors: vec![
                RecordError::new(2, "device", "not 20 digits"),
                RecordError::new(5, "ts", "is required"),
            ],
        };
        let v = refused.json();
        assert_eq!(v["error"]["line"], 2);
        assert_eq!(v["error"]["field"], "device");
        assert_eq!(
            v["error"]["message"],
            "all 2 records were refused; the first: not 20 digits"
        );
        assert_eq!(v["errors"][1]["field"], "ts");
        assert_eq!(ApiError::Busy("ingest").retry_after(), Some(1));
        assert_eq!(
            ApiError::from(StorageError::Poisoned("wal".into())).code(),
            "store_failed"
        );
    }
}
