//! Writing a segment as a stream.
//!
//! The writer walks its rows (already in segment order: device, ts, seq) three times.
//! The first walk plans: subject ranks, the block directory with each block's
//! checksum, source ids, attribute offsets and the attribute checksum. The header
//! (which holds every section's offset, length and checksum) is then known, so the file
//! is written front to back: header, directory, block data (a second walk, encoding
//! the blocks again the same way), the small sections, and the attributes (a third
//! walk, copying them from the rows). For merged segments each walk is the k-way merge
//! again: cheaper than keeping the merge order or the rows.
//!
//! Nothing per event is held but a subject rank and the packed postings and attribute
//! offsets (about 11 bytes an event), so compaction merges segments of any size
//! without reading their rows into memory: its rows come straight from the inputs'
//! maps ([`MergedSegments`]).

use std::sync::Arc;

use super::format::*;
use super::Segment;
use crate::attr_columns::{encode_chunk, CHUNK_ROWS};
use crate::bitpack::{bits_needed, packed_len, Packer};
use crate::error::Result;
use crate::fsutil::Out;
use crate::memtable::{MemRows, StoredRow};
use crate::row::fnv1a;

/// One event as the writer reads it.
#[derive(Clone, Debug)]
pub(crate) struct RowRef<'a> {
    pub seq: u64,
    pub ts_ms: i64,
    pub device: u32,
    /// Dictionary id.
    pub subject: u32,
    pub kd: u8,
    /// In the row encoding (`attr_codec`): borrowed from a memory part or a version 1
    /// segment, rebuilt from a version 2 segment's columns.
    pub attrs: std::borrow::Cow<'a, [u8]>,
    /// FNV-1a-64 of the source id, for events that have one.
    pub source_hash: Option<u64>,
}

/// Events in segment order — ascending (device, ts, seq) — that can be walked more
/// than once, the same way each time.
pub(crate) trait SortedRows {
    fn len(&self) -> usize;
    /// The distinct subject ids, ascending.
    fn subjects(&self) -> Vec<u32>;
    /// Calls `f` on every row in order, stopping at the first error it returns.
    fn visit(&self, f: &mut dyn FnMut(RowRef<'_>) -> Result<()>) -> Result<()>;
}

/// Encodes `rows` (all of one shard) as a segment file's bytes. Sorts `rows` by
/// (device, ts, seq) in place; ordinals in the file are positions in that order.
pub fn build_segment(
    community: u32,
    span: i32,
    span_start_ms: i64,
    rows: &mut [StoredRow],
) -> Vec<u8> {
    rows.sort_unstable_by_key(|r| (r.device, r.ts_ms, r.seq));
    let mem = MemRows::from_rows(rows.to_vec());
    let mut out = Vec::new();
    write_segment(
        community,
        span,
        span_start_ms,
        &MemSorted::new(&mem),
        &mut out,
    )
    .expect("writing to memory cannot fail");
    out
}

/// A shard's memory part in segment order, through a permutation (no row is copied).
pub(crate) struct MemSorted<'a> {
    rows: &'a MemRows,
    order: Vec<u32>,
}

impl<'a> MemSorted<'a> {
    pub(crate) fn new(rows: &'a MemRows) -> MemSorted<'a> {
        let mut order: Vec<u32> = (0..rows.len() as u32).collect();
        order.sort_unstable_by_key(|&i| {
            let r = rows.get(i);
            (r.device, r.ts_ms, r.seq)
        });
        MemSorted { rows, order }
    }
}

impl SortedRows for MemSorted<'_> {
    fn len(&self) -> usize {
        self.order.len()
    }
    fn subjects(&self) -> Vec<u32> {
        self.rows.subjects()
    }
    fn visit(&self, f: &mut dyn FnMut(RowRef<'_>) -> Result<()>) -> Result<()> {
        for &i in &self.order {
            let r = self.rows.get(i);
            f(RowRef {
                seq: r.seq,
                ts_ms: r.ts_ms,
                device: r.device,
                subject: r.subject,
                kd: r.kd,
                attrs: std::borrow::Cow::Borrowed(&r.attrs),
                source_hash: r.source_id.as_ref().map(|s| fnv1a(s.as_bytes())),
            })?;
        }
        Ok(())
    }
}

/// The rows of several segments of one shard, merged in segment order as they are
/// read from the maps (a k-way merge over one cursor per segment).
pub(crate) struct MergedSegments<'a> {
    segments: &'a [Arc<Segment>],
}

impl<'a> MergedSegments<'a> {
    pub(crate) fn new(segments: &'a [Arc<Segment>]) -> MergedSegments<'a> {
        MergedSegments { segments }
    }
}

impl SortedRows for MergedSegments<'_> {
    fn len(&self) -> usize {
        self.segments.iter().map(|s| s.meta().events as usize).sum()
    }
    fn subjects(&self) -> Vec<u32> {
        let mut s: Vec<u32> = self.segments.iter().flat_map(|g| g.subjects()).collect();
        s.sort_unstable();
        s.dedup();
        s
    }
    fn visit(&self, f: &mut dyn FnMut(RowRef<'_>) -> Result<()>) -> Result<()> {
        let mut cursors: Vec<_> = self.segments.iter().map(|s| s.cursor()).collect();
        let mut heads: Vec<Option<RowRef<'_>>> = cursors
            .iter_mut()
            .map(|c| c.next().transpose())
            .collect::<Result<_>>()?;
        loop {
            // Few inputs (a shard merges at most a handful): a linear scan is enough.
            let mut best: Option<usize> = None;
            for (i, h) in heads.iter().enumerate() {
                if let Some(h) = h {
                    let key = (h.device, h.ts_ms, h.seq);
                    if best.is_none_or(|b| {
                        let b = heads[b].as_ref().expect("a head was chosen");
                        key < (b.device, b.ts_ms, b.seq)
                    }) {
                        best = Some(i);
                    }
                }
            }
            let Some(i) = best else { return Ok(()) };
            let next = cursors[i].next().transpose()?;
            let row = std::mem::replace(&mut heads[i], next).expect("chosen head");
            f(row)?;
        }
    }
}

/// Writes `rows` as a segment file to `out`, front to back. See the module docs.
pub(crate) fn write_segment(
    community: u32,
    span: i32,
    span_start_ms: i64,
    rows: &dyn SortedRows,
    out: &mut dyn Out,
) -> Result<()> {
    let n = rows.len();
    assert!(n > 0, "a segment holds at least one event");
    assert!(n <= u32::MAX as usize, "too many rows for one segment");
    let subjects = rows.subjects();
    let ts_off = |ts: i64| -> u32 {
        let off = ts - span_start_ms;
        assert!(
            (0..=u32::MAX as i64).contains(&off),
            "event at {ts} outside its span starting {span_start_ms}"
        );
        off as u32
    };

    // Walk 1: plan.
    let mut ranks: Vec<u32> = Vec::with_capacity(n);
    let mut sources: Vec<(u64, u32)> = Vec::new();
    let mut directory = Vec::new();
    let mut blocks = Blocks::default();
    let mut attr_crc = crc32fast::Hasher::new();
    let mut chunk_ends = vec![0u64];
    let mut chunks = AttrChunks::default();
    let (mut seq_min, mut seq_max) = (u64::MAX, 0u64);
    let (mut ts_min, mut ts_max) = (i64::MAX, i64::MIN);
    let mut subject_at = 0usize; // rank of the previous row's subject, a search hint
                                 // Planning keeps only each block's directory entry.
    let mut to_directory = |_: &[u8], entry: &[u8; BLOCK_ENTRY]| {
        directory.extend_from_slice(entry);
        Ok(())
    };
    rows.visit(&mut |r| {
        let ordinal = ranks.len() as u32;
        let rank = rank_of(&subjects, r.subject, &mut subject_at);
        ranks.push(rank);
        if let Some(h) = r.source_hash {
            sources.push((h, ordinal));
        }
        chunks.push(&r.attrs, &mut |chunk| {
            attr_crc.update(chunk);
            chunk_ends.push(chunk_ends.last().expect("starts at 0") + chunk.len() as u64);
            Ok(())
        })?;
        (seq_min, seq_max) = (seq_min.min(r.seq), seq_max.max(r.seq));
        (ts_min, ts_max) = (ts_min.min(r.ts_ms), ts_max.max(r.ts_ms));
        blocks.push(&r, ts_off(r.ts_ms), rank, &mut to_directory)
    })?;
    blocks.flush(&mut to_directory)?;
    chunks.flush(&mut |chunk| {
        attr_crc.update(chunk);
        chunk_ends.push(chunk_ends.last().expect("starts at 0") + chunk.len() as u64);
        Ok(())
    })?;
    assert_eq!(ranks.len(), n, "rows walked differ from rows counted");
    let attr_total = *chunk_ends.last().expect("starts at 0");
    let attr_offsets = packed_section(0, attr_total, chunk_ends.iter().copied());
    drop(chunk_ends);
    let data_len = blocks.data_len;

    // Postings: rank -> ordinals, by counting sort (each list comes out sorted).
    let mut offsets = vec![0u64; subjects.len() + 1];
    for &r in &ranks {
        offsets[r as usize + 1] += 1;
    }
    for i in 1..offsets.len() {
        offsets[i] += offsets[i - 1];
    }
    let ordinals_packed = {
        let mut fill = offsets.clone();
        let mut ordinals = vec![0u32; n];
        for (ord, &r) in ranks.iter().enumerate() {
            ordinals[fill[r as usize] as usize] = ord as u32;
            fill[r as usize] += 1;
        }
        packed_section(0, n as u64 - 1, ordinals.iter().map(|&o| o as u64))
    };
    let subjects_packed = packed_section(
        subjects[0] as u64,
        subjects[subjects.len() - 1] as u64,
        subjects.iter().map(|&s| s as u64),
    );
    let offsets_packed = packed_section(0, n as u64, offsets.iter().copied());
    drop(offsets);
    // The source-id index: fingerprints in buckets, and the groups of ordinals
    // (`source_index`; a collision costs a comparison of the ids, not a wrong answer).
    let (source_bytes, source_entries) =
        super::source_index::encode(&sources, n, super::source_index::GROUP_BITS);
    drop(sources);

    // The section table: where each section starts, its length and checksum (the
    // data section is covered block by block; its table checksum is unused).
    let lens_crcs: [(u64, u32); SECTION_COUNT] = [
        (directory.len() as u64, crc32fast::hash(&directory)),
        (data_len, 0),
        (
            subjects_packed.len() as u64,
            crc32fast::hash(&subjects_packed),
        ),
        (
            offsets_packed.len() as u64,
            crc32fast::hash(&offsets_packed),
        ),
        (
            ordinals_packed.len() as u64,
            crc32fast::hash(&ordinals_packed),
        ),
        (source_bytes.len() as u64, crc32fast::hash(&source_bytes)),
        (attr_offsets.len() as u64, crc32fast::hash(&attr_offsets)),
        (attr_total, attr_crc.finalize()),
    ];
    let mut header = vec![0u8; HEADER_LEN];
    let h = &mut header[..];
    h[0..8].copy_from_slice(&MAGIC);
    put_u32(h, 8, VERSION);
    put_u32(h, 12, HEADER_LEN as u32);
    put_u32(h, 16, community);
    put_u32(h, 20, span as u32);
    put_u64(h, 24, span_start_ms as u64);
    put_u32(h, 32, n as u32);
    put_u32(h, 36, (directory.len() / BLOCK_ENTRY) as u32);
    put_u32(h, 40, subjects.len() as u32);
    put_u32(h, 44, source_entries as u32);
    put_u64(h, 48, seq_min);
    put_u64(h, 56, seq_max);
    put_u64(h, 64, ts_min as u64);
    put_u64(h, 72, ts_max as u64);
    let mut at = HEADER_LEN as u64;
    for (i, (len, crc)) in lens_crcs.iter().enumerate() {
        at = at.next_multiple_of(8);
        let e = HEADER_FIELDS + i * SECTION_ENTRY;
        put_u64(h, e, at);
        put_u64(h, e + 8, *len);
        put_u32(h, e + 16, *crc);
        at += len;
    }
    let crc = crc32fast::hash(&h[..HEADER_CRC_AT]);
    put_u32(h, HEADER_CRC_AT, crc);

    // Walk 2: write, front to back.
    let mut w = Positioned { out, at: 0 };
    w.put(&header)?;
    w.section(&directory)?;
    w.align()?;
    let mut blocks = Blocks::default();
    let mut ordinal = 0usize;
    rows.visit(&mut |r| {
        let rank = ranks[ordinal];
        ordinal += 1;
        blocks.push(&r, ts_off(r.ts_ms), rank, &mut |data, _| w.put(data))
    })?;
    blocks.flush(&mut |data, _| w.put(data))?;
    drop(ranks);
    for s in [
        &subjects_packed,
        &offsets_packed,
        &ordinals_packed,
        &source_bytes,
        &attr_offsets,
    ] {
        w.section(s)?;
    }
    w.align()?;
    let mut chunks = AttrChunks::default();
    rows.visit(&mut |r| chunks.push(&r.attrs, &mut |chunk| w.put(chunk)))?;
    chunks.flush(&mut |chunk| w.put(chunk))?;
    debug_assert_eq!(w.at, at, "bytes written differ from the plan");
    Ok(())
}

/// Cuts the rows' attributes into chunks of [`CHUNK_ROWS`] consecutive ordinals and
/// encodes each by column (`attr_columns`), one chunk held at a time.
#[derive(Default)]
struct AttrChunks {
    /// The chunk's rows back to back, and where each ends (reused: no allocation per
    /// event).
    bytes: Vec<u8>,
    ends: Vec<usize>,
    buf: Vec<u8>,
}

impl AttrChunks {
    fn push(&mut self, attrs: &[u8], emit: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        self.bytes.extend_from_slice(attrs);
        self.ends.push(self.bytes.len());
        if self.ends.len() == CHUNK_ROWS {
            self.flush(emit)?;
        }
        Ok(())
    }

    fn flush(&mut self, emit: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        if self.ends.is_empty() {
            return Ok(());
        }
        self.buf.clear();
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        let refs: Vec<&[u8]> = starts
            .zip(&self.ends)
            .map(|(a, &z)| &self.bytes[a..z])
            .collect();
        encode_chunk(&refs, &mut self.buf).map_err(|reason| {
            crate::error::StorageError::corrupt(
                std::path::Path::new("(attributes of the rows being sealed)"),
                0,
                reason,
            )
        })?;
        self.bytes.clear();
        self.ends.clear();
        emit(&self.buf)
    }
}

/// An [`Out`] that knows how much it has written, for alignment.
struct Positioned<'o> {
    out: &'o mut dyn Out,
    at: u64,
}

impl Positioned<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.at += bytes.len() as u64;
        self.out.put(bytes)
    }
    /// Zero padding to the next 8-byte boundary.
    fn align(&mut self) -> Result<()> {
        let pad = (self.at.next_multiple_of(8) - self.at) as usize;
        self.put(&[0u8; 8][..pad])
    }
    fn section(&mut self, bytes: &[u8]) -> Result<()> {
        self.align()?;
        self.put(bytes)
    }
}

/// The rank of `subject` in the ascending `subjects`, searching from the previous
/// row's rank first (rows of a device repeat subjects often).
fn rank_of(subjects: &[u32], subject: u32, hint: &mut usize) -> u32 {
    if subjects.get(*hint) != Some(&subject) {
        *hint = subjects
            .binary_search(&subject)
            .expect("every row's subject is among the subjects");
    }
    *hint as u32
}

/// One row of a block being collected.
#[derive(Clone, Copy)]
struct BlockRow {
    ts: u32,
    rank: u32,
    seq: u64,
    kd: u8,
}

/// Cuts rows into blocks (runs of one device, at most [`BLOCK_ROWS`]) and encodes each:
/// its packed columns and its directory entry, handed to `emit`.
#[derive(Default)]
struct Blocks {
    device: u32,
    rows: Vec<BlockRow>,
    next_ordinal: u32,
    data_len: u64,
    scratch: Vec<u8>,
}

type Emit<'e> = dyn FnMut(&[u8], &[u8; BLOCK_ENTRY]) -> Result<()> + 'e;

impl Blocks {
    fn push(&mut self, r: &RowRef<'_>, ts: u32, rank: u32, emit: &mut Emit<'_>) -> Result<()> {
        if !self.rows.is_empty() && (self.device != r.device || self.rows.len() == BLOCK_ROWS) {
            self.flush(emit)?;
        }
        self.device = r.device;
        self.rows.push(BlockRow {
            ts,
            rank,
            seq: r.seq,
            kd: r.kd,
        });
        Ok(())
    }

    fn flush(&mut self, emit: &mut Emit<'_>) -> Result<()> {
        let rows = &self.rows;
        let Some(first) = rows.first() else {
            return Ok(());
        };
        debug_assert!(rows.windows(2).all(|w| w[0].ts <= w[1].ts));
        let ts_min = first.ts;
        let ts_max = rows[rows.len() - 1].ts;
        let subj_min = rows.iter().map(|r| r.rank).min().expect("non-empty");
        let subj_max = rows.iter().map(|r| r.rank).max().expect("non-empty");
        let seq_min = rows.iter().map(|r| r.seq).min().expect("non-empty");
        let seq_max = rows.iter().map(|r| r.seq).max().expect("non-empty");
        // The block's kind and direction codes, as a set: each row stores its code's
        // position in the set (most blocks hold one or two codes: 0 or 1 bit a row).
        let kd_codes = rows.iter().fold(0u32, |set, r| {
            assert!(r.kd < 32, "kind and direction code {} out of range", r.kd);
            set | 1 << r.kd
        });
        // Times as residuals from the line through the block's first and last time
        // when that takes fewer bits than offsets from the first (events spread
        // evenly over the block's time lie near the line): `shift` makes the least
        // residual 0, and row 0's residual is `shift` (it lies on the line).
        let slope = ts_slope(ts_min, ts_max, rows.len());
        let deviation = |i: usize, r: &BlockRow| (r.ts - ts_min) as i64 - ts_line(slope, i) as i64;
        let shift = -rows
            .iter()
            .enumerate()
            .map(|(i, r)| deviation(i, r))
            .min()
            .expect("non-empty");
        let line_span = rows
            .iter()
            .enumerate()
            .map(|(i, r)| deviation(i, r) + shift)
            .max()
            .expect("non-empty");
        let on_line = bits_needed(line_span as u64) < bits_needed((ts_max - ts_min) as u64);
        let bits = [
            bits_needed(if on_line {
                line_span as u64
            } else {
                (ts_max - ts_min) as u64
            }),
            bits_needed((subj_max - subj_min) as u64),
            bits_needed(seq_max - seq_min),
            bits_needed(kd_codes.count_ones() as u64 - 1),
        ];
        let data = &mut self.scratch;
        data.clear();
        if on_line {
            let mut p = Packer::new(bits[0]);
            for (i, r) in rows.iter().enumerate() {
                p.push((deviation(i, r) + shift) as u64, data);
            }
            p.finish(data);
        } else {
            pack_column(rows, bits[0], data, |r| (r.ts - ts_min) as u64);
        }
        pack_column(rows, bits[1], data, |r| (r.rank - subj_min) as u64);
        pack_column(rows, bits[2], data, |r| r.seq - seq_min);
        pack_column(rows, bits[3], data, |r| {
            (kd_codes & ((1u32 << r.kd) - 1)).count_ones() as u64
        });
        debug_assert_eq!(data.len(), block_data_len(rows.len(), bits));

        let mut e = [0u8; BLOCK_ENTRY];
        put_u32(&mut e, block::DEVICE, self.device);
        put_u32(&mut e, block::FIRST_ORDINAL, self.next_ordinal);
        put_u16(&mut e, block::COUNT, rows.len() as u16);
        e[block::TS_BITS] = bits[0];
        e[block::SUBJ_BITS] = bits[1];
        e[block::SEQ_BITS] = bits[2];
        e[block::KD_BITS] = bits[3];
        e[block::TS_LINE] = u8::from(on_line);
        put_u32(&mut e, block::TS_MIN, ts_min);
        put_u32(&mut e, block::TS_MAX, ts_max);
        put_u32(&mut e, block::SUBJ_MIN, subj_min);
        put_u32(&mut e, block::DATA_LEN, data.len() as u32);
        put_u64(&mut e, block::SEQ_MIN, seq_min);
        put_u64(&mut e, block::DATA_OFF, self.data_len);
        put_u32(&mut e, block::CRC, crc32fast::hash(data));
        put_u32(&mut e, block::KD_CODES, kd_codes);
        self.next_ordinal += rows.len() as u32;
        self.data_len += data.len() as u64;
        self.rows.clear();
        emit(&self.scratch, &e)
    }
}

/// Appends one column of a block, `value` of each row packed at `bits` bits.
fn pack_column(rows: &[BlockRow], bits: u8, out: &mut Vec<u8>, value: impl Fn(&BlockRow) -> u64) {
    let mut p = Packer::new(bits);
    for r in rows {
        p.push(value(r), out);
    }
    p.finish(out);
}

/// Bytes of a block's data: four packed columns back to back.
pub fn block_data_len(count: usize, bits: [u8; 4]) -> usize {
    bits.iter().map(|&b| packed_len(count, b)).sum()
}

/// The small header in front of a packed array: bits, 7 zero bytes, base.
fn packed_header(base: u64, bits: u8) -> Vec<u8> {
    let mut out = vec![0u8; PACKED_HEADER];
    out[0] = bits;
    put_u64(&mut out, 8, base);
    out
}

/// A packed array with its header; `base` and `max` are the smallest and largest of
/// `values`.
fn packed_section(base: u64, max: u64, values: impl IntoIterator<Item = u64>) -> Vec<u8> {
    let bits = bits_needed(max - base);
    let mut out = packed_header(base, bits);
    let mut p = Packer::new(bits);
    for v in values {
        p.push(v - base, &mut out);
    }
    p.finish(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr_codec::encode_attrs;
    use crate::event::{AttrValue, Attrs, SOURCE_ID};
    use crate::row::kd_pack;
    use crate::segment::format::Section;
    use crate::{Direction, Kind, Row};
    use proptest::prelude::*;

    const START: i64 = 1_630_425_600_000;

    fn rows_strategy() -> impl Strategy<Value = Vec<(StoredRow, usize)>> {
        // (device, ts offset, subject, kd, attr?, source?, which input segment)
        let row = (
            0u32..4,
            0i64..86_400_000,
            0u32..40,
            prop_oneof![
                Just(kd_pack(Kind::Vehicle, Direction::In)),
                Just(kd_pack(Kind::Face, Direction::Out)),
                Just(kd_pack(Kind::Access, Direction::Unknown)),
            ],
            any::<bool>(),
            any::<bool>(),
            0usize..4,
        );
        proptest::collection::vec(row, 1..700).prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (device, ts, subject, kd, attr, source, part))| {
                    let mut attrs = Attrs::new();
                    if attr {
                        attrs.insert("speed".into(), AttrValue::Int(i as i64));
                    }
                    let source_id = source.then(|| format!("s{}", i % 97));
                    if let Some(s) = &source_id {
                        attrs.insert(SOURCE_ID.into(), AttrValue::Str(s.clone()));
                    }
                    let row = StoredRow {
                        seq: 10 + i as u64,
                        // Coarse times, so equal (device, ts) pairs are common.
                        ts_ms: START + ts / 3_600_000 * 3_600_000,
                        device,
                        subject: subject * 1_000,
                        kd,
                        attrs: encode_attrs(&attrs).into(),
                        source_id: source_id.map(Into::into),
                    };
                    (row, part)
                })
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// A subject's postings are found, through the sampled subjects and the packed
        /// stretch between two samples, for segments of one to hundreds of subjects
        /// spread evenly or bunched; absent subjects (between, below and above the
        /// segment's) have none.
        #[test]
        fn subject_postings_match_a_scan_of_the_rows(
            ids in proptest::collection::btree_set(
                prop_oneof![0u32..600, 1_000_000u32..1_000_040, Just(u32::MAX - 1)],
                1..400,
            ),
            picks in proptest::collection::vec((any::<prop::sample::Index>(), 0u32..4), 1..900),
        ) {
            let ids: Vec<u32> = ids.into_iter().collect();
            let mut rows: Vec<StoredRow> = picks
                .iter()
                .enumerate()
                .map(|(i, (pick, device))| StoredRow {
                    seq: 1 + i as u64,
                    ts_ms: START + i as i64 * 1_000,
                    device: *device,
                    subject: ids[pick.index(ids.len())],
                    kd: kd_pack(Kind::Vehicle, Direction::In),
                    attrs: Arc::new([]),
                    source_id: None,
                })
                .collect();
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("subjects.seg");
            std::fs::write(&path, build_segment(3, 7, START, &mut rows)).unwrap();
            let seg = Segment::open(&path).unwrap();
            seg.verify_rows().unwrap();
            let mut by_subject: std::collections::BTreeMap<u32, Vec<u32>> = Default::default();
            seg.for_each(|ordinal, r| by_subject.entry(r.subject).or_default().push(ordinal));
            let probes = ids
                .iter()
                .flat_map(|&s| [s.saturating_sub(1), s, s.saturating_add(1)])
                .chain([0, u32::MAX]);
            // Asking for what reads will need ahead of them (hints) does not panic for
            // any subject, list or event, in range, at its end or past it (the answers
            // below are read after the hints).
            let events = seg.meta().events;
            let postings = events as usize;
            seg.prefetch_samples(); // before any search: no samples yet
            let _ = seg.subject_ordinals(ids[0]).count(); // the samples made
            seg.prefetch_samples();
            for r in [0..0, 0..1, 0..postings, postings - 1..postings + 9, postings + 5..postings + 7] {
                seg.prefetch_postings(r);
            }
            for i in [0, postings - 1, postings, postings + 9] {
                seg.prefetch_posting_entry(i);
                seg.prefetch_posting_row(i);
            }
            for o in [0, events - 1, events, u32::MAX] {
                seg.prefetch_attr_place(o);
                seg.prefetch_attrs(o);
            }
            for s in probes {
                seg.prefetch_subject(s);
                let got: Vec<u32> = seg.subject_ordinals(s).collect();
                let want = by_subject.get(&s).cloned().unwrap_or_default();
                prop_assert_eq!(got, want, "subject {}", s);
            }
        }
    }

    /// A segment whose checksums hold but whose kind/direction column has a code no
    /// kind has is refused at open, naming the file, instead of reading as vehicles.
    #[test]
    fn a_kind_code_out_of_range_is_refused_on_the_first_read_of_rows() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [7 << 2, 3] {
            let mut rows: Vec<StoredRow> = (0..10u64)
                .map(|i| StoredRow {
                    seq: i + 1,
                    ts_ms: START + i as i64,
                    device: 1,
                    subject: 5,
                    kd: if i == 6 {
                        bad
                    } else {
                        kd_pack(Kind::Face, Direction::In)
                    },
                    attrs: Arc::new([]),
                    source_id: None,
                })
                .collect();
            let path = dir.path().join(format!("bad-{bad}.seg"));
            std::fs::write(&path, build_segment(3, 7, START, &mut rows)).unwrap();
            // Opening checks the small parts only; the rows are verified before any
            // read of them, once, and give the same error every time.
            let seg = Segment::open(&path).unwrap();
            let err = seg.verify_rows().unwrap_err().to_string();
            assert_eq!(seg.verify_rows().unwrap_err().to_string(), err);
            assert_eq!(seg.verify().unwrap_err().to_string(), err);
            assert!(
                err.contains(&format!("bad-{bad}.seg")) && err.contains(&format!("code {bad}")),
                "{err}"
            );
        }
    }

    /// Rewrites the checksums of `bytes` after a hand edit: section `section`'s in the
    /// table, then the header's; the file then fails only the structural checks.
    fn reseal(bytes: &mut [u8], section: usize) {
        let e = HEADER_FIELDS + section * SECTION_ENTRY;
        let (off, len) = (get_u64(bytes, e) as usize, get_u64(bytes, e + 8) as usize);
        let crc = crc32fast::hash(&bytes[off..off + len]);
        put_u32(bytes, e + 16, crc);
        let crc = crc32fast::hash(&bytes[..HEADER_CRC_AT]);
        put_u32(bytes, HEADER_CRC_AT, crc);
    }

    fn rows_with_sources() -> Vec<StoredRow> {
        (0..300u64)
            .map(|i| {
                let id = format!("src-{i}");
                let mut attrs = Attrs::new();
                attrs.insert(SOURCE_ID.into(), AttrValue::Str(id.clone()));
                StoredRow {
                    seq: i + 1,
                    ts_ms: START + i as i64 * 1_000,
                    device: 1,
                    subject: (i % 7) as u32,
                    kd: [
                        kd_pack(Kind::Vehicle, Direction::In),
                        kd_pack(Kind::Face, Direction::Out),
                        kd_pack(Kind::Access, Direction::Unknown),
                    ][i as usize % 3],
                    attrs: encode_attrs(&attrs).into(),
                    source_id: Some(id.into()),
                }
            })
            .collect()
    }

    /// Where a segment's source-id section starts, from its section table.
    fn source_section_at(bytes: &[u8]) -> usize {
        get_u64(
            bytes,
            HEADER_FIELDS + Section::SourceIds as usize * SECTION_ENTRY,
        ) as usize
    }

    /// Opens `bytes` as a file and returns the first read's error.
    fn first_read_error(bytes: &[u8]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edited.seg");
        std::fs::write(&path, bytes).unwrap();
        let seg = Segment::open(&path).expect("checksums and sizes hold");
        let err = seg.verify_rows().unwrap_err().to_string();
        assert!(err.contains("edited.seg"), "{err}");
        assert_eq!(seg.find_source_id("src-1").unwrap_err().to_string(), err);
        err
    }

    /// A block's kd column holds positions in the block's set of codes: a position
    /// past the set (a set edited under a fresh checksum) is refused on first read.
    #[test]
    fn a_kind_position_past_the_block_s_codes_is_refused_on_the_first_read_of_rows() {
        let mut bytes = build_segment(3, 7, START, &mut rows_with_sources());
        let dir_at = get_u64(&bytes, HEADER_FIELDS) as usize;
        let set_at = dir_at + block::KD_CODES;
        assert_eq!(get_u32(&bytes, set_at).count_ones(), 3);
        put_u32(
            &mut bytes,
            set_at,
            1 << kd_pack(Kind::Vehicle, Direction::In),
        );
        reseal(&mut bytes, 0);
        let err = first_read_error(&bytes);
        assert!(
            err.contains("block 0: row 1 names kind and direction code 1 of 1"),
            "{err}"
        );
    }

    /// The source-id index's bucket directory is checked on first read: one that does
    /// not start at 0 (edited under a fresh checksum) is refused, naming the file.
    #[test]
    fn a_source_id_directory_out_of_order_is_refused_on_the_first_read() {
        let mut bytes = build_segment(3, 7, START, &mut rows_with_sources());
        let at = source_section_at(&bytes);
        bytes[at + super::super::source_index::HEAD] |= 1;
        reseal(&mut bytes, Section::SourceIds as usize);
        let err = first_read_error(&bytes);
        assert!(err.contains("source id buckets do not start at 0"), "{err}");
    }

    /// A version 5 file's groups are its chunks: any other group width is refused at
    /// open, naming the file.
    #[test]
    fn source_id_groups_other_than_chunks_are_refused() {
        let good = build_segment(3, 7, START, &mut rows_with_sources());
        let at = source_section_at(&good);
        assert_eq!(good[at + 2], super::super::source_index::GROUP_BITS);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("groups.seg");
        for g in [0u8, 6, 8, 16] {
            let mut bytes = good.clone();
            bytes[at + 2] = g;
            reseal(&mut bytes, Section::SourceIds as usize);
            std::fs::write(&path, &bytes).unwrap();
            let err = Segment::open(&path).unwrap_err().to_string();
            assert!(
                err.contains("groups.seg")
                    && err.contains(&format!("groups of 2^{g} events in a version 5 file")),
                "{g}: {err}"
            );
        }
    }

    /// An entry of the source-id index given twice (the next entry of its bucket
    /// made equal to it, under a fresh checksum) is refused on first read: a lookup
    /// would read its chunk twice.
    #[test]
    fn a_source_id_entry_given_twice_is_refused_on_the_first_read() {
        use super::super::source_index::Layout;
        use crate::bitpack::BitReader;
        let mut bytes = build_segment(3, 7, START, &mut rows_with_sources());
        let at = source_section_at(&bytes);
        let (f, b, g) = (bytes[at], bytes[at + 1], bytes[at + 2]);
        let entries = get_u32(&bytes, 44) as usize;
        let l = Layout::new(f, b, g, entries, 300);
        let [starts, rests, groups, end] = l.offsets().map(|o| at + o);
        let read = |bytes: &[u8], from: usize, to: usize, bits: u8, i: usize| {
            BitReader::new(&bytes[from..to], bits).get(i)
        };
        // The first bucket holding two entries.
        let i = (0..l.buckets())
            .map(|k| {
                (
                    read(&bytes, starts, rests, l.start_bits, k) as usize,
                    read(&bytes, starts, rests, l.start_bits, k + 1) as usize,
                )
            })
            .find(|(s, e)| e - s >= 2)
            .expect("a bucket of two entries")
            .0;
        let rest = read(&bytes, rests, groups, l.rest_bits, i);
        let group = read(&bytes, groups, end, l.group_width, i);
        set_packed(&mut bytes, rests, l.rest_bits as usize, i + 1, rest);
        set_packed(&mut bytes, groups, l.group_width as usize, i + 1, group);
        reseal(&mut bytes, Section::SourceIds as usize);
        let err = first_read_error(&bytes);
        assert!(
            err.contains(&format!("source id entry {} out of order", i + 1)),
            "{err}"
        );
    }

    /// Groups of the source-id index are version 5's: a version 4 file (the golden
    /// one) claiming groups of 128 events is refused at open, naming the file.
    #[test]
    fn source_id_groups_in_a_version_4_file_are_refused() {
        let mut bytes = std::fs::read(
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden-v4.seg"),
        )
        .unwrap();
        let at = source_section_at(&bytes);
        assert_eq!(bytes[at + 2], 0);
        bytes[at + 2] = 7;
        reseal(&mut bytes, Section::SourceIds as usize);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v4-groups.seg");
        std::fs::write(&path, &bytes).unwrap();
        let err = Segment::open(&path).unwrap_err().to_string();
        assert!(
            err.contains("v4-groups.seg")
                && err.contains("groups of 2^7 events in a version 4 file"),
            "{err}"
        );
    }

    /// Sets value `i` of the `bits`-wide packed column at byte `at` of `bytes`.
    fn set_packed(bytes: &mut [u8], at: usize, bits: usize, i: usize, v: u64) {
        let (byte, shift) = (at + i * bits / 8, i * bits % 8);
        let mut word = u64::from_le_bytes(bytes[byte..byte + 8].try_into().unwrap());
        let mask = ((1u64 << bits) - 1) << shift;
        word = (word & !mask) | (v << shift);
        bytes[byte..byte + 8].copy_from_slice(&word.to_le_bytes());
    }

    /// Rows of a block out of time order (a time edited under fresh checksums, still
    /// inside the block's first and last) are refused on the first read of rows:
    /// a device's time window is found by binary search, which would miss rows.
    #[test]
    fn rows_out_of_time_order_are_refused_on_the_first_read() {
        // Half at the first minute, half at the last: offsets from the first time.
        let offsets = bunched();
        let mut bytes = one_device(&offsets);
        let dir_at = get_u64(&bytes, HEADER_FIELDS) as usize;
        assert_eq!(bytes[dir_at + block::TS_LINE], 0);
        let data_at = get_u64(&bytes, HEADER_FIELDS + SECTION_ENTRY) as usize;
        let bits = bytes[dir_at + block::TS_BITS] as usize;
        set_packed(&mut bytes, data_at, bits, 70, 0);
        reseal_first_block(&mut bytes);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edited.seg");
        std::fs::write(&path, &bytes).unwrap();
        let seg = Segment::open(&path).unwrap();
        let err = seg.verify_rows().unwrap_err().to_string();
        assert!(
            err.contains("edited.seg")
                && err.contains("block 0: row 70 lies before the row before it"),
            "{err}"
        );
    }

    /// Every stored source id is found, ids of several shapes (GA/T 1400 digits, a
    /// few repeated, hexadecimal, long and alike), with events without one between,
    /// and ids not stored are not. (`attr_columns::direct`'s tests hold the chunk's
    /// search to reading each row, a column of each class.)
    #[test]
    fn source_ids_of_every_column_class_are_found_and_no_other() {
        type IdOf = fn(u64) -> Option<String>;
        let makers: [(&str, IdOf); 4] = [
            ("digits", |i| {
                Some(format!(
                    "32050801011320000102020000001474565561213{:07}",
                    i * 7
                ))
            }),
            ("dictionary", |i| {
                (i % 3 != 0).then(|| format!("dup-{}", i % 40))
            }),
            ("raw", |i| {
                (i % 4 != 1).then(|| format!("{:x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
            }),
            ("compressed", |i| {
                Some(format!(
                    "an upload from the east gate, camera {i:05}, lane 2"
                ))
            }),
        ];
        let dir = tempfile::tempdir().unwrap();
        for (name, id) in makers {
            let mut rows: Vec<StoredRow> = (0..300u64)
                .map(|i| {
                    let mut attrs = Attrs::new();
                    attrs.insert("lane".into(), AttrValue::Int(i as i64 % 3));
                    let source_id = id(i);
                    if let Some(s) = &source_id {
                        attrs.insert(SOURCE_ID.into(), AttrValue::Str(s.clone()));
                    }
                    StoredRow {
                        seq: i + 1,
                        ts_ms: START + i as i64 * 1_000,
                        device: (i % 2) as u32,
                        subject: (i % 7) as u32,
                        kd: kd_pack(Kind::Vehicle, Direction::In),
                        attrs: encode_attrs(&attrs).into(),
                        source_id: source_id.map(Into::into),
                    }
                })
                .collect();
            let path = dir.path().join(format!("{name}.seg"));
            std::fs::write(&path, build_segment(3, 7, START, &mut rows)).unwrap();
            let seg = Segment::open(&path).unwrap();
            seg.verify().unwrap();
            // 48-digit ids as digit fields, 50-byte ones compressed: far below their
            // text (300 × 48 and 300 × 50 bytes).
            if name == "digits" || name == "compressed" {
                assert!(
                    seg.attr_data_len() < 300 * 20,
                    "{name}: {}",
                    seg.attr_data_len()
                );
            }
            // The first event (least seq among equal ids: rows are sorted by device,
            // then time) with each id.
            let mut want: std::collections::HashMap<String, u64> = Default::default();
            let mut sorted = rows.clone();
            sorted.sort_by_key(|r| (r.device, r.ts_ms, r.seq));
            for r in &sorted {
                if let Some(s) = &r.source_id {
                    want.entry(s.to_string()).or_insert(r.seq);
                }
            }
            for (s, seq) in &want {
                assert_eq!(seg.find_source_id(s).unwrap(), Some(*seq), "{name} {s}");
            }
            for i in 300..2_000u64 {
                if let Some(s) = id(i).filter(|s| !want.contains_key(s)) {
                    assert_eq!(seg.find_source_id(&s).unwrap(), None, "{name} {s}");
                }
            }
        }
    }

    /// Every stored source id is found, and ids not stored are not (fingerprints
    /// agreeing by chance are told apart by the ids).
    #[test]
    fn every_source_id_is_found_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.seg");
        std::fs::write(&path, build_segment(3, 7, START, &mut rows_with_sources())).unwrap();
        let seg = Segment::open(&path).unwrap();
        for i in 0..300u64 {
            assert_eq!(
                seg.find_source_id(&format!("src-{i}")).unwrap(),
                Some(i + 1)
            );
        }
        for i in 300..5_000u64 {
            assert_eq!(seg.find_source_id(&format!("src-{i}")).unwrap(), None);
        }
    }

    /// An entry of the source-id index naming a group past the segment's events
    /// (edited under a fresh checksum) is refused on first read, naming the file.
    #[test]
    fn a_source_id_group_past_the_events_is_refused_on_the_first_read() {
        use super::super::source_index::{Layout, HEAD};
        let mut bytes = build_segment(3, 7, START, &mut rows_with_sources());
        let at = source_section_at(&bytes);
        let (f, b, g) = (bytes[at], bytes[at + 1], bytes[at + 2]);
        assert_eq!(g, super::super::source_index::GROUP_BITS);
        let entries = get_u32(&bytes, 44) as usize;
        let layout = Layout::new(f, b, g, entries, 300);
        // 300 events: groups 0, 1 and 2, two bits each; the first entry's becomes 3.
        assert_eq!((layout.group_width, layout.groups(300)), (2, 3));
        assert_eq!(layout.offsets()[0], HEAD);
        bytes[at + layout.offsets()[2]] |= 0b11;
        reseal(&mut bytes, Section::SourceIds as usize);
        let err = first_read_error(&bytes);
        assert!(err.contains("source id entry 0 names no event"), "{err}");
    }

    /// 128 times, half at the first minute of the day and half at its last: stored as
    /// offsets from the first (a line would not save a bit).
    fn bunched() -> Vec<i64> {
        (0..128i64)
            .map(|i| {
                if i < 64 {
                    i * 900
                } else {
                    86_000_000 + i * 900
                }
            })
            .collect()
    }

    /// Rewrites the first block's data checksum after a hand edit of its data, then
    /// the directory's and the header's.
    fn reseal_first_block(bytes: &mut [u8]) {
        let dir_at = get_u64(bytes, HEADER_FIELDS) as usize;
        let data_at = get_u64(bytes, HEADER_FIELDS + SECTION_ENTRY) as usize;
        let len = get_u32(bytes, dir_at + block::DATA_LEN) as usize;
        let crc = crc32fast::hash(&bytes[data_at..data_at + len]);
        put_u32(bytes, dir_at + block::CRC, crc);
        reseal(bytes, 0);
    }

    /// Rows of one device at these offsets from the span start, as a segment's bytes.
    fn one_device(offsets: &[i64]) -> Vec<u8> {
        let mut rows: Vec<StoredRow> = offsets
            .iter()
            .enumerate()
            .map(|(i, &t)| StoredRow {
                seq: 1 + i as u64,
                ts_ms: START + t,
                device: 1,
                subject: (i % 5) as u32,
                kd: kd_pack(Kind::Vehicle, Direction::In),
                attrs: Arc::new([]),
                source_id: None,
            })
            .collect();
        build_segment(3, 7, START, &mut rows)
    }

    /// Events spread evenly over a block's time are stored as residuals from its line,
    /// in fewer bits than offsets from its first time; events bunched at its ends are
    /// stored as offsets (the line would not save a bit). Both read back exactly.
    #[test]
    fn evenly_spread_times_are_stored_as_residuals_from_the_block_s_line() {
        let dir = tempfile::tempdir().unwrap();
        // 128 events ~10 minutes apart over a day, each off its place by up to ±2 s.
        let even: Vec<i64> = (0..128i64)
            .map(|i| i * 675_000 + (i * 7_919) % 4_000 - 2_000 + 2_000)
            .collect();
        // Half at the first minute, half at the last.
        let bunched = bunched();
        for (name, offsets, line, bits) in
            [("even", &even, 1u8, 13u8), ("bunched", &bunched, 0, 27)]
        {
            let bytes = one_device(offsets);
            let dir_at = get_u64(&bytes, HEADER_FIELDS) as usize;
            assert_eq!(bytes[dir_at + block::TS_LINE], line, "{name}");
            assert_eq!(bytes[dir_at + block::TS_BITS], bits, "{name}");
            let path = dir.path().join(format!("{name}.seg"));
            std::fs::write(&path, &bytes).unwrap();
            let seg = Segment::open(&path).unwrap();
            seg.verify().unwrap();
            let mut read = Vec::new();
            seg.for_each(|_, r| read.push(r.ts_ms - START));
            assert_eq!(&read, offsets, "{name}");
        }
    }

    /// A ts encoding other than 0 and 1 is refused at open, and a residual that puts a
    /// row before its block's first time on the first read of rows (each edited under
    /// fresh checksums), naming the file.
    #[test]
    fn a_damaged_ts_line_is_refused() {
        // Row 1 at the first time too: it lies 675 s below its line, so the shift (row
        // 0's residual) is about 675 s.
        let offsets: Vec<i64> = (0..128i64)
            .map(|i| {
                if i == 1 {
                    0
                } else {
                    i * 675_000 + (i % 3) * 1_000
                }
            })
            .collect();
        let good = one_device(&offsets);
        let dir_at = get_u64(&good, HEADER_FIELDS) as usize;
        assert_eq!(good[dir_at + block::TS_LINE], 1);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edited.seg");

        let mut bytes = good.clone();
        bytes[dir_at + block::TS_LINE] = 2;
        reseal(&mut bytes, 0);
        std::fs::write(&path, &bytes).unwrap();
        let err = Segment::open(&path).unwrap_err().to_string();
        assert!(
            err.contains("edited.seg") && err.contains("unknown ts encoding 2"),
            "{err}"
        );

        // Row 0's residual is the shift; raising it to its width's largest value
        // lowers every other row's time, and row 1, 675 s below the line, falls
        // before the block's first time.
        let mut bytes = good.clone();
        let data_at = get_u64(&bytes, HEADER_FIELDS + SECTION_ENTRY) as usize;
        let bits = bytes[dir_at + block::TS_BITS] as usize;
        assert_eq!(bits, 20);
        let value = |b: &[u8]| u64::from_le_bytes(b[data_at..data_at + 8].try_into().unwrap());
        let shifted = value(&bytes) | ((1u64 << bits) - 1);
        assert!(shifted & ((1 << bits) - 1) > 700_000);
        bytes[data_at..data_at + 8].copy_from_slice(&shifted.to_le_bytes());
        reseal_first_block(&mut bytes);
        std::fs::write(&path, &bytes).unwrap();
        let seg = Segment::open(&path).unwrap();
        let err = seg.verify_rows().unwrap_err().to_string();
        assert!(
            err.contains("edited.seg") && err.contains("lies before the block's earliest time"),
            "{err}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever their times (spread evenly, bunched, equal, a day apart), a
        /// segment's rows read back exactly: every row, each device's time windows and
        /// each subject's postings, as the rows sorted by (device, ts, seq).
        #[test]
        fn times_read_back_exactly_whatever_their_spread(
            picks in proptest::collection::vec(
                (0u32..3, prop_oneof![
                    0i64..86_400_000,
                    0i64..1_000,
                    Just(86_399_999i64),
                    (0i64..600).prop_map(|m| m * 144_000),
                ]),
                1..600,
            ),
            windows in proptest::collection::vec((0i64..86_400_000, 0i64..86_400_000), 1..6),
        ) {
            let mut rows: Vec<StoredRow> = picks
                .iter()
                .enumerate()
                .map(|(i, &(device, t))| StoredRow {
                    seq: 1 + i as u64,
                    ts_ms: START + t,
                    device,
                    subject: (i % 11) as u32,
                    kd: kd_pack(Kind::Vehicle, Direction::In),
                    attrs: Arc::new([]),
                    source_id: None,
                })
                .collect();
            let mut want: Vec<Row> = rows.iter().map(|r| r.row(3)).collect();
            want.sort_by_key(|r| (r.device, r.ts_ms, r.seq));
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("times.seg");
            std::fs::write(&path, build_segment(3, 7, START, &mut rows)).unwrap();
            let seg = Segment::open(&path).unwrap();
            seg.verify().unwrap();
            let mut got = Vec::new();
            seg.for_each(|_, r| got.push(r));
            prop_assert_eq!(&got, &want);
            for (a, b) in windows {
                let (from, to) = (START + a.min(b), START + a.max(b));
                for device in 0..3 {
                    let mut got = Vec::new();
                    seg.for_each_in_device_window(device, from, to, |_, r| got.push(r));
                    let w: Vec<Row> = want
                        .iter()
                        .filter(|r| r.device == device && r.ts_ms >= from && r.ts_ms < to)
                        .cloned()
                        .collect();
                    prop_assert_eq!(got, w);
                }
            }
            for subject in 0..11u32 {
                let mut got = Vec::new();
                for (_, run) in seg.subject_device_runs(subject, START, START + 86_400_000) {
                    seg.posting_rows(run, subject, &mut got).unwrap();
                }
                let got: Vec<Row> = got.into_iter().map(|(r, _)| r).collect();
                let w: Vec<Row> = want.iter().filter(|r| r.subject == subject).cloned().collect();
                prop_assert_eq!(got, w, "subject {}", subject);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Merging segments as a stream gives the very bytes of building one segment
        /// from all their rows, and so does writing from memory in sorted order.
        #[test]
        fn merged_segments_equal_one_segment_built_from_all_rows(rows in rows_strategy()) {
            let dir = tempfile::tempdir().unwrap();
            let mut all: Vec<StoredRow> = rows.iter().map(|(r, _)| r.clone()).collect();
            let mut segments = Vec::new();
            for part in 0..4 {
                let mut mine: Vec<StoredRow> =
                    rows.iter().filter(|(_, p)| *p == part).map(|(r, _)| r.clone()).collect();
                if mine.is_empty() {
                    continue;
                }
                let path = dir.path().join(format!("{part}.seg"));
                std::fs::write(&path, build_segment(3, 7, START, &mut mine)).unwrap();
                segments.push(Arc::new(Segment::open(&path).unwrap()));
            }
            let mut merged = Vec::new();
            write_segment(3, 7, START, &MergedSegments::new(&segments), &mut merged).unwrap();

            let mut from_memory = Vec::new();
            let mem = MemRows::from_rows(all.clone());
            write_segment(3, 7, START, &MemSorted::new(&mem), &mut from_memory).unwrap();

            let built = build_segment(3, 7, START, &mut all);
            prop_assert!(merged == built, "merged segment differs from the one built whole");
            prop_assert!(from_memory == built, "permuted rows differ from sorted ones");
        }
    }
}
