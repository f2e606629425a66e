//! A shard's sealed segment as the store holds it: what the manifest says of the file,
//! and the file itself, mapped and verified on first use.
//!
//! Opening a store reads nothing per segment: each manifest entry becomes a
//! [`SealedSegment`] whose facts (events, sequence and time range, file length) come
//! from the manifest ([`SegmentFacts`]). The first read that needs the rows calls
//! [`SealedSegment::open`], which maps the file and verifies it as
//! [`Segment::open_with`] does (header, section table, block directory, small sections),
//! then checks that it is the file the manifest describes: the shard in its header and
//! every fact. A mismatch is [`StorageError::Corrupt`] naming the file.
//!
//! A segment the store was restored without (`Restore::add_remote_segment`, and
//! named by the store's [`crate::SegmentSource`]) is not kept here but in the
//! [`crate::SegmentCache`]: its first use fetches it, later uses find it there until
//! it is evicted, and the next use after that fetches it again
//! (`storage/src/segment_cache.rs`).
//!
//! Only success is kept: a failed open (file missing, unreadable, truncated, damaged)
//! is tried again by the next read that needs the segment, so a cause that goes away
//! (a file put back, a transient I/O error) stops failing without a restart, and a
//! damaged file fails every read the same way, naming it. A segment once opened stays
//! mapped as long as any handle to it lives, even after compaction or retention
//! unlinks its file: both open the handles they retire before removing the files, so a
//! reader that took a handle before never finds its file gone.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::catalog::{SegmentEntry, SegmentFacts};
use crate::error::{Result, StorageError};
use crate::io::FileIo;
use crate::segment::Segment;
use crate::segment_cache::RemoteSegments;
use crate::shard::ShardKey;

/// One sealed segment of a shard, opened on first use.
pub(crate) struct SealedSegment {
    key: ShardKey,
    /// The id in the manifest (and in the file's name).
    id: u64,
    path: PathBuf,
    events: u32,
    facts: SegmentFacts,
    io: Arc<dyn FileIo>,
    opened: OnceLock<Arc<Segment>>,
    /// The manifest's name of the file, and where it is fetched from when the store
    /// was restored without it (then `opened` stays empty: the cache holds it).
    file: String,
    remote: Option<RemoteSegments>,
}

impl std::fmt::Debug for SealedSegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedSegment")
            .field("path", &self.path)
            .field("events", &self.events)
            .field("facts", &self.facts)
            .field("open", &self.is_open())
            .field("remote", &self.remote.is_some())
            .finish()
    }
}

/// The facts the manifest keeps of an opened segment.
pub(crate) fn facts_of(seg: &Segment) -> SegmentFacts {
    let m = seg.meta();
    SegmentFacts {
        min_seq: m.min_seq,
        max_seq: m.max_seq,
        min_ts_ms: m.min_ts_ms,
        max_ts_ms: m.max_ts_ms,
        file_bytes: seg.file_bytes() as u64,
    }
}

/// Checks that `seg` is the file `entry` lists under `key`: the shard in its header,
/// its event count and, when the entry has them, every fact.
pub(crate) fn check_entry(seg: &Segment, key: ShardKey, entry: &SegmentEntry) -> Result<()> {
    check_matches(seg, key, entry.events, entry.facts.as_ref())
}

fn check_matches(
    seg: &Segment,
    key: ShardKey,
    events: u32,
    facts: Option<&SegmentFacts>,
) -> Result<()> {
    let m = seg.meta();
    if m.community != key.community || m.span != key.span {
        return Err(StorageError::corrupt(
            seg.path(),
            16,
            format!(
                "segment belongs to {:?}, the manifest lists it under {key:?}",
                (m.community, m.span)
            ),
        ));
    }
    let found = facts_of(seg);
    if m.events != events || facts.is_some_and(|f| *f != found) {
        return Err(StorageError::corrupt(
            seg.path(),
            32,
            format!(
                "segment holds {} events {found:?}, the manifest lists {events} {facts:?}",
                m.events
            ),
        ));
    }
    Ok(())
}

impl SealedSegment {
    /// The segment `entry` of shard `key` in the store at `dir`, not opened yet; `None`
    /// when the entry has no facts (a manifest written before they were kept). With
    /// `remote`, a segment its source holds is fetched on first use.
    pub fn listed(
        dir: &Path,
        key: ShardKey,
        entry: &SegmentEntry,
        io: &Arc<dyn FileIo>,
        remote: Option<&RemoteSegments>,
    ) -> Option<SealedSegment> {
        let remote = remote.filter(|r| r.source.holds(&entry.file)).cloned();
        Some(SealedSegment {
            file: entry.file.clone(),
            remote,
            key,
            id: entry.id,
            path: dir.join(&entry.file),
            events: entry.events,
            facts: entry.facts?,
            io: io.clone(),
            opened: OnceLock::new(),
        })
    }

    /// A segment open already (just written, or opened to learn its facts); checked
    /// against `key` like a first open.
    pub fn opened(
        key: ShardKey,
        id: u64,
        seg: Arc<Segment>,
        io: &Arc<dyn FileIo>,
    ) -> Result<SealedSegment> {
        check_matches(&seg, key, seg.meta().events, None)?;
        let opened = OnceLock::new();
        let _ = opened.set(seg.clone());
        Ok(SealedSegment {
            key,
            id,
            path: seg.path().to_path_buf(),
            events: seg.meta().events,
            facts: facts_of(&seg),
            io: io.clone(),
            opened,
            file: String::new(),
            remote: None,
        })
    }

    /// The segment, mapped and its small parts verified (on the first call that
    /// succeeds; see the module's documentation). Its rows and attributes are verified
    /// on their own first read, as ever ([`Segment::verify_rows`]).
    pub fn open(&self) -> Result<Arc<Segment>> {
        if let Some(seg) = self.opened.get() {
            return Ok(seg.clone());
        }
        if let Some(remote) = &self.remote {
            // Verified whole before the cache keeps it, then checked against the facts.
            return remote.cache.get_or_fetch(
                &self.path,
                &*self.io,
                || remote.source.fetch(&self.file),
                |seg| check_matches(seg, self.key, self.events, Some(&self.facts)),
            );
        }
        let seg = Segment::open_with(&*self.io, &self.path)?;
        check_matches(&seg, self.key, self.events, Some(&self.facts))?;
        // Two first readers may both have opened it: one mapping is kept, the other
        // dropped.
        let _ = self.opened.set(Arc::new(seg));
        Ok(self.opened.get().expect("set just above").clone())
    }

    /// The segment, if this handle has it open (never opens it: for hints, which
    /// skip a segment not yet open; a fetched one is the cache's).
    pub fn if_open(&self) -> Option<&Segment> {
        self.opened.get().map(|seg| &**seg)
    }

    /// Whether the file is mapped (opened on a first use; for a fetched segment:
    /// held by the cache now).
    pub fn is_open(&self) -> bool {
        match &self.remote {
            Some(r) => r.cache.holds(&self.path),
            None => self.opened.get().is_some(),
        }
    }

    /// Before the segment's file is removed (compaction replaced it, retention
    /// dropped it): maps the store's own file, so a reader that took this handle
    /// before keeps reading it. A fetched segment is not fetched for this: a reader
    /// that holds it holds its mapping already, a later one fetches it again.
    pub fn keep_for_readers(&self) {
        if self.remote.is_none() {
            let _ = self.open();
        }
    }

    /// Removes the segment's file (replaced or dropped; [`Self::keep_for_readers`]
    /// first): the store's own through `io`, a fetched one out of the cache (if
    /// held: it may never have been fetched).
    pub fn remove_file(&self) -> std::io::Result<()> {
        match &self.remote {
            Some(r) => {
                r.cache.forget(&self.path, &*self.io);
                Ok(())
            }
            None => self.io.remove_file(&self.path),
        }
    }

    /// The manifest's name of the file when it is fetched from the store's source
    /// and not held now (its first use would fetch it), with its length; `None` for
    /// the store's own files and fetched ones held.
    pub fn unfetched(&self) -> Option<(&str, u64)> {
        let r = self.remote.as_ref()?;
        (!r.cache.holds(&self.path)).then_some((self.file.as_str(), self.facts.file_bytes))
    }

    pub fn id(&self) -> u64 {
        self.id
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn events(&self) -> u32 {
        self.events
    }
    pub fn facts(&self) -> &SegmentFacts {
        &self.facts
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::catalog::{Catalog, SledCatalog};
    use crate::{AttrValue, Attrs, EventInput, ManualClock, Store, StoreConfig, Validator};

    const DAY0: i64 = 1_630_425_600_000;
    const DAY: i64 = 86_400_000;

    fn event(ts_ms: i64, community: &str, n: u32) -> crate::Event {
        let mut attrs = Attrs::new();
        attrs.insert(
            "source_id".into(),
            AttrValue::Str(format!("S{community}{ts_ms}")),
        );
        let input = EventInput {
            ts_ms,
            community: community.into(),
            device: format!("3205080101121{:07}", n % 3),
            kind: "vehicle".into(),
            subject: format!("苏E{:05}", n % 11),
            direction: "in".into(),
            attrs,
        };
        Validator::default()
            .validate(input, i64::MAX / 2)
            .expect("test event is valid")
    }

    /// A store whose manifest the previous version wrote (no segment facts) opens,
    /// reads every event, continues its sequence numbers, and records the facts, so
    /// the next open reads no segment.
    #[test]
    fn a_manifest_without_segment_facts_opens_and_records_them_once() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(DAY0 + 4 * DAY));
        let open =
            || Store::open_with_clock(dir.path(), StoreConfig::default(), clock.clone()).unwrap();
        let want = {
            let store = open();
            for day in 0..2 {
                let batch: Vec<_> = (0..60u32)
                    .map(|i| {
                        let c = ["c1", "c2", "c3"][i as usize % 3];
                        event(DAY0 + day * DAY + i64::from(i) * 60_000, c, i)
                    })
                    .collect();
                store.append(&batch).unwrap();
            }
            store.seal_all().unwrap();
            // A delta beside the first day's segment of c1.
            store.append(&[event(DAY0 + 7, "c1", 5)]).unwrap();
            store.seal_all().unwrap();
            store.read_events(0, i64::MAX, None).unwrap()
        };
        let segments = {
            let catalog = SledCatalog::open(&dir.path().join("catalog")).unwrap();
            let m = catalog.manifest().unwrap();
            let entries = m.shards.values().flat_map(|s| &s.segments);
            assert!(entries.clone().all(|e| e.facts.is_some()));
            for (key, state) in &m.shards {
                catalog.put_shard_state_v1(*key, state).unwrap();
            }
            let old = catalog.manifest().unwrap();
            let entries = old.shards.values().flat_map(|s| &s.segments);
            assert!(entries.clone().all(|e| e.facts.is_none()));
            entries.count()
        };
        assert_eq!(segments, 7);
        {
            let store = open();
            assert_eq!(store.recovery().segment_facts_filled, segments);
            assert_eq!(store.read_events(0, i64::MAX, None).unwrap(), want);
            assert_eq!(store.next_seq(), want.last().unwrap().seq + 1);
            // Source ids in the sealed segments are still found.
            let again = store.append(&[event(DAY0 + 7, "c1", 5)]).unwrap();
            assert_eq!(again.duplicates(), 1);
        }
        let store = open();
        assert_eq!(store.recovery().segment_facts_filled, 0);
        assert_eq!(store.segments_mapped(), (0, segments));
        assert_eq!(store.read_events(0, i64::MAX, None).unwrap(), want);
        let manifest = store.catalog().manifest().unwrap();
        for (key, state) in &manifest.shards {
            let opened = store.segments(*key).unwrap();
            for (entry, seg) in state.segments.iter().zip(&opened) {
                assert_eq!(entry.facts, Some(super::facts_of(seg)));
            }
        }
        drop(store);
        assert!(crate::check(dir.path()).unwrap().ok());
    }

    /// Orphan files are left alone by open and removed by the first maintenance pass,
    /// which reports them.
    #[test]
    fn orphan_files_are_removed_by_the_first_maintenance_after_open() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(DAY0 + 4 * DAY));
        let open =
            || Store::open_with_clock(dir.path(), StoreConfig::default(), clock.clone()).unwrap();
        let seg = {
            let store = open();
            store.append(&[event(DAY0 + 7, "c1", 5)]).unwrap();
            store.seal_all().unwrap();
            let key = store.shards()[0].key;
            store.segments(key).unwrap()[0].path().to_path_buf()
        };
        let orphans = [
            seg.with_file_name("1-999.seg"),
            seg.with_file_name("1-999.tmp"),
            dir.path().join("segments/17000/4-1000.seg"),
        ];
        for o in &orphans {
            std::fs::create_dir_all(o.parent().unwrap()).unwrap();
            std::fs::write(o, b"half made").unwrap();
        }
        let store = open();
        assert!(
            orphans.iter().all(|o| o.exists()),
            "open reads no directory"
        );
        assert!(store.recovery().orphan_files_removed.is_empty());
        store.maintain().unwrap();
        assert!(orphans.iter().all(|o| !o.exists()));
        assert!(!dir.path().join("segments/17000").exists());
        let mut removed = store.recovery().orphan_files_removed;
        removed.sort();
        let mut want = orphans.to_vec();
        want.sort();
        assert_eq!(removed, want);
        assert!(seg.exists());
        assert_eq!(store.read_events(0, i64::MAX, None).unwrap().len(), 1);
        // Once per open: a file appearing later is not touched by later passes.
        std::fs::write(&orphans[0], b"later").unwrap();
        store.maintain().unwrap();
        assert!(orphans[0].exists());
    }

    /// An orphan that cannot be removed does not hold up maintenance: the pass seals,
    /// and the next one removes it.
    #[test]
    fn a_failed_orphan_removal_is_tried_again_and_sealing_goes_on() {
        use crate::io::{Fault, FaultKind, FaultyIo, Op};
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(DAY0 + 4 * DAY));
        let io = FaultyIo::new();
        let config = || StoreConfig {
            io: io.clone(),
            ..StoreConfig::default()
        };
        let orphan = dir.path().join("segments/18871/9-999.seg");
        std::fs::create_dir_all(orphan.parent().unwrap()).unwrap();
        std::fs::write(&orphan, b"half made").unwrap();
        let store = Store::open_with_clock(dir.path(), config(), clock.clone()).unwrap();
        store.append(&[event(DAY0 + 7, "c1", 5)]).unwrap();
        io.inject(Fault::new(Op::Remove, "9-999", FaultKind::Errno(5)).once());
        let report = store.maintain().unwrap();
        assert_eq!(report.sealed.len(), 1, "sealed despite the orphan");
        assert!(orphan.exists());
        assert!(store.recovery().orphan_files_removed.is_empty());
        store.maintain().unwrap();
        assert!(!orphan.exists());
        assert_eq!(store.recovery().orphan_files_removed, vec![orphan]);
    }
}
