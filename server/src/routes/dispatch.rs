//! Answering a request from the table: find the route, authorise the caller before any
//! body is read, run the handler, write the answer or the error, count it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::Request;

use super::{routes, Access, Check, Found, Route};
use crate::auth::{self, Caller};
use crate::error::ApiError;
use crate::http::body::{respond, respond_error, CloseAfter, Unread, NDJSON};
use crate::http::negotiate;
use crate::http::runner::AuditLine;
use crate::http::{Answer, Body, Call, Reply};
use crate::params::Params;
use crate::App;

/// Answers one request: route, authorise, run the handler, write the answer or the
/// error, count it in `/metrics`.
pub(crate) async fn handle(app: Arc<App>, mut req: Request<Incoming>) -> Result<Reply, Infallible> {
    let started = Instant::now();
    let table = routes();
    let mut allow = None;
    canonical_request(&mut req);
    // The body apart, held until a handler reads it; left unread past what is drained,
    // the answer says the connection closes (`Unread`, `CloseAfter`).
    let close = CloseAfter::default();
    req.extensions_mut().insert(close.clone());
    let (head, body) = Unread::of(req);
    let mut body = Some(body);
    let req = Request::from_parts(head, ());
    let path = req.uri().path().to_string();
    // What a `/VIID` device is answered when no handler runs: GA/T 1400's shape.
    let viid = |status: hyper::StatusCode, code: i64, e: &ApiError| {
        let tls = app.config.tls.is_some();
        let host = req.headers().get(hyper::header::HOST);
        let origin = crate::gat1400::handlers::origin(host.and_then(|h| h.to_str().ok()), tls);
        let url = format!("{}{path}", origin.unwrap_or_default());
        Ok(crate::gat1400::handlers::viid_answer(
            status,
            &url,
            code,
            &e.to_string(),
        ))
    };
    let is_viid = path == "/VIID" || path.starts_with("/VIID/");
    // A request refused before any handler: a device in GA/T 1400's shape (invalid
    // operation), anyone else in the API's.
    let refuse = |e: ApiError| match is_viid {
        true => viid(e.status(), crate::gat1400::INVALID_OPERATION, &e),
        false => Err(e),
    };
    // Health probes too: a load balancer's HTTP/1.1 check must name a Host (or
    // speak HTTP/1.0).
    let (label, answer) = if let Some(why) = host_problem(&req) {
        // RFC 9112 §3.2: an HTTP/1.1 request without exactly one Host is refused.
        (table.labels.len(), refuse(ApiError::BadHost(why)))
    } else if req.method() == hyper::Method::OPTIONS {
        // RFC 9110 §9.3.7: the methods a resource takes (nothing else is revealed).
        let allowed = match path.as_str() {
            "*" => Some(super::ALL_METHODS.to_string()),
            p => table.methods_of(p),
        };
        match allowed {
            Some(allowed) => {
                allow = Some(allowed);
                let label = table.labels.len();
                (
                    label,
                    Ok((hyper::StatusCode::NO_CONTENT, Body::Text(String::new()))),
                )
            }
            None => (
                table.labels.len(),
                refuse(ApiError::NoSuchEndpoint(path.clone())),
            ),
        }
    } else if !table.implements(req.method()) {
        // RFC 9110 §15.6.2: a method no resource here takes.
        let e = ApiError::NotImplemented(req.method().to_string());
        (table.labels.len(), refuse(e))
    } else if let Some(coding) = other_transfer_coding(req.headers()) {
        // RFC 9112 §6.1: hyper undoes `chunked` only; a body in another transfer coding
        // (`gzip, chunked`) would be read as if it were plain.
        (table.labels.len(), refuse(ApiError::TransferCoding(coding)))
    } else {
        match table.find(req.method(), &path) {
            Found::Route(route, arg) => {
                let body = body.take().expect("the body, taken once");
                (
                    table.label_of(route.path),
                    call(app.clone(), route, arg, req, body).await,
                )
            }
            Found::WrongMethod { path: template } => {
                let allowed = table.allowed(template);
                allow = Some(allowed.clone());
                let e = ApiError::MethodNotAllowed {
                    path: path.clone(),
                    allowed,
                    method: req.method().to_string(),
                };
                (table.label_of(template), refuse(e))
            }
            // `/VIID` and `/VIID/` too: a device reads GA/T 1400's 404.
            Found::Nowhere => (
                table.labels.len(),
                refuse(ApiError::NoSuchEndpoint(path.clone())),
            ),
        }
    };
    // A body no route took (a refusal before any handler) is left as `Unread` says.
    drop(body);
    // Server time apart from the network (RFC: W3C Server Timing): `query` is the
    // handler's (authorisation, body, store work), `serialize` the JSON writing.
    let handled = started.elapsed();
    let (mut reply, error, query, serialize) = match answer {
        Ok((status, body)) => {
            let (body, in_handler) = body.serialize_time();
            let t = Instant::now();
            let reply = respond(status, body);
            let query = handled.saturating_sub(in_handler);
            (reply, None, query, in_handler + t.elapsed())
        }
        Err(e) => (respond_error(&e), Some(e.code()), handled, Duration::ZERO),
    };
    // A refusal (401, 403) did no query, and carries zeros rather than its time: how
    // long a key or a digest took to check is not told to someone who has neither.
    let refused = matches!(reply.status().as_u16(), 401 | 403);
    let timing = match refused {
        true => NO_QUERY_TIMING.to_string(),
        false => server_timing(query, serialize),
    };
    if let Ok(v) = hyper::header::HeaderValue::from_str(&timing) {
        reply
            .headers_mut()
            .insert(hyper::header::HeaderName::from_static("server-timing"), v);
    }
    if reply.status() == hyper::StatusCode::NO_CONTENT {
        reply.headers_mut().remove(hyper::header::CONTENT_TYPE);
    }
    // RFC 9112 §9.6: the connection closes after this answer (a body left unread), and
    // the answer says so: a client does not send its next request on it.
    if close.is_set() {
        reply.headers_mut().insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("close"),
        );
    }
    // RFC 9110 §15.5.6: a 405 says which methods the resource takes (and so does
    // the answer to OPTIONS).
    if let Some(allowed) = allow {
        if let Ok(v) = hyper::header::HeaderValue::from_str(&allowed) {
            reply.headers_mut().insert(hyper::header::ALLOW, v);
        }
    }
    app.metrics
        .record(label, reply.status().as_u16(), error, started.elapsed());
    Ok(reply)
}

/// A transfer coding of the request other than `chunked` (RFC 9112 §6.1), if any
/// (`serve` and a cluster's nodes refuse it, 501, before the body).
pub(crate) fn other_transfer_coding(headers: &hyper::HeaderMap) -> Option<String> {
    headers
        .get_all(hyper::header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .map(str::trim)
        .find(|c| !c.is_empty() && !c.eq_ignore_ascii_case("chunked"))
        .map(|c| c.chars().take(64).collect())
}

/// The `Server-Timing` of an answer that ran no query (a refusal, or hyper's own
/// answer to a request it could not parse): W3C Server Timing, both metrics zero.
pub(crate) const NO_QUERY_TIMING: &str = "query;dur=0, serialize;dur=0";

/// The `Server-Timing` value (W3C Server Timing: `name;dur=ms`, comma-separated) for
/// `query` (the answer computed) and `serialize` (its body written), in milliseconds
/// to the microsecond.
fn server_timing(query: Duration, serialize: Duration) -> String {
    format!(
        "query;dur={:.3}, serialize;dur={:.3}",
        query.as_secs_f64() * 1e3,
        serialize.as_secs_f64() * 1e3
    )
}

/// A `/VIID` path is routed, and seen by its handler, as `gat1400::paths` reads it
/// (`/VIID/%46aces/` is `/VIID/Faces`): `serve`'s and a cluster ingest node's.
pub(crate) fn canonical_request<B>(req: &mut Request<B>) {
    let canonical = crate::gat1400::paths::canonical(req.uri().path()).into_owned();
    if canonical != req.uri().path() {
        if let Some(uri) = with_path(req.uri(), &canonical) {
            *req.uri_mut() = uri;
        }
    }
}

/// `uri` with another path (its query, and its scheme and authority if it names them,
/// kept).
fn with_path(uri: &hyper::Uri, path: &str) -> Option<hyper::Uri> {
    let mut parts = uri.clone().into_parts();
    let target = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    parts.path_and_query = Some(target.parse().ok()?);
    hyper::Uri::from_parts(parts).ok()
}

/// Why an HTTP/1.1 request's `Host` is wrong (RFC 9112 §3.2: none, more than one, or
/// an invalid field value MUST be answered 400); HTTP/1.0 may go without.
pub(crate) fn host_problem<B>(req: &Request<B>) -> Option<&'static str> {
    let hosts = req.headers().get_all(hyper::header::HOST);
    match (req.version(), hosts.iter().count()) {
        (_, 2..) => Some("the request has more than one Host header (RFC 9112 §3.2)"),
        (hyper::Version::HTTP_11, 0) => {
            Some("an HTTP/1.1 request must have a Host header (RFC 9112 §3.2)")
        }
        (_, 1) if !hosts.iter().all(|h| is_host(h.as_bytes())) => {
            Some("the Host header is not a host and optional port (RFC 9112 §3.2, RFC 3986 §3.2.2)")
        }
        _ => None,
    }
}

/// Whether a `Host` value is `uri-host [":" port]` (RFC 3986 §3.2.2): a registered
/// name (letters, digits, `-._~`, percent-escapes and the sub-delimiters but `,`,
/// which only a list of hosts joined into one field would hold) or an IP literal in
/// brackets, then digits after a colon; or empty (RFC 9112 §3.2: a target without an
/// authority). No whitespace, no user information.
fn is_host(value: &[u8]) -> bool {
    let (host, port) = match value.first() {
        Some(b'[') => match value.iter().position(|b| *b == b']') {
            Some(end) => {
                let literal = &value[1..end];
                if literal.is_empty()
                    || !literal
                        .iter()
                        .all(|b| b.is_ascii_hexdigit() || b":.vV".contains(b))
                {
                    return false;
                }
                (&value[..=end], &value[end + 1..])
            }
            None => return false,
        },
        _ => match value.iter().position(|b| *b == b':') {
            Some(colon) => (&value[..colon], &value[colon..]),
            None => (value, &value[value.len()..]),
        },
    };
    let name_ok = host.first() == Some(&b'[')
        || host
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+;=".contains(b));
    let port_ok = match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    name_ok && port_ok
}

/// Authorises the caller (before any body is read) and runs the route's handler.
/// Audited here: every refusal (401, 403) the handler has not audited itself, and every
/// change (a route with `changes`), before it runs — refused 503 if that entry cannot
/// be written, so no change goes unaudited — and again with its outcome.
async fn call(
    app: Arc<App>,
    route: &'static Route,
    arg: Option<String>,
    req: Request<()>,
    body: Unread,
) -> Result<Answer, ApiError> {
    // What an audit entry of a change or a refusal names: the method and the path.
    let what = |req: &Request<()>| format!("{} {}", req.method(), req.uri().path());
    let caller = match route.access {
        Access::Key(role) => match authorize(&app, &req, role) {
            Ok(caller) => caller,
            Err(e) => {
                let key = match &e {
                    // Known keys only are refused 403; a 401's claimed id is no one's.
                    ApiError::Forbidden(_) => match token(&req) {
                        Some(t) => auth::claimed_id(t).map(str::to_string),
                        None => certified_key(&app, &req),
                    },
                    _ => None,
                };
                refused(&app, key.as_deref().unwrap_or("-"), &what(&req), &req, &e);
                return Err(e);
            }
        },
        Access::Public | Access::Gat1400 | Access::Console => Caller::anonymous(),
    };
    let params = Params::parse(req.uri().query());
    if route.check == Check::Refuse {
        if let Err(e) = params.only_these(route.doc.as_ref().map_or(&[], |d| d.params)) {
            // A change refused is on the record, as a key refused is.
            if route.changes {
                refused(&app, &caller.key_id, &what(&req), &req, &e);
            }
            return Err(e);
        }
    }
    // RFC 9110 §13.1.1: an `If-Match` naming tags is false for a `/v1` resource (none
    // carries an entity tag): a change so conditioned is not made (412), before its
    // body. The catalog's PUTs judge `*` themselves.
    if route.changes {
        if let Err(e) = crate::http::conditional::Preconditions::of(req.headers()).tags_match() {
            refused(&app, &caller.key_id, &what(&req), &req, &e);
            return Err(e);
        }
    }
    let ndjson = wants_ndjson(&req);
    let change = route.changes.then(|| {
        AuditLine::new(
            &caller,
            &what(&req),
            req.uri().query().unwrap_or("").to_string(),
        )
    });
    if let Some(line) = &change {
        // Begun (status 0): on the record before anything changes.
        line.record(&app, None, 0)?;
    }
    // A handler that panics is a bug: answered 500 in the one error shape, and its
    // request audited all the same (it may have read what it was asked for).
    // Kept cheaply (a reference-counted URI, the caller); the audit line is built
    // only if the handler panics.
    let (method, uri, key) = (req.method().clone(), req.uri().clone(), caller.clone());
    let handled = CatchUnwind((route.handler)(Call::new(
        app.clone(),
        caller,
        params,
        arg,
        (req, body),
        ndjson,
    )));
    let answer = match handled.await {
        Ok(answer) => answer,
        Err(why) => {
            tracing::error!(route = route.path, panic = why, "a handler panicked");
            let line = AuditLine::new(&key, uri.path(), uri.query().unwrap_or("").into());
            let _ = line.record(&app, None, 500);
            return Err(ApiError::internal(PANICKED));
        }
    };
    match (&change, &answer) {
        // The outcome of a change. The change is made: if this entry cannot be
        // written the answer stands (the begun entry is on record).
        (Some(line), _) => {
            let (status, summary) = match &answer {
                Ok((status, body)) => (status.as_u16(), change_summary(body)),
                Err(e) => (e.status().as_u16(), String::new()),
            };
            let outcome = AuditLine::new(&key, &line.endpoint, summary);
            if let Err(e) = outcome.record(&app, None, status) {
                tracing::error!(error = %e, endpoint = line.endpoint, "a change's outcome is not audited");
            }
        }
        (
            None,
            Err(
                e @ (ApiError::Unauthorized(_)
                | ApiError::Forbidden(_)
                | ApiError::OutOfScope { .. }),
            ),
        ) if !key.audited.load(std::sync::atomic::Ordering::Relaxed) => {
            let line = AuditLine::new(
                &key,
                &format!("{method} {}", uri.path()),
                uri.query().unwrap_or("").into(),
            );
            if let Err(e2) = line.record(&app, None, e.status().as_u16()) {
                tracing::error!(error = %e2, "a refusal is not audited");
            }
        }
        _ => {}
    }
    let (status, body) = answer?;
    Ok((status, negotiated(body, ndjson, route.changes)))
}

/// An answer in the form `Accept` chose, on `serve` and on a cluster's query nodes
/// alike. NDJSON asked for: a list answer one item a line; the answer of a change
/// (`changes`: a created key, a watchlist, a revoked key) is one resource, one line,
/// whatever lists it holds (a scoped key's `communities` must not stand for the key,
/// its token lost). With `Vary: Accept` (RFC 9110 §12.5.5: a cache keeps one per
/// `Accept`).
pub(crate) fn negotiated(body: Body, ndjson: bool, changes: bool) -> Body {
    let lines = |b: Body| match changes {
        true => b.into_one_line(),
        false => b.into_lines(),
    };
    let body = match body {
        b @ (Body::Value(_) | Body::Text(_) | Body::Json(_) | Body::Serialized(..)) if ndjson => {
            lines(b)
        }
        // A JSON answer with headers of its own but not its own type (a created key's
        // `Location`): NDJSON as asked, its headers kept.
        Body::Headed(h, b)
            if ndjson
                && matches!(*b, Body::Value(_))
                && !h.iter().any(|(n, _)| n == hyper::header::CONTENT_TYPE) =>
        {
            Body::Headed(h, Box::new(lines(*b)))
        }
        b => b,
    };
    negotiate::vary_accept(body)
}

/// The caller behind a request's API key; without one, behind its connection's client
/// certificate (mTLS), when it has one.
fn authorize<B>(app: &App, req: &Request<B>, role: auth::Role) -> Result<Caller, ApiError> {
    match (token(req), req.extensions().get::<crate::tls::ClientCert>()) {
        (None, Some(cert)) => app.keys.authorize_cert(&cert.0, role),
        (token, _) => app.keys.authorize(token, role),
    }
}

/// The id of the key a request's client certificate names (mTLS), if any.
fn certified_key<B>(app: &App, req: &Request<B>) -> Option<String> {
    let cert = req.extensions().get::<crate::tls::ClientCert>()?;
    app.keys.named_by(&cert.0)
}

/// Audits a refusal before the handler (the key check): who, what, the status. A
/// refusal is answered even if its entry cannot be written (refusing is safe).
fn refused<B>(app: &App, key: &str, endpoint: &str, req: &Request<B>, e: &ApiError) {
    if let Err(err) = app.audit.record(
        crate::now_ms(),
        key,
        endpoint,
        req.uri().query().unwrap_or(""),
        None,
        e.status().as_u16(),
    ) {
        tracing::error!(error = %err, "a refusal is not audited");
    }
}

/// What a change's answer says it changed, for its audit entry: the identifying
/// fields of a JSON answer (never a token, a password or a body as sent).
pub(crate) fn change_summary(body: &Body) -> String {
    let v = match body {
        Body::Value(v) => v,
        // A created key's answer, with its `Location`.
        Body::Headed(_, b) => return change_summary(b),
        _ => return String::new(),
    };
    [
        "id",
        "code",
        "community",
        "name",
        "role",
        "communities",
        "retention_days",
        "revoked",
    ]
    .iter()
    .filter_map(|k| {
        let x = v.get(*k)?;
        (!x.is_null()).then(|| {
            format!(
                "{k}={}",
                match x {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                }
            )
        })
    })
    .collect::<Vec<_>>()
    .join("&")
}

/// A future whose panic is caught and returned as its message.
struct CatchUnwind<F>(F);

impl<F: std::future::Future + Unpin> std::future::Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let inner = std::pin::Pin::new(&mut self.0);
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Ok(std::task::Poll::Ready(v)) => std::task::Poll::Ready(Ok(v)),
            Err(payload) => std::task::Poll::Ready(Err(panic_message(&*payload))),
        }
    }
}

/// What a client is told of a panic (what it said is logged, not sent).
pub(crate) const PANICKED: &str =
    "the request failed inside the server (a bug); it was logged and audited";

/// What a panic said (its `&str` or `String` payload), or "a panic".
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// Whether the client prefers NDJSON to JSON (`Accept: application/x-ndjson`; RFC 9110
/// §12.5.1, [`negotiate`]).
pub(crate) fn wants_ndjson<B>(req: &Request<B>) -> bool {
    negotiate::preferred(req.headers(), &[negotiate::JSON, NDJSON]) == NDJSON
}

/// The API key a request presents: `Authorization: Bearer <token>` or `X-Api-Key`.
pub(crate) fn token<B>(req: &Request<B>) -> Option<&str> {
    let h = req.headers();
    h.get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            // The scheme is case-insensitive (RFC 7235 §2.1): `bearer` is `Bearer`.
            let (scheme, token) = v.trim_start().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(token)
        })
        .or_else(|| h.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;
    use hyper::Method;

    #[test]
    fn every_route_is_documented_labelled_and_authorised() {
        let table = routes();
        let document = crate::openapi::document();
        for r in &table.routes {
            // Labelled: its own metric label, distinct from every other path's.
            let label = table.label_of(r.path);
            assert_eq!(table.labels[label], r.path);
            // Documented: in the OpenAPI document under its method, or a GA/T 1400
            // route (server/API.md).
            match (&r.doc, r.access) {
                (Some(_), Access::Key(_) | Access::Public) => {
                    let method = r.method.as_ref().expect("documented routes name a method");
                    let op = &document["paths"][r.path][method.as_str().to_ascii_lowercase()];
                    assert!(
                        op["summary"].is_string(),
                        "{method} {} is not in the document",
                        r.path
                    );
                }
                (None, Access::Gat1400) => assert!(r.path.starts_with("/VIID/")),
                // The console's files: public, GET only, and nowhere under /v1.
                (None, Access::Console) => {
                    assert!(r.path == "/" || r.path.starts_with("/console/"));
                    assert_eq!(r.method, Some(Method::GET));
                }
                _ => panic!("{} is neither documented nor a GA/T 1400 route", r.path),
            }
            // Authorised: only these are public; mutations need a key.
            if r.access == Access::Public {
                assert!(
                    ["/health", "/v1/openapi.json"].contains(&r.path),
                    "{} is public",
                    r.path
                );
            }
            if r.method.as_ref().is_some_and(|m| m != Method::GET) && r.access != Access::Gat1400 {
                assert!(
                    matches!(r.access, Access::Key(_)),
                    "{} changes things without a key",
                    r.path
                );
            }
            // Changes are audited: every keyed route that is not a GET, save ingest
            // (data) and the collision query (audited as a query).
            let changing = r.method.as_ref().is_some_and(|m| m != Method::GET)
                && matches!(r.access, Access::Key(role) if role != Role::Ingest)
                && r.path != "/v1/collision";
            assert_eq!(r.changes, changing, "{} audited as a change", r.path);
            // Path arguments are documented as path parameters.
            if let (Some(d), (_, true)) = (&r.doc, r.prefix()) {
                assert!(
                    d.params.iter().any(|p| p.in_path),
                    "{} does not document its argument",
                    r.path
                );
            }
        }
        // Every documented operation is a route, and every route with a method is
        // documented (GA/T 1400's with the standard's bodies; its fallback is not).
        let documented: usize = document["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|ops| ops.as_object().unwrap().len())
            .sum();
        assert_eq!(
            documented,
            table
                .routes
                .iter()
                .filter(|r| r.method.is_some() && r.access != Access::Console)
                .count()
        );
    }

    #[tokio::test]
    async fn a_panicking_handler_is_caught_with_its_message() {
        let boom: std::pin::Pin<Box<dyn std::future::Future<Output = u8> + Send>> =
            Box::pin(async { panic!("boom at byte 4096") });
        assert_eq!(
            CatchUnwind(boom).await,
            Err("boom at byte 4096".to_string())
        );
        let fine: std::pin::Pin<Box<dyn std::future::Future<Output = u8> + Send>> =
            Box::pin(async { 7 });
        assert_eq!(CatchUnwind(fine).await, Ok(7));
    }

    /// RFC 9112 §3.2, RFC 3986 §3.2.2: what a Host value may be.
    #[test]
    fn host_values_are_a_host_and_an_optional_port() {
        for good in [
            "x",
            "127.0.0.1:8080",
            "example.com",
            "[::1]:80",
            "[fe80::1]",
            "",
            "a_b-c.d~e:",
            "xn--fsq.com",
        ] {
            assert!(is_host(good.as_bytes()), "{good:?}");
        }
        for bad in [
            "a b",
            "a, b",
            "a,b",
            "user@host",
            "host:80x",
            "host:80:90",
            "[::1",
            "[zz]:80",
            "a\tb",
            "h/ost",
        ] {
            assert!(!is_host(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn paths_route_by_template_and_method() {
        let table = routes();
        let found = |m: Method, p: &str| match table.find(&m, p) {
            Found::Route(r, arg) => format!("{} {:?}", r.path, arg),
            Found::WrongMethod { path } => format!("405 {} ({})", path, table.allowed(path)),
            Found::Nowhere => "404".into(),
        };
        assert_eq!(
            found(Method::GET, "/v1/events/7"),
            "/v1/events/{id} Some(\"7\")"
        );
        assert_eq!(found(Method::GET, "/v1/events/"), "404");
        assert_eq!(
            found(Method::GET, "/v1/events"),
            "405 /v1/events (POST, OPTIONS)"
        );
        assert_eq!(
            found(Method::POST, "/v1/admin/retention"),
            "405 /v1/admin/retention (GET, HEAD, PUT, OPTIONS)"
        );
        assert_eq!(
            found(Method::PUT, "/v1/devices/../x"),
            "/v1/devices/{code} Some(\"../x\")"
        );
        // A known /VIID path with another method is 405 (RFC 9110 §15.5.6), not the
        // any-method fallback's 404; an unknown one is the fallback's.
        assert_eq!(
            found(Method::DELETE, "/VIID/MotorVehicles"),
            "405 /VIID/MotorVehicles (GET, HEAD, POST, OPTIONS)"
        );
        assert_eq!(
            found(Method::GET, "/VIID/Faces/F1"),
            "/VIID/Faces/{id} Some(\"F1\")"
        );
        assert_eq!(
            found(Method::POST, "/VIID/Faces/F1"),
            "405 /VIID/Faces/{id} (GET, HEAD, OPTIONS)"
        );
        assert_eq!(
            found(Method::GET, "/VIID/System/Register"),
            "405 /VIID/System/Register (POST, OPTIONS)"
        );
        assert_eq!(
            found(Method::POST, "/VIID/System/Time"),
            "405 /VIID/System/Time (GET, HEAD, OPTIONS)"
        );
        assert_eq!(
            found(Method::GET, "/VIID/Subscribes/7"),
            "405 /VIID/Subscribes/{id} (PUT, DELETE, OPTIONS)"
        );
        assert_eq!(
            found(Method::GET, "/VIID/Nothing"),
            "/VIID/{resource} Some(\"Nothing\")"
        );
        assert!(!table.implements(&Method::TRACE));
        assert!(table.implements(&Method::HEAD));
        assert_eq!(found(Method::GET, "/v2/nothing"), "404");
        assert_eq!(found(Method::GET, "/"), "/ None");
        assert_eq!(
            found(Method::GET, "/console/views/search.js"),
            "/console/{file} Some(\"views/search.js\")"
        );
        assert_eq!(found(Method::POST, "/"), "405 / (GET, HEAD, OPTIONS)");
        assert_eq!(table.label_of("/nothing"), table.labels.len());
    }
}
