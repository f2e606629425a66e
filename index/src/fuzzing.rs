//! The fuzz entry point for search patterns (`fuzz/fuzz_targets/pattern.rs`). It takes
//! arbitrary bytes and must return without panicking, whatever they are; its corpus
//! replays in `cargo test` (`index/tests/fuzz_corpora.rs`).

use std::sync::OnceLock;

use sightline_storage::{EventInput, Kind, Store, StoreConfig};

use crate::{SearchMode, Vocabulary, Wildcard};

/// A search pattern in every mode, through the tantivy vocabulary (a few subjects).
pub fn pattern(data: &[u8]) {
    static VOCAB: OnceLock<(tempfile::TempDir, Store, Vocabulary)> = OnceLock::new();
    let (_, _, vocab) = VOCAB.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path(), StoreConfig::default()).expect("store");
        let events: Vec<_> = ["苏E12345", "苏ED12345", "沪A99999"]
            .iter()
            .map(|s| {
                store
                    .validate(EventInput {
                        ts_ms: 1_630_454_400_000,
                        community: "3205080001".into(),
                        device: "32050801011210000001".into(),
                        kind: "vehicle".into(),
                        subject: s.to_string(),
                        direction: "in".into(),
                        ..Default::default()
                    })
                    .expect("valid")
            })
            .collect();
        store.append(&events).expect("append");
        let vocab = Vocabulary::in_memory().expect("vocabulary");
        vocab.catch_up(&store).expect("catch up");
        (dir, store, vocab)
    });
    let text = String::from_utf8_lossy(data);
    for mode in [
        SearchMode::Exact,
        SearchMode::Prefix,
        SearchMode::Wildcard,
        SearchMode::Fuzzy { distance: 1 },
        SearchMode::Fuzzy { distance: 2 },
    ] {
        let _ = vocab.search(&text, mode, &[Kind::Vehicle]);
    }
    // The watchlist matcher: a pattern matches itself with each `?` read as one
    // character and each `*` as none.
    if let Some(w) = Wildcard::new(&text) {
        let instance: String = text
            .chars()
            .filter(|&c| c != '*')
            .map(|c| if c == '?' { 'x' } else { c })
            .collect();
        assert!(w.matches(&instance), "{text:?} does not match {instance:?}");
    }
}
