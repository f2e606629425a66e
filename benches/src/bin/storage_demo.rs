//! The storage engine and the investigator queries end to end, until the server
//! exists: loads a synthetic week of the 10 Gusu pilot communities into a durable
//! store, seals it, reopens it, and answers a few questions with the read API, the
//! index and the queries (trajectory with stays, co-occurrence, misread-plate search).
//!
//! cargo run --release -p sightline-benches --bin storage-demo -- [--data DIR] [--days N] [--communities N]

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use sightline_benches::traffic::{self, Loaded, Pace};
use sightline_benches::{Traffic, TrafficConfig};
use sightline_index::{StoreIndex, Vocabulary};
use sightline_query::{
    cooccurrence, search, trajectory, Cooccurrence, QueryContext, Scope, SearchMode, SearchQuery,
    TrajectoryQuery,
};
use sightline_storage::{Kind, Store, StoreConfig};

#[derive(Parser)]
#[command(about = "Load a synthetic week into a Sightline store and read it back")]
struct Args {
    /// Store directory; created if missing. An existing store is reopened, not reloaded.
    #[arg(long, default_value = "sightline-demo-data")]
    data: PathBuf,
    /// Days of traffic to load, from 2021-09-01 (Asia/Shanghai).
    #[arg(long, default_value_t = 7)]
    days: u32,
    /// Communities (the first 10 are the Gusu pilots).
    #[arg(long, default_value_t = 10)]
    communities: u32,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let cfg = TrafficConfig {
        communities: args.communities,
        days: args.days,
        source_ids: true,
        ..Default::default()
    };
    let t0 = Instant::now();
    let store = Store::open(&args.data, StoreConfig::default())?;
    let r = store.recovery();
    println!(
        "opened {} in {:.2} s: {} WAL events replayed, torn tail: {}",
        args.data.display(),
        t0.elapsed().as_secs_f64(),
        r.wal_events_replayed,
        r.wal_torn_tail
            .as_ref()
            .map_or("none".to_string(), |t| format!(
                "{} bytes dropped",
                t.dropped_bytes
            ))
    );

    if store.shards().is_empty() {
        load(&store, &cfg)?;
    } else {
        println!("the store already holds data: reading it (delete the directory to reload)");
    }

    let shards = store.shards();
    let events: u64 = shards
        .iter()
        .map(|s| s.sealed_events + s.memory_events as u64)
        .sum();
    let bytes: u64 = shards.iter().map(|s| s.sealed_bytes).sum();
    println!(
        "{} shards, {} events, {:.1} MiB sealed ({:.1} bytes/event with attributes)",
        shards.len(),
        events,
        bytes as f64 / (1 << 20) as f64,
        bytes as f64 / events.max(1) as f64
    );

    // The most frequently seen plate of the first community's first day, and its week.
    let (from, to) = (cfg.start_ms, cfg.start_ms + cfg.days as i64 * 86_400_000);
    let first_community = store
        .dictionaries()
        .community_id(&sightline_benches::community_code(0))
        .ok_or("community 0 not in the store")?;
    let mut counts = std::collections::HashMap::<u32, u32>::new();
    store.scan_range(from, from + 86_400_000, Some(&[first_community]), |r| {
        if r.kind == Kind::Vehicle {
            *counts.entry(r.subject).or_default() += 1;
        }
    })?;
    let (&plate, &n) = counts
        .iter()
        .max_by_key(|(s, n)| (**n, std::cmp::Reverse(**s)))
        .ok_or("no vehicle events on the first day")?;
    let t = Instant::now();
    let mut sightings = Vec::new();
    store.scan_range(from, to, None, |r| {
        if r.subject == plate {
            sightings.push(r);
        }
    })?;
    sightings.sort_by_key(|r| (r.ts_ms, r.device));
    let dicts = store.dictionaries();
    let name = dicts.subject(plate).map_or("?", |(_, s)| s);
    println!(
        "\nplate {name}: {n} reads on day 1, {} in the week (full scan: {:.1} ms); first ten:",
        sightings.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    for r in sightings.iter().take(10) {
        println!(
            "  {}  {}  {}  {}",
            local_time(r.ts_ms),
            dicts.community(r.community).unwrap_or("?"),
            dicts.device(r.device).unwrap_or("?"),
            r.direction.as_str()
        );
    }
    if let Some(first) = sightings.first() {
        let t = Instant::now();
        let window = store.scan_device_window(
            first.community,
            first.device,
            first.ts_ms - 60_000,
            first.ts_ms + 60_000,
        )?;
        println!(
            "\nwithin ±60 s at that device ({:.2} ms, binary search on the sealed (device, ts) order):",
            t.elapsed().as_secs_f64() * 1e3
        );
        for r in window {
            let (kind, s) = dicts.subject(r.subject).unwrap_or((Kind::Vehicle, "?"));
            println!("  {}  {:8}  {}", local_time(r.ts_ms), kind.as_str(), s);
        }
    }
    drop(dicts);
    queries(&store, name_of(&store, plate), from, to)?;
    println!(
        "\ndone in {:.1} s; the store is in {}",
        t0.elapsed().as_secs_f64(),
        args.data.display()
    );
    Ok(())
}

/// Validates and appends the synthetic traffic day by day, then seals every past day.
fn load(store: &Store, cfg: &TrafficConfig) -> Result<(), Box<dyn std::error::Error>> {
    let t = Instant::now();
    let Loaded { stored, rejected } =
        traffic::load(store, &Traffic::new(cfg.clone()), 5_000, Pace::Free)?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "loaded {stored} events ({rejected} rejected) in {secs:.1} s: {:.0} events/s, each batch fsynced before it returned",
        stored as f64 / secs
    );
    let t = Instant::now();
    let report = store.maintain()?;
    println!(
        "sealed {} shards into segment files in {:.1} s",
        report.sealed.len(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

fn name_of(store: &Store, subject: u32) -> String {
    store
        .dictionaries()
        .subject(subject)
        .map_or("?".to_string(), |(_, s)| s.to_string())
}

/// The same plate through the index and the queries.
fn queries(
    store: &Store,
    plate: String,
    from: i64,
    to: i64,
) -> Result<(), Box<dyn std::error::Error>> {
    let t = Instant::now();
    let index = StoreIndex::attach(store)?;
    let vocab = Vocabulary::in_memory()?;
    let subjects = vocab.catch_up(store)?;
    println!(
        "\nindexed the store and {subjects} subject strings in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let ctx = QueryContext::new(store, &index);

    let t = Instant::now();
    let traj = trajectory(
        &ctx,
        &TrajectoryQuery {
            kind: Kind::Vehicle,
            subject: plate.clone(),
            from_ms: from,
            to_ms: to,
            communities: None,
            cursor: None,
            limit: 10_000,
        },
    )?;
    println!(
        "trajectory of {plate}: {} sightings, {} stays ({:.2} ms); the first five stays:",
        traj.events.len(),
        traj.stays.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    for s in traj.stays.iter().take(5) {
        println!(
            "  {}  in {}  out {}  ({:?})",
            s.community,
            local_time(s.in_ms),
            s.out_ms.map_or("-".to_string(), local_time),
            s.ended_by
        );
    }

    let t = Instant::now();
    let companions = cooccurrence(
        &ctx,
        &Cooccurrence {
            kind: Kind::Vehicle,
            subject: plate.clone(),
            from_ms: from,
            to_ms: to,
            communities: None,
            window_ms: 60_000,
            min_count: 2,
            scope: Scope::Device,
            candidate_kind: None,
            dedup_gap_ms: Some(10_000),
            limit: 5,
        },
    )?;
    println!(
        "\nseen within ±60 s of {plate} at the same device on ≥ 2 passes ({:.2} ms):",
        t.elapsed().as_secs_f64() * 1e3
    );
    for c in &companions {
        println!(
            "  {:8} {:18} hits {:3}  days {:2}  lift {:6.1}",
            c.kind.as_str(),
            c.subject,
            c.hits,
            c.days,
            c.lift
        );
    }

    // A camera misreads one character the way OCR does (8→B, 0→D, 5→S, 1→7 …).
    let misread: String = {
        let mut done = false;
        plate
            .chars()
            .enumerate()
            .map(|(i, c)| {
                let swap = match c {
                    '8' => 'B',
                    'B' => '8',
                    '0' => 'D',
                    'D' => '0',
                    '5' => 'S',
                    'S' => '5',
                    '1' => '7',
                    '7' => '1',
                    '2' => 'Z',
                    'Z' => '2',
                    _ => c,
                };
                if i >= 2 && !done && swap != c {
                    done = true;
                    swap
                } else {
                    c
                }
            })
            .collect()
    };
    let t = Instant::now();
    let found = search(
        &ctx,
        &vocab,
        &SearchQuery {
            pattern: misread.clone(),
            mode: SearchMode::Fuzzy { distance: 1 },
            kind: Some(Kind::Vehicle),
            limit: 5,
        },
    )?;
    println!(
        "\nplates within one edit of the misread {misread} ({:.2} ms), OCR confusions first:",
        t.elapsed().as_secs_f64() * 1e3
    );
    for m in &found {
        println!(
            "  {:10} distance {:.1}  {} sightings, last {}",
            m.subject,
            m.distance,
            m.count,
            local_time(m.last_ms)
        );
    }
    Ok(())
}

/// `2021-09-01 08:00:00` in Asia/Shanghai.
fn local_time(ts_ms: i64) -> String {
    let beijing = chrono::FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset");
    chrono::DateTime::from_timestamp_millis(ts_ms)
        .map(|t| {
            t.with_timezone(&beijing)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|| format!("{ts_ms} ms"))
}
