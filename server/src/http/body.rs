//! Response bodies (JSON, NDJSON whole or streamed, Server-Sent Events, plain text)
//! and how they are written, and request bodies read within their limits.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http_body_util::{BodyExt, Either};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE, LOCATION};
use hyper::{Response, StatusCode};
use percent_encoding::{AsciiSet, CONTROLS};
use serde_json::Value;

use crate::error::ApiError;
use crate::http::limits::{ByteBudget, Reserved};
use crate::App;

pub(crate) type Reply = Response<Either<Whole, ChannelBody>>;

pub(crate) const NDJSON: &str = "application/x-ndjson";

/// A response body fed from a channel: streamed NDJSON, chunk by chunk, as the
/// blocking task that produces it sends them (bounded: it waits for the client).
pub(crate) struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// A whole response body of known length (`Content-Length`), sent as the parts it was
/// written in: a trajectory page written in parts by two threads goes out without
/// being copied into one buffer first (hyper queues the parts and writes them with
/// vectored writes, up to 16 at a time).
pub(crate) struct Whole {
    parts: std::collections::VecDeque<Bytes>,
    len: u64,
}

impl Whole {
    pub(crate) fn new(parts: impl IntoIterator<Item = Bytes>) -> Whole {
        let parts: std::collections::VecDeque<Bytes> =
            parts.into_iter().filter(|p| !p.is_empty()).collect();
        let len = parts.iter().map(|p| p.len() as u64).sum();
        Whole { parts, len }
    }
}

impl hyper::body::Body for Whole {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        let part = self.parts.pop_front();
        if let Some(p) = &part {
            self.len -= p.len() as u64;
        }
        std::task::Poll::Ready(part.map(|p| Ok(hyper::body::Frame::data(p))))
    }

    fn is_end_stream(&self) -> bool {
        self.parts.is_empty()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.len)
    }
}

/// A response body: a JSON value, or JSON already serialized (hot paths serialize
/// typed structs directly, without building a `Value`).
pub(crate) enum Body {
    Value(Value),
    Text(String),
    /// NDJSON, whole.
    Lines(String),
    /// NDJSON, streamed as it is produced.
    Stream(tokio::sync::mpsc::Receiver<Bytes>),
    /// Server-Sent Events, streamed.
    Events(tokio::sync::mpsc::Receiver<Bytes>),
    /// JSON text its writer made of UTF-8 strings and ASCII (a trajectory page by
    /// [`crate::http::out::EventOut::write_fields`]), in the parts it was written in
    /// (their concatenation is the text): sent as it is, not checked to be UTF-8 again.
    Json(Vec<Bytes>),
    /// Text of another type (`/metrics`: the Prometheus exposition format).
    Typed(&'static str, String),
    /// Bytes of a type (a picture).
    Binary(&'static str, Bytes),
    /// A body with headers of its own (they override the body's `Content-Type`).
    Headed(Vec<(HeaderName, HeaderValue)>, Box<Body>),
    /// A body its handler already serialized, and how long that took (the
    /// `serialize` part of `Server-Timing`).
    Serialized(std::time::Duration, Box<Body>),
}

/// What a path segment cannot hold as it is (RFC 3986 §3.3: anything but `pchar`).
const PATH_SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

impl From<Value> for Body {
    fn from(v: Value) -> Body {
        Body::Value(v)
    }
}

impl From<String> for Body {
    fn from(s: String) -> Body {
        Body::Text(s)
    }
}

impl Body {
    /// `body` converted by `f`, the conversion's time added to the serialize time `d`.
    fn timed(d: std::time::Duration, body: Body, f: fn(Body) -> Body) -> Body {
        let t = std::time::Instant::now();
        let body = f(body);
        Body::Serialized(d + t.elapsed(), Box::new(body))
    }
    /// The body, and how long its handler spent serializing it (zero when the handler
    /// did not).
    pub(crate) fn serialize_time(self) -> (Body, std::time::Duration) {
        match self {
            Body::Serialized(d, body) => {
                let (body, more) = body.serialize_time();
                (body, d + more)
            }
            Body::Headed(h, body) => {
                let (body, d) = body.serialize_time();
                (Body::Headed(h, Box::new(body)), d)
            }
            other => (other, std::time::Duration::ZERO),
        }
    }

    /// The body of a 201 Created that made `{collection}/{id}` (the JSON's `id`), with
    /// `Location` naming it (RFC 9110 §15.3.2: without one, the target URI, the
    /// collection, would be taken for what was created); headers already set stay (a
    /// `Location` among them is kept). An id is put in the path percent-encoded; a body
    /// without one is left unsaid.
    pub(crate) fn located(self, collection: &str) -> Body {
        let (mut headers, body) = match self {
            Body::Headed(h, b) => (h, *b),
            b => (Vec::new(), b),
        };
        let id = match &body {
            Body::Value(v) => v["id"].as_str(),
            _ => None,
        };
        let named = headers.iter().any(|(n, _)| n == LOCATION);
        if let Some(id) = id.filter(|_| !named) {
            let id = percent_encoding::utf8_percent_encode(id, PATH_SEGMENT);
            if let Ok(at) = HeaderValue::from_str(&format!("{collection}/{id}")) {
                headers.push((LOCATION, at));
            }
        }
        Body::Headed(headers, Box::new(body))
    }

    /// The JSON text of a whole JSON body (a stream is left as it is).
    pub(crate) fn into_text(self) -> Body {
        match self {
            Body::Value(v) => Body::Text(v.to_string()),
            Body::Serialized(d, b) => Body::timed(d, *b, Body::into_text),
            other => other,
        }
    }

    /// A JSON answer as NDJSON of one line (a resource, whatever lists it holds).
    /// Streams and typed text stay as they are.
    pub(crate) fn into_one_line(self) -> Body {
        match self {
            Body::Serialized(d, b) => Body::timed(d, *b, Body::into_one_line),
            Body::Value(v) => Body::Lines(format!("{v}\n")),
            Body::Text(s) => match serde_json::from_str::<Value>(&s) {
                Ok(v) => Body::Lines(format!("{v}\n")),
                Err(_) => Body::Lines(s),
            },
            Body::Json(parts) => match serde_json::from_slice::<Value>(&parts.concat()) {
                Ok(v) => Body::Lines(format!("{v}\n")),
                Err(_) => Body::Lines(String::from_utf8_lossy(&parts.concat()).into_owned()),
            },
            other => other,
        }
    }

    /// A list answer `{"key": [items]}` (exactly one list) as NDJSON, one item a line;
    /// any other JSON answer as one line. Streams and typed text stay as they are.
    pub(crate) fn into_lines(self) -> Body {
        match self {
            Body::Serialized(d, b) => Body::timed(d, *b, Body::into_lines),
            Body::Value(Value::Object(m)) if m.values().filter(|v| v.is_array()).count() == 1 => {
                let items = m
                    .into_iter()
                    .find_map(|(_, v)| match v {
                        Value::Array(items) => Some(items),
                        _ => None,
                    })
                    .unwrap_or_default();
                let mut out = String::new();
                for item in items {
                    out.push_str(&item.to_string());
                    out.push('\n');
                }
                Body::Lines(out)
            }
            Body::Value(v) => Body::Lines(format!("{v}\n")),
            Body::Text(s) => match serde_json::from_str::<Value>(&s) {
                Ok(v) => Body::Value(v).into_lines(),
                Err(_) => Body::Lines(s),
            },
            Body::Json(parts) => match serde_json::from_slice::<Value>(&parts.concat()) {
                Ok(v) => Body::Value(v).into_lines(),
                Err(_) => Body::Lines(String::from_utf8_lossy(&parts.concat()).into_owned()),
            },
            other => other,
        }
    }
}

/// A response with `status` and `body`, its `Content-Type` set by the body's kind.
pub(crate) fn respond(status: StatusCode, body: impl Into<Body>) -> Reply {
    let whole = |s: String| Either::Left(Whole::new([Bytes::from(s)]));
    let (body, content_type) = match body.into() {
        Body::Serialized(_, body) => return respond(status, *body),
        Body::Headed(headers, body) => {
            let mut r = respond(status, *body);
            // A name's first value replaces the body's own (`Content-Type`); more
            // values of it are more fields (two `WWW-Authenticate` challenges).
            let mut named: Vec<HeaderName> = Vec::new();
            for (name, value) in headers {
                match named.contains(&name) {
                    true => {
                        r.headers_mut().append(name, value);
                    }
                    false => {
                        named.push(name.clone());
                        r.headers_mut().insert(name, value);
                    }
                }
            }
            return r;
        }
        Body::Stream(rx) => (Either::Right(ChannelBody(rx)), NDJSON),
        Body::Events(rx) => (Either::Right(ChannelBody(rx)), "text/event-stream"),
        Body::Lines(s) => (whole(s), NDJSON),
        Body::Typed(content_type, s) => (whole(s), content_type),
        Body::Binary(content_type, b) => (Either::Left(Whole::new([b])), content_type),
        Body::Value(v) => (whole(v.to_string()), "application/json"),
        Body::Text(s) => (whole(s), "application/json"),
        Body::Json(parts) => (Either::Left(Whole::new(parts)), "application/json"),
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// An error in the one error shape, with the headers it calls for ([`error_headers`]).
pub(crate) fn respond_error(e: &ApiError) -> Reply {
    if e.status().is_server_error() {
        tracing::error!(code = e.code(), message = %e, "request failed");
    }
    let mut r = respond(e.status(), e.json());
    error_headers(e, r.headers_mut());
    r
}

/// The headers an error's answer carries, on `serve` and on a cluster's nodes alike:
/// `Retry-After` where it says; a 405's `Allow` (RFC 9110 §15.5.6); a 415's
/// `Accept-Post` or `Accept-Encoding` (§15.5.16); a 401's challenge (§15.5.2).
pub(crate) fn error_headers(e: &ApiError, headers: &mut hyper::HeaderMap) {
    if let Some(s) = e.retry_after() {
        headers.insert(hyper::header::RETRY_AFTER, HeaderValue::from(s));
    }
    if let ApiError::MethodNotAllowed { allowed, .. } = e {
        if let Ok(v) = HeaderValue::from_str(allowed) {
            headers.insert(hyper::header::ALLOW, v);
        }
    }
    if let ApiError::UnsupportedMediaType(_) = e {
        headers.insert(
            hyper::header::HeaderName::from_static("accept-post"),
            HeaderValue::from_static(crate::http::call::TAKEN_MEDIA_TYPES),
        );
    }
    if let ApiError::UnsupportedEncoding(_) = e {
        headers.insert(
            hyper::header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip"),
        );
    }
    if e.status() == StatusCode::UNAUTHORIZED {
        let challenge = match e {
            ApiError::Unauthorized(why) if why == crate::auth::UNKNOWN_KEY => {
                invalid_token_challenge()
            }
            _ => bearer_challenge(),
        };
        headers.insert(hyper::header::WWW_AUTHENTICATE, challenge);
    }
}

/// The challenge of a 401 from the JSON API (RFC 9110 §15.5.2: a 401 MUST carry one;
/// RFC 6750 §3: API keys are bearer tokens). Without an error code: the request had no
/// key (RFC 6750 §3.1: then none SHOULD be given).
pub(crate) fn bearer_challenge() -> HeaderValue {
    HeaderValue::from_static("Bearer realm=\"sightline\"")
}

/// The challenge of a 401 to a key the server does not know (RFC 6750 §3.1).
fn invalid_token_challenge() -> HeaderValue {
    HeaderValue::from_static(
        "Bearer realm=\"sightline\", error=\"invalid_token\", error_description=\"unknown or revoked API key\"",
    )
}

/// How much of a body past its limit is read and discarded before the 413 is sent:
/// a client still writing then reads the answer instead of a broken pipe. Past this
/// the connection is closed.
pub(crate) const DRAIN_BYTES: usize = 64 << 20;

/// The request body, refused with 413 past `max` bytes (read on, discarding, up to
/// [`DRAIN_BYTES`] more), 408 past the body timeout or when it arrives slower than
/// `min_body_rate`; within `budget` when given (429 when the budget has not room for
/// it), the bytes it holds given back when the returned [`Reserved`] is dropped.
pub(crate) async fn read(
    app: &App,
    body: Incoming,
    max: usize,
    budget: Option<&ByteBudget>,
) -> Result<(Bytes, Reserved), ApiError> {
    let (limit, min_rate) = (app.config.body_timeout, app.config.min_body_rate);
    read_paced(body, max, budget, limit, min_rate).await
}

/// [`read`] with its time limit and minimum rate given (a cluster ingest node's
/// gateway, which has no `App`).
pub(crate) async fn read_paced(
    body: Incoming,
    max: usize,
    budget: Option<&ByteBudget>,
    limit: std::time::Duration,
    min_rate: u64,
) -> Result<(Bytes, Reserved), ApiError> {
    let pace = Pace {
        min_rate,
        started: tokio::time::Instant::now(),
    };
    tokio::time::timeout(limit, collect(body, max, pace, budget))
        .await
        .map_err(|_| ApiError::BodyTimeout(limit.as_secs()))?
}

/// How long a body may take before its average rate is held to `min_body_rate`:
/// a client's first bytes may wait on its own disk or a slow start.
pub(crate) const BODY_RATE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The slowest a body may arrive, from when its reading began.
#[derive(Clone, Copy)]
struct Pace {
    /// Bytes a second, averaged; 0: no floor.
    min_rate: u64,
    started: tokio::time::Instant,
}

impl Pace {
    /// When the next bytes must have arrived for `received` to stay above the floor.
    fn next_by(&self, received: usize) -> Option<tokio::time::Instant> {
        if self.min_rate == 0 {
            return None;
        }
        let due =
            std::time::Duration::from_secs_f64((received as f64 + 1.0) / self.min_rate as f64);
        Some(self.started + due.max(BODY_RATE_GRACE))
    }
}

/// How much of a body is read before its task lets the connection thread's other tasks
/// run.
const YIELD_BYTES: usize = 64 << 10;

async fn collect(
    mut body: Incoming,
    max: usize,
    pace: Pace,
    budget: Option<&ByteBudget>,
) -> Result<(Bytes, Reserved), ApiError> {
    // Sized from Content-Length (within the limit; reserved, not touched, until bytes
    // arrive): growing by doubling copied up to half of a 27 MB upload at once on the
    // connection's thread, stalling the other connections that thread serves.
    let declared = usize::try_from(hyper::body::Body::size_hint(&body).lower()).unwrap_or(max);
    let mut held = Reserved::default();
    let over_budget = |b: &ByteBudget| ApiError::BodyBudget(b.total());
    if let Some(b) = budget {
        if !b.grow(&mut held, declared.min(max)) {
            return Err(over_budget(b));
        }
    }
    let mut buf = Vec::with_capacity(declared.min(max));
    let mut total = 0usize;
    let mut since_yield = 0usize;
    loop {
        let frame = match pace.next_by(total) {
            None => body.frame().await,
            Some(by) => match tokio::time::timeout_at(by, body.frame()).await {
                Ok(frame) => frame,
                Err(_) => return Err(ApiError::BodyTooSlow(pace.min_rate)),
            },
        };
        let Some(frame) = frame else { break };
        let frame =
            frame.map_err(|e| ApiError::MalformedBody(format!("could not read the body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        total = total.saturating_add(data.len());
        // A body arriving faster than it is copied is never `Pending`, and tokio's
        // budget lets a task run ~128 reads: a 27 MB upload would hold its thread for
        // all of them while the picture reads and queries queued behind it waited
        // (p99 30-40 ms). Let them go every [`YIELD_BYTES`].
        since_yield += data.len();
        if since_yield >= YIELD_BYTES {
            since_yield = 0;
            tokio::task::yield_now().await;
        }
        if total <= max {
            if let Some(b) = budget {
                // Past what it announced (chunked): reserve as it grows.
                let short = total.saturating_sub(held.bytes());
                if short > 0 && !b.grow(&mut held, short.max(YIELD_BYTES)) {
                    return Err(over_budget(b));
                }
            }
            buf.extend_from_slice(&data);
        } else if total > max.saturating_add(DRAIN_BYTES) {
            return Err(ApiError::BodyTooLarge(max));
        } else {
            buf = Vec::new();
        }
    }
    match total > max {
        true => Err(ApiError::BodyTooLarge(max)),
        false => Ok((Bytes::from(buf), held)),
    }
}

/// The body, unless its `Content-Length` is past `max`: then 413 at once (RFC 9110
/// §10.1.1, §15.5.14), before `100 Continue` — hyper sends it only when the body is
/// first polled — and without keeping a byte. A client that sent the body without
/// waiting has it read and dropped after the answer ([`discard_after_answer`]), so
/// it reads the 413 rather than a connection reset; one that waits for `100
/// Continue` never gets it (its connection closes after the answer). A chunked body
/// has no declared length: it is refused as it grows past `max` ([`read`]).
pub(crate) fn refuse_declared(
    (headers, extensions): (&hyper::HeaderMap, &hyper::http::Extensions),
    body: Incoming,
    max: usize,
) -> Result<Incoming, ApiError> {
    let declared = hyper::body::Body::size_hint(&body).exact();
    if declared.is_none_or(|n| n <= max as u64) {
        return Ok(body);
    }
    // The connection is kept only when all of the body is read and dropped.
    let waits = expects_continue(headers);
    if waits || declared.is_some_and(|n| n > DRAIN_BYTES as u64) {
        if let Some(close) = extensions.get::<CloseAfter>() {
            close.0.store(true, Ordering::Relaxed);
        }
    }
    if !waits {
        discard_after_answer(body, DRAIN_BYTES, DRAIN_TIME);
    }
    Err(ApiError::BodyTooLarge(max))
}

/// Whether the client waits for `100 Continue` before it sends the body (RFC 9110
/// §10.1.1), judged as hyper judges it: by the last `Expect` field.
fn expects_continue(headers: &hyper::HeaderMap) -> bool {
    headers
        .get_all(hyper::header::EXPECT)
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
}

/// Whether the client keeps the connection after this request (RFC 9112 §9.3): HTTP/1.1
/// unless it says `Connection: close`, HTTP/1.0 only when it says `keep-alive`.
fn keeps_connection(head: &hyper::http::request::Parts) -> bool {
    let says = |token: &str| {
        head.headers
            .get_all(hyper::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    match head.version {
        hyper::Version::HTTP_10 => says("keep-alive"),
        _ => !says("close"),
    }
}

/// Most bytes of a body no handler read (a request refused before its body: 401, 403,
/// 429) that are read and dropped after the answer so that the connection stays open
/// for the client's next request — a digest client's retry, which Java clients send on
/// the same connection. A longer body, or one of unknown length, is answered with
/// `Connection: close` (what is read of it is still dropped, within the same bound).
pub(crate) const UNREAD_DRAIN_BYTES: usize = 8 << 20;

/// The longest a body no handler read is read and dropped after its answer: the body
/// timeout's default, so a slow uplink's (a camera on 4G) still ends before the
/// connection is given up on.
pub(crate) const UNREAD_DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(60);

/// Set on a request (an extension) when its connection must close after the answer:
/// its body was left unread past what is drained ([`Unread`]). The answer then says so,
/// `Connection: close` (RFC 9112 §9.6), rather than the connection just ending under a
/// client that may send its next request on it (RFC 9112 §9.3).
#[derive(Clone, Default)]
pub(crate) struct CloseAfter(pub(crate) Arc<AtomicBool>);

impl CloseAfter {
    pub(crate) fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A request's body until a handler takes it ([`Unread::take`]). Dropped unread (a
/// refusal before the body, a handler that needs none), it is read and dropped after the
/// answer, up to [`UNREAD_DRAIN_BYTES`] within [`UNREAD_DRAIN_TIME`] and given up after a
/// pause of [`DRAIN_STALL`], so the client reads its answer rather than a reset while it
/// writes; a body of at most that length, on a connection the client keeps, leaves the
/// connection open. Otherwise — a longer or chunked body, a client waiting for `100
/// Continue` (never sent: its body is never polled, nor drained) or one closing the
/// connection itself — the request's [`CloseAfter`] is set and the connection closes
/// after the answer.
pub(crate) struct Unread {
    body: Option<Incoming>,
    /// The client waits for `100 Continue` before it sends the body.
    waits: bool,
    /// The client keeps the connection after this request.
    keeps: bool,
    close: CloseAfter,
}

impl Unread {
    /// The request's head and its body held unread.
    pub(crate) fn of(req: hyper::Request<Incoming>) -> (hyper::http::request::Parts, Unread) {
        let (head, body) = req.into_parts();
        let close = head
            .extensions
            .get::<CloseAfter>()
            .cloned()
            .unwrap_or_default();
        let (waits, keeps) = (expects_continue(&head.headers), keeps_connection(&head));
        (
            head,
            Unread {
                body: Some(body),
                waits,
                keeps,
                close,
            },
        )
    }

    /// The body, to read (once; `None` after).
    pub(crate) fn take(&mut self) -> Option<Incoming> {
        self.body.take()
    }

    /// Marks the connection to close after the answer (its body taken and not read to
    /// its end).
    pub(crate) fn close_after(&self) {
        self.close.0.store(true, Ordering::Relaxed);
    }
}

impl Drop for Unread {
    fn drop(&mut self) {
        let Some(body) = self.body.take() else {
            return;
        };
        if hyper::body::Body::is_end_stream(&body) {
            return;
        }
        let declared = hyper::body::Body::size_hint(&body).exact();
        let within = declared.is_some_and(|n| n <= UNREAD_DRAIN_BYTES as u64);
        // Read and dropped unless the client holds it back for `100 Continue` (then it
        // never comes): a client closing the connection itself, or sending more than
        // is drained, still reads its answer rather than a reset while it writes.
        // Off tokio's threads (a body dropped on a rayon thread) nothing is drained.
        let drained = !self.waits && tokio::runtime::Handle::try_current().is_ok();
        if !(drained && within && self.keeps) {
            self.close.0.store(true, Ordering::Relaxed);
        }
        if drained {
            discard_after_answer(body, UNREAD_DRAIN_BYTES, UNREAD_DRAIN_TIME);
        }
    }
}

/// The longest a refused body is read and dropped after its answer.
pub(crate) const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads and drops a refused body while its answer is sent, up to `most` bytes and
/// within `time` (closing a socket with unread bytes resets it, and the client would
/// lose the answer).
fn discard_after_answer(mut body: Incoming, most: usize, time: std::time::Duration) {
    tokio::spawn(async move {
        let drain = async {
            let mut total = 0usize;
            // A client that stops sending (an announced body never sent) frees the
            // connection after DRAIN_STALL, not after `time`.
            while let Ok(Some(Ok(frame))) = tokio::time::timeout(DRAIN_STALL, body.frame()).await {
                total = total.saturating_add(frame.data_ref().map_or(0, |d| d.len()));
                if total > most {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(time, drain).await;
    });
}

/// The longest a body being drained after its answer may pause before it is given up
/// (and the connection with it).
pub(crate) const DRAIN_STALL: std::time::Duration = std::time::Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::body::Body as _;

    /// A body in parts is their concatenation, its length known before a byte is
    /// sent (`Content-Length`) and counting down as parts go; empty parts are
    /// dropped, so a body of none ends at once.
    #[tokio::test]
    async fn a_whole_body_sends_its_parts_in_order_with_their_length() {
        let parts = [
            "{\"events\":[",
            "",
            "{\"id\":1}",
            ",{\"id\":2}",
            "],\"stays\":[]}",
        ];
        let body = Whole::new(parts.iter().map(|p| Bytes::from_static(p.as_bytes())));
        let text: String = parts.concat();
        assert_eq!(body.size_hint().exact(), Some(text.len() as u64));
        assert!(!body.is_end_stream());
        let mut frames = Vec::new();
        let mut body = std::pin::pin!(body);
        while let Some(frame) = body.frame().await {
            let data = frame.unwrap().into_data().unwrap();
            frames.push(data);
            let sent: usize = frames.iter().map(|f| f.len()).sum();
            assert_eq!(body.size_hint().exact(), Some((text.len() - sent) as u64));
        }
        assert!(body.is_end_stream());
        assert_eq!(frames.len(), 4, "the empty part is not a frame");
        assert_eq!(frames.concat(), text.as_bytes());

        let none = Whole::new([Bytes::new()]);
        assert!(none.is_end_stream());
        assert_eq!(none.size_hint().exact(), Some(0));
        let one = respond(StatusCode::OK, Body::Json(vec![Bytes::from_static(b"[1]")]));
        assert_eq!(one.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(one.into_body().collect().await.unwrap().to_bytes(), "[1]");
    }
}
