//! The route table: every endpoint once — method, path, who may call it, its
//! parameters, its documentation and its handler (`table.rs`: read it top to bottom,
//! it is the API). Dispatch and authorisation (`dispatch.rs`), the unknown-parameter
//! check, metric labels and the OpenAPI document are all derived from it, so adding an
//! endpoint is one entry in `table.rs` plus its handler beside its feature. The tests
//! in `dispatch.rs` prove every entry documented, labelled and authorised.

mod dispatch;
mod table;

use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;

use hyper::Method;
use serde_json::Value;

#[cfg(feature = "cluster")]
pub(crate) use dispatch::{
    canonical_request, change_summary, host_problem, negotiated, other_transfer_coding, token,
    wants_ndjson,
};
pub(crate) use dispatch::{handle, panic_message, NO_QUERY_TIMING, PANICKED};

use crate::auth::Role;
use crate::error::ApiError;
use crate::http::{Answer, Call};
use crate::params::Param;
use crate::queries::QueryFn;

/// The collections a `POST` creates in: answered 201 Created with `Location:
/// {collection}/{id}` (on `serve` and a cluster's query node; documented so).
pub(crate) const CREATED_BY_POST: [&str; 5] = [
    "/v1/keys",
    "/v1/watchlists",
    "/v1/subscriptions",
    "/v1/upstreams",
    "/v1/remote-subscriptions",
];

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Anyone (only that the server is up, and this API's own description).
    Public,
    /// An API key with this role or a greater one.
    Key(Role),
    /// GA/T 1400 devices and platforms: HTTP Digest registration (`gat1400`).
    Gat1400,
    /// Anyone: the investigator console's page and files (`console.rs`). They hold no
    /// data (the page asks the `/v1` API with the investigator's key); they are not
    /// API operations, so the OpenAPI document leaves them out (server/API.md,
    /// "Investigator console").
    Console,
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
    /// Changes the server's state (every keyed `send` route but ingest): audited
    /// before it runs and again with its outcome (`dispatch.rs`).
    pub changes: bool,
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

    /// Whether the route answers `method`; a GET route answers HEAD too (RFC 9110
    /// §9.3.2: the same head, no body).
    fn takes(&self, method: &Method) -> bool {
        self.method
            .as_ref()
            .is_none_or(|m| m == method || (m == Method::GET && method == Method::HEAD))
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
            changes: false,
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
        // A query string is refused as on a GET (`?dry_run=1` would otherwise be
        // taken for what it is not): these routes take none but their path's.
        self.add(
            Some(method),
            path,
            Access::Key(role),
            Check::Refuse,
            Some(doc),
            f,
        );
        // Ingest is data, not a change of the server's state (nor an investigation).
        self.routes.last_mut().expect("just added").changes = role != Role::Ingest;
    }

    /// An investigative GET query: audited, in the caller's scope.
    fn query(&mut self, path: &'static str, doc: Doc, f: QueryFn) {
        let params = doc.params;
        self.get(
            path,
            Access::Key(Role::Investigate),
            Check::RefuseAudited,
            doc,
            move |c| crate::queries::answer(c, params, f),
        );
    }

    /// A GA/T 1400 route.
    fn viid<F, Fut>(&mut self, method: Method, path: &'static str, f: F)
    where
        F: Fn(Call) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Answer, ApiError>> + Send + 'static,
    {
        self.add(Some(method), path, Access::Gat1400, Check::Ignore, None, f);
    }

    /// A file of the investigator console.
    fn console<F, Fut>(&mut self, path: &'static str, f: F)
    where
        F: Fn(Call) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Answer, ApiError>> + Send + 'static,
    {
        self.add(
            Some(Method::GET),
            path,
            Access::Console,
            Check::Ignore,
            None,
            f,
        );
    }

    /// GA/T 1400's answer to any other `/VIID` request, whatever its method.
    fn viid_fallback<F, Fut>(&mut self, path: &'static str, f: F)
    where
        F: Fn(Call) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Answer, ApiError>> + Send + 'static,
    {
        self.add(None, path, Access::Gat1400, Check::Ignore, None, f);
    }

    /// The route of `method` on `path`. A path some route takes with other methods is
    /// a wrong method (405, RFC 9110 §15.5.6) before any method-less fallback
    /// (`/VIID/{resource}`) claims it.
    fn find(&self, method: &Method, path: &str) -> Found<'_> {
        let mut wrong_method = None;
        let mut fallback = None;
        for r in &self.routes {
            if let Some(arg) = r.matches(path) {
                match (&r.method, r.takes(method)) {
                    (None, _) => fallback = fallback.or(Some((r, arg))),
                    (Some(_), true) => return Found::Route(r, arg),
                    (Some(_), false) => wrong_method = wrong_method.or(Some(r.path)),
                }
            }
        }
        match (wrong_method, fallback) {
            (Some(path), _) => Found::WrongMethod { path },
            (None, Some((r, arg))) => Found::Route(r, arg),
            (None, None) => Found::Nowhere,
        }
    }

    /// Whether some route takes `method` (HEAD where GET is): the others are not
    /// implemented (501, RFC 9110 §15.6.2).
    pub(crate) fn implements(&self, method: &Method) -> bool {
        *method == Method::HEAD
            || self
                .routes
                .iter()
                .any(|r| r.method.as_ref().is_some_and(|m| m == method))
    }

    /// The methods `path` takes (for `OPTIONS`, RFC 9110 §9.3.7), when a route with a
    /// method has it.
    pub(crate) fn methods_of(&self, path: &str) -> Option<String> {
        self.routes
            .iter()
            .find(|r| r.method.is_some() && r.matches(path).is_some())
            .map(|r| self.allowed(r.path))
    }

    /// Where `method` on `path` goes in this table: the route and its path argument,
    /// `Err(true)` when the path takes other methods, `Err(false)` when no route has
    /// it. A cluster's query node answers part of `serve`'s API by it: who may call,
    /// which parameters, and which endpoints it does not answer yet.
    #[cfg(feature = "cluster")]
    pub(crate) fn lookup(
        &self,
        method: &Method,
        path: &str,
    ) -> Result<(&Route, Option<String>), bool> {
        match self.find(method, path) {
            Found::Route(r, arg) => Ok((r, arg)),
            Found::WrongMethod { .. } => Err(true),
            Found::Nowhere => Err(false),
        }
    }

    /// The methods a path takes, in the order GET, HEAD, POST, PUT, DELETE, OPTIONS
    /// (HEAD wherever GET is: a GET route answers it; OPTIONS everywhere: the
    /// dispatcher answers it, RFC 9110 §9.3.7).
    pub(crate) fn allowed(&self, path: &str) -> String {
        let mut methods: Vec<&Method> = self
            .routes
            .iter()
            .filter(|r| r.path == path)
            .filter_map(|r| r.method.as_ref())
            .collect();
        static HEAD: Method = Method::HEAD;
        if methods.contains(&&Method::GET) {
            methods.push(&HEAD);
        }
        let rank = |m: &Method| {
            [
                Method::GET,
                Method::HEAD,
                Method::POST,
                Method::PUT,
                Method::DELETE,
            ]
            .iter()
            .position(|x| x == m)
        };
        methods.sort_by_key(|m| rank(m));
        methods
            .iter()
            .map(|m| m.as_str())
            .chain(["OPTIONS"])
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
    static ROUTES: LazyLock<Routes> = LazyLock::new(table::table);
    &ROUTES
}

/// What `OPTIONS *` answers (RFC 9110 §9.3.7: the server as a whole).
pub(crate) const ALL_METHODS: &str = "GET, HEAD, POST, PUT, DELETE, OPTIONS";
