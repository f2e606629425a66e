//! Building a store from files kept elsewhere, and handing out what a copy needs.
//!
//! A cluster indexer (`server/cluster`) keeps a store as a cache of a partition whose
//! truth is sealed segments and dictionary-log increments on object storage. It needs
//! three things of the engine, and only these:
//!
//! * [`Store::seal_all`]: every memory part sealed now, so everything appended so far
//!   is in segment files;
//! * [`Store::dictionary_log_from`]: the dictionary log's bytes past an offset (whole
//!   records: the log is read under the lock its appends take);
//! * [`Restore`]: a fresh store directory made from a dictionary log and segment files,
//!   which [`Store::open`] then opens as if it had sealed them itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::catalog::{Catalog, SegmentEntry, ShardState, SledCatalog};
use crate::config::StoreConfig;
use crate::error::{Result, StorageError};
use crate::fsutil::{create_dir_durable, write_atomic, Out};
use crate::io::FileIo;
use crate::segment::Segment;
use crate::shard::ShardKey;

use super::{lock, read, Store};

/// The dictionary log's file name in a store directory.
const DICT_LOG: &str = "dict.log";

impl Store {
    /// Seals every non-empty memory part now, whatever its day or size. Returns the
    /// shards sealed. Afterwards every event appended before the call is in a segment
    /// listed in the manifest (`catalog().manifest()`).
    pub fn seal_all(&self) -> Result<Vec<ShardKey>> {
        let due: Vec<ShardKey> = read(&self.inner.shards)
            .iter()
            .filter(|(_, s)| !s.mem.is_empty())
            .map(|(k, _)| *k)
            .collect();
        let mut sealed = Vec::new();
        for key in due {
            if self.seal_shard(key)? {
                sealed.push(key);
            }
        }
        Ok(sealed)
    }

    /// The dictionary log's bytes from `offset` to its end: whole framed records
    /// (`storage/FORMAT.md`, "Dictionary log payload"), since appends hold the same
    /// lock. Concatenated in order from offset 0, the pieces are the log.
    pub fn dictionary_log_from(&self, offset: u64) -> Result<Vec<u8>> {
        let path = self.inner.dir.join(DICT_LOG);
        let _logs = lock(&self.inner.logs);
        let io = &*self.inner.config.io;
        let len = std::fs::metadata(&path)
            .map_err(|e| StorageError::io(&path, e))?
            .len();
        if offset > len {
            return Err(StorageError::corrupt(
                &path,
                offset,
                format!("asked from {offset}, the log has {len} bytes"),
            ));
        }
        let n = usize::try_from(len - offset).expect("a dictionary log fits in memory");
        io.read_at(&path, offset, n)
            .map_err(|e| StorageError::io(&path, e))
    }
}

/// A store directory being made from a dictionary log and segment files (a cluster
/// partition restored from object storage). [`Restore::new`] writes the dictionary
/// log, [`Restore::add_segment`] each segment (verified whole before it is kept),
/// [`Restore::finish`] the manifest; then [`Store::open`] opens the directory. Segment
/// files keep their names and ids, so their sequence numbers (and event ids) are those
/// of the store that sealed them; the reopened store continues after the largest.
pub struct Restore {
    dir: PathBuf,
    io: Arc<dyn FileIo>,
    shards: BTreeMap<ShardKey, ShardState>,
    next_segment_id: u64,
}

impl Restore {
    /// Starts a store in `dir`, which must not hold one, with `dict_log` (a whole
    /// dictionary log, checked record by record) as its dictionary log.
    pub fn new(dir: &Path, config: &StoreConfig, dict_log: &[u8]) -> Result<Restore> {
        let io = config.io.clone();
        if dir.join("catalog").exists() || dir.join(DICT_LOG).exists() {
            return Err(StorageError::corrupt(
                dir,
                0,
                "a store is there already: a restore needs an empty directory",
            ));
        }
        create_dir_durable(&*io, dir)?;
        let path = dir.join(DICT_LOG);
        // Checked whole: a restore has no torn tail to forgive.
        let mut dicts = crate::dict::Dictionaries::default();
        crate::log_file::read_records(dict_log, &path, false, |off, payload| {
            dicts.apply(payload, &path, off)
        })?;
        write_atomic(&*io, &path, |out| out.put(dict_log))?;
        Ok(Restore {
            dir: dir.to_path_buf(),
            io,
            shards: BTreeMap::new(),
            next_segment_id: 1,
        })
    }

    /// Adds one segment of `key`: `entry.file` (relative, as the sealing store's
    /// manifest named it) gets `bytes`, which must open as a segment of `key` with
    /// `entry.events` events (and `entry.facts`, when given). The manifest gets the
    /// file's facts, so the restored store opens without reading it.
    pub fn add_segment(
        &mut self,
        key: ShardKey,
        mut entry: SegmentEntry,
        bytes: &[u8],
    ) -> Result<()> {
        self.check_name(&entry.file)?;
        let path = self.dir.join(&entry.file);
        write_atomic(&*self.io, &path, |out| out.put(bytes))?;
        let seg = Segment::open_with(&*self.io, &path)?;
        seg.verify()?;
        super::sealed::check_entry(&seg, key, &entry)?;
        entry.facts = Some(super::sealed::facts_of(&seg));
        let meta = seg.meta();
        let state = self.shards.entry(key).or_default();
        state.sealed_through_seq = state.sealed_through_seq.max(meta.max_seq);
        self.next_segment_id = self.next_segment_id.max(entry.id + 1);
        state.segments.push(entry);
        Ok(())
    }

    /// Adds one segment of `key` without its file: the manifest lists `entry` with its
    /// facts (which it must have: they are what opening needs of a segment it does
    /// not read), and the store opened with a [`crate::SegmentSource`] holding
    /// `entry.file` fetches the file on its first use, verifies it whole and checks it
    /// against these facts (`storage/src/segment_cache.rs`).
    pub fn add_remote_segment(&mut self, key: ShardKey, entry: SegmentEntry) -> Result<()> {
        self.check_name(&entry.file)?;
        let Some(facts) = entry.facts else {
            return Err(StorageError::corrupt(
                self.dir.join(&entry.file),
                0,
                "a segment restored without its file needs its facts",
            ));
        };
        if entry.events == 0 || facts.min_seq > facts.max_seq || facts.min_ts_ms > facts.max_ts_ms {
            return Err(StorageError::corrupt(
                self.dir.join(&entry.file),
                0,
                format!("impossible facts for {} events: {facts:?}", entry.events),
            ));
        }
        let state = self.shards.entry(key).or_default();
        state.sealed_through_seq = state.sealed_through_seq.max(facts.max_seq);
        self.next_segment_id = self.next_segment_id.max(entry.id + 1);
        state.segments.push(entry);
        Ok(())
    }

    fn check_name(&self, file: &str) -> Result<()> {
        let rel = Path::new(file);
        if rel.is_absolute() || rel.components().any(|c| c.as_os_str() == "..") {
            return Err(StorageError::corrupt(
                &self.dir,
                0,
                format!("segment file name {file:?} leaves the store"),
            ));
        }
        Ok(())
    }

    /// Writes the manifest: every added segment (a shard's by id), each shard sealed
    /// through its segments' largest sequence number.
    pub fn finish(mut self) -> Result<()> {
        let catalog = SledCatalog::open(&self.dir.join("catalog"))?;
        for state in self.shards.values_mut() {
            // A shard's segments in the order its store made them (ids rise with
            // every seal and merge), whichever way they were added.
            state.segments.sort_by_key(|e| e.id);
        }
        for (key, state) in &self.shards {
            catalog.commit_shard(*key, state, self.next_segment_id)?;
        }
        Ok(())
    }
}
