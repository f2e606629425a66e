//! A first HTTP load generator: NDJSON ingest and trajectory queries against a running
//! `sightline serve`, over keep-alive HTTP/1.1 connections, reporting throughput and
//! latency percentiles.
//!
//! cargo run --release -p sightline-benches --bin http-load -- --addr 127.0.0.1:8080 ingest
//! cargo run --release -p sightline-benches --bin http-load -- --addr 127.0.0.1:8080 trajectory

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use sightline_benches::{Traffic, TrafficConfig};
use sightline_server::wire;

#[derive(Parser)]
#[command(about = "Drive a Sightline server with ingest or trajectory load")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Concurrent connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// POST /v1/events with NDJSON batches of the synthetic month.
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
    },
    /// GET /v1/trajectory for plates of the synthetic month (load it first).
    Trajectory,
}

/// One keep-alive connection.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        Conn {
            reader: BufReader::new(s.try_clone().expect("clone")),
            writer: s,
        }
    }

    /// Sends a request and reads the response; returns the status.
    fn call(&mut self, head: &str, body: &[u8]) -> u16 {
        self.writer.write_all(head.as_bytes()).expect("write");
        self.writer.write_all(body).expect("write");
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("status line");
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        let mut len = 0usize;
        loop {
            line.clear();
            self.reader.read_line(&mut line).expect("header");
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().expect("length");
            }
        }
        let mut buf = vec![0u8; len];
        self.reader.read_exact(&mut buf).expect("body");
        status
    }
}

fn main() {
    let args = Args::parse();
    // No source ids: every request stores its events again (re-sends with source ids
    // would be acknowledged as duplicates, which is cheaper and not what we measure).
    let cfg = TrafficConfig::default();
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let work: Vec<(String, Vec<u8>, usize)> = match &args.mode {
        Mode::Ingest { batch, binary, .. } => {
            let events: Vec<sightline_storage::EventInput> =
                Traffic::new(cfg.clone()).days().flatten().collect();
            events
                .chunks(*batch)
                .map(|c| {
                    let (body, content_type) = if *binary {
                        (wire::encode(c), wire::CONTENT_TYPE)
                    } else {
                        let lines: Vec<String> = c.iter().map(ndjson).collect();
                        (lines.join("\n").into_bytes(), "application/x-ndjson")
                    };
                    let head = format!(
                        "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    (head, body, c.len())
                })
                .collect()
        }
        Mode::Trajectory => {
            let mut plates: Vec<String> = Traffic::new(cfg.clone())
                .day_events(0)
                .into_iter()
                .filter(|e| e.kind == "vehicle")
                .map(|e| e.subject)
                .collect();
            plates.sort();
            plates.dedup();
            let (from, to) = (cfg.start_ms, cfg.start_ms + cfg.days as i64 * 86_400_000);
            plates
                .iter()
                .map(|p| {
                    let q: String = form(&[
                        ("kind", "vehicle"),
                        ("subject", p),
                        ("from", &from.to_string()),
                        ("to", &to.to_string()),
                        ("limit", "100"),
                    ]);
                    (
                        format!("GET /v1/trajectory?{q} HTTP/1.1\r\nHost: x\r\n\r\n"),
                        Vec::new(),
                        1,
                    )
                })
                .collect()
        }
    };
    eprintln!(
        "prepared {} requests in {:.1} s",
        work.len(),
        t0.elapsed().as_secs_f64()
    );
    let once = matches!(args.mode, Mode::Ingest { once: true, .. });
    // Seconds between one connection's requests when paced.
    let interval = match args.mode {
        Mode::Ingest {
            rate: Some(r),
            batch,
            ..
        } => Some(Duration::from_secs_f64(
            batch as f64 * args.connections as f64 / r,
        )),
        _ => None,
    };
    let work = Arc::new(work);
    let start = Instant::now();
    let threads: Vec<_> = (0..args.connections)
        .map(|t| {
            let (work, stop) = (work.clone(), stop.clone());
            let addr = args.addr;
            std::thread::spawn(move || {
                let mut conn = Conn::open(addr);
                let mut h = Histogram::<u64>::new(3).expect("histogram");
                let (mut items, mut errors) = (0u64, 0u64);
                let mut i = t;
                let mut next = Instant::now();
                while !(stop.load(Ordering::Relaxed) || once && i >= work.len()) {
                    if let Some(every) = interval {
                        let now = Instant::now();
                        if next > now {
                            std::thread::sleep(next - now);
                        }
                        next += every;
                    }
                    let (head, body, n) = &work[i % work.len()];
                    let t = Instant::now();
                    let status = conn.call(head, body);
                    h.record(t.elapsed().as_micros() as u64).expect("record");
                    if status == 200 {
                        items += *n as u64;
                    } else {
                        errors += 1;
                    }
                    i += args.connections;
                }
                (h, items, errors)
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    while Instant::now() < deadline && !threads.iter().all(|t| t.is_finished()) {
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    let mut all = Histogram::<u64>::new(3).expect("histogram");
    let (mut items, mut errors) = (0, 0);
    for t in threads {
        let (h, n, e) = t.join().expect("worker");
        all.add(&h).expect("merge");
        items += n;
        errors += e;
    }
    let secs = start.elapsed().as_secs_f64();
    let what = match args.mode {
        Mode::Ingest { .. } => "events",
        Mode::Trajectory => "queries",
    };
    println!(
        "{:.0} {what}/s over {secs:.1} s ({} requests, {errors} not 200); request latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        items as f64 / secs,
        all.len(),
        all.value_at_quantile(0.5) as f64 / 1000.0,
        all.value_at_quantile(0.99) as f64 / 1000.0,
        all.max() as f64 / 1000.0
    );
}

fn ndjson(e: &sightline_storage::EventInput) -> String {
    let attrs: serde_json::Map<String, serde_json::Value> = e
        .attrs
        .iter()
        .map(|(k, v)| {
            let v = match v {
                sightline_storage::AttrValue::Str(s) => s.clone().into(),
                sightline_storage::AttrValue::Int(i) => (*i).into(),
                sightline_storage::AttrValue::Float(f) => (*f).into(),
                sightline_storage::AttrValue::Bool(b) => (*b).into(),
            };
            (k.clone(), v)
        })
        .collect();
    serde_json::json!({"ts": e.ts_ms, "community": e.community, "device": e.device,
        "kind": e.kind, "subject": e.subject, "direction": e.direction, "attrs": attrs})
    .to_string()
}

fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}
