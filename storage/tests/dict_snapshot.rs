//! The dictionary snapshot (`dict.snap`): ids and lookups are the same with and without
//! it, before and after appends past it; a stale, foreign, other-version or
//! badly-framed snapshot is ignored (the whole log is loaded, the reason reported) and
//! written again at close; a damaged chunk found by a read gives the log's answers
//! (loaded then) and the snapshot is written again; never a panic or a wrong id;
//! `check` verifies it whole and names a damaged chunk.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use sightline_storage::{ManualClock, Store, StoreConfig};

const KINDS: [&str; 3] = ["vehicle", "face", "access"];

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(DAY0 + 12 * HOUR))
}

/// Appends `n` events from `from` on: subjects of three kinds (the same string under
/// two kinds too), several communities and devices.
fn fill(store: &Store, from: u32, n: u32) {
    let batch: Vec<_> = (from..from + n)
        .map(|i| {
            ev(input(
                DAY0 + i64::from(i),
                &format!("c{}", i % 7),
                i % 13,
                KINDS[(i % 3) as usize],
                &format!("S{}", i / 2),
            ))
        })
        .collect();
    for chunk in batch.chunks(500) {
        store.append(chunk).unwrap();
    }
}

/// Every entry of every table, by id, and each looked up by its string.
fn entries(store: &Store) -> Vec<String> {
    let d = store.dictionaries();
    let mut out = Vec::new();
    for id in 0..d.len_communities() as u32 {
        let s = d.community(id).unwrap();
        assert_eq!(d.community_id(s), Some(id));
        out.push(format!("c {id} {s}"));
    }
    for id in 0..d.len_devices() as u32 {
        let s = d.device(id).unwrap();
        assert_eq!(d.device_id(s), Some(id));
        out.push(format!("d {id} {s}"));
    }
    for id in 0..d.len_subjects() as u32 {
        let (k, s) = d.subject(id).unwrap();
        assert_eq!(d.subject_id(k, s), Some(id), "{k:?} {s}");
        out.push(format!("s {id} {k:?} {s}"));
    }
    assert_eq!(d.community_id("nowhere"), None);
    assert_eq!(d.subject(d.len_subjects() as u32), None);
    out
}

/// The entries of a copy of `dir` opened without its snapshot.
fn entries_without_snapshot(dir: &Path) -> Vec<String> {
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir, copy.path());
    std::fs::remove_file(copy.path().join("dict.snap")).ok();
    let store = open(copy.path(), &clock(), StoreConfig::default());
    let got = entries(&store);
    drop(store);
    got
}

/// A store of `n` events closed cleanly (so with a snapshot of its whole log).
fn store_with_snapshot(dir: &Path, n: u32) {
    let store = open(dir, &clock(), StoreConfig::default());
    fill(&store, 0, n);
}

#[test]
fn ids_and_lookups_are_the_same_with_and_without_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    store_with_snapshot(dir.path(), 3_000);
    assert!(
        dir.path().join("dict.snap").exists(),
        "a clean close writes it"
    );
    let want = entries_without_snapshot(dir.path());
    // From the snapshot alone, then with log records past it, then interning after.
    let store = open(dir.path(), &clock(), StoreConfig::default());
    assert_eq!(store.recovery().dict_snapshot_ignored, None);
    assert_eq!(entries(&store), want);
    let old_snapshot = std::fs::read(dir.path().join("dict.snap")).unwrap();
    fill(&store, 2_000, 3_000); // half already known, half new
    let grown = entries(&store);
    assert!(grown.len() > want.len());
    assert!(want.iter().all(|e| grown.contains(e)), "no id changed");
    drop(store);
    // The old snapshot with the records after it, as after a crash.
    std::fs::write(dir.path().join("dict.snap"), &old_snapshot).unwrap();
    let store = open(dir.path(), &clock(), StoreConfig::default());
    assert_eq!(store.recovery().dict_snapshot_ignored, None);
    assert_eq!(entries(&store), grown);
    // Interning through the snapshot and the records after it gives the same ids as
    // a store that loaded the whole log.
    fill(&store, 4_000, 2_000);
    let after = entries(&store);
    drop(store);
    assert_eq!(entries_without_snapshot(dir.path()), after);
    assert!(sightline_storage::check(dir.path()).unwrap().ok());
}

/// Opens a copy of `dir` whose snapshot `damage` changed: the snapshot is ignored
/// with a reason, the ids are the log's, and `check` names the problem first; after
/// the clean close the snapshot is whole again.
fn ignored_after(dir: &Path, want: &[String], damage: impl FnOnce(&Path)) -> String {
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir, copy.path());
    damage(&copy.path().join("dict.snap"));
    std::fs::write(copy.path().join("LOCK"), b"").unwrap();
    let report = sightline_storage::check(copy.path()).unwrap();
    assert!(!report.ok(), "check finds the damaged snapshot");
    let store = open(copy.path(), &clock(), StoreConfig::default());
    let why = store
        .recovery()
        .dict_snapshot_ignored
        .clone()
        .expect("the damaged snapshot is ignored");
    assert_eq!(entries(&store), want);
    drop(store);
    assert!(
        sightline_storage::check(copy.path()).unwrap().ok(),
        "rewritten at close"
    );
    let store = open(copy.path(), &clock(), StoreConfig::default());
    assert_eq!(store.recovery().dict_snapshot_ignored, None);
    assert_eq!(entries(&store), want);
    why
}

fn flip(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[at] ^= 0x40;
    std::fs::write(path, b).unwrap();
}

#[test]
fn a_damaged_snapshot_is_ignored_and_rewritten_never_a_wrong_id() {
    let dir = tempfile::tempdir().unwrap();
    store_with_snapshot(dir.path(), 1_500);
    let want = entries_without_snapshot(dir.path());
    let len = std::fs::metadata(dir.path().join("dict.snap"))
        .unwrap()
        .len() as usize;
    // Every header byte, then bytes spread over the sections: refused at open, or a
    // damaged chunk found by the first read of it (the log's answers then), or a
    // flip in bytes nothing reads.
    let header = 328;
    let mut offsets: Vec<usize> = (0..64).chain((64..header).step_by(5)).collect();
    offsets.extend((header..len).step_by(397));
    offsets.push(len - 1);
    for at in offsets {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), copy.path());
        flip(&copy.path().join("dict.snap"), at);
        // Padding between sections and the header's reserved bytes are not covered
        // by a checksum; a flip there changes nothing read.
        let store = open(copy.path(), &clock(), StoreConfig::default());
        assert_eq!(entries(&store), want, "byte {at} flipped");
    }
    for cut in [0, 10, header - 1, header, len / 2, len - 1] {
        let why = ignored_after(dir.path(), &want, |p| {
            let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
            f.set_len(cut as u64).unwrap();
        });
        assert!(why.contains("dict.snap"), "{why}");
    }
    // A flip in the header's section table is found at open.
    let why = ignored_after(dir.path(), &want, |p| flip(p, 56 + 7 * 24 + 3));
    assert!(why.contains("dict.snap"), "{why}");
}

fn u64_at(b: &[u8], at: usize) -> usize {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap()) as usize
}

#[test]
fn a_damaged_chunk_found_by_a_read_gives_the_logs_answers_and_is_written_again() {
    let dir = tempfile::tempdir().unwrap();
    // Enough subjects for the snapshot to span many 64 KiB chunks.
    store_with_snapshot(dir.path(), 60_000);
    let want = entries_without_snapshot(dir.path());
    let want_events = {
        let store = open(dir.path(), &clock(), StoreConfig::default());
        all_events(&store)
    };
    let snap = std::fs::read(dir.path().join("dict.snap")).unwrap();
    assert!(snap.len() > 4 * 65_536, "{} bytes", snap.len());
    // A byte in the middle of the subjects' strings (section 7).
    let (off, len) = (u64_at(&snap, 56 + 7 * 24), u64_at(&snap, 56 + 7 * 24 + 8));
    let at = off + len / 2;
    let chunk = (at - 328) / 65_536;
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), copy.path());
    flip(&copy.path().join("dict.snap"), at);
    std::fs::write(copy.path().join("LOCK"), b"").unwrap();

    // `check` names the file and the chunk.
    let report = sightline_storage::check(copy.path()).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("dict.snap") && p.contains(&format!("chunk {chunk} checksum"))),
        "{:?}",
        report.problems
    );

    // Opening reads none of it: the snapshot is used, not ignored.
    let store = open(copy.path(), &clock(), StoreConfig::default());
    assert_eq!(store.recovery().dict_snapshot_ignored, None);
    assert_eq!(store.dictionaries().snapshot_damage(), None);
    // The read that reaches the chunk finds the damage; every answer is the log's:
    // a query's (every event, its strings resolved), then every lookup's.
    assert_eq!(all_events(&store), want_events);
    assert!(store.dictionaries().snapshot_damage().is_some());
    assert_eq!(entries(&store), want);
    let damage = store
        .dictionaries()
        .snapshot_damage()
        .expect("the read found the damaged chunk")
        .to_string();
    assert!(
        damage.contains("dict.snap") && damage.contains(&format!("chunk {chunk} ")),
        "{damage}"
    );
    // The snapshot is written again (the log has not grown: for the damage), once.
    assert!(store.write_dict_snapshot().unwrap());
    assert!(!store.write_dict_snapshot().unwrap());
    // Interning after it gives the same ids as a store that loaded the whole log.
    fill(&store, 59_000, 2_000);
    let grown = entries(&store);
    assert!(want.iter().all(|e| grown.contains(e)), "no id changed");
    drop(store);
    assert!(sightline_storage::check(copy.path()).unwrap().ok());
    let store = open(copy.path(), &clock(), StoreConfig::default());
    assert_eq!(store.recovery().dict_snapshot_ignored, None);
    assert_eq!(entries(&store), grown);
    assert_eq!(store.dictionaries().snapshot_damage(), None);
    drop(store);
    assert_eq!(entries_without_snapshot(copy.path()), grown);
}

#[test]
fn a_snapshot_of_another_version_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    store_with_snapshot(dir.path(), 500);
    let want = entries_without_snapshot(dir.path());
    let why = ignored_after(dir.path(), &want, |p| {
        let mut b = std::fs::read(p).unwrap();
        b[8..12].copy_from_slice(&3u32.to_le_bytes());
        // A well-formed header of version 3: its checksum recomputed.
        let crc = crc32fast::hash(&b[..320]);
        b[320..324].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(p, b).unwrap();
    });
    assert!(why.contains("version 3"), "{why}");
}

#[test]
fn a_snapshot_of_a_longer_or_another_log_is_ignored() {
    let small = tempfile::tempdir().unwrap();
    store_with_snapshot(small.path(), 500);
    let want = entries_without_snapshot(small.path());
    // Stale: made from a longer log (this store's, grown further).
    let big = tempfile::tempdir().unwrap();
    copy_dir(small.path(), big.path());
    {
        let store = open(big.path(), &clock(), StoreConfig::default());
        fill(&store, 500, 500);
    }
    let longer = big.path().join("dict.snap");
    let why = ignored_after(small.path(), &want, |p| {
        std::fs::copy(&longer, p).unwrap();
    });
    assert!(why.contains("covers"), "{why}");
    // Foreign: made from another log at least as long as this one's prefix it claims.
    let other = tempfile::tempdir().unwrap();
    {
        let store = open(other.path(), &clock(), StoreConfig::default());
        let batch: Vec<_> = (0..300)
            .map(|i| ev(input(DAY0 + i, "z", 1, "face", &format!("Z{i}"))))
            .collect();
        store.append(&batch).unwrap();
    }
    let foreign = other.path().join("dict.snap");
    assert!(std::fs::metadata(&foreign).unwrap().len() > 0);
    let why = ignored_after(small.path(), &want, |p| {
        std::fs::copy(&foreign, p).unwrap();
    });
    assert!(
        why.contains("another dict.log") || why.contains("covers"),
        "{why}"
    );
}

#[test]
fn a_torn_log_tail_after_the_snapshot_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    store_with_snapshot(dir.path(), 500);
    let before = entries_without_snapshot(dir.path());
    let log = dir.path().join("dict.log");
    let len = std::fs::metadata(&log).unwrap().len();
    // Half a record appended after the snapshot's end.
    let mut b = std::fs::read(&log).unwrap();
    b.extend_from_slice(&[9, 0, 0, 0, 1, 2]);
    std::fs::write(&log, b).unwrap();
    let store = open(dir.path(), &clock(), StoreConfig::default());
    let torn = store.recovery().dict_torn_tail.clone().expect("torn tail");
    assert_eq!(torn.offset, len);
    assert_eq!(store.recovery().dict_snapshot_ignored, None);
    assert_eq!(entries(&store), before);
}

/// Set in the child process of the test below: the store directory to open and read.
const CHILD_DIR: &str = "SIGHTLINE_TEST_DICT_LOST_DIR";

#[test]
fn a_damaged_chunk_with_the_log_damaged_too_stops_the_process_and_the_next_open_refuses() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        // The child: a read reaches the damaged chunk; the log cannot replace it.
        let store = open(Path::new(&dir), &clock(), StoreConfig::default());
        let _ = entries(&store);
        unreachable!("the dictionaries are lost: the process must have stopped");
    }
    let dir = tempfile::tempdir().unwrap();
    store_with_snapshot(dir.path(), 60_000);
    let snap_path = dir.path().join("dict.snap");
    let snap = std::fs::read(&snap_path).unwrap();
    let (off, len) = (u64_at(&snap, 56 + 7 * 24), u64_at(&snap, 56 + 7 * 24 + 8));
    flip(&snap_path, off + len / 2);
    // A byte in the middle of the log, inside what the snapshot covers (opening with
    // the snapshot reads only its last 4 KiB and the records after it).
    let log_len = std::fs::metadata(dir.path().join("dict.log"))
        .unwrap()
        .len() as usize;
    assert!(log_len > 3 * 4096);
    flip(&dir.path().join("dict.log"), log_len / 2);
    std::fs::write(dir.path().join("LOCK"), b"").unwrap();

    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_damaged_chunk_with_the_log_damaged_too_stops_the_process_and_the_next_open_refuses",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(6), "aborted (SIGABRT): {stderr}");
    assert!(
        stderr.contains("the dictionaries are lost")
            && stderr.contains("dict.snap")
            && stderr.contains("dict.log"),
        "{stderr}"
    );
    assert!(!snap_path.exists(), "the damaged snapshot was moved aside");
    assert!(
        dir.path().join("dict.snap.damaged").exists(),
        "kept for inspection"
    );
    // The next open loads the whole log and refuses it, naming it.
    let e = Store::open_with_clock(dir.path(), StoreConfig::default(), clock())
        .err()
        .expect("the store's dictionaries are lost");
    assert!(e.to_string().contains("dict.log"), "{e}");
}

/// Each way into the snapshot meets the damaged chunk first in a store of its own:
/// a string found by id (devices), an id found by string (the subjects' slots), and
/// a subject by id (its kind and string): each answers as the log does.
#[test]
fn each_lookup_that_meets_a_damaged_chunk_first_answers_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    {
        // Many devices too, so their strings span chunks opening does not read.
        let store = open(dir.path(), &clock(), StoreConfig::default());
        let batch: Vec<_> = (0..60_000u32)
            .map(|i| {
                let kind = KINDS[(i % 3) as usize];
                ev(input(
                    DAY0 + i64::from(i),
                    "c0",
                    i % 30_000,
                    kind,
                    &format!("S{}", i / 2),
                ))
            })
            .collect();
        for chunk in batch.chunks(500) {
            store.append(chunk).unwrap();
        }
    }
    let (devices, subjects) = {
        let store = open(dir.path(), &clock(), StoreConfig::default());
        let d = store.dictionaries();
        let c: Vec<String> = (0..d.len_devices() as u32)
            .map(|id| d.device(id).unwrap().to_string())
            .collect();
        let s: Vec<(sightline_storage::Kind, String)> = (0..d.len_subjects() as u32)
            .map(|id| {
                let (k, s) = d.subject(id).unwrap();
                (k, s.to_string())
            })
            .collect();
        (c, s)
    };
    assert_eq!(devices.len(), 30_000);
    let snap = std::fs::read(dir.path().join("dict.snap")).unwrap();
    let section = |i: usize| (u64_at(&snap, 56 + i * 24), u64_at(&snap, 56 + i * 24 + 8));
    // (section damaged, the first read)
    type Read = fn(&Store, &[String], &[(sightline_storage::Kind, String)]);
    let cases: [(usize, Read); 3] = [
        (4, |store, devices, _| {
            let d = store.dictionaries();
            for (id, c) in devices.iter().enumerate() {
                assert_eq!(d.device(id as u32), Some(c.as_str()));
            }
        }),
        (8, |store, _, subjects| {
            let d = store.dictionaries();
            for (id, (k, s)) in subjects.iter().enumerate() {
                assert_eq!(d.subject_id(*k, s), Some(id as u32), "{k:?} {s}");
            }
            assert_eq!(d.subject_id(subjects[0].0, "nobody"), None);
        }),
        (7, |store, _, subjects| {
            let d = store.dictionaries();
            for (id, (k, s)) in subjects.iter().enumerate() {
                assert_eq!(d.subject(id as u32), Some((*k, s.as_str())));
            }
        }),
    ];
    for (i, read) in cases {
        let (off, len) = section(i);
        let copy = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), copy.path());
        flip(&copy.path().join("dict.snap"), off + len / 2);
        let store = open(copy.path(), &clock(), StoreConfig::default());
        assert_eq!(store.recovery().dict_snapshot_ignored, None, "section {i}");
        assert_eq!(store.dictionaries().snapshot_damage(), None, "section {i}");
        read(&store, &devices, &subjects);
        let damage = store.dictionaries().snapshot_damage().map(str::to_string);
        assert!(
            damage
                .as_deref()
                .is_some_and(|d| d.contains("checksum mismatch")),
            "section {i}: {damage:?}"
        );
    }
}

/// A store of `n` events whose shards were sealed (so the WAL no longer holds them and
/// only the segments name their subjects' ids), closed cleanly.
fn sealed_store(dir: &Path, c: &Arc<ManualClock>, n: u32) {
    let store = open(dir, c, StoreConfig::default());
    fill(&store, 0, n);
    c.advance(30 * DAY);
    assert!(!store.maintain().unwrap().sealed.is_empty());
}

/// Issue 21's review: a damaged LAST record of dict.log (a byte flipped in its last
/// 4 KiB, which also makes the snapshot's tail check fail) was cut off as a torn tail,
/// and the next new subject took its id, so a sealed event read as that subject. The
/// snapshot's header proves the log reached its end durably: opening refuses, naming
/// dict.log and the offset, and cuts nothing off.
#[test]
fn a_damaged_last_record_below_a_snapshots_length_is_refused_not_cut_off_as_torn() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    sealed_store(dir.path(), &c, 60_000);
    let log = dir.path().join("dict.log");
    let log_len = std::fs::metadata(&log).unwrap().len();
    flip(&log, log_len as usize - 1); // the last record's last payload byte
    for attempt in 0..2 {
        let e = Store::open_with_clock(dir.path(), StoreConfig::default(), c.clone())
            .err()
            .expect("the store's last dictionary entry is lost: refused");
        match &e {
            sightline_storage::StorageError::Corrupt { path, reason, .. } => {
                assert!(path.ends_with("dict.log"), "attempt {attempt}: {e}");
                assert!(reason.contains("not torn"), "{reason}");
                assert!(reason.contains("dict.snap"), "{reason}");
            }
            other => panic!("attempt {attempt}: expected Corrupt, got {other:?}"),
        }
        assert_eq!(
            std::fs::metadata(&log).unwrap().len(),
            log_len,
            "nothing cut off"
        );
        // `sightline check` says what opening says, not "a torn tail".
        let r = sightline_storage::check(dir.path()).unwrap();
        assert!(
            r.problems
                .iter()
                .any(|p| p.contains("dict.log") && p.contains("not torn")),
            "attempt {attempt}: {:?}",
            r.problems
        );
        assert!(
            !r.torn_tails.iter().any(|p| p.ends_with("dict.log")),
            "{:?}",
            r.torn_tails
        );
        // Whatever the snapshot's version: one this build does not read (its header
        // whole) proves the length as well.
        let snap = dir.path().join("dict.snap");
        let mut h = std::fs::read(&snap).unwrap();
        h[8..12].copy_from_slice(&1u32.to_le_bytes());
        let crc = crc32fast::hash(&h[..320]);
        h[320..324].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&snap, h).unwrap();
    }
    // A torn tail past what the snapshot covers is still cut off (a crash mid-append).
    flip(&log, log_len as usize - 1);
    let mut b = std::fs::read(&log).unwrap();
    b.extend_from_slice(&[9, 0, 0, 0, 1, 2]);
    std::fs::write(&log, b).unwrap();
    let store = open(dir.path(), &c, StoreConfig::default());
    assert_eq!(
        store.recovery().dict_torn_tail.as_ref().map(|t| t.offset),
        Some(log_len)
    );
}

/// Issue 21's review: opening a store whose snapshot has damaged chunks that the
/// records after it probe, with dict.log damaged too, aborted the process (the
/// open-time lookups went through the fatal path). Opening now returns `Corrupt`
/// naming dict.log, in process, and removes nothing.
#[test]
fn opening_with_damaged_snapshot_chunks_and_a_damaged_log_returns_corrupt_in_process() {
    let dir = tempfile::tempdir().unwrap();
    store_with_snapshot(dir.path(), 60_000);
    let snap_bytes = std::fs::read(dir.path().join("dict.snap")).unwrap();
    let crashed = tempfile::tempdir().unwrap();
    {
        // Records after the snapshot, as after a crash: copied while open. One repeats
        // a subject of the snapshot (its record is refused only after a probe), one is new.
        let store = open(dir.path(), &clock(), StoreConfig::default());
        store
            .append(&[
                ev(input(DAY0 + 70_000, "c0", 1, "vehicle", "S29999")),
                ev(input(DAY0 + 70_001, "c0", 2, "vehicle", "NEWONE")),
            ])
            .unwrap();
        copy_dir(dir.path(), crashed.path());
    }
    let p = crashed.path();
    std::fs::write(p.join("dict.snap"), &snap_bytes).unwrap();
    // Damage every chunk of the subjects' slots (the tail's lookups meet one), and a
    // byte in the middle of the log (inside what the snapshot covers).
    for section in [8] {
        let (off, len) = (
            u64_at(&snap_bytes, 56 + section * 24),
            u64_at(&snap_bytes, 56 + section * 24 + 8),
        );
        let mut at = off + len.min(100) / 2;
        while at < off + len {
            flip(&p.join("dict.snap"), at);
            at += 65_536;
        }
    }
    let log_len = std::fs::metadata(p.join("dict.log")).unwrap().len() as usize;
    flip(&p.join("dict.log"), log_len / 2);
    std::fs::write(p.join("LOCK"), b"").unwrap();
    let e = Store::open_with_clock(p, StoreConfig::default(), clock())
        .err()
        .expect("the dictionaries are lost: refused");
    match &e {
        sightline_storage::StorageError::Corrupt { path, .. } => {
            assert!(path.ends_with("dict.log"), "{e}")
        }
        other => panic!("expected Corrupt naming dict.log, got {other:?}"),
    }
    assert!(p.join("dict.snap").exists(), "opening removes nothing");
    assert!(!p.join("dict.snap.damaged").exists());
}

/// A passing I/O error (EMFILE) reading dict.log, when a read after open meets a
/// damaged chunk, is tried again: the answers are right, nothing is removed, the
/// process goes on.
#[test]
fn a_passing_error_reading_the_log_for_a_damaged_chunk_is_tried_again() {
    use sightline_storage::io::{Fault, FaultKind, FaultyIo, Op};
    let dir = tempfile::tempdir().unwrap();
    store_with_snapshot(dir.path(), 60_000);
    let want = entries_without_snapshot(dir.path());
    let snap = std::fs::read(dir.path().join("dict.snap")).unwrap();
    let (off, len) = (u64_at(&snap, 56 + 7 * 24), u64_at(&snap, 56 + 7 * 24 + 8));
    flip(&dir.path().join("dict.snap"), off + len / 2);
    let io = FaultyIo::new();
    let config = StoreConfig {
        io: io.clone(),
        ..StoreConfig::default()
    };
    let store = open(dir.path(), &clock(), config);
    assert_eq!(store.dictionaries().snapshot_damage(), None);
    const EMFILE: i32 = 24;
    io.inject(Fault::new(Op::Read, "dict.log", FaultKind::Errno(EMFILE)).once());
    io.inject(Fault::new(Op::Read, "dict.log", FaultKind::Errno(EMFILE)).once());
    assert_eq!(entries(&store), want);
    assert_eq!(io.injected(), 2, "the log's read failed twice, then worked");
    assert!(store.dictionaries().snapshot_damage().is_some());
    assert_eq!(
        store.recovery().dict_snapshot_damage.as_deref(),
        store.dictionaries().snapshot_damage()
    );
    assert!(dir.path().join("dict.snap").exists(), "nothing removed");
    assert!(!dir.path().join("dict.snap.damaged").exists());
}

/// Four readers race the read that finds a damaged chunk (each section that holds
/// data), all looking up by id and by string: every answer is right, whichever of
/// them loads the log's entries and whenever the others arrive.
#[test]
fn readers_racing_the_set_aside_of_a_damaged_chunk_see_right_answers() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), &clock(), StoreConfig::default());
        let batch: Vec<_> = (0..90_000u32)
            .map(|i| {
                ev(input(
                    DAY0 + i64::from(i),
                    &format!("c{}", i % 5),
                    i % 20_000,
                    KINDS[(i % 3) as usize],
                    &format!("S{}", i / 2),
                ))
            })
            .collect();
        for chunk in batch.chunks(500) {
            store.append(chunk).unwrap();
        }
    }
    let want: Vec<(sightline_storage::Kind, String)> = {
        let store = open(dir.path(), &clock(), StoreConfig::default());
        let d = store.dictionaries();
        (0..d.len_subjects() as u32)
            .map(|id| {
                let (k, s) = d.subject(id).unwrap();
                (k, s.to_string())
            })
            .collect()
    };
    let want = Arc::new(want);
    let snap = std::fs::read(dir.path().join("dict.snap")).unwrap();
    // Subjects' strings, slots, ends; devices' strings and ends; the kinds.
    for section in [7usize, 8, 6, 4, 3, 9] {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), copy.path());
        let (off, len) = (
            u64_at(&snap, 56 + section * 24),
            u64_at(&snap, 56 + section * 24 + 8),
        );
        flip(&copy.path().join("dict.snap"), off + len / 2);
        let store = Arc::new(open(copy.path(), &clock(), StoreConfig::default()));
        let readers: Vec<_> = (0..4usize)
            .map(|t| {
                let (store, want) = (store.clone(), want.clone());
                std::thread::spawn(move || {
                    let n = want.len();
                    for j in 0..n {
                        let id = ((j * 7919 + t * 104_729) % n) as u32;
                        let (k, s) = &want[id as usize];
                        let d = store.dictionaries();
                        assert_eq!(d.subject(id), Some((*k, s.as_str())), "{section} {id}");
                        assert_eq!(d.subject_id(*k, s), Some(id), "{section} {s}");
                        if j % 97 == 0 {
                            assert_eq!(d.subject_id(*k, "nobody-here"), None);
                        }
                    }
                    for dv in 0..20_000u32 {
                        let d = store.dictionaries();
                        let s = d.device(dv).unwrap().to_string();
                        assert_eq!(d.device_id(&s), Some(dv));
                    }
                })
            })
            .collect();
        for r in readers {
            r.join().unwrap();
        }
        let d = store.dictionaries();
        let damage = d.snapshot_damage();
        assert!(
            damage.is_some_and(|d| d.contains("checksum mismatch")),
            "section {section}: {damage:?}"
        );
    }
}

/// Damage in the communities' sections (in the first chunk, which opening checks:
/// the snapshot is ignored) and in the kinds (in the last, partial chunk of a
/// multi-chunk file, found by a read): the answers are the log's either way.
#[test]
fn damage_in_the_communities_or_the_kinds_in_the_last_partial_chunk_gives_the_logs_answers() {
    let dir = tempfile::tempdir().unwrap();
    store_with_snapshot(dir.path(), 60_000);
    let want = entries_without_snapshot(dir.path());
    let snap = std::fs::read(dir.path().join("dict.snap")).unwrap();
    let section = |i: usize| (u64_at(&snap, 56 + i * 24), u64_at(&snap, 56 + i * 24 + 8));
    let data_end = section(10).0;
    let chunks = (data_end - 328).div_ceil(65_536);
    assert!(chunks > 2, "{chunks} chunks");
    assert_ne!((data_end - 328) % 65_536, 0, "the last chunk is partial");
    let (kinds_at, kinds_len) = section(9);
    let last_kind = kinds_at + kinds_len - 1;
    assert_eq!((last_kind - 328) / 65_536, chunks - 1, "in the last chunk");
    for (what, at) in [
        ("communities' ends", section(0).0 + 3),
        ("communities' strings", section(1).0 + section(1).1 / 2),
        ("communities' slots", section(2).0 + 1),
        ("the last subject's kind", last_kind),
    ] {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), copy.path());
        flip(&copy.path().join("dict.snap"), at);
        let store = open(copy.path(), &clock(), StoreConfig::default());
        assert_eq!(entries(&store), want, "{what}");
        let ignored = store.recovery().dict_snapshot_ignored.clone();
        let damage = store.dictionaries().snapshot_damage().map(str::to_string);
        assert!(
            ignored.is_some() || damage.is_some(),
            "{what}: the damage is found"
        );
        if what.contains("kind") {
            assert!(
                damage
                    .as_deref()
                    .is_some_and(|d| d.contains(&format!("chunk {} ", chunks - 1))),
                "{what}: {damage:?}"
            );
        }
    }
}

/// The sturdier half of the fix: the catalog records the dictionary's counts before
/// WAL files are removed, so a dict.log that lost entries sealed events use is refused
/// even with no snapshot header to prove its length — whether its last record is
/// damaged (which alone would look like a torn tail) or cut off whole at a record
/// boundary (which alone would look like nothing at all).
#[test]
fn a_dictionary_log_shorter_than_the_catalog_recorded_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = clock();
    sealed_store(dir.path(), &c, 3_000);
    let log = dir.path().join("dict.log");
    let bytes = std::fs::read(&log).unwrap();
    // Where the last record starts: walk the frames (len u32, crc u32, payload).
    let mut last = 0;
    let mut at = 0;
    while at < bytes.len() {
        last = at;
        at += 8 + u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    }
    let damaged = {
        let mut b = bytes.clone();
        *b.last_mut().unwrap() ^= 0x40;
        b
    };
    for (what, content) in [("damaged", damaged), ("cut off", bytes[..last].to_vec())] {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), copy.path());
        std::fs::remove_file(copy.path().join("dict.snap")).unwrap();
        std::fs::write(copy.path().join("dict.log"), &content).unwrap();
        let e = Store::open_with_clock(copy.path(), StoreConfig::default(), c.clone())
            .err()
            .unwrap_or_else(|| panic!("{what}: the dictionary lost an entry: refused"));
        match &e {
            sightline_storage::StorageError::Corrupt { path, reason, .. } => {
                assert!(path.ends_with("dict.log"), "{what}: {e}");
                assert!(reason.contains("catalog recorded"), "{what}: {reason}");
            }
            other => panic!("{what}: expected Corrupt, got {other:?}"),
        }
        let len = std::fs::metadata(copy.path().join("dict.log"))
            .unwrap()
            .len();
        assert_eq!(len, content.len() as u64, "{what}: nothing cut off");
        let r = sightline_storage::check(copy.path()).unwrap();
        assert!(
            r.problems
                .iter()
                .any(|p| p.contains("dict.log") && p.contains("catalog recorded")),
            "{what}: {:?}",
            r.problems
        );
    }
    // The store itself opens, and so does one whose WAL still holds every event (no
    // count recorded: nothing was removed).
    drop(open(dir.path(), &c, StoreConfig::default()));
    let fresh = tempfile::tempdir().unwrap();
    {
        let store = open(fresh.path(), &c, StoreConfig::default());
        fill(&store, 0, 100);
    }
    let store = open(fresh.path(), &c, StoreConfig::default());
    assert_eq!(store.recovery().dict_torn_tail, None);
}
