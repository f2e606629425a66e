//! A partition's store rebuilt from what is committed: the dictionary-log chunks
//! (concatenated in order, checked to leave no gap) and the segments the catalog
//! lists, downloaded into a fresh directory through `sightline_storage::Restore`.
//!
//! With a segment cache (a query node's read replica, `query.segment_cache_bytes`),
//! a segment whose row keeps its facts and its range in a bundle is not downloaded:
//! the store lists it and fetches it on first use with one range read of its bundle
//! slice ([`ObjectSource`]), into the cache. Rows without facts (committed before
//! they were kept) are downloaded as before.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sightline_storage::catalog::SegmentFacts;
use sightline_storage::{
    RemoteSegments, Restore, SegmentCache, SegmentEntry, SegmentSource, ShardKey, Store,
    StoreConfig,
};

use crate::error::{ClusterError, Result};
use crate::meta::{Committed, Meta, SegmentRow};
use crate::objects::Objects;

/// What a restore read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    pub segments: usize,
    pub events: u64,
    pub dict_bytes: u64,
    /// Of `segments`, those listed without their files (fetched on first use).
    pub lazy_segments: usize,
    /// Bytes of segment files downloaded by the restore itself.
    pub segment_bytes: u64,
    /// Bytes of the owner's uploaded index downloaded (0: none, or no cache).
    pub index_bytes: u64,
}

/// A fetch of one segment's slice of its bundle waits at most this long (then the
/// read that needed it fails, and its query is asked of the next replica or owner).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

thread_local! {
    /// The deadline of the query this thread answers ([`with_fetch_deadline`]).
    static FETCH_DEADLINE: std::cell::Cell<Option<std::time::Instant>> =
        const { std::cell::Cell::new(None) };
}

/// Runs `f` (a partition's answer, computed on this thread) with its fetches bounded
/// by `deadline` too: a fetch never waits past the query's budget.
pub fn with_fetch_deadline<T>(deadline: Option<std::time::Instant>, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<std::time::Instant>);
    impl Drop for Restore {
        fn drop(&mut self) {
            FETCH_DEADLINE.set(self.0);
        }
    }
    let _restore = Restore(FETCH_DEADLINE.replace(deadline));
    f()
}

/// How long a fetch on this thread may wait: [`FETCH_TIMEOUT`], or less when the
/// query it serves has less left.
fn fetch_timeout() -> Duration {
    FETCH_DEADLINE.get().map_or(FETCH_TIMEOUT, |d| {
        d.saturating_duration_since(std::time::Instant::now())
            .min(FETCH_TIMEOUT)
    })
}

/// Where a lazily restored partition's segments are: file (as the manifest names
/// it) → object key and byte range. Fetches block the calling thread (the store's
/// reads run on the blocking pool) on the runtime the restore ran on.
pub struct ObjectSource {
    objects: Objects,
    runtime: tokio::runtime::Handle,
    partition: u32,
    files: HashMap<String, (String, u64, u64)>,
    /// Told the first object found gone (the janitor removed it after the commits
    /// since the restore stopped naming it): the replica is restored again from the
    /// current catalog rather than failing every read of it for ever.
    gone: Option<Arc<Gone>>,
    /// Files fetched ahead of the read that needs them ([`ObjectSource::prefetch`]):
    /// handed over by [`SegmentSource::fetch`] once, then dropped.
    staged: std::sync::Mutex<HashMap<String, bytes::Bytes>>,
}

/// Segments fetched ahead at once by [`ObjectSource::prefetch`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prefetched {
    pub segments: usize,
    pub bytes: u64,
    /// Objects read (a bundle's segments in one `get_ranges`).
    pub objects: usize,
}

/// Objects read at once by one [`ObjectSource::prefetch`].
const PREFETCH_CONCURRENCY: usize = 8;

impl ObjectSource {
    /// Fetches `files` (as the store's manifest names them) all at once, ahead of the
    /// read that needs them: grouped by object, each object's ranges with one
    /// `get_ranges` (adjacent slices of a bundle in one request), up to
    /// [`PREFETCH_CONCURRENCY`] objects at a time, the whole bounded by `within`.
    /// Kept in memory until [`SegmentSource::fetch`] hands each over (the store then
    /// verifies and caches it as any fetch) or [`ObjectSource::clear_staged`]. Files
    /// this source does not hold are skipped. On error nothing new is staged.
    pub async fn prefetch(&self, files: &[String], within: Duration) -> Result<Prefetched> {
        use futures::{FutureExt, StreamExt, TryStreamExt};
        let mut by_object: HashMap<String, Vec<(String, u64, u64)>> = HashMap::new();
        for f in files {
            if let Some((key, offset, len)) = self.files.get(f) {
                by_object
                    .entry(key.clone())
                    .or_default()
                    .push((f.clone(), *offset, *len));
            }
        }
        let objects = by_object.len();
        let partition = self.partition;
        let reads: Vec<_> = by_object
            .into_iter()
            .map(|(key, wanted)| {
                let store = self.objects.clone();
                async move {
                    let ranges: Vec<std::ops::Range<u64>> =
                        wanted.iter().map(|(_, o, l)| *o..o + l).collect();
                    let got = store.get_ranges(&key, &ranges).await?;
                    let mut out = Vec::with_capacity(wanted.len());
                    for ((file, offset, len), bytes) in wanted.into_iter().zip(got) {
                        if bytes.len() as u64 != len {
                            return Err(ClusterError::Catalog {
                                partition,
                                reason: format!(
                                    "{key} answered {} bytes for {offset}+{len}",
                                    bytes.len()
                                ),
                            });
                        }
                        out.push((file, bytes));
                    }
                    Ok::<_, ClusterError>(out)
                }
                .boxed()
            })
            .collect();
        let reads = futures::stream::iter(reads)
            .buffer_unordered(PREFETCH_CONCURRENCY)
            .try_collect::<Vec<_>>();
        let fetched = tokio::time::timeout(within, reads)
            .await
            .map_err(|_| ClusterError::Timeout("prefetching segments"))??;
        let mut done = Prefetched {
            objects,
            ..Default::default()
        };
        let mut staged = self.staged.lock().unwrap_or_else(|p| p.into_inner());
        for (file, bytes) in fetched.into_iter().flatten() {
            done.segments += 1;
            done.bytes += bytes.len() as u64;
            staged.insert(file, bytes);
        }
        Ok(done)
    }

    /// Drops what [`ObjectSource::prefetch`] staged and no read took.
    pub fn clear_staged(&self) {
        self.staged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

/// The first object of a lazily restored partition found gone from object storage
/// (`None` until then); its replica watches it and ends.
pub type Gone = tokio::sync::watch::Sender<Option<String>>;

/// Whether `e` says the object is not there (as opposed to S3 failing to answer).
fn is_not_found(e: &ClusterError) -> bool {
    matches!(
        e,
        ClusterError::Objects {
            source: object_store::Error::NotFound { .. },
            ..
        }
    )
}

impl SegmentSource for ObjectSource {
    fn holds(&self, file: &str) -> bool {
        self.files.contains_key(file)
    }

    fn fetch(&self, file: &str) -> std::result::Result<Vec<u8>, String> {
        let Some((key, offset, len)) = self.files.get(file).cloned() else {
            return Err(format!("{file} is not on object storage"));
        };
        let staged = self
            .staged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(file);
        if let Some(bytes) = staged {
            return Ok(bytes.to_vec());
        }
        let end = offset
            .checked_add(len)
            .ok_or_else(|| format!("{key}: range {offset}+{len} overflows"))?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let objects = self.objects.clone();
        let k = key.clone();
        let within = fetch_timeout();
        // Spawned rather than `block_on`: never a panic, whichever thread asks.
        self.runtime.spawn(async move {
            let got = tokio::time::timeout(within, objects.get_range(&k, offset, end)).await;
            let _ = tx.send(got);
        });
        let bytes = match rx.recv_timeout(within + Duration::from_secs(1)) {
            Ok(Ok(Ok(b))) => b,
            Ok(Ok(Err(e))) => {
                if is_not_found(&e) {
                    if let Some(gone) = &self.gone {
                        gone.send_if_modified(|first| {
                            let news = first.is_none();
                            first.get_or_insert_with(|| key.clone());
                            news
                        });
                    }
                }
                return Err(format!("partition {}: {e}", self.partition));
            }
            Ok(Err(_)) | Err(_) => {
                return Err(format!(
                    "partition {}: {key} bytes {offset}..{end} not read within {} ms",
                    self.partition,
                    within.as_millis()
                ))
            }
        };
        if bytes.len() as u64 != len {
            return Err(format!(
                "partition {}: {key} answered {} bytes for {offset}..{end}",
                self.partition,
                bytes.len()
            ));
        }
        Ok(bytes.to_vec())
    }
}

/// The facts a store lists a segment with, from its catalog row (`None`: the row
/// does not keep them, or has no range whose length is the file's).
fn facts_of_row(s: &SegmentRow) -> Option<SegmentFacts> {
    let f = s.facts?;
    let (_, len) = s.object_range?;
    Some(SegmentFacts {
        min_seq: f.min_seq,
        max_seq: s.max_seq,
        min_ts_ms: f.min_ts_ms,
        max_ts_ms: f.max_ts_ms,
        file_bytes: len,
    })
}

/// Restores `partition` into `dir` (which must not hold a store) and opens it. The
/// catalog is read in two statements: for the lease holder, whose partition nobody
/// else commits to. A reader beside a live owner uses [`Meta::committed`] (one
/// snapshot) and [`restore_committed`].
pub async fn restore_partition(
    meta: &Meta,
    objects: &Objects,
    partition: u32,
    dir: &Path,
    config: StoreConfig,
) -> Result<(Store, Restored)> {
    let committed = Committed {
        checkpoint_seq: 0,
        index_key: None,
        dict_chunks: meta.dict_chunks(partition).await?,
        segments: meta.segments(partition).await?,
    };
    restore_committed(objects, partition, &committed, dir, config, None, None).await
}

/// Restores the committed state `committed` of `partition` into `dir` (which must not
/// hold a store) and opens it.
/// With `cache`, segments whose rows keep their facts are listed, not downloaded:
/// the store fetches each on first use into `cache` (module doc); `gone` is told the
/// first such object found missing.
pub async fn restore_committed(
    objects: &Objects,
    partition: u32,
    committed: &Committed,
    dir: &Path,
    config: StoreConfig,
    cache: Option<Arc<SegmentCache>>,
    gone: Option<Arc<Gone>>,
) -> Result<(Store, Restored)> {
    restore_with_source(objects, partition, committed, dir, config, cache, gone)
        .await
        .map(|(store, restored, _)| (store, restored))
}

/// [`restore_committed`], also answering the store's [`ObjectSource`] (with a cache):
/// its owner fetches ahead what an append will read ([`ObjectSource::prefetch`]).
pub async fn restore_with_source(
    objects: &Objects,
    partition: u32,
    committed: &Committed,
    dir: &Path,
    mut config: StoreConfig,
    cache: Option<Arc<SegmentCache>>,
    gone: Option<Arc<Gone>>,
) -> Result<(Store, Restored, Option<Arc<ObjectSource>>)> {
    let chunks = &committed.dict_chunks;
    let mut dict = Vec::new();
    for c in chunks {
        if c.start != dict.len() as u64 {
            return Err(ClusterError::Catalog {
                partition,
                reason: format!(
                    "dictionary chunk {} starts at {}, the chunks before end at {}",
                    c.object_key,
                    c.start,
                    dict.len()
                ),
            });
        }
        let bytes = objects.get(&c.object_key).await?;
        if bytes.len() as u64 != c.len {
            return Err(ClusterError::Catalog {
                partition,
                reason: format!(
                    "{} has {} bytes, listed as {}",
                    c.object_key,
                    bytes.len(),
                    c.len
                ),
            });
        }
        dict.extend_from_slice(&bytes);
    }
    let (lazy, segments): (Vec<&SegmentRow>, Vec<&SegmentRow>) = committed
        .segments
        .iter()
        .partition(|s| cache.is_some() && facts_of_row(s).is_some());
    let segments: Vec<SegmentRow> = segments.into_iter().cloned().collect();
    let segments = &segments;
    // The owner's index as last uploaded: opened by the replica's serving instead of
    // reading every row (which would fetch every segment). Only with a cache: a
    // store downloaded whole reads its rows locally.
    // Checked whole before use: a damaged one is skipped (the index is then built
    // from every row).
    let index = match (&cache, &committed.index_key) {
        (Some(_), Some(key)) => {
            let bytes = objects.get(key).await?;
            let name = std::path::PathBuf::from(key);
            let copy = bytes.to_vec();
            let checked = tokio::task::spawn_blocking(move || {
                sightline_index::check_checkpoint_bytes(&name, copy)
            })
            .await
            .expect("check task panicked");
            match checked {
                Ok(()) => Some(bytes),
                Err(e) => {
                    tracing::warn!(partition, key = %key, error = %e, "uploaded index damaged; not used");
                    None
                }
            }
        }
        _ => None,
    };
    let mut source = None;
    if let Some(cache) = cache {
        let files = lazy
            .iter()
            .filter_map(|s| {
                let (offset, len) = s.object_range?;
                Some((s.file.clone(), (s.object_key.clone(), offset, len)))
            })
            .collect();
        let made = Arc::new(ObjectSource {
            objects: objects.clone(),
            runtime: tokio::runtime::Handle::current(),
            partition,
            files,
            gone,
            staged: std::sync::Mutex::new(HashMap::new()),
        });
        source = Some(made.clone());
        config.remote_segments = Some(RemoteSegments {
            source: made,
            cache,
        });
    }
    let dir_owned = dir.to_path_buf();
    let cfg = config.clone();
    let mut restore = tokio::task::spawn_blocking(move || Restore::new(&dir_owned, &cfg, &dict))
        .await
        .expect("restore task panicked")?;
    let mut report = Restored {
        dict_bytes: chunks.iter().map(|c| c.len).sum(),
        ..Default::default()
    };
    for s in &lazy {
        let key = ShardKey {
            community: s.community,
            span: s.span,
        };
        let entry = SegmentEntry {
            id: s.segment_id,
            file: s.file.clone(),
            events: s.events,
            facts: facts_of_row(s),
        };
        restore.add_remote_segment(key, entry)?;
        report.segments += 1;
        report.lazy_segments += 1;
        report.events += u64::from(s.events);
    }
    // Each segment's bytes: a run of rows lying back to back in one bundle is one
    // range read (a bundle may also hold files compaction has replaced since: those
    // gaps are never downloaded); a row from before bundles is its whole object.
    let mut i = 0;
    while i < segments.len() {
        let run = run_of(&segments[i..]);
        let object = match segments[i].object_range {
            None => objects.get(&segments[i].object_key).await?,
            Some((start, _)) => {
                let last = &segments[i + run - 1];
                let end = last
                    .object_range
                    .and_then(|(offset, len)| offset.checked_add(len))
                    .ok_or_else(|| ClusterError::Catalog {
                        partition,
                        reason: format!("segment {} has no valid range", last.segment_id),
                    })?;
                let bytes = objects
                    .get_range(&segments[i].object_key, start, end)
                    .await?;
                if bytes.len() as u64 != end - start {
                    return Err(ClusterError::Catalog {
                        partition,
                        reason: format!(
                            "{} answered {} bytes for {start}..{end}",
                            segments[i].object_key,
                            bytes.len()
                        ),
                    });
                }
                bytes
            }
        };
        report.segment_bytes += object.len() as u64;
        let base = segments[i].object_range.map_or(0, |(start, _)| start);
        for s in &segments[i..i + run] {
            let bytes = segment_bytes(partition, s, base, object.clone())?;
            let key = ShardKey {
                community: s.community,
                span: s.span,
            };
            let entry = SegmentEntry {
                id: s.segment_id,
                file: s.file.clone(),
                events: s.events,
                // Learnt from the file as it is restored.
                facts: None,
            };
            restore = tokio::task::spawn_blocking(move || {
                restore.add_segment(key, entry, &bytes).map(|()| restore)
            })
            .await
            .expect("restore task panicked")?;
            report.segments += 1;
            report.events += u64::from(s.events);
        }
        i += run;
    }
    let dir_owned = dir.to_path_buf();
    report.index_bytes = index.as_ref().map_or(0, |b| b.len() as u64);
    let store = tokio::task::spawn_blocking(move || {
        restore.finish()?;
        if let Some(bytes) = index {
            let path = dir_owned.join(sightline_index::CHECKPOINT_FILE);
            sightline_storage::write_file_atomic(&*config.io, &path, |put| put(&bytes))?;
        }
        Store::open(&dir_owned, config)
    })
    .await
    .expect("restore task panicked")?;
    Ok((store, report, source))
}

/// How many rows from the first of `rows` lie back to back in one object (a row from
/// before bundles is a run of its own).
fn run_of(rows: &[SegmentRow]) -> usize {
    let Some((first, rest)) = rows.split_first() else {
        return 0;
    };
    let Some((offset, len)) = first.object_range else {
        return 1;
    };
    let mut end = offset.saturating_add(len);
    let mut n = 1;
    for r in rest {
        match r.object_range {
            Some((o, l)) if r.object_key == first.object_key && o == end => {
                end = o.saturating_add(l);
                n += 1;
            }
            _ => break,
        }
    }
    n
}

/// The file of segment row `s` out of `object`, the bytes of its object from offset
/// `base` on: the row's range, or the whole object for a row from before bundles.
fn segment_bytes(
    partition: u32,
    s: &SegmentRow,
    base: u64,
    object: bytes::Bytes,
) -> Result<bytes::Bytes> {
    let Some((offset, len)) = s.object_range else {
        return Ok(object);
    };
    let at = offset.checked_sub(base);
    match at.and_then(|a| a.checked_add(len).map(|e| (a, e))) {
        Some((a, e)) if e <= object.len() as u64 => Ok(object.slice(a as usize..e as usize)),
        _ => Err(ClusterError::Catalog {
            partition,
            reason: format!(
                "segment {} lies at {offset}+{len} in {}, not in the {} bytes read from {base}",
                s.segment_id,
                s.object_key,
                object.len()
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(range: Option<(u64, u64)>) -> SegmentRow {
        SegmentRow {
            segment_id: 7,
            community: 1,
            span: 20_000,
            file: "segments/20000/1-7.seg".into(),
            events: 3,
            max_seq: 9,
            object_key: "p0/e1/bundle/5-7-3.segs".into(),
            object_range: range,
            facts: None,
        }
    }

    #[test]
    fn a_segment_is_its_range_of_the_bundle_or_a_whole_older_object() {
        let object = bytes::Bytes::from_static(b"aaabbbbcc");
        let cut = |range, base, o: &bytes::Bytes| segment_bytes(0, &row(range), base, o.clone());
        assert_eq!(&cut(Some((3, 4)), 0, &object).unwrap()[..], b"bbbb");
        assert_eq!(&cut(Some((7, 2)), 0, &object).unwrap()[..], b"cc");
        assert_eq!(&cut(None, 0, &object).unwrap()[..], b"aaabbbbcc");
        // Read from offset 3 on: "bbbbcc".
        let tail = object.slice(3..);
        assert_eq!(&cut(Some((7, 2)), 3, &tail).unwrap()[..], b"cc");
        for (bad, base) in [((7, 3), 0), ((10, 0), 0), ((u64::MAX, 2), 0), ((1, 2), 3)] {
            let e = cut(Some(bad), base, &object).unwrap_err();
            assert!(e.to_string().contains("p0/e1/bundle/5-7-3.segs"), "{e}");
        }
    }

    #[test]
    fn a_fetch_waits_no_longer_than_its_querys_budget() {
        assert_eq!(fetch_timeout(), FETCH_TIMEOUT);
        let soon = std::time::Instant::now() + Duration::from_millis(500);
        with_fetch_deadline(Some(soon), || {
            assert!(fetch_timeout() <= Duration::from_millis(500));
            let past = std::time::Instant::now() - Duration::from_millis(1);
            with_fetch_deadline(Some(past), || assert_eq!(fetch_timeout(), Duration::ZERO));
            assert!(fetch_timeout() > Duration::ZERO);
        });
        let late = std::time::Instant::now() + 2 * FETCH_TIMEOUT;
        with_fetch_deadline(Some(late), || assert_eq!(fetch_timeout(), FETCH_TIMEOUT));
        assert_eq!(fetch_timeout(), FETCH_TIMEOUT);
    }

    #[test]
    fn rows_back_to_back_in_one_bundle_are_one_run() {
        let at = |id: u64, key: &str, range: Option<(u64, u64)>| SegmentRow {
            segment_id: id,
            object_key: key.into(),
            object_range: range,
            ..row(None)
        };
        let rows = [
            at(1, "b1", Some((0, 10))),
            at(2, "b1", Some((10, 5))),
            at(3, "b1", Some((40, 5))), // a gap: what compaction replaced
            at(4, "b2", Some((45, 5))), // another object
            at(5, "old", None),
            at(6, "b3", Some((0, 1))),
        ];
        assert_eq!(run_of(&rows), 2);
        assert_eq!(run_of(&rows[2..]), 1);
        assert_eq!(run_of(&rows[3..]), 1);
        assert_eq!(run_of(&rows[4..]), 1);
        assert_eq!(run_of(&rows[5..]), 1);
        assert_eq!(run_of(&[]), 0);
    }
}
