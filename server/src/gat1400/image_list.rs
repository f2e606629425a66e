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

/// `o` with `picture` added to its `SubImageList`: to its `SubImageInfoObject` (a list
/// or one), or to `SubImageList` given as the array itself. `o` that is no object is
/// left as it is (refused as an object).
fn with_picture(o: &Value, picture: &Value) -> Value {
    let mut o = o.clone();
    let Some(fields) = o.as_object_mut() else {
        return o;
    };
    let list = fields.entry("SubImageList").or_insert_with(|| json!({}));
    let list = match list {
        Value::Array(items) => {
            items.push(picture.clone());
            return o;
        }
        Value::Object(m) => m.entry("SubImageInfoObject").or_insert(Value::Null),
        // Neither a list nor an object: nothing of it is a picture.
        other => {
            *other = json!({});
            &mut other["SubImageInfoObject"]
        }
    };
    match list {
        Value::Array(items) => items.push(picture.clone()),
        Value::Null => *list = json!([picture]),
        one => *one = json!([one.take(), picture]),
    }
    o
}

/// The objects of one class an image lists (`FaceList.FaceObject`: a list or one, or
/// `FaceList` given as the array itself); `None` when it lists none.
fn seen_in(image: &Value, list: &str, item: &str) -> Option<Vec<Value>> {
    match super::field(image, list)? {
        Value::Array(seen) => Some(seen.clone()),
        l => match super::field(l, item)? {
            Value::Array(seen) => Some(seen.clone()),
            one @ Value::Object(_) => Some(vec![one.clone()]),
            _ => None,
        },
    }
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
            let Some(seen) = seen_in(image, list, item) else {
                continue;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_joins_its_objects_pictures_in_every_shape_and_nothing_panics() {
        let p = json!({"Type": "14", "ImageID": "i"});
        for (o, want) in [
            (
                json!({}),
                json!({"SubImageList": {"SubImageInfoObject": [p]}}),
            ),
            (
                json!({"SubImageList": [{"Type": "01"}]}),
                json!({"SubImageList": [{"Type": "01"}, p]}),
            ),
            (
                json!({"SubImageList": {"SubImageInfoObject": {"Type": "01"}}}),
                json!({"SubImageList": {"SubImageInfoObject": [{"Type": "01"}, p]}}),
            ),
            (
                json!({"SubImageList": {"SubImageInfoObject": [{"Type": "01"}]}}),
                json!({"SubImageList": {"SubImageInfoObject": [{"Type": "01"}, p]}}),
            ),
            (
                json!({"SubImageList": "x"}),
                json!({"SubImageList": {"SubImageInfoObject": [p]}}),
            ),
            (json!("not an object"), json!("not an object")),
            (json!(7), json!(7)),
        ] {
            assert_eq!(with_picture(&o, &p), want, "{o}");
        }
        let image = json!({"FaceList": [{"FaceID": "a"}], "PersonList": {"PersonObject": {"PersonID": "b"}},
            "MotorVehicleList": {"MotorVehicleObject": [{"MotorVehicleID": "c"}]},
            "NonMotorVehicleList": "x"});
        assert_eq!(
            seen_in(&image, "FaceList", "FaceObject"),
            Some(vec![json!({"FaceID": "a"})])
        );
        assert_eq!(
            seen_in(&image, "PersonList", "PersonObject"),
            Some(vec![json!({"PersonID": "b"})])
        );
        assert_eq!(
            seen_in(&image, "MotorVehicleList", "MotorVehicleObject").map(|v| v.len()),
            Some(1)
        );
        assert_eq!(
            seen_in(&image, "NonMotorVehicleList", "NonMotorVehicleObject"),
            None
        );
    }
}
