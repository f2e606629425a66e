//! Read replicas restoring only metadata and fetching segments on first use into a
//! bounded cache (`query.segment_cache_bytes`), against `serve` fed the same events.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use sightline_cluster::objects::Objects;
use sightline_testkit::wait_until;

use super::{ask, city_queries, query_city, Env, Node, PARTITIONS, SERIAL};

fn health(addr: SocketAddr) -> Value {
    sightline_testkit::get(addr, "/health").body
}

fn serving_all(addr: SocketAddr) -> bool {
    health(addr)["replicas"].as_array().map_or(0, Vec::len) == PARTITIONS as usize
}

/// The `key=value` fields of every "replica restored" line of `node`'s log, by
/// partition.
fn restores(node: &Node) -> BTreeMap<u64, BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for line in node
        .log()
        .lines()
        .filter(|l| l.contains("replica restored"))
    {
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

fn total(restored: &BTreeMap<u64, BTreeMap<String, u64>>, field: &str) -> u64 {
    restored
        .values()
        .map(|f| f.get(field).copied().unwrap_or(0))
        .sum()
}

#[test]
fn a_replica_with_a_small_segment_cache_starts_without_segments_and_answers_as_a_single_node() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut env = Env::start();
    // Every commit uploads the index, so a replica restored after the last one reads
    // no row to build its own.
    env.index_extra = "index_upload_ms = 0".into();
    let (_i1, a1) = env.ingest("ingest-1");
    let _x1 = env.indexer("index-1", &[]);
    let single_dir = tempfile::tempdir().unwrap();
    let single = sightline_testkit::start(single_dir.path(), |_| {});
    let mut events: Vec<Value> = Vec::new();
    for day in query_city() {
        for body in day {
            let r =
                sightline_testkit::post(single.addr, "/v1/events", "application/x-ndjson", &body);
            assert_eq!(r.status, 200, "{}", r.body);
            env.post_body(a1, &body);
            events.extend(
                body.lines()
                    .map(|l| serde_json::from_str::<Value>(l).unwrap()),
            );
        }
    }
    env.wait_committed_events(events.len() as u64);

    // The committed segments: every row keeps its facts; the cache is bound below
    // the partitions' bytes (a quarter), so answering every family evicts.
    let meta = env.meta();
    let mut rows = Vec::new();
    for p in 0..PARTITIONS {
        rows.extend(env.rt.block_on(meta.segments(p)).unwrap());
    }
    assert!(rows
        .iter()
        .all(|r| r.facts.is_some() && r.object_range.is_some()));
    let lens: Vec<u64> = rows.iter().map(|r| r.object_range.unwrap().1).collect();
    let segment_bytes: u64 = lens.iter().sum();
    let largest = *lens.iter().max().unwrap();
    let capacity = (segment_bytes / 4).max(largest);
    assert!(
        capacity < segment_bytes,
        "{} segments of {segment_bytes} bytes",
        rows.len()
    );
    eprintln!(
        "{} events, {} segments, {segment_bytes} bytes committed; cache bound {capacity}",
        events.len(),
        rows.len()
    );

    // One query node holding every partition's replica, started after the commits:
    // each replica restores from the catalog.
    env.query_extra = format!("segment_cache_bytes = {capacity}");
    let started = Instant::now();
    let (q1, qa1) = env.query_node("query-1");
    assert!(
        wait_until(Duration::from_secs(60), || serving_all(qa1)),
        "replicas not serving: {}",
        health(qa1)
    );
    let lazy_ready = started.elapsed();
    // Serving, and not one segment fetched: the dictionary, each segment's facts and
    // the owner's index were enough.
    let h = health(qa1);
    let c = &h["segment_cache"];
    assert_eq!(c["capacity_bytes"], capacity, "{h}");
    assert_eq!(c["misses"], 0, "{h}");
    assert_eq!(c["fetched_bytes"], 0, "{h}");
    let lazy = restores(&q1);
    assert_eq!(lazy.len(), PARTITIONS as usize, "{}", q1.log());
    assert_eq!(total(&lazy, "segment_bytes"), 0, "{lazy:?}");
    assert_eq!(total(&lazy, "lazy_segments"), rows.len() as u64, "{lazy:?}");
    assert!(total(&lazy, "index_bytes") > 0, "{lazy:?}");
    assert!(
        q1.log().contains("from_checkpoint=true rows_read=0"),
        "{}",
        q1.log()
    );

    let (asked, _) = city_queries(&events);
    let expected: Vec<Value> = asked.iter().map(|q| ask(single.addr, q)).collect();
    let check_all = |addr: SocketAddr, when: &str| {
        for (q, e) in asked.iter().zip(&expected) {
            let got = ask(addr, q);
            assert!(
                got == *e,
                "{when}: {} {} differs:\n cluster {got}\n single  {e}",
                q.name,
                q.target
            );
        }
    };

    // A bundle damaged on S3 (one byte of a segment flipped, the object put back
    // under its key): the replica's fetch fails verification, the query is answered
    // by the owner all the same, and nothing damaged is kept.
    let objects = Objects::new(&env.config().s3).unwrap();
    let victim = &rows[rows.len() / 2];
    let (offset, len) = victim.object_range.unwrap();
    let good = env.rt.block_on(objects.get(&victim.object_key)).unwrap();
    let mut bad = good.to_vec();
    bad[(offset + len / 2) as usize] ^= 0x10;
    let replace = |bytes: Vec<u8>| {
        env.rt.block_on(async {
            objects.delete(&victim.object_key).await.unwrap();
            objects
                .put_create(&victim.object_key, bytes.into())
                .await
                .unwrap();
        })
    };
    replace(bad);
    check_all(qa1, "a bundle damaged");
    let h = health(qa1);
    assert!(h["segment_cache"]["failures"].as_u64().unwrap() >= 1, "{h}");
    assert!(h["answered"]["indexer"].as_u64().unwrap() >= 1, "{h}");
    assert!(q1.log().contains("a fetched segment failed verification"));
    replace(good.to_vec());

    // Every family, twice, from the replicas: equal to the single node's, the files
    // fetched on use, the least recently used evicted, hits on the second round.
    check_all(qa1, "through the cache");
    check_all(qa1, "through the cache, again");
    let h = health(qa1);
    let c = &h["segment_cache"];
    let n = |k: &str| c[k].as_u64().unwrap();
    eprintln!("segment cache after the queries: {c}");
    assert!(
        n("misses") > 0 && n("evictions") > 0 && n("hits") > 0,
        "{h}"
    );
    assert!(n("bytes") <= capacity, "{h}");
    assert!(h["answered"]["local"].as_u64().unwrap() > 0, "{h}");
    drop(q1);

    // Before the cache (0: replicas download their partitions whole): the same
    // replicas, for the figures (BENCHMARKS.md, "Lazy replicas").
    env.query_extra = "segment_cache_bytes = 0".into();
    let started = Instant::now();
    let (q2, qa2) = env.query_node("query-2");
    assert!(
        wait_until(Duration::from_secs(60), || serving_all(qa2)),
        "replicas not serving: {}",
        health(qa2)
    );
    let whole_ready = started.elapsed();
    let whole = restores(&q2);
    assert_eq!(health(qa2)["segment_cache"], Value::Null);
    assert_eq!(total(&whole, "segment_bytes"), segment_bytes, "{whole:?}");
    check_all(qa2, "downloaded whole");
    eprintln!(
        "replica restore, {} partitions: lazy {} ms in all ({} segment bytes, {} index bytes; serving after {lazy_ready:?}), whole {} ms ({} segment bytes; serving after {whole_ready:?})",
        PARTITIONS,
        total(&lazy, "elapsed_ms"),
        total(&lazy, "segment_bytes"),
        total(&lazy, "index_bytes"),
        total(&whole, "elapsed_ms"),
        total(&whole, "segment_bytes"),
    );
}

/// Figures for BENCHMARKS.md ("Lazy replicas"): one query node restoring every
/// partition's replica with the cache and, after it, one without, over
/// `SIGHTLINE_RESTORE_EVENTS` events (default 300,000) committed first.
#[test]
#[ignore = "a measurement: cargo test … --test cluster -- --ignored replica_restore_figures"]
fn replica_restore_figures() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n: usize = std::env::var("SIGHTLINE_RESTORE_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    let mut env = Env::start();
    env.index_extra = "index_upload_ms = 0".into();
    let (_i1, a1) = env.ingest("ingest-1");
    let _x1 = env.indexer("index-1", &[]);
    let loading = Instant::now();
    for _ in 0..n / 5_000 {
        env.post(a1, 5_000);
    }
    env.wait_committed_events((n / 5_000 * 5_000) as u64);
    let meta = env.meta();
    let mut rows = Vec::new();
    for p in 0..PARTITIONS {
        rows.extend(env.rt.block_on(meta.segments(p)).unwrap());
    }
    let segment_bytes: u64 = rows.iter().map(|r| r.object_range.unwrap().1).sum();
    eprintln!(
        "{n} events committed in {:?}: {} segments, {segment_bytes} bytes",
        loading.elapsed(),
        rows.len()
    );
    for (i, cache) in [64u64 << 20, 0].into_iter().enumerate() {
        env.query_extra = format!("segment_cache_bytes = {cache}");
        let name = format!("query-{i}");
        let started = Instant::now();
        let (q, qa) = env.query_node(&name);
        assert!(
            wait_until(Duration::from_secs(300), || serving_all(qa)),
            "{}",
            health(qa)
        );
        let ready = started.elapsed();
        let r = restores(&q);
        // The first query after: every partition asked (counts of the whole day).
        let asked = Instant::now();
        let counts = sightline_testkit::get(
            qa,
            "/v1/counts?from=1764547200000&to=1764633600000&by=kind&per=day",
        );
        assert_eq!(counts.status, 200, "{}", counts.body);
        eprintln!(
            "segment_cache_bytes = {cache}: serving after {ready:?}; restores {} ms in all, {} segment bytes + {} index bytes downloaded; the first whole-day count {:?}; cache {}",
            total(&r, "elapsed_ms"),
            total(&r, "segment_bytes"),
            total(&r, "index_bytes"),
            asked.elapsed(),
            health(qa)["segment_cache"]
        );
        drop(q);
        // Its membership lapses before the next node starts (it would hold half).
        std::thread::sleep(Duration::from_millis(super::LEASE_MS + 1_000));
    }
}
