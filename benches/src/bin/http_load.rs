//! The load generator: drives a running `sightline serve` with the synthetic city's
//! traffic — ingest (NDJSON or binary batches) at a target rate or as fast as it goes,
//! trajectory / co-occurrence / search queries, or both at once; GA/T 1400 uploads,
//! with pictures and picture reads if asked — shows a live progress
//! line, and ends with a report per operation (throughput, latency p50/p90/p99/p99.9/max,
//! errors by kind) and its own CPU share; `--json FILE` writes the report for machines.
//!
//! cargo run --release -p sightline-benches --bin http-load -- --addr 127.0.0.1:8080 ingest
//! cargo run --release -p sightline-benches --bin http-load -- --addr 127.0.0.1:8080 --seconds 30 \
//!     mix --ingest-rate 20000 --query-connections 8 --queries trajectory,cooccurrence,search
//! cargo run --release -p sightline-benches --bin http-load -- --addr 127.0.0.1:18100 \
//!     mix --binary --ingest-rate 20000 --query-addr 127.0.0.1:18101 --query-rate 2 \
//!     --queries trajectory,cooccurrence          # a cluster: ingest and query nodes apart
//! cargo run --release -p sightline-benches --bin http-load -- --addr 127.0.0.1:8080 gat1400 \
//!     --from /tmp/city/gat1400 --batch 100 --picture-bytes 200000 --objects 15000 \
//!     --image-connections 2 --image-rate 100

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use sightline_benches::gat1400;
use sightline_benches::load::{self, ingest_stream, query_stream, Limits};
use sightline_benches::{Traffic, TrafficConfig};
use sightline_server::ServerConfig;

#[derive(Parser)]
#[command(about = "Drive a Sightline server with synthetic ingest and query load")]
struct Args {
    /// The server's address; nothing else is contacted (but `mix --query-addr`).
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
    /// batches (not timed: the setup). Optionally each object with a picture, and
    /// picture reads (`GET /v1/images/{id}`) while uploading.
    Gat1400 {
        /// The `gat1400/` directory of `sightline gen --out`.
        #[arg(long)]
        from: PathBuf,
        /// Objects per upload. With pictures, keep a body under the server's `/VIID`
        /// limit (`--max-viid-body-bytes`, 64 MiB by default): with 200 KB pictures,
        /// at most ~240.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// Give every vehicle object one JPEG picture of this many bytes (at least 12),
        /// distinct per object, made before the clock starts; 0: none, as the files
        /// have it.
        #[arg(long, default_value_t = 0)]
        picture_bytes: usize,
        /// Upload at most this many objects (the first, in file order); pictures are
        /// held in memory until sent (at most 8 GiB of bodies are prepared).
        #[arg(long)]
        objects: Option<usize>,
        /// Objects per second in total (default: as fast as the server answers).
        #[arg(long)]
        rate: Option<f64>,
        /// Read pictures while uploading over this many connections: `GET
        /// /v1/images/{id}` of ids that trajectory answers (one connection, 20 a
        /// second, for the plates just uploaded) list. 0: no reads. The run stops when
        /// every object is acknowledged (or at `--seconds`).
        #[arg(long, default_value_t = 0)]
        image_connections: usize,
        /// Picture reads per second in total (default: as fast as answered).
        #[arg(long)]
        image_rate: Option<f64>,
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
        /// Send the queries here instead of `--addr` (a cluster's query node, its
        /// ingest role listening at `--addr`).
        #[arg(long)]
        query_addr: Option<SocketAddr>,
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
    let mut max_events = args.max_events;
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
        Mode::Gat1400 {
            from,
            batch,
            picture_bytes,
            objects,
            rate,
            image_connections,
            image_rate,
        } => {
            let plan = Gat1400Plan {
                dir: from,
                batch: *batch,
                picture_bytes: *picture_bytes,
                objects: *objects,
                rate: *rate,
                image_connections: *image_connections,
                image_rate: *image_rate,
            };
            match gat1400_streams(&args, &traffic, &plan) {
                Ok((s, objects)) => {
                    if *image_connections > 0 && max_events.is_none() {
                        max_events = Some(objects);
                    }
                    s
                }
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
            query_addr,
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
                let mut queries = query_stream(&traffic, q, *query_connections, *query_rate);
                queries.addr = *query_addr;
                s.push(queries);
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
        max_events,
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

/// What `gat1400` was asked to send.
struct Gat1400Plan<'a> {
    dir: &'a Path,
    batch: usize,
    picture_bytes: usize,
    objects: Option<usize>,
    rate: Option<f64>,
    image_connections: usize,
    image_rate: Option<f64>,
}

/// The catalog and the platform registered; the uploads (and the picture reads, when
/// asked for) as streams, and how many objects they upload.
fn gat1400_streams(
    args: &Args,
    traffic: &Traffic,
    plan: &Gat1400Plan,
) -> Result<(Vec<load::Stream>, u64), String> {
    gat1400::register_catalog(args.addr, traffic)?;
    gat1400::register_platform(args.addr)?;
    let files = gat1400::vehicle_objects(plan.dir, plan.objects)?;
    let objects: usize = files.iter().map(Vec::len).sum();
    let bytes = gat1400::prepared_bytes(objects, plan.picture_bytes);
    if bytes > gat1400::MAX_PREPARED_BYTES {
        return Err(format!(
            "{objects} objects with {}-byte pictures would hold {:.1} GiB of bodies in memory \
             (at most {} GiB): ask for fewer with --objects",
            plan.picture_bytes,
            bytes as f64 / (1u64 << 30) as f64,
            gat1400::MAX_PREPARED_BYTES >> 30
        ));
    }
    let requests = gat1400::upload_requests(&files, plan.batch, |i| {
        (plan.picture_bytes > 0).then(|| gat1400::picture(i as u64, plan.picture_bytes))
    });
    let limit = ServerConfig::new("", args.addr).max_viid_body_bytes;
    if let Some(big) = requests
        .iter()
        .map(|r| r.body.len())
        .max()
        .filter(|&b| b > limit)
    {
        eprintln!(
            "http-load: uploads of up to {big} bytes exceed the server's default /VIID body \
             limit ({limit}): expect 413 unless it was raised (--max-viid-body-bytes)"
        );
    }
    let mut upload = gat1400::upload_stream(requests, args.connections, plan.rate);
    let mut streams = Vec::new();
    if plan.image_connections > 0 {
        let reads = gat1400::picture_reads(
            traffic,
            &files,
            plan.batch,
            20.0,
            plan.image_connections,
            plan.image_rate,
        );
        upload.on_ack = Some(reads.on_upload_ack);
        streams.push(upload);
        streams.extend([reads.trajectory, reads.images]);
    } else {
        streams.push(upload);
    }
    Ok((streams, objects as u64))
}
