//! Crash under load, driven by the load generator: a real server process is killed with
//! SIGKILL at a different moment each round while the generator ingests the synthetic
//! city (binary batches, every event with a unique source id) and runs trajectory and
//! co-occurrence queries; then it is restarted. A batch the generator saw acknowledged
//! is never sent again; one it did not is sent again next round, as a client retries.
//!
//! At the end, checked against the generator's own record of acknowledgements: every
//! acknowledged event is stored exactly once; and once the unacknowledged batches are
//! retried, the crashed store answers every query kind exactly as a store that was fed
//! the same events once, cleanly, with no crash.
//!
//! `SIGHTLINE_KILL_ROUNDS=200 cargo test --release -p sightline-benches --test
//! crash_load -- --nocapture` for a long run (CI runs 8 rounds).
//!
//! `pictures.rs`: the same kills during GA/T 1400 uploads with pictures.
//!
//! The server process is this test binary itself, run again with `SIGHTLINE_CRASH_CHILD`
//! naming the data directory and the test it runs: that test then serves (from the
//! server library) until killed.

mod pictures;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sightline_benches::load::{
    self, ingest_requests, query_stream, Limits, Report, Request, Stream,
};
use sightline_benches::{Traffic, TrafficConfig};
use sightline_storage::AttrValue;
use sightline_testkit::{get, spawn_listening};

pub(crate) const CHILD: &str = "SIGHTLINE_CRASH_CHILD";
const TEST: &str =
    "sigkill_under_generated_load_keeps_every_ack_once_and_answers_like_a_clean_store";

/// Ingest pace while the kills come: about this many events a second.
const INGEST_RATE: f64 = 20_000.0;

/// In the child: serve `dir` on an ephemeral port until killed, sealing often so that
/// kills land in the middle of seals and compactions too.
pub(crate) fn serve_until_killed(dir: &std::ffi::OsStr) -> ! {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut config =
            sightline_server::ServerConfig::new(Path::new(dir), "127.0.0.1:0".parse().unwrap());
        config.maintenance_every = Duration::from_millis(100);
        config.no_auth = true;
        let server = sightline_server::Server::bind(config).await.unwrap();
        // Straight to the pipe: `println!` in a test is captured.
        let mut out = std::io::stdout();
        writeln!(out, "listening on http://{}", server.local_addr()).unwrap();
        out.flush().unwrap();
        server.run(std::future::pending()).await;
    });
    unreachable!("the server runs until killed")
}

/// This binary again, running `test`, as a server over `dir`; its address.
pub(crate) fn spawn(dir: &Path, test: &str) -> (Child, SocketAddr) {
    spawn_listening(
        Command::new(std::env::current_exe().unwrap())
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD, dir),
    )
}

/// The rounds the environment variable `var` asks for, else `default`.
pub(crate) fn rounds_asked(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(default)
}

/// Round `round`: runs `streams` against the server `child` at `addr`, which is killed
/// with SIGKILL after `wait`, for 300 ms past the kill; the report (also on stderr).
pub(crate) fn run_until_killed(
    round: usize,
    mut child: Child,
    addr: SocketAddr,
    wait: Duration,
    streams: Vec<Stream>,
) -> Report {
    let killer = std::thread::spawn(move || {
        std::thread::sleep(wait);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    });
    let limits = Limits {
        duration: wait + Duration::from_millis(300),
        max_events: None,
    };
    let report = load::run(addr, streams, limits, None, |_| {});
    killer.join().unwrap();
    let _ = writeln!(
        std::io::stderr(),
        "round {round}: {}",
        report.text().replace('\n', " | ")
    );
    report
}

/// `requests[i]` for every `i` in `pending`, once each, over two connections at
/// `rate`; marks `acked[i]` for each one answered 200.
fn ingest(
    pending: Vec<usize>,
    requests: &[Request],
    acked: &Arc<Vec<AtomicBool>>,
    rate: Option<f64>,
) -> Stream {
    let acked = acked.clone();
    let batch: Vec<Request> = pending.iter().map(|&i| requests[i].clone()).collect();
    Stream {
        on_ack: Some(Arc::new(move |j| {
            acked[pending[j]].store(true, Ordering::SeqCst)
        })),
        ..Stream::ingest(batch, 2, rate, true)
    }
}

fn unacked(acked: &[AtomicBool]) -> Vec<usize> {
    (0..acked.len())
        .filter(|&i| !acked[i].load(Ordering::SeqCst))
        .collect()
}

/// Every event in the store, by source id, from the change feed.
fn source_ids(addr: SocketAddr) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    let mut after = 0u64;
    loop {
        let r = get(addr, &format!("/v1/feed?after={after}&limit=10000"));
        let page = r.body;
        assert_eq!(r.status, 200, "{page}");
        let events = page["events"].as_array().unwrap();
        if events.is_empty() {
            return seen;
        }
        for e in events {
            let id = e["attrs"]["source_id"].as_str().unwrap().to_string();
            *seen.entry(id).or_default() += 1;
        }
        after = page["next_after"].as_u64().unwrap();
    }
}

/// An answer without event ids (sequence numbers differ between two stores fed the
/// same events in another order).
fn without_ids(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| k.as_str() != "id")
                .map(|(k, v)| (k.clone(), without_ids(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_ids).collect()),
        v => v.clone(),
    }
}

/// Queries of every kind over the city, over each year of it (a query may span at
/// most 400 days).
fn queries(traffic: &Traffic) -> Vec<String> {
    let cfg = traffic.config();
    let end = cfg.start_ms + cfg.days as i64 * 86_400_000;
    let years: Vec<String> = (cfg.start_ms..end)
        .step_by(365 * 86_400_000)
        .map(|from| format!("from={from}&to={}", (from + 365 * 86_400_000).min(end)))
        .collect();
    let mut out = Vec::new();
    for range in &years {
        out.extend(queries_over(traffic, range));
    }
    out
}

fn queries_over(traffic: &Traffic, range: &str) -> Vec<String> {
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let mut subjects = std::collections::BTreeSet::new();
    let mut communities = std::collections::BTreeSet::new();
    for e in traffic
        .day_events(0)
        .into_iter()
        .chain(traffic.day_events(1))
    {
        if e.kind != "access" {
            subjects.insert((e.kind.clone(), e.subject.clone()));
        }
        communities.insert(e.community.clone());
    }
    let mut out = Vec::new();
    // A sample of the subjects: every 7th for trajectories, every 21st for the rest.
    for (i, (kind, subject)) in subjects.iter().enumerate().filter(|(i, _)| i % 7 == 0) {
        let s = enc(subject);
        out.push(format!(
            "/v1/trajectory?kind={kind}&subject={s}&{range}&limit=10000"
        ));
        if i % 21 == 0 {
            out.push(format!(
                "/v1/cooccurrence?kind={kind}&subject={s}&{range}&window=60s"
            ));
            out.push(format!("/v1/overnight?kind={kind}&subject={s}&{range}"));
        }
    }
    for c in &communities {
        for kind in ["vehicle", "face"] {
            out.push(format!(
                "/v1/frequency?community={c}&kind={kind}&{range}&min_count=2"
            ));
            out.push(format!(
                "/v1/first-seen?community={c}&kind={kind}&{range}&lookback=1d"
            ));
        }
    }
    out.push(format!("/v1/counts?{range}&by=device&per=day"));
    out.push(format!("/v1/counts?{range}&by=community&per=hour"));
    out.push(format!("/v1/counts?{range}&by=kind&per=day"));
    out.push(format!("/v1/nocturnal?kind=face&{range}&min_night=1"));
    out
}

#[test]
fn sigkill_under_generated_load_keeps_every_ack_once_and_answers_like_a_clean_store() {
    if let Some(dir) = std::env::var_os(CHILD) {
        serve_until_killed(&dir);
    }
    let rounds = rounds_asked("SIGHTLINE_KILL_ROUNDS", 8);
    // Enough events for every round's ingest at the pace (rounds last 80–400 ms).
    let per_day = 4_000usize;
    let needed = (rounds as f64 * 0.45 * INGEST_RATE) as usize;
    let traffic = Traffic::new(TrafficConfig {
        seed: 11,
        communities: 3,
        days: (needed / per_day + 2) as u32,
        households_per_community: 150,
        visitor_vehicles: 300,
        ..Default::default()
    });
    let mut events: Vec<_> = traffic.days().flatten().collect();
    for (i, e) in events.iter_mut().enumerate() {
        e.attrs
            .insert("source_id".into(), AttrValue::Str(format!("crash-{i:08}")));
    }
    let requests = ingest_requests(&events, 100, true);
    let acked: Arc<Vec<AtomicBool>> = Arc::new(
        (0..requests.len())
            .map(|_| AtomicBool::new(false))
            .collect(),
    );

    let _ = writeln!(
        std::io::stderr(),
        "{} events in {} batches over {} days",
        events.len(),
        requests.len(),
        traffic.config().days
    );
    let dir = tempfile::tempdir().unwrap();
    let mut cut_off = 0u64;
    for round in 0..rounds {
        let (child, addr) = spawn(dir.path(), TEST);
        let wait = Duration::from_millis(80 + (round * 7919 % 320) as u64);
        let streams = vec![
            ingest(unacked(&acked), &requests, &acked, Some(INGEST_RATE)),
            query_stream(&traffic, "trajectory", 1, None),
            query_stream(&traffic, "cooccurrence", 1, None),
        ];
        let report = run_until_killed(round, child, addr, wait, streams);
        let errors: u64 = report.operations[0].errors.values().sum();
        cut_off += errors;
        for kind in report.operations[0].errors.keys() {
            assert!(
                kind.starts_with("io"),
                "round {round}: ingest answered {kind}"
            );
        }
    }
    let acked_in_rounds = requests.len() - unacked(&acked).len();
    assert!(
        acked_in_rounds > 0 && !unacked(&acked).is_empty(),
        "the rounds should acknowledge some batches and leave others ({acked_in_rounds} of {})",
        requests.len()
    );

    // After the last kill: what the generator saw acknowledged is there, once.
    let (mut crashed, addr) = spawn(dir.path(), TEST);
    let stored = source_ids(addr);
    let mut acked_events = 0;
    for (i, r) in requests.iter().enumerate() {
        if !acked[i].load(Ordering::SeqCst) {
            continue;
        }
        let first = i * 100;
        for e in &events[first..first + r.items as usize] {
            let AttrValue::Str(id) = &e.attrs["source_id"] else {
                unreachable!()
            };
            assert_eq!(stored.get(id), Some(&1), "acknowledged event {id}");
            acked_events += 1;
        }
    }
    let durable_unacked = stored.len() - acked_events;

    // The client retries what it never saw acknowledged; then the store holds every
    // event once, and answers exactly like one fed the same events once, cleanly.
    let everything = Limits {
        duration: Duration::from_secs(600),
        max_events: None,
    };
    let retry = ingest(unacked(&acked), &requests, &acked, None);
    let report = load::run(addr, vec![retry], everything, None, |_| {});
    assert!(
        report.operations[0].errors.is_empty(),
        "{:?}",
        report.operations[0].errors
    );
    assert!(unacked(&acked).is_empty());
    let stored = source_ids(addr);
    assert_eq!(stored.len(), events.len());
    assert!(stored.values().all(|&n| n == 1), "an event stored twice");

    let _ = writeln!(
        std::io::stderr(),
        "{rounds} SIGKILL rounds: {acked_in_rounds} of {} batches acknowledged during the \
         rounds ({acked_events} events, each stored once), {durable_unacked} events durable \
         though their answer never arrived, {} requests failed by the kills (cut off or \
         refused); after retrying, all {} events stored once",
        requests.len(),
        cut_off,
        events.len()
    );

    let clean_dir = tempfile::tempdir().unwrap();
    let (mut clean, clean_addr) = spawn(clean_dir.path(), TEST);
    let fresh: Arc<Vec<AtomicBool>> = Arc::new(
        (0..requests.len())
            .map(|_| AtomicBool::new(false))
            .collect(),
    );
    let all = ingest((0..requests.len()).collect(), &requests, &fresh, None);
    let report = load::run(clean_addr, vec![all], everything, None, |_| {});
    assert!(
        report.operations[0].errors.is_empty(),
        "{:?}",
        report.operations[0].errors
    );

    let qs = queries(&traffic);
    let mut nonempty = 0;
    for q in &qs {
        let (a, b) = (get(addr, q), get(clean_addr, q));
        assert_eq!(
            (a.status, b.status),
            (200, 200),
            "{q}: {} / {}",
            a.body,
            b.body
        );
        let (a, b) = (without_ids(&a.body), without_ids(&b.body));
        assert_eq!(a, b, "{q}: the crashed store answers differently");
        nonempty += usize::from(a.to_string().len() > 60);
    }
    assert!(
        nonempty * 2 > qs.len(),
        "most answers should hold something"
    );
    let _ = writeln!(
        std::io::stderr(),
        "{} queries of 7 kinds answered as by a cleanly fed store",
        qs.len()
    );
    crashed.kill().unwrap();
    crashed.wait().unwrap();
    clean.kill().unwrap();
    clean.wait().unwrap();
}
