//! Service and administration endpoints: `/health`, `/metrics`, `/v1/openapi.json`,
//! `/v1/audit`, `/v1/admin/stats` and `/v1/admin/retention`.

use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::http::json::object;
use crate::http::runner::run;
use crate::http::{Answer, Body, Call};
use crate::App;

/// `GET /health`. Anyone may ask whether the server is up, but only that: store sizes
/// and failure reasons (file names) are for admins (`/metrics`, the log), or for anyone
/// on an open (`--no-auth`, never keyed) server.
pub(crate) async fn health(c: Call) -> Result<Answer, ApiError> {
    let app = &c.app;
    let failed = app.store.failed();
    let (status, body) = match (failed, app.keys.is_open()) {
        (Some(_), false) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "failed" }),
        ),
        (None, false) => (StatusCode::OK, json!({ "status": "ok" })),
        (Some(why), true) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "failed", "reason": why,
                    "writes": "refused until the server is restarted; queries still answer" }),
        ),
        (None, true) => {
            let t = crate::Totals::of(&app.store);
            (
                StatusCode::OK,
                json!({ "status": "ok", "events": t.events, "shards": t.shards,
                        "subjects_searchable": app.vocab.indexed() }),
            )
        }
    };
    Ok((status, body.into()))
}

/// `GET /metrics`: Prometheus text.
pub(crate) async fn metrics(c: Call) -> Result<Answer, ApiError> {
    // The whole server's figures (every community's, other owners' subscriptions): a
    // scoped admin is confined to its communities in everything it does.
    c.caller.city_wide()?;
    let text = c.app.metrics.render(&c.app);
    Ok((
        StatusCode::OK,
        Body::Typed("text/plain; version=0.0.4", text),
    ))
}

/// `GET /v1/openapi.json`.
pub(crate) async fn openapi(_: Call) -> Result<Answer, ApiError> {
    Ok((StatusCode::OK, crate::openapi::document().into()))
}

/// Most audit entries one `GET /v1/audit` answers (`limit`).
const MAX_AUDIT_PAGE: usize = 10_000;

/// Most audit entries one `GET /v1/audit` looks at while filtering by key or
/// endpoint (the answer's `next_after` says where to go on).
const MAX_AUDIT_SCANNED: usize = 1_000_000;

/// `GET /v1/audit?after=&limit=&key=&endpoint=`: audit entries in order, those of one
/// key and/or whose endpoint contains a text; `next_after` (the last entry looked at)
/// and `last` (the newest entry) to page on and to start from the newest.
pub(crate) async fn audit(c: Call) -> Result<Answer, ApiError> {
    let (caller, params) = (c.caller, c.params);
    run(c.app, move |app| {
        let page = audit_page(&app.audit, &params, &caller, |key| app.keys.scope_of(key))?;
        Ok((StatusCode::OK, page.into()))
    })
    .await
}

/// One page of `log` as `GET /v1/audit` answers it to `caller`, by its parameters
/// (`after`, `limit`, `key`, `endpoint`); `scope_of` says the communities of an
/// active key (`None`: no such key; `Some(None)`: every community). `serve` reads its
/// store's log with it, a cluster's query node its own.
pub(crate) fn audit_page(
    log: &crate::audit::AuditLog,
    params: &crate::params::Params,
    caller: &crate::auth::Caller,
    scope_of: impl Fn(&str) -> Option<Option<Vec<String>>>,
) -> Result<Value, ApiError> {
    let after = params.number("after", 0u64)?;
    // 1 to 10,000 as documented: past it (or 0) a 400 naming `limit`, not a page of
    // another size than asked.
    let limit = params.limit(1000, MAX_AUDIT_PAGE)?;
    let key = params.get("key")?;
    let endpoint = params.get("endpoint")?;
    let wanted = |e: &serde_json::Value| {
        let by = e["key"].as_str().unwrap_or("");
        key.is_none_or(|k| k == by)
            && endpoint.is_none_or(|t| e["endpoint"].as_str().is_some_and(|x| x.contains(t)))
            // A scoped admin reads the entries of keys within its communities only.
            && (caller.communities.is_none()
                || scope_of(by).is_some_and(|scope| caller.covers(scope.as_deref())))
    };
    let last = log.head().seq;
    let (entries, next_after) = log
        .read_matching(after, limit, MAX_AUDIT_SCANNED, wanted)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(json!({ "entries": entries, "next_after": next_after, "last": last }))
}

/// `GET /v1/admin/stats`.
pub(crate) async fn stats(c: Call) -> Result<Answer, ApiError> {
    // Store-wide totals: not a scoped admin's to see.
    c.caller.city_wide()?;
    let v = run(c.app, |app| {
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
    })
    .await?;
    Ok((StatusCode::OK, v.into()))
}

/// `GET /v1/admin/retention` reads the policy; `PUT` with `{"days": N}` (or `null`
/// to keep everything) changes it durably and applies it at once.
pub(crate) async fn retention(mut c: Call) -> Result<Answer, ApiError> {
    let change = match c.head.method {
        Method::PUT => {
            // Retention drops every community's old shards: a city-wide power.
            c.caller.city_wide()?;
            Some(c.body().await?)
        }
        _ => None,
    };
    let v = run(c.app, move |app| set_retention(app, change.as_deref())).await?;
    Ok((StatusCode::OK, v.into()))
}

fn set_retention(app: &App, change: Option<&[u8]>) -> Result<Value, ApiError> {
    let mut dropped = Vec::new();
    if let Some(body) = change {
        let days = retention_days(body)?;
        app.store.set_retention_days(days)?;
        dropped = app.store.apply_retention()?;
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

/// The body `{"days": N}` or `{"days": null}`.
pub(crate) fn retention_days(body: &[u8]) -> Result<Option<u32>, ApiError> {
    let o = object(body)?;
    let max = sightline_storage::MAX_RETENTION_DAYS;
    let days = match o.get("days") {
        None => return Err(ApiError::missing("days")),
        Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(d) if (1..=u64::from(max)).contains(&d) => Some(d as u32),
            _ => {
                return Err(ApiError::param(
                    "days",
                    format!(
                    "must be a whole number of days from 1 to {max}, or null to keep everything"
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
    Ok(days)
}
