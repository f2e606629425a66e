//! Every query against a brute-force oracle written as plainly as possible.
//!
//! Random events use small alphabets (3 communities, 2 devices each, a handful of
//! subjects) on a coarse time grid that straddles local midnights, so co-occurrences,
//! exact window boundaries and day boundaries happen often. The store gets them in
//! several batches with shards sealed in between, so answers combine sealed segments,
//! delta segments of late events, and in-memory rows. The index is attached before
//! loading (kept current by the observer) or after (built by its scan).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use proptest::prelude::*;
use sightline_index::StoreIndex;
use sightline_query::*;
use sightline_storage::{Appended, Direction, EventInput, Kind, ManualClock, Store, StoreConfig};

/// 2021-09-01T00:00:00+08:00: a local midnight.
const DAY0: i64 = 1_630_425_600_000;
const MIN: i64 = 60_000;
const TZ: i64 = 8 * HOUR_MS;

#[derive(Clone, Debug)]
struct Ev {
    seq: u64,
    ts: i64,
    community: String,
    device: String,
    kind: Kind,
    subject: String,
    direction: Direction,
}

fn community(c: u8) -> String {
    format!("320508000{c}")
}
fn device(c: u8, d: u8) -> String {
    format!("320508{c:02}011210000{d:03}")
}
fn subject_of(kind: Kind, n: u8) -> String {
    match kind {
        Kind::Vehicle => format!("苏E0000{n}"),
        _ => format!("F{n}"),
    }
}
fn local(ts: i64) -> (i64, i64) {
    ((ts + TZ).div_euclid(DAY_MS), (ts + TZ).rem_euclid(DAY_MS))
}

/// (community, ts) of a sighting.
type Seen = (String, i64);

/// (ts, community, device, kind, subject, direction) before storing.
type Raw = (i64, u8, u8, Kind, u8, Direction);

fn raw_event() -> impl Strategy<Value = Raw> {
    (
        // A few hours around three local midnights (and noons); 8 slots 30 s apart
        // in each, so events crowd onto the same devices within a window.
        (
            prop::sample::select(vec![-1i64, 0, 11, 12, 23, 24, 47, 48]),
            0i64..4,
            0i64..2,
        ),
        0u8..3,
        0u8..2,
        prop_oneof![Just(Kind::Vehicle), Just(Kind::Face)],
        0u8..4,
        prop_oneof![
            Just(Direction::In),
            Just(Direction::Out),
            Just(Direction::Unknown)
        ],
    )
        .prop_map(|((h, m, half), c, d, k, s, dir)| {
            (
                DAY0 + h * HOUR_MS + m * MIN + half * 30_000,
                c,
                d,
                k,
                s,
                dir,
            )
        })
}

struct Loaded {
    _dir: tempfile::TempDir,
    store: Store,
    index: Arc<StoreIndex>,
    events: Vec<Ev>,
}

/// Loads `batches`, sealing every shard after the batches flagged in `seal_after`.
fn load(batches: &[Vec<Raw>], seal_after: &[bool], index_first: bool) -> Loaded {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(DAY0 + 10 * DAY_MS));
    let store = Store::open_with_clock(dir.path(), StoreConfig::default(), clock).unwrap();
    let early = index_first.then(|| StoreIndex::attach(&store).unwrap());
    let mut events = Vec::new();
    for (i, batch) in batches.iter().enumerate() {
        let valid: Vec<_> = batch
            .iter()
            .map(|&(ts, c, d, kind, s, direction)| {
                store
                    .validate(EventInput {
                        ts_ms: ts,
                        community: community(c),
                        device: device(c, d),
                        kind: kind.as_str().into(),
                        subject: subject_of(kind, s),
                        direction: direction.as_str().into(),
                        ..Default::default()
                    })
                    .unwrap()
            })
            .collect();
        let outcome = store.append(&valid).unwrap();
        for (&(ts, c, d, kind, s, direction), r) in batch.iter().zip(&outcome.results) {
            let Appended::Stored { seq } = r else {
                panic!("not stored: {r:?}")
            };
            events.push(Ev {
                seq: *seq,
                ts,
                community: community(c),
                device: device(c, d),
                kind,
                subject: subject_of(kind, s),
                direction,
            });
        }
        if seal_after.get(i).copied().unwrap_or(false) {
            for s in store.shards() {
                store.seal_shard(s.key).unwrap();
            }
        }
    }
    let index = early.unwrap_or_else(|| StoreIndex::attach(&store).unwrap());
    Loaded {
        _dir: dir,
        store,
        index,
        events,
    }
}

fn scenario() -> impl Strategy<Value = (Vec<Vec<Raw>>, Vec<bool>, bool)> {
    (
        prop::collection::vec(prop::collection::vec(raw_event(), 0..40), 1..4),
        prop::collection::vec(any::<bool>(), 3),
        any::<bool>(),
    )
}

/// `[from, to)` mostly on the hours events fall on, so events sit exactly on the bounds.
fn range() -> impl Strategy<Value = (i64, i64)> {
    let hour = prop_oneof![
        3 => prop::sample::select(vec![-1i64, 0, 11, 12, 23, 24, 47, 48]),
        1 => -4i64..50,
    ];
    let len = prop_oneof![
        3 => prop::sample::select(vec![1i64, 12, 24, 25, 48]),
        1 => 1i64..56,
    ];
    (hour, len).prop_map(|(a, len)| (DAY0 + a * HOUR_MS, DAY0 + (a + len) * HOUR_MS))
}

/// Moves `[from, to)` onto stored events when `snap` says so, so that events sit
/// exactly on the bounds: `from` at event `i` (shifted by `shift`), `to` at event `j`.
fn snap_range(
    events: &[Ev],
    (from, to): (i64, i64),
    snap: Option<(prop::sample::Index, prop::sample::Index)>,
    shift: i64,
) -> (i64, i64) {
    match snap {
        Some((i, j)) if !events.is_empty() => {
            let from = events[i.index(events.len())].ts + shift;
            let to = events[j.index(events.len())].ts;
            if to > from {
                (from, to)
            } else {
                (from, from + 25 * HOUR_MS)
            }
        }
        _ => (from, to),
    }
}

fn strip(s: &Sighting) -> (u64, i64, String, String, Kind, String, Direction) {
    (
        s.seq,
        s.ts_ms,
        s.community.to_string(),
        s.device.to_string(),
        s.kind,
        s.subject.to_string(),
        s.direction,
    )
}

// ---------------------------------------------------------------- trajectory

fn oracle_stays(evs: &[&Ev]) -> Vec<(String, i64, Option<i64>, StayEnd)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < evs.len() {
        if evs[i].direction != Direction::In {
            i += 1;
            continue;
        }
        let here = &evs[i].community;
        // The first later event that is elsewhere, or an `out` here, closes the stay.
        let close = (i + 1..evs.len())
            .find(|&j| evs[j].community != *here || evs[j].direction == Direction::Out);
        match close {
            None => {
                out.push((here.clone(), evs[i].ts, None, StayEnd::Open));
                break;
            }
            Some(j) => {
                let how = if evs[j].community != *here {
                    StayEnd::Elsewhere
                } else {
                    StayEnd::Out
                };
                out.push((here.clone(), evs[i].ts, Some(evs[j].ts), how));
                // The closing event may itself open the next stay.
                i = j;
                if how == StayEnd::Out {
                    i += 1;
                }
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn trajectory_matches_oracle(
        (batches, seals, index_first) in scenario(),
        grid in range(),
        snap in prop::option::of((any::<prop::sample::Index>(), any::<prop::sample::Index>())),
        kind in prop_oneof![Just(Kind::Vehicle), Just(Kind::Face)],
        s in 0u8..4,
        only in prop::option::of(prop::collection::vec(0u8..3, 1..3)),
        limit in 1usize..7,
        // Groups of runs sorted whole (the default), or past a small bound merged by
        // heap, or a mix of both in one answer.
        sort_max in prop_oneof![Just(TRAJECTORY_SORT_MAX), 0usize..6],
        // Events handed over in chunks of this many as they are merged.
        chunk in 1usize..4,
    ) {
        let l = load(&batches, &seals, index_first);
        let ctx = QueryContext {
            trajectory_sort_max: sort_max,
            ..QueryContext::new(&l.store, &l.index)
        };
        let (from, to) = snap_range(&l.events, grid, snap, 0);
        // With a snapped range, follow the subject of the event at `to` half the time.
        let (kind, subject) = match snap {
            Some((_, j)) if s % 2 == 0 && !l.events.is_empty() => {
                let e = &l.events[j.index(l.events.len())];
                (e.kind, e.subject.clone())
            }
            _ => (kind, subject_of(kind, s)),
        };
        let communities = only.as_ref().map(|cs| cs.iter().map(|&c| community(c)).collect::<Vec<_>>());
        let mut expected: Vec<&Ev> = l.events.iter()
            .filter(|e| e.kind == kind && e.subject == subject && e.ts >= from && e.ts < to)
            .filter(|e| communities.as_ref().is_none_or(|cs| cs.contains(&e.community)))
            .collect();
        expected.sort_by(|a, b| (a.ts, &a.device, a.seq).cmp(&(b.ts, &b.device, b.seq)));

        let mut got = Vec::new();
        let mut cursor = None;
        let mut first_stays = None;
        loop {
            let page = trajectory(&ctx, &TrajectoryQuery {
                kind, subject: subject.clone(), from_ms: from, to_ms: to,
                communities: communities.clone(), cursor: cursor.clone(), limit,
            }).unwrap();
            prop_assert!(page.events.len() <= limit);
            // The same page with its events handed over in chunks as they are merged:
            // the chunks and what is left after them are the page's events, in order,
            // and the stays and the cursor are the page's.
            let (mut told, mut chunks, mut chunk_attrs) = (None, Vec::new(), Vec::new());
            let handed = trajectory_handed(&ctx, &TrajectoryQuery {
                kind, subject: subject.clone(), from_ms: from, to_ms: to,
                communities: communities.clone(), cursor: cursor.clone(), limit,
            }, |most| { told = Some(most); Some(chunk) }, |events, attrs| {
                assert_eq!(events.len(), attrs.len());
                chunks.push(events);
                chunk_attrs.extend(attrs.iter().map(|a| a.decode().unwrap()));
            }).unwrap();
            prop_assert!(chunks.iter().all(|c| c.len() == chunk));
            prop_assert!(handed.events.len() < chunk || chunks.is_empty());
            prop_assert_eq!(handed.events.len(), handed.attrs_at.len());
            // Each event's attributes are its own.
            chunk_attrs.extend(handed.attrs().unwrap());
            prop_assert_eq!(chunk_attrs, page.attrs().unwrap());
            let joined: Vec<_> = chunks.iter().flatten().chain(&handed.events).map(strip).collect();
            let whole: Vec<_> = page.events.iter().map(strip).collect();
            prop_assert_eq!(joined, whole);
            prop_assert!(told.map_or(page.events.is_empty(), |most| most >= page.events.len()));
            prop_assert_eq!(&handed.stays, &page.stays);
            prop_assert_eq!(handed.stays_truncated, page.stays_truncated);
            prop_assert_eq!(
                handed.next_cursor.as_ref().map(|c| c.to_string()),
                page.next_cursor.as_ref().map(|c| c.to_string())
            );
            if cursor.is_none() {
                first_stays = Some(page.stays.clone());
            } else {
                prop_assert!(page.stays.is_empty());
            }
            got.extend(page.events.iter().map(strip));
            match page.next_cursor {
                // Cursors survive a round trip through their text form.
                Some(c) => cursor = Some(c.to_string().parse::<Cursor>().unwrap()),
                None => break,
            }
        }
        let want: Vec<_> = expected.iter().map(|e| (e.seq, e.ts, e.community.clone(), e.device.clone(), e.kind, e.subject.clone(), e.direction)).collect();
        prop_assert_eq!(&got, &want);
        // The streaming form hands over the same events, in pages of `limit`.
        let mut streamed = Vec::new();
        let q = TrajectoryQuery {
            kind, subject: subject.clone(), from_ms: from, to_ms: to,
            communities: communities.clone(), cursor: None, limit: 1,
        };
        let mut total = None;
        let n = trajectory_pages(&ctx, &q, limit, |t| { total = Some(t); true }, |events, attrs| {
            assert!(events.len() <= limit && events.len() == attrs.len());
            streamed.extend(events.iter().map(strip));
            true
        }).unwrap();
        prop_assert_eq!(n, want.len());
        prop_assert_eq!(total, Some(want.len()));
        prop_assert_eq!(&streamed, &want);
        let stays: Vec<_> = first_stays.unwrap().into_iter().map(|s| (s.community.to_string(), s.in_ms, s.out_ms, s.ended_by)).collect();
        prop_assert_eq!(stays, oracle_stays(&expected));
    }

    /// A subject spread thin: a few sightings in each of many (community, day) shards,
    /// at more devices than the merge caches names for (so devices share cache
    /// slots), sealed into segments (some shards twice) with the rest in memory, among
    /// other subjects' events: runs of one to three events in dozens of segments.
    #[test]
    fn trajectory_spread_thin_matches_oracle(
        events in prop::collection::vec(
            (
                0i64..10,
                0u8..6,
                0u8..80,
                0i64..DAY_MS / MIN,
                prop_oneof![3 => Just(0u8), 1 => 1u8..4],
                prop_oneof![Just(Direction::In), Just(Direction::Out)],
            ),
            1..600,
        ),
        cut in any::<prop::sample::Index>(),
        seals in prop::collection::vec(any::<bool>(), 2),
        whole_range in any::<bool>(),
        grid in range(),
        limit in prop_oneof![Just(10_000usize), 1usize..40],
        sort_max in prop_oneof![Just(TRAJECTORY_SORT_MAX), 0usize..6],
    ) {
        let raw: Vec<Raw> = events
            .iter()
            .map(|&(day, c, d, minute, s, dir)| {
                (DAY0 + day * DAY_MS + minute * MIN, c, d, Kind::Vehicle, s, dir)
            })
            .collect();
        let (first, second) = raw.split_at(cut.index(raw.len() + 1));
        let l = load(&[first.to_vec(), second.to_vec()], &seals, false);
        let ctx = QueryContext {
            trajectory_sort_max: sort_max,
            ..QueryContext::new(&l.store, &l.index)
        };
        let (from, to) = match whole_range {
            true => (DAY0 - DAY_MS, DAY0 + 11 * DAY_MS),
            false => grid,
        };
        let subject = subject_of(Kind::Vehicle, 0);
        let mut expected: Vec<&Ev> = l.events.iter()
            .filter(|e| e.subject == subject && e.ts >= from && e.ts < to)
            .collect();
        expected.sort_by(|a, b| (a.ts, &a.device, a.seq).cmp(&(b.ts, &b.device, b.seq)));
        let want: Vec<_> = expected.iter().map(|e| (e.seq, e.ts, e.community.clone(), e.device.clone(), e.kind, e.subject.clone(), e.direction)).collect();
        let mut got = Vec::new();
        let mut cursor = None;
        let mut first_stays = None;
        loop {
            let page = trajectory(&ctx, &TrajectoryQuery {
                kind: Kind::Vehicle, subject: subject.clone(), from_ms: from, to_ms: to,
                communities: None, cursor: cursor.clone(), limit,
            }).unwrap();
            prop_assert!(page.events.len() <= limit);
            first_stays.get_or_insert(page.stays.clone());
            got.extend(page.events.iter().map(strip));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        prop_assert_eq!(&got, &want);
        let stays: Vec<_> = first_stays.unwrap().into_iter().map(|s| (s.community.to_string(), s.in_ms, s.out_ms, s.ended_by)).collect();
        prop_assert_eq!(stays, oracle_stays(&expected));
    }

    #[test]
    fn cooccurrence_matches_oracle(
        (batches, seals, index_first) in scenario(),
        grid in range(),
        snap in prop::option::of((any::<prop::sample::Index>(), any::<prop::sample::Index>())),
        kind in prop_oneof![Just(Kind::Vehicle), Just(Kind::Face)],
        s in 0u8..4,
        window_s in prop_oneof![Just(0i64), Just(30), Just(60), Just(90)],
        min_count in 1u32..3,
        device_scope in any::<bool>(),
        candidate_kind in prop::option::of(prop_oneof![Just(Kind::Vehicle), Just(Kind::Face)]),
        dedup_s in prop::option::of(prop_oneof![Just(0i64), Just(30), Just(120)]),
        limit in 1usize..10,
    ) {
        let l = load(&batches, &seals, index_first);
        let ctx = QueryContext::new(&l.store, &l.index);
        let (from, to) = snap_range(&l.events, grid, snap, 0);
        let target = subject_of(kind, s);
        let w = window_s * 1000;
        let scope = if device_scope { Scope::Device } else { Scope::Community };
        let got = cooccurrence(&ctx, &Cooccurrence {
            kind, subject: target.clone(), from_ms: from, to_ms: to, communities: None,
            window_ms: w, min_count, scope, candidate_kind,
            dedup_gap_ms: dedup_s.map(|g| g * 1000), limit,
        }).unwrap();

        // Passes: each target sighting, or runs at one device with gaps <= dedup.
        let mut sightings: Vec<&Ev> = l.events.iter()
            .filter(|e| e.kind == kind && e.subject == target && e.ts >= from && e.ts < to)
            .collect();
        let mut passes: Vec<(String, String, i64, i64)> = Vec::new();
        match dedup_s {
            None => passes = sightings.iter().map(|e| (e.community.clone(), e.device.clone(), e.ts, e.ts)).collect(),
            Some(g) => {
                sightings.sort_by(|a, b| (&a.device, &a.community, a.ts).cmp(&(&b.device, &b.community, b.ts)));
                for e in sightings {
                    let extend = passes.last().is_some_and(|p| p.1 == e.device && p.0 == e.community && e.ts - p.3 <= g * 1000);
                    if extend {
                        passes.last_mut().unwrap().3 = e.ts;
                    } else {
                        passes.push((e.community.clone(), e.device.clone(), e.ts, e.ts));
                    }
                }
            }
        }
        // Candidate (kind, subject) -> (passes hit, matched events).
        let mut hits: BTreeMap<(Kind, String), (BTreeSet<usize>, BTreeSet<u64>)> = BTreeMap::new();
        for (i, p) in passes.iter().enumerate() {
            for c in &l.events {
                let place = match scope { Scope::Device => c.device == p.1, Scope::Community => c.community == p.0 };
                let other = (c.kind, &c.subject) != (kind, &target);
                if place && other && c.ts >= p.2 - w && c.ts <= p.3 + w
                    && candidate_kind.is_none_or(|k| k == c.kind) {
                    let e = hits.entry((c.kind, c.subject.clone())).or_default();
                    e.0.insert(i);
                    e.1.insert(c.seq);
                }
            }
        }
        let by_seq: HashMap<u64, &Ev> = l.events.iter().map(|e| (e.seq, e)).collect();
        let mut want: Vec<(u32, Kind, String, u32, u32, i64, i64)> = hits.into_iter()
            .filter(|(_, (p, _))| p.len() as u32 >= min_count)
            .map(|((k, s), (p, seqs))| {
                let evs: Vec<&Ev> = seqs.iter().map(|q| by_seq[q]).collect();
                let devices: HashSet<&String> = evs.iter().map(|e| &e.device).collect();
                let days: HashSet<i64> = evs.iter().map(|e| local(e.ts).0).collect();
                (p.len() as u32, k, s, devices.len() as u32, days.len() as u32,
                 evs.iter().map(|e| e.ts).min().unwrap(), evs.iter().map(|e| e.ts).max().unwrap())
            })
            .collect();
        want.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        want.truncate(limit);
        let got_plain: Vec<_> = got.iter().map(|c| (c.hits, c.kind, c.subject.clone(), c.devices, c.days, c.first_ms, c.last_ms)).collect();
        prop_assert_eq!(got_plain, want);
        // Lift: hits over what the candidate's events at the target's locations,
        // spread evenly over those locations and the range, would give by chance.
        let location = |community: &String, device: &String| match scope {
            Scope::Device => device.clone(),
            Scope::Community => community.clone(),
        };
        let places: HashSet<String> = passes.iter().map(|p| location(&p.0, &p.1)).collect();
        for c in &got {
            let n = l.events.iter()
                .filter(|e| (e.kind, &e.subject) == (c.kind, &c.subject))
                .filter(|e| e.ts >= from - w && e.ts < to + w)
                .filter(|e| places.contains(&location(&e.community, &e.device)))
                .count() as f64;
            let span = (to - from + 2 * w) as f64;
            let expected: f64 = passes.iter()
                .map(|p| (n / places.len() as f64 * (p.3 - p.2 + 2 * w + 1) as f64 / span).min(1.0))
                .sum();
            let lift = if expected > 0.0 { c.hits as f64 / expected } else { 0.0 };
            prop_assert!((c.lift - lift).abs() <= 1e-9 * lift.max(1.0), "lift {} want {}", c.lift, lift);
            prop_assert!(c.lift.is_finite() && c.lift > 0.0, "lift {}", c.lift);
        }
    }

    #[test]
    fn collision_matches_oracle(
        (batches, seals, index_first) in scenario(),
        conds in prop::collection::vec((any::<bool>(), prop::collection::vec((0u8..3, 0u8..2), 1..3), range()), 1..5),
        kind in prop_oneof![Just(Kind::Vehicle), Just(Kind::Face)],
        k in 1usize..4,
        limit in 1usize..10,
    ) {
        let l = load(&batches, &seals, index_first);
        let ctx = QueryContext::new(&l.store, &l.index);
        let k = k.min(conds.len());
        let conditions: Vec<Condition> = conds.iter().map(|(by_device, places, (from, to))| Condition {
            place: if *by_device {
                Place::Devices(places.iter().map(|&(c, d)| device(c, d)).collect())
            } else {
                Place::Communities(places.iter().map(|&(c, _)| community(c)).collect())
            },
            from_ms: *from, to_ms: *to,
        }).collect();
        let got = collision(&ctx, &Collision { kind, conditions, min_conditions: k, limit }).unwrap();

        let mut met: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
        for (i, (by_device, places, (from, to))) in conds.iter().enumerate() {
            for e in &l.events {
                let at = places.iter().any(|&(c, d)| if *by_device { e.device == device(c, d) } else { e.community == community(c) });
                if at && e.kind == kind && e.ts >= *from && e.ts < *to {
                    met.entry(e.subject.clone()).or_default().insert(i);
                }
            }
        }
        let mut want: Vec<(String, Vec<usize>)> = met.into_iter()
            .filter(|(_, c)| c.len() >= k)
            .map(|(s, c)| (s, c.into_iter().collect()))
            .collect();
        want.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
        want.truncate(limit);
        let got: Vec<_> = got.into_iter().map(|h| (h.subject, h.conditions)).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn frequency_and_first_seen_match_oracle(
        (batches, seals, index_first) in scenario(),
        grid in range(),
        snap in prop::option::of((any::<prop::sample::Index>(), any::<prop::sample::Index>())),
        c in 0u8..3,
        kind in prop_oneof![Just(Kind::Vehicle), Just(Kind::Face)],
        min_count in prop::option::of(1u32..6),
        min_days in prop::option::of(1u32..3),
        lookback in 0u32..3,
    ) {
        let l = load(&batches, &seals, index_first);
        let ctx = QueryContext::new(&l.store, &l.index);
        // Snapped: an event sits exactly `lookback` days before `from`.
        let (from, to) = snap_range(&l.events, grid, snap, lookback as i64 * DAY_MS);
        // Snapped: ask about the community and kind of the event at `from - lookback`.
        let (place, kind) = match snap {
            Some((i, _)) if !l.events.is_empty() => {
                let e = &l.events[i.index(l.events.len())];
                (e.community.clone(), e.kind)
            }
            _ => (community(c), kind),
        };
        let here: Vec<&Ev> = l.events.iter().filter(|e| e.community == place && e.kind == kind).collect();

        if min_count.is_some() || min_days.is_some() {
            let got = frequency(&ctx, &FrequencyQuery {
                community: place.clone(), kind, from_ms: from, to_ms: to, min_count, min_days, limit: 1000,
            }).unwrap();
            let mut per: BTreeMap<String, Vec<i64>> = BTreeMap::new();
            for e in here.iter().filter(|e| e.ts >= from && e.ts < to) {
                per.entry(e.subject.clone()).or_default().push(e.ts);
            }
            let mut want: Vec<Frequency> = per.into_iter().filter_map(|(s, ts)| {
                let days: BTreeSet<i64> = ts.iter().map(|t| local(*t).0).collect();
                let ok = min_count.is_some_and(|n| ts.len() as u32 >= n) || min_days.is_some_and(|d| days.len() as u32 >= d);
                ok.then(|| Frequency {
                    subject: s, count: ts.len() as u32, days: days.len() as u32,
                    first_ms: *ts.iter().min().unwrap(), last_ms: *ts.iter().max().unwrap(),
                })
            }).collect();
            want.sort_by(|a, b| b.count.cmp(&a.count).then(a.subject.cmp(&b.subject)));
            prop_assert_eq!(got, want);
        } else {
            let refused = frequency(&ctx, &FrequencyQuery {
                community: place.clone(), kind, from_ms: from, to_ms: to, min_count, min_days, limit: 1000,
            });
            prop_assert!(refused.is_err());
        }

        let got = first_seen(&ctx, &FirstSeenQuery {
            community: place.clone(), kind, from_ms: from, to_ms: to, lookback_days: lookback, limit: 1000,
        }).unwrap();
        let before: HashSet<&String> = here.iter()
            .filter(|e| e.ts >= from - lookback as i64 * DAY_MS && e.ts < from)
            .map(|e| &e.subject).collect();
        let mut per: BTreeMap<String, (i64, u32)> = BTreeMap::new();
        for e in here.iter().filter(|e| e.ts >= from && e.ts < to && !before.contains(&e.subject)) {
            let x = per.entry(e.subject.clone()).or_insert((i64::MAX, 0));
            x.0 = x.0.min(e.ts);
            x.1 += 1;
        }
        let mut want: Vec<FirstSeen> = per.into_iter().map(|(subject, (first_ms, count))| FirstSeen { subject, first_ms, count }).collect();
        want.sort_by(|a, b| a.first_ms.cmp(&b.first_ms).then(a.subject.cmp(&b.subject)));
        prop_assert_eq!(got, want);
    }

    #[test]
    fn nocturnal_overnight_and_counts_match_oracle(
        (batches, seals, index_first) in scenario(),
        grid in range(),
        snap in prop::option::of((any::<prop::sample::Index>(), any::<prop::sample::Index>())),
        kind in prop_oneof![Just(Kind::Vehicle), Just(Kind::Face)],
        s in 0u8..4,
        (day_start, day_end) in (0u32..12, 12u32..25),
        (min_night, max_day) in (0u32..4, 0u32..4),
        (morning, evening) in (0u32..12, 12u32..25),
        by in prop_oneof![Just(CountKey::Community), Just(CountKey::Device), Just(CountKey::Kind)],
        hourly in any::<bool>(),
    ) {
        let l = load(&batches, &seals, index_first);
        let ctx = QueryContext::new(&l.store, &l.index);
        let (from, to) = snap_range(&l.events, grid, snap, 0);
        let in_range: Vec<&Ev> = l.events.iter().filter(|e| e.ts >= from && e.ts < to).collect();

        // Nocturnal.
        let mut q = NocturnalQuery::new(kind, from, to);
        (q.day_start_hour, q.day_end_hour, q.min_night, q.max_day) = (day_start, day_end, min_night, max_day);
        let got = nocturnal(&ctx, &q).unwrap();
        let mut per: BTreeMap<String, (u32, u32, BTreeSet<i64>)> = BTreeMap::new();
        for e in in_range.iter().filter(|e| e.kind == kind) {
            let (day, ms) = local(e.ts);
            let hour = (ms / HOUR_MS) as u32;
            let x = per.entry(e.subject.clone()).or_default();
            if hour >= day_start && hour < day_end {
                x.1 += 1;
            } else {
                x.0 += 1;
                // A night belongs to the date it began on.
                x.2.insert(if hour < day_start { day - 1 } else { day });
            }
        }
        let mut want: Vec<(String, u32, u32, u32)> = per.into_iter()
            .filter(|(_, (n, d, _))| *n >= min_night && *d <= max_day)
            .map(|(s, (n, d, nights))| (s, n, d, nights.len() as u32))
            .collect();
        want.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let got_plain: Vec<_> = got.iter().map(|x| (x.subject.clone(), x.night, x.day, x.night_days)).collect();
        prop_assert_eq!(got_plain, want);
        for x in &got {
            prop_assert!((x.night_ratio - x.night as f64 / (x.night + x.day) as f64).abs() < 1e-12);
        }

        // Overnight base.
        let subject = subject_of(kind, s);
        let mut q = OvernightQuery::new(kind, &subject, from, to);
        (q.morning_hour, q.evening_hour) = (morning, evening);
        let got = overnight(&ctx, &q).unwrap();
        let mut mine: Vec<&Ev> = in_range.iter().copied().filter(|e| e.kind == kind && e.subject == subject).collect();
        mine.sort_by(|a, b| (a.ts, &a.device, a.seq).cmp(&(b.ts, &b.device, b.seq)));
        let mut nights: BTreeMap<i64, (Option<Seen>, Option<Seen>)> = BTreeMap::new();
        for e in &mine {
            let (day, ms) = local(e.ts);
            if ms >= evening as i64 * HOUR_MS {
                nights.entry(day).or_default().0 = Some((e.community.clone(), e.ts));
            } else if ms < morning as i64 * HOUR_MS {
                let n = nights.entry(day - 1).or_default();
                if n.1.is_none() {
                    n.1 = Some((e.community.clone(), e.ts));
                }
            }
        }
        let got_nights: Vec<_> = got.nights.iter().map(|n| (n.day, (n.evening.clone(), n.morning.clone()))).collect();
        let want_nights: Vec<_> = nights.clone().into_iter().collect();
        prop_assert_eq!(got_nights, want_nights);
        let mut credit: BTreeMap<String, u32> = BTreeMap::new();
        for (e, m) in nights.values() {
            let set: BTreeSet<&String> = e.iter().chain(m.iter()).map(|(c, _)| c).collect();
            for c in set {
                *credit.entry(c.clone()).or_default() += 1;
            }
        }
        let mut want: Vec<(String, u32)> = credit.into_iter().collect();
        want.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        prop_assert_eq!(got.bases, want);

        // Counts.
        let per = if hourly { Granularity::Hour } else { Granularity::Day };
        let got = counts(&ctx, &Counts { from_ms: from, to_ms: to, communities: None, kind: None, by, per }).unwrap();
        let width = if hourly { HOUR_MS } else { DAY_MS };
        let mut want: BTreeMap<(i64, String), u64> = BTreeMap::new();
        for e in &in_range {
            let bucket = (e.ts + TZ).div_euclid(width) * width - TZ;
            let key = match by {
                CountKey::Community => e.community.clone(),
                CountKey::Device => e.device.clone(),
                CountKey::Kind => e.kind.as_str().to_string(),
            };
            *want.entry((bucket, key)).or_default() += 1;
        }
        let got: Vec<_> = got.into_iter().map(|b| ((b.bucket_ms, b.key), b.count)).collect();
        prop_assert_eq!(got, want.into_iter().collect::<Vec<_>>());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Access control's guarantee, at the query layer: a query scoped to some
    /// communities answers exactly what the unscoped query answers over a store that
    /// holds only those communities' events — nothing seen, counted or inferred from
    /// the others (event ids differ between the two stores and are left out).
    #[test]
    fn a_scoped_query_answers_as_if_only_its_communities_existed(
        (batches, seals, index_first) in scenario(),
        mask in 1u8..7,
        grid in range(),
        kind in prop_oneof![Just(Kind::Vehicle), Just(Kind::Face)],
        s in 0u8..4,
        window_s in prop_oneof![Just(0i64), Just(60)],
        device_scope in any::<bool>(),
    ) {
        let inside = |c: u8| mask & (1 << c) != 0;
        let full = load(&batches, &seals, index_first);
        let kept: Vec<Vec<Raw>> = batches
            .iter()
            .map(|b| b.iter().filter(|e| inside(e.1)).cloned().collect())
            .collect();
        let only = load(&kept, &seals, index_first);
        // A gate camera of community 0 that also reports for community 1 (a device
        // shared at a boundary): its community-1 events must stay out of a scope
        // without community 1, even when reached through the device.
        let cross = |store: &Store, ts: i64, kind: Kind, n: u8| {
            let e = store.validate(EventInput {
                ts_ms: ts, community: community(1), device: device(0, 0),
                kind: kind.as_str().into(), subject: subject_of(kind, n),
                direction: "in".into(), ..Default::default()
            }).unwrap();
            store.append(&[e]).unwrap();
        };
        for (ts, k, n) in [(DAY0 + 12 * HOUR_MS, kind, s), (DAY0 + 12 * HOUR_MS + 30_000, Kind::Face, 3)] {
            cross(&full.store, ts, k, n);
            if inside(1) {
                cross(&only.store, ts, k, n);
            }
        }
        let mut ids: Vec<u32> = (0..3u8)
            .filter(|&c| inside(c))
            .filter_map(|c| full.store.dictionaries().community_id(&community(c)))
            .collect();
        ids.sort_unstable();
        let scoped = QueryContext::new(&full.store, &full.index).scoped(&ids);
        let plain = QueryContext::new(&only.store, &only.index);
        let (from, to) = grid;
        let subject = subject_of(kind, s);

        let traj = |ctx: &QueryContext<'_>| {
            let t = trajectory(ctx, &TrajectoryQuery {
                kind, subject: subject.clone(), from_ms: from, to_ms: to,
                communities: None, cursor: None, limit: 1000,
            }).unwrap();
            let events: Vec<_> = t.events.iter().map(|e| { let mut x = strip(e); x.0 = 0; x }).collect();
            (events, t.stays)
        };
        prop_assert_eq!(traj(&scoped), traj(&plain));

        let co = |ctx: &QueryContext<'_>| cooccurrence(ctx, &Cooccurrence {
            kind, subject: subject.clone(), from_ms: from, to_ms: to, communities: None,
            window_ms: window_s * 1000, min_count: 1,
            scope: if device_scope { Scope::Device } else { Scope::Community },
            candidate_kind: None, dedup_gap_ms: None, limit: 100,
        }).unwrap();
        prop_assert_eq!(co(&scoped), co(&plain));

        let all: Vec<String> = (0..3).map(community).collect();
        let coll = |ctx: &QueryContext<'_>| collision(ctx, &Collision {
            kind,
            conditions: vec![
                Condition { place: Place::Communities(all.clone()), from_ms: from, to_ms: to },
                Condition { place: Place::Devices(vec![device(0, 0), device(1, 1), device(2, 0)]), from_ms: DAY0, to_ms: DAY0 + 2 * DAY_MS },
            ],
            min_conditions: 1,
            limit: 1000,
        }).unwrap();
        prop_assert_eq!(coll(&scoped), coll(&plain));

        for c in &all {
            let freq = |ctx: &QueryContext<'_>| frequency(ctx, &FrequencyQuery {
                community: c.clone(), kind, from_ms: from, to_ms: to,
                min_count: Some(1), min_days: None, limit: 1000,
            }).unwrap();
            prop_assert_eq!(freq(&scoped), freq(&plain));
            let first = |ctx: &QueryContext<'_>| first_seen(ctx, &FirstSeenQuery {
                community: c.clone(), kind, from_ms: from, to_ms: to, lookback_days: 1, limit: 1000,
            }).unwrap();
            prop_assert_eq!(first(&scoped), first(&plain));
        }
        let mut nq = NocturnalQuery::new(kind, from, to);
        nq.min_night = 0;
        nq.max_day = 1000;
        prop_assert_eq!(nocturnal(&scoped, &nq).unwrap(), nocturnal(&plain, &nq).unwrap());
        let oq = OvernightQuery::new(kind, &subject, from, to);
        prop_assert_eq!(overnight(&scoped, &oq).unwrap(), overnight(&plain, &oq).unwrap());
        for by in [CountKey::Community, CountKey::Device, CountKey::Kind] {
            let q = Counts { from_ms: from, to_ms: to, communities: None, kind: None, by, per: Granularity::Hour };
            prop_assert_eq!(counts(&scoped, &q).unwrap(), counts(&plain, &q).unwrap());
        }

        let (vf, vo) = (sightline_index::Vocabulary::in_memory().unwrap(), sightline_index::Vocabulary::in_memory().unwrap());
        vf.catch_up(&full.store).unwrap();
        vo.catch_up(&only.store).unwrap();
        for pattern in ["苏E", "F"] {
            let q = SearchQuery { pattern: pattern.into(), mode: SearchMode::Prefix, kind: None, limit: 1000 };
            prop_assert_eq!(search(&scoped, &vf, &q).unwrap(), search(&plain, &vo, &q).unwrap());
        }
    }
}

/// Events of one subject at one millisecond on two devices whose ids run opposite to
/// their codes (the first seen is `…001`), sealed and in memory, read back by pages of
/// every size through the sorted path and the heap: always by (time, device code, seq),
/// and a cursor in the middle of the tie resumes exactly after it.
#[test]
fn ties_at_one_millisecond_are_ordered_by_device_code_then_seq_on_both_paths() {
    let t = DAY0 + 12 * HOUR_MS;
    let at = |d: u8| (t, 0u8, d, Kind::Vehicle, 0u8, Direction::In);
    let sealed = vec![
        at(1),
        at(0),
        at(1),
        at(0),
        (t - 1, 0, 1, Kind::Vehicle, 0, Direction::Out),
    ];
    let memory = vec![
        at(0),
        at(1),
        (t + 1, 0, 0, Kind::Vehicle, 0, Direction::Out),
    ];
    let l = load(&[sealed, memory], &[true, false], false);
    let mut want: Vec<&Ev> = l.events.iter().collect();
    want.sort_by(|a, b| (a.ts, &a.device, a.seq).cmp(&(b.ts, &b.device, b.seq)));
    let want: Vec<(u64, String)> = want.iter().map(|e| (e.seq, e.device.clone())).collect();
    // The tie really is opposite: the device seen first has the larger code.
    assert_eq!(l.events[0].device, device(0, 1));
    for sort_max in [TRAJECTORY_SORT_MAX, 0] {
        let ctx = QueryContext {
            trajectory_sort_max: sort_max,
            ..QueryContext::new(&l.store, &l.index)
        };
        for limit in 1..=want.len() {
            let (mut got, mut cursor) = (Vec::new(), None);
            loop {
                let page = trajectory(
                    &ctx,
                    &TrajectoryQuery {
                        kind: Kind::Vehicle,
                        subject: subject_of(Kind::Vehicle, 0),
                        from_ms: t - HOUR_MS,
                        to_ms: t + HOUR_MS,
                        communities: None,
                        cursor: cursor.clone(),
                        limit,
                    },
                )
                .unwrap();
                got.extend(page.events.iter().map(|e| (e.seq, e.device.to_string())));
                match page.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            assert_eq!(got, want, "sort_max {sort_max}, limit {limit}");
        }
    }
}

#[test]
fn queries_past_their_deadline_stop_with_an_error_and_answer_before_it() {
    // Events of every subject on every device, over two days, half of them sealed.
    let batch: Vec<Raw> = (0..2)
        .flat_map(|day| {
            (0..3u8).flat_map(move |c| {
                (0..4u8).map(move |s| {
                    let kind = if s % 2 == 0 {
                        Kind::Vehicle
                    } else {
                        Kind::Face
                    };
                    (
                        DAY0 + day * DAY_MS + 23 * HOUR_MS + s as i64 * MIN,
                        c,
                        0,
                        kind,
                        s,
                        Direction::In,
                    )
                })
            })
        })
        .collect();
    let l = load(&[batch.clone(), batch], &[true, false], false);
    let (from, to) = (DAY0, DAY0 + 2 * DAY_MS);
    let passed = QueryContext::new(&l.store, &l.index)
        .with_deadline(std::time::Instant::now() - std::time::Duration::from_millis(1));
    let later = QueryContext::new(&l.store, &l.index)
        .with_deadline(std::time::Instant::now() + std::time::Duration::from_secs(3600));
    let v = subject_of(Kind::Vehicle, 0);
    type Run = Box<dyn Fn(&QueryContext<'_>) -> Result<usize>>;
    let runs: Vec<(&str, Run)> = vec![
        (
            "collision",
            Box::new(move |ctx| {
                collision(
                    ctx,
                    &Collision {
                        kind: Kind::Vehicle,
                        conditions: vec![Condition {
                            place: Place::Communities(vec![community(0)]),
                            from_ms: from,
                            to_ms: to,
                        }],
                        min_conditions: 1,
                        limit: 100,
                    },
                )
                .map(|h| h.len())
            }),
        ),
        (
            "counts",
            Box::new(move |ctx| {
                counts(
                    ctx,
                    &Counts {
                        from_ms: from,
                        to_ms: to,
                        communities: None,
                        kind: None,
                        by: CountKey::Community,
                        per: Granularity::Day,
                    },
                )
                .map(|c| c.len())
            }),
        ),
        (
            "cooccurrence",
            Box::new(move |ctx| {
                cooccurrence(
                    ctx,
                    &Cooccurrence {
                        kind: Kind::Vehicle,
                        subject: v.clone(),
                        from_ms: from,
                        to_ms: to,
                        communities: None,
                        window_ms: 10 * MIN,
                        min_count: 1,
                        scope: Scope::Community,
                        candidate_kind: None,
                        dedup_gap_ms: None,
                        limit: 100,
                    },
                )
                .map(|c| c.len())
            }),
        ),
        (
            "nocturnal",
            Box::new(move |ctx| {
                let mut q = NocturnalQuery::new(Kind::Face, from, to);
                q.min_night = 0;
                nocturnal(ctx, &q).map(|n| n.len())
            }),
        ),
    ];
    for (name, run) in runs {
        assert!(
            matches!(run(&passed), Err(QueryError::DeadlineExceeded)),
            "{name} ran on past its deadline"
        );
        let n = run(&later).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(n > 0, "{name} found nothing");
    }
}

/// Queries read the index and the store while appends write both: no lock cycle. (A
/// co-occurrence once held the index view while counting in the store, and a flush
/// holding the shards while updating the index deadlocked with it under load.)
#[test]
fn queries_and_appends_run_together_without_deadlock() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(DAY0 + 10 * DAY_MS));
    let store =
        Arc::new(Store::open_with_clock(dir.path(), StoreConfig::default(), clock).unwrap());
    let index = StoreIndex::attach(&store).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let event = |i: i64, s: u8, kind: Kind| EventInput {
        ts_ms: DAY0 + 12 * HOUR_MS + (i % 40_000) * 1000,
        community: community((i % 3) as u8),
        device: device((i % 3) as u8, 0),
        kind: kind.as_str().into(),
        subject: subject_of(kind, s),
        direction: "in".into(),
        ..Default::default()
    };
    let mut threads = Vec::new();
    for w in 0..2i64 {
        let (store, stop) = (store.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let mut i = w * 1_000_000;
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<_> = (0..50)
                    .map(|k| {
                        let kind = if k % 2 == 0 {
                            Kind::Vehicle
                        } else {
                            Kind::Face
                        };
                        store.validate(event(i + k, (k % 4) as u8, kind)).unwrap()
                    })
                    .collect();
                store.append(&batch).unwrap();
                i += 50;
            }
        }));
    }
    for scope in [Scope::Device, Scope::Community, Scope::Device] {
        let (store, index, stop) = (store.clone(), index.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let ctx = QueryContext::new(&store, &index);
            while !stop.load(Ordering::Relaxed) {
                cooccurrence(
                    &ctx,
                    &Cooccurrence {
                        kind: Kind::Vehicle,
                        subject: subject_of(Kind::Vehicle, 0),
                        from_ms: DAY0,
                        to_ms: DAY0 + DAY_MS,
                        communities: None,
                        window_ms: 60_000,
                        min_count: 1,
                        scope,
                        candidate_kind: None,
                        dedup_gap_ms: None,
                        limit: 10,
                    },
                )
                .unwrap();
                trajectory(
                    &ctx,
                    &TrajectoryQuery {
                        kind: Kind::Face,
                        subject: subject_of(Kind::Face, 1),
                        from_ms: DAY0,
                        to_ms: DAY0 + DAY_MS,
                        communities: None,
                        cursor: None,
                        limit: 10,
                    },
                )
                .unwrap();
            }
        }));
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !threads.iter().all(|t| t.is_finished()) {
        assert!(
            std::time::Instant::now() < deadline,
            "queries and appends deadlocked"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    for t in threads {
        t.join().unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Objects by conditions (GA/T 1400.4 queries): the page and the total are the
    /// plain filter, sort and slice of every stored event, in scope.
    #[test]
    fn objects_match_oracle(
        (batches, seals, index_first) in scenario(),
        grid in range(),
        kind in prop::option::of(prop_oneof![Just(Kind::Vehicle), Just(Kind::Face)]),
        at in prop::option::of(prop::collection::vec((0u8..3, 0u8..2), 1..3)),
        // Tollgates: these events name none, so each is at its device's.
        gates in prop::option::of(prop::collection::vec((0u8..3, 0u8..2), 1..3)),
        of in prop::option::of(prop::collection::vec(0u8..4, 1..3)),
        scope in prop::option::of(prop::collection::vec(0u8..3, 0..3)),
        skip in 0usize..12,
        limit in 1usize..7,
        newest_first in any::<bool>(),
    ) {
        let l = load(&batches, &seals, index_first);
        let (from, to) = grid;
        let devices = at.as_ref().map(|ds| ds.iter().map(|&(c, d)| device(c, d)).collect::<Vec<_>>());
        let tollgates = gates.as_ref().map(|ds| ds.iter().map(|&(c, d)| device(c, d)).collect::<Vec<_>>());
        // Subjects are of the kind asked (a subject needs one).
        let subjects = match (kind, &of) {
            (Some(k), Some(ns)) => Some(ns.iter().map(|&n| subject_of(k, n)).collect::<Vec<_>>()),
            _ => None,
        };
        let scope_codes = scope.as_ref().map(|cs| cs.iter().map(|&c| community(c)).collect::<Vec<_>>());
        let scope_ids: Option<Vec<u32>> = scope_codes.as_ref().map(|codes| {
            let d = l.store.dictionaries();
            let mut ids: Vec<u32> = codes.iter().filter_map(|c| d.community_id(c)).collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        });
        let ctx = QueryContext::new(&l.store, &l.index);
        let ctx = match &scope_ids {
            Some(ids) => ctx.scoped(ids),
            None => ctx,
        };
        let mut want: Vec<&Ev> = l.events.iter()
            .filter(|e| e.ts >= from && e.ts < to)
            .filter(|e| kind.is_none_or(|k| e.kind == k))
            .filter(|e| devices.as_ref().is_none_or(|ds| ds.contains(&e.device)))
            .filter(|e| tollgates.as_ref().is_none_or(|ds| ds.contains(&e.device)))
            .filter(|e| subjects.as_ref().is_none_or(|ss| ss.contains(&e.subject)))
            .filter(|e| scope_codes.as_ref().is_none_or(|cs| cs.contains(&e.community)))
            .collect();
        want.sort_by_key(|e| (e.ts, e.seq));
        if newest_first {
            want.reverse();
        }
        let total = want.len() as u64;
        let want: Vec<u64> = want.into_iter().skip(skip).take(limit).map(|e| e.seq).collect();
        let page = objects(&ctx, &ObjectQuery {
            kind, from_ms: from, to_ms: to, devices, tollgates, subjects, attrs: Vec::new(),
            skip, limit, newest_first,
        }).unwrap();
        prop_assert_eq!(page.total, total);
        prop_assert_eq!(page.events.len(), page.attrs_at.len());
        let got: Vec<u64> = page.events.iter().map(|s| s.seq).collect();
        prop_assert_eq!(got, want);
        for (s, a) in page.events.iter().zip(&page.attrs_at) {
            prop_assert!(a.bytes().is_ok(), "attributes of {} readable", s.seq);
        }
    }
}
