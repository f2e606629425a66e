//! API keys: roles, community scopes, and how a request proves which key it holds.
//!
//! A token is `sl_<id>_<secret>`; the catalog keeps only its SHA-256. With no keys
//! configured, the server answers anyone on loopback (and refuses other addresses).

use std::collections::HashMap;

use rand::Rng;
use sha2::{Digest, Sha256};
use sightline_storage::{ApiKeyRecord, StorageError, Store};

use crate::error::ApiError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Ingest,
    Investigate,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "ingest" => Some(Role::Ingest),
            "investigate" => Some(Role::Investigate),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Investigate => "investigate",
            Role::Admin => "admin",
        }
    }
    /// Admin may do everything; the others only their own.
    pub fn allows(self, needed: Role) -> bool {
        self == needed || self == Role::Admin
    }
}

/// Who is asking.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Key id, or `anonymous` when no keys are configured.
    pub key_id: String,
    pub role: Role,
    /// Community codes this caller may see; all when `None`.
    pub communities: Option<Vec<String>>,
}

impl Caller {
    /// Whether the caller's communities include `community`.
    pub fn sees(&self, community: &str) -> bool {
        self.communities
            .as_ref()
            .is_none_or(|c| c.iter().any(|x| x == community))
    }

    /// Whether something scoped to `scope` (`None`: every community) lies within the
    /// caller's communities.
    pub fn covers(&self, scope: Option<&[String]>) -> bool {
        match (&self.communities, scope) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(_), Some(s)) => s.iter().all(|c| self.sees(c)),
        }
    }

    /// City-wide powers (retention, keys) need a key without a community scope.
    pub fn city_wide(&self) -> Result<(), ApiError> {
        match self.communities {
            None => Ok(()),
            Some(_) => Err(ApiError::Forbidden(format!(
                "key {} is scoped to communities; this needs a key for the whole city",
                self.key_id
            ))),
        }
    }
}

/// The active keys, by token hash.
pub struct Keys {
    by_hash: HashMap<String, ApiKeyRecord>,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Keys {
    pub fn load(store: &Store) -> Result<Keys, StorageError> {
        let by_hash = store
            .catalog()
            .api_keys()?
            .into_iter()
            .filter(|k| k.revoked_ms.is_none())
            .map(|k| (k.token_sha256.clone(), k))
            .collect();
        Ok(Keys { by_hash })
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// The communities of key `id` (`None`: every community, or no such key).
    pub fn scope_of(&self, id: &str) -> Option<Option<Vec<String>>> {
        self.by_hash
            .values()
            .find(|k| k.id == id)
            .map(|k| k.communities.clone())
    }

    /// The caller behind a request's `Authorization: Bearer <token>` (or `X-Api-Key`)
    /// header, allowed `needed`.
    pub fn authorize(&self, token: Option<&str>, needed: Role) -> Result<Caller, ApiError> {
        if self.is_empty() {
            return Ok(Caller {
                key_id: "anonymous".into(),
                role: Role::Admin,
                communities: None,
            });
        }
        let unauthorized = |m: &str| ApiError::Unauthorized(m.to_string());
        let token =
            token.ok_or_else(|| unauthorized("send an API key: Authorization: Bearer sl_…"))?;
        let key = self
            .by_hash
            .get(&sha256_hex(token.as_bytes()))
            .ok_or_else(|| unauthorized("unknown or revoked API key"))?;
        let role =
            Role::parse(&key.role).ok_or_else(|| unauthorized("key with an unknown role"))?;
        if !role.allows(needed) {
            return Err(ApiError::Forbidden(format!(
                "key {} has role {}; this needs {}",
                key.id,
                role.as_str(),
                needed.as_str()
            )));
        }
        Ok(Caller {
            key_id: key.id.clone(),
            role,
            communities: key.communities.clone(),
        })
    }
}

/// Creates a key; returns its record and the token, shown once.
pub fn create(
    store: &Store,
    name: &str,
    role: Role,
    communities: Option<Vec<String>>,
    now_ms: i64,
) -> Result<(ApiKeyRecord, String), StorageError> {
    let mut rng = rand::rng();
    let id: String = (0..8)
        .map(|_| format!("{:x}", rng.random_range(0..16u8)))
        .collect();
    let secret: String = (0..32)
        .map(|_| format!("{:x}", rng.random_range(0..16u8)))
        .collect();
    let token = format!("sl_{id}_{secret}");
    let record = ApiKeyRecord {
        id,
        name: name.to_string(),
        role: role.as_str().to_string(),
        communities,
        token_sha256: sha256_hex(token.as_bytes()),
        created_ms: now_ms,
        revoked_ms: None,
    };
    store.catalog().put_api_key(&record)?;
    Ok((record, token))
}

/// Revokes key `id`; false if there is no such key.
pub fn revoke(store: &Store, id: &str, now_ms: i64) -> Result<bool, StorageError> {
    let Some(mut k) = store.catalog().api_keys()?.into_iter().find(|k| k.id == id) else {
        return Ok(false);
    };
    k.revoked_ms.get_or_insert(now_ms);
    store.catalog().put_api_key(&k)?;
    Ok(true)
}
