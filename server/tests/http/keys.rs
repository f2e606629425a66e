//! API keys managed live (`POST/GET/DELETE /v1/keys`), and a server that never opens
//! once its store has held a key: revoking the last key closes it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};
use sightline_server::auth::{self, Role};

use crate::support::{get, send, spawn_server, start, Reply};

/// A request with an API key (or none).
pub(crate) fn call_as(
    addr: SocketAddr,
    token: Option<&str>,
    method: &str,
    target: &str,
    body: &str,
) -> Reply {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let answer = send(
        addr,
        format!(
            "{method} {target} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    Reply {
        status: answer.status,
        body: serde_json::from_slice(&answer.body).unwrap_or(Value::Null),
    }
}

/// Keys made with the server stopped, as `sightline keys create` does; their tokens.
pub(crate) fn make_keys(dir: &Path, keys: &[(Role, Option<&str>)]) -> Vec<String> {
    let store = sightline_storage::Store::open(dir, Default::default()).unwrap();
    keys.iter()
        .map(|(role, c)| {
            auth::create(&store, "t", *role, c.map(|c| vec![c.to_string()]), 0)
                .unwrap()
                .1
        })
        .collect()
}

fn id_of(token: &str) -> &str {
    token.split('_').nth(1).unwrap()
}

#[test]
fn an_unscoped_admin_creates_lists_and_revokes_keys_in_force_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let t = make_keys(
        dir.path(),
        &[
            (Role::Admin, None),
            (Role::Admin, Some("3205080001")),
            (Role::Investigate, None),
        ],
    );
    let (city, scoped_admin, detective) = (&t[0], &t[1], &t[2]);
    let server = start(dir.path(), |_| {});
    let a = server.addr;

    // Created: the token once, usable at once, confined to its community.
    let body = json!({"name": "detective 7", "role": "investigate", "communities": ["3205080001"]})
        .to_string();
    let made = call_as(a, Some(city), "POST", "/v1/keys", &body);
    assert_eq!(made.status, 201, "{}", made.body);
    let token = made.body["token"].as_str().unwrap().to_string();
    let id = made.body["id"].as_str().unwrap().to_string();
    assert_eq!(id_of(&token), id);
    assert_eq!(made.body["role"], "investigate");
    assert_eq!(made.body["communities"], json!(["3205080001"]));
    assert_eq!(
        call_as(a, Some(&token), "GET", "/v1/communities", "").status,
        200,
        "in force without a restart"
    );
    assert_eq!(
        call_as(a, Some(&token), "GET", "/v1/keys", "").status,
        403,
        "an investigate key manages no keys"
    );

    // Listed without tokens or their hashes.
    let list = call_as(a, Some(city), "GET", "/v1/keys", "");
    assert_eq!(list.status, 200);
    let keys = list.body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 4);
    let text = list.body.to_string();
    assert!(!text.contains(&token) && !text.contains("sha256") && !text.contains("token"));
    let listed = keys.iter().find(|k| k["id"] == id.as_str()).unwrap();
    assert_eq!(listed["name"], "detective 7");
    assert!(listed["revoked"].is_null());

    // A scoped admin, an investigator, nobody: refused, saying why.
    for (method, target, body) in [
        ("POST", "/v1/keys", body.as_str()),
        ("GET", "/v1/keys", ""),
        ("DELETE", &format!("/v1/keys/{id}"), ""),
    ] {
        let r = call_as(a, Some(scoped_admin), method, target, body);
        assert_eq!(r.status, 403, "{method} {target}: {}", r.body);
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("whole city"),
            "{}",
            r.body
        );
        assert_eq!(
            call_as(a, Some(detective), method, target, body).status,
            403
        );
        assert_eq!(call_as(a, None, method, target, body).status, 401);
    }
    assert_eq!(
        call_as(a, Some(&token), "GET", "/v1/communities", "").status,
        200,
        "the refused revocation changed nothing"
    );

    // Mistakes are named.
    for (bad, field) in [
        (json!({"role": "boss"}), "role"),
        (json!({"name": "x"}), "role"),
        (json!({"role": "admin", "communities": []}), "communities"),
        (
            json!({"role": "admin", "communities": "3205080001"}),
            "communities",
        ),
        (json!({"role": "admin", "token": "sl_mine_1"}), "token"),
    ] {
        let r = call_as(a, Some(city), "POST", "/v1/keys", &bad.to_string());
        assert_eq!(
            (r.status, r.body["error"]["field"].as_str()),
            (400, Some(field)),
            "{bad}"
        );
    }

    // Revoked: refused from the next request on; the record stays, marked.
    let r = call_as(a, Some(city), "DELETE", &format!("/v1/keys/{id}"), "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["revoked"].is_string());
    assert_eq!(
        call_as(a, Some(&token), "GET", "/v1/communities", "").status,
        401
    );
    let r = call_as(a, Some(city), "DELETE", "/v1/keys/ffffffff", "");
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (404, Some("no_such_key"))
    );
    let keys = call_as(a, Some(city), "GET", "/v1/keys", "").body;
    let listed = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap()
        .clone();
    assert!(listed["revoked"].is_string());

    // Audited: the creation and the revocation (begun, then their outcome), never the
    // token; the scoped admin's refusals.
    let entries = call_as(a, Some(city), "GET", "/v1/audit", "").body["entries"]
        .as_array()
        .unwrap()
        .clone();
    let log = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    assert!(
        !log.contains(token.split('_').nth(2).unwrap()),
        "no secret in the log"
    );
    let has = |key: &str, endpoint: &str, status: u64| {
        entries.iter().any(|e| {
            e["key"] == key && e["endpoint"] == endpoint && e["status"].as_u64() == Some(status)
        })
    };
    let city_id = id_of(city);
    assert!(has(city_id, "POST /v1/keys", 0));
    assert!(has(city_id, "POST /v1/keys", 201));
    assert!(entries.iter().any(|e| e["endpoint"] == "POST /v1/keys"
        && e["params"].as_str().unwrap().contains(&format!("id={id}"))));
    assert!(has(city_id, &format!("DELETE /v1/keys/{id}"), 200));
    assert!(has(id_of(scoped_admin), "POST /v1/keys", 403));
    assert!(has(id_of(scoped_admin), "GET /v1/keys", 403));
    assert!(has(id_of(detective), "GET /v1/keys", 403));
    assert!(has("-", "GET /v1/keys", 401));
}

#[test]
fn revoking_the_last_key_closes_the_server_and_it_stays_closed() {
    let dir = tempfile::tempdir().unwrap();
    // `--no-auth` over a store that never had keys: open on loopback.
    let mut server = start(dir.path(), |c| assert!(c.no_auth));
    let a = server.addr;
    assert_eq!(get(a, "/v1/communities").status, 200);
    let made = call_as(
        a,
        None,
        "POST",
        "/v1/keys",
        r#"{"role": "admin", "name": "first"}"#,
    );
    assert_eq!(made.status, 201, "{}", made.body);
    let token = made.body["token"].as_str().unwrap().to_string();
    // From the first key on, keys are checked, --no-auth or not.
    assert_eq!(call_as(a, None, "GET", "/v1/communities", "").status, 401);
    assert_eq!(
        call_as(a, Some(&token), "GET", "/v1/communities", "").status,
        200
    );

    // The last key revoked: nobody gets in, with the old token or without one.
    let id = made.body["id"].as_str().unwrap();
    let r = call_as(a, Some(&token), "DELETE", &format!("/v1/keys/{id}"), "");
    assert_eq!(r.status, 200, "{}", r.body);
    for token in [Some(token.as_str()), None] {
        let r = call_as(a, token, "GET", "/v1/communities", "");
        assert_eq!(r.status, 401, "{}", r.body);
        assert!(r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no API key is active"));
        assert_eq!(
            call_as(a, token, "POST", "/v1/keys", r#"{"role":"admin"}"#).status,
            401
        );
    }
    // Only that the server is up, no sizes.
    let health = get(a, "/health").body;
    assert_eq!(health, json!({"status": "ok"}));
    server.stop();

    // Restarted with --no-auth: still closed (the store has had keys).
    let server = start(dir.path(), |_| {});
    assert_eq!(get(server.addr, "/v1/communities").status, 401);
    drop(server);
    // The binary, likewise.
    let (mut child, addr) = spawn_server(dir.path());
    assert_eq!(
        call_as(addr, None, "GET", "/v1/communities", "").status,
        401
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn without_keys_and_without_no_auth_every_keyed_request_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |c| c.no_auth = false);
    let a = server.addr;
    for (method, target) in [
        ("GET", "/v1/communities"),
        ("POST", "/v1/keys"),
        ("GET", "/v1/audit"),
        ("PUT", "/v1/admin/retention"),
    ] {
        let r = call_as(a, None, method, target, r#"{"days": 1}"#);
        assert_eq!(r.status, 401, "{method} {target}: {}", r.body);
    }
    assert_eq!(get(a, "/health").body, json!({"status": "ok"}));

    // --no-auth is for loopback only.
    let out = Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args(["serve", "--no-auth", "--listen", "0.0.0.0:0", "--data"])
        .arg(dir.path().join("other"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--no-auth") && err.contains("loopback"),
        "{err}"
    );
}
