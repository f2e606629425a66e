//! Fixed-width bit packing with random access: value `i` of an array packed at `bits`
//! bits each lives at bit `i * bits`, little-endian. Used for every sealed column.

/// The widest value we pack. One unaligned 64-bit read then always covers a value.
pub const MAX_BITS: u8 = 56;

/// Bits needed to represent `max` (0 for 0).
pub fn bits_needed(max: u64) -> u8 {
    (64 - max.leading_zeros()) as u8
}

/// Bytes taken by `n` values of `bits` bits.
pub fn packed_len(n: usize, bits: u8) -> usize {
    (n * bits as usize).div_ceil(8)
}

/// Packs values one at a time (for callers that produce them in a stream): value `i`
/// lands at bit `i * bits`.
#[derive(Clone, Copy, Debug)]
pub struct Packer {
    bits: u8,
    acc: u128,
    nacc: u32,
}

impl Packer {
    pub fn new(bits: u8) -> Packer {
        assert!(bits <= MAX_BITS, "cannot pack {bits} bits");
        Packer {
            bits,
            acc: 0,
            nacc: 0,
        }
    }

    #[inline]
    pub fn push(&mut self, v: u64, out: &mut Vec<u8>) {
        self.push_bits(v, self.bits, out);
    }

    /// Packs `v` at `bits` bits (not the packer's width): for records of fields of
    /// different widths, such as a digit string's field bases.
    #[inline]
    pub fn push_bits(&mut self, v: u64, bits: u8, out: &mut Vec<u8>) {
        if bits == 0 {
            return;
        }
        debug_assert!(
            bits <= MAX_BITS && v < (1u64 << bits),
            "value {v} does not fit {bits} bits"
        );
        self.acc |= (v as u128) << self.nacc;
        self.nacc += bits as u32;
        while self.nacc >= 8 {
            out.push(self.acc as u8);
            self.acc >>= 8;
            self.nacc -= 8;
        }
    }

    /// Writes the last partial byte, if any.
    pub fn finish(self, out: &mut Vec<u8>) {
        if self.nacc > 0 {
            out.push(self.acc as u8);
        }
    }
}

/// The `width`-bit value at bit `bit` of `data` (little-endian; `width` ≤ [`MAX_BITS`]),
/// reading zeros past the end: for records whose fields have different widths.
#[inline]
pub fn bits_at(data: &[u8], bit: usize, width: u8) -> u64 {
    debug_assert!(width <= MAX_BITS);
    if width == 0 {
        return 0;
    }
    (word_at(data, bit / 8) >> (bit % 8)) & ((1u64 << width) - 1)
}

/// The little-endian word at `data[byte..]`, zeros past the end: eight bytes loaded at
/// once, or near the end the few left gathered in a register — not copied into a buffer
/// and loaded back (a call to `memcpy`, and a load that waits for the bytes stored: a
/// chunk's small packed arrays, its column directory and dictionary codes, are read at
/// their ends all the time).
#[inline]
fn word_at(data: &[u8], byte: usize) -> u64 {
    match data.get(byte..byte + 8) {
        Some(s) => u64::from_le_bytes(s.try_into().expect("slice of 8")),
        None => data
            .get(byte..)
            .unwrap_or(&[])
            .iter()
            .rev()
            .fold(0, |word, &b| word << 8 | u64::from(b)),
    }
}

/// Random-access view of a packed array. Construct only over a slice whose length was
/// checked to be at least `packed_len(n, bits)`; `get` beyond that reads zeros.
#[derive(Clone, Copy, Debug)]
pub struct BitReader<'a> {
    data: &'a [u8],
    bits: u8,
    mask: u64,
}

impl<'a> BitReader<'a> {
    pub fn new(data: &'a [u8], bits: u8) -> Self {
        assert!(bits <= MAX_BITS, "cannot unpack {bits} bits");
        let mask = if bits == 0 { 0 } else { (1u64 << bits) - 1 };
        BitReader { data, bits, mask }
    }

    #[inline]
    pub fn get(&self, i: usize) -> u64 {
        // Zero bits: every value is 0, whatever bytes the reader was given (a
        // zero-width column's own slice is empty: the load below would take the
        // short-tail copy for every value).
        if self.mask == 0 {
            return 0;
        }
        let bit = i * self.bits as usize;
        (word_at(self.data, bit / 8) >> (bit % 8)) & self.mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A zero-width reader gives 0 for every value, over no bytes or over bytes that
    /// are not zero (a posting walk's readers are given the bytes past their column).
    #[test]
    fn zero_width_values_are_zero_over_any_bytes() {
        for data in [&[][..], &[0xFF; 3][..], &[0xFF; 16][..]] {
            let r = BitReader::new(data, 0);
            assert!((0..40).all(|i| r.get(i) == 0));
        }
    }

    proptest! {
        #[test]
        fn packed_values_read_back(values in proptest::collection::vec(any::<u64>(), 0..300), bits in 0u8..=56) {
            let mask = if bits == 0 { 0 } else { (1u64 << bits) - 1 };
            let values: Vec<u64> = values.into_iter().map(|v| v & mask).collect();
            let mut out = vec![0xAA]; // packing appends after existing bytes
            let mut p = Packer::new(bits);
            for &v in &values {
                p.push(v, &mut out);
            }
            p.finish(&mut out);
            prop_assert_eq!(out.len(), 1 + packed_len(values.len(), bits));
            let r = BitReader::new(&out[1..], bits);
            for (i, v) in values.iter().enumerate() {
                prop_assert_eq!(r.get(i), *v);
            }
        }
    }

    proptest! {
        /// The word at any byte, near or past the end included, is the one a copy into
        /// a zeroed buffer gives.
        #[test]
        fn words_near_the_end_are_zero_filled(data in proptest::collection::vec(any::<u8>(), 0..20), byte in 0usize..30) {
            let mut buf = [0u8; 8];
            let tail = data.get(byte..).unwrap_or(&[]);
            let n = tail.len().min(8);
            buf[..n].copy_from_slice(&tail[..n]);
            prop_assert_eq!(word_at(&data, byte), u64::from_le_bytes(buf));
        }
    }

    proptest! {
        #[test]
        fn fields_of_mixed_widths_read_back(fields in proptest::collection::vec((any::<u64>(), 0u8..=56), 0..20)) {
            let fields: Vec<(u64, u8)> = fields
                .into_iter()
                .map(|(v, b)| (if b == 0 { 0 } else { v & ((1u64 << b) - 1) }, b))
                .collect();
            let mut out = Vec::new();
            let mut p = Packer::new(0);
            for &(v, b) in &fields {
                p.push_bits(v, b, &mut out);
            }
            p.finish(&mut out);
            let total: usize = fields.iter().map(|&(_, b)| b as usize).sum();
            prop_assert_eq!(out.len(), total.div_ceil(8));
            let mut bit = 0;
            for &(v, b) in &fields {
                prop_assert_eq!(bits_at(&out, bit, b), v);
                bit += b as usize;
            }
        }
    }

    #[test]
    fn bits_needed_edges() {
        assert_eq!(bits_needed(0), 0);
        assert_eq!(bits_needed(1), 1);
        assert_eq!(bits_needed(255), 8);
        assert_eq!(bits_needed(256), 9);
    }
}
