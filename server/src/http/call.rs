//! [`Call`]: what a handler gets — the app, the authorised caller, the request's
//! parameters and path argument — and [`Answer`], what it returns.

use std::sync::Arc;

use hyper::body::Bytes;
use hyper::header::{CONTENT_ENCODING, CONTENT_TYPE};
use hyper::{Request, StatusCode};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::http::body::Unread;
use crate::http::limits::{ByteBudget, Reserved};
use crate::http::Body;
use crate::params::Params;
use crate::App;

/// A handler's answer: the status and the body (errors are `Err(ApiError)`).
pub(crate) type Answer = (StatusCode, Body);

/// One routed request, authorised.
pub(crate) struct Call {
    pub app: Arc<App>,
    pub caller: Caller,
    /// The decoded query string.
    pub params: Params,
    /// The path's argument (`{id}`, `{code}`), for routes that take one.
    pub arg: Option<String>,
    /// The request path and raw query string, as the audit log records them.
    pub path: String,
    pub query: String,
    /// The client asked for NDJSON (`Accept: application/x-ndjson`).
    pub ndjson: bool,
    /// The request's method, URI and headers.
    pub head: hyper::http::request::Parts,
    /// The body, until it is read (dropped unread, it is drained or the connection
    /// closed: [`Unread`]).
    incoming: Unread,
}

impl Call {
    pub fn new(
        app: Arc<App>,
        caller: Caller,
        params: Params,
        arg: Option<String>,
        (req, incoming): (Request<()>, Unread),
        ndjson: bool,
    ) -> Call {
        let (head, ()) = req.into_parts();
        Call {
            app,
            caller,
            params,
            arg,
            path: head.uri.path().to_string(),
            query: head.uri.query().unwrap_or("").to_string(),
            ndjson,
            head,
            incoming,
        }
    }

    /// A request header as text (absent or not text: `None`).
    pub fn header(&self, name: impl hyper::header::AsHeaderName) -> Option<&str> {
        self.head.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A request header whose value may hold text past ASCII ([`header_text`]).
    pub fn header_text(&self, name: impl hyper::header::AsHeaderName) -> Option<String> {
        header_text(self.head.headers.get(name)?)
    }

    /// The path argument; routes whose template has one always get it.
    pub fn arg(&self) -> String {
        self.arg.clone().unwrap_or_default()
    }

    /// The request body, within `max_body_bytes` and the body timeout.
    pub async fn body(&mut self) -> Result<Bytes, ApiError> {
        let max = self.app.config.max_body_bytes;
        self.body_within(max).await
    }

    /// The request body within `max` bytes (read once; empty after that): a
    /// `Content-Encoding: gzip` (or `x-gzip`) body inflated within the same `max`, as
    /// the `/VIID` routes inflate theirs (another coding: 415, before the body is
    /// read); a leading UTF-8 byte order mark dropped from a text body (RFC 8259 §8.1),
    /// never from a binary batch.
    pub async fn body_within(&mut self, max: usize) -> Result<Bytes, ApiError> {
        taken_media_type(&self.head.headers)?;
        let gzipped = gzipped(&self.head.headers)?;
        let body = self.body_budgeted(max, None).await?.0;
        let binary = crate::ingest::wire::is_binary(self.header(CONTENT_TYPE));
        decoded(body, gzipped, binary, max).await
    }

    /// The request body within `max` bytes and, when given, the bytes left in
    /// `budget`; the budget's bytes are held until the [`Reserved`] is dropped.
    pub(crate) async fn body_budgeted(
        &mut self,
        max: usize,
        budget: Option<&ByteBudget>,
    ) -> Result<(Bytes, Reserved), ApiError> {
        let Some(incoming) = self.incoming.take() else {
            return Ok((Bytes::new(), Reserved::default()));
        };
        let read = match crate::http::body::refuse_declared(
            (&self.head.headers, &self.head.extensions),
            incoming,
            max,
        ) {
            Ok(incoming) => crate::http::body::read(&self.app, incoming, max, budget).await,
            Err(e) => Err(e),
        };
        // A body not read to its end (too slow, too large, broken chunks, over the
        // budget): the connection cannot carry another request, and the answer says
        // it closes (RFC 9112 §9.6).
        if read.is_err() {
            self.incoming.close_after();
        }
        read
    }
}

/// A header value as text, its bytes past ASCII read as UTF-8, else as ISO-8859-1
/// (RFC 9110 §5.5: obs-text; a digest `Authorization` names a user `Jäsøn` in UTF-8
/// as curl sends it, or in Latin-1 as Python's http.client writes what `requests`
/// hashed as UTF-8). Control characters other than tab: `None`.
pub(crate) fn header_text(value: &hyper::header::HeaderValue) -> Option<String> {
    if let Ok(ascii) = value.to_str() {
        return Some(ascii.to_string());
    }
    let bytes = value.as_bytes();
    if bytes.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return None;
    }
    Some(match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
    })
}

/// The media types a `/v1` write takes (`Accept-Post` of a 415).
pub(crate) const TAKEN_MEDIA_TYPES: &str =
    "application/json, application/x-ndjson, application/x-sightline-bincode";

/// Refuses (415, before the body is read) a `/v1` body whose `Content-Type` is not
/// JSON or a form of it: JSON, NDJSON (and its other names), `…+json`, the binary
/// batch; `text/plain` and `application/x-www-form-urlencoded` too, as `curl -d`
/// sends JSON without a `-H`; none at all. A charset other than UTF-8 (or its ASCII
/// subset, or the Latin-1 Java clients name by default) is refused alike: `/v1`
/// bodies are UTF-8 (RFC 8259 §8.1).
pub(crate) fn taken_media_type(headers: &hyper::HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let mut parts = value.split(';');
    let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let json_like = matches!(
        media.as_str(),
        "" | "application/json"
            | "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/x-jsonlines"
            | "application/jsonlines"
            | "application/json-seq"
            | "text/plain"
            | "text/json"
            | "application/x-www-form-urlencoded"
            | "*/*"
    ) || (media.starts_with("application/") && media.ends_with("+json"))
        || media == crate::ingest::wire::CONTENT_TYPE;
    let charset = parts.find_map(|p| {
        let (name, v) = p.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches('"').to_ascii_lowercase())
    });
    // A binary batch's bytes are its own: a charset says nothing of them.
    let binary = media == crate::ingest::wire::CONTENT_TYPE;
    let utf8 = binary
        || charset
            .as_deref()
            // Latin-1 too, as Java's HTTP clients label a String body by default
            // (`text/plain; charset=ISO-8859-1`): read as UTF-8 as before (an ASCII
            // body is both; other bytes are a 400 where they do not parse).
            .is_none_or(|c| {
                matches!(
                    c,
                    "utf-8" | "utf8" | "us-ascii" | "iso-8859-1" | "latin1" | "iso8859-1"
                )
            });
    match json_like && utf8 {
        true => Ok(()),
        false => Err(ApiError::UnsupportedMediaType(
            value.chars().take(100).collect(),
        )),
    }
}

/// Whether a request's body is gzipped (`Content-Encoding: gzip` or `x-gzip`); 415
/// `unsupported_encoding` for another coding — asked before the body is read.
pub(crate) fn gzipped(headers: &hyper::HeaderMap) -> Result<bool, ApiError> {
    let named = headers.get(CONTENT_ENCODING).and_then(|v| v.to_str().ok());
    crate::gat1400::handlers::coding(named).map_err(ApiError::UnsupportedEncoding)
}

/// A body as read, inflated (on a blocking thread) within `max` when `gzipped`, a
/// leading UTF-8 byte order mark dropped unless it is a `binary` batch (whose bytes
/// are its own: EF BB BF may begin one): what `Call::body_within` answers, and a
/// cluster ingest node's `/v1/events` reads.
pub(crate) async fn decoded(
    body: Bytes,
    gzipped: bool,
    binary: bool,
    max: usize,
) -> Result<Bytes, ApiError> {
    let body = match gzipped {
        false => body,
        true => tokio::task::spawn_blocking(move || crate::gat1400::handlers::gunzip(&body, max))
            .await
            .map_err(|e| ApiError::internal(format!("inflating the body failed: {e}")))??,
    };
    match binary {
        true => Ok(body),
        false => Ok(without_bom(body)),
    }
}

/// A body without a leading UTF-8 byte order mark (RFC 8259 §8.1: a parser may ignore
/// one; devices and Windows tools write it).
pub(crate) fn without_bom(body: Bytes) -> Bytes {
    match body.starts_with(b"\xEF\xBB\xBF") {
        true => body.slice(3..),
        false => body,
    }
}
