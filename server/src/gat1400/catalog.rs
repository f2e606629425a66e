//! `GET /VIID/APEs` and `GET /VIID/Tollgates`: the catalog's devices as GA/T 1400
//! collection devices (采集设备) and tollgates (卡口, device type 121), for a registered
//! caller, within the communities its record covers (its own, and those its `relays`
//! map to). Optional fields the catalog does not know are omitted, never sent empty or
//! null; `Name`, which GA/T 1400.3 requires, is sent empty when the device has none.
//!
//! The listing is made from the catalog as read ([`covered`], [`listed`], then
//! [`apes_json`] / [`tollgates_json`]), so `serve` (its store's catalog) and a cluster's
//! ingest nodes (the PostgreSQL tables as last read) answer alike.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};
use sightline_storage::{Community, Device, DeviceCode, Direction, Store};

use super::relay::prefixes;
use super::Gateway;
use crate::error::ApiError;

/// The GB/T 28181 type code of a tollgate (卡口).
pub(crate) const TOLLGATE_TYPE: &str = "121";

/// The communities a caller may list: its own device's (`None`: not registered, so
/// none) and, for a platform, those its relays map to (a device of any other kind
/// relays nothing, whatever a catalog made before kept).
pub(crate) fn covered(
    caller: Option<&Device>,
    relays: &BTreeMap<String, String>,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if let Some(d) = caller {
        out.insert(d.community.clone());
        if d.device_kind == "platform" {
            out.extend(relays.values().cloned());
        }
    }
    out
}

/// The devices of `devices` (by code) in `communities`, platforms left out, each with
/// its community's name (empty when unknown).
pub(crate) fn listed(
    communities: &BTreeSet<String>,
    registered: &[Community],
    devices: impl IntoIterator<Item = Device>,
) -> Vec<(Device, String)> {
    let name = |code: &str| {
        registered
            .iter()
            .find(|c| c.code == code)
            .map_or(String::new(), |c| c.name.clone())
    };
    devices
        .into_iter()
        .filter(|d| communities.contains(&d.community) && d.device_kind != "platform")
        .map(|d| {
            let n = name(&d.community);
            (d, n)
        })
        .collect()
}

/// The devices `caller` may list, with their community's name.
fn visible(store: &Store, caller: &str) -> Result<Vec<(Device, String)>, ApiError> {
    let catalog = store.catalog();
    let own = catalog.device(caller)?;
    let relays = match &own {
        Some(_) => prefixes(store, caller)?,
        None => BTreeMap::new(),
    };
    let communities = covered(own.as_ref(), &relays);
    Ok(listed(
        &communities,
        &catalog.communities()?,
        catalog.devices()?,
    ))
}

/// The devices an upper platform this server is registered with may list: those of
/// the communities its upstream reads (`None`: every registered community).
pub(crate) fn upper_visible(
    store: &Store,
    scope: Option<&[String]>,
) -> Result<Vec<(Device, String)>, ApiError> {
    let catalog = store.catalog();
    let registered = catalog.communities()?;
    let communities: BTreeSet<String> = match scope {
        Some(s) => s.iter().cloned().collect(),
        None => registered.iter().map(|c| c.code.clone()).collect(),
    };
    Ok(listed(&communities, &registered, catalog.devices()?))
}

/// A `PlaceCode`: GA/T 1400.3's 6-digit administrative division (GB/T 2260), the first
/// six digits of a community code that begins with them; else the community code.
fn place_code(community: &str) -> &str {
    match community.get(..6) {
        Some(area) if area.bytes().all(|b| b.is_ascii_digit()) => area,
        _ => community,
    }
}

fn direction_code(d: Direction) -> Option<&'static str> {
    // GA/T 1400's `MonitorDirection` is a compass code; a community gate's is in or out,
    // which has none: said in `MonitorAreaDesc` instead.
    match d {
        Direction::In => Some("in"),
        Direction::Out => Some("out"),
        Direction::Unknown => None,
    }
}

/// `{"APEListObject":{"APEObject":[…]}}`.
pub(crate) fn apes(store: &Store, gateway: &Gateway, caller: &str) -> Result<Value, ApiError> {
    Ok(apes_json(visible(store, caller)?, |code| {
        gateway.is_online(code)
    }))
}

/// `{"APEListObject":{"APEObject":[…]}}` of `listed` devices, `online` saying which are
/// registered.
pub(crate) fn apes_json(listed: Vec<(Device, String)>, online: impl Fn(&str) -> bool) -> Value {
    let list: Vec<Value> = listed
        .into_iter()
        .map(|(d, place)| {
            let mut o = json!({"ApeID": d.code, "Name": d.name, "Model": d.device_kind,
                "PlaceCode": place_code(&d.community),
                "IsOnline": if online(&d.code) { "1" } else { "2" }});
            if !place.is_empty() {
                o["Place"] = place.into();
            }
            if let Some(dir) = direction_code(d.direction) {
                o["MonitorAreaDesc"] = format!("community gate, {dir}").into();
            }
            o
        })
        .collect();
    json!({"APEListObject": {"APEObject": list}})
}

/// `{"TollgateListObject":{"TollgateObject":[…]}}`: devices of type 121.
pub(crate) fn tollgates(store: &Store, caller: &str) -> Result<Value, ApiError> {
    Ok(tollgates_json(visible(store, caller)?))
}

/// `{"TollgateListObject":{"TollgateObject":[…]}}` of the `listed` devices of type 121.
pub(crate) fn tollgates_json(listed: Vec<(Device, String)>) -> Value {
    let list: Vec<Value> = listed
        .into_iter()
        .filter(|(d, _)| DeviceCode::parse(&d.code).is_ok_and(|c| c.type_code() == TOLLGATE_TYPE))
        .map(|(d, place)| {
            let mut o = json!({"TollgateID": d.code, "Name": d.name,
                "PlaceCode": place_code(&d.community), "Status": "1"});
            if !place.is_empty() {
                o["Place"] = place.into();
            }
            o
        })
        .collect();
    json!({"TollgateListObject": {"TollgateObject": list}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn place_codes_are_the_six_digit_area_of_the_community() {
        assert_eq!(place_code("3205080001"), "320508");
        assert_eq!(place_code("320508"), "320508");
        assert_eq!(place_code("north"), "north");
        assert_eq!(place_code("12a45678"), "12a45678");
    }

    #[test]
    fn only_a_platform_lists_the_communities_its_relays_map_to() {
        let device = |kind: &str| Device {
            code: "32050800005030000001".into(),
            community: "A".into(),
            device_kind: kind.into(),
            direction: Direction::Unknown,
            name: String::new(),
        };
        let relays: BTreeMap<String, String> = [("3".to_string(), "B".to_string())].into();
        let platform = covered(Some(&device("platform")), &relays);
        assert_eq!(platform, ["A", "B"].map(String::from).into());
        let camera = covered(Some(&device("checkpoint_camera")), &relays);
        assert_eq!(camera, ["A"].map(String::from).into(), "kept from before");
        assert!(covered(None, &relays).is_empty());
    }
}
