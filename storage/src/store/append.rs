//! The write path: validate bounds, deduplicate by source id, intern strings, log with
//! group commit, then make the events readable.
//!
//! Group commit: each `append` encodes its batch into the shared pending buffers under
//! the writer lock and waits. Whoever finds no flush in progress becomes the leader:
//! it takes everything pending, writes and fsyncs the dictionary log and the WAL with
//! the lock released, applies the events to the shards' memory, marks them durable and
//! wakes the others. One fsync covers every batch that queued meanwhile.

use crate::error::{Result, StorageError};
use crate::event::{Event, ValidationError};
use crate::memtable::StoredRow;
use crate::row::{kd_pack, Row};
use crate::shard::ShardKey;
use crate::wal::encode_batch;
use std::sync::atomic::Ordering;

use super::sealed::SealedSegment;
use super::{lock, read, write, Store};

/// What happened to one event of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Appended {
    /// Durably stored with this sequence number (the event's id).
    Stored { seq: u64 },
    /// Its `source_id` was already stored in the same shard, as event `seq`; acknowledged,
    /// not stored again.
    Duplicate { seq: u64 },
    /// Refused; the rest of the batch is unaffected.
    Rejected(ValidationError),
}

/// One [`Appended`] per input event, in input order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    pub results: Vec<Appended>,
}

impl AppendOutcome {
    pub fn stored(&self) -> usize {
        self.results
            .iter()
            .filter(|r| matches!(r, Appended::Stored { .. }))
            .count()
    }
    pub fn duplicates(&self) -> usize {
        self.results
            .iter()
            .filter(|r| matches!(r, Appended::Duplicate { .. }))
            .count()
    }
    pub fn rejected(&self) -> impl Iterator<Item = (usize, &ValidationError)> {
        self.results
            .iter()
            .enumerate()
            .filter_map(|(i, r)| match r {
                Appended::Rejected(e) => Some((i, e)),
                _ => None,
            })
    }
}

/// What is queued for the next group commit.
#[derive(Default)]
pub(crate) struct Pending {
    pub wal: Vec<u8>,
    pub dict: Vec<u8>,
    pub rows: Vec<(ShardKey, StoredRow)>,
    pub last_seq: u64,
    /// Subject dictionary entries once `dict` is durable.
    pub subjects: usize,
}

impl Store {
    /// Appends a batch and returns once every stored event is durable (fsynced). Each
    /// event is stored, recognised as a duplicate of a stored `source_id`, or rejected
    /// (timestamp out of bounds now, or older than retention); the others are unaffected.
    /// An I/O failure fails the whole call and every call after it until the store is
    /// reopened: nothing is acknowledged that might not be durable.
    pub fn append(&self, events: &[Event]) -> Result<AppendOutcome> {
        let now = self.inner.clock.now_ms();
        self.append_checked(events, |_| now)
    }

    /// [`Store::append`] with the bounds of event `i` (future timestamps, retention
    /// horizon) checked against `now_ms[i]` instead of this store's clock: appending
    /// the same events with the same times stores and rejects the same ones whenever
    /// and wherever it runs (a log replayed by several stores, each message at the time
    /// it was logged, numbers its events alike). `now_ms` must have one time per event.
    pub fn append_at(&self, events: &[Event], now_ms: &[i64]) -> Result<AppendOutcome> {
        if now_ms.len() != events.len() {
            return Err(StorageError::Setting {
                what: "append_at times",
                reason: format!("{} times for {} events", now_ms.len(), events.len()),
            });
        }
        self.append_checked(events, |i| now_ms[i])
    }

    fn append_checked(
        &self,
        events: &[Event],
        now_of: impl Fn(usize) -> i64,
    ) -> Result<AppendOutcome> {
        let inner = &*self.inner;
        if events.len() > inner.config.max_batch_events {
            return Err(StorageError::Limit {
                what: "events in one append",
                actual: events.len() as u64,
                max: inner.config.max_batch_events as u64,
            });
        }
        let retention = self.retention_days();
        // Encoding attributes needs no lock.
        // Attributes were encoded by validation, in the form the memory part keeps.
        let attrs: Vec<std::sync::Arc<[u8]>> = events.iter().map(|e| e.attrs.clone()).collect();

        let mut results = Vec::with_capacity(events.len());
        let mut rows: Vec<(ShardKey, StoredRow)> = Vec::with_capacity(events.len());
        // The sealed segments the duplicate check reads, opened (fetched, for a lazily
        // restored store) before the locks are taken: other appends and the group
        // commit never wait on object storage. Checked again under the writer lock;
        // one that appeared or was evicted meanwhile is fetched outside again (a few
        // times, then under the lock).
        let mut opened = Opened::new();
        let mut w = {
            let mut attempts = 0;
            loop {
                self.open_for_duplicates(events, &mut opened)?;
                let w = lock(&inner.writer);
                attempts += 1;
                if self.duplicates_ready(events, &mut opened) || attempts >= REFETCH_ATTEMPTS {
                    break w;
                }
            }
        };
        if let Some(why) = inner.failed.get() {
            return Err(StorageError::Poisoned(why.clone()));
        }
        let first_seq = w.next_seq;
        // A sealed segment that cannot be read for a duplicate check fails the append
        // before anything of it is stored.
        let mut failure = None;
        {
            let mut dicts = write(&inner.dicts);
            let mut dict_log = std::mem::take(&mut w.pending.dict);
            for (i, (e, attrs)) in events.iter().zip(attrs).enumerate() {
                let now = now_of(i);
                let horizon = retention.map(|d| now.saturating_sub(d as i64 * 86_400_000));
                if let Err(v) = inner.config.validator.check_ts(e.ts_ms, now) {
                    results.push(Appended::Rejected(v));
                    continue;
                }
                if horizon.is_some_and(|h| e.ts_ms < h) {
                    results.push(Appended::Rejected(ValidationError::new(
                        "ts",
                        format!(
                            "{} is older than the retention of {} days",
                            e.ts_ms,
                            retention.unwrap_or(0)
                        ),
                    )));
                    continue;
                }
                let community = dicts.intern_community(&e.community, &mut dict_log);
                let key = ShardKey {
                    community,
                    span: inner.layout.span_of(e.ts_ms),
                };
                let source_id = e.source_id();
                if let Some(sid) = source_id {
                    match self.find_source_id(&w.source_ids, key, sid, &opened) {
                        Ok(Some(seq)) => {
                            results.push(Appended::Duplicate { seq });
                            continue;
                        }
                        Ok(None) => {}
                        Err(e) => {
                            failure = Some(e);
                            break;
                        }
                    }
                }
                let seq = w.next_seq;
                w.next_seq += 1;
                if let Some(sid) = source_id {
                    w.source_ids.entry(key).or_default().insert(sid.into(), seq);
                }
                let row = StoredRow {
                    seq,
                    ts_ms: e.ts_ms,
                    device: dicts.intern_device(e.device.as_str(), &mut dict_log),
                    subject: dicts.intern_subject(e.kind, &e.subject, &mut dict_log),
                    kd: kd_pack(e.kind, e.direction),
                    attrs,
                    source_id: source_id.map(Into::into),
                };
                rows.push((key, row));
                results.push(Appended::Stored { seq });
            }
            // Strings interned stay interned (their records go with the next group
            // commit), even when the append fails below.
            w.pending.dict = dict_log;
            w.pending.subjects = dicts.len_subjects();
        }
        if let Some(e) = failure {
            // Nothing of the batch was queued: its sequence numbers and source ids are
            // given back (the writer lock was held throughout).
            for (key, row) in &rows {
                if let (Some(sid), Some(m)) = (&row.source_id, w.source_ids.get_mut(key)) {
                    m.remove(sid);
                }
            }
            w.next_seq = first_seq;
            return Err(e);
        }
        if !rows.is_empty() {
            let mut wal = std::mem::take(&mut w.pending.wal);
            encode_batch(first_seq, &rows, &mut wal);
            w.pending.wal = wal;
            w.pending.rows.append(&mut rows);
            w.pending.last_seq = w.next_seq - 1;
        }
        // Wait for everything queued so far, ours and any original a duplicate points to.
        let target = w.next_seq - 1;
        while w.durable_through < target {
            if let Some(why) = inner.failed.get() {
                return Err(StorageError::Poisoned(why.clone()));
            }
            if w.flushing {
                w = inner
                    .committed
                    .wait(w)
                    .expect("store lock poisoned by a panicked thread");
                continue;
            }
            w.flushing = true;
            let spare = std::mem::take(&mut w.spare);
            let batch = std::mem::replace(&mut w.pending, spare);
            drop(w);
            let flushed = self.flush(batch);
            w = lock(&inner.writer);
            w.flushing = false;
            inner.committed.notify_all();
            match flushed {
                Ok((last, spare)) => {
                    w.durable_through = w.durable_through.max(last);
                    w.spare = spare;
                }
                Err(e) => {
                    tracing::error!(error = %e, "group commit failed; the store refuses writes until reopened");
                    let _ = inner.failed.set(e.to_string());
                    return Err(e);
                }
            }
        }
        drop(w);
        if self.memory_part_bytes() > inner.config.memory_budget_bytes {
            // The events are durable and readable: a failed early seal is logged and
            // retried (by the next append over budget, or maintenance), never reported
            // as a failed append.
            if let Err(e) = self.enforce_memory_budget(false) {
                // Every append over budget retries: say so once a minute, not per batch.
                use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
                static LAST_WARNED_S: AtomicU64 = AtomicU64::new(0);
                static FAILURES: AtomicU64 = AtomicU64::new(0);
                let now_s = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let last = LAST_WARNED_S.load(Relaxed);
                let failures = FAILURES.fetch_add(1, Relaxed) + 1;
                if now_s >= last + 60
                    && LAST_WARNED_S
                        .compare_exchange(last, now_s, Relaxed, Relaxed)
                        .is_ok()
                {
                    FAILURES.store(0, Relaxed);
                    tracing::warn!(error = %e, failures, "sealing over the memory budget failed (failures since the last warning); retrying later");
                }
            }
        }
        Ok(AppendOutcome { results })
    }

    /// Writes and fsyncs one group, then makes its events readable. Returns the last
    /// sequence number it made durable and the group's buffers, emptied for reuse.
    fn flush(&self, mut batch: Pending) -> Result<(u64, Pending)> {
        let inner = &*self.inner;
        {
            let mut logs = lock(&inner.logs);
            let started = std::time::Instant::now();
            if !batch.dict.is_empty() {
                logs.dict.append_durable(&batch.dict)?;
                inner
                    .durable_subjects
                    .fetch_max(batch.subjects, Ordering::AcqRel);
            }
            if !batch.wal.is_empty() {
                logs.wal.append_durable(&batch.wal, batch.last_seq + 1)?;
            }
            inner.commit_seconds.observe(started.elapsed());
        }
        let mut shards = write(&inner.shards);
        let observers = lock(&inner.observers);
        let rows: Vec<Row> = if observers.is_empty() {
            Vec::new()
        } else {
            batch.rows.iter().map(|(k, r)| r.row(k.community)).collect()
        };
        let mut bytes = 0u64;
        for (key, row) in batch.rows.drain(..) {
            bytes += crate::memtable::row_bytes(&row) as u64;
            shards.entry(key).or_default().mem.push(row);
        }
        inner.memory_bytes.fetch_add(bytes, Ordering::Relaxed);
        if batch.last_seq > 0 {
            inner
                .applied_through
                .store(batch.last_seq, Ordering::Release);
        }
        for o in observers.iter() {
            o.appended(&rows);
        }
        drop(observers);
        drop(shards);
        let last = std::mem::take(&mut batch.last_seq);
        batch.wal.clear();
        batch.dict.clear();
        Ok((last, batch))
    }

    /// The seq of an event stored (or queued) in shard `key` with this source id.
    /// Sealed segments are read from `opened` (opened before the locks); one not there
    /// (sealed or merged since: the store's own file) is opened here.
    fn find_source_id(
        &self,
        open: &std::collections::HashMap<ShardKey, std::collections::HashMap<Box<str>, u64>>,
        key: ShardKey,
        source_id: &str,
        opened: &Opened,
    ) -> Result<Option<u64>> {
        if let Some(seq) = open.get(&key).and_then(|m| m.get(source_id)) {
            return Ok(Some(*seq));
        }
        let shards = read(&self.inner.shards);
        if let Some(shard) = shards.get(&key) {
            for seg in &shard.segments {
                let s = match opened.get(seg.path()) {
                    Some(s) => s.clone(),
                    None => seg.open()?,
                };
                if let Some(seq) = s.find_source_id(source_id)? {
                    return Ok(Some(seq));
                }
            }
        }
        Ok(None)
    }

    /// The sealed segments of the shards `events` with a source id go to (communities
    /// not interned yet have none).
    fn duplicate_segments(&self, events: &[Event]) -> Vec<std::sync::Arc<SealedSegment>> {
        let inner = &*self.inner;
        let keys: std::collections::BTreeSet<ShardKey> = {
            let dicts = read(&inner.dicts);
            events
                .iter()
                .filter(|e| e.source_id().is_some())
                .filter_map(|e| {
                    Some(ShardKey {
                        community: dicts.community_id(&e.community)?,
                        span: inner.layout.span_of(e.ts_ms),
                    })
                })
                .collect()
        };
        if keys.is_empty() {
            return Vec::new();
        }
        let shards = read(&inner.shards);
        keys.iter()
            .filter_map(|k| shards.get(k))
            .flat_map(|s| s.segments.iter().cloned())
            .collect()
    }

    /// The segments the duplicate check of an append of `events` would fetch (a lazily
    /// restored store's, not held by its cache), as the manifest names them, with
    /// their lengths: a caller fetches them all at once, concurrently, before the
    /// append (its [`crate::SegmentSource`] then hands each over) instead of the
    /// append fetching them one after another.
    pub fn unfetched_for_append(&self, events: &[Event]) -> Vec<(String, u64)> {
        self.duplicate_segments(events)
            .iter()
            .filter_map(|s| s.unfetched().map(|(f, n)| (f.to_owned(), n)))
            .collect()
    }

    /// Opens (fetches) the segments the duplicate check of `events` reads, with no
    /// lock held across the opens.
    fn open_for_duplicates(&self, events: &[Event], opened: &mut Opened) -> Result<()> {
        for seg in self.duplicate_segments(events) {
            if !opened.contains_key(seg.path()) {
                let s = seg.open()?;
                opened.insert(seg.path().to_path_buf(), s);
            }
        }
        Ok(())
    }

    /// Under the writer lock: whether every segment the duplicate check reads is in
    /// `opened` or mapped already (then added, without a fetch).
    fn duplicates_ready(&self, events: &[Event], opened: &mut Opened) -> bool {
        for seg in self.duplicate_segments(events) {
            if opened.contains_key(seg.path()) {
                continue;
            }
            if !seg.is_open() {
                return false;
            }
            match seg.open() {
                Ok(s) => {
                    opened.insert(seg.path().to_path_buf(), s);
                }
                Err(_) => return false,
            }
        }
        true
    }
}

/// Segments opened for an append's duplicate check, by path.
type Opened =
    std::collections::HashMap<std::path::PathBuf, std::sync::Arc<crate::segment::Segment>>;

/// How many times an append opens the segments its duplicate check reads outside its
/// locks before it reads what is still missing under them.
const REFETCH_ATTEMPTS: u32 = 3;
