//! The index checkpoint file (`index/subjects.idx`): the global index as of one
//! sequence number, so a store reopens by reading it instead of every row. The layout
//! is in `storage/FORMAT.md` ("Index checkpoint"); this module writes and checks it.
//!
//! Sections are arrays read in place from the map (subject → shards is CSR: offsets,
//! then shard numbers), so loading costs a checksum pass and a structural pass, not a
//! parse into millions of small allocations. Version 3 packs the statistics, offsets
//! and lists at the bit widths they need (`crate::bits`), written in the header; every
//! entry is still one O(1) read.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sightline_storage::io::FileBytes;
use sightline_storage::{ShardKey, SpanLayout, StorageError};

use crate::bits;

pub(crate) const MAGIC: [u8; 8] = *b"SLINDEX\0";
/// Version 3 packs the statistics, the offsets and the lists at their bit widths.
/// Version 2 added the chunk checksums (section 6), so the large sections are checked
/// a chunk at a time on first read instead of whole at open. Versions 1 (checked whole
/// at open) and 2 are still read.
pub(crate) const VERSION: u32 = 3;
/// Header: fixed fields (version 3: then the widths, the time base and the value
/// counts), then the section table, then its checksum.
const fn fields_len(version: u32) -> usize {
    if version >= 3 {
        96
    } else {
        64
    }
}
/// The data sections (every version).
const SECTIONS: usize = 6;
const SECTION_ENTRY: usize = 24;
const fn header_len(version: u32) -> usize {
    let sections = match version {
        1 => SECTIONS,
        _ => SECTIONS + 1,
    };
    fields_len(version) + sections * SECTION_ENTRY + 8
}
/// Version 2 on: the data sections (from the header's end to the chunk checksums) are
/// covered by one crc32 per chunk of this many bytes (the last one shorter).
pub(crate) const CHUNK: usize = 64 << 10;
/// A shard table entry: community, span, flags, reserved, events.
const SHARD_ENTRY: usize = 24;
/// `flags` bit: the shard was dropped by retention (its number stays taken).
pub(crate) const DROPPED: u32 = 1;
/// Versions 1 and 2: the widths their flat arrays amount to (statistics count, first,
/// last; subject offsets, shard numbers; device offsets, communities).
const FLAT_WIDTHS: Widths = Widths {
    count: 64,
    first: 64,
    last: 64,
    subject_offset: 64,
    subject_shard: 32,
    device_offset: 64,
    device_community: 32,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
enum Section {
    Shards = 0,
    Stats = 1,
    SubjectOffsets = 2,
    SubjectShards = 3,
    DeviceOffsets = 4,
    DeviceCommunities = 5,
}

const ALL: [Section; SECTIONS] = [
    Section::Shards,
    Section::Stats,
    Section::SubjectOffsets,
    Section::SubjectShards,
    Section::DeviceOffsets,
    Section::DeviceCommunities,
];

/// The bit width of each packed field (version 3's header bytes 64..71).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Widths {
    count: u32,
    first: u32,
    last: u32,
    subject_offset: u32,
    subject_shard: u32,
    device_offset: u32,
    device_community: u32,
}

impl Widths {
    /// A statistics record: count, first, last.
    fn stats(&self) -> u32 {
        self.count + self.first + self.last
    }
}

/// One shard number's entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ShardEntry {
    pub key: ShardKey,
    pub dropped: bool,
    /// Rows of this shard the index counted (0 once dropped).
    pub events: u64,
}

/// What [`encode`] writes: the index flattened.
pub(crate) struct Flat<'a> {
    pub through: u64,
    pub layout: SpanLayout,
    pub shards: &'a [ShardEntry],
    /// `(count, first_ms, last_ms)` by subject id; count 0 means none.
    pub stats: &'a [(u64, i64, i64)],
    /// Subject → shard numbers (ascending, live only), CSR.
    pub subject_offsets: &'a [u64],
    pub subject_shards: &'a [u32],
    /// Device → communities (ascending), CSR.
    pub device_offsets: &'a [u64],
    pub device_communities: &'a [u32],
}

fn pad8(v: &mut Vec<u8>) {
    while !v.len().is_multiple_of(8) {
        v.push(0);
    }
}

/// The checkpoint's bytes ([`VERSION`]).
pub(crate) fn encode(f: &Flat<'_>) -> Vec<u8> {
    encode_version(f, VERSION)
}

/// `values` packed at `w` bits.
fn packed(values: impl Iterator<Item = u64>, w: u32) -> Vec<u8> {
    let mut out = bits::Writer::default();
    for v in values {
        out.put(v, w);
    }
    out.into_bytes()
}

/// Version 3's statistics: the widths and time base they are packed with, and the
/// section. Count 0 is written as three zero fields (read back as `(0, i64::MAX,
/// i64::MIN)`); otherwise first as `first - base`, last as `last - first`.
fn packed_stats(stats: &[(u64, i64, i64)]) -> (u32, u32, u32, i64, Vec<u8>) {
    let live = || stats.iter().filter(|s| s.0 > 0);
    let base = live().map(|s| s.1).min().unwrap_or(0);
    let from_base = |t: i64| (t as i128 - base as i128) as u64;
    let span = |&(_, first, last): &(u64, i64, i64)| {
        assert!(first <= last, "statistics with first {first} > last {last}");
        (last as i128 - first as i128) as u64
    };
    let cw = bits::width(stats.iter().map(|s| s.0).max().unwrap_or(0));
    let fw = bits::width(live().map(|s| from_base(s.1)).max().unwrap_or(0));
    let lw = bits::width(live().map(span).max().unwrap_or(0));
    let mut out = bits::Writer::default();
    for s in stats {
        let (f, l) = match s.0 {
            0 => (0, 0),
            _ => (from_base(s.1), span(s)),
        };
        out.put(s.0, cw);
        out.put(f, fw);
        out.put(l, lw);
    }
    (cw, fw, lw, base, out.into_bytes())
}

/// The checkpoint's bytes in format `version` (1 and 2 only for tests of reading them).
pub(crate) fn encode_version(f: &Flat<'_>, version: u32) -> Vec<u8> {
    let header_len = header_len(version);
    let mut body: Vec<Vec<u8>> = Vec::with_capacity(SECTIONS + 1);
    let mut s = Vec::with_capacity(f.shards.len() * SHARD_ENTRY);
    for e in f.shards {
        s.extend_from_slice(&e.key.community.to_le_bytes());
        s.extend_from_slice(&e.key.span.to_le_bytes());
        s.extend_from_slice(&(if e.dropped { DROPPED } else { 0 }).to_le_bytes());
        s.extend_from_slice(&0u32.to_le_bytes());
        s.extend_from_slice(&e.events.to_le_bytes());
    }
    body.push(s);
    // Version 3's extra header fields.
    let mut extra = Vec::new();
    if version >= 3 {
        let max = |v: &[u64]| v.iter().copied().max().unwrap_or(0);
        let max32 = |v: &[u32]| v.iter().copied().max().unwrap_or(0) as u64;
        let (cw, fw, lw, base, stats) = packed_stats(f.stats);
        let w = Widths {
            count: cw,
            first: fw,
            last: lw,
            subject_offset: bits::width(max(f.subject_offsets)),
            subject_shard: bits::width(max32(f.subject_shards)),
            device_offset: bits::width(max(f.device_offsets)),
            device_community: bits::width(max32(f.device_communities)),
        };
        body.push(stats);
        body.push(packed(f.subject_offsets.iter().copied(), w.subject_offset));
        body.push(packed(
            f.subject_shards.iter().map(|&x| x as u64),
            w.subject_shard,
        ));
        body.push(packed(f.device_offsets.iter().copied(), w.device_offset));
        body.push(packed(
            f.device_communities.iter().map(|&x| x as u64),
            w.device_community,
        ));
        extra.extend(
            [
                w.count,
                w.first,
                w.last,
                w.subject_offset,
                w.subject_shard,
                w.device_offset,
                w.device_community,
                0,
            ]
            .map(|x| x as u8),
        );
        extra.extend_from_slice(&base.to_le_bytes());
        extra.extend_from_slice(&(f.subject_shards.len() as u64).to_le_bytes());
        extra.extend_from_slice(&(f.device_communities.len() as u64).to_le_bytes());
    } else {
        let mut s = Vec::with_capacity(f.stats.len() * 24);
        for &(count, first, last) in f.stats {
            s.extend_from_slice(&count.to_le_bytes());
            s.extend_from_slice(&first.to_le_bytes());
            s.extend_from_slice(&last.to_le_bytes());
        }
        body.push(s);
        let u64s = |v: &[u64]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let u32s = |v: &[u32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        body.push(u64s(f.subject_offsets));
        body.push(u32s(f.subject_shards));
        body.push(u64s(f.device_offsets));
        body.push(u32s(f.device_communities));
    }

    if version >= 2 {
        // Chunk checksums over the data sections as they will lie (padded to 8).
        let mut data = Vec::with_capacity(body.iter().map(|b| b.len() + 8).sum::<usize>());
        for b in &body {
            data.extend_from_slice(b);
            pad8(&mut data);
        }
        let crcs: Vec<u8> = data
            .chunks(CHUNK)
            .flat_map(|c| crc32fast::hash(c).to_le_bytes())
            .collect();
        body.push(crcs);
    }
    let mut out = Vec::with_capacity(header_len + body.iter().map(|b| b.len() + 8).sum::<usize>());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(header_len as u32).to_le_bytes());
    out.extend_from_slice(&f.through.to_le_bytes());
    out.extend_from_slice(&f.layout.span_ms.to_le_bytes());
    out.extend_from_slice(&f.layout.tz_offset_ms.to_le_bytes());
    out.extend_from_slice(&(f.shards.len() as u64).to_le_bytes());
    out.extend_from_slice(&(f.stats.len() as u64).to_le_bytes());
    out.extend_from_slice(&((f.device_offsets.len().max(1) - 1) as u64).to_le_bytes());
    out.extend_from_slice(&extra);
    debug_assert_eq!(out.len(), fields_len(version));
    let mut at = header_len as u64;
    for b in &body {
        out.extend_from_slice(&at.to_le_bytes());
        out.extend_from_slice(&(b.len() as u64).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(b).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        at += (b.len() as u64).next_multiple_of(8);
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    debug_assert_eq!(out.len(), header_len);
    for b in body {
        out.extend_from_slice(&b);
        pad8(&mut out);
    }
    out
}

/// An array of fixed-width fields read in place: the section's byte offset and width.
#[derive(Clone, Copy, Debug)]
struct Packed {
    at: usize,
    width: u32,
}

impl Packed {
    fn get(&self, b: &[u8], i: u64) -> u64 {
        bits::get(b, self.at, i * self.width as u64, self.width)
    }
    /// The bytes holding entries `lo..hi`.
    fn bytes(&self, lo: u64, hi: u64) -> std::ops::Range<usize> {
        bits::byte_range(self.at, lo, hi, self.width)
    }
}

/// A checkpoint read in place. Opening checks the header, the section table, the
/// small sections (shards, devices) whole, and for version 1 everything; from version
/// 2 the large sections (statistics, subject offsets and shards) are checked a chunk
/// at a time on first read (each chunk's crc32, then each list's order and range as it
/// is read), so opening costs the same whatever the number of subjects. Damage found
/// then is `StorageError::Corrupt` naming the file, returned by the read.
pub(crate) struct Checkpoint {
    path: PathBuf,
    bytes: FileBytes,
    /// The file's format version (an older one is written again as [`VERSION`]).
    pub version: u32,
    pub through: u64,
    pub layout: SpanLayout,
    pub shards: Vec<ShardEntry>,
    pub subjects: usize,
    pub devices: usize,
    sections: [(usize, usize); SECTIONS],
    widths: Widths,
    /// Version 3: the time statistics' first times are offsets from this.
    first_base: i64,
    subject_offsets: Packed,
    subject_shards: Packed,
    /// How many shard numbers the subject lists hold together (the last offset).
    subject_values: u64,
    device_offsets: Packed,
    device_communities: Packed,
    /// From version 2: where the chunk checksums are, and one bit a chunk once
    /// checked. Empty for version 1 (checked whole at open).
    chunk_crcs: usize,
    checked: Box<[AtomicU64]>,
    /// From version 2: one bit a subject whose list was checked (order and range).
    lists_checked: Box<[AtomicU64]>,
}

/// Whether bit `i` of `bits` is set.
fn is_set(bits: &[AtomicU64], i: usize) -> bool {
    bits[i / 64].load(Ordering::Acquire) & (1u64 << (i % 64)) != 0
}
fn mark(bits: &[AtomicU64], i: usize) {
    bits[i / 64].fetch_or(1u64 << (i % 64), Ordering::Release);
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Bytes of a section of `n` entries of `w` bits: version 3 packs them in whole
/// words, earlier versions wrote flat arrays (`w` a multiple of 8, no padding).
fn section_bytes(version: u32, n: u64, w: u32) -> Option<u64> {
    match version {
        3.. => bits::packed_bytes(n, w),
        _ => n.checked_mul(w as u64 / 8),
    }
}

impl Checkpoint {
    fn corrupt(path: &Path, offset: usize, reason: impl Into<String>) -> StorageError {
        StorageError::Corrupt {
            path: path.to_path_buf(),
            offset: offset as u64,
            reason: reason.into(),
        }
    }

    pub fn decode(path: &Path, bytes: FileBytes) -> Result<Checkpoint, StorageError> {
        let b = &bytes[..];
        let bad = |offset: usize, reason: String| Self::corrupt(path, offset, reason);
        if b.len() < 16 {
            return Err(bad(
                b.len(),
                format!("truncated: {} bytes, shorter than any header", b.len()),
            ));
        }
        if b[..8] != MAGIC {
            return Err(bad(0, "not an index checkpoint (bad magic bytes)".into()));
        }
        let version = u32_at(b, 8);
        if !(1..=VERSION).contains(&version) {
            return Err(bad(
                8,
                format!("format version {version}, this build reads 1 to {VERSION}"),
            ));
        }
        let header = header_len(version);
        if u32_at(b, 12) as usize != header {
            return Err(bad(12, "header length is not this version's".into()));
        }
        if b.len() < header {
            return Err(bad(
                b.len(),
                format!("truncated: {} bytes, the header alone is {header}", b.len()),
            ));
        }
        let crc_at = header - 8;
        if crc32fast::hash(&b[..crc_at]) != u32_at(b, crc_at) {
            return Err(bad(crc_at, "header checksum mismatch".into()));
        }
        if u32_at(b, crc_at + 4) != 0 {
            return Err(bad(crc_at + 4, "reserved header bytes are not zero".into()));
        }
        let through = u64_at(b, 16);
        let layout = SpanLayout {
            span_ms: u64_at(b, 24) as i64,
            tz_offset_ms: u64_at(b, 32) as i64,
        };
        let (shards, subjects, devices) = (u64_at(b, 40), u64_at(b, 48), u64_at(b, 56));
        let len = b.len() as u64;
        let (widths, first_base, values) = match version {
            3.. => {
                let w = |i: usize| b[64 + i] as u32;
                let widths = Widths {
                    count: w(0),
                    first: w(1),
                    last: w(2),
                    subject_offset: w(3),
                    subject_shard: w(4),
                    device_offset: w(5),
                    device_community: w(6),
                };
                // Every width 1..=64 (values that are u32 at most 32), the spare byte 0.
                for i in 0..7 {
                    let max = if i == 4 || i == 6 { 32 } else { 64 };
                    if !(1..=max).contains(&w(i)) {
                        return Err(bad(
                            64 + i,
                            format!("field width {} bits (1 to {max} allowed)", w(i)),
                        ));
                    }
                }
                if w(7) != 0 {
                    return Err(bad(71, "reserved header byte is not zero".into()));
                }
                let values = Some((u64_at(b, 80), u64_at(b, 88)));
                (widths, u64_at(b, 72) as i64, values)
            }
            _ => (FLAT_WIDTHS, 0, None),
        };
        // Every count must fit the file before anything is sized by it (every entry
        // takes at least a bit).
        let bits_in_file = len.saturating_mul(8);
        if shards > len / SHARD_ENTRY as u64 || subjects > bits_in_file || devices > bits_in_file {
            return Err(bad(40, "counts larger than the file".into()));
        }
        if values.is_some_and(|(s, d)| s > bits_in_file || d > bits_in_file) {
            return Err(bad(80, "value counts larger than the file".into()));
        }
        let (shards, subjects, devices) = (shards as usize, subjects as usize, devices as usize);
        // Every section follows the one before and fits; from version 2 the last is the
        // chunk checksums.
        let fields = fields_len(version);
        let count = (header - fields - 8) / SECTION_ENTRY;
        let mut table = Vec::with_capacity(count);
        let mut end = header;
        for s in 0..count {
            let at = fields + s * SECTION_ENTRY;
            let (off, n) = (u64_at(b, at), u64_at(b, at + 8));
            let fits = off == end as u64 && off.checked_add(n).is_some_and(|e| e <= len);
            if !fits {
                return Err(bad(
                    at,
                    format!("section {s} {off}+{n} does not follow or fit"),
                ));
            }
            let (off, n) = (off as usize, n as usize);
            table.push((off, n, u32_at(b, at + 16)));
            end = (off + n).next_multiple_of(8);
            if end as u64 > len || b[off + n..end].iter().any(|&x| x != 0) {
                return Err(bad(
                    off + n,
                    format!("padding after section {s} is not zero"),
                ));
            }
        }
        if end as u64 != len {
            return Err(bad(end.min(b.len()), "bytes after the last section".into()));
        }
        let mut sections = [(0usize, 0usize); SECTIONS];
        for s in ALL {
            sections[s as usize] = (table[s as usize].0, table[s as usize].1);
        }
        // Versions 1 and 2 give the value counts by their sections' lengths.
        let (subject_values, device_values) = match values {
            Some(v) => v,
            None => {
                let (s, d) = (
                    sections[Section::SubjectShards as usize].1,
                    sections[Section::DeviceCommunities as usize].1,
                );
                if s % 4 != 0 || d % 4 != 0 {
                    return Err(bad(
                        sections[Section::SubjectShards as usize].0,
                        "values of a partial u32".into(),
                    ));
                }
                ((s / 4) as u64, (d / 4) as u64)
            }
        };
        let w = widths;
        let want = [
            Some(shards as u64 * SHARD_ENTRY as u64),
            section_bytes(version, subjects as u64, w.stats()),
            section_bytes(version, subjects as u64 + 1, w.subject_offset),
            section_bytes(version, subject_values, w.subject_shard),
            section_bytes(version, devices as u64 + 1, w.device_offset),
            section_bytes(version, device_values, w.device_community),
        ];
        for s in ALL {
            let (at, n) = sections[s as usize];
            if want[s as usize] != Some(n as u64) {
                return Err(bad(
                    at,
                    format!(
                        "section {s:?} is {n} bytes, {:?} expected",
                        want[s as usize]
                    ),
                ));
            }
        }
        // Checked whole now: every section in version 1; from version 2 the small ones
        // and the chunk checksums.
        let whole: &[usize] = match version {
            1 => &[0, 1, 2, 3, 4, 5],
            _ => &[0, 4, 5, 6],
        };
        for &s in whole {
            let (off, n, crc) = table[s];
            if crc32fast::hash(&b[off..off + n]) != crc {
                return Err(bad(off, format!("section {s} checksum mismatch")));
            }
        }
        let (chunk_crcs, chunks) = match version {
            1 => (0, 0),
            _ => {
                let data = table[SECTIONS].0 - header;
                let (off, n, _) = table[SECTIONS];
                if n != data.div_ceil(CHUNK) * 4 {
                    return Err(bad(
                        off,
                        format!("{n} bytes of chunk checksums for {data} bytes"),
                    ));
                }
                (off, data.div_ceil(CHUNK))
            }
        };
        let packed = |s: Section, width: u32| Packed {
            at: sections[s as usize].0,
            width,
        };
        let mut cp = Checkpoint {
            path: path.to_path_buf(),
            bytes,
            version,
            through,
            layout,
            shards: Vec::with_capacity(shards),
            subjects,
            devices,
            sections,
            widths,
            first_base,
            subject_offsets: packed(Section::SubjectOffsets, w.subject_offset),
            subject_shards: packed(Section::SubjectShards, w.subject_shard),
            subject_values,
            device_offsets: packed(Section::DeviceOffsets, w.device_offset),
            device_communities: packed(Section::DeviceCommunities, w.device_community),
            chunk_crcs,
            checked: (0..chunks.div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
            lists_checked: match version {
                1 => Box::new([]),
                _ => (0..subjects.div_ceil(64))
                    .map(|_| AtomicU64::new(0))
                    .collect(),
            },
        };
        let (at, _) = sections[Section::Shards as usize];
        for i in 0..shards {
            let e = at + i * SHARD_ENTRY;
            let flags = u32_at(&cp.bytes, e + 8);
            let events = u64_at(&cp.bytes, e + 16);
            if flags & !DROPPED != 0 || (flags & DROPPED != 0 && events != 0) {
                return Err(Self::corrupt(
                    path,
                    e,
                    format!("shard {i}: bad flags {flags}"),
                ));
            }
            cp.shards.push(ShardEntry {
                key: ShardKey {
                    community: u32_at(&cp.bytes, e),
                    span: u32_at(&cp.bytes, e + 4) as i32,
                },
                dropped: flags & DROPPED != 0,
                events,
            });
        }
        cp.check_csr(
            cp.device_offsets,
            cp.device_communities,
            devices,
            device_values,
            |_| true,
        )?;
        match version {
            1 => cp.check_subjects()?,
            _ => {
                // The subject offsets' ends: the first 0, the last every value.
                let o = cp.subject_offsets;
                cp.check_chunks(o.bytes(0, 1))?;
                let n = subjects as u64;
                cp.check_chunks(o.bytes(n, n + 1))?;
                if o.get(&cp.bytes, 0) != 0 || o.get(&cp.bytes, n) != subject_values {
                    return Err(Self::corrupt(
                        path,
                        o.at,
                        "subject offsets do not run from 0 to the values' count",
                    ));
                }
            }
        }
        Ok(cp)
    }

    /// Checks every byte and every list now (what version 1 did at open): for `sightline
    /// check` and tests. Later versions' reads check the same things a part at a time.
    pub fn check_all(&self) -> Result<(), StorageError> {
        if self.chunk_crcs != 0 {
            self.check_chunks(self.sections[0].0..self.chunk_crcs)?;
            self.check_subjects()?;
        }
        Ok(())
    }

    /// The subject lists and statistics, whole.
    fn check_subjects(&self) -> Result<(), StorageError> {
        self.check_csr(
            self.subject_offsets,
            self.subject_shards,
            self.subjects,
            self.subject_values,
            |n| (n as usize) < self.shards.len() && !self.shards[n as usize].dropped,
        )?;
        for s in 0..self.subjects {
            self.stats(s)?;
        }
        Ok(())
    }

    /// From version 2: checks each chunk `range` of the file touches that is not yet
    /// checked (no-op for version 1, checked whole at open).
    fn check_chunks(&self, range: std::ops::Range<usize>) -> Result<(), StorageError> {
        if self.chunk_crcs == 0 || range.is_empty() {
            return Ok(());
        }
        let start = self.sections[0].0;
        let (first, last) = (
            (range.start - start) / CHUNK,
            (range.end - 1 - start) / CHUNK,
        );
        for c in first..=last {
            if is_set(&self.checked, c) {
                continue;
            }
            let from = start + c * CHUNK;
            let to = (from + CHUNK).min(self.chunk_crcs);
            if crc32fast::hash(&self.bytes[from..to])
                != u32_at(&self.bytes, self.chunk_crcs + c * 4)
            {
                return Err(Self::corrupt(
                    &self.path,
                    from,
                    format!("chunk {c} checksum mismatch"),
                ));
            }
            mark(&self.checked, c);
        }
        Ok(())
    }

    /// Offsets ascending from 0 to the values' count `total`; each list ascending and
    /// `ok`.
    fn check_csr(
        &self,
        offsets: Packed,
        values: Packed,
        n: usize,
        total: u64,
        ok: impl Fn(u32) -> bool,
    ) -> Result<(), StorageError> {
        let b = &self.bytes[..];
        let mut prev = 0u64;
        if offsets.get(b, 0) != 0 {
            return Err(Self::corrupt(
                &self.path,
                offsets.at,
                "offsets do not start at 0",
            ));
        }
        for i in 1..=n {
            let o = offsets.get(b, i as u64);
            if o < prev || o > total {
                return Err(Self::corrupt(
                    &self.path,
                    offsets.bytes(i as u64, i as u64 + 1).start,
                    "offsets out of order",
                ));
            }
            self.check_list(values, prev, o, i - 1, &ok)?;
            prev = o;
        }
        if prev != total {
            return Err(Self::corrupt(
                &self.path,
                offsets.at,
                "offsets do not cover the values",
            ));
        }
        Ok(())
    }

    /// List `i`, values `lo..hi` of `values`: ascending and `ok`.
    fn check_list(
        &self,
        values: Packed,
        lo: u64,
        hi: u64,
        i: usize,
        ok: &impl Fn(u32) -> bool,
    ) -> Result<(), StorageError> {
        let b = &self.bytes[..];
        let mut last: Option<u64> = None;
        for j in lo..hi {
            let v = values.get(b, j);
            if last.is_some_and(|l| l >= v) || v > u32::MAX as u64 || !ok(v as u32) {
                return Err(Self::corrupt(
                    &self.path,
                    values.bytes(j, j + 1).start,
                    format!("entry {} of list {i}: {v} out of order or range", j - lo),
                ));
            }
            last = Some(v);
        }
        Ok(())
    }

    /// The live shard numbers of `subject`, ascending (empty past the end); from
    /// version 2 its chunks and the list itself are checked on this first read.
    pub fn subject_shards(&self, subject: u32) -> Result<CsrList<'_>, StorageError> {
        if subject as usize >= self.subjects {
            return Ok(CsrList::EMPTY);
        }
        let (o, v) = (self.subject_offsets, self.subject_shards);
        let s = subject as u64;
        let at = o.bytes(s, s + 2);
        self.check_chunks(at.clone())?;
        let b = &self.bytes[..];
        let (lo, hi) = (o.get(b, s), o.get(b, s + 1));
        if self.chunk_crcs != 0 && !is_set(&self.lists_checked, subject as usize) {
            if lo > hi || hi > self.subject_values {
                return Err(Self::corrupt(
                    &self.path,
                    at.start,
                    format!("subject {subject}: offsets {lo}..{hi} out of order or range"),
                ));
            }
            self.check_chunks(v.bytes(lo, hi))?;
            let shards = &self.shards;
            self.check_list(v, lo, hi, subject as usize, &|n| {
                (n as usize) < shards.len() && !shards[n as usize].dropped
            })?;
            mark(&self.lists_checked, subject as usize);
        }
        Ok(CsrList {
            b,
            values: v,
            lo,
            len: (hi - lo) as usize,
        })
    }

    /// The communities of `device`, ascending (empty past the end; checked at open).
    pub fn device_communities(&self, device: u32) -> CsrList<'_> {
        if device as usize >= self.devices {
            return CsrList::EMPTY;
        }
        let b = &self.bytes[..];
        let d = device as u64;
        let (lo, hi) = (
            self.device_offsets.get(b, d),
            self.device_offsets.get(b, d + 1),
        );
        CsrList {
            b,
            values: self.device_communities,
            lo,
            len: (hi - lo) as usize,
        }
    }

    /// The bytes holding `subject`'s statistics.
    fn stats_bytes(&self, subject: usize) -> std::ops::Range<usize> {
        let s = subject as u64;
        bits::byte_range(
            self.sections[Section::Stats as usize].0,
            s,
            s + 1,
            self.widths.stats(),
        )
    }

    /// `(count, first_ms, last_ms)` of `subject` (< `subjects`), checked against its
    /// list: a count exactly when it has shards, first ≤ last then. Count 0 reads as
    /// `(0, i64::MAX, i64::MIN)` from version 3 (as written before).
    pub fn stats(&self, subject: usize) -> Result<(u64, i64, i64), StorageError> {
        let range = self.stats_bytes(subject);
        self.check_chunks(range.clone())?;
        let b = &self.bytes[..];
        let w = self.widths;
        let (at, bit) = (
            self.sections[Section::Stats as usize].0,
            subject as u64 * w.stats() as u64,
        );
        let count = bits::get(b, at, bit, w.count);
        let f = bits::get(b, at, bit + w.count as u64, w.first);
        let l = bits::get(b, at, bit + (w.count + w.first) as u64, w.last);
        let bad = |why: &str| {
            Self::corrupt(
                &self.path,
                range.start,
                format!("subject {subject}: statistics {why}"),
            )
        };
        let (first, last) = match self.version {
            1 | 2 => (f as i64, l as i64),
            _ if count == 0 => {
                if f != 0 || l != 0 {
                    return Err(bad("of no events with times"));
                }
                (i64::MAX, i64::MIN)
            }
            _ => {
                let first = self.first_base as i128 + f as i128;
                let last = first + l as i128;
                match (i64::try_from(first), i64::try_from(last)) {
                    (Ok(first), Ok(last)) => (first, last),
                    _ => return Err(bad("past the range of a time")),
                }
            }
        };
        let listed = !self.subject_shards(subject as u32)?.is_empty();
        if (count == 0) == listed || (count > 0 && first > last) {
            return Err(bad("disagree with its shards"));
        }
        Ok((count, first, last))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The subjects and devices it holds.
    pub(crate) fn counts(&self) -> (usize, usize) {
        (self.subjects, self.devices)
    }
}

/// `bytes` with every checksum of a checkpoint recomputed over the bytes it covers,
/// as far as the header's version and section table place them inside the file: the
/// chunk checksums (version 2 on), then each section's, then the header's. `None`
/// for bytes too short for their version's header or of no version this build reads.
/// For the fuzzer: a mutated byte then reaches the decoding behind the checksums.
pub(crate) fn resealed(bytes: &[u8]) -> Option<Vec<u8>> {
    let version = u32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?);
    if !(1..=VERSION).contains(&version) || bytes.len() < header_len(version) {
        return None;
    }
    let (header, fields) = (header_len(version), fields_len(version));
    let mut b = bytes.to_vec();
    let at = sightline_storage::fuzzing::Sealed {
        header,
        table: fields,
        sections: (header - fields - 8) / SECTION_ENTRY,
        unsealed: &[],
        chunks: (version >= 2).then_some((SECTIONS, CHUNK)),
    };
    sightline_storage::fuzzing::reseal(&mut b, &at);
    Some(b)
}

/// A list of shard numbers or community ids read in place (fixed-width fields).
#[derive(Clone, Copy)]
pub(crate) struct CsrList<'a> {
    b: &'a [u8],
    values: Packed,
    lo: u64,
    len: usize,
}

impl<'a> CsrList<'a> {
    const EMPTY: CsrList<'static> = CsrList {
        b: &[],
        values: Packed { at: 0, width: 0 },
        lo: 0,
        len: 0,
    };

    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn get(&self, i: usize) -> u32 {
        debug_assert!(i < self.len);
        self.values.get(self.b, self.lo + i as u64) as u32
    }
    pub fn iter(self) -> impl Iterator<Item = u32> + 'a {
        (0..self.len).map(move |i| self.get(i))
    }
    /// Whether the (ascending) list holds `v`.
    pub fn contains(&self, v: u32) -> bool {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.get(mid).cmp(&v) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return true,
            }
        }
        false
    }
}

#[cfg(test)]
mod tests;
