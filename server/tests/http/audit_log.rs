//! The audit log as an attacker and a full disk meet it: truncation, deletion and a
//! re-hashed rewrite found by `sightline audit verify` and at start (the head kept in
//! the catalog; the witness); ENOSPC refusing queries and changes with 503 and leaving
//! a log that verifies; every change and every refusal on the record.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{json, Value};
use sightline_server::audit::{Head, HeadStore};
use sightline_server::{Server, ServerConfig};
use sightline_storage::io::{Fault, FaultKind, FaultyIo, Op};

use crate::keys::{call_as, make_keys};
use crate::support::{enc, get, post, sample, start, RANGE};

fn verify(data: &Path, key: Option<&Path>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sightline"));
    c.args(["audit", "verify", "--data"]).arg(data);
    if let Some(k) = key {
        c.arg("--witness-key").arg(k);
    }
    c.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Why the server will not start on `data` (with `tune`), or panics if it does.
fn start_refused(data: &Path, tune: impl FnOnce(&mut ServerConfig)) -> String {
    let mut config = ServerConfig::new(data, "127.0.0.1:0".parse().unwrap());
    config.no_auth = true;
    tune(&mut config);
    let rt = tokio::runtime::Runtime::new().unwrap();
    match rt.block_on(Server::bind(config)) {
        Ok(_) => panic!("the server started"),
        Err(e) => e.to_string(),
    }
}

fn trajectory() -> String {
    format!(
        "/v1/trajectory?kind=vehicle&subject={}&{RANGE}",
        enc("苏E12345")
    )
}

/// The entries of `text` chained again from entry 1, every hash recomputed: what
/// someone who edits the log and knows its format writes. Returns the new head.
fn rehash(text: &str) -> (String, Head) {
    let mut at = Head {
        seq: 0,
        hash: "0".repeat(64),
    };
    let mut out = String::new();
    for line in text.lines() {
        let mut v: Value = serde_json::from_str(line).unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("hash");
        o.insert("seq".into(), (at.seq + 1).into());
        o.insert("prev".into(), at.hash.clone().into());
        let hash = sightline_server::auth::sha256_hex(v.to_string().as_bytes());
        v["hash"] = hash.clone().into();
        out.push_str(&v.to_string());
        out.push('\n');
        at = Head {
            seq: at.seq + 1,
            hash,
        };
    }
    (out, at)
}

/// A store with 20 audited queries, stopped cleanly.
fn audited_store(dir: &Path, tune: impl FnOnce(&mut ServerConfig)) {
    let server = start(dir, tune);
    let r = post(server.addr, "/v1/events", "application/x-ndjson", &sample());
    assert_eq!(r.status, 200, "{}", r.body);
    for _ in 0..20 {
        assert_eq!(get(server.addr, &trajectory()).status, 200);
    }
}

#[test]
fn truncation_deletion_and_a_rehashed_rewrite_are_found_by_verify_and_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    audited_store(data, |_| {});
    let ok = verify(data, None);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("20 entries"));
    let log = data.join("audit.log");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();

    // The last 10 lines cut: the chain left verifies on its own, but not to the head.
    std::fs::write(&log, lines[..10].join("\n") + "\n").unwrap();
    let out = verify(data, None);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("audit.log") && e.contains("ends at entry 10") && e.contains("11..=20"),
        "{e}"
    );
    let e = start_refused(data, |_| {});
    assert!(e.contains("audit.log") && e.contains("truncated"), "{e}");

    // Deleted.
    std::fs::remove_file(&log).unwrap();
    let e = stderr(&verify(data, None));
    assert!(
        e.contains("audit.log") && e.contains("ends at entry 0"),
        "{e}"
    );
    assert!(start_refused(data, |_| {}).contains("deleted"));

    // One line dropped and the chain re-hashed (and padded back to 20 entries with a
    // made-up one): every hash and link holds, the entry at the head does not.
    let mut kept: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| !l.contains("\"seq\":7,"))
        .collect();
    kept.push(lines[0]);
    let (rewritten, _) = rehash(&(kept.join("\n") + "\n"));
    std::fs::write(&log, rewritten).unwrap();
    let e = stderr(&verify(data, None));
    assert!(
        e.contains("audit.log") && e.contains("entry 20") && e.contains("rewritten"),
        "{e}"
    );
    assert!(start_refused(data, |_| {}).contains("rewritten"));

    // The real log back: it verifies, and the server numbers on from 21 (the refused
    // starts wrote nothing, and never a number twice).
    std::fs::write(&log, &text).unwrap();
    assert!(verify(data, None).status.success());
    let server = start(data, |_| {});
    assert_eq!(get(server.addr, &trajectory()).status, 200);
    let entries = get(server.addr, "/v1/audit?after=20").body["entries"].clone();
    assert_eq!(entries[0]["seq"], 21, "{entries}");
    assert_eq!(
        entries[0]["prev"],
        serde_json::from_str::<Value>(lines[19]).unwrap()["hash"]
    );
}

#[test]
fn a_witness_key_finds_a_rewrite_that_rehashes_the_chain_and_sets_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let keydir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    let key = keydir.path().join("witness.key");
    std::fs::write(&key, [0x5a; 32]).unwrap();
    audited_store(&data, |c| c.audit_witness_key = Some(key.clone()));
    let ok = verify(&data, Some(&key));
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("witnessed through entry 20"));

    // Entry 3 dropped (and a made-up entry at the end, so the count holds), the chain
    // re-hashed, and the catalog's head set to the new end, as someone who can write
    // the data directory (but not read the key) can.
    let log = data.join("audit.log");
    let text = std::fs::read_to_string(&log).unwrap();
    let mut kept: Vec<&str> = text.lines().filter(|l| !l.contains("\"seq\":3,")).collect();
    kept.push(text.lines().next().unwrap());
    let (rewritten, head) = rehash(&(kept.join("\n") + "\n"));
    std::fs::write(&log, rewritten).unwrap();
    {
        let catalog = sightline_storage::SledCatalog::open(&data.join("catalog")).unwrap();
        catalog.save(&head).unwrap();
    }
    // The head alone cannot tell; the witness can.
    assert!(
        verify(&data, None).status.success(),
        "the limit without a witness"
    );
    let out = verify(&data, Some(&key));
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("audit.witness") && e.contains("rewritten"),
        "{e}"
    );
    let e = start_refused(&data, |c| c.audit_witness_key = Some(key.clone()));
    assert!(e.contains("rewritten"), "{e}");

    // A witness line made with another key is refused as forged.
    let other = keydir.path().join("other.key");
    std::fs::write(&other, [0x11; 32]).unwrap();
    let e = stderr(&verify(&data, Some(&other)));
    assert!(e.contains("does not match the witness key"), "{e}");

    // A key kept in the data directory witnesses nothing: refused.
    let inside = data.join("witness.key");
    std::fs::write(&inside, [0x5a; 32]).unwrap();
    let e = start_refused(&data, |c| c.audit_witness_key = Some(inside.clone()));
    assert!(e.contains("inside the data directory"), "{e}");
}

/// ENOSPC writing the audit line: the query and the change are refused 503
/// `audit_unavailable` (nothing served or changed unaudited), the partial line is cut
/// back, queries answer again when space returns; when even the cut fails, entries are
/// refused until restart, which cuts the torn line and records it. The log verifies
/// after each, and the server restarts.
#[test]
fn a_full_disk_refuses_with_503_and_leaves_a_log_that_verifies_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let io = FaultyIo::new();
    let mut server = start(data, |c| c.store.io = io.clone());
    let a = server.addr;
    let r = post(a, "/v1/events", "application/x-ndjson", &sample());
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(get(a, &trajectory()).status, 200);

    io.inject(Fault::new(Op::Write, "audit.log", FaultKind::ShortWrite));
    for _ in 0..3 {
        let r = get(a, &trajectory());
        assert_eq!(r.status, 503, "{}", r.body);
        assert_eq!(r.body["error"]["code"], "audit_unavailable");
        assert!(r.body["events"].is_null(), "no rows served unaudited");
    }
    let r = call_as(a, None, "PUT", "/v1/admin/retention", r#"{"days": 30}"#);
    assert_eq!(r.status, 503, "{}", r.body);
    io.clear();
    let r = get(a, "/v1/admin/retention");
    assert!(
        r.body["retention_days"].is_null(),
        "the change was not made: {}",
        r.body
    );
    assert_eq!(get(a, &trajectory()).status, 200, "space is back");

    // The write and the cut both fail: refused until restart, even once space returns.
    io.inject(Fault::new(Op::Write, "audit.log", FaultKind::ShortWrite).once());
    io.inject(Fault::new(Op::Truncate, "audit.log", FaultKind::Errno(28)).once());
    assert_eq!(get(a, &trajectory()).status, 503);
    let r = get(a, &trajectory());
    assert_eq!(r.status, 503);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("restart"),
        "{}",
        r.body
    );
    server.stop();

    let out = verify(data, None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("torn last line"));
    // Restarted: the torn line cut and on the record; queries answer.
    let server = start(data, |_| {});
    assert_eq!(get(server.addr, &trajectory()).status, 200);
    let entries = get(server.addr, "/v1/audit").body["entries"].clone();
    let repair = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["endpoint"] == "audit:repair")
        .unwrap_or_else(|| panic!("no repair entry: {entries}"));
    assert!(
        repair["params"].as_str().unwrap().contains("bytes"),
        "{repair}"
    );
    drop(server);
    let out = verify(data, None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("torn"));
}

/// Watchlists, subscriptions, keys, the catalog and retention: each change is on the
/// record before it is made (status 0) and with its outcome; every 401 and 403 too.
#[test]
fn every_change_and_every_refusal_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let t = make_keys(
        dir.path(),
        &[
            (sightline_server::auth::Role::Admin, None),
            (
                sightline_server::auth::Role::Investigate,
                Some("3205080001"),
            ),
            (sightline_server::auth::Role::Ingest, None),
            (sightline_server::auth::Role::Admin, Some("3205080001")),
        ],
    );
    let (city, detective, ingest, scoped_admin) = (&t[0], &t[1], &t[2], &t[3]);
    let id = |t: &str| t.split('_').nth(1).unwrap().to_string();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    let ok = |token: &str, method: &str, target: &str, body: Value| -> Value {
        let r = call_as(a, Some(token), method, target, &body.to_string());
        assert!(r.status < 300, "{method} {target}: {} {}", r.status, r.body);
        r.body
    };
    ok(
        city,
        "PUT",
        "/v1/communities/3205080001",
        json!({"name": "North"}),
    );
    ok(
        city,
        "PUT",
        "/v1/devices/32050801011210000001",
        json!({"community": "3205080001", "device_kind": "checkpoint_camera", "direction": "in",
               "gat1400": {"password": "s3cret-pw"}}),
    );
    ok(city, "PUT", "/v1/admin/retention", json!({"days": null}));
    let w = ok(
        detective,
        "POST",
        "/v1/watchlists",
        json!({"reason": "stolen", "entries": [{"kind": "vehicle", "subject": "苏E12345"}]}),
    );
    let wid = w["id"].as_str().unwrap().to_string();
    ok(
        detective,
        "DELETE",
        &format!("/v1/watchlists/{wid}"),
        json!(null),
    );
    let s = ok(
        city,
        "POST",
        "/v1/subscriptions",
        json!({"url": "http://127.0.0.1:9/hook"}),
    );
    let sid = s["id"].as_str().unwrap().to_string();
    ok(
        city,
        "DELETE",
        &format!("/v1/subscriptions/{sid}"),
        json!(null),
    );
    let k = ok(city, "POST", "/v1/keys", json!({"role": "ingest"}));
    let kid = k["id"].as_str().unwrap().to_string();
    ok(city, "DELETE", &format!("/v1/keys/{kid}"), json!(null));

    // Refusals: no key, an unknown key, a role too low, a scope too narrow.
    assert_eq!(call_as(a, None, "GET", "/v1/communities", "").status, 401);
    assert_eq!(
        call_as(a, Some("sl_0badf00d_x"), "GET", "/v1/watchlists", "").status,
        401
    );
    assert_eq!(
        call_as(a, Some(ingest), "GET", &trajectory(), "").status,
        403
    );
    assert_eq!(
        call_as(
            a,
            Some(scoped_admin),
            "PUT",
            "/v1/admin/retention",
            r#"{"days":1}"#
        )
        .status,
        403
    );
    assert_eq!(
        call_as(a, Some(detective), "GET", "/v1/audit", "").status,
        403
    );

    let entries = call_as(a, Some(city), "GET", "/v1/audit?limit=10000", "").body["entries"]
        .as_array()
        .unwrap()
        .clone();
    let find = |key: &str, endpoint: &str, status: u64| {
        entries
            .iter()
            .find(|e| e["key"] == key && e["endpoint"] == endpoint && e["status"] == status)
            .unwrap_or_else(|| panic!("no entry for {key} {endpoint} {status}: {}", json!(entries)))
            .clone()
    };
    let (c, d) = (id(city), id(detective));
    for (key, endpoint, status) in [
        // Both created: 201 (RFC 9110 §9.3.4).
        (&c, "PUT /v1/communities/3205080001".to_string(), 201),
        (&c, "PUT /v1/devices/32050801011210000001".to_string(), 201),
        (&c, "PUT /v1/admin/retention".to_string(), 200),
        (&d, "POST /v1/watchlists".to_string(), 201),
        (&d, format!("DELETE /v1/watchlists/{wid}"), 200),
        (&c, "POST /v1/subscriptions".to_string(), 201),
        (&c, format!("DELETE /v1/subscriptions/{sid}"), 200),
        (&c, "POST /v1/keys".to_string(), 201),
        (&c, format!("DELETE /v1/keys/{kid}"), 200),
    ] {
        let begun = find(key, &endpoint, 0);
        let done = find(key, &endpoint, status);
        assert!(begun["seq"].as_u64() < done["seq"].as_u64(), "{endpoint}");
    }
    assert!(find(&d, "POST /v1/watchlists", 201)["params"]
        .as_str()
        .unwrap()
        .contains(&format!("id={wid}")));
    // A created key's answer (sent with its `Location`) is summarised all the same.
    assert!(find(&c, "POST /v1/keys", 201)["params"]
        .as_str()
        .unwrap()
        .contains(&format!("id={kid}")));
    find("-", "GET /v1/communities", 401);
    find("-", "GET /v1/watchlists", 401);
    find(&id(ingest), "GET /v1/trajectory", 403);
    find(&id(scoped_admin), "PUT /v1/admin/retention", 403);
    find(&d, "GET /v1/audit", 403);
    // No secret is ever written: not the device's password, not a token.
    let log = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    assert!(!log.contains("s3cret-pw"));
    assert!(!log.contains(k["token"].as_str().unwrap()));
}

/// `GET /v1/audit` filtered by key and endpoint, paged on from `next_after`, and read
/// from the newest entry (`last`), as the console's audit view reads it.
#[test]
fn the_audit_log_is_read_by_key_and_endpoint_and_from_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let t = make_keys(
        dir.path(),
        &[
            (sightline_server::auth::Role::Admin, None),
            (sightline_server::auth::Role::Investigate, None),
        ],
    );
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    let id = |token: &str| token.split('_').nth(1).unwrap().to_string();
    for i in 0..5 {
        let q = format!("/v1/search?q=X{i}");
        assert_eq!(call_as(a, Some(&t[1]), "GET", &q, "").status, 200);
        assert_eq!(
            call_as(a, Some(&t[0]), "GET", "/v1/communities", "").status,
            200
        );
    }
    let read = |q: &str| {
        let r = call_as(a, Some(&t[0]), "GET", &format!("/v1/audit?{q}"), "");
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    };
    let all = read("after=0");
    let last = all["last"].as_u64().unwrap();
    assert_eq!(all["entries"].as_array().unwrap().len() as u64, last);
    assert_eq!(all["next_after"], last);
    // One key's searches: 5, in order, and nothing else.
    let mine = read(&format!("after=0&key={}&endpoint=/v1/search", id(&t[1])));
    let entries = mine["entries"].as_array().unwrap();
    let params: Vec<&str> = entries
        .iter()
        .map(|e| e["params"].as_str().unwrap())
        .collect();
    assert_eq!(params, ["q=X0", "q=X1", "q=X2", "q=X3", "q=X4"]);
    assert!(entries.iter().all(|e| e["key"] == id(&t[1])));
    // Two at a time: `next_after` is where the next page starts.
    let first = read(&format!("after=0&limit=2&key={}", id(&t[1])));
    assert_eq!(first["entries"].as_array().unwrap().len(), 2);
    let next = first["next_after"].as_u64().unwrap();
    assert_eq!(next, first["entries"][1]["seq"].as_u64().unwrap());
    let second = read(&format!("after={next}&limit=2&key={}", id(&t[1])));
    assert_eq!(second["entries"][0]["params"], "q=X2");
    // The newest entries from `last`; a key that made none finds nothing.
    let newest = read(&format!("after={}&limit=2", last - 2));
    assert_eq!(newest["entries"].as_array().unwrap().len(), 2);
    assert_eq!(newest["entries"][1]["seq"], last);
    assert_eq!(read("after=0&key=00000000")["entries"], json!([]));
}
