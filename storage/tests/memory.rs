//! Heap used by sealing and compaction, measured with a counting allocator (this test
//! binary's own): sealing does not copy the shard's memory rows, and compaction does not
//! read the rows of the segments it merges into memory, so each needs a few bytes an
//! event (ranks, packed postings and attribute offsets) beside the write buffer.
//!
//! Before the segment writer streamed, sealing cloned the frozen rows and both built
//! the whole file in memory; compaction decoded every row with its attributes. Either
//! took 80 bytes an event or more, and this test failed.

mod common;
#[path = "common/counting.rs"]
mod counting;

use std::sync::Arc;

use common::*;
use counting::peak_during;
use sightline_storage::{AttrValue, ManualClock, StoreConfig};

/// What the streaming writer may use: its 1 MiB write buffer and a little more, plus
/// 32 bytes an event.
fn allowance(events: usize) -> usize {
    (2 << 20) + 32 * events
}

#[test]
fn sealing_and_compaction_hold_a_few_bytes_an_event() {
    const ROUNDS: usize = 4;
    const PER_ROUND: usize = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(DAY0 + 12 * HOUR));
    let store = open(dir.path(), &clock, StoreConfig::default());
    let mut n = 0usize;
    for round in 0..ROUNDS {
        let events: Vec<_> = (0..PER_ROUND)
            .map(|i| {
                let k = round * PER_ROUND + i;
                let mut e = input(
                    DAY0 + (k as i64 * 7_919) % (10 * HOUR),
                    "3205080001",
                    (k % 13) as u32,
                    "vehicle",
                    &format!("苏E{:05}", k * 31 % 20_000),
                );
                e.attrs
                    .insert("speed".into(), AttrValue::Int(k as i64 % 90));
                ev(e)
            })
            .collect();
        for chunk in events.chunks(10_000) {
            store.append(chunk).unwrap();
        }
        n += PER_ROUND;
        drop(events);
        let key = store.shards()[0].key;
        let (sealed, peak) = peak_during(|| store.seal_shard(key).unwrap());
        assert!(sealed);
        eprintln!("seal of {PER_ROUND}: {peak} bytes at peak");
        assert!(
            peak < allowance(PER_ROUND),
            "sealing {PER_ROUND} events took {peak} bytes of heap at its peak"
        );
    }
    let shard = &store.shards()[0];
    assert_eq!((shard.segments, shard.sealed_events), (ROUNDS, n as u64));

    let (compacted, peak) = peak_during(|| store.compact_shard(shard.key).unwrap());
    assert!(compacted);
    eprintln!("compaction of {n}: {peak} bytes at peak");
    assert!(
        peak < allowance(n),
        "compacting {n} events took {peak} bytes of heap at its peak ({} an event)",
        peak / n
    );
    let shard = &store.shards()[0];
    assert_eq!((shard.segments, shard.sealed_events), (1, n as u64));
    assert_eq!(all_events(&store).len(), n);
}
