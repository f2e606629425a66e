//! Upstreams and remote subscriptions on a cluster (`/v1/upstreams`,
//! `/v1/remote-subscriptions` on query nodes; the upper platform and the lower one's
//! notifications on ingest nodes), against another 视图库 that is a real HTTP server
//! in the test (`sightline_testkit::platform`, as `serve`'s cascade tests use it).

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use sightline_testkit::gat1400::{register, viid};
use sightline_testkit::platform::{digest_ok, one, per_object, Platform, Taken};

use super::*;

/// The upper platform's 视图库 id.
const UPPER: &str = "32050000005030000099";
/// Our id at the upper platform (the upstream's `device_id`).
const OURS: &str = "32050800005030000077";
/// A lower platform we subscribe at, registered on the ingest nodes (community A).
const LOWER: &str = "32050800012000000005";
const A: &str = "3205080001";
const DAY: &str = "from=2025-12-01T00:00:00%2B08:00&to=2025-12-02T00:00:00%2B08:00";

/// An upper 视图库 that checks our digest (password `up`) on Register and UnRegister
/// and takes everything else; while `forgot` is set, it answers the next keepalive
/// 401 (it restarted and does not know us).
fn upper(forgot: Arc<AtomicBool>) -> Platform {
    Platform::start(move |t| match t.path.as_str() {
        "/VIID/System/Register" | "/VIID/System/UnRegister" => match digest_ok(t, OURS, "up") {
            true => (200, one(0, "正常")),
            false => (401, String::new()),
        },
        "/VIID/System/Keepalive" if forgot.swap(false, Ordering::SeqCst) => (401, String::new()),
        "/VIID/System/Keepalive" => (200, one(0, "正常")),
        _ => (200, per_object(t, 0, "正常")),
    })
}

/// The source ids of the objects of every request to `path` the platform took, with
/// how many times each came.
fn objects_at(
    p: &Platform,
    path: &str,
    list: &str,
    item: &str,
    id: &str,
) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for t in p.taken("POST", path) {
        let lists: Vec<Value> = match path {
            "/VIID/SubscribeNotifications" => t.body["SubscribeNotificationListObject"]
                ["SubscribeNotificationObject"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|n| n[list].clone())
                .collect(),
            _ => vec![t.body[list].clone()],
        };
        for l in lists {
            for o in l[item].as_array().cloned().unwrap_or_default() {
                *seen
                    .entry(o[id].as_str().unwrap_or("").to_string())
                    .or_default() += 1;
            }
        }
    }
    seen
}

/// Every object uploaded to the upper (vehicles and faces), by source id.
fn uploaded(p: &Platform) -> BTreeMap<String, usize> {
    let mut all = objects_at(
        p,
        "/VIID/MotorVehicles",
        "MotorVehicleListObject",
        "MotorVehicleObject",
        "MotorVehicleID",
    );
    for (id, n) in objects_at(p, "/VIID/Faces", "FaceListObject", "FaceObject", "FaceID") {
        *all.entry(id).or_default() += n;
    }
    all
}

/// Every vehicle notified to the upper, by source id.
fn notified(p: &Platform) -> BTreeMap<String, usize> {
    objects_at(
        p,
        "/VIID/SubscribeNotifications",
        "MotorVehicleObjectList",
        "MotorVehicleObject",
        "MotorVehicleID",
    )
}

/// The requests to `path` whose digest answers the upper's challenge.
fn proven(p: &Platform, path: &str) -> Vec<Taken> {
    p.taken("POST", path)
        .into_iter()
        .filter(|t| digest_ok(t, OURS, "up"))
        .collect()
}

/// An upstream added on one query node registers there by digest and keeps alive; the
/// upper subscribes through an ingest node by `User-Identify` from its address (and
/// reads its tollgates); every event ingested is uploaded once and every vehicle
/// notified once; a keepalive answered 401 registers again. The holder is
/// SIGKILLed (nothing in flight): the other query node takes the upstream over,
/// registers again, and the events after reach the upper once too (the uploads'
/// cursor was written before the kill: `serve`'s at-least-once would allow the last
/// page in flight twice, and none was). A clean stop unregisters; a node started
/// after takes it over; `DELETE` unregisters and closes the door. Keys: an
/// investigator and a district admin are refused as on `serve`.
#[test]
fn an_upstream_registers_uploads_and_is_taken_over_when_its_query_node_dies() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut env = Env::start();
    env.query_extra = "replicas = 0".into();
    let cli = env.config_file("cli");
    let admin = super::console::cli_key(&cli, "admin", None, "city admin");
    let district = super::console::cli_key(&cli, "admin", Some(A), "district admin");
    let detective = super::console::cli_key(&cli, "investigate", None, "detective");
    let feed = super::console::cli_key(&cli, "ingest", None, "feed");
    let (_ingest, ia) = env.ingest("ingest-1");
    let _indexer = env.indexer("index-1", &[]);
    let (q1, qa1) = env.query_node("query-1");
    let (q2, qa2) = env.query_node("query-2");
    let forgot = Arc::new(AtomicBool::new(false));
    let up = upper(forgot.clone());
    let url = format!("http://{}", up.addr);

    // Roles and scope as on `serve`.
    let body = json!({"url": url, "password": "up", "server_id": UPPER, "device_id": OURS,
                      "keepalive_s": 1})
    .to_string();
    for (method, path, body) in [
        ("GET", "/v1/upstreams", ""),
        ("POST", "/v1/upstreams", body.as_str()),
        ("GET", "/v1/remote-subscriptions", ""),
        ("POST", "/v1/remote-subscriptions", "{}"),
    ] {
        let (status, answer) = ask_as(qa1, Some(&detective), method, path, body);
        assert_eq!(status, 403, "an investigator: {method} {path}: {answer}");
    }
    let (status, answer) = ask_as(qa1, Some(&district), "GET", "/v1/remote-subscriptions", "");
    assert_eq!(status, 403, "city-wide only: {answer}");
    let wide = json!({"url": url, "password": "up", "communities": ["3205080002"]});
    let (status, answer) = ask_as(
        qa1,
        Some(&district),
        "POST",
        "/v1/upstreams",
        &wide.to_string(),
    );
    assert_eq!(
        (status, &answer["error"]["field"]),
        (403, &json!("communities")),
        "{answer}"
    );
    for (bad, field) in [
        (json!({"password": "p"}), "url"),
        (json!({"url": url}), "password"),
        (
            json!({"url": url, "password": "p", "keepalive_s": 0}),
            "keepalive_s",
        ),
        (
            json!({"url": url, "password": "p", "device_id": "1"}),
            "device_id",
        ),
    ] {
        let (status, answer) = ask_as(qa1, Some(&admin), "POST", "/v1/upstreams", &bad.to_string());
        assert_eq!(
            (status, &answer["error"]["field"]),
            (400, &json!(field)),
            "{bad}: {answer}"
        );
    }

    // The upper is a stranger until we are registered there.
    let as_upper = vec![("User-Identify", UPPER.to_string())];
    let subscribe = json!({"SubscribeListObject": {"SubscribeObject": [{
        "SubscribeID": "320500000000000099032021090108000000001", "Title": "上级订阅",
        "SubscribeDetail": "13", "ResourceURI": "", "BeginTime": "20210101000000",
        "EndTime": "20991231235959",
        "ReceiveAddr": format!("http://{}/VIID/SubscribeNotifications", up.addr),
        "ReportInterval": 3, "OperateType": 0, "ResultImageDeclare": "-1"}]}})
    .to_string();
    assert_eq!(
        viid(ia, "POST", "/VIID/Subscribes", &as_upper, &subscribe).0,
        401
    );

    let (status, made) = ask_as(qa1, Some(&admin), "POST", "/v1/upstreams", &body);
    assert_eq!(status, 201, "{made}");
    let id = made["id"].as_str().unwrap().to_string();
    assert!(!made.to_string().contains("\"up\""), "no password: {made}");
    assert!(
        wait_until(Duration::from_secs(30), || proven(
            &up,
            "/VIID/System/Register"
        )
        .len()
            == 1
            && up.taken("POST", "/VIID/System/Keepalive").len() >= 2),
        "no registration by digest and keepalives: {:?}",
        up.taken.lock().unwrap()
    );
    let shown = |qa| ask_as(qa, Some(&admin), "GET", &format!("/v1/upstreams/{id}"), "").1;
    assert!(
        wait_until(Duration::from_secs(10), || shown(qa2)["status"]
            ["registered"]
            == true),
        "{}",
        shown(qa2)
    );
    let (_, listed) = ask_as(qa2, Some(&admin), "GET", "/v1/upstreams", "");
    assert_eq!(listed["upstreams"][0]["id"], id.as_str(), "{listed}");
    assert!(!listed.to_string().contains("\"up\""), "{listed}");
    let (_, subs) = ask_as(qa2, Some(&admin), "GET", "/v1/subscriptions", "");
    assert_eq!(
        subs["subscriptions"],
        json!([]),
        "an upstream is not a subscription: {subs}"
    );

    // The upper subscribes through the ingest node by `User-Identify` alone.
    let mut answer = Value::Null;
    assert!(
        wait_until(Duration::from_secs(20), || {
            let (status, _, a) = viid(ia, "POST", "/VIID/Subscribes", &as_upper, &subscribe);
            answer = a;
            status == 200
                && answer["ResponseStatusListObject"]["ResponseStatusObject"][0]["StatusCode"] == 0
        }),
        "{answer}"
    );
    let (status, _, tollgates) = viid(ia, "GET", "/VIID/Tollgates", &as_upper, "");
    assert_eq!(status, 200, "an upper reads the catalogue: {tollgates}");
    assert!(tollgates["TollgateListObject"].is_object(), "{tollgates}");
    let spoofed = vec![("User-Identify", "32050000005030000098".to_string())];
    assert_eq!(viid(ia, "GET", "/VIID/Tollgates", &spoofed, "").0, 401);
    assert_eq!(
        viid(ia, "POST", "/VIID/Subscribes", &spoofed, &subscribe).0,
        401
    );
    assert_eq!(
        viid(ia, "POST", "/VIID/MotorVehicles", &as_upper, "{}").0,
        401,
        "an upper does not upload by User-Identify"
    );

    // Events: every one uploaded once, every vehicle notified once.
    let post = |env: &mut Env, n: usize| -> Vec<(String, bool)> {
        let (body, ids) = env.batch(n);
        let (status, sent) = ask_as(ia, Some(&feed), "POST", "/v1/events", &body);
        assert_eq!(status, 200, "{sent}");
        let vehicles = body.lines().map(|l| l.contains("\"vehicle\""));
        ids.into_iter().zip(vehicles).collect()
    };
    let mut sent = post(&mut env, 60);
    let all_once = |sent: &[(String, bool)]| {
        let (u, n) = (uploaded(&up), notified(&up));
        sent.iter()
            .all(|(id, vehicle)| u.get(id) == Some(&1) && (!vehicle || n.get(id) == Some(&1)))
    };
    assert!(
        wait_until(Duration::from_secs(60), || all_once(&sent)),
        "uploaded {:?}, notified {:?}",
        uploaded(&up),
        notified(&up)
    );
    for (head_of, path) in [
        (up.taken("POST", "/VIID/MotorVehicles"), "uploads"),
        (
            up.taken("POST", "/VIID/SubscribeNotifications"),
            "notifications",
        ),
    ] {
        assert!(
            head_of
                .iter()
                .all(|t| t.head.contains(&format!("user-identify: {OURS}"))),
            "{path} as our id there"
        );
    }
    // The upper forgets us (a keepalive answered 401): we register again.
    let registrations = proven(&up, "/VIID/System/Register").len();
    forgot.store(true, Ordering::SeqCst);
    assert!(
        wait_until(Duration::from_secs(20), || !forgot.load(Ordering::SeqCst)
            && proven(&up, "/VIID/System/Register").len() > registrations
            && shown(qa1)["status"]["registered"] == true),
        "not registered again after a keepalive's 401: {}",
        shown(qa1)
    );
    // The cursor's write lands before the kill.
    std::thread::sleep(Duration::from_millis(1500));

    // The holder dies; the other query node takes the upstream over.
    let holder = shown(qa1)["status"]["holder"].as_str().unwrap().to_string();
    let registrations = proven(&up, "/VIID/System/Register").len();
    let (mut q1, mut q2) = (Some(q1), Some(q2));
    let (survivor, survivor_addr) = match holder.starts_with("query-1") {
        true => {
            q1.take().unwrap().signal(libc::SIGKILL);
            (q2.take().unwrap(), qa2)
        }
        false => {
            q2.take().unwrap().signal(libc::SIGKILL);
            (q1.take().unwrap(), qa1)
        }
    };
    sent.extend(post(&mut env, 60));
    assert!(
        wait_until(Duration::from_secs(60), || all_once(&sent)),
        "after the takeover: uploaded {:?}, notified {:?}",
        uploaded(&up),
        notified(&up)
    );
    assert!(
        proven(&up, "/VIID/System/Register").len() > registrations,
        "the survivor registered again"
    );
    let now = shown(survivor_addr);
    assert_ne!(now["status"]["holder"], holder.as_str(), "{now}");
    assert_eq!(uploaded(&up).len(), sent.len());

    // A clean stop unregisters there; a node started after takes it over.
    let unregistered = proven(&up, "/VIID/System/UnRegister").len();
    survivor.signal(libc::SIGTERM);
    assert!(
        wait_until(Duration::from_secs(20), || proven(
            &up,
            "/VIID/System/UnRegister"
        )
        .len()
            > unregistered),
        "no UnRegister at shutdown"
    );
    let (_q3, qa3) = env.query_node("query-3");
    let registrations = proven(&up, "/VIID/System/Register").len();
    assert!(
        wait_until(Duration::from_secs(30), || proven(
            &up,
            "/VIID/System/Register"
        )
        .len()
            > registrations),
        "the new node did not register"
    );

    // Deleted: unregistered there, and the upper is a stranger again.
    let (status, gone) = ask_as(
        qa3,
        Some(&admin),
        "DELETE",
        &format!("/v1/upstreams/{id}"),
        "",
    );
    assert_eq!(status, 200, "{gone}");
    assert_eq!(gone["unregistered"], true, "{gone}");
    // What the upper subscribed to through it ends with it, as on `serve`.
    assert_eq!(
        gone["ended_subscriptions"],
        json!(["320500000000000099032021090108000000001"]),
        "{gone}"
    );
    let (_, left) = ask_as(qa3, Some(&admin), "GET", "/v1/subscriptions", "");
    assert!(
        !left
            .to_string()
            .contains("320500000000000099032021090108000000001"),
        "{left}"
    );
    assert_eq!(
        ask_as(qa3, Some(&admin), "GET", &format!("/v1/upstreams/{id}"), "").0,
        404
    );
    assert!(
        wait_until(Duration::from_secs(20), || viid(
            ia,
            "GET",
            "/VIID/Subscribes",
            &as_upper,
            ""
        )
        .0 == 401),
        "the door stays open"
    );
    eprintln!(
        "registrations {}, keepalives {}, unregistrations {}, objects uploaded {}, vehicles notified {}",
        proven(&up, "/VIID/System/Register").len(),
        up.taken("POST", "/VIID/System/Keepalive").len(),
        proven(&up, "/VIID/System/UnRegister").len(),
        uploaded(&up).values().sum::<usize>(),
        notified(&up).values().sum::<usize>()
    );
    let (_, audit) = ask_as(qa3, Some(&admin), "GET", "/v1/audit", "");
    assert!(audit.to_string().contains("/v1/upstreams"), "{audit}");
}

/// A remote subscription placed from a query node: the lower platform gets `POST
/// /VIID/Subscribes` by digest with our `ReceiveAddr` (an ingest node's, which a
/// cluster must be given); its notifications posted to the ingest node are stored as
/// its uploads and queryable on a query node; one for a `SubscribeID` we did not place
/// is refused; its holder SIGKILLed, the other query node places it again; `DELETE`
/// cancels it there (`PUT /VIID/Subscribes/{id}`), after which
/// its notifications are refused too.
#[test]
fn a_remote_subscription_is_placed_from_a_query_node_and_its_notifications_stored() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut env = Env::start();
    env.query_extra = "replicas = 0".into();
    let cli = env.config_file("cli");
    let login = Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args(["cluster", "gat1400", "add", LOWER, "--community", A])
        .args([
            "--community-name",
            A,
            "--kind",
            "platform",
            "--password",
            "pw",
        ])
        .arg("--config")
        .arg(&cli)
        .output()
        .unwrap();
    assert!(login.status.success(), "{login:?}");
    let admin = super::console::cli_key(&cli, "admin", None, "city admin");
    let (_ingest, ia) = env.ingest("ingest-1");
    let _indexer = env.indexer("index-1", &[]);
    let (q1, qa1) = env.query_node("query-1");
    let (q2, qa2) = env.query_node("query-2");
    let lower = Platform::start(|t| match digest_ok(t, OURS, "low") {
        true if t.path.starts_with("/VIID/Subscribes/") => (200, one(0, "正常")),
        true => (200, per_object(t, 0, "正常")),
        false => (401, String::new()),
    });
    let receive_addr = format!("http://{ia}/VIID/SubscribeNotifications");
    let make = |extra: Value| {
        let mut body = json!({"url": format!("http://{}", lower.addr), "password": "low",
                              "device_id": OURS, "kinds": ["vehicle"]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        ask_as(
            qa1,
            Some(&admin),
            "POST",
            "/v1/remote-subscriptions",
            &body.to_string(),
        )
    };
    let (status, answer) = make(json!({}));
    assert_eq!(
        (status, &answer["error"]["field"]),
        (400, &json!("receive_addr")),
        "{answer}"
    );
    let (status, answer) = make(json!({"receive_addr": receive_addr, "kinds": ["car"]}));
    assert_eq!(
        (status, &answer["error"]["field"]),
        (400, &json!("kinds")),
        "{answer}"
    );
    let (status, made) = make(json!({"receive_addr": receive_addr}));
    assert_eq!(status, 201, "{made}");
    let id = made["id"].as_str().unwrap().to_string();
    let subscribe_id = made["subscribe_id"].as_str().unwrap().to_string();
    assert!(!made.to_string().contains("\"low\""), "{made}");

    let placed = || -> Vec<Taken> {
        lower
            .taken("POST", "/VIID/Subscribes")
            .into_iter()
            .filter(|t| digest_ok(t, OURS, "low"))
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(30), || !placed().is_empty()),
        "never placed: {:?}",
        lower.taken.lock().unwrap()
    );
    let o = &placed()[0].body["SubscribeListObject"]["SubscribeObject"][0];
    assert_eq!(o["SubscribeID"], subscribe_id.as_str(), "{o}");
    assert_eq!(o["ReceiveAddr"], receive_addr.as_str(), "{o}");
    assert_eq!(o["SubscribeDetail"], "13", "{o}");
    let status_of = |qa| {
        ask_as(qa, Some(&admin), "GET", "/v1/remote-subscriptions", "").1["remote_subscriptions"][0]
            ["status"]
            .clone()
    };
    assert!(
        wait_until(Duration::from_secs(20), || status_of(qa2)["placed"] == true),
        "{}",
        status_of(qa2)
    );
    let holder = status_of(qa2)["holder"].as_str().unwrap().to_string();

    // Its holder dies: the other query node takes it and places it again.
    let (mut q1, mut q2) = (Some(q1), Some(q2));
    let (_survivor, qa) = match holder.starts_with("query-1") {
        true => {
            q1.take().unwrap().signal(libc::SIGKILL);
            (q2.take().unwrap(), qa2)
        }
        false => {
            q2.take().unwrap().signal(libc::SIGKILL);
            (q1.take().unwrap(), qa1)
        }
    };
    assert!(
        wait_until(Duration::from_secs(30), || placed().len() >= 2
            && status_of(qa)["holder"]
                .as_str()
                .is_some_and(|h| h != holder)),
        "not placed again by the survivor: {}",
        status_of(qa)
    );
    let again = &placed()[1].body["SubscribeListObject"]["SubscribeObject"][0];
    assert_eq!(
        again["SubscribeID"],
        subscribe_id.as_str(),
        "the same subscription: {again}"
    );

    // The lower platform registers at an ingest node and notifies.
    assert_eq!(register(ia, "/VIID/System/Register", LOWER, "pw").0, 200);
    let ident = vec![("User-Identify", LOWER.to_string())];
    let vehicle = |i: u64| {
        json!({"MotorVehicleID": format!("{LOWER}0220251201083000{i:05}02{i:05}"), "InfoKind": 1,
               "DeviceID": LOWER, "TollgateID": LOWER, "PassTime": format!("202512010830{i:02}"),
               "PlateNo": "苏E7CAS9", "PlateColor": "2"})
    };
    let notification = |sid: &str, n: u64| {
        json!({"SubscribeNotificationListObject": {"SubscribeNotificationObject": [{
            "NotificationID": format!("32050800012000000005032025120108300000{n}"),
            "SubscribeID": sid, "Title": "t", "TriggerTime": "20251201083000",
            "MotorVehicleObjectList": {"MotorVehicleObject": [vehicle(2 * n), vehicle(2 * n + 1)]}}]}})
        .to_string()
    };
    let statuses =
        |answer: &Value| answer["ResponseStatusListObject"]["ResponseStatusObject"][0].clone();
    let (status, _, answer) = viid(
        ia,
        "POST",
        "/VIID/SubscribeNotifications",
        &ident,
        &notification(&subscribe_id, 1),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(statuses(&answer)["StatusCode"], 0, "{answer}");
    let (_, _, answer) = viid(
        ia,
        "POST",
        "/VIID/SubscribeNotifications",
        &ident,
        &notification("320500000000000001032021090108000000009", 2),
    );
    assert_eq!(statuses(&answer)["StatusCode"], 1, "not ours: {answer}");
    let stranger = vec![("User-Identify", "32050800012000000999".to_string())];
    assert_eq!(
        viid(
            ia,
            "POST",
            "/VIID/SubscribeNotifications",
            &stranger,
            &notification(&subscribe_id, 3)
        )
        .0,
        401
    );

    let trajectory = format!(
        "/v1/trajectory?kind=vehicle&subject={}&{DAY}",
        sightline_testkit::enc("苏E7CAS9")
    );
    let mut found = Value::Null;
    assert!(
        wait_until(Duration::from_secs(60), || {
            found = ask_as(qa, Some(&admin), "GET", &trajectory, "").1;
            found["events"].as_array().map(Vec::len) == Some(2)
        }),
        "{found}"
    );
    assert_eq!(found["events"][0]["device"], LOWER, "{found}");

    // Deleted: cancelled there, and its notifications are not taken any more.
    let (status, gone) = ask_as(
        qa,
        Some(&admin),
        "DELETE",
        &format!("/v1/remote-subscriptions/{id}"),
        "",
    );
    assert_eq!(status, 200, "{gone}");
    assert_eq!(gone["cancelled"], true, "{gone}");
    let cancel: Vec<Taken> = lower
        .taken("PUT", &format!("/VIID/Subscribes/{subscribe_id}"))
        .into_iter()
        .filter(|t| digest_ok(t, OURS, "low"))
        .collect();
    assert_eq!(cancel.len(), 1, "{:?}", lower.taken.lock().unwrap());
    assert_eq!(cancel[0].body["SubscribeObject"]["OperateType"], 1);
    let (_, listed) = ask_as(qa, Some(&admin), "GET", "/v1/remote-subscriptions", "");
    assert_eq!(listed["remote_subscriptions"], json!([]), "{listed}");
    let (_, _, answer) = viid(
        ia,
        "POST",
        "/VIID/SubscribeNotifications",
        &ident,
        &notification(&subscribe_id, 4),
    );
    assert_eq!(statuses(&answer)["StatusCode"], 1, "cancelled: {answer}");
    assert_eq!(
        ask_as(
            qa,
            Some(&admin),
            "DELETE",
            &format!("/v1/remote-subscriptions/{id}"),
            ""
        )
        .0,
        404
    );
}

/// One upstream per `server_id` on a cluster's query nodes, as on `serve`: a second
/// is answered 409 `conflict` naming `server_id` and the upstream that has it — also
/// when two are created at once on two query nodes (decided in the insert) — and the
/// id is free again once that upstream is deleted.
#[test]
fn one_upstream_per_server_id_across_query_nodes() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut env = Env::start();
    env.query_extra = "replicas = 0".into();
    let cli = env.config_file("cli");
    let admin = super::console::cli_key(&cli, "admin", None, "city admin");
    let _indexer = env.indexer("index-1", &[]);
    let (_q1, qa1) = env.query_node("query-1");
    let (_q2, qa2) = env.query_node("query-2");
    let up = upper(Arc::new(AtomicBool::new(false)));
    let body = |server_id: &str| {
        json!({"url": format!("http://{}", up.addr), "password": "up",
               "server_id": server_id, "device_id": OURS})
        .to_string()
    };
    let conflict = |answer: &Value, other: &str| {
        assert_eq!(answer["error"]["code"], "conflict", "{answer}");
        assert_eq!(answer["error"]["field"], "server_id", "{answer}");
        let message = answer["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(other), "{answer} names {other}");
    };
    for round in 0..3 {
        let server_id = format!("320500000050300001{round:02}");
        let b = body(&server_id);
        let (one, two) = std::thread::scope(|s| {
            let one = s.spawn(|| ask_as(qa1, Some(&admin), "POST", "/v1/upstreams", &b));
            let two = s.spawn(|| ask_as(qa2, Some(&admin), "POST", "/v1/upstreams", &b));
            (one.join().unwrap(), two.join().unwrap())
        });
        let (won, lost) = match (one.0, two.0) {
            (201, 409) => (one.1, two.1),
            (409, 201) => (two.1, one.1),
            other => panic!("round {round}: {other:?}: {} / {}", one.1, two.1),
        };
        let winner = won["id"].as_str().unwrap().to_string();
        conflict(&lost, &winner);
        // Asked again, one after the other: the same.
        let (status, again) = ask_as(qa1, Some(&admin), "POST", "/v1/upstreams", &b);
        assert_eq!(status, 409, "{again}");
        conflict(&again, &winner);
        if round == 0 {
            // Free again once its upstream is deleted.
            let (status, gone) = ask_as(
                qa2,
                Some(&admin),
                "DELETE",
                &format!("/v1/upstreams/{winner}"),
                "",
            );
            assert_eq!(status, 200, "{gone}");
            let (status, made) = ask_as(qa2, Some(&admin), "POST", "/v1/upstreams", &b);
            assert_eq!(status, 201, "{made}");
        }
    }
    // One without a server_id (learned at registration) is not refused for it.
    let bare = json!({"url": format!("http://{}", up.addr), "password": "up",
                      "device_id": OURS})
    .to_string();
    let (status, made) = ask_as(qa1, Some(&admin), "POST", "/v1/upstreams", &bare);
    assert_eq!(status, 201, "{made}");
}

/// A remote subscription's notifications are taken on an ingest node only from the
/// platform it was placed at, as on `serve`: its URL's IP address, or the addresses
/// its name resolved to before the last placing (written by its holder with its
/// status); from any address with `[gat1400] registration_any_address`.
#[test]
fn remote_subscription_notifications_come_only_from_where_it_was_placed() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut env = Env::start();
    env.query_extra = "replicas = 0".into();
    let cli = env.config_file("cli");
    let login = Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args(["cluster", "gat1400", "add", LOWER, "--community", A])
        .args(["--community-name", A, "--kind", "platform"])
        .args(["--password", "pw", "--config"])
        .arg(&cli)
        .output()
        .unwrap();
    assert!(login.status.success(), "{login:?}");
    let admin = super::console::cli_key(&cli, "admin", None, "city admin");
    let (_bound, ia) = env.ingest("ingest-bound");
    env.gat1400 = "registration_any_address = true".into();
    let (_any, ib) = env.ingest("ingest-any");
    let _indexer = env.indexer("index-1", &[]);
    let (_q, qa) = env.query_node("query-1");
    // Placed where nothing answers (it is tried again and again): what matters here
    // is where it was placed.
    let make = |url: &str| {
        let body = json!({"url": url, "password": "low", "device_id": OURS,
                          "kinds": ["vehicle"],
                          "receive_addr": format!("http://{ia}/VIID/SubscribeNotifications")});
        let (status, made) = ask_as(
            qa,
            Some(&admin),
            "POST",
            "/v1/remote-subscriptions",
            &body.to_string(),
        );
        assert_eq!(status, 201, "{made}");
        made["subscribe_id"].as_str().unwrap().to_string()
    };
    let by_ip = make("http://127.0.0.2:9");
    let by_name = make("http://localhost:9");
    for at in [ia, ib] {
        assert_eq!(register(at, "/VIID/System/Register", LOWER, "pw").0, 200);
    }
    let ident = vec![("User-Identify", LOWER.to_string())];
    let notify = |at: SocketAddr, sid: &str, n: u64| -> (i64, String) {
        let vehicle = json!({"MotorVehicleID": format!("{LOWER}0220251201083000{n:05}02{n:05}"),
            "InfoKind": 1, "DeviceID": LOWER, "TollgateID": LOWER,
            "PassTime": "20251201083000", "PlateNo": "苏E7CAS9", "PlateColor": "2"});
        let body = json!({"SubscribeNotificationListObject": {"SubscribeNotificationObject": [{
            "NotificationID": format!("32050800012000000005032025120108300000{n}"),
            "SubscribeID": sid, "Title": "t", "TriggerTime": "20251201083000",
            "MotorVehicleObjectList": {"MotorVehicleObject": [vehicle]}}]}});
        let (status, _, answer) = viid(
            at,
            "POST",
            "/VIID/SubscribeNotifications",
            &ident,
            &body.to_string(),
        );
        assert_eq!(status, 200, "{answer}");
        let st = &answer["ResponseStatusListObject"]["ResponseStatusObject"][0];
        (
            st["StatusCode"].as_i64().unwrap_or(-1),
            st["StatusString"].as_str().unwrap_or("").to_string(),
        )
    };
    // From 127.0.0.1, for one placed at 127.0.0.2: refused, naming where.
    let (code, text) = notify(ia, &by_ip, 1);
    assert_eq!(code, 4, "{text}");
    assert!(text.contains("127.0.0.2"), "{text}");
    // Any address where the cluster says so.
    let (code, text) = notify(ib, &by_ip, 2);
    assert_eq!(code, 0, "{text}");
    // A name: taken once its holder wrote what it resolved to (127.0.0.1 among them).
    let mut last = (0, String::new());
    let mut n = 3;
    let taken = wait_until(Duration::from_secs(30), || {
        n += 1;
        last = notify(ia, &by_name, n);
        last.0 == 0
    });
    assert!(taken, "{last:?}");
    let (_, listed) = ask_as(qa, Some(&admin), "GET", "/v1/remote-subscriptions", "");
    assert!(
        !listed.to_string().contains("resolved"),
        "not listed: {listed}"
    );
}
