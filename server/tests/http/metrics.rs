//! Prometheus metrics.

use std::io::{Read, Write};
use std::net::TcpStream;

use crate::support::{enc, ev, get, post, sample, start, RANGE};

/// The value of the sample `name` (with its labels, as written) in Prometheus text.
fn sample_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_count_requests_latencies_ingest_results_and_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    let bad = ev("2021-09-01T08:00:00+08:00", "123", "vehicle", "苏E1", "in");
    let body = format!("{}\n{bad}", sample());
    assert_eq!(
        post(a, "/v1/events", "application/x-ndjson", &body).body["stored"],
        7
    );
    for _ in 0..3 {
        get(
            a,
            &format!(
                "/v1/trajectory?kind=vehicle&subject={}&{RANGE}",
                enc("苏E12345")
            ),
        );
    }
    get(a, "/v1/nothing");

    let mut s = TcpStream::connect(a).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, text) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    let v =
        |name: &str| sample_value(text, name).unwrap_or_else(|| panic!("{name} missing:\n{text}"));
    assert_eq!(
        v("sightline_requests_total{endpoint=\"/v1/trajectory\",status=\"200\"}"),
        3.0
    );
    assert_eq!(
        v("sightline_requests_total{endpoint=\"other\",status=\"404\"}"),
        1.0
    );
    assert_eq!(
        v("sightline_request_duration_seconds_count{endpoint=\"/v1/trajectory\"}"),
        3.0
    );
    assert_eq!(
        v("sightline_request_duration_seconds_bucket{endpoint=\"/v1/trajectory\",le=\"+Inf\"}"),
        3.0
    );
    assert_eq!(
        v("sightline_refused_requests_total{code=\"not_found\"}"),
        1.0
    );
    assert_eq!(v("sightline_ingested_events_total{result=\"stored\"}"), 7.0);
    assert_eq!(
        v("sightline_ingested_events_total{result=\"rejected\"}"),
        1.0
    );
    assert!(v("sightline_wal_commit_duration_seconds_count") >= 1.0);
    assert_eq!(v("sightline_events"), 7.0);
    assert_eq!(v("sightline_memory_events"), 7.0, "none sealed yet");
    assert!(text.contains("# TYPE sightline_request_duration_seconds histogram"));
    assert!(text.contains("# TYPE sightline_maintenance_duration_seconds histogram"));
}
