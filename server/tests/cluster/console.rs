//! What the investigator console needs of a query node beside the queries: its files,
//! `GET /v1/whoami`, the community and device catalog (in PostgreSQL, shared by every
//! query node) and `GET /v1/audit`, each compared with a single-node `sightline serve`
//! given keys of the same roles and scopes; and 501 `not_in_cluster` for what a
//! cluster does not have yet.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use sightline_testkit::{fetch, header, wait_until};

use super::{ask_as, id_of, Answered, Env, SERIAL};

/// A key made with `sightline cluster keys create` (role, communities, name); its
/// token.
pub(super) fn cli_key(
    config: &std::path::Path,
    role: &str,
    communities: Option<&str>,
    name: &str,
) -> String {
    let mut args = vec!["create", "--role", role, "--name", name];
    if let Some(c) = communities {
        args.extend(["--communities", c]);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args(["cluster", "keys"])
        .args(&args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Keys of the same roles, scopes and names (`specs`: role, communities, name) on the
/// cluster (`sightline cluster keys create`, with `cli_config`) and in a single node's
/// store in `single` (not running): (the cluster's tokens, the single node's).
pub(super) fn keys_on_both(
    cli_config: &std::path::Path,
    single: &std::path::Path,
    specs: &[(&str, Option<&str>, &str)],
) -> (Vec<String>, Vec<String>) {
    let cluster = specs
        .iter()
        .map(|(r, s, n)| cli_key(cli_config, r, *s, n))
        .collect();
    use sightline_server::auth::{create, Role};
    let store = sightline_storage::Store::open(single, Default::default()).unwrap();
    let single = specs
        .iter()
        .map(|(role, scope, name)| {
            let scope = scope.map(|s| s.split(',').map(str::to_string).collect());
            create(&store, name, Role::parse(role).unwrap(), scope, 0)
                .unwrap()
                .1
        })
        .collect();
    (cluster, single)
}

/// The audit log of the query node at `addr`, read with admin key `token`.
pub(super) fn audit_page(addr: std::net::SocketAddr, token: &str) -> Value {
    let (status, page) = ask_as(addr, Some(token), "GET", "/v1/audit?limit=10000", "");
    assert_eq!(status, 200, "{page}");
    page
}

/// An answer with what depends on the key's id taken out (a refusal's message names
/// the key): the status, and the body, or the error's code and field.
pub(super) fn comparable((status, body): &Answered) -> (u16, Value) {
    match body.get("error") {
        Some(e) => (*status, json!({"code": e["code"], "field": e["field"]})),
        None => (*status, body.clone()),
    }
}

/// RFC 9110 on a query node as on `serve`, with keys in force: `OPTIONS` (a path,
/// `*`) 204 with `Allow` and a wrong method 405 with `Allow`, both before any key; a
/// method nothing takes 501; HEAD answered as GET with the head only; a transfer
/// coding other than `chunked` 501 before the body.
#[test]
fn a_query_node_answers_options_head_and_wrong_methods_as_serve_does() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut env = Env::start();
    let cli_config = env.config_file("cli");
    let single_dir = tempfile::tempdir().unwrap();
    let (cluster_keys, single_keys) =
        keys_on_both(&cli_config, single_dir.path(), &[("admin", None, "hq")]);
    env.query_extra = "replicas = 0".into();
    let (_q, qa) = env.query_node("query-1");
    let single = sightline_testkit::start(single_dir.path(), |_| {});
    let ask = |a: std::net::SocketAddr, token: Option<&str>, method: &str, target: &str| {
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let r = sightline_testkit::send(
            a,
            format!(
                "{method} {target} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        );
        let head = r.head.to_ascii_lowercase();
        let allow = head
            .lines()
            .find_map(|l| l.strip_prefix("allow: "))
            .map(str::to_string);
        // RFC 9110 §15.3.5: a 204 has no content and no content type.
        if r.status == 204 {
            assert!(!head.contains("content-type:"), "{a}: {head}");
        }
        (r.status, allow, r.body.is_empty())
    };
    // The keys are read by the query node within a renewal.
    assert!(
        sightline_testkit::wait_until(Duration::from_secs(30), || ask(
            qa,
            None,
            "GET",
            "/v1/whoami"
        )
        .0 == 401),
        "the query node never asked for a key"
    );
    for (keyed, method, target, status) in [
        (false, "OPTIONS", "*", 204),
        (false, "OPTIONS", "/v1/trajectory", 204),
        (false, "OPTIONS", "/v1/communities/3205080001", 204),
        (false, "OPTIONS", "/v1/no-such-thing", 404),
        (false, "BREW", "/v1/trajectory", 501),
        (false, "DELETE", "/v1/trajectory", 405),
        (false, "POST", "/v1/whoami", 405),
        (true, "DELETE", "/v1/trajectory", 405),
        (false, "HEAD", "/health", 200),
        (false, "HEAD", "/v1/whoami", 401),
        (true, "HEAD", "/v1/whoami", 200),
        (true, "HEAD", "/v1/communities", 200),
    ] {
        let (ck, sk) = match keyed {
            true => (
                Some(cluster_keys[0].as_str()),
                Some(single_keys[0].as_str()),
            ),
            false => (None, None),
        };
        let cluster = ask(qa, ck, method, target);
        let serve = ask(single.addr, sk, method, target);
        assert_eq!(cluster.0, status, "{method} {target}: cluster {cluster:?}");
        assert_eq!(cluster, serve, "{method} {target}: cluster, serve");
        if method == "HEAD" {
            assert!(cluster.2, "{method} {target}: the head only");
        }
    }
    // A camera sent to a query node is told in GA/T 1400's shape to go to an ingest
    // node (no Bearer challenge it cannot answer).
    let r = sightline_testkit::send(
        qa,
        b"POST /VIID/System/Register HTTP/1.1\r\nHost: x\r\nContent-Type: application/VIID+JSON\r\n\
          Content-Length: 2\r\nConnection: close\r\n\r\n{}",
    );
    let head = r.head.to_ascii_lowercase();
    assert_eq!(r.status, 404, "{head}");
    assert!(
        head.contains("content-type: application/viid+json"),
        "{head}"
    );
    assert!(!head.contains("www-authenticate"), "{head}");
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["ResponseStatusObject"]["StatusCode"], 4, "{body}");
    assert!(
        body["ResponseStatusObject"]["StatusString"]
            .as_str()
            .unwrap()
            .contains("ingest node"),
        "{body}"
    );
    // Conditional PUTs (RFC 9110 §13.1) as on `serve`: create only, replace only.
    for (target, condition, body, want) in [
        (
            "/v1/communities/3205089999",
            "If-Match: *",
            r#"{"name":"x"}"#,
            412,
        ),
        (
            "/v1/communities/3205089999",
            "If-None-Match: *",
            r#"{"name":"x"}"#,
            201,
        ),
        (
            "/v1/communities/3205089999",
            "If-None-Match: *",
            r#"{"name":"y"}"#,
            412,
        ),
        (
            "/v1/communities/3205089999",
            "If-Match: \"t\"",
            r#"{"name":"y"}"#,
            412,
        ),
        (
            "/v1/communities/3205089999",
            "If-Match: *",
            r#"{"name":"y"}"#,
            200,
        ),
        (
            "/v1/devices/32050899991320000001",
            "If-Match: *",
            r#"{"community":"3205089999","kind":"face_camera"}"#,
            412,
        ),
        (
            "/v1/devices/32050899991320000001",
            "If-None-Match: *",
            r#"{"community":"3205089999","kind":"face_camera"}"#,
            201,
        ),
        (
            "/v1/devices/32050899991320000001",
            "If-None-Match: *",
            r#"{"community":"3205089999","kind":"face_camera"}"#,
            412,
        ),
    ] {
        let put = |addr: std::net::SocketAddr, token: &str| {
            let r = sightline_testkit::send(
                addr,
                format!(
                    "PUT {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
                     Content-Type: application/json\r\n{condition}\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
            let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
            (r.status, v["error"]["code"].clone())
        };
        let cluster = put(qa, &cluster_keys[0]);
        assert_eq!(
            cluster,
            put(single.addr, &single_keys[0]),
            "{condition} {target}"
        );
        assert_eq!(cluster.0, want, "{condition} {target}: {cluster:?}");
    }
    // RFC 9112 §6.1: a transfer coding other than `chunked` is 501 naming it, before
    // any key or body, on both.
    for a in [qa, single.addr] {
        let r = sightline_testkit::send(
            a,
            b"POST /v1/watchlists HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Transfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        );
        let body = String::from_utf8_lossy(&r.body);
        assert_eq!(r.status, 501, "{a}: {}", r.head);
        assert!(body.contains("unsupported_transfer_coding"), "{a}: {body}");
    }
}

#[test]
fn query_nodes_serve_the_console_whoami_the_catalog_and_the_audit_log_as_serve() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut env = Env::start();
    let cli_config = env.config_file("cli");
    let (a, b, c) = ("3205080001", "3205080002", "3205080003");
    let ab = format!("{a},{b}");
    // The cluster's keys and the single node's, role for role, scope for scope.
    let specs: [(&str, Option<&str>, &str); 4] = [
        ("admin", None, "hq"),
        ("admin", Some(a), "district admin"),
        ("investigate", Some(&ab), "detective 7"),
        ("ingest", None, "gate feed"),
    ];
    let single_dir = tempfile::tempdir().unwrap();
    let (cluster_keys, single_keys) = keys_on_both(&cli_config, single_dir.path(), &specs);
    let listed_token = "sl_cfg_listed_console_token";
    env.query_extra = format!(
        "replicas = 0\ntoken_sha256 = [\"{}\"]",
        sightline_server::auth::sha256_hex(listed_token.as_bytes())
    );
    let (mut q1, qa) = env.query_node("query-1");
    let mut single = sightline_testkit::start(single_dir.path(), |_| {});
    let s = single.addr;
    const HQ: usize = 0;
    const DISTRICT: usize = 1;
    const DETECTIVE: usize = 2;
    const FEED: usize = 3;
    // Both servers asked the same with the same key: (cluster answer, single's).
    let both = |key: usize, method: &str, target: &str, body: &Value| {
        let body = match body {
            Value::Null => String::new(),
            b => b.to_string(),
        };
        (
            ask_as(qa, Some(&cluster_keys[key]), method, target, &body),
            ask_as(s, Some(&single_keys[key]), method, target, &body),
        )
    };
    let same = |key: usize, method: &str, target: &str, body: Value| -> Answered {
        let (cluster, single) = both(key, method, target, &body);
        assert_eq!(
            comparable(&cluster),
            comparable(&single),
            "{method} {target} {body} as key {key}: cluster {:?}, serve {:?}",
            cluster.1,
            single.1
        );
        cluster
    };

    // The console's files: the same bytes, type, tag and security headers as `serve`.
    for target in [
        "/",
        "/console/app.js",
        "/console/views/watch.js",
        "/console/vendor/uPlot.min.css",
    ] {
        let (status, head, body) = fetch(qa, target, "");
        let (s_status, s_head, s_body) = fetch(s, target, "");
        assert_eq!((status, s_status), (200, 200), "{target}");
        assert!(body == s_body && !body.is_empty(), "{target}: other bytes");
        for name in [
            "content-type",
            "etag",
            "cache-control",
            "content-security-policy",
            "x-content-type-options",
            "referrer-policy",
            "x-frame-options",
        ] {
            assert_eq!(
                header(&head, name),
                header(&s_head, name),
                "{target} {name}"
            );
            assert!(!header(&head, name).is_empty(), "{target} without {name}");
        }
        let etag = header(&head, "etag").to_string();
        let (status, _, body) = fetch(qa, target, &format!("If-None-Match: {etag}\r\n"));
        assert_eq!((status, body.len()), (304, 0), "{target} again");
    }
    assert!(header(&fetch(qa, "/", "").1, "content-security-policy").contains("default-src 'self'"));
    assert_eq!(fetch(qa, "/console/secrets.toml", "").0, 404);

    // whoami: serve's shape, from the cluster's key (or the listed token).
    for (i, (role, scope, name)) in specs.iter().enumerate().take(3) {
        let (cluster, single) = both(i, "GET", "/v1/whoami", &Value::Null);
        let communities: Value = scope
            .map(|s| s.split(',').collect::<Vec<_>>().into())
            .unwrap_or(Value::Null);
        let expect = |token: &str| {
            json!({"id": id_of(token), "name": name, "role": role,
                   "communities": communities, "open": false})
        };
        assert_eq!(cluster, (200, expect(&cluster_keys[i])), "{name}");
        assert_eq!(single, (200, expect(&single_keys[i])), "{name} on serve");
    }
    let (status, me) = ask_as(qa, Some(listed_token), "GET", "/v1/whoami", "");
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["role"], "investigate");
    assert_eq!(
        (&me["communities"], &me["open"]),
        (&Value::Null, &json!(false))
    );
    assert!(
        me["id"].as_str().unwrap().starts_with("token_sha256:"),
        "{me}"
    );
    same(FEED, "GET", "/v1/whoami", Value::Null);
    same(HQ, "GET", "/v1/whoami?verbose=1", Value::Null);
    assert_eq!(ask_as(qa, None, "GET", "/v1/whoami", "").0, 401);

    // The catalog: written through the cluster, refused as `serve` refuses, read back
    // within each key's communities.
    for code in [a, b, c] {
        let body = json!({"name": format!("community {code}"), "district": "Gusu"});
        let (status, v) = same(HQ, "PUT", &format!("/v1/communities/{code}"), body);
        assert_eq!(status, 201, "created: {v}");
    }
    // A vehicle gate (GB/T 28181 type 121) of the community ending in that digit.
    let gate = |community: &str, n: u32| format!("3205080{}01121000{n:04}", &community[9..]);
    let device = |community: &str, direction: &str| {
        json!({"community": community, "device_kind": "checkpoint_camera",
               "direction": direction, "name": "North gate"})
    };
    for (key, community, n, want) in [
        (HQ, a, 1, 201),
        (HQ, b, 1, 201),
        (HQ, c, 1, 201),
        (DISTRICT, a, 2, 201),
        // A scoped admin: not another community's device, nor one moved into its own.
        (DISTRICT, c, 2, 403),
        (DETECTIVE, a, 3, 403),
    ] {
        let (status, v) = same(
            key,
            "PUT",
            &format!("/v1/devices/{}", gate(community, n)),
            device(community, "in"),
        );
        assert_eq!(status, want, "{community} {n}: {v}");
    }
    let (status, _) = same(
        DISTRICT,
        "PUT",
        &format!("/v1/devices/{}", gate(c, 1)),
        device(a, "out"),
    );
    assert_eq!(status, 403, "moving another community's device");
    let (status, _) = same(
        DISTRICT,
        "PUT",
        &format!("/v1/communities/{c}"),
        json!({"name": "x"}),
    );
    assert_eq!(status, 403);
    let (status, v) = same(
        DISTRICT,
        "PUT",
        &format!("/v1/communities/{a}"),
        json!({"name": "Pingjiang Road"}),
    );
    assert_eq!(
        (status, &v["name"]),
        (200, &json!("Pingjiang Road")),
        "replaced"
    );
    // serve's mistakes, field by field.
    let unregistered = format!("/v1/devices/{}", gate(a, 9));
    for (target, body, field) in [
        ("/v1/devices/123".to_string(), device(a, "in"), "code"),
        (
            unregistered.clone(),
            json!({"community": "3205089999", "device_kind": "x"}),
            "community",
        ),
        (
            unregistered.clone(),
            json!({"community": a, "device_kind": "x", "direction": "up"}),
            "direction",
        ),
        (unregistered.clone(), json!({"community": a}), "device_kind"),
        (
            "/v1/communities/a-b".to_string(),
            json!({"name": "x"}),
            "code",
        ),
        (
            format!("/v1/communities/{c}"),
            json!({"district": "Gusu"}),
            "name",
        ),
    ] {
        let (status, v) = same(HQ, "PUT", &target, body.clone());
        assert_eq!(
            (status, v["error"]["field"].as_str()),
            (400, Some(field)),
            "{target} {body}: {v}"
        );
    }
    let (status, v) = same(
        HQ,
        "PUT",
        &format!("/v1/communities/{b}"),
        Value::String("{".into()),
    );
    assert_eq!(status, 400, "{v}");
    // A device's GA/T 1400 login is kept (the ingest nodes' gateway reads it) and
    // answered as `serve` answers it.
    let mut with_login = device(a, "in");
    with_login["gat1400"] = json!({"username": "north-gate", "password": "gate-secret"});
    let (status, v) = same(
        HQ,
        "PUT",
        &format!("/v1/devices/{}", gate(a, 2)),
        with_login,
    );
    assert_eq!(
        (status, &v["gat1400"], &v["gat1400_username"]),
        (200, &json!(true), &json!("north-gate")),
        "{v}"
    );
    // Reads, by every key.
    for key in [HQ, DISTRICT, DETECTIVE] {
        for target in [
            "/v1/communities".to_string(),
            "/v1/devices".to_string(),
            format!("/v1/devices?community={c}"),
            format!("/v1/communities/{a}"),
            format!("/v1/communities/{c}"),
            format!("/v1/devices/{}", gate(a, 2)),
            format!("/v1/devices/{}", gate(c, 1)),
            unregistered.clone(),
            "/v1/communities?all=1".to_string(),
        ] {
            same(key, "GET", &target, Value::Null);
        }
    }
    let (_, listed) = same(DETECTIVE, "GET", "/v1/communities", Value::Null);
    let codes: Vec<&str> = listed["communities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, [a, b], "a scoped key lists its communities only");
    // NDJSON as `Accept` asks, one item a line, with `Vary: Accept`, as on `serve`.
    for target in ["/v1/communities", "/v1/devices", "/v1/keys", "/v1/whoami"] {
        let ask = |addr: std::net::SocketAddr, token: &str| {
            let r = sightline_testkit::send(
                addr,
                format!(
                    "GET {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
                     Accept: application/x-ndjson\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            );
            let head = r.head.to_ascii_lowercase();
            (
                r.status,
                header(&head, "content-type").to_string(),
                header(&head, "vary").to_string(),
                String::from_utf8_lossy(&r.body).lines().count(),
            )
        };
        let cluster = ask(qa, &cluster_keys[HQ]);
        assert_eq!(cluster, ask(s, &single_keys[HQ]), "{target}");
        assert_eq!(
            (cluster.0, cluster.1.as_str(), cluster.2.as_str()),
            (200, "application/x-ndjson", "accept"),
            "{target}"
        );
    }
    let (_, all) = same(HQ, "GET", "/v1/devices", Value::Null);
    assert_eq!(all["devices"].as_array().unwrap().len(), 4, "{all}");
    let (status, v) = same(
        DETECTIVE,
        "GET",
        &format!("/v1/devices/{}", gate(c, 1)),
        Value::Null,
    );
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("no_such_device"))
    );
    same(FEED, "GET", "/v1/communities", Value::Null);
    // An unscoped admin moves a device out of a scoped admin's communities while that
    // admin's PUT of it is between its check and its write: the move is made in a
    // transaction held open (its row locked, not yet visible), so the PUT reads the
    // device in its own community, passes the check, and writes only after the move
    // committed. The write is conditional on the device as checked: it writes
    // nothing, is checked again against the moved device and refused; the device
    // stays where the unscoped admin put it.
    let raced = gate(a, 2);
    let before = env.pg.psql(&format!(
        "SELECT community FROM devices WHERE code = '{raced}'"
    ));
    assert_eq!(before, a);
    let status = std::thread::scope(|s| {
        let mover = s.spawn(|| {
            env.pg.psql(&format!(
                "BEGIN; UPDATE devices SET community = '{c}' WHERE code = '{raced}';
                 SELECT pg_sleep(2); COMMIT;"
            ))
        });
        std::thread::sleep(Duration::from_millis(700));
        let (status, v) = ask_as(
            qa,
            Some(&cluster_keys[DISTRICT]),
            "PUT",
            &format!("/v1/devices/{raced}"),
            &device(a, "out").to_string(),
        );
        mover.join().unwrap();
        assert!(status == 403 || status == 404, "{status} {v}");
        status
    });
    let after = env.pg.psql(&format!(
        "SELECT community || ' ' || direction FROM devices WHERE code = '{raced}'"
    ));
    assert_eq!(
        after,
        format!("{c} in"),
        "the PUT ({status}) undid the move"
    );
    // Put back where the rest of the test (and `serve`) has it.
    env.pg.psql(&format!(
        "UPDATE devices SET community = '{a}' WHERE code = '{raced}'"
    ));
    // Another query node reads the same catalog (PostgreSQL, not the node).
    let (_q2, qa2) = env.query_node("query-2");
    let (status, v) = ask_as(qa2, Some(&cluster_keys[HQ]), "GET", "/v1/devices", "");
    assert_eq!((status, &v), (200, &all), "query-2");

    // What a query node does not answer (ingest is the ingest nodes'): 501 naming it.
    let (status, v) = ask_as(qa, Some(&cluster_keys[HQ]), "POST", "/v1/events", "");
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (501, Some("not_in_cluster")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("POST /v1/events"),
        "{v}"
    );
    // Pictures are the GA/T 1400 gateway's (`gat1400.rs`): an id that is none is 404.
    let (status, v) = ask_as(qa, Some(&cluster_keys[HQ]), "GET", "/v1/images/5", "");
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("no_such_image"))
    );
    let (status, v) = ask_as(qa, Some(&cluster_keys[HQ]), "GET", "/v1/nothing", "");
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("not_found"))
    );

    // The audit log, as `serve` reads it: admins only; a scoped admin sees the entries
    // of keys within its communities only.
    let (status, v) = same(DETECTIVE, "GET", "/v1/audit", Value::Null);
    assert_eq!(status, 403, "{v}");
    same(HQ, "GET", "/v1/audit?limit=1&bogus=1", Value::Null);
    let page = audit_page(qa, &cluster_keys[HQ]);
    let entries = page["entries"].as_array().unwrap();
    assert_eq!(page["last"], entries.last().unwrap()["seq"], "{page}");
    let of = |key: usize, endpoint: &str, status: u64| {
        entries
            .iter()
            .filter(|e| {
                e["key"] == id_of(&cluster_keys[key])
                    && e["endpoint"] == endpoint
                    && e["status"] == status
            })
            .count()
    };
    assert_eq!(of(DETECTIVE, "/v1/whoami", 200), 1, "{page}");
    let put_a = format!("PUT /v1/communities/{a}");
    // A change: begun (status 0), then its outcome (201 for the PUT that created, 200
    // for the one that replaced).
    assert_eq!((of(HQ, &put_a, 0), of(HQ, &put_a, 201)), (1, 1));
    assert_eq!((of(DISTRICT, &put_a, 0), of(DISTRICT, &put_a, 200)), (1, 1));
    let outcome = entries
        .iter()
        .find(|e| e["endpoint"] == put_a && e["status"] == 200)
        .unwrap();
    assert!(
        outcome["params"]
            .as_str()
            .unwrap()
            .contains(&format!("code={a}")),
        "{outcome}"
    );
    assert_eq!(
        of(DETECTIVE, &format!("PUT /v1/devices/{}", gate(a, 3)), 403),
        1,
        "{page}"
    );
    let (_, filtered) = ask_as(
        qa,
        Some(&cluster_keys[HQ]),
        "GET",
        &format!(
            "/v1/audit?key={}&endpoint=devices",
            id_of(&cluster_keys[DETECTIVE])
        ),
        "",
    );
    let filtered = filtered["entries"].as_array().unwrap();
    assert!(
        !filtered.is_empty()
            && filtered
                .iter()
                .all(|e| e["key"] == id_of(&cluster_keys[DETECTIVE])
                    && e["endpoint"].as_str().unwrap().contains("devices")),
        "{filtered:?}"
    );
    let (status, scoped) = ask_as(
        qa,
        Some(&cluster_keys[DISTRICT]),
        "GET",
        "/v1/audit?limit=10000",
        "",
    );
    assert_eq!(status, 200);
    let keys: std::collections::BTreeSet<&str> = scoped["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys.into_iter().collect::<Vec<_>>(),
        [id_of(&cluster_keys[DISTRICT])],
        "a scoped admin reads its communities' keys' entries"
    );

    // PostgreSQL hung (SIGSTOPped with its backends): a catalog read is given up
    // within the bound (index.lease_ms, 3 s here), 503, while what needs no
    // PostgreSQL goes on; thawed, the catalog answers again on a new connection.
    env.pg.freeze();
    let asked = std::time::Instant::now();
    let (status, v) = ask_as(qa, Some(&cluster_keys[HQ]), "GET", "/v1/communities", "");
    let took = asked.elapsed();
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (503, Some("storage_unavailable")),
        "{v}"
    );
    assert!(took < Duration::from_secs(8), "answered after {took:?}");
    assert_eq!(
        ask_as(qa, Some(&cluster_keys[DETECTIVE]), "GET", "/v1/whoami", "").0,
        200
    );
    env.pg.thaw();
    assert!(
        wait_until(Duration::from_secs(20), || {
            ask_as(qa, Some(&cluster_keys[HQ]), "GET", "/v1/devices", "") == (200, all.clone())
        }),
        "the catalog never answered again"
    );

    // An operator's import of a single node's catalog (`sightline cluster catalog
    // import`, the server stopped): what only the single node held is the cluster's
    // too, and what both held stays as it was.
    let d = "3205080004";
    let on_single = |method: &str, target: &str, body: &Value| {
        ask_as(s, Some(&single_keys[HQ]), method, target, &body.to_string())
    };
    let extra = on_single(
        "PUT",
        &format!("/v1/communities/{d}"),
        &json!({"name": "East"}),
    );
    assert_eq!(extra.0, 201, "{}", extra.1);
    let extra = on_single(
        "PUT",
        &format!("/v1/devices/{}", gate(d, 1)),
        &device(d, "out"),
    );
    assert_eq!(extra.0, 201, "{}", extra.1);
    let (communities, devices) = (
        on_single("GET", "/v1/communities", &Value::Null),
        on_single("GET", "/v1/devices", &Value::Null),
    );
    let import = || {
        Command::new(env!("CARGO_BIN_EXE_sightline"))
            .args(["cluster", "catalog", "import", "--data"])
            .arg(single_dir.path())
            .arg("--config")
            .arg(&cli_config)
            .output()
            .unwrap()
    };
    let refused = import();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && said.contains("is the server running?"),
        "{said}"
    );
    single.stop();
    let imported = import();
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&imported.stdout).trim(),
        "4 communities, 5 devices copied into the cluster's catalog"
    );
    for (target, want) in [("/v1/communities", communities), ("/v1/devices", devices)] {
        let got = ask_as(qa, Some(&cluster_keys[HQ]), "GET", target, "");
        assert_eq!(got, want, "{target} after the import");
    }

    // And the chain holds: `sightline audit verify` on the stopped node.
    q1.signal(libc::SIGTERM);
    assert!(q1.exited_within(Duration::from_secs(30)), "{}", q1.log());
    let verify = Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args(["audit", "verify", "--data"])
        .arg(env.dir.path().join("replicas-query-1-audit"))
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

/// The plate whose history the browser pages through, and how many of its sightings
/// lie in the scoped key's communities (two pages and a half) and outside them.
const LONG: &str = "苏E5HT02";
const LONG_INSIDE: usize = 2_500;
const LONG_OUTSIDE: usize = 200;

#[test]
fn the_console_works_against_a_query_node_in_a_real_browser() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (node, chromium, e2e) = sightline_testkit::browser::tools();
    let mut env = Env::start();
    let cli_config = env.config_file("cli");
    let create = |role: &str, communities: Option<&str>, name: &str| {
        cli_key(&cli_config, role, communities, name)
    };
    let community = |d: usize| format!("320508000{d}");
    let scope: Vec<String> = (0..3).map(community).collect();
    let outside = community(3);
    let admin = create("admin", None, "hq");
    let detective = create("investigate", Some(&scope.join(",")), "detective 7");
    env.query_extra = "replicas = 0".into();
    let (_i1, ia) = env.ingest("ingest-1");
    let _x1 = env.indexer("index-1", &[]);
    let (_q1, qa) = env.query_node("query-1");

    // The plate's history over the last three days, mostly in the scope's communities.
    let now = sightline_server::now_ms();
    let (from, to) = (now - 4 * 86_400_000, now);
    let start = now - 3 * 86_400_000;
    let total = LONG_INSIDE + LONG_OUTSIDE;
    let step = 2 * 86_400_000 / total as i64;
    let lines: Vec<String> = (0..total)
        .map(|i| {
            let d = match i < LONG_INSIDE {
                true => i % 3,
                false => 3,
            };
            json!({"ts": start + i as i64 * step, "community": community(d),
                   "device": format!("3205080{d}01121000{:04}", i % 7 + 1), "kind": "vehicle",
                   "subject": LONG, "direction": if i % 2 == 0 { "in" } else { "out" },
                   "attrs": {"source_id": format!("long-{i}")}})
            .to_string()
        })
        .collect();
    for chunk in lines.chunks(1_000) {
        let (status, v) = ask_as(ia, Some(&admin), "POST", "/v1/events", &chunk.join("\n"));
        assert_eq!((status, v["rejected"].as_u64()), (200, Some(0)), "{v}");
    }
    for d in 0..4 {
        let body = json!({"name": format!("community {d}")}).to_string();
        let (status, v) = ask_as(
            qa,
            Some(&admin),
            "PUT",
            &format!("/v1/communities/{}", community(d)),
            &body,
        );
        assert_eq!(status, 201, "{v}");
    }
    let counted = format!("/v1/counts?from={from}&to={to}&by=community");
    let mut seen = Value::Null;
    let all_in = wait_until(Duration::from_secs(120), || {
        seen = ask_as(qa, Some(&admin), "GET", &counted, "").1;
        let n: u64 = seen["counts"]
            .as_array()
            .map_or(0, |c| c.iter().filter_map(|r| r["count"].as_u64()).sum());
        n == total as u64
    });
    assert!(all_in, "the query node never answered every event: {seen}");

    let out = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-e2e-cluster");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let setup = json!({
        "mode": "cluster",
        "base": format!("http://{qa}"),
        "chromium": chromium,
        "out": out,
        "keys": {"admin": admin, "detective": detective},
        "scope": scope,
        "outside": outside,
        "long": LONG,
        "long_sightings": LONG_INSIDE,
        "from": from,
        "to": to,
    });
    sightline_testkit::browser::drive(&node, &e2e, &setup, &out);
}
