//! What we send a cascade receiver, checked against how public open-source 视图库s
//! read it. Each checklist below is derived, field for field, from one
//! implementation's receiving code (read, not copied; the checks are ours):
//!
//! * **wvp** — `648540858/wvp-GB28181-pro` branch `dev/1400`, package
//!   `com.genersoft.iot.vmp.gat1400`: `framework/domain/vo/SubscribeNotificationRequest`
//!   → `dto/SubscribeNotifications` → `dto/SubscribeNotificationObject` → the lists
//!   `MotorVehicleListObject`, `FaceObjectList`, `PersonListObject`,
//!   `NonMotorVehicleObjectList` → `MotorVehicleObject`, `FaceObject`, `PersonObject`,
//!   `NonMotorVehicle` → `SubImageList` → `SubImageInfoObject`, read by Jackson (Spring
//!   Boot's mapper: unknown fields ignored, scalars coerced), then
//!   `backend/service/impl/VIIDNotificationService` (the `SubscribeID` must be the
//!   subscriber's; `validateMotorVehicle` fixes 48-character ids; `FaceObject`'s
//!   `validateDataFormat` dereferences `DeviceID`; `S3StorageService` takes `Data` or
//!   leaves `StoragePath`). wvp's upload client (`rpc/MotorVehicleClient`) posts the
//!   same `MotorVehicleListObject`, so uploads are checked against the same classes.
//! * **xzh** — `xiezhihui98/GAT1400`, `com.cz.viid`: `be/api/VIIDServerApi`
//!   `POST /VIID/SubscribeNotifications` → `framework/domain/dto/SubscribeNotifications`
//!   (with `PageRecordNum`/`TotalNum` as `Long`) → `SubscribeNotificationObject` →
//!   `MotorVehicleObjects`, `FaceObjectList`, `PersonList`, `NonMotorVehicleList` →
//!   `MotorVehicleObject` (`LaneNo` an `Integer`), `FaceObject`, `Person`,
//!   `NonMotorVehicle`, `SubImageInfoObject`; an unknown `SubscribeID` is skipped
//!   (`VIIDNotificationServiceImpl`).
//! * **EnjoyVIID** — `tsingeye/EnjoyVIID`, `tsingeye-viid` `controller/ViidFaceController`
//!   `POST /VIID/Faces` (fastjson): `FaceListObject.FaceObject` must be an array; each
//!   becomes a `domain/VdsFace` (every scalar a `String`, `SubImageList` a
//!   `SubImageInfoObject` holding `List<SubImage>`); every `SubImage`'s `Data` is
//!   decoded by `ImageUtils.base64ToMultipartFile`, which splits it on `,` and throws
//!   on `null`: a picture must be raw base64 `Data` (an upload by `StoragePath` only is
//!   a 500 there — so an upstream of that kind is configured `image_data: base64`).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{json, Value};

use crate::cascade::{catalog, gate_registered, subscribed};
use crate::gat1400::{b64, jpeg, viid};
use crate::support::{ev, post, start, wait_until, Receiver, GATE};

/// The type a receiver's class gives a field, and what its JSON reader takes for it.
#[derive(Clone, Copy)]
enum Ty {
    /// `String`: any scalar (Jackson and fastjson coerce numbers and booleans).
    Str,
    /// `Integer` / `Long`: an integer, or a string of one.
    Int,
    /// `Double`: a number, or a string of one.
    Dbl,
    /// `Boolean`: `true`/`false`, 0/1, or the strings "true"/"false".
    Bool,
    /// A nested class: an object.
    Obj(&'static [Field]),
    /// `List<class>`: an array of objects (a single object is refused: Jackson's
    /// `ACCEPT_SINGLE_VALUE_AS_ARRAY` is off by default).
    List(&'static [Field]),
}

type Field = (&'static str, Ty);
use Ty::{Bool, Dbl, Int, List, Obj, Str};

// ---- wvp-GB28181-pro dev/1400, com.genersoft.iot.vmp.gat1400.framework.domain.dto ----

const WVP_SUB_IMAGE: &[Field] = &[
    ("ImageID", Str),
    ("EventSort", Int),
    ("DeviceID", Str),
    ("StoragePath", Str),
    ("Type", Str),
    ("FileFormat", Str),
    ("Width", Str),
    ("Height", Str),
    ("ShotTime", Str),
    ("Data", Str),
];
const WVP_SUB_IMAGE_LIST: &[Field] = &[("SubImageInfoObject", List(WVP_SUB_IMAGE))];
const WVP_MOTOR_VEHICLE: &[Field] = &[
    ("MotorVehicleID", Str),
    ("InfoKind", Str),
    ("SourceID", Str),
    ("TollgateID", Str),
    ("DeviceID", Str),
    ("LeftTopX", Int),
    ("LeftTopY", Int),
    ("RightBtmX", Int),
    ("RightBtmY", Int),
    ("MarkTime", Str),
    ("AppearTime", Str),
    ("DisappearTime", Str),
    ("LaneNo", Int),
    ("HasPlate", Bool),
    ("PlateClass", Str),
    ("PlateColor", Str),
    ("PlateNo", Str),
    ("IsDecked", Bool),
    ("IsAltered", Bool),
    ("IsCovered", Bool),
    ("Speed", Dbl),
    ("Direction", Str),
    ("VehicleClass", Str),
    ("VehicleBrand", Str),
    ("VehicleLength", Int),
    ("VehicleWidth", Int),
    ("VehicleHeight", Int),
    ("VehicleColor", Str),
    ("IsModified", Bool),
    ("NumOfPassenger", Int),
    ("PassTime", Str),
    ("IsSuspicious", Bool),
    ("SubImageList", Obj(WVP_SUB_IMAGE_LIST)),
];
const WVP_FACE: &[Field] = &[
    ("FaceID", Str),
    ("InfoKind", Int),
    ("SourceID", Str),
    ("DeviceID", Str),
    ("LeftTopX", Int),
    ("LeftTopY", Int),
    ("RightBtmX", Int),
    ("RightBtmY", Int),
    ("LocationMarkTime", Str),
    ("FaceAppearTime", Str),
    ("FaceDisAppearTime", Str),
    ("ShotTime", Str),
    ("GenderCode", Str),
    ("AgeUpLimit", Int),
    ("AgeLowerLimit", Int),
    ("AccompanyNumber", Int),
    ("IsDriver", Int),
    ("IsForeigner", Int),
    ("IsSuspectedTerrorist", Int),
    ("IsCriminalInvolved", Int),
    ("IsDetainees", Int),
    ("IsVictim", Int),
    ("IsSuspiciousPerson", Int),
    ("Attitude", Int),
    ("SubImageList", Obj(WVP_SUB_IMAGE_LIST)),
];
const WVP_PERSON: &[Field] = &[
    ("PersonID", Str),
    ("DeviceID", Str),
    ("LeftTopX", Int),
    ("LeftTopY", Int),
    ("RightBtmX", Int),
    ("RightBtmY", Int),
    ("PersonAppearTime", Str),
    ("GenderCode", Str),
    ("IsDriver", Int),
    ("IsForeigner", Int),
    ("IsSuspectedTerrorist", Int),
    ("IsCriminalInvolved", Int),
    ("IsDetainees", Int),
    ("IsVictim", Int),
    ("IsSuspiciousPerson", Int),
    ("SubImageList", Obj(WVP_SUB_IMAGE_LIST)),
];
const WVP_NON_MOTOR: &[Field] = &[
    ("NonMotorVehicleID", Str),
    ("DeviceID", Str),
    ("LeftTopX", Int),
    ("LeftTopY", Int),
    ("RightBtmX", Int),
    ("RightBtmY", Int),
    ("AppearTime", Str),
    ("HasPlate", Bool),
    ("PlateNo", Str),
    ("IsDecked", Bool),
    ("IsAltered", Bool),
    ("IsCovered", Bool),
    ("Speed", Dbl),
    ("FilmColor", Int),
    ("IsModified", Int),
    ("SubImageList", Obj(WVP_SUB_IMAGE_LIST)),
];
const WVP_NOTIFICATION: &[Field] = &[
    ("NotificationID", Str),
    ("SubscribeID", Str),
    ("Title", Str),
    ("TriggerTime", Str),
    ("InfoIDs", Str),
    (
        "MotorVehicleObjectList",
        Obj(&[("MotorVehicleObject", List(WVP_MOTOR_VEHICLE))]),
    ),
    ("FaceObjectList", Obj(&[("FaceObject", List(WVP_FACE))])),
    (
        "PersonObjectList",
        Obj(&[("PersonObject", List(WVP_PERSON))]),
    ),
    (
        "NonMotorVehicleObjectList",
        Obj(&[("NonMotorVehicleObject", List(WVP_NON_MOTOR))]),
    ),
];
const WVP_REQUEST: &[Field] = &[(
    "SubscribeNotificationListObject",
    Obj(&[("SubscribeNotificationObject", List(WVP_NOTIFICATION))]),
)];

// ---- xiezhihui98/GAT1400, com.cz.viid.framework.domain ----

const XZH_SUB_IMAGE_LIST: &[Field] = &[("SubImageInfoObject", List(WVP_SUB_IMAGE))];
const XZH_MOTOR_VEHICLE: &[Field] = &[
    ("MotorVehicleID", Str),
    ("DeviceID", Str),
    ("LaneNo", Int),
    ("HasPlate", Str),
    ("PlateColor", Str),
    ("PlateNo", Str),
    ("PassTime", Str),
    ("SubImageList", Obj(XZH_SUB_IMAGE_LIST)),
];
const XZH_FACE: &[Field] = &[
    ("FaceID", Str),
    ("InfoKind", Int),
    ("DeviceID", Str),
    ("LeftTopX", Int),
    ("LeftTopY", Int),
    ("RightBtmX", Int),
    ("RightBtmY", Int),
    ("AgeUpLimit", Int),
    ("AgeLowerLimit", Int),
    ("AccompanyNumber", Int),
    ("IsDriver", Int),
    ("IsForeigner", Int),
    ("IsSuspectedTerrorist", Int),
    ("IsCriminalInvolved", Int),
    ("IsDetainees", Int),
    ("SubImageList", Obj(XZH_SUB_IMAGE_LIST)),
];
const XZH_PERSON: &[Field] = &[
    ("IsDriver", Int),
    ("IsForeigner", Int),
    ("IsSuspectedTerrorist", Int),
    ("IsCriminalInvolved", Int),
    ("IsDetainees", Int),
    ("IsVictim", Int),
    ("IsSuspiciousPerson", Int),
    ("SubImageList", Obj(XZH_SUB_IMAGE_LIST)),
];
const XZH_NON_MOTOR: &[Field] = &[
    ("IsModified", Int),
    ("SubImageList", Obj(XZH_SUB_IMAGE_LIST)),
];
const XZH_NOTIFICATION: &[Field] = &[
    ("ExecuteOperation", Str),
    ("NotificationID", Str),
    ("SubscribeID", Str),
    ("Title", Str),
    ("TriggerTime", Str),
    ("InfoIDs", Str),
    (
        "MotorVehicleObjectList",
        Obj(&[
            ("PageRecordNum", Int),
            ("TotalNum", Int),
            ("MotorVehicleObject", List(XZH_MOTOR_VEHICLE)),
        ]),
    ),
    ("FaceObjectList", Obj(&[("FaceObject", List(XZH_FACE))])),
    (
        "PersonObjectList",
        Obj(&[("PersonObject", List(XZH_PERSON))]),
    ),
    (
        "NonMotorVehicleObjectList",
        Obj(&[("NonMotorVehicleObject", List(XZH_NON_MOTOR))]),
    ),
];
const XZH_REQUEST: &[Field] = &[(
    "SubscribeNotificationListObject",
    Obj(&[
        ("PageRecordNum", Int),
        ("TotalNum", Int),
        ("SubscribeNotificationObject", List(XZH_NOTIFICATION)),
    ]),
)];

// ---- tsingeye/EnjoyVIID, tsingeye-viid domain (fastjson) ----

const ENJOY_SUB_IMAGE: &[Field] = &[
    ("ImageID", Str),
    ("EventSort", Str),
    ("DeviceID", Str),
    ("StoragePath", Str),
    ("Type", Str),
    ("FileFormat", Str),
    ("ShotTime", Str),
    ("Width", Str),
    ("Height", Str),
    ("Data", Str),
];
const ENJOY_FACE: &[Field] = &[
    ("FaceID", Str),
    ("InfoKind", Str),
    ("SourceID", Str),
    ("DeviceID", Str),
    ("ShotTime", Str),
    ("LeftTopX", Str),
    ("LeftTopY", Str),
    ("RightBtmX", Str),
    ("RightBtmY", Str),
    ("LocationMarkTime", Str),
    ("FaceAppearTime", Str),
    ("FaceDisAppearTime", Str),
    ("GenderCode", Str),
    ("AgeUpLimit", Str),
    ("AgeLowerLimit", Str),
    (
        "SubImageList",
        Obj(&[("SubImageInfoObject", List(ENJOY_SUB_IMAGE))]),
    ),
];
const ENJOY_FACES_REQUEST: &[Field] =
    &[("FaceListObject", Obj(&[("FaceObject", List(ENJOY_FACE))]))];

/// Where `v` does not fit `fields` (as `path: why`), added to `errors`. Fields the
/// class does not declare are ignored, as its reader ignores them.
fn check(v: &Value, fields: &[Field], path: &str, errors: &mut Vec<String>) {
    let Some(o) = v.as_object() else {
        errors.push(format!("{path}: not an object: {v}"));
        return;
    };
    for (name, ty) in fields {
        let Some(x) = o.get(*name) else { continue };
        let at = format!("{path}.{name}");
        let fits = match (ty, x) {
            (_, Value::Null) => false, // we never send null
            (Str, Value::String(_) | Value::Number(_) | Value::Bool(_)) => true,
            (Int, Value::Number(n)) => n.is_i64() || n.is_u64(),
            (Int, Value::String(s)) => s.trim().parse::<i64>().is_ok(),
            (Dbl, Value::Number(_)) => true,
            (Dbl, Value::String(s)) => s.trim().parse::<f64>().is_ok(),
            (Bool, Value::Bool(_)) => true,
            (Bool, Value::Number(n)) => matches!(n.as_i64(), Some(0 | 1)),
            (Bool, Value::String(s)) => ["true", "false"].contains(&s.to_lowercase().as_str()),
            (Obj(inner), Value::Object(_)) => {
                check(x, inner, &at, errors);
                true
            }
            (List(inner), Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    check(item, inner, &format!("{at}[{i}]"), errors);
                }
                true
            }
            _ => false,
        };
        if !fits {
            errors.push(format!("{at}: {x} does not deserialize"));
        }
    }
}

/// Every field named `*Time` anywhere in `v` is `yyyyMMddHHmmss` (the form wvp's
/// `@JsonFormat` and fliad's parser expect).
fn times(v: &Value, path: &str, errors: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                let at = format!("{path}.{k}");
                if k.ends_with("Time") {
                    let ok = x
                        .as_str()
                        .is_some_and(|t| t.len() == 14 && t.bytes().all(|b| b.is_ascii_digit()));
                    if !ok {
                        errors.push(format!("{at}: {x} is not yyyyMMddHHmmss"));
                    }
                }
                times(x, &at, errors);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                times(x, &format!("{path}[{i}]"), errors);
            }
        }
        _ => {}
    }
}

/// The objects of every list in a notification or upload body, with their list key.
fn objects(v: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut walk = |o: &Value| {
        for (list, item) in [
            ("MotorVehicleObjectList", "MotorVehicleObject"),
            ("FaceObjectList", "FaceObject"),
            ("PersonObjectList", "PersonObject"),
            ("NonMotorVehicleObjectList", "NonMotorVehicleObject"),
            ("MotorVehicleListObject", "MotorVehicleObject"),
            ("FaceListObject", "FaceObject"),
            ("PersonListObject", "PersonObject"),
            ("NonMotorVehicleListObject", "NonMotorVehicleObject"),
        ] {
            for x in o[list][item].as_array().into_iter().flatten() {
                out.push((item.to_string(), x.clone()));
            }
        }
    };
    walk(v);
    for n in v["SubscribeNotificationListObject"]["SubscribeNotificationObject"]
        .as_array()
        .into_iter()
        .flatten()
    {
        walk(n);
    }
    out
}

/// What wvp's and xzh's receiving logic needs beyond the types: the subscriber's own
/// `SubscribeID` (both look it up: wvp answers 1 "订阅不存在", xzh skips it), a
/// `DeviceID` on every face (wvp's `validateDataFormat` dereferences it), ids of 48
/// characters (wvp's `validateMotorVehicle` rewrites by position), and each picture
/// as `Data` or `StoragePath`.
fn receiver_logic(body: &Value, subscribe_id: Option<&str>, errors: &mut Vec<String>) {
    if let Some(want) = subscribe_id {
        for n in body["SubscribeNotificationListObject"]["SubscribeNotificationObject"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if n["SubscribeID"] != want {
                errors.push(format!("SubscribeID {} is not {want}", n["SubscribeID"]));
            }
            if n["NotificationID"].as_str().is_none_or(str::is_empty) {
                errors.push(format!("no NotificationID: {n}"));
            }
        }
    }
    for (item, o) in objects(body) {
        let id_field = item.replace("Object", "ID");
        let id = o[id_field.as_str()].as_str().unwrap_or("");
        if id.len() != 48 {
            errors.push(format!("{item}.{id_field} {id:?} is not 48 characters"));
        }
        if o["DeviceID"].as_str().is_none_or(str::is_empty) {
            errors.push(format!("{item} {id}: no DeviceID"));
        }
        for sub in o["SubImageList"]["SubImageInfoObject"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if sub["Data"].as_str().is_none() && sub["StoragePath"].as_str().is_none() {
                errors.push(format!(
                    "{item} {id}: a picture with neither Data nor StoragePath"
                ));
            }
        }
    }
}

/// EnjoyVIID's `/VIID/Faces`: beyond the types, every picture raw base64 `Data` (its
/// decoder splits on `,` and dereferences `Data`).
fn enjoy_faces(body: &Value, errors: &mut Vec<String>) {
    check(body, ENJOY_FACES_REQUEST, "", errors);
    if !body["FaceListObject"]["FaceObject"].is_array() {
        errors.push("FaceListObject.FaceObject is not an array".into());
    }
    for (_, o) in objects(body) {
        for sub in o["SubImageList"]["SubImageInfoObject"]
            .as_array()
            .into_iter()
            .flatten()
        {
            match sub["Data"].as_str() {
                Some(d) if !d.is_empty() && !d.contains(',') => {}
                _ => errors.push(format!(
                    "{}: a picture without raw base64 Data",
                    o["FaceID"]
                )),
            }
        }
    }
}

/// Objects as devices that follow GA/T 1400's types upload them (booleans as
/// booleans, integers as integers), with pictures.
fn typed_uploads(a: SocketAddr) {
    let gate = gate_registered(a);
    let id = |t: &str, kind: &str, n: u32| format!("{GATE}{kind}{t}{n:05}{kind}{n:05}");
    let picture = |seed: u64, kind: &str, t: &str, n: u32| {
        json!({"SubImageInfoObject": [{"ImageID": format!("{GATE}{kind}{t}{n:05}"), "EventSort": 2,
            "DeviceID": GATE, "Type": "01", "FileFormat": "Jpeg", "ShotTime": t,
            "Width": "1920", "Height": "1080", "Data": b64(&jpeg(seed, 3000))}]})
    };
    let t = "20210901080000";
    for (path, body) in [
        (
            "/VIID/MotorVehicles",
            json!({"MotorVehicleListObject": {"MotorVehicleObject": [{
                "MotorVehicleID": id(t, "02", 1), "InfoKind": 1, "SourceID": &id(t, "02", 1)[..41],
                "TollgateID": GATE, "DeviceID": GATE, "PassTime": t, "LaneNo": 2, "HasPlate": true,
                "PlateClass": "02", "PlateColor": "2", "PlateNo": "苏E12345", "Speed": 32.5,
                "Direction": "1", "VehicleClass": "K33", "VehicleColor": "A", "VehicleLength": 4800,
                "IsSuspicious": false, "SubImageList": picture(1, "02", t, 1)}]}}),
        ),
        (
            "/VIID/Faces",
            json!({"FaceListObject": {"FaceObject": [{
                "FaceID": id(t, "06", 2), "InfoKind": 1, "SourceID": &id(t, "06", 2)[..41],
                "DeviceID": GATE, "ShotTime": t, "FaceAppearTime": t, "FaceDisAppearTime": t,
                "LeftTopX": 10, "LeftTopY": 20, "RightBtmX": 200, "RightBtmY": 240,
                "GenderCode": "1", "AgeUpLimit": 40, "AgeLowerLimit": 30, "IsDriver": 0,
                "SubImageList": picture(2, "06", t, 2)}]}}),
        ),
        (
            "/VIID/Persons",
            json!({"PersonListObject": {"PersonObject": [{
                "PersonID": id(t, "01", 3), "DeviceID": GATE, "PersonAppearTime": t,
                "GenderCode": "2", "LeftTopX": 1, "LeftTopY": 2, "RightBtmX": 3, "RightBtmY": 4,
                "SubImageList": picture(3, "01", t, 3)}]}}),
        ),
        (
            "/VIID/NonMotorVehicles",
            json!({"NonMotorVehicleListObject": {"NonMotorVehicleObject": [{
                "NonMotorVehicleID": id(t, "03", 4), "DeviceID": GATE, "AppearTime": t,
                "HasPlate": false, "Speed": 12.0, "SubImageList": picture(4, "03", t, 4)}]}}),
        ),
    ] {
        let (status, _, answer) = viid(a, "POST", path, &gate, &body.to_string());
        assert_eq!(status, 200, "{path}: {answer}");
        assert_eq!(
            answer["ResponseStatusListObject"]["ResponseStatusObject"][0]["StatusCode"], 0,
            "{path}: {answer}"
        );
    }
    // And events made through /v1/events (no object as uploaded: built from the event).
    let built = [
        ev(
            "2021-09-01T09:00:00+08:00",
            GATE,
            "vehicle",
            "苏E99999",
            "in",
        ),
        ev("2021-09-01T09:00:01+08:00", GATE, "face", "F42", "in"),
        ev("2021-09-01T09:00:02+08:00", GATE, "person", "P42", "in"),
        ev(
            "2021-09-01T09:00:03+08:00",
            GATE,
            "nonmotor",
            "苏E-N42",
            "in",
        ),
    ]
    .join("\n");
    let r = post(a, "/v1/events", "application/x-ndjson", &built);
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Notification bodies (pictures by reference and as `Data`) and upstream upload
/// bodies (as `Data`, as EnjoyVIID needs; and by reference) from a real server, each
/// checked against wvp-GB28181-pro dev/1400's and xiezhihui98/GAT1400's notification
/// classes and logic, wvp's object classes for uploads, and EnjoyVIID's `/VIID/Faces`.
#[test]
fn bodies_we_send_satisfy_receivers_of_wvp_xzh_and_enjoyviid_field_for_field() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    catalog(a);
    let [by_reference, with_data, upload_data, upload_ref] = [(); 4].map(|_| Receiver::start());
    for r in [&by_reference, &with_data, &upload_data, &upload_ref] {
        r.up.store(true, Ordering::SeqCst);
    }
    let sub = |id: &str, r: &Receiver, data: u8| {
        json!({"SubscribeID": id, "Title": "t", "SubscribeDetail": "11,12,13,14",
               "ResourceURI": "32050000005030000001", "OperateType": 0, "ImageData": data,
               "ReceiveAddr": format!("http://{}/VIID/SubscribeNotifications", r.addr)})
    };
    let (ref_id, data_id) = (
        "320500000000000001032021090108000000011",
        "320500000000000001032021090108000000012",
    );
    subscribed(a, sub(ref_id, &by_reference, 0));
    subscribed(a, sub(data_id, &with_data, 1));
    for (r, image_data) in [(&upload_data, "base64"), (&upload_ref, "reference")] {
        let body = json!({"url": format!("http://{}", r.addr), "password": "p",
                          "image_data": image_data, "keepalive_s": 1});
        let u = post(a, "/v1/upstreams", "application/json", &body.to_string());
        assert_eq!(u.status, 201, "{}", u.body);
    }
    typed_uploads(a);
    let all = |r: &Receiver| -> usize {
        r.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| objects(b).len())
            .sum()
    };
    assert!(
        wait_until(Duration::from_secs(30), || [
            &by_reference,
            &with_data,
            &upload_data,
            &upload_ref
        ]
        .iter()
        .all(|r| all(r) >= 8)),
        "{:?}",
        [&by_reference, &with_data, &upload_data, &upload_ref].map(all)
    );

    for (r, subscribe_id) in [(&by_reference, ref_id), (&with_data, data_id)] {
        for body in r.bodies.lock().unwrap().iter() {
            let mut errors = Vec::new();
            check(body, WVP_REQUEST, "wvp", &mut errors);
            check(body, XZH_REQUEST, "xzh", &mut errors);
            times(body, "", &mut errors);
            receiver_logic(body, Some(subscribe_id), &mut errors);
            assert!(errors.is_empty(), "{errors:#?}\n{body}");
        }
    }
    let mut kinds = std::collections::BTreeSet::new();
    for (r, base64) in [(&upload_data, true), (&upload_ref, false)] {
        for (body, head) in r
            .bodies
            .lock()
            .unwrap()
            .iter()
            .zip(r.heads.lock().unwrap().iter())
        {
            let mut errors = Vec::new();
            for (list, item, class, path) in [
                (
                    "MotorVehicleListObject",
                    "MotorVehicleObject",
                    WVP_MOTOR_VEHICLE,
                    "motorvehicles",
                ),
                ("FaceListObject", "FaceObject", WVP_FACE, "faces"),
                ("PersonListObject", "PersonObject", WVP_PERSON, "persons"),
                (
                    "NonMotorVehicleListObject",
                    "NonMotorVehicleObject",
                    WVP_NON_MOTOR,
                    "nonmotorvehicles",
                ),
            ] {
                if body.get(list).is_some() {
                    kinds.insert(list);
                    let wrapper: &[Field] = &[(item, List(class))];
                    check(&body[list], wrapper, list, &mut errors);
                    assert!(head.starts_with(&format!("post /viid/{path} ")), "{head}");
                }
            }
            times(body, "", &mut errors);
            receiver_logic(body, None, &mut errors);
            if body.get("FaceListObject").is_some() {
                let mut enjoy = Vec::new();
                enjoy_faces(body, &mut enjoy);
                match base64 {
                    true => errors.extend(enjoy),
                    false => assert!(
                        !enjoy.is_empty() || !body.to_string().contains("SubImageInfoObject"),
                        "by reference a face upload has no Data: EnjoyVIID cannot take it"
                    ),
                }
            }
            assert!(
                head.contains("user-identify: 32050000005030000001"),
                "{head}"
            );
            assert!(
                head.contains("content-type: application/viid+json"),
                "{head}"
            );
            assert!(errors.is_empty(), "{errors:#?}\n{body}");
        }
    }
    assert_eq!(kinds.len(), 4, "every class was uploaded: {kinds:?}");
}
