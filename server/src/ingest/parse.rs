//! Ingest bodies in JSON: NDJSON or a JSON array of events, each record parsed on its
//! own, so one bad record is refused with its line and field and the rest go on.

use serde_json::{Map, Value};
use sightline_storage::{AttrValue, Attrs, EventInput};

use crate::error::{ApiError, RecordError};
use crate::params::parse_time;

/// The records of a body, each parsed or refused, with its position. A body starting
/// with `[` is a JSON array (positions are 0-based indexes); anything else is NDJSON,
/// one event per line (positions are 1-based line numbers; blank lines are skipped).
pub type Records = Vec<(usize, Result<EventInput, RecordError>)>;

pub fn records(body: &[u8]) -> Result<Records, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::MalformedBody(format!("the body is not UTF-8: {e}")))?;
    if text.trim_start().starts_with('[') {
        let items: Vec<Value> = serde_json::from_str(text).map_err(|e| {
            ApiError::MalformedJson(format!("the body is not a JSON array of events: {e}"))
        })?;
        return Ok(items
            .into_iter()
            .enumerate()
            .map(|(i, v)| (i, event(i, &v)))
            .collect());
    }
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let line = i + 1;
            let parsed = serde_json::from_str::<Value>(l)
                .map_err(|e| RecordError {
                    line,
                    field: None,
                    message: format!("malformed JSON: {e}"),
                })
                .and_then(|v| event(line, &v));
            (line, parsed)
        })
        .collect())
}

/// One event object, field by field.
fn event(line: usize, v: &Value) -> Result<EventInput, RecordError> {
    let err = |field: &str, message: String| RecordError {
        line,
        field: Some(field.to_string()),
        message,
    };
    let obj = v.as_object().ok_or_else(|| RecordError {
        line,
        field: None,
        message: format!("expected an event object, got {}", type_name(v)),
    })?;
    const FIELDS: [&str; 8] = [
        "ts",
        "community",
        "device",
        "kind",
        "subject",
        "direction",
        "attrs",
        "id",
    ];
    if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(err(
            k,
            format!("unknown field; events have {}", FIELDS[..7].join(", ")),
        ));
    }
    let string = |name: &str, required: bool| -> Result<String, RecordError> {
        match obj.get(name) {
            Some(Value::String(s)) => Ok(s.clone()),
            None | Some(Value::Null) if !required => Ok(String::new()),
            None | Some(Value::Null) => Err(err(name, "is required".into())),
            Some(other) => Err(err(
                name,
                format!("must be a string, got {}", type_name(other)),
            )),
        }
    };
    let ts_ms = match obj.get("ts") {
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| err("ts", format!("{n} is not whole epoch milliseconds")))?,
        Some(Value::String(s)) => parse_time("ts", s).map_err(|e| err("ts", e.to_string()))?,
        None | Some(Value::Null) => return Err(err("ts", "is required".into())),
        Some(other) => {
            return Err(err(
                "ts",
                format!(
                    "must be RFC 3339 text or epoch ms, got {}",
                    type_name(other)
                ),
            ))
        }
    };
    let mut direction = string("direction", false)?;
    if direction.is_empty() {
        direction = "unknown".into();
    }
    Ok(EventInput {
        ts_ms,
        community: string("community", true)?,
        device: string("device", true)?,
        kind: string("kind", true)?,
        subject: string("subject", true)?,
        direction,
        attrs: attrs(obj.get("attrs")).map_err(|(f, m)| err(&f, m))?,
    })
}

fn attrs(v: Option<&Value>) -> Result<Attrs, (String, String)> {
    let obj: &Map<String, Value> = match v {
        None | Some(Value::Null) => return Ok(Attrs::new()),
        Some(Value::Object(o)) => o,
        Some(other) => {
            return Err((
                "attrs".into(),
                format!("must be an object, got {}", type_name(other)),
            ))
        }
    };
    let mut out = Attrs::new();
    for (k, v) in obj {
        let value = match v {
            Value::String(s) => AttrValue::Str(s.clone()),
            Value::Bool(b) => AttrValue::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => AttrValue::Int(i),
                None => AttrValue::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::Null => continue,
            other => {
                return Err((
                    format!("attrs.{k}"),
                    format!(
                        "must be a string, number or boolean, got {}",
                        type_name(other)
                    ),
                ))
            }
        };
        out.insert(k.clone(), value);
    }
    Ok(out)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_record_is_parsed_or_refused_with_its_line_and_field() {
        let body = br#"{"ts":"2021-09-01T08:00:00+08:00","community":"c","device":"d","kind":"vehicle","subject":"s","direction":"in","attrs":{"confidence":0.9,"lane":2,"ok":true}}
not json
{"ts":true,"community":"c","device":"d","kind":"vehicle","subject":"s"}

{"ts":1,"community":"c","device":"d","kind":"vehicle","subject":"s","colour":"red"}
{"ts":1,"community":"c","device":"d","kind":"vehicle","subject":"s","attrs":{"x":[1]}}
[1,2]"#;
        let r = records(body).unwrap();
        assert_eq!(r.len(), 6);
        let e = r[0].1.as_ref().unwrap();
        assert_eq!(e.ts_ms, 1_630_454_400_000);
        assert_eq!(e.attrs["lane"], AttrValue::Int(2));
        assert_eq!(e.attrs["confidence"], AttrValue::Float(0.9));
        let errs: Vec<(usize, Option<String>)> = r[1..]
            .iter()
            .map(|(_, x)| {
                let e = x.as_ref().unwrap_err();
                (e.line, e.field.clone())
            })
            .collect();
        assert_eq!(
            errs,
            [
                (2, None),
                (3, Some("ts".into())),
                (5, Some("colour".into())),
                (6, Some("attrs.x".into())),
                (7, None),
            ]
        );
    }

    #[test]
    fn arrays_are_indexed_from_zero_and_a_broken_array_is_refused_whole() {
        let r = records(
            br#"[{"ts":1},{"ts":1,"community":"c","device":"d","kind":"k","subject":"s"}]"#,
        )
        .unwrap();
        assert_eq!(
            r[0].1.as_ref().unwrap_err().field.as_deref(),
            Some("community")
        );
        assert_eq!(r[0].0, 0);
        assert!(r[1].1.is_ok());
        let e = records(b"[{").unwrap_err();
        assert_eq!(e.code(), "malformed_json");
        assert_eq!(records(b"\xff").unwrap_err().code(), "malformed_body");
    }
}
