//! `GET /v1/openapi.json`: an OpenAPI 3 description derived from the route table
//! (`routes/table.rs`), with an example for every parameter and body, so the document and
//! the server cannot drift apart: the HTTP tests call every documented route with its
//! examples (`server/tests/http/openapi.rs`). Each operation names how it is
//! authenticated (`security`: an API key as a bearer token or `X-Api-Key`, GA/T 1400's
//! digest, or nothing) and the role it needs (`x-role`). The `/VIID` routes are listed
//! with their GA/T 1400 headers; their bodies are the standard's (server/API.md).

use hyper::Method;
use serde_json::{json, Map, Value};

use crate::routes::{routes, Access, Doc, Route};

pub fn document() -> Value {
    let mut paths = Map::new();
    for r in &routes().routes {
        let Some(method) = &r.method else {
            continue; // the GA/T 1400 fallback: any other /VIID request
        };
        if r.access == Access::Console {
            continue; // the console's files: a page, not the API
        }
        let mut op = match (&r.doc, r.access) {
            (_, Access::Gat1400) => viid(method, r.path),
            (Some(doc), _) => match *method {
                Method::GET => get(r, doc),
                Method::POST => post(r.path, doc),
                Method::PUT => put(r.path, doc),
                Method::DELETE => delete(doc),
                _ => unreachable!("the table names only GET, POST, PUT and DELETE"),
            },
            (None, _) => unreachable!("every route but GA/T 1400's is documented"),
        };
        let (security, role) = match r.access {
            Access::Public => (json!([]), None),
            Access::Key(role) => (json!([{"bearer": []}, {"apiKey": []}]), Some(role.as_str())),
            Access::Gat1400 => (json!([{"gat1400Digest": []}]), None),
            Access::Console => unreachable!("left out above"),
        };
        op["security"] = security;
        if let Some(role) = role {
            op["x-role"] = role.into();
            op["responses"]["401"] = json!({"description": "No API key, or an unknown or revoked one (`WWW-Authenticate: Bearer realm=\"sightline\"`, with `error=\"invalid_token\"` for an unknown or revoked key).",
                "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
                "content": {"application/json": {"schema": error()}}});
            op["responses"]["403"] = json!({"description": "The key's role or communities do not allow this.",
                "content": {"application/json": {"schema": error()}}});
        }
        let ops = paths
            .entry(r.path.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        ops[method.as_str().to_ascii_lowercase()] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Sightline", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Event store and query server for community gate sensing. Semantics: query/SEMANTICS.md."},
        "paths": paths,
        "security": [{"bearer": []}, {"apiKey": []}],
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                    "description": "An API key (`sl_<id>_<secret>`) as `Authorization: Bearer <token>` (the scheme in any case). Over TLS with client certificates, a request without one authenticates as the key whose id its certificate names (server/API.md, \"TLS\")."},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key",
                    "description": "The same API key in its own header."},
                "gat1400Digest": {"type": "http", "scheme": "digest",
                    "description": "GA/T 1400: HTTP Digest (RFC 2617/7616: MD5 or SHA-256, qop=auth or none; another qop is refused) with the credential of a catalogued device or platform; later requests name it in `User-Identify` from the registered address, or carry a digest, or (mTLS) a client certificate naming it."}},
            "schemas": {"Error": {"type": "object", "properties": {"error": {
                "type": "object", "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                               "field": {"type": "string"}, "line": {"type": "integer"}}}}}}}
    })
}

/// A GA/T 1400 operation: its summary, the `User-Identify` header, a JSON body in the
/// standard's shape for writes, and its answers (GA/T 1400's own, never the `/v1` one).
fn viid(method: &Method, path: &str) -> Value {
    let summary = match (method.as_str(), path) {
        ("POST", "/VIID/System/Register") => "Register a device or platform (HTTP Digest handshake: 401 with a challenge, then the answer).",
        ("POST", "/VIID/System/UnRegister") => "Unregister.",
        ("POST", "/VIID/System/Keepalive") => "Keep a registration alive.",
        ("GET", "/VIID/System/Time") => "The server's time and VIIDServerID.",
        ("POST", "/VIID/MotorVehicles") => "Upload motor vehicles (MotorVehicleListObject): one status per object.",
        ("POST", "/VIID/Faces") => "Upload faces (FaceListObject): one status per object.",
        ("POST", "/VIID/Persons") => "Upload persons (PersonListObject): one status per object.",
        ("POST", "/VIID/NonMotorVehicles") => "Upload non-motor vehicles (NonMotorVehicleListObject): one status per object.",
        ("POST", "/VIID/Images") => "Upload images with the objects seen in them (ImageListObject).",
        ("GET", "/VIID/MotorVehicles") | ("GET", "/VIID/Faces") | ("GET", "/VIID/Persons") | ("GET", "/VIID/NonMotorVehicles") => "Query the caller's objects by GA/T 1400.4 conditions ((MotorVehicle.PassTime BETWEEN 'a' AND 'b'), RecordStartNo, PageRecordNum, Sort): the list object with TotalNum; a condition not answered is 400 naming it (server/API.md, \"Object queries\").",
        ("GET", "/VIID/MotorVehicles/{id}") | ("GET", "/VIID/Faces/{id}") | ("GET", "/VIID/Persons/{id}") | ("GET", "/VIID/NonMotorVehicles/{id}") => "One of the caller's objects by its id, as uploaded (404 when its communities hold none).",
        ("GET", "/VIID/APEs") => "The catalog's devices the caller's record covers (APEListObject).",
        ("GET", "/VIID/Tollgates") => "The catalog's checkpoints the caller's record covers (TollgateListObject).",
        ("POST", "/VIID/Dispositions") | ("PUT", "/VIID/Dispositions") => "Dispositions (布控): scoped watchlists notifying their ReceiveAddr.",
        (_, "/VIID/Dispositions") | (_, "/VIID/Dispositions/{id}") => "Revoke dispositions (IDList, or the one in the path).",
        ("POST", "/VIID/Subscribes") | ("PUT", "/VIID/Subscribes") => "Subscriptions (订阅) of a registered platform: notifications of the objects as uploaded.",
        ("GET", "/VIID/Subscribes") => "The caller's subscriptions (SubscribeStatus 0 in force, 1 cancelled, 2 past EndTime) that GA/T 1400.4 conditions over a SubscribeObject's attributes keep (SubscribeID=…, (SubscribeStatus = 1), RecordStartNo, PageRecordNum); a condition not answered is 400 naming it.",
        ("PUT", "/VIID/Subscribes/{id}") => "Cancel a subscription (取消订阅; its body a SubscribeObject with SubscribeCancelOrg, SubscribeCancelPerson, CancelTime, CancelReason): listed with SubscribeStatus 1 after.",
        (_, "/VIID/Subscribes") | (_, "/VIID/Subscribes/{id}") => "Delete subscriptions (删除订阅: IDList, or the one in the path): no longer listed.",
        ("POST", "/VIID/SubscribeNotifications") => "Notifications from an upstream subscription, stored as the sender's uploads.",
        _ => "GA/T 1400: see server/API.md.",
    };
    let mut params = vec![
        json!({"name": "User-Identify", "in": "header", "required": false,
        "description": "The caller's 20-digit GA/T 1400 code.", "schema": {"type": "string"},
        "example": "32050801011210000001"}),
    ];
    if path.ends_with("/{id}") {
        params.push(json!({"name": "id", "in": "path", "required": true,
            "schema": {"type": "string"}, "example": "320508000000000000010120210901080000000001"}));
    }
    if ["/VIID/Dispositions", "/VIID/Subscribes"].contains(&path) && method == Method::DELETE {
        params.push(json!({"name": "IDList", "in": "query", "required": true,
            "description": "Ids, comma-separated.", "schema": {"type": "string"}}));
    }
    let status = json!({"description": "GA/T 1400 ResponseStatusObject (or ResponseStatusListObject) per object; StatusCode 0 is taken.",
        "content": {"application/VIID+JSON": {}}});
    let mut op = json!({"summary": summary, "parameters": params, "responses": {
        "200": status,
        "401": {"description": "Not authenticated: a WWW-Authenticate digest challenge (StatusCode 4, invalid operation).",
                "content": {"application/VIID+JSON": {}}},
        "400": {"description": "A digest whose uri is not this request's target (path and query), or whose qop comes without nc and cnonce (RFC 7616 §3.4.6).",
                "content": {"application/VIID+JSON": {}}}}});
    if [Method::POST, Method::PUT].contains(method) {
        op["requestBody"] = json!({"required": true, "content": {"application/VIID+JSON": {}}});
    }
    op
}

fn error() -> Value {
    json!({"$ref": "#/components/schemas/Error"})
}

fn get(r: &Route, doc: &Doc) -> Value {
    let params: Vec<Value> = doc
        .params
        .iter()
        .map(|p| {
            let at = if p.in_path { "path" } else { "query" };
            json!({"name": p.name, "in": at, "required": p.required,
                   "description": p.about, "schema": {"type": "string"}, "example": p.example})
        })
        .collect();
    let content = if r.path == "/metrics" {
        "text/plain"
    } else {
        "application/json"
    };
    let mut op = json!({"summary": doc.summary, "parameters": params, "responses": {
        "200": {"description": "OK", "content": {content: {}}},
        "400": {"description": "A parameter is invalid; `field` names it.",
                "content": {"application/json": {"schema": error()}}}}});
    if r.access != Access::Public {
        op["responses"]["429"] = json!({"description": "Saturated (every query slot busy); retry after `Retry-After` seconds.",
            "content": {"application/json": {"schema": error()}}});
        op["responses"]["503"] = json!({"description": "The query ran past its time limit, or storage is unavailable.",
            "content": {"application/json": {"schema": error()}}});
    }
    // One thing by its code or id: 404 when there is none (or none the key may see).
    if r.path.contains('{') {
        op["responses"]["404"] = json!({"description": "No such thing, or none the key may see (`no_such_…`).",
            "content": {"application/json": {"schema": error()}}});
    }
    op
}

fn example(doc: &Doc) -> Value {
    doc.example.map_or(Value::Null, |f| f())
}

/// The path parameters of a PUT or DELETE (name, example).
fn path_params(doc: &Doc) -> Vec<Value> {
    doc.params
        .iter()
        .filter(|p| p.in_path)
        .map(|p| {
            json!({"name": p.name, "in": "path", "required": true,
                   "schema": {"type": "string"}, "example": p.example})
        })
        .collect()
}

fn post(path: &str, doc: &Doc) -> Value {
    let error = error();
    let mut op = json!({"summary": doc.summary,
        "requestBody": {"required": true, "content": {
            "application/json": {"example": example(doc)},
            "application/x-ndjson": {}}},
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {}}},
            "400": {"description": "Malformed body or parameter.", "content": {"application/json": {"schema": error}}},
            "413": {"description": "Body or batch too large.", "content": {"application/json": {"schema": error}}},
            "422": {"description": "Every record refused.", "content": {"application/json": {"schema": error}}},
            "429": {"description": "Saturated; retry after Retry-After seconds.", "content": {"application/json": {"schema": error}}}}});
    // A POST that creates answers 201 with where (RFC 9110 §15.3.2).
    if crate::routes::CREATED_BY_POST.contains(&path) {
        let created = op["responses"]["200"].take();
        op["responses"]["201"] = json!({"description": "Created: the new resource, with its `id`.",
            "headers": {"Location": {"description": "Where it is: `{this path}/{id}`.",
                                     "schema": {"type": "string"}}},
            "content": created["content"]});
        if path == "/v1/keys" {
            // The body holds the token, shown this once.
            op["responses"]["201"]["headers"]["Cache-Control"] = json!({"description": "`no-store`: the token is a secret no cache may keep.",
                       "schema": {"type": "string"}});
        }
        op["responses"]
            .as_object_mut()
            .expect("an object")
            .remove("200");
    }
    op
}

fn put(path: &str, doc: &Doc) -> Value {
    let mut op = json!({"summary": doc.summary,
        "parameters": path_params(doc),
        "requestBody": {"required": true, "content": {"application/json": {"example": example(doc)}}},
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {}}},
            "400": {"description": "A field is invalid; `field` names it.",
                    "content": {"application/json": {"schema": error()}}}}});
    // A PUT that names what it creates (RFC 9110 §9.3.4): 201 when it did, 200 when
    // it replaced.
    if path.contains('{') {
        op["responses"]["200"]["description"] = "Replaced.".into();
        op["responses"]["201"] =
            json!({"description": "Created.", "content": {"application/json": {}}});
    }
    op
}

fn delete(doc: &Doc) -> Value {
    json!({"summary": doc.summary,
        "parameters": path_params(doc),
        "responses": {
            "200": {"description": "Deleted", "content": {"application/json": {}}},
            "404": {"description": doc.not_found.unwrap_or("Not found."),
                    "content": {"application/json": {"schema": error()}}}}})
}
