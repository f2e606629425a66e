//! Reading JSON request bodies: an object, its string fields and string lists, each
//! failure naming the field.

use serde_json::{Map, Value};

use crate::error::ApiError;

/// A JSON object body, or 400.
pub(crate) fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(ApiError::param("body", "must be a JSON object")),
        Err(e) => Err(ApiError::MalformedJson(format!(
            "the body is not JSON: {e}"
        ))),
    }
}

/// Refuses a field of `o` that is not one of `known` (400 naming it, `at` before its
/// name: `entries[3].`): a misspelt field (`comunities`, `expire`) is never silently
/// dropped, which could widen what a request does (a subscription of every community).
pub(crate) fn known_fields(
    o: &Map<String, Value>,
    known: &[&str],
    at: &str,
) -> Result<(), ApiError> {
    match o.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) => Err(ApiError::param(
            format!("{at}{k}"),
            format!("unknown field; known here: {}", known.join(", ")),
        )),
    }
}

/// A string field: required, or "" when optional and absent.
pub(crate) fn text(
    o: &Map<String, Value>,
    field: &str,
    required: bool,
) -> Result<String, ApiError> {
    match o.get(field) {
        Some(Value::String(s)) if !(required && s.trim().is_empty()) => Ok(s.trim().to_string()),
        None | Some(Value::Null) if !required => Ok(String::new()),
        None | Some(Value::Null) => Err(ApiError::missing(field)),
        Some(_) => Err(ApiError::param(field, "must be a non-empty string")),
    }
}

/// An optional list of strings, `named` in errors (absent or null: `None`).
pub(crate) fn strings(
    value: Option<&Value>,
    named: &str,
    wrong: &str,
) -> Result<Option<Vec<String>>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| ApiError::param(named, wrong))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(ApiError::param(named, wrong)),
    }
}
