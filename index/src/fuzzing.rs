//! The fuzz entry points for search patterns and index checkpoints
//! (`fuzz/fuzz_targets/pattern.rs`, `checkpoint.rs`). Each takes arbitrary bytes and
//! must return without panicking, whatever they are; their corpora replay in `cargo
//! test` (`index/tests/fuzz_corpora.rs`).

use std::path::Path;
use std::sync::OnceLock;

use sightline_storage::io::FileBytes;
use sightline_storage::{EventInput, Kind, Store, StoreConfig};

use crate::checkpoint::{resealed, Checkpoint};
use crate::{SearchMode, Vocabulary, Wildcard};

/// An index checkpoint (`subjects.idx`): decoded (the header, the section table and
/// the small sections checked), then what a store reads of it (the first 512
/// subjects' shard lists, searched as well as walked, and statistics, the first 512
/// devices' communities: the large sections checked a chunk and a list at a time),
/// then every byte and list at once (`sightline check`). Then, if
/// any checksum in them was wrong, the same bytes with their checksums made right
/// ([`resealed`]), so that a mutated byte reaches the decoding behind the checksums
/// instead of stopping at one.
pub fn checkpoint(data: &[u8]) {
    read_checkpoint(data);
    if let Some(resealed) = resealed(data).filter(|r| r != data) {
        read_checkpoint(&resealed);
    }
}

fn read_checkpoint(data: &[u8]) {
    let path = Path::new("subjects.idx");
    let Ok(cp) = Checkpoint::decode(path, FileBytes::Owned(data.to_vec())) else {
        return;
    };
    let (subjects, devices) = cp.counts();
    for s in 0..subjects.min(512) as u32 {
        if let Ok(list) = cp.subject_shards(s) {
            let _ = list.contains(list.len() as u32 / 2) || list.contains(u32::MAX);
            let _ = list.iter().count();
        }
        let _ = cp.stats(s as usize);
    }
    for d in 0..devices.min(512) as u32 {
        let list = cp.device_communities(d);
        let _ = list.contains(0);
        let _ = list.iter().count();
    }
    let _ = cp.check_all();
}

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
