//! GA/T 1400 cascade between two `sightline` processes on 127.0.0.1: B subscribes to A
//! (`/v1/remote-subscriptions` on B: `/VIID/Subscribes` at A), and A registers with B
//! as its lower platform and uploads —
//! across A being SIGKILLed (with objects not yet delivered, and in the middle of
//! delivering) and B being down for a while.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use serde_json::{json, Value};

use crate::gat1400::{b64, image, jpeg, put_json, register, viid};
use crate::support::{get, post, wait_until, GATE};

const A_ID: &str = "32050000005030000001";
const B_ID: &str = "32050000005030000002";

/// A port free on 127.0.0.1 now (a server restarted on it keeps its address, as
/// `ReceiveAddr` and the upstream URL name it).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `sightline` binary serving `data` on `port` as 视图库 `id`.
fn spawn(data: &Path, port: u16, id: &str) -> Child {
    let (child, _) = sightline_testkit::spawn_listening(
        Command::new(env!("CARGO_BIN_EXE_sightline"))
            .args(["serve", "--no-auth", "--viid-server-id", id, "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data")
            .arg(data),
    );
    child
}

fn sigkill(child: &mut Child) {
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

/// Vehicle `i` passing the gate, and its picture.
fn vehicle(i: u64) -> (Value, Vec<u8>) {
    let time = format!("202109010{}{:02}{:02}", 8 + i / 60, i % 60, i % 60);
    let picture = jpeg(1000 + i, 20_000 + i as usize * 7);
    let o = json!({"MotorVehicleID": format!("{GATE}02{time}{i:05}02{i:05}"), "InfoKind": 1,
        "SourceID": format!("{GATE}02{time}{i:05}"), "DeviceID": GATE, "TollgateID": GATE,
        "PassTime": time, "PlateNo": format!("苏E{:05}", 10_000 + i), "PlateColor": "2",
        "VehicleClass": "K33", "VehicleColor": "A", "LaneNo": 1,
        "SubImageList": {"SubImageInfoObject": [{"ImageID": format!("{GATE}02{time}{i:05}"),
            "EventSort": 2, "DeviceID": GATE, "Type": "01", "FileFormat": "Jpeg",
            "ShotTime": time, "Width": "1920", "Height": "1080", "Data": b64(&picture)}]}});
    (o, picture)
}

/// Face `i` seen at the gate, and its picture.
fn face(i: u64) -> (Value, Vec<u8>) {
    let time = format!("202109010{}{:02}{:02}", 8 + i / 60, i % 60, (i + 30) % 60);
    let picture = jpeg(5000 + i, 10_000 + i as usize * 3);
    let o = json!({"FaceID": format!("{GATE}06{time}{i:05}06{i:05}"), "InfoKind": 1,
        "SourceID": format!("{GATE}06{time}{i:05}"), "DeviceID": GATE, "ShotTime": time,
        "LeftTopX": 10, "LeftTopY": 10, "RightBtmX": 200, "RightBtmY": 240,
        "SubImageList": {"SubImageInfoObject": [{"ImageID": format!("{GATE}06{time}{i:05}"),
            "EventSort": 10, "DeviceID": GATE, "Type": "11", "FileFormat": "Jpeg",
            "ShotTime": time, "Width": "200", "Height": "240", "Data": b64(&picture)}]}});
    (o, picture)
}

/// What the test sent to A, in order.
#[derive(Default)]
struct Sent {
    vehicles: Vec<(Value, Vec<u8>)>,
    faces: Vec<(Value, Vec<u8>)>,
}

/// The gate registers with A and uploads vehicles and faces `range` (one request each);
/// A must take every object.
fn upload(a: SocketAddr, range: std::ops::Range<u64>, sent: &mut Sent) {
    assert_eq!(register(a, "/VIID/System/Register", GATE, "g").0, 200);
    let ident = [("User-Identify", GATE.to_string())];
    let vehicles: Vec<(Value, Vec<u8>)> = range.clone().map(vehicle).collect();
    let faces: Vec<(Value, Vec<u8>)> = range.map(face).collect();
    for (path, list, item, objects) in [
        (
            "/VIID/MotorVehicles",
            "MotorVehicleListObject",
            "MotorVehicleObject",
            &vehicles,
        ),
        ("/VIID/Faces", "FaceListObject", "FaceObject", &faces),
    ] {
        let items: Vec<&Value> = objects.iter().map(|(o, _)| o).collect();
        let body = json!({ list: { item: items } }).to_string();
        let (status, _, answer) = viid(a, "POST", path, &ident, &body);
        assert_eq!(status, 200, "{answer}");
        let statuses = answer["ResponseStatusListObject"]["ResponseStatusObject"]
            .as_array()
            .unwrap();
        assert_eq!(statuses.len(), objects.len(), "{answer}");
        assert!(statuses.iter().all(|s| s["StatusCode"] == 0), "{answer}");
    }
    sent.vehicles.extend(vehicles);
    sent.faces.extend(faces);
}

/// B's events of `kind`, in B's commit order.
fn stored(b: SocketAddr, kind: &str) -> Vec<Value> {
    let page = get(b, &format!("/v1/feed?after=0&limit=1000&kind={kind}")).body;
    page["events"].as_array().cloned().unwrap_or_default()
}

/// Waits until B holds `n` vehicles and `n` faces.
fn wait_for_b(a: SocketAddr, b: SocketAddr, n: usize) {
    let ok = wait_until(Duration::from_secs(90), || {
        stored(b, "vehicle").len() >= n && stored(b, "face").len() >= n
    });
    assert!(
        ok,
        "B has {} vehicles and {} faces of {n}; A's subscriptions {} and upstreams {}",
        stored(b, "vehicle").len(),
        stored(b, "face").len(),
        get(a, "/v1/subscriptions").body,
        get(a, "/v1/upstreams").body
    );
}

/// B holds each object sent once, in the order sent, as uploaded (every field but
/// the pictures' `Data`), its pictures byte-identical.
fn check_b(b: SocketAddr, kind: &str, id_field: &str, sent: &[(Value, Vec<u8>)]) {
    let events = stored(b, kind);
    let got: Vec<&str> = events
        .iter()
        .map(|e| e["attrs"]["source_id"].as_str().unwrap())
        .collect();
    let want: Vec<&str> = sent
        .iter()
        .map(|(o, _)| o[id_field].as_str().unwrap())
        .collect();
    assert_eq!(got, want, "{kind}s on B: each once, in order");
    for (e, (object, picture)) in events.iter().zip(sent) {
        let url = e["images"][0]["url"].as_str().unwrap();
        assert!(url.starts_with("/v1/images/"), "stored on B: {url}");
        let (status, _, bytes) = image(b, url, None);
        assert_eq!(status, 200);
        assert!(bytes == *picture, "{kind} {}: picture differs", want[0]);
        let (_, _, kept) = image(b, e["object"].as_str().unwrap(), None);
        let kept: Value = serde_json::from_slice(&kept).unwrap();
        for (k, v) in object.as_object().unwrap() {
            if k != "SubImageList" {
                assert_eq!(&kept[k], v, "{kind} field {k}");
            }
        }
    }
}

fn upstream(a: SocketAddr, id: &str) -> Value {
    get(a, &format!("/v1/upstreams/{id}")).body
}

/// The done-when of the cascade: two real `sightline` processes. A registers with B
/// (`POST /v1/upstreams`: digest, keepalive every second) and uploads its faces with
/// their pictures as base64; B subscribes to A's vehicles of the gate (`POST
/// /v1/remote-subscriptions` on B: `/VIID/Subscribes` at A, `ImageData` 1) with B's
/// `/VIID/SubscribeNotifications` as `ReceiveAddr`. B is SIGKILLed and stays down while A stores more; A is SIGKILLed
/// with those undelivered, restarted, stores more; B comes back (forgetting A's
/// registration: A registers again), and again at once (A's keepalive is refused: it
/// registers again); A is SIGKILLed again right after an upload. B
/// ends with every vehicle and every face once, in order, as uploaded, pictures
/// byte-identical, and A's upstream registered with nothing left to send.
#[test]
fn two_sightline_processes_cascade_both_ways_across_sigkill_and_downtime() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (port_a, port_b) = (free_port(), free_port());
    let mut proc_a = spawn(dir_a.path(), port_a, A_ID);
    let mut proc_b = spawn(dir_b.path(), port_b, B_ID);
    let a: SocketAddr = format!("127.0.0.1:{port_a}").parse().unwrap();
    let b: SocketAddr = format!("127.0.0.1:{port_b}").parse().unwrap();
    for (server, devices) in [
        (
            a,
            vec![
                (
                    GATE,
                    json!({"community": "3205080001", "kind": "checkpoint_camera",
                           "direction": "in", "gat1400": {"password": "g"}}),
                ),
                (
                    B_ID,
                    json!({"community": "3205080001", "kind": "platform",
                           "gat1400": {"password": "b-pass"}}),
                ),
            ],
        ),
        (
            b,
            vec![(
                A_ID,
                json!({"community": "3205080001", "kind": "platform",
                       "gat1400": {"password": "a-pass"}}),
            )],
        ),
    ] {
        crate::gat1400::north(server);
        for (code, body) in devices {
            let r = put_json(server, &format!("/v1/devices/{code}"), &body);
            assert_eq!(r.status, 201, "{}", r.body);
        }
    }

    // A registers with B, as its lower platform, for faces.
    let r = post(
        a,
        "/v1/upstreams",
        "application/json",
        &json!({"url": format!("http://{b}"), "server_id": B_ID, "password": "a-pass",
                "kinds": ["face"], "image_data": "base64", "keepalive_s": 1, "from": 0})
        .to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.body.get("password").is_none(), "{}", r.body);
    let up = r.body["id"].as_str().unwrap().to_string();
    assert!(
        wait_until(Duration::from_secs(20), || upstream(a, &up)["status"]
            ["registered"]
            == true),
        "{}",
        upstream(a, &up)
    );

    // B subscribes to A's vehicles of the gate (`POST /VIID/Subscribes` at A, by
    // digest as B's platform record there), notifications to B's
    // `/VIID/SubscribeNotifications`, pictures as `Data`.
    let r = post(
        b,
        "/v1/remote-subscriptions",
        "application/json",
        &json!({"url": format!("http://{a}"), "password": "b-pass", "kinds": ["vehicle"],
                "resource_uri": GATE, "title": "A到B", "image_data": "base64",
                "begin_time": "20210101000000"})
        .to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(!r.body.to_string().contains("b-pass"), "{}", r.body);
    let remote = r.body["id"].as_str().unwrap().to_string();
    let subscribe_id = r.body["subscribe_id"].as_str().unwrap().to_string();
    let placed = wait_until(Duration::from_secs(20), || {
        get(b, "/v1/remote-subscriptions").body["remote_subscriptions"][0]["status"]["placed"]
            == true
    });
    assert!(placed, "{}", get(b, "/v1/remote-subscriptions").body);
    let on_a = get(a, "/v1/subscriptions").body;
    assert_eq!(
        on_a["subscriptions"][0]["id"],
        format!("viid-{subscribe_id}"),
        "{on_a}"
    );
    assert_eq!(
        on_a["subscriptions"][0]["url"],
        format!("http://{b}/VIID/SubscribeNotifications")
    );

    let mut sent = Sent::default();
    upload(a, 0..5, &mut sent);
    wait_for_b(a, b, 5);

    // B goes down; A stores more, and says why it cannot deliver.
    sigkill(&mut proc_b);
    upload(a, 5..10, &mut sent);
    let failing = wait_until(Duration::from_secs(20), || {
        let subs = get(a, "/v1/subscriptions").body;
        let st = &subs["subscriptions"][0]["status"];
        let up = upstream(a, &up);
        st["failures_in_a_row"].as_u64() >= Some(1)
            && st["last_error"].as_str().is_some()
            && up["status"]["failures_in_a_row"].as_u64() >= Some(1)
            && up["status"]["last_error"].as_str().is_some()
    });
    assert!(failing, "{}", upstream(a, &up));
    assert!(upstream(a, &up)["status"]["lag"].as_u64() > Some(0));

    // A is SIGKILLed with those undelivered, and restarted; it stores more while B is
    // still down.
    sigkill(&mut proc_a);
    proc_a = spawn(dir_a.path(), port_a, A_ID);
    upload(a, 10..15, &mut sent);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(stored_len_or_zero(b), 0, "B is down");

    // B comes back, without A's registration: A registers again, and delivers.
    proc_b = spawn(dir_b.path(), port_b, B_ID);
    wait_for_b(a, b, 15);
    let st = upstream(a, &up)["status"].clone();
    assert_eq!(st["registered"], true, "{st}");
    let registrations = st["registrations"].as_u64().unwrap();
    assert!(registrations >= 1, "{st}");

    // B restarts at once: it forgot A, whose next keepalive is answered 401, and A
    // registers again (answering B's new challenge).
    sigkill(&mut proc_b);
    proc_b = spawn(dir_b.path(), port_b, B_ID);
    let again = wait_until(Duration::from_secs(20), || {
        let st = &upstream(a, &up)["status"];
        st["registered"] == true && st["registrations"].as_u64() > Some(registrations)
    });
    assert!(again, "{}", upstream(a, &up));

    // A is SIGKILLed right after an upload (mid-delivery), and restarted.
    upload(a, 15..20, &mut sent);
    sigkill(&mut proc_a);
    proc_a = spawn(dir_a.path(), port_a, A_ID);
    wait_for_b(a, b, 20);
    std::thread::sleep(Duration::from_millis(1500));

    check_b(b, "vehicle", "MotorVehicleID", &sent.vehicles);
    check_b(b, "face", "FaceID", &sent.faces);
    assert!(
        wait_until(Duration::from_secs(20), || upstream(a, &up)["status"]
            ["lag"]
            == 0),
        "{}",
        upstream(a, &up)
    );
    let metrics = crate::support::send(
        a,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let metrics = String::from_utf8_lossy(&metrics.body).to_string();
    assert!(
        metrics.contains(&format!(
            "sightline_upstream_registered{{id=\"{up}\",target=\"upstream\"}} 1"
        )),
        "{metrics}"
    );
    // B cancels its subscription at A.
    let r = crate::support::call(
        b,
        "DELETE",
        &format!("/v1/remote-subscriptions/{remote}"),
        "",
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["cancelled"], true, "{}", r.body);
    assert_eq!(get(a, "/v1/subscriptions").body["subscriptions"], json!([]));
    sigkill(&mut proc_a);
    sigkill(&mut proc_b);
}

/// Events on B at all (0 while it is down).
fn stored_len_or_zero(b: SocketAddr) -> usize {
    match std::net::TcpStream::connect(b) {
        Ok(_) => stored(b, "vehicle").len() + stored(b, "face").len(),
        Err(_) => 0,
    }
}
