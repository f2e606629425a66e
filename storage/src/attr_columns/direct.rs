//! Reading a chunk of the direct layout (segment formats 4 and 5): a directory of where each
//! column ends, then the columns, each of whose values sits at a place computed from a
//! few header bytes. Reading one event's attributes costs a fixed amount a column,
//! whatever the event's place in the chunk or the column's place in it: no column,
//! dictionary string, digit-field base or raw string before it is walked.
//!
//! Every length is checked against the bytes present and every column's computed size
//! against its place in the directory (so a read never strays into the next column);
//! a column without a value for the row is passed over unread. The values of other
//! rows are checked by [`super::check_chunk`] (`sightline check`: every row read, so
//! every column whole, and [`check_columns`]) and the segment's checksum, not by a
//! read of one row.

use super::{
    column_value, field_widths, ones_before, put_digits, ChunkReader, DigitBuf, Value, BOOL,
    DIGIT_BITS, DIGIT_BUF, FLOAT_DEC, FLOAT_RAW, INT, INT_RAW, MAX_DICT, MAX_DIGIT_SUFFIX,
    MAX_ZSTD_INPUT, POW10, STR_DICT, STR_DIGITS, STR_RAW,
};
use crate::attr_codec::{well_known_key, Reader};
use crate::bitpack::{bits_at, packed_len, BitReader};

/// Digits of a device code, the prefix of a digit string.
const PREFIX_DIGITS: usize = 20;

/// Whether `b` is ASCII digits only, eight bytes a step: a byte is a digit when its high
/// nibble is 3 and adding 6 leaves it so (no carry crosses bytes once every high nibble
/// is 3).
#[inline]
fn all_digits(b: &[u8]) -> bool {
    const NIBBLES: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    const THREES: u64 = 0x3030_3030_3030_3030;
    let word =
        |x: u64| x & NIBBLES == THREES && x.wrapping_add(0x0606_0606_0606_0606) & NIBBLES == THREES;
    let mut words = b.chunks_exact(8);
    let whole = words
        .by_ref()
        .all(|w| word(u64::from_le_bytes(w.try_into().expect("8 bytes"))));
    whole && words.remainder().iter().all(u8::is_ascii_digit)
}

/// The chunk's rows, and where each column is: `(start, end)` in the chunk.
struct Directory<'c> {
    rows: usize,
    columns: usize,
    /// Ends of columns `0..columns - 1`, from `body`.
    ends: BitReader<'c>,
    body: usize,
    len: usize,
}

impl<'c> Directory<'c> {
    fn read(chunk: &'c [u8]) -> Result<Directory<'c>, String> {
        let mut r = Reader {
            bytes: chunk,
            at: 0,
        };
        let rows = super::chunk_rows(r.byte()?)?;
        let columns = r.varint()?;
        if columns > chunk.len() as u64 {
            return Err(format!("impossible column count {columns}"));
        }
        let columns = columns as usize;
        let ends = r.packed(columns.saturating_sub(1))?;
        if columns == 0 && r.at != chunk.len() {
            return Err(format!(
                "{} bytes after a chunk of no columns",
                chunk.len() - r.at
            ));
        }
        Ok(Directory {
            rows,
            columns,
            ends,
            body: r.at,
            len: chunk.len(),
        })
    }

    /// Where column `k` lies in the chunk.
    #[inline]
    fn column(&self, k: usize) -> Result<(usize, usize), String> {
        let start = match k {
            0 => 0,
            k => self.ends.get(k - 1) as usize,
        };
        let end = match k + 1 == self.columns {
            true => self.len - self.body,
            false => self.ends.get(k) as usize,
        };
        if start > end || self.body + end > self.len {
            return Err(format!("column {k} at bytes {start}..{end} of the columns"));
        }
        Ok((self.body + start, self.body + end))
    }

    /// Column `k` of `chunk` opened: its place, key and class, and a reader at its
    /// presence byte that cannot read past its end.
    #[inline]
    fn open_column(&self, chunk: &'c [u8], k: usize) -> Result<Column<'c>, String> {
        let (start, end) = self.column(k)?;
        let mut r = Reader {
            bytes: &chunk[..end],
            at: start,
        };
        let (key, class) = key_and_class(&mut r)?;
        Ok(Column {
            start,
            end,
            key,
            class,
            r,
        })
    }
}

/// A column opened by [`Directory::open_column`].
struct Column<'c> {
    start: usize,
    end: usize,
    key: &'c str,
    class: u8,
    /// At the column's presence byte.
    r: Reader<'c>,
}

/// Row `row`'s (key, value) pairs of `chunk`, in column (= key) order, into `found`.
pub(super) fn walk_row<'c>(
    chunk: &'c [u8],
    row: usize,
    found: &mut impl Extend<(&'c str, Value<'c>)>,
) -> Result<(), String> {
    let dir = Directory::read(chunk)?;
    if row >= dir.rows {
        return Err(format!("row {row} of a chunk of {}", dir.rows));
    }
    let mut last: Option<(&str, u8)> = None;
    let mut last_found: Option<&str> = None;
    for k in 0..dir.columns {
        let Column {
            start,
            end,
            key,
            class,
            mut r,
        } = dir.open_column(chunk, k)?;
        // Columns come in key order, one per key and value kind.
        if last.is_some_and(|l| l >= (key, class)) {
            return Err(format!("columns out of order at byte {start}"));
        }
        last = Some((key, class));
        let (n, index) = presence(&mut r, dir.rows, row, start)?;
        let Some(i) = index else {
            // Not this row's: its values are not read (every column holds a value of
            // some row, so a check of every row, `check_chunk`, reads every column
            // whole); its class is still one there is.
            if class > BOOL {
                return Err(format!("unknown column class {class} at byte {start}"));
            }
            continue;
        };
        let v = column_value_direct(&mut r, class, n, i, start)?;
        if r.at != end {
            return Err(format!(
                "{} bytes after the values of the column at byte {start}",
                end - r.at
            ));
        }
        // Two kinds of one key in one row cannot be written: refuse rather than emit a
        // map with a key twice (columns of one key are adjacent).
        if last_found == Some(key) {
            return Err("one key with two values in one row".into());
        }
        last_found = Some(key);
        found.extend(std::iter::once((key, v)));
    }
    Ok(())
}

#[inline]
fn key_and_class<'c>(r: &mut Reader<'c>) -> Result<(&'c str, u8), String> {
    let at = r.at;
    let key = match r.byte()? {
        0 => r.str()?,
        c => well_known_key(c).ok_or_else(|| format!("unknown key code {c} at byte {at}"))?,
    };
    Ok((key, r.byte()?))
}

/// A column's count of values and row `row`'s index among them, if it has one.
#[inline]
fn presence(
    r: &mut Reader<'_>,
    rows: usize,
    row: usize,
    at: usize,
) -> Result<(usize, Option<usize>), String> {
    match r.byte()? {
        0 => Ok((rows, Some(row))),
        1 => {
            let bitmap = r.take(rows.div_ceil(8) as u64)?;
            let (n, bit, before) = match <[u8; 16]>::try_from(bitmap) {
                // A chunk of 121 to 128 rows (most): one word.
                Ok(word) if row < 128 => {
                    let word = u128::from_le_bytes(word);
                    let below = |k: usize| match k {
                        128.. => word,
                        k => word & ((1u128 << k) - 1),
                    };
                    (
                        below(rows).count_ones() as usize,
                        word >> row & 1 == 1,
                        below(row).count_ones() as usize,
                    )
                }
                _ => (
                    ones_before(bitmap, rows),
                    bitmap[row / 8] >> (row % 8) & 1 == 1,
                    ones_before(bitmap, row),
                ),
            };
            if n == 0 {
                return Err(format!("an empty column at byte {at}"));
            }
            Ok((n, bit.then_some(before)))
        }
        p => Err(format!("presence {p} at byte {at}")),
    }
}

/// A dictionary of the direct layout: `n:varint`, the strings' ends packed, the bytes.
struct Dict<'c> {
    n: usize,
    ends: BitReader<'c>,
    bytes: &'c [u8],
}

impl<'c> Dict<'c> {
    #[inline]
    fn read(r: &mut Reader<'c>) -> Result<Dict<'c>, String> {
        let at = r.at;
        let n = r.varint()?;
        if n == 0 || n > MAX_DICT as u64 {
            return Err(format!("a dictionary of {n} strings at byte {at}"));
        }
        let n = n as usize;
        let ends = r.packed(n)?;
        let bytes = r.take(ends.get(n - 1))?;
        Ok(Dict { n, ends, bytes })
    }

    /// String `i`, checked to be UTF-8; `None` past the end.
    #[inline]
    fn get(&self, i: usize, at: usize) -> Result<Option<&'c str>, String> {
        if i >= self.n {
            return Ok(None);
        }
        let start = match i {
            0 => 0,
            i => self.ends.get(i - 1) as usize,
        };
        let end = self.ends.get(i) as usize;
        let s = self
            .bytes
            .get(start..end)
            .ok_or_else(|| format!("dictionary string {i} at {start}..{end} at byte {at}"))?;
        std::str::from_utf8(s)
            .map(Some)
            .map_err(|_| format!("invalid UTF-8 in a dictionary at byte {at}"))
    }
}

/// Raw strings' ends: distances from a straight line (`put_ends`).
struct Ends<'c> {
    step: u64,
    base: i64,
    offsets: BitReader<'c>,
    at: usize,
}

impl<'c> Ends<'c> {
    fn read(r: &mut Reader<'c>, n: usize, at: usize) -> Result<Ends<'c>, String> {
        Ok(Ends {
            step: r.varint()?,
            base: super::unzigzag(r.varint()?),
            offsets: r.packed(n)?,
            at,
        })
    }

    /// The end of string `i`.
    fn get(&self, i: usize) -> Result<u64, String> {
        let end =
            (i as i128 + 1) * self.step as i128 + self.base as i128 + self.offsets.get(i) as i128;
        u64::try_from(end).map_err(|_| format!("string {i} ends at {end} at byte {}", self.at))
    }

    /// Where string `i` lies in strings of `len` bytes.
    fn range(&self, i: usize, len: usize) -> Result<std::ops::Range<usize>, String> {
        let start = match i {
            0 => 0,
            i => self.get(i - 1)? as usize,
        };
        let end = self.get(i)? as usize;
        if start > end || end > len {
            return Err(format!(
                "string {i} at {start}..{end} of strings at byte {}",
                self.at
            ));
        }
        Ok(start..end)
    }
}

/// A raw string column's ends and its strings (decompressed when `decode`, else
/// empty if compressed), read past.
fn raw_strings<'a>(
    r: &mut Reader<'a>,
    n: usize,
    at: usize,
    decode: bool,
) -> Result<(Ends<'a>, std::borrow::Cow<'a, [u8]>), String> {
    let ends = Ends::read(r, n, at)?;
    let total = ends.get(n - 1)?;
    let blob: std::borrow::Cow<'a, [u8]> = match r.byte()? {
        0 => r.take(total)?.into(),
        1 => {
            let zlen = r.varint()?;
            let frame = r.take(zlen)?;
            if total > MAX_ZSTD_INPUT as u64 {
                return Err(format!("compressed strings of {total} bytes at byte {at}"));
            }
            match decode {
                false => Vec::new().into(),
                true => super::decompress_strings(frame, total, at)?.into(),
            }
        }
        f => return Err(format!("string flag {f} at byte {at}")),
    };
    Ok((ends, blob))
}

/// The first of `rows` (rows of `chunk`) whose value of `key` is the string `want`,
/// reading only `key`'s string columns, each once: a source-id match compares the id
/// with every event of its group (a chunk), and a compressed column is decompressed
/// once for all of them, not once a row. Damage it reads is an error, as a read of a
/// row's attributes would give.
pub(crate) fn find_str(
    chunk: &[u8],
    rows: std::ops::Range<usize>,
    key: &str,
    want: &str,
) -> Result<Option<usize>, String> {
    let dir = Directory::read(chunk)?;
    if rows.end > dir.rows {
        return Err(format!("rows {rows:?} of a chunk of {}", dir.rows));
    }
    let want = want.as_bytes();
    // A row has one value of a key: the first row found in any of its columns.
    let mut first: Option<usize> = None;
    for k in 0..dir.columns {
        let Column {
            start,
            end,
            key: column_key,
            class,
            r,
        } = dir.open_column(chunk, k)?;
        if column_key != key || !matches!(class, STR_RAW | STR_DICT | STR_DIGITS) {
            continue;
        }
        let values_at = r.at;
        // Row `row`'s count of values and index, and a reader at the values.
        let at_row = |row: usize| -> Result<(usize, Option<usize>, Reader<'_>), String> {
            let mut r = Reader {
                bytes: &chunk[..end],
                at: values_at,
            };
            let (n, index) = presence(&mut r, dir.rows, row, start)?;
            Ok((n, index, r))
        };
        // The column's header once; then each row's value compared in place (as
        // numbers for digit strings, as a code for a dictionary).
        let (n, _, mut r) = at_row(rows.start.min(dir.rows - 1))?;
        let is: Box<dyn Fn(usize) -> Result<bool, String> + '_> = match class {
            STR_RAW => {
                let (ends, blob) = raw_strings(&mut r, n, start, true)?;
                Box::new(move |i| Ok(blob[ends.range(i, blob.len())?] == *want))
            }
            STR_DICT => {
                let dict = Dict::read(&mut r)?;
                let codes = r.packed(n)?;
                let mut code = None;
                for c in 0..dict.n {
                    if dict.get(c, start)?.map(str::as_bytes) == Some(want) {
                        code = Some(c as u64);
                        break;
                    }
                }
                let Some(code) = code else { continue };
                Box::new(move |i| {
                    let c = codes.get(i);
                    if c >= dict.n as u64 {
                        return Err(format!("a dictionary code past its end at byte {start}"));
                    }
                    Ok(c == code)
                })
            }
            _ => {
                let column = DigitsColumn::read(&mut r, n, start)?;
                let Some(wanted) = column.encode(want) else {
                    continue;
                };
                Box::new(move |i| column.is(i, &wanted))
            }
        };
        for row in rows.start..first.unwrap_or(rows.end) {
            if let (_, Some(i), _) = at_row(row)? {
                if is(i)? {
                    first = Some(row);
                    break;
                }
            }
        }
    }
    Ok(first)
}

/// A digit string column (class 2) of `n` values, its header read.
struct DigitsColumn<'a> {
    prefixes: &'a [u8],
    codes: BitReader<'a>,
    /// The fields, `fields` of them, each with what reading a value of it takes.
    field: [Field; 5],
    fields: usize,
    offsets: &'a [u8],
    at: usize,
}

/// One digit field of a [`DigitsColumn`], worked out once from the column's header: a
/// value's fields are then read without passing over the fields and bases before them.
#[derive(Clone, Copy, Default)]
struct Field {
    /// Its width in digits.
    width: u8,
    /// The width of its offsets in bits.
    bits: u8,
    /// Its frame of reference: each value is `base` + its offset.
    base: u64,
    /// Where its offsets start in the column's offsets.
    at: usize,
}

impl<'a> DigitsColumn<'a> {
    fn read(r: &mut Reader<'a>, n: usize, at: usize) -> Result<DigitsColumn<'a>, String> {
        let p = r.varint()?;
        if p == 0 || p > MAX_DICT as u64 {
            return Err(format!("{p} digit prefixes at byte {at}"));
        }
        let prefixes = r.take(p * PREFIX_DIGITS as u64)?;
        let codes = r.packed(n)?;
        let len = r.byte()? as usize;
        if !(1..=MAX_DIGIT_SUFFIX).contains(&len) {
            return Err(format!("a digit suffix of {len} at byte {at}"));
        }
        let (widths, fields) = field_widths(len);
        let bits = r.take(fields as u64)?;
        let mut field = [Field::default(); 5];
        let (mut base_bits, mut offset_bytes) = (0usize, 0usize);
        for ((f, &b), &w) in field.iter_mut().zip(bits).zip(&widths[..fields]) {
            if b > DIGIT_BITS[w as usize] {
                return Err(format!("{b}-bit offsets of a {w}-digit field at byte {at}"));
            }
            *f = Field {
                width: w,
                bits: b,
                base: 0,
                at: offset_bytes,
            };
            base_bits += DIGIT_BITS[w as usize] as usize;
            offset_bytes += packed_len(n, b);
        }
        let bases = r.take(base_bits.div_ceil(8) as u64)?;
        let mut base_at = 0usize;
        for f in &mut field[..fields] {
            let w_bits = DIGIT_BITS[f.width as usize];
            f.base = bits_at(bases, base_at, w_bits);
            base_at += w_bits as usize;
        }
        let offsets = r.take(offset_bytes as u64)?;
        Ok(DigitsColumn {
            prefixes,
            codes,
            field,
            fields,
            offsets,
            at,
        })
    }

    /// Value `i`'s prefix code, checked against the prefixes.
    #[inline]
    fn code(&self, i: usize) -> Result<usize, String> {
        let code = self.codes.get(i) as usize;
        if code >= self.prefixes.len() / PREFIX_DIGITS {
            return Err(format!("a prefix code past its end at byte {}", self.at));
        }
        Ok(code)
    }

    /// Value `i`: the whole string in place (zeros, the prefix, each field's digits
    /// over its zeros), handed over as it is.
    #[inline]
    fn get(&self, i: usize) -> Result<DigitBuf, String> {
        let code = self.code(i)?;
        let prefix = &self.prefixes[code * PREFIX_DIGITS..(code + 1) * PREFIX_DIGITS];
        if !all_digits(prefix) {
            return Err(format!(
                "a digit prefix that is not digits at byte {}",
                self.at
            ));
        }
        let mut text = DigitBuf {
            bytes: [b'0'; DIGIT_BUF],
            len: 0,
        };
        text.bytes[..PREFIX_DIGITS].copy_from_slice(prefix);
        let mut end = PREFIX_DIGITS;
        for f in &self.field[..self.fields] {
            // Both below 2^54: no overflow.
            let v = f.base + bits_at(&self.offsets[f.at..], i * f.bits as usize, f.bits);
            if v >= POW10[f.width as usize] {
                return Err(format!("a digit field too wide at byte {}", self.at));
            }
            put_digits(&mut text.bytes[end..end + f.width as usize], v);
            end += f.width as usize;
        }
        text.len = end as u8;
        Ok(text)
    }

    /// `want` as this column stores it: its prefix's code and, per field, where its
    /// offsets are, their width and the offset `want` has there; `None` when no value
    /// of the column can equal it (another length, a prefix the column has not, a
    /// character not a digit, a field below its base or past its offsets' width).
    fn encode(&self, want: &[u8]) -> Option<Wanted> {
        let fields = &self.field[..self.fields];
        let suffix: usize = fields.iter().map(|f| f.width as usize).sum();
        if want.len() != PREFIX_DIGITS + suffix || !want.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let code = self
            .prefixes
            .chunks_exact(PREFIX_DIGITS)
            .position(|p| p == &want[..PREFIX_DIGITS])?;
        let mut wanted = Wanted {
            code,
            fields: [(0, 0, 0); 5],
            count: self.fields,
        };
        let mut at = PREFIX_DIGITS;
        for (k, f) in fields.iter().enumerate() {
            let v = want[at..at + f.width as usize]
                .iter()
                .fold(0u64, |v, d| v * 10 + u64::from(d - b'0'));
            let offset = v.checked_sub(f.base)?;
            if f.bits < 64 && offset >> f.bits != 0 {
                return None;
            }
            wanted.fields[k] = (f.at, f.bits, offset);
            at += f.width as usize;
        }
        Some(wanted)
    }

    /// Whether value `i` is the one [`DigitsColumn::encode`] gave: its code and each
    /// field's offset compared as numbers (the first that differs ends it), no string
    /// rebuilt.
    #[inline]
    fn is(&self, i: usize, want: &Wanted) -> Result<bool, String> {
        if self.code(i)? != want.code {
            return Ok(false);
        }
        Ok(want.fields[..want.count]
            .iter()
            .all(|&(at, b, offset)| bits_at(&self.offsets[at..], i * b as usize, b) == offset))
    }
}

/// A digit string as a [`DigitsColumn`] would store it ([`DigitsColumn::encode`]).
struct Wanted {
    code: usize,
    /// Per field: where its offsets start, their width, the offset wanted.
    fields: [(usize, u8, u64); 5],
    count: usize,
}

/// Reads a column of `n` values of `class` to its end, decoding value `i`.
#[inline]
fn column_value_direct<'a>(
    r: &mut Reader<'a>,
    class: u8,
    n: usize,
    i: usize,
    at: usize,
) -> Result<Value<'a>, String> {
    Ok(match class {
        // Every value of these is at a computed place in both layouts (and none is a
        // digit string: no scratch string is needed).
        INT | INT_RAW | FLOAT_DEC | FLOAT_RAW | BOOL => {
            column_value(r, class, n, Some(i), at, &mut Vec::new())?
                .ok_or_else(|| format!("no value {i} in the column at byte {at}"))?
        }
        STR_DICT => {
            let dict = Dict::read(r)?;
            let codes = r.packed(n)?;
            Value::Str(
                dict.get(codes.get(i) as usize, at)?
                    .ok_or_else(|| format!("a dictionary code past its end at byte {at}"))?,
            )
        }
        STR_DIGITS => Value::AsciiDigits(DigitsColumn::read(r, n, at)?.get(i)?),
        STR_RAW => {
            let (ends, blob) = raw_strings(r, n, at, true)?;
            let range = ends.range(i, blob.len())?;
            super::string_in(blob, range, at)?
        }
        c => return Err(format!("unknown column class {c} at byte {at}")),
    })
}

/// What reading rows does not check of a chunk: every dictionary string is UTF-8 and
/// every digit prefix digits (a read checks only the one it picks).
pub(super) fn check_columns(chunk: &[u8]) -> Result<(), String> {
    let dir = Directory::read(chunk)?;
    for k in 0..dir.columns {
        let Column {
            start,
            class,
            mut r,
            ..
        } = dir.open_column(chunk, k)?;
        presence(&mut r, dir.rows, 0, start)?;
        match class {
            STR_DICT => {
                let dict = Dict::read(&mut r)?;
                for i in 0..dict.n {
                    dict.get(i, start)?;
                }
            }
            STR_DIGITS => {
                let p = r.varint()?;
                let prefixes = r.take(p.saturating_mul(PREFIX_DIGITS as u64))?;
                if !prefixes.iter().all(u8::is_ascii_digit) {
                    return Err(format!("a digit prefix that is not digits at byte {start}"));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr_codec::encode_attrs;
    use crate::event::{AttrValue, Attrs, SOURCE_ID};

    /// A chunk of rows whose `source_id` is `ids[i]` (none for `None`), each with a
    /// `lane` too.
    fn chunk(ids: &[Option<String>]) -> Vec<u8> {
        let rows: Vec<Box<[u8]>> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let mut a = Attrs::new();
                a.insert("lane".into(), AttrValue::Int(i as i64 % 3));
                if let Some(id) = id {
                    a.insert(SOURCE_ID.into(), AttrValue::Str(id.clone()));
                }
                encode_attrs(&a)
            })
            .collect();
        let refs: Vec<&[u8]> = rows.iter().map(|r| &r[..]).collect();
        let mut out = Vec::new();
        super::super::encode_chunk(&refs, &mut out).unwrap();
        out
    }

    /// The class of the chunk's `source_id` column, and whether its strings are
    /// compressed (raw strings only).
    fn source_class(chunk: &[u8]) -> (u8, bool) {
        let dir = Directory::read(chunk).unwrap();
        for k in 0..dir.columns {
            let (start, end) = dir.column(k).unwrap();
            let mut r = Reader {
                bytes: &chunk[..end],
                at: start,
            };
            let (key, class) = key_and_class(&mut r).unwrap();
            if key != SOURCE_ID {
                continue;
            }
            let (n, _) = presence(&mut r, dir.rows, 0, start).unwrap();
            let compressed = class == STR_RAW && {
                Ends::read(&mut r, n, start).unwrap();
                r.byte().unwrap() == 1
            };
            return (class, compressed);
        }
        panic!("no source_id column");
    }

    /// What reading each row whole and comparing its value gives.
    fn by_rows(chunk: &[u8], rows: std::ops::Range<usize>, want: &str) -> Option<usize> {
        rows.into_iter().find(|&row| {
            let mut found = Vec::new();
            walk_row(chunk, row, &mut found).unwrap();
            found.iter().any(|(k, v)| {
                *k == SOURCE_ID
                    && match v {
                        Value::Str(s) => *s == want,
                        Value::Owned(s) => s == want,
                        Value::AsciiDigits(d) => d.digits() == want.as_bytes(),
                        _ => false,
                    }
            })
        })
    }

    mod digits {
        use super::super::all_digits;
        use proptest::prelude::*;

        /// Every byte value at every place of a 20-digit prefix (the two words and the
        /// four bytes after them) and of a 9-byte string (a word and one byte): the
        /// string is digits only exactly when that byte is one.
        #[test]
        fn every_byte_at_every_place_of_digits() {
            for len in [20usize, 9, 8, 1] {
                for at in 0..len {
                    for b in 0..=255u8 {
                        let mut s = b"01234567890123456789"[..len].to_vec();
                        s[at] = b;
                        assert_eq!(all_digits(&s), b.is_ascii_digit(), "{len} {at} {b:#x}");
                    }
                }
            }
        }

        proptest! {
            /// The word-at-a-time digit test finds exactly what a byte-wise one does,
            /// the bytes either side of the digits included.
            #[test]
            fn all_digits_is_the_bytewise_test(b in proptest::collection::vec(
                prop_oneof![b'0'..=b'9', b'0'..=b'9', Just(b'/'), Just(b':'), Just(b'?'),
                    Just(0x39 + 0x80), any::<u8>()],
                0..40,
            )) {
                prop_assert_eq!(all_digits(&b), b.iter().all(u8::is_ascii_digit));
            }
        }
    }

    /// A pseudo-random sequence (splitmix64), for ids without a pattern zstd finds.
    fn random(seed: u64) -> impl FnMut() -> u64 {
        let mut x = seed;
        move || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
    }

    /// Ids that are not stored but lie near stored ones: each stored id with a digit
    /// changed at either end and in the middle, cut short, made longer, a letter in it.
    fn near(ids: &[Option<String>]) -> Vec<String> {
        let mut out = vec![String::new(), "x".into()];
        for id in ids.iter().flatten().take(20) {
            let b = id.as_bytes();
            for at in [0, b.len() / 2, b.len().saturating_sub(6), b.len() - 1] {
                for d in [b'0', b'5', b'9', b'x'] {
                    let mut c = b.to_vec();
                    c[at] = d;
                    out.push(String::from_utf8(c).unwrap());
                }
            }
            out.push(id[..id.len() - 1].to_string());
            out.push(format!("{id}0"));
        }
        out
    }

    /// `find_str` answers exactly what reading each row whole would, for a column of
    /// each class (asserted), rows with no id between, over the whole chunk and part
    /// of it, for every stored id and ids near them.
    #[test]
    fn find_str_answers_as_reading_every_row_would() {
        let mut rnd = random(7);
        // GA/T 1400 ids of two devices, a serial rising; every fifth row none.
        let digits: Vec<Option<String>> = (0..128u64)
            .map(|i| {
                (i % 5 != 4).then(|| {
                    format!(
                        "3205080101132000010{}0220210901{:06}{:05}02{:05}",
                        i % 2,
                        80_000 + i * 37,
                        rnd() % 100_000,
                        i * 11
                    )
                })
            })
            .collect();
        // Five random strings over and over: a dictionary.
        let five: Vec<String> = (0..5).map(|_| format!("{:016x}", rnd())).collect();
        let dictionary: Vec<Option<String>> = (0..128)
            .map(|i| (i % 7 != 3).then(|| five[(rnd() % 5) as usize].clone()))
            .collect();
        // Distinct random printable strings: raw, not worth compressing.
        let raw: Vec<Option<String>> = (0..128)
            .map(|i| {
                (i % 6 != 2).then(|| {
                    (0..12)
                        .map(|_| char::from(b'!' + (rnd() % 94) as u8))
                        .collect()
                })
            })
            .collect();
        // Long, alike strings: raw, compressed.
        let compressed: Vec<Option<String>> = (0..128)
            .map(|i| {
                Some(format!(
                    "an upload from the east gate, camera {i:05}, lane 2"
                ))
            })
            .collect();
        for (name, ids, class, zstd) in [
            ("digits", &digits, STR_DIGITS, false),
            ("dictionary", &dictionary, STR_DICT, false),
            ("raw", &raw, STR_RAW, false),
            ("compressed", &compressed, STR_RAW, true),
        ] {
            let c = chunk(ids);
            assert_eq!(source_class(&c), (class, zstd), "{name}");
            let wants: Vec<String> = ids.iter().flatten().cloned().chain(near(ids)).collect();
            for rows in [0..128, 5..90, 127..128, 40..40] {
                for want in &wants {
                    assert_eq!(
                        find_str(&c, rows.clone(), SOURCE_ID, want).unwrap(),
                        by_rows(&c, rows.clone(), want),
                        "{name} {rows:?} {want}"
                    );
                }
            }
            assert!(find_str(&c, 0..129, SOURCE_ID, "x").is_err(), "{name}");
            assert_eq!(find_str(&c, 0..128, "lane", "0").unwrap(), None, "{name}");
        }
    }
}
