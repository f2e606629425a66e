//! Uploaded objects (`MotorVehicleListObject`, `FaceListObject`, `PersonListObject`,
//! `NonMotorVehicleListObject`) as events: each
//! object on its own, so one bad object is refused with its reason and the rest go on.

use super::text as field;
use std::collections::{BTreeMap, HashMap};

use serde_json::value::RawValue;
use serde_json::Value;
use sightline_storage::{AttrValue, Attrs, Community, Device, Direction, EventInput, Store};

use super::pictures::{pictures, Picture, PictureError};
use super::relay::{Relay, RelayError};
use crate::error::RecordError;

/// What a list upload carries.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Upload {
    Vehicles,
    Faces,
    Persons,
    NonMotorVehicles,
}

/// The subject of a vehicle without a plate: this prefix and the object's id, so each
/// unplated pass is stored (and found by kind, time and `无牌*`), never merged.
pub const UNPLATED: &str = "无牌";

impl Upload {
    pub const ALL: [Upload; 4] = [
        Upload::Vehicles,
        Upload::Faces,
        Upload::Persons,
        Upload::NonMotorVehicles,
    ];

    pub fn of_path(path: &str) -> Option<Upload> {
        Upload::ALL.into_iter().find(|u| u.path() == path)
    }

    /// The resource's path (what [`Upload::of_path`] reads).
    pub fn path(self) -> &'static str {
        match self {
            Upload::Vehicles => "/VIID/MotorVehicles",
            Upload::Faces => "/VIID/Faces",
            Upload::Persons => "/VIID/Persons",
            Upload::NonMotorVehicles => "/VIID/NonMotorVehicles",
        }
    }

    /// The list object, the item array inside it, and the item's id fields (the
    /// second a misspelling seen in clients).
    pub fn names(self) -> (&'static str, &'static str, &'static [&'static str]) {
        match self {
            Upload::Vehicles => (
                "MotorVehicleListObject",
                "MotorVehicleObject",
                &["MotorVehicleID"],
            ),
            Upload::Faces => ("FaceListObject", "FaceObject", &["FaceID"]),
            Upload::Persons => (
                "PersonListObject",
                "PersonObject",
                &["PersonID", "PersionID"],
            ),
            Upload::NonMotorVehicles => (
                "NonMotorVehicleListObject",
                "NonMotorVehicleObject",
                &["NonMotorVehicleID"],
            ),
        }
    }

    /// The fields that carry the capture time, in order of preference; without any,
    /// the time inside the object's 48-character id.
    pub(crate) fn time_fields(self) -> &'static [&'static str] {
        match self {
            Upload::Vehicles => &["PassTime", "MarkTime", "AppearTime"],
            Upload::Faces => &["ShotTime", "FaceAppearTime", "LocationMarkTime"],
            Upload::Persons => &["ShotTime", "PersonAppearTime", "LocationMarkTime"],
            Upload::NonMotorVehicles => &["PassTime", "MarkTime", "AppearTime"],
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Upload::Vehicles => "vehicle",
            Upload::Faces => "face",
            Upload::Persons => "person",
            Upload::NonMotorVehicles => "nonmotor",
        }
    }
}

/// The capture time inside a GA/T 1400 object id: device code (20), type (2), then
/// `YYYYMMDDhhmmss` (14).
pub(crate) fn time_of_id(id: &str) -> Option<i64> {
    super::parse_time(id.get(22..36)?)
}

/// Whether a vehicle object says it has no plate (`HasPlate` false, or no usable
/// `PlateNo`).
fn unplated(o: &Value, plate: Option<&str>) -> bool {
    let has_plate = match super::field(o, "HasPlate") {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_i64() != Some(0),
        Some(Value::String(s)) => !matches!(s.trim(), "0" | "false" | "False" | "FALSE"),
        _ => true,
    };
    !has_plate || plate.is_none_or(|p| matches!(p, "无牌" | "无车牌" | "未识别" | "未知" | "车牌"))
}

/// One uploaded object: its id (for its status), its event (or why not), its
/// pictures, and the community its device was catalogued under, if this object's
/// upload catalogued it (a platform relaying a camera the catalog did not know).
pub(crate) struct Object {
    pub id: String,
    pub event: Result<EventInput, RecordError>,
    pub pictures: Vec<Picture>,
    pub catalogued: Option<String>,
    /// The object as uploaded, its pictures' `Data` left out (they are stored on their
    /// own and referenced once stored).
    pub raw: Value,
}

/// Why a body is not an upload at all (one status answers it).
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("expected {{\"{0}\":{{\"{1}\":[…]}}}}")]
    NotAList(&'static str, &'static str),
}

/// Why an object cannot become an event.
#[derive(Debug, thiserror::Error)]
enum ObjectError {
    #[error("{0} is missing")]
    Missing(String),
    #[error("DeviceID {0} is not registered in the catalog")]
    UnknownDevice(String),
    #[error("DeviceID {device} belongs to community {community}, which this uploader neither is in nor relays")]
    OtherCommunity { device: String, community: String },
    #[error("{0:?} is not a time like 20210901080000")]
    BadTime(String),
    #[error("{0}")]
    Picture(#[from] PictureError),
    #[error("{0}")]
    Relay(#[from] RelayError),
}

/// A copy of an object without its pictures' base64 `Data` (the bytes are kept as
/// pictures; the copy is the object as uploaded otherwise): in `SubImageList`'s
/// `SubImageInfoObject` (a list or one), or in `SubImageList` given as the array
/// itself.
fn without_data(o: &Value) -> Value {
    let Value::Object(fields) = o else {
        return o.clone();
    };
    let mut out = serde_json::Map::with_capacity(fields.len());
    for (k, v) in fields {
        let v = match (k.as_str(), v) {
            ("SubImageList", Value::Array(items)) => {
                Value::Array(items.iter().map(no_data).collect())
            }
            ("SubImageList", Value::Object(list)) => Value::Object(
                list.iter()
                    .map(|(lk, lv)| {
                        let lv = match (lk.as_str(), lv) {
                            ("SubImageInfoObject", Value::Array(items)) => {
                                Value::Array(items.iter().map(no_data).collect())
                            }
                            ("SubImageInfoObject", one) => no_data(one),
                            _ => lv.clone(),
                        };
                        (lk.clone(), lv)
                    })
                    .collect(),
            ),
            _ => v.clone(),
        };
        out.insert(k.clone(), v);
    }
    Value::Object(out)
}

/// A picture entry without its `Data` (copied field by field: the base64 is never
/// copied).
fn no_data(p: &Value) -> Value {
    match p {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| *k != "Data")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Where an upload's devices are looked up: `serve`'s catalog (where a relaying
/// platform catalogues the devices it relays), or the cluster's `devices` table as an
/// ingest node last read it, with the rows it wrote since (`added`, which win: as
/// PostgreSQL keeps them) (a relaying platform's unknown devices made into records
/// checked against its `communities`, for the node to write: [`Devices::new_records`]).
pub(crate) enum Catalog<'a> {
    Store(&'a Store, Option<&'a Relay>),
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    Listed {
        devices: &'a HashMap<String, Device>,
        added: &'a HashMap<String, Device>,
        relay: Option<&'a Relay>,
        communities: &'a [Community],
    },
}

/// Who uploads: its code, and the communities whose devices it may name (its own
/// device's, and for a platform those it relays into). A device of another
/// community is refused, object by object, unless it is the uploader itself.
pub(crate) struct Uploader {
    pub code: String,
    pub communities: Vec<String>,
}

/// The devices an upload names, looked up once each; unknown ones catalogued when a
/// platform relays them.
pub(crate) struct Devices<'a> {
    catalog: Catalog<'a>,
    /// Whose upload it is (`None`: anyone's, as a fuzz target parses).
    uploader: Option<Uploader>,
    known: HashMap<String, Option<Device>>,
    /// Communities devices were catalogued under by this upload, in order.
    catalogued: Vec<String>,
    /// The records of the devices catalogued from a [`Catalog::Listed`], to be written.
    records: Vec<Device>,
}

impl<'a> Devices<'a> {
    pub fn new(store: &'a Store, relay: Option<&'a Relay>) -> Devices<'a> {
        Devices::of(Catalog::Store(store, relay))
    }

    pub fn of(catalog: Catalog<'a>) -> Devices<'a> {
        Devices {
            catalog,
            uploader: None,
            known: HashMap::new(),
            catalogued: Vec::new(),
            records: Vec::new(),
        }
    }

    /// The records of the devices this upload catalogued from a [`Catalog::Listed`]
    /// (a relaying platform's unknown cameras), for the cluster to write before the
    /// events naming them are published.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub fn new_records(self) -> Vec<Device> {
        self.records
    }

    /// These devices as `uploader` may name them.
    pub fn uploaded_by(mut self, uploader: Uploader) -> Devices<'a> {
        self.uploader = Some(uploader);
        self
    }

    fn get(&mut self, code: &str) -> Result<&Device, ObjectError> {
        if !self.known.contains_key(code) {
            let found = match &self.catalog {
                Catalog::Listed {
                    devices,
                    added,
                    relay,
                    communities,
                } => match (added.get(code).or_else(|| devices.get(code)), relay) {
                    (Some(d), _) => Some(d.clone()),
                    (None, Some(relay)) => {
                        let registered = |c: &str| Ok(communities.iter().any(|k| k.code == c));
                        let d = relay.device_for(code, registered)?;
                        self.catalogued.push(d.community.clone());
                        self.records.push(d.clone());
                        Some(d)
                    }
                    (None, None) => None,
                },
                Catalog::Store(store, relay) => {
                    match (store.catalog().device(code).ok().flatten(), relay) {
                        (Some(d), _) => Some(d),
                        (None, Some(relay)) => {
                            let d = relay.catalogue(store, code)?;
                            self.catalogued.push(d.community.clone());
                            Some(d)
                        }
                        (None, None) => None,
                    }
                }
            };
            self.known.insert(code.to_string(), found);
        }
        let d = self.known[code]
            .as_ref()
            .ok_or_else(|| ObjectError::UnknownDevice(code.to_string()))?;
        match &self.uploader {
            Some(u) if u.code != code && !u.communities.contains(&d.community) => {
                Err(ObjectError::OtherCommunity {
                    device: code.to_string(),
                    community: d.community.clone(),
                })
            }
            _ => Ok(d),
        }
    }
}

/// The object's own direction, when it says in or out (`Direction`: `in`/`out`,
/// `进`/`入`/`出`); it wins over the gate's configured one. A compass code (GA/T 1400's
/// 1–9 driving direction) says neither: it is kept as the `direction_code` attribute.
fn direction(o: &Value, attrs: &mut Attrs) -> Option<Direction> {
    let given = field(o, "Direction")?;
    match given.to_ascii_lowercase().as_str() {
        "in" | "进" | "入" => Some(Direction::In),
        "out" | "出" => Some(Direction::Out),
        _ => {
            attrs.insert("direction_code".into(), AttrValue::Str(given));
            None
        }
    }
}

/// A vehicle's plate, or for one without: [`UNPLATED`] and the object's id.
fn plate_or_unplated(o: &Value, id: &str) -> String {
    match field(o, "PlateNo") {
        Some(plate) if !unplated(o, Some(&plate)) => plate,
        _ => format!("{UNPLATED}{id}"),
    }
}

/// The uploaded objects, each with its event or why it cannot be one. The body is
/// read as borrowed slices, one object parsed at a time: it is never held twice.
pub(crate) fn objects(
    devices: &mut Devices<'_>,
    upload: Upload,
    body: &[u8],
    face_subject_field: &str,
    max_picture_bytes: usize,
) -> Result<Vec<Object>, BodyError> {
    let (list, item, _) = upload.names();
    let items = items_of(body, list, item)?;
    Ok(items
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            let o: Value = serde_json::from_str(raw.get()).unwrap_or(Value::Null);
            let id = || {
                let (_, _, id_fields) = upload.names();
                id_fields
                    .iter()
                    .find_map(|f| field(&o, f))
                    .unwrap_or_default()
            };
            let id = id();
            let o = match standard_names(o) {
                Ok(o) => o,
                Err(name) => return ambiguous(i, id, name),
            };
            object(
                devices,
                upload,
                i,
                &o,
                face_subject_field,
                max_picture_bytes,
            )
        })
        .collect())
}

/// An object (and the standard's structures inside it: members named `…List`,
/// `…Object` or `…Info`, such as `SubImageList` and its `SubImageInfoObject`s) with its
/// members named as GA/T 1400 names them where a Java bean serialized without
/// annotations names them with a lower-case first letter (`plateNo` → `PlateNo`,
/// `subImageList` → `SubImageList`, `data` → `Data`), so every reader of the object — its
/// event, its pictures, what is stored and forwarded — sees one name. A member given
/// twice in different cases (`PlateNo` and `plateNo`) is refused, named: readers that
/// pick differently (the first, the last) would disagree about its value. A vendor's
/// own extension (`HikExtra: {…}`) is kept as sent, its members untouched.
pub(crate) fn standard_names(v: Value) -> Result<Value, String> {
    match v {
        Value::Object(m) => {
            let mut seen = std::collections::HashSet::with_capacity(m.len());
            let mut out = serde_json::Map::new();
            for (k, v) in m {
                if !seen.insert(k.to_ascii_lowercase()) {
                    return Err(k);
                }
                let mut chars = k.chars();
                let name = match chars.next() {
                    Some(c) if c.is_ascii_lowercase() => {
                        format!("{}{}", c.to_ascii_uppercase(), chars.as_str())
                    }
                    _ => k,
                };
                let structure = ["List", "Object", "Info"].iter().any(|e| name.ends_with(e));
                let v = match structure {
                    true => standard_names(v)?,
                    false => v,
                };
                out.insert(name, v);
            }
            Ok(Value::Object(out))
        }
        Value::Array(a) => a
            .into_iter()
            .map(standard_names)
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        v => Ok(v),
    }
}

/// Object `i`, refused for a member `name` given twice in different cases.
fn ambiguous(i: usize, id: String, name: String) -> Object {
    Object {
        id,
        event: Err(RecordError {
            line: i,
            field: Some(name.clone()),
            message: format!("member {name:?} is given twice, in different cases"),
        }),
        pictures: Vec::new(),
        catalogued: None,
        raw: Value::Null,
    }
}

/// The items of `{list: {item: [...]}}` (or of a single `{list: {item: {...}}}`), as
/// slices of the body.
fn items_of<'a>(
    body: &'a [u8],
    list: &'static str,
    item: &'static str,
) -> Result<Vec<&'a RawValue>, BodyError> {
    if let Some(items) = items_in_one_pass(body, list, item) {
        return Ok(items);
    }
    let shape = |e: serde_json::Error| match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            BodyError::NotJson(e)
        }
        _ => BodyError::NotAList(list, item),
    };
    // Names as GA/T 1400 writes them, else differing only in case (Java beans
    // serialized without annotations: `faceListObject`, `FaceListobject`), as
    // [`super::field`] finds them.
    fn named<'m, 'a>(m: &'m BTreeMap<String, &'a RawValue>, k: &str) -> Option<&'m &'a RawValue> {
        m.get(k).or_else(|| {
            m.iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(k))
                .map(|(_, v)| v)
        })
    }
    let top: BTreeMap<String, &RawValue> = serde_json::from_slice(body).map_err(shape)?;
    let inner = named(&top, list).ok_or(BodyError::NotAList(list, item))?;
    let inner: BTreeMap<String, &RawValue> =
        serde_json::from_str(inner.get()).map_err(|_| BodyError::NotAList(list, item))?;
    let items = named(&inner, item).ok_or(BodyError::NotAList(list, item))?;
    match items.get().trim_start().as_bytes().first() {
        Some(b'[') => {
            serde_json::from_str(items.get()).map_err(|_| BodyError::NotAList(list, item))
        }
        Some(b'{') => Ok(vec![*items]),
        _ => Err(BodyError::NotAList(list, item)),
    }
}

/// Object `i` of an upload: its event, pictures and what it catalogued.
pub(crate) fn object(
    devices: &mut Devices<'_>,
    upload: Upload,
    i: usize,
    o: &Value,
    face_subject_field: &str,
    max_picture_bytes: usize,
) -> Object {
    let (_, _, id_fields) = upload.names();
    let id = id_fields
        .iter()
        .find_map(|f| field(o, f))
        .unwrap_or_default();
    let refused = |why: ObjectError| RecordError {
        line: i,
        field: None,
        message: why.to_string(),
    };
    let before = devices.catalogued.len();
    let (event, pictures) = match pictures(o, max_picture_bytes) {
        Ok(p) => (
            event(devices, upload, o, &id, face_subject_field).map_err(refused),
            p,
        ),
        Err(e) => (Err(refused(e.into())), Vec::new()),
    };
    let catalogued = (devices.catalogued.len() > before)
        .then(|| devices.catalogued.last().cloned())
        .flatten();
    Object {
        id,
        event,
        pictures,
        catalogued,
        raw: without_data(o),
    }
}

/// One object as an event.
fn event(
    devices: &mut Devices<'_>,
    upload: Upload,
    o: &Value,
    id: &str,
    face_subject_field: &str,
) -> Result<EventInput, ObjectError> {
    let (_, _, id_fields) = upload.names();
    if id.is_empty() {
        return Err(ObjectError::Missing(id_fields[0].into()));
    }
    let device = field(o, "DeviceID")
        .or_else(|| field(o, "TollgateID"))
        .ok_or_else(|| ObjectError::Missing("DeviceID".into()))?;
    let d = devices.get(&device)?;
    let time_fields = upload.time_fields();
    let ts_ms = match time_fields.iter().find_map(|k| field(o, k)) {
        Some(time) => super::parse_time(&time).ok_or(ObjectError::BadTime(time))?,
        None => time_of_id(id).ok_or_else(|| {
            ObjectError::Missing(format!(
                "{} (and {} holds no time)",
                time_fields.join(" or "),
                id_fields[0]
            ))
        })?,
    };
    let mut attrs = Attrs::new();
    attrs.insert("source_id".into(), AttrValue::Str(id.to_string()));
    // Taken at a tollgate by another device: kept, so object queries by TollgateID
    // find it (`sightline_query::TOLLGATE_ATTR`).
    if let Some(t) = field(o, "TollgateID").filter(|t| *t != device) {
        attrs.insert(sightline_query::TOLLGATE_ATTR.into(), AttrValue::Str(t));
    }
    let subject = match upload {
        Upload::Vehicles => {
            for (key, from) in [
                ("plate_color", "PlateColor"),
                ("vehicle_color", "VehicleColor"),
                ("vehicle_class", "VehicleClass"),
                ("vehicle_brand", "VehicleBrand"),
                ("image_url", "StorageUrl1"),
            ] {
                if let Some(v) = field(o, from) {
                    attrs.insert(key.into(), AttrValue::Str(v));
                }
            }
            plate_or_unplated(o, id)
        }
        Upload::NonMotorVehicles => {
            for (key, from) in [
                ("plate_color", "PlateColor"),
                ("vehicle_color", "VehicleColor"),
                ("vehicle_type", "VehicleType"),
                ("vehicle_brand", "VehicleBrand"),
            ] {
                if let Some(v) = field(o, from) {
                    attrs.insert(key.into(), AttrValue::Str(v));
                }
            }
            plate_or_unplated(o, id)
        }
        Upload::Faces | Upload::Persons => {
            field(o, face_subject_field).unwrap_or_else(|| id.to_string())
        }
    };
    if let Some(r) = field(o, "PlateReliability").and_then(|r| r.parse::<i64>().ok()) {
        attrs.insert("plate_reliability".into(), AttrValue::Int(r));
    }
    let scene = super::pictures::sub_images(o)
        .ok()
        .and_then(<[Value]>::first)
        .and_then(|p| p.get("StoragePath"))
        .and_then(Value::as_str);
    if let Some(p) = scene {
        attrs.insert("scene_image_url".into(), AttrValue::Str(p.to_string()));
    }
    Ok(EventInput {
        ts_ms,
        community: d.community.clone(),
        device,
        kind: upload.kind().into(),
        subject,
        direction: direction(o, &mut attrs)
            .unwrap_or(d.direction)
            .as_str()
            .into(),
        attrs,
    })
}

/// The common shape, `{list: {item: [...]}}`, read in one pass over the body (each pass
/// over a 27 MB upload of pictures costs milliseconds of CPU); `None` for anything else
/// (one object instead of a list, bad JSON), which [`items_of`] then reads step by step
/// to say precisely what is wrong.
fn items_in_one_pass<'a>(
    body: &'a [u8],
    list: &'static str,
    item: &'static str,
) -> Option<Vec<&'a RawValue>> {
    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
    use std::fmt;

    /// A map in which the entry `key` is read by `then`, the others skipped; a
    /// duplicate `key` is not this shape.
    struct Entry<T>(&'static str, T);
    impl<'de, T: DeserializeSeed<'de> + Copy> DeserializeSeed<'de> for Entry<T> {
        type Value = T::Value;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T::Value, D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de, T: DeserializeSeed<'de> + Copy> Visitor<'de> for Entry<T> {
        type Value = T::Value;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "an object with {}", self.0)
        }
        fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<T::Value, M::Error> {
            let mut found = None;
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                match key == self.0 && found.is_none() {
                    true => found = Some(map.next_value_seed(self.1)?),
                    false if key == self.0 => {
                        return Err(serde::de::Error::duplicate_field(self.0))
                    }
                    false => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            found.ok_or_else(|| serde::de::Error::missing_field(self.0))
        }
    }
    /// An array's elements as slices of the body.
    #[derive(Clone, Copy)]
    struct Items;
    impl<'de> DeserializeSeed<'de> for Items {
        type Value = Vec<&'de RawValue>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            serde::Deserialize::deserialize(d)
        }
    }
    #[derive(Clone, Copy)]
    struct Inner(&'static str);
    impl<'de> DeserializeSeed<'de> for Inner {
        type Value = Vec<&'de RawValue>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            Entry(self.0, Items).deserialize(d)
        }
    }
    let mut d = serde_json::Deserializer::from_slice(body);
    let items = Entry(list, Inner(item)).deserialize(&mut d).ok()?;
    d.end().ok()?;
    Some(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_bean_names_are_the_standards_and_a_member_twice_is_refused() {
        let o = serde_json::json!({"plateNo": "苏E1", "subImageList":
            {"subImageInfoObject": [{"type": "01", "data": "AA=="}]}, "DeviceID": "x"});
        let named = standard_names(o).unwrap();
        assert_eq!(named["PlateNo"], "苏E1");
        assert_eq!(
            named["SubImageList"]["SubImageInfoObject"][0]["Data"],
            "AA=="
        );
        assert_eq!(named["DeviceID"], "x");
        let twice = serde_json::json!({"PlateNo": "苏A1", "plateNo": "苏B2"});
        assert!(standard_names(twice).is_err());
        let deep = serde_json::json!({"SubImageList": {"SubImageInfoObject":
            [{"Data": "AA==", "data": "BB=="}]}});
        assert_eq!(
            standard_names(deep).unwrap_err().to_ascii_lowercase(),
            "data"
        );
        // A vendor's extension is kept as sent: its members neither renamed nor
        // refused for their cases.
        let vendor = serde_json::json!({"PlateNo": "苏E1", "HikExtra": {"foo": [1, 2]},
            "VendorExt": {"id": 1, "ID": 2}, "subImageList": {"subImageInfoObject":
            [{"data": "AA==", "hikPrivate": {"bar": 3}}]}});
        let named = standard_names(vendor).unwrap();
        assert_eq!(named["HikExtra"], serde_json::json!({"foo": [1, 2]}));
        assert_eq!(named["VendorExt"], serde_json::json!({"id": 1, "ID": 2}));
        let image = &named["SubImageList"]["SubImageInfoObject"][0];
        assert_eq!(image["Data"], "AA==");
        assert_eq!(image["HikPrivate"], serde_json::json!({"bar": 3}));
    }

    const L: &str = "MotorVehicleListObject";
    const I: &str = "MotorVehicleObject";

    fn texts(items: &[&RawValue]) -> Vec<String> {
        items.iter().map(|r| r.get().to_string()).collect()
    }

    /// The one-pass reading finds what the step-by-step one finds, and declines (for
    /// the step-by-step one to explain) whatever is not the common shape.
    #[test]
    fn one_pass_items_agree_with_the_stepwise_reading() {
        let common = [
            r#"{"MotorVehicleListObject":{"MotorVehicleObject":[{"a":1},{"b":"x\"y"}]}}"#,
            r#" { "Other": [1, {"x": 2}], "MotorVehicleListObject" : { "Count": 2,
                 "MotorVehicleObject" : [ {"a":1} , [] , "s", 3 ] }, "Tail": null } "#,
            r#"{"MotorVehicleListObject":{"MotorVehicleObject":[]}}"#,
            // An escaped key is still the key.
            r#"{"MotorVehicle\u004cistObject":{"MotorVehicleObject":[{"k":"\u82cf"}]}}"#,
        ];
        for body in common {
            let fast = items_in_one_pass(body.as_bytes(), L, I).expect(body);
            let top: BTreeMap<String, &RawValue> = serde_json::from_str(body).unwrap();
            let inner: BTreeMap<String, &RawValue> = serde_json::from_str(top[L].get()).unwrap();
            let slow: Vec<&RawValue> = serde_json::from_str(inner[I].get()).unwrap();
            assert_eq!(texts(&fast), texts(&slow), "{body}");
            assert_eq!(
                texts(&items_of(body.as_bytes(), L, I).unwrap()),
                texts(&slow)
            );
        }
        let other = [
            r#"{"MotorVehicleListObject":{"MotorVehicleObject":{"a":1}}}"#, // one object
            r#"{"MotorVehicleListObject":{"Nope":[]}}"#,
            r#"{"FaceListObject":{"MotorVehicleObject":[]}}"#,
            r#"{"MotorVehicleListObject":{"MotorVehicleObject":[{"a":1}]}"#, // cut
            r#"{"MotorVehicleListObject":{"MotorVehicleObject":[]}} trailing"#,
            r#"{"MotorVehicleListObject":{"MotorVehicleObject":[]},"MotorVehicleListObject":{}}"#,
            "[]",
            "",
        ];
        for body in other {
            assert!(items_in_one_pass(body.as_bytes(), L, I).is_none(), "{body}");
        }
        // One object is still read (by the step-by-step path).
        let one = items_of(other[0].as_bytes(), L, I).unwrap();
        assert_eq!(texts(&one), [r#"{"a":1}"#]);
        assert!(matches!(
            items_of(other[1].as_bytes(), L, I),
            Err(BodyError::NotAList(..))
        ));
        assert!(matches!(
            items_of(other[3].as_bytes(), L, I),
            Err(BodyError::NotJson(_))
        ));
    }
}
