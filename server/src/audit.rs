//! The audit log: every investigative query, one JSON line each, hash-chained.
//!
//! Each entry carries `seq` (1, 2, …), `prev` (the previous entry's hash; 64 zeros for
//! the first) and `hash` = SHA-256 of the entry serialized without `hash`. Changing,
//! removing or reordering any line breaks the chain at that line; [`verify`] says
//! where. Lines are written (and flushed to the OS) before the response is sent; the
//! file is fsynced by the maintenance task every second, so a power cut may lose the
//! last second of entries but never leaves an entry that verifies wrongly.
//!
//! Rotation: entries go to `DIR/audit.log`; past a size it is fsynced and renamed to
//! `DIR/audit/{first seq:020}.log`, and a new `audit.log` continues the chain. At
//! start the server verifies the current file in full and its link to the last
//! rotated file; `sightline audit verify` checks every file.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::Value;

use crate::auth::sha256_hex;

/// The current file, in the data directory.
pub const FILE: &str = "audit.log";
/// Rotated files, in the data directory.
pub const ROTATED_DIR: &str = "audit";
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub struct AuditLog {
    path: PathBuf,
    rotated_dir: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
}

struct State {
    file: File,
    /// The last entry's sequence number and hash.
    seq: u64,
    last_hash: String,
    /// The sequence number of the current file's first entry (or of its next one).
    first_seq: u64,
    bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("audit log {path}, line {line}: {reason}")]
    Broken {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The hash of an entry that has no `hash` field yet: SHA-256 of its JSON (keys
/// sorted, as `serde_json` maps are).
fn hash_of(entry: &Value) -> String {
    sha256_hex(entry.to_string().as_bytes())
}

/// Rotated files of `dir`, oldest first, with the first sequence number each holds.
fn rotated(dir: &Path) -> Result<Vec<(u64, PathBuf)>, AuditError> {
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

/// Where a chain stands: the last sequence number and hash (0 and zeros at first).
#[derive(Clone, Debug, PartialEq)]
struct Link {
    seq: u64,
    hash: String,
}

impl Link {
    fn genesis() -> Link {
        Link {
            seq: 0,
            hash: GENESIS.to_string(),
        }
    }
}

/// Checks one file's entries; `from` is where the chain stood before it (`None`:
/// unknown, so the first entry is taken as it is and only the rest is linked).
/// Returns where the chain stands after it and the file's size.
fn verify_file(path: &Path, from: Option<Link>) -> Result<(Option<Link>, u64), AuditError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((from, 0)),
        Err(e) => return Err(io_err(path)(e)),
    };
    let mut at = from;
    let mut bytes = 0u64;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io_err(path))?;
        bytes += line.len() as u64 + 1;
        let broken = |reason: String| AuditError::Broken {
            path: path.to_path_buf(),
            line: i + 1,
            reason,
        };
        let mut entry: Value =
            serde_json::from_str(&line).map_err(|e| broken(format!("not JSON: {e}")))?;
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
        at = Some(Link { seq, hash });
    }
    Ok((at, bytes))
}

/// Checks the whole chain of the log in data directory `dir`, every rotated file and
/// the current one; returns the number of entries.
pub fn verify(dir: &Path) -> Result<u64, AuditError> {
    let mut at = Link::genesis();
    let files = rotated(dir)?;
    for (first, path) in files.iter().map(|(f, p)| (*f, p.as_path())) {
        if first != at.seq + 1 {
            return Err(AuditError::Broken {
                path: path.to_path_buf(),
                line: 1,
                reason: format!("expected a file starting at entry {}", at.seq + 1),
            });
        }
        at = verify_file(path, Some(at))?.0.expect("started from a link");
    }
    let (at, _) = verify_file(&dir.join(FILE), Some(at))?;
    Ok(at.expect("started from a link").seq)
}

impl AuditLog {
    /// Opens the log in data directory `dir`, rotating files past `max_bytes`. The
    /// current file is verified in full, with its link to the last rotated file (a
    /// broken chain is an error: the server does not start on a tampered log).
    pub fn open(dir: &Path, max_bytes: u64) -> Result<AuditLog, AuditError> {
        let path = dir.join(FILE);
        let rotated_dir = dir.join(ROTATED_DIR);
        // Where the rotated files end: the last one's last entry (itself verified).
        let from = match rotated(dir)?.last() {
            None => Link::genesis(),
            Some((_, last)) => {
                let (tail, _) = verify_file(last, None)?;
                tail.ok_or_else(|| AuditError::Broken {
                    path: last.clone(),
                    line: 0,
                    reason: "a rotated audit file is empty".into(),
                })?
            }
        };
        let (at, bytes) = verify_file(&path, Some(from.clone()))?;
        let at = at.expect("started from a link");
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        Ok(AuditLog {
            path,
            rotated_dir,
            max_bytes: max_bytes.max(1),
            state: Mutex::new(State {
                file,
                first_seq: from.seq + 1,
                seq: at.seq,
                last_hash: at.hash,
                bytes,
            }),
        })
    }

    /// Appends one entry.
    pub fn record(
        &self,
        ts_ms: i64,
        key_id: &str,
        endpoint: &str,
        params: &str,
        results: Option<usize>,
        status: u16,
    ) -> Result<(), AuditError> {
        /// An entry without its hash, fields in key order: its JSON is what
        /// [`hash_of`] hashes (a `Value`'s keys are sorted the same way), built without
        /// an intermediate map.
        #[derive(serde::Serialize)]
        struct Unhashed<'a> {
            endpoint: &'a str,
            key: &'a str,
            params: &'a str,
            prev: &'a str,
            results: Option<usize>,
            seq: u64,
            status: u16,
            ts: crate::params::Rfc3339,
        }
        let mut st = self.state.lock().expect("audit lock");
        let mut line = serde_json::to_string(&Unhashed {
            endpoint,
            key: key_id,
            params,
            prev: &st.last_hash,
            results,
            seq: st.seq + 1,
            status,
            ts: crate::params::Rfc3339(ts_ms),
        })
        .expect("an entry serializes");
        let hash = sha256_hex(line.as_bytes());
        line.pop(); // the closing brace: the hash goes last
        line.push_str(",\"hash\":\"");
        line.push_str(&hash);
        line.push_str("\"}\n");
        st.file
            .write_all(line.as_bytes())
            .map_err(io_err(&self.path))?;
        st.seq += 1;
        st.last_hash = hash;
        st.bytes += line.len() as u64;
        if st.bytes >= self.max_bytes {
            self.rotate(&mut st)?;
        }
        Ok(())
    }

    /// Seals the current file under `audit/` and starts a new one.
    fn rotate(&self, st: &mut State) -> Result<(), AuditError> {
        st.file.sync_data().map_err(io_err(&self.path))?;
        std::fs::create_dir_all(&self.rotated_dir).map_err(io_err(&self.rotated_dir))?;
        let sealed = self.rotated_dir.join(format!("{:020}.log", st.first_seq));
        std::fs::rename(&self.path, &sealed).map_err(io_err(&sealed))?;
        for d in [
            &self.rotated_dir,
            self.path.parent().unwrap_or(Path::new(".")),
        ] {
            File::open(d)
                .and_then(|f| f.sync_all())
                .map_err(io_err(d))?;
        }
        st.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io_err(&self.path))?;
        st.first_seq = st.seq + 1;
        st.bytes = 0;
        Ok(())
    }

    /// Makes everything recorded so far durable.
    pub fn sync(&self) -> Result<(), AuditError> {
        // fsync a second handle to the file outside the lock: an fsync can wait for the
        // file system's other writers (a picture pack's fsync, in ext4's ordered mode),
        // and every audited request appends under this lock meanwhile.
        let file = {
            let st = self.state.lock().expect("audit lock");
            st.file.try_clone().map_err(io_err(&self.path))?
        };
        file.sync_data().map_err(io_err(&self.path))
    }

    /// Entries after `after` (a sequence number), at most `limit`, oldest first. Reads
    /// from the file holding entry `after + 1` on, skipping lines without parsing.
    pub fn read(&self, after: u64, limit: usize) -> Result<Vec<Value>, AuditError> {
        // Rotation renames files: hold the lock so the set of files stays put.
        let st = self.state.lock().expect("audit lock");
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let mut files = rotated(dir)?;
        files.push((st.first_seq, self.path.clone()));
        let want = after + 1;
        let start = files
            .iter()
            .rposition(|(first, _)| *first <= want)
            .unwrap_or(0);
        let mut out = Vec::new();
        for (first, path) in &files[start..] {
            if out.len() >= limit {
                break;
            }
            let file = File::open(path).map_err(io_err(path))?;
            let skip = want.saturating_sub(*first) as usize;
            for line in BufReader::new(file).lines().skip(skip) {
                if out.len() >= limit {
                    break;
                }
                let line = line.map_err(io_err(path))?;
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    out.push(v);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_verifies_and_any_edit_breaks_it_at_that_line() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = AuditLog::open(dir.path(), u64::MAX).unwrap();
            for i in 0..5 {
                log.record(
                    1_630_454_400_000 + i,
                    "k1",
                    "/v1/trajectory",
                    "subject=x",
                    Some(3),
                    200,
                )
                .unwrap();
            }
        }
        let path = dir.path().join(FILE);
        assert_eq!(verify(dir.path()).unwrap(), 5);
        // Reopening continues the chain.
        AuditLog::open(dir.path(), u64::MAX)
            .unwrap()
            .record(9, "k2", "/v1/search", "q=y", None, 400)
            .unwrap();
        assert_eq!(verify(dir.path()).unwrap(), 6);

        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let tampered = [
            // A changed parameter.
            text.replacen("subject=x", "subject=z", 1),
            // A removed line.
            [&lines[..2], &lines[3..]].concat().join("\n"),
            // Two lines swapped.
            [lines[0], lines[2], lines[1], lines[3], lines[4], lines[5]].join("\n"),
        ];
        for (t, line) in tampered.iter().zip([1, 3, 2]) {
            std::fs::write(&path, t).unwrap();
            match verify(dir.path()) {
                Err(AuditError::Broken { line: l, .. }) => assert_eq!(l, line),
                other => panic!("tampering not detected: {other:?}"),
            }
            assert!(
                AuditLog::open(dir.path(), u64::MAX).is_err(),
                "the server must not start"
            );
        }
    }

    fn record(log: &AuditLog, i: u64) {
        log.record(
            i as i64,
            "k",
            "/v1/trajectory",
            &format!("n={i}"),
            Some(1),
            200,
        )
        .unwrap();
    }

    #[test]
    fn an_entry_is_hashed_as_its_sorted_json() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), u64::MAX).unwrap();
        log.record(5, "k\"1", "/v1/x", "a=\u{1}&b=苏", None, 400)
            .unwrap();
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        let mut entry: Value = serde_json::from_str(text.trim()).unwrap();
        let claimed = entry.as_object_mut().unwrap().remove("hash").unwrap();
        assert_eq!(claimed.as_str().unwrap(), hash_of(&entry));
        assert_eq!(entry["params"], "a=\u{1}&b=苏");
        assert_eq!(verify(dir.path()).unwrap(), 1);
    }

    #[test]
    fn rotated_files_continue_one_chain_and_reads_page_across_them() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), 700).unwrap();
        for i in 1..=25 {
            record(&log, i);
        }
        let files = rotated(dir.path()).unwrap();
        assert!(files.len() >= 5, "{files:?}");
        assert_eq!(files[0].0, 1);
        assert_eq!(verify(dir.path()).unwrap(), 25);
        for after in [0u64, 1, 2, 7, 24, 25, 30] {
            for limit in [1usize, 3, 10, 100] {
                let got: Vec<u64> = log
                    .read(after, limit)
                    .unwrap()
                    .iter()
                    .map(|e| e["seq"].as_u64().unwrap())
                    .collect();
                let want: Vec<u64> = (after + 1..=25).take(limit).collect();
                assert_eq!(got, want, "after {after}, limit {limit}");
            }
        }
        drop(log);
        // Reopening continues where the chain stood, rotated or not.
        let log = AuditLog::open(dir.path(), 700).unwrap();
        record(&log, 26);
        drop(log);
        assert_eq!(verify(dir.path()).unwrap(), 26);

        // An edit in an old file is found by verify (the server checks only the link
        // to the current file at start); removing the newest rotated file breaks that
        // link, and the server refuses to start.
        let files = rotated(dir.path()).unwrap();
        let (_, middle) = &files[files.len() / 2];
        let text = std::fs::read_to_string(middle).unwrap();
        std::fs::write(middle, text.replacen("\"results\":1", "\"results\":0", 1)).unwrap();
        match verify(dir.path()) {
            Err(AuditError::Broken { path, line: 1, .. }) => assert_eq!(&path, middle),
            other => panic!("tampering not detected: {other:?}"),
        }
        std::fs::write(middle, text).unwrap();
        let (_, last) = files.last().unwrap();
        std::fs::remove_file(last).unwrap();
        assert!(verify(dir.path()).is_err());
        assert!(AuditLog::open(dir.path(), 700).is_err());
    }
}
