//! Heap used by a trajectory query, measured with a counting allocator (this test
//! binary's own): a page of a subject seen 200,000 times holds the page and the stays,
//! not the subject's history.
//!
//! Before the trajectory merged per-device runs, it collected every event of the
//! subject in the range with where its attributes were (56 bytes each), sorted them
//! and copied them again (over 20 MB for this subject), and kept every stay; under the
//! soak, trajectories of the busiest plates held 180 MB of the server's heap at its
//! peak (heaptrack; RELIABILITY.md, "Soak").

#[path = "../../storage/tests/common/counting.rs"]
mod counting;

use std::sync::Arc;

use sightline_index::StoreIndex;
use sightline_query::*;
use sightline_storage::{EventInput, Kind, ManualClock, Store, StoreConfig};

use counting::peak_during;

/// 2021-09-01T00:00:00+08:00.
const DAY0: i64 = 1_630_425_600_000;
const DAY: i64 = 86_400_000;
const EVENTS: usize = 200_000;
const PLATE: &str = "苏E12345";

/// The plate in and out of two communities' gates (4 devices each) over 4 days, in
/// 4 sealed rounds and 10,000 more left in memory (copied by a query: the memory part
/// is bounded by maintenance, not by the query); other plates in between.
fn busy_plate_store(dir: &std::path::Path) -> (Store, Arc<StoreIndex>) {
    let clock = Arc::new(ManualClock::new(DAY0 + 10 * DAY));
    let store = Store::open_with_clock(dir, StoreConfig::default(), clock).unwrap();
    let rounds = [47_500, 47_500, 47_500, 47_500, 10_000];
    assert_eq!(rounds.iter().sum::<usize>(), EVENTS);
    let mut k0 = 0;
    for (round, n) in rounds.into_iter().enumerate() {
        let batch: Vec<_> = (0..n)
            .flat_map(|i| {
                let k = k0 + i;
                let ts = DAY0 + (k as i64 * 1_723) % (4 * DAY);
                let c = k % 2;
                let input = |subject: String| EventInput {
                    ts_ms: ts,
                    community: format!("320508000{c}"),
                    device: format!("320508{c:02}011210000{:03}", k % 4),
                    kind: "vehicle".into(),
                    subject,
                    direction: if k % 3 == 0 { "out" } else { "in" }.into(),
                    ..Default::default()
                };
                [
                    store.validate(input(PLATE.into())).unwrap(),
                    store
                        .validate(input(format!("苏E{:05}", k % 1000)))
                        .unwrap(),
                ]
            })
            .collect();
        for chunk in batch.chunks(20_000) {
            store.append(chunk).unwrap();
        }
        k0 += n;
        if round < 4 {
            for s in store.shards() {
                store.seal_shard(s.key).unwrap();
            }
        }
    }
    let index = StoreIndex::attach(&store).unwrap();
    (store, index)
}

#[test]
fn a_trajectory_page_holds_the_page_not_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let (store, index) = busy_plate_store(dir.path());
    let ctx = QueryContext::new(&store, &index);
    let q = TrajectoryQuery {
        kind: Kind::Vehicle,
        subject: PLATE.into(),
        from_ms: DAY0,
        to_ms: DAY0 + 5 * DAY,
        communities: None,
        cursor: None,
        limit: 100,
    };
    // The first page (with the stays, which need the whole range), then a later page.
    let (first, peak) = peak_during(|| trajectory(&ctx, &q).unwrap());
    eprintln!("first page of {EVENTS}: {peak} bytes at peak");
    assert_eq!(first.events.len(), 100);
    assert_eq!(first.stays.len(), MAX_STAYS);
    assert!(
        first.stays_truncated,
        "more stays than MAX_STAYS are flagged"
    );
    assert!(
        peak < 4 << 20,
        "the first page took {peak} bytes of heap ({} an event of the subject)",
        peak / EVENTS
    );
    let later = TrajectoryQuery {
        cursor: first.next_cursor.clone(),
        ..q.clone()
    };
    let (second, peak) = peak_during(|| trajectory(&ctx, &later).unwrap());
    eprintln!("second page: {peak} bytes at peak");
    assert!(second.stays.is_empty() && !second.stays_truncated);
    assert_eq!(second.events.len(), 100);
    assert!(second.events[0].ts_ms >= first.events[99].ts_ms);
    assert!(peak < 1 << 20, "a later page took {peak} bytes of heap");

    // The streaming form (the export) holds one page at a time, and hands over all.
    let (sent, peak) = peak_during(|| {
        let mut last = i64::MIN;
        let mut ordered = true;
        let n = trajectory_pages(
            &ctx,
            &q,
            1000,
            |total| total == EVENTS,
            |events, _| {
                ordered &= events.iter().all(|e| {
                    let ok = e.ts_ms >= last;
                    last = e.ts_ms;
                    ok
                });
                true
            },
        )
        .unwrap();
        assert!(ordered, "events in time order");
        n
    });
    eprintln!("streaming all {EVENTS}: {peak} bytes at peak");
    assert_eq!(sent, EVENTS);
    assert!(peak < 2 << 20, "streaming took {peak} bytes of heap");

    // And in exactly the trajectory order, (ts, device code, seq): the plate's runs
    // hold tens of thousands of events each, in delta segments that overlap in time,
    // so chunks are refilled and runs interleave. The oracle: every row of the
    // store, filtered and sorted.
    let mut got = Vec::with_capacity(EVENTS);
    trajectory_pages(
        &ctx,
        &q,
        1000,
        |_| true,
        |events, _| {
            got.extend(
                events
                    .iter()
                    .map(|e| (e.ts_ms, e.device.to_string(), e.seq)),
            );
            true
        },
    )
    .unwrap();
    let id = store
        .dictionaries()
        .subject_id(Kind::Vehicle, PLATE)
        .unwrap();
    let mut want = Vec::with_capacity(EVENTS);
    store
        .scan_range(DAY0, DAY0 + 5 * DAY, None, |r| {
            if r.subject == id {
                want.push(r);
            }
        })
        .unwrap();
    let want: Vec<(i64, String, u64)> = {
        let dicts = store.dictionaries();
        let mut w: Vec<_> = want
            .iter()
            .map(|r| (r.ts_ms, dicts.device(r.device).unwrap().to_string(), r.seq))
            .collect();
        w.sort();
        w
    };
    assert_eq!(got.len(), want.len());
    assert!(
        got == want,
        "the streamed trajectory is not in (ts, device, seq) order"
    );
}
