//! The GA/T 1400 cascade benchmark (BENCHMARKS.md, "Cascade (issue 18)"), against a
//! running `sightline serve` at `--addr`, with a GA/T 1400 receiver of its own on
//! 127.0.0.1 (a thread per connection; it answers every object `StatusCode` 0).
//!
//! * `subscription`: a `gat1400` subscription (pictures by reference: `StoragePath`)
//!   to the receiver, then vehicle uploads (`POST /VIID/MotorVehicles`, each object with
//!   one picture) paced at `--rate` objects/s over `--connections`; for every object,
//!   the time from its upload's acknowledgement to its notification's arrival (ack →
//!   delivery), as p50/p90/p99/p99.9/max, and whether each arrived once.
//! * `upstream`: `--objects` vehicles uploaded first (as fast as acknowledged), then
//!   `POST /v1/upstreams` to the receiver (which takes the registration) from event 0:
//!   the rate at which the backlog arrives as `/VIID/MotorVehicles` uploads.
//!
//! cargo build --release --bin sightline --bin cascade-bench
//! target/release/sightline serve --no-auth --data /tmp/cb --listen 127.0.0.1:18320 &
//! target/release/cascade-bench --addr 127.0.0.1:18320 subscription --rate 10000 --seconds 30
//! target/release/cascade-bench --addr 127.0.0.1:18320 upstream --objects 300000

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use sightline_benches::gat1400::{
    attach_picture, picture, register_catalog, register_platform, PLATFORM,
};
use sightline_benches::{device_code, Traffic, TrafficConfig};

#[derive(Parser)]
#[command(about = "GA/T 1400 cascade: subscription delivery latency, upstream push throughput")]
struct Args {
    /// The server's address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Objects per upload request.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Upload connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Bytes of each object's picture (distinct per object).
    #[arg(long, default_value_t = 2000)]
    picture_bytes: usize,
    /// Objects per subscription or upstream delivery.
    #[arg(long, default_value_t = 500)]
    delivery_batch: usize,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Ack → subscriber delivery latency at a paced upload rate.
    Subscription {
        /// Objects per second in total.
        #[arg(long, default_value_t = 10_000.0)]
        rate: f64,
        /// Seconds of uploads.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
    /// Upstream push throughput over a backlog.
    Upstream {
        #[arg(long, default_value_t = 300_000)]
        objects: usize,
        /// How the upstream gets pictures: `reference` (`StoragePath`) or `base64`
        /// (`Data`, each picture read from the store and encoded).
        #[arg(long, default_value = "reference")]
        image_data: String,
    },
}

/// Object `i`: a vehicle of one of the community's four gates, its id in GA/T 1400's
/// form (unique for `i` below 10^10), with one picture.
fn vehicle(i: usize, picture_bytes: usize) -> (String, Value) {
    let device = device_code(
        0,
        sightline_benches::traffic::TYPE_VEHICLE_GATE,
        1 + (i % 4) as u32,
    );
    let (second, seq) = (i / 100_000, i % 100_000);
    let t = chrono::NaiveDate::from_ymd_opt(2021, 9, 1)
        .unwrap()
        .and_hms_opt(8, 0, 0)
        .unwrap()
        + chrono::Duration::seconds(second as i64);
    let time = t.format("%Y%m%d%H%M%S").to_string();
    let id = format!("{device}02{time}{seq:05}02{seq:05}");
    let mut o = json!({"MotorVehicleID": id, "InfoKind": 1, "DeviceID": device,
        "TollgateID": device, "PassTime": time, "PlateNo": format!("苏E{:05}", i % 100_000),
        "PlateColor": "2", "HasPlate": true, "LaneNo": 1});
    if picture_bytes > 0 {
        attach_picture(&mut o, &picture(i as u64, picture_bytes));
    }
    (id, o)
}

/// One HTTP/1.1 exchange on a kept-alive connection: the status and the body.
fn exchange(
    s: &mut BufReader<TcpStream>,
    head: &str,
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let w = s.get_mut();
    w.write_all(format!("{head}Content-Length: {}\r\n\r\n", body.len()).as_bytes())?;
    w.write_all(body)?;
    read_message(s).map(|(first, _, body)| {
        let status = first
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, body)
    })
}

/// Reads one HTTP message: its first line, its head (lower case), its body.
fn read_message(s: &mut BufReader<TcpStream>) -> std::io::Result<(String, String, Vec<u8>)> {
    let mut first = String::new();
    if s.read_line(&mut first)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let (mut head, mut len, mut line) = (String::new(), 0usize, String::new());
    loop {
        line.clear();
        if s.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == "\r\n" {
            break;
        }
        let l = line.to_ascii_lowercase();
        if let Some(v) = l.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        head.push_str(&l);
    }
    let mut body = vec![0; len];
    s.read_exact(&mut body)?;
    Ok((first, head, body))
}

/// What the receiver saw: per object number, when it first arrived (µs since the
/// start) and how many times.
struct Seen {
    start: Instant,
    index: HashMap<String, usize>,
    first_us: Vec<AtomicU64>,
    times: Vec<AtomicU64>,
}

impl Seen {
    fn record(&self, id: &str) {
        if let Some(&i) = self.index.get(id) {
            let now = self.start.elapsed().as_micros() as u64 + 1;
            let _ = self.first_us[i].compare_exchange(0, now, Ordering::SeqCst, Ordering::SeqCst);
            self.times[i].fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The receiver: notifications and uploads, every vehicle recorded, each answered
/// `StatusCode` 0; registrations and keepalives taken.
fn receive(listener: TcpListener, seen: Arc<Seen>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut s = BufReader::new(stream);
            while let Ok((first, _, body)) = read_message(&mut s) {
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let mut ids = Vec::new();
                let mut take = |list: &Value| {
                    for o in list["MotorVehicleObject"].as_array().into_iter().flatten() {
                        if let Some(id) = o["MotorVehicleID"].as_str() {
                            ids.push(id.to_string());
                        }
                    }
                };
                take(&v["MotorVehicleListObject"]);
                for n in v["SubscribeNotificationListObject"]["SubscribeNotificationObject"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    take(&n["MotorVehicleObjectList"]);
                }
                for id in &ids {
                    seen.record(id);
                }
                let answer = match first.contains("/VIID/System/") {
                    true => {
                        json!({"ResponseStatusObject": {"StatusCode": 0, "StatusString": "正常"}})
                    }
                    false => {
                        let statuses: Vec<Value> = ids
                            .iter()
                            .map(|id| json!({"Id": id, "StatusCode": 0, "StatusString": "正常"}))
                            .collect();
                        json!({"ResponseStatusListObject": {"ResponseStatusObject": statuses}})
                    }
                }
                .to_string();
                let w = s.get_mut();
                let ok = write!(
                    w,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/VIID+JSON\r\nContent-Length: {}\r\n\r\n{answer}",
                    answer.len()
                );
                if ok.is_err() {
                    break;
                }
            }
        });
    }
}

/// A JSON request on a new connection; its status and body.
fn call(addr: SocketAddr, method: &str, path: &str, body: &Value) -> Result<(u16, Value), String> {
    let stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    let mut s = BufReader::new(stream);
    let head = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n");
    let (status, body) =
        exchange(&mut s, &head, body.to_string().as_bytes()).map_err(|e| e.to_string())?;
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

/// Uploads `objects` (prepared bodies, `batch` objects each) over `connections`,
/// paced at `rate` objects/s when given; records each object's ack time (µs since
/// `start`, in `acks`).
fn upload(
    addr: SocketAddr,
    bodies: Bodies,
    connections: usize,
    rate: Option<f64>,
    start: Instant,
    acks: &Arc<Vec<AtomicU64>>,
) -> Result<(), String> {
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let per_request = |k: usize| -> Option<Duration> {
        let batch = bodies.first().map_or(1, |b| b.0.len()) as f64;
        rate.map(|r| Duration::from_secs_f64(k as f64 * batch / r))
    };
    std::thread::scope(|scope| {
        for _ in 0..connections {
            let (bodies, next, errors, acks) =
                (bodies.clone(), next.clone(), errors.clone(), acks.clone());
            scope.spawn(move || {
                let stream = match TcpStream::connect(addr) {
                    Ok(s) => s,
                    Err(e) => return errors.lock().unwrap().push(e.to_string()),
                };
                let _ = stream.set_nodelay(true);
                let mut s = BufReader::new(stream);
                loop {
                    let k = next.fetch_add(1, Ordering::SeqCst) as usize;
                    let Some((objects, body)) = bodies.get(k) else { break };
                    if let Some(at) = per_request(k) {
                        if let Some(wait) = at.checked_sub(start.elapsed()) {
                            std::thread::sleep(wait);
                        }
                    }
                    let head = format!("POST /VIID/MotorVehicles HTTP/1.1\r\nHost: x\r\nContent-Type: application/VIID+JSON\r\nUser-Identify: {PLATFORM}\r\n");
                    match exchange(&mut s, &head, body) {
                        Ok((200, _)) => {
                            let now = start.elapsed().as_micros() as u64 + 1;
                            for &i in objects {
                                acks[i].store(now, Ordering::SeqCst);
                            }
                        }
                        Ok((status, b)) => {
                            errors.lock().unwrap().push(format!("{status} {}", String::from_utf8_lossy(&b)));
                            break;
                        }
                        Err(e) => {
                            errors.lock().unwrap().push(e.to_string());
                            break;
                        }
                    }
                }
            });
        }
    });
    let first = errors.lock().unwrap().first().cloned();
    match first {
        Some(e) => Err(format!("upload failed: {e}")),
        None => Ok(()),
    }
}

/// Upload bodies, each with the numbers of the objects it carries.
type Bodies = Vec<(Vec<usize>, Vec<u8>)>;

/// The bodies of objects `0..n`, `batch` to a request, and each object's number by id.
fn bodies(n: usize, batch: usize, picture_bytes: usize) -> (Bodies, HashMap<String, usize>) {
    let mut index = HashMap::with_capacity(n);
    let mut out = Vec::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(batch.max(1)) {
        let objects: Vec<Value> = chunk
            .iter()
            .map(|&i| {
                let (id, o) = vehicle(i, picture_bytes);
                index.insert(id, i);
                o
            })
            .collect();
        let body = json!({"MotorVehicleListObject": {"MotorVehicleObject": objects}}).to_string();
        out.push((chunk.to_vec(), body.into_bytes()));
    }
    (out, index)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let k = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[k] as f64 / 1000.0
}

fn run(args: &Args) -> Result<(), String> {
    let traffic = Traffic::new(TrafficConfig {
        communities: 1,
        days: 1,
        ..Default::default()
    });
    register_catalog(args.addr, &traffic)?;
    register_platform(args.addr)?;
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let receiver = listener.local_addr().map_err(|e| e.to_string())?;
    let n = match &args.mode {
        Mode::Subscription { rate, seconds } => (rate * *seconds as f64) as usize,
        Mode::Upstream { objects, .. } => *objects,
    };
    eprintln!(
        "preparing {n} objects ({} bytes of picture each)",
        args.picture_bytes
    );
    let (prepared, index) = bodies(n, args.batch, args.picture_bytes);
    let start = Instant::now();
    let seen = Arc::new(Seen {
        start,
        index,
        first_us: (0..n).map(|_| AtomicU64::new(0)).collect(),
        times: (0..n).map(|_| AtomicU64::new(0)).collect(),
    });
    let acks: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let s2 = seen.clone();
    std::thread::spawn(move || receive(listener, s2));
    let received = |seen: &Seen| {
        seen.first_us
            .iter()
            .filter(|t| t.load(Ordering::SeqCst) > 0)
            .count()
    };
    match &args.mode {
        Mode::Subscription { rate, .. } => {
            let (status, body) = call(
                args.addr,
                "POST",
                "/v1/subscriptions",
                &json!({"url": format!("http://{receiver}/VIID/SubscribeNotifications"),
                        "format": "gat1400", "kinds": ["vehicle"], "batch": args.delivery_batch}),
            )?;
            if status != 201 {
                return Err(format!("subscription: {status} {body}"));
            }
            let t0 = Instant::now();
            upload(
                args.addr,
                prepared,
                args.connections,
                Some(*rate),
                start,
                &acks,
            )?;
            let took = t0.elapsed().as_secs_f64();
            let deadline = Instant::now() + Duration::from_secs(60);
            while received(&seen) < n && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            std::thread::sleep(Duration::from_millis(500));
            let mut lat: Vec<u64> = (0..n)
                .filter_map(|i| {
                    let (a, r) = (
                        acks[i].load(Ordering::SeqCst),
                        seen.first_us[i].load(Ordering::SeqCst),
                    );
                    (a > 0 && r > 0).then(|| r.saturating_sub(a))
                })
                .collect();
            lat.sort_unstable();
            let dup = seen
                .times
                .iter()
                .filter(|t| t.load(Ordering::SeqCst) > 1)
                .count();
            println!(
                "subscription: {n} objects uploaded in {took:.1} s ({:.0} objects/s acknowledged, asked {rate}); \
                 {} delivered, {} missing, {dup} more than once",
                n as f64 / took,
                received(&seen),
                n - received(&seen)
            );
            println!(
                "ack -> delivery ms: p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
                percentile(&lat, 50.0),
                percentile(&lat, 90.0),
                percentile(&lat, 99.0),
                percentile(&lat, 99.9),
                percentile(&lat, 100.0)
            );
        }
        Mode::Upstream { image_data, .. } => {
            let t0 = Instant::now();
            upload(args.addr, prepared, args.connections, None, start, &acks)?;
            eprintln!(
                "backlog of {n} uploaded in {:.1} s",
                t0.elapsed().as_secs_f64()
            );
            let created = start.elapsed().as_micros() as u64;
            let (status, body) = call(
                args.addr,
                "POST",
                "/v1/upstreams",
                &json!({"url": format!("http://{receiver}"), "password": "p", "from": 0,
                        "batch": args.delivery_batch, "kinds": ["vehicle"],
                        "image_data": image_data}),
            )?;
            if status != 201 {
                return Err(format!("upstream: {status} {body}"));
            }
            let deadline = Instant::now() + Duration::from_secs(600);
            while received(&seen) < n && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let times: Vec<u64> = seen
                .first_us
                .iter()
                .map(|t| t.load(Ordering::SeqCst))
                .filter(|t| *t > 0)
                .collect();
            let (first, last) = (
                times.iter().min().copied().unwrap_or(0),
                times.iter().max().copied().unwrap_or(0),
            );
            let dup = seen
                .times
                .iter()
                .filter(|t| t.load(Ordering::SeqCst) > 1)
                .count();
            println!(
                "upstream: {} of {n} objects pushed, {dup} more than once; {:.0} objects/s from the first upload \
                 to the last ({:.1} s), {:.0} objects/s from POST /v1/upstreams ({:.1} s)",
                times.len(),
                times.len() as f64 / ((last - first) as f64 / 1e6),
                (last - first) as f64 / 1e6,
                times.len() as f64 / ((last - created) as f64 / 1e6),
                (last - created) as f64 / 1e6,
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cascade-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
