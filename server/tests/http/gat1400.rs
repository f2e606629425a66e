//! GA/T 1400: devices register by digest, then push vehicles and faces.

use std::net::SocketAddr;

use serde_json::{json, Value};

use crate::support::{call, enc, get, send, start, wait_until, GATE, OTHER_GATE, RANGE};
pub(crate) use sightline_testkit::gat1400::{b64, jpeg, register, viid};
use sightline_testkit::gat1400::{digest_response, md5_hex, nonce_of};

#[test]
fn gat1400_devices_register_by_digest_and_push_vehicles_and_faces() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    let platform = "32050800005030000001";
    assert_eq!(
        call(
            a,
            "PUT",
            "/v1/communities/3205080001",
            "application/json",
            b"{\"name\":\"North\"}"
        )
        .status,
        201
    );
    for (code, kind, direction, password) in [
        (GATE, "checkpoint_camera", "in", Some("gate-secret")),
        (OTHER_GATE, "checkpoint_camera", "out", None),
        ("32050801011320000003", "face_camera", "in", None),
        (platform, "platform", "unknown", Some("platform-secret")),
    ] {
        let mut body = json!({"community": "3205080001", "kind": kind, "direction": direction});
        if let Some(p) = password {
            body["gat1400"] = json!({"password": p});
        }
        let r = call(
            a,
            "PUT",
            &format!("/v1/devices/{code}"),
            "application/json",
            body.to_string().as_bytes(),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        assert_eq!(r.body["gat1400"], password.is_some());
        assert!(
            !r.body.to_string().contains("secret"),
            "passwords are not echoed"
        );
    }
    let r = call(
        a,
        "PUT",
        &format!("/v1/devices/{GATE}"),
        "application/json",
        br#"{"community":"3205080001","kind":"checkpoint_camera","gat1400":{"password":""}}"#,
    );
    assert_eq!(
        (r.status, r.body["error"]["field"].as_str()),
        (400, Some("gat1400.password"))
    );

    // Wrong password, unknown device: still 401 with a fresh challenge.
    assert_eq!(
        register(a, "/VIID/System/Register", platform, "wrong").0,
        401
    );
    assert_eq!(register(a, "/VIID/System/Register", OTHER_GATE, "x").0, 401);
    // Uploads before registering are refused.
    let ident = |id: &str| vec![("User-Identify", id.to_string())];
    let (status, _, _) = viid(a, "POST", "/VIID/MotorVehicles", &ident(platform), "{}");
    assert_eq!(status, 401);

    let (status, body) = register(a, "/VIID/System/Register", platform, "platform-secret");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ResponseStatusObject"]["StatusCode"], 0);
    assert_eq!(body["ResponseStatusObject"]["Id"], platform);
    let (status, _, body) = viid(
        a,
        "POST",
        "/VIID/System/Keepalive",
        &ident(platform),
        &format!("{{\"KeepaliveObject\":{{\"DeviceID\":\"{platform}\"}}}}"),
    );
    assert_eq!(
        (status, body["ResponseStatusObject"]["StatusCode"].as_i64()),
        (200, Some(0))
    );
    let (status, head, body) = viid(a, "GET", "/VIID/System/Time", &[], "");
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: application/viid+json"),
        "{head}"
    );
    assert_eq!(
        body["SystemTimeObject"]["LocalTime"]
            .as_str()
            .unwrap()
            .len(),
        14
    );

    // A recorded-style upload: two good vehicles (one without milliseconds, the
    // reliability as a number), one with an unregistered device, one without a plate.
    let upload = json!({"MotorVehicleListObject": {"MotorVehicleObject": [
        {"MotorVehicleID": format!("{GATE}0220210901080000{:012}", 1), "DeviceID": GATE,
         "TollgateID": GATE, "PassTime": "20210901080000123", "PlateNo": "苏E12345",
         "PlateColor": "5", "VehicleColor": "A", "PlateReliability": "96",
         "StorageUrl1": "http://img/1.jpg",
         "SubImageList": {"SubImageInfoObject": [
            {"ImageID": "x1", "Type": "01", "StoragePath": "http://img/1-scene.jpg"},
            {"ImageID": "x2", "Type": "02", "StoragePath": "http://img/1-plate.jpg"}]}},
        {"MotorVehicleID": format!("{OTHER_GATE}0220210901180000{:012}", 2),
         "DeviceID": OTHER_GATE, "PassTime": "20210901180000", "PlateNo": "苏E12345",
         "PlateReliability": 88},
        {"MotorVehicleID": "320508019999999999990220210901080000000000000003",
         "DeviceID": "32050801999999999999", "PassTime": "20210901080000", "PlateNo": "苏E99999"},
        {"MotorVehicleID": format!("{GATE}0220210901090000{:012}", 4), "DeviceID": GATE,
         "PassTime": "20210901090000"},
    ]}});
    let (status, _, body) = viid(
        a,
        "POST",
        "/VIID/MotorVehicles",
        &ident(platform),
        &upload.to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let statuses = body["ResponseStatusListObject"]["ResponseStatusObject"]
        .as_array()
        .unwrap();
    let codes: Vec<i64> = statuses
        .iter()
        .map(|s| s["StatusCode"].as_i64().unwrap())
        .collect();
    // The vehicle without a plate is an unplated pass, stored (issue 17: such passes
    // were refused, and lost); the camera the catalog did not know is one the platform
    // relays: catalogued under the platform's community, and the answer says so.
    assert_eq!(codes, [0, 0, 0, 0]);
    assert!(statuses[2]["StatusString"]
        .as_str()
        .unwrap()
        .contains("catalogued under community 3205080001"));
    assert_eq!(statuses[0]["Id"].as_str().unwrap().len(), 48);
    // The same upload again is idempotent by MotorVehicleID: acknowledged, not stored twice.
    let (_, _, again) = viid(
        a,
        "POST",
        "/VIID/MotorVehicles",
        &ident(platform),
        &upload.to_string(),
    );
    assert_eq!(
        again["ResponseStatusListObject"]["ResponseStatusObject"][0]["StatusCode"],
        0
    );

    let traj = get(
        a,
        &format!(
            "/v1/trajectory?kind=vehicle&subject={}&{RANGE}",
            enc("苏E12345")
        ),
    );
    let events = traj.body["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{}", traj.body);
    assert_eq!(events[0]["ts"], "2021-09-01T08:00:00.123+08:00");
    assert_eq!(
        events[0]["direction"], "in",
        "the gate's configured direction"
    );
    assert_eq!(events[1]["direction"], "out");
    assert_eq!(events[0]["attrs"]["plate_color"], "5");
    assert_eq!(events[0]["attrs"]["plate_reliability"], 96);
    assert_eq!(events[1]["attrs"]["plate_reliability"], 88);
    assert_eq!(
        events[0]["attrs"]["scene_image_url"],
        "http://img/1-scene.jpg"
    );
    assert_eq!(events[0]["attrs"]["source_id"].as_str().unwrap().len(), 48);

    // Faces: the archive id is the subject when given, the face id otherwise.
    let faces = json!({"FaceListObject": {"FaceObject": [
        {"FaceID": "320508010113200000030620210901080010000000000001",
         "DeviceID": "32050801011320000003", "FaceAppearTime": "20210901080010", "ArchiveID": "A77"},
        {"FaceID": "320508010113200000030620210901080020000000000002",
         "DeviceID": "32050801011320000003", "ShotTime": "20210901080020"},
        {"FaceID": "320508010113200000030620210901080030000000000003",
         "DeviceID": "32050801011320000003", "ShotTime": "yesterday"},
    ]}});
    let (_, _, body) = viid(
        a,
        "POST",
        "/VIID/Faces",
        &ident(platform),
        &faces.to_string(),
    );
    let codes: Vec<i64> = body["ResponseStatusListObject"]["ResponseStatusObject"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["StatusCode"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, [0, 0, 8]);
    for subject in ["A77", "320508010113200000030620210901080020000000000002"] {
        let r = get(
            a,
            &format!("/v1/trajectory?kind=face&subject={subject}&{RANGE}"),
        );
        assert_eq!(
            r.body["events"].as_array().unwrap().len(),
            1,
            "{subject}: {}",
            r.body
        );
    }

    // Not JSON: one status 7, HTTP 200 as devices expect.
    let (status, _, body) = viid(a, "POST", "/VIID/Faces", &ident(platform), "{not json");
    assert_eq!(status, 200);
    assert_eq!(
        body["ResponseStatusListObject"]["ResponseStatusObject"][0]["StatusCode"],
        7
    );

    // Unregistering ends the session (from the registered identity it needs no
    // digest, as devices send it on shutdown).
    let (status, _, _) = viid(
        a,
        "POST",
        "/VIID/System/UnRegister",
        &ident(platform),
        &format!("{{\"UnRegisterObject\":{{\"DeviceID\":\"{platform}\"}}}}"),
    );
    assert_eq!(status, 200);
    let (status, _, _) = viid(
        a,
        "POST",
        "/VIID/Faces",
        &ident(platform),
        &faces.to_string(),
    );
    assert_eq!(status, 401);
    // A device registers for itself too; a camera (not a platform) relays nothing.
    assert_eq!(
        register(a, "/VIID/System/Register", GATE, "gate-secret").0,
        200
    );
    let stranger = json!({"MotorVehicleListObject": {"MotorVehicleObject": [
        {"MotorVehicleID": "320508019999999999980220210901080000000000000009",
         "DeviceID": "32050801999999999998", "PassTime": "20210901080000", "PlateNo": "苏E99998"}]}});
    let (_, _, body) = viid(
        a,
        "POST",
        "/VIID/MotorVehicles",
        &ident(GATE),
        &stranger.to_string(),
    );
    let s = &body["ResponseStatusListObject"]["ResponseStatusObject"][0];
    assert_eq!(s["StatusCode"], 8, "{body}");
    assert!(
        s["StatusString"]
            .as_str()
            .unwrap()
            .contains("not registered"),
        "{body}"
    );
}

/// `PUT` of a JSON body.
pub(crate) fn put_json(a: SocketAddr, target: &str, body: &Value) -> crate::support::Reply {
    call(
        a,
        "PUT",
        target,
        "application/json",
        body.to_string().as_bytes(),
    )
}

/// Community 3205080001 ("North") in the catalog.
pub(crate) fn north(a: SocketAddr) {
    let r = put_json(a, "/v1/communities/3205080001", &json!({"name": "North"}));
    assert_eq!(r.status, 201, "{}", r.body);
}

/// Community 3205080001 and the gate `GATE` (inbound, a checkpoint camera) with a
/// GA/T 1400 `password`, in the catalog.
pub(crate) fn gate_in_catalog(a: SocketAddr, password: &str) {
    let put = |target: &str, body: Value| put_json(a, target, &body).status;
    north(a);
    let device = json!({"community": "3205080001", "kind": "checkpoint_camera", "direction": "in",
                        "gat1400": {"password": password}});
    assert_eq!(put(&format!("/v1/devices/{GATE}"), device), 201);
}

/// A picture's bytes and its head (lower case), with an optional API key.
pub(crate) fn image(addr: SocketAddr, url: &str, token: Option<&str>) -> (u16, String, Vec<u8>) {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let a = send(
        addr,
        format!("GET {url} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").as_bytes(),
    );
    (a.status, a.head.to_ascii_lowercase(), a.body)
}

/// Pictures as cameras send them — base64 `Data` in `SubImageList.SubImageInfoObject[]`
/// with `ImageID`, `Type`, `FileFormat`, `ShotTime`, `Width`/`Height` as strings (the
/// shape of xiezhihui98/GAT1400 `dto/SubImageInfoObject.java` and wvp-GB28181-pro
/// dev/1400's copy of it) — 100 vehicles with two ~150 KB pictures each, a 40 MB body
/// past the 16 MiB `/v1` limit; one object whose picture is not a picture, one with a
/// `StoragePath` only. Every stored picture comes back byte-identical through the
/// trajectory's `images` and `GET /v1/images/{id}`, after a restart too, and only
/// within the key's communities.
#[test]
fn pictures_are_stored_with_their_objects_and_served_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), |_| {});
    let a = server.addr;
    gate_in_catalog(a, "gate-secret");
    assert_eq!(
        register(a, "/VIID/System/Register", GATE, "gate-secret").0,
        200
    );

    let mut pictures = Vec::new();
    let mut objects = Vec::new();
    for i in 0..100u64 {
        let time = format!("20210901{:02}{:02}00", 8 + i / 60, i % 60);
        let (whole, plate) = (jpeg(i, 150_000), jpeg(1000 + i, 150_000));
        let sub = |bytes: &[u8], kind: &str| {
            json!({"ImageID": format!("{GATE}02{time}{i:05}"),
            "EventSort": 2, "DeviceID": GATE, "StoragePath": "", "Type": kind, "FileFormat": "Jpeg",
            "ShotTime": time, "Width": "1920", "Height": "1080", "Data": b64(bytes)})
        };
        objects.push(
            json!({"MotorVehicleID": format!("{GATE}02{time}{i:05}02{i:05}"),
            "InfoKind": 1, "SourceID": format!("{GATE}02{time}{i:05}"), "TollgateID": GATE,
            "DeviceID": GATE, "PassTime": time, "PlateNo": "苏E7PIC1", "HasPlate": "1",
            "PlateColor": "2", "LaneNo": 1, "Speed": "",
            "SubImageList": {"SubImageInfoObject": [sub(&whole, "01"), sub(&plate, "02")]}}),
        );
        pictures.push((whole, plate));
    }
    objects.push(json!({"MotorVehicleID": format!("{GATE}0220210901100000001000200100"),
        "DeviceID": GATE, "PassTime": "20210901100000", "PlateNo": "苏E7PIC1",
        "SubImageList": {"SubImageInfoObject": [{"Type": "01", "Data": b64(b"GIF89a not a jpeg")}]}}));
    objects.push(json!({"MotorVehicleID": format!("{GATE}0220210901100100001010201010"),
        "DeviceID": GATE, "PassTime": "20210901100100", "PlateNo": "苏E7PIC1",
        "SubImageList": {"SubImageInfoObject": {"Type": "14", "StoragePath": "http://10.1.2.3/scene.jpg"}}}));
    let sent = objects.clone();
    let body = json!({"MotorVehicleListObject": {"MotorVehicleObject": objects}}).to_string();
    assert!(body.len() > 40_000_000, "{} bytes", body.len());
    let ident = vec![("User-Identify", GATE.to_string())];
    let (status, _, answer) = viid(a, "POST", "/VIID/MotorVehicles", &ident, &body);
    assert_eq!(status, 200, "{answer}");
    let statuses = answer["ResponseStatusListObject"]["ResponseStatusObject"]
        .as_array()
        .unwrap();
    assert_eq!(statuses.len(), 102);
    assert!(
        statuses[..100].iter().all(|s| s["StatusCode"] == 0),
        "{}",
        statuses[0]
    );
    assert_eq!(statuses[100]["StatusCode"], 8);
    assert!(statuses[100]["StatusString"]
        .as_str()
        .unwrap()
        .contains("SubImageInfoObject[0]"));
    assert_eq!(statuses[101]["StatusCode"], 0);

    let check = |a: SocketAddr, token: Option<&str>| {
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let t = send(a, format!("GET /v1/trajectory?kind=vehicle&subject={}&{RANGE} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n", enc("苏E7PIC1")).as_bytes());
        assert_eq!(t.status, 200);
        let t: Value = serde_json::from_slice(&t.body).unwrap();
        let events = t["events"].as_array().unwrap();
        assert_eq!(events.len(), 101, "the refused object is not stored");
        for (i, (e, (whole, plate))) in events.iter().zip(&pictures).enumerate() {
            let images = e["images"].as_array().unwrap();
            // The object as uploaded, its pictures by reference.
            let (status, head, bytes) = image(a, e["object"].as_str().unwrap(), token);
            assert_eq!(status, 200, "{head}");
            assert!(head.contains("content-type: application/json"), "{head}");
            let mut want = sent[i].clone();
            for (sub, img) in want["SubImageList"]["SubImageInfoObject"]
                .as_array_mut()
                .unwrap()
                .iter_mut()
                .zip(images)
            {
                sub.as_object_mut().unwrap().remove("Data");
                sub["StoragePath"] = img["url"].clone();
            }
            assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap(), want);
            assert_eq!(images.len(), 2);
            assert_eq!(
                (images[0]["type"].as_str(), images[0]["width"].as_i64()),
                (Some("01"), Some(1920))
            );
            assert!(
                e["attrs"].get("images").is_none(),
                "images are not an attribute"
            );
            for (img, want) in images.iter().zip([whole, plate]) {
                let (status, head, bytes) = image(a, img["url"].as_str().unwrap(), token);
                assert_eq!(status, 200, "{head}");
                assert!(head.contains("content-type: image/jpeg"), "{head}");
                assert!(bytes == *want, "{} is not the picture sent", img["url"]);
            }
        }
        assert_eq!(
            events[100]["images"],
            json!([{"url": "http://10.1.2.3/scene.jpg", "type": "14"}])
        );
        (
            events[0]["images"][0]["url"].as_str().unwrap().to_string(),
            events[0]["object"].as_str().unwrap().to_string(),
        )
    };
    let (first, first_object) = check(a, None);
    // Re-sent (a camera retrying): acknowledged again, stored once, pictures too.
    let before = std::fs::read_dir(dir.path().join("pictures"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum::<u64>();
    let (status, _, _) = viid(a, "POST", "/VIID/MotorVehicles", &ident, &body);
    assert_eq!(status, 200);
    let after = std::fs::read_dir(dir.path().join("pictures"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum::<u64>();
    assert_eq!(before, after, "identical pictures are stored once");
    let sent: usize = pictures.iter().map(|(w, p)| w.len() + p.len()).sum();
    assert!(
        (after as f64) < sent as f64 * 1.01,
        "{after} bytes on disk for {sent} bytes of pictures"
    );
    let (status, _, _) = image(a, "/v1/images/nothing", None);
    assert_eq!(status, 404);
    // An id made up from a real one (its offset moved into the record) names nothing:
    // 404, not a damaged store; and pictures and objects, kept in one pack, are each
    // found only as what they are.
    let moved = |url: &str, by: u64| {
        let (head, offset) = url.rsplit_once('.').unwrap();
        format!("{head}.{}", offset.parse::<u64>().unwrap() + by)
    };
    for by in [1, 9, 44, 100] {
        let (status, head, body) = image(a, &moved(&first, by), None);
        assert_eq!(status, 404, "{head} {}", String::from_utf8_lossy(&body));
        let (status, _, _) = image(a, &moved(&first_object, by), None);
        assert_eq!(status, 404);
    }
    let id = |url: &str| url.rsplit('/').next().unwrap().to_string();
    let (status, _, _) = image(a, &format!("/v1/objects/{}", id(&first)), None);
    assert_eq!(status, 404, "a picture is not an object");
    let (status, _, _) = image(a, &format!("/v1/images/{}", id(&first_object)), None);
    assert_eq!(status, 404, "an object is not a picture");

    // After a restart, with keys: a key of another community sees no picture.
    server.stop();
    let (inside, outside) = {
        use sightline_server::auth::{self, Role};
        let store = sightline_storage::Store::open(dir.path(), Default::default()).unwrap();
        let mk = |c: &str| {
            auth::create(&store, "t", Role::Investigate, Some(vec![c.to_string()]), 0)
                .unwrap()
                .1
        };
        (mk("3205080001"), mk("3205089999"))
    };
    let server = start(dir.path(), |_| {});
    assert_eq!(check(server.addr, Some(&inside)).0, first);
    let (status, _, _) = image(server.addr, &first, Some(&outside));
    assert_eq!(status, 404, "another community's picture is not found");
    let (status, _, _) = image(server.addr, &first, None);
    assert_eq!(status, 401);
}

/// The other object types a community gateway sends, and objects real devices send
/// without the fields a strict reading requires: `PersonListObject` (with the
/// `PersionID` misspelling of nanguantong/gat-1400's `security_person_t`),
/// `NonMotorVehicleListObject`, an unplated vehicle (`HasPlate` "0", `PlateNo` ""), and
/// a face with no time field at all (as tsingeye/EnjoyVIID's `FaceController.upload`
/// sends: the time is taken from the `FaceID`, as xiezhihui98/GAT1400 does).
#[test]
fn persons_nonmotor_vehicles_unplated_vehicles_and_faces_without_times_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    gate_in_catalog(a, "gate-secret");
    assert_eq!(
        register(a, "/VIID/System/Register", GATE, "gate-secret").0,
        200
    );
    let ident = vec![("User-Identify", GATE.to_string())];
    let upload = |path: &str, body: Value| {
        let (status, _, answer) = viid(a, "POST", path, &ident, &body.to_string());
        assert_eq!(status, 200, "{path}: {answer}");
        answer["ResponseStatusListObject"]["ResponseStatusObject"].clone()
    };
    let id = |t: &str, n: u32| format!("{GATE}02{t}{n:05}02{n:05}");
    let person = id("20210901083000", 1);
    let s = upload(
        "/VIID/Persons",
        json!({"PersonListObject": {"PersonObject": [
        {"PersonID": person, "DeviceID": GATE, "PersonAppearTime": "20210901083000", "GenderCode": "1"},
        {"PersionID": id("20210901083100", 2), "DeviceID": GATE}]}}),
    );
    assert_eq!(
        (s[0]["StatusCode"].as_i64(), s[1]["StatusCode"].as_i64()),
        (Some(0), Some(0)),
        "{s}"
    );
    let s = upload(
        "/VIID/NonMotorVehicles",
        json!({"NonMotorVehicleListObject": {"NonMotorVehicleObject": [
        {"NonMotorVehicleID": id("20210901084000", 3), "DeviceID": GATE, "AppearTime": "20210901084000",
         "HasPlate": true, "PlateNo": "苏E·A123", "VehicleType": "2", "Direction": "出"}]}}),
    );
    assert_eq!(s[0]["StatusCode"], 0, "{s}");
    let unplated = id("20210901085000", 4);
    let s = upload(
        "/VIID/MotorVehicles",
        json!({"MotorVehicleListObject": {"MotorVehicleObject": [
        {"MotorVehicleID": unplated, "DeviceID": GATE, "PassTime": "20210901085000", "HasPlate": "0", "PlateNo": "", "Direction": "9"}]}}),
    );
    assert_eq!(s[0]["StatusCode"], 0, "{s}");
    let face = id("20210901090000", 5);
    let s = upload(
        "/VIID/Faces",
        json!({"FaceListObject": {"FaceObject": [
        {"FaceID": face, "InfoKind": 0, "SourceID": &face[..41], "DeviceID": GATE, "LeftTopX": 10},
        {"FaceID": "not-48-characters", "DeviceID": GATE}]}}),
    );
    assert_eq!(s[0]["StatusCode"], 0, "{s}");
    assert_eq!(
        s[1]["StatusCode"], 8,
        "a face with no time anywhere is refused: {s}"
    );
    assert!(
        s[1]["StatusString"].as_str().unwrap().contains("ShotTime"),
        "{s}"
    );

    let one = |kind: &str, subject: &str| {
        let r = get(
            a,
            &format!(
                "/v1/trajectory?kind={kind}&subject={}&{RANGE}",
                enc(subject)
            ),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let events = r.body["events"].as_array().unwrap().clone();
        assert_eq!(events.len(), 1, "{kind} {subject}: {}", r.body);
        events[0].clone()
    };
    assert_eq!(
        one("person", &person)["ts"],
        "2021-09-01T08:30:00.000+08:00"
    );
    assert_eq!(
        one("person", &id("20210901083100", 2))["ts"],
        "2021-09-01T08:31:00.000+08:00"
    );
    let n = one("nonmotor", "苏EA123");
    assert_eq!(n["attrs"]["vehicle_type"], "2");
    assert_eq!(
        n["direction"], "out",
        "the object's own direction wins over the gate's"
    );
    let e = one("vehicle", &format!("无牌{unplated}"));
    assert_eq!(e["attrs"]["source_id"], unplated.as_str());
    assert_eq!(
        (
            e["direction"].as_str(),
            e["attrs"]["direction_code"].as_str()
        ),
        (Some("in"), Some("9")),
        "a compass code is kept, the gate's direction stays"
    );
    assert_eq!(one("face", &face)["ts"], "2021-09-01T09:00:00.000+08:00");
    // Unplated passes are found by kind and prefix (once the vocabulary caught up).
    let search = format!("/v1/search?q={}&mode=prefix&kind=vehicle", enc("无牌"));
    let found = wait_until(std::time::Duration::from_secs(10), || {
        get(a, &search).body["subjects"]
            .as_array()
            .is_some_and(|s| s.iter().any(|x| x["subject"] == format!("无牌{unplated}")))
    });
    assert!(found, "{}", get(a, &search).body);
}

/// The nonce of a 401's `WWW-Authenticate` challenge.
/// Identities as vendors configure them, with each client's own digest dance:
/// * wvp-GB28181-pro dev/1400 (`DigestData.toDigestHeader`): a configured user name
///   (`admin`), quoted `qop`, `nc` and `algorithm`, `User-Identify` naming the device;
/// * ty-wssf/fliad-viid (`DigestsUtil.generateDigestAuthHeader`): the device id as user
///   name, `nc=1` not zero-padded, no algorithm or opaque;
/// * tsingeye/EnjoyVIID (`DigestUtils.getAuthorization`): no spaces after commas, the
///   full URL as `uri`, an unterminated `opaque="null`;
/// * a reconnecting camera answering the challenge of a failed upload (the newer
///   Hikvision behaviour wvp's `DigestAuthenticationFilter` documents) is registered
///   again by it; `UnRegister` from a registered identity needs no digest.
#[test]
fn digest_identities_as_vendors_configure_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    let put = |target: &str, body: Value| put_json(a, target, &body);
    north(a);
    let r = put(
        &format!("/v1/devices/{GATE}"),
        json!({"community": "3205080001",
        "kind": "checkpoint_camera", "direction": "in", "gat1400": {"username": "admin", "password": "pw1"}}),
    );
    assert_eq!(
        (r.status, r.body["gat1400_username"].as_str()),
        (201, Some("admin")),
        "{}",
        r.body
    );
    let r = put(
        &format!("/v1/devices/{OTHER_GATE}"),
        json!({"community": "3205080001",
        "kind": "checkpoint_camera", "direction": "out", "gat1400": {"password": "pw2"}}),
    );
    assert_eq!(r.status, 201);
    let register_body = |id: &str| format!("{{\"RegisterObject\":{{\"DeviceID\":\"{id}\"}}}}");
    let challenge = |path: &str, id: &str| {
        let (status, head, _) = viid(
            a,
            "POST",
            path,
            &[("User-Identify", id.to_string())],
            &register_body(id),
        );
        assert_eq!(status, 401, "{head}");
        nonce_of(&head)
    };
    let keepalive = |id: &str| {
        viid(
            a,
            "POST",
            "/VIID/System/Keepalive",
            &[("User-Identify", id.to_string())],
            "{}",
        )
        .0
    };

    // wvp dev/1400: user name "admin", quoted qop/nc/algorithm.
    let path = "/VIID/System/Register";
    let n = challenge(path, GATE);
    let resp = digest_response(
        "admin",
        "pw1",
        &n,
        "00000001",
        "0a1b2c3d4e5f6a7b",
        "POST",
        path,
    );
    let auth = format!("Digest username=\"admin\", realm=\"Sightline\", nonce=\"{n}\", uri=\"{path}\", response=\"{resp}\", qop=\"auth\", nc=\"00000001\", cnonce=\"0a1b2c3d4e5f6a7b\", algorithm=\"MD5\", opaque=\"null\"");
    let (status, _, body) = viid(
        a,
        "POST",
        path,
        &[("User-Identify", GATE.into()), ("Authorization", auth)],
        &register_body(GATE),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ResponseStatusObject"]["Id"], GATE);
    assert_eq!(keepalive(GATE), 200);
    // UnRegister from the registered identity, no digest; then it is not registered.
    let (status, _, body) = viid(
        a,
        "POST",
        "/VIID/System/UnRegister",
        &[("User-Identify", GATE.into())],
        &format!("{{\"UnRegisterObject\":{{\"DeviceID\":\"{GATE}\"}}}}"),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(keepalive(GATE), 401);
    // The device code as user name is not this device's configured user name.
    let n = challenge(path, GATE);
    let resp = digest_response(GATE, "pw1", &n, "00000001", "c", "POST", path);
    let auth = format!("Digest username=\"{GATE}\", realm=\"Sightline\", nonce=\"{n}\", uri=\"{path}\", qop=auth, nc=00000001, cnonce=\"c\", response=\"{resp}\"");
    assert_eq!(
        viid(
            a,
            "POST",
            path,
            &[("Authorization", auth)],
            &register_body(GATE)
        )
        .0,
        401
    );

    // fliad-viid: the device id as user name, nc=1, no algorithm, no User-Identify.
    let n = challenge(path, OTHER_GATE);
    let resp = digest_response(
        OTHER_GATE,
        "pw2",
        &n,
        "1",
        "5f4dcc3b5aa765d61d8327deb882cf99",
        "POST",
        path,
    );
    let auth = format!("Digest username=\"{OTHER_GATE}\", realm=\"Sightline\", nonce=\"{n}\", uri=\"{path}\", response=\"{resp}\", qop=auth, nc=1, cnonce=\"5f4dcc3b5aa765d61d8327deb882cf99\"");
    let (status, _, body) = viid(
        a,
        "POST",
        path,
        &[("Authorization", auth)],
        &register_body(OTHER_GATE),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(keepalive(OTHER_GATE), 200);

    // EnjoyVIID: no spaces, the full URL as uri, an unterminated opaque.
    let n = challenge(path, GATE);
    let uri = format!("http://{a}{path}");
    let resp = digest_response("admin", "pw1", &n, "00000001", "abcd1234", "POST", &uri);
    let auth = format!("Digest username=\"admin\",realm=\"Sightline\",nonce=\"{n}\",uri=\"{uri}\",qop=\"auth\",nc=\"00000001\",cnonce=\"abcd1234\",response=\"{resp}\",opaque=\"null");
    let (status, _, body) = viid(
        a,
        "POST",
        path,
        &[("User-Identify", GATE.into()), ("Authorization", auth)],
        &register_body(GATE),
    );
    assert_eq!(status, 200, "{body}");

    // A camera that lost its registration answers the challenge of a failed upload on
    // the upload itself, and is stored.
    let (status, _, _) = viid(
        a,
        "POST",
        "/VIID/System/UnRegister",
        &[("User-Identify", GATE.into())],
        "{}",
    );
    assert_eq!(status, 200);
    let upload = json!({"MotorVehicleListObject": {"MotorVehicleObject": [
        {"MotorVehicleID": format!("{GATE}0220210901080000000010200001"), "DeviceID": GATE,
         "PassTime": "20210901080000", "PlateNo": "苏E5AUTH"}]}})
    .to_string();
    let up = "/VIID/MotorVehicles";
    let (status, head, _) = viid(a, "POST", up, &[("User-Identify", GATE.into())], &upload);
    assert_eq!(status, 401);
    let n = nonce_of(&head);
    let resp = digest_response("admin", "pw1", &n, "00000001", "c2", "POST", up);
    let auth = format!("Digest username=\"admin\", realm=\"Sightline\", nonce=\"{n}\", uri=\"{up}\", qop=auth, nc=00000001, cnonce=\"c2\", response=\"{resp}\", algorithm=MD5");
    let (status, _, body) = viid(
        a,
        "POST",
        up,
        &[("User-Identify", GATE.into()), ("Authorization", auth)],
        &upload,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["ResponseStatusListObject"]["ResponseStatusObject"][0]["StatusCode"], 0,
        "{body}"
    );
    assert_eq!(
        keepalive(GATE),
        200,
        "the upload's digest registered it again"
    );

    // This server's 20-digit id.
    let (status, _, body) = viid(a, "GET", "/VIID/System/Time", &[], "");
    assert_eq!(status, 200);
    let id = body["SystemTimeObject"]["VIIDServerID"].as_str().unwrap();
    assert!(
        id.len() == 20 && id.bytes().all(|b| b.is_ascii_digit()),
        "{id}"
    );
}

/// A platform relaying 500 cameras, or objects naming only a `TollgateID`: devices the
/// catalog does not know are catalogued on their first object, under the community
/// their code's prefix maps to in the platform's `relays` (else the platform's own).
#[test]
fn a_platform_uploads_for_the_cameras_it_relays() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    let put = |target: &str, body: Value| put_json(a, target, &body);
    for c in ["3205080001", "3205090001"] {
        assert_eq!(
            put(&format!("/v1/communities/{c}"), json!({"name": c})).status,
            201
        );
    }
    let platform = "32050800005030000001";
    let r = put(
        &format!("/v1/devices/{platform}"),
        json!({"community": "3205080001", "kind": "platform",
        "relays": {"32050901": "3205099999"}, "gat1400": {"password": "p"}}),
    );
    assert_eq!(
        (r.status, r.body["error"]["field"].as_str()),
        (400, Some("relays.32050901")),
        "{}",
        r.body
    );
    let r = put(
        &format!("/v1/devices/{GATE}"),
        json!({"community": "3205080001", "kind": "checkpoint_camera",
        "relays": {"32050901": "3205090001"}}),
    );
    assert_eq!(
        (r.status, r.body["error"]["field"].as_str()),
        (400, Some("relays")),
        "{}",
        r.body
    );
    let r = put(
        &format!("/v1/devices/{platform}"),
        json!({"community": "3205080001", "kind": "platform",
        "relays": {"32050901": "3205090001"}, "gat1400": {"password": "p"}}),
    );
    // Created now: the refusals above wrote nothing.
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["relays"], json!({"32050901": "3205090001"}));
    assert_eq!(register(a, "/VIID/System/Register", platform, "p").0, 200);

    let relayed = "32050901011210000007";
    let elsewhere = "32050801011210000008";
    // Twenty digits, but no GB/T 28181 code (province 00; type 110): refused, and never
    // catalogued (an admin could neither change nor remove such a record).
    let (no_province, no_type) = ("00050901011320000001", "32050901011100000001");
    let objects: Vec<Value> = [
        (relayed, 1),
        (elsewhere, 2),
        (relayed, 3),
        ("1234", 4),
        (no_province, 5),
        (no_type, 6),
    ]
    .iter()
    .map(|(d, n)| {
        json!({"MotorVehicleID": format!("{d}0220210901080000000010200{n:03}"),
            "TollgateID": d, "PassTime": "20210901080000", "PlateNo": format!("苏E{n}RLY")})
    })
    .collect();
    let body = json!({"MotorVehicleListObject": {"MotorVehicleObject": objects}});
    let (status, _, answer) = viid(
        a,
        "POST",
        "/VIID/MotorVehicles",
        &[("User-Identify", platform.to_string())],
        &body.to_string(),
    );
    assert_eq!(status, 200);
    let s = answer["ResponseStatusListObject"]["ResponseStatusObject"]
        .as_array()
        .unwrap();
    let text = |i: usize| s[i]["StatusString"].as_str().unwrap().to_string();
    assert_eq!(
        s.iter()
            .map(|x| x["StatusCode"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [0, 0, 0, 8, 8, 8]
    );
    for (i, code) in [(4, no_province), (5, no_type)] {
        assert!(text(i).contains("GB/T 28181"), "{}", text(i));
        let r = get(a, &format!("/v1/devices/{code}"));
        assert_eq!(r.status, 404, "{code} catalogued: {}", r.body);
    }
    assert!(
        text(0).contains(&format!(
            "DeviceID {relayed} catalogued under community 3205090001"
        )),
        "{}",
        text(0)
    );
    assert!(
        text(1).contains("catalogued under community 3205080001"),
        "{}",
        text(1)
    );
    assert_eq!(text(2), "正常", "catalogued once");
    assert!(text(3).contains("GB/T 28181"), "{}", text(3));
    let devices = get(a, "/v1/devices?community=3205090001").body;
    assert_eq!(devices["devices"][0]["code"], relayed, "{devices}");
    let t = get(
        a,
        &format!(
            "/v1/trajectory?kind=vehicle&subject={}&{RANGE}",
            enc("苏E1RLY")
        ),
    )
    .body;
    assert_eq!(t["events"][0]["community"], "3205090001", "{t}");
}

/// Dispositions (布控) from a registered platform, in the shape of wvp-GB28181-pro
/// dev/1400's `DispositionClient` (`DispositionListObject.DispositionObject[]`, revoked
/// with `DELETE /VIID/Dispositions?IDList=`): a watchlist whose hits are pushed to its
/// `ReceiveAddr` as `DispositionNotificationListObject`s carrying the matched object
/// (one `MotorVehicleObject`, not a list, as that code's receiver reads it).
#[test]
fn dispositions_watch_and_notify_their_receive_address() {
    use crate::support::Receiver;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    let put = |target: &str, body: Value| put_json(a, target, &body);
    north(a);
    let platform = "32050800005030000001";
    assert_eq!(
        put(
            &format!("/v1/devices/{platform}"),
            json!({"community": "3205080001",
        "kind": "platform", "gat1400": {"password": "p"}})
        )
        .status,
        201
    );
    assert_eq!(
        put(
            &format!("/v1/devices/{GATE}"),
            json!({"community": "3205080001",
        "kind": "checkpoint_camera", "direction": "in"})
        )
        .status,
        201
    );
    let receiver = Receiver::start();
    receiver.up.store(true, std::sync::atomic::Ordering::SeqCst);
    let ident = [("User-Identify", platform.to_string())];
    let body = json!({"DispositionListObject": {"DispositionObject": [
        {"DispositionID": "320500000000000001202109010800001", "Title": "被盗车辆", "DispositionCategory": "2",
         "TargetFeature": "苏E7DSP1", "PriorityLevel": 1, "ApplicantName": "张三", "ApplicantOrg": "姑苏分局",
         "BeginTime": "20210901000000", "EndTime": "20991231000000", "OperateType": "0",
         "ReceiveAddr": format!("http://{}/VIID/DispositionNotifications", receiver.addr), "Reason": "盗抢"},
        {"DispositionID": "320500000000000001202109010800002", "DispositionCategory": "2"}]}});
    let (status, _, _) = viid(a, "POST", "/VIID/Dispositions", &[], &body.to_string());
    assert_eq!(status, 401, "only a registered platform disposes");
    assert_eq!(register(a, "/VIID/System/Register", platform, "p").0, 200);
    let (status, _, answer) = viid(a, "POST", "/VIID/Dispositions", &ident, &body.to_string());
    assert_eq!(status, 200);
    let s = answer["ResponseStatusListObject"]["ResponseStatusObject"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        (s[0]["StatusCode"].as_i64(), s[1]["StatusCode"].as_i64()),
        (Some(0), Some(8)),
        "{answer}"
    );
    assert!(s[1]["StatusString"]
        .as_str()
        .unwrap()
        .contains("TargetFeature"));
    let lists = get(a, "/v1/watchlists").body;
    assert_eq!(
        lists["watchlists"][0]["id"], "viid-disp-320500000000000001202109010800001",
        "apart from /v1/watchlists' ids: {lists}"
    );

    let vehicle_id = format!("{GATE}0220210901080000000010200001");
    let upload = json!({"MotorVehicleListObject": {"MotorVehicleObject": [
        {"MotorVehicleID": vehicle_id, "DeviceID": GATE, "PassTime": "20210901080000",
         "PlateNo": "苏E·7DSP1", "PlateColor": "2"},
        {"MotorVehicleID": format!("{GATE}0220210901080100000010200002"), "DeviceID": GATE,
         "PassTime": "20210901080100", "PlateNo": "苏E7OTHR"}]}});
    let (status, _, _) = viid(
        a,
        "POST",
        "/VIID/MotorVehicles",
        &ident,
        &upload.to_string(),
    );
    assert_eq!(status, 200);
    assert!(
        wait_until(std::time::Duration::from_secs(20), || !receiver
            .bodies
            .lock()
            .unwrap()
            .is_empty()),
        "no notification arrived"
    );
    let got = receiver.bodies.lock().unwrap()[0].clone();
    let n = &got["DispositionNotificationListObject"]["DispositionNotificationObject"];
    assert_eq!(n.as_array().unwrap().len(), 1, "{got}");
    assert_eq!(n[0]["DispositionID"], "320500000000000001202109010800001");
    assert_eq!(n[0]["CntObjectID"], vehicle_id.as_str());
    assert_eq!(
        n[0]["MotorVehicleObject"]["PlateNo"], "苏E·7DSP1",
        "the object as uploaded"
    );
    assert_eq!(n[0]["MotorVehicleObject"]["PlateColor"], "2");
    assert_eq!(n[0]["TriggerTime"].as_str().unwrap().len(), 14);
    assert!(
        !got.to_string().contains("null"),
        "absent fields are omitted: {got}"
    );
    let head = receiver.heads.lock().unwrap()[0].clone();
    assert!(
        head.contains("content-type: application/viid+json"),
        "{head}"
    );
    assert!(
        head.contains("user-identify: 32050000005030000001"),
        "{head}"
    );

    let (_, _, answer) = viid(
        a,
        "DELETE",
        "/VIID/Dispositions?IDList=320500000000000001202109010800001",
        &ident,
        "",
    );
    assert_eq!(
        answer["ResponseStatusListObject"]["ResponseStatusObject"][0]["StatusCode"], 0,
        "{answer}"
    );
    assert_eq!(get(a, "/v1/watchlists").body["watchlists"], json!([]));
    let (_, _, answer) = viid(
        a,
        "DELETE",
        "/VIID/Dispositions/320500000000000001202109010800001",
        &ident,
        "",
    );
    assert_eq!(
        answer["ResponseStatusListObject"]["ResponseStatusObject"][0]["StatusCode"], 1,
        "{answer}"
    );
}

/// Bodies compressed as Feign clients send them (xiezhihui98/GAT1400's
/// `application.yml`: `feign.compression.request.enabled`, `min-request-size: 2048`,
/// `Content-Encoding: gzip`) are inflated; one that inflates past the `/VIID` body
/// limit is refused with a GA/T 1400 status, not inflated without bound.
#[test]
fn gzip_bodies_are_inflated_within_the_limit() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |c| c.max_viid_body_bytes = 1 << 20);
    let a = server.addr;
    gate_in_catalog(a, "p");
    assert_eq!(register(a, "/VIID/System/Register", GATE, "p").0, 200);
    let gzip = |bytes: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    };
    let post = |body: &[u8]| {
        let mut req = format!("POST /VIID/MotorVehicles HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
            Content-Encoding: gzip\r\nUser-Identify: {GATE}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
            .into_bytes();
        req.extend_from_slice(body);
        let answer = send(a, &req);
        (
            answer.status,
            serde_json::from_slice::<Value>(&answer.body).unwrap_or(Value::Null),
        )
    };
    let objects: Vec<Value> = (0..20)
        .map(|n| {
            json!({"MotorVehicleID": format!("{GATE}0220210901080000000010200{n:03}"),
            "DeviceID": GATE, "PassTime": "20210901080000", "PlateNo": format!("苏E{n:03}GZ")})
        })
        .collect();
    let body = json!({"MotorVehicleListObject": {"MotorVehicleObject": objects}}).to_string();
    assert!(body.len() > 2048);
    let (status, answer) = post(&gzip(body.as_bytes()));
    assert_eq!(status, 200, "{answer}");
    let s = answer["ResponseStatusListObject"]["ResponseStatusObject"]
        .as_array()
        .unwrap();
    assert_eq!(s.len(), 20);
    assert!(s.iter().all(|x| x["StatusCode"] == 0), "{answer}");
    // 10 MB of zeros compress to a few KB: refused past the 1 MiB limit.
    let (status, answer) = post(&gzip(&vec![0u8; 10 << 20]));
    assert_eq!(status, 413, "{answer}");
    // Too large is not malformed JSON: "other error".
    assert_eq!(answer["ResponseStatusObject"]["StatusCode"], 1);
    let (status, answer) = post(b"not gzip at all");
    assert_eq!(status, 400, "{answer}");
}

/// `POST /VIID/Images` as xiezhihui98/GAT1400's `dto/ImageObject.java` and
/// nanguantong/gat-1400's `parseImageList` shape it (`ImageListObject.Image[]`, each
/// with `ImageInfo`, `Data` and the objects seen in it): every object becomes an event
/// with the image among its pictures; one status per image.
#[test]
fn images_upload_the_objects_seen_in_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    gate_in_catalog(a, "p");
    assert_eq!(register(a, "/VIID/System/Register", GATE, "p").0, 200);
    let scene = jpeg(77, 50_000);
    let image_id = format!("{GATE}0220210901080000000010");
    let info = json!({"ImageID": image_id, "InfoKind": 1, "ImageSource": "02", "EventSort": 2,
        "DeviceID": GATE, "FileFormat": "Jpeg", "ShotTime": "20210901080000", "Width": 1920, "Height": 1080});
    let vehicle = format!("{GATE}0220210901080000000010200001");
    let face = format!("{GATE}0220210901080000000010600001");
    let body = json!({"ImageListObject": {"Image": [
        {"ImageInfo": info, "Data": b64(&scene),
         "MotorVehicleList": {"MotorVehicleObject": [{"MotorVehicleID": vehicle, "DeviceID": GATE,
             "PassTime": "20210901080000", "PlateNo": "苏E8IMG1"}]},
         "FaceList": {"FaceObject": [{"FaceID": face, "DeviceID": GATE, "ShotTime": "20210901080000"}]}},
        {"ImageInfo": {"ImageID": "no-objects", "DeviceID": GATE}, "Data": b64(&scene)},
        {"ImageInfo": {"ImageID": "bad-object"},
         "MotorVehicleList": {"MotorVehicleObject": [{"MotorVehicleID": "x", "PassTime": "20210901080000"}]}}]}});
    let (status, _, answer) = viid(
        a,
        "POST",
        "/VIID/Images",
        &[("User-Identify", GATE.into())],
        &body.to_string(),
    );
    assert_eq!(status, 200, "{answer}");
    let s = answer["ResponseStatusListObject"]["ResponseStatusObject"]
        .as_array()
        .unwrap();
    assert_eq!(
        s.iter()
            .map(|x| x["StatusCode"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [0, 0, 8],
        "{answer}"
    );
    assert_eq!(s[0]["Id"], image_id.as_str());
    assert!(s[1]["StatusString"]
        .as_str()
        .unwrap()
        .contains("nothing to store"));
    let t = get(
        a,
        &format!(
            "/v1/trajectory?kind=vehicle&subject={}&{RANGE}",
            enc("苏E8IMG1")
        ),
    )
    .body;
    let images = t["events"][0]["images"].as_array().unwrap().clone();
    assert_eq!(images.len(), 1, "{t}");
    assert_eq!(images[0]["type"], "14");
    let (status, _, bytes) = image(a, images[0]["url"].as_str().unwrap(), None);
    assert!(
        status == 200 && bytes == scene,
        "the image comes back byte-identical"
    );
    let f = get(
        a,
        &format!("/v1/trajectory?kind=face&subject={face}&{RANGE}"),
    )
    .body;
    assert_eq!(
        f["events"][0]["images"][0]["url"], images[0]["url"],
        "stored once, shared: {f}"
    );
}

/// RFC 7616 on the wire: `algorithm=SHA-256` and `MD5-sess` answers are accepted, a
/// right answer to a nonce this server never issued (or let expire) is refused with
/// `stale=true` (RFC 7616 §3.3: retry with the new nonce, no new password asked), and a
/// wrong one without it.
#[test]
fn digests_of_rfc_7616_and_stale_nonces() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    gate_in_catalog(a, "pw");
    let path = "/VIID/System/Register";
    let body = format!("{{\"RegisterObject\":{{\"DeviceID\":\"{GATE}\"}}}}");
    let sha = |s: &str| sightline_server::gat1400::sha256_hex(s);
    let answer = |auth: String| viid(a, "POST", path, &[("Authorization", auth)], &body);
    let nonce = || nonce_of(&viid(a, "POST", path, &[], &body).1);

    let n = nonce();
    let ha1 = sha(&format!("{GATE}:Sightline:pw"));
    let resp = sha(&format!(
        "{ha1}:{n}:00000001:cn:auth:{}",
        sha(&format!("POST:{path}"))
    ));
    let (status, _, b) = answer(format!("Digest username=\"{GATE}\", realm=\"Sightline\", uri=\"{path}\", algorithm=SHA-256, nonce=\"{n}\", nc=00000001, cnonce=\"cn\", qop=auth, response=\"{resp}\""));
    assert_eq!(status, 200, "SHA-256: {b}");

    let n = nonce();
    let ha1 = md5_hex(&format!(
        "{}:{n}:cs",
        md5_hex(&format!("{GATE}:Sightline:pw"))
    ));
    let resp = md5_hex(&format!(
        "{ha1}:{n}:00000001:cs:auth:{}",
        md5_hex(&format!("POST:{path}"))
    ));
    let (status, _, b) = answer(format!("Digest username=\"{GATE}\", realm=\"Sightline\", uri=\"{path}\", algorithm=MD5-sess, nonce=\"{n}\", nc=00000001, cnonce=\"cs\", qop=auth, response=\"{resp}\""));
    assert_eq!(status, 200, "MD5-sess: {b}");

    let stale = "00000000000000000000000000000000";
    let auth = |password: &str| {
        let ha1 = md5_hex(&format!("{GATE}:Sightline:{password}"));
        let resp = md5_hex(&format!(
            "{ha1}:{stale}:00000001:c:auth:{}",
            md5_hex(&format!("POST:{path}"))
        ));
        format!("Digest username=\"{GATE}\", realm=\"Sightline\", uri=\"{path}\", nonce=\"{stale}\", nc=00000001, cnonce=\"c\", qop=auth, response=\"{resp}\"")
    };
    let (status, head, _) = answer(auth("pw"));
    assert_eq!(status, 401);
    assert!(head.contains("stale=true"), "{head}");
    let (status, head, _) = answer(auth("wrong"));
    assert_eq!(status, 401);
    assert!(!head.contains("stale=true"), "{head}");
}

/// A captured `Authorization` replayed on a new connection — the same nonce and `nc` —
/// is refused; the same nonce with a greater `nc` (as RFC 7616 clients count) is not.
#[test]
fn a_replayed_digest_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    gate_in_catalog(a, "pw");
    let path = "/VIID/System/Register";
    let body = format!("{{\"RegisterObject\":{{\"DeviceID\":\"{GATE}\"}}}}");
    let n = nonce_of(&viid(a, "POST", path, &[], &body).1);
    let auth = |nc: &str| {
        let resp = digest_response(GATE, "pw", &n, nc, "c", "POST", path);
        format!("Digest username=\"{GATE}\", realm=\"Sightline\", nonce=\"{n}\", uri=\"{path}\", qop=auth, nc={nc}, cnonce=\"c\", response=\"{resp}\"")
    };
    assert_eq!(
        viid(
            a,
            "POST",
            path,
            &[("Authorization", auth("00000001"))],
            &body
        )
        .0,
        200
    );
    let (status, _, answer) = viid(
        a,
        "POST",
        path,
        &[("Authorization", auth("00000001"))],
        &body,
    );
    assert_eq!(status, 401, "replayed: {answer}");
    assert!(answer["ResponseStatusObject"]["StatusString"]
        .as_str()
        .unwrap()
        .contains("replay"));
    assert_eq!(
        viid(
            a,
            "POST",
            path,
            &[("Authorization", auth("00000002"))],
            &body
        )
        .0,
        200
    );
}

/// Sends `request` from local address `from` (another loopback address stands for
/// another machine); the status line's code and the body.
pub(crate) fn send_from(from: &str, to: SocketAddr, request: &[u8]) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
        let mut s = socket.connect(to).await.unwrap();
        let _ = s.write_all(request).await;
        let mut raw = Vec::new();
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut raw)).await;
        assert!(read.is_ok(), "no answer within 10 s");
        let text = String::from_utf8_lossy(&raw).to_string();
        let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    })
}

/// Threat model of uploads without a digest: a registration binds its code to the
/// address that registered, so `User-Identify` alone is trusted only from there — a
/// forger elsewhere who knows a registered platform's code is refused (it could
/// upload for any device it names otherwise) — and a caller that is neither registered
/// nor showing a digest is refused from the headers alone: not a byte of its body is
/// read (an unauthenticated 15 MiB body, announced and never sent, is answered at once).
#[test]
fn uploads_without_a_digest_are_trusted_only_from_the_registered_address() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    gate_in_catalog(a, "pw");
    assert_eq!(register(a, "/VIID/System/Register", GATE, "pw").0, 200);
    let upload = json!({"MotorVehicleListObject": {"MotorVehicleObject": [
        {"MotorVehicleID": format!("{GATE}0220210901080000000010200001"), "DeviceID": GATE,
         "PassTime": "20210901080000", "PlateNo": "苏E0FORG"}]}})
    .to_string();
    let request = |extra: &str| {
        format!("POST /VIID/MotorVehicles HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}\
            Content-Length: {}\r\nConnection: close\r\n\r\n{upload}", upload.len())
    };
    let ident = format!("User-Identify: {GATE}\r\n");
    let (status, body) = send_from("127.0.0.2", a, request(&ident).as_bytes());
    assert_eq!(status, 401, "a forger at another address: {body}");
    let (status, body) = send_from("127.0.0.1", a, request(&ident).as_bytes());
    assert_eq!(status, 200, "the registered device: {body}");
    assert_eq!(
        body["ResponseStatusListObject"]["ResponseStatusObject"][0]["StatusCode"],
        0
    );
    // Not registered, no digest, a 15 MiB body announced and never sent: 401 at once.
    let head =
        "POST /VIID/MotorVehicles HTTP/1.1\r\nHost: x\r\nUser-Identify: 32050801011210000099\r\n\
        Content-Type: application/json\r\nContent-Length: 15728640\r\nConnection: close\r\n\r\n";
    let (status, _) = send_from("127.0.0.1", a, head.as_bytes());
    assert_eq!(status, 401);
}

/// A login uploads objects of devices of its own community, or of those a platform
/// relays into; an object naming another community's device is refused on its own
/// (the rest of the batch kept).
#[test]
fn gat1400_uploaders_name_devices_of_their_own_communities_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    let put = |target: &str, body: Value| put_json(a, target, &body);
    for c in ["3205080001", "3205090001"] {
        assert_eq!(
            put(&format!("/v1/communities/{c}"), json!({"name": c})).status,
            201
        );
    }
    let elsewhere = "32050901011210000009";
    let platform = "32050800005030000001";
    for (code, community, kind, extra) in [
        (
            GATE,
            "3205080001",
            "checkpoint_camera",
            json!({"gat1400": {"password": "p"}}),
        ),
        (OTHER_GATE, "3205080001", "checkpoint_camera", json!({})),
        (elsewhere, "3205090001", "checkpoint_camera", json!({})),
        (
            platform,
            "3205080001",
            "platform",
            json!({"relays": {"32050901": "3205090001"}, "gat1400": {"password": "p"}}),
        ),
    ] {
        let mut body = json!({"community": community, "kind": kind});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let r = put(&format!("/v1/devices/{code}"), body);
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let codes = |uploader: &str| {
        assert_eq!(register(a, "/VIID/System/Register", uploader, "p").0, 200);
        let objects: Vec<Value> = [(GATE, 1), (elsewhere, 2), (OTHER_GATE, 3)]
            .iter()
            .map(|(d, n)| {
                json!({"MotorVehicleID": format!("{d}0220210901080000000010200{n:03}"),
                "DeviceID": d, "PassTime": "20210901080000", "PlateNo": format!("苏E{n}CMY")})
            })
            .collect();
        let body = json!({"MotorVehicleListObject": {"MotorVehicleObject": objects}});
        let (status, _, answer) = viid(
            a,
            "POST",
            "/VIID/MotorVehicles",
            &[("User-Identify", uploader.to_string())],
            &body.to_string(),
        );
        assert_eq!(status, 200, "{answer}");
        let s = answer["ResponseStatusListObject"]["ResponseStatusObject"]
            .as_array()
            .unwrap()
            .clone();
        s.iter()
            .map(|x| {
                let text = x["StatusString"].as_str().unwrap().to_string();
                (x["StatusCode"].as_i64().unwrap(), text)
            })
            .collect::<Vec<_>>()
    };
    let camera = codes(GATE);
    assert_eq!(camera[0].0, 0, "{camera:?}");
    assert_eq!(camera[2].0, 0, "{camera:?}");
    assert_ne!(camera[1].0, 0, "another community's device: {camera:?}");
    assert!(camera[1].1.contains("community 3205090001"), "{camera:?}");
    let relaying = codes(platform);
    assert!(
        relaying.iter().all(|(c, _)| *c == 0),
        "a platform names the devices it relays: {relaying:?}"
    );
}

/// Pictures in the other shapes platforms send: `SubImageList` as the array of its
/// `SubImageInfoObject`s itself (`"SubImageList":[{…}]`, as nanguantong/gat-1400's
/// types serialize it), `Data` as unpadded and as URL-safe base64 (RFC 4648 §5), and
/// an image's `FaceList` as the array of its faces. Each picture is stored and served
/// byte-identical, the object as uploaded keeps its shape with the pictures by
/// reference (no `Data`); text that is not base64 still refuses its object, naming
/// the field.
#[test]
fn pictures_in_bare_arrays_and_unpadded_or_url_safe_base64_are_stored() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    gate_in_catalog(a, "p");
    assert_eq!(register(a, "/VIID/System/Register", GATE, "p").0, 200);
    let ident = [("User-Identify", GATE.to_string())];
    // Pictures whose base64 needs padding and holds `+` and `/` (so URL-safe differs).
    let picture = |seed: u64| -> Vec<u8> {
        let mut p = jpeg(seed, 3_000);
        while p.len().is_multiple_of(3)
            || !{
                let t = base64::engine::general_purpose::STANDARD.encode(&p);
                t.contains('+') || t.contains('/')
            }
        {
            p.push(0xFB);
        }
        p
    };
    let (plain, unpadded, url_safe, url_unpadded) =
        (picture(1), picture(2), picture(3), picture(4));
    let b64_with =
        |engine: &base64::engine::general_purpose::GeneralPurpose, p: &[u8]| engine.encode(p);
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let vehicle = |n: u32, plate: &str, subs: Value| {
        json!({"MotorVehicleID": format!("{GATE}02202109010800000000102{n:05}"), "DeviceID": GATE,
               "PassTime": "20210901080000", "PlateNo": plate, "SubImageList": subs})
    };
    let sent = [
        vehicle(
            1,
            "苏E9ARR1",
            json!([{"Type": "01", "Data": b64_with(&STANDARD, &plain)},
                   {"Type": "02", "Data": b64_with(&STANDARD_NO_PAD, &unpadded)}]),
        ),
        vehicle(
            2,
            "苏E9URL1",
            json!({"SubImageInfoObject": [{"Type": "01", "Data": b64_with(&URL_SAFE, &url_safe)},
                   {"Type": "02", "Data": b64_with(&URL_SAFE_NO_PAD, &url_unpadded)}]}),
        ),
        vehicle(
            3,
            "苏E9BAD1",
            json!([{"Type": "01", "Data": "not*base64!"}]),
        ),
    ];
    let body = json!({"MotorVehicleListObject": {"MotorVehicleObject": sent}});
    let (status, _, answer) = viid(a, "POST", "/VIID/MotorVehicles", &ident, &body.to_string());
    assert_eq!(status, 200, "{answer}");
    let s = &answer["ResponseStatusListObject"]["ResponseStatusObject"];
    assert_eq!(
        (&s[0]["StatusCode"], &s[1]["StatusCode"]),
        (&json!(0), &json!(0)),
        "{answer}"
    );
    assert_eq!(s[2]["StatusCode"], 8, "{answer}");
    let why = s[2]["StatusString"].as_str().unwrap();
    assert!(
        why.contains("SubImageInfoObject[0].Data is not base64"),
        "{why}"
    );

    for (plate, want, shape) in [
        ("苏E9ARR1", [&plain, &unpadded], "/SubImageList"),
        (
            "苏E9URL1",
            [&url_safe, &url_unpadded],
            "/SubImageList/SubImageInfoObject",
        ),
    ] {
        let t = get(
            a,
            &format!("/v1/trajectory?kind=vehicle&subject={}&{RANGE}", enc(plate)),
        )
        .body;
        let e = &t["events"][0];
        let images = e["images"].as_array().unwrap_or_else(|| panic!("{t}"));
        assert_eq!(images.len(), 2, "{t}");
        for (img, want) in images.iter().zip(want) {
            let (status, _, bytes) = image(a, img["url"].as_str().unwrap(), None);
            assert!(status == 200 && bytes == *want, "{plate}: {img}");
        }
        // The object as uploaded: its shape kept, each picture by reference, no Data.
        let (status, _, object) = image(a, e["object"].as_str().unwrap(), None);
        assert_eq!(status, 200);
        let object: Value = serde_json::from_slice(&object).unwrap();
        let subs = object
            .pointer(shape)
            .and_then(Value::as_array)
            .unwrap_or_else(|| panic!("{object}"));
        for (sub, img) in subs.iter().zip(images) {
            assert!(sub.get("Data").is_none(), "{object}");
            assert_eq!(sub["StoragePath"], img["url"], "{object}");
        }
    }

    // An image whose faces are given as the array itself.
    let face = format!("{GATE}0220210901080000000010600009");
    let scene = jpeg(9, 2_000);
    let images = json!({"ImageListObject": {"Image": [{
        "ImageInfo": {"ImageID": "img-9", "DeviceID": GATE, "ShotTime": "20210901080000"},
        "Data": b64(&scene),
        "FaceList": [{"FaceID": face, "DeviceID": GATE, "ShotTime": "20210901080000",
                      "SubImageList": [{"Type": "11", "Data": b64_with(&STANDARD_NO_PAD, &plain)}]}]}]}});
    let (status, _, answer) = viid(a, "POST", "/VIID/Images", &ident, &images.to_string());
    assert_eq!(status, 200, "{answer}");
    let s = &answer["ResponseStatusListObject"]["ResponseStatusObject"][0];
    assert_eq!(s["StatusCode"], 0, "{answer}");
    assert!(
        !s["StatusString"]
            .as_str()
            .unwrap()
            .contains("nothing to store"),
        "{answer}"
    );
    let f = get(
        a,
        &format!("/v1/trajectory?kind=face&subject={face}&{RANGE}"),
    )
    .body;
    let listed = f["events"][0]["images"]
        .as_array()
        .unwrap_or_else(|| panic!("{f}"));
    let types: Vec<&str> = listed.iter().filter_map(|i| i["type"].as_str()).collect();
    assert_eq!(types, ["11", "14"], "its own picture and the image: {f}");
    for (img, want) in listed.iter().zip([&plain, &scene]) {
        let (status, _, bytes) = image(a, img["url"].as_str().unwrap(), None);
        assert!(status == 200 && bytes == *want, "{img}");
    }
}

/// One id given to two different objects of one upload that the store keeps one of
/// (the same community and day: one event an id in a shard): the later is refused,
/// status 8 naming the id field, never answered 0 and dropped; the same object sent
/// twice is stored once and both are answered 0; one id on another day (another shard)
/// is another event, both stored (ids short of GA/T 1400's 48 characters are taken).
#[test]
fn two_objects_under_one_id_are_not_both_answered_stored() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    gate_in_catalog(a, "pw");
    assert_eq!(register(a, "/VIID/System/Register", GATE, "pw").0, 200);
    let vehicle = |id: &str, plate: &str, time: &str| json!({"MotorVehicleID": id, "DeviceID": GATE, "PassTime": time, "PlateNo": plate});
    let same = vehicle("7", "苏E0SAME", "20210901090000");
    let body = json!({"MotorVehicleListObject": {"MotorVehicleObject": [
        vehicle("1", "苏E0AAAA", "20210901080000"),
        vehicle("1", "苏E0BBBB", "20210901080500"),
        same.clone(),
        same,
        vehicle("1", "苏E0CCCC", "20210902080000"),
    ]}})
    .to_string();
    let ident = vec![("User-Identify", GATE.to_string())];
    let (status, _, answer) = viid(a, "POST", "/VIID/MotorVehicles", &ident, &body);
    assert_eq!(status, 200, "{answer}");
    let s = answer["ResponseStatusListObject"]["ResponseStatusObject"]
        .as_array()
        .unwrap();
    let codes: Vec<_> = s.iter().map(|s| s["StatusCode"].as_i64()).collect();
    assert_eq!(
        codes,
        [Some(0), Some(8), Some(0), Some(0), Some(0)],
        "{answer}"
    );
    let said = s[1]["StatusString"].as_str().unwrap();
    assert!(
        said.contains("MotorVehicleID") && said.contains("object 0"),
        "{said}"
    );
    let count = |plate: &str| {
        let t = get(
            a,
            &format!("/v1/trajectory?kind=vehicle&subject={}&{RANGE}", enc(plate)),
        );
        t.body["events"].as_array().map(Vec::len)
    };
    assert_eq!(count("苏E0AAAA"), Some(1));
    assert_eq!(
        count("苏E0BBBB"),
        Some(0),
        "the refused object is not stored"
    );
    assert_eq!(
        count("苏E0SAME"),
        Some(1),
        "the same object twice is stored once"
    );
    assert_eq!(
        count("苏E0CCCC"),
        Some(1),
        "another day's shard keeps its own"
    );
}
