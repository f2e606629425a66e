//! The queries over HTTP: every query after an ingest, the pattern queries, refused
//! parameters and limits, large answers streamed as NDJSON.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{
    enc, ev, get, post, sample, send, start, wait_until, GATE, OTHER_GATE, RANGE,
};

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
    let search = || {
        let r = get(
            a,
            &format!("/v1/search?q={}&kind=vehicle&mode=fuzzy", enc("苏E1234S")),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        r
    };
    wait_until(Duration::from_secs(30), || {
        !search().body["subjects"].as_array().unwrap().is_empty()
    });
    let r = search();
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
            format!("/v1/trajectory?kind=vehicle&subject={subject}&{RANGE}&fields=ts,colour"),
            "fields",
        ),
        (
            format!("/v1/trajectory?kind=vehicle&subject={subject}&{RANGE}&fields="),
            "fields",
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
        // Regex syntax no kind holds (`a.*b` alone is the plate wildcard `A*B`).
        ("/v1/search?q=a(.*)b&mode=wildcard".to_string(), "q"),
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

/// A GET asking for NDJSON: status, content type, and the lines parsed (the body
/// arrives chunked; the chunks are joined first).
fn get_ndjson(addr: SocketAddr, target: &str) -> (u16, String, Vec<Value>) {
    let (status, content_type, text) = get_text(addr, target, "application/x-ndjson");
    let lines = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (status, content_type, lines)
}

/// A GET accepting `accept`: status, content type, and the body as text (a chunked
/// body's chunks joined).
fn get_text(addr: SocketAddr, target: &str, accept: &str) -> (u16, String, String) {
    let answer = send(
        addr,
        format!(
            "GET {target} HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    let head = answer.head.to_ascii_lowercase();
    let mut rest = &answer.body[..];
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
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type: "))
        .unwrap_or("")
        .to_string();
    (
        answer.status,
        content_type,
        String::from_utf8(body).unwrap(),
    )
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
    // `fields`: only those members of each event, page and stream alike (their order,
    // the event's whatever the order asked, is held by `http::out`'s proptest); the
    // stays are the page's without it.
    let every = "id,ts,community,device,kind,subject,direction,attrs,images,object";
    let whole = get(a, &format!("{traj}&limit=2500&fields={every}"));
    assert_eq!(whole.body["events"].as_array().unwrap(), &paged);
    let some = get(a, &format!("{traj}&limit=2500&fields=device,ts"));
    assert_eq!(some.status, 200, "{}", some.body);
    assert_eq!(some.body["stays"], whole.body["stays"]);
    assert!(!whole.body["stays"].as_array().unwrap().is_empty());
    let projected: Vec<Value> = paged
        .iter()
        .map(|e| json!({"ts": e["ts"], "device": e["device"]}))
        .collect();
    assert_eq!(some.body["events"].as_array().unwrap(), &projected);
    let (_, _, lines) = get_ndjson(a, &format!("{traj}&fields=ts&fields=device"));
    assert_eq!(lines, projected);
    let (_, _, lines) = get_ndjson(a, &format!("{traj}&fields=attrs,id&limit=3"));
    let projected: Vec<Value> = paged[..3]
        .iter()
        .map(|e| json!({"id": e["id"], "attrs": e["attrs"]}))
        .collect();
    assert_eq!(lines, projected);
    // Only pictures or the kept object: these events have neither, so each is `{}`.
    let (_, _, lines) = get_ndjson(a, &format!("{traj}&fields=images,object&limit=2"));
    assert_eq!(lines, [json!({}), json!({})]);
    let r = get(a, &format!("{traj}&fields=object&limit=2"));
    assert_eq!(r.body["events"], json!([{}, {}]), "{}", r.body);
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
        .filter(|e| !e["params"].as_str().unwrap().contains("fields="))
        .map(|e| &e["results"])
        .collect();
    let with_fields: Vec<&Value> = audit
        .iter()
        .filter(|e| e["endpoint"] == "/v1/trajectory" && e["status"] == 200)
        .filter(|e| e["params"].as_str().unwrap().contains("fields=ts&"))
        .chain(audit.iter().filter(|e| {
            e["params"]
                .as_str()
                .unwrap()
                .contains("fields=attrs,id&limit=3")
        }))
        .map(|e| &e["results"])
        .collect();
    assert_eq!(with_fields, [&json!(2500), &json!(3)], "{audit:?}");
    // A stream refused before it starts is on the record, with its status.
    assert!(
        audit.iter().any(|e| e["endpoint"] == "/v1/trajectory"
            && e["status"] == 400
            && e["params"].as_str().unwrap().ends_with("limit=0")),
        "{audit:?}"
    );
    assert_eq!(
        counts[3..6],
        [&json!(2500), &json!(10), &json!(2490)],
        "{audit:?}"
    );
    let (_, _, one) = get_ndjson(a, &format!("/v1/events/{}", paged[0]["id"]));
    assert_eq!(one, [paged[0].clone()]);
    // A page of 256 events or more whose fields read attributes is written in parts of
    // 64 (by two threads when a core is free), one ending on a part's end too, and one
    // of a few fields with the attributes; one of a few fields without them is written
    // alone: each byte for byte the stream's lines joined by commas, between the
    // page's head and its stays.
    for (limit, fields) in [
        (512, ""),
        (2500, ""),
        (320, "&fields=ts,device,attrs"),
        (320, "&fields=ts,device"),
        (257, ""),
    ] {
        let target = format!("{traj}&limit={limit}{fields}");
        let (status, _, page) = get_text(a, &target, "application/json");
        assert_eq!(status, 200, "{page}");
        let (_, _, stream) = get_text(a, &target, "application/x-ndjson");
        let events = stream.lines().collect::<Vec<_>>().join(",");
        let want = format!("{{\"events\":[{events}],\"stays\":");
        assert!(
            page.starts_with(&want),
            "limit {limit}{fields}: the page's events differ"
        );
        let body: Value = serde_json::from_str(&page).unwrap();
        assert_eq!(body["events"].as_array().unwrap().len(), limit);
        assert_eq!(body["stays"], whole.body["stays"], "limit {limit}");
        // The cursor is the last event's, whichever part it ended.
        let k = limit as i64 - 1;
        let device = if k % 2 == 0 { GATE } else { OTHER_GATE };
        let cursor = format!("{}.{device}.{}", base + k * 10_000, paged[limit - 1]["id"]);
        let want = (limit < 2500).then_some(cursor.as_str());
        assert_eq!(body["next_cursor"].as_str(), want, "limit {limit}");
    }

    // Pages just below and above the size written in parts of 64 (`SPLIT_EVENTS`,
    // 256), an odd one among them, are the same events in the same order.
    for limit in [255, 256, 257, 999] {
        let r = get(a, &format!("{traj}&limit={limit}"));
        assert_eq!(r.body["events"].as_array().unwrap(), &paged[..limit]);
    }

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
    let freed = wait_until(Duration::from_secs(20), || {
        let r = get(a, &format!("{traj}&limit=1"));
        if r.status == 200 {
            return true;
        }
        assert_eq!(r.status, 429, "{}", r.body);
        false
    });
    assert!(freed, "the slot was never freed");
}

/// Every answer says how long the server took apart from the network (W3C Server
/// Timing): `query` and `serialize`, in milliseconds — a trajectory (serialized by its
/// handler), its NDJSON form, an error, and `/health`.
#[test]
fn answers_carry_server_timing() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    assert_eq!(
        post(a, "/v1/events", "application/x-ndjson", &sample()).status,
        200
    );
    let trajectory = format!(
        "/v1/trajectory?kind=vehicle&subject={}&{RANGE}",
        enc("苏E12345")
    );
    let timing = |request: String| -> (u16, f64, f64) {
        let answer = send(a, request.as_bytes());
        let head = answer.head.to_ascii_lowercase();
        let line = head
            .lines()
            .find_map(|l| l.strip_prefix("server-timing: "))
            .unwrap_or_else(|| panic!("no Server-Timing in {head}"))
            .to_string();
        let dur = |name: &str| -> f64 {
            line.split(", ")
                .find_map(|m| m.strip_prefix(&format!("{name};dur=")))
                .and_then(|d| d.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {line}"))
        };
        (answer.status, dur("query"), dur("serialize"))
    };
    let get_with = |target: &str, accept: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\nConnection: close\r\n\r\n")
    };
    for (request, status) in [
        (get_with(&trajectory, "application/json"), 200),
        (get_with(&trajectory, "application/x-ndjson"), 200),
        (
            get_with("/v1/trajectory?kind=vehicle", "application/json"),
            400,
        ),
        (get_with("/health", "application/json"), 200),
    ] {
        let (got, query, serialize) = timing(request.clone());
        assert_eq!(got, status, "{request}");
        assert!(
            query > 0.0 && serialize >= 0.0,
            "{request}: {query} {serialize}"
        );
    }
    // The NDJSON trajectory is still one event a line (in chunks).
    let answer = send(a, get_with(&trajectory, "application/x-ndjson").as_bytes());
    let text = String::from_utf8_lossy(&answer.body).to_string();
    let events = text.lines().filter(|l| l.starts_with("{\"id\"")).count();
    assert_eq!(events, 3, "{text}");
}
