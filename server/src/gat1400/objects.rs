//! Uploaded objects (`MotorVehicleListObject`, `FaceListObject`) as events: each
//! object on its own, so one bad object is refused with its reason and the rest go on.

use std::collections::HashMap;

use serde_json::Value;
use sightline_storage::{AttrValue, Attrs, Device, EventInput, Store};

use super::pictures::{pictures, Picture, PictureError};
use crate::error::RecordError;

/// What a list upload carries: vehicles or faces.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Upload {
    Vehicles,
    Faces,
}

impl Upload {
    pub fn of_path(path: &str) -> Upload {
        match path {
            "/VIID/MotorVehicles" => Upload::Vehicles,
            _ => Upload::Faces,
        }
    }

    /// The list object, the item array inside it, and the item's id field.
    fn names(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Upload::Vehicles => (
                "MotorVehicleListObject",
                "MotorVehicleObject",
                "MotorVehicleID",
            ),
            Upload::Faces => ("FaceListObject", "FaceObject", "FaceID"),
        }
    }

    /// The fields that carry the capture time, in order of preference.
    fn time_fields(self) -> &'static [&'static str] {
        match self {
            Upload::Vehicles => &["PassTime"],
            Upload::Faces => &["ShotTime", "FaceAppearTime"],
        }
    }
}

/// One uploaded object: its id (for its status), its event (or why not) and its
/// pictures.
pub(crate) struct Object {
    pub id: String,
    pub event: Result<EventInput, RecordError>,
    pub pictures: Vec<Picture>,
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
    #[error("{0:?} is not a time like 20210901080000")]
    BadTime(String),
    #[error("{0}")]
    Picture(#[from] PictureError),
}

/// A string field given as a string or a number.
fn field(o: &Value, k: &str) -> Option<String> {
    match o.get(k)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The uploaded objects, each with its event or why it cannot be one.
pub(crate) fn objects(
    store: &Store,
    upload: Upload,
    body: &[u8],
    face_subject_field: &str,
    max_picture_bytes: usize,
) -> Result<Vec<Object>, BodyError> {
    let (list, item, id_field) = upload.names();
    let v: Value = serde_json::from_slice(body).map_err(BodyError::NotJson)?;
    let items = v
        .get(list)
        .and_then(|l| l.get(item))
        .and_then(Value::as_array)
        .ok_or(BodyError::NotAList(list, item))?;
    let mut devices: HashMap<String, Option<Device>> = HashMap::new();
    Ok(items
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let id = field(o, id_field).unwrap_or_default();
            let refused = |why: ObjectError| RecordError {
                line: i,
                field: None,
                message: why.to_string(),
            };
            let (event, pictures) = match pictures(o, max_picture_bytes) {
                Ok(p) => (
                    event(store, &mut devices, upload, o, &id, face_subject_field).map_err(refused),
                    p,
                ),
                Err(e) => (Err(refused(e.into())), Vec::new()),
            };
            Object {
                id,
                event,
                pictures,
            }
        })
        .collect())
}

/// One object as an event.
fn event(
    store: &Store,
    devices: &mut HashMap<String, Option<Device>>,
    upload: Upload,
    o: &Value,
    id: &str,
    face_subject_field: &str,
) -> Result<EventInput, ObjectError> {
    let (_, _, id_field) = upload.names();
    if id.is_empty() {
        return Err(ObjectError::Missing(id_field.into()));
    }
    let device = field(o, "DeviceID")
        .or_else(|| field(o, "TollgateID"))
        .ok_or_else(|| ObjectError::Missing("DeviceID".into()))?;
    let known = devices
        .entry(device.clone())
        .or_insert_with(|| store.catalog().device(&device).ok().flatten());
    let d = known
        .as_ref()
        .ok_or_else(|| ObjectError::UnknownDevice(device.clone()))?;
    let time_fields = upload.time_fields();
    let time = time_fields
        .iter()
        .find_map(|k| field(o, k))
        .ok_or_else(|| ObjectError::Missing(time_fields.join(" or ")))?;
    let ts_ms = super::parse_time(&time).ok_or(ObjectError::BadTime(time))?;
    let mut attrs = Attrs::new();
    attrs.insert("source_id".into(), AttrValue::Str(id.to_string()));
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
            field(o, "PlateNo").ok_or_else(|| ObjectError::Missing("PlateNo".into()))?
        }
        Upload::Faces => field(o, face_subject_field).unwrap_or_else(|| id.to_string()),
    };
    if let Some(r) = field(o, "PlateReliability").and_then(|r| r.parse::<i64>().ok()) {
        attrs.insert("plate_reliability".into(), AttrValue::Int(r));
    }
    let scene = o
        .pointer("/SubImageList/SubImageInfoObject/0/StoragePath")
        .and_then(Value::as_str);
    if let Some(p) = scene {
        attrs.insert("scene_image_url".into(), AttrValue::Str(p.to_string()));
    }
    Ok(EventInput {
        ts_ms,
        community: d.community.clone(),
        device,
        kind: match upload {
            Upload::Vehicles => "vehicle",
            Upload::Faces => "face",
        }
        .into(),
        subject,
        direction: d.direction.as_str().into(),
        attrs,
    })
}
