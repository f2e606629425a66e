//! The index kept on disk: a reopened store reads the checkpoint and only the rows
//! after it; a damaged, stale or foreign checkpoint is detected and the index rebuilt;
//! retention subtracts what it drops; disk faults while writing a checkpoint leave the
//! old one. Every case compares the index with a plain model of the events the store
//! holds (counts, first and last seen, shards), as does the model-based proptest.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use sightline_index::{OpenReport, StoreIndex, Vocabulary, CHECKPOINT_FILE};
use sightline_storage::io::{Fault, FaultKind, FaultyIo, Op, EIO};
use sightline_storage::{
    Appended, EventInput, Kind, ManualClock, ShardKey, Store, StoreConfig, Validator,
};

/// 2021-09-01T00:00:00+08:00.
const DAY0: i64 = 1_630_425_600_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
/// The clock: day 10, so days 0..8 are in the past.
const NOW: i64 = DAY0 + 10 * DAY;

/// One event as the model keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Ev {
    community: u8,
    subject: String,
    ts_ms: i64,
}

/// The events the store should hold.
#[derive(Default, Debug)]
struct Model {
    events: Vec<Ev>,
}

fn community(c: u8) -> String {
    format!("32050800{c:02}")
}

fn input(e: &Ev) -> EventInput {
    EventInput {
        ts_ms: e.ts_ms,
        community: community(e.community),
        device: format!("3205080101121{:07}", e.community),
        kind: "face".into(),
        subject: e.subject.clone(),
        direction: "in".into(),
        ..Default::default()
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    io: Arc<FaultyIo>,
    store: Option<Store>,
    index: Option<Arc<StoreIndex>>,
    model: Model,
}

impl Fixture {
    fn new() -> Fixture {
        let mut f = Fixture {
            dir: tempfile::tempdir().unwrap(),
            clock: Arc::new(ManualClock::new(NOW)),
            io: FaultyIo::new(),
            store: None,
            index: None,
            model: Model::default(),
        };
        f.reopen();
        f
    }

    fn config(&self) -> StoreConfig {
        StoreConfig {
            io: self.io.clone(),
            ..StoreConfig::default()
        }
    }

    fn store(&self) -> &Store {
        self.store.as_ref().unwrap()
    }
    fn index(&self) -> &Arc<StoreIndex> {
        self.index.as_ref().unwrap()
    }

    /// Closes without a checkpoint (what a SIGKILL leaves of the index) and opens again.
    fn reopen(&mut self) -> OpenReport {
        self.index = None;
        self.store = None;
        let store = Store::open_with_clock(self.dir.path(), self.config(), self.clock.clone())
            .expect("store opens");
        let (index, report) = StoreIndex::open(&store).unwrap();
        self.store = Some(store);
        self.index = Some(index);
        report
    }

    fn append(&mut self, evs: &[Ev]) {
        let valid: Vec<_> = evs
            .iter()
            .map(|e| Validator::default().validate(input(e), NOW).unwrap())
            .collect();
        let out = self.store().append(&valid).unwrap();
        for (e, r) in evs.iter().zip(out.results.iter()) {
            if matches!(r, Appended::Stored { .. }) {
                self.model.events.push(e.clone());
            }
        }
    }

    fn seal_all(&self) {
        for s in self.store().shards() {
            self.store().seal_shard(s.key).unwrap();
        }
    }

    fn compact_all(&self) {
        for s in self.store().shards() {
            self.store().compact_shard(s.key).unwrap();
        }
    }

    /// Retention of `days`; the model drops what the store should.
    fn retain(&mut self, days: u32) -> usize {
        let store = self.store.as_ref().unwrap();
        store.set_retention_days(Some(days)).unwrap();
        let dropped = store.apply_retention().unwrap();
        let horizon = NOW - days as i64 * DAY;
        let layout = store.layout();
        self.model
            .events
            .retain(|e| layout.end_ms(layout.span_of(e.ts_ms)) > horizon);
        dropped.len()
    }

    fn checkpoint_path(&self) -> std::path::PathBuf {
        self.dir.path().join(CHECKPOINT_FILE)
    }

    /// The index agrees with the model for every subject of the dictionary.
    fn assert_matches_model(&self, when: &str) {
        let store = self.store();
        let layout = store.layout();
        let mut want: BTreeMap<u32, (u64, i64, i64, BTreeSet<ShardKey>)> = BTreeMap::new();
        let d = store.dictionaries();
        for e in &self.model.events {
            let s = d
                .subject_id(Kind::Face, &e.subject)
                .expect("a stored subject");
            let c = d.community_id(&community(e.community)).unwrap();
            let w = want
                .entry(s)
                .or_insert((0, i64::MAX, i64::MIN, BTreeSet::new()));
            w.0 += 1;
            w.1 = w.1.min(e.ts_ms);
            w.2 = w.2.max(e.ts_ms);
            w.3.insert(ShardKey {
                community: c,
                span: layout.span_of(e.ts_ms),
            });
        }
        let n = d.len_subjects() as u32;
        drop(d);
        let view = self.index().view();
        for s in 0..n {
            let got = view.subject_stats(s).unwrap().map(|st| {
                let shards: BTreeSet<ShardKey> = view
                    .subject_shards(s, i64::MIN, i64::MAX, None)
                    .unwrap()
                    .into_iter()
                    .collect();
                (st.count, st.first_ms, st.last_ms, shards)
            });
            assert_eq!(got, want.get(&s).cloned(), "{when}: subject {s}");
            // Filtered by community and day: each community alone and every one but
            // it, each day alone and all of them (the index answers a few (community,
            // day) pairs by lookup and many by filtering the subject's whole list).
            let shards = want.get(&s).map(|w| w.3.clone()).unwrap_or_default();
            let communities: BTreeSet<u32> = shards.iter().map(|k| k.community).collect();
            let spans: BTreeSet<i32> = shards.iter().map(|k| k.span).collect();
            let mut filters: Vec<Vec<u32>> = Vec::new();
            for &c in &communities {
                filters.push(vec![c]);
                filters.push(communities.iter().copied().filter(|&o| o != c).collect());
            }
            let mut windows: Vec<(i32, i32)> = spans.iter().map(|&sp| (sp, sp)).collect();
            if let (Some(&a), Some(&b)) = (spans.first(), spans.last()) {
                windows.push((a, b));
            }
            for cs in &filters {
                for &(a, b) in &windows {
                    let (from, to) = (layout.start_ms(a), layout.end_ms(b));
                    let got: Vec<ShardKey> = view.subject_shards(s, from, to, Some(cs)).unwrap();
                    let expect: Vec<ShardKey> = shards
                        .iter()
                        .filter(|k| cs.contains(&k.community) && k.span >= a && k.span <= b)
                        .copied()
                        .collect();
                    assert_eq!(
                        got, expect,
                        "{when}: subject {s} in {cs:?}, spans {a}..={b}"
                    );
                }
            }
            if got.is_none() {
                assert!(
                    view.subject_shards(s, i64::MIN, i64::MAX, None)
                        .unwrap()
                        .is_empty(),
                    "{when}: subject {s} has no events but shards"
                );
            }
        }
    }
}

fn ev(community: u8, subject: &str, day: i64, hour: i64) -> Ev {
    Ev {
        community,
        subject: subject.to_string(),
        ts_ms: DAY0 + day * DAY + hour * HOUR,
    }
}

/// Three days of two communities: every subject on several shards.
fn week() -> Vec<Ev> {
    let mut v = Vec::new();
    for day in 0..3 {
        for c in 0..2 {
            for s in 0..5 {
                v.push(ev(c, &format!("F{s}"), day, 1 + s as i64));
                v.push(ev(c, &format!("F{s}"), day, 12));
            }
            v.push(ev(c, &format!("D{day}C{c}"), day, 20));
        }
    }
    v
}

#[test]
fn reopen_after_a_clean_stop_reads_the_checkpoint_and_no_row() {
    let mut f = Fixture::new();
    f.append(&week());
    f.seal_all();
    f.append(&[ev(0, "F1", 4, 3)]); // unsealed: in the WAL and in the checkpoint
    assert!(f.index().checkpoint(f.store()).unwrap());
    assert!(
        !f.index().checkpoint(f.store()).unwrap(),
        "unchanged: not rewritten"
    );
    let r = f.reopen();
    assert!(r.from_checkpoint, "{r:?}");
    assert_eq!(r.rebuilt_because, None);
    assert_eq!(r.rows_read, 0, "a clean stop leaves nothing to read");
    f.assert_matches_model("reopened");
    // And it stays current.
    f.append(&[ev(1, "F1", 5, 3), ev(1, "NEW", 5, 4)]);
    f.assert_matches_model("after more appends");
}

/// An index kept in memory only (a cluster indexer's) hands out its checkpoint's
/// bytes; written where a copy of the store keeps its checkpoint (a read replica's
/// restore), they open reading no row, with the same answers.
#[test]
fn an_in_memory_index_hands_out_a_checkpoint_a_copy_opens_without_reading_rows() {
    let mut f = Fixture::new();
    f.append(&week());
    f.seal_all();
    let memory = StoreIndex::attach(f.store()).unwrap();
    assert_eq!(memory.checkpoint_path(), None);
    let (through, bytes) = memory.checkpoint_bytes().unwrap();
    assert_eq!(through, f.store().next_seq() - 1);
    drop(memory);
    let path = f.store().dir().join(CHECKPOINT_FILE);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    let r = f.reopen();
    assert!(r.from_checkpoint, "{r:?}");
    assert_eq!(r.rows_read, 0, "{r:?}");
    f.assert_matches_model("opened from an in-memory index's bytes");
}

/// Flips a byte in the middle of the block data (section 1) of every segment.
fn damage_block_data(dir: &Path) {
    let mut segs = Vec::new();
    let mut stack = vec![dir.join("segments")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "seg") {
                segs.push(p);
            }
        }
    }
    assert!(!segs.is_empty());
    for p in segs {
        let mut b = std::fs::read(&p).unwrap();
        let word = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap()) as usize;
        let (off, len) = (word(80 + 24), word(80 + 32));
        b[off + len / 2] ^= 0x04;
        std::fs::write(&p, &b).unwrap();
    }
}

#[test]
fn a_damaged_segment_the_index_must_read_fails_its_open_naming_the_file() {
    let mut f = Fixture::new();
    f.append(&week());
    f.seal_all();
    f.index = None;
    f.store = None;
    damage_block_data(f.dir.path());
    // The store opens (segments are verified on first read); the index, with no
    // checkpoint, reads every row and meets the damage: an error naming the file.
    let store = Store::open_with_clock(f.dir.path(), f.config(), f.clock.clone())
        .expect("a damaged block does not stop the store opening");
    let err = StoreIndex::open(&store)
        .err()
        .expect("the index cannot be built from damaged rows");
    let msg = err.to_string();
    assert!(msg.contains(".seg") && msg.contains("checksum"), "{msg}");
    assert!(StoreIndex::attach(&store).is_err());
}

#[test]
fn a_checkpoint_over_a_damaged_segment_opens_and_reading_it_fails() {
    let mut f = Fixture::new();
    f.append(&week());
    f.seal_all();
    assert!(f.index().checkpoint(f.store()).unwrap());
    f.index = None;
    f.store = None;
    damage_block_data(f.dir.path());
    // The checkpoint covers the segments: opening reads no row of them...
    let r = f.reopen();
    assert!(r.from_checkpoint && r.rows_read == 0, "{r:?}");
    // ... and the first read of one is the error, naming it.
    let key = f.store().shards()[0].key;
    let subject = f.store().dictionaries().subject_id(Kind::Face, "F1");
    let err = f
        .store()
        .subject_runs([key], subject.unwrap(), 0, i64::MAX)
        .err()
        .expect("damaged rows are not read");
    assert!(err.to_string().contains(".seg"), "{err}");
}

#[test]
fn after_a_crash_only_rows_after_the_checkpoint_are_read() {
    let mut f = Fixture::new();
    f.append(&week());
    f.seal_all();
    f.index().checkpoint(f.store()).unwrap();
    // After the checkpoint: a new day sealed, a late event sealed as a delta and
    // compacted into an old shard, and unsealed events; then a "crash" (no checkpoint).
    let later = vec![ev(0, "F2", 5, 1), ev(1, "F9", 5, 2), ev(0, "F0", 0, 23)];
    f.append(&later);
    f.seal_all();
    f.compact_all();
    f.append(&[ev(1, "F3", 6, 1)]);
    let r = f.reopen();
    assert!(r.from_checkpoint, "{r:?}");
    // The compacted shard is read whole (its older rows are only counted), the rest
    // is what came after the checkpoint.
    assert_eq!(r.rows_read, 4, "{r:?}");
    f.assert_matches_model("after the crash");
}

#[test]
fn a_damaged_checkpoint_is_detected_and_the_index_rebuilt() {
    for damage in ["flip", "truncate", "garbage"] {
        let mut f = Fixture::new();
        f.append(&week());
        f.seal_all();
        f.index().checkpoint(f.store()).unwrap();
        f.store = None;
        f.index = None;
        let path = f.checkpoint_path();
        let mut bytes = std::fs::read(&path).unwrap();
        match damage {
            "flip" => {
                let at = bytes.len() - 5;
                bytes[at] ^= 0x10;
            }
            "truncate" => bytes.truncate(bytes.len() / 2),
            _ => bytes = b"not a checkpoint at all, but long enough to have a header".repeat(8),
        }
        std::fs::write(&path, &bytes).unwrap();
        let r = f.reopen();
        assert!(!r.from_checkpoint, "{damage}: {r:?}");
        let why = r.rebuilt_because.clone().unwrap();
        assert!(
            why.contains("subjects.idx"),
            "{damage}: names the file: {why}"
        );
        f.assert_matches_model(damage);
        // The next checkpoint replaces the damaged one.
        assert!(f.index().checkpoint(f.store()).unwrap());
        assert!(f.reopen().from_checkpoint);
        f.assert_matches_model("after the new checkpoint");
    }
}

/// A checkpoint larger than a chunk is checked a chunk at a time as it is read: damage
/// in a part opening does not read lets it open, is the error of the first read that
/// meets it (naming the file), and of every read after; the file is moved aside, so
/// the next open rebuilds the index from the rows.
#[test]
fn damage_in_a_large_checkpoint_is_found_when_read_and_rebuilt_at_the_next_open() {
    let mut f = Fixture::new();
    // Each subject seen once, a second apart: version 3 packs a subject's statistics
    // in 28 bits (count 1, first 26 from the base, last 1), so 45,000 of them are
    // three chunks.
    let evs: Vec<Ev> = (0..45_000)
        .map(|i| Ev {
            community: (i % 3) as u8,
            subject: format!("S{i:05}"),
            ts_ms: DAY0 + DAY + 3 * HOUR + i as i64 * 1_000,
        })
        .collect();
    f.append(&evs);
    f.seal_all();
    f.index().checkpoint(f.store()).unwrap();
    f.store = None;
    f.index = None;
    let path = f.checkpoint_path();
    let mut bytes = std::fs::read(&path).unwrap();
    // Section 1 (statistics, packed at the widths in header bytes 64..67): its offset
    // is in the section table (at 96 + 24); damage subject 30,000's record: in the
    // second 64 KiB chunk, which holds only statistics (157 KB of them; the offsets
    // opening checks come after).
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 3);
    let record = (bytes[64] + bytes[65] + bytes[66]) as usize;
    assert_eq!(record, 28, "widths {:?}", &bytes[64..67]);
    let stats_at = u64::from_le_bytes(bytes[120..128].try_into().unwrap()) as usize;
    let stats_len = u64::from_le_bytes(bytes[128..136].try_into().unwrap()) as usize;
    assert!(
        stats_len > 2 * (64 << 10),
        "{stats_len} bytes of statistics"
    );
    let at = stats_at + 30_000 * record / 8 + 1;
    assert!(at > stats_at + (64 << 10), "past the first chunk: {at}");
    bytes[at] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let r = f.reopen();
    assert!(
        r.from_checkpoint,
        "opening does not read the damaged chunk: {r:?}"
    );
    let (first, last) = {
        let d = f.store().dictionaries();
        (
            d.subject_id(Kind::Face, "S00000").unwrap(),
            d.subject_id(Kind::Face, "S30000").unwrap(),
        )
    };
    assert_eq!(
        f.index()
            .view()
            .subject_stats(first)
            .unwrap()
            .unwrap()
            .count,
        1
    );
    let e = f
        .index()
        .view()
        .subject_stats(last)
        .unwrap_err()
        .to_string();
    assert!(e.contains("subjects.idx") && e.contains("checksum"), "{e}");
    // Every read after fails the same way, not with a wrong answer.
    let again = f
        .index()
        .view()
        .subject_shards(first, i64::MIN, i64::MAX, None)
        .unwrap_err()
        .to_string();
    assert_eq!(again, e);
    assert!(!path.exists(), "moved aside");
    assert!(path.with_extension("idx.damaged").exists());
    // The next open has no checkpoint: the index is rebuilt from the rows, exact.
    let r = f.reopen();
    assert!(!r.from_checkpoint, "{r:?}");
    f.assert_matches_model("rebuilt");
}

#[test]
fn retention_after_the_checkpoint_is_detected_and_rebuilt() {
    let mut f = Fixture::new();
    f.append(&week());
    f.seal_all();
    f.index().checkpoint(f.store()).unwrap();
    // Days 0 and 1 go; the process dies before the next checkpoint.
    assert!(f.retain(9) > 0);
    f.assert_matches_model("after retention, before the crash");
    let r = f.reopen();
    assert!(!r.from_checkpoint);
    assert!(
        r.rebuilt_because.as_deref().unwrap().contains("shard"),
        "{r:?}"
    );
    f.assert_matches_model("rebuilt");
}

#[test]
fn retention_subtracts_dropped_events_from_counts_first_and_last_seen() {
    let mut f = Fixture::new();
    f.append(&week());
    f.seal_all();
    f.append(&[ev(0, "F4", 2, 22)]); // an unsealed event of a shard that stays
    f.index().checkpoint(f.store()).unwrap();
    let f0 = f
        .store()
        .dictionaries()
        .subject_id(Kind::Face, "F0")
        .unwrap();
    let before = f.index().view().subject_stats(f0).unwrap().unwrap();
    assert_eq!(before.count, 12);
    assert_eq!(before.first_ms, DAY0 + HOUR);
    // Keep 8 days back from day 10: days 0 and 1 end at or before the horizon.
    assert_eq!(f.retain(8), 4);
    let after = f.index().view().subject_stats(f0).unwrap().unwrap();
    assert_eq!(after.count, 4, "only day 2's events count");
    assert_eq!(
        after.first_ms,
        DAY0 + 2 * DAY + HOUR,
        "first seen moves to day 2"
    );
    assert_eq!(after.last_ms, before.last_ms);
    let only_day0 = f
        .store()
        .dictionaries()
        .subject_id(Kind::Face, "D0C0")
        .unwrap();
    assert_eq!(f.index().view().subject_stats(only_day0).unwrap(), None);
    assert!(f
        .index()
        .view()
        .subject_shards(only_day0, i64::MIN, i64::MAX, None)
        .unwrap()
        .is_empty());
    f.assert_matches_model("after retention");
    assert!(f.index().checkpoint(f.store()).unwrap());
    let r = f.reopen();
    assert!(r.from_checkpoint && r.rows_read == 0, "{r:?}");
    f.assert_matches_model("reopened after retention");
}

#[test]
fn a_failed_checkpoint_write_keeps_the_previous_one() {
    for (op, file, what) in [
        (Op::Sync, "subjects.", "fsync"),
        (Op::Rename, "subjects.", "rename"),
        (Op::Write, "subjects.", "write"),
        (Op::Open, "subjects.", "open"),
        (Op::SyncDir, "index", "directory fsync"),
    ] {
        let mut f = Fixture::new();
        f.append(&week());
        f.seal_all();
        f.index().checkpoint(f.store()).unwrap();
        f.append(&[ev(1, "F1", 6, 1)]);
        f.seal_all();
        f.io.inject(Fault::new(op, file, FaultKind::Errno(EIO)).once());
        let e = f.index().checkpoint(f.store()).unwrap_err();
        assert!(e.to_string().contains(file), "{what}: {e}");
        // A directory fsync failing after the rename leaves the new file: either
        // checkpoint is whole, and the reopened index is exact.
        let r = f.reopen();
        assert!(r.from_checkpoint, "{what}: {r:?}");
        f.assert_matches_model(what);
    }
}

#[test]
fn a_checkpoint_of_another_store_is_refused() {
    let mut a = Fixture::new();
    a.append(&week());
    a.seal_all();
    a.index().checkpoint(a.store()).unwrap();
    let mut b = Fixture::new();
    b.append(&week()[..7]);
    b.seal_all();
    b.store = None;
    b.index = None;
    std::fs::create_dir_all(b.checkpoint_path().parent().unwrap()).unwrap();
    std::fs::copy(a.checkpoint_path(), b.checkpoint_path()).unwrap();
    let r = b.reopen();
    assert!(!r.from_checkpoint, "{r:?}");
    b.assert_matches_model("rebuilt instead of the foreign checkpoint");
}

#[test]
fn the_vocabulary_on_disk_is_reused_and_rebuilt_when_not_this_stores() {
    let f = Fixture::new();
    let dir = f.dir.path().join("index/vocabulary");
    let mut f = f;
    f.append(&week());
    {
        let (v, why) = Vocabulary::open_checked(&dir, f.store()).unwrap();
        assert_eq!(why, None);
        assert_eq!(v.catch_up(f.store()).unwrap(), 11);
    }
    let (v, why) = Vocabulary::open_checked(&dir, f.store()).unwrap();
    assert_eq!(why, None);
    assert_eq!(v.indexed(), 11, "kept on disk");
    assert_eq!(v.catch_up(f.store()).unwrap(), 0);
    drop(v);
    // Another store's vocabulary (more subjects than this store has) is rebuilt.
    let mut other = Fixture::new();
    other.append(&week()[..5]); // F0, F1, F2
    let (v, why) = Vocabulary::open_checked(&dir, other.store()).unwrap();
    assert!(why.unwrap().contains("durable"), "rebuilt");
    assert_eq!(v.indexed(), 0);
    assert_eq!(v.catch_up(other.store()).unwrap(), 3);
    other.reopen();
}

/// One step of the model-based test.
#[derive(Clone, Debug)]
enum Step {
    Append(Vec<(u8, u8, i64, i64)>),
    Seal,
    Compact,
    Retain(u32),
    Checkpoint,
    /// Checkpoint, then close and reopen (a clean stop).
    Stop,
    /// Close and reopen without a checkpoint (SIGKILL).
    Kill,
    /// Flip a byte of the checkpoint file, reopen, write a new checkpoint.
    Damage(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => prop::collection::vec((0u8..3, 0u8..8, 0i64..9, 0i64..24), 1..12).prop_map(Step::Append),
        2 => Just(Step::Seal),
        1 => Just(Step::Compact),
        1 => (1u32..11).prop_map(Step::Retain),
        2 => Just(Step::Checkpoint),
        2 => Just(Step::Stop),
        2 => Just(Step::Kill),
        1 => any::<usize>().prop_map(Step::Damage),
    ]
}

fn damage(path: &Path, at: usize) -> bool {
    let Ok(mut bytes) = std::fs::read(path) else {
        return false;
    };
    let i = at % bytes.len();
    bytes[i] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
    true
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn persisted_index_matches_the_model(steps in prop::collection::vec(step(), 1..24)) {
        let mut f = Fixture::new();
        // Whether the checkpoint on disk still describes the store's shards.
        let mut checkpoint_current = false;
        for (i, s) in steps.iter().enumerate() {
            match s {
                Step::Append(raws) => {
                    let evs: Vec<Ev> = raws
                        .iter()
                        .map(|&(c, s, d, h)| ev(c, &format!("S{s}"), d, h))
                        .collect();
                    f.append(&evs);
                }
                Step::Seal => f.seal_all(),
                Step::Compact => f.compact_all(),
                Step::Retain(days) => {
                    if f.retain(*days) > 0 {
                        checkpoint_current = false;
                    }
                }
                Step::Checkpoint => {
                    f.index().checkpoint(f.store()).unwrap();
                    checkpoint_current = f.checkpoint_path().exists();
                }
                Step::Stop => {
                    f.index().checkpoint(f.store()).unwrap();
                    let r = f.reopen();
                    prop_assert!(r.from_checkpoint && r.rows_read == 0, "step {i}: {r:?}");
                    checkpoint_current = true;
                }
                Step::Kill => {
                    let r = f.reopen();
                    if checkpoint_current {
                        prop_assert!(r.from_checkpoint, "step {i}: {r:?}");
                    }
                }
                Step::Damage(at) => {
                    f.store = None;
                    f.index = None;
                    let damaged = damage(&f.checkpoint_path(), *at);
                    let r = f.reopen();
                    if damaged {
                        prop_assert!(!r.from_checkpoint, "step {i}: {r:?}");
                        prop_assert!(r.rebuilt_because.is_some());
                    }
                    // As the server does after a rebuild: a fresh checkpoint replaces
                    // the damaged one.
                    f.index().checkpoint(f.store()).unwrap();
                    checkpoint_current = true;
                }
            }
            f.assert_matches_model(&format!("step {i} {s:?}"));
        }
    }
}
