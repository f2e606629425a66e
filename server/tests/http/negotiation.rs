//! Content negotiation (RFC 9110 §12.5.1: `Accept` with its ranges, parameters and
//! weights, case-insensitive; §12.5.5: `Vary: Accept`) and a singular query parameter
//! given twice, against a real `serve` on 127.0.0.1. Found by a black-box probe.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

use crate::support::{enc, post, sample, start, RANGE};
use sightline_testkit::fetch;

/// A vehicle trajectory over the sample: a list answer (JSON or NDJSON lines).
fn trajectory() -> String {
    format!(
        "/v1/trajectory?kind=vehicle&subject={}&{RANGE}",
        enc("苏E12345")
    )
}

/// A GET with `accept` (`None`: no `Accept` at all): status, content type, `Vary`
/// values (lower case, empty when absent), body.
fn ask(a: SocketAddr, target: &str, accept: Option<&str>) -> (u16, String, String, Vec<u8>) {
    let line = accept
        .map(|v| format!("Accept: {v}\r\n"))
        .unwrap_or_default();
    let (status, head, body) = fetch(a, target, &line);
    (
        status,
        field(&head, "content-type"),
        field(&head, "vary"),
        body,
    )
}

/// Header `name`'s values in a lower-case head, joined with `, ` (empty when absent).
fn field(head: &str, name: &str) -> String {
    head.lines()
        .filter_map(|l| l.strip_prefix(&format!("{name}: ")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The media type a request with `accept` gets for a trajectory, and that the answer
/// says `Vary: Accept`.
fn answered_as(a: SocketAddr, accept: Option<&str>) -> String {
    let (status, content_type, vary, body) = ask(a, &trajectory(), accept);
    assert_eq!(
        status,
        200,
        "{accept:?}: {}",
        String::from_utf8_lossy(&body)
    );
    assert!(vary.contains("accept"), "{accept:?}: Vary is {vary:?}");
    content_type
}

#[test]
fn accept_is_case_insensitive_weighted_and_keeps_what_real_clients_get() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    assert_eq!(
        post(a, "/v1/events", "application/x-ndjson", &sample()).body["stored"],
        7
    );
    let json = "application/json";
    let ndjson = "application/x-ndjson";
    for (accept, wanted) in [
        // What real clients send: no Accept, curl, axios, a browser; NDJSON asked
        // for plainly.
        (None, json),
        (Some("*/*"), json),
        (Some("application/json, text/plain, */*"), json),
        (
            Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
            json,
        ),
        (Some("application/x-ndjson"), ndjson),
        (Some("application/x-ndjson; charset=utf-8"), ndjson),
        // Media types are case-insensitive (§8.3.1), the weight's name too (§12.4.2).
        (Some("Application/X-NDJSON"), ndjson),
        (
            Some("application/x-ndjson;Q=0.5, application/json;q=0.4"),
            ndjson,
        ),
        // q=0 is "not acceptable" (§12.4.2): JSON, as when nothing offered is.
        (Some("application/x-ndjson;q=0"), json),
        (Some("application/json, application/x-ndjson;q=0.1"), json),
        (Some("application/json;q=0.5, application/x-ndjson"), ndjson),
        (
            Some("application/*;q=0.2, application/x-ndjson;q=0.1"),
            json,
        ),
        // Nothing offered is acceptable: JSON as always, never a 406.
        (Some("text/html"), json),
        (Some("image/png, */*;q=0"), json),
        // A prefix of another type is not that type.
        (Some("application/x-ndjsonx"), json),
    ] {
        assert_eq!(answered_as(a, accept), wanted, "{accept:?}");
    }
    // The lines asked for are lines (three sightings of the plate, streamed chunked).
    let (_, _, _, body) = ask(a, &trajectory(), Some("Application/X-NDJSON"));
    let lines: Vec<Value> = String::from_utf8(dechunked(&body))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    // Every JSON or NDJSON answer of a route says it follows Accept; an error does not
    // (its JSON is the same whatever was asked).
    for target in ["/v1/communities", "/v1/feed?after=0", "/health"] {
        let (status, _, vary, _) = ask(a, target, None);
        assert_eq!((status, vary.as_str()), (200, "accept"), "{target}");
    }
    let (status, _, vary, _) = ask(a, "/v1/events/999999", Some(ndjson));
    assert_eq!((status, vary.as_str()), (404, ""));
}

/// A chunked body's chunks, joined (RFC 9112 §7.1).
fn dechunked(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap(), 16).unwrap();
        rest = &rest[eol + 2..];
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// The head (lower case) of the answer to a feed request with `accept`, read alone: an
/// SSE stream does not end.
fn feed_head(a: SocketAddr, accept: &str) -> String {
    let mut s = TcpStream::connect(a).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET /v1/feed?after=0 HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte).unwrap() {
            0 => break,
            _ => head.push(byte[0]),
        }
    }
    String::from_utf8(head).unwrap().to_ascii_lowercase()
}

#[test]
fn the_feed_streams_only_when_event_streams_are_preferred() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    post(a, "/v1/events", "application/x-ndjson", &sample());
    for (accept, wanted) in [
        // EventSource's own request, and the type in another case.
        ("text/event-stream", "text/event-stream"),
        ("Text/Event-Stream", "text/event-stream"),
        ("text/*", "text/event-stream"),
        (
            "application/json;q=0.5, text/event-stream",
            "text/event-stream",
        ),
        // Refused (q=0) or less preferred: a page.
        (
            "text/event-stream;q=0, application/json",
            "application/json",
        ),
        ("text/event-stream;q=0", "application/json"),
        (
            "application/json, text/event-stream;q=0.9",
            "application/json",
        ),
        ("*/*", "application/json"),
        // NDJSON preferred over SSE: the page as lines.
        (
            "text/event-stream;q=0.5, application/x-ndjson",
            "application/x-ndjson",
        ),
    ] {
        let head = feed_head(a, accept);
        assert!(head.starts_with("http/1.1 200"), "{accept}: {head}");
        assert_eq!(field(&head, "content-type"), wanted, "{accept}: {head}");
        assert_eq!(field(&head, "vary"), "accept", "{accept}: {head}");
    }
}

#[test]
fn a_singular_parameter_given_twice_is_refused_naming_it_and_lists_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    post(a, "/v1/events", "application/x-ndjson", &sample());
    let refused = |target: &str, name: &str| {
        let (status, content_type, _, body) = ask(a, target, None);
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (status, content_type.as_str()),
            (400, "application/json"),
            "{target}: {body}"
        );
        assert_eq!(
            body["error"]["code"], "invalid_parameter",
            "{target}: {body}"
        );
        assert_eq!(body["error"]["field"], name, "{target}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("more than once"), "{target}: {message}");
    };
    refused("/v1/search?q=E12345&q=E54321", "q");
    refused("/v1/search?q=E12345&q=E12345", "q");
    refused("/v1/search?q=E12345&kind=vehicle&kind=face", "kind");
    refused(&format!("{}&to=2021-09-04T00:00:00Z", trajectory()), "to");
    refused(&format!("{}&limit=1&limit=2", trajectory()), "limit");
    refused("/v1/feed?after=0&after=3", "after");
    refused("/v1/audit?limit=1&limit=5", "limit");
    // Lists repeat, or are comma-separated, as documented.
    for target in [
        format!("{}&community=3205080001&community=3205080002", trajectory()),
        format!("{}&community=3205080001,3205080002", trajectory()),
        format!("{}&fields=ts&fields=device", trajectory()),
        "/v1/feed?after=0&community=3205080001&community=3205080002".to_string(),
    ] {
        let (status, _, _, body) = ask(a, &target, None);
        assert_eq!(status, 200, "{target}: {}", String::from_utf8_lossy(&body));
    }
    let (_, _, _, body) = ask(a, "/v1/search?q=E12345", None);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert!(body["subjects"].is_array(), "{body}");
}
