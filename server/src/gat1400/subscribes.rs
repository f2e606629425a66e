//! Subscriptions from a registered platform (级联, GA/T 1400.4 §"订阅"): `POST`/`PUT
//! /VIID/Subscribes` (`SubscribeListObject`), `DELETE /VIID/Subscribes?IDList=…`,
//! `PUT`/`DELETE /VIID/Subscribes/{id}` (cancel) and `GET /VIID/Subscribes`.
//!
//! Each `SubscribeObject` becomes a [`Subscription`] — the same durable cursor,
//! at-least-once delivery, backoff and status as `/v1/subscriptions` — with id
//! `viid-{SubscribeID}`, owned by the platform and confined to the communities its
//! record covers (an upper platform this server is registered with: the communities
//! its upstream reads). Its notifications carry the subscriber's own `SubscribeID` and
//! `Title`, and the objects as they were uploaded (pictures as base64 `Data` unless it
//! asked for references, `ImageData` 0).

use super::text;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sightline_storage::Kind;

use crate::error::ApiError;
use crate::subscriptions::{Registry, Subscription};
use crate::App;

use super::conditions::{BadCondition, RecordQuery};

/// What a subscription made through `/VIID/Subscribes` keeps beside its filter.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ViidSubscribe {
    /// The subscriber's `SubscribeID`: its notifications carry it back.
    pub subscribe_id: String,
    pub title: String,
    /// Objects captured from this time on (`BeginTime`), up to `EndTime`.
    pub begin_ms: Option<i64>,
    pub end_ms: Option<i64>,
    /// `ResultImageDeclare` "-1": the objects go without their `SubImageList`.
    pub no_images: bool,
    /// `ImageData` 1 (a Sightline extension): pictures go as base64 `Data`, as
    /// wvp-GB28181-pro sends them, instead of by `StoragePath`. Kept from before
    /// `Data` became the default.
    #[serde(default)]
    pub with_data: bool,
    /// `ImageData` 0 (a Sightline extension): pictures go by `StoragePath` at this
    /// server (`/v1/images/{id}`, which needs an API key) instead of as base64 `Data`,
    /// the default.
    #[serde(default)]
    pub by_reference: bool,
    /// The `User-Identify` its notifications carry when it is not this server's
    /// `--viid-server-id`: an upper platform's subscription goes as the `device_id` this
    /// server registered there with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identify: Option<String>,
    /// For an upper platform's subscription, the id of the upstream it was let in by:
    /// the subscription ends when that upstream is deleted, its 视图库 id learned or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via_upstream: Option<String>,
    /// The tollgates (卡口, type 121) its `ResourceURI` names: an object passes when its
    /// `TollgateID` (as uploaded) is one of them, whichever camera (`DeviceID`) took
    /// it; each is in `devices` too (a tollgate uploading as itself).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tollgates: Vec<String>,
    /// The `SubscribeObject` as received (`GET /VIID/Subscribes` answers it).
    pub object: Value,
}

/// Why a `SubscribeObject` was refused (its status says so).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SubscribeError {
    #[error("SubscribeID is missing")]
    NoId,
    #[error("SubscribeID {0:?} is another platform's subscription")]
    NotYours(String),
    #[error("不存在订阅ID: no subscription {0:?} to cancel")]
    NoSuch(String),
    #[error("SubscribeDetail {0:?} names no GA/T 1400 resource class (1 to 16, or 999 raw data; 11 persons, 12 faces, 13 motor vehicles, 14 non-motor vehicles are delivered)")]
    Detail(String),
    #[error("ReceiveAddr is missing: where the notifications go")]
    NoReceiveAddr,
    #[error("ReceiveAddr {0:?}: {1}")]
    ReceiveAddr(String, String),
    #[error("ReceiveAddr {0:?} refused: {1}")]
    ReceiveRefused(String, String),
    #[error("{0} {1:?} is not a time like 20210901080000")]
    Time(&'static str, String),
    /// A subscription that would end before it begins could never deliver anything.
    #[error("EndTime {1:?} is before BeginTime {0:?}: the subscription would never deliver")]
    Backwards(String, String),
    #[error("{0}")]
    Store(#[from] ApiError),
}

impl SubscribeError {
    /// Its `StatusCode`: another's subscription, or a `ReceiveAddr` where this server
    /// may not send (`http::egress`), an invalid operation (4), an unknown
    /// one to cancel "other" (1, as wvp-GB28181-pro answers it), the store failing a
    /// device error (3), anything else wrong in the object 8.
    pub(crate) fn code(&self) -> i64 {
        match self {
            SubscribeError::NotYours(_) => super::INVALID_OPERATION,
            SubscribeError::ReceiveRefused(..) => super::INVALID_OPERATION,
            SubscribeError::NoSuch(_) => super::OTHER_ERROR,
            SubscribeError::Store(_) => super::DEVICE_ERROR,
            _ => super::INVALID_JSON_CONTENT,
        }
    }
}

/// The upper platform `caller` is (`Registry::upper`) when it has no record of its own
/// here: the communities its upstream reads (`None`: every one). `None` for a caller
/// with a record, or not an upper.
pub(crate) fn upper_scope(
    app: &App,
    caller: &str,
) -> Result<Option<Option<Vec<String>>>, ApiError> {
    if app.store.catalog().device(caller)?.is_some() {
        return Ok(None);
    }
    Ok(app.subscriptions.upper(caller).map(|u| u.scope))
}

/// The subscription behind a `SubscribeID`.
pub(crate) fn subscription_id(subscribe_id: &str) -> String {
    format!("viid-{subscribe_id}")
}

/// The kinds a `SubscribeDetail` asks for (its resource-class codes, comma-separated):
/// 11 persons, 12 faces, 13 motor vehicles, 14 non-motor vehicles. Codes for
/// catalogues and cases (1–10, 15, 16) deliver nothing here and are let be.
fn kinds_of(detail: &str) -> Vec<Kind> {
    let mut kinds: Vec<Kind> = detail
        .split([',', ';', '，', '；', ' '])
        .filter_map(|c| match c.trim().trim_start_matches('0') {
            "11" => Some(Kind::Person),
            "12" => Some(Kind::Face),
            "13" => Some(Kind::Vehicle),
            "14" => Some(Kind::Nonmotor),
            _ => None,
        })
        .collect();
    kinds.sort_by_key(|k| k.as_str());
    kinds.dedup();
    kinds
}

/// The `SubscribeDetail` wvp-GB28181-pro (dev/1400) names raw data with
/// (`Constants.SubscribeDetail.RAW`): no GA/T 1400 resource class, taken as the
/// catalogue classes are, and delivering nothing here.
const RAW_DETAIL: u32 = 999;

/// Whether a `SubscribeDetail` names at least one GA/T 1400 resource class (1–16), or
/// wvp-GB28181-pro's raw data ([`RAW_DETAIL`]): catalogue-only subscriptions (3
/// devices, 7 tollgates, 9 lanes, as wvp-GB28181-pro places them) and raw ones are
/// taken, and deliver nothing here.
fn names_a_class(detail: &str) -> bool {
    detail
        .split([',', ';', '，', '；', ' '])
        .filter_map(|c| c.trim().parse::<u32>().ok())
        .any(|c| (1..=16).contains(&c) || c == RAW_DETAIL)
}

/// `o` over the `stored` object: a change (`PUT`, or a `POST` of a known id) names
/// only what changes, the rest kept as it was.
fn merged(stored: &Value, o: &Value) -> Value {
    let mut out = stored.clone();
    if let (Some(m), Some(given)) = (out.as_object_mut(), o.as_object()) {
        for (k, v) in given {
            m.insert(k.clone(), v.clone());
        }
        m.remove("SubscribeStatus");
    }
    out
}

/// Creates, replaces or (`OperateType` 1) cancels one subscription of `platform`; its
/// `SubscribeID`.
pub(crate) fn apply(app: &Arc<App>, platform: &str, o: &Value) -> Result<String, SubscribeError> {
    let _one_at_a_time = changing();
    let id = text(o, "SubscribeID").ok_or(SubscribeError::NoId)?;
    let sub_id = subscription_id(&id);
    let existing = Registry::get(app, &sub_id)?;
    if let Some(existing) = &existing {
        if existing.owner != platform {
            return Err(SubscribeError::NotYours(id));
        }
    }
    let stored = existing
        .as_ref()
        .and_then(|e| e.viid.as_ref())
        .map(|v| &v.object);
    let subscriber = || -> Result<Subscriber, ApiError> {
        // An upper platform this server is registered with (no record here): confined
        // to what its upstream reads, answered as the id registered there.
        let upper = match app.store.catalog().device(platform)? {
            Some(_) => None,
            None => app.subscriptions.upper(platform),
        };
        Ok(match upper {
            Some(u) => Subscriber {
                scope: u.scope.clone(),
                identify: Some(u.device_id.clone()),
                via_upstream: Some(u.upstream.clone()),
            },
            None => Subscriber {
                scope: Some(super::dispositions::scope_of(app, platform)?),
                identify: None,
                via_upstream: None,
            },
        })
    };
    let server_id = &app.config.viid_server_id;
    let Some(s) = requested(o, platform, server_id, stored, subscriber)? else {
        return match cancel_now(app, platform, &id, Some(o))? {
            true => Ok(id),
            false => Err(SubscribeError::NoSuch(id)),
        };
    };
    if let Some(why) = app.config.viid_receive.url_refusal(&s.url) {
        return Err(SubscribeError::ReceiveRefused(s.url, why));
    }
    // A change keeps the cursor: nothing is sent twice or skipped across it.
    let cursor = Registry::cursor(app, &sub_id)?;
    Registry::delete(app, &sub_id)?;
    Registry::create(app, s, cursor)?;
    // Subscribed again: no longer listed as cancelled.
    forget_cancelled(app, platform, &id)?;
    Ok(id)
}

/// Who a subscription is for: the communities it is confined to (`None`: every one),
/// and, for an upper platform this server registered with, the id its notifications
/// are sent as.
pub(crate) struct Subscriber {
    pub scope: Option<Vec<String>>,
    pub identify: Option<String>,
    /// The upstream an upper platform is let in by (its subscription id).
    pub via_upstream: Option<String>,
}

/// What a `SubscribeObject` of `platform` asks (this 视图库 being `server_id`; a
/// change merged onto the object `stored`): the subscription to make or replace, for
/// `subscriber()`; `None` to cancel it (`OperateType` 1). Shared by `serve` and a
/// cluster's ingest nodes (`crate::cluster::subscribes`).
pub(crate) fn requested(
    o: &Value,
    platform: &str,
    server_id: &str,
    stored: Option<&Value>,
    subscriber: impl FnOnce() -> Result<Subscriber, ApiError>,
) -> Result<Option<Subscription>, SubscribeError> {
    let id = text(o, "SubscribeID").ok_or(SubscribeError::NoId)?;
    let sub_id = subscription_id(&id);
    if text(o, "OperateType").as_deref() == Some("1") {
        return Ok(None);
    }
    let o = &match stored {
        Some(stored) => merged(stored, o),
        None => o.clone(),
    };
    let detail = text(o, "SubscribeDetail").unwrap_or_default();
    let kinds = kinds_of(&detail);
    if kinds.is_empty() && !names_a_class(&detail) {
        return Err(SubscribeError::Detail(detail));
    }
    let url = text(o, "ReceiveAddr").ok_or(SubscribeError::NoReceiveAddr)?;
    crate::subscriptions::target(&url)
        .map_err(|e| SubscribeError::ReceiveAddr(url.clone(), e.to_string()))?;
    let time = |k: &'static str| -> Result<Option<i64>, SubscribeError> {
        match text(o, k) {
            None => Ok(None),
            Some(t) => super::parse_time(&t)
                .map(Some)
                .ok_or(SubscribeError::Time(k, t)),
        }
    };
    let (begin_ms, end_ms) = (time("BeginTime")?, time("EndTime")?);
    if let (Some(b), Some(e)) = (begin_ms, end_ms) {
        if e < b {
            let t = |k| text(o, k).unwrap_or_default();
            return Err(SubscribeError::Backwards(t("BeginTime"), t("EndTime")));
        }
    }
    // ResourceURI (GA/T 1400.4 订阅资源路径): the devices (APE ids), tollgates or areas
    // (code prefixes) subscribed to; this 视图库's own id — ours, or for an upper
    // platform the id we registered there with, which is the id it knows us by — or
    // nothing is everything the platform may see.
    let who = subscriber()?;
    let (mut devices, mut prefixes, mut tollgates) = (Vec::new(), Vec::new(), Vec::new());
    for uri in text(o, "ResourceURI")
        .unwrap_or_default()
        .split([',', ';', '，', ' '])
        .map(str::trim)
        .filter(|u| !u.is_empty() && *u != server_id && Some(*u) != who.identify.as_deref())
    {
        match uri.len() >= 20 {
            true => {
                if is_tollgate(uri) {
                    tollgates.push(uri.to_string());
                }
                devices.push(uri.to_string())
            }
            false => prefixes.push(uri.to_string()),
        }
    }
    let everything = devices.is_empty() && prefixes.is_empty();
    let s = Subscription {
        id: sub_id.clone(),
        url,
        kinds: Some(kinds.iter().map(|k| k.as_str().to_string()).collect()),
        communities: None,
        devices: (!everything).then_some(devices),
        device_prefixes: (!everything).then_some(prefixes),
        subjects: None,
        format: "gat1400".into(),
        batch: 100,
        owner: platform.to_string(),
        scope: who.scope,
        created_ms: crate::now_ms(),
        alerts: false,
        watchlist: None,
        viid: Some(ViidSubscribe {
            subscribe_id: id.clone(),
            title: text(o, "Title").unwrap_or_else(|| id.clone()),
            begin_ms,
            end_ms,
            no_images: text(o, "ResultImageDeclare").as_deref() == Some("-1"),
            with_data: matches!(text(o, "ImageData").as_deref(), Some("1" | "true")),
            by_reference: matches!(text(o, "ImageData").as_deref(), Some("0" | "false")),
            identify: who.identify,
            via_upstream: who.via_upstream,
            tollgates,
            object: o.clone(),
        }),
        upstream: None,
    };
    Ok(Some(s))
}

/// Whether a 20-digit code is a tollgate's (type 121, as `/VIID/Tollgates` lists them).
fn is_tollgate(code: &str) -> bool {
    sightline_storage::DeviceCode::parse(code)
        .is_ok_and(|c| c.type_code() == super::catalog::TOLLGATE_TYPE)
}

/// Whether an object as uploaded was taken at one of `tollgates` (its `TollgateID`).
pub(crate) fn at_tollgate(object: &Value, tollgates: &[String]) -> bool {
    text(object, "TollgateID").is_some_and(|t| tollgates.contains(&t))
}

/// Ends the subscriptions an upper platform made here through upstream `upstream`
/// (their `via_upstream`), when that upstream is deleted: its `SubscribeID`s. Those
/// made before subscriptions recorded their upstream end by the upper's `server_id`
/// (and `identify`), unless another running upstream still lets that id in.
pub(crate) fn end_upper(
    app: &App,
    upstream: &str,
    server_id: Option<&str>,
) -> Result<Vec<String>, ApiError> {
    // Made before subscriptions recorded their upstream: by the upper's id, unless
    // another upstream still lets that id in.
    let by_id = server_id.filter(|sid| {
        !app.subscriptions
            .upstream_ids()
            .iter()
            .any(|(_, id)| id == sid)
    });
    let mut ended = Vec::new();
    for (s, _) in Registry::list(app)? {
        let Some(v) = s.viid.as_ref() else { continue };
        let ends = match &v.via_upstream {
            Some(via) => via == upstream,
            None => v.identify.is_some() && by_id == Some(s.owner.as_str()),
        };
        if ends && Registry::delete(app, &s.id)? {
            ended.push(s.viid.map(|v| v.subscribe_id).unwrap_or_default());
        }
    }
    Ok(ended)
}

/// Ends the subscriptions of upper platforms whose upstream is gone — at start (one
/// deleted before deleting one ended them), and when one is deleted before its id was
/// learned: those sent as a `device_id` (`identify`) no stored upstream registers
/// with. Their `SubscribeID`s.
pub(crate) fn end_orphaned_uppers(app: &App) -> Result<Vec<String>, ApiError> {
    let all = Registry::list(app)?;
    let ours: Vec<&str> = all
        .iter()
        .filter_map(|(s, _)| s.upstream.as_ref().map(|u| u.device_id.as_str()))
        .collect();
    let mut ended = Vec::new();
    for (s, _) in &all {
        let Some(v) = &s.viid else { continue };
        let Some(identify) = &v.identify else {
            continue;
        };
        if !ours.contains(&identify.as_str()) && Registry::delete(app, &s.id)? {
            tracing::info!(subscription = %s.id, upper = %s.owner, "an upper platform's subscription outlived its upstream: ended");
            ended.push(v.subscribe_id.clone());
        }
    }
    Ok(ended)
}

/// Cancelled subscriptions kept for their platform to list (`SubscribeStatus` 1),
/// at most this many a platform: past it, the longest cancelled is forgotten.
pub const MAX_CANCELLED_KEPT: usize = 1000;

/// `serve`'s cancelled subscriptions: `{owner}/{SubscribeID}` → [`Cancelled`].
const CANCELLED_TREE: &str = "viid_subscribes_cancelled";

/// A cancelled subscription as `serve` keeps it.
#[derive(Serialize, Deserialize)]
struct Cancelled {
    at_ms: i64,
    object: Value,
}

fn cancelled_key(owner: &str, id: &str) -> String {
    format!("{owner}/{id}")
}

/// The fields of a cancel (GA/T 1400.4 取消订阅) kept with the cancelled subscription.
const CANCEL_FIELDS: [&str; 4] = [
    "SubscribeCancelOrg",
    "SubscribeCancelPerson",
    "CancelTime",
    "CancelReason",
];

/// The longest a cancel field is kept, in characters (a reason, a name).
pub const MAX_CANCEL_FIELD_CHARS: usize = 256;

/// The object a cancelled subscription `id` is listed as: the one `stored`, with the
/// cancel's own fields from `given` ([`CANCEL_FIELDS`], each cut to
/// [`MAX_CANCEL_FIELD_CHARS`]; nothing else of it, so a cancel can neither grow nor
/// rename what is kept), `OperateType` 1, `SubscribeStatus` 1 and a `CancelTime` (now,
/// unless given). Shared with a cluster's ingest nodes.
pub(crate) fn cancelled_object(
    id: &str,
    stored: &Value,
    given: Option<&Value>,
    now_ms: i64,
) -> Value {
    let mut o = match stored {
        Value::Object(_) => stored.clone(),
        _ => Value::Object(Default::default()),
    };
    let m = o.as_object_mut().expect("an object");
    for field in CANCEL_FIELDS {
        if let Some(v) = given.and_then(|g| text(g, field)) {
            m.insert(
                field.into(),
                v.chars()
                    .take(MAX_CANCEL_FIELD_CHARS)
                    .collect::<String>()
                    .into(),
            );
        }
    }
    m.insert("SubscribeID".into(), id.into());
    m.insert("OperateType".into(), 1.into());
    m.insert("SubscribeStatus".into(), 1.into());
    if !m.contains_key("CancelTime") {
        m.insert("CancelTime".into(), super::local_time(now_ms).into());
    }
    o
}

/// The `SubscribeObject` a cancel's body names (`PUT /VIID/Subscribes/{id}`: a
/// `SubscribeObject`, bare or wrapped), if it names one.
pub(crate) fn cancel_body(body: &[u8]) -> Option<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let v: Value = serde_json::from_slice(body).ok()?;
    let o = super::field(&v, "SubscribeObject").cloned().unwrap_or(v);
    o.is_object().then(|| super::capitalized(&o))
}

/// Cancels `platform`'s subscription `id` (`PUT /VIID/Subscribes/{id}`, or
/// `OperateType` 1): delivery stops and the subscription stays listed with
/// `SubscribeStatus` 1 and the cancel's fields (`given`). True when it was in force or
/// already cancelled; false when the platform has none by that id.
pub(crate) fn cancel(
    app: &App,
    platform: &str,
    id: &str,
    given: Option<&Value>,
) -> Result<bool, SubscribeError> {
    let _one_at_a_time = changing();
    cancel_now(app, platform, id, given)
}

/// `serve`'s `/VIID/Subscribes` changes (make, change, cancel, delete) one at a time:
/// each reads a subscription and writes it (and its cancelled record) in several
/// steps, and two interleaved (a cancel and a change of one id) could leave neither.
/// They are few (a platform's subscriptions, not its uploads).
fn changing() -> std::sync::MutexGuard<'static, ()> {
    static CHANGES: std::sync::Mutex<()> = std::sync::Mutex::new(());
    CHANGES.lock().unwrap_or_else(|p| p.into_inner())
}

/// [`cancel`], its caller holding [`changing`].
fn cancel_now(
    app: &App,
    platform: &str,
    id: &str,
    given: Option<&Value>,
) -> Result<bool, SubscribeError> {
    let sub_id = subscription_id(id);
    match Registry::get(app, &sub_id)? {
        None => Ok(app
            .store
            .catalog()
            .kv_get(CANCELLED_TREE, &cancelled_key(platform, id))
            .map_err(ApiError::from)?
            .is_some()),
        Some(s) if s.owner != platform => Err(SubscribeError::NotYours(id.to_string())),
        Some(s) => {
            let stored = s.viid.map(|v| v.object).unwrap_or_default();
            let now = crate::now_ms();
            let kept = Cancelled {
                at_ms: now,
                object: cancelled_object(id, &stored, given, now),
            };
            let c = app.store.catalog();
            c.kv_put(
                CANCELLED_TREE,
                &cancelled_key(platform, id),
                &serde_json::to_vec(&kept).expect("serializes"),
            )
            .map_err(ApiError::from)?;
            Registry::delete(app, &sub_id)?;
            // At most MAX_CANCELLED_KEPT a platform: the longest cancelled go.
            let mut all = cancelled_of(app, platform)?;
            if all.len() > MAX_CANCELLED_KEPT {
                all.sort_by_key(|(at, _, _)| *at);
                for (_, key, _) in &all[..all.len() - MAX_CANCELLED_KEPT] {
                    c.kv_delete(CANCELLED_TREE, key).map_err(ApiError::from)?;
                }
            }
            Ok(true)
        }
    }
}

/// Deletes `platform`'s subscription `id` (`DELETE /VIID/Subscribes?IDList=…` or
/// `/{id}`): stopped if in force, and no longer listed. False when it has none by
/// that id, in force or cancelled.
pub(crate) fn delete(app: &App, platform: &str, id: &str) -> Result<bool, SubscribeError> {
    let _one_at_a_time = changing();
    let sub_id = subscription_id(id);
    let running = match Registry::get(app, &sub_id)? {
        Some(s) if s.owner != platform => return Err(SubscribeError::NotYours(id.to_string())),
        Some(_) => Registry::delete(app, &sub_id)?,
        None => false,
    };
    Ok(forget_cancelled(app, platform, id)? || running)
}

/// Forgets `platform`'s cancelled subscription `id`; whether there was one.
fn forget_cancelled(app: &App, platform: &str, id: &str) -> Result<bool, ApiError> {
    let c = app.store.catalog();
    let key = cancelled_key(platform, id);
    let had = c.kv_get(CANCELLED_TREE, &key)?.is_some();
    if had {
        c.kv_delete(CANCELLED_TREE, &key)?;
    }
    Ok(had)
}

/// `platform`'s cancelled subscriptions: when each was cancelled, its key, its object.
fn cancelled_of(app: &App, platform: &str) -> Result<Vec<(i64, String, Value)>, ApiError> {
    let prefix = cancelled_key(platform, "");
    let mut out = Vec::new();
    // Keys sort by owner first: the platform's are the run after its prefix.
    let mut after = prefix.clone();
    loop {
        let batch = app.store.catalog().kv_after(CANCELLED_TREE, &after, 256)?;
        let n = batch.len();
        for (key, bytes) in batch {
            if !key.starts_with(&prefix) {
                return Ok(out);
            }
            let c: Cancelled = serde_json::from_slice(&bytes).map_err(|e| {
                ApiError::internal(format!("cancelled subscription {key} is unreadable: {e}"))
            })?;
            after = key.clone();
            out.push((c.at_ms, key, c.object));
        }
        if n < 256 {
            return Ok(out);
        }
    }
}

/// `platform`'s subscriptions the conditions `q` keep, as a `SubscribeListObject`:
/// those in force (`SubscribeStatus` 0, 2 past their `EndTime`) and those cancelled
/// (1).
/// A condition too costly to answer over them is `Ok(Err)`.
pub(crate) fn list(
    app: &App,
    platform: &str,
    q: &RecordQuery,
) -> Result<Result<Value, BadCondition>, ApiError> {
    let all = Registry::list(app)?.into_iter().map(|(s, _)| s);
    let cancelled = cancelled_of(app, platform)?.into_iter().map(|(_, _, o)| o);
    Ok(listed(
        all,
        cancelled.collect(),
        platform,
        crate::now_ms(),
        q,
    ))
}

/// `platform`'s subscriptions of `all`, and its `cancelled` ones, as a
/// `SubscribeListObject` at `now`: the page of those `q` keeps, by `SubscribeID`.
pub(crate) fn listed(
    all: impl IntoIterator<Item = Subscription>,
    cancelled: Vec<Value>,
    platform: &str,
    now: i64,
    q: &RecordQuery,
) -> Result<Value, BadCondition> {
    let mut objects: Vec<Value> = all
        .into_iter()
        .filter(|s| s.owner == platform)
        .filter_map(|s| {
            let v = s.viid?;
            let mut o = v.object;
            let ended = v.end_ms.is_some_and(|e| e < now);
            o["SubscribeStatus"] = if ended { 2 } else { 0 }.into();
            Some(o)
        })
        .chain(cancelled)
        .collect();
    objects.sort_by_key(|o| text(o, "SubscribeID").unwrap_or_default());
    let (page, _) = q.page_of(objects)?;
    Ok(serde_json::json!({"SubscribeListObject": {"SubscribeObject": page}}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_classes_map_to_kinds() {
        assert_eq!(kinds_of("13"), [Kind::Vehicle]);
        assert_eq!(
            kinds_of("12,13, 11；14,13"),
            kinds_of("11,12,13,14"),
            "order and repeats do not matter"
        );
        assert_eq!(kinds_of("11,12,13,14").len(), 4);
        assert!(kinds_of("1,3,7").is_empty(), "catalogues are not events");
        assert!(kinds_of("").is_empty());
        // wvp-GB28181-pro's raw data (999) is taken, and delivers no kind.
        assert!(kinds_of("999").is_empty());
        assert!(names_a_class("999") && names_a_class("13,999"));
        assert!(!names_a_class("17") && !names_a_class("9999") && !names_a_class("x"));
    }

    #[test]
    fn a_cancel_keeps_its_own_fields_only_and_never_renames() {
        let stored =
            serde_json::json!({"SubscribeID": "A", "Title": "卡口", "ReceiveAddr": "http://r"});
        let given = serde_json::json!({"SubscribeID": "B", "Title": "renamed",
            "CancelReason": "x".repeat(10_000), "SubscribeCancelPerson": "李四",
            "Junk": "y".repeat(10_000)});
        let o = cancelled_object("A", &stored, Some(&given), 0);
        assert_eq!(o["SubscribeID"], "A");
        assert_eq!(o["Title"], "卡口", "only the cancel's fields are taken");
        assert!(o.get("Junk").is_none());
        assert_eq!(o["SubscribeCancelPerson"], "李四");
        assert_eq!(
            o["CancelReason"].as_str().unwrap().chars().count(),
            MAX_CANCEL_FIELD_CHARS
        );
        assert_eq!(
            (&o["SubscribeStatus"], &o["OperateType"]),
            (&1.into(), &1.into())
        );
        assert!(o["CancelTime"].is_string(), "now, when not given: {o}");
    }
}
