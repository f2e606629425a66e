//! The global index: subject → shards, device → communities, subject statistics.
//!
//! Kept exact by an append observer, subtracted from by retention, and kept on disk as
//! a checkpoint (`checkpoint.rs`) so a store reopens without reading every row.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use roaring::RoaringBitmap;
use sightline_storage::{
    AppendObserver, DroppedShard, Row, ShardKey, SpanLayout, StorageError, Store,
};

use crate::checkpoint::{encode, Checkpoint, Flat, ShardEntry};
use crate::error::{IndexError, Result};

/// How often and when a subject was seen, over the whole store (events dropped by
/// retention no longer count).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubjectStats {
    pub count: u64,
    pub first_ms: i64,
    pub last_ms: i64,
}

impl Default for SubjectStats {
    fn default() -> Self {
        SubjectStats {
            count: 0,
            first_ms: i64::MAX,
            last_ms: i64::MIN,
        }
    }
}

/// Where a store keeps its index checkpoint, relative to the store's directory.
pub const CHECKPOINT_FILE: &str = "index/subjects.idx";

/// [`IndexView::subject_shards`] with a community filter looks each (community, span)
/// up when there are at most this many and fewer than the subject's shards (each a
/// hash probe and a bitmap or binary search: ~0.1 ms at this bound).
const MAX_PROBES: usize = 4096;

struct State {
    layout: SpanLayout,
    /// Shard number → key and rows counted, in first-seen order; numbers are what
    /// the bitmaps hold. A dropped shard keeps its number (marked dropped).
    shards: Vec<ShardEntry>,
    /// Live shards only.
    shard_numbers: HashMap<ShardKey, u32>,
    /// Numbers of dropped shards: filtered out of the checkpoint's lists.
    dropped: RoaringBitmap,
    /// The checkpoint the index was loaded from, read in place: its subject → shards
    /// and device → communities lists; later additions are in the bitmaps below.
    base: Option<Checkpoint>,
    /// By subject id: shards holding its events, beyond those `base` lists.
    subject_shards: Vec<RoaringBitmap>,
    /// By subject id, as `[count, first_ms, last_ms]` ([`raw`]). An entry of one of
    /// the checkpoint's subjects that is all zero has not been read from it yet (a
    /// read entry never is: a count of 0 is stored as [`SubjectStats::default`]), so
    /// loading a checkpoint allocates this zeroed and reads nothing.
    subject_stats: Vec<[i64; 3]>,
    /// Damage a read of the checkpoint found where it could not be returned (an
    /// append, retention) or first found: every later read returns it (the file is
    /// moved aside, so the next open rebuilds the index from the rows).
    broken: std::sync::OnceLock<(PathBuf, u64, String)>,
    /// By device id: the communities it reported events for, beyond `base`.
    device_communities: Vec<RoaringBitmap>,
    /// Every row with a sequence number up to this one is counted (unless dropped).
    through: u64,
    /// Subjects whose first/last seen a retention pass is recomputing from the store:
    /// the least and greatest ts of rows appended meanwhile.
    recompute: HashMap<u32, (i64, i64)>,
    /// Whether anything changed since the checkpoint was written or loaded (atomic, so
    /// a checkpoint can clear it under the read lock, queries going on).
    dirty: AtomicBool,
    /// Insert caches: rows arrive shard by shard, so most inserts repeat the last one.
    /// The last shard looked up; by subject, 1 + the shard number inserted last; by
    /// device, 1 + the community inserted last (0: none yet).
    last_shard: Option<(ShardKey, u32)>,
    subject_last: Vec<u32>,
    device_last: Vec<u32>,
}

fn slot<T: Default>(v: &mut Vec<T>, id: u32) -> &mut T {
    let i = id as usize;
    if v.len() <= i {
        v.resize_with(i + 1, T::default);
    }
    &mut v[i]
}

impl State {
    fn new(layout: SpanLayout) -> State {
        State {
            layout,
            shards: Vec::new(),
            shard_numbers: HashMap::new(),
            dropped: RoaringBitmap::new(),
            base: None,
            subject_shards: Vec::new(),
            subject_stats: Vec::new(),
            broken: std::sync::OnceLock::new(),
            device_communities: Vec::new(),
            through: 0,
            recompute: HashMap::new(),
            dirty: AtomicBool::new(true),
            last_shard: None,
            subject_last: Vec::new(),
            device_last: Vec::new(),
        }
    }

    /// The state a checkpoint holds (its lists stay in the file's map).
    fn from_checkpoint(cp: Checkpoint) -> State {
        let mut st = State::new(cp.layout);
        st.shards = cp.shards.clone();
        for (n, e) in st.shards.iter().enumerate() {
            if e.dropped {
                st.dropped.insert(n as u32);
            } else {
                st.shard_numbers.insert(e.key, n as u32);
            }
        }
        // Zeroed (untouched pages): each entry is read from the checkpoint on first use.
        st.subject_stats = vec![[0i64; 3]; cp.subjects];
        st.through = cp.through;
        // An older format is written again at the next checkpoint.
        st.dirty = AtomicBool::new(cp.version != crate::checkpoint::VERSION);
        st.base = Some(cp);
        st
    }

    fn shard_number(&mut self, key: ShardKey) -> u32 {
        match self.last_shard {
            Some((k, n)) if k == key => n,
            _ => {
                let n = match self.shard_numbers.get(&key) {
                    Some(&n) => n,
                    None => {
                        let n = u32::try_from(self.shards.len()).expect("fewer than 2^32 shards");
                        self.shards.push(ShardEntry {
                            key,
                            dropped: false,
                            events: 0,
                        });
                        self.shard_numbers.insert(key, n);
                        n
                    }
                };
                self.last_shard = Some((key, n));
                n
            }
        }
    }

    fn add(&mut self, r: &Row) {
        let key = ShardKey {
            community: r.community,
            span: self.layout.span_of(r.ts_ms),
        };
        let number = self.shard_number(key);
        self.shards[number as usize].events += 1;
        let last = slot(&mut self.subject_last, r.subject);
        if *last != number + 1 {
            *last = number + 1;
            let in_base = match &self.base {
                Some(b) => b.subject_shards(r.subject).map(|l| l.contains(number)),
                None => Ok(false),
            };
            match in_base {
                Ok(true) => {}
                Ok(false) => {
                    slot(&mut self.subject_shards, r.subject).insert(number);
                }
                Err(e) => self.note(&e),
            }
        }
        let ts = r.ts_ms;
        let counted = self.update_stats(r.subject, |s| {
            s.count += 1;
            s.first_ms = s.first_ms.min(ts);
            s.last_ms = s.last_ms.max(ts);
        });
        if let Err(e) = counted {
            self.note(&e);
        }
        if !self.recompute.is_empty() {
            if let Some(m) = self.recompute.get_mut(&r.subject) {
                m.0 = m.0.min(r.ts_ms);
                m.1 = m.1.max(r.ts_ms);
            }
        }
        let last = slot(&mut self.device_last, r.device);
        if *last != r.community + 1 {
            *last = r.community + 1;
            let in_base = self
                .base
                .as_ref()
                .is_some_and(|b| b.device_communities(r.device).contains(r.community));
            if !in_base {
                slot(&mut self.device_communities, r.device).insert(r.community);
            }
        }
        self.through = self.through.max(r.seq);
        *self.dirty.get_mut() = true;
    }

    /// How many shard numbers `subject`'s lists hold (dropped shards included): what
    /// collecting them costs.
    fn subject_shard_count(&self, subject: u32) -> std::result::Result<usize, StorageError> {
        let delta = self
            .subject_shards
            .get(subject as usize)
            .map_or(0, |b| b.len() as usize);
        let base = match &self.base {
            Some(b) => self.checked(b.subject_shards(subject))?.len(),
            None => 0,
        };
        Ok(delta + base)
    }

    /// Whether the live shard `number` holds events of `subject`.
    fn subject_in(&self, subject: u32, number: u32) -> std::result::Result<bool, StorageError> {
        let listed = self
            .subject_shards
            .get(subject as usize)
            .is_some_and(|b| b.contains(number))
            || match &self.base {
                Some(b) => self.checked(b.subject_shards(subject))?.contains(number),
                None => false,
            };
        Ok(listed && !self.dropped.contains(number))
    }

    /// The live shard numbers of `subject`, ascending.
    fn subject_numbers(&self, subject: u32) -> std::result::Result<Vec<u32>, StorageError> {
        let mut out: Vec<u32> = self
            .subject_shards
            .get(subject as usize)
            .map(|b| b.iter().collect())
            .unwrap_or_default();
        if let Some(base) = &self.base {
            out.extend(self.checked(base.subject_shards(subject))?.iter());
            out.sort_unstable();
        }
        if !self.dropped.is_empty() {
            out.retain(|n| !self.dropped.contains(*n));
        }
        Ok(out)
    }

    /// `subject`'s statistics (read from the checkpoint when not yet).
    fn stats(&self, subject: u32) -> std::result::Result<SubjectStats, StorageError> {
        match self.subject_stats.get(subject as usize) {
            Some(&r) if r != [0; 3] => Ok(cooked(r)),
            _ => self.base_stats(subject),
        }
    }

    /// `subject`'s statistics in the checkpoint (default past its subjects).
    fn base_stats(&self, subject: u32) -> std::result::Result<SubjectStats, StorageError> {
        match &self.base {
            Some(b) if (subject as usize) < b.subjects => {
                let (count, first_ms, last_ms) = self.checked(b.stats(subject as usize))?;
                Ok(match count {
                    0 => SubjectStats::default(),
                    _ => SubjectStats {
                        count,
                        first_ms,
                        last_ms,
                    },
                })
            }
            _ => Ok(SubjectStats::default()),
        }
    }

    /// Changes `subject`'s statistics by `f` (read from the checkpoint first when not
    /// yet).
    fn update_stats(
        &mut self,
        subject: u32,
        f: impl FnOnce(&mut SubjectStats),
    ) -> std::result::Result<(), StorageError> {
        let i = subject as usize;
        if self.subject_stats.len() <= i {
            self.subject_stats
                .resize(i + 1, raw(SubjectStats::default()));
        }
        let mut st = self.stats(subject)?;
        f(&mut st);
        self.subject_stats[i] = raw(st);
        Ok(())
    }

    /// Every subject id with statistics (the checkpoint's and later ones).
    fn subject_count(&self) -> usize {
        self.subject_stats.len()
    }

    /// `r`, the checkpoint's damage recorded first ([`State::note`]): a read that
    /// finds damage makes every later read fail with it.
    fn checked<T>(
        &self,
        r: std::result::Result<T, StorageError>,
    ) -> std::result::Result<T, StorageError> {
        if let Some(e) = self.broken_error() {
            return Err(e);
        }
        r.inspect_err(|e| self.note(e))
    }

    fn broken_error(&self) -> Option<StorageError> {
        self.broken
            .get()
            .map(|(path, offset, reason)| StorageError::Corrupt {
                path: path.clone(),
                offset: *offset,
                reason: reason.clone(),
            })
    }

    /// Records the first damage found in the checkpoint (by a read that returns it, or
    /// where it cannot be returned: an append, retention) and moves the file aside (to
    /// `subjects.idx.damaged`), so the next open rebuilds the index from every row.
    fn note(&self, e: &StorageError) {
        let StorageError::Corrupt {
            path,
            offset,
            reason,
        } = e
        else {
            return;
        };
        if self
            .broken
            .set((path.clone(), *offset, reason.clone()))
            .is_ok()
        {
            let aside = path.with_extension("idx.damaged");
            tracing::error!(error = %e, aside = %aside.display(), "the index checkpoint is damaged; queries fail until a restart rebuilds it");
            if let Err(err) = std::fs::rename(path, &aside) {
                tracing::error!(error = %err, path = %path.display(), "cannot move the damaged index checkpoint aside");
            }
        }
    }

    /// Records a read that failed where it cannot be returned (retention's
    /// recomputation): damage as [`State::note`] does; any other failure (a segment
    /// not fetched) makes every later read fail too, without moving the checkpoint
    /// aside (it is not damaged; it is not written again either).
    fn fail(&self, e: &StorageError) {
        if matches!(e, StorageError::Corrupt { .. }) {
            self.note(e);
            return;
        }
        let path = match e {
            StorageError::Fetch { path, .. } => path.clone(),
            _ => PathBuf::new(),
        };
        let reason = format!("subject statistics not recomputed after retention: {e}");
        if self.broken.set((path, 0, reason)).is_ok() {
            tracing::error!(error = %e, "the index is incomplete; queries fail until it is built again");
        }
    }

    fn device_list(&self, device: u32) -> Vec<u32> {
        let mut out: Vec<u32> = self
            .device_communities
            .get(device as usize)
            .map(|b| b.iter().collect())
            .unwrap_or_default();
        if let Some(base) = &self.base {
            out.extend(base.device_communities(device).iter());
            out.sort_unstable();
            out.dedup();
        }
        out
    }

    /// The index flattened into a checkpoint's bytes (every entry of the checkpoint
    /// it was loaded from read and checked).
    fn encode(&self) -> std::result::Result<Vec<u8>, StorageError> {
        let subjects = self.subject_count();
        let stats: Vec<(u64, i64, i64)> = (0..subjects as u32)
            .map(|s| self.stats(s).map(|s| (s.count, s.first_ms, s.last_ms)))
            .collect::<std::result::Result<_, _>>()?;
        let mut subject_offsets = Vec::with_capacity(subjects + 1);
        let mut subject_shards = Vec::new();
        subject_offsets.push(0u64);
        for s in 0..subjects as u32 {
            subject_shards.extend(self.subject_numbers(s)?);
            subject_offsets.push(subject_shards.len() as u64);
        }
        let devices = self
            .device_communities
            .len()
            .max(self.base.as_ref().map_or(0, |b| b.devices));
        let mut device_offsets = Vec::with_capacity(devices + 1);
        let mut device_communities = Vec::new();
        device_offsets.push(0u64);
        for d in 0..devices as u32 {
            device_communities.extend(self.device_list(d));
            device_offsets.push(device_communities.len() as u64);
        }
        Ok(encode(&Flat {
            through: self.through,
            layout: self.layout,
            shards: &self.shards,
            stats: &stats,
            subject_offsets: &subject_offsets,
            subject_shards: &subject_shards,
            device_offsets: &device_offsets,
            device_communities: &device_communities,
        }))
    }
}

/// Statistics as [`State::subject_stats`] keeps them (never all zero).
fn raw(s: SubjectStats) -> [i64; 3] {
    match s.count {
        0 => {
            let d = SubjectStats::default();
            [0, d.first_ms, d.last_ms]
        }
        n => [n as i64, s.first_ms, s.last_ms],
    }
}

fn cooked(r: [i64; 3]) -> SubjectStats {
    SubjectStats {
        count: r[0] as u64,
        first_ms: r[1],
        last_ms: r[2],
    }
}

/// How [`StoreIndex::open`] got its index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// The checkpoint was used (rows after it were read from the store).
    pub from_checkpoint: bool,
    /// Why a checkpoint on disk was not used (damaged, or not this store's state);
    /// the index was rebuilt from every row instead.
    pub rebuilt_because: Option<String>,
    /// Sequence number the checkpoint covered (0 without one).
    pub checkpoint_through: u64,
    /// Rows read from the store to complete the index.
    pub rows_read: u64,
}

/// Exact, always-current global index of one store.
pub struct StoreIndex {
    state: RwLock<State>,
    /// While attaching, rows appended meanwhile wait here (then the observer applies
    /// rows directly).
    attaching: Mutex<Option<Vec<Row>>>,
    /// The checkpoint file, when the index is kept on disk.
    path: Option<PathBuf>,
    /// Serialises checkpoint writes.
    writing: Mutex<()>,
}

struct Observer(Arc<StoreIndex>);

impl AppendObserver for Observer {
    fn appended(&self, rows: &[Row]) {
        {
            let mut waiting = self.0.lock_attaching();
            if let Some(w) = waiting.as_mut() {
                w.extend_from_slice(rows);
                return;
            }
        }
        let mut st = self.0.write();
        for r in rows {
            st.add(r);
        }
    }

    fn dropped(&self, store: &Store, shards: &[DroppedShard]) {
        self.0.subtract(store, shards);
    }
}

/// A read view of the index; hold it briefly, appends wait for it.
pub struct IndexView<'a> {
    st: RwLockReadGuard<'a, State>,
}

impl StoreIndex {
    /// Builds the index from every row `store` holds and keeps it current from then
    /// on, in memory only. A segment that fails verification on this first read of
    /// its rows is the error ([`sightline_storage::StorageError::Corrupt`], naming it).
    pub fn attach(store: &Store) -> Result<Arc<StoreIndex>> {
        let (index, _) = Self::attach_from(store, None, None)?;
        Ok(index)
    }

    /// Opens the index kept in the store's directory ([`CHECKPOINT_FILE`]): loads the
    /// checkpoint, reads only the rows after it (segments sealed since, unsealed
    /// events), checks it against the store's shards, and keeps it current. A
    /// missing, damaged or inconsistent checkpoint is reported and the index rebuilt
    /// from every row. Open it before maintenance runs (retention during the open
    /// would be missed); write checkpoints with [`StoreIndex::checkpoint`]. A segment
    /// whose rows must be read and fail verification is the error (as for
    /// [`StoreIndex::attach`]).
    pub fn open(store: &Store) -> Result<(Arc<StoreIndex>, OpenReport)> {
        let path = store.dir().join(CHECKPOINT_FILE);
        let loaded = match store.config().io.map(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => Some(Err(format!("{}: {e}", path.display()))),
            Ok(bytes) => Some(Checkpoint::decode(&path, bytes).map_err(|e| e.to_string())),
        };
        let (checkpoint, why) = match loaded {
            None => (None, None),
            Some(Ok(cp)) => (Some(cp), None),
            Some(Err(why)) => (None, Some(why)),
        };
        let (index, mut report) = Self::attach_from(store, checkpoint, Some(path))?;
        if report.rebuilt_because.is_none() {
            report.rebuilt_because = why;
        }
        if let Some(why) = &report.rebuilt_because {
            tracing::warn!(reason = %why, "index checkpoint not used; rebuilt from every row");
        }
        Ok((index, report))
    }

    fn attach_from(
        store: &Store,
        checkpoint: Option<Checkpoint>,
        path: Option<PathBuf>,
    ) -> Result<(Arc<StoreIndex>, OpenReport)> {
        let layout = store.layout();
        let index = Arc::new(StoreIndex {
            state: RwLock::new(State::new(layout)),
            attaching: Mutex::new(Some(Vec::new())),
            path,
            writing: Mutex::new(()),
        });
        // Rows up to `applied_through` come from the store, later ones through the
        // observer (held back until the state is built): each row counted once.
        let through = store
            .observe(Arc::new(Observer(index.clone())))
            .applied_through;
        let mut report = OpenReport::default();
        let mut state = None;
        if let Some(cp) = checkpoint {
            report.checkpoint_through = cp.through;
            // A read that fails (a segment that cannot be fetched or is damaged) is
            // the error: rebuilding from every row would read the same segments.
            match Self::resume(store, cp, through, &mut report)? {
                Ok(st) => state = Some(st),
                Err(why) => {
                    report.rebuilt_because = Some(why);
                    report.rows_read = 0;
                }
            }
        }
        let state = match state {
            Some(st) => st,
            None => {
                let mut st = State::new(layout);
                store.rows_after(0, through, |r| {
                    report.rows_read += 1;
                    st.add(&r);
                })?;
                st.through = through;
                st
            }
        };
        report.from_checkpoint = report.rebuilt_because.is_none() && state.base.is_some();
        let mut st = index.write();
        *st = state;
        let mut waiting = index.lock_attaching();
        for r in waiting.take().unwrap_or_default() {
            st.add(&r);
        }
        drop(waiting);
        drop(st);
        Ok((index, report))
    }

    /// The checkpoint's state completed with the rows after it, or why it cannot be
    /// (inner `Err`: rebuild from every row); a store read that fails is the outer
    /// error.
    fn resume(
        store: &Store,
        cp: Checkpoint,
        through: u64,
        report: &mut OpenReport,
    ) -> Result<std::result::Result<State, String>> {
        let path = cp.path().display().to_string();
        if cp.layout != store.layout() {
            return Ok(Err(format!("{path}: made with another shard layout")));
        }
        if cp.through > through {
            return Ok(Err(format!(
                "{path}: covers events up to {}, the store holds up to {through}",
                cp.through
            )));
        }
        if cp.subjects > store.durable_subjects() {
            return Ok(Err(format!(
                "{path}: {} subjects, the dictionary has {}",
                cp.subjects,
                store.durable_subjects()
            )));
        }
        let expected: BTreeMap<ShardKey, u64> = cp
            .shards
            .iter()
            .filter(|e| !e.dropped && e.events > 0)
            .map(|e| (e.key, e.events))
            .collect();
        let mut st = State::from_checkpoint(cp);
        let mut rows = 0u64;
        let held = store.rows_after(st.through, through, |r| {
            rows += 1;
            st.add(&r);
        })?;
        report.rows_read = rows;
        if held != expected {
            let differ = held
                .iter()
                .find(|(k, n)| expected.get(k) != Some(n))
                .map(|(k, n)| (*k, *n, expected.get(k).copied().unwrap_or(0)))
                .or_else(|| {
                    expected
                        .iter()
                        .find(|(k, _)| !held.contains_key(k))
                        .map(|(k, n)| (*k, 0, *n))
                });
            let (k, has, counted) = differ.expect("the maps differ somewhere");
            return Ok(Err(format!(
                "{path}: shard {k:?} holds {has} events up to the checkpoint, it counted {counted}"
            )));
        }
        st.through = st.through.max(through);
        if rows > 0 {
            *st.dirty.get_mut() = true;
        }
        Ok(Ok(st))
    }

    /// Writes the checkpoint (atomically, through the store's file-system seam) if
    /// the index changed since the last one. Returns whether it wrote. Appends wait
    /// while the index is copied (not while it is written); queries do not.
    pub fn checkpoint(&self, store: &Store) -> Result<bool> {
        let Some(path) = &self.path else {
            return Ok(false);
        };
        let _writing = self.writing.lock().expect("checkpoint writer poisoned");
        let bytes = {
            // A read lock: queries go on; appends wait for the copy.
            let st = self.view().st;
            // A broken index is never written: it would keep what it got wrong.
            if let Some(e) = st.broken_error() {
                return Err(IndexError::Store(e));
            }
            if !st.dirty.swap(false, Ordering::AcqRel) {
                return Ok(false);
            }
            match st.encode() {
                Ok(b) => b,
                Err(e) => {
                    st.dirty.store(true, Ordering::Release);
                    return Err(IndexError::Store(e));
                }
            }
        };
        let written =
            sightline_storage::write_file_atomic(&*store.config().io, path, |put| put(&bytes));
        if let Err(e) = written {
            self.view().st.dirty.store(true, Ordering::Release);
            return Err(IndexError::Store(e));
        }
        tracing::debug!(bytes = bytes.len(), path = %path.display(), "index checkpoint written");
        Ok(true)
    }

    /// The index as a checkpoint's bytes (the format of [`CHECKPOINT_FILE`]), kept
    /// on disk or not, and the sequence number it covers: what a copy of the store
    /// (a cluster's read replica) opens with [`StoreIndex::open`] instead of reading
    /// every row. Appends wait while the index is copied.
    pub fn checkpoint_bytes(&self) -> Result<(u64, Vec<u8>)> {
        let st = self.view().st;
        if let Some(e) = st.broken_error() {
            return Err(IndexError::Store(e));
        }
        let bytes = st.encode().map_err(IndexError::Store)?;
        Ok((st.through, bytes))
    }

    /// Takes the shards retention dropped out of the index: their numbers, their
    /// events from the counts, and first/last seen recomputed from the shards left
    /// where the dropped ones held them.
    fn subtract(&self, store: &Store, dropped: &[DroppedShard]) {
        // subject → its live shards, for those whose first or last seen went.
        let mut plan: Vec<(u32, Vec<ShardKey>)> = Vec::new();
        {
            let mut st = self.write();
            let mut affected: Vec<u32> = Vec::new();
            for d in dropped {
                let Some(n) = st.shard_numbers.remove(&d.key) else {
                    continue;
                };
                st.dropped.insert(n);
                st.shards[n as usize].dropped = true;
                st.shards[n as usize].events = 0;
                st.last_shard = None;
                for s in &d.subjects {
                    if let Some(b) = st.subject_shards.get_mut(s.subject as usize) {
                        b.remove(n);
                    }
                    if let Some(l) = st.subject_last.get_mut(s.subject as usize) {
                        if *l == n + 1 {
                            *l = 0;
                        }
                    }
                    let mut recompute = false;
                    let changed = st.update_stats(s.subject, |stats| {
                        debug_assert!(stats.count >= s.count, "subtracting more than counted");
                        stats.count = stats.count.saturating_sub(s.count);
                        if stats.count == 0 {
                            *stats = SubjectStats::default();
                        } else if stats.first_ms == s.first_ms || stats.last_ms == s.last_ms {
                            recompute = true;
                        }
                    });
                    match changed {
                        Ok(()) if recompute => affected.push(s.subject),
                        Ok(()) => {}
                        Err(e) => st.note(&e),
                    }
                }
            }
            affected.sort_unstable();
            affected.dedup();
            for s in affected {
                // Dropped to none by a later shard of the same pass: nothing to find.
                if st.stats(s).is_ok_and(|x| x.count == 0) {
                    continue;
                }
                let numbers = match st.subject_numbers(s) {
                    Ok(n) => n,
                    Err(e) => {
                        st.note(&e);
                        continue;
                    }
                };
                let keys = numbers
                    .into_iter()
                    .map(|n| st.shards[n as usize].key)
                    .collect();
                st.recompute.insert(s, (i64::MAX, i64::MIN));
                plan.push((s, keys));
            }
            *st.dirty.get_mut() = true;
        }
        // Outside the lock: the subject's events in its earliest and latest spans.
        let mut found: Vec<(u32, i64, i64)> = Vec::with_capacity(plan.len());
        // What failed, and the subjects it left without first and last sightings.
        let mut failed: Vec<(u32, StorageError)> = Vec::new();
        for (subject, keys) in plan {
            let (mut first, mut last) = (i64::MAX, i64::MIN);
            let lo = keys.iter().map(|k| k.span).min();
            let hi = keys.iter().map(|k| k.span).max();
            let ends = keys
                .iter()
                .filter(|k| Some(k.span) == lo || Some(k.span) == hi)
                .copied();
            let scanned = store.scan_subject(ends, subject, i64::MIN, i64::MAX, |r| {
                first = first.min(r.ts_ms);
                last = last.max(r.ts_ms);
            });
            match scanned {
                Ok(()) => found.push((subject, first, last)),
                Err(e) => {
                    // A segment that cannot be read (damaged, or not fetched): the
                    // subject's first and last sightings are unknown. Never written
                    // as guesses: the index fails every read from now on (a replica
                    // is made again, a node rebuilds it at restart).
                    tracing::error!(error = %e, subject, "recomputing a subject's first and last sightings after retention");
                    failed.push((subject, e));
                }
            }
        }
        // Under the write lock (appends wait): linear in the subjects recomputed.
        let mut st = self.write();
        for (subject, e) in &failed {
            st.fail(e);
            st.recompute.remove(subject);
        }
        for (subject, first, last) in found {
            let (f2, l2) = st
                .recompute
                .remove(&subject)
                .unwrap_or((i64::MAX, i64::MIN));
            let set = st.update_stats(subject, |s| {
                if s.count > 0 {
                    s.first_ms = first.min(f2);
                    s.last_ms = last.max(l2);
                }
            });
            if let Err(e) = set {
                st.note(&e);
            }
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .expect("index lock poisoned by a panicked thread")
    }

    fn lock_attaching(&self) -> std::sync::MutexGuard<'_, Option<Vec<Row>>> {
        self.attaching
            .lock()
            .expect("index lock poisoned by a panicked thread")
    }

    pub fn view(&self) -> IndexView<'_> {
        IndexView {
            st: self
                .state
                .read()
                .expect("index lock poisoned by a panicked thread"),
        }
    }

    /// Whether a read failed in a way that makes every later one fail (damage in
    /// the checkpoint, statistics that could not be recomputed): the index must be
    /// built again.
    pub fn is_broken(&self) -> bool {
        self.view().st.broken.get().is_some()
    }

    /// The checkpoint file, when the index is kept on disk.
    pub fn checkpoint_path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

/// `key` as an integer in key order: the community above, the span (offset to be
/// unsigned) below.
fn pack_key(key: ShardKey) -> u64 {
    u64::from(key.community) << 32 | u64::from(key.span as u32 ^ 1 << 31)
}

/// The key [`pack_key`] packed.
fn unpack_key(packed: u64) -> ShardKey {
    ShardKey {
        community: (packed >> 32) as u32,
        span: (packed as u32 ^ 1 << 31) as i32,
    }
}

impl IndexView<'_> {
    /// The shards that hold events of `subject`, optionally only those of
    /// `communities` and whose span meets `[from_ms, to_ms)`, in key order. Damage
    /// found in the checkpoint on this first read of the subject's list is the error
    /// (naming the file), and is for every later read.
    pub fn subject_shards(
        &self,
        subject: u32,
        from_ms: i64,
        to_ms: i64,
        communities: Option<&[u32]>,
    ) -> std::result::Result<Vec<ShardKey>, StorageError> {
        if let Some(e) = self.st.broken_error() {
            return Err(e);
        }
        if from_ms >= to_ms {
            return Ok(Vec::new());
        }
        let (lo, hi) = (
            self.st.layout.span_of(from_ms),
            self.st.layout.span_of(to_ms - 1),
        );
        if let Some(cs) = communities {
            // A subject seen all over the city (a co-occurrence candidate whose plate
            // thousands of shards hold) asked about a few communities and days: look
            // each (community, span) up instead of collecting its whole list.
            let spans = usize::try_from(i64::from(hi) - i64::from(lo) + 1).unwrap_or(usize::MAX);
            let probes = cs.len().saturating_mul(spans);
            if probes <= MAX_PROBES && probes < self.st.subject_shard_count(subject)? {
                let mut keys = Vec::new();
                for &community in cs {
                    for span in lo..=hi {
                        let key = ShardKey { community, span };
                        if let Some(&n) = self.st.shard_numbers.get(&key) {
                            if self.st.subject_in(subject, n)? {
                                keys.push(key);
                            }
                        }
                    }
                }
                keys.sort_unstable();
                keys.dedup();
                return Ok(keys);
            }
        }
        // Sorted as integers in key order (community, then span): a subject's list
        // of hundreds of shards sorts far cheaper so than by comparing keys.
        let mut packed: Vec<u64> = self
            .st
            .subject_numbers(subject)?
            .into_iter()
            .map(|n| self.st.shards[n as usize].key)
            .filter(|k| k.span >= lo && k.span <= hi)
            .filter(|k| communities.is_none_or(|cs| cs.contains(&k.community)))
            .map(pack_key)
            .collect();
        packed.sort_unstable();
        Ok(packed.into_iter().map(unpack_key).collect())
    }

    /// Statistics of `subject` over the whole store (`None`: never seen, or every
    /// sighting dropped). Damage found in the checkpoint is the error, as for
    /// [`IndexView::subject_shards`].
    pub fn subject_stats(
        &self,
        subject: u32,
    ) -> std::result::Result<Option<SubjectStats>, StorageError> {
        if let Some(e) = self.st.broken_error() {
            return Err(e);
        }
        Ok(Some(self.st.stats(subject)?).filter(|s| s.count > 0))
    }

    /// The communities `device` reported events for (retention does not take a
    /// community off a device: the list says where the device has reported).
    pub fn device_communities(&self, device: u32) -> Vec<u32> {
        self.st.device_list(device)
    }

    /// Every row with a sequence number up to this one is counted (unless dropped).
    pub fn through(&self) -> u64 {
        self.st.through
    }
}

/// What [`verify_checkpoint`] compared.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckpointCheck {
    pub through: u64,
    pub subjects: usize,
    pub shards: usize,
}

/// Checks every byte and list of an index checkpoint held in memory (`bytes`, as
/// `name` names it in errors), before it is written where [`StoreIndex::open`] reads
/// it: a damaged one is an error naming what is wrong.
pub fn check_checkpoint_bytes(name: &Path, bytes: Vec<u8>) -> Result<()> {
    let cp = Checkpoint::decode(name, sightline_storage::io::FileBytes::Owned(bytes))?;
    cp.check_all()?;
    Ok(())
}

/// Checks the checkpoint kept in `dir` (a store's directory) against the events the
/// store holds: reads and checks the file, rebuilds the index from `rows` (every row
/// the store holds, with its sequence number) and compares the two entry by entry.
/// `Ok(None)` when there is no checkpoint. Damage or a difference is an error naming
/// the file and what differs.
pub fn verify_checkpoint(
    dir: &Path,
    io: &dyn sightline_storage::io::FileIo,
    rows: impl FnOnce(SpanLayout, &mut dyn FnMut(Row)) -> std::result::Result<(), String>,
) -> std::result::Result<Option<CheckpointCheck>, String> {
    let path = dir.join(CHECKPOINT_FILE);
    let bytes = match io.map(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
        Ok(b) => b,
    };
    let cp = Checkpoint::decode(&path, bytes).map_err(|e| e.to_string())?;
    cp.check_all().map_err(|e| e.to_string())?;
    let mut fresh = State::new(cp.layout);
    rows(cp.layout, &mut |r: Row| {
        if r.seq <= cp.through {
            fresh.add(&r);
        }
    })?;
    let show = path.display();
    let live: BTreeMap<ShardKey, u64> = cp
        .shards
        .iter()
        .filter(|e| !e.dropped && e.events > 0)
        .map(|e| (e.key, e.events))
        .collect();
    let held: BTreeMap<ShardKey, u64> = fresh.shards.iter().map(|e| (e.key, e.events)).collect();
    if live != held {
        return Err(format!(
            "{show}: its shards' event counts differ from the segments and WAL ({} shards listed, {} hold events up to seq {})",
            live.len(),
            held.len(),
            cp.through
        ));
    }
    let subjects = cp.subjects.max(fresh.subject_count());
    for s in 0..subjects {
        let (count, first, last) = if s < cp.subjects {
            cp.stats(s).map_err(|e| e.to_string())?
        } else {
            (0, i64::MAX, i64::MIN)
        };
        let want = fresh.stats(s as u32).map_err(|e| e.to_string())?;
        if (count, first, last) != (want.count, want.first_ms, want.last_ms) {
            return Err(format!(
                "{show}: subject {s} counted {count} events ({first}..{last}), the store holds {} ({}..{})",
                want.count, want.first_ms, want.last_ms
            ));
        }
        let listed: Vec<ShardKey> = cp
            .subject_shards(s as u32)
            .map_err(|e| e.to_string())?
            .iter()
            .map(|n| cp.shards[n as usize].key)
            .collect();
        let mut expect: Vec<ShardKey> = fresh
            .subject_numbers(s as u32)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|n| fresh.shards[n as usize].key)
            .collect();
        let mut listed = listed;
        listed.sort_unstable();
        expect.sort_unstable();
        if listed != expect {
            return Err(format!(
                "{show}: subject {s} is listed in {} shards, the store has it in {}",
                listed.len(),
                expect.len()
            ));
        }
    }
    Ok(Some(CheckpointCheck {
        through: cp.through,
        subjects: cp.subjects,
        shards: live.len(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Packed keys sort as the keys do and unpack to them.
        #[test]
        fn packed_shard_keys_keep_key_order(
            a in (any::<u32>(), any::<i32>()),
            b in (any::<u32>(), any::<i32>()),
        ) {
            let (a, b) = (
                ShardKey { community: a.0, span: a.1 },
                ShardKey { community: b.0, span: b.1 },
            );
            prop_assert_eq!(unpack_key(pack_key(a)), a);
            prop_assert_eq!(pack_key(a).cmp(&pack_key(b)), a.cmp(&b));
        }
    }
}
