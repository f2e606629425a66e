//! The investigator console in real headless Chromium (Debian's `chromium`), driven by
//! `server/console/e2e/console.mjs` (Playwright's `playwright-core`, no bundled
//! browser) over the real server on 127.0.0.1 loaded with a synthetic city and its
//! planted answers: sign in with a scoped key, fuzzy-search a misread plate, page a
//! 5,000-sighting trajectory, open a picture, companions, a planted collision, a
//! watchlist whose alert appears after an ingest, the language switch, an API error
//! shown with its field, a key scoped elsewhere that sees nothing of it; and, over a
//! loopback server that never held a key, no sign-in at all. It
//! regenerates `docs/console.png` and saves a screenshot of any failed step under the
//! test's output folder. Missing Chromium or `node_modules` fail the test, saying what
//! to install (`.ci/run` installs both). And the console's vendored chart library is
//! checked against the npm package it was copied from.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use sightline_server::auth::{self, Role};
use sightline_storage::{Kind, Store};
use sightline_synth::{
    community_code, device_code, local_midnight, Traffic, TrafficConfig, DAY, TYPE_VEHICLE_GATE,
};
use sightline_testkit::{browser, send, start};

/// The plate with a long history, and how a camera misreads it (0 read as D).
const LONG: &str = "苏E5HT02";
const MISREAD: &str = "苏E5HTD2";
/// A plate one real substitution from the misread (farther than the OCR confusion).
const DECOY: &str = "苏E5HTD7";
/// Sightings of `LONG`: more than five pages of 1,000.
const LONG_SIGHTINGS: usize = 5_000;
/// Two small PNGs (64×48 red, 32×24 blue): the pictures of `LONG`'s first passes.
const RED_PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAEAAAAAwCAIAAAAuKetIAAAAYklEQVR4nO3PQQkAMAzAwAqrfyZrIvY4BoEIuMzZ/brhgga0oAEtaEALGtCCBrSgAS1oQAsa0IIGtKABLWhACxrQgga0oAEtaEALGtCCBrSgAS1oQAsa0IIGtKABLWhACx67nJIA4m9ID9wAAAAASUVORK5CYII=";
const BLUE_PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAACAAAAAYCAIAAAAUMWhjAAAAJElEQVR4nGPQiNpCU8QwasGoBaMWjFowasGoBaMWjFowNCwAAPTFoi4fzvwMAAAAAElFTkSuQmCC";

#[test]
fn the_console_serves_investigators_in_a_real_browser() {
    let (node, chromium, e2e) = browser::tools();
    let dir = tempfile::tempdir().unwrap();
    let now = sightline_server::now_ms();
    let cfg = TrafficConfig {
        start_ms: local_midnight(now) - 7 * DAY,
        days: 7,
        communities: 4,
        households_per_community: 80,
        visitor_vehicles: 1_000,
        drivers: true,
        planted: true,
        ..TrafficConfig::default()
    };
    let (admin, detective, outsider, p99) = {
        let store = Store::open(dir.path(), Default::default()).unwrap();
        sightline_server::demo::load(&store, &cfg).unwrap();
        let key = |name: &str, role: Role, scope: Option<Vec<String>>| {
            auth::create(&store, name, role, scope, now).unwrap().1
        };
        let inside: Vec<String> = (0..3).map(community_code).collect();
        (
            key("hq", Role::Admin, None),
            key("detective 7", Role::Investigate, Some(inside)),
            key("outsider", Role::Investigate, Some(vec![community_code(3)])),
            p99_plate(&store, cfg.start_ms, now),
        )
    };
    let truth = Traffic::new(cfg.clone()).truth();
    let mut server = start(dir.path(), |c| {
        c.vocabulary_refresh = Duration::from_millis(50);
    });
    let a = server.addr;

    // The long history, a decoy for the misread, and pictures of the first passes, of
    // plates the city does not hold.
    for plate in [LONG, DECOY] {
        let target = format!("/v1/search?q={}&mode=exact", sightline_testkit::enc(plate));
        let (status, found) = authed(a, "GET", &target, &admin, "");
        assert_eq!((status, &found["subjects"]), (200, &json!([])), "{plate}");
    }
    // The long history, a decoy for the misread, and pictures of the first passes.
    let gate = device_code(0, TYPE_VEHICLE_GATE, 1);
    let step = 6 * DAY / LONG_SIGHTINGS as i64;
    let mut lines: Vec<String> = (0..LONG_SIGHTINGS as i64)
        .map(|i| {
            let ts = cfg.start_ms + DAY + i * step;
            json!({"ts": ts, "community": community_code(0), "device": gate, "kind": "vehicle",
                   "subject": LONG, "direction": if i % 2 == 0 { "in" } else { "out" }})
            .to_string()
        })
        .collect();
    for i in 0..3 {
        lines.push(json!({"ts": cfg.start_ms + DAY + i * 3_600_000 + 60_000, "community": community_code(1),
            "device": device_code(1, TYPE_VEHICLE_GATE, 1), "kind": "vehicle", "subject": DECOY, "direction": "in"})
            .to_string());
    }
    let (status, body) = authed(a, "POST", "/v1/events", &admin, &lines.join("\n"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stored"], LONG_SIGHTINGS + 3, "{body}");
    pictures_of_first_passes(a, &admin, &gate, cfg.start_ms + DAY - 3 * 60_000);

    let companion = &truth.companions[0];
    let collision = &truth.collisions[0];
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-e2e");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let screenshot = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/console.png");
    let setup = json!({
        "base": format!("http://{a}"),
        "chromium": chromium,
        "out": out,
        "screenshot": screenshot,
        "keys": {"admin": admin, "detective": detective, "outsider": outsider},
        "scope": (0..3).map(community_code).collect::<Vec<_>>(),
        "outside": community_code(3),
        "long": LONG, "misread": MISREAD, "long_sightings": LONG_SIGHTINGS + 3,
        "first_pass": cfg.start_ms + DAY - 3 * 60_000,
        "from": cfg.start_ms, "to": local_midnight(now) + DAY,
        "companion": {"leader": companion.leader, "follower": companion.follower},
        "collision": {"conditions": collision.conditions, "subjects": collision.subjects},
        "p99": p99.0,
        "live": {"subject": "苏E9LIVE", "community": community_code(0), "device": gate},
    });
    let started = std::time::Instant::now();
    browser::drive(&node, &e2e, &setup, &out);
    println!(
        "browser test: {:.1} s (screenshots: {}); the p99 plate {} has {} sightings",
        started.elapsed().as_secs_f64(),
        out.display(),
        p99.0,
        p99.1
    );
    server.stop();
}

/// A loopback server that never held a key (`--no-auth`): the console opens without
/// a sign-in, as an admin.
#[test]
fn an_open_server_needs_no_sign_in_in_the_browser() {
    let (node, chromium, e2e) = browser::tools();
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), |_| {});
    let a = server.addr;
    let event = json!({"ts": sightline_server::now_ms(), "community": community_code(0),
        "device": device_code(0, TYPE_VEHICLE_GATE, 1), "kind": "vehicle", "subject": "苏E1OPEN"});
    let r = sightline_testkit::post(a, "/v1/events", "application/x-ndjson", &event.to_string());
    assert_eq!(r.status, 200, "{}", r.body);
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-e2e-open");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let setup = json!({"mode": "open", "base": format!("http://{a}"), "chromium": chromium,
                       "out": out, "long": "苏E1OPEN"});
    browser::drive(&node, &e2e, &setup, &out);
    server.stop();
}

/// The charting library the console embeds (`server/console/vendor/`) is byte for byte
/// the npm package at the version pinned exactly in `vendor/package.json` and its lock,
/// as `npm ci` installs it: the committed copy cannot drift from the registry's.
#[test]
fn the_vendored_chart_library_is_the_pinned_npm_package() {
    let vendor = Path::new(env!("CARGO_MANIFEST_DIR")).join("console/vendor");
    let json = |path: &Path| -> Value {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let pinned = json(&vendor.join("package.json"))["dependencies"]["uplot"]
        .as_str()
        .expect("uplot in vendor/package.json's dependencies")
        .to_string();
    assert!(
        !pinned.is_empty() && pinned.chars().all(|c| c.is_ascii_digit() || c == '.'),
        "uplot is pinned to an exact version, not {pinned:?}"
    );
    let locked = &json(&vendor.join("package-lock.json"))["packages"]["node_modules/uplot"];
    assert_eq!(
        locked["version"],
        pinned.as_str(),
        "package-lock.json: {locked}"
    );
    assert!(locked["integrity"]
        .as_str()
        .is_some_and(|i| i.starts_with("sha512-")));
    let package = vendor.join("node_modules/uplot");
    assert!(
        package.join("package.json").exists(),
        "the vendored-file check needs the pinned package: `cd {} && npm ci` (.ci/run does)",
        vendor.display()
    );
    let installed = json(&package.join("package.json"));
    assert_eq!(
        installed["version"],
        pinned.as_str(),
        "node_modules holds another uplot: `cd {} && npm ci`",
        vendor.display()
    );
    for (committed, published) in [
        ("uPlot.iife.min.js", "dist/uPlot.iife.min.js"),
        ("uPlot.min.css", "dist/uPlot.min.css"),
        ("uPlot.LICENSE", "LICENSE"),
    ] {
        let ours = std::fs::read(vendor.join(committed)).unwrap();
        let theirs = std::fs::read(package.join(published)).unwrap();
        assert!(
            ours == theirs,
            "vendor/{committed} differs from uplot {pinned}'s {published}: \
             `cd {} && npm ci && npm run copy`",
            vendor.display()
        );
    }
    let script = std::fs::read_to_string(vendor.join("uPlot.iife.min.js")).unwrap();
    assert!(script.starts_with(&format!(
        "/*! https://github.com/leeoniya/uPlot (v{pinned}) */"
    )));
}

/// The vehicle at the 99th percentile of sightings over `[from, to)`, and its count.
fn p99_plate(store: &Store, from: i64, to: i64) -> (String, u32) {
    let mut counts: HashMap<u32, u32> = HashMap::new();
    store
        .scan_range(from, to, None, |r| {
            if r.kind == Kind::Vehicle {
                *counts.entry(r.subject).or_default() += 1;
            }
        })
        .unwrap();
    let mut ranked: Vec<(u32, u32)> = counts.into_iter().map(|(s, n)| (n, s)).collect();
    ranked.sort_unstable();
    let (n, id) = ranked[ranked.len() * 99 / 100];
    let dictionaries = store.dictionaries();
    let (_, plate) = dictionaries.subject(id).expect("a counted subject");
    (plate.to_string(), n)
}

/// A request with an API key: status and JSON body.
fn authed(a: SocketAddr, method: &str, target: &str, token: &str, body: &str) -> (u16, Value) {
    let answer = send(
        a,
        format!(
            "{method} {target} HTTP/1.1\r\nHost: {a}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    (
        answer.status,
        serde_json::from_slice(&answer.body).unwrap_or(Value::Null),
    )
}

/// Three passes of `LONG` at `gate` just before its long history, uploaded as a camera
/// does (GA/T 1400, registered by HTTP Digest) with a scene and a plate picture each.
fn pictures_of_first_passes(a: SocketAddr, admin: &str, gate: &str, first_ms: i64) {
    let c0 = community_code(0);
    let (s, b) = authed(
        a,
        "PUT",
        &format!("/v1/communities/{c0}"),
        admin,
        &json!({"name": "North"}).to_string(),
    );
    assert_eq!(s, 201, "{b}");
    let device = json!({"community": c0, "kind": "checkpoint_camera", "direction": "in",
                        "gat1400": {"password": "gate-secret"}});
    let (s, b) = authed(
        a,
        "PUT",
        &format!("/v1/devices/{gate}"),
        admin,
        &device.to_string(),
    );
    assert_eq!(s, 201, "{b}");
    register(a, gate, "gate-secret");
    let objects: Vec<Value> = (0..3i64)
        .map(|i| {
            let time = sightline_server::rfc3339(first_ms + i * 60_000);
            // 2021-09-01T08:00:00.000+08:00 → 20210901080000 (Beijing time).
            let pass: String = time[..19].chars().filter(char::is_ascii_digit).collect();
            let sub = |png: &str, kind: &str, n: i64| {
                json!({"ImageID": format!("{gate}02{pass}{n:05}"), "DeviceID": gate, "Type": kind,
                       "FileFormat": "Png", "ShotTime": pass, "Width": "64", "Height": "48", "Data": png})
            };
            json!({"MotorVehicleID": format!("{gate}02{pass}{i:05}02{i:05}"), "InfoKind": 1,
                   "SourceID": format!("{gate}02{pass}{i:05}"), "TollgateID": gate, "DeviceID": gate,
                   "PassTime": pass, "PlateNo": LONG, "HasPlate": "1",
                   "SubImageList": {"SubImageInfoObject": [sub(RED_PNG, "01", 2 * i), sub(BLUE_PNG, "02", 2 * i + 1)]}})
        })
        .collect();
    let body = json!({"MotorVehicleListObject": {"MotorVehicleObject": objects}}).to_string();
    let answer = send(
        a,
        format!(
            "POST /VIID/MotorVehicles HTTP/1.1\r\nHost: {a}\r\nContent-Type: application/VIID+JSON\r\n\
             User-Identify: {gate}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let v: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    let statuses = &v["ResponseStatusListObject"]["ResponseStatusObject"];
    assert_eq!(answer.status, 200, "{v}");
    assert!(
        statuses
            .as_array()
            .is_some_and(|s| s.len() == 3 && s.iter().all(|x| x["StatusCode"] == 0)),
        "{v}"
    );
}

/// The digest handshake a camera performs: ask, get a nonce, answer it.
fn register(a: SocketAddr, id: &str, password: &str) {
    let path = "/VIID/System/Register";
    let body = format!("{{\"RegisterObject\":{{\"DeviceID\":\"{id}\"}}}}");
    let ask = |auth: &str| {
        send(
            a,
            format!(
                "POST {path} HTTP/1.1\r\nHost: {a}\r\nContent-Type: application/VIID+JSON\r\n{auth}\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
    };
    let challenge = ask("");
    assert_eq!(challenge.status, 401, "{}", challenge.head);
    let nonce = challenge
        .head
        .split("nonce=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a digest challenge");
    let md5 = sightline_server::gat1400::md5_hex;
    let ha1 = md5(&format!("{id}:Sightline:{password}"));
    let ha2 = md5(&format!("POST:{path}"));
    let response = md5(&format!("{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}"));
    let auth = format!(
        "Authorization: Digest username=\"{id}\", realm=\"Sightline\", nonce=\"{nonce}\", uri=\"{path}\", \
         qop=auth, nc=00000001, cnonce=\"c0ffee\", response=\"{response}\", algorithm=MD5\r\n"
    );
    let answer = ask(&auth);
    assert_eq!(answer.status, 200, "{}", answer.head);
}
