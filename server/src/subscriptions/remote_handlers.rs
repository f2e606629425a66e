//! `POST /v1/remote-subscriptions`, `GET /v1/remote-subscriptions`,
//! `DELETE /v1/remote-subscriptions/{id}` (admin): GA/T 1400 subscriptions this server
//! places at other 视图库s.

use std::sync::Arc;

use hyper::StatusCode;
use serde_json::{json, Map, Value};

use super::remote::{cancel, RemoteStatus, RemoteSubscription, Remotes};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::http::json::{known_fields, object, strings, text};
use crate::http::out::listed;
use crate::http::runner::run;
use crate::http::{Answer, Body, Call};
use crate::App;

/// A remote subscription as listed: never its password.
pub(crate) fn remote_json(r: &RemoteSubscription, st: &RemoteStatus) -> Value {
    json!({"id": r.id, "url": r.url, "device_id": r.device_id, "username": r.username,
           "subscribe_id": r.object["SubscribeID"], "object": r.object, "owner": r.owner,
           "created_ms": r.created_ms, "cancelling": r.cancelling, "status": st})
}

/// `GET /v1/remote-subscriptions`.
pub(crate) async fn list(c: Call) -> Result<Answer, ApiError> {
    c.caller.city_wide()?;
    let items: Vec<Value> = Remotes::list(&c.app)?
        .iter()
        .map(|(r, st)| remote_json(r, st))
        .collect();
    Ok((StatusCode::OK, listed("remote_subscriptions", items).0))
}

/// `DELETE /v1/remote-subscriptions/{id}`: cancels it at the other side and forgets
/// it; when the cancel is not taken (its error in the answer) it stays listed,
/// `cancelling`, and its worker tries the cancel again until taken.
pub(crate) async fn delete(c: Call) -> Result<Answer, ApiError> {
    c.caller.city_wide()?;
    let id = c.arg();
    let Some((r, _)) = Remotes::list(&c.app)?.into_iter().find(|(r, _)| r.id == id) else {
        return Err(ApiError::NoSuchSubscription(id));
    };
    let cancelled = cancel(&c.app.outbound, &r).await;
    match &cancelled {
        Ok(()) => Remotes::forget(&c.app, &id)?,
        Err(_) => Remotes::cancel_later(&c.app, r)?,
    }
    Ok((
        StatusCode::OK,
        json!({"deleted": id, "cancelled": cancelled.is_ok(),
               "cancel_error": cancelled.err().map(|e| e.to_string())})
        .into(),
    ))
}

/// `POST /v1/remote-subscriptions`: `{"url", "password" (optional), "device_id", "username",
/// "kinds", "resource_uri", "title", "receive_addr", "image_data", "begin_time",
/// "end_time"}`; placed at once.
pub(crate) async fn create(mut c: Call) -> Result<Answer, ApiError> {
    let body = c.body().await?;
    let (app, caller) = (c.app.clone(), c.caller);
    let v = run(c.app, move |_| create_now(&app, &body, &caller)).await?;
    Ok((
        StatusCode::CREATED,
        Body::from(v).located("/v1/remote-subscriptions"),
    ))
}

/// A remote subscription's `EndTime` when none is given.
const FOREVER: &str = "20991231235959";

/// GA/T 1400 resource-class codes of event kinds (`SubscribeDetail`).
fn detail(o: &Map<String, Value>) -> Result<String, ApiError> {
    let kinds = strings(o.get("kinds"), "kinds", "must be a list of kinds")?.unwrap_or_else(|| {
        ["person", "face", "vehicle", "nonmotor"]
            .map(String::from)
            .to_vec()
    });
    let codes: Result<Vec<&str>, ApiError> = kinds
        .iter()
        .map(|k| match k.as_str() {
            "person" => Ok("11"),
            "face" => Ok("12"),
            "vehicle" => Ok("13"),
            "nonmotor" => Ok("14"),
            _ => Err(ApiError::param(
                "kinds",
                "person, face, vehicle or nonmotor",
            )),
        })
        .collect();
    Ok(codes?.join(","))
}

fn create_now(app: &Arc<App>, body: &[u8], caller: &Caller) -> Result<Value, ApiError> {
    let public_base = super::deliver::public_base(app);
    let r = remote_of(body, &app.config.viid_server_id, &public_base, caller)?;
    Remotes::create(app, r.clone())?;
    Ok(remote_json(&r, &RemoteStatus::default()))
}

/// A remote subscription as `POST /v1/remote-subscriptions` asks for it, made by
/// `caller`, for a server whose 视图库 id is `server_id` and whose notifications
/// endpoint is under `public_base` (its `ReceiveAddr` unless given).
pub(crate) fn remote_of(
    body: &[u8],
    server_id: &str,
    public_base: &str,
    caller: &Caller,
) -> Result<RemoteSubscription, ApiError> {
    // What comes back is stored in the communities of the other platform's record,
    // not the key's: a city-wide power.
    caller.city_wide()?;
    let o = object(body)?;
    known_fields(
        &o,
        &[
            "url",
            "password",
            "device_id",
            "username",
            "kinds",
            "resource_uri",
            "title",
            "receive_addr",
            "image_data",
            "begin_time",
            "end_time",
        ],
        "",
    )?;
    let url = text(&o, "url", true)?;
    super::target(&url)?;
    // A lower platform may know its upper by `User-Identify` alone (wvp-GB28181-pro,
    // fliad-viid): a password is needed only when the other side challenges.
    let password = text(&o, "password", false)?;
    let or = |field: &str, default: &str| -> Result<String, ApiError> {
        Ok(match text(&o, field, false)? {
            v if v.is_empty() => default.to_string(),
            v => v,
        })
    };
    let server_id = server_id.to_string();
    let device_id = or("device_id", &server_id)?;
    let username = or("username", &device_id)?;
    let receive_addr = or(
        "receive_addr",
        &format!("{public_base}/VIID/SubscribeNotifications"),
    )?;
    super::target(&receive_addr)
        .map_err(|_| ApiError::param("receive_addr", "an http:// or https:// URL"))?;
    // Bound to every address and no --public-url: the default would send the other
    // side to http://0.0.0.0:…, which reaches nobody.
    let unreachable = public_base
        .parse::<hyper::Uri>()
        .ok()
        .and_then(|u| {
            u.host()?
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .ok()
        })
        .is_some_and(|ip| ip.is_unspecified());
    if text(&o, "receive_addr", false)?.is_empty() && unreachable {
        return Err(ApiError::param(
            "receive_addr",
            "needed: this server listens on every address and has no --public-url, so where the other side sends notifications is not known",
        ));
    }
    let now = crate::now_ms();
    // The standard's form: our organisation (12), 03 (a subscription), time, sequence.
    let subscribe_id = format!(
        "{}03{}{:05}",
        server_id.get(..12).unwrap_or("000000000000"),
        crate::gat1400::local_time(now),
        rand::random::<u32>() % 100_000
    );
    let title = or("title", "Sightline")?;
    let mut object = json!({
        "SubscribeID": subscribe_id, "Title": title, "SubscribeDetail": detail(&o)?,
        "ResourceURI": or("resource_uri", "")?, "ApplicantName": "Sightline",
        "ApplicantOrg": server_id, "ReceiveAddr": receive_addr, "ReportInterval": 3,
        "Reason": title, "OperateType": 0, "SubscribeStatus": 0, "ResourceClass": 4,
    });
    // wvp-GB28181-pro takes a subscription without BeginTime/EndTime as ended at
    // once: from now until 2099-12-31 23:59:59 unless given.
    let defaults = [crate::gat1400::local_time(now), FOREVER.to_string()];
    for ((field, key), default) in [("begin_time", "BeginTime"), ("end_time", "EndTime")]
        .into_iter()
        .zip(defaults)
    {
        let t = text(&o, field, false)?;
        if !t.is_empty() {
            crate::gat1400::parse_time(&t)
                .ok_or_else(|| ApiError::param(field, "a time like 20210901080000"))?;
        }
        object[key] = if t.is_empty() { default } else { t }.into();
    }
    match o.get("image_data") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s == "reference" => {}
        Some(Value::String(s)) if s == "base64" => object["ImageData"] = 1.into(),
        Some(_) => return Err(ApiError::param("image_data", "reference or base64")),
    }
    Ok(RemoteSubscription {
        id: format!("rs-{:016x}", rand::random::<u64>()),
        url,
        device_id,
        username,
        password,
        object,
        owner: caller.key_id.clone(),
        created_ms: now,
        cancelling: false,
    })
}
