//! The JSON shapes every answer shares: an event ([`EventOut`], its attributes written
//! straight from their stored encoding by [`AttrsOut`]) and a list answer.

use serde_json::value::RawValue;
use serde_json::{json, Value};
use sightline_query::Sighting;
use sightline_storage::{AttrOut, AttrRef, AttrsAt, Decimal, RowScratch};

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
    attrs: AttrsOf<'a>,
}

/// Where an [`EventOut`]'s attributes are.
enum AttrsOf<'a> {
    /// In the store: read when written.
    At(&'a AttrsAt),
    /// Encoded (a cluster's partition answer, decoded there).
    #[cfg(feature = "cluster")]
    Encoded(Vec<u8>),
}

impl EventOut<'_> {
    /// The attributes in their encoding (rebuilt from a segment's columns).
    fn attr_bytes(&self) -> Result<std::borrow::Cow<'_, [u8]>, sightline_storage::StorageError> {
        match &self.attrs {
            AttrsOf::At(at) => at.bytes(),
            #[cfg(feature = "cluster")]
            AttrsOf::Encoded(bytes) => Ok(std::borrow::Cow::Borrowed(bytes)),
        }
    }
}

impl serde::Serialize for EventOut<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeMap};
        let attrs = self.attr_bytes().map_err(S::Error::custom)?;
        let attrs = &*attrs;
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

impl EventOut<'_> {
    /// The event's `fields` as JSON appended to `out` ([`Fields::ALL`]: byte for byte
    /// what its `Serialize` writes, a test holds them equal; any other set: those
    /// members, in that order, whatever order they were asked in). Written without
    /// serde's per-field machinery: keys, numbers, times, kinds and directions are
    /// written as they are, strings are escaped only when they hold a byte JSON
    /// escapes, and attributes are written as they are read from a segment's columns
    /// (no encoding is built and walked again; `scratch` is reused from event to
    /// event; a format 4 segment's GA/T 1400 ids come as ASCII digits and are copied
    /// without a UTF-8 check or an escape test), and read only when `attrs`, `images`
    /// or `object` is asked for. For pages of thousands of events (the trajectory, its
    /// NDJSON stream).
    pub fn write_fields(
        &self,
        out: &mut Vec<u8>,
        scratch: &mut RowScratch,
        fields: Fields,
    ) -> Result<(), String> {
        let s = self.s;
        let event_at = out.len();
        // `key` writes a member's `,"name":` (given whole, one copy), or `{"name":` for
        // the first.
        let mut open = true;
        let mut key = |out: &mut Vec<u8>, comma_name: &[u8]| {
            if std::mem::take(&mut open) {
                out.push(b'{');
                out.extend_from_slice(&comma_name[1..]);
            } else {
                out.extend_from_slice(comma_name);
            }
        };
        if fields.has(Fields::ID) {
            key(out, b",\"id\":");
            out.extend_from_slice(itoa::Buffer::new().format(s.seq).as_bytes());
        }
        if fields.has(Fields::TS) {
            key(out, b",\"ts\":");
            Rfc3339(s.ts_ms).write_json(out);
        }
        if fields.has(Fields::COMMUNITY) {
            key(out, b",\"community\":");
            put_str(out, &s.community);
        }
        if fields.has(Fields::DEVICE) {
            key(out, b",\"device\":");
            put_str(out, &s.device);
        }
        if fields.has(Fields::KIND) {
            key(out, b",\"kind\":\"");
            out.extend_from_slice(s.kind.as_str().as_bytes());
            out.push(b'"');
        }
        if fields.has(Fields::SUBJECT) {
            key(out, b",\"subject\":");
            put_str(out, &s.subject);
        }
        if fields.has(Fields::DIRECTION) {
            key(out, b",\"direction\":\"");
            out.extend_from_slice(s.direction.as_str().as_bytes());
            out.push(b'"');
        }
        let (want_attrs, want_images, want_object) = (
            fields.has(Fields::ATTRS),
            fields.has(Fields::IMAGES),
            fields.has(Fields::OBJECT),
        );
        if !(want_attrs || want_images || want_object) {
            if std::mem::take(&mut open) {
                out.push(b'{');
            }
            out.push(b'}');
            return Ok(());
        }
        if want_attrs {
            key(out, b",\"attrs\":{");
        }
        // One walk: the attributes written, pictures and the kept object noted (rare:
        // GA/T 1400 uploads; copied, as the walk lends its strings only to the call).
        let (mut first, mut images, mut object) = (true, None::<String>, None::<String>);
        let mut write = |k: &str, v: AttrOut<'_>| {
            if k == IMAGES_ATTR || k == OBJECT_ATTR {
                if let AttrRef::Str(text) = v.to_ref() {
                    *(if k == IMAGES_ATTR {
                        &mut images
                    } else {
                        &mut object
                    }) = Some(text.to_owned());
                }
                return;
            }
            if !want_attrs {
                return;
            }
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            put_str(out, k);
            out.push(b':');
            let v = match v {
                // ASCII digits (a GA/T 1400 id), checked when read: copied as they are.
                AttrOut::Digits(d) => {
                    out.push(b'"');
                    out.extend_from_slice(d.as_bytes());
                    out.push(b'"');
                    return;
                }
                AttrOut::Decimal(d) => return put_decimal(out, d),
                AttrOut::Value(v) => v,
            };
            match v {
                AttrRef::Str(x) => put_str(out, x),
                AttrRef::Int(x) => out.extend_from_slice(itoa::Buffer::new().format(x).as_bytes()),
                // serde_json's own float text (`null` when not finite).
                AttrRef::Float(x) => {
                    let _ = serde_json::to_writer(&mut *out, &x);
                }
                AttrRef::Bool(x) => out.extend_from_slice(if x { b"true" } else { b"false" }),
            }
        };
        // Values are handed over as they are read: what was written of an event whose
        // attributes turn out damaged is taken back, whatever their source.
        let walked = match &self.attrs {
            AttrsOf::At(at) => at.visit_out(scratch, &mut write).map_err(|e| e.to_string()),
            #[cfg(feature = "cluster")]
            AttrsOf::Encoded(bytes) => {
                sightline_storage::visit_attrs(bytes, |k, v| write(k, AttrOut::Value(v)))
                    .map_err(|e| format!("damaged attributes: {e}"))
            }
        };
        if let Err(e) = walked {
            out.truncate(event_at);
            return Err(e);
        }
        if want_attrs {
            out.push(b'}');
        }
        if let Some(images) = images
            .as_deref()
            .filter(|_| want_images)
            .and_then(|t| serde_json::from_str::<&RawValue>(t).ok())
        {
            key(out, b",\"images\":");
            out.extend_from_slice(images.get().as_bytes());
        }
        if let Some(object) = object.filter(|_| want_object) {
            key(out, b",\"object\":");
            serde_json::to_writer(&mut *out, &ObjectUrl(&object)).map_err(|e| e.to_string())?;
        }
        // Only `images` or `object` asked for, and the event has neither.
        if open {
            out.push(b'{');
        }
        out.push(b'}');
        Ok(())
    }
}

/// Which of an event's fields an answer writes (`fields=ts,device` on a trajectory):
/// a set over `id, ts, community, device, kind, subject, direction, attrs, images,
/// object`, all by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fields(u16);

impl Fields {
    pub const ID: Fields = Fields(1);
    pub const TS: Fields = Fields(1 << 1);
    pub const COMMUNITY: Fields = Fields(1 << 2);
    pub const DEVICE: Fields = Fields(1 << 3);
    pub const KIND: Fields = Fields(1 << 4);
    pub const SUBJECT: Fields = Fields(1 << 5);
    pub const DIRECTION: Fields = Fields(1 << 6);
    pub const ATTRS: Fields = Fields(1 << 7);
    pub const IMAGES: Fields = Fields(1 << 8);
    pub const OBJECT: Fields = Fields(1 << 9);
    pub const ALL: Fields = Fields((1 << 10) - 1);

    /// The names, in the order answers write them.
    pub const NAMES: [(&'static str, Fields); 10] = [
        ("id", Fields::ID),
        ("ts", Fields::TS),
        ("community", Fields::COMMUNITY),
        ("device", Fields::DEVICE),
        ("kind", Fields::KIND),
        ("subject", Fields::SUBJECT),
        ("direction", Fields::DIRECTION),
        ("attrs", Fields::ATTRS),
        ("images", Fields::IMAGES),
        ("object", Fields::OBJECT),
    ];

    /// Whether these fields are read from the events' attributes.
    pub fn reads_attrs(self) -> bool {
        self.has(Fields(
            Fields::ATTRS.0 | Fields::IMAGES.0 | Fields::OBJECT.0,
        ))
    }

    fn has(self, f: Fields) -> bool {
        self.0 & f.0 != 0
    }

    /// The `fields` parameter (repeated or comma-separated names): all when absent;
    /// an unknown name, or the parameter given with no name, is refused naming it.
    pub fn param(p: &crate::params::Params) -> Result<Fields, crate::error::ApiError> {
        let Some(names) = p.list("fields") else {
            return Ok(Fields::ALL);
        };
        // The message lists the names from `NAMES`, the one list of them.
        let refused = |what: String| {
            let known: Vec<&str> = Fields::NAMES.iter().map(|(n, _)| *n).collect();
            crate::error::ApiError::param("fields", format!("{what} ({})", known.join(", ")))
        };
        if names.is_empty() {
            return Err(refused("names no field".into()));
        }
        let mut set = 0;
        for name in &names {
            match Fields::NAMES.iter().find(|(n, _)| n == name) {
                Some((_, f)) => set |= f.0,
                None => return Err(refused(format!("{name:?} is not a field"))),
            }
        }
        Ok(Fields(set))
    }
}

/// `text` as a JSON string appended to `out`: quoted as it is when it holds nothing
/// JSON escapes (control characters, `"` and `\`), else through serde_json.
pub(crate) fn put_str(out: &mut Vec<u8>, text: &str) {
    if needs_escape(text.as_bytes()) {
        let _ = serde_json::to_writer(&mut *out, text);
    } else {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    }
}

/// Whether `b` holds a byte JSON escapes (below 0x20, `"` or `\\`): eight bytes a
/// step (a byte-wise "has less than" and two "has zero" tests on a word: exact for
/// whether any byte matches, which is all that is asked), the last eight again for what
/// is left past the last whole word (a byte tested twice gives the same answer).
#[inline]
fn needs_escape(b: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH != 0;
    let escapes = |w: &[u8]| {
        let x = u64::from_le_bytes(w.try_into().expect("8 bytes"));
        x.wrapping_sub(ONES * 0x20) & !x & HIGH != 0
            || has_zero(x ^ (ONES * b'"' as u64))
            || has_zero(x ^ (ONES * b'\\' as u64))
    };
    if b.len() < 8 {
        return b.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\');
    }
    let mut words = b.chunks_exact(8);
    words.by_ref().any(escapes) || (!words.remainder().is_empty() && escapes(&b[b.len() - 8..]))
}

/// A decimal attribute as serde_json writes its value ([`Decimal::to_f64`]), which
/// for a mantissa of at most 15 digits and a value from 1e-5 up (no exponent) is the
/// decimal's own digits, trailing zeros dropped (`976, 3` is `0.976`, `1000, 3` is
/// `1.0`): a decimal of at most 15 significant digits is the only one of that length
/// or shorter that reads back as its nearest `f64`. Any other goes through
/// serde_json. A test holds the two equal over every mantissa up to 200,000 at every
/// scale, and random ones.
fn put_decimal(out: &mut Vec<u8>, d: Decimal) {
    const POW10: [u64; 7] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000];
    let m = d.mantissa.unsigned_abs();
    let scale = d.scale as usize;
    let plain = scale < POW10.len()
        && m < 1_000_000_000_000_000
        && (m == 0 || scale < 5 || m >= POW10[scale - 5]);
    if !plain {
        let _ = serde_json::to_writer(&mut *out, &d.to_f64());
        return;
    }
    if d.mantissa < 0 {
        out.push(b'-');
    }
    let (whole, frac) = (m / POW10[scale], m % POW10[scale]);
    out.extend_from_slice(itoa::Buffer::new().format(whole).as_bytes());
    out.push(b'.');
    if frac == 0 {
        out.push(b'0');
        return;
    }
    // `scale` digits, zeros before as needed, zeros after dropped.
    let (mut digits, mut f, mut end) = ([b'0'; 6], frac, scale);
    for at in (0..scale).rev() {
        digits[at] = b'0' + (f % 10) as u8;
        f /= 10;
        if digits[at] == b'0' && end == at + 1 {
            end = at;
        }
    }
    out.extend_from_slice(&digits[..end]);
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
    memchr::memmem::find(attrs, key.as_bytes())?;
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
            attrs: AttrsOf::At(attrs),
        }
    }

    /// The event's id.
    pub fn id(&self) -> u64 {
        self.s.seq
    }

    /// An event whose attributes arrived decoded (a cluster's partition answer).
    #[cfg(feature = "cluster")]
    pub fn decoded(s: &'a Sighting, attrs: &sightline_storage::Attrs) -> EventOut<'a> {
        EventOut {
            s,
            attrs: AttrsOf::Encoded(sightline_storage::encode_attrs(attrs).into_vec()),
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
    // Room for the answer up front (an event is ~300 bytes with its attributes), so a
    // page of thousands is not copied again at each doubling.
    let mut text = Vec::with_capacity(results.saturating_mul(320).clamp(256, 8 << 20));
    serde_json::to_writer(&mut text, answer)
        .map_err(|e| crate::error::ApiError::internal(e.to_string()))?;
    // serde_json writes UTF-8 only.
    let text =
        String::from_utf8(text).map_err(|e| crate::error::ApiError::internal(e.to_string()))?;
    Ok((
        Body::Serialized(started.elapsed(), Box::new(Body::Text(text))),
        results,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sightline_storage::{AttrValue, Attrs, Direction, EventInput, Kind, Validator};
    use std::sync::Arc;

    fn attr_value() -> impl Strategy<Value = AttrValue> {
        prop_oneof![
            // Quotes, backslashes, control characters and CJK: what escaping must see.
            "[a-z\"\\\\\u{1}\n 苏]{0,8}".prop_map(AttrValue::Str),
            any::<i64>().prop_map(AttrValue::Int),
            prop_oneof![
                (-1e6f64..1e6),
                Just(f64::NAN),
                Just(f64::INFINITY),
                Just(1e300),
                Just(-0.0)
            ]
            .prop_map(AttrValue::Float),
            any::<bool>().prop_map(AttrValue::Bool),
        ]
    }

    /// Every mantissa up to 200,000 (and down to -20,000) at every scale a column holds,
    /// and the edges of the digits' range, are written as serde_json writes their value.
    #[test]
    fn every_small_decimal_is_written_as_serde_writes_its_value() {
        let edges = [
            999_999_999_999_999,
            1_000_000_000_000_000,
            -999_999_999_999_999,
            i64::MAX,
            i64::MIN,
        ];
        let mut text = Vec::new();
        for scale in 0..=6u8 {
            for mantissa in (-20_000..=200_000).chain(edges) {
                let d = Decimal { mantissa, scale };
                text.clear();
                put_decimal(&mut text, d);
                let want = serde_json::to_string(&d.to_f64()).unwrap();
                assert_eq!(std::str::from_utf8(&text).unwrap(), want, "{d:?}");
            }
        }
    }

    /// A JSON object's members in the order they are written.
    fn members(text: &[u8]) -> Vec<(String, Value)> {
        struct InOrder;
        impl<'de> serde::de::Visitor<'de> for InOrder {
            type Value = Vec<(String, Value)>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = m.next_entry()? {
                    out.push(entry);
                }
                Ok(out)
            }
        }
        use serde::Deserializer;
        let mut de = serde_json::Deserializer::from_slice(text);
        let members = de.deserialize_map(InOrder).expect("an object");
        de.end().expect("nothing after the object");
        members
    }

    proptest! {
        /// `write_fields` of every field is byte for byte the `Serialize` output, pictures and kept
        /// objects included; any other set is its members of that set, in order.
        #[test]
        fn write_json_is_what_serde_writes(
            seq in any::<u64>(),
            ts_ms in 946_684_800_000i64..4_102_444_800_000,
            subject in "[A-Z0-9苏\"\\\\]{1,12}",
            // Keys with bytes JSON escapes too.
            attrs in proptest::collection::btree_map("[a-z_\"\\\\\u{1}]{1,10}", attr_value(), 0..5),
            images in 0u8..4,
            object in 0u8..3,
            fields in 0u16..1024,
        ) {
            let mut attrs: Attrs = attrs;
            // Pictures: none, a list, text that is not JSON, or not a string at all.
            match images {
                1 => { attrs.insert(IMAGES_ATTR.into(), AttrValue::Str(
                    r#"[{"id":"ab","type":"plate","width":1}]"#.into())); }
                2 => { attrs.insert(IMAGES_ATTR.into(), AttrValue::Str("[{".into())); }
                3 => { attrs.insert(IMAGES_ATTR.into(), AttrValue::Int(7)); }
                _ => {}
            }
            match object {
                1 => { attrs.insert(OBJECT_ATTR.into(), AttrValue::Str("3205080601121000060102".into())); }
                2 => { attrs.insert(OBJECT_ATTR.into(), AttrValue::Bool(true)); }
                _ => {}
            }
            let event = Validator::default()
                .validate(EventInput {
                    ts_ms,
                    community: "3205080007".into(),
                    device: "32050806011210000601".into(),
                    kind: "vehicle".into(),
                    subject: subject.clone(),
                    direction: "in".into(),
                    attrs,
                }, ts_ms);
            // (What validation refuses never reaches an answer.)
            prop_assume!(event.is_ok());
            let event = event.unwrap();
            let sighting = Sighting {
                seq,
                ts_ms,
                community: "3205080007".into(),
                device: "32050806011210000601".into(),
                kind: Kind::Vehicle,
                subject: Arc::from(event.subject()),
                direction: Direction::In,
            };
            let at = AttrsAt::Memory(Arc::from(event.attr_bytes()));
            let out = EventOut::of(&sighting, &at);
            let mut fast = Vec::new();
            out.write_fields(&mut fast, &mut RowScratch::default(), Fields::ALL).unwrap();
            let whole = serde_json::to_string(&out).unwrap();
            prop_assert_eq!(String::from_utf8(fast).unwrap(), whole.clone());
            // Any set of fields: the whole event's members of that set, in its order.
            let want = Fields(fields);
            let mut some = Vec::new();
            out.write_fields(&mut some, &mut RowScratch::default(), want).unwrap();
            let expect: Vec<_> = members(whole.as_bytes())
                .into_iter()
                .filter(|(k, _)| Fields::NAMES.iter().any(|(n, f)| n == k && want.has(*f)))
                .collect();
            prop_assert_eq!(members(&some), expect);
        }

        /// A decimal is written as serde_json writes its value, at any scale and
        /// mantissa: across the range written as the decimal's digits (below 10^15),
        /// and beyond it and past the scales a column holds (through serde_json).
        #[test]
        fn decimals_are_written_as_serde_writes_their_value(
            mantissa in prop_oneof![
                any::<i64>(),
                -1_000_000_000_000_000i64..=1_000_000_000_000_000,
                -10_000_000i64..10_000_000,
            ],
            scale in 0u8..=9,
        ) {
            let d = Decimal { mantissa, scale };
            let mut text = Vec::new();
            put_decimal(&mut text, d);
            prop_assert_eq!(String::from_utf8(text).unwrap(), serde_json::to_string(&d.to_f64()).unwrap());
        }

        /// Plain strings of 0 to 40 bytes with at most one byte JSON escapes, at any
        /// place (the last bytes too, which the word-at-a-time test reads twice).
        #[test]
        fn needs_escape_finds_one_byte_anywhere(
            len in 0usize..40,
            at in any::<prop::sample::Index>(),
            bad in prop_oneof![Just(None), (0u8..0x20).prop_map(Some), Just(Some(b'"')), Just(Some(b'\\'))],
        ) {
            let mut b: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            if let (Some(c), false) = (bad, b.is_empty()) {
                let i = at.index(b.len());
                b[i] = c;
            }
            let naive = b.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\');
            prop_assert_eq!(needs_escape(&b), naive);
        }

        /// The word-at-a-time test finds exactly the strings a byte-wise one does.
        #[test]
        fn needs_escape_is_the_bytewise_test(b in proptest::collection::vec(
            prop_oneof![Just(b'"'), Just(b'\\'), 0u8..0x20, 0x20u8..=0xff, Just(0x7f), Just(0xa2), Just(0xdc)],
            0..40,
        )) {
            let naive = b.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\');
            prop_assert_eq!(needs_escape(&b), naive);
        }

        /// Damaged attribute bytes fail both ways alike (never half an answer); a set of
        /// fields that needs no attribute is written whole without reading them.
        #[test]
        fn damaged_attributes_fail_both_ways(
            bytes in proptest::collection::vec(any::<u8>(), 0..40),
            fields in 0u16..1024,
        ) {
            let sighting = Sighting {
                seq: 1,
                ts_ms: 1_630_454_400_000,
                community: "3205080007".into(),
                device: "32050806011210000601".into(),
                kind: Kind::Vehicle,
                subject: Arc::from("苏E12345"),
                direction: Direction::In,
            };
            let at = AttrsAt::Memory(Arc::from(bytes));
            let out = EventOut::of(&sighting, &at);
            let mut fast = Vec::new();
            match (out.write_fields(&mut fast, &mut RowScratch::default(), Fields::ALL), serde_json::to_string(&out)) {
                (Ok(()), Ok(text)) => prop_assert_eq!(String::from_utf8(fast).unwrap(), text),
                (Err(_), Err(_)) => {}
                (a, b) => prop_assert!(false, "write_fields {:?}, serde {:?}", a, b.map(|_| ())),
            }
            let want = Fields(fields);
            let mut some = Vec::new();
            let needs_attrs = want.has(Fields(Fields::ATTRS.0 | Fields::IMAGES.0 | Fields::OBJECT.0));
            match out.write_fields(&mut some, &mut RowScratch::default(), want) {
                Ok(()) => {
                    let whole = serde_json::to_string(&out);
                    prop_assert!(!needs_attrs || whole.is_ok());
                    serde_json::from_slice::<Value>(&some).expect("JSON");
                }
                Err(_) => prop_assert!(needs_attrs && serde_json::to_string(&out).is_err()),
            }
        }
    }

    proptest! {
        // Each case opens and seals a store.
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// The same from a sealed format 4 segment, whose GA/T 1400 ids (digit columns)
        /// are written straight from their digits: every event of a chunk, beside
        /// strings with quotes, backslashes, control characters and CJK, and digit
        /// strings the column cannot hold as digits.
        #[test]
        fn write_json_of_a_segment_is_what_serde_writes(
            rows in proptest::collection::vec(
                (0u64..100_000, attr_value(), prop_oneof![
                    Just(None), Just(Some("3205080601121000060102".to_string())),
                    "[0-9]{1,30}".prop_map(Some), "[0-9a\"]{20,50}".prop_map(Some)],
                    -2_000_000i64..2_000_000),
                1..40),
            scale in 0i32..=7,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let store = sightline_storage::Store::open(dir.path(), Default::default()).unwrap();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
            // (What validation refuses, non-finite numbers, never reaches a segment.)
            let events: Vec<_> = rows.iter().enumerate().filter_map(|(i, (n, v, other, m))| {
                let mut attrs = Attrs::new();
                // A confidence of `scale` decimals (a decimal column up to 6).
                attrs.insert("confidence".into(), AttrValue::Float(*m as f64 / 10f64.powi(scale)));
                // A GA/T 1400 id of one device: 20 digits, then time and counters.
                attrs.insert("source_id".into(), AttrValue::Str(format!(
                    "3205080601121000060102{:014}{:05}02{:05}", n * 7, i, n % 9)));
                attrs.insert("plate_color".into(), v.clone());
                if let Some(o) = other {
                    attrs.insert("other".into(), AttrValue::Str(o.clone()));
                }
                Validator::default().validate(EventInput {
                    ts_ms: now - 3_600_000 + i as i64,
                    community: "3205080007".into(),
                    device: "32050806011210000601".into(),
                    kind: "vehicle".into(),
                    subject: "苏E12345".into(),
                    direction: "in".into(),
                    attrs,
                }, now).ok()
            }).collect();
            prop_assume!(!events.is_empty());
            store.append(&events).unwrap();
            store.seal_all().unwrap();
            let read = store.scan_seq_range(0, u64::MAX, 1000, None).unwrap();
            prop_assert_eq!(read.len(), events.len());
            let mut scratch = RowScratch::default();
            let mut digits = 0;
            for (row, at) in &read {
                prop_assert!(matches!(at, AttrsAt::Segment(..)));
                at.visit_out(&mut scratch, |_, v| digits += matches!(v, AttrOut::Digits(_)) as usize)
                    .unwrap();
                let sighting = Sighting {
                    seq: row.seq,
                    ts_ms: row.ts_ms,
                    community: "3205080007".into(),
                    device: "32050806011210000601".into(),
                    kind: Kind::Vehicle,
                    subject: Arc::from("苏E12345"),
                    direction: Direction::In,
                };
                let out = EventOut::of(&sighting, at);
                let mut fast = Vec::new();
                out.write_fields(&mut fast, &mut scratch, Fields::ALL).unwrap();
                prop_assert_eq!(
                    String::from_utf8(fast).unwrap(),
                    serde_json::to_string(&out).unwrap()
                );
            }
            // Sixteen ids of one device are kept as a digit column: the fast path ran.
            if events.len() >= 16 {
                prop_assert!(digits >= events.len(), "{} digit strings of {}", digits, events.len());
            }
        }
    }
}
