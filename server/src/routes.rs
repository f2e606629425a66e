//! The route table: every endpoint once — method, path, who may call it, its
//! parameters, its documentation and its handler. Dispatch, authorisation, the
//! unknown-parameter check, metric labels and the OpenAPI document are all derived
//! from it, so adding an endpoint is one entry here plus its handler beside its
//! feature. `tests` below prove every entry documented, labelled and authorised.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use hyper::body::Incoming;
use hyper::{Method, Request};
use serde_json::{json, Value};

use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::http::body::{respond, respond_error, NDJSON};
use crate::http::{Answer, Body, Call, Reply};
use crate::params::{p, path_p, Param, Params};
use crate::queries::QueryFn;
use crate::{admin, catalog, feed, gat1400, ingest, queries, subscriptions, watchlists, App};

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Anyone (only that the server is up, and this API's own description).
    Public,
    /// An API key with this role or a greater one.
    Key(Role),
    /// GA/T 1400 devices and platforms: HTTP Digest registration (`gat1400`).
    Gat1400,
}

/// How a route treats query parameters it does not document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Check {
    /// Refused (400, naming it) before the handler runs.
    Refuse,
    /// Refused inside the audited run, so the refusal is audited too.
    RefuseAudited,
    /// Ignored (health, metrics and similar endpoints that take none).
    Ignore,
}

/// What the OpenAPI document says of a route (GA/T 1400 routes are documented in
/// `server/API.md` instead: the standard is their description).
pub(crate) struct Doc {
    pub summary: &'static str,
    /// Query and path parameters (for PUT and DELETE: the path parameter).
    pub params: &'static [Param],
    /// An example request body (POST, PUT).
    pub example: Option<fn() -> Value>,
    /// What a 404 means (DELETE of an id that does not exist).
    pub not_found: Option<&'static str>,
}

type Future_ = Pin<Box<dyn Future<Output = Result<Answer, ApiError>> + Send>>;
type Handler = Box<dyn Fn(Call) -> Future_ + Send + Sync>;

pub(crate) struct Route {
    /// `None`: any method (the GA/T 1400 fallback).
    pub method: Option<Method>,
    /// The path; a last segment `{name}` takes the rest of the path (non-empty).
    pub path: &'static str,
    pub access: Access,
    pub check: Check,
    /// `None` for the GA/T 1400 routes.
    pub doc: Option<Doc>,
    handler: Handler,
}

impl Route {
    /// The path's fixed part and whether a `{name}` argument follows it.
    fn prefix(&self) -> (&'static str, bool) {
        match self.path.rfind("/{") {
            Some(i) => (&self.path[..=i], true),
            None => (self.path, false),
        }
    }

    /// The path argument if `path` is this route's, `Some(None)` for a path without one.
    fn matches(&self, path: &str) -> Option<Option<String>> {
        match self.prefix() {
            (fixed, false) => (path == fixed).then_some(None),
            (fixed, true) => path
                .strip_prefix(fixed)
                .filter(|rest| !rest.is_empty())
                .map(|rest| Some(rest.to_string())),
        }
    }

    fn takes(&self, method: &Method) -> bool {
        self.method.as_ref().is_none_or(|m| m == method)
    }
}

/// The table, and the metric label of each distinct path.
pub(crate) struct Routes {
    pub routes: Vec<Route>,
    /// Distinct paths in table order; a request's label is its index here, anything
    /// unrouted is `labels.len()` ("other").
    pub labels: Vec<&'static str>,
}

/// Where a request goes.
enum Found<'a> {
    Route(&'a Route, Option<String>),
    WrongMethod { path: &'static str },
    Nowhere,
}

impl Routes {
    fn new() -> Routes {
        Routes {
            routes: Vec::new(),
            labels: Vec::new(),
        }
    }

    fn add<F, Fut>(
        &mut self,
        method: Option<Method>,
        path: &'static str,
        access: Access,
        check: Check,
        doc: Option<Doc>,
        f: F,
    ) where
        F: Fn(Call) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Answer, ApiError>> + Send + 'static,
    {
        if !self.labels.contains(&path) {
            self.labels.push(path);
        }
        self.routes.push(Route {
            method,
            path,
            access,
            check,
            doc,
            handler: Box::new(move |c| Box::pin(f(c))),
        });
    }

    fn get<F, Fut>(&mut self, path: &'static str, access: Access, check: Check, doc: Doc, f: F)
    where
        F: Fn(Call) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Answer, ApiError>> + Send + 'static,
    {
        self.add(Some(Method::GET), path, access, check, Some(doc), f);
    }

    fn send<F, Fut>(&mut self, method: Method, path: &'static str, role: Role, doc: Doc, f: F)
    where
        F: Fn(Call) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Answer, ApiError>> + Send + 'static,
    {
        self.add(
            Some(method),
            path,
            Access::Key(role),
            Check::Ignore,
            Some(doc),
            f,
        );
    }

    /// An investigative GET query: audited, in the caller's scope.
    fn query(&mut self, path: &'static str, doc: Doc, f: QueryFn) {
        let params = doc.params;
        self.get(
            path,
            Access::Key(Role::Investigate),
            Check::RefuseAudited,
            doc,
            move |c| queries::answer(c, params, f),
        );
    }

    /// A GA/T 1400 route.
    fn viid<F, Fut>(&mut self, method: Option<Method>, path: &'static str, f: F)
    where
        F: Fn(Call) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Answer, ApiError>> + Send + 'static,
    {
        self.add(method, path, Access::Gat1400, Check::Ignore, None, f);
    }

    fn find(&self, method: &Method, path: &str) -> Found<'_> {
        let mut wrong_method = None;
        for r in &self.routes {
            if let Some(arg) = r.matches(path) {
                match r.takes(method) {
                    true => return Found::Route(r, arg),
                    false => wrong_method = wrong_method.or(Some(r.path)),
                }
            }
        }
        match wrong_method {
            Some(path) => Found::WrongMethod { path },
            None => Found::Nowhere,
        }
    }

    /// The methods a path takes, in the order GET, POST, PUT, DELETE.
    fn allowed(&self, path: &str) -> String {
        let mut methods: Vec<&Method> = self
            .routes
            .iter()
            .filter(|r| r.path == path)
            .filter_map(|r| r.method.as_ref())
            .collect();
        let rank = |m: &Method| {
            [Method::GET, Method::POST, Method::PUT, Method::DELETE]
                .iter()
                .position(|x| x == m)
        };
        methods.sort_by_key(|m| rank(m));
        methods
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The metric label index of a path template.
    pub fn label_of(&self, path: &str) -> usize {
        self.labels
            .iter()
            .position(|l| *l == path)
            .unwrap_or(self.labels.len())
    }
}

/// The table. Read it top to bottom: it is the API.
pub(crate) fn routes() -> &'static Routes {
    static ROUTES: LazyLock<Routes> = LazyLock::new(table);
    &ROUTES
}

const FROM: Param = p(
    "from",
    true,
    "2021-09-01T00:00:00+08:00",
    "Start, inclusive: RFC 3339 or epoch ms.",
);
const TO: Param = p(
    "to",
    true,
    "2021-09-03T00:00:00+08:00",
    "End, exclusive: RFC 3339 or epoch ms.",
);
const KIND: Param = p(
    "kind",
    true,
    "vehicle",
    "vehicle, face, access, person or nonmotor.",
);
const SUBJECT: Param = p(
    "subject",
    true,
    "苏E12345",
    "Plate, face feature id or card id.",
);
const COMMUNITY: Param = p("community", true, "3205080001", "Community code.");
const COMMUNITIES: Param = p("community", false, "3205080001", "Only these communities.");
const ID: Param = path_p("id", "0000000000000000", "");

/// A static parameter list (evaluated at compile time).
macro_rules! params {
    ($($p:expr),* $(,)?) => {
        const { &[$($p),*] as &[Param] }
    };
}

const fn doc(summary: &'static str, params: &'static [Param]) -> Doc {
    Doc {
        summary,
        params,
        example: None,
        not_found: None,
    }
}

const fn with_body(summary: &'static str, params: &'static [Param], example: fn() -> Value) -> Doc {
    Doc {
        summary,
        params,
        example: Some(example),
        not_found: None,
    }
}

const fn deleting(summary: &'static str, not_found: &'static str) -> Doc {
    Doc {
        summary,
        params: &[ID],
        example: None,
        not_found: Some(not_found),
    }
}

fn table() -> Routes {
    use Access::{Key, Public};
    use Check::{Ignore, Refuse};
    use Role::{Admin, Ingest, Investigate};
    let mut r = Routes::new();
    // Service.
    r.get(
        "/health",
        Public,
        Ignore,
        doc(
            "Liveness and store size; 503 `failed` after a disk failure until restarted.",
            &[],
        ),
        admin::health,
    );
    r.get(
        "/metrics",
        Key(Admin),
        Ignore,
        doc("Prometheus metrics (text).", &[]),
        admin::metrics,
    );
    r.get(
        "/v1/openapi.json",
        Public,
        Ignore,
        doc("This document.", &[]),
        admin::openapi,
    );
    r.get(
        "/v1/audit",
        Key(Admin),
        Refuse,
        doc(
            "The audit log of investigative queries (admin).",
            params![
                p(
                    "after",
                    false,
                    "0",
                    "Entries after this sequence number (0)."
                ),
                p("limit", false, "100", "Most entries, ≤ 10,000 (1000)."),
            ],
        ),
        admin::audit,
    );
    r.get(
        "/v1/admin/stats",
        Key(Admin),
        Ignore,
        doc(
            "Store statistics: events, shards, segments, bytes, subjects (admin).",
            &[],
        ),
        admin::stats,
    );
    r.get(
        "/v1/admin/retention",
        Key(Admin),
        Ignore,
        doc(
            "The retention policy in days (null: keep everything) (admin).",
            &[],
        ),
        admin::retention,
    );
    r.send(
        Method::PUT,
        "/v1/admin/retention",
        Admin,
        with_body(
            "Change the retention policy: {\"days\": N} or {\"days\": null} (keep everything). \
         Durable; shards past the new horizon are dropped at once and listed (admin).",
            &[],
            || json!({"days": null}),
        ),
        admin::retention,
    );
    // Catalog.
    r.get(
        "/v1/communities",
        Key(Investigate),
        Refuse,
        doc("Registered communities (those the key may see).", &[]),
        catalog::communities,
    );
    r.send(
        Method::PUT,
        "/v1/communities/{code}",
        Admin,
        with_body(
            "Register or update a community (admin).",
            params![path_p("code", "3205080001", "")],
            || json!({"name": "Pingjiang Road North", "district": "Gusu"}),
        ),
        catalog::put_community,
    );
    r.get(
        "/v1/devices",
        Key(Investigate),
        Refuse,
        doc(
            "Registered devices (those the key may see).",
            params![p(
                "community",
                false,
                "3205080001",
                "Only this community's devices."
            ),],
        ),
        catalog::devices,
    );
    r.send(
        Method::PUT,
        "/v1/devices/{code}",
        Admin,
        with_body(
            "Register or update a device of a registered community (admin).",
            params![path_p("code", "32050801011210000001", "")],
            || {
                json!({"community": "3205080001", "device_kind": "checkpoint_camera",
                  "direction": "in", "name": "North gate, inbound lane"})
            },
        ),
        catalog::put_device,
    );
    // Ingest.
    r.send(
        Method::POST,
        "/v1/events",
        Ingest,
        with_body(
            "Ingest events (NDJSON or a JSON array); answered once they are durable.",
            &[],
            || {
                json!([{"ts": "2021-09-01T08:00:00+08:00", "community": "3205080001",
                   "device": "32050801011210000001", "kind": "vehicle", "subject": "苏E12345",
                   "direction": "in", "attrs": {"plate_color": "blue"}}])
            },
        ),
        ingest::post_events,
    );
    // Investigative queries: audited, in the key's communities.
    r.get(
        "/v1/events/{id}",
        Key(Investigate),
        Check::RefuseAudited,
        doc(
            "One event by the id ingest returned (404 outside the key's communities).",
            params![path_p("id", "1", "Event id."),],
        ),
        queries::event,
    );
    r.get(
        "/v1/trajectory",
        Key(Investigate),
        Check::RefuseAudited,
        doc(
            "A subject's sightings in time order, with stays, paged.",
            params![
                KIND,
                SUBJECT,
                FROM,
                TO,
                p(
                    "community",
                    false,
                    "3205080001",
                    "Only these communities (repeat or comma-separate)."
                ),
                p(
                    "cursor",
                    false,
                    "1630454400000.32050801011210000001.0",
                    "Go on after this event: the previous page's `next_cursor`."
                ),
                p("limit", false, "100", "Events per page, 1–10,000 (1000)."),
            ],
        ),
        queries::trajectory::get,
    );
    r.query(
        "/v1/cooccurrence",
        doc(
            "Subjects seen near a target's sightings (同行/伴随, 人车关联).",
            params![
                KIND,
                SUBJECT,
                FROM,
                TO,
                p(
                    "community",
                    false,
                    "3205080001",
                    "Only the target's sightings in these communities."
                ),
                p(
                    "window",
                    false,
                    "60s",
                    "Half-width of the time window, ≤ 1h (60s)."
                ),
                p("min_count", false, "1", "Least distinct passes (1)."),
                p("scope", false, "device", "device or community (device)."),
                p(
                    "candidate_kind",
                    false,
                    "face",
                    "Only candidates of this kind."
                ),
                p(
                    "dedup_gap",
                    false,
                    "10s",
                    "Merge the target's reads at one device this close."
                ),
                p("limit", false, "100", "Most candidates, ≤ 10,000 (100)."),
            ],
        ),
        queries::cooccurrence,
    );
    r.add(Some(Method::POST), "/v1/collision", Key(Investigate), Ignore, Some(with_body(
        "Subjects present under several conditions (碰撞).", &[],
        || json!({"kind": "vehicle", "min_conditions": 1, "conditions": [
            {"communities": ["3205080001"], "from": "2021-09-01T00:00:00+08:00", "to": "2021-09-02T00:00:00+08:00"}]}))),
        queries::collision);
    r.query(
        "/v1/search",
        doc(
            "Subjects by exact, prefix, wildcard or fuzzy pattern.",
            params![
                p(
                    "q",
                    true,
                    "苏E1234S",
                    "The pattern; ? and * in wildcard mode."
                ),
                p(
                    "mode",
                    false,
                    "fuzzy",
                    "exact, prefix, wildcard or fuzzy (exact)."
                ),
                p("distance", false, "1", "Fuzzy edit distance, 1 or 2 (1)."),
                p("kind", false, "vehicle", "Only this kind."),
                p("limit", false, "10", "Most subjects, ≤ 1000 (100)."),
            ],
        ),
        queries::search,
    );
    r.query(
        "/v1/frequency",
        doc(
            "Subjects seen at a community often (频繁出入).",
            params![
                COMMUNITY,
                KIND,
                FROM,
                TO,
                p(
                    "min_count",
                    false,
                    "2",
                    "Least sightings (give this and/or min_days)."
                ),
                p("min_days", false, "1", "Least distinct days."),
                p("limit", false, "100", "Most subjects (1000)."),
            ],
        ),
        queries::patterns::frequency,
    );
    r.query(
        "/v1/nocturnal",
        doc(
            "Subjects seen mostly at night (昼伏夜出).",
            params![
                KIND,
                FROM,
                TO,
                COMMUNITIES,
                p("day_start_hour", false, "6", "Day starts (6)."),
                p("day_end_hour", false, "18", "Day ends (18)."),
                p("min_night", false, "1", "Least night sightings (5)."),
                p("max_day", false, "2", "Most day sightings (2)."),
                p("limit", false, "100", "Most subjects (1000)."),
            ],
        ),
        queries::patterns::nocturnal,
    );
    r.query(
        "/v1/first-seen",
        doc(
            "Subjects new to a community (首次出现).",
            params![
                COMMUNITY,
                KIND,
                FROM,
                TO,
                p(
                    "lookback",
                    false,
                    "30d",
                    "Days before `from` they must be absent (30d)."
                ),
                p("limit", false, "100", "Most subjects (1000)."),
            ],
        ),
        queries::patterns::first_seen,
    );
    r.query(
        "/v1/overnight",
        doc(
            "Where a subject spends its nights (落脚点).",
            params![
                KIND,
                SUBJECT,
                FROM,
                TO,
                p("evening_hour", false, "19", "Evening starts (19)."),
                p("morning_hour", false, "10", "Morning ends next day (10)."),
            ],
        ),
        queries::patterns::overnight,
    );
    r.query(
        "/v1/counts",
        doc(
            "Events per community, device or kind per hour or day.",
            params![
                FROM,
                TO,
                COMMUNITIES,
                p("kind", false, "vehicle", "Only this kind."),
                p(
                    "by",
                    false,
                    "community",
                    "community, device or kind (community)."
                ),
                p("per", false, "day", "hour or day (day)."),
            ],
        ),
        queries::patterns::counts,
    );
    // The change feed, subscriptions, watchlists and alerts.
    r.get("/v1/feed", Key(Investigate), Refuse, doc("Events in commit order after a cursor (an event id): a page, long-polled with `wait`, or Server-Sent Events with `Accept: text/event-stream` (resumes from `Last-Event-ID`).", params![
        p("after", false, "0", "Cursor: the last event id processed (0)."),
        p("limit", false, "100", "Events per page (1000)."),
        p("wait", false, "0s", "Wait up to this long (≤ 60 s) when nothing is new (0)."),
        p("kind", false, "vehicle", "Only this kind."),
        p("community", false, "3205080001", "Only these communities."),
    ]), feed::get);
    r.get(
        "/v1/subscriptions",
        Key(Admin),
        Refuse,
        doc(
            "Subscriptions with their delivery status: cursor, lag, failures, last error (admin).",
            &[],
        ),
        subscriptions::handlers::list,
    );
    r.send(Method::POST, "/v1/subscriptions", Admin, with_body(
        "Push matching events to a downstream endpoint, at least once, in order, from a durable cursor (admin); answered 201.", &[],
        || json!({"url": "http://127.0.0.1:9/hook", "kinds": ["vehicle"], "communities": ["3205080001"],
                  "format": "sightline", "batch": 500, "from": 0})), subscriptions::handlers::create);
    r.send(
        Method::DELETE,
        "/v1/subscriptions/{id}",
        Admin,
        deleting(
            "Stop and forget a subscription (admin).",
            "No such subscription.",
        ),
        subscriptions::handlers::delete,
    );
    r.get(
        "/v1/watchlists",
        Key(Investigate),
        Refuse,
        doc(
            "Watchlists (those of the key's communities for a scoped key).",
            &[],
        ),
        watchlists::handlers::list,
    );
    r.send(Method::POST, "/v1/watchlists", Investigate, with_body(
        "Watch subjects (exact, wildcard pattern, or OCR-fuzzy plate) with a reason and expiry; every matching event raises an alert at ingest; answered 201.", &[],
        || json!({"name": "case 7", "reason": "stolen vehicle", "expires": "2099-01-01T00:00:00+08:00",
                  "entries": [{"kind": "vehicle", "subject": "苏E12345"},
                              {"kind": "vehicle", "pattern": "苏E9*"},
                              {"kind": "vehicle", "fuzzy": "苏E7777B", "distance": 0.5}]})), watchlists::handlers::create);
    r.send(
        Method::DELETE,
        "/v1/watchlists/{id}",
        Investigate,
        deleting(
            "Delete a watchlist: it raises no more alerts.",
            "No such watchlist.",
        ),
        watchlists::handlers::delete,
    );
    r.get(
        "/v1/alerts",
        Key(Investigate),
        Refuse,
        doc(
            "Watchlist alerts after a cursor (an alert id), in order; long-polled with `wait`.",
            params![
                p("after", false, "0", "The last alert id processed (0)."),
                p("limit", false, "100", "Alerts per page (1000)."),
                p(
                    "wait",
                    false,
                    "0s",
                    "Wait up to this long (≤ 60 s) when nothing is new (0)."
                ),
            ],
        ),
        watchlists::handlers::alerts,
    );
    // GA/T 1400 (视图库): cameras and platforms, HTTP Digest; server/API.md.
    r.viid(
        Some(Method::POST),
        "/VIID/System/Register",
        gat1400::handlers::register,
    );
    r.viid(
        Some(Method::POST),
        "/VIID/System/UnRegister",
        gat1400::handlers::register,
    );
    r.viid(
        Some(Method::POST),
        "/VIID/System/Keepalive",
        gat1400::handlers::keepalive,
    );
    r.viid(
        Some(Method::GET),
        "/VIID/System/Time",
        gat1400::handlers::time,
    );
    r.viid(
        Some(Method::POST),
        "/VIID/MotorVehicles",
        gat1400::handlers::upload,
    );
    r.viid(Some(Method::POST), "/VIID/Faces", gat1400::handlers::upload);
    r.viid(
        None,
        "/VIID/{resource}",
        gat1400::handlers::no_such_resource,
    );
    r
}

/// Answers one request: route, authorise, run the handler, write the answer or the
/// error, count it in `/metrics`.
pub(crate) async fn handle(app: Arc<App>, req: Request<Incoming>) -> Result<Reply, Infallible> {
    let started = Instant::now();
    let table = routes();
    let (label, answer) = match table.find(req.method(), req.uri().path()) {
        Found::Route(route, arg) => (
            table.label_of(route.path),
            call(app.clone(), route, arg, req).await,
        ),
        Found::WrongMethod { path } => (
            table.label_of(path),
            Err(ApiError::MethodNotAllowed {
                path: req.uri().path().to_string(),
                allowed: table.allowed(path),
                method: req.method().to_string(),
            }),
        ),
        Found::Nowhere => (
            table.labels.len(),
            Err(ApiError::NoSuchEndpoint(req.uri().path().to_string())),
        ),
    };
    let (reply, error) = match answer {
        Ok((status, body)) => (respond(status, body), None),
        Err(e) => (respond_error(&e), Some(e.code())),
    };
    app.metrics
        .record(label, reply.status().as_u16(), error, started.elapsed());
    Ok(reply)
}

/// Authorises the caller (before any body is read) and runs the route's handler.
async fn call(
    app: Arc<App>,
    route: &'static Route,
    arg: Option<String>,
    req: Request<Incoming>,
) -> Result<Answer, ApiError> {
    let caller = match route.access {
        Access::Key(role) => app.keys.authorize(token(&req), role)?,
        Access::Public | Access::Gat1400 => Caller {
            key_id: "anonymous".into(),
            role: Role::Admin,
            communities: None,
        },
    };
    let params = Params::parse(req.uri().query());
    if route.check == Check::Refuse {
        params.only_these(route.doc.as_ref().map_or(&[], |d| d.params))?;
    }
    let ndjson = wants_ndjson(&req);
    let (status, body) = (route.handler)(Call::new(app, caller, params, arg, req, ndjson)).await?;
    let body = match body {
        b @ (Body::Value(_) | Body::Text(_)) if ndjson => b.into_lines(),
        b => b,
    };
    Ok((status, body))
}

/// Whether the client asked for NDJSON (`Accept: application/x-ndjson`).
fn wants_ndjson(req: &Request<Incoming>) -> bool {
    req.headers()
        .get_all(hyper::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().starts_with(NDJSON)))
}

/// The API key a request presents: `Authorization: Bearer <token>` or `X-Api-Key`.
fn token(req: &Request<Incoming>) -> Option<&str> {
    let h = req.headers();
    h.get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| h.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            // Path arguments are documented as path parameters.
            if let (Some(d), (_, true)) = (&r.doc, r.prefix()) {
                assert!(
                    d.params.iter().any(|p| p.in_path),
                    "{} does not document its argument",
                    r.path
                );
            }
        }
        // Every documented operation is a route.
        let documented: usize = document["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|ops| ops.as_object().unwrap().len())
            .sum();
        assert_eq!(
            documented,
            table.routes.iter().filter(|r| r.doc.is_some()).count()
        );
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
        assert_eq!(found(Method::GET, "/v1/events"), "405 /v1/events (POST)");
        assert_eq!(
            found(Method::POST, "/v1/admin/retention"),
            "405 /v1/admin/retention (GET, PUT)"
        );
        assert_eq!(
            found(Method::PUT, "/v1/devices/../x"),
            "/v1/devices/{code} Some(\"../x\")"
        );
        assert_eq!(
            found(Method::GET, "/VIID/MotorVehicles"),
            "/VIID/{resource} Some(\"MotorVehicles\")"
        );
        assert_eq!(found(Method::GET, "/v2/nothing"), "404");
        assert_eq!(table.label_of("/nothing"), table.labels.len());
    }
}
