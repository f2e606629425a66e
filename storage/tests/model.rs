//! Model-based property test: random appends (with duplicates, late events, several
//! communities and days), seals, compactions, reopens and retention, driven against the
//! real store and a plain `Vec` model; after every step the two must agree.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::*;
use proptest::prelude::*;
use sightline_storage::{Appended, AttrValue, Event, ManualClock, Store, StoreConfig};

const KINDS: [&str; 3] = ["vehicle", "face", "access"];
const DIRS: [&str; 3] = ["in", "out", "unknown"];
const RETENTION_DAYS: i64 = 3;

#[derive(Clone, Debug)]
struct Gen {
    minute: i64,
    community: u8,
    device: u8,
    subject: u8,
    kind: u8,
    dir: u8,
    source: Option<u8>,
}

#[derive(Clone, Debug)]
enum Op {
    Append(Vec<Gen>),
    Advance {
        hours: i64,
    },
    SealDue,
    SealOne(usize),
    CompactOne(usize),
    Maintain,
    Retention,
    Reopen,
    /// Closes and reopens, then reads one shard first: only its segments are mapped
    /// (opening maps none), and its events are the model's.
    ReopenReadOneShard(usize),
    /// Leaves a file the manifest does not list among the segments (as a crash between
    /// writing a segment and committing it does), then reopens: opening leaves it, the
    /// first maintenance removes it and says so.
    ReopenWithOrphan(usize),
    /// Writes the dictionary snapshot now (and keeps a copy of it).
    Snapshot,
    /// Closes and reopens with the snapshot kept by the last `Snapshot` (older than
    /// the log, as after a crash): opening applies the log records after it.
    ReopenWithOldSnapshot,
    /// Closes and reopens without a snapshot: the whole log is loaded.
    ReopenWithoutSnapshot,
}

fn gen() -> impl Strategy<Value = Gen> {
    (
        0i64..6 * 24 * 60,
        0u8..3,
        0u8..4,
        0u8..6,
        0u8..3,
        0u8..3,
        proptest::option::of(0u8..6),
    )
        .prop_map(
            |(minute, community, device, subject, kind, dir, source)| Gen {
                minute,
                community,
                device,
                subject,
                kind,
                dir,
                source,
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => proptest::collection::vec(gen(), 1..30).prop_map(Op::Append),
        2 => (1i64..30).prop_map(|hours| Op::Advance { hours }),
        1 => Just(Op::SealDue),
        2 => (0usize..64).prop_map(Op::SealOne),
        1 => (0usize..64).prop_map(Op::CompactOne),
        1 => Just(Op::Maintain),
        1 => Just(Op::Retention),
        1 => Just(Op::Reopen),
        1 => (0usize..64).prop_map(Op::ReopenReadOneShard),
        1 => (0usize..64).prop_map(Op::ReopenWithOrphan),
        1 => Just(Op::Snapshot),
        1 => Just(Op::ReopenWithOldSnapshot),
        1 => Just(Op::ReopenWithoutSnapshot),
    ]
}

fn event_of(g: &Gen) -> Event {
    let mut i = input(
        DAY0 + g.minute * 60_000 + g.subject as i64 * 7,
        &format!("c{}", g.community),
        g.device as u32,
        KINDS[g.kind as usize],
        &format!("S{}", g.subject),
    );
    i.direction = DIRS[g.dir as usize].into();
    i.attrs.insert(
        "confidence".into(),
        AttrValue::Float(0.5 + g.device as f64 / 10.0),
    );
    if let Some(s) = g.source {
        i = with_source(i, &format!("SRC{s}"));
    }
    ev(i)
}

/// The specification: a list of stored events and the rules, written plainly.
#[derive(Default)]
struct Model {
    events: Vec<(u64, Event)>,
    next_seq: u64,
    sources: HashMap<(String, i64, String), u64>,
}

fn day_of(ts: i64) -> i64 {
    (ts + 8 * HOUR).div_euclid(DAY)
}
fn day_end(day: i64) -> i64 {
    (day + 1) * DAY - 8 * HOUR
}

impl Model {
    fn append(&mut self, now: i64, events: &[Event]) -> Vec<Appended> {
        events
            .iter()
            .map(|e| {
                let horizon = now - RETENTION_DAYS * DAY;
                if e.ts_ms() > now + DAY || e.ts_ms() < horizon {
                    return Appended::Rejected(sightline_storage::ValidationError::new("ts", ""));
                }
                let key = e
                    .source_id()
                    .map(|s| (e.community().to_string(), day_of(e.ts_ms()), s.to_string()));
                if let Some(seq) = key.as_ref().and_then(|k| self.sources.get(k)) {
                    return Appended::Duplicate { seq: *seq };
                }
                self.next_seq += 1;
                if let Some(k) = key {
                    self.sources.insert(k, self.next_seq);
                }
                self.events.push((self.next_seq, e.clone()));
                Appended::Stored { seq: self.next_seq }
            })
            .collect()
    }

    fn retention(&mut self, now: i64) {
        let horizon = now - RETENTION_DAYS * DAY;
        self.events
            .retain(|(_, e)| day_end(day_of(e.ts_ms())) > horizon);
        self.sources
            .retain(|(_, day, _), _| day_end(*day) > horizon);
    }
}

fn config() -> StoreConfig {
    StoreConfig {
        retention_days: Some(RETENTION_DAYS as u32),
        memtable_max_events: 40,
        wal_file_bytes: 2048,
        ..Default::default()
    }
}

fn same_outcome(a: &Appended, b: &Appended) -> bool {
    match (a, b) {
        (Appended::Rejected(x), Appended::Rejected(y)) => x.field == y.field,
        _ => a == b,
    }
}

/// Every id the dictionaries ever gave, by table (community, device, subject): ids
/// never change and are dense, whether loaded from the log, a snapshot, or both.
#[derive(Default)]
struct SeenIds {
    names: [Vec<String>; 3],
}

fn check_ids(store: &Store, seen: &mut SeenIds) -> Result<(), TestCaseError> {
    let d = store.dictionaries();
    let lens = [d.len_communities(), d.len_devices(), d.len_subjects()];
    for (t, &len) in lens.iter().enumerate() {
        prop_assert!(len >= seen.names[t].len(), "table {} shrank", t);
        for id in 0..len as u32 {
            let name = match t {
                0 => {
                    let s = d.community(id).unwrap();
                    prop_assert_eq!(d.community_id(s), Some(id));
                    s.to_string()
                }
                1 => {
                    let s = d.device(id).unwrap();
                    prop_assert_eq!(d.device_id(s), Some(id));
                    s.to_string()
                }
                _ => {
                    let (k, s) = d.subject(id).unwrap();
                    prop_assert_eq!(d.subject_id(k, s), Some(id));
                    format!("{k:?}/{s}")
                }
            };
            match seen.names[t].get(id as usize) {
                Some(before) => prop_assert_eq!(before, &name, "table {} id {} changed", t, id),
                None => seen.names[t].push(name),
            }
        }
        prop_assert!(d.community(lens[0] as u32).is_none());
        prop_assert!(d.subject(lens[2] as u32).is_none());
    }
    Ok(())
}

fn check(store: &Store, model: &Model) -> Result<(), TestCaseError> {
    let got: Vec<(u64, Event)> = all_events(store)
        .into_iter()
        .map(|s| (s.seq, s.event))
        .collect();
    prop_assert_eq!(&got, &model.events);
    // Every id finds its event, wherever it lives; ids never stored or dropped find none.
    for (seq, e) in &model.events {
        let found = store.event_by_seq(*seq).unwrap();
        prop_assert!(found.is_some(), "event {} not found by id", seq);
        let (row, attrs) = found.unwrap();
        prop_assert_eq!(row.seq, *seq);
        prop_assert_eq!(row.ts_ms, e.ts_ms());
        prop_assert_eq!(attrs.decode().unwrap(), e.attrs());
    }
    // The change feed: events after a cursor, in sequence order, a page at a time, of
    // all communities or of some, up to the store's applied sequence number or below.
    let through = store.applied_through();
    let scopes: [Option<Vec<&str>>; 3] = [None, Some(vec!["c1"]), Some(vec!["c0", "c2"])];
    for scope in &scopes {
        let scope_ids: Option<Vec<u32>> = scope.as_ref().map(|s| {
            s.iter()
                .filter_map(|c| store.dictionaries().community_id(c))
                .collect()
        });
        for (after, upto, limit) in [
            (0u64, through, 1000usize),
            (0, through, 1),
            (0, through, 3),
            (model.next_seq / 3, through, 2),
            (model.next_seq / 2, through, 5),
            (1, through / 2, 4),
            (through, through, 10),
        ] {
            let got: Vec<(u64, i64)> = store
                .scan_seq_range(after, upto, limit, scope_ids.as_deref())
                .unwrap()
                .iter()
                .map(|(r, _)| (r.seq, r.ts_ms))
                .collect();
            let want: Vec<(u64, i64)> = model
                .events
                .iter()
                .filter(|(s, e)| {
                    *s > after
                        && *s <= upto
                        && scope.as_ref().is_none_or(|c| c.contains(&e.community()))
                })
                .take(limit)
                .map(|(s, e)| (*s, e.ts_ms()))
                .collect();
            prop_assert_eq!(
                got,
                want,
                "after {} through {} limit {} of {:?}",
                after,
                upto,
                limit,
                scope
            );
        }
    }
    let held: std::collections::HashSet<u64> = model.events.iter().map(|(s, _)| *s).collect();
    for seq in (0..=model.next_seq + 1).filter(|s| !held.contains(s)) {
        prop_assert!(
            store.event_by_seq(seq).unwrap().is_none(),
            "id {} is not stored",
            seq
        );
    }
    // A time-range scan and a device window agree with the model too.
    let (from, to) = (DAY0 + DAY, DAY0 + 2 * DAY + 5 * HOUR);
    let mut n = 0;
    store.scan_range(from, to, None, |_| n += 1).unwrap();
    prop_assert_eq!(
        n,
        model
            .events
            .iter()
            .filter(|(_, e)| e.ts_ms() >= from && e.ts_ms() < to)
            .count()
    );
    let ids = {
        let d = store.dictionaries();
        (d.community_id("c1"), d.device_id(&device(2)))
    };
    if let (Some(c), Some(d)) = ids {
        let got: Vec<u64> = store
            .scan_device_window(c, d, from, to)
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect();
        let mut want: Vec<(i64, u64)> = model
            .events
            .iter()
            .filter(|(_, e)| {
                e.community() == "c1"
                    && e.device().as_str() == device(2)
                    && e.ts_ms() >= from
                    && e.ts_ms() < to
            })
            .map(|(s, e)| (e.ts_ms(), *s))
            .collect();
        want.sort();
        prop_assert_eq!(got, want.into_iter().map(|(_, s)| s).collect::<Vec<_>>());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_a_plain_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(DAY0 + 2 * DAY));
        let mut store = Some(open(dir.path(), &clock, config()));
        let mut model = Model::default();
        let mut seen = SeenIds::default();
        let snap = dir.path().join("dict.snap");
        let mut kept: Option<Vec<u8>> = None;
        for op in ops {
            let s = store.as_ref().unwrap();
            match op {
                Op::Append(gens) => {
                    let events: Vec<Event> = gens.iter().map(event_of).collect();
                    let want = model.append(clock.now_ms_for_test(), &events);
                    let got = s.append(&events).unwrap().results;
                    prop_assert_eq!(got.len(), want.len());
                    for (g, w) in got.iter().zip(&want) {
                        prop_assert!(same_outcome(g, w), "store {:?} model {:?}", g, w);
                    }
                }
                Op::Advance { hours } => clock.advance(hours * HOUR),
                Op::SealDue => { s.seal_due().unwrap(); }
                Op::SealOne(i) => {
                    let shards = s.shards();
                    if !shards.is_empty() { s.seal_shard(shards[i % shards.len()].key).unwrap(); }
                }
                Op::CompactOne(i) => {
                    let shards = s.shards();
                    if !shards.is_empty() { s.compact_shard(shards[i % shards.len()].key).unwrap(); }
                }
                Op::Maintain => {
                    s.maintain().unwrap();
                    model.retention(clock.now_ms_for_test());
                }
                Op::Retention => {
                    s.apply_retention().unwrap();
                    model.retention(clock.now_ms_for_test());
                }
                Op::Reopen => {
                    drop(store.take());
                    store = Some(open(dir.path(), &clock, config()));
                    prop_assert_eq!(store.as_ref().unwrap().segments_mapped().0, 0);
                }
                Op::ReopenReadOneShard(i) => {
                    drop(store.take());
                    let s = open(dir.path(), &clock, config());
                    let (mapped, segments) = s.segments_mapped();
                    prop_assert_eq!(mapped, 0, "opening maps no segment");
                    let shards = s.shards();
                    if !shards.is_empty() {
                        let shard = &shards[i % shards.len()];
                        let code = s.dictionaries().community(shard.key.community).unwrap().to_string();
                        let layout = s.layout();
                        let (from, to) = (layout.start_ms(shard.key.span), layout.end_ms(shard.key.span));
                        let got: Vec<(u64, Event)> = s
                            .read_events(from, to, Some(&[shard.key.community]))
                            .unwrap()
                            .into_iter()
                            .map(|e| (e.seq, e.event))
                            .collect();
                        let want: Vec<(u64, Event)> = model
                            .events
                            .iter()
                            .filter(|(_, e)| e.community() == code && e.ts_ms() >= from && e.ts_ms() < to)
                            .cloned()
                            .collect();
                        prop_assert_eq!(got, want);
                        prop_assert_eq!(s.segments_mapped(), (shard.segments, segments));
                    }
                    store = Some(s);
                }
                Op::ReopenWithOrphan(i) => {
                    drop(store.take());
                    let span = 18_870 + (i % 8) as i32;
                    let orphan = dir.path().join(format!("segments/{span}/1-{}.seg", 100_000 + i));
                    std::fs::create_dir_all(orphan.parent().unwrap()).unwrap();
                    std::fs::write(&orphan, b"half made").unwrap();
                    let s = open(dir.path(), &clock, config());
                    prop_assert!(orphan.exists(), "opening looks for no orphan");
                    s.remove_orphans().unwrap();
                    prop_assert!(!orphan.exists());
                    prop_assert!(s.recovery().orphan_files_removed.contains(&orphan));
                    store = Some(s);
                }
                Op::Snapshot => {
                    s.write_dict_snapshot().unwrap();
                    kept = std::fs::read(&snap).ok();
                }
                Op::ReopenWithOldSnapshot | Op::ReopenWithoutSnapshot => {
                    drop(store.take());
                    let _ = std::fs::remove_file(&snap);
                    if let (Op::ReopenWithOldSnapshot, Some(bytes)) = (&op, &kept) {
                        std::fs::write(&snap, bytes).unwrap();
                    }
                    store = Some(open(dir.path(), &clock, config()));
                    let r = store.as_ref().unwrap().recovery();
                    prop_assert!(r.dict_snapshot_ignored.is_none(), "{:?}", r.dict_snapshot_ignored);
                }
            }
            check(store.as_ref().unwrap(), &model)?;
            check_ids(store.as_ref().unwrap(), &mut seen)?;
        }
    }
}

trait NowForTest {
    fn now_ms_for_test(&self) -> i64;
}
impl NowForTest for Arc<ManualClock> {
    fn now_ms_for_test(&self) -> i64 {
        sightline_storage::Clock::now_ms(&**self)
    }
}
