//! Dispositions (布控) from a registered platform: `POST`/`PUT /VIID/Dispositions`
//! (`DispositionListObject`), `DELETE /VIID/Dispositions?IDList=…` and
//! `PUT`/`DELETE /VIID/Dispositions/{id}` (revoke). Each disposition is a watchlist
//! (its id `viid-disp-` and the `DispositionID`, apart from `/v1/watchlists`' ids;
//! scoped to the communities the platform's record covers; owned by the platform that
//! made it, which alone changes or revokes it — another is answered 4)
//! whose hits — the alerts raised at ingest — are pushed to its `ReceiveAddr` as
//! `DispositionNotificationListObject`s by an alert subscription of its own, with the
//! subscriptions' durable cursor, retries and status.

use super::text;
use std::sync::Arc;

use serde_json::Value;
use sightline_storage::Kind;

use super::relay::prefixes;
use crate::error::ApiError;
use crate::subscriptions::{Registry, Subscription};
use crate::watchlists::{Entry, Watchlist};
use crate::App;

/// Why a disposition was refused (its status says so).
#[derive(Debug, thiserror::Error)]
pub(crate) enum DispositionError {
    #[error("DispositionID is missing")]
    NoId,
    #[error("DispositionCategory {0:?} is not one watched here (1 person, 2 motor vehicle, 3 non-motor vehicle)")]
    Category(String),
    #[error("TargetFeature is missing: it names the subjects to watch (plates, or face archive ids), comma-separated")]
    NoTarget,
    #[error("EndTime {0:?} is not a time like 20210901080000")]
    EndTime(String),
    #[error("ReceiveAddr {0:?}: {1}")]
    ReceiveAddr(String, String),
    #[error("ReceiveAddr {0:?} refused: {1}")]
    ReceiveRefused(String, String),
    #[error("DispositionID {0:?} is another platform's disposition")]
    NotYours(String),
    #[error("不存在布控ID: no disposition {0:?} to revoke")]
    NoSuch(String),
    #[error("{0}")]
    Store(#[from] ApiError),
}

impl DispositionError {
    /// Its `StatusCode`: another's disposition, or a `ReceiveAddr` where this server may
    /// not send (`http::egress`), an invalid operation (4), an unknown one
    /// to revoke "other" (1), the store failing a device error (3), anything else 8.
    pub(crate) fn code(&self) -> i64 {
        match self {
            DispositionError::NotYours(_) | DispositionError::ReceiveRefused(..) => {
                super::INVALID_OPERATION
            }
            DispositionError::NoSuch(_) => super::OTHER_ERROR,
            DispositionError::Store(_) => super::DEVICE_ERROR,
            _ => super::INVALID_JSON_CONTENT,
        }
    }
}

/// Who owns each disposition (`DispositionID` → the platform's code).
const OWNERS: &str = "viid_dispositions";
/// The prefix of a disposition's watchlist id.
const WATCHLIST_PREFIX: &str = "viid-disp-";

/// The watchlist of a disposition.
fn watchlist_id(disposition: &str) -> String {
    format!("{WATCHLIST_PREFIX}{disposition}")
}

/// The `DispositionID` of a disposition's watchlist (an older one's id as it is).
pub(crate) fn disposition_of(watchlist: &str) -> String {
    watchlist
        .strip_prefix(WATCHLIST_PREFIX)
        .unwrap_or(watchlist)
        .to_string()
}

/// The platform that made disposition `id`, if any did.
fn owner(app: &App, id: &str) -> Result<Option<String>, ApiError> {
    Ok(app
        .store
        .catalog()
        .kv_get(OWNERS, id)?
        .map(|b| String::from_utf8_lossy(&b).into_owned()))
}

/// Refuses `platform` a disposition another platform made.
fn check_owner(app: &App, platform: &str, id: &str) -> Result<(), DispositionError> {
    match owner(app, id)? {
        Some(o) if o != platform => Err(DispositionError::NotYours(id.to_string())),
        _ => Ok(()),
    }
}

/// The prefix of the subscription that pushes a disposition's notifications.
pub(crate) const SUBSCRIPTION_PREFIX: &str = "disposition-";

/// The subscription that pushes a disposition's notifications.
pub(crate) fn subscription_id(disposition: &str) -> String {
    format!("{SUBSCRIPTION_PREFIX}{disposition}")
}

/// The watched kind of a `DispositionCategory`.
fn kind_of(category: &str) -> Option<Kind> {
    match category.trim_start_matches('0') {
        "1" => Some(Kind::Face),
        "2" => Some(Kind::Vehicle),
        "3" => Some(Kind::Nonmotor),
        _ => None,
    }
}

/// The communities `platform`'s record covers (its own and its relays').
pub(super) fn scope_of(app: &App, platform: &str) -> Result<Vec<String>, ApiError> {
    let mut out: Vec<String> = match app.store.catalog().device(platform)? {
        Some(d) => vec![d.community],
        None => Vec::new(),
    };
    out.extend(prefixes(&app.store, platform)?.into_values());
    out.sort();
    out.dedup();
    Ok(out)
}

/// Creates or replaces one disposition (`OperateType` 1 revokes it); its id.
pub(crate) fn apply(app: &Arc<App>, platform: &str, o: &Value) -> Result<String, DispositionError> {
    let scope = || scope_of(app, platform);
    let (mut w, pushed) = match requested(o, platform, scope)? {
        Asked::Revoke(id) => {
            return match revoke(app, platform, &id)? {
                true => Ok(id),
                false => Err(DispositionError::NoSuch(id)),
            };
        }
        Asked::Put(w, pushed) => (w, pushed),
    };
    if let Some(s) = &pushed {
        if let Some(why) = app.config.viid_receive.url_refusal(&s.url) {
            return Err(DispositionError::ReceiveRefused(s.url.clone(), why));
        }
    }
    // The platform's own, under a watchlist id apart from `/v1/watchlists`' ids.
    let id = std::mem::take(&mut w.id);
    check_owner(app, platform, &id)?;
    w.id = watchlist_id(&id);
    app.store
        .catalog()
        .kv_put(OWNERS, &id, platform.as_bytes())
        .map_err(ApiError::from)?;
    app.watch
        .put(&app.store, &w, crate::watchlists::Room::of(&app.config))?;
    Registry::delete(app, &subscription_id(&id))?;
    if let Some(mut s) = pushed {
        s.watchlist = Some(watchlist_id(&id));
        Registry::create(app, *s, None)?;
    }
    Ok(id)
}

/// What a `DispositionObject` asks.
pub(crate) enum Asked {
    /// `OperateType` 1: revoke this disposition.
    Revoke(String),
    /// Make or replace this watchlist and, with a `ReceiveAddr`, the alert
    /// subscription pushing its notifications (else none).
    Put(Watchlist, Option<Box<Subscription>>),
}

/// What a `DispositionObject` of `platform` asks, its watchlist confined to
/// `scope()` (the communities the platform's record covers). Shared by `serve` and a
/// cluster's ingest nodes (`crate::cluster::gat1400::dispositions`). The watchlist and the
/// subscription name the `DispositionID` as it is; `serve` files them under its own
/// watchlist id (`apply`).
pub(crate) fn requested(
    o: &Value,
    platform: &str,
    scope: impl FnOnce() -> Result<Vec<String>, ApiError>,
) -> Result<Asked, DispositionError> {
    let id = text(o, "DispositionID").ok_or(DispositionError::NoId)?;
    if text(o, "OperateType").as_deref() == Some("1") {
        return Ok(Asked::Revoke(id));
    }
    let category = text(o, "DispositionCategory").unwrap_or_else(|| "2".into());
    let kind = kind_of(&category).ok_or(DispositionError::Category(category))?;
    let targets: Vec<String> = text(o, "TargetFeature")
        .ok_or(DispositionError::NoTarget)?
        .split([',', ';', '，', '；', ' '])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    if targets.is_empty() {
        return Err(DispositionError::NoTarget);
    }
    let expires_ms = match text(o, "EndTime") {
        None => None,
        Some(t) => Some(super::parse_time(&t).ok_or(DispositionError::EndTime(t))?),
    };
    let entries = targets
        .into_iter()
        .map(|t| {
            let wild = t.contains(['*', '?']);
            Entry {
                kind: kind.as_str().to_string(),
                subject: (!wild).then(|| t.clone()),
                pattern: wild.then_some(t),
                fuzzy: None,
                distance: None,
            }
        })
        .collect();
    let scope = scope()?;
    let w = Watchlist {
        id: id.clone(),
        name: text(o, "Title").unwrap_or_else(|| id.clone()),
        reason: text(o, "Reason")
            .unwrap_or_else(|| format!("GA/T 1400 disposition from {platform}")),
        expires_ms,
        entries,
        scope: Some(scope.clone()),
    };
    let receiver = match text(o, "ReceiveAddr") {
        None => None,
        Some(url) => {
            crate::subscriptions::target(&url)
                .map_err(|e| DispositionError::ReceiveAddr(url.clone(), e.to_string()))?;
            Some(url)
        }
    };
    let pushed = receiver.map(|url| Subscription {
        id: subscription_id(&id),
        url,
        kinds: None,
        communities: None,
        devices: None,
        device_prefixes: None,
        subjects: None,
        format: "gat1400".into(),
        batch: 100,
        owner: platform.to_string(),
        scope: Some(scope),
        created_ms: crate::now_ms(),
        alerts: true,
        watchlist: Some(id.clone()),
        viid: None,
        upstream: None,
    });
    Ok(Asked::Put(w, pushed.map(Box::new)))
}

/// Revokes `platform`'s disposition `id`: its watchlist and its notifications end.
/// False when it has none by that id; another platform's is refused. (Only a
/// disposition's own `viid-disp-` watchlist is deleted, never a `/v1/watchlists` one.)
pub(crate) fn revoke(app: &Arc<App>, platform: &str, id: &str) -> Result<bool, DispositionError> {
    check_owner(app, platform, id)?;
    if owner(app, id)?.is_none() {
        return Ok(false);
    }
    Registry::delete(app, &subscription_id(id))?;
    app.watch.delete(&app.store, &watchlist_id(id))?;
    app.store
        .catalog()
        .kv_delete(OWNERS, id)
        .map_err(ApiError::from)?;
    Ok(true)
}

/// Moves the dispositions made before they were owned (a bare `DispositionID` as
/// watchlist id, no owner) to what they are now, at start: each one that pushed its
/// notifications (its `disposition-{id}` alert subscription records the platform that
/// made it) becomes that platform's, its watchlist `viid-disp-{id}` — revocable
/// through `/VIID/Dispositions` by that platform alone. One that had no `ReceiveAddr`
/// records no platform: it stays a plain watchlist, removed by an admin key through
/// `DELETE /v1/watchlists/{id}` only. The `DispositionID`s moved.
pub(crate) fn migrate(app: &App) -> Result<Vec<String>, ApiError> {
    let mut moved = Vec::new();
    for (mut s, _) in Registry::list(app)? {
        let Some(id) = s.id.strip_prefix(SUBSCRIPTION_PREFIX).map(str::to_string) else {
            continue;
        };
        let bare = match &s.watchlist {
            Some(w) if s.alerts && s.upstream.is_none() && *w == id => w.clone(),
            _ => continue,
        };
        // Each step is safe to repeat, in an order a crash between any two leaves
        // for the next start to finish (the subscription still names the bare list
        // until it is moved, last but one): the new list is put and the owner written
        // before the subscription is repointed, the old list deleted last.
        let lists = app.watch.list();
        if let Some(mut w) = lists.iter().find(|w| w.id == bare).cloned() {
            w.id = watchlist_id(&id);
            // The same list as accepted before: not weighed again against the limit.
            app.watch
                .put(&app.store, &w, crate::watchlists::Room::UNBOUNDED)?;
        }
        // The owner before the subscription is repointed (the next start finds only
        // subscriptions still naming the bare list): a crash between leaves it to redo.
        app.store
            .catalog()
            .kv_put(OWNERS, &id, s.owner.as_bytes())?;
        s.watchlist = Some(watchlist_id(&id));
        Registry::store(app, &s)?;
        if lists.iter().any(|w| w.id == bare) {
            app.watch.delete(&app.store, &bare)?;
        }
        tracing::info!(disposition = %id, platform = %s.owner, "an unowned disposition is now its platform's");
        moved.push(id);
    }
    Ok(moved)
}
