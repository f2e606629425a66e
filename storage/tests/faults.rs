//! Disk faults injected through the store's file-system seam (`sightline_storage::io`):
//! failed fsyncs, ENOSPC, short writes, failed renames and directory fsyncs, read
//! errors and flipped bits. For each: the call that hit it fails with an error naming
//! the file, nothing is acknowledged that is not durable, a failed log write is never
//! retried as if the data were safe, and once the fault clears the store reopens with
//! exactly what was acknowledged.
//!
//! `FaultyIo` models a failed fsync at its worst (Linux after a writeback error): the
//! bytes written since the last good fsync are gone from the disk. A store that retried
//! the fsync and trusted it would lose acknowledged events here.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use common::*;
use proptest::prelude::*;
use sightline_storage::io::{Fault, FaultKind, FaultyIo, Op, EIO, ENOSPC};
use sightline_storage::{Event, ManualClock, StorageError, Store, StoreConfig};

fn config(io: &Arc<FaultyIo>) -> StoreConfig {
    StoreConfig {
        io: io.clone(),
        ..StoreConfig::default()
    }
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(DAY0 + 12 * HOUR))
}

/// `n` events with new subjects (so the dictionary log is written too) and unique
/// source ids `tag-0..`.
fn batch(tag: &str, n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| {
            ev(with_source(
                input(
                    DAY0 + HOUR + i as i64,
                    "c1",
                    1 + (i % 3) as u32,
                    "face",
                    &format!("{tag}-F{i}"),
                ),
                &format!("{tag}-{i}"),
            ))
        })
        .collect()
}

/// Source id → how many times it is stored.
fn stored(store: &Store) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for e in all_events(store) {
        let sid = e
            .event
            .source_id()
            .expect("every test event has one")
            .to_string();
        *out.entry(sid).or_default() += 1;
    }
    out
}

fn once(ids: &[String]) -> BTreeMap<String, usize> {
    ids.iter().map(|s| (s.clone(), 1)).collect()
}

fn ids(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| e.source_id().unwrap().to_string())
        .collect()
}

fn names(err: &StorageError, file: &str) -> bool {
    err.to_string().contains(file)
}

const LOG_FAULTS: [(Op, FaultKind); 4] = [
    (Op::Write, FaultKind::Errno(EIO)),
    (Op::Write, FaultKind::Errno(ENOSPC)),
    (Op::Write, FaultKind::ShortWrite),
    (Op::Sync, FaultKind::Errno(EIO)),
];

#[test]
fn a_failed_log_write_or_fsync_fails_the_append_and_every_append_after_it_until_reopened() {
    for file in ["dict.log", ".wal"] {
        for (op, kind) in LOG_FAULTS {
            let case = format!("{op:?} {kind:?} on {file}");
            let dir = tempfile::tempdir().unwrap();
            let io = FaultyIo::new();
            let c = clock();
            let a = batch("a", 20);
            let b = batch("b", 20);
            {
                let store = open(dir.path(), &c, config(&io));
                store.append(&a).unwrap();
                io.inject(Fault::new(op, file, kind).once());
                let err = store.append(&b).expect_err(&case);
                assert!(
                    matches!(err, StorageError::Io { .. }) && names(&err, file),
                    "{case}: {err}"
                );
                // The fault is spent, but the log is not trusted again: a later append is
                // refused, not fsynced "successfully" over what may be lost.
                let err = store.append(&batch("c", 5)).expect_err(&case);
                assert!(matches!(err, StorageError::Poisoned(_)), "{case}: {err}");
                assert!(err.to_string().contains("reopen"), "{case}: {err}");
                assert!(store.failed().is_some(), "{case}");
                // Queries keep answering, with exactly what was acknowledged.
                assert_eq!(stored(&store), once(&ids(&a)), "{case}");
            }
            // The disk works again: reopening recovers exactly the acknowledged events
            // (the failed batch never reached the disk whole), and writes work.
            io.clear();
            let store = open(dir.path(), &c, config(&io));
            assert_eq!(stored(&store), once(&ids(&a)), "{case}: after reopening");
            let d = batch("d", 7);
            assert_eq!(store.append(&d).unwrap().stored(), 7, "{case}");
            drop(store);
            let store = open(dir.path(), &c, config(&io));
            let want: Vec<String> = ids(&a).into_iter().chain(ids(&d)).collect();
            assert_eq!(
                stored(&store),
                once(&want),
                "{case}: after the second reopening"
            );
            assert!(io.injected() >= 1);
        }
    }
}

#[test]
fn a_failed_seal_leaves_the_events_in_memory_and_the_store_writable() {
    let faults = [
        (Op::Open, ".tmp", FaultKind::Errno(ENOSPC)),
        (Op::Write, ".tmp", FaultKind::Errno(ENOSPC)),
        (Op::Write, ".tmp", FaultKind::ShortWrite),
        (Op::Sync, ".tmp", FaultKind::Errno(EIO)),
        (Op::Rename, ".seg", FaultKind::Errno(EIO)),
        (Op::SyncDir, "segments", FaultKind::Errno(EIO)),
        (Op::Read, ".seg", FaultKind::Errno(EIO)),
        (Op::Read, ".seg", FaultKind::BitFlip { at: None }),
    ];
    for (op, file, kind) in faults {
        let case = format!("{op:?} {kind:?} on {file}");
        let dir = tempfile::tempdir().unwrap();
        let io = FaultyIo::new();
        let c = clock();
        let a = batch("a", 30);
        let b = batch("b", 10);
        {
            let store = open(dir.path(), &c, config(&io));
            store.append(&a).unwrap();
            c.set(DAY0 + 27 * HOUR); // the day and its grace are over: due for sealing
            io.inject(Fault::new(op, file, kind).once());
            let err = store.maintain().expect_err(&case);
            assert!(
                matches!(err, StorageError::Io { .. } | StorageError::Corrupt { .. }),
                "{case}: {err}"
            );
            // A failed seal does not touch the logs: appends go on.
            assert!(store.failed().is_none(), "{case}");
            store.append(&b).unwrap();
            let want: Vec<String> = ids(&a).into_iter().chain(ids(&b)).collect();
            assert_eq!(stored(&store), once(&want), "{case}: before the retry");
            // The retry, with the disk working, seals; nothing was lost or doubled.
            let report = store.maintain().unwrap();
            assert_eq!(report.sealed.len(), 1, "{case}");
            assert_eq!(stored(&store), once(&want), "{case}: after the retry");
        }
        let store = open(dir.path(), &c, config(&io));
        let want: Vec<String> = ids(&a).into_iter().chain(ids(&b)).collect();
        assert_eq!(stored(&store), once(&want), "{case}: after reopening");
        assert!(
            files_with_ext(&dir.path().join("segments"), "tmp").is_empty(),
            "{case}: a half-written temporary file is left"
        );
        assert_eq!(files_with_ext(&dir.path().join("segments"), "seg").len(), 1);
    }
}

#[test]
fn a_failed_wal_checkpoint_or_compaction_cleanup_loses_nothing() {
    for (op, file) in [
        (Op::Remove, ".wal"),
        (Op::SyncDir, "wal"),
        (Op::Remove, ".seg"),
    ] {
        let case = format!("{op:?} on {file}");
        let dir = tempfile::tempdir().unwrap();
        let io = FaultyIo::new();
        let c = clock();
        let a = batch("a", 30);
        let b = batch("b", 30);
        {
            let store = open(dir.path(), &c, config(&io));
            store.append(&a).unwrap();
            // Two segments for the same shard, so the maintenance pass compacts them.
            let key = store.shards()[0].key;
            store.seal_shard(key).unwrap();
            store.append(&b).unwrap();
            c.set(DAY0 + 27 * HOUR);
            io.inject(Fault::new(op, file, FaultKind::Errno(EIO)).once());
            match file {
                // The WAL's checkpoint fails the pass.
                "wal" | ".wal" => {
                    let err = store.maintain().expect_err(&case);
                    assert!(matches!(err, StorageError::Io { .. }), "{case}: {err}");
                }
                // A compaction's failure is reported and the pass goes on.
                _ => {
                    let report = store.maintain().unwrap();
                    assert_eq!(report.compaction_failed.len(), 1, "{case}: {report:?}");
                    assert!(
                        report.compaction_failed[0].1.contains("I/O error"),
                        "{case}: {report:?}"
                    );
                }
            }
            let want: Vec<String> = ids(&a).into_iter().chain(ids(&b)).collect();
            assert_eq!(stored(&store), once(&want), "{case}");
            store.maintain().unwrap();
            assert_eq!(stored(&store), once(&want), "{case}: after the retry");
        }
        let store = open(dir.path(), &c, config(&io));
        let want: Vec<String> = ids(&a).into_iter().chain(ids(&b)).collect();
        assert_eq!(stored(&store), once(&want), "{case}: after reopening");
    }
}

/// A store with acknowledged events in a segment, the WAL and the dictionary log.
fn populated(dir: &Path, io: &Arc<FaultyIo>, c: &Arc<ManualClock>) -> Vec<String> {
    let store = open(dir, c, config(io));
    let a = batch("a", 30);
    store.append(&a).unwrap();
    let key = store.shards()[0].key;
    store.seal_shard(key).unwrap();
    let mut want = ids(&a);
    for i in 0..3 {
        let b = batch(&format!("b{i}"), 10);
        store.append(&b).unwrap();
        want.extend(ids(&b));
    }
    want
}

#[test]
fn read_errors_and_flipped_bits_at_open_refuse_to_start_or_to_read_naming_the_file() {
    let faults = [
        (Op::Read, ".wal", FaultKind::Errno(EIO)),
        (Op::Read, "dict.log", FaultKind::Errno(EIO)),
        (Op::Read, ".seg", FaultKind::Errno(EIO)),
        (Op::Read, ".seg", FaultKind::BitFlip { at: None }),
        (Op::Read, "dict.log", FaultKind::BitFlip { at: Some(20) }),
        // Inside the first of three WAL records: corruption with good data after it.
        (Op::Read, ".wal", FaultKind::BitFlip { at: Some(20) }),
        // Inside the last WAL record (and dictionary entry), which then looks like a
        // torn tail: cutting it off would lose acknowledged events. The second read
        // disagrees, so the store refuses instead. (`u64::MAX`: ten bytes from the end.)
        (Op::Read, ".wal", FaultKind::BitFlip { at: Some(u64::MAX) }),
        (
            Op::Read,
            "dict.log",
            FaultKind::BitFlip { at: Some(u64::MAX) },
        ),
        (Op::Truncate, ".wal", FaultKind::Errno(EIO)),
    ];
    for (op, file, kind) in faults {
        let case = format!("{op:?} {kind:?} on {file}");
        let dir = tempfile::tempdir().unwrap();
        let io = FaultyIo::new();
        let c = clock();
        let want = populated(dir.path(), &io, &c);
        if op == Op::Truncate {
            // Truncation only happens for a real torn tail: make one.
            let wal = &files_with_ext(&dir.path().join("wal"), "wal")[0];
            let f = std::fs::OpenOptions::new().append(true).open(wal).unwrap();
            std::io::Write::write_all(&mut &f, &[7, 0, 0]).unwrap();
        }
        let kind = match kind {
            FaultKind::BitFlip { at: Some(u64::MAX) } => {
                let path = if file == ".wal" {
                    files_with_ext(&dir.path().join("wal"), "wal")[0].clone()
                } else {
                    dir.path().join(file)
                };
                let len = std::fs::metadata(path).unwrap().len();
                FaultKind::BitFlip { at: Some(len - 10) }
            }
            k => k,
        };
        if file == "dict.log" {
            // With a dictionary snapshot the log is read from the snapshot's end (and
            // its last 4 KiB before it, to check the snapshot belongs to it): a fault
            // in that check only makes opening ignore the snapshot and read the whole
            // log, which then reads clean. Without one, the whole log is read once.
            std::fs::remove_file(dir.path().join("dict.snap")).unwrap();
        }
        io.inject(Fault::new(op, file, kind).once());
        let err = match Store::open_with_clock(dir.path(), config(&io), c.clone()) {
            Err(err) => err,
            // Opening reads nothing of a segment: it is mapped on its first use, and
            // its rows and attributes verified on their first read. A fault there is
            // the first read's error.
            Ok(store) if file == ".seg" => {
                let err = store
                    .read_events(0, i64::MAX, None)
                    .map(drop)
                    .expect_err("a faulty segment read without error");
                if matches!(kind, FaultKind::Errno(_)) {
                    // A failed open is not kept: the fault gone, the same store reads.
                    assert_eq!(stored(&store), once(&want), "{case}: read again");
                }
                err
            }
            Ok(_) => panic!("{case}: the store opened"),
        };
        assert!(names(&err, file), "{case}: {err}");
        assert!(
            matches!(err, StorageError::Io { .. } | StorageError::Corrupt { .. }),
            "{case}: {err}"
        );
        io.clear();
        let store = open(dir.path(), &c, config(&io));
        assert_eq!(
            stored(&store),
            once(&want),
            "{case}: once the fault is gone"
        );
    }
}

/// What a proptest step does.
#[derive(Clone, Debug)]
enum Step {
    Append(usize),
    Seal,
    Fault(usize),
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (1usize..12).prop_map(Step::Append),
        1 => Just(Step::Seal),
        2 => (0usize..ANY_FAULT.len()).prop_map(Step::Fault),
        1 => Just(Step::Reopen),
    ]
}

const ANY_FAULT: [(Op, &str, FaultKind); 10] = [
    (Op::Write, ".wal", FaultKind::ShortWrite),
    (Op::Sync, ".wal", FaultKind::Errno(EIO)),
    (Op::Write, "dict.log", FaultKind::Errno(ENOSPC)),
    (Op::Sync, "dict.log", FaultKind::Errno(EIO)),
    (Op::Write, ".tmp", FaultKind::ShortWrite),
    (Op::Sync, ".tmp", FaultKind::Errno(EIO)),
    (Op::Rename, ".seg", FaultKind::Errno(EIO)),
    (Op::Remove, ".wal", FaultKind::Errno(EIO)),
    (Op::Read, ".wal", FaultKind::BitFlip { at: None }),
    (Op::Read, ".seg", FaultKind::Errno(EIO)),
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Random appends, seals, one-shot faults and reopenings against a model: what is
    /// readable is always exactly the acknowledged events plus, after a reopening, any
    /// of the failed ones that happened to reach the disk whole; never a loss, never a
    /// duplicate.
    #[test]
    fn under_random_faults_the_store_keeps_exactly_what_it_acknowledged(
        steps in proptest::collection::vec(step(), 1..24)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let io = FaultyIo::new();
        let c = clock();
        let mut store = Some(open(dir.path(), &c, config(&io)));
        let mut acked: BTreeMap<String, usize> = BTreeMap::new();
        let mut maybe: Vec<String> = Vec::new();
        let mut armed_reads = std::collections::HashSet::new();
        let mut n = 0;
        let reopen = |store: &mut Option<Store>,
                      acked: &mut BTreeMap<String, usize>,
                      maybe: &mut Vec<String>|
         -> Result<(), TestCaseError> {
            *store = None;
            // An armed read fault may refuse this opening, naming the file; once the
            // fault is cleared the store must open.
            let s = match Store::open_with_clock(dir.path(), config(&io), c.clone()) {
                Ok(s) => s,
                Err(e) => {
                    prop_assert!(
                        matches!(e, StorageError::Io { .. } | StorageError::Corrupt { .. }),
                        "{}", e
                    );
                    io.clear();
                    open(dir.path(), &c, config(&io))
                }
            };
            io.clear();
            let got = stored(&s);
            for (id, count) in &got {
                prop_assert_eq!(*count, 1, "{} stored twice", id);
                prop_assert!(acked.contains_key(id) || maybe.contains(id), "{} never sent", id);
            }
            for id in acked.keys() {
                prop_assert!(got.contains_key(id), "acknowledged {} lost", id);
            }
            *acked = got;
            maybe.clear();
            *store = Some(s);
            Ok(())
        };
        for s in steps {
            let st = store.as_ref().unwrap();
            match s {
                Step::Append(k) => {
                    let b = batch(&format!("s{n}"), k);
                    n += 1;
                    match st.append(&b) {
                        Ok(out) => {
                            prop_assert_eq!(out.stored(), k);
                            for id in ids(&b) {
                                acked.insert(id, 1);
                            }
                        }
                        Err(_) => maybe.extend(ids(&b)),
                    }
                }
                Step::Seal => {
                    c.advance(HOUR);
                    for k in st.shards().iter().map(|s| s.key).collect::<Vec<_>>() {
                        let _ = st.seal_shard(k);
                    }
                }
                Step::Fault(i) => {
                    let (op, file, kind) = ANY_FAULT[i];
                    // Read faults are transient: the same flip twice in a row is a
                    // flip on the disk itself, which in the newest WAL record cannot be
                    // told from a torn append (RELIABILITY.md, "Limits").
                    if op != Op::Read || !armed_reads.contains(&i) {
                        armed_reads.extend((op == Op::Read).then_some(i));
                        io.inject(Fault::new(op, file, kind).once());
                    }
                }
                Step::Reopen => {
                    armed_reads.clear();
                    reopen(&mut store, &mut acked, &mut maybe)?;
                    continue;
                }
            }
            // Before any reopening, reads show exactly what was acknowledged.
            prop_assert_eq!(&stored(store.as_ref().unwrap()), &acked);
        }
        reopen(&mut store, &mut acked, &mut maybe)?;
    }
}

/// `CacheIo` (a cluster replica's store: a cache, no fsync) still writes, seals,
/// compacts and reopens like the OS's file system; only durability against power loss
/// is given up.
#[test]
fn a_cache_store_without_fsync_keeps_what_it_stored_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    let cache = || StoreConfig {
        io: Arc::new(sightline_storage::io::CacheIo),
        ..StoreConfig::default()
    };
    let (a, b) = (batch("a", 40), batch("b", 25));
    {
        let store = open(dir.path(), &c, cache());
        store.append(&a).unwrap();
        c.set(DAY0 + 27 * HOUR);
        store.maintain().unwrap();
        store.append(&b).unwrap();
    }
    let store = open(dir.path(), &c, cache());
    let want: BTreeMap<String, usize> = a
        .iter()
        .chain(&b)
        .map(|e| (e.source_id().unwrap().to_string(), 1))
        .collect();
    assert_eq!(stored(&store), want);
}

/// Opening fsyncs `dict.log` and the WAL's active file before anything is built on
/// them (a process that died between a write and its fsync may have left bytes only
/// in the page cache, which a snapshot's length, the catalog's counts or new WAL events
/// would otherwise vouch for): that fsync failing fails the open naming the file; with
/// the disk working again the store opens with every acknowledged event.
#[test]
fn opening_fsyncs_the_logs_a_dead_process_may_have_left_unsynced() {
    for file in ["dict.log", ".wal"] {
        let dir = tempfile::tempdir().unwrap();
        let io = FaultyIo::new();
        let c = clock();
        let a = batch("a", 20);
        {
            let store = open(dir.path(), &c, config(&io));
            store.append(&a).unwrap();
        }
        io.inject(Fault::new(Op::Sync, file, FaultKind::Errno(EIO)).once());
        let err = Store::open_with_clock(dir.path(), config(&io), c.clone())
            .err()
            .unwrap_or_else(|| panic!("{file}: the open's fsync failed, yet it opened"));
        assert!(
            matches!(err, StorageError::Io { .. }) && names(&err, file),
            "{file}: {err}"
        );
        io.clear();
        let store = open(dir.path(), &c, config(&io));
        assert_eq!(stored(&store), once(&ids(&a)), "{file}");
    }
}
