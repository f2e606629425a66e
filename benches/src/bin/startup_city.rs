//! Builds a sealed synthetic city for the start-up benchmark (`benches/startup/run.sh`):
//! `--communities` × `--days` of the traffic model, appended day by day with the
//! store's clock at each day's end, each day sealed after its grace period, as a live
//! store would have sealed it, and the last day too. Prints the events, shards and
//! bytes it holds. With `--open`, opens an existing store as the server does and
//! prints how long each step took. With `--retention` (destructive: on a copy), drops
//! the store's first day by retention, the clock at the end of its last day, and
//! prints what the drop and the index's subtraction cost.
//!
//! cargo run --release -p sightline-benches --bin startup-city -- --data DIR --communities 100 --days 5

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use sightline_benches::traffic::{self, DAY};
use sightline_benches::{Traffic, TrafficConfig};
use sightline_index::{StoreIndex, Vocabulary};
use sightline_storage::{ManualClock, Store, StoreConfig};

/// Where `sightline serve` keeps the search vocabulary (`server::serve::VOCABULARY_DIR`).
const VOCABULARY_DIR: &str = "index/vocabulary";

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
    /// Instead of building: open the store in `--data` (with its index), the clock at
    /// the end of its last day, and drop its first day by retention; print the time
    /// it took (the index's subtraction included), then check the index's counts
    /// against the events left. Changes the store: run it on a copy.
    #[arg(long)]
    retention: bool,
    /// Households per community (the traffic model's default: 400, ~2,500 events a
    /// community-day).
    #[arg(long, default_value_t = 400)]
    households: u32,
    /// Instead of building: open the store in `--data` and time trajectories and
    /// co-occurrences (in process, median of `--rounds` rounds of 200 calls each) for
    /// the vehicles whose sighting counts are nearest 10, 30 and 100.
    #[arg(long)]
    latency: bool,
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Building: make each day this many communities at a time (the builder holds one
    /// part's inputs, not the whole city's day: 5,000 communities at once took 20 GB).
    #[arg(long, default_value_t = 250)]
    part_communities: u32,
    /// With `--latency`: time these vehicles instead (e.g. residents of the first
    /// community, the same plates with the same sightings in a city of any size).
    #[arg(long, value_delimiter = ',')]
    plates: Vec<String>,
    /// Building: ingest as `sightline serve` does, HTTP aside: the subject index kept
    /// by its append observer, the search vocabulary caught up and the index
    /// checkpoint written after each day's seal (serve's maintenance pass). Without
    /// it only the store appends and seals.
    #[arg(long)]
    index: bool,
    /// Building: start at this day of the traffic model (the days before it are taken
    /// to be in `--data` already, e.g. a copy of a store this tool built, which then
    /// must exist); `--days` is still the model's whole length.
    #[arg(long, default_value_t = 0)]
    first_day: u32,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if args.open {
        return open(&args.data);
    }
    if args.retention {
        return retention(&args.data);
    }
    if args.latency {
        return latency(&args.data, args.rounds, &args.plates);
    }
    if args.first_day == 0 && args.data.exists() {
        return Err(format!("{} exists; give a new directory", args.data.display()).into());
    }
    if args.first_day > 0 && !args.data.exists() {
        return Err(format!(
            "{} does not exist: --first-day adds to a store",
            args.data.display()
        )
        .into());
    }
    let cfg = TrafficConfig {
        communities: args.communities,
        days: args.days,
        households_per_community: args.households,
        visitor_vehicles: args.households * 50,
        ..TrafficConfig::default()
    };
    let clock = Arc::new(ManualClock::new(cfg.start_ms + args.first_day as i64 * DAY));
    let store = Store::open_with_clock(&args.data, StoreConfig::default(), clock.clone())?;
    let indexes = if args.index {
        let (index, _) = StoreIndex::open(&store)?;
        let (vocab, _) = Vocabulary::open_checked(&store.dir().join(VOCABULARY_DIR), &store)?;
        vocab.catch_up(&store)?;
        Some((index, vocab))
    } else {
        None
    };
    let t = Instant::now();
    // As `traffic::load` with `Pace::SealingDaily`, timing each day: generating the
    // day's events (a part of the communities at a time) apart from validating,
    // appending and sealing them.
    let traffic = Traffic::new(cfg.clone());
    let mut loaded = traffic::Loaded::default();
    for d in args.first_day..cfg.days {
        let day_end = cfg.start_ms + (d as i64 + 1) * DAY;
        clock.set(day_end);
        let (mut generated, mut appended) = (0.0, 0.0);
        let mut appended_cpu = 0.0;
        let before = loaded.stored;
        let part = args.part_communities.max(1);
        for first in (0..cfg.communities).step_by(part as usize) {
            let g = Instant::now();
            let events = traffic.day_events_of(d, first..(first + part).min(cfg.communities));
            generated += g.elapsed().as_secs_f64();
            let (a, a_cpu) = (Instant::now(), cpu_seconds());
            loaded.append(&store, &events, 20_000)?;
            appended += a.elapsed().as_secs_f64();
            appended_cpu += cpu_seconds() - a_cpu;
        }
        let (s, s_cpu) = (Instant::now(), cpu_seconds());
        clock.set(day_end + store.config().seal_grace_ms + 1);
        store.seal_due()?;
        if let Some((index, vocab)) = &indexes {
            vocab.catch_up(&store)?;
            index.checkpoint(&store)?;
        }
        let sealed = s.elapsed().as_secs_f64();
        let sealed_cpu = cpu_seconds() - s_cpu;
        let n = loaded.stored - before;
        println!(
            "day {d}: {n} events, generated in {generated:.1} s, appended in {appended:.1} s \
             ({:.0} events/s), sealed in {sealed:.1} s ({:.0} events/s appended and sealed)",
            n as f64 / appended,
            n as f64 / (appended + sealed)
        );
        // CPU time is what the machine's other load does not change: the rate held means
        // these stay flat from day to day.
        let (files, bytes) = files_and_bytes(&args.data);
        println!(
            "day {d}: CPU {appended_cpu:.1} s appending ({:.2} µs an event), {sealed_cpu:.1} s \
             sealing ({:.2} µs an event); RSS {} MiB; {files} files, {bytes} bytes",
            appended_cpu * 1e6 / n as f64,
            sealed_cpu * 1e6 / n as f64,
            rss_kib() / 1024
        );
    }
    // Past the last day's grace: everything sealed, the WAL empty.
    clock.set(cfg.start_ms + (cfg.days as i64 + 1) * DAY + store.config().seal_grace_ms + 1);
    store.maintain()?;
    if let Some((index, vocab)) = &indexes {
        vocab.catch_up(&store)?;
        index.checkpoint(&store)?;
    }
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
        "peak RSS {} MiB; {} files, {} bytes under {}",
        peak_rss_kib() / 1024,
        files_and_bytes(&args.data).0,
        files_and_bytes(&args.data).1,
        args.data.display()
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
    // `SIGHTLINE_LOG=debug` prints each step of the store's open too.
    if let Some(level) = std::env::var("SIGHTLINE_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing::Level>().ok())
    {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .with_max_level(level)
            .init();
    }
    let t = Instant::now();
    let mut last = t;
    let mut lap = |what: &str| {
        let now = Instant::now();
        println!("{what:<28} {:>8.1} ms", (now - last).as_secs_f64() * 1e3);
        last = now;
    };
    let store = Store::open(dir, StoreConfig::default())?;
    lap("store open");
    let (index, report) = StoreIndex::open(&store)?;
    lap("index open");
    println!("  {report:?}");
    let (vocab, why) = Vocabulary::open_checked(&dir.join(VOCABULARY_DIR), &store)?;
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

/// Drops the store's first day by retention and times it (see `--retention`).
fn retention(dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let clock = Arc::new(ManualClock::new(0));
    let store = Store::open_with_clock(dir, StoreConfig::default(), clock.clone())?;
    let (index, report) = StoreIndex::open(&store)?;
    println!("index opened: {report:?}");
    let shards = store.shards();
    let (lo, hi) = shards.iter().fold((i32::MAX, i32::MIN), |(lo, hi), s| {
        (lo.min(s.key.span), hi.max(s.key.span))
    });
    if lo >= hi {
        return Err("the store holds fewer than two days".into());
    }
    let events = |shards: &[sightline_storage::ShardInfo]| -> u64 {
        shards
            .iter()
            .map(|s| s.sealed_events + s.memory_events as u64)
            .sum()
    };
    let first_day: Vec<_> = shards
        .iter()
        .filter(|s| s.key.span == lo)
        .cloned()
        .collect();
    let layout = store.layout();
    // Now is the end of the last day: keeping (hi − lo) days drops exactly the first.
    clock.set(layout.end_ms(hi));
    let subjects = store.dictionaries().len_subjects() as u32;
    let counted = |index: &StoreIndex| -> Result<(u64, u64), Box<dyn std::error::Error>> {
        let view = index.view();
        let (mut events, mut live) = (0, 0);
        for s in 0..subjects {
            if let Some(st) = view.subject_stats(s)? {
                events += st.count;
                live += 1;
            }
        }
        Ok((events, live))
    };
    let (before, live_before) = counted(&index)?;
    store.set_retention_days(Some((hi - lo) as u32))?;
    let t = Instant::now();
    let dropped = store.apply_retention()?;
    let took = t.elapsed().as_secs_f64();
    let (after, live_after) = counted(&index)?;
    let left = events(&store.shards());
    println!(
        "dropped {} shards ({} expected), {} events, in {:.1} ms (the index's subtraction \
         included): {:.2} µs a dropped event",
        dropped.len(),
        first_day.len(),
        events(&first_day),
        took * 1e3,
        took * 1e6 / events(&first_day).max(1) as f64
    );
    println!(
        "index: {before} events of {live_before} subjects before, {after} of {live_after} \
         after; the store holds {left}"
    );
    if after != left {
        return Err(format!("the index counts {after} events, the store holds {left}").into());
    }
    let t = Instant::now();
    index.checkpoint(&store)?;
    println!(
        "checkpoint written in {:.1} ms; peak RSS {} MiB",
        t.elapsed().as_secs_f64() * 1e3,
        peak_rss_kib() / 1024
    );
    Ok(())
}

/// The process's peak resident set (`VmHWM`), KiB.
fn peak_rss_kib() -> u64 {
    status_kib("VmHWM:")
}

/// The process's resident set now (`VmRSS`), KiB.
fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}

/// A KiB field of `/proc/self/status` (0 where there is none).
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU seconds (user and system, every thread) this process has used, from
/// `/proc/self/stat` (clock ticks of 10 ms).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command's closing parenthesis: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    f.iter().sum::<u64>() as f64 / 100.0
}

/// Files and their bytes under `dir`, recursively.
fn files_and_bytes(dir: &std::path::Path) -> (u64, u64) {
    let mut out = (0, 0);
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => {
                    let (f, b) = files_and_bytes(&e.path());
                    out.0 += f;
                    out.1 += b;
                }
                Ok(m) => {
                    out.0 += 1;
                    out.1 += m.len();
                }
                Err(_) => {}
            }
        }
    }
    out
}

/// Times trajectory and co-occurrence queries in process on the store in `dir`, for
/// vehicles of given sighting counts, so stores of different sizes can be compared
/// subject for subject.
fn latency(
    dir: &std::path::Path,
    rounds: u32,
    plates: &[String],
) -> Result<(), Box<dyn std::error::Error>> {
    use sightline_query::{cooccurrence, trajectory, QueryContext, Scope};
    use sightline_storage::Kind;
    let store = Store::open(dir, StoreConfig::default())?;
    let (index, _) = StoreIndex::open(&store)?;
    let from = sightline_benches::SEPT_2021;
    let to = from + 400 * DAY;
    // Every vehicle's sighting count, ascending.
    let mut counts: Vec<(u64, String)> = {
        let view = index.view();
        let dicts = store.dictionaries();
        (0..dicts.len_subjects() as u32)
            .filter_map(|id| {
                let (k, s) = dicts.subject(id)?;
                let stats = view.subject_stats(id).expect("the index reads")?;
                (k == Kind::Vehicle).then(|| (stats.count, s.to_string()))
            })
            .collect()
    };
    counts.sort();
    let ctx = QueryContext::new(&store, &index);
    // Median of `rounds` rounds, each the mean of 200 calls, µs.
    let time = |f: &dyn Fn() -> usize| -> (f64, Vec<f64>) {
        for _ in 0..20 {
            f();
        }
        let mut runs: Vec<f64> = (0..rounds.max(1))
            .map(|_| {
                let t = Instant::now();
                for _ in 0..200 {
                    std::hint::black_box(f());
                }
                t.elapsed().as_secs_f64() * 1e6 / 200.0
            })
            .collect();
        let each = runs.clone();
        runs.sort_by(|a, b| a.total_cmp(b));
        (runs[runs.len() / 2], each)
    };
    let chosen: Vec<(u64, String)> = match plates {
        [] => [10u64, 30, 100]
            .iter()
            .map(|&want| {
                counts
                    .iter()
                    .min_by_key(|(c, s)| (c.abs_diff(want), s.clone()))
                    .cloned()
                    .ok_or("no vehicles")
            })
            .collect::<Result<_, _>>()?,
        // `resident:C:V`: vehicle V of community C's residents.
        _ => plates
            .iter()
            .map(|p| {
                let p = match p.split(':').collect::<Vec<_>>()[..] {
                    ["resident", c, v] => sightline_benches::traffic::resident_plate(
                        c.parse().unwrap_or(0),
                        v.parse().unwrap_or(0),
                    ),
                    _ => p.clone(),
                };
                let n = counts.iter().find(|(_, s)| *s == p).map_or(0, |c| c.0);
                (n, p)
            })
            .collect(),
    };
    if rounds == 0 {
        for (n, subject) in &chosen {
            println!("{subject}: {n} sightings");
        }
        return Ok(());
    }
    for (n, subject) in chosen {
        let q = sightline_query::TrajectoryQuery {
            kind: Kind::Vehicle,
            subject: subject.clone(),
            from_ms: from,
            to_ms: to,
            communities: None,
            cursor: None,
            limit: 10_000,
        };
        let got = trajectory(&ctx, &q)?.events.len();
        let (med, each) = time(&|| trajectory(&ctx, &q).unwrap().events.len());
        println!("trajectory {subject} ({n} sightings, {got} returned): {med:.1} µs {each:.1?}");
        for (scope, label) in [(Scope::Device, "device"), (Scope::Community, "community")] {
            let q = sightline_benches::vehicle_cooccurrence(subject.as_str(), from, to, scope);
            let found = cooccurrence(&ctx, &q)?.len();
            let (med, each) = time(&|| cooccurrence(&ctx, &q).unwrap().len());
            println!(
                "cooccurrence_{label} {subject} ({n} sightings, {found} candidates): {med:.1} µs {each:.1?}"
            );
        }
    }
    Ok(())
}
