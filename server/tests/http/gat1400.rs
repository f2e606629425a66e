//! GA/T 1400: devices register by digest, then push vehicles and faces.

use std::net::SocketAddr;

use serde_json::{json, Value};

use crate::support::{call, enc, get, send, start, GATE, OTHER_GATE, RANGE};

/// A GA/T 1400 request: status, headers (lower case), JSON body.
fn viid(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &str,
) -> (u16, String, Value) {
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let answer = send(
        addr,
        format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/VIID+JSON\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    (
        answer.status,
        answer.head.to_ascii_lowercase(),
        serde_json::from_slice(&answer.body).unwrap_or(Value::Null),
    )
}

fn md5_hex(s: &str) -> String {
    sightline_server::gat1400::md5_hex(s)
}

/// The digest handshake a device performs: ask, get a nonce, answer it.
fn register(addr: SocketAddr, path: &str, id: &str, password: &str) -> (u16, Value) {
    let body = format!("{{\"RegisterObject\":{{\"DeviceID\":\"{id}\"}}}}");
    let (status, head, _) = viid(addr, "POST", path, &[], &body);
    assert_eq!(status, 401, "{head}");
    let challenge = head
        .lines()
        .find_map(|l| l.strip_prefix("www-authenticate: "))
        .expect("a digest challenge");
    let nonce = challenge
        .split("nonce=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert!(challenge.contains("qop=\"auth\""), "{challenge}");
    let ha1 = md5_hex(&format!("{id}:Sightline:{password}"));
    let ha2 = md5_hex(&format!("POST:{path}"));
    let response = md5_hex(&format!("{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}"));
    let auth = format!(
        "Digest username=\"{id}\", realm=\"Sightline\", nonce=\"{nonce}\", uri=\"{path}\", \
         qop=auth, nc=00000001, cnonce=\"c0ffee\", response=\"{response}\", algorithm=MD5"
    );
    let (status, _, body) = viid(addr, "POST", path, &[("Authorization", auth)], &body);
    (status, body)
}

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
        200
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
        assert_eq!(r.status, 200, "{}", r.body);
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
    assert_eq!(codes, [0, 0, 8, 8]);
    assert!(statuses[2]["StatusString"]
        .as_str()
        .unwrap()
        .contains("not registered"));
    assert!(statuses[3]["StatusString"]
        .as_str()
        .unwrap()
        .contains("PlateNo"));
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

    // Unregistering ends the session.
    let (status, _) = register(a, "/VIID/System/UnRegister", platform, "platform-secret");
    assert_eq!(status, 200);
    let (status, _, _) = viid(
        a,
        "POST",
        "/VIID/Faces",
        &ident(platform),
        &faces.to_string(),
    );
    assert_eq!(status, 401);
    // A device registers for itself too.
    assert_eq!(
        register(a, "/VIID/System/Register", GATE, "gate-secret").0,
        200
    );
}
