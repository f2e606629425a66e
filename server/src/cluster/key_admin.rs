//! `GET /v1/keys`, `POST /v1/keys` and `DELETE /v1/keys/{id}` on a query node, over
//! the cluster's `api_keys` table (`sightline_cluster::keys`), with `serve`'s checks,
//! JSON and errors (`crate::keys::{key_request, key_json}`): an unscoped admin key
//! only (403 otherwise), the token answered once (only its SHA-256 is stored), a
//! revoked key's row kept. The node answering takes the table again at once; every
//! other node within its keys' renewal (`index.renew_ms`, `super::keys`).
//! Every call bounded as the catalog's (`super::catalog`): 503 `storage_unavailable`
//! when PostgreSQL does not answer within `index.lease_ms`.

use std::time::Instant;

use serde_json::{json, Value};

use super::catalog::{on_meta, Catalog};
use super::keys::ClusterKeys;
use crate::auth::{self, Caller};
use crate::error::ApiError;
use crate::keys::{key_json, key_request};

impl Catalog {
    /// `GET /v1/keys`: every key, active and revoked, without tokens.
    pub(super) async fn keys(&self, caller: &Caller) -> Result<(Value, usize), ApiError> {
        caller.city_wide()?;
        let all = on_meta!(self, "read API keys", |m| m.api_keys())?;
        let n = all.len();
        Ok((
            json!({ "keys": all.iter().map(key_json).collect::<Vec<_>>() }),
            n,
        ))
    }

    /// `POST /v1/keys` with `body`: the new key, with its token (this once).
    pub(super) async fn create_key(
        &self,
        caller: &Caller,
        keys: &ClusterKeys,
        body: &[u8],
    ) -> Result<Value, ApiError> {
        caller.city_wide()?;
        let (name, role, communities) = key_request(body)?;
        // The database sets the creation time.
        let (record, token) = auth::new_key(&name, role, communities, 0);
        let stored = on_meta!(self, "add an API key", |m| m.add_api_key(&record))?;
        self.reload(keys).await;
        let mut v = key_json(&stored);
        v["token"] = token.into();
        Ok(v)
    }

    /// `DELETE /v1/keys/{id}`: the key revoked (a key revoked already keeps its time).
    pub(super) async fn revoke_key(
        &self,
        caller: &Caller,
        keys: &ClusterKeys,
        id: String,
    ) -> Result<Value, ApiError> {
        caller.city_wide()?;
        let revoked = on_meta!(self, "revoke an API key", |m| m.revoke_api_key(&id))?
            .ok_or(ApiError::NoSuchKey(id))?;
        self.reload(keys).await;
        Ok(key_json(&revoked))
    }

    /// This node's keys taken from the table now, so a change is in force here for
    /// the next request (as on `serve`); a failed read leaves it to the renewal task.
    async fn reload(&self, keys: &ClusterKeys) {
        let asked = Instant::now();
        let read = async { on_meta!(self, "read API keys", |m| m.api_keys()) };
        match read.await {
            Ok(all) => keys.install(all, asked),
            Err(e) => {
                tracing::warn!(error = %e, "API keys not read again after a change; the renewal task will")
            }
        }
    }
}
