//! TLS with certificates the tests make (rcgen): HTTPS on the listener, client
//! certificates (mTLS) refused without and mapped to a key or a GA/T 1400 code with,
//! `https://` subscription receivers and upstreams, reloading the certificate
//! (in-process and on SIGHUP), and the refusal to serve keys in clear beyond loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use sightline_server::auth::Role;
use sightline_server::tls::TlsFiles;
use sightline_testkit::pki::{tls_connect, Leaf, Pki};

use crate::keys::make_keys;
use crate::support::{ev, start, wait_until, GATE};

/// A server certificate's files (and, with `client_ca`, this CA for clients).
fn server_files(pki: &Pki, leaf: &Leaf, client_ca: bool) -> TlsFiles {
    TlsFiles {
        cert: pki.write("server.pem", &leaf.cert),
        key: pki.write("server.key", &leaf.key),
        client_ca: client_ca.then(|| pki.ca_file()),
    }
}

/// One HTTPS request (`Connection: close`); its status and JSON body, or why the
/// exchange failed (a refused handshake).
fn https(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, Value)> {
    let mut s = tls_connect(addr, config)?;
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: x\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw) {
        Ok(_) => {}
        // A peer that closes without close_notify, after its whole answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e),
    }
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no answer: {text:?}")))?;
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Ok((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

/// The certificate a new connection to `addr` is served, DER.
fn served(addr: SocketAddr, config: &Arc<rustls::ClientConfig>) -> Vec<u8> {
    let s = tls_connect(addr, config).unwrap();
    s.conn.peer_certificates().unwrap()[0].to_vec()
}

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

fn id_of(token: &str) -> &str {
    token.split('_').nth(1).unwrap()
}

#[test]
fn https_serves_the_api_with_a_key_and_plain_http_gets_no_answer() {
    let dir = tempfile::tempdir().unwrap();
    let t = make_keys(dir.path(), &[(Role::Admin, None)]);
    let pki = Pki::new("Test CA");
    let files = server_files(&pki, &pki.server_leaf(), false);
    let server = start(dir.path(), |c| c.tls = Some(files));
    let a = server.addr;
    let client = pki.client(None);

    let auth = format!("Bearer {}", t[0]);
    let (status, body) = https(
        a,
        &client,
        "GET",
        "/v1/admin/stats",
        &[("Authorization", &auth)],
        "",
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, _) = https(a, &client, "GET", "/v1/admin/stats", &[], "").unwrap();
    assert_eq!(status, 401, "no key, no certificate: refused");
    let (status, body) = https(a, &client, "GET", "/VIID/System/Time", &[], "").unwrap();
    assert_eq!(status, 200, "GA/T 1400 on the same listener: {body}");
    assert!(body["SystemTimeObject"]["LocalTime"].is_string(), "{body}");

    // Plain HTTP to the TLS port: never an HTTP answer.
    let mut plain = TcpStream::connect(a).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let _ = plain.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut raw = Vec::new();
    let _ = plain.read_to_end(&mut raw);
    assert!(
        !raw.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );

    // A client that does not trust the server's CA refuses it.
    let other = Pki::new("Other CA");
    assert!(https(a, &other.client(None), "GET", "/health", &[], "").is_err());
}

#[test]
fn mtls_refuses_clients_without_a_certificate_and_maps_one_to_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let t = make_keys(
        dir.path(),
        &[(Role::Admin, None), (Role::Ingest, Some("3205080001"))],
    );
    let pki = Pki::new("Test CA");
    let files = server_files(&pki, &pki.server_leaf(), true);
    let server = start(dir.path(), |c| c.tls = Some(files));
    let a = server.addr;

    // Without a client certificate, or with one another CA signed: no answer.
    assert!(https(a, &pki.client(None), "GET", "/health", &[], "").is_err());
    let stranger = Pki::new("Other CA").leaf(id_of(&t[0]), &[]);
    assert!(https(a, &pki.client(Some(&stranger)), "GET", "/health", &[], "").is_err());

    // A certificate whose CN is the admin key's id is that key.
    let admin = pki.client(Some(&pki.leaf(id_of(&t[0]), &[])));
    let (status, body) = https(a, &admin, "GET", "/v1/admin/stats", &[], "").unwrap();
    assert_eq!(status, 200, "{body}");
    // A DNS name works as well as the CN; the ingest key may not read the stats.
    let ingest = pki.client(Some(
        &pki.leaf("gate-pc", &[&format!("{}.keys", "x"), id_of(&t[1])]),
    ));
    let (status, body) = https(a, &ingest, "GET", "/v1/admin/stats", &[], "").unwrap();
    assert_eq!(status, 403, "{body}");
    // A certificate naming no key: a key is still asked for, and an explicit one wins.
    let nobody = pki.client(Some(&pki.leaf("nobody", &[])));
    let (status, _) = https(a, &nobody, "GET", "/v1/admin/stats", &[], "").unwrap();
    assert_eq!(status, 401);
    let auth = format!("Bearer {}", t[0]);
    let (status, _) = https(
        a,
        &nobody,
        "GET",
        "/v1/admin/stats",
        &[("Authorization", &auth)],
        "",
    )
    .unwrap();
    assert_eq!(status, 200);
    // The refusal is audited under the key the certificate named; the admin (by
    // certificate) reads the log.
    let (status, body) = https(a, &admin, "GET", "/v1/audit?limit=100", &[], "").unwrap();
    assert_eq!(status, 200, "{body}");
    let refusal = body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["key"] == id_of(&t[1]) && e["status"] == 403);
    assert!(refusal, "{body}");
}

#[test]
fn mtls_certificate_of_a_gat1400_device_uploads_without_a_digest() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("Test CA");
    let files = server_files(&pki, &pki.server_leaf(), true);
    let server = start(dir.path(), |c| c.tls = Some(files));
    let a = server.addr;
    // The store never had keys (--no-auth, loopback): the catalog is open.
    let operator = pki.client(Some(&pki.leaf("operator", &[])));
    let put = |target: &str, body: Value| {
        https(a, &operator, "PUT", target, &[], &body.to_string()).unwrap()
    };
    assert_eq!(
        put("/v1/communities/3205080001", json!({"name": "North"})).0,
        201
    );
    let device = json!({"community": "3205080001", "kind": "checkpoint_camera",
                        "direction": "in", "gat1400": {"password": "gate-secret"}});
    let (status, body) = put(&format!("/v1/devices/{GATE}"), device);
    assert_eq!(status, 201, "{body}");

    let upload = json!({"MotorVehicleListObject": {"MotorVehicleObject": [
        {"MotorVehicleID": format!("{GATE}0220210901080000{:012}", 1), "DeviceID": GATE,
         "PassTime": "20210901080000", "PlateNo": "苏E12345"}]}})
    .to_string();
    let upload_as = |client: &Arc<rustls::ClientConfig>| {
        https(
            a,
            client,
            "POST",
            "/VIID/MotorVehicles",
            &[("User-Identify", GATE)],
            &upload,
        )
        .unwrap()
    };
    // Neither registered nor digested, and the certificate names someone else.
    let (status, _) = upload_as(&operator);
    assert_eq!(status, 401);
    // The gate's own certificate proves it.
    let gate = pki.client(Some(&pki.leaf(GATE, &[])));
    let (status, body) = upload_as(&gate);
    assert_eq!(status, 200, "{body}");
    let codes = &body["ResponseStatusListObject"]["ResponseStatusObject"];
    assert_eq!(codes[0]["StatusCode"], 0, "{body}");
}

/// A downstream receiver speaking TLS with `leaf`: records every JSON body POSTed.
fn tls_receiver(leaf: &Leaf) -> (SocketAddr, Arc<Mutex<Vec<Value>>>) {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from_pem_slice(leaf.cert.as_bytes()).unwrap()],
        PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).unwrap(),
    )
    .unwrap();
    let config = Arc::new(config);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let bodies: Arc<Mutex<Vec<Value>>> = Default::default();
    let got = bodies.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { continue };
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
            let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
                continue;
            };
            let mut reader = BufReader::new(rustls::StreamOwned::new(conn, tcp));
            let mut len = 0usize;
            let mut line = String::new();
            let head_ended = loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break false;
                }
                if line == "\r\n" {
                    break true;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            };
            let mut body = vec![0u8; len];
            if !head_ended || reader.read_exact(&mut body).is_err() {
                continue;
            }
            if let Ok(v) = serde_json::from_slice(&body) {
                got.lock().unwrap().push(v);
            }
            let mut s = reader.into_inner();
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            s.conn.send_close_notify();
            let _ = s.flush();
        }
    });
    (addr, bodies)
}

#[test]
fn an_https_receiver_gets_deliveries_verified_against_the_ca_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("Receivers' CA");
    let (trusted, bodies) = tls_receiver(&pki.server_leaf());
    let impostor_ca = Pki::new("Impostor CA");
    let (impostor, impostor_bodies) = tls_receiver(&impostor_ca.server_leaf());
    let bundle = pki.ca_file();
    let server = start(dir.path(), |c| c.tls_ca_bundle = Some(bundle));
    let a = server.addr;
    for (name, addr) in [("trusted", trusted), ("impostor", impostor)] {
        let r = crate::support::post(
            a,
            "/v1/subscriptions",
            "application/json",
            &json!({"url": format!("https://127.0.0.1:{}/hook/{name}", addr.port())}).to_string(),
        );
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let events = [
        ev(
            "2021-09-01T08:00:00+08:00",
            GATE,
            "vehicle",
            "苏E12345",
            "in",
        ),
        ev(
            "2021-09-01T08:01:00+08:00",
            GATE,
            "vehicle",
            "苏E54321",
            "in",
        ),
    ]
    .join("\n");
    let r = crate::support::post(a, "/v1/events", "application/x-ndjson", &events);
    assert_eq!(r.status, 200, "{}", r.body);
    let delivered = || {
        bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| b["events"].as_array().map_or(0, Vec::len))
            .sum::<usize>()
    };
    assert!(
        wait_until(Duration::from_secs(30), || delivered() >= 2),
        "{:?}",
        bodies.lock().unwrap()
    );
    // The receiver whose certificate the bundle does not vouch for gets nothing, and
    // the subscription says why.
    let refused = wait_until(Duration::from_secs(30), || {
        let list = crate::support::get(a, "/v1/subscriptions").body;
        list.to_string().contains("TLS handshake")
    });
    assert!(
        refused,
        "{}",
        crate::support::get(a, "/v1/subscriptions").body
    );
    assert!(impostor_bodies.lock().unwrap().is_empty());
}

#[test]
fn reloading_serves_new_connections_the_new_certificate_and_keeps_the_old_on_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("Test CA");
    let first = pki.server_leaf();
    let files = server_files(&pki, &first, false);
    let server = start(dir.path(), |c| c.tls = Some(files.clone()));
    let tls = server.tls.clone().expect("the server speaks TLS");
    let client = pki.client(None);
    assert_eq!(served(server.addr, &client), der(&first.cert));
    // A connection opened before the reload goes on with its certificate.
    let mut open = tls_connect(server.addr, &client).unwrap();

    let second = pki.server_leaf();
    std::fs::write(&files.cert, &second.cert).unwrap();
    std::fs::write(&files.key, &second.key).unwrap();
    tls.reload().unwrap();
    assert_eq!(served(server.addr, &client), der(&second.cert));

    // A key that does not go with the certificate, then a file that is not PEM: both
    // refused, naming the file; the second certificate stays.
    std::fs::write(&files.key, &pki.server_leaf().key).unwrap();
    let e = tls.reload().unwrap_err().to_string();
    assert!(e.contains("server.key"), "{e}");
    std::fs::write(&files.cert, "garbage").unwrap();
    let e = tls.reload().unwrap_err().to_string();
    assert!(e.contains("server.pem"), "{e}");
    assert_eq!(served(server.addr, &client), der(&second.cert));

    write!(
        open,
        "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = open.read_to_end(&mut raw);
    assert!(
        raw.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
}

/// `sightline serve` with `args` over `data`.
fn serve(data: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sightline"));
    cmd.arg("serve").arg("--data").arg(data).args(args);
    cmd
}

#[test]
fn sighup_reloads_the_binarys_certificate_without_closing_the_listener() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("Test CA");
    let first = pki.server_leaf();
    let files = server_files(&pki, &first, false);
    let (cert, key) = (files.cert.to_str().unwrap(), files.key.to_str().unwrap());
    let (mut child, addr) = sightline_testkit::spawn_listening(&mut serve(
        dir.path(),
        &[
            "--no-auth",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert,
            "--tls-key",
            key,
        ],
    ));
    let client = pki.client(None);
    assert_eq!(served(addr, &client), der(&first.cert));
    let second = pki.server_leaf();
    std::fs::write(&files.cert, &second.cert).unwrap();
    std::fs::write(&files.key, &second.key).unwrap();
    // SAFETY: kill only sends a signal to the child this test started.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGHUP) }, 0);
    let swapped = wait_until(Duration::from_secs(10), || {
        served(addr, &client) == der(&second.cert)
    });
    // A bad file on the next SIGHUP: logged, the server goes on with the second.
    std::fs::write(&files.key, "garbage").unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGHUP) }, 0);
    std::thread::sleep(Duration::from_millis(300));
    let still = served(addr, &client) == der(&second.cert);
    let (status, _) = https(addr, &client, "GET", "/health", &[], "").unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(swapped, "SIGHUP did not swap the certificate");
    assert!(still, "a bad file replaced the certificate");
    assert_eq!(status, 200);
}

#[test]
fn keys_in_clear_beyond_loopback_need_allow_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    make_keys(dir.path(), &[(Role::Admin, None)]);
    let out = serve(dir.path(), &["--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("plain HTTP")
            && err.contains("--allow-plaintext")
            && err.contains("--tls-cert"),
        "{err}"
    );
    // Said explicitly, it serves; so does TLS, without saying anything.
    let (mut child, _) = sightline_testkit::spawn_listening(&mut serve(
        dir.path(),
        &["--listen", "0.0.0.0:0", "--allow-plaintext"],
    ));
    child.kill().unwrap();
    child.wait().unwrap();
    let pki = Pki::new("Test CA");
    let files = server_files(&pki, &pki.server_leaf(), false);
    let (cert, key) = (files.cert.to_str().unwrap(), files.key.to_str().unwrap());
    let mut cmd = serve(
        dir.path(),
        &[
            "--listen",
            "0.0.0.0:0",
            "--tls-cert",
            cert,
            "--tls-key",
            key,
        ],
    );
    let (mut child, _) = sightline_testkit::spawn_listening(&mut cmd);
    child.kill().unwrap();
    child.wait().unwrap();
    // Half a TLS configuration is refused, naming both flags.
    let out = serve(dir.path(), &["--tls-cert", cert]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--tls-key"), "{err}");
}

/// An upstream 视图库 over `https://` (another Sightline with a certificate from the
/// CA of `--tls-ca-bundle`): the registration's digest handshake, the keepalives and
/// the uploads all go over TLS, and the upstream stores what was uploaded.
#[test]
fn an_upstream_over_https_registers_and_takes_the_uploads() {
    const A_ID: &str = "32050000005030000001";
    let pki = Pki::new("Upstreams' CA");
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let files = server_files(&pki, &pki.server_leaf(), false);
    let upstream = start(dir_b.path(), |c| {
        c.tls = Some(files);
        c.viid_server_id = "32050000005030000002".into();
    });
    let b = upstream.addr;
    let client = pki.client(None);
    for (target, body) in [
        ("/v1/communities/3205080001", json!({"name": "North"})),
        (
            "/v1/devices/32050000005030000001",
            json!({"community": "3205080001", "kind": "platform", "gat1400": {"password": "a-pass"}}),
        ),
    ] {
        let (status, answer) = https(b, &client, "PUT", target, &[], &body.to_string()).unwrap();
        assert_eq!(status, 201, "{answer}");
    }
    let bundle = pki.ca_file();
    let server = start(dir_a.path(), |c| c.tls_ca_bundle = Some(bundle));
    let a = server.addr;
    let r = crate::support::post(
        a,
        "/v1/upstreams",
        "application/json",
        &json!({"url": format!("https://127.0.0.1:{}", b.port()), "password": "a-pass",
                "device_id": A_ID, "from": 0, "keepalive_s": 1})
        .to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    let events = [
        ev(
            "2021-09-01T08:00:00+08:00",
            GATE,
            "vehicle",
            "苏E12345",
            "in",
        ),
        ev("2021-09-01T08:01:00+08:00", GATE, "face", "F0001", "in"),
    ]
    .join("\n");
    let r = crate::support::post(a, "/v1/events", "application/x-ndjson", &events);
    assert_eq!(r.status, 200, "{}", r.body);
    let status = || crate::support::get(a, &format!("/v1/upstreams/{id}")).body["status"].clone();
    assert!(
        wait_until(Duration::from_secs(30), || {
            let st = status();
            st["delivered"] == 2 && st["registered"] == true && st["last_keepalive_ms"].is_number()
        }),
        "{}",
        status()
    );
    let (_, feed) = https(b, &client, "GET", "/v1/feed?after=0", &[], "").unwrap();
    let subjects: Vec<&str> = feed["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["vehicle", "face"], "{feed}");
}
