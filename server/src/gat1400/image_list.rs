//! `POST /VIID/Images`: `{"ImageListObject":{"Image":[…]}}` (`ImageObject` accepted
//! too). Each image carries `ImageInfo`, its bytes (`Data`) or a `StoragePath`, and the
//! objects seen in it (`FaceList.FaceObject`, `PersonList.PersonObject`,
//! `MotorVehicleList.MotorVehicleObject`, `NonMotorVehicleList.NonMotorVehicleObject`).
//! Every such object becomes an event like an upload of its kind, with the image as
//! one of its pictures (type 14, scene); an image without objects names no subject and
//! becomes no event.

use serde_json::{json, Value};

use super::objects::{object, BodyError, Devices, Object, Upload};

const LISTS: [(&str, &str, Upload); 4] = [
    ("MotorVehicleList", "MotorVehicleObject", Upload::Vehicles),
    (
        "NonMotorVehicleList",
        "NonMotorVehicleObject",
        Upload::NonMotorVehicles,
    ),
    ("FaceList", "FaceObject", Upload::Faces),
    ("PersonList", "PersonObject", Upload::Persons),
];

/// One uploaded image: its id, and which of the objects are its (a range).
pub(crate) struct Image {
    pub id: String,
    pub objects: std::ops::Range<usize>,
}

/// The image as a `SubImageInfoObject` of the objects seen in it.
fn as_picture(image: &Value) -> Value {
    let info = &image["ImageInfo"];
    let mut p = json!({"Type": "14"});
    for k in [
        "ImageID",
        "DeviceID",
        "StoragePath",
        "FileFormat",
        "ShotTime",
        "Width",
        "Height",
        "EventSort",
    ] {
        if let Some(v) = info.get(k).filter(|v| !v.is_null()) {
            p[k] = v.clone();
        }
    }
    if let Some(d) = image.get("Data").filter(|d| d.is_string()) {
        p["Data"] = d.clone();
    }
    p
}

/// `o` with `picture` added to its `SubImageList`.
fn with_picture(o: &Value, picture: &Value) -> Value {
    let mut o = o.clone();
    let list = &mut o["SubImageList"]["SubImageInfoObject"];
    match list {
        Value::Array(items) => items.push(picture.clone()),
        Value::Null => *list = json!([picture]),
        one => *one = json!([one.take(), picture]),
    }
    o
}

/// The images of a body and the objects seen in them.
pub(crate) fn images(
    devices: &mut Devices<'_>,
    body: &[u8],
    face_subject_field: &str,
    max_picture_bytes: usize,
) -> Result<(Vec<Image>, Vec<Object>), BodyError> {
    let v: Value = serde_json::from_slice(body).map_err(BodyError::NotJson)?;
    let list = &v["ImageListObject"];
    let items = match list.get("Image").or_else(|| list.get("ImageObject")) {
        Some(Value::Array(items)) => items.clone(),
        Some(one @ Value::Object(_)) => vec![one.clone()],
        _ => return Err(BodyError::NotAList("ImageListObject", "Image")),
    };
    let (mut images, mut objects) = (Vec::new(), Vec::new());
    for image in &items {
        let picture = as_picture(image);
        let start = objects.len();
        for (list, item, upload) in LISTS {
            let seen = match image.get(list).and_then(|l| l.get(item)) {
                Some(Value::Array(seen)) => seen.clone(),
                Some(one @ Value::Object(_)) => vec![one.clone()],
                _ => continue,
            };
            for o in &seen {
                let i = objects.len();
                let o = with_picture(o, &picture);
                objects.push(object(
                    devices,
                    upload,
                    i,
                    &o,
                    face_subject_field,
                    max_picture_bytes,
                ));
            }
        }
        let id = image["ImageInfo"]["ImageID"]
            .as_str()
            .unwrap_or("")
            .to_string();
        images.push(Image {
            id,
            objects: start..objects.len(),
        });
    }
    Ok((images, objects))
}
