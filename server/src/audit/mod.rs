//! The audit log: every investigative query, every change and every refusal, one JSON
//! line each, hash-chained, with its head kept outside the log.
//!
//! Each entry carries `seq` (1, 2, …), `prev` (the previous entry's hash; 64 zeros for
//! the first) and `hash` = SHA-256 of the entry serialized without `hash`. Changing,
//! removing or reordering any line breaks the chain at that line; [`verify`] says
//! where. Lines are written (and handed to the OS) before the response is sent.
//!
//! **Durability and the head.** Every second ([`AuditLog::sync`], from the server's
//! sync task, and at rotation and shutdown) the file is fsynced, then — only then —
//! the head (the last entry's sequence number and hash) is written to the catalog
//! (`head.rs`) and, with a witness key, signed into `audit.witness` (`witness.rs`).
//! So truncating the log, deleting it, or dropping lines and re-hashing the chain
//! leaves a log that no longer reaches the head (or not with that hash): the server
//! refuses to start and `sightline audit verify` fails, naming the file. The window:
//! entries written since the last sync (at most a second of them while the server
//! runs; none after a clean shutdown) are not yet covered by the head, so a crash may
//! lose them and someone who stops the server by SIGKILL could cut them unseen.
//!
//! **Failures.** A torn last line (a crash or a full disk mid-write) is cut at start,
//! like the WAL's torn tail (after the file reads the same twice), and an entry records
//! what was cut. A write that fails (ENOSPC …) is cut back off the file at once, so
//! the log stays whole; the request is refused (503 `audit_unavailable`) and the next
//! one tries again. If the cut itself fails, or an fsync fails (what it covered may be
//! lost), every later entry is refused until the server restarts and repairs the tail.
//!
//! Rotation: entries go to `DIR/audit.log`; past a size it is fsynced and renamed to
//! `DIR/audit/{first seq:020}.log`, and a new `audit.log` continues the chain. At
//! start the server verifies the current file in full, its link to the last rotated
//! file, and that the chain reaches the catalog's head; `sightline audit verify`
//! checks every file. Every write, fsync, rename and truncation of the log goes
//! through the store's `FileIo` (tests inject ENOSPC there).

mod chain;
pub mod head;
pub mod witness;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use sightline_storage::io::{FileIo, OpenMode, WriteFile};

use crate::auth::sha256_hex;
use chain::{cut_torn_tail, hash_in_rotated, rotated, scan_file, Expected};
pub use chain::{verify, Report};
pub use head::{Head, HeadStore, MemoryHead};
pub use witness::{WitnessKey, WITNESS_FILE};

/// The current file, in the data directory.
pub const FILE: &str = "audit.log";
/// Rotated files, in the data directory.
pub const ROTATED_DIR: &str = "audit";

/// The key an entry the server writes about the log itself carries.
pub const SERVER_KEY: &str = "sightline";

/// How the log is opened.
pub struct AuditOptions {
    /// Rotate the current file past this many bytes.
    pub max_bytes: u64,
    /// The file system seam (the store's: `StoreConfig::io`).
    pub io: Arc<dyn FileIo>,
    /// Where the head is kept (the store's catalog).
    pub heads: Arc<dyn HeadStore>,
    /// Sign the head into `audit.witness` with this key.
    pub witness: Option<WitnessKey>,
}

pub struct AuditLog {
    path: PathBuf,
    dir: PathBuf,
    rotated_dir: PathBuf,
    max_bytes: u64,
    io: Arc<dyn FileIo>,
    heads: Arc<dyn HeadStore>,
    witness: Option<(WitnessKey, Mutex<Box<dyn WriteFile>>)>,
    state: Mutex<State>,
    /// Held through a whole [`AuditLog::sync`], so heads are saved in order.
    syncing: Mutex<()>,
}

struct State {
    file: Box<dyn WriteFile>,
    /// The last entry's sequence number and hash.
    seq: u64,
    last_hash: String,
    /// The sequence number of the current file's first entry (or of its next one).
    first_seq: u64,
    /// The current file's length in bytes.
    bytes: u64,
    /// The last head saved to the catalog (and witnessed).
    saved_seq: u64,
    /// Why no entry can be written until the server restarts.
    failed: Option<String>,
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
    #[error("audit log {path} ends at entry {last}, but {whence} records entry {seq}: entries {}..={seq} are missing (the log was truncated or deleted)", .last + 1)]
    Truncated {
        path: PathBuf,
        last: u64,
        seq: u64,
        whence: String,
    },
    #[error("audit log {path}, line {line}: entry {seq} differs from what {whence} records: the chain was rewritten")]
    Rewritten {
        path: PathBuf,
        line: usize,
        seq: u64,
        whence: String,
    },
    #[error("audit log {path} holds {last} entries but the catalog holds no head for it: the head was removed, or the log was never opened by a server that keeps one (start the server once to record it)")]
    NoHead { path: PathBuf, last: u64 },
    #[error("audit witness {path}, line {line}: {reason}")]
    Witness {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("the audit head in the catalog cannot be read: {reason}")]
    Catalog { reason: String },
    #[error("audit log {path}: no entry is written since an earlier failure ({why}); restart the server once the disk is fixed")]
    Failed { path: PathBuf, why: String },
}

impl AuditError {
    /// Whether the disk, rather than the log's content, is at fault (answered 503).
    pub fn is_io(&self) -> bool {
        matches!(self, AuditError::Io { .. } | AuditError::Failed { .. })
    }
}

pub(crate) fn io_err(path: &Path) -> impl Fn(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Opens the head store of a stopped server's data directory (its catalog) for
/// `sightline audit verify`. `None`: there is no catalog (nor any head) yet.
pub fn catalog_heads(dir: &Path) -> Result<Option<sightline_storage::SledCatalog>, AuditError> {
    let path = dir.join("catalog");
    if !path.exists() {
        return Ok(None);
    }
    sightline_storage::SledCatalog::open(&path)
        .map(Some)
        .map_err(|e| AuditError::Catalog {
            reason: format!(
                "{}: {e} (is the server running? the catalog is opened by one process at a time: stop it to verify)",
                path.display()
            ),
        })
}

impl AuditLog {
    /// Opens the log in data directory `dir`. A torn last line is cut (and an entry
    /// records it); the current file is verified in full, with its link to the last
    /// rotated file, and the chain must reach the head the catalog holds, and the last
    /// witness line when a witness key is given. Anything else is an error: the server
    /// does not start on a truncated, deleted or rewritten log.
    pub fn open(dir: &Path, opts: AuditOptions) -> Result<AuditLog, AuditError> {
        let path = dir.join(FILE);
        let rotated_dir = dir.join(ROTATED_DIR);
        let io = opts.io.clone();
        let head = opts.heads.load().map_err(|e| AuditError::Catalog {
            reason: e.to_string(),
        })?;
        // Where the rotated files end: the last one's last entry (itself verified).
        let from = match rotated(dir)?.last() {
            None => Head::genesis(),
            Some((_, last)) => {
                scan_file(last, None, &Expected::new())?
                    .at
                    .ok_or_else(|| AuditError::Broken {
                        path: last.clone(),
                        line: 0,
                        reason: "a rotated audit file is empty".into(),
                    })?
            }
        };
        let cut = cut_torn_tail(io.as_ref(), &path)?;
        let mut expected = Expected::new();
        if let Some(h) = head.as_ref().filter(|h| h.seq > from.seq) {
            expected.insert(
                h.seq,
                (h.hash.clone(), "the head kept in the catalog".into()),
            );
        }
        let witness_path = dir.join(WITNESS_FILE);
        let last_witness = match &opts.witness {
            None => None,
            Some(key) => {
                let _ = cut_torn_tail(io.as_ref(), &witness_path)?;
                witness::read_lines(&witness_path, key)?.pop()
            }
        };
        if let Some(w) = last_witness.as_ref().filter(|w| w.seq > from.seq) {
            expected.insert(
                w.seq,
                (
                    w.hash.clone(),
                    format!("line {} of {}", w.line, witness_path.display()),
                ),
            );
        }
        let scan = scan_file(&path, Some(from.clone()), &expected)?;
        assert_eq!(scan.torn_bytes, 0, "the torn tail was cut");
        let at = scan.at.expect("started from a link");
        if let Some((&seq, (_, whence))) = expected.range(at.seq + 1..).next() {
            return Err(AuditError::Truncated {
                path,
                last: at.seq,
                seq,
                whence: whence.clone(),
            });
        }
        // A head (or witness) at or before the current file's start: check it in the
        // rotated files.
        for (seq, hash, whence) in head
            .iter()
            .map(|h| (h.seq, &h.hash, "the head kept in the catalog".to_string()))
            .chain(last_witness.iter().map(|w| {
                (
                    w.seq,
                    &w.hash,
                    format!("line {} of {}", w.line, witness_path.display()),
                )
            }))
            .filter(|(seq, _, _)| *seq > 0 && *seq <= from.seq)
        {
            let found = match seq == from.seq {
                true => Some(from.hash.clone()),
                false => hash_in_rotated(dir, seq)?,
            };
            if found.as_deref() != Some(hash.as_str()) {
                return Err(AuditError::Rewritten {
                    path: rotated_dir.clone(),
                    line: 0,
                    seq,
                    whence,
                });
            }
        }
        let file = io
            .open(&path, OpenMode::AppendOrCreate)
            .map_err(io_err(&path))?;
        let bytes = file.size().map_err(io_err(&path))?;
        let witness = match opts.witness {
            None => None,
            Some(key) => {
                let f = io
                    .open(&witness_path, OpenMode::AppendOrCreate)
                    .map_err(io_err(&witness_path))?;
                Some((key, Mutex::new(f)))
            }
        };
        let log = AuditLog {
            path,
            dir: dir.to_path_buf(),
            rotated_dir,
            max_bytes: opts.max_bytes.max(1),
            io,
            heads: opts.heads,
            witness,
            state: Mutex::new(State {
                file,
                first_seq: from.seq + 1,
                seq: at.seq,
                last_hash: at.hash,
                bytes,
                saved_seq: head.as_ref().map_or(0, |h| h.seq),
                failed: None,
            }),
            syncing: Mutex::new(()),
        };
        let now = crate::now_ms();
        if let Some(cut) = cut {
            tracing::warn!(
                bytes = cut.bytes,
                after = at.seq,
                "cut the audit log's torn last line"
            );
            log.note(
                now,
                "repair",
                &format!(
                    "cut a torn last line of {} bytes at byte {} of {} (a write cut short by a crash or a full disk), after entry {}",
                    cut.bytes,
                    cut.at,
                    log.path.display(),
                    at.seq
                ),
            )?;
        }
        if head.is_none() && at.seq > 0 {
            tracing::warn!(
                entries = at.seq,
                "the catalog held no audit head; recording one"
            );
            log.note(
                now,
                "head",
                &format!(
                    "the catalog held no head for this log of {} entries (a store from before heads were kept, or the head was removed); recorded from here on",
                    at.seq
                ),
            )?;
        }
        if let (Some(_), Some(h)) = (&log.witness, &head) {
            let w = last_witness.as_ref().map_or(0, |w| w.seq);
            if h.seq > w {
                tracing::warn!(head = h.seq, witnessed = w, "audit entries not witnessed");
                log.note(
                    now,
                    "witness",
                    &format!(
                        "entries {}..={} were not witnessed (the server ran without the witness key, or witness lines were removed); witnessed from here on",
                        w + 1,
                        h.seq
                    ),
                )?;
            }
        }
        if head.is_none() && at.seq == 0 {
            // A new log: its (empty) head is on record from the start, so that a log
            // whose first entries were never synced still has one to be checked by.
            log.heads
                .save(&Head::genesis())
                .map_err(|e| AuditError::Catalog {
                    reason: e.to_string(),
                })?;
        }
        log.sync()?;
        Ok(log)
    }

    /// An entry the server writes about the log itself (`endpoint` `audit:{what}`).
    fn note(&self, ts_ms: i64, what: &str, text: &str) -> Result<(), AuditError> {
        self.record(ts_ms, SERVER_KEY, &format!("audit:{what}"), text, None, 0)
    }

    /// Appends one entry. A failed write is cut back off the file (the log stays
    /// whole) and returned; if it cannot be cut, no entry is written until restart.
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
        /// `hash_of` hashes (a `Value`'s keys are sorted the same way), built without
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
        if let Some(why) = &st.failed {
            return Err(AuditError::Failed {
                path: self.path.clone(),
                why: why.clone(),
            });
        }
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
        if let Err(e) = st.file.write_all(line.as_bytes()) {
            // Part of the line may be in the file: cut it off, so the log stays whole
            // and the next entry can follow the last complete one.
            if let Err(cut) = self.io.truncate(&self.path, st.bytes) {
                let why =
                    format!("a write failed ({e}) and its partial line could not be cut ({cut})");
                tracing::error!(%why, "audit log failed");
                st.failed = Some(why);
            }
            return Err(io_err(&self.path)(e));
        }
        st.seq += 1;
        st.last_hash = hash;
        st.bytes += line.len() as u64;
        if st.bytes >= self.max_bytes {
            if let Err(e) = self.rotate(&mut st) {
                st.failed = Some(format!("rotating the log failed: {e}"));
                return Err(e);
            }
        }
        Ok(())
    }

    /// Seals the current file under `audit/` and starts a new one.
    fn rotate(&self, st: &mut State) -> Result<(), AuditError> {
        st.file.sync_data().map_err(io_err(&self.path))?;
        std::fs::create_dir_all(&self.rotated_dir).map_err(io_err(&self.rotated_dir))?;
        let sealed = self.rotated_dir.join(format!("{:020}.log", st.first_seq));
        self.io
            .rename(&self.path, &sealed)
            .map_err(io_err(&sealed))?;
        for d in [&self.rotated_dir, &self.dir] {
            self.io.sync_dir(d).map_err(io_err(d))?;
        }
        st.file = self
            .io
            .open(&self.path, OpenMode::AppendOrCreate)
            .map_err(io_err(&self.path))?;
        st.first_seq = st.seq + 1;
        st.bytes = 0;
        Ok(())
    }

    /// Makes everything recorded so far durable, then records the head in the catalog
    /// (and signs it into the witness file). A failed fsync stops the log until restart
    /// (what it covered may be lost, whatever the page cache shows).
    pub fn sync(&self) -> Result<(), AuditError> {
        let _one = self.syncing.lock().expect("audit sync lock");
        let head = {
            let mut st = self.state.lock().expect("audit lock");
            if let Some(why) = &st.failed {
                return Err(AuditError::Failed {
                    path: self.path.clone(),
                    why: why.clone(),
                });
            }
            // The fsync runs outside this lock where the file allows it: it can wait
            // for the file system's other writers (a picture pack's fsync, in ext4's
            // ordered mode), and every audited request appends under this lock.
            let detached = match st.file.detached_sync() {
                Ok(Some(sync)) => Some(sync),
                Ok(None) => {
                    if let Err(e) = st.file.sync_data() {
                        st.failed = Some(format!("an fsync failed: {e}"));
                        return Err(io_err(&self.path)(e));
                    }
                    None
                }
                Err(e) => return Err(io_err(&self.path)(e)),
            };
            let head = Head {
                seq: st.seq,
                hash: st.last_hash.clone(),
            };
            let saved = st.saved_seq;
            drop(st);
            if let Some(sync) = detached {
                if let Err(e) = sync() {
                    let mut st = self.state.lock().expect("audit lock");
                    st.failed = Some(format!("an fsync failed: {e}"));
                    return Err(io_err(&self.path)(e));
                }
            }
            if head.seq == saved {
                return Ok(());
            }
            head
        };
        // The log is durable through `head`: witness it, then keep it in the catalog.
        if let Some((key, file)) = &self.witness {
            let wpath = self.dir.join(WITNESS_FILE);
            let mut f = file.lock().expect("witness lock");
            f.write_all(key.line(head.seq, &head.hash).as_bytes())
                .and_then(|()| f.sync_data())
                .map_err(io_err(&wpath))?;
        }
        self.heads.save(&head).map_err(|e| AuditError::Catalog {
            reason: e.to_string(),
        })?;
        self.state.lock().expect("audit lock").saved_seq = head.seq;
        Ok(())
    }

    /// The head: the last entry written (not necessarily synced yet).
    pub fn head(&self) -> Head {
        let st = self.state.lock().expect("audit lock");
        Head {
            seq: st.seq,
            hash: st.last_hash.clone(),
        }
    }

    /// Entries after `after` (a sequence number), at most `limit`, oldest first. Reads
    /// from the file holding entry `after + 1` on, skipping lines without parsing.
    pub fn read(&self, after: u64, limit: usize) -> Result<Vec<Value>, AuditError> {
        Ok(self.read_matching(after, limit, usize::MAX, |_| true)?.0)
    }

    /// Entries after `after` that `wanted` accepts, at most `limit`, oldest first,
    /// looking at no more than `max_scanned` entries; and the sequence number of the
    /// last entry looked at (`after` when none was): where to go on from.
    pub fn read_matching(
        &self,
        after: u64,
        limit: usize,
        max_scanned: usize,
        wanted: impl Fn(&Value) -> bool,
    ) -> Result<(Vec<Value>, u64), AuditError> {
        // Rotation renames files: hold the lock so the set of files stays put.
        let st = self.state.lock().expect("audit lock");
        let mut files = rotated(&self.dir)?;
        files.push((st.first_seq, self.path.clone()));
        let want = after + 1;
        let start = files
            .iter()
            .rposition(|(first, _)| *first <= want)
            .unwrap_or(0);
        let mut out = Vec::new();
        let (mut scanned, mut last) = (0usize, after);
        for (first, path) in &files[start..] {
            if out.len() >= limit || scanned >= max_scanned {
                break;
            }
            let file = std::fs::File::open(path).map_err(io_err(path))?;
            let skip = want.saturating_sub(*first) as usize;
            for line in BufReader::new(file).lines().skip(skip) {
                if out.len() >= limit || scanned >= max_scanned {
                    break;
                }
                let line = line.map_err(io_err(path))?;
                scanned += 1;
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    last = v["seq"].as_u64().unwrap_or(last);
                    if wanted(&v) {
                        out.push(v);
                    }
                }
            }
        }
        Ok((out, last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sightline_storage::io::{Fault, FaultKind, FaultyIo, Op, ENOSPC};

    /// A log over the real file system with its head in `heads`.
    fn open_with(
        dir: &Path,
        max_bytes: u64,
        heads: &Arc<MemoryHead>,
        io: Arc<dyn FileIo>,
        witness: Option<WitnessKey>,
    ) -> Result<AuditLog, AuditError> {
        AuditLog::open(
            dir,
            AuditOptions {
                max_bytes,
                io,
                heads: heads.clone(),
                witness,
            },
        )
    }

    fn open(dir: &Path, max_bytes: u64, heads: &Arc<MemoryHead>) -> Result<AuditLog, AuditError> {
        open_with(dir, max_bytes, heads, sightline_storage::io::os(), None)
    }

    fn check(dir: &Path, heads: &Arc<MemoryHead>) -> Result<u64, AuditError> {
        verify(dir, heads.as_ref(), None).map(|r| r.entries)
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

    /// The entries of `text` chained again from the start, as someone who edits the
    /// log and recomputes every hash would: a chain that verifies on its own.
    fn rehash(text: &str) -> (String, Head) {
        let mut at = Head::genesis();
        let mut out = String::new();
        for line in text.lines() {
            let mut v: Value = serde_json::from_str(line).unwrap();
            let o = v.as_object_mut().unwrap();
            o.remove("hash");
            o.insert("seq".into(), (at.seq + 1).into());
            o.insert("prev".into(), at.hash.clone().into());
            let hash = chain::hash_of(&v);
            v["hash"] = hash.clone().into();
            out.push_str(&v.to_string());
            out.push('\n');
            at = Head {
                seq: at.seq + 1,
                hash,
            };
        }
        (out, at)
    }

    #[test]
    fn the_chain_verifies_and_any_edit_breaks_it_at_that_line() {
        let dir = tempfile::tempdir().unwrap();
        let heads = Arc::new(MemoryHead::default());
        {
            let log = open(dir.path(), u64::MAX, &heads).unwrap();
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
            log.sync().unwrap();
        }
        let path = dir.path().join(FILE);
        assert_eq!(check(dir.path(), &heads).unwrap(), 5);
        // Reopening continues the chain.
        let log = open(dir.path(), u64::MAX, &heads).unwrap();
        log.record(9, "k2", "/v1/search", "q=y", None, 400).unwrap();
        log.sync().unwrap();
        drop(log);
        assert_eq!(check(dir.path(), &heads).unwrap(), 6);

        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let tampered = [
            // A changed parameter.
            text.replacen("subject=x", "subject=z", 1),
            // A removed line.
            [&lines[..2], &lines[3..]].concat().join("\n") + "\n",
            // Two lines swapped.
            [lines[0], lines[2], lines[1], lines[3], lines[4], lines[5]].join("\n") + "\n",
        ];
        for (t, line) in tampered.iter().zip([1, 3, 2]) {
            std::fs::write(&path, t).unwrap();
            match check(dir.path(), &heads) {
                Err(AuditError::Broken { line: l, .. }) => assert_eq!(l, line),
                other => panic!("tampering not detected: {other:?}"),
            }
            assert!(
                open(dir.path(), u64::MAX, &heads).is_err(),
                "the server must not start"
            );
        }
    }

    #[test]
    fn truncation_deletion_and_a_rehashed_chain_are_found_against_the_head() {
        let dir = tempfile::tempdir().unwrap();
        let heads = Arc::new(MemoryHead::default());
        let log = open(dir.path(), u64::MAX, &heads).unwrap();
        for i in 1..=20 {
            record(&log, i);
        }
        log.sync().unwrap();
        drop(log);
        assert_eq!(heads.load().unwrap().unwrap().seq, 20);
        let path = dir.path().join(FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let say = |e: AuditError| {
            let m = e.to_string();
            assert!(m.contains("audit.log"), "{m}");
            m
        };

        // The last 10 lines cut: a chain that verifies on its own, short of the head.
        std::fs::write(&path, lines[..10].join("\n") + "\n").unwrap();
        let m = say(check(dir.path(), &heads).unwrap_err());
        assert!(
            m.contains("ends at entry 10") && m.contains("entries 11..=20 are missing"),
            "{m}"
        );
        let m = say(open(dir.path(), u64::MAX, &heads).err().unwrap());
        assert!(m.contains("truncated"), "{m}");
        assert_eq!(
            heads.load().unwrap().unwrap().seq,
            20,
            "nor is the head moved back"
        );

        // Deleted.
        std::fs::remove_file(&path).unwrap();
        let m = say(check(dir.path(), &heads).unwrap_err());
        assert!(m.contains("ends at entry 0"), "{m}");
        assert!(open(dir.path(), u64::MAX, &heads).is_err());
        assert!(!path.exists() || std::fs::read(&path).unwrap().is_empty());

        // One key's lines dropped and the chain re-hashed: every line verifies, but
        // the entry at the head has another hash (or is gone).
        let kept: Vec<&str> = lines
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 4 != 1)
            .map(|(_, l)| *l)
            .collect();
        let (rewritten, _) = rehash(&(kept.join("\n") + "\n"));
        std::fs::write(&path, &rewritten).unwrap();
        assert!(check(dir.path(), &heads).is_err());
        assert!(open(dir.path(), u64::MAX, &heads).is_err());
        // Padded back to 20 entries: found at the head's entry.
        let mut padded = kept.join("\n") + "\n";
        for l in &lines[..20 - kept.len()] {
            padded.push_str(l);
            padded.push('\n');
        }
        let (rewritten, _) = rehash(&padded);
        std::fs::write(&path, &rewritten).unwrap();
        match check(dir.path(), &heads) {
            Err(AuditError::Rewritten { seq: 20, .. }) => {}
            other => panic!("a rewrite not found: {other:?}"),
        }
        assert!(matches!(
            open(dir.path(), u64::MAX, &heads),
            Err(AuditError::Rewritten { seq: 20, .. })
        ));

        // The original verifies and the server continues it, numbering on from 21.
        std::fs::write(&path, &text).unwrap();
        let log = open(dir.path(), u64::MAX, &heads).unwrap();
        record(&log, 21);
        assert_eq!(log.head().seq, 21);
    }

    #[test]
    fn a_witness_finds_a_rewrite_with_the_head_rewritten_too() {
        let dir = tempfile::tempdir().unwrap();
        let heads = Arc::new(MemoryHead::default());
        let key = WitnessKey::from_bytes(&[42; 32]);
        let io = sightline_storage::io::os();
        let log = open_with(dir.path(), u64::MAX, &heads, io.clone(), Some(key.clone())).unwrap();
        for i in 1..=12 {
            record(&log, i);
            if i % 4 == 0 {
                log.sync().unwrap();
            }
        }
        drop(log);
        let r = verify(dir.path(), heads.as_ref(), Some(&key)).unwrap();
        assert_eq!((r.entries, r.witnessed), (12, Some(12)));

        // Drop entry 2, re-hash, and set the catalog's head to the new chain's end:
        // without the key nothing shows; with it the witness lines do not match.
        let path = dir.path().join(FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        let kept: Vec<&str> = text
            .lines()
            .enumerate()
            .filter(|(i, _)| *i != 1)
            .map(|(_, l)| l)
            .collect();
        let (rewritten, head) = rehash(&(kept.join("\n") + "\n"));
        std::fs::write(&path, rewritten).unwrap();
        heads.save(&head).unwrap();
        assert_eq!(
            check(dir.path(), &heads).unwrap(),
            11,
            "the limit of the head alone"
        );
        let e = verify(dir.path(), heads.as_ref(), Some(&key)).unwrap_err();
        assert!(matches!(e, AuditError::Rewritten { seq: 4, .. }), "{e}");
        assert!(e.to_string().contains("audit.witness"), "{e}");
        assert!(open_with(dir.path(), u64::MAX, &heads, io.clone(), Some(key.clone())).is_err());
        // A forged witness line (another key) is refused.
        let wpath = dir.path().join(WITNESS_FILE);
        let other = WitnessKey::from_bytes(&[1; 32]);
        std::fs::write(&wpath, other.line(head.seq, &head.hash)).unwrap();
        let e = verify(dir.path(), heads.as_ref(), Some(&key)).unwrap_err();
        assert!(
            e.to_string().contains("does not match the witness key"),
            "{e}"
        );
        // Witness lines removed: the head is past the last one.
        std::fs::write(&wpath, "").unwrap();
        let e = verify(dir.path(), heads.as_ref(), Some(&key)).unwrap_err();
        assert!(e.to_string().contains("witness lines were removed"), "{e}");
    }

    #[test]
    fn a_torn_last_line_is_cut_at_start_and_the_cut_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let heads = Arc::new(MemoryHead::default());
        let log = open(dir.path(), u64::MAX, &heads).unwrap();
        for i in 1..=3 {
            record(&log, i);
        }
        log.sync().unwrap();
        drop(log);
        let path = dir.path().join(FILE);
        let whole = std::fs::read(&path).unwrap();
        // Half of a fourth line, as a crash mid-write leaves it.
        let mut torn = whole.clone();
        torn.extend_from_slice(&whole[..40]);
        std::fs::write(&path, &torn).unwrap();
        let r = verify(dir.path(), heads.as_ref(), None).unwrap();
        assert_eq!((r.entries, r.torn_bytes), (3, 40), "reported, not an error");

        let log = open(dir.path(), u64::MAX, &heads).unwrap();
        let noted = log.read(3, 10).unwrap();
        assert_eq!(noted.len(), 1);
        assert_eq!(noted[0]["seq"], 4);
        assert_eq!(noted[0]["endpoint"], "audit:repair");
        let text = noted[0]["params"].as_str().unwrap();
        assert!(
            text.contains("40 bytes") && text.contains("after entry 3"),
            "{text}"
        );
        record(&log, 5);
        drop(log);
        assert_eq!(check(dir.path(), &heads).unwrap(), 5);
        assert!(std::fs::read(&path).unwrap().starts_with(&whole));
    }

    /// ENOSPC mid-line: the partial line is cut back at once, the entry refused, the
    /// next one written; the log verifies throughout and the server restarts on it.
    /// When even the cut fails, entries are refused until restart, which repairs it.
    #[test]
    fn a_full_disk_refuses_the_entry_and_leaves_a_whole_log() {
        let dir = tempfile::tempdir().unwrap();
        let heads = Arc::new(MemoryHead::default());
        let io = FaultyIo::new();
        let log = open_with(dir.path(), u64::MAX, &heads, io.clone(), None).unwrap();
        record(&log, 1);
        log.sync().unwrap();
        io.inject(Fault::new(Op::Write, FILE, FaultKind::ShortWrite).once());
        let e = log
            .record(2, "k", "/v1/trajectory", "n=2", None, 200)
            .unwrap_err();
        assert!(e.is_io(), "{e}");
        assert!(
            matches!(&e, AuditError::Io { source, .. } if source.raw_os_error() == Some(ENOSPC))
        );
        assert_eq!(
            check(dir.path(), &heads).unwrap(),
            1,
            "no partial line left"
        );
        record(&log, 2);
        log.sync().unwrap();
        assert_eq!(check(dir.path(), &heads).unwrap(), 2);

        // The write fails and so does the cut: refused until restart.
        io.inject(Fault::new(Op::Write, FILE, FaultKind::ShortWrite).once());
        io.inject(Fault::new(Op::Truncate, FILE, FaultKind::Errno(ENOSPC)).once());
        assert!(log.record(3, "k", "/x", "", None, 200).is_err());
        let e = log.record(3, "k", "/x", "", None, 200).unwrap_err();
        assert!(matches!(e, AuditError::Failed { .. }), "{e}");
        assert!(log.sync().is_err());
        drop(log);
        let r = verify(dir.path(), heads.as_ref(), None).unwrap();
        assert_eq!(r.entries, 2);
        assert!(r.torn_bytes > 0);
        // Space is back: the restart cuts the partial line, records it, numbers on.
        let log = open_with(dir.path(), u64::MAX, &heads, io.clone(), None).unwrap();
        assert_eq!(log.head().seq, 3, "the repair's entry");
        record(&log, 4);
        log.sync().unwrap();
        drop(log);
        assert_eq!(check(dir.path(), &heads).unwrap(), 4);

        // A failed fsync: what it covered may be gone; refused until restart.
        let log = open_with(dir.path(), u64::MAX, &heads, io.clone(), None).unwrap();
        record(&log, 5);
        io.inject(Fault::new(Op::Sync, FILE, FaultKind::Errno(5)).once());
        assert!(log.sync().is_err());
        assert!(log.record(6, "k", "/x", "", None, 200).is_err());
        drop(log);
        let log = open_with(dir.path(), u64::MAX, &heads, io, None).unwrap();
        assert!(log.head().seq >= 4);
        assert_eq!(heads.load().unwrap().unwrap().seq, log.head().seq);
    }

    #[test]
    fn an_entry_is_hashed_as_its_sorted_json() {
        let dir = tempfile::tempdir().unwrap();
        let heads = Arc::new(MemoryHead::default());
        let log = open(dir.path(), u64::MAX, &heads).unwrap();
        log.record(5, "k\"1", "/v1/x", "a=\u{1}&b=苏", None, 400)
            .unwrap();
        log.sync().unwrap();
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        let mut entry: Value = serde_json::from_str(text.trim()).unwrap();
        let claimed = entry.as_object_mut().unwrap().remove("hash").unwrap();
        assert_eq!(claimed.as_str().unwrap(), chain::hash_of(&entry));
        assert_eq!(entry["params"], "a=\u{1}&b=苏");
        assert_eq!(check(dir.path(), &heads).unwrap(), 1);
    }

    #[test]
    fn rotated_files_continue_one_chain_and_reads_page_across_them() {
        let dir = tempfile::tempdir().unwrap();
        let heads = Arc::new(MemoryHead::default());
        let log = open(dir.path(), 700, &heads).unwrap();
        for i in 1..=25 {
            record(&log, i);
        }
        log.sync().unwrap();
        let files = rotated(dir.path()).unwrap();
        assert!(files.len() >= 5, "{files:?}");
        assert_eq!(files[0].0, 1);
        assert_eq!(check(dir.path(), &heads).unwrap(), 25);
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
        let log = open(dir.path(), 700, &heads).unwrap();
        record(&log, 26);
        log.sync().unwrap();
        drop(log);
        assert_eq!(check(dir.path(), &heads).unwrap(), 26);

        // An edit in an old file is found by verify (the server checks only the link
        // to the current file at start); removing the newest rotated file breaks that
        // link, and the server refuses to start.
        let files = rotated(dir.path()).unwrap();
        let (_, middle) = &files[files.len() / 2];
        let text = std::fs::read_to_string(middle).unwrap();
        std::fs::write(middle, text.replacen("\"results\":1", "\"results\":0", 1)).unwrap();
        match check(dir.path(), &heads) {
            Err(AuditError::Broken { path, line: 1, .. }) => assert_eq!(&path, middle),
            other => panic!("tampering not detected: {other:?}"),
        }
        std::fs::write(middle, text).unwrap();
        let (_, last) = files.last().unwrap();
        std::fs::remove_file(last).unwrap();
        assert!(check(dir.path(), &heads).is_err());
        assert!(open(dir.path(), 700, &heads).is_err());
    }

    /// A head that lies in a rotated file (the current file is empty, or was
    /// deleted) is checked there.
    #[test]
    fn a_head_in_a_rotated_file_is_checked_there() {
        let dir = tempfile::tempdir().unwrap();
        let heads = Arc::new(MemoryHead::default());
        let log = open(dir.path(), 700, &heads).unwrap();
        for i in 1..=12 {
            record(&log, i);
        }
        log.sync().unwrap();
        drop(log);
        let head = heads.load().unwrap().unwrap();
        // Rotate by hand so the head lies before the current file.
        let path = dir.path().join(FILE);
        let cur = std::fs::read_to_string(&path).unwrap();
        if !cur.is_empty() {
            let first: Value = serde_json::from_str(cur.lines().next().unwrap()).unwrap();
            let seq = first["seq"].as_u64().unwrap();
            std::fs::rename(
                &path,
                dir.path().join(ROTATED_DIR).join(format!("{seq:020}.log")),
            )
            .unwrap();
        }
        assert!(open(dir.path(), 700, &heads).is_ok());
        // A lower head with a wrong hash, as a rewrite of older files leaves it.
        heads
            .save(&Head {
                seq: 3,
                hash: head.hash.clone(),
            })
            .unwrap();
        assert!(matches!(
            open(dir.path(), 700, &heads),
            Err(AuditError::Rewritten { seq: 3, .. })
        ));
    }
}
