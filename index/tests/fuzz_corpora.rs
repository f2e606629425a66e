//! Replays every fuzz corpus file and every minimised crash of the `pattern` target
//! (`fuzz/corpus/pattern/`, `fuzz/regressions/pattern/`) through its entry point, so
//! CI checks them without a fuzzer. `SIGHTLINE_WRITE_FUZZ_SEEDS=1 cargo test -p
//! sightline-index --test fuzz_corpora` (re)writes its seed inputs.

use sightline_index::fuzzing;
use sightline_storage::fuzzing::corpus::{replay_corpora, Seed, Target};

const TARGETS: [Target; 1] = [("pattern", fuzzing::pattern)];

fn seeds() -> Vec<Seed> {
    vec![
        ("pattern", "wildcard", "苏E1?3*".as_bytes().to_vec()),
        ("pattern", "plate", "苏ED12345".as_bytes().to_vec()),
    ]
}

#[test]
fn every_corpus_file_and_regression_replays_without_a_panic() {
    replay_corpora(&TARGETS, seeds);
}
