//! GA/T 1400.4 queries: a registered platform uploads objects, then reads them back by
//! `GET /VIID/MotorVehicles|Faces?<conditions>` (the standard's parenthesised
//! conditions, plain pairs and suffixed pairs), page by page, and one by its id; what
//! another community's platform uploaded stays invisible; a condition that cannot be
//! answered is 400 naming it; every query is audited. And `/VIID` paths as RFC 3986
//! makes them equal (escaped unreserved characters, a trailing slash), case kept.

use std::net::SocketAddr;

use serde_json::{json, Value};

use crate::gat1400::{b64, jpeg, put_json, register, viid};
use crate::support::{get, start, GATE, OTHER_GATE};
use sightline_testkit::gat1400::{authorization, nonce_of};

const NORTH_PLATFORM: &str = "32050800005030000001";
const SOUTH_PLATFORM: &str = "32050900005030000002";
const SOUTH_GATE: &str = "32050901011210000009";

/// A 48-character object id: device, type `02`, time, sequence.
fn id_of(device: &str, time: &str, n: u32) -> String {
    format!("{device}02{time}{n:012}")
}

fn as_platform(id: &str) -> Vec<(&'static str, String)> {
    vec![("User-Identify", id.to_string())]
}

/// The catalog (two communities, their gates, a platform in each), both platforms
/// registered by digest, and the uploads: four vehicles and a face in the north, one
/// vehicle in the south.
fn uploaded(a: SocketAddr) -> Vec<Value> {
    let put = |target: &str, body: Value| {
        // Each a new code: created.
        let r = put_json(a, target, &body);
        assert_eq!(r.status, 201, "{target}: {}", r.body);
    };
    put("/v1/communities/3205080001", json!({"name": "North"}));
    put("/v1/communities/3205090001", json!({"name": "South"}));
    for (code, community) in [
        (GATE, "3205080001"),
        (OTHER_GATE, "3205080001"),
        (SOUTH_GATE, "3205090001"),
    ] {
        put(
            &format!("/v1/devices/{code}"),
            json!({"community": community, "kind": "checkpoint_camera", "direction": "in"}),
        );
    }
    for (code, community, password) in [
        (NORTH_PLATFORM, "3205080001", "north-secret"),
        (SOUTH_PLATFORM, "3205090001", "south-secret"),
    ] {
        put(
            &format!("/v1/devices/{code}"),
            json!({"community": community, "kind": "platform", "gat1400": {"password": password}}),
        );
        assert_eq!(register(a, "/VIID/System/Register", code, password).0, 200);
    }
    let vehicle = |device: &str, time: &str, n: u32, plate: &str, color: &str| {
        json!({"MotorVehicleID": id_of(device, time, n), "DeviceID": device, "TollgateID": device,
               "PassTime": time, "PlateNo": plate, "PlateColor": color, "VehicleColor": "A",
               "LaneNo": n, "Speed": 40 + n})
    };
    let north = vec![
        vehicle(GATE, "20210901080000", 1, "苏E12345", "5"),
        vehicle(OTHER_GATE, "20210901090000", 2, "苏E12345", "2"),
        vehicle(GATE, "20210901100000", 3, "苏E67890", "2"),
        vehicle(GATE, "20210902080000", 4, "苏E12345", "5"),
    ];
    let upload = |who: &str, path: &str, body: Value| {
        let (status, _, answer) = viid(a, "POST", path, &as_platform(who), &body.to_string());
        assert_eq!(status, 200, "{answer}");
        let codes: Vec<i64> = answer["ResponseStatusListObject"]["ResponseStatusObject"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["StatusCode"].as_i64().unwrap())
            .collect();
        assert!(codes.iter().all(|c| *c == 0), "{answer}");
    };
    upload(
        NORTH_PLATFORM,
        "/VIID/MotorVehicles",
        json!({"MotorVehicleListObject": {"MotorVehicleObject": north.clone()}}),
    );
    upload(
        SOUTH_PLATFORM,
        "/VIID/MotorVehicles",
        json!({"MotorVehicleListObject": {"MotorVehicleObject": [
            vehicle(SOUTH_GATE, "20210901080500", 9, "苏E12345", "5")]}}),
    );
    let face = json!({"FaceID": id_of(GATE, "20210901083000", 5), "DeviceID": GATE,
        "ShotTime": "20210901083000", "ArchiveID": "A-77", "GenderCode": "1",
        "SubImageList": {"SubImageInfoObject": [{"ImageID": "face-1", "Type": "11",
            "FileFormat": "Jpeg", "Data": b64(&jpeg(5, 300))}]}});
    upload(
        NORTH_PLATFORM,
        "/VIID/Faces",
        json!({"FaceListObject": {"FaceObject": [face]}}),
    );
    north
}

/// A query as the north platform (registered from this address).
fn query(a: SocketAddr, target: &str) -> (u16, Value) {
    query_as(a, NORTH_PLATFORM, "north-secret", target)
}

/// One object query as `platform`: asked by its `User-Identify` (enough when it is
/// registered from this address), else challenged and answered with its digest.
fn query_as(a: SocketAddr, platform: &str, password: &str, target: &str) -> (u16, Value) {
    let (status, head, body) = viid(a, "GET", target, &as_platform(platform), "");
    if status != 401 {
        return (status, body);
    }
    let auth = authorization(
        platform,
        password,
        &nonce_of(&head),
        "00000001",
        "GET",
        target,
    );
    let headers = [
        ("Authorization", auth),
        ("User-Identify", platform.to_string()),
    ];
    let (status, _, body) = viid(a, "GET", target, &headers, "");
    (status, body)
}

/// The `MotorVehicleID`s of a vehicle list, in order.
fn vehicle_ids(body: &Value) -> Vec<String> {
    body["MotorVehicleListObject"]["MotorVehicleObject"]
        .as_array()
        .unwrap_or_else(|| panic!("not a vehicle list: {body}"))
        .iter()
        .map(|o| o["MotorVehicleID"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn uploaded_objects_are_queried_back_by_gat_1400_conditions_page_by_page() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    let north = uploaded(a);
    let id = |i: usize| north[i]["MotorVehicleID"].as_str().unwrap().to_string();

    // Everything in the caller's community, oldest first; the south's vehicle (same
    // plate, same day) is not there, nor counted.
    let (status, all) = query(a, "/VIID/MotorVehicles");
    assert_eq!(status, 200, "{all}");
    assert_eq!(vehicle_ids(&all), [id(0), id(1), id(2), id(3)]);
    assert_eq!(all["MotorVehicleListObject"]["TotalNum"], 4);
    // Each object comes back as it was uploaded, every field.
    let first = &all["MotorVehicleListObject"]["MotorVehicleObject"][0];
    for (k, v) in north[0].as_object().unwrap() {
        assert_eq!(&first[k], v, "{k} of {first}");
    }

    // The standard's parenthesised conditions, percent-encoded as clients send them.
    let (status, body) = query(
        a,
        "/VIID/MotorVehicles?(MotorVehicle.PlateNo%20=%20'%E8%8B%8FE12345')&(MotorVehicle.PassTime%20BETWEEN%20'20210901000000'%20and%20'20210901235959')",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(vehicle_ids(&body), [id(0), id(1)]);
    assert_eq!(body["MotorVehicleListObject"]["TotalNum"], 2);

    // Pages: RecordStartNo counts from 1; TotalNum is every match.
    let (_, page) = query(a, "/VIID/MotorVehicles?RecordStartNo=2&PageRecordNum=2");
    assert_eq!(vehicle_ids(&page), [id(1), id(2)]);
    assert_eq!(page["MotorVehicleListObject"]["TotalNum"], 4);
    assert_eq!(page["MotorVehicleListObject"]["RecordStartNo"], 2);
    assert_eq!(page["MotorVehicleListObject"]["PageRecordNum"], 2);
    let (_, last) = query(a, "/VIID/MotorVehicles?RecordStartNo=4&PageRecordNum=2");
    assert_eq!(vehicle_ids(&last), [id(3)]);
    let (_, past) = query(a, "/VIID/MotorVehicles?RecordStartNo=9&PageRecordNum=2");
    assert_eq!(vehicle_ids(&past), Vec::<String>::new());
    assert_eq!(past["MotorVehicleListObject"]["TotalNum"], 4);
    // Newest first, in the standard's and the suffixed forms.
    let (_, newest) = query(
        a,
        "/VIID/MotorVehicles?(Sort%20=%20MotorVehicle.PassTime%20DESC)&(PageRecordNum=1)",
    );
    assert_eq!(vehicle_ids(&newest), [id(3)]);
    let (_, newest) = query(
        a,
        "/VIID/MotorVehicles?MotorVehicle.PassTime.Order=desc&PageRecordNum=2",
    );
    assert_eq!(vehicle_ids(&newest), [id(3), id(2)]);
    // MaxNumRecordReturn caps what is answered in all.
    let (_, capped) = query(
        a,
        "/VIID/MotorVehicles?MaxNumRecordReturn=3&RecordStartNo=3&PageRecordNum=5",
    );
    assert_eq!(vehicle_ids(&capped), [id(2)]);

    // Suffixed ranges, plain pairs, attributes.
    let (_, range) = query(
        a,
        "/VIID/MotorVehicles?MotorVehicle.PassTime.Gte=20210901090000&MotorVehicle.PassTime.Lt=20210902000000",
    );
    assert_eq!(vehicle_ids(&range), [id(1), id(2)]);
    let (_, at_gate) = query(
        a,
        &format!("/VIID/MotorVehicles?DeviceID={GATE}&PlateColor=2"),
    );
    assert_eq!(vehicle_ids(&at_gate), [id(2)]);
    let (_, by_id) = query(
        a,
        &format!(
            "/VIID/MotorVehicles?(MotorVehicle.MotorVehicleID%20IN%20('{}','{}'))",
            id(3),
            id(1)
        ),
    );
    assert_eq!(vehicle_ids(&by_id), [id(1), id(3)]);
    let (_, none) = query(a, "/VIID/MotorVehicles?PlateNo=%E8%8B%8FE00000");
    assert_eq!(vehicle_ids(&none), Vec::<String>::new());
    assert_eq!(none["MotorVehicleListObject"]["TotalNum"], 0);

    // One object by its id; the south's by its id is as unknown as a made-up one.
    let (status, one) = query(a, &format!("/VIID/MotorVehicles/{}", id(2)));
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["MotorVehicleObject"]["MotorVehicleID"], id(2).as_str());
    assert_eq!(one["MotorVehicleObject"]["PlateNo"], "苏E67890");
    let south_id = id_of(SOUTH_GATE, "20210901080500", 9);
    for unknown in [south_id.as_str(), "nothing-like-an-id"] {
        let (status, body) = query(a, &format!("/VIID/MotorVehicles/{unknown}"));
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["ResponseStatusObject"]["StatusCode"], 4, "{body}");
    }
    // The south platform sees its own and nothing of the north.
    let (_, south) = query_as(a, SOUTH_PLATFORM, "south-secret", "/VIID/MotorVehicles");
    assert_eq!(vehicle_ids(&south), vec![south_id.clone()]);

    // Faces: the picture by reference to this server.
    let (status, faces) = query(
        a,
        "/VIID/Faces?(Face.ShotTime%20%3E=%20'20210901000000')&(Face.ArchiveID%20=%20'A-77')",
    );
    assert_eq!(status, 200, "{faces}");
    let face = &faces["FaceListObject"]["FaceObject"][0];
    assert_eq!(face["FaceID"], id_of(GATE, "20210901083000", 5).as_str());
    assert_eq!(face["GenderCode"], "1");
    let picture = &face["SubImageList"]["SubImageInfoObject"][0];
    assert!(picture.get("Data").is_none(), "{picture}");
    assert!(
        picture["StoragePath"]
            .as_str()
            .unwrap()
            .starts_with("http://"),
        "{picture}"
    );
    let (status, one_face) = query(
        a,
        &format!("/VIID/Faces/{}", face["FaceID"].as_str().unwrap()),
    );
    assert_eq!(status, 200);
    assert_eq!(one_face["FaceObject"]["ArchiveID"], "A-77");
    // Persons and non-motor vehicles answer an empty list, not 405.
    for (path, list, item) in [
        ("/VIID/Persons", "PersonListObject", "PersonObject"),
        (
            "/VIID/NonMotorVehicles",
            "NonMotorVehicleListObject",
            "NonMotorVehicleObject",
        ),
    ] {
        let (status, body) = query(a, path);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body[list][item], json!([]), "{body}");
    }

    // Every query is audited under the platform's code.
    let ours = audited_queries(a, NORTH_PLATFORM);
    assert!(
        ours.iter()
            .any(|e| e["endpoint"] == "GET /VIID/MotorVehicles"
                && e["params"]
                    == "proof=registration&peer=127.0.0.1&RecordStartNo=2&PageRecordNum=2"
                && e["results"] == 2
                && e["status"] == 200),
        "{ours:?}"
    );
    assert!(
        ours.iter().any(
            |e| e["endpoint"] == format!("GET /VIID/MotorVehicles/{south_id}")
                && e["status"] == 404
        ),
        "{ours:?}"
    );
}

#[test]
fn conditions_that_cannot_be_answered_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    uploaded(a);
    for (target, field) in [
        (
            "/VIID/MotorVehicles?(MotorVehicle.Speed%20%3E%2060)",
            "MotorVehicle.Speed",
        ),
        ("/VIID/MotorVehicles?PageRecordNum=0", "PageRecordNum"),
        ("/VIID/MotorVehicles?PageRecordNum=100000", "PageRecordNum"),
        ("/VIID/MotorVehicles?RecordStartNo=first", "RecordStartNo"),
        (
            "/VIID/MotorVehicles?MotorVehicle.PassTime.Gte=yesterday",
            "MotorVehicle.PassTime",
        ),
        (
            "/VIID/MotorVehicles?(PlateNo%20=%20'a')%20OR%20(PlateNo%20=%20'b')",
            "OR",
        ),
        ("/VIID/Faces?Face.PlateNo=x", "Face.PlateNo"),
        ("/VIID/Faces?MotorVehicle.PlateNo=x", "MotorVehicle.PlateNo"),
    ] {
        let (status, body) = query(a, target);
        assert_eq!(status, 400, "{target}: {body}");
        let s = &body["ResponseStatusObject"];
        assert_eq!(s["StatusCode"], 4, "{body}");
        assert!(
            s["StatusString"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{field}:")),
            "{target}: {body}"
        );
        assert!(s["RequestURL"]
            .as_str()
            .unwrap()
            .ends_with(target.split('?').next().unwrap()));
    }
    // Refusals are audited too.
    let ours = audited_queries(a, NORTH_PLATFORM);
    assert!(
        ours.iter().any(|e| e["status"] == 400
            && e["params"] == "proof=registration&peer=127.0.0.1&PageRecordNum=0"),
        "{ours:?}"
    );
}

#[test]
fn queries_take_a_registration_from_its_address_or_their_own_digest() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    uploaded(a);
    // Unknown caller: 401 with a challenge, nothing read.
    let stranger = vec![("User-Identify", "32050800005030000099".to_string())];
    let (status, head, _) = viid(a, "GET", "/VIID/MotorVehicles", &stranger, "");
    assert_eq!(status, 401);
    // A platform answering that challenge on the query itself (its target with the
    // query string), as a client that never registered first does.
    let target = "/VIID/MotorVehicles?PageRecordNum=1";
    let auth = authorization(
        NORTH_PLATFORM,
        "north-secret",
        &nonce_of(&head),
        "00000001",
        "GET",
        target,
    );
    let (status, _, body) = viid(
        a,
        "GET",
        target,
        &[
            ("Authorization", auth),
            ("User-Identify", NORTH_PLATFORM.to_string()),
        ],
        "",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(vehicle_ids(&body).len(), 1);
    assert_eq!(body["MotorVehicleListObject"]["TotalNum"], 4);
    // Registered by digest, then by `User-Identify` alone, as nanguantong/gat-1400
    // and wvp-GB28181-pro query: answered as an upload is, by list and by id, within
    // its communities and audited.
    let (status, _, body) = viid(a, "GET", target, &as_platform(NORTH_PLATFORM), "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["MotorVehicleListObject"]["TotalNum"], 4, "{body}");
    let first = vehicle_ids(&body)[0].clone();
    let by_id = format!("/VIID/MotorVehicles/{first}");
    let (status, _, one) = viid(a, "GET", &by_id, &as_platform(NORTH_PLATFORM), "");
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["MotorVehicleObject"]["MotorVehicleID"], first.as_str());
    let south = id_of(SOUTH_GATE, "20210901080500", 9);
    let (status, _, body) = viid(
        a,
        "GET",
        &format!("/VIID/MotorVehicles/{south}"),
        &as_platform(NORTH_PLATFORM),
        "",
    );
    assert_eq!(
        status, 404,
        "another community's object stays unseen: {body}"
    );
    let ours = audited_queries(a, NORTH_PLATFORM);
    assert!(
        ours.iter()
            .any(|e| e["endpoint"] == format!("GET {by_id}") && e["status"] == 200),
        "{ours:?}"
    );
    // The same `User-Identify` from another address than the one that registered is
    // no registration: challenged, nothing read.
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {a}\r\nUser-Identify: {NORTH_PLATFORM}\r\nConnection: close\r\n\r\n"
    );
    let (status, body) = crate::gat1400::send_from("127.0.0.2", a, request.as_bytes());
    assert_eq!(status, 401, "{body}");
    // Unregistered, its `User-Identify` alone is challenged again.
    let (status, _, _) = viid(
        a,
        "POST",
        "/VIID/System/UnRegister",
        &as_platform(NORTH_PLATFORM),
        &json!({"UnRegisterObject": {"DeviceID": NORTH_PLATFORM}}).to_string(),
    );
    assert_eq!(status, 200);
    let (status, head, body) = viid(a, "GET", target, &as_platform(NORTH_PLATFORM), "");
    assert_eq!(status, 401, "{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: digest"),
        "{head}"
    );
    // A camera proving itself by its digest reads nothing: queries are a platform's.
    let camera = "32050800011190000077";
    let r = put_json(
        a,
        &format!("/v1/devices/{camera}"),
        &json!({"community": "3205080001", "kind": "checkpoint_camera", "direction": "in",
                "gat1400": {"password": "camera-secret"}}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let (status, body) = query_as(a, camera, "camera-secret", target);
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["ResponseStatusObject"]["StatusCode"], 4, "{body}");
    // Nor once registered, by its `User-Identify` alone.
    assert_eq!(
        register(a, "/VIID/System/Register", camera, "camera-secret").0,
        200
    );
    let (status, _, body) = viid(a, "GET", target, &as_platform(camera), "");
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["ResponseStatusObject"]["StatusCode"], 4, "{body}");
}

/// The audit entries of `platform`'s object queries.
fn audited_queries(a: SocketAddr, platform: &str) -> Vec<Value> {
    get(a, "/v1/audit").body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["key"] == format!("gat1400:{platform}"))
        .cloned()
        .collect()
}

/// A platform's keepalive body (its code in `KeepaliveObject`).
const KEEPALIVE: &str = r#"{"KeepaliveObject":{"DeviceID":"32050800005030000001"}}"#;

/// A registration proves a query's caller only by the address that registered: never
/// through a proxy (every caller's address would be the proxy's), never from another
/// address even with `--viid-registration-any-address` (that lets a code send, not
/// read). A digest on the query proves it anywhere, registered or not; the audit entry
/// says which proof, and from where.
#[test]
fn a_query_by_registration_is_refused_through_a_proxy_or_from_another_address() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |c| c.viid_registration_any_address = true);
    let a = server.addr;
    uploaded(a);
    let target = "/VIID/MotorVehicles?PageRecordNum=1";
    // By its registration from its own address: answered, audited as such.
    let (status, _, body) = viid(a, "GET", target, &as_platform(NORTH_PLATFORM), "");
    assert_eq!(status, 200, "{body}");
    let entries = audited_queries(a, NORTH_PLATFORM);
    let last = entries.last().unwrap();
    assert_eq!(
        last["params"], "proof=registration&peer=127.0.0.1&PageRecordNum=1",
        "{last}"
    );
    assert_eq!(last["status"], 200, "{last}");
    // The same `User-Identify` through a proxy on this host: challenged, nothing read
    // and nothing audited — whichever header says it came through one.
    for (header, value) in [
        ("X-Forwarded-For", "203.0.113.9"),
        ("Forwarded", "for=203.0.113.9;proto=https"),
        ("X-Real-IP", "203.0.113.9"),
    ] {
        let headers = [
            ("User-Identify", NORTH_PLATFORM.to_string()),
            (header, value.to_string()),
        ];
        let (status, head, body) = viid(a, "GET", target, &headers, "");
        assert_eq!(status, 401, "{header}: {body}");
        assert!(
            head.to_ascii_lowercase()
                .contains("www-authenticate: digest"),
            "{head}"
        );
        assert!(body.get("MotorVehicleListObject").is_none(), "{body}");
        // By id too.
        let by_id = format!("/VIID/MotorVehicles/{}", id_of(GATE, "20210901080000", 1));
        let (status, _, body) = viid(a, "GET", &by_id, &headers, "");
        assert_eq!(status, 401, "{header}: {body}");
    }
    assert_eq!(audited_queries(a, NORTH_PLATFORM).len(), entries.len());
    // The challenge answered on the query itself is taken through the proxy.
    let headers = [
        ("User-Identify", NORTH_PLATFORM.to_string()),
        ("X-Forwarded-For", "203.0.113.9".to_string()),
    ];
    let (_, head, _) = viid(a, "GET", target, &headers, "");
    let auth = authorization(
        NORTH_PLATFORM,
        "north-secret",
        &nonce_of(&head),
        "00000001",
        "GET",
        target,
    );
    let signed = [
        ("Authorization", auth.clone()),
        ("User-Identify", NORTH_PLATFORM.to_string()),
        ("X-Forwarded-For", "203.0.113.9".to_string()),
    ];
    let (status, _, body) = viid(a, "GET", target, &signed, "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["MotorVehicleListObject"]["TotalNum"], 4, "{body}");
    let entries = audited_queries(a, NORTH_PLATFORM);
    assert_eq!(
        entries.last().unwrap()["params"],
        "proof=digest&peer=127.0.0.1&PageRecordNum=1",
        "{entries:?}"
    );
    // That digest replayed through the proxy is refused (stale), not taken as the
    // registration it would fall back to without a proxy.
    let (status, head, body) = viid(a, "GET", target, &signed, "");
    assert_eq!(status, 401, "{body}");
    assert!(head.to_ascii_lowercase().contains("stale=true"), "{head}");

    // From another address, its `User-Identify` alone reads nothing although
    // `--viid-registration-any-address` is set (nothing audited either).
    let before = audited_queries(a, NORTH_PLATFORM).len();
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {a}\r\nUser-Identify: {NORTH_PLATFORM}\r\nConnection: close\r\n\r\n"
    );
    let (status, body) = crate::gat1400::send_from("127.0.0.2", a, request.as_bytes());
    assert_eq!(status, 401, "{body}");
    assert!(body.get("MotorVehicleListObject").is_none(), "{body}");
    assert_eq!(audited_queries(a, NORTH_PLATFORM).len(), before);
    // A keepalive from there, which any-address takes, renews the registration but
    // does not move it: the query from there is still refused.
    let keepalive = format!(
        "POST /VIID/System/Keepalive HTTP/1.1\r\nHost: {a}\r\nUser-Identify: {NORTH_PLATFORM}\r\n\
         Content-Type: application/VIID+JSON\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        KEEPALIVE.len(),
        KEEPALIVE
    );
    let (status, body) = crate::gat1400::send_from("127.0.0.2", a, keepalive.as_bytes());
    assert_eq!(status, 200, "{body}");
    let (status, body) = crate::gat1400::send_from("127.0.0.2", a, request.as_bytes());
    assert_eq!(status, 401, "{body}");
    assert_eq!(audited_queries(a, NORTH_PLATFORM).len(), before);
    // Still bound where it registered: from there its `User-Identify` reads.
    let (status, _, body) = viid(a, "GET", target, &as_platform(NORTH_PLATFORM), "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(audited_queries(a, NORTH_PLATFORM).len(), before + 1);

    // A platform that never registered queries with a digest on the query alone.
    let west = "32050800005030000003";
    let r = put_json(
        a,
        &format!("/v1/devices/{west}"),
        &json!({"community": "3205080001", "kind": "platform",
                "gat1400": {"password": "west-secret"}}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let (status, head, _) = viid(a, "GET", target, &as_platform(west), "");
    assert_eq!(status, 401);
    let auth = authorization(
        west,
        "west-secret",
        &nonce_of(&head),
        "00000001",
        "GET",
        target,
    );
    let headers = [("Authorization", auth), ("User-Identify", west.to_string())];
    let (status, _, body) = viid(a, "GET", target, &headers, "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["MotorVehicleListObject"]["TotalNum"], 4, "{body}");
    let entries = audited_queries(a, west);
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(
        entries[0]["params"], "proof=digest&peer=127.0.0.1&PageRecordNum=1",
        "{entries:?}"
    );
}

#[test]
fn viid_paths_equal_under_rfc_3986_are_answered_alike_and_case_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    uploaded(a);
    let (_, canonical) = query(a, "/VIID/MotorVehicles?PageRecordNum=2");
    assert_eq!(vehicle_ids(&canonical).len(), 2);
    for same in [
        "/VIID/%4DotorVehicles?PageRecordNum=2",
        "/VIID/%4dotorVehicles?PageRecordNum=2",
        "/VIID/MotorVehicles/?PageRecordNum=2",
        "/%56IID/MotorVehicles/?PageRecordNum=2",
    ] {
        let (status, body) = query(a, same);
        assert_eq!(
            (status, vehicle_ids(&body)),
            (200, vehicle_ids(&canonical)),
            "{same}"
        );
    }
    // An upload to `/VIID/Faces/` is an upload to `/VIID/Faces`.
    let face = json!({"FaceListObject": {"FaceObject": [{"FaceID": id_of(GATE, "20210903080000", 6),
        "DeviceID": GATE, "ShotTime": "20210903080000"}]}});
    let (status, _, answer) = viid(
        a,
        "POST",
        "/VIID/Faces/",
        &as_platform(NORTH_PLATFORM),
        &face.to_string(),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["ResponseStatusListObject"]["ResponseStatusObject"][0]["StatusCode"],
        0
    );
    // A digest over the escaped form verifies for the request sent that way.
    let (status, head, _) = viid(a, "GET", "/VIID/%46aces", &[], "");
    assert_eq!(status, 401);
    let auth = authorization(
        NORTH_PLATFORM,
        "north-secret",
        &nonce_of(&head),
        "00000001",
        "GET",
        "/VIID/%46aces",
    );
    let (status, _, body) = viid(a, "GET", "/VIID/%46aces", &[("Authorization", auth)], "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["FaceListObject"]["FaceObject"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Another case is another path: 404 for every method, naming the one meant.
    for method in ["GET", "POST", "PUT", "DELETE"] {
        let (status, _, body) = viid(
            a,
            method,
            "/VIID/motorvehicles",
            &as_platform(NORTH_PLATFORM),
            "{}",
        );
        assert_eq!(status, 404, "{method}: {body}");
        assert!(
            body["ResponseStatusObject"]["StatusString"]
                .as_str()
                .unwrap()
                .contains("/VIID/MotorVehicles"),
            "{body}"
        );
    }
    let (status, _, _) = viid(a, "GET", "/VIID/faces/x", &as_platform(NORTH_PLATFORM), "");
    assert_eq!(status, 404);
    // A reserved character escaped is data, not a separator.
    let (status, _, _) = viid(a, "GET", "/VIID%2FFaces", &as_platform(NORTH_PLATFORM), "");
    assert_eq!(status, 404);
}

/// `TollgateID` asks where an object was taken: its own `TollgateID`, or (none given,
/// or the same as its device) its device. A second camera at the gate's tollgate is
/// found by the tollgate and not by its own code as a tollgate; `DeviceID` still asks
/// for the device that took it. (It used to be read as `DeviceID`: a probe's camera
/// at a tollgate was never found by it.)
#[test]
fn a_tollgate_finds_its_own_and_other_cameras_objects() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    let north = uploaded(a);
    let id = |i: usize| north[i]["MotorVehicleID"].as_str().unwrap().to_string();
    let beside = id_of(OTHER_GATE, "20210901110000", 7);
    let body = json!({"MotorVehicleListObject": {"MotorVehicleObject": [
        {"MotorVehicleID": beside, "DeviceID": OTHER_GATE, "TollgateID": GATE,
         "PassTime": "20210901110000", "PlateNo": "苏E24680", "PlateColor": "2"}]}});
    let (status, _, answer) = viid(
        a,
        "POST",
        "/VIID/MotorVehicles",
        &as_platform(NORTH_PLATFORM),
        &body.to_string(),
    );
    assert_eq!(status, 200, "{answer}");
    let asked = |conditions: &str| {
        let (status, body) = query(a, &format!("/VIID/MotorVehicles?{conditions}"));
        assert_eq!(status, 200, "{conditions}: {body}");
        vehicle_ids(&body)
    };
    let at_gate = [id(0), id(2), beside.clone(), id(3)];
    assert_eq!(asked(&format!("TollgateID={GATE}")), at_gate);
    assert_eq!(
        asked(&format!("(MotorVehicle.TollgateID%20=%20'{GATE}')")),
        at_gate
    );
    assert_eq!(asked(&format!("TollgateID={OTHER_GATE}")), [id(1)]);
    assert_eq!(
        asked(&format!("DeviceID={OTHER_GATE}")),
        [id(1), beside.clone()]
    );
    assert_eq!(
        asked(&format!("TollgateID={GATE}&DeviceID={OTHER_GATE}")),
        [beside]
    );
}
