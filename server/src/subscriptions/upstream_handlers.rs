//! `POST /v1/upstreams`, `GET /v1/upstreams`, `GET /v1/upstreams/{id}`,
//! `DELETE /v1/upstreams/{id}` (admin): upstream 视图库s this server registers with
//! and uploads to.

use std::sync::Arc;

use hyper::StatusCode;
use serde_json::{Map, Value};

use super::handlers::{batch_of, filter_of, from_of};
use super::upstream::{SessionState, Upstream, DEFAULT_KEEPALIVE_S};
use super::{target, Registry, Shown, Status, Subscription};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::http::json::{known_fields, object, text};
use crate::http::out::listed;
use crate::http::runner::run;
use crate::http::{Answer, Body, Call};
use crate::App;

/// Most seconds between keepalives (wvp-GB28181-pro forgets a platform after 180 s).
const MAX_KEEPALIVE_S: u64 = 3600;

/// An upstream as listed: its settings (never its password) and its status —
/// delivery (cursor, lag, delivered, failures, last error) and registration.
pub(crate) fn upstream_json(s: &Subscription, shown: &Shown, through: u64) -> Value {
    let (st, session) = shown;
    let up = s.upstream.as_ref().expect("an upstream");
    let mut status = serde_json::to_value(st).expect("serializes");
    status["lag"] = through.saturating_sub(st.cursor).into();
    let session = serde_json::to_value(session.clone().unwrap_or_default()).expect("serializes");
    for (k, v) in session.as_object().expect("an object") {
        status[k] = v.clone();
    }
    serde_json::json!({
        "id": s.id, "url": s.url, "server_id": up.server_id, "device_id": up.device_id,
        "username": up.username, "kinds": s.kinds, "communities": s.communities,
        "devices": s.devices, "image_data": if up.image_data { "base64" } else { "reference" },
        "keepalive_s": up.keepalive_s, "batch": s.batch, "owner": s.owner, "scope": s.scope,
        "created_ms": s.created_ms, "status": status,
    })
}

/// The upstreams the caller's key covers.
fn covered(c: &Call) -> Result<Vec<(Subscription, Shown)>, ApiError> {
    let mut list = Registry::list_shown(&c.app)?;
    list.retain(|(s, _)| s.upstream.is_some() && c.caller.covers(s.scope.as_deref()));
    Ok(list)
}

/// `GET /v1/upstreams`.
pub(crate) async fn list(c: Call) -> Result<Answer, ApiError> {
    let through = c.app.store.applied_through();
    let items: Vec<Value> = covered(&c)?
        .iter()
        .map(|(s, shown)| upstream_json(s, shown, through))
        .collect();
    Ok((StatusCode::OK, listed("upstreams", items).0))
}

/// `GET /v1/upstreams/{id}`.
pub(crate) async fn get(c: Call) -> Result<Answer, ApiError> {
    let id = c.arg();
    let through = c.app.store.applied_through();
    match covered(&c)?.iter().find(|(s, _)| s.id == id) {
        Some((s, shown)) => Ok((StatusCode::OK, upstream_json(s, shown, through).into())),
        None => Err(ApiError::NoSuchUpstream(id)),
    }
}

/// `DELETE /v1/upstreams/{id}`: stops registering and uploading, forgets the cursor,
/// ends the subscriptions its upper platform made here (their `SubscribeID`s in
/// `ended_subscriptions`), and unregisters there (`POST /VIID/System/UnRegister`, one
/// attempt: its outcome in the answer), so the upper platform no longer takes us for
/// online.
pub(crate) async fn delete(c: Call) -> Result<Answer, ApiError> {
    let id = c.arg();
    if !covered(&c)?.iter().any(|(s, _)| s.id == id) {
        return Err(ApiError::NoSuchUpstream(id));
    }
    let session = c.app.subscriptions.session(&id);
    let configured = Registry::get(&c.app, &id)?.and_then(|s| s.upstream?.server_id);
    let server_id = configured.or_else(|| session.as_ref()?.server_id());
    Registry::delete(&c.app, &id)?;
    // What its upper platform subscribed to here ends with it.
    // By its id (configured or learned), and — its id not learned yet in this
    // process — by the id we registered there with, when no other upstream uses it.
    let mut ended = crate::gat1400::subscribes::end_upper(&c.app, &id, server_id.as_deref())?;
    ended.extend(crate::gat1400::subscribes::end_orphaned_uppers(&c.app)?);
    let unregistered = match session {
        Some(s) => s
            .unregister(&c.app.outbound)
            .await
            .map_err(|e| e.to_string()),
        None => Err("it was not running".to_string()),
    };
    Ok((
        StatusCode::OK,
        serde_json::json!({ "deleted": id, "unregistered": unregistered.is_ok(),
                            "unregister_error": unregistered.err(),
                            "ended_subscriptions": ended })
        .into(),
    ))
}

/// `POST /v1/upstreams`: `{"url", "password", "server_id", "device_id", "username",
/// "kinds", "communities", "devices", "image_data", "keepalive_s", "batch", "from"}`;
/// registers and starts uploading at once.
pub(crate) async fn create(mut c: Call) -> Result<Answer, ApiError> {
    let body = c.body().await?;
    let (app, caller) = (c.app.clone(), c.caller);
    let v = run(c.app, move |_| create_now(&app, &body, &caller)).await?;
    Ok((StatusCode::CREATED, Body::from(v).located("/v1/upstreams")))
}

/// A 20-digit GA/T 1400 id field, or `default` when absent.
fn code(o: &Map<String, Value>, field: &str, default: Option<&str>) -> Result<String, ApiError> {
    let v = text(o, field, default.is_none())?;
    let v = if v.is_empty() {
        default.unwrap_or_default().to_string()
    } else {
        v
    };
    if v.len() != 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::param(field, "a 20-digit GA/T 1400 id"));
    }
    Ok(v)
}

/// The 409 for an upstream whose `server_id` upstream `other` has already (`serve`'s
/// and a cluster's query nodes'): one upstream per 视图库 id, its upper platform let
/// in by that id with that upstream's scope. A scoped admin is not told the id of an
/// upstream it may not see.
pub(crate) fn server_id_taken(id: &str, other: &str, caller: &Caller) -> ApiError {
    let message = match caller.communities {
        None => format!("server_id {id} is already upstream {other}'s: one upstream per 视图库 id (delete {other} first)"),
        Some(_) => format!("server_id {id} is already another upstream's: one upstream per 视图库 id"),
    };
    ApiError::Conflict {
        field: "server_id".into(),
        message,
    }
}

fn create_now(app: &Arc<App>, body: &[u8], caller: &Caller) -> Result<Value, ApiError> {
    let o = object(body)?;
    let s = upstream_of(&o, &app.config.viid_server_id, caller)?;
    // One upstream per 视图库 id: its upper platform is let in here by that id, with
    // that upstream's scope; a second would make the scope either's. Checked and
    // created under one lock, so two requests at once cannot both pass the check.
    static CREATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _creating = CREATING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(id) = s.upstream.as_ref().and_then(|u| u.server_id.as_ref()) {
        let configured = Registry::list(app)?.into_iter().find_map(|(s, _)| {
            let up = s.upstream?;
            (up.server_id.as_ref() == Some(id)).then_some(s.id)
        });
        let learned = || {
            app.subscriptions
                .upstream_ids()
                .into_iter()
                .find_map(|(sub, sid)| (&sid == id).then_some(sub))
        };
        if let Some(other) = configured.or_else(learned) {
            return Err(server_id_taken(id, &other, caller));
        }
    }
    let from = from_of(&o)?;
    Registry::create(app, s.clone(), from)?;
    let cursor = from.unwrap_or_else(|| app.store.applied_through());
    let shown = app.subscriptions.shown(&s.id).unwrap_or((
        Status {
            cursor,
            ..Default::default()
        },
        Some(SessionState::default()),
    ));
    Ok(upstream_json(&s, &shown, app.store.applied_through()))
}

/// An upstream as `POST /v1/upstreams` asks for it (every field but `from`, whose
/// form is the server's), made by `caller`; `viid_server_id` is the default
/// `device_id`.
pub(crate) fn upstream_of(
    o: &Map<String, Value>,
    viid_server_id: &str,
    caller: &Caller,
) -> Result<Subscription, ApiError> {
    known_fields(
        o,
        &[
            "url",
            "password",
            "server_id",
            "device_id",
            "username",
            "kinds",
            "communities",
            "devices",
            "subjects",
            "image_data",
            "keepalive_s",
            "batch",
            "from",
        ],
        "",
    )?;
    let url = text(o, "url", true)?;
    target(&url)?;
    let password = text(o, "password", true)?;
    let server_id = match o.get("server_id") {
        None | Some(Value::Null) => None,
        Some(_) => Some(code(o, "server_id", None)?),
    };
    let device_id = code(o, "device_id", Some(viid_server_id))?;
    let username = match text(o, "username", false)? {
        u if u.is_empty() => device_id.clone(),
        u => u,
    };
    // Pictures as base64 `Data` unless asked otherwise: an upper's receiver keeps
    // `Data` (wvp-GB28181-pro); a `StoragePath` here needs a Sightline API key.
    let image_data = match o.get("image_data") {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) if s == "reference" => false,
        Some(Value::String(s)) if s == "base64" => true,
        Some(_) => return Err(ApiError::param("image_data", "reference or base64")),
    };
    let keepalive_s = match o.get("keepalive_s") {
        None | Some(Value::Null) => DEFAULT_KEEPALIVE_S,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_KEEPALIVE_S).contains(&n) => n,
            _ => return Err(ApiError::param("keepalive_s", "1 to 3600 seconds")),
        },
    };
    let (kinds, communities, devices, subjects) = filter_of(o, caller)?;
    if subjects.is_some() {
        return Err(ApiError::param(
            "subjects",
            "an upstream takes kinds, communities and devices",
        ));
    }
    let batch = batch_of(o)?;
    Ok(Subscription {
        id: format!("up-{:016x}", rand::random::<u64>()),
        url,
        kinds,
        communities,
        devices,
        device_prefixes: None,
        subjects: None,
        format: "gat1400".into(),
        batch,
        owner: caller.key_id.clone(),
        scope: caller.communities.clone(),
        created_ms: crate::now_ms(),
        alerts: false,
        watchlist: None,
        viid: None,
        upstream: Some(Upstream {
            server_id,
            device_id,
            username,
            password,
            image_data,
            keepalive_s,
        }),
    })
}
