//! Entry points for the fuzzers in `fuzz/` (cargo-fuzz) over the store's own files:
//! segments, WAL and dictionary-log bytes. Each takes arbitrary bytes and must return
//! without panicking, whatever they are: errors are fine, crashes are bugs. The index
//! and the server keep the entry points of their own inputs beside their code.
//!
//! [`corpus`] replays the corpora through the entry points in `cargo test`, for every
//! crate's `tests/fuzz_corpora.rs`.

pub mod corpus;

use std::path::Path;
use std::sync::OnceLock;

/// A segment file: open (verifying its small parts), then the attributes read before
/// the rows are verified (each read verifies the attr data first), then, if the rows
/// verify (as the store asks before reading them), every read path.
pub fn segment(data: &[u8]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("x.seg");
    std::fs::write(&path, data).expect("write");
    let Ok(seg) = crate::segment::Segment::open(&path) else {
        return;
    };
    for o in 0..seg.meta().events.min(64) {
        let _ = seg.attrs(o);
    }
    if seg.verify_rows().is_err() {
        return;
    }
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
        // What a trajectory reads: the subject's runs (its whole list, or past one
        // run's bound per device), decoded in bulk.
        let mut rows = Vec::new();
        for (_, postings) in seg.subject_device_runs(s, i64::MIN, i64::MAX) {
            let _ = seg.posting_rows(postings, s, &mut rows);
        }
        let mut runs = Vec::new();
        seg.subject_runs_into(s, i64::MIN, i64::MAX, 512, &mut runs);
        for (_, postings) in runs {
            let _ = seg.posting_rows(postings, s, &mut rows);
        }
    }
    let _ = seg.find_source_id("x");
    // Each stored id (the first events'), as deduplicating an upload looks one up.
    for o in 0..m.events.min(64) {
        if let Ok(attrs) = seg.attrs(o) {
            if let Some(crate::AttrValue::Str(id)) = attrs.get(crate::event::SOURCE_ID) {
                let _ = seg.find_source_id(id);
            }
        }
    }
    let _ = seg.row(0);
}

/// A scratch directory for one process's fuzz inputs, emptied before each.
fn scratch() -> &'static Path {
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
        let dir = corpus::fuzz_dir().join("corpus/dict_log");
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
    let _ = replay_logs(dir);
}

/// WAL bytes through recovery's framing and batch decoding alone (fast; `wal` opens a
/// whole store around them).
pub fn wal_records(data: &[u8]) {
    let _ = decode_wal_records(data);
}

/// Dictionary-log bytes through loading's framing and entry checks alone.
pub fn dict_records(data: &[u8]) {
    let _ = crate::dict::parse(data, Path::new("fuzz.dict"));
}

/// A dictionary log, likewise (with no WAL).
pub fn dict_log(data: &[u8]) {
    let dir = scratch();
    std::fs::write(dir.join("dict.log"), data).expect("write");
    let _ = replay_logs(dir);
}

/// Frames and decodes WAL bytes as recovery does; the number of events decoded.
fn decode_wal_records(bytes: &[u8]) -> crate::Result<usize> {
    let path = Path::new("fuzz.wal");
    let mut n = 0;
    crate::log_file::read_records(bytes, path, true, |off, payload| {
        let (_, events) = crate::wal::decode_batch(payload)
            .map_err(|r| crate::StorageError::corrupt(path, off, r))?;
        for e in &events {
            crate::store::source_id_of(&e.attrs)
                .map_err(|r| crate::StorageError::corrupt(path, off, r))?;
        }
        n += events.len();
        Ok(())
    })?;
    Ok(n)
}

/// Opens the dictionary log and WAL files in `dir` as opening a store does (replay
/// into shards, torn tails cut off, the logs reopened for appending), without the
/// catalog around them, so nothing is sealed; then reads every replayed event back
/// through the dictionaries and decodes its attributes. The events replayed.
pub fn replay_logs(dir: &Path) -> crate::Result<usize> {
    let config = crate::StoreConfig::default();
    let mut shards = std::collections::BTreeMap::new();
    let mut report = crate::RecoveryReport::default();
    let r = crate::store::replay_logs(dir, &config, &mut shards, 0, [0; 3], &mut report)?;
    let mut n = 0;
    for (key, shard) in &shards {
        for row in shard.mem.rows() {
            let decoded = r.dicts.community(key.community).is_some()
                && r.dicts.device(row.device).is_some()
                && r.dicts.subject(row.subject).is_some()
                && crate::attr_codec::decode_attrs(&row.attrs).is_ok();
            assert!(decoded, "a replayed event reads back: {row:?}");
            n += 1;
        }
    }
    Ok(n)
}
