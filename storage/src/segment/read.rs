//! Reading a segment: open and verify, then zero-copy access through the memory map.

use std::ops::Range;
use std::path::{Path, PathBuf};

use super::build::block_data_len;
use super::format::*;
use super::source_index::{self, Layout};
use crate::attr_columns::{
    check_chunk, decode_row, visit_row_out, ChunkLayout, RowScratch, CHUNK_ROWS,
};
use crate::bitpack::{packed_len, BitReader, MAX_BITS};
use crate::error::{Result, StorageError};
use crate::event::Attrs;
use crate::row::{fnv1a, kd_unpack, Row};
use crate::{Direction, Kind};

/// What the header says about a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentMeta {
    pub community: u32,
    pub span: i32,
    pub span_start_ms: i64,
    pub events: u32,
    pub blocks: u32,
    pub subjects: u32,
    pub source_ids: u32,
    pub min_seq: u64,
    pub max_seq: u64,
    pub min_ts_ms: i64,
    pub max_ts_ms: i64,
}

/// A packed array inside the map: where it is, its width and base.
#[derive(Clone, Copy, Debug)]
struct Packed {
    at: usize,
    len: usize,
    bits: u8,
    base: u64,
}

/// An immutable, memory-mapped, verified segment file.
pub struct Segment {
    path: PathBuf,
    map: crate::io::FileBytes,
    meta: SegmentMeta,
    sections: [Range<usize>; SECTION_COUNT],
    subjects: Packed,
    posting_offsets: Packed,
    posting_ordinals: Packed,
    /// Version 1: per event, where its attributes start in the attr data. Version 2:
    /// per chunk of [`CHUNK_ROWS`] events, where its columns start.
    attr_offsets: Packed,
    /// Version 2: the source-id index's ordinals (its hashes are 4 bytes each before).
    /// Versions 3 to 5: its groups of ordinals (in 3 and 4 each an ordinal), with the
    /// bucket directory and the fingerprints' rests.
    source_ordinals: Packed,
    source_starts: Packed,
    source_rests: Packed,
    source_layout: Option<Layout>,
    version: u32,
    /// `(device, first ordinal, end ordinal)` of each device's run, ascending by
    /// device; built from the block directory on first use (a few entries).
    device_runs: std::sync::OnceLock<Vec<(u32, u32, u32)>>,
    /// Every [`SUBJECT_SAMPLE`]th value of the subjects array (as stored, less its
    /// base: a subject id's difference to the least fits 32 bits), read off it on
    /// first use: a subject's search halves this plain array, then a stretch of at
    /// most `SUBJECT_SAMPLE` packed values.
    subject_samples: std::sync::OnceLock<Box<[u32]>>,
    /// Each section's checksum from the section table, for the sections verified on
    /// first read.
    section_crcs: [u32; SECTION_COUNT],
    /// The outcome of [`Segment::verify_rows`], computed once: `None` when the row
    /// data verified, else where and what is wrong.
    rows_checked: std::sync::OnceLock<Option<(usize, String)>>,
    /// The outcome of [`Segment::verify_attr_data`], computed once.
    attrs_checked: std::sync::OnceLock<Option<(usize, String)>>,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("path", &self.path)
            .field("meta", &self.meta)
            .finish()
    }
}

/// One block's columns, decoded lazily from the map.
#[derive(Clone, Copy)]
struct BlockView<'a> {
    device: u32,
    first_ordinal: u32,
    count: usize,
    ts_min: u32,
    ts_max: u32,
    subj_min: u32,
    seq_min: u64,
    ts: BitReader<'a>,
    subj: BitReader<'a>,
    seq: BitReader<'a>,
    kd: BitReader<'a>,
    /// Version 3: the block's kind and direction codes (bit `c` for code `c`), and a
    /// kd column value is a position among them. Zero before: the value is the code.
    kd_set: u32,
    /// Row `i`'s time is `ts_base + ts_line(ts_slope, i) + ts.get(i)` ms after the span
    /// start: `ts_base` is `ts_min` less row 0's residual when the ts column holds
    /// residuals from the block's line (version 5), else `ts_min` and the slope 0.
    ts_base: i64,
    ts_slope: u64,
}

impl BlockView<'_> {
    /// Row `i`'s time, in ms after the span start.
    #[inline(always)]
    fn ts_off(&self, i: usize) -> i64 {
        self.ts_base + ts_line(self.ts_slope, i) as i64 + self.ts.get(i) as i64
    }

    /// Row `i`'s kind and direction code.
    #[inline]
    fn kd_code(&self, i: usize) -> u8 {
        kd_code(&self.kd, self.kd_set, i)
    }
}

/// Row `i`'s kind and direction code in a block whose kd column is `kd` and whose codes
/// are `kd_set` (see [`BlockView::kd_set`]).
#[inline]
fn kd_code(kd: &BitReader<'_>, kd_set: u32, i: usize) -> u8 {
    let at = kd.get(i);
    if kd_set == 0 {
        return at as u8;
    }
    // The code at position `at`: drop the `at` lowest set bits (a block rarely
    // holds more than two or three codes).
    let mut set = kd_set;
    for _ in 0..at {
        set &= set.wrapping_sub(1);
    }
    set.trailing_zeros() as u8
}

/// What a walk over postings reads of one block ([`Segment::posting_rows`]): the ts, seq
/// and kind+direction columns, not the subject column nor the bounds that only scans
/// by time or subject need. Building it is a third cheaper than a [`BlockView`], and a
/// subject's events in a segment touch a new block every two or three events.
#[derive(Clone, Copy)]
struct PostingBlock<'a> {
    device: u32,
    first_ordinal: u32,
    /// The ordinal after the block's last.
    end_ordinal: u32,
    /// The time of row 0's place on the ts line: the span's start plus the block's
    /// `ts_min`, less row 0's residual from the line (zero unless the ts column holds
    /// residuals: [`BlockView::ts_base`]).
    ts_base: i64,
    ts_slope: u64,
    seq_min: u64,
    ts: BitReader<'a>,
    seq: BitReader<'a>,
    kd: BitReader<'a>,
    kd_set: u32,
}

const EMPTY: Packed = Packed {
    at: 0,
    len: 0,
    bits: 0,
    base: 0,
};

/// The sections whose checksum opening a segment verifies: the small ones every read
/// needs (a few KiB a segment). The others (block data, posting ordinals, source ids,
/// attr data: nearly all of the bytes) are verified on first read, once
/// ([`Segment::verify_rows`], [`Segment::verify_attr_data`]).
const VERIFIED_AT_OPEN: [Section; 4] = [
    Section::Blocks,
    Section::Subjects,
    Section::PostingOffsets,
    Section::AttrOffsets,
];

impl Segment {
    /// Maps `path` and verifies its header, section table, block directory and small
    /// sections (checksums and structural bounds); the row data and attributes are
    /// verified on their first read ([`Segment::verify_rows`],
    /// [`Segment::verify_attr_data`]; [`Segment::verify`] does both now). A damaged
    /// file is a [`StorageError::Corrupt`] naming the file, the offset and what is
    /// wrong.
    pub fn open(path: &Path) -> Result<Segment> {
        Segment::open_with(&crate::io::OsIo, path)
    }

    /// [`Segment::open`] through the store's file-system seam.
    pub fn open_with(io: &dyn crate::io::FileIo, path: &Path) -> Result<Segment> {
        let map = io.map(path).map_err(|e| StorageError::io(path, e))?;
        let mut seg = Segment {
            path: path.to_path_buf(),
            map,
            device_runs: std::sync::OnceLock::new(),
            subject_samples: std::sync::OnceLock::new(),
            section_crcs: [0; SECTION_COUNT],
            rows_checked: std::sync::OnceLock::new(),
            attrs_checked: std::sync::OnceLock::new(),
            version: VERSION,
            meta: SegmentMeta {
                community: 0,
                span: 0,
                span_start_ms: 0,
                events: 0,
                blocks: 0,
                subjects: 0,
                source_ids: 0,
                min_seq: 0,
                max_seq: 0,
                min_ts_ms: 0,
                max_ts_ms: 0,
            },
            sections: Default::default(),
            subjects: Packed {
                at: 0,
                len: 0,
                bits: 0,
                base: 0,
            },
            posting_offsets: Packed {
                at: 0,
                len: 0,
                bits: 0,
                base: 0,
            },
            posting_ordinals: Packed {
                at: 0,
                len: 0,
                bits: 0,
                base: 0,
            },
            attr_offsets: Packed {
                at: 0,
                len: 0,
                bits: 0,
                base: 0,
            },
            source_ordinals: EMPTY,
            source_starts: EMPTY,
            source_rests: EMPTY,
            source_layout: None,
        };
        seg.verify_header()?;
        seg.verify_blocks()?;
        seg.verify_postings_and_attrs()?;
        Ok(seg)
    }

    fn corrupt(&self, offset: usize, reason: impl Into<String>) -> StorageError {
        StorageError::corrupt(&self.path, offset as u64, reason)
    }

    fn verify_header(&mut self) -> Result<()> {
        let b = &self.map[..];
        if b.len() < HEADER_LEN {
            return Err(self.corrupt(
                b.len(),
                format!(
                    "truncated: {} bytes, the header alone is {HEADER_LEN}",
                    b.len()
                ),
            ));
        }
        if b[0..8] != MAGIC {
            return Err(self.corrupt(0, "not a segment file (bad magic bytes)"));
        }
        let version = get_u32(b, 8);
        if !(1..=VERSION).contains(&version) {
            return Err(self.corrupt(
                8,
                format!("format version {version}, this build reads 1 to {VERSION}"),
            ));
        }
        self.version = version;
        if crc32fast::hash(&b[..HEADER_CRC_AT]) != get_u32(b, HEADER_CRC_AT) {
            return Err(self.corrupt(HEADER_CRC_AT, "header checksum mismatch"));
        }
        if get_u32(b, HEADER_CRC_AT + 4) != 0 {
            return Err(self.corrupt(HEADER_CRC_AT + 4, "reserved header bytes are not zero"));
        }
        self.meta = SegmentMeta {
            community: get_u32(b, 16),
            span: get_u32(b, 20) as i32,
            span_start_ms: get_u64(b, 24) as i64,
            events: get_u32(b, 32),
            blocks: get_u32(b, 36),
            subjects: get_u32(b, 40),
            source_ids: get_u32(b, 44),
            min_seq: get_u64(b, 48),
            max_seq: get_u64(b, 56),
            min_ts_ms: get_u64(b, 64) as i64,
            max_ts_ms: get_u64(b, 72) as i64,
        };
        for s in Section::ALL {
            let at = HEADER_FIELDS + s as usize * SECTION_ENTRY;
            let off = get_u64(b, at);
            let len = get_u64(b, at + 8);
            let crc = get_u32(b, at + 16);
            let end = off
                .checked_add(len)
                .filter(|&e| off >= HEADER_LEN as u64 && e <= b.len() as u64);
            let Some(end) = end else {
                return Err(self.corrupt(
                    at,
                    format!(
                        "{} section {off}+{len} lies outside the file of {} bytes",
                        s.name(),
                        b.len()
                    ),
                ));
            };
            let range = off as usize..end as usize;
            if VERIFIED_AT_OPEN.contains(&s) && crc32fast::hash(&b[range.clone()]) != crc {
                return Err(self.corrupt(
                    off as usize,
                    format!("{} section checksum mismatch", s.name()),
                ));
            }
            self.section_crcs[s as usize] = crc;
            self.sections[s as usize] = range;
        }
        // Every byte is accounted for: sections follow each other in order, separated
        // only by padding of less than 8 bytes (zeros: checked with the row data, on
        // first read, since it lies between the large sections), and the last one
        // ends the file.
        let mut end = HEADER_LEN;
        for s in Section::ALL {
            let r = &self.sections[s as usize];
            if r.start < end || r.start - end >= 8 {
                return Err(self.corrupt(
                    end,
                    format!("unexpected bytes before the {} section", s.name()),
                ));
            }
            end = r.end;
        }
        if end != b.len() {
            return Err(self.corrupt(
                end,
                format!("{} unexpected bytes after the last section", b.len() - end),
            ));
        }
        let m = self.meta;
        if m.events == 0 || m.min_seq > m.max_seq || m.min_ts_ms > m.max_ts_ms {
            return Err(self.corrupt(32, "header counts or ranges are inconsistent"));
        }
        Ok(())
    }

    fn section(&self, s: Section) -> &[u8] {
        &self.map[self.sections[s as usize].clone()]
    }

    fn verify_blocks(&self) -> Result<()> {
        let dir = self.section(Section::Blocks);
        let dir_at = self.sections[Section::Blocks as usize].start;
        if dir.len() != self.meta.blocks as usize * BLOCK_ENTRY {
            return Err(self.corrupt(
                dir_at,
                format!(
                    "block directory is {} bytes for {} blocks",
                    dir.len(),
                    self.meta.blocks
                ),
            ));
        }
        let data = self.section(Section::Data);
        let mut next_ordinal = 0u64;
        let mut prev: Option<(u32, u32)> = None;
        for i in 0..self.meta.blocks as usize {
            let e = &dir[i * BLOCK_ENTRY..(i + 1) * BLOCK_ENTRY];
            let at = dir_at + i * BLOCK_ENTRY;
            let count = get_u16(e, block::COUNT) as usize;
            let bits = [
                e[block::TS_BITS],
                e[block::SUBJ_BITS],
                e[block::SEQ_BITS],
                e[block::KD_BITS],
            ];
            if count == 0
                || count > BLOCK_ROWS
                || bits.iter().zip(MAX_BLOCK_BITS).any(|(b, m)| *b > m)
            {
                return Err(self.corrupt(
                    at,
                    format!("block {i}: impossible count {count} or widths {bits:?}"),
                ));
            }
            if self.version >= 5 && e[block::TS_LINE] > 1 {
                return Err(self.corrupt(
                    at,
                    format!("block {i}: unknown ts encoding {}", e[block::TS_LINE]),
                ));
            }
            if get_u32(e, block::FIRST_ORDINAL) as u64 != next_ordinal {
                return Err(self.corrupt(
                    at,
                    format!("block {i}: first ordinal does not follow the previous block"),
                ));
            }
            next_ordinal += count as u64;
            let key = (get_u32(e, block::DEVICE), get_u32(e, block::TS_MIN));
            if get_u32(e, block::TS_MAX) < key.1 || prev.is_some_and(|p| p > key) {
                return Err(self.corrupt(
                    at,
                    format!("block {i}: blocks are not sorted by (device, ts)"),
                ));
            }
            prev = Some(key);
            // Every event of the block is at or after its `ts_min`: the header's earliest
            // time must be at or before it (a merge decodes a segment only once it
            // reaches that time: `SubjectRun::ts_lower_bound`).
            if self.meta.span_start_ms + i64::from(key.1) < self.meta.min_ts_ms {
                return Err(self.corrupt(
                    at,
                    format!("block {i}: starts before the segment's earliest time"),
                ));
            }
            // And at or before its `ts_max`, which must be at or before the header's
            // latest time (a trajectory groups runs by `SubjectRun::ts_upper_bound`;
            // each row is checked against its block's `ts_max` on first read).
            if self.meta.span_start_ms + i64::from(get_u32(e, block::TS_MAX)) > self.meta.max_ts_ms
            {
                return Err(self.corrupt(
                    at,
                    format!("block {i}: ends after the segment's latest time"),
                ));
            }
            let off = get_u64(e, block::DATA_OFF);
            let len = get_u32(e, block::DATA_LEN) as u64;
            if len as usize != block_data_len(count, bits)
                || off
                    .checked_add(len)
                    .is_none_or(|end| end > data.len() as u64)
            {
                return Err(self.corrupt(
                    at,
                    format!("block {i}: data {off}+{len} does not fit the data section"),
                ));
            }
        }
        if next_ordinal != self.meta.events as u64 {
            return Err(self.corrupt(
                dir_at,
                format!(
                    "blocks hold {next_ordinal} events, the header says {}",
                    self.meta.events
                ),
            ));
        }
        Ok(())
    }

    /// Verifies what opening left to the first read of rows: each block's data
    /// (checksum, and every kind and direction code known), the posting ordinals, the
    /// source-id index and the padding between sections. Runs once; later calls give
    /// the first outcome again. Every read of rows through the store calls it first, so
    /// a damaged file is a [`StorageError::Corrupt`] naming it, never a wrong answer.
    pub fn verify_rows(&self) -> Result<()> {
        match self.rows_checked.get_or_init(|| self.check_rows().err()) {
            None => Ok(()),
            Some((at, reason)) => Err(self.corrupt(*at, reason.clone())),
        }
    }

    /// Verifies the attr data section's checksum, once (as [`Segment::verify_rows`]);
    /// [`Segment::attr_bytes`] calls it before reading attributes.
    pub fn verify_attr_data(&self) -> Result<()> {
        let check = || {
            let r = self.sections[Section::AttrData as usize].clone();
            let crc = self.section_crcs[Section::AttrData as usize];
            (crc32fast::hash(&self.map[r.clone()]) != crc)
                .then(|| (r.start, "attr data section checksum mismatch".to_string()))
        };
        match self.attrs_checked.get_or_init(check) {
            None => Ok(()),
            Some((at, reason)) => Err(self.corrupt(*at, reason.clone())),
        }
    }

    /// Verifies every byte now: [`Segment::verify_rows`] and
    /// [`Segment::verify_attr_data`] (what opening a segment did before they were
    /// deferred; `sightline check`, compaction and a segment just written use it).
    pub fn verify(&self) -> Result<()> {
        self.verify_rows()?;
        self.verify_attr_data()
    }

    /// The checks of [`Segment::verify_rows`]: the first failure's offset and reason.
    fn check_rows(&self) -> std::result::Result<(), (usize, String)> {
        let b = &self.map[..];
        let mut end = HEADER_LEN;
        for s in Section::ALL {
            let r = &self.sections[s as usize];
            if b[end..r.start].iter().any(|&x| x != 0) {
                return Err((
                    end,
                    format!("unexpected bytes before the {} section", s.name()),
                ));
            }
            end = r.end;
        }
        for s in [Section::PostingOrdinals, Section::SourceIds] {
            let r = self.sections[s as usize].clone();
            if crc32fast::hash(&b[r.clone()]) != self.section_crcs[s as usize] {
                return Err((r.start, format!("{} section checksum mismatch", s.name())));
            }
        }
        self.check_source_index()?;
        // Subjects are sorted and distinct: a search in a file that is not (by a bug, or
        // by hand) would miss a subject's events without a word.
        let subjects = self.meta.subjects as usize;
        if let Some(i) =
            (1..subjects).find(|&i| self.get(self.subjects, i) <= self.get(self.subjects, i - 1))
        {
            let at = self.sections[Section::Subjects as usize].start;
            return Err((at, format!("subject {i} is not above the one before it")));
        }
        // Every posting names an event (walks cast ordinals to u32 and index blocks by them).
        let events = self.meta.events as usize;
        if let Some(i) =
            (0..events).find(|&i| self.get(self.posting_ordinals, i) >= self.meta.events as u64)
        {
            let at = self.sections[Section::PostingOrdinals as usize].start;
            return Err((at, format!("posting {i} names no event")));
        }
        let dir = self.section(Section::Blocks);
        let data = self.section(Section::Data);
        let data_at = self.sections[Section::Data as usize].start;
        for i in 0..self.meta.blocks as usize {
            let e = &dir[i * BLOCK_ENTRY..(i + 1) * BLOCK_ENTRY];
            let off = get_u64(e, block::DATA_OFF) as usize;
            let len = get_u32(e, block::DATA_LEN) as usize;
            if crc32fast::hash(&data[off..off + len]) != get_u32(e, block::CRC) {
                return Err((data_at + off, format!("block {i}: data checksum mismatch")));
            }
            // A file written with a bad kind or direction code (by a bug, or by hand)
            // would otherwise read as a vehicle of unknown direction.
            let b = self.block(i);
            if self.version >= 3 {
                let codes = get_u32(e, block::KD_CODES).count_ones() as u64;
                if let Some(r) = (0..b.count).find(|&r| b.kd.get(r) >= codes) {
                    return Err((
                        data_at + off,
                        format!(
                            "block {i}: row {r} names kind and direction code {} of {codes}",
                            b.kd.get(r)
                        ),
                    ));
                }
            }
            // Every row's time within the block's (so within the segment's): reads add
            // a row's value to the block's base unchecked. A residual from the line
            // could also make a time before `ts_min`.
            if let Some(r) = (0..b.count).find(|&r| b.ts_off(r) > i64::from(b.ts_max)) {
                return Err((
                    data_at + off,
                    format!("block {i}: row {r} lies after the block's latest time"),
                ));
            }
            if let Some(r) = (0..b.count).find(|&r| b.ts_off(r) < i64::from(b.ts_min)) {
                return Err((
                    data_at + off,
                    format!("block {i}: row {r} lies before the block's earliest time"),
                ));
            }
            // Rows in time order: a device's time window is found by binary search.
            if let Some(r) = (1..b.count).find(|&r| b.ts_off(r) < b.ts_off(r - 1)) {
                return Err((
                    data_at + off,
                    format!("block {i}: row {r} lies before the row before it"),
                ));
            }
            // Every row's seq within the segment's range (reads add a row's offset to
            // the block's least seq unchecked).
            if let Some(r) = (0..b.count).find(|&r| {
                b.seq_min < self.meta.min_seq
                    || b.seq_min
                        .checked_add(b.seq.get(r))
                        .is_none_or(|seq| seq > self.meta.max_seq)
            }) {
                return Err((
                    data_at + off,
                    format!("block {i}: row {r}'s seq lies outside the segment's seq range"),
                ));
            }
            if let Some(kd) = (0..b.count).map(|r| b.kd_code(r)).find(|&kd| {
                Kind::from_code(kd >> 2).is_none() || Direction::from_code(kd & 3).is_none()
            }) {
                return Err((
                    data_at + off,
                    format!("block {i}: kind and direction code {kd} is not one this build knows"),
                ));
            }
        }
        Ok(())
    }

    /// Versions 3 to 5: the bucket directory rises from 0 to the entry count, entries
    /// (fingerprint, group) rise strictly within a bucket, and every entry's group (its
    /// ordinal in 3 and 4) names events.
    fn check_source_index(&self) -> std::result::Result<(), (usize, String)> {
        let Some(l) = self.source_layout else {
            return Ok(());
        };
        let at = self.sections[Section::SourceIds as usize].start;
        let mut start = 0u64;
        if self.get(self.source_starts, 0) != 0 {
            return Err((at, "source id buckets do not start at 0".into()));
        }
        for k in 0..l.buckets() {
            let end = self.get(self.source_starts, k + 1);
            if end < start || end > l.entries as u64 {
                return Err((at, format!("source id bucket {k} ends at {end}")));
            }
            // (rest, group) strictly rising: a lookup's matches are each one group,
            // read once (a file written by hand could otherwise repeat an entry to
            // make one lookup read a chunk again and again).
            let entry = |i: usize| {
                (
                    self.get(self.source_rests, i),
                    self.get(self.source_ordinals, i),
                )
            };
            for i in start as usize + 1..end as usize {
                if entry(i) <= entry(i - 1) {
                    return Err((at, format!("source id entry {i} out of order")));
                }
            }
            start = end;
        }
        if start != l.entries as u64 {
            return Err((
                at,
                format!("source id buckets end at {start} of {}", l.entries),
            ));
        }
        let groups = l.groups(self.meta.events as usize) as u64;
        if let Some(i) = (0..l.entries).find(|&i| self.get(self.source_ordinals, i) >= groups) {
            return Err((at, format!("source id entry {i} names no event")));
        }
        Ok(())
    }

    fn packed(&self, s: Section, n: usize) -> Result<Packed> {
        let b = self.section(s);
        let at = self.sections[s as usize].start;
        if b.len() < PACKED_HEADER {
            return Err(self.corrupt(at, format!("{} section is too short", s.name())));
        }
        let bits = b[0];
        if bits > MAX_BITS || b.len() < PACKED_HEADER + packed_len(n, bits) {
            return Err(self.corrupt(
                at,
                format!(
                    "{} section: {n} values of {bits} bits do not fit {} bytes",
                    s.name(),
                    b.len()
                ),
            ));
        }
        let base = get_u64(b, 8);
        // Every value is its bits plus the base: the largest must not pass u64.
        let widest = if bits >= 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        };
        if base.checked_add(widest).is_none() {
            return Err(self.corrupt(
                at,
                format!(
                    "{} section: base {base} overflows with {bits} bits",
                    s.name()
                ),
            ));
        }
        Ok(Packed {
            at: at + PACKED_HEADER,
            len: b.len() - PACKED_HEADER,
            bits,
            base,
        })
    }

    fn verify_postings_and_attrs(&mut self) -> Result<()> {
        let events = self.meta.events as usize;
        let subjects = self.meta.subjects as usize;
        self.subjects = self.packed(Section::Subjects, subjects)?;
        self.posting_offsets = self.packed(Section::PostingOffsets, subjects + 1)?;
        self.posting_ordinals = self.packed(Section::PostingOrdinals, events)?;
        let attr_entries = match self.version {
            1 => events,
            _ => events.div_ceil(CHUNK_ROWS),
        };
        self.attr_offsets = self.packed(Section::AttrOffsets, attr_entries + 1)?;
        let last_posting = self.get(self.posting_offsets, subjects);
        if last_posting != events as u64 {
            return Err(self.corrupt(
                self.posting_offsets.at,
                format!("postings cover {last_posting} events, the header says {events}"),
            ));
        }
        let attr_len = self.section(Section::AttrData).len() as u64;
        if self.get(self.attr_offsets, attr_entries) != attr_len {
            return Err(self.corrupt(
                self.attr_offsets.at,
                "attr offsets do not end at the attr data's end",
            ));
        }
        let src = self.section(Section::SourceIds);
        let n = self.meta.source_ids as usize;
        let src_at = self.sections[Section::SourceIds as usize].start;
        let wrong_size = || self.corrupt(src_at, "source id section has the wrong size");
        match self.version {
            1 => {
                if src.len() != n * SOURCE_ENTRY {
                    return Err(wrong_size());
                }
            }
            _ if n == 0 => {
                if !src.is_empty() {
                    return Err(wrong_size());
                }
            }
            2 => {
                let packed = src.get(n * 4..).ok_or_else(wrong_size)?;
                let bits = *packed.first().ok_or_else(wrong_size)?;
                if bits > MAX_BITS || packed.len() != PACKED_HEADER + packed_len(n, bits) {
                    return Err(wrong_size());
                }
                self.source_ordinals = Packed {
                    at: src_at + n * 4 + PACKED_HEADER,
                    len: packed_len(n, bits),
                    bits,
                    base: get_u64(packed, 8),
                };
            }
            _ => {
                // Every width follows from the counts and the two widths up front; the
                // section must be exactly as long as they make it.
                // Byte 2 is the group bits from version 5 on, zero before.
                let (f, b, g) = match src.get(..source_index::HEAD) {
                    Some(h) if h[3..].iter().all(|&z| z == 0) => (h[0], h[1], h[2]),
                    _ => return Err(wrong_size()),
                };
                if !(1..=32).contains(&f) || b > f || b > source_index::MAX_BUCKET_BITS {
                    return Err(self.corrupt(
                        src_at,
                        format!("source id section: impossible widths {f} and {b}"),
                    ));
                }
                // Version 5's groups are its attribute chunks: a match reads one chunk.
                let expected = match self.version {
                    ..=4 => 0,
                    _ => source_index::GROUP_BITS,
                };
                if g != expected {
                    return Err(self.corrupt(
                        src_at,
                        format!(
                            "source id section: groups of 2^{g} events in a version {} file",
                            self.version
                        ),
                    ));
                }
                let layout = Layout::new(f, b, g, n, events);
                let [starts, rests, ordinals, end] = layout.offsets();
                if src.len() != end {
                    return Err(wrong_size());
                }
                let packed = |from: usize, to: usize, bits: u8| Packed {
                    at: src_at + from,
                    len: to - from,
                    bits,
                    base: 0,
                };
                self.source_starts = packed(starts, rests, layout.start_bits);
                self.source_rests = packed(rests, ordinals, layout.rest_bits);
                self.source_ordinals = packed(ordinals, end, layout.group_width);
                self.source_layout = Some(layout);
            }
        }
        Ok(())
    }

    /// Value `i` of the packed array `p`, for `i` below its count (callers index by
    /// counts open checked: subjects, posting offsets, ordinals below the event
    /// count). Read straight from the map: the 8 bytes at the value's first byte may
    /// run past the array into the file's next bytes, which the mask drops (a value's
    /// bits all lie inside its array); at the map's end the missing bytes read as
    /// zeros, as [`BitReader`] reads them.
    #[inline]
    fn get(&self, p: Packed, i: usize) -> u64 {
        if p.bits == 0 {
            return p.base;
        }
        let bit = i * p.bits as usize;
        let byte = p.at + bit / 8;
        let word = match self.map.get(byte..byte + 8) {
            Some(s) => u64::from_le_bytes(s.try_into().expect("slice of 8")),
            None => {
                let mut buf = [0u8; 8];
                let tail = self.map.get(byte..p.at + p.len).unwrap_or(&[]);
                buf[..tail.len().min(8)].copy_from_slice(&tail[..tail.len().min(8)]);
                u64::from_le_bytes(buf)
            }
        };
        let mask = if p.bits >= 64 {
            u64::MAX
        } else {
            (1u64 << p.bits) - 1
        };
        ((word >> (bit % 8)) & mask) + p.base
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn meta(&self) -> &SegmentMeta {
        &self.meta
    }
    /// Size of the file in bytes.
    pub fn file_bytes(&self) -> usize {
        self.map.len()
    }
    /// Bytes of each block-data column: (ts, subject, seq, kind+direction).
    pub fn column_bytes(&self) -> [usize; 4] {
        let dir = self.section(Section::Blocks);
        let mut out = [0usize; 4];
        for i in 0..self.meta.blocks as usize {
            let e = &dir[i * BLOCK_ENTRY..(i + 1) * BLOCK_ENTRY];
            let count = get_u16(e, block::COUNT) as usize;
            for (c, at) in [
                block::TS_BITS,
                block::SUBJ_BITS,
                block::SEQ_BITS,
                block::KD_BITS,
            ]
            .into_iter()
            .enumerate()
            {
                out[c] += packed_len(count, e[at]);
            }
        }
        out
    }

    /// Bytes of each section, by name, for accounting.
    pub fn section_bytes(&self) -> Vec<(&'static str, usize)> {
        Section::ALL
            .iter()
            .map(|&s| (s.name(), self.sections[s as usize].len()))
            .collect()
    }

    fn block(&self, i: usize) -> BlockView<'_> {
        let e = &self.section(Section::Blocks)[i * BLOCK_ENTRY..(i + 1) * BLOCK_ENTRY];
        let count = get_u16(e, block::COUNT) as usize;
        let bits = [
            e[block::TS_BITS],
            e[block::SUBJ_BITS],
            e[block::SEQ_BITS],
            e[block::KD_BITS],
        ];
        let off = get_u64(e, block::DATA_OFF) as usize;
        let data = &self.section(Section::Data)[off..off + get_u32(e, block::DATA_LEN) as usize];
        let mut cols = [&data[..0]; 4];
        let mut at = 0;
        for (c, &b) in bits.iter().enumerate() {
            let len = packed_len(count, b);
            cols[c] = &data[at..at + len];
            at += len;
        }
        let ts = BitReader::new(cols[0], bits[0]);
        let (ts_min, ts_max) = (get_u32(e, block::TS_MIN), get_u32(e, block::TS_MAX));
        let (ts_shift, ts_slope) = self.ts_line_of(e, &ts, count);
        BlockView {
            device: get_u32(e, block::DEVICE),
            first_ordinal: get_u32(e, block::FIRST_ORDINAL),
            count,
            ts_min,
            ts_max,
            subj_min: get_u32(e, block::SUBJ_MIN),
            seq_min: get_u64(e, block::SEQ_MIN),
            ts_base: i64::from(ts_min) - ts_shift,
            ts_slope,
            ts,
            subj: BitReader::new(cols[1], bits[1]),
            seq: BitReader::new(cols[2], bits[2]),
            kd: BitReader::new(cols[3], bits[3]),
            kd_set: match self.version {
                1 | 2 => 0,
                _ => get_u32(e, block::KD_CODES),
            },
        }
    }

    /// Block `i` as a posting walk reads it (the columns and bounds of [`Segment::block`]
    /// that [`Segment::posting_rows`] uses, the same values).
    #[inline(always)]
    fn posting_block(&self, i: usize) -> PostingBlock<'_> {
        // One bounds check for the entry: its fields are at fixed offsets in it.
        let e = self.entry(i);
        let count = get_u16(e, block::COUNT) as usize;
        let off = get_u64(e, block::DATA_OFF) as usize;
        // The block's data and the file's bytes after it (open checked that the data
        // lies inside the data section, so this is in the map).
        let data = &self.map[self.sections[Section::Data as usize].start + off..];
        // Columns in order: ts, subject, seq, kd. Each reader gets the bytes from its
        // column on (it reads its `count` values only; the block's columns were
        // checked at open to fit its data): a value's 8-byte read then lies in the map
        // near the block's end too (the bits past the value are masked off), never
        // taking the reader's path for a short tail.
        let seq_at = packed_len(count, e[block::TS_BITS]) + packed_len(count, e[block::SUBJ_BITS]);
        let kd_at = seq_at + packed_len(count, e[block::SEQ_BITS]);
        let first_ordinal = get_u32(e, block::FIRST_ORDINAL);
        let ts = BitReader::new(data, e[block::TS_BITS]);
        let (ts_shift, ts_slope) = self.ts_line_of(e, &ts, count);
        PostingBlock {
            device: get_u32(e, block::DEVICE),
            first_ordinal,
            end_ordinal: first_ordinal + count as u32,
            ts_base: self.meta.span_start_ms + i64::from(get_u32(e, block::TS_MIN)) - ts_shift,
            ts_slope,
            seq_min: get_u64(e, block::SEQ_MIN),
            ts,
            seq: BitReader::new(&data[seq_at..], e[block::SEQ_BITS]),
            kd: BitReader::new(&data[kd_at..], e[block::KD_BITS]),
            kd_set: match self.version {
                1 | 2 => 0,
                _ => get_u32(e, block::KD_CODES),
            },
        }
    }

    /// A block's ts line: row 0's residual (what the line's start lies below
    /// `ts_min`) and the slope; `(0, 0)` when its ts column holds offsets from
    /// `ts_min` (before version 5, and blocks written so in it).
    #[inline(always)]
    fn ts_line_of(&self, e: &[u8], ts: &BitReader<'_>, count: usize) -> (i64, u64) {
        if self.version < 5 || e[block::TS_LINE] == 0 {
            return (0, 0);
        }
        (
            ts.get(0) as i64,
            ts_slope(get_u32(e, block::TS_MIN), get_u32(e, block::TS_MAX), count),
        )
    }

    #[inline]
    fn row_in(&self, b: &BlockView<'_>, i: usize) -> Row {
        self.row_at(b, i, b.ts_off(i))
    }

    /// Row `i` of `b`, whose time (ms after the span start) the caller has read.
    #[inline]
    fn row_at(&self, b: &BlockView<'_>, i: usize, ts_off: i64) -> Row {
        let (kind, direction) = kd_unpack(b.kd_code(i));
        let rank = b.subj_min as usize + b.subj.get(i) as usize;
        Row {
            seq: b.seq_min + b.seq.get(i),
            ts_ms: self.meta.span_start_ms + ts_off,
            community: self.meta.community,
            device: b.device,
            subject: self.get(self.subjects, rank) as u32,
            kind,
            direction,
        }
    }

    /// Block `i`'s directory entry.
    #[inline(always)]
    fn entry(&self, i: usize) -> &[u8; BLOCK_ENTRY] {
        self.section(Section::Blocks)[i * BLOCK_ENTRY..]
            .first_chunk()
            .expect("block index below the verified block count")
    }

    /// Block `i`'s least seq and the most its seq column adds to it (from its entry:
    /// a block whose range misses is skipped without decoding it).
    #[inline]
    fn entry_seqs(&self, i: usize) -> (u64, u64) {
        let e = self.entry(i);
        let bits = e[block::SEQ_BITS];
        let most = if bits >= 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        };
        (get_u64(e, block::SEQ_MIN), most)
    }

    /// Every event with its ordinal, in (device, ts) order.
    pub fn for_each(&self, mut f: impl FnMut(u32, Row)) {
        for bi in 0..self.meta.blocks as usize {
            let b = self.block(bi);
            for i in 0..b.count {
                f(b.first_ordinal + i as u32, self.row_in(&b, i));
            }
        }
    }

    /// The event with sequence number `seq`, with its ordinal, if this segment holds
    /// it. Blocks whose sequence range (minimum, plus what their bit width can add)
    /// excludes `seq` are skipped on their directory entry.
    pub fn find_seq(&self, seq: u64) -> Option<(u32, Row)> {
        if seq < self.meta.min_seq || seq > self.meta.max_seq {
            return None;
        }
        for bi in 0..self.meta.blocks as usize {
            let (seq_min, most) = self.entry_seqs(bi);
            if seq < seq_min || seq - seq_min > most {
                continue;
            }
            let b = self.block(bi);
            let want = seq - b.seq_min;
            if let Some(i) = (0..b.count).find(|&i| b.seq.get(i) == want) {
                return Some((b.first_ordinal + i as u32, self.row_in(&b, i)));
            }
        }
        None
    }

    /// Events with `after < seq <= through`, with their ordinals, in (device, ts)
    /// order; blocks whose sequence range misses it are skipped on their directory entry.
    pub fn for_each_in_seq_range(&self, after: u64, through: u64, mut f: impl FnMut(u32, Row)) {
        if self.meta.max_seq <= after || self.meta.min_seq > through {
            return;
        }
        for bi in 0..self.meta.blocks as usize {
            let (seq_min, most) = self.entry_seqs(bi);
            if seq_min > through || seq_min.saturating_add(most) <= after {
                continue;
            }
            let b = self.block(bi);
            for i in 0..b.count {
                let seq = b.seq_min + b.seq.get(i);
                if seq > after && seq <= through {
                    f(b.first_ordinal + i as u32, self.row_in(&b, i));
                }
            }
        }
    }

    /// Events with `after < seq <= bound`, where `f` returns the bound after each event
    /// it is given (starting at `through`; it may only fall): a change feed keeping the
    /// lowest sequence numbers. A block whose sequence range lies past the bound is
    /// skipped on its directory entry, and a row past it is not decoded. Returns the
    /// rows whose sequence number was looked at.
    pub fn for_each_in_seq_range_below(
        &self,
        after: u64,
        through: u64,
        mut f: impl FnMut(u32, Row) -> u64,
    ) -> u64 {
        let mut bound = through;
        let mut looked = 0u64;
        if self.meta.max_seq <= after || self.meta.min_seq > bound {
            return 0;
        }
        for bi in 0..self.meta.blocks as usize {
            let (seq_min, most) = self.entry_seqs(bi);
            if seq_min > bound || seq_min.saturating_add(most) <= after {
                continue;
            }
            let b = self.block(bi);
            for i in 0..b.count {
                looked += 1;
                let seq = b.seq_min + b.seq.get(i);
                if seq > after && seq <= bound {
                    let next = f(b.first_ordinal + i as u32, self.row_in(&b, i));
                    debug_assert!(next <= bound, "the bound only falls");
                    bound = next;
                }
            }
        }
        looked
    }

    /// Events with `from_ms <= ts < to_ms`, in (device, ts) order; blocks outside the
    /// range are skipped on their directory entry alone.
    pub fn for_each_in_range(&self, from_ms: i64, to_ms: i64, mut f: impl FnMut(u32, Row)) {
        let (lo, hi) = self.offset_range(from_ms, to_ms);
        if lo >= hi {
            return;
        }
        for bi in 0..self.meta.blocks as usize {
            let e = self.entry(bi);
            let (ts_min, ts_max) = (get_u32(e, block::TS_MIN), get_u32(e, block::TS_MAX));
            if (ts_max as i64) < lo || ts_min as i64 >= hi {
                continue;
            }
            let b = self.block(bi);
            for i in 0..b.count {
                let t = b.ts_off(i);
                if t >= lo && t < hi {
                    f(b.first_ordinal + i as u32, self.row_at(&b, i, t));
                }
            }
        }
    }

    /// Events of `device` with `from_ms <= ts < to_ms`, in ts order: a binary search
    /// over the block directory, then a binary search inside the first block.
    pub fn for_each_in_device_window(
        &self,
        device: u32,
        from_ms: i64,
        to_ms: i64,
        mut f: impl FnMut(u32, Row),
    ) {
        let (lo, hi) = self.offset_range(from_ms, to_ms);
        if lo >= hi {
            return;
        }
        // First block whose (device, ts_max) >= (device, lo).
        let n = self.meta.blocks as usize;
        let (mut a, mut z) = (0usize, n);
        while a < z {
            let mid = (a + z) / 2;
            let e = self.entry(mid);
            if (get_u32(e, block::DEVICE), get_u32(e, block::TS_MAX) as i64) < (device, lo) {
                a = mid + 1;
            } else {
                z = mid;
            }
        }
        for bi in a..n {
            let e = self.entry(bi);
            if get_u32(e, block::DEVICE) != device || get_u32(e, block::TS_MIN) as i64 >= hi {
                break;
            }
            let b = self.block(bi);
            // Rows are sorted by ts inside the block: find the first >= lo.
            let (mut x, mut y) = (0usize, b.count);
            while x < y {
                let mid = (x + y) / 2;
                if b.ts_off(mid) < lo {
                    x = mid + 1;
                } else {
                    y = mid;
                }
            }
            for i in x..b.count {
                let t = b.ts_off(i);
                if t >= hi {
                    return;
                }
                f(b.first_ordinal + i as u32, self.row_at(&b, i, t));
            }
        }
    }

    /// `[from_ms, to_ms)` as offsets from the span start, clamped.
    fn offset_range(&self, from_ms: i64, to_ms: i64) -> (i64, i64) {
        let s = self.meta.span_start_ms;
        (
            from_ms.saturating_sub(s).max(0),
            to_ms.saturating_sub(s).min(u32::MAX as i64 + 1),
        )
    }

    /// The event at `ordinal` (position in (device, ts) order).
    pub fn row(&self, ordinal: u32) -> Option<Row> {
        if ordinal >= self.meta.events {
            return None;
        }
        let b = self.block(self.block_of(ordinal, 0));
        Some(self.row_in(&b, (ordinal - b.first_ordinal) as usize))
    }

    /// The events of the subject with dictionary id `subject`, in ordinal order, with
    /// their ordinals. Walks the posting list once, decoding each block's header only
    /// when the next ordinal leaves the current block.
    pub fn for_each_of_subject(&self, subject: u32, mut f: impl FnMut(u32, Row)) {
        let mut current: Option<(usize, BlockView<'_>)> = None;
        for ordinal in self.subject_ordinals(subject) {
            if ordinal >= self.meta.events {
                break; // verified at open; never with a checked file
            }
            let inside = |b: &BlockView<'_>| {
                ordinal >= b.first_ordinal && ordinal < b.first_ordinal + b.count as u32
            };
            if !current.as_ref().is_some_and(|(_, b)| inside(b)) {
                // Ordinals ascend: the block is at or after the current one.
                let from = current.as_ref().map_or(0, |(i, _)| *i);
                let a = self.block_of(ordinal, from);
                current = Some((a, self.block(a)));
            }
            let (_, b) = current.as_ref().expect("set above");
            f(
                ordinal,
                self.row_in(b, (ordinal - b.first_ordinal) as usize),
            );
        }
    }

    /// Ordinals of the events of the subject with dictionary id `subject`, ascending.
    pub fn subject_ordinals(&self, subject: u32) -> impl Iterator<Item = u32> + '_ {
        self.postings(subject).map(move |i| self.posting_ordinal(i))
    }

    /// Where the subject's ordinals are in the posting list (empty when absent).
    fn postings(&self, subject: u32) -> std::ops::Range<usize> {
        let a = self.subject_rank(subject);
        if a < self.meta.subjects as usize && self.get(self.subjects, a) == subject as u64 {
            self.get(self.posting_offsets, a) as usize
                ..self.get(self.posting_offsets, a + 1) as usize
        } else {
            0..0
        }
    }

    /// The first position in the subjects array whose id is `>= subject` (the count
    /// of subjects if none): the samples ([`Segment::subject_samples`]) are searched
    /// first, then the stretch of the packed array between two of them. A segment's
    /// thousand subjects cost a search of a plain array of ~60 and four probes of the
    /// packed one, not ten.
    fn subject_rank(&self, subject: u32) -> usize {
        let (p, n) = (self.subjects, self.meta.subjects as usize);
        // Values are `base` plus what is stored: compare the stored bits with the
        // target less the base, read by one reader made for the search.
        let Some(target) = u64::from(subject).checked_sub(p.base) else {
            return 0;
        };
        if p.bits == 0 {
            return if target == 0 { 0 } else { n };
        }
        let values = BitReader::new(self.map.get(p.at..p.at + p.len).unwrap_or(&[]), p.bits);
        // (Values wider than subject ids need, in a damaged file, are searched
        // without samples: found as the array says.)
        if p.bits > 32 {
            return first_false(0..n, |i| values.get(i) < target);
        }
        let samples = self.subject_samples.get_or_init(|| {
            (0..n)
                .step_by(SUBJECT_SAMPLE)
                .map(|i| values.get(i) as u32)
                .collect()
        });
        // Samples `..k` are below the target: the answer is past sample `k - 1`'s
        // position and at or before sample `k`'s (the end when there is none).
        let k = samples.partition_point(|&v| u64::from(v) < target);
        if k == 0 {
            return 0;
        }
        let (lo, hi) = ((k - 1) * SUBJECT_SAMPLE + 1, (k * SUBJECT_SAMPLE).min(n));
        first_false(lo..hi, |i| values.get(i) < target)
    }

    /// Ordinals of `device`'s events: one contiguous run, since rows are sorted by
    /// (device, ts). Found by binary search on the block directory.
    pub fn device_ordinals(&self, device: u32) -> std::ops::Range<u32> {
        let runs = self.device_runs();
        match runs.binary_search_by_key(&device, |r| r.0) {
            Ok(i) => runs[i].1..runs[i].2,
            Err(_) => 0..0,
        }
    }

    /// The events of `subject` with `from_ms <= ts < to_ms`, as ranges of posting
    /// indices (for [`Segment::posting_row`]), one per device, by device. Rows are sorted
    /// by (device, ts, seq), so each range is one device's events in (ts, seq) order:
    /// what a merge into time order needs. Found by binary searches (posting list,
    /// device runs, timestamps): only the rows the searches probe are decoded.
    pub fn subject_device_runs(
        &self,
        subject: u32,
        from_ms: i64,
        to_ms: i64,
    ) -> Vec<(u32, std::ops::Range<usize>)> {
        let mut out = Vec::new();
        self.subject_device_runs_into(subject, from_ms, to_ms, &mut out);
        out
    }

    /// [`Segment::subject_device_runs`], appended to `out` (a caller reading many
    /// segments fills one list).
    pub fn subject_device_runs_into(
        &self,
        subject: u32,
        from_ms: i64,
        to_ms: i64,
        out: &mut Vec<(u32, std::ops::Range<usize>)>,
    ) {
        let postings = self.postings(subject);
        self.split_by_device(postings, from_ms, to_ms, |d, r| out.push((d, r)));
    }

    /// The events of `subject` with `from_ms <= ts < to_ms` as ranges of posting
    /// indices, appended to `out`. When the segment lies inside the range and the
    /// subject has at most `whole_max` events here, the whole list is one range, with
    /// no device (`None`): several devices' events in (device, ts, seq) order, found by
    /// one search and told apart as they are decoded ([`Segment::posting_rows`] gives
    /// each row's device). Otherwise one range per device, as
    /// [`Segment::subject_device_runs`] gives them.
    pub fn subject_runs_into(
        &self,
        subject: u32,
        from_ms: i64,
        to_ms: i64,
        whole_max: usize,
        out: &mut Vec<(Option<u32>, std::ops::Range<usize>)>,
    ) {
        let postings = self.postings(subject);
        if postings.is_empty() {
            return;
        }
        let inside = from_ms <= self.meta.min_ts_ms && self.meta.max_ts_ms < to_ms;
        if inside && postings.len() <= whole_max {
            out.push((None, postings));
        } else {
            self.split_by_device(postings, from_ms, to_ms, |d, r| out.push((Some(d), r)));
        }
    }

    /// `postings` (one subject's) cut into one range per device, each cut to
    /// `[from_ms, to_ms)` by binary search, handed to `f` by device.
    fn split_by_device(
        &self,
        postings: std::ops::Range<usize>,
        from_ms: i64,
        to_ms: i64,
        mut f: impl FnMut(u32, std::ops::Range<usize>),
    ) {
        let runs = self.device_runs();
        let ordinal = |i: usize| self.posting_ordinal(i);
        let ts = |i: usize| {
            let mut hint = 0;
            self.posting_row(i, &mut hint).1.ts_ms
        };
        // A segment inside the range needs no search by time.
        let inside = from_ms <= self.meta.min_ts_ms && self.meta.max_ts_ms < to_ms;
        let mut i = postings.start;
        while i < postings.end {
            let o = ordinal(i);
            let Some(&(device, _, end)) = runs.get(runs.partition_point(|r| r.2 <= o)) else {
                break; // ordinals are verified at open; never with a checked file
            };
            let j = first_false(i..postings.end, |k| ordinal(k) < end);
            let (lo, hi) = match inside {
                true => (i, j),
                false => {
                    let lo = first_false(i..j, |k| ts(k) < from_ms);
                    (lo, first_false(lo..j, |k| ts(k) < to_ms))
                }
            };
            if lo < hi {
                f(device, lo..hi);
            }
            i = j.max(i + 1);
        }
    }

    /// The event at posting index `i` (of some subject's list, as
    /// [`Segment::subject_device_runs`] gives them), with its ordinal. `block` is a
    /// block index at or before the event's block (0 when unknown); it is moved to the
    /// event's block, so a caller walking ascending indices searches little.
    pub fn posting_row(&self, i: usize, block: &mut usize) -> (u32, Row) {
        let ordinal = self.posting_ordinal(i);
        let blocks = self.meta.blocks as usize;
        let dir = self.section(Section::Blocks);
        let first = |b: usize| get_u32(&dir[b * BLOCK_ENTRY..], block::FIRST_ORDINAL);
        let hint = (*block).min(blocks.saturating_sub(1));
        let from = if first(hint) <= ordinal { hint } else { 0 };
        // The hint's block, or the last block starting at or before the event.
        let holds = |b: usize| b + 1 >= blocks || first(b + 1) > ordinal;
        *block = match holds(from) {
            true => from,
            false => self.block_of(ordinal, from),
        };
        let b = self.block(*block);
        (
            ordinal,
            self.row_in(&b, ordinal.saturating_sub(b.first_ordinal) as usize),
        )
    }

    /// The events at posting indices `range` (one subject's, ascending, as
    /// [`Segment::subject_device_runs`] gives them), appended to `out` with their
    /// ordinals, in posting order: one walk over the postings, each block's view built
    /// once, the subject (`subject`, the list's own) not decoded again. What
    /// [`Segment::posting_row`] gives one at a time, for a whole run.
    pub fn posting_rows(
        &self,
        range: std::ops::Range<usize>,
        subject: u32,
        out: &mut Vec<(Row, u32)>,
    ) -> Result<()> {
        if range.is_empty() || self.meta.blocks == 0 {
            return Ok(());
        }
        let p = self.posting_ordinals;
        let ordinals = BitReader::new(&self.map[p.at..p.at + p.len], p.bits);
        let ordinal = |i: usize| (ordinals.get(i) + p.base) as u32;
        let blocks = self.meta.blocks as usize;
        let (events, start) = (self.meta.events, range.start);
        let dir = self.section(Section::Blocks);
        let first = |b: usize| get_u32(&dir[b * BLOCK_ENTRY..], block::FIRST_ORDINAL);
        let mut bi = self.block_of(ordinal(start), 0);
        let mut b = self.posting_block(bi);
        // The least ordinal the next posting may have.
        let mut least = 0u32;
        out.reserve(range.len());
        for i in range {
            let o = ordinal(i);
            // A subject's ordinals rise and stay below the event count; open checks
            // the lists' offsets, not every ordinal, so a damaged list is refused here
            // rather than read as other events.
            if o >= events || o < least {
                return Err(self.corrupt(
                    p.at,
                    format!("posting {i}: ordinal {o} out of order or past {events} events"),
                ));
            }
            least = o + 1;
            if o >= b.end_ordinal && bi + 1 < blocks {
                // Most often the next block; else searched for.
                bi = match bi + 2 >= blocks || first(bi + 2) > o {
                    true => bi + 1,
                    false => self.block_of(o, bi + 1),
                };
                b = self.posting_block(bi);
            }
            let at = o.saturating_sub(b.first_ordinal) as usize;
            let (kind, direction) = kd_unpack(kd_code(&b.kd, b.kd_set, at));
            out.push((
                Row {
                    seq: b.seq_min + b.seq.get(at),
                    ts_ms: b.ts_base + ts_line(b.ts_slope, at) as i64 + b.ts.get(at) as i64,
                    community: self.meta.community,
                    device: b.device,
                    subject,
                    kind,
                    direction,
                },
                o,
            ));
        }
        Ok(())
    }

    /// The index of the block holding `ordinal`, searching from block `from` (which
    /// starts at or before it): the last block starting at or before it.
    ///
    /// Looked for where it should be: blocks hold [`BLOCK_ROWS`] rows but a device's
    /// last, so the block at the ordinal's share of the blocks is off by at most the
    /// partial blocks before it (a few, where few devices are light). The entries from
    /// that guess on are read one after another ([`BLOCK_WALK`] at most, adjacent lines
    /// the hardware fetches ahead), then in growing steps from there and by halves
    /// between the last two (a guess far off costs about what a search from the start
    /// did). A binary search from the start reads five or six lines of the directory,
    /// each waiting for the one before: a heavy subject's rows are one or two in each
    /// of hundreds of segments, and with cold caches those waits were a third of the
    /// rows' reading. (Open checked that blocks' first ordinals rise by their counts
    /// from 0, so each way finds the same block.)
    pub(super) fn block_of(&self, ordinal: u32, from: usize) -> usize {
        let dir = self.section(Section::Blocks);
        let blocks = self.meta.blocks as usize;
        let first = |b: usize| get_u32(&dir[b * BLOCK_ENTRY..], block::FIRST_ORDINAL);
        if from + 1 >= blocks {
            return from;
        }
        let starts_at_or_before = |b: usize| first(b) <= ordinal;
        let mut b = self.block_guess(ordinal, blocks).clamp(from, blocks - 1);
        if starts_at_or_before(b) {
            // The block is `b` or after it.
            for _ in 0..BLOCK_WALK {
                if b + 1 >= blocks || !starts_at_or_before(b + 1) {
                    return b;
                }
                b += 1;
            }
            // Growing steps to a block past it (or the end), then halves.
            let mut step = BLOCK_WALK;
            let mut past = b + step;
            while past < blocks && starts_at_or_before(past) {
                b = past;
                step *= 2;
                past = b + step;
            }
            first_false(b + 1..past.min(blocks), starts_at_or_before) - 1
        } else {
            // Before `b`, at `from` or after it (`from` starts at or before the ordinal).
            for _ in 0..BLOCK_WALK {
                b -= 1;
                if b <= from {
                    return from;
                }
                if starts_at_or_before(b) {
                    return b;
                }
            }
            // `b` starts after it: growing steps back to a block at or before it (or
            // `from`), then halves.
            let mut step = BLOCK_WALK;
            let mut at_or_before = b.saturating_sub(step).max(from);
            while at_or_before > from && !starts_at_or_before(at_or_before) {
                b = at_or_before;
                step *= 2;
                at_or_before = b.saturating_sub(step).max(from);
            }
            first_false(at_or_before + 1..b, starts_at_or_before) - 1
        }
    }

    /// The ordinal of the event at posting index `i` (see [`Segment::posting_row`]).
    pub fn posting_ordinal(&self, i: usize) -> u32 {
        self.get(self.posting_ordinals, i) as u32
    }

    /// (device, first ordinal, end ordinal) of each device's run of rows, by device;
    /// read off the block directory once.
    fn device_runs(&self) -> &[(u32, u32, u32)] {
        self.device_runs.get_or_init(|| {
            let dir = self.section(Section::Blocks);
            let mut runs: Vec<(u32, u32, u32)> = Vec::new();
            for i in 0..self.meta.blocks as usize {
                let e = &dir[i * BLOCK_ENTRY..];
                let (d, first) = (get_u32(e, block::DEVICE), get_u32(e, block::FIRST_ORDINAL));
                let end = first + get_u16(e, block::COUNT) as u32;
                match runs.last_mut() {
                    Some(run) if run.0 == d => run.2 = end,
                    _ => runs.push((d, first, end)),
                }
            }
            runs
        })
    }

    /// How many events the subject has here, at one of `devices` if given. Counts
    /// posting entries by binary search; decodes no rows.
    pub fn count_of_subject(&self, subject: u32, devices: Option<&[u32]>) -> u64 {
        let postings = self.postings(subject);
        let Some(devices) = devices else {
            return postings.len() as u64;
        };
        if postings.is_empty() {
            return 0;
        }
        // First posting index in `postings` whose ordinal is >= `ordinal`.
        let lower =
            |ordinal: u32| first_false(postings.clone(), |k| self.posting_ordinal(k) < ordinal);
        devices
            .iter()
            .map(|&d| {
                let run = self.device_ordinals(d);
                (lower(run.end) - lower(run.start)) as u64
            })
            .sum()
    }

    /// Distinct subject ids in this segment, ascending.
    pub fn subjects(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.meta.subjects as usize).map(move |i| self.get(self.subjects, i) as u32)
    }

    /// The entry of the attr offsets where `ordinal`'s attributes start: its own
    /// (version 1) or its chunk's (version 2).
    fn attr_entry(&self, ordinal: u32) -> usize {
        match self.version {
            1 => ordinal as usize,
            _ => ordinal as usize / CHUNK_ROWS,
        }
    }

    /// The attributes of the event at `ordinal` in the row encoding (see
    /// `attr_codec`): borrowed from a version 1 file, rebuilt from a version 2 file's
    /// columns (`attr_columns`) — the same bytes either way.
    pub fn attr_bytes(&self, ordinal: u32) -> Result<std::borrow::Cow<'_, [u8]>> {
        let (bytes, data_at) = self.attr_stored(ordinal)?;
        if self.version == 1 {
            return Ok(std::borrow::Cow::Borrowed(bytes));
        }
        let mut out = Vec::new();
        decode_row(
            self.chunk_layout(),
            bytes,
            ordinal as usize % CHUNK_ROWS,
            &mut out,
        )
        .map_err(|reason| self.attr_damage(ordinal, data_at, reason))?;
        Ok(out.into())
    }

    /// The attributes of the event at `ordinal` handed to `f` key by key in the row
    /// encoding's order, read straight from a version 2 file's columns (no row
    /// encoding is built; `scratch` is reused across calls). A version 2 or 3 chunk's
    /// row is read whole before `f` sees a pair; a version 4 chunk's values and a
    /// version 1 encoding are handed over as they are read, so `f` may see pairs
    /// before the damage is found (the caller discards what it made of them).
    pub fn visit_attrs(
        &self,
        ordinal: u32,
        scratch: &mut RowScratch,
        mut f: impl FnMut(&str, crate::AttrRef<'_>),
    ) -> Result<()> {
        self.visit_attrs_out(ordinal, scratch, |k, v| f(k, v.to_ref()))
    }

    /// [`Segment::visit_attrs`] with digit strings a format 4 chunk holds handed over as
    /// their ASCII digits ([`crate::AttrOut::Digits`]), for writers of JSON.
    pub fn visit_attrs_out(
        &self,
        ordinal: u32,
        scratch: &mut RowScratch,
        mut f: impl FnMut(&str, crate::AttrOut<'_>),
    ) -> Result<()> {
        let (bytes, data_at) = self.attr_stored(ordinal)?;
        let walked = match self.version {
            1 => crate::attr_codec::visit_attrs(bytes, |k, v| f(k, crate::AttrOut::Value(v))),
            _ => visit_row_out(
                self.chunk_layout(),
                bytes,
                ordinal as usize % CHUNK_ROWS,
                scratch,
                f,
            ),
        };
        walked.map_err(|reason| self.attr_damage(ordinal, data_at, reason))
    }

    /// How this file's attribute chunks are laid out (versions 2 and more).
    fn chunk_layout(&self) -> ChunkLayout {
        match self.version {
            ..=3 => ChunkLayout::Walked,
            _ => ChunkLayout::Direct,
        }
    }

    /// The stored bytes of the event's attributes (version 1) or of its chunk, with
    /// their offset in the file.
    fn attr_stored(&self, ordinal: u32) -> Result<(&[u8], usize)> {
        self.verify_attr_data()?;
        let data = self.section(Section::AttrData);
        let data_at = self.sections[Section::AttrData as usize].start;
        let entry = self.attr_entry(ordinal);
        let (a, z) = (
            self.get(self.attr_offsets, entry) as usize,
            self.get(self.attr_offsets, entry + 1) as usize,
        );
        data.get(a..z).map(|b| (b, data_at + a)).ok_or_else(|| {
            let what = match self.version {
                1 => format!("attributes of event {ordinal}"),
                _ => format!("attribute chunk {entry}"),
            };
            self.corrupt(data_at + a, format!("{what} past the attr data"))
        })
    }

    /// Asks for this segment's subject samples, reading where they are: a step
    /// before a search of its subjects ([`Segment::prefetch_subject`]). A trajectory
    /// reads one subject's few events in each of hundreds of segments; asked for some
    /// segments ahead, in steps each of which reads what the one before asked for,
    /// their misses overlap (`Store::subject_runs`).
    #[inline]
    pub fn prefetch_samples(&self) {
        if let Some(samples) = self.subject_samples.get() {
            crate::prefetch::slice(samples);
        }
    }

    /// Asks for what a search for `subject` reads past the samples: the stretch of the
    /// subjects array and of the lists' offsets the samples point to. (Asking for the
    /// block directory too, which the rows are found through, made no difference
    /// measured, for ~30 instructions a line.)
    #[inline]
    pub fn prefetch_subject(&self, subject: u32) {
        let (p, n) = (self.subjects, self.meta.subjects as usize);
        let (Some(samples), Some(target)) = (
            self.subject_samples.get(),
            u64::from(subject).checked_sub(p.base),
        ) else {
            return;
        };
        let k = samples.partition_point(|&v| u64::from(v) < target);
        let (lo, hi) = (
            k.saturating_sub(1) * SUBJECT_SAMPLE,
            (k * SUBJECT_SAMPLE + 1).min(n),
        );
        for q in [p, self.posting_offsets] {
            let bits = q.bits as usize;
            let (a, z) = (q.at + lo * bits / 8, q.at + (hi + 1) * bits / 8 + 8);
            crate::prefetch::lines(&self.map, a, z.min(q.at + q.len));
        }
    }

    /// Asks for the ordinals of the postings `range` (a subject's, as
    /// [`Segment::subject_runs_into`] gave them), read when its rows are.
    #[inline]
    pub fn prefetch_postings(&self, range: std::ops::Range<usize>) {
        let p = self.posting_ordinals;
        let bits = p.bits as usize;
        let (a, z) = (
            p.at.saturating_add(range.start.saturating_mul(bits) / 8),
            p.at.saturating_add(range.end.saturating_mul(bits) / 8 + 8),
        );
        crate::prefetch::lines(&self.map, a, z.min(p.at.saturating_add(p.len)));
    }

    /// Asks for the directory entry [`Segment::block_of`] reads first for the event at
    /// posting index `i` (reads the posting, which [`Segment::prefetch_postings`]
    /// asked for): the first of two steps before [`Segment::posting_rows`] reads it.
    /// A reader about to read the first events of several segments' runs calls this
    /// for each, then [`Segment::prefetch_posting_row`] for each, then reads: the
    /// misses of the runs overlap instead of following one another (a hint).
    #[inline]
    pub fn prefetch_posting_entry(&self, i: usize) {
        let blocks = self.meta.blocks as usize;
        if blocks == 0 {
            return;
        }
        let b = self
            .block_guess(self.posting_ordinal(i), blocks)
            .min(blocks - 1);
        let at = b * BLOCK_ENTRY;
        crate::prefetch::lines(self.section(Section::Blocks), at, at + BLOCK_ENTRY);
    }

    /// Asks for the lines of the event at posting index `i` in its block's columns
    /// (ts, with row 0's for the block's line, seq, kind and direction): the second
    /// step (reads the directory, which [`Segment::prefetch_posting_entry`] asked
    /// for). Only for a segment whose rows were verified (`verify_rows`), as a
    /// posting walk's are. (The walk searches for the block again: with the entries
    /// it reads already here, a few dozen instructions.)
    #[inline]
    pub fn prefetch_posting_row(&self, i: usize) {
        if self.meta.blocks == 0 {
            return;
        }
        let o = self.posting_ordinal(i);
        let e = self.entry(self.block_of(o, 0));
        let count = get_u16(e, block::COUNT) as usize;
        // Within the block whatever the posting (one past a list reads another's).
        let at = (o.saturating_sub(get_u32(e, block::FIRST_ORDINAL)) as usize)
            .min(count.saturating_sub(1));
        let data = self.sections[Section::Data as usize]
            .start
            .saturating_add(get_u64(e, block::DATA_OFF) as usize);
        let bits = |f: usize| e[f] as usize;
        let seq_at = packed_len(count, e[block::TS_BITS]) + packed_len(count, e[block::SUBJ_BITS]);
        let kd_at = seq_at + packed_len(count, e[block::SEQ_BITS]);
        for col in [
            0,
            at * bits(block::TS_BITS) / 8,
            seq_at + at * bits(block::SEQ_BITS) / 8,
            kd_at + at * bits(block::KD_BITS) / 8,
        ] {
            crate::prefetch::line(&self.map, data.saturating_add(col));
        }
    }

    /// Where [`Segment::block_of`] starts looking for `ordinal`'s block: the block at
    /// the ordinal's share of the `blocks`.
    #[inline]
    fn block_guess(&self, ordinal: u32, blocks: usize) -> usize {
        (u64::from(ordinal) * blocks as u64 / u64::from(self.meta.events.max(1))) as usize
    }

    /// Asks for the entry naming where event `ordinal`'s attribute chunk is (a hint:
    /// see [`crate::AttrsAt::prefetch_place`]).
    #[inline]
    pub fn prefetch_attr_place(&self, ordinal: u32) {
        let p = self.attr_offsets;
        let bit = self.attr_entry(ordinal).saturating_mul(p.bits as usize);
        crate::prefetch::line(&self.map, p.at.saturating_add(bit / 8));
    }

    /// Asks for event `ordinal`'s attribute chunk (its first
    /// [`crate::prefetch::CHUNK_BYTES`]), reading where it is: the second step.
    #[inline]
    pub fn prefetch_attrs(&self, ordinal: u32) {
        let data = &self.sections[Section::AttrData as usize];
        let entry = self.attr_entry(ordinal);
        let (a, z) = (
            self.get(self.attr_offsets, entry) as usize,
            self.get(self.attr_offsets, entry + 1) as usize,
        );
        let end = data.start.saturating_add(z).min(data.end);
        crate::prefetch::lines(&self.map, data.start.saturating_add(a), end);
    }

    fn attr_damage(&self, ordinal: u32, at: usize, reason: String) -> StorageError {
        let what = match self.version {
            1 => format!("attributes of event {ordinal}"),
            _ => format!(
                "attributes of event {ordinal} (chunk {})",
                self.attr_entry(ordinal)
            ),
        };
        self.corrupt(at, format!("{what}: {reason}"))
    }

    /// The attributes of the event at `ordinal`.
    pub fn attrs(&self, ordinal: u32) -> Result<Attrs> {
        let bytes = self.attr_bytes(ordinal)?;
        crate::attr_codec::decode_attrs(&bytes).map_err(|reason| {
            let at = self.sections[Section::AttrData as usize].start
                + self.get(self.attr_offsets, self.attr_entry(ordinal)) as usize;
            self.corrupt(at, format!("attributes of event {ordinal}: {reason}"))
        })
    }

    /// Entry `i` of the source-id index: the hash (all 64 bits in version 1, the low
    /// 32 in version 2) and the ordinal.
    fn source_entry(&self, i: usize) -> (u64, u32) {
        let src = self.section(Section::SourceIds);
        match self.version {
            1 => (
                get_u64(src, i * SOURCE_ENTRY),
                get_u32(src, i * SOURCE_ENTRY + 8),
            ),
            _ => (
                get_u32(src, i * 4) as u64,
                self.get(self.source_ordinals, i) as u32,
            ),
        }
    }

    /// The sequence number of the event whose `source_id` is `source_id`, if stored here.
    pub fn find_source_id(&self, source_id: &str) -> Result<Option<u64>> {
        self.verify_rows()?;
        if let Some(l) = self.source_layout {
            let (bucket, rest) = l.split(l.fingerprint(fnv1a(source_id.as_bytes())));
            let start = self.get(self.source_starts, bucket) as usize;
            let end = self.get(self.source_starts, bucket + 1) as usize;
            let mut i = first_false(start..end, |i| self.get(self.source_rests, i) < rest);
            // Fingerprints can collide: compare the stored id of every event of every
            // equal one's group (its one event before version 5).
            while i < end && self.get(self.source_rests, i) == rest {
                let group = self.get(self.source_ordinals, i);
                let ordinals = l.ordinals(group, self.meta.events);
                let found = match l.group_bits {
                    0 => match self.source_id_is(ordinals.start, source_id)? {
                        true => Some(ordinals.start),
                        false => None,
                    },
                    _ => self.source_id_in_chunk(ordinals, source_id)?,
                };
                if let Some(ordinal) = found {
                    return Ok(self.row(ordinal).map(|r| r.seq));
                }
                i += 1;
            }
            return Ok(None);
        }
        let h = match self.version {
            1 => fnv1a(source_id.as_bytes()),
            _ => fnv1a(source_id.as_bytes()) as u32 as u64,
        };
        let n = self.meta.source_ids as usize;
        let hash_at = |i: usize| self.source_entry(i).0;
        let (mut a, mut z) = (0usize, n);
        while a < z {
            let mid = (a + z) / 2;
            if hash_at(mid) < h {
                a = mid + 1;
            } else {
                z = mid;
            }
        }
        // Hashes can collide: compare the stored source id of every equal-hash entry.
        while a < n && hash_at(a) == h {
            let ordinal = self.source_entry(a).1;
            if self.source_id_is(ordinal, source_id)? {
                return Ok(self.row(ordinal).map(|r| r.seq));
            }
            a += 1;
        }
        Ok(None)
    }

    /// The first event of `ordinals` (inside one attribute chunk of the direct layout)
    /// whose source id is `source_id`: only the chunk's `source_id` columns read.
    fn source_id_in_chunk(
        &self,
        ordinals: std::ops::Range<u32>,
        source_id: &str,
    ) -> Result<Option<u32>> {
        if ordinals.is_empty() {
            return Ok(None);
        }
        let (bytes, data_at) = self.attr_stored(ordinals.start)?;
        let first = ordinals.start - ordinals.start % CHUNK_ROWS as u32;
        let rows = (ordinals.start - first) as usize..(ordinals.end - first) as usize;
        crate::attr_columns::find_str_in_chunk(bytes, rows, crate::event::SOURCE_ID, source_id)
            .map(|row| row.map(|r| first + r as u32))
            .map_err(|reason| self.attr_damage(ordinals.start, data_at, reason))
    }

    /// Whether the event at `ordinal` has the source id `source_id`.
    fn source_id_is(&self, ordinal: u32, source_id: &str) -> Result<bool> {
        // Visited in place: no map of the event's attributes built to look at one.
        let mut same = false;
        self.visit_attrs(ordinal, &mut RowScratch::default(), |key, value| {
            if key == crate::event::SOURCE_ID {
                same = matches!(value, crate::AttrRef::Str(s) if s == source_id);
            }
        })?;
        Ok(same)
    }

    /// Bytes of encoded attributes in this segment.
    pub fn attr_data_len(&self) -> usize {
        self.sections[Section::AttrData as usize].len()
    }

    /// Reads every event's attributes back (what `sightline check` does): the first
    /// that cannot be read is the error, naming the file and where.
    pub fn verify_attrs(&self) -> Result<()> {
        if self.chunk_layout() == ChunkLayout::Direct {
            // Each chunk whole: what reading its rows does not touch as well (walked
            // chunks, versions 2 and 3: every row read below, each passing over every
            // column, as before).
            for o in (0..self.meta.events).step_by(CHUNK_ROWS) {
                let (bytes, data_at) = self.attr_stored(o)?;
                check_chunk(self.chunk_layout(), bytes)
                    .map_err(|reason| self.attr_damage(o, data_at, reason))?;
            }
        }
        (0..self.meta.events).try_for_each(|o| self.attrs(o).map(drop))
    }

    /// The file's format version (1–5: how its attributes, source ids and times are laid out).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Every event in file order with its encoded attributes, for merging segments.
    pub(crate) fn cursor(&self) -> Cursor<'_> {
        Cursor {
            seg: self,
            next_block: 0,
            view: None,
            i: 0,
        }
    }
}

/// Reads a segment's events in file order, block by block, straight from the map.
pub(crate) struct Cursor<'a> {
    seg: &'a Segment,
    next_block: usize,
    view: Option<BlockView<'a>>,
    i: usize,
}

impl<'a> Iterator for Cursor<'a> {
    type Item = Result<super::build::RowRef<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        let b = loop {
            match self.view {
                Some(b) if self.i < b.count => break b,
                _ => {
                    if self.next_block >= self.seg.meta.blocks as usize {
                        return None;
                    }
                    self.view = Some(self.seg.block(self.next_block));
                    self.next_block += 1;
                    self.i = 0;
                }
            }
        };
        let row = self.seg.row_in(&b, self.i);
        let kd = b.kd_code(self.i);
        let ordinal = b.first_ordinal + self.i as u32;
        self.i += 1;
        let attrs = match self.seg.attr_bytes(ordinal) {
            Ok(a) => a,
            Err(e) => return Some(Err(e)),
        };
        // The hash is taken from the id itself (the index keeps only some of its
        // bits, and the merged file may keep more), as a memory part does.
        let mut source_hash = None;
        let walked = crate::attr_codec::visit_attrs(&attrs, |key, value| {
            if let (crate::event::SOURCE_ID, crate::attr_codec::AttrRef::Str(s)) = (key, value) {
                source_hash = Some(fnv1a(s.as_bytes()));
            }
        });
        if let Err(reason) = walked {
            return Some(Err(self.seg.attr_damage(
                ordinal,
                self.seg.sections[Section::AttrData as usize].start,
                reason,
            )));
        }
        Some(Ok(super::build::RowRef {
            seq: row.seq,
            ts_ms: row.ts_ms,
            device: row.device,
            subject: row.subject,
            kd,
            attrs,
            source_hash,
        }))
    }
}

/// Directory entries [`Segment::block_of`] reads one after another from its guess
/// before it searches by halves.
const BLOCK_WALK: usize = 4;

/// Subjects from one sample of [`Segment::subject_samples`] to the next: the samples
/// take a quarter byte a subject (a tenth of the packed ids' size at 20 bits), and a
/// search past them four probes.
const SUBJECT_SAMPLE: usize = 16;

/// The first index in `range` for which `pred` is false, `pred` being true on a prefix
/// of it and false after.
fn first_false(range: std::ops::Range<usize>, pred: impl Fn(usize) -> bool) -> usize {
    let (mut a, mut z) = (range.start, range.end);
    while a < z {
        let mid = a + (z - a) / 2;
        if pred(mid) {
            a = mid + 1;
        } else {
            z = mid;
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memtable::StoredRow;
    use crate::row::kd_pack;
    use crate::segment::build::build_segment;
    use crate::{Direction, Kind};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// `block_of` finds, from any block at or before the one holding an ordinal,
        /// that block (its first ordinal at or before the ordinal, the next's after):
        /// whatever the devices' row counts, so whatever the partial blocks between
        /// full ones and however far the guess falls from the block.
        #[test]
        fn block_of_finds_the_block_holding_each_ordinal(
            counts in prop_oneof![
                proptest::collection::vec(
                    prop_oneof![1usize..4, 1usize..300, Just(BLOCK_ROWS), Just(BLOCK_ROWS + 1)],
                    1..64,
                ),
                // A heavy device before or after many light ones: the guess far off
                // (past the walk) forward, or back.
                (1usize..80, 300usize..2_000, any::<bool>()).prop_map(|(light, heavy, first)| {
                    let mut c = vec![1; light];
                    c.insert(if first { 0 } else { light }, heavy);
                    c
                }),
            ],
        ) {
            let mut rows: Vec<StoredRow> = counts
                .iter()
                .enumerate()
                .flat_map(|(device, &n)| (0..n).map(move |i| (device as u32, i)))
                .enumerate()
                .map(|(k, (device, i))| StoredRow {
                    seq: 1 + k as u64,
                    ts_ms: 1_600_000_000_000 + i as i64 * 1_000,
                    device,
                    subject: (k % 5) as u32,
                    kd: kd_pack(Kind::Vehicle, Direction::In),
                    attrs: std::sync::Arc::new([]),
                    source_id: None,
                })
                .collect();
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("blocks.seg");
            std::fs::write(&path, build_segment(3, 7, 1_600_000_000_000, &mut rows)).unwrap();
            let seg = Segment::open(&path).unwrap();
            let blocks = seg.meta.blocks as usize;
            let d = seg.section(Section::Blocks);
            let first = |b: usize| get_u32(&d[b * BLOCK_ENTRY..], block::FIRST_ORDINAL);
            // Ordinals past the events (a damaged list's) are in the last block.
            for o in (0..seg.meta.events).chain([seg.meta.events, u32::MAX]) {
                let holds = (0..blocks)
                    .find(|&b| first(b) <= o && (b + 1 == blocks || first(b + 1) > o))
                    .unwrap();
                for from in 0..=holds {
                    prop_assert_eq!(seg.block_of(o, from), holds, "ordinal {} from {}", o, from);
                }
            }
        }
    }
}
