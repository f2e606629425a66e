//! `GET /v1/feed` and `GET /v1/admin/stats` on query nodes, compared with a
//! single-node `sightline serve` fed the same events: the feed read to its end through
//! pages returns every event exactly once, also when the query node read from and an
//! indexer are killed mid-read; a long-poll wakes on new events; Server-Sent Events
//! resume from their last id; a scoped key reads only its communities.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sightline_testkit::{enc, get, wait_until};

use super::console::cli_key;
use super::{ask_as, query_city, Env, SERIAL};

/// An event as both servers write it, its id taken out (each numbers its own).
fn comparable(e: &Value) -> String {
    let mut e = e.clone();
    e.as_object_mut().unwrap().remove("id");
    e.to_string()
}

/// How many times each event (without its id) was read.
fn multiset(events: &[Value]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for e in events {
        *m.entry(comparable(e)).or_default() += 1;
    }
    m
}

/// Asserts `got` and `want` hold the same events as often, naming a few that differ.
fn assert_same(got: &[Value], want: &[Value], what: &str) {
    let (g, w) = (multiset(got), multiset(want));
    if g != w {
        let extra: Vec<_> = g
            .iter()
            .filter(|(k, n)| w.get(*k) != Some(n))
            .take(3)
            .collect();
        let missing: Vec<_> = w
            .iter()
            .filter(|(k, n)| g.get(*k) != Some(n))
            .take(3)
            .collect();
        panic!(
            "{what}: {} events read, {} expected; read otherwise than expected: {extra:?}; \
             expected otherwise than read: {missing:?}",
            got.len(),
            want.len()
        );
    }
}

/// Every event of `serve`'s feed, read to its end.
fn serve_feed(addr: SocketAddr, extra: &str) -> Vec<Value> {
    let mut after = 0u64;
    let mut all = Vec::new();
    loop {
        let r = get(addr, &format!("/v1/feed?after={after}&limit=700{extra}"));
        assert_eq!(r.status, 200, "{}", r.body);
        let events = r.body["events"].as_array().unwrap();
        if events.is_empty() {
            return all;
        }
        all.extend(events.iter().cloned());
        after = r.body["next_after"].as_u64().unwrap();
    }
}

/// One page of a query node's feed after `cursor`, with `token` (none: open).
fn cluster_page(addr: SocketAddr, token: Option<&str>, cursor: &str, extra: &str) -> Value {
    let target = format!("/v1/feed?after={}&limit=300{extra}", enc(cursor));
    let (status, page) = ask_as(addr, token, "GET", &target, "");
    assert_eq!(status, 200, "{target}: {page}");
    assert!(page["next_after"].is_string(), "{page}");
    page
}

/// Reads a query node's feed from `cursor` until a page is empty with every partition
/// answering; the events read and the cursor at the end.
fn cluster_feed_to_end(
    addr: SocketAddr,
    token: Option<&str>,
    mut cursor: String,
    extra: &str,
) -> (Vec<Value>, String) {
    let mut all = Vec::new();
    for _ in 0..10_000 {
        let page = cluster_page(addr, token, &cursor, extra);
        let events = page["events"].as_array().unwrap();
        let whole = page["unavailable"].as_array().unwrap().is_empty();
        cursor = page["next_after"].as_str().unwrap().to_string();
        if events.is_empty() && whole {
            return (all, cursor);
        }
        all.extend(events.iter().cloned());
    }
    panic!("a feed without end");
}

/// Opens a Server-Sent Events stream of the feed resuming from `last_id`, and reads
/// it until `want` events came or `within` passed: (id, data) of each.
fn sse(addr: SocketAddr, last_id: &str, want: usize, within: Duration) -> Vec<(String, Value)> {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    write!(
        s,
        "GET /v1/feed HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nLast-Event-ID: {last_id}\r\n\r\n"
    )
    .unwrap();
    let deadline = Instant::now() + within;
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    let mut events = Vec::new();
    while Instant::now() < deadline && events.len() < want {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        // Each message is one chunk: its lines are whole.
        let text = String::from_utf8_lossy(&raw);
        events.clear();
        let mut id = None;
        for line in text.lines() {
            if let Some(i) = line.strip_prefix("id: ") {
                id = Some(i.to_string());
            } else if let Some(d) = line.strip_prefix("data: ") {
                events.push((id.take().unwrap(), serde_json::from_str(d).unwrap()));
            }
        }
    }
    let head = String::from_utf8_lossy(&raw[..raw.len().min(300)]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    events
}

#[test]
fn the_feed_on_a_query_node_returns_every_event_once_as_serve_across_restarts_long_polls_and_streams(
) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut env = Env::start();
    let (_i1, a1) = env.ingest("ingest-1");
    let x1 = env.indexer("index-1", &[]);
    let _x2 = env.indexer("index-2", &[]);
    let (q1, qa1) = env.query_node("query-1");
    let (_q2, qa2) = env.query_node("query-2");
    let single_dir = tempfile::tempdir().unwrap();
    let single = sightline_testkit::start(single_dir.path(), |_| {});
    let mut sent = 0usize;
    let mut communities = std::collections::BTreeSet::new();
    for day in query_city() {
        for body in day {
            let r =
                sightline_testkit::post(single.addr, "/v1/events", "application/x-ndjson", &body);
            assert_eq!(r.status, 200, "{}", r.body);
            sent += env.post_body(a1, &body) as usize;
            for l in body.lines() {
                let e: Value = serde_json::from_str(l).unwrap();
                communities.insert(e["community"].as_str().unwrap().to_string());
            }
        }
    }
    env.wait_committed_events(sent as u64);
    let expected = serve_feed(single.addr, "");
    assert_eq!(expected.len(), sent);

    // Refused as `serve` refuses: a bad cursor names `after`, a wait past 60 s `wait`.
    let (status, v) = ask_as(qa1, None, "GET", "/v1/feed?after=17", "");
    assert_eq!(
        (status, &v["error"]["field"]),
        (400, &Value::from("after")),
        "{v}"
    );
    let (status, v) = ask_as(qa1, None, "GET", "/v1/feed?after=9:1", "");
    assert_eq!(
        (status, &v["error"]["field"]),
        (400, &Value::from("after")),
        "{v}"
    );
    let (status, v) = ask_as(qa1, None, "GET", "/v1/feed?wait=61s", "");
    assert_eq!(
        (status, &v["error"]["field"]),
        (400, &Value::from("wait")),
        "{v}"
    );
    let (status, v) = ask_as(qa1, None, "GET", "/v1/feed?colour=red", "");
    assert_eq!(status, 400, "{v}");

    // Read in pages, the query node read from and an indexer killed mid-read: the
    // rest read from the other query node from the last cursor, then from a query
    // node started again.
    let mut got: Vec<Value> = Vec::new();
    let mut cursor = "0".to_string();
    for _ in 0..3 {
        let page = cluster_page(qa1, None, &cursor, "");
        got.extend(page["events"].as_array().unwrap().iter().cloned());
        cursor = page["next_after"].as_str().unwrap().to_string();
    }
    assert!(got.len() >= 300, "three pages, {} events", got.len());
    drop(q1); // SIGKILL
    drop(x1); // SIGKILL
    for _ in 0..3 {
        let page = cluster_page(qa2, None, &cursor, "");
        got.extend(page["events"].as_array().unwrap().iter().cloned());
        cursor = page["next_after"].as_str().unwrap().to_string();
    }
    let (_q3, qa3) = env.query_node("query-3");
    let (rest, end) = cluster_feed_to_end(qa3, None, cursor, "");
    got.extend(rest);
    let ids: std::collections::BTreeSet<u64> =
        got.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), got.len(), "an event read twice");
    assert_same(&got, &expected, "got");
    // At the end, the end on the other node too.
    let page = cluster_page(qa2, None, &end, "");
    assert!(page["events"].as_array().unwrap().is_empty(), "{page}");

    // Filters: a kind and two communities, as serve's.
    let two: Vec<&String> = communities.iter().take(2).collect();
    let filter = format!("&kind=vehicle&community={},{}", two[0], two[1]);
    let (filtered, _) = cluster_feed_to_end(qa2, None, "0".into(), &filter);
    assert!(!filtered.is_empty());
    assert_same(&filtered, &serve_feed(single.addr, &filter), "filtered");

    // Statistics: serve's figures, added up over the partitions.
    let (status, stats) = ask_as(qa2, None, "GET", "/v1/admin/stats", "");
    assert_eq!(status, 200, "{stats}");
    let single_stats = get(single.addr, "/v1/admin/stats").body;
    for field in ["events", "communities", "devices"] {
        assert_eq!(
            stats[field], single_stats[field],
            "{field}: {stats} {single_stats}"
        );
    }
    assert_eq!(stats["partitions"].as_array().unwrap().len(), 4, "{stats}");

    // A long-poll from the end wakes when new events come; a stream from the end
    // (`Last-Event-ID`) gets them, and its last id is a cursor past them.
    let poll = {
        let end = end.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let target = format!("/v1/feed?after={}&wait=30s", enc(&end));
            let (status, page) = ask_as(qa2, None, "GET", &target, "");
            (status, page, started.elapsed())
        })
    };
    let streamed = {
        let (tx, rx) = std::sync::mpsc::channel();
        let from = end.clone();
        std::thread::spawn(move || {
            tx.send(sse(qa3, &from, 50, Duration::from_secs(60)))
                .unwrap();
        });
        std::thread::sleep(Duration::from_millis(1500));
        let (body, _) = env.batch(50);
        let r = sightline_testkit::post(single.addr, "/v1/events", "application/x-ndjson", &body);
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(env.post_body(a1, &body), 50);
        rx.recv().unwrap()
    };
    let (status, page, waited) = poll.join().unwrap();
    assert_eq!(status, 200, "{page}");
    assert!(!page["events"].as_array().unwrap().is_empty(), "{page}");
    assert!(
        waited >= Duration::from_millis(1000) && waited < Duration::from_secs(25),
        "the long-poll answered after {waited:?}"
    );
    assert_eq!(
        streamed.len(),
        50,
        "the stream got {} of 50",
        streamed.len()
    );
    let newest = serve_feed(single.addr, "");
    let new_ones: Vec<Value> = newest[expected.len()..].to_vec();
    let streamed_events: Vec<Value> = streamed.iter().map(|(_, e)| e.clone()).collect();
    assert_same(&streamed_events, &new_ones, "streamed_events");
    let last_id = &streamed.last().unwrap().0;
    let after_stream = cluster_page(qa2, None, last_id, "");
    assert!(
        after_stream["events"].as_array().unwrap().is_empty(),
        "resuming from the stream's last id: {after_stream}"
    );
    let (since_end, _) = cluster_feed_to_end(qa2, None, end, "");
    assert_same(&since_end, &new_ones, "since_end");

    // A scoped key reads only its communities; another community is refused, and
    // statistics need an admin key.
    let cli_config = env.config_file("cli");
    let scope = format!("{},{}", two[0], two[1]);
    let admin = cli_key(&cli_config, "admin", None, "hq");
    let detective = cli_key(&cli_config, "investigate", Some(&scope), "detective");
    // In force once the node has read the table (until then it is open to anyone).
    assert!(wait_until(Duration::from_secs(10), || {
        let (status, me) = ask_as(qa2, Some(&detective), "GET", "/v1/whoami", "");
        status == 200 && me["open"] == false && me["name"] == "detective"
    }));
    let (scoped, _) = cluster_feed_to_end(qa2, Some(&detective), "0".into(), "");
    let in_scope: Vec<Value> = newest
        .iter()
        .filter(|e| two.iter().any(|c| e["community"] == c.as_str()))
        .cloned()
        .collect();
    assert!(!scoped.is_empty());
    assert_same(&scoped, &in_scope, "scoped");
    let outside = communities.iter().nth(2).unwrap();
    let (status, v) = ask_as(
        qa2,
        Some(&detective),
        "GET",
        &format!("/v1/feed?community={outside}"),
        "",
    );
    assert_eq!(
        (status, &v["error"]["field"]),
        (403, &Value::from("community")),
        "{v}"
    );
    assert_eq!(
        ask_as(qa2, Some(&detective), "GET", "/v1/admin/stats", "").0,
        403
    );
    let (status, stats) = ask_as(qa2, Some(&admin), "GET", "/v1/admin/stats", "");
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["events"].as_u64().unwrap(), newest.len() as u64);
    // Audited as serve audits it: the feed's pages with their counts.
    let (_, audit) = ask_as(
        qa2,
        Some(&admin),
        "GET",
        "/v1/audit?endpoint=/v1/feed&limit=10000",
        "",
    );
    let entries = audit["entries"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["key"] == super::id_of(&detective) && e["results"].as_u64() > Some(0)),
        "{audit}"
    );
}

/// Two NDJSON bodies of 40 events each over four communities: one day three days
/// ago (past a two-day policy), and yesterday. Send the old day first: an owner never
/// drops the shard holding its highest sequence number (`sightline_cluster::retention`).
fn two_days() -> [String; 2] {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let day = 86_400_000i64;
    let mut bodies = [String::new(), String::new()];
    for i in 0..80i64 {
        let ts = match i % 2 {
            0 => now - 3 * day - i * 1_000,
            _ => now - day - i * 1_000,
        };
        let c = (i / 2) % 4;
        let event = serde_json::json!({
            "ts": ts,
            "community": format!("32050800{c:02}"),
            "device": format!("3205080{c}011210000{:03}", i % 7),
            "kind": "vehicle",
            "subject": format!("苏E{:05}", i % 13),
            "direction": "in",
            "attrs": {"source_id": format!("ret-{i:06}")},
        });
        bodies[(i % 2) as usize].push_str(&(event.to_string() + "\n"));
    }
    bodies
}

#[test]
fn a_retention_only_commit_lost_in_doubt_is_settled_as_lost_and_its_rows_deleted() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::start();
    let (_i1, a1) = env.ingest("ingest-1");
    let x1 = env.indexer("index-1", &[]);
    for body in &two_days() {
        assert_eq!(env.post_body(a1, body), 40);
    }
    env.wait_committed_events(80);
    drop(x1);
    // The policy set while no indexer runs: index-2's first commit sent is one of
    // retention alone (its partitions restored idle), lost before it is sent. Its
    // rows list nothing and its checkpoint and dictionary are the catalog's already.
    let meta = env.meta();
    env.rt.block_on(meta.set_retention_days(Some(2))).unwrap();
    let x2 = env.indexer("index-2", &[("SIGHTLINE_CLUSTER_FAULT", "lose-commit")]);
    let mut committed = 0;
    let dropped = wait_until(Duration::from_secs(60), || {
        committed = env.rt.block_on(meta.committed_events()).unwrap_or(0);
        committed == 40
    });
    assert!(
        x2.log()
            .contains("fault point: the commit lost before it was sent"),
        "{}",
        x2.log()
    );
    // Settled as taken, the dropped segments' ids were forgotten and their catalog
    // rows never deleted.
    assert!(dropped, "{committed} events committed: {}", x2.log());
    assert!(
        x2.log()
            .lines()
            .any(|l| l.contains("commit in doubt settled") && l.contains("landed=false")),
        "{}",
        x2.log()
    );
    // A malformed policy fails no commit: it is logged and the last one kept.
    env.pg
        .psql("UPDATE cluster_meta SET value = 'x' WHERE key = 'retention_days'");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let body: String = (0..10i64)
        .map(|i| {
            let event = serde_json::json!({
                "ts": now - i * 1_000,
                "community": format!("32050800{:02}", i % 4),
                "device": format!("3205080{}0112100000{:02}", i % 4, i),
                "kind": "vehicle",
                "subject": format!("苏E{:05}", i),
                "direction": "in",
                "attrs": {"source_id": format!("malformed-{i:06}")},
            });
            event.to_string() + "\n"
        })
        .collect();
    assert_eq!(env.post_body(a1, &body), 10);
    env.wait_committed_events(50);
    assert!(
        x2.log()
            .contains("retention policy not read; the last one kept"),
        "{}",
        x2.log()
    );
}

#[test]
fn retention_set_on_a_query_node_drops_a_day_on_the_cluster_as_on_serve() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::start();
    let (_i1, a1) = env.ingest("ingest-1");
    let _x1 = env.indexer("index-1", &[]);
    let (_q1, qa) = env.query_node("query-1");
    let single_dir = tempfile::tempdir().unwrap();
    let single = sightline_testkit::start(single_dir.path(), |_| {});
    let bodies = two_days();
    for body in &bodies {
        let r = sightline_testkit::post(single.addr, "/v1/events", "application/x-ndjson", body);
        assert_eq!(
            (r.status, &r.body["stored"]),
            (200, &Value::from(40)),
            "{}",
            r.body
        );
        assert_eq!(env.post_body(a1, body), 40);
    }
    env.wait_committed_events(80);
    let (all, end) = cluster_feed_to_end(qa, None, "0".into(), "");
    assert_eq!(all.len(), 80);
    // A long-poll for events the filters leave out reads through the backlog at once
    // (its partitions read to their limit), not one round per poll interval: a page
    // of one asks each partition for one event, ~20 rounds here.
    let (status, v) = ask_as(qa, None, "GET", "/v1/feed?kind=face&limit=1&wait=4s", "");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["events"], Value::Array(Vec::new()), "{v}");
    assert_eq!(v["next_after"].as_str(), Some(end.as_str()), "{v}");

    // serve's refusals, field by field.
    for bad in [r#"{"days": 0}"#, r#"{"days": "x"}"#, r#"{"weeks": 1}"#, "{"] {
        let cluster = ask_as(qa, None, "PUT", "/v1/admin/retention", bad);
        let serve = ask_as(single.addr, None, "PUT", "/v1/admin/retention", bad);
        assert_eq!(cluster.0, 400, "{bad}: {}", cluster.1);
        assert_eq!(
            (cluster.0, &cluster.1["error"]["field"]),
            (serve.0, &serve.1["error"]["field"]),
            "{bad}"
        );
    }
    // serve's members: nothing dropped by reading.
    assert_eq!(
        ask_as(qa, None, "GET", "/v1/admin/retention", "").1,
        json!({"retention_days": null, "dropped_shards": []})
    );
    let (status, set) = ask_as(qa, None, "PUT", "/v1/admin/retention", r#"{"days": 2}"#);
    assert_eq!(
        (status, &set["retention_days"]),
        (200, &Value::from(2)),
        "{set}"
    );
    let (status, dropped) = ask_as(
        single.addr,
        None,
        "PUT",
        "/v1/admin/retention",
        r#"{"days": 2}"#,
    );
    assert_eq!(status, 200, "{dropped}");
    assert!(
        dropped["dropped_shards"].as_array().unwrap().len() >= 4,
        "{dropped}"
    );
    assert_eq!(
        ask_as(qa, None, "GET", "/v1/admin/retention", "").1["retention_days"],
        Value::from(2)
    );
    let kept = serve_feed(single.addr, "");
    assert_eq!(kept.len(), 40);
    // The indexer drops the day at its next commit (its catalog rows go in the
    // commit's transaction), the query node's replica at its next renewal.
    let meta = env.meta();
    let mut committed = 0;
    assert!(
        wait_until(Duration::from_secs(30), || {
            committed = env.rt.block_on(meta.committed_events()).unwrap_or(0);
            committed == 40
        }),
        "{committed} events committed after the drop"
    );
    let mut read = Vec::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            read = cluster_feed_to_end(qa, None, "0".into(), "").0;
            read.len() == 40
        }),
        "{} events read after the drop",
        read.len()
    );
    assert_same(&read, &kept, "after the drop");
    let (_, stats) = ask_as(qa, None, "GET", "/v1/admin/stats", "");
    assert_eq!(stats["events"], Value::from(40), "{stats}");
    assert_eq!(stats["retention_days"], Value::from(2), "{stats}");
    // Keep everything again: nothing comes back, nothing more goes.
    let (status, _) = ask_as(qa, None, "PUT", "/v1/admin/retention", r#"{"days": null}"#);
    assert_eq!(status, 200);
    assert_eq!(
        ask_as(qa, None, "GET", "/v1/admin/retention", "").1["retention_days"],
        Value::Null
    );
}
