//! The source-id index of a segment (versions 3 to 5): which events may hold a given
//! upstream id, in about 16 bits an entry (`storage/FORMAT.md`, "Source ids").
//!
//! Each id is reduced to a *fingerprint*, the low `f` bits of its FNV-1a-64 hash, with
//! `f` = bits to count the events with a source id + [`SPARE_BITS`], at most 32: a
//! lookup of an id that is not stored finds an equal fingerprint at most once in 2^6
//! tries (below 2^26 ids a segment; past that `f` stops at 32 and matches grow more
//! frequent), and an equal one costs a comparison of the ids (the `source_id` column of
//! one attribute chunk read), never a wrong answer.
//! The reader takes `f` from the section, whatever it is (files written with 14 spare
//! bits, before 2026-12-04, read the same way). Entries are sorted by fingerprint;
//! the top `b` bits of a fingerprint name its *bucket*, and a directory of where each
//! bucket starts replaces those bits in every entry. The writer picks the `b` that
//! makes the section smallest.
//!
//! An entry names a *group* of `2^g` ordinals (`ordinal >> g`), not the event itself
//! (version 5; `g` = 0 in versions 3 and 4, where the group is the ordinal): a match
//! compares the id with each event of the group, in ordinal order. With `g` =
//! [`GROUP_BITS`] a group is an attribute chunk, and an entry is 7 bits smaller.

use crate::bitpack::{bits_needed, packed_len, Packer};

/// Bytes before the arrays: `f`, `b`, `g` (zero before version 5), five zero bytes.
pub(crate) const HEAD: usize = 8;
/// The group bits this build writes: a group is an attribute chunk (128 events), so a
/// match reads one chunk's ids. Each bit saves a bit an entry and doubles the events a
/// match compares (BENCHMARKS.md, "Segment format 5").
pub(crate) const GROUP_BITS: u8 = 7;

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
/// [`HEAD`]); everything follows from the entry and event counts and `f`, `b`, `g`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    pub fingerprint_bits: u8,
    pub bucket_bits: u8,
    /// An entry names ordinals `group << g .. (group + 1) << g`.
    pub group_bits: u8,
    pub entries: usize,
    /// Width of the bucket directory's values (positions 0..=entries).
    pub start_bits: u8,
    /// Width of an entry's remaining fingerprint bits, `f − b`.
    pub rest_bits: u8,
    /// Width of a group (an ordinal below the segment's event count, shifted right
    /// by `g`).
    pub group_width: u8,
}

impl Layout {
    pub(crate) fn new(
        fingerprint_bits: u8,
        bucket_bits: u8,
        group_bits: u8,
        entries: usize,
        events: usize,
    ) -> Layout {
        debug_assert!(bucket_bits <= fingerprint_bits && fingerprint_bits <= 32);
        debug_assert!(group_bits < 32);
        Layout {
            fingerprint_bits,
            bucket_bits,
            group_bits,
            entries,
            start_bits: bits_needed(entries as u64),
            rest_bits: fingerprint_bits - bucket_bits,
            group_width: bits_needed((events.saturating_sub(1) >> group_bits) as u64),
        }
    }
    /// Groups of a segment of `events` events.
    pub(crate) fn groups(&self, events: usize) -> usize {
        events.div_ceil(1 << self.group_bits)
    }
    /// The ordinals of group `k` in a segment of `events` events.
    pub(crate) fn ordinals(&self, k: u64, events: u32) -> std::ops::Range<u32> {
        let start = (k << self.group_bits).min(events as u64) as u32;
        let end = ((k + 1) << self.group_bits).min(events as u64) as u32;
        start..end
    }
    pub(crate) fn buckets(&self) -> usize {
        1 << self.bucket_bits
    }
    /// Byte offsets (from the section's start) of the directory, the rests and the
    /// groups, and the section's length.
    pub(crate) fn offsets(&self) -> [usize; 4] {
        let starts = HEAD;
        let rests = starts + packed_len(self.buckets() + 1, self.start_bits);
        let groups = rests + packed_len(self.entries, self.rest_bits);
        [
            starts,
            rests,
            groups,
            groups + packed_len(self.entries, self.group_width),
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
/// (empty when there are none) in a segment of `events` events, with groups of
/// `2^group_bits` ordinals, and its entry count (events of one group with one
/// fingerprint share an entry).
pub(crate) fn encode(hashes: &[(u64, u32)], events: usize, group_bits: u8) -> (Vec<u8>, usize) {
    if hashes.is_empty() {
        return (Vec::new(), 0);
    }
    // The fingerprint width counts the events with ids, not the entries: a group's
    // events sharing an entry do not make an absent id's match more likely.
    let f = fingerprint_bits(hashes.len());
    let mut entries: Vec<(u32, u32)> = hashes
        .iter()
        .map(|&(h, o)| {
            let fp = Layout::new(f, 0, group_bits, 0, events).fingerprint(h);
            (fp, o >> group_bits)
        })
        .collect();
    entries.sort_unstable();
    entries.dedup();
    let n = entries.len();
    // The smallest section; ties to fewer buckets.
    let layout = (0..=f.min(MAX_BUCKET_BITS).min(bits_needed(n as u64)))
        .map(|b| Layout::new(f, b, group_bits, n, events))
        .min_by_key(|l| (l.offsets()[3], l.bucket_bits))
        .expect("b = 0 is a candidate");
    let mut out = vec![0u8; HEAD];
    out[0] = layout.fingerprint_bits;
    out[1] = layout.bucket_bits;
    out[2] = layout.group_bits;
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
    let mut p = Packer::new(layout.group_width);
    for &(_, group) in &entries {
        p.push(group as u64, &mut out);
    }
    p.finish(&mut out);
    debug_assert_eq!(out.len(), layout.offsets()[3]);
    (out, n)
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
            let layout = Layout::new(f, 0, 0, n, n);
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
        let (bytes, entries) = encode(&hashes, 3_000, 0);
        assert_eq!(entries, 2_000);
        let b = bytes[1];
        assert!((6..=9).contains(&b), "bucket bits {b}");
        // 17-bit fingerprints and 12-bit ordinals: about 22 bits an entry, against
        // 32 + 12 unbucketed.
        assert!(bytes.len() * 8 < 2_000 * 23, "{} bytes", bytes.len());
        // Groups of 128 ordinals: 5-bit groups instead of 12-bit ordinals.
        let (grouped, entries) = encode(&hashes, 3_000, GROUP_BITS);
        assert_eq!(grouped[2], GROUP_BITS);
        assert!(entries <= 2_000);
        assert!(grouped.len() * 8 < 2_000 * 16, "{} bytes", grouped.len());
    }

    /// Events of one group whose ids share a fingerprint share an entry, and a group's
    /// ordinals stop at the segment's end.
    #[test]
    fn a_groups_events_of_one_fingerprint_share_an_entry() {
        let h = crate::row::fnv1a(b"same");
        let (_, entries) = encode(&[(h, 0), (h, 5), (h, 127), (h, 128)], 200, 7);
        assert_eq!(entries, 2);
        let l = Layout::new(fingerprint_bits(4), 0, 7, entries, 200);
        assert_eq!(l.groups(200), 2);
        assert_eq!(l.ordinals(0, 200), 0..128);
        assert_eq!(l.ordinals(1, 200), 128..200);
        assert_eq!(l.group_width, 1);
    }
}
