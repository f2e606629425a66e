//! Behaviour of the store through its public interface.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::*;
use sightline_storage::{
    Appended, Community, Device, Direction, Kind, ManualClock, ShardKey, StorageError, StoreConfig,
};

#[test]
fn appended_events_are_readable_at_once_and_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(DAY0 + 12 * HOUR));
    let store = open(dir.path(), &clock, StoreConfig::default());
    let out = store
        .append(&[
            ev(input(DAY0 + HOUR, "3205080001", 3, "vehicle", "苏E·12345")),
            ev(input(
                DAY0 + 2 * HOUR,
                "3205080001",
                3,
                "vehicle",
                "苏e12345",
            )),
        ])
        .unwrap();
    assert_eq!(
        out.results,
        vec![Appended::Stored { seq: 1 }, Appended::Stored { seq: 2 }]
    );
    let got = all_events(&store);
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|e| e.event.subject() == "苏E12345"));
    {
        let d = store.dictionaries();
        assert_eq!(
            d.len_subjects(),
            1,
            "two spellings of one plate are one subject"
        );
    }
    drop(store);
    let store = open(dir.path(), &clock, StoreConfig::default());
    assert_eq!(all_events(&store), got);
    assert_eq!(store.recovery().wal_events_replayed, 2);
    let next = store
        .append(&[ev(input(DAY0 + 3 * HOUR, "3205080001", 3, "face", "F1"))])
        .unwrap();
    assert_eq!(
        next.results,
        vec![Appended::Stored { seq: 3 }],
        "sequence numbers continue after reopen"
    );
}

#[test]
fn a_resent_source_id_is_acknowledged_but_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(DAY0 + 12 * HOUR));
    let store = open(dir.path(), &clock, StoreConfig::default());
    let e = ev(with_source(
        input(DAY0 + HOUR, "3205080001", 3, "vehicle", "苏E12345"),
        "MV-0001",
    ));
    // Within one batch, in memory, after sealing, and after reopening.
    let out = store.append(&[e.clone(), e.clone()]).unwrap();
    assert_eq!(
        out.results,
        vec![Appended::Stored { seq: 1 }, Appended::Duplicate { seq: 1 }]
    );
    assert_eq!(
        store.append(std::slice::from_ref(&e)).unwrap().results,
        vec![Appended::Duplicate { seq: 1 }]
    );
    let key = store.shards()[0].key;
    assert!(store.seal_shard(key).unwrap());
    assert_eq!(
        store.append(std::slice::from_ref(&e)).unwrap().results,
        vec![Appended::Duplicate { seq: 1 }]
    );
    drop(store);
    let store = open(dir.path(), &clock, StoreConfig::default());
    assert_eq!(
        store.append(std::slice::from_ref(&e)).unwrap().results,
        vec![Appended::Duplicate { seq: 1 }]
    );
    assert_eq!(all_events(&store).len(), 1);
    // The same source id in another shard (another day) is another event.
    let other_day = ev(with_source(
        input(DAY0 + DAY + HOUR, "3205080001", 3, "vehicle", "苏E12345"),
        "MV-0001",
    ));
    assert_eq!(store.append(&[other_day]).unwrap().stored(), 1);
}

#[test]
fn out_of_bounds_events_are_rejected_without_losing_the_rest_of_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(DAY0 + 12 * HOUR));
    let config = StoreConfig {
        retention_days: Some(30),
        ..Default::default()
    };
    let store = open(dir.path(), &clock, config);
    let out = store
        .append(&[
            ev(input(DAY0, "c1", 1, "face", "F1")),
            ev(input(DAY0 + 3 * DAY, "c1", 1, "face", "F2")), // more than a day ahead of the clock
            ev(input(DAY0 - 40 * DAY, "c1", 1, "face", "F3")), // older than retention
            ev(input(DAY0 + HOUR, "c1", 1, "face", "F4")),
        ])
        .unwrap();
    assert!(matches!(out.results[0], Appended::Stored { .. }));
    assert!(
        matches!(&out.results[1], Appended::Rejected(e) if e.field == "ts" && e.reason.contains("future"))
    );
    assert!(
        matches!(&out.results[2], Appended::Rejected(e) if e.field == "ts" && e.reason.contains("retention"))
    );
    assert!(matches!(out.results[3], Appended::Stored { .. }));
    let subjects: Vec<_> = all_events(&store)
        .into_iter()
        .map(|e| e.event.subject().to_string())
        .collect();
    assert_eq!(subjects, ["F1", "F4"]);
}

#[test]
fn bounds_checked_at_an_explicit_time_decide_alike_whatever_the_clock_says() {
    // Two stores (an owner and a replica of the same log) whose clocks differ by days
    // append the same events at the same explicit time: the same ones are stored, with
    // the same sequence numbers.
    let config = StoreConfig {
        retention_days: Some(30),
        ..Default::default()
    };
    let at = DAY0 + 12 * HOUR;
    let batch = || {
        vec![
            ev(input(DAY0, "c1", 1, "face", "F1")),
            ev(input(DAY0 + 3 * DAY, "c1", 1, "face", "F2")), // ahead of `at`
            ev(input(DAY0 - 40 * DAY, "c1", 1, "face", "F3")), // older than retention at `at`
            ev(input(DAY0 + HOUR, "c1", 1, "face", "F4")),
        ]
    };
    let mut outcomes = Vec::new();
    for clock_at in [DAY0 + 12 * HOUR, DAY0 + 5 * DAY, DAY0 - 35 * DAY] {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(clock_at));
        let store = open(dir.path(), &clock, config.clone());
        let out = store.append_at(&batch(), &[at; 4]).unwrap();
        assert_eq!(store.next_seq(), 3);
        assert!(store.append_at(&batch(), &[at]).is_err());
        assert!(store
            .validate_at(input(DAY0 + 3 * DAY, "c1", 1, "face", "F2"), at)
            .is_err());
        assert!(store
            .validate_at(input(DAY0 + HOUR, "c1", 1, "face", "F4"), at)
            .is_ok());
        outcomes.push(out.results);
    }
    assert!(matches!(outcomes[0][0], Appended::Stored { seq: 1 }));
    assert!(matches!(&outcomes[0][1], Appended::Rejected(e) if e.reason.contains("future")));
    assert!(matches!(&outcomes[0][2], Appended::Rejected(e) if e.reason.contains("retention")));
    assert!(matches!(outcomes[0][3], Appended::Stored { seq: 2 }));
    assert_eq!(outcomes[0], outcomes[1]);
    assert_eq!(outcomes[0], outcomes[2]);
    // Each event at its own time: F2 logged three days on is not in the future.
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(DAY0));
    let store = open(dir.path(), &clock, config.clone());
    let out = store
        .append_at(&batch(), &[at, DAY0 + 3 * DAY, at, at])
        .unwrap();
    assert!(matches!(out.results[1], Appended::Stored { seq: 2 }));
    assert_eq!(store.next_seq(), 4);
    // The store's own clock still decides a plain append: five days on, F1 is fine
    // and F2 is no longer in the future.
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(DAY0 + 5 * DAY));
    let store = open(dir.path(), &clock, config);
    assert_eq!(store.append(&batch()).unwrap().stored(), 3);
}

#[test]
fn oversize_batches_are_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(DAY0));
    let store = open(
        dir.path(),
        &clock,
        StoreConfig {
            max_batch_events: 2,
            ..Default::default()
        },
    );
    let e = ev(input(DAY0, "c1", 1, "face", "F1"));
    assert!(matches!(
        store.append(&[e.clone(), e.clone(), e]),
        Err(StorageError::Limit {
            actual: 3,
            max: 2,
            ..
        })
    ));
}

#[test]
fn shards_split_at_shanghai_midnight_and_by_community() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(DAY0 + 12 * HOUR));
    let store = open(dir.path(), &clock, StoreConfig::default());
    store
        .append(&[
            ev(input(DAY0 - 1, "c1", 1, "face", "F1")),
            ev(input(DAY0, "c1", 1, "face", "F1")),
            ev(input(DAY0 + 1, "c2", 1, "face", "F1")),
        ])
        .unwrap();
    let keys: Vec<ShardKey> = store.shards().iter().map(|s| s.key).collect();
    let span = store.layout().span_of(DAY0);
    let (c1, c2) = {
        let d = store.dictionaries();
        (d.community_id("c1").unwrap(), d.community_id("c2").unwrap())
    };
    assert_eq!(
        keys,
        vec![
            ShardKey {
                community: c1,
                span: span - 1
            },
            ShardKey {
                community: c1,
                span
            },
            ShardKey {
                community: c2,
                span
            }
        ]
    );
}

#[test]
fn sealing_keeps_every_event_readable_and_checkpoints_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(DAY0 + 12 * HOUR));
    let config = StoreConfig {
        wal_file_bytes: 512,
        ..Default::default()
    };
    let store = open(dir.path(), &clock, config.clone());
    for i in 0..40 {
        let e = ev(input(
            DAY0 + i * 60_000,
            "c1",
            (i % 3) as u32,
            "vehicle",
            &format!("苏E{:05}", i % 7),
        ));
        store.append(&[e]).unwrap();
    }
    let before = all_events(&store);
    assert!(store.wal_file_count() > 3, "small WAL files rotate");
    // Not due yet: the day is not over.
    assert!(store.seal_due().unwrap().is_empty());
    clock.set(DAY0 + DAY + 2 * HOUR); // end of day plus the default grace
    let sealed = store.seal_due().unwrap();
    assert_eq!(sealed.len(), 1);
    assert_eq!(
        store.wal_file_count(),
        1,
        "WAL files of sealed events are deleted"
    );
    assert_eq!(all_events(&store), before);
    let info = &store.shards()[0];
    assert_eq!(
        (info.segments, info.sealed_events, info.memory_events),
        (1, 40, 0)
    );
    // Every event sealed: nothing of the WAL is kept on disk.
    let wal_bytes = |d: &std::path::Path| -> u64 {
        std::fs::read_dir(d.join("wal"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    };
    assert_eq!(wal_bytes(dir.path()), 0);
    drop(store);
    let store = open(dir.path(), &clock, config.clone());
    assert_eq!(all_events(&store), before);
    assert_eq!(store.recovery().wal_events_replayed, 0);
    // Appends after that land in the new file and replay after a reopen.
    store
        .append(&[ev(input(DAY0 + DAY + 3 * HOUR, "c1", 1, "face", "F9"))])
        .unwrap();
    assert!(wal_bytes(dir.path()) > 0);
    drop(store);
    let store = open(dir.path(), &clock, config);
    assert_eq!(store.recovery().wal_events_replayed, 1);
    assert_eq!(all_events(&store).len(), before.len() + 1);
}

#[test]
fn late_events_become_a_delta_segment_that_compaction_merges() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(DAY0 + 12 * HOUR));
    let store = open(dir.path(), &clock, StoreConfig::default());
    let mut batch = Vec::new();
    for i in 0..300 {
        batch.push(ev(with_source(
            input(
                DAY0 + i * 1000,
                "c1",
                (i % 4) as u32,
                "face",
                &format!("F{}", i % 11),
            ),
            &format!("S{i}"),
        )));
    }
    store.append(&batch).unwrap();
    clock.set(DAY0 + DAY + 3 * HOUR);
    assert_eq!(store.maintain().unwrap().sealed.len(), 1);
    // Cameras come back online with yesterday's buffer, one late event at a time: each
    // becomes a small delta segment, kept beside the day's until there are eight.
    let key = store.shards()[0].key;
    for late in 1..8 {
        store
            .append(&[ev(input(
                DAY0 + 5000,
                "c1",
                9,
                "face",
                &format!("LATE{late}"),
            ))])
            .unwrap();
        let report = store.maintain().unwrap();
        assert_eq!(report.sealed.len(), 1);
        if late < 7 {
            assert!(report.compacted.is_empty(), "a small delta waits");
            assert_eq!(store.segments(key).unwrap().len(), 1 + late);
        } else {
            assert_eq!(report.compacted, vec![key], "eight segments are merged");
        }
    }
    assert_eq!(store.segments(key).unwrap().len(), 1);
    assert_eq!(all_events(&store).len(), 307);
    // A delta of a quarter of the day's events is merged at once.
    let quarter: Vec<_> = (0..77)
        .map(|i| ev(input(DAY0 + 9000 + i, "c1", 9, "face", "BULK")))
        .collect();
    store.append(&quarter).unwrap();
    assert_eq!(store.maintain().unwrap().compacted, vec![key]);
    assert_eq!(store.segments(key).unwrap().len(), 1);
    assert_eq!(all_events(&store).len(), 384);
    assert_eq!(
        common::files_with_ext(dir.path(), "seg").len(),
        1,
        "merged files are deleted"
    );
    // Source ids survive compaction.
    assert_eq!(
        store.append(&[batch[7].clone()]).unwrap().results,
        vec![Appended::Duplicate { seq: 8 }]
    );
    let seg = &store.segments(key).unwrap()[0];
    let f7 = store.dictionaries().subject_id(Kind::Face, "F7").unwrap();
    let ords: Vec<u32> = seg.subject_ordinals(f7).collect();
    assert!(!ords.is_empty());
    assert!(
        ords.iter().all(|&o| seg.row(o).unwrap().subject == f7),
        "postings point at the subject's rows"
    );
    // Reading a subject's rows in one walk gives the same rows as one lookup each.
    for subject in seg.subjects() {
        let one_by_one: Vec<_> = seg
            .subject_ordinals(subject)
            .map(|o| (o, seg.row(o).unwrap()))
            .collect();
        let mut walked = Vec::new();
        seg.for_each_of_subject(subject, |o, r| walked.push((o, r)));
        assert_eq!(walked, one_by_one);
        // So does a walk over the postings block by block.
        assert_posting_walks_give(seg, subject, &one_by_one, "");
        // Counting from postings agrees with counting decoded rows.
        assert_eq!(seg.count_of_subject(subject, None), walked.len() as u64);
        for devices in [vec![], vec![0u32], vec![1, 3], (0..12).collect()] {
            let mut ids: Vec<u32> = devices
                .iter()
                .filter_map(|&d| store.dictionaries().device_id(&device(d)))
                .collect();
            let decoded = walked
                .iter()
                .filter(|(_, r)| ids.contains(&r.device))
                .count() as u64;
            ids.sort_unstable();
            assert_eq!(seg.count_of_subject(subject, Some(&ids)), decoded);
            ids.reverse();
            assert_eq!(seg.count_of_subject(subject, Some(&ids)), decoded);
        }
    }
    for d in 0..10u32 {
        let Some(id) = store.dictionaries().device_id(&device(d)) else {
            continue;
        };
        let run = seg.device_ordinals(id);
        let mut rows = Vec::new();
        seg.for_each(|o, r| rows.push((o, r.device)));
        let expected: Vec<u32> = rows
            .iter()
            .filter(|(_, dv)| *dv == id)
            .map(|(o, _)| *o)
            .collect();
        assert_eq!(run.clone().collect::<Vec<_>>(), expected, "device {d}");
    }
}

#[test]
fn retention_drops_whole_old_shards() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(DAY0 + 12 * HOUR));
    let config = StoreConfig {
        retention_days: Some(2),
        ..Default::default()
    };
    let store = open(dir.path(), &clock, config.clone());
    for d in 0..3 {
        clock.set(DAY0 + d * DAY + 12 * HOUR);
        store
            .append(&[ev(input(DAY0 + d * DAY, "c1", 1, "face", &format!("F{d}")))])
            .unwrap();
    }
    clock.set(DAY0 + 3 * DAY + 12 * HOUR);
    store.seal_due().unwrap(); // all three days are over (plus grace) and sealed
    clock.set(DAY0 + 4 * DAY + HOUR); // day 0 ended 3 days ago, day 1 ended 2 days + 1 h ago
    let dropped = store.apply_retention().unwrap();
    assert_eq!(dropped.len(), 2);
    let left: Vec<_> = all_events(&store)
        .into_iter()
        .map(|e| e.event.subject().to_string())
        .collect();
    assert_eq!(left, ["F2"]);
    drop(store);
    let store = open(dir.path(), &clock, config);
    let left: Vec<_> = all_events(&store)
        .into_iter()
        .map(|e| e.event.subject().to_string())
        .collect();
    assert_eq!(left, ["F2"], "dropped shards stay dropped after reopen");
}

#[test]
fn retention_changes_at_run_time_and_the_change_holds_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(DAY0 + 10 * DAY + 12 * HOUR));
    let store = open(dir.path(), &clock, StoreConfig::default());
    assert_eq!(store.retention_days(), None);
    for d in 5..=10 {
        store
            .append(&[ev(input(DAY0 + d * DAY, "c1", 1, "face", &format!("F{d}")))])
            .unwrap();
    }
    // Out of range: refused, the policy unchanged.
    for bad in [0, sightline_storage::MAX_RETENTION_DAYS + 1] {
        let e = store.set_retention_days(Some(bad)).unwrap_err();
        assert!(e.to_string().contains("retention_days"), "{e}");
    }
    assert_eq!(store.retention_days(), None);

    store.set_retention_days(Some(3)).unwrap();
    // Appends older than the new horizon are refused at once …
    let r = store
        .append(&[ev(input(DAY0 + 6 * DAY, "c1", 1, "face", "late"))])
        .unwrap();
    assert!(matches!(&r.results[0], Appended::Rejected(v) if v.field == "ts"));
    // … and the next retention run drops the shards past it (days 5, 6: ended more
    // than 3 days before day 10 noon).
    assert_eq!(store.apply_retention().unwrap().len(), 2);
    drop(store);

    // Reopened without a policy in the config: the stored one holds.
    let store = open(dir.path(), &clock, StoreConfig::default());
    assert_eq!(store.retention_days(), Some(3));
    let left: Vec<_> = all_events(&store)
        .into_iter()
        .map(|e| e.event.subject().to_string())
        .collect();
    assert_eq!(left, ["F7", "F8", "F9", "F10"]);
    store.set_retention_days(None).unwrap();
    drop(store);
    let store = open(dir.path(), &clock, StoreConfig::default());
    assert_eq!(
        store.retention_days(),
        None,
        "keep-everything is stored too"
    );
    drop(store);

    // A policy given in the config becomes the stored one.
    let config = StoreConfig {
        retention_days: Some(30),
        ..Default::default()
    };
    drop(open(dir.path(), &clock, config));
    let store = open(dir.path(), &clock, StoreConfig::default());
    assert_eq!(store.retention_days(), Some(30));
}

#[test]
fn device_window_matches_a_plain_filter_across_segments_and_memory() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(DAY0 + 12 * HOUR));
    let store = open(dir.path(), &clock, StoreConfig::default());
    let mut all = Vec::new();
    for i in 0..2000i64 {
        let ts = DAY0 + (i * 7919) % (10 * HOUR);
        all.push(ev(input(
            ts,
            "c1",
            (i % 5) as u32,
            "vehicle",
            &format!("苏E{:05}", i % 97),
        )));
    }
    store.append(&all[..1500]).unwrap();
    store.seal_shard(store.shards()[0].key).unwrap();
    store.append(&all[1500..]).unwrap();
    let (c, d) = {
        let dicts = store.dictionaries();
        (
            dicts.community_id("c1").unwrap(),
            dicts.device_id(&device(2)).unwrap(),
        )
    };
    for (from, to) in [
        (DAY0, DAY0 + DAY),
        (DAY0 + HOUR, DAY0 + HOUR + 60_000),
        (DAY0 + 3 * HOUR + 17, DAY0 + 7 * HOUR),
        (DAY0 - DAY, DAY0 + 1),
    ] {
        let got: Vec<i64> = store
            .scan_device_window(c, d, from, to)
            .unwrap()
            .iter()
            .map(|r| r.ts_ms)
            .collect();
        let mut want: Vec<i64> = all
            .iter()
            .filter(|e| e.device().as_str() == device(2) && e.ts_ms() >= from && e.ts_ms() < to)
            .map(|e| e.ts_ms())
            .collect();
        want.sort();
        assert_eq!(got, want, "window {from}..{to}");
    }
}

#[test]
fn concurrent_writers_are_all_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(DAY0 + 12 * HOUR));
    let store = open(dir.path(), &clock, StoreConfig::default());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut seqs = Vec::new();
                for b in 0..25 {
                    let batch: Vec<_> = (0..40)
                        .map(|i| ev(input(DAY0 + i, "c1", t, "face", &format!("T{t}B{b}I{i}"))))
                        .collect();
                    for r in store.append(&batch).unwrap().results {
                        match r {
                            Appended::Stored { seq } => seqs.push(seq),
                            other => panic!("unexpected {other:?}"),
                        }
                    }
                }
                seqs
            })
        })
        .collect();
    let seqs: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let unique: HashSet<u64> = seqs.iter().copied().collect();
    assert_eq!(unique.len(), 4000);
    assert_eq!(
        *unique.iter().max().unwrap(),
        4000,
        "sequence numbers are dense"
    );
    assert_eq!(all_events(&store).len(), 4000);
}

#[test]
fn catalog_holds_communities_and_devices_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(DAY0));
    let store = open(dir.path(), &clock, StoreConfig::default());
    let c = Community {
        code: "3205080001".into(),
        name: "平江新苑".into(),
        district: "姑苏区".into(),
    };
    let d = Device {
        code: device(3),
        community: c.code.clone(),
        device_kind: "checkpoint_camera".into(),
        direction: Direction::In,
        name: "东门".into(),
    };
    assert!(
        store.catalog().put_community(&c).unwrap(),
        "a new code creates"
    );
    assert!(
        store.catalog().put_device(&d).unwrap(),
        "a new code creates"
    );
    drop(store);
    let store = open(dir.path(), &clock, StoreConfig::default());
    assert_eq!(
        store.catalog().community("3205080001").unwrap(),
        Some(c.clone())
    );
    assert_eq!(store.catalog().communities().unwrap(), vec![c.clone()]);
    assert_eq!(store.catalog().devices().unwrap(), vec![d.clone()]);
    assert_eq!(store.catalog().device("nope").unwrap(), None);
    // Written again after the reopen: replaced, not created.
    assert!(!store.catalog().put_community(&c).unwrap());
    assert!(!store.catalog().put_device(&d).unwrap());
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(DAY0));
    let _store = open(dir.path(), &clock, StoreConfig::default());
    let err = sightline_storage::Store::open_with_clock(
        dir.path(),
        StoreConfig::default(),
        clock.clone(),
    )
    .err()
    .expect("refused");
    assert!(err.to_string().contains("LOCK"), "{err}");
}

#[test]
fn the_store_is_send_and_sync() {
    fn check<T: Send + Sync + Clone>() {}
    check::<sightline_storage::Store>();
}

#[test]
fn past_the_memory_budget_the_largest_memory_part_is_sealed_early() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(DAY0 + 12 * HOUR));
    let config = StoreConfig {
        memory_budget_bytes: 1 << 20,
        ..Default::default()
    };
    let store = open(dir.path(), &clock, config.clone());
    // Community c1 gets five times the events of c2; each event carries ~200 bytes.
    let big = "x".repeat(200);
    let event = |i: usize, c: &str| {
        let mut e = input(
            DAY0 + HOUR + i as i64,
            c,
            1,
            "face",
            &format!("F{}", i % 50),
        );
        e.attrs.insert(
            "image_url".into(),
            sightline_storage::AttrValue::Str(big.clone()),
        );
        ev(e)
    };
    let mut stored = 0;
    for round in 0..30 {
        let batch: Vec<_> = (0..500)
            .map(|i| event(round * 500 + i, if i % 6 == 5 { "c2" } else { "c1" }))
            .collect();
        stored += store.append(&batch).unwrap().stored();
        assert!(
            store.memory_part_bytes() <= config.memory_budget_bytes,
            "round {round}: {} bytes in memory parts, over the budget",
            store.memory_part_bytes()
        );
    }
    assert!(store.budget_seals() > 0);
    let shards = store.shards();
    let c1 = shards
        .iter()
        .find(|s| s.segments > 0)
        .expect("a shard sealed early");
    assert!(c1.sealed_events > 0);
    assert_eq!(
        all_events(&store).len(),
        stored,
        "nothing lost by sealing early"
    );
    // The span has not ended: only the budget sealed. The largest part went first, so
    // the small community's part may still be in memory.
    drop(store);
    let store = open(dir.path(), &clock, config);
    assert_eq!(all_events(&store).len(), stored);
    assert!(store.memory_part_bytes() <= 1 << 20);
}

#[test]
fn a_memory_budget_below_one_mib_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        memory_budget_bytes: 1000,
        ..Default::default()
    };
    let e = sightline_storage::Store::open(dir.path(), config)
        .err()
        .unwrap();
    assert!(e.to_string().contains("memory_budget_bytes"), "{e}");
}

/// An observer that keeps what retention reports.
#[derive(Default)]
struct Drops(std::sync::Mutex<Vec<sightline_storage::DroppedShard>>);

impl sightline_storage::AppendObserver for Drops {
    fn appended(&self, _: &[sightline_storage::Row]) {}
    fn dropped(&self, _: &sightline_storage::Store, shards: &[sightline_storage::DroppedShard]) {
        self.0.lock().unwrap().extend_from_slice(shards);
    }
}

/// A shard whose segment cannot be read is kept (its events could not be taken off
/// the indexes) and the other expired shards go, told to the observers; compaction of
/// the others and the maintenance pass go on too.
#[test]
fn retention_and_compaction_go_on_past_a_shard_that_cannot_be_read() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(DAY0 + 12 * HOUR));
    let store = open(dir.path(), &clock, StoreConfig::default());
    let drops = Arc::new(Drops::default());
    store.observe(drops.clone());
    store
        .append(&[
            ev(input(DAY0 + HOUR, "c1", 1, "face", "F1")),
            ev(input(DAY0 + 2 * HOUR, "c2", 2, "face", "F2")),
        ])
        .unwrap();
    let span = store.layout().span_of(DAY0);
    let (c1, c2) = (
        ShardKey { community: 0, span },
        ShardKey { community: 1, span },
    );
    for k in [c1, c2] {
        store.seal_shard(k).unwrap();
    }
    // c1's file goes missing while the store is closed (an open store keeps the
    // mapping of a segment it sealed).
    let lost = store.segments(c1).unwrap()[0].path().to_path_buf();
    drop(store);
    std::fs::remove_file(&lost).unwrap();
    let store = open(dir.path(), &clock, StoreConfig::default());
    store.observe(drops.clone());
    clock.set(DAY0 + 5 * DAY);
    store.set_retention_days(Some(3)).unwrap();
    let report = store
        .maintain()
        .expect("the pass goes on past the unreadable shard");
    assert_eq!(report.dropped, [c2]);
    let got = drops.0.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].key, c2);
    let left: Vec<ShardKey> = store.shards().iter().map(|s| s.key).collect();
    assert_eq!(left, [c1], "the unreadable shard is kept");
}

#[test]
fn retention_tells_observers_every_dropped_event_by_subject() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(DAY0 + 12 * HOUR));
    let store = open(dir.path(), &clock, StoreConfig::default());
    let drops = Arc::new(Drops::default());
    store.observe(drops.clone());
    for d in 0..2 {
        clock.set(DAY0 + d * DAY + 12 * HOUR);
        store
            .append(&[
                ev(input(DAY0 + d * DAY + HOUR, "c1", 1, "face", "F1")),
                ev(input(DAY0 + d * DAY + 2 * HOUR, "c1", 1, "face", "F1")),
                ev(input(DAY0 + d * DAY + 3 * HOUR, "c1", 1, "face", "F2")),
            ])
            .unwrap();
    }
    clock.set(DAY0 + 2 * DAY + 12 * HOUR);
    store
        .seal_shard(ShardKey {
            community: 0,
            span: store.layout().span_of(DAY0),
        })
        .unwrap();
    // Day 0 is sealed, day 1 in memory; both go.
    clock.set(DAY0 + 5 * DAY);
    store.set_retention_days(Some(3)).unwrap();
    assert_eq!(store.apply_retention().unwrap().len(), 2);
    let got = drops.0.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    for (d, shard) in got.iter().enumerate() {
        let day = DAY0 + d as i64 * DAY;
        let s: Vec<_> = shard
            .subjects
            .iter()
            .map(|s| (s.subject, s.count, s.first_ms, s.last_ms))
            .collect();
        assert_eq!(
            s,
            [
                (0, 2, day + HOUR, day + 2 * HOUR),
                (1, 1, day + 3 * HOUR, day + 3 * HOUR)
            ]
        );
    }
    assert_eq!(
        store.memory_part_bytes(),
        0,
        "dropped memory rows leave the budget"
    );
}

/// A store of `days` sealed days of three communities, 20 events each a day, appended
/// day by day (so each day's sequence numbers are above the previous day's).
fn sealed_days(dir: &std::path::Path, days: i64) -> sightline_storage::Store {
    let clock = Arc::new(ManualClock::new(DAY0 + (days + 1) * DAY));
    let store = open(dir, &clock, StoreConfig::default());
    for day in 0..days {
        let batch: Vec<_> = (0..60)
            .map(|i| {
                ev(input(
                    DAY0 + day * DAY + i * 60_000,
                    &format!("c{}", i % 3),
                    (i % 4) as u32,
                    "vehicle",
                    &format!("苏E{:05}", i % 11),
                ))
            })
            .collect();
        store.append(&batch).unwrap();
    }
    store.seal_all().unwrap();
    assert!(store.shards().iter().all(|s| s.memory_events == 0));
    store
}

#[test]
fn a_feed_page_reads_rows_of_the_segments_it_needs_not_of_the_whole_store() {
    // Rows looked at for a page of 5 from `after`, and the page's ids.
    let page = |store: &sightline_storage::Store, after: u64| {
        let before = store.seq_scan_rows();
        let rows = store
            .scan_seq_range(after, store.applied_through(), 5, None)
            .unwrap();
        let ids: Vec<u64> = rows.iter().map(|(r, _)| r.seq).collect();
        (store.seq_scan_rows() - before, ids)
    };
    let (small_dir, large_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let small = sealed_days(small_dir.path(), 3);
    let large = sealed_days(large_dir.path(), 30);
    assert_eq!(large.shards().len(), 90);
    let (cost_small, ids_small) = page(&small, 0);
    let (cost_large, ids_large) = page(&large, 0);
    assert_eq!(ids_small, ids_large);
    assert_eq!(ids_large.len(), 5);
    assert!(ids_large.windows(2).all(|w| w[0] < w[1]));
    // The first day's three segments at most, whatever the store holds.
    assert!(
        cost_large <= 60,
        "a page from the start looked at {cost_large} rows"
    );
    assert_eq!(cost_small, cost_large);
    // From the middle: the segments around the cursor only.
    let after = ids_large[0] - 1 + 15 * 60 + 58;
    let (cost, ids) = page(&large, after);
    assert_eq!(ids, (after + 1..=after + 5).collect::<Vec<_>>());
    assert!(cost <= 120, "a page from the middle looked at {cost} rows");
}

/// Posting walks (`Segment::posting_rows`, what a trajectory's runs decode) over
/// subjects whose postings skip blocks (a device without them between two with them;
/// one event in a hundred and fifty of a 640-row device, so several blocks apart) give
/// the rows of one lookup each, the whole list and cut by device.
#[test]
fn posting_walks_that_skip_blocks_give_the_rows_of_one_by_one_reads() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(DAY0 + 12 * HOUR));
    let store = open(dir.path(), &clock, StoreConfig::default());
    let mut batch = Vec::new();
    for device in 0..3u32 {
        for i in 0..640i64 {
            let subject = match (device, i % 150) {
                (0 | 2, 7) => "SKIP".to_string(),
                _ if i % 97 == 3 => "RARE".to_string(),
                _ => format!("F{}", i % 13),
            };
            batch.push(ev(input(
                DAY0 + i * 60_000 + device as i64,
                "c1",
                device,
                "face",
                &subject,
            )));
        }
    }
    store.append(&batch).unwrap();
    clock.set(DAY0 + DAY + 3 * HOUR);
    assert_eq!(store.maintain().unwrap().sealed.len(), 1);
    let key = store.shards()[0].key;
    let seg = &store.segments(key).unwrap()[0];
    assert!(seg.meta().blocks >= 15, "{} blocks", seg.meta().blocks);
    for name in ["SKIP", "RARE", "F1"] {
        let subject = store.dictionaries().subject_id(Kind::Face, name).unwrap();
        let one_by_one: Vec<_> = seg
            .subject_ordinals(subject)
            .map(|o| (o, seg.row(o).unwrap()))
            .collect();
        assert!(!one_by_one.is_empty());
        assert_posting_walks_give(seg, subject, &one_by_one, name);
    }
}

/// A walk over `subject`'s postings block by block (what a trajectory's runs decode,
/// `Segment::posting_rows`) gives `one_by_one` (its rows read by ordinal): the whole
/// list at once and cut by device.
fn assert_posting_walks_give(
    seg: &sightline_storage::segment::Segment,
    subject: u32,
    one_by_one: &[(u32, sightline_storage::Row)],
    what: &str,
) {
    for whole_max in [usize::MAX, 0] {
        let mut runs = Vec::new();
        seg.subject_runs_into(subject, i64::MIN, i64::MAX, whole_max, &mut runs);
        let mut drained = Vec::new();
        for (_, postings) in runs {
            seg.posting_rows(postings, subject, &mut drained).unwrap();
        }
        let drained: Vec<_> = drained.into_iter().map(|(r, o)| (o, r)).collect();
        assert_eq!(drained, one_by_one, "{what}: runs of at most {whole_max}");
    }
}
