//! `GET /VIID/APEs` and `GET /VIID/Tollgates`: the catalog's devices as GA/T 1400
//! collection devices (采集设备) and tollgates (卡口, device type 121), for a registered
//! caller, within the communities its record covers (its own, and those its `relays`
//! map to). Fields the catalog does not know are omitted, never sent empty or null.

use std::collections::BTreeSet;

use serde_json::{json, Value};
use sightline_storage::{Device, DeviceCode, Direction, Store};

use super::relay::prefixes;
use super::Gateway;
use crate::error::ApiError;

/// The GB/T 28181 type code of a tollgate (卡口).
const TOLLGATE_TYPE: &str = "121";

/// The communities `caller` may list: its own and those its relays map to.
fn communities_of(store: &Store, caller: &str) -> Result<BTreeSet<String>, ApiError> {
    let mut out = BTreeSet::new();
    if let Some(d) = store.catalog().device(caller)? {
        out.insert(d.community);
        out.extend(prefixes(store, caller)?.into_values());
    }
    Ok(out)
}

/// The devices `caller` may list, with their community's name.
fn visible(store: &Store, caller: &str) -> Result<Vec<(Device, String)>, ApiError> {
    let communities = communities_of(store, caller)?;
    let names: Vec<(String, String)> = store
        .catalog()
        .communities()?
        .into_iter()
        .map(|c| (c.code, c.name))
        .collect();
    let name = |code: &str| {
        names
            .iter()
            .find(|(c, _)| c == code)
            .map_or(String::new(), |(_, n)| n.clone())
    };
    Ok(store
        .catalog()
        .devices()?
        .into_iter()
        .filter(|d| communities.contains(&d.community) && d.device_kind != "platform")
        .map(|d| {
            let n = name(&d.community);
            (d, n)
        })
        .collect())
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
    let list: Vec<Value> = visible(store, caller)?
        .into_iter()
        .map(|(d, place)| {
            let mut o = json!({"ApeID": d.code, "Model": d.device_kind, "PlaceCode": d.community,
                "IsOnline": if gateway.is_online(&d.code) { "1" } else { "2" }});
            if !d.name.is_empty() {
                o["Name"] = d.name.into();
            }
            if !place.is_empty() {
                o["Place"] = place.into();
            }
            if let Some(dir) = direction_code(d.direction) {
                o["MonitorAreaDesc"] = format!("community gate, {dir}").into();
            }
            o
        })
        .collect();
    Ok(json!({"APEListObject": {"APEObject": list}}))
}

/// `{"TollgateListObject":{"TollgateObject":[…]}}`: devices of type 121.
pub(crate) fn tollgates(store: &Store, caller: &str) -> Result<Value, ApiError> {
    let list: Vec<Value> = visible(store, caller)?
        .into_iter()
        .filter(|(d, _)| DeviceCode::parse(&d.code).is_ok_and(|c| c.type_code() == TOLLGATE_TYPE))
        .map(|(d, place)| {
            let mut o = json!({"TollgateID": d.code, "PlaceCode": d.community, "Status": "1"});
            if !d.name.is_empty() {
                o["Name"] = d.name.into();
            }
            if !place.is_empty() {
                o["Place"] = place.into();
            }
            o
        })
        .collect();
    Ok(json!({"TollgateListObject": {"TollgateObject": list}}))
}
