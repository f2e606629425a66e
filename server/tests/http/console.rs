//! The investigator console's files (served without a key, with their types, tags and
//! security policy) and `GET /v1/whoami`, which the console signs in with. The console
//! itself is driven in a real browser by `server/tests/console.rs`.

use serde_json::json;
use sightline_server::auth::Role;

use crate::keys::{call_as, make_keys};
use crate::support::{get, start};
use sightline_testkit::{fetch, header};

#[test]
fn the_console_is_served_without_a_key_with_types_tags_and_a_strict_policy() {
    let dir = tempfile::tempdir().unwrap();
    make_keys(dir.path(), &[(Role::Admin, None)]);
    let server = start(dir.path(), |_| {});
    let a = server.addr;

    // The page and its files need no key (they hold no data) …
    let (status, head, body) = fetch(a, "/", "");
    assert_eq!(status, 200, "{head}");
    assert_eq!(header(&head, "content-type"), "text/html; charset=utf-8");
    let page = String::from_utf8(body).unwrap();
    assert!(page.contains("/console/app.js"), "{page}");
    let csp = header(&head, "content-security-policy");
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    assert!(csp.contains("connect-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(header(&head, "x-content-type-options"), "nosniff");
    for (file, kind) in [
        ("/console/app.js", "text/javascript; charset=utf-8"),
        (
            "/console/views/subject.js",
            "text/javascript; charset=utf-8",
        ),
        ("/console/console.css", "text/css; charset=utf-8"),
        ("/console/icon.svg", "image/svg+xml"),
        // The vendored chart library, as embedded from server/console/vendor/.
        (
            "/console/vendor/uPlot.iife.min.js",
            "text/javascript; charset=utf-8",
        ),
        ("/console/vendor/uPlot.min.css", "text/css; charset=utf-8"),
    ] {
        let (status, head, body) = fetch(a, file, "");
        assert_eq!(status, 200, "{file}: {head}");
        assert_eq!(header(&head, "content-type"), kind, "{file}");
        assert!(!body.is_empty(), "{file}");
        // … and are revalidated by their tag: the same version is 304 without a body.
        assert_eq!(header(&head, "cache-control"), "no-cache");
        let etag = header(&head, "etag").to_string();
        let (status, again, body) = fetch(a, file, &format!("If-None-Match: {etag}\r\n"));
        assert_eq!((status, body.len()), (304, 0), "{file}: {again}");
        let (status, _, _) = fetch(a, file, "If-None-Match: \"another\"\r\n");
        assert_eq!(status, 200, "{file}");
        // If-None-Match compares weakly (RFC 9110 §13.1.2), in a list too.
        let weak = format!("If-None-Match: \"another\", W/{etag}\r\n");
        let (status, _, body) = fetch(a, file, &weak);
        assert_eq!((status, body.len()), (304, 0), "{file}: {weak}");
    }
    // Nothing but its own files is served under /console/, and the data stays keyed.
    for target in [
        "/console/../Cargo.toml",
        "/console/nothing.js",
        "/console/views",
        "/console/vendor/package.json",
        "/console/vendor/node_modules/uplot/dist/uPlot.esm.js",
    ] {
        let r = get(a, target);
        assert_eq!(r.status, 404, "{target}: {}", r.body);
        assert_eq!(r.body["error"]["code"], "not_found");
    }
    assert_eq!(get(a, "/v1/communities").status, 401);
    // The console is not an API operation: the OpenAPI document leaves it out.
    let doc = get(a, "/v1/openapi.json").body;
    assert!(doc["paths"].get("/").is_none());
    assert!(doc["paths"].get("/console/{file}").is_none());
    assert!(doc["paths"]["/v1/whoami"]["get"]["summary"].is_string());
}

#[test]
fn whoami_names_the_key_its_role_and_communities_and_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let t = make_keys(
        dir.path(),
        &[
            (Role::Admin, None),
            (Role::Investigate, Some("3205080001")),
            (Role::Ingest, None),
        ],
    );
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    let id = |token: &str| token.split('_').nth(1).unwrap().to_string();

    let me = call_as(a, Some(&t[1]), "GET", "/v1/whoami", "");
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(
        me.body,
        json!({"id": id(&t[1]), "name": "t", "role": "investigate",
               "communities": ["3205080001"], "open": false})
    );
    let admin = call_as(a, Some(&t[0]), "GET", "/v1/whoami", "").body;
    assert_eq!(
        (admin["role"].clone(), admin["communities"].clone()),
        (json!("admin"), json!(null))
    );
    // Refused like any keyed request: no key, an unknown one, a role that cannot investigate.
    let r = call_as(a, None, "GET", "/v1/whoami", "");
    assert_eq!(
        (r.status, r.body["error"]["code"].clone()),
        (401, json!("unauthorized"))
    );
    assert_eq!(
        call_as(a, Some("sl_00000000_00"), "GET", "/v1/whoami", "").status,
        401
    );
    assert_eq!(call_as(a, Some(&t[2]), "GET", "/v1/whoami", "").status, 403);
    // Unknown parameters are refused by name.
    let r = call_as(a, Some(&t[1]), "GET", "/v1/whoami?as=admin", "");
    assert_eq!(
        (r.status, r.body["error"]["field"].clone()),
        (400, json!("as"))
    );
    // Each call is on the audit record, under its key.
    let log = call_as(a, Some(&t[0]), "GET", "/v1/audit?after=0&limit=1000", "").body;
    let entries = log["entries"].as_array().unwrap();
    let whoami = |key: &str, status: u64| {
        entries
            .iter()
            .any(|e| e["endpoint"] == "/v1/whoami" && e["key"] == key && e["status"] == status)
    };
    assert!(whoami(&id(&t[1]), 200), "{log}");
    assert!(whoami(&id(&t[1]), 400), "{log}");
    assert!(whoami(&id(&t[0]), 200), "{log}");
}

#[test]
fn an_open_server_says_so_and_needs_no_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let me = get(server.addr, "/v1/whoami");
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(
        me.body,
        json!({"id": "anonymous", "name": "anonymous", "role": "admin", "communities": null, "open": true})
    );
}
