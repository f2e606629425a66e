//! The directory object's format: for a day (or a week or month of days: a roll-up),
//! which partitions hold events of each subject.
//!
//! **The object** (one per directory, `dir/{kind}/{start_day}-{nonce}`), little-endian:
//!
//! ```text
//! header   magic     8 bytes  "SLDIR\0\0\x01"
//!          version   u32      1
//!          partitions u32     P of the cluster that wrote it
//!          buckets   u32      B (1 ..= MAX_BUCKETS)
//!          days      u32      days covered (1: a day; 7: a week; a month's length)
//!          start_day i32      first day covered (Asia/Shanghai day number, as shards)
//!          reserved  u32      0
//!          offsets   (B + 1) × u64: bucket b is bytes [offsets[b], offsets[b + 1])
//!          crc32     u32      of every header byte before it
//! bucket b count     u32      entries, sorted by hash, no hash twice
//!          entries   count × (hash u64, n u16, n × partition u16 ascending)
//!          crc32     u32      of the bucket's bytes before it
//! ```
//!
//! A subject's hash is FNV-1a 64 of its kind byte then its name's UTF-8 bytes
//! ([`subject_hash`]); its bucket is `hash mod B`. Two subjects of one hash share an
//! entry (the union of their partitions): a collision asks more partitions, never
//! fewer, so it can cost time but never change an answer. A reader fetches the header
//! (its length is known from B, read first), then only the bucket it needs, each with
//! one range read, and checks each checksum before use: a damaged or truncated object
//! is an error naming its key ([`DirectoryError`]), never a panic, and the query it
//! served then asks every partition.

use std::collections::{BTreeMap, BTreeSet};

/// The object's first bytes.
pub const MAGIC: [u8; 8] = *b"SLDIR\0\0\x01";
/// The format's version ([`MAGIC`] names the family, this the layout).
pub const VERSION: u32 = 1;
/// Most buckets an object may have (a bigger count read from an object is damage).
pub const MAX_BUCKETS: u32 = 1 << 16;
/// Bytes of the header before the offsets.
pub const FIXED_HEADER_BYTES: usize = 32;
/// Most partitions one entry may name (a cluster has at most this many).
pub const MAX_PARTITIONS: u32 = u16::MAX as u32;

/// A directory object that cannot be used, naming it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("directory object {key}: {reason}")]
pub struct DirectoryError {
    pub key: String,
    pub reason: String,
}

fn damaged(key: &str, reason: impl Into<String>) -> DirectoryError {
    DirectoryError {
        key: key.to_string(),
        reason: reason.into(),
    }
}

/// FNV-1a 64 of the kind's byte and the subject's name (stable: it places entries).
pub fn subject_hash(kind: u8, subject: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in std::iter::once(kind).chain(subject.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The bucket of `hash` among `buckets`.
pub fn bucket_of(hash: u64, buckets: u32) -> u32 {
    assert!(buckets > 0, "a directory has at least one bucket");
    (hash % u64::from(buckets)) as u32
}

/// What a directory covers and how it is cut, as its header says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub partitions: u32,
    pub buckets: u32,
    pub days: u32,
    pub start_day: i32,
    /// Bucket b is bytes `offsets[b] .. offsets[b + 1]` of the object.
    pub offsets: Vec<u64>,
}

impl Header {
    /// The header's length for `buckets` buckets.
    pub fn len_for(buckets: u32) -> usize {
        FIXED_HEADER_BYTES + 8 * (buckets as usize + 1) + 4
    }

    /// The byte range of bucket `b`.
    pub fn bucket_range(&self, b: u32) -> (u64, u64) {
        (self.offsets[b as usize], self.offsets[b as usize + 1])
    }

    /// B as the object's fixed header says (to learn the whole header's length),
    /// checked against its magic, version and [`MAX_BUCKETS`].
    pub fn buckets_of(key: &str, fixed: &[u8]) -> Result<u32, DirectoryError> {
        if fixed.len() < FIXED_HEADER_BYTES {
            return Err(damaged(
                key,
                format!("{} bytes, shorter than a header", fixed.len()),
            ));
        }
        if fixed[..8] != MAGIC {
            return Err(damaged(key, "not a directory (magic)"));
        }
        let version = u32_at(fixed, 8);
        if version != VERSION {
            return Err(damaged(
                key,
                format!("version {version}, this build reads {VERSION}"),
            ));
        }
        let buckets = u32_at(fixed, 16);
        if buckets == 0 || buckets > MAX_BUCKETS {
            return Err(damaged(key, format!("{buckets} buckets")));
        }
        Ok(buckets)
    }

    /// The header from the object's first bytes (at least [`Header::len_for`]), its
    /// checksum and offsets checked against `object_len`.
    pub fn decode(key: &str, bytes: &[u8], object_len: u64) -> Result<Header, DirectoryError> {
        let buckets = Header::buckets_of(key, bytes)?;
        let len = Header::len_for(buckets);
        if bytes.len() < len {
            return Err(damaged(
                key,
                format!("header of {len} bytes cut at {}", bytes.len()),
            ));
        }
        let stored = u32_at(bytes, len - 4);
        if crc32fast::hash(&bytes[..len - 4]) != stored {
            return Err(damaged(key, "header checksum does not match"));
        }
        let offsets: Vec<u64> = (0..=buckets as usize)
            .map(|i| u64_at(bytes, FIXED_HEADER_BYTES + 8 * i))
            .collect();
        if offsets[0] != len as u64
            || offsets.windows(2).any(|w| w[1] < w[0] + 8)
            || *offsets.last().expect("B + 1 offsets") != object_len
        {
            return Err(damaged(
                key,
                format!("bucket offsets do not fit an object of {object_len} bytes"),
            ));
        }
        let partitions = u32_at(bytes, 12);
        if partitions == 0 || partitions > MAX_PARTITIONS {
            return Err(damaged(key, format!("{partitions} partitions")));
        }
        Ok(Header {
            partitions,
            buckets,
            days: u32_at(bytes, 20),
            start_day: u32_at(bytes, 24) as i32,
            offsets,
        })
    }
}

/// One bucket, decoded: hashes ascending, each with its partitions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    entries: Vec<(u64, Vec<u16>)>,
}

impl Bucket {
    /// Bucket `b` of object `key` from its bytes, checked (checksum, lengths, order,
    /// partitions below `partitions`).
    pub fn decode(
        key: &str,
        b: u32,
        bytes: &[u8],
        partitions: u32,
    ) -> Result<Bucket, DirectoryError> {
        let bad = |why: String| damaged(key, format!("bucket {b}: {why}"));
        if bytes.len() < 8 {
            return Err(bad(format!("{} bytes", bytes.len())));
        }
        let body = &bytes[..bytes.len() - 4];
        if crc32fast::hash(body) != u32_at(bytes, bytes.len() - 4) {
            return Err(bad("checksum does not match".into()));
        }
        let count = u32_at(body, 0) as usize;
        // Each entry takes at least 10 bytes: a count beyond the bytes is damage.
        if count > (body.len() - 4) / 10 {
            return Err(bad(format!("{count} entries in {} bytes", body.len())));
        }
        let mut entries = Vec::with_capacity(count);
        let mut at = 4;
        for _ in 0..count {
            if body.len() < at + 10 {
                return Err(bad("cut inside an entry".into()));
            }
            let hash = u64_at(body, at);
            let n = u16::from_le_bytes([body[at + 8], body[at + 9]]) as usize;
            at += 10;
            if body.len() < at + 2 * n {
                return Err(bad("cut inside an entry's partitions".into()));
            }
            let ps: Vec<u16> = (0..n)
                .map(|i| u16::from_le_bytes([body[at + 2 * i], body[at + 2 * i + 1]]))
                .collect();
            at += 2 * n;
            if ps.windows(2).any(|w| w[0] >= w[1]) || ps.iter().any(|&p| u32::from(p) >= partitions)
            {
                return Err(bad(format!("entry {hash:#x}: partitions {ps:?}")));
            }
            if entries.last().is_some_and(|(h, _)| *h >= hash) {
                return Err(bad("entries out of order".into()));
            }
            entries.push((hash, ps));
        }
        if at != body.len() {
            return Err(bad(format!("{} bytes after the entries", body.len() - at)));
        }
        Ok(Bucket { entries })
    }

    /// The partitions the directory names for `hash` (none: no partition saw it).
    pub fn partitions(&self, hash: u64) -> &[u16] {
        match self.entries.binary_search_by_key(&hash, |(h, _)| *h) {
            Ok(i) => &self.entries[i].1,
            Err(_) => &[],
        }
    }

    /// Bytes this bucket holds in memory (for a cache's bound).
    pub fn weight(&self) -> usize {
        64 + self
            .entries
            .iter()
            .map(|(_, p)| 40 + 2 * p.len())
            .sum::<usize>()
    }
}

/// A directory being made: subject hash → partitions, then [`DirectoryBuilder::encode`].
#[derive(Clone, Debug, Default)]
pub struct DirectoryBuilder {
    map: BTreeMap<u64, BTreeSet<u16>>,
}

impl DirectoryBuilder {
    pub fn new() -> DirectoryBuilder {
        DirectoryBuilder::default()
    }

    /// `partition` saw the subject of `hash` ([`subject_hash`]).
    pub fn add(&mut self, hash: u64, partition: u16) {
        self.map.entry(hash).or_default().insert(partition);
    }

    /// Every entry of a decoded directory (a roll-up merges its days').
    pub fn add_bucket(&mut self, bucket: &Bucket) {
        for (h, ps) in &bucket.entries {
            for p in ps {
                self.add(*h, *p);
            }
        }
    }

    /// Subjects (hashes) known.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The object: `buckets` buckets, covering `days` days from `start_day`, of a
    /// cluster of `partitions`.
    pub fn encode(&self, partitions: u32, buckets: u32, start_day: i32, days: u32) -> Vec<u8> {
        assert!(
            (1..=MAX_BUCKETS).contains(&buckets) && (1..=MAX_PARTITIONS).contains(&partitions),
            "a directory has 1 to {MAX_BUCKETS} buckets and 1 to {MAX_PARTITIONS} partitions"
        );
        let mut per_bucket: Vec<Vec<u8>> = vec![Vec::new(); buckets as usize];
        let mut counts = vec![0u32; buckets as usize];
        for (h, ps) in &self.map {
            assert!(
                ps.iter().all(|&p| u32::from(p) < partitions),
                "a partition beyond P"
            );
            let b = bucket_of(*h, buckets) as usize;
            let out = &mut per_bucket[b];
            out.extend_from_slice(&h.to_le_bytes());
            out.extend_from_slice(&(ps.len() as u16).to_le_bytes());
            for p in ps {
                out.extend_from_slice(&p.to_le_bytes());
            }
            counts[b] += 1;
        }
        let header_len = Header::len_for(buckets);
        let mut out = Vec::with_capacity(header_len);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&partitions.to_le_bytes());
        out.extend_from_slice(&buckets.to_le_bytes());
        out.extend_from_slice(&days.to_le_bytes());
        out.extend_from_slice(&start_day.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        let mut offset = header_len as u64;
        for entries in &per_bucket {
            out.extend_from_slice(&offset.to_le_bytes());
            offset += 4 + entries.len() as u64 + 4;
        }
        out.extend_from_slice(&offset.to_le_bytes());
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        debug_assert_eq!(out.len(), header_len);
        for (entries, count) in per_bucket.iter().zip(counts) {
            let start = out.len();
            out.extend_from_slice(&count.to_le_bytes());
            out.extend_from_slice(entries);
            let crc = crc32fast::hash(&out[start..]);
            out.extend_from_slice(&crc.to_le_bytes());
        }
        out
    }
}

/// The partitions a whole object names for `hash` (header and bucket decoded and
/// checked): what a reader holding the object in memory does (tests, roll-ups).
pub fn lookup(key: &str, object: &[u8], hash: u64) -> Result<Vec<u16>, DirectoryError> {
    let header = Header::decode(key, object, object.len() as u64)?;
    let b = bucket_of(hash, header.buckets);
    let (from, to) = header.bucket_range(b);
    let bucket = Bucket::decode(
        key,
        b,
        &object[from as usize..to as usize],
        header.partitions,
    )?;
    Ok(bucket.partitions(hash).to_vec())
}

/// Every bucket of a whole object, decoded (a roll-up reads its days' this way).
pub fn buckets(key: &str, object: &[u8]) -> Result<(Header, Vec<Bucket>), DirectoryError> {
    let header = Header::decode(key, object, object.len() as u64)?;
    let buckets = (0..header.buckets)
        .map(|b| {
            let (from, to) = header.bucket_range(b);
            Bucket::decode(
                key,
                b,
                &object[from as usize..to as usize],
                header.partitions,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((header, buckets))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn sample() -> Vec<u8> {
        let mut d = DirectoryBuilder::new();
        d.add(subject_hash(0, "苏E00001"), 3);
        d.add(subject_hash(0, "苏E00001"), 1);
        d.add(subject_hash(1, "F1"), 0);
        d.encode(4, 8, 19_000, 1)
    }

    #[test]
    fn a_directory_round_trips() {
        let o = sample();
        assert_eq!(
            lookup("k", &o, subject_hash(0, "苏E00001")).unwrap(),
            vec![1, 3]
        );
        assert_eq!(lookup("k", &o, subject_hash(1, "F1")).unwrap(), vec![0]);
        // Same name, another kind: another subject, seen nowhere.
        assert!(lookup("k", &o, subject_hash(1, "苏E00001"))
            .unwrap()
            .is_empty());
        let (h, bs) = buckets("k", &o).unwrap();
        assert_eq!(
            (h.partitions, h.buckets, h.start_day, h.days),
            (4, 8, 19_000, 1)
        );
        assert_eq!(bs.len(), 8);
        // A header read alone tells its length.
        assert_eq!(
            Header::buckets_of("k", &o[..FIXED_HEADER_BYTES]).unwrap(),
            8
        );
        // An empty directory is a valid one.
        let empty = DirectoryBuilder::new().encode(1, 1, 0, 7);
        assert!(lookup("k", &empty, 42).unwrap().is_empty());
    }

    /// The format's golden file: a change of layout is a deliberate one (a new
    /// version), visible in review. `SIGHTLINE_WRITE_GOLDEN=1` writes it again.
    #[test]
    fn the_format_matches_its_golden_file() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/directory/golden/day-v1.dir"
        );
        if std::env::var_os("SIGHTLINE_WRITE_GOLDEN").is_some() {
            std::fs::write(path, sample()).unwrap();
        }
        let golden = std::fs::read(path).unwrap();
        assert_eq!(sample(), golden, "the directory format changed: {path}");
        assert_eq!(
            lookup("golden", &golden, subject_hash(0, "苏E00001")).unwrap(),
            vec![1, 3]
        );
    }

    #[test]
    fn a_damaged_directory_is_an_error_naming_its_object() {
        let o = sample();
        // Every single flipped byte and every truncation: an error (or, for a flip in
        // a bucket not read, the right answer), never a panic.
        let hash = subject_hash(0, "苏E00001");
        for i in 0..o.len() {
            let mut bad = o.clone();
            bad[i] ^= 0x40;
            match lookup("dir/day/19000-1", &bad, hash) {
                Ok(ps) => assert_eq!(ps, vec![1, 3], "flip at {i} changed an answer"),
                Err(e) => {
                    assert_eq!(e.key, "dir/day/19000-1");
                    assert!(e.to_string().contains("dir/day/19000-1"), "{e}");
                }
            }
            assert!(
                buckets("dir/day/19000-1", &bad).is_err(),
                "flip at {i} unseen"
            );
        }
        for n in 0..o.len() {
            let e = lookup("k", &o[..n], hash).unwrap_err();
            assert_eq!(e.key, "k");
        }
        let mut other = o.clone();
        other[8] = 9;
        assert!(lookup("k", &other, hash)
            .unwrap_err()
            .reason
            .contains("version"));
    }

    proptest! {
        /// Lookups agree with a plain map of subject → partitions, for subjects
        /// present and absent, any bucket count.
        #[test]
        fn lookups_match_a_map(
            seen in prop::collection::vec((0u8..5, "[a-c]{1,3}", 0u16..6), 0..60),
            asked in prop::collection::vec((0u8..5, "[a-c]{1,3}"), 1..20),
            buckets in 1u32..20,
        ) {
            let mut model: HashMap<(u8, String), BTreeSet<u16>> = HashMap::new();
            let mut d = DirectoryBuilder::new();
            for (k, s, p) in &seen {
                model.entry((*k, s.clone())).or_default().insert(*p);
                d.add(subject_hash(*k, s), *p);
            }
            let o = d.encode(6, buckets, 5, 1);
            let mut all: Vec<(u8, String)> = asked.clone();
            all.extend(seen.iter().map(|(k, s, _)| (*k, s.clone())));
            for (k, s) in &all {
                let want: Vec<u16> = model.get(&(*k, s.clone())).map(|p| p.iter().copied().collect()).unwrap_or_default();
                let got = lookup("k", &o, subject_hash(*k, s)).unwrap();
                // A hash collision may only add partitions.
                prop_assert!(want.iter().all(|p| got.contains(p)), "{k} {s}: {got:?} lacks {want:?}");
                let colliding = model.keys().any(|(k2, s2)| (k2, s2) != (k, s) && subject_hash(*k2, s2) == subject_hash(*k, s));
                if !colliding {
                    prop_assert_eq!(got, want);
                }
            }
            // A roll-up of the buckets equals the directory.
            let (_, bs) = super::buckets("k", &o).unwrap();
            let mut merged = DirectoryBuilder::new();
            bs.iter().for_each(|b| merged.add_bucket(b));
            prop_assert_eq!(merged.encode(6, buckets, 5, 1), o);
        }
    }
}
