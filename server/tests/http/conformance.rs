//! What the standards say of requests real clients send: HTTP (RFC 9110, RFC 9112),
//! Digest (RFC 7616, RFC 2617) and GA/T 1400's answers.

use std::net::SocketAddr;

use serde_json::{json, Value};
use sightline_testkit::{header, send};

use crate::support::{call, start, GATE};
use sightline_testkit::gat1400::{digest_response, nonce_of, register, viid};

const PASSWORD: &str = "gate-secret";

/// A community and [`GATE`] with a GA/T 1400 login.
fn with_gate(a: SocketAddr) {
    let r = call(
        a,
        "PUT",
        "/v1/communities/3205080001",
        "application/json",
        b"{\"name\":\"North\"}",
    );
    assert_eq!(r.status, 201);
    let body = json!({"community": "3205080001", "kind": "checkpoint_camera",
        "gat1400": {"password": PASSWORD}});
    let r = call(
        a,
        "PUT",
        &format!("/v1/devices/{GATE}"),
        "application/json",
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
}

/// A digest answer for a fresh challenge (taken from a first, refused request to
/// `target`): `edit` changes the header as a client writes it.
fn answer_challenge(
    a: SocketAddr,
    method: &str,
    target: &str,
    uri: &str,
    edit: impl Fn(String) -> String,
) -> (u16, String, Value) {
    let body = format!("{{\"RegisterObject\":{{\"DeviceID\":\"{GATE}\"}}}}");
    let (status, head, _) = viid(a, method, target, &[], &body);
    assert_eq!(status, 401, "{head}");
    let nonce = nonce_of(&head);
    let response = digest_response(GATE, PASSWORD, &nonce, "00000001", "c0ffee", method, uri);
    let auth = format!(
        "Digest username=\"{GATE}\", realm=\"Sightline\", nonce=\"{nonce}\", uri=\"{uri}\", \
         qop=auth, nc=00000001, cnonce=\"c0ffee\", response=\"{response}\", algorithm=MD5"
    );
    viid(a, method, target, &[("Authorization", edit(auth))], &body)
}

/// RFC 9110 §11.1: the scheme name is case-insensitive; `Digestusername=…` is not one.
#[test]
fn a_digest_scheme_in_any_case_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    with_gate(a);
    let path = "/VIID/System/Register";
    for scheme in ["digest", "DIGEST", "DiGeSt"] {
        let (status, _, body) =
            answer_challenge(a, "POST", path, path, |h| h.replacen("Digest", scheme, 1));
        assert_eq!(status, 200, "{scheme}: {body}");
    }
    let (status, _, _) = answer_challenge(a, "POST", path, path, |h| {
        h.replacen("Digest ", "Digest", 1)
    });
    assert_eq!(status, 401);
}

/// RFC 7616 §3.4.6: a `uri` that is not the request's target (its query included) is
/// answered 400; the absolute form of the same target is accepted.
#[test]
fn a_digest_for_another_target_is_a_bad_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    with_gate(a);
    let path = "/VIID/System/Register";
    let (status, _, body) = answer_challenge(a, "POST", path, "/VIID/System/UnRegister", |h| h);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["ResponseStatusObject"]["StatusCode"], 4);
    let with_query = "/VIID/System/Register?x=1";
    let (status, _, _) = answer_challenge(a, "POST", with_query, path, |h| h);
    assert_eq!(status, 400, "the query is part of the target");
    let (status, _, _) = answer_challenge(a, "POST", with_query, with_query, |h| h);
    assert_eq!(status, 200);
    let full = "http://x/VIID/System/Register";
    let (status, _, _) = answer_challenge(a, "POST", path, full, |h| h);
    assert_eq!(status, 200);
    // RFC 7616 §3.4: `qop` without `nc` is not a digest to judge.
    let (status, _, _) =
        answer_challenge(a, "POST", path, path, |h| h.replace("nc=00000001, ", ""));
    assert_eq!(status, 400);
    // Another realm's answer is refused.
    let (status, _, _) = answer_challenge(a, "POST", path, path, |h| {
        h.replace("realm=\"Sightline\"", "realm=\"Other\"")
    });
    assert_eq!(status, 401);
}

/// RFC 9110 §15.5.6: a known `/VIID` path with another method is 405 with `Allow`, in
/// GA/T 1400's shape — not the any-method fallback's 404; unknown methods are 501
/// (§15.6.2); `OPTIONS` lists the methods (§9.3.7), HEAD wherever GET is.
#[test]
fn wrong_and_unknown_methods_are_405_and_501_with_allow() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    for (method, path, allow) in [
        ("GET", "/VIID/System/Register", "POST, OPTIONS"),
        ("POST", "/VIID/System/Time", "GET, HEAD, OPTIONS"),
        ("GET", "/VIID/Subscribes/1", "PUT, DELETE, OPTIONS"),
        ("DELETE", "/VIID/MotorVehicles", "GET, HEAD, POST, OPTIONS"),
        ("POST", "/VIID/Faces/F1", "GET, HEAD, OPTIONS"),
    ] {
        let (status, head, body) = viid(a, method, path, &[], "");
        assert_eq!(status, 405, "{method} {path}: {head}");
        assert_eq!(
            header(&head, "allow"),
            allow.to_ascii_lowercase(),
            "{method} {path}"
        );
        assert_eq!(body["ResponseStatusObject"]["StatusCode"], 4, "{body}");
    }
    let (status, _, _) = viid(a, "GET", "/VIID/Nothing", &[], "");
    assert_eq!(status, 404);
    // /v1: the Allow names HEAD beside GET.
    let r = send(
        a,
        b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 405);
    assert_eq!(
        header(&r.head.to_ascii_lowercase(), "allow"),
        "get, head, options"
    );
    for method in ["TRACE", "CONNECT", "BREW"] {
        let target = if method == "CONNECT" {
            "x:80"
        } else {
            "/VIID/System/Time"
        };
        let r = send(
            a,
            format!("{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(r.status, 501, "{method}: {}", r.head);
    }
    let r = send(
        a,
        b"OPTIONS /VIID/System/Register HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 204, "{}", r.head);
    assert_eq!(
        header(&r.head.to_ascii_lowercase(), "allow"),
        "post, options"
    );
    let r = send(
        a,
        b"OPTIONS /v1/admin/retention HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 204, "{}", r.head);
    assert_eq!(
        header(&r.head.to_ascii_lowercase(), "allow"),
        "get, head, put, options"
    );
}

/// RFC 9112 §3.2: an HTTP/1.1 request without a Host, or with two, is answered 400;
/// HTTP/1.0 may go without.
#[test]
fn http_1_1_requests_need_exactly_one_host() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    let r = send(a, b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 400, "{}", r.head);
    let r = send(
        a,
        b"GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 400, "{}", r.head);
    let r = send(a, b"GET /health HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200, "{}", r.head);
    // A device is answered in GA/T 1400's shape, never the JSON API's.
    let r = send(
        a,
        b"POST /VIID/Faces HTTP/1.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    );
    assert_eq!(r.status, 400, "{}", r.head);
    let text = String::from_utf8_lossy(&r.body);
    assert!(text.contains("ResponseStatusObject"), "{text}");
    let r = send(
        a,
        b"OPTIONS /VIID/Nothing HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 404, "{}", r.head);
    let text = String::from_utf8_lossy(&r.body);
    assert!(text.contains("ResponseStatusObject"), "{text}");
    let r = send(
        a,
        b"GET /health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.head);
}

/// RFC 9110 §15.5.2: a 401 carries a challenge; the API's keys are bearer tokens
/// (RFC 6750 §3).
#[test]
fn a_401_from_the_api_challenges_for_a_bearer_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |c| c.no_auth = false);
    let r = send(
        server.addr,
        b"GET /v1/communities HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        header(&r.head.to_ascii_lowercase(), "www-authenticate"),
        "bearer realm=\"sightline\""
    );
    // With keys: no key is challenged without an error code, an unknown one with
    // `error="invalid_token"` (RFC 6750 §3.1).
    drop(server);
    {
        let store = sightline_storage::Store::open(dir.path(), Default::default()).unwrap();
        use sightline_server::auth::{self, Role};
        auth::create(&store, "t", Role::Investigate, None, 0).unwrap();
    }
    let server = start(dir.path(), |c| c.no_auth = false);
    for (auth, want) in [
        ("", "bearer realm=\"sightline\""),
        (
            "Authorization: Bearer sl_not_a_key\r\n",
            "bearer realm=\"sightline\", error=\"invalid_token\", error_description=\"unknown or revoked api key\"",
        ),
    ] {
        let r = send(
            server.addr,
            format!("GET /v1/communities HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(r.status, 401, "{auth}");
        assert_eq!(header(&r.head.to_ascii_lowercase(), "www-authenticate"), want);
    }
}

/// A keepalive naming its device only in the `KeepaliveObject` is accepted from the
/// address that registered; a registered device re-sending a digest that no longer
/// verifies (or `Basic`) is judged as without it; an unregistered one is not let in.
#[test]
fn registered_devices_keep_alive_by_body_and_with_stale_digests() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    with_gate(a);
    let keepalive = format!("{{\"KeepaliveObject\":{{\"DeviceID\":\"{GATE}\"}}}}");
    let (status, _, _) = viid(a, "POST", "/VIID/System/Keepalive", &[], &keepalive);
    assert_eq!(status, 401, "not registered yet");
    let stale = format!(
        "Digest username=\"{GATE}\", realm=\"Sightline\", nonce=\"gone\", uri=\"/VIID/System/Keepalive\", \
         qop=auth, nc=00000002, cnonce=\"c\", response=\"00000000000000000000000000000000\""
    );
    let ident = |auth: &str| {
        vec![
            ("User-Identify", GATE.to_string()),
            ("Authorization", auth.to_string()),
        ]
    };
    let (status, _, _) = viid(
        a,
        "POST",
        "/VIID/System/Keepalive",
        &ident(&stale),
        &keepalive,
    );
    assert_eq!(status, 401, "a wrong digest from an unregistered caller");
    assert_eq!(register(a, "/VIID/System/Register", GATE, PASSWORD).0, 200);
    let (status, _, body) = viid(a, "POST", "/VIID/System/Keepalive", &[], &keepalive);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ResponseStatusObject"]["Id"], GATE);
    for auth in [stale.as_str(), "Basic Zm9vOmJhcg==", "Bearer abc"] {
        let (status, _, body) = viid(
            a,
            "POST",
            "/VIID/System/Keepalive",
            &ident(auth),
            &keepalive,
        );
        assert_eq!(status, 200, "{auth}: {body}");
        let upload = json!({"MotorVehicleListObject": {"MotorVehicleObject": []}});
        let (status, _, body) = viid(
            a,
            "POST",
            "/VIID/MotorVehicles",
            &ident(auth),
            &upload.to_string(),
        );
        assert_eq!(status, 200, "{auth}: {body}");
    }
}

/// GA/T 1400.4's status codes: 3 DeviceError, 4 InvalidOperation (an unauthorised
/// request).
#[test]
fn status_codes_are_the_standards() {
    assert_eq!(sightline_server::gat1400::DEVICE_ERROR, 3);
    assert_eq!(sightline_server::gat1400::INVALID_OPERATION, 4);
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    let ident = vec![("User-Identify", GATE.to_string())];
    let (status, _, body) = viid(a, "POST", "/VIID/MotorVehicles", &ident, "{}");
    assert_eq!(status, 401);
    assert_eq!(body["ResponseStatusObject"]["StatusCode"], 4, "{body}");
}

/// `RequestURL` is the full URL, as the standard's examples write it.
#[test]
fn request_urls_are_full_urls_and_bodies_may_start_with_a_bom() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    with_gate(a);
    let (status, body) = register(a, "/VIID/System/Register", GATE, PASSWORD);
    assert_eq!(status, 200);
    assert_eq!(
        body["ResponseStatusObject"]["RequestURL"],
        "http://x/VIID/System/Register"
    );
    // RFC 8259 §8.1: a byte order mark before the JSON is ignored.
    let keepalive = format!("\u{feff}{{\"KeepaliveObject\":{{\"DeviceID\":\"{GATE}\"}}}}");
    let (status, _, body) = viid(a, "POST", "/VIID/System/Keepalive", &[], &keepalive);
    assert_eq!(status, 200, "{body}");
    let upload = format!(
        "\u{feff}{}",
        json!({"MotorVehicleListObject": {"MotorVehicleObject": [
        {"MotorVehicleID": format!("{GATE}0220210901080000{:012}", 1), "DeviceID": GATE,
         "PassTime": "20210901080000", "PlateNo": "苏E12345"}]}})
    );
    let ident = vec![("User-Identify", GATE.to_string())];
    let (status, _, body) = viid(a, "POST", "/VIID/MotorVehicles", &ident, &upload);
    assert_eq!(status, 200);
    assert_eq!(
        body["ResponseStatusListObject"]["ResponseStatusObject"][0]["StatusCode"], 0,
        "{body}"
    );
}

/// RFC 9110 §8.4.1.3: `x-gzip` is gzip; another coding is 415 with `Accept-Encoding`
/// (§15.5.16), not its bytes read as JSON.
#[test]
fn x_gzip_is_gzip_and_other_codings_are_415() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    with_gate(a);
    assert_eq!(register(a, "/VIID/System/Register", GATE, PASSWORD).0, 200);
    let json = json!({"MotorVehicleListObject": {"MotorVehicleObject": [
        {"MotorVehicleID": format!("{GATE}0220210901080000{:012}", 1), "DeviceID": GATE,
         "PassTime": "20210901080000", "PlateNo": "苏E12345"}]}})
    .to_string();
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(json.as_bytes()).unwrap();
    let gz = e.finish().unwrap();
    let post = |coding: &str, body: &[u8]| {
        let mut req = format!(
            "POST /VIID/MotorVehicles HTTP/1.1\r\nHost: x\r\nContent-Type: application/VIID+JSON\r\n\
             Content-Encoding: {coding}\r\nUser-Identify: {GATE}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        send(a, &req)
    };
    let r = post("x-gzip", &gz);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        v["ResponseStatusListObject"]["ResponseStatusObject"][0]["StatusCode"], 0,
        "{v}"
    );
    for coding in ["deflate", "br"] {
        let r = post(coding, json.as_bytes());
        assert_eq!(r.status, 415, "{coding}");
        assert_eq!(
            header(&r.head.to_ascii_lowercase(), "accept-encoding"),
            "gzip"
        );
    }
}

/// GA/T 1400.3: `Name` is required (sent empty when the catalog has none);
/// `PlaceCode` is the 6-digit administrative area.
#[test]
fn apes_and_tollgates_carry_name_and_area_place_code() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    with_gate(a);
    assert_eq!(register(a, "/VIID/System/Register", GATE, PASSWORD).0, 200);
    let ident = vec![("User-Identify", GATE.to_string())];
    let (status, _, body) = viid(a, "GET", "/VIID/APEs", &ident, "");
    assert_eq!(status, 200, "{body}");
    let ape = &body["APEListObject"]["APEObject"][0];
    assert_eq!(ape["Name"], "", "{body}");
    assert_eq!(ape["PlaceCode"], "320508", "{body}");
    let (status, _, body) = viid(a, "GET", "/VIID/Tollgates", &ident, "");
    assert_eq!(status, 200, "{body}");
    for t in body["TollgateListObject"]["TollgateObject"]
        .as_array()
        .unwrap()
    {
        assert!(t["Name"].is_string(), "{body}");
        assert_eq!(t["PlaceCode"], "320508", "{body}");
    }
}

/// RFC 7616 §3.4: the client's `qop` must be one the challenge offered, and ours
/// offer only `auth`. A `qop=auth-int` digest — its response right, over the body as
/// sent — is answered 401 with a fresh `qop="auth"` challenge; and it is judged from
/// the headers: an upload announcing 64 MiB and sending none of it is answered at
/// once, no byte of its body waited for.
#[test]
fn an_auth_int_digest_is_refused_from_the_headers_before_the_body() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    with_gate(a);
    let md5 = sightline_testkit::gat1400::md5_hex;
    let ha1 = md5(&format!("{GATE}:Sightline:{PASSWORD}"));
    let auth_int = |path: &str, nonce: &str, body: &str| {
        let ha2 = md5(&format!("POST:{path}:{}", md5(body)));
        let response = md5(&format!("{ha1}:{nonce}:00000001:c0ffee:auth-int:{ha2}"));
        format!(
            "Digest username=\"{GATE}\", realm=\"Sightline\", nonce=\"{nonce}\", uri=\"{path}\", \
             qop=auth-int, nc=00000001, cnonce=\"c0ffee\", response=\"{response}\", algorithm=MD5"
        )
    };
    let path = "/VIID/System/Register";
    let body = format!("{{\"RegisterObject\":{{\"DeviceID\":\"{GATE}\"}}}}");
    let (status, head, _) = viid(a, "POST", path, &[], &body);
    assert_eq!(status, 401, "{head}");
    let auth = auth_int(path, &nonce_of(&head), &body);
    let (status, head, answer) = viid(a, "POST", path, &[("Authorization", auth)], &body);
    assert_eq!(status, 401, "{answer}");
    assert!(head.contains("qop=\"auth\""), "{head}");
    assert!(!head.contains("stale=true"), "{head}");
    // An upload: refused from its head, its 64 MiB never sent.
    let path = "/VIID/Faces";
    let (status, head, _) = viid(a, "POST", path, &[], "{}");
    assert_eq!(status, 401, "{head}");
    let auth = auth_int(path, &nonce_of(&head), "");
    let mut s = std::net::TcpStream::connect(a).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/VIID+JSON\r\n\
         Authorization: {auth}\r\nContent-Length: {}\r\n\r\n{{",
        64 << 20
    )
    .unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut got = [0u8; 64];
    let n = s.read(&mut got).expect("answered without the body");
    let line = String::from_utf8_lossy(&got[..n]).to_string();
    assert!(line.starts_with("HTTP/1.1 401"), "{line}");
}
