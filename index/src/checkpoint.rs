//! The index checkpoint file (`index/subjects.idx`): the global index as of one
//! sequence number, so a store reopens by reading it instead of every row. The layout
//! is in `storage/FORMAT.md` ("Index checkpoint"); this module writes and checks it.
//!
//! Sections are flat little-endian arrays read in place from the map (subject →
//! shards is CSR: offsets, then shard numbers), so loading costs a checksum pass and
//! a structural pass, not a parse into millions of small allocations.

use std::path::{Path, PathBuf};

use sightline_storage::io::FileBytes;
use sightline_storage::{ShardKey, SpanLayout, StorageError};

pub(crate) const MAGIC: [u8; 8] = *b"SLINDEX\0";
pub(crate) const VERSION: u32 = 1;
/// Header: fixed fields, then the section table, then its checksum.
const FIELDS: usize = 64;
const SECTIONS: usize = 6;
const SECTION_ENTRY: usize = 24;
pub(crate) const HEADER_LEN: usize = FIELDS + SECTIONS * SECTION_ENTRY + 8;
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

/// The checkpoint's bytes.
pub(crate) fn encode(f: &Flat<'_>) -> Vec<u8> {
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

    let mut out = Vec::with_capacity(HEADER_LEN + body.iter().map(|b| b.len() + 8).sum::<usize>());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(HEADER_LEN as u32).to_le_bytes());
    out.extend_from_slice(&f.through.to_le_bytes());
    out.extend_from_slice(&f.layout.span_ms.to_le_bytes());
    out.extend_from_slice(&f.layout.tz_offset_ms.to_le_bytes());
    out.extend_from_slice(&(f.shards.len() as u64).to_le_bytes());
    out.extend_from_slice(&(f.stats.len() as u64).to_le_bytes());
    out.extend_from_slice(&((f.device_offsets.len().max(1) - 1) as u64).to_le_bytes());
    debug_assert_eq!(out.len(), FIELDS);
    let mut at = HEADER_LEN as u64;
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
    debug_assert_eq!(out.len(), HEADER_LEN);
    for b in body {
        out.extend_from_slice(&b);
        pad8(&mut out);
    }
    out
}

/// A checkpoint read and checked: every checksum, every length against the bytes
/// present, offsets ascending, shard numbers and communities in range and ascending.
pub(crate) struct Checkpoint {
    path: PathBuf,
    bytes: FileBytes,
    pub through: u64,
    pub layout: SpanLayout,
    pub shards: Vec<ShardEntry>,
    pub subjects: usize,
    pub devices: usize,
    sections: [(usize, usize); SECTIONS],
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
        if b.len() < HEADER_LEN {
            return Err(bad(
                b.len(),
                format!(
                    "truncated: {} bytes, the header alone is {HEADER_LEN}",
                    b.len()
                ),
            ));
        }
        if b[..8] != MAGIC {
            return Err(bad(0, "not an index checkpoint (bad magic bytes)".into()));
        }
        let version = u32_at(b, 8);
        if version != VERSION {
            return Err(bad(
                8,
                format!("format version {version}, this build reads {VERSION}"),
            ));
        }
        if u32_at(b, 12) as usize != HEADER_LEN {
            return Err(bad(12, "header length is not this version's".into()));
        }
        let crc_at = HEADER_LEN - 8;
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
        let mut sections = [(0usize, 0usize); SECTIONS];
        let mut end = HEADER_LEN;
        for s in ALL {
            let at = FIELDS + s as usize * SECTION_ENTRY;
            let (off, n) = (u64_at(b, at), u64_at(b, at + 8));
            let fits = off == end as u64 && off.checked_add(n).is_some_and(|e| e <= len);
            if !fits {
                return Err(bad(
                    at,
                    format!("section {s:?} {off}+{n} does not follow or fit"),
                ));
            }
            let (off, n) = (off as usize, n as usize);
            if crc32fast::hash(&b[off..off + n]) != u32_at(b, at + 16) {
                return Err(bad(off, format!("section {s:?} checksum mismatch")));
            }
            sections[s as usize] = (off, n);
            end = (off + n).next_multiple_of(8);
            if end as u64 > len || b[off + n..end].iter().any(|&x| x != 0) {
                return Err(bad(
                    off + n,
                    format!("padding after section {s:?} is not zero"),
                ));
            }
        }
        if end as u64 != len {
            return Err(bad(end.min(b.len()), "bytes after the last section".into()));
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
        let mut cp = Checkpoint {
            path: path.to_path_buf(),
            bytes,
            through,
            layout,
            shards: Vec::with_capacity(shards),
            subjects,
            devices,
            sections,
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
            Section::SubjectOffsets,
            Section::SubjectShards,
            subjects,
            |n| (n as usize) < shards && !cp.shards[n as usize].dropped,
        )?;
        cp.check_csr(
            Section::DeviceOffsets,
            Section::DeviceCommunities,
            devices,
            |_| true,
        )?;
        for s in 0..subjects {
            let (count, first, last) = cp.stats(s);
            let listed = !cp.subject_shards(s as u32).is_empty();
            if (count == 0) == listed || (count > 0 && first > last) {
                return Err(Self::corrupt(
                    path,
                    sections[Section::Stats as usize].0 + s * STATS_ENTRY,
                    format!("subject {s}: statistics disagree with its shards"),
                ));
            }
        }
        Ok(cp)
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
        if vlen % 4 != 0 {
            return Err(Self::corrupt(&self.path, vat, "values of a partial u32"));
        }
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
            let mut last: Option<u32> = None;
            for j in prev..o {
                let v = u32_at(b, vat + j as usize * 4);
                if last.is_some_and(|l| l >= v) || !ok(v) {
                    return Err(Self::corrupt(
                        &self.path,
                        vat + j as usize * 4,
                        format!(
                            "entry {} of list {}: {v} out of order or range",
                            j - prev,
                            i - 1
                        ),
                    ));
                }
                last = Some(v);
            }
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

    fn csr(&self, offsets: Section, values: Section, i: usize) -> CsrList<'_> {
        let (oat, _) = self.sections[offsets as usize];
        let (vat, _) = self.sections[values as usize];
        let b = &self.bytes[..];
        let (lo, hi) = (
            u64_at(b, oat + i * 8) as usize,
            u64_at(b, oat + i * 8 + 8) as usize,
        );
        CsrList(&b[vat + lo * 4..vat + hi * 4])
    }

    /// The live shard numbers of `subject`, ascending (empty past the end).
    pub fn subject_shards(&self, subject: u32) -> CsrList<'_> {
        if subject as usize >= self.subjects {
            return CsrList(&[]);
        }
        self.csr(
            Section::SubjectOffsets,
            Section::SubjectShards,
            subject as usize,
        )
    }

    /// The communities of `device`, ascending (empty past the end).
    pub fn device_communities(&self, device: u32) -> CsrList<'_> {
        if device as usize >= self.devices {
            return CsrList(&[]);
        }
        self.csr(
            Section::DeviceOffsets,
            Section::DeviceCommunities,
            device as usize,
        )
    }

    /// `(count, first_ms, last_ms)` of `subject`.
    pub fn stats(&self, subject: usize) -> (u64, i64, i64) {
        let at = self.sections[Section::Stats as usize].0 + subject * STATS_ENTRY;
        let b = &self.bytes[..];
        (
            u64_at(b, at),
            u64_at(b, at + 8) as i64,
            u64_at(b, at + 16) as i64,
        )
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
    //! The golden checkpoint: fixed contents whose encoding is checked in at
    //! `index/tests/data/golden-v1.idx`, so a layout change is deliberate. Rewrite it
    //! with `SIGHTLINE_BLESS=1 cargo test -p sightline-index golden` after bumping
    //! `VERSION` (and `storage/FORMAT.md`).

    use super::*;

    fn golden() -> Vec<u8> {
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
        encode(&Flat {
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
        })
    }

    fn decoded(bytes: Vec<u8>) -> Result<Checkpoint, StorageError> {
        Checkpoint::decode(Path::new("golden-v1.idx"), FileBytes::Owned(bytes))
    }

    #[test]
    fn golden_checkpoint_bytes_are_stable_and_read_back() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden-v1.idx");
        let bytes = golden();
        if std::env::var_os("SIGHTLINE_BLESS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let on_disk = std::fs::read(&path).expect("the golden checkpoint is checked in");
        assert_eq!(
            bytes, on_disk,
            "the checkpoint layout changed: bump VERSION"
        );
        let cp = decoded(on_disk).unwrap();
        assert_eq!(cp.through, 9);
        assert_eq!(cp.subjects, 3);
        assert_eq!(cp.subject_shards(0).iter().collect::<Vec<_>>(), [1, 2]);
        assert!(cp.subject_shards(1).is_empty());
        assert_eq!(cp.stats(2), (1, 1_630_512_000_007, 1_630_512_000_007));
        assert_eq!(cp.device_communities(1).iter().collect::<Vec<_>>(), [1]);
        assert!(cp.shards[0].dropped);
    }

    #[test]
    fn every_damaged_byte_or_truncation_is_refused() {
        let good = golden();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x04;
            // Padding bytes are outside every checksum and may change freely only if
            // the reader ignores them; it does not: they must be zero.
            assert!(decoded(bad).is_err(), "flipped byte {i} accepted");
        }
        for n in 0..good.len() {
            assert!(decoded(good[..n].to_vec()).is_err(), "cut at {n} accepted");
        }
    }
}
