//! Reading the chain back: each file's entries checked against their hashes and links,
//! against the head kept in the catalog and against the witness lines; a torn last
//! line found (and, at start, cut).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde_json::Value;
use sightline_storage::io::FileIo;

use super::head::{Head, HeadStore};
use super::witness::{self, WitnessKey};
use super::{io_err, AuditError, FILE, ROTATED_DIR};
use crate::auth::sha256_hex;

/// The hash of an entry that has no `hash` field yet: SHA-256 of its JSON (keys
/// sorted, as `serde_json` maps are).
pub(super) fn hash_of(entry: &Value) -> String {
    sha256_hex(entry.to_string().as_bytes())
}

/// Rotated files of `dir`, oldest first, with the first sequence number each holds.
pub(super) fn rotated(dir: &Path) -> Result<Vec<(u64, PathBuf)>, AuditError> {
    let rdir = dir.join(ROTATED_DIR);
    let entries = match std::fs::read_dir(&rdir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(&rdir)(e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(io_err(&rdir))?.path();
        let first = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok());
        match first {
            Some(first) => files.push((first, path)),
            None => {
                return Err(AuditError::Broken {
                    path,
                    line: 0,
                    reason: "a file in the audit directory that the log did not write".into(),
                })
            }
        }
    }
    files.sort();
    Ok(files)
}

/// What one file held.
pub(super) struct Scan {
    /// Where the chain stands after the file's complete entries (`None`: the file
    /// had none and the scan started from an unknown link).
    pub at: Option<Head>,
    /// Bytes of a last line without its newline (a write cut short), not checked.
    pub torn_bytes: u64,
}

/// Sequence numbers whose hashes are known from elsewhere (the catalog's head, the
/// witness lines): each entry met with one of them must have that hash.
pub(super) type Expected = BTreeMap<u64, (String, String)>;

/// Checks one file's entries; `from` is where the chain stood before it (`None`:
/// unknown, so the first entry is taken as it is and only the rest is linked). A last
/// line without its newline is counted in `torn_bytes` and left unchecked. Entries
/// named in `expected` must carry the hash it gives (its second element says whence).
pub(super) fn scan_file(
    path: &Path,
    from: Option<Head>,
    expected: &Expected,
) -> Result<Scan, AuditError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Scan {
                at: from,
                torn_bytes: 0,
            })
        }
        Err(e) => return Err(io_err(path)(e)),
    };
    let mut reader = BufReader::new(file);
    let mut at = from;
    let mut torn_bytes = 0u64;
    let mut buf = Vec::new();
    for i in 0.. {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        if buf.last() != Some(&b'\n') {
            torn_bytes = n as u64;
            break;
        }
        let broken = |reason: String| AuditError::Broken {
            path: path.to_path_buf(),
            line: i + 1,
            reason,
        };
        let mut entry: Value =
            serde_json::from_slice(&buf[..n - 1]).map_err(|e| broken(format!("not JSON: {e}")))?;
        let seq = entry["seq"].as_u64();
        if let Some(prev) = &at {
            if seq != Some(prev.seq + 1) {
                return Err(broken(format!(
                    "expected entry {}, found {}",
                    prev.seq + 1,
                    entry["seq"]
                )));
            }
            if entry["prev"].as_str() != Some(prev.hash.as_str()) {
                return Err(broken(
                    "does not follow the previous entry (prev hash differs)".into(),
                ));
            }
        }
        let claimed = entry
            .as_object_mut()
            .and_then(|o| o.remove("hash"))
            .unwrap_or(Value::Null);
        let hash = hash_of(&entry);
        if claimed.as_str() != Some(hash.as_str()) {
            return Err(broken("its content does not match its hash".into()));
        }
        let seq = seq.ok_or_else(|| broken("no sequence number".into()))?;
        if let Some((want, whence)) = expected.get(&seq) {
            if *want != hash {
                return Err(AuditError::Rewritten {
                    path: path.to_path_buf(),
                    line: i + 1,
                    seq,
                    whence: whence.clone(),
                });
            }
        }
        at = Some(Head { seq, hash });
    }
    Ok(Scan { at, torn_bytes })
}

/// What `sightline audit verify` found.
#[derive(Debug)]
pub struct Report {
    /// Entries in the chain (the last sequence number).
    pub entries: u64,
    /// The head the catalog holds, which the chain reaches.
    pub head: Option<Head>,
    /// A torn last line of the current file, in bytes (the server cuts it at start).
    pub torn_bytes: u64,
    /// The last witnessed entry, when a witness key was given.
    pub witnessed: Option<u64>,
}

/// Checks the whole chain of the log in data directory `dir`: every rotated file and
/// the current one, each entry's hash and link; then that the chain reaches the head
/// `heads` holds (with the hash it records), and, with a witness key, every witness
/// line. A torn last line of the current file is reported, not an error: a crash or a
/// full disk mid-write leaves one, and the server cuts it at start.
pub fn verify(
    dir: &Path,
    heads: &dyn HeadStore,
    witness_key: Option<&WitnessKey>,
) -> Result<Report, AuditError> {
    let current = dir.join(FILE);
    let head = heads.load().map_err(|e| AuditError::Catalog {
        reason: e.to_string(),
    })?;
    let mut expected = Expected::new();
    if let Some(h) = &head {
        expected.insert(
            h.seq,
            (h.hash.clone(), "the head kept in the catalog".into()),
        );
    }
    let witness_path = dir.join(witness::WITNESS_FILE);
    let witnessed = match witness_key {
        None => None,
        Some(key) => {
            let lines = witness::read_lines(&witness_path, key)?;
            for w in &lines {
                expected.insert(
                    w.seq,
                    (
                        w.hash.clone(),
                        format!("line {} of {}", w.line, witness_path.display()),
                    ),
                );
            }
            Some(lines.last().map_or(0, |w| w.seq))
        }
    };
    let mut at = Head::genesis();
    for (first, path) in rotated(dir)? {
        if first != at.seq + 1 {
            return Err(AuditError::Broken {
                path,
                line: 1,
                reason: format!("expected a file starting at entry {}", at.seq + 1),
            });
        }
        let scan = scan_file(&path, Some(at), &expected)?;
        if scan.torn_bytes > 0 {
            return Err(AuditError::Broken {
                path,
                line: 0,
                reason: "a rotated file ends inside a line".into(),
            });
        }
        at = scan.at.expect("started from a link");
    }
    let scan = scan_file(&current, Some(at), &expected)?;
    let at = scan.at.expect("started from a link");
    // Every entry known from elsewhere must be in the chain.
    if let Some((&seq, (_, whence))) = expected.range(at.seq + 1..).next() {
        return Err(AuditError::Truncated {
            path: current,
            last: at.seq,
            seq,
            whence: whence.clone(),
        });
    }
    if head.is_none() && at.seq > 0 {
        return Err(AuditError::NoHead {
            path: current,
            last: at.seq,
        });
    }
    if let (Some(w), Some(h)) = (witnessed, &head) {
        if h.seq > w {
            return Err(AuditError::Witness {
                path: witness_path,
                line: 0,
                reason: format!(
                    "the catalog's head is entry {} but the last witness line is for entry {w}: \
                     witness lines were removed (or the server ran without the witness key since)",
                    h.seq
                ),
            });
        }
    }
    Ok(Report {
        entries: at.seq,
        head,
        torn_bytes: scan.torn_bytes,
        witnessed,
    })
}

/// The hash of entry `seq` from the rotated files (where the head may lie when the
/// current file began after it). `None`: no rotated file holds it.
pub(super) fn hash_in_rotated(dir: &Path, seq: u64) -> Result<Option<String>, AuditError> {
    let files = rotated(dir)?;
    let Some(i) = files.iter().rposition(|(first, _)| *first <= seq) else {
        return Ok(None);
    };
    let path = &files[i].1;
    let file = File::open(path).map_err(io_err(path))?;
    let skip = (seq - files[i].0) as usize;
    match BufReader::new(file).lines().nth(skip) {
        None => Ok(None),
        Some(line) => {
            let v: Value = serde_json::from_str(&line.map_err(io_err(path))?).map_err(|e| {
                AuditError::Broken {
                    path: path.clone(),
                    line: skip + 1,
                    reason: format!("not JSON: {e}"),
                }
            })?;
            Ok(v["hash"].as_str().map(str::to_string))
        }
    }
}

/// What [`cut_torn_tail`] cut.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Cut {
    pub bytes: u64,
    /// The file's length after the cut.
    pub at: u64,
}

/// Cuts a last line without its newline off `path` (a write cut short by a crash or a
/// full disk), like the WAL's torn tail: only if the file reads the same twice (a tail
/// that reads differently is a failing disk, refused rather than cut).
pub(super) fn cut_torn_tail(io: &dyn FileIo, path: &Path) -> Result<Option<Cut>, AuditError> {
    let first = match io.read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    if first.is_empty() || first.ends_with(b"\n") {
        return Ok(None);
    }
    let second = io.read(path).map_err(io_err(path))?;
    if second != first {
        return Err(AuditError::Broken {
            path: path.to_path_buf(),
            line: 0,
            reason: "its last line is incomplete and the file reads differently twice: a failing \
                     disk; not cut"
                .into(),
        });
    }
    let keep = first.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) as u64;
    io.truncate(path, keep).map_err(io_err(path))?;
    Ok(Some(Cut {
        bytes: first.len() as u64 - keep,
        at: keep,
    }))
}
