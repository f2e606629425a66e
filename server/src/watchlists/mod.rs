//! Watchlists (布控): subjects to watch — exact, a wildcard pattern (`?` one
//! character, `*` any run), or a plate within an OCR-weighted distance — each with a
//! reason and an expiry. Every stored event that matches an active entry raises an
//! alert before its ingest is acknowledged: alerts are kept durably in order (the
//! catalog), read with `GET /v1/alerts` (a feed of their own, long-poll or page) and
//! pushed by subscriptions created with `"alerts": true`.

use std::collections::HashMap;
use std::sync::RwLock;

pub(crate) mod handlers;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sightline_storage::{normalize_subject, Event, Kind, Store};

use crate::error::ApiError;

const TREE: &str = "watchlists";
/// `max_scanned_watch_entries`' default (a cluster's query nodes apply it).
pub const DEFAULT_MAX_SCANNED: usize = 100_000;
/// `max_watch_entries`' default: the entries of every watchlist together (each held in
/// memory, hashed or scanned, and listed whole by `GET /v1/watchlists`; ~100 bytes
/// apiece). A cluster's query nodes apply it.
pub const DEFAULT_MAX_ENTRIES: usize = 1_000_000;

/// What the watchlists may hold, [`Watch::put`] checks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Room {
    /// Wildcard and fuzzy entries of one community's lists (and of the unscoped ones).
    pub max_scanned: usize,
    /// Entries of every list together.
    pub max_entries: usize,
}

impl Room {
    /// `serve`'s configured bounds.
    pub(crate) fn of(config: &crate::ServerConfig) -> Room {
        Room {
            max_scanned: config.max_scanned_watch_entries,
            max_entries: config.max_watch_entries,
        }
    }

    /// The defaults (a cluster's query nodes).
    #[cfg(feature = "cluster")]
    pub(crate) const DEFAULT: Room = Room {
        max_scanned: DEFAULT_MAX_SCANNED,
        max_entries: DEFAULT_MAX_ENTRIES,
    };

    /// No bound: dispositions moved to their owned ids at start (`migrate`), which
    /// were taken once already.
    pub(crate) const UNBOUNDED: Room = Room {
        max_scanned: usize::MAX,
        max_entries: usize::MAX,
    };
}
const ALERTS: &str = "alerts";

/// The most alerts one read of the alert log looks at for a scoped reader, whose
/// communities' alerts may be few among many: its cursor goes on from there.
pub const MAX_ALERTS_EXAMINED: usize = 100_000;

/// One watched subject or pattern.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub kind: String,
    /// Exactly this subject (normalised as stored) …
    pub subject: Option<String>,
    /// … or subjects matching this wildcard pattern …
    pub pattern: Option<String>,
    /// … or plates within `distance` (OCR confusions cost 0.5) of this one.
    pub fuzzy: Option<String>,
    pub distance: Option<f32>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Watchlist {
    pub id: String,
    pub name: String,
    pub reason: String,
    /// Epoch ms after which it no longer alerts; `None`: until deleted.
    pub expires_ms: Option<i64>,
    pub entries: Vec<Entry>,
    /// The creating key's communities: events elsewhere do not alert it.
    pub scope: Option<Vec<String>>,
}

/// The matcher: exact subjects hashed, patterns and fuzzy entries checked in turn.
#[derive(Default)]
pub(crate) struct Matcher {
    lists: HashMap<String, Watchlist>,
    exact: HashMap<(Kind, String), Vec<String>>,
    /// The entries checked one by one (wildcards and fuzzy plates): those of unscoped
    /// lists, and by the community their list is scoped to. An event is checked
    /// against its own community's and the unscoped ones only, so a key's long list
    /// costs other communities' ingest nothing.
    unscoped: Scanned,
    by_community: HashMap<String, Scanned>,
}

/// Wildcard and fuzzy entries of one scope.
#[derive(Default)]
struct Scanned {
    /// (kind, pattern, watchlist id): matched as the search matches wildcards.
    patterns: Vec<(Kind, sightline_index::Wildcard, String)>,
    /// (kind, plate, distance, watchlist id)
    fuzzy: Vec<(Kind, String, f32, String)>,
}

impl Scanned {
    fn len(&self) -> usize {
        self.patterns.len() + self.fuzzy.len()
    }
}

impl Matcher {
    pub(crate) fn build(lists: Vec<Watchlist>) -> Matcher {
        let mut m = Matcher::default();
        for w in lists {
            for e in &w.entries {
                let kind = Kind::parse(&e.kind).unwrap_or(Kind::Vehicle);
                if let Some(s) = &e.subject {
                    m.exact
                        .entry((kind, normalize_subject(kind, s)))
                        .or_default()
                        .push(w.id.clone());
                }
                let scopes: Vec<Option<&String>> = match &w.scope {
                    None => vec![None],
                    Some(cs) => cs.iter().map(Some).collect(),
                };
                for scope in scopes {
                    let scanned = match scope {
                        None => &mut m.unscoped,
                        Some(c) => m.by_community.entry(c.clone()).or_default(),
                    };
                    // Patterns are checked at creation; one too long to compile never
                    // matches.
                    if let Some(p) = e
                        .pattern
                        .as_deref()
                        .and_then(sightline_index::Wildcard::new)
                    {
                        scanned.patterns.push((kind, p, w.id.clone()));
                    }
                    if let Some(f) = &e.fuzzy {
                        let d = e.distance.unwrap_or(1.0);
                        scanned
                            .fuzzy
                            .push((kind, normalize_subject(kind, f), d, w.id.clone()));
                    }
                }
            }
            m.lists.insert(w.id.clone(), w);
        }
        m
    }

    /// Wildcard and fuzzy entries of the lists scoped to `community` (`None`: of the
    /// unscoped lists).
    fn scanned_for(&self, community: Option<&str>) -> usize {
        match community {
            None => self.unscoped.len(),
            Some(c) => self.by_community.get(c).map_or(0, Scanned::len),
        }
    }

    /// The watchlists an event matches (active at `now_ms`, in scope), each once; and
    /// how many wildcard and fuzzy entries were checked to find them.
    pub(crate) fn matches(&self, e: &Event, now_ms: i64) -> (Vec<&Watchlist>, usize) {
        let mut ids: Vec<&str> = Vec::new();
        if let Some(w) = self.exact.get(&(e.kind(), e.subject().to_string())) {
            ids.extend(w.iter().map(String::as_str));
        }
        let own = self.by_community.get(e.community());
        let mut checked = 0;
        for scanned in std::iter::once(&self.unscoped).chain(own) {
            checked += scanned.len();
            for (k, p, id) in &scanned.patterns {
                if *k == e.kind() && p.matches(e.subject()) {
                    ids.push(id);
                }
            }
            for (k, plate, d, id) in &scanned.fuzzy {
                if *k == e.kind() && sightline_index::ocr_distance(plate, e.subject()) <= *d {
                    ids.push(id);
                }
            }
        }
        ids.sort_unstable();
        ids.dedup();
        let lists = ids
            .into_iter()
            .filter_map(|id| self.lists.get(id))
            .filter(|w| w.expires_ms.is_none_or(|x| now_ms < x))
            .filter(|w| {
                w.scope
                    .as_ref()
                    .is_none_or(|s| s.iter().any(|c| c == e.community()))
            })
            .collect();
        (lists, checked)
    }
}

/// Alert `id` of watchlist `w`, raised at `now_ms` by event `seq` (`e`, `json` its API
/// form), as `GET /v1/alerts` answers it.
pub(crate) fn alert_json(
    id: u64,
    w: &Watchlist,
    seq: u64,
    e: &Event,
    json: &Value,
    now_ms: i64,
) -> Value {
    json!({"id": id, "watchlist": w.id, "name": w.name, "reason": w.reason,
           "event_id": seq, "community": e.community(),
           "raised": crate::params::rfc3339(now_ms), "event": json})
}

/// A list's wildcard and fuzzy entries (checked one by one against each event).
fn scanned_entries(w: &Watchlist) -> usize {
    w.entries
        .iter()
        .filter(|e| e.pattern.is_some() || e.fuzzy.is_some())
        .count()
}

/// Whether `w`'s scanned entries are among those of `scope` (a community, or the
/// unscoped lists).
fn scoped_to(w: &Watchlist, scope: Option<&str>) -> bool {
    match (&w.scope, scope) {
        (None, None) => true,
        (Some(cs), Some(c)) => cs.iter().any(|x| x == c),
        _ => false,
    }
}

/// Refuses `w` (new, or replacing the list of its id among `m`'s) when its wildcard
/// and fuzzy entries would take any community's (or the unscoped lists') past
/// `max_scanned`: each event is checked against its community's and the unscoped
/// ones, so that bounds what watchlists cost any one event.
fn check_room(m: &Matcher, w: &Watchlist, room: Room) -> Result<(), ApiError> {
    // Every entry is held (and listed) until its list is deleted, expired or not:
    // all lists together within `max_entries`.
    let held: usize = m
        .lists
        .values()
        .filter(|l| l.id != w.id)
        .map(|l| l.entries.len())
        .sum();
    let total = held.saturating_add(w.entries.len());
    if total > room.max_entries {
        return Err(ApiError::param(
            "entries",
            format!(
                "the watchlists would hold {total} entries in all; at most {} \
                 (max_watch_entries; {held} are held)",
                room.max_entries
            ),
        ));
    }
    let max_scanned = room.max_scanned;
    let adding = scanned_entries(w);
    if adding > 0 {
        let replaced = m.lists.get(&w.id);
        let scopes: Vec<Option<&str>> = match &w.scope {
            None => vec![None],
            Some(cs) => cs.iter().map(|c| Some(c.as_str())).collect(),
        };
        for scope in scopes {
            let now = m.scanned_for(scope);
            let going = replaced
                .filter(|r| scoped_to(r, scope))
                .map_or(0, scanned_entries);
            let after = now.saturating_sub(going) + adding;
            if after > max_scanned {
                let whose = scope.map_or_else(
                    || "the unscoped watchlists".to_string(),
                    |c| format!("community {c}'s watchlists"),
                );
                return Err(ApiError::param(
                    "entries",
                    format!(
                        "{whose} would hold {after} wildcard and fuzzy entries; at most \
                         {max_scanned} (max_scanned_watch_entries: every event there is \
                         checked against each)"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// [`check_room`] against `lists`, the watchlists there are (a cluster's, read from
/// PostgreSQL).
#[cfg(feature = "cluster")]
pub(crate) fn room_for(lists: Vec<Watchlist>, w: &Watchlist, room: Room) -> Result<(), ApiError> {
    check_room(&Matcher::build(lists), w, room)
}

/// Every watchlist the catalog holds.
fn stored_lists(store: &Store) -> Result<Vec<Watchlist>, ApiError> {
    store
        .catalog()
        .kv_list(TREE)?
        .into_iter()
        .map(|(_, v)| {
            serde_json::from_slice(&v)
                .map_err(|e| ApiError::internal(format!("a stored watchlist: {e}")))
        })
        .collect()
}

/// Watchlists and the alert log.
#[derive(Default)]
pub struct Watch {
    matcher: RwLock<Matcher>,
    /// Wildcard and fuzzy entries checked one by one, over every event checked: what
    /// watchlists cost ingest (`sightline_watchlist_entry_checks_total`).
    pub entry_checks: std::sync::atomic::AtomicU64,
    /// The next alert id (alerts are numbered 1, 2, …).
    next: std::sync::Mutex<u64>,
    /// Woken when alerts are written.
    pub signal: tokio::sync::Notify,
    /// Held while a list is checked and written, or deleted: two lists put at once
    /// are checked one after the other, so together they stay within [`Room`].
    changes: std::sync::Mutex<()>,
}

impl Watch {
    /// Loads the stored watchlists and finds where the alert log ends.
    pub fn load(store: &Store) -> Result<Watch, ApiError> {
        // Alert keys are fixed-width hex, so the greatest key is the last alert.
        let last = store
            .catalog()
            .kv_last(ALERTS)?
            .and_then(|(k, _)| u64::from_str_radix(&k, 16).ok())
            .unwrap_or(0);
        Ok(Watch {
            matcher: RwLock::new(Matcher::build(stored_lists(store)?)),
            next: std::sync::Mutex::new(last + 1),
            signal: Default::default(),
            entry_checks: Default::default(),
            changes: Default::default(),
        })
    }

    /// Rebuilds the matcher from the stored watchlists (after a change to them).
    fn rebuild(&self, store: &Store) -> Result<(), ApiError> {
        let fresh = Matcher::build(stored_lists(store)?);
        *self.matcher.write().expect("watch") = fresh;
        Ok(())
    }

    /// Stores `w` (new or replacing the list of its id), unless [`check_room`]
    /// refuses it.
    pub(crate) fn put(&self, store: &Store, w: &Watchlist, room: Room) -> Result<(), ApiError> {
        let _one = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        check_room(&self.matcher.read().expect("watch"), w, room)?;
        store
            .catalog()
            .kv_put(TREE, &w.id, &serde_json::to_vec(w).expect("serializes"))?;
        self.rebuild(store)
    }

    pub fn delete(&self, store: &Store, id: &str) -> Result<bool, ApiError> {
        let _one = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        let c = store.catalog();
        let existed = c.kv_get(TREE, id)?.is_some();
        c.kv_delete(TREE, id)?;
        self.rebuild(store)?;
        Ok(existed)
    }

    /// No watchlist at all (ingest skips the check).
    pub fn is_empty(&self) -> bool {
        self.matcher.read().expect("watch").lists.is_empty()
    }

    pub fn list(&self) -> Vec<Watchlist> {
        let mut v: Vec<Watchlist> = self
            .matcher
            .read()
            .expect("watch")
            .lists
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Checks stored events (with their ids and their API form) and writes an alert
    /// for each match, durably, before returning. Returns how many were raised.
    pub fn check(
        &self,
        store: &Store,
        events: &[(u64, &Event, Value)],
        now_ms: i64,
    ) -> Result<usize, ApiError> {
        let m = self.matcher.read().expect("watch");
        if m.lists.is_empty() {
            return Ok(0);
        }
        let mut next = self.next.lock().expect("alerts");
        let mut batch = Vec::new();
        let mut checked = 0u64;
        for (seq, e, json) in events {
            let (lists, n) = m.matches(e, now_ms);
            checked += n as u64;
            for w in lists {
                let alert = alert_json(*next, w, *seq, e, json, now_ms);
                batch.push((format!("{:016x}", *next), alert.to_string().into_bytes()));
                *next += 1;
            }
        }
        let raised = batch.len();
        if raised > 0 {
            // One durable write for the whole batch of events.
            if let Err(e) = store.catalog().kv_put_many(ALERTS, &batch) {
                *next -= raised as u64;
                return Err(e.into());
            }
        }
        drop(next);
        self.entry_checks
            .fetch_add(checked, std::sync::atomic::Ordering::Relaxed);
        if raised > 0 {
            self.signal.notify_waiters();
        }
        Ok(raised)
    }

    /// Alerts after `after`, at most `limit`, in order; only of `scope` when given;
    /// and the id of the last alert looked at (of the scope or not: the reader's next
    /// `after`), `None` when there was none after `after`.
    pub fn alerts(
        &self,
        store: &Store,
        after: u64,
        limit: usize,
        scope: Option<&[String]>,
    ) -> Result<(Vec<Value>, Option<u64>), ApiError> {
        let mut out = Vec::new();
        let mut from = format!("{after:016x}");
        // The id of the last alert looked at, in the scope or not: a reader's cursor
        // moves past other communities' alerts, never reading them again.
        let mut examined = None;
        let id_of = |key: &str| u64::from_str_radix(key, 16).ok();
        // Scoped readers skip others' alerts: read on until the page is full, or
        // [`MAX_ALERTS_EXAMINED`] were looked at (the reader goes on from there).
        let mut looked = 0usize;
        loop {
            let chunk = store.catalog().kv_after(ALERTS, &from, limit.max(1))?;
            let Some((last, _)) = chunk.last() else {
                return Ok((out, examined));
            };
            from = last.clone();
            let done = chunk.len() < limit.max(1);
            for (key, v) in chunk {
                examined = id_of(&key).or(examined);
                looked += 1;
                let a: Value = serde_json::from_slice(&v)
                    .map_err(|e| ApiError::internal(format!("an alert: {e}")))?;
                if scope.is_none_or(|s| s.iter().any(|c| a["community"] == c.as_str())) {
                    out.push(a);
                    if out.len() == limit {
                        return Ok((out, examined));
                    }
                }
            }
            if done || looked >= MAX_ALERTS_EXAMINED {
                return Ok((out, examined));
            }
        }
    }

    /// The newest alerts, at most `n`, of `scope` when given and that `keep` keeps,
    /// oldest first; and the id of the last alert written, read before them (where a
    /// reader goes on from). Read backwards in windows that double, looking at most at
    /// [`MAX_ALERTS_EXAMINED`] alerts.
    pub fn latest(
        &self,
        store: &Store,
        n: usize,
        scope: Option<&[String]>,
        keep: &dyn Fn(&Value) -> bool,
    ) -> Result<(Vec<Value>, u64), ApiError> {
        let head = self.last();
        let (mut hi, mut window, mut looked) = (head, 256u64, 0usize);
        let mut newest_first: Vec<Value> = Vec::new();
        while hi > 0 && newest_first.len() < n && looked < MAX_ALERTS_EXAMINED {
            let lo = hi.saturating_sub(window);
            let span = usize::try_from(hi - lo).unwrap_or(usize::MAX);
            let chunk = store
                .catalog()
                .kv_after(ALERTS, &format!("{lo:016x}"), span)?;
            let mut part = Vec::new();
            for (key, v) in chunk {
                match u64::from_str_radix(&key, 16) {
                    Ok(id) if id <= hi => {}
                    _ => break,
                }
                looked += 1;
                let a: Value = serde_json::from_slice(&v)
                    .map_err(|e| ApiError::internal(format!("an alert: {e}")))?;
                let in_scope = scope.is_none_or(|s| s.iter().any(|c| a["community"] == c.as_str()));
                if in_scope && keep(&a) {
                    part.push(a);
                }
            }
            newest_first.extend(part.into_iter().rev());
            hi = lo;
            window = window.saturating_mul(2);
        }
        newest_first.truncate(n);
        newest_first.reverse();
        Ok((newest_first, head))
    }

    /// The id of the last alert written.
    pub fn last(&self) -> u64 {
        *self.next.lock().expect("alerts") - 1
    }
}
