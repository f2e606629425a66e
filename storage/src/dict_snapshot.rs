//! The dictionary snapshot (`dict.snap`): the dictionaries as of an offset of
//! `dict.log`, laid out to be used in place through a memory map, so opening a store
//! reads only the log records after that offset (storage/FORMAT.md, "Dictionary
//! snapshot").
//!
//! A snapshot is derived data: a missing, stale, damaged or other-version one is
//! ignored (the whole log is loaded, as without one) and written again.

use std::path::{Path, PathBuf};

use crate::error::{Result, StorageError};
use crate::io::{FileBytes, FileIo};

pub const MAGIC: &[u8; 8] = b"SLDSNAP\0";
pub const VERSION: u32 = 1;
/// Sections: for communities, devices and subjects each `ends`, `bytes`, `slots`,
/// then the subjects' kind codes.
pub const SECTIONS: usize = 10;
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

/// A snapshot mapped and verified: its strings and slot tables read in place.
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

impl DictSnapshot {
    /// Maps `path` and verifies its header, every section's bounds and checksum, and
    /// that the counts fit the sections. Damage is `StorageError::Corrupt` naming the
    /// file; the caller ignores such a snapshot.
    pub fn open(io: &dyn FileIo, path: &Path) -> Result<DictSnapshot> {
        let bytes = io.map(path).map_err(|e| StorageError::io(path, e))?;
        let bad = |offset: u64, reason: String| StorageError::corrupt(path, offset, reason);
        let b: &[u8] = &bytes;
        if b.len() < HEADER_BYTES {
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
            let (off, len, crc) = (u64_at(b, at), u64_at(b, at + 8), u32_at(b, at + 16));
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
            let (off, end) = (off as usize, end as usize);
            if crc32fast::hash(&b[off..end]) != crc {
                return Err(bad(off as u64, format!("section {i} checksum mismatch")));
            }
            *s = (off, end - off);
        }
        for (t, &n) in counts.iter().enumerate() {
            let n = n as usize;
            let (ends, slots) = (sections[3 * t].1, sections[3 * t + 2].1);
            let ok = ends == n * 8
                && slots == 4 * slots_for(n)
                && (n == 0
                    || u64_at(&b[sections[3 * t].0..], (n - 1) * 8)
                        == sections[3 * t + 1].1 as u64);
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
        Ok(DictSnapshot {
            path: path.to_path_buf(),
            log_len: u64_at(b, 16),
            tail_crc: u32_at(b, 24),
            tail_len: u32_at(b, 28),
            seed: u64_at(b, 32),
            counts,
            sections,
            bytes,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self, part: Part) -> u32 {
        self.counts[part as usize]
    }

    fn section(&self, i: usize) -> &[u8] {
        let (off, len) = self.sections[i];
        &self.bytes[off..off + len]
    }

    /// The string of `id` in `part`; `None` past the end (or, in a file whose
    /// checksums match but whose offsets do not, never a wrong string's bytes).
    pub fn get(&self, part: Part, id: u32) -> Option<&str> {
        let t = part as usize;
        if id >= self.counts[t] {
            return None;
        }
        let ends = self.section(3 * t);
        let end = u64_at(ends, id as usize * 8) as usize;
        let start = if id == 0 {
            0
        } else {
            u64_at(ends, (id as usize - 1) * 8) as usize
        };
        let bytes = self.section(3 * t + 1).get(start..end)?;
        std::str::from_utf8(bytes).ok()
    }

    /// The kind code of subject `id`.
    pub fn subject_kind(&self, id: u32) -> Option<u8> {
        self.section(9).get(id as usize).copied()
    }

    /// The id of `s` (of kind code `kind` for subjects; 0 otherwise).
    pub fn find(&self, part: Part, kind: u8, s: &str) -> Option<u32> {
        let t = part as usize;
        let slots = self.section(3 * t + 2);
        let n = slots.len() / 4;
        let mask = n - 1;
        let mut i = hash(self.seed, kind, s.as_bytes()) as usize & mask;
        for _ in 0..n {
            let slot = u32_at(slots, i * 4);
            if slot == 0 {
                return None;
            }
            let id = slot - 1;
            let same_kind = part != Part::Subjects || self.subject_kind(id) == Some(kind);
            if same_kind && self.get(part, id) == Some(s) {
                return Some(id);
            }
            i = (i + 1) & mask;
        }
        None
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

    const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/golden-v1.dsnap");

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
        assert_eq!(snap.get(Part::Communities, 1), Some("3205080002"));
        assert_eq!(snap.find(Part::Devices, 0, "32050801011210000003"), Some(2));
        assert_eq!(snap.find(Part::Subjects, 0, "F1"), Some(2));
        assert_eq!(snap.find(Part::Subjects, 1, "F1"), Some(1));
        assert_eq!(snap.find(Part::Subjects, 2, "F1"), None);
        assert_eq!(snap.find(Part::Subjects, 0, "苏ED00000"), Some(0));
        assert_eq!(snap.subject_kind(3), Some(2));
        assert_eq!(snap.get(Part::Subjects, 4), None);
    }

    #[test]
    fn every_flipped_byte_or_truncation_of_the_golden_file_is_refused_or_harmless() {
        let bytes = golden_bytes();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dict.snap");
        std::fs::write(&path, &bytes).unwrap();
        let whole = DictSnapshot::open(&crate::io::OsIo, &path).unwrap();
        let want: Vec<Option<u32>> = ["F1", "苏ED00000", "CARD-7", "x"]
            .iter()
            .map(|s| whole.find(Part::Subjects, 0, s))
            .collect();
        drop(whole);
        for at in 0..bytes.len() {
            let mut b = bytes.clone();
            b[at] ^= 0x01;
            std::fs::write(&path, &b).unwrap();
            // Refused, or (a flip in padding no checksum covers) the same answers.
            if let Ok(snap) = DictSnapshot::open(&crate::io::OsIo, &path) {
                let got: Vec<Option<u32>> = ["F1", "苏ED00000", "CARD-7", "x"]
                    .iter()
                    .map(|s| snap.find(Part::Subjects, 0, s))
                    .collect();
                assert_eq!(got, want, "byte {at}");
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
