//! The JSON shapes every answer shares: an event ([`EventOut`], its attributes written
//! straight from their stored encoding by [`AttrsOut`]) and a list answer.

use serde_json::value::RawValue;
use serde_json::{json, Value};
use sightline_query::Sighting;
use sightline_storage::{AttrRef, AttrsAt};

use crate::http::Body;
use crate::params::Rfc3339;

/// The attribute that lists an event's pictures, as JSON text (GA/T 1400 uploads
/// write it); answers show it as the event's `images`, not among its `attrs`.
pub(crate) const IMAGES_ATTR: &str = "images";

/// The attribute naming where an event's GA/T 1400 object, as uploaded, is kept;
/// answers show it as the event's `object` (`/v1/objects/{id}`), not among its `attrs`.
pub(crate) const OBJECT_ATTR: &str = "gat1400_object";

/// One event as every answer writes it (trajectory, event by id, feed,
/// subscriptions): `id, ts, community, device, kind, subject, direction, attrs`, then
/// `images` (its pictures: `[{"id", "url", "type", "width", "height", "shot", …}]`)
/// and `object` (where its GA/T 1400 object, as uploaded, is served:
/// `/v1/objects/{id}`) when it has them. Attributes that cannot be read (a damaged
/// segment) fail the serialization with the error naming the file.
pub(crate) struct EventOut<'a> {
    s: &'a Sighting,
    attrs: Result<std::borrow::Cow<'a, [u8]>, sightline_storage::StorageError>,
}

impl serde::Serialize for EventOut<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeMap};
        let attrs = self.attrs.as_ref().map_err(S::Error::custom)?;
        let s = self.s;
        let mut m = ser.serialize_map(None)?;
        m.serialize_entry("id", &s.seq)?;
        m.serialize_entry("ts", &Rfc3339(s.ts_ms))?;
        m.serialize_entry("community", &*s.community)?;
        m.serialize_entry("device", &*s.device)?;
        m.serialize_entry("kind", s.kind.as_str())?;
        m.serialize_entry("subject", &*s.subject)?;
        m.serialize_entry("direction", s.direction.as_str())?;
        m.serialize_entry("attrs", &AttrsOut(attrs))?;
        if let Some(images) = images_of(attrs) {
            m.serialize_entry("images", images)?;
        }
        if let Some(object) = object_of(attrs) {
            m.serialize_entry("object", &ObjectUrl(object))?;
        }
        m.end()
    }
}

/// `/v1/objects/{id}`, written without building a string.
struct ObjectUrl<'a>(&'a str);

impl serde::Serialize for ObjectUrl<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("/v1/objects/{}", self.0))
    }
}

/// The `object` attribute of encoded attributes.
fn object_of(attrs: &[u8]) -> Option<&str> {
    string_attr(attrs, OBJECT_ATTR)
}

/// A string attribute of encoded attributes, by key (a fast check first: most events
/// have neither pictures nor a kept object).
fn string_attr<'a>(attrs: &'a [u8], key: &str) -> Option<&'a str> {
    if !attrs.windows(key.len()).any(|w| w == key.as_bytes()) {
        return None;
    }
    let mut found = None;
    let _ = sightline_storage::visit_attrs(attrs, |k, v| {
        if let AttrRef::Str(text) = v {
            if k == key {
                found = Some(text);
            }
        }
    });
    found
}

/// The pictures an event's encoded attributes list.
fn images_of(attrs: &[u8]) -> Option<&RawValue> {
    serde_json::from_str::<&RawValue>(string_attr(attrs, IMAGES_ATTR)?).ok()
}

impl<'a> EventOut<'a> {
    pub fn of(s: &'a Sighting, attrs: &'a AttrsAt) -> EventOut<'a> {
        EventOut {
            s,
            attrs: attrs.bytes(),
        }
    }
}

/// A stored event as the API writes it, from the validated event (its attributes
/// written straight from their encoding, as in every answer).
pub(crate) fn event_json(seq: u64, e: &sightline_storage::Event) -> Value {
    let mut v = json!({"id": seq, "ts": Rfc3339(e.ts_ms()), "community": e.community(),
           "device": e.device().as_str(), "kind": e.kind().as_str(), "subject": e.subject(),
           "direction": e.direction().as_str(), "attrs": AttrsOut(e.attr_bytes())});
    if let Some(images) = images_of(e.attr_bytes()) {
        v["images"] = serde_json::from_str(images.get()).unwrap_or(Value::Null);
    }
    if let Some(id) = object_of(e.attr_bytes()) {
        v["object"] = format!("/v1/objects/{id}").into();
    }
    v
}

/// Attributes as a JSON object of strings, numbers and booleans, written straight
/// from their stored encoding (no map is built).
pub(crate) struct AttrsOut<'a>(pub &'a [u8]);

impl serde::Serialize for AttrsOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeMap};
        let mut m = s.serialize_map(None)?;
        let mut failed = None;
        let walked = sightline_storage::visit_attrs(self.0, |k, v| {
            if failed.is_some() || k == IMAGES_ATTR || k == OBJECT_ATTR {
                return;
            }
            let r = match v {
                AttrRef::Str(x) => m.serialize_entry(k, x),
                AttrRef::Int(x) => m.serialize_entry(k, &x),
                AttrRef::Float(x) => m.serialize_entry(k, &x),
                AttrRef::Bool(x) => m.serialize_entry(k, &x),
            };
            if let Err(e) = r {
                failed = Some(e);
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        walked.map_err(|e| S::Error::custom(format!("damaged attributes: {e}")))?;
        m.end()
    }
}

/// An answer `{key: [items]}` and how many items it holds.
pub(crate) fn listed(key: &str, items: Vec<Value>) -> (Body, usize) {
    let n = items.len();
    let mut answer = serde_json::Map::new();
    answer.insert(key.to_string(), Value::Array(items));
    (Value::Object(answer).into(), n)
}

/// A typed answer serialized as JSON text, with how many results it holds.
pub(crate) fn serialized<T: serde::Serialize>(
    answer: &T,
    results: usize,
) -> Result<(Body, usize), crate::error::ApiError> {
    let started = std::time::Instant::now();
    let text = serde_json::to_string(answer)
        .map_err(|e| crate::error::ApiError::internal(e.to_string()))?;
    Ok((
        Body::Serialized(started.elapsed(), Box::new(Body::Text(text))),
        results,
    ))
}
