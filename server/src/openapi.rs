//! `GET /v1/openapi.json`: an OpenAPI 3 description derived from the route table
//! (`routes/table.rs`), with an example for every parameter and body, so the document and
//! the server cannot drift apart: the HTTP tests call every documented route with its
//! examples (`server/tests/http/openapi.rs`).

use hyper::Method;
use serde_json::{json, Map, Value};

use crate::routes::{routes, Doc, Route};

pub fn document() -> Value {
    let mut paths = Map::new();
    for r in &routes().routes {
        let (Some(method), Some(doc)) = (&r.method, &r.doc) else {
            continue; // GA/T 1400: server/API.md
        };
        let op = match *method {
            Method::GET => get(r, doc),
            Method::POST => post(doc),
            Method::PUT => put(doc),
            Method::DELETE => delete(doc),
            _ => unreachable!("the table names only GET, POST, PUT and DELETE"),
        };
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
        "components": {"schemas": {"Error": {"type": "object", "properties": {"error": {
            "type": "object", "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                           "field": {"type": "string"}, "line": {"type": "integer"}}}}}}}
    })
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
    json!({"summary": doc.summary, "parameters": params, "responses": {
        "200": {"description": "OK", "content": {content: {}}},
        "400": {"description": "A parameter is invalid; `field` names it.",
                "content": {"application/json": {"schema": error()}}}}})
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

fn post(doc: &Doc) -> Value {
    let error = error();
    json!({"summary": doc.summary,
        "requestBody": {"required": true, "content": {
            "application/json": {"example": example(doc)},
            "application/x-ndjson": {}}},
        "responses": {
            "200": {"description": "OK (201 Created for a subscription)", "content": {"application/json": {}}},
            "400": {"description": "Malformed body or parameter.", "content": {"application/json": {"schema": error}}},
            "413": {"description": "Body or batch too large.", "content": {"application/json": {"schema": error}}},
            "422": {"description": "Every record refused.", "content": {"application/json": {"schema": error}}},
            "429": {"description": "Saturated; retry after Retry-After seconds.", "content": {"application/json": {"schema": error}}}}})
}

fn put(doc: &Doc) -> Value {
    json!({"summary": doc.summary,
        "parameters": path_params(doc),
        "requestBody": {"required": true, "content": {"application/json": {"example": example(doc)}}},
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {}}},
            "400": {"description": "A field is invalid; `field` names it.",
                    "content": {"application/json": {"schema": error()}}}}})
}

fn delete(doc: &Doc) -> Value {
    json!({"summary": doc.summary,
        "parameters": path_params(doc),
        "responses": {
            "200": {"description": "Deleted", "content": {"application/json": {}}},
            "404": {"description": doc.not_found.unwrap_or("Not found."),
                    "content": {"application/json": {"schema": error()}}}}})
}
