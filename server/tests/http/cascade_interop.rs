//! GA/T 1400 cascade against platforms as wvp-GB28181-pro (`dev/1400`) and
//! ty-wssf/fliad-viid behave: an upper platform that subscribes to us by its
//! `User-Identify` alone once we registered with it, receivers that answer per object
//! with the codes they use, cancels by `PUT /VIID/Subscribes/<ID>`, dispositions of
//! several platforms, notifications checked against the subscriptions we placed.
//!
//! The other platform is a real HTTP server in the test ([`Platform`]): it records
//! every request and answers as its closure says.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::cascade::{catalog, gate_registered, subscribed};
use crate::gat1400::{b64, jpeg, put_json, register, viid};
use crate::support::{get, post, start, wait_until, GATE};
use sightline_testkit::platform::{one, per_object, Platform};

/// Our 视图库 id (`serve`'s default `--viid-server-id`).
pub(crate) const SERVER_ID: &str = "32050000005030000001";
/// The upper platform's 视图库 id.
pub(crate) const UPPER: &str = "32050000005030000099";
/// Our id at the upper platform (the upstream's `device_id`).
pub(crate) const OURS: &str = "32050800005030000077";
/// A registered platform of community North (`cascade::catalog`).
pub(crate) const PLATFORM: &str = "32050800005030000001";
/// A tollgate of another community (South).
pub(crate) const SOUTH_GATE: &str = "32050901011210000001";

pub(crate) fn statuses(answer: &Value) -> Vec<Value> {
    match &answer["ResponseStatusListObject"]["ResponseStatusObject"] {
        Value::Array(a) => a.clone(),
        one => vec![one.clone()],
    }
}

pub(crate) fn vehicle(device: &str, i: u64, picture: &[u8]) -> Value {
    let time = format!("20210901{:02}0000", 8 + i);
    json!({"MotorVehicleID": format!("{device}02{time}{i:05}02{i:05}"), "InfoKind": 1,
        "DeviceID": device, "TollgateID": device, "PassTime": time,
        "PlateNo": format!("苏E7CA{i:02}"), "PlateColor": "2",
        "SubImageList": {"SubImageInfoObject": [{"ImageID": format!("{device}02{time}{i:05}"),
            "EventSort": 2, "DeviceID": device, "Type": "01", "FileFormat": "Jpeg",
            "ShotTime": time, "Data": b64(picture)}]}})
}

pub(crate) fn vehicles(objects: &[Value]) -> String {
    json!({"MotorVehicleListObject": {"MotorVehicleObject": objects}}).to_string()
}

/// The objects of every notification the platform took.
pub(crate) fn notified(p: &Platform) -> Vec<(String, Value)> {
    p.taken("POST", "/VIID/SubscribeNotifications")
        .into_iter()
        .flat_map(|t| {
            let ns = t.body["SubscribeNotificationListObject"]["SubscribeNotificationObject"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            ns.into_iter().flat_map(move |n| {
                let head = t.head.clone();
                n["MotorVehicleObjectList"]["MotorVehicleObject"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |o| (head.clone(), o))
            })
        })
        .collect()
}

/// The South community and its tollgate (password "s").
pub(crate) fn south(a: SocketAddr) {
    let r = put_json(a, "/v1/communities/3205090001", &json!({"name": "South"}));
    assert_eq!(r.status, 201, "{}", r.body);
    let r = put_json(
        a,
        &format!("/v1/devices/{SOUTH_GATE}"),
        &json!({"community": "3205090001", "kind": "checkpoint_camera", "direction": "in",
                "gat1400": {"password": "s"}}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
}

/// We are the lower platform: we register at the upper (its id given as
/// `server_id`), and the upper — as wvp-GB28181-pro's `SubscribeClient` does — POSTs
/// `/VIID/Subscribes` to us with only `User-Identify` (no digest). While our
/// registration there is live, that exact id subscribes, lists its subscriptions and
/// reads the tollgates of the communities the upstream reads, and nothing else (no
/// uploads, no dispositions; another id is refused). Its notifications carry the id
/// we registered there with as `User-Identify`, and pictures as base64 `Data` (what
/// wvp's receiver keeps); the upstream's own uploads carry `Data` too. Deleting the
/// upstream unregisters there (as wvp does on shutdown) and closes the door again.
#[test]
fn an_upper_platform_subscribes_by_user_identify_while_we_are_registered_there() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    catalog(a);
    south(a);
    let upper = Platform::start(|t| match t.path.as_str() {
        "/VIID/System/Register" | "/VIID/System/Keepalive" => (200, one(0, "正常")),
        _ => (200, per_object(t, 0, "正常")),
    });
    let as_upper = [("User-Identify", UPPER.to_string())];
    let subscribe = json!({"SubscribeListObject": {"SubscribeObject": [{
        "SubscribeID": "320500000000000099032021090108000000001", "Title": "上级订阅",
        "SubscribeDetail": "13", "ResourceURI": SERVER_ID, "ApplicantName": "wvp",
        "ApplicantOrg": "上级", "BeginTime": "20210101000000", "EndTime": "20991231235959",
        "ReceiveAddr": format!("http://{}/VIID/SubscribeNotifications", upper.addr),
        "ReportInterval": 3, "Reason": "级联", "OperateType": 0, "SubscribeStatus": 0,
        "ResourceClass": 4, "ResultImageDeclare": "1"}]}})
    .to_string();
    let (status, _, _) = viid(a, "POST", "/VIID/Subscribes", &as_upper, &subscribe);
    assert_eq!(status, 401, "not registered there yet: a stranger");

    let up = post(
        a,
        "/v1/upstreams",
        "application/json",
        &json!({"url": format!("http://{}", upper.addr), "password": "up", "server_id": UPPER,
                "device_id": OURS, "communities": ["3205080001"], "keepalive_s": 1, "from": 0})
        .to_string(),
    );
    assert_eq!(up.status, 201, "{}", up.body);
    let up_id = up.body["id"].as_str().unwrap().to_string();
    assert_eq!(up.body["image_data"], "base64", "Data by default");
    assert!(wait_until(Duration::from_secs(20), || get(
        a,
        &format!("/v1/upstreams/{up_id}")
    )
    .body["status"]["registered"]
        == true));

    let (status, _, answer) = viid(a, "POST", "/VIID/Subscribes", &as_upper, &subscribe);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(statuses(&answer)[0]["StatusCode"], 0, "{answer}");
    let (status, _, listed) = viid(a, "GET", "/VIID/Subscribes", &as_upper, "");
    assert_eq!(status, 200);
    assert_eq!(
        listed["SubscribeListObject"]["SubscribeObject"][0]["Title"],
        "上级订阅"
    );
    let (status, _, tollgates) = viid(a, "GET", "/VIID/Tollgates", &as_upper, "");
    assert_eq!(status, 200, "{tollgates}");
    let ids: Vec<&str> = tollgates["TollgateListObject"]["TollgateObject"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["TollgateID"].as_str())
        .collect();
    assert_eq!(ids, [GATE], "the upstream's communities only: {tollgates}");
    // Exactly that id, and only the routes an upper uses.
    let spoofed = [("User-Identify", "32050000005030000098".to_string())];
    assert_eq!(
        viid(a, "POST", "/VIID/Subscribes", &spoofed, &subscribe).0,
        401
    );
    let object = vehicle(GATE, 9, &jpeg(9, 1000));
    assert_eq!(
        viid(
            a,
            "POST",
            "/VIID/MotorVehicles",
            &as_upper,
            &vehicles(&[object])
        )
        .0,
        401,
        "an upper does not upload by User-Identify"
    );
    let disposition = json!({"DispositionListObject": {"DispositionObject": [
        {"DispositionID": "1", "DispositionCategory": "2", "TargetFeature": "苏E1"}]}});
    assert_eq!(
        viid(
            a,
            "POST",
            "/VIID/Dispositions",
            &as_upper,
            &disposition.to_string()
        )
        .0,
        401
    );

    // A North gate and a South gate upload a vehicle each.
    let gate = gate_registered(a);
    assert_eq!(register(a, "/VIID/System/Register", SOUTH_GATE, "s").0, 200);
    let south_gate = [("User-Identify", SOUTH_GATE.to_string())];
    let picture = jpeg(1, 50_000);
    let north_vehicle = vehicle(GATE, 1, &picture);
    for (who, o) in [
        (&gate, north_vehicle.clone()),
        (&south_gate, vehicle(SOUTH_GATE, 2, &jpeg(2, 1000))),
    ] {
        let (status, _, answer) = viid(a, "POST", "/VIID/MotorVehicles", who, &vehicles(&[o]));
        assert_eq!(status, 200);
        assert_eq!(statuses(&answer)[0]["StatusCode"], 0, "{answer}");
    }
    assert!(
        wait_until(Duration::from_secs(20), || !notified(&upper).is_empty()),
        "no notification: {:?}",
        upper.taken
    );
    std::thread::sleep(Duration::from_millis(1500));
    let got = notified(&upper);
    assert_eq!(got.len(), 1, "North's vehicle only: {got:?}");
    let (head, o) = &got[0];
    assert!(head.contains(&format!("user-identify: {OURS}")), "{head}");
    assert_eq!(o["MotorVehicleID"], north_vehicle["MotorVehicleID"]);
    let sub = &o["SubImageList"]["SubImageInfoObject"][0];
    assert_eq!(sub["Data"], b64(&picture), "the picture itself");
    assert!(sub.get("StoragePath").is_none(), "{sub}");
    // The upstream's uploads: North's vehicle, its picture as Data.
    let uploads = upper.taken("POST", "/VIID/MotorVehicles");
    let uploaded: Vec<Value> = uploads
        .iter()
        .flat_map(|t| {
            t.body["MotorVehicleListObject"]["MotorVehicleObject"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(uploaded.len(), 1, "{uploaded:?}");
    assert_eq!(
        uploaded[0]["SubImageList"]["SubImageInfoObject"][0]["Data"],
        b64(&picture)
    );

    let gone = crate::support::call(a, "DELETE", &format!("/v1/upstreams/{up_id}"), "", b"");
    assert_eq!(gone.status, 200);
    assert_eq!(gone.body["unregistered"], true, "{}", gone.body);
    let unregister = upper.taken("POST", "/VIID/System/UnRegister");
    assert_eq!(unregister.len(), 1, "{:?}", upper.taken);
    assert_eq!(unregister[0].body["UnRegisterObject"]["DeviceID"], OURS);
    assert_eq!(viid(a, "GET", "/VIID/Subscribes", &as_upper, "").0, 401);
}

/// A server shutting down unregisters at its upstreams (`POST /VIID/System/UnRegister`),
/// as wvp-GB28181-pro does, so the upper does not take it for online until it times
/// out.
#[test]
fn shutdown_unregisters_at_the_upstreams() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    let upper = Platform::start(|_| (200, one(0, "正常")));
    let up = post(
        a,
        "/v1/upstreams",
        "application/json",
        &json!({"url": format!("http://{}", upper.addr), "password": "up", "device_id": OURS,
                "server_id": UPPER})
        .to_string(),
    );
    assert_eq!(up.status, 201, "{}", up.body);
    assert!(wait_until(Duration::from_secs(20), || !upper
        .taken("POST", "/VIID/System/Register")
        .is_empty()));
    assert!(upper.taken("POST", "/VIID/System/UnRegister").is_empty());
    drop(server);
    let gone = upper.taken("POST", "/VIID/System/UnRegister");
    assert_eq!(gone.len(), 1, "{:?}", upper.taken);
    assert_eq!(gone[0].body["UnRegisterObject"]["DeviceID"], OURS);
    assert!(gone[0].head.contains(&format!("user-identify: {OURS}")));
}

/// An upstream given no `server_id` learns it: the upper's `GET /VIID/System/Time`
/// answers its `VIIDServerID` (the Register answer's `Id` names us, as wvp's does).
#[test]
fn an_upstream_learns_the_upper_platforms_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    let upper = Platform::start(|t| match t.path.as_str() {
        "/VIID/System/Register" => (
            200,
            json!({"ResponseStatusObject": {"Id": OURS, "StatusCode": 0, "StatusString": "正常"}})
                .to_string(),
        ),
        "/VIID/System/Time" => (
            200,
            json!({"SystemTimeObject": {"VIIDServerID": UPPER, "TimeMode": "1",
                   "LocalTime": "20210901080000", "TimeZone": "Asia/Shanghai"}})
            .to_string(),
        ),
        _ => (200, one(0, "正常")),
    });
    let up = post(
        a,
        "/v1/upstreams",
        "application/json",
        &json!({"url": format!("http://{}", upper.addr), "password": "up", "device_id": OURS})
            .to_string(),
    );
    assert_eq!(up.status, 201, "{}", up.body);
    let as_upper = [("User-Identify", UPPER.to_string())];
    assert!(
        wait_until(Duration::from_secs(20), || viid(
            a,
            "GET",
            "/VIID/Subscribes",
            &as_upper,
            ""
        )
        .0 == 200),
        "{:?}",
        upper.taken
    );
}

/// A remote subscription — without a password: this lower knows us by `User-Identify`
/// — goes out with `BeginTime` (now) and `EndTime` (20991231235959) when none are
/// given: wvp-GB28181-pro takes one without them as
/// already ended. Deleting it cancels it as the standard does — `PUT
/// /VIID/Subscribes/<ID>` with `SubscribeCancelOrg`, `SubscribeCancelPerson`,
/// `CancelTime`, `CancelReason` — and while the other side does not take the cancel it
/// stays, `cancelling`, tried again until taken.
#[test]
fn remote_subscriptions_carry_their_window_and_are_cancelled_until_taken() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    let refuse_cancel = Arc::new(AtomicI64::new(1));
    let refusing = refuse_cancel.clone();
    let lower = Platform::start(move |t| match t.method.as_str() {
        "PUT" | "DELETE" if refusing.load(Ordering::SeqCst) == 1 => (503, String::new()),
        _ => (200, per_object(t, 0, "正常")),
    });
    let before = sightline_server::gat1400::local_time(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
            - 2000,
    );
    let r = post(
        a,
        "/v1/remote-subscriptions",
        "application/json",
        &json!({"url": format!("http://{}", lower.addr), "kinds": ["vehicle"],
                "receive_addr": format!("http://{a}/VIID/SubscribeNotifications")})
        .to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    let subscribe_id = r.body["subscribe_id"].as_str().unwrap().to_string();
    assert!(wait_until(Duration::from_secs(20), || !lower
        .taken("POST", "/VIID/Subscribes")
        .is_empty()));
    let placed = &lower.taken("POST", "/VIID/Subscribes")[0].body["SubscribeListObject"]
        ["SubscribeObject"][0];
    let begin = placed["BeginTime"].as_str().unwrap_or("");
    assert!(
        begin.len() == 14 && begin >= before.as_str(),
        "BeginTime {begin:?} is now (after {before})"
    );
    assert_eq!(placed["EndTime"], "20991231235959");

    let d = crate::support::call(
        a,
        "DELETE",
        &format!("/v1/remote-subscriptions/{id}"),
        "",
        b"",
    );
    assert_eq!((d.status, &d.body["cancelled"]), (200, &json!(false)));
    let cancel = lower.taken("PUT", &format!("/VIID/Subscribes/{subscribe_id}"));
    assert!(!cancel.is_empty(), "{:?}", lower.taken);
    let o = &cancel[0].body["SubscribeObject"];
    assert_eq!(o["SubscribeID"], subscribe_id.as_str());
    for field in [
        "SubscribeCancelOrg",
        "SubscribeCancelPerson",
        "CancelTime",
        "CancelReason",
    ] {
        assert!(
            o[field].as_str().is_some_and(|s| !s.is_empty()),
            "{field}: {o}"
        );
    }
    let listed = || get(a, "/v1/remote-subscriptions").body["remote_subscriptions"].clone();
    assert_eq!(listed()[0]["cancelling"], true, "{}", listed());
    refuse_cancel.store(0, Ordering::SeqCst);
    assert!(
        wait_until(Duration::from_secs(20), || listed() == json!([])),
        "{}",
        listed()
    );

    // A platform that already has the SubscribeID (a placement it took before we
    // heard its answer) says so: placed, not retried every few seconds.
    let knows_it = Platform::start(|t| (200, per_object(t, 1, "订阅ID已存在")));
    let r = post(
        a,
        "/v1/remote-subscriptions",
        "application/json",
        &json!({"url": format!("http://{}", knows_it.addr),
                "receive_addr": format!("http://{a}/VIID/SubscribeNotifications")})
        .to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(
        wait_until(Duration::from_secs(20), || listed()[0]["status"]["placed"]
            == true),
        "{}",
        listed()
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(knows_it.taken("POST", "/VIID/Subscribes").len(), 1);
}

/// A face disposition's hit (category 1: a person) goes as `PersonObject` — the key
/// GA/T 1400 and wvp-GB28181-pro's `DispositionNotificationObject` define — carrying
/// the face as uploaded.
#[test]
fn a_face_hit_is_notified_as_a_person_object_as_uploaded() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    catalog(a);
    let receiver = Platform::start(|t| (200, per_object(t, 0, "正常")));
    assert_eq!(register(a, "/VIID/System/Register", PLATFORM, "p").0, 200);
    let ident = [("User-Identify", PLATFORM.to_string())];
    let body = json!({"DispositionListObject": {"DispositionObject": [{
        "DispositionID": "320500000000000001202109010800009", "Title": "在逃", "DispositionCategory": "1",
        "TargetFeature": "A77", "OperateType": 0,
        "ReceiveAddr": format!("http://{}/VIID/DispositionNotifications", receiver.addr)}]}});
    let (_, _, answer) = viid(a, "POST", "/VIID/Dispositions", &ident, &body.to_string());
    assert_eq!(statuses(&answer)[0]["StatusCode"], 0, "{answer}");
    let face = json!({"FaceID": format!("{GATE}0620210901083000000010600001"), "DeviceID": GATE,
        "ShotTime": "20210901083000", "ArchiveID": "A77", "GenderCode": "1"});
    let gate = gate_registered(a);
    let (_, _, answer) = viid(
        a,
        "POST",
        "/VIID/Faces",
        &gate,
        &json!({"FaceListObject": {"FaceObject": [face]}}).to_string(),
    );
    assert_eq!(statuses(&answer)[0]["StatusCode"], 0, "{answer}");
    assert!(wait_until(Duration::from_secs(20), || !receiver
        .taken("POST", "/VIID/DispositionNotifications")
        .is_empty()));
    let got = receiver.taken("POST", "/VIID/DispositionNotifications")[0]
        .body
        .clone();
    let n = &got["DispositionNotificationListObject"]["DispositionNotificationObject"][0];
    assert_eq!(
        n["DispositionID"], "320500000000000001202109010800009",
        "{got}"
    );
    assert!(n.get("FaceObject").is_none(), "{got}");
    assert_eq!(n["PersonObject"]["FaceID"], face["FaceID"], "{got}");
    assert_eq!(n["PersonObject"]["GenderCode"], "1", "as uploaded: {got}");
    assert_eq!(n["CntObjectID"], face["FaceID"]);
}

/// Receivers answer object by object, and some refusals are for good: an object they
/// find wrong (`StatusCode` 8) is passed and counted (`refused`, `/metrics`), not
/// resent forever ahead of the rest; "订阅不存在" (wvp-GB28181-pro's answer for a
/// subscription it does not know) stops delivery instead of resending every minute;
/// an upstream answering "已存在" (a resend after a crash) has the object taken.
#[test]
fn refusals_for_good_are_passed_and_an_unknown_subscription_stops_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    catalog(a);
    let mode = Arc::new(AtomicI64::new(8));
    let attempts = Arc::new(AtomicUsize::new(0));
    let (m, n) = (mode.clone(), attempts.clone());
    let receiver = Platform::start(move |t| {
        if t.path.starts_with("/VIID/System/") {
            return (200, one(0, "正常"));
        }
        n.fetch_add(1, Ordering::SeqCst);
        match m.load(Ordering::SeqCst) {
            8 => (200, per_object(t, 8, "InvalidJSONContent: PlateNo")),
            1 => (200, per_object(t, 1, "订阅不存在")),
            _ => (200, per_object(t, 0, "正常")),
        }
    });
    subscribed(
        a,
        json!({"SubscribeID": "320500000000000001032021090108000000001", "SubscribeDetail": "13",
               "ReceiveAddr": format!("http://{}/VIID/SubscribeNotifications", receiver.addr),
               "ImageData": 0}),
    );
    let subscription = || {
        get(a, "/v1/subscriptions").body["subscriptions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == "viid-320500000000000001032021090108000000001")
            .cloned()
            .unwrap()
    };
    let gate = gate_registered(a);
    let upload = |i: u64| {
        let (status, _, answer) = viid(
            a,
            "POST",
            "/VIID/MotorVehicles",
            &gate,
            &vehicles(&[vehicle(GATE, i, &jpeg(i, 500))]),
        );
        assert_eq!(
            (status, statuses(&answer)[0]["StatusCode"].clone()),
            (200, json!(0))
        );
    };
    upload(1);
    assert!(
        wait_until(Duration::from_secs(20), || subscription()["status"]
            ["refused"]
            == 1),
        "{}",
        subscription()
    );
    let s = subscription();
    assert_eq!(s["status"]["delivered"], 0, "{s}");
    assert!(
        s["status"]["last_refusal"]
            .as_str()
            .unwrap()
            .contains("StatusCode 8"),
        "{s}"
    );
    mode.store(0, Ordering::SeqCst);
    upload(2);
    assert!(wait_until(Duration::from_secs(20), || subscription()
        ["status"]["delivered"]
        == 1));
    let got = notified(&receiver);
    assert_eq!(got.len(), 2, "the refused one once, then the next: {got:?}");
    assert!(got[1].1["MotorVehicleID"]
        .as_str()
        .unwrap()
        .ends_with("0200002"));
    let metrics = crate::support::send(
        a,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let metrics = String::from_utf8_lossy(&metrics.body).to_string();
    assert!(
        metrics.contains("sightline_delivery_refused_total{id=\"viid-320500000000000001032021090108000000001\",target=\"subscription\"} 1"),
        "{metrics}"
    );

    mode.store(1, Ordering::SeqCst);
    let before = attempts.load(Ordering::SeqCst);
    upload(3);
    assert!(wait_until(Duration::from_secs(20), || subscription()
        ["status"]["stopped"]
        == true));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        before + 1,
        "not resent after 订阅不存在"
    );
    let s = subscription();
    assert!(
        s["status"]["last_error"]
            .as_str()
            .unwrap()
            .contains("订阅不存在"),
        "{s}"
    );

    // An upstream answering "already exists" has the object taken.
    let upper = Platform::start(|t| match t.path.as_str() {
        "/VIID/System/Register" | "/VIID/System/Keepalive" => (200, one(0, "正常")),
        _ => (200, per_object(t, 1, "数据已存在")),
    });
    let up = post(
        a,
        "/v1/upstreams",
        "application/json",
        &json!({"url": format!("http://{}", upper.addr), "password": "p", "from": 0,
                "kinds": ["vehicle"]})
        .to_string(),
    );
    assert_eq!(up.status, 201, "{}", up.body);
    let up_id = up.body["id"].as_str().unwrap().to_string();
    assert!(
        wait_until(Duration::from_secs(20), || get(
            a,
            &format!("/v1/upstreams/{up_id}")
        )
        .body["status"]["delivered"]
            == 3),
        "{}",
        get(a, &format!("/v1/upstreams/{up_id}")).body
    );
}

/// Dispositions belong to the platform that made them: another platform can neither
/// change nor revoke one (status 4), and a disposition's id never reaches a
/// `/v1/watchlists` list.
#[test]
fn dispositions_are_their_platforms_own() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    catalog(a);
    let other = "32050800005030000002";
    let r = put_json(
        a,
        &format!("/v1/devices/{other}"),
        &json!({"community": "3205080001", "kind": "platform", "gat1400": {"password": "o"}}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(register(a, "/VIID/System/Register", PLATFORM, "p").0, 200);
    assert_eq!(register(a, "/VIID/System/Register", other, "o").0, 200);
    let (p1, p2) = (
        [("User-Identify", PLATFORM.to_string())],
        [("User-Identify", other.to_string())],
    );
    let disposition = |id: &str, plate: &str| {
        json!({"DispositionListObject": {"DispositionObject": [{"DispositionID": id,
            "Title": "布控", "DispositionCategory": "2", "TargetFeature": plate,
            "OperateType": 0}]}})
        .to_string()
    };
    let d = "320500000000000001202109010800001";
    let (_, _, answer) = viid(
        a,
        "POST",
        "/VIID/Dispositions",
        &p1,
        &disposition(d, "苏E1"),
    );
    assert_eq!(statuses(&answer)[0]["StatusCode"], 0, "{answer}");
    let (_, _, answer) = viid(a, "PUT", "/VIID/Dispositions", &p2, &disposition(d, "苏E2"));
    assert_eq!(statuses(&answer)[0]["StatusCode"], 4, "{answer}");
    for target in [
        format!("/VIID/Dispositions?IDList={d}"),
        format!("/VIID/Dispositions/{d}"),
    ] {
        let (_, _, answer) = viid(a, "DELETE", &target, &p2, "");
        assert_eq!(statuses(&answer)[0]["StatusCode"], 4, "{answer}");
    }
    let lists = get(a, "/v1/watchlists").body["watchlists"].clone();
    let ours: Vec<&Value> = lists
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["id"].as_str().is_some_and(|i| i.ends_with(d)))
        .collect();
    assert_eq!(ours.len(), 1, "{lists}");
    assert_eq!(
        ours[0]["entries"][0]["subject"], "苏E1",
        "unchanged: {lists}"
    );

    // A /v1 watchlist cannot be revoked or overwritten through /VIID.
    let w = post(
        a,
        "/v1/watchlists",
        "application/json",
        &json!({"name": "v1", "reason": "r", "entries": [{"kind": "vehicle", "subject": "苏E9"}]})
            .to_string(),
    );
    assert_eq!(w.status, 201, "{}", w.body);
    let wid = w.body["id"].as_str().unwrap().to_string();
    let (_, _, answer) = viid(
        a,
        "DELETE",
        &format!("/VIID/Dispositions?IDList={wid}"),
        &p1,
        "",
    );
    assert_eq!(statuses(&answer)[0]["StatusCode"], 1, "{answer}");
    let (_, _, answer) = viid(
        a,
        "POST",
        "/VIID/Dispositions",
        &p1,
        &disposition(&wid, "苏E3"),
    );
    assert_eq!(statuses(&answer)[0]["StatusCode"], 0, "{answer}");
    let lists = get(a, "/v1/watchlists").body["watchlists"].clone();
    let v1 = lists
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == wid.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{lists}"));
    assert_eq!(v1["entries"][0]["subject"], "苏E9", "{v1}");
    // Its owner revokes it.
    let (_, _, answer) = viid(a, "DELETE", &format!("/VIID/Dispositions/{d}"), &p1, "");
    assert_eq!(statuses(&answer)[0]["StatusCode"], 0, "{answer}");
}

/// `/VIID/SubscribeNotifications` takes only what answers a subscription this server
/// placed (else 1 "订阅不存在", as wvp-GB28181-pro answers), and a platform's
/// notification names devices of its own communities only, as its uploads do.
#[test]
fn notifications_answer_our_subscriptions_within_the_senders_communities() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let b = server.addr;
    catalog(b);
    south(b);
    let lower = Platform::start(|t| (200, per_object(t, 0, "正常")));
    let r = post(
        b,
        "/v1/remote-subscriptions",
        "application/json",
        &json!({"url": format!("http://{}", lower.addr), "password": "p",
                "receive_addr": format!("http://{b}/VIID/SubscribeNotifications")})
        .to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let ours = r.body["subscribe_id"].as_str().unwrap().to_string();
    assert_eq!(register(b, "/VIID/System/Register", PLATFORM, "p").0, 200);
    let ident = [("User-Identify", PLATFORM.to_string())];
    let notification = |subscribe_id: &str, device: &str, i: u64| {
        let mut o = vehicle(device, i, b"");
        let sub = &mut o["SubImageList"]["SubImageInfoObject"][0];
        sub.as_object_mut().unwrap().remove("Data");
        sub["StoragePath"] = "http://10.0.0.1:8080/v1/images/abc".into();
        json!({"SubscribeNotificationListObject": {"SubscribeNotificationObject": [{
            "NotificationID": format!("32050000000004202109010800000{i:04}"),
            "SubscribeID": subscribe_id, "TriggerTime": "20210901080000",
            "InfoIDs": o["MotorVehicleID"],
            "MotorVehicleObjectList": {"MotorVehicleObject": [o]}}]}})
        .to_string()
    };
    let code = |body: String| {
        let (status, _, answer) = viid(b, "POST", "/VIID/SubscribeNotifications", &ident, &body);
        assert_eq!(status, 200, "{answer}");
        let s = statuses(&answer)[0].clone();
        (
            s["StatusCode"].as_i64().unwrap(),
            s["StatusString"].to_string(),
        )
    };
    let (c, why) = code(notification(
        "320500000000000001032021090108000000009",
        GATE,
        1,
    ));
    assert_eq!(c, 1, "{why}");
    assert!(why.contains("订阅不存在"), "{why}");
    let (c, why) = code(notification(&ours, SOUTH_GATE, 2));
    assert_eq!(c, 8, "South is not the platform's community: {why}");
    assert_eq!(code(notification(&ours, GATE, 3)).0, 0);
}

/// `/VIID/Subscribes` as platforms send it: a catalogue-only subscription (devices 3,
/// tollgates 7, lanes 9, as wvp places them) is taken; a change names only what
/// changes; cancelling an unknown `SubscribeID` answers 1 (wvp's "不存在订阅ID"); a
/// numeric `SubscribeID` is named in its status; a Java bean's lower-case member names
/// are read; a bare `{"DeviceID":…}` keepalive (ty-wssf/fliad-viid) is taken.
#[test]
fn subscribes_as_platforms_send_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    catalog(a);
    assert_eq!(register(a, "/VIID/System/Register", PLATFORM, "p").0, 200);
    let ident = [("User-Identify", PLATFORM.to_string())];
    let send = |method: &str, objects: Value| {
        let body = json!({"SubscribeListObject": {"SubscribeObject": objects}}).to_string();
        let (status, _, answer) = viid(a, method, "/VIID/Subscribes", &ident, &body);
        assert_eq!(status, 200, "{answer}");
        statuses(&answer)
    };
    let receive = "http://127.0.0.1:9/VIID/SubscribeNotifications";
    let s = send(
        "POST",
        json!([{"SubscribeID": "320500000000000001032021090108000000007",
                "SubscribeDetail": "3,7,9", "ReceiveAddr": receive, "Title": "目录"},
               {"SubscribeID": "320500000000000001032021090108000000008",
                "SubscribeDetail": "13", "ReceiveAddr": receive, "Title": "过车",
                "ResourceURI": GATE},
               {"SubscribeID": 12345, "SubscribeDetail": "99", "ReceiveAddr": receive}]),
    );
    let codes: Vec<i64> = s
        .iter()
        .map(|s| s["StatusCode"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, [0, 0, 8], "{s:?}");
    assert_eq!(s[2]["Id"], "12345", "{s:?}");
    // A change of the title only.
    let s = send(
        "PUT",
        json!([{"SubscribeID": "320500000000000001032021090108000000008", "Title": "改名"}]),
    );
    assert_eq!(s[0]["StatusCode"], 0, "{s:?}");
    let (_, _, listed) = viid(a, "GET", "/VIID/Subscribes", &ident, "");
    let listed = listed["SubscribeListObject"]["SubscribeObject"]
        .as_array()
        .unwrap()
        .clone();
    let changed = listed
        .iter()
        .find(|o| o["SubscribeID"] == "320500000000000001032021090108000000008")
        .unwrap();
    assert_eq!(changed["Title"], "改名");
    assert_eq!(changed["SubscribeDetail"], "13", "kept: {changed}");
    assert_eq!(changed["ResourceURI"], GATE, "kept: {changed}");
    // Cancels: an unknown id is 1; OperateType 1 of an unknown id too.
    let (_, _, answer) = viid(
        a,
        "DELETE",
        "/VIID/Subscribes?IDList=320500000000000001032021090108000000099",
        &ident,
        "",
    );
    assert_eq!(statuses(&answer)[0]["StatusCode"], 1, "{answer}");
    let s = send(
        "PUT",
        json!([{"SubscribeID": "320500000000000001032021090108000000099", "OperateType": 1}]),
    );
    assert_eq!(s[0]["StatusCode"], 1, "{s:?}");
    // A Java bean without annotations.
    let body = json!({"subscribeListObject": {"subscribeObject": [{
        "subscribeID": "320500000000000001032021090108000000010", "subscribeDetail": "12",
        "receiveAddr": receive, "title": "人脸"}]}})
    .to_string();
    let (_, _, answer) = viid(a, "POST", "/VIID/Subscribes", &ident, &body);
    assert_eq!(statuses(&answer)[0]["StatusCode"], 0, "{answer}");
    assert_eq!(
        statuses(&answer)[0]["Id"],
        "320500000000000001032021090108000000010"
    );
    // fliad-viid's keepalive: a bare DeviceID.
    let (status, _, answer) = viid(
        a,
        "POST",
        "/VIID/System/Keepalive",
        &[],
        &json!({ "DeviceID": PLATFORM }).to_string(),
    );
    assert_eq!(status, 200, "{answer}");
}

/// Listening on every address without `--public-url`, a remote subscription must name
/// its `receive_addr`: the default would send the other side to `http://0.0.0.0:…`.
#[test]
fn a_remote_subscription_without_a_reachable_receive_address_is_refused() {
    use sightline_server::auth::Role;
    let dir = tempfile::tempdir().unwrap();
    let token = crate::keys::make_keys(dir.path(), &[(Role::Admin, None)]).remove(0);
    let server = start(dir.path(), |c| {
        c.no_auth = false;
        c.allow_plaintext = true;
        c.listen = "0.0.0.0:0".parse().unwrap();
    });
    let a: SocketAddr = ([127, 0, 0, 1], server.addr.port()).into();
    let create = |body: Value| {
        crate::keys::call_as(
            a,
            Some(&token),
            "POST",
            "/v1/remote-subscriptions",
            &body.to_string(),
        )
    };
    let r = create(json!({"url": "http://127.0.0.1:9"}));
    assert_eq!(
        (r.status, r.body["error"]["field"].as_str()),
        (400, Some("receive_addr")),
        "{}",
        r.body
    );
    let r = create(json!({"url": "http://127.0.0.1:9",
                          "receive_addr": "http://10.0.0.5:8080/VIID/SubscribeNotifications"}));
    assert_eq!(r.status, 201, "{}", r.body);
}

/// A clustered platform registers from one node and sends from another: by default
/// `User-Identify` alone is trusted only from the registering address (a forger
/// elsewhere is refused); with `--viid-registration-any-address` it is trusted from
/// any, as wvp-GB28181-pro and fliad-viid key on it, the registration renewed by a
/// keepalive from anywhere.
#[test]
fn a_registration_is_trusted_from_any_address_only_when_configured() {
    use crate::gat1400::send_from;
    for any in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path(), |c| c.viid_registration_any_address = any);
        let a = server.addr;
        catalog(a);
        assert_eq!(register(a, "/VIID/System/Register", PLATFORM, "p").0, 200);
        let object = vehicle(GATE, 1, &jpeg(1, 500));
        let body = vehicles(&[object]);
        let request = format!(
            "POST /VIID/MotorVehicles HTTP/1.1\r\nHost: x\r\nContent-Type: application/VIID+JSON\r\n\
             User-Identify: {PLATFORM}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let (status, answer) = send_from("127.0.0.3", a, request.as_bytes());
        let want = if any { 200 } else { 401 };
        assert_eq!(status, want, "any address {any}: {answer}");
        let keepalive = json!({"KeepaliveObject": {"DeviceID": PLATFORM}}).to_string();
        let request = format!(
            "POST /VIID/System/Keepalive HTTP/1.1\r\nHost: x\r\nContent-Type: application/VIID+JSON\r\n\
             User-Identify: {PLATFORM}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{keepalive}",
            keepalive.len()
        );
        assert_eq!(send_from("127.0.0.4", a, request.as_bytes()).0, want);
    }
}
