//! The change feed: pages, long polls, Server-Sent Events, a cursor across a restart.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{ev, get, post, sample, start, GATE};

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
