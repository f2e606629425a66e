//! API keys, roles and community scopes on every route; the audit chain.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use sightline_server::{Server, ServerConfig};

use crate::support::{enc, get, send, start, wait_until, Reply, GATE, RANGE};

/// A request with an API key.
fn call_as(addr: SocketAddr, token: Option<&str>, method: &str, target: &str, body: &str) -> Reply {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let answer = send(
        addr,
        format!(
            "{method} {target} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/x-ndjson\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    Reply {
        status: answer.status,
        body: serde_json::from_slice(&answer.body).unwrap_or(Value::Null),
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
    let searchable = wait_until(Duration::from_secs(30), || {
        call_as(a, Some(&detective), "GET", "/v1/search?q=F002", "").body["subjects"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
    });
    assert!(searchable, "F002 never became searchable");
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
        assert!(
            wide.body.to_string().contains(hidden),
            "{target}: {}",
            wide.body
        );
        // Naming a community outside the key's is refused, naming the parameter: an
        // empty answer would read as "not there" where the truth is "not yours".
        if target.contains("community=3205080002") {
            assert_eq!(
                (narrow.status, narrow.body["error"]["code"].as_str()),
                (403, Some("forbidden")),
                "{target}: {}",
                narrow.body
            );
            assert_eq!(narrow.body["error"]["field"], "community");
            let message = narrow.body["error"]["message"].as_str().unwrap();
            assert!(
                message.starts_with("community: community 3205080002"),
                "{message}"
            );
            continue;
        }
        assert_eq!(narrow.status, 200, "{target}: {}", narrow.body);
        assert!(
            !narrow.body.to_string().contains(hidden),
            "{target} leaks: {}",
            narrow.body
        );
    }
    // The trajectory's NDJSON stream is refused as its page is (not an empty stream).
    let stream = send(
        a,
        format!(
            "GET {traj}&community=3205080002 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {scoped}\r\nAccept: application/x-ndjson\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    let refused: Value = serde_json::from_slice(&stream.body).unwrap_or(Value::Null);
    assert_eq!(
        (stream.status, refused["error"]["field"].as_str()),
        (403, Some("community")),
        "{refused}"
    );
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
    let refused = call_as(a, Some(&scoped), "POST", "/v1/collision", &coll);
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("conditions[0].communities: community 3205080002"),
        "{}",
        refused.body
    );
    // By device only, another community's gate holds nothing for this key.
    let by_device = json!({"kind": "face", "min_conditions": 1, "conditions": [
        {"devices": [other_gate], "from": "2021-09-01T00:00:00+08:00", "to": "2021-09-02T00:00:00+08:00"}]})
    .to_string();
    assert_eq!(
        call_as(a, Some(&scoped), "POST", "/v1/collision", &by_device).body["subjects"],
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
        assert_eq!(call_as(a, Some(&admin), "PUT", &target, &body).status, 201);
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
    // The refused stream is on the record too.
    assert!(
        entries.iter().any(|e| e["key"] == scoped_id
            && e["endpoint"] == "/v1/trajectory"
            && e["status"] == 403
            && e["params"]
                .as_str()
                .unwrap()
                .contains("community=3205080002")),
        "{entries:?}"
    );
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
            // Public routes, and GA/T 1400's (its digest, tested in gat1400.rs).
            if !op["security"].to_string().contains("bearer") {
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
                | (_, "/v1/upstreams" | "/v1/upstreams/{id}")
                | (_, "/v1/remote-subscriptions" | "/v1/remote-subscriptions/{id}")
                | (_, "/v1/keys" | "/v1/keys/{id}")
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

/// The authentication scheme is case-insensitive (RFC 7235 §2.1): `bearer` and
/// `BEARER` are `Bearer`; another scheme is no key.
#[test]
fn the_bearer_scheme_is_case_insensitive() {
    use sightline_server::auth::{self, Role};
    let dir = tempfile::tempdir().unwrap();
    let token = {
        let store = sightline_storage::Store::open(dir.path(), Default::default()).unwrap();
        auth::create(&store, "t", Role::Investigate, None, 0)
            .unwrap()
            .1
    };
    let server = start(dir.path(), |_| {});
    for (header, want) in [
        (format!("Bearer {token}"), 200),
        (format!("bearer {token}"), 200),
        (format!("BEARER  {token}"), 200),
        (format!("Basic {token}"), 401),
    ] {
        let a = send(
            server.addr,
            format!("GET /v1/communities HTTP/1.1\r\nHost: x\r\nAuthorization: {header}\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert_eq!(a.status, want, "{header}");
    }
}

/// A collision body of 4,106 bytes whose `苏` spans byte 4,096, where the audit entry
/// cuts the text it records: answered, and audited with the text cut on a character
/// boundary (it used to panic the handler and skip the audit).
#[test]
fn a_long_body_is_audited_cut_on_a_character_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    // The long text is a community code no one has (the body's fields are all known).
    let head = r#"{"kind":"vehicle","conditions":[{"from":"2021-09-01T00:00:00+08:00","to":"2021-09-02T00:00:00+08:00","communities":["3205080001","#;
    let tail = r#""]}]}"#;
    let pad = 4095 - head.len() - 1;
    let body = format!(
        "{head}\"{}苏{}{tail}",
        "x".repeat(pad),
        "y".repeat(4106 - 4095 - 3 - tail.len())
    );
    assert_eq!(body.len(), 4106);
    assert!(!body.is_char_boundary(4096));
    let r = crate::support::post(a, "/v1/collision", "application/json", &body);
    assert_eq!(r.status, 200, "{}", r.body);
    let entries = get(a, "/v1/audit").body["entries"]
        .as_array()
        .unwrap()
        .clone();
    let last = entries.last().unwrap();
    assert_eq!(last["endpoint"], "/v1/collision");
    assert_eq!(
        last["params"].as_str().unwrap().len(),
        4095,
        "cut before the 苏"
    );
}

/// What a key scoped to community A could do to community B, and to the city: delete
/// B's and the city's watchlists, read other lists' alerts, set the retention of every
/// shard, rename B, put a GA/T 1400 password on B's device, read everyone's audit
/// entries. Each is refused (403), or answered as if it did not exist (404).
#[test]
fn scoped_keys_are_confined_to_their_communities() {
    use sightline_server::auth::{self, Role};
    let dir = tempfile::tempdir().unwrap();
    let (city, admin_a, inv_a, inv_b) = {
        let store = sightline_storage::Store::open(dir.path(), Default::default()).unwrap();
        let mk = |role, c: Option<&str>| {
            auth::create(&store, "t", role, c.map(|c| vec![c.to_string()]), 0)
                .unwrap()
                .1
        };
        (
            mk(Role::Admin, None),
            mk(Role::Admin, Some("3205080001")),
            mk(Role::Investigate, Some("3205080001")),
            mk(Role::Investigate, Some("3205080002")),
        )
    };
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    let as_ = |token: &str, method: &str, target: &str, body: &str| {
        call_as(a, Some(token), method, target, body)
    };
    for c in ["3205080001", "3205080002"] {
        assert_eq!(
            as_(
                &city,
                "PUT",
                &format!("/v1/communities/{c}"),
                r#"{"name":"x"}"#
            )
            .status,
            201
        );
    }
    let b_device = "32050802011210000001";
    let r = as_(
        &city,
        "PUT",
        &format!("/v1/devices/{b_device}"),
        r#"{"community":"3205080002","kind":"checkpoint_camera"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let list = |token: &str, name: &str| {
        let body = json!({"name": name, "reason": format!("{name} reason"), "entries": [{"kind": "vehicle", "subject": "苏E1SCOP"}]});
        let r = as_(token, "POST", "/v1/watchlists", &body.to_string());
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["id"].as_str().unwrap().to_string()
    };
    let hq = list(&city, "hq");
    let b_list = list(&inv_b, "b-list");
    let a_list = list(&inv_a, "a-list");
    // Listing and deleting: only what the key covers.
    let seen = as_(&inv_a, "GET", "/v1/watchlists", "").body;
    let ids: Vec<&str> = seen["watchlists"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [a_list.as_str()], "{seen}");
    for other in [&hq, &b_list] {
        let r = as_(&inv_a, "DELETE", &format!("/v1/watchlists/{other}"), "");
        assert_eq!(r.status, 404, "{}", r.body);
    }
    assert_eq!(
        as_(&city, "GET", "/v1/watchlists", "").body["watchlists"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    // Alerts: an event in A raises the city's list and A's; A's key reads only its own.
    let event = json!({"ts": "2021-09-01T08:00:00+08:00", "community": "3205080001", "device": GATE,
        "kind": "vehicle", "subject": "苏E1SCOP", "direction": "in"});
    let r = as_(&city, "POST", "/v1/events", &event.to_string());
    assert_eq!(r.status, 200, "{}", r.body);
    let alerts = as_(&inv_a, "GET", "/v1/alerts", "").body;
    let names: Vec<&str> = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a-list"], "{alerts}");
    // Paged one at a time, A's cursor moves past the alerts it may not read (the city
    // list's), and is never stuck on a page of them.
    let last = as_(&city, "GET", "/v1/alerts", "").body["next_after"]
        .as_u64()
        .unwrap();
    let (mut after, mut seen) = (0u64, Vec::new());
    for _ in 0..4 {
        let page = as_(
            &inv_a,
            "GET",
            &format!("/v1/alerts?after={after}&limit=1"),
            "",
        )
        .body;
        seen.extend(
            page["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x["name"].as_str().unwrap().to_string()),
        );
        let next = page["next_after"].as_u64().unwrap();
        if next == after {
            break;
        }
        after = next;
    }
    assert_eq!(seen, ["a-list"]);
    assert_eq!(after, last, "past every alert, the city list's too");
    // An alert of another community (B's, which A never reads): A's cursor moves past
    // it too, rather than reading the log from there again on every poll.
    let event_b = json!({"ts": "2021-09-01T08:00:00+08:00", "community": "3205080002",
        "device": "32050802011210000001", "kind": "vehicle", "subject": "苏E1SCOP",
        "direction": "in"});
    let r = as_(&city, "POST", "/v1/events", &event_b.to_string());
    assert_eq!(r.status, 200, "{}", r.body);
    let last = as_(&city, "GET", "/v1/alerts", "").body["next_after"]
        .as_u64()
        .unwrap();
    assert!(last > after, "the city's list alerted in B");
    let page = as_(&inv_a, "GET", &format!("/v1/alerts?after={after}"), "").body;
    assert_eq!(page["alerts"], json!([]), "{page}");
    assert_eq!(page["next_after"], last, "{page}");
    // The newest alerts (a console opening), oldest first, and the cursor past all.
    let every = as_(&city, "GET", "/v1/alerts", "").body;
    let ids = |v: &Value| -> Vec<u64> {
        v["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_u64().unwrap())
            .collect()
    };
    let all_ids = ids(&every);
    let newest = as_(&city, "GET", "/v1/alerts?latest=2", "").body;
    assert_eq!(ids(&newest), all_ids[all_ids.len() - 2..], "{newest}");
    assert_eq!(newest["next_after"], last, "{newest}");
    let mine = as_(&inv_a, "GET", "/v1/alerts?latest=50", "").body;
    let names: Vec<&str> = mine["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a-list"], "only what A may read: {mine}");
    assert_eq!(mine["next_after"], last, "{mine}");
    for bad in [
        "latest=0",
        "latest=1001",
        "latest=5&after=1",
        "latest=5&wait=1s",
    ] {
        let r = as_(&inv_a, "GET", &format!("/v1/alerts?{bad}"), "");
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert_eq!(r.body["error"]["field"], "latest", "{bad}: {}", r.body);
    }
    // City-wide powers and B's catalog are refused to A's admin.
    let r = as_(&admin_a, "PUT", "/v1/admin/retention", r#"{"days": 1}"#);
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        as_(
            &admin_a,
            "PUT",
            "/v1/communities/3205080002",
            r#"{"name":"renamed"}"#
        )
        .status,
        403
    );
    let r = as_(
        &admin_a,
        "PUT",
        &format!("/v1/devices/{b_device}"),
        r#"{"community":"3205080002","kind":"checkpoint_camera","gat1400":{"password":"mine"}}"#,
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let r = as_(
        &admin_a,
        "PUT",
        &format!("/v1/devices/{b_device}"),
        r#"{"community":"3205080001","kind":"checkpoint_camera","gat1400":{"password":"mine"}}"#,
    );
    assert_eq!(
        r.status, 403,
        "moving B's device into A is changing B's: {}",
        r.body
    );
    assert_eq!(
        as_(
            &admin_a,
            "PUT",
            "/v1/communities/3205080001",
            r#"{"name":"fine"}"#
        )
        .status,
        200
    );
    // Audit: A's admin reads the entries of A's keys only.
    let _ = as_(
        &inv_b,
        "GET",
        &format!("/v1/trajectory?kind=vehicle&subject=x&{RANGE}"),
        "",
    );
    let _ = as_(
        &inv_a,
        "GET",
        &format!("/v1/trajectory?kind=vehicle&subject=x&{RANGE}"),
        "",
    );
    let all = as_(&city, "GET", "/v1/audit", "").body["entries"]
        .as_array()
        .unwrap()
        .len();
    let entries = as_(&admin_a, "GET", "/v1/audit", "").body;
    let keys: std::collections::BTreeSet<&str> = entries["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    let a_key = inv_a.split('_').nth(1).unwrap();
    assert!(
        keys.iter().all(|k| *k == a_key || admin_a.contains(*k)),
        "{keys:?}"
    );
    assert!(entries["entries"].as_array().unwrap().len() < all);
}
