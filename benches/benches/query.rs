//! The investigator queries on a sealed synthetic city (10 communities, 30 days) at
//! 2 M and 20 M events, so the cost's dependence on store size shows; plus fuzzy plate
//! search over 1 M distinct plates.
//!
//! cargo bench -p sightline-benches --bench query
//! cargo bench -p sightline-benches --bench query -- cooccurrence_wide   # one group
//!
//! The cities are built once (about 1 and 3 minutes) and kept under
//! `target/bench-data/`; `SIGHTLINE_BENCH_SIZES=2000000` limits the sizes run.
//! Each benched subject is printed with its sighting count before its group runs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use sightline_benches::traffic::DAY;
use sightline_benches::{community_code, plate, City};
use sightline_index::{StoreIndex, Vocabulary};
use sightline_query::*;
use sightline_storage::{EventInput, Kind, ManualClock, Store, StoreConfig};

fn data_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data")
}

fn sizes() -> Vec<u64> {
    std::env::var("SIGHTLINE_BENCH_SIZES")
        .unwrap_or_else(|_| "2000000,20000000".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("SIGHTLINE_BENCH_SIZES: comma-separated counts")
        })
        .collect()
}

fn label(events: u64) -> String {
    format!("{}M", events / 1_000_000)
}

fn queries(c: &mut Criterion) {
    for size in sizes() {
        let city = City::open_or_build(&data_root(), size).expect("city");
        let ctx = QueryContext::new(&city.store, &city.index);
        let (from, to) = city.range();
        let name = label(size);
        eprintln!(
            "city {name}: {} events in {}",
            city.events,
            city.dir.display()
        );

        let mut g = c.benchmark_group(format!("query_{name}"));
        g.measurement_time(Duration::from_secs(4));
        for want in [100u64, 5000] {
            let (subject, _) = city.subject_near(Kind::Vehicle, want);
            // Sightings in the month (the count above includes reads past its end).
            let id = city
                .store
                .dictionaries()
                .subject_id(Kind::Vehicle, &subject)
                .unwrap();
            let mut n = 0u64;
            city.store
                .scan_range(from, to, None, |r| n += u64::from(r.subject == id))
                .unwrap();
            eprintln!("trajectory_{want}: {subject} with {n} sightings");
            let q = TrajectoryQuery {
                kind: Kind::Vehicle,
                subject,
                from_ms: from,
                to_ms: to,
                communities: None,
                cursor: None,
                limit: 10_000,
            };
            assert_eq!(trajectory(&ctx, &q).unwrap().events.len() as u64, n);
            g.bench_function(format!("trajectory_{want}"), |b| {
                b.iter(|| trajectory(&ctx, &q).unwrap())
            });
            if want == 100 {
                // Baseline: the same answer by scanning every row of the month.
                g.sample_size(10);
                g.bench_function("trajectory_100_full_scan_baseline", |b| {
                    b.iter(|| {
                        let mut rows = Vec::new();
                        city.store
                            .scan_range(from, to, None, |r| {
                                if r.subject == id {
                                    rows.push(r)
                                }
                            })
                            .unwrap();
                        assert_eq!(rows.len() as u64, n);
                        rows
                    })
                });
                g.sample_size(100);
            }
        }

        let (target, n) = city.subject_at_percentile(Kind::Vehicle, 99.0);
        eprintln!("cooccurrence: p99 vehicle {target} with {n} sightings");
        for (scope, label) in [(Scope::Device, "device"), (Scope::Community, "community")] {
            let q = sightline_benches::vehicle_cooccurrence(target.as_str(), from, to, scope);
            let found = cooccurrence(&ctx, &q).unwrap();
            eprintln!("cooccurrence_{label}: {} candidates", found.len());
            g.bench_function(format!("cooccurrence_p99_60s_{label}"), |b| {
                b.iter(|| cooccurrence(&ctx, &q).unwrap())
            });
        }

        // Five conditions, each one community on one day.
        let conditions: Vec<Condition> = (0..5u32)
            .map(|i| Condition {
                place: Place::Communities(vec![community_code(i * 2)]),
                from_ms: from + (i as i64 * 5) * DAY,
                to_ms: from + (i as i64 * 5 + 1) * DAY,
            })
            .collect();
        let q = Collision {
            kind: Kind::Vehicle,
            conditions,
            min_conditions: 2,
            limit: 1000,
        };
        let hits = collision(&ctx, &q).unwrap();
        eprintln!("collision_5x1day: {} subjects in ≥2 conditions", hits.len());
        g.bench_function("collision_5x1day", |b| {
            b.iter(|| collision(&ctx, &q).unwrap())
        });
        g.finish();
    }
}

fn fuzzy(c: &mut Criterion) {
    const PLATES: u64 = 1_000_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let start = sightline_benches::SEPT_2021;
    let clock = Arc::new(ManualClock::new(start + DAY));
    let store = Store::open_with_clock(dir.path(), StoreConfig::default(), clock).expect("open");
    // Distinct plates: the model's plate function collides now and then.
    let mut seen = std::collections::HashSet::new();
    let ids: Vec<u64> = (0..)
        .filter(|&i| seen.insert(plate(i)))
        .take(PLATES as usize)
        .collect();
    for chunk in ids.chunks(50_000) {
        let batch: Vec<_> = chunk
            .iter()
            .map(|&i| {
                store
                    .validate(EventInput {
                        ts_ms: start + (i as i64 % 86_400) * 1000,
                        community: community_code((i % 10) as u32),
                        device: sightline_benches::device_code((i % 10) as u32, "121", 1),
                        kind: "vehicle".into(),
                        subject: plate(i),
                        direction: "in".into(),
                        ..Default::default()
                    })
                    .expect("valid")
            })
            .collect();
        store.append(&batch).expect("append");
    }
    let index = StoreIndex::attach(&store).unwrap();
    let vocab = Vocabulary::in_memory().expect("vocabulary");
    let t = std::time::Instant::now();
    vocab.catch_up(&store).expect("index");
    let distinct = store.dictionaries().len_subjects();
    eprintln!(
        "vocabulary: {distinct} distinct plates indexed in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let ctx = QueryContext::new(&store, &index);
    assert_eq!(distinct as u64, PLATES);
    let mut g = c.benchmark_group("search_1M_plates");
    // A misread of a stored plate: one OCR confusion away.
    let truth = plate(123_457);
    let read: String = truth
        .chars()
        .enumerate()
        .map(|(i, ch)| match (i, ch) {
            (2.., '8') => 'B',
            (2.., 'B') => '8',
            (2.., '0') => 'D',
            (2.., '5') => 'S',
            _ => ch,
        })
        .collect();
    for (mode, pattern, label) in [
        (SearchMode::Exact, truth.clone(), "exact"),
        (SearchMode::Fuzzy { distance: 1 }, read.clone(), "fuzzy_1"),
        (SearchMode::Fuzzy { distance: 2 }, read.clone(), "fuzzy_2"),
        (
            SearchMode::Prefix,
            truth.chars().take(5).collect(),
            "prefix_3",
        ),
        (
            SearchMode::Wildcard,
            format!("苏E?{}*", &truth[5..7]),
            "wildcard",
        ),
    ] {
        let q = SearchQuery {
            pattern: pattern.clone(),
            mode,
            kind: Some(Kind::Vehicle),
            limit: 100,
        };
        let found = search(&ctx, &vocab, &q).unwrap();
        eprintln!("{label}: {pattern} → {} subjects", found.len());
        if label.starts_with("fuzzy") {
            assert!(
                found.iter().any(|m| m.subject == truth),
                "{truth} not found"
            );
        }
        g.bench_function(label, |b| b.iter(|| search(&ctx, &vocab, &q).unwrap()));
    }
    g.finish();
}

/// Co-occurrence whose candidates are seen all over a city (issue 21's city-scale
/// run: plates the synthetic city's households share have thousands of shards). A
/// target plate passes one gate of community 0 at 10:00 on each of 8 days; 20
/// candidate plates pass the same gate within 30 s of it, and each is also seen once in
/// every other (community, day) of 1,000 communities: 8,000 shards a candidate. The
/// lift counts each candidate's events at the target's locations only, so its cost
/// should not follow the candidates' shards elsewhere.
fn wide_candidates(c: &mut Criterion) {
    const COMMUNITIES: u32 = 1_000;
    const DAYS: i64 = 8;
    const CANDIDATES: u64 = 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let start = sightline_benches::SEPT_2021;
    let clock = Arc::new(ManualClock::new(start + DAY));
    let store =
        Store::open_with_clock(dir.path(), StoreConfig::default(), clock.clone()).expect("open");
    let target = "苏E00000T".to_string();
    let candidate = |i: u64| format!("苏E{i:05}C");
    let input = |ts_ms: i64, community: u32, subject: String| EventInput {
        ts_ms,
        community: community_code(community),
        device: sightline_benches::device_code(community, "121", 1),
        kind: "vehicle".into(),
        subject,
        direction: "in".into(),
        ..Default::default()
    };
    for day in 0..DAYS {
        let mut batch = Vec::new();
        let ten = start + day * DAY + 2 * 3_600_000; // 10:00 in Shanghai
        batch.push(
            store
                .validate(input(ten, 0, target.clone()))
                .expect("valid"),
        );
        for i in 0..CANDIDATES {
            let with = input(ten + 1_000 * (i as i64 + 1), 0, candidate(i));
            batch.push(store.validate(with).expect("valid"));
            for community in 1..COMMUNITIES {
                let ts =
                    start + day * DAY + ((community as i64 * 7_919 + i as i64 * 104_729) % DAY);
                batch.push(
                    store
                        .validate(input(ts, community, candidate(i)))
                        .expect("valid"),
                );
            }
        }
        clock.set(start + (day + 1) * DAY);
        store.append(&batch).expect("append");
    }
    clock.set(start + (DAYS + 1) * DAY);
    store.maintain().expect("seal");
    let index = StoreIndex::attach(&store).unwrap();
    let ctx = QueryContext::new(&store, &index);
    let mut g = c.benchmark_group("cooccurrence_wide_candidates");
    for (scope, label) in [(Scope::Device, "device"), (Scope::Community, "community")] {
        let q = sightline_benches::vehicle_cooccurrence(
            target.as_str(),
            start,
            start + DAYS * DAY,
            scope,
        );
        let found = cooccurrence(&ctx, &q).unwrap();
        assert_eq!(
            found.len(),
            CANDIDATES as usize,
            "every candidate co-occurs"
        );
        assert!(found.iter().all(|c| c.hits == DAYS as u32));
        eprintln!(
            "{label}: {} candidates, {} shards each",
            found.len(),
            index
                .view()
                .subject_shards(
                    store
                        .dictionaries()
                        .subject_id(Kind::Vehicle, &candidate(0))
                        .unwrap(),
                    i64::MIN,
                    i64::MAX,
                    None
                )
                .expect("the index reads")
                .len()
        );
        g.bench_function(label, |b| b.iter(|| cooccurrence(&ctx, &q).unwrap()));
    }
    g.finish();
}

criterion_group!(benches, queries, fuzzy, wide_candidates);
criterion_main!(benches);
