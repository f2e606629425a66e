//! The source-id index of a segment (versions 3 and 4): which ordinal holds the event with a
//! given upstream id, in about 22 bits an entry (`storage/FORMAT.md`, "Source ids").
//!
//! Each id is reduced to a *fingerprint*, the low `f` bits of its FNV-1a-64 hash, with
//! `f` = bits to count the entries + [`SPARE_BITS`], at most 32: a lookup of an id that
//! is not stored finds an equal fingerprint at most once in 2^6 tries (below 2^26 entries a
//! segment; past that `f` stops at 32 and matches grow more frequent), and an equal one
//! costs a comparison of the ids (one event's attributes read), never a wrong answer.
//! The reader takes `f` from the section, whatever it is (files written with 14 spare
//! bits, before 2026-12-04, read the same way). Entries are sorted by fingerprint;
//! the top `b` bits of a fingerprint name its *bucket*, and a directory of where each
//! bucket starts replaces those bits in every entry. The writer picks the `b` that
//! makes the section smallest.

use crate::bitpack::{bits_needed, packed_len, Packer};

/// Bytes before the arrays: `f`, `b`, six zero bytes.
pub(crate) const HEAD: usize = 8;
/// A bound on the bucket bits a reader accepts (the directory has `2^b + 1` entries).
pub(crate) const MAX_BUCKET_BITS: u8 = 24;
/// Fingerprint bits beyond those that count the entries: a lookup of an absent id
/// matches `entries / 2^f` stored fingerprints on average, below 2^-6 (between one in
/// 128 and one in 64 lookups reads an event's attributes to compare the ids). Each
/// spare bit costs a bit an entry (0.1 bytes an event on the compare data, where 14
/// spare bits made the demo month's index 3.06 bytes an event and 6 make it 2.28:
/// BENCHMARKS.md, "Segment format 4").
pub(crate) const SPARE_BITS: u8 = 6;

/// Fingerprint width for `entries` entries.
pub(crate) fn fingerprint_bits(entries: usize) -> u8 {
    (bits_needed(entries as u64) + SPARE_BITS).min(32)
}

/// The widths of a section's three packed arrays and where each starts (after
/// [`HEAD`]); everything follows from the entry and event counts and `f`, `b`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    pub fingerprint_bits: u8,
    pub bucket_bits: u8,
    pub entries: usize,
    /// Width of the bucket directory's values (positions 0..=entries).
    pub start_bits: u8,
    /// Width of an entry's remaining fingerprint bits, `f − b`.
    pub rest_bits: u8,
    /// Width of an ordinal (below the segment's event count).
    pub ordinal_bits: u8,
}

impl Layout {
    pub(crate) fn new(
        fingerprint_bits: u8,
        bucket_bits: u8,
        entries: usize,
        events: usize,
    ) -> Layout {
        debug_assert!(bucket_bits <= fingerprint_bits && fingerprint_bits <= 32);
        Layout {
            fingerprint_bits,
            bucket_bits,
            entries,
            start_bits: bits_needed(entries as u64),
            rest_bits: fingerprint_bits - bucket_bits,
            ordinal_bits: bits_needed(events.saturating_sub(1) as u64),
        }
    }
    pub(crate) fn buckets(&self) -> usize {
        1 << self.bucket_bits
    }
    /// Byte offsets (from the section's start) of the directory, the rests and the
    /// ordinals, and the section's length.
    pub(crate) fn offsets(&self) -> [usize; 4] {
        let starts = HEAD;
        let rests = starts + packed_len(self.buckets() + 1, self.start_bits);
        let ordinals = rests + packed_len(self.entries, self.rest_bits);
        [
            starts,
            rests,
            ordinals,
            ordinals + packed_len(self.entries, self.ordinal_bits),
        ]
    }
    /// A fingerprint's bucket and the bits an entry keeps of it.
    pub(crate) fn split(&self, fingerprint: u32) -> (usize, u64) {
        let fp = fingerprint as u64;
        (
            (fp >> self.rest_bits) as usize,
            fp & ((1u64 << self.rest_bits) - 1),
        )
    }
    /// The fingerprint of a hash.
    pub(crate) fn fingerprint(&self, hash: u64) -> u32 {
        (hash & ((1u64 << self.fingerprint_bits) - 1)) as u32
    }
}

/// The section's bytes for `(FNV-1a-64 hash, ordinal)` of every event with a source id
/// (empty when there are none) in a segment of `events` events.
pub(crate) fn encode(hashes: &[(u64, u32)], events: usize) -> Vec<u8> {
    let n = hashes.len();
    if n == 0 {
        return Vec::new();
    }
    let f = fingerprint_bits(n);
    let mut entries: Vec<(u32, u32)> = hashes
        .iter()
        .map(|&(h, o)| (Layout::new(f, 0, n, events).fingerprint(h), o))
        .collect();
    entries.sort_unstable();
    // The smallest section; ties to fewer buckets.
    let layout = (0..=f.min(MAX_BUCKET_BITS).min(bits_needed(n as u64)))
        .map(|b| Layout::new(f, b, n, events))
        .min_by_key(|l| (l.offsets()[3], l.bucket_bits))
        .expect("b = 0 is a candidate");
    let mut out = vec![0u8; HEAD];
    out[0] = layout.fingerprint_bits;
    out[1] = layout.bucket_bits;
    // The directory: bucket k's entries are [start k, start k+1).
    let mut p = Packer::new(layout.start_bits);
    let mut at = 0usize;
    for k in 0..=layout.buckets() {
        while at < n && layout.split(entries[at].0).0 < k {
            at += 1;
        }
        p.push(at as u64, &mut out);
    }
    p.finish(&mut out);
    let mut p = Packer::new(layout.rest_bits);
    for &(fp, _) in &entries {
        p.push(layout.split(fp).1, &mut out);
    }
    p.finish(&mut out);
    let mut p = Packer::new(layout.ordinal_bits);
    for &(_, o) in &entries {
        p.push(o as u64, &mut out);
    }
    p.finish(&mut out);
    debug_assert_eq!(out.len(), layout.offsets()[3]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_keep_6_spare_bits_up_to_32() {
        assert_eq!(fingerprint_bits(1), 7);
        assert_eq!(fingerprint_bits(2_000), 17);
        assert_eq!(fingerprint_bits(1 << 20), 27);
        assert_eq!(fingerprint_bits(1 << 30), 32);
    }

    /// An absent id matches a stored fingerprint (and costs an attribute read to tell
    /// them apart) in at most about one lookup in 2^SPARE_BITS: counted over 200,000
    /// absent ids against indexes of several sizes.
    #[test]
    fn absent_ids_rarely_match_a_fingerprint() {
        for n in [60usize, 1_000, 2_000, 2_700, 40_000] {
            let hashes: Vec<(u64, u32)> = (0..n as u32)
                .map(|i| (crate::row::fnv1a(format!("id-{i}").as_bytes()), i))
                .collect();
            let f = fingerprint_bits(n);
            let layout = Layout::new(f, 0, n, n);
            let stored: std::collections::HashMap<u32, usize> =
                hashes.iter().fold(Default::default(), |mut m, &(h, _)| {
                    *m.entry(layout.fingerprint(h)).or_default() += 1;
                    m
                });
            let tries = 200_000u32;
            let matches: usize = (0..tries)
                .map(|i| {
                    let h = crate::row::fnv1a(format!("absent-{i}").as_bytes());
                    stored.get(&layout.fingerprint(h)).copied().unwrap_or(0)
                })
                .sum();
            let rate = matches as f64 / tries as f64;
            let expected = n as f64 / (1u64 << f) as f64;
            assert!(expected <= 1.0 / 64.0, "{n} entries: {expected}");
            // FNV-1a's low bits of similar ids are not quite uniform: allow a quarter
            // more than 2^-6 (counted: 0.0165 for 60 entries, expected 0.0146).
            assert!(
                rate < 1.25 / 64.0,
                "{n} entries: {matches} matches in {tries}, expected {expected}"
            );
        }
    }

    #[test]
    fn the_writer_picks_buckets_that_shrink_the_section() {
        let hashes: Vec<(u64, u32)> = (0..2_000u32)
            .map(|i| (crate::row::fnv1a(format!("id-{i}").as_bytes()), i))
            .collect();
        let bytes = encode(&hashes, 3_000);
        let b = bytes[1];
        assert!((6..=9).contains(&b), "bucket bits {b}");
        // 17-bit fingerprints and 12-bit ordinals: about 22 bits an entry, against
        // 32 + 12 unbucketed.
        assert!(bytes.len() * 8 < 2_000 * 23, "{} bytes", bytes.len());
    }
}
