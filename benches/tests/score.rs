//! The planted answers of the traffic model are found by the queries: a small planted
//! city is stored and indexed, and every query family is scored against its truth.

use sightline_benches::score::score;
use sightline_benches::traffic::{load, Pace};
use sightline_benches::{Traffic, TrafficConfig};
use sightline_index::StoreIndex;
use sightline_query::QueryContext;
use sightline_storage::{ManualClock, Store, StoreConfig};

#[test]
fn planted_answers_are_found_with_high_precision_and_recall() {
    let cfg = TrafficConfig {
        communities: 6,
        days: 21,
        households_per_community: 150,
        drivers: true,
        planted: true,
        ..Default::default()
    };
    let traffic = Traffic::new(cfg.clone());
    let truth = traffic.truth();
    assert_eq!(truth.companions.len(), 3);
    assert_eq!(truth.nocturnal.len(), 2);
    assert_eq!(truth.collisions.len(), 1);
    assert_eq!(truth.pairs.len(), 6 * 90);

    let dir = tempfile::tempdir().unwrap();
    let clock = std::sync::Arc::new(ManualClock::new(cfg.start_ms + 30 * 86_400_000));
    let store = Store::open_with_clock(dir.path(), StoreConfig::default(), clock).unwrap();
    let loaded = load(&store, &traffic, usize::MAX, Pace::Free).unwrap();
    assert_eq!(loaded.rejected, 0, "every planted event is valid");
    let index = StoreIndex::attach(&store).unwrap();
    let ctx = QueryContext::new(&store, &index);
    let s = score(&ctx, &truth, cfg.start_ms, cfg.days, 60).unwrap();
    eprintln!("{s:#?}");
    for (name, sc, min_precision) in [
        ("companions", &s.companions, 0.9),
        ("pairs", &s.pairs, 0.9),
        ("nocturnal", &s.nocturnal, 0.9),
        ("collisions", &s.collisions, 0.99),
    ] {
        assert!(sc.recall >= 0.9, "{name}: {sc:?}");
        assert!(sc.precision >= min_precision, "{name}: {sc:?}");
    }
}

#[test]
fn without_planting_the_city_is_as_recorded() {
    // The benchmark datasets do not change when planting is off.
    let plain = Traffic::new(TrafficConfig {
        communities: 2,
        days: 2,
        ..Default::default()
    });
    let planted = Traffic::new(TrafficConfig {
        communities: 2,
        days: 2,
        planted: true,
        ..Default::default()
    });
    let (a, b) = (plain.day_events(1), planted.day_events(1));
    assert!(b.len() > a.len());
    assert!(a.iter().all(|e| b.contains(e)), "planting only adds events");
    assert_eq!(plain.truth(), Default::default());
}
