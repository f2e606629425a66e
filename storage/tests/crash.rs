//! Crash test: a child process appends batches from several threads and prints each
//! acknowledged batch; the parent kills it with SIGKILL at random moments, reopens the
//! store, and checks every acknowledged event is present exactly once and every batch
//! is all-or-nothing.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use sightline_storage::{Store, StoreConfig, SystemClock};

const CHILD_ENV: &str = "SIGHTLINE_CRASH_CHILD_DIR";
const ROUND_ENV: &str = "SIGHTLINE_CRASH_ROUND";
const BATCH: usize = 50;
const THREADS: usize = 3;

fn config() -> StoreConfig {
    // Small bounds so seals, WAL rotation and checkpoints happen under the knife too.
    StoreConfig {
        memtable_max_events: 400,
        wal_file_bytes: 16 << 10,
        ..Default::default()
    }
}

fn subject(round: u32, thread: usize, batch: u32, i: usize) -> String {
    format!("R{round}T{thread}B{batch}I{i}")
}

/// The child: runs only when re-executed by the parent with the env var set.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let round: u32 = std::env::var(ROUND_ENV).unwrap().parse().unwrap();
    let store = Store::open_with_clock(&dir, config(), Arc::new(SystemClock)).unwrap();
    let now = sightline_storage::Clock::now_ms(&SystemClock);
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for b in 0.. {
                    let batch: Vec<_> = (0..BATCH)
                        .map(|i| {
                            let mut e = common::input(
                                now - (i as i64) * 1000,
                                &format!("c{}", i % 3),
                                (i % 5) as u32,
                                "face",
                                &subject(round, t, b, i),
                            );
                            if i % 10 == 0 {
                                e = common::with_source(e, &format!("src-{round}-{t}-{b}-{i}"));
                            }
                            store.validate(e).unwrap()
                        })
                        .collect();
                    store.append(&batch).unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {t} {b}").unwrap();
                    out.flush().unwrap();
                    if b % 7 == t as u32 {
                        store.seal_due().unwrap();
                    }
                    if b % 5 == t as u32 {
                        // The dictionary snapshot written under the knife too.
                        store.write_dict_snapshot().unwrap();
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// Every subject by id, each found again by its string.
fn dictionary_entries(store: &Store) -> Vec<String> {
    let d = store.dictionaries();
    let mut out = Vec::new();
    for id in 0..d.len_subjects() as u32 {
        let (k, s) = d.subject(id).unwrap();
        assert_eq!(d.subject_id(k, s), Some(id));
        out.push(format!("{k:?} {s}"));
    }
    for id in 0..d.len_communities() as u32 {
        out.push(format!("c {}", d.community(id).unwrap()));
    }
    for id in 0..d.len_devices() as u32 {
        out.push(format!("d {}", d.device(id).unwrap()));
    }
    out
}

#[test]
fn acknowledged_events_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let rounds = 24;
    let mut acked: Vec<(u32, usize, u32)> = Vec::new();
    let (mut torn_tails, mut sealed_shards, mut stored, mut snapshots_used) = (0, 0, 0, 0);
    let mut rng_state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next_rand = move |n: u64| {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state % n
    };
    for round in 0..rounds {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .env(ROUND_ENV, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("ACK ") {
                    let mut p = rest.split(' ');
                    got.push((
                        p.next().unwrap().parse::<usize>().unwrap(),
                        p.next().unwrap().parse::<u32>().unwrap(),
                    ));
                }
            }
            got
        });
        std::thread::sleep(Duration::from_millis(150 + next_rand(400)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let round_acks = reader.join().unwrap();
        acked.extend(round_acks.iter().map(|&(t, b)| (round, t, b)));

        let store = Store::open_with_clock(dir.path(), config(), Arc::new(SystemClock)).unwrap();
        let events = common::all_events(&store);
        let mut count: HashMap<String, usize> = HashMap::new();
        for e in &events {
            *count.entry(e.event.subject().to_string()).or_default() += 1;
        }
        assert!(
            count.values().all(|&n| n == 1),
            "round {round}: an event is stored twice"
        );
        for &(r, t, b) in &acked {
            for i in 0..BATCH {
                assert!(
                    count.contains_key(&subject(r, t, b, i)),
                    "round {round}: acknowledged event {} lost",
                    subject(r, t, b, i)
                );
            }
        }
        // Unacknowledged batches are all or nothing.
        let mut per_batch: HashMap<String, usize> = HashMap::new();
        for s in count.keys() {
            let batch = s.rsplit_once('I').unwrap().0.to_string();
            *per_batch.entry(batch).or_default() += 1;
        }
        assert!(
            per_batch.values().all(|&n| n == BATCH),
            "round {round}: a batch is partly stored"
        );
        // Ids and lookups are the same as loading the whole dictionary log gives.
        assert_eq!(
            store.recovery().dict_snapshot_ignored,
            None,
            "round {round}: the snapshot is usable after a kill"
        );
        let with_snapshot = dictionary_entries(&store);
        {
            let copy = tempfile::tempdir().unwrap();
            common::copy_dir(dir.path(), copy.path());
            std::fs::remove_file(copy.path().join("dict.snap")).ok();
            let _ = std::fs::remove_file(copy.path().join("dict.tmp"));
            let whole =
                Store::open_with_clock(copy.path(), config(), Arc::new(SystemClock)).unwrap();
            assert_eq!(
                dictionary_entries(&whole),
                with_snapshot,
                "round {round}: ids differ with and without the snapshot"
            );
        }
        snapshots_used += dir.path().join("dict.snap").exists() as usize;
        torn_tails += store.recovery().wal_torn_tail.is_some() as usize;
        sealed_shards += store.shards().iter().filter(|s| s.segments > 0).count();
        stored = events.len();
    }
    eprintln!("{rounds} SIGKILL rounds: {} batches acknowledged, {stored} events stored, {torn_tails} torn WAL tails dropped, {sealed_shards} shard-rounds with segments, {snapshots_used} opens with a dictionary snapshot", acked.len());
    assert!(
        acked.len() > rounds as usize,
        "the child acknowledged batches in most rounds ({} acks)",
        acked.len()
    );
}
