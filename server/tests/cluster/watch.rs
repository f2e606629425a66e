//! `/v1/keys` and `/v1/watchlists` on query nodes (PostgreSQL tables shared by every
//! node), compared with a single-node `sightline serve` given keys of the same roles
//! and scopes and sent the same requests.

use std::time::Duration;

use serde_json::{json, Value};
use sightline_testkit::wait_until;

use super::console::{audit_page, comparable, keys_on_both};
use super::{ask_as, id_of, Env, SERIAL};

/// An answer with what each server makes up itself (ids, times, tokens) replaced by
/// whether it is there, and lists sorted by name: what must agree between them.
fn normalized((status, body): &(u16, Value)) -> (u16, Value) {
    fn strip(v: &Value) -> Value {
        match v {
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, x)| {
                        let x = match k.as_str() {
                            "id" | "created" | "token" | "deleted" | "watchlist" | "raised" => {
                                json!(x.is_string())
                            }
                            // A cluster's alert names no event id (its indexer gives
                            // it later); a cursor is each server's own.
                            "event_id" | "next_after" => json!("each its own"),
                            "revoked" => json!(!x.is_null()),
                            _ => strip(x),
                        };
                        (k.clone(), x)
                    })
                    .collect(),
            ),
            Value::Array(a) => {
                let mut a: Vec<Value> = a.iter().map(strip).collect();
                a.sort_by_key(|x| x.to_string());
                Value::Array(a)
            }
            x => x.clone(),
        }
    }
    comparable(&(*status, strip(body)))
}

#[test]
fn query_nodes_manage_keys_and_watchlists_as_serve() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut env = Env::start();
    let cli_config = env.config_file("cli");
    let (a, b, c) = ("3205080001", "3205080002", "3205080003");
    let ab = format!("{a},{b}");
    let specs: [(&str, Option<&str>, &str); 5] = [
        ("admin", None, "hq"),
        ("admin", Some(a), "district admin"),
        ("investigate", Some(&ab), "detective 7"),
        ("investigate", Some(c), "detective 9"),
        ("ingest", None, "gate feed"),
    ];
    const HQ: usize = 0;
    const DISTRICT: usize = 1;
    const DETECTIVE: usize = 2;
    const OTHER: usize = 3;
    const FEED: usize = 4;
    let single_dir = tempfile::tempdir().unwrap();
    let (cluster_keys, single_keys) = keys_on_both(&cli_config, single_dir.path(), &specs);
    env.query_extra = "replicas = 0".into();
    let (_q1, qa) = env.query_node("query-1");
    let (_q2, qa2) = env.query_node("query-2");
    let single = sightline_testkit::start(single_dir.path(), |_| {});
    let s = single.addr;
    // Both asked the same with the same key; their answers agree but for what each
    // makes up itself.
    let same = |key: usize, method: &str, target: &str, body: Value| {
        let body = match body {
            Value::Null => String::new(),
            Value::String(s) => s,
            b => b.to_string(),
        };
        let cluster = ask_as(qa, Some(&cluster_keys[key]), method, target, &body);
        let single = ask_as(s, Some(&single_keys[key]), method, target, &body);
        assert_eq!(
            normalized(&cluster),
            normalized(&single),
            "{method} {target} {body} as key {key}: cluster {:?}, serve {:?}",
            cluster.1,
            single.1
        );
        (cluster, single)
    };

    // Keys: an unscoped admin only; serve's mistakes field by field.
    let night = json!({"name": "night shift", "role": "investigate", "communities": [a]});
    for key in [DISTRICT, DETECTIVE] {
        let ((status, _), _) = same(key, "POST", "/v1/keys", night.clone());
        assert_eq!(status, 403);
        assert_eq!(same(key, "GET", "/v1/keys", Value::Null).0 .0, 403);
    }
    for body in [
        json!({"name": "x", "role": "boss"}),
        json!({"name": "x", "role": "admin", "colour": "red"}),
        json!({"name": "x", "role": "admin", "communities": []}),
        json!({"name": "x"}),
        json!("x".repeat(201)),
        Value::String("{".into()),
    ] {
        let ((status, v), _) = same(HQ, "POST", "/v1/keys", body.clone());
        assert_eq!(status, 400, "{body}: {v}");
    }
    let ((status, made), _) = same(HQ, "POST", "/v1/keys", night.clone());
    assert_eq!(status, 201, "{made}");
    let token = made["token"].as_str().unwrap().to_string();
    assert_eq!(made["id"], id_of(&token));
    let (status, listed) = ask_as(qa, Some(&cluster_keys[HQ]), "GET", "/v1/keys", "");
    assert_eq!(status, 200);
    assert!(
        !listed.to_string().contains(&token),
        "a token is answered once"
    );
    same(HQ, "GET", "/v1/keys", Value::Null);
    same(HQ, "GET", "/v1/keys?x=1", Value::Null);
    // In force here at once, on the other node within its renewal.
    assert_eq!(ask_as(qa, Some(&token), "GET", "/v1/whoami", "").0, 200);
    assert!(wait_until(Duration::from_secs(10), || {
        ask_as(qa2, Some(&token), "GET", "/v1/whoami", "").0 == 200
    }));
    // Revoked on one node: refused by the other within its renewal.
    let (status, revoked) = ask_as(
        qa,
        Some(&cluster_keys[HQ]),
        "DELETE",
        &format!("/v1/keys/{}", id_of(&token)),
        "",
    );
    assert_eq!(status, 200, "{revoked}");
    assert!(revoked["revoked"].is_string(), "{revoked}");
    assert_eq!(ask_as(qa, Some(&token), "GET", "/v1/whoami", "").0, 401);
    let revoked_at = std::time::Instant::now();
    assert!(wait_until(Duration::from_secs(10), || {
        ask_as(qa2, Some(&token), "GET", "/v1/whoami", "").0 == 401
    }));
    assert!(revoked_at.elapsed() < Duration::from_secs(3));
    let single_night = ask_as(s, Some(&single_keys[HQ]), "GET", "/v1/keys", "").1["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "night shift")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let single_revoked = ask_as(
        s,
        Some(&single_keys[HQ]),
        "DELETE",
        &format!("/v1/keys/{single_night}"),
        "",
    );
    assert_eq!(normalized(&(status, revoked)), normalized(&single_revoked));
    same(HQ, "GET", "/v1/keys", Value::Null);
    let ((status, v), _) = same(HQ, "DELETE", "/v1/keys/nosuchkey", Value::Null);
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("no_such_key"))
    );
    // A created key's 201, as on `serve`: where it is (revoked there) and never
    // cached (its body holds the token); a created watchlist's, where it is (deleted
    // there).
    for (addr, token) in [(qa, &cluster_keys[HQ]), (s, &single_keys[HQ])] {
        let key = json!({"name": "day shift", "role": "investigate", "communities": [a]});
        let list = json!({"name": "located", "reason": "stolen vehicle",
                          "entries": [{"kind": "vehicle", "subject": "苏E54321"}]});
        for (collection, body) in [("/v1/keys", key), ("/v1/watchlists", list)] {
            let body = body.to_string();
            let answer = sightline_testkit::send(
                addr,
                format!(
                    "POST {collection} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
                     Content-Type: application/json\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
            let head = answer.head.to_ascii_lowercase();
            let made: Value = serde_json::from_slice(&answer.body).unwrap();
            assert_eq!(answer.status, 201, "{addr} {collection}: {made}");
            let location = sightline_testkit::header(&head, "location");
            assert_eq!(
                location,
                format!("{collection}/{}", made["id"].as_str().unwrap())
            );
            if collection == "/v1/keys" {
                assert_eq!(
                    sightline_testkit::header(&head, "cache-control"),
                    "no-store"
                );
            }
            let (status, v) = ask_as(addr, Some(token), "DELETE", location, "");
            let id = match collection {
                "/v1/keys" => &v["id"],
                _ => &v["deleted"],
            };
            assert_eq!((status, id), (200, &made["id"]), "{addr}: {v}");
        }
    }
    same(HQ, "GET", "/v1/keys", Value::Null);

    // Watchlists: scoped to the creating key, listed and deleted within its scope.
    let case = |name: &str| {
        json!({"name": name, "reason": "stolen vehicle", "expires": "2099-01-01T00:00:00+08:00",
               "entries": [{"kind": "vehicle", "subject": "苏E12345"},
                           {"kind": "vehicle", "pattern": "苏E9*"},
                           {"kind": "vehicle", "fuzzy": "苏E7777B", "distance": 0.5},
                           {"kind": "face", "subject": "320501199001011234"}]})
    };
    let mut made = Vec::new();
    for (key, name) in [(HQ, "city"), (DETECTIVE, "case 7"), (OTHER, "case 9")] {
        let ((status, w), (_, sw)) = same(key, "POST", "/v1/watchlists", case(name));
        assert_eq!(status, 201, "{w}");
        made.push((
            key,
            w["id"].as_str().unwrap().to_string(),
            sw["id"].as_str().unwrap().to_string(),
        ));
    }
    for body in [
        json!({"reason": "x", "entries": []}),
        json!({"name": "x", "entries": [{"subject": "苏E1"}]}),
        json!({"reason": "x", "entries": [{"kind": "boat", "subject": "苏E1"}]}),
        json!({"reason": "x", "entries": [{"subject": "苏E1", "pattern": "苏E*"}]}),
        json!({"reason": "x", "entries": [{"pattern": "**"}]}),
        json!({"reason": "x", "entries": [{"subject": "苏E1", "distance": 1}]}),
        json!({"reason": "x", "expires": true, "entries": [{"subject": "苏E1"}]}),
    ] {
        let ((status, v), _) = same(DETECTIVE, "POST", "/v1/watchlists", body.clone());
        assert_eq!(status, 400, "{body}: {v}");
    }
    for key in [HQ, DISTRICT, DETECTIVE, OTHER] {
        same(key, "GET", "/v1/watchlists", Value::Null);
    }
    let ((_, seen), _) = same(DETECTIVE, "GET", "/v1/watchlists", Value::Null);
    let names: Vec<&str> = seen["watchlists"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["case 7"],
        "a scoped key lists its communities' lists"
    );
    // Another query node reads the same lists.
    assert_eq!(
        ask_as(qa2, Some(&cluster_keys[HQ]), "GET", "/v1/watchlists", ""),
        ask_as(qa, Some(&cluster_keys[HQ]), "GET", "/v1/watchlists", "")
    );
    // Deleting: another scope's list is none to it; its own goes, on any node.
    let delete = |key: usize, i: usize, on: std::net::SocketAddr| {
        let cluster = ask_as(
            on,
            Some(&cluster_keys[key]),
            "DELETE",
            &format!("/v1/watchlists/{}", made[i].1),
            "",
        );
        let single = ask_as(
            s,
            Some(&single_keys[key]),
            "DELETE",
            &format!("/v1/watchlists/{}", made[i].2),
            "",
        );
        assert_eq!(
            normalized(&cluster),
            normalized(&single),
            "{cluster:?} {single:?}"
        );
        cluster
    };
    let (status, v) = delete(OTHER, 1, qa);
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("no_such_watchlist"))
    );
    assert_eq!(
        delete(DETECTIVE, 0, qa).0,
        404,
        "an unscoped list is not a scoped key's"
    );
    let (status, v) = delete(DETECTIVE, 1, qa2);
    assert_eq!(
        (status, v["deleted"].as_str()),
        (200, Some(made[1].1.as_str()))
    );
    assert_eq!(delete(DETECTIVE, 1, qa).0, 404, "gone");
    for key in [HQ, DETECTIVE, OTHER] {
        same(key, "GET", "/v1/watchlists", Value::Null);
    }

    // Audited as `serve` audits changes: begun (0), then the outcome, never a token.
    let page = audit_page(qa, &cluster_keys[HQ]);
    let entries = page["entries"].as_array().unwrap();
    let count = |endpoint: &str, status: u64| {
        entries
            .iter()
            .filter(|e| e["endpoint"] == endpoint && e["status"] == status)
            .count()
    };
    // The night shift's and the day shift's.
    assert_eq!(count("POST /v1/keys", 201), 2, "{page}");
    // Three below, and the one deleted at its `Location`.
    assert_eq!(count("POST /v1/watchlists", 201), 4, "{page}");
    assert_eq!(
        count(&format!("DELETE /v1/keys/{}", id_of(&token)), 200),
        1,
        "{page}"
    );
    assert!(
        !page.to_string().contains(&token),
        "a token in the audit log"
    );

    // Alerts: lists made on query node 1 (read by the ingest nodes at start, then
    // every renewal), events sent to ingest node 2, the alerts read on either query
    // node as serve answers them, each key its own.
    let ((status, _), _) = same(DETECTIVE, "POST", "/v1/watchlists", case("case 7b"));
    assert_eq!(status, 201);
    let (_i1, ia) = env.ingest("ingest-1");
    let (_i2, ia2) = env.ingest("ingest-2");
    // It gives the events their cluster ids, which the alerts then name.
    let _x1 = env.indexer("index-1", &[]);
    let event = |n: u32, community: &str, subject: &str| {
        json!({"ts": 1_764_547_200_000i64 + i64::from(n) * 1_000, "community": community,
               "device": format!("3205080{}01121000{n:04}", &community[9..]), "kind": "vehicle",
               "subject": subject, "direction": "in",
               "attrs": {"source_id": format!("watch-{n}"), "lane": 1}})
        .to_string()
    };
    let batch = [
        event(1, a, "苏E12345"), // exact: city, case 7b
        event(2, c, "苏E9ABC1"), // pattern: city, case 9
        event(3, b, "苏E7777B"), // fuzzy: city, case 7b (six alerts in all)
        event(4, a, "苏A00000"), // none
    ]
    .join("\n");
    let ingest = |on: std::net::SocketAddr, token: &str| {
        ask_as(on, Some(token), "POST", "/v1/events", &batch)
    };
    let (status, sent) = ingest(ia2, &cluster_keys[FEED]);
    let (s_status, s_sent) = ingest(s, &single_keys[FEED]);
    assert_eq!((status, s_status), (200, 200), "{sent} {s_sent}");
    assert_eq!(
        (&sent["alerts"], &sent["stored"]),
        (&json!(6), &json!(4)),
        "{sent}"
    );
    assert_eq!(sent["alerts"], s_sent["alerts"], "{s_sent}");
    for key in [HQ, DISTRICT, DETECTIVE, OTHER] {
        let ((status, page), _) = same(key, "GET", "/v1/alerts", Value::Null);
        assert_eq!(status, 200, "{page}");
        let want = match key {
            HQ => 6,
            DISTRICT => 0, // a scoped admin's communities, but none of its lists
            DETECTIVE => 2,
            _ => 1,
        };
        assert_eq!(
            page["alerts"].as_array().unwrap().len(),
            want,
            "key {key}: {page}"
        );
    }
    // A key reading none moves past every alert all the same, other communities'
    // (which it never reads) included, as on `serve`.
    let (_, every) = ask_as(qa, Some(&cluster_keys[HQ]), "GET", "/v1/alerts", "");
    let (_, none) = ask_as(qa, Some(&cluster_keys[DISTRICT]), "GET", "/v1/alerts", "");
    assert_eq!(none["alerts"], json!([]), "{none}");
    assert_eq!(none["next_after"], every["next_after"], "{none} {every}");
    // The newest alerts (a console opening), as on `serve`: oldest first, the cursor
    // past every alert, only what the key may read.
    let ids = |v: &Value| -> Vec<u64> {
        v["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_u64().unwrap())
            .collect()
    };
    let all_ids = ids(&every);
    let (_, newest) = ask_as(
        qa,
        Some(&cluster_keys[HQ]),
        "GET",
        "/v1/alerts?latest=2",
        "",
    );
    assert_eq!(ids(&newest), all_ids[all_ids.len() - 2..], "{newest}");
    assert_eq!(newest["next_after"], every["next_after"], "{newest}");
    let (_, none) = ask_as(
        qa,
        Some(&cluster_keys[DISTRICT]),
        "GET",
        "/v1/alerts?latest=5",
        "",
    );
    assert_eq!(
        (&none["alerts"], &none["next_after"]),
        (&json!([]), &every["next_after"]),
        "{none}"
    );
    let ((_, page), _) = same(HQ, "GET", "/v1/alerts?limit=2", Value::Null);
    let next = page["next_after"].as_u64().unwrap();
    let (_, rest) = ask_as(
        qa2,
        Some(&cluster_keys[HQ]),
        "GET",
        &format!("/v1/alerts?after={next}"),
        "",
    );
    assert_eq!(
        rest["alerts"].as_array().unwrap().len(),
        4,
        "the rest after the cursor: {rest}"
    );
    same(HQ, "GET", "/v1/alerts?after=x", Value::Null);
    same(HQ, "GET", "/v1/alerts?wait=2m", Value::Null);
    same(HQ, "GET", "/v1/alerts?colour=red", Value::Null);
    assert_eq!(same(FEED, "GET", "/v1/alerts", Value::Null).0 .0, 403);
    // The same events again (on the other ingest node): deduplicated, no alert twice.
    let (status, again) = ingest(ia, &cluster_keys[FEED]);
    assert_eq!(
        (status, &again["duplicates"], &again["alerts"]),
        (200, &json!(4), &json!(0)),
        "{again}"
    );
    let (_, all) = ask_as(qa, Some(&cluster_keys[HQ]), "GET", "/v1/alerts", "");
    assert_eq!(all["alerts"].as_array().unwrap().len(), 6, "{all}");
    // Each alert names its event's cluster id once the partition's indexer has
    // appended it (the alert was written first): the id `GET /v1/events/{id}` answers
    // with the alert's event, on either query node.
    let mut named = Value::Null;
    let ids_named = wait_until(Duration::from_secs(20), || {
        named = ask_as(qa, Some(&cluster_keys[HQ]), "GET", "/v1/alerts", "").1;
        named["alerts"]
            .as_array()
            .is_some_and(|a| a.len() == 6 && a.iter().all(|x| x["event_id"].is_u64()))
    });
    assert!(ids_named, "alerts without their event's id: {named}");
    for (i, alert) in named["alerts"].as_array().unwrap().iter().enumerate() {
        let id = alert["event_id"].as_u64().unwrap();
        assert_eq!(alert["event"]["id"], json!(id), "{alert}");
        let on = [qa, qa2][i % 2];
        let (status, event) = ask_as(
            on,
            Some(&cluster_keys[HQ]),
            "GET",
            &format!("/v1/events/{id}"),
            "",
        );
        assert_eq!(status, 200, "{event}");
        for field in ["id", "ts", "community", "device", "subject", "attrs"] {
            assert_eq!(
                event[field], alert["event"][field],
                "{field}: {event} {alert}"
            );
        }
    }
    // A reader waiting (`wait`) as `key` on `on` after `after` while `sent` is sent to
    // ingest node 2 (half a second into the wait): its answer and how long it took.
    let wait_through = |on, key: usize, after: u64, wait: &str, sent: String| {
        let (token, wait) = (cluster_keys[key].clone(), wait.to_string());
        let waiting = std::thread::spawn(move || {
            let asked = std::time::Instant::now();
            let target = format!("/v1/alerts?after={after}&wait={wait}");
            (
                ask_as(on, Some(&token), "GET", &target, ""),
                asked.elapsed(),
            )
        });
        std::thread::sleep(Duration::from_millis(500));
        let (status, _) = ask_as(ia2, Some(&cluster_keys[FEED]), "POST", "/v1/events", &sent);
        assert_eq!(status, 200);
        waiting.join().unwrap()
    };
    // On query node 2, an alert raised meanwhile.
    let last = all["next_after"].as_u64().unwrap();
    let ((status, page), took) = wait_through(qa2, DETECTIVE, last, "20s", event(5, b, "苏E12345"));
    assert_eq!(status, 200);
    let alerts = page["alerts"].as_array().unwrap();
    assert!(
        alerts.len() == 1
            && alerts[0]["name"] == "case 7b"
            && alerts[0]["event"]["subject"] == "苏E12345",
        "{page}"
    );
    assert!(took < Duration::from_secs(10), "answered after {took:?}");
    // A scoped reader is not woken for good by an alert of a community it does not
    // see: it waits its time out and answers none.
    let next = page["next_after"].as_u64().unwrap();
    let ((status, page), took) = wait_through(qa, DETECTIVE, next, "3s", event(9, c, "苏E9ABC1"));
    assert_eq!((status, &page["alerts"]), (200, &json!([])), "{page}");
    assert!(
        took >= Duration::from_millis(2900),
        "answered after {took:?}"
    );
    // A list deleted: no alert from the next event (within the ingest nodes' renewal).
    let seven_b = ask_as(
        qa,
        Some(&cluster_keys[DETECTIVE]),
        "GET",
        "/v1/watchlists",
        "",
    )
    .1["watchlists"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        ask_as(
            qa,
            Some(&cluster_keys[DETECTIVE]),
            "DELETE",
            &format!("/v1/watchlists/{seven_b}"),
            ""
        )
        .0,
        200
    );
    std::thread::sleep(Duration::from_millis(1500));
    let (_, sent) = ask_as(
        ia2,
        Some(&cluster_keys[FEED]),
        "POST",
        "/v1/events",
        &event(6, b, "苏E12345"),
    );
    assert_eq!(sent["alerts"], json!(1), "only the city's list now: {sent}");

    // PostgreSQL hung while a matching event is taken: the log acknowledges it, but
    // its alert cannot be written, so the ingest is answered 503 (within the bound,
    // index.lease_ms); sent again once PostgreSQL answers, the event is a duplicate
    // and its alert is written then, once.
    let (_, before) = ask_as(qa, Some(&cluster_keys[HQ]), "GET", "/v1/alerts", "");
    let before = before["alerts"].as_array().unwrap().len();
    env.pg.freeze();
    let asked = std::time::Instant::now();
    let (status, refused) = ask_as(
        ia,
        Some(&cluster_keys[FEED]),
        "POST",
        "/v1/events",
        &event(7, a, "苏E12345"),
    );
    let took = asked.elapsed();
    env.pg.thaw();
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (503, Some("storage_unavailable")),
        "{refused}"
    );
    assert!(took < Duration::from_secs(10), "answered after {took:?}");
    let mut again = Value::Null;
    assert!(
        wait_until(Duration::from_secs(20), || {
            let (status, v) = ask_as(
                ia,
                Some(&cluster_keys[FEED]),
                "POST",
                "/v1/events",
                &event(7, a, "苏E12345"),
            );
            again = v;
            status == 200
        }),
        "{again}"
    );
    assert_eq!(
        (&again["duplicates"], &again["alerts"]),
        (&json!(1), &json!(1)),
        "{again}"
    );
    let (_, after) = ask_as(qa, Some(&cluster_keys[HQ]), "GET", "/v1/alerts", "");
    let after = after["alerts"].as_array().unwrap();
    assert_eq!(after.len(), before + 1, "{after:?}");
    assert_eq!(
        after.last().unwrap()["event"]["attrs"]["source_id"],
        "watch-7"
    );

    // A client that goes away while its alert is being written (PostgreSQL slow, the
    // events already acknowledged by the log) does not take the alert with it: it is
    // written once PostgreSQL answers, with no re-send.
    env.pg.freeze();
    let body = event(8, a, "苏E12345");
    let mut gone = std::net::TcpStream::connect(ia).unwrap();
    std::io::Write::write_all(
        &mut gone,
        format!(
            "POST /v1/events HTTP/1.1\r\nHost: ingest\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n{body}",
            cluster_keys[FEED],
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let _ = gone.shutdown(std::net::Shutdown::Both);
    drop(gone);
    std::thread::sleep(Duration::from_millis(500));
    env.pg.thaw();
    let mut seen = Value::Null;
    let written = wait_until(Duration::from_secs(20), || {
        seen = ask_as(qa, Some(&cluster_keys[HQ]), "GET", "/v1/alerts", "").1;
        seen["alerts"].as_array().is_some_and(|a| {
            a.iter()
                .any(|x| x["event"]["attrs"]["source_id"] == "watch-8")
        })
    });
    assert!(written, "the alert of a client gone: {seen}");

    // A watchlist row that does not read (its entries not a list: written by hand):
    // the ingest nodes match the other lists, name it in their health, and take
    // events on, rather than refusing every event for one row.
    env.pg.psql(
        "INSERT INTO watchlists (id, name, reason, entries) \
         VALUES ('hand-made', 'hand-made', 'x', '\"not a list\"')",
    );
    let mut health = Value::Null;
    let named = wait_until(Duration::from_secs(20), || {
        health = ask_as(ia2, None, "GET", "/health", "").1;
        health["watchlists_unreadable"]
            .as_array()
            .is_some_and(|u| u.len() == 1 && u[0].as_str().unwrap().starts_with("hand-made: "))
    });
    assert!(named, "{health}");
    let (status, sent) = ask_as(
        ia2,
        Some(&cluster_keys[FEED]),
        "POST",
        "/v1/events",
        &event(10, a, "苏E12345"),
    );
    assert_eq!((status, &sent["alerts"]), (200, &json!(1)), "{sent}");
    // Named in the error of the query nodes' list; deleted by a key that covers it.
    let (status, listed) = ask_as(qa, Some(&cluster_keys[HQ]), "GET", "/v1/watchlists", "");
    assert_eq!(status, 500, "{listed}");
    assert!(listed.to_string().contains("hand-made"), "{listed}");
    let (status, deleted) = ask_as(
        qa,
        Some(&cluster_keys[HQ]),
        "DELETE",
        "/v1/watchlists/hand-made",
        "",
    );
    assert_eq!(status, 200, "{deleted}");
    let (status, listed) = ask_as(qa, Some(&cluster_keys[HQ]), "GET", "/v1/watchlists", "");
    assert_eq!(status, 200, "{listed}");
}
