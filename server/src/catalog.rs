//! The catalog endpoints: communities and devices, registered by admins
//! (`PUT /v1/communities/{code}`, `PUT /v1/devices/{code}`) and listed to any
//! investigator within the key's communities.

use hyper::StatusCode;
use serde_json::{json, Map, Value};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::http::json::{object, text};
use crate::http::runner::run;
use crate::http::{Answer, Call};
use crate::App;

/// `GET /v1/communities`.
pub(crate) async fn communities(c: Call) -> Result<Answer, ApiError> {
    let caller = c.caller;
    let v = run(c.app, move |app| {
        let list: Vec<Value> = app
            .store
            .catalog()
            .communities()?
            .into_iter()
            .filter(|c| visible(&caller, &c.code))
            .map(|c| json!({"code": c.code, "name": c.name, "district": c.district}))
            .collect();
        Ok(json!({ "communities": list }))
    })
    .await?;
    Ok((StatusCode::OK, v.into()))
}

/// `GET /v1/devices?community=`.
pub(crate) async fn devices(c: Call) -> Result<Answer, ApiError> {
    let (caller, params) = (c.caller, c.params);
    let v = run(c.app, move |app| {
        let only = params.get("community");
        let list: Vec<Value> = app
            .store
            .catalog()
            .devices()?
            .into_iter()
            .filter(|d| visible(&caller, &d.community) && only.is_none_or(|c| c == d.community))
            .map(|d| device_json(&d))
            .collect();
        Ok(json!({ "devices": list }))
    })
    .await?;
    Ok((StatusCode::OK, v.into()))
}

/// `PUT /v1/communities/{code}` with `{"name", "district"}`.
pub(crate) async fn put_community(mut c: Call) -> Result<Answer, ApiError> {
    let code = c.arg();
    if !c.caller.sees(&code) {
        return Err(ApiError::Forbidden(format!(
            "key {} may not change community {code:?}",
            c.caller.key_id
        )));
    }
    let body = c.body().await?;
    let v = run(c.app, move |app| {
        let o = object(&body)?;
        if code.chars().any(|c| !c.is_ascii_alphanumeric()) || code.len() > 32 {
            return Err(ApiError::param(
                "code",
                "a community code is 1–32 letters and digits",
            ));
        }
        let c = sightline_storage::Community {
            code,
            name: text(&o, "name", true)?,
            district: text(&o, "district", false)?,
        };
        app.store.catalog().put_community(&c)?;
        Ok(json!({"code": c.code, "name": c.name, "district": c.district}))
    })
    .await?;
    Ok((StatusCode::OK, v.into()))
}

/// `PUT /v1/devices/{code}` with `{"community", "device_kind", "direction", "name",
/// "gat1400": {"password"}}`.
pub(crate) async fn put_device(mut c: Call) -> Result<Answer, ApiError> {
    let body = c.body().await?;
    let code = c.arg();
    let caller = c.caller;
    let v = run(c.app, move |app| {
        // A scoped admin changes devices of its communities only, and moves none in
        // from elsewhere (a GA/T 1400 password on another community's device would be
        // a way to write into it).
        if let Some(d) = app.store.catalog().device(&code)? {
            if !caller.sees(&d.community) {
                return Err(ApiError::Forbidden(format!(
                    "device {code} belongs to community {:?}, which key {} may not change",
                    d.community, caller.key_id
                )));
            }
        }
        put_device_now(app, &code, &body, &caller)
    })
    .await?;
    Ok((StatusCode::OK, v.into()))
}

fn put_device_now(app: &App, code: &str, body: &[u8], caller: &Caller) -> Result<Value, ApiError> {
    let o = object(body)?;
    let (d, login) = device_of(code, &o)?;
    if !caller.sees(&d.community) {
        return Err(ApiError::Forbidden(format!(
            "key {} may not change community {:?}",
            caller.key_id, d.community
        )));
    }
    if app.store.catalog().community(&d.community)?.is_none() {
        let community = &d.community;
        return Err(ApiError::param(
            "community",
            format!("{community:?} is not registered; PUT /v1/communities/{community} first"),
        ));
    }
    let relays = match o.get("relays") {
        None | Some(Value::Null) => None,
        Some(_) if d.device_kind != "platform" => {
            return Err(ApiError::param(
                "relays",
                "only a device of kind platform relays devices",
            ))
        }
        Some(v) => Some(crate::gat1400::relay::parse(&app.store, v)?),
    };
    let catalog = app.store.catalog();
    catalog.put_device(&d)?;
    if let Some(credential) = login {
        catalog.put_gat1400_credential(&credential)?;
    }
    if let Some(relays) = &relays {
        crate::gat1400::relay::put(&app.store, code, relays)?;
    }
    let mut v = device_json(&d);
    if d.device_kind == "platform" {
        v["relays"] = serde_json::to_value(crate::gat1400::relay::prefixes(&app.store, code)?)
            .expect("a map of strings");
    }
    let credential = catalog.gat1400_credential(code)?;
    v["gat1400"] = credential.is_some().into();
    if let Some(c) = credential {
        v["gat1400_username"] = c.username.into();
    }
    Ok(v)
}

/// Device `code` as `{"community", "device_kind" (or "kind"), "direction", "name",
/// "gat1400": {"username", "password"}}` describes it, and its GA/T 1400 credential
/// when a password is given: checked as `PUT /v1/devices/{code}` checks it (also
/// `sightline cluster gat1400 add`'s).
pub(crate) fn device_of(
    code: &str,
    o: &Map<String, Value>,
) -> Result<
    (
        sightline_storage::Device,
        Option<sightline_storage::Gat1400Credential>,
    ),
    ApiError,
> {
    sightline_storage::DeviceCode::parse_checked(code)
        .map_err(|e| ApiError::param("code", format!("not a GB/T 28181 device code: {e}")))?;
    let community = text(o, "community", true)?;
    let direction = text(o, "direction", false)?;
    // `kind` is accepted for `device_kind` (as GA/T 1400 integrators write it).
    let device_kind = match (o.get("device_kind"), o.get("kind")) {
        (None, Some(_)) => text(o, "kind", true)?,
        _ => text(o, "device_kind", true)?,
    };
    let login = gat1400_login(o)?;
    let d = sightline_storage::Device {
        code: code.to_string(),
        community,
        device_kind,
        direction: sightline_storage::Direction::parse(&direction)
            .ok_or_else(|| ApiError::param("direction", "use in, out or unknown"))?,
        name: text(o, "name", false)?,
    };
    let credential = login.map(|(username, password)| {
        let username = username.as_deref().unwrap_or(code);
        crate::gat1400::credential(code, username, &password)
    });
    Ok((d, credential))
}

/// The optional `"gat1400": {"username": …, "password": …}` of a device or platform:
/// the digest user name (its code when not given) and password it registers with.
fn gat1400_login(o: &Map<String, Value>) -> Result<Option<(Option<String>, String)>, ApiError> {
    let g = match o.get("gat1400") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(g)) => g,
        Some(_) => {
            return Err(ApiError::param(
                "gat1400",
                "must be an object like {\"username\": \"…\", \"password\": \"…\"}",
            ))
        }
    };
    let password = match g.get("password") {
        Some(Value::String(p)) if !p.is_empty() => p.clone(),
        _ => {
            return Err(ApiError::param(
                "gat1400.password",
                "must be a non-empty string",
            ))
        }
    };
    let username = match g.get("username") {
        None | Some(Value::Null) => None,
        Some(Value::String(u))
            if !u.trim().is_empty() && u.len() <= 64 && !u.contains(['"', '\\']) =>
        {
            Some(u.trim().to_string())
        }
        Some(_) => {
            return Err(ApiError::param(
                "gat1400.username",
                "a digest user name: 1 to 64 characters, no quotes or backslashes",
            ))
        }
    };
    Ok(Some((username, password)))
}

pub(crate) fn device_json(d: &sightline_storage::Device) -> Value {
    json!({"code": d.code, "community": d.community, "device_kind": d.device_kind,
           "direction": d.direction.as_str(), "name": d.name})
}

fn visible(caller: &Caller, community: &str) -> bool {
    caller.sees(community)
}
