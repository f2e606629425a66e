//! The write-ahead log: numbered files of framed batch records.
//!
//! A file is named after the sequence number of its first event
//! (`wal/00000000000000000001.wal`). The active file takes appends; past
//! `wal_file_bytes` a new file starts. [`Wal::checkpoint`] deletes files all of whose
//! events are sealed. The batch payload layout is in FORMAT.md.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Result, StorageError};
use crate::fsutil::fsync_dir;
use crate::io::{FileIo, OpenMode, WriteFile};
use crate::log_file::{frame_with, read_records, TornTail, FRAME_HEADER};
use crate::memtable::StoredRow;
use crate::shard::ShardKey;

/// One event as logged: ids, not strings (their dictionary entries are logged first).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct WalEvent {
    pub ts_ms: i64,
    pub community: u32,
    pub device: u32,
    pub subject: u32,
    pub kd: u8,
    pub attrs: Box<[u8]>,
}

const EVENT_FIXED: usize = 8 + 4 + 4 + 4 + 1 + 4;

/// Encodes a batch whose events have sequence numbers `first_seq..` as one framed record.
pub(crate) fn encode_batch(first_seq: u64, rows: &[(ShardKey, StoredRow)], out: &mut Vec<u8>) {
    let size = 12
        + rows
            .iter()
            .map(|(_, r)| EVENT_FIXED + r.attrs.len())
            .sum::<usize>();
    out.reserve(FRAME_HEADER + size);
    frame_with(out, |p| {
        p.extend_from_slice(&first_seq.to_le_bytes());
        p.extend_from_slice(&(rows.len() as u32).to_le_bytes());
        for (i, (key, r)) in rows.iter().enumerate() {
            debug_assert_eq!(
                r.seq,
                first_seq + i as u64,
                "a batch's sequence numbers are consecutive"
            );
            p.extend_from_slice(&r.ts_ms.to_le_bytes());
            p.extend_from_slice(&key.community.to_le_bytes());
            p.extend_from_slice(&r.device.to_le_bytes());
            p.extend_from_slice(&r.subject.to_le_bytes());
            p.push(r.kd);
            p.extend_from_slice(&(r.attrs.len() as u32).to_le_bytes());
            p.extend_from_slice(&r.attrs);
        }
    });
}

/// Decodes a batch payload. Lengths are checked against the bytes present.
pub(crate) fn decode_batch(p: &[u8]) -> std::result::Result<(u64, Vec<WalEvent>), String> {
    let mut at = 0usize;
    let take = |at: &mut usize, n: usize| -> std::result::Result<&[u8], String> {
        let s = p
            .get(*at..*at + n)
            .ok_or_else(|| format!("batch truncated at byte {}", *at))?;
        *at += n;
        Ok(s)
    };
    let first_seq = u64::from_le_bytes(take(&mut at, 8)?.try_into().expect("8"));
    let count = u32::from_le_bytes(take(&mut at, 4)?.try_into().expect("4")) as usize;
    if count > p.len() / EVENT_FIXED {
        return Err(format!("batch claims {count} events in {} bytes", p.len()));
    }
    let mut events = Vec::with_capacity(count);
    for _ in 0..count {
        let f = take(&mut at, EVENT_FIXED)?;
        let attrs_len = u32::from_le_bytes(f[21..25].try_into().expect("4")) as usize;
        events.push(WalEvent {
            ts_ms: i64::from_le_bytes(f[0..8].try_into().expect("8")),
            community: u32::from_le_bytes(f[8..12].try_into().expect("4")),
            device: u32::from_le_bytes(f[12..16].try_into().expect("4")),
            subject: u32::from_le_bytes(f[16..20].try_into().expect("4")),
            kd: f[20],
            attrs: take(&mut at, attrs_len)?.into(),
        });
    }
    if at != p.len() {
        return Err(format!("{} trailing bytes after the batch", p.len() - at));
    }
    Ok((first_seq, events))
}

fn file_name(first_seq: u64) -> String {
    format!("{first_seq:020}.wal")
}

/// The log's files and the active one.
pub(crate) struct Wal {
    io: Arc<dyn FileIo>,
    dir: PathBuf,
    /// (first sequence number, path), ascending; the last is active.
    files: Vec<(u64, PathBuf)>,
    active: Box<dyn WriteFile>,
    active_bytes: u64,
    max_file_bytes: u64,
    /// The sequence number after the last record written.
    end_seq: u64,
    /// An append failed: the active file may end in a partial record, which recovery
    /// drops only while it is the newest file, so no new file is started after it.
    failed: bool,
}

impl Wal {
    /// Replays every record in `dir`, oldest first, then opens the newest file for
    /// appending (a new file numbered `next_seq` is created when there is none). A torn
    /// tail of the newest file is truncated and returned.
    pub fn open(
        io: Arc<dyn FileIo>,
        dir: &Path,
        max_file_bytes: u64,
        mut replay: impl FnMut(&Path, u64, u64, Vec<WalEvent>) -> Result<()>,
        next_seq: impl FnOnce() -> u64,
    ) -> Result<(Wal, Option<TornTail>)> {
        crate::fsutil::create_dir_durable(&*io, dir)?;
        let mut files = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| StorageError::io(dir, e))? {
            let entry = entry.map_err(|e| StorageError::io(dir, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(stem) = name.strip_suffix(".wal") {
                let first = stem.parse::<u64>().map_err(|_| {
                    StorageError::corrupt(entry.path(), 0, "WAL file name is not a sequence number")
                })?;
                files.push((first, entry.path()));
            }
        }
        files.sort();
        let mut torn = None;
        let mut last_seq_seen: Option<u64> = None;
        for (i, (first, path)) in files.iter().enumerate() {
            let bytes = io.read(path).map_err(|e| StorageError::io(path, e))?;
            let newest = i + 1 == files.len();
            let outcome = read_records(&bytes, path, newest, |off, payload| {
                let (batch_first, events) =
                    decode_batch(payload).map_err(|r| StorageError::corrupt(path, off, r))?;
                if batch_first < *first || last_seq_seen.is_some_and(|l| batch_first <= l) {
                    return Err(StorageError::corrupt(
                        path,
                        off,
                        format!("batch sequence {batch_first} out of order"),
                    ));
                }
                if let Some(n) = events.len().checked_sub(1) {
                    last_seq_seen = Some(batch_first + n as u64);
                }
                replay(path, off, batch_first, events)
            })?;
            if let Some(t) = outcome.torn {
                crate::log_file::confirm_torn(&*io, path, &bytes, &t)?;
                io.truncate(path, outcome.end)
                    .map_err(|e| StorageError::io(path, e))?;
                tracing::warn!(path = %t.path.display(), offset = t.offset, dropped_bytes = t.dropped_bytes, "dropped torn WAL tail");
                torn = Some(t);
            }
        }
        if files.is_empty() {
            let first = next_seq();
            let path = dir.join(file_name(first));
            io.open(&path, OpenMode::Truncate)
                .map_err(|e| StorageError::io(&path, e))?;
            fsync_dir(&*io, dir)?;
            files.push((first, path));
        }
        let path = &files.last().expect("at least one file").1;
        let mut active = io
            .open(path, OpenMode::Append)
            .map_err(|e| StorageError::io(path, e))?;
        // Records a process that died before its fsync wrote (never acknowledged, but
        // replayed just now) may be only in the page cache: durable before anything
        // built from them is.
        active.sync_data().map_err(|e| StorageError::io(path, e))?;
        let active_bytes = active.size().map_err(|e| StorageError::io(path, e))?;
        let end_seq = last_seq_seen.map_or(files.last().expect("a file").0, |l| l + 1);
        Ok((
            Wal {
                io,
                dir: dir.to_path_buf(),
                files,
                active,
                active_bytes,
                max_file_bytes,
                end_seq,
                failed: false,
            },
            torn,
        ))
    }

    fn active_path(&self) -> &Path {
        &self.files.last().expect("at least one file").1
    }

    /// Appends framed records and makes them durable (fdatasync). When the active file
    /// has grown past its bound, the next file starts at `next_seq`. After an error the
    /// log must not be written again (the store refuses writes until reopened): what
    /// the failed call wrote may or may not be on disk, and recovery sorts it out.
    pub fn append_durable(&mut self, bytes: &[u8], next_seq: u64) -> Result<()> {
        if self.failed {
            return Err(StorageError::Poisoned(format!(
                "an earlier append to {} failed",
                self.active_path().display()
            )));
        }
        if let Err(e) = self
            .active
            .write_all(bytes)
            .and_then(|_| self.active.sync_data())
        {
            self.failed = true;
            return Err(StorageError::io(self.active_path(), e));
        }
        self.active_bytes += bytes.len() as u64;
        self.end_seq = self.end_seq.max(next_seq);
        if self.active_bytes >= self.max_file_bytes {
            self.start_file(next_seq)?;
        }
        Ok(())
    }

    /// Starts a new active file whose first sequence number is `first`.
    fn start_file(&mut self, first: u64) -> Result<()> {
        let path = self.dir.join(file_name(first));
        // The file may be there already, empty, from an attempt whose directory fsync
        // failed; it is reused then.
        let f = self
            .io
            .open(&path, OpenMode::AppendOrCreate)
            .map_err(|e| StorageError::io(&path, e))?;
        if f.size().map_err(|e| StorageError::io(&path, e))? != 0 {
            return Err(StorageError::corrupt(
                &path,
                0,
                "a new WAL file's name is taken by a file with data in it",
            ));
        }
        fsync_dir(&*self.io, &self.dir)?;
        self.active = f;
        self.active_bytes = 0;
        self.files.push((first, path));
        Ok(())
    }

    /// Deletes every file all of whose events have sequence numbers below
    /// `min_unsealed_seq`; when that is every event written, the active file too (an
    /// empty one replaces it). Returns how many were deleted.
    /// `before_remove` runs once before the first file is removed (not at all when
    /// none is): what must be durable before the events of those files are gone.
    pub fn checkpoint(
        &mut self,
        min_unsealed_seq: u64,
        before_remove: impl FnOnce() -> Result<()>,
    ) -> Result<usize> {
        if self.failed {
            // Keeping files is always safe (replay skips what is sealed); starting a new
            // one would turn a partial record at the end of this one into corruption.
            return Ok(0);
        }
        // Everything written is sealed: the active file is not needed either, so a new
        // (empty) one takes over and it goes with the rest.
        if self.active_bytes > 0 && self.end_seq <= min_unsealed_seq {
            self.start_file(self.end_seq)?;
        }
        let mut removed = 0;
        if self.files.len() > 1 && self.files[1].0 <= min_unsealed_seq {
            before_remove()?;
        }
        while self.files.len() > 1 && self.files[1].0 <= min_unsealed_seq {
            let (_, path) = self.files.remove(0);
            self.io
                .remove_file(&path)
                .map_err(|e| StorageError::io(&path, e))?;
            removed += 1;
        }
        if removed > 0 {
            fsync_dir(&*self.io, &self.dir)?;
        }
        Ok(removed)
    }

    pub fn file_count(&self) -> usize {
        self.files.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_round_trips_and_rejects_lies() {
        let key = ShardKey {
            community: 1,
            span: 7,
        };
        let row = |seq| StoredRow {
            seq,
            ts_ms: 1_630_454_400_123,
            device: 2,
            subject: 3,
            kd: 5,
            attrs: vec![1, 2, 3].into(),
            source_id: None,
        };
        let e = WalEvent {
            ts_ms: 1_630_454_400_123,
            community: 1,
            device: 2,
            subject: 3,
            kd: 5,
            attrs: vec![1, 2, 3].into(),
        };
        let mut out = Vec::new();
        encode_batch(42, &[(key, row(42)), (key, row(43))], &mut out);
        let (first, events) = decode_batch(&out[8..]).unwrap();
        assert_eq!(first, 42);
        assert_eq!(events, vec![e.clone(), e]);
        assert!(decode_batch(&out[8..out.len() - 1]).is_err());
        let mut lying = out[8..].to_vec();
        lying[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_batch(&lying).is_err());
    }
}
