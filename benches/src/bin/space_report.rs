//! Loads a synthetic month into a fresh store, seals it, and reports bytes per event by
//! column and the heap a reopened store needs.
//!
//! cargo run --release -p sightline-benches --bin space-report -- [--communities N] [--days N] [--source-ids | --demo]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use sightline_benches::traffic::{load, Pace};
use sightline_benches::{Traffic, TrafficConfig};
use sightline_storage::{ManualClock, Store, StoreConfig};

/// Counts live heap bytes, so the report can say what a store costs in memory.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator and only adds bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cfg = TrafficConfig {
        communities: arg("--communities").map_or(Ok(10), |s| s.parse())?,
        days: arg("--days").map_or(Ok(30), |s| s.parse())?,
        // `--demo`: the month `sightline demo` serves (source ids, drivers).
        source_ids: std::env::args().any(|a| a == "--source-ids" || a == "--demo"),
        drivers: std::env::args().any(|a| a == "--demo"),
        ..Default::default()
    };
    let dir = tempfile::tempdir()?;
    let end = cfg.start_ms + (cfg.days as i64 + 1) * 86_400_000;
    let clock = Arc::new(ManualClock::new(cfg.start_ms));
    let traffic = Traffic::new(cfg.clone());
    let t0 = Instant::now();
    let events = {
        let store = Store::open_with_clock(dir.path(), StoreConfig::default(), clock.clone())?;
        let loaded = load(&store, &traffic, 10_000, Pace::DayEnds(&clock))?;
        if loaded.rejected > 0 {
            return Err(
                format!("{} events of the model failed validation", loaded.rejected).into(),
            );
        }
        clock.set(end + 86_400_000);
        store.seal_due()?;
        loaded.stored
    };
    let load_s = t0.elapsed().as_secs_f64();

    let before = LIVE.load(Ordering::Relaxed);
    let store = Store::open_with_clock(dir.path(), StoreConfig::default(), clock.clone())?;
    let heap = LIVE.load(Ordering::Relaxed) - before;
    let (mut cols, mut sections, mut file) =
        ([0usize; 4], std::collections::BTreeMap::new(), 0usize);
    // What the postings would cost as one portable roaring bitmap per subject (the
    // serialized bitmaps, plus a 4-byte offset each to find them), for comparison.
    let mut roaring_bytes = 0usize;
    let mut row_attr_bytes = 0usize;
    for s in store.shards() {
        for seg in store.segments(s.key)? {
            let c = seg.column_bytes();
            for i in 0..4 {
                cols[i] += c[i];
            }
            for (name, b) in seg.section_bytes() {
                *sections.entry(name).or_insert(0usize) += b;
            }
            file += seg.file_bytes();
            // The same attributes as version 1 stored them: each event's row
            // encoding back to back, and a packed offset per event.
            let row_bytes: usize = (0..seg.meta().events)
                .map(|o| seg.attr_bytes(o).map(|b| b.len()))
                .sum::<Result<usize, _>>()?;
            let bits = (usize::BITS - row_bytes.leading_zeros()) as usize;
            row_attr_bytes += row_bytes + 16 + (seg.meta().events as usize + 1) * bits / 8 + 1;
            for subject in seg.subjects() {
                let bitmap: roaring::RoaringBitmap = seg.subject_ordinals(subject).collect();
                roaring_bytes += bitmap.serialized_size() + 4;
            }
        }
    }
    let dicts = store.dictionaries();
    let per = |b: usize| b as f64 / events as f64;
    let dir_bytes = sections["block directory"];
    let postings =
        sections["subjects"] + sections["posting offsets"] + sections["posting ordinals"];
    let core = cols[0] + cols[1] + cols[3] + dir_bytes + postings;
    println!("dataset: {} communities x {} days, {events} events stored ({} subjects, {} devices), source_ids={}", cfg.communities, cfg.days, dicts.len_subjects(), dicts.len_devices(), cfg.source_ids);
    println!("load + seal: {load_s:.1} s\n");
    println!("| part | bytes/event |\n|---|---:|");
    println!("| ts column | {:.2} |", per(cols[0]));
    println!("| subject column (local ranks) | {:.2} |", per(cols[1]));
    println!("| kind+direction column | {:.2} |", per(cols[3]));
    println!(
        "| block directory (device runs, block minima, checksums) | {:.2} |",
        per(dir_bytes)
    );
    println!(
        "| subject postings (subjects, offsets, ordinals) | {:.2} |",
        per(postings)
    );
    println!(
        "| **core total** (ts, device, subject, kind, direction, postings) | **{:.2}** |",
        per(core)
    );
    println!(
        "| (postings as roaring bitmaps instead, for comparison: subjects + bitmaps + offsets) | ({:.2}) |",
        per(sections["subjects"] + roaring_bytes)
    );
    println!("| seq column (event ids) | {:.2} |", per(cols[2]));
    println!("| source-id index | {:.2} |", per(sections["source ids"]));
    println!(
        "| attrs (chunk offsets + columns) | {:.2} |",
        per(sections["attr offsets"] + sections["attr data"])
    );
    println!(
        "| (attrs row by row, as format version 1 stored them, for comparison) | ({:.2}) |",
        per(row_attr_bytes)
    );
    println!(
        "| whole segment files (incl. header, padding) | {:.2} |",
        per(file)
    );
    println!(
        "| (whole files with attrs row by row, version 1) | ({:.2}) |",
        per(file - sections["attr offsets"] - sections["attr data"] + row_attr_bytes)
    );
    let segments: usize = store.shards().iter().map(|s| s.segments).sum();
    println!(
        "\nheap of a reopened store: {:.1} MiB for {events} sealed events in {segments} segments; dictionaries hold {} strings",
        heap as f64 / (1 << 20) as f64,
        dicts.len_subjects() + dicts.len_devices() + dicts.len_communities()
    );
    Ok(())
}
