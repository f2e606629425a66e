//! Replays every fuzz corpus file and every minimised crash of the store's targets
//! (`fuzz/corpus/<target>/`, `fuzz/regressions/<target>/`: segment, WAL and dictionary
//! log) through their entry points, so CI checks them without a fuzzer.
//! `SIGHTLINE_WRITE_FUZZ_SEEDS=1 cargo test -p sightline-storage --test fuzz_corpora`
//! (re)writes their seed inputs: valid files of every kind.

use sightline_storage::fuzzing::corpus::{fuzz_dir, replay_corpora, seed_event, Seed, Target};
use sightline_storage::fuzzing::{self, replay_logs};
use sightline_storage::{ManualClock, Store, StoreConfig};

const TARGETS: [Target; 6] = [
    ("segment", fuzzing::segment),
    ("wal", fuzzing::wal),
    ("wal_records", fuzzing::wal_records),
    ("dict_log", fuzzing::dict_log),
    ("dict_records", fuzzing::dict_records),
    ("dict_snapshot", fuzzing::dict_snapshot),
];

/// Valid files of every kind, from a real store.
fn seeds() -> Vec<Seed> {
    let day0 = sightline_storage::fuzzing::corpus::SEED_DAY_MS;
    let dir = tempfile::tempdir().unwrap();
    let clock = std::sync::Arc::new(ManualClock::new(day0 + 3 * 86_400_000));
    let store = Store::open_with_clock(dir.path(), StoreConfig::default(), clock).unwrap();
    // Every other event with a GA/T 1400 id: the segment seed has a source-id index.
    let events: Vec<_> = (0..40)
        .map(|i| {
            let mut e = seed_event(i, &format!("苏E{:05}", i % 7));
            if i % 2 == 0 {
                e.attrs.insert(
                    "source_id".into(),
                    sightline_storage::AttrValue::Str(format!(
                        "3205080101121000000{}0220210901{:06}0000102{:05}",
                        i % 3,
                        i * 100,
                        i
                    )),
                );
            }
            store.validate(e).unwrap()
        })
        .collect();
    store.append(&events).unwrap();
    for s in store.shards() {
        store.seal_shard(s.key).unwrap();
    }
    let later: Vec<_> = (40..50)
        .map(|i| store.validate(seed_event(i, "苏E99999")).unwrap())
        .collect();
    store.append(&later).unwrap();
    let seg = std::fs::read_dir(dir.path().join("segments"))
        .unwrap()
        .flat_map(|span| std::fs::read_dir(span.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    let wal = std::fs::read_dir(dir.path().join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::metadata(p).unwrap().len() > 0)
        .unwrap();
    vec![
        ("segment", "sealed-day", std::fs::read(seg).unwrap()),
        ("wal", "two-batches", std::fs::read(&wal).unwrap()),
        ("wal_records", "two-batches", std::fs::read(&wal).unwrap()),
        (
            "dict_log",
            "dictionary",
            std::fs::read(dir.path().join("dict.log")).unwrap(),
        ),
        (
            "dict_records",
            "dictionary",
            std::fs::read(dir.path().join("dict.log")).unwrap(),
        ),
        ("dict_snapshot", "dictionary", snapshot_of_a_store()),
        (
            "dict_snapshot",
            "golden-v2",
            std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/data/golden-v2.dsnap"
            ))
            .unwrap(),
        ),
    ]
}

/// The dictionary snapshot a store writes when it closes: 40 events of 7 subjects, 3
/// devices.
fn snapshot_of_a_store() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    let events: Vec<_> = (0..40)
        .map(|i| {
            store
                .validate(seed_event(i, &format!("苏E{:05}", i % 7)))
                .unwrap()
        })
        .collect();
    store.append(&events).unwrap();
    drop(store);
    std::fs::read(dir.path().join("dict.snap")).unwrap()
}

#[test]
fn every_corpus_file_and_regression_replays_without_a_panic() {
    replay_corpora(&TARGETS, seeds);
}

/// The `wal` target's seed gets past the dictionary check into replay (it runs beside
/// the dictionary seed), so the fuzzer explores replay itself, not just its refusals.
#[test]
fn the_wal_seed_replays_events_beside_the_dictionary_seed() {
    let corpus = fuzz_dir().join("corpus");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("wal")).unwrap();
    std::fs::copy(
        corpus.join("dict_log/seed-dictionary"),
        dir.path().join("dict.log"),
    )
    .unwrap();
    std::fs::copy(
        corpus.join("wal/seed-two-batches"),
        dir.path().join("wal").join(format!("{:020}.wal", 1)),
    )
    .unwrap();
    let n = replay_logs(dir.path()).unwrap();
    assert!(n > 0, "the WAL seed replays no events");
}
