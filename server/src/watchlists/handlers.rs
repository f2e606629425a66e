//! `POST/GET /v1/watchlists`, `DELETE /v1/watchlists/{id}` and `GET /v1/alerts`.

use std::time::{Duration, Instant};

use hyper::StatusCode;
use serde_json::{json, Value};

use super::{Entry, Watchlist};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::http::json::{known_fields, object, text};
use crate::http::out::listed;
use crate::http::runner::{run, AuditLine};
use crate::http::{Answer, Body, Call};
use crate::params::{parse_kind, parse_time, Params};
use crate::App;

/// Most entries one watchlist may hold.
const MAX_ENTRIES: usize = 100_000;

/// `GET /v1/watchlists`: those of the key's communities for a scoped key.
pub(crate) async fn list(c: Call) -> Result<Answer, ApiError> {
    Ok((StatusCode::OK, visible(&c.caller, c.app.watch.list()).0))
}

/// `GET /v1/watchlists`'s answer: those of `lists` `caller` covers, and how many.
pub(crate) fn visible(caller: &Caller, lists: Vec<Watchlist>) -> (crate::http::Body, usize) {
    let items: Vec<Value> = lists
        .into_iter()
        .filter(|w| caller.covers(w.scope.as_deref()))
        .map(|w| serde_json::to_value(w).expect("serializes"))
        .collect();
    listed("watchlists", items)
}

/// `DELETE /v1/watchlists/{id}`.
pub(crate) async fn delete(c: Call) -> Result<Answer, ApiError> {
    let id = c.arg();
    let caller = c.caller;
    let (found, id) = run(c.app, move |app| {
        // A list the key does not cover is, to it, no list at all.
        let covered = app
            .watch
            .list()
            .iter()
            .find(|w| w.id == id)
            .is_some_and(|w| caller.covers(w.scope.as_deref()));
        if !covered {
            return Ok((false, id));
        }
        app.watch.delete(&app.store, &id).map(|found| (found, id))
    })
    .await?;
    match found {
        true => Ok((StatusCode::OK, json!({ "deleted": id }).into())),
        false => Err(ApiError::NoSuchWatchlist(id)),
    }
}

/// `POST /v1/watchlists`: `{"name", "reason", "expires", "entries": [{"kind",
/// "subject" | "pattern" | "fuzzy" (+ "distance")}]}`.
pub(crate) async fn create(mut c: Call) -> Result<Answer, ApiError> {
    let body = c.body().await?;
    let caller = c.caller;
    let v = run(c.app, move |app| create_now(app, &body, &caller)).await?;
    Ok((StatusCode::CREATED, Body::from(v).located("/v1/watchlists")))
}

fn create_now(app: &App, body: &[u8], caller: &Caller) -> Result<Value, ApiError> {
    let w = watchlist_of(body, caller)?;
    app.watch
        .put(&app.store, &w, super::Room::of(&app.config))?;
    Ok(serde_json::to_value(&w).expect("serializes"))
}

/// A `POST /v1/watchlists` body, checked, as a new watchlist (a fresh id) scoped to
/// `caller`'s communities. A cluster's query node reads it alike.
pub(crate) fn watchlist_of(body: &[u8], caller: &Caller) -> Result<Watchlist, ApiError> {
    let o = object(body)?;
    known_fields(&o, &["name", "reason", "expires", "entries"], "")?;
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
        .filter(|a| !a.is_empty() && a.len() <= MAX_ENTRIES)
        .ok_or_else(|| ApiError::param("entries", "1 to 100,000 entries"))?;
    let entries = items
        .iter()
        .enumerate()
        .map(|(i, e)| entry(i, e))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Watchlist {
        id: format!("{:016x}", rand::random::<u64>()),
        name: text(&o, "name", false)?,
        reason,
        expires_ms,
        entries,
        scope: caller.communities.clone(),
    })
}

/// Entry `i` of a new watchlist, each failure naming `entries[i].field`.
fn entry(i: usize, e: &Value) -> Result<Entry, ApiError> {
    let bad = |f: &str, why: &str| ApiError::param(format!("entries[{i}].{f}"), why);
    let Some(o) = e.as_object() else {
        return Err(ApiError::param(
            format!("entries[{i}]"),
            "must be an object",
        ));
    };
    known_fields(
        o,
        &["kind", "subject", "pattern", "fuzzy", "distance"],
        &format!("entries[{i}]."),
    )?;
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
    Ok(Entry {
        kind: kind.to_string(),
        subject,
        pattern,
        fuzzy,
        distance,
    })
}

/// `GET /v1/alerts?after=&limit=&wait=`: alerts after the cursor, in order, waiting up
/// to `wait` for some when there are none.
pub(crate) async fn alerts(c: Call) -> Result<Answer, ApiError> {
    // Alerts name residents' subjects: audited as the feed is (once, with how many
    // were answered; a refused request too).
    let line = AuditLine::new(&c.caller, &c.path, c.query.clone());
    let (after, limit, wait) = match alerts_params(&c.params, c.app.config.max_result_rows) {
        Ok(asked) => asked,
        Err(e) => {
            line.record(&c.app, None, e.status().as_u16())?;
            return Err(e);
        }
    };
    let latest = match latest_param(&c.params) {
        Ok(latest) => latest,
        Err(e) => {
            line.record(&c.app, None, e.status().as_u16())?;
            return Err(e);
        }
    };
    let answer = match latest {
        Some(n) => {
            // The newest `n` the key may read, and the cursor past every alert.
            let caller = c.caller.clone();
            run(c.app.clone(), move |a| {
                let scope = caller.communities.as_deref();
                // For a scoped key, the ids of the lists it covers, found once (a
                // list's entries are not copied for each alert looked at).
                let covered: Option<Vec<String>> = caller.communities.as_ref().map(|_| {
                    a.watch
                        .list()
                        .into_iter()
                        .filter(|w| caller.covers(w.scope.as_deref()))
                        .map(|w| w.id)
                        .collect()
                });
                let keep = |alert: &Value| {
                    covered.as_ref().is_none_or(|ids| {
                        alert["watchlist"]
                            .as_str()
                            .is_some_and(|w| ids.iter().any(|l| l == w))
                    })
                };
                let (alerts, head) = a.watch.latest(&a.store, n, scope, &keep)?;
                let n = alerts.len();
                Ok((alerts_answer(alerts, head), n))
            })
            .await
        }
        None => alerts_after(&c, after, limit, wait).await,
    };
    let (status, results) = match &answer {
        Ok((_, n)) => (200, Some(*n)),
        Err(e) => (e.status().as_u16(), None),
    };
    line.record(&c.app, results, status)?;
    answer.map(|(body, _)| (StatusCode::OK, body.into()))
}

/// The alerts after `after` (at most `limit`), waiting up to `wait` for some: the
/// answer and how many it holds.
async fn alerts_after(
    c: &Call,
    mut after: u64,
    limit: usize,
    wait: Duration,
) -> Result<(Value, usize), ApiError> {
    let deadline = Instant::now() + wait;
    loop {
        let notified = c.app.watch.signal.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let caller = c.caller.clone();
        let (alerts, scanned) = run(c.app.clone(), move |a| {
            let scope = caller.communities.as_deref();
            let (all, scanned) = a.watch.alerts(&a.store, after, limit, scope)?;
            Ok((covered_alerts(&caller, a.watch.list(), all), scanned))
        })
        .await?;
        let next = scanned.unwrap_or(after);
        if !alerts.is_empty() || Instant::now() >= deadline {
            let n = alerts.len();
            return Ok((alerts_answer(alerts, next), n));
        }
        if scanned.is_some() {
            // A page of other lists' alerts only: look past it at once.
            after = next;
            continue;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = tokio::time::timeout(left, notified).await;
    }
}

/// The most alerts `GET /v1/alerts?latest=` answers.
pub const MAX_LATEST_ALERTS: usize = 1000;

/// `GET /v1/alerts?latest=N`: the newest `N` (1 to [`MAX_LATEST_ALERTS`]) instead of
/// those after a cursor; with an `after` or a `wait` other than 0 it is a 400 naming it.
pub(crate) fn latest_param(p: &Params) -> Result<Option<usize>, ApiError> {
    let Some(n) = p.get("latest")? else {
        return Ok(None);
    };
    let n: usize = n
        .parse()
        .ok()
        .filter(|n| (1..=MAX_LATEST_ALERTS).contains(n))
        .ok_or_else(|| ApiError::param("latest", format!("1 to {MAX_LATEST_ALERTS}")))?;
    // A cursor or a wait asks for what comes after; their defaults (0) may be given.
    let given = |name: &str| -> Result<bool, ApiError> {
        Ok(match name {
            "after" => p.number("after", 0u64)? != 0,
            _ => p.window("wait")?.unwrap_or(0) != 0,
        })
    };
    for other in ["after", "wait"] {
        if given(other)? {
            return Err(ApiError::param(
                "latest",
                format!("the newest alerts are asked without `{other}`: take `next_after` from the answer to go on"),
            ));
        }
    }
    Ok(Some(n))
}

/// `GET /v1/alerts`' parameters: the cursor, the page's size (at most `max_rows`) and
/// how long to wait for alerts when there are none.
pub(crate) fn alerts_params(
    p: &Params,
    max_rows: usize,
) -> Result<(u64, usize, Duration), ApiError> {
    let after = p.number("after", 0u64)?;
    let limit = p.limit(1000, max_rows)?;
    let wait = p.window("wait")?.unwrap_or(0);
    if !(0..=60_000).contains(&wait) {
        return Err(ApiError::param("wait", "0 to 60 s"));
    }
    Ok((after, limit, Duration::from_millis(wait as u64)))
}

/// Of `alerts` (already of `caller`'s communities), those of lists among `lists` the
/// key covers, for a scoped key: another list's name and reason are not its to read,
/// even for an event in its communities.
pub(crate) fn covered_alerts(
    caller: &Caller,
    lists: Vec<Watchlist>,
    mut alerts: Vec<Value>,
) -> Vec<Value> {
    if caller.communities.is_some() {
        let covered: Vec<String> = lists
            .into_iter()
            .filter(|w| caller.covers(w.scope.as_deref()))
            .map(|w| w.id)
            .collect();
        alerts.retain(|x| {
            x["watchlist"]
                .as_str()
                .is_some_and(|w| covered.iter().any(|l| l == w))
        });
    }
    alerts
}

/// The id of the last of `alerts` (a page as read, before [`covered_alerts`]).
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
pub(crate) fn last_id(alerts: &[Value]) -> Option<u64> {
    alerts.last().and_then(|a| a["id"].as_u64())
}

/// `GET /v1/alerts`' answer: `alerts` and the cursor `next`: past the last alert read,
/// those the key may not see included, so a scoped key's cursor never stops at a page
/// of other lists' alerts (the cursor it was given when none were read).
pub(crate) fn alerts_answer(alerts: Vec<Value>, next: u64) -> Value {
    json!({ "alerts": alerts, "next_after": next })
}
