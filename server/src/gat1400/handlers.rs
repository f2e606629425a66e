//! The `/VIID` routes. Every answer is GA/T 1400's own (`application/VIID+JSON`, a
//! `ResponseStatusObject` or list), never the `/v1` error shape: devices parse it.

use std::collections::HashMap;
use std::sync::Arc;

use hyper::body::Bytes;
use hyper::header::{HeaderValue, ACCEPT_ENCODING, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::StatusCode;
use serde_json::{json, Value};

use super::digest::DigestError;
use super::image_list::Image;
use super::objects::{objects, BodyError, Devices, Object, Upload, Uploader};
use super::query::{Proof, Querier};
use super::relay::Relay;
use super::{
    local_time, one_status, status_list, status_object, Gateway, BUSY, DEVICE_ERROR,
    INVALID_JSON_CONTENT, INVALID_JSON_FORMAT, INVALID_OPERATION, OK, OTHER_ERROR,
};
use crate::error::{ApiError, RecordError};
use crate::http::out::{IMAGES_ATTR, OBJECT_ATTR};
use crate::http::{Answer, Body, Call};
use crate::ingest::{ingest, Fate};
use crate::App;
use sightline_storage::{AttrValue, EventInput};

/// A request as the gateway's blocking work sees it (`serve`'s, and a cluster ingest
/// node's).
pub(crate) struct Exchange {
    pub method: String,
    pub path: String,
    /// The raw query string, when the request has one (a digest's `uri` names it).
    pub query: Option<String>,
    /// `http://host` (`https` on TLS) from the request's `Host`, when it has one: the
    /// answers' `RequestURL` is the full URL, as the standard's examples write it.
    pub origin: Option<String>,
    pub authorization: Option<String>,
    pub user_identify: Option<String>,
    /// The body, inflated and without a byte order mark.
    pub body: Bytes,
    /// The body as it came (before inflation; no digest we take hashes it: only
    /// `qop=auth` or none is accepted).
    pub raw: Bytes,
    pub now_ms: i64,
    /// The caller a digest proved before the body was read.
    pub pre_authorized: Option<String>,
    /// The client's address.
    pub peer: Option<std::net::IpAddr>,
}

impl Exchange {
    /// The request's target as a digest's `uri` names it: the path, and `?query`.
    pub(crate) fn target(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        }
    }

    /// The `RequestURL` of the answers: `http://host/path` when the request named its
    /// host, else the path.
    pub(crate) fn url(&self) -> String {
        match &self.origin {
            Some(o) => format!("{o}{}", self.path),
            None => self.path.clone(),
        }
    }
}

/// `http://host` (`https` on a TLS connection) for a request's `Host` header value,
/// when it is one a URL can carry.
pub(crate) fn origin(host: Option<&str>, tls: bool) -> Option<String> {
    // A host name is at most 253 bytes (RFC 1035), with a port 6 more: a longer
    // `Host` is not copied into every status object of an answer.
    let host = host
        .map(str::trim)
        .filter(|h| !h.is_empty() && h.len() <= 260)?;
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
    {
        return None;
    }
    Some(format!("{}://{host}", if tls { "https" } else { "http" }))
}

/// The client's address, as the accept loop recorded it.
fn peer_of(c: &Call) -> Option<std::net::IpAddr> {
    c.head.extensions.get::<crate::serve::Peer>().map(|p| p.0)
}

/// A GA/T 1400 answer: status, body, and the `WWW-Authenticate` challenges (one
/// header each, MD5 first: [`Gateway::challenge`]).
pub(crate) struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub challenge: Vec<String>,
}

/// Seconds a `/VIID` 429 or 503 asks the client to wait (`Retry-After`, RFC 9110
/// §10.2.3), as the JSON API's busy answers do.
pub(crate) const VIID_RETRY_AFTER_S: u32 = 1;

/// The `Content-Type` of every `/VIID` answer.
pub(crate) const VIID_JSON: &str = "application/VIID+JSON;charset=UTF-8";

impl Reply {
    pub(crate) fn ok(body: Value) -> Reply {
        Reply::with(StatusCode::OK, body)
    }

    pub(crate) fn with(status: StatusCode, body: Value) -> Reply {
        Reply {
            status,
            body,
            challenge: Vec::new(),
        }
    }

    /// The headers besides `Content-Type`: each challenge (in order: many cameras read
    /// only the first), and `Retry-After` on a 429 or 503.
    pub(crate) fn headers(&self) -> Vec<(hyper::header::HeaderName, HeaderValue)> {
        let mut headers: Vec<_> = self
            .challenge
            .iter()
            .filter_map(|c| HeaderValue::from_str(c).ok())
            .map(|c| (WWW_AUTHENTICATE, c))
            .collect();
        if self.status == StatusCode::TOO_MANY_REQUESTS
            || self.status == StatusCode::SERVICE_UNAVAILABLE
        {
            headers.push((RETRY_AFTER, HeaderValue::from(VIID_RETRY_AFTER_S)));
        }
        headers
    }

    fn answer(self) -> Answer {
        let mut headers = vec![(CONTENT_TYPE, HeaderValue::from_static(VIID_JSON))];
        headers.extend(self.headers());
        (
            self.status,
            Body::Headed(headers, Box::new(self.body.into())),
        )
    }
}

/// A `/VIID` refusal no handler made (405, 501): `status` with one
/// `ResponseStatusObject` (`code`, `why`) about `url`.
pub(crate) fn viid_answer(status: StatusCode, url: &str, code: i64, why: &str) -> Answer {
    Reply::with(status, one_status("", url, code, why, crate::now_ms())).answer()
}

/// Reads the body (a failure answered in GA/T 1400's shape), then runs `f` on the
/// blocking pool: the gateway reads the catalog and appends to the store.
async fn exchange<F>(c: Call, f: F) -> Result<Answer, ApiError>
where
    F: FnOnce(&Arc<App>, Exchange) -> Reply + Send + 'static,
{
    exchange_as(c, Gate::Open, f).await
}

/// Who may send a body to a route, decided before it is read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// Anyone, with a small body (registration, keepalive, time).
    Open,
    /// A registered caller or a valid digest (uploads, listings, dispositions): checked
    /// from the headers first, so nobody else gets a byte of a 64 MiB body read, and
    /// within the gateway's slots.
    Registered,
    /// As `Registered`, and also an upper platform this server is registered with, by
    /// its exact 视图库 id in `User-Identify` while that registration is live
    /// (`Registry::upper`): the routes an upper uses (subscriptions, catalogue reads,
    /// notifications), never uploads or dispositions.
    Platform,
}

/// The most a registration, keepalive or time request's body may hold.
pub(crate) const SYSTEM_BODY_BYTES: usize = 64 << 10;

async fn exchange_as<F>(mut c: Call, gate: Gate, f: F) -> Result<Answer, ApiError>
where
    F: FnOnce(&Arc<App>, Exchange) -> Reply + Send + 'static,
{
    let now_ms = crate::now_ms();
    let url = Exchange::of_head(&c, (Bytes::new(), Bytes::new()), now_ms, None).url();
    let early = |e: ApiError, code: i64, url: &str| {
        let s = one_status("", url, code, &e.to_string(), now_ms);
        Ok(Reply::with(e.status(), s).answer())
    };
    let (max, slot, pre_authorized) = match gate {
        Gate::Open => (SYSTEM_BODY_BYTES, None, None),
        Gate::Registered | Gate::Platform => {
            let Ok(slot) = c.app.viid_slots.clone().try_acquire_owned() else {
                return early(ApiError::Busy("the GA/T 1400 gateway"), BUSY, &url);
            };
            match authorized_early(&c, gate) {
                Ok(id) => {
                    // One caller (a device, a platform) holds its share of the slots,
                    // however many connections it opens.
                    let who = caller_key(id.as_deref(), c.header("user-identify"), peer_of(&c));
                    let Some(share) = c.app.viid_callers.take(&who) else {
                        return early(
                            ApiError::Busy("this caller's share of the GA/T 1400 gateway"),
                            BUSY,
                            &url,
                        );
                    };
                    (c.app.config.max_viid_body_bytes, Some((slot, share)), id)
                }
                Err(why) => {
                    let x = Exchange::of_head(&c, (Bytes::new(), Bytes::new()), now_ms, None);
                    return Ok(refused(&c.app.gateway, &x, &why).answer());
                }
            }
        }
    };
    let gzipped = match coding(c.header(hyper::header::CONTENT_ENCODING)) {
        Ok(gzipped) => gzipped,
        Err(named) => {
            let why = format!("Content-Encoding {named:?} is not supported: send gzip or none");
            let s = one_status("", &url, INVALID_JSON_FORMAT, &why, now_ms);
            let headers = vec![
                (CONTENT_TYPE, HeaderValue::from_static(VIID_JSON)),
                (ACCEPT_ENCODING, HeaderValue::from_static("gzip")),
            ];
            let body = Body::Headed(headers, Box::new(s.into()));
            return Ok((StatusCode::UNSUPPORTED_MEDIA_TYPE, body));
        }
    };
    // Bodies of the gated routes count against the gateway's in-flight bytes (what
    // they announce, then what they grow to, inflated included) until handled.
    let gateway = c.app.clone();
    let budget = slot.as_ref().map(|_| &gateway.viid_bytes);
    let (body, mut held) = match c.body_budgeted(max, budget).await {
        Ok(b) => b,
        Err(e @ ApiError::BodyBudget(_)) => return early(e, BUSY, &url),
        Err(e) => {
            let code = body_failure_code(&e);
            return early(e, code, &url);
        }
    };
    let raw = body.clone();
    let body = match gzipped {
        false => body,
        true => {
            // Inflating may take up to the limit: reserved before, not after.
            if let Some(b) = budget {
                if !b.grow(&mut held, max) {
                    return early(ApiError::BodyBudget(b.total()), BUSY, &url);
                }
            }
            match gunzip(&body, max) {
                Ok(inflated) => inflated,
                Err(e) => {
                    let code = body_failure_code(&e);
                    return early(e, code, &url);
                }
            }
        }
    };
    // RFC 8259 §8.1: a byte order mark before the JSON is ignored, not an error.
    let body = match body.starts_with(b"\xEF\xBB\xBF") {
        true => body.slice(3..),
        false => body,
    };
    // A body a Chinese platform sends in GBK, GB2312 or GB18030, as UTF-8: its text may
    // take up to the limit again, reserved before.
    if is_gb_body(c.header(CONTENT_TYPE), &body) {
        if let Some(b) = budget {
            if !b.grow(&mut held, max) {
                return early(ApiError::BodyBudget(b.total()), BUSY, &url);
            }
        }
    }
    let body = match to_utf8_blocking(c.header(CONTENT_TYPE), body, max).await {
        Ok(b) => b,
        Err(e) => {
            let code = body_failure_code(&e);
            return early(e, code, &url);
        }
    };
    let x = Exchange::of_head(&c, (raw, body), now_ms, pre_authorized);
    let app: Arc<App> = c.app;
    let done = tokio::task::spawn_blocking(move || {
        let _held = (slot, held);
        f(&app, x)
    })
    .await;
    match done {
        Ok(reply) => Ok(reply.answer()),
        Err(e) => {
            let e = ApiError::internal(format!("the GA/T 1400 task failed: {e}"));
            Ok(Reply::with(e.status(), e.json()).answer())
        }
    }
}

/// Whose share of the GA/T 1400 slots a request takes, keyed on what is proven
/// before its body: the digest's identity (`proven`), a registration (bound to its
/// address); the client's address when neither names one.
pub(crate) fn caller_key(
    proven: Option<&str>,
    user_identify: Option<&str>,
    peer: Option<std::net::IpAddr>,
) -> String {
    let address = || peer.map_or_else(String::new, |p| format!("address {p}"));
    match proven {
        Some(id) => id.to_string(),
        None => user_identify
            .map(|s| s.trim().to_string())
            .unwrap_or_else(address),
    }
}

/// Before the body: the caller a digest in the headers proves (every digest is judged
/// from the headers alone: `qop=auth-int` is refused), or a registered
/// `User-Identify` (`None`); otherwise why not.
fn authorized_early(c: &Call, gate: Gate) -> Result<Option<String>, DigestError> {
    let identity = c
        .header("user-identify")
        .map(str::trim)
        .filter(|s| !s.is_empty());
    // A client certificate naming the caller proves it (and binds its address) before
    // a registration is looked at: with `--viid-registration-any-address` the
    // registration would pass from anywhere and the certificate go unread.
    let without_digest = |why: DigestError| match identity {
        Some(id) if certified(c, id) => Ok(Some(id.to_string())),
        Some(id) if c.app.gateway.is_registered(id, peer_of(c)) => Ok(None),
        Some(id) if gate == Gate::Platform && c.app.subscriptions.admits_upper(id, peer_of(c)) => {
            Ok(None)
        }
        _ => Err(why),
    };
    match c
        .header_text("authorization")
        .filter(|h| !h.trim().is_empty())
    {
        Some(h) => {
            let method = c.head.method.as_str();
            let target = match c.head.uri.query() {
                Some(q) => format!("{}?{q}", c.path),
                None => c.path.clone(),
            };
            // A digest that does not verify (stale, for another request, `Basic`)
            // leaves the caller judged as without it: firmware re-sends its last
            // digest on every request.
            match c.app.gateway.check_digest(
                &c.app.gateway.in_store(&c.app.store),
                method,
                &target,
                Some(h.as_str()),
                identity,
                b"",
            ) {
                Ok(id) => Ok(Some(id)),
                Err(why) => without_digest(why),
            }
        }
        None => without_digest(DigestError::NotRegistered),
    }
}

/// Whether the connection's client certificate (mTLS, verified against
/// `--tls-client-ca`) names `id`, a code with a GA/T 1400 credential: that proves the
/// caller as a digest would.
fn certified(c: &Call, id: &str) -> bool {
    c.head
        .extensions
        .get::<crate::tls::ClientCert>()
        .is_some_and(|cert| cert.names(id))
        && matches!(c.app.store.catalog().gat1400_credential(id), Ok(Some(_)))
}

impl Exchange {
    fn of_head(
        c: &Call,
        (raw, body): (Bytes, Bytes),
        now_ms: i64,
        pre_authorized: Option<String>,
    ) -> Exchange {
        Exchange {
            method: c.head.method.to_string(),
            path: c.path.clone(),
            query: c.head.uri.query().map(str::to_string),
            // RFC 9112 §3.2.2: an absolute-form target's authority is the host, not
            // the `Host` header.
            origin: origin(
                c.head
                    .uri
                    .authority()
                    .map(|a| a.as_str())
                    .or(c.header(hyper::header::HOST)),
                c.app.config.tls.is_some(),
            ),
            authorization: c.header_text("authorization"),
            user_identify: c.header("user-identify").map(str::to_string),
            body,
            raw,
            now_ms,
            pre_authorized,
            peer: peer_of(c),
        }
    }
}

/// Whether a `Content-Encoding` says gzip (`gzip`, or `x-gzip`: RFC 9110 §8.4.1.3);
/// none or `identity` is plain; any other coding is `Err` with its name (415).
pub(crate) fn coding(header: Option<&str>) -> Result<bool, String> {
    let mut gzipped = false;
    for named in header.unwrap_or("").split(',').map(str::trim) {
        match named.to_ascii_lowercase().as_str() {
            "" | "identity" => {}
            "gzip" | "x-gzip" if !gzipped => gzipped = true,
            _ => return Err(named.to_string()),
        }
    }
    Ok(gzipped)
}

/// The `charset` parameter of a `Content-Type` (RFC 9110 §8.3.2: case-insensitive,
/// optionally quoted), when it has one.
fn charset_of(content_type: Option<&str>) -> Option<String> {
    content_type?.split(';').skip(1).find_map(|p| {
        let (name, value) = p.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches('"').to_ascii_lowercase())
    })
}

/// Whether a `Content-Type` says the body is GBK, GB2312 or GB18030 (which
/// [`to_utf8`] decodes; the UTF-8 may take up to three times the bytes, so callers
/// reserve `max` more of their byte budget first, as for an inflated body).
pub(crate) fn is_gb(content_type: Option<&str>) -> bool {
    charset_of(content_type)
        .is_some_and(|c| matches!(c.as_str(), "gbk" | "gb2312" | "gb18030" | "x-gbk"))
}

/// Whether a `/VIID` body is read as GB18030 ([`to_utf8`]): its `Content-Type` says
/// GBK, GB2312 or GB18030 ([`is_gb`]), or it names no charset and is not UTF-8 (older
/// cameras and platforms built for Chinese Windows send their plates in GBK under a
/// bare `application/json`). Callers reserve `max` more of their byte budget first.
pub(crate) fn is_gb_body(content_type: Option<&str>, body: &[u8]) -> bool {
    is_gb(content_type) || (charset_of(content_type).is_none() && looks_gbk(body))
}

/// Whether a body naming no charset is GBK rather than UTF-8: it is not UTF-8, and
/// no CJK ideograph in UTF-8 comes before its first byte that is not. A UTF-8 body
/// with one stray byte after its plate (`苏E12345 … Caf\xe9`) is not guessed GBK
/// (decoded so, its plate would be stored garbled); a GBK body whose first characters
/// happen to be UTF-8 too (豫 is `d4 a5`, U+0525; 鲁 `c2 b3`, ³) is.
fn looks_gbk(body: &[u8]) -> bool {
    match std::str::from_utf8(body) {
        Ok(_) => false,
        Err(e) => !std::str::from_utf8(&body[..e.valid_up_to()])
            .unwrap_or_default()
            .chars()
            .any(is_cjk),
    }
}

/// A CJK ideograph (the unified blocks, their extensions and compatibility forms):
/// what a UTF-8 plate or place name holds.
fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x3134F)
}

/// A `/VIID` body as UTF-8: one whose `Content-Type` says `charset=GBK`, `GB2312` or
/// `GB18030` (platforms built for Chinese Windows send them), or that names no charset
/// and is not UTF-8 ([`is_gb_body`]), decoded with `encoding_rs` (GB18030, of which the
/// other two are subsets; its decoder, per the WHATWG Encoding Standard, also takes
/// GB18030's four-byte sequences under `GBK`); any other charset, or UTF-8 with none,
/// is taken as UTF-8, as GA/T 1400 says. Bytes that do not decode are 400; the UTF-8
/// text (up to three times the bytes) is held to `max` as it is written, never more
/// (413).
pub(crate) fn to_utf8(
    content_type: Option<&str>,
    body: hyper::body::Bytes,
    max: usize,
) -> Result<hyper::body::Bytes, ApiError> {
    if !is_gb_body(content_type, &body) {
        return Ok(body);
    }
    let not_text = match charset_of(content_type) {
        Some(charset) => format!("the body is not {charset} text"),
        None => "the body is neither UTF-8 nor GBK text".to_string(),
    };
    let mut decoder = encoding_rs::GB18030.new_decoder_without_bom_handling();
    // The decoder writes into the string's spare room only: room for the whole
    // decoded body at once (as the decoder bounds it: up to three bytes of UTF-8 a
    // byte, e.g. 0x80 for '€'), never past `max` + 4 (one more character), so a body
    // past `max` stops there; doubled if ever short.
    let cap = max.saturating_add(4);
    let worst = decoder
        .max_utf8_buffer_length_without_replacement(body.len())
        .unwrap_or(cap);
    let mut out = String::with_capacity(worst.min(cap));
    let mut src: &[u8] = &body;
    loop {
        let (result, read) = decoder.decode_to_string_without_replacement(src, &mut out, true);
        src = &src[read..];
        match result {
            encoding_rs::DecoderResult::InputEmpty => break,
            encoding_rs::DecoderResult::Malformed(..) => {
                return Err(ApiError::MalformedBody(not_text))
            }
            encoding_rs::DecoderResult::OutputFull => {
                if out.capacity() >= cap {
                    return Err(ApiError::BodyTooLarge(max));
                }
                out.reserve_exact((cap - out.capacity()).clamp(4, out.capacity().max(4)));
            }
        }
    }
    if out.len() > max {
        return Err(ApiError::BodyTooLarge(max));
    }
    Ok(hyper::body::Bytes::from(out))
}

/// [`to_utf8`] on a blocking thread when there is anything to decode (CPU work, off
/// the connections' threads).
pub(crate) async fn to_utf8_blocking(
    content_type: Option<&str>,
    body: hyper::body::Bytes,
    max: usize,
) -> Result<hyper::body::Bytes, ApiError> {
    if !is_gb_body(content_type, &body) {
        return Ok(body);
    }
    let content_type = content_type.map(str::to_string);
    tokio::task::spawn_blocking(move || to_utf8(content_type.as_deref(), body, max))
        .await
        .map_err(|e| ApiError::internal(format!("decoding the body failed: {e}")))?
}

/// A `Content-Encoding: gzip` body (some platforms' clients compress bodies of 2 KB and
/// more), inflated within the same limit as a plain one.
pub(crate) fn gunzip(bytes: &[u8], max: usize) -> Result<hyper::body::Bytes, ApiError> {
    use std::io::Read;
    let mut out = Vec::new();
    // Every member (RFC 1952 §2.2: a gzip file is a series of members; appended
    // files are one body of two).
    flate2::read::MultiGzDecoder::new(bytes)
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ApiError::MalformedBody(format!("the gzip body does not inflate: {e}")))?;
    if out.len() > max {
        return Err(ApiError::BodyTooLarge(max));
    }
    Ok(out.into())
}

/// 401 with a fresh challenge.
pub(crate) fn unauthorized(gateway: &Gateway, x: &Exchange, why: &str) -> Reply {
    Reply {
        status: StatusCode::UNAUTHORIZED,
        body: one_status("", &x.url(), INVALID_OPERATION, why, x.now_ms),
        challenge: gateway.challenge(false),
    }
}

/// 401 for a refused digest: a fresh challenge, marked `stale=true` when the response
/// was right but its nonce too old or its `nc` already used (RFC 7616 §3.3: the client
/// answers again with the new nonce without asking anyone). A digest for another
/// target, or without what its `qop` requires, is a bad request (400, RFC 7616 §3.4.6
/// / RFC 2617 §3.2.2.5). Credentials that cannot be read (the store failing, a cluster
/// node's PostgreSQL out of reach) are the server's fault, not the caller's: 503 with
/// `Retry-After` and no challenge (a new one would only be refused again).
pub(crate) fn refused(gateway: &Gateway, x: &Exchange, why: &DigestError) -> Reply {
    let code = match why {
        DigestError::Storage(_) | DigestError::Unavailable(_) => DEVICE_ERROR,
        _ => INVALID_OPERATION,
    };
    // An unknown user name is told as a wrong answer is, so that a caller cannot learn
    // which device codes have a credential (the reason is logged for the operator).
    let said = match why {
        DigestError::UnknownUser(_) => {
            tracing::info!(reason = %why, "GA/T 1400 digest refused");
            DigestError::WrongResponse.to_string()
        }
        // A device answering with a `qop` or algorithm no challenge offers (firmware set
        // to `auth-int`) is refused on every retry, for ever: the operator is told, once
        // per address and reason.
        DigestError::Qop(_) | DigestError::Algorithm => {
            if first_unanswerable(x.peer, x.user_identify.as_deref(), why) {
                tracing::warn!(
                    peer = ?x.peer,
                    caller = x.user_identify.as_deref().unwrap_or("").chars().take(48).collect::<String>(),
                    reason = %why,
                    "a GA/T 1400 caller's digest can never be accepted (qop=auth and \
                     MD5/SHA-256 are offered); it is refused on every retry"
                );
            }
            why.to_string()
        }
        _ => why.to_string(),
    };
    let body = one_status("", &x.url(), code, &said, x.now_ms);
    match why {
        DigestError::OtherUri(_) | DigestError::Malformed(_) => {
            Reply::with(StatusCode::BAD_REQUEST, body)
        }
        DigestError::Storage(e) => {
            tracing::error!(error = %e, "cannot read a GA/T 1400 credential");
            Reply::with(StatusCode::SERVICE_UNAVAILABLE, body)
        }
        DigestError::Unavailable(_) => Reply::with(StatusCode::SERVICE_UNAVAILABLE, body),
        _ => Reply {
            status: StatusCode::UNAUTHORIZED,
            body,
            challenge: gateway.challenge(matches!(
                why,
                DigestError::StaleNonce | DigestError::Replayed
            )),
        },
    }
}

/// Whether a caller refused for `why` (a digest no challenge offers, see [`refused`])
/// is told for the first time: once per address, claimed identity and reason (the
/// `qop` named, 32 characters at most), not on each of a looping device's retries. At
/// most [`UNANSWERABLE_REMEMBERED`] are remembered; past them no new one is named (the
/// memory and the log stay bounded however many devices loop).
fn first_unanswerable(
    peer: Option<std::net::IpAddr>,
    caller: Option<&str>,
    why: &DigestError,
) -> bool {
    type Seen = std::collections::HashSet<(Option<std::net::IpAddr>, String, String)>;
    static SEEN: std::sync::LazyLock<std::sync::Mutex<Seen>> =
        std::sync::LazyLock::new(Default::default);
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    let key = (
        peer,
        caller.unwrap_or("").chars().take(48).collect(),
        why.to_string(),
    );
    // One address names a few callers at most: a stranger varying its headers cannot
    // fill the memory and silence the warnings about real devices.
    if seen.len() >= UNANSWERABLE_REMEMBERED
        || seen.contains(&key)
        || seen.iter().filter(|k| k.0 == peer).count() >= UNANSWERABLE_PER_ADDRESS
    {
        return false;
    }
    seen.insert(key)
}

/// Callers (identity and reason) [`first_unanswerable`] names from one address.
const UNANSWERABLE_PER_ADDRESS: usize = 4;

/// Callers [`first_unanswerable`] names (address, identity and reason).
const UNANSWERABLE_REMEMBERED: usize = 1024;

/// The code a `RegisterObject` / `UnRegisterObject` / `KeepaliveObject` names
/// (`DeviceID`), or a bare `{"DeviceID":…}` as ty-wssf/fliad-viid sends it.
pub(crate) fn registering(x: &Exchange) -> Option<String> {
    let v: Value = serde_json::from_slice(&x.body).ok()?;
    ["RegisterObject", "UnRegisterObject", "KeepaliveObject"]
        .iter()
        .find_map(|o| super::field(super::field(&v, o)?, "DeviceID")?.as_str())
        .or_else(|| super::field(&v, "DeviceID")?.as_str())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Why a Register, Keepalive or UnRegister body is refused (GA/T 1400.4 status 7):
/// it holds something that is not JSON. An empty body is taken (the caller is named
/// by `User-Identify` or the digest).
pub(crate) fn unreadable_body(x: &Exchange) -> Option<String> {
    if x.body.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(&x.body)
        .err()
        .map(|e| format!("not JSON: {e}"))
}

/// `User-Identify`, trimmed, when given.
pub(crate) fn identified(x: &Exchange) -> Option<String> {
    x.user_identify
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The digest of a (un)registration, checked for the identity it names; and that
/// identity.
fn registration(app: &App, x: &Exchange) -> (Result<String, DigestError>, Option<String>) {
    let identity = registering(x).or_else(|| identified(x));
    let checked = app.gateway.check_digest(
        &app.gateway.in_store(&app.store),
        &x.method,
        &x.target(),
        x.authorization.as_deref(),
        identity.as_deref(),
        &x.raw,
    );
    (checked, identity)
}

/// `POST /VIID/System/Register`: the digest handshake (the first request is answered
/// 401 with a nonce; the retry carries the response). The registration binds the code
/// the `RegisterObject` names (else `User-Identify`, else the digest's user name),
/// whose credential gives the user name and password.
pub(crate) async fn register(c: Call) -> Result<Answer, ApiError> {
    exchange(c, |app, x| {
        let (checked, _) = registration(app, &x);
        match checked {
            Err(why) => refused(&app.gateway, &x, &why),
            // Proven, but its body is not JSON: not registered.
            Ok(id) if unreadable_body(&x).is_some() => {
                let why = unreadable_body(&x).unwrap_or_default();
                Reply::ok(one_status(
                    &id,
                    &x.url(),
                    INVALID_JSON_FORMAT,
                    &why,
                    x.now_ms,
                ))
            }
            Ok(id) => {
                app.gateway.register(&id, x.peer);
                Reply::ok(one_status(&id, &x.url(), OK, "正常", x.now_ms))
            }
        }
    })
    .await
}

/// `POST /VIID/System/UnRegister`: with a valid digest, or from a registered identity
/// (`User-Identify` or the `UnRegisterObject`'s `DeviceID`) without one, as devices
/// send it on shutdown.
pub(crate) async fn unregister(c: Call) -> Result<Answer, ApiError> {
    exchange(c, |app, x| {
        let (checked, identity) = registration(app, &x);
        let id = match (checked, identity) {
            (Ok(id), _) => id,
            (Err(_), Some(id)) if app.gateway.is_registered(&id, x.peer) => id,
            (Err(why), _) => return refused(&app.gateway, &x, &why),
        };
        app.gateway.unregister(&id);
        Reply::ok(one_status(&id, &x.url(), OK, "正常", x.now_ms))
    })
    .await
}

/// `GET /VIID/System/Time`.
pub(crate) async fn time(c: Call) -> Result<Answer, ApiError> {
    exchange(c, |app, x| {
        Reply::ok(system_time(&app.config.viid_server_id, x.now_ms))
    })
    .await
}

/// `SystemTimeObject`: the gateway's id and its time.
pub(crate) fn system_time(server_id: &str, now_ms: i64) -> Value {
    json!({"SystemTimeObject": {"VIIDServerID": server_id,
        "TimeMode": "1", "LocalTime": local_time(now_ms), "TimeZone": "Asia/Shanghai"}})
}

/// The registered caller (`User-Identify`), renewed; or the 401 to answer. A valid
/// digest on any request registers its sender again (devices reconnecting after a
/// network drop answer the challenge on whatever request failed).
fn registered(app: &App, x: &Exchange) -> Result<String, Reply> {
    proven(
        app,
        x,
        |id| app.gateway.is_registered(id, x.peer),
        "not registered: POST /VIID/System/Register first",
    )
    .map(|(id, _)| id)
}

/// The caller proven before the body (`pre_authorized`: a digest in the headers, or
/// a client certificate), else by a digest on this request, else by a registration
/// `by_registration` takes (its `User-Identify`); renewed, with how it was proven
/// ([`Proof::Certificate`] is told as [`Proof::Digest`] here: [`querying_platform`]
/// tells them apart). Else the 401 to answer: the digest's refusal when one was sent,
/// otherwise a challenge saying `why`.
fn proven(
    app: &App,
    x: &Exchange,
    by_registration: impl Fn(&str) -> bool,
    why: &str,
) -> Result<(String, Proof), Reply> {
    if let Some(id) = &x.pre_authorized {
        app.gateway.register(id, x.peer);
        return Ok((id.clone(), Proof::Digest));
    }
    let identity = identified(x);
    let mut refusal = None;
    if x.authorization
        .as_deref()
        .is_some_and(|h| !h.trim().is_empty())
    {
        match app.gateway.check_digest(
            &app.gateway.in_store(&app.store),
            &x.method,
            &x.target(),
            x.authorization.as_deref(),
            identity.as_deref(),
            &x.raw,
        ) {
            Ok(id) => {
                app.gateway.register(&id, x.peer);
                return Ok((id, Proof::Digest));
            }
            // A digest that does not verify leaves the caller judged as without one
            // (a registered device re-sending its last digest is still registered).
            Err(why) => refusal = Some(why),
        }
    }
    match identity {
        Some(id) if by_registration(&id) => {
            // Renewed where it registered: a request the registration alone proves
            // does not move it (with any-address, the sender may be elsewhere).
            app.gateway.renew(&id, x.peer);
            Ok((id, Proof::Registration))
        }
        _ => Err(match refusal {
            Some(refusal) => refused(&app.gateway, x, &refusal),
            None => unauthorized(&app.gateway, x, why),
        }),
    }
}

/// The caller of a route an upper platform uses ([`Gate::Platform`]): a registered
/// caller as [`registered`] finds it, else an upper this server is registered with,
/// by its exact id (not registered here: nothing else opens to it).
fn platform(app: &App, x: &Exchange) -> Result<String, Reply> {
    registered(app, x).or_else(|refused| match identified(x) {
        Some(id) if app.subscriptions.admits_upper(&id, x.peer) => Ok(id),
        _ => Err(refused),
    })
}

/// The caller as `gate` lets it in.
fn caller_of(app: &App, x: &Exchange, gate: Gate) -> Result<String, Reply> {
    match gate {
        Gate::Platform => platform(app, x),
        _ => registered(app, x),
    }
}

/// `POST /VIID/System/Keepalive`: from a registered caller, named by `User-Identify`
/// or by the `KeepaliveObject`'s `DeviceID`.
pub(crate) async fn keepalive(c: Call) -> Result<Answer, ApiError> {
    exchange(c, |app, mut x| {
        if identified(&x).is_none() {
            x.user_identify = registering(&x);
        }
        // A body that is not JSON: status 7, to a caller proven by its headers or its
        // registration, and nothing registered or renewed for it.
        if let Some(why) = unreadable_body(&x) {
            // Proven by a digest here too without registering it (`registration`'s
            // check, as a Register's).
            let known = x
                .pre_authorized
                .clone()
                .or_else(|| identified(&x).filter(|id| app.gateway.is_registered(id, x.peer)))
                .or_else(|| registration(app, &x).0.ok());
            let id = match known {
                Some(id) => id,
                None => match registered(app, &x) {
                    Ok(id) => id,
                    Err(refused) => return refused,
                },
            };
            return Reply::ok(one_status(
                &id,
                &x.url(),
                INVALID_JSON_FORMAT,
                &why,
                x.now_ms,
            ));
        }
        match registered(app, &x) {
            Ok(id) => Reply::ok(one_status(&id, &x.url(), OK, "正常", x.now_ms)),
            Err(refused) => refused,
        }
    })
    .await
}

/// `POST /VIID/MotorVehicles`, `POST /VIID/Faces`: from a registered caller; answered
/// 200 with one `ResponseStatusObject` per uploaded object, as devices expect,
/// whatever happened to each.
pub(crate) async fn upload(c: Call) -> Result<Answer, ApiError> {
    exchange_as(c, Gate::Registered, |app, x| match registered(app, &x) {
        Ok(uploader) => store_objects(app, &x, &uploader),
        Err(refused) => refused,
    })
    .await
}

fn store_objects(app: &App, x: &Exchange, uploader: &str) -> Reply {
    let relay = match Relay::of(&app.store, uploader) {
        Ok(r) => r,
        Err(e) => return device_error(x, &e),
    };
    let by = uploader_of(app, uploader, relay.as_ref());
    let mut devices = Devices::new(&app.store, relay.as_ref()).uploaded_by(by);
    let limits = (
        app.config.gat1400_face_subject.as_str(),
        app.config.max_picture_bytes,
    );
    let (images, objects) = match parse_upload(&mut devices, x, limits) {
        Ok(p) => p,
        Err(refused) => return refused,
    };
    let ids: Vec<String> = objects.iter().map(|o| o.id.clone()).collect();
    match keep(app, objects) {
        Ok(texts) => upload_statuses(x, images, &ids, &texts),
        Err(e) => device_error(x, &e),
    }
}

/// Who `uploader` is as [`Devices::uploaded_by`] checks it: it names devices of its own
/// community, or of those it relays into.
fn uploader_of(app: &App, uploader: &str, relay: Option<&Relay>) -> Uploader {
    let own = app.store.catalog().device(uploader).ok().flatten();
    let mut communities: Vec<String> = own.into_iter().map(|d| d.community).collect();
    if let Some(r) = relay {
        communities.extend(r.prefixes.values().cloned());
    }
    Uploader {
        code: uploader.to_string(),
        communities,
    }
}

/// The objects of an upload to `x.path` (a list of one class, or `/VIID/Images` and
/// the images they were seen in), their devices looked up in `devices`, with the face
/// subject field and picture limit of `limits`; or the answer refusing the body.
pub(crate) fn parse_upload(
    devices: &mut Devices<'_>,
    x: &Exchange,
    limits: (&str, usize),
) -> Result<(Option<Vec<Image>>, Vec<Object>), Reply> {
    let (face_field, max_picture) = limits;
    let parsed = match Upload::of_path(&x.path) {
        Some(upload) => {
            objects(devices, upload, &x.body, face_field, max_picture).map(|o| (None, o))
        }
        None => super::image_list::images(devices, &x.body, face_field, max_picture)
            .map(|(images, o)| (Some(images), o)),
    };
    parsed.map_err(|e| {
        let code = match e {
            BodyError::NotJson(_) => INVALID_JSON_FORMAT,
            BodyError::NotAList(..) => INVALID_JSON_CONTENT,
        };
        let s = status_object("", &x.url(), code, &e.to_string(), x.now_ms);
        Reply::ok(status_list(vec![s]))
    })
}

/// The answer to an upload whose objects (`ids`) fared as `texts` say: one status per
/// object, or for `/VIID/Images` one per image (its first refused object's, else 0).
pub(crate) fn upload_statuses(
    x: &Exchange,
    images: Option<Vec<Image>>,
    ids: &[String],
    texts: &[(i64, String)],
) -> Reply {
    let status =
        |id: &str, code: i64, text: &str| status_object(id, &x.url(), code, text, x.now_ms);
    let statuses = match images {
        // One status per object …
        None => texts
            .iter()
            .zip(ids)
            .map(|((code, text), id)| status(id, *code, text))
            .collect(),
        // … or, for images, one per image: its first refused object's, else 0.
        Some(images) => images
            .iter()
            .map(|img| {
                let refused = texts[img.objects.clone()].iter().find(|(c, _)| *c != OK);
                match (refused, img.objects.is_empty()) {
                    (Some((code, text)), _) => status(&img.id, *code, text),
                    (None, true) => status(
                        &img.id,
                        OK,
                        "正常; no objects in the image: nothing to store",
                    ),
                    (None, false) => status(&img.id, OK, "正常"),
                }
            })
            .collect(),
    };
    Reply::ok(status_list(statuses))
}

/// Stores one list of objects as `uploader` uploaded them (a notification's list);
/// each object's status code and text, or why none could be stored.
fn keep_uploaded(
    app: &App,
    uploader: &str,
    upload: Upload,
    body: &[u8],
) -> Result<Vec<(i64, String)>, String> {
    let relay = Relay::of(&app.store, uploader).map_err(|e| e.to_string())?;
    let mut by = uploader_of(app, uploader, relay.as_ref());
    // An upper platform this server is registered with (no record here) names
    // devices of the communities its upstream reads.
    if let Some(scope) = super::subscribes::upper_scope(app, uploader).map_err(|e| e.to_string())? {
        by.communities = match scope {
            Some(s) => s,
            None => match app.store.catalog().communities() {
                Ok(all) => all.into_iter().map(|c| c.code).collect(),
                Err(e) => return Err(e.to_string()),
            },
        };
    }
    let objects = objects(
        &mut Devices::new(&app.store, relay.as_ref()).uploaded_by(by),
        upload,
        body,
        &app.config.gat1400_face_subject,
        app.config.max_picture_bytes,
    )
    .map_err(|e| e.to_string())?;
    keep(app, objects).map_err(|e| e.to_string())
}

/// One status for a failure that fails the whole request (the store could not write).
pub(crate) fn device_error(x: &Exchange, e: &ApiError) -> Reply {
    let s = one_status("", &x.url(), status_code_of(e), &e.to_string(), x.now_ms);
    Reply::with(e.status(), s)
}

/// The GA/T 1400.4 status code of a body that could not be read: too large (413, as
/// sent or inflated) or too slow (408) is not the JSON's fault — "other error" (1) —
/// anything else (not gzip) its format's (7).
pub(crate) fn body_failure_code(e: &ApiError) -> i64 {
    match e {
        ApiError::BodyTooLarge(_) | ApiError::BodyTimeout(_) | ApiError::BodyTooSlow(_) => {
            OTHER_ERROR
        }
        _ => INVALID_JSON_FORMAT,
    }
}

/// The GA/T 1400.4 status code of a refusal or failure: a refused caller is an invalid
/// operation (4), a full server busy (2), the store or a task failing a device error
/// (3), a malformed body its format's (7) and anything else the caller sent wrong an
/// invalid operation.
pub(crate) fn status_code_of(e: &ApiError) -> i64 {
    let status = e.status();
    if status == StatusCode::TOO_MANY_REQUESTS {
        BUSY
    } else if status.is_server_error() {
        DEVICE_ERROR
    } else if matches!(e, ApiError::MalformedBody(_)) {
        INVALID_JSON_FORMAT
    } else {
        INVALID_OPERATION
    }
}

/// Stores the objects' pictures, the objects as uploaded, and their events; each
/// object's status code and text, in order.
fn keep(app: &App, mut objects: Vec<Object>) -> Result<Vec<(i64, String)>, ApiError> {
    let notes = stored_notes(&objects);
    store_pictures(app, &mut objects)?;
    let (records, raws): (Vec<_>, Vec<_>) = objects
        .into_iter()
        .enumerate()
        .map(|(i, o)| ((i, o.event), o.raw))
        .unzip();
    let done = ingest(app, None, records)?;
    // The object each event stored in this upload came from: a later object the store
    // took as a duplicate of it (one id in one shard) that is another object was not
    // stored, and is not answered as if it were.
    let stored_by: HashMap<u64, usize> = (done.fates.iter())
        .filter_map(|(i, fate)| match fate {
            Fate::Stored(seq) => Some((*seq, *i)),
            _ => None,
        })
        .collect();
    Ok(done
        .fates
        .iter()
        .map(|(i, fate)| match fate {
            Fate::Duplicate(seq) => match stored_by.get(seq) {
                Some(&first) if raws[first] != raws[*i] => {
                    refused_status(&another_object_under_one_id(*i, first, &raws[*i]))
                }
                _ => stored_status(&notes[*i]),
            },
            Fate::Stored(_) => stored_status(&notes[*i]),
            Fate::Refused(e) => refused_status(e),
        })
        .collect())
}

/// Why object `i` of an upload is refused: its id is object `first`'s, stored in this
/// upload in the same shard (community and day), and it is another object — the store
/// keeps one event an id in a shard, so it would otherwise be answered stored and lost.
/// (The same object twice, a sender's repeat, is stored once and answered 0 both times.)
fn another_object_under_one_id(i: usize, first: usize, raw: &Value) -> RecordError {
    let field = ["MotorVehicleID", "FaceID", "PersonID", "NonMotorVehicleID"]
        .into_iter()
        .find(|f| super::field(raw, f).is_some())
        .unwrap_or("id");
    let id = super::text(raw, field).unwrap_or_default();
    RecordError::new(
        i,
        field,
        format!("{id} is object {first}'s id in this upload, the same community and day, and this is another object"),
    )
}

/// What the answer says of each object once stored: `正常`, and of a device this
/// upload catalogued, under which community.
pub(crate) fn stored_notes(objects: &[Object]) -> Vec<Option<String>> {
    objects
        .iter()
        .map(|o| match (&o.catalogued, &o.event) {
            (Some(c), Ok(e)) => Some(format!(
                "正常; DeviceID {} catalogued under community {c}",
                e.device
            )),
            _ => None,
        })
        .collect()
}

/// The status of a stored object (its note from [`stored_notes`]).
pub(crate) fn stored_status(note: &Option<String>) -> (i64, String) {
    (OK, note.clone().unwrap_or_else(|| "正常".into()))
}

/// The status of a refused object: 8, and the field and why.
pub(crate) fn refused_status(e: &RecordError) -> (i64, String) {
    let text = match &e.field {
        Some(f) => format!("{f}: {}", e.message),
        None => e.message.clone(),
    };
    (INVALID_JSON_CONTENT, text)
}

/// The caller of an object query: a platform (its record's kind) proving itself by a
/// digest on this very request (or a client certificate naming it), else by its
/// registration — its `User-Identify` from the address that registered it, still
/// online (nanguantong/gat-1400 and wvp-GB28181-pro query with `User-Identify` alone
/// after registering by digest), never from any address
/// (`--viid-registration-any-address` lets a code send from anywhere, not read), and
/// never through a proxy (`proxied`: [`through_proxy`]; every caller's address is
/// then the proxy's, which binds nothing). Not a camera: a query reads a community's
/// residents.
fn querying_platform(
    app: &App,
    x: &Exchange,
    proxied: bool,
    cert: Option<&crate::tls::ClientCert>,
) -> Result<Querier, Reply> {
    let why = match proxied {
        true => THROUGH_A_PROXY,
        false => "not registered: POST /VIID/System/Register first",
    };
    let (code, proof) = proven(
        app,
        x,
        |id| !proxied && app.gateway.is_registered_from(id, x.peer),
        why,
    )?;
    let proof = match (&x.pre_authorized, cert) {
        (Some(id), Some(cert)) if cert.names(id) => Proof::Certificate,
        _ => proof,
    };
    match app.store.catalog().device(&code) {
        Ok(Some(d)) if d.device_kind == "platform" => Ok(Querier { code, proof }),
        Ok(_) => Err(not_a_platform(x)),
        Err(e) => Err(device_error(x, &ApiError::from(e))),
    }
}

/// Why an object query that came through a proxy and carries no digest is challenged.
pub(crate) const THROUGH_A_PROXY: &str = "a query through a proxy (Forwarded, X-Forwarded-For, \
     X-Real-IP) is answered on a digest only: answer the challenge";

/// Whether a request came through a proxy: it carries `Forwarded` (RFC 7239),
/// `X-Forwarded-For` or `X-Real-IP`. Its client's address is then the proxy's (on
/// this host: 127.0.0.1 for everyone), so a registration's address proves nothing.
pub(crate) fn through_proxy(headers: &hyper::HeaderMap) -> bool {
    ["forwarded", "x-forwarded-for", "x-real-ip"]
        .iter()
        .any(|h| headers.contains_key(*h))
}

/// 403 to an object query of a caller that is no platform.
pub(crate) fn not_a_platform(x: &Exchange) -> Reply {
    only_platforms(
        x,
        "object queries are a platform's (a device of kind platform): a camera reads none",
    )
}

/// 403, status 4 (invalid operation): what only a platform does (`why` says what),
/// asked by a caller catalogued as another kind of device.
pub(crate) fn only_platforms(x: &Exchange, why: &str) -> Reply {
    Reply::with(
        StatusCode::FORBIDDEN,
        one_status("", &x.url(), super::INVALID_OPERATION, why, x.now_ms),
    )
}

/// Why a camera may not subscribe or dispose: what it would receive (every capture of
/// its community, pushed where it names) is more than it may read.
pub(crate) const NOT_A_MANAGER: &str = "subscriptions and dispositions are a platform's (a \
     device of kind platform, or an upper platform this server uploads to): a camera makes \
     none";

/// Whether `caller` may subscribe or dispose: an upper platform this server is
/// registered with, or a catalogued device of kind platform; else the 403 to answer.
fn managing(app: &App, x: &Exchange, caller: &str) -> Result<(), Reply> {
    if app.subscriptions.admits_upper(caller, x.peer) {
        return Ok(());
    }
    match app.store.catalog().device(caller) {
        Ok(Some(d)) if d.device_kind == "platform" => Ok(()),
        Ok(_) => Err(only_platforms(x, NOT_A_MANAGER)),
        Err(e) => Err(device_error(x, &ApiError::from(e))),
    }
}

/// `GET /VIID/MotorVehicles|Faces|Persons|NonMotorVehicles?<conditions>`: the
/// objects the calling platform's record covers that meet the conditions, a page.
pub(crate) async fn query_objects(c: Call) -> Result<Answer, ApiError> {
    let proxied = through_proxy(&c.head.headers);
    let cert = c.head.extensions.get::<crate::tls::ClientCert>().cloned();
    exchange_as(c, Gate::Registered, move |app, x| {
        match querying_platform(app, &x, proxied, cert.as_ref()) {
            Ok(caller) => super::query::list(&**app, &x, &caller),
            Err(refused) => refused,
        }
    })
    .await
}

/// `GET /VIID/MotorVehicles|Faces|Persons|NonMotorVehicles/{id}`: one object.
pub(crate) async fn read_object(c: Call) -> Result<Answer, ApiError> {
    let proxied = through_proxy(&c.head.headers);
    let cert = c.head.extensions.get::<crate::tls::ClientCert>().cloned();
    exchange_as(c, Gate::Registered, move |app, x| {
        match querying_platform(app, &x, proxied, cert.as_ref()) {
            Ok(caller) => super::query::one(&**app, &x, &caller),
            Err(refused) => refused,
        }
    })
    .await
}

/// `GET /VIID/APEs`: the collection devices the registered caller's record covers.
pub(crate) async fn apes(c: Call) -> Result<Answer, ApiError> {
    listing_as(
        c,
        Gate::Platform,
        |app, caller| match super::subscribes::upper_scope(app, caller)? {
            Some(scope) => Ok(super::catalog::apes_json(
                super::catalog::upper_visible(&app.store, scope.as_deref())?,
                |code| app.gateway.is_online(code),
            )),
            None => super::catalog::apes(&app.store, &app.gateway, caller),
        },
    )
    .await
}

/// `GET /VIID/Tollgates`: the tollgates (卡口, type 121) the caller's record covers.
pub(crate) async fn tollgates(c: Call) -> Result<Answer, ApiError> {
    listing_as(
        c,
        Gate::Platform,
        |app, caller| match super::subscribes::upper_scope(app, caller)? {
            Some(scope) => Ok(super::catalog::tollgates_json(
                super::catalog::upper_visible(&app.store, scope.as_deref())?,
            )),
            None => super::catalog::tollgates(&app.store, caller),
        },
    )
    .await
}

/// A catalog listing for a registered caller only (no upper platform): what a route
/// an upper does not use lists. None of today's routes needs it.
#[allow(dead_code)]
async fn listing<F>(c: Call, list: F) -> Result<Answer, ApiError>
where
    F: FnOnce(&App, &str) -> Result<Value, ApiError> + Send + 'static,
{
    listing_as(c, Gate::Registered, list).await
}

/// A listing for the caller `gate` lets in.
async fn listing_as<F>(c: Call, gate: Gate, list: F) -> Result<Answer, ApiError>
where
    F: FnOnce(&App, &str) -> Result<Value, ApiError> + Send + 'static,
{
    exchange_as(c, gate, move |app, x| match caller_of(app, &x, gate) {
        Ok(caller) => match list(app, &caller) {
            Ok(list) => Reply::ok(list),
            Err(e) => device_error(&x, &e),
        },
        Err(refused) => refused,
    })
    .await
}

/// `POST`/`PUT /VIID/Dispositions`: one status per `DispositionObject`.
pub(crate) async fn dispositions(c: Call) -> Result<Answer, ApiError> {
    managed(
        c,
        "DispositionListObject",
        "DispositionObject",
        "DispositionID",
        Gate::Registered,
        |app, platform, o| {
            super::dispositions::apply(app, platform, o).map_err(|e| (e.code(), e.to_string()))
        },
    )
    .await
}

/// `POST`/`PUT /VIID/Subscribes`: one status per `SubscribeObject`.
pub(crate) async fn subscribes(c: Call) -> Result<Answer, ApiError> {
    managed(
        c,
        "SubscribeListObject",
        "SubscribeObject",
        "SubscribeID",
        Gate::Platform,
        |app, platform, o| {
            super::subscribes::apply(app, platform, o).map_err(|e| (e.code(), e.to_string()))
        },
    )
    .await
}

/// A list of objects a registered platform manages (dispositions, subscriptions),
/// each applied on its own: one status per object, its id or why it was refused.
async fn managed<F>(
    c: Call,
    list: &'static str,
    item: &'static str,
    id_field: &'static str,
    gate: Gate,
    apply: F,
) -> Result<Answer, ApiError>
where
    F: Fn(&Arc<App>, &str, &Value) -> Result<String, (i64, String)> + Send + 'static,
{
    exchange_as(c, gate, move |app, x| {
        let platform = match caller_of(app, &x, gate) {
            Ok(p) => p,
            Err(refused) => return refused,
        };
        if let Err(refused) = managing(app, &x, &platform) {
            return refused;
        }
        let status =
            |id: &str, code: i64, text: &str| status_object(id, &x.url(), code, text, x.now_ms);
        let items = match items_of_list(&x, list, item) {
            Ok(items) => items,
            Err(refused) => return refused,
        };
        let statuses = items
            .iter()
            .map(|o| match apply(app, &platform, o) {
                Ok(id) => status(&id, OK, "正常"),
                Err((code, why)) => {
                    let id = super::text(o, id_field).unwrap_or_default();
                    status(&id, code, &why)
                }
            })
            .collect();
        Reply::ok(status_list(statuses))
    })
    .await
}

/// The items of a `{list: {item: [...]}}` body (or of one `{list: {item: {...}}}`), or
/// the answer refusing the body: status 7 (not JSON) or 8 (not that shape).
pub(crate) fn items_of_list(x: &Exchange, list: &str, item: &str) -> Result<Vec<Value>, Reply> {
    let refuse = |code: i64, why: &str| {
        Reply::ok(status_list(vec![status_object(
            "",
            &x.url(),
            code,
            why,
            x.now_ms,
        )]))
    };
    let v: Value = serde_json::from_slice(&x.body)
        .map_err(|e| refuse(INVALID_JSON_FORMAT, &format!("not JSON: {e}")))?;
    // Java beans serialized without annotations name them `subscribeListObject` …
    match super::field(&v, list)
        .and_then(|l| super::field(l, item))
        .cloned()
    {
        Some(Value::Array(items)) => Ok(items.iter().map(super::capitalized).collect()),
        Some(one @ Value::Object(_)) => Ok(vec![super::capitalized(&one)]),
        _ => Err(refuse(
            INVALID_JSON_CONTENT,
            &format!("expected {{\"{list}\":{{\"{item}\":[…]}}}}"),
        )),
    }
}

/// `DELETE /VIID/Dispositions?IDList=a,b`, and `PUT`/`DELETE /VIID/Dispositions/{id}`:
/// revoke.
pub(crate) async fn revoke_dispositions(c: Call) -> Result<Answer, ApiError> {
    ended(
        c,
        Gate::Registered,
        |app, platform, id, _| match super::dispositions::revoke(app, platform, id) {
            Ok(true) => (OK, "正常".to_string()),
            Ok(false) => (OTHER_ERROR, format!("不存在布控ID: no disposition {id}")),
            Err(e) => (e.code(), e.to_string()),
        },
    )
    .await
}

/// `PUT /VIID/Subscribes/{id}` cancels (GA/T 1400.4 取消订阅: the body's
/// `SubscribeObject` may name `SubscribeCancelOrg`, `SubscribeCancelPerson`,
/// `CancelTime`, `CancelReason`; it stays listed with `SubscribeStatus` 1);
/// `DELETE /VIID/Subscribes?IDList=a,b` and `DELETE /VIID/Subscribes/{id}` delete (no
/// longer listed). The caller's own subscriptions only.
pub(crate) async fn cancel_subscribes(c: Call) -> Result<Answer, ApiError> {
    let put = c.head.method == hyper::Method::PUT;
    ended(c, Gate::Platform, move |app, platform, id, body| {
        let done = match put {
            true => {
                let given = super::subscribes::cancel_body(body);
                super::subscribes::cancel(app, platform, id, given.as_ref())
            }
            false => super::subscribes::delete(app, platform, id),
        };
        match done {
            Ok(true) => (OK, "正常".to_string()),
            Ok(false) => (OTHER_ERROR, format!("不存在订阅ID: no subscription {id}")),
            Err(e) => (e.code(), e.to_string()),
        }
    })
    .await
}

/// Ends what a registered platform made, by the ids of `IDList` or the path: one
/// status per id. `end` is also given the body of a request naming one id by its
/// path (empty otherwise).
async fn ended<F>(c: Call, gate: Gate, end: F) -> Result<Answer, ApiError>
where
    F: Fn(&Arc<App>, &str, &str, &[u8]) -> (i64, String) + Send + 'static,
{
    let ids: Vec<String> = match &c.arg {
        Some(id) => vec![id.clone()],
        None => c.params.list("IDList").unwrap_or_default(),
    };
    let one = c.arg.is_some();
    exchange_as(c, gate, move |app, x| {
        let platform = match caller_of(app, &x, gate) {
            Ok(p) => p,
            Err(refused) => return refused,
        };
        if let Err(refused) = managing(app, &x, &platform) {
            return refused;
        }
        if ids.is_empty() {
            let s = status_object(
                "",
                &x.url(),
                INVALID_JSON_CONTENT,
                "IDList is missing",
                x.now_ms,
            );
            return Reply::ok(status_list(vec![s]));
        }
        let body: &[u8] = if one { &x.body } else { &[] };
        let statuses = ids
            .iter()
            .map(|id| {
                let (code, text) = end(app, &platform, id, body);
                status_object(id, &x.url(), code, &text, x.now_ms)
            })
            .collect();
        Reply::ok(status_list(statuses))
    })
    .await
}

/// `GET /VIID/Subscribes`: the caller's subscriptions the query's conditions keep
/// (any `SubscribeObject` attribute; `RecordStartNo`, `PageRecordNum`), or 400 naming
/// a condition not answered.
pub(crate) async fn list_subscribes(c: Call) -> Result<Answer, ApiError> {
    let q = super::conditions::records(
        "Subscribe",
        super::conditions::SUBSCRIBE_ATTRIBUTES,
        (!c.query.is_empty()).then_some(c.query.as_str()),
    );
    exchange_as(c, Gate::Platform, move |app, x| {
        let caller = match caller_of(app, &x, Gate::Platform) {
            Ok(caller) => caller,
            Err(refused) => return refused,
        };
        let q = match q {
            Ok(q) => q,
            Err(e) => return super::query::refused(&x, &e),
        };
        match super::subscribes::list(app, &caller, &q) {
            Ok(Ok(list)) => Reply::ok(list),
            Ok(Err(costly)) => super::query::refused(&x, &costly),
            Err(e) => device_error(&x, &e),
        }
    })
    .await
}

/// `POST /VIID/SubscribeNotifications`: what a platform we subscribed to (or one that
/// cascades to us) sends — each `SubscribeNotificationObject`'s objects stored as if
/// that platform had uploaded them (relayed devices, pictures, full objects); one
/// status per notification, its `NotificationID`: 0 when every object was stored,
/// else the first refusal.
pub(crate) async fn subscribe_notifications(c: Call) -> Result<Answer, ApiError> {
    exchange_as(c, Gate::Platform, |app, x| {
        let uploader = match platform(app, &x) {
            Ok(p) => p,
            Err(refused) => return refused,
        };
        let status =
            |id: &str, code: i64, text: &str| status_object(id, &x.url(), code, text, x.now_ms);
        let notifications = match items_of_list(
            &x,
            "SubscribeNotificationListObject",
            "SubscribeNotificationObject",
        ) {
            Ok(items) => items,
            Err(refused) => return refused,
        };
        let statuses = notifications
            .iter()
            .map(|n| {
                let id = &super::text(n, "NotificationID").unwrap_or_default();
                // Only what answers a subscription this server placed (a remote
                // subscription) is taken, as wvp-GB28181-pro checks it (its
                // `subscribeNotExists`), and only from the platform it was placed at.
                let subscribe_id = super::text(n, "SubscribeID").unwrap_or_default();
                use crate::subscriptions::remote::Remotes;
                match Remotes::placed(app, &subscribe_id) {
                    Ok(Some(r)) if Remotes::sender_is_remote(app, &r, x.peer) => {}
                    Ok(Some(r)) => {
                        let from = x.peer.map_or_else(String::new, |p| format!(" from {p}"));
                        return status(
                            id,
                            INVALID_OPERATION,
                            &format!(
                                "SubscribeID {subscribe_id:?} was placed at {}: its notifications come from there, not{from}",
                                r.url
                            ),
                        );
                    }
                    Ok(None) => {
                        return status(
                            id,
                            OTHER_ERROR,
                            &format!(
                            "订阅不存在: no subscription {subscribe_id:?} placed by this server"
                        ),
                        )
                    }
                    Err(e) => return status(id, DEVICE_ERROR, &e.to_string()),
                }
                let mut first_refusal = None;
                for upload in Upload::ALL {
                    let (list, item, _) = upload.names();
                    // `MotorVehicleObjectList.MotorVehicleObject`, as the standard
                    // and wvp-GB28181-pro send it; `….MotorVehicleList` or a bare
                    // array, as ty-wssf/fliad-viid does.
                    let key = list.replace("ListObject", "ObjectList");
                    let alt = item.replace("Object", "List");
                    let Some(items) = super::field(n, &key).and_then(|l| match l {
                        Value::Array(_) => Some(l),
                        _ => super::field(l, item).or_else(|| super::field(l, &alt)),
                    }) else {
                        continue;
                    };
                    let body = serde_json::json!({ list: { item: items } }).to_string();
                    let fates = match keep_uploaded(app, &uploader, upload, body.as_bytes()) {
                        Ok(f) => f,
                        Err(e) => return status(id, DEVICE_ERROR, &e),
                    };
                    if first_refusal.is_none() {
                        first_refusal = fates.into_iter().find(|(code, _)| *code != OK);
                    }
                }
                match first_refusal {
                    Some((code, text)) => status(id, code, &text),
                    None => status(id, OK, "正常"),
                }
            })
            .collect();
        Reply::ok(status_list(statuses))
    })
    .await
}

/// Stores the pictures of the objects that became events (in their event's shard,
/// durably, one fsync per pack) and lists them on the events (`images`).
fn store_pictures(app: &App, objects: &mut [Object]) -> Result<(), ApiError> {
    let layout = app.store.layout();
    let ids = {
        let put: Vec<(&str, i32, &[u8])> = pictures_to_store(objects)
            .into_iter()
            .map(|(e, b)| (e.community.as_str(), layout.span_of(e.ts_ms), b))
            .collect();
        app.store.pictures().put(&put)?
    };
    list_pictures(objects, ids.into_iter().map(|id| id.to_string()));
    store_objects_as_uploaded(app, objects)
}

/// The bytes of every picture to store, with the event of its object (objects that
/// did not become events keep none), in order.
pub(crate) fn pictures_to_store(objects: &[Object]) -> Vec<(&EventInput, &[u8])> {
    let mut put = Vec::new();
    for o in objects {
        if let Ok(e) = &o.event {
            for p in &o.pictures {
                if let Some(b) = &p.bytes {
                    put.push((e, b.as_slice()));
                }
            }
        }
    }
    put
}

/// Lists the pictures on their objects' events (`images`: stored ones by `ids`, one
/// per picture of [`pictures_to_store`] in its order; references by URL) and points
/// each object as uploaded at them.
pub(crate) fn list_pictures(objects: &mut [Object], ids: impl IntoIterator<Item = String>) {
    let mut ids = ids.into_iter();
    for o in objects.iter_mut() {
        let Ok(e) = &mut o.event else { continue };
        if o.pictures.is_empty() {
            continue;
        }
        let listed: Vec<Value> = o
            .pictures
            .iter()
            .map(|p| {
                let id = p.bytes.as_ref().and_then(|_| ids.next());
                p.listed(id.as_deref())
            })
            .collect();
        refer_pictures(&mut o.raw, &listed);
        e.attrs.insert(
            IMAGES_ATTR.into(),
            AttrValue::Str(Value::Array(listed).to_string()),
        );
    }
}

/// Points each stored picture of an object as uploaded at where the API serves it
/// (`StoragePath`), as a 视图库 forwards objects with pictures by reference.
fn refer_pictures(raw: &mut Value, listed: &[Value]) {
    for (entry, listed) in super::pictures::sub_images_mut(raw).into_iter().zip(listed) {
        if let (Some(id), Some(url)) = (listed.get("id"), listed.get("url")) {
            entry["StoragePath"] = url.clone();
            entry["ImageID"] = entry.get("ImageID").cloned().unwrap_or_else(|| id.clone());
        }
    }
}

/// Each object that became an event as uploaded (pictures by reference, after
/// [`list_pictures`]), as JSON bytes, with its event; `None` for the others.
pub(crate) fn uploaded_texts(objects: &[Object]) -> Vec<Option<(&EventInput, Vec<u8>)>> {
    objects
        .iter()
        .map(|o| {
            let e = o.event.as_ref().ok()?;
            Some((e, serde_json::to_vec(&o.raw).ok()?))
        })
        .collect()
}

/// Names each object as uploaded on its event (the `object` attribute: `GET
/// /v1/objects/{id}` serves it, forwarding sends it on): `ids` holds one per object,
/// `None` where [`uploaded_texts`] had none.
pub(crate) fn name_uploaded(objects: &mut [Object], ids: impl IntoIterator<Item = Option<String>>) {
    for (o, id) in objects.iter_mut().zip(ids) {
        if let (Ok(e), Some(id)) = (&mut o.event, id) {
            e.attrs.insert(OBJECT_ATTR.into(), AttrValue::Str(id));
        }
    }
}

/// Keeps every object that became an event as it was uploaded, beside the pictures
/// of its shard, and names it on the event.
fn store_objects_as_uploaded(app: &App, objects: &mut [Object]) -> Result<(), ApiError> {
    let layout = app.store.layout();
    let ids: Vec<Option<String>> = {
        let texts = uploaded_texts(objects);
        let refs: Vec<(&str, i32, &[u8])> = texts
            .iter()
            .flatten()
            .map(|(e, b)| (e.community.as_str(), layout.span_of(e.ts_ms), b.as_slice()))
            .collect();
        if refs.is_empty() {
            return Ok(());
        }
        let mut stored = app.store.pictures().put(&refs)?.into_iter();
        texts
            .iter()
            .map(|t| {
                t.as_ref()
                    .map(|_| stored.next().expect("one id per object stored").to_string())
            })
            .collect()
    };
    name_uploaded(objects, ids);
    Ok(())
}

/// Any other `/VIID/…` request.
pub(crate) async fn no_such_resource(c: Call) -> Result<Answer, ApiError> {
    exchange(c, |_, x| {
        // Paths are case-sensitive (`paths.rs`); the status names the one meant.
        let why = match super::paths::meant(&x.path) {
            Some(m) => format!("no such VIID resource (paths are case-sensitive: {m}?)"),
            None => "no such VIID resource".to_string(),
        };
        let s = one_status("", &x.url(), INVALID_JSON_CONTENT, &why, x.now_ms);
        Reply::with(StatusCode::NOT_FOUND, s)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    const GBK: Option<&str> = Some("application/VIID+JSON; charset=GBK");

    /// A caller refused for a digest no challenge offers is told once per address and
    /// reason (not on each retry), another reason or address once more; the memory is
    /// bounded.
    #[test]
    fn an_unanswerable_digest_is_logged_once_per_caller_and_reason() {
        // Addresses of the documentation range no other test uses.
        let peer = |i: u8| Some(std::net::IpAddr::from([192, 0, 2, i]));
        let int = DigestError::Qop("auth-int".into());
        let cam = Some("32050801011210000001");
        assert!(first_unanswerable(peer(1), cam, &int));
        assert!(
            !first_unanswerable(peer(1), cam, &int),
            "a retry is not told again"
        );
        assert!(first_unanswerable(peer(1), cam, &DigestError::Algorithm));
        assert!(first_unanswerable(
            peer(1),
            Some("32050801011210000002"),
            &int
        ));
        assert!(first_unanswerable(peer(2), cam, &int));
        assert!(!first_unanswerable(peer(2), cam, &int));
        // One address names a few at most.
        let many = peer(4);
        let named = (0..10)
            .filter(|i| first_unanswerable(many, cam, &DigestError::Qop(format!("x{i}"))))
            .count();
        assert_eq!(named, UNANSWERABLE_PER_ADDRESS);
        // Past the bound, no new caller is named (and the ones named stay told).
        for i in 0..UNANSWERABLE_REMEMBERED {
            let from = Some(std::net::IpAddr::from([
                198,
                51,
                (i / 250) as u8,
                (i % 250) as u8,
            ]));
            first_unanswerable(from, None, &DigestError::Algorithm);
        }
        assert!(!first_unanswerable(peer(3), cam, &int));
        assert!(!first_unanswerable(peer(1), cam, &int));
    }

    #[test]
    fn gbk_text_is_held_to_the_limit_as_it_is_written() {
        // 0x80 is '€' in GBK: three bytes of UTF-8 for each byte sent.
        let body = hyper::body::Bytes::from(vec![0x80u8; 1000]);
        assert!(matches!(
            to_utf8(GBK, body.clone(), 2999),
            Err(ApiError::BodyTooLarge(2999))
        ));
        let text = to_utf8(GBK, body, 3000).expect("3,000 bytes of UTF-8 fit 3,000");
        assert_eq!(text.len(), 3000);
        assert_eq!(&text[..3], "€".as_bytes());
        // A plate in GBK, decoded; bytes that are not GBK refused.
        let (plate, _, _) = encoding_rs::GBK.encode("苏E12345");
        let text = to_utf8(GBK, plate.into_owned().into(), 64).unwrap();
        assert_eq!(&text[..], "苏E12345".as_bytes());
        assert!(matches!(
            to_utf8(GBK, hyper::body::Bytes::from_static(b"\x81"), 64),
            Err(ApiError::MalformedBody(_))
        ));
        // A large body of Chinese text, decoded whole within its limit.
        let long = "苏州市姑苏区".repeat(200_000);
        let (big, _, _) = encoding_rs::GBK.encode(&long);
        let text = to_utf8(GBK, big.into_owned().into(), 8 << 20).unwrap();
        assert_eq!(text.len(), "苏州市姑苏区".len() * 200_000);
        // UTF-8 (no charset) passes untouched.
        let same = hyper::body::Bytes::from_static("苏E".as_bytes());
        assert_eq!(to_utf8(None, same.clone(), 1).unwrap(), same);
        // GBK sent with no charset (older cameras) is read as GBK; with another charset
        // named it is left as sent (and fails as JSON); bytes neither UTF-8 nor GBK
        // are refused saying so.
        let json = Some("application/json");
        let (plate, _, _) = encoding_rs::GBK.encode("{\"PlateNo\":\"苏E12345\"}");
        let plate = hyper::body::Bytes::from(plate.into_owned());
        let text = to_utf8(json, plate.clone(), 64).unwrap();
        assert_eq!(
            std::str::from_utf8(&text).unwrap(),
            "{\"PlateNo\":\"苏E12345\"}"
        );
        assert_eq!(to_utf8(None, plate.clone(), 64).unwrap(), text);
        let latin = Some("application/json; charset=ISO-8859-1");
        assert_eq!(to_utf8(latin, plate.clone(), 64).unwrap(), plate);
        let e = to_utf8(json, hyper::body::Bytes::from_static(b"\x81"), 64).unwrap_err();
        assert!(e.to_string().contains("neither UTF-8 nor GBK"), "{e}");
        // UTF-8 with one stray byte after a character past ASCII: left as sent (it
        // fails as JSON), never decoded as GBK into another plate.
        let mut bytes = "{\"PlateNo\":\"苏E12345\",\"Place\":\"Caf"
            .as_bytes()
            .to_vec();
        bytes.extend(b"\xe9\"}");
        let stray = hyper::body::Bytes::from(bytes);
        assert!(std::str::from_utf8(&stray).is_err());
        assert_eq!(to_utf8(json, stray.clone(), 64).unwrap(), stray);
        // GBK whose first characters are UTF-8 too (豫 `d4 a5`, 鲁 `c2 b3`), with more
        // Chinese after: read as GBK, every plate as written.
        for plate in ["豫A12345", "鲁B54321"] {
            let text = format!("{{\"PlateNo\":\"{plate}\",\"PlateDescribe\":\"白色轿车\"}}");
            let (bytes, _, _) = encoding_rs::GBK.encode(&text);
            let bytes = hyper::body::Bytes::from(bytes.into_owned());
            assert!(std::str::from_utf8(&bytes).is_err());
            let read = to_utf8(json, bytes, 256).unwrap();
            assert_eq!(std::str::from_utf8(&read).unwrap(), text);
        }
    }

    #[test]
    fn every_gzip_member_is_inflated() {
        use std::io::Write;
        let member = |text: &str| {
            let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            z.write_all(text.as_bytes()).unwrap();
            z.finish().unwrap()
        };
        let mut body = member("{\"a\":1}\n");
        body.extend(member("{\"b\":2}\n"));
        let out = gunzip(&body, 1 << 10).unwrap();
        assert_eq!(&out[..], b"{\"a\":1}\n{\"b\":2}\n");
        assert!(matches!(gunzip(&body, 10), Err(ApiError::BodyTooLarge(10))));
    }
}
