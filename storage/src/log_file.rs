//! Record framing shared by the WAL and the dictionary log:
//! `[len: u32 LE][crc32(payload): u32 LE][payload: len bytes]`.
//!
//! Reading tells a torn tail (a crash mid-append: the last record is incomplete, fails
//! its checksum with nothing after it, or is followed only by zero fill) from corruption
//! (a bad record with intact data after it), which is an error naming file and offset.

use std::path::{Path, PathBuf};

use crate::error::{Result, StorageError};

/// Largest record accepted on read; larger lengths are corruption.
pub const MAX_RECORD_BYTES: u32 = 256 << 20;
pub const FRAME_HEADER: usize = 8;

/// A dropped incomplete tail, reported by recovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub path: PathBuf,
    /// Where the kept prefix ends (the file is truncated here).
    pub offset: u64,
    pub dropped_bytes: u64,
}

pub struct ReadOutcome {
    /// End of the last complete record.
    pub end: u64,
    pub torn: Option<TornTail>,
}

/// Before a torn tail is cut off, the file is read again: a tail that reads differently
/// the second time is a failing disk (or memory), not a crash mid-append, and cutting it
/// could destroy acknowledged records; that is an error instead.
pub fn confirm_torn(
    io: &dyn crate::io::FileIo,
    path: &Path,
    first_read: &[u8],
    torn: &TornTail,
) -> Result<()> {
    let again = io.read(path).map_err(|e| StorageError::io(path, e))?;
    if again != first_read {
        return Err(StorageError::corrupt(
            path,
            torn.offset,
            "the file reads differently each time (failing disk or memory); refusing to cut off what looks like a torn tail",
        ));
    }
    Ok(())
}

/// Appends one framed record to `out`.
pub fn frame(payload: &[u8], out: &mut Vec<u8>) {
    frame_with(out, |p| p.extend_from_slice(payload));
}

/// Appends one framed record whose payload `write` appends to `out`, without an
/// intermediate buffer: the header is filled in once the payload is there.
pub fn frame_with(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER]);
    write(out);
    let payload = &out[start + FRAME_HEADER..];
    assert!(
        !payload.is_empty() && payload.len() <= MAX_RECORD_BYTES as usize,
        "record of {} bytes",
        payload.len()
    );
    let len = (payload.len() as u32).to_le_bytes();
    let crc = crc32fast::hash(payload).to_le_bytes();
    out[start..start + 4].copy_from_slice(&len);
    out[start + 4..start + 8].copy_from_slice(&crc);
}

/// Calls `f(offset, payload)` for each complete record of `bytes`. A torn tail is
/// accepted only when `tail_may_be_torn` (the newest file); anywhere else, and any bad
/// record followed by good data, is [`StorageError::Corrupt`].
pub fn read_records(
    bytes: &[u8],
    path: &Path,
    tail_may_be_torn: bool,
    mut f: impl FnMut(u64, &[u8]) -> Result<()>,
) -> Result<ReadOutcome> {
    let mut off = 0usize;
    while off < bytes.len() {
        let rest = &bytes[off..];
        // Ok(len) for a good record, Err((torn?, reason)) for a bad one.
        let verdict: std::result::Result<usize, (bool, String)> = if rest.len() < FRAME_HEADER {
            Err((true, "incomplete record header".into()))
        } else {
            let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes"));
            let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
            let end = FRAME_HEADER + len as usize;
            if len == 0 || len > MAX_RECORD_BYTES {
                Err((
                    rest.iter().all(|&b| b == 0),
                    format!("impossible record length {len}"),
                ))
            } else if rest.len() < end {
                Err((
                    true,
                    format!("record of {len} bytes runs past the end of the file"),
                ))
            } else if crc32fast::hash(&rest[FRAME_HEADER..end]) != crc {
                // Torn only if nothing but zero fill follows this record.
                let torn = rest[end..].iter().all(|&b| b == 0);
                Err((torn, "record checksum mismatch".into()))
            } else {
                Ok(end)
            }
        };
        match verdict {
            Ok(end) => {
                f(off as u64, &rest[FRAME_HEADER..end])?;
                off += end;
            }
            Err((true, _)) if tail_may_be_torn => {
                return Ok(ReadOutcome {
                    end: off as u64,
                    torn: Some(TornTail {
                        path: path.to_path_buf(),
                        offset: off as u64,
                        dropped_bytes: rest.len() as u64,
                    }),
                });
            }
            Err((torn, reason)) => {
                let why = if torn {
                    format!("{reason} (an incomplete record is only allowed at the end of the newest file)")
                } else {
                    format!("{reason}, with other data after it")
                };
                return Err(StorageError::corrupt(path, off as u64, why));
            }
        }
    }
    Ok(ReadOutcome {
        end: off as u64,
        torn: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(records: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in records {
            frame(r, &mut out);
        }
        out
    }

    fn payloads(bytes: &[u8], torn_ok: bool) -> Result<(Vec<Vec<u8>>, Option<TornTail>)> {
        let mut got = Vec::new();
        let o = read_records(bytes, Path::new("t.log"), torn_ok, |_, p| {
            got.push(p.to_vec());
            Ok(())
        })?;
        Ok((got, o.torn))
    }

    #[test]
    fn every_truncation_keeps_the_complete_prefix() {
        let recs: [&[u8]; 3] = [b"first", b"second record", b"third"];
        let full = file(&recs);
        let ends = [13usize, 13 + 21, 13 + 21 + 13];
        for cut in 0..=full.len() {
            let (got, torn) = payloads(&full[..cut], true).unwrap();
            let complete = ends.iter().filter(|&&e| e <= cut).count();
            assert_eq!(got.len(), complete, "cut at {cut}");
            assert_eq!(
                torn.is_some(),
                !ends.contains(&cut) && cut != 0,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn zero_fill_after_records_is_a_torn_tail() {
        let mut bytes = file(&[b"one"]);
        bytes.extend_from_slice(&[0u8; 100]);
        let (got, torn) = payloads(&bytes, true).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(torn.unwrap().dropped_bytes, 100);
    }

    #[test]
    fn damage_before_intact_records_is_corruption_naming_the_offset() {
        let mut bytes = file(&[b"one", b"two", b"three"]);
        bytes[FRAME_HEADER + 11 + 1] ^= 0x40; // inside "two"
        match payloads(&bytes, true) {
            Err(StorageError::Corrupt { path, offset, .. }) => {
                assert_eq!(path, Path::new("t.log"));
                assert_eq!(offset, 11);
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn a_torn_tail_in_an_older_file_is_corruption() {
        let bytes = file(&[b"one", b"two"]);
        assert!(matches!(
            payloads(&bytes[..bytes.len() - 1], false),
            Err(StorageError::Corrupt { .. })
        ));
    }
}
