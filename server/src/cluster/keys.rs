//! Who may ask a cluster's query and ingest nodes: the tokens listed in the node's
//! configuration, then the keys of the cluster's `api_keys` table in PostgreSQL
//! (`sightline_cluster::keys`), read by a task of their own.
//!
//! **Precedence.** A token whose SHA-256 is listed in `query.token_sha256` (on a query
//! node) or `ingest.token_sha256` (on an ingest node) is let in at once, with the
//! node's role and every community, whatever the table says (existing configurations
//! keep working; its audit entries name it `token_sha256:` + 12 hex digits of the
//! hash). Any other token must be an active key of the table whose role allows the
//! node's (`investigate` or `admin` on a query node, `ingest` or `admin` on an ingest
//! node; `serve`'s roles, checked by `auth::grant`), confined to its communities. No
//! key at all is asked for only while the node listens on a loopback address, lists
//! no token and the table has never held a key (as `serve --no-auth` over a store
//! that never had one): once a key was made, revoking the last one closes the node.
//!
//! **Loading.** The table is read every `index.renew_ms`, each connect and statement
//! bounded by `index.lease_ms` (a hung PostgreSQL never holds a request: requests read
//! only the last set read). A node that has not read it yet answers every request a
//! listed token does not cover 503 `storage_unavailable` rather than letting anyone
//! in; so does one whose last read is older than [`MAX_AGE`] (a revoked key must not
//! live on indefinitely on a node cut off from PostgreSQL). A key created or revoked
//! is in force on every node within one renewal interval.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sightline_cluster::meta::{bounded, Meta};
use sightline_cluster::ClusterConfig;
use sightline_storage::ApiKeyRecord;

use crate::auth::{self, Caller, Role};
use crate::error::ApiError;

/// A key set read longer ago than this no longer admits the table's keys (listed
/// tokens still work): five minutes, beyond a PostgreSQL failover (Patroni: ~30 s),
/// short enough that a revocation reaches a node cut off from the database soon.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(300);

/// The keys a node lets in.
pub(crate) struct ClusterKeys {
    /// The SHA-256 hashes listed in the configuration, lowercase.
    listed: Vec<String>,
    /// Whether the node may run without keys: a loopback listener, nothing listed.
    may_open: bool,
    /// What the node's endpoints need.
    role: Role,
    set: RwLock<Option<Loaded>>,
}

/// The table as last read.
struct Loaded {
    /// Active keys by token hash.
    by_hash: HashMap<String, ApiKeyRecord>,
    /// Whether the table holds any key, active or revoked.
    ever: bool,
    at: Instant,
}

impl ClusterKeys {
    /// The keys of a node whose endpoints need `role`, with `listed` hashes, listening
    /// on a loopback address or not.
    pub(crate) fn new(listed: &[String], loopback: bool, role: Role) -> Arc<ClusterKeys> {
        Arc::new(ClusterKeys {
            listed: listed.iter().map(|h| h.to_ascii_lowercase()).collect(),
            may_open: loopback && listed.is_empty(),
            role,
            set: RwLock::new(None),
        })
    }

    /// Takes `keys` (the whole table) as the set in force.
    pub(super) fn install(&self, keys: Vec<ApiKeyRecord>, at: Instant) {
        let loaded = Loaded {
            ever: !keys.is_empty(),
            by_hash: keys
                .into_iter()
                .filter(|k| k.revoked_ms.is_none())
                .map(|k| (k.token_sha256.to_ascii_lowercase(), k))
                .collect(),
            at,
        };
        *self.set.write().unwrap_or_else(|p| p.into_inner()) = Some(loaded);
    }

    /// How long ago the table was last read (`None`: never).
    pub(crate) fn age(&self) -> Option<Duration> {
        let set = self.set.read().unwrap_or_else(|p| p.into_inner());
        set.as_ref().map(|l| l.at.elapsed())
    }

    /// Whether anyone is let in without a key now (a loopback node listing no token
    /// over a table that never held a key; `whoami` says `open`).
    pub(crate) fn is_open(&self) -> bool {
        let set = self.set.read().unwrap_or_else(|p| p.into_inner());
        self.may_open && set.as_ref().is_some_and(|l| !l.ever)
    }

    /// Active key `id` of the table as last read.
    fn active(&self, id: &str) -> Option<ApiKeyRecord> {
        let set = self.set.read().unwrap_or_else(|p| p.into_inner());
        let loaded = set.as_ref()?;
        loaded.by_hash.values().find(|k| k.id == id).cloned()
    }

    /// The name of active key `id` (a token listed in the configuration has none).
    pub(crate) fn name_of(&self, id: &str) -> Option<String> {
        self.active(id).map(|k| k.name)
    }

    /// The communities of active key `id` (`Some(None)`: every community; `None`:
    /// no such active key), as `auth::Keys::scope_of` says them on `serve`.
    pub(crate) fn scope_of(&self, id: &str) -> Option<Option<Vec<String>>> {
        self.active(id).map(|k| k.communities)
    }

    /// The caller presenting `token` (`None`: no key sent).
    pub(crate) fn authorize(&self, token: Option<&str>) -> Result<Caller, ApiError> {
        let hash = token.map(|t| auth::sha256_hex(t.as_bytes()));
        if let Some(h) = hash.as_ref().filter(|h| self.listed.contains(h)) {
            return Ok(Caller {
                key_id: format!("token_sha256:{}", &h[..12]),
                role: self.role,
                communities: None,
                audited: Default::default(),
            });
        }
        let set = self.set.read().unwrap_or_else(|p| p.into_inner());
        let loaded = match &*set {
            None => {
                return Err(ApiError::StorageUnavailable(
                    "this node has not read the cluster's API keys from PostgreSQL yet \
                     (table api_keys); retry shortly"
                        .into(),
                ))
            }
            Some(l) if l.at.elapsed() > MAX_AGE => {
                return Err(ApiError::StorageUnavailable(format!(
                    "this node last read the cluster's API keys {} s ago, more than the {} s \
                     they are trusted for (PostgreSQL unreachable?); only keys listed in its \
                     configuration are let in until they are read again",
                    l.at.elapsed().as_secs(),
                    MAX_AGE.as_secs()
                )))
            }
            Some(l) => l,
        };
        if self.may_open && !loaded.ever {
            return Ok(Caller::anonymous());
        }
        let unauthorized = |m: &str| ApiError::Unauthorized(m.to_string());
        if loaded.by_hash.is_empty() && self.listed.is_empty() {
            return Err(unauthorized(
                "no API key is active on this cluster, so every request is refused: create \
                 one with `sightline cluster keys create --config cluster.toml`",
            ));
        }
        let hash =
            hash.ok_or_else(|| unauthorized("send an API key: Authorization: Bearer sl_…"))?;
        let key = loaded
            .by_hash
            .get(&hash)
            .ok_or_else(|| unauthorized(crate::auth::UNKNOWN_KEY))?;
        auth::grant(key, self.role)
    }

    /// Reads the table once (connecting first when `meta` is not open), every call
    /// bounded by `index.lease_ms`; how many keys it holds.
    async fn load(&self, config: &ClusterConfig, meta: &mut Option<Meta>) -> Result<usize, String> {
        let lease = config.lease();
        if !meta.as_ref().is_some_and(Meta::is_open) {
            *meta = Some(
                Meta::connect_within(&config.postgres, lease)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        let m = meta.as_ref().expect("connected above");
        let asked = Instant::now();
        let keys = m
            .given_up(bounded(lease, "read API keys", m.api_keys()).await)
            .map_err(|e| e.to_string())?;
        let n = keys.len();
        // As of when it was asked: the age bound counts from then.
        self.install(keys, asked);
        Ok(n)
    }

    /// Reads the table now (a node starts with its keys when PostgreSQL answers),
    /// then every `index.renew_ms` on a task of its own, until the task is aborted.
    pub(crate) async fn start(
        self: &Arc<ClusterKeys>,
        config: &ClusterConfig,
    ) -> tokio::task::JoinHandle<()> {
        let mut meta = None;
        let mut failing = match self.load(config, &mut meta).await {
            Ok(n) => {
                tracing::info!(keys = n, "API keys read");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the API keys; refusing keyed requests (503) until they are read");
                true
            }
        };
        let (keys, config) = (self.clone(), config.clone());
        // Given back to the node's pool between reads (`postgres_pool_size`).
        drop(meta);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(config.renew()).await;
                let mut meta = None;
                match keys.load(&config, &mut meta).await {
                    Ok(n) => {
                        if failing {
                            tracing::info!(keys = n, "API keys read again");
                        }
                        failing = false;
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(error = %e, max_age_s = MAX_AGE.as_secs(), "cannot read the API keys; the last set read stays in force for its max age");
                        }
                        failing = true;
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, token: &str, role: &str, communities: Option<&[&str]>) -> ApiKeyRecord {
        ApiKeyRecord {
            id: id.into(),
            name: String::new(),
            role: role.into(),
            communities: communities.map(|c| c.iter().map(|s| s.to_string()).collect()),
            token_sha256: auth::sha256_hex(token.as_bytes()),
            created_ms: 0,
            revoked_ms: None,
        }
    }

    fn status(r: Result<Caller, ApiError>) -> Result<Caller, u16> {
        r.map_err(|e| e.status().as_u16())
    }

    #[test]
    fn listed_tokens_come_first_then_the_tables_keys_with_their_scopes() {
        let listed = auth::sha256_hex(b"sl_listed_x");
        let keys = ClusterKeys::new(&[listed.to_ascii_uppercase()], true, Role::Investigate);
        // Not read yet: only the listed token.
        let c = status(keys.authorize(Some("sl_listed_x"))).unwrap();
        assert_eq!((c.role, c.communities), (Role::Investigate, None));
        assert!(c.key_id.starts_with("token_sha256:"), "{}", c.key_id);
        assert_eq!(status(keys.authorize(None)).unwrap_err(), 503);
        assert_eq!(status(keys.authorize(Some("sl_a_1"))).unwrap_err(), 503);

        let mut revoked = key("c", "sl_c_3", "admin", None);
        revoked.revoked_ms = Some(5);
        keys.install(
            vec![
                key("a", "sl_a_1", "investigate", Some(&["3205080001"])),
                key("b", "sl_b_2", "ingest", None),
                revoked,
                key("d", "sl_d_4", "admin", None),
            ],
            Instant::now(),
        );
        let a = status(keys.authorize(Some("sl_a_1"))).unwrap();
        assert_eq!(a.key_id, "a");
        assert_eq!(a.communities, Some(vec!["3205080001".to_string()]));
        assert_eq!(
            status(keys.authorize(Some("sl_d_4"))).unwrap().role,
            Role::Admin
        );
        assert_eq!(status(keys.authorize(Some("sl_b_2"))).unwrap_err(), 403);
        assert_eq!(status(keys.authorize(Some("sl_c_3"))).unwrap_err(), 401);
        assert_eq!(status(keys.authorize(Some("sl_zz_9"))).unwrap_err(), 401);
        assert_eq!(status(keys.authorize(None)).unwrap_err(), 401);
        assert!(status(keys.authorize(Some("sl_listed_x"))).is_ok());

        // Read too long ago: the table's keys are refused, listed tokens still work.
        keys.install(
            vec![key("a", "sl_a_1", "investigate", None)],
            Instant::now() - MAX_AGE - Duration::from_secs(1),
        );
        assert_eq!(status(keys.authorize(Some("sl_a_1"))).unwrap_err(), 503);
        assert!(status(keys.authorize(Some("sl_listed_x"))).is_ok());
    }

    #[test]
    fn a_node_is_open_only_on_loopback_with_nothing_listed_and_a_table_never_keyed() {
        let open = ClusterKeys::new(&[], true, Role::Ingest);
        assert_eq!(
            status(open.authorize(None)).unwrap_err(),
            503,
            "not read yet"
        );
        open.install(Vec::new(), Instant::now());
        assert_eq!(status(open.authorize(None)).unwrap().key_id, "anonymous");
        // A key revoked since: the table has held one, so the node is closed.
        let mut gone = key("a", "sl_a_1", "ingest", None);
        gone.revoked_ms = Some(1);
        open.install(vec![gone], Instant::now());
        let e = open.authorize(None).unwrap_err();
        assert_eq!(e.status().as_u16(), 401);
        assert!(
            e.to_string().contains("sightline cluster keys create"),
            "{e}"
        );
        // A wide listener is never open.
        let wide = ClusterKeys::new(&[], false, Role::Ingest);
        wide.install(Vec::new(), Instant::now());
        assert_eq!(status(wide.authorize(None)).unwrap_err(), 401);
        let scoped = key("b", "sl_b_2", "ingest", Some(&["x"]));
        wide.install(vec![scoped], Instant::now());
        let b = status(wide.authorize(Some("sl_b_2"))).unwrap();
        assert_eq!(
            (b.role, b.communities),
            (Role::Ingest, Some(vec!["x".into()]))
        );
    }
}
