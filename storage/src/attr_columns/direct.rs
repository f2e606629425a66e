//! Reading a chunk of the direct layout (segment formats 4 and 5): a directory of where each
//! column ends, then the columns, each of whose values sits at a place computed from a
//! few header bytes. Reading one event's attributes costs a fixed amount a column,
//! whatever the event's place in the chunk or the column's place in it: no column,
//! dictionary string, digit-field base or raw string before it is walked.
//!
//! Every length is checked against the bytes present and every column's computed size
//! against its place in the directory (so a read never strays into the next column);
//! the values of other rows are checked by [`check_columns`] and the segment's
//! checksum, not by a read of one row.

use super::{
    column_value, field_widths, ones_before, put_digits, ChunkReader, DigitBuf, Value, BOOL,
    DIGIT_BITS, DIGIT_BUF, FLOAT_DEC, FLOAT_RAW, INT, INT_RAW, MAX_DICT, MAX_DIGIT_SUFFIX,
    MAX_ZSTD_INPUT, POW10, STR_DICT, STR_DIGITS, STR_RAW,
};
use crate::attr_codec::{well_known_key, Reader};
use crate::bitpack::{bits_at, packed_len, BitReader};

/// Digits of a device code, the prefix of a digit string.
const PREFIX_DIGITS: usize = 20;

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
        let (start, end) = dir.column(k)?;
        let mut r = Reader {
            bytes: &chunk[..end],
            at: start,
        };
        let (key, class) = key_and_class(&mut r)?;
        // Columns come in key order, one per key and value kind.
        if last.is_some_and(|l| l >= (key, class)) {
            return Err(format!("columns out of order at byte {start}"));
        }
        last = Some((key, class));
        let (n, index) = presence(&mut r, dir.rows, row, start)?;
        let v = column_value_direct(&mut r, class, n, index, start)?;
        if r.at != end {
            return Err(format!(
                "{} bytes after the values of the column at byte {start}",
                end - r.at
            ));
        }
        if let Some(v) = v {
            // Two kinds of one key in one row cannot be written: refuse rather than
            // emit a map with a key twice (columns of one key are adjacent).
            if last_found == Some(key) {
                return Err("one key with two values in one row".into());
            }
            last_found = Some(key);
            found.extend(std::iter::once((key, v)));
        }
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
            let n = ones_before(bitmap, rows);
            if n == 0 {
                return Err(format!("an empty column at byte {at}"));
            }
            let bit = bitmap[row / 8] >> (row % 8) & 1 == 1;
            Ok((n, bit.then(|| ones_before(bitmap, row))))
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
}

/// Reads past a column of `n` values of `class`, decoding value `index` if given.
#[inline]
fn column_value_direct<'a>(
    r: &mut Reader<'a>,
    class: u8,
    n: usize,
    index: Option<usize>,
    at: usize,
) -> Result<Option<Value<'a>>, String> {
    Ok(match class {
        // Every value of these is at a computed place in both layouts (and none is a
        // digit string: no scratch string is needed).
        INT | INT_RAW | FLOAT_DEC | FLOAT_RAW | BOOL => {
            return column_value(r, class, n, index, at, &mut Vec::new())
        }
        STR_DICT => {
            let dict = Dict::read(r)?;
            let codes = r.packed(n)?;
            match index {
                None => None,
                Some(i) => Some(Value::Str(
                    dict.get(codes.get(i) as usize, at)?
                        .ok_or_else(|| format!("a dictionary code past its end at byte {at}"))?,
                )),
            }
        }
        STR_DIGITS => {
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
            let widths = &widths[..fields];
            let bits = r.take(fields as u64)?;
            let (mut base_bits, mut offset_bytes) = (0usize, 0usize);
            for (&b, &w) in bits.iter().zip(widths) {
                if b > DIGIT_BITS[w as usize] {
                    return Err(format!("{b}-bit offsets of a {w}-digit field at byte {at}"));
                }
                base_bits += DIGIT_BITS[w as usize] as usize;
                offset_bytes += packed_len(n, b);
            }
            let bases = r.take(base_bits.div_ceil(8) as u64)?;
            let offsets = r.take(offset_bytes as u64)?;
            let Some(i) = index else {
                return Ok(None);
            };
            let code = codes.get(i) as usize;
            if code >= p as usize {
                return Err(format!("a prefix code past its end at byte {at}"));
            }
            let prefix = &prefixes[code * PREFIX_DIGITS..(code + 1) * PREFIX_DIGITS];
            if !prefix.iter().all(u8::is_ascii_digit) {
                return Err(format!("a digit prefix that is not digits at byte {at}"));
            }
            // The whole string in place (zeros, the prefix, each field's digits over
            // its zeros), handed over as it is.
            let mut text = [b'0'; DIGIT_BUF];
            text[..PREFIX_DIGITS].copy_from_slice(prefix);
            let mut end = PREFIX_DIGITS;
            let (mut base_at, mut field_at) = (0usize, 0usize);
            for (&b, &w) in bits.iter().zip(widths) {
                let w_bits = DIGIT_BITS[w as usize];
                // Both below 2^54: no overflow.
                let v = bits_at(bases, base_at, w_bits)
                    + bits_at(&offsets[field_at..], i * b as usize, b);
                if v >= POW10[w as usize] {
                    return Err(format!("a digit field too wide at byte {at}"));
                }
                put_digits(&mut text[end..end + w as usize], v);
                end += w as usize;
                base_at += w_bits as usize;
                field_at += packed_len(n, b);
            }
            Some(Value::AsciiDigits(DigitBuf {
                bytes: text,
                len: end as u8,
            }))
        }
        STR_RAW => {
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
                    match index {
                        None => Vec::new().into(),
                        Some(_) => super::decompress_strings(frame, total, at)?.into(),
                    }
                }
                f => return Err(format!("string flag {f} at byte {at}")),
            };
            match index {
                None => None,
                Some(i) => {
                    let start = match i {
                        0 => 0,
                        i => ends.get(i - 1)? as usize,
                    };
                    let end = ends.get(i)? as usize;
                    if start > end || end > blob.len() {
                        return Err(format!(
                            "string {i} at {start}..{end} of strings at byte {at}"
                        ));
                    }
                    Some(super::string_in(blob, start..end, at)?)
                }
            }
        }
        c => return Err(format!("unknown column class {c} at byte {at}")),
    })
}

/// What reading rows does not check of a chunk: every dictionary string is UTF-8 and
/// every digit prefix digits (a read checks only the one it picks).
pub(super) fn check_columns(chunk: &[u8]) -> Result<(), String> {
    let dir = Directory::read(chunk)?;
    for k in 0..dir.columns {
        let (start, end) = dir.column(k)?;
        let mut r = Reader {
            bytes: &chunk[..end],
            at: start,
        };
        let (_, class) = key_and_class(&mut r)?;
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
