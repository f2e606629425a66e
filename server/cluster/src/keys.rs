//! The cluster's API keys: one PostgreSQL table every node reads, so a key made or
//! revoked once holds on every query and ingest node.
//!
//! ```sql
//! api_keys (id text PRIMARY KEY,            -- the token's public part, sl_<id>_…
//!           name text,
//!           token_sha256 text UNIQUE,       -- hex SHA-256 of the whole token (never the token)
//!           role text,                      -- ingest | investigate | admin
//!           communities text[],             -- the key's scope; NULL: every community
//!           created_at timestamptz, revoked_at timestamptz)
//! ```
//!
//! A revoked key's row is kept (as a single node's catalog keeps it): a cluster whose
//! table has ever held a key is never open to anonymous callers again. Times are the
//! database's. The rows are [`ApiKeyRecord`]s, the single node's key records, so the
//! server checks a cluster key exactly as `sightline serve` checks one of its own.

use sightline_storage::ApiKeyRecord;

use crate::error::{ClusterError, Result};
use crate::meta::Meta;

/// The columns a record is read from, in [`record_of`]'s order.
const COLUMNS: &str = "id, name, role, communities, token_sha256,
    (extract(epoch FROM created_at) * 1000)::bigint,
    (extract(epoch FROM revoked_at) * 1000)::bigint";

fn record_of(r: &tokio_postgres::Row) -> ApiKeyRecord {
    ApiKeyRecord {
        id: r.get(0),
        name: r.get(1),
        role: r.get(2),
        communities: r.get(3),
        token_sha256: r.get(4),
        created_ms: r.get(5),
        revoked_ms: r.get(6),
    }
}

impl Meta {
    /// Every key, active and revoked, oldest first.
    pub async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        let rows = self
            .client
            .query(
                &format!("SELECT {COLUMNS} FROM api_keys ORDER BY created_at, id"),
                &[],
            )
            .await
            .map_err(ClusterError::pg("read API keys"))?;
        Ok(rows.iter().map(record_of).collect())
    }

    /// Adds a key (`created_ms` and `revoked_ms` of `key` are ignored: the database
    /// sets the creation time); returns it as stored.
    pub async fn add_api_key(&self, key: &ApiKeyRecord) -> Result<ApiKeyRecord> {
        let row = self
            .client
            .query_one(
                &format!(
                    "INSERT INTO api_keys (id, name, token_sha256, role, communities)
                     VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
                ),
                &[
                    &key.id,
                    &key.name,
                    &key.token_sha256,
                    &key.role,
                    &key.communities,
                ],
            )
            .await
            .map_err(ClusterError::pg("add an API key"))?;
        Ok(record_of(&row))
    }

    /// Revokes key `id` now (a key revoked already keeps its time); `None` when there
    /// is no such key.
    pub async fn revoke_api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>> {
        let row = self
            .client
            .query_opt(
                &format!(
                    "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
                     WHERE id = $1 RETURNING {COLUMNS}"
                ),
                &[&id],
            )
            .await
            .map_err(ClusterError::pg("revoke an API key"))?;
        Ok(row.as_ref().map(record_of))
    }
}
