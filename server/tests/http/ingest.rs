//! Ingest: records refused one by one, binary batches, a saturated ingest answered 429
//! (and a slow query 503).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{call, enc, ev, get, post, start, wait_until, GATE, RANGE};

#[test]
fn bad_records_are_refused_one_by_one_and_the_rest_stored() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    let good = ev(
        "2021-09-01T08:00:00+08:00",
        GATE,
        "vehicle",
        "苏E11111",
        "in",
    );
    let body = [
        good.clone(),
        "{\"ts\": ".to_string(),
        json!({"ts": "2021-09-01T08:00:00+08:00", "community": "3205080001", "device": GATE, "kind": "vehicle", "subject": 12345}).to_string(),
        json!({"ts": "2021-09-01T08:00:00+08:00", "device": GATE, "kind": "vehicle", "subject": "苏E2"}).to_string(),
        ev("2021-09-01T08:00:00+08:00", "3205080101121000000X", "vehicle", "苏E3", "in"),
        ev("2021-09-01T08:00:00+08:00", GATE, "drone", "苏E4", "in"),
        ev("1999-12-31T23:59:59+08:00", GATE, "vehicle", "苏E5", "in"),
        ev("2021-09-01T08:00:00+08:00", GATE, "vehicle", "  ", "in"),
        ev("2021-09-01T08:00:01+08:00", GATE, "vehicle", "苏E11111", "out"),
    ]
    .join("\n");
    let r = post(a, "/v1/events", "application/x-ndjson", &body);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["stored"], 2);
    assert_eq!(r.body["rejected"], 7);
    let errors: Vec<(u64, Option<&str>)> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["line"].as_u64().unwrap(), e["field"].as_str()))
        .collect();
    assert_eq!(
        errors,
        [
            (2, None),
            (3, Some("subject")),
            (4, Some("community")),
            (5, Some("device")),
            (6, Some("kind")),
            (7, Some("ts")),
            (8, Some("subject")),
        ]
    );
    for e in r.body["errors"].as_array().unwrap() {
        assert!(!e["message"].as_str().unwrap().is_empty());
    }
    let r = get(
        a,
        &format!(
            "/v1/trajectory?kind=vehicle&subject={}&{RANGE}",
            enc("苏E11111")
        ),
    );
    assert_eq!(
        r.body["events"].as_array().unwrap().len(),
        2,
        "the valid ones were stored"
    );

    // Nothing valid: 422 in the one error shape, with the list.
    let r = post(
        a,
        "/v1/events",
        "application/json",
        &format!("[{}, 5]", ev("x", GATE, "vehicle", "s", "in")),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "invalid_events");
    assert_eq!(r.body["error"]["line"], 0);
    assert_eq!(r.body["error"]["field"], "ts");
    assert_eq!(r.body["errors"].as_array().unwrap().len(), 2);

    // A broken JSON array is refused whole.
    let r = post(a, "/v1/events", "application/json", "[{\"ts\": 1,");
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"]["code"], "malformed_json");
    let r = post(a, "/v1/events", "application/json", "");
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"]["code"], "no_events");
}

#[test]
fn binary_batches_ingest_like_json_with_per_record_errors() {
    use sightline_server::wire;
    use sightline_storage::{AttrValue, EventInput};
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    let event = |device: &str, subject: &str| EventInput {
        ts_ms: 1_630_454_400_000,
        community: "3205080001".into(),
        device: device.into(),
        kind: "vehicle".into(),
        subject: subject.into(),
        direction: "in".into(),
        attrs: [("lane".to_string(), AttrValue::Int(3))].into(),
    };
    let batch = vec![
        event(GATE, "苏E12345"),
        event("bad", "苏E2"),
        event(GATE, "苏E12345"),
    ];
    let r = call(
        a,
        "POST",
        "/v1/events",
        wire::CONTENT_TYPE,
        &wire::encode(&batch),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["stored"], 2);
    assert_eq!(r.body["errors"][0]["line"], 1);
    assert_eq!(r.body["errors"][0]["field"], "device");
    let t = get(
        a,
        &format!(
            "/v1/trajectory?kind=vehicle&subject={}&{RANGE}",
            enc("苏E12345")
        ),
    );
    assert_eq!(t.body["events"].as_array().unwrap().len(), 2);
    assert_eq!(t.body["events"][0]["attrs"]["lane"], 3);
    let mut broken = wire::encode(&batch);
    broken.truncate(broken.len() - 3);
    let r = call(a, "POST", "/v1/events", wire::CONTENT_TYPE, &broken);
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (400, Some("malformed_body"))
    );
}

#[test]
fn saturated_ingest_is_answered_429_with_retry_after_and_slow_queries_503() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |c| {
        c.max_concurrent_ingest = 1;
        c.query_timeout = Duration::from_millis(1);
    });
    let a = server.addr;
    // One ingest holds the only slot: its body never finishes arriving. (Should a
    // slow request not be served promptly on a loaded machine, another is opened
    // every second; all are held until the end.)
    let open_slow = || {
        let mut slow = TcpStream::connect(a).unwrap();
        write!(
            slow,
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: 1000\r\n\r\n{{\"ts\":"
        )
        .unwrap();
        slow
    };
    let mut slows = vec![open_slow()];
    let mut last_slow = Instant::now();
    let line = ev("2021-09-01T08:00:00+08:00", GATE, "vehicle", "苏E1", "in");
    let mut busy = String::new();
    wait_until(Duration::from_secs(60), || {
        let mut s = TcpStream::connect(a).unwrap();
        write!(
            s,
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{line}",
            line.len()
        )
        .unwrap();
        busy.clear();
        s.read_to_string(&mut busy).unwrap();
        if busy.starts_with("HTTP/1.1 429") {
            return true;
        }
        if last_slow.elapsed() > Duration::from_secs(1) {
            slows.push(open_slow());
            last_slow = Instant::now();
        }
        false
    });
    assert!(busy.starts_with("HTTP/1.1 429"), "{busy}");
    assert!(
        busy.to_ascii_lowercase().contains("retry-after: 1"),
        "{busy}"
    );
    assert!(busy.contains("\"code\":\"busy\""), "{busy}");
    drop(slows);

    // A co-occurrence over 20,000 passes of one plate takes far longer than 1 ms.
    let mut slot_free = false;
    for chunk in 0..4 {
        let body: Vec<String> = (0..5000)
            .map(|i| {
                let t = 1_630_454_400_000i64 + (chunk * 5000 + i) * 2_000;
                let subject = if i % 2 == 0 {
                    "苏E99999".to_string()
                } else {
                    format!("F{i}")
                };
                json!({"ts": t, "community": "3205080001", "device": GATE,
                       "kind": if i % 2 == 0 { "vehicle" } else { "face" }, "subject": subject})
                .to_string()
            })
            .collect();
        slot_free = wait_until(Duration::from_secs(30), || {
            let r = post(a, "/v1/events", "application/x-ndjson", &body.join("\n"));
            if r.status == 200 {
                return true;
            }
            assert_eq!(r.status, 429, "{}", r.body);
            false
        });
        assert!(slot_free, "the held slot was never released");
    }
    assert!(slot_free);
    let r = get(
        a,
        &format!("/v1/cooccurrence?kind=vehicle&subject={}&from=2021-09-01T00:00:00%2B08:00&to=2021-09-03T00:00:00%2B08:00&window=60s", enc("苏E99999")),
    );
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "query_timeout");
}
