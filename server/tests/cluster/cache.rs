//! Read replicas restoring only metadata and fetching segments on first use into a
//! bounded cache (`query.segment_cache_bytes`), against `serve` fed the same events.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use sightline_cluster::janitor;
use sightline_cluster::meta::{Meta, SegmentRow};
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

    // A bundle gone from S3 (as when the janitor removed it once the commits since
    // the restore stopped naming it): the fetch finds nothing, the query is answered
    // by the owner, and the replica ends and is restored again from the catalog
    // rather than failing every read of it for ever.
    env.rt.block_on(objects.delete(&victim.object_key)).unwrap();
    check_all(qa1, "a bundle gone");
    let gone = "is gone from object storage; the replica is restored again";
    assert!(
        wait_until(Duration::from_secs(30), || q1.log().contains(gone)),
        "{}",
        q1.log()
    );
    env.rt
        .block_on(objects.put_create(&victim.object_key, good.clone()))
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || serving_all(qa1)
            && q1.log().matches("replica restored").count()
                > PARTITIONS as usize),
        "not restored again: {}",
        health(qa1)
    );

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

/// One query node restoring every partition's replica with the cache and, after it,
/// one without, over `SIGHTLINE_RESTORE_EVENTS` events (default 10,000; BENCHMARKS.md
/// "Lazy replicas" sets 300,000) committed first: with the cache a restore fetches no
/// segment byte, without it every one. Prints the figures (`--nocapture`).
#[test]
fn replica_restore_figures() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n: usize = std::env::var("SIGHTLINE_RESTORE_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
        .max(5_000);
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
        let want = if cache > 0 { 0 } else { segment_bytes };
        assert_eq!(total(&r, "segment_bytes"), want, "cache {cache}: {r:?}");
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

/// The janitor counts an object's age from when the catalog stopped naming it (the
/// commit that took its rows out: compaction, retention), not from its upload: a
/// replica restored before that commit still lists the segment and fetches it on
/// first use. An object never named (an upload whose commit failed) still goes by
/// its upload's age.
#[test]
fn the_janitor_keeps_a_released_bundle_for_its_age_after_the_release() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::start();
    let objects = Objects::new(&env.config().s3).unwrap();
    let mut meta = env.meta();
    let rt = &env.rt;
    rt.block_on(meta.create(PARTITIONS)).unwrap();
    let lease = rt
        .block_on(meta.acquire(0, "janitor-test", 60_000))
        .unwrap()
        .expect("partition 0 is free");
    let (bundle, orphan) = ("p0/e1/bundle/1-1-1-aa.segs", "p0/e1/bundle/2-2-1-bb.segs");
    for key in [bundle, orphan] {
        rt.block_on(objects.put_create(key, vec![7u8; 64].into()))
            .unwrap();
    }
    let row = SegmentRow {
        segment_id: 1,
        community: 0,
        span: 20_000,
        file: "segments/20000/0-1.seg".into(),
        events: 1,
        max_seq: 1,
        object_key: bundle.into(),
        object_range: Some((0, 64)),
        facts: None,
    };
    let commit = |meta: &mut Meta, rows: &[SegmentRow], replaced: &[u64], seq: u64| {
        rt.block_on(meta.commit(0, lease.epoch, rows, replaced, None, seq, 0, 60_000, None))
            .unwrap()
    };
    commit(&mut meta, &[row], &[], 1);
    std::thread::sleep(Duration::from_millis(3_000));
    // A later commit takes the row out (as compaction or retention does).
    commit(&mut meta, &[], &[1], 2);
    let age_ms = 2_000;
    let sweep = |meta: &Meta| {
        let now = sightline_server::now_ms();
        rt.block_on(janitor::sweep(meta, &objects, now, age_ms))
            .unwrap()
    };
    // Uploaded 3 s ago, released just now: kept; the orphan goes by its upload.
    assert_eq!(sweep(&meta), vec![orphan.to_string()]);
    let listed = |k: &str| {
        rt.block_on(objects.list(Some("p0/")))
            .unwrap()
            .iter()
            .any(|o| o.key == k)
    };
    assert!(listed(bundle));
    assert!(rt
        .block_on(meta.released_objects())
        .unwrap()
        .contains_key(bundle));
    std::thread::sleep(Duration::from_millis(age_ms as u64 + 500));
    assert_eq!(sweep(&meta), vec![bundle.to_string()]);
    assert!(!listed(bundle));
    assert!(rt.block_on(meta.released_objects()).unwrap().is_empty());

    // A released object no listing showed (as when a listing missed it; here a key
    // under no partition's prefix, which the sweep never lists): kept, with its row,
    // until past its age; then deleted, and only then forgotten, never forgotten on
    // the listing's word alone (the object would stay with nothing to say it goes).
    let unlisted = format!("p{}/e1/bundle/3-3-1-cc.segs", PARTITIONS + 5);
    rt.block_on(objects.put_create(&unlisted, vec![9u8; 32].into()))
        .unwrap();
    let release = |ago_ms: i64| {
        env.pg.psql(&format!(
            "INSERT INTO released_objects (object_key, released_at)
             VALUES ('{unlisted}', now() - interval '{ago_ms} milliseconds')
             ON CONFLICT (object_key) DO UPDATE SET released_at = EXCLUDED.released_at"
        ))
    };
    let there = || {
        rt.block_on(objects.get_if_exists(&unlisted))
            .unwrap()
            .is_some()
    };
    let remembered = || {
        rt.block_on(meta.released_objects())
            .unwrap()
            .contains_key(&unlisted)
    };
    release(0);
    assert!(sweep(&meta).is_empty());
    assert!(there() && remembered(), "taken before its age");
    release(age_ms + 60_000);
    assert!(
        sweep(&meta).is_empty(),
        "only listed keys are reported removed"
    );
    assert!(!there(), "forgotten, but still in the bucket");
    assert!(!remembered());

    // A malformed row (a negative offset, a negative event count) is a catalog
    // error naming it, not a panic or a wrapped number.
    for (bad, what) in [
        ("-5, 10, 1, 0, 1", "object_offset"),
        ("0, 10, 1, 0, 1", "events"),
    ] {
        let events = if what == "events" { -3 } else { 1 };
        env.pg.psql(&format!(
            "DELETE FROM segments WHERE partition = 1;
             INSERT INTO segments (partition, segment_id, community, span, file, events, max_seq,
                 object_key, epoch, object_offset, object_len, min_seq, min_ts_ms, max_ts_ms)
             VALUES (1, 4, 0, 20000, 'segments/20000/0-4.seg', {events}, 9, 'p1/e1/x', 1, {bad});"
        ));
        let e = rt.block_on(meta.segments(1)).unwrap_err().to_string();
        assert!(e.contains("segment 4") && e.contains(what), "{e}");
        let e = rt.block_on(meta.committed(1)).unwrap_err().to_string();
        assert!(e.contains(what), "{e}");
    }
}

/// The index a commit uploads for the replicas is not part of the commit: an upload
/// that fails is logged and the commit goes on without it (the catalog keeps no
/// index key, so replicas read every row).
#[test]
fn a_failed_index_upload_does_not_fail_the_commit() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut env = Env::start();
    env.index_extra = "index_upload_ms = 0".into();
    let (_i1, a1) = env.ingest("ingest-1");
    let x1 = env.indexer(
        "index-1",
        &[("SIGHTLINE_CLUSTER_FAULT", "fail-index-upload")],
    );
    // The index goes with commits once the partition is served: a second round.
    env.post(a1, 250);
    env.wait_committed_events(250);
    std::thread::sleep(Duration::from_secs(2));
    env.post(a1, 250);
    env.wait_committed_events(500);
    assert!(
        x1.log()
            .contains("index not uploaded; committing without it"),
        "{}",
        x1.log()
    );
    let mut meta = env.meta();
    for p in 0..PARTITIONS {
        assert_eq!(env.rt.block_on(meta.committed(p)).unwrap().index_key, None);
    }
}

/// A replica whose offer fails (its index could not be opened: S3 away for a
/// moment) is not left unserved for its whole life nor advertised as serving: it ends
/// and is made again, and then serves.
#[test]
fn a_replica_whose_offer_fails_is_made_again_and_serves() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut env = Env::start();
    let (_i1, a1) = env.ingest("ingest-1");
    let _x1 = env.indexer("index-1", &[]);
    env.post(a1, 200);
    env.wait_committed_events(200);
    let (q1, qa1) = env.spawn(
        "query",
        "query-1",
        &[("SIGHTLINE_CLUSTER_FAULT", "fail-first-offer")],
    );
    let qa1 = qa1.unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || serving_all(qa1)),
        "replicas not serving: {} {}",
        health(qa1),
        q1.log()
    );
    assert!(
        q1.log().contains("the replica could not be offered"),
        "{}",
        q1.log()
    );
    assert!(
        q1.log()
            .contains("replica failed; made again after a pause"),
        "{}",
        q1.log()
    );
}

/// The owner's uploaded index is checked whole before a replica uses it: a damaged
/// one is not used (the index is built from every row) and the replica serves.
#[test]
fn a_damaged_uploaded_index_is_not_used() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut env = Env::start();
    env.index_extra = "index_upload_ms = 0".into();
    let (_i1, a1) = env.ingest("ingest-1");
    let _x1 = env.indexer("index-1", &[]);
    let mut meta = env.meta();
    let mut posted = 0;
    fn uploaded(env: &Env, meta: &mut Meta) -> Vec<String> {
        (0..PARTITIONS)
            .filter_map(|p| env.rt.block_on(meta.committed(p)).unwrap().index_key)
            .collect()
    }
    // Commits after the partitions are served carry the index.
    while uploaded(&env, &mut meta).len() < PARTITIONS as usize {
        assert!(posted < 5_000, "no index uploaded");
        env.post(a1, 200);
        posted += 200;
        env.wait_committed_events(posted as u64);
        std::thread::sleep(Duration::from_millis(500));
    }
    let objects = Objects::new(&env.config().s3).unwrap();
    for key in uploaded(&env, &mut meta) {
        let mut bytes = env.rt.block_on(objects.get(&key)).unwrap().to_vec();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x20;
        env.rt.block_on(async {
            objects.delete(&key).await.unwrap();
            objects.put_create(&key, bytes.into()).await.unwrap();
        });
    }
    env.query_extra = "segment_cache_bytes = 1000000".into();
    let (q1, qa1) = env.query_node("query-1");
    assert!(
        wait_until(Duration::from_secs(60), || serving_all(qa1)),
        "replicas not serving: {}",
        health(qa1)
    );
    assert!(
        q1.log().contains("uploaded index damaged; not used"),
        "{}",
        q1.log()
    );
}

/// A commit whose retention dropped shards uploads the index whatever
/// `index.index_upload_ms` says: a replica restored after it opens an index that
/// agrees with the catalog instead of rebuilding it from every row (which fetches the
/// whole partition).
#[test]
fn a_commit_that_drops_shards_uploads_the_index_so_replicas_need_not_rebuild() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::start();
    let (_i1, a1) = env.ingest("ingest-1");
    // The default upload interval (5 min): only the first commits carry the index.
    let _x1 = env.indexer("index-1", &[]);
    let now = sightline_server::now_ms();
    let day = 86_400_000i64;
    // The old day first: an owner never drops the shard holding its highest sequence.
    let mut bodies = [String::new(), String::new()];
    for i in 0..80i64 {
        let ts = match i % 2 {
            0 => now - 3 * day - i * 1_000,
            _ => now - day - i * 1_000,
        };
        let c = (i / 2) % 4;
        let event = serde_json::json!({
            "ts": ts,
            "community": format!("32050800{c:02}"),
            "device": format!("3205080{c}011210000{:03}", i % 7),
            "kind": "vehicle",
            "subject": format!("苏E{:05}", i % 13),
            "direction": "in",
            "attrs": {"source_id": format!("drop-{i:06}")},
        });
        bodies[(i % 2) as usize].push_str(&(event.to_string() + "\n"));
    }
    let mut meta = env.meta();
    env.post_body(a1, &bodies[0]);
    env.wait_committed_events(40);
    env.post_body(a1, &bodies[1]);
    env.wait_committed_events(80);
    // Every partition's index uploaded once (its first commits once served).
    let keys = |meta: &mut Meta| -> Vec<Option<String>> {
        (0..PARTITIONS)
            .map(|p| env.rt.block_on(meta.committed(p)).unwrap().index_key)
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(30), || keys(&mut meta)
            .iter()
            .all(Option::is_some)),
        "no index uploaded"
    );
    let before = keys(&mut meta);
    env.rt.block_on(meta.set_retention_days(Some(2))).unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || env
            .rt
            .block_on(meta.committed_events())
            .unwrap()
            == 40),
        "the old day not dropped"
    );
    // Each partition that dropped a shard uploaded its index with the drop.
    let after = keys(&mut meta);
    assert!(
        before.iter().zip(&after).any(|(b, a)| b != a),
        "{before:?} {after:?}"
    );
    let (q1, qa1) = env.query_node("query-1");
    assert!(
        wait_until(Duration::from_secs(60), || serving_all(qa1)),
        "replicas not serving: {}",
        health(qa1)
    );
    assert!(!q1.log().contains("rebuilt from every row"), "{}", q1.log());
}
