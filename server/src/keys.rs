//! The key endpoints: `POST /v1/keys` (create; the token is answered once),
//! `GET /v1/keys` (never a token), `DELETE /v1/keys/{id}` (revoke). Keys are a
//! city-wide power: an admin key without a community scope only. Each change is in
//! force for the next request (`auth::Keys::reload`) and audited by the dispatcher
//! like every change. `sightline keys` does the same with the server stopped, to make
//! the first admin key.

use hyper::header::{HeaderValue, CACHE_CONTROL};
use hyper::StatusCode;
use serde_json::{json, Value};
use sightline_storage::ApiKeyRecord;

use crate::auth::{self, Role};
use crate::error::ApiError;
use crate::http::json::{object, strings, text};
use crate::http::runner::run;
use crate::http::{Answer, Body, Call};
use crate::params::Rfc3339;

/// The longest key name, in bytes.
const MAX_NAME_BYTES: usize = 200;
/// Most communities one key may be scoped to.
const MAX_COMMUNITIES: usize = 1000;

/// A key as `GET /v1/keys` lists it (never its token).
pub(crate) fn key_json(k: &ApiKeyRecord) -> Value {
    json!({
        "id": k.id,
        "name": k.name,
        "role": k.role,
        "communities": k.communities,
        "created": Rfc3339(k.created_ms),
        "revoked": k.revoked_ms.map(Rfc3339),
    })
}

/// `GET /v1/keys`: every key, active and revoked, without tokens.
pub(crate) async fn list(c: Call) -> Result<Answer, ApiError> {
    c.caller.city_wide()?;
    let v = run(c.app, |app| {
        let keys: Vec<Value> = app
            .store
            .catalog()
            .api_keys()?
            .iter()
            .map(key_json)
            .collect();
        Ok(json!({ "keys": keys }))
    })
    .await?;
    Ok((StatusCode::OK, v.into()))
}

/// `POST /v1/keys` with `{"name", "role", "communities"}`: answered 201 with the
/// token, which is shown this once (the catalog keeps its SHA-256 only).
pub(crate) async fn create(mut c: Call) -> Result<Answer, ApiError> {
    c.caller.city_wide()?;
    let body = c.body().await?;
    let v = run(c.app, move |app| {
        let (name, role, communities) = key_request(&body)?;
        let (record, token) = auth::create(&app.store, &name, role, communities, crate::now_ms())?;
        app.keys.reload(&app.store)?;
        let mut v = key_json(&record);
        v["token"] = token.into();
        Ok(v)
    })
    .await?;
    Ok((StatusCode::CREATED, created_key(v.into())))
}

/// The body of a `POST /v1/keys`'s 201 (`serve`'s and a query node's): the new key
/// with its token, sent with `Location: /v1/keys/{id}` (RFC 9110 §15.3.2: where the
/// created key is; `DELETE` revokes it there) and `Cache-Control: no-store` (RFC 9111
/// §5.2.2.5: the token is a secret no cache may keep).
pub(crate) fn created_key(body: Body) -> Body {
    let no_store = vec![(CACHE_CONTROL, HeaderValue::from_static("no-store"))];
    Body::Headed(no_store, Box::new(body)).located("/v1/keys")
}

/// A `POST /v1/keys` body, checked: the new key's name, role and communities
/// (`None`: every community). A cluster's query node reads it alike.
pub(crate) fn key_request(body: &[u8]) -> Result<(String, Role, Option<Vec<String>>), ApiError> {
    let o = object(body)?;
    if let Some(extra) = o
        .keys()
        .find(|k| !["name", "role", "communities"].contains(&k.as_str()))
    {
        return Err(ApiError::param(
            extra,
            "unknown field; a key is {\"name\", \"role\", \"communities\"}",
        ));
    }
    let name = text(&o, "name", false)?;
    if name.len() > MAX_NAME_BYTES {
        return Err(ApiError::param(
            "name",
            format!("at most {MAX_NAME_BYTES} bytes"),
        ));
    }
    let role = text(&o, "role", true)?;
    let role = Role::parse(&role)
        .ok_or_else(|| ApiError::param("role", "ingest, investigate or admin"))?;
    let communities = strings(
        o.get("communities"),
        "communities",
        "a list of community codes (omit it for every community)",
    )?;
    if let Some(c) = &communities {
        if c.is_empty() || c.len() > MAX_COMMUNITIES || c.iter().any(|x| x.is_empty()) {
            return Err(ApiError::param(
                "communities",
                format!("1 to {MAX_COMMUNITIES} community codes (omit it for every community)"),
            ));
        }
    }
    Ok((name, role, communities))
}

/// `DELETE /v1/keys/{id}`: revoked at once, the record kept (so a store that has had
/// keys never opens again). Revoking the last key closes the server to every key.
pub(crate) async fn revoke(c: Call) -> Result<Answer, ApiError> {
    c.caller.city_wide()?;
    let id = c.arg();
    let v = run(c.app, move |app| {
        if !auth::revoke(&app.store, &id, crate::now_ms())? {
            return Err(ApiError::NoSuchKey(id));
        }
        app.keys.reload(&app.store)?;
        let k = app
            .store
            .catalog()
            .api_keys()?
            .into_iter()
            .find(|k| k.id == id)
            .ok_or_else(|| ApiError::internal("a revoked key vanished"))?;
        Ok(key_json(&k))
    })
    .await?;
    Ok((StatusCode::OK, v.into()))
}

/// `GET /v1/whoami`: the key making the request — its id, name, role and communities
/// (`null`: every community) — and whether the server is open (`--no-auth` over a
/// store that never held a key: everyone is `anonymous`, an admin). Audited like a
/// query; refused (401, 403) like any keyed request.
pub(crate) async fn whoami(c: Call) -> Result<Answer, ApiError> {
    let caller = c.caller.clone();
    crate::http::runner::audited_get(c, move |app, _, params| {
        params.only(&[])?;
        let open = app.keys.is_open();
        let name = match open {
            true => Some(crate::auth::Caller::ANONYMOUS.to_string()),
            false => app.keys.name_of(&caller.key_id),
        };
        Ok((whoami_json(&caller, name, open).into(), 1))
    })
    .await
}

/// `GET /v1/whoami`'s answer for `caller`, whose key is called `name`, on a server
/// `open` to anyone or not (a cluster's query node answers the same).
pub(crate) fn whoami_json(caller: &crate::auth::Caller, name: Option<String>, open: bool) -> Value {
    json!({
        "id": caller.key_id,
        "name": name,
        "role": caller.role.as_str(),
        "communities": caller.communities,
        "open": open,
    })
}
