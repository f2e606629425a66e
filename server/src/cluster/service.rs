//! What a query node answers beside the queries, so the investigator console works
//! against a cluster as against `serve`: `GET /v1/whoami`, the catalog (`super::catalog`),
//! the keys (`super::key_admin`), the watchlists (`super::watchlists`), the
//! subscriptions (`super::subscriptions`), the upstreams and remote subscriptions
//! (`super::upstreams`) and `GET
//! /v1/audit` (this node's audit log), each with `serve`'s parameters, roles
//! (read from `serve`'s route table), errors and JSON; and, for every other endpoint of
//! `serve`'s API, 501 `not_in_cluster` naming it, so a client (the console) can tell
//! "not here yet" from a failure.

use std::sync::Arc;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request};

use super::query::{QueryNode, MAX_BODY_BYTES};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::http::conditional::Preconditions;
use crate::http::runner::AuditLine;
use crate::http::Body;
use crate::params::Params;
use crate::routes::{Access, Check, Route};

/// The routes of `serve`'s table a query node answers here (by template).
const ANSWERED: &[&str] = &[
    "/v1/whoami",
    "/v1/audit",
    "/v1/communities",
    "/v1/communities/{code}",
    "/v1/devices",
    "/v1/devices/{code}",
    "/v1/keys",
    "/v1/keys/{id}",
    "/v1/watchlists",
    "/v1/watchlists/{id}",
    "/v1/alerts",
    "/v1/subscriptions",
    "/v1/subscriptions/{id}",
    "/v1/upstreams",
    "/v1/upstreams/{id}",
    "/v1/remote-subscriptions",
    "/v1/remote-subscriptions/{id}",
    "/v1/feed",
    "/v1/admin/stats",
    "/v1/admin/retention",
];

/// Whether `method` on `path` creates (answered 201 Created, as on `serve`).
pub(super) fn creates(method: &Method, path: &str) -> bool {
    method == Method::POST && crate::routes::CREATED_BY_POST.contains(&path)
}

/// `serve`'s route for `method` on `path`, with its path argument, when this module
/// answers it.
pub(super) fn route_of(method: &Method, path: &str) -> Option<(&'static Route, Option<String>)> {
    crate::routes::routes()
        .lookup(method, path)
        .ok()
        .filter(|(r, _)| ANSWERED.contains(&r.path))
}

/// The error for a request no handler of the query node takes: 501 `not_in_cluster`
/// for an endpoint of `serve`'s API (naming it), 404 for anything else.
pub(super) fn not_answered(method: &Method, path: &str) -> ApiError {
    match crate::routes::routes().lookup(method, path) {
        Ok(_) => not_in_cluster(method, path),
        // RFC 9110 §15.5.6: a path `serve` takes with other methods.
        Err(true) => match crate::routes::routes().methods_of(path) {
            Some(allowed) => ApiError::MethodNotAllowed {
                path: path.to_string(),
                allowed,
                method: method.to_string(),
            },
            None => {
                ApiError::NoSuchEndpoint(format!("{method} {path} is not answered by a query node"))
            }
        },
        Err(false) => {
            ApiError::NoSuchEndpoint(format!("{method} {path} is not answered by a query node"))
        }
    }
}

fn not_in_cluster(method: &Method, path: &str) -> ApiError {
    let why = match path {
        "/v1/events" => "events are sent to a cluster's ingest nodes (`sightline cluster ingest`)",
        _ => "a cluster does not have it yet (ARCHITECTURE.md, \"The console on a query node\", lists what query nodes answer); `sightline serve` does",
    };
    ApiError::NotInCluster(format!(
        "{method} {path} is not answered by a cluster's query node: {why}"
    ))
}

/// Answers `req` by `route` (from [`route_of`]) for `caller`: the role and the
/// parameters checked as `serve`'s table says, then the handler. The answer and how
/// many rows it holds, for the audit entry `line` (a change writes its own two
/// entries, as `serve` does: begun, before it is made, and its outcome). A `PUT`
/// sets `created` (answered 201 rather than 200) when it created what it names.
pub(super) async fn answer(
    node: &Arc<QueryNode>,
    caller: &Caller,
    route: &'static Route,
    arg: Option<String>,
    req: Request<Incoming>,
    line: &AuditLine,
    created: &mut bool,
) -> Result<(Body, Option<usize>), ApiError> {
    if let Access::Key(role) = route.access {
        if let Err(e) = caller.needs(role) {
            // Audited as `serve` audits a refusal: the method and the path.
            let what = format!("{} {}", req.method(), req.uri().path());
            let refusal = AuditLine::new(caller, &what, line.params.clone());
            if let Err(err) = refusal.record_in(&node.audit, None, e.status().as_u16()) {
                tracing::error!(error = %err, "a refusal is not audited");
            }
            return Err(e);
        }
    }
    let params = Params::parse(req.uri().query());
    if route.check != Check::Ignore {
        params.only_these(route.doc.as_ref().map_or(&[], |d| d.params))?;
    }
    let arg = arg.unwrap_or_default();
    let catalog = &node.catalog;
    let one = |v: serde_json::Value| (Body::from(v), Some(1));
    // A GET route answers HEAD too, as on `serve`.
    let method = match req.method() {
        &Method::HEAD => Method::GET,
        m => m.clone(),
    };
    match (method, route.path) {
        (Method::GET, "/v1/whoami") => {
            let open = node.keys.is_open();
            let name = match open {
                true => Some(Caller::ANONYMOUS.to_string()),
                false => node.keys.name_of(&caller.key_id),
            };
            Ok(one(crate::keys::whoami_json(caller, name, open)))
        }
        (Method::GET, "/v1/audit") => {
            let (node, caller) = (node.clone(), caller.clone());
            let page = tokio::task::spawn_blocking(move || {
                crate::admin::audit_page(&node.audit, &params, &caller, |key| {
                    node.keys.scope_of(key)
                })
            })
            .await
            .map_err(|e| ApiError::internal(format!("reading the audit log: {e}")))??;
            let n = page["entries"].as_array().map_or(0, Vec::len);
            Ok((page.into(), Some(n)))
        }
        (Method::GET, "/v1/communities") => {
            let (v, n) = catalog.communities(caller).await?;
            Ok((v.into(), Some(n)))
        }
        (Method::GET, "/v1/communities/{code}") => Ok(one(catalog.community(caller, arg).await?)),
        (Method::GET, "/v1/devices") => {
            let (v, n) = catalog.devices(caller, &params).await?;
            Ok((v.into(), Some(n)))
        }
        (Method::GET, "/v1/devices/{code}") => Ok(one(catalog.device(caller, arg).await?)),
        (Method::PUT, "/v1/communities/{code}") => {
            // The scope before the body, as `serve` checks it.
            let scope = crate::catalog::may_change(caller, &arg);
            let pre = Preconditions::of(req.headers());
            let (body, n, made) = change_as(node, caller, line, req, scope, |body| async move {
                catalog.put_community(arg, &body, &pre).await
            })
            .await?;
            *created = made;
            Ok((body, n))
        }
        (Method::PUT, "/v1/devices/{code}") => {
            let pre = Preconditions::of(req.headers());
            let (body, n, made) = change_as(node, caller, line, req, Ok(()), |body| async move {
                catalog.put_device(caller, arg, &body, &pre).await
            })
            .await?;
            *created = made;
            Ok((body, n))
        }
        (Method::GET, "/v1/keys") => {
            let (v, n) = catalog.keys(caller).await?;
            Ok((v.into(), Some(n)))
        }
        (Method::POST, "/v1/keys") => {
            // A city-wide power, refused before the body as `serve` refuses it.
            let scope = caller.city_wide();
            change(node, caller, line, req, scope, |body| async move {
                catalog.create_key(caller, &node.keys, &body).await
            })
            .await
            // With its `Location` and `no-store`, as on `serve`.
            .map(|(body, n)| (crate::keys::created_key(body), n))
        }
        (Method::DELETE, "/v1/keys/{id}") => {
            let scope = caller.city_wide();
            change(node, caller, line, req, scope, |_| async move {
                catalog.revoke_key(caller, &node.keys, arg).await
            })
            .await
        }
        (Method::GET, "/v1/feed") => super::feed::get(node, caller, req.headers(), &params, line)
            .await
            .map(|(body, rows)| (crate::http::negotiate::vary_accept(body), rows)),
        // Store-wide totals, as on `serve`: not a scoped admin's to see.
        (Method::GET, "/v1/admin/stats") => {
            caller.city_wide()?;
            super::feed::stats(node).await
        }
        (Method::GET, "/v1/admin/retention") => Ok(one(super::feed::retention(node, None).await?)),
        (Method::PUT, "/v1/admin/retention") => {
            // Retention drops every community's old shards: a city-wide power, refused
            // before the body as `serve` refuses it.
            let scope = caller.city_wide();
            change(node, caller, line, req, scope, |body| async move {
                super::feed::retention(node, Some(body)).await
            })
            .await
        }
        (Method::GET, "/v1/alerts") => {
            let (v, n) = catalog.alerts(caller, &params, node.max_rows()).await?;
            Ok((v.into(), Some(n)))
        }
        (Method::GET, "/v1/watchlists") => {
            let (v, n) = catalog.list_watchlists(caller).await?;
            Ok((v, Some(n)))
        }
        (Method::POST, "/v1/watchlists") => {
            // Its scope is in the body.
            change(node, caller, line, req, Ok(()), |body| async move {
                catalog.create_watchlist(caller, &body).await
            })
            .await
        }
        (Method::DELETE, "/v1/watchlists/{id}") => {
            change(node, caller, line, req, Ok(()), |_| async move {
                catalog.delete_watchlist(caller, arg).await
            })
            .await
        }
        (Method::GET, "/v1/subscriptions") => {
            let (v, n) = catalog
                .list_subscriptions(caller, node.partitions())
                .await?;
            Ok((v, Some(n)))
        }
        (Method::POST, "/v1/subscriptions") => {
            // Its scope is in the body (communities within the key's).
            let partitions = node.partitions();
            let now = super::subscriptions::heads(node.federation(), partitions, node.timeout());
            let q = &node.config.query;
            let max = (q.max_subscriptions, q.max_subscriptions_per_owner);
            change(node, caller, line, req, Ok(()), |body| async move {
                catalog
                    .create_subscription(caller, &body, partitions, max, now)
                    .await
            })
            .await
        }
        (Method::DELETE, "/v1/subscriptions/{id}") => {
            change(node, caller, line, req, Ok(()), |_| async move {
                catalog.delete_subscription(caller, arg).await
            })
            .await
        }
        (Method::GET, "/v1/upstreams") => {
            let (v, n) = catalog.list_upstreams(caller, node.partitions()).await?;
            Ok((v, Some(n)))
        }
        (Method::GET, "/v1/upstreams/{id}") => Ok(one(catalog
            .upstream(caller, arg, node.partitions())
            .await?)),
        (Method::POST, "/v1/upstreams") => {
            // Its scope is in the body (communities within the key's), as on `serve`.
            let partitions = node.partitions();
            let now = super::subscriptions::heads(node.federation(), partitions, node.timeout());
            let q = &node.config.query;
            let max = (q.max_subscriptions, q.max_subscriptions_per_owner);
            let server_id = node.config.ingest.viid_server_id.as_str();
            change(node, caller, line, req, Ok(()), |body| async move {
                catalog
                    .create_upstream(caller, &body, (server_id, partitions), max, now)
                    .await
            })
            .await
        }
        (Method::DELETE, "/v1/upstreams/{id}") => {
            change(node, caller, line, req, Ok(()), |_| async move {
                catalog.delete_upstream(caller, arg).await
            })
            .await
        }
        (Method::GET, "/v1/remote-subscriptions") => {
            caller.city_wide()?;
            let (v, n) = catalog.list_remotes().await?;
            Ok((v, Some(n)))
        }
        (Method::POST, "/v1/remote-subscriptions") => {
            // A city-wide power, refused before the body as `serve` refuses it.
            let scope = caller.city_wide();
            let server_id = node.config.ingest.viid_server_id.as_str();
            change(node, caller, line, req, scope, |body| async move {
                catalog.create_remote(caller, &body, server_id).await
            })
            .await
        }
        (Method::DELETE, "/v1/remote-subscriptions/{id}") => {
            let scope = caller.city_wide();
            change(node, caller, line, req, scope, |_| async move {
                catalog.delete_remote(arg).await
            })
            .await
        }
        (method, _) => Err(not_answered(&method, line.endpoint.as_str())),
    }
}

/// A change, audited as `serve` audits one: an entry (status 0) before anything is
/// read or made — refused 503 `audit_unavailable` when it cannot be written — then
/// `scope` (the caller's right to change what it names: refused before a byte of the
/// body is read), `make` with the body, then an entry with its outcome (the answer's identifying
/// fields; never the body). Its status is 201 for the routes that create ([`creates`]),
/// 200 for the others.
async fn change<F, Fut>(
    node: &Arc<QueryNode>,
    caller: &Caller,
    line: &AuditLine,
    req: Request<Incoming>,
    scope: Result<(), ApiError>,
    make: F,
) -> Result<(Body, Option<usize>), ApiError>
where
    F: FnOnce(hyper::body::Bytes) -> Fut,
    Fut: std::future::Future<Output = Result<serde_json::Value, ApiError>>,
{
    let created = creates(req.method(), req.uri().path());
    let made = |body| {
        let made = make(body);
        async move { made.await.map(|v| (v, created)) }
    };
    let (body, n, _) = change_as(node, caller, line, req, scope, made).await?;
    Ok((body, n))
}

/// [`change`] whose `make` says whether it created (a `PUT`'s 201, RFC 9110
/// §9.3.4), audited with that status; the answer, its rows, and that.
async fn change_as<F, Fut>(
    node: &Arc<QueryNode>,
    caller: &Caller,
    line: &AuditLine,
    req: Request<Incoming>,
    scope: Result<(), ApiError>,
    make: F,
) -> Result<(Body, Option<usize>, bool), ApiError>
where
    F: FnOnce(hyper::body::Bytes) -> Fut,
    Fut: std::future::Future<Output = Result<(serde_json::Value, bool), ApiError>>,
{
    let what = format!("{} {}", req.method(), req.uri().path());
    let begun = AuditLine::new(caller, &what, line.params.clone());
    begun.record_in(&node.audit, None, 0)?;
    let made = async {
        scope?;
        // As on `serve`: an `If-Match` naming tags is false here (412, RFC 9110
        // §13.1.1), before the body.
        Preconditions::of(req.headers()).tags_match()?;
        // As on `serve`: a body of a JSON media type.
        crate::http::call::taken_media_type(req.headers())?;
        let body = Limited::new(req.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|_| ApiError::BodyTooLarge(MAX_BODY_BYTES))?
            .to_bytes();
        make(body).await
    }
    .await;
    let (status, summary) = match &made {
        Ok((v, created)) => (
            if *created { 201 } else { 200 },
            crate::routes::change_summary(&Body::Value(v.clone())),
        ),
        Err(e) => (e.status().as_u16(), String::new()),
    };
    let outcome = AuditLine::new(caller, &what, summary);
    if let Err(e) = outcome.record_in(&node.audit, None, status) {
        tracing::error!(error = %e, endpoint = what, "a change's outcome is not audited");
    }
    made.map(|(v, created)| (Body::from(v), Some(1), created))
}
