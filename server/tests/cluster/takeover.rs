//! An indexer taking over a partition restores it lazily (metadata and the last
//! owner's uploaded index; `index.segment_cache_bytes`), replays the log from the
//! checkpoint, and fetches an old segment only when it needs it: here the
//! source-id duplicate check of a re-sent event of an old day.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use sightline_testkit::wait_until;

use super::{test_event, Env, Node, PARTITIONS, SERIAL};

/// The `key=value` fields of every `what` line of `node`'s log, by partition (the
/// last line of each partition).
fn lines(node: &Node, what: &str) -> BTreeMap<u64, BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for line in node.log().lines().filter(|l| l.contains(what)) {
        let fields: BTreeMap<String, u64> = line
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
            .collect();
        if let Some(p) = fields.get("partition") {
            out.insert(*p, fields);
        }
    }
    out
}

fn total(of: &BTreeMap<u64, BTreeMap<String, u64>>, field: &str) -> u64 {
    of.values()
        .map(|f| f.get(field).copied().unwrap_or(0))
        .sum()
}

fn most(of: &BTreeMap<u64, BTreeMap<String, u64>>, field: &str) -> u64 {
    of.values()
        .map(|f| f.get(field).copied().unwrap_or(0))
        .max()
        .unwrap_or(0)
}

/// Where indexer `owner` answers (`members.address`): its `/health`.
fn indexer_health(env: &Env, owner: &str) -> Value {
    let address = env.pg.psql(&format!(
        "SELECT address FROM members WHERE owner = '{owner}'"
    ));
    let addr: SocketAddr = address
        .parse()
        .unwrap_or_else(|_| panic!("{owner}: {address:?}"));
    sightline_testkit::get(addr, "/health").body
}

/// Bytes of every committed segment (their ranges in their bundles).
fn committed_segment_bytes(env: &Env) -> (usize, u64) {
    let meta = env.meta();
    let mut rows = Vec::new();
    for p in 0..PARTITIONS {
        rows.extend(env.rt.block_on(meta.segments(p)).unwrap());
    }
    let bytes = rows.iter().map(|r| r.object_range.unwrap().1).sum();
    (rows.len(), bytes)
}

/// Takes the partitions of an owner killed with SIGKILL: waits until `node` serves
/// every partition; the restores and the catch-ups as logged.
fn taken_over(node: &Node) -> (Duration, BTreeMap<u64, BTreeMap<String, u64>>) {
    let started = Instant::now();
    assert!(
        wait_until(Duration::from_secs(300), || lines(
            node,
            "partition caught up"
        )
        .len()
            == PARTITIONS as usize),
        "{} did not serve every partition: {}",
        node.name,
        node.log()
    );
    (started.elapsed(), lines(node, "partition restored"))
}

/// The owner SIGKILLed with events in the log it never committed; the other indexer
/// takes every partition over with a segment cache: it serves having downloaded no
/// segment at its restores, replays the log from the checkpoint, deduplicates
/// re-sends by source id (one of an old day, whose shard it then fetches, and ones
/// of the events it replayed), and has fetched fewer segment bytes than the
/// partitions hold; every acknowledged event is committed exactly once. A third
/// indexer without a cache then takes over from it, downloading every partition
/// whole (the figures before and after: BENCHMARKS.md, "Lazy takeover";
/// `SIGHTLINE_TAKEOVER_EVENTS`, default 8,000, the events of history).
#[test]
fn an_indexer_taking_over_fetches_old_segments_only_when_needed_and_still_deduplicates() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n: usize = std::env::var("SIGHTLINE_TAKEOVER_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8_000)
        .max(4_000);
    const DAYS: i64 = 4;
    let mut env = Env::start();
    // Re-sends past JetStream's dedup window reach the store: its source-id check
    // must catch them.
    env.top_extra = "duplicate_window_s = 1".into();
    env.index_extra = "index_upload_ms = 0\nsegment_cache_bytes = 67108864".into();
    let (_i1, a1) = env.ingest("ingest-1");
    let index1 = env.indexer("index-1", &[]);
    // History: DAYS days, committed by index-1.
    let loading = Instant::now();
    let first_of_day0 = env.next;
    let per_day = n / DAYS as usize;
    for day in 0..DAYS {
        let mut left = per_day;
        while left > 0 {
            let k = left.min(5_000);
            env.post_on(a1, k, day);
            left -= k;
        }
    }
    env.wait_committed();
    let (segments, history_bytes) = committed_segment_bytes(&env);
    eprintln!(
        "{} events of history over {DAYS} days committed in {:?}: {segments} segments, {history_bytes} bytes",
        env.acked.len(),
        loading.elapsed()
    );

    // A quiet moment first (two commit intervals): an owner uploads its index when
    // idle too, once it moved past the last one uploaded (a partition first served
    // after a burst's last commit). Killed right after a burst instead, it leaves the
    // index behind its last commits, whose rows the new owner reads (fetching their
    // segments) before it serves: BENCHMARKS.md, "Lazy takeover".
    std::thread::sleep(Duration::from_millis(2_000));
    // index-1 stopped, events of a new day acknowledged meanwhile (in the log, never
    // committed by it), then killed.
    index1.signal(libc::SIGSTOP);
    let first_of_new_day = env.next;
    for _ in 0..4 {
        env.post_on(a1, 250, DAYS);
    }
    index1.signal(libc::SIGKILL);
    drop(index1);

    let index2 = env.indexer("index-2", &[]);
    let (ready, restored) = taken_over(&index2);
    let caught = lines(&index2, "partition caught up");
    eprintln!(
        "lazy takeover: every partition served {ready:?} after index-2 started; per partition, lease → serving at most {} ms; restores {} segment bytes, {} index bytes, {} lazy segments; fetched {} bytes by then",
        most(&caught, "since_lease_ms"),
        total(&restored, "segment_bytes"),
        total(&restored, "index_bytes"),
        total(&restored, "lazy_segments"),
        most(&caught, "fetched_bytes"),
    );
    assert_eq!(total(&restored, "segment_bytes"), 0, "{restored:?}");
    assert!(
        total(&restored, "lazy_segments") >= segments as u64,
        "{restored:?}"
    );
    assert!(total(&restored, "index_bytes") > 0, "{restored:?}");

    // Re-sends past the log's dedup window: 20 events of day 0, all of one community
    // (one shard of one partition: its segments are fetched for the check), and 100
    // of the events index-2 replayed.
    std::thread::sleep(Duration::from_millis(1_500));
    let mut again = String::new();
    for i in (first_of_day0..first_of_day0 + per_day)
        .filter(|i| i % 10 == 0)
        .take(20)
    {
        again.push_str(&test_event(i, 0).0);
        again.push('\n');
    }
    for i in first_of_new_day..first_of_new_day + 100 {
        again.push_str(&test_event(i, DAYS).0);
        again.push('\n');
    }
    assert_eq!(env.post_body(a1, &again), 120);
    // And new events after them (so a commit covers the re-sends).
    env.post_on(a1, 500, DAYS);
    env.assert_exactly_once();

    let h = indexer_health(&env, "index-2");
    let cache = &h["segment_cache"];
    let fetched = cache["fetched_bytes"].as_u64().unwrap();
    eprintln!("index-2 after the re-sends: {cache}");
    assert_eq!(
        h["serving"].as_array().map(Vec::len),
        Some(PARTITIONS as usize),
        "{h}"
    );
    assert!(fetched > 0, "the day-0 re-sends fetched nothing: {h}");
    assert!(
        fetched < history_bytes,
        "fetched {fetched} of {history_bytes} bytes: {h}"
    );
    assert_eq!(cache["failures"], 0, "{h}");

    // Before the cache: a third indexer with none takes over from index-2 (killed),
    // downloading every partition whole before it serves.
    index2.signal(libc::SIGKILL);
    drop(index2);
    env.index_extra = "index_upload_ms = 0\nsegment_cache_bytes = 0".into();
    let index3 = env.indexer("index-3", &[]);
    let (whole_ready, whole) = taken_over(&index3);
    let caught = lines(&index3, "partition caught up");
    let (_, all_bytes) = committed_segment_bytes(&env);
    eprintln!(
        "whole takeover: every partition served {whole_ready:?} after index-3 started; per partition, lease → serving at most {} ms; restores {} segment bytes (of {all_bytes} committed)",
        most(&caught, "since_lease_ms"),
        total(&whole, "segment_bytes"),
    );
    assert_eq!(total(&whole, "segment_bytes"), all_bytes, "{whole:?}");
    assert_eq!(total(&whole, "lazy_segments"), 0, "{whole:?}");
    assert_eq!(
        indexer_health(&env, "index-3")["segment_cache"],
        Value::Null
    );
    env.post_on(a1, 100, DAYS);
    env.assert_exactly_once();
}

/// Leases of `owner` unexpired now, by the database's clock.
fn live_leases(env: &Env, owner: &str) -> u32 {
    env.pg
        .psql(&format!(
            "SELECT count(*) FROM leases WHERE owner = '{owner}' AND expires_at > now()"
        ))
        .parse()
        .unwrap()
}

/// The new owner's first appends need old segments (re-sends of a day it restored
/// lazily) while S3 hangs (SeaweedFS stopped with SIGSTOP for three leases): the
/// partition's fetch ahead gives up after `segment_fetch_timeout_ms` and the append
/// is tried again with backoff, its lease renewed all the while by its keeper
/// (every lease of the owner unexpired at every look, the epochs unchanged); once S3
/// answers, the segments are fetched ahead in one batch, the append goes through,
/// the store's own fetch never failed, and every acknowledged event is committed
/// exactly once.
#[test]
fn a_new_owner_keeps_its_leases_and_retries_its_first_appends_while_s3_hangs() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut env = Env::start();
    env.top_extra = "duplicate_window_s = 1".into();
    env.index_extra = "index_upload_ms = 0\nsegment_cache_bytes = 67108864\n\
                       segment_fetch_timeout_ms = 1500\nappend_attempts = 10"
        .into();
    let (_i1, a1) = env.ingest("ingest-1");
    let index1 = env.indexer("index-1", &[]);
    let first_of_day0 = env.next;
    env.post_on(a1, 2_000, 0);
    env.post_on(a1, 2_000, 1);
    env.wait_committed();
    // Idle: index-1 uploads its index past its last commit.
    std::thread::sleep(Duration::from_millis(2_000));
    index1.signal(libc::SIGKILL);
    drop(index1);

    let index2 = env.indexer("index-2", &[]);
    taken_over(&index2);
    let epochs = env
        .pg
        .psql("SELECT string_agg(partition || ':' || epoch, ',' ORDER BY partition) FROM leases");
    // Past the log's dedup window: the re-sends reach the store's source-id check.
    std::thread::sleep(Duration::from_millis(1_500));
    env.s3.freeze();
    let frozen = Instant::now();
    let mut again = String::new();
    for i in (first_of_day0..first_of_day0 + 2_000)
        .filter(|i| i % 10 == 0)
        .take(20)
    {
        again.push_str(&test_event(i, 0).0);
        again.push('\n');
    }
    assert_eq!(env.post_body(a1, &again), 20);
    env.post_on(a1, 200, 2);
    let mut looks = 0;
    while frozen.elapsed() < Duration::from_millis(3 * super::LEASE_MS) {
        let live = live_leases(&env, "index-2");
        assert_eq!(
            live,
            PARTITIONS,
            "a lease of index-2 lapsed while S3 hung ({:?} in): {}",
            frozen.elapsed(),
            index2.log()
        );
        looks += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    let retried = index2
        .log()
        .lines()
        .filter(|l| l.contains("append failed; trying again, the lease kept"))
        .count();
    env.s3.thaw();
    eprintln!(
        "S3 hung {:?}: {looks} looks at the leases, {retried} appends tried again",
        frozen.elapsed()
    );
    assert!(retried >= 1, "no append was tried again: {}", index2.log());

    env.post_on(a1, 100, 2);
    env.assert_exactly_once();
    assert_eq!(live_leases(&env, "index-2"), PARTITIONS);
    assert_eq!(
        env.pg.psql(
            "SELECT string_agg(partition || ':' || epoch, ',' ORDER BY partition) FROM leases"
        ),
        epochs,
        "a partition changed hands: {}",
        index2.log()
    );
    let log = index2.log();
    assert!(log.contains("segments fetched ahead of an append"), "{log}");
    assert!(!log.contains("partition task stopped"), "{log}");
    let h = indexer_health(&env, "index-2");
    assert_eq!(h["segment_cache"]["failures"], 0, "{h}");
    assert_eq!(
        h["serving"].as_array().map(Vec::len),
        Some(PARTITIONS as usize),
        "{h}"
    );
}

/// Past `index.append_attempts` (2 here, S3 hung longer than both tries), the
/// partition commits what it has and releases its lease at once rather than leave it
/// to lapse: the indexer takes it again at its next tick (the epoch moved by one),
/// restores it once S3 answers, and every acknowledged event, the re-sends included,
/// is committed exactly once.
#[test]
fn an_append_failing_every_attempt_releases_the_lease_and_the_partition_is_taken_again() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut env = Env::start();
    env.top_extra = "duplicate_window_s = 1".into();
    env.index_extra = "index_upload_ms = 0\nsegment_cache_bytes = 67108864\n\
                       segment_fetch_timeout_ms = 1000\nappend_attempts = 2"
        .into();
    let (_i1, a1) = env.ingest("ingest-1");
    let index1 = env.indexer("index-1", &[]);
    let first_of_day0 = env.next;
    env.post_on(a1, 2_000, 0);
    env.wait_committed();
    std::thread::sleep(Duration::from_millis(2_000));
    index1.signal(libc::SIGKILL);
    drop(index1);
    let index2 = env.indexer("index-2", &[]);
    taken_over(&index2);
    let epoch_sum = |env: &Env| -> i64 {
        env.pg
            .psql("SELECT sum(epoch) FROM leases")
            .parse()
            .unwrap()
    };
    let before = epoch_sum(&env);
    std::thread::sleep(Duration::from_millis(1_500));
    env.s3.freeze();
    let mut again = String::new();
    for i in (first_of_day0..first_of_day0 + 2_000)
        .filter(|i| i % 10 == 0)
        .take(20)
    {
        again.push_str(&test_event(i, 0).0);
        again.push('\n');
    }
    assert_eq!(env.post_body(a1, &again), 20);
    let gave_up = wait_until(Duration::from_secs(30), || {
        index2.log().contains(
            "append failed every attempt; committing what is appended and releasing the lease",
        )
    });
    // Released, not left to lapse: taken again at the indexer's next tick.
    let released = gave_up && wait_until(Duration::from_secs(10), || epoch_sum(&env) > before);
    env.s3.thaw();
    assert!(gave_up, "the append never gave up: {}", index2.log());
    assert!(
        released,
        "the partition was not taken again: {}",
        index2.log()
    );
    env.post_on(a1, 100, 1);
    env.assert_exactly_once();
    // Released cleanly (a failed release would leave it to lapse), taken again.
    assert!(epoch_sum(&env) > before);
    assert!(
        !index2.log().contains("lease not released"),
        "{}",
        index2.log()
    );
    let h = indexer_health(&env, "index-2");
    assert_eq!(
        h["serving"].as_array().map(Vec::len),
        Some(PARTITIONS as usize),
        "{h}"
    );
}
