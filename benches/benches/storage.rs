//! Storage hot paths: durable append (real fsync) at several batch sizes and with
//! concurrent writers, sealing, compaction, scans of sealed data, and source-id
//! lookups in sealed segments (what deduplicating an upload reads).
//!
//! cargo bench -p sightline-benches --bench storage

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sightline_benches::{Traffic, TrafficConfig};
use sightline_storage::{Event, ManualClock, Store, StoreConfig};

const DAY: i64 = 86_400_000;

fn month() -> (TrafficConfig, Vec<Event>, Arc<ManualClock>) {
    let cfg = TrafficConfig::default();
    let clock = Arc::new(ManualClock::new(cfg.start_ms + (cfg.days as i64 + 2) * DAY));
    let v = sightline_storage::Validator::default();
    let now = sightline_storage::Clock::now_ms(&*clock);
    let events = Traffic::new(cfg.clone())
        .days()
        .flatten()
        .map(|e| v.validate(e, now).expect("valid"))
        .collect();
    (cfg, events, clock)
}

fn fresh(clock: &Arc<ManualClock>) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        Store::open_with_clock(dir.path(), StoreConfig::default(), clock.clone()).expect("open");
    (dir, store)
}

fn append(c: &mut Criterion) {
    let (_, events, clock) = month();
    let mut g = c.benchmark_group("append");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    for batch in [1usize, 100, 10_000] {
        g.throughput(Throughput::Elements(batch as u64));
        let (_dir, store) = fresh(&clock);
        let mut at = 0usize;
        g.bench_function(format!("batch_{batch}"), |b| {
            b.iter(|| {
                if at + batch > events.len() {
                    at = 0;
                }
                store.append(&events[at..at + batch]).expect("append");
                at += batch;
            })
        });
    }
    // Four writers, batches of 1,000: group commit shares fsyncs between them.
    let writers = 4;
    let batch = 1000;
    g.throughput(Throughput::Elements((writers * batch) as u64));
    let (_dir, store) = fresh(&clock);
    g.bench_function("4_writers_batch_1000", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for w in 0..writers {
                    let store = &store;
                    let events = &events;
                    s.spawn(move || {
                        for i in 0..iters as usize {
                            let at = ((i * writers + w) * batch) % (events.len() - batch);
                            store.append(&events[at..at + batch]).expect("append");
                        }
                    });
                }
            });
            start.elapsed()
        })
    });
    g.finish();
}

fn seal(c: &mut Criterion) {
    let (_, events, clock) = month();
    // Every event of community 1 in the month (at most 100k): 30 community-day shards.
    let one: Vec<Event> = events
        .iter()
        .filter(|e| e.community() == "3205080001")
        .take(100_000)
        .cloned()
        .collect();
    let mut g = c.benchmark_group("seal");
    g.sample_size(10);
    g.throughput(Throughput::Elements(one.len() as u64));
    g.bench_function(format!("shard_of_{}", one.len()), |b| {
        b.iter_batched(
            || {
                let (dir, store) = fresh(&clock);
                for chunk in one.chunks(10_000) {
                    store.append(chunk).expect("append");
                }
                (dir, store)
            },
            |(dir, store)| {
                for s in store.shards() {
                    store.seal_shard(s.key).expect("seal");
                }
                (dir, store)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

/// Four communities' month, each one shard (a 32-day span) sealed in four parts, then
/// merged: compaction's k-way merge of four segments into one, per shard.
fn compact(c: &mut Criterion) {
    let (_, events, clock) = month();
    let four: Vec<Event> = events
        .iter()
        .filter(|e| e.community() <= "3205080004")
        .cloned()
        .collect();
    let config = || StoreConfig {
        shard_span_ms: 32 * DAY,
        ..StoreConfig::default()
    };
    let mut g = c.benchmark_group("compact");
    g.sample_size(10);
    g.throughput(Throughput::Elements(four.len() as u64));
    g.bench_function(
        format!("4_shards_of_4_segments_{}_events", four.len()),
        |b| {
            b.iter_batched(
                || {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let store =
                        Store::open_with_clock(dir.path(), config(), clock.clone()).expect("open");
                    for part in four.chunks(four.len().div_ceil(4)) {
                        for chunk in part.chunks(10_000) {
                            store.append(chunk).expect("append");
                        }
                        for s in store.shards() {
                            store.seal_shard(s.key).expect("seal");
                        }
                    }
                    (dir, store)
                },
                |(dir, store)| {
                    for s in store.shards() {
                        assert!(store.compact_shard(s.key).expect("compact"));
                    }
                    (dir, store)
                },
                BatchSize::PerIteration,
            )
        },
    );
    g.finish();
}

fn scan(c: &mut Criterion) {
    let (cfg, events, clock) = month();
    let (_dir, store) = fresh(&clock);
    for chunk in events.chunks(10_000) {
        store.append(chunk).expect("append");
    }
    store.seal_due().expect("seal");
    let mut g = c.benchmark_group("scan");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("all_sealed_rows", |b| {
        b.iter(|| {
            let mut n = 0u64;
            store
                .scan_range(
                    cfg.start_ms,
                    cfg.start_ms + cfg.days as i64 * DAY,
                    None,
                    |r| n += r.ts_ms as u64 & 1,
                )
                .unwrap();
            n
        })
    });
    // One gate camera, one hour: the co-occurrence inner loop.
    let (community, device) = {
        let d = store.dictionaries();
        (
            d.community_id("3205080001").expect("c"),
            d.device_id(&sightline_benches::traffic::device_code(0, "121", 1))
                .expect("d"),
        )
    };
    g.throughput(Throughput::Elements(1));
    let mut hour = 0i64;
    g.bench_function("device_window_1h", |b| {
        b.iter(|| {
            hour = (hour + 7) % (cfg.days as i64 * 24);
            let from = cfg.start_ms + hour * 3_600_000;
            store
                .scan_device_window(community, device, from, from + 3_600_000)
                .unwrap()
                .len()
        })
    });
    g.finish();
}

/// Source-id lookups in one community's sealed month (GA/T 1400 style ids on every
/// camera event): ids that are stored (a re-sent upload: the fingerprint's group is
/// read to find the event) and ids that are not (a new upload: almost always refused
/// by the fingerprints alone), each looked up in the segments of its own shard, as
/// appending does.
fn source_ids(c: &mut Criterion) {
    let cfg = TrafficConfig {
        source_ids: true,
        ..TrafficConfig::default()
    };
    let clock = Arc::new(ManualClock::new(cfg.start_ms + (cfg.days as i64 + 2) * DAY));
    let v = sightline_storage::Validator::default();
    let now = sightline_storage::Clock::now_ms(&*clock);
    let events: Vec<Event> = Traffic::new(cfg.clone())
        .days()
        .flatten()
        .filter(|e| e.community == "3205080001")
        .map(|e| v.validate(e, now).expect("valid"))
        .collect();
    let (_dir, store) = fresh(&clock);
    for chunk in events.chunks(10_000) {
        store.append(chunk).expect("append");
    }
    for s in store.shards() {
        store.seal_shard(s.key).expect("seal");
    }
    let by_span: std::collections::HashMap<i32, Vec<Arc<sightline_storage::segment::Segment>>> =
        store
            .shards()
            .into_iter()
            .map(|s| (s.key.span, store.segments(s.key).expect("segments")))
            .collect();
    let layout = store.layout();
    // Every 97th stored id, with its shard's segments.
    let stored: Vec<(String, &[Arc<sightline_storage::segment::Segment>])> = events
        .iter()
        .step_by(97)
        .filter_map(|e| {
            let segs = &by_span[&layout.span_of(e.ts_ms())];
            Some((e.source_id()?.to_string(), &segs[..]))
        })
        .collect();
    let absent: Vec<(String, &[Arc<sightline_storage::segment::Segment>])> = stored
        .iter()
        .enumerate()
        .map(|(i, (id, segs))| (format!("{}{:05}", &id[..43], i), *segs))
        .collect();
    let find = |ids: &[(String, &[Arc<sightline_storage::segment::Segment>])]| {
        ids.iter()
            .filter(|(id, segs)| {
                segs.iter()
                    .any(|s| s.find_source_id(id).expect("lookup").is_some())
            })
            .count()
    };
    assert_eq!(find(&stored), stored.len(), "every stored id is found");
    assert_eq!(find(&absent), 0, "no absent id is found");
    let mut g = c.benchmark_group("source_id");
    g.throughput(Throughput::Elements(stored.len() as u64));
    g.bench_function("stored", |b| b.iter(|| find(&stored)));
    g.bench_function("absent", |b| b.iter(|| find(&absent)));
    g.finish();
}

criterion_group!(benches, append, seal, compact, scan, source_ids);
criterion_main!(benches);
