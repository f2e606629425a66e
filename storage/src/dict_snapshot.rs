//! The dictionary snapshot (`dict.snap`): the dictionaries as of an offset of
//! `dict.log`, laid out to be used in place through a memory map, so opening a store
//! reads only the log records after that offset (storage/FORMAT.md, "Dictionary
//! snapshot").
//!
//! A snapshot is derived data: a missing, stale, damaged or other-version one is
//! ignored (the whole log is loaded, as without one) and written again.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Result, StorageError};
use crate::io::{FileBytes, FileIo};

pub const MAGIC: &[u8; 8] = b"SLDSNAP\0";
/// Version 2 added the chunk checksums (section 10): the data is checked a chunk at a
/// time on first read instead of whole at open. A version 1 file is ignored (and
/// written again), as any other version.
pub const VERSION: u32 = 2;
/// Sections: for communities, devices and subjects each `ends`, `bytes`, `slots`,
/// then the subjects' kind codes, then the chunk checksums.
pub const SECTIONS: usize = 11;
/// The data sections (all but the chunk checksums).
const DATA_SECTIONS: usize = SECTIONS - 1;
/// The data (from the header's end to the chunk checksums) is covered by one crc32 per
/// chunk of this many bytes (the last one shorter).
pub const CHUNK: usize = 64 << 10;
const TABLE_AT: usize = 56;
const SECTION_ENTRY: usize = 24;
pub const HEADER_BYTES: usize = TABLE_AT + SECTIONS * SECTION_ENTRY + 8;
/// Bytes at the end of the covered log prefix whose CRC the header keeps: a log that
/// is not the one the snapshot was made from is told apart without reading it all.
pub const TAIL_CHECK_BYTES: u64 = 4096;
/// A slot table has at least twice as many slots as entries (linear probing stays short).
const MIN_SLOTS: usize = 8;

/// Which of the three string tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Communities = 0,
    Devices = 1,
    Subjects = 2,
}

/// The hash of a string in a slot table: fixed by this format (not a library's hash,
/// which may change between versions), keyed by the snapshot's seed. `kind` is the
/// subject's kind code, 0 for communities and devices.
pub fn hash(seed: u64, kind: u8, s: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = seed ^ (u64::from(kind) << 56) ^ (s.len() as u64).wrapping_mul(K);
    let mut chunks = s.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        h = (h ^ w).wrapping_mul(K).rotate_left(29);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut b = [0u8; 8];
        b[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(b)).wrapping_mul(K).rotate_left(29);
    }
    // murmur3's finaliser: every input bit reaches the low bits the table uses.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// One string table to write: strings by id (and kind codes for subjects).
pub struct TableIn<'i, 's> {
    pub strings: &'i mut dyn Iterator<Item = (u8, &'s str)>,
    pub len: usize,
}

fn slots_for(len: usize) -> usize {
    (len * 2).max(MIN_SLOTS).next_power_of_two()
}

fn pad8(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(8) {
        out.push(0);
    }
}

/// Encodes a snapshot covering `log_len` bytes of the log (`tail_crc` over its last
/// `tail_len` of them) from the three tables' strings, in id order.
pub fn encode(log_len: u64, tail: (u32, u32), seed: u64, tables: [TableIn<'_, '_>; 3]) -> Vec<u8> {
    let mut out = vec![0u8; HEADER_BYTES];
    let mut sections: Vec<(u64, u64, u32)> = Vec::with_capacity(SECTIONS);
    let mut kinds: Vec<u8> = Vec::new();
    let mut counts = [0u32; 3];
    for (t, table) in tables.into_iter().enumerate() {
        let mut ends: Vec<u64> = Vec::with_capacity(table.len);
        let mut bytes: Vec<u8> = Vec::new();
        let slots_n = slots_for(table.len);
        let mut slots = vec![0u32; slots_n];
        let mask = slots_n - 1;
        for (id, (kind, s)) in table.strings.enumerate() {
            bytes.extend_from_slice(s.as_bytes());
            ends.push(bytes.len() as u64);
            if t == Part::Subjects as usize {
                kinds.push(kind);
            }
            let mut i = hash(seed, kind, s.as_bytes()) as usize & mask;
            while slots[i] != 0 {
                i = (i + 1) & mask;
            }
            slots[i] = u32::try_from(id + 1).expect("fewer than 2^32 - 1 entries");
        }
        assert_eq!(ends.len(), table.len, "a table's length is its strings'");
        counts[t] = ends.len() as u32;
        let ends_bytes: Vec<u8> = ends.iter().flat_map(|e| e.to_le_bytes()).collect();
        let slot_bytes: Vec<u8> = slots.iter().flat_map(|e| e.to_le_bytes()).collect();
        for part in [&ends_bytes, &bytes, &slot_bytes] {
            pad8(&mut out);
            sections.push((out.len() as u64, part.len() as u64, crc32fast::hash(part)));
            out.extend_from_slice(part);
        }
    }
    pad8(&mut out);
    sections.push((
        out.len() as u64,
        kinds.len() as u64,
        crc32fast::hash(&kinds),
    ));
    out.extend_from_slice(&kinds);
    pad8(&mut out);
    let crcs: Vec<u8> = out[HEADER_BYTES..]
        .chunks(CHUNK)
        .flat_map(|c| crc32fast::hash(c).to_le_bytes())
        .collect();
    sections.push((out.len() as u64, crcs.len() as u64, crc32fast::hash(&crcs)));
    out.extend_from_slice(&crcs);

    let h = &mut out[..HEADER_BYTES];
    h[0..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(HEADER_BYTES as u32).to_le_bytes());
    h[16..24].copy_from_slice(&log_len.to_le_bytes());
    h[24..28].copy_from_slice(&tail.0.to_le_bytes());
    h[28..32].copy_from_slice(&tail.1.to_le_bytes());
    h[32..40].copy_from_slice(&seed.to_le_bytes());
    for (i, c) in counts.iter().enumerate() {
        h[40 + 4 * i..44 + 4 * i].copy_from_slice(&c.to_le_bytes());
    }
    for (i, (off, len, crc)) in sections.iter().enumerate() {
        let at = TABLE_AT + i * SECTION_ENTRY;
        h[at..at + 8].copy_from_slice(&off.to_le_bytes());
        h[at + 8..at + 16].copy_from_slice(&len.to_le_bytes());
        h[at + 16..at + 20].copy_from_slice(&crc.to_le_bytes());
    }
    let crc = crc32fast::hash(&h[..HEADER_BYTES - 8]);
    h[HEADER_BYTES - 8..HEADER_BYTES - 4].copy_from_slice(&crc.to_le_bytes());
    out
}

/// The `log_len` of the snapshot at `path` if its header is whole (magic, and the
/// checksum at the end of the header length it gives), whatever its version and
/// whether or not it matches the log: a snapshot is only ever written of the log's
/// fsynced bytes, so its `log_len` is a boundary the log was proven to reach, and a bad
/// record below it is damage, not a torn tail (storage/FORMAT.md). `None` when the file
/// is missing, unreadable or its header damaged.
pub fn proven_log_len(io: &dyn FileIo, path: &Path) -> Option<u64> {
    let start = io.read_at(path, 0, 24).ok()?;
    if &start[0..8] != MAGIC {
        return None;
    }
    let header = u32_at(&start, 12) as usize;
    if !(24 + 8..=4096).contains(&header) {
        return None;
    }
    let b = io.read_at(path, 0, header).ok()?;
    (crc32fast::hash(&b[..header - 8]) == u32_at(&b, header - 8)).then(|| u64_at(&b, 16))
}

/// A snapshot mapped, its header and layout verified; its data is checked a chunk at a
/// time by the first read that touches the chunk (`try_*`), and whole by
/// [`DictSnapshot::check_all`].
pub struct DictSnapshot {
    path: PathBuf,
    bytes: FileBytes,
    /// Bytes of `dict.log` it covers.
    pub log_len: u64,
    pub tail_crc: u32,
    pub tail_len: u32,
    seed: u64,
    counts: [u32; 3],
    /// (offset, length) of each section, checked against the file.
    sections: [(usize, usize); SECTIONS],
    /// One bit a chunk once its checksum matched.
    checked: Box<[AtomicU64]>,
}

impl std::fmt::Debug for DictSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DictSnapshot")
            .field("path", &self.path)
            .field("log_len", &self.log_len)
            .field("counts", &self.counts)
            .finish()
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// `bytes` with every checksum of a snapshot recomputed over the bytes it covers, as
/// far as the header's section table places them inside the file: the chunk
/// checksums, then each section's, then the header's. `None` for bytes shorter than a
/// header. For the fuzzer (`fuzzing::dict_snapshot`): a mutated byte then reaches the
/// decoding behind the checksums.
pub fn resealed(bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.len() < HEADER_BYTES {
        return None;
    }
    let mut b = bytes.to_vec();
    let at = crate::fuzzing::Sealed {
        header: HEADER_BYTES,
        table: TABLE_AT,
        sections: SECTIONS,
        unsealed: &[],
        chunks: Some((DATA_SECTIONS, CHUNK)),
    };
    crate::fuzzing::reseal(&mut b, &at);
    Some(b)
}

impl DictSnapshot {
    /// Maps `path` and verifies its header, every section's bounds, that the counts
    /// fit the sections, and the chunks holding each table's last `ends` entry (which
    /// must equal its strings' length). The rest of the data is checked a chunk at a
    /// time on first read, so opening costs the same whatever the number of entries.
    /// Damage is `StorageError::Corrupt` naming the file; the caller ignores such a
    /// snapshot.
    pub fn open(io: &dyn FileIo, path: &Path) -> Result<DictSnapshot> {
        let bytes = io.map(path).map_err(|e| StorageError::io(path, e))?;
        let bad = |offset: u64, reason: String| StorageError::corrupt(path, offset, reason);
        let b: &[u8] = &bytes;
        if b.len() < 12 {
            return Err(bad(
                0,
                format!("{} bytes, shorter than the header", b.len()),
            ));
        }
        if &b[0..8] != MAGIC {
            return Err(bad(0, "not a dictionary snapshot (bad magic)".into()));
        }
        let version = u32_at(b, 8);
        if version != VERSION {
            return Err(bad(
                8,
                format!("version {version}, this build reads {VERSION}"),
            ));
        }
        if b.len() < HEADER_BYTES {
            return Err(bad(
                0,
                format!("{} bytes, shorter than the header", b.len()),
            ));
        }
        if u32_at(b, 12) as usize != HEADER_BYTES {
            return Err(bad(12, "unexpected header length".into()));
        }
        if crc32fast::hash(&b[..HEADER_BYTES - 8]) != u32_at(b, HEADER_BYTES - 8) {
            return Err(bad(0, "header checksum mismatch".into()));
        }
        let counts = [u32_at(b, 40), u32_at(b, 44), u32_at(b, 48)];
        let mut sections = [(0usize, 0usize); SECTIONS];
        for (i, s) in sections.iter_mut().enumerate() {
            let at = TABLE_AT + i * SECTION_ENTRY;
            let (off, len) = (u64_at(b, at), u64_at(b, at + 8));
            let end = off.checked_add(len).filter(|&e| e <= b.len() as u64);
            let Some(end) = end else {
                return Err(bad(
                    at as u64,
                    format!("section {i} runs past the end of the file"),
                ));
            };
            if off % 8 != 0 || off < HEADER_BYTES as u64 {
                return Err(bad(at as u64, format!("section {i} misplaced")));
            }
            *s = (off as usize, (end - off) as usize);
        }
        // The chunk checksums come last and cover everything before them.
        let (crcs_at, crcs_len) = sections[DATA_SECTIONS];
        if sections[..DATA_SECTIONS]
            .iter()
            .any(|&(off, len)| off + len > crcs_at)
        {
            return Err(bad(
                TABLE_AT as u64,
                "a data section overlaps the chunk checksums".into(),
            ));
        }
        let chunks = (crcs_at - HEADER_BYTES).div_ceil(CHUNK);
        if crcs_len != chunks * 4 {
            return Err(bad(
                crcs_at as u64,
                format!(
                    "{crcs_len} bytes of chunk checksums for {} bytes",
                    crcs_at - HEADER_BYTES
                ),
            ));
        }
        let snap = DictSnapshot {
            path: path.to_path_buf(),
            log_len: u64_at(b, 16),
            tail_crc: u32_at(b, 24),
            tail_len: u32_at(b, 28),
            seed: u64_at(b, 32),
            counts,
            sections,
            checked: (0..chunks.div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
            bytes,
        };
        for (t, &n) in counts.iter().enumerate() {
            let n = n as usize;
            let (ends, slots) = (sections[3 * t], sections[3 * t + 2].1);
            let mut ok = ends.1 == n * 8 && slots == 4 * slots_for(n);
            if ok && n > 0 {
                let last = ends.0 + (n - 1) * 8..ends.0 + n * 8;
                snap.check(last.clone())?;
                ok = u64_at(&snap.bytes, last.start) == sections[3 * t + 1].1 as u64;
            }
            if !ok {
                return Err(bad(
                    TABLE_AT as u64,
                    format!("table {t}: sections disagree with its {n} entries"),
                ));
            }
        }
        if sections[9].1 != counts[2] as usize {
            return Err(bad(
                TABLE_AT as u64,
                "subject kinds disagree with the subjects' count".into(),
            ));
        }
        Ok(snap)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self, part: Part) -> u32 {
        self.counts[part as usize]
    }

    /// Checks each chunk `range` touches that is not yet checked: a mismatch is
    /// `Corrupt` naming the file, the chunk and its offset.
    fn check(&self, range: Range<usize>) -> Result<()> {
        if range.is_empty() {
            return Ok(());
        }
        let crcs_at = self.sections[DATA_SECTIONS].0;
        let (first, last) = (
            (range.start - HEADER_BYTES) / CHUNK,
            (range.end - 1 - HEADER_BYTES) / CHUNK,
        );
        for c in first..=last {
            let (word, bit) = (&self.checked[c / 64], 1u64 << (c % 64));
            if word.load(Ordering::Acquire) & bit != 0 {
                continue;
            }
            let from = HEADER_BYTES + c * CHUNK;
            let to = (from + CHUNK).min(crcs_at);
            if crc32fast::hash(&self.bytes[from..to]) != u32_at(&self.bytes, crcs_at + c * 4) {
                return Err(StorageError::corrupt(
                    &self.path,
                    from as u64,
                    format!("chunk {c} checksum mismatch"),
                ));
            }
            word.fetch_or(bit, Ordering::Release);
        }
        Ok(())
    }

    /// Checks every chunk and every section's checksum now: for `sightline check`
    /// and tests. Reads check the same a chunk at a time.
    pub fn check_all(&self) -> Result<()> {
        self.check(HEADER_BYTES..self.sections[DATA_SECTIONS].0)?;
        for i in 0..SECTIONS {
            let at = TABLE_AT + i * SECTION_ENTRY;
            let (off, len) = self.sections[i];
            if crc32fast::hash(&self.bytes[off..off + len]) != u32_at(&self.bytes, at + 16) {
                return Err(StorageError::corrupt(
                    &self.path,
                    off as u64,
                    format!("section {i} checksum mismatch"),
                ));
            }
        }
        Ok(())
    }

    /// `len` bytes at `at` of section `i`, their chunks checked.
    fn bytes_of(&self, i: usize, at: usize, len: usize) -> Result<&[u8]> {
        let (off, n) = self.sections[i];
        debug_assert!(at + len <= n, "within section {i}");
        let range = off + at..off + (at + len).min(n);
        self.check(range.clone())?;
        Ok(&self.bytes[range])
    }

    /// The string of `id` in `part`; `None` past the end (or, in a file whose
    /// checksums match but whose offsets do not, never a wrong string's bytes); an
    /// error when a chunk it reads is damaged.
    pub fn try_get(&self, part: Part, id: u32) -> Result<Option<&str>> {
        let t = part as usize;
        if id >= self.counts[t] {
            return Ok(None);
        }
        let (from, n) = if id == 0 {
            (0, 8)
        } else {
            (id as usize - 1, 16)
        };
        let ends = self.bytes_of(3 * t, from * 8, n)?;
        let end = u64_at(ends, n - 8);
        let start = if id == 0 { 0 } else { u64_at(ends, 0) };
        let Some(len) = end.checked_sub(start) else {
            return Ok(None);
        };
        let (start, len) = (start as usize, len as usize);
        if start + len > self.sections[3 * t + 1].1 {
            return Ok(None);
        }
        let bytes = self.bytes_of(3 * t + 1, start, len)?;
        Ok(std::str::from_utf8(bytes).ok())
    }

    /// The kind code of subject `id`; an error when its chunk is damaged.
    pub fn try_subject_kind(&self, id: u32) -> Result<Option<u8>> {
        if id >= self.counts[Part::Subjects as usize] {
            return Ok(None);
        }
        Ok(Some(self.bytes_of(9, id as usize, 1)?[0]))
    }

    /// The id of `s` (of kind code `kind` for subjects; 0 otherwise); an error when a
    /// chunk the probe reads is damaged.
    pub fn try_find(&self, part: Part, kind: u8, s: &str) -> Result<Option<u32>> {
        let t = part as usize;
        let n = self.sections[3 * t + 2].1 / 4;
        let mask = n - 1;
        let mut i = hash(self.seed, kind, s.as_bytes()) as usize & mask;
        for _ in 0..n {
            let slot = u32_at(self.bytes_of(3 * t + 2, i * 4, 4)?, 0);
            if slot == 0 {
                return Ok(None);
            }
            let id = slot - 1;
            let same_kind = part != Part::Subjects || self.try_subject_kind(id)? == Some(kind);
            if same_kind && self.try_get(part, id)? == Some(s) {
                return Ok(Some(id));
            }
            i = (i + 1) & mask;
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_fixed_by_the_format() {
        // A snapshot's slot tables depend on these values: a change here is a new
        // format version.
        assert_eq!(hash(0, 0, b""), hash(0, 0, b""));
        assert_ne!(hash(0, 0, b"a"), hash(0, 1, b"a"));
        assert_ne!(hash(0, 0, b"a"), hash(1, 0, b"a"));
        assert_eq!(hash(7, 2, "苏ED00000".as_bytes()), 0x3470_a66e_eb81_b6c4);
    }

    const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/golden-v2.dsnap");
    const GOLDEN_V1: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/golden-v1.dsnap");

    /// Fixed contents: two communities, three devices, four subjects (one string
    /// under two kinds), as the log of 1,234 bytes ending in `tail` would give.
    fn golden_bytes() -> Vec<u8> {
        let mut c = ["3205080001", "3205080002"].into_iter().map(|s| (0u8, s));
        let mut d = [
            "32050801011210000001",
            "32050801011210000002",
            "32050801011210000003",
        ]
        .into_iter()
        .map(|s| (0u8, s));
        let mut s = [(0u8, "苏ED00000"), (1, "F1"), (0, "F1"), (2, "CARD-7")].into_iter();
        encode(
            1234,
            (crc32fast::hash(b"tail"), 4),
            0x5EED,
            [
                TableIn {
                    strings: &mut c,
                    len: 2,
                },
                TableIn {
                    strings: &mut d,
                    len: 3,
                },
                TableIn {
                    strings: &mut s,
                    len: 4,
                },
            ],
        )
    }

    /// Opened and every part read: what lookups meet sooner or later.
    fn read_whole(bytes: &[u8]) -> Result<()> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dict.snap");
        std::fs::write(&path, bytes).unwrap();
        let snap = DictSnapshot::open(&crate::io::OsIo, &path)?;
        snap.check_all()?;
        for part in [Part::Communities, Part::Devices, Part::Subjects] {
            for id in 0..snap.len(part) {
                if let Some(s) = snap.try_get(part, id)? {
                    let kind = snap
                        .try_subject_kind(id)?
                        .filter(|_| part == Part::Subjects);
                    snap.try_find(part, kind.unwrap_or(0), s)?;
                }
            }
        }
        Ok(())
    }

    /// The golden snapshot and one of several chunks are unchanged by [`resealed`]. A
    /// byte changed in the header's fields or the data is refused as it is;
    /// resealed, it gets past every checksum (header, table, chunks) to the structure's
    /// own checks, which refuse some of these changes and read others as a valid
    /// snapshot, and nothing panics.
    #[test]
    fn resealing_keeps_a_valid_snapshot_and_lets_a_change_past_the_checksums() {
        let names: Vec<String> = (0..30_000).map(|i| format!("苏E{i:05}")).collect();
        let mut subjects = names.iter().map(|s| (0u8, s.as_str()));
        let mut none = std::iter::empty();
        let mut devices = std::iter::once((0u8, "32050801011210000001"));
        let large = encode(
            4096,
            (crc32fast::hash(b"tail"), 4),
            7,
            [
                TableIn {
                    strings: &mut none,
                    len: 0,
                },
                TableIn {
                    strings: &mut devices,
                    len: 1,
                },
                TableIn {
                    strings: &mut subjects,
                    len: names.len(),
                },
            ],
        );
        assert!(large.len() > 3 * CHUNK);
        let (mut refused, mut read) = (0, 0);
        for bytes in [golden_bytes(), large] {
            assert!(read_whole(&bytes).is_ok());
            let read_bytes = |b: &[u8]| read_whole(b).map_err(|e| e.to_string());
            let (r, v) = crate::fuzzing::reseal_changes(&bytes, HEADER_BYTES, resealed, read_bytes);
            (refused, read) = (refused + r, read + v);
        }
        assert!(refused > 0 && read > 0, "{refused} refused, {read} read");
    }

    #[test]
    fn golden_file_is_rebuilt_byte_for_byte_and_read_back() {
        let bytes = golden_bytes();
        if std::env::var_os("SIGHTLINE_WRITE_GOLDEN").is_some() {
            std::fs::write(GOLDEN, &bytes).unwrap();
        }
        let golden = std::fs::read(GOLDEN).expect("golden file present");
        assert!(
            golden == bytes,
            "the dictionary snapshot format changed: bump VERSION (see storage/FORMAT.md)"
        );
        let snap = DictSnapshot::open(&crate::io::OsIo, Path::new(GOLDEN)).unwrap();
        assert_eq!((snap.log_len, snap.tail_len), (1234, 4));
        assert_eq!(snap.len(Part::Subjects), 4);
        assert_eq!(
            snap.try_get(Part::Communities, 1).unwrap(),
            Some("3205080002")
        );
        let find = |part, kind, s| snap.try_find(part, kind, s).unwrap();
        assert_eq!(find(Part::Devices, 0, "32050801011210000003"), Some(2));
        assert_eq!(find(Part::Subjects, 0, "F1"), Some(2));
        assert_eq!(find(Part::Subjects, 1, "F1"), Some(1));
        assert_eq!(find(Part::Subjects, 2, "F1"), None);
        assert_eq!(find(Part::Subjects, 0, "苏ED00000"), Some(0));
        assert_eq!(snap.try_subject_kind(3).unwrap(), Some(2));
        assert_eq!(snap.try_get(Part::Subjects, 4).unwrap(), None);
        snap.check_all().unwrap();
    }

    #[test]
    fn a_version_1_file_is_refused_naming_its_version() {
        let e = DictSnapshot::open(&crate::io::OsIo, Path::new(GOLDEN_V1)).unwrap_err();
        assert!(e.to_string().contains("version 1"), "{e}");
    }

    /// Each of `names` looked up: `Err` when a chunk it reads is damaged.
    fn lookups(snap: &DictSnapshot, names: &[&str]) -> Result<Vec<Option<u32>>> {
        names
            .iter()
            .map(|s| snap.try_find(Part::Subjects, 0, s))
            .collect()
    }

    #[test]
    fn every_flipped_byte_or_truncation_of_the_golden_file_is_refused_or_harmless() {
        let bytes = golden_bytes();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dict.snap");
        std::fs::write(&path, &bytes).unwrap();
        let whole = DictSnapshot::open(&crate::io::OsIo, &path).unwrap();
        let names = ["F1", "苏ED00000", "CARD-7", "x"];
        let want = lookups(&whole, &names).unwrap();
        drop(whole);
        for at in 0..bytes.len() {
            let mut b = bytes.clone();
            b[at] ^= 0x01;
            std::fs::write(&path, &b).unwrap();
            // Refused at open; or the lookups fail naming the file, as does the
            // whole check; or (a flip in the header's reserved bytes, which no
            // checksum covers) the same answers.
            if let Ok(snap) = DictSnapshot::open(&crate::io::OsIo, &path) {
                match lookups(&snap, &names) {
                    Ok(got) => assert_eq!(got, want, "byte {at}"),
                    Err(e) => {
                        assert!(e.to_string().contains("dict.snap"), "{e}");
                        assert!(snap.check_all().is_err(), "byte {at}");
                    }
                }
            }
        }
        for cut in 0..bytes.len() {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            assert!(
                DictSnapshot::open(&crate::io::OsIo, &path).is_err(),
                "cut at {cut}"
            );
        }
    }
}
