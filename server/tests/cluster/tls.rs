//! TLS everywhere (`[tls]` of `cluster.toml`): the engines serve TLS only — NATS
//! with `--tlsverify` (a client certificate required), PostgreSQL with `hostssl`
//! alone in `pg_hba.conf`, SeaweedFS's S3 gateway on HTTPS — and the nodes' own
//! listeners speak it: the public ones (ingest, query) with the node's certificate,
//! the partition listeners mutual TLS (a certificate the cluster's CA signed). Events
//! ingested over HTTPS are committed and answered by query nodes asking each other's
//! replicas and the indexers over mutual TLS; nothing answers in clear, and the
//! partition listeners refuse a client without a node's certificate.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sightline_cluster::tls::TlsConfig;
use sightline_testkit::cluster::{EngineTls, NatsCluster, Postgres, Seaweed};
use sightline_testkit::pki::{tls_connect, Pki};
use sightline_testkit::wait_until;

use super::{Env, PARTITIONS, SERIAL};

/// One request over TLS (`Connection: close`): status and JSON body, or why the
/// exchange failed.
fn https(
    addr: SocketAddr,
    client: &Arc<rustls::ClientConfig>,
    method: &str,
    target: &str,
    body: &str,
) -> std::io::Result<(u16, Value)> {
    let mut s = tls_connect(addr, client)?;
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-ndjson\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw) {
        Ok(_) => {}
        // A peer closing without close_notify after its whole answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e),
    }
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no head in {text:?}")))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

/// Whether a plain HTTP request to `addr` gets an HTTP answer.
fn answers_in_clear(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let mut got = [0u8; 16];
    matches!(s.read(&mut got), Ok(n) if got[..n].starts_with(b"HTTP/1.1 200"))
}

#[test]
fn a_cluster_speaks_tls_between_its_nodes_and_to_its_engines() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let pki = Pki::new("Sightline cluster CA");
    let node = pki.server_leaf();
    let files = EngineTls {
        cert: pki.write("node.pem", &node.cert),
        key: pki.write("node.key", &node.key),
        ca: pki.ca_file(),
    };
    // The test's own connections (the catalog, S3, as `Env` reads them) with the
    // same files: PostgreSQL admits TLS alone.
    sightline_cluster::tls::install(&TlsConfig {
        cert: files.cert.clone(),
        key: files.key.clone(),
        ca: files.ca.clone(),
        plain: Vec::new(),
    })
    .unwrap();
    let mut env = Env::start_with(
        NatsCluster::start_tls(&files),
        Seaweed::start_tls(&files),
        Postgres::start_tls(&files),
    );
    assert!(env.nats.urls()[0].starts_with("tls://"));
    assert!(env.s3.endpoint().starts_with("https://"));
    assert!(env.pg.conninfo().contains("sslmode=require"));
    env.top_extra = format!(
        "[tls]\ncert = {:?}\nkey = {:?}\nca = {:?}\n",
        files.cert, files.key, files.ca
    );
    let (_i1, ingest) = env.ingest("ingest-1");
    let _x1 = env.indexer("index-1", &[]);
    let _x2 = env.indexer("index-2", &[]);
    let (_q1, q1) = env.query_node("query-1");
    let (_q2, q2) = env.query_node("query-2");
    let client = pki.client(None);

    // Nothing in clear on the public listeners.
    assert!(!answers_in_clear(ingest));
    assert!(!answers_in_clear(q1));
    // A GA/T 1400 answer's `RequestURL` says `https` on a TLS listener.
    let (status, answer) = https(ingest, &client, "POST", "/VIID/System/Keepalive", "{}").unwrap();
    assert_eq!(status, 401, "{answer}");
    assert_eq!(
        answer["ResponseStatusObject"]["RequestURL"], "https://127.0.0.1/VIID/System/Keepalive",
        "{answer}"
    );

    // Events over HTTPS, acknowledged once JetStream (over TLS) stored them.
    let mut sent = 0;
    for _ in 0..4 {
        let (body, ids) = env.batch(250);
        let (status, answer) = https(ingest, &client, "POST", "/v1/events", &body).unwrap();
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["stored"], 250, "{answer}");
        env.acked.extend(ids);
        sent += 250;
    }
    // Committed: the indexers reached PostgreSQL and S3 over TLS.
    env.wait_committed();

    // Both query nodes serve their replicas; each asks the other's over mutual TLS.
    let served = |addr| {
        https(addr, &client, "GET", "/health", "")
            .map(|(_, h)| h["replicas"].as_array().map_or(0, Vec::len))
            .unwrap_or(0)
    };
    assert!(
        wait_until(Duration::from_secs(60), || served(q1) + served(q2)
            == PARTITIONS as usize
            && served(q1) > 0
            && served(q2) > 0),
        "replicas: {} + {}",
        served(q1),
        served(q2)
    );
    for q in [q1, q2] {
        let (from, to) = (1_764_547_200_000i64, 1_764_547_200_000i64 + 86_400_000);
        let target = format!("/v1/counts?from={from}&to={to}&by=community");
        let (status, counts) = https(q, &client, "GET", &target, "").unwrap();
        assert_eq!(status, 200, "{counts}");
        let total: u64 = counts["counts"]
            .as_array()
            .unwrap_or_else(|| panic!("{counts}"))
            .iter()
            .map(|b| b["count"].as_u64().unwrap_or(0))
            .sum();
        assert_eq!(total, sent, "{counts}");
        let (_, health) = https(q, &client, "GET", "/health", "").unwrap();
        assert!(
            health["answered"]["replica"].as_u64().unwrap() > 0,
            "no partition asked of the other query node: {health}"
        );
    }

    // The partition listeners: no HTTP in clear, no handshake without a node's
    // certificate, a node's certificate let in (then the partition token is asked).
    let serving = env
        .pg
        .psql("SELECT address FROM query_members ORDER BY address");
    let addresses: Vec<SocketAddr> = serving
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert_eq!(addresses.len(), 2, "{serving}");
    let member = pki.client(Some(&pki.leaf("another node", &["127.0.0.1"])));
    let stranger = Pki::new("Another CA");
    let outsider = stranger.client(Some(&stranger.leaf("intruder", &["127.0.0.1"])));
    let trusting_outsider = pki.client(Some(&stranger.leaf("intruder", &["127.0.0.1"])));
    for a in addresses {
        assert!(!answers_in_clear(a), "{a} answered in clear");
        assert!(
            https(a, &client, "GET", "/health", "").is_err(),
            "{a}: no client certificate"
        );
        assert!(https(a, &outsider, "GET", "/health", "").is_err(), "{a}");
        assert!(
            https(a, &trusting_outsider, "GET", "/health", "").is_err(),
            "{a}: a certificate of another CA"
        );
        let (status, _) = https(a, &member, "GET", "/health", "").unwrap();
        assert_eq!(status, 200);
        let (status, _) = https(a, &member, "POST", "/v1/partition", "x").unwrap();
        assert_eq!(status, 401, "the partition token is still asked for");
    }
    env.assert_exactly_once();
}
