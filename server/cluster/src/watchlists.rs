//! The cluster's watchlists: one PostgreSQL table every query node reads and writes,
//! holding what `sightline serve` keeps in its catalog's `watchlists` tree, field for
//! field.
//!
//! ```sql
//! watchlists (id text PRIMARY KEY,          -- 16 hex digits, made by the server
//!             name text, reason text,
//!             expires_ms bigint,            -- epoch ms; NULL: until deleted
//!             entries jsonb,                -- serve's entries, as its JSON says them
//!             scope text[],                 -- the creating key's communities; NULL: every one
//!             disposer text,                -- a GA/T 1400 disposition's platform;
//!                                           --   NULL: a `/v1` watchlist
//!             created_at timestamptz)
//! ```
//!
//! A disposition (`/VIID/Dispositions`) is written and revoked only by the platform
//! that made it ([`Meta::put_disposition`], [`Meta::revoke_disposition`]): another
//! platform's, or a `/v1` watchlist of the same id, is refused. A `/v1` write of a
//! list makes it a `/v1` one (its disposer cleared).
//!
//! The entries are kept as the server's JSON (this crate does not know their shape:
//! the server checks a list before it writes it, with `serve`'s own functions).

use crate::error::{ClusterError, Result};
use crate::meta::Meta;

/// A `watchlists` row.
#[derive(Clone, Debug, PartialEq)]
pub struct WatchlistRow {
    pub id: String,
    pub name: String,
    pub reason: String,
    pub expires_ms: Option<i64>,
    /// The entries, a JSON array as the server wrote it.
    pub entries_json: String,
    pub scope: Option<Vec<String>>,
}

fn row_of(r: &tokio_postgres::Row) -> WatchlistRow {
    WatchlistRow {
        id: r.get(0),
        name: r.get(1),
        reason: r.get(2),
        expires_ms: r.get(3),
        entries_json: r.get(4),
        scope: r.get(5),
    }
}

impl Meta {
    /// Every watchlist, by id.
    pub async fn watchlists(&self) -> Result<Vec<WatchlistRow>> {
        let rows = self
            .client
            .query(
                "SELECT id, name, reason, expires_ms, entries::text, scope
                 FROM watchlists ORDER BY id",
                &[],
            )
            .await
            .map_err(ClusterError::pg("read watchlists"))?;
        Ok(rows.iter().map(row_of).collect())
    }

    /// Adds (or replaces) a watchlist.
    pub async fn put_watchlist(&self, w: &WatchlistRow) -> Result<()> {
        self.client
            .execute(
                "INSERT INTO watchlists (id, name, reason, expires_ms, entries, scope)
                 VALUES ($1, $2, $3, $4, $5::text::jsonb, $6)
                 ON CONFLICT (id) DO UPDATE SET name = $2, reason = $3, expires_ms = $4,
                     entries = $5::text::jsonb, scope = $6, disposer = NULL",
                &[
                    &w.id,
                    &w.name,
                    &w.reason,
                    &w.expires_ms,
                    &w.entries_json,
                    &w.scope,
                ],
            )
            .await
            .map_err(ClusterError::pg("put a watchlist"))?;
        Ok(())
    }

    /// Deletes watchlist `id`; whether there was one.
    pub async fn delete_watchlist(&self, id: &str) -> Result<bool> {
        let n = self
            .client
            .execute("DELETE FROM watchlists WHERE id = $1", &[&id])
            .await
            .map_err(ClusterError::pg("delete a watchlist"))?;
        Ok(n > 0)
    }

    /// Adds (or replaces) disposition `w` of `platform`: refused (false, nothing
    /// written) when a list of that id is there and is not `platform`'s disposition
    /// (another platform's, or a `/v1` watchlist).
    pub async fn put_disposition(&self, w: &WatchlistRow, platform: &str) -> Result<bool> {
        let n = self
            .client
            .execute(
                "INSERT INTO watchlists (id, name, reason, expires_ms, entries, scope, disposer)
                 VALUES ($1, $2, $3, $4, $5::text::jsonb, $6, $7)
                 ON CONFLICT (id) DO UPDATE SET name = $2, reason = $3, expires_ms = $4,
                     entries = $5::text::jsonb, scope = $6
                 WHERE watchlists.disposer = $7",
                &[
                    &w.id,
                    &w.name,
                    &w.reason,
                    &w.expires_ms,
                    &w.entries_json,
                    &w.scope,
                    &platform,
                ],
            )
            .await
            .map_err(ClusterError::pg("put a disposition"))?;
        Ok(n == 1)
    }

    /// Revokes `platform`'s disposition `id`: its list and its notifications'
    /// subscription `subscription`, in one transaction. `None` when either is there
    /// and is not `platform`'s (nothing deleted); else whether there was one.
    pub async fn revoke_disposition(
        &self,
        id: &str,
        subscription: &str,
        platform: &str,
    ) -> Result<Option<bool>> {
        let n = self
            .client
            .query_one(
                "WITH list AS (SELECT disposer FROM watchlists WHERE id = $1),
                      sub AS (SELECT owner FROM subscriptions WHERE id = $2),
                      theirs AS (
                          SELECT 1 FROM list WHERE disposer IS DISTINCT FROM $3
                          UNION ALL SELECT 1 FROM sub WHERE owner <> $3),
                      l AS (DELETE FROM watchlists WHERE id = $1 AND disposer = $3
                                AND NOT EXISTS (SELECT 1 FROM theirs) RETURNING 1),
                      s AS (DELETE FROM subscriptions WHERE id = $2 AND owner = $3
                                AND NOT EXISTS (SELECT 1 FROM theirs) RETURNING 1)
                 SELECT (SELECT count(*) FROM theirs),
                        (SELECT count(*) FROM l) + (SELECT count(*) FROM s)",
                &[&id, &subscription, &platform],
            )
            .await
            .map_err(ClusterError::pg("revoke a disposition"))?;
        let (theirs, deleted): (i64, i64) = (n.get(0), n.get(1));
        Ok((theirs == 0).then_some(deleted > 0))
    }
}
