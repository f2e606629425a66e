//! Dispositions (布控) from a registered platform: `POST`/`PUT /VIID/Dispositions`
//! (`DispositionListObject`), `DELETE /VIID/Dispositions?IDList=…` and
//! `PUT`/`DELETE /VIID/Dispositions/{id}` (revoke). Each disposition is a watchlist
//! (its id the `DispositionID`, scoped to the communities the platform's record covers)
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
    #[error("{0}")]
    Store(#[from] ApiError),
}

/// The subscription that pushes a disposition's notifications.
pub(crate) fn subscription_id(disposition: &str) -> String {
    format!("disposition-{disposition}")
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
    let (w, pushed) = match requested(o, platform, scope)? {
        Asked::Revoke(id) => {
            revoke(app, &id)?;
            return Ok(id);
        }
        Asked::Put(w, pushed) => (w, pushed),
    };
    app.watch
        .put(&app.store, &w, app.config.max_scanned_watch_entries)?;
    Registry::delete(app, &subscription_id(&w.id))?;
    if let Some(s) = pushed {
        Registry::create(app, *s, None)?;
    }
    Ok(w.id)
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
/// cluster's ingest nodes (`crate::cluster::gat1400::dispositions`).
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

/// Revokes a disposition: its watchlist and its notifications end. False when there
/// was none.
pub(crate) fn revoke(app: &Arc<App>, id: &str) -> Result<bool, ApiError> {
    let pushed = Registry::delete(app, &subscription_id(id))?;
    let listed = app.watch.delete(&app.store, id)?;
    Ok(listed || pushed)
}
