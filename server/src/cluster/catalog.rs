//! The catalog on a query node: `GET /v1/communities`, `GET /v1/communities/{code}`,
//! `GET /v1/devices` (`community`), `GET /v1/devices/{code}` and, for admin keys,
//! `PUT` of a community and of a device, over the cluster's PostgreSQL tables
//! (`sightline_cluster::catalog`) with `serve`'s checks, errors and JSON (the functions
//! of `crate::catalog`): a scoped key lists and reads only its communities and their
//! devices (another's is 404, as if not registered), and changes only those (403).
//!
//! A device's GA/T 1400 login (`gat1400`) is kept as `serve` keeps it (its HA1, in
//! `gat1400_credentials`, which the ingest nodes' gateway reads), and so are a
//! platform's `relays` (`devices.relays`, checked by `serve`'s `relay::parse`: within
//! the caller's communities, then against the communities registered; a device whose
//! kept relays reach outside them is not the caller's to change, `relay::
//! may_change_stored`; answered as `serve` answers them; the ingest nodes' gateway
//! reads them with the credentials).
//!
//! Each call borrows a connection of the node's pool (`postgres_pool_size`; waiting
//! at most `postgres_wait_ms` for one while all are lent) and gives it back; every
//! call (the wait, a connect, the statement) bounded by `index.lease_ms`, so an
//! unreachable or saturated PostgreSQL answers 503 `storage_unavailable` within
//! that, and never holds a query.

use std::time::Duration;

use hyper::body::Bytes;
use serde_json::{json, Value};
use sightline_cluster::meta::Meta;
use sightline_cluster::{ClusterConfig, ClusterError};

use crate::auth::Caller;
use crate::catalog::{self as serve, DevicePut};
use crate::error::ApiError;
use crate::http::conditional::Preconditions;
use crate::params::Params;

/// A device `PUT` is checked and written again at most this many times when the
/// device changed between its check and its write (`Catalog::put_device`).
const PUT_DEVICE_TRIES: usize = 3;

/// The cluster's catalog tables, as a query node reaches them.
pub(super) struct Catalog {
    conninfo: String,
    /// The bound of each call.
    pub(super) within: Duration,
    /// What readers waiting for alerts watch (`super::watchlists::AlertHead`), made
    /// on the first wait.
    pub(super) alert_head: std::sync::OnceLock<std::sync::Arc<super::watchlists::AlertHead>>,
}

/// A failed call: PostgreSQL away, slow or refusing.
pub(super) fn unavailable(e: ClusterError) -> ApiError {
    ApiError::StorageUnavailable(format!("the cluster's catalog in PostgreSQL: {e}"))
}

impl Catalog {
    pub(super) fn new(config: &ClusterConfig) -> Catalog {
        Catalog {
            conninfo: config.postgres.clone(),
            within: config.lease(),
            alert_head: std::sync::OnceLock::new(),
        }
    }

    /// Another catalog to the same database (its calls borrow from the same pool).
    pub(super) fn sibling(&self) -> Catalog {
        Catalog {
            conninfo: self.conninfo.clone(),
            within: self.within,
            alert_head: std::sync::OnceLock::new(),
        }
    }

    /// A connection of the node's pool for one call (`Some`: the macro `on_meta`
    /// reads it as an option), given back when dropped; 503 when none is had within
    /// the bound (all lent for `postgres_wait_ms`, or PostgreSQL unreachable).
    pub(super) async fn meta(&self) -> Result<Option<Meta>, ApiError> {
        Meta::connect_within(&self.conninfo, self.within)
            .await
            .map(Some)
            .map_err(unavailable)
    }
}

/// Runs `$call` on the catalog's connection within its bound, as `$what`; a call
/// given up marks the connection for replacement.
macro_rules! on_meta {
    ($catalog:expr, $what:literal, |$m:ident| $call:expr) => {{
        let guard = $catalog.meta().await?;
        let $m = guard.as_ref().expect("connected by Catalog::meta");
        $m.given_up(sightline_cluster::meta::bounded($catalog.within, $what, $call).await)
            .map_err($crate::cluster::catalog::unavailable)
    }};
}
// The key and watchlist endpoints (`super::{key_admin, watchlists}`) use it too.
pub(super) use on_meta;

impl Catalog {
    /// The cluster's retention policy in days (`None`: keep everything).
    pub(super) async fn retention_days(&self) -> Result<Option<u32>, ApiError> {
        on_meta!(self, "read the retention policy", |m| m.retention_days())
    }

    /// Sets it (`super::feed::retention`).
    pub(super) async fn set_retention_days(&self, days: Option<u32>) -> Result<(), ApiError> {
        on_meta!(self, "set the retention policy", |m| m
            .set_retention_days(days))
    }

    /// `GET /v1/communities`: those `caller` sees.
    pub(super) async fn communities(&self, caller: &Caller) -> Result<(Value, usize), ApiError> {
        let all = on_meta!(self, "read communities", |m| m.communities())?;
        let list: Vec<Value> = all
            .iter()
            .filter(|c| caller.sees(&c.code))
            .map(serve::community_json)
            .collect();
        let n = list.len();
        Ok((json!({ "communities": list }), n))
    }

    /// `GET /v1/communities/{code}`.
    pub(super) async fn community(&self, caller: &Caller, code: String) -> Result<Value, ApiError> {
        let found = on_meta!(self, "read a community", |m| m.community(&code))?;
        Ok(serve::community_json(&serve::visible_community(
            caller, code, found,
        )?))
    }

    /// `GET /v1/devices?community=`: those of the communities `caller` sees.
    pub(super) async fn devices(
        &self,
        caller: &Caller,
        params: &Params,
    ) -> Result<(Value, usize), ApiError> {
        let only = params.get("community")?;
        // Another community's asked for by name: 403, as on `serve`.
        if let Some(c) = only {
            caller.check_communities("community", &[c.to_string()])?;
        }
        let all = on_meta!(self, "read devices", |m| m.devices(only))?;
        let list: Vec<Value> = all
            .iter()
            .filter(|d| caller.sees(&d.community))
            .map(serve::device_json)
            .collect();
        let n = list.len();
        Ok((json!({ "devices": list }), n))
    }

    /// `GET /v1/devices/{code}`.
    pub(super) async fn device(&self, caller: &Caller, code: String) -> Result<Value, ApiError> {
        let found = on_meta!(self, "read a device", |m| m.device(&code))?;
        Ok(serve::device_json(&serve::visible_device(
            caller, code, found,
        )?))
    }

    /// `PUT /v1/communities/{code}` with `body` (the caller's right to change `code`
    /// checked before the body was read: [`serve::may_change`]): the answer, and
    /// whether it created the community (201, as on `serve`; told by the `INSERT`).
    pub(super) async fn put_community(
        &self,
        code: String,
        body: &Bytes,
        pre: &Preconditions,
    ) -> Result<(Value, bool), ApiError> {
        // RFC 9110 §13.2.1: the preconditions before the content (a bad body with a
        // false precondition is 412), judged again by the statement that writes.
        let what = format!("community {code}");
        if pre.demand(&what)?.is_some() {
            let existing = on_meta!(self, "read a community", |m| m.community(&code))?;
            pre.check(&what, existing.is_some())?;
        }
        let c = serve::community_of(code, body)?;
        let created = match pre.demand(&what)? {
            None => on_meta!(self, "register a community", |m| m.put_community(&c))?,
            Some(exists) => {
                match on_meta!(self, "register a community", |m| m
                    .put_community_when(&c, exists))?
                {
                    Some(created) => created,
                    None => return Err(pre.check(&what, !exists).unwrap_err()),
                }
            }
        };
        Ok((serve::community_json(&c), created))
    }

    /// `PUT /v1/devices/{code}` with `body`, as `serve` checks it: the device's
    /// present community and its new one both the caller's, the new one registered.
    /// The checks are of the device as read once, and the write (with its login) is
    /// one statement that takes effect only while the device is still as read
    /// (`Meta::put_device_if`): an unscoped admin's move in between makes it write
    /// nothing, and it is checked and tried again against the device as it is then
    /// (at most [`PUT_DEVICE_TRIES`] times; then 429 `busy`). The answer, and whether
    /// it created the device (201, as on `serve`): the write that took effect was the
    /// `INSERT … ON CONFLICT DO NOTHING` of a device read as not registered, which
    /// only one of two racing puts of a new code makes (the other finds the row, is
    /// checked again against it, and replaces it).
    pub(super) async fn put_device(
        &self,
        caller: &Caller,
        code: String,
        body: &Bytes,
        pre: &Preconditions,
    ) -> Result<(Value, bool), ApiError> {
        let mut tries = 0;
        let (d, created) = loop {
            tries += 1;
            let seen = on_meta!(self, "read a device", |m| m.device_seen(&code))?;
            if let Some((d, stored)) = &seen {
                serve::may_move(caller, &code, d)?;
                // Its relays as kept, all the caller's (as on `serve`). Relays that do
                // not parse (written by hand) may be replaced only by an unscoped key,
                // which sees every community they could name.
                match sightline_cluster::catalog::parse_relays(&code, stored.as_deref()) {
                    Ok(stored) => crate::gat1400::relay::may_change_stored(caller, &code, &stored)?,
                    Err(why) if caller.communities.is_none() => {
                        tracing::warn!(device = %code, %why, "replacing relays that do not read");
                    }
                    Err(_) => {
                        return Err(ApiError::OutOfScope {
                            field: "relays".into(),
                            message: format!(
                                "relays: device {code}'s stored relays do not read; only a key \
                                 of every community may replace them"
                            ),
                        })
                    }
                }
            }
            // `If-Match` / `If-None-Match` judged on the device as read, before its
            // content (RFC 9110 §13.2.1), which the write below takes effect over
            // only while it is still so.
            pre.check(&format!("device {code}"), seen.is_some())?;
            // Read again at every try: nothing of it is kept (`DevicePut` is consumed).
            let put = DevicePut::read(&code, body, caller)?;
            let registered = on_meta!(self, "read a community", |m| m.community(&put.community))?;
            if registered.is_none() {
                return Err(serve::unregistered(&put.community));
            }
            // The relays name registered communities (checked against the table as read).
            let communities = on_meta!(self, "read communities", |m| m.communities())?;
            let registered = |c: &str| Ok(communities.iter().any(|r| r.code == c));
            let (d, login, relays) = put.fields_with(&code, |v| {
                crate::gat1400::relay::parse(v, caller, registered)
            })?;
            // A GA/T 1400 login, kept for the ingest nodes' gateway (HA1 only, as `serve`).
            let credential = login.map(|(username, password)| {
                let username = username.as_deref().unwrap_or(&code);
                crate::gat1400::credential(&code, username, &password)
            });
            let checked = seen
                .as_ref()
                .map(|(d, stored)| (d.community.as_str(), stored.as_deref()));
            let written = on_meta!(self, "register a device", |m| m.put_device_if(
                &d,
                relays.as_ref(),
                checked,
                credential.as_ref()
            ))?;
            if written {
                break (d, seen.is_none());
            }
            tracing::info!(device = %code, tries, "device changed while it was checked; checked again");
            if tries >= PUT_DEVICE_TRIES {
                // 429 with Retry-After: the row is contended; the client sends it again.
                return Err(ApiError::Busy(
                    "the device's catalog row (it kept changing)",
                ));
            }
        };
        // As `serve` answers: a platform with its relays as kept.
        let mut v = serve::device_json(&d);
        if d.device_kind == "platform" {
            let kept = on_meta!(self, "read a platform's relays", |m| m.relays(&code))?;
            v["relays"] = serde_json::to_value(kept).expect("a map of strings");
        }
        let credential = on_meta!(self, "read a GA/T 1400 credential", |m| m
            .gat1400_credential(&code))?;
        v["gat1400"] = credential.is_some().into();
        if let Some(c) = credential {
            v["gat1400_username"] = c.username.into();
        }
        Ok((v, created))
    }
}
