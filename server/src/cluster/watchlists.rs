//! `GET /v1/watchlists`, `POST /v1/watchlists` and `DELETE /v1/watchlists/{id}` on a
//! query node, over the cluster's `watchlists` table
//! (`sightline_cluster::watchlists`), with `serve`'s checks, JSON, errors and scope
//! rules (`crate::watchlists`): a list is scoped to the creating key's communities; a
//! key lists and deletes only the lists its communities cover (another's is 404
//! `no_such_watchlist`, as if there were none); a new list's wildcard and fuzzy
//! entries are bounded per community as `serve` bounds them
//! (`max_scanned_watch_entries`, `serve`'s default), and all lists' entries together
//! (`max_watch_entries`, likewise); checked against the table as read, so two lists
//! made at once may both pass it. Every call bounded as the
//! catalog's (`super::catalog`): 503 `storage_unavailable` when PostgreSQL does not
//! answer within `index.lease_ms`.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sightline_cluster::watchlists::WatchlistRow;

use super::catalog::{on_meta, Catalog};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::http::Body;
use crate::params::Params;
use crate::watchlists::{handlers, room_for, Watchlist};

/// How often the highest alert id is read while a `GET /v1/alerts` waits (`wait`).
const ALERTS_POLL: Duration = Duration::from_millis(250);

/// The highest alert id, read every [`ALERTS_POLL`] on a connection of its own by
/// one task per query node, and only while some `GET /v1/alerts` waits: waiting
/// readers watch it and read the table again only when it passes their cursor, so
/// a hundred consoles waiting cost PostgreSQL four small reads a second, not four
/// hundred page reads queued on the catalog's connection.
pub(super) struct AlertHead {
    latest: tokio::sync::watch::Sender<u64>,
    waiters: std::sync::atomic::AtomicUsize,
    wake: tokio::sync::Notify,
}

/// A reader waiting: counted while it lives.
struct Waiting<'a>(&'a AlertHead);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0
            .waiters
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl AlertHead {
    fn start(catalog: Catalog) -> std::sync::Arc<AlertHead> {
        let head = std::sync::Arc::new(AlertHead {
            latest: tokio::sync::watch::Sender::new(0),
            waiters: std::sync::atomic::AtomicUsize::new(0),
            wake: tokio::sync::Notify::new(),
        });
        let h = head.clone();
        tokio::spawn(async move {
            loop {
                // Registered before the count is read: a reader arriving between
                // the two wakes it.
                let woken = h.wake.notified();
                if h.waiters.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                    woken.await;
                    continue;
                }
                let read =
                    async { on_meta!(catalog, "read the last alert id", |m| m.last_alert_id()) };
                match read.await {
                    Ok(id) => {
                        h.latest.send_if_modified(|v| match id > *v {
                            true => {
                                *v = id;
                                true
                            }
                            false => false,
                        });
                    }
                    Err(e) => tracing::debug!(error = %e, "the last alert id not read"),
                }
                tokio::time::sleep(ALERTS_POLL).await;
            }
        });
        head
    }

    /// Waits until an alert past `after` exists, or `deadline`.
    async fn wait_past(&self, after: u64, deadline: Instant) {
        let mut latest = self.latest.subscribe();
        self.waiters
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _waiting = Waiting(self);
        self.wake.notify_one();
        let until = tokio::time::Instant::from_std(deadline);
        let _ = tokio::time::timeout_at(until, latest.wait_for(|&id| id > after)).await;
    }
}

/// A stored list as `serve` has it.
pub(crate) fn watchlist_of_row(row: WatchlistRow) -> Result<Watchlist, ApiError> {
    let entries = serde_json::from_str(&row.entries_json)
        .map_err(|e| ApiError::internal(format!("watchlist {}'s stored entries: {e}", row.id)))?;
    Ok(Watchlist {
        id: row.id,
        name: row.name,
        reason: row.reason,
        expires_ms: row.expires_ms,
        entries,
        scope: row.scope,
    })
}

pub(super) fn row_of(w: &Watchlist) -> WatchlistRow {
    WatchlistRow {
        id: w.id.clone(),
        name: w.name.clone(),
        reason: w.reason.clone(),
        expires_ms: w.expires_ms,
        entries_json: serde_json::to_string(&w.entries).expect("serializes"),
        scope: w.scope.clone(),
    }
}

/// A stored alert as the API answers it: its body with its id and, once the event's
/// indexer has recorded it (`sightline_cluster::alerts`), the event's cluster id
/// (`null` until then).
fn alert_value((id, body, event_id): (u64, String, Option<u64>)) -> Result<Value, ApiError> {
    let mut v: Value = serde_json::from_str(&body)
        .map_err(|e| ApiError::internal(format!("stored alert {id}: {e}")))?;
    v["id"] = id.into();
    if let Some(e) = event_id {
        v["event_id"] = e.into();
        v["event"]["id"] = e.into();
    }
    Ok(v)
}

impl Catalog {
    /// Every watchlist of the table.
    /// The lists whose rows read, and (id: why) of those whose stored entries do not
    /// (written by hand or by a newer version): the ingest nodes' matcher goes on with
    /// the rest and says which it lacks, rather than refusing every event for one row.
    pub(super) async fn readable_watchlists(
        &self,
    ) -> Result<(Vec<Watchlist>, Vec<String>), ApiError> {
        let (mut lists, mut unreadable) = (Vec::new(), Vec::new());
        for row in on_meta!(self, "read watchlists", |m| m.watchlists())? {
            let id = row.id.clone();
            match watchlist_of_row(row) {
                Ok(w) => lists.push(w),
                Err(e) => unreadable.push(format!("{id}: {e}")),
            }
        }
        Ok((lists, unreadable))
    }

    pub(super) async fn watchlists(&self) -> Result<Vec<Watchlist>, ApiError> {
        on_meta!(self, "read watchlists", |m| m.watchlists())?
            .into_iter()
            .map(watchlist_of_row)
            .collect()
    }

    /// `GET /v1/watchlists`: those `caller` covers.
    pub(super) async fn list_watchlists(&self, caller: &Caller) -> Result<(Body, usize), ApiError> {
        Ok(handlers::visible(caller, self.watchlists().await?))
    }

    /// `POST /v1/watchlists` with `body`.
    pub(super) async fn create_watchlist(
        &self,
        caller: &Caller,
        body: &[u8],
    ) -> Result<Value, ApiError> {
        let w = handlers::watchlist_of(body, caller)?;
        room_for(
            self.watchlists().await?,
            &w,
            crate::watchlists::Room::DEFAULT,
        )?;
        on_meta!(self, "put a watchlist", |m| m.put_watchlist(&row_of(&w)))?;
        Ok(serde_json::to_value(&w).expect("serializes"))
    }

    /// `DELETE /v1/watchlists/{id}`: a list `caller` does not cover is, to it, none.
    pub(super) async fn delete_watchlist(
        &self,
        caller: &Caller,
        id: String,
    ) -> Result<Value, ApiError> {
        // The rows as stored: a list whose entries do not read can still be deleted
        // by a key its scope covers.
        let covered = on_meta!(self, "read watchlists", |m| m.watchlists())?
            .iter()
            .any(|w| w.id == id && caller.covers(w.scope.as_deref()));
        if !covered || !on_meta!(self, "delete a watchlist", |m| m.delete_watchlist(&id))? {
            return Err(ApiError::NoSuchWatchlist(id));
        }
        Ok(json!({ "deleted": id }))
    }

    /// `GET /v1/alerts?after=&limit=&wait=`: `serve`'s cursor and answer over the
    /// `alerts` table (written by the ingest nodes: `super::alerting`), of `caller`'s
    /// communities and, for a scoped key, of the lists it covers; waiting up to
    /// `wait` for some, reading the table again whenever the node's [`AlertHead`]
    /// passes the cursor.
    pub(super) async fn alerts(
        &self,
        caller: &Caller,
        params: &Params,
        max_rows: usize,
    ) -> Result<(Value, usize), ApiError> {
        let (mut after, limit, wait) = handlers::alerts_params(params, max_rows)?;
        let deadline = Instant::now() + wait;
        let scope = caller.communities.as_deref();
        if let Some(n) = handlers::latest_param(params)? {
            // The newest `n` the key may read (as `serve`): the head read first (ids
            // are committed in order), then the newest rows of its communities, of
            // the lists it covers (read four times over for a scoped key, which may
            // cover few of them).
            let head = on_meta!(self, "read the last alert id", |m| m.last_alert_id())?;
            let want = match scope {
                Some(_) => n.saturating_mul(4),
                None => n,
            };
            let rows = on_meta!(self, "read the latest alerts", |m| m
                .latest_alerts(want, scope))?;
            let mut all = rows
                .into_iter()
                .filter(|(id, _, _)| *id <= head)
                .map(alert_value)
                .collect::<Result<Vec<_>, _>>()?;
            all.reverse();
            let mut alerts = match scope {
                Some(_) if !all.is_empty() => {
                    handlers::covered_alerts(caller, self.watchlists().await?, all)
                }
                _ => all,
            };
            let cut = alerts.len().saturating_sub(n);
            alerts.drain(..cut);
            let n = alerts.len();
            return Ok((handlers::alerts_answer(alerts, head), n));
        }
        loop {
            // Every alert up to it was committed before the read below: one past it
            // is what a wait is for (alerts of communities out of a key's scope are
            // not read at all, so the cursor alone would wake the wait at once).
            let seen = self.alert_head.get().map_or(0, |h| *h.latest.borrow());
            // For a scoped key: the last alert of any community before the page is
            // read (ids are committed in order), so its cursor can move past other
            // communities' alerts, which it never reads.
            let head_before = match scope {
                Some(_) => on_meta!(self, "read the last alert id", |m| m.last_alert_id())?,
                None => 0,
            };
            let rows = on_meta!(self, "read alerts", |m| m.alerts_after(after, limit, scope))?;
            let all = rows
                .into_iter()
                .map(alert_value)
                .collect::<Result<Vec<_>, _>>()?;
            // Fewer than a page: every alert of the scope up to `head_before` was
            // read, so the cursor moves past it too (other communities' alerts would
            // otherwise hold it back for good).
            let scanned = match all.len() < limit && head_before > after {
                true => handlers::last_id(&all).max(Some(head_before)),
                false => handlers::last_id(&all),
            };
            let alerts = match scope {
                Some(_) if !all.is_empty() => {
                    handlers::covered_alerts(caller, self.watchlists().await?, all)
                }
                _ => all,
            };
            let next = scanned.unwrap_or(after);
            let now = Instant::now();
            if !alerts.is_empty() || now >= deadline {
                let n = alerts.len();
                return Ok((handlers::alerts_answer(alerts, next), n));
            }
            if scanned.is_some() {
                // A page of other lists' alerts only: look past it at once.
                after = next;
                continue;
            }
            let head = self
                .alert_head
                .get_or_init(|| AlertHead::start(self.sibling()));
            // An alert past the cursor, or the deadline: the page read again (at the
            // deadline that read answers, or its error: a PostgreSQL away is 503, not
            // an empty page).
            head.wait_past(after.max(seen), deadline).await;
        }
    }
}
