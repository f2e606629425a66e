//! Retention, read and changed at run time through the admin API; what it drops no
//! longer counts anywhere.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{
    call, enc, ev, get, post, sample, start, wait_until, GATE, OTHER_GATE, RANGE,
};

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

/// Day C: a day long after the sample's two days (2021-09-01 and 02, Beijing), so a
/// retention horizon can fall between them.
fn day_c() -> String {
    [
        ev(
            "2021-09-20T09:00:00+08:00",
            GATE,
            "vehicle",
            "苏E12345",
            "in",
        ),
        ev("2021-09-20T09:00:20+08:00", GATE, "face", "F001", "in"),
        ev(
            "2021-09-20T17:00:00+08:00",
            OTHER_GATE,
            "vehicle",
            "苏E12345",
            "out",
        ),
    ]
    .join("\n")
}

/// The figures a client reads that come from the index's statistics (search: count,
/// first and last seen) or from the events (frequency, first seen, counts, health),
/// over the three days: `(search 苏E12345, search F001, search F999, frequency,
/// first-seen on day C, counts by day, events)`.
fn figures(a: std::net::SocketAddr) -> [Value; 7] {
    let ok = |target: &str| {
        let r = get(a, target);
        assert_eq!(r.status, 200, "{target}: {}", r.body);
        r.body
    };
    let search = |q: &str| ok(&format!("/v1/search?q={}", enc(q)))["subjects"].clone();
    let whole = "from=2021-09-01T00:00:00%2B08:00&to=2021-09-21T00:00:00%2B08:00";
    let day_c = "from=2021-09-20T00:00:00%2B08:00&to=2021-09-21T00:00:00%2B08:00";
    let counts = ok(&format!("/v1/counts?{whole}&by=kind&per=day"))["counts"].clone();
    [
        search("苏E12345"),
        search("F001"),
        search("F999"),
        ok(&format!(
            "/v1/frequency?community=3205080001&kind=vehicle&{whole}&min_count=1"
        ))["subjects"]
            .clone(),
        ok(&format!(
            "/v1/first-seen?community=3205080001&kind=face&{day_c}&lookback=30d"
        ))["subjects"]
            .clone(),
        counts,
        ok("/health")["events"].clone(),
    ]
}

/// Retention takes what it drops out of every figure — search's counts and first/last
/// seen (the index's statistics), frequency, first seen, counts and the events
/// total — at once, and after a restart: also when the server is killed right after
/// the drop, before it writes its index checkpoint again (the checkpoint written at
/// the clean stop before still counts the dropped days: the reopened server must see
/// that and not count them).
#[test]
fn retention_removes_dropped_events_from_search_counts_and_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), |_| {});
    let a = server.addr;
    let body = format!("{}\n{}", sample(), day_c());
    assert_eq!(
        post(a, "/v1/events", "application/x-ndjson", &body).body["stored"],
        10
    );
    // Search reads the vocabulary, refreshed every 50 ms.
    let searchable = |a| {
        wait_until(Duration::from_secs(20), || {
            get(a, &format!("/v1/search?q={}", enc("F999"))).body["subjects"]
                .as_array()
                .is_some_and(|s| !s.is_empty())
        })
    };
    assert!(searchable(a), "F999 never searchable");
    let before = figures(a);
    let subject = |kind: &str, subject: &str, count: u64, first: &str, last: &str| {
        json!({"kind": kind, "subject": subject, "count": count, "first": first,
               "last": last, "distance": 0.0})
    };
    assert_eq!(
        before[..5],
        [
            json!([subject(
                "vehicle",
                "苏E12345",
                5,
                "2021-09-01T08:00:00.000+08:00",
                "2021-09-20T17:00:00.000+08:00"
            )]),
            json!([subject(
                "face",
                "F001",
                4,
                "2021-09-01T08:00:30.000+08:00",
                "2021-09-20T09:00:20.000+08:00"
            )]),
            json!([subject(
                "face",
                "F999",
                1,
                "2021-09-02T08:01:00.000+08:00",
                "2021-09-02T08:01:00.000+08:00"
            )]),
            json!([{"subject": "苏E12345", "count": 5, "days": 3,
                    "first": "2021-09-01T08:00:00.000+08:00",
                    "last": "2021-09-20T17:00:00.000+08:00"}]),
            // F001 was seen within the 30 days before day C: not new on day C.
            json!([]),
        ]
    );
    assert_eq!(count_sum(&before[5]), 10);
    assert_eq!(before[6], 10);
    // A clean stop writes the index checkpoint: it counts all three days.
    server.stop();

    // The real binary, so that it can be killed: it reopens from the checkpoint. Its
    // maintenance (which may write the checkpoint again) not before an hour, so the
    // kill below comes before any pass could.
    let (mut child, a) = sightline_testkit::spawn_listening(
        std::process::Command::new(env!("CARGO_BIN_EXE_sightline"))
            .args(["serve", "--no-auth", "--listen", "127.0.0.1:0"])
            .args(["--maintenance-every", "1h", "--data"])
            .arg(dir.path()),
    );
    assert!(searchable(a), "F999 never searchable after the restart");
    assert_eq!(figures(a), before, "reopened from the checkpoint");
    // A horizon halfway between the end of day B (2021-09-03T00:00+08:00) and that
    // of day C (2021-09-21T00:00+08:00): days A and B go, C stays.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let (end_b, end_c) = (1_630_598_400_000i64, 1_632_153_600_000i64);
    let days = ((now - end_b) + (now - end_c)) / 2 / 86_400_000;
    let r = call(
        a,
        "PUT",
        "/v1/admin/retention",
        "application/json",
        format!("{{\"days\":{days}}}").as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["dropped_shards"],
        json!([{"community": "3205080001", "day": "2021-09-01"},
               {"community": "3205080001", "day": "2021-09-02"}])
    );
    let after = figures(a);
    assert_eq!(
        after[..5],
        [
            json!([subject(
                "vehicle",
                "苏E12345",
                2,
                "2021-09-20T09:00:00.000+08:00",
                "2021-09-20T17:00:00.000+08:00"
            )]),
            json!([subject(
                "face",
                "F001",
                1,
                "2021-09-20T09:00:20.000+08:00",
                "2021-09-20T09:00:20.000+08:00"
            )]),
            // Seen only on a dropped day: no longer found.
            json!([]),
            json!([{"subject": "苏E12345", "count": 2, "days": 1,
                    "first": "2021-09-20T09:00:00.000+08:00",
                    "last": "2021-09-20T17:00:00.000+08:00"}]),
            // Its earlier sightings are gone: F001 is new on day C now.
            json!([{"subject": "F001", "first": "2021-09-20T09:00:20.000+08:00", "count": 1}]),
        ]
    );
    assert_eq!(count_sum(&after[5]), 3);
    assert!(
        after[5]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["bucket"].as_str().unwrap().starts_with("2021-09-20")),
        "{}",
        after[5]
    );
    assert_eq!(after[6], 3);
    // Killed (SIGKILL) before any maintenance pass writes the checkpoint again.
    child.kill().unwrap();
    child.wait().unwrap();

    let mut server = start(dir.path(), |_| {});
    assert_eq!(figures(server.addr), after, "reopened after a kill");
    server.stop();
    // And after a clean stop, from the checkpoint written then.
    let mut server = start(dir.path(), |_| {});
    assert_eq!(figures(server.addr), after, "reopened after a clean stop");
    server.stop();
}

/// The events a `/v1/counts` answer counts.
fn count_sum(counts: &Value) -> u64 {
    counts
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["count"].as_u64().unwrap())
        .sum()
}
