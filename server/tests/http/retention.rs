//! Retention, read and changed at run time through the admin API.

use serde_json::json;

use crate::support::{call, enc, get, post, sample, start, RANGE};

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
