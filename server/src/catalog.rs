//! The catalog endpoints: communities and devices, registered by admins
//! (`PUT /v1/communities/{code}`, `PUT /v1/devices/{code}`) and listed (or read one
//! by its code) to any investigator within the key's communities. The checks and the
//! JSON are functions of their own (`community_of`, `DevicePut`, `may_change`,
//! `may_move`, `visible_*`, `*_json`), which a cluster's query node applies to its
//! catalog in PostgreSQL (`cluster/catalog.rs`).

use std::collections::BTreeMap;

use hyper::StatusCode;
use serde_json::{json, Map, Value};

use sightline_storage::{Community, Device};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::http::conditional::Preconditions;
use crate::http::json::{known_fields, object, text};
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
            .filter(|c| caller.sees(&c.code))
            .map(|c| community_json(&c))
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
        let only = params.get("community")?;
        // Another community's asked for by name: 403, as every query answers it (an
        // empty list would say it has no devices).
        if let Some(c) = only {
            caller.check_communities("community", &[c.to_string()])?;
        }
        let list: Vec<Value> = app
            .store
            .catalog()
            .devices()?
            .into_iter()
            .filter(|d| caller.sees(&d.community) && only.is_none_or(|c| c == d.community))
            .map(|d| device_json(&d))
            .collect();
        Ok(json!({ "devices": list }))
    })
    .await?;
    Ok((StatusCode::OK, v.into()))
}

/// `GET /v1/communities/{code}`: 404 when it is not registered or not the key's.
pub(crate) async fn community(c: Call) -> Result<Answer, ApiError> {
    let (code, caller) = (c.arg(), c.caller);
    let v = run(c.app, move |app| {
        let found = app.store.catalog().community(&code)?;
        Ok(community_json(&visible_community(&caller, code, found)?))
    })
    .await?;
    Ok((StatusCode::OK, v.into()))
}

/// `GET /v1/devices/{code}`: 404 when it is not registered or of another community
/// than the key's.
pub(crate) async fn device(c: Call) -> Result<Answer, ApiError> {
    let (code, caller) = (c.arg(), c.caller);
    let v = run(c.app, move |app| {
        let found = app.store.catalog().device(&code)?;
        Ok(device_json(&visible_device(&caller, code, found)?))
    })
    .await?;
    Ok((StatusCode::OK, v.into()))
}

/// `PUT /v1/communities/{code}` with `{"name", "district"}`: 201 Created when no
/// community of the code was registered, 200 when one was replaced (RFC 9110 §9.3.4).
pub(crate) async fn put_community(mut c: Call) -> Result<Answer, ApiError> {
    let code = c.arg();
    may_change(&c.caller, &code)?;
    let pre = Preconditions::of(&c.head.headers);
    let body = c.body().await?;
    let (v, created) = run(c.app, move |app| {
        // RFC 9110 §13.2.1: the preconditions before the content (a bad body with a
        // false precondition is 412), judged again with the write below.
        let what = format!("community {code}");
        pre.check(&what, app.store.catalog().community(&code)?.is_some())?;
        let c = community_of(code, &body)?;
        // `If-Match` / `If-None-Match` judged on the community the write replaces.
        let mut refused = None;
        let written = app.store.catalog().put_community_if(&c, &mut |existing| {
            refused = pre
                .check(&format!("community {}", c.code), existing.is_some())
                .err();
            refused.is_none()
        })?;
        let Some(created) = written else {
            return Err(refused.unwrap_or_else(|| ApiError::internal("a community write refused")));
        };
        Ok((community_json(&c), created))
    })
    .await?;
    Ok((put_status(created), v.into()))
}

/// A `PUT`'s status (RFC 9110 §9.3.4): 201 Created when it created the resource,
/// 200 when it replaced one (the body is the representation either way). Whether it
/// created is what the write itself found ([`sightline_storage::Catalog`]'s puts;
/// on a cluster, the `INSERT`'s), so two PUTs of one new code never both say 201.
pub(crate) fn put_status(created: bool) -> StatusCode {
    match created {
        true => StatusCode::CREATED,
        false => StatusCode::OK,
    }
}

/// `PUT /v1/devices/{code}` with `{"community", "device_kind", "direction", "name",
/// "gat1400": {"password"}}`: 201 Created when no device of the code was registered,
/// 200 when one was replaced ([`put_status`]).
pub(crate) async fn put_device(mut c: Call) -> Result<Answer, ApiError> {
    let pre = Preconditions::of(&c.head.headers);
    let body = c.body().await?;
    let code = c.arg();
    let caller = c.caller;
    let (v, created) = run(c.app, move |app| {
        if let Some(d) = app.store.catalog().device(&code)? {
            may_move(&caller, &code, &d)?;
            let stored = crate::gat1400::relay::prefixes(&app.store, &code)?;
            crate::gat1400::relay::may_change_stored(&caller, &code, &stored)?;
        }
        // RFC 9110 §13.2.1: the preconditions before the content (a bad body with a
        // false precondition is 412), judged again with the write.
        let exists = app.store.catalog().device(&code)?.is_some();
        pre.check(&format!("device {code}"), exists)?;
        put_device_now(app, &code, &body, &caller, &pre)
    })
    .await?;
    Ok((put_status(created), v.into()))
}

/// Writes the device `body` describes, with its login and relays: its answer, and
/// whether it created the device (no device of `code` before its write).
fn put_device_now(
    app: &App,
    code: &str,
    body: &[u8],
    caller: &Caller,
    pre: &Preconditions,
) -> Result<(Value, bool), ApiError> {
    let put = DevicePut::read(code, body, caller)?;
    if app.store.catalog().community(&put.community)?.is_none() {
        return Err(unregistered(&put.community));
    }
    let (d, login, relays) = put.fields_with(code, |v| {
        crate::gat1400::relay::parse(v, caller, |c| {
            Ok(app.store.catalog().community(c)?.is_some())
        })
    })?;
    let catalog = app.store.catalog();
    // Written only over what the caller may change, as one step with the look: two
    // admins of different communities putting one new code at once cannot have the
    // second move the first's device (checked before the body too, in `put_device`).
    let mut refused = None;
    let written = catalog.put_device_if(&d, &mut |existing| {
        let verdict = existing
            .map_or(Ok(()), |e| {
                may_move(caller, code, e)?;
                let stored = crate::gat1400::relay::prefixes(&app.store, code)?;
                crate::gat1400::relay::may_change_stored(caller, code, &stored)
            })
            // `If-Match` / `If-None-Match` judged on the device the write replaces.
            .and_then(|()| pre.check(&format!("device {code}"), existing.is_some()));
        let allowed = verdict.is_ok();
        refused = verdict.err();
        allowed
    })?;
    let Some(created) = written else {
        return Err(refused.unwrap_or_else(|| ApiError::internal("a device write refused")));
    };
    if let Some((username, password)) = login {
        let username = username.as_deref().unwrap_or(code);
        catalog.put_gat1400_credential(&crate::gat1400::credential(code, username, &password))?;
        app.gateway.forget_userhashes();
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
    Ok((v, created))
}

/// A scoped admin changes only its own communities: 403 for another.
pub(crate) fn may_change(caller: &Caller, community: &str) -> Result<(), ApiError> {
    match caller.sees(community) {
        true => Ok(()),
        false => Err(ApiError::Forbidden(format!(
            "key {} may not change community {community:?}",
            caller.key_id
        ))),
    }
}

/// A scoped admin changes devices of its communities only, and moves none in from
/// elsewhere (a GA/T 1400 password on another community's device would be a way to
/// write into it): 403 when device `code`, registered as `existing`, is another's.
pub(crate) fn may_move(caller: &Caller, code: &str, existing: &Device) -> Result<(), ApiError> {
    match caller.sees(&existing.community) {
        true => Ok(()),
        false => Err(ApiError::Forbidden(format!(
            "device {code} belongs to community {:?}, which key {} may not change",
            existing.community, caller.key_id
        ))),
    }
}

/// The community a `PUT /v1/communities/{code}` with `body` registers.
pub(crate) fn community_of(code: String, body: &[u8]) -> Result<Community, ApiError> {
    let o = object(body)?;
    known_fields(&o, &["name", "district"], "")?;
    if code.chars().any(|c| !c.is_ascii_alphanumeric()) || code.len() > 32 {
        return Err(ApiError::param(
            "code",
            "a community code is 1–32 letters and digits",
        ));
    }
    Ok(Community {
        code,
        name: text(&o, "name", true)?,
        district: text(&o, "district", false)?,
    })
}

/// A device's GA/T 1400 digest login: the user name (`None`: its code) and password.
pub(crate) type Login = (Option<String>, String);

/// A platform's relays: code prefix → community.
pub(crate) type Relays = BTreeMap<String, String>;

/// The body of a `PUT /v1/devices/{code}`, read in two steps around the look-up of
/// its community (in a store's catalog or the cluster's): [`DevicePut::read`] checks
/// the code and that the caller may change the community, [`DevicePut::fields_with`] the
/// rest, so both servers refuse the same body with the same error first.
pub(crate) struct DevicePut {
    body: Map<String, Value>,
    /// The community the device is registered in (to be looked up).
    pub community: String,
}

impl DevicePut {
    /// The body read as JSON, the device code checked (400 `code`), its community
    /// named and the caller's to change (403).
    pub(crate) fn read(code: &str, body: &[u8], caller: &Caller) -> Result<DevicePut, ApiError> {
        let o = object(body)?;
        known_fields(
            &o,
            &[
                "community",
                "device_kind",
                "kind",
                "direction",
                "name",
                "gat1400",
                "relays",
            ],
            "",
        )?;
        sightline_storage::DeviceCode::parse_checked(code)
            .map_err(|e| ApiError::param("code", format!("not a GB/T 28181 device code: {e}")))?;
        let community = text(&o, "community", true)?;
        may_change(caller, &community)?;
        Ok(DevicePut { body: o, community })
    }

    /// The device, its GA/T 1400 login if given, and the `relays` to keep: a
    /// platform's if given, parsed by `relays` (`gat1400::relay::parse` over a store's
    /// catalog or the cluster's table; `None`: keep those kept), none for any other
    /// kind (`Some` of an empty map: a device that stops being a platform relays
    /// nothing any more), in `serve`'s order of checks: the relays before the
    /// direction and the name.
    pub(crate) fn fields_with(
        self,
        code: &str,
        relays: impl FnOnce(&Value) -> Result<Relays, ApiError>,
    ) -> Result<(Device, Option<Login>, Option<Relays>), ApiError> {
        let parse = relays;
        let o = self.body;
        let direction = text(&o, "direction", false)?;
        // `kind` is accepted for `device_kind` (as GA/T 1400 integrators write it).
        let device_kind = match (o.get("device_kind"), o.get("kind")) {
            (None, Some(_)) => text(&o, "kind", true)?,
            _ => text(&o, "device_kind", true)?,
        };
        let login = gat1400_login(&o)?;
        let relays = match o.get("relays") {
            None | Some(Value::Null) if device_kind != "platform" => Some(BTreeMap::new()),
            None | Some(Value::Null) => None,
            Some(_) if device_kind != "platform" => {
                return Err(ApiError::param(
                    "relays",
                    "only a device of kind platform relays devices",
                ))
            }
            Some(v) => Some(parse(v)?),
        };
        let d = Device {
            code: code.to_string(),
            community: self.community,
            device_kind,
            direction: sightline_storage::Direction::parse(&direction)
                .ok_or_else(|| ApiError::param("direction", "use in, out or unknown"))?,
            name: text(&o, "name", false)?,
        };
        Ok((d, login, relays))
    }
}

/// A device's community that is not registered (400 naming `community`).
pub(crate) fn unregistered(community: &str) -> ApiError {
    ApiError::param(
        "community",
        format!("{community:?} is not registered; PUT /v1/communities/{community} first"),
    )
}

/// Community `code` as found (`None`: not registered), if `caller` may see it;
/// 404 otherwise, as if it were not there.
pub(crate) fn visible_community(
    caller: &Caller,
    code: String,
    found: Option<Community>,
) -> Result<Community, ApiError> {
    found
        .filter(|c| caller.sees(&c.code))
        .ok_or(ApiError::NoSuchCommunity(code))
}

/// Device `code` as found, if `caller` may see its community; 404 otherwise.
pub(crate) fn visible_device(
    caller: &Caller,
    code: String,
    found: Option<Device>,
) -> Result<Device, ApiError> {
    found
        .filter(|d| caller.sees(&d.community))
        .ok_or(ApiError::NoSuchDevice(code))
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
    known_fields(g, &["username", "password"], "gat1400.")?;
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

/// A community as every catalog answer writes it.
pub(crate) fn community_json(c: &Community) -> Value {
    json!({"code": c.code, "name": c.name, "district": c.district})
}

/// A device as every catalog answer writes it.
pub(crate) fn device_json(d: &Device) -> Value {
    json!({"code": d.code, "community": d.community, "device_kind": d.device_kind,
           "direction": d.direction.as_str(), "name": d.name})
}
