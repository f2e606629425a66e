//! `Server-Timing` (W3C Server Timing) on every answer of the API: `query` and
//! `serialize` in milliseconds; zeros where no query ran (refusals, hyper's own
//! answers to requests it cannot parse).

use std::net::SocketAddr;
use std::time::Instant;

use sightline_server::auth::Role;

use crate::keys::make_keys;
use crate::support::{enc, send, start, RANGE};

/// The answer's `Server-Timing` read strictly as the W3C syntax: one header, metrics
/// `name;dur=value` separated by commas (optional whitespace), names tokens, values
/// decimal numbers; returned by name.
fn server_timing(head: &str) -> Vec<(String, f64)> {
    let lines: Vec<&str> = head
        .lines()
        .filter_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("server-timing")
                .then_some(value.trim())
        })
        .collect();
    assert_eq!(lines.len(), 1, "one Server-Timing in {head}");
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    lines[0]
        .split(',')
        .map(|metric| {
            let (name, param) = metric
                .trim()
                .split_once(';')
                .unwrap_or_else(|| panic!("a metric without dur: {metric:?} in {head}"));
            let dur = param
                .trim()
                .strip_prefix("dur=")
                .unwrap_or_else(|| panic!("not dur=: {param:?} in {head}"));
            assert!(token(name.trim()), "{name:?} is not a token");
            assert!(
                !dur.is_empty()
                    && dur.bytes().all(|b| b.is_ascii_digit() || b == b'.')
                    && dur.bytes().filter(|&b| b == b'.').count() <= 1,
                "{dur:?} is not a decimal number"
            );
            (name.trim().to_string(), dur.parse().unwrap())
        })
        .collect()
}

/// What an answer's timing must show.
#[derive(Clone, Copy, Debug)]
enum Ran {
    /// Store work (ingest, a query): `query` above zero.
    Work,
    /// Answered by the server without store work: measured figures (three decimals).
    Answer,
    /// Refused, or not HTTP: the fixed zeros.
    Nothing,
}

/// Sends `request` and returns the status, the raw `Server-Timing` value, the timing
/// (`query`, `serialize`) and how long the client waited.
fn timed(a: SocketAddr, request: &str) -> (u16, String, f64, f64, f64) {
    let t = Instant::now();
    let answer = send(a, request.as_bytes());
    let waited = t.elapsed().as_secs_f64() * 1e3;
    let metrics = server_timing(&answer.head);
    let names: Vec<&str> = metrics.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["query", "serialize"], "{}", answer.head);
    let raw =
        sightline_testkit::header(&answer.head.to_ascii_lowercase(), "server-timing").to_string();
    (answer.status, raw, metrics[0].1, metrics[1].1, waited)
}

/// Whether every `dur` of `raw` is measured: digits, a point and three decimals.
fn measured(raw: &str) -> bool {
    raw.split(", ").all(|m| {
        m.split_once("dur=").is_some_and(|(_, d)| {
            d.split_once('.').is_some_and(|(i, f)| {
                !i.is_empty()
                    && i.bytes().all(|b| b.is_ascii_digit())
                    && f.len() == 3
                    && f.bytes().all(|b| b.is_ascii_digit())
            })
        })
    })
}

fn request(method: &str, target: &str, token: Option<&str>, accept: &str, body: &str) -> String {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    format!(
        "{method} {target} HTTP/1.1\r\nHost: x\r\n{auth}Accept: {accept}\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Every kind of answer — a query in JSON and NDJSON, ingest, `/health`, `/metrics`,
/// a 400, 404, 405, OPTIONS, a 401 and 403 (zeros: how long a key took to check is
/// not told), a GA/T 1400 device refused, and hyper's own 400 and 431 — carries one
/// `Server-Timing` with `query` and `serialize`; the server's figures are within what
/// the client waited.
#[test]
fn every_answer_carries_server_timing_in_w3c_syntax() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = make_keys(
        dir.path(),
        &[(Role::Admin, None), (Role::Investigate, Some("3205080001"))],
    );
    let (admin, investigator) = (Some(tokens[0].as_str()), Some(tokens[1].as_str()));
    let mut server = start(dir.path(), |_| {});
    let a = server.addr;
    let (json, ndjson) = ("application/json", "application/x-ndjson");
    let trajectory = format!(
        "/v1/trajectory?kind=vehicle&subject={}&{RANGE}",
        enc("苏E12345")
    );
    let sample = crate::support::sample();
    let cases: Vec<(String, u16, Ran)> = vec![
        (
            request("POST", "/v1/events", admin, json, &sample),
            200,
            Ran::Work,
        ),
        (
            request("GET", &trajectory, investigator, json, ""),
            200,
            Ran::Work,
        ),
        (
            request("GET", &trajectory, investigator, ndjson, ""),
            200,
            Ran::Work,
        ),
        (request("GET", "/health", None, json, ""), 200, Ran::Answer),
        (
            request("GET", "/metrics", admin, json, ""),
            200,
            Ran::Answer,
        ),
        (
            request("GET", "/v1/trajectory?kind=vehicle", investigator, json, ""),
            400,
            Ran::Answer,
        ),
        (
            request("GET", "/v1/nothing", admin, json, ""),
            404,
            Ran::Answer,
        ),
        (
            request("DELETE", "/health", admin, json, ""),
            405,
            Ran::Answer,
        ),
        (
            request("OPTIONS", "/v1/trajectory", None, json, ""),
            204,
            Ran::Answer,
        ),
        (
            request("GET", &trajectory, None, json, ""),
            401,
            Ran::Nothing,
        ),
        (
            request("GET", &trajectory, Some("sl_nokey_x"), json, ""),
            401,
            Ran::Nothing,
        ),
        (
            request("GET", "/metrics", investigator, json, ""),
            403,
            Ran::Nothing,
        ),
        (
            request("GET", "/VIID/MotorVehicles", None, json, ""),
            401,
            Ran::Nothing,
        ),
        (
            "GET / HTTP/1.1\r\nHost: x\r\nNo header here\r\n\r\n".to_string(),
            400,
            Ran::Nothing,
        ),
        (
            format!(
                "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                "a".repeat(1 << 20)
            ),
            431,
            Ran::Nothing,
        ),
    ];
    for (req, status, ran) in cases {
        let shown = &req[..req.len().min(100)];
        let (got, raw, query, serialize, waited) = timed(a, &req);
        assert_eq!(got, status, "{shown}");
        match ran {
            Ran::Work | Ran::Answer => {
                assert!(measured(&raw), "{shown}: {raw}");
                assert!(
                    query + serialize <= waited,
                    "{shown}: the server's {query} + {serialize} ms past the {waited} ms waited"
                );
                if let Ran::Work = ran {
                    assert!(query > 0.0, "{shown}: {raw}");
                }
            }
            Ran::Nothing => assert_eq!(raw, "query;dur=0, serialize;dur=0", "{shown}"),
        }
    }
    server.stop();
}
