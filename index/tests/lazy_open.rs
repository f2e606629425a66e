//! An index opened over a lazily restored store (a read replica's: segments fetched
//! on first use) from a checkpoint: a segment that cannot be fetched is an error, not
//! a reason to rebuild from every row (which would fetch the whole store).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use sightline_index::{StoreIndex, CHECKPOINT_FILE};
use sightline_storage::{
    Attrs, EventInput, ManualClock, RemoteSegments, Restore, SegmentCache, SegmentSource,
    StorageError, Store, StoreConfig, Validator,
};

const DAY0: i64 = 1_630_425_600_000;
const DAY: i64 = 86_400_000;

/// Files by name; the next `failing` fetches fail (S3 away for a moment).
struct Source {
    files: HashMap<String, Vec<u8>>,
    failing: AtomicU32,
    fetches: AtomicU32,
}

impl SegmentSource for Source {
    fn holds(&self, file: &str) -> bool {
        self.files.contains_key(file)
    }
    fn fetch(&self, file: &str) -> Result<Vec<u8>, String> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let failing = self.failing.load(Ordering::Relaxed);
        if failing > 0 {
            self.failing.store(failing - 1, Ordering::Relaxed);
            return Err("object storage did not answer".into());
        }
        self.files.get(file).cloned().ok_or("no such object".into())
    }
}

fn day(store: &Store, d: i64) {
    let events: Vec<_> = (0..50u32)
        .map(|i| {
            let input = EventInput {
                ts_ms: DAY0 + d * DAY + i64::from(i) * 1_000,
                community: format!("c{}", i % 2),
                device: format!("3205080101121{:07}", i % 3),
                kind: "vehicle".into(),
                subject: format!("苏E{:05}", i % 7),
                direction: "in".into(),
                attrs: Attrs::new(),
            };
            Validator::default().validate(input, i64::MAX / 2).unwrap()
        })
        .collect();
    store.append(&events).unwrap();
    store.seal_all().unwrap();
}

#[test]
fn a_fetch_failing_while_the_index_opens_is_an_error_not_a_rebuild() {
    let origin = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(DAY0 + 10 * DAY));
    let store =
        Store::open_with_clock(origin.path(), StoreConfig::default(), clock.clone()).unwrap();
    day(&store, 0);
    let (index, _) = StoreIndex::open(&store).unwrap();
    assert!(index.checkpoint(&store).unwrap());
    // Sealed after the checkpoint: the open reads it.
    day(&store, 1);
    drop(index);
    let dict = store.dictionary_log_from(0).unwrap();
    let manifest = store.catalog().manifest().unwrap();
    let target = tempfile::tempdir().unwrap();
    let dir = target.path().join("r0");
    let mut restore = Restore::new(&dir, &StoreConfig::default(), &dict).unwrap();
    let mut files = HashMap::new();
    for (key, state) in &manifest.shards {
        for e in &state.segments {
            files.insert(
                e.file.clone(),
                std::fs::read(origin.path().join(&e.file)).unwrap(),
            );
            restore.add_remote_segment(*key, e.clone()).unwrap();
        }
    }
    restore.finish().unwrap();
    let at = dir.join(CHECKPOINT_FILE);
    std::fs::create_dir_all(at.parent().unwrap()).unwrap();
    std::fs::copy(origin.path().join(CHECKPOINT_FILE), &at).unwrap();
    drop(store);
    let source = Arc::new(Source {
        files,
        failing: AtomicU32::new(1),
        fetches: AtomicU32::new(0),
    });
    let config = StoreConfig {
        remote_segments: Some(RemoteSegments {
            source: source.clone(),
            cache: SegmentCache::new(u64::MAX),
        }),
        ..StoreConfig::default()
    };
    let store = Store::open_with_clock(&dir, config, clock).unwrap();
    match StoreIndex::open(&store) {
        Err(e) => assert!(
            matches!(
                &e,
                sightline_index::IndexError::Store(StorageError::Fetch { .. })
            ),
            "{e}"
        ),
        Ok((_, report)) => panic!(
            "opened after {} fetches: {report:?}",
            source.fetches.load(Ordering::Relaxed)
        ),
    }
    // S3 back: the checkpoint is used, only the segments after it fetched.
    let (_, report) = StoreIndex::open(&store).unwrap();
    assert!(report.from_checkpoint, "{report:?}");
    assert!(report.rebuilt_because.is_none(), "{report:?}");
}

/// Retention recomputes the first and last sightings of subjects seen in a dropped
/// shard from the shards left; when those cannot be read (not fetched), the index
/// fails reads from then on and is never written, rather than keeping made-up
/// statistics.
#[test]
fn retention_whose_recomputation_cannot_read_never_writes_made_up_statistics() {
    let origin = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(DAY0 + 10 * DAY));
    let store =
        Store::open_with_clock(origin.path(), StoreConfig::default(), clock.clone()).unwrap();
    for d in 0..3 {
        day(&store, d);
    }
    // The owner's index as a checkpoint: the copy opens it and fetches nothing.
    let (index, _) = StoreIndex::open(&store).unwrap();
    assert!(index.checkpoint(&store).unwrap());
    drop(index);
    let dict = store.dictionary_log_from(0).unwrap();
    let manifest = store.catalog().manifest().unwrap();
    let target = tempfile::tempdir().unwrap();
    let dir = target.path().join("r0");
    let mut restore = Restore::new(&dir, &StoreConfig::default(), &dict).unwrap();
    let mut files = HashMap::new();
    for (key, state) in &manifest.shards {
        for e in &state.segments {
            files.insert(
                e.file.clone(),
                std::fs::read(origin.path().join(&e.file)).unwrap(),
            );
            restore.add_remote_segment(*key, e.clone()).unwrap();
        }
    }
    restore.finish().unwrap();
    let at = dir.join(CHECKPOINT_FILE);
    std::fs::create_dir_all(at.parent().unwrap()).unwrap();
    std::fs::copy(origin.path().join(CHECKPOINT_FILE), &at).unwrap();
    drop(store);
    let source = Arc::new(Source {
        files,
        failing: AtomicU32::new(0),
        fetches: AtomicU32::new(0),
    });
    let config = StoreConfig {
        remote_segments: Some(RemoteSegments {
            source: source.clone(),
            cache: SegmentCache::new(u64::MAX),
        }),
        ..StoreConfig::default()
    };
    let store = Store::open_with_clock(&dir, config, clock).unwrap();
    let (index, report) = StoreIndex::open(&store).unwrap();
    assert!(
        report.from_checkpoint && report.rows_read == 0,
        "{report:?}"
    );
    let subject = store
        .dictionaries()
        .subject_id(sightline_storage::Kind::Vehicle, "苏E00000")
        .unwrap();
    let before = index.view().subject_stats(subject).unwrap().unwrap();
    assert_eq!(before.first_ms, DAY0);
    store.read_events(DAY0, DAY0 + DAY, None).unwrap();
    // Day 0 fetched (retention reads what it drops), then every fetch fails: days 1
    // and 2 cannot be read to find the new first seen.
    source.failing.store(u32::MAX, Ordering::Relaxed);
    store.set_retention_days(Some(9)).unwrap();
    assert!(!store.apply_retention().unwrap().is_empty());
    assert!(index.is_broken());
    let stats = index.view().subject_stats(subject);
    assert!(stats.is_err(), "{stats:?}");
    assert!(index.checkpoint_bytes().is_err());
}
