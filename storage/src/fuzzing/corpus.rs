//! Replaying the fuzz corpora in `cargo test`: every corpus file and every minimised
//! crash (`fuzz/corpus/<target>/`, `fuzz/regressions/<target>/`) through its target's
//! entry point, so CI checks them without a fuzzer. Each crate's
//! `tests/fuzz_corpora.rs` replays its own targets; `SIGHTLINE_WRITE_FUZZ_SEEDS=1` with
//! that test (re)writes their seed inputs.

use std::path::{Path, PathBuf};

use crate::{AttrValue, EventInput};

/// A fuzz target: its name (its directory under `fuzz/corpus/`) and entry point.
pub type Target = (&'static str, fn(&[u8]));

/// A seed input: target, name (the file is `seed-<name>`), bytes.
pub type Seed = (&'static str, &'static str, Vec<u8>);

/// The workspace's `fuzz/` directory.
pub fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// 2021-09-01T00:00:00+08:00, the day the seed events happen on.
pub const SEED_DAY_MS: i64 = 1_630_425_600_000;

/// Seed event `i`: a vehicle `subject` at one of three gates of one community, a
/// minute after event `i - 1`, with a plate colour.
pub fn seed_event(i: i64, subject: &str) -> EventInput {
    EventInput {
        ts_ms: SEED_DAY_MS + i * 60_000,
        community: "3205080001".into(),
        device: format!("3205080101121000000{}", i % 3),
        kind: "vehicle".into(),
        subject: subject.into(),
        direction: "in".into(),
        attrs: [("plate_color".to_string(), AttrValue::Str("blue".into()))]
            .into_iter()
            .collect(),
    }
}

/// Replays every file of `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/`
/// through each target, and truncations and a flipped byte of every seed; panics if a
/// target has no seed. With `SIGHTLINE_WRITE_FUZZ_SEEDS` set, (re)writes the `seeds`
/// first.
pub fn replay_corpora(targets: &[Target], seeds: impl FnOnce() -> Vec<Seed>) {
    if std::env::var_os("SIGHTLINE_WRITE_FUZZ_SEEDS").is_some() {
        for (target, name, bytes) in seeds() {
            let d = fuzz_dir().join("corpus").join(target);
            std::fs::create_dir_all(&d).expect("corpus directory");
            std::fs::write(d.join(format!("seed-{name}")), bytes).expect("seed written");
        }
    }
    for &(target, run) in targets {
        let mut files = Vec::new();
        for kind in ["corpus", "regressions"] {
            let d = fuzz_dir().join(kind).join(target);
            if let Ok(entries) = std::fs::read_dir(&d) {
                files.extend(entries.map(|e| e.expect("corpus entry").path()));
            }
        }
        assert!(
            files.iter().any(|f| f.to_string_lossy().contains("seed-")),
            "{target}: no seed corpus in fuzz/corpus/{target}"
        );
        for f in files {
            let bytes = std::fs::read(&f).expect("corpus file");
            run(&bytes);
            // Truncations and a flipped byte of every seed, too.
            if f.to_string_lossy().contains("seed-") {
                for cut in [
                    0,
                    1,
                    bytes.len() / 3,
                    bytes.len() / 2,
                    bytes.len().saturating_sub(1),
                ] {
                    run(&bytes[..cut.min(bytes.len())]);
                }
                for at in (0..bytes.len()).step_by((bytes.len() / 16).max(1)) {
                    let mut b = bytes.clone();
                    b[at] ^= 0x5a;
                    run(&b);
                }
            }
        }
    }
}
