//! The audit log: every investigative query, one JSON line each, hash-chained.
//!
//! Each entry carries `prev` (the previous entry's hash; 64 zeros for the first) and
//! `hash` = SHA-256 of the entry serialized without `hash`. Changing, removing or
//! reordering any line breaks the chain at that line; [`verify`] says where.
//! Lines are written (and flushed to the OS) before the response is sent; the file is
//! fsynced by the maintenance task every second, so a power cut may lose the last
//! second of entries but never leaves an entry that verifies wrongly.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{json, Value};

use crate::auth::sha256_hex;

pub const FILE: &str = "audit.log";
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub struct AuditLog {
    path: PathBuf,
    state: Mutex<State>,
}

struct State {
    file: File,
    seq: u64,
    last_hash: String,
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

/// The hash of an entry that has no `hash` field yet: SHA-256 of its JSON (keys
/// sorted, as `serde_json` maps are).
fn hash_of(entry: &Value) -> String {
    sha256_hex(entry.to_string().as_bytes())
}

/// Checks the whole chain; returns the number of entries.
pub fn verify(path: &Path) -> Result<u64, AuditError> {
    chain(path).map(|(n, _)| n)
}

/// Checks the whole chain; returns the number of entries and the last entry's hash.
fn chain(path: &Path) -> Result<(u64, String), AuditError> {
    let io = |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, GENESIS.to_string())),
        Err(e) => return Err(io(e)),
    };
    let mut prev = GENESIS.to_string();
    let mut n = 0u64;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io)?;
        let broken = |reason: String| AuditError::Broken {
            path: path.to_path_buf(),
            line: i + 1,
            reason,
        };
        let mut entry: Value =
            serde_json::from_str(&line).map_err(|e| broken(format!("not JSON: {e}")))?;
        if entry["seq"].as_u64() != Some(n + 1) {
            return Err(broken(format!(
                "expected entry {}, found {}",
                n + 1,
                entry["seq"]
            )));
        }
        if entry["prev"].as_str() != Some(prev.as_str()) {
            return Err(broken(
                "does not follow the previous entry (prev hash differs)".into(),
            ));
        }
        let claimed = entry
            .as_object_mut()
            .and_then(|o| o.remove("hash"))
            .unwrap_or(Value::Null);
        let hash = hash_of(&entry);
        if claimed.as_str() != Some(hash.as_str()) {
            return Err(broken("its content does not match its hash".into()));
        }
        prev = hash;
        n += 1;
    }
    Ok((n, prev))
}

impl AuditLog {
    /// Opens the log in `dir`, verifying the existing chain first (a broken chain is
    /// an error: the server does not start on a tampered log).
    pub fn open(dir: &Path) -> Result<AuditLog, AuditError> {
        let path = dir.join(FILE);
        let (seq, last_hash) = chain(&path)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| AuditError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(AuditLog {
            path,
            state: Mutex::new(State {
                file,
                seq,
                last_hash,
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
        let mut st = self.state.lock().expect("audit lock");
        let mut entry = json!({
            "seq": st.seq + 1,
            "ts": crate::params::rfc3339(ts_ms),
            "key": key_id,
            "endpoint": endpoint,
            "params": params,
            "results": results,
            "status": status,
            "prev": st.last_hash,
        });
        let hash = hash_of(&entry);
        entry["hash"] = hash.clone().into();
        let line = format!("{entry}\n");
        st.file
            .write_all(line.as_bytes())
            .map_err(|source| AuditError::Io {
                path: self.path.clone(),
                source,
            })?;
        st.seq += 1;
        st.last_hash = hash;
        Ok(())
    }

    /// Makes everything recorded so far durable.
    pub fn sync(&self) -> Result<(), AuditError> {
        let st = self.state.lock().expect("audit lock");
        st.file.sync_data().map_err(|source| AuditError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Entries after `after` (a sequence number), at most `limit`.
    pub fn read(&self, after: u64, limit: usize) -> Result<Vec<Value>, AuditError> {
        let _st = self.state.lock().expect("audit lock");
        let text = std::fs::read_to_string(&self.path).map_err(|source| AuditError::Io {
            path: self.path.clone(),
            source,
        })?;
        Ok(text
            .lines()
            .skip(after as usize)
            .take(limit)
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_verifies_and_any_edit_breaks_it_at_that_line() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = AuditLog::open(dir.path()).unwrap();
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
        assert_eq!(verify(&path).unwrap(), 5);
        // Reopening continues the chain.
        AuditLog::open(dir.path())
            .unwrap()
            .record(9, "k2", "/v1/search", "q=y", None, 400)
            .unwrap();
        assert_eq!(verify(&path).unwrap(), 6);

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
            match verify(&path) {
                Err(AuditError::Broken { line: l, .. }) => assert_eq!(l, line),
                other => panic!("tampering not detected: {other:?}"),
            }
            assert!(
                AuditLog::open(dir.path()).is_err(),
                "the server must not start"
            );
        }
    }
}
