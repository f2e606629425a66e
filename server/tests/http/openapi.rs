//! The OpenAPI document: every documented route answers its example.

use std::io::{Read, Write};
use std::net::TcpStream;

use serde_json::Value;

use crate::support::{call, enc, get, post, sample, send, start};

#[test]
fn every_route_in_the_openapi_document_answers_its_example() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    assert_eq!(
        post(a, "/v1/events", "application/x-ndjson", &sample()).status,
        200
    );
    let doc = get(a, "/v1/openapi.json").body;
    assert_eq!(doc["openapi"], "3.0.3");
    let paths = doc["paths"].as_object().unwrap();
    let mut documented: Vec<&str> = paths.keys().map(String::as_str).collect();
    documented.sort();
    let mut routed = vec![
        "/health",
        "/metrics",
        "/v1/openapi.json",
        "/v1/audit",
        "/v1/communities",
        "/v1/devices",
        "/v1/admin/stats",
        "/v1/admin/retention",
        "/v1/events/{id}",
        "/v1/feed",
        "/v1/subscriptions",
        "/v1/subscriptions/{id}",
        "/v1/upstreams",
        "/v1/upstreams/{id}",
        "/v1/remote-subscriptions",
        "/v1/remote-subscriptions/{id}",
        "/v1/watchlists",
        "/v1/watchlists/{id}",
        "/v1/alerts",
        "/v1/communities/{code}",
        "/v1/devices/{code}",
        "/v1/events",
        "/v1/trajectory",
        "/v1/cooccurrence",
        "/v1/collision",
        "/v1/search",
        "/v1/frequency",
        "/v1/nocturnal",
        "/v1/first-seen",
        "/v1/overnight",
        "/v1/counts",
        "/v1/images/{id}",
        "/v1/objects/{id}",
        "/v1/keys",
        "/v1/keys/{id}",
        "/v1/whoami",
        "/VIID/System/Register",
        "/VIID/System/UnRegister",
        "/VIID/System/Keepalive",
        "/VIID/System/Time",
        "/VIID/MotorVehicles",
        "/VIID/Faces",
        "/VIID/Persons",
        "/VIID/NonMotorVehicles",
        "/VIID/MotorVehicles/{id}",
        "/VIID/Faces/{id}",
        "/VIID/Persons/{id}",
        "/VIID/NonMotorVehicles/{id}",
        "/VIID/Images",
        "/VIID/APEs",
        "/VIID/Tollgates",
        "/VIID/Dispositions",
        "/VIID/Dispositions/{id}",
        "/VIID/Subscribes",
        "/VIID/Subscribes/{id}",
        "/VIID/SubscribeNotifications",
    ];
    routed.sort();
    assert_eq!(documented, routed);
    // How each operation authenticates: an API key (bearer or X-Api-Key) with its
    // role, GA/T 1400's digest, or nothing.
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["apiKey"]["name"], "X-Api-Key");
    assert_eq!(schemes["gat1400Digest"]["scheme"], "digest");
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            let security = op["security"].to_string();
            let want = if path.starts_with("/VIID/") {
                r#"[{"gat1400Digest":[]}]"#
            } else if ["/health", "/v1/openapi.json"].contains(&path.as_str()) {
                "[]"
            } else {
                assert!(op["x-role"].is_string(), "{method} {path}");
                r#"[{"bearer":[]},{"apiKey":[]}]"#
            };
            assert_eq!(security, want, "{method} {path}");
        }
    }
    // Creating a key closes the open (`--no-auth`, never keyed) server to requests
    // without one: that example goes last.
    let mut operations: Vec<(&String, &String, &Value)> = paths
        .iter()
        // GA/T 1400's routes speak the standard, tested in gat1400.rs.
        .filter(|(path, _)| !path.starts_with("/VIID/"))
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .iter()
                .map(move |(m, op)| (path, m, op))
        })
        .collect();
    operations.sort_by_key(|(path, method, _)| *path == "/v1/keys" && *method == "post");
    for (path, method, op) in operations {
        let status = match method.as_str() {
            "get" => {
                let params = op["parameters"].as_array().unwrap();
                let (in_path, in_query): (Vec<&Value>, Vec<&Value>) =
                    params.iter().partition(|p| p["in"] == "path");
                let path = in_path.iter().fold(path.clone(), |t, p| {
                    t.replace(
                        &format!("{{{}}}", p["name"].as_str().unwrap()),
                        p["example"].as_str().unwrap(),
                    )
                });
                let query: Vec<String> = in_query
                    .into_iter()
                    .map(|p| {
                        format!(
                            "{}={}",
                            p["name"].as_str().unwrap(),
                            enc(p["example"].as_str().unwrap())
                        )
                    })
                    .collect();
                let target = format!("{path}?{}", query.join("&"));
                if path == "/metrics" {
                    let mut s = TcpStream::connect(a).unwrap();
                    write!(
                        s,
                        "GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                    )
                    .unwrap();
                    let mut raw = String::new();
                    s.read_to_string(&mut raw).unwrap();
                    raw[9..12].parse::<u16>().unwrap()
                } else if [
                    "/v1/images/",
                    "/v1/objects/",
                    "/v1/upstreams/",
                    // Asked before its PUT registers it.
                    "/v1/communities/",
                    "/v1/devices/",
                ]
                .iter()
                .any(|p| path.starts_with(p))
                {
                    // The example names nothing stored: the documented 404.
                    let r = get(a, &target);
                    assert_eq!(r.status, 404, "{target}: {}", r.body);
                    assert!(op["responses"]["404"].is_object(), "GET {path}: {op}");
                    assert!(r.body["error"]["code"]
                        .as_str()
                        .unwrap()
                        .starts_with("no_such_"));
                    200
                } else {
                    let r = get(a, &target);
                    assert_eq!(r.status, 200, "{target}: {}", r.body);
                    r.status
                }
            }
            "post" => {
                let example =
                    op["requestBody"]["content"]["application/json"]["example"].to_string();
                let answer = send(
                    a,
                    format!(
                        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{example}",
                        example.len()
                    )
                    .as_bytes(),
                );
                let body = String::from_utf8_lossy(&answer.body);
                // What creates answers 201 (RFC 9110 §15.3.2) with where it is, and
                // documents both.
                let want = match path.as_str() {
                    "/v1/subscriptions"
                    | "/v1/upstreams"
                    | "/v1/remote-subscriptions"
                    | "/v1/watchlists"
                    | "/v1/keys" => 201,
                    _ => 200,
                };
                assert_eq!(answer.status, want, "POST {path}: {body}");
                let documented = &op["responses"][want.to_string()];
                assert!(documented.is_object(), "POST {path} documents {want}: {op}");
                if want == 201 {
                    assert!(op["responses"]["200"].is_null(), "POST {path}: {op}");
                    assert!(documented["headers"]["Location"].is_object(), "{op}");
                    if path == "/v1/keys" {
                        assert!(documented["headers"]["Cache-Control"].is_object(), "{op}");
                    }
                    let created: Value = serde_json::from_str(&body).unwrap();
                    let head = answer.head.to_ascii_lowercase();
                    assert_eq!(
                        sightline_testkit::header(&head, "location"),
                        format!("{path}/{}", created["id"].as_str().unwrap()),
                        "POST {path}"
                    );
                }
                200
            }
            "put" => {
                let target = match op["parameters"][0]["example"].as_str() {
                    Some(code) => path.replace("{code}", code),
                    None => path.clone(),
                };
                let example = &op["requestBody"]["content"]["application/json"]["example"];
                let r = call(
                    a,
                    "PUT",
                    &target,
                    "application/json",
                    example.to_string().as_bytes(),
                );
                // The catalog's examples name what is not yet registered: created,
                // 201 as documented (RFC 9110 §9.3.4).
                let want = match path.contains("{code}") {
                    true => 201,
                    false => 200,
                };
                assert_eq!(r.status, want, "PUT {target}: {}", r.body);
                assert!(
                    op["responses"][want.to_string()].is_object(),
                    "PUT {path} documents {want}: {op}"
                );
                200
            }
            "delete" => {
                let id = op["parameters"][0]["example"].as_str().unwrap();
                let r = call(
                    a,
                    "DELETE",
                    &path.replace("{id}", id),
                    "application/json",
                    b"",
                );
                // The example names nothing that exists: the documented 404.
                assert_eq!(r.status, 404, "DELETE {path}: {}", r.body);
                assert!(r.body["error"]["code"]
                    .as_str()
                    .unwrap()
                    .starts_with("no_such_"));
                200
            }
            other => panic!("unexpected method {other}"),
        };
        assert_eq!(status, 200, "{method} {path}");
    }
}
