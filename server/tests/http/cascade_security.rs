//! GA/T 1400 cascade against an attacker holding a low-privilege platform login: where
//! a platform may make this server send (`ReceiveAddr`, checked at subscribe time and
//! at every connection), `/VIID` paths with escaped dot segments, one upstream per
//! 视图库 id, an upper's subscriptions ending with its upstream, dispositions from
//! before they were owned, notifications bound to the platform a subscription was
//! placed at.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{json, Value};

use crate::cascade::{catalog, gate_registered};
use crate::cascade_interop::{statuses, vehicle, vehicles, OURS, PLATFORM, SERVER_ID, UPPER};
use crate::gat1400::{jpeg, put_json, register, viid};
use crate::support::{call, get, post, start, wait_until, Receiver, GATE};
use sightline_testkit::platform::{one, per_object, Platform};

const SUBSCRIBE_ID: &str = "320500000000000001032021090108000000101";

fn subscribe_body(id: &str, receive: &str) -> String {
    json!({"SubscribeListObject": {"SubscribeObject": [{
        "SubscribeID": id, "Title": "t", "SubscribeDetail": "13", "ResourceURI": SERVER_ID,
        "BeginTime": "20210101000000", "EndTime": "20991231235959",
        "ReceiveAddr": receive, "OperateType": 0}]}})
    .to_string()
}

/// The first status of a `POST /VIID/Subscribes` by the platform: code and text.
fn subscribe(a: std::net::SocketAddr, id: &str, receive: &str) -> (i64, String) {
    let ident = [("User-Identify", PLATFORM.to_string())];
    let (status, _, answer) = viid(
        a,
        "POST",
        "/VIID/Subscribes",
        &ident,
        &subscribe_body(id, receive),
    );
    assert_eq!(status, 200, "{answer}");
    let s = statuses(&answer)[0].clone();
    (
        s["StatusCode"].as_i64().unwrap(),
        s["StatusString"].as_str().unwrap_or("").to_string(),
    )
}

/// A platform's `ReceiveAddr` may not point at cloud metadata (link-local), the
/// unspecified address, multicast or broadcast, in any spelling (IPv4-mapped IPv6
/// too), nor use another scheme; nor into a network `--viid-receive-deny` names. Each
/// is refused with status 4 naming the address and why, and nothing is stored. A
/// private network (RFC 1918) is a receiver's ordinary place, and taken. The same
/// holds for a disposition's `ReceiveAddr`.
#[test]
fn a_receive_addr_may_not_point_where_a_platform_should_not_reach() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |c| {
        c.viid_receive.deny = sightline_server::parse_networks("10.0.0.0/8").unwrap();
    });
    let a = server.addr;
    catalog(a);
    assert_eq!(register(a, "/VIID/System/Register", PLATFORM, "p").0, 200);
    for (i, (url, why)) in [
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::ffff:169.254.169.254]/latest/", "link-local"),
        ("http://[fe80::1]/x", "link-local"),
        ("http://0.0.0.0:8080/v1/keys", "unspecified"),
        ("http://224.0.0.1/x", "multicast"),
        ("http://255.255.255.255/x", "broadcast"),
        (
            "http://10.1.2.3:8080/VIID/SubscribeNotifications",
            "--viid-receive-deny",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("32050000000000000103202109010800000020{i}");
        let (code, text) = subscribe(a, &id, url);
        assert_eq!(code, 4, "{url}: {text}");
        assert!(
            text.contains(why) && text.contains("ReceiveAddr"),
            "{url}: {text}"
        );
    }
    let (code, text) = subscribe(a, SUBSCRIBE_ID, "gopher://192.168.1.20:70/x");
    assert_eq!(code, 8, "{text}");
    let ident = [("User-Identify", PLATFORM.to_string())];
    let (_, _, listed) = viid(a, "GET", "/VIID/Subscribes", &ident, "");
    assert_eq!(
        listed["SubscribeListObject"]["SubscribeObject"]
            .as_array()
            .map(Vec::len),
        Some(0),
        "nothing refused is stored: {listed}"
    );
    let (code, text) = subscribe(
        a,
        SUBSCRIBE_ID,
        "http://192.168.1.20:8080/VIID/SubscribeNotifications",
    );
    assert_eq!(code, 0, "a private network is where platforms are: {text}");

    let disposition = json!({"DispositionListObject": {"DispositionObject": [{
        "DispositionID": "320500000000000001202109010800009", "DispositionCategory": "2",
        "TargetFeature": "苏E1", "OperateType": 0,
        "ReceiveAddr": "http://169.254.169.254/latest/meta-data/"}]}})
    .to_string();
    let (_, _, answer) = viid(a, "POST", "/VIID/Dispositions", &ident, &disposition);
    let s = &statuses(&answer)[0];
    assert_eq!(s["StatusCode"], 4, "{answer}");
    assert!(s["StatusString"].as_str().unwrap().contains("link-local"));
    let lists = get(a, "/v1/watchlists").body["watchlists"].clone();
    assert_eq!(lists.as_array().map(Vec::len), Some(0), "{lists}");
}

/// What is checked at subscribe time is checked again at every connection, on the
/// addresses the host resolves to then: a subscription stored while its receiver
/// (`localhost`) was permitted sends nothing once its network is denied — the name
/// resolves to a refused address, as a rebound name would — and its status says why.
#[test]
fn a_receiver_is_checked_again_where_its_name_resolves_at_each_connection() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    receiver.up.store(true, Ordering::SeqCst);
    let url = format!(
        "http://localhost:{}/VIID/SubscribeNotifications",
        receiver.addr.port()
    );
    {
        // `--no-auth`: a loopback-only server, whose platforms are on its host.
        let server = start(dir.path(), |_| {});
        catalog(server.addr);
        assert_eq!(
            register(server.addr, "/VIID/System/Register", PLATFORM, "p").0,
            200
        );
        assert_eq!(subscribe(server.addr, SUBSCRIBE_ID, &url).0, 0);
    }
    let server = start(dir.path(), |c| {
        c.viid_receive.deny = sightline_server::parse_networks("127.0.0.0/8,::1").unwrap();
    });
    let a = server.addr;
    let gate = gate_registered(a);
    let (status, _, answer) = viid(
        a,
        "POST",
        "/VIID/MotorVehicles",
        &gate,
        &vehicles(&[vehicle(GATE, 1, &jpeg(1, 1000))]),
    );
    assert_eq!(status, 200, "{answer}");
    let sub = || {
        get(a, "/v1/subscriptions").body["subscriptions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == format!("viid-{SUBSCRIBE_ID}"))
            .cloned()
            .unwrap()
    };
    assert!(
        wait_until(Duration::from_secs(20), || sub()["status"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("refused by the receiver policy"))),
        "{}",
        sub()
    );
    let error = sub()["status"]["last_error"].as_str().unwrap().to_string();
    assert!(error.contains("--viid-receive-deny"), "{error}");
    assert_eq!(
        receiver.attempts.load(Ordering::SeqCst),
        0,
        "never connected"
    );
}

/// `%2E` is `.` (unreserved, RFC 3986 §2.3): `/VIID/%2E%2E/x` is `/x` once dot
/// segments are removed (§5.2.4, §6.2.2.3), and is answered as `/x` is — never as a
/// `/VIID` resource with `..` in it. A digest whose `uri` is the path as the client
/// sent it still names the request.
#[test]
fn escaped_dot_segments_lead_where_dot_segments_lead() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    catalog(a);
    let plain = get(a, "/v1/communities");
    assert_eq!(plain.status, 200);
    // Dot segments out of `/VIID` lead nowhere (GA/T 1400's 404), never to the `/v1`
    // API a front end passing only `/VIID/*` would hide.
    for dotted in [
        "/VIID/%2E%2E/v1/communities",
        "/VIID/Faces/%2e%2E/%2E%2E/v1/communities",
        "/VIID/../v1/communities",
    ] {
        let (status, _, body) = viid(a, "GET", dotted, &[], "");
        assert_eq!(status, 404, "{dotted}: {body}");
        assert!(
            body.get("ResponseStatusObject").is_some(),
            "{dotted}: {body}"
        );
        assert_ne!(body, plain.body, "{dotted}");
    }
    let time = |path: &str| viid(a, "GET", path, &[], "");
    let (status, _, plain) = time("/VIID/System/Time");
    assert_eq!(status, 200);
    let (status, _, dotted) = time("/VIID/Faces/%2E%2E/System/./Time");
    assert_eq!(status, 200, "{dotted}");
    assert_eq!(
        dotted["SystemTimeObject"]["VIIDServerID"],
        plain["SystemTimeObject"]["VIIDServerID"]
    );
    // Not a subscription named "..": `/VIID/Subscribes/..` is `/VIID`.
    let (dotted, _, _) = viid(a, "DELETE", "/VIID/Subscribes/%2E%2E", &[], "");
    let (plain, _, _) = viid(a, "DELETE", "/VIID", &[], "");
    assert_eq!(dotted, plain);
    // A digest over the path as sent.
    let (status, answer) = register(a, "/VIID/System/%2E/Register", PLATFORM, "p");
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = register(a, "/VIID/Faces/%2E%2E/System/Register", GATE, "g");
    assert_eq!(status, 200, "{answer}");
}

/// Two upstreams with one `server_id` would let that upper platform in with either's
/// scope: the second is refused, 409 naming `server_id`.
#[test]
fn one_upstream_per_upper_platform_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    let upper = Platform::start(|_| (200, one(0, "正常")));
    let upstream = |server_id: &str, communities: Value| {
        post(
            a,
            "/v1/upstreams",
            "application/json",
            &json!({"url": format!("http://{}", upper.addr), "password": "up",
                    "server_id": server_id, "device_id": OURS, "communities": communities})
            .to_string(),
        )
    };
    let first = upstream(UPPER, json!(["3205080001"]));
    assert_eq!(first.status, 201, "{}", first.body);
    let second = upstream(UPPER, json!(["3205090001"]));
    assert_eq!(second.status, 409, "{}", second.body);
    assert_eq!(second.body["error"]["code"], "conflict", "{}", second.body);
    assert_eq!(
        second.body["error"]["field"], "server_id",
        "{}",
        second.body
    );
    let first_id = first.body["id"].as_str().unwrap();
    assert!(
        second.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(first_id),
        "{}",
        second.body
    );
    let other = upstream("32050000005030000098", json!(["3205090001"]));
    assert_eq!(other.status, 201, "{}", other.body);
    let listed = get(a, "/v1/upstreams").body["upstreams"].clone();
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
}

/// An upper platform's subscriptions here live as long as the upstream that lets it
/// in: deleting the upstream ends them (named in the answer), and nothing more is sent
/// to the upper; a registered platform's own subscription is not touched.
#[test]
fn an_upper_platforms_subscriptions_end_with_its_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    catalog(a);
    let upper = Platform::start(|t| match t.path.as_str() {
        "/VIID/System/Register" | "/VIID/System/Keepalive" | "/VIID/System/UnRegister" => {
            (200, one(0, "正常"))
        }
        _ => (200, per_object(t, 0, "正常")),
    });
    let up = post(
        a,
        "/v1/upstreams",
        "application/json",
        &json!({"url": format!("http://{}", upper.addr), "password": "up", "server_id": UPPER,
                "device_id": OURS, "keepalive_s": 1})
        .to_string(),
    );
    assert_eq!(up.status, 201, "{}", up.body);
    let up_id = up.body["id"].as_str().unwrap().to_string();
    assert!(wait_until(Duration::from_secs(20), || get(
        a,
        &format!("/v1/upstreams/{up_id}")
    )
    .body["status"]["registered"]
        == true));
    let upper_sub = "320500000000000099032021090108000000001";
    let as_upper = [("User-Identify", UPPER.to_string())];
    let receive = format!("http://{}/VIID/SubscribeNotifications", upper.addr);
    let (status, _, answer) = viid(
        a,
        "POST",
        "/VIID/Subscribes",
        &as_upper,
        &subscribe_body(upper_sub, &receive),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(statuses(&answer)[0]["StatusCode"], 0, "{answer}");
    assert_eq!(register(a, "/VIID/System/Register", PLATFORM, "p").0, 200);
    assert_eq!(subscribe(a, SUBSCRIBE_ID, &receive).0, 0);
    let ids = || -> Vec<String> {
        get(a, "/v1/subscriptions").body["subscriptions"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["id"].as_str().map(str::to_string))
            .collect()
    };
    assert!(ids().contains(&format!("viid-{upper_sub}")), "{:?}", ids());

    let gone = call(a, "DELETE", &format!("/v1/upstreams/{up_id}"), "", b"");
    assert_eq!(gone.status, 200, "{}", gone.body);
    assert_eq!(
        gone.body["ended_subscriptions"],
        json!([upper_sub]),
        "{}",
        gone.body
    );
    assert_eq!(
        ids(),
        [format!("viid-{SUBSCRIBE_ID}")],
        "the platform's own stays"
    );
    // Nothing more goes to the upper for it.
    let before = upper.taken("POST", "/VIID/SubscribeNotifications").len();
    let gate = gate_registered(a);
    let (status, _, _) = viid(
        a,
        "POST",
        "/VIID/MotorVehicles",
        &gate,
        &vehicles(&[vehicle(GATE, 1, &jpeg(1, 1000))]),
    );
    assert_eq!(status, 200);
    // The platform's own subscription (same receiver) gets it: one notification.
    assert!(wait_until(Duration::from_secs(20), || upper
        .taken("POST", "/VIID/SubscribeNotifications")
        .len()
        > before));
    std::thread::sleep(Duration::from_millis(1500));
    let after = upper.taken("POST", "/VIID/SubscribeNotifications");
    assert_eq!(after.len(), before + 1, "one subscription left");
    let sent = &after.last().unwrap().body["SubscribeNotificationListObject"]
        ["SubscribeNotificationObject"];
    let sent = match sent {
        Value::Array(a) => a[0].clone(),
        one => one.clone(),
    };
    assert_eq!(sent["SubscribeID"], SUBSCRIBE_ID, "{sent}");
}

/// Dispositions made before they were owned — a bare `DispositionID` as watchlist id,
/// no owner — become, at start, the platform's their notification subscription
/// records: only it revokes them through `/VIID/Dispositions`. One without a
/// `ReceiveAddr` records no platform: an admin removes it through `/v1/watchlists`.
#[test]
fn dispositions_from_before_ownership_are_their_platforms_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    receiver.up.store(true, Ordering::SeqCst);
    let other = "32050800005030000002";
    let (pushed, bare) = (
        "320500000000000001202109010800011",
        "320500000000000001202109010800012",
    );
    {
        let server = start(dir.path(), |_| {});
        let a = server.addr;
        catalog(a);
        let r = put_json(
            a,
            &format!("/v1/devices/{other}"),
            &json!({"community": "3205080001", "kind": "platform", "gat1400": {"password": "o"}}),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        assert_eq!(register(a, "/VIID/System/Register", PLATFORM, "p").0, 200);
        let ident = [("User-Identify", PLATFORM.to_string())];
        let body = json!({"DispositionListObject": {"DispositionObject": [
            {"DispositionID": pushed, "DispositionCategory": "2", "TargetFeature": "苏E1",
             "OperateType": 0,
             "ReceiveAddr": format!("http://{}/VIID/DispositionNotifications", receiver.addr)},
            {"DispositionID": bare, "DispositionCategory": "2", "TargetFeature": "苏E2",
             "OperateType": 0}]}})
        .to_string();
        let (_, _, answer) = viid(a, "POST", "/VIID/Dispositions", &ident, &body);
        let codes: Vec<Value> = statuses(&answer)
            .iter()
            .map(|s| s["StatusCode"].clone())
            .collect();
        assert_eq!(codes, [json!(0), json!(0)], "{answer}");
    }
    // As the store held them before dispositions were owned.
    {
        let store = sightline_storage::Store::open(dir.path(), Default::default()).unwrap();
        let c = store.catalog();
        for id in [pushed, bare] {
            let key = format!("viid-disp-{id}");
            let mut w: Value =
                serde_json::from_slice(&c.kv_get("watchlists", &key).unwrap().unwrap()).unwrap();
            w["id"] = id.into();
            c.kv_put("watchlists", id, w.to_string().as_bytes())
                .unwrap();
            c.kv_delete("watchlists", &key).unwrap();
            c.kv_delete("viid_dispositions", id).unwrap();
        }
        let sub_key = format!("disposition-{pushed}");
        let mut s: Value =
            serde_json::from_slice(&c.kv_get("subscriptions", &sub_key).unwrap().unwrap()).unwrap();
        s["watchlist"] = pushed.into();
        c.kv_put("subscriptions", &sub_key, s.to_string().as_bytes())
            .unwrap();
    }
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    assert_eq!(register(a, "/VIID/System/Register", PLATFORM, "p").0, 200);
    assert_eq!(register(a, "/VIID/System/Register", other, "o").0, 200);
    let revoke = |who: &str, id: &str| {
        let ident = [("User-Identify", who.to_string())];
        let (_, _, answer) = viid(a, "DELETE", &format!("/VIID/Dispositions/{id}"), &ident, "");
        statuses(&answer)[0]["StatusCode"].as_i64().unwrap()
    };
    let watchlist_ids = || -> Vec<String> {
        get(a, "/v1/watchlists").body["watchlists"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|w| w["id"].as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(
        watchlist_ids(),
        [bare.to_string(), format!("viid-disp-{pushed}")],
        "moved under its own id"
    );
    assert_eq!(revoke(other, pushed), 4, "another platform's");
    assert_eq!(revoke(PLATFORM, pushed), 0, "its own");
    assert_eq!(watchlist_ids(), [bare.to_string()]);
    assert!(get(a, "/v1/subscriptions").body["subscriptions"]
        .as_array()
        .unwrap()
        .is_empty());
    // No platform recorded: not revocable through /VIID; an admin removes it.
    assert_eq!(revoke(PLATFORM, bare), 1);
    let r = call(a, "DELETE", &format!("/v1/watchlists/{bare}"), "", b"");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(watchlist_ids().is_empty());
}

/// A notification for a subscription this server placed at another platform is taken
/// only from that platform's address (the host it was placed at): a registered
/// platform elsewhere cannot feed objects into it (status 4 naming where it was
/// placed). With `--viid-registration-any-address` (a platform sending from several
/// nodes) the address is not bound.
#[test]
fn notifications_come_from_the_platform_a_subscription_was_placed_at() {
    for any_address in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path(), |c| {
            c.viid_registration_any_address = any_address;
        });
        let b = server.addr;
        catalog(b);
        // Two lower platforms: one on 127.0.0.1 (where the test sends from), one on
        // 127.0.0.2.
        let here = Platform::start(|t| (200, per_object(t, 0, "正常")));
        let elsewhere = Platform::start_on("127.0.0.2", |t| (200, per_object(t, 0, "正常")));
        let place = |p: &Platform| {
            let r = post(
                b,
                "/v1/remote-subscriptions",
                "application/json",
                &json!({"url": format!("http://{}", p.addr), "password": "p",
                        "receive_addr": format!("http://{b}/VIID/SubscribeNotifications")})
                .to_string(),
            );
            assert_eq!(r.status, 201, "{}", r.body);
            r.body["subscribe_id"].as_str().unwrap().to_string()
        };
        let (ours_here, ours_elsewhere) = (place(&here), place(&elsewhere));
        assert_eq!(register(b, "/VIID/System/Register", PLATFORM, "p").0, 200);
        let ident = [("User-Identify", PLATFORM.to_string())];
        let code = |subscribe_id: &str, i: u64| {
            let mut o = vehicle(GATE, i, b"");
            let sub = &mut o["SubImageList"]["SubImageInfoObject"][0];
            sub.as_object_mut().unwrap().remove("Data");
            sub["StoragePath"] = "http://10.0.0.1:8080/v1/images/abc".into();
            let body = json!({"SubscribeNotificationListObject": {"SubscribeNotificationObject": [{
                "NotificationID": format!("32050000000004202109010800000{i:04}"),
                "SubscribeID": subscribe_id, "TriggerTime": "20210901080000",
                "InfoIDs": o["MotorVehicleID"],
                "MotorVehicleObjectList": {"MotorVehicleObject": [o]}}]}})
            .to_string();
            let (status, _, answer) =
                viid(b, "POST", "/VIID/SubscribeNotifications", &ident, &body);
            assert_eq!(status, 200, "{answer}");
            let s = statuses(&answer)[0].clone();
            (
                s["StatusCode"].as_i64().unwrap(),
                s["StatusString"].as_str().unwrap_or("").to_string(),
            )
        };
        assert_eq!(code(&ours_here, 1).0, 0);
        let (c, why) = code(&ours_elsewhere, 2);
        match any_address {
            false => {
                assert_eq!(c, 4, "{why}");
                assert!(why.contains("127.0.0.2"), "{why}");
            }
            true => assert_eq!(c, 0, "{why}"),
        }
    }
}

/// A camera of community North that uploads at tollgates (its objects' `TollgateID`).
const CAMERA: &str = "32050801011320000001";

/// A `ResourceURI` naming a tollgate (type 121, as `/VIID/Tollgates` lists it) gets
/// the objects taken at that tollgate — whichever camera (`DeviceID`) took them, the
/// tollgate uploading as itself among them — and not those of another tollgate.
#[test]
fn a_resource_uri_naming_a_tollgate_gets_what_was_taken_there() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    catalog(a);
    let r = put_json(
        a,
        &format!("/v1/devices/{CAMERA}"),
        &json!({"community": "3205080001", "kind": "checkpoint_camera", "gat1400": {"password": "c"}}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let receiver = Receiver::start();
    receiver.up.store(true, Ordering::SeqCst);
    assert_eq!(register(a, "/VIID/System/Register", PLATFORM, "p").0, 200);
    let ident = [("User-Identify", PLATFORM.to_string())];
    let body = json!({"SubscribeListObject": {"SubscribeObject": [{
        "SubscribeID": SUBSCRIBE_ID, "Title": "卡口", "SubscribeDetail": "13", "ResourceURI": GATE,
        "ReceiveAddr": format!("http://{}/VIID/SubscribeNotifications", receiver.addr),
        "OperateType": 0}]}})
    .to_string();
    let (_, _, answer) = viid(a, "POST", "/VIID/Subscribes", &ident, &body);
    assert_eq!(statuses(&answer)[0]["StatusCode"], 0, "{answer}");

    assert_eq!(register(a, "/VIID/System/Register", CAMERA, "c").0, 200);
    let camera = [("User-Identify", CAMERA.to_string())];
    let at = |tollgate: &str, i: u64| {
        let mut o = vehicle(CAMERA, i, &jpeg(i, 1000));
        o["TollgateID"] = tollgate.into();
        o
    };
    let (at_gate, elsewhere) = (at(GATE, 1), at("32050801011210000002", 2));
    let (status, _, answer) = viid(
        a,
        "POST",
        "/VIID/MotorVehicles",
        &camera,
        &vehicles(&[at_gate.clone(), elsewhere]),
    );
    assert_eq!(status, 200, "{answer}");
    let gate = gate_registered(a);
    let own = vehicle(GATE, 3, &jpeg(3, 1000));
    let (status, _, answer) = viid(
        a,
        "POST",
        "/VIID/MotorVehicles",
        &gate,
        &vehicles(std::slice::from_ref(&own)),
    );
    assert_eq!(status, 200, "{answer}");
    let sent = || -> Vec<String> {
        let mut ids: Vec<String> = receiver
            .notifications()
            .iter()
            .flat_map(|n| {
                n["MotorVehicleObjectList"]["MotorVehicleObject"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|o| o["MotorVehicleID"].as_str().map(str::to_string))
            .collect();
        ids.sort();
        ids
    };
    assert!(
        wait_until(Duration::from_secs(20), || sent().len() >= 2),
        "{:?}",
        sent()
    );
    std::thread::sleep(Duration::from_millis(1500));
    let mut expected = [at_gate, own].map(|o| o["MotorVehicleID"].as_str().unwrap().to_string());
    expected.sort();
    assert_eq!(sent(), expected);
}

/// An upper platform names us in `ResourceURI` by the id it knows us by — the
/// `device_id` we registered there with — which is everything its upstream reads, as
/// our own `--viid-server-id` is.
#[test]
fn an_upper_names_us_by_the_id_we_registered_there_with() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    catalog(a);
    let upper = Platform::start(|t| match t.path.as_str() {
        "/VIID/System/Register" | "/VIID/System/Keepalive" => (200, one(0, "正常")),
        _ => (200, per_object(t, 0, "正常")),
    });
    let up = post(
        a,
        "/v1/upstreams",
        "application/json",
        &json!({"url": format!("http://{}", upper.addr), "password": "up", "server_id": UPPER,
                "device_id": OURS, "keepalive_s": 1, "kinds": ["face"]})
        .to_string(),
    );
    assert_eq!(up.status, 201, "{}", up.body);
    let up_id = up.body["id"].as_str().unwrap().to_string();
    assert!(wait_until(Duration::from_secs(20), || get(
        a,
        &format!("/v1/upstreams/{up_id}")
    )
    .body["status"]["registered"]
        == true));
    let as_upper = [("User-Identify", UPPER.to_string())];
    let body = json!({"SubscribeListObject": {"SubscribeObject": [{
        "SubscribeID": "320500000000000099032021090108000000002", "SubscribeDetail": "13",
        "ResourceURI": OURS, "OperateType": 0,
        "ReceiveAddr": format!("http://{}/VIID/SubscribeNotifications", upper.addr)}]}})
    .to_string();
    let (_, _, answer) = viid(a, "POST", "/VIID/Subscribes", &as_upper, &body);
    assert_eq!(statuses(&answer)[0]["StatusCode"], 0, "{answer}");
    let gate = gate_registered(a);
    let o = vehicle(GATE, 1, &jpeg(1, 1000));
    let (status, _, _) = viid(a, "POST", "/VIID/MotorVehicles", &gate, &vehicles(&[o]));
    assert_eq!(status, 200);
    assert!(
        wait_until(Duration::from_secs(20), || !upper
            .taken("POST", "/VIID/SubscribeNotifications")
            .is_empty()),
        "nothing notified"
    );
}

/// An upper's subscription whose upstream went before deleting one ended them (as the
/// store held it before) is ended at start: no stored upstream registers as the id its
/// notifications go as.
#[test]
fn an_upper_platforms_subscriptions_left_from_before_end_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let upper = Platform::start(|t| match t.path.as_str() {
        "/VIID/System/Register" | "/VIID/System/Keepalive" | "/VIID/System/UnRegister" => {
            (200, one(0, "正常"))
        }
        _ => (200, per_object(t, 0, "正常")),
    });
    let upper_sub = "320500000000000099032021090108000000003";
    let up_id = {
        let server = start(dir.path(), |_| {});
        let a = server.addr;
        catalog(a);
        let up = post(
            a,
            "/v1/upstreams",
            "application/json",
            &json!({"url": format!("http://{}", upper.addr), "password": "up",
                    "server_id": UPPER, "device_id": OURS, "keepalive_s": 1})
            .to_string(),
        );
        assert_eq!(up.status, 201, "{}", up.body);
        let up_id = up.body["id"].as_str().unwrap().to_string();
        assert!(wait_until(Duration::from_secs(20), || get(
            a,
            &format!("/v1/upstreams/{up_id}")
        )
        .body["status"]["registered"]
            == true));
        let as_upper = [("User-Identify", UPPER.to_string())];
        let receive = format!("http://{}/VIID/SubscribeNotifications", upper.addr);
        let (_, _, answer) = viid(
            a,
            "POST",
            "/VIID/Subscribes",
            &as_upper,
            &subscribe_body(upper_sub, &receive),
        );
        assert_eq!(statuses(&answer)[0]["StatusCode"], 0, "{answer}");
        assert_eq!(register(a, "/VIID/System/Register", PLATFORM, "p").0, 200);
        assert_eq!(subscribe(a, SUBSCRIBE_ID, &receive).0, 0);
        up_id
    };
    {
        // The upstream deleted as before: its upper's subscription left behind.
        let store = sightline_storage::Store::open(dir.path(), Default::default()).unwrap();
        store.catalog().kv_delete("subscriptions", &up_id).unwrap();
    }
    let server = start(dir.path(), |_| {});
    let ids: Vec<String> = get(server.addr, "/v1/subscriptions").body["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        ids,
        [format!("viid-{SUBSCRIBE_ID}")],
        "the platform's own stays"
    );
}

/// A server listening on loopback — keys checked, not `--no-auth` — takes a platform's
/// loopback `ReceiveAddr` without `--viid-receive-allow` (every caller is on its host
/// already: sending there opens nothing new) and delivers to it; and a
/// `SubscribeDetail` of 999 (wvp-GB28181-pro's raw data, `Constants.SubscribeDetail.RAW`)
/// is taken as catalogue classes are, delivering nothing.
#[test]
fn a_loopback_server_sends_to_loopback_receivers_and_takes_raw_data_subscriptions() {
    let dir = tempfile::tempdir().unwrap();
    {
        let server = start(dir.path(), |_| {});
        catalog(server.addr);
    }
    let receiver = Receiver::start();
    receiver.up.store(true, Ordering::SeqCst);
    let server = start(dir.path(), |c| c.no_auth = false);
    let a = server.addr;
    assert!(a.ip().is_loopback());
    assert_eq!(
        get(a, "/v1/communities").status,
        401,
        "not --no-auth: keys checked"
    );
    assert_eq!(register(a, "/VIID/System/Register", PLATFORM, "p").0, 200);
    let url = format!("http://{}/VIID/SubscribeNotifications", receiver.addr);
    let (code, text) = subscribe(a, SUBSCRIBE_ID, &url);
    assert_eq!(code, 0, "{text}");
    let named = format!(
        "http://localhost:{}/VIID/SubscribeNotifications",
        receiver.addr.port()
    );
    let (code, text) = subscribe(a, "320500000000000001032021090108000000102", &named);
    assert_eq!(code, 0, "{text}");
    let raw_id = "320500000000000001032021090108000000103";
    let raw = json!({"SubscribeListObject": {"SubscribeObject": [{
        "SubscribeID": raw_id, "Title": "raw", "SubscribeDetail": "999",
        "ResourceURI": SERVER_ID, "BeginTime": "20210101000000", "EndTime": "20991231235959",
        "ReceiveAddr": url, "OperateType": 0}]}})
    .to_string();
    let ident = [("User-Identify", PLATFORM.to_string())];
    let (status, _, answer) = viid(a, "POST", "/VIID/Subscribes", &ident, &raw);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(statuses(&answer)[0]["StatusCode"], 0, "{answer}");
    let (_, _, listed) = viid(a, "GET", "/VIID/Subscribes", &ident, "");
    assert_eq!(
        listed["SubscribeListObject"]["SubscribeObject"]
            .as_array()
            .map(Vec::len),
        Some(3),
        "{listed}"
    );

    // A vehicle reaches both vehicle subscriptions at the loopback receiver; the raw
    // one delivers nothing.
    let gate = gate_registered(a);
    let (status, _, answer) = viid(
        a,
        "POST",
        "/VIID/MotorVehicles",
        &gate,
        &vehicles(&[vehicle(GATE, 1, &jpeg(1, 1000))]),
    );
    assert_eq!(status, 200, "{answer}");
    let subscribe_ids = || -> Vec<String> {
        let mut ids: Vec<String> = receiver
            .notifications()
            .iter()
            .filter_map(|n| n["SubscribeID"].as_str().map(str::to_string))
            .collect();
        ids.sort();
        ids
    };
    assert!(
        wait_until(Duration::from_secs(20), || subscribe_ids().len() >= 2),
        "{:?}",
        subscribe_ids()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        subscribe_ids(),
        [SUBSCRIBE_ID, "320500000000000001032021090108000000102"]
    );
}
