//! Fixed-width bit fields, little-endian, for the checkpoint's packed sections
//! (`storage/FORMAT.md`, "Index checkpoint", version 3): field `i` of width `w` is
//! bits `i·w .. (i+1)·w` of the section, bit `k` being bit `k % 8` of byte `k / 8`.
//! A section is written in whole 64-bit words. Reads are O(1) per field and in place.

/// The bits needed to write `v` (at least 1, so every packed entry takes room and a
/// count read from a file is bounded by the file's bits).
pub(crate) fn width(v: u64) -> u32 {
    (u64::BITS - v.leading_zeros()).max(1)
}

/// Bytes of a section of `n` fields of `w` bits (whole words); `None` past `u64`.
pub(crate) fn packed_bytes(n: u64, w: u32) -> Option<u64> {
    n.checked_mul(w as u64)?.div_ceil(64).checked_mul(8)
}

/// The `w`-bit field (`w <= 64`) at bit `bit` of the section starting at byte `at` of
/// `b`. Bytes past the end of `b` read as zero (the caller checked that the field lies
/// in its section; this only never panics).
#[inline]
pub(crate) fn get(b: &[u8], at: usize, bit: u64, w: u32) -> u64 {
    debug_assert!(w <= 64);
    if w == 0 {
        return 0;
    }
    let byte = at.saturating_add((bit / 8) as usize);
    let shift = (bit % 8) as u32;
    let lo = match b.get(byte..byte.saturating_add(8)) {
        Some(s) => u64::from_le_bytes(s.try_into().expect("8 bytes")),
        None => {
            let mut x = [0u8; 8];
            let tail = b.get(byte..).unwrap_or(&[]);
            x[..tail.len().min(8)].copy_from_slice(&tail[..tail.len().min(8)]);
            u64::from_le_bytes(x)
        }
    };
    let mut v = lo >> shift;
    if shift + w > 64 {
        let hi = b.get(byte.saturating_add(8)).copied().unwrap_or(0) as u64;
        v |= hi << (64 - shift);
    }
    if w == 64 {
        v
    } else {
        v & ((1u64 << w) - 1)
    }
}

/// The byte range of `b`'s section (at `at`) holding fields `lo..hi` of `w` bits.
pub(crate) fn byte_range(at: usize, lo: u64, hi: u64, w: u32) -> std::ops::Range<usize> {
    let from = (lo * w as u64) / 8;
    let to = (hi * w as u64).div_ceil(8);
    at + from as usize..at + to as usize
}

/// Writes fields of any width up to 64, packed, into whole little-endian words.
#[derive(Default)]
pub(crate) struct Writer {
    words: Vec<u64>,
    bits: u64,
}

impl Writer {
    pub fn put(&mut self, v: u64, w: u32) {
        debug_assert!(w <= 64);
        debug_assert!(w == 64 || v >> w == 0, "{v} does not fit {w} bits");
        if w == 0 {
            return;
        }
        let shift = (self.bits % 64) as u32;
        if shift == 0 {
            self.words.push(0);
        }
        let last = self.words.len() - 1;
        self.words[last] |= v << shift;
        if shift + w > 64 {
            self.words.push(v >> (64 - shift));
        }
        self.bits += w as u64;
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_every_width_read_back_at_every_alignment() {
        for w in 1..=64u32 {
            let max = if w == 64 { u64::MAX } else { (1u64 << w) - 1 };
            let vals: Vec<u64> = (0..131u64)
                .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) & max)
                .chain([0, max])
                .collect();
            let mut wr = Writer::default();
            for &v in &vals {
                wr.put(v, w);
            }
            let b = wr.into_bytes();
            assert_eq!(b.len() as u64, packed_bytes(vals.len() as u64, w).unwrap());
            // At an odd start too: sections lie anywhere in the file.
            let mut shifted = vec![0xFFu8; 3];
            shifted.extend_from_slice(&b);
            for (i, &v) in vals.iter().enumerate() {
                assert_eq!(get(&b, 0, i as u64 * w as u64, w), v, "w {w} i {i}");
                assert_eq!(get(&shifted, 3, i as u64 * w as u64, w), v, "w {w} i {i}");
            }
        }
    }

    #[test]
    fn reads_past_the_end_are_zero_not_a_panic() {
        let b = [0xFFu8; 5];
        assert_eq!(get(&b, 0, 0, 64), 0xFF_FFFF_FFFF);
        assert_eq!(get(&b, 4, 7, 64), 1);
        assert_eq!(get(&b, usize::MAX, u64::MAX, 64), 0);
        assert_eq!(width(0), 1);
        assert_eq!(width(309), 9);
        assert_eq!(width(u64::MAX), 64);
    }
}
