//! The catalog of communities and devices.

use serde_json::{json, Value};

use crate::gat1400::put_json;
use crate::support::{call, get, post, sample, start, GATE, OTHER_GATE};

#[test]
fn the_catalog_registers_communities_and_devices_with_precise_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    let put = |target: &str, body: Value| put_json(a, target, &body);
    let r = put(
        "/v1/communities/3205080001",
        json!({"name": "Pingjiang", "district": "Gusu"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = put(
        "/v1/communities/3205080001",
        json!({"name": "Pingjiang Road", "district": "Gusu"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["name"], "Pingjiang Road", "updates replace");
    let device =
        json!({"community": "3205080001", "device_kind": "checkpoint_camera", "direction": "in"});
    assert_eq!(
        put(&format!("/v1/devices/{GATE}"), device.clone()).status,
        201
    );
    for (target, body, field) in [
        ("/v1/devices/123".to_string(), device.clone(), "code"),
        (
            format!("/v1/devices/{OTHER_GATE}"),
            json!({"community": "9999", "device_kind": "x"}),
            "community",
        ),
        (
            format!("/v1/devices/{OTHER_GATE}"),
            json!({"community": "3205080001", "device_kind": "x", "direction": "up"}),
            "direction",
        ),
        (
            format!("/v1/devices/{OTHER_GATE}"),
            json!({"community": "3205080001"}),
            "device_kind",
        ),
        // A platform's relays are checked before its direction (serve's order).
        (
            format!("/v1/devices/{OTHER_GATE}"),
            json!({"community": "3205080001", "device_kind": "platform", "direction": "up",
                   "relays": {"x": "3205080001"}}),
            "relays.x",
        ),
        (
            "/v1/communities/a-b".to_string(),
            json!({"name": "x"}),
            "code",
        ),
        (
            "/v1/communities/3205080002".to_string(),
            json!({"district": "Gusu"}),
            "name",
        ),
    ] {
        let r = put(&target, body.clone());
        assert_eq!(r.status, 400, "{target} {body}: {}", r.body);
        assert_eq!(r.body["error"]["field"], field, "{target}: {}", r.body);
    }
    let r = get(a, "/v1/communities");
    assert_eq!(
        r.body["communities"],
        json!([{"code": "3205080001", "name": "Pingjiang Road", "district": "Gusu"}])
    );
    let r = get(a, "/v1/devices?community=3205080001");
    assert_eq!(r.body["devices"][0]["code"], GATE);
    assert_eq!(r.body["devices"].as_array().unwrap().len(), 1);
    assert_eq!(
        get(a, "/v1/devices?community=other").body["devices"],
        json!([])
    );
    assert_eq!(
        post(a, "/v1/events", "application/x-ndjson", &sample()).status,
        200
    );
    let s = get(a, "/v1/admin/stats").body;
    assert_eq!(
        (s["events"].as_u64(), s["communities"].as_u64()),
        (Some(7), Some(1)),
        "{s}"
    );
    // One by its code; an unregistered one is 404, naming what is missing.
    let r = get(a, "/v1/communities/3205080001");
    assert_eq!(
        (r.status, &r.body),
        (
            200,
            &json!({"code": "3205080001", "name": "Pingjiang Road", "district": "Gusu"})
        )
    );
    let r = get(a, &format!("/v1/devices/{GATE}"));
    assert_eq!(
        (r.status, &r.body["direction"]),
        (200, &json!("in")),
        "{}",
        r.body
    );
    for (target, code) in [
        (
            "/v1/communities/3205080009".to_string(),
            "no_such_community",
        ),
        (format!("/v1/devices/{OTHER_GATE}"), "no_such_device"),
    ] {
        let r = get(a, &target);
        assert_eq!(
            (r.status, &r.body["error"]["code"]),
            (404, &json!(code)),
            "{target}"
        );
    }
    assert_eq!(
        call(
            a,
            "DELETE",
            "/v1/communities/3205080001",
            "application/json",
            b""
        )
        .status,
        405
    );
}

#[test]
fn device_codes_being_written_need_the_gb_t_28181_structure() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    let put = |target: &str, body: Value| put_json(a, target, &body);
    assert_eq!(
        put("/v1/communities/3205080001", json!({"name": "North"})).status,
        201
    );
    let device =
        json!({"community": "3205080001", "device_kind": "checkpoint_camera", "direction": "in"});
    for (code, says) in [
        ("00000000000000000000", "province"),
        ("99999999999999999999", "province"),
        ("32050801010000000001", "type code"),
    ] {
        let r = put(&format!("/v1/devices/{code}"), device.clone());
        assert_eq!(
            (r.status, r.body["error"]["field"].as_str()),
            (400, Some("code")),
            "{code}: {}",
            r.body
        );
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{code}: {message}");
        // An event from such a code is refused too, naming the field.
        let e = crate::support::ev("2021-09-01T08:00:00+08:00", code, "vehicle", "苏E1", "in");
        let r = post(a, "/v1/events", "application/x-ndjson", &e);
        assert_eq!(r.body["error"]["code"], "invalid_events", "{}", r.body);
        assert_eq!(r.body["errors"][0]["field"], "device", "{}", r.body);
    }
    assert_eq!(put(&format!("/v1/devices/{GATE}"), device).status, 201);
}

/// A scoped admin gives a platform no relays into a community outside its own (403
/// naming the entry, whether that community is registered or not: a scoped key learns
/// nothing of the others), and changes no platform whose relays as kept reach one (a
/// new password there would be a login into it); a device that stops being a platform
/// relays nothing any more.
#[test]
fn a_scoped_admin_gives_no_relays_outside_its_communities() {
    use sightline_server::auth::Role;
    let dir = tempfile::tempdir().unwrap();
    let t = crate::keys::make_keys(
        dir.path(),
        &[(Role::Admin, None), (Role::Admin, Some("3205080001"))],
    );
    let (city, scoped) = (t[0].as_str(), t[1].as_str());
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    let put = |token: &str, target: &str, body: Value| {
        crate::keys::call_as(a, Some(token), "PUT", target, &body.to_string())
    };
    for c in ["3205080001", "3205080002"] {
        let r = put(city, &format!("/v1/communities/{c}"), json!({"name": c}));
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let target = format!("/v1/devices/{OTHER_GATE}");
    let platform = |relays: Value| {
        let mut b = json!({"community": "3205080001", "kind": "platform",
                           "gat1400": {"password": "x"}});
        if !relays.is_null() {
            b["relays"] = relays;
        }
        b
    };
    for relays in [
        json!({"3": "3205080002"}),
        json!({"3": "9999999999"}),
        json!({"3205": "3205080001", "3": "3205080002"}),
    ] {
        let r = put(scoped, &target, platform(relays.clone()));
        assert_eq!(
            (r.status, r.body["error"]["field"].as_str()),
            (403, Some("relays.3")),
            "{relays}: {}",
            r.body
        );
    }
    let seen = crate::keys::call_as(a, Some(city), "GET", &target, "");
    assert_eq!(seen.status, 404, "nothing written: {}", seen.body);
    // Within its own community it may (the refusals created nothing).
    let r = put(scoped, &target, platform(json!({"3": "3205080001"})));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["relays"], json!({"3": "3205080001"}));
    // The whole city's admin relays it into another community: the scoped admin's
    // new password (relays left out, so kept) is refused, naming no community.
    let r = put(city, &target, platform(json!({"3": "3205080002"})));
    assert_eq!(r.status, 200, "{}", r.body);
    let r = put(scoped, &target, platform(Value::Null));
    assert_eq!(
        (r.status, r.body["error"]["field"].as_str()),
        (403, Some("relays")),
        "{}",
        r.body
    );
    assert!(!r.body.to_string().contains("3205080002"), "{}", r.body);
    // Made a camera, it keeps no relays: a platform again, it relays nothing, and the
    // scoped admin may change it.
    let camera = json!({"community": "3205080001", "kind": "checkpoint_camera"});
    assert_eq!(put(city, &target, camera).status, 200);
    let r = put(city, &target, platform(Value::Null));
    assert_eq!(
        (r.status, &r.body["relays"]),
        (200, &json!({})),
        "{}",
        r.body
    );
    let r = put(scoped, &target, platform(Value::Null));
    assert_eq!(r.status, 200, "{}", r.body);
}

/// RFC 9110 §9.3.4: a `PUT` that creates a community or a device answers 201 Created,
/// one that replaces it 200 OK, each with the representation as stored; a refused
/// `PUT` creates nothing (the next good one is still 201).
#[test]
fn a_put_that_creates_is_201_and_one_that_replaces_is_200() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    let put = |target: &str, body: Value| put_json(a, target, &body);
    let community = "/v1/communities/3205080001";
    let r = put(community, json!({"name": "Pingjiang", "district": "Gusu"}));
    assert_eq!(
        (r.status, &r.body),
        (
            201,
            &json!({"code": "3205080001", "name": "Pingjiang", "district": "Gusu"})
        )
    );
    let r = put(community, json!({"name": "Pingjiang Road"}));
    let replaced = json!({"code": "3205080001", "name": "Pingjiang Road", "district": ""});
    assert_eq!((r.status, &r.body), (200, &replaced));
    assert_eq!(get(a, community).body, replaced);

    let device = format!("/v1/devices/{GATE}");
    let r = put(
        &device,
        json!({"community": "3205080001", "kind": "checkpoint_camera", "direction": "in"}),
    );
    assert_eq!(
        (r.status, &r.body["direction"]),
        (201, &json!("in")),
        "{}",
        r.body
    );
    let r = put(
        &device,
        json!({"community": "3205080001", "kind": "checkpoint_camera", "direction": "out",
               "name": "North gate, outbound"}),
    );
    assert_eq!(
        (r.status, &r.body["direction"], &r.body["name"]),
        (200, &json!("out"), &json!("North gate, outbound")),
        "{}",
        r.body
    );
    assert_eq!(get(a, &device).body["direction"], "out");

    // Refused: nothing created, so the first good PUT of each code is 201.
    let other = format!("/v1/devices/{OTHER_GATE}");
    let r = put(
        &other,
        json!({"community": "3205080001", "kind": "checkpoint_camera", "direction": "up"}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let r = put(
        &other,
        json!({"community": "3205080001", "kind": "checkpoint_camera"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(put("/v1/communities/3205080002", json!({})).status, 400);
    assert_eq!(
        put("/v1/communities/3205080002", json!({"name": "South"})).status,
        201
    );
}

/// Of several `PUT`s of one new code at once, exactly one is answered 201: whether it
/// created is what its write found, not a look before it.
#[test]
fn racing_puts_of_a_new_code_create_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    const RACERS: usize = 4;
    let codes: Vec<String> = (1..=8).map(|n| format!("32050800{n:02}")).collect();
    let statuses = |target: String, body: Value| -> Vec<u16> {
        let barrier = std::sync::Barrier::new(RACERS);
        std::thread::scope(|s| {
            let racers: Vec<_> = (0..RACERS)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        call(
                            a,
                            "PUT",
                            &target,
                            "application/json",
                            body.to_string().as_bytes(),
                        )
                        .status
                    })
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        })
    };
    for code in &codes {
        let mut got = statuses(format!("/v1/communities/{code}"), json!({"name": code}));
        got.sort_unstable();
        assert_eq!(got, [200, 200, 200, 201], "community {code}");
    }
    for (n, code) in codes.iter().enumerate() {
        let device = format!("3205080101121000{:04}", n + 1);
        let body = json!({"community": code, "kind": "checkpoint_camera"});
        let mut got = statuses(format!("/v1/devices/{device}"), body);
        got.sort_unstable();
        assert_eq!(got, [200, 200, 200, 201], "device {device}");
    }
}

/// RFC 9110 §13.1: `If-None-Match: *` on a PUT creates only, `If-Match: *` replaces
/// only, and `If-Match` naming a tag never matches (the catalog's resources carry
/// none): otherwise 412 `precondition_failed` and nothing changed. They are judged
/// before the content (§13.2.1): a bad body with a false precondition is 412.
#[test]
fn conditional_puts_create_only_or_replace_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    let put = |target: &str, condition: &str, body: &str| {
        let r = crate::support::send(
            a,
            format!(
                "PUT {target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 {condition}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        (r.status, v)
    };
    let north = "/v1/communities/3205080001";
    let (status, v) = put(north, "If-Match: *\r\n", r#"{"name":"North"}"#);
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (412, Some("precondition_failed")),
        "{v}"
    );
    assert_eq!(get(a, north).status, 404, "nothing created");
    assert_eq!(
        put(north, "If-None-Match: *\r\n", r#"{"name":"North"}"#).0,
        201
    );
    let (status, v) = put(north, "If-None-Match: *\r\n", r#"{"name":"Renamed"}"#);
    assert_eq!(status, 412, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("If-None-Match"),
        "{v}"
    );
    assert_eq!(get(a, north).body["name"], "North", "nothing changed");
    assert_eq!(
        put(north, "If-Match: \"v1\"\r\n", r#"{"name":"Renamed"}"#).0,
        412
    );
    assert_eq!(
        put(north, "If-Match: *\r\n", r#"{"name":"Renamed"}"#).0,
        200
    );
    assert_eq!(get(a, north).body["name"], "Renamed");
    // Devices alike; a bad body is 400 whatever the precondition says.
    let gate = format!("/v1/devices/{GATE}");
    let device = r#"{"community":"3205080001","kind":"checkpoint_camera"}"#;
    assert_eq!(put(&gate, "If-Match: *\r\n", device).0, 412);
    assert_eq!(get(a, &gate).status, 404);
    assert_eq!(put(&gate, "If-None-Match: *\r\n", device).0, 201);
    assert_eq!(put(&gate, "If-None-Match: *\r\n", device).0, 412);
    // Judged before the content: a bad body with a false precondition is 412, with a
    // true one 400.
    assert_eq!(
        put(&gate, "If-None-Match: *\r\n", r#"{"community":1}"#).0,
        412
    );
    assert_eq!(put(&gate, "If-Match: *\r\n", r#"{"community":1}"#).0, 400);
    assert_eq!(put(north, "If-Match: *\r\n", r#"{"nam":"x"}"#).0, 400);
    assert_eq!(put(north, "If-None-Match: *\r\n", r#"{"nam":"x"}"#).0, 412);
    assert_eq!(put(&gate, "If-None-Match: \"x\"\r\n", device).0, 200);
    // Any other change conditioned on a tag is not made either (§13.1.1).
    let list = r#"{"name":"n","reason":"r","entries":[{"kind":"vehicle","subject":"苏E1"}]}"#;
    let r = crate::support::send(
        a,
        format!(
            "POST /v1/watchlists HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             If-Match: \"t\"\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{list}",
            list.len()
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 412, "{}", r.head);
    assert_eq!(get(a, "/v1/watchlists").body["watchlists"], json!([]));
}
