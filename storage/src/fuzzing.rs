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
/// verify (as the store asks before reading them), every read path. Then, if any
/// checksum in them was wrong, the same bytes with their checksums made right
/// ([`resealed_segment`]), so that a mutated byte reaches the parsing behind the
/// checksums instead of stopping at one.
pub fn segment(data: &[u8]) {
    read_segment(data);
    if let Some(resealed) = resealed_segment(data).filter(|r| r != data) {
        read_segment(&resealed);
    }
}

/// Where a file's checksums are, for [`reseal`]: the store's checked files (segments,
/// dictionary snapshots, index checkpoints) share this shape.
pub struct Sealed {
    /// The header's length: its crc32 is in its last 8 bytes (then 4 zero bytes),
    /// over every byte before it.
    pub header: usize,
    /// Where the section table starts: entries of 24 bytes, `{offset u64, length u64,
    /// crc32 u32, 4 zero bytes}`.
    pub table: usize,
    pub sections: usize,
    /// Sections whose table crc is not written (a segment's block data: each block has
    /// its own).
    pub unsealed: &'static [usize],
    /// The section of chunk checksums, if any: one crc32 for each `CHUNK` bytes from
    /// the header's end to that section (the last chunk shorter).
    pub chunks: Option<(usize, usize)>,
}

/// The byte range section `s` of `b`'s table names, if it lies inside `b`.
pub fn section_of(b: &[u8], table: usize, s: usize) -> Option<std::ops::Range<usize>> {
    let at = table + s * 24;
    let field =
        |at: usize| usize::try_from(u64::from_le_bytes(b[at..at + 8].try_into().ok()?)).ok();
    let start = field(at)?;
    let end = start.checked_add(field(at + 8)?)?;
    (end <= b.len()).then_some(start..end)
}

/// Recomputes, in `b`, every checksum `at` places inside it: the chunk checksums,
/// then each section's (the chunk section's after its contents), then the header's.
/// For the fuzzers: a mutated byte then reaches the decoding behind the checksums
/// instead of stopping at one. `b` must hold the header.
pub fn reseal(b: &mut [u8], at: &Sealed) {
    let put = |b: &mut [u8], i: usize, crc: u32| b[i..i + 4].copy_from_slice(&crc.to_le_bytes());
    if let Some((s, chunk)) = at.chunks {
        if let Some(crcs) = section_of(b, at.table, s).filter(|r| r.start >= at.header) {
            for (c, from) in (at.header..crcs.start).step_by(chunk).enumerate() {
                let i = crcs.start + c * 4;
                if i + 4 > crcs.end {
                    break;
                }
                let crc = crc32fast::hash(&b[from..(from + chunk).min(crcs.start)]);
                put(b, i, crc);
            }
        }
    }
    for s in (0..at.sections).filter(|s| !at.unsealed.contains(s)) {
        if let Some(r) = section_of(b, at.table, s) {
            let crc = crc32fast::hash(&b[r]);
            put(b, at.table + s * 24 + 16, crc);
        }
    }
    let crc = crc32fast::hash(&b[..at.header - 8]);
    put(b, at.header - 8, crc);
}

/// For tests of a resealing function (`reseal`, a file's valid `bytes` with a header
/// of `header` bytes): changes one byte at a time — each of the header's fields from
/// byte 16, and about a hundred spread over the rest — and asserts that `read` refuses
/// each change as it is and, once resealed, never for a checksum mismatch. Returns how
/// many resealed changes `read` refused and how many it read as valid.
pub fn reseal_changes(
    bytes: &[u8],
    header: usize,
    reseal: impl Fn(&[u8]) -> Option<Vec<u8>>,
    read: impl Fn(&[u8]) -> Result<(), String>,
) -> (usize, usize) {
    assert_eq!(
        reseal(bytes).as_deref(),
        Some(bytes),
        "a valid file resealed"
    );
    assert_eq!(reseal(&bytes[..header - 1]), None);
    let (mut refused, mut valid) = (0, 0);
    let step = (bytes.len() - header) / 97 + 1;
    for i in (16..header - 8).chain((header..bytes.len()).step_by(step)) {
        let mut changed = bytes.to_vec();
        changed[i] ^= 0x10;
        assert!(read(&changed).is_err(), "byte {i} changed, accepted");
        match read(&reseal(&changed).expect("resealed")) {
            Ok(()) => valid += 1,
            Err(e) => {
                assert!(!e.contains("checksum mismatch"), "byte {i}: {e}");
                refused += 1;
            }
        }
    }
    (refused, valid)
}

/// `bytes` with every checksum of a segment recomputed over the bytes it covers, as
/// far as the header's section table and the block directory place them inside the
/// file: each block's data, then the sections and the header ([`reseal`]). `None` for
/// bytes shorter than a header. A mutation is then judged by the structure's own
/// checks alone.
pub fn resealed_segment(bytes: &[u8]) -> Option<Vec<u8>> {
    use crate::segment::format::{
        block, get_u32, get_u64, put_u32, BLOCK_ENTRY, BLOCK_ROWS, HEADER_FIELDS, HEADER_LEN,
        MAX_BLOCK_BITS, SECTION_COUNT,
    };
    if bytes.len() < HEADER_LEN {
        return None;
    }
    let mut b = bytes.to_vec();
    // No block holds more (the reader refuses any other length): an entry naming more
    // is skipped, so hand-made entries cannot make resealing quadratic.
    let max_block = crate::segment::block_data_len(BLOCK_ROWS, MAX_BLOCK_BITS);
    let section = |b: &[u8], s| section_of(b, HEADER_FIELDS, s);
    if let (Some(dir), Some(data)) = (section(&b, 0), section(&b, 1)) {
        for e in dir.clone().step_by(BLOCK_ENTRY) {
            if e + BLOCK_ENTRY > dir.end {
                break;
            }
            let place = usize::try_from(get_u64(&b, e + block::DATA_OFF))
                .ok()
                .and_then(|off| data.start.checked_add(off))
                .and_then(|start| {
                    let len = get_u32(&b, e + block::DATA_LEN) as usize;
                    let end = start.checked_add(len)?;
                    (len <= max_block && end <= data.end).then_some(start..end)
                });
            if let Some(r) = place {
                let crc = crc32fast::hash(&b[r]);
                put_u32(&mut b, e + block::CRC, crc);
            }
        }
    }
    let at = Sealed {
        header: HEADER_LEN,
        table: HEADER_FIELDS,
        sections: SECTION_COUNT,
        unsealed: &[1],
        chunks: None,
    };
    reseal(&mut b, &at);
    Some(b)
}

fn read_segment(data: &[u8]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("x.seg");
    std::fs::write(&path, data).expect("write");
    let Ok(seg) = crate::segment::Segment::open(&path) else {
        return;
    };
    for o in 0..seg.meta().events.min(64) {
        // What a page's writer asks for ahead of each event's attributes (hints, read
        // from the file before its attributes are verified).
        seg.prefetch_attr_place(o);
        seg.prefetch_attrs(o);
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
        // What a trajectory asks for ahead of a search (hints).
        seg.prefetch_samples();
        seg.prefetch_subject(s);
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
            seg.prefetch_postings(postings.clone());
            // A merge's two steps ahead of a run's first rows (hints), on and past
            // the run's ends.
            for i in [postings.start, postings.end, postings.end + 1000] {
                seg.prefetch_posting_entry(i);
                seg.prefetch_posting_row(i);
            }
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

/// A dictionary snapshot (`dict.snap`): opened (its header, section table and the
/// chunks of each table's last end checked), then what lookups read of it (the first
/// 256 strings of each table, each found again by its string through the slot table,
/// and a subject's kind), then every chunk and section at once (`sightline check`).
/// Then, if any checksum in them was wrong, the same bytes with their checksums made
/// right (`dict_snapshot::resealed`).
pub fn dict_snapshot(data: &[u8]) {
    read_dict_snapshot(data);
    if let Some(resealed) = crate::dict_snapshot::resealed(data).filter(|r| r != data) {
        read_dict_snapshot(&resealed);
    }
}

fn read_dict_snapshot(data: &[u8]) {
    use crate::dict_snapshot::{DictSnapshot, Part};
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("dict.snap");
    std::fs::write(&path, data).expect("write");
    let Ok(snap) = DictSnapshot::open(&crate::io::OsIo, &path) else {
        return;
    };
    for part in [Part::Communities, Part::Devices, Part::Subjects] {
        for id in 0..snap.len(part).min(256) {
            let kind = match part {
                Part::Subjects => snap.try_subject_kind(id).ok().flatten().unwrap_or(0),
                _ => 0,
            };
            if let Ok(Some(s)) = snap.try_get(part, id) {
                let s = s.to_string();
                let _ = snap.try_find(part, kind, &s);
            }
        }
        let _ = snap.try_find(part, 0, "苏E12345");
    }
    let _ = snap.check_all();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::format::{get_u64, HEADER_FIELDS, SECTION_ENTRY};
    use crate::segment::Segment;

    /// The rows' verification of `bytes` written as a segment file (`Ok` if it opens
    /// and verifies), its error as text otherwise.
    fn verified(bytes: &[u8]) -> Result<(), String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.seg");
        std::fs::write(&path, bytes).unwrap();
        let seg = Segment::open(&path).map_err(|e| e.to_string())?;
        seg.verify_rows().map_err(|e| e.to_string())
    }

    /// A valid segment's checksums are right already: resealing changes no byte. A
    /// byte changed in its block data or its source-id index is refused as it is (a
    /// block's by its checksum); resealed, it gets past every checksum to the
    /// structure's own checks.
    #[test]
    fn resealing_keeps_a_valid_segment_and_lets_a_change_past_the_checksums() {
        let path = corpus::fuzz_dir().join("corpus/segment/seed-sealed-day");
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(resealed_segment(&bytes).as_deref(), Some(&bytes[..]));
        assert_eq!(verified(&bytes), Ok(()));
        assert_eq!(resealed_segment(&bytes[..100]), None);
        // Resealed changes a structural check refused (the rest read as valid rows).
        let mut refused = 0;
        for section in [1, 5] {
            let at = HEADER_FIELDS + section * SECTION_ENTRY;
            let (start, len) = (
                get_u64(&bytes, at) as usize,
                get_u64(&bytes, at + 8) as usize,
            );
            assert!(len > 0, "section {section} of the seed is empty");
            for i in start..start + len {
                let mut changed = bytes.clone();
                changed[i] ^= 0x24;
                // Refused as it is (the source ids' widths are checked at open, before
                // their checksum on the first read of rows).
                let err = verified(&changed).unwrap_err();
                assert!(section != 1 || err.contains("checksum"), "{err}");
                if let Err(e) = verified(&resealed_segment(&changed).unwrap()) {
                    assert!(!e.contains("checksum"), "byte {i} resealed: {e}");
                    refused += 1;
                }
            }
        }
        assert!(refused > 0, "no resealed change met a structural check");
    }
}
