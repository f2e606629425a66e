//! API keys: roles, community scopes, and how a request proves which key it holds.
//!
//! A token is `sl_<id>_<secret>`; the catalog keeps only its SHA-256. Keys are created
//! and revoked live (`POST/DELETE /v1/keys`) or, server stopped, with `sightline keys`;
//! either way [`Keys::reload`] makes the change effective at once.
//!
//! Without keys nobody is let in: every keyed request is refused (401). The one way to
//! run without keys is `--no-auth` (loopback only), and even then only while the store
//! has never held a key: once one has been created, revoking the last one closes the
//! server rather than opening it.

use std::collections::HashMap;
use std::sync::RwLock;

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
    /// Set once an audit entry for this request is written (so a refusal the handler
    /// already audited is not audited twice).
    pub(crate) audited: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Caller {
    /// The key id of [`Caller::anonymous`] (key ids are hex, so no key has it).
    pub const ANONYMOUS: &'static str = "anonymous";

    /// Whether this is a key's caller, not [`Caller::anonymous`].
    pub fn is_keyed(&self) -> bool {
        self.key_id != Caller::ANONYMOUS
    }

    /// Anyone, as an admin of every community: the public routes, GA/T 1400 (which
    /// authenticates on its own), and a `--no-auth` server.
    pub fn anonymous() -> Caller {
        Caller {
            key_id: Caller::ANONYMOUS.into(),
            role: Role::Admin,
            communities: None,
            audited: Default::default(),
        }
    }

    /// Whether the caller's communities include `community`.
    pub fn sees(&self, community: &str) -> bool {
        self.communities
            .as_ref()
            .is_none_or(|c| c.iter().any(|x| x == community))
    }

    /// Refuses a request whose field `field` names a community outside the caller's:
    /// 403 naming the field and the community. An investigator's "nothing found" then
    /// always means nothing was there, never "not yours to see".
    pub fn check_communities(&self, field: &str, codes: &[String]) -> Result<(), ApiError> {
        match codes.iter().find(|c| !self.sees(c)) {
            None => Ok(()),
            Some(code) => Err(ApiError::OutOfScope {
                field: field.to_string(),
                message: format!("{field}: community {code} is outside this key's communities"),
            }),
        }
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

    /// Refuses a caller whose role does not allow `needed`: 403 naming both.
    pub fn needs(&self, needed: Role) -> Result<(), ApiError> {
        match self.role.allows(needed) {
            true => Ok(()),
            false => Err(ApiError::Forbidden(format!(
                "key {} has role {}; this needs {}",
                self.key_id,
                self.role.as_str(),
                needed.as_str()
            ))),
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

/// The keys of a running server: the active ones by token hash, and whether the store
/// ever held one.
pub struct Keys {
    set: RwLock<KeySet>,
    /// `--no-auth`: anyone (on loopback) is an admin while the store has never held a key.
    no_auth: bool,
}

struct KeySet {
    by_hash: HashMap<String, ApiKeyRecord>,
    /// Any key record, active or revoked (revoked records are kept).
    ever: bool,
}

impl KeySet {
    fn load(store: &Store) -> Result<KeySet, StorageError> {
        let all = store.catalog().api_keys()?;
        Ok(KeySet {
            ever: !all.is_empty(),
            by_hash: all
                .into_iter()
                .filter(|k| k.revoked_ms.is_none())
                .map(|k| (k.token_sha256.clone(), k))
                .collect(),
        })
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The key id a token names (`sl_<id>_…`), when it looks like one; for the audit
/// entry of a refusal (never trusted for anything else).
pub fn claimed_id(token: &str) -> Option<&str> {
    let (id, _) = token.strip_prefix("sl_")?.split_once('_')?;
    (!id.is_empty() && id.len() <= 16 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

impl Keys {
    /// The store's keys; `no_auth` as `--no-auth` says.
    pub fn load(store: &Store, no_auth: bool) -> Result<Keys, StorageError> {
        Ok(Keys {
            set: RwLock::new(KeySet::load(store)?),
            no_auth,
        })
    }

    /// Reads the keys again (after one was created or revoked): effective for the
    /// next request.
    pub fn reload(&self, store: &Store) -> Result<(), StorageError> {
        let fresh = KeySet::load(store)?;
        *self.set.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, KeySet> {
        self.set.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether anyone is let in as an admin: `--no-auth` and the store has never held
    /// a key.
    pub fn is_open(&self) -> bool {
        self.no_auth && !self.read().ever
    }

    /// Whether no key is active (every keyed request is refused unless open).
    pub fn is_empty(&self) -> bool {
        self.read().by_hash.is_empty()
    }

    /// The communities of key `id` (`None`: every community, or no such key).
    pub fn scope_of(&self, id: &str) -> Option<Option<Vec<String>>> {
        self.read()
            .by_hash
            .values()
            .find(|k| k.id == id)
            .map(|k| k.communities.clone())
    }

    /// The name of active key `id`, if there is one.
    pub fn name_of(&self, id: &str) -> Option<String> {
        self.read()
            .by_hash
            .values()
            .find(|k| k.id == id)
            .map(|k| k.name.clone())
    }

    /// The caller behind a request's `Authorization: Bearer <token>` (or `X-Api-Key`)
    /// header, allowed `needed`.
    pub fn authorize(&self, token: Option<&str>, needed: Role) -> Result<Caller, ApiError> {
        if self.is_open() {
            return Ok(Caller::anonymous());
        }
        let set = self.read();
        let unauthorized = |m: &str| ApiError::Unauthorized(m.to_string());
        if set.by_hash.is_empty() {
            return Err(unauthorized(
                "no API key is active on this server, so every request is refused: create one \
                 with `sightline keys create` (server stopped), or run a loopback-only server \
                 over a store that never had keys with --no-auth",
            ));
        }
        let token =
            token.ok_or_else(|| unauthorized("send an API key: Authorization: Bearer sl_…"))?;
        let key = set
            .by_hash
            .get(&sha256_hex(token.as_bytes()))
            .ok_or_else(|| unauthorized(UNKNOWN_KEY))?;
        grant(key, needed)
    }

    /// The id of the active key one of `names` is (a client certificate's names).
    pub fn named_by(&self, names: &[String]) -> Option<String> {
        let set = self.read();
        let key = set.by_hash.values().find(|k| names.contains(&k.id))?;
        Some(key.id.clone())
    }

    /// The caller a verified client certificate names (mTLS) when the request sends no
    /// API key: the active key whose id is the certificate's subject CN or one of its
    /// DNS names, allowed `needed`.
    pub fn authorize_cert(&self, names: &[String], needed: Role) -> Result<Caller, ApiError> {
        if self.is_open() {
            return Ok(Caller::anonymous());
        }
        let set = self.read();
        let key = set
            .by_hash
            .values()
            .find(|k| names.contains(&k.id))
            .ok_or_else(|| {
                ApiError::Unauthorized(
                    "send an API key: the client certificate names no active key (its CN or \
                     a DNS name must be a key id)"
                        .into(),
                )
            })?;
        grant(key, needed)
    }
}

/// Why a request with an API key the server does not know (never created, or revoked)
/// is refused: its 401 says `error="invalid_token"` (RFC 6750 §3.1), which a request
/// without any key does not.
pub(crate) const UNKNOWN_KEY: &str = "unknown or revoked API key";

/// The caller holding `key`, if its role allows `needed`.
pub(crate) fn grant(key: &ApiKeyRecord, needed: Role) -> Result<Caller, ApiError> {
    let role = Role::parse(&key.role)
        .ok_or_else(|| ApiError::Unauthorized("key with an unknown role".into()))?;
    let caller = Caller {
        key_id: key.id.clone(),
        role,
        communities: key.communities.clone(),
        audited: Default::default(),
    };
    caller.needs(needed)?;
    Ok(caller)
}

/// A new key's id and token (`sl_<id>_<secret>`: 8 and 32 random hex digits).
pub fn new_token() -> (String, String) {
    let mut rng = rand::rng();
    let id: String = (0..8)
        .map(|_| format!("{:x}", rng.random_range(0..16u8)))
        .collect();
    let secret: String = (0..32)
        .map(|_| format!("{:x}", rng.random_range(0..16u8)))
        .collect();
    let token = format!("sl_{id}_{secret}");
    (id, token)
}

/// A new key's record and its token (shown once; the record keeps its SHA-256 only).
pub fn new_key(
    name: &str,
    role: Role,
    communities: Option<Vec<String>>,
    now_ms: i64,
) -> (ApiKeyRecord, String) {
    let (id, token) = new_token();
    let record = ApiKeyRecord {
        id,
        name: name.to_string(),
        role: role.as_str().to_string(),
        communities,
        token_sha256: sha256_hex(token.as_bytes()),
        created_ms: now_ms,
        revoked_ms: None,
    };
    (record, token)
}

/// Creates a key; returns its record and the token, shown once.
pub fn create(
    store: &Store,
    name: &str,
    role: Role,
    communities: Option<Vec<String>>,
    now_ms: i64,
) -> Result<(ApiKeyRecord, String), StorageError> {
    let (record, token) = new_key(name, role, communities, now_ms);
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
