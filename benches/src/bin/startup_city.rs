//! Builds a sealed synthetic city for the start-up benchmark (`benches/startup/run.sh`):
//! `--communities` × `--days` of the traffic model, appended day by day with the
//! store's clock at each day's end, each day sealed after its grace period, as a live
//! store would have sealed it, and the last day too. Prints the events, shards and
//! bytes it holds. With `--open`, opens an existing store as the server does and
//! prints how long each step took.
//!
//! cargo run --release -p sightline-benches --bin startup-city -- --data DIR --communities 100 --days 5

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use sightline_benches::traffic::{self, Pace, DAY};
use sightline_benches::{Traffic, TrafficConfig};
use sightline_storage::{ManualClock, Store, StoreConfig};

#[derive(Parser)]
#[command(about = "Build a sealed synthetic city for the start-up benchmark")]
struct Args {
    /// Store directory; must not exist yet.
    #[arg(long)]
    data: PathBuf,
    #[arg(long, default_value_t = 100)]
    communities: u32,
    #[arg(long, default_value_t = 5)]
    days: u32,
    /// Instead of building: open the store in `--data` as the server does and print
    /// how long each step took (store, index, vocabulary, first trajectory).
    #[arg(long)]
    open: bool,
    /// Households per community (the traffic model's default: 400, ~2,500 events a
    /// community-day).
    #[arg(long, default_value_t = 400)]
    households: u32,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if args.open {
        return open(&args.data);
    }
    if args.data.exists() {
        return Err(format!("{} exists; give a new directory", args.data.display()).into());
    }
    let cfg = TrafficConfig {
        communities: args.communities,
        days: args.days,
        households_per_community: args.households,
        visitor_vehicles: args.households * 50,
        ..TrafficConfig::default()
    };
    let clock = Arc::new(ManualClock::new(cfg.start_ms));
    let store = Store::open_with_clock(&args.data, StoreConfig::default(), clock.clone())?;
    let t = Instant::now();
    let loaded = traffic::load(
        &store,
        &Traffic::new(cfg.clone()),
        20_000,
        Pace::SealingDaily(&clock),
    )?;
    // Past the last day's grace: everything sealed, the WAL empty.
    clock.set(cfg.start_ms + (cfg.days as i64 + 1) * DAY + store.config().seal_grace_ms + 1);
    store.maintain()?;
    let shards = store.shards();
    let events: u64 = shards
        .iter()
        .map(|s| s.sealed_events + s.memory_events as u64)
        .sum();
    let bytes: u64 = shards.iter().map(|s| s.sealed_bytes).sum();
    println!(
        "{}: {} events stored ({} refused) in {} shards, {} segment bytes, {} subjects, built in {:.1} s",
        args.data.display(),
        events,
        loaded.rejected,
        shards.len(),
        bytes,
        store.dictionaries().len_subjects(),
        t.elapsed().as_secs_f64()
    );
    println!(
        "trajectory subject: {} (community {})",
        sightline_benches::traffic::resident_plate(0, 0),
        sightline_benches::traffic::community_code(0)
    );
    Ok(())
}

/// Opens the store as `sightline serve` does, timing each step.
fn open(dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    use sightline_index::{StoreIndex, Vocabulary};
    let t = Instant::now();
    let mut last = t;
    let mut lap = |what: &str| {
        let now = Instant::now();
        println!("{what:<28} {:>8.1} ms", (now - last).as_secs_f64() * 1e3);
        last = now;
    };
    let store = Store::open(dir, StoreConfig::default())?;
    lap("store open");
    let (index, report) = StoreIndex::open(&store);
    lap("index open");
    println!("  {report:?}");
    let (vocab, why) = Vocabulary::open_checked(&dir.join("index/vocabulary"), &store)?;
    lap("vocabulary open");
    let added = vocab.catch_up(&store)?;
    lap("vocabulary catch-up");
    println!("  rebuilt: {why:?}, subjects added: {added}");
    let ctx = sightline_query::QueryContext::new(&store, &index);
    let q = sightline_query::TrajectoryQuery {
        kind: sightline_storage::Kind::Vehicle,
        subject: sightline_benches::traffic::resident_plate(0, 0),
        from_ms: sightline_benches::SEPT_2021,
        to_ms: sightline_benches::SEPT_2021 + 300 * DAY,
        communities: None,
        cursor: None,
        limit: 10,
    };
    let n = sightline_query::trajectory(&ctx, &q)?.events.len();
    lap("first trajectory");
    println!(
        "  {n} events; total {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    if index.checkpoint(&store)? {
        lap("checkpoint written");
    }
    Ok(())
}
