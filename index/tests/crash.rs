//! Crash test of the index kept on disk: a child process appends from two threads,
//! seals, compacts and writes index checkpoints as fast as it can; the parent kills
//! it with SIGKILL at random moments, reopens the store and the index, and checks the
//! index against one rebuilt from every row. A kill mid-checkpoint leaves the old
//! checkpoint or the new one (written beside, renamed), never a torn one; either is
//! completed from the rows after it.

use std::sync::Arc;
use std::time::Duration;

use sightline_index::StoreIndex;
use sightline_storage::{Clock, EventInput, Store, StoreConfig, SystemClock};

const CHILD_ENV: &str = "SIGHTLINE_INDEX_CRASH_CHILD_DIR";
const ROUND_ENV: &str = "SIGHTLINE_INDEX_CRASH_ROUND";

fn config() -> StoreConfig {
    StoreConfig {
        memtable_max_events: 300,
        wal_file_bytes: 16 << 10,
        ..Default::default()
    }
}

#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let round: i64 = std::env::var(ROUND_ENV).unwrap().parse().unwrap();
    let store = Store::open_with_clock(&dir, config(), Arc::new(SystemClock)).unwrap();
    let (index, _) = StoreIndex::open(&store).unwrap();
    let now = SystemClock.now_ms();
    let writers: Vec<_> = (0..2)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for b in 0i64.. {
                    let batch: Vec<_> = (0..40i64)
                        .map(|i| {
                            store
                                .validate(EventInput {
                                    // Today and the days before: old shards get late
                                    // events (deltas, compaction).
                                    ts_ms: now - ((b + i) % 4) * 86_400_000 - i * 1000,
                                    community: format!("c{}", (i + t) % 3),
                                    device: format!("3205080101121{:07}", i % 5),
                                    kind: "face".into(),
                                    subject: format!("S{}", (round * 7 + b * 3 + i) % 90),
                                    direction: "in".into(),
                                    ..Default::default()
                                })
                                .unwrap()
                        })
                        .collect();
                    store.append(&batch).unwrap();
                    if b % 5 == t {
                        store.seal_due().unwrap();
                    }
                }
            })
        })
        .collect();
    loop {
        for s in store.shards() {
            if s.segments > 1 {
                store.compact_shard(s.key).unwrap();
            }
        }
        index.checkpoint(&store).unwrap();
        std::thread::sleep(Duration::from_millis(3));
        if writers.iter().all(|w| w.is_finished()) {
            break;
        }
    }
}

#[test]
fn the_index_survives_sigkill_exact() {
    let dir = tempfile::tempdir().unwrap();
    let rounds = 16;
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let (mut from_checkpoint, mut rows_read) = (0, 0u64);
    for round in 0..rounds {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .env(ROUND_ENV, round.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(200 + rng % 400));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let store = Store::open_with_clock(dir.path(), config(), Arc::new(SystemClock)).unwrap();
        let (index, report) = StoreIndex::open(&store).unwrap();
        assert!(
            report.from_checkpoint || report.rebuilt_because.is_none(),
            "round {round}: the checkpoint was refused: {report:?}"
        );
        from_checkpoint += report.from_checkpoint as usize;
        rows_read += report.rows_read;
        let fresh = StoreIndex::attach(&store).unwrap();
        let subjects = store.dictionaries().len_subjects() as u32;
        assert!(subjects > 0);
        let (got, want) = (index.view(), fresh.view());
        for s in 0..subjects {
            assert_eq!(
                got.subject_stats(s).unwrap(),
                want.subject_stats(s).unwrap(),
                "round {round}: subject {s}"
            );
            assert_eq!(
                got.subject_shards(s, i64::MIN, i64::MAX, None).unwrap(),
                want.subject_shards(s, i64::MIN, i64::MAX, None).unwrap(),
                "round {round}: subject {s}"
            );
        }
    }
    eprintln!("{rounds} SIGKILL rounds: {from_checkpoint} reopened from a checkpoint, {rows_read} rows read after checkpoints");
    assert!(
        from_checkpoint >= rounds - 1,
        "checkpoints were written and used"
    );
}
