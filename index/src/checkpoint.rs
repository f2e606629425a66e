//! The index checkpoint file (`index/subjects.idx`): the global index as of one
//! sequence number, so a store reopens by reading it instead of every row. The layout
//! is in `storage/FORMAT.md` ("Index checkpoint"); this module writes and checks it.
//!
//! Sections are flat little-endian arrays read in place from the map (subject →
//! shards is CSR: offsets, then shard numbers), so loading costs a checksum pass and
//! a structural pass, not a parse into millions of small allocations.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sightline_storage::io::FileBytes;
use sightline_storage::{ShardKey, SpanLayout, StorageError};

pub(crate) const MAGIC: [u8; 8] = *b"SLINDEX\0";
/// Version 2 adds the chunk checksums (section 6), so the large sections are checked
/// a chunk at a time on first read instead of whole at open. Version 1 is still read
/// (checked whole at open).
pub(crate) const VERSION: u32 = 2;
/// Header: fixed fields, then the section table, then its checksum.
const FIELDS: usize = 64;
/// The data sections (both versions).
const SECTIONS: usize = 6;
const SECTION_ENTRY: usize = 24;
const fn header_len(version: u32) -> usize {
    let sections = match version {
        1 => SECTIONS,
        _ => SECTIONS + 1,
    };
    FIELDS + sections * SECTION_ENTRY + 8
}
/// Version 2: the data sections (from the header's end to the chunk checksums) are
/// covered by one crc32 per chunk of this many bytes (the last one shorter).
pub(crate) const CHUNK: usize = 64 << 10;
/// A shard table entry: community, span, flags, reserved, events.
const SHARD_ENTRY: usize = 24;
/// A statistics entry: count, first, last.
const STATS_ENTRY: usize = 24;
/// `flags` bit: the shard was dropped by retention (its number stays taken).
pub(crate) const DROPPED: u32 = 1;

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
    /// `(count, first_ms, last_ms)` by subject id.
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

/// The checkpoint's bytes in format `version` (1 only for tests of reading it).
pub(crate) fn encode_version(f: &Flat<'_>, version: u32) -> Vec<u8> {
    let header_len = header_len(version);
    let mut body: Vec<Vec<u8>> = Vec::with_capacity(SECTIONS);
    let mut s = Vec::with_capacity(f.shards.len() * SHARD_ENTRY);
    for e in f.shards {
        s.extend_from_slice(&e.key.community.to_le_bytes());
        s.extend_from_slice(&e.key.span.to_le_bytes());
        s.extend_from_slice(&(if e.dropped { DROPPED } else { 0 }).to_le_bytes());
        s.extend_from_slice(&0u32.to_le_bytes());
        s.extend_from_slice(&e.events.to_le_bytes());
    }
    body.push(s);
    let mut s = Vec::with_capacity(f.stats.len() * STATS_ENTRY);
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
    debug_assert_eq!(out.len(), FIELDS);
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

/// A checkpoint read in place. Opening checks the header, the section table, the
/// small sections (shards, devices) whole, and for version 1 everything; a version 2
/// file's large sections (statistics, subject offsets and shards) are checked a chunk
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
    /// Version 2: where the chunk checksums are, and one bit a chunk once checked.
    /// Empty for version 1 (checked whole at open).
    chunk_crcs: usize,
    checked: Box<[AtomicU64]>,
    /// Version 2: one bit a subject whose list was checked (order and range).
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
        if version != 1 && version != VERSION {
            return Err(bad(
                8,
                format!("format version {version}, this build reads 1 and {VERSION}"),
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
        // Every count must fit the file before anything is sized by it.
        let len = b.len() as u64;
        if shards > len / SHARD_ENTRY as u64
            || subjects > len / STATS_ENTRY as u64
            || devices > len / 8
        {
            return Err(bad(40, "counts larger than the file".into()));
        }
        let (shards, subjects, devices) = (shards as usize, subjects as usize, devices as usize);
        // Every section follows the one before and fits; version 2's last is the chunk
        // checksums.
        let count = (header - FIELDS - 8) / SECTION_ENTRY;
        let mut table = Vec::with_capacity(count);
        let mut end = header;
        for s in 0..count {
            let at = FIELDS + s * SECTION_ENTRY;
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
        let want = [
            shards * SHARD_ENTRY,
            subjects * STATS_ENTRY,
            (subjects + 1) * 8,
            usize::MAX,
            (devices + 1) * 8,
            usize::MAX,
        ];
        for s in ALL {
            let w = want[s as usize];
            if w != usize::MAX && sections[s as usize].1 != w {
                return Err(bad(
                    sections[s as usize].0,
                    format!(
                        "section {s:?} is {} bytes, {w} expected",
                        sections[s as usize].1
                    ),
                ));
            }
        }
        if sections[Section::SubjectShards as usize].1 % 4 != 0
            || sections[Section::DeviceCommunities as usize].1 % 4 != 0
        {
            return Err(bad(
                sections[Section::SubjectShards as usize].0,
                "values of a partial u32".into(),
            ));
        }
        // Checked whole now: every section in version 1; in version 2 the small ones and
        // the chunk checksums.
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
            Section::DeviceOffsets,
            Section::DeviceCommunities,
            devices,
            |_| true,
        )?;
        match version {
            1 => cp.check_subjects()?,
            _ => {
                // The subject offsets' ends: the first 0, the last every value.
                let (oat, _) = sections[Section::SubjectOffsets as usize];
                let total = (sections[Section::SubjectShards as usize].1 / 4) as u64;
                cp.check_chunks(oat..oat + 8)?;
                cp.check_chunks(oat + subjects * 8..oat + subjects * 8 + 8)?;
                if u64_at(&cp.bytes, oat) != 0 || u64_at(&cp.bytes, oat + subjects * 8) != total {
                    return Err(Self::corrupt(
                        path,
                        oat,
                        "subject offsets do not run from 0 to the values' count",
                    ));
                }
            }
        }
        Ok(cp)
    }

    /// Checks every byte and every list now (what version 1 did at open): for `sightline
    /// check` and tests. Version 2 reads check the same things a part at a time.
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
            Section::SubjectOffsets,
            Section::SubjectShards,
            self.subjects,
            |n| (n as usize) < self.shards.len() && !self.shards[n as usize].dropped,
        )?;
        for s in 0..self.subjects {
            self.stats(s)?;
        }
        Ok(())
    }

    /// Version 2: checks each chunk `range` of the file touches that is not yet
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

    /// Offsets ascending from 0 to the values' count; each list ascending and `ok`.
    fn check_csr(
        &self,
        offsets: Section,
        values: Section,
        n: usize,
        ok: impl Fn(u32) -> bool,
    ) -> Result<(), StorageError> {
        let (oat, _) = self.sections[offsets as usize];
        let (vat, vlen) = self.sections[values as usize];
        let total = (vlen / 4) as u64;
        let b = &self.bytes[..];
        let mut prev = 0u64;
        if u64_at(b, oat) != 0 {
            return Err(Self::corrupt(&self.path, oat, "offsets do not start at 0"));
        }
        for i in 1..=n {
            let o = u64_at(b, oat + i * 8);
            if o < prev || o > total {
                return Err(Self::corrupt(
                    &self.path,
                    oat + i * 8,
                    "offsets out of order",
                ));
            }
            self.check_list(vat, prev, o, i - 1, &ok)?;
            prev = o;
        }
        if prev != total {
            return Err(Self::corrupt(
                &self.path,
                oat,
                "offsets do not cover the values",
            ));
        }
        Ok(())
    }

    /// List `i`, values `lo..hi` of the section at `vat`: ascending and `ok`.
    fn check_list(
        &self,
        vat: usize,
        lo: u64,
        hi: u64,
        i: usize,
        ok: &impl Fn(u32) -> bool,
    ) -> Result<(), StorageError> {
        let b = &self.bytes[..];
        let mut last: Option<u32> = None;
        for j in lo..hi {
            let v = u32_at(b, vat + j as usize * 4);
            if last.is_some_and(|l| l >= v) || !ok(v) {
                return Err(Self::corrupt(
                    &self.path,
                    vat + j as usize * 4,
                    format!("entry {} of list {i}: {v} out of order or range", j - lo),
                ));
            }
            last = Some(v);
        }
        Ok(())
    }

    /// The live shard numbers of `subject`, ascending (empty past the end); in
    /// version 2 its chunks and the list itself are checked on this first read.
    pub fn subject_shards(&self, subject: u32) -> Result<CsrList<'_>, StorageError> {
        if subject as usize >= self.subjects {
            return Ok(CsrList(&[]));
        }
        let (oat, _) = self.sections[Section::SubjectOffsets as usize];
        let (vat, vlen) = self.sections[Section::SubjectShards as usize];
        let at = oat + subject as usize * 8;
        self.check_chunks(at..at + 16)?;
        let b = &self.bytes[..];
        let (lo, hi) = (u64_at(b, at), u64_at(b, at + 8));
        if self.chunk_crcs != 0 && !is_set(&self.lists_checked, subject as usize) {
            if lo > hi || hi > (vlen / 4) as u64 {
                return Err(Self::corrupt(
                    &self.path,
                    at,
                    format!("subject {subject}: offsets {lo}..{hi} out of order or range"),
                ));
            }
            self.check_chunks(vat + lo as usize * 4..vat + hi as usize * 4)?;
            let shards = &self.shards;
            self.check_list(vat, lo, hi, subject as usize, &|n| {
                (n as usize) < shards.len() && !shards[n as usize].dropped
            })?;
            mark(&self.lists_checked, subject as usize);
        }
        Ok(CsrList(&b[vat + lo as usize * 4..vat + hi as usize * 4]))
    }

    /// The communities of `device`, ascending (empty past the end; checked at open).
    pub fn device_communities(&self, device: u32) -> CsrList<'_> {
        if device as usize >= self.devices {
            return CsrList(&[]);
        }
        let (oat, _) = self.sections[Section::DeviceOffsets as usize];
        let (vat, _) = self.sections[Section::DeviceCommunities as usize];
        let b = &self.bytes[..];
        let at = oat + device as usize * 8;
        let (lo, hi) = (u64_at(b, at) as usize, u64_at(b, at + 8) as usize);
        CsrList(&b[vat + lo * 4..vat + hi * 4])
    }

    /// `(count, first_ms, last_ms)` of `subject` (< `subjects`), checked against its
    /// list: a count exactly when it has shards, first ≤ last then.
    pub fn stats(&self, subject: usize) -> Result<(u64, i64, i64), StorageError> {
        let at = self.sections[Section::Stats as usize].0 + subject * STATS_ENTRY;
        self.check_chunks(at..at + STATS_ENTRY)?;
        let b = &self.bytes[..];
        let (count, first, last) = (
            u64_at(b, at),
            u64_at(b, at + 8) as i64,
            u64_at(b, at + 16) as i64,
        );
        let listed = !self.subject_shards(subject as u32)?.is_empty();
        if (count == 0) == listed || (count > 0 && first > last) {
            return Err(Self::corrupt(
                &self.path,
                at,
                format!("subject {subject}: statistics disagree with its shards"),
            ));
        }
        Ok((count, first, last))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A list of u32 read in place.
#[derive(Clone, Copy)]
pub(crate) struct CsrList<'a>(&'a [u8]);

impl<'a> CsrList<'a> {
    pub fn len(&self) -> usize {
        self.0.len() / 4
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn get(&self, i: usize) -> u32 {
        u32_at(self.0, i * 4)
    }
    pub fn iter(self) -> impl Iterator<Item = u32> + 'a {
        self.0
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
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
mod tests {
    //! The golden checkpoints: fixed contents whose encodings are checked in at
    //! `index/tests/data/golden-v{1,2}.idx`, so a layout change is deliberate. Write a
    //! new version's with `SIGHTLINE_BLESS=1 cargo test -p sightline-index golden`
    //! after bumping `VERSION` (and `storage/FORMAT.md`); older ones stay, read.

    use super::*;

    fn golden(version: u32) -> Vec<u8> {
        let shards = [
            ShardEntry {
                key: ShardKey {
                    community: 0,
                    span: 18_871,
                },
                dropped: true,
                events: 0,
            },
            ShardEntry {
                key: ShardKey {
                    community: 0,
                    span: 18_872,
                },
                dropped: false,
                events: 3,
            },
            ShardEntry {
                key: ShardKey {
                    community: 1,
                    span: 18_872,
                },
                dropped: false,
                events: 1,
            },
        ];
        let t = 1_630_512_000_000;
        encode_version(
            &Flat {
                through: 9,
                layout: SpanLayout {
                    span_ms: 86_400_000,
                    tz_offset_ms: 8 * 3_600_000,
                },
                shards: &shards,
                stats: &[(3, t, t + 50), (0, i64::MAX, i64::MIN), (1, t + 7, t + 7)],
                subject_offsets: &[0, 2, 2, 3],
                subject_shards: &[1, 2, 1],
                device_offsets: &[0, 1, 2],
                device_communities: &[0, 1],
            },
            version,
        )
    }

    fn decoded(bytes: Vec<u8>) -> Result<Checkpoint, StorageError> {
        Checkpoint::decode(Path::new("golden.idx"), FileBytes::Owned(bytes))
    }

    /// Decoded and every part read: what a reader meets sooner or later.
    fn read_whole(bytes: Vec<u8>) -> Result<Checkpoint, StorageError> {
        let cp = decoded(bytes)?;
        cp.check_all()?;
        for s in 0..cp.subjects {
            cp.stats(s)?;
            cp.subject_shards(s as u32)?;
        }
        Ok(cp)
    }

    #[test]
    fn golden_checkpoint_bytes_are_stable_and_read_back() {
        for version in [1, VERSION] {
            let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join(format!("tests/data/golden-v{version}.idx"));
            let bytes = golden(version);
            if std::env::var_os("SIGHTLINE_BLESS").is_some() && version == VERSION {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &bytes).unwrap();
            }
            let on_disk = std::fs::read(&path).expect("the golden checkpoint is checked in");
            assert_eq!(
                bytes, on_disk,
                "the version {version} layout changed: bump VERSION"
            );
            let cp = decoded(on_disk).unwrap();
            assert_eq!(cp.through, 9);
            assert_eq!(cp.subjects, 3);
            let list = |s| cp.subject_shards(s).unwrap().iter().collect::<Vec<_>>();
            assert_eq!(list(0), [1, 2]);
            assert!(list(1).is_empty());
            assert_eq!(
                cp.stats(2).unwrap(),
                (1, 1_630_512_000_007, 1_630_512_000_007)
            );
            assert_eq!(cp.device_communities(1).iter().collect::<Vec<_>>(), [1]);
            assert!(cp.shards[0].dropped);
        }
    }

    #[test]
    fn every_damaged_byte_or_truncation_is_refused() {
        for version in [1, VERSION] {
            let good = golden(version);
            for i in 0..good.len() {
                let mut bad = good.clone();
                bad[i] ^= 0x04;
                // Padding bytes are outside every checksum and may change freely only
                // if the reader ignores them; it does not: they must be zero.
                assert!(
                    read_whole(bad).is_err(),
                    "version {version}: flipped byte {i} accepted"
                );
            }
            for n in 0..good.len() {
                assert!(
                    decoded(good[..n].to_vec()).is_err(),
                    "version {version}: cut at {n} accepted"
                );
            }
        }
    }

    /// A checkpoint of `n` subjects, subject `s` in shard `s % 3` (dropped shards
    /// none): several chunks of statistics and offsets.
    fn many(n: usize) -> Vec<u8> {
        let shards: Vec<ShardEntry> = (0..3)
            .map(|c| ShardEntry {
                key: ShardKey {
                    community: c,
                    span: 18_872,
                },
                dropped: false,
                events: 1,
            })
            .collect();
        let stats: Vec<(u64, i64, i64)> = (0..n).map(|s| (1, s as i64, s as i64)).collect();
        let offsets: Vec<u64> = (0..=n as u64).collect();
        let lists: Vec<u32> = (0..n as u32).map(|s| s % 3).collect();
        encode(&Flat {
            through: 1,
            layout: SpanLayout {
                span_ms: 86_400_000,
                tz_offset_ms: 0,
            },
            shards: &shards,
            stats: &stats,
            subject_offsets: &offsets,
            subject_shards: &lists,
            device_offsets: &[0],
            device_communities: &[],
        })
    }

    #[test]
    fn large_sections_are_checked_a_chunk_at_a_time_when_first_read() {
        let n = 20_000;
        let good = many(n);
        let cp = decoded(good.clone()).unwrap();
        assert!(cp.checked.len() * 64 >= 8, "{} chunks", cp.checked.len());
        // Nothing of the statistics was read to open it.
        let stats_at = cp.sections[Section::Stats as usize].0;
        let chunk_of = |at: usize| (at - cp.sections[0].0) / CHUNK;
        let middle = n / 2;
        assert!(!is_set(
            &cp.checked,
            chunk_of(stats_at + middle * STATS_ENTRY)
        ));
        assert_eq!(cp.stats(middle).unwrap(), (1, middle as i64, middle as i64));
        assert!(is_set(
            &cp.checked,
            chunk_of(stats_at + middle * STATS_ENTRY)
        ));
        cp.check_all().unwrap();

        // A flipped byte in the middle subject's statistics: the file opens, other
        // subjects read, that one is the error naming the file and the chunk.
        let mut bad = good;
        bad[stats_at + middle * STATS_ENTRY + 3] ^= 1;
        let cp = decoded(bad).unwrap();
        assert_eq!(cp.stats(0).unwrap(), (1, 0, 0));
        assert_eq!(cp.subject_shards(middle as u32).unwrap().len(), 1);
        let e = cp.stats(middle).unwrap_err().to_string();
        assert!(
            e.contains("golden.idx") && e.contains("checksum mismatch"),
            "{e}"
        );
        assert!(cp.check_all().is_err());
    }
}
