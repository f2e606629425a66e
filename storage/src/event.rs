//! The event model and its validation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::device::{DeviceCode, DeviceCodeError};
use crate::subject::normalize_subject;

/// What kind of read an event is. The code is part of the on-disk format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[repr(u8)]
pub enum Kind {
    Vehicle = 0,
    Face = 1,
    Access = 2,
    Person = 3,
    Nonmotor = 4,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Vehicle,
        Kind::Face,
        Kind::Access,
        Kind::Person,
        Kind::Nonmotor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Vehicle => "vehicle",
            Kind::Face => "face",
            Kind::Access => "access",
            Kind::Person => "person",
            Kind::Nonmotor => "nonmotor",
        }
    }
    pub fn code(self) -> u8 {
        self as u8
    }
    pub fn from_code(code: u8) -> Option<Kind> {
        Kind::ALL.get(code as usize).copied()
    }
    /// Parses `vehicle`, `face`, `access`, `person`, `nonmotor` (ASCII case ignored).
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
    }
}

/// Direction of passage at a gate. The code is part of the on-disk format.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[repr(u8)]
pub enum Direction {
    #[default]
    Unknown = 0,
    In = 1,
    Out = 2,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Unknown => "unknown",
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
    pub fn code(self) -> u8 {
        self as u8
    }
    pub fn from_code(code: u8) -> Option<Direction> {
        [Direction::Unknown, Direction::In, Direction::Out]
            .get(code as usize)
            .copied()
    }
    /// Parses `in`, `out`, `unknown`; the empty string is `unknown`.
    pub fn parse(s: &str) -> Option<Direction> {
        match s.to_ascii_lowercase().as_str() {
            "in" => Some(Direction::In),
            "out" => Some(Direction::Out),
            "unknown" | "" => Some(Direction::Unknown),
            _ => None,
        }
    }
}

/// A value in an event's small attribute map.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AttrValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// Small attributes: plate_color, confidence, open_method, image_url, source_id …
pub type Attrs = BTreeMap<String, AttrValue>;

/// The attribute that carries the upstream id used for idempotency.
pub const SOURCE_ID: &str = "source_id";

/// An event as it arrives, before validation: every field as the producer sent it.
/// Serializable, so producers can send batches of them in a binary encoding.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EventInput {
    pub ts_ms: i64,
    pub community: String,
    pub device: String,
    pub kind: String,
    pub subject: String,
    pub direction: String,
    pub attrs: Attrs,
}

/// A validated, normalised event. Construct with [`Validator::validate`].
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub(crate) ts_ms: i64,
    pub(crate) community: String,
    pub(crate) device: DeviceCode,
    pub(crate) kind: Kind,
    pub(crate) subject: String,
    pub(crate) direction: Direction,
    pub(crate) attrs: Attrs,
}

impl Event {
    pub fn ts_ms(&self) -> i64 {
        self.ts_ms
    }
    pub fn community(&self) -> &str {
        &self.community
    }
    pub fn device(&self) -> DeviceCode {
        self.device
    }
    pub fn kind(&self) -> Kind {
        self.kind
    }
    pub fn subject(&self) -> &str {
        &self.subject
    }
    pub fn direction(&self) -> Direction {
        self.direction
    }
    pub fn attrs(&self) -> &Attrs {
        &self.attrs
    }
    /// The upstream id (`attrs.source_id`), if the producer sent one.
    pub fn source_id(&self) -> Option<&str> {
        match self.attrs.get(SOURCE_ID) {
            Some(AttrValue::Str(s)) => Some(s),
            _ => None,
        }
    }
}

/// Why an event was rejected: the field and the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {reason}")]
pub struct ValidationError {
    pub field: &'static str,
    pub reason: String,
}

impl ValidationError {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        ValidationError {
            field,
            reason: reason.into(),
        }
    }
}

/// Bounds an event must respect. Part of [`crate::StoreConfig`].
#[derive(Clone, Debug)]
pub struct Validator {
    /// Earliest accepted timestamp (default 2000-01-01T00:00:00Z).
    pub min_ts_ms: i64,
    /// How far past "now" a timestamp may be (default one day: device clocks drift).
    pub max_future_ms: i64,
    /// Longest subject after normalisation, in bytes (default 128).
    pub max_subject_bytes: usize,
    /// Longest community code, in bytes (default 32).
    pub max_community_bytes: usize,
    /// Most attributes per event (default 32).
    pub max_attrs: usize,
    /// Longest attribute key or string value, in bytes (default 2048).
    pub max_attr_bytes: usize,
}

impl Default for Validator {
    fn default() -> Self {
        Validator {
            min_ts_ms: 946_684_800_000,
            max_future_ms: 86_400_000,
            max_subject_bytes: 128,
            max_community_bytes: 32,
            max_attrs: 32,
            max_attr_bytes: 2048,
        }
    }
}

impl Validator {
    /// Validates and normalises one event against the clock reading `now_ms`.
    pub fn validate(&self, input: EventInput, now_ms: i64) -> Result<Event, ValidationError> {
        self.check_ts(input.ts_ms, now_ms)?;
        let community = input.community.trim();
        if community.is_empty() {
            return Err(ValidationError::new("community", "must not be empty"));
        }
        if community.len() > self.max_community_bytes {
            return Err(ValidationError::new(
                "community",
                format!("longer than {} bytes", self.max_community_bytes),
            ));
        }
        if let Some(c) = community
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(ValidationError::new(
                "community",
                format!("may hold only ASCII letters, digits, '-' and '_', found {c:?}"),
            ));
        }
        let device = DeviceCode::parse(&input.device).map_err(|e: DeviceCodeError| {
            ValidationError::new("device", format!("not a GB/T 28181 device code: {e}"))
        })?;
        let kind = Kind::parse(&input.kind).ok_or_else(|| {
            ValidationError::new(
                "kind",
                format!(
                    "unknown kind {:?}; expected one of vehicle, face, access, person, nonmotor",
                    input.kind
                ),
            )
        })?;
        let subject = normalize_subject(kind, &input.subject);
        if subject.is_empty() {
            return Err(ValidationError::new("subject", "must not be empty"));
        }
        if subject.len() > self.max_subject_bytes {
            return Err(ValidationError::new(
                "subject",
                format!(
                    "{} bytes long, the maximum is {}",
                    subject.len(),
                    self.max_subject_bytes
                ),
            ));
        }
        if subject.chars().any(char::is_control) {
            return Err(ValidationError::new(
                "subject",
                "must not contain control characters",
            ));
        }
        let direction = Direction::parse(&input.direction).ok_or_else(|| {
            ValidationError::new(
                "direction",
                format!(
                    "unknown direction {:?}; expected in, out or unknown",
                    input.direction
                ),
            )
        })?;
        self.check_attrs(&input.attrs)?;
        Ok(Event {
            ts_ms: input.ts_ms,
            community: community.to_string(),
            device,
            kind,
            subject,
            direction,
            attrs: input.attrs,
        })
    }

    /// The timestamp bounds alone; the store re-checks them at append time.
    pub fn check_ts(&self, ts_ms: i64, now_ms: i64) -> Result<(), ValidationError> {
        if ts_ms < self.min_ts_ms {
            return Err(ValidationError::new(
                "ts",
                format!(
                    "{ts_ms} is before the earliest accepted time {}",
                    self.min_ts_ms
                ),
            ));
        }
        if ts_ms > now_ms.saturating_add(self.max_future_ms) {
            return Err(ValidationError::new(
                "ts",
                format!(
                    "{ts_ms} is more than {} ms in the future (now {now_ms})",
                    self.max_future_ms
                ),
            ));
        }
        Ok(())
    }

    fn check_attrs(&self, attrs: &Attrs) -> Result<(), ValidationError> {
        if attrs.len() > self.max_attrs {
            return Err(ValidationError::new(
                "attrs",
                format!(
                    "{} attributes, the maximum is {}",
                    attrs.len(),
                    self.max_attrs
                ),
            ));
        }
        for (k, v) in attrs {
            if k.is_empty() || k.len() > self.max_attr_bytes {
                return Err(ValidationError::new(
                    "attrs",
                    format!("attribute key must be 1 to {} bytes", self.max_attr_bytes),
                ));
            }
            match v {
                AttrValue::Str(s) if s.len() > self.max_attr_bytes => {
                    return Err(ValidationError::new(
                        "attrs",
                        format!(
                            "attribute {k:?} is longer than {} bytes",
                            self.max_attr_bytes
                        ),
                    ))
                }
                AttrValue::Float(f) if !f.is_finite() => {
                    return Err(ValidationError::new(
                        "attrs",
                        format!("attribute {k:?} is not a finite number"),
                    ))
                }
                _ => {}
            }
        }
        if let Some(v) = attrs.get(crate::event::SOURCE_ID) {
            match v {
                AttrValue::Str(s) if !s.is_empty() => {}
                _ => {
                    return Err(ValidationError::new(
                        "attrs",
                        "source_id must be a non-empty string",
                    ))
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_630_454_400_000; // 2021-09-01T00:00:00Z

    fn input() -> EventInput {
        EventInput {
            ts_ms: NOW - 1000,
            community: "3205080001".into(),
            device: "32050801011210000003".into(),
            kind: "vehicle".into(),
            subject: "苏e·12345".into(),
            direction: "in".into(),
            attrs: Attrs::new(),
        }
    }

    fn rejected_field(i: EventInput) -> &'static str {
        Validator::default().validate(i, NOW).unwrap_err().field
    }

    #[test]
    fn valid_event_is_normalised() {
        let e = Validator::default().validate(input(), NOW).unwrap();
        assert_eq!(e.subject(), "苏E12345");
        assert_eq!(e.kind(), Kind::Vehicle);
        assert_eq!(e.direction(), Direction::In);
    }

    #[test]
    fn each_bad_field_is_named() {
        assert_eq!(
            rejected_field(EventInput {
                subject: " · ".into(),
                ..input()
            }),
            "subject"
        );
        assert_eq!(
            rejected_field(EventInput {
                subject: "A\0B".into(),
                ..input()
            }),
            "subject"
        );
        assert_eq!(
            rejected_field(EventInput {
                subject: "8".repeat(10_000),
                ..input()
            }),
            "subject"
        );
        assert_eq!(
            rejected_field(EventInput {
                device: "123".into(),
                ..input()
            }),
            "device"
        );
        assert_eq!(
            rejected_field(EventInput {
                kind: "bicycle".into(),
                ..input()
            }),
            "kind"
        );
        assert_eq!(
            rejected_field(EventInput {
                direction: "sideways".into(),
                ..input()
            }),
            "direction"
        );
        assert_eq!(
            rejected_field(EventInput {
                community: "".into(),
                ..input()
            }),
            "community"
        );
        assert_eq!(
            rejected_field(EventInput {
                community: "a/b".into(),
                ..input()
            }),
            "community"
        );
        assert_eq!(
            rejected_field(EventInput {
                ts_ms: 946_684_799_999,
                ..input()
            }),
            "ts"
        );
        assert_eq!(
            rejected_field(EventInput {
                ts_ms: NOW + 86_400_001,
                ..input()
            }),
            "ts"
        );
        assert_eq!(
            rejected_field(EventInput {
                ts_ms: i64::MAX,
                ..input()
            }),
            "ts"
        );
        let mut attrs = Attrs::new();
        attrs.insert("source_id".into(), AttrValue::Int(5));
        assert_eq!(rejected_field(EventInput { attrs, ..input() }), "attrs");
    }

    #[test]
    fn a_day_of_clock_drift_is_accepted() {
        assert!(Validator::default()
            .validate(
                EventInput {
                    ts_ms: NOW + 86_400_000,
                    ..input()
                },
                NOW
            )
            .is_ok());
    }
}
