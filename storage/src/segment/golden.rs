//! The golden segments: fixed rows whose encoding is checked in at
//! `storage/tests/data/golden-v5.seg` (what this build writes), so that a change to
//! the byte layout is deliberate and visible in review, and at `golden-v1.seg` (what
//! builds before attribute columns wrote), `golden-v2.seg` (before bucketed source
//! ids and per-block kind codes), `golden-v3.seg` (attribute chunks without a
//! column directory, 14 spare fingerprint bits) and `golden-v4.seg` (source-id
//! entries naming each event), which must still read back the same.
//! Rewrite the current one with `SIGHTLINE_BLESS=1 cargo test -p sightline-storage
//! golden` after bumping the format version (see `storage/FORMAT.md`).

use std::path::PathBuf;

use super::{build_segment, Segment};
use crate::attr_codec::encode_attrs;
use crate::event::{AttrValue, Attrs, SOURCE_ID};
use crate::memtable::StoredRow;
use crate::row::kd_pack;
use crate::{Direction, Kind};

const SPAN_START_MS: i64 = 1_630_425_600_000; // 2021-09-01T00:00+08:00
const COMMUNITY: u32 = 3;
const SPAN: i32 = 18_871;

fn golden_path(version: u32) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/data/golden-v{version}.seg"))
}

/// 300 rows over three devices: two devices fill more than two blocks, and some rows
/// carry attributes and source ids.
fn golden_rows() -> Vec<StoredRow> {
    (0..300u64)
        .map(|i| {
            let mut attrs = Attrs::new();
            if i % 7 == 0 {
                attrs.insert("plate_color".into(), AttrValue::Str("blue".into()));
                attrs.insert(
                    "confidence".into(),
                    AttrValue::Float(0.5 + i as f64 / 1000.0),
                );
            }
            let source_id = (i % 5 == 0).then(|| format!("src-{i:04}"));
            if let Some(s) = &source_id {
                attrs.insert(SOURCE_ID.into(), AttrValue::Str(s.clone()));
            }
            let (kind, direction) = match i % 3 {
                0 => (Kind::Vehicle, Direction::In),
                1 => (Kind::Face, Direction::Out),
                _ => (Kind::Access, Direction::Unknown),
            };
            StoredRow {
                seq: 1000 + i,
                ts_ms: SPAN_START_MS + (i as i64 * 263_111) % 86_400_000,
                device: (i % 3) as u32 + 10,
                subject: (i * 31 % 47) as u32,
                kd: kd_pack(kind, direction),
                attrs: encode_attrs(&attrs).into(),
                source_id: source_id.map(Into::into),
            }
        })
        .collect()
}

#[test]
fn golden_segment_bytes_are_unchanged_and_read_back() {
    let mut rows = golden_rows();
    let bytes = build_segment(COMMUNITY, SPAN, SPAN_START_MS, &mut rows);
    let path = golden_path(super::format::VERSION);
    if std::env::var_os("SIGHTLINE_BLESS").is_some() {
        std::fs::write(&path, &bytes).expect("write golden file");
    }
    let golden = std::fs::read(&path).expect("golden file is checked in");
    assert!(
        golden == bytes,
        "segment encoding changed ({} bytes now, {} in {}): bump the format version",
        bytes.len(),
        golden.len(),
        path.display()
    );
    reads_back(&path, super::format::VERSION);
}

/// Files of version 1 (attributes row by row) read back the same rows and attributes.
#[test]
fn version_1_segments_still_read_back() {
    reads_back(&golden_path(1), 1);
}

/// Files of version 2 (32-bit source-id hashes, kd codes as they are) read back the
/// same rows, attributes and source ids.
#[test]
fn version_2_segments_still_read_back() {
    reads_back(&golden_path(2), 2);
}

/// Files of version 3 (attribute chunks walked column by column, 14 spare
/// fingerprint bits) read back the same rows, attributes and source ids.
#[test]
fn version_3_segments_still_read_back() {
    reads_back(&golden_path(3), 3);
}

/// Files of version 4 (source-id entries naming each event's ordinal, not its
/// group's) read back the same rows, attributes and source ids.
#[test]
fn version_4_segments_still_read_back() {
    reads_back(&golden_path(4), 4);
}

/// Compacting old files writes the current version with the same rows, attributes
/// and source ids: the merged file is the one built from the rows.
#[test]
fn old_versions_merge_into_the_current_one() {
    for version in [1, 2, 3, 4] {
        let seg = std::sync::Arc::new(Segment::open(&golden_path(version)).expect("opens"));
        seg.verify().expect("verifies");
        let mut merged = Vec::new();
        super::write_segment(
            COMMUNITY,
            SPAN,
            SPAN_START_MS,
            &super::MergedSegments::new(&[seg]),
            &mut merged,
        )
        .expect("merges");
        let mut rows = golden_rows();
        let built = build_segment(COMMUNITY, SPAN, SPAN_START_MS, &mut rows);
        assert!(merged == built, "version {version} merged differs");
    }
}

fn reads_back(path: &std::path::Path, version: u32) {
    let seg = Segment::open(path).expect("golden file opens");
    assert_eq!(seg.version(), version);
    seg.verify().expect("verifies");
    seg.verify_attrs()
        .expect("every attribute chunk checks whole");
    let meta = seg.meta();
    assert_eq!(
        (meta.community, meta.span, meta.events),
        (COMMUNITY, SPAN, 300)
    );
    let mut expected = golden_rows();
    expected.sort_by_key(|r| (r.device, r.ts_ms, r.seq));
    let mut seen = 0;
    seg.for_each(|ordinal, row| {
        let e = &expected[ordinal as usize];
        assert_eq!(row, e.row(COMMUNITY));
        assert_eq!(&seg.attr_bytes(ordinal).expect("attrs")[..], &e.attrs[..]);
        assert_eq!(
            seg.attrs(ordinal).expect("attrs decode"),
            crate::attr_codec::decode_attrs(&e.attrs).expect("attrs")
        );
        seen += 1;
    });
    assert_eq!(seen, 300);
    for i in 0..300u64 {
        let expected = (i % 5 == 0).then_some(1000 + i);
        let id = format!("src-{i:04}");
        assert_eq!(seg.find_source_id(&id).expect("lookup"), expected, "{id}");
    }
    assert_eq!(seg.find_source_id("src-9999").expect("lookup"), None);
}

/// The source-id index keeps at most 32 bits of each hash (from version 4: 7 for these
/// few ids): ids whose hashes agree in them are told apart by comparing the ids.
#[test]
fn source_ids_whose_32_bit_hashes_collide_are_told_apart() {
    use crate::row::fnv1a;
    // Two ids of one 32-bit hash (found by search: about 2^16 tries).
    let mut seen = std::collections::HashMap::new();
    let (a, b) = (0u64..)
        .find_map(|i| {
            let id = format!("id-{i}");
            seen.insert(fnv1a(id.as_bytes()) as u32, id.clone())
                .map(|other| (other, id))
        })
        .expect("a collision");
    let segment = |ids: &[&String]| {
        let mut rows: Vec<StoredRow> = golden_rows().into_iter().take(10).collect();
        for (row, id) in rows.iter_mut().zip(ids) {
            let mut attrs = crate::attr_codec::decode_attrs(&row.attrs).unwrap();
            attrs.insert(SOURCE_ID.into(), AttrValue::Str(id.to_string()));
            row.attrs = encode_attrs(&attrs).into();
            row.source_id = Some(id.as_str().into());
        }
        let seqs: Vec<u64> = rows.iter().map(|r| r.seq).collect();
        let bytes = build_segment(COMMUNITY, SPAN, SPAN_START_MS, &mut rows);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("collide.seg");
        std::fs::write(&path, bytes).unwrap();
        (Segment::open(&path).unwrap(), seqs, dir)
    };
    let (seg, seqs, _dir) = segment(&[&a]);
    assert_eq!(seg.find_source_id(&a).unwrap(), Some(seqs[0]));
    assert_eq!(seg.find_source_id(&b).unwrap(), None, "{a} and {b} collide");
    let (seg, seqs, _dir) = segment(&[&a, &b]);
    assert_eq!(seg.find_source_id(&a).unwrap(), Some(seqs[0]));
    assert_eq!(seg.find_source_id(&b).unwrap(), Some(seqs[1]));
}

/// A current (version 5) file whose attribute chunks are damaged behind a checksum made to
/// match (a bug, or a file written by hand): every byte of the attr data flipped in
/// turn, the section's and the header's checksums fixed up. Opening and reading every
/// event's attributes never panics; each read either answers or is a `Corrupt` error
/// naming the file, and a read that answers gives a row encoding that decodes.
/// Checking the file whole (`verify_attrs`, what `sightline check` runs) refuses every
/// flip the reads of rows refuse.
#[test]
fn damaged_chunks_behind_a_matching_checksum_are_errors_naming_the_file() {
    let mut rows = golden_rows();
    let good = build_segment(COMMUNITY, SPAN, SPAN_START_MS, &mut rows);
    let (refused, len) = damage_attr_data(&good, |b| b ^ 0x5a);
    // A flip inside a packed value usually reads as another value (only the checksum
    // tells those apart); flips of lengths, codes, headers and the directory are
    // refused (counted: 258 of the 723 bytes).
    assert!(refused * 4 > len, "{refused} of {len} flips refused");
    // Other changes of each byte: the high bit (a chunk's row count past 128, widths
    // past 64), every bit, and zero.
    for change in [|b: u8| b ^ 0x80, |b: u8| b ^ 0xff, |_| 0xff, |_| 0] {
        damage_attr_data(&good, change);
    }
}

#[test]
fn damaged_chunks_of_a_version_3_file_are_errors_too() {
    let good = std::fs::read(golden_path(3)).unwrap();
    for change in [
        |b: u8| b ^ 0x5a,
        |b: u8| b ^ 0x80,
        |b: u8| b ^ 0xff,
        |_| 0xff,
        |_| 0,
    ] {
        damage_attr_data(&good, change);
    }
}

/// Changes each byte of `good`'s attribute data by `change` in turn (the checksums
/// made to match), then reads every event's attributes both ways and checks the file:
/// never a panic, every error a `Corrupt` naming the file, both reads agreeing, and
/// the check refusing whatever a read refused. Returns (files the check refused,
/// bytes of attribute data).
fn damage_attr_data(good: &[u8], change: fn(u8) -> u8) -> (usize, usize) {
    use super::format::{get_u64, put_u32, HEADER_CRC_AT, HEADER_FIELDS, SECTION_ENTRY};
    let entry = HEADER_FIELDS + super::format::Section::AttrData as usize * SECTION_ENTRY;
    let (start, len) = (
        get_u64(good, entry) as usize,
        get_u64(good, entry + 8) as usize,
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.seg");
    let mut refused = 0;
    for at in start..start + len {
        let mut bytes = good.to_vec();
        bytes[at] = change(bytes[at]);
        if bytes[at] == good[at] {
            continue;
        }
        let crc = crc32fast::hash(&bytes[start..start + len]);
        put_u32(&mut bytes, entry + 16, crc);
        let header_crc = crc32fast::hash(&bytes[..HEADER_CRC_AT]);
        put_u32(&mut bytes, HEADER_CRC_AT, header_crc);
        std::fs::write(&path, &bytes).unwrap();
        let seg = Segment::open(&path).expect("only the attr data changed");
        let mut reads_refused = false;
        for o in 0..seg.meta().events {
            match seg.attr_bytes(o) {
                Ok(row) => {
                    crate::attr_codec::decode_attrs(&row).expect("a row encoding");
                }
                Err(crate::StorageError::Corrupt { path: p, .. }) => {
                    assert_eq!(p, path, "byte {at}");
                    reads_refused = true;
                }
                Err(e) => panic!("byte {at}: {e:?}"),
            }
            let mut scratch = crate::RowScratch::default();
            let visited = seg.visit_attrs(o, &mut scratch, |_, _| {});
            assert_eq!(visited.is_ok(), seg.attr_bytes(o).is_ok(), "byte {at}");
        }
        match seg.verify_attrs() {
            Ok(()) => assert!(
                !reads_refused,
                "byte {at}: a read refused, the check did not"
            ),
            Err(crate::StorageError::Corrupt { path: p, .. }) => {
                assert_eq!(p, path);
                refused += 1;
            }
            Err(e) => panic!("byte {at}: {e:?}"),
        }
    }
    (refused, len)
}
