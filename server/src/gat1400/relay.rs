//! Platforms that relay cameras: a registered platform (a catalog device of kind
//! `platform`) may upload objects of devices the catalog does not know yet. Such a
//! device is catalogued on its first object, under the community its code's longest
//! matching prefix maps to in the platform's `relays`, else the platform's own
//! community, and the object's status says so.

use std::collections::BTreeMap;

use serde_json::Value;
use sightline_storage::{Catalog, Device, DeviceCode, Direction, Store};

use crate::auth::Caller;
use crate::error::ApiError;

/// Where a platform's relayed devices' codes are kept (`code prefix → community`).
const TREE: &str = "gat1400_relays";

/// The device kind of an automatically catalogued device.
pub const RELAYED_KIND: &str = "relayed";

/// A platform's relaying: its code, its community, its prefix map.
pub(crate) struct Relay {
    pub platform: String,
    pub community: String,
    pub prefixes: BTreeMap<String, String>,
}

/// Why a relayed device could not be catalogued.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RelayError {
    #[error("DeviceID {0} is not a GB/T 28181 device code: {1}")]
    BadCode(String, String),
    #[error("DeviceID {code} maps to community {community}, which is not registered")]
    NoCommunity { code: String, community: String },
    #[error("cannot catalogue DeviceID {0}: {1}")]
    Storage(String, String),
}

impl Relay {
    /// The relaying of `uploader`, if it is a platform.
    pub fn of(store: &Store, uploader: &str) -> Result<Option<Relay>, ApiError> {
        let Some(d) = store.catalog().device(uploader)? else {
            return Ok(None);
        };
        if d.device_kind != "platform" {
            return Ok(None);
        }
        Ok(Some(Relay {
            platform: d.code,
            community: d.community,
            prefixes: prefixes(store, uploader)?,
        }))
    }

    /// The community a relayed device's code belongs to.
    pub fn community_for(&self, code: &str) -> &str {
        self.prefixes
            .iter()
            .filter(|(p, _)| code.starts_with(p.as_str()))
            .max_by_key(|(p, _)| p.len())
            .map_or(self.community.as_str(), |(_, c)| c.as_str())
    }

    /// The record of an unknown device this platform relays: under the community its
    /// code maps to, which `registered` must say is (a store's catalog, or the
    /// cluster's table as an ingest node read it).
    pub fn device_for(
        &self,
        code: &str,
        registered: impl FnOnce(&str) -> Result<bool, RelayError>,
    ) -> Result<Device, RelayError> {
        DeviceCode::parse_checked(code)
            .map_err(|e| RelayError::BadCode(code.into(), e.to_string()))?;
        let community = self.community_for(code).to_string();
        if !registered(&community)? {
            return Err(RelayError::NoCommunity {
                code: code.into(),
                community,
            });
        }
        Ok(Device {
            code: code.to_string(),
            community,
            device_kind: RELAYED_KIND.to_string(),
            direction: Direction::Unknown,
            name: format!("relayed by {}", self.platform),
        })
    }

    /// Catalogues an unknown device this platform relays (durably): the device
    /// registered, which is the one registered meanwhile (an admin's `PUT`, another
    /// upload's) if one was, never written over.
    pub fn catalogue(&self, store: &Store, code: &str) -> Result<Device, RelayError> {
        let storage =
            |e: sightline_storage::StorageError| RelayError::Storage(code.into(), e.to_string());
        let d = self.device_for(code, |community| {
            store
                .catalog()
                .community(community)
                .map(|c| c.is_some())
                .map_err(storage)
        })?;
        let mut there = None;
        let written = store
            .catalog()
            .put_device_if(&d, &mut |existing| {
                there = existing.cloned();
                existing.is_none()
            })
            .map_err(storage)?;
        match (written, there) {
            (None, Some(registered)) => Ok(registered),
            _ => Ok(d),
        }
    }
}

/// A platform's stored prefix map (empty when none).
pub(crate) fn prefixes(
    store: &Store,
    platform: &str,
) -> Result<BTreeMap<String, String>, ApiError> {
    prefixes_in(store.catalog(), platform)
}

/// A platform's prefix map as `catalog` keeps it (empty when none): a store's, or a
/// stopped store's that `sightline cluster catalog import` copies.
pub(crate) fn prefixes_in(
    catalog: &dyn Catalog,
    platform: &str,
) -> Result<BTreeMap<String, String>, ApiError> {
    match catalog.kv_get(TREE, platform)? {
        None => Ok(BTreeMap::new()),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::internal(format!("a stored relay map is unreadable: {e}"))),
    }
}

/// The `relays` of a platform's catalog body, `{"<code prefix>": "<community>"}`,
/// checked: prefixes of 1–20 digits, communities `caller` may change (403 naming the
/// entry: a scoped admin gives no login into another community), then communities
/// `registered` says are (a store's catalog, or the cluster's table). Every scope is
/// checked before any existence, so a scoped key learns nothing of the communities
/// outside its own.
pub(crate) fn parse(
    v: &Value,
    caller: &Caller,
    registered: impl Fn(&str) -> Result<bool, ApiError>,
) -> Result<BTreeMap<String, String>, ApiError> {
    let o = v
        .as_object()
        .ok_or_else(|| ApiError::param("relays", "an object of code prefix → community"))?;
    let mut out = BTreeMap::new();
    for (prefix, community) in o {
        if prefix.is_empty() || prefix.len() > 20 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ApiError::param(
                format!("relays.{prefix}"),
                "a prefix of a device code: 1 to 20 digits",
            ));
        }
        let community = community
            .as_str()
            .ok_or_else(|| ApiError::param(format!("relays.{prefix}"), "a community code"))?;
        caller.check_communities(&format!("relays.{prefix}"), &[community.to_string()])?;
        out.insert(prefix.clone(), community.to_string());
    }
    for (prefix, community) in &out {
        if !registered(community)? {
            return Err(ApiError::param(
                format!("relays.{prefix}"),
                format!("{community:?} is not registered"),
            ));
        }
    }
    Ok(out)
}

/// Refuses a change of a device whose stored relays reach a community outside
/// `caller`'s (403 naming `relays`, not the community): any change of it — a new
/// login, a new kind, new relays — would be a change of a login into that community.
pub(crate) fn may_change_stored(
    caller: &Caller,
    code: &str,
    stored: &BTreeMap<String, String>,
) -> Result<(), ApiError> {
    match stored.values().all(|c| caller.sees(c)) {
        true => Ok(()),
        false => Err(ApiError::OutOfScope {
            field: "relays".into(),
            message: format!(
                "relays: device {code} relays into a community outside this key's communities"
            ),
        }),
    }
}

/// Keeps a platform's prefix map.
pub(crate) fn put(
    store: &Store,
    platform: &str,
    relays: &BTreeMap<String, String>,
) -> Result<(), ApiError> {
    let bytes = serde_json::to_vec(relays).expect("a map of strings serializes");
    store.catalog().kv_put(TREE, platform, &bytes)?;
    Ok(())
}
