//! The event model and its validation.

use serde::{Deserialize, Serialize};

use crate::attr_codec::AttrRef;
use crate::device::{DeviceCode, DeviceCodeError};

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

pub use crate::attr_codec::{AttrValue, Attrs};

/// The attribute that carries the upstream id used for idempotency.
pub const SOURCE_ID: &str = "source_id";

/// An event as it arrives, before validation: every field as the producer sent it.
/// Serializable, so producers can send batches of them in a binary encoding.
#[derive(
    Clone, Debug, Default, PartialEq, Serialize, Deserialize, bincode::Encode, bincode::Decode,
)]
pub struct EventInput {
    pub ts_ms: i64,
    pub community: String,
    pub device: String,
    pub kind: String,
    pub subject: String,
    pub direction: String,
    pub attrs: Attrs,
}

/// An event as it arrives in a binary batch, borrowed from the request body: decoding
/// allocates only the attribute list. Its bincode encoding is [`EventInput`]'s (an
/// attribute map is encoded as its length and its pairs), so producers send either.
#[derive(Clone, Debug, PartialEq, bincode::Encode, bincode::BorrowDecode)]
pub struct EventRef<'a> {
    pub ts_ms: i64,
    pub community: &'a str,
    pub device: &'a str,
    pub kind: &'a str,
    pub subject: &'a str,
    pub direction: &'a str,
    pub attrs: Vec<(&'a str, AttrRef<'a>)>,
}

/// A validated, normalised event. Construct with [`Validator::validate`] or
/// [`Validator::validate_ref`]. Attributes are kept encoded (`attr_codec`, keys in
/// order, so equal maps have equal bytes), as the store keeps them.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub(crate) ts_ms: i64,
    pub(crate) community: String,
    pub(crate) device: DeviceCode,
    pub(crate) kind: Kind,
    pub(crate) subject: String,
    pub(crate) direction: Direction,
    pub(crate) attrs: std::sync::Arc<[u8]>,
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
    /// The attributes, decoded.
    pub fn attrs(&self) -> Attrs {
        crate::attr_codec::decode_attrs(&self.attrs).expect("attributes encoded by validation")
    }
    /// The attributes in their stored encoding.
    pub fn attr_bytes(&self) -> &[u8] {
        &self.attrs
    }
    /// The upstream id (`attrs.source_id`), if the producer sent one.
    pub fn source_id(&self) -> Option<&str> {
        let mut found = None;
        let _ = crate::attr_codec::visit_attrs(&self.attrs, |k, v| {
            if let (SOURCE_ID, AttrRef::Str(s)) = (k, v) {
                found = Some(s);
            }
        });
        found
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

/// What [`Validator::check`] found: the parsed fields and where the community's
/// trimmed text lies in what was sent.
struct Checked {
    ts_ms: i64,
    community_trim: (usize, usize),
    device: DeviceCode,
    kind: Kind,
    direction: Direction,
}

/// Checked attributes (in key order, no key twice) in their stored encoding; shared,
/// so the store keeps them without copying. No attributes: one shared empty slice.
fn encode_checked(attrs: &[(&str, AttrRef<'_>)]) -> std::sync::Arc<[u8]> {
    static EMPTY: std::sync::OnceLock<std::sync::Arc<[u8]>> = std::sync::OnceLock::new();
    if attrs.is_empty() {
        return EMPTY.get_or_init(|| std::sync::Arc::new([])).clone();
    }
    let mut out = Vec::with_capacity(16 + attrs.iter().map(|(k, _)| k.len() + 12).sum::<usize>());
    crate::attr_codec::encode_pairs_into(attrs.iter().copied(), attrs.len(), &mut out);
    std::sync::Arc::from(out)
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
        let attrs: Vec<(&str, AttrRef<'_>)> = input
            .attrs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_ref()))
            .collect();
        let checked = self.check(
            input.ts_ms,
            &input.community,
            &input.device,
            &input.kind,
            &input.direction,
            &attrs,
            now_ms,
        )?;
        let attrs = encode_checked(&attrs);
        self.finish(checked, input.community, input.subject, attrs)
    }

    /// [`Validator::validate`] of a borrowed event (binary ingest): only the strings
    /// the event keeps are allocated. Attribute keys must not repeat.
    pub fn validate_ref(
        &self,
        input: &EventRef<'_>,
        now_ms: i64,
    ) -> Result<Event, ValidationError> {
        let mut attrs = input.attrs.clone();
        attrs.sort_unstable_by(|a, b| a.0.cmp(b.0));
        if let Some(w) = attrs.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(ValidationError::new(
                "attrs",
                format!("attribute {:?} is given twice", w[0].0),
            ));
        }
        let checked = self.check(
            input.ts_ms,
            input.community,
            input.device,
            input.kind,
            input.direction,
            &attrs,
            now_ms,
        )?;
        let attrs = encode_checked(&attrs);
        self.finish(checked, input.community, input.subject, attrs)
    }

    /// Every check but the subject's (which needs it normalised).
    #[allow(clippy::too_many_arguments)]
    fn check(
        &self,
        ts_ms: i64,
        community: &str,
        device: &str,
        kind: &str,
        direction: &str,
        attrs: &[(&str, AttrRef<'_>)],
        now_ms: i64,
    ) -> Result<Checked, ValidationError> {
        self.check_ts(ts_ms, now_ms)?;
        let trimmed = community.trim();
        if trimmed.is_empty() {
            return Err(ValidationError::new("community", "must not be empty"));
        }
        if trimmed.len() > self.max_community_bytes {
            return Err(ValidationError::new(
                "community",
                format!("longer than {} bytes", self.max_community_bytes),
            ));
        }
        if let Some(c) = trimmed
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(ValidationError::new(
                "community",
                format!("may hold only ASCII letters, digits, '-' and '_', found {c:?}"),
            ));
        }
        let device = DeviceCode::parse_checked(device).map_err(|e: DeviceCodeError| {
            ValidationError::new("device", format!("not a GB/T 28181 device code: {e}"))
        })?;
        let kind = Kind::parse(kind).ok_or_else(|| {
            ValidationError::new(
                "kind",
                format!(
                    "unknown kind {kind:?}; expected one of vehicle, face, access, person, nonmotor"
                ),
            )
        })?;
        let direction = Direction::parse(direction).ok_or_else(|| {
            ValidationError::new(
                "direction",
                format!("unknown direction {direction:?}; expected in, out or unknown"),
            )
        })?;
        self.check_attrs(attrs)?;
        Ok(Checked {
            ts_ms,
            community_trim: (
                community.len() - community.trim_start().len(),
                trimmed.len(),
            ),
            device,
            kind,
            direction,
        })
    }

    /// The event from checked parts, its subject normalised and checked. Strings
    /// already in their stored form are moved, not copied.
    fn finish(
        &self,
        c: Checked,
        community: impl AsRef<str> + Into<String>,
        subject: impl Into<String>,
        attrs: std::sync::Arc<[u8]>,
    ) -> Result<Event, ValidationError> {
        let subject = crate::subject::normalize_subject_owned(c.kind, subject.into());
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
        let (start, len) = c.community_trim;
        let community = match len == community.as_ref().len() {
            true => community.into(),
            false => community.as_ref()[start..start + len].to_string(),
        };
        Ok(Event {
            ts_ms: c.ts_ms,
            community,
            device: c.device,
            kind: c.kind,
            subject,
            direction: c.direction,
            attrs,
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

    fn check_attrs(&self, attrs: &[(&str, AttrRef<'_>)]) -> Result<(), ValidationError> {
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
        for &(k, v) in attrs {
            if k.is_empty() || k.len() > self.max_attr_bytes {
                return Err(ValidationError::new(
                    "attrs",
                    format!("attribute key must be 1 to {} bytes", self.max_attr_bytes),
                ));
            }
            match v {
                AttrRef::Str(s) if s.len() > self.max_attr_bytes => {
                    return Err(ValidationError::new(
                        "attrs",
                        format!(
                            "attribute {k:?} is longer than {} bytes",
                            self.max_attr_bytes
                        ),
                    ))
                }
                AttrRef::Float(f) if !f.is_finite() => {
                    return Err(ValidationError::new(
                        "attrs",
                        format!("attribute {k:?} is not a finite number"),
                    ))
                }
                AttrRef::Str("") | AttrRef::Int(_) | AttrRef::Float(_) | AttrRef::Bool(_)
                    if k == SOURCE_ID =>
                {
                    return Err(ValidationError::new(
                        "attrs",
                        "source_id must be a non-empty string",
                    ))
                }
                _ => {}
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

    /// The borrowed form of an input, as a binary batch decodes it.
    fn as_ref(i: &EventInput) -> EventRef<'_> {
        EventRef {
            ts_ms: i.ts_ms,
            community: &i.community,
            device: &i.device,
            kind: &i.kind,
            subject: &i.subject,
            direction: &i.direction,
            attrs: i
                .attrs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_ref()))
                .collect(),
        }
    }

    fn attr_value() -> impl proptest::strategy::Strategy<Value = AttrValue> {
        use proptest::prelude::*;
        prop_oneof![
            "[a-z ]{0,6}".prop_map(AttrValue::Str),
            any::<i64>().prop_map(AttrValue::Int),
            prop_oneof![Just(f64::NAN), Just(0.5), Just(f64::INFINITY)].prop_map(AttrValue::Float),
            any::<bool>().prop_map(AttrValue::Bool),
        ]
    }

    use proptest::strategy::Strategy as _;

    proptest::proptest! {
        #[test]
        fn the_borrowed_form_validates_exactly_like_the_owned_one(
            ts in proptest::sample::select(vec![NOW - 1000, 0, NOW + 10 * 86_400_000]),
            community in proptest::sample::select(vec!["3205080001", " 3205080001 ", "", "a b", "x"]),
            device in proptest::sample::select(vec!["32050801011210000003", "123", ""]),
            kind in proptest::sample::select(vec!["vehicle", "face", "car", ""]),
            subject in proptest::sample::select(vec!["苏e·12345", "苏E12345", " F1 ", "", "a\u{1}"]),
            direction in proptest::sample::select(vec!["in", "out", "", "sideways"]),
            attrs in proptest::collection::btree_map(
                proptest::sample::select(vec!["source_id", "plate_color", "k", ""]).prop_map(String::from),
                attr_value(),
                0..4,
            ),
        ) {
            use proptest::prelude::*;
            let input = EventInput {
                ts_ms: ts, community: community.into(), device: device.into(), kind: kind.into(),
                subject: subject.into(), direction: direction.into(), attrs,
            };
            let v = Validator::default();
            let borrowed = v.validate_ref(&as_ref(&input), NOW);
            let owned = v.validate(input.clone(), NOW);
            match (owned, borrowed) {
                (Ok(a), Ok(b)) => {
                    prop_assert_eq!(&a, &b);
                    prop_assert_eq!(a.attrs(), input.attrs.clone());
                }
                (Err(a), Err(b)) => prop_assert_eq!(a.field, b.field),
                (a, b) => prop_assert!(false, "owned {:?}, borrowed {:?}", a, b),
            }
        }
    }

    #[test]
    fn a_borrowed_attribute_key_given_twice_is_refused() {
        let i = input();
        let mut r = as_ref(&i);
        r.attrs = vec![
            ("lane", AttrRef::Int(1)),
            ("k", AttrRef::Bool(true)),
            ("lane", AttrRef::Int(2)),
        ];
        let e = Validator::default().validate_ref(&r, NOW).unwrap_err();
        assert_eq!(e.field, "attrs");
        assert!(e.reason.contains("lane"), "{e}");
        // Given in any order, the stored encoding is the same as the map's.
        r.attrs = vec![
            ("plate_color", AttrRef::Str("blue")),
            ("confidence", AttrRef::Float(0.5)),
        ];
        let mut owned = input();
        owned
            .attrs
            .insert("confidence".into(), AttrValue::Float(0.5));
        owned
            .attrs
            .insert("plate_color".into(), AttrValue::Str("blue".into()));
        let v = Validator::default();
        assert_eq!(
            v.validate_ref(&r, NOW).unwrap(),
            v.validate(owned, NOW).unwrap()
        );
    }
}
