//! The real server killed with SIGKILL at random moments while writers ingest and a
//! reader queries, then restarted, round after round: every acknowledged event is
//! there exactly once at the end. `SIGHTLINE_KILL_ROUNDS=200 cargo test --release -p
//! sightline-server --test crash_load` for a long run (CI runs 8 rounds).

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

mod common;
use common::spawn_server;

/// One request; `None` when the connection failed (the server was killed).
fn request(addr: SocketAddr, method: &str, target: &str, body: &str) -> Option<(u16, Value)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

#[test]
fn acknowledged_events_survive_sigkill_under_ingest_and_query_load() {
    let rounds: usize = std::env::var("SIGHTLINE_KILL_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(8);
    let dir = tempfile::tempdir().unwrap();
    let acked: Arc<Mutex<HashSet<String>>> = Default::default();
    let mut killed_mid_request = 0;
    for round in 0..rounds {
        let (mut child, addr) = spawn_server(dir.path());
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for w in 0..2 {
            let (acked, stop) = (acked.clone(), stop.clone());
            workers.push(std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let ids: Vec<String> =
                        (0..50).map(|i| format!("r{round}w{w}b{n}e{i}")).collect();
                    let body: Vec<String> = ids
                        .iter()
                        .enumerate()
                        .map(|(i, id)| {
                            json!({"ts": 1_630_454_400_000i64 + (n * 50 + i) as i64 * 100,
                                   "community": "3205080001", "device": "32050801011210000001",
                                   "kind": "vehicle", "subject": format!("苏E{:05}", i),
                                   "attrs": {"source_id": id}})
                            .to_string()
                        })
                        .collect();
                    match request(addr, "POST", "/v1/events", &body.join("\n")) {
                        Some((200, r)) => {
                            assert_eq!(r["rejected"], 0, "{r}");
                            acked.lock().unwrap().extend(ids);
                        }
                        Some((status, r)) => panic!("ingest answered {status}: {r}"),
                        None => return true, // killed mid-request
                    }
                    n += 1;
                }
                false
            }));
        }
        let reader = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let target = "/v1/trajectory?kind=vehicle&subject=%E8%8B%8FE00001&from=0&to=2000000000000";
                    if request(addr, "GET", target, "").is_none() {
                        return;
                    }
                }
            })
        };
        // A pseudo-random moment, different every round.
        let wait = 60 + (round * 7919 % 340) as u64;
        std::thread::sleep(Duration::from_millis(wait));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            killed_mid_request += usize::from(w.join().unwrap());
        }
        reader.join().unwrap();
    }
    // Everything acknowledged is there, once.
    let (mut child, addr) = spawn_server(dir.path());
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut after = 0u64;
    loop {
        let (status, page) = request(
            addr,
            "GET",
            &format!("/v1/feed?after={after}&limit=10000"),
            "",
        )
        .unwrap();
        assert_eq!(status, 200, "{page}");
        let events = page["events"].as_array().unwrap();
        if events.is_empty() {
            break;
        }
        for e in events {
            *seen
                .entry(e["attrs"]["source_id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        after = page["next_after"].as_u64().unwrap();
    }
    let acked = acked.lock().unwrap();
    assert!(
        acked.len() >= rounds * 50,
        "too little was acknowledged to test anything"
    );
    let lost: Vec<&String> = acked
        .iter()
        .filter(|id| !seen.contains_key(*id))
        .take(5)
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged events lost: {lost:?} ({} acked)",
        acked.len()
    );
    let twice: Vec<(&String, &usize)> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "stored more than once: {twice:?}");
    eprintln!(
        "{rounds} SIGKILL rounds: {} events acknowledged, {} stored, {killed_mid_request} writers cut off mid-request",
        acked.len(),
        seen.len()
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
