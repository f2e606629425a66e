//! The byte encoding of an event's attributes, shared by the WAL and segments.
//!
//! ```text
//! attrs  := count:varint entry*            (no attributes: zero bytes, count omitted)
//! entry  := head:u8 [key] value
//! head   := key_code << 3 | value_tag      key_code 1..=31 names a well-known key;
//!                                          0 means the key follows inline
//! key    := len:varint utf8                only when key_code = 0
//! value  := Str: len:varint utf8 | Int: zigzag varint | Float: f64 LE | Bool: nothing
//! ```
//!
//! Value tags: 0 Str, 1 Int, 2 Float, 3 false, 4 true. Entries are in key order (the
//! map is a `BTreeMap`), so the encoding of a map is unique. Well-known keys cost one
//! byte shared with the value tag; the table below is part of the on-disk format and
//! may only grow at the end.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A value in an event's small attribute map.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub enum AttrValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl AttrValue {
    /// The value, borrowed.
    pub fn as_ref(&self) -> AttrRef<'_> {
        match self {
            AttrValue::Str(s) => AttrRef::Str(s),
            AttrValue::Int(i) => AttrRef::Int(*i),
            AttrValue::Float(f) => AttrRef::Float(*f),
            AttrValue::Bool(b) => AttrRef::Bool(*b),
        }
    }
}

/// Small attributes: plate_color, confidence, open_method, image_url, source_id …
pub type Attrs = BTreeMap<String, AttrValue>;

/// Keys with a one-byte code: position + 1. Append only.
const WELL_KNOWN_KEYS: [&str; 14] = [
    "source_id",
    "plate_color",
    "confidence",
    "open_method",
    "image_url",
    "vehicle_color",
    "plate_reliability",
    "vehicle_class",
    "vehicle_brand",
    "card_id",
    "face_id",
    "scene_image_url",
    "lane",
    "speed",
];

const TAG_STR: u8 = 0;
const TAG_INT: u8 = 1;
const TAG_FLOAT: u8 = 2;
const TAG_FALSE: u8 = 3;
const TAG_TRUE: u8 = 4;

/// Largest encoded attribute map accepted on decode.
pub const MAX_ENCODED_BYTES: usize = 1 << 20;

/// The key of well-known code `code` (1..=31).
pub(crate) fn well_known_key(code: u8) -> Option<&'static str> {
    WELL_KNOWN_KEYS
        .get((code as usize).checked_sub(1)?)
        .copied()
}

/// The one-byte code of a well-known key; 0 for any other.
pub(crate) fn key_code(key: &str) -> u8 {
    // Compare only against keys of the same length: this runs for every attribute of
    // every appended event.
    WELL_KNOWN_KEYS
        .iter()
        .position(|k| k.len() == key.len() && *k == key)
        .map_or(0, |i| i as u8 + 1)
}

/// LEB128: 7 bits a byte, low first.
pub(crate) fn put_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends the encoding of `attrs` to `out`.
pub fn encode_attrs_into(attrs: &Attrs, out: &mut Vec<u8>) {
    encode_pairs_into(
        attrs.iter().map(|(k, v)| (k.as_str(), v.as_ref())),
        attrs.len(),
        out,
    );
}

/// Appends the encoding of `count` attributes given as (key, value) pairs in strictly
/// increasing key order (the caller sorts and refuses duplicates).
pub fn encode_pairs_into<'a>(
    pairs: impl IntoIterator<Item = (&'a str, AttrRef<'a>)>,
    count: usize,
    out: &mut Vec<u8>,
) {
    if count == 0 {
        return;
    }
    put_varint(count as u64, out);
    for (key, value) in pairs {
        let code = key_code(key);
        let tag = match value {
            AttrRef::Str(_) => TAG_STR,
            AttrRef::Int(_) => TAG_INT,
            AttrRef::Float(_) => TAG_FLOAT,
            AttrRef::Bool(false) => TAG_FALSE,
            AttrRef::Bool(true) => TAG_TRUE,
        };
        out.push(code << 3 | tag);
        if code == 0 {
            put_varint(key.len() as u64, out);
            out.extend_from_slice(key.as_bytes());
        }
        match value {
            AttrRef::Str(s) => {
                put_varint(s.len() as u64, out);
                out.extend_from_slice(s.as_bytes());
            }
            AttrRef::Int(i) => put_varint(((i << 1) ^ (i >> 63)) as u64, out),
            AttrRef::Float(f) => out.extend_from_slice(&f.to_le_bytes()),
            AttrRef::Bool(_) => {}
        }
    }
}

/// The encoding of `attrs` as its own allocation; empty for no attributes.
pub fn encode_attrs(attrs: &Attrs) -> Box<[u8]> {
    if attrs.is_empty() {
        return Box::default();
    }
    // An upper bound, so the buffer is allocated once.
    let bound = 10
        + attrs
            .iter()
            .map(|(k, v)| {
                21 + k.len()
                    + match v {
                        AttrValue::Str(s) => s.len(),
                        _ => 0,
                    }
            })
            .sum::<usize>();
    let mut out = Vec::with_capacity(bound);
    encode_attrs_into(attrs, &mut out);
    out.into_boxed_slice()
}

/// A cursor over encoded bytes that reports what is wrong instead of panicking (the
/// row encoding's, and a segment's attribute chunks').
pub(crate) struct Reader<'a> {
    pub bytes: &'a [u8],
    pub at: usize,
}

impl<'a> Reader<'a> {
    #[inline]
    pub fn byte(&mut self) -> Result<u8, String> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or_else(|| format!("attributes end early at byte {}", self.at))?;
        self.at += 1;
        Ok(b)
    }
    #[inline]
    pub fn varint(&mut self) -> Result<u64, String> {
        // Most varints here (lengths, counts, small bases) take one byte.
        if let Some(&b) = self.bytes.get(self.at) {
            if b & 0x80 == 0 {
                self.at += 1;
                return Ok(b as u64);
            }
        }
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("overlong varint before byte {}", self.at))
    }
    #[inline]
    pub fn take(&mut self, n: u64) -> Result<&'a [u8], String> {
        let rest = self.bytes.len() - self.at;
        if n > rest as u64 {
            return Err(format!(
                "a length of {n} at byte {} overruns the {rest} bytes left",
                self.at
            ));
        }
        let s = &self.bytes[self.at..self.at + n as usize];
        self.at += n as usize;
        Ok(s)
    }
}

/// One attribute value, borrowed (from its encoding, or from a binary ingest batch,
/// whose encoding of it is [`AttrValue`]'s).
#[derive(Clone, Copy, Debug, PartialEq, bincode::Encode, bincode::BorrowDecode)]
pub enum AttrRef<'a> {
    Str(&'a str),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// Walks an encoding without allocating, calling `f` with each key and value in key
/// order; a damaged encoding is an error saying what is wrong (and `f` may have seen
/// the entries before the damage).
pub fn visit_attrs<'a>(
    bytes: &'a [u8],
    mut f: impl FnMut(&'a str, AttrRef<'a>),
) -> Result<(), String> {
    if bytes.is_empty() {
        return Ok(());
    }
    if bytes.len() > MAX_ENCODED_BYTES {
        return Err(format!("{} bytes of attributes is too many", bytes.len()));
    }
    let mut r = Reader { bytes, at: 0 };
    let count = r.varint()?;
    // Every entry takes at least one byte.
    if count == 0 || count > bytes.len() as u64 {
        return Err(format!("impossible attribute count {count}"));
    }
    let mut last: Option<&'a str> = None;
    for _ in 0..count {
        let head_at = r.at;
        let head = r.byte()?;
        let (code, tag) = (head >> 3, head & 7);
        let key: &'a str = match code {
            0 => {
                let at = r.at;
                let len = r.varint()?;
                let raw: &'a [u8] = r.take(len)?;
                std::str::from_utf8(raw).map_err(|_| format!("invalid UTF-8 at byte {at}"))?
            }
            c => WELL_KNOWN_KEYS
                .get(c as usize - 1)
                .ok_or_else(|| format!("unknown key code {c} at byte {head_at}"))?,
        };
        let value = match tag {
            TAG_STR => {
                let at = r.at;
                let len = r.varint()?;
                let raw: &'a [u8] = r.take(len)?;
                AttrRef::Str(
                    std::str::from_utf8(raw).map_err(|_| format!("invalid UTF-8 at byte {at}"))?,
                )
            }
            TAG_INT => {
                let z = r.varint()?;
                AttrRef::Int((z >> 1) as i64 ^ -((z & 1) as i64))
            }
            TAG_FLOAT => AttrRef::Float(f64::from_le_bytes(
                r.take(8)?.try_into().expect("took 8 bytes"),
            )),
            TAG_FALSE => AttrRef::Bool(false),
            TAG_TRUE => AttrRef::Bool(true),
            t => return Err(format!("unknown value tag {t} at byte {head_at}")),
        };
        if last.is_some_and(|k| k >= key) {
            return Err(format!("attribute keys out of order at byte {head_at}"));
        }
        last = Some(key);
        f(key, value);
    }
    if r.at != bytes.len() {
        return Err(format!(
            "{} trailing bytes after attributes",
            bytes.len() - r.at
        ));
    }
    Ok(())
}

/// Inverse of [`encode_attrs`]; a damaged encoding is an error saying what is wrong.
pub fn decode_attrs(bytes: &[u8]) -> Result<Attrs, String> {
    let mut attrs = Attrs::new();
    visit_attrs(bytes, |k, v| {
        let v = match v {
            AttrRef::Str(s) => AttrValue::Str(s.to_string()),
            AttrRef::Int(i) => AttrValue::Int(i),
            AttrRef::Float(f) => AttrValue::Float(f),
            AttrRef::Bool(b) => AttrValue::Bool(b),
        };
        attrs.insert(k.to_string(), v);
    })?;
    Ok(attrs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = AttrValue> {
        prop_oneof![
            ".{0,20}".prop_map(AttrValue::Str),
            any::<i64>().prop_map(AttrValue::Int),
            any::<f64>()
                .prop_filter("NaN never equals itself", |f| !f.is_nan())
                .prop_map(AttrValue::Float),
            any::<bool>().prop_map(AttrValue::Bool),
        ]
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            (0..WELL_KNOWN_KEYS.len()).prop_map(|i| WELL_KNOWN_KEYS[i].to_string()),
            ".{1,12}",
        ]
    }

    proptest! {
        #[test]
        fn attributes_round_trip(attrs in proptest::collection::btree_map(key(), value(), 0..8)) {
            let bytes = encode_attrs(&attrs);
            prop_assert_eq!(decode_attrs(&bytes).unwrap(), attrs);
        }

        #[test]
        fn damaged_encodings_error_or_decode_without_panicking(
            attrs in proptest::collection::btree_map(key(), value(), 1..6),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
        ) {
            let bytes = encode_attrs(&attrs).into_vec();
            let _ = decode_attrs(&bytes[..cut.index(bytes.len())]);
            let mut flipped = bytes.clone();
            let i = flip.index(flipped.len());
            flipped[i] ^= 0x5a;
            let _ = decode_attrs(&flipped);
        }
    }

    #[test]
    fn well_known_keys_take_one_byte() {
        let mut a = Attrs::new();
        a.insert("plate_color".into(), AttrValue::Str("blue".into()));
        a.insert("confidence".into(), AttrValue::Float(0.93));
        // count + (head + len + "blue") + (head + f64)
        assert_eq!(encode_attrs(&a).len(), 1 + (1 + 1 + 4) + (1 + 8));
    }

    #[test]
    fn truncated_attributes_are_an_error() {
        let mut a = Attrs::new();
        a.insert("custom".into(), AttrValue::Int(-5));
        let bytes = encode_attrs(&a);
        for n in 1..bytes.len() {
            assert!(decode_attrs(&bytes[..n]).is_err(), "prefix of {n} bytes");
        }
        assert_eq!(decode_attrs(&bytes).unwrap(), a);
    }
}
