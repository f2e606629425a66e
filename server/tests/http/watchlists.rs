//! Watchlists: alerts raised at ingest, read from the alert log and delivered to subscribers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{call, ev, get, post, start, wait_until, Receiver, GATE};

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
    let delivered = || -> usize {
        rx.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| b["alerts"].as_array().map_or(0, |a| a.len()))
            .sum()
    };
    assert!(
        wait_until(Duration::from_secs(10), || delivered() == 3),
        "alerts not delivered: {}",
        delivered()
    );

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
