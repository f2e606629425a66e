//! The store-wide memory budget (`--memory-budget-mib`): past it the largest memory
//! parts are sealed early, `/metrics` shows it, and no answer changes.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;

use crate::support::{enc, get, post, start};

/// The value of the sample `name` in Prometheus text.
fn metric(a: SocketAddr, name: &str) -> f64 {
    let text = crate::support::send(
        a,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let text = String::from_utf8(text.body).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// Batch `b` of events from a minute ago: community 1 gets five events for each of
/// community 2's, every one with a 300-byte attribute, 50 faces.
fn batch(b: usize, at: &str) -> String {
    let note = "n".repeat(300);
    (0..2000)
        .map(|i| {
            let (community, device) = match i % 6 {
                5 => ("3205080002", "32050801011210000003"),
                _ => ("3205080001", "32050801011210000001"),
            };
            json!({"ts": at, "community": community, "device": device, "kind": "face",
                   "subject": format!("F{:03}", (b * 2000 + i) % 50), "direction": "in",
                   "attrs": {"note": note, "n": (b * 2000 + i) as i64}})
            .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Two servers take the same 8,000 events (~3 MB of memory parts): one with a 1 MiB
/// budget, one with the default 1 GiB. The first seals early (counted on `/metrics`),
/// its memory parts stay under the budget, and every answer — each face's whole
/// trajectory, counts by community — is byte for byte the other's, before and after
/// a restart.
#[test]
fn past_the_memory_budget_memory_parts_are_sealed_early_and_answers_are_unchanged() {
    let (small_dir, large_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // No maintenance pass during the test: only the budget seals.
    let tune = |budget: Option<u64>| {
        move |c: &mut sightline_server::ServerConfig| {
            c.maintenance_every = Duration::from_secs(3600);
            if let Some(b) = budget {
                c.store.memory_budget_bytes = b;
            }
        }
    };
    let mut small = start(small_dir.path(), tune(Some(1 << 20)));
    let mut large = start(large_dir.path(), tune(None));
    let beijing_now = || {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
    };
    let at = beijing_now()
        .checked_sub_signed(chrono::TimeDelta::seconds(60))
        .unwrap()
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .format("%Y-%m-%dT%H:%M:%S%.3f+08:00")
        .to_string();
    for b in 0..4 {
        let body = batch(b, &at);
        for a in [small.addr, large.addr] {
            let r = post(a, "/v1/events", "application/x-ndjson", &body);
            assert_eq!(
                (r.status, &r.body["stored"]),
                (200, &json!(2000)),
                "{}",
                r.body
            );
        }
        let held = metric(small.addr, "sightline_memory_part_bytes");
        assert!(held <= (1 << 20) as f64, "batch {b}: {held} bytes held");
    }
    assert_eq!(
        metric(small.addr, "sightline_memory_budget_bytes"),
        (1 << 20) as f64
    );
    assert!(metric(small.addr, "sightline_memory_budget_seals_total") > 0.0);
    assert_eq!(
        metric(large.addr, "sightline_memory_budget_seals_total"),
        0.0
    );
    let held = metric(large.addr, "sightline_memory_part_bytes");
    assert!(held > (1 << 20) as f64, "the test is past 1 MiB: {held}");
    let stats = get(small.addr, "/v1/admin/stats").body;
    assert!(stats["segments"].as_u64().unwrap() > 0, "{stats}");
    assert!(
        stats["events_in_memory"].as_u64().unwrap() < 8000,
        "{stats}"
    );
    assert_eq!(get(large.addr, "/v1/admin/stats").body["segments"], 0);

    let day = &at[..10];
    let range = format!(
        "from={day}T00:00:00%2B08:00&to={}",
        enc(&beijing_now()
            .checked_add_signed(chrono::TimeDelta::days(1))
            .unwrap()
            .format("%Y-%m-%dT00:00:00+08:00")
            .to_string())
    );
    let answers = |a: SocketAddr| -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = (0..50)
            .map(|s| {
                let target =
                    format!("/v1/trajectory?kind=face&subject=F{s:03}&{range}&limit=10000");
                let answer = crate::support::send(
                    a,
                    format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                );
                assert_eq!(answer.status, 200, "{target}");
                answer.body
            })
            .collect();
        let counts = format!("/v1/counts?{range}&by=community&per=day");
        out.push(serde_json::to_vec(&get(a, &counts).body).unwrap());
        out
    };
    let want = answers(large.addr);
    let events: usize = want[..50]
        .iter()
        .map(|b| {
            let v: serde_json::Value = serde_json::from_slice(b).unwrap();
            v["events"].as_array().unwrap().len()
        })
        .sum();
    assert_eq!(events, 8000, "every event found");
    assert!(
        answers(small.addr) == want,
        "answers differ under the budget"
    );
    small.stop();
    large.stop();
    let mut small = start(small_dir.path(), tune(Some(1 << 20)));
    assert!(
        answers(small.addr) == want,
        "answers differ after a restart"
    );
    small.stop();
}
