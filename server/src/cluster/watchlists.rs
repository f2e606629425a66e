//! `GET /v1/watchlists`, `POST /v1/watchlists` and `DELETE /v1/watchlists/{id}` on a
//! query node, over the cluster's `watchlists` table
//! (`sightline_cluster::watchlists`), with `serve`'s checks, JSON, errors and scope
//! rules (`crate::watchlists`): a list is scoped to the creating key's communities; a
//! key lists and deletes only the lists its communities cover (another's is 404
//! `no_such_watchlist`, as if there were none); a new list's wildcard and fuzzy
//! entries are bounded per community as `serve` bounds them
//! (`max_scanned_watch_entries`, `serve`'s default; checked against the table as
//! read, so two lists made at once may both pass it). Every call bounded as the
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

/// How often a `GET /v1/alerts` waiting for alerts (`wait`) asks the table again.
const ALERTS_POLL: Duration = Duration::from_millis(250);

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

fn row_of(w: &Watchlist) -> WatchlistRow {
    WatchlistRow {
        id: w.id.clone(),
        name: w.name.clone(),
        reason: w.reason.clone(),
        expires_ms: w.expires_ms,
        entries_json: serde_json::to_string(&w.entries).expect("serializes"),
        scope: w.scope.clone(),
    }
}

impl Catalog {
    /// Every watchlist of the table.
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
            crate::watchlists::DEFAULT_MAX_SCANNED,
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
        let covered = self
            .watchlists()
            .await?
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
    /// `wait` for some, asking the table every [`ALERTS_POLL`].
    pub(super) async fn alerts(
        &self,
        caller: &Caller,
        params: &Params,
        max_rows: usize,
    ) -> Result<(Value, usize), ApiError> {
        let (mut after, limit, wait) = handlers::alerts_params(params, max_rows)?;
        let deadline = Instant::now() + wait;
        let scope = caller.communities.as_deref();
        loop {
            let rows = on_meta!(self, "read alerts", |m| m.alerts_after(after, limit, scope))?;
            let mut all = Vec::with_capacity(rows.len());
            for (id, body, event_id) in rows {
                let mut v: Value = serde_json::from_str(&body)
                    .map_err(|e| ApiError::internal(format!("stored alert {id}: {e}")))?;
                v["id"] = id.into();
                // The cluster id, once the event's indexer has recorded it
                // (`sightline_cluster::alerts`); `null` until then.
                if let Some(e) = event_id {
                    v["event_id"] = e.into();
                    v["event"]["id"] = e.into();
                }
                all.push(v);
            }
            let scanned = handlers::last_id(&all);
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
            tokio::time::sleep(ALERTS_POLL.min(deadline - now)).await;
        }
    }
}
