//! The GA/T 1400 gateway on a cluster's ingest nodes: a camera registers on one
//! ingest node and uploads to the other (with `User-Identify` only, and with a digest
//! answering a nonce the first node issued), pictures and all; every answer is
//! `serve`'s, and the events, their pictures and the objects as uploaded come out of
//! a query node as they come out of a single-node `serve` fed the same requests.

use serde_json::{json, Value};
use sightline_cluster::gat1400::sha256_hex;
use sightline_testkit::gat1400::{authorization, b64, jpeg, nonce_of, register, viid};

use super::*;

/// A checkpoint camera of community 3205080001 and a face camera of 3205080002.
const CAMERA: &str = "32050801011210000001";
const FACE_CAMERA: &str = "32050802011210000002";
/// The devices (code, community, kind, direction, password), on both sides.
const DEVICES: [(&str, &str, &str, &str, &str); 2] = [
    (
        CAMERA,
        "3205080001",
        "checkpoint_camera",
        "in",
        "pw-vehicles",
    ),
    (FACE_CAMERA, "3205080002", "face_camera", "out", "pw-faces"),
];
const DAY: &str = "from=2025-12-01T00:00:00%2B08:00&to=2025-12-02T00:00:00%2B08:00";

/// Four vehicles with two pictures each, the fourth with a time that is no time.
fn vehicles() -> (String, Vec<Vec<u8>>) {
    let mut pictures = Vec::new();
    let objects: Vec<Value> = (0..4u64)
        .map(|i| {
            let time = match i {
                3 => "2025-12-01 08:03".to_string(),
                _ => format!("2025120108{i:02}00"),
            };
            let (whole, plate) = (jpeg(i, 20_000), jpeg(100 + i, 3_000));
            let sub = |bytes: &[u8], kind: &str| {
                json!({"ImageID": format!("{CAMERA}02{time}{i:05}{kind}"), "Type": kind,
                       "FileFormat": "Jpeg", "ShotTime": time, "Width": "1920",
                       "Height": "1080", "Data": b64(bytes)})
            };
            let o = json!({"MotorVehicleID": format!("{CAMERA}0220251201080{i}0000{i:03}02{i:05}"),
                "DeviceID": CAMERA, "PassTime": time, "PlateNo": format!("苏E7GA{i}"),
                "HasPlate": "1", "PlateColor": "2",
                "SubImageList": {"SubImageInfoObject": [sub(&whole, "01"), sub(&plate, "02")]}});
            pictures.extend([whole, plate]);
            o
        })
        .collect();
    let body = json!({"MotorVehicleListObject": {"MotorVehicleObject": objects}});
    (body.to_string(), pictures)
}

/// Two faces with one picture each.
fn faces() -> (String, Vec<Vec<u8>>) {
    let pictures: Vec<Vec<u8>> = (0..2).map(|i| jpeg(500 + i, 8_000)).collect();
    let objects: Vec<Value> = pictures
        .iter()
        .enumerate()
        .map(|(i, p)| {
            json!({"FaceID": format!("{FACE_CAMERA}0620251201090{i}00000{i:02}06{i:05}"),
                   "DeviceID": FACE_CAMERA, "ShotTime": format!("202512010900{i:02}"),
                   "ArchiveID": "P-GA-0001",
                   "SubImageList": {"SubImageInfoObject": {"Type": "11", "Data": b64(p)}}})
        })
        .collect();
    let body = json!({"FaceListObject": {"FaceObject": objects}});
    (body.to_string(), pictures)
}

/// One image (`/VIID/Images`) with the vehicle seen in it.
fn image() -> (String, Vec<u8>) {
    let picture = jpeg(900, 12_000);
    let body = json!({"ImageListObject": {"Image": [{
        "ImageInfo": {"ImageID": format!("{CAMERA}0220251201100000000901"), "DeviceID": CAMERA,
                      "ShotTime": "20251201100000", "FileFormat": "Jpeg"},
        "Data": b64(&picture),
        "MotorVehicleList": {"MotorVehicleObject": [{
            "MotorVehicleID": format!("{CAMERA}02202512011000000009010200901"),
            "DeviceID": CAMERA, "PassTime": "20251201100000", "PlateNo": "苏E7GA9"}]}}]}});
    (body.to_string(), picture)
}

/// An upload's statuses with their times taken out (they differ by the second).
fn statuses(answer: &Value) -> Vec<Value> {
    let list = answer["ResponseStatusListObject"]["ResponseStatusObject"]
        .as_array()
        .unwrap_or_else(|| panic!("not a status list: {answer}"));
    list.iter()
        .map(|s| {
            let mut s = s.clone();
            s.as_object_mut().unwrap().remove("LocalTime");
            s
        })
        .collect()
}

/// `GET target` with an optional API key: status, head (lower case), body.
fn fetch(addr: SocketAddr, target: &str, token: Option<&str>) -> (u16, String, Vec<u8>) {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let a = sightline_testkit::send(
        addr,
        format!("GET {target} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").as_bytes(),
    );
    (a.status, a.head.to_ascii_lowercase(), a.body)
}

/// A trajectory's events as comparable between a cluster and one store: event ids
/// out; each stored picture's id and URL replaced by the SHA-256 of the bytes `addr`
/// serves there (so equal answers mean equal bytes), checked against `uploaded`; the
/// object as uploaded fetched, its pictures' `StoragePath`s replaced alike.
fn comparable(
    addr: SocketAddr,
    token: Option<&str>,
    subject: (&str, &str),
    uploaded: &BTreeSet<String>,
) -> Vec<Value> {
    let target = trajectory(subject);
    let (status, _, body) = fetch(addr, &target, token);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let answer: Value = serde_json::from_slice(&body).unwrap();
    let served = |url: &str| {
        let (status, head, bytes) = fetch(addr, url, token);
        assert_eq!(status, 200, "{url}: {}", String::from_utf8_lossy(&bytes));
        assert!(
            head.contains("cache-control: private, max-age=31536000, immutable"),
            "{head}"
        );
        (head, bytes)
    };
    let mut events = answer["events"].as_array().unwrap().clone();
    for e in &mut events {
        e.as_object_mut().unwrap().remove("id");
        let mut by_url = BTreeMap::new();
        for image in e["images"].as_array_mut().unwrap() {
            let url = image["url"].as_str().unwrap().to_string();
            let (head, bytes) = served(&url);
            assert!(head.contains("content-type: image/jpeg"), "{head}");
            let sha = sha256_hex(&bytes);
            assert!(uploaded.contains(&sha), "{url} serves bytes never uploaded");
            assert_eq!(image["bytes"], bytes.len());
            image["id"] = sha.clone().into();
            image["url"] = sha.clone().into();
            by_url.insert(url, sha);
        }
        let (head, object) = served(e["object"].as_str().unwrap());
        assert!(head.contains("content-type: application/json"), "{head}");
        let mut object: Value = serde_json::from_slice(&object).unwrap();
        let subs = &mut object["SubImageList"]["SubImageInfoObject"];
        let subs = match subs {
            Value::Array(a) => a.iter_mut().collect::<Vec<_>>(),
            one => vec![one],
        };
        for sub in subs {
            assert!(
                sub.get("Data").is_none(),
                "the object keeps no picture bytes"
            );
            let path = sub["StoragePath"].as_str().unwrap().to_string();
            sub["StoragePath"] = by_url[&path].clone().into();
            if sub["ImageID"].as_str() == path.strip_prefix("/v1/images/") {
                sub["ImageID"] = "stored".into();
            }
        }
        e["object"] = object;
    }
    events
}

/// The day's trajectory of `(kind, subject)`.
fn trajectory((kind, subject): (&str, &str)) -> String {
    let subject = sightline_testkit::enc(subject);
    format!("/v1/trajectory?kind={kind}&subject={subject}&{DAY}")
}

/// Runs `sightline cluster gat1400 ARGS --config FILE`: its stdout, or its stderr as
/// the failure.
fn gat1400_cli(config: &std::path::Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args(["cluster", "gat1400"])
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

#[test]
fn cameras_register_on_one_ingest_node_and_upload_pictures_to_another() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::start();
    // Devices and credentials with the CLI, as `PUT /v1/devices` makes them on `serve`;
    // a community must be registered (here with the device, by `--community-name`).
    let cli = env.config_file("cli");
    let unregistered = gat1400_cli(&cli, &["add", CAMERA, "--community", "3205080001"]);
    assert!(unregistered.unwrap_err().contains("--community-name"));
    // Device `i` of `DEVICES`, its community named after its code.
    let add = |i: usize| {
        let (code, community, kind, direction, password) = DEVICES[i];
        let args = [
            "add",
            code,
            "--community",
            community,
            "--community-name",
            community,
            "--kind",
            kind,
            "--direction",
            direction,
            "--password",
            password,
        ];
        let added = gat1400_cli(&cli, &args).unwrap();
        let said = format!("\"community\":\"{community}\"");
        assert!(added.contains(&said), "{added}");
    };
    add(0);
    add(1);
    let bad = gat1400_cli(&cli, &["add", "123", "--community", "3205080001"]).unwrap_err();
    assert!(bad.contains("code"), "{bad}");
    let listed = gat1400_cli(&cli, &["list"]).unwrap();
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(
        !listed.contains("pw-") && !listed.contains("ha1"),
        "{listed}"
    );
    // A login taken away and given back; a device without one has none to take.
    gat1400_cli(&cli, &["remove", CAMERA]).unwrap();
    let listed = gat1400_cli(&cli, &["list"]).unwrap();
    assert!(
        listed.contains(&format!("\"code\":\"{CAMERA}\"")),
        "{listed}"
    );
    assert_eq!(listed.matches("\"gat1400\":true").count(), 1, "{listed}");
    assert!(gat1400_cli(&cli, &["remove", CAMERA]).is_err());
    add(0);
    // Keys for the query node: every community, and the face camera's only.
    let key = |role: &str, communities: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sightline"));
        cmd.args(["cluster", "keys", "create", "--role", role, "--config"])
            .arg(&cli);
        if let Some(c) = communities {
            cmd.args(["--communities", c]);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let (all, faces_only) = (
        key("investigate", None),
        key("investigate", Some("3205080002")),
    );
    let admin = key("admin", None);
    let faces_admin = key("admin", Some("3205080002"));

    let (_i1, a1) = env.ingest("ingest-1");
    let (_i2, a2) = env.ingest("ingest-2");
    let indexer = env.indexer("index-1", &[]);
    let (_q1, qa) = env.query_node("query-1");
    // The oracle: `serve` with the same devices and credentials.
    let single_dir = tempfile::tempdir().unwrap();
    let single = sightline_testkit::start(single_dir.path(), |_| {});
    let s = single.addr;
    for (code, community, kind, direction, password) in DEVICES {
        let put = |target: &str, body: Value| {
            let r = call(
                s,
                "PUT",
                target,
                "application/json",
                body.to_string().as_bytes(),
            );
            assert_eq!(r.status, 201, "created: {}", r.body);
        };
        put(
            &format!("/v1/communities/{community}"),
            json!({"name": community}),
        );
        put(
            &format!("/v1/devices/{code}"),
            json!({"community": community, "kind": kind, "direction": direction,
                   "gat1400": {"password": password}}),
        );
    }

    // Each ingest node read the gateway's tables before it listened.
    for a in [a1, a2] {
        let health = sightline_testkit::get(a, "/health");
        assert!(health.body["gat1400_age_ms"].is_u64(), "{}", health.body);
    }
    // A login given as on `serve` (`PUT /v1/devices/{code}` on a query node) lets its
    // device register on an ingest node once it has read the table.
    let third = "32050801011210000003";
    let body = json!({"community": "3205080001", "kind": "checkpoint_camera",
                      "gat1400": {"password": "pw-third"}})
    .to_string();
    let put = sightline_testkit::send(
        qa,
        format!(
            "PUT /v1/devices/{third} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(put.status, 201, "{}", String::from_utf8_lossy(&put.body));
    // A scoped admin is refused another community before its body is read (as on
    // `serve`): 403 at once for a body that never comes.
    let refused = sightline_testkit::send(
        qa,
        format!(
            "PUT /v1/communities/3205080001 HTTP/1.1\r\nHost: x\r\n\
             Authorization: Bearer {faces_admin}\r\nContent-Length: 100\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(
        refused.status,
        403,
        "{}",
        String::from_utf8_lossy(&refused.body)
    );
    let registered = wait_until(Duration::from_secs(10), || {
        register(a2, "/VIID/System/Register", third, "pw-third").0 == 200
    });
    assert!(
        registered,
        "a login put on a query node never reached the ingest node"
    );
    // A wrong password is refused by every node, with a fresh challenge.
    for a in [a1, a2] {
        let (status, body) = register(a, "/VIID/System/Register", CAMERA, "wrong");
        assert_eq!(status, 401, "{body}");
    }
    // The camera registers on ingest node 1 (and on serve) …
    for a in [a1, s] {
        let (status, body) = register(a, "/VIID/System/Register", CAMERA, "pw-vehicles");
        assert_eq!(
            (status, &body["ResponseStatusObject"]["StatusCode"]),
            (200, &json!(0)),
            "{body}"
        );
    }
    // A watchlist made on a query node (and on serve), which the upload matches.
    let watch = json!({"name": "gateway", "reason": "stolen vehicle",
                       "entries": [{"kind": "vehicle", "pattern": "苏E7GA*"}]})
    .to_string();
    let (status, made) = super::ask_as(qa, Some(&admin), "POST", "/v1/watchlists", &watch);
    assert_eq!(status, 201, "{made}");
    assert_eq!(
        super::ask_as(s, None, "POST", "/v1/watchlists", &watch).0,
        201
    );
    // Read by the ingest nodes within their renewal (500 ms here).
    std::thread::sleep(Duration::from_millis(1500));
    // … and uploads to ingest node 2 with `User-Identify` only, as cameras do.
    let ident = vec![("User-Identify", CAMERA.to_string())];
    let (body, mut pictures) = vehicles();
    let (status, _, cluster) = viid(a2, "POST", "/VIID/MotorVehicles", &ident, &body);
    assert_eq!(status, 200, "{cluster}");
    let (status, _, single_answer) = viid(s, "POST", "/VIID/MotorVehicles", &ident, &body);
    assert_eq!(status, 200, "{single_answer}");
    // The stored vehicles raised serve's alerts, written before the upload's answer.
    let alerts = |addr: SocketAddr, token: Option<&str>| -> Vec<Value> {
        let (status, page) = super::ask_as(addr, token, "GET", "/v1/alerts", "");
        assert_eq!(status, 200, "{page}");
        page["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                let e = &a["event"];
                json!([
                    a["name"],
                    a["reason"],
                    a["community"],
                    e["subject"],
                    e["ts"],
                    e["kind"],
                    e["device"],
                    e["direction"]
                ])
            })
            .collect()
    };
    let raised = alerts(qa, Some(&all));
    assert_eq!(raised.len(), 3, "{raised:?}");
    assert_eq!(raised, alerts(s, None), "serve's alerts");
    let answered = statuses(&cluster);
    assert_eq!(
        answered,
        statuses(&single_answer),
        "serve's answer, object by object"
    );
    let codes: Vec<&Value> = answered.iter().map(|s| &s["StatusCode"]).collect();
    assert_eq!(
        codes,
        [&json!(0), &json!(0), &json!(0), &json!(8)],
        "{cluster}"
    );
    assert!(answered[3]["StatusString"]
        .as_str()
        .unwrap()
        .contains("is not a time"));
    // An ingest node whose object storage refuses it (a wrong secret key) refuses the
    // upload whole, 503 with status 4, and publishes none of its events.
    let (_refusing, a3) = {
        let config = env.config_file("ingest-3");
        let text = std::fs::read_to_string(&config).unwrap();
        let wrong = format!("secret_key = \"{}\"", env.s3.secret_key);
        std::fs::write(
            &config,
            text.replace(&wrong, "secret_key = \"not-the-key\""),
        )
        .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sightline"));
        cmd.args(["cluster", "ingest", "--config"]).arg(&config);
        let (child, addr) = sightline_testkit::spawn_listening(&mut cmd);
        let stderr = env.dir.path().join("ingest-3.stderr");
        let name = "ingest-3".to_string();
        (
            Node {
                child,
                name,
                stderr,
            },
            addr,
        )
    };
    let lost = json!({"MotorVehicleListObject": {"MotorVehicleObject": [{
        "MotorVehicleID": format!("{CAMERA}02202512010900000099020099"), "DeviceID": CAMERA,
        "PassTime": "20251201090000", "PlateNo": "苏E7GAX",
        "SubImageList": {"SubImageInfoObject": [{"Type": "01", "Data": b64(&jpeg(99, 500))}]}}]}});
    let (status, _, refused) = viid(a3, "POST", "/VIID/MotorVehicles", &ident, &lost.to_string());
    assert_eq!(status, 503, "{refused}");
    assert_eq!(
        refused["ResponseStatusObject"]["StatusCode"], 3,
        "{refused}"
    );
    // Another caller's `User-Identify` is not registered anywhere.
    let other = vec![("User-Identify", FACE_CAMERA.to_string())];
    let (status, head, _) = viid(a1, "POST", "/VIID/Faces", &other, &faces().0);
    assert_eq!(status, 401);
    assert!(head.contains("www-authenticate: digest"), "{head}");

    // The face camera answers, on ingest node 2, the challenge ingest node 1 sent.
    let (faces_body, face_pictures) = faces();
    // The `Authorization` answering a challenge `a` sent to an upload of faces.
    let answering = |a: SocketAddr| {
        let nonce = nonce_of(&viid(a, "POST", "/VIID/Faces", &[], "{}").1);
        let path = "/VIID/Faces";
        authorization(FACE_CAMERA, "pw-faces", &nonce, "00000001", "POST", path)
    };
    let signed = vec![("Authorization", answering(a1))];
    let (status, _, cluster) = viid(a2, "POST", "/VIID/Faces", &signed, &faces_body);
    assert_eq!(status, 200, "{cluster}");
    // The same header again is a replay.
    let (status, _, replayed) = viid(a2, "POST", "/VIID/Faces", &signed, &faces_body);
    assert_eq!(status, 401, "{replayed}");
    let signed = vec![("Authorization", answering(s))];
    let (status, _, single_answer) = viid(s, "POST", "/VIID/Faces", &signed, &faces_body);
    assert_eq!(status, 200, "{single_answer}");
    assert_eq!(statuses(&cluster), statuses(&single_answer));
    assert!(
        statuses(&cluster).iter().all(|s| s["StatusCode"] == 0),
        "{cluster}"
    );
    // The digest registered the face camera: `User-Identify` alone works now, on
    // the other node too; keepalives and time as `serve` answers them.
    let (status, _, kept) = viid(a1, "POST", "/VIID/System/Keepalive", &other, "{}");
    assert_eq!(
        (status, &kept["ResponseStatusObject"]["StatusCode"]),
        (200, &json!(0)),
        "{kept}"
    );
    let (status, _, time) = viid(a2, "GET", "/VIID/System/Time", &[], "");
    assert_eq!(status, 200);
    assert_eq!(
        time["SystemTimeObject"]["VIIDServerID"],
        "32050000005030000001"
    );
    // A method a path does not take: 405 with `Allow` and a status object, as `serve`
    // answers it; OPTIONS: 204 with `Allow`; another coding than gzip: 415 saying so.
    for on in [a2, s] {
        // (`serve` answers GET there too: its object queries, not the cluster's.)
        let (status, head, refused) = viid(on, "DELETE", "/VIID/MotorVehicles", &[], "");
        assert_eq!(status, 405, "{head}");
        let allow = head
            .to_ascii_lowercase()
            .lines()
            .find(|l| l.starts_with("allow:"))
            .map(str::to_string)
            .unwrap_or_default();
        assert!(allow.contains("post"), "{head}");
        assert_eq!(refused["ResponseStatusObject"]["StatusCode"], json!(4));
        let (status, head, _) = viid(on, "OPTIONS", "/VIID/System/Time", &[], "");
        assert_eq!(status, 204, "{head}");
        assert!(head.to_ascii_lowercase().contains("allow: get"), "{head}");
        let mut coded = ident.clone();
        coded.push(("Content-Encoding", "br".to_string()));
        let (status, head, _) = viid(on, "POST", "/VIID/MotorVehicles", &coded, &body);
        assert_eq!(status, 415, "{head}");
        assert!(
            head.to_ascii_lowercase().contains("accept-encoding: gzip"),
            "{head}"
        );
    }
    pictures.extend(face_pictures);
    // An image and the vehicle seen in it, as `serve` stores it.
    let (image_body, scene) = image();
    let (status, _, cluster) = viid(a2, "POST", "/VIID/Images", &ident, &image_body);
    assert_eq!(status, 200, "{cluster}");
    let (status, _, single_answer) = viid(s, "POST", "/VIID/Images", &ident, &image_body);
    assert_eq!(status, 200, "{single_answer}");
    assert_eq!(statuses(&cluster), statuses(&single_answer));
    assert_eq!(statuses(&cluster)[0]["StatusCode"], 0, "{cluster}");
    pictures.push(scene);
    // A person, its body gzipped (as some platforms send 2 KB and more).
    let person = jpeg(700, 6_000);
    let persons = json!({"PersonListObject": {"PersonObject": [{
        "PersonID": format!("{FACE_CAMERA}0120251201110000000701010070100"),
        "DeviceID": FACE_CAMERA, "ShotTime": "20251201110000", "ArchiveID": "P-GA-0002",
        "SubImageList": {"SubImageInfoObject": [{"Type": "10", "Data": b64(&person)}]}}]}});
    let gzipped = {
        use std::io::Write;
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(persons.to_string().as_bytes()).unwrap();
        z.finish().unwrap()
    };
    let send_gzipped = |a: SocketAddr| {
        let head = format!(
            "POST /VIID/Persons HTTP/1.1\r\nHost: x\r\nUser-Identify: {FACE_CAMERA}\r\n\
             Content-Encoding: gzip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            gzipped.len()
        );
        let answer = sightline_testkit::send(a, &[head.as_bytes(), &gzipped].concat());
        let body: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        assert_eq!(answer.status, 200, "{body}");
        statuses(&body)
    };
    let cluster = send_gzipped(a2);
    assert_eq!(cluster, send_gzipped(s));
    assert_eq!(cluster[0]["StatusCode"], 0, "{cluster:?}");
    pictures.push(person);
    // The refused vehicle's pictures were never stored; every other one was.
    let uploaded: BTreeSet<String> = pictures
        .iter()
        .enumerate()
        .filter(|(i, _)| !(6..8).contains(i))
        .map(|(_, p)| sha256_hex(p))
        .collect();

    // The query node answers as `serve` does, pictures and objects byte for byte.
    let vehicle = |plate| ("vehicle", plate);
    let face = ("face", "P-GA-0001");
    for subject in [
        vehicle("苏E7GA0"),
        vehicle("苏E7GA1"),
        vehicle("苏E7GA2"),
        vehicle("苏E7GA9"),
        face,
        ("person", "P-GA-0002"),
    ] {
        let want = comparable(s, None, subject, &uploaded);
        assert!(!want.is_empty(), "{subject:?}");
        let mut got = Vec::new();
        let caught_up = wait_until(COMMITTED, || {
            let (status, _, body) = fetch(qa, &trajectory(subject), Some(&all));
            let n = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["events"].as_array().map(Vec::len));
            status == 200 && n == Some(want.len())
        });
        assert!(
            caught_up,
            "{subject:?}: the query node never answered {} events",
            want.len()
        );
        got.extend(comparable(qa, Some(&all), subject, &uploaded));
        assert_eq!(got, want, "{subject:?}");
    }
    assert!(comparable(qa, Some(&all), vehicle("苏E7GA3"), &uploaded).is_empty());
    // Nothing of the refused upload was published: the events uploaded after it (the
    // image, same community, same partition, so later in its log) are answered.
    assert!(comparable(qa, Some(&all), vehicle("苏E7GAX"), &uploaded).is_empty());

    // A picture is visible only to keys that see its event's community.
    let images_of = |subject| {
        let body: Value =
            serde_json::from_slice(&fetch(qa, &trajectory(subject), Some(&all)).2).unwrap();
        body["events"][0]["images"][0]["url"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (vehicle_image, face_image) = (images_of(vehicle("苏E7GA0")), images_of(face));
    assert_eq!(fetch(qa, &vehicle_image, Some(&faces_only)).0, 404);
    assert_eq!(fetch(qa, &face_image, Some(&faces_only)).0, 200);
    assert_eq!(fetch(qa, &face_image, None).0, 401);
    let unknown = format!("/v1/images/{}.{}", "33", "0".repeat(64));
    assert_eq!(fetch(qa, &unknown, Some(&all)).0, 404);

    // The janitor leaves the pictures alone however old (indexer stopped first: its
    // uploads in flight would go too).
    drop(indexer);
    let cfg = env.config();
    let objects = Objects::new(&cfg.s3).unwrap();
    let meta = env.meta();
    let now = sightline_server::now_ms();
    let removed = env
        .rt
        .block_on(janitor::sweep(&meta, &objects, now + 3_600_000, 0))
        .unwrap();
    assert!(
        removed.iter().all(|k| !k.starts_with("gat1400/")),
        "{removed:?}"
    );
    let (status, _, bytes) = fetch(qa, &vehicle_image, Some(&all));
    assert_eq!(status, 200);
    assert!(uploaded.contains(&sha256_hex(&bytes)));
}

/// `sightline cluster gat1400 add CODE` with `password`, its community registered.
fn add_login(cli: &std::path::Path, code: &str, community: &str, password: &str) {
    let args = [
        "add",
        code,
        "--community",
        community,
        "--community-name",
        community,
        "--kind",
        "checkpoint_camera",
        "--password",
        password,
    ];
    gat1400_cli(cli, &args).unwrap();
}

#[test]
fn a_digest_answer_counts_once_across_ingest_nodes_and_for_its_own_path_only() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::start();
    let cli = env.config_file("cli");
    add_login(&cli, CAMERA, "3205080001", "pw-vehicles");
    let (_i1, a1) = env.ingest("ingest-1");
    let (_i2, a2) = env.ingest("ingest-2");
    let path = "/VIID/System/Register";
    let body = json!({"RegisterObject": {"DeviceID": CAMERA}}).to_string();
    let nonce = nonce_of(&viid(a1, "POST", path, &[], &body).1);
    let signed = vec![(
        "Authorization",
        authorization(CAMERA, "pw-vehicles", &nonce, "00000001", "POST", path),
    )];
    let (status, _, answer) = viid(a1, "POST", path, &signed, &body);
    assert_eq!(status, 200, "{answer}");
    // Sniffed and sent again to the other node, within the nonce's life: a replay.
    let (status, _, replayed) = viid(a2, "POST", path, &signed, &body);
    assert_eq!(status, 401, "{replayed}");
    assert!(replayed.to_string().contains("replay"), "{replayed}");
    // An answer made for Register, sent (unused) to Keepalive: not its path.
    let nonce = nonce_of(&viid(a2, "POST", path, &[], &body).1);
    let for_register = vec![(
        "Authorization",
        authorization(CAMERA, "pw-vehicles", &nonce, "00000001", "POST", path),
    )];
    // RFC 7616 §3.4.6 / RFC 2617 §3.2.2.5: a `uri` other than the request's is a
    // bad request (400), no longer 401.
    let (status, _, moved) = viid(a2, "POST", "/VIID/System/Keepalive", &for_register, "{}");
    assert_eq!(status, 400, "{moved}");
    // The use is in the table every node asks, and the table is swept of nothing
    // younger than every nonce's life.
    let used = env.pg.psql("SELECT count(*) FROM gat1400_nonces");
    assert_eq!(used, "1", "only the accepted answer is recorded");
    // The registered camera uploads for itself, not for a device of another
    // community: that object is refused on its own, the rest stored.
    add_login(&cli, FACE_CAMERA, "3205080002", "pw-faces");
    std::thread::sleep(Duration::from_millis(1_500)); // read by the nodes
    let objects: Vec<Value> = [(CAMERA, 1), (FACE_CAMERA, 2)]
        .iter()
        .map(|(d, n)| {
            json!({"MotorVehicleID": format!("{d}0220251201080000000010200{n:03}"),
                   "DeviceID": d, "PassTime": "20251201080000", "PlateNo": format!("苏E{n}CMY")})
        })
        .collect();
    let body = json!({"MotorVehicleListObject": {"MotorVehicleObject": objects}});
    let ident = vec![("User-Identify", CAMERA.to_string())];
    let (status, _, answer) = viid(a2, "POST", "/VIID/MotorVehicles", &ident, &body.to_string());
    assert_eq!(status, 200, "{answer}");
    let got = statuses(&answer);
    assert_eq!(got[0]["StatusCode"], 0, "{answer}");
    assert_eq!(got[1]["StatusCode"], 8, "{answer}");
    let why = got[1]["StatusString"].as_str().unwrap();
    assert!(why.contains("community 3205080002"), "{why}");
}

/// What a stream answers within `wait`: its status line, or `None` (nothing, or the
/// connection closed without a word).
fn status_within(stream: &mut std::net::TcpStream, wait: Duration) -> Option<String> {
    use std::io::Read;
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 512];
    match stream.read(&mut buf) {
        Ok(n) if n > 0 => Some(
            String::from_utf8_lossy(&buf[..n])
                .lines()
                .next()
                .unwrap_or("")
                .to_string(),
        ),
        _ => None,
    }
}

#[test]
fn gat1400_callers_hold_their_share_and_no_more_time_than_serve_gives() {
    use std::io::Write;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::start();
    let cli = env.config_file("cli");
    add_login(&cli, CAMERA, "3205080001", "pw-vehicles");
    let (_i1, a1) = env.ingest("ingest-1");
    let (status, body) = register(a1, "/VIID/System/Register", CAMERA, "pw-vehicles");
    assert_eq!(status, 200, "{body}");
    // A digest the challenge did not offer (`qop=auth-int`, which only the body could
    // check) proves nothing: refused from the head, its 100,000 bytes never read.
    let mut unproven = std::net::TcpStream::connect(a1).unwrap();
    unproven
        .write_all(
            b"POST /VIID/Faces HTTP/1.1\r\nHost: x\r\n\
              Authorization: Digest username=\"x\", realm=\"Sightline\", uri=\"/VIID/Faces\", \
              qop=auth-int, nc=00000001, cnonce=\"c\", nonce=\"n\", response=\"0\"\r\n\
              Content-Length: 100000\r\n\r\n{",
        )
        .unwrap();
    let answer = status_within(&mut unproven, Duration::from_secs(3));
    assert!(
        answer.as_deref().is_some_and(|s| s.contains(" 401")),
        "{answer:?}"
    );
    // A connection whose head never ends is cut off (serve's header timeout).
    let mut idle = std::net::TcpStream::connect(a1).unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    let started = Instant::now();
    // Uploads of a registered caller (`User-Identify` from its address) whose bodies
    // never come hold that caller's share of the slots, and no more.
    let head = format!(
        "POST /VIID/Faces HTTP/1.1\r\nHost: x\r\nUser-Identify: {CAMERA}\r\n\
         Content-Length: 100000\r\n\r\n{{"
    );
    let mut held: Vec<std::net::TcpStream> = (0..8)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(a1).unwrap();
            s.write_all(head.as_bytes()).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut ninth = std::net::TcpStream::connect(a1).unwrap();
    ninth.write_all(head.as_bytes()).unwrap();
    let answer = status_within(&mut ninth, Duration::from_secs(3));
    assert!(
        answer.as_deref().is_some_and(|s| s.contains(" 429")),
        "{answer:?}"
    );
    // A body slower than serve's minimum rate is answered 408 (after its grace).
    let answer = status_within(&mut held[0], Duration::from_secs(15));
    assert!(
        answer.as_deref().is_some_and(|s| s.contains(" 408")),
        "{answer:?}"
    );
    let left = Duration::from_secs(13).saturating_sub(started.elapsed());
    idle.set_read_timeout(Some(left.max(Duration::from_secs(1))))
        .unwrap();
    let mut buf = [0u8; 64];
    let ended = match std::io::Read::read(&mut idle, &mut buf) {
        Ok(_) => true, // closed (0), or answered before closing
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    };
    assert!(ended, "a connection without a head was kept open");
}

#[test]
fn a_removed_login_is_not_brought_back_by_a_node_that_still_remembers_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::start();
    let cli = env.config_file("cli");
    add_login(&cli, CAMERA, "3205080001", "pw-vehicles");
    let (_i1, a1) = env.ingest("ingest-1");
    let (_i2, a2) = env.ingest("ingest-2");
    let (status, body) = register(a1, "/VIID/System/Register", CAMERA, "pw-vehicles");
    assert_eq!(status, 200, "{body}");
    let ident = vec![("User-Identify", CAMERA.to_string())];
    let (status, _, kept) = viid(a2, "POST", "/VIID/System/Keepalive", &ident, "{}");
    assert_eq!(status, 200, "{kept}");
    // The registration is older than a node renews at (a minute), and node 2 has read
    // it so; then the login is removed.
    env.pg.psql(&format!(
        "UPDATE gat1400_registrations SET renewed_at = now() - interval '2 minutes' \
         WHERE code = '{CAMERA}'"
    ));
    std::thread::sleep(Duration::from_millis(1_200));
    gat1400_cli(&cli, &["remove", CAMERA]).unwrap();
    // The camera keeps talking to node 2 while (and after) it reads the tables again.
    let until = Instant::now() + Duration::from_millis(1_500);
    while Instant::now() < until {
        viid(a2, "POST", "/VIID/System/Keepalive", &ident, "{}");
    }
    std::thread::sleep(Duration::from_millis(1_000));
    let rows = env.pg.psql(&format!(
        "SELECT count(*) FROM gat1400_registrations WHERE code = '{CAMERA}'"
    ));
    assert_eq!(rows, "0", "a renewal made the removed registration again");
    for a in [a1, a2] {
        let (status, _, refused) = viid(a, "POST", "/VIID/System/Keepalive", &ident, "{}");
        assert_eq!(status, 401, "{refused}");
    }
}

#[test]
fn gat1400_tables_made_before_take_the_foreign_key_and_the_relays_column() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::start();
    // The tables as the first release of the gateway made them, with a registration
    // whose login was removed, and a catalog from before platforms' relays.
    env.pg.psql(&format!(
        "CREATE TABLE communities (code text PRIMARY KEY, name text NOT NULL,
            district text NOT NULL DEFAULT '');
         CREATE TABLE devices (code text PRIMARY KEY,
            community text NOT NULL REFERENCES communities (code),
            device_kind text NOT NULL,
            direction text NOT NULL CHECK (direction IN ('in', 'out', 'unknown')),
            name text NOT NULL DEFAULT '');
         INSERT INTO communities VALUES ('3205080001', 'North', '');
         INSERT INTO devices VALUES ('{PLATFORM}', '3205080001', 'platform', 'unknown', '');"
    ));
    env.pg.psql(&format!(
        "CREATE TABLE gat1400_credentials (code text PRIMARY KEY, username text NOT NULL,
            realm text NOT NULL, ha1 text NOT NULL, ha1_sha256 text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now());
         CREATE TABLE gat1400_registrations (code text PRIMARY KEY, address text,
            renewed_at timestamptz NOT NULL);
         INSERT INTO gat1400_credentials VALUES ('{CAMERA}', 'u', 'Sightline', 'a', 'b');
         INSERT INTO gat1400_registrations VALUES ('{CAMERA}', '10.0.0.1', now()),
                                                  ('{FACE_CAMERA}', '10.0.0.2', now());"
    ));
    let mut meta = env.meta();
    for _ in 0..2 {
        // Twice: the second start finds the key and changes nothing.
        env.rt.block_on(meta.create(PARTITIONS)).unwrap();
    }
    let codes = env
        .pg
        .psql("SELECT code FROM gat1400_registrations ORDER BY code");
    assert_eq!(codes, CAMERA, "the orphan went, the other stayed");
    // The devices have the relays column, none relaying; relays are kept whole, and a
    // device put again without them keeps them.
    let rt = &env.rt;
    assert!(rt.block_on(meta.relays(PLATFORM)).unwrap().is_empty());
    let mut platform = rt.block_on(meta.device(PLATFORM)).unwrap().unwrap();
    let relays: BTreeMap<String, String> =
        [("320508020".to_string(), "3205080001".to_string())].into();
    rt.block_on(meta.put_device(&platform, Some(&relays)))
        .unwrap();
    platform.name = "renamed".into();
    rt.block_on(meta.put_device(&platform, None)).unwrap();
    let (all, unreadable) = rt.block_on(meta.all_relays()).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[PLATFORM], relays);
    assert!(unreadable.is_empty());
    // An empty map clears them (NULL).
    rt.block_on(meta.put_device(&platform, Some(&BTreeMap::new())))
        .unwrap();
    assert!(rt.block_on(meta.all_relays()).unwrap().0.is_empty());
    rt.block_on(meta.put_device(&platform, Some(&relays)))
        .unwrap();
    let kinds = env.pg.psql(
        "SELECT count(*) FROM information_schema.check_constraints WHERE check_clause LIKE '%jsonb_typeof(relays)%'",
    );
    assert_eq!(kinds, "1", "relays are an object, checked by the table");
    // Renewing never makes one; registering needs a login; removing a login takes its
    // registration with it.
    assert!(!rt
        .block_on(meta.gat1400_renew(FACE_CAMERA, Some("10.0.0.2")))
        .unwrap());
    assert!(!rt
        .block_on(meta.gat1400_renew(CAMERA, Some("10.0.0.9")))
        .unwrap());
    assert!(rt
        .block_on(meta.gat1400_renew(CAMERA, Some("10.0.0.1")))
        .unwrap());
    assert!(!rt
        .block_on(meta.gat1400_register(FACE_CAMERA, Some("10.0.0.2")))
        .unwrap());
    assert!(rt.block_on(meta.remove_gat1400_login(CAMERA)).unwrap());
    let left = env.pg.psql("SELECT count(*) FROM gat1400_registrations");
    assert_eq!(left, "0");
    // A nonce's use counts once, and is swept only once past every nonce's life.
    assert!(rt.block_on(meta.gat1400_nonce_first_use("n", 1)).unwrap());
    assert!(!rt.block_on(meta.gat1400_nonce_first_use("n", 1)).unwrap());
    assert!(rt.block_on(meta.gat1400_nonce_first_use("n", 2)).unwrap());
    assert_eq!(rt.block_on(meta.gat1400_sweep_nonces(600_000)).unwrap(), 0);
    assert_eq!(rt.block_on(meta.gat1400_sweep_nonces(-1_000)).unwrap(), 2);
}

/// A platform of community 3205080001 relaying cameras of 3205080002 (code prefix
/// `320508020`), not of 3205080003.
const PLATFORM: &str = "32050800002000000001";
const RELAYED: &str = "32050802011210000002";
const RELAYED_FACE: &str = "32050802011320000005";
const NOT_RELAYED: &str = "32050803011210000003";
/// Cameras the catalog does not know, which the platform's upload catalogues: one its
/// relays map to 3205080002, one they do not (the platform's own community).
const UNKNOWN_RELAYED: &str = "32050802011210000077";
const UNKNOWN_OWN: &str = "32050801011210000078";

#[test]
fn a_relaying_platform_uploads_and_lists_through_ingest_nodes_as_on_serve() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::start();
    let cli = env.config_file("cli");
    let admin = {
        let out = Command::new(env!("CARGO_BIN_EXE_sightline"))
            .args(["cluster", "keys", "create", "--role", "admin", "--config"])
            .arg(&cli)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let (_i1, a1) = env.ingest("ingest-1");
    let (_q1, qa) = env.query_node("query-1");
    let single_dir = tempfile::tempdir().unwrap();
    let mut single = sightline_testkit::start(single_dir.path(), |_| {});
    let s = single.addr;
    // The same catalog on both, through `PUT` (on a query node with an admin key):
    // every answer `serve`'s, refusals included.
    let both = |target: &str, body: Value| -> Answered {
        let body = body.to_string();
        let cluster = super::ask_as(qa, Some(&admin), "PUT", target, &body);
        let single = super::ask_as(s, None, "PUT", target, &body);
        assert_eq!(cluster, single, "PUT {target} {body}");
        cluster
    };
    for (code, name) in [
        ("3205080001", "North"),
        ("3205080002", "South"),
        ("3205080003", "West"),
    ] {
        let (status, _) = both(&format!("/v1/communities/{code}"), json!({"name": name}));
        assert_eq!(status, 201);
    }
    let platform = |relays: Value| {
        json!({"community": "3205080001", "kind": "platform", "name": "district platform",
               "gat1400": {"password": "pw-platform"}, "relays": relays})
    };
    // Relays checked as `serve` checks them, nothing written when refused.
    let (status, why) = both(
        &format!("/v1/devices/{PLATFORM}"),
        platform(json!({"32x": "3205080002"})),
    );
    assert_eq!(status, 400, "{why}");
    let (status, why) = both(
        &format!("/v1/devices/{PLATFORM}"),
        platform(json!({"320508020": "9999999999"})),
    );
    assert_eq!(status, 400, "{why}");
    let (status, why) = both(
        &format!("/v1/devices/{CAMERA}"),
        json!({"community": "3205080001", "kind": "checkpoint_camera",
               "relays": {"320508020": "3205080002"}}),
    );
    assert_eq!(status, 400, "{why}");
    assert_eq!(
        env.pg
            .psql("SELECT count(*) FROM devices WHERE relays IS NOT NULL"),
        "0"
    );
    let (status, put) = both(
        &format!("/v1/devices/{PLATFORM}"),
        platform(json!({"320508020": "3205080002"})),
    );
    // Created: the refusals above wrote nothing.
    assert_eq!(status, 201, "{put}");
    assert_eq!(put["relays"], json!({"320508020": "3205080002"}), "{put}");
    // A `PUT` without relays keeps them.
    let mut again = platform(Value::Null);
    again.as_object_mut().unwrap().remove("relays");
    let (status, put) = both(&format!("/v1/devices/{PLATFORM}"), again);
    assert_eq!(
        (status, &put["relays"]),
        (200, &json!({"320508020": "3205080002"}))
    );
    for (code, community, kind, direction, name) in [
        (
            CAMERA,
            "3205080001",
            "checkpoint_camera",
            "in",
            "north gate",
        ),
        (RELAYED, "3205080002", "checkpoint_camera", "out", ""),
        (
            RELAYED_FACE,
            "3205080002",
            "face_camera",
            "unknown",
            "lobby",
        ),
        (NOT_RELAYED, "3205080003", "checkpoint_camera", "in", ""),
    ] {
        let mut body = json!({"community": community, "kind": kind, "direction": direction,
                              "name": name});
        if code == CAMERA {
            body["gat1400"] = json!({"password": "pw-vehicles"});
        }
        let (status, put) = both(&format!("/v1/devices/{code}"), body);
        assert_eq!(status, 201, "{put}");
    }

    // The platform and the camera register once the ingest node has read the tables
    // (and once more: every device put since is read).
    let registered = wait_until(Duration::from_secs(10), || {
        register(a1, "/VIID/System/Register", CAMERA, "pw-vehicles").0 == 200
    });
    assert!(
        registered,
        "the camera's login never reached the ingest node"
    );
    std::thread::sleep(Duration::from_millis(1_200));
    for (code, password) in [(PLATFORM, "pw-platform"), (CAMERA, "pw-vehicles")] {
        for a in [a1, s] {
            assert_eq!(register(a, "/VIID/System/Register", code, password).0, 200);
        }
    }
    // The platform uploads for its own community's camera and a relayed one (stored)
    // and for a community it does not relay (refused, that object alone); cameras the
    // catalog does not know are catalogued (as `serve` does), one not a device code
    // is refused.
    let objects: Vec<Value> = [
        (CAMERA, 1),
        (RELAYED, 2),
        (NOT_RELAYED, 3),
        (UNKNOWN_RELAYED, 4),
        (UNKNOWN_OWN, 5),
        ("3205080201121000", 6),
    ]
    .iter()
    .map(|(d, n)| {
        json!({"MotorVehicleID": format!("{d}0220251201080000000010200{n:03}"),
                   "DeviceID": d, "PassTime": "20251201080000", "PlateNo": format!("苏E{n}RLY")})
    })
    .collect();
    let body = json!({"MotorVehicleListObject": {"MotorVehicleObject": objects}}).to_string();
    let ident = vec![("User-Identify", PLATFORM.to_string())];
    let (status, _, cluster) = viid(a1, "POST", "/VIID/MotorVehicles", &ident, &body);
    assert_eq!(status, 200, "{cluster}");
    let (status, _, single_answer) = viid(s, "POST", "/VIID/MotorVehicles", &ident, &body);
    assert_eq!(status, 200, "{single_answer}");
    let got = statuses(&cluster);
    assert_eq!(
        got,
        statuses(&single_answer),
        "serve's answer, object by object"
    );
    let codes: Vec<&Value> = got.iter().map(|s| &s["StatusCode"]).collect();
    let want = [0, 0, 8, 0, 0, 8].map(|c| json!(c));
    assert_eq!(codes, want.iter().collect::<Vec<_>>(), "{cluster}");
    let said = |i: usize| got[i]["StatusString"].as_str().unwrap().to_string();
    assert!(said(2).contains("community 3205080003"), "{cluster}");
    assert!(
        said(3).contains("catalogued under community 3205080002"),
        "{cluster}"
    );
    assert!(
        said(4).contains("catalogued under community 3205080001"),
        "{cluster}"
    );
    // The catalogued cameras are in the catalog, as on `serve`.
    for code in [UNKNOWN_RELAYED, UNKNOWN_OWN] {
        let target = format!("/v1/devices/{code}");
        let cluster = super::ask_as(qa, Some(&admin), "GET", &target, "");
        assert_eq!(cluster.0, 200, "{}", cluster.1);
        assert_eq!(cluster, super::ask_as(s, None, "GET", &target, ""));
    }
    // The camera itself names only its own community's devices (the catalogued one of
    // its community among them), on the node that catalogued them at once.
    let cam = vec![("User-Identify", CAMERA.to_string())];
    let (status, _, refused) = viid(a1, "POST", "/VIID/MotorVehicles", &cam, &body);
    assert_eq!(status, 200, "{refused}");
    let (_, _, single_refused) = viid(s, "POST", "/VIID/MotorVehicles", &cam, &body);
    assert_eq!(statuses(&refused), statuses(&single_refused));
    let codes: Vec<Value> = statuses(&refused)
        .iter()
        .map(|s| s["StatusCode"].clone())
        .collect();
    let want = [0, 8, 8, 8, 0, 8].map(|c| json!(c));
    assert_eq!(codes, want, "{refused}");

    // The catalog listings as `serve` answers them, for the platform (its community and
    // the relayed one) and for the camera (its own); the camera is online.
    for (caller, path) in [
        (&ident, "/VIID/APEs"),
        (&ident, "/VIID/Tollgates"),
        (&cam, "/VIID/APEs"),
        (&cam, "/VIID/Tollgates"),
    ] {
        let (status, _, cluster) = viid(a1, "GET", path, caller, "");
        assert_eq!(status, 200, "{path}: {cluster}");
        let (status, _, single_answer) = viid(s, "GET", path, caller, "");
        assert_eq!(status, 200, "{path}: {single_answer}");
        assert_eq!(cluster, single_answer, "{path} for {caller:?}");
    }
    let (_, _, apes) = viid(a1, "GET", "/VIID/APEs", &ident, "");
    let listed: Vec<(&str, &str)> = apes["APEListObject"]["APEObject"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["ApeID"].as_str().unwrap(),
                a["IsOnline"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (CAMERA, "1"),
            (UNKNOWN_OWN, "2"),
            (RELAYED, "2"),
            (UNKNOWN_RELAYED, "2"),
            (RELAYED_FACE, "2")
        ],
        "{apes}"
    );
    let (_, _, tollgates) = viid(a1, "GET", "/VIID/Tollgates", &ident, "");
    let n = tollgates["TollgateListObject"]["TollgateObject"]
        .as_array()
        .map(Vec::len);
    assert_eq!(n, Some(4), "{tollgates}");
    // An unregistered caller lists nothing: challenged, as on `serve`.
    let stranger = vec![("User-Identify", NOT_RELAYED.to_string())];
    for a in [a1, s] {
        let (status, head, _) = viid(a, "GET", "/VIID/APEs", &stranger, "");
        assert_eq!(status, 401);
        assert!(head.contains("www-authenticate: digest"), "{head}");
    }

    // `sightline cluster gat1400 add --relay` and `catalog import` carry relays too.
    let second = "32050800002000000009";
    let added = gat1400_cli(
        &cli,
        &[
            "add",
            second,
            "--community",
            "3205080001",
            "--kind",
            "platform",
            "--relay",
            "3205080=3205080003",
        ],
    )
    .unwrap();
    assert!(
        added.contains("\"relays\":{\"3205080\":\"3205080003\"}"),
        "{added}"
    );
    // `list` shows a platform's relays as `add` prints them.
    let listed = gat1400_cli(&cli, &["list"]).unwrap();
    let line = listed.lines().find(|l| l.contains(second)).unwrap_or("");
    assert!(
        line.contains("\"relays\":{\"3205080\":\"3205080003\"}"),
        "{listed}"
    );
    let unknown = gat1400_cli(
        &cli,
        &[
            "add",
            second,
            "--community",
            "3205080001",
            "--kind",
            "platform",
            "--relay",
            "3205080=9999999999",
        ],
    )
    .unwrap_err();
    assert!(unknown.contains("relays.3205080"), "{unknown}");
    // `serve`'s platform relaying another prefix, imported over the cluster's.
    let (status, put) = super::ask_as(
        s,
        None,
        "PUT",
        &format!("/v1/devices/{PLATFORM}"),
        &platform(json!({"32050803": "3205080003"})).to_string(),
    );
    assert_eq!(status, 200, "{put}");
    single.stop();
    let imported = Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args(["cluster", "catalog", "import", "--data"])
        .arg(single_dir.path())
        .arg("--config")
        .arg(&cli)
        .output()
        .unwrap();
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let relays = env.pg.psql(&format!(
        "SELECT relays::text FROM devices WHERE code = '{PLATFORM}'"
    ));
    assert_eq!(relays, r#"{"32050803": "3205080003"}"#);
}

#[test]
fn gateway_pictures_past_their_retention_go_by_day_and_a_later_days_copy_stays() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::start();
    let cli = env.config_file("cli");
    add_login(&cli, CAMERA, "3205080001", "pw-vehicles");
    let (_i1, a1) = env.ingest("ingest-1");
    let _indexer = env.indexer("index-1", &[]);
    let (_q1, qa) = env.query_node("query-1");
    assert_eq!(
        register(a1, "/VIID/System/Register", CAMERA, "pw-vehicles").0,
        200
    );
    // The same picture with a vehicle of 1 December and, re-uploaded, one of the 14th.
    let picture = jpeg(42, 5_000);
    let vehicle = |day: u32| {
        json!({"MotorVehicleListObject": {"MotorVehicleObject": [{
            "MotorVehicleID": format!("{CAMERA}02202512{day:02}0800000000102{day:05}"),
            "DeviceID": CAMERA, "PassTime": format!("202512{day:02}080000"),
            "PlateNo": format!("苏E{day}KEP"),
            "SubImageList": {"SubImageInfoObject": [{"Type": "01", "Data": b64(&picture)}]}}]}})
        .to_string()
    };
    let ident = vec![("User-Identify", CAMERA.to_string())];
    for day in [1, 14] {
        let (status, _, answer) = viid(a1, "POST", "/VIID/MotorVehicles", &ident, &vehicle(day));
        assert_eq!(status, 200, "{answer}");
        assert_eq!(statuses(&answer)[0]["StatusCode"], 0, "{answer}");
    }
    let objects = Objects::new(&env.config().s3).unwrap();
    let keys = |prefix: &str| -> Vec<String> {
        let mut k: Vec<String> = env
            .rt
            .block_on(objects.list(Some(prefix)))
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        k.sort();
        k
    };
    let community = "33323035303830303031"; // 3205080001 in hex
    let sha = sha256_hex(&picture);
    let (old, new) = (
        format!("gat1400/pictures/d20251201/{community}/{sha}"),
        format!("gat1400/pictures/d20251214/{community}/{sha}"),
    );
    assert_eq!(keys("gat1400/pictures/"), [old.clone(), new.clone()]);
    let uploaded = keys("gat1400/objects/");
    assert_eq!(uploaded.len(), 2, "{uploaded:?}");
    assert!(uploaded[0].starts_with("gat1400/objects/d20251201/"));
    // Kept forever by default, however old.
    let sweep = |now_ms: i64, keep_days: u32| {
        let mut removed = env
            .rt
            .block_on(janitor::sweep_gat1400(&objects, now_ms, keep_days))
            .unwrap();
        removed.sort();
        removed
    };
    assert!(sweep(sightline_server::now_ms(), 0).is_empty());
    // Each event names its own day's copy, which a query node serves.
    let picture_of = |day: u32| -> String {
        let plate = sightline_testkit::enc(&format!("苏E{day}KEP"));
        let target = format!(
            "/v1/trajectory?kind=vehicle&subject={plate}\
             &from=2025-12-01T00:00:00%2B08:00&to=2025-12-31T00:00:00%2B08:00"
        );
        let mut url = None;
        let found = wait_until(COMMITTED, || {
            let (status, _, body) = fetch(qa, &target, None);
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            url = v["events"][0]["images"][0]["url"]
                .as_str()
                .map(str::to_string);
            status == 200 && url.is_some()
        });
        assert!(found, "the vehicle of day {day} was never answered");
        url.unwrap()
    };
    let (old_url, new_url) = (picture_of(1), picture_of(14));
    assert!(old_url.contains(".20251201."), "{old_url}");
    assert!(new_url.contains(".20251214."), "{new_url}");
    for url in [&old_url, &new_url] {
        let (status, _, bytes) = fetch(qa, url, None);
        assert_eq!((status, sha256_hex(&bytes)), (200, sha.clone()), "{url}");
    }
    // At noon on 15 December, seven days kept: the 1st goes (its picture and its object
    // as uploaded), the 14th's copy of the same bytes stays.
    let dec15_noon = 1_764_518_400_000 + 14 * 86_400_000 + 12 * 3_600_000;
    assert!(
        sweep(dec15_noon - 7 * 86_400_000, 7).is_empty(),
        "within retention"
    );
    let removed = sweep(dec15_noon, 7);
    assert_eq!(removed, [uploaded[0].clone(), old], "{removed:?}");
    assert_eq!(keys("gat1400/pictures/"), [new]);
    assert_eq!(keys("gat1400/objects/"), [uploaded[1].clone()]);
    assert!(sweep(dec15_noon, 7).is_empty(), "nothing left to sweep");
    // The older event's picture is gone (404, as an unknown one); the newer's is served.
    assert_eq!(fetch(qa, &old_url, None).0, 404);
    let (status, _, bytes) = fetch(qa, &new_url, None);
    assert_eq!((status, sha256_hex(&bytes)), (200, sha));
}

/// On a query node as on `serve`: a scoped admin gives a platform no relays into a
/// community outside its own (403 naming the entry, registered or not), changes no
/// platform whose kept relays reach one, and a device that stops being a platform
/// relays nothing; `catalog import` of a platform without relays clears the cluster's.
#[test]
fn a_scoped_admin_gives_no_relays_outside_its_communities_on_a_query_node_as_on_serve() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::start();
    let cli = env.config_file("cli");
    let single_dir = tempfile::tempdir().unwrap();
    let (cluster, single_keys) = super::console::keys_on_both(
        &cli,
        single_dir.path(),
        &[
            ("admin", None, "city"),
            ("admin", Some("3205080001"), "north"),
        ],
    );
    let (_q1, qa) = env.query_node("query-1");
    let mut single = sightline_testkit::start(single_dir.path(), |_| {});
    let s = single.addr;
    // The same request as the city's admin (0) or the north's (1), on both: the same
    // status and field (messages name the key), the same body when taken.
    let both = |who: usize, target: &str, body: &Value| -> Answered {
        let body = body.to_string();
        let c = super::ask_as(qa, Some(&cluster[who]), "PUT", target, &body);
        let o = super::ask_as(s, Some(&single_keys[who]), "PUT", target, &body);
        let said = |a: &Answered| (a.0, a.1["error"]["field"].clone());
        assert_eq!(said(&c), said(&o), "PUT {target} {body}: {} / {}", c.1, o.1);
        if matches!(c.0, 200 | 201) {
            assert_eq!(c.1, o.1, "PUT {target} {body}");
        }
        c
    };
    for c in ["3205080001", "3205080002"] {
        let (status, _) = both(0, &format!("/v1/communities/{c}"), &json!({"name": c}));
        assert_eq!(status, 201);
    }
    let target = format!("/v1/devices/{PLATFORM}");
    let platform = |relays: Value| {
        let mut b = json!({"community": "3205080001", "kind": "platform",
                           "gat1400": {"password": "x"}});
        if !relays.is_null() {
            b["relays"] = relays;
        }
        b
    };
    for relays in [json!({"3": "3205080002"}), json!({"3": "9999999999"})] {
        let (status, why) = both(1, &target, &platform(relays.clone()));
        assert_eq!(
            (status, why["error"]["field"].as_str()),
            (403, Some("relays.3")),
            "{relays}: {why}"
        );
    }
    assert_eq!(
        env.pg.psql(&format!(
            "SELECT count(*) FROM devices WHERE code = '{PLATFORM}'"
        )),
        "0",
        "nothing written"
    );
    let (status, put) = both(1, &target, &platform(json!({"3": "3205080001"})));
    assert_eq!((status, &put["relays"]), (201, &json!({"3": "3205080001"})));
    // Relayed into another community by the city: the north's new password (relays
    // kept) is refused, naming no other community.
    let (status, _) = both(0, &target, &platform(json!({"3": "3205080002"})));
    assert_eq!(status, 200);
    let (status, why) = both(1, &target, &platform(Value::Null));
    assert_eq!(
        (status, why["error"]["field"].as_str()),
        (403, Some("relays")),
        "{why}"
    );
    assert!(!why.to_string().contains("3205080002"), "{why}");
    let relays_kept = || {
        env.pg.psql(&format!(
            "SELECT coalesce(relays::text, 'none') FROM devices WHERE code = '{PLATFORM}'"
        ))
    };
    assert_eq!(relays_kept(), r#"{"3": "3205080002"}"#);
    // Made a camera: its relays go; a platform again, it relays nothing.
    let camera = json!({"community": "3205080001", "kind": "checkpoint_camera"});
    assert_eq!(both(0, &target, &camera).0, 200);
    assert_eq!(relays_kept(), "none");
    let (status, put) = both(0, &target, &platform(Value::Null));
    assert_eq!((status, &put["relays"]), (200, &json!({})));
    assert_eq!(both(1, &target, &platform(Value::Null)).0, 200);
    // `catalog import` of `serve`'s platform, which relays nothing, clears the
    // cluster's relays (an empty map is a map to copy).
    let (status, _) = both(0, &target, &platform(json!({"3": "3205080002"})));
    assert_eq!(status, 200);
    let cleared = super::ask_as(
        s,
        Some(&single_keys[0]),
        "PUT",
        &target,
        &platform(json!({})).to_string(),
    );
    assert_eq!((cleared.0, &cleared.1["relays"]), (200, &json!({})));
    single.stop();
    let imported = Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args(["cluster", "catalog", "import", "--data"])
        .arg(single_dir.path())
        .arg("--config")
        .arg(&cli)
        .output()
        .unwrap();
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    assert_eq!(relays_kept(), "none");
}

/// A camera a platform names that another node or an admin registered meanwhile (in
/// a community the platform does not relay into) is judged as PostgreSQL keeps it,
/// not as the ingest node would have catalogued it: the object is refused, as `serve`
/// refuses a device of another community, and the row stays as it was. A relays row
/// that does not parse (written by hand) is skipped and named in `/health`; the rest
/// of the gateway goes on.
#[test]
fn a_camera_registered_meanwhile_is_judged_as_stored_and_a_bad_relays_row_is_skipped() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::start();
    let cli = env.config_file("cli");
    add_login(&cli, RELAYED, "3205080002", "pw-relayed");
    add_login(&cli, NOT_RELAYED, "3205080003", "pw-other");
    let added = gat1400_cli(
        &cli,
        &[
            "add",
            PLATFORM,
            "--community",
            "3205080001",
            "--community-name",
            "North",
            "--kind",
            "platform",
            "--password",
            "pw-platform",
            "--relay",
            "320508020=3205080002",
        ],
    )
    .unwrap();
    assert!(added.contains("\"relays\""), "{added}");
    // A device's relays written by hand, not an object of code prefix → community.
    env.pg.psql(&format!(
        "UPDATE devices SET relays = '{{\"320\": 5}}' WHERE code = '{NOT_RELAYED}'"
    ));
    let (_i1, a1) = env.ingest("ingest-1");
    let (status, _, health) = viid(a1, "GET", "/health", &[], "");
    assert_eq!(status, 200, "{health}");
    assert_eq!(
        health["gat1400_relays_unreadable"],
        json!([NOT_RELAYED]),
        "{health}"
    );
    assert_eq!(
        register(a1, "/VIID/System/Register", PLATFORM, "pw-platform").0,
        200,
        "the gateway read its tables"
    );
    let ident = vec![("User-Identify", PLATFORM.to_string())];
    // Unknown cameras under the relayed prefix, each registered in 3205080003 just
    // before the platform names it (before the ingest node reads the table again).
    for n in 0..3 {
        let code = format!("3205080201121000{:04}", 90 + n);
        env.pg.psql(&format!(
            "INSERT INTO devices (code, community, device_kind, direction, name) \
             VALUES ('{code}', '3205080003', 'checkpoint_camera', 'in', 'registered meanwhile')"
        ));
        let body = json!({"MotorVehicleListObject": {"MotorVehicleObject": [{
            "MotorVehicleID": format!("{code}0220251201080000000010200{n:03}"),
            "DeviceID": code, "PassTime": "20251201080000", "PlateNo": format!("苏E{n}MWL")}]}})
        .to_string();
        let (status, _, answer) = viid(a1, "POST", "/VIID/MotorVehicles", &ident, &body);
        assert_eq!(status, 200, "{answer}");
        let got = &statuses(&answer)[0];
        assert_ne!(got["StatusCode"], 0, "{answer}");
        assert!(
            got["StatusString"]
                .as_str()
                .unwrap()
                .contains("community 3205080003"),
            "{answer}"
        );
        let row = env.pg.psql(&format!(
            "SELECT community || ' ' || name FROM devices WHERE code = '{code}'"
        ));
        assert_eq!(row, "3205080003 registered meanwhile");
    }
    // The platform's own relayed camera still goes through.
    let body = json!({"MotorVehicleListObject": {"MotorVehicleObject": [{
        "MotorVehicleID": format!("{RELAYED}0220251201080000000010200999"),
        "DeviceID": RELAYED, "PassTime": "20251201080000", "PlateNo": "苏E9MWL"}]}})
    .to_string();
    let (status, _, answer) = viid(a1, "POST", "/VIID/MotorVehicles", &ident, &body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(statuses(&answer)[0]["StatusCode"], 0, "{answer}");
    // Relays that do not read can be replaced through the API by a key of every
    // community (the loopback node without keys here), not only in SQL.
    let (_q1, qa) = env.query_node("query-1");
    let put = json!({"community": "3205080003", "kind": "checkpoint_camera"}).to_string();
    let target = format!("/v1/devices/{NOT_RELAYED}");
    let (status, answer) = super::ask_as(qa, None, "PUT", &target, &put);
    assert_eq!(status, 200, "{answer}");
    let row = env.pg.psql(&format!(
        "SELECT coalesce(relays::text, 'none') FROM devices WHERE code = '{NOT_RELAYED}'"
    ));
    assert_eq!(row, "none");
}

/// With the cluster's event retention set (and `index.gat1400_retention_days` not),
/// an object of a day the pictures' retention has passed is refused at ingest (its
/// pictures would go at the next sweep after it was acknowledged), as is one of a
/// time the validation refuses (year 9999); neither leaves a picture on S3, and the
/// rest of the upload is stored. The sweep keeps the policy's days.
#[test]
fn objects_past_the_retention_or_out_of_time_are_refused_before_their_pictures_are_put() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::start();
    let cli = env.config_file("cli");
    add_login(&cli, CAMERA, "3205080001", "pw-vehicles");
    env.pg.psql(
        "INSERT INTO cluster_meta (key, value) VALUES ('retention_days', '30') \
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
    );
    let (_i1, a1) = env.ingest("ingest-1");
    assert_eq!(
        register(a1, "/VIID/System/Register", CAMERA, "pw-vehicles").0,
        200
    );
    let now_ms = sightline_server::now_ms();
    let at = |ms: i64| {
        let day = sightline_cluster::gat1400::local_day(ms);
        format!("{day}080000")
    };
    let cases = [
        (at(now_ms - 40 * 86_400_000), 1, 5), // past the 30 days
        ("99991231080000".to_string(), 2, 6), // far in the future
        (at(now_ms), 3, 7),                   // today: stored
    ];
    let objects: Vec<Value> = cases
        .iter()
        .map(|(time, n, seed)| {
            json!({"MotorVehicleID": format!("{CAMERA}0220251201080000000010200{n:03}"),
                   "DeviceID": CAMERA, "PassTime": time, "PlateNo": format!("苏E{n}RET"),
                   "SubImageList": {"SubImageInfoObject": [
                       {"Type": "01", "Data": b64(&jpeg(*seed, 3_000))}]}})
        })
        .collect();
    let body = json!({"MotorVehicleListObject": {"MotorVehicleObject": objects}}).to_string();
    let ident = vec![("User-Identify", CAMERA.to_string())];
    let (status, _, answer) = viid(a1, "POST", "/VIID/MotorVehicles", &ident, &body);
    assert_eq!(status, 200, "{answer}");
    let got = statuses(&answer);
    let codes: Vec<&Value> = got.iter().map(|s| &s["StatusCode"]).collect();
    assert_ne!(codes[0], 0, "{answer}");
    assert!(
        got[0]["StatusString"]
            .as_str()
            .unwrap()
            .contains("retention"),
        "{answer}"
    );
    assert_ne!(codes[1], 0, "{answer}");
    assert_eq!(codes[2], 0, "{answer}");
    // Only the stored object's picture and object as uploaded are on S3.
    let objects = Objects::new(&env.config().s3).unwrap();
    let keys: Vec<String> = env
        .rt
        .block_on(objects.list(Some("gat1400/")))
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    let today = format!("/d{}/", sightline_cluster::gat1400::local_day(now_ms));
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.iter().all(|k| k.contains(&today)), "{keys:?}");
    // The sweep follows the events' policy when the gateway's own is not set.
    assert_eq!(janitor::gat1400_keep_days(0, Some(30)), 30);
    assert_eq!(janitor::gat1400_keep_days(7, Some(30)), 7);
    assert_eq!(janitor::gat1400_keep_days(0, None), 0);
    // An indexer sweeps on a task of its own (every 20 renewals) by that policy: a day
    // past the 30 goes, today's stays.
    let old = format!(
        "gat1400/pictures/d20200101/33323035303830303031/{}",
        sha256_hex(b"old")
    );
    env.rt
        .block_on(objects.put_create(&old, b"old".to_vec().into()))
        .unwrap();
    let _indexer = env.indexer("index-1", &[]);
    let listed = || -> Vec<String> {
        let listed = env.rt.block_on(objects.list(Some("gat1400/")));
        listed.unwrap().into_iter().map(|o| o.key).collect()
    };
    let swept = wait_until(Duration::from_secs(60), || !listed().contains(&old));
    assert!(swept, "the policy's sweep never came: {:?}", listed());
    assert_eq!(listed(), keys);
}

/// One request on a fresh connection: status, head (lower case), body as text.
fn raw(addr: SocketAddr, request: &str) -> (u16, String, String) {
    let a = sightline_testkit::send(addr, request.as_bytes());
    (
        a.status,
        a.head.to_ascii_lowercase(),
        String::from_utf8_lossy(&a.body).into_owned(),
    )
}

/// The conformance audit's cluster items: an ingest node routes `/VIID` paths as
/// `serve` reads them (4), answers HEAD wherever GET, 405 with `Allow` for a wrong
/// method, 204 to OPTIONS and 501 to a method nothing takes (5), `/VIID` and a bad
/// `Host` on it in GA/T 1400's shape (10), names OPTIONS in every `Allow` (12), and
/// refuses a declared body past its limit before `100 Continue` (2) and a transfer
/// coding other than `chunked` before the body.
#[test]
fn an_ingest_node_routes_methods_paths_and_hosts_as_serve_does() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::start();
    let (_i, a) = env.ingest("ingest-1");
    // 4: `/VIID/System/%54ime/` is `/VIID/System/Time`.
    let (status, _, body) = viid(a, "GET", "/VIID/System/%54ime/", &[], "");
    assert_eq!(status, 200, "{body}");
    assert!(body["SystemTimeObject"]["LocalTime"].is_string(), "{body}");
    // 5: HEAD wherever GET, the head only.
    for target in ["/health", "/VIID/System/Time"] {
        let (status, head, body) = raw(
            a,
            &format!("HEAD {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        );
        assert!(status == 200 || status == 503, "HEAD {target}: {head}");
        assert!(body.is_empty(), "HEAD {target}: {body}");
    }
    for (method, target, status, allow) in [
        ("POST", "/health", 405, "get, head, options"),
        ("GET", "/v1/events", 405, "post, options"),
        ("OPTIONS", "/v1/events", 204, "post, options"),
        ("OPTIONS", "/health", 204, "get, head, options"),
        ("OPTIONS", "*", 204, "get, head, post, put, delete, options"),
        ("GET", "/VIID/System/Register", 405, "post, options"),
        ("POST", "/VIID/System/Time", 405, "get, head, options"),
        (
            "PUT",
            "/VIID/MotorVehicles",
            405,
            "get, head, post, options",
        ),
        ("POST", "/VIID/Faces/x", 405, "get, head, options"),
    ] {
        let (got, head, body) = raw(
            a,
            &format!(
                "{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ),
        );
        assert_eq!(got, status, "{method} {target}: {head}\n{body}");
        assert!(
            head.contains(&format!("\r\nallow: {allow}\r\n")),
            "{method} {target}: {head}"
        );
    }
    for target in ["/health", "/v1/events", "/VIID/System/Time"] {
        let (status, head, body) = raw(
            a,
            &format!("BREW {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(status, 501, "{target}: {head}");
        if target.starts_with("/VIID") {
            assert!(body.contains("ResponseStatusObject"), "{body}");
        }
    }
    // A declared body past the limit: 413 at once, no `100 Continue` (RFC 9110
    // §10.1.1), on `/v1/events` and on `/VIID`.
    for (target, length) in [
        ("/v1/events", 1u64 << 40),
        ("/VIID/System/Register", 1 << 20),
    ] {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(a).unwrap();
        write!(
            s,
            "POST {target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n\
             Content-Length: {length}\r\nExpect: 100-continue\r\n\r\n"
        )
        .unwrap();
        let line = status_within(&mut s, Duration::from_secs(10));
        assert_eq!(
            line.as_deref(),
            Some("HTTP/1.1 413 Payload Too Large"),
            "{target}"
        );
    }
    // RFC 9112 §6.1, as on `serve`: a transfer coding other than `chunked` is 501
    // naming it before the body (it would be read as if plain), in GA/T 1400's shape
    // on `/VIID`; `chunked` alone is taken.
    let line = "{}";
    let chunked = format!("{:x}\r\n{line}\r\n0\r\n\r\n", line.len());
    for (target, coding, status) in [
        ("/v1/events", "gzip, chunked", 501),
        ("/VIID/MotorVehicles", "x-custom,chunked", 501),
        ("/VIID/MotorVehicles", "chunked", 401),
    ] {
        let (got, head, body) = raw(
            a,
            &format!(
                "POST {target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 Transfer-Encoding: {coding}\r\nConnection: close\r\n\r\n{chunked}"
            ),
        );
        assert_eq!(got, status, "{target} {coding}: {head}\n{body}");
        match (status, target.starts_with("/VIID")) {
            (501, true) => assert!(body.contains("ResponseStatusObject"), "{body}"),
            (501, false) => assert!(body.contains("unsupported_transfer_coding"), "{body}"),
            _ => {}
        }
    }
    // 10: `/VIID`, `/VIID/`, and a `Host` that is not one, in GA/T 1400's shape.
    for target in ["/VIID", "/VIID/"] {
        let (status, head, body) = viid(a, "GET", target, &[], "");
        assert_eq!(status, 404, "{target}: {head}");
        assert!(
            body["ResponseStatusObject"]["StatusCode"].is_i64(),
            "{body}"
        );
    }
    for host in ["a b", "a, b"] {
        let (status, head, body) = raw(
            a,
            &format!("GET /VIID/System/Time HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(status, 400, "{host:?}: {head}");
        assert!(head.contains("application/viid+json"), "{head}");
        assert!(body.contains("ResponseStatusObject"), "{body}");
        let (status, head, body) = raw(
            a,
            &format!("GET /health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(status, 400, "{host:?}: {head}");
        assert!(body.contains("bad_host"), "{body}");
    }
}

/// `POST /v1/events` on a cluster ingest node decodes a body as `serve` does
/// (`http::call::decoded`): `Content-Encoding: gzip` or `x-gzip` inflated within
/// `ingest.max_body_bytes` (past it 413), another coding 415 before the body is read,
/// a leading UTF-8 byte order mark dropped.
#[test]
fn an_ingest_nodes_events_are_inflated_and_their_byte_order_mark_dropped_as_on_serve() {
    use std::io::Write;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut env = Env::start();
    let cli = env.config_file("cli");
    let feed = super::console::cli_key(&cli, "ingest", None, "feed");
    let (_ingest, ia) = env.spawn_with("ingest", "ingest-1", &[], "max_body_bytes = 262144");
    let ia = ia.unwrap();
    let gzip = |bytes: &[u8]| {
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(bytes).unwrap();
        z.finish().unwrap()
    };
    let post = |coding: &str, body: &[u8]| -> (u16, Value) {
        let mut request = format!(
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {feed}\r\n\
             Content-Type: application/x-ndjson\r\n{coding}Content-Length: {}\r\n\
             Connection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        let a = sightline_testkit::send(ia, &request);
        (
            a.status,
            serde_json::from_slice(&a.body).unwrap_or(Value::Null),
        )
    };
    let (events, _) = env.batch(3);
    for coding in ["gzip", "x-gzip", "GZIP"] {
        let (events, _) = env.batch(3);
        let (status, answer) = post(
            &format!("Content-Encoding: {coding}\r\n"),
            &gzip(events.as_bytes()),
        );
        assert_eq!(
            (status, &answer["stored"]),
            (200, &json!(3)),
            "{coding}: {answer}"
        );
    }
    let mut marked = b"\xEF\xBB\xBF".to_vec();
    marked.extend_from_slice(events.as_bytes());
    let (status, answer) = post("", &marked);
    assert_eq!((status, &answer["stored"]), (200, &json!(3)), "{answer}");
    let (status, answer) = post("Content-Encoding: br\r\n", events.as_bytes());
    assert_eq!(status, 415, "{answer}");
    assert_eq!(answer["error"]["code"], "unsupported_encoding", "{answer}");
    // Inflated past ingest.max_body_bytes: 413, though the gzip itself is small.
    let (big, _) = env.batch(2_000);
    let zipped = gzip(big.as_bytes());
    assert!(
        zipped.len() < 262_144 && big.len() > 262_144,
        "{}",
        zipped.len()
    );
    let (status, answer) = post("Content-Encoding: gzip\r\n", &zipped);
    assert_eq!(status, 413, "{answer}");
}

/// A West platform (community 3205080003, no relays) and its own camera.
const WEST_PLATFORM: &str = "32050800002000000003";

/// `target`'s query string with each `&`-separated condition percent-encoded (as a
/// client sends `(MotorVehicle.PlateNo = '苏E…')`).
fn conditions(path: &str, conditions: &[&str]) -> String {
    let q: Vec<String> = conditions
        .iter()
        .map(|c| sightline_testkit::enc(c))
        .collect();
    format!("{path}?{}", q.join("&"))
}

/// One object query as `who`: by its `User-Identify` (enough when registered from
/// this address, on `serve` as on a cluster), else challenged and answered with a
/// digest on the query itself.
fn query_as(addr: SocketAddr, who: &str, password: &str, target: &str) -> (u16, Value) {
    let ident = vec![("User-Identify", who.to_string())];
    let (status, head, body) = viid(addr, "GET", target, &ident, "");
    if status != 401 {
        return (status, body);
    }
    let auth = authorization(who, password, &nonce_of(&head), "00000001", "GET", target);
    let headers = [("Authorization", auth), ("User-Identify", who.to_string())];
    let (status, _, body) = viid(addr, "GET", target, &headers, "");
    (status, body)
}

/// An object query's answer as comparable between a cluster and `serve`: status
/// objects without their `LocalTime`; each picture's `StoragePath` (checked to start
/// with `base` when given) replaced by the SHA-256 of the bytes `addr` serves at its
/// path, and an `ImageID` that was the stored picture's id by `stored`.
fn comparable_answer(
    (status, mut body): (u16, Value),
    addr: SocketAddr,
    token: Option<&str>,
    base: Option<&str>,
) -> (u16, Value) {
    fn walk(v: &mut Value, f: &mut dyn FnMut(&mut serde_json::Map<String, Value>)) {
        match v {
            Value::Object(m) => {
                f(m);
                m.values_mut().for_each(|v| walk(v, f));
            }
            Value::Array(a) => a.iter_mut().for_each(|v| walk(v, f)),
            _ => {}
        }
    }
    walk(&mut body, &mut |m| {
        m.remove("LocalTime");
        let Some(path) = m.get("StoragePath").and_then(Value::as_str) else {
            return;
        };
        let at = path
            .find("/v1/images/")
            .expect("a picture this server serves");
        if let Some(base) = base {
            assert_eq!(&path[..at], base, "{path}");
        }
        let (status, _, bytes) = fetch(addr, &path[at..], token);
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&bytes));
        let id = path[at..].strip_prefix("/v1/images/").unwrap().to_string();
        m.insert("StoragePath".into(), sha256_hex(&bytes).into());
        if m.get("ImageID").and_then(Value::as_str) == Some(id.as_str()) {
            m.insert("ImageID".into(), "stored".into());
        }
    });
    (status, body)
}

/// Issue 22's "the GA/T 1400 gateway works against a cluster unchanged", for
/// GA/T 1400.4 object queries: cameras upload vehicles and faces with pictures to an
/// ingest node (and to `serve`); once indexed, a platform's condition queries on
/// another ingest node — several conditions, both orders, pages past the first (the
/// federation's two rounds), `MaxNumRecordReturn`, one object by id, an id outside
/// its communities, a condition refused — answer exactly what `serve` answers, the
/// pictures the same bytes; a platform of another community sees only its own; a
/// camera is refused as on `serve`; each query is in the ingest node's audit log.
#[test]
fn object_queries_on_an_ingest_node_answer_as_serve_does() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut env = Env::start();
    env.query_extra = "public_url = \"http://pictures.example\"".into();
    let cli = env.config_file("cli");
    let admin = {
        let out = Command::new(env!("CARGO_BIN_EXE_sightline"))
            .args(["cluster", "keys", "create", "--role", "admin", "--config"])
            .arg(&cli)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let (_i1, a1) = env.ingest("ingest-1");
    let (mut i2, a2) = env.ingest("ingest-2");
    let indexer = env.indexer("index-1", &[]);
    let (q1, qa) = env.query_node("query-1");
    let single_dir = tempfile::tempdir().unwrap();
    let single = sightline_testkit::start(single_dir.path(), |_| {});
    let s = single.addr;
    let both = |target: &str, body: Value| {
        let body = body.to_string();
        let cluster = super::ask_as(qa, Some(&admin), "PUT", target, &body);
        let single = super::ask_as(s, None, "PUT", target, &body);
        assert_eq!(cluster, single, "PUT {target} {body}");
        // Every code new: created.
        assert_eq!(cluster.0, 201, "PUT {target}: {}", cluster.1);
    };
    for (code, name) in [
        ("3205080001", "North"),
        ("3205080002", "South"),
        ("3205080003", "West"),
    ] {
        both(&format!("/v1/communities/{code}"), json!({"name": name}));
    }
    both(
        &format!("/v1/devices/{PLATFORM}"),
        json!({"community": "3205080001", "kind": "platform", "name": "district platform",
               "gat1400": {"password": "pw-platform"}, "relays": {"320508020": "3205080002"}}),
    );
    both(
        &format!("/v1/devices/{WEST_PLATFORM}"),
        json!({"community": "3205080003", "kind": "platform",
               "gat1400": {"password": "pw-west"}}),
    );
    for (code, community, kind, direction, password) in DEVICES {
        both(
            &format!("/v1/devices/{code}"),
            json!({"community": community, "kind": kind, "direction": direction,
                   "gat1400": {"password": password}}),
        );
    }
    both(
        &format!("/v1/devices/{NOT_RELAYED}"),
        json!({"community": "3205080003", "kind": "checkpoint_camera", "direction": "in"}),
    );
    // Uploads through ingest node 1 (and `serve`): the cameras' own, and the West
    // platform's for its camera.
    let registered = wait_until(Duration::from_secs(10), || {
        register(a1, "/VIID/System/Register", WEST_PLATFORM, "pw-west").0 == 200
    });
    assert!(registered, "the logins never reached the ingest node");
    std::thread::sleep(Duration::from_millis(1_200));
    let west_vehicle = format!("{NOT_RELAYED}02202512010830000000010200077");
    let west = json!({"MotorVehicleListObject": {"MotorVehicleObject": [{
        "MotorVehicleID": west_vehicle, "DeviceID": NOT_RELAYED,
        "PassTime": "20251201083000", "PlateNo": "苏E7GA1", "PlateColor": "2"}]}})
    .to_string();
    let (vehicles, _) = vehicles();
    let (faces, _) = faces();
    for a in [a1, s] {
        for (code, password) in [
            (CAMERA, "pw-vehicles"),
            (FACE_CAMERA, "pw-faces"),
            (WEST_PLATFORM, "pw-west"),
        ] {
            assert_eq!(register(a, "/VIID/System/Register", code, password).0, 200);
        }
        for (who, path, body) in [
            (CAMERA, "/VIID/MotorVehicles", &vehicles),
            (FACE_CAMERA, "/VIID/Faces", &faces),
            (WEST_PLATFORM, "/VIID/MotorVehicles", &west),
        ] {
            let ident = vec![("User-Identify", who.to_string())];
            let (status, _, answer) = viid(a, "POST", path, &ident, body);
            assert_eq!(status, 200, "{answer}");
        }
    }

    let vehicle_id = |i: u64| format!("{CAMERA}0220251201080{i}0000{i:03}02{i:05}");
    let face_id = |i: u64| format!("{FACE_CAMERA}0620251201090{i}00000{i:02}06{i:05}");
    let day = "(MotorVehicle.PassTime BETWEEN '20251201000000' and '20251201235959')";
    let asked: Vec<(&str, &str, String)> = vec![
        // Everything in scope, then pages of two: the second page past the first.
        (
            PLATFORM,
            "pw-platform",
            conditions("/VIID/MotorVehicles", &[]),
        ),
        (
            PLATFORM,
            "pw-platform",
            conditions(
                "/VIID/MotorVehicles",
                &[day, "RecordStartNo=1", "PageRecordNum=2"],
            ),
        ),
        (
            PLATFORM,
            "pw-platform",
            conditions(
                "/VIID/MotorVehicles",
                &[
                    day,
                    "(Sort = MotorVehicle.PassTime)",
                    "RecordStartNo=2",
                    "PageRecordNum=2",
                ],
            ),
        ),
        (
            PLATFORM,
            "pw-platform",
            conditions(
                "/VIID/MotorVehicles",
                &[
                    "MotorVehicle.PassTime.Order=desc",
                    "RecordStartNo=2",
                    "PageRecordNum=1",
                ],
            ),
        ),
        (
            PLATFORM,
            "pw-platform",
            conditions(
                "/VIID/MotorVehicles",
                &[
                    "(MotorVehicle.PlateNo IN ('苏E7GA1', '苏E7GA2'))",
                    "PlateColor=2",
                ],
            ),
        ),
        (
            PLATFORM,
            "pw-platform",
            conditions(
                "/VIID/MotorVehicles",
                &["MaxNumRecordReturn=2", "RecordStartNo=2", "PageRecordNum=5"],
            ),
        ),
        // Faces with pictures, in the relayed community.
        (
            PLATFORM,
            "pw-platform",
            conditions(
                "/VIID/Faces",
                &[
                    "Face.ShotTime.Gte=20251201000000",
                    "Face.ShotTime.Order=desc",
                ],
            ),
        ),
        (
            PLATFORM,
            "pw-platform",
            conditions(
                "/VIID/Faces",
                &[
                    &format!("DeviceID={FACE_CAMERA}"),
                    "ArchiveID=P-GA-0001",
                    "RecordStartNo=2",
                ],
            ),
        ),
        // Another community's device: nothing, not even in TotalNum.
        (
            PLATFORM,
            "pw-platform",
            conditions("/VIID/MotorVehicles", &[&format!("DeviceID={NOT_RELAYED}")]),
        ),
        // One object by id; one outside the caller's communities; one unknown.
        (
            PLATFORM,
            "pw-platform",
            format!("/VIID/MotorVehicles/{}", vehicle_id(1)),
        ),
        (
            PLATFORM,
            "pw-platform",
            format!("/VIID/Faces/{}", face_id(0)),
        ),
        (
            PLATFORM,
            "pw-platform",
            format!("/VIID/MotorVehicles/{west_vehicle}"),
        ),
        (
            PLATFORM,
            "pw-platform",
            format!("/VIID/Faces/{}", vehicle_id(2)),
        ),
        // A condition that cannot be answered, refused naming it.
        (
            PLATFORM,
            "pw-platform",
            conditions(
                "/VIID/MotorVehicles",
                &["(MotorVehicle.PlateNo LIKE '苏E%')"],
            ),
        ),
        // The West platform: its own community only.
        (
            WEST_PLATFORM,
            "pw-west",
            conditions("/VIID/MotorVehicles", &[]),
        ),
        (
            WEST_PLATFORM,
            "pw-west",
            format!("/VIID/MotorVehicles/{west_vehicle}"),
        ),
        (
            WEST_PLATFORM,
            "pw-west",
            format!("/VIID/MotorVehicles/{}", vehicle_id(1)),
        ),
        // A camera reads none.
        (
            CAMERA,
            "pw-vehicles",
            conditions("/VIID/MotorVehicles", &[]),
        ),
    ];
    // Pictures fetched from `pictures` (with `token`).
    let answers =
        |addr: SocketAddr, pictures: SocketAddr, token: Option<&str>, base: Option<&str>| {
            asked
                .iter()
                .map(|(who, password, target)| {
                    let answer = query_as(addr, who, password, target);
                    comparable_answer(answer, pictures, token, base)
                })
                .collect::<Vec<_>>()
        };
    let timed = Instant::now();
    let want = answers(s, s, None, None);
    let serve_took = timed.elapsed();
    // What `serve` answers is what was meant to be: pages, scope, refusals.
    let total = |a: &(u16, Value)| a.1["MotorVehicleListObject"]["TotalNum"].clone();
    assert_eq!(total(&want[0]), json!(3), "{:?}", want[0]);
    assert_eq!(total(&want[8]), json!(0), "{:?}", want[8]);
    assert_eq!(total(&want[14]), json!(1), "{:?}", want[14]);
    assert_eq!(
        want[2].1["MotorVehicleListObject"]["PageRecordNum"],
        json!(2)
    );
    assert_eq!(want[11].0, 404);
    assert_eq!(want[13].0, 400);
    assert_eq!(want[16].0, 404);
    assert_eq!(want[17].0, 403);
    let faces_listed = &want[6].1["FaceListObject"]["FaceObject"];
    assert_eq!(
        faces_listed.as_array().map(Vec::len),
        Some(2),
        "{faces_listed}"
    );
    // The cluster's, once the indexer has committed the uploads: queries and pictures
    // (fetched from a query node with a key) alike, on the other ingest node.
    let mut got = Vec::new();
    let mut cluster_took = Duration::ZERO;
    let settled = wait_until(COMMITTED, || {
        let timed = Instant::now();
        got = answers(a2, qa, Some(&admin), Some("http://pictures.example"));
        cluster_took = timed.elapsed();
        got == want
    });
    eprintln!(
        "{} object queries (each challenged, then answered; pictures fetched): serve {serve_took:?}, \
         cluster ingest node {cluster_took:?}",
        asked.len()
    );
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "query {i}: {}", asked[i].2);
    }
    assert!(settled);
    // The West platform, registered by digest (through ingest node 1), queries ingest
    // node 2 by its `User-Identify` alone, as nanguantong/gat-1400 and wvp-GB28181-pro
    // do: answered without a challenge, as `serve` answers it.
    let target = conditions("/VIID/MotorVehicles", &[]);
    let ident = vec![("User-Identify", WEST_PLATFORM.to_string())];
    let (status, _, on_cluster) = viid(a2, "GET", &target, &ident, "");
    assert_eq!(status, 200, "{on_cluster}");
    let (status, _, on_serve) = viid(s, "GET", &target, &ident, "");
    assert_eq!(status, 200, "{on_serve}");
    let total = |v: &Value| v["MotorVehicleListObject"]["TotalNum"].clone();
    assert_eq!(total(&on_cluster), total(&on_serve), "{on_cluster}");
    assert_eq!(total(&on_cluster), json!(1), "{on_cluster}");
    // Every query is in ingest node 2's own audit log, under the caller's code.
    let log = std::fs::read_to_string(
        env.dir
            .path()
            .join("replicas-ingest-2-ingest-audit")
            .join("audit.log"),
    )
    .unwrap();
    assert!(log.contains(&format!("gat1400:{PLATFORM}")), "{log}");
    assert!(log.contains(&format!("gat1400:{WEST_PLATFORM}")), "{log}");
    assert!(log.contains("GET /VIID/Faces"), "{log}");
    // Each entry says how its caller was proven, and from where: the district
    // platform (never registered) by the digest on its first query, the West platform
    // by its registration.
    let entries: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let proofs = |who: &str| -> Vec<String> {
        entries
            .iter()
            .filter(|e| e["key"] == format!("gat1400:{who}"))
            .map(|e| e["params"].as_str().unwrap().to_string())
            .collect()
    };
    let platform = proofs(PLATFORM);
    assert!(
        platform
            .iter()
            .any(|p| p.starts_with("proof=digest&peer=127.0.0.1")),
        "{platform:?}"
    );
    let west = proofs(WEST_PLATFORM);
    assert!(
        west.iter()
            .any(|p| p == "proof=registration&peer=127.0.0.1"),
        "{west:?}"
    );
    // Through a proxy, a registration proves nothing (every caller's address is the
    // proxy's): challenged on both, nothing read.
    let proxied = vec![
        ("User-Identify", WEST_PLATFORM.to_string()),
        ("X-Forwarded-For", "203.0.113.9".to_string()),
    ];
    for addr in [a2, s] {
        let (status, head, body) = viid(addr, "GET", &target, &proxied, "");
        assert_eq!(status, 401, "{body}");
        assert!(
            head.to_ascii_lowercase()
                .contains("www-authenticate: digest"),
            "{head}"
        );
    }

    // Nobody left to answer the partitions (the indexer and the query node holding
    // replicas gone): 503 with a status object once `query.retry_ms` has passed,
    // never a part of the page; audited as refused.
    drop(indexer);
    drop(q1);
    let (status, body) = query_as(a2, PLATFORM, "pw-platform", &asked[0].2);
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body["ResponseStatusObject"]["StatusCode"],
        json!(3),
        "{body}"
    );
    let log = std::fs::read_to_string(
        env.dir
            .path()
            .join("replicas-ingest-2-ingest-audit")
            .join("audit.log"),
    )
    .unwrap();
    assert!(log.contains("\"status\":503"), "{log}");
    // And the chain holds: `sightline audit verify` on the stopped ingest node.
    i2.signal(libc::SIGTERM);
    assert!(i2.exited_within(Duration::from_secs(30)), "{}", i2.log());
    let audit_dir = env.dir.path().join("replicas-ingest-2-ingest-audit");
    let verify = || {
        Command::new(env!("CARGO_BIN_EXE_sightline"))
            .args(["audit", "verify", "--data"])
            .arg(&audit_dir)
            .output()
            .unwrap()
    };
    let verified = verify();
    assert!(
        verified.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
    // Its head was kept as it synced (every second, and at the stop): the log cut
    // by its last entry no longer verifies.
    let path = audit_dir.join("audit.log");
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 1, "{text}");
    std::fs::write(&path, lines[..lines.len() - 1].join("\n") + "\n").unwrap();
    let cut = verify();
    assert!(
        !cut.status.success(),
        "a log cut by its last entry verified: {}",
        String::from_utf8_lossy(&cut.stdout)
    );
}
