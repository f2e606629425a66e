//! The store: opening and recovery here; the write path in `append`, reads in `read`,
//! sealing, compaction and retention in `maintain`.
//!
//! Lock order (never take an earlier one while holding a later one):
//! `maintenance` → `writer` → `dicts` → `shards` → `observers`. `logs` is taken alone;
//! `recovery` is a leaf. Opening a sealed segment on its first use takes no lock of
//! the store (it may happen under `shards`).

mod append;
mod check;
mod maintain;
mod observe;
mod read;
mod restore;
mod sealed;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::attr_codec::decode_attrs;
use crate::catalog::{Catalog, ShardState, SledCatalog};
use crate::clock::{Clock, SystemClock};
use crate::config::StoreConfig;
use crate::dict::{DictLog, Dictionaries};
use crate::error::{Result, StorageError};
use crate::event::{Event, EventInput, ValidationError, SOURCE_ID};
use crate::log_file::TornTail;
use crate::memtable::{MemRows, StoredRow};
use crate::segment::Segment;
use crate::shard::{ShardKey, SpanLayout};
use crate::wal::Wal;
use crate::AttrValue;
pub(crate) use sealed::SealedSegment;

pub use append::{AppendOutcome, Appended};
pub use check::{check, check_rows, CheckReport};
pub use maintain::MaintenanceReport;
pub use observe::{AppendObserver, DroppedShard, Registration, SubjectSummary};
pub use read::{AttrsAt, ShardInfo, StoredEvent, SubjectRun, SUBJECT_RUN_WHOLE_MAX};
pub use restore::Restore;

/// What opening the store found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub wal_batches_replayed: u64,
    pub wal_events_replayed: u64,
    /// WAL events skipped because their shard had already sealed them.
    pub wal_events_already_sealed: u64,
    pub wal_torn_tail: Option<TornTail>,
    pub dict_torn_tail: Option<TornTail>,
    /// Segment or temporary files not in the manifest (left by a crash mid-seal),
    /// removed. Opening does not look for them (it reads nothing per segment): the
    /// first [`Store::maintain`] after open does, under the maintenance lock that
    /// seals and compactions hold while they write, and fills this in. Empty until
    /// then.
    pub orphan_files_removed: Vec<PathBuf>,
    /// Segments the manifest listed without their facts (written by a version before
    /// they were kept), read at this open to learn them; the manifest now holds them,
    /// so the next open reads none.
    pub segment_facts_filled: usize,
    /// Picture packs whose last record a crash left incomplete (never acknowledged).
    pub picture_torn_tails: Vec<TornTail>,
    /// Why the dictionary snapshot (`dict.snap`) was not used: damaged, of another
    /// version, or made from another or longer `dict.log`. The whole log was loaded
    /// instead and the snapshot is written again.
    pub dict_snapshot_ignored: Option<String>,
    /// Damage a read found in a chunk of the dictionary snapshot after open (the
    /// snapshot's entries are answered from `dict.log` since, and it is written again
    /// at the next WAL checkpoint); as [`crate::Dictionaries::snapshot_damage`] gives
    /// it when [`Store::recovery`] is called.
    pub dict_snapshot_damage: Option<String>,
}

/// One shard in memory: its sealed segments and its unsealed events.
#[derive(Default)]
pub(crate) struct Shard {
    /// Opened on first use ([`SealedSegment::open`]).
    pub segments: Vec<Arc<SealedSegment>>,
    /// Events appended since the last seal, in sequence order.
    pub mem: MemRows,
    /// Events being sealed right now; still readable.
    pub frozen: Option<Arc<MemRows>>,
    /// The manifest's record of this shard.
    pub state: ShardState,
}

/// Group-commit state: what is queued for the next fsync and what is durable.
pub(crate) struct WriterState {
    pub next_seq: u64,
    /// Every sequence number up to this one is durable.
    pub durable_through: u64,
    pub pending: append::Pending,
    /// The buffers of the last flushed group, emptied, for the next group to fill:
    /// the write path then neither frees nor regrows large buffers per fsync.
    pub spare: append::Pending,
    pub flushing: bool,
    /// Source ids of unsealed events (and queued ones), per shard, with their seq.
    pub source_ids: HashMap<ShardKey, HashMap<Box<str>, u64>>,
}

pub(crate) struct Logs {
    pub wal: Wal,
    pub dict: DictLog,
}

pub(crate) struct Inner {
    pub dir: PathBuf,
    pub config: StoreConfig,
    pub layout: SpanLayout,
    pub clock: Arc<dyn Clock>,
    pub catalog: Box<dyn Catalog>,
    pub writer: Mutex<WriterState>,
    pub committed: Condvar,
    pub logs: Mutex<Logs>,
    pub dicts: RwLock<Dictionaries>,
    pub shards: RwLock<BTreeMap<ShardKey, Shard>>,
    /// Told of every row made readable; a leaf lock, taken under `shards`.
    pub observers: Mutex<Vec<Arc<dyn observe::AppendObserver>>>,
    /// The highest seq applied to the shards (written under the `shards` lock).
    pub applied_through: AtomicU64,
    /// Why writes are refused, once a write or fsync failed (set under the writer
    /// lock; read without it, by health checks too).
    pub failed: std::sync::OnceLock<String>,
    /// The retention policy in days, 0 for none: the catalog's, changed at run time
    /// by [`Store::set_retention_days`].
    pub retention_days: std::sync::atomic::AtomicU32,
    /// Memory the shards' memory parts (active and frozen) take, as
    /// `memtable::row_bytes` counts it; bounded by `StoreConfig::memory_budget_bytes`.
    pub memory_bytes: AtomicU64,
    /// Memory parts sealed early because the memory budget was exceeded.
    pub budget_seals: AtomicU64,
    /// Rows the change feed's scans looked at ([`Store::seq_scan_rows`]).
    pub seq_scan_rows: AtomicU64,
    /// Subject dictionary entries that are durable (in an fsynced `dict.log`): ids
    /// below it never change, even after a crash. Entries past it may be reassigned
    /// if their group commit fails, so derived indexes stop here.
    pub durable_subjects: std::sync::atomic::AtomicUsize,
    /// Durations of group commits: dictionary log and WAL written and fsynced.
    pub commit_seconds: crate::stats::Histogram,
    /// Serialises seal, compaction and retention; holds the next segment id.
    pub maintenance: Mutex<u64>,
    /// Whether the orphan files were looked for since open (by the first maintenance
    /// pass, under the maintenance lock).
    pub orphans_checked: std::sync::atomic::AtomicBool,
    /// What opening found; `orphan_files_removed` is filled by the first maintenance.
    pub recovery: Mutex<RecoveryReport>,
    /// Picture packs, one per shard, in `dir/pictures`.
    pub pictures: crate::pictures::PictureStore,
    _lock: File,
}

/// An embedded event store. Cheap to clone; all clones share one store.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// Locks a mutex; a poisoned lock means a thread panicked mid-update, which the store
/// treats as a bug that must not be papered over.
/// Where picture packs live, under the store directory.
pub const PICTURES_DIR: &str = "pictures";

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().expect("store lock poisoned by a panicked thread")
}
pub(crate) fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().expect("store lock poisoned by a panicked thread")
}
pub(crate) fn write<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().expect("store lock poisoned by a panicked thread")
}

pub(crate) fn source_id_of(attrs: &[u8]) -> std::result::Result<Option<Box<str>>, String> {
    if attrs.is_empty() {
        return Ok(None);
    }
    Ok(match decode_attrs(attrs)?.remove(SOURCE_ID) {
        Some(AttrValue::Str(s)) => Some(s.into_boxed_str()),
        _ => None,
    })
}

impl Store {
    /// Opens (or creates) the store in `dir` with the wall clock.
    pub fn open(dir: impl AsRef<Path>, config: StoreConfig) -> Result<Store> {
        Store::open_with_clock(dir, config, Arc::new(SystemClock))
    }

    /// Opens (or creates) the store in `dir`: loads the catalog (the manifest lists
    /// every sealed segment with the facts opening needs) and the dictionaries, and
    /// replays the WAL past what is sealed. Nothing is read per sealed segment: each
    /// is mapped and its small parts verified by its first use (`store/sealed.rs`),
    /// its rows and attributes on their first read. Files a crash left half-made are
    /// removed by the first [`Store::maintain`], not here. (A manifest written before
    /// segment facts were kept has its segments opened once, here, and their facts
    /// recorded.) Only one process may have a store open. How long each step took is
    /// logged at debug level (`RUST_LOG=sightline_storage=debug`).
    pub fn open_with_clock(
        dir: impl AsRef<Path>,
        config: StoreConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Store> {
        config.check()?;
        let dir = dir.as_ref().to_path_buf();
        let io = config.io.clone();
        crate::fsutil::create_dir_durable(&*io, &dir)?;
        let lock_file = lock_store(&dir, true)?;

        let layout = config.layout();
        let mut lap = Lap::start();
        let catalog = SledCatalog::open(&dir.join("catalog"))?;
        lap.step("catalog opened (sled)");
        let manifest = catalog.manifest()?;
        lap.step("manifest read");
        let retention_days = match config.retention_days {
            Some(d) => {
                if catalog.retention_days()? != Some(d) {
                    catalog.set_retention_days(Some(d))?;
                }
                Some(d)
            }
            None => catalog.retention_days()?,
        };
        crate::config::check_retention(retention_days)?;
        let mut recovery = RecoveryReport::default();

        // Nothing is read per segment: each becomes a handle opened on first use, with
        // what opening needs (sequence range, events, bytes) from the manifest.
        let mut shards: BTreeMap<ShardKey, Shard> = BTreeMap::new();
        let mut max_seq = 0u64;
        let mut segment_count = 0usize;
        // Entries of manifests from before the facts were kept: (shard, position).
        let mut without_facts: Vec<(ShardKey, usize, PathBuf)> = Vec::new();
        for (key, state) in manifest.shards {
            let mut shard = Shard::default();
            for (i, entry) in state.segments.iter().enumerate() {
                segment_count += 1;
                match SealedSegment::listed(&dir, key, entry, &io, config.remote_segments.as_ref())
                {
                    Some(seg) => {
                        max_seq = max_seq.max(seg.facts().max_seq);
                        shard.segments.push(Arc::new(seg));
                    }
                    None => without_facts.push((key, i, dir.join(&entry.file))),
                }
            }
            max_seq = max_seq.max(state.sealed_through_seq);
            shard.state = state;
            shards.insert(key, shard);
        }
        lap.step("segments listed");
        if !without_facts.is_empty() {
            max_seq = max_seq.max(fill_segment_facts(
                &catalog,
                &io,
                &mut shards,
                &without_facts,
            )?);
            recovery.segment_facts_filled = without_facts.len();
            lap.step("segment facts filled (manifest of an older version)");
        }

        let Replayed {
            dict_log,
            dicts,
            wal,
            source_ids,
            max_seq,
        } = replay_logs(
            &dir,
            &config,
            &mut shards,
            max_seq,
            crate::dict::recorded_counts(&catalog)?,
            &mut recovery,
        )?;
        lap.step("dictionaries and WAL replayed");
        let memory_bytes: u64 = shards.values().map(|s| s.mem.bytes() as u64).sum();
        let durable_subjects = dicts.len_subjects();
        let (pictures, picture_torn_tails) =
            crate::pictures::PictureStore::open(&dir.join(PICTURES_DIR), io.clone())?;
        recovery.picture_torn_tails = picture_torn_tails;
        lap.step("picture packs");

        let store = Store {
            inner: Arc::new(Inner {
                dir,
                layout,
                clock,
                catalog: Box::new(catalog),
                writer: Mutex::new(WriterState {
                    next_seq: max_seq + 1,
                    durable_through: max_seq,
                    pending: append::Pending::default(),
                    spare: append::Pending::default(),
                    flushing: false,
                    source_ids,
                }),
                committed: Condvar::new(),
                logs: Mutex::new(Logs {
                    wal,
                    dict: dict_log,
                }),
                dicts: RwLock::new(dicts),
                shards: RwLock::new(shards),
                observers: Mutex::new(Vec::new()),
                applied_through: AtomicU64::new(max_seq),
                failed: Default::default(),
                retention_days: std::sync::atomic::AtomicU32::new(retention_days.unwrap_or(0)),
                commit_seconds: Default::default(),
                memory_bytes: AtomicU64::new(memory_bytes),
                budget_seals: AtomicU64::new(0),
                seq_scan_rows: AtomicU64::new(0),
                durable_subjects: std::sync::atomic::AtomicUsize::new(durable_subjects),
                maintenance: Mutex::new(manifest.next_segment_id),
                orphans_checked: Default::default(),
                recovery: Mutex::new(recovery),
                pictures,
                config,
                _lock: lock_file,
            }),
        };
        store.checkpoint_wal()?;
        lap.step("WAL checkpoint");
        tracing::debug!(
            segments = segment_count,
            total_ms = lap.total_ms(),
            "store opened"
        );
        Ok(store)
    }

    /// The picture packs (stored beside the segments, dropped with their shard).
    pub fn pictures(&self) -> &crate::pictures::PictureStore {
        &self.inner.pictures
    }

    /// Validates and normalises an event with this store's bounds and clock.
    pub fn validate(&self, input: EventInput) -> std::result::Result<Event, ValidationError> {
        self.inner
            .config
            .validator
            .validate(input, self.inner.clock.now_ms())
    }

    /// [`Store::validate`] against the clock reading `now_ms` instead of this store's
    /// clock: a replayed log validated at the time carried with each message decides
    /// the same wherever and whenever it is replayed.
    pub fn validate_at(
        &self,
        input: EventInput,
        now_ms: i64,
    ) -> std::result::Result<Event, ValidationError> {
        self.inner.config.validator.validate(input, now_ms)
    }

    /// [`Store::validate`] of a borrowed event (binary ingest).
    pub fn validate_ref(
        &self,
        input: &crate::EventRef<'_>,
    ) -> std::result::Result<Event, ValidationError> {
        self.inner
            .config
            .validator
            .validate_ref(input, self.inner.clock.now_ms())
    }

    /// The sequence number the next stored event gets.
    pub fn next_seq(&self) -> u64 {
        lock(&self.inner.writer).next_seq
    }

    /// The retention policy in days (`None`: keep everything).
    pub fn retention_days(&self) -> Option<u32> {
        match self.inner.retention_days.load(Ordering::Relaxed) {
            0 => None,
            d => Some(d),
        }
    }

    /// Changes the retention policy, durably (it is kept in the catalog and holds
    /// across restarts). Appends refuse events older than the new horizon at once;
    /// shards past it are dropped by the next [`Store::apply_retention`].
    pub fn set_retention_days(&self, days: Option<u32>) -> Result<()> {
        crate::config::check_retention(days)?;
        // Serialised with retention runs, so a run never sees half a change.
        let _maintenance = lock(&self.inner.maintenance);
        self.inner.catalog.set_retention_days(days)?;
        self.inner
            .retention_days
            .store(days.unwrap_or(0), Ordering::Relaxed);
        Ok(())
    }

    /// The dictionaries, to resolve ids in [`crate::Row`]s. Hold the guard briefly: appends wait for it.
    pub fn dictionaries(&self) -> RwLockReadGuard<'_, Dictionaries> {
        read(&self.inner.dicts)
    }

    pub fn catalog(&self) -> &dyn Catalog {
        &*self.inner.catalog
    }

    pub fn layout(&self) -> SpanLayout {
        self.inner.layout
    }

    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// What opening the store found and repaired (and, once the first maintenance
    /// pass looked, the orphan files it removed).
    pub fn recovery(&self) -> RecoveryReport {
        let mut r = lock(&self.inner.recovery).clone();
        r.dict_snapshot_damage = read(&self.inner.dicts)
            .snapshot_damage()
            .map(str::to_string);
        r
    }

    /// Number of WAL files on disk (for tests and monitoring of checkpoints).
    /// Durations of group commits so far (write + fsync of the logs): one per fsync,
    /// however many batches it covered.
    pub fn commit_latency(&self) -> crate::stats::HistogramSnapshot {
        self.inner.commit_seconds.snapshot()
    }

    /// Why the store refuses writes, when an earlier write or fsync failed: it does
    /// until reopened (queries keep working).
    pub fn failed(&self) -> Option<String> {
        self.inner.failed.get().cloned()
    }

    /// Subject ids below this are durable and never reassigned (a crash can lose only
    /// entries past it, whose events were never acknowledged): what an index kept on
    /// disk may hold.
    pub fn durable_subjects(&self) -> usize {
        self.inner.durable_subjects.load(Ordering::Acquire)
    }

    /// Memory the unsealed events of every shard take now, in bytes (what
    /// `StoreConfig::memory_budget_bytes` bounds).
    pub fn memory_part_bytes(&self) -> u64 {
        self.inner.memory_bytes.load(Ordering::Relaxed)
    }

    /// Memory parts sealed early because the memory budget was exceeded, since open.
    pub fn budget_seals(&self) -> u64 {
        self.inner.budget_seals.load(Ordering::Relaxed)
    }

    pub fn wal_file_count(&self) -> usize {
        lock(&self.inner.logs).wal.file_count()
    }
}

/// What replaying the logs gives: the logs open for appending, the dictionaries, the
/// open shards' source ids and the highest sequence number seen.
pub(crate) struct Replayed {
    pub dict_log: DictLog,
    pub dicts: Dictionaries,
    pub wal: Wal,
    pub source_ids: HashMap<ShardKey, HashMap<Box<str>, u64>>,
    pub max_seq: u64,
}

/// Loads the dictionary log and replays the WAL into `shards` (whose sealed state the
/// manifest gave), skipping what is sealed. The part of opening a store that reads the
/// logs' bytes; the fuzzers call it without a catalog around it.
pub(crate) fn replay_logs(
    dir: &Path,
    config: &StoreConfig,
    shards: &mut BTreeMap<ShardKey, Shard>,
    max_seq: u64,
    recorded_dict_counts: [u32; 3],
    recovery: &mut RecoveryReport,
) -> Result<Replayed> {
    let io = &config.io;
    let layout = config.layout();
    let (dict_log, dicts, dict_torn) =
        DictLog::open(io, &dir.join("dict.log"), recorded_dict_counts)?;
    recovery.dict_torn_tail = dict_torn;
    recovery.dict_snapshot_ignored = dict_log.snapshot_ignored().map(str::to_string);
    let mut source_ids: HashMap<ShardKey, HashMap<Box<str>, u64>> = HashMap::new();
    let max_seq = std::cell::Cell::new(max_seq);
    let (wal, wal_torn) = Wal::open(
        io.clone(),
        &dir.join("wal"),
        config.wal_file_bytes,
        |path, off, first_seq, events| {
            recovery.wal_batches_replayed += 1;
            for (i, e) in events.into_iter().enumerate() {
                let seq = first_seq + i as u64;
                max_seq.set(max_seq.get().max(seq));
                let known = (e.community as usize) < dicts.len_communities()
                    && (e.device as usize) < dicts.len_devices()
                    && (e.subject as usize) < dicts.len_subjects()
                    && crate::Kind::from_code(e.kd >> 2).is_some()
                    && crate::Direction::from_code(e.kd & 3).is_some();
                if !known {
                    return Err(StorageError::corrupt(
                        path,
                        off,
                        format!("event {seq} refers to ids missing from dict.log"),
                    ));
                }
                let key = ShardKey {
                    community: e.community,
                    span: layout.span_of(e.ts_ms),
                };
                let shard = shards.entry(key).or_default();
                if seq <= shard.state.sealed_through_seq {
                    recovery.wal_events_already_sealed += 1;
                    continue;
                }
                let source_id =
                    source_id_of(&e.attrs).map_err(|r| StorageError::corrupt(path, off, r))?;
                if let Some(s) = &source_id {
                    source_ids.entry(key).or_default().insert(s.clone(), seq);
                }
                shard.mem.push(StoredRow {
                    seq,
                    ts_ms: e.ts_ms,
                    device: e.device,
                    subject: e.subject,
                    kd: e.kd,
                    attrs: e.attrs.into(),
                    source_id,
                });
                recovery.wal_events_replayed += 1;
            }
            Ok(())
        },
        || max_seq.get() + 1,
    )?;
    recovery.wal_torn_tail = wal_torn;
    shards.retain(|_, s| {
        !s.segments.is_empty() || !s.mem.is_empty() || s.state != ShardState::default()
    });
    Ok(Replayed {
        dict_log,
        dicts,
        wal,
        source_ids,
        max_seq: max_seq.get(),
    })
}

/// Takes the store's `LOCK` file (creating it when `create`), so only one process
/// has a store open; the lock lasts as long as the returned file.
pub(crate) fn lock_store(dir: &Path, create: bool) -> Result<File> {
    let lock_path = dir.join("LOCK");
    let file = if create {
        File::create(&lock_path)
    } else {
        File::open(&lock_path)
    }
    .map_err(|e| StorageError::io(&lock_path, e))?;
    file.try_lock().map_err(|e| match e {
        fs::TryLockError::WouldBlock => StorageError::io(
            &lock_path,
            std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                "another process has this store open; stop it first",
            ),
        ),
        fs::TryLockError::Error(e) => StorageError::io(&lock_path, e),
    })?;
    Ok(file)
}

/// Opens the segments a manifest of an older version listed without their facts
/// (`missing`: shard, position in its state, path), checks each is its shard's, puts
/// them in `shards` at their place, and records their facts in the manifest so the
/// next open reads none of them. Returns the largest sequence number they hold.
fn fill_segment_facts(
    catalog: &SledCatalog,
    io: &Arc<dyn crate::io::FileIo>,
    shards: &mut BTreeMap<ShardKey, Shard>,
    missing: &[(ShardKey, usize, PathBuf)],
) -> Result<u64> {
    let paths: Vec<PathBuf> = missing.iter().map(|(_, _, p)| p.clone()).collect();
    let opened = open_segments(&**io, &paths)?;
    let mut max_seq = 0;
    let mut by_shard: BTreeMap<ShardKey, HashMap<usize, Arc<Segment>>> = BTreeMap::new();
    for ((key, i, _), seg) in missing.iter().zip(opened) {
        sealed::check_entry(&seg, *key, &shards[key].state.segments[*i])?;
        max_seq = max_seq.max(seg.meta().max_seq);
        by_shard.entry(*key).or_default().insert(*i, Arc::new(seg));
    }
    let mut states = Vec::with_capacity(by_shard.len());
    for (key, mut opened) in by_shard {
        let shard = shards.get_mut(&key).expect("listed above");
        // The entries with facts, in the manifest's order, without the others.
        let mut listed = std::mem::take(&mut shard.segments).into_iter();
        for (i, entry) in shard.state.segments.iter_mut().enumerate() {
            shard.segments.push(match opened.remove(&i) {
                Some(seg) => {
                    entry.facts = Some(sealed::facts_of(&seg));
                    Arc::new(SealedSegment::opened(key, entry.id, seg, io)?)
                }
                None => listed.next().expect("every other entry was listed"),
            });
        }
        states.push((key, shard.state.clone()));
    }
    // Derived from the files: failing to record it costs only the same work at the
    // next open.
    if let Err(e) = catalog.put_shard_states(&states) {
        tracing::warn!(error = %e, "segment facts not recorded in the manifest");
    }
    Ok(max_seq)
}

/// Maps and verifies the segments at `paths`, in that order, on up to as many threads
/// as there are cores (each opens a contiguous chunk). The first damaged file in
/// `paths` order is the error.
fn open_segments(io: &dyn crate::io::FileIo, paths: &[PathBuf]) -> Result<Vec<Segment>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let chunk = paths.len().div_ceil(threads).max(64);
    let results: Vec<Result<Vec<Segment>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = paths
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|p| Segment::open_with(io, p))
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a segment-opening thread panicked"))
            .collect()
    });
    let mut out = Vec::with_capacity(paths.len());
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}

/// Removes files under `segments/` that are not in `referenced` (left by a crash
/// between writing a file and committing the manifest), and span directories left
/// empty. The caller holds the maintenance lock, so no seal or compaction is writing
/// a file it would take for an orphan.
pub(crate) fn remove_orphans(
    io: &dyn crate::io::FileIo,
    dir: &Path,
    referenced: &HashSet<PathBuf>,
) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    if !dir.exists() {
        return Ok(removed);
    }
    for span_dir in fs::read_dir(dir).map_err(|e| StorageError::io(dir, e))? {
        let span_dir = span_dir.map_err(|e| StorageError::io(dir, e))?.path();
        if !span_dir.is_dir() {
            continue;
        }
        let mut any_left = false;
        for f in fs::read_dir(&span_dir).map_err(|e| StorageError::io(&span_dir, e))? {
            let f = f.map_err(|e| StorageError::io(&span_dir, e))?.path();
            if referenced.contains(&f) {
                any_left = true;
            } else {
                io.remove_file(&f).map_err(|e| StorageError::io(&f, e))?;
                tracing::warn!(path = %f.display(), "removed file not in the manifest");
                removed.push(f);
            }
        }
        if !any_left {
            fs::remove_dir(&span_dir).map_err(|e| StorageError::io(&span_dir, e))?;
        }
    }
    if !removed.is_empty() {
        crate::fsutil::fsync_dir(io, dir)?;
    }
    Ok(removed)
}

/// Times the steps of opening a store, for the debug log.
struct Lap {
    start: std::time::Instant,
    last: std::time::Instant,
}

impl Lap {
    fn start() -> Lap {
        let now = std::time::Instant::now();
        Lap {
            start: now,
            last: now,
        }
    }
    fn step(&mut self, what: &str) {
        let now = std::time::Instant::now();
        tracing::debug!(
            step = what,
            ms = (now - self.last).as_secs_f64() * 1e3,
            "opening the store"
        );
        self.last = now;
    }
    fn total_ms(&self) -> f64 {
        self.start.elapsed().as_secs_f64() * 1e3
    }
}
