//! Sealed segments a store holds only by name, fetched on first use into a bounded
//! local cache.
//!
//! A store restored from object storage without its segment files (a cluster's read
//! replica: [`crate::Restore::add_remote_segment`]) lists each such segment in its
//! manifest with its facts, and its [`crate::StoreConfig::remote_segments`] names a
//! [`SegmentSource`] that can fetch the file and the [`SegmentCache`] that keeps it.
//! The first read that needs the segment fetches the whole file, writes it under its
//! manifest name, verifies every byte ([`Segment::verify`]) and its header against the
//! manifest's facts, and only then keeps it: a file that fails is removed, never kept,
//! and the read fails with an error naming it (the next read fetches again).
//!
//! The cache is bounded by bytes of segment files (one bound for every store sharing
//! it: a query node's replicas). Past the bound the least recently used files are
//! unlinked. A reader holding a segment keeps its mapping (unix unlink semantics: the
//! bytes stay until the last mapping goes), so eviction never pulls a segment from
//! under a query; the disk may hold evicted files that long, and the bound is
//! exceeded by the newest file alone when that file is larger than the bound.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use lru::LruCache;

use crate::error::{Result, StorageError};
use crate::fsutil::{write_atomic, Out};
use crate::io::FileIo;
use crate::segment::Segment;

/// Fetches the files of segments a store was restored without (a cluster's object
/// storage). Called on the thread of the read that needs the segment (the store's
/// reads are blocking).
pub trait SegmentSource: Send + Sync {
    /// Whether `file` (a segment's name relative to its store, as the manifest lists
    /// it) is one this source fetches; other segments are the store's own files.
    fn holds(&self, file: &str) -> bool;

    /// The whole file `file`; an error is why not (what was asked of whom).
    fn fetch(&self, file: &str) -> std::result::Result<Vec<u8>, String>;
}

/// A store's segments fetched on first use: where from and where to keep them.
#[derive(Clone)]
pub struct RemoteSegments {
    pub source: Arc<dyn SegmentSource>,
    pub cache: Arc<SegmentCache>,
}

impl std::fmt::Debug for RemoteSegments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSegments")
            .field("cache", &self.cache.stats())
            .finish_non_exhaustive()
    }
}

/// What a [`SegmentCache`] holds and has done since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// The bound, in bytes of segment files.
    pub capacity_bytes: u64,
    /// Bytes of the files it holds now, and how many.
    pub bytes: u64,
    pub segments: u64,
    /// Reads that found their segment held.
    pub hits: u64,
    /// Reads that fetched it.
    pub misses: u64,
    /// Files unlinked to stay within the bound.
    pub evictions: u64,
    /// Bytes fetched (every miss's file, kept or not).
    pub fetched_bytes: u64,
    /// Fetches that failed (the source's error, or a file that failed verification).
    pub failures: u64,
}

struct Held {
    seg: Arc<Segment>,
    bytes: u64,
}

struct State {
    /// By path, least recently used first out.
    lru: LruCache<PathBuf, Held>,
    bytes: u64,
}

/// A bounded, least-recently-used set of fetched segment files (module doc).
pub struct SegmentCache {
    capacity_bytes: u64,
    state: Mutex<State>,
    /// A lock per path being fetched: two first readers of one segment fetch it once.
    fetching: Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    fetched_bytes: AtomicU64,
    failures: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding it cannot leave the map half changed (each change is one
    // call), so a poisoned lock is taken as it is.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SegmentCache {
    /// A cache holding at most `capacity_bytes` of segment files (but always the one
    /// just fetched).
    pub fn new(capacity_bytes: u64) -> Arc<SegmentCache> {
        Arc::new(SegmentCache {
            capacity_bytes,
            state: Mutex::new(State {
                lru: LruCache::unbounded(),
                bytes: 0,
            }),
            fetching: Mutex::new(HashMap::new()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            fetched_bytes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        })
    }

    pub fn stats(&self) -> CacheStats {
        let (bytes, segments) = {
            let st = lock(&self.state);
            (st.bytes, st.lru.len() as u64)
        };
        CacheStats {
            capacity_bytes: self.capacity_bytes,
            bytes,
            segments,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            fetched_bytes: self.fetched_bytes.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }

    /// Whether the file at `path` is held now.
    pub fn holds(&self, path: &Path) -> bool {
        lock(&self.state).lru.contains(path)
    }

    fn hit(&self, path: &Path) -> Option<Arc<Segment>> {
        let seg = lock(&self.state).lru.get(path).map(|h| h.seg.clone());
        if seg.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        seg
    }

    /// The segment at `path`: held, or fetched with `fetch`, written there through
    /// `io`, verified whole and checked with `check` (the manifest's facts) before it
    /// is kept. A failure is the error, naming `path`; nothing of it is kept.
    pub(crate) fn get_or_fetch(
        &self,
        path: &Path,
        io: &dyn FileIo,
        fetch: impl FnOnce() -> std::result::Result<Vec<u8>, String>,
        check: impl FnOnce(&Segment) -> Result<()>,
    ) -> Result<Arc<Segment>> {
        if let Some(seg) = self.hit(path) {
            return Ok(seg);
        }
        let one = lock(&self.fetching)
            .entry(path.to_path_buf())
            .or_default()
            .clone();
        let fetched = {
            let _one = lock(&one);
            // Another first reader may have fetched it while this one waited.
            match self.hit(path) {
                Some(seg) => Ok(seg),
                None => self.fetch(path, io, fetch, check),
            }
        };
        {
            let mut fetching = lock(&self.fetching);
            // The last waiter takes the path's lock away (clones are made and dropped
            // only under this lock, so the count is exact here).
            if Arc::strong_count(&one) == 2 {
                fetching.remove(path);
            }
            drop(one);
        }
        fetched
    }

    fn fetch(
        &self,
        path: &Path,
        io: &dyn FileIo,
        fetch: impl FnOnce() -> std::result::Result<Vec<u8>, String>,
        check: impl FnOnce(&Segment) -> Result<()>,
    ) -> Result<Arc<Segment>> {
        self.misses.fetch_add(1, Ordering::Relaxed);
        let failed = |e: StorageError| {
            self.failures.fetch_add(1, Ordering::Relaxed);
            e
        };
        let bytes = match fetch() {
            Ok(bytes) => bytes,
            Err(reason) => {
                // A file left at `path` (evicted while this read was fetching it again:
                // `unlink_evicted` left it to this fetch) goes with the failure.
                remove_quietly(io, path);
                return Err(failed(StorageError::Fetch {
                    path: path.to_path_buf(),
                    reason,
                }));
            }
        };
        self.fetched_bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let len = bytes.len() as u64;
        let kept = write_atomic(io, path, |out| out.put(&bytes)).and_then(|()| {
            let seg = Segment::open_with(io, path)?;
            seg.verify()?;
            check(&seg)?;
            Ok(seg)
        });
        let seg = match kept {
            Ok(seg) => Arc::new(seg),
            Err(e) => {
                // Never kept: the next read fetches it again. Nor is a half-written
                // temporary file (a failed write).
                for p in [path.to_path_buf(), path.with_extension("tmp")] {
                    if let Err(rm) = io.remove_file(&p) {
                        if rm.kind() != std::io::ErrorKind::NotFound {
                            tracing::warn!(error = %rm, path = %p.display(), "a fetched segment that failed not removed");
                        }
                    }
                }
                tracing::error!(error = %e, path = %path.display(), "a fetched segment failed verification");
                return Err(failed(e));
            }
        };
        let evicted = {
            let mut st = lock(&self.state);
            st.lru.put(
                path.to_path_buf(),
                Held {
                    seg: seg.clone(),
                    bytes: len,
                },
            );
            st.bytes += len;
            let mut evicted = Vec::new();
            while st.bytes > self.capacity_bytes && st.lru.len() > 1 {
                let Some((p, held)) = st.lru.pop_lru() else {
                    break;
                };
                st.bytes -= held.bytes;
                evicted.push(p);
            }
            evicted
        };
        for p in evicted {
            self.evictions.fetch_add(1, Ordering::Relaxed);
            self.unlink_evicted(&p, io);
        }
        tracing::debug!(path = %path.display(), bytes = len, "segment fetched");
        Ok(seg)
    }

    /// Unlinks an evicted file unless a read is fetching it again (its fetch replaces
    /// the file, or removes it if it fails): checked and unlinked under the lock a
    /// fetch takes before it writes, so a file fetched again is never unlinked.
    fn unlink_evicted(&self, path: &Path, io: &dyn FileIo) {
        let fetching = lock(&self.fetching);
        if !fetching.contains_key(path) {
            remove_quietly(io, path);
        }
    }

    /// Takes the file at `path` out of the cache and off the disk (its segment was
    /// replaced or dropped); readers holding it keep their mapping.
    pub(crate) fn forget(&self, path: &Path, io: &dyn FileIo) {
        let held = {
            let mut st = lock(&self.state);
            let held = st.lru.pop(path);
            if let Some(h) = &held {
                st.bytes -= h.bytes;
            }
            held
        };
        if held.is_some() {
            remove_quietly(io, path);
        }
    }

    /// Takes every file under `dir` out of the cache without touching the disk: the
    /// caller removes the directory (a replica withdrawn).
    pub fn forget_under(&self, dir: &Path) {
        let mut st = lock(&self.state);
        let gone: Vec<PathBuf> = st
            .lru
            .iter()
            .filter(|(p, _)| p.starts_with(dir))
            .map(|(p, _)| p.clone())
            .collect();
        for p in gone {
            if let Some(h) = st.lru.pop(&p) {
                st.bytes -= h.bytes;
            }
        }
    }
}

fn remove_quietly(io: &dyn FileIo, path: &Path) {
    match io.remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(error = %e, path = %path.display(), "an evicted segment file not removed")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use super::{RemoteSegments, SegmentCache, SegmentSource};
    use crate::{
        AttrValue, Attrs, EventInput, ManualClock, Restore, ShardKey, StorageError, Store,
        StoreConfig, Validator,
    };

    const DAY0: i64 = 1_630_425_600_000;
    const DAY: i64 = 86_400_000;

    fn event(ts_ms: i64, community: &str, n: u32) -> crate::Event {
        let mut attrs = Attrs::new();
        attrs.insert(
            "source_id".into(),
            AttrValue::Str(format!("S{community}{ts_ms}-{n}")),
        );
        let input = EventInput {
            ts_ms,
            community: community.into(),
            device: format!("3205080101121{:07}", n % 5),
            kind: "vehicle".into(),
            subject: format!("苏E{:05}", n % 13),
            direction: "in".into(),
            attrs,
        };
        Validator::default()
            .validate(input, i64::MAX / 2)
            .expect("test event is valid")
    }

    /// An object store in memory: file → bytes, with a switch to damage one file's
    /// bytes or to fail, and a count of fetches.
    #[derive(Default)]
    struct MapSource {
        files: HashMap<String, Vec<u8>>,
        damaged: Mutex<Option<String>>,
        down: std::sync::atomic::AtomicBool,
        fetches: AtomicU64,
        /// Called at each fetch (what else can go on meanwhile).
        during_fetch: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
    }

    impl SegmentSource for MapSource {
        fn holds(&self, file: &str) -> bool {
            self.files.contains_key(file)
        }
        fn fetch(&self, file: &str) -> Result<Vec<u8>, String> {
            if self.down.load(Ordering::Relaxed) {
                return Err("object storage is away".into());
            }
            self.fetches.fetch_add(1, Ordering::Relaxed);
            if let Some(f) = self.during_fetch.get() {
                f();
            }
            let mut bytes = self.files.get(file).cloned().ok_or("no such object")?;
            if self.damaged.lock().unwrap().as_deref() == Some(file) {
                let mid = bytes.len() / 2;
                bytes[mid] ^= 0x40;
            }
            Ok(bytes)
        }
    }

    struct Restored {
        _dirs: (tempfile::TempDir, tempfile::TempDir),
        dir: std::path::PathBuf,
        store: Store,
        source: Arc<MapSource>,
        cache: Arc<SegmentCache>,
        want: Vec<crate::StoredEvent>,
        /// Bytes of every segment file.
        total_bytes: u64,
        largest: u64,
    }

    /// A store of 3 communities × 4 days sealed, restored elsewhere without its
    /// segment files, opened with a cache of `capacity` bytes.
    fn restored(capacity: impl Fn(u64, u64) -> u64) -> Restored {
        restored_through(capacity, None)
    }

    /// As [`restored`], the copy's files written through `io`.
    fn restored_through(
        capacity: impl Fn(u64, u64) -> u64,
        io: Option<Arc<dyn crate::io::FileIo>>,
    ) -> Restored {
        let origin = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(DAY0 + 10 * DAY));
        let store =
            Store::open_with_clock(origin.path(), StoreConfig::default(), clock.clone()).unwrap();
        for day in 0..4 {
            let batch: Vec<_> = (0..300u32)
                .map(|i| {
                    let c = ["c1", "c2", "c3"][i as usize % 3];
                    event(DAY0 + day * DAY + i64::from(i) * 60_000, c, i)
                })
                .collect();
            store.append(&batch).unwrap();
            store.seal_all().unwrap();
        }
        let want = store.read_events(0, i64::MAX, None).unwrap();
        let dict = store.dictionary_log_from(0).unwrap();
        let manifest = store.catalog().manifest().unwrap();
        let mut source = MapSource::default();
        let target = tempfile::tempdir().unwrap();
        let dir = target.path().join("r0");
        let mut restore = Restore::new(&dir, &StoreConfig::default(), &dict).unwrap();
        let (mut total_bytes, mut largest) = (0, 0);
        for (key, state) in &manifest.shards {
            for e in &state.segments {
                let bytes = std::fs::read(origin.path().join(&e.file)).unwrap();
                total_bytes += bytes.len() as u64;
                largest = largest.max(bytes.len() as u64);
                source.files.insert(e.file.clone(), bytes);
                restore.add_remote_segment(*key, e.clone()).unwrap();
            }
        }
        restore.finish().unwrap();
        drop(store);
        let source = Arc::new(source);
        let cache = SegmentCache::new(capacity(total_bytes, largest));
        let mut config = StoreConfig {
            remote_segments: Some(RemoteSegments {
                source: source.clone(),
                cache: cache.clone(),
            }),
            ..StoreConfig::default()
        };
        if let Some(io) = io {
            config.io = io;
        }
        let store = Store::open_with_clock(&dir, config, clock).unwrap();
        Restored {
            _dirs: (origin, target),
            dir,
            store,
            source,
            cache,
            want,
            total_bytes,
            largest,
        }
    }

    fn segment_files(dir: &Path) -> Vec<(std::path::PathBuf, u64)> {
        let mut out = Vec::new();
        let Ok(spans) = std::fs::read_dir(dir.join("segments")) else {
            return out;
        };
        for span in spans {
            for f in std::fs::read_dir(span.unwrap().path()).unwrap() {
                let f = f.unwrap();
                out.push((f.path(), f.metadata().unwrap().len()));
            }
        }
        out
    }

    /// What an append's duplicate check would fetch is named before the append (so a
    /// caller fetches it all at once): the unfetched segments of the shards its events
    /// with a source id go to, none once they are held, and none for a new shard.
    #[test]
    fn an_append_names_the_segments_its_duplicate_check_would_fetch() {
        let r = restored(|total, _| total);
        // Day 1 of c2: one shard, one segment (one seal a day).
        let again = vec![event(DAY0 + DAY + 60_000, "c2", 1)];
        let wanted = r.store.unfetched_for_append(&again);
        assert_eq!(wanted.len(), 1, "{wanted:?}");
        let (file, len) = &wanted[0];
        assert!(r.source.holds(file), "{file}");
        assert_eq!(*len, r.source.files[file].len() as u64);
        assert_eq!(
            r.source.fetches.load(Ordering::Relaxed),
            0,
            "naming fetches nothing"
        );
        // Appended: the one segment fetched by the check, then held.
        r.store.append(&again).unwrap();
        assert_eq!(r.source.fetches.load(Ordering::Relaxed), 1);
        assert!(r.store.unfetched_for_append(&again).is_empty());
        // A day no segment holds yet, and an event without a source id: nothing.
        assert!(r
            .store
            .unfetched_for_append(&[event(DAY0 + 9 * DAY, "c1", 3)])
            .is_empty());
        let plain = event_without_source_id(DAY0 + 2 * DAY + 60_000, "c3");
        assert!(r.store.unfetched_for_append(&[plain]).is_empty());
    }

    fn event_without_source_id(ts_ms: i64, community: &str) -> crate::Event {
        let input = EventInput {
            ts_ms,
            community: community.into(),
            device: "32050801011210000001".into(),
            kind: "vehicle".into(),
            subject: "苏E00001".into(),
            direction: "in".into(),
            attrs: Attrs::new(),
        };
        Validator::default()
            .validate(input, i64::MAX / 2)
            .expect("test event is valid")
    }

    /// Opening fetches nothing; reads fetch what they need, answer as the store the
    /// files came from, and the files on disk stay within the bound (LRU evictions).
    #[test]
    fn a_lazily_restored_store_fetches_on_first_use_within_its_bound() {
        let r = restored(|total, largest| (total / 3).max(largest));
        assert_eq!(r.source.fetches.load(Ordering::Relaxed), 0);
        assert!(segment_files(&r.dir).is_empty(), "opening fetched nothing");
        assert_eq!(r.store.segments_mapped(), (0, 12));
        let bound = r.cache.stats().capacity_bytes;
        assert!(bound < r.total_bytes);
        for _ in 0..2 {
            assert_eq!(r.store.read_events(0, i64::MAX, None).unwrap(), r.want);
            let on_disk: u64 = segment_files(&r.dir).iter().map(|(_, n)| n).sum();
            assert!(on_disk <= bound, "{on_disk} bytes on disk, bound {bound}");
        }
        let s = r.cache.stats();
        assert!(s.bytes <= bound && s.bytes > 0, "{s:?}");
        assert_eq!(s.misses, r.source.fetches.load(Ordering::Relaxed));
        assert!(
            s.misses > 12,
            "the second pass fetched evicted files again: {s:?}"
        );
        assert!(s.evictions >= s.misses - s.segments, "{s:?}");
        assert_eq!(s.failures, 0);
        assert_eq!(s.fetched_bytes, 2 * r.total_bytes);

        // A day's reads: its three segments fetched once, then hits.
        let before = r.cache.stats();
        let day = |d: i64| {
            r.store
                .read_events(DAY0 + d * DAY, DAY0 + (d + 1) * DAY, None)
        };
        let want_day: Vec<_> = r
            .want
            .iter()
            .filter(|e| e.event.ts_ms >= DAY0 + DAY && e.event.ts_ms < DAY0 + 2 * DAY)
            .cloned()
            .collect();
        assert_eq!(day(1).unwrap(), want_day);
        assert_eq!(day(1).unwrap(), want_day);
        let after = r.cache.stats();
        assert!(after.misses - before.misses <= 3, "{before:?} {after:?}");
        assert!(after.hits > before.hits, "{before:?} {after:?}");
    }

    /// An append whose source-id check reads sealed segments not fetched yet fetches
    /// them before it takes the store's locks: another append goes on meanwhile; the
    /// check still finds a re-sent event.
    #[test]
    fn an_append_fetches_what_its_duplicate_check_reads_outside_its_locks() {
        let r = restored(|total, _| total);
        let other = r.store.clone();
        let blocked = Arc::new(AtomicU64::new(0));
        let b = blocked.clone();
        let hook = move || {
            let (tx, rx) = std::sync::mpsc::channel();
            let s = other.clone();
            std::thread::spawn(move || {
                // No source id: no duplicate check, so nothing of its own to fetch.
                let input = EventInput {
                    ts_ms: DAY0 + 9 * DAY,
                    community: "c9".into(),
                    device: "32050801011210000001".into(),
                    kind: "vehicle".into(),
                    subject: "苏E00001".into(),
                    direction: "in".into(),
                    attrs: Attrs::new(),
                };
                let e = Validator::default().validate(input, i64::MAX / 2).unwrap();
                let _ = tx.send(s.append(&[e]).is_ok());
            });
            if rx.recv_timeout(std::time::Duration::from_secs(5)) != Ok(true) {
                b.fetch_add(1, Ordering::Relaxed);
            }
        };
        assert!(r.source.during_fetch.set(Box::new(hook)).is_ok());
        // A new event into day 0 of c1 and the first event of that shard re-sent.
        let fresh = event(DAY0 + 7, "c1", 1_000);
        let again = event(DAY0, "c1", 0);
        let out = r.store.append(&[fresh, again]).unwrap();
        assert!(r.source.fetches.load(Ordering::Relaxed) > 0);
        assert_eq!(
            blocked.load(Ordering::Relaxed),
            0,
            "an append waited on a fetch"
        );
        assert!(
            matches!(out.results[0], crate::Appended::Stored { .. }),
            "{out:?}"
        );
        assert!(
            matches!(out.results[1], crate::Appended::Duplicate { .. }),
            "{out:?}"
        );
    }

    /// A fetched file whose write fails leaves nothing behind, its temporary file
    /// included; the next read fetches it again.
    #[test]
    fn a_fetched_segment_whose_write_fails_leaves_no_file() {
        use crate::io::{Fault, FaultKind, FaultyIo, Op};
        let io = FaultyIo::new();
        let r = restored_through(|total, _| total, Some(io.clone()));
        let mut fault = Fault::new(Op::Sync, ".tmp", FaultKind::Errno(5));
        fault.times = Some(1);
        io.inject(fault);
        assert!(r.store.read_events(0, i64::MAX, None).is_err());
        assert_eq!(io.injected(), 1);
        let left: Vec<_> = segment_files(&r.dir)
            .into_iter()
            .filter(|(p, _)| p.extension().is_some_and(|e| e == "tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        assert_eq!(r.store.read_events(0, i64::MAX, None).unwrap(), r.want);
    }

    /// First readers of a segment at once fetch it once.
    #[test]
    fn concurrent_first_readers_fetch_each_segment_once() {
        let r = restored(|total, _| total);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    assert_eq!(r.store.read_events(0, i64::MAX, None).unwrap(), r.want);
                });
            }
        });
        assert_eq!(r.source.fetches.load(Ordering::Relaxed), 12);
        let s = r.cache.stats();
        assert_eq!((s.misses, s.segments, s.evictions), (12, 12, 0), "{s:?}");
        assert!(r.cache.fetching.lock().unwrap().is_empty());
    }

    /// A bound below one file still answers: the newest file alone is kept.
    #[test]
    fn a_bound_below_one_segment_keeps_only_the_newest() {
        let r = restored(|_, _| 1);
        assert_eq!(r.store.read_events(0, i64::MAX, None).unwrap(), r.want);
        let s = r.cache.stats();
        assert_eq!(s.segments, 1, "{s:?}");
        assert!(s.bytes <= r.largest);
        assert_eq!(segment_files(&r.dir).len(), 1);
        assert_eq!(s.evictions, 11);
    }

    /// A fetched file that fails verification is an error naming it, is not kept
    /// (neither in the cache nor on disk), and a good fetch later answers; a source
    /// that fails is a `Fetch` error; neither is a panic or a wrong answer.
    #[test]
    fn a_fetched_segment_failing_verification_is_refused_and_not_kept() {
        let r = restored(|total, _| total);
        let file = r.source.files.keys().min().unwrap().clone();
        *r.source.damaged.lock().unwrap() = Some(file.clone());
        let err = r.store.read_events(0, i64::MAX, None).unwrap_err();
        assert!(
            matches!(&err, StorageError::Corrupt { path, .. } if path.ends_with(&file)),
            "{err}"
        );
        assert!(!r.dir.join(&file).exists(), "a damaged file is not kept");
        assert!(!r.dir.join(&file).with_extension("tmp").exists());
        assert!(!r.cache.holds(&r.dir.join(&file)));
        assert_eq!(r.cache.stats().failures, 1);

        *r.source.damaged.lock().unwrap() = None;
        // A file left at a path a failed fetch was fetching again (an eviction leaves
        // such a file to the fetch) goes with the failure; so does a temporary file.
        std::fs::create_dir_all(r.dir.join(&file).parent().unwrap()).unwrap();
        std::fs::write(r.dir.join(&file), b"evicted meanwhile").unwrap();
        r.source.down.store(true, Ordering::Relaxed);
        assert!(r.store.read_events(0, i64::MAX, None).is_err());
        assert!(
            !r.dir.join(&file).exists(),
            "a file a failed fetch leaves is removed"
        );
        // Files fetched before the failure are still held; the rest cannot be.
        let err = r.store.read_events(0, i64::MAX, None).unwrap_err();
        assert!(matches!(err, StorageError::Fetch { .. }), "{err}");
        assert!(err.to_string().contains("object storage is away"), "{err}");

        r.source.down.store(false, Ordering::Relaxed);
        assert_eq!(r.store.read_events(0, i64::MAX, None).unwrap(), r.want);
        assert!(r.dir.join(&file).exists());
        let s = r.cache.stats();
        assert_eq!(s.segments, 12);
        assert_eq!(s.failures, 3);
    }

    /// Maintenance reads what it merges: compaction of a shard whose segments were
    /// never fetched fetches them, verifies them, writes the merged file locally and
    /// takes the replaced ones out of the cache; answers stay the same.
    #[test]
    fn compaction_of_a_lazily_restored_shard_fetches_its_inputs() {
        let r = restored(|total, _| total);
        let key: ShardKey = r.store.shards()[0].key;
        let c = r
            .store
            .dictionaries()
            .community(key.community)
            .unwrap()
            .to_string();
        let late = event(r.store.layout().start_ms(key.span) + 7, &c, 4);
        r.store.append(&[late]).unwrap();
        r.store.seal_all().unwrap();
        assert_eq!(r.store.segments(key).unwrap().len(), 2);
        let want = r.store.read_events(0, i64::MAX, None).unwrap();
        assert!(r.store.compact_shard(key).unwrap());
        let segs = r.store.segments(key).unwrap();
        assert_eq!(segs.len(), 1);
        assert!(segs[0].path().exists());
        assert_eq!(r.store.read_events(0, i64::MAX, None).unwrap(), want);
        // The replaced remote file left the cache and the disk.
        let held: Vec<_> = segment_files(&r.dir);
        assert_eq!(held.len() as u64, r.cache.stats().segments + 1, "{held:?}");
    }
}
