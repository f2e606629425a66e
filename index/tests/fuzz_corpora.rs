//! Replays every fuzz corpus file and every minimised crash of the `pattern` and
//! `checkpoint` targets (`fuzz/corpus/<target>/`, `fuzz/regressions/<target>/`) through
//! their entry points, so CI checks them without a fuzzer.
//! `SIGHTLINE_WRITE_FUZZ_SEEDS=1 cargo test -p sightline-index --test fuzz_corpora`
//! (re)writes their seed inputs.

use sightline_index::{fuzzing, StoreIndex};
use sightline_storage::fuzzing::corpus::{replay_corpora, seed_event, Seed, Target};
use sightline_storage::{Store, StoreConfig};

const TARGETS: [Target; 2] = [
    ("pattern", fuzzing::pattern),
    ("checkpoint", fuzzing::checkpoint),
];

fn seeds() -> Vec<Seed> {
    let golden = |v: u32| {
        let path = format!("{}/tests/data/golden-v{v}.idx", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(path).unwrap()
    };
    vec![
        ("pattern", "wildcard", "苏E1?3*".as_bytes().to_vec()),
        ("pattern", "plate", "苏ED12345".as_bytes().to_vec()),
        ("checkpoint", "v1", golden(1)),
        ("checkpoint", "v2", golden(2)),
        ("checkpoint", "v3", golden(3)),
        ("checkpoint", "two-communities", fresh_checkpoint()),
    ]
}

/// A checkpoint as this build writes it: 60 events of 9 subjects, 3 devices, two
/// communities over three days.
fn fresh_checkpoint() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    let events: Vec<_> = (0..60)
        .map(|i| {
            let mut e = seed_event(i * 50, &format!("苏E{:05}", i % 9));
            if i % 2 == 1 {
                e.community = "3205080002".into();
            }
            store.validate(e).unwrap()
        })
        .collect();
    store.append(&events).unwrap();
    let index = StoreIndex::attach(&store).unwrap();
    index.checkpoint_bytes().unwrap().1
}

#[test]
fn every_corpus_file_and_regression_replays_without_a_panic() {
    replay_corpora(&TARGETS, seeds);
}
