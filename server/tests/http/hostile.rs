//! Hostile input: bodies, parameters and headers made to break the server, slow
//! requests, input that looks like a path.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{call, enc, get, post, sample, start, GATE, RANGE};

/// Sends raw bytes and reads whatever comes back (status 0 when the server closed the
/// connection without an answer).
fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text)
}

#[test]
fn hostile_input_is_refused_clearly_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |c| c.max_body_bytes = 1 << 20);
    let a = server.addr;
    let one = |subject: &str, ts: &str| {
        format!("{{\"ts\":{ts},\"community\":\"3205080001\",\"device\":\"{GATE}\",\"kind\":\"vehicle\",\"subject\":{subject}}}")
    };
    // Bodies: each refused with a precise field, none crashes the server.
    let nested = "[".repeat(100_000) + &"]".repeat(100_000);
    let long_plate = format!("\"{}\"", "苏".repeat(10_000));
    let cases: Vec<(Vec<u8>, u16, Option<&str>)> = vec![
        (nested.into_bytes(), 400, None),
        (
            b"{\"ts\":1630454400000,\"subject\":\"\xff\xfe\"}".to_vec(),
            400,
            None,
        ),
        (
            one("\"\\u0000NUL\"", "1630454400000").into_bytes(),
            422,
            Some("subject"),
        ),
        (
            one(&long_plate, "1630454400000").into_bytes(),
            422,
            Some("subject"),
        ),
        (
            one("\"苏E1\"", &i64::MAX.to_string()).into_bytes(),
            422,
            Some("ts"),
        ),
        (
            one("\"苏E1\"", &i64::MIN.to_string()).into_bytes(),
            422,
            Some("ts"),
        ),
        // Beyond f64: the line is not JSON serde can read; refused as malformed.
        (one("\"苏E1\"", "1e400").into_bytes(), 422, None),
        (one("\"苏E1\"", "1.5e300").into_bytes(), 422, Some("ts")),
        (vec![b'x'; 2 << 20], 413, None),
    ];
    for (body, status, field) in cases {
        let r = call(a, "POST", "/v1/events", "application/x-ndjson", &body);
        assert_eq!(r.status, status, "{}", r.body);
        if let Some(f) = field {
            assert_eq!(r.body["error"]["field"], f, "{}", r.body);
        }
    }
    // Parameters at the edges of their types.
    let range_all = format!("from={}&to={}", i64::MIN, i64::MAX);
    for (target, field) in [
        (
            format!("/v1/trajectory?kind=vehicle&subject=x&{range_all}"),
            "to",
        ),
        (
            "/v1/trajectory?kind=vehicle&subject=x&from=0&to=99999999999999999999".to_string(),
            "to",
        ),
        (
            format!("/v1/cooccurrence?kind=vehicle&subject=x&{RANGE}&window=1000d"),
            "window",
        ),
        (
            format!("/v1/cooccurrence?kind=vehicle&subject=x&{RANGE}&window=99999999999999999999s"),
            "window",
        ),
        ("/v1/search?q=*&mode=wildcard".to_string(), "q"),
        (
            "/v1/search?q=%2A%3F%2A%3F%2A&mode=wildcard".to_string(),
            "q",
        ),
        (
            format!("/v1/search?q={}&mode=fuzzy", "A".repeat(10_000)),
            "q",
        ),
        (
            "/v1/search?q=abc&mode=fuzzy&distance=9".to_string(),
            "distance",
        ),
        ("/v1/events/99999999999999999999999".to_string(), "id"),
    ] {
        let r = get(a, &target);
        assert_eq!(
            (r.status, r.body["error"]["field"].as_str()),
            (400, Some(field)),
            "{target}: {}",
            r.body
        );
    }
    // Regex-looking patterns are literal characters, not regular expressions.
    for q in [".*(", "(a|b)+$", "[[[", "\\\\", "a{1000000}"] {
        let r = get(a, &format!("/v1/search?q={}&mode=wildcard", enc(q)));
        assert!(
            r.status == 200 || r.status == 400,
            "{q}: {} {}",
            r.status,
            r.body
        );
        let r = get(a, &format!("/v1/search?q={}&mode=prefix", enc(q)));
        assert!(
            r.status == 200 || r.status == 400,
            "{q}: {} {}",
            r.status,
            r.body
        );
    }
    // A window of zero is a valid question.
    let r = get(
        a,
        &format!("/v1/cooccurrence?kind=vehicle&subject=x&{RANGE}&window=0s"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // Huge headers and a request line that never ends are cut off, not buffered.
    let big = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let (status, _) = raw_exchange(a, big.as_bytes());
    assert!(status == 431 || status == 400 || status == 0, "{status}");
    let many: String = (0..500).map(|i| format!("X-H{i}: v\r\n")).collect();
    let (status, _) = raw_exchange(
        a,
        format!("GET /health HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes(),
    );
    assert!(status == 431 || status == 400 || status == 0, "{status}");
    let (status, _) = raw_exchange(a, b"\x00\x01\x02 garbage\r\n\r\n");
    assert!(status == 400 || status == 0, "{status}");
    // Still serving.
    assert_eq!(get(a, "/health").body["status"], "ok");
}

#[test]
fn slow_heads_and_bodies_are_cut_off_and_free_their_slots() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |c| {
        c.header_timeout = Duration::from_millis(300);
        c.body_timeout = Duration::from_millis(300);
        c.max_concurrent_ingest = 1;
    });
    let a = server.addr;
    // A head that never ends: the connection is closed, not kept.
    let t = Instant::now();
    let (status, _) = raw_exchange(a, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(status == 408 || status == 0, "{status}");
    // A body that stops arriving: 408, and the only ingest slot is free again.
    let t = Instant::now();
    let (status, text) = raw_exchange(
        a,
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: 1000\r\n\r\n{\"ts\":",
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(status, 408, "{text}");
    assert!(text.contains("body_timeout"), "{text}");
    // The connection cannot carry another request, and the answer says so (RFC 9112
    // §9.6); so does a 400 for chunks that do not parse.
    assert!(
        text.to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "{text}"
    );
    for target in ["/v1/events", "/VIID/System/Keepalive"] {
        let request = format!(
            "POST {target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n"
        );
        let (status, text) = raw_exchange(a, request.as_bytes());
        assert!(matches!(status, 400 | 401), "{target}: {text}");
        assert!(
            text.to_ascii_lowercase()
                .contains("\r\nconnection: close\r\n"),
            "{target}: {text}"
        );
    }
    let r = post(a, "/v1/events", "application/x-ndjson", &sample());
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn path_like_input_never_reaches_the_file_system() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    let server = start(&data, |_| {});
    let a = server.addr;
    let before: std::collections::BTreeSet<_> = walk(dir.path());
    for (method, target, body, want) in [
        (
            "PUT",
            "/v1/communities/..%2F..%2Fescape",
            "{\"name\":\"x\"}",
            400,
        ),
        ("PUT", "/v1/communities/../escape", "{\"name\":\"x\"}", 400),
        (
            "PUT",
            "/v1/devices/..%2F..%2F..%2Fetc%2Fpasswd",
            "{\"community\":\"x\"}",
            400,
        ),
        ("GET", "/v1/events/..%2F..%2Fetc%2Fpasswd", "", 400),
        ("DELETE", "/v1/subscriptions/..%2F..%2Fcatalog", "", 404),
        ("DELETE", "/v1/watchlists/..%2Fdict.log", "", 404),
        ("GET", "/../../etc/passwd", "", 404),
        ("GET", "/v1/audit?after=..%2F..", "", 400),
    ] {
        let r = call(a, method, target, "application/json", body.as_bytes());
        assert_eq!(r.status, want, "{method} {target}: {}", r.body);
    }
    // Ingested strings that look like paths are data, nothing more.
    let ev = json!({"ts": 1630454400000i64, "community": "..", "device": GATE, "kind": "face",
                    "subject": "../../../../tmp/x", "attrs": {"image_url": "file:///etc/passwd"}});
    let r = post(a, "/v1/events", "application/json", &format!("[{ev}]"));
    assert_eq!(r.body["errors"][0]["field"], "community", "{}", r.body);
    let ev = json!({"ts": 1630454400000i64, "community": "c1", "device": GATE, "kind": "face",
                    "subject": "../../../../tmp/x", "attrs": {"image_url": "file:///etc/passwd"}});
    assert_eq!(
        post(a, "/v1/events", "application/json", &format!("[{ev}]")).body["stored"],
        1
    );
    let after = walk(dir.path());
    let outside: Vec<_> = after
        .difference(&before)
        .filter(|p| !p.starts_with(&data))
        .collect();
    assert!(
        outside.is_empty(),
        "written outside the data directory: {outside:?}"
    );
}

/// Every path under `root`.
fn walk(root: &Path) -> std::collections::BTreeSet<std::path::PathBuf> {
    let mut out = std::collections::BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.insert(p);
        }
    }
    out
}

/// RFC 9110 §15.5.6: a 405 names the methods the resource takes in `Allow`.
#[test]
fn a_405_says_which_methods_the_resource_takes() {
    let dir = tempfile::tempdir().unwrap();
    let server = crate::support::start(dir.path(), |_| {});
    for (request, allow) in [
        ("GET /v1/events", "allow: post"),
        ("POST /v1/admin/retention", "allow: get, head, put"),
        ("DELETE /v1/watchlists", "allow: get, head, post"),
    ] {
        let a = crate::support::send(
            server.addr,
            format!(
                "{request} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        );
        assert_eq!(a.status, 405, "{request}");
        assert!(
            a.head.to_ascii_lowercase().contains(allow),
            "{request}: {}",
            a.head
        );
    }
}
