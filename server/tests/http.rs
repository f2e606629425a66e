//! The real server on 127.0.0.1 with an ephemeral port, spoken to over HTTP/1.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sightline_server::{Server, ServerConfig};

mod common;
use common::spawn_server;

/// A server running on its own runtime thread; stops when dropped.
struct Running {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn start(data: &Path, tune: impl FnOnce(&mut ServerConfig)) -> Running {
    let mut config = ServerConfig::new(data, "127.0.0.1:0".parse().unwrap());
    config.vocabulary_refresh = Duration::from_millis(50);
    tune(&mut config);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let server = Server::bind(config).await.unwrap();
            addr_tx.send(server.local_addr()).unwrap();
            server
                .run(async {
                    let _ = rx.await;
                })
                .await;
        });
    });
    Running {
        addr: addr_rx.recv().expect("server started"),
        stop: Some(tx),
        thread: Some(thread),
    }
}

impl Running {
    fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Reply {
    status: u16,
    body: Value,
}

/// One HTTP/1.1 request on a fresh connection.
fn call(addr: SocketAddr, method: &str, target: &str, content_type: &str, body: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    Reply {
        status,
        body: serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}")),
    }
}

fn get(addr: SocketAddr, target: &str) -> Reply {
    call(addr, "GET", target, "application/json", b"")
}

fn post(addr: SocketAddr, target: &str, content_type: &str, body: &str) -> Reply {
    call(addr, "POST", target, content_type, body.as_bytes())
}

/// Percent-encodes a query value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const GATE: &str = "32050801011210000001";
const OTHER_GATE: &str = "32050801011210000002";

fn ev(ts: &str, device: &str, kind: &str, subject: &str, direction: &str) -> String {
    json!({"ts": ts, "community": "3205080001", "device": device, "kind": kind,
           "subject": subject, "direction": direction})
    .to_string()
}

/// A vehicle and a person who pass the same gate together three times, and a
/// bystander once.
fn sample() -> String {
    [
        ev(
            "2021-09-01T08:00:00+08:00",
            GATE,
            "vehicle",
            "苏E·12345",
            "in",
        ),
        ev("2021-09-01T08:00:30+08:00", GATE, "face", "F001", "in"),
        ev(
            "2021-09-01T12:00:00+08:00",
            OTHER_GATE,
            "vehicle",
            "苏E12345",
            "out",
        ),
        ev(
            "2021-09-01T11:59:10+08:00",
            OTHER_GATE,
            "face",
            "F001",
            "out",
        ),
        ev(
            "2021-09-02T08:00:00+08:00",
            GATE,
            "vehicle",
            "苏e12345",
            "in",
        ),
        ev("2021-09-02T08:00:59+08:00", GATE, "face", "F001", "in"),
        ev("2021-09-02T08:01:00+08:00", GATE, "face", "F999", "in"),
    ]
    .join("\n")
}

const RANGE: &str = "from=2021-09-01T00:00:00%2B08:00&to=2021-09-03T00:00:00%2B08:00";

#[test]
fn ingest_then_every_query_answers_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;

    let r = post(a, "/v1/events", "application/x-ndjson", &sample());
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["stored"], 7);
    assert_eq!(r.body["rejected"], 0);
    assert_eq!(r.body["ids"].as_array().unwrap().len(), 7);

    // Trajectory: the three spellings are one plate; times come back in +08:00.
    let r = get(
        a,
        &format!(
            "/v1/trajectory?kind=vehicle&subject={}&{RANGE}",
            enc("苏E12345")
        ),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let events = r.body["events"].as_array().unwrap();
    let times: Vec<&str> = events.iter().map(|e| e["ts"].as_str().unwrap()).collect();
    assert_eq!(
        times,
        [
            "2021-09-01T08:00:00.000+08:00",
            "2021-09-01T12:00:00.000+08:00",
            "2021-09-02T08:00:00.000+08:00"
        ]
    );
    assert_eq!(events[0]["subject"], "苏E12345");
    assert_eq!(events[0]["device"], GATE);
    let stays = r.body["stays"].as_array().unwrap();
    assert_eq!(stays.len(), 2);
    assert_eq!(stays[0]["in"], "2021-09-01T08:00:00.000+08:00");
    assert_eq!(stays[0]["out"], "2021-09-01T12:00:00.000+08:00");
    assert_eq!(stays[0]["ended_by"], "out");
    assert_eq!(stays[1]["ended_by"], "open");
    assert_eq!(r.body["stays_truncated"], false);
    assert!(r.body["next_cursor"].is_null());

    // Paging: one event per page, following cursors, gives the same three.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut target = format!(
            "/v1/trajectory?kind=vehicle&subject={}&{RANGE}&limit=1",
            enc("苏E12345")
        );
        if let Some(c) = &cursor {
            target += &format!("&cursor={}", enc(c));
        }
        let r = get(a, &target);
        assert_eq!(r.status, 200, "{}", r.body);
        seen.extend(
            r.body["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].clone()),
        );
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(
        seen,
        events.iter().map(|e| e["id"].clone()).collect::<Vec<_>>()
    );

    // Person–vehicle association: F001 on all three passes within 60 s, F999 on one.
    let r = get(
        a,
        &format!(
            "/v1/cooccurrence?kind=vehicle&subject={}&{RANGE}&window=60s&scope=device&candidate_kind=face",
            enc("苏E12345")
        ),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let c = r.body["candidates"].as_array().unwrap();
    assert_eq!(c[0]["subject"], "F001");
    assert_eq!(c[0]["hits"], 3);
    assert_eq!(c[0]["days"], 2);
    assert_eq!(c[0]["first"], "2021-09-01T08:00:30.000+08:00");
    assert_eq!(c[1]["subject"], "F999");
    assert_eq!(c[1]["hits"], 1);
    let r = get(
        a,
        &format!(
            "/v1/cooccurrence?kind=vehicle&subject={}&{RANGE}&window=60s&min_count=2",
            enc("苏E12345")
        ),
    );
    assert_eq!(r.body["candidates"].as_array().unwrap().len(), 1);

    // Collision: faces at GATE on day 1 and day 2.
    let r = post(
        a,
        "/v1/collision",
        "application/json",
        &json!({"kind": "face", "min_conditions": 2, "conditions": [
            {"devices": [GATE], "from": "2021-09-01T00:00:00+08:00", "to": "2021-09-02T00:00:00+08:00"},
            {"communities": ["3205080001"], "from": 1630512000000i64, "to": 1630598400000i64},
        ]})
        .to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["subjects"],
        json!([{"kind": "face", "subject": "F001", "conditions": [0, 1]}])
    );

    // Search: a misread plate, once the vocabulary has caught up (50 ms here).
    let deadline = Instant::now() + Duration::from_secs(30);
    let r = loop {
        let r = get(
            a,
            &format!("/v1/search?q={}&kind=vehicle&mode=fuzzy", enc("苏E1234S")),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        if !r.body["subjects"].as_array().unwrap().is_empty() || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let s = &r.body["subjects"][0];
    assert_eq!(s["subject"], "苏E12345");
    assert_eq!(s["count"], 3);
    assert_eq!(s["distance"], 0.5);
    assert_eq!(s["last"], "2021-09-02T08:00:00.000+08:00");
    let r = get(a, &format!("/v1/search?q={}&mode=wildcard", enc("*345")));
    assert_eq!(r.body["subjects"][0]["subject"], "苏E12345");

    let r = get(a, "/health");
    assert_eq!(r.status, 200);
    assert_eq!(r.body["events"], 7);

    // Events come back with their attributes.
    let with_attrs = json!({"ts": "2021-09-01T09:00:00+08:00", "community": "3205080001",
        "device": GATE, "kind": "vehicle", "subject": "苏E54321", "direction": "in",
        "attrs": {"plate_color": "yellow", "confidence": 0.93, "lane": 2, "ok": true}});
    assert_eq!(
        post(
            a,
            "/v1/events",
            "application/json",
            &format!("[{with_attrs}]")
        )
        .body["stored"],
        1
    );
    let r = get(
        a,
        &format!(
            "/v1/trajectory?kind=vehicle&subject={}&{RANGE}",
            enc("苏E54321")
        ),
    );
    assert_eq!(
        r.body["events"][0]["attrs"], with_attrs["attrs"],
        "{}",
        r.body
    );
    assert_eq!(events[0]["attrs"], json!({}));

    // Every event by its id, exactly as trajectory returned it; unknown ids are 404.
    for e in r.body["events"].as_array().unwrap().iter().chain(events) {
        let one = get(a, &format!("/v1/events/{}", e["id"]));
        assert_eq!(one.status, 200, "{}", one.body);
        assert_eq!(&one.body, e);
    }
    let r = get(a, "/v1/events/999999");
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (404, Some("no_such_event"))
    );
    let r = get(a, "/v1/events/abc");
    assert_eq!(
        (r.status, r.body["error"]["field"].as_str()),
        (400, Some("id"))
    );
}

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
fn limits_routes_and_parameters_answer_with_the_right_status_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |c| {
        c.max_body_bytes = 4096;
        c.max_batch_records = 3;
    });
    let a = server.addr;
    let big = "x".repeat(5000);
    let r = post(a, "/v1/events", "application/x-ndjson", &big);
    assert_eq!(r.status, 413);
    assert_eq!(r.body["error"]["code"], "body_too_large");
    let four = vec![ev("2021-09-01T08:00:00+08:00", GATE, "vehicle", "苏E1", "in"); 4].join("\n");
    let r = post(a, "/v1/events", "application/x-ndjson", &four);
    assert_eq!(r.status, 413);
    assert_eq!(r.body["error"]["code"], "too_many_records");

    let r = get(a, "/v1/nothing");
    assert_eq!(r.status, 404);
    assert_eq!(r.body["error"]["code"], "not_found");
    let r = get(a, "/v1/events");
    assert_eq!(r.status, 405);
    assert_eq!(r.body["error"]["code"], "method_not_allowed");

    let subject = enc("苏E1");
    for (target, field) in [
        (format!("/v1/trajectory?kind=vehicle&{RANGE}"), "subject"),
        (
            format!("/v1/trajectory?kind=boat&subject={subject}&{RANGE}"),
            "kind",
        ),
        (
            format!("/v1/trajectory?kind=vehicle&subject={subject}&from=yesterday&to=1"),
            "from",
        ),
        (
            format!("/v1/trajectory?kind=vehicle&subject={subject}&from=5&to=1"),
            "to",
        ),
        (
            format!("/v1/trajectory?kind=vehicle&subject={subject}&{RANGE}&limit=0"),
            "limit",
        ),
        (
            format!("/v1/trajectory?kind=vehicle&subject={subject}&{RANGE}&limit=ten"),
            "limit",
        ),
        (
            format!("/v1/trajectory?kind=vehicle&subject={subject}&{RANGE}&cursor=abc"),
            "cursor",
        ),
        (
            format!("/v1/trajectory?kind=vehicle&subject={subject}&{RANGE}&colour=red"),
            "colour",
        ),
        (
            format!("/v1/cooccurrence?kind=vehicle&subject={subject}&{RANGE}&window=5 minutes"),
            "window",
        ),
        (
            format!("/v1/cooccurrence?kind=vehicle&subject={subject}&{RANGE}&window=2h"),
            "window",
        ),
        (
            format!("/v1/cooccurrence?kind=vehicle&subject={subject}&{RANGE}&scope=city"),
            "scope",
        ),
        (
            format!("/v1/cooccurrence?kind=vehicle&subject={subject}&{RANGE}&min_count=0"),
            "min_count",
        ),
        ("/v1/search?q=a.*b&mode=wildcard".to_string(), "q"),
        ("/v1/search?q=abc&mode=regex".to_string(), "mode"),
        ("/v1/search?mode=exact".to_string(), "q"),
    ] {
        let target = target.replace(' ', "%20");
        let r = get(a, &target);
        assert_eq!(r.status, 400, "{target}: {}", r.body);
        assert_eq!(r.body["error"]["code"], "invalid_parameter", "{target}");
        assert_eq!(r.body["error"]["field"], field, "{target}: {}", r.body);
        assert!(!r.body["error"]["message"].as_str().unwrap().is_empty());
    }
    for (body, field) in [
        (json!({"conditions": []}), "kind"),
        (json!({"kind": "face"}), "conditions"),
        (
            json!({"kind": "face", "conditions": [{"from": 1, "to": 2}]}),
            "conditions[0].communities",
        ),
        (
            json!({"kind": "face", "conditions": [{"devices": [GATE], "to": 2}]}),
            "conditions[0].from",
        ),
        (
            json!({"kind": "face", "min_conditions": 3, "conditions": [{"devices": [GATE], "from": 1, "to": 2}]}),
            "min_conditions",
        ),
    ] {
        let r = post(a, "/v1/collision", "application/json", &body.to_string());
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.body["error"]["field"], field, "{body}: {}", r.body);
    }
}

#[test]
fn acknowledged_events_survive_a_restart_and_in_flight_requests_finish_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), |_| {});
    let a = server.addr;
    // Eight clients ingest concurrently while the server is told to stop.
    let acks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let acks = acks.clone();
            std::thread::spawn(move || {
                let body: Vec<String> = (0..200)
                    .map(|i| {
                        ev(
                            &format!("2021-09-01T{:02}:{:02}:{:02}+08:00", 8 + c, i / 60, i % 60),
                            GATE,
                            "vehicle",
                            &format!("苏E{c}0000"),
                            "in",
                        )
                    })
                    .collect();
                let mut acked = 0;
                for chunk in body.chunks(20) {
                    let Ok(mut s) = TcpStream::connect(a) else { break };
                    let payload = chunk.join("\n");
                    let req = format!(
                        "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
                        payload.len()
                    );
                    if s.write_all(req.as_bytes()).is_err() {
                        break;
                    }
                    let mut out = String::new();
                    if s.read_to_string(&mut out).is_err() || !out.starts_with("HTTP/1.1 200") {
                        break;
                    }
                    acked += 20;
                    acks.fetch_add(20, std::sync::atomic::Ordering::SeqCst);
                }
                acked
            })
        })
        .collect();
    // Stop once some batches are acknowledged, while others are in flight.
    let deadline = Instant::now() + Duration::from_secs(30);
    while acks.load(std::sync::atomic::Ordering::SeqCst) < 40 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    server.stop();
    let acked: Vec<usize> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    assert!(acked.iter().sum::<usize>() >= 40, "{acked:?}");

    let server = start(dir.path(), |_| {});
    for (c, &n) in acked.iter().enumerate() {
        let r = get(
            server.addr,
            &format!(
                "/v1/trajectory?kind=vehicle&subject={}&{RANGE}&limit=1000",
                enc(&format!("苏E{c}0000"))
            ),
        );
        let stored = r.body["events"].as_array().unwrap().len();
        assert!(stored >= n, "client {c}: {n} acknowledged, {stored} stored");
    }
}

#[test]
fn the_binary_prints_its_address_serves_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    // Settings from a file, an environment variable and a flag, in that precedence.
    let config = dir.path().join("sightline.toml");
    std::fs::write(
        &config,
        format!(
            "data = {:?}\nlisten = \"127.0.0.1:9\"\nmax_batch_records = 3\nmax_result_rows = 50\n",
            dir.path().join("store")
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .env("SIGHTLINE_MAX_RESULT_ROWS", "2")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("first line: {line:?}"))
        .parse()
        .unwrap();
    assert_eq!(get(addr, "/health").body["status"], "ok");
    let r = post(addr, "/v1/events", "application/x-ndjson", &sample());
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (413, Some("too_many_records")),
        "the file's max_batch_records"
    );
    let first_three = sample().lines().take(3).collect::<Vec<_>>().join("\n");
    let r = post(addr, "/v1/events", "application/x-ndjson", &first_three);
    assert_eq!(r.body["stored"], 3);
    assert!(dir.path().join("store").join("catalog").exists());
    let traj = format!(
        "/v1/trajectory?kind=vehicle&subject={}&{RANGE}",
        enc("苏E12345")
    );
    assert_eq!(get(addr, &format!("{traj}&limit=2")).status, 200);
    let r = get(addr, &format!("{traj}&limit=3"));
    assert_eq!(
        (r.status, r.body["error"]["field"].as_str()),
        (400, Some("limit")),
        "the environment's max_result_rows: {}",
        r.body
    );
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn without_keys_the_binary_refuses_to_listen_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args(["serve", "--listen", "0.0.0.0:0", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("only loopback"), "{err}");

    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "data = \"x\"\nmax_body_byte = 5\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("max_body_byte"),
        "{err}"
    );
}

#[test]
fn pattern_queries_answer_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    let body = [
        ev(
            "2021-09-01T22:00:00+08:00",
            GATE,
            "vehicle",
            "苏E77777",
            "in",
        ),
        ev(
            "2021-09-02T02:00:00+08:00",
            GATE,
            "vehicle",
            "苏E77777",
            "out",
        ),
        ev(
            "2021-09-02T23:00:00+08:00",
            GATE,
            "vehicle",
            "苏E77777",
            "in",
        ),
        ev(
            "2021-09-03T07:00:00+08:00",
            GATE,
            "vehicle",
            "苏E77777",
            "out",
        ),
        ev(
            "2021-09-03T21:00:00+08:00",
            GATE,
            "vehicle",
            "苏E77777",
            "in",
        ),
        ev(
            "2021-09-03T12:00:00+08:00",
            GATE,
            "vehicle",
            "苏E88888",
            "in",
        ),
    ]
    .join("\n");
    assert_eq!(
        post(a, "/v1/events", "application/x-ndjson", &body).body["stored"],
        6
    );
    let range = "from=2021-09-01T00:00:00%2B08:00&to=2021-09-04T00:00:00%2B08:00";

    let r = get(
        a,
        &format!("/v1/frequency?community=3205080001&kind=vehicle&{range}&min_count=3"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["subjects"],
        json!([{"subject": "苏E77777", "count": 5, "days": 3,
                "first": "2021-09-01T22:00:00.000+08:00", "last": "2021-09-03T21:00:00.000+08:00"}])
    );

    let r = get(
        a,
        &format!("/v1/nocturnal?kind=vehicle&{range}&min_night=3&max_day=1"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["subjects"],
        json!([{"subject": "苏E77777", "night": 4, "day": 1, "night_days": 3, "night_ratio": 0.8}])
    );

    let r = get(
        a,
        "/v1/first-seen?community=3205080001&kind=vehicle&from=2021-09-03T00:00:00%2B08:00&to=2021-09-04T00:00:00%2B08:00&lookback=1d",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["subjects"],
        json!([{"subject": "苏E88888", "first": "2021-09-03T12:00:00.000+08:00", "count": 1}])
    );

    let r = get(
        a,
        &format!(
            "/v1/overnight?kind=vehicle&subject={}&{range}",
            enc("苏E77777")
        ),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let dates: Vec<&str> = r.body["nights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["date"].as_str().unwrap())
        .collect();
    assert_eq!(dates, ["2021-09-01", "2021-09-02", "2021-09-03"]);
    assert_eq!(
        r.body["nights"][0]["morning"]["ts"],
        "2021-09-02T02:00:00.000+08:00"
    );
    assert!(r.body["nights"][2]["morning"].is_null());
    assert_eq!(
        r.body["bases"],
        json!([{"community": "3205080001", "nights": 3}])
    );

    let r = get(a, &format!("/v1/counts?{range}&by=kind&per=day"));
    assert_eq!(r.status, 200, "{}", r.body);
    let counts: Vec<(String, u64)> = r.body["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["bucket"].as_str().unwrap().to_string(),
                c["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        counts,
        [
            ("2021-09-01T00:00:00.000+08:00".to_string(), 1),
            ("2021-09-02T00:00:00.000+08:00".to_string(), 2),
            ("2021-09-03T00:00:00.000+08:00".to_string(), 3),
        ]
    );
    for (target, field) in [
        (format!("/v1/counts?{range}&per=week"), "per"),
        (
            format!("/v1/frequency?kind=vehicle&{range}&min_count=1"),
            "community",
        ),
        (
            format!("/v1/frequency?community=x&kind=vehicle&{range}"),
            "min_count",
        ),
        (
            format!("/v1/first-seen?community=x&kind=vehicle&{range}&lookback=5h"),
            "lookback",
        ),
        (
            format!("/v1/nocturnal?kind=vehicle&{range}&day_start_hour=20"),
            "day_start_hour",
        ),
        (
            format!("/v1/overnight?kind=vehicle&subject=x&{range}&evening_hour=25"),
            "evening_hour",
        ),
    ] {
        let r = get(a, &target);
        assert_eq!(r.status, 400, "{target}: {}", r.body);
        assert_eq!(r.body["error"]["field"], field, "{target}: {}", r.body);
    }
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
    let deadline = Instant::now() + Duration::from_secs(60);
    let busy = loop {
        let mut s = TcpStream::connect(a).unwrap();
        write!(
            s,
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{line}",
            line.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        if out.starts_with("HTTP/1.1 429") || Instant::now() > deadline {
            break out;
        }
        if last_slow.elapsed() > Duration::from_secs(1) {
            slows.push(open_slow());
            last_slow = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
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
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = post(a, "/v1/events", "application/x-ndjson", &body.join("\n"));
            if r.status == 200 {
                slot_free = true;
                break;
            }
            assert_eq!(r.status, 429, "{}", r.body);
            assert!(
                Instant::now() < deadline,
                "the held slot was never released"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    assert!(slot_free);
    let r = get(
        a,
        &format!("/v1/cooccurrence?kind=vehicle&subject={}&from=2021-09-01T00:00:00%2B08:00&to=2021-09-03T00:00:00%2B08:00&window=60s", enc("苏E99999")),
    );
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "query_timeout");
}

/// Runs a `curl` line as `sightline demo` prints it, without curl: `-sG URL` with
/// `--data-urlencode 'k=v'` pairs, or `-s URL [-H …] -d|--data-binary 'body'`.
fn run_curl(line: &str, addr: SocketAddr) -> Reply {
    // Split on single quotes: odd pieces are the quoted arguments.
    let pieces: Vec<&str> = line.split('\'').collect();
    let quoted: Vec<&str> = pieces.iter().skip(1).step_by(2).copied().collect();
    let url = quoted[0];
    let path = url.split_once(&addr.to_string()).unwrap().1;
    if line.starts_with("curl -sG") {
        let query: Vec<String> = quoted[1..]
            .iter()
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                format!("{k}={}", enc(v))
            })
            .collect();
        get(addr, &format!("{path}?{}", query.join("&")))
    } else if line.contains("-H 'Content-Type:") {
        let content_type = quoted[1].trim_start_matches("Content-Type: ");
        post(addr, path, content_type, quoted[2])
    } else {
        get(addr, path)
    }
}

#[test]
fn the_demo_serves_a_synthetic_month_and_its_printed_examples_work() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--days",
            "3",
            "--communities",
            "2",
            "--data",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("first line: {line:?}"))
        .parse()
        .unwrap();
    let mut commands = Vec::new();
    loop {
        line.clear();
        out.read_line(&mut line).unwrap();
        if line.starts_with("curl ") {
            commands.push(line.trim().to_string());
        }
        if line.contains("/v1/events") {
            break; // the last example
        }
    }
    assert!(commands.len() >= 7, "{commands:?}");
    for cmd in &commands {
        let r = run_curl(cmd, addr);
        assert_eq!(r.status, 200, "{cmd}\n{}", r.body);
    }
    let health = get(addr, "/health").body;
    assert!(health["events"].as_u64().unwrap() > 10_000, "{health}");
    // The association example finds the vehicle's driver first.
    let assoc = commands
        .iter()
        .find(|c| c.contains("cooccurrence"))
        .unwrap();
    let r = run_curl(assoc, addr);
    assert_eq!(r.body["candidates"][0]["kind"], "face", "{}", r.body);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}

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

#[test]
fn every_route_in_the_openapi_document_answers_its_example() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    assert_eq!(
        post(a, "/v1/events", "application/x-ndjson", &sample()).status,
        200
    );
    let doc = get(a, "/v1/openapi.json").body;
    assert_eq!(doc["openapi"], "3.0.3");
    let paths = doc["paths"].as_object().unwrap();
    let mut documented: Vec<&str> = paths.keys().map(String::as_str).collect();
    documented.sort();
    let mut routed = vec![
        "/health",
        "/metrics",
        "/v1/openapi.json",
        "/v1/audit",
        "/v1/communities",
        "/v1/devices",
        "/v1/admin/stats",
        "/v1/admin/retention",
        "/v1/events/{id}",
        "/v1/feed",
        "/v1/subscriptions",
        "/v1/subscriptions/{id}",
        "/v1/watchlists",
        "/v1/watchlists/{id}",
        "/v1/alerts",
        "/v1/communities/{code}",
        "/v1/devices/{code}",
        "/v1/events",
        "/v1/trajectory",
        "/v1/cooccurrence",
        "/v1/collision",
        "/v1/search",
        "/v1/frequency",
        "/v1/nocturnal",
        "/v1/first-seen",
        "/v1/overnight",
        "/v1/counts",
    ];
    routed.sort();
    assert_eq!(documented, routed);
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            let status = match method.as_str() {
                "get" => {
                    let params = op["parameters"].as_array().unwrap();
                    let (in_path, in_query): (Vec<&Value>, Vec<&Value>) =
                        params.iter().partition(|p| p["in"] == "path");
                    let path = in_path.iter().fold(path.clone(), |t, p| {
                        t.replace(
                            &format!("{{{}}}", p["name"].as_str().unwrap()),
                            p["example"].as_str().unwrap(),
                        )
                    });
                    let query: Vec<String> = in_query
                        .into_iter()
                        .map(|p| {
                            format!(
                                "{}={}",
                                p["name"].as_str().unwrap(),
                                enc(p["example"].as_str().unwrap())
                            )
                        })
                        .collect();
                    let target = format!("{path}?{}", query.join("&"));
                    if path == "/metrics" {
                        let mut s = TcpStream::connect(a).unwrap();
                        write!(
                            s,
                            "GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                        )
                        .unwrap();
                        let mut raw = String::new();
                        s.read_to_string(&mut raw).unwrap();
                        raw[9..12].parse::<u16>().unwrap()
                    } else {
                        let r = get(a, &target);
                        assert_eq!(r.status, 200, "{target}: {}", r.body);
                        r.status
                    }
                }
                "post" => {
                    let example = &op["requestBody"]["content"]["application/json"]["example"];
                    let r = post(a, path, "application/json", &example.to_string());
                    let want = match path.as_str() {
                        "/v1/subscriptions" | "/v1/watchlists" => 201,
                        _ => 200,
                    };
                    assert_eq!(r.status, want, "POST {path}: {}", r.body);
                    200
                }
                "put" => {
                    let target = match op["parameters"][0]["example"].as_str() {
                        Some(code) => path.replace("{code}", code),
                        None => path.clone(),
                    };
                    let example = &op["requestBody"]["content"]["application/json"]["example"];
                    let r = call(
                        a,
                        "PUT",
                        &target,
                        "application/json",
                        example.to_string().as_bytes(),
                    );
                    assert_eq!(r.status, 200, "PUT {target}: {}", r.body);
                    r.status
                }
                "delete" => {
                    let id = op["parameters"][0]["example"].as_str().unwrap();
                    let r = call(
                        a,
                        "DELETE",
                        &path.replace("{id}", id),
                        "application/json",
                        b"",
                    );
                    // The example names nothing that exists: the documented 404.
                    assert_eq!(r.status, 404, "DELETE {path}: {}", r.body);
                    assert!(r.body["error"]["code"]
                        .as_str()
                        .unwrap()
                        .starts_with("no_such_"));
                    200
                }
                other => panic!("unexpected method {other}"),
            };
            assert_eq!(status, 200, "{method} {path}");
        }
    }
}

/// A request with an API key.
fn call_as(addr: SocketAddr, token: Option<&str>, method: &str, target: &str, body: &str) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/x-ndjson\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    Reply {
        status: head.split(' ').nth(1).unwrap().parse().unwrap(),
        body: serde_json::from_str(body).unwrap_or(Value::Null),
    }
}

#[test]
fn keys_roles_community_scopes_and_the_audit_chain() {
    use sightline_server::auth::{self, Role};
    let dir = tempfile::tempdir().unwrap();
    let (ingest, scoped_ingest, detective, scoped, admin, revoked) = {
        let store = sightline_storage::Store::open(dir.path(), Default::default()).unwrap();
        let mk = |role, c: Option<&[&str]>| {
            auth::create(
                &store,
                "t",
                role,
                c.map(|c| c.iter().map(|s| s.to_string()).collect()),
                0,
            )
            .unwrap()
            .1
        };
        let revoked = auth::create(&store, "old", Role::Admin, None, 0).unwrap();
        assert!(auth::revoke(&store, &revoked.0.id, 1).unwrap());
        (
            mk(Role::Ingest, None),
            mk(Role::Ingest, Some(&["3205080001"])),
            mk(Role::Investigate, None),
            mk(Role::Investigate, Some(&["3205080001"])),
            mk(Role::Admin, None),
            revoked.1,
        )
    };
    let mut server = start(dir.path(), |_| {});
    let a = server.addr;
    let other_gate = "32050802011210000001";
    let ev_at = |community: &str, device: &str, ts: &str, kind: &str, subject: &str| {
        json!({"ts": ts, "community": community, "device": device, "kind": kind,
               "subject": subject, "direction": "in"})
        .to_string()
    };
    let body = [
        ev_at(
            "3205080001",
            GATE,
            "2021-09-01T08:00:00+08:00",
            "vehicle",
            "苏E12345",
        ),
        ev_at(
            "3205080001",
            GATE,
            "2021-09-01T08:00:10+08:00",
            "face",
            "F001",
        ),
        ev_at(
            "3205080002",
            other_gate,
            "2021-09-01T09:00:00+08:00",
            "vehicle",
            "苏E12345",
        ),
        ev_at(
            "3205080002",
            other_gate,
            "2021-09-01T09:00:10+08:00",
            "face",
            "F002",
        ),
    ]
    .join("\n");

    // Who may write.
    assert_eq!(call_as(a, None, "POST", "/v1/events", &body).status, 401);
    assert_eq!(
        call_as(a, Some(&revoked), "POST", "/v1/events", &body).status,
        401
    );
    let r = call_as(a, Some(&detective), "POST", "/v1/events", &body);
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let r = call_as(a, Some(&scoped_ingest), "POST", "/v1/events", &body);
    assert_eq!(r.body["stored"], 2, "{}", r.body);
    assert_eq!(r.body["errors"][0]["field"], "community");
    let r = call_as(a, Some(&ingest), "POST", "/v1/events", &body);
    assert_eq!(r.body["stored"], 4, "{}", r.body);

    // Who may read, and what a scoped key sees.
    let traj = format!(
        "/v1/trajectory?kind=vehicle&subject={}&{RANGE}",
        enc("苏E12345")
    );
    assert_eq!(call_as(a, Some(&ingest), "GET", &traj, "").status, 403);
    assert_eq!(call_as(a, None, "GET", &traj, "").status, 401);
    let all = call_as(a, Some(&detective), "GET", &traj, "");
    assert_eq!(
        all.body["events"].as_array().unwrap().len(),
        3,
        "{}",
        all.body
    );
    let mine = call_as(a, Some(&scoped), "GET", &traj, "");
    let communities: Vec<&str> = mine.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["community"].as_str().unwrap())
        .collect();
    assert_eq!(communities, ["3205080001", "3205080001"]);
    // The vocabulary catches up within its refresh interval (50 ms here).
    let deadline = Instant::now() + Duration::from_secs(30);
    while call_as(a, Some(&detective), "GET", "/v1/search?q=F002", "").body["subjects"]
        .as_array()
        .is_none_or(|s| s.is_empty())
    {
        assert!(Instant::now() < deadline, "F002 never became searchable");
        std::thread::sleep(Duration::from_millis(10));
    }
    for (target, hidden) in [
        ("/v1/search?q=F002&mode=exact".to_string(), "F002"),
        (format!("/v1/counts?{RANGE}&by=community"), "3205080002"),
        (
            format!(
                "/v1/cooccurrence?kind=vehicle&subject={}&{RANGE}&window=60s",
                enc("苏E12345")
            ),
            "F002",
        ),
        (
            format!("/v1/frequency?community=3205080002&kind=face&{RANGE}&min_count=1"),
            "F002",
        ),
        (
            format!("/v1/nocturnal?kind=face&{RANGE}&min_night=0&max_day=100"),
            "F002",
        ),
        (
            format!("/v1/first-seen?community=3205080002&kind=face&{RANGE}"),
            "F002",
        ),
        ("/v1/feed?after=0".to_string(), "3205080002"),
        ("/v1/feed?after=0&community=3205080002".to_string(), "F002"),
    ] {
        let wide = call_as(a, Some(&detective), "GET", &target, "");
        let narrow = call_as(a, Some(&scoped), "GET", &target, "");
        assert_eq!(narrow.status, 200, "{target}: {}", narrow.body);
        assert!(
            wide.body.to_string().contains(hidden),
            "{target}: {}",
            wide.body
        );
        assert!(
            !narrow.body.to_string().contains(hidden),
            "{target} leaks: {}",
            narrow.body
        );
    }
    // By id: another community's event is as absent as an unknown one.
    for e in all.body["events"].as_array().unwrap() {
        let target = format!("/v1/events/{}", e["id"]);
        let wide = call_as(a, Some(&detective), "GET", &target, "");
        assert_eq!(&wide.body, e);
        let narrow = call_as(a, Some(&scoped), "GET", &target, "");
        match e["community"].as_str() {
            Some("3205080001") => assert_eq!(&narrow.body, e),
            _ => assert_eq!(
                (narrow.status, narrow.body["error"]["code"].as_str()),
                (404, Some("no_such_event")),
                "{target} leaks: {}",
                narrow.body
            ),
        }
    }
    let search = call_as(
        a,
        Some(&scoped),
        "GET",
        &format!("/v1/search?q={}&mode=exact", enc("苏E12345")),
        "",
    );
    assert_eq!(
        search.body["subjects"][0]["count"], 2,
        "counted in scope only: {}",
        search.body
    );
    let coll = json!({"kind": "face", "min_conditions": 1, "conditions": [
        {"communities": ["3205080002"], "from": "2021-09-01T00:00:00+08:00", "to": "2021-09-02T00:00:00+08:00"},
        {"devices": [other_gate], "from": "2021-09-01T00:00:00+08:00", "to": "2021-09-02T00:00:00+08:00"}]})
    .to_string();
    assert_eq!(
        call_as(a, Some(&detective), "POST", "/v1/collision", &coll).body["subjects"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        call_as(a, Some(&scoped), "POST", "/v1/collision", &coll).body["subjects"],
        json!([])
    );

    // The catalog, too, shows a scoped key only its communities; writing it is admin's.
    for c in ["3205080001", "3205080002"] {
        let target = format!("/v1/communities/{c}");
        let body = json!({"name": c}).to_string();
        assert_eq!(
            call_as(a, Some(&detective), "PUT", &target, &body).status,
            403
        );
        assert_eq!(call_as(a, Some(&admin), "PUT", &target, &body).status, 200);
    }
    let listed = call_as(a, Some(&scoped), "GET", "/v1/communities", "").body;
    assert_eq!(
        listed["communities"].as_array().unwrap().len(),
        1,
        "{listed}"
    );
    assert_eq!(listed["communities"][0]["code"], "3205080001");
    assert_eq!(
        call_as(a, Some(&detective), "GET", "/v1/admin/stats", "").status,
        403
    );
    for method in ["GET", "PUT"] {
        let r = call_as(
            a,
            Some(&detective),
            method,
            "/v1/admin/retention",
            "{\"days\":1}",
        );
        assert_eq!(r.status, 403, "{method}: {}", r.body);
    }

    // Admin-only endpoints.
    assert_eq!(
        call_as(a, Some(&detective), "GET", "/metrics", "").status,
        403
    );
    assert_eq!(
        call_as(a, Some(&detective), "GET", "/v1/audit", "").status,
        403
    );
    let audit = call_as(a, Some(&admin), "GET", "/v1/audit", "");
    assert_eq!(audit.status, 200);
    let entries = audit.body["entries"].as_array().unwrap();
    let scoped_id = scoped.split('_').nth(1).unwrap();
    let first_scoped = entries
        .iter()
        .find(|e| e["key"] == scoped_id && e["endpoint"] == "/v1/trajectory")
        .expect("the scoped key's trajectory is audited");
    assert_eq!(first_scoped["results"], 2);
    assert!(first_scoped["params"]
        .as_str()
        .unwrap()
        .contains("subject="));
    assert!(
        entries.iter().all(|e| e["endpoint"] != "/v1/events"),
        "ingest is not an investigation"
    );
    server.stop();

    // The chain verifies; a tampered line is found, and the server will not start on it.
    let verify = |d: &Path| {
        Command::new(env!("CARGO_BIN_EXE_sightline"))
            .args(["audit", "verify", "--data"])
            .arg(d)
            .output()
            .unwrap()
    };
    assert!(verify(dir.path()).status.success());
    let log = dir.path().join("audit.log");
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::write(&log, text.replacen("\"results\":2", "\"results\":0", 1)).unwrap();
    let out = verify(dir.path());
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line"),
        "{out:?}"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let config = ServerConfig::new(dir.path(), "127.0.0.1:0".parse().unwrap());
    assert!(rt.block_on(Server::bind(config)).is_err());
}

#[test]
fn the_keys_command_creates_lists_and_revokes() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sightline"))
            .args(args)
            .arg("--data")
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let out = run(&[
        "keys",
        "create",
        "--role",
        "investigate",
        "--communities",
        "3205080001,3205080002",
        "--name",
        "gusu",
    ]);
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(token.starts_with("sl_"), "{token}");
    let id = token.split('_').nth(1).unwrap().to_string();
    let list = String::from_utf8(run(&["keys", "list"]).stdout).unwrap();
    assert!(
        list.contains(&id)
            && list.contains("investigate")
            && list.contains("3205080001,3205080002")
            && list.contains("active"),
        "{list}"
    );
    assert!(!list.contains(&token), "tokens are never shown again");
    assert!(run(&["keys", "revoke", &id]).status.success());
    assert!(String::from_utf8(run(&["keys", "list"]).stdout)
        .unwrap()
        .contains("revoked"));
    assert!(!run(&["keys", "revoke", "nope"]).status.success());
    assert_eq!(
        run(&["keys", "create", "--role", "boss"]).status.code(),
        Some(2)
    );
}

#[test]
fn the_check_command_verifies_a_stopped_store() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut server = start(dir.path(), |_| {});
        // Two requests: two WAL records, so damage to the first is not a torn tail.
        assert_eq!(
            post(server.addr, "/v1/events", "application/x-ndjson", &sample()).status,
            200
        );
        let more = ev(
            "2021-09-03T08:00:00+08:00",
            GATE,
            "vehicle",
            "苏E55555",
            "in",
        );
        assert_eq!(
            post(server.addr, "/v1/events", "application/x-ndjson", &more).status,
            200
        );
        server.stop();
    }
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_sightline"))
            .arg("check")
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let out = run();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("every checksum verified"));
    // Flip a byte inside the WAL's first record: damage, named.
    let wal_dir = dir.path().join("wal");
    let wal = std::fs::read_dir(&wal_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&wal).unwrap();
    bytes[12] ^= 0xFF;
    std::fs::write(&wal, &bytes).unwrap();
    let out = run();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("DAMAGED") && text.contains(".wal"), "{text}");
}

#[test]
fn the_catalog_registers_communities_and_devices_with_precise_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    let put = |target: &str, body: Value| {
        call(
            a,
            "PUT",
            target,
            "application/json",
            body.to_string().as_bytes(),
        )
    };
    let r = put(
        "/v1/communities/3205080001",
        json!({"name": "Pingjiang", "district": "Gusu"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = put(
        "/v1/communities/3205080001",
        json!({"name": "Pingjiang Road", "district": "Gusu"}),
    );
    assert_eq!(r.body["name"], "Pingjiang Road", "updates replace");
    let device =
        json!({"community": "3205080001", "device_kind": "checkpoint_camera", "direction": "in"});
    assert_eq!(
        put(&format!("/v1/devices/{GATE}"), device.clone()).status,
        200
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
    assert_eq!(
        call(
            a,
            "GET",
            "/v1/communities/3205080001",
            "application/json",
            b""
        )
        .status,
        405
    );
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
fn retention_is_read_and_changed_at_run_time_and_the_change_holds() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), |_| {});
    let a = server.addr;
    let put = |body: &str| {
        call(
            a,
            "PUT",
            "/v1/admin/retention",
            "application/json",
            body.as_bytes(),
        )
    };
    assert_eq!(
        get(a, "/v1/admin/retention").body,
        json!({"retention_days": null, "dropped_shards": []})
    );
    assert_eq!(
        post(a, "/v1/events", "application/x-ndjson", &sample()).body["stored"],
        7
    );

    for (body, field) in [
        ("{\"days\":0}", "days"),
        ("{\"days\":36501}", "days"),
        ("{\"days\":\"30\"}", "days"),
        ("{\"days\":1.5}", "days"),
        ("{}", "days"),
        ("{\"days\":30,\"keep\":true}", "keep"),
    ] {
        let r = put(body);
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.body["error"]["field"], field, "{body}: {}", r.body);
    }
    assert_eq!(put("[30]").status, 400);
    assert_eq!(put("{\"days\":").body["error"]["code"], "malformed_json");
    assert!(get(a, "/v1/admin/retention").body["retention_days"].is_null());

    // 2021 is far past a 30-day horizon: both days are dropped at once and named.
    let r = put("{\"days\":30}");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["retention_days"], 30);
    assert_eq!(
        r.body["dropped_shards"],
        json!([{"community": "3205080001", "day": "2021-09-01"},
               {"community": "3205080001", "day": "2021-09-02"}])
    );
    let traj = format!(
        "/v1/trajectory?kind=vehicle&subject={}&{RANGE}",
        enc("苏E12345")
    );
    assert_eq!(get(a, &traj).body["events"], json!([]));
    let r = post(a, "/v1/events", "application/x-ndjson", &sample());
    assert_eq!(
        (r.status, r.body["error"]["field"].as_str()),
        (422, Some("ts"))
    );
    assert_eq!(get(a, "/v1/admin/stats").body["retention_days"], 30);
    server.stop();

    // The policy is the store's: a restart without a flag keeps it.
    let mut server = start(dir.path(), |_| {});
    let a = server.addr;
    assert_eq!(get(a, "/v1/admin/retention").body["retention_days"], 30);
    let r = call(
        a,
        "PUT",
        "/v1/admin/retention",
        "application/json",
        b"{\"days\":null}",
    );
    assert_eq!(
        r.body,
        json!({"retention_days": null, "dropped_shards": []})
    );
    assert_eq!(
        post(a, "/v1/events", "application/x-ndjson", &sample()).body["stored"],
        7
    );
    server.stop();
}

/// A GET asking for NDJSON: status, content type, and the lines parsed (the body
/// arrives chunked; the chunks are joined first).
fn get_ndjson(addr: SocketAddr, target: &str) -> (u16, String, Vec<Value>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: x\r\nAccept: application/x-ndjson\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(raw[..split].to_vec())
        .unwrap()
        .to_ascii_lowercase();
    let mut rest = &raw[split + 4..];
    let body = if head.contains("transfer-encoding: chunked") {
        let mut body = Vec::new();
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap(), 16).unwrap();
            rest = &rest[eol + 2..];
            if size == 0 {
                break;
            }
            body.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        body
    } else {
        rest.to_vec()
    };
    let status = head[9..12].parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type: "))
        .unwrap_or("")
        .to_string();
    let text = String::from_utf8(body).unwrap();
    let lines = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (status, content_type, lines)
}

#[test]
fn large_answers_stream_as_ndjson_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |c| c.max_concurrent_queries = 1);
    let a = server.addr;
    // 2,500 passes of one plate over a day: three streamed chunks.
    let base = 1_630_454_400_000i64; // 2021-09-01T08:00:00+08:00
    let body: Vec<String> = (0..2500)
        .map(|i| {
            json!({"ts": base + i * 10_000, "community": "3205080001",
                   "device": if i % 2 == 0 { GATE } else { OTHER_GATE },
                   "kind": "vehicle", "subject": "苏E77777",
                   "direction": if i % 2 == 0 { "in" } else { "out" },
                   "attrs": {"lane": i % 3}})
            .to_string()
        })
        .collect();
    let r = post(a, "/v1/events", "application/x-ndjson", &body.join("\n"));
    assert_eq!(r.body["stored"], 2500);
    let traj = format!(
        "/v1/trajectory?kind=vehicle&subject={}&{RANGE}",
        enc("苏E77777")
    );

    // The same events as following JSON pages of 1,000.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let target = match &cursor {
            Some(c) => format!("{traj}&cursor={}", enc(c)),
            None => traj.clone(),
        };
        let r = get(a, &target);
        paged.extend(r.body["events"].as_array().unwrap().iter().cloned());
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(paged.len(), 2500);
    let (status, content_type, lines) = get_ndjson(a, &traj);
    assert_eq!(
        (status, content_type.as_str()),
        (200, "application/x-ndjson")
    );
    assert_eq!(lines, paged);
    // `limit` caps a stream; a cursor starts it after an event.
    let (_, _, first) = get_ndjson(a, &format!("{traj}&limit=10"));
    assert_eq!(first, paged[..10]);
    let c = format!("1630454500000.{GATE}.{}", paged[9]["id"]);
    let (_, _, rest) = get_ndjson(a, &format!("{traj}&cursor={}", enc(&c)));
    assert_eq!(rest, paged[10..]);
    // Refusals are still one JSON error with its status.
    let (status, content_type, lines) = get_ndjson(a, &format!("{traj}&limit=0"));
    assert_eq!((status, content_type.as_str()), (400, "application/json"));
    assert_eq!(lines[0]["error"]["field"], "limit");
    let (status, _, _) = get_ndjson(a, "/v1/trajectory?kind=vehicle&subject=x&from=1&to=0");
    assert_eq!(status, 400);

    // Other lists answer one item a line too.
    assert_eq!(
        post(a, "/v1/events", "application/x-ndjson", &sample()).body["stored"],
        7
    );
    let cooc = format!(
        "/v1/cooccurrence?kind=vehicle&subject={}&{RANGE}&window=60s&candidate_kind=face",
        enc("苏E12345")
    );
    let (status, content_type, lines) = get_ndjson(a, &cooc);
    assert_eq!(
        (status, content_type.as_str()),
        (200, "application/x-ndjson")
    );
    assert_eq!(lines.len(), 2);
    assert_eq!(&Value::Array(lines), &get(a, &cooc).body["candidates"]);
    // Streams are audited with the count they send.
    let (_, _, audit) = get_ndjson(a, "/v1/audit");
    let counts: Vec<&Value> = audit
        .iter()
        .filter(|e| e["endpoint"] == "/v1/trajectory" && e["status"] == 200)
        .map(|e| &e["results"])
        .collect();
    assert_eq!(
        counts[3..6],
        [&json!(2500), &json!(10), &json!(2490)],
        "{audit:?}"
    );
    let (_, _, one) = get_ndjson(a, &format!("/v1/events/{}", paged[0]["id"]));
    assert_eq!(one, [paged[0].clone()]);

    // A client that goes away mid-stream frees its query slot (there is one here).
    {
        let mut s = TcpStream::connect(a).unwrap();
        write!(
            s,
            "GET {traj} HTTP/1.1\r\nHost: x\r\nAccept: application/x-ndjson\r\n\r\n"
        )
        .unwrap();
        let mut some = [0u8; 256];
        s.read_exact(&mut some).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = get(a, &format!("{traj}&limit=1"));
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 429, "{}", r.body);
        assert!(Instant::now() < deadline, "the slot was never freed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_gen_command_writes_ndjson_gat1400_and_the_planted_truth() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args([
            "gen",
            "--communities",
            "3",
            "--days",
            "2",
            "--households",
            "50",
            "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    let n: usize = said.split(' ').next().unwrap().parse().unwrap();
    let mut lines = 0;
    for d in 0..2 {
        let text =
            std::fs::read_to_string(dir.path().join(format!("events/day-{d:03}.ndjson"))).unwrap();
        for l in text.lines() {
            let v: Value = serde_json::from_str(l).unwrap();
            assert!(
                v["ts"].is_i64() && v["device"].as_str().unwrap().len() == 20,
                "{l}"
            );
            lines += 1;
        }
        let v: Value = serde_json::from_str(
            &std::fs::read_to_string(
                dir.path()
                    .join(format!("gat1400/day-{d:03}-motorvehicles.json")),
            )
            .unwrap(),
        )
        .unwrap();
        assert!(!v["MotorVehicleListObject"]["MotorVehicleObject"]
            .as_array()
            .unwrap()
            .is_empty());
    }
    assert_eq!(lines, n);
    let truth: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("truth.json")).unwrap())
            .unwrap();
    assert_eq!(truth["companions"].as_array().unwrap().len(), 2);
    assert_eq!(truth["pairs"].as_array().unwrap().len(), 3 * 30);

    // The NDJSON files are ingest bodies as they are.
    let server = start(&dir.path().join("store"), |_| {});
    let body = std::fs::read_to_string(dir.path().join("events/day-000.ndjson")).unwrap();
    let r = post(server.addr, "/v1/events", "application/x-ndjson", &body);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["rejected"], 0, "{}", r.body);

    let bad = Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args(["gen", "--format", "csv", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

/// A GA/T 1400 request: status, headers (lower case), JSON body.
fn viid(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &str,
) -> (u16, String, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/VIID+JSON\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (
        status,
        head.to_ascii_lowercase(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

fn md5_hex(s: &str) -> String {
    sightline_server::gat1400::md5_hex(s)
}

/// The digest handshake a device performs: ask, get a nonce, answer it.
fn register(addr: SocketAddr, path: &str, id: &str, password: &str) -> (u16, Value) {
    let body = format!("{{\"RegisterObject\":{{\"DeviceID\":\"{id}\"}}}}");
    let (status, head, _) = viid(addr, "POST", path, &[], &body);
    assert_eq!(status, 401, "{head}");
    let challenge = head
        .lines()
        .find_map(|l| l.strip_prefix("www-authenticate: "))
        .expect("a digest challenge");
    let nonce = challenge
        .split("nonce=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert!(challenge.contains("qop=\"auth\""), "{challenge}");
    let ha1 = md5_hex(&format!("{id}:Sightline:{password}"));
    let ha2 = md5_hex(&format!("POST:{path}"));
    let response = md5_hex(&format!("{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}"));
    let auth = format!(
        "Digest username=\"{id}\", realm=\"Sightline\", nonce=\"{nonce}\", uri=\"{path}\", \
         qop=auth, nc=00000001, cnonce=\"c0ffee\", response=\"{response}\", algorithm=MD5"
    );
    let (status, _, body) = viid(addr, "POST", path, &[("Authorization", auth)], &body);
    (status, body)
}

#[test]
fn gat1400_devices_register_by_digest_and_push_vehicles_and_faces() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    let platform = "32050800005030000001";
    assert_eq!(
        call(
            a,
            "PUT",
            "/v1/communities/3205080001",
            "application/json",
            b"{\"name\":\"North\"}"
        )
        .status,
        200
    );
    for (code, kind, direction, password) in [
        (GATE, "checkpoint_camera", "in", Some("gate-secret")),
        (OTHER_GATE, "checkpoint_camera", "out", None),
        ("32050801011320000003", "face_camera", "in", None),
        (platform, "platform", "unknown", Some("platform-secret")),
    ] {
        let mut body = json!({"community": "3205080001", "kind": kind, "direction": direction});
        if let Some(p) = password {
            body["gat1400"] = json!({"password": p});
        }
        let r = call(
            a,
            "PUT",
            &format!("/v1/devices/{code}"),
            "application/json",
            body.to_string().as_bytes(),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["gat1400"], password.is_some());
        assert!(
            !r.body.to_string().contains("secret"),
            "passwords are not echoed"
        );
    }
    let r = call(
        a,
        "PUT",
        &format!("/v1/devices/{GATE}"),
        "application/json",
        br#"{"community":"3205080001","kind":"checkpoint_camera","gat1400":{"password":""}}"#,
    );
    assert_eq!(
        (r.status, r.body["error"]["field"].as_str()),
        (400, Some("gat1400.password"))
    );

    // Wrong password, unknown device: still 401 with a fresh challenge.
    assert_eq!(
        register(a, "/VIID/System/Register", platform, "wrong").0,
        401
    );
    assert_eq!(register(a, "/VIID/System/Register", OTHER_GATE, "x").0, 401);
    // Uploads before registering are refused.
    let ident = |id: &str| vec![("User-Identify", id.to_string())];
    let (status, _, _) = viid(a, "POST", "/VIID/MotorVehicles", &ident(platform), "{}");
    assert_eq!(status, 401);

    let (status, body) = register(a, "/VIID/System/Register", platform, "platform-secret");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ResponseStatusObject"]["StatusCode"], 0);
    assert_eq!(body["ResponseStatusObject"]["Id"], platform);
    let (status, _, body) = viid(
        a,
        "POST",
        "/VIID/System/Keepalive",
        &ident(platform),
        &format!("{{\"KeepaliveObject\":{{\"DeviceID\":\"{platform}\"}}}}"),
    );
    assert_eq!(
        (status, body["ResponseStatusObject"]["StatusCode"].as_i64()),
        (200, Some(0))
    );
    let (status, head, body) = viid(a, "GET", "/VIID/System/Time", &[], "");
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: application/viid+json"),
        "{head}"
    );
    assert_eq!(
        body["SystemTimeObject"]["LocalTime"]
            .as_str()
            .unwrap()
            .len(),
        14
    );

    // A recorded-style upload: two good vehicles (one without milliseconds, the
    // reliability as a number), one with an unregistered device, one without a plate.
    let upload = json!({"MotorVehicleListObject": {"MotorVehicleObject": [
        {"MotorVehicleID": format!("{GATE}0220210901080000{:012}", 1), "DeviceID": GATE,
         "TollgateID": GATE, "PassTime": "20210901080000123", "PlateNo": "苏E12345",
         "PlateColor": "5", "VehicleColor": "A", "PlateReliability": "96",
         "StorageUrl1": "http://img/1.jpg",
         "SubImageList": {"SubImageInfoObject": [
            {"ImageID": "x1", "Type": "01", "StoragePath": "http://img/1-scene.jpg"},
            {"ImageID": "x2", "Type": "02", "StoragePath": "http://img/1-plate.jpg"}]}},
        {"MotorVehicleID": format!("{OTHER_GATE}0220210901180000{:012}", 2),
         "DeviceID": OTHER_GATE, "PassTime": "20210901180000", "PlateNo": "苏E12345",
         "PlateReliability": 88},
        {"MotorVehicleID": "320508019999999999990220210901080000000000000003",
         "DeviceID": "32050801999999999999", "PassTime": "20210901080000", "PlateNo": "苏E99999"},
        {"MotorVehicleID": format!("{GATE}0220210901090000{:012}", 4), "DeviceID": GATE,
         "PassTime": "20210901090000"},
    ]}});
    let (status, _, body) = viid(
        a,
        "POST",
        "/VIID/MotorVehicles",
        &ident(platform),
        &upload.to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let statuses = body["ResponseStatusListObject"]["ResponseStatusObject"]
        .as_array()
        .unwrap();
    let codes: Vec<i64> = statuses
        .iter()
        .map(|s| s["StatusCode"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, [0, 0, 8, 8]);
    assert!(statuses[2]["StatusString"]
        .as_str()
        .unwrap()
        .contains("not registered"));
    assert!(statuses[3]["StatusString"]
        .as_str()
        .unwrap()
        .contains("PlateNo"));
    assert_eq!(statuses[0]["Id"].as_str().unwrap().len(), 48);
    // The same upload again is idempotent by MotorVehicleID: acknowledged, not stored twice.
    let (_, _, again) = viid(
        a,
        "POST",
        "/VIID/MotorVehicles",
        &ident(platform),
        &upload.to_string(),
    );
    assert_eq!(
        again["ResponseStatusListObject"]["ResponseStatusObject"][0]["StatusCode"],
        0
    );

    let traj = get(
        a,
        &format!(
            "/v1/trajectory?kind=vehicle&subject={}&{RANGE}",
            enc("苏E12345")
        ),
    );
    let events = traj.body["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{}", traj.body);
    assert_eq!(events[0]["ts"], "2021-09-01T08:00:00.123+08:00");
    assert_eq!(
        events[0]["direction"], "in",
        "the gate's configured direction"
    );
    assert_eq!(events[1]["direction"], "out");
    assert_eq!(events[0]["attrs"]["plate_color"], "5");
    assert_eq!(events[0]["attrs"]["plate_reliability"], 96);
    assert_eq!(events[1]["attrs"]["plate_reliability"], 88);
    assert_eq!(
        events[0]["attrs"]["scene_image_url"],
        "http://img/1-scene.jpg"
    );
    assert_eq!(events[0]["attrs"]["source_id"].as_str().unwrap().len(), 48);

    // Faces: the archive id is the subject when given, the face id otherwise.
    let faces = json!({"FaceListObject": {"FaceObject": [
        {"FaceID": "320508010113200000030620210901080010000000000001",
         "DeviceID": "32050801011320000003", "FaceAppearTime": "20210901080010", "ArchiveID": "A77"},
        {"FaceID": "320508010113200000030620210901080020000000000002",
         "DeviceID": "32050801011320000003", "ShotTime": "20210901080020"},
        {"FaceID": "320508010113200000030620210901080030000000000003",
         "DeviceID": "32050801011320000003", "ShotTime": "yesterday"},
    ]}});
    let (_, _, body) = viid(
        a,
        "POST",
        "/VIID/Faces",
        &ident(platform),
        &faces.to_string(),
    );
    let codes: Vec<i64> = body["ResponseStatusListObject"]["ResponseStatusObject"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["StatusCode"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, [0, 0, 8]);
    for subject in ["A77", "320508010113200000030620210901080020000000000002"] {
        let r = get(
            a,
            &format!("/v1/trajectory?kind=face&subject={subject}&{RANGE}"),
        );
        assert_eq!(
            r.body["events"].as_array().unwrap().len(),
            1,
            "{subject}: {}",
            r.body
        );
    }

    // Not JSON: one status 7, HTTP 200 as devices expect.
    let (status, _, body) = viid(a, "POST", "/VIID/Faces", &ident(platform), "{not json");
    assert_eq!(status, 200);
    assert_eq!(
        body["ResponseStatusListObject"]["ResponseStatusObject"][0]["StatusCode"],
        7
    );

    // Unregistering ends the session.
    let (status, _) = register(a, "/VIID/System/UnRegister", platform, "platform-secret");
    assert_eq!(status, 200);
    let (status, _, _) = viid(
        a,
        "POST",
        "/VIID/Faces",
        &ident(platform),
        &faces.to_string(),
    );
    assert_eq!(status, 401);
    // A device registers for itself too.
    assert_eq!(
        register(a, "/VIID/System/Register", GATE, "gate-secret").0,
        200
    );
}

/// Reads Server-Sent Events from an open stream until `n` events arrived.
fn sse_events(reader: &mut BufReader<TcpStream>, n: usize) -> Vec<(u64, Value)> {
    let mut out = Vec::new();
    let mut id = None;
    let mut line = String::new();
    while out.len() < n {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if let Some(v) = l.strip_prefix("id: ") {
            id = Some(v.parse().unwrap());
        } else if let Some(v) = l.strip_prefix("data: ") {
            out.push((id.take().unwrap(), serde_json::from_str(v).unwrap()));
        }
    }
    out
}

#[test]
fn the_feed_pages_long_polls_and_streams_events_in_commit_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), |_| {});
    let a = server.addr;
    assert_eq!(
        post(a, "/v1/events", "application/x-ndjson", &sample()).body["stored"],
        7
    );
    let all = get(a, "/v1/feed?after=0");
    assert_eq!(all.status, 200, "{}", all.body);
    let ids: Vec<u64> = all.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 7);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "commit order: {ids:?}");
    assert_eq!(all.body["next_after"], ids[6]);
    assert_eq!(all.body["events"][0]["subject"], "苏E12345");

    // Pages of three, following next_after: the same events, none twice.
    let (mut after, mut paged) = (0u64, Vec::new());
    loop {
        let r = get(a, &format!("/v1/feed?after={after}&limit=3"));
        let page = r.body["events"].as_array().unwrap().clone();
        after = r.body["next_after"].as_u64().unwrap();
        if page.is_empty() {
            break;
        }
        paged.extend(page.iter().map(|e| e["id"].as_u64().unwrap()));
    }
    assert_eq!(paged, ids);
    let faces = get(a, "/v1/feed?after=0&kind=face");
    assert!(faces.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["kind"] == "face"));
    assert_eq!(faces.body["events"].as_array().unwrap().len(), 4);
    for bad in ["after=x", "wait=2m", "limit=0", "kind=car", "colour=red"] {
        assert_eq!(get(a, &format!("/v1/feed?{bad}")).status, 400, "{bad}");
    }

    // Nothing new: a long poll waits, then answers empty with the same cursor.
    let t = Instant::now();
    let r = get(a, &format!("/v1/feed?after={}&wait=300ms", ids[6]));
    assert!(t.elapsed() >= Duration::from_millis(250));
    assert_eq!(r.body["events"], json!([]));
    assert_eq!(r.body["next_after"], ids[6]);
    // Something new while waiting: answered as soon as it is committed.
    let late = ev("2021-09-03T09:00:00+08:00", GATE, "face", "F777", "in");
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        post(a, "/v1/events", "application/x-ndjson", &late).body["ids"][0]
            .as_u64()
            .unwrap()
    });
    let t = Instant::now();
    let r = get(a, &format!("/v1/feed?after={}&wait=20s", ids[6]));
    let new_id = writer.join().unwrap();
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(r.body["events"][0]["id"], new_id);
    assert_eq!(r.body["events"][0]["subject"], "F777");

    // Server-Sent Events: what is there, then what comes, then a resume by id.
    let mut s = TcpStream::connect(a).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET /v1/feed?after=0 HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(s);
    let mut head = String::new();
    while !head.ends_with("\r\n\r\n") {
        reader.read_line(&mut head).unwrap();
    }
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{head}"
    );
    let first = sse_events(&mut reader, 8);
    assert_eq!(
        first.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        [ids.clone(), vec![new_id]].concat()
    );
    let more = ev(
        "2021-09-03T10:00:00+08:00",
        GATE,
        "vehicle",
        "苏E88888",
        "out",
    );
    let id = post(a, "/v1/events", "application/x-ndjson", &more).body["ids"][0]
        .as_u64()
        .unwrap();
    let next = sse_events(&mut reader, 1);
    assert_eq!(next[0].0, id);
    assert_eq!(next[0].1["subject"], "苏E88888");
    drop(reader);
    let mut s = TcpStream::connect(a).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET /v1/feed HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nLast-Event-ID: {}\r\n\r\n", ids[5]).unwrap();
    let resumed = sse_events(&mut BufReader::new(s), 3);
    assert_eq!(
        resumed.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        [ids[6], new_id, id]
    );

    // The cursor outlives a restart: ids are the store's.
    server.stop();
    let server = start(dir.path(), |_| {});
    let r = get(server.addr, &format!("/v1/feed?after={}", ids[6]));
    let after_restart: Vec<u64> = r.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_u64().unwrap())
        .collect();
    assert_eq!(after_restart, [new_id, id]);
}

/// A downstream receiver on 127.0.0.1: records every JSON body POSTed to it and
/// answers 200 while `up`, 503 otherwise.
struct Receiver {
    addr: SocketAddr,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    attempts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Milliseconds to wait before answering (a slow receiver).
    delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Receiver {
    fn start() -> Receiver {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let r = Receiver {
            addr: listener.local_addr().unwrap(),
            up: Default::default(),
            bodies: Default::default(),
            attempts: Default::default(),
            delay_ms: Default::default(),
        };
        let (up, bodies, attempts) = (r.up.clone(), r.bodies.clone(), r.attempts.clone());
        let delay = r.delay_ms.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut len = 0usize;
                let mut line = String::new();
                // A sender killed mid-request leaves a head cut short: not a delivery.
                let head_ended = loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break false;
                    }
                    if line == "\r\n" {
                        break true;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                };
                if !head_ended {
                    continue;
                }
                let mut body = vec![0u8; len];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                attempts.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(delay.load(Ordering::SeqCst)));
                let ok = up.load(Ordering::SeqCst);
                if ok {
                    bodies
                        .lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap());
                }
                let status = if ok {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                };
                let mut w = stream;
                let _ = write!(
                    w,
                    "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        r
    }

    /// Event ids received, in the order they came.
    fn ids(&self) -> Vec<u64> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| b["events"].as_array().cloned().unwrap_or_default())
            .map(|e| e["id"].as_u64().unwrap())
            .collect()
    }

    fn wait_for(&self, n: usize, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.ids().len() < n {
            assert!(Instant::now() < deadline, "{what}: got {:?}", self.ids());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn subscriptions_deliver_at_least_once_in_order_across_outages_and_restarts() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start();
    let mut server = start(dir.path(), |_| {});
    let a = server.addr;
    let create = |a: SocketAddr, body: Value| {
        call(
            a,
            "POST",
            "/v1/subscriptions",
            "application/json",
            body.to_string().as_bytes(),
        )
    };
    for (body, field) in [
        (json!({"url": "https://x/hook"}), "url"),
        (json!({"url": "not a url"}), "url"),
        (
            json!({"url": format!("http://{}/h", rx.addr), "format": "xml"}),
            "format",
        ),
        (
            json!({"url": format!("http://{}/h", rx.addr), "kinds": ["car"]}),
            "kinds",
        ),
        (
            json!({"url": format!("http://{}/h", rx.addr), "batch": 0}),
            "batch",
        ),
    ] {
        let r = create(a, body);
        assert_eq!(
            (r.status, r.body["error"]["field"].as_str()),
            (400, Some(field)),
            "{}",
            r.body
        );
    }
    let r = create(
        a,
        json!({"url": format!("http://{}/hook", rx.addr), "kinds": ["vehicle"], "batch": 2, "from": 0}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();

    // The receiver is down: attempts fail, the status says so, nothing is lost.
    assert_eq!(
        post(a, "/v1/events", "application/x-ndjson", &sample()).body["stored"],
        7
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while rx.attempts.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "no delivery attempt");
        std::thread::sleep(Duration::from_millis(20));
    }
    let list = get(a, "/v1/subscriptions").body;
    let st = &list["subscriptions"][0]["status"];
    assert!(st["failures_in_a_row"].as_u64().unwrap() >= 1, "{list}");
    assert!(st["last_error"].as_str().unwrap().contains("503"), "{list}");
    assert!(st["lag"].as_u64().unwrap() > 0, "{list}");

    // Back up: everything arrives, in order, once, only vehicles, two per delivery.
    rx.up.store(true, Ordering::SeqCst);
    rx.wait_for(3, "the three vehicle events");
    let ids = rx.ids();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert!(rx
        .bodies
        .lock()
        .unwrap()
        .iter()
        .all(|b| b["events"].as_array().unwrap().len() <= 2));
    assert!(rx
        .bodies
        .lock()
        .unwrap()
        .iter()
        .flat_map(|b| b["events"].as_array().unwrap().clone())
        .all(|e| e["kind"] == "vehicle"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(a, "/v1/subscriptions").body["subscriptions"][0]["status"]["failures_in_a_row"] != 0 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }

    // A restart resumes from the durable cursor: nothing again, the new ones after.
    server.stop();
    let mut server = start(dir.path(), |_| {});
    let a = server.addr;
    let more = [
        ev(
            "2021-09-04T08:00:00+08:00",
            GATE,
            "vehicle",
            "苏E70001",
            "in",
        ),
        ev("2021-09-04T08:00:05+08:00", GATE, "face", "F70001", "in"),
        ev(
            "2021-09-04T08:01:00+08:00",
            GATE,
            "vehicle",
            "苏E70002",
            "in",
        ),
    ]
    .join("\n");
    assert_eq!(
        post(a, "/v1/events", "application/x-ndjson", &more).body["stored"],
        3
    );
    rx.wait_for(5, "the two new vehicle events");
    std::thread::sleep(Duration::from_millis(300));
    let ids = rx.ids();
    assert_eq!(ids.len(), 5, "nothing delivered twice: {ids:?}");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    // The GA/T 1400 format, from the start.
    let r = create(
        a,
        json!({"url": format!("http://{}/viid", rx.addr), "format": "gat1400", "from": 0, "kinds": ["vehicle"]}),
    );
    assert_eq!(r.status, 201);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = rx.bodies.lock().unwrap().iter().any(|b| {
            b["SubscribeNotificationListObject"]["SubscribeNotificationObject"][0]
                ["MotorVehicleObjectList"]["MotorVehicleObject"]
                .as_array()
                .is_some_and(|v| {
                    v.iter().any(|o| {
                        o["PlateNo"] == "苏E12345" && o["PassTime"].as_str().unwrap().len() == 14
                    })
                })
        });
        if found {
            break;
        }
        assert!(Instant::now() < deadline, "no GA/T 1400 notification");
        std::thread::sleep(Duration::from_millis(20));
    }

    // Deleted: no more deliveries for it.
    let r = call(
        a,
        "DELETE",
        &format!("/v1/subscriptions/{id}"),
        "application/json",
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        call(
            a,
            "DELETE",
            &format!("/v1/subscriptions/{id}"),
            "application/json",
            b""
        )
        .status,
        404
    );
    let before = rx.ids().len();
    let last = ev(
        "2021-09-04T09:00:00+08:00",
        GATE,
        "vehicle",
        "苏E70003",
        "in",
    );
    post(a, "/v1/events", "application/x-ndjson", &last);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rx.ids().len(), before);
    assert_eq!(
        get(a, "/v1/subscriptions").body["subscriptions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    server.stop();
}

#[test]
fn watchlists_raise_alerts_at_ingest_for_the_feed_and_subscriptions() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start();
    rx.up.store(true, Ordering::SeqCst);
    let mut server = start(dir.path(), |_| {});
    let a = server.addr;
    let put = |a: SocketAddr, path: &str, body: Value| {
        call(
            a,
            "POST",
            path,
            "application/json",
            body.to_string().as_bytes(),
        )
    };
    for (body, field) in [
        (json!({"entries": [{"subject": "苏E1"}]}), "reason"),
        (json!({"reason": "r", "entries": []}), "entries"),
        (
            json!({"reason": "r", "entries": [{"subject": "a", "pattern": "b*"}]}),
            "entries[0].subject",
        ),
        (
            json!({"reason": "r", "entries": [{"pattern": "**"}]}),
            "entries[0].pattern",
        ),
        (
            json!({"reason": "r", "entries": [{"fuzzy": "苏E1", "distance": 3}]}),
            "entries[0].distance",
        ),
        (
            json!({"reason": "r", "entries": [{"kind": "car", "subject": "x"}]}),
            "entries[0].kind",
        ),
    ] {
        let r = put(a, "/v1/watchlists", body);
        assert_eq!(
            (r.status, r.body["error"]["field"].as_str()),
            (400, Some(field)),
            "{}",
            r.body
        );
    }
    let r = put(
        a,
        "/v1/watchlists",
        json!({"name": "case 7", "reason": "stolen vehicles",
        "expires": "2099-01-01T00:00:00+08:00", "entries": [
            {"kind": "vehicle", "subject": "苏e·12345"},
            {"kind": "vehicle", "pattern": "苏E9*"},
            {"kind": "vehicle", "fuzzy": "苏E7777B", "distance": 0.5}]}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let watch_id = r.body["id"].as_str().unwrap().to_string();
    let r = put(
        a,
        "/v1/watchlists",
        json!({"reason": "over", "expires": 1, "entries": [{"subject": "苏E55555"}]}),
    );
    assert_eq!(r.status, 201);
    let r = put(
        a,
        "/v1/subscriptions",
        json!({"url": format!("http://{}/alerts", rx.addr), "alerts": true}),
    );
    assert_eq!(r.status, 201, "{}", r.body);

    // A reader waits for alerts while the events arrive.
    let reader = std::thread::spawn(move || {
        let t = Instant::now();
        (get(a, "/v1/alerts?after=0&wait=20s"), t)
    });
    std::thread::sleep(Duration::from_millis(200));
    let events = [
        ev(
            "2021-09-05T08:00:00+08:00",
            GATE,
            "vehicle",
            "苏E12345",
            "in",
        ),
        ev(
            "2021-09-05T08:00:01+08:00",
            GATE,
            "vehicle",
            "苏E99999",
            "in",
        ),
        ev(
            "2021-09-05T08:00:02+08:00",
            GATE,
            "vehicle",
            "苏E77778",
            "in",
        ),
        ev(
            "2021-09-05T08:00:03+08:00",
            GATE,
            "vehicle",
            "苏E55555",
            "in",
        ),
        ev("2021-09-05T08:00:04+08:00", GATE, "face", "苏E12345", "in"),
    ]
    .join("\n");
    let r = post(a, "/v1/events", "application/x-ndjson", &events);
    let acked = Instant::now();
    assert_eq!(
        (r.body["stored"].as_u64(), r.body["alerts"].as_u64()),
        (Some(5), Some(3)),
        "{}",
        r.body
    );
    let (alerts, _) = reader.join().unwrap();
    assert!(acked.elapsed() < Duration::from_secs(5));
    let got = get(a, "/v1/alerts?after=0").body;
    let list = got["alerts"].as_array().unwrap();
    let subjects: Vec<&str> = list
        .iter()
        .map(|x| x["event"]["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["苏E12345", "苏E99999", "苏E77778"]);
    assert!(list
        .iter()
        .all(|x| x["reason"] == "stolen vehicles" && x["watchlist"] == watch_id.as_str()));
    assert_eq!(
        list.iter()
            .map(|x| x["id"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(list[0]["event_id"], r.body["ids"][0]);
    assert!(
        !alerts.body["alerts"].as_array().unwrap().is_empty(),
        "the long poll was answered: {}",
        alerts.body
    );
    assert_eq!(got["next_after"], 3);

    // Subscribed alerts arrive too.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n: usize = rx
            .bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| b["alerts"].as_array().map_or(0, |a| a.len()))
            .sum();
        if n == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "alerts not delivered: {n}");
        std::thread::sleep(Duration::from_millis(20));
    }

    // Deleted: no more alerts; the log survives a restart and goes on numbering.
    let r = call(
        a,
        "DELETE",
        &format!("/v1/watchlists/{watch_id}"),
        "application/json",
        b"",
    );
    assert_eq!(r.status, 200);
    let again = ev(
        "2021-09-05T09:00:00+08:00",
        GATE,
        "vehicle",
        "苏E12345",
        "out",
    );
    assert_eq!(
        post(a, "/v1/events", "application/x-ndjson", &again).body["alerts"],
        0
    );
    server.stop();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    assert_eq!(
        get(a, "/v1/alerts?after=0").body["alerts"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let r = put(
        a,
        "/v1/watchlists",
        json!({"reason": "again", "entries": [{"subject": "苏E12345"}]}),
    );
    assert_eq!(r.status, 201);
    assert_eq!(
        post(a, "/v1/events", "application/x-ndjson", &again).body["alerts"],
        1
    );
    assert_eq!(get(a, "/v1/alerts?after=3").body["alerts"][0]["id"], 4);
    assert_eq!(
        get(a, "/v1/watchlists").body["watchlists"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn a_subscription_killed_mid_delivery_resumes_without_losing_or_reordering() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start();
    rx.up.store(true, Ordering::SeqCst);
    rx.delay_ms.store(40, Ordering::SeqCst);
    let (mut child, a) = spawn_server(dir.path());
    let r = call(
        a,
        "POST",
        "/v1/subscriptions",
        "application/json",
        json!({"url": format!("http://{}/h", rx.addr), "batch": 5, "from": 0})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let body: Vec<String> = (0..200)
        .map(|i| {
            json!({"ts": 1_630_454_400_000i64 + i * 1000, "community": "3205080001",
                   "device": GATE, "kind": "vehicle", "subject": format!("苏E{:05}", i)})
            .to_string()
        })
        .collect();
    let r = post(a, "/v1/events", "application/x-ndjson", &body.join("\n"));
    let stored: Vec<u64> = r.body["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_u64().unwrap())
        .collect();
    assert_eq!(stored.len(), 200);
    // Kill it while deliveries are under way (each takes 40 ms at the receiver).
    rx.wait_for(30, "the first deliveries");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let delivered_before = rx.ids().len();
    assert!(delivered_before < 200, "killed too late to test anything");
    let (mut child, _) = spawn_server(dir.path());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut seen = rx.ids();
        seen.sort_unstable();
        seen.dedup();
        if seen == stored {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not everything arrived: {} of 200",
            seen.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // At least once, in order: first arrivals are strictly increasing; repeats are only
    // what was resent after the kill (the last two batches of five at most: a cursor
    // write overlaps the next delivery).
    let ids = rx.ids();
    let mut first = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for i in &ids {
        if seen.insert(*i) {
            first.push(*i);
        }
    }
    assert!(first.windows(2).all(|w| w[0] < w[1]), "{first:?}");
    assert!(
        ids.len() - first.len() <= 10,
        "{} redelivered",
        ids.len() - first.len()
    );
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait().unwrap();
}

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
    let r = post(a, "/v1/events", "application/x-ndjson", &sample());
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn every_documented_route_refuses_missing_wrong_revoked_and_underpowered_keys() {
    use sightline_server::auth::{self, Role};
    let dir = tempfile::tempdir().unwrap();
    let (ingest, investigate, revoked) = {
        let store = sightline_storage::Store::open(dir.path(), Default::default()).unwrap();
        let mk = |role| auth::create(&store, "t", role, None, 0).unwrap();
        let revoked = mk(Role::Admin);
        assert!(auth::revoke(&store, &revoked.0.id, 1).unwrap());
        (mk(Role::Ingest).1, mk(Role::Investigate).1, revoked.1)
    };
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    let doc = get(a, "/v1/openapi.json").body;
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            if path == "/health" || path == "/v1/openapi.json" {
                continue;
            }
            let target = path.replace("{code}", "3205080001").replace("{id}", "1");
            let method = method.to_ascii_uppercase();
            let body = op["requestBody"]["content"]["application/json"]["example"].to_string();
            let needs = |ingest_ok: bool, investigate_ok: bool| (ingest_ok, investigate_ok);
            // Which roles may call it: ingest only POST /v1/events; admin-only routes.
            let (ingest_ok, investigate_ok) = match (method.as_str(), path.as_str()) {
                ("POST", "/v1/events") => needs(true, false),
                (_, "/metrics" | "/v1/audit" | "/v1/admin/stats" | "/v1/admin/retention")
                | (_, "/v1/subscriptions" | "/v1/subscriptions/{id}")
                | ("PUT", _) => needs(false, false),
                _ => needs(false, true),
            };
            for (token, want) in [
                (None, 401),
                (Some("sl_nope_nope"), 401),
                (Some(revoked.as_str()), 401),
                (Some(ingest.as_str()), if ingest_ok { 0 } else { 403 }),
                (
                    Some(investigate.as_str()),
                    if investigate_ok { 0 } else { 403 },
                ),
            ] {
                let r = call_as(a, token, &method, &target, &body);
                match want {
                    0 => assert!(
                        r.status != 401 && r.status != 403,
                        "{method} {target} with {token:?}: {}",
                        r.status
                    ),
                    w => assert_eq!(r.status, w, "{method} {target} with {token:?}: {}", r.body),
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 25, "{checked} operations checked");
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

#[test]
fn a_disk_failure_is_503_naming_the_file_writes_stay_refused_and_a_restart_recovers() {
    use sightline_storage::io::{Fault, FaultKind, FaultyIo, Op, EIO, ENOSPC};
    let dir = tempfile::tempdir().unwrap();
    let io = FaultyIo::new();
    let batch = |tag: &str| -> String {
        (0..5)
            .map(|i| {
                ev(
                    &format!("2021-09-01T08:00:0{i}+08:00"),
                    GATE,
                    "face",
                    &format!("{tag}{i}"),
                    "in",
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    // How many of a batch's five faces have their event stored.
    let faces = |addr, tag: &str| -> usize {
        (0..5)
            .map(|i| {
                let r = get(
                    addr,
                    &format!("/v1/trajectory?kind=face&subject={tag}{i}&{RANGE}"),
                );
                assert_eq!(r.status, 200, "{}", r.body);
                r.body["events"].as_array().unwrap().len()
            })
            .sum()
    };
    for (n, (op, file, kind)) in [
        (Op::Sync, ".wal", FaultKind::Errno(EIO)),
        (Op::Write, "dict.log", FaultKind::Errno(ENOSPC)),
        (Op::Write, ".wal", FaultKind::ShortWrite),
    ]
    .into_iter()
    .enumerate()
    {
        let case = format!("{op:?} {kind:?} on {file}");
        let mut server = start(dir.path(), |c| c.store.io = io.clone());
        let a = server.addr;
        let ok = post(
            a,
            "/v1/events",
            "application/x-ndjson",
            &batch(&format!("OK{n}x")),
        );
        assert_eq!(ok.status, 200, "{case}: {}", ok.body);
        assert_eq!(get(a, "/health").status, 200);

        io.inject(Fault::new(op, file, kind).once());
        let r = post(
            a,
            "/v1/events",
            "application/x-ndjson",
            &batch(&format!("LOST{n}x")),
        );
        assert_eq!(r.status, 503, "{case}: {}", r.body);
        assert_eq!(
            r.body["error"]["code"], "storage_unavailable",
            "{case}: {}",
            r.body
        );
        let msg = r.body["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains(file) && msg.contains("os error"),
            "{case}: {msg}"
        );
        // The fault is spent, but writes stay refused, saying why and what to do.
        let r = post(
            a,
            "/v1/events",
            "application/x-ndjson",
            &batch(&format!("AFTER{n}x")),
        );
        assert_eq!(r.status, 503, "{case}: {}", r.body);
        assert_eq!(
            r.body["error"]["code"], "store_failed",
            "{case}: {}",
            r.body
        );
        assert!(r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("restart"));
        let h = get(a, "/health");
        assert_eq!(h.status, 503, "{case}: {}", h.body);
        assert_eq!(h.body["status"], "failed");
        // Queries still answer, with what was acknowledged only.
        assert_eq!(faces(a, &format!("OK{n}x")), 5, "{case}");
        assert_eq!(faces(a, &format!("LOST{n}x")), 0, "{case}");
        server.stop();

        // The disk works again; a restart recovers and takes writes.
        io.clear();
        let server = start(dir.path(), |c| c.store.io = io.clone());
        let a = server.addr;
        assert_eq!(get(a, "/health").status, 200, "{case}");
        let r = post(
            a,
            "/v1/events",
            "application/x-ndjson",
            &batch(&format!("NEW{n}x")),
        );
        assert_eq!(r.status, 200, "{case}: {}", r.body);
        for tag in ["OK", "NEW"] {
            assert_eq!(faces(a, &format!("{tag}{n}x")), 5, "{case}: {tag}");
        }
        for tag in ["LOST", "AFTER"] {
            assert_eq!(faces(a, &format!("{tag}{n}x")), 0, "{case}: {tag}");
        }
    }
}
