//! What the standards say and real clients do, where an audit found `serve` wrong:
//! RFC 9110/9112 (bodies, methods, headers), RFC 7616 (digest challenges, counters),
//! GA/T 1400 (answers in its own shape), each against a real `serve` on 127.0.0.1.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{call, send, start};
use sightline_testkit::gat1400::{digest_response, md5_hex, viid};

const CAMERA: &str = "32050801011210000001";
const PASSWORD: &str = "cam-secret";

fn sha256_hex(s: &str) -> String {
    sightline_server::gat1400::sha256_hex(s)
}

/// A community and a camera with a GA/T 1400 login.
fn camera(a: SocketAddr) {
    let r = call(
        a,
        "PUT",
        "/v1/communities/3205080001",
        "application/json",
        b"{\"name\":\"North\"}",
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let body = json!({"community": "3205080001", "kind": "checkpoint_camera",
        "direction": "in", "gat1400": {"password": PASSWORD}});
    let r = call(
        a,
        "PUT",
        &format!("/v1/devices/{CAMERA}"),
        "application/json",
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
}

/// The `WWW-Authenticate` values of a head (lower case), in order.
fn challenges(head: &str) -> Vec<String> {
    head.lines()
        .filter_map(|l| l.strip_prefix("www-authenticate: "))
        .map(str::to_string)
        .collect()
}

/// Parameter `name` of a challenge (quoted or not).
fn param(challenge: &str, name: &str) -> Option<String> {
    let at = challenge.find(&format!("{name}="))? + name.len() + 1;
    let rest = &challenge[at..];
    Some(match rest.strip_prefix('"') {
        Some(q) => q.split('"').next()?.to_string(),
        None => rest.split([',', ' ']).next()?.to_string(),
    })
}

/// The `Authorization` of a Register answering `nonce` with counter `nc`, in MD5 or
/// SHA-256.
fn register_digest(nonce: &str, nc: &str, sha256: bool) -> String {
    let h = |s: &str| match sha256 {
        true => sha256_hex(s),
        false => md5_hex(s),
    };
    let uri = "/VIID/System/Register";
    let ha1 = h(&format!("{CAMERA}:Sightline:{PASSWORD}"));
    let ha2 = h(&format!("POST:{uri}"));
    let response = h(&format!("{ha1}:{nonce}:{nc}:c0ffee:auth:{ha2}"));
    let algorithm = if sha256 { "SHA-256" } else { "MD5" };
    format!(
        "Digest username=\"{CAMERA}\", realm=\"Sightline\", nonce=\"{nonce}\", uri=\"{uri}\", \
         qop=auth, nc={nc}, cnonce=\"c0ffee\", response=\"{response}\", algorithm={algorithm}"
    )
}

fn register_body() -> String {
    format!("{{\"RegisterObject\":{{\"DeviceID\":\"{CAMERA}\"}}}}")
}

/// Item 1: a credential the store cannot read is the server's failure — 503 with
/// `Retry-After` in GA/T 1400's shape — not a 401 and a challenge the device would
/// answer forever.
#[test]
fn an_unreadable_credential_is_503_with_retry_after_not_a_new_challenge() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), |_| {});
    camera(server.addr);
    server.stop();
    {
        let db = sled::open(dir.path().join("catalog")).unwrap();
        let tree = db.open_tree("gat1400_credentials").unwrap();
        tree.insert(CAMERA.as_bytes(), b"\x01".to_vec()).unwrap();
        db.flush().unwrap();
    }
    let server = start(dir.path(), |_| {});
    // Asked without a digest: the challenge (no credential is read yet) …
    let (status, head, _) = viid(
        server.addr,
        "POST",
        "/VIID/System/Register",
        &[],
        &register_body(),
    );
    assert_eq!(status, 401, "{head}");
    let nonce = param(&challenges(&head)[0], "nonce").unwrap();
    // … answered: the credential cannot be read.
    let (status, head, body) = viid(
        server.addr,
        "POST",
        "/VIID/System/Register",
        &[("Authorization", register_digest(&nonce, "00000001", false))],
        &register_body(),
    );
    assert_eq!(status, 503, "{head}\n{body}");
    assert!(head.contains("retry-after: 1"), "{head}");
    assert!(challenges(&head).is_empty(), "{head}");
    assert!(
        head.contains("content-type: application/viid+json"),
        "{head}"
    );
    assert_eq!(body["ResponseStatusObject"]["StatusCode"], 3, "{body}");
}

/// Reads one answer's head from `s` (up to the blank line), within `wait`.
fn head_within(s: &mut TcpStream, wait: Duration) -> String {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => raw.push(byte[0]),
            other => panic!(
                "no answer head ({other:?}): {}",
                String::from_utf8_lossy(&raw)
            ),
        }
    }
    String::from_utf8_lossy(&raw).to_ascii_lowercase()
}

/// Item 2 (RFC 9110 §10.1.1, §15.5.14): a `Content-Length` past the route's limit is
/// 413 at once — no `100 Continue`, no byte of the body read — on `/v1` and `/VIID`.
#[test]
fn a_declared_length_past_the_limit_is_413_before_100_continue() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |c| c.max_body_bytes = 1 << 20);
    let a = server.addr;
    for (target, length, content_type) in [
        ("/v1/events", (1 << 20) + 1, "application/x-ndjson"),
        ("/VIID/System/Register", 1 << 20, "application/VIID+JSON"),
    ] {
        let mut s = TcpStream::connect(a).unwrap();
        let began = Instant::now();
        write!(
            s,
            "POST {target} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n\
             Content-Length: {length}\r\nExpect: 100-continue\r\n\r\n"
        )
        .unwrap();
        let head = head_within(&mut s, Duration::from_secs(10));
        assert!(head.starts_with("http/1.1 413"), "{target}: {head}");
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "{target}: at once"
        );
        // Its body never comes: the connection closes, and the answer says so.
        assert!(head.contains("connection: close"), "{target}: {head}");
    }
    // Without `Expect`, the whole body sent at once: the client still reads the 413
    // (the body is dropped after the answer, not left to reset the connection).
    let body = vec![b'x'; 3 << 20];
    let mut request = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    let answer = send(a, &request);
    assert_eq!(answer.status, 413, "{}", answer.head);
    // A body within the limit still takes the `100 Continue` path.
    let line = "{\"ts\":1630454400000,\"community\":\"3205080001\",\"device\":\"32050801011210000001\",\"kind\":\"vehicle\",\"subject\":\"苏E1\"}\n";
    let mut s = TcpStream::connect(a).unwrap();
    write!(
        s,
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        line.len()
    )
    .unwrap();
    let head = head_within(&mut s, Duration::from_secs(10));
    assert!(head.starts_with("http/1.1 100"), "{head}");
}

/// RFC 9110 §15.5.16: a body in a coding the server does not take is 415, with the
/// coding it does take in `Accept-Encoding`, and a client that sent a large body
/// whole without waiting still reads the 415 (not a reset connection).
#[test]
fn an_unsupported_coding_is_415_and_the_client_sending_it_whole_reads_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |c| c.max_body_bytes = 32 << 20);
    // Past what the sockets' buffers hold.
    let body = vec![b'x'; 24 << 20];
    for round in 0..3 {
        let mut request = format!(
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n\
             Content-Encoding: br\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(&body);
        let answer = send(server.addr, &request);
        assert_eq!(answer.status, 415, "round {round}: {}", answer.head);
        assert!(
            answer
                .head
                .to_ascii_lowercase()
                .contains("accept-encoding: gzip"),
            "{}",
            answer.head
        );
    }
}

/// Item 3 (RFC 7616 §3.7): two challenges, MD5 first (cameras read the first header
/// only) and SHA-256 second, one nonce, the same realm and opaque, both `qop="auth"`;
/// a SHA-256 answer to the second registers.
#[test]
fn the_challenge_offers_md5_first_and_sha256_second_and_both_register() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    camera(a);
    for sha256 in [false, true] {
        let (status, head, _) = viid(a, "POST", "/VIID/System/Register", &[], &register_body());
        assert_eq!(status, 401);
        let c = challenges(&head);
        assert_eq!(c.len(), 2, "{head}");
        assert_eq!(param(&c[0], "algorithm").as_deref(), Some("md5"), "{head}");
        assert_eq!(
            param(&c[1], "algorithm").as_deref(),
            Some("sha-256"),
            "{head}"
        );
        assert_eq!(param(&c[1], "charset").as_deref(), Some("utf-8"), "{head}");
        for name in ["realm", "opaque", "nonce", "qop"] {
            assert_eq!(param(&c[0], name), param(&c[1], name), "{name}: {head}");
        }
        assert_eq!(param(&c[0], "qop").as_deref(), Some("auth"));
        // The head is lower-cased; the nonce is lower-case hex.
        let nonce = param(&c[usize::from(sha256)], "nonce").unwrap();
        let auth = register_digest(&nonce, "00000001", sha256);
        let (status, _, body) = viid(
            a,
            "POST",
            "/VIID/System/Register",
            &[("Authorization", auth)],
            &register_body(),
        );
        assert_eq!(status, 200, "sha256 {sha256}: {body}");
    }
}

/// A caller cannot tell a device code without a credential from a wrong password:
/// both are the same 401, the same status object (the reason is in the server's log).
#[test]
fn an_unknown_user_name_is_refused_as_a_wrong_password_is() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    camera(a);
    let refused = |user: &str, password: &str, algorithm: &str| {
        let body = format!("{{\"RegisterObject\":{{\"DeviceID\":\"{user}\"}}}}");
        let (_, head, _) = viid(a, "POST", "/VIID/System/Register", &[], &body);
        let nonce = param(&challenges(&head)[0], "nonce").unwrap();
        let uri = "/VIID/System/Register";
        let ha1 = md5_hex(&format!("{user}:Sightline:{password}"));
        let ha2 = md5_hex(&format!("POST:{uri}"));
        let response = md5_hex(&format!("{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}"));
        let auth = format!(
            "Digest username=\"{user}\", realm=\"Sightline\", nonce=\"{nonce}\", \
             uri=\"{uri}\", qop=auth, nc=00000001, cnonce=\"c0ffee\", \
             response=\"{response}\", algorithm={algorithm}"
        );
        let (status, head, body) = viid(
            a,
            "POST",
            "/VIID/System/Register",
            &[("Authorization", auth)],
            &body,
        );
        assert_eq!(status, 401, "{user}: {head}");
        assert_eq!(
            challenges(&head).len(),
            2,
            "{user}: a fresh challenge: {head}"
        );
        let o = &body["ResponseStatusObject"];
        (o["StatusCode"].clone(), o["StatusString"].clone())
    };
    let wrong_password = refused(CAMERA, "not-the-password", "MD5");
    let unknown_user = refused("32050801011190000999", PASSWORD, "MD5");
    assert_eq!(unknown_user, wrong_password);
    // An algorithm no credential has: told alike whoever is named.
    assert_eq!(
        refused(CAMERA, PASSWORD, "XYZ"),
        refused("32050801011190000999", PASSWORD, "XYZ")
    );
    assert!(
        wrong_password.1.to_string().contains("does not match"),
        "{wrong_password:?}"
    );
    assert!(
        !unknown_user.1.to_string().contains("32050801011190000999"),
        "{unknown_user:?}"
    );
}

/// Item 6: pooled clients (Apache HttpClient, OkHttp) answer one nonce on parallel
/// connections, nc=3 before nc=2: both taken; the same nc again is a replay, answered
/// 401 `stale=true` (RFC 7616 §3.3) so the client retries with the new nonce.
#[test]
fn counters_out_of_order_are_taken_and_a_replayed_one_is_told_stale() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    camera(a);
    let (_, head, _) = viid(a, "POST", "/VIID/System/Register", &[], &register_body());
    let nonce = param(&challenges(&head)[0], "nonce").unwrap();
    let post = |nc: &str| {
        viid(
            a,
            "POST",
            "/VIID/System/Register",
            &[("Authorization", register_digest(&nonce, nc, false))],
            &register_body(),
        )
    };
    for nc in ["00000001", "00000003", "00000002"] {
        let (status, head, body) = post(nc);
        assert_eq!(status, 200, "nc {nc}: {head}\n{body}");
    }
    let (status, head, _) = post("00000002");
    assert_eq!(status, 401, "{head}");
    let c = challenges(&head);
    assert_eq!(c.len(), 2, "{head}");
    for one in &c {
        assert_eq!(param(one, "stale").as_deref(), Some("true"), "{head}");
    }
    // Far behind the greatest counter seen: a replay too.
    let (status, _, _) = post("00000050");
    assert_eq!(status, 200);
    let (status, head, _) = post("00000004");
    assert_eq!(status, 401, "older than the window: {head}");
    // Without a right response: no `stale`, a plain new challenge.
    let wrong = register_digest(&nonce, "00000051", false).replace("response=\"", "response=\"0");
    let (status, head, _) = viid(
        a,
        "POST",
        "/VIID/System/Register",
        &[("Authorization", wrong)],
        &register_body(),
    );
    assert_eq!(status, 401);
    assert!(!head.contains("stale"), "{head}");
}

/// A POST with extra header lines (each ending `\r\n`): status, head (lower case),
/// JSON body (`Null` when not JSON).
fn post_raw(
    a: SocketAddr,
    target: &str,
    headers: &str,
    body: &[u8],
) -> (u16, String, serde_json::Value) {
    let mut request = format!(
        "POST {target} HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let answer = send(a, &request);
    (
        answer.status,
        answer.head.to_ascii_lowercase(),
        serde_json::from_slice(&answer.body).unwrap_or(serde_json::Value::Null),
    )
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Items 7 and 8: `/v1` bodies in `Content-Encoding: gzip` (or `x-gzip`) are inflated
/// within the body limit; another coding is 415 naming `Accept-Encoding`; a UTF-8
/// byte order mark before the JSON is ignored (RFC 8259 §8.1).
#[test]
fn v1_bodies_inflate_gzip_refuse_other_codings_and_ignore_a_byte_order_mark() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |c| c.max_body_bytes = 64 << 10);
    let a = server.addr;
    let line = |subject: &str| {
        crate::support::ev(
            "2021-09-01T08:00:00+08:00",
            crate::support::GATE,
            "vehicle",
            subject,
            "in",
        ) + "\n"
    };
    let ndjson = "Content-Type: application/x-ndjson\r\n";
    for (coding, subject) in [
        ("gzip", "苏E00001"),
        ("x-gzip", "苏E00002"),
        ("GZip", "苏E00003"),
    ] {
        let (status, head, body) = post_raw(
            a,
            "/v1/events",
            &format!("{ndjson}Content-Encoding: {coding}\r\n"),
            &gzip(line(subject).as_bytes()),
        );
        assert_eq!(
            (status, &body["stored"]),
            (200, &json!(1)),
            "{coding}: {head}\n{body}"
        );
    }
    let (status, head, body) = post_raw(
        a,
        "/v1/events",
        &format!("{ndjson}Content-Encoding: br\r\n"),
        line("苏E00004").as_bytes(),
    );
    assert_eq!(status, 415, "{head}\n{body}");
    assert!(head.contains("accept-encoding: gzip"), "{head}");
    assert_eq!(body["error"]["code"], "unsupported_encoding", "{body}");
    // Inflated past the limit: 413, as a plain body past it.
    let bomb = gzip(&vec![b' '; 1 << 20]);
    assert!(bomb.len() < 64 << 10);
    let (status, _, body) = post_raw(
        a,
        "/v1/events",
        &format!("{ndjson}Content-Encoding: gzip\r\n"),
        &bomb,
    );
    assert_eq!(status, 413, "{body}");
    // A byte order mark: NDJSON, a JSON array, a JSON object body.
    let bom = |s: &str| [b"\xEF\xBB\xBF".as_slice(), s.as_bytes()].concat();
    let (status, _, body) = post_raw(a, "/v1/events", ndjson, &bom(&line("苏E00005")));
    assert_eq!((status, &body["stored"]), (200, &json!(1)), "{body}");
    let array = format!("[{}]", line("苏E00006").trim());
    let (status, _, body) = post_raw(a, "/v1/events", ndjson, &bom(&array));
    assert_eq!((status, &body["stored"]), (200, &json!(1)), "{body}");
    let r = call(
        a,
        "PUT",
        "/v1/communities/3205080002",
        "application/json",
        &bom("{\"name\":\"South\"}"),
    );
    assert_eq!(r.status, 201, "{}", r.body);
}

/// Item 15: the binary batch's media type is matched as RFC 9110 §8.3.1 says:
/// type and subtype without regard to case, parameters after `;`.
#[test]
fn the_binary_batch_media_type_is_parsed_not_prefix_matched() {
    use sightline_server::wire;
    use sightline_storage::EventInput;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    let batch = vec![EventInput {
        ts_ms: 1_630_454_400_000,
        community: "3205080001".into(),
        device: crate::support::GATE.into(),
        kind: "vehicle".into(),
        subject: "苏E12345".into(),
        direction: "in".into(),
        attrs: Default::default(),
    }];
    for content_type in [
        "Application/X-Sightline-Bincode",
        "application/x-sightline-bincode; v=1",
        " application/x-sightline-bincode ;charset=binary",
    ] {
        let r = call(a, "POST", "/v1/events", content_type, &wire::encode(&batch));
        assert_eq!(r.status, 200, "{content_type}: {}", r.body);
        assert_eq!(
            r.body["stored"].as_u64().unwrap() + r.body["duplicates"].as_u64().unwrap_or(0),
            1,
            "{content_type}: {}",
            r.body
        );
    }
    // A longer subtype sharing the prefix is not the binary batch (and no JSON
    // type either: 415).
    let r = call(
        a,
        "POST",
        "/v1/events",
        "application/x-sightline-bincodex",
        &wire::encode(&batch),
    );
    assert_eq!(r.status, 415, "{}", r.body);
}

/// Item 9: Java beans serialized without annotations name members in another case
/// (`registerObject`, `DeviceId`, `faceListObject`, `faceObject`, `deviceID`): the
/// Register finds its code and the upload its objects, as Subscribes already did.
#[test]
fn register_and_upload_take_java_bean_member_names() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    camera(a);
    let face_cam = "32050801011320000003";
    // A login whose user name is not its code: only the body's `DeviceId` names it.
    // The camera is replaced (200), the face camera created (201).
    for (code, kind, login, status) in [
        (
            CAMERA,
            "checkpoint_camera",
            json!({"username": "admin", "password": PASSWORD}),
            200,
        ),
        (face_cam, "face_camera", serde_json::Value::Null, 201),
    ] {
        let mut body = json!({"community": "3205080001", "kind": kind, "direction": "in"});
        if !login.is_null() {
            body["gat1400"] = login;
        }
        let r = call(
            a,
            "PUT",
            &format!("/v1/devices/{code}"),
            "application/json",
            body.to_string().as_bytes(),
        );
        assert_eq!(r.status, status, "{code}: {}", r.body);
    }
    let register = format!("{{\"registerObject\":{{\"DeviceId\":\"{CAMERA}\"}}}}");
    let (status, head, _) = viid(a, "POST", "/VIID/System/Register", &[], &register);
    assert_eq!(status, 401);
    let nonce = param(&challenges(&head)[0], "nonce").unwrap();
    let uri = "/VIID/System/Register";
    let ha1 = md5_hex(&format!("admin:Sightline:{PASSWORD}"));
    let ha2 = md5_hex(&format!("POST:{uri}"));
    let response = md5_hex(&format!("{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}"));
    let auth = format!(
        "Digest username=\"admin\", realm=\"Sightline\", nonce=\"{nonce}\", uri=\"{uri}\", \
         qop=auth, nc=00000001, cnonce=\"c0ffee\", response=\"{response}\", algorithm=MD5"
    );
    let (status, _, body) = viid(a, "POST", uri, &[("Authorization", auth)], &register);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ResponseStatusObject"]["Id"], CAMERA, "{body}");

    let faces = json!({"faceListObject": {"faceObject": [
        {"faceID": format!("{face_cam}0620210901080010000000000001"),
         "deviceID": face_cam, "shotTime": "20210901080010"},
        {"FaceID": format!("{face_cam}0620210901080020000000000002"),
         "DeviceId": face_cam, "ShotTime": "20210901080020"},
    ]}});
    let (status, _, body) = viid(
        a,
        "POST",
        "/VIID/Faces",
        &[("User-Identify", CAMERA.to_string())],
        &faces.to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let statuses = body["ResponseStatusListObject"]["ResponseStatusObject"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(statuses.len(), 2, "{body}");
    for s in statuses {
        assert_eq!(s["StatusCode"], 0, "{body}");
    }
}

/// Items 10, 12, 13, 14: `/VIID` and `/VIID/` are GA/T 1400 404s; `Allow` names
/// OPTIONS, which is answered; hyper's own 400 carries `Date`; a `Host` that is not
/// a host is 400 (RFC 9112 §3.2), and an absolute-form target's authority is the
/// `RequestURL`'s host.
#[test]
fn viid_roots_allow_host_and_date_answer_as_the_standards_say() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    for path in ["/VIID", "/VIID/"] {
        let (status, head, body) = viid(a, "GET", path, &[], "");
        assert_eq!(status, 404, "{path}: {head}");
        assert!(
            head.contains("content-type: application/viid+json"),
            "{path}: {head}"
        );
        assert!(
            body["ResponseStatusObject"]["StatusCode"].is_i64(),
            "{path}: {body}"
        );
    }
    // OPTIONS is in every Allow.
    let (status, head, _) = viid(a, "GET", "/VIID/System/Register", &[], "");
    assert_eq!(status, 405);
    assert!(head.contains("\r\nallow: post, options\r\n"), "{head}");
    let r = send(
        a,
        b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 204, "{}", r.head);
    assert!(
        r.head
            .to_ascii_lowercase()
            .contains("allow: get, head, post, put, delete, options"),
        "{}",
        r.head
    );
    // hyper's own 400 (a request line it cannot parse), rebuilt: with a Date.
    let r = send(a, b"GET /x y z HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 400, "{}", r.head);
    assert!(
        r.head.to_ascii_lowercase().contains("\r\ndate: "),
        "{}",
        r.head
    );
    // Host values that are not a host and port.
    for host in ["a b", "a, b", "user@x", "x:80x"] {
        let r = send(
            a,
            format!("GET /health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert_eq!(r.status, 400, "{host:?}: {}", r.head);
        let (status, head, body) = {
            let r = send(
                a,
                format!(
                    "GET /VIID/System/Time HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            );
            let head = r.head.to_ascii_lowercase();
            (
                r.status,
                head,
                serde_json::from_slice::<serde_json::Value>(&r.body).unwrap_or_default(),
            )
        };
        assert_eq!(status, 400, "{host:?}: {head}");
        assert!(head.contains("application/viid+json"), "{head}");
        assert_eq!(body["ResponseStatusObject"]["StatusCode"], 4, "{body}");
    }
    for host in ["x", "127.0.0.1:80", "[::1]:8080"] {
        let r = send(
            a,
            format!("GET /health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert_eq!(r.status, 200, "{host:?}: {}", r.head);
    }
    // An absolute-form target: its authority, not Host, names the RequestURL.
    let r = send(
        a,
        b"POST http://gateway.example:8080/VIID/System/Keepalive HTTP/1.1\r\nHost: other\r\n\
          Content-Type: application/VIID+JSON\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    );
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        body["ResponseStatusObject"]["RequestURL"],
        "http://gateway.example:8080/VIID/System/Keepalive",
        "{body}"
    );
}

/// Item 3, RFC 7616 §3.4.4: `userhash=true` with nothing else naming the code (no
/// `User-Identify`, no `DeviceID` in the body): the server finds the credential by
/// `H(username:realm)`, in MD5 and in SHA-256.
#[test]
fn a_hashed_user_name_is_found_by_its_hash_alone() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    camera(a);
    let body = json!({"community": "3205080001", "kind": "checkpoint_camera",
        "direction": "in", "gat1400": {"username": "admin", "password": PASSWORD}});
    let r = call(
        a,
        "PUT",
        &format!("/v1/devices/{CAMERA}"),
        "application/json",
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let uri = "/VIID/System/Keepalive";
    for sha256 in [false, true] {
        let h = |s: &str| match sha256 {
            true => sha256_hex(s),
            false => md5_hex(s),
        };
        let (status, head, _) = viid(a, "POST", uri, &[], "{}");
        assert_eq!(status, 401);
        let c = challenges(&head);
        assert_eq!(param(&c[1], "userhash").as_deref(), Some("true"), "{head}");
        let nonce = param(&c[0], "nonce").unwrap();
        let ha1 = h(&format!("admin:Sightline:{PASSWORD}"));
        let ha2 = h(&format!("POST:{uri}"));
        let response = h(&format!("{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}"));
        let algorithm = if sha256 { "SHA-256" } else { "MD5" };
        let auth = format!(
            "Digest username=\"{}\", realm=\"Sightline\", nonce=\"{nonce}\", uri=\"{uri}\", \
             qop=auth, nc=00000001, cnonce=\"c0ffee\", response=\"{response}\", \
             algorithm={algorithm}, userhash=true",
            h("admin:Sightline")
        );
        let (status, head, body) = viid(a, "POST", uri, &[("Authorization", auth)], "{}");
        assert_eq!(status, 200, "sha256 {sha256}: {head}\n{body}");
        assert_eq!(body["ResponseStatusObject"]["Id"], CAMERA, "{body}");
    }
    // A login changed since: the new user name's hash, not the old one's.
    let body = json!({"community": "3205080001", "kind": "checkpoint_camera",
        "direction": "in", "gat1400": {"username": "operator", "password": PASSWORD}});
    let r = call(
        a,
        "PUT",
        &format!("/v1/devices/{CAMERA}"),
        "application/json",
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let (_, head, _) = viid(a, "POST", uri, &[], "{}");
    let nonce = param(&challenges(&head)[0], "nonce").unwrap();
    let ha1 = md5_hex(&format!("operator:Sightline:{PASSWORD}"));
    let ha2 = md5_hex(&format!("POST:{uri}"));
    let response = md5_hex(&format!("{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}"));
    let auth = format!(
        "Digest username=\"{}\", realm=\"Sightline\", nonce=\"{nonce}\", uri=\"{uri}\", \
         qop=auth, nc=00000001, cnonce=\"c0ffee\", response=\"{response}\", userhash=true",
        md5_hex("operator:Sightline")
    );
    let (status, _, body) = viid(a, "POST", uri, &[("Authorization", auth)], "{}");
    assert_eq!(status, 200, "{body}");
}

/// GA/T 1400.4 status 7: a Register or Keepalive whose digest is right but whose body
/// is not JSON is refused, and a Register so refused registers nothing; an empty body
/// is taken (the caller named by `User-Identify` or its digest).
#[test]
fn register_and_keepalive_bodies_that_are_not_json_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    camera(a);
    let uri = "/VIID/System/Register";
    let ident = [("User-Identify", CAMERA.to_string())];
    for (body, code) in [(r#"{"RegisterObject":{"DeviceID":"#, 7), ("", 0)] {
        let (status, head, _) = viid(a, "POST", uri, &ident, body);
        assert_eq!(status, 401);
        let nonce = param(&challenges(&head)[0], "nonce").unwrap();
        let auth = sightline_testkit::gat1400::authorization(
            CAMERA, PASSWORD, &nonce, "00000001", "POST", uri,
        );
        let mut headers = ident.to_vec();
        headers.push(("Authorization", auth));
        let (status, _, answer) = viid(a, "POST", uri, &headers, body);
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer["ResponseStatusObject"]["StatusCode"], code,
            "{body:?}: {answer}"
        );
        // Registered only when taken: a Keepalive by User-Identify alone says so.
        let (status, _, _) = viid(a, "POST", "/VIID/System/Keepalive", &ident, "");
        assert_eq!(status, if code == 0 { 200 } else { 401 }, "{body:?}");
    }
    let (status, _, answer) = viid(a, "POST", "/VIID/System/Keepalive", &ident, "garbage");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["ResponseStatusObject"]["StatusCode"], 7, "{answer}");
    let keepalive = json!({"KeepaliveObject": {"DeviceID": CAMERA}}).to_string();
    let (_, _, answer) = viid(a, "POST", "/VIID/System/Keepalive", &ident, &keepalive);
    assert_eq!(answer["ResponseStatusObject"]["StatusCode"], 0, "{answer}");
    // Unregistered, a Keepalive with a right digest but a body that is not JSON is 7
    // and registers nothing either.
    let (status, _, _) = viid(a, "POST", "/VIID/System/UnRegister", &ident, "");
    assert_eq!(status, 200);
    let keepalive_uri = "/VIID/System/Keepalive";
    let (status, head, _) = viid(a, "POST", keepalive_uri, &ident, "garbage");
    assert_eq!(status, 401);
    let nonce = param(&challenges(&head)[0], "nonce").unwrap();
    let auth = sightline_testkit::gat1400::authorization(
        CAMERA,
        PASSWORD,
        &nonce,
        "00000001",
        "POST",
        keepalive_uri,
    );
    let mut headers = ident.to_vec();
    headers.push(("Authorization", auth));
    let (status, _, answer) = viid(a, "POST", keepalive_uri, &headers, "garbage");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["ResponseStatusObject"]["StatusCode"], 7, "{answer}");
    let (status, _, _) = viid(a, "POST", keepalive_uri, &ident, "");
    assert_eq!(status, 401, "not registered by a refused keepalive");
}

/// RFC 7616 §4 (the challenge says `charset=UTF-8`) and RFC 9110 §5.5 (obs-text): a
/// user name past ASCII in a quoted `username`, as curl sends it (UTF-8 bytes) and as
/// Python's requests does (Latin-1 bytes of what it hashed as UTF-8), logs in; it was
/// once ignored with the whole header ("no digest credentials").
#[test]
fn a_user_name_past_ascii_logs_in_as_clients_send_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    camera(a);
    let user = "Jäsøn";
    let body = json!({"community": "3205080001", "kind": "checkpoint_camera",
        "direction": "in", "gat1400": {"username": user, "password": PASSWORD}});
    let r = call(
        a,
        "PUT",
        &format!("/v1/devices/{CAMERA}"),
        "application/json",
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let uri = "/VIID/System/Register";
    let register = json!({"RegisterObject": {"DeviceID": CAMERA}}).to_string();
    let latin1 = |s: &str| -> Vec<u8> { s.chars().map(|c| c as u32 as u8).collect() };
    for (how, encode) in [
        (
            "UTF-8",
            &(|s: &str| s.as_bytes().to_vec()) as &dyn Fn(&str) -> Vec<u8>,
        ),
        ("Latin-1", &latin1),
    ] {
        let (status, head, _) = viid(a, "POST", uri, &[], &register);
        assert_eq!(status, 401);
        let nonce = param(&challenges(&head)[0], "nonce").unwrap();
        let response = digest_response(user, PASSWORD, &nonce, "00000001", "c0ffee", "POST", uri);
        let auth = format!(
            "Digest username=\"{user}\", realm=\"Sightline\", nonce=\"{nonce}\", uri=\"{uri}\", \
             qop=auth, nc=00000001, cnonce=\"c0ffee\", response=\"{response}\", algorithm=MD5"
        );
        let mut request = format!("POST {uri} HTTP/1.1\r\nHost: x\r\nAuthorization: ").into_bytes();
        request.extend(encode(&auth));
        let tail = format!(
            "\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{register}",
            register.len()
        );
        request.extend(tail.as_bytes());
        let answer = send(a, &request);
        assert_eq!(
            answer.status,
            200,
            "{how}: {}{}",
            answer.head,
            String::from_utf8_lossy(&answer.body)
        );
        let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(body["ResponseStatusObject"]["Id"], CAMERA, "{how}: {body}");
    }
}

/// Item 18: a `/VIID` upload whose `Content-Type` says `charset=GBK` (or GB2312,
/// GB18030) is decoded to UTF-8 before it is read; bytes that are not GBK are refused
/// (status 7); without a charset the body is UTF-8 as before.
#[test]
fn gbk_bodies_are_decoded_before_they_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    camera(a);
    let ident = format!("User-Identify: {CAMERA}\r\n");
    let (status, _) =
        sightline_testkit::gat1400::register(a, "/VIID/System/Register", CAMERA, PASSWORD);
    assert_eq!(status, 200);
    let upload = |n: u32, plate: &str| {
        json!({"MotorVehicleListObject": {"MotorVehicleObject": [
            {"MotorVehicleID": format!("{CAMERA}0220210901080000{n:012}"), "DeviceID": CAMERA,
             "PassTime": "20210901080000", "PlateNo": plate}]}})
        .to_string()
    };
    for (n, charset, plate) in [
        (1, "GBK", "苏E10001"),
        (2, "gb2312", "苏E10002"),
        (3, "\"GB18030\"", "苏E10003"),
    ] {
        let text = upload(n, plate);
        let (bytes, _, unmappable) = encoding_rs::GBK.encode(&text);
        assert!(!unmappable);
        assert!(std::str::from_utf8(&bytes).is_err(), "really GBK");
        let (status, head, body) = post_raw(
            a,
            "/VIID/MotorVehicles",
            &format!("Content-Type: application/VIID+JSON; charset={charset}\r\n{ident}"),
            &bytes,
        );
        assert_eq!(status, 200, "{charset}: {head}\n{body}");
        let s = &body["ResponseStatusListObject"]["ResponseStatusObject"][0];
        assert_eq!(s["StatusCode"], 0, "{charset}: {body}");
        let t = crate::support::get(
            a,
            &format!(
                "/v1/trajectory?kind=vehicle&subject={}&{}",
                crate::support::enc(plate),
                crate::support::RANGE
            ),
        );
        assert_eq!(
            t.body["events"].as_array().map(Vec::len),
            Some(1),
            "{plate}: {}",
            t.body
        );
    }
    // Not GBK: refused as a malformed body. UTF-8 without a charset: as ever.
    let (status, _, body) = post_raw(
        a,
        "/VIID/MotorVehicles",
        &format!("Content-Type: application/VIID+JSON;charset=GBK\r\n{ident}"),
        b"{\"x\":\"\xff\"}",
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["ResponseStatusObject"]["StatusCode"], 7, "{body}");
    let (status, _, body) = post_raw(
        a,
        "/VIID/MotorVehicles",
        &format!("Content-Type: application/VIID+JSON\r\n{ident}"),
        upload(4, "苏E10004").as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["ResponseStatusListObject"]["ResponseStatusObject"][0]["StatusCode"], 0,
        "{body}"
    );
    // GBK with no charset named (older cameras): not UTF-8, so read as GBK and stored
    // under the right plate; bytes neither UTF-8 nor GBK are refused as not text.
    let text = upload(5, "苏E10005");
    let (bytes, _, _) = encoding_rs::GBK.encode(&text);
    let (status, _, body) = post_raw(
        a,
        "/VIID/MotorVehicles",
        &format!("Content-Type: application/json\r\n{ident}"),
        &bytes,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["ResponseStatusListObject"]["ResponseStatusObject"][0]["StatusCode"], 0,
        "{body}"
    );
    let t = crate::support::get(
        a,
        &format!(
            "/v1/trajectory?kind=vehicle&subject={}&{}",
            crate::support::enc("苏E10005"),
            crate::support::RANGE
        ),
    );
    assert_eq!(
        t.body["events"].as_array().map(Vec::len),
        Some(1),
        "{}",
        t.body
    );
    let (status, _, body) = post_raw(
        a,
        "/VIID/MotorVehicles",
        &format!("Content-Type: application/json\r\n{ident}"),
        b"{\"x\":\"\x81\"}",
    );
    assert_eq!(status, 400, "{body}");
    let why = body["ResponseStatusObject"]["StatusString"]
        .as_str()
        .unwrap();
    assert!(why.contains("neither UTF-8 nor GBK"), "{body}");
}

/// Item 11: a `/VIID` 429 (the gateway's slots all taken) says when to come back,
/// `Retry-After`, in GA/T 1400's shape with status 2.
#[test]
fn a_busy_gateway_says_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |c| c.max_concurrent_viid = 0);
    let a = server.addr;
    camera(a);
    let (status, head, body) = viid(
        a,
        "POST",
        "/VIID/MotorVehicles",
        &[("User-Identify", CAMERA.to_string())],
        "{}",
    );
    assert_eq!(status, 429, "{head}\n{body}");
    assert!(head.contains("\r\nretry-after: 1\r\n"), "{head}");
    assert_eq!(body["ResponseStatusObject"]["StatusCode"], 2, "{body}");
}

/// One answer read from a kept connection: its head (lower-cased) and its body (by its
/// `Content-Length`).
fn answer_on(s: &mut TcpStream) -> (String, Vec<u8>) {
    let head = head_within(s, Duration::from_secs(10));
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse::<usize>().unwrap());
    let mut body = vec![0u8; length];
    s.read_exact(&mut body).unwrap();
    (head, body)
}

/// RFC 9112 §9.3, §9.6: a request refused before its body is read (an upload from a
/// caller not yet known: 401 with a challenge) leaves the connection usable when the
/// client sent the body whole — a body within 1 MiB is read and dropped after the
/// answer, and the digest retry (as Java clients send it) goes on the same connection —
/// and when the connection cannot be kept (a longer body, a client waiting for `100
/// Continue`), the answer says `Connection: close` rather than the connection just
/// ending under the client.
#[test]
fn a_body_left_unread_is_drained_or_the_answer_says_the_connection_closes() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    let upload = |length: usize, extra: &str| {
        format!(
            "POST /VIID/Faces HTTP/1.1\r\nHost: x\r\nContent-Type: application/VIID+JSON\r\n\
             User-Identify: {CAMERA}\r\nContent-Length: {length}\r\n{extra}\r\n"
        )
    };
    // Within the drained bound, sent whole: 401, kept, and the next request on the same
    // connection is answered.
    for length in [1_000, 100_000, 1 << 20, 8 << 20] {
        let mut s = TcpStream::connect(a).unwrap();
        let mut request = upload(length, "").into_bytes();
        request.extend(std::iter::repeat_n(b' ', length));
        s.write_all(&request).unwrap();
        let (head, _) = answer_on(&mut s);
        assert!(head.starts_with("http/1.1 401"), "{length}: {head}");
        assert!(!head.contains("connection: close"), "{length}: {head}");
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let (head, _) = answer_on(&mut s);
        assert!(head.starts_with("http/1.1 200"), "{length}, next: {head}");
    }
    // Longer (sent from another thread: the server stops reading it), of unknown
    // length (chunked), waiting for `100 Continue` (never sent), or from a client that
    // closes the connection itself: the 401 says the connection closes.
    let long = (8 << 20) + 1;
    for (request, body) in [
        (upload(long, ""), vec![b' '; long]),
        (
            upload(100_000, "Connection: close\r\n"),
            vec![b' '; 100_000],
        ),
        (
            "POST /VIID/Faces HTTP/1.1\r\nHost: x\r\nContent-Type: application/VIID+JSON\r\n\
             Transfer-Encoding: chunked\r\n\r\n"
                .to_string(),
            b"10\r\n{\"FaceListObject\"\r\n".to_vec(),
        ),
        (upload(100_000, "Expect: 100-continue\r\n"), Vec::new()),
    ] {
        let mut s = TcpStream::connect(a).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut writer = s.try_clone().unwrap();
        let sending = std::thread::spawn(move || {
            let _ = writer.write_all(&body);
        });
        let head = head_within(&mut s, Duration::from_secs(10));
        assert!(head.starts_with("http/1.1 401"), "{request}: {head}");
        assert!(head.contains("connection: close"), "{request}: {head}");
        drop(s);
        sending.join().unwrap();
    }
}

/// RFC 9112 §6.1: a transfer coding other than `chunked` (`gzip, chunked`) is not
/// understood here — its body would be read as if plain — and is answered 501 naming
/// it, before the body is read, on `/v1` and (in GA/T 1400's shape) on `/VIID`;
/// `chunked` alone is taken.
#[test]
fn a_transfer_coding_other_than_chunked_is_501() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    let line = "{\"ts\":1630454400000,\"community\":\"3205080001\",\"device\":\"32050801011210000001\",\"kind\":\"vehicle\",\"subject\":\"苏E1\"}\n";
    let chunked = format!("{:x}\r\n{line}\r\n0\r\n\r\n", line.len());
    for (target, coding) in [
        ("/v1/events", "gzip, chunked"),
        ("/v1/events", "x-custom,chunked"),
        ("/VIID/MotorVehicles", "gzip, chunked"),
    ] {
        let request = format!(
            "POST {target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n\
             Transfer-Encoding: {coding}\r\nConnection: close\r\n\r\n{chunked}"
        );
        let answer = send(a, request.as_bytes());
        assert_eq!(answer.status, 501, "{target} {coding}: {}", answer.head);
        let body = String::from_utf8_lossy(&answer.body).to_string();
        match target.starts_with("/VIID") {
            true => assert!(body.contains("\"StatusCode\""), "{body}"),
            false => assert!(body.contains("unsupported_transfer_coding"), "{body}"),
        }
    }
    let request = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{chunked}"
    );
    let answer = send(a, request.as_bytes());
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
}

/// RFC 9110 §15.3.2 and RFC 9111 §5.2.2.5: a created key's 201 says where the key is
/// (`Location: /v1/keys/{id}`, where `DELETE` revokes it) and, since its body holds
/// the token, that no cache may keep it (`Cache-Control: no-store`); asked for NDJSON,
/// the same, as one line.
#[test]
fn a_created_key_is_located_and_never_cached() {
    use sightline_server::auth::Role;
    let dir = tempfile::tempdir().unwrap();
    let admin = crate::keys::make_keys(dir.path(), &[(Role::Admin, None)]).remove(0);
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    // Unscoped and scoped (a key whose one list, `communities`, must not be taken for
    // a list answer and its token lost): each one line asked for NDJSON.
    for (accept, body) in [
        (
            "application/json",
            r#"{"name": "detective 7", "role": "investigate"}"#,
        ),
        (
            "application/x-ndjson",
            r#"{"name": "detective 7", "role": "investigate"}"#,
        ),
        (
            "application/x-ndjson",
            r#"{"name": "detective 8", "role": "investigate", "communities": ["3205080001"]}"#,
        ),
    ] {
        let answer = send(
            a,
            format!(
                "POST /v1/keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\n\
                 Accept: {accept}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        let head = answer.head.to_ascii_lowercase();
        let text = String::from_utf8(answer.body).unwrap();
        assert_eq!(answer.status, 201, "{head}\n{text}");
        assert_eq!(text.lines().count(), 1, "{accept}: {text}");
        let key: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        let id = key["id"].as_str().unwrap();
        assert!(key["token"].as_str().unwrap().starts_with("sl_"), "{key}");
        assert_eq!(
            sightline_testkit::header(&head, "location"),
            format!("/v1/keys/{id}")
        );
        assert_eq!(
            sightline_testkit::header(&head, "cache-control"),
            "no-store"
        );
        assert!(
            sightline_testkit::header(&head, "content-type").starts_with(accept),
            "{head}"
        );
        // The location names the key: revoked there.
        let r = crate::keys::call_as(a, Some(&admin), "DELETE", &format!("/v1/keys/{id}"), "");
        assert_eq!(
            (r.status, r.body["id"].as_str()),
            (200, Some(id)),
            "{}",
            r.body
        );
    }
}

/// A misspelt field of a JSON body is refused naming it (400, `field`), never dropped:
/// a subscription's `comunities` once made a push of every community's events, a
/// watchlist's `expire` one that never expires. Nothing is created by the refusal.
#[test]
fn an_unknown_body_field_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    let r = call(
        a,
        "PUT",
        "/v1/communities/3205080001",
        "application/json",
        br#"{"name": "Gusu 1"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let cases: [(&str, &str, serde_json::Value, &str); 11] = [
        (
            "POST",
            "/v1/subscriptions",
            json!({"url": "http://127.0.0.1:9/x", "comunities": ["3205080001"]}),
            "comunities",
        ),
        (
            "POST",
            "/v1/watchlists",
            json!({"reason": "r", "expire": "2099-01-01T00:00:00+08:00",
                   "entries": [{"kind": "vehicle", "subject": "苏E12345"}]}),
            "expire",
        ),
        (
            "POST",
            "/v1/watchlists",
            json!({"reason": "r", "entries": [{"kind": "vehicle", "subject": "苏E1"},
                                              {"kind": "vehicle", "fuzzy": "苏E2", "distnce": 1}]}),
            "entries[1].distnce",
        ),
        (
            "POST",
            "/v1/collision",
            json!({"kind": "vehicle", "limt": 5, "conditions": [
                {"communities": ["3205080001"], "from": 0, "to": 1}]}),
            "limt",
        ),
        (
            "POST",
            "/v1/collision",
            json!({"kind": "vehicle", "conditions": [
                {"communities": ["3205080001"], "form": 0, "from": 0, "to": 1}]}),
            "conditions[0].form",
        ),
        (
            "PUT",
            "/v1/communities/3205080002",
            json!({"name": "n", "distrct": "Gusu"}),
            "distrct",
        ),
        (
            "PUT",
            "/v1/devices/32050801011210000001",
            json!({"community": "3205080001", "device_kind": "gate", "bogus": 1}),
            "bogus",
        ),
        (
            "PUT",
            "/v1/devices/32050801011210000001",
            json!({"community": "3205080001", "device_kind": "gate",
                   "gat1400": {"passwd": "p"}}),
            "gat1400.passwd",
        ),
        (
            "POST",
            "/v1/upstreams",
            json!({"url": "http://127.0.0.1:9", "password": "p", "comunities": ["3205080001"]}),
            "comunities",
        ),
        (
            "POST",
            "/v1/remote-subscriptions",
            json!({"url": "http://127.0.0.1:9", "titel": "t"}),
            "titel",
        ),
        (
            "POST",
            "/v1/keys",
            json!({"role": "investigate", "communitys": ["3205080001"]}),
            "communitys",
        ),
    ];
    for (method, target, body, field) in cases {
        let r = call(
            a,
            method,
            target,
            "application/json",
            body.to_string().as_bytes(),
        );
        assert_eq!(r.status, 400, "{method} {target}: {}", r.body);
        assert_eq!(
            r.body["error"]["field"], field,
            "{method} {target}: {}",
            r.body
        );
    }
    // Nothing was made by the refusals.
    for (list, key) in [
        ("/v1/subscriptions", "subscriptions"),
        ("/v1/watchlists", "watchlists"),
        ("/v1/upstreams", "upstreams"),
        ("/v1/remote-subscriptions", "remote_subscriptions"),
        ("/v1/devices", "devices"),
    ] {
        let r = call(a, "GET", list, "application/json", b"");
        assert_eq!(r.status, 200, "{list}: {}", r.body);
        assert_eq!(r.body[key], json!([]), "{list}: {}", r.body);
    }
    let r = call(a, "GET", "/v1/communities", "application/json", b"");
    assert_eq!(
        r.body["communities"].as_array().unwrap().len(),
        1,
        "{}",
        r.body
    );
}

/// A query string on a write is refused as on a GET (400 naming the parameter): a
/// probe's `POST /v1/events?dry_run=1` stored its event, `PUT
/// /v1/admin/retention?days=1` ran on its body alone. Nothing is done, and a refused
/// change is audited.
#[test]
fn a_query_parameter_on_a_write_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    let event = r#"{"ts":1630454400000,"community":"3205080001","device":"32050801011210000001","kind":"vehicle","subject":"苏E1"}"#;
    for (method, target, body, field) in [
        ("POST", "/v1/events?dry_run=1", event, "dry_run"),
        (
            "PUT",
            "/v1/admin/retention?days=1",
            r#"{"days": null}"#,
            "days",
        ),
        (
            "POST",
            "/v1/watchlists?expires=1",
            r#"{"reason": "r", "entries": [{"subject": "苏E1"}]}"#,
            "expires",
        ),
        ("DELETE", "/v1/watchlists/abc?force=1", "", "force"),
        (
            "POST",
            "/v1/collision?limit=5",
            r#"{"kind": "vehicle", "conditions": [{"communities": ["3205080001"], "from": 0, "to": 1}]}"#,
            "limit",
        ),
    ] {
        let r = call(a, method, target, "application/json", body.as_bytes());
        assert_eq!(r.status, 400, "{method} {target}: {}", r.body);
        assert_eq!(
            r.body["error"]["field"], field,
            "{method} {target}: {}",
            r.body
        );
    }
    let r = call(
        a,
        "GET",
        "/v1/trajectory?kind=vehicle&subject=%E8%8B%8FE1&from=1630425600000&to=1630512000000",
        "application/json",
        b"",
    );
    assert_eq!(r.body["events"], json!([]), "nothing stored: {}", r.body);
    let r = call(a, "GET", "/v1/watchlists", "application/json", b"");
    assert_eq!(r.body["watchlists"], json!([]), "{}", r.body);
    let audit = call(a, "GET", "/v1/audit", "application/json", b"").body;
    let refused: Vec<_> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["status"] == 400)
        .map(|e| e["endpoint"].as_str().unwrap().to_string())
        .collect();
    assert!(
        refused.contains(&"POST /v1/watchlists".to_string()),
        "{refused:?}"
    );
}

/// Alerts name residents' subjects: `GET /v1/alerts` is audited (with how many it
/// answered) as the feed is; a refused one too. A scoped admin gets 403 from what is the
/// whole server's: `/metrics` and `/v1/admin/stats` (a probe's scoped admin read every
/// community's totals and other owners' subscription ids).
#[test]
fn alerts_are_audited_and_store_wide_figures_are_not_a_scoped_admins() {
    use crate::keys::{call_as, make_keys};
    use sightline_server::auth::Role;
    let dir = tempfile::tempdir().unwrap();
    let t = make_keys(
        dir.path(),
        &[
            (Role::Admin, None),
            (Role::Investigate, Some("3205080001")),
            (Role::Admin, Some("3205080001")),
        ],
    );
    let (admin, detective, scoped_admin) = (&t[0], &t[1], &t[2]);
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    for target in ["/v1/alerts?after=0", "/v1/alerts?after=x"] {
        call_as(a, Some(detective), "GET", target, "");
    }
    let audit = call_as(a, Some(admin), "GET", "/v1/audit", "").body;
    let alerts: Vec<(serde_json::Value, serde_json::Value)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["endpoint"] == "/v1/alerts")
        .map(|e| (e["status"].clone(), e["params"].clone()))
        .collect();
    assert_eq!(
        alerts,
        vec![
            (json!(200), json!("after=0")),
            (json!(400), json!("after=x"))
        ],
        "{audit}"
    );
    for target in ["/metrics", "/v1/admin/stats"] {
        let r = send(
            a,
            format!("GET {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {scoped_admin}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(r.status, 403, "{target}: {}", r.head);
        let r = send(
            a,
            format!("GET {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(r.status, 200, "{target}: {}", r.head);
    }
}

/// `GET /v1/audit`'s `limit` is 1 to 10,000 as documented: past it or 0 is a 400
/// naming it (it was clamped, a page of another size than asked).
#[test]
fn an_audit_limit_out_of_range_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    for limit in ["0", "10001", "1000000"] {
        let r = call(
            a,
            "GET",
            &format!("/v1/audit?limit={limit}"),
            "application/json",
            b"",
        );
        assert_eq!(r.status, 400, "{limit}: {}", r.body);
        assert_eq!(r.body["error"]["field"], "limit", "{}", r.body);
    }
    let r = call(a, "GET", "/v1/audit?limit=10000", "application/json", b"");
    assert_eq!(r.status, 200, "{}", r.body);
}

/// A scoped key naming another community is 403 naming the field wherever it names
/// one — a device list, a subscription — never an empty answer (which would say that
/// community has nothing); and a path's escaped unreserved characters are the same
/// path (RFC 3986 §6.2.2.2): `/v1/communities/%33205080001` is that community.
#[test]
fn another_community_by_name_is_403_and_escaped_paths_are_the_same() {
    use crate::keys::{call_as, make_keys};
    use sightline_server::auth::Role;
    let dir = tempfile::tempdir().unwrap();
    let t = make_keys(
        dir.path(),
        &[(Role::Admin, None), (Role::Admin, Some("3205080001"))],
    );
    let (admin, scoped) = (&t[0], &t[1]);
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    for code in ["3205080001", "3205080002"] {
        let r = call_as(
            a,
            Some(admin),
            "PUT",
            &format!("/v1/communities/{code}"),
            r#"{"name": "n"}"#,
        );
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let r = call_as(
        a,
        Some(scoped),
        "GET",
        "/v1/devices?community=3205080002",
        "",
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.body["error"]["field"], "community", "{}", r.body);
    let r = call_as(
        a,
        Some(scoped),
        "GET",
        "/v1/devices?community=3205080001",
        "",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call_as(
        a,
        Some(scoped),
        "POST",
        "/v1/subscriptions",
        r#"{"url": "http://127.0.0.1:9/x", "communities": ["3205080002"]}"#,
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.body["error"]["field"], "communities", "{}", r.body);
    let r = call_as(a, Some(admin), "GET", "/v1/communities/%33205080001", "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["code"], "3205080001", "{}", r.body);
}

/// RFC 9110 §15.5.16: a `/v1` body of a media type or charset not read is 415 (with
/// `Accept-Post`) before it is read, and nothing is stored (a probe's `image/jpeg`
/// body was stored as JSON); what clients send for JSON is taken — `curl -d`'s form
/// type, `text/plain`, `…+json`, `charset=utf-8`, none.
#[test]
fn a_body_of_another_media_type_is_415() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    let event = |n: u32| {
        format!(
            r#"[{{"ts":1630454400000,"community":"3205080001","device":"32050801011210000001","kind":"vehicle","subject":"苏E{n}"}}]"#
        )
    };
    let post = |content_type: Option<&str>, body: &str| {
        let header = content_type.map_or(String::new(), |t| format!("Content-Type: {t}\r\n"));
        send(
            a,
            format!(
                "POST /v1/events HTTP/1.1\r\nHost: x\r\n{header}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
    };
    for t in [
        "image/jpeg",
        "application/xml",
        "multipart/form-data; boundary=x",
        "application/json; charset=GBK",
    ] {
        let r = post(Some(t), &event(1));
        assert_eq!(r.status, 415, "{t}: {}", r.head);
        let head = r.head.to_ascii_lowercase();
        assert!(head.contains("accept-post: application/json"), "{head}");
        assert!(
            String::from_utf8_lossy(&r.body).contains("unsupported_media_type"),
            "{t}"
        );
    }
    for (n, t) in [
        (2, None),
        (3, Some("application/json")),
        (4, Some("Application/JSON; charset=UTF-8")),
        (5, Some("application/x-www-form-urlencoded")),
        (6, Some("text/plain")),
        (7, Some("application/vnd.city+json")),
    ] {
        let r = post(t, &event(n));
        assert_eq!(r.status, 200, "{t:?}: {}", String::from_utf8_lossy(&r.body));
    }
    let r = call(
        a,
        "GET",
        "/v1/search?kind=vehicle&q=%E8%8B%8FE1",
        "application/json",
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        !r.body.to_string().contains("\"苏E1\""),
        "stored: {}",
        r.body
    );
}
