//! The load generator: drives a running `sightline serve` with the synthetic city's
//! traffic — ingest (NDJSON or binary batches) at a target rate or as fast as it goes,
//! trajectory / co-occurrence / search queries, or both at once — shows a live progress
//! line, and ends with a report per operation (throughput, latency p50/p90/p99/p99.9/max,
//! errors by kind) and its own CPU share; `--json FILE` writes the report for machines.
//!
//! cargo run --release -p sightline-benches --bin http-load -- --addr 127.0.0.1:8080 ingest
//! cargo run --release -p sightline-benches --bin http-load -- --addr 127.0.0.1:8080 --seconds 30 \
//!     mix --ingest-rate 20000 --query-connections 8 --queries trajectory,cooccurrence,search

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use sightline_benches::load::{self, ingest_stream, query_stream, Limits};
use sightline_benches::{Traffic, TrafficConfig};

#[derive(Parser)]
#[command(about = "Drive a Sightline server with synthetic ingest and query load")]
struct Args {
    /// The server's address; nothing else is contacted.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Connections (for `ingest` and `trajectory`).
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Stop once this many events were acknowledged.
    #[arg(long)]
    max_events: Option<u64>,
    /// Write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// The server's pid, to report its CPU use over the run (same machine).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Size of the synthetic city: communities and days (from 2021-09-01), and seed.
    #[arg(long, default_value_t = 10)]
    communities: u32,
    #[arg(long, default_value_t = 30)]
    days: u32,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// POST /v1/events with batches of the synthetic month.
    Ingest {
        #[arg(long, default_value_t = 5000)]
        batch: usize,
        /// Send the month once and stop (to load a store for queries).
        #[arg(long)]
        once: bool,
        /// Pace to about this many events per second in total (default: as fast as
        /// the server answers).
        #[arg(long)]
        rate: Option<f64>,
        /// Send binary (bincode) batches instead of NDJSON.
        #[arg(long)]
        binary: bool,
        /// Send the NDJSON files of this directory (as `sightline gen` writes them,
        /// in name order) instead of the built-in city.
        #[arg(long)]
        from: Option<PathBuf>,
    },
    /// GET /v1/trajectory for plates of the synthetic month (load it first).
    Trajectory {
        /// Queries per second in total (default: as fast as answered).
        #[arg(long)]
        rate: Option<f64>,
    },
    /// GA/T 1400 uploads (`POST /VIID/MotorVehicles`) of the city as `sightline gen`
    /// writes it: registers the city's communities and devices and a platform in the
    /// catalog, registers the platform by digest, then sends the files' objects in
    /// batches (not timed: the setup).
    Gat1400 {
        /// The `gat1400/` directory of `sightline gen --out`.
        #[arg(long)]
        from: PathBuf,
        /// Objects per upload.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
    },
    /// Ingest and queries at the same time.
    Mix {
        #[arg(long, default_value_t = 2)]
        ingest_connections: usize,
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// Events per second (default: as fast as answered).
        #[arg(long)]
        ingest_rate: Option<f64>,
        #[arg(long)]
        binary: bool,
        /// Connections per query kind.
        #[arg(long, default_value_t = 4)]
        query_connections: usize,
        /// Queries per second per query kind (default: as fast as answered).
        #[arg(long)]
        query_rate: Option<f64>,
        /// Query kinds: trajectory, cooccurrence, search.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "trajectory,cooccurrence,search"
        )]
        queries: Vec<String>,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    // No source ids: every request stores its events again (re-sends with source ids
    // would be acknowledged as duplicates, which is cheaper and not what we measure).
    let cfg = TrafficConfig {
        seed: args.seed,
        communities: args.communities,
        days: args.days,
        ..Default::default()
    };
    let t0 = Instant::now();
    let traffic = Traffic::new(cfg.clone());
    let streams = match &args.mode {
        Mode::Ingest {
            batch,
            once,
            rate,
            binary,
            from,
        } => match from {
            None => vec![ingest_stream(
                &traffic,
                *batch,
                *binary,
                args.connections,
                *rate,
                *once,
            )],
            Some(dir) => {
                match load::ndjson_files_stream(
                    dir,
                    *batch,
                    *binary,
                    args.connections,
                    *rate,
                    *once,
                ) {
                    Ok(s) => vec![s],
                    Err(e) => {
                        eprintln!("http-load: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
        },
        Mode::Gat1400 { from, batch } => {
            match load::gat1400_stream(args.addr, &traffic, from, *batch, args.connections) {
                Ok(s) => vec![s],
                Err(e) => {
                    eprintln!("http-load: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        Mode::Trajectory { rate } => {
            vec![query_stream(
                &traffic,
                "trajectory",
                args.connections,
                *rate,
            )]
        }
        Mode::Mix {
            ingest_connections,
            batch,
            ingest_rate,
            binary,
            query_connections,
            query_rate,
            queries,
        } => {
            let mut s = vec![ingest_stream(
                &traffic,
                *batch,
                *binary,
                *ingest_connections,
                *ingest_rate,
                false,
            )];
            for q in queries {
                if !["trajectory", "cooccurrence", "search"].contains(&q.as_str()) {
                    eprintln!("http-load: unknown query kind {q:?}; use trajectory, cooccurrence or search");
                    return ExitCode::from(2);
                }
                s.push(query_stream(&traffic, q, *query_connections, *query_rate));
            }
            s
        }
    };
    eprintln!(
        "prepared {} requests in {:.1} s",
        streams.iter().map(|s| s.requests.len()).sum::<usize>(),
        t0.elapsed().as_secs_f64()
    );
    let limits = Limits {
        duration: Duration::from_secs(args.seconds),
        max_events: args.max_events,
    };
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.enable_steady_tick(Duration::from_millis(200));
        b
    });
    let report = load::run(
        args.addr,
        streams,
        limits,
        args.server_pid,
        |line| match &bar {
            Some(b) => b.set_message(line.to_string()),
            None => eprintln!("{line}"),
        },
    );
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    println!("{}", report.text());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).expect("a report serializes");
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("http-load: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
