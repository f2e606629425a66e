//! Damaged files: a torn WAL keeps its complete prefix; any other damage is a clear
//! error naming the file and offset, never a panic and never wrong answers.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use sightline_storage::{ManualClock, StorageError, Store, StoreConfig};

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(DAY0 + 12 * HOUR))
}

fn subjects(store: &Store) -> Vec<String> {
    all_events(store)
        .into_iter()
        .map(|e| e.event.subject().to_string())
        .collect()
}

#[test]
fn wal_truncated_at_every_byte_of_its_last_records_keeps_the_complete_prefix() {
    let base = tempfile::tempdir().unwrap();
    let c = clock();
    let mut record_ends = Vec::new();
    {
        let store = open(base.path(), &c, StoreConfig::default());
        for i in 0..4 {
            store
                .append(&[
                    ev(input(DAY0 + i, "c1", 1, "face", &format!("F{i}"))),
                    ev(input(DAY0 + i, "c1", 2, "face", &format!("G{i}"))),
                ])
                .unwrap();
            let wal = &files_with_ext(&base.path().join("wal"), "wal")[0];
            record_ends.push(std::fs::metadata(wal).unwrap().len());
        }
    }
    let wal_name = files_with_ext(&base.path().join("wal"), "wal")[0]
        .file_name()
        .unwrap()
        .to_owned();
    let full = record_ends[3];
    // Every offset from the end of the second record to the end of the file.
    for cut in record_ends[1]..=full {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(base.path(), dir.path());
        let wal = dir.path().join("wal").join(&wal_name);
        let f = std::fs::OpenOptions::new().write(true).open(&wal).unwrap();
        f.set_len(cut).unwrap();
        drop(f);
        let store = open(dir.path(), &c, StoreConfig::default());
        let complete = record_ends.iter().filter(|&&e| e <= cut).count();
        let mut want = Vec::new();
        for i in 0..complete {
            want.push(format!("F{i}"));
            want.push(format!("G{i}"));
        }
        assert_eq!(subjects(&store), want, "cut at {cut}");
        let torn = store.recovery().wal_torn_tail.clone();
        assert_eq!(
            torn.is_some(),
            !record_ends.contains(&cut),
            "cut at {cut}: {torn:?}"
        );
        // The store goes on: the next append lands after the kept prefix and survives reopen.
        store
            .append(&[ev(input(DAY0 + 99, "c1", 1, "face", "NEXT"))])
            .unwrap();
        drop(store);
        let store = open(dir.path(), &c, StoreConfig::default());
        want.push("NEXT".into());
        assert_eq!(subjects(&store), want, "cut at {cut}, after reopen");
        assert_eq!(store.recovery().wal_torn_tail, None);
    }
}

fn expect_corrupt(dir: &Path, c: &Arc<ManualClock>, file: &Path) -> (u64, String) {
    match Store::open_with_clock(dir, StoreConfig::default(), c.clone()) {
        Err(StorageError::Corrupt {
            path,
            offset,
            reason,
        }) => {
            assert_eq!(path, file, "the error names the damaged file");
            (offset, reason)
        }
        Err(other) => panic!(
            "expected a corruption error for {}, got {other}",
            file.display()
        ),
        Ok(_) => panic!("damaged {} opened without error", file.display()),
    }
}

#[test]
fn damage_inside_the_wal_before_intact_records_names_file_and_offset() {
    let base = tempfile::tempdir().unwrap();
    let c = clock();
    {
        let store = open(base.path(), &c, StoreConfig::default());
        for i in 0..3 {
            store
                .append(&[ev(input(DAY0 + i, "c1", 1, "face", &format!("F{i}")))])
                .unwrap();
        }
    }
    let wal = files_with_ext(&base.path().join("wal"), "wal")[0].clone();
    let mut bytes = std::fs::read(&wal).unwrap();
    let len = bytes.len();
    bytes[len / 2] ^= 0x10; // inside the second of three records
    std::fs::write(&wal, &bytes).unwrap();
    let (offset, reason) = expect_corrupt(base.path(), &c, &wal);
    assert!(
        offset > 0 && offset < len as u64 / 2,
        "offset {offset} points at the damaged record"
    );
    assert!(reason.contains("checksum"), "{reason}");
}

/// A store of one sealed segment: 500 vehicle events of 37 plates at 6 devices, each
/// with a source id and an attribute. Returns the segment's path relative to `dir`.
fn one_segment_store(dir: &Path, c: &Arc<ManualClock>) -> std::path::PathBuf {
    let store = open(dir, c, StoreConfig::default());
    let batch: Vec<_> = (0..500)
        .map(|i| {
            let mut e = input(
                DAY0 + i * 997,
                "c1",
                (i % 6) as u32,
                "vehicle",
                &format!("苏E{:05}", i % 37),
            );
            e.attrs.insert(
                "plate_color".into(),
                sightline_storage::AttrValue::Str("blue".into()),
            );
            ev(with_source(e, &format!("S{i}")))
        })
        .collect();
    store.append(&batch).unwrap();
    store.seal_shard(store.shards()[0].key).unwrap();
    files_with_ext(dir, "seg")[0]
        .strip_prefix(dir)
        .unwrap()
        .to_path_buf()
}

/// Asserts `r` is a corruption error naming `file`; returns its reason.
fn corrupt_naming<T: std::fmt::Debug>(
    r: Result<T, StorageError>,
    file: &Path,
    what: &str,
) -> String {
    match r {
        Err(StorageError::Corrupt { path, reason, .. }) => {
            assert_eq!(path, file, "{what}: the error names the damaged file");
            reason
        }
        other => panic!(
            "{what}: expected a corruption error naming {}, got {other:?}",
            file.display()
        ),
    }
}

/// `sightline check` lists the damage, naming the file.
fn check_reports(dir: &Path, file: &Path) {
    let r = sightline_storage::check(dir).unwrap();
    assert!(
        r.problems
            .iter()
            .any(|p| p.contains(&file.display().to_string())),
        "check missed the damage in {}: {:?}",
        file.display(),
        r.problems
    );
}

#[test]
fn a_flipped_byte_anywhere_in_a_segment_is_an_error_naming_the_file() {
    let base = tempfile::tempdir().unwrap();
    let c = clock();
    let seg_rel = one_segment_store(base.path(), &c);
    let size = std::fs::metadata(base.path().join(&seg_rel)).unwrap().len() as usize;
    let mut positions: Vec<usize> = (0..size).step_by(size / 97 + 1).collect();
    positions.extend([0, 8, 100, 279, 280, size - 1]);
    for pos in positions {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(base.path(), dir.path());
        let seg = dir.path().join(&seg_rel);
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes[pos] ^= 0x01;
        std::fs::write(&seg, &bytes).unwrap();
        // Opening verifies the small parts; the rest is verified on the first read of
        // it. Either way the damage is an error naming the file, before any answer.
        match Store::open_with_clock(dir.path(), StoreConfig::default(), c.clone()) {
            Err(e) => {
                corrupt_naming(Err::<(), _>(e), &seg, &format!("open, byte {pos}"));
            }
            Ok(store) => {
                let reason = corrupt_naming(
                    store.read_events(0, i64::MAX, None),
                    &seg,
                    &format!("first read, byte {pos}"),
                );
                assert!(!reason.is_empty(), "byte {pos}");
            }
        }
        check_reports(dir.path(), &seg);
    }
}

/// Where section `n` of the segment at `path` starts and how long it is, from the
/// section table (storage/FORMAT.md, "Header").
fn section(path: &Path, n: usize) -> (usize, usize) {
    let b = std::fs::read(path).unwrap();
    let at = 80 + n * 24;
    let word = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap()) as usize;
    (word(at), word(at + 8))
}

/// Flips a byte in the middle of section `n` of `path`.
fn damage_section(path: &Path, n: usize) {
    let (off, len) = section(path, n);
    assert!(len > 0, "section {n} is empty");
    let mut bytes = std::fs::read(path).unwrap();
    bytes[off + len / 2] ^= 0x20;
    std::fs::write(path, &bytes).unwrap();
}

#[test]
fn a_damaged_block_opens_and_fails_every_first_read_of_rows_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let seg = dir.path().join(one_segment_store(dir.path(), &c));
    damage_section(&seg, 1); // block data
    {
        let store = open(dir.path(), &c, StoreConfig::default());
        let key = store.shards()[0].key;
        let (subject, device) = {
            let d = store.dictionaries();
            (
                d.subject_id(sightline_storage::Kind::Vehicle, "苏E00001")
                    .unwrap(),
                d.device_id(&common::device(1)).unwrap(),
            )
        };
        let mut seen = 0;
        let reason = corrupt_naming(
            store.scan_range(0, i64::MAX, None, |_| seen += 1),
            &seg,
            "scan_range",
        );
        assert!(
            reason.contains("block") && reason.contains("checksum"),
            "{reason}"
        );
        assert_eq!(seen, 0, "no row of the damaged segment is given");
        // Verified once: the outcome stays, for every read path.
        let again = corrupt_naming(store.scan_range(0, i64::MAX, None, |_| {}), &seg, "again");
        assert_eq!(again, reason);
        corrupt_naming(
            store
                .subject_runs([key], subject, 0, i64::MAX)
                .map(|r| r.len()),
            &seg,
            "subject_runs",
        );
        corrupt_naming(
            store.scan_subject([key], subject, 0, i64::MAX, |_| {}),
            &seg,
            "scan_subject",
        );
        corrupt_naming(
            store.count_subject([key], subject, 0, i64::MAX, None),
            &seg,
            "count_subject",
        );
        corrupt_naming(
            store.scan_device_window(key.community, device, 0, i64::MAX),
            &seg,
            "scan_device_window",
        );
        corrupt_naming(
            store.event_by_seq(1).map(|e| e.map(|(r, _)| r)),
            &seg,
            "event_by_seq",
        );
        corrupt_naming(
            store
                .scan_seq_range(0, store.applied_through(), 10, None)
                .map(|v| v.len()),
            &seg,
            "scan_seq_range",
        );
        corrupt_naming(store.read_events(0, i64::MAX, None), &seg, "read_events");
        corrupt_naming(store.rows_after(0, u64::MAX, |_| {}), &seg, "rows_after");
        // A compaction does not copy the damage into a new file under fresh checksums.
        store
            .append(&[ev(input(DAY0 + 5, "c1", 1, "vehicle", "苏E99999"))])
            .unwrap();
        store.seal_shard(key).unwrap();
        corrupt_naming(store.compact_shard(key), &seg, "compact_shard");
    }
    check_reports(dir.path(), &seg);
}

#[test]
fn damaged_attributes_open_rows_read_and_the_first_read_of_attributes_fails() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let seg = dir.path().join(one_segment_store(dir.path(), &c));
    damage_section(&seg, 7); // attr data
    {
        let store = open(dir.path(), &c, StoreConfig::default());
        // The rows are intact and read; their attributes are not given.
        let mut n = 0;
        store.scan_range(0, i64::MAX, None, |_| n += 1).unwrap();
        assert_eq!(n, 500);
        let reason = corrupt_naming(store.read_events(0, i64::MAX, None), &seg, "read_events");
        assert!(reason.contains("attr data"), "{reason}");
        let (_, at) = store.event_by_seq(1).unwrap().unwrap();
        corrupt_naming(at.decode(), &seg, "decode");
        corrupt_naming(at.bytes().map(|b| b.len()), &seg, "bytes");
    }
    check_reports(dir.path(), &seg);
}

#[test]
fn damaged_postings_open_and_a_subject_s_first_read_fails() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let seg = dir.path().join(one_segment_store(dir.path(), &c));
    damage_section(&seg, 4); // posting ordinals
    {
        let store = open(dir.path(), &c, StoreConfig::default());
        let key = store.shards()[0].key;
        let subject = store
            .dictionaries()
            .subject_id(sightline_storage::Kind::Vehicle, "苏E00002")
            .unwrap();
        let reason = corrupt_naming(
            store
                .subject_runs([key], subject, 0, i64::MAX)
                .map(|r| r.len()),
            &seg,
            "subject_runs",
        );
        assert!(reason.contains("posting ordinals"), "{reason}");
    }
    check_reports(dir.path(), &seg);
}

/// Rewrites `path` with `change` applied to its bytes, then recomputes section `n`'s
/// checksum and the header's: damage a checksum cannot see (a bug, or a hand).
fn rewrite_behind_checksums(path: &Path, n: usize, change: impl FnOnce(&mut [u8], usize)) {
    let (off, len) = section(path, n);
    let mut b = std::fs::read(path).unwrap();
    change(&mut b, off);
    let crc = crc32fast::hash(&b[off..off + len]);
    let at = 80 + n * 24 + 16;
    b[at..at + 4].copy_from_slice(&crc.to_le_bytes());
    let header = crc32fast::hash(&b[..272]);
    b[272..276].copy_from_slice(&header.to_le_bytes());
    std::fs::write(path, &b).unwrap();
}

/// A block's least seq, or the postings' base, changed behind matching checksums: every
/// read of rows fails naming the file (reads add them unchecked: a debug build
/// overflowed, a release build gave wrong ids or rows), and `check` reports it.
#[test]
fn seqs_and_postings_out_of_range_behind_matching_checksums_are_errors_naming_the_file() {
    let cases: [(&str, usize, u64, &str); 3] = [
        ("seq min at the top", 0, u64::MAX - 1, "seq"),
        ("seq min below the segment's", 0, 0, "seq"),
        ("postings' base past the events", 4, 1_000_000, "posting"),
    ];
    for (what, section_n, value, says) in cases {
        let dir = tempfile::tempdir().unwrap();
        let c = clock();
        let seg = dir.path().join(one_segment_store(dir.path(), &c));
        rewrite_behind_checksums(&seg, section_n, |b, off| {
            // Block 0's SEQ_MIN (directory entry offset 32), or the packed array's base.
            let at = if section_n == 0 { off + 32 } else { off + 8 };
            b[at..at + 8].copy_from_slice(&value.to_le_bytes());
        });
        reads_of_rows_fail_naming(dir.path(), &c, &seg, what, says);
    }
}

/// Every read of `seg`'s rows (a subject's, a time range's, events by seq) fails naming
/// it, the subject's read with a reason holding `says`; then `check` reports it.
fn reads_of_rows_fail_naming(dir: &Path, c: &Arc<ManualClock>, seg: &Path, what: &str, says: &str) {
    {
        let store = open(dir, c, StoreConfig::default());
        let key = store.shards()[0].key;
        let subject = store
            .dictionaries()
            .subject_id(sightline_storage::Kind::Vehicle, "苏E00001")
            .unwrap();
        let reason = corrupt_naming(
            store.scan_subject([key], subject, 0, i64::MAX, |_| {}),
            seg,
            what,
        );
        assert!(reason.contains(says), "{what}: {reason}");
        corrupt_naming(store.scan_range(0, i64::MAX, None, |_| {}), seg, what);
        corrupt_naming(store.read_events(0, i64::MAX, None), seg, what);
    }
    check_reports(dir, seg);
}

/// Subject ids out of order behind matching checksums (the first two swapped): the
/// first read of rows fails naming the file, where a search would otherwise miss a
/// subject's events without a word, and `check` reports it.
#[test]
fn subjects_out_of_order_behind_matching_checksums_are_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let seg = dir.path().join(one_segment_store(dir.path(), &c));
    rewrite_behind_checksums(&seg, 2, |b, off| {
        // The packed array's values start after its 16-byte header (`bits`, zeros,
        // base); the first two are swapped in the little-endian bit stream.
        let bits = b[off] as usize;
        let word = |b: &[u8]| u64::from_le_bytes(b[off + 16..off + 24].try_into().unwrap());
        let w = word(b);
        let mask = (1u64 << bits) - 1;
        let (v0, v1) = (w & mask, w >> bits & mask);
        assert!(v0 < v1, "{v0} {v1}");
        let w = w & !(mask | mask << bits) | v1 | v0 << bits;
        b[off + 16..off + 24].copy_from_slice(&w.to_le_bytes());
    });
    let what = "subjects out of order";
    reads_of_rows_fail_naming(dir.path(), &c, &seg, what, "subject 1 is not above");
}

#[test]
fn a_damaged_source_id_index_opens_and_the_first_lookup_fails_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let seg = dir.path().join(one_segment_store(dir.path(), &c));
    damage_section(&seg, 5); // source ids
    {
        let store = open(dir.path(), &c, StoreConfig::default());
        // A repeated upload looks its id up in the sealed segment: the damage is an
        // error, not a second copy of the event nor a wrong duplicate's number.
        let again = ev(with_source(
            input(DAY0 + 3 * 997, "c1", 3, "vehicle", "苏E00003"),
            "S3",
        ));
        let reason = corrupt_naming(store.append(std::slice::from_ref(&again)), &seg, "append");
        assert!(reason.contains("source ids"), "{reason}");
        let again_reason = corrupt_naming(store.append(&[again]), &seg, "append again");
        assert_eq!(again_reason, reason);
    }
    check_reports(dir.path(), &seg);
}

#[test]
fn a_truncated_segment_is_an_error_naming_the_file() {
    let base = tempfile::tempdir().unwrap();
    let c = clock();
    {
        let store = open(base.path(), &c, StoreConfig::default());
        store
            .append(&[ev(input(DAY0, "c1", 1, "face", "F1"))])
            .unwrap();
        store.seal_shard(store.shards()[0].key).unwrap();
    }
    let seg = files_with_ext(base.path(), "seg")[0].clone();
    let len = std::fs::metadata(&seg).unwrap().len();
    for cut in [0, 10, 279, 280, len / 2, len - 1] {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(base.path(), dir.path());
        let s = dir.path().join(seg.strip_prefix(base.path()).unwrap());
        std::fs::OpenOptions::new()
            .write(true)
            .open(&s)
            .unwrap()
            .set_len(cut)
            .unwrap();
        // Opening reads no segment: the first read of it finds the damage.
        let store = Store::open_with_clock(dir.path(), StoreConfig::default(), c.clone())
            .expect("opening reads nothing per segment");
        let reason = corrupt_naming(
            store.read_events(0, i64::MAX, None),
            &s,
            &format!("first read, cut at {cut}"),
        );
        assert!(!reason.is_empty());
        drop(store);
        check_reports(dir.path(), &s);
    }
}

/// A store of two sealed shards (communities c1 and c2, one day), 40 events each.
/// Returns each shard's segment file, absolute.
fn two_shard_store(dir: &Path, c: &Arc<ManualClock>) -> [std::path::PathBuf; 2] {
    let store = open(dir, c, StoreConfig::default());
    let batch: Vec<_> = (0..80)
        .map(|i| {
            let community = if i % 2 == 0 { "c1" } else { "c2" };
            ev(input(
                DAY0 + i * 60_000,
                community,
                (i % 4) as u32,
                "face",
                &format!("F{}", i % 7),
            ))
        })
        .collect();
    store.append(&batch).unwrap();
    store.seal_all().unwrap();
    let code = |k: sightline_storage::ShardKey| {
        store
            .dictionaries()
            .community(k.community)
            .unwrap()
            .to_string()
    };
    let mut files = [std::path::PathBuf::new(), std::path::PathBuf::new()];
    for s in store.shards() {
        let i = usize::from(code(s.key) == "c2");
        files[i] = store.segments(s.key).unwrap()[0].path().to_path_buf();
    }
    files
}

#[test]
fn a_damaged_segment_fails_the_first_query_touching_it_naming_it_and_the_rest_answers() {
    let c = clock();
    for damage in ["header", "truncated", "missing"] {
        let dir = tempfile::tempdir().unwrap();
        let [bad, good] = two_shard_store(dir.path(), &c);
        let original = std::fs::read(&bad).unwrap();
        match damage {
            "header" => {
                let mut b = original.clone();
                b[40] ^= 0x04; // the subject count, under the header's checksum
                std::fs::write(&bad, b).unwrap();
            }
            "truncated" => std::fs::write(&bad, &original[..original.len() - 9]).unwrap(),
            _ => std::fs::remove_file(&bad).unwrap(),
        }
        let store = open(dir.path(), &c, StoreConfig::default());
        assert_eq!(
            store.segments_mapped(),
            (0, 2),
            "{damage}: open maps nothing"
        );
        // Listing and sizes come from the manifest: no file is read.
        assert_eq!(store.shards().len(), 2);
        assert_eq!(store.segments_mapped().0, 0);
        let (c1, c2) = {
            let d = store.dictionaries();
            (d.community_id("c1").unwrap(), d.community_id("c2").unwrap())
        };
        // The healthy shard answers, whole.
        let mut n = 0;
        store
            .scan_range(0, i64::MAX, Some(&[c2]), |_| n += 1)
            .unwrap();
        assert_eq!(n, 40, "{damage}");
        let events = store.read_events(0, i64::MAX, Some(&[c2])).unwrap();
        assert_eq!(events.len(), 40);
        assert_eq!(
            store.segments_mapped().0,
            1,
            "{damage}: only c2's segment mapped"
        );
        // Every read touching the damaged one fails, naming its file; never a panic,
        // never an answer without its rows.
        let name_it = |r: Result<(), sightline_storage::StorageError>, what: &str| match r {
            Err(StorageError::Corrupt { path, .. }) => assert_eq!(path, bad, "{damage} {what}"),
            Err(StorageError::Io { path, .. }) if damage == "missing" => {
                assert_eq!(path, bad, "{damage} {what}")
            }
            other => panic!("{damage} {what}: expected an error naming {bad:?}, got {other:?}"),
        };
        name_it(
            store.scan_range(0, i64::MAX, Some(&[c1]), |_| {}),
            "scan_range",
        );
        name_it(
            store.scan_range(0, i64::MAX, None, |_| {}),
            "scan_range all",
        );
        name_it(
            store.read_events(0, i64::MAX, None).map(drop),
            "read_events",
        );
        let key = store
            .shards()
            .into_iter()
            .find(|s| s.key.community == c1)
            .unwrap()
            .key;
        let subject = store
            .dictionaries()
            .subject_id(sightline_storage::Kind::Face, "F0")
            .unwrap();
        name_it(
            store.subject_runs([key], subject, 0, i64::MAX).map(drop),
            "subject_runs",
        );
        name_it(
            store
                .count_subject([key], subject, 0, i64::MAX, None)
                .map(drop),
            "count_subject",
        );
        name_it(
            store.rows_after(0, u64::MAX, |_| {}).map(drop),
            "rows_after",
        );
        name_it(store.event_by_seq(1).map(drop), "event_by_seq");
        name_it(store.segments(key).map(drop), "segments");
        // A duplicate source id looked for in the damaged shard's sealed segment.
        let late = ev(with_source(
            input(DAY0 + 7, "c1", 1, "face", "F1"),
            "S-late",
        ));
        name_it(store.append(&[late]).map(drop), "append");
        // The healthy shard still answers after the failures.
        store.scan_range(0, i64::MAX, Some(&[c2]), |_| {}).unwrap();
        // A failed open is not kept: with the file put back, the next read succeeds.
        std::fs::write(&bad, &original).unwrap();
        let mut n = 0;
        store
            .scan_range(0, i64::MAX, Some(&[c1]), |_| n += 1)
            .unwrap();
        assert_eq!(n, 40, "{damage}: read once the file is back");
        drop(store);
        assert!(sightline_storage::check(dir.path()).unwrap().ok());
        let _ = good;
    }
}

#[test]
fn a_segment_file_that_is_not_the_one_listed_is_refused_on_first_use() {
    // Another shard's file (valid, but not the one the manifest describes) put in
    // place of c1's: the first use compares its header with the manifest's facts.
    let c = clock();
    let dir = tempfile::tempdir().unwrap();
    let [c1_file, c2_file] = two_shard_store(dir.path(), &c);
    std::fs::copy(&c2_file, &c1_file).unwrap();
    let store = open(dir.path(), &c, StoreConfig::default());
    let reason = corrupt_naming(
        store.read_events(0, i64::MAX, None),
        &c1_file,
        "read_events",
    );
    assert!(reason.contains("manifest"), "{reason}");
    drop(store);
    check_reports(dir.path(), &c1_file);
}

#[test]
fn a_torn_dictionary_tail_is_dropped_with_the_events_that_never_committed() {
    let base = tempfile::tempdir().unwrap();
    let c = clock();
    {
        let store = open(base.path(), &c, StoreConfig::default());
        store
            .append(&[ev(input(DAY0, "c1", 1, "face", "F1"))])
            .unwrap();
    }
    let dict = base.path().join("dict.log");
    let mut bytes = std::fs::read(&dict).unwrap();
    bytes.extend_from_slice(&[20, 0, 0, 0, 1, 2]); // a record header cut short
    std::fs::write(&dict, &bytes).unwrap();
    let store = open(base.path(), &c, StoreConfig::default());
    assert!(store.recovery().dict_torn_tail.is_some());
    assert_eq!(subjects(&store), ["F1"]);
}

#[test]
fn check_finds_every_kind_of_damage_without_changing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    {
        let store = open(dir.path(), &c, StoreConfig::default());
        for i in 0..50 {
            store
                .append(&[ev(input(
                    DAY0 + i * 1000,
                    "c1",
                    (i % 3) as u32,
                    "face",
                    &format!("F{i}"),
                ))])
                .unwrap();
        }
        c.set(DAY0 + DAY + 3 * HOUR);
        store.maintain().unwrap();
        store
            .append(&[ev(input(DAY0 + DAY + 5000, "c1", 1, "face", "LIVE"))])
            .unwrap();
    }
    let clean = sightline_storage::check(dir.path()).unwrap();
    assert!(clean.ok(), "{:?}", clean.problems);
    assert_eq!((clean.segments, clean.segment_events), (1, 50));
    assert!(
        clean.wal_records >= 1 && clean.dict_records >= 1,
        "{clean:?}"
    );
    assert!(clean.torn_tails.is_empty() && clean.orphans.is_empty());

    // Damage a segment, tear the WAL's tail, leave an orphan: reported, not repaired.
    let seg = &files_with_ext(&dir.path().join("segments"), "seg")[0];
    let mut bytes = std::fs::read(seg).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(seg, &bytes).unwrap();
    let wal = files_with_ext(&dir.path().join("wal"), "wal")
        .pop()
        .unwrap();
    let mut w = std::fs::read(&wal).unwrap();
    w.extend_from_slice(&[7, 0, 0, 0, 1, 2]);
    std::fs::write(&wal, &w).unwrap();
    let orphan = seg.with_file_name("99999.seg");
    std::fs::write(&orphan, b"half made").unwrap();
    let before: Vec<(std::path::PathBuf, Vec<u8>)> = [seg.clone(), wal.clone(), orphan.clone()]
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();

    let r = sightline_storage::check(dir.path()).unwrap();
    assert!(!r.ok());
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    assert!(
        r.problems[0].contains(&seg.display().to_string()),
        "{}",
        r.problems[0]
    );
    assert_eq!(r.torn_tails, std::slice::from_ref(&wal));
    assert_eq!(r.orphans, std::slice::from_ref(&orphan));
    for (p, b) in before {
        assert_eq!(std::fs::read(&p).unwrap(), b, "{} was changed", p.display());
    }

    // A store in use is refused rather than checked while it changes.
    std::fs::write(seg, {
        bytes[at] ^= 0x40;
        &bytes
    })
    .unwrap();
    std::fs::remove_file(&orphan).unwrap();
    let _store = open(dir.path(), &c, StoreConfig::default());
    let e = sightline_storage::check(dir.path()).unwrap_err();
    assert!(e.to_string().contains("open"), "{e}");
}
