//! `POST /v1/subscriptions`, `GET /v1/subscriptions`, `DELETE /v1/subscriptions/{id}`.

use std::sync::Arc;

use hyper::StatusCode;
use serde_json::{json, Map, Value};

use super::{target, Registry, Status, Subscription};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::http::json::{known_fields, object, strings, text};
use crate::http::out::listed;
use crate::http::runner::run;
use crate::http::{Answer, Body, Call};
use crate::params::parse_kind;
use crate::App;

/// A subscription with its status, as listed and as created.
pub(crate) fn subscription_json(s: &Subscription, st: &Status, through: u64) -> Value {
    let mut v = serde_json::to_value(s).expect("serializes");
    v["status"] = serde_json::to_value(st).expect("serializes");
    v["status"]["lag"] = through.saturating_sub(st.cursor).into();
    v
}

/// `GET /v1/subscriptions`.
pub(crate) async fn list(c: Call) -> Result<Answer, ApiError> {
    let mut list = Registry::list(&c.app)?;
    // Upstreams are listed at `/v1/upstreams`.
    list.retain(|(s, _)| s.upstream.is_none() && c.caller.covers(s.scope.as_deref()));
    let through = c.app.store.applied_through();
    let items: Vec<Value> = list
        .iter()
        .map(|(s, st)| subscription_json(s, st, through))
        .collect();
    Ok((StatusCode::OK, listed("subscriptions", items).0))
}

/// `DELETE /v1/subscriptions/{id}`.
pub(crate) async fn delete(c: Call) -> Result<Answer, ApiError> {
    let id = c.arg();
    // One the key does not cover is, to it, no subscription at all.
    let covered = Registry::list(&c.app)?
        .iter()
        .any(|(s, _)| s.id == id && s.upstream.is_none() && c.caller.covers(s.scope.as_deref()));
    if !covered {
        return Err(ApiError::NoSuchSubscription(id));
    }
    match Registry::delete(&c.app, &id)? {
        true => Ok((StatusCode::OK, json!({ "deleted": id }).into())),
        false => Err(ApiError::NoSuchSubscription(id)),
    }
}

/// `POST /v1/subscriptions`: `{"url", "kinds", "communities", "devices", "subjects",
/// "format", "batch", "from", "alerts"}`; starts delivering at once.
pub(crate) async fn create(mut c: Call) -> Result<Answer, ApiError> {
    let body = c.body().await?;
    let (app, caller) = (c.app.clone(), c.caller);
    let v = run(c.app, move |_| create_now(&app, &body, &caller)).await?;
    Ok((
        StatusCode::CREATED,
        Body::from(v).located("/v1/subscriptions"),
    ))
}

fn create_now(app: &Arc<App>, body: &[u8], caller: &Caller) -> Result<Value, ApiError> {
    let o = object(body)?;
    let s = subscription_of(&o, caller)?;
    let from = from_of(&o)?;
    Registry::create(app, s.clone(), from)?;
    let status = Status {
        cursor: from.unwrap_or_else(|| match s.alerts {
            true => app.watch.last(),
            false => app.store.applied_through(),
        }),
        ..Default::default()
    };
    Ok(subscription_json(&s, &status, app.store.applied_through()))
}

/// A new subscription of `caller` from a `POST /v1/subscriptions` body (all but
/// `from`, whose form is each server's), each field checked; its id made here.
pub(crate) fn subscription_of(
    o: &Map<String, Value>,
    caller: &Caller,
) -> Result<Subscription, ApiError> {
    known_fields(
        o,
        &[
            "url",
            "kinds",
            "communities",
            "devices",
            "subjects",
            "format",
            "batch",
            "from",
            "alerts",
        ],
        "",
    )?;
    let url = text(o, "url", true)?;
    target(&url)?;
    let (kinds, communities, devices, subjects) = filter_of(o, caller)?;
    let (format, batch, alerts) = delivery(o)?;
    Ok(Subscription {
        id: format!("{:016x}", rand::random::<u64>()),
        url,
        kinds,
        communities,
        devices,
        device_prefixes: None,
        subjects,
        format,
        batch,
        owner: caller.key_id.clone(),
        scope: caller.communities.clone(),
        created_ms: crate::now_ms(),
        alerts,
        watchlist: None,
        viid: None,
        upstream: None,
    })
}

/// A subscription's or upstream's filter: `kinds`, `communities` (within the
/// caller's scope), `devices` and `subjects`, each checked.
pub(super) type Filter = (
    Option<Vec<String>>,
    Option<Vec<String>>,
    Option<Vec<String>>,
    Option<Vec<String>>,
);

pub(super) fn filter_of(o: &Map<String, Value>, caller: &Caller) -> Result<Filter, ApiError> {
    let list = |field: &str| strings(o.get(field), field, "must be a list of strings");
    let kinds = list("kinds")?;
    for k in kinds.iter().flatten() {
        parse_kind("kinds", k)?;
    }
    let communities = list("communities")?;
    // Another community's: 403 naming the field, as every query answers it.
    if let Some(cs) = &communities {
        caller.check_communities("communities", cs)?;
    }
    Ok((kinds, communities, list("devices")?, list("subjects")?))
}

/// How to deliver: `format`, `batch` and `alerts`, each checked.
fn delivery(o: &Map<String, Value>) -> Result<(String, usize, bool), ApiError> {
    let format = match o
        .get("format")
        .and_then(Value::as_str)
        .unwrap_or("sightline")
    {
        f @ ("sightline" | "gat1400") => f.to_string(),
        _ => return Err(ApiError::param("format", "sightline or gat1400")),
    };
    let batch = batch_of(o)?;
    let alerts = match o.get("alerts") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::param("alerts", "true or false")),
    };
    Ok((format, batch, alerts))
}

/// Most events per delivery (`batch`, 1 to 10000; 500).
pub(super) fn batch_of(o: &Map<String, Value>) -> Result<usize, ApiError> {
    match o.get("batch") {
        None => Ok(500),
        Some(v) => match v.as_u64() {
            Some(n) if (1..=10_000).contains(&n) => Ok(n as usize),
            _ => Err(ApiError::param("batch", "1 to 10000 events")),
        },
    }
}

/// Where delivery starts (`from`: an event id; absent: now).
pub(super) fn from_of(o: &Map<String, Value>) -> Result<Option<u64>, ApiError> {
    match o.get("from") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => Ok(Some(v.as_u64().ok_or_else(|| {
            ApiError::param("from", "an event id (0: from the start)")
        })?)),
    }
}
