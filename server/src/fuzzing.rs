//! Entry points for the fuzzers in `fuzz/` (cargo-fuzz), one per input surface. Each
//! takes arbitrary bytes and must return without panicking, whatever they are: errors
//! are fine, crashes are bugs. `server/tests/fuzz_corpora.rs` replays every corpus
//! file (and every crash found, minimised) through them in `cargo test`, so CI checks
//! them without a fuzzer.

use std::sync::OnceLock;

use sightline_storage::{Store, StoreConfig};

/// A segment file: open (verifying checksums) and, if it opens, every read path.
pub fn segment(data: &[u8]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("x.seg");
    std::fs::write(&path, data).expect("write");
    let Ok(seg) = sightline_storage::segment::Segment::open(&path) else {
        return;
    };
    let m = *seg.meta();
    let mut n = 0u64;
    seg.for_each(|o, r| {
        n += 1;
        let _ = seg.attrs(o);
        let _ = seg.find_seq(r.seq);
    });
    seg.for_each_in_range(i64::MIN, i64::MAX, |_, _| {});
    seg.for_each_in_range(m.min_ts_ms, m.max_ts_ms, |_, _| {});
    seg.for_each_in_seq_range(0, u64::MAX, |_, _| {});
    for s in seg.subjects().take(64).collect::<Vec<_>>() {
        seg.for_each_of_subject(s, |_, _| {});
        let _ = seg.count_of_subject(s, None);
    }
    let _ = seg.find_source_id("x");
    let _ = seg.row(0);
}

/// A scratch directory for one process's fuzz inputs, emptied before each.
fn scratch() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR
        .get_or_init(|| tempfile::tempdir().expect("temp dir"))
        .path();
    let _ = std::fs::remove_dir_all(dir.join("wal"));
    let _ = std::fs::remove_file(dir.join("dict.log"));
    dir
}

/// Valid dictionary-log bytes naming the ids the WAL seeds use, so WAL inputs get past
/// the dictionary check into replay.
fn seed_dict() -> &'static [u8] {
    static DICT: OnceLock<Vec<u8>> = OnceLock::new();
    DICT.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/dict_log");
        std::fs::read_dir(&dir)
            .ok()
            .and_then(|mut d| d.find_map(|e| std::fs::read(e.ok()?.path()).ok()))
            .unwrap_or_default()
    })
}

/// A WAL file: recovery replays what it can (beside a valid dictionary log) and
/// reports the rest, exactly as opening a store does, without the catalog around it.
pub fn wal(data: &[u8]) {
    let dir = scratch();
    let wal = dir.join("wal");
    std::fs::create_dir_all(&wal).expect("wal dir");
    std::fs::write(dir.join("dict.log"), seed_dict()).expect("write");
    std::fs::write(wal.join(format!("{:020}.wal", 1)), data).expect("write");
    let _ = sightline_storage::fuzz_entry::replay_logs(dir);
}

/// WAL bytes through recovery's framing and batch decoding alone (fast; `wal` opens a
/// whole store around them).
pub fn wal_records(data: &[u8]) {
    let _ = sightline_storage::fuzz_entry::wal_records(data);
}

/// Dictionary-log bytes through loading's framing and entry checks alone.
pub fn dict_records(data: &[u8]) {
    let _ = sightline_storage::fuzz_entry::dict_records(data);
}

/// A dictionary log, likewise (with no WAL).
pub fn dict_log(data: &[u8]) {
    let dir = scratch();
    std::fs::write(dir.join("dict.log"), data).expect("write");
    let _ = sightline_storage::fuzz_entry::replay_logs(dir);
}

/// An NDJSON or JSON-array ingest body, through parsing and validation.
pub fn ingest_json(data: &[u8]) {
    if let Ok(records) = crate::ingest::parse::records(data) {
        let v = sightline_storage::Validator::default();
        for (_, r) in records {
            if let Ok(input) = r {
                let _ = v.validate(input, crate::now_ms());
            }
        }
    }
}

/// A binary ingest batch, through decoding and validation.
pub fn binary_batch(data: &[u8]) {
    if let Ok(events) = crate::wire::decode(data) {
        let v = sightline_storage::Validator::default();
        for e in &events {
            let _ = v.validate_ref(e, crate::now_ms());
        }
    }
}

/// A GA/T 1400 digest `Authorization` header (the first line) and an upload body (the
/// rest): the digest check, and the body as vehicles and as faces, against a store with
/// one registered device and credential.
pub fn gat1400(data: &[u8]) {
    static STORE: OnceLock<(tempfile::TempDir, Store)> = OnceLock::new();
    let (_, store) = STORE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path(), StoreConfig::default()).expect("store");
        let c = store.catalog();
        c.put_community(&sightline_storage::Community {
            code: "3205080001".into(),
            name: "x".into(),
            district: String::new(),
        })
        .expect("community");
        c.put_device(&sightline_storage::Device {
            code: "32050801011210000001".into(),
            community: "3205080001".into(),
            device_kind: "gate".into(),
            direction: sightline_storage::Direction::In,
            name: String::new(),
        })
        .expect("device");
        c.put_gat1400_credential(&crate::gat1400::credential("32050801011210000001", "pw"))
            .expect("credential");
        (dir, store)
    });
    let text = String::from_utf8_lossy(data);
    let (auth, body) = text.split_once('\n').unwrap_or(("", &text));
    let _ = crate::gat1400::Gateway::default().check_digest(store, "POST", Some(auth));
    for upload in [
        crate::gat1400::objects::Upload::Vehicles,
        crate::gat1400::objects::Upload::Faces,
    ] {
        let _ = crate::gat1400::objects::objects(store, upload, body.as_bytes(), "ArchiveID");
    }
}

/// A query string, through every parameter parser the handlers use.
pub fn query_params(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let p = crate::params::Params::parse(Some(&text));
    let _ = p.time("from");
    let _ = p.window("window");
    let _ = p.kind("kind");
    let _ = p.limit(100, 10_000);
    let _ = p.list("community");
    let _ = p.number::<u64>("after", 0);
    let _ = crate::params::parse_time("ts", &text);
    let _ = crate::params::parse_window("window", &text);
    let _ = crate::gat1400::parse_time(&text);
    let _: Result<sightline_query::Cursor, _> = text.parse();
}

/// A search pattern in every mode, through the tantivy vocabulary (a few subjects).
pub fn pattern(data: &[u8]) {
    static VOCAB: OnceLock<(tempfile::TempDir, Store, sightline_index::Vocabulary)> =
        OnceLock::new();
    let (_, _, vocab) = VOCAB.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path(), StoreConfig::default()).expect("store");
        let events: Vec<_> = ["苏E12345", "苏ED12345", "沪A99999"]
            .iter()
            .map(|s| {
                store
                    .validate(sightline_storage::EventInput {
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
        let vocab = sightline_index::Vocabulary::in_memory().expect("vocabulary");
        vocab.catch_up(&store).expect("catch up");
        (dir, store, vocab)
    });
    let text = String::from_utf8_lossy(data);
    for mode in [
        sightline_index::SearchMode::Exact,
        sightline_index::SearchMode::Prefix,
        sightline_index::SearchMode::Wildcard,
        sightline_index::SearchMode::Fuzzy { distance: 1 },
        sightline_index::SearchMode::Fuzzy { distance: 2 },
    ] {
        let _ = vocab.search(&text, mode, &[sightline_storage::Kind::Vehicle]);
    }
    // The watchlist matcher: a pattern matches itself with each `?` read as one
    // character and each `*` as none.
    if let Some(w) = sightline_index::Wildcard::new(&text) {
        let instance: String = text
            .chars()
            .filter(|&c| c != '*')
            .map(|c| if c == '?' { 'x' } else { c })
            .collect();
        assert!(w.matches(&instance), "{text:?} does not match {instance:?}");
    }
}
