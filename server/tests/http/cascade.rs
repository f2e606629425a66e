//! GA/T 1400 cascade (级联): a platform subscribes with `/VIID/Subscribes` and receives
//! `SubscribeNotificationListObject`s; a platform's notifications are taken at
//! `/VIID/SubscribeNotifications`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{json, Value};

use crate::gat1400::{b64, image, jpeg, north, put_json, register, viid};
use crate::support::{enc, get, send, start, wait_until, Receiver, GATE, RANGE};

const PLATFORM: &str = "32050800005030000001";
const SUBSCRIBE_ID: &str = "320500000000000001032021090108000000001";

fn statuses(answer: &Value) -> Vec<Value> {
    match &answer["ResponseStatusListObject"]["ResponseStatusObject"] {
        Value::Array(a) => a.clone(),
        one => vec![one.clone()],
    }
}

/// The gate (a camera with a password) and the platform, both in community North.
pub(crate) fn catalog(a: SocketAddr) {
    north(a);
    for (code, body) in [
        (
            PLATFORM,
            json!({"community": "3205080001", "kind": "platform", "gat1400": {"password": "p"}}),
        ),
        (
            GATE,
            json!({"community": "3205080001", "kind": "checkpoint_camera", "direction": "in",
                   "gat1400": {"password": "g"}}),
        ),
    ] {
        let r = put_json(a, &format!("/v1/devices/{code}"), &body);
        assert_eq!(r.status, 201, "{}", r.body);
    }
}

/// The platform registers and makes one subscription, which must be taken.
pub(crate) fn subscribed(a: SocketAddr, object: Value) {
    assert_eq!(register(a, "/VIID/System/Register", PLATFORM, "p").0, 200);
    let ident = [("User-Identify", PLATFORM.to_string())];
    let body = json!({"SubscribeListObject": {"SubscribeObject": [object]}}).to_string();
    let (_, _, answer) = viid(a, "POST", "/VIID/Subscribes", &ident, &body);
    assert_eq!(statuses(&answer)[0]["StatusCode"], 0, "{answer}");
}

/// The gate registers; the header its uploads carry.
pub(crate) fn gate_registered(a: SocketAddr) -> [(&'static str, String); 1] {
    assert_eq!(register(a, "/VIID/System/Register", GATE, "g").0, 200);
    [("User-Identify", GATE.to_string())]
}

/// The subscription made through `/VIID/Subscribes`, with its status.
fn viid_subscription(a: SocketAddr) -> Value {
    get(a, "/v1/subscriptions").body["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == format!("viid-{SUBSCRIBE_ID}"))
        .cloned()
        .unwrap()
}

fn vehicle(i: u64, picture: &[u8]) -> Value {
    let time = format!("20210901{:02}0000", 8 + i);
    json!({"MotorVehicleID": format!("{GATE}02{time}{i:05}02{i:05}"), "InfoKind": 1,
        "SourceID": format!("{GATE}02{time}{i:05}"), "TollgateID": GATE, "DeviceID": GATE,
        "PassTime": time, "PlateNo": "苏E7CAS1", "HasPlate": "1", "PlateColor": "2",
        "VehicleClass": "K33", "VehicleColor": "A", "LaneNo": 1,
        "SubImageList": {"SubImageInfoObject": [{"ImageID": format!("{GATE}02{time}{i:05}"),
            "EventSort": 2, "DeviceID": GATE, "Type": "01", "FileFormat": "Jpeg",
            "ShotTime": time, "Width": "1920", "Height": "1080", "Data": b64(picture)}]}})
}

/// A platform subscribes to vehicles of one gate (the request shape of wvp-GB28181-pro
/// dev/1400 `gat1400` and xiezhihui98/GAT1400 `SubscribeObject`), and gets every
/// vehicle stored afterwards — the full object as uploaded, its picture (asked by
/// reference, `ImageData` 0) by a `StoragePath` that serves the same bytes — under its
/// own `SubscribeID` and `Title`,
/// with the objects' ids as `InfoIDs`; faces (not subscribed) are not sent, nothing is
/// `null`. Only a registered platform subscribes; it lists and cancels its own
/// subscriptions, and after the cancel nothing more is sent.
#[test]
fn a_platform_subscribes_and_receives_full_objects_with_their_pictures() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    catalog(a);
    let receiver = Receiver::start();
    receiver.up.store(true, Ordering::SeqCst);
    let ident = [("User-Identify", PLATFORM.to_string())];
    let subscribe = json!({"SubscribeListObject": {"SubscribeObject": [
        {"SubscribeID": SUBSCRIBE_ID, "Title": "卡口过车订阅", "SubscribeDetail": "13",
         "ResourceURI": GATE, "ApplicantName": "张三", "ApplicantOrg": "苏州市局",
         "BeginTime": "20210101000000", "EndTime": "20991231235959",
         "ReceiveAddr": format!("http://{}/VIID/SubscribeNotifications", receiver.addr),
         "ReportInterval": 5, "Reason": "级联", "OperateType": 0, "ResultImageDeclare": "01",
         "ImageData": 0},
        {"SubscribeID": "320500000000000001032021090108000000002", "SubscribeDetail": "13"},
        {"SubscribeID": "320500000000000001032021090108000000003", "SubscribeDetail": "99",
         "ReceiveAddr": format!("http://{}/x", receiver.addr)},
        // Ending before it begins: it could never deliver.
        {"SubscribeID": "320500000000000001032021090108000000004", "SubscribeDetail": "13",
         "ReceiveAddr": format!("http://{}/VIID/SubscribeNotifications", receiver.addr),
         "BeginTime": "20991231000000", "EndTime": "20210101000000"}]}})
    .to_string();
    let (status, _, _) = viid(a, "POST", "/VIID/Subscribes", &ident, &subscribe);
    assert_eq!(status, 401, "only a registered platform subscribes");
    assert_eq!(register(a, "/VIID/System/Register", PLATFORM, "p").0, 200);
    let (status, _, answer) = viid(a, "POST", "/VIID/Subscribes", &ident, &subscribe);
    assert_eq!(status, 200, "{answer}");
    let s = statuses(&answer);
    assert_eq!(s[0]["Id"], SUBSCRIBE_ID);
    assert_eq!(
        s.iter()
            .map(|s| s["StatusCode"].as_i64())
            .collect::<Vec<_>>(),
        [Some(0), Some(8), Some(8), Some(8)],
        "{answer}"
    );
    assert!(s[3]["StatusString"]
        .as_str()
        .unwrap()
        .contains("EndTime \"20210101000000\" is before BeginTime"));
    assert!(s[1]["StatusString"]
        .as_str()
        .unwrap()
        .contains("ReceiveAddr"));
    assert!(s[2]["StatusString"]
        .as_str()
        .unwrap()
        .contains("SubscribeDetail"));
    let (_, _, listed) = viid(a, "GET", "/VIID/Subscribes", &ident, "");
    let listed = &listed["SubscribeListObject"]["SubscribeObject"];
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["SubscribeID"], SUBSCRIBE_ID);
    assert_eq!(listed[0]["Title"], "卡口过车订阅");

    // The gate uploads two vehicles with pictures, and a face.
    let gate = gate_registered(a);
    let pictures = [jpeg(1, 150_000), jpeg(2, 120_000)];
    let sent: Vec<Value> = (0..2).map(|i| vehicle(i, &pictures[i as usize])).collect();
    let body = json!({"MotorVehicleListObject": {"MotorVehicleObject": sent}}).to_string();
    let (status, _, answer) = viid(a, "POST", "/VIID/MotorVehicles", &gate, &body);
    assert_eq!(status, 200);
    assert!(
        statuses(&answer).iter().all(|s| s["StatusCode"] == 0),
        "{answer}"
    );
    let face = json!({"FaceListObject": {"FaceObject": [{"FaceID": format!("{GATE}0620210901083000000010600001"),
        "DeviceID": GATE, "ShotTime": "20210901083000"}]}});
    let (status, _, _) = viid(a, "POST", "/VIID/Faces", &gate, &face.to_string());
    assert_eq!(status, 200);

    let delivered = || receiver.notifications();
    let objects = |ns: &[Value]| -> Vec<Value> {
        ns.iter()
            .flat_map(|n| {
                n["MotorVehicleObjectList"]["MotorVehicleObject"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .collect()
    };
    let ok = wait_until(Duration::from_secs(20), || objects(&delivered()).len() >= 2);
    assert!(
        ok,
        "no notification arrived: {:?}",
        receiver.bodies.lock().unwrap()
    );
    let notifications = delivered();
    let n = &notifications[0];
    assert_eq!(n["SubscribeID"], SUBSCRIBE_ID);
    assert_eq!(n["Title"], "卡口过车订阅");
    assert_eq!(n["TriggerTime"].as_str().unwrap().len(), 14);
    let nid = n["NotificationID"].as_str().unwrap();
    // 33 digits: the subscription's first 12 (its organisation), 04, time, sequence.
    assert!(
        nid.len() == 33 && nid.bytes().all(|b| b.is_ascii_digit()),
        "{nid}"
    );
    assert!(nid.starts_with(&SUBSCRIBE_ID[..12]), "{nid}");
    assert_eq!(&nid[12..14], "04", "{nid}");
    let got = objects(&notifications);
    assert_eq!(got.len(), 2, "each object once: {notifications:?}");
    let ids: Vec<&str> = sent
        .iter()
        .map(|o| o["MotorVehicleID"].as_str().unwrap())
        .collect();
    assert_eq!(n["InfoIDs"], ids.join(","));
    assert!(
        n.get("FaceObjectList").is_none(),
        "faces were not subscribed: {n}"
    );
    for ((want, got), picture) in sent.iter().zip(&got).zip(&pictures) {
        // Every field as uploaded, the picture's Data replaced by where it is served.
        let mut want = want.clone();
        let sub = &mut want["SubImageList"]["SubImageInfoObject"][0];
        sub.as_object_mut().unwrap().remove("Data");
        let path = got["SubImageList"]["SubImageInfoObject"][0]["StoragePath"]
            .as_str()
            .unwrap()
            .to_string();
        sub["StoragePath"] = path.clone().into();
        assert_eq!(&want, got);
        let prefix = format!("http://{a}/v1/images/");
        let url = path
            .strip_prefix(&format!("http://{a}"))
            .unwrap_or_else(|| panic!("{path} not under {prefix}"));
        let (status, head, bytes) = image(a, url, None);
        assert_eq!(status, 200, "{head}");
        assert!(
            bytes == *picture,
            "the picture behind StoragePath is the one uploaded"
        );
    }
    let all: String = receiver
        .bodies
        .lock()
        .unwrap()
        .iter()
        .map(Value::to_string)
        .collect();
    assert!(!all.contains("null"), "absent fields are omitted: {all}");
    let head = receiver.heads.lock().unwrap()[0].clone();
    assert!(
        head.contains("content-type: application/viid+json"),
        "{head}"
    );
    assert!(
        head.contains("user-identify: 32050000005030000001"),
        "{head}"
    );

    // A camera cannot cancel it (it is no platform: 403, an invalid operation); its
    // own platform can.
    let (status, _, answer) = viid(
        a,
        "DELETE",
        &format!("/VIID/Subscribes?IDList={SUBSCRIBE_ID}"),
        &gate,
        "",
    );
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["ResponseStatusObject"]["StatusCode"], 4, "{answer}");
    // GA/T 1400.4 取消订阅: PUT /VIID/Subscribes/<ID> with the cancel's fields. It stays
    // listed, SubscribeStatus 1, with them.
    let cancel = json!({"SubscribeObject": {"SubscribeID": SUBSCRIBE_ID,
        "SubscribeCancelOrg": "苏州市局", "SubscribeCancelPerson": "李四",
        "CancelTime": "20210902080000", "CancelReason": "案件结束", "OperateType": 1}});
    let one = format!("/VIID/Subscribes/{SUBSCRIBE_ID}");
    let (_, _, answer) = viid(a, "PUT", &one, &ident, &cancel.to_string());
    assert_eq!(statuses(&answer)[0]["StatusCode"], 0, "{answer}");
    let (_, _, listed) = viid(a, "GET", "/VIID/Subscribes", &ident, "");
    let o = &listed["SubscribeListObject"]["SubscribeObject"][0];
    assert_eq!(
        (&o["SubscribeID"], &o["SubscribeStatus"], &o["CancelReason"]),
        (&json!(SUBSCRIBE_ID), &json!(1), &json!("案件结束")),
        "{listed}"
    );
    assert_eq!(
        (&o["SubscribeCancelPerson"], &o["CancelTime"], &o["Title"]),
        (
            &json!("李四"),
            &json!("20210902080000"),
            &json!("卡口过车订阅")
        ),
        "the cancel's fields over the subscription's: {listed}"
    );
    // Cancelling it again is no error.
    let (_, _, answer) = viid(a, "PUT", &one, &ident, "");
    assert_eq!(statuses(&answer)[0]["StatusCode"], 0, "{answer}");
    let before = receiver.bodies.lock().unwrap().len();
    let body =
        json!({"MotorVehicleListObject": {"MotorVehicleObject": [vehicle(3, &jpeg(3, 1000))]}});
    assert_eq!(
        viid(a, "POST", "/VIID/MotorVehicles", &gate, &body.to_string()).0,
        200
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        receiver.bodies.lock().unwrap().len(),
        before,
        "nothing after the cancel"
    );
    // 删除订阅: DELETE takes it off the list.
    let (_, _, answer) = viid(
        a,
        "DELETE",
        &format!("/VIID/Subscribes?IDList={SUBSCRIBE_ID}"),
        &ident,
        "",
    );
    assert_eq!(statuses(&answer)[0]["StatusCode"], 0, "{answer}");
    let (_, _, listed) = viid(a, "GET", "/VIID/Subscribes", &ident, "");
    assert_eq!(listed["SubscribeListObject"]["SubscribeObject"], json!([]));
    let (_, _, answer) = viid(a, "PUT", &one, &ident, "");
    assert_eq!(statuses(&answer)[0]["StatusCode"], 1, "deleted: {answer}");
}

/// `GET /VIID/Subscribes` answers the standard's query conditions over a
/// `SubscribeObject`'s attributes (the three forms object queries take) and pages
/// (`RecordStartNo`, `PageRecordNum`); a condition on no attribute of a subscription
/// is 400 naming it, never ignored. A subscription cancelled with `OperateType` 1 is
/// listed with `SubscribeStatus` 1, and subscribing again by its id puts it back in
/// force.
#[test]
fn subscriptions_are_listed_by_the_conditions_asked() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    catalog(a);
    let receiver = Receiver::start();
    let receive = format!("http://{}/VIID/SubscribeNotifications", receiver.addr);
    assert_eq!(register(a, "/VIID/System/Register", PLATFORM, "p").0, 200);
    let ident = [("User-Identify", PLATFORM.to_string())];
    let id = |n: u32| format!("3205000000000000010320210901080000{n:05}");
    let objects: Vec<Value> = (1..=5)
        .map(|n| {
            json!({"SubscribeID": id(n), "Title": format!("订阅{n}"),
                   "SubscribeDetail": if n % 2 == 0 { "12" } else { "13" },
                   "ResourceURI": GATE, "ReceiveAddr": receive,
                   "BeginTime": format!("2021090{n}000000"), "EndTime": "20991231235959"})
        })
        .collect();
    let body = json!({"SubscribeListObject": {"SubscribeObject": objects}}).to_string();
    let (_, _, answer) = viid(a, "POST", "/VIID/Subscribes", &ident, &body);
    assert!(
        statuses(&answer).iter().all(|s| s["StatusCode"] == 0),
        "{answer}"
    );
    let cancel = json!({"SubscribeListObject": {"SubscribeObject": [
        {"SubscribeID": id(4), "OperateType": 1, "CancelReason": "到期"}]}});
    let (_, _, answer) = viid(a, "PUT", "/VIID/Subscribes", &ident, &cancel.to_string());
    assert_eq!(statuses(&answer)[0]["StatusCode"], 0, "{answer}");

    let ids = |query: &str| -> Vec<String> {
        let (status, _, listed) = viid(a, "GET", &format!("/VIID/Subscribes?{query}"), &ident, "");
        assert_eq!(status, 200, "{query}: {listed}");
        listed["SubscribeListObject"]["SubscribeObject"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["SubscribeID"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(""), (1..=5).map(id).collect::<Vec<_>>());
    assert_eq!(ids(&format!("SubscribeID={}", id(3))), [id(3)]);
    assert_eq!(
        ids(&format!(
            "(Subscribe.SubscribeID%20IN%20('{}','{}'))",
            id(2),
            id(5)
        )),
        [id(2), id(5)]
    );
    assert_eq!(ids("SubscribeDetail=12"), [id(2), id(4)]);
    assert_eq!(ids("SubscribeStatus=1"), [id(4)]);
    assert_eq!(
        ids("(SubscribeStatus%20=%200)%20AND%20(SubscribeDetail%20=%2012)"),
        [id(2)]
    );
    assert_eq!(
        ids("(Subscribe.BeginTime%20BETWEEN%20'20210902000000'%20AND%20'2021-09-03%2000:00:00')"),
        [id(2), id(3)]
    );
    assert_eq!(ids("Title.Like=%E8%AE%A2%E9%98%855"), [id(5)]);
    assert_eq!(ids("RecordStartNo=2&PageRecordNum=2"), [id(2), id(3)]);
    assert_eq!(ids(&format!("SubscribeID={}", id(9))), Vec::<String>::new());
    // Not an attribute of a subscription: refused, naming it.
    let (status, _, answer) = viid(a, "GET", "/VIID/Subscribes?PlateNo=x", &ident, "");
    assert_eq!(status, 400, "{answer}");
    let why = answer["ResponseStatusObject"]["StatusString"]
        .as_str()
        .unwrap();
    assert!(why.contains("PlateNo"), "{why}");
    let (status, _, _) = viid(a, "GET", "/VIID/Subscribes?PageRecordNum=0", &ident, "");
    assert_eq!(status, 400);

    // Subscribed again: in force.
    let again = json!({"SubscribeListObject": {"SubscribeObject": [objects[3].clone()]}});
    let (_, _, answer) = viid(a, "POST", "/VIID/Subscribes", &ident, &again.to_string());
    assert_eq!(statuses(&answer)[0]["StatusCode"], 0, "{answer}");
    assert_eq!(ids("SubscribeStatus=1"), Vec::<String>::new());
    assert_eq!(ids("SubscribeStatus=0").len(), 5);
}

/// A subscription whose receiver answers 200 but refuses the objects for now
/// (`StatusCode` 2, busy) keeps them: nothing is counted as delivered, the status says
/// why, and they go once it takes them — under the same `NotificationID` each time;
/// the same upload to another subscription (its `SubscribeID` of the same 12-digit
/// organisation) is a notification of another id.
#[test]
fn a_receiver_refusing_a_notification_gets_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    catalog(a);
    let receiver = Receiver::start();
    receiver.refuse_with.store(2, Ordering::SeqCst);
    receiver.up.store(true, Ordering::SeqCst);
    subscribed(
        a,
        json!({"SubscribeID": SUBSCRIBE_ID, "Title": "t", "SubscribeDetail": "13,12", "ResourceURI": "32050000005030000001",
         "ReceiveAddr": format!("http://{}/VIID/SubscribeNotifications", receiver.addr), "OperateType": "0"}),
    );
    let gate = gate_registered(a);
    let body =
        json!({"MotorVehicleListObject": {"MotorVehicleObject": [vehicle(1, &jpeg(1, 1000))]}});
    assert_eq!(
        viid(a, "POST", "/VIID/MotorVehicles", &gate, &body.to_string()).0,
        200
    );
    let status = || viid_subscription(a);
    assert!(wait_until(Duration::from_secs(20), || receiver
        .attempts
        .load(Ordering::SeqCst)
        >= 2));
    let s = status();
    assert_eq!(s["status"]["delivered"], 0, "{s}");
    assert!(
        s["status"]["last_error"]
            .as_str()
            .unwrap()
            .contains("StatusCode 2"),
        "{s}"
    );
    receiver.refuse_with.store(0, Ordering::SeqCst);
    assert!(wait_until(Duration::from_secs(20), || status()["status"]
        ["delivered"]
        == 1));
    let ids = |v: &Vec<Value>| -> Vec<(String, String)> {
        v.iter()
            .filter_map(|b| {
                let n = &b["SubscribeNotificationListObject"]["SubscribeNotificationObject"][0];
                Some((
                    n["SubscribeID"].as_str()?.to_string(),
                    n["NotificationID"].as_str()?.to_string(),
                ))
            })
            .collect()
    };
    let sent = ids(&receiver.seen.lock().unwrap());
    assert!(sent.len() >= 3, "{sent:?}");
    let mut distinct: Vec<&(String, String)> = sent.iter().collect();
    distinct.dedup();
    assert_eq!(distinct.len(), 1, "a resend repeats its id: {sent:?}");
    // Another subscription of the same organisation gets the next upload's
    // notification under another id than this one's.
    let other = format!("{}9", &SUBSCRIBE_ID[..SUBSCRIBE_ID.len() - 1]);
    subscribed(
        a,
        json!({"SubscribeID": other, "Title": "t", "SubscribeDetail": "13",
         "ReceiveAddr": format!("http://{}/VIID/SubscribeNotifications", receiver.addr)}),
    );
    let body =
        json!({"MotorVehicleListObject": {"MotorVehicleObject": [vehicle(2, &jpeg(2, 1000))]}});
    assert_eq!(
        viid(a, "POST", "/VIID/MotorVehicles", &gate, &body.to_string()).0,
        200
    );
    assert!(wait_until(Duration::from_secs(20), || {
        let taken = ids(&receiver.bodies.lock().unwrap());
        taken.iter().any(|(s, _)| *s == other)
            && taken.iter().filter(|(s, _)| s == SUBSCRIBE_ID).count() >= 2
    }));
    let taken = ids(&receiver.bodies.lock().unwrap());
    let mut all: Vec<&String> = taken.iter().map(|(_, n)| n).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), taken.len(), "one id a notification: {taken:?}");
}

/// Notifications from a platform, for a subscription this server placed there, are
/// stored as if it had uploaded the objects (here: the body a subscribed Sightline
/// sends, objects with their pictures by reference): one status per notification, and
/// the objects come back through the trajectory.
#[test]
fn notifications_from_a_platform_are_stored_as_its_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let b = server.addr;
    catalog(b);
    let placed = crate::support::post(
        b,
        "/v1/remote-subscriptions",
        "application/json",
        &json!({"url": "http://127.0.0.1:9", "password": "p",
                "receive_addr": format!("http://{b}/VIID/SubscribeNotifications")})
        .to_string(),
    );
    assert_eq!(placed.status, 201, "{}", placed.body);
    let subscribe_id = placed.body["subscribe_id"].as_str().unwrap().to_string();
    let ident = [("User-Identify", PLATFORM.to_string())];
    let mut object = vehicle(1, b"");
    let sub = &mut object["SubImageList"]["SubImageInfoObject"][0];
    sub.as_object_mut().unwrap().remove("Data");
    sub["StoragePath"] = "http://10.0.0.1:8080/v1/images/abc".into();
    let notification = json!({"SubscribeNotificationListObject": {"SubscribeNotificationObject": [{
        "NotificationID": "3205000000503000000103202109010800000001", "SubscribeID": subscribe_id,
        "Title": "t", "TriggerTime": "20210901080000", "InfoIDs": object["MotorVehicleID"],
        "MotorVehicleObjectList": {"MotorVehicleObject": [object.clone()]}}]}})
    .to_string();
    let (status, _, _) = viid(
        b,
        "POST",
        "/VIID/SubscribeNotifications",
        &ident,
        &notification,
    );
    assert_eq!(status, 401, "only from a registered platform");
    assert_eq!(register(b, "/VIID/System/Register", PLATFORM, "p").0, 200);
    let (status, _, answer) = viid(
        b,
        "POST",
        "/VIID/SubscribeNotifications",
        &ident,
        &notification,
    );
    assert_eq!(status, 200);
    let s = statuses(&answer);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0]["Id"], "3205000000503000000103202109010800000001");
    assert_eq!(s[0]["StatusCode"], 0, "{answer}");
    // ty-wssf/fliad-viid's receiver names the list `MotorVehicleList`; a notification
    // so named is read too.
    let mut other = object.clone();
    other["MotorVehicleID"] = format!("{GATE}0220210901093000000010200099").into();
    other["PassTime"] = "20210901093000".into();
    let fliad = json!({"SubscribeNotificationListObject": {"SubscribeNotificationObject": {
        "NotificationID": "320500000000042021090109300000001", "SubscribeID": subscribe_id,
        "MotorVehicleObjectList": {"MotorVehicleList": [other]}}}});
    let (_, _, answer) = viid(
        b,
        "POST",
        "/VIID/SubscribeNotifications",
        &ident,
        &fliad.to_string(),
    );
    assert_eq!(statuses(&answer)[0]["StatusCode"], 0, "{answer}");
    let t = send(b, format!("GET /v1/trajectory?kind=vehicle&subject={}&{RANGE} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", enc("苏E7CAS1")).as_bytes());
    let t: Value = serde_json::from_slice(&t.body).unwrap();
    let events = t["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{t}");
    assert_eq!(
        events[0]["images"][0]["url"],
        "http://10.0.0.1:8080/v1/images/abc"
    );
    let (status, _, kept) = image(b, events[0]["object"].as_str().unwrap(), None);
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_slice::<Value>(&kept).unwrap(), object);
}

/// Two servers: B (A's platform P) places a subscription on A for vehicles with their
/// pictures as `Data` (`/v1/remote-subscriptions`, `image_data` base64) with B's
/// `/VIID/SubscribeNotifications` as `ReceiveAddr`; B knows A as a platform (A's 视图库
/// id, registered from A's address). Every vehicle A stores reaches B once, in order,
/// with its picture byte-identical and its object as uploaded.
#[test]
fn a_second_sightline_receives_every_object_with_its_pictures() {
    const A_ID: &str = "32050000005030000001";
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server_a = start(dir_a.path(), |_| {});
    let server_b = start(dir_b.path(), |c| c.viid_server_id = PLATFORM.into());
    let (a, b) = (server_a.addr, server_b.addr);
    catalog(a);
    north(b);
    let r = put_json(
        b,
        &format!("/v1/devices/{A_ID}"),
        &json!({"community": "3205080001", "kind": "platform", "gat1400": {"password": "a-pass"}}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    // A's registration with B, made from A's address (127.0.0.1) on its behalf.
    assert_eq!(register(b, "/VIID/System/Register", A_ID, "a-pass").0, 200);

    let placed = crate::support::post(
        b,
        "/v1/remote-subscriptions",
        "application/json",
        &json!({"url": format!("http://{a}"), "password": "p", "kinds": ["vehicle"],
                "title": "到B", "image_data": "base64", "begin_time": "20210101000000",
                "receive_addr": format!("http://{b}/VIID/SubscribeNotifications")})
        .to_string(),
    );
    assert_eq!(placed.status, 201, "{}", placed.body);
    let subscribe_id = placed.body["subscribe_id"].as_str().unwrap().to_string();
    assert!(wait_until(Duration::from_secs(20), || viid_subscriptions(
        a
    )
    .iter()
    .any(|s| s["id"] == format!("viid-{subscribe_id}"))));
    let gate = gate_registered(a);
    let pictures: Vec<Vec<u8>> = (0..3).map(|i| jpeg(10 + i, 100_000 + i as usize)).collect();
    let sent: Vec<Value> = (0..3).map(|i| vehicle(i, &pictures[i as usize])).collect();
    for o in &sent {
        // One upload per object: three notifications, in order.
        let body = json!({"MotorVehicleListObject": {"MotorVehicleObject": [o]}}).to_string();
        let (status, _, answer) = viid(a, "POST", "/VIID/MotorVehicles", &gate, &body);
        assert_eq!(status, 200);
        assert_eq!(statuses(&answer)[0]["StatusCode"], 0, "{answer}");
    }
    let trajectory = |addr: SocketAddr| -> Vec<Value> {
        let t = send(addr, format!("GET /v1/trajectory?kind=vehicle&subject={}&{RANGE} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", enc("苏E7CAS1")).as_bytes());
        let t: Value = serde_json::from_slice(&t.body).unwrap_or(Value::Null);
        t["events"].as_array().cloned().unwrap_or_default()
    };
    assert!(
        wait_until(Duration::from_secs(30), || trajectory(b).len() >= 3),
        "B has {:?}; A's subscriptions: {}",
        trajectory(b),
        get(a, "/v1/subscriptions").body
    );
    let events = trajectory(b);
    assert_eq!(events.len(), 3, "each object once");
    for ((e, want), picture) in events.iter().zip(&sent).zip(&pictures) {
        let url = e["images"][0]["url"].as_str().unwrap();
        assert!(
            url.starts_with("/v1/images/"),
            "stored on B, not a reference: {url}"
        );
        let (status, _, bytes) = image(b, url, None);
        assert_eq!(status, 200);
        assert!(
            bytes == *picture,
            "the picture on B is the one uploaded to A"
        );
        let (_, _, kept) = image(b, e["object"].as_str().unwrap(), None);
        let kept: Value = serde_json::from_slice(&kept).unwrap();
        for (k, v) in want.as_object().unwrap() {
            if k != "SubImageList" {
                assert_eq!(&kept[k], v, "{k}");
            }
        }
    }
    let s = viid_subscriptions(a)
        .into_iter()
        .find(|s| s["id"] == format!("viid-{subscribe_id}"))
        .unwrap();
    assert_eq!(s["status"]["delivered"], 3, "{s}");
}

/// Three receivers that do not take what is sent — one answers HTTP 200 with
/// `StatusCode` 1, one answers 500, one never answers — each with a GA/T 1400
/// subscription and an upstream (`/v1/upstreams`) pointed at it: nothing is counted
/// as delivered, no cursor moves, and each status (and `/metrics`) says why.
#[test]
fn receivers_that_refuse_fail_or_hang_never_have_events_counted_as_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    let modes = ["StatusCode 1", "500", "did not answer within"];
    let receivers: Vec<Receiver> = modes.iter().map(|_| Receiver::start()).collect();
    receivers[0].up.store(true, Ordering::SeqCst);
    receivers[0].refuse_with.store(1, Ordering::SeqCst);
    receivers[1].down_status.store(500, Ordering::SeqCst);
    receivers[2].up.store(true, Ordering::SeqCst);
    receivers[2].delay_ms.store(15_000, Ordering::SeqCst);
    let mut ids = Vec::new();
    for r in &receivers {
        let sub = json!({"url": format!("http://{}/VIID/SubscribeNotifications", r.addr),
                         "format": "gat1400", "from": 0});
        let s = crate::support::post(a, "/v1/subscriptions", "application/json", &sub.to_string());
        assert_eq!(s.status, 201, "{}", s.body);
        let up = json!({"url": format!("http://{}", r.addr), "password": "p", "from": 0,
                        "keepalive_s": 1});
        let u = crate::support::post(a, "/v1/upstreams", "application/json", &up.to_string());
        assert_eq!(u.status, 201, "{}", u.body);
        ids.push((
            s.body["id"].as_str().unwrap().to_string(),
            u.body["id"].as_str().unwrap().to_string(),
        ));
    }
    let events = crate::support::post(
        a,
        "/v1/events",
        "application/x-ndjson",
        &crate::support::sample(),
    );
    assert_eq!(events.status, 200);
    // Long enough for the hanging receiver's 10 s timeout, and a retry of the others.
    let started = std::time::Instant::now();
    let statuses = || -> Vec<(Value, Value)> {
        let subs = get(a, "/v1/subscriptions").body["subscriptions"].clone();
        ids.iter()
            .map(|(s, u)| {
                let sub = subs
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|x| x["id"] == s.as_str())
                    .unwrap()["status"]
                    .clone();
                let up = get(a, &format!("/v1/upstreams/{u}")).body["status"].clone();
                (sub, up)
            })
            .collect()
    };
    let failed = wait_until(Duration::from_secs(40), || {
        started.elapsed() > Duration::from_secs(11)
            && statuses().iter().zip(modes).all(|((s, u), why)| {
                [s, u]
                    .iter()
                    .all(|st| st["last_error"].as_str().is_some_and(|e| e.contains(why)))
            })
    });
    assert!(failed, "{:?}", statuses());
    for ((s, u), why) in statuses().iter().zip(modes) {
        for st in [s, u] {
            assert_eq!(st["delivered"], 0, "{why}: {st}");
            assert_eq!(st["cursor"], 0, "{why}: {st}");
            assert!(st["failures_in_a_row"].as_u64() >= Some(1), "{why}: {st}");
            assert!(st["lag"].as_u64() >= Some(7), "{why}: {st}");
        }
    }
    assert!(
        receivers[0].bodies.lock().unwrap().is_empty(),
        "nothing taken"
    );
    let metrics = crate::support::send(
        a,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let metrics = String::from_utf8_lossy(&metrics.body).to_string();
    for (s, u) in &ids {
        for (id, target) in [(s, "subscription"), (u, "upstream")] {
            let labels = format!("{{id=\"{id}\",target=\"{target}\"}}");
            assert!(
                metrics.contains(&format!("sightline_delivered_total{labels} 0")),
                "{metrics}"
            );
            let failures = metrics
                .lines()
                .find_map(|l| {
                    l.strip_prefix(&format!("sightline_delivery_failures_total{labels} "))
                })
                .and_then(|n| n.parse::<u64>().ok());
            assert!(failures >= Some(1), "{id}: {metrics}");
        }
    }
}

/// `/v1/upstreams` checks what it is given (each refusal names its field), never shows
/// the password, is not listed or deleted as a subscription, and is audited.
#[test]
fn upstreams_are_checked_listed_without_their_password_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    let create = |body: Value| {
        crate::support::post(a, "/v1/upstreams", "application/json", &body.to_string())
    };
    let url = "http://127.0.0.1:9";
    for (body, field) in [
        (json!({"password": "p"}), "url"),
        (json!({"url": "ftp://x", "password": "p"}), "url"),
        (json!({"url": url}), "password"),
        (
            json!({"url": url, "password": "p", "device_id": "123"}),
            "device_id",
        ),
        (
            json!({"url": url, "password": "p", "server_id": "x"}),
            "server_id",
        ),
        (
            json!({"url": url, "password": "p", "image_data": "inline"}),
            "image_data",
        ),
        (
            json!({"url": url, "password": "p", "keepalive_s": 0}),
            "keepalive_s",
        ),
        (
            json!({"url": url, "password": "p", "kinds": ["car"]}),
            "kinds",
        ),
        (
            json!({"url": url, "password": "p", "subjects": ["苏E1"]}),
            "subjects",
        ),
        (json!({"url": url, "password": "p", "batch": 0}), "batch"),
    ] {
        let r = create(body.clone());
        assert_eq!(
            (r.status, r.body["error"]["field"].as_str()),
            (400, Some(field)),
            "{body}: {}",
            r.body
        );
    }
    let r = create(json!({"url": url, "password": "s3cret", "device_id": "32050000005030000009"}));
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(r.body["username"], "32050000005030000009", "{}", r.body);
    assert_eq!(r.body["keepalive_s"], 30);
    let listed = get(a, "/v1/upstreams").body;
    assert_eq!(listed["upstreams"][0]["id"], id.as_str());
    for answer in [
        &r.body,
        &listed,
        &get(a, &format!("/v1/upstreams/{id}")).body,
    ] {
        assert!(!answer.to_string().contains("s3cret"), "{answer}");
    }
    assert_eq!(get(a, "/v1/subscriptions").body["subscriptions"], json!([]));
    let gone = crate::support::call(a, "DELETE", &format!("/v1/subscriptions/{id}"), "", b"");
    assert_eq!(gone.status, 404, "not a subscription: {}", gone.body);
    let audit = get(a, "/v1/audit").body.to_string();
    assert!(audit.contains("/v1/upstreams"), "{audit}");
    assert!(!audit.contains("s3cret"), "{audit}");
    let deleted = crate::support::call(a, "DELETE", &format!("/v1/upstreams/{id}"), "", b"");
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(get(a, &format!("/v1/upstreams/{id}")).status, 404);
    assert_eq!(get(a, "/v1/upstreams").body["upstreams"], json!([]));
}

/// A remote subscription (`/v1/remote-subscriptions`): B subscribes at A by digest
/// as A's platform record. A wrong password is shown as the digest refused and never
/// placed; the right one places it at A (its `SubscribeID` in the standard's form,
/// `ReceiveAddr` B's notifications endpoint); the password is never shown; `DELETE`
/// cancels it at A.
#[test]
fn a_remote_subscription_is_placed_by_digest_and_cancelled() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server_a = start(dir_a.path(), |_| {});
    let server_b = start(dir_b.path(), |c| {
        c.viid_server_id = "32050800005030000001".into()
    });
    let (a, b) = (server_a.addr, server_b.addr);
    catalog(a);
    let create = |body: Value| {
        crate::support::post(
            b,
            "/v1/remote-subscriptions",
            "application/json",
            &body.to_string(),
        )
    };
    let url = format!("http://{a}");
    for (body, field) in [
        (json!({"password": "p"}), "url"),
        (
            json!({"url": url, "password": "p", "kinds": ["car"]}),
            "kinds",
        ),
        (
            json!({"url": url, "password": "p", "begin_time": "yesterday"}),
            "begin_time",
        ),
        (
            json!({"url": url, "password": "p", "image_data": 1}),
            "image_data",
        ),
    ] {
        let r = create(body.clone());
        assert_eq!(
            (r.status, r.body["error"]["field"].as_str()),
            (400, Some(field)),
            "{body}: {}",
            r.body
        );
    }
    let status = |id: &str| -> Value {
        get(b, "/v1/remote-subscriptions").body["remote_subscriptions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap()["status"]
            .clone()
    };
    let wrong = create(json!({"url": url, "password": "wrong", "kinds": ["vehicle"]}));
    assert_eq!(wrong.status, 201, "{}", wrong.body);
    let wrong_id = wrong.body["id"].as_str().unwrap().to_string();
    assert!(
        wait_until(Duration::from_secs(20), || status(&wrong_id)["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("401 again"))),
        "{}",
        status(&wrong_id)
    );
    assert_eq!(status(&wrong_id)["placed"], false);
    let r = create(
        json!({"url": url, "password": "p", "kinds": ["vehicle", "face"],
                          "resource_uri": GATE, "title": "到B"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    let subscribe_id = r.body["subscribe_id"].as_str().unwrap().to_string();
    assert!(
        subscribe_id.len() == 33 && subscribe_id.starts_with("32050800005003"),
        "{subscribe_id}"
    );
    assert!(wait_until(Duration::from_secs(20), || status(&id)
        ["placed"]
        == true));
    let on_a = viid_subscriptions(a);
    let placed = on_a
        .iter()
        .find(|s| s["id"] == format!("viid-{subscribe_id}"))
        .unwrap_or_else(|| panic!("{on_a:?}"));
    assert_eq!(
        placed["url"],
        format!("http://{b}/VIID/SubscribeNotifications")
    );
    assert_eq!(placed["kinds"], json!(["face", "vehicle"]));
    assert_eq!(placed["devices"], json!([GATE]));
    let listed = get(b, "/v1/remote-subscriptions").body.to_string();
    assert!(
        !listed.contains("\"p\"") && !listed.contains("wrong"),
        "{listed}"
    );
    let d = crate::support::call(
        b,
        "DELETE",
        &format!("/v1/remote-subscriptions/{id}"),
        "",
        b"",
    );
    assert_eq!(
        (d.status, &d.body["cancelled"]),
        (200, &json!(true)),
        "{}",
        d.body
    );
    assert!(viid_subscriptions(a)
        .iter()
        .all(|s| s["id"] != format!("viid-{subscribe_id}")));
    let again = crate::support::call(
        b,
        "DELETE",
        &format!("/v1/remote-subscriptions/{id}"),
        "",
        b"",
    );
    assert_eq!(again.status, 404);
}

/// A's subscriptions.
fn viid_subscriptions(a: SocketAddr) -> Vec<Value> {
    get(a, "/v1/subscriptions").body["subscriptions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A registered camera may neither subscribe nor dispose (布控): either would push its
/// whole community's captures to an address it names, more than it may read (its
/// object queries are refused too). 403, status 4, nothing made; a platform of the
/// same community does both.
#[test]
fn a_camera_neither_subscribes_nor_disposes() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    catalog(a);
    let receiver = Receiver::start();
    let gate = gate_registered(a);
    let subscribe = |id: &str| {
        json!({"SubscribeListObject": {"SubscribeObject": [
            {"SubscribeID": id, "SubscribeDetail": "13", "ResourceURI": GATE,
             "BeginTime": "20210101000000", "EndTime": "20991231235959",
             "ReceiveAddr": format!("http://{}/VIID/SubscribeNotifications", receiver.addr)}]}})
        .to_string()
    };
    let dispose = json!({"DispositionListObject": {"DispositionObject": [
        {"DispositionID": "320500000000000001052021090108000000001", "Title": "t",
         "DispositionCategory": "1", "TargetFeature": "苏E3*", "PriorityLevel": 1,
         "BeginTime": "20210101000000", "EndTime": "20991231235959",
         "ReceiveAddr": format!("http://{}/VIID/DispositionNotifications", receiver.addr)}]}})
    .to_string();
    for (method, path, body) in [
        ("POST", "/VIID/Subscribes", subscribe(SUBSCRIBE_ID)),
        ("PUT", "/VIID/Subscribes", subscribe(SUBSCRIBE_ID)),
        ("POST", "/VIID/Dispositions", dispose.clone()),
        ("DELETE", "/VIID/Subscribes?IDList=1", String::new()),
    ] {
        let (status, _, answer) = viid(a, method, path, &gate, &body);
        assert_eq!(status, 403, "{method} {path}: {answer}");
        assert_eq!(
            answer["ResponseStatusObject"]["StatusCode"], 4,
            "{method} {path}: {answer}"
        );
    }
    assert_eq!(get(a, "/v1/subscriptions").body["subscriptions"], json!([]));
    assert_eq!(get(a, "/v1/watchlists").body["watchlists"], json!([]));
    // The platform may.
    subscribed(
        a,
        json!({"SubscribeID": SUBSCRIBE_ID, "SubscribeDetail": "13", "ResourceURI": GATE,
               "BeginTime": "20210101000000", "EndTime": "20991231235959",
               "ReceiveAddr": format!("http://{}/VIID/SubscribeNotifications", receiver.addr)}),
    );
    let ident = [("User-Identify", PLATFORM.to_string())];
    let (status, _, answer) = viid(a, "POST", "/VIID/Dispositions", &ident, &dispose);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(statuses(&answer)[0]["StatusCode"], 0, "{answer}");
}

/// A subscription whose owner is no platform (made before that was checked, or its
/// device since changed to a camera) is not started at the next start: kept and
/// listed, it pushes nothing.
#[test]
fn a_subscription_whose_owner_is_no_platform_is_not_started() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), |_| {});
    let a = server.addr;
    catalog(a);
    let receiver = Receiver::start();
    receiver.up.store(true, Ordering::SeqCst);
    subscribed(
        a,
        json!({"SubscribeID": SUBSCRIBE_ID, "SubscribeDetail": "13",
               "BeginTime": "20210101000000", "EndTime": "20991231235959",
               "ReceiveAddr": format!("http://{}/VIID/SubscribeNotifications", receiver.addr)}),
    );
    let upload = |a: SocketAddr, i: u64| {
        let gate = gate_registered(a);
        let body =
            json!({"MotorVehicleListObject": {"MotorVehicleObject": [vehicle(i, &jpeg(i, 500))]}});
        assert_eq!(
            viid(a, "POST", "/VIID/MotorVehicles", &gate, &body.to_string()).0,
            200
        );
    };
    upload(a, 1);
    assert!(
        wait_until(Duration::from_secs(20), || receiver
            .bodies
            .lock()
            .unwrap()
            .len()
            == 1),
        "delivered while its owner is a platform"
    );
    // The platform's record becomes a camera's; the server restarts.
    let r = put_json(
        a,
        &format!("/v1/devices/{PLATFORM}"),
        &json!({"community": "3205080001", "kind": "checkpoint_camera", "gat1400": {"password": "p"}}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    server.stop();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    upload(a, 2);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        receiver.bodies.lock().unwrap().len(),
        1,
        "pushed after the restart"
    );
    let listed = get(a, "/v1/subscriptions").body;
    assert!(
        listed.to_string().contains(SUBSCRIBE_ID),
        "kept for an admin to delete: {listed}"
    );
}
