//! Routing and the `/v1` handlers. Every response is JSON; every error has the one
//! shape of [`ApiError`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use sightline_query::{
    collision, cooccurrence, counts, event_by_id, first_seen, frequency, nocturnal, overnight,
    search, trajectory, trajectory_pages, Collision, Condition, Cooccurrence, CountKey, Counts,
    Cursor, FirstSeenQuery, FrequencyQuery, Granularity, NocturnalQuery, OvernightQuery, Place,
    QueryContext, Scope, SearchMode, SearchQuery, Sighting, StayEnd, TrajectoryQuery,
};
use sightline_storage::{Appended, AttrsAt};

use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::ingest::records;
use crate::params::{parse_kind, parse_time, rfc3339, Params, Rfc3339};
use crate::App;

type Reply = Response<http_body_util::Either<Full<Bytes>, ChannelBody>>;

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

const NDJSON: &str = "application/x-ndjson";

/// Whether the client asked for NDJSON (`Accept: application/x-ndjson`).
fn wants_ndjson(req: &Request<Incoming>) -> bool {
    req.headers()
        .get_all(hyper::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().starts_with(NDJSON)))
}

pub(crate) async fn handle(app: Arc<App>, req: Request<Incoming>) -> Result<Reply, Infallible> {
    let started = std::time::Instant::now();
    let endpoint = crate::metrics::endpoint_index(req.uri().path());
    if req.uri().path() == "/metrics" && req.method() == Method::GET {
        if let Err(e) = app.keys.authorize(token(&req), Role::Admin) {
            app.metrics
                .record(endpoint, e.status.as_u16(), Some(e.code), started.elapsed());
            return Ok(respond(e.status, e.json()));
        }
        let text = app.metrics.render(&app);
        app.metrics.record(endpoint, 200, None, started.elapsed());
        let mut r = Response::new(http_body_util::Either::Left(Full::new(Bytes::from(text))));
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        return Ok(r);
    }
    if req.uri().path().starts_with("/VIID/") {
        let reply = viid(app.clone(), req).await;
        app.metrics
            .record(endpoint, reply.status().as_u16(), None, started.elapsed());
        return Ok(reply);
    }
    let metrics_app = app.clone();
    let ndjson = wants_ndjson(&req);
    let (reply, error) = match route(app, req, ndjson).await {
        Ok((status, body)) => {
            let body = match body {
                b @ (Body::Value(_) | Body::Text(_)) if ndjson => b.into_lines(),
                b => b,
            };
            (respond(status, body), None)
        }
        Err(e) => {
            if e.status.is_server_error() {
                tracing::error!(code = e.code, message = %e.message, "request failed");
            }
            let mut r = respond(e.status, e.json());
            if let Some(s) = e.retry_after {
                r.headers_mut()
                    .insert(hyper::header::RETRY_AFTER, HeaderValue::from(s));
            }
            (r, Some(e.code))
        }
    };
    metrics_app
        .metrics
        .record(endpoint, reply.status().as_u16(), error, started.elapsed());
    Ok(reply)
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
}

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
    /// The JSON text of a whole JSON body.
    fn into_string(self) -> String {
        match self {
            Body::Value(v) => v.to_string(),
            Body::Text(s) | Body::Lines(s) => s,
            Body::Stream(_) | Body::Events(_) => {
                unreachable!("a stream is sent, never serialized whole")
            }
        }
    }

    /// A list answer `{"key": [items]}` (exactly one list) as NDJSON, one item a line;
    /// any other answer as one line.
    fn into_lines(self) -> Body {
        match self {
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
            other => other,
        }
    }
}

fn respond(status: StatusCode, body: impl Into<Body>) -> Reply {
    let (body, content_type) = match body.into() {
        Body::Stream(rx) => (http_body_util::Either::Right(ChannelBody(rx)), NDJSON),
        Body::Events(rx) => (
            http_body_util::Either::Right(ChannelBody(rx)),
            "text/event-stream",
        ),
        Body::Lines(s) => (
            http_body_util::Either::Left(Full::new(Bytes::from(s))),
            NDJSON,
        ),
        other => (
            http_body_util::Either::Left(Full::new(Bytes::from(other.into_string()))),
            "application/json",
        ),
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

async fn route(
    app: Arc<App>,
    req: Request<Incoming>,
    ndjson: bool,
) -> Result<(StatusCode, Body), ApiError> {
    let path = req.uri().path().to_string();
    let params = Params::parse(req.uri().query());
    let method = req.method().clone();
    // Catalog entries are addressed by code (/v1/communities/{code},
    // /v1/devices/{code}), events by id (/v1/events/{id}).
    let (route_path, code): (String, Option<String>) = [
        "communities",
        "devices",
        "events",
        "subscriptions",
        "watchlists",
    ]
    .iter()
    .find_map(|what| {
        let prefix = format!("/v1/{what}/");
        let code = path.strip_prefix(&prefix).filter(|c| !c.is_empty())?;
        let name = match *what {
            "events" | "subscriptions" | "watchlists" => "id",
            _ => "code",
        };
        Some((format!("{prefix}{{{name}}}"), Some(code.to_string())))
    })
    .unwrap_or_else(|| (path.clone(), None));
    let (allowed, needed) = match route_path.as_str() {
        "/health" | "/v1/openapi.json" => ("GET", None),
        "/metrics" | "/v1/audit" | "/v1/admin/stats" => ("GET", Some(Role::Admin)),
        "/v1/admin/retention" => ("GET, PUT", Some(Role::Admin)),
        "/v1/communities/{code}" | "/v1/devices/{code}" => ("PUT", Some(Role::Admin)),
        "/v1/communities" | "/v1/devices" => ("GET", Some(Role::Investigate)),
        "/v1/events" => ("POST", Some(Role::Ingest)),
        "/v1/events/{id}" => ("GET", Some(Role::Investigate)),
        "/v1/feed" => ("GET", Some(Role::Investigate)),
        "/v1/subscriptions" => ("GET, POST", Some(Role::Admin)),
        "/v1/subscriptions/{id}" => ("DELETE", Some(Role::Admin)),
        "/v1/watchlists" => ("GET, POST", Some(Role::Investigate)),
        "/v1/watchlists/{id}" => ("DELETE", Some(Role::Investigate)),
        "/v1/alerts" => ("GET", Some(Role::Investigate)),
        "/v1/collision" => ("POST", Some(Role::Investigate)),
        "/v1/trajectory" | "/v1/cooccurrence" | "/v1/search" | "/v1/frequency"
        | "/v1/nocturnal" | "/v1/first-seen" | "/v1/overnight" | "/v1/counts" => {
            ("GET", Some(Role::Investigate))
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no such endpoint: {path}"),
            ))
        }
    };
    if !allowed.split(", ").any(|m| m == method.as_str()) {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{path} takes {allowed}, not {method}"),
        ));
    }
    let caller = match needed {
        None => None,
        Some(role) => Some(app.keys.authorize(token(&req), role)?),
    };
    let caller = caller.unwrap_or_else(|| Caller {
        key_id: "anonymous".into(),
        role: Role::Admin,
        communities: None,
    });
    let query = req.uri().query().unwrap_or("").to_string();
    match (method.clone(), route_path.as_str()) {
        (Method::GET, "/health") => health(&app).await.map(|(s, v)| (s, v.into())),
        (Method::PUT, "/v1/communities/{code}" | "/v1/devices/{code}") => {
            let body = body(&app, req).await?;
            let code = code.expect("matched with a code");
            let devices = route_path.starts_with("/v1/devices");
            run(app, move |app| match devices {
                true => put_device(app, &code, &body),
                false => put_community(app, &code, &body),
            })
            .await
            .map(|v| (StatusCode::OK, v.into()))
        }
        (Method::GET, "/v1/communities" | "/v1/devices" | "/v1/admin/stats") => {
            let p = route_path.clone();
            run(app, move |app| match p.as_str() {
                "/v1/communities" => list_communities(app, &params, &caller),
                "/v1/devices" => list_devices(app, &params, &caller),
                _ => stats(app),
            })
            .await
            .map(|v| (StatusCode::OK, v.into()))
        }
        (Method::GET | Method::PUT, "/v1/admin/retention") => {
            let change = match method {
                Method::PUT => Some(body(&app, req).await?),
                _ => None,
            };
            run(app, move |app| retention(app, change.as_deref()))
                .await
                .map(|v| (StatusCode::OK, v.into()))
        }
        (Method::GET, "/v1/openapi.json") => {
            Ok((StatusCode::OK, crate::openapi::document().into()))
        }
        (Method::GET, "/v1/audit") => {
            params.only(&["after", "limit"])?;
            let after = params.number("after", 0u64)?;
            let limit = params.number("limit", 1000usize)?.min(10_000);
            let entries = app
                .audit
                .read(after, limit)
                .map_err(|e| ApiError::internal(e.to_string()))?;
            Ok((StatusCode::OK, json!({ "entries": entries }).into()))
        }
        (Method::POST, "/v1/events") => {
            // The slot is taken before the body is read, so buffered bodies are
            // bounded by slots × body limit whatever the load.
            let _slot = app
                .ingest_slots
                .clone()
                .try_acquire_owned()
                .map_err(|_| ApiError::busy("ingest"))?;
            let binary = req
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with(crate::wire::CONTENT_TYPE));
            let body = body(&app, req).await?;
            ingest(&app, body, binary, &caller)
                .await
                .map(|(s, v)| (s, v.into()))
        }
        (Method::GET, "/v1/events/{id}") => {
            let id = code.expect("matched with an id");
            audited(app, caller, path, query, ndjson, move |_, ctx| {
                params.only(&[])?;
                event_query(ctx, &id)
            })
            .await
        }
        (Method::POST, "/v1/collision") => {
            let body = body(&app, req).await?;
            let text = String::from_utf8_lossy(&body).into_owned();
            audited(app, caller, path, text, ndjson, move |app, ctx| {
                collision_query(ctx, &body, app.config.max_result_rows)
            })
            .await
        }
        (Method::POST, "/v1/subscriptions") => {
            let body = body(&app, req).await?;
            let a = app.clone();
            run(app, move |_| create_subscription(&a, &body, &caller))
                .await
                .map(|v| (StatusCode::CREATED, v.into()))
        }
        (Method::GET, "/v1/subscriptions") => {
            params.only(&[])?;
            let list = crate::subscriptions::Registry::list(&app).map_err(ApiError::internal)?;
            let through = app.store.applied_through();
            let items: Vec<Value> = list
                .iter()
                .map(|(s, st)| subscription_json(s, st, through))
                .collect();
            Ok((StatusCode::OK, listed("subscriptions", items).0))
        }
        (Method::DELETE, "/v1/subscriptions/{id}") => {
            let id = code.expect("matched with an id");
            match crate::subscriptions::Registry::delete(&app, &id).map_err(ApiError::internal)? {
                true => Ok((StatusCode::OK, json!({ "deleted": id }).into())),
                false => Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "no_such_subscription",
                    format!("no subscription {id}"),
                )),
            }
        }
        (Method::POST, "/v1/watchlists") => {
            let body = body(&app, req).await?;
            let c = caller.clone();
            run(app, move |app| create_watchlist(app, &body, &c))
                .await
                .map(|v| (StatusCode::CREATED, v.into()))
        }
        (Method::GET, "/v1/watchlists") => {
            params.only(&[])?;
            let items: Vec<Value> = app
                .watch
                .list()
                .into_iter()
                .filter(|w| caller.communities.is_none() || w.scope == caller.communities)
                .map(|w| serde_json::to_value(w).expect("serializes"))
                .collect();
            Ok((StatusCode::OK, listed("watchlists", items).0))
        }
        (Method::DELETE, "/v1/watchlists/{id}") => {
            let id = code.expect("matched with an id");
            let a = app.clone();
            let gone = run(app, move |app| {
                app.watch
                    .delete(&a.store, &id)
                    .map(|found| (found, id))
                    .map_err(ApiError::internal)
            })
            .await?;
            match gone {
                (true, id) => Ok((StatusCode::OK, json!({ "deleted": id }).into())),
                (false, id) => Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "no_such_watchlist",
                    format!("no watchlist {id}"),
                )),
            }
        }
        (Method::GET, "/v1/alerts") => {
            params.only(&["after", "limit", "wait"])?;
            let after = params.number("after", 0u64)?;
            let limit = params.limit(1000, app.config.max_result_rows)?;
            let wait = params.window("wait")?.unwrap_or(0);
            if !(0..=60_000).contains(&wait) {
                return Err(ApiError::param("wait", "0 to 60 s"));
            }
            let deadline = Instant::now() + Duration::from_millis(wait as u64);
            loop {
                let notified = app.watch.signal.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let (a, scope) = (app.clone(), caller.communities.clone());
                let alerts = run(app.clone(), move |_| {
                    a.watch
                        .alerts(&a.store, after, limit, scope.as_deref())
                        .map_err(ApiError::internal)
                })
                .await?;
                if !alerts.is_empty() || Instant::now() >= deadline {
                    let next = alerts
                        .last()
                        .and_then(|a| a["id"].as_u64())
                        .unwrap_or(after);
                    return Ok((
                        StatusCode::OK,
                        json!({ "alerts": alerts, "next_after": next }).into(),
                    ));
                }
                let left = deadline.saturating_duration_since(Instant::now());
                let _ = tokio::time::timeout(left, notified).await;
            }
        }
        (Method::GET, "/v1/feed") => {
            let sse = req
                .headers()
                .get(hyper::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("text/event-stream"));
            let last_event_id = req
                .headers()
                .get("last-event-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            feed_request(app, caller, path, query, params, sse, last_event_id).await
        }
        (Method::GET, "/v1/trajectory") if ndjson => {
            stream_trajectory(app, caller, path, query, params).await
        }
        (Method::GET, p) => {
            let handler: Handler = match p {
                "/v1/trajectory" => trajectory_query,
                "/v1/cooccurrence" => cooccurrence_query,
                "/v1/search" => search_query,
                "/v1/frequency" => frequency_query,
                "/v1/nocturnal" => nocturnal_query,
                "/v1/first-seen" => first_seen_query,
                "/v1/overnight" => overnight_query,
                "/v1/counts" => counts_query,
                _ => unreachable!("every routed path is matched above"),
            };
            audited(app, caller, path, query, ndjson, move |app, ctx| {
                handler(app, ctx, &params)
            })
            .await
        }
        _ => unreachable!("every routed path is matched above"),
    }
}

/// A GA/T 1400 request (`/VIID/…`): digest registration, keepalive, time, and vehicle
/// and face uploads, stored as events with one status per uploaded object.
async fn viid(app: Arc<App>, req: Request<Incoming>) -> Reply {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (authorization, user_identify) = (header("authorization"), header("user-identify"));
    let viid_reply = |status: StatusCode, body: Value, challenge: Option<String>| {
        let mut r = respond(status, body);
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/VIID+JSON;charset=UTF-8"),
        );
        if let Some(c) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            r.headers_mut().insert(hyper::header::WWW_AUTHENTICATE, c);
        }
        r
    };
    let body = match body(&app, req).await {
        Ok(b) => b,
        Err(e) => {
            let code = crate::gat1400::INVALID_JSON_FORMAT;
            let s = crate::gat1400::one_status("", &path, code, &e.message, crate::now_ms());
            return viid_reply(e.status, s, None);
        }
    };
    let app2 = app.clone();
    let done = tokio::task::spawn_blocking(move || {
        let now = crate::now_ms();
        let (answer, events, mut statuses) = app2.gateway.answer(
            &app2.store,
            &method,
            &path,
            authorization.as_deref(),
            user_identify.as_deref(),
            &body,
            &app2.config.gat1400_face_subject,
            now,
        );
        if answer.body.is_null() {
            // An upload: store what became events, and say per object how it went.
            let mut valid = Vec::new();
            let mut at = Vec::new();
            for (i, input) in events {
                match app2.store.validate(input) {
                    Ok(e) => {
                        valid.push(e);
                        at.push(i);
                    }
                    Err(v) => {
                        statuses[i]["StatusCode"] = crate::gat1400::INVALID_JSON_CONTENT.into();
                        statuses[i]["StatusString"] = format!("{}: {}", v.field, v.reason).into();
                    }
                }
            }
            let appended = match valid.is_empty() {
                true => Vec::new(),
                false => match app2.store.append(&valid) {
                    Ok(o) => o.results,
                    Err(e) => {
                        let e = crate::error::storage(e);
                        let code = crate::gat1400::DEVICE_ERROR;
                        let s = crate::gat1400::one_status("", &path, code, &e.message, now);
                        return (e.status, s, None);
                    }
                },
            };
            raise_alerts(&app2, &valid, &appended);
            let m = &app2.metrics;
            for (i, r) in at.into_iter().zip(appended) {
                let counter = match r {
                    Appended::Stored { .. } => &m.stored,
                    Appended::Duplicate { .. } => &m.duplicates,
                    Appended::Rejected(v) => {
                        statuses[i]["StatusCode"] = crate::gat1400::INVALID_JSON_CONTENT.into();
                        statuses[i]["StatusString"] = format!("{}: {}", v.field, v.reason).into();
                        &m.rejected
                    }
                };
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            return (StatusCode::OK, crate::gat1400::status_list(statuses), None);
        }
        (answer.status, answer.body, answer.challenge)
    })
    .await;
    match done {
        Ok((status, body, challenge)) => viid_reply(status, body, challenge),
        Err(e) => {
            let e = ApiError::internal(format!("the GA/T 1400 task failed: {e}"));
            viid_reply(e.status, e.json(), None)
        }
    }
}

/// An answer `{key: [items]}` and how many items it holds.
fn listed(key: &str, items: Vec<Value>) -> (Body, usize) {
    let n = items.len();
    let mut answer = serde_json::Map::new();
    answer.insert(key.to_string(), Value::Array(items));
    (Value::Object(answer).into(), n)
}

/// A GET query handler: the answer and how many results it holds (for the audit).
type Handler = fn(&App, &QueryContext<'_>, &Params) -> Result<(Body, usize), ApiError>;

/// The API key a request presents: `Authorization: Bearer <token>` or `X-Api-Key`.
fn token(req: &Request<Incoming>) -> Option<&str> {
    let h = req.headers();
    h.get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| h.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim)
}

/// Runs an investigative query in the caller's scope and appends it to the audit log,
/// answered or not.
async fn audited<F>(
    app: Arc<App>,
    caller: Caller,
    endpoint: String,
    mut params: String,
    ndjson: bool,
    f: F,
) -> Result<(StatusCode, Body), ApiError>
where
    F: FnOnce(&App, &QueryContext<'_>) -> Result<(Body, usize), ApiError> + Send + 'static,
{
    let c = caller.clone();
    let answer = run(app.clone(), move |app| {
        let scope = scope_ids(app, &c);
        let ctx = query_ctx(app, scope.as_deref());
        // Serialized on the blocking pool too, off the connection tasks.
        f(app, &ctx).map(|(b, n)| match ndjson {
            true => (b.into_lines(), n),
            false => (Body::Text(b.into_string()), n),
        })
    })
    .await;
    let (status, results) = match &answer {
        Ok((_, n)) => (StatusCode::OK.as_u16(), Some(*n)),
        Err(e) => (e.status.as_u16(), None),
    };
    params.truncate(4096);
    app.audit
        .record(
            crate::now_ms(),
            &caller.key_id,
            &endpoint,
            &params,
            results,
            status,
        )
        .map_err(|e| ApiError::internal(format!("cannot write the audit log: {e}")))?;
    answer.map(|(b, _)| (StatusCode::OK, b))
}

/// The request body, refused with 413 past the configured size.
async fn body(app: &App, req: Request<Incoming>) -> Result<Bytes, ApiError> {
    let max = app.config.max_body_bytes;
    let limit = app.config.body_timeout;
    let collected = tokio::time::timeout(limit, Limited::new(req.into_body(), max).collect())
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!("the body did not arrive within {} s", limit.as_secs()),
            )
        })?;
    match collected {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body is over the limit of {max} bytes; send smaller batches"),
            ))
        }
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_body",
            format!("could not read the body: {e}"),
        )),
    }
}

/// Runs `f` on the blocking pool (store calls lock, fsync and compute), within the
/// query concurrency limit and time limit. Past its time the request is answered 503;
/// its slot stays taken until it really ends, so overload cannot pile up behind it.
async fn run<F, T>(app: Arc<App>, f: F) -> Result<T, ApiError>
where
    F: FnOnce(&App) -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    let slot = app
        .query_slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::busy("the query service"))?;
    let timeout = app.config.query_timeout;
    let task = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        f(&app)
    });
    match tokio::time::timeout(timeout, task).await {
        Err(_) => Err(ApiError::timeout(timeout)),
        Ok(joined) => {
            joined.map_err(|e| ApiError::internal(format!("the request's task failed: {e}")))?
        }
    }
}

async fn health(app: &Arc<App>) -> Result<(StatusCode, Value), ApiError> {
    // With keys configured, anyone may ask whether the server is up, but only that:
    // store sizes and failure reasons (file names) are for admins (`/metrics`, the log).
    let failed = app.store.failed();
    if !app.keys.is_empty() {
        return Ok(match failed {
            Some(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({ "status": "failed" }),
            ),
            None => (StatusCode::OK, json!({ "status": "ok" })),
        });
    }
    if let Some(why) = failed {
        return Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "failed", "reason": why,
                    "writes": "refused until the server is restarted; queries still answer" }),
        ));
    }
    let t = crate::Totals::of(&app.store);
    Ok((
        StatusCode::OK,
        json!({ "status": "ok", "events": t.events, "shards": t.shards,
                "subjects_searchable": app.vocab.indexed() }),
    ))
}

async fn ingest(
    app: &Arc<App>,
    body: Bytes,
    binary: bool,
    caller: &Caller,
) -> Result<(StatusCode, Value), ApiError> {
    // NDJSON and JSON are parsed here; binary batches are decoded on the blocking pool,
    // borrowing their strings from the body.
    let parsed = match binary {
        true => Vec::new(),
        false => records(&body)?,
    };
    let max = app.config.max_batch_records;
    let app2 = app.clone();
    let allowed = caller.communities.clone();
    let (status, reply) = tokio::task::spawn_blocking(move || {
        let decoded = match binary {
            true => crate::wire::decode(&body).map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "malformed_body",
                    format!("not a {} batch: {e}", crate::wire::CONTENT_TYPE),
                )
            })?,
            false => Vec::new(),
        };
        let records = decoded.len().max(parsed.len());
        if records == 0 {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "no_events",
                "the body holds no events",
            ));
        }
        if records > max {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_many_records",
                format!("{records} records in one request; at most {max}"),
            ));
        }
        let mut errors = Vec::new();
        let mut valid = Vec::new();
        let mut positions = Vec::new();
        let in_scope = |pos: usize, community: &str| match &allowed {
            Some(a) if !a.iter().any(|c| c == community) => Err(json!({
                "line": pos, "field": "community",
                "message": format!("this API key may not write community {community:?}"),
            })),
            _ => Ok(()),
        };
        let invalid = |pos: usize, e: sightline_storage::ValidationError| {
            json!({ "line": pos, "field": e.field, "message": e.reason })
        };
        let mut take = |pos: usize, r: Result<sightline_storage::Event, Value>| match r {
            Ok(ev) => {
                valid.push(ev);
                positions.push(pos);
            }
            Err(e) => errors.push(e),
        };
        for (pos, e) in decoded.iter().enumerate() {
            let r = in_scope(pos, e.community)
                .and_then(|()| app2.store.validate_ref(e).map_err(|v| invalid(pos, v)));
            take(pos, r);
        }
        for (pos, r) in parsed {
            let r = r.map_err(|e| e.json()).and_then(|input| {
                in_scope(pos, &input.community)?;
                app2.store.validate(input).map_err(|v| invalid(pos, v))
            });
            take(pos, r);
        }
        let outcome = if valid.is_empty() {
            None
        } else {
            Some(app2.store.append(&valid).map_err(crate::error::storage)?)
        };
        let alerts = match &outcome {
            Some(o) => raise_alerts(&app2, &valid, &o.results),
            None => 0,
        };
        let (mut stored, mut duplicates, mut ids) = (0usize, 0usize, Vec::new());
        for (pos, r) in positions
            .iter()
            .zip(outcome.iter().flat_map(|o| &o.results))
        {
            match r {
                Appended::Stored { seq } => {
                    stored += 1;
                    ids.push(*seq);
                }
                Appended::Duplicate { seq } => {
                    duplicates += 1;
                    ids.push(*seq);
                }
                Appended::Rejected(e) => {
                    errors.push(json!({ "line": pos, "field": e.field, "message": e.reason }))
                }
            }
        }
        errors.sort_by_key(|e| e["line"].as_u64());
        let m = &app2.metrics;
        m.stored
            .fetch_add(stored as u64, std::sync::atomic::Ordering::Relaxed);
        m.duplicates
            .fetch_add(duplicates as u64, std::sync::atomic::Ordering::Relaxed);
        m.rejected
            .fetch_add(errors.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let body = json!({
            "stored": stored,
            "duplicates": duplicates,
            "rejected": errors.len(),
            "ids": ids,
            "errors": errors,
            "alerts": alerts,
        });
        // Some stored (or all fine): 200 with the refused ones listed. None stored and
        // some refused: 422, in the one error shape, with the list.
        if stored + duplicates == 0 {
            let first = &errors[0];
            let mut e = ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_events",
                format!(
                    "all {} records were refused; the first: {}",
                    errors.len(),
                    first["message"].as_str().unwrap_or("?")
                ),
            );
            e.field = first["field"].as_str().map(str::to_string);
            e.line = first["line"].as_u64().map(|l| l as usize);
            let mut v = e.json();
            v["errors"] = body["errors"].clone();
            return Ok::<_, ApiError>((StatusCode::UNPROCESSABLE_ENTITY, v));
        }
        Ok((StatusCode::OK, body))
    })
    .await
    .map_err(|e| ApiError::internal(format!("ingest task failed: {e}")))??;
    Ok((status, reply))
}

/// Checks newly stored events against the watchlists and writes their alerts (before
/// the ingest is answered); returns how many. A failure to write an alert is logged:
/// the events are stored and acknowledged all the same.
fn raise_alerts(app: &App, events: &[sightline_storage::Event], results: &[Appended]) -> usize {
    if app.watch.is_empty() {
        return 0;
    }
    let stored: Vec<(u64, &sightline_storage::Event, Value)> = events
        .iter()
        .zip(results)
        .filter_map(|(e, r)| match r {
            Appended::Stored { seq } => Some((*seq, e, event_json(*seq, e))),
            _ => None,
        })
        .collect();
    match app.watch.check(&app.store, &stored, crate::now_ms()) {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = %e, "watchlist alerts were not written");
            0
        }
    }
}

/// A stored event as the API writes it, from the validated event (its attributes
/// written straight from their encoding, as in every answer).
fn event_json(seq: u64, e: &sightline_storage::Event) -> Value {
    json!({"id": seq, "ts": Rfc3339(e.ts_ms()), "community": e.community(),
           "device": e.device().as_str(), "kind": e.kind().as_str(), "subject": e.subject(),
           "direction": e.direction().as_str(), "attrs": AttrsOut(e.attr_bytes())})
}

/// A query context over the app's store, limited to `scope` when given, that stops
/// at the query time limit from now.
fn query_ctx<'a>(app: &'a App, scope: Option<&'a [u32]>) -> QueryContext<'a> {
    let ctx = QueryContext::new(&app.store, &app.index)
        .with_deadline(std::time::Instant::now() + app.config.query_timeout);
    match scope {
        Some(ids) => ctx.scoped(ids),
        None => ctx,
    }
}

/// The caller's community scope as sorted dictionary ids (`None`: everything).
fn scope_ids(app: &App, caller: &Caller) -> Option<Vec<u32>> {
    caller.communities.as_ref().map(|codes| {
        let d = app.store.dictionaries();
        let mut ids: Vec<u32> = codes.iter().filter_map(|c| d.community_id(c)).collect();
        ids.sort_unstable();
        ids
    })
}

fn range(p: &Params) -> Result<(i64, i64), ApiError> {
    Ok((p.time("from")?, p.time("to")?))
}

#[derive(serde::Serialize)]
pub(crate) struct EventOut<'a> {
    id: u64,
    ts: Rfc3339,
    community: &'a str,
    device: &'a str,
    kind: &'static str,
    subject: &'a str,
    direction: &'static str,
    attrs: AttrsOut<'a>,
}

impl<'a> EventOut<'a> {
    fn of(s: &'a Sighting, attrs: &'a AttrsAt) -> EventOut<'a> {
        EventOut {
            id: s.seq,
            ts: Rfc3339(s.ts_ms),
            community: &s.community,
            device: &s.device,
            kind: s.kind.as_str(),
            subject: &s.subject,
            direction: s.direction.as_str(),
            attrs: AttrsOut(attrs.bytes()),
        }
    }
}

/// One event as every answer writes it.
pub(crate) fn event_out<'a>(s: &'a Sighting, attrs: &'a AttrsAt) -> EventOut<'a> {
    EventOut::of(s, attrs)
}

/// `GET /v1/events/{id}`: one event, as trajectory returns events. An id the caller's
/// scope does not cover is answered like an unknown one (404), so ids reveal nothing.
fn event_query(ctx: &QueryContext<'_>, id: &str) -> Result<(Body, usize), ApiError> {
    let seq: u64 = id
        .parse()
        .map_err(|_| ApiError::param("id", format!("{id:?} is not an event id (a number)")))?;
    let (s, a) = event_by_id(ctx, seq).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_event",
            format!("no event with id {seq}"),
        )
    })?;
    serde_json::to_string(&EventOut::of(&s, &a))
        .map(|s| (s.into(), 1))
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// Attributes as a JSON object of strings, numbers and booleans, written straight
/// from their stored encoding (no map is built).
struct AttrsOut<'a>(&'a [u8]);

impl serde::Serialize for AttrsOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeMap};
        use sightline_storage::AttrRef;
        let mut m = s.serialize_map(None)?;
        let mut failed = None;
        let walked = sightline_storage::visit_attrs(self.0, |k, v| {
            if failed.is_some() {
                return;
            }
            let r = match v {
                AttrRef::Str(x) => m.serialize_entry(k, x),
                AttrRef::Int(x) => m.serialize_entry(k, &x),
                AttrRef::Float(x) => m.serialize_entry(k, &x),
                AttrRef::Bool(x) => m.serialize_entry(k, &x),
            };
            if let Err(e) = r {
                failed = Some(e);
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        walked.map_err(|e| S::Error::custom(format!("damaged attributes: {e}")))?;
        m.end()
    }
}

#[derive(serde::Serialize)]
struct StayOut<'a> {
    community: &'a str,
    #[serde(rename = "in")]
    in_: Rfc3339,
    out: Option<Rfc3339>,
    ended_by: &'static str,
}

#[derive(serde::Serialize)]
struct TrajectoryOut<'a> {
    events: Vec<EventOut<'a>>,
    stays: Vec<StayOut<'a>>,
    stays_truncated: bool,
    next_cursor: Option<String>,
}

/// The trajectory parameters; `limit` is checked against `max_limit`.
fn trajectory_params(p: &Params, max_limit: usize) -> Result<TrajectoryQuery, ApiError> {
    p.only(&[
        "kind",
        "subject",
        "from",
        "to",
        "community",
        "cursor",
        "limit",
    ])?;
    let (from_ms, to_ms) = range(p)?;
    let cursor = p
        .get("cursor")
        .map(|c| {
            c.parse::<Cursor>()
                .map_err(|_| ApiError::param("cursor", "not a cursor this server returned"))
        })
        .transpose()?;
    Ok(TrajectoryQuery {
        kind: p.kind("kind")?,
        subject: p.required("subject")?.to_string(),
        from_ms,
        to_ms,
        communities: p.list("community"),
        cursor,
        limit: p.limit(1000, max_limit)?,
    })
}

fn trajectory_query(
    app: &App,
    ctx: &QueryContext<'_>,
    p: &Params,
) -> Result<(Body, usize), ApiError> {
    let q = trajectory_params(p, app.config.max_result_rows)?;
    let t = trajectory(ctx, &q)?;
    let out = TrajectoryOut {
        events: t
            .events
            .iter()
            .zip(&t.attrs_at)
            .map(|(s, a)| EventOut::of(s, a))
            .collect(),
        stays: t
            .stays
            .iter()
            .map(|s| StayOut {
                community: &s.community,
                in_: Rfc3339(s.in_ms),
                out: s.out_ms.map(Rfc3339),
                ended_by: match s.ended_by {
                    StayEnd::Out => "out",
                    StayEnd::Elsewhere => "elsewhere",
                    StayEnd::Open => "open",
                },
            })
            .collect(),
        stays_truncated: t.stays_truncated,
        next_cursor: t.next_cursor.as_ref().map(|c| c.to_string()),
    };
    let n = out.events.len();
    serde_json::to_string(&out)
        .map(|s| (s.into(), n))
        .map_err(|e| ApiError::internal(e.to_string()))
}

fn subscription_json(
    s: &crate::subscriptions::Subscription,
    st: &crate::subscriptions::Status,
    through: u64,
) -> Value {
    let mut v = serde_json::to_value(s).expect("serializes");
    v["status"] = serde_json::to_value(st).expect("serializes");
    v["status"]["lag"] = through.saturating_sub(st.cursor).into();
    v
}

/// `POST /v1/subscriptions`: `{"url", "kinds", "communities", "devices", "subjects",
/// "format", "batch", "from"}`; starts delivering at once.
fn create_subscription(app: &Arc<App>, body: &[u8], caller: &Caller) -> Result<Value, ApiError> {
    let o = object(body)?;
    let url = text(&o, "url", true)?;
    crate::subscriptions::target(&url).map_err(|e| ApiError::param("url", e))?;
    let list = |field: &str| -> Result<Option<Vec<String>>, ApiError> {
        match o.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| ApiError::param(field, "must be a list of strings"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(ApiError::param(field, "must be a list of strings")),
        }
    };
    let kinds = list("kinds")?;
    for k in kinds.iter().flatten() {
        parse_kind("kinds", k)?;
    }
    let communities = list("communities")?;
    if let (Some(cs), Some(scope)) = (&communities, &caller.communities) {
        if let Some(c) = cs.iter().find(|c| !scope.contains(c)) {
            return Err(ApiError::param(
                "communities",
                format!("this API key may not see community {c:?}"),
            ));
        }
    }
    let format = match o
        .get("format")
        .and_then(Value::as_str)
        .unwrap_or("sightline")
    {
        f @ ("sightline" | "gat1400") => f.to_string(),
        _ => return Err(ApiError::param("format", "sightline or gat1400")),
    };
    let batch = match o.get("batch") {
        None => 500,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=10_000).contains(&n) => n as usize,
            _ => return Err(ApiError::param("batch", "1 to 10000 events")),
        },
    };
    let from = match o.get("from") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| ApiError::param("from", "an event id (0: from the start)"))?,
        ),
    };
    let s = crate::subscriptions::Subscription {
        id: format!("{:016x}", rand::random::<u64>()),
        url,
        kinds,
        communities,
        devices: list("devices")?,
        subjects: list("subjects")?,
        format,
        batch,
        owner: caller.key_id.clone(),
        scope: caller.communities.clone(),
        created_ms: crate::now_ms(),
        alerts: match o.get("alerts") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(ApiError::param("alerts", "true or false")),
        },
    };
    crate::subscriptions::Registry::create(app, s.clone(), from).map_err(ApiError::internal)?;
    let status = crate::subscriptions::Status {
        cursor: from.unwrap_or_else(|| match s.alerts {
            true => app.watch.last(),
            false => app.store.applied_through(),
        }),
        ..Default::default()
    };
    Ok(subscription_json(&s, &status, app.store.applied_through()))
}

/// `POST /v1/watchlists`: `{"name", "reason", "expires", "entries": [{"kind",
/// "subject" | "pattern" | "fuzzy" (+ "distance")}]}`.
fn create_watchlist(app: &App, body: &[u8], caller: &Caller) -> Result<Value, ApiError> {
    use crate::watchlists::{Entry, Watchlist};
    let o = object(body)?;
    let reason = text(&o, "reason", true)?;
    let expires_ms = match o.get("expires") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(
            n.as_i64()
                .ok_or_else(|| ApiError::param("expires", "epoch ms or RFC 3339"))?,
        ),
        Some(Value::String(t)) => Some(parse_time("expires", t)?),
        Some(_) => return Err(ApiError::param("expires", "epoch ms or RFC 3339")),
    };
    let items = o
        .get("entries")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty() && a.len() <= 100_000)
        .ok_or_else(|| ApiError::param("entries", "1 to 100,000 entries"))?;
    let mut entries = Vec::with_capacity(items.len());
    for (i, e) in items.iter().enumerate() {
        let field = |f: &str| format!("entries[{i}].{f}");
        let bad = |f: &str, why: &str| ApiError::param(field(f), why);
        let kind = e["kind"].as_str().unwrap_or("vehicle");
        parse_kind("kind", kind).map_err(|_| bad("kind", "unknown kind"))?;
        let get = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
        let (subject, pattern, fuzzy) = (get("subject"), get("pattern"), get("fuzzy"));
        if [&subject, &pattern, &fuzzy]
            .iter()
            .filter(|x| x.is_some())
            .count()
            != 1
        {
            return Err(bad(
                "subject",
                "give exactly one of subject, pattern, fuzzy",
            ));
        }
        if let Some(p) = &pattern {
            if p.chars().count() > sightline_index::MAX_PATTERN_CHARS
                || p.chars().all(|c| c == '*' || c == '?')
            {
                return Err(bad(
                    "pattern",
                    &format!(
                        "a pattern needs literal characters (and at most {} characters)",
                        sightline_index::MAX_PATTERN_CHARS
                    ),
                ));
            }
        }
        let distance = match e.get("distance") {
            None => None,
            Some(d) => match d.as_f64() {
                Some(d) if (0.0..=2.0).contains(&d) && fuzzy.is_some() => Some(d as f32),
                _ => return Err(bad("distance", "0 to 2, with fuzzy")),
            },
        };
        entries.push(Entry {
            kind: kind.to_string(),
            subject,
            pattern,
            fuzzy,
            distance,
        });
    }
    let w = Watchlist {
        id: format!("{:016x}", rand::random::<u64>()),
        name: text(&o, "name", false)?,
        reason,
        expires_ms,
        entries,
        scope: caller.communities.clone(),
    };
    app.watch.put(&app.store, &w).map_err(ApiError::internal)?;
    Ok(serde_json::to_value(&w).expect("serializes"))
}

/// The feed's answer for a page: events as in a trajectory, and the cursor to go on from.
#[derive(serde::Serialize)]
struct FeedOut<'a> {
    events: Vec<EventOut<'a>>,
    next_after: u64,
}

/// `GET /v1/feed?after=&limit=&wait=&kind=&community=`: a page of events after the
/// cursor (waiting up to `wait` for some when there are none), or with `Accept:
/// text/event-stream` a stream of them that resumes from `Last-Event-ID`. Audited once
/// per request.
async fn feed_request(
    app: Arc<App>,
    caller: Caller,
    endpoint: String,
    mut query: String,
    p: Params,
    sse: bool,
    last_event_id: Option<String>,
) -> Result<(StatusCode, Body), ApiError> {
    p.only(&["after", "limit", "wait", "kind", "community"])?;
    let after = match last_event_id.filter(|_| sse) {
        Some(id) => id
            .trim()
            .parse()
            .map_err(|_| ApiError::param("Last-Event-ID", "not an event id"))?,
        None => p.number("after", 0u64)?,
    };
    let wait = p.window("wait")?.unwrap_or(0);
    if !(0..=60_000).contains(&wait) {
        return Err(ApiError::param("wait", "0 to 60 s"));
    }
    let scope = scope_ids(&app, &caller);
    let communities = match (p.list("community"), scope) {
        (None, scope) => scope,
        (Some(codes), scope) => {
            let d = app.store.dictionaries();
            let mut ids: Vec<u32> = codes
                .iter()
                .filter_map(|c| d.community_id(c))
                .filter(|c| scope.as_ref().is_none_or(|s| s.contains(c)))
                .collect();
            ids.sort_unstable();
            Some(ids)
        }
    };
    let ask = crate::feed::Ask {
        after,
        limit: p.limit(1000, app.config.max_result_rows)?,
        kind: p.opt_kind("kind")?,
        communities,
    };
    query.truncate(4096);
    let record = |app: &App, results: Option<usize>| {
        app.audit
            .record(
                crate::now_ms(),
                &caller.key_id,
                &endpoint,
                &query,
                results,
                200,
            )
            .map_err(|e| ApiError::internal(format!("cannot write the audit log: {e}")))
    };
    if sse {
        record(&app, None)?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(8);
        tokio::spawn(async move {
            let mut ask = ask;
            loop {
                let (a, store_app) = (ask.clone(), app.clone());
                let Ok((lines, next)) = tokio::task::spawn_blocking(move || {
                    let page = crate::feed::page(&store_app.store, &a);
                    let lines: Vec<Bytes> = page
                        .events
                        .iter()
                        .filter_map(|(s, at)| {
                            let json = serde_json::to_string(&EventOut::of(s, at)).ok()?;
                            Some(crate::feed::sse_event(s.seq, &json))
                        })
                        .collect();
                    (lines, page.next_after)
                })
                .await
                else {
                    return;
                };
                for l in lines {
                    if tx.send(l).await.is_err() {
                        return; // the client went away
                    }
                }
                let idle = next == ask.after;
                ask.after = next;
                if idle {
                    let deadline = Instant::now() + crate::feed::SSE_HEARTBEAT;
                    let woke =
                        crate::feed::wait(&app.feed_signal, &app.store, next, deadline).await;
                    if !woke
                        && tx
                            .send(Bytes::from_static(b": keepalive\n\n"))
                            .await
                            .is_err()
                    {
                        return;
                    }
                }
            }
        });
        return Ok((StatusCode::OK, Body::Events(rx)));
    }
    let deadline = Instant::now() + Duration::from_millis(wait as u64);
    loop {
        let (a, store_app) = (ask.clone(), app.clone());
        let body = run(app.clone(), move |_| {
            let page = crate::feed::page(&store_app.store, &a);
            let out = FeedOut {
                events: page
                    .events
                    .iter()
                    .map(|(s, at)| EventOut::of(s, at))
                    .collect(),
                next_after: page.next_after,
            };
            let n = out.events.len();
            serde_json::to_string(&out)
                .map(|s| (s, n, page.next_after))
                .map_err(|e| ApiError::internal(e.to_string()))
        })
        .await?;
        let (text, n, next) = body;
        if n > 0 || Instant::now() >= deadline {
            record(&app, Some(n))?;
            return Ok((StatusCode::OK, Body::Text(text)));
        }
        crate::feed::wait(&app.feed_signal, &app.store, next, deadline).await;
    }
}

/// Events per streamed chunk, and how long a stream waits for a client that stopped
/// reading before it gives up.
const STREAM_PAGE: usize = 1000;
const STREAM_STALL: std::time::Duration = std::time::Duration::from_secs(30);

/// `GET /v1/trajectory` with `Accept: application/x-ndjson`: every event after
/// `cursor` (at most `limit`, if given; no page size), one JSON object a line, streamed
/// as produced. The rows are found and the audit entry written (with the count) before
/// the first byte; a failure after that ends the stream with an `{"error":…}` line.
async fn stream_trajectory(
    app: Arc<App>,
    caller: Caller,
    endpoint: String,
    mut params_text: String,
    p: Params,
) -> Result<(StatusCode, Body), ApiError> {
    let q = trajectory_params(&p, usize::MAX)?;
    let cap = p.get("limit").map(|_| q.limit).unwrap_or(usize::MAX);
    let slot = app
        .query_slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::busy("the query service"))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<Result<(), ApiError>>();
    let rt = tokio::runtime::Handle::current();
    let app2 = app.clone();
    params_text.truncate(4096);
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let app = &*app2;
        let scope = scope_ids(app, &caller);
        let ctx = query_ctx(app, scope.as_deref());
        let audit = |results: Option<usize>, status: u16| {
            app.audit.record(
                crate::now_ms(),
                &caller.key_id,
                &endpoint,
                &params_text,
                results,
                status,
            )
        };
        let mut started = Some(started_tx);
        let mut left = cap;
        let sent = trajectory_pages(
            &ctx,
            &q,
            STREAM_PAGE,
            |total| {
                let answer = audit(Some(total.min(cap)), 200)
                    .map_err(|e| ApiError::internal(format!("cannot write the audit log: {e}")));
                let go = answer.is_ok();
                if let Some(s) = started.take() {
                    let _ = s.send(answer);
                }
                go
            },
            |events, attrs| {
                let mut buf = Vec::with_capacity(events.len() * 320);
                for (e, a) in events.iter().zip(attrs).take(left) {
                    if let Err(err) = serde_json::to_writer(&mut buf, &EventOut::of(e, a)) {
                        let line = ApiError::internal(format!("event {}: {err}", e.seq)).json();
                        buf.extend_from_slice(format!("{line}\n").as_bytes());
                        let _ = rt.block_on(tx.send_timeout(Bytes::from(buf), STREAM_STALL));
                        return false;
                    }
                    buf.push(b'\n');
                    left -= 1;
                }
                // A client gone or stalled ends the stream.
                rt.block_on(tx.send_timeout(Bytes::from(buf), STREAM_STALL))
                    .is_ok()
                    && left > 0
            },
        );
        if let Err(e) = sent {
            let e = ApiError::from(e);
            match started.take() {
                Some(s) => {
                    let _ = audit(None, e.status.as_u16());
                    let _ = s.send(Err(e));
                }
                None => {
                    let line = format!("{}\n", e.json());
                    let _ = rt.block_on(tx.send_timeout(Bytes::from(line), STREAM_STALL));
                }
            }
        }
    });
    match tokio::time::timeout(app.config.query_timeout, started_rx).await {
        Err(_) => Err(ApiError::timeout(app.config.query_timeout)),
        Ok(Err(_)) => Err(ApiError::internal("the query's task failed")),
        Ok(Ok(Err(e))) => Err(e),
        Ok(Ok(Ok(()))) => Ok((StatusCode::OK, Body::Stream(rx))),
    }
}

fn cooccurrence_query(
    app: &App,
    ctx: &QueryContext<'_>,
    p: &Params,
) -> Result<(Body, usize), ApiError> {
    p.only(&[
        "kind",
        "subject",
        "from",
        "to",
        "community",
        "window",
        "min_count",
        "scope",
        "candidate_kind",
        "dedup_gap",
        "limit",
    ])?;
    let (from_ms, to_ms) = range(p)?;
    let scope = p.choice(
        "scope",
        "device",
        &[("device", Scope::Device), ("community", Scope::Community)],
    )?;
    let found = cooccurrence(
        ctx,
        &Cooccurrence {
            kind: p.kind("kind")?,
            subject: p.required("subject")?.to_string(),
            from_ms,
            to_ms,
            communities: p.list("community"),
            window_ms: p.window("window")?.unwrap_or(60_000),
            min_count: p.number("min_count", 1)?,
            scope,
            candidate_kind: p.opt_kind("candidate_kind")?,
            dedup_gap_ms: p.window("dedup_gap")?,
            limit: p.limit(100, app.config.max_result_rows)?,
        },
    )?;
    let candidates: Vec<Value> = found
        .iter()
        .map(|c| {
            json!({
                "kind": c.kind.as_str(),
                "subject": c.subject,
                "hits": c.hits,
                "devices": c.devices,
                "days": c.days,
                "first": rfc3339(c.first_ms),
                "last": rfc3339(c.last_ms),
                "lift": (c.lift * 1000.0).round() / 1000.0,
            })
        })
        .collect();
    Ok(listed("candidates", candidates))
}

fn collision_query(
    ctx: &QueryContext<'_>,
    body: &[u8],
    max_rows: usize,
) -> Result<(Body, usize), ApiError> {
    let obj = object(body)?;
    let kind = match obj.get("kind") {
        Some(Value::String(s)) => parse_kind("kind", s)?,
        _ => return Err(ApiError::missing("kind")),
    };
    let conds = obj
        .get("conditions")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::param("conditions", "must be an array of conditions"))?;
    let mut conditions = Vec::with_capacity(conds.len());
    for (i, c) in conds.iter().enumerate() {
        let field = |f: &str| format!("conditions[{i}].{f}");
        let strings = |f: &str| -> Result<Option<Vec<String>>, ApiError> {
            match c.get(f) {
                None => Ok(None),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|x| {
                        x.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| ApiError::param(field(f), "must be an array of strings"))
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some),
                Some(_) => Err(ApiError::param(field(f), "must be an array of strings")),
            }
        };
        let place = match (strings("communities")?, strings("devices")?) {
            (Some(c), None) => Place::Communities(c),
            (None, Some(d)) => Place::Devices(d),
            _ => {
                return Err(ApiError::param(
                    field("communities"),
                    "give exactly one of communities or devices",
                ))
            }
        };
        let time = |f: &str| -> Result<i64, ApiError> {
            match c.get(f) {
                Some(Value::String(s)) => parse_time(&field(f), s),
                Some(Value::Number(n)) => n
                    .as_i64()
                    .ok_or_else(|| ApiError::param(field(f), "not whole epoch ms")),
                _ => Err(ApiError::missing(&field(f))),
            }
        };
        conditions.push(Condition {
            place,
            from_ms: time("from")?,
            to_ms: time("to")?,
        });
    }
    let number = |f: &str, default: usize| -> Result<usize, ApiError> {
        match obj.get(f) {
            None => Ok(default),
            Some(v) => v
                .as_u64()
                .map(|n| n as usize)
                .ok_or_else(|| ApiError::param(f, "must be a whole number")),
        }
    };
    let min_conditions = number("min_conditions", conditions.len())?;
    let hits = collision(
        ctx,
        &Collision {
            kind,
            conditions,
            min_conditions,
            limit: crate::params::check_limit(number("limit", 1000.min(max_rows))?, max_rows)?,
        },
    )?;
    let subjects: Vec<Value> = hits
        .iter()
        .map(|h| json!({ "kind": h.kind.as_str(), "subject": h.subject, "conditions": h.conditions }))
        .collect();
    Ok(listed("subjects", subjects))
}

fn search_query(app: &App, ctx: &QueryContext<'_>, p: &Params) -> Result<(Body, usize), ApiError> {
    p.only(&["q", "kind", "mode", "distance", "limit"])?;
    let mode = match p.get("mode").unwrap_or("exact") {
        "exact" => SearchMode::Exact,
        "prefix" => SearchMode::Prefix,
        "wildcard" => SearchMode::Wildcard,
        "fuzzy" => SearchMode::Fuzzy {
            distance: match p.number("distance", 1)? {
                d @ 1..=2 => d,
                _ => return Err(ApiError::param("distance", "a fuzzy distance is 1 or 2")),
            },
        },
        other => {
            return Err(ApiError::param(
                "mode",
                format!("{other:?}; use exact, prefix, wildcard or fuzzy"),
            ))
        }
    };
    let found = search(
        ctx,
        &app.vocab,
        &SearchQuery {
            pattern: p.required("q")?.to_string(),
            mode,
            kind: p.opt_kind("kind")?,
            limit: p.limit(100, app.config.max_result_rows)?,
        },
    )?;
    let subjects: Vec<Value> = found
        .iter()
        .map(|m| {
            json!({
                "kind": m.kind.as_str(),
                "subject": m.subject,
                "count": m.count,
                "first": rfc3339(m.first_ms),
                "last": rfc3339(m.last_ms),
                "distance": m.distance,
            })
        })
        .collect();
    Ok(listed("subjects", subjects))
}

fn frequency_query(
    app: &App,
    ctx: &QueryContext<'_>,
    p: &Params,
) -> Result<(Body, usize), ApiError> {
    p.only(&[
        "community",
        "kind",
        "from",
        "to",
        "min_count",
        "min_days",
        "limit",
    ])?;
    let (from_ms, to_ms) = range(p)?;
    let opt = |name: &str| -> Result<Option<u32>, ApiError> {
        p.get(name).map(|_| p.number(name, 0u32)).transpose()
    };
    let found = frequency(
        ctx,
        &FrequencyQuery {
            community: p.required("community")?.to_string(),
            kind: p.kind("kind")?,
            from_ms,
            to_ms,
            min_count: opt("min_count")?,
            min_days: opt("min_days")?,
            limit: p.limit(1000, app.config.max_result_rows)?,
        },
    )?;
    let subjects: Vec<Value> = found
        .iter()
        .map(|f| {
            json!({ "subject": f.subject, "count": f.count, "days": f.days,
                    "first": rfc3339(f.first_ms), "last": rfc3339(f.last_ms) })
        })
        .collect();
    Ok(listed("subjects", subjects))
}

fn nocturnal_query(
    app: &App,
    ctx: &QueryContext<'_>,
    p: &Params,
) -> Result<(Body, usize), ApiError> {
    p.only(&[
        "kind",
        "from",
        "to",
        "community",
        "day_start_hour",
        "day_end_hour",
        "min_night",
        "max_day",
        "limit",
    ])?;
    let (from_ms, to_ms) = range(p)?;
    let kind = p.kind("kind")?;
    let mut q = NocturnalQuery::new(kind, from_ms, to_ms);
    q.communities = p.list("community");
    q.day_start_hour = p.number("day_start_hour", q.day_start_hour)?;
    q.day_end_hour = p.number("day_end_hour", q.day_end_hour)?;
    q.min_night = p.number("min_night", q.min_night)?;
    q.max_day = p.number("max_day", q.max_day)?;
    q.limit = p.limit(q.limit, app.config.max_result_rows)?;
    let found = nocturnal(ctx, &q)?;
    let subjects: Vec<Value> = found
        .iter()
        .map(|n| {
            json!({ "subject": n.subject, "night": n.night, "day": n.day,
                    "night_days": n.night_days,
                    "night_ratio": (n.night_ratio * 1000.0).round() / 1000.0 })
        })
        .collect();
    Ok(listed("subjects", subjects))
}

fn first_seen_query(
    app: &App,
    ctx: &QueryContext<'_>,
    p: &Params,
) -> Result<(Body, usize), ApiError> {
    p.only(&["community", "kind", "from", "to", "lookback", "limit"])?;
    let (from_ms, to_ms) = range(p)?;
    let lookback = p.window("lookback")?.unwrap_or(30 * 86_400_000);
    if lookback % 86_400_000 != 0 || lookback < 0 {
        return Err(ApiError::param(
            "lookback",
            "must be whole days, like 30d or 720h",
        ));
    }
    let found = first_seen(
        ctx,
        &FirstSeenQuery {
            community: p.required("community")?.to_string(),
            kind: p.kind("kind")?,
            from_ms,
            to_ms,
            lookback_days: (lookback / 86_400_000) as u32,
            limit: p.limit(1000, app.config.max_result_rows)?,
        },
    )?;
    let subjects: Vec<Value> = found
        .iter()
        .map(|f| json!({ "subject": f.subject, "first": rfc3339(f.first_ms), "count": f.count }))
        .collect();
    Ok(listed("subjects", subjects))
}

fn overnight_query(
    _app: &App,
    ctx: &QueryContext<'_>,
    p: &Params,
) -> Result<(Body, usize), ApiError> {
    p.only(&[
        "kind",
        "subject",
        "from",
        "to",
        "evening_hour",
        "morning_hour",
    ])?;
    let (from_ms, to_ms) = range(p)?;
    let mut q = OvernightQuery::new(p.kind("kind")?, p.required("subject")?, from_ms, to_ms);
    q.evening_hour = p.number("evening_hour", q.evening_hour)?;
    q.morning_hour = p.number("morning_hour", q.morning_hour)?;
    let o = overnight(ctx, &q)?;
    let at = |x: &Option<(String, i64)>| {
        x.as_ref()
            .map(|(c, ts)| json!({ "community": c, "ts": rfc3339(*ts) }))
    };
    let nights: Vec<Value> = o
        .nights
        .iter()
        .map(|n| json!({ "date": local_date(n.day), "evening": at(&n.evening), "morning": at(&n.morning) }))
        .collect();
    let bases: Vec<Value> = o
        .bases
        .iter()
        .map(|(c, n)| json!({ "community": c, "nights": n }))
        .collect();
    let n = nights.len();
    Ok((json!({ "nights": nights, "bases": bases }).into(), n))
}

fn counts_query(_app: &App, ctx: &QueryContext<'_>, p: &Params) -> Result<(Body, usize), ApiError> {
    p.only(&["from", "to", "community", "kind", "by", "per"])?;
    let (from_ms, to_ms) = range(p)?;
    let by = p.choice(
        "by",
        "community",
        &[
            ("community", CountKey::Community),
            ("device", CountKey::Device),
            ("kind", CountKey::Kind),
        ],
    )?;
    let per = p.choice(
        "per",
        "day",
        &[("hour", Granularity::Hour), ("day", Granularity::Day)],
    )?;
    let buckets = counts(
        ctx,
        &Counts {
            from_ms,
            to_ms,
            communities: p.list("community"),
            kind: p.opt_kind("kind")?,
            by,
            per,
        },
    )?;
    if buckets.len() > MAX_COUNT_ROWS {
        return Err(ApiError::param(
            "to",
            format!(
                "{} buckets; at most {MAX_COUNT_ROWS}: narrow the range, count per day, or name communities",
                buckets.len()
            ),
        ));
    }
    let rows: Vec<Value> = buckets
        .iter()
        .map(|b| json!({ "bucket": rfc3339(b.bucket_ms), "key": b.key, "count": b.count }))
        .collect();
    Ok(listed("counts", rows))
}

/// Most rows a counts answer may hold.
const MAX_COUNT_ROWS: usize = 100_000;

/// `2021-09-01` for a local day number.
fn local_date(day: i64) -> String {
    chrono::DateTime::from_timestamp_millis(day * 86_400_000)
        .map(|t| t.date_naive().to_string())
        .unwrap_or_else(|| day.to_string())
}

/// A JSON object body, or 400.
fn object(body: &[u8]) -> Result<serde_json::Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(ApiError::param("body", "must be a JSON object")),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not JSON: {e}"),
        )),
    }
}

/// A string field: required, or "" when optional and absent.
fn text(
    o: &serde_json::Map<String, Value>,
    field: &str,
    required: bool,
) -> Result<String, ApiError> {
    match o.get(field) {
        Some(Value::String(s)) if !(required && s.trim().is_empty()) => Ok(s.trim().to_string()),
        None | Some(Value::Null) if !required => Ok(String::new()),
        None | Some(Value::Null) => Err(ApiError::missing(field)),
        Some(_) => Err(ApiError::param(field, "must be a non-empty string")),
    }
}

fn storage_err(e: sightline_storage::StorageError) -> ApiError {
    crate::error::storage(e)
}

fn put_community(app: &App, code: &str, body: &[u8]) -> Result<Value, ApiError> {
    let o = object(body)?;
    if code.chars().any(|c| !c.is_ascii_alphanumeric()) || code.len() > 32 {
        return Err(ApiError::param(
            "code",
            "a community code is 1–32 letters and digits",
        ));
    }
    let c = sightline_storage::Community {
        code: code.to_string(),
        name: text(&o, "name", true)?,
        district: text(&o, "district", false)?,
    };
    app.store.catalog().put_community(&c).map_err(storage_err)?;
    Ok(json!({"code": c.code, "name": c.name, "district": c.district}))
}

fn put_device(app: &App, code: &str, body: &[u8]) -> Result<Value, ApiError> {
    let o = object(body)?;
    sightline_storage::DeviceCode::parse(code)
        .map_err(|e| ApiError::param("code", format!("not a GB/T 28181 device code: {e}")))?;
    let community = text(&o, "community", true)?;
    if app
        .store
        .catalog()
        .community(&community)
        .map_err(storage_err)?
        .is_none()
    {
        return Err(ApiError::param(
            "community",
            format!("{community:?} is not registered; PUT /v1/communities/{community} first"),
        ));
    }
    let direction = text(&o, "direction", false)?;
    // `kind` is accepted for `device_kind` (as GA/T 1400 integrators write it).
    let device_kind = match (o.get("device_kind"), o.get("kind")) {
        (None, Some(_)) => text(&o, "kind", true)?,
        _ => text(&o, "device_kind", true)?,
    };
    let password = match o.get("gat1400") {
        None | Some(Value::Null) => None,
        Some(Value::Object(g)) => match g.get("password") {
            Some(Value::String(p)) if !p.is_empty() => Some(p.clone()),
            _ => {
                return Err(ApiError::param(
                    "gat1400.password",
                    "must be a non-empty string",
                ))
            }
        },
        Some(_) => {
            return Err(ApiError::param(
                "gat1400",
                "must be an object like {\"password\": \"…\"}",
            ))
        }
    };
    let d = sightline_storage::Device {
        code: code.to_string(),
        community,
        device_kind,
        direction: sightline_storage::Direction::parse(&direction)
            .ok_or_else(|| ApiError::param("direction", "use in, out or unknown"))?,
        name: text(&o, "name", false)?,
    };
    app.store.catalog().put_device(&d).map_err(storage_err)?;
    if let Some(p) = password {
        app.store
            .catalog()
            .put_gat1400_credential(&crate::gat1400::credential(code, &p))
            .map_err(storage_err)?;
    }
    let mut v = device_json(&d);
    v["gat1400"] = app
        .store
        .catalog()
        .gat1400_credential(code)
        .map_err(storage_err)?
        .is_some()
        .into();
    Ok(v)
}

fn device_json(d: &sightline_storage::Device) -> Value {
    json!({"code": d.code, "community": d.community, "device_kind": d.device_kind,
           "direction": d.direction.as_str(), "name": d.name})
}

fn visible(caller: &Caller, community: &str) -> bool {
    caller
        .communities
        .as_ref()
        .is_none_or(|c| c.iter().any(|x| x == community))
}

fn list_communities(app: &App, p: &Params, caller: &Caller) -> Result<Value, ApiError> {
    p.only(&[])?;
    let list: Vec<Value> = app
        .store
        .catalog()
        .communities()
        .map_err(storage_err)?
        .into_iter()
        .filter(|c| visible(caller, &c.code))
        .map(|c| json!({"code": c.code, "name": c.name, "district": c.district}))
        .collect();
    Ok(json!({ "communities": list }))
}

fn list_devices(app: &App, p: &Params, caller: &Caller) -> Result<Value, ApiError> {
    p.only(&["community"])?;
    let only = p.get("community");
    let list: Vec<Value> = app
        .store
        .catalog()
        .devices()
        .map_err(storage_err)?
        .into_iter()
        .filter(|d| visible(caller, &d.community) && only.is_none_or(|c| c == d.community))
        .map(|d| device_json(&d))
        .collect();
    Ok(json!({ "devices": list }))
}

/// `GET /v1/admin/retention` reads the policy; `PUT` with `{"days": N}` (or `null`
/// to keep everything) changes it durably and applies it at once.
fn retention(app: &App, change: Option<&[u8]>) -> Result<Value, ApiError> {
    let mut dropped = Vec::new();
    if let Some(body) = change {
        let o = object(body)?;
        let days = match o.get("days") {
            None => return Err(ApiError::missing("days")),
            Some(Value::Null) => None,
            Some(v) => match v.as_u64() {
                Some(d) if (1..=u64::from(sightline_storage::MAX_RETENTION_DAYS)).contains(&d) => {
                    Some(d as u32)
                }
                _ => {
                    return Err(ApiError::param(
                        "days",
                        format!(
                        "must be a whole number of days from 1 to {}, or null to keep everything",
                        sightline_storage::MAX_RETENTION_DAYS
                    ),
                    ))
                }
            },
        };
        if let Some(extra) = o.keys().find(|k| *k != "days") {
            return Err(ApiError::param(
                extra,
                "unknown field; the body is {\"days\": N}",
            ));
        }
        app.store.set_retention_days(days).map_err(storage_err)?;
        dropped = app.store.apply_retention().map_err(storage_err)?;
    }
    let d = app.store.dictionaries();
    let dropped: Vec<Value> = dropped
        .iter()
        .map(|k| {
            json!({
                "community": d.community(k.community).unwrap_or("?"),
                "day": crate::params::local_date(app.store.layout().start_ms(k.span)),
            })
        })
        .collect();
    Ok(json!({
        "retention_days": app.store.retention_days(),
        "dropped_shards": dropped,
    }))
}

fn stats(app: &App) -> Result<Value, ApiError> {
    let t = crate::Totals::of(&app.store);
    let d = app.store.dictionaries();
    Ok(json!({
        "events": t.events,
        "events_in_memory": t.memory_events,
        "shards": t.shards,
        "segments": t.segments,
        "sealed_bytes": t.sealed_bytes,
        "subjects": d.len_subjects(),
        "devices": d.len_devices(),
        "communities": d.len_communities(),
        "wal_files": app.store.wal_file_count(),
        "retention_days": app.store.retention_days(),
    }))
}
