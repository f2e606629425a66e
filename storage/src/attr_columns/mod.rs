//! Attributes of a segment by column: the events of a segment are cut into chunks of
//! [`CHUNK_ROWS`] consecutive ordinals, and each chunk stores its attributes key by
//! key, each column in the encoding that fits it — a dictionary for few distinct
//! strings (plate colours), fixed fields for digit strings that start with a 20-digit
//! code (GA/T 1400 ids: the device code, then type, time and serial numbers),
//! frame-of-reference bit packing for integers and for decimals (confidence 0.93 is 93
//! hundredths), a bitmap for booleans, and the raw strings, zstd-compressed where that
//! wins, for the rest. Every encoding but compressed strings reads one event's value
//! without decoding its neighbours. Segment formats 4 and 5 lay a chunk out so that the
//! value is also found without passing over anything before it ([`ChunkLayout::Direct`],
//! read by `direct`); formats 2 and 3 are read by walking ([`ChunkLayout::Walked`]).
//! The layouts are in `storage/FORMAT.md`.
//!
//! An event's attributes are given and returned in the row encoding of
//! [`crate::attr_codec`] (the WAL's); that encoding is unique for a map, so what is
//! read back is byte-identical to what was written.

use crate::attr_codec::{
    encode_pairs_into, key_code, put_varint, visit_attrs, well_known_key, AttrRef, Reader,
};
use crate::bitpack::{bits_needed, packed_len, BitReader, Packer, MAX_BITS};

mod direct;

/// How a chunk's columns are laid out: what the segment's format version says.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ChunkLayout {
    /// Versions 2 and 3: columns back to back, each passed over to find the next; a
    /// dictionary's strings, a digit string's field bases and raw strings' lengths
    /// walked to reach the one read.
    Walked,
    /// Version 4: a directory of where each column ends, and every value read at a
    /// computed place (dictionary string ends, field bases at fixed widths, raw
    /// strings' ends): one event's value of a column costs the same whatever its place.
    Direct,
}

/// Events per attribute chunk.
pub const CHUNK_ROWS: usize = 128;

/// Column encodings (the `class` byte).
const STR_RAW: u8 = 0;
const STR_DICT: u8 = 1;
const STR_DIGITS: u8 = 2;
const INT: u8 = 3;
const INT_RAW: u8 = 4;
const FLOAT_DEC: u8 = 5;
const FLOAT_RAW: u8 = 6;
const BOOL: u8 = 7;

/// Most distinct strings a dictionary column holds.
const MAX_DICT: usize = 255;
/// Widest digit field (10^16 < 2^56, the widest packed value).
const MAX_FIELD_DIGITS: usize = 16;
/// Longest digit string split into fields after its 20-digit prefix.
const MAX_DIGIT_SUFFIX: usize = 48;
/// Raw string bytes of one chunk above which they are not compressed (a reader
/// decompresses the whole blob to read one value).
const MAX_ZSTD_INPUT: usize = 256 << 10;

/// The value kinds a column holds (one column per key and kind).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Str,
    Int,
    Float,
    Bool,
}

fn kind_of(v: &AttrRef<'_>) -> Kind {
    match v {
        AttrRef::Str(_) => Kind::Str,
        AttrRef::Int(_) => Kind::Int,
        AttrRef::Float(_) => Kind::Float,
        AttrRef::Bool(_) => Kind::Bool,
    }
}

fn zigzag(i: i64) -> u64 {
    ((i << 1) ^ (i >> 63)) as u64
}

fn unzigzag(z: u64) -> i64 {
    (z >> 1) as i64 ^ -((z & 1) as i64)
}

/// Packs `values` at the width their largest needs: `bits:u8` then the bits.
fn put_packed(values: impl Iterator<Item = u64> + Clone, out: &mut Vec<u8>) {
    let bits = bits_needed(values.clone().max().unwrap_or(0));
    out.push(bits);
    let mut p = Packer::new(bits);
    for v in values {
        p.push(v, out);
    }
    p.finish(out);
}

/// Encodes the attributes of `rows` (each in the row encoding; 1 to [`CHUNK_ROWS`]
/// of them) as one chunk in the current layout ([`ChunkLayout::Direct`]), appended
/// to `out`.
pub fn encode_chunk(rows: &[&[u8]], out: &mut Vec<u8>) -> Result<(), String> {
    encode_chunk_as(ChunkLayout::Direct, rows, out)
}

/// [`encode_chunk`] in `layout` (the walked layout only for tests of the readers of
/// versions 2 and 3: this build writes the direct layout, versions 4 and 5).
pub(crate) fn encode_chunk_as(
    layout: ChunkLayout,
    rows: &[&[u8]],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    assert!(!rows.is_empty() && rows.len() <= CHUNK_ROWS);
    // (key, kind) -> per row its value.
    let mut columns: std::collections::BTreeMap<(&str, Kind), Vec<Option<AttrRef<'_>>>> =
        Default::default();
    for (i, bytes) in rows.iter().enumerate() {
        visit_attrs(bytes, |k, v| {
            columns
                .entry((k, kind_of(&v)))
                .or_insert_with(|| vec![None; rows.len()])[i] = Some(v);
        })?;
    }
    out.push(rows.len() as u8 - 1);
    put_varint(columns.len() as u64, out);
    // The direct layout: each column is encoded apart, then the directory of their
    // ends (from the end of the directory; the last column ends the chunk) goes first.
    let (mut body, mut ends) = (Vec::new(), Vec::with_capacity(columns.len()));
    let chunk_out = out;
    let out = match layout {
        ChunkLayout::Walked => &mut *chunk_out,
        ChunkLayout::Direct => &mut body,
    };
    for ((key, kind), values) in &columns {
        let code = key_code(key);
        out.push(code);
        if code == 0 {
            put_varint(key.len() as u64, out);
            out.extend_from_slice(key.as_bytes());
        }
        let present: Vec<AttrRef<'_>> = values.iter().flatten().copied().collect();
        let class_at = out.len();
        out.push(0); // the class, set below
        if present.len() == rows.len() {
            out.push(0);
        } else {
            out.push(1);
            let mut bitmap = vec![0u8; rows.len().div_ceil(8)];
            for (i, v) in values.iter().enumerate() {
                if v.is_some() {
                    bitmap[i / 8] |= 1 << (i % 8);
                }
            }
            out.extend_from_slice(&bitmap);
        }
        out[class_at] = match kind {
            Kind::Str => encode_strings(
                layout,
                &of_kind(&present, |v| match v {
                    AttrRef::Str(s) => Some(s),
                    _ => None,
                }),
                out,
            ),
            Kind::Int => encode_ints(
                &of_kind(&present, |v| match v {
                    AttrRef::Int(i) => Some(i),
                    _ => None,
                }),
                out,
            ),
            Kind::Float => encode_floats(
                &of_kind(&present, |v| match v {
                    AttrRef::Float(f) => Some(f),
                    _ => None,
                }),
                out,
            ),
            Kind::Bool => {
                put_packed(
                    present
                        .iter()
                        .map(|v| matches!(v, AttrRef::Bool(true)) as u64),
                    out,
                );
                BOOL
            }
        };
        ends.push(out.len() as u64);
    }
    if layout == ChunkLayout::Direct {
        ends.pop();
        put_packed(ends.iter().copied(), chunk_out);
        chunk_out.extend_from_slice(&body);
    }
    Ok(())
}

/// A column's values as their type (a column holds one kind of value: its key).
fn of_kind<'a, T>(present: &[AttrRef<'a>], f: impl Fn(AttrRef<'a>) -> Option<T>) -> Vec<T> {
    present.iter().filter_map(|v| f(*v)).collect()
}

/// Frame of reference: `base` (zigzag varint) then the offsets from it, packed; or
/// 8 bytes each when the range is wider than a packed value.
fn encode_ints(ints: &[i64], out: &mut Vec<u8>) -> u8 {
    let (min, max) = (
        *ints.iter().min().expect("present"),
        *ints.iter().max().expect("present"),
    );
    let range = (max as i128 - min as i128) as u128;
    if range >= 1u128 << MAX_BITS {
        for i in ints {
            out.extend_from_slice(&i.to_le_bytes());
        }
        return INT_RAW;
    }
    put_varint(zigzag(min), out);
    put_packed(ints.iter().map(|&i| (i as i128 - min as i128) as u64), out);
    INT
}

/// Decimals with at most 6 places (each read back to the same bits): the scale, then
/// the scaled integers as [`encode_ints`]; else 8 bytes each.
fn encode_floats(floats: &[f64], out: &mut Vec<u8>) -> u8 {
    'scale: for scale in 0u8..=6 {
        let m = 10f64.powi(scale as i32);
        let mut scaled = Vec::with_capacity(floats.len());
        for &f in floats {
            let x = (f * m).round();
            if !x.is_finite() || x.abs() > (1u64 << 52) as f64 {
                continue 'scale;
            }
            // Read back as the decoder does (so -0.0, which scales to 0, is refused).
            let x = x as i64;
            if (x as f64 / m).to_bits() != f.to_bits() {
                continue 'scale;
            }
            scaled.push(x);
        }
        let mut body = Vec::new();
        if encode_ints(&scaled, &mut body) == INT {
            out.push(scale);
            out.extend_from_slice(&body);
            return FLOAT_DEC;
        }
    }
    for f in floats {
        out.extend_from_slice(&f.to_le_bytes());
    }
    FLOAT_RAW
}

/// The digit fields a suffix of `len` digits is cut into: a GA/T 1400 object id's
/// after its device code (type 2, time 14, serial 5, object type 2, serial 5), an
/// image's (type 2, time 14, serial 5), else runs of [`MAX_FIELD_DIGITS`].
fn fields_of(len: usize) -> impl Iterator<Item = u8> {
    let (v, n) = field_widths(len);
    v.into_iter().take(n)
}

/// [`fields_of`] as an array and its length.
#[inline]
fn field_widths(len: usize) -> ([u8; 5], usize) {
    // At most MAX_DIGIT_SUFFIX / MAX_FIELD_DIGITS + 1 = 4 fields but for the
    // GA/T 1400 layouts' five; held inline (read once per event read).
    let mut v = [0u8; 5];
    let n = match len {
        28 => {
            v = [2, 14, 5, 2, 5];
            5
        }
        21 => {
            v[..3].copy_from_slice(&[2, 14, 5]);
            3
        }
        _ => {
            let full = len / MAX_FIELD_DIGITS;
            v[..full].fill(MAX_FIELD_DIGITS as u8);
            match len % MAX_FIELD_DIGITS {
                0 => full,
                rest => {
                    v[full] = rest as u8;
                    full + 1
                }
            }
        }
    };
    (v, n)
}

/// The smallest of the string encodings that apply.
fn encode_strings(layout: ChunkLayout, strs: &[&str], out: &mut Vec<u8>) -> u8 {
    let mut best: Option<(u8, Vec<u8>)> = None;
    let mut consider = |class: u8, bytes: Vec<u8>| {
        if best.as_ref().is_none_or(|(_, b)| bytes.len() < b.len()) {
            best = Some((class, bytes));
        }
    };
    if let Some(b) = dict_strings(layout, strs) {
        consider(STR_DICT, b);
    }
    if let Some(b) = digit_strings(layout, strs) {
        consider(STR_DIGITS, b);
    }
    consider(STR_RAW, raw_strings(layout, strs));
    let (class, bytes) = best.expect("raw always applies");
    out.extend_from_slice(&bytes);
    class
}

/// The dictionary ([`put_dict`]) then each value's index, packed.
fn dict_strings(layout: ChunkLayout, strs: &[&str]) -> Option<Vec<u8>> {
    let mut dict: Vec<&str> = strs.to_vec();
    dict.sort_unstable();
    dict.dedup();
    if dict.len() > MAX_DICT {
        return None;
    }
    let mut out = Vec::new();
    put_dict(layout, &dict, &mut out);
    put_packed(
        strs.iter()
            .map(|s| dict.binary_search(s).expect("in the dictionary") as u64),
        &mut out,
    );
    Some(out)
}

/// Walked: `n:varint (len:varint utf8)*`. Direct: `n:varint`, each string's end in
/// the bytes, packed, then the bytes (string `i` is `[end(i - 1), end(i))`).
fn put_dict(layout: ChunkLayout, dict: &[&str], out: &mut Vec<u8>) {
    put_varint(dict.len() as u64, out);
    match layout {
        ChunkLayout::Walked => {
            for s in dict {
                put_varint(s.len() as u64, out);
                out.extend_from_slice(s.as_bytes());
            }
        }
        ChunkLayout::Direct => {
            put_packed(
                dict.iter().scan(0u64, |end, s| {
                    *end += s.len() as u64;
                    Some(*end)
                }),
                out,
            );
            for s in dict {
                out.extend_from_slice(s.as_bytes());
            }
        }
    }
}

/// The ends of `strs` laid back to back, each as its distance from a straight line
/// (`end(i) = (i + 1) · step + base + offset(i)`): `step` (varint, the mean length
/// rounded down), `base` (zigzag varint, the smallest distance) and the offsets,
/// packed. Strings of one length take 0 bits each (their lengths would too), and
/// any end is one read, where lengths would be summed.
fn put_ends(strs: &[&str], out: &mut Vec<u8>) {
    let total: u64 = strs.iter().map(|s| s.len() as u64).sum();
    let step = total / strs.len() as u64;
    let distances: Vec<i64> = strs
        .iter()
        .enumerate()
        .scan(0u64, |end, (i, s)| {
            *end += s.len() as u64;
            Some(*end as i64 - (i as i64 + 1) * step as i64)
        })
        .collect();
    let base = *distances.iter().min().expect("a value");
    put_varint(step, out);
    put_varint(zigzag(base), out);
    put_packed(distances.iter().map(|&d| (d - base) as u64), out);
}

/// Bits of the widest value of a field of `w` digits, `DIGIT_BITS[w]` (10^16 − 1
/// takes 54): where the direct layout puts a digit field's base.
const DIGIT_BITS: [u8; MAX_FIELD_DIGITS + 1] = [
    0, 4, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40, 44, 47, 50, 54,
];

/// `POW10[w]` = 10^w: a field of `w` digits holds values below it.
const POW10: [u64; MAX_FIELD_DIGITS + 1] = {
    let mut t = [1u64; MAX_FIELD_DIGITS + 1];
    let mut w = 1;
    while w <= MAX_FIELD_DIGITS {
        t[w] = t[w - 1] * 10;
        w += 1;
    }
    t
};

fn digit_bits(width: u8) -> u8 {
    DIGIT_BITS[width as usize]
}

/// Digit strings of one length, 20 + 1..=48 digits: a dictionary of their 20-digit
/// prefixes (device codes) and each value's index in it; the suffix length; then per
/// field of [`fields_of`] a frame of reference. Walked: per field `base:varint` and
/// packed offsets. Direct: the prefixes 20 bytes each (no lengths); each field's
/// offset bits (u8 each), then the bases packed at the bits of their widths' largest
/// value ([`digit_bits`]), then per field the offsets packed, each from a byte boundary.
fn digit_strings(layout: ChunkLayout, strs: &[&str]) -> Option<Vec<u8>> {
    let len = strs[0].len();
    if !(21..=20 + MAX_DIGIT_SUFFIX).contains(&len)
        || !strs
            .iter()
            .all(|s| s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let mut prefixes: Vec<&str> = strs.iter().map(|s| &s[..20]).collect();
    prefixes.sort_unstable();
    prefixes.dedup();
    if prefixes.len() > MAX_DICT {
        return None;
    }
    let mut out = Vec::new();
    match layout {
        ChunkLayout::Walked => put_dict(layout, &prefixes, &mut out),
        ChunkLayout::Direct => {
            put_varint(prefixes.len() as u64, &mut out);
            for p in &prefixes {
                out.extend_from_slice(p.as_bytes());
            }
        }
    }
    put_packed(
        strs.iter()
            .map(|s| prefixes.binary_search(&&s[..20]).expect("a prefix") as u64),
        &mut out,
    );
    out.push((len - 20) as u8);
    let mut at = 20;
    // Per field: its width, base and each value's offset from it.
    let mut fields: smallvec::SmallVec<[(u8, u64, Vec<u64>); 5]> = Default::default();
    for width in fields_of(len - 20) {
        let w = width as usize;
        let field = |s: &&str| s[at..at + w].parse::<u64>().expect("digits");
        let base = strs.iter().map(field).min().expect("present");
        fields.push((width, base, strs.iter().map(|s| field(s) - base).collect()));
        at += w;
    }
    match layout {
        ChunkLayout::Walked => {
            for (_, base, offsets) in &fields {
                put_varint(*base, &mut out);
                put_packed(offsets.iter().copied(), &mut out);
            }
        }
        ChunkLayout::Direct => {
            let bits: smallvec::SmallVec<[u8; 5]> = fields
                .iter()
                .map(|(_, _, o)| bits_needed(o.iter().copied().max().unwrap_or(0)))
                .collect();
            out.extend_from_slice(&bits);
            let mut p = Packer::new(0);
            for (width, base, _) in &fields {
                p.push_bits(*base, digit_bits(*width), &mut out);
            }
            p.finish(&mut out);
            for ((_, _, offsets), &b) in fields.iter().zip(&bits) {
                let mut p = Packer::new(b);
                for &o in offsets {
                    p.push(o, &mut out);
                }
                p.finish(&mut out);
            }
        }
    }
    Some(out)
}

/// Walked: each value's length, packed; a flag (0 plain, 1 zstd); the bytes (with
/// zstd: the plain length, varint, then the compressed length, varint, and the frame).
/// Direct: each value's end in the bytes as [`put_ends`] (value `i` is `[end(i − 1),
/// end(i))`, the plain length the last end); the flag; the bytes, or the compressed
/// length (varint) and the frame.
fn raw_strings(layout: ChunkLayout, strs: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    match layout {
        ChunkLayout::Walked => put_packed(strs.iter().map(|s| s.len() as u64), &mut out),
        ChunkLayout::Direct => put_ends(strs, &mut out),
    }
    let blob: Vec<u8> = strs.iter().flat_map(|s| s.bytes()).collect();
    let packed = (blob.len() <= MAX_ZSTD_INPUT)
        .then(|| zstd::bulk::compress(&blob, 3).ok())
        .flatten()
        .filter(|z| z.len() + 8 < blob.len() * 3 / 4);
    match packed {
        Some(z) => {
            out.push(1);
            if layout == ChunkLayout::Walked {
                put_varint(blob.len() as u64, &mut out);
            }
            put_varint(z.len() as u64, &mut out);
            out.extend_from_slice(&z);
        }
        None => {
            out.push(0);
            out.extend_from_slice(&blob);
        }
    }
    out
}

/// What a chunk reads besides bytes, varints and lengths: strings, packed arrays and
/// dictionaries, each checked against the bytes present.
trait ChunkReader<'a> {
    fn str(&mut self) -> Result<&'a str, String>;
    /// A packed array of `n` values: its width and bytes.
    fn packed(&mut self, n: usize) -> Result<BitReader<'a>, String>;
    /// A dictionary passed over in one walk, where each string is noted; a string is
    /// checked to be UTF-8 only when picked ([`Dict::get`]): reading one event's value
    /// does not validate or collect every string of the chunk's dictionary.
    /// `keep`: whether a string will be picked (else the walk notes nothing).
    fn dict(&mut self, keep: bool) -> Result<Dict<'a>, String>;
}

/// A chunk's dictionary as passed over: where its strings are.
struct Dict<'a> {
    bytes: &'a [u8],
    /// (start, end) of each string in `bytes`.
    at: smallvec::SmallVec<[(u32, u32); 16]>,
}

impl<'a> Dict<'a> {
    /// String `i`, checked to be UTF-8; `None` past the end.
    fn get(&self, i: usize) -> Result<Option<&'a str>, String> {
        let Some(&(a, z)) = self.at.get(i) else {
            return Ok(None);
        };
        std::str::from_utf8(&self.bytes[a as usize..z as usize])
            .map(Some)
            .map_err(|_| format!("invalid UTF-8 at byte {a}"))
    }
}

impl<'a> ChunkReader<'a> for Reader<'a> {
    fn str(&mut self) -> Result<&'a str, String> {
        let at = self.at;
        let n = self.varint()?;
        std::str::from_utf8(self.take(n)?).map_err(|_| format!("invalid UTF-8 at byte {at}"))
    }
    fn packed(&mut self, n: usize) -> Result<BitReader<'a>, String> {
        let at = self.at;
        let bits = self.byte()?;
        if bits > MAX_BITS {
            return Err(format!("{bits}-bit values at byte {at}"));
        }
        Ok(BitReader::new(self.take(packed_len(n, bits) as u64)?, bits))
    }
    fn dict(&mut self, keep: bool) -> Result<Dict<'a>, String> {
        let at = self.at;
        let n = self.varint()?;
        if n == 0 || n > MAX_DICT as u64 {
            return Err(format!("a dictionary of {n} strings at byte {at}"));
        }
        let mut dict = Dict {
            bytes: self.bytes,
            at: smallvec::SmallVec::new(),
        };
        for _ in 0..n {
            let len = self.varint()?;
            let start = self.at;
            self.take(len)?;
            if keep {
                let place = u32::try_from(start)
                    .and_then(|a| Ok((a, u32::try_from(self.at)?)))
                    .map_err(|_| format!("a dictionary past 4 GiB at byte {at}"))?;
                dict.at.push(place);
            }
        }
        Ok(dict)
    }
}

/// How many of the first `n` bits of `bitmap` (least significant bit first) are set.
/// A chunk's bitmap is at most 16 bytes: counted as one 128-bit word.
fn ones_before(bitmap: &[u8], n: usize) -> usize {
    let n = n.min(bitmap.len() * 8);
    if bitmap.len() > CHUNK_ROWS / 8 {
        // Not a bitmap a reader passes (row counts are checked against
        // [`CHUNK_ROWS`]); counted byte by byte rather than trusted.
        let whole: usize = bitmap[..n / 8]
            .iter()
            .map(|b| b.count_ones() as usize)
            .sum();
        let part = bitmap
            .get(n / 8)
            .map_or(0, |b| (b & ((1u16 << (n % 8)) - 1) as u8).count_ones());
        return whole + part as usize;
    }
    let mut word = [0u8; CHUNK_ROWS / 8];
    word[..bitmap.len()].copy_from_slice(bitmap);
    let mask = match n {
        128.. => u128::MAX,
        n => (1u128 << n) - 1,
    };
    (u128::from_le_bytes(word) & mask).count_ones() as usize
}

/// Two ASCII digits of each number 0..100 (`DIGIT_PAIRS[2 * n..2 * n + 2]`), for
/// writers of fixed-width decimals (digit fields here, timestamps in answers).
pub const DIGIT_PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// `v` in decimal, zero-padded to `width` digits (`v` has at most `width`), two digits
/// at a time.
#[inline]
fn push_digits(s: &mut Vec<u8>, v: u64, width: u8) {
    let at = s.len();
    s.resize(at + width as usize, b'0');
    put_digits(&mut s[at..], v);
}

/// `v` in decimal over `field`, a field of zeros as wide as the field's digits (`v`
/// has at most that many), two digits at a time: the direct layout's digit fields,
/// written in place.
#[inline]
fn put_digits(field: &mut [u8], mut v: u64) {
    let mut i = field.len();
    while i >= 2 && v > 0 {
        let d = (v % 100) as usize * 2;
        v /= 100;
        field[i - 2..i].copy_from_slice(&DIGIT_PAIRS[d..d + 2]);
        i -= 2;
    }
    if i >= 1 && v > 0 {
        field[i - 1] = b'0' + (v % 10) as u8;
    }
}

/// A string column's zstd frame at byte `at`, decompressed to its `plain` bytes (at
/// most `MAX_ZSTD_INPUT`, checked by the caller): anything else is an error.
pub(super) fn decompress_strings(frame: &[u8], plain: u64, at: usize) -> Result<Vec<u8>, String> {
    let b = zstd::bulk::decompress(frame, plain as usize)
        .map_err(|e| format!("strings do not decompress at byte {at}: {e}"))?;
    if b.len() as u64 != plain {
        return Err(format!("strings decompress short at byte {at}"));
    }
    Ok(b)
}

/// String `range` of a string column's bytes at byte `at` (borrowed from the chunk,
/// or owned when they were decompressed), checked to lie inside them and be UTF-8.
pub(super) fn string_in<'a>(
    blob: std::borrow::Cow<'a, [u8]>,
    range: std::ops::Range<usize>,
    at: usize,
) -> Result<Value<'a>, String> {
    let utf8 = || format!("invalid UTF-8 in strings at byte {at}");
    let outside = || format!("string at {range:?} outside the strings at byte {at}");
    Ok(match blob {
        std::borrow::Cow::Borrowed(b) => {
            let s = b.get(range.clone()).ok_or_else(outside)?;
            Value::Str(std::str::from_utf8(s).map_err(|_| utf8())?)
        }
        std::borrow::Cow::Owned(v) => {
            let s = v.get(range.clone()).ok_or_else(outside)?;
            Value::Owned(String::from_utf8(s.to_vec()).map_err(|_| utf8())?)
        }
    })
}

/// One value read from a column.
pub(super) enum Value<'a> {
    Str(&'a str),
    /// Rebuilt digits: this range of the walk's scratch string.
    Digits(std::ops::Range<usize>),
    /// Rebuilt digits known to be ASCII digits only (the direct layout's prefixes are
    /// checked to be digits when read), held in place: no scratch string.
    AsciiDigits(DigitBuf),
    /// Decompressed.
    Owned(String),
    Int(i64),
    Float(f64),
    /// A float column's decimal: its integer and scale, the value
    /// `mantissa / 10^scale` ([`Decimal`]).
    Decimal(Decimal),
    Bool(bool),
}

/// ASCII digits rebuilt in place: a device-code prefix and its fields
/// (`bytes[..len]`).
#[derive(Clone, Copy)]
pub(super) struct DigitBuf {
    pub(super) bytes: [u8; DIGIT_BUF],
    pub(super) len: u8,
}

/// Longest digit string a chunk holds: a 20-digit prefix and its suffix.
pub(super) const DIGIT_BUF: usize = 20 + MAX_DIGIT_SUFFIX;

impl DigitBuf {
    #[inline]
    fn digits(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// A float stored as a decimal (a float column whose values are all thousandths, say):
/// the value `mantissa / 10^scale`, scale at most 6. [`Decimal::to_f64`] is the value
/// every reader gives; writers of text may write the decimal's digits instead, which
/// are the shortest text that reads back as that `f64` when the mantissa has at most
/// 15 digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decimal {
    pub mantissa: i64,
    pub scale: u8,
}

impl Decimal {
    /// The value as every reader gives it: the mantissa divided by `10^scale` (one
    /// rounding, so the `f64` nearest the decimal when the mantissa is below 2^53).
    #[inline]
    pub fn to_f64(self) -> f64 {
        self.mantissa as f64 / 10f64.powi(self.scale as i32)
    }
}

/// Where one row's values are: a chunk's walk, reused for row after row.
#[derive(Default)]
pub struct RowScratch {
    /// Digit strings rebuilt: a UTF-8 prefix (checked) and ASCII digits, so UTF-8.
    digits: Vec<u8>,
}

/// The attributes of row `row` of `chunk`, in the row encoding, appended to `out`.
/// Every column is walked (to find where the next begins), but only row `row`'s value
/// of each is decoded.
pub fn decode_row(
    layout: ChunkLayout,
    chunk: &[u8],
    row: usize,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let mut scratch = RowScratch::default();
    let mut pairs: Vec<(&str, AttrRef<'_>)> = Vec::new();
    // The pairs borrow the scratch: collected first, then encoded.
    let mut found = Vec::new();
    walk_row(layout, chunk, row, &mut scratch, &mut found)?;
    pairs.extend(found.iter().map(|(k, v)| (*k, value_ref(v, &scratch))));
    encode_pairs_into(pairs.iter().copied(), pairs.len(), out);
    Ok(())
}

/// The attributes of row `row` of `chunk` handed to `f` key by key, in key order (the
/// order the row encoding and [`visit_attrs`] give), without building the row
/// encoding; `scratch` holds rebuilt digit strings (reuse it across rows). A damaged
/// row is an error; some of its values may have been handed over before it (a direct
/// chunk's: [`visit_row_out`]). (Readers use [`visit_row_out`]; the tests compare this
/// form with [`visit_attrs`].)
#[cfg(test)]
pub fn visit_row(
    layout: ChunkLayout,
    chunk: &[u8],
    row: usize,
    scratch: &mut RowScratch,
    mut f: impl FnMut(&str, AttrRef<'_>),
) -> Result<(), String> {
    visit_row_out(layout, chunk, row, scratch, |k, v| f(k, v.to_ref()))
}

/// One attribute value as a writer of text is handed it ([`visit_row_out`]): a digit
/// string (a GA/T 1400 id) of a format 4 chunk as its bytes, ASCII digits only
/// (checked when read: nothing to check as UTF-8 or to escape), any other value as
/// [`AttrRef`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AttrOut<'a> {
    Value(AttrRef<'a>),
    Digits(AsciiDigits<'a>),
    /// A float stored as a decimal (format 2 and later chunks): [`Decimal::to_f64`] is
    /// its value.
    Decimal(Decimal),
}

/// Bytes that are ASCII digits (`0`–`9`) only: made only by this crate's readers,
/// from a prefix checked to be digits and fields written from numbers, so a writer of
/// JSON may copy them between quotes as they are.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AsciiDigits<'a>(&'a [u8]);

impl<'a> AsciiDigits<'a> {
    #[inline]
    pub(crate) fn new(digits: &'a [u8]) -> AsciiDigits<'a> {
        debug_assert!(digits.iter().all(u8::is_ascii_digit), "{digits:?}");
        AsciiDigits(digits)
    }

    #[inline]
    pub fn as_bytes(self) -> &'a [u8] {
        self.0
    }

    /// The digits as a string (ASCII, so UTF-8; an empty string could only come of a
    /// broken invariant, never a panic).
    #[inline]
    pub fn as_str(self) -> &'a str {
        std::str::from_utf8(self.0).unwrap_or_default()
    }
}

impl<'a> AttrOut<'a> {
    /// The value as [`AttrRef`] (digits as a string).
    pub fn to_ref(self) -> AttrRef<'a> {
        match self {
            AttrOut::Value(v) => v,
            AttrOut::Digits(d) => AttrRef::Str(d.as_str()),
            AttrOut::Decimal(d) => AttrRef::Float(d.to_f64()),
        }
    }
}

/// [`visit_row`], with digit strings known to be ASCII digits handed over as their
/// bytes ([`AttrOut::Digits`]) and decimals as such ([`AttrOut::Decimal`]): for writers
/// of text, which copy digits as they are. A direct chunk's (format 4) values are
/// handed over as they are read, so `f` may have seen some of a row whose damage is
/// found further on (the caller discards what it wrote for the row); a walked
/// chunk's only once the whole row is read.
pub fn visit_row_out<'c>(
    layout: ChunkLayout,
    chunk: &'c [u8],
    row: usize,
    scratch: &mut RowScratch,
    mut f: impl FnMut(&str, AttrOut<'_>),
) -> Result<(), String> {
    scratch.digits.clear();
    match layout {
        ChunkLayout::Direct => {
            let scratch = &*scratch;
            direct::walk_row(
                chunk,
                row,
                &mut Emit(|(k, v): (&'c str, Value<'c>)| f(k, value_out(&v, scratch))),
            )
        }
        ChunkLayout::Walked => {
            let mut found: smallvec::SmallVec<[(&'c str, Value<'c>); 8]> =
                smallvec::SmallVec::new();
            walked_row(chunk, row, scratch, &mut found)?;
            for (k, v) in &found {
                f(k, value_out(v, scratch));
            }
            Ok(())
        }
    }
}

/// Hands each pair a walk finds to a function as it is found: no list is kept.
struct Emit<F>(F);

impl<T, F: FnMut(T)> Extend<T> for Emit<F> {
    #[inline]
    fn extend<I: IntoIterator<Item = T>>(&mut self, items: I) {
        items.into_iter().for_each(&mut self.0)
    }
}

fn value_out<'s>(v: &'s Value<'_>, scratch: &'s RowScratch) -> AttrOut<'s> {
    match v {
        Value::AsciiDigits(d) => AttrOut::Digits(AsciiDigits::new(d.digits())),
        Value::Decimal(d) => AttrOut::Decimal(*d),
        v => AttrOut::Value(value_ref(v, scratch)),
    }
}

fn value_ref<'s>(v: &'s Value<'_>, scratch: &'s RowScratch) -> AttrRef<'s> {
    match v {
        Value::Str(s) => AttrRef::Str(s),
        Value::Digits(r) => AttrRef::Str(
            std::str::from_utf8(&scratch.digits[r.clone()])
                .expect("a UTF-8 prefix and ASCII digits"),
        ),
        Value::AsciiDigits(d) => AttrRef::Str(AsciiDigits::new(d.digits()).as_str()),
        Value::Owned(s) => AttrRef::Str(s),
        Value::Int(i) => AttrRef::Int(*i),
        Value::Float(f) => AttrRef::Float(*f),
        Value::Decimal(d) => AttrRef::Float(d.to_f64()),
        Value::Bool(b) => AttrRef::Bool(*b),
    }
}

/// The first of `rows` (rows of a direct `chunk`, versions 4 and 5) whose value of
/// `key` is the string `want`, reading only `key`'s columns.
pub(crate) use direct::find_str as find_str_in_chunk;

/// Checks a whole chunk: every row's value of every column, and what reading rows
/// does not touch (every dictionary string is UTF-8, every digit prefix digits). What
/// `sightline check` runs on each chunk.
pub fn check_chunk(layout: ChunkLayout, chunk: &[u8]) -> Result<(), String> {
    let rows = chunk_rows(*chunk.first().ok_or("an empty chunk")?)?;
    if layout == ChunkLayout::Direct {
        direct::check_columns(chunk)?;
    }
    let mut scratch = RowScratch::default();
    for row in 0..rows {
        scratch.digits.clear();
        walk_row(layout, chunk, row, &mut scratch, &mut Vec::new())?;
    }
    Ok(())
}

/// The rows of a chunk from its first byte (rows − 1): at most [`CHUNK_ROWS`], which
/// bounds every presence bitmap and length sum a reader meets.
pub(crate) fn chunk_rows(first: u8) -> Result<usize, String> {
    let rows = first as usize + 1;
    if rows > CHUNK_ROWS {
        return Err(format!("a chunk of {rows} rows (at most {CHUNK_ROWS})"));
    }
    Ok(rows)
}

/// Row `row`'s (key, value) pairs of `chunk`, in column (= key) order, into `found`.
fn walk_row<'c>(
    layout: ChunkLayout,
    chunk: &'c [u8],
    row: usize,
    scratch: &mut RowScratch,
    found: &mut impl Extend<(&'c str, Value<'c>)>,
) -> Result<(), String> {
    match layout {
        ChunkLayout::Walked => walked_row(chunk, row, scratch, found),
        ChunkLayout::Direct => direct::walk_row(chunk, row, found),
    }
}

/// [`walk_row`] of a walked chunk: every column checked as it is passed.
fn walked_row<'c>(
    chunk: &'c [u8],
    row: usize,
    scratch: &mut RowScratch,
    found: &mut impl Extend<(&'c str, Value<'c>)>,
) -> Result<(), String> {
    let mut r = Reader {
        bytes: chunk,
        at: 0,
    };
    let rows = chunk_rows(r.byte()?)?;
    if row >= rows {
        return Err(format!("row {row} of a chunk of {rows}"));
    }
    let columns = r.varint()?;
    if columns > chunk.len() as u64 {
        return Err(format!("impossible column count {columns}"));
    }
    let mut last: Option<(&str, u8)> = None;
    let mut last_found: Option<&str> = None;
    for _ in 0..columns {
        let at = r.at;
        let code = r.byte()?;
        let key: &str = match code {
            0 => r.str()?,
            c => well_known_key(c).ok_or_else(|| format!("unknown key code {c} at byte {at}"))?,
        };
        let class = r.byte()?;
        // Columns come in key order, one per key and value kind.
        if last.is_some_and(|l| l >= (key, class)) {
            return Err(format!("columns out of order at byte {at}"));
        }
        last = Some((key, class));
        let (n, index) = match r.byte()? {
            0 => (rows, Some(row)),
            1 => {
                let bitmap = r.take(rows.div_ceil(8) as u64)?;
                let n = ones_before(bitmap, rows);
                if n == 0 {
                    return Err(format!("an empty column at byte {at}"));
                }
                let bit = bitmap[row / 8] >> (row % 8) & 1 == 1;
                (n, bit.then(|| ones_before(bitmap, row)))
            }
            p => return Err(format!("presence {p} at byte {at}")),
        };
        if let Some(v) = column_value(&mut r, class, n, index, at, &mut scratch.digits)? {
            // Two kinds of one key in one row cannot be written: refuse rather than
            // emit a map with a key twice (columns of one key are adjacent).
            if last_found == Some(key) {
                return Err("one key with two values in one row".into());
            }
            last_found = Some(key);
            found.extend(std::iter::once((key, v)));
        }
    }
    if r.at != chunk.len() {
        return Err(format!(
            "{} trailing bytes after the columns",
            chunk.len() - r.at
        ));
    }
    Ok(())
}

/// Reads past a column of `n` values of `class`, decoding value `index` if given.
fn column_value<'a>(
    r: &mut Reader<'a>,
    class: u8,
    n: usize,
    index: Option<usize>,
    at: usize,
    digits: &mut Vec<u8>,
) -> Result<Option<Value<'a>>, String> {
    let fixed8 = |r: &mut Reader<'a>| -> Result<Option<[u8; 8]>, String> {
        let all = r.take(8 * n as u64)?;
        Ok(index.map(|i| all[i * 8..i * 8 + 8].try_into().expect("8 bytes")))
    };
    let framed = |r: &mut Reader<'a>| -> Result<Option<i64>, String> {
        let base = unzigzag(r.varint()?);
        let p = r.packed(n)?;
        index
            .map(|i| {
                base.checked_add_unsigned(p.get(i))
                    .ok_or_else(|| format!("an integer out of range at byte {at}"))
            })
            .transpose()
    };
    Ok(match class {
        INT => framed(r)?.map(Value::Int),
        INT_RAW => fixed8(r)?.map(|b| Value::Int(i64::from_le_bytes(b))),
        FLOAT_DEC => {
            let scale = r.byte()?;
            if scale > 6 {
                return Err(format!("decimal scale {scale} at byte {at}"));
            }
            framed(r)?.map(|mantissa| Value::Decimal(Decimal { mantissa, scale }))
        }
        FLOAT_RAW => fixed8(r)?.map(|b| Value::Float(f64::from_le_bytes(b))),
        BOOL => {
            let p = r.packed(n)?;
            match index.map(|i| p.get(i)) {
                None => None,
                Some(v @ (0 | 1)) => Some(Value::Bool(v == 1)),
                Some(v) => return Err(format!("a boolean of {v} at byte {at}")),
            }
        }
        STR_DICT => {
            // The codes follow the dictionary.
            let dict = r.dict(index.is_some())?;
            let codes = r.packed(n)?;
            match index {
                None => None,
                Some(i) => Some(Value::Str(dict.get(codes.get(i) as usize)?.ok_or_else(
                    || format!("a dictionary code past its end at byte {at}"),
                )?)),
            }
        }
        STR_DIGITS => {
            let dict = r.dict(index.is_some())?;
            let codes = r.packed(n)?;
            let from = digits.len();
            let mut s = match index {
                None => None,
                Some(i) => {
                    let prefix = dict.get(codes.get(i) as usize)?;
                    let prefix =
                        prefix.ok_or_else(|| format!("a prefix code past its end at byte {at}"))?;
                    digits.reserve(prefix.len() + MAX_DIGIT_SUFFIX);
                    digits.extend_from_slice(prefix.as_bytes());
                    Some(&mut *digits)
                }
            };
            let len = r.byte()? as usize;
            if !(1..=MAX_DIGIT_SUFFIX).contains(&len) {
                return Err(format!("a digit suffix of {len} at byte {at}"));
            }
            for width in fields_of(len) {
                let base = r.varint()?;
                let p = r.packed(n)?;
                if let (Some(s), Some(i)) = (s.as_mut(), index) {
                    let v = base
                        .checked_add(p.get(i))
                        .filter(|v| v.checked_ilog10().unwrap_or(0) < width as u32)
                        .ok_or_else(|| format!("a digit field too wide at byte {at}"))?;
                    push_digits(s, v, width);
                }
            }
            s.map(|s| Value::Digits(from..s.len()))
        }
        STR_RAW => {
            let lens = r.packed(n)?;
            let total: u64 = (0..n).map(|i| lens.get(i)).sum();
            let blob: std::borrow::Cow<'a, [u8]> = match r.byte()? {
                0 => r.take(total)?.into(),
                1 => {
                    let plain = r.varint()?;
                    let zlen = r.varint()?;
                    let frame = r.take(zlen)?;
                    if plain != total || plain > MAX_ZSTD_INPUT as u64 {
                        return Err(format!("compressed strings of {plain} bytes at byte {at}"));
                    }
                    match index {
                        None => Vec::new().into(),
                        Some(_) => decompress_strings(frame, plain, at)?.into(),
                    }
                }
                f => return Err(format!("string flag {f} at byte {at}")),
            };
            match index {
                None => None,
                Some(i) => {
                    let start = (0..i).map(|j| lens.get(j)).sum::<u64>() as usize;
                    let end = start + lens.get(i) as usize;
                    Some(string_in(blob, start..end, at)?)
                }
            }
        }
        c => return Err(format!("unknown column class {c} at byte {at}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr_codec::encode_attrs;
    use crate::event::{AttrValue, Attrs};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn ones_before_counts_bit_by_bit(bitmap in proptest::collection::vec(any::<u8>(), 1..40), cut in 0usize..330) {
            let n = cut.min(bitmap.len() * 8);
            let naive = (0..n).filter(|&i| bitmap[i / 8] >> (i % 8) & 1 == 1).count();
            prop_assert_eq!(ones_before(&bitmap, n), naive);
        }

        #[test]
        fn digit_tables_are_the_widths_powers(w in 0usize..=16) {
            prop_assert_eq!(POW10[w], 10u64.pow(w as u32));
            prop_assert_eq!(DIGIT_BITS[w], bits_needed(10u64.pow(w as u32) - 1));
        }

        #[test]
        fn push_digits_pads_like_format(v in any::<u64>(), width in 1u8..=16) {
            let v = v % 10u64.pow(width as u32);
            let mut s = Vec::new();
            push_digits(&mut s, v, width);
            prop_assert_eq!(String::from_utf8(s).unwrap(), format!("{v:0w$}", w = width as usize));
        }

        #[test]
        fn put_digits_writes_like_format(v in any::<u64>(), width in 1usize..=16, before in 0usize..20) {
            // Digits before the field (an earlier field's) are left as they are.
            let v = v % 10u64.pow(width as u32);
            let mut text = vec![b'9'; before];
            text.resize(before + width, b'0');
            put_digits(&mut text[before..], v);
            prop_assert_eq!(
                String::from_utf8(text).unwrap(),
                format!("{}{v:0w$}", "9".repeat(before), w = width)
            );
        }
    }

    /// A format 4 digit column whose stored prefix is not digits (a quote, a byte that
    /// is not UTF-8, a letter: damage behind a matching checksum) is refused by every
    /// read and by the check, and never handed to a writer as digits.
    #[test]
    fn a_digit_prefix_that_is_not_digits_is_refused_never_copied() {
        let rows: Vec<Box<[u8]>> = (0..16u64)
            .map(|i| {
                let mut a = Attrs::new();
                a.insert(
                    "source_id".into(),
                    AttrValue::Str(format!(
                        "32050801011210000001022021090100{:09}02{:05}",
                        i, 1
                    )),
                );
                encode_attrs(&a)
            })
            .collect();
        let refs: Vec<&[u8]> = rows.iter().map(|b| &b[..]).collect();
        let mut chunk = Vec::new();
        encode_chunk_as(ChunkLayout::Direct, &refs, &mut chunk).unwrap();
        // Undamaged, the column is read as digits (so the damage below is where it
        // matters).
        let mut digits = 0;
        visit_row_out(
            ChunkLayout::Direct,
            &chunk,
            3,
            &mut RowScratch::default(),
            |_, v| digits += matches!(v, AttrOut::Digits(_)) as usize,
        )
        .unwrap();
        assert_eq!(digits, 1);
        let at = chunk
            .windows(20)
            .position(|w| w == b"32050801011210000001")
            .expect("the prefix stored as it is");
        for bad in [b'"', 0xff, b'a', b'\\'] {
            let mut damaged = chunk.clone();
            damaged[at + 7] = bad;
            assert!(check_chunk(ChunkLayout::Direct, &damaged).is_err(), "{bad}");
            for row in 0..16 {
                let mut handed = 0;
                let read = visit_row_out(
                    ChunkLayout::Direct,
                    &damaged,
                    row,
                    &mut RowScratch::default(),
                    |_, _| handed += 1,
                );
                assert!(read.is_err(), "{bad} row {row}");
                assert_eq!(handed, 0, "{bad} row {row}");
                assert!(decode_row(ChunkLayout::Direct, &damaged, row, &mut Vec::new()).is_err());
            }
        }
    }

    const LAYOUTS: [ChunkLayout; 2] = [ChunkLayout::Walked, ChunkLayout::Direct];

    /// Encodes `rows` as a chunk of `layout`, reads every row back (decoded and
    /// visited) and checks the chunk whole; the chunk's length.
    fn round_trip(layout: ChunkLayout, rows: &[Attrs]) -> usize {
        let encoded: Vec<Box<[u8]>> = rows.iter().map(encode_attrs).collect();
        let refs: Vec<&[u8]> = encoded.iter().map(|b| &b[..]).collect();
        let mut chunk = Vec::new();
        encode_chunk_as(layout, &refs, &mut chunk).unwrap();
        check_chunk(layout, &chunk).unwrap();
        // One scratch for every row, as a page of events uses it.
        let mut scratch = RowScratch::default();
        for (i, want) in encoded.iter().enumerate() {
            let mut got = Vec::new();
            decode_row(layout, &chunk, i, &mut got).unwrap();
            assert_eq!(&got[..], &want[..], "{layout:?} row {i}");
            // Visited straight from the columns: the pairs the encoding holds, in its
            // order.
            let mut visited = Vec::new();
            visit_row(layout, &chunk, i, &mut scratch, |k, v| {
                visited.push((k.to_owned(), format!("{v:?}")))
            })
            .unwrap();
            let mut walked = Vec::new();
            visit_attrs(want, |k, v| walked.push((k.to_owned(), format!("{v:?}")))).unwrap();
            assert_eq!(visited, walked, "{layout:?} row {i}");
            // Visited for a writer of JSON: the same pairs, digit strings handed over as
            // their bytes (digits only, and only from the direct layout).
            let mut out = Vec::new();
            visit_row_out(layout, &chunk, i, &mut scratch, |k, v| {
                if let AttrOut::Digits(d) = v {
                    assert_eq!(layout, ChunkLayout::Direct);
                    assert!(d.as_bytes().iter().all(u8::is_ascii_digit), "{d:?}");
                }
                out.push((k.to_owned(), format!("{:?}", v.to_ref())))
            })
            .unwrap();
            assert_eq!(out, walked, "{layout:?} row {i} (visit_row_out)");
        }
        chunk.len()
    }

    fn value() -> impl Strategy<Value = AttrValue> {
        prop_oneof![
            ".{0,20}".prop_map(AttrValue::Str),
            prop::sample::select(vec!["blue", "yellow", "green"])
                .prop_map(|s| AttrValue::Str(s.into())),
            "[0-9]{20,60}".prop_map(AttrValue::Str),
            (0u64..1000).prop_map(|x| AttrValue::Str(format!(
                "3205080101121000000102202109010800{x:02}00001020{x:04}"
            ))),
            any::<i64>().prop_map(AttrValue::Int),
            (-50i64..50).prop_map(AttrValue::Int),
            any::<f64>().prop_map(AttrValue::Float),
            (0u32..1000).prop_map(|x| AttrValue::Float(x as f64 / 1000.0)),
            any::<bool>().prop_map(AttrValue::Bool),
        ]
    }

    fn key() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["source_id", "plate_color", "confidence", "x", "lane"])
            .prop_map(String::from)
    }

    proptest! {
        #[test]
        fn every_row_reads_back_byte_identical(
            rows in proptest::collection::vec(
                proptest::collection::btree_map(key(), value(), 0..5), 1..=CHUNK_ROWS)
        ) {
            for layout in LAYOUTS {
                round_trip(layout, &rows);
            }
        }

        #[test]
        fn damaged_chunks_error_or_decode_without_panicking(
            rows in proptest::collection::vec(
                proptest::collection::btree_map(key(), value(), 0..4), 1..20),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            row in any::<prop::sample::Index>(),
        ) {
            let encoded: Vec<Box<[u8]>> = rows.iter().map(encode_attrs).collect();
            let refs: Vec<&[u8]> = encoded.iter().map(|b| &b[..]).collect();
            for layout in LAYOUTS {
                let mut chunk = Vec::new();
                encode_chunk_as(layout, &refs, &mut chunk).unwrap();
                let i = row.index(rows.len());
                let cut = &chunk[..cut.index(chunk.len())];
                let _ = decode_row(layout, cut, i, &mut Vec::new());
                let _ = check_chunk(layout, cut);
                let mut flipped = chunk.clone();
                let at = flip.index(flipped.len());
                flipped[at] ^= 0x5a;
                let decoded = decode_row(layout, &flipped, i, &mut Vec::new());
                // Visiting agrees with decoding on damage: both refuse, or both read.
                let visited =
                    visit_row(layout, &flipped, i, &mut RowScratch::default(), |_, _| {});
                prop_assert_eq!(decoded.is_ok(), visited.is_ok());
                // So does visiting for a writer of JSON, and it hands over only digits
                // as digits.
                let mut pairs = Vec::new();
                let out = visit_row_out(layout, &flipped, i, &mut RowScratch::default(), |k, v| {
                    if let AttrOut::Digits(d) = v {
                        assert!(d.as_bytes().iter().all(u8::is_ascii_digit), "{d:?}");
                    }
                    pairs.push((k.to_owned(), format!("{:?}", v.to_ref())));
                });
                prop_assert_eq!(out.is_ok(), visited.is_ok());
                if out.is_ok() {
                    let mut want = Vec::new();
                    visit_row(layout, &flipped, i, &mut RowScratch::default(), |k, v| {
                        want.push((k.to_owned(), format!("{v:?}")))
                    })
                    .unwrap();
                    prop_assert_eq!(pairs, want);
                }
                // A chunk that checks whole reads every row.
                if check_chunk(layout, &flipped).is_ok() {
                    for j in 0..rows.len() {
                        prop_assert!(decode_row(layout, &flipped, j, &mut Vec::new()).is_ok());
                    }
                }
            }
        }
    }

    #[test]
    fn camera_attributes_take_a_few_bytes_an_event() {
        // 128 plate reads of one gate: a GA/T 1400 id, a colour, a confidence.
        let rows: Vec<Attrs> = (0..128u64)
            .map(|i| {
                let mut a = Attrs::new();
                let time = 80000 + i * 7;
                a.insert(
                    "source_id".into(),
                    AttrValue::Str(format!(
                        "32050801011210000001022021090100{time:04}{:05}02{:05}",
                        i, 1
                    )),
                );
                a.insert(
                    "plate_color".into(),
                    AttrValue::Str(if i % 9 == 0 { "yellow" } else { "blue" }.into()),
                );
                a.insert(
                    "confidence".into(),
                    AttrValue::Float((850 + i) as f64 / 1000.0),
                );
                a
            })
            .collect();
        let row_bytes: usize = rows.iter().map(|a| encode_attrs(a).len()).sum();
        let walked = round_trip(ChunkLayout::Walked, &rows);
        let direct = round_trip(ChunkLayout::Direct, &rows);
        assert!(
            direct * 8 < row_bytes,
            "{direct} bytes by column, {row_bytes} by row"
        );
        // The directory and the fixed places cost less than 0.3 bytes an event.
        assert!(
            direct * 10 < walked * 10 + 3 * rows.len(),
            "direct {direct} bytes, walked {walked}"
        );
    }

    #[test]
    fn long_strings_are_compressed_and_read_back() {
        let rows: Vec<Attrs> = (0..128)
            .map(|i| {
                let mut a = Attrs::new();
                a.insert(
                    "image_url".into(),
                    AttrValue::Str(format!(
                        "http://10.0.0.1/pictures/2021/09/01/gate-1/{i}.jpg"
                    )),
                );
                a
            })
            .collect();
        let row_bytes: usize = rows.iter().map(|a| encode_attrs(a).len()).sum();
        for layout in LAYOUTS {
            let chunk = round_trip(layout, &rows);
            assert!(chunk * 3 < row_bytes, "{layout:?}: {chunk} vs {row_bytes}");
        }
    }
}
