//! Sealing, compaction, retention and WAL checkpoints.
//!
//! Seal: freeze a shard's memory rows (still readable), write them as a segment beside
//! the others (temp file, fsync, rename, fsync dir), record it in the manifest, swap it
//! in, then checkpoint the WAL. A crash at any step leaves either the old state (the
//! file is an orphan, removed by the first maintenance pass after the next open; the
//! WAL still has the events) or the new one.

use std::sync::Arc;

use crate::catalog::{SegmentEntry, ShardState};
use crate::error::{Result, StorageError};
use crate::fsutil::write_atomic;
use crate::memtable::{MemRows, StoredRow};
use crate::segment::{write_segment, MemSorted, MergedSegments, Segment, SortedRows};
use crate::shard::ShardKey;

use super::observe::{AppendObserver, DroppedShard, SubjectSummary};
use super::sealed::facts_of;
use super::{lock, read, write, SealedSegment, Store};

/// A dropped shard's events by subject, as they are gathered.
#[derive(Default)]
struct Summary(std::collections::HashMap<u32, SubjectSummary>);

impl Summary {
    fn add(&mut self, subject: u32, ts_ms: i64) {
        let s = self.0.entry(subject).or_insert(SubjectSummary {
            subject,
            count: 0,
            first_ms: i64::MAX,
            last_ms: i64::MIN,
        });
        s.count += 1;
        s.first_ms = s.first_ms.min(ts_ms);
        s.last_ms = s.last_ms.max(ts_ms);
    }

    fn into_dropped(self, key: ShardKey) -> DroppedShard {
        let mut subjects: Vec<SubjectSummary> = self.0.into_values().collect();
        subjects.sort_unstable_by_key(|s| s.subject);
        DroppedShard { key, subjects }
    }
}

/// What one [`Store::maintain`] pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    pub sealed: Vec<ShardKey>,
    pub compacted: Vec<ShardKey>,
    pub dropped: Vec<ShardKey>,
    /// Shards whose compaction failed this pass (a segment that cannot be read, the
    /// old files not removed …), with the error: the pass went on with the others and
    /// retention, and the next pass tries them again.
    pub compaction_failed: Vec<(ShardKey, String)>,
}

/// A closed shard's segments are merged once there are [`MAX_SEGMENTS`] of them, or
/// once the smaller ones together reach a quarter of the largest. Late events thus
/// collect in a few small deltas instead of rewriting the whole shard at every
/// maintenance pass: each event is rewritten O(log n) times, not O(n).
fn compaction_due(segments: &[Arc<SealedSegment>]) -> bool {
    if segments.len() < 2 {
        return false;
    }
    let sizes = segments.iter().map(|s| u64::from(s.events()));
    let largest = sizes.clone().max().unwrap_or(0);
    let rest: u64 = sizes.sum::<u64>() - largest;
    segments.len() >= MAX_SEGMENTS || rest * 4 >= largest
}

/// Most segments a closed shard keeps before they are merged regardless of size.
pub const MAX_SEGMENTS: usize = 8;

impl Store {
    /// Seals what is due, compacts shards whose span is over (when
    /// [`compaction_due`]), applies retention. The first pass after open also removes
    /// segment files the manifest does not list ([`Store::remove_orphans`]); if that
    /// fails it is logged and tried again by the next pass (an orphan is never read,
    /// so it must not hold up sealing).
    pub fn maintain(&self) -> Result<MaintenanceReport> {
        if let Err(e) = self.remove_orphans() {
            tracing::warn!(error = %e, "orphan files not removed; the next maintenance pass tries again");
        }
        let sealed = self.seal_due()?;
        let now = self.inner.clock.now_ms();
        let closed: Vec<ShardKey> = read(&self.inner.shards)
            .iter()
            .filter(|(k, s)| compaction_due(&s.segments) && self.span_closed(**k, now))
            .map(|(k, _)| *k)
            .collect();
        let mut compacted = Vec::new();
        let mut compaction_failed = Vec::new();
        for key in closed {
            // One shard whose segment cannot be read (damaged, missing) must not stop
            // the compaction of the others and retention: it is reported (the error
            // names the file) and tried again by the next pass.
            match self.compact_shard(key) {
                Ok(true) => compacted.push(key),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(
                        error = %e,
                        community = key.community,
                        span = key.span,
                        "shard not compacted; the next maintenance pass tries again"
                    );
                    compaction_failed.push((key, e.to_string()));
                }
            }
        }
        let dropped = self.apply_retention()?;
        Ok(MaintenanceReport {
            sealed,
            compacted,
            dropped,
            compaction_failed,
        })
    }

    /// Removes the files under `segments/` that the manifest does not list (left by a
    /// crash between writing a segment and committing it, or between committing a
    /// compaction or a retention drop and unlinking the old files), once per open:
    /// later calls return at once. It holds the maintenance lock, which every seal,
    /// compaction and retention run holds while it writes or removes segment files,
    /// so it never takes a file being written for an orphan. Opening does not call
    /// it (opening reads nothing per segment); the first [`Store::maintain`] does. What
    /// it removed is in [`crate::RecoveryReport::orphan_files_removed`].
    pub fn remove_orphans(&self) -> Result<()> {
        use std::sync::atomic::Ordering;
        let inner = &*self.inner;
        if inner.orphans_checked.load(Ordering::Acquire) {
            return Ok(());
        }
        let _maintenance = lock(&inner.maintenance);
        if inner.orphans_checked.load(Ordering::Acquire) {
            return Ok(());
        }
        let started = std::time::Instant::now();
        // The segments listed now, in memory and in the durable manifest (they change
        // only under the maintenance lock, held): a commit whose flush failed after
        // its transaction applied lists a segment the memory does not, and its file
        // must stay.
        let mut referenced: std::collections::HashSet<std::path::PathBuf> = read(&inner.shards)
            .values()
            .flat_map(|s| s.segments.iter().map(|g| g.path().to_path_buf()))
            .collect();
        for state in inner.catalog.manifest()?.shards.values() {
            referenced.extend(state.segments.iter().map(|e| inner.dir.join(&e.file)));
        }
        let removed =
            super::remove_orphans(&*inner.config.io, &inner.dir.join("segments"), &referenced)?;
        tracing::debug!(
            removed = removed.len(),
            listed = referenced.len(),
            ms = started.elapsed().as_secs_f64() * 1e3,
            "orphan files looked for"
        );
        lock(&inner.recovery).orphan_files_removed = removed;
        inner.orphans_checked.store(true, Ordering::Release);
        Ok(())
    }

    fn span_closed(&self, key: ShardKey, now_ms: i64) -> bool {
        self.inner
            .layout
            .end_ms(key.span)
            .saturating_add(self.inner.config.seal_grace_ms)
            <= now_ms
    }

    /// Seals every shard whose span ended more than the grace period ago, or whose
    /// memory part outgrew `memtable_max_events`, then the largest memory parts while
    /// they exceed the memory budget. Returns the shards sealed.
    pub fn seal_due(&self) -> Result<Vec<ShardKey>> {
        let now = self.inner.clock.now_ms();
        let max = self.inner.config.memtable_max_events;
        let due: Vec<ShardKey> = read(&self.inner.shards)
            .iter()
            .filter(|(k, s)| {
                !s.mem.is_empty() && (self.span_closed(**k, now) || s.mem.len() >= max)
            })
            .map(|(k, _)| *k)
            .collect();
        let mut sealed = Vec::new();
        for key in due {
            if self.seal_shard(key)? {
                sealed.push(key);
            }
        }
        sealed.extend(self.enforce_memory_budget(true)?);
        Ok(sealed)
    }

    /// While the memory parts together exceed `memory_budget_bytes`, seals the
    /// largest. With `wait` false (an append that crossed the budget) it does nothing
    /// when another thread holds the maintenance lock: that thread is sealing already.
    pub(crate) fn enforce_memory_budget(&self, wait: bool) -> Result<Vec<ShardKey>> {
        let inner = &*self.inner;
        let budget = inner.config.memory_budget_bytes;
        let mut sealed = Vec::new();
        if self.memory_part_bytes() <= budget {
            return Ok(sealed);
        }
        let mut next_id = if wait {
            lock(&inner.maintenance)
        } else {
            match inner.maintenance.try_lock() {
                Ok(g) => g,
                Err(std::sync::TryLockError::WouldBlock) => return Ok(sealed),
                Err(std::sync::TryLockError::Poisoned(_)) => {
                    panic!("store lock poisoned by a panicked thread")
                }
            }
        };
        while self.memory_part_bytes() > budget {
            let largest = read(&inner.shards)
                .iter()
                .filter(|(_, s)| !s.mem.is_empty())
                .max_by_key(|(_, s)| s.mem.bytes())
                .map(|(k, s)| (*k, s.mem.bytes()));
            let Some((key, bytes)) = largest else { break };
            tracing::info!(
                community = key.community,
                span = key.span,
                bytes,
                total = self.memory_part_bytes(),
                budget,
                "memory parts over budget: sealing the largest early"
            );
            if !self.seal_shard_locked(&mut next_id, key)? {
                break;
            }
            inner
                .budget_seals
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            sealed.push(key);
        }
        Ok(sealed)
    }

    /// Seals the in-memory events of `key` into a new segment (the shard's first, or a
    /// delta beside earlier ones). Returns false if there was nothing to seal.
    pub fn seal_shard(&self, key: ShardKey) -> Result<bool> {
        let mut next_id = lock(&self.inner.maintenance);
        self.seal_shard_locked(&mut next_id, key)
    }

    /// [`Store::seal_shard`] with the maintenance lock (`next_id`) held.
    fn seal_shard_locked(&self, next_id: &mut u64, key: ShardKey) -> Result<bool> {
        let inner = &*self.inner;
        let frozen = {
            let mut shards = write(&inner.shards);
            let Some(shard) = shards.get_mut(&key) else {
                return Ok(false);
            };
            if shard.mem.is_empty() {
                return Ok(false);
            }
            // The whole memory part moves (rows and postings), nothing is copied.
            let rows = Arc::new(std::mem::take(&mut shard.mem));
            shard.frozen = Some(rows.clone());
            rows
        };
        let sealed_through = frozen.last().expect("non-empty").seq;
        // Written through a sorted permutation of the frozen rows.
        let sorted = MemSorted::new(&frozen);
        match self.write_segment(key, next_id, &sorted, sealed_through, &[]) {
            Ok(()) => {}
            Err(e) => {
                // Put the rows back in front of anything appended meanwhile.
                let mut shards = write(&inner.shards);
                let shard = shards.entry(key).or_default();
                let mut rows: Vec<StoredRow> = frozen.rows().cloned().collect();
                rows.extend(shard.mem.take());
                shard.mem = MemRows::from_rows(rows);
                shard.frozen = None;
                return Err(e);
            }
        }
        inner
            .memory_bytes
            .fetch_sub(frozen.bytes() as u64, std::sync::atomic::Ordering::Relaxed);
        self.forget_source_ids(key, sealed_through);
        self.checkpoint_wal()?;
        tracing::info!(
            community = key.community,
            span = key.span,
            events = frozen.len(),
            "sealed shard"
        );
        Ok(true)
    }

    /// Writes `rows` as a segment of `key` (streamed to its file), records it in the
    /// manifest (replacing the segments with ids in `replaces`) and swaps it in.
    fn write_segment(
        &self,
        key: ShardKey,
        next_id: &mut u64,
        rows: &dyn SortedRows,
        sealed_through: u64,
        replaces: &[u64],
    ) -> Result<()> {
        let inner = &*self.inner;
        let id = *next_id;
        let rel = format!("segments/{}/{}-{}.seg", key.span, key.community, id);
        let path = inner.dir.join(&rel);
        let io = &*inner.config.io;
        let start_ms = inner.layout.start_ms(key.span);
        write_atomic(io, &path, |out| {
            write_segment(key.community, key.span, start_ms, rows, out)
        })?;
        let seg = Arc::new(Segment::open_with(io, &path)?);
        // Read back whole, as written: a segment is never trusted before every byte
        // of it verified once.
        seg.verify()?;
        let sealed = Arc::new(SealedSegment::opened(
            key,
            id,
            seg.clone(),
            &inner.config.io,
        )?);
        let mut state = read(&inner.shards)
            .get(&key)
            .map(|s| s.state.clone())
            .unwrap_or_default();
        state.segments.retain(|e| !replaces.contains(&e.id));
        state.segments.push(SegmentEntry {
            id,
            file: rel,
            events: seg.meta().events,
            facts: Some(facts_of(&seg)),
        });
        state.sealed_through_seq = state.sealed_through_seq.max(sealed_through);
        inner.catalog.commit_shard(key, &state, id + 1)?;
        *next_id = id + 1;
        let mut shards = write(&inner.shards);
        let shard = shards.entry(key).or_default();
        shard.segments.retain(|s| !replaces.contains(&s.id()));
        shard.segments.push(sealed);
        shard.frozen = None;
        shard.state = state;
        Ok(())
    }

    /// Merges all segments of `key` into one, streaming: rows go from the old segments'
    /// maps to the new file in one k-way merge, never all in memory. Returns false if
    /// it had fewer than two.
    pub fn compact_shard(&self, key: ShardKey) -> Result<bool> {
        let inner = &*self.inner;
        let mut next_id = lock(&inner.maintenance);
        let listed = read(&inner.shards)
            .get(&key)
            .map(|s| s.segments.clone())
            .unwrap_or_default();
        if listed.len() < 2 {
            return Ok(false);
        }
        // Opened through the handles readers share, so a reader holding one keeps the
        // mapping after the files are removed below.
        let old: Vec<Arc<Segment>> = listed.iter().map(|s| s.open()).collect::<Result<_>>()?;
        // Damage in an input must not be copied into the new file under fresh checksums.
        for seg in &old {
            seg.verify()?;
        }
        let merged = MergedSegments::new(&old);
        let replaces: Vec<u64> = listed.iter().map(|s| s.id()).collect();
        let sealed_through = read(&inner.shards)
            .get(&key)
            .map_or(0, |s| s.state.sealed_through_seq);
        self.write_segment(key, &mut next_id, &merged, sealed_through, &replaces)?;
        for seg in &listed {
            // Readers holding the old mapping keep reading it; unlinking is safe (a
            // fetched segment leaves the cache).
            seg.remove_file()
                .map_err(|e| crate::StorageError::io(seg.path(), e))?;
        }
        tracing::info!(
            community = key.community,
            span = key.span,
            merged = old.len(),
            "compacted shard"
        );
        Ok(true)
    }

    /// Drops whole shards whose span ended more than `retention_days` ago, sealed or
    /// not, then tells the observers what went ([`AppendObserver::dropped`]), so the
    /// indexes above subtract it before this returns. Returns the shards dropped.
    pub fn apply_retention(&self) -> Result<Vec<ShardKey>> {
        match self.retention_days() {
            Some(days) => self.drop_expired(days, &[]),
            None => Ok(Vec::new()),
        }
    }

    /// Drops whole shards whose span ended more than `days` ago, except those in
    /// `keep`, as [`Store::apply_retention`] does, without the store's policy being
    /// read or changed (appends keep accepting old events): retention applied from
    /// elsewhere, as a cluster's. Returns the shards dropped.
    pub fn drop_expired(&self, days: u32, keep: &[ShardKey]) -> Result<Vec<ShardKey>> {
        let inner = &*self.inner;
        let next_id = lock(&inner.maintenance);
        let horizon = inner
            .clock
            .now_ms()
            .saturating_sub(days as i64 * 86_400_000);
        let expired: Vec<ShardKey> = read(&inner.shards)
            .iter()
            .filter(|(k, s)| {
                inner.layout.end_ms(k.span) <= horizon
                    && (!s.segments.is_empty() || !s.mem.is_empty())
                    && !keep.contains(k)
            })
            .map(|(k, _)| *k)
            .collect();
        let observers: Vec<Arc<dyn AppendObserver>> = lock(&inner.observers).clone();
        let mut summaries = Vec::new();
        let mut dropped = Vec::with_capacity(expired.len());
        // A catalog failure stops the pass; the shards dropped before it are still
        // told to the observers (below), so the indexes never count what is gone.
        let mut failed = None;
        for &key in &expired {
            let (state, segments) = {
                let shards = read(&inner.shards);
                let s = &shards[&key];
                let last_mem = s.mem.last().map_or(0, |r| r.seq);
                let state = ShardState {
                    segments: Vec::new(),
                    sealed_through_seq: s.state.sealed_through_seq.max(last_mem),
                };
                (state, s.segments.clone())
            };
            // What the observers counted of this shard: its segments' rows (they
            // change only under the maintenance lock, held) and, below, the memory
            // rows dropped with them, summarised as they go.
            let mut summary = Summary::default();
            if !observers.is_empty() {
                let read = segments.iter().try_for_each(|seg| {
                    let seg = seg.open()?;
                    seg.verify_rows()?;
                    seg.for_each_in_seq_range(0, u64::MAX, |_, r| summary.add(r.subject, r.ts_ms));
                    Ok::<(), crate::StorageError>(())
                });
                if let Err(e) = read {
                    // Its events cannot be told to the indexes: the shard is kept (and
                    // logged, naming the file) until it can be read; the others go.
                    tracing::error!(
                        error = %e,
                        community = key.community,
                        span = key.span,
                        "expired shard not dropped: a segment cannot be read"
                    );
                    continue;
                }
            }
            if let Err(e) = inner.catalog.commit_shard(key, &state, *next_id) {
                failed = Some(e);
                break;
            }
            dropped.push(key);
            {
                let mut shards = write(&inner.shards);
                let s = shards.entry(key).or_default();
                s.segments.clear();
                if !observers.is_empty() {
                    for r in s.mem.rows().filter(|r| r.seq <= state.sealed_through_seq) {
                        summary.add(r.subject, r.ts_ms);
                    }
                }
                let before = s.mem.bytes();
                s.mem.retain(|r| r.seq > state.sealed_through_seq);
                inner.memory_bytes.fetch_sub(
                    (before - s.mem.bytes()) as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
                s.state = state.clone();
            }
            summaries.push(summary.into_dropped(key));
            self.forget_source_ids(key, state.sealed_through_seq);
            for seg in &segments {
                // A reader that took this handle before the drop keeps reading the
                // mapping once the file is gone. A file that cannot be opened is
                // removed all the same; such a reader gets the error it would have.
                seg.keep_for_readers();
                let f = seg.path();
                if let Err(e) = seg.remove_file() {
                    // Dropped from the manifest: the file is an orphan now, removed
                    // by the first maintenance pass after the next open.
                    tracing::warn!(error = %e, path = %f.display(), "a dropped segment's file not removed");
                }
            }
            let code = self
                .dictionaries()
                .community(key.community)
                .map(str::to_string);
            if let Some(code) = code {
                if let Err(e) = self.inner.pictures.drop_shard(&code, key.span) {
                    tracing::error!(error = %e, community = %code, span = key.span, "a dropped shard's pictures not removed");
                }
            }
            tracing::info!(
                community = key.community,
                span = key.span,
                "dropped shard by retention"
            );
        }
        if !summaries.is_empty() {
            for o in &observers {
                o.dropped(self, &summaries);
            }
        }
        drop(next_id);
        if !dropped.is_empty() {
            self.checkpoint_wal()?;
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(dropped),
        }
    }

    /// Source ids of events up to `through` are now found in segments (or dropped).
    fn forget_source_ids(&self, key: ShardKey, through: u64) {
        let mut w = lock(&self.inner.writer);
        if let Some(m) = w.source_ids.get_mut(&key) {
            m.retain(|_, seq| *seq > through);
            if m.is_empty() {
                w.source_ids.remove(&key);
            }
        }
    }

    /// Deletes WAL files whose events are all sealed. Events being flushed right now
    /// are not in memory yet but have sequence numbers past `durable_through`, which is
    /// read first, so they are never counted as sealed.
    pub(crate) fn checkpoint_wal(&self) -> Result<()> {
        let in_flight = lock(&self.inner.writer).durable_through + 1;
        let min = self
            .min_unsealed_seq()
            .map_or(in_flight, |m| m.min(in_flight));
        let removed = {
            let mut logs = lock(&self.inner.logs);
            let super::Logs { wal, dict } = &mut *logs;
            let catalog = &*self.inner.catalog;
            // The dictionary's counts are recorded before the events of the files
            // removed are gone: they use ids below them (storage/FORMAT.md).
            wal.checkpoint(min, || {
                if let Some(c) = dict.counts_to_record() {
                    crate::dict::record_counts(catalog, c)?;
                    dict.counts_recorded(c);
                }
                Ok(())
            })?
        };
        if removed > 0 {
            tracing::debug!(removed, min_unsealed_seq = min, "WAL checkpoint");
        }
        // The dictionary snapshot is derived data: failing to write one costs only
        // a slower next open, never a write. Except when writing it found the
        // dictionaries lost (a damaged snapshot chunk and the log's prefix damaged
        // too: `Corrupt` naming dict.log): opening refuses the store then.
        match self.inner.write_dict_snapshot(false) {
            Ok(_) => {}
            Err(e @ StorageError::Corrupt { .. }) => return Err(e),
            Err(e) => tracing::warn!(error = %e, "dictionary snapshot not written"),
        }
        Ok(())
    }

    /// Writes the dictionary snapshot (`dict.snap`) covering the whole durable
    /// dictionary log, if it has grown since the last one; whether one was written.
    /// Maintenance writes it when the log has grown enough, and a clean close always.
    pub fn write_dict_snapshot(&self) -> Result<bool> {
        self.inner.write_dict_snapshot(true)
    }
}

impl super::Inner {
    /// See [`Store::write_dict_snapshot`]; `clean_close` writes it for any growth.
    pub(crate) fn write_dict_snapshot(&self, clean_close: bool) -> Result<bool> {
        if self.failed.get().is_some() {
            // The log's state after a failed write is not known: reopening decides.
            return Ok(false);
        }
        // A snapshot a read found damaged is written again whatever the growth.
        let damaged = read(&self.dicts).snapshot_rewrite_due();
        let (log_path, len, counts) = {
            let logs = lock(&self.logs);
            if !damaged && !logs.dict.snapshot_due(clean_close) {
                return Ok(false);
            }
            let (len, counts) = logs.dict.durable();
            (logs.dict.path().to_path_buf(), len, counts)
        };
        // Entries below the durable counts never change; the read lock only keeps
        // the tables still while they are copied.
        let started = std::time::Instant::now();
        let bytes = {
            let dicts = read(&self.dicts);
            crate::dict::encode_snapshot(&*self.config.io, &log_path, &dicts, len, counts)?
        };
        let built_ms = started.elapsed().as_secs_f64() * 1e3;
        let path = self.dir.join(crate::dict::SNAPSHOT_FILE);
        write_atomic(&*self.config.io, &path, |out| {
            use crate::fsutil::Out;
            out.put(&bytes)
        })?;
        lock(&self.logs).dict.snapshot_written(len);
        // Damage found before or while this one was encoded is repaired now (the
        // file written is built anew from every entry): no second rewrite for it.
        if damaged || read(&self.dicts).snapshot_damage().is_some() {
            read(&self.dicts).snapshot_rewritten();
        }
        tracing::debug!(
            log_bytes = len,
            snapshot_bytes = bytes.len(),
            built_ms,
            total_ms = started.elapsed().as_secs_f64() * 1e3,
            "dictionary snapshot written"
        );
        Ok(true)
    }
}

impl Drop for super::Inner {
    /// A clean close leaves a snapshot covering the whole dictionary log, so the next
    /// open applies none of it record by record.
    fn drop(&mut self) {
        if let Err(e) = self.write_dict_snapshot(true) {
            tracing::warn!(error = %e, "dictionary snapshot not written at close");
        }
    }
}
